//! Properties of the attribution engine that need no reference implementation.

use std::path::{Path, PathBuf};

use prism_attribution::{
    canonize, AttributionError, Attributor, AttributorParams, Composite, CompositeParams,
    Explainer, Group, Matcher, Rule, SeedMode, Stabilizer, Target,
};
use prism_model::{Keep, Model, Tensor};
use prism_store::npy;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn load(name: &str) -> (Model, Tensor<f64>) {
    let m = Model::load(&fixtures().join(format!("{name}.onnx"))).unwrap();
    let x: Tensor<f64> = npy::read_float(&fixtures().join(format!("{name}.input.npy"))).unwrap();
    (m, x)
}

fn per_sample_sums(t: &Tensor<f64>) -> Vec<f64> {
    let n = t.shape()[0];
    t.data()
        .chunks(t.len() / n)
        .map(|c| c.iter().sum())
        .collect()
}

/// Every linear node Epsilon (tiny ε, no bias), sums and pools Norm, activations Pass.
fn conserving_composite() -> Composite {
    let eps = Rule::Epsilon {
        epsilon: Stabilizer::eps(1e-12),
        zero_bias: true,
    };
    let stab = Stabilizer::eps(1e-12);
    Composite {
        name: "test-epsilon".into(),
        entries: vec![
            (Matcher::Group(Group::Activation), Rule::Pass),
            (Matcher::Group(Group::Sum), Rule::Norm { stabilizer: stab }),
            (
                Matcher::Group(Group::AveragePool),
                Rule::Norm { stabilizer: stab },
            ),
            (Matcher::Group(Group::BatchNorm), Rule::Pass),
            (Matcher::Group(Group::Linear), eps),
        ],
    }
}

#[test]
fn epsilon_rule_conserves_relevance_without_bias() {
    // (tiny_densenet is left out: its merged BatchNorm biases drive units whose bias-free z is 0,
    // so zeroing the bias legitimately drops their relevance.)
    for name in ["tiny_resnet", "mlp", "conv1d", "tiny_vgg_bn"] {
        let (m, x) = load(name);
        let e = Explainer::new(&m).with_composite(conserving_composite());
        let a = e
            .attribute(
                &x,
                &Target::Predicted,
                SeedMode::OneHot,
                &Attributor::Gradient,
            )
            .unwrap();
        for (i, s) in per_sample_sums(&a.relevance).iter().enumerate() {
            // Softmax (tiny_vgg*) and unmerged BN (Pass) are not conserving by design; those
            // models end in softmax, where the one-hot seed's gradient is not conserved either.
            if name.starts_with("tiny_vgg") {
                assert!(s.is_finite());
                continue;
            }
            assert!(
                (s - 1.0).abs() < 1e-6,
                "{name} sample {i}: Σ R_in = {s}, expected 1"
            );
        }
    }
}

#[test]
fn merge_batchnorm_keeps_forward_output() {
    for name in ["tiny_vgg_bn", "tiny_densenet"] {
        let (m, x) = load(name);
        let g = m.specialize(&[x.shape().to_vec()]).unwrap();
        let (canon, merged) = canonize::merge_batchnorm(&g, prism_model::DType::F64).unwrap();
        if name == "tiny_vgg_bn" {
            assert!(merged >= 3, "{name}: merged {merged}");
        }
        let before = prism_model::Executor::<f64>::new(g.clone())
            .unwrap()
            .run(vec![x.clone()], &Keep::Outputs)
            .unwrap();
        let after = prism_model::Executor::<f64>::new(std::sync::Arc::new(canon))
            .unwrap()
            .run(vec![x.clone()], &Keep::Outputs)
            .unwrap();
        let err = before.outputs[0]
            .data()
            .iter()
            .zip(after.outputs[0].data())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-10, "{name}: canonized forward differs by {err}");
    }
}

#[test]
fn gradient_equals_finite_differences() {
    for name in ["tiny_mobilenetv2", "tiny_resnet", "conv1d", "tiny_densenet"] {
        let (m, x) = load(name);
        let e = Explainer::new(&m);
        let a = e
            .attribute(
                &x,
                &Target::Class(1),
                SeedMode::OneHot,
                &Attributor::Gradient,
            )
            .unwrap();
        let h = 1e-6;
        let c = a.output.shape()[1];
        for &i in &[0usize, 7, x.len() / 2 + 3, x.len() - 1] {
            let mut xp = x.clone();
            xp.data_mut()[i] += h;
            let mut xm = x.clone();
            xm.data_mut()[i] -= h;
            let s = i / (x.len() / x.shape()[0]);
            let yp = m.forward(vec![xp]).unwrap()[0].data()[s * c + 1];
            let ym = m.forward(vec![xm]).unwrap()[0].data()[s * c + 1];
            let fd = (yp - ym) / (2.0 * h);
            let g = a.relevance.data()[i];
            assert!(
                (fd - g).abs() < 1e-5 * (1.0 + g.abs()),
                "{name} [{i}]: gradient {g} vs finite difference {fd}"
            );
        }
    }
}

#[test]
fn integrated_gradients_with_one_step_is_input_times_gradient() {
    let (m, x) = load("tiny_resnet");
    let e = Explainer::new(&m);
    let g = e
        .attribute(
            &x,
            &Target::Predicted,
            SeedMode::OneHot,
            &Attributor::Gradient,
        )
        .unwrap();
    let ig = e
        .attribute(
            &x,
            &Target::Predicted,
            SeedMode::OneHot,
            &Attributor::IntegratedGradients {
                n_iter: 1,
                baseline: 0.0,
                baselines: prism_attribution::Baselines::Constant,
            },
        )
        .unwrap();
    for ((a, b), xv) in ig
        .relevance
        .data()
        .iter()
        .zip(g.relevance.data())
        .zip(x.data())
    {
        assert!((a - b * xv).abs() < 1e-12);
    }
}

#[test]
fn smoothgrad_is_deterministic_per_seed_and_one_iteration_is_the_gradient() {
    let (m, x) = load("tiny_mobilenetv2");
    let e = Explainer::new(&m);
    let sg = |seed| Attributor::SmoothGrad {
        noise_level: 0.1,
        n_iter: 4,
        seed,
        noise: prism_attribution::Noise::Relative,
    };
    let a = e
        .attribute(&x, &Target::Predicted, SeedMode::OneHot, &sg(3))
        .unwrap();
    let b = e
        .attribute(&x, &Target::Predicted, SeedMode::OneHot, &sg(3))
        .unwrap();
    let c = e
        .attribute(&x, &Target::Predicted, SeedMode::OneHot, &sg(4))
        .unwrap();
    assert_eq!(a.relevance, b.relevance);
    assert_ne!(a.relevance, c.relevance);
    let one = e
        .attribute(
            &x,
            &Target::Predicted,
            SeedMode::OneHot,
            &Attributor::SmoothGrad {
                noise_level: 0.1,
                n_iter: 1,
                seed: 0,
                noise: prism_attribution::Noise::Relative,
            },
        )
        .unwrap();
    let g = e
        .attribute(
            &x,
            &Target::Predicted,
            SeedMode::OneHot,
            &Attributor::Gradient,
        )
        .unwrap();
    assert_eq!(one.relevance, g.relevance);
}

#[test]
fn occlusion_with_a_full_window_gives_the_target_score_everywhere() {
    let (m, x) = load("tiny_resnet");
    let e = Explainer::new(&m);
    let occ = Attributor::Occlusion {
        window: vec![64],
        stride: vec![64],
        invert: false,
        fill: prism_attribution::Fill::Zero,
    };
    let a = e
        .attribute(&x, &Target::Predicted, SeedMode::OneHot, &occ)
        .unwrap();
    let per = x.len() / x.shape()[0];
    let c = a.output.shape()[1];
    for s in 0..x.shape()[0] {
        let want = a.output.data()[s * c + a.targets[s]];
        assert!(a.relevance.data()[s * per..(s + 1) * per]
            .iter()
            .all(|v| (v - want).abs() < 1e-9));
    }
}

#[test]
fn every_builtin_composite_runs_on_every_architecture() {
    let p = CompositeParams {
        low: Some(prism_attribution::Bound::Scalar(-3.0)),
        high: Some(prism_attribution::Bound::Scalar(3.0)),
        ..Default::default()
    };
    for name in [
        "tiny_vgg_bn",
        "tiny_resnet",
        "tiny_mobilenetv2",
        "tiny_densenet",
        "mlp",
        "conv1d",
        "ops_conv",
        "ops_pool",
        "ops_elementwise",
    ] {
        let (m, x) = load(name);
        for comp in prism_attribution::COMPOSITES {
            let c = Composite::builtin(comp, &p).unwrap();
            let e = Explainer::new(&m).with_composite(c);
            let a = e
                .attribute(
                    &x,
                    &Target::Predicted,
                    SeedMode::OneHot,
                    &Attributor::Gradient,
                )
                .unwrap_or_else(|err| panic!("{name}/{comp}: {err}"));
            assert_eq!(a.relevance.shape(), x.shape());
            assert!(
                a.relevance.data().iter().all(|v| v.is_finite()),
                "{name}/{comp}: non-finite relevance"
            );
        }
    }
}

#[test]
fn bad_configuration_gets_clear_errors() {
    let e = Composite::builtin("epsilon-magic", &CompositeParams::default()).unwrap_err();
    assert!(
        matches!(e, AttributionError::UnknownComposite { .. })
            && e.to_string().contains("epsilon-plus"),
        "{e}"
    );
    let p = CompositeParams {
        alpha: 2.0,
        beta: 2.0,
        ..Default::default()
    };
    let e = Composite::builtin("epsilon-alpha2-beta1", &p).unwrap_err();
    assert!(e.to_string().contains("alpha − beta must be 1"), "{e}");
    let e = Composite::builtin("epsilon-gamma-box", &CompositeParams::default()).unwrap_err();
    assert!(e.to_string().contains("--low"), "{e}");
    let e = Attributor::by_name("lime", &AttributorParams::default()).unwrap_err();
    assert!(e.to_string().contains("smoothgrad"), "{e}");

    let (m, x) = load("tiny_resnet");
    let ex = Explainer::new(&m);
    let e = ex
        .attribute(
            &x,
            &Target::Class(10),
            SeedMode::OneHot,
            &Attributor::Gradient,
        )
        .unwrap_err();
    assert!(
        e.to_string().contains("out of range") && e.to_string().contains("10 classes"),
        "{e}"
    );
    let e = ex
        .attribute(
            &x,
            &Target::PerSample(vec![1]),
            SeedMode::OneHot,
            &Attributor::Gradient,
        )
        .unwrap_err();
    assert!(e.to_string().contains("1 labels for 2 samples"), "{e}");
    let wrong = Tensor::<f64>::zeros(&[2, 1, 7, 5]);
    let e = ex
        .attribute(
            &wrong,
            &Target::Predicted,
            SeedMode::OneHot,
            &Attributor::Gradient,
        )
        .unwrap_err();
    assert!(e.to_string().contains("expects shape"), "{e}");
}

#[test]
fn composite_files_parse_and_report_mistakes() {
    let text = r#"
name = "my-lrp"
[[rule]]
match = { group = "convolution", first = true }
rule = "zbox"
low = -2.0
high = [1.0, 2.0, 3.0]
[[rule]]
match = { name = "*conv*" }
rule = "gamma"
gamma = 0.5
[[rule]]
match = { op = "Gemm" }
rule = "epsilon"
epsilon = 1e-3
"#;
    let c = Composite::from_toml(text).unwrap();
    assert_eq!(c.name, "my-lrp");
    assert_eq!(c.entries.len(), 3);
    let e = Composite::from_toml(
        "[[rule]]\nmatch = { group = \"dense\" }\nrule = \"alpha-beta\"\nalpha = 3.0\nbeta = 1.0\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("alpha − beta must be 1"), "{e}");
    let e = Composite::from_toml("[[rule]]\nmatch = { group = \"dense\" }\nrule = \"magic\"\n")
        .unwrap_err();
    assert!(e.to_string().contains("unknown rule 'magic'"), "{e}");
    let e = Composite::from_toml("[[rule]]\nmatch = { group = \"blob\" }\nrule = \"pass\"\n")
        .unwrap_err();
    assert!(e.to_string().contains("blob"), "{e}");
}
