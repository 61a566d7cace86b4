//! Agreement with pytorch-grad-cam 1.5: every map in tests/fixtures/cam/manifest.json (written
//! by scripts/make_cam_fixtures.py: a VGG-like model from the legacy exporter, a ResNet-like one
//! from the dynamo exporter; seven methods, named layers and the default one, label and
//! predicted targets) is recomputed by Prism in float32 and float64 and compared per sample:
//! largest difference ≤ 5e-5 (the maps lie in [0, 1]; the reference is float32 throughout) and
//! cosine ≥ 0.9999. (Observed: ≤ 1e-6 except Score-CAM, ≤ 1.4e-5: its scores and softmax are
//! float32 in pytorch-grad-cam.)
//!
//! Eigen-CAM's reference uses the sign correction of pytorch-grad-cam's Seg-Eigen-CAM (see
//! `prism_attribution::cam`): LAPACK's singular-vector sign is not a definition.

use std::path::{Path, PathBuf};

use prism_attribution::{default_layer, Attributor, CamKind, Explainer, SeedMode, Target};
use prism_model::{Float, Model, Tensor};
use prism_store::npy;
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/cam")
}

fn manifest() -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("manifest.json")).unwrap()).unwrap()
}

fn labels(m: &Value) -> Vec<usize> {
    m["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect()
}

/// Compares every case of every model in `T`; returns the number of maps compared.
fn compare_all<T: Float>() -> usize {
    let m = manifest();
    let mut compared = 0;
    for (name, model_entry) in m["models"].as_object().unwrap() {
        let model = Model::load(&dir().join(format!("{name}.onnx"))).unwrap();
        let x: Tensor<T> = npy::read_float(&dir().join(format!("{name}.input.npy"))).unwrap();
        let explainer = Explainer::new(&model);
        let (n, h, w) = (x.shape()[0], x.shape()[2], x.shape()[3]);
        for layer in model_entry["layers"].as_array().unwrap() {
            let node = layer["node"].as_str().unwrap();
            for (key, file) in layer["files"].as_object().unwrap() {
                let (method, target_mode) = key.split_once("__").unwrap();
                let kind = CamKind::by_name(method).unwrap();
                let target = match target_mode {
                    "labels" => Target::PerSample(labels(&m)),
                    _ => Target::Predicted,
                };
                let want: Tensor<f32> =
                    npy::read_float(&dir().join(file.as_str().unwrap())).unwrap();
                // the default layer when the manifest marks it so, else by name
                let at = if layer["default"].as_bool().unwrap() {
                    None
                } else {
                    Some(node.to_string())
                };
                let got = explainer
                    .attribute(
                        &x,
                        &target,
                        SeedMode::OneHot,
                        &Attributor::Cam { kind, layer: at },
                    )
                    .unwrap_or_else(|e| panic!("{name} {node} {key}: {e}"));
                assert_eq!(got.relevance.shape(), &[n, 1, h, w], "{name} {node} {key}");
                for s in 0..n {
                    let a = &got.relevance.data()[s * h * w..(s + 1) * h * w];
                    let b = &want.data()[s * h * w..(s + 1) * h * w];
                    let diff = a
                        .iter()
                        .zip(b)
                        .fold(0f64, |d, (p, q)| d.max((p.f64() - *q as f64).abs()));
                    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
                    for (p, q) in a.iter().zip(b) {
                        let (p, q) = (p.f64(), *q as f64);
                        ab += p * q;
                        aa += p * p;
                        bb += q * q;
                    }
                    let cos = if aa == 0.0 && bb == 0.0 {
                        1.0
                    } else {
                        ab / (aa.sqrt() * bb.sqrt()).max(1e-300)
                    };
                    assert!(
                        diff <= 5e-5 && cos >= 0.9999,
                        "{name} {node} {key} ({}) sample {s}: max diff {diff:.3e}, cosine {cos:.6}",
                        std::any::type_name::<T>()
                    );
                }
                compared += 1;
            }
        }
    }
    compared
}

#[test]
fn maps_match_pytorch_grad_cam_in_f32() {
    // 2 models × (2 + 3 layers) … every method and both target modes
    assert_eq!(compare_all::<f32>(), 5 * 7 * 2);
}

#[test]
fn maps_match_pytorch_grad_cam_in_f64() {
    assert_eq!(compare_all::<f64>(), 5 * 7 * 2);
}

#[test]
fn default_layer_is_the_deepest_convolution_not_the_last_in_graph_order() {
    let m = manifest();
    for (name, model_entry) in m["models"].as_object().unwrap() {
        let model = Model::load(&dir().join(format!("{name}.onnx"))).unwrap();
        let want = model_entry["layers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["default"].as_bool().unwrap())
            .unwrap()["node"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(default_layer(model.graph()).unwrap(), want, "{name}");
    }
    // the ResNet-like model's last Conv in graph order is the 1×1 downsample
    let model = Model::load(&dir().join("cam_resnet.onnx")).unwrap();
    let last_conv = model
        .graph()
        .nodes
        .iter()
        .rev()
        .find(|n| n.op.type_name() == "Conv")
        .unwrap();
    assert_ne!(last_conv.name, default_layer(model.graph()).unwrap());
}

#[test]
fn bad_requests_are_clear_errors() {
    let model = Model::load(&dir().join("cam_vgg.onnx")).unwrap();
    let x: Tensor<f32> = npy::read_float(&dir().join("cam_vgg.input.npy")).unwrap();
    let explainer = Explainer::new(&model);
    let cam = |layer: &str| Attributor::Cam {
        kind: CamKind::GradCam,
        layer: Some(layer.into()),
    };
    let err = explainer
        .attribute(&x, &Target::Predicted, SeedMode::OneHot, &cam("/nope"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nope") && err.contains("inspect"), "{err}");
    // a layer without spatial maps
    let err = explainer
        .attribute(
            &x,
            &Target::Predicted,
            SeedMode::OneHot,
            &cam("/classifier/Gemm"),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("N × C × h × w"), "{err}");
    let err = explainer
        .attribute(
            &x,
            &Target::Class(6),
            SeedMode::OneHot,
            &cam("/features/features.5/Conv"),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("out of range"), "{err}");
    let err = explainer
        .attribute(
            &x,
            &Target::Predicted,
            SeedMode::Logit,
            &cam("/features/features.5/Conv"),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("one-hot"), "{err}");
    // not an image batch
    let flat = Tensor::<f32>::zeros(&[2, 10]);
    let err = explainer
        .attribute(&flat, &Target::Predicted, SeedMode::OneHot, &cam("x"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("N × C × H × W"), "{err}");
}
