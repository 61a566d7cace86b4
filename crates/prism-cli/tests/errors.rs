//! What a user reads when a file cannot be read or written: one `error:` line that names the
//! file, says "reading" or "writing" as the case is, and gives the cause once (a message that
//! also printed its chained cause showed it twice: "No such file or directory (os error 2):
//! No such file or directory (os error 2)").

use std::path::{Path, PathBuf};

mod common;
use common::fails;

fn assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/demo")
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// `err` holds `cause` exactly once.
fn once(err: &str, cause: &str) {
    assert_eq!(
        err.matches(cause).count(),
        1,
        "`{cause}` once expected: {err}"
    );
}

/// A small attribution file to analyse (the demo's first 24 samples).
fn attribution(dir: &Path) -> PathBuf {
    let out = dir.join("attr.h5");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_prism"))
        .args(["attribute", "--model"])
        .arg(assets().join("mnist-cnn.onnx"))
        .arg("--dataset")
        .arg(assets().join("mnist.h5"))
        .arg("--output")
        .arg(&out)
        .args(["--limit", "24", "--threads", "1"])
        .output()
        .expect("prism runs");
    assert!(status.status.success());
    out
}

#[test]
fn a_missing_input_says_reading_and_gives_the_cause_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.h5");
    let out = s(&dir.path().join("out.h5"));
    for args in [
        vec![
            "analyze".to_string(),
            s(&missing),
            "--output".into(),
            out.clone(),
        ],
        vec!["merge".into(), s(&missing), "--output".into(), out.clone()],
        vec![
            "project".into(),
            "--dataset".into(),
            s(&assets().join("mnist.h5")),
            "--attribution".into(),
            s(&missing),
            "--output".into(),
            s(&dir.path().join("p.yaml")),
        ],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = fails(&args);
        assert!(err.contains("missing.h5"), "{err}");
        assert!(err.contains("reading"), "{err}");
        assert!(!err.contains("writ"), "{err}");
        once(&err, "No such file or directory");
    }
}

#[test]
fn a_file_that_is_not_hdf5_says_so_and_gives_the_hdf5_cause_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.h5");
    std::fs::write(&bad, b"not an HDF5 file at all").expect("write");
    let err = fails(&[
        "analyze",
        &s(&bad),
        "--output",
        &s(&dir.path().join("o.h5")),
    ]);
    assert!(err.contains("bad.h5") && err.contains("as HDF5"), "{err}");
    once(&err, "file signature not found");
    // As the dataset of a run.
    let err = fails(&[
        "attribute",
        "--model",
        &s(&assets().join("mnist-cnn.onnx")),
        "--dataset",
        &s(&bad),
        "--output",
        &s(&dir.path().join("a.h5")),
    ]);
    assert!(err.contains("bad.h5"), "{err}");
    once(&err, "file signature not found");
}

#[test]
fn an_unwritable_output_says_writing_and_gives_the_cause_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let attr = attribution(dir.path());
    // A regular file where the output's directory should be: no write can succeed, even as
    // root (permissions would not stop root).
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, b"").expect("write");

    let err = fails(&[
        "analyze",
        &s(&attr),
        "--no-cache",
        "--output",
        &s(&not_a_dir.join("analysis.h5")),
    ]);
    assert!(
        err.contains("analysis.h5") && err.contains("writing"),
        "{err}"
    );
    assert!(!err.contains("reading"), "{err}");
    once(&err, "Not a directory");

    let err = fails(&[
        "analyze",
        &s(&attr),
        "--cache-dir",
        &s(&not_a_dir.join("cache")),
        "--output",
        &s(&dir.path().join("analysis.h5")),
    ]);
    assert!(err.contains("cache") && err.contains("write"), "{err}");
    once(&err, "Not a directory");

    let err = fails(&[
        "merge",
        &s(&attr),
        "--output",
        &s(&not_a_dir.join("merged.h5")),
    ]);
    assert!(
        err.contains("merged.h5") && err.contains("writing"),
        "{err}"
    );
    once(&err, "Not a directory");

    let err = fails(&[
        "predict",
        &s(&fixtures().join("mlp.onnx")),
        &s(&fixtures().join("mlp.input.npy")),
        "--output",
        &s(&not_a_dir.join("logits.npy")),
    ]);
    assert!(err.contains("logits.npy") && err.contains("writ"), "{err}");
    assert!(!err.contains("reading"), "{err}");
    once(&err, "Not a directory");
}
