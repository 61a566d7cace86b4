//! `prism explain --record` and `--condition` (CRP) through the command line: the output
//! matches zennit-crp's (fixtures of scripts/make_crp_fixtures.py), the record folder holds what
//! its index says, and bad conditions are one-line errors naming what exists.

use std::path::{Path, PathBuf};

use prism_model::Tensor;
use prism_store::npy;
use serde_json::Value;

mod common;
use common::{fails, prism};

fn crp(p: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/crp")
        .join(p)
        .to_string_lossy()
        .into_owned()
}

fn manifest() -> Value {
    serde_json::from_str(&std::fs::read_to_string(crp("manifest.json")).unwrap()).unwrap()
}

fn case<'a>(m: &'a Value, model: &str, name: &str) -> &'a Value {
    m["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["model"] == model && c["case"] == name && c["dtype"] == "float64")
        .unwrap()
}

fn max_rel_err(got: &Tensor<f64>, want: &Tensor<f64>) -> f64 {
    assert_eq!(got.shape(), want.shape());
    let scale = want.data().iter().fold(0f64, |m, v| m.max(v.abs()));
    got.data()
        .iter()
        .zip(want.data())
        .fold(0f64, |m, (a, b)| m.max((a - b).abs()))
        / scale
}

fn labels(dir: &Path, v: &[i64]) -> PathBuf {
    let p = dir.join("labels.npy");
    npy::write_i64(&p, &Tensor::new(vec![v.len()], v.to_vec()).unwrap()).unwrap();
    p
}

/// zennit-crp's conditional heatmap on a ResNet block's second convolution, with the skip
/// path carrying its relevance (default) and excluded (`--exclude-parallel`).
#[test]
fn explain_with_a_condition_matches_zennit_crp() {
    let m = manifest();
    let dir = tempfile::tempdir().unwrap();
    let targets = labels(dir.path(), &[1, 3]);
    for (name, extra) in [
        ("c-conv2-ep0", None),
        ("c-conv2-ep1", Some("--exclude-parallel")),
    ] {
        let c = case(&m, "crp_resnet", name);
        let out = dir.path().join(format!("{name}.npy"));
        let mut cmd = prism();
        cmd.args([
            "explain",
            &crp("crp_resnet.onnx"),
            &crp("crp_resnet.input.npy"),
            "-o",
            out.to_str().unwrap(),
            "--composite",
            "epsilon-plus-flat",
            "--dtype",
            "f64",
            "--target",
            targets.to_str().unwrap(),
            "--condition",
            "/layer/layer.1/conv2/Conv:4,9",
        ]);
        if let Some(e) = extra {
            cmd.arg(e);
        }
        cmd.assert().success();
        let got: Tensor<f64> = npy::read_float(&out).unwrap();
        let want: Tensor<f64> =
            npy::read_float(Path::new(&crp(c["file"].as_str().unwrap()))).unwrap();
        let e = max_rel_err(&got, &want);
        assert!(e <= 1e-6, "{name}: {e}");
    }
}

/// Several conditions: one row per sample and condition; `--record` writes the folder its
/// index describes, with zennit-crp's recorded relevance and activations.
#[test]
fn explain_records_nodes_and_batches_conditions() {
    let m = manifest();
    let dir = tempfile::tempdir().unwrap();
    let c = case(&m, "crp_vgg", "b-multi2-ep0");
    let out = dir.path().join("multi.npy");
    let r = prism()
        .args([
            "explain",
            &crp("crp_vgg.onnx"),
            &crp("crp_vgg.input.npy"),
            "-o",
            out.to_str().unwrap(),
            "--composite",
            "epsilon-plus-flat",
            "--dtype",
            "f64",
            "--target",
            "1",
            "--condition",
            "/features/features.3/Conv:0",
            "--condition",
            "/features/features.3/Conv:1",
            "--condition",
            "/features/features.3/Conv:2-3",
        ])
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert!(
        stdout.contains("sample 1, condition 2: target 1"),
        "{stdout}"
    );
    let got: Tensor<f64> = npy::read_float(&out).unwrap();
    let want: Tensor<f64> = npy::read_float(Path::new(&crp(c["file"].as_str().unwrap()))).unwrap();
    assert!(max_rel_err(&got, &want) <= 1e-6);

    // recording, maps and channels
    let c = case(&m, "crp_vgg", "e-rec-cond-ep0");
    let targets = labels(dir.path(), &[1, 3]);
    for mode in ["maps", "channels"] {
        let out = dir.path().join(format!("rec-{mode}.npy"));
        prism()
            .args([
                "explain",
                &crp("crp_vgg.onnx"),
                &crp("crp_vgg.input.npy"),
                "-o",
                out.to_str().unwrap(),
                "--composite",
                "epsilon-plus-flat",
                "--dtype",
                "f64",
                "--target",
                targets.to_str().unwrap(),
                "--condition",
                "/features/features.3/Conv:3",
                "--record",
                "/features/*/Conv",
                "--record",
                "/classifier/classifier.0/Gemm",
                "--record-mode",
                mode,
                "--record-top-k",
                "4",
            ])
            .assert()
            .success();
        let rec = dir.path().join(format!("rec-{mode}.record"));
        let index: Value =
            serde_json::from_str(&std::fs::read_to_string(rec.join("index.json")).unwrap())
                .unwrap();
        assert_eq!(index["mode"], mode);
        let nodes = index["nodes"].as_array().unwrap();
        // three convolutions and the dense layer, in graph order
        let names: Vec<&str> = nodes.iter().map(|n| n["node"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "/features/features.0/Conv",
                "/features/features.3/Conv",
                "/features/features.7/Conv",
                "/classifier/classifier.0/Gemm"
            ]
        );
        for n in nodes {
            let node = n["node"].as_str().unwrap();
            let got: Tensor<f64> =
                npy::read_float(&rec.join(n["relevance"].as_str().unwrap())).unwrap();
            let top = npy::read_i64(&rec.join(n["top_channels"].as_str().unwrap())).unwrap();
            assert_eq!(top.shape()[0], 2, "{node}");
            let Some(r) = c["record"].get(node) else {
                continue; // the first convolution is not in the fixture
            };
            let want: Tensor<f64> =
                npy::read_float(Path::new(&crp(r["relevance"].as_str().unwrap()))).unwrap();
            let want = if mode == "maps" {
                want
            } else {
                prism_attribution::concept::channel_sums(&want).unwrap()
            };
            assert!(max_rel_err(&got, &want) <= 1e-6, "{mode} {node}");
        }
    }
}

#[test]
fn bad_conditions_and_records_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.npy");
    let base = |extra: &[&str]| {
        let mut v = vec![
            "explain".to_string(),
            crp("crp_resnet.onnx"),
            crp("crp_resnet.input.npy"),
            "-o".into(),
            out.to_string_lossy().into_owned(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |extra: &[&str]| {
        let v = base(extra);
        let args: Vec<&str> = v.iter().map(String::as_str).collect();
        fails(&args)
    };
    let e = run(&["--condition", "/layer/layer.1/conv2/Conv:16"]);
    assert!(e.contains("channel 16 does not exist"), "{e}");
    assert!(e.contains("16 channels (0-15)"), "{e}");
    let e = run(&["--condition", "/layer/layer.7/Conv:1"]);
    assert!(
        e.contains("no node or tensor named '/layer/layer.7/Conv'"),
        "{e}"
    );
    let e = run(&["--condition", "conv1"]);
    assert!(e.contains("has no ':' before its channels"), "{e}");
    let e = run(&["--record", "/nope/*"]);
    assert!(e.contains("matches no node"), "{e}");
    let e = run(&["--exclude-parallel"]);
    assert!(e.contains("needs at least one --condition"), "{e}");
    let e = run(&["--condition", "/fc/Gemm:1", "--attributor", "occlusion"]);
    assert!(e.contains("takes the gradient or an LRP composite"), "{e}");
    assert!(!out.exists());
}
