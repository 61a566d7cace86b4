//! NaN and ±Inf: refused in inputs (naming the samples), refused in results computed from finite
//! inputs (naming the node where they began), allowed with --allow-nonfinite. Fixtures:
//! `scripts/make_nonfinite_fixtures.py`.

use std::path::{Path, PathBuf};

mod common;
use common::{fails, prism};

fn fixture(p: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/nonfinite")
        .join(p)
        .to_string_lossy()
        .into_owned()
}

fn out(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

/// The message of a refused non-finite input batch: what, which samples, what to do.
fn names_samples_1_and_3(e: &str) {
    assert!(e.contains("2 NaN and 1 ±Inf values"), "{e}");
    assert!(e.contains("2 of 4 samples (samples 1, 3)"), "{e}");
    assert!(e.contains("--allow-nonfinite"), "{e}");
}

#[test]
fn predict_refuses_nan_inputs_naming_the_samples() {
    let e = fails(&["predict", &fixture("sqrt_head.onnx"), &fixture("nan.npy")]);
    names_samples_1_and_3(&e);
}

#[test]
fn predict_with_allow_nonfinite_proceeds_and_warns() {
    let dir = tempfile::tempdir().unwrap();
    let o = out(&dir, "y.npy");
    let r = prism()
        .args(["predict", &fixture("sqrt_head.onnx"), &fixture("nan.npy")])
        .args(["--allow-nonfinite", "-o", o.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("warning: the output holds"), "{err}");
    let y: prism_model::Tensor<f32> = prism_store::npy::read_float(&o).unwrap();
    assert!(
        y.data()[3].is_nan(),
        "sample 1's NaN flows through: {:?}",
        y.data()
    );
    assert!(y.data()[..3].iter().all(|v| v.is_finite()));
}

#[test]
fn predict_names_the_node_where_a_finite_input_turned_nan() {
    let e = fails(&[
        "predict",
        &fixture("sqrt_head.onnx"),
        &fixture("negative.npy"),
    ]);
    assert!(e.contains("the model's output 'y'"), "{e}");
    assert!(e.contains("in 1 of 4 samples (sample 2)"), "{e}");
    assert!(e.contains("node 'sqrt_head' (Sqrt)"), "{e}");
    // Finite inputs give finite outputs: no error.
    let ok = prism()
        .args([
            "predict",
            &fixture("sqrt_head.onnx"),
            &fixture("finite.npy"),
        ])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[test]
fn predict_numbers_samples_across_batches() {
    let e = fails(&[
        "predict",
        &fixture("sqrt_head.onnx"),
        &fixture("negative.npy"),
        "--batch-size",
        "2",
    ]);
    assert!(e.contains("(sample 2)"), "{e}");
}

#[test]
fn explain_refuses_nan_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let o = out(&dir, "r.npy");
    let e = fails(&[
        "explain",
        &fixture("sqrt_head.onnx"),
        &fixture("nan.npy"),
        "-o",
        o.to_str().unwrap(),
        "--composite",
        "epsilon-plus",
    ]);
    names_samples_1_and_3(&e);
    assert!(!o.exists(), "no output after an error");
}

#[test]
fn explain_names_the_rule_whose_relevance_stopped_being_finite() {
    let dir = tempfile::tempdir().unwrap();
    let o = out(&dir, "r.npy");
    // Sample 1 puts sqrt_head's third output at exactly 0, where Sqrt's gradient is infinite.
    let e = fails(&[
        "explain",
        &fixture("sqrt_head.onnx"),
        &fixture("sqrt_zero.npy"),
        "-o",
        o.to_str().unwrap(),
        "--target",
        "2",
    ]);
    assert!(e.contains("the relevance has"), "{e}");
    assert!(e.contains("in 1 of 2 samples (sample 1)"), "{e}");
    assert!(
        e.contains("the gradient rule at node 'sqrt_head' (Sqrt)"),
        "{e}"
    );
    assert!(!o.exists());
    // Away from 0 the same explanation is finite. (At 0 every target's gradient is NaN, as in
    // PyTorch: the chain rule multiplies the zero seed of output 2 by Sqrt's infinite slope.)
    let ok = prism()
        .args([
            "explain",
            &fixture("sqrt_head.onnx"),
            &fixture("finite.npy"),
        ])
        .args(["-o", o.to_str().unwrap(), "--target", "2"])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[test]
fn explain_refuses_non_finite_zbox_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let o = out(&dir, "r.npy");
    let e = fails(&[
        "explain",
        &fixture("sqrt_head.onnx"),
        &fixture("finite.npy"),
        "-o",
        o.to_str().unwrap(),
        "--composite",
        "epsilon-gamma-box",
        "--low",
        "nan",
        "--high",
        "1",
    ]);
    assert!(e.contains("must be finite"), "{e}");
}

#[test]
fn attribute_refuses_nan_samples_naming_them_in_the_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let o = out(&dir, "a.h5");
    let e = fails(&[
        "attribute",
        "--model",
        &fixture("sqrt_head.onnx"),
        "--dataset",
        &fixture("nan.npy"),
        "--output",
        o.to_str().unwrap(),
        "--target",
        "0",
        "--batch-size",
        "2",
    ]);
    assert!(e.contains("nan.npy holds"), "{e}");
    assert!(e.contains("(sample 1)"), "{e}");
    assert!(e.contains("--allow-nonfinite"), "{e}");
    assert!(!o.exists(), "no attribution file after an error");
}

#[test]
fn evaluate_refuses_nan_inputs_before_taking_zbox_bounds_from_them() {
    let dir = tempfile::tempdir().unwrap();
    let e = fails(&[
        "evaluate",
        &fixture("sqrt_head.onnx"),
        &fixture("nan.npy"),
        "--output-dir",
        dir.path().to_str().unwrap(),
        "--methods",
        "epsilon-gamma-box",
        "--target",
        "0",
    ]);
    names_samples_1_and_3(&e);
    assert!(!e.contains("--low inf"), "no bounds taken from NaN: {e}");
}

#[test]
fn heatmap_refuses_non_finite_relevance() {
    let dir = tempfile::tempdir().unwrap();
    let e = fails(&[
        "heatmap",
        &fixture("nan.npy"),
        "--output",
        dir.path().join("h").to_str().unwrap(),
    ]);
    assert!(e.contains("3 non-finite values"), "{e}");
}
