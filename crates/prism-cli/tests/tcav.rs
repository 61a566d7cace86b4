//! `prism tcav` on the Captum fixtures (tests/fixtures/tcav): the report equals the library's,
//! f64 gives the same sign counts, and bad flags are named in one line.

mod common;

use std::path::{Path, PathBuf};

use common::{fails, prism};
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tcav")
}

fn set(name: &str) -> String {
    dir().join("sets").join(name).display().to_string()
}

/// The arguments of a run with both concepts and the six random sets.
fn args(out: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "tcav".into(),
        "--model".into(),
        dir().join("tcav_cnn.onnx").display().to_string(),
        "--layer".into(),
        "/relu2/Relu".into(),
        "--target".into(),
        "0".into(),
        "--concept".into(),
        format!("striped={}", set("striped")),
        "--concept".into(),
        format!("checkered={}", set("checkered")),
        "--inputs".into(),
        set("inputs"),
        "-o".into(),
        out.display().to_string(),
    ];
    for i in 0..6 {
        a.push("--random".into());
        a.push(set(&format!("random_{i}")));
    }
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn run(out: &Path, extra: &[&str]) -> Value {
    let o = prism().args(args(out, extra)).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
}

fn sign_counts(r: &Value) -> Vec<f64> {
    r["concepts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["runs"].as_array().unwrap().clone())
        .chain(r["random_baseline"]["runs"].as_array().unwrap().clone())
        .map(|r| r["sign_count"].as_f64().unwrap())
        .collect()
}

#[test]
fn tcav_writes_the_report_and_plot_and_f64_agrees() {
    let tmp = tempfile::tempdir().unwrap();
    let (json, png) = (tmp.path().join("r.json"), tmp.path().join("r.png"));
    let r = run(&json, &["--plot", png.to_str().unwrap(), "--seed", "3"]);
    assert_eq!(r["layer"], "/relu2/Relu");
    assert_eq!(r["seed"], 3);
    assert_eq!(r["concepts"].as_array().unwrap().len(), 2);
    assert_eq!(r["randoms"][5]["name"], "random_5");
    assert_eq!(r["concepts"][1]["runs"].as_array().unwrap().len(), 6);
    assert!(r["warnings"][0].as_str().unwrap().contains("6 random sets"));
    assert_eq!(&std::fs::read(&png).unwrap()[1..4], b"PNG");
    // the library's report for the same settings, bit for bit
    let job = prism_jobs::TcavJob {
        model: dir().join("tcav_cnn.onnx"),
        layer: "/relu2/Relu".into(),
        target: 0,
        concepts: ["striped", "checkered"]
            .iter()
            .map(|n| prism_jobs::tcav::ExampleSet {
                name: n.to_string(),
                path: set(n).into(),
            })
            .collect(),
        randoms: (0..6)
            .map(|i| prism_jobs::tcav::ExampleSet {
                name: format!("random_{i}"),
                path: set(&format!("random_{i}")).into(),
            })
            .collect(),
        inputs: set("inputs").into(),
        dataset_options: Default::default(),
        settings: prism_jobs::tcav::TcavSettings {
            seed: 3,
            ..Default::default()
        },
        dtype: prism_model::DType::F32,
        batch_size: 32,
        allow_nonfinite: false,
    };
    let lib = prism_jobs::tcav(&job, &mut prism_jobs::tcav::NoTcavProgress).unwrap();
    let lib: Value = serde_json::from_slice(&prism_jobs::tcav::report_json(&lib).unwrap()).unwrap();
    assert_eq!(r["concepts"], lib["concepts"]);
    assert_eq!(r["random_baseline"], lib["random_baseline"]);
    // f64 passes: the same splits, the same sign counts
    let r64 = run(
        &tmp.path().join("r64.json"),
        &["--seed", "3", "--dtype", "f64"],
    );
    assert_eq!(r64["dtype"], "f64");
    assert_eq!(sign_counts(&r), sign_counts(&r64));
}

#[test]
fn bad_flags_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("r.json");
    let with = |from: &str, to: &str| -> Vec<String> {
        args(&out, &[])
            .into_iter()
            .map(|a| if a == from { to.to_string() } else { a })
            .collect()
    };
    let e = fails(&as_str(&with("/relu2/Relu", "/nope")));
    assert!(e.contains("--layer") && e.contains("/nope"), "{e}");
    let bad_target: Vec<String> = {
        let mut a = args(&out, &[]);
        let i = a.iter().position(|x| x == "--target").unwrap();
        a[i + 1] = "7".into();
        a
    };
    let e = fails(&as_str(&bad_target));
    assert!(e.contains("--target") && e.contains("3 classes"), "{e}");
    let e = fails(&as_str(&with(
        &format!("checkered={}", set("checkered")),
        &format!("checkered={}", set("missing")),
    )));
    assert!(
        e.contains("--concept") && e.contains("checkered") && e.contains("missing"),
        "{e}"
    );
    let e = fails(&as_str(&with(
        &format!("striped={}", set("striped")),
        &set("striped"),
    )));
    assert!(e.contains("NAME=PATH"), "{e}");
    assert!(!out.exists());
}

fn as_str(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}
