//! The richer attributor inputs against their references (tests/fixtures/inputs, written by
//! scripts/make_inputs_fixtures.py): Captum 0.9 for input × gradient, NoiseTunnel
//! smoothgrad_sq / vargrad (with the noise Captum drew) and Integrated Gradients with array and
//! blur baselines; torch autograd for contrastive, seed-array, negative and sign targets;
//! iNNvestigate 2.1.2's rules transcribed for its analyzers. All in f64, max error ≤ 1e-6
//! relative to max |R|. Then the error paths.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use prism_attribution::{
    Attribution, Attributor, AttributorParams, BaselineArray, Baselines, Bound, Composite,
    CompositeParams, Explainer, Fill, Noise, SeedMode, SeedRows, Target,
};
use prism_model::{Model, Tensor};
use prism_store::npy;
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/inputs")
}

fn read(name: &str) -> Tensor<f64> {
    npy::read_float(&dir().join(name)).unwrap()
}

fn manifest() -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("manifest.json")).unwrap()).unwrap()
}

fn model(name: &str) -> Model {
    Model::load(&dir().join(format!("{name}.onnx"))).unwrap()
}

fn targets() -> Target {
    let m = manifest();
    Target::PerSample(
        m["targets_cnn"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect(),
    )
}

#[track_caller]
fn assert_close(got: &Tensor<f64>, want: &Tensor<f64>, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}");
    let scale = want.data().iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(scale > 0.0, "{what}: the reference is all zero");
    let err = got
        .data()
        .iter()
        .zip(want.data())
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        err <= 1e-6 * scale,
        "{what}: max error {err:e} vs max |R| {scale:e}"
    );
}

fn attribute(e: &Explainer, x: &Tensor<f64>, t: &Target, a: &Attributor) -> Attribution<f64> {
    e.attribute(x, t, SeedMode::OneHot, a).unwrap()
}

#[test]
fn input_x_gradient_equals_captums() {
    let m = model("cnn");
    let x = read("cnn.input.npy");
    let a = attribute(
        &Explainer::new(&m),
        &x,
        &targets(),
        &Attributor::InputXGradient,
    );
    assert_close(&a.relevance, &read("captum_ixg.npy"), "input-x-gradient");
}

#[test]
fn smoothgrad_squared_and_vargrad_equal_captums_with_its_noise() {
    let m = model("cnn");
    let x = read("cnn.input.npy");
    let e = Explainer::new(&m);
    for name in ["smoothgrad-squared", "vargrad"] {
        let case = &manifest()["captum"][name];
        let noise = read(case["noise"].as_str().unwrap());
        let per = x.len();
        let noise: Vec<Tensor<f64>> = noise
            .data()
            .chunks(per)
            .map(|c| Tensor::new(x.shape().to_vec(), c.to_vec()).unwrap())
            .collect();
        let p = AttributorParams {
            n_iter: Some(case["n_iter"].as_u64().unwrap() as usize),
            noise_level: case["noise_level"].as_f64().unwrap(),
            absolute_noise: true,
            ..AttributorParams::default()
        };
        let a = Attributor::by_name(name, &p).unwrap();
        let got = e
            .attribute_with_noise(&x, &targets(), SeedMode::OneHot, &a, Some(&noise))
            .unwrap();
        assert_close(&got.relevance, &read(case["file"].as_str().unwrap()), name);
    }
}

#[test]
fn absolute_noise_draws_every_copy_and_relative_keeps_the_last_clean() {
    let x = read("cnn.input.npy");
    let abs = prism_attribution::attributor::draw_noise(&x, 0.3, 4, 7, Noise::Absolute);
    let rel = prism_attribution::attributor::draw_noise(&x, 0.3, 4, 7, Noise::Relative);
    assert!(abs.iter().all(|n| n.data().iter().any(|v| *v != 0.0)));
    assert!(rel[3].data().iter().all(|v| *v == 0.0));
    // σ = 0.3 itself: the sample standard deviation of 4 × 192 draws is near it
    let all: Vec<f64> = abs.iter().flat_map(|n| n.data().to_vec()).collect();
    let sd = (all.iter().map(|v| v * v).sum::<f64>() / all.len() as f64).sqrt();
    assert!((sd - 0.3).abs() < 0.03, "σ {sd}");
}

fn ig(n_iter: usize, baselines: Baselines) -> Attributor {
    Attributor::IntegratedGradients {
        n_iter,
        baseline: 0.0,
        baselines,
    }
}

#[test]
fn integrated_gradients_with_array_baselines_equals_captums() {
    let m = model("cnn");
    let x = read("cnn.input.npy");
    let e = Explainer::new(&m);
    let steps = |k: &str| manifest()["captum"][k]["n_iter"].as_u64().unwrap() as usize;
    for (case, file) in [
        ("ig-per-sample", "baseline_per_sample.npy"),
        ("ig-shared", "baseline_shared.npy"),
    ] {
        let b = Baselines::Array(Arc::new(BaselineArray {
            name: file.into(),
            values: read(file),
        }));
        let a = attribute(&e, &x, &targets(), &ig(steps(case), b));
        assert_close(
            &a.relevance,
            &read(&format!("captum_{case}.npy").replace("ig-", "ig_")),
            case,
        );
    }
    // the per-sample baseline through the batch loop, one sample per batch
    let b = Baselines::Array(Arc::new(BaselineArray {
        name: "baseline_per_sample.npy".into(),
        values: read("baseline_per_sample.npy"),
    }));
    let batched = e
        .explain_batched(
            std::slice::from_ref(&x),
            None,
            &targets(),
            SeedMode::OneHot,
            &ig(steps("ig-per-sample"), b),
            1,
            |_| prism_model::Flow::Continue,
        )
        .unwrap();
    assert_close(
        &batched.relevance,
        &read("captum_ig_per-sample.npy"),
        "per-sample baseline in batches of 1",
    );
}

#[test]
fn blur_baseline_is_scipys_gaussian_filter_and_ig_from_it_equals_captums() {
    let m = model("cnn");
    let x = read("cnn.input.npy");
    let case = &manifest()["captum"]["ig-blur"];
    let sigma = case["sigma"].as_f64().unwrap();
    let blurred = prism_attribution::attributor::gaussian_blur(&x, sigma).unwrap();
    assert_close(&blurred, &read("blur.npy"), "blur");
    let a = attribute(
        &Explainer::new(&m),
        &x,
        &targets(),
        &ig(
            case["n_iter"].as_u64().unwrap() as usize,
            Baselines::Blur { sigma },
        ),
    );
    assert_close(&a.relevance, &read("captum_ig_blur.npy"), "ig blur");
}

#[test]
fn uniform_baselines_average_the_integrated_gradients_of_each() {
    let m = model("cnn");
    let x = read("cnn.input.npy");
    let e = Explainer::new(&m);
    let avg = attribute(
        &e,
        &x,
        &targets(),
        &ig(5, Baselines::Uniform { count: 3, seed: 9 }),
    );
    let bases = prism_attribution::attributor::uniform_baselines(&x, 3, 9);
    let mut sum = vec![0.0; x.len()];
    for base in bases {
        // each baseline lies in its sample's range
        let per = x.len() / 3;
        for (i, v) in base.data().iter().enumerate() {
            let s = &x.data()[i / per * per..(i / per + 1) * per];
            let (lo, hi) = s
                .iter()
                .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
            assert!(*v >= lo && *v <= hi);
        }
        let one = Baselines::Array(Arc::new(BaselineArray {
            name: "drawn".into(),
            values: base,
        }));
        let r = attribute(&e, &x, &targets(), &ig(5, one)).relevance;
        sum.iter_mut().zip(r.data()).for_each(|(s, v)| *s += v);
    }
    let want = Tensor::new(x.shape().to_vec(), sum.iter().map(|v| v / 3.0).collect()).unwrap();
    assert_close(&avg.relevance, &want, "uniform:3");
}

#[test]
fn occlusion_fill_replaces_the_removed_input() {
    let m = model("cnn");
    let x = read("cnn.input.npy");
    let e = Explainer::new(&m);
    let occ = |fill| Attributor::Occlusion {
        window: vec![4],
        stride: vec![4],
        invert: true,
        fill,
    };
    // a fill equal to the input removes nothing: every window scores the full output
    let zero = attribute(&e, &x, &targets(), &occ(Fill::Zero)).relevance;
    let value = attribute(&e, &x, &targets(), &occ(Fill::Value(0.5))).relevance;
    assert_ne!(zero, value);
    // by hand for one window: fill 0.5 outside nothing, inside the window
    let masks = prism_attribution::attributor::occlusion_masks(x.shape(), &[4], &[4]).unwrap();
    let mut want = vec![0.0; x.len()];
    let per = x.len() / 3;
    for mask in &masks {
        let xm: Vec<f64> = x
            .data()
            .iter()
            .enumerate()
            .map(|(i, &v)| if mask[i % per] { 0.5 } else { v })
            .collect();
        let y = e
            .forward(&Tensor::new(x.shape().to_vec(), xm).unwrap())
            .unwrap();
        for (i, w) in want.iter_mut().enumerate() {
            let s = i / per;
            let t = [1, 3, 0][s];
            if mask[i % per] {
                *w += y.data()[s * 4 + t];
            }
        }
    }
    let want = Tensor::new(x.shape().to_vec(), want).unwrap();
    assert_close(&value, &want, "occlusion fill 0.5");
}

#[test]
fn contrastive_and_seed_array_targets_equal_autograd() {
    let m = model("cnn");
    let x = read("cnn.input.npy");
    let e = Explainer::new(&m);
    let a = attribute(
        &e,
        &x,
        &Target::parse("2-0").unwrap(),
        &Attributor::Gradient,
    );
    assert_close(&a.relevance, &read("target_contrast.npy"), "contrast 2-0");
    assert_eq!(a.targets, vec![2, 2, 2]);
    let s = read("seeds.npy");
    let rows = SeedRows::new(s.shape().to_vec(), s.data().to_vec()).unwrap();
    let a = attribute(&e, &x, &Target::Seeds(rows.clone()), &Attributor::Gradient);
    assert_close(&a.relevance, &read("target_seeds.npy"), "seed array");
    // in batches of one, the rows follow their samples
    let b = e
        .explain_batched(
            std::slice::from_ref(&x),
            None,
            &Target::Seeds(rows),
            SeedMode::OneHot,
            &Attributor::Gradient,
            1,
            |_| prism_model::Flow::Continue,
        )
        .unwrap();
    assert_close(
        &b.relevance,
        &read("target_seeds.npy"),
        "seed array in batches",
    );
}

#[test]
fn contrast_in_logit_mode_seeds_y_a_and_minus_y_b() {
    let m = model("cnn");
    let x = read("cnn.input.npy");
    let e = Explainer::new(&m);
    let g = |t: Target| {
        e.attribute(&x, &t, SeedMode::Logit, &Attributor::Gradient)
            .unwrap()
            .relevance
    };
    let (a, b) = (g(Target::Class(2)), g(Target::Class(0)));
    let want = Tensor::new(
        x.shape().to_vec(),
        a.data().iter().zip(b.data()).map(|(a, b)| a - b).collect(),
    )
    .unwrap();
    assert_close(
        &g(Target::parse("2-0").unwrap()),
        &want,
        "contrast, logit mode",
    );
    // occlusion keeping the whole input scores Σ seed ⊙ y = y_pred − y_0 everywhere
    let y = e.forward(&x).unwrap();
    let p = e
        .attribute(
            &x,
            &Target::parse("predicted-0").unwrap(),
            SeedMode::OneHot,
            &Attributor::Occlusion {
                window: vec![8],
                stride: vec![8],
                invert: false,
                fill: Fill::Zero,
            },
        )
        .unwrap();
    for s in 0..3 {
        let want = y.data()[s * 4 + p.targets[s]] - y.data()[s * 4];
        assert!((p.relevance.data()[s * 64] - want).abs() < 1e-9);
    }
}

#[test]
fn negative_and_sign_targets_of_a_single_logit_model_equal_autograd() {
    let m = model("logit");
    let x = read("logit.input.npy");
    let e = Explainer::new(&m);
    let a = attribute(&e, &x, &Target::Negative, &Attributor::Gradient);
    assert_close(&a.relevance, &read("target_negative.npy"), "negative");
    let a = e
        .attribute(&x, &Target::Sign, SeedMode::Logit, &Attributor::Gradient)
        .unwrap();
    assert_close(&a.relevance, &read("target_sign.npy"), "sign, logit mode");
}

#[test]
fn innvestigate_presets_equal_its_rules() {
    let m = model("cnn");
    let x = read("cnn.input.npy");
    let man = manifest();
    let p = &man["innvestigate_params"];
    let params = CompositeParams {
        epsilon: p["epsilon"].as_f64().unwrap(),
        stabilizer: p["stabilizer"].as_f64().unwrap(),
        low: Some(Bound::Scalar(p["low"].as_f64().unwrap())),
        high: Some(Bound::Scalar(p["high"].as_f64().unwrap())),
        ..CompositeParams::default()
    };
    let cases = man["innvestigate"].as_object().unwrap();
    assert_eq!(cases.len(), 7);
    for (name, case) in cases {
        let c = Composite::builtin(name, &params).unwrap();
        let a = Explainer::new(&m)
            .with_composite(c)
            .attribute(&x, &targets(), SeedMode::Logit, &Attributor::Gradient)
            .unwrap();
        assert_close(&a.relevance, &read(case["file"].as_str().unwrap()), name);
    }
}

#[test]
fn random_is_seeded_standard_normal_noise() {
    let m = model("cnn");
    let x = read("cnn.input.npy");
    let e = Explainer::new(&m);
    let r = |seed| attribute(&e, &x, &targets(), &Attributor::Random { seed }).relevance;
    assert_eq!(r(3), r(3));
    assert_ne!(r(3), r(4));
    let v = r(3);
    let mean = v.data().iter().sum::<f64>() / v.len() as f64;
    let sd = (v.data().iter().map(|a| (a - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
    assert!(mean.abs() < 0.15 && (sd - 1.0).abs() < 0.15, "{mean} {sd}");
}

mod errors {
    use super::*;

    #[test]
    fn a_baseline_array_of_the_wrong_shape_names_both_shapes() {
        let m = model("cnn");
        let x = read("cnn.input.npy");
        let b = Baselines::Array(Arc::new(BaselineArray {
            name: "bad.npy".into(),
            values: Tensor::zeros(&[2, 1, 8, 8]),
        }));
        let e = Explainer::new(&m)
            .attribute(&x, &targets(), SeedMode::OneHot, &ig(4, b))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bad.npy") && e.contains("[2, 1, 8, 8]") && e.contains("[3, 1, 8, 8]"),
            "{e}"
        );
    }

    #[test]
    fn a_non_finite_baseline_array_is_refused() {
        let mut values = Tensor::zeros(&[1, 8, 8]);
        values.data_mut()[5] = f64::NAN;
        let p = AttributorParams {
            baselines: Baselines::Array(Arc::new(BaselineArray {
                name: "nan.npy".into(),
                values,
            })),
            ..AttributorParams::default()
        };
        let e = Attributor::by_name("integrated-gradients", &p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nan.npy") && e.contains("non-finite"), "{e}");
    }

    #[test]
    fn a_seed_array_of_the_wrong_shape_or_not_finite_is_refused() {
        let m = model("cnn");
        let x = read("cnn.input.npy");
        let rows = SeedRows::new(vec![3, 5], vec![0.0; 15]).unwrap();
        let e = Explainer::new(&m)
            .attribute(
                &x,
                &Target::Seeds(rows),
                SeedMode::OneHot,
                &Attributor::Gradient,
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("[3, 5]") && e.contains("[3, 4]"), "{e}");
        let e = SeedRows::new(vec![1, 2], vec![1.0, f64::INFINITY])
            .unwrap_err()
            .to_string();
        assert!(e.contains("row 0, column 1") && e.contains("finite"), "{e}");
        assert!(SeedRows::new(vec![4], vec![0.0; 4]).is_err());
    }

    #[test]
    fn negative_and_sign_on_a_multi_class_model_name_the_output_shape() {
        let m = model("cnn");
        let x = read("cnn.input.npy");
        for t in [Target::Negative, Target::Sign] {
            let e = Explainer::new(&m)
                .attribute(&x, &t, SeedMode::OneHot, &Attributor::Gradient)
                .unwrap_err()
                .to_string();
            assert!(e.contains("single logit") && e.contains("[3, 4]"), "{e}");
        }
    }

    #[test]
    fn targets_parse_and_bad_ones_say_what_is_accepted() {
        assert_eq!(
            Target::parse("3-1").unwrap(),
            Target::Contrast {
                class: Some(3),
                against: 1
            }
        );
        assert_eq!(
            Target::parse("predicted-2").unwrap(),
            Target::Contrast {
                class: None,
                against: 2
            }
        );
        assert_eq!(Target::parse("negative").unwrap(), Target::Negative);
        assert_eq!(Target::parse("sign").unwrap(), Target::Sign);
        assert_eq!(Target::parse("7").unwrap(), Target::Class(7));
        assert_eq!(
            Target::parse("last:4").unwrap(),
            Target::Position {
                position: -1,
                class: Some(4)
            }
        );
        assert!(Target::parse("2-2")
            .unwrap_err()
            .to_string()
            .contains("itself"));
        for bad in ["-1", "a-b", "2-", "positive"] {
            let e = Target::parse(bad).unwrap_err().to_string();
            assert!(e.contains("A-B"), "{bad}: {e}");
        }
        let m = model("cnn");
        let x = read("cnn.input.npy");
        let e = Explainer::new(&m)
            .attribute(
                &x,
                &Target::parse("1-9").unwrap(),
                SeedMode::OneHot,
                &Attributor::Gradient,
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("class 9 is out of range"), "{e}");
    }

    #[test]
    fn options_of_other_attributors_are_refused() {
        let with = |p: AttributorParams, name: &str| {
            Attributor::by_name(name, &p).unwrap_err().to_string()
        };
        let e = with(
            AttributorParams {
                absolute_noise: true,
                ..Default::default()
            },
            "gradient",
        );
        assert!(e.contains("smoothgrad"), "{e}");
        let e = with(
            AttributorParams {
                baselines: Baselines::Blur { sigma: 1.0 },
                ..Default::default()
            },
            "occlusion",
        );
        assert!(e.contains("integrated-gradients"), "{e}");
        let e = with(
            AttributorParams {
                fill: Fill::Value(1.0),
                ..Default::default()
            },
            "gradient",
        );
        assert!(e.contains("occlusion"), "{e}");
        let e = with(
            AttributorParams {
                baselines: Baselines::Uniform { count: 0, seed: 0 },
                ..Default::default()
            },
            "integrated-gradients",
        );
        assert!(e.contains("K ≥ 1"), "{e}");
        let e = with(
            AttributorParams {
                baselines: Baselines::Blur { sigma: -1.0 },
                ..Default::default()
            },
            "integrated-gradients",
        );
        assert!(e.contains("σ"), "{e}");
    }
}
