//! `prism evaluate` end to end on the trained evaluation fixture: report, plots, table, errors.

use std::path::{Path, PathBuf};

mod common;
use common::{fails, prism};

fn fixture(p: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/eval")
        .join(p)
        .to_string_lossy()
        .into_owned()
}

#[test]
fn evaluate_writes_report_plots_and_a_ranked_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out: PathBuf = dir.path().join("eval");
    let o = out.to_string_lossy().into_owned();
    let run = prism()
        .args([
            "evaluate",
            &fixture("eval_cnn.onnx"),
            &fixture("eval_cnn.input.npy"),
            "-o",
            &o,
            "--methods",
            "gradient,epsilon-plus-flat",
            "--patch-size",
            "4",
            "--steps",
            "8",
            "--baseline",
            "mean",
            "--randomisation",
            "cascading,independent",
            "--randomisation-samples",
            "2",
            "--target",
            &fixture("eval_cnn.labels.npy"),
        ])
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("MoRF AOPC") && stdout.contains("random order"),
        "{stdout}"
    );

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).expect("report"))
            .expect("json");
    assert_eq!(report["steps"], 8);
    assert_eq!(report["patches"], 64);
    assert_eq!(report["targets"].as_array().map(Vec::len), Some(8));
    let ranking: Vec<&str> = report["ranking"]
        .as_array()
        .expect("ranking")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    // LRP beats the plain gradient on this fixture, and the table lists it first.
    assert_eq!(ranking, ["epsilon-plus-flat", "gradient"]);
    let first_row = stdout.lines().nth(1).unwrap_or_default();
    assert!(first_row.contains("epsilon-plus-flat"), "{stdout}");
    let methods = report["methods"].as_array().expect("methods");
    for m in methods {
        assert_eq!(m["morf"]["mean_curve"].as_array().map(Vec::len), Some(9));
        assert_eq!(m["randomisation"].as_array().map(Vec::len), Some(2));
    }
    // 4 layers with weights in the fixture CNN.
    assert_eq!(
        report["randomisation"]["layers"].as_array().map(Vec::len),
        Some(4)
    );
    for f in [
        "perturbation_morf.png",
        "perturbation_lerf.png",
        "randomisation_cascading.png",
        "randomisation_independent_ssim.png",
    ] {
        let bytes = std::fs::read(out.join(f)).expect(f);
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{f}");
    }
}

#[test]
fn evaluate_help_has_an_example() {
    let out = prism().args(["evaluate", "--help"]).output().expect("run");
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(s.contains("prism evaluate vgg16.onnx"), "{s}");
}

#[test]
fn evaluate_bad_arguments_are_one_line_errors() {
    let m = fixture("eval_cnn.onnx");
    let x = fixture("eval_cnn.input.npy");
    let dir = tempfile::tempdir().expect("tempdir");
    let o = dir.path().join("eval").to_string_lossy().into_owned();
    let base = ["evaluate", m.as_str(), x.as_str(), "-o", o.as_str()];
    let with = |extra: &[&str]| {
        let mut v: Vec<&str> = base.to_vec();
        v.extend_from_slice(extra);
        fails(&v)
    };
    let e = with(&["--methods", "lrp-magic"]);
    assert!(e.contains("unknown method 'lrp-magic'"), "{e}");
    let e = with(&["--baseline", "purple"]);
    assert!(e.contains("unknown baseline 'purple'"), "{e}");
    let e = with(&["--baseline", "blur:-1"]);
    assert!(e.contains("positive"), "{e}");
    let e = with(&["--steps", "0"]);
    assert!(e.contains("must be positive"), "{e}");
    let e = with(&["--randomisation", "sideways"]);
    assert!(e.contains("unknown randomisation 'sideways'"), "{e}");
    let e = with(&["--target", "99", "--methods", "gradient"]);
    assert!(e.contains("out of range"), "{e}");
    let e = with(&["--weight-noise", "0.1,-0.5"]);
    assert!(
        e.contains("--weight-noise is a list of standard deviations σ ≥ 0, got -0.5"),
        "{e}"
    );
    let e = with(&["--weight-noise", "0.1", "--weight-noise-draws", "0"]);
    assert!(e.contains("--weight-noise-draws must be between 1"), "{e}");
    let e = with(&["--weight-noise", "0.1", "--weight-noise-scale", "percent"]);
    assert!(
        e.contains("--weight-noise-scale") && e.contains("percent"),
        "{e}"
    );
    let e = fails(&["evaluate", &m, &fixture("missing.npy"), "-o", &o]);
    assert!(e.contains("missing.npy"), "{e}");
}

fn run_ok(args: &[&str]) -> String {
    let out = prism().args(args).output().expect("run");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn morf_curves(report: &Path, method: usize) -> Vec<Vec<f64>> {
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report).expect("report")).expect("json");
    serde_json::from_value(r["methods"][method]["morf"]["curves"].clone()).expect("curves")
}

#[test]
fn evaluate_attribution_file_equals_computing_the_method() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let h5 = d.join("attr.h5");
    let (m, x) = (fixture("eval_cnn.onnx"), fixture("eval_cnn.input.npy"));
    run_ok(&[
        "attribute",
        "--model",
        &m,
        "--dataset",
        &x,
        "--output",
        &s(&h5),
        "--target",
        "predicted",
        "--composite",
        "epsilon-plus-flat",
        "--batch-size",
        "3",
    ]);
    let common = [
        "--patch-size",
        "4",
        "--steps",
        "8",
        "--randomisation",
        "none",
    ];
    let mut a = vec!["evaluate", "--model", &m, "--attributions"];
    let h5s = s(&h5);
    let oa = s(&d.join("a"));
    a.extend([h5s.as_str(), "-o", oa.as_str(), "--attribution-batch", "5"]);
    a.extend(common);
    // the file names its dataset by file name only: not beside it, it must be given
    let e = fails(&a);
    assert!(
        e.contains("eval_cnn.input.npy") && e.contains("give the dataset"),
        "{e}"
    );
    a.extend(["--dataset", x.as_str()]);
    run_ok(&a);
    let ob = s(&d.join("b"));
    let mut b = vec![
        "evaluate",
        &m,
        &x,
        "-o",
        &ob,
        "--methods",
        "epsilon-plus-flat",
    ];
    b.extend(common);
    run_ok(&b);
    let (ga, gb) = (
        morf_curves(&d.join("a/report.json"), 0),
        morf_curves(&d.join("b/report.json"), 0),
    );
    assert_eq!(ga.len(), 8);
    for (ca, cb) in ga.iter().zip(&gb) {
        for (u, v) in ca.iter().zip(cb) {
            assert!((u - v).abs() <= 1e-5 * v.abs().max(1.0), "{u} {v}");
        }
    }
    // another dataset than the file's is refused, naming both
    let other = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/eval/quantus/input.npy")
        .to_string_lossy()
        .into_owned();
    let e = fails(&[
        "evaluate",
        "--model",
        &m,
        "--attributions",
        &h5s,
        "--dataset",
        &other,
        "-o",
        &oa,
    ]);
    assert!(
        e.contains("is not the dataset") && e.contains("attr.h5"),
        "{e}"
    );
}

#[test]
fn evaluate_weight_noise_streams_the_dataset_form_like_the_array_form() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let (m, x) = (fixture("eval_cnn.onnx"), fixture("eval_cnn.input.npy"));
    let common = [
        "--methods",
        "gradient",
        "--patch-size",
        "8",
        "--steps",
        "2",
        "--randomisation",
        "none",
        "--weight-noise",
        "0,0.5",
        "--weight-noise-draws",
        "2",
        "--weight-noise-samples",
        "5",
        "--attribution-batch",
        "2",
    ];
    let (oa, ob) = (s(&d.join("a")), s(&d.join("b")));
    let mut a = vec!["evaluate", m.as_str(), x.as_str(), "-o", oa.as_str()];
    a.extend(common);
    run_ok(&a);
    let mut b = vec![
        "evaluate",
        "--model",
        &m,
        "--dataset",
        &x,
        "-o",
        ob.as_str(),
    ];
    b.extend(common);
    run_ok(&b);
    let read = |dir: &str| -> serde_json::Value {
        let p = Path::new(dir).join("report.json");
        serde_json::from_str(&std::fs::read_to_string(p).expect("report")).expect("json")
    };
    let (ra, rb) = (read(&oa), read(&ob));
    assert_eq!(ra["weight_noise"], rb["weight_noise"]);
    assert_eq!(ra["weight_noise"]["samples_used"], 5);
    assert_eq!(ra["weight_noise"]["prediction_unchanged"][0], 1.0);
    let (la, lb) = (
        &ra["methods"][0]["weight_noise"],
        &rb["methods"][0]["weight_noise"],
    );
    assert_eq!(la, lb);
    let rho = |l: &serde_json::Value| l["spearman"].as_f64().expect("ρ");
    assert!((rho(&la[0]) - 1.0).abs() < 1e-9, "{la}");
    assert!(rho(&la[1]) < 0.99, "{la}");
    let bytes = std::fs::read(Path::new(&oa).join("weight_noise.png")).expect("plot");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
}
