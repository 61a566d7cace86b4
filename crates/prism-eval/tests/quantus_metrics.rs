//! Prism's faithfulness correlation, ROAD and IROF against Quantus 0.6 on the fixtures of
//! `scripts/make_quantus_metrics_fixtures.py` (values to 1e-5), and the one-channel relevance
//! of class-activation maps standing for every channel.

use std::path::{Path, PathBuf};

use prism_eval::faithfulness::{grid_segments, linear_imputation};
use prism_eval::source::segments_from;
use prism_eval::{
    forward_batched, target_scores, FaithfulnessCorrelation, Irof, Order, Quiet,
    RegionPerturbation, Road, Samples,
};
use prism_model::{Model, Tensor};
use prism_store::npy;
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/eval/quantus")
}

struct Fixture {
    model: Model,
    x: Tensor<f64>,
    r: Tensor<f64>,
    targets: Vec<usize>,
    original: Vec<f64>,
    values: Value,
}

fn fixture() -> Fixture {
    let d = dir();
    let model = Model::load(&d.join("tiny_cnn.onnx")).expect("model");
    let x: Tensor<f64> = npy::read_float(&d.join("input.npy")).expect("input");
    let r: Tensor<f64> = npy::read_float(&d.join("relevance.npy")).expect("relevance");
    let values: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("values.json")).expect("values"))
            .expect("json");
    let targets: Vec<usize> = values["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .map(|t| t.as_u64().expect("int") as usize)
        .collect();
    let out = forward_batched(&model, &x, 3).expect("forward");
    let original = target_scores(&out, &targets).expect("scores");
    Fixture {
        model,
        x,
        r,
        targets,
        original,
        values,
    }
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("f64"))
        .collect()
}

fn close(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-5, "{what}[{i}]: Prism {g}, Quantus {w}");
    }
}

#[test]
fn faithfulness_correlation_matches_quantus_on_its_subsets() {
    let f = fixture();
    let fc = &f.values["faithfulness_correlation"];
    let subsets: Tensor<f64> = npy::read_float(&dir().join("subsets.npy")).expect("subsets");
    let [n, runs, k] = [subsets.shape()[0], subsets.shape()[1], subsets.shape()[2]];
    let subsets: Vec<Vec<Vec<usize>>> = (0..n)
        .map(|i| {
            (0..runs)
                .map(|r| {
                    let s = (i * runs + r) * k;
                    subsets.data()[s..s + k]
                        .iter()
                        .map(|&v| v as usize)
                        .collect()
                })
                .collect()
        })
        .collect();
    let metric = FaithfulnessCorrelation {
        nr_runs: runs,
        subset_size: k,
        batch_size: 7,
        ..FaithfulnessCorrelation::default()
    };
    let samples = Samples {
        x: &f.x,
        targets: &f.targets,
        original: &f.original,
        first: 0,
    };
    let got = metric
        .scores_with(&f.model, &samples, &f.r, &subsets, &Quiet)
        .expect("fc");
    close(&got, &floats(&fc["per_sample"]), "faithfulness correlation");
    // Prism's own subsets are seeded: the same seed gives the same scores, another seed others.
    let a = metric.scores(&f.model, &samples, &f.r, &Quiet).expect("fc");
    assert_eq!(
        a,
        metric.scores(&f.model, &samples, &f.r, &Quiet).expect("fc")
    );
    let other = FaithfulnessCorrelation { seed: 1, ..metric };
    assert_ne!(
        a,
        other.scores(&f.model, &samples, &f.r, &Quiet).expect("fc")
    );
}

#[test]
fn linear_imputation_matches_quantus_noisy_linear_imputation_without_noise() {
    let f = fixture();
    let per = f.x.len() / f.x.shape()[0];
    for case in f.values["imputations"].as_array().expect("cases") {
        let i = case["sample"].as_u64().expect("sample") as usize;
        let removed: Vec<usize> = case["removed"]
            .as_array()
            .expect("removed")
            .iter()
            .map(|v| v.as_u64().expect("int") as usize)
            .collect();
        let got = linear_imputation(&f.x.data()[i * per..(i + 1) * per], (1, 24, 24), &removed)
            .expect("imputation");
        close(&got, &floats(&case["imputed"]), "imputation");
    }
}

#[test]
fn road_without_noise_matches_quantus() {
    let f = fixture();
    let road = &f.values["road"];
    let metric = Road {
        percentages: floats(&road["percentages"]),
        noise: 0.0,
        batch_size: 3,
        seed: 0,
    };
    let samples = Samples {
        x: &f.x,
        targets: &f.targets,
        original: &f.original,
        first: 0,
    };
    let curves = metric
        .curves(&f.model, &samples, &f.r, &Quiet)
        .expect("road");
    let n = curves.len() as f64;
    let mean: Vec<f64> = (0..metric.percentages.len())
        .map(|j| curves.iter().map(|c| c[j]).sum::<f64>() / n)
        .collect();
    close(&mean, &floats(&road["curve"]), "ROAD curve");
}

#[test]
fn irof_on_slic_segments_matches_quantus() {
    let f = fixture();
    let labels: Tensor<f64> = npy::read_float(&dir().join("segments.npy")).expect("segments");
    let segments = segments_from(&labels, f.x.shape()).expect("segments");
    let samples = Samples {
        x: &f.x,
        targets: &f.targets,
        original: &f.original,
        first: 0,
    };
    let got: Vec<f64> = Irof { batch_size: 5 }
        .scores(&f.model, &samples, &f.r, &segments, &Quiet)
        .expect("irof")
        .into_iter()
        .map(|(aoc, _)| aoc)
        .collect();
    close(&got, &floats(&f.values["irof"]["per_sample"]), "IROF");
}

/// The three-channel evaluation fixture, its relevance summed to one channel, and that channel
/// copied into all three.
fn one_channel_and_broadcast() -> (Model, Tensor<f64>, Tensor<f64>, Tensor<f64>) {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/eval");
    let model = Model::load(&d.join("eval_cnn.onnx")).expect("model");
    let x: Tensor<f64> = npy::read_float(&d.join("eval_cnn.input.npy")).expect("input");
    let r: Tensor<f64> = npy::read_float(&d.join("eval_cnn.relevance.npy")).expect("relevance");
    let (n, c, plane) = (x.shape()[0], x.shape()[1], x.shape()[2] * x.shape()[3]);
    let mut one = vec![0.0; n * plane];
    for i in 0..n {
        for ch in 0..c {
            for p in 0..plane {
                one[i * plane + p] += r.data()[(i * c + ch) * plane + p];
            }
        }
    }
    let mut wide = Vec::with_capacity(x.len());
    for i in 0..n {
        for _ in 0..c {
            wide.extend_from_slice(&one[i * plane..(i + 1) * plane]);
        }
    }
    let mut s1 = x.shape().to_vec();
    s1[1] = 1;
    let one = Tensor::new(s1, one).expect("one channel");
    let wide = Tensor::new(x.shape().to_vec(), wide).expect("broadcast");
    (model, x, one, wide)
}

#[test]
fn one_channel_relevance_stands_for_every_channel() {
    let (model, x, one, wide) = one_channel_and_broadcast();
    let out = forward_batched(&model, &x, 4).expect("forward");
    let targets = prism_attribution::resolve_targets(&out, &prism_attribution::Target::Predicted)
        .expect("targets");
    let original = target_scores(&out, &targets).expect("scores");
    let samples = Samples {
        x: &x,
        targets: &targets,
        original: &original,
        first: 0,
    };
    let fc = FaithfulnessCorrelation {
        nr_runs: 10,
        subset_size: 64,
        ..FaithfulnessCorrelation::default()
    };
    let a = fc.scores(&model, &samples, &one, &Quiet).expect("fc");
    assert_eq!(a, fc.scores(&model, &samples, &wide, &Quiet).expect("fc"));
    assert!(a.iter().all(|v| v.is_finite()));
    let road = Road {
        percentages: vec![20.0, 60.0],
        ..Road::default()
    };
    assert_eq!(
        road.curves(&model, &samples, &one, &Quiet).expect("road"),
        road.curves(&model, &samples, &wide, &Quiet).expect("road")
    );
    let seg = vec![grid_segments(32, 32); x.shape()[0]];
    let irof = Irof::default();
    let i1 = irof
        .scores(&model, &samples, &one, &seg, &Quiet)
        .expect("irof");
    let i3 = irof
        .scores(&model, &samples, &wide, &seg, &Quiet)
        .expect("irof");
    for (a, b) in i1.iter().zip(&i3) {
        assert!((a.0 - b.0).abs() < 1e-12);
    }
    let rp = RegionPerturbation {
        patch: 4,
        steps: 10,
        ..RegionPerturbation::default()
    };
    let jobs1 = rp.jobs(&x, Some(&one), Order::Morf).expect("jobs");
    let jobs3 = rp.jobs(&x, Some(&wide), Order::Morf).expect("jobs");
    assert_eq!(
        jobs1.iter().map(|j| j.order.clone()).collect::<Vec<_>>(),
        jobs3.iter().map(|j| j.order.clone()).collect::<Vec<_>>()
    );
    // two channels for three-channel inputs are refused
    let mut s2 = x.shape().to_vec();
    s2[1] = 2;
    let two = Tensor::new(s2, vec![0.0; 2 * one.len()]).expect("two channels");
    assert!(fc.scores(&model, &samples, &two, &Quiet).is_err());
}
