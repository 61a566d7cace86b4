//! Forward parity with onnxruntime on every fixture model (tests/fixtures/manifest.json,
//! written by scripts/make_fixtures.py), and clean errors on broken models.

use std::path::{Path, PathBuf};

use prism_model::{Model, ModelError, Tensor};
use prism_store::npy;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("manifest.json")).expect("manifest.json");
    serde_json::from_str(&text).expect("valid manifest")
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn every_fixture_matches_onnxruntime_in_f32_and_f64() {
    let m = manifest();
    let models = m["models"].as_array().expect("models");
    assert!(models.len() >= 15, "expected the full fixture set");
    for entry in models {
        let name = entry["name"].as_str().unwrap();
        let dir = fixtures();
        let model = Model::load(&dir.join(entry["onnx"].as_str().unwrap()))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let x: Tensor<f32> = npy::read_float(&dir.join(entry["input"].as_str().unwrap())).unwrap();
        let want: Tensor<f32> =
            npy::read_float(&dir.join(entry["output"].as_str().unwrap())).unwrap();
        let y = model
            .forward(vec![x.clone()])
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(y[0].shape(), want.shape(), "{name}: output shape");
        let err = max_abs_diff(y[0].data(), want.data());
        eprintln!("{name}: max abs error {err:e} over {} values", want.len());
        assert!(err <= 1e-4, "{name}: max abs error {err} vs onnxruntime");

        let y64 = model
            .forward(vec![x.cast::<f64>()])
            .unwrap_or_else(|e| panic!("{name} f64: {e}"));
        let scale = y64[0]
            .data()
            .iter()
            .fold(0f64, |m, v| m.max(v.abs()))
            .max(1e-12);
        let rel = y64[0]
            .data()
            .iter()
            .zip(y[0].data())
            .map(|(a, b)| (a - *b as f64).abs() / scale)
            .fold(0.0, f64::max);
        assert!(
            rel <= 1e-4,
            "{name}: f64 and f32 disagree by {rel} (relative)"
        );
    }
}

#[test]
fn batch_size_is_free_and_samples_are_independent() {
    let dir = fixtures();
    let model = Model::load(&dir.join("tiny_resnet.onnx")).unwrap();
    let x: Tensor<f32> = npy::read_float(&dir.join("tiny_resnet.input.npy")).unwrap();
    let full = model.forward(vec![x.clone()]).unwrap();
    let per = x.len() / x.shape()[0];
    let mut shape = x.shape().to_vec();
    shape[0] = 1;
    let first = Tensor::new(shape, x.data()[..per].to_vec()).unwrap();
    let one = model.forward(vec![first]).unwrap();
    let k = one[0].len();
    assert!(max_abs_diff(&full[0].data()[..k], one[0].data()) < 1e-5);
}

#[test]
fn keep_node_inputs_keeps_every_read_tensor_and_outputs_only_keeps_outputs() {
    let dir = fixtures();
    let model = Model::load(&dir.join("tiny_vgg_bn.onnx")).unwrap();
    let x: Tensor<f32> = npy::read_float(&dir.join("tiny_vgg_bn.input.npy")).unwrap();
    let t = model
        .trace(vec![x.clone()], &prism_model::Keep::NodeInputs)
        .unwrap();
    let g = model.specialize(&[x.shape().to_vec()]).unwrap();
    for n in &g.nodes {
        for v in n.inputs.iter().flatten() {
            if g.constant(*v).is_none() {
                assert!(
                    t.get(*v).is_some(),
                    "input {} of {} not kept",
                    g.value(*v).name,
                    n.name
                );
            }
        }
    }
    let t = model.trace(vec![x], &prism_model::Keep::Outputs).unwrap();
    let kept = t.values.iter().filter(|v| v.is_some()).count();
    assert_eq!(kept, g.outputs.len());
}

#[test]
fn specialisation_folds_the_exporters_shape_arithmetic() {
    let dir = fixtures();
    let model = Model::load(&dir.join("tiny_vgg_bn.onnx")).unwrap();
    assert!(model
        .graph()
        .nodes
        .iter()
        .any(|n| n.op.type_name() == "Shape"));
    let g = model.specialize(&[vec![2, 3, 16, 16]]).unwrap();
    for n in &g.nodes {
        assert!(
            !matches!(
                n.op.type_name(),
                "Shape" | "Gather" | "Unsqueeze" | "Constant" | "Concat"
            ),
            "{} ({}) should have been folded",
            n.name,
            n.op.type_name()
        );
    }
    assert!(g.values.iter().all(|v| v.shape.is_some()));
}

fn load_err(file: &str) -> String {
    match Model::load(&fixtures().join(file)) {
        Ok(_) => panic!("{file} loaded but should not"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn truncated_and_non_onnx_files_give_a_clear_error() {
    let e = load_err("errors/truncated.onnx");
    assert!(
        e.contains("truncated.onnx") && e.contains("not a valid ONNX model"),
        "{e}"
    );
    let e = load_err("errors/not_onnx.onnx");
    assert!(e.contains("not a valid ONNX model"), "{e}");
    assert!(!e.contains('\n'));
}

#[test]
fn unsupported_op_error_names_op_node_and_supported_list() {
    let e = load_err("errors/unsupported_op.onnx");
    assert!(
        e.contains("Det") && e.contains("my_det") && e.contains("Conv"),
        "{e}"
    );
}

#[test]
fn undefined_input_and_cycles_are_rejected() {
    let e = load_err("errors/undefined_input.onnx");
    assert!(e.contains("add_ghost") && e.contains("ghost"), "{e}");
    let e = load_err("errors/cycle.onnx");
    assert!(e.contains("cycle"), "{e}");
}

#[test]
fn wrong_input_shape_is_an_error_naming_the_input() {
    let dir = fixtures();
    let model = Model::load(&dir.join("tiny_vgg.onnx")).unwrap();
    let x: Tensor<f32> = npy::read_float(&dir.join("errors/wrong_shape.input.npy")).unwrap();
    let e = model.forward(vec![x]).unwrap_err();
    assert!(matches!(e, ModelError::Input { .. }), "{e}");
    assert!(e.to_string().contains("expects shape"), "{e}");
}

#[test]
fn missing_file_is_an_io_error() {
    let e = Model::load(Path::new("/nonexistent/model.onnx")).unwrap_err();
    assert!(matches!(e, ModelError::Io { .. }));
}

/// torchvision VGG16, ResNet50, DenseNet121, MobileNetV2 and EfficientNet-B0 with random
/// weights, exported by `scripts/export_torchvision.py` into target/torchvision/ (550 MB+, so
/// not committed and not run in CI): `cargo test --release -p prism-model -- --ignored`.
#[test]
#[ignore = "needs target/torchvision from scripts/export_torchvision.py"]
fn torchvision_models_match_onnxruntime() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/torchvision");
    for name in [
        "vgg16",
        "resnet50",
        "densenet121",
        "mobilenet_v2",
        "efficientnet_b0",
    ] {
        let path = dir.join(format!("{name}.onnx"));
        if !path.exists() {
            panic!(
                "{} is missing: run scripts/export_torchvision.py",
                path.display()
            );
        }
        let t0 = std::time::Instant::now();
        let model = Model::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let load = t0.elapsed();
        let x: Tensor<f32> = npy::read_float(&dir.join(format!("{name}.input.npy"))).unwrap();
        let want: Tensor<f32> = npy::read_float(&dir.join(format!("{name}.output.npy"))).unwrap();
        let t0 = std::time::Instant::now();
        let y = model
            .forward(vec![x])
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let err = max_abs_diff(y[0].data(), want.data());
        let scale = want.data().iter().fold(0f32, |m, v| m.max(v.abs()));
        eprintln!(
            "{name}: load {load:?}, forward {:?}, max abs error {err:e} (max |y| {scale})",
            t0.elapsed()
        );
        assert!(err <= 1e-3, "{name}: max abs error {err}");
    }
}

/// The graph's declared input shapes, symbolic dimensions as 2 (as the `onnx` fuzz target
/// specialises its inputs).
fn declared_shapes(graph: &prism_model::Graph) -> Vec<Vec<usize>> {
    (0..graph.inputs.len())
        .map(|i| {
            graph
                .input_dims(i)
                .iter()
                .map(|d| match d {
                    prism_model::Dim::Fixed(n) => *n,
                    prism_model::Dim::Symbolic(_) => 2,
                })
                .collect()
        })
        .collect()
}

/// Found by fuzzing (`fuzz/run.sh onnx`): a `ConstantOfShape` whose constant shape input asks
/// for ~2⁵³ elements aborted the process (a failed 87 PB allocation) while specialising. A
/// folded constant's size is now checked before it is allocated.
#[test]
fn a_huge_folded_constant_is_an_error_not_an_abort() {
    let path = fixtures().join("errors/fuzz_constant_of_shape_huge.onnx");
    let graph = prism_model::onnx::load(&path).unwrap();
    let e = graph
        .specialize(&declared_shapes(&graph))
        .unwrap_err()
        .to_string();
    assert!(e.contains("the most Prism folds into one constant"), "{e}");
    assert!(e.contains("ConstantOfShape"), "{e}");
}

/// Found by fuzzing (`fuzz/run.sh onnx`, after 873 815 executions): a 9 KB model whose
/// `ConstantOfShape → Concat → Reshape → Slice → Transpose → …` chains fold 117-million-element
/// tensors, each under the per-constant cap, passed 2 GB while specialising. The constants
/// folded in all now have a budget.
#[test]
fn constants_folded_in_all_have_a_budget() {
    let path = fixtures().join("errors/fuzz_folded_constants_total.onnx");
    let graph = prism_model::onnx::load(&path).unwrap();
    let e = graph
        .specialize(&[vec![2, 3, 12, 12]])
        .unwrap_err()
        .to_string();
    assert!(e.contains("past their budget of 134220298 elements"), "{e}");
    assert!(e.contains("Concat"), "{e}");
}

/// Found by fuzzing (`fuzz/run.sh onnx`, after 248 706 executions): an initializer whose dims
/// multiply past `usize` overflowed the element count while decoding (a panic with overflow
/// checks, a wrong count without). It is now an error.
#[test]
fn initializer_dims_that_overflow_are_an_error() {
    let path = fixtures().join("errors/fuzz_dims_overflow.onnx");
    let e = prism_model::onnx::load(&path).unwrap_err().to_string();
    assert!(e.contains("more elements than memory can address"), "{e}");
}

/// Found by fuzzing (`fuzz/run.sh onnx`, after 264 427 executions): a Reshape whose target
/// (from the file) multiplies past `usize` overflowed while inferring shapes. Its products are
/// checked now; shapes entering shape inference are bounded, and the window, Tile and Concat
/// arithmetic is checked too.
#[test]
fn shapes_that_overflow_in_inference_are_an_error() {
    let path = fixtures().join("errors/fuzz_shape_overflow.onnx");
    let graph = prism_model::onnx::load(&path).unwrap();
    let e = graph
        .specialize(&declared_shapes(&graph))
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot reshape [8] to [281474976710657"), "{e}");
}

/// Found by fuzzing (`fuzz/run.sh onnx`): `Pad` with pads near `i64::MAX` (taken from the model
/// file) overflowed the output size in shape inference (a panic with overflow checks, a wrong
/// shape without). It is now an error.
#[test]
fn pads_that_overflow_the_output_size_are_an_error() {
    use prism_model::op::{Op, PadMode};
    let op = Op::Pad {
        mode: PadMode::Constant,
        pads: Some(vec![i64::MAX, 0, i64::MAX, 0]),
        value: 0.0,
        axes: None,
    };
    let e = prism_model::shape::infer("pad", &op, &[&[4, 4]]).unwrap_err();
    assert!(e.to_string().contains("pads"), "{e}");
    let op = Op::Pad {
        mode: PadMode::Constant,
        pads: Some(vec![1, 0, 2, 0]),
        value: 0.0,
        axes: None,
    };
    assert_eq!(
        prism_model::shape::infer("pad", &op, &[&[4, 4]]).unwrap(),
        [vec![7, 4]]
    );
}
