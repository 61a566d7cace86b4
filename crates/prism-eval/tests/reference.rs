//! Region perturbation against the independent numpy implementation (`scripts/eval_reference.py`):
//! the same fixture model, relevance, targets and seed give the same curves to 1e-5.

use std::path::{Path, PathBuf};

use prism_attribution::resolve_targets;
use prism_attribution::Target;
use prism_eval::{forward_batched, target_scores, Baseline, Order, Quiet};
use prism_eval::{perturbation::aopc, RegionPerturbation};
use prism_model::{Model, Tensor};
use prism_store::npy;
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/eval")
}

fn curves_of(v: &Value) -> Vec<Vec<f64>> {
    v.as_array()
        .expect("curves")
        .iter()
        .map(|c| {
            c.as_array()
                .expect("curve")
                .iter()
                .map(|x| x.as_f64().expect("f64"))
                .collect()
        })
        .collect()
}

#[test]
fn region_perturbation_matches_numpy_reference() {
    let d = dir();
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(d.join("region_perturbation.reference.json")).expect("reference"),
    )
    .expect("json");
    let model = Model::load(&d.join("eval_cnn.onnx")).expect("model");
    let x: Tensor<f64> = npy::read_float(&d.join("eval_cnn.input.npy")).expect("input");
    let r: Tensor<f64> = npy::read_float(&d.join("eval_cnn.relevance.npy")).expect("relevance");
    let out = forward_batched(&model, &x, 4).expect("forward");
    let targets = resolve_targets(&out, &Target::Predicted).expect("targets");
    let expected_targets: Vec<usize> = reference["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .map(|t| t.as_u64().expect("int") as usize)
        .collect();
    assert_eq!(targets, expected_targets);
    let original = target_scores(&out, &targets).expect("scores");
    let seed = reference["seed"].as_u64().expect("seed");
    let mut checked = 0;
    for cfg in reference["configs"].as_array().expect("configs") {
        let patch = cfg["patch"].as_u64().expect("patch") as usize;
        let rp = RegionPerturbation {
            patch,
            steps: cfg["steps"].as_u64().expect("steps") as usize,
            baseline: Baseline::parse(cfg["baseline"].as_str().expect("baseline"), patch)
                .expect("baseline"),
            // An odd batch size, so batches straddle samples and orders.
            batch_size: 7,
            seed,
        };
        for (order, key) in [
            (Order::Morf, "morf"),
            (Order::Lerf, "lerf"),
            (Order::Random, "random"),
        ] {
            let rel = (order != Order::Random).then_some(&r);
            let jobs = rp.jobs(&x, rel, order).expect("jobs");
            let got = rp
                .curves(&model, &x, &targets, &original, &jobs, &Quiet)
                .expect("curves");
            let want = curves_of(&cfg[key]);
            assert_eq!(got.len(), want.len());
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g.len(), w.len(), "{cfg:?} {key}");
                for (k, (a, b)) in g.iter().zip(w).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                        "{} {key} sample {i} step {k}: prism {a} numpy {b}",
                        cfg["baseline"]
                    );
                }
            }
            let mean_aopc = got.iter().map(|c| aopc(c)).sum::<f64>() / got.len() as f64;
            let want_aopc = cfg[format!("{key}_aopc").as_str()].as_f64().expect("aopc");
            assert!(
                (mean_aopc - want_aopc).abs() < 1e-5,
                "{key}: {mean_aopc} vs {want_aopc}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 18);
}
