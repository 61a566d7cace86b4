//! The method flags shared by `explain` and `evaluate`: composite files (with `extends`) and the
//! rule flags reach both commands alike.

use std::path::Path;

mod common;
use common::{fails, prism};

fn fixture(p: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(p)
        .to_string_lossy()
        .into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p.to_string_lossy().into_owned()
}

#[test]
fn explain_with_a_file_extending_a_builtin_equals_the_builtin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(dir.path(), "same.toml", "extends = \"epsilon-plus\"\n");
    let out = |name: &str, extra: &[&str]| {
        let o = dir.path().join(name);
        let mut args = vec![
            "explain".to_string(),
            fixture("tiny_resnet.onnx"),
            fixture("tiny_resnet.input.npy"),
            "-o".into(),
            o.to_string_lossy().into_owned(),
            "--epsilon".into(),
            "0.01".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let run = prism().args(&args).output().expect("run");
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        std::fs::read(o).expect("relevance")
    };
    let builtin = out("builtin.npy", &["--composite", "epsilon-plus"]);
    let extended = out("file.npy", &["--composite-file", &file]);
    assert_eq!(builtin, extended);
}

#[test]
fn evaluate_takes_a_composite_file_and_the_rule_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        dir.path(),
        "mine.toml",
        "name = \"my-plus-flat\"\nextends = \"epsilon-plus-flat\"\n",
    );
    let o = dir.path().join("eval");
    let run = prism()
        .args([
            "evaluate",
            &fixture("eval/eval_cnn.onnx"),
            &fixture("eval/eval_cnn.input.npy"),
            "-o",
            &o.to_string_lossy(),
            "--methods",
            "epsilon-plus-flat",
            "--composite-file",
            &file,
            "--stabilizer",
            "1e-5",
            "--patch-size",
            "4",
            "--steps",
            "4",
            "--randomisation",
            "none",
            "--no-plots",
        ])
        .output()
        .expect("run");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(o.join("report.json")).expect("report"))
            .expect("json");
    let methods = report["methods"].as_array().expect("methods");
    assert_eq!(methods.len(), 2);
    assert_eq!(methods[0]["name"], "epsilon-plus-flat");
    assert_eq!(methods[1]["name"], "my-plus-flat");
    // the file only extends the built-in, under the same flags: the same curves
    assert_eq!(methods[0]["morf"], methods[1]["morf"]);
    assert_eq!(methods[0]["lerf"], methods[1]["lerf"]);

    let base = [
        "evaluate",
        &fixture("eval/eval_cnn.onnx"),
        &fixture("eval/eval_cnn.input.npy"),
        "-o",
        &o.to_string_lossy(),
        "--randomisation",
        "none",
        "--no-plots",
    ]
    .map(String::from);
    let with = |extra: &[&str]| {
        let mut v: Vec<&str> = base.iter().map(String::as_str).collect();
        v.extend_from_slice(extra);
        fails(&v)
    };
    let e = with(&["--methods", "epsilon-alpha2-beta1", "--alpha", "3"]);
    assert!(e.contains("alpha − beta must be 1"), "{e}");
    let e = with(&["--methods", "smoothgrad", "--n-iter", "0"]);
    assert!(e.contains("--n-iter must be at least 1"), "{e}");
    let bad = write(dir.path(), "bad.toml", "extends = \"epsilon-magic\"\n");
    let e = with(&["--methods", "gradient", "--composite-file", &bad]);
    assert!(e.contains("bad.toml") && e.contains("epsilon-magic"), "{e}");
}

/// The richer inputs at the command line: a baseline file (its hash in the description), a
/// seed file, and their errors.
mod inputs {
    use super::*;

    fn inputs(p: &str) -> String {
        fixture(&format!("inputs/{p}"))
    }

    #[test]
    fn explain_help_lists_every_method_with_its_reference() {
        let out = prism().args(["explain", "--help"]).output().expect("run");
        let text = String::from_utf8_lossy(&out.stdout);
        for name in prism_attribution::COMPOSITES
            .iter()
            .chain(prism_attribution::ATTRIBUTORS)
        {
            assert!(text.contains(&format!("\n  {name}\n")), "{name} missing");
        }
        assert!(text.contains("iNNvestigate LRPSequentialPresetA"), "{text}");
        assert!(text.contains("Captum NoiseTunnel vargrad"), "{text}");
    }

    #[test]
    fn a_baseline_file_and_a_seed_file_run_and_bad_shapes_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let o = dir.path().join("r.npy").to_string_lossy().into_owned();
        let base = [
            "explain",
            &inputs("cnn.onnx"),
            &inputs("cnn.input.npy"),
            "-o",
            &o,
            "--dtype",
            "f64",
        ];
        let run = |extra: &[&str]| {
            let mut args: Vec<&str> = base.to_vec();
            args.extend_from_slice(extra);
            prism().args(&args).output().expect("run")
        };
        let ok = run(&[
            "--attributor",
            "integrated-gradients",
            "--baseline",
            &inputs("baseline_per_sample.npy"),
        ]);
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        let ok = run(&["--seed-file", &inputs("seeds.npy")]);
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );

        let wrong = dir.path().join("wrong.npy");
        std::fs::copy(inputs("seeds.npy"), &wrong).expect("copy");
        let e = fails(&[
            base[0],
            base[1],
            base[2],
            "-o",
            &o,
            "--attributor",
            "integrated-gradients",
            "--baseline",
            &wrong.to_string_lossy(),
        ]);
        assert!(e.contains("[3, 4]") && e.contains("baseline"), "{e}");
        let e = fails(&[
            base[0],
            base[1],
            base[2],
            "-o",
            &o,
            "--seed-file",
            &inputs("baseline_per_sample.npy"),
        ]);
        assert!(
            e.contains("seed array") && e.contains("[3, 1, 8, 8]"),
            "{e}"
        );
        let e = fails(&[base[0], base[1], base[2], "-o", &o, "--target", "negative"]);
        assert!(e.contains("single logit") && e.contains("[3, 4]"), "{e}");
        let e = fails(&[base[0], base[1], base[2], "-o", &o, "--baseline", "blurry"]);
        assert!(e.contains("--baseline") && e.contains("uniform[:K]"), "{e}");
        let e = fails(&[base[0], base[1], base[2], "-o", &o, "--occlusion-fill", "2"]);
        assert!(
            e.contains("--occlusion-fill") && e.contains("occlusion"),
            "{e}"
        );
    }
}
