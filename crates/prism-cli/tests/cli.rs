//! End-to-end checks of the `prism` binary: exit codes, one-line errors, outputs.

use std::path::{Path, PathBuf};

mod common;
use common::{fails, prism};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn path(p: &str) -> String {
    fixtures().join(p).to_string_lossy().into_owned()
}

#[test]
fn truncated_model_is_a_one_line_error() {
    let e = fails(&["inspect", &path("errors/truncated.onnx")]);
    assert!(e.contains("not a valid ONNX model"), "{e}");
}

#[test]
fn non_onnx_file_is_a_one_line_error() {
    let e = fails(&[
        "predict",
        &path("errors/not_onnx.onnx"),
        &path("mlp.input.npy"),
    ]);
    assert!(e.contains("not a valid ONNX model"), "{e}");
}

#[test]
fn unsupported_op_is_a_one_line_error_naming_it() {
    let e = fails(&["inspect", &path("errors/unsupported_op.onnx")]);
    assert!(e.contains("Det") && e.contains("my_det"), "{e}");
}

#[test]
fn wrong_input_shape_is_a_one_line_error() {
    let e = fails(&[
        "predict",
        &path("tiny_vgg.onnx"),
        &path("errors/wrong_shape.input.npy"),
    ]);
    assert!(
        e.contains("expects shape") && e.contains("[2, 1, 7, 5]"),
        "{e}"
    );
}

#[test]
fn missing_input_file_is_a_one_line_error() {
    let e = fails(&["predict", &path("tiny_vgg.onnx"), "/nonexistent/x.npy"]);
    assert!(e.contains("/nonexistent/x.npy"), "{e}");
}

#[test]
fn predict_writes_logits_matching_onnxruntime_and_prints_top_k() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("logits.npy");
    let res = prism()
        .args([
            "predict",
            &path("tiny_resnet.onnx"),
            &path("tiny_resnet.input.npy"),
            "--top-k",
            "2",
            "--batch-size",
            "1",
            "--output",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(stdout.starts_with("sample 0: "));
    let got: prism_model::Tensor<f32> = prism_store::npy::read_float(&out).unwrap();
    let want: prism_model::Tensor<f32> =
        prism_store::npy::read_float(&fixtures().join("tiny_resnet.output.npy")).unwrap();
    assert_eq!(got.shape(), want.shape());
    let err = got
        .data()
        .iter()
        .zip(want.data())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(err < 1e-4, "{err}");
}

#[test]
fn predict_in_f64_writes_float64_logits() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("logits.npy");
    let res = prism()
        .args([
            "predict",
            &path("mlp.onnx"),
            &path("mlp.input.npy"),
            "--dtype",
            "f64",
            "--top-k",
            "0",
            "--output",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let bytes = std::fs::read(&out).unwrap();
    assert!(String::from_utf8_lossy(&bytes[..80]).contains("<f8"));
}

#[test]
fn inspect_reports_inputs_outputs_and_parameters() {
    let res = prism()
        .args([
            "inspect",
            &path("tiny_resnet.onnx"),
            "--shapes",
            "--batch",
            "4",
        ])
        .output()
        .unwrap();
    assert!(res.status.success());
    let s = String::from_utf8_lossy(&res.stdout);
    assert!(
        s.contains("parameters") && s.contains("[4, 10]") && s.contains("Conv"),
        "{s}"
    );
}

#[test]
fn every_command_has_help_with_an_example() {
    // Every subcommand `prism --help` lists, so new commands are covered too.
    let top = prism().arg("--help").output().unwrap();
    let top = String::from_utf8_lossy(&top.stdout).into_owned();
    let cmds: Vec<&str> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // Command lines are indented by two spaces; wrapped descriptions by more.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    for must in [
        "inspect",
        "predict",
        "explain",
        "heatmap",
        "attribute",
        "merge",
        "analyze",
        "project",
        "demo",
    ] {
        assert!(
            cmds.contains(&must),
            "`prism --help` does not list {must}:\n{top}"
        );
    }
    for cmd in cmds {
        let res = prism().args([cmd, "--help"]).output().unwrap();
        assert!(res.status.success(), "{cmd}");
        let s = String::from_utf8_lossy(&res.stdout);
        assert!(
            s.contains(&format!("prism {cmd}")),
            "{cmd} --help has no example:\n{s}"
        );
    }
}

#[test]
fn explain_matches_the_zennit_reference_in_f64() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.npy");
    let res = prism()
        .args([
            "explain",
            &path("tiny_resnet.onnx"),
            &path("tiny_resnet.input.npy"),
            "--composite",
            "epsilon-plus-flat",
            "--dtype",
            "f64",
            "--batch-size",
            "1",
            "-o",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let got: prism_model::Tensor<f64> = prism_store::npy::read_float(&out).unwrap();
    let want: prism_model::Tensor<f64> = prism_store::npy::read_float(
        &fixtures().join("reference/tiny_resnet__epsilon-plus-flat__float64.npy"),
    )
    .unwrap();
    let scale = want.data().iter().fold(0f64, |a, v| a.max(v.abs()));
    let err = got
        .data()
        .iter()
        .zip(want.data())
        .map(|(a, b)| (a - b).abs())
        .fold(0f64, f64::max);
    assert!(err <= 1e-6 * scale, "{err} vs scale {scale}");
}

#[test]
fn explain_rejects_bad_configuration_with_one_line_errors() {
    let m = path("tiny_resnet.onnx");
    let x = path("tiny_resnet.input.npy");
    let explain = |input: &str, extra: &[&str]| {
        let mut args = vec!["explain", m.as_str(), input, "-o", "/tmp/never.npy"];
        args.extend_from_slice(extra);
        fails(&args)
    };
    let e = explain(&x, &["--composite", "epsilon-magic"]);
    assert!(e.contains("unknown composite"), "{e}");
    let e = explain(&x, &["--composite", "epsilon-alpha2-beta1", "--alpha", "3"]);
    assert!(e.contains("alpha − beta must be 1"), "{e}");
    let e = explain(&x, &["--target", "10"]);
    assert!(e.contains("out of range"), "{e}");
    let e = explain(&path("errors/wrong_shape.input.npy"), &[]);
    assert!(e.contains("expects shape"), "{e}");
    let e = explain(&x, &["--attributor", "lime"]);
    assert!(e.contains("unknown attributor"), "{e}");
    assert!(!Path::new("/tmp/never.npy").exists());
}

#[test]
fn predict_feeds_named_integer_and_float_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("y.npy");
    let case = |s: &str| path(&format!("ops/basics/int_input_cast.{s}.npy"));
    let res = prism()
        .args([
            "predict",
            &path("ops/basics/int_input_cast.onnx"),
            "--input",
            &format!("ids={}", case("in0")),
            "--input",
            &format!("x={}", case("in1")),
            "--top-k",
            "0",
            "--output",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let got: prism_model::Tensor<f32> = prism_store::npy::read_float(&out).unwrap();
    let want: prism_model::Tensor<f32> =
        prism_store::npy::read_float(Path::new(&case("out0"))).unwrap();
    assert_eq!(got, want);
}

#[test]
fn named_input_mistakes_are_one_line_errors() {
    let model = path("ops/basics/int_input_cast.onnx");
    let ids = format!("ids={}", path("ops/basics/int_input_cast.in0.npy"));
    let x = format!("x={}", path("ops/basics/int_input_cast.in1.npy"));
    let e = fails(&["predict", &model, "--input", &ids]);
    assert!(
        e.contains("missing --input for x") && e.contains("ids (int64)"),
        "{e}"
    );
    let e = fails(&["predict", &model, "--input", &ids, "--input", "nope=a.npy"]);
    assert!(e.contains("no input 'nope'"), "{e}");
    let e = fails(&[
        "predict",
        &model,
        &path("ops/basics/int_input_cast.in1.npy"),
    ]);
    assert!(
        e.contains("has 2 inputs") && e.contains("--input NAME=FILE"),
        "{e}"
    );
    // float values where the model takes integer ids
    let bad = format!("ids={}", path("ops/basics/int_input_cast.in1.npy"));
    let e = fails(&["predict", &model, "--input", &bad, "--input", &x]);
    assert!(e.contains("input 'ids'") && e.contains("integer"), "{e}");
}

#[test]
fn explain_a_token_model_writes_relevance_per_token() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tokens.npy");
    let m = |s: &str| path(&format!("models/{s}"));
    let res = prism()
        .args([
            "explain",
            &m("bert.dynamo.onnx"),
            "--input",
            &format!("input_ids={}", m("bert.in0.npy")),
            "--input",
            &format!("attention_mask={}", m("bert.in1.npy")),
            "--composite",
            "attn-lrp",
            "--reduce-hidden",
            "sum",
            "--output",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(res.status.success(), "{stderr}");
    assert!(stderr.contains("(per token)"), "{stderr}");
    let r: prism_model::Tensor<f32> = prism_store::npy::read_float(&out).unwrap();
    assert_eq!(r.shape(), &[2, 8]);
    assert!(r.data().iter().all(|v| v.is_finite()));
    // by default the relevance at the embeddings is written whole: N × tokens × hidden
    let full = dir.path().join("full.npy");
    let res = prism()
        .args([
            "explain",
            &m("bert.dynamo.onnx"),
            "--input",
            &format!("input_ids={}", m("bert.in0.npy")),
            "--input",
            &format!("attention_mask={}", m("bert.in1.npy")),
            "--composite",
            "attn-lrp",
            "--output",
        ])
        .arg(&full)
        .output()
        .unwrap();
    assert!(res.status.success());
    let f: prism_model::Tensor<f32> = prism_store::npy::read_float(&full).unwrap();
    assert_eq!(f.shape(), &[2, 8, 16]);
    for (s, row) in r.data().iter().zip(f.data().chunks(16)) {
        assert!((s - row.iter().sum::<f32>()).abs() < 1e-5 * s.abs().max(1.0));
    }
    // smoothgrad perturbs a float input: refused for a token model
    let e = fails(&[
        "explain",
        &m("bert.dynamo.onnx"),
        "--input",
        &format!("input_ids={}", m("bert.in0.npy")),
        "--input",
        &format!("attention_mask={}", m("bert.in1.npy")),
        "--attributor",
        "smoothgrad",
        "-o",
        "/tmp/never.npy",
    ]);
    assert!(e.contains("smoothgrad perturbs a float input"), "{e}");
    // a CNN composite leaves attention and LayerNorm without a rule: refused, nodes named
    let e = fails(&[
        "explain",
        &m("bert.dynamo.onnx"),
        "--input",
        &format!("input_ids={}", m("bert.in0.npy")),
        "--input",
        &format!("attention_mask={}", m("bert.in1.npy")),
        "--composite",
        "epsilon-plus",
        "-o",
        "/tmp/never.npy",
    ]);
    assert!(
        e.contains("leaves") && e.contains("LayerNormalization") && e.contains("attn-lrp"),
        "{e}"
    );
}

#[test]
fn heatmap_renders_token_relevance_as_html_and_png() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path().join("r.npy");
    let m = |s: &str| path(&format!("models/{s}"));
    let res = prism()
        .args([
            "explain",
            &m("bert.dynamo.onnx"),
            "--input",
            &format!("input_ids={}", m("bert.in0.npy")),
            "--input",
            &format!("attention_mask={}", m("bert.in1.npy")),
            "--composite",
            "attn-lrp",
            "--output",
        ])
        .arg(&r)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let r = r.to_string_lossy().into_owned();
    // sample 0: 8 tokens; sample 1: the 6 real ones of 8 (the mask pads the last two)
    let tokens = dir.path().join("tokens.txt");
    std::fs::write(
        &tokens,
        "[CLS]\nplay\n##ing\n<b>\n\\s\na&b\nfun\n[SEP]\n\n[CLS]\nĠhi\nthere\n##s\n\\n\n[SEP]\n",
    )
    .unwrap();
    let tokens = tokens.to_string_lossy().into_owned();
    let mask = m("bert.in1.npy");
    let html = dir.path().join("out/text.html");
    let res = prism()
        .args([
            "heatmap",
            &r,
            "--tokens",
            &tokens,
            "--attention-mask",
            &mask,
        ])
        .arg("--output")
        .arg(&html)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert_eq!(page.matches("<section class=\"sample\"").count(), 2);
    assert_eq!(page.matches("<span class=\"t\"").count(), 8 + 6);
    assert!(page.contains(">&lt;b&gt;</span>") && page.contains(">a&amp;b</span>"));
    // WordPiece: "##ing" joins "play" without a space and without "##"
    assert!(page.contains(">play</span><span class=\"t\""), "{page}");
    assert!(page.contains(">ing</span>"), "{page}");
    assert!(page.contains("title=\"position 2 · &quot;##ing&quot; · R = "));

    // one sample as a PNG of the chosen width
    let png = dir.path().join("text.png");
    let res = prism()
        .args([
            "heatmap",
            &r,
            "--tokens",
            &tokens,
            "--attention-mask",
            &mask,
        ])
        .args(["--sample", "1", "--width", "320", "--cmap", "coldnhot"])
        .arg("--output")
        .arg(&png)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let image = prism_heatmap::Image::decode_png(&std::fs::read(&png).unwrap()).unwrap();
    assert_eq!(image.width(), 320);
    assert!(image.to_rgb().iter().any(|&p| p != [255, 255, 255]));

    // without the mask, sample 1 lists fewer tokens than the relevance has positions
    let e = fails(&["heatmap", &r, "--tokens", &tokens, "-o", "/tmp/never.html"]);
    assert!(
        e.contains("sample 1")
            && e.contains("6 token(s)")
            && e.contains("8 token position(s)")
            && e.contains("--attention-mask"),
        "{e}"
    );
    let e = fails(&["heatmap", &r, "--tokens", &tokens, "-o", "/tmp/never.svg"]);
    assert!(e.contains(".html or .png"), "{e}");
    let e = fails(&[
        "heatmap",
        &r,
        "--tokens",
        &tokens,
        "--attention-mask",
        &mask,
        "--sample",
        "2",
        "-o",
        "/tmp/never.html",
    ]);
    assert!(e.contains("sample 2 does not exist"), "{e}");
}

#[test]
fn attribute_on_a_token_dataset_writes_the_relevance_per_token_of_explain() {
    let dir = tempfile::tempdir().unwrap();
    let m = |s: &str| path(&format!("models/{s}"));
    let data = dir.path().join("tokens");
    std::fs::create_dir(&data).unwrap();
    std::fs::copy(m("bert.in0.npy"), data.join("input_ids.npy")).unwrap();
    std::fs::copy(m("bert.in1.npy"), data.join("attention_mask.npy")).unwrap();
    let vocab: Vec<String> = (0..50).map(|i| format!("w{i}")).collect();
    std::fs::write(data.join("vocab.txt"), vocab.join("\n") + "\n").unwrap();
    let h5 = dir.path().join("attr.h5");
    let res = prism()
        .args(["attribute", "--model", &m("bert.dynamo.onnx"), "--dataset"])
        .arg(&data)
        .args([
            "--composite",
            "attn-lrp",
            "--target",
            "predicted",
            "--output",
        ])
        .arg(&h5)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let r = dir.path().join("r.npy");
    let res = prism()
        .args([
            "explain",
            &m("bert.dynamo.onnx"),
            "--input",
            &format!("input_ids={}", m("bert.in0.npy")),
            "--input",
            &format!("attention_mask={}", m("bert.in1.npy")),
            "--composite",
            "attn-lrp",
            "--reduce-hidden",
            "sum",
            "--output",
        ])
        .arg(&r)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let f = prism_store::AttributionFile::open(&h5).unwrap();
    assert_eq!(f.n_samples(), 2);
    let attributed = f.read_rows(&[0, 1]).unwrap();
    let explained: prism_model::Tensor<f32> = prism_store::npy::read_float(&r).unwrap();
    assert_eq!(attributed.len(), 16);
    for (a, e) in attributed.iter().zip(explained.data()) {
        assert!((a - e).abs() <= 1e-6 * e.abs().max(1e-6), "{a} vs {e}");
    }

    // --record on a token dataset: what explain --record gives, bit for bit
    let rec_h5 = dir.path().join("rec.h5");
    let record = ["--record", "node_MatMul_4*", "--record-mode", "maps"];
    let res = prism()
        .args(["attribute", "--model", &m("bert.dynamo.onnx"), "--dataset"])
        .arg(&data)
        .args(["--composite", "attn-lrp", "--target", "predicted"])
        .args(record)
        .arg("--output")
        .arg(&rec_h5)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let rec_npy = dir.path().join("rec.npy");
    prism()
        .args([
            "explain",
            &m("bert.dynamo.onnx"),
            "--input",
            &format!("input_ids={}", m("bert.in0.npy")),
            "--input",
            &format!("attention_mask={}", m("bert.in1.npy")),
            "--composite",
            "attn-lrp",
        ])
        .args(record)
        .arg("--output")
        .arg(&rec_npy)
        .assert()
        .success();
    let f = prism_store::AttributionFile::open(&rec_h5).unwrap();
    let layout = f.record().unwrap().unwrap();
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("rec.record/index.json")).unwrap(),
    )
    .unwrap();
    let nodes = index["nodes"].as_array().unwrap();
    assert_eq!(layout.nodes.len(), 2);
    assert_eq!(nodes.len(), 2);
    for (i, (l, n)) in layout.nodes.iter().zip(nodes).enumerate() {
        assert_eq!(n["node"], l.node.as_str());
        let rows = f.read_record_rows(i, 0, 2).unwrap();
        let npy = |key: &str| dir.path().join("rec.record").join(n[key].as_str().unwrap());
        let want: prism_model::Tensor<f32> =
            prism_store::npy::read_float(&npy("relevance")).unwrap();
        assert_eq!(want.shape()[0], 2);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&rows.relevance), bits(want.data()), "{}", l.node);
        let top = prism_store::npy::read_i64(&npy("top_channels")).unwrap();
        assert_eq!(rows.top_channels, top.data(), "{}", l.node);
    }
    drop(f);

    // an id beyond the vocabulary is an error naming it
    std::fs::write(data.join("vocab.txt"), "a\nb\n").unwrap();
    let e = fails(&[
        "attribute",
        "--model",
        &m("bert.dynamo.onnx"),
        "--dataset",
        &data.to_string_lossy(),
        "--output",
        &dir.path().join("never.h5").to_string_lossy(),
        "--target",
        "predicted",
    ]);
    assert!(e.contains("outside the vocabulary's 2 ids"), "{e}");
}
