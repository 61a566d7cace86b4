//! Token models (integer ids, an attention mask): relevance is read off the embedding lookup
//! and summed per token; with the plain gradient it equals PyTorch's gradient at the
//! word-embedding output (tests/fixtures/models, scripts/make_model_fixtures.py, float64).

use std::path::{Path, PathBuf};

use prism_attribution::{AttributeAt, Attributor, Explainer, SeedMode, Target};
use prism_model::{Model, Tensor};
use prism_store::npy;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models")
}

#[test]
fn per_token_gradient_matches_torch_for_both_exporters() {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("manifest.json")).unwrap())
            .unwrap();
    let mut checked = 0;
    for name in ["bert", "gpt"] {
        let entry = &manifest["models"][name];
        let tg = &entry["token_gradient"];
        let want: Tensor<f64> = npy::read_float(&dir().join(tg["file"].as_str().unwrap())).unwrap();
        let targets: Vec<usize> = tg["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap() as usize)
            .collect();
        let inputs: Vec<Tensor<f64>> = (0..entry["inputs"].as_array().unwrap().len())
            .map(|i| npy::read_float(&dir().join(format!("{name}.in{i}.npy"))).unwrap())
            .collect();
        for exporter in ["legacy", "dynamo"] {
            let file = entry["exports"][exporter]["onnx"].as_str().unwrap();
            let model = Model::load(&dir().join(file)).unwrap();
            let a = Explainer::new(&model)
                .attribute_inputs(
                    inputs.clone(),
                    &AttributeAt::Auto,
                    &Target::PerSample(targets.clone()),
                    SeedMode::OneHot,
                    &Attributor::Gradient,
                )
                .unwrap_or_else(|e| panic!("{name} {exporter}: {e}"));
            let per_token = a
                .per_token
                .clone()
                .unwrap_or_else(|| panic!("{name} {exporter}: read off {}, not per token", a.at));
            assert_eq!(a.relevance.shape(), want.shape(), "{name} {exporter}");
            let scale = want.data().iter().fold(0f64, |m, v| m.max(v.abs()));
            let err = a
                .relevance
                .data()
                .iter()
                .zip(want.data())
                .map(|(p, q)| (p - q).abs())
                .fold(0f64, f64::max)
                / scale;
            eprintln!("{name} {exporter}: at '{}', max error {err:.1e}", a.at);
            // The graph stores constants (1/√d, the mask fill) in f32; torch keeps them exact.
            assert!(err < 1e-6, "{name} {exporter}: gradient differs by {err:e}");
            // per token: the sum over the hidden dimension
            let h = *want.shape().last().unwrap();
            assert_eq!(per_token.shape(), &want.shape()[..2]);
            for (s, row) in per_token.data().iter().zip(a.relevance.data().chunks(h)) {
                assert!((s - row.iter().sum::<f64>()).abs() < 1e-12);
            }
            // The same tensor named explicitly gives the same relevance.
            let named = Explainer::new(&model)
                .attribute_inputs(
                    inputs.clone(),
                    &AttributeAt::Named(a.at.clone()),
                    &Target::PerSample(targets.clone()),
                    SeedMode::OneHot,
                    &Attributor::Gradient,
                )
                .unwrap();
            assert_eq!(named.relevance, a.relevance);
            checked += 1;
        }
    }
    assert_eq!(checked, 4);
}

#[test]
fn integer_inputs_cannot_be_attribution_targets_and_perturbing_attributors_are_refused() {
    let model = Model::load(&dir().join("bert.legacy.onnx")).unwrap();
    let inputs: Vec<Tensor<f64>> = (0..2)
        .map(|i| npy::read_float(&dir().join(format!("bert.in{i}.npy"))).unwrap())
        .collect();
    let ex = Explainer::new(&model);
    let e = ex
        .attribute_inputs(
            inputs.clone(),
            &AttributeAt::Named("input_ids".into()),
            &Target::Predicted,
            SeedMode::OneHot,
            &Attributor::Gradient,
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("holds integers"), "{e}");
    let e = ex
        .attribute_inputs(
            inputs.clone(),
            &AttributeAt::Named("no_such_tensor".into()),
            &Target::Predicted,
            SeedMode::OneHot,
            &Attributor::Gradient,
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no tensor or node named 'no_such_tensor'"),
        "{e}"
    );
    let e = ex
        .attribute_inputs(
            inputs,
            &AttributeAt::Auto,
            &Target::Predicted,
            SeedMode::OneHot,
            &Attributor::IntegratedGradients {
                n_iter: 4,
                baseline: 0.0,
                baselines: prism_attribution::Baselines::Constant,
            },
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("integrated-gradients perturbs a float input"),
        "{e}"
    );
}
