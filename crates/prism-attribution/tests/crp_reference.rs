//! Agreement with zennit-crp (0.6.0, on Zennit 1.0): every case in
//! tests/fixtures/crp/manifest.json (written by scripts/make_crp_fixtures.py) is recomputed with
//! Prism's conditions ([`Concepts`]) and recording, and compared: float64 heatmaps, recorded
//! relevance and activations within 1e-6 of the largest magnitude; float32 cosine ≥ 0.9999.
//!
//! zennit-crp records twice the relevance at a conditioned layer under
//! `exclude_parallel=True` (its `autograd.grad` fills the layer's `.grad`, and the following
//! backward adds the same again; the heatmap is not affected); the manifest gives that factor
//! per record and the comparison divides by it: Prism records the relevance that flows on.

use std::path::{Path, PathBuf};

use prism_attribution::{
    Attributor, Composite, CompositeParams, Concepts, Condition, Explainer, Parallel, Record,
    RecordMode, SeedMode, Target,
};
use prism_model::{Float, Model, Tensor};
use prism_store::npy;
use serde_json::Value;

/// The composite every case uses (zennit's `EpsilonPlusFlat`, default parameters).
fn epsilon_plus_flat() -> Composite {
    Composite::builtin("epsilon-plus-flat", &CompositeParams::default()).unwrap()
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/crp")
}

fn max_rel_err<T: Float>(got: &Tensor<T>, want: &Tensor<T>) -> f64 {
    assert_eq!(got.shape(), want.shape());
    let scale = want
        .data()
        .iter()
        .fold(0f64, |m, v| m.max(v.f64().abs()))
        .max(1e-30);
    got.data()
        .iter()
        .zip(want.data())
        .fold(0f64, |m, (a, b)| m.max((a.f64() - b.f64()).abs()))
        / scale
}

fn cosine<T: Float>(a: &Tensor<T>, b: &Tensor<T>) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (x, y) in a.data().iter().zip(b.data()) {
        ab += x.f64() * y.f64();
        aa += x.f64() * x.f64();
        bb += y.f64() * y.f64();
    }
    ab / (aa.sqrt() * bb.sqrt()).max(1e-300)
}

/// The case's conditions as Prism spells them, and the target: zennit-crp pairs a list of
/// conditions with the samples when their counts agree (one condition per sample, each with
/// its own `y`), else broadcasts (every sample under every condition, one `y` for all).
fn conditions_and_target(case: &Value) -> (Vec<Condition>, Target) {
    let conds = case["conditions"].as_array().unwrap();
    let samples = case["samples"].as_array().unwrap().len();
    let layers = |c: &Value| -> Vec<(String, Vec<usize>)> {
        c.as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| *k != "y")
            .map(|(k, v)| {
                let ch = v
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as usize)
                    .collect();
                (k.clone(), ch)
            })
            .collect()
    };
    let y = |c: &Value| c["y"][0].as_u64().unwrap() as usize;
    if conds.len() == samples && case["rows"].as_u64().unwrap() as usize == samples {
        let first = layers(&conds[0]);
        assert!(
            conds.iter().all(|c| layers(c) == first),
            "paired conditions differ"
        );
        let target = Target::PerSample(conds.iter().map(y).collect());
        let conditions = if first.is_empty() {
            Vec::new()
        } else {
            vec![Condition { layers: first }]
        };
        (conditions, target)
    } else {
        let ys: Vec<usize> = conds.iter().map(y).collect();
        assert!(
            ys.iter().all(|t| *t == ys[0]),
            "broadcast conditions with several y"
        );
        let conditions = conds
            .iter()
            .map(|c| Condition { layers: layers(c) })
            .collect();
        (conditions, Target::Class(ys[0]))
    }
}

fn run_case<T: Float>(case: &Value, manifest: &Value, failures: &mut Vec<String>) {
    let name = case["model"].as_str().unwrap();
    let m = &manifest["models"][name];
    let model = Model::load(&dir().join(m["onnx"].as_str().unwrap())).unwrap();
    let x: Tensor<T> = npy::read_float(&dir().join(m["input"].as_str().unwrap())).unwrap();
    let samples: Vec<usize> = case["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let row = x.len() / x.shape()[0];
    let mut data = Vec::new();
    for &s in &samples {
        data.extend_from_slice(&x.data()[s * row..(s + 1) * row]);
    }
    let mut shape = x.shape().to_vec();
    shape[0] = samples.len();
    let x = Tensor::new(shape, data).unwrap();
    let (conditions, target) = conditions_and_target(case);
    let record = case["record"].as_object().map(|r| Record {
        patterns: r.keys().cloned().collect(),
        mode: RecordMode::Maps,
    });
    let concepts = Concepts {
        conditions,
        parallel: if case["exclude_parallel"].as_bool().unwrap() {
            Parallel::Exclude
        } else {
            Parallel::Include
        },
        record,
    };
    let composite = epsilon_plus_flat();
    let explainer = Explainer::new(&model)
        .with_composite(composite)
        .with_concepts(concepts);
    let label = format!(
        "{name} {} {}",
        case["case"].as_str().unwrap(),
        case["dtype"].as_str().unwrap()
    );
    let a = match explainer.attribute(&x, &target, SeedMode::Logit, &Attributor::Gradient) {
        Ok(a) => a,
        Err(e) => {
            failures.push(format!("{label}: {e}"));
            return;
        }
    };
    let want: Tensor<T> = npy::read_float(&dir().join(case["file"].as_str().unwrap())).unwrap();
    let f64_case = case["dtype"] == "float64";
    let check = |failures: &mut Vec<String>, what: &str, got: &Tensor<T>, want: &Tensor<T>| {
        if got.shape() != want.shape() {
            failures.push(format!(
                "{label} {what}: shape {:?}, want {:?}",
                got.shape(),
                want.shape()
            ));
        } else if f64_case {
            let e = max_rel_err(got, want);
            if e > 1e-6 {
                failures.push(format!("{label} {what}: max error {e:e} of max |R|"));
            }
        } else {
            let c = cosine(got, want);
            if c < 0.9999 {
                failures.push(format!("{label} {what}: cosine {c}"));
            }
        }
    };
    check(failures, "heatmap", &a.relevance, &want);
    if let Some(rec) = case["record"].as_object() {
        for (node, r) in rec {
            let Some(got) = a.recorded.iter().find(|g| g.node == *node) else {
                failures.push(format!("{label}: nothing recorded at {node}"));
                continue;
            };
            let factor = r["relevance_factor"].as_f64().unwrap();
            let want_rel: Tensor<f64> =
                npy::read_float(&dir().join(r["relevance"].as_str().unwrap())).unwrap();
            let want_rel: Tensor<T> = want_rel.map(|v| T::of(v / factor));
            let want_act: Tensor<T> =
                npy::read_float(&dir().join(r["activation"].as_str().unwrap())).unwrap();
            check(
                failures,
                &format!("relevance at {node}"),
                &got.relevance,
                &want_rel,
            );
            check(
                failures,
                &format!("activation at {node}"),
                &got.activation,
                &want_act,
            );
        }
    }
}

#[test]
fn conditional_relevance_matches_zennit_crp() {
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("manifest.json")).unwrap())
            .unwrap();
    let mut failures = Vec::new();
    let cases = manifest["cases"].as_array().unwrap();
    for case in cases {
        match case["dtype"].as_str().unwrap() {
            "float64" => run_case::<f64>(case, &manifest, &mut failures),
            _ => run_case::<f32>(case, &manifest, &mut failures),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn resnet() -> (Model, Tensor<f64>) {
    let model = Model::load(&dir().join("crp_resnet.onnx")).unwrap();
    let x: Tensor<f64> = npy::read_float(&dir().join("crp_resnet.input.npy")).unwrap();
    (model, x)
}

fn explain(
    model: &Model,
    x: &Tensor<f64>,
    concepts: Concepts,
) -> prism_attribution::Attribution<f64> {
    let composite = epsilon_plus_flat();
    Explainer::new(model)
        .with_composite(composite)
        .with_concepts(concepts)
        .attribute(x, &Target::Class(1), SeedMode::Logit, &Attributor::Gradient)
        .unwrap()
}

/// Conditions that split a layer's channels into parts give heatmaps that add up to the heatmap
/// with all channels kept (masking is linear), once the relevance around the layer (the heatmap
/// with no channel kept: the skip path under `Include`, zero under `Exclude`), which every part
/// carries, is counted once.
#[test]
fn conditions_partitioning_the_channels_add_up() {
    let (model, x) = resnet();
    for (layer, c) in [
        ("/layer/layer.1/conv2/Conv", 16),
        ("/layer/layer.0/relu_1/Relu", 8),
    ] {
        let whole = explain(&model, &x, Concepts::default()).relevance;
        for parallel in [Parallel::Include, Parallel::Exclude] {
            let one = |chs: Vec<usize>| Condition {
                layers: vec![(layer.to_string(), chs)],
            };
            let all = explain(
                &model,
                &x,
                Concepts {
                    conditions: vec![one((0..c).collect())],
                    parallel,
                    record: None,
                },
            )
            .relevance;
            // every channel, one condition each: K = c rows per sample
            let parts = explain(
                &model,
                &x,
                Concepts {
                    conditions: (0..c).map(|ch| one(vec![ch])).collect(),
                    parallel,
                    record: None,
                },
            )
            .relevance;
            let none = explain(
                &model,
                &x,
                Concepts {
                    conditions: vec![one(Vec::new())],
                    parallel,
                    record: None,
                },
            )
            .relevance;
            let n = x.shape()[0];
            let row = all.len() / n;
            assert_eq!(parts.shape()[0], n * c);
            for s in 0..n {
                let mut sum = vec![0f64; row];
                for k in 0..c {
                    let r = &parts.data()[(s * c + k) * row..(s * c + k + 1) * row];
                    sum.iter_mut().zip(r).for_each(|(a, b)| *a += b);
                }
                let around = &none.data()[s * row..(s + 1) * row];
                let want: Vec<f64> = all.data()[s * row..(s + 1) * row]
                    .iter()
                    .zip(around)
                    .map(|(a, o)| a + (c - 1) as f64 * o)
                    .collect();
                let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
                let err = sum
                    .iter()
                    .zip(&want)
                    .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
                assert!(
                    err <= 1e-9 * scale,
                    "{layer} {parallel:?}: {err} of {scale}"
                );
            }
            // All channels kept: Include is the unconditioned heatmap; nothing kept: Exclude
            // gives no relevance, Include the skip path's (none around the block output).
            if parallel == Parallel::Include {
                assert_eq!(all.data(), whole.data(), "{layer}");
            }
            let around_sum: f64 = none.data().iter().map(|v| v.abs()).sum();
            match (parallel, layer.ends_with("Relu")) {
                (Parallel::Include, false) => assert!(around_sum > 0.0, "{layer}"),
                _ => assert_eq!(around_sum, 0.0, "{layer} {parallel:?}"),
            }
        }
    }
}

/// Recorded relevance: per channel it is the maps' sum over space; at the model's last layer it
/// is the seed (the target's logit); at a block output with no path around it, its total is
/// the total that reaches the block's inputs.
#[test]
fn recorded_relevance_is_the_relevance_crossing_the_node() {
    let (model, x) = resnet();
    let nodes = [
        "/fc/Gemm",
        "/layer/layer.1/relu_1/Relu",
        "/layer/layer.0/conv2/Conv",
    ];
    let record = |mode| Concepts {
        conditions: Vec::new(),
        parallel: Parallel::Include,
        record: Some(Record {
            patterns: nodes.iter().map(|s| s.to_string()).collect(),
            mode,
        }),
    };
    let maps = explain(&model, &x, record(RecordMode::Maps));
    let channels = explain(&model, &x, record(RecordMode::Channels));
    assert_eq!(maps.recorded.len(), 3);
    // graph order
    assert_eq!(maps.recorded[0].node, nodes[2]);
    assert_eq!(maps.recorded[2].node, nodes[0]);
    for (m, c) in maps.recorded.iter().zip(&channels.recorded) {
        let sums = prism_attribution::concept::channel_sums(&m.relevance).unwrap();
        assert_eq!(sums.shape(), c.relevance.shape());
        for (a, b) in sums.data().iter().zip(c.relevance.data()) {
            assert!(
                (a - b).abs() <= 1e-12 * a.abs().max(1.0),
                "{}: {a} {b}",
                m.node
            );
        }
        assert_eq!(m.sample_shape, m.activation.shape()[1..]);
    }
    // the seed: the logit of class 1, nothing elsewhere
    let fc = &maps.recorded[2];
    for s in 0..2 {
        let out = &maps.output.data()[s * 5..(s + 1) * 5];
        let rel = &fc.relevance.data()[s * 5..(s + 1) * 5];
        assert_eq!(rel, &[0.0, out[1], 0.0, 0.0, 0.0]);
        assert_eq!(&fc.activation.data()[s * 5..(s + 1) * 5], out);
    }
    // top channels: ordered by relevance, shares of the absolute total
    let block = &channels.recorded[1];
    let (idx, share) = block.top_channels(3);
    assert_eq!(idx.len(), 6);
    let row: &[f64] = &block.relevance.data()[..16];
    let total: f64 = row.iter().map(|v| v.abs()).sum();
    assert!(row[idx[0] as usize] >= row[idx[1] as usize]);
    assert!((share[0] - row[idx[0] as usize] / total).abs() < 1e-12);
}

/// A layer or channel that does not exist is an error naming what does.
#[test]
fn conditions_on_missing_layers_or_channels_are_errors() {
    let (model, x) = resnet();
    let composite = epsilon_plus_flat();
    let try_with = |spec: &str| {
        Explainer::new(&model)
            .with_composite(composite.clone())
            .with_concepts(Concepts {
                conditions: vec![Condition::parse(spec).unwrap()],
                ..Concepts::default()
            })
            .attribute(
                &x,
                &Target::Class(1),
                SeedMode::Logit,
                &Attributor::Gradient,
            )
            .unwrap_err()
            .to_string()
    };
    let e = try_with("/layer/layer.1/conv2/Conv:16");
    assert!(e.contains("channel 16 does not exist"), "{e}");
    assert!(e.contains("has 16 channels (0-15)"), "{e}");
    let input = model.graph().value(model.graph().inputs[0]).name.clone();
    let e = try_with(&format!("{input}:0"));
    assert!(e.contains("is a model input"), "{e}");
    let e = try_with("/layer/layer.9/conv2/Conv:1");
    assert!(
        e.contains("no node or tensor named '/layer/layer.9/conv2/Conv'"),
        "{e}"
    );
    assert!(e.contains("prism inspect --shapes"), "{e}");
    let e = Explainer::new(&model)
        .with_concepts(Concepts {
            record: Some(Record {
                patterns: vec!["/nothing/*".into()],
                mode: RecordMode::Channels,
            }),
            ..Concepts::default()
        })
        .attribute(
            &x,
            &Target::Class(1),
            SeedMode::Logit,
            &Attributor::Gradient,
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("matches no node"), "{e}");
    let e = Explainer::new(&model)
        .with_concepts(Concepts {
            conditions: vec![Condition::parse("/fc/Gemm:1").unwrap()],
            ..Concepts::default()
        })
        .attribute(
            &x,
            &Target::Class(1),
            SeedMode::Logit,
            &Attributor::SmoothGrad {
                noise_level: 0.1,
                n_iter: 2,
                seed: 0,
                noise: prism_attribution::Noise::Relative,
            },
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("takes the gradient or an LRP composite"), "{e}");
}

/// With canonizers, a BatchNormalization merged into the convolution before it names the same
/// tensor as that convolution (the merged output, as zennit-crp sees the convolution module
/// after Zennit's canonizer); without them, each names its own output (a channel-wise
/// BatchNormalization passes each channel's relevance on, so masking before or after it
/// agrees).
#[test]
fn a_merged_batchnorm_names_the_merged_output() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let model = Model::load(&fixtures.join("tiny_vgg_bn.onnx")).unwrap();
    let x: Tensor<f64> = npy::read_float(&fixtures.join("tiny_vgg_bn.input.npy")).unwrap();
    let run = |layer: &str, canonize: bool| {
        let composite = epsilon_plus_flat();
        Explainer::new(&model)
            .with_composite(composite)
            .with_canonizers(canonize)
            .with_concepts(Concepts {
                conditions: vec![Condition::parse(&format!("{layer}:1,2")).unwrap()],
                ..Concepts::default()
            })
            .attribute(
                &x,
                &Target::Class(0),
                SeedMode::Logit,
                &Attributor::Gradient,
            )
            .unwrap()
            .relevance
    };
    let conv = "/features/features.3/Conv";
    let bn = "/features/features.4/BatchNormalization";
    assert!(run(conv, true).data() == run(bn, true).data());
    let (a, b) = (run(conv, false), run(bn, false));
    let scale = b.data().iter().fold(0f64, |m, v| m.max(v.abs()));
    let err = a
        .data()
        .iter()
        .zip(b.data())
        .fold(0f64, |m, (x, y)| m.max((x - y).abs()));
    assert!(err <= 1e-9 * scale, "{err} of {scale}");
    let unconditioned = {
        let composite = epsilon_plus_flat();
        Explainer::new(&model)
            .with_composite(composite)
            .attribute(
                &x,
                &Target::Class(0),
                SeedMode::Logit,
                &Attributor::Gradient,
            )
            .unwrap()
            .relevance
    };
    assert!(run(conv, true).data() != unconditioned.data());
}
