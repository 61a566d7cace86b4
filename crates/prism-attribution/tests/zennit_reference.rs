//! Agreement with Zennit: every case in tests/fixtures/reference/manifest.json (written by
//! scripts/make_reference.py with torch + zennit) is recomputed and compared. float64: max error
//! ≤ 1e-6 relative to max |R|; float32: cosine similarity ≥ 0.9999.
//!
//! The `_literal` cases show what Zennit gives when functional ops (F.relu, x + y, …) stay
//! invisible to its module hooks; Prism sees every node, so those are not expected to match.

use std::path::{Path, PathBuf};

use prism_attribution::{
    Attributor, Bound, Composite, CompositeParams, Explainer, SeedMode, Target,
};
use prism_model::{Float, Model, Tensor};
use prism_store::npy;
use serde_json::Value;

fn refdir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/reference")
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn run_case<T: Float>(case: &Value, model: &Model) -> (Tensor<T>, Tensor<T>) {
    let name = case["model"].as_str().unwrap();
    let x: Tensor<T> = npy::read_float(&fixtures().join(format!("{name}.input.npy"))).unwrap();
    let want: Tensor<T> = npy::read_float(&refdir().join(case["file"].as_str().unwrap())).unwrap();
    let p = &case["params"];
    let mut explainer = Explainer::new(model);
    if let Some(comp) = case["composite"].as_str() {
        let params = CompositeParams {
            low: p["low"].as_f64().map(Bound::Scalar),
            high: p["high"].as_f64().map(Bound::Scalar),
            zero_bias: p["zero_params"].as_str() == Some("bias"),
            ..Default::default()
        };
        explainer = explainer.with_composite(Composite::builtin(comp, &params).unwrap());
    }
    let targets: Vec<usize> = case["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let seed = if case["seed_mode"] == "logit" {
        SeedMode::Logit
    } else {
        SeedMode::OneHot
    };
    let n_iter = p["n_iter"].as_u64().unwrap_or(20) as usize;
    let (attributor, noise) = match case["attributor"].as_str().unwrap() {
        "gradient" => (Attributor::Gradient, None),
        "integrated-gradients" => (
            Attributor::IntegratedGradients {
                n_iter,
                baseline: 0.0,
                baselines: prism_attribution::Baselines::Constant,
            },
            None,
        ),
        "occlusion" => {
            let w = p["window_arg"].as_u64().unwrap() as usize;
            let s = p["stride_arg"].as_u64().unwrap() as usize;
            (
                Attributor::Occlusion {
                    window: vec![w],
                    stride: vec![s],
                    invert: false,
                    fill: prism_attribution::Fill::Zero,
                },
                None,
            )
        }
        "smoothgrad" => {
            // z (n_iter-1, *shape) scaled per sample by std = 0.1 · (max − min), computed in T
            let z: Tensor<T> =
                npy::read_float(&refdir().join(p["noise_file"].as_str().unwrap())).unwrap();
            let per = x.len() / x.shape()[0];
            let stds: Vec<T> = x
                .data()
                .chunks(per)
                .map(|c| {
                    let (lo, hi) = c
                        .iter()
                        .fold((c[0], c[0]), |(a, b), &v| (a.min(v), b.max(v)));
                    T::of(p["noise_level"].as_f64().unwrap()) * (hi - lo)
                })
                .collect();
            let mut noise: Vec<Tensor<T>> = (0..n_iter - 1)
                .map(|i| {
                    let data = (0..x.len())
                        .map(|j| z.data()[i * x.len() + j] * stds[j / per])
                        .collect();
                    Tensor::new(x.shape().to_vec(), data).unwrap()
                })
                .collect();
            noise.push(Tensor::zeros(x.shape()));
            (
                Attributor::SmoothGrad {
                    noise_level: 0.1,
                    n_iter,
                    seed: 0,
                    noise: prism_attribution::Noise::Relative,
                },
                Some(noise),
            )
        }
        other => panic!("unknown attributor {other}"),
    };
    let a = explainer
        .attribute_with_noise(
            &x,
            &Target::PerSample(targets.clone()),
            seed,
            &attributor,
            noise.as_deref(),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", case["file"]));
    assert_eq!(a.targets, targets);
    (a.relevance, want)
}

#[test]
fn relevance_matches_zennit_on_every_reference_case() {
    let text = std::fs::read_to_string(refdir().join("manifest.json")).expect("reference manifest");
    let m: Value = serde_json::from_str(&text).unwrap();
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in m["cases"].as_array().unwrap() {
        let method = case["method"].as_str().unwrap();
        if method.ends_with("_literal") {
            continue;
        }
        let name = case["model"].as_str().unwrap();
        let model = Model::load(&fixtures().join(format!("{name}.onnx"))).unwrap();
        let file = case["file"].as_str().unwrap();
        if case["dtype"] == "float64" {
            let (got, want) = run_case::<f64>(case, &model);
            let scale = want
                .data()
                .iter()
                .fold(0f64, |a, v| a.max(v.abs()))
                .max(1e-30);
            let err = got
                .data()
                .iter()
                .zip(want.data())
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max)
                / scale;
            if err.is_nan() || err > 1e-6 {
                failures.push(format!("{file}: relative error {err:e}"));
            }
        } else {
            let (got, want) = run_case::<f32>(case, &model);
            let dot: f64 = got
                .data()
                .iter()
                .zip(want.data())
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum();
            let na: f64 = got
                .data()
                .iter()
                .map(|a| (*a as f64).powi(2))
                .sum::<f64>()
                .sqrt();
            let nb: f64 = want
                .data()
                .iter()
                .map(|b| (*b as f64).powi(2))
                .sum::<f64>()
                .sqrt();
            let cos = if na == 0.0 && nb == 0.0 {
                1.0
            } else {
                dot / (na * nb)
            };
            if cos.is_nan() || cos < 0.9999 {
                failures.push(format!("{file}: cosine {cos}"));
            }
        }
        checked += 1;
    }
    assert!(checked >= 200, "only {checked} cases checked");
    assert!(
        failures.is_empty(),
        "{} of {checked} cases differ from Zennit:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
