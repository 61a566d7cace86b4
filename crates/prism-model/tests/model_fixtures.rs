//! Small modern models (ViT, Swin-like, ConvNeXt, BERT-like with token ids and a padding mask,
//! GPT-like with a causal mask, ShuffleNet, U-Net with Resize, 3-D CNN), each exported with
//! both PyTorch exporters (tests/fixtures/models, scripts/make_model_fixtures.py), against
//! onnxruntime in f32 and f64.

use std::path::{Path, PathBuf};

use prism_model::{Float, Keep, Model, Tensor};
use prism_store::npy;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models")
}

fn scaled(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-6);
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(
            0f64,
            |m, d| if d.is_nan() { f64::INFINITY } else { m.max(d) },
        )
        / scale
}

fn run<T: Float>(model: &Model, inputs: &[PathBuf]) -> Result<Vec<f64>, String> {
    let xs: Vec<Tensor<T>> = inputs
        .iter()
        .map(|p| npy::read_float::<T>(p).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let y = model.forward(xs).map_err(|e| e.to_string())?;
    Ok(y[0].data().iter().map(|v| v.f64()).collect())
}

#[test]
fn every_model_from_both_exporters_matches_onnxruntime() {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("manifest.json")).unwrap())
            .unwrap();
    let mut failures = Vec::new();
    let mut checked = 0;
    for (name, entry) in manifest["models"].as_object().unwrap() {
        let inputs: Vec<PathBuf> = (0..entry["inputs"].as_array().unwrap().len())
            .map(|i| dir().join(format!("{name}.in{i}.npy")))
            .collect();
        for exporter in ["legacy", "dynamo"] {
            let e = &entry["exports"][exporter];
            let Some(file) = e["onnx"].as_str() else {
                failures.push(format!("{name} {exporter}: no export ({})", e["error"]));
                continue;
            };
            let model = match Model::load(&dir().join(file)) {
                Ok(m) => m,
                Err(err) => {
                    failures.push(format!("{name} {exporter}: {err}"));
                    continue;
                }
            };
            let want: Tensor<f64> =
                npy::read_float(&dir().join(e["output"].as_str().unwrap())).unwrap();
            match (run::<f32>(&model, &inputs), run::<f64>(&model, &inputs)) {
                (Ok(a), Ok(b)) => {
                    let (e32, e64, e3264) = (
                        scaled(&a, want.data()),
                        scaled(&b, want.data()),
                        scaled(&a, &b),
                    );
                    eprintln!(
                        "{name} {exporter}: f32 {e32:.1e}, f64 {e64:.1e}, f32~f64 {e3264:.1e}"
                    );
                    if a.len() != want.len() || e32 > 1e-4 || e64 > 1e-4 || e3264 > 1e-4 {
                        failures.push(format!(
                            "{name} {exporter}: scaled max error f32 {e32:e}, f64 {e64:e}, f32 vs f64 {e3264:e}"
                        ));
                    }
                    checked += 1;
                }
                (Err(err), _) | (_, Err(err)) => failures.push(format!("{name} {exporter}: {err}")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(checked, 16, "8 models × 2 exporters");
}

/// The forward pass fuses dense layers with their bias and GELU (and reuses buffers) only when
/// the intermediates are not kept: node by node (`Keep::NodeInputs`, what attribution runs)
/// must give the same outputs, in f32 and in f64.
#[test]
fn fused_forward_matches_node_by_node() {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("manifest.json")).unwrap())
            .unwrap();
    let mut fused = 0;
    for (name, entry) in manifest["models"].as_object().unwrap() {
        let inputs: Vec<PathBuf> = (0..entry["inputs"].as_array().unwrap().len())
            .map(|i| dir().join(format!("{name}.in{i}.npy")))
            .collect();
        for exporter in ["legacy", "dynamo"] {
            let Some(file) = entry["exports"][exporter]["onnx"].as_str() else {
                continue;
            };
            let model = Model::load(&dir().join(file)).unwrap();
            fn both<T: Float>(model: &Model, inputs: &[PathBuf]) -> (usize, f64) {
                let xs: Vec<Tensor<T>> =
                    inputs.iter().map(|p| npy::read_float(p).unwrap()).collect();
                let shapes: Vec<Vec<usize>> = xs.iter().map(|t| t.shape().to_vec()).collect();
                let groups = model.executor::<T>(&shapes).unwrap().fused_groups();
                let fast = model.forward(xs.clone()).unwrap();
                let slow = model.trace(xs, &Keep::NodeInputs).unwrap().outputs;
                let f = |t: &Tensor<T>| t.data().iter().map(|v| v.f64()).collect::<Vec<_>>();
                (groups, scaled(&f(&fast[0]), &f(&slow[0])))
            }
            let (groups, e32) = both::<f32>(&model, &inputs);
            let (_, e64) = both::<f64>(&model, &inputs);
            assert!(
                e32 <= 1e-6 && e64 <= 1e-12,
                "{name} {exporter}: fused vs node by node, f32 {e32:e}, f64 {e64:e}"
            );
            fused += groups;
        }
    }
    // ViT, Swin, BERT and GPT have dense layers with a bias Add and a GELU in erf form.
    assert!(fused > 0, "no fused group in any fixture model");
}
