//! AttnLRP and CP-LRP against LXT 2.1 (tests/fixtures/transformers, made by
//! scripts/make_lxt_fixtures.py): a tiny ViT, BERT, GPT-2 and LLaMA in float64, each exported by
//! both PyTorch exporters, relevance seeded with the target logit (LXT's `logit.backward()`).
//! Compared with the exact-identity-rule reference (LXT's identity rule divides by `x + 1e-10`,
//! which moves relevance by up to 5e-8 of max |R|; `*.relevance.npy` is LXT's own output and is
//! checked at the 1e-6).

use std::path::{Path, PathBuf};

use prism_attribution::{
    AttributeAt, Attributor, Composite, CompositeParams, Explainer, SeedMode, Target,
};
use prism_model::{Model, Tensor};
use prism_store::npy;
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/transformers")
}

fn manifest() -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("manifest.json")).unwrap()).unwrap()
}

/// LXT's parameters: ε = 0 on the linear layers.
fn composite(name: &str) -> Composite {
    let p = CompositeParams {
        epsilon: 0.0,
        ..CompositeParams::default()
    };
    Composite::builtin(name, &p).unwrap()
}

fn max_abs(t: &[f64]) -> f64 {
    t.iter().fold(0f64, |m, v| m.max(v.abs()))
}

/// Max |a − b| relative to max |b|.
fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(p, q)| (p - q).abs())
        .fold(0f64, f64::max)
        / max_abs(b)
}

fn target_of(entry: &Value) -> Target {
    let ts = entry["targets"].as_array().unwrap();
    if ts[0].get("position").is_some() {
        Target::PositionPerSample(
            ts.iter()
                .map(|t| {
                    (
                        t["position"].as_u64().unwrap() as usize,
                        t["token"].as_u64().unwrap() as usize,
                    )
                })
                .collect(),
        )
    } else {
        Target::PerSample(
            ts.iter()
                .map(|t| t["class"].as_u64().unwrap() as usize)
                .collect(),
        )
    }
}

fn relevance(model: &str, exporter: &str, composite_name: &str) -> Tensor<f64> {
    let m = manifest();
    let entry = &m["models"][model];
    let file = entry["exports"][exporter]["onnx"].as_str().unwrap();
    let onnx = Model::load(&dir().join(file)).unwrap();
    let inputs: Vec<Tensor<f64>> = entry["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| npy::read_float(&dir().join(i["file"].as_str().unwrap())).unwrap())
        .collect();
    let explainer = Explainer::new(&onnx).with_composite(composite(composite_name));
    let target = target_of(entry);
    let a = explainer
        .attribute_inputs(
            inputs,
            &AttributeAt::Auto,
            &target,
            SeedMode::Logit,
            &Attributor::Gradient,
        )
        .unwrap_or_else(|e| panic!("{model} {exporter} {composite_name}: {e}"));
    a.relevance
}

fn check(model: &str, composite_name: &str) {
    let m = manifest();
    let c = &m["models"][model]["composites"][composite_name];
    let exact: Tensor<f64> =
        npy::read_float(&dir().join(c["exact_identity_relevance"].as_str().unwrap())).unwrap();
    let lxt: Tensor<f64> = npy::read_float(&dir().join(c["relevance"].as_str().unwrap())).unwrap();
    for exporter in ["legacy", "dynamo"] {
        let r = relevance(model, exporter, composite_name);
        assert_eq!(r.shape(), exact.shape(), "{model} {exporter}");
        let e_exact = rel_err(r.data(), exact.data());
        let e_lxt = rel_err(r.data(), lxt.data());
        eprintln!(
            "{model} {exporter} {composite_name}: vs exact identity {e_exact:.1e}, vs LXT {e_lxt:.1e}"
        );
        // The dynamo exporter stores some constants in float32 (the manifest's notes):
        // relevance moves by about as much as the export's output does.
        let tol = if exporter == "dynamo" { 1e-7 } else { 1e-9 };
        assert!(
            e_exact < tol,
            "{model} {exporter} {composite_name}: {e_exact:e}"
        );
        assert!(
            e_lxt < 1e-6,
            "{model} {exporter} {composite_name}: {e_lxt:e}"
        );
    }
}

#[test]
fn attn_lrp_matches_lxt_on_bert() {
    check("bert", "attn-lrp");
}

#[test]
fn cp_lrp_matches_lxt_on_bert() {
    check("bert", "cp-lrp");
}

#[test]
fn attn_lrp_matches_lxt_on_gpt2() {
    check("gpt2", "attn-lrp");
}

#[test]
fn cp_lrp_matches_lxt_on_gpt2() {
    check("gpt2", "cp-lrp");
}

#[test]
fn attn_lrp_matches_lxt_on_llama() {
    check("llama", "attn-lrp");
}

#[test]
fn cp_lrp_matches_lxt_on_llama() {
    check("llama", "cp-lrp");
}

/// The ViT is explained at its input pixels through the patch-embedding convolution.
fn check_vit(composite_name: &str) {
    let m = manifest();
    let entry = &m["models"]["vit"];
    let c = &entry["composites"][composite_name];
    let exact: Tensor<f64> =
        npy::read_float(&dir().join(c["exact_identity_relevance"].as_str().unwrap())).unwrap();
    let x: Tensor<f64> =
        npy::read_float(&dir().join(entry["inputs"][0]["file"].as_str().unwrap())).unwrap();
    for exporter in ["legacy", "dynamo"] {
        let file = entry["exports"][exporter]["onnx"].as_str().unwrap();
        let onnx = Model::load(&dir().join(file)).unwrap();
        let a = Explainer::new(&onnx)
            .with_composite(composite(composite_name))
            .attribute(
                &x,
                &target_of(entry),
                SeedMode::Logit,
                &Attributor::Gradient,
            )
            .unwrap_or_else(|e| panic!("vit {exporter}: {e}"));
        let e = rel_err(a.relevance.data(), exact.data());
        eprintln!("vit {exporter} {composite_name}: vs exact identity {e:.1e}");
        assert!(e < 1e-9, "vit {exporter} {composite_name}: {e:e}");
    }
}

#[test]
fn attn_lrp_matches_lxt_on_vit() {
    check_vit("attn-lrp");
}

#[test]
fn cp_lrp_matches_lxt_on_vit() {
    check_vit("cp-lrp");
}

/// With every bias, LayerNorm shift and position embedding zeroed, CP-LRP conserves: the
/// relevance at the embeddings sums to the explained logit.
#[test]
fn cp_lrp_conserves_without_biases() {
    let m = manifest();
    let entry = &m["models"]["bert_conservation"];
    let logits: Vec<f64> = entry["composites"]["cp-lrp"]["explained_logit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for exporter in ["legacy", "dynamo"] {
        let r = relevance("bert_conservation", exporter, "cp-lrp");
        let per = r.len() / logits.len();
        for (i, logit) in logits.iter().enumerate() {
            let sum: f64 = r.data()[i * per..(i + 1) * per].iter().sum();
            assert!(
                (sum - logit).abs() < 1e-5 * logit.abs().max(1.0),
                "{exporter} sample {i}: Σ R = {sum}, logit {logit}"
            );
        }
    }
}

/// AttnLRP's softmax rule absorbs relevance: the two composites differ on attention, and
/// AttnLRP does not conserve where CP-LRP does.
#[test]
fn attn_lrp_and_cp_lrp_differ_on_attention() {
    let attn = relevance("bert_conservation", "legacy", "attn-lrp");
    let cp = relevance("bert_conservation", "legacy", "cp-lrp");
    let d = rel_err(attn.data(), cp.data());
    assert!(d > 1e-3, "AttnLRP and CP-LRP agree to {d:e}");
}
