//! TCAV against Captum 0.9 (tests/fixtures/tcav, written by scripts/make_tcav_fixtures.py):
//! (a) the activations and gradients at the layer, f32 and f64; (b) the TCAV scores with
//! Captum's CAVs given; (c) the scores of Prism's own classifier against the spread of Captum's
//! over seeds; (d) the t-test against scipy's; and the job end to end (report, plot, errors).

use std::path::{Path, PathBuf};

use prism_jobs::tcav::cav::tcav_scores;
use prism_jobs::tcav::stats::ttest_ind;
use prism_jobs::tcav::{
    self, layer_activations, layer_gradients, ExampleSet, LayerRows, NamedRows, NoTcavProgress,
    ReportHeader, SetInfo, SetRef, TcavError, TcavJob, TcavSettings,
};
use prism_model::{DType, Float, Model};
use prism_store::dataset::{Dataset, DatasetOptions};
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tcav")
}

fn manifest() -> Value {
    let text = std::fs::read_to_string(dir().join("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn npy(name: &str) -> (Vec<f64>, Vec<usize>) {
    let a = prism_store::npy::NpyArray::open(dir().join(name)).unwrap();
    (a.read_all().unwrap(), a.shape().to_vec())
}

fn set_path(name: &str) -> PathBuf {
    dir().join("sets").join(name)
}

fn open(name: &str) -> Dataset {
    Dataset::open(set_path(name), &DatasetOptions::default()).unwrap()
}

fn names(m: &Value, key: &str) -> Vec<String> {
    m[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn model() -> Model {
    Model::load(&dir().join("tcav_cnn.onnx")).unwrap()
}

fn activations<T: Float>(model: &Model, layer: &str, name: &str) -> LayerRows {
    let d = open(name);
    let r = SetRef {
        what: "concept",
        name,
        path: &set_path(name),
        dataset: &d,
    };
    layer_activations::<T>(model, layer, r, 7, false, &mut NoTcavProgress).unwrap()
}

fn gradients<T: Float>(model: &Model, layer: &str, target: usize) -> LayerRows {
    let d = open("inputs");
    let r = SetRef {
        what: "inputs",
        name: "inputs",
        path: &set_path("inputs"),
        dataset: &d,
    };
    layer_gradients::<T>(model, layer, target, r, 5, false, &mut NoTcavProgress).unwrap()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn activations_and_gradients_at_the_layer_equal_captums() {
    let m = manifest();
    let layer = m["layer"].as_str().unwrap();
    let target = m["target"].as_u64().unwrap() as usize;
    let model = model();
    let mut sets = names(&m, "concepts");
    sets.extend(names(&m, "randoms"));
    for name in &sets {
        let got = activations::<f32>(&model, layer, name);
        let (want, shape) = npy(&format!("act__{name}__f32.npy"));
        assert_eq!([got.n, got.d], [shape[0], shape[1]], "{name}");
        assert_eq!(got.sample_shape, vec![8, 8, 8]);
        let d = max_diff(&got.data, &want);
        assert!(d <= 1e-5, "{name} f32: {d}");
    }
    for name in ["striped", "random_0"] {
        let got = activations::<f64>(&model, layer, name);
        let (want, _) = npy(&format!("act__{name}__f64.npy"));
        let d = max_diff(&got.data, &want);
        assert!(d <= 1e-12, "{name} f64: {d}");
    }
    for (tag, got) in [
        ("f32", gradients::<f32>(&model, layer, target)),
        ("f64", gradients::<f64>(&model, layer, target)),
    ] {
        let (want, shape) = npy(&format!("grad__inputs__{tag}.npy"));
        assert_eq!([got.n, got.d], [shape[0], shape[1]]);
        let scale = want.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        assert!(scale > 1e-3, "the gradients are not all zero");
        let d = max_diff(&got.data, &want);
        let tol = if tag == "f32" { 1e-5 } else { 1e-12 };
        assert!(d <= tol, "gradients {tag}: {d}");
    }
}

#[test]
fn scores_with_captums_cavs_equal_captums() {
    let m = manifest();
    let layer = m["layer"].as_str().unwrap();
    let target = m["target"].as_u64().unwrap() as usize;
    let grads = gradients::<f32>(&model(), layer, target);
    let run = &m["runs"][0]["experiments"];
    let mut distinct = std::collections::BTreeSet::new();
    for e in m["experiments"].as_array().unwrap() {
        let e = e.as_str().unwrap();
        let (cav, _) = npy(&format!("cav__{e}.npy"));
        let s = tcav_scores(grads.rows(), &cav);
        let want_sign = run[e]["sign_count"].as_f64().unwrap();
        let want_mag = run[e]["magnitude"].as_f64().unwrap();
        // the sign count is a share of 16 samples: equal exactly
        assert_eq!(s.sign_count, want_sign, "{e}");
        // the magnitude: Captum's float32 matmul and mean against Prism's f64 sums
        assert!(
            (s.magnitude - want_mag).abs() <= 1e-5 * want_mag.abs().max(1.0),
            "{e}: {} vs {want_mag}",
            s.magnitude
        );
        distinct.insert((want_sign * 16.0) as i64);
    }
    // the fixture exercises more than one score
    assert!(distinct.len() >= 4, "{distinct:?}");
}

/// Prism's runs over the same experiments and seeds as the fixture's: per experiment, the
/// sign counts and unit magnitudes per seed.
fn prism_runs(m: &Value, seeds: &[u64]) -> Vec<(String, Vec<f64>, Vec<f64>)> {
    let layer = m["layer"].as_str().unwrap();
    let target = m["target"].as_u64().unwrap() as usize;
    let model = model();
    let grads = gradients::<f32>(&model, layer, target);
    let concepts = names(m, "concepts");
    let randoms = names(m, "randoms");
    let rows: Vec<LayerRows> = concepts
        .iter()
        .chain(&randoms)
        .map(|n| activations::<f32>(&model, layer, n))
        .collect();
    let named: Vec<NamedRows<'_>> = concepts
        .iter()
        .chain(&randoms)
        .zip(&rows)
        .map(|(n, r)| NamedRows {
            set: SetInfo {
                name: n.clone(),
                path: n.clone(),
                samples: r.n,
            },
            rows: r,
        })
        .collect();
    let (c, r) = named.split_at(concepts.len());
    let mut out: Vec<(String, Vec<f64>, Vec<f64>)> = Vec::new();
    for &seed in seeds {
        let report = tcav::tcav_scores(
            ReportHeader {
                model: "m".into(),
                layer: layer.into(),
                target,
                dtype: DType::F32,
                inputs: SetInfo {
                    name: "inputs".into(),
                    path: "inputs".into(),
                    samples: grads.n,
                },
            },
            c,
            r,
            &grads,
            &TcavSettings {
                seed,
                ..TcavSettings::default()
            },
        )
        .unwrap();
        let runs = report
            .concepts
            .iter()
            .flat_map(|c| c.runs.iter())
            .chain(&report.random_baseline.runs);
        for run in runs {
            let key = format!("{}__{}", run.concept, run.random);
            match out.iter_mut().find(|(k, _, _)| *k == key) {
                Some((_, s, mg)) => {
                    s.push(run.sign_count);
                    mg.push(run.magnitude);
                }
                None => out.push((key, vec![run.sign_count], vec![run.magnitude])),
            }
        }
    }
    out
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    (
        m,
        (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n).sqrt(),
    )
}

#[test]
fn prisms_classifier_scores_within_the_run_to_run_spread() {
    let m = manifest();
    let seeds: Vec<u64> = (0..8).collect();
    let ours = prism_runs(&m, &seeds);
    let runs = m["runs"].as_array().unwrap();
    let experiments = m["experiments"].as_array().unwrap();
    assert_eq!(ours.len(), experiments.len());
    let mut outside = Vec::new();
    for (key, sign, mag) in &ours {
        let theirs: Vec<f64> = runs
            .iter()
            .map(|r| r["experiments"][key]["sign_count"].as_f64().unwrap())
            .collect();
        let theirs_mag: Vec<f64> = runs
            .iter()
            .map(|r| {
                let e = &r["experiments"][key];
                e["magnitude"].as_f64().unwrap() / e["cav_norm"].as_f64().unwrap()
            })
            .collect();
        let (mp, sp) = mean_std(sign);
        let (mc, sc) = mean_std(&theirs);
        // one sample of the 16 either way, plus twice the larger spread
        let tol = 2.0 * sp.max(sc) + 1.0 / 16.0;
        if (mp - mc).abs() > tol {
            outside.push(format!(
                "{key}: sign count {mp:.3}±{sp:.3} vs {mc:.3}±{sc:.3}"
            ));
        }
        let (mp, sp) = mean_std(mag);
        let (mc, sc) = mean_std(&theirs_mag);
        let tol = 2.0 * sp.max(sc) + 0.05 * mc.abs().max(mp.abs());
        if (mp - mc).abs() > tol {
            outside.push(format!(
                "{key}: magnitude {mp:.4}±{sp:.4} vs {mc:.4}±{sc:.4}"
            ));
        }
    }
    assert!(outside.is_empty(), "{}", outside.join("\n"));
}

#[test]
fn t_test_p_values_equal_scipys() {
    let m = manifest();
    let cases = m["ttests"].as_array().unwrap();
    assert!(cases.len() >= 8);
    for (i, c) in cases.iter().enumerate() {
        let vals = |k: &str| -> Vec<f64> {
            c[k].as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        };
        let t = ttest_ind(&vals("a"), &vals("b")).unwrap();
        let (ws, wp) = (
            c["statistic"].as_f64().unwrap(),
            c["pvalue"].as_f64().unwrap(),
        );
        assert!(
            (t.statistic - ws).abs() <= 1e-8 * ws.abs().max(1.0),
            "case {i}: t {} vs {ws}",
            t.statistic
        );
        assert!(
            (t.pvalue - wp).abs() <= 1e-8,
            "case {i}: p {} vs {wp}",
            t.pvalue
        );
    }
}

fn job(m: &Value) -> TcavJob {
    TcavJob {
        model: dir().join("tcav_cnn.onnx"),
        layer: m["layer"].as_str().unwrap().into(),
        target: 0,
        concepts: names(m, "concepts")
            .into_iter()
            .map(|n| ExampleSet {
                path: set_path(&n),
                name: n,
            })
            .collect(),
        randoms: names(m, "randoms")
            .into_iter()
            .map(|n| ExampleSet {
                path: set_path(&n),
                name: n,
            })
            .collect(),
        inputs: set_path("inputs"),
        dataset_options: DatasetOptions::default(),
        settings: TcavSettings::default(),
        dtype: DType::F32,
        batch_size: 8,
        allow_nonfinite: false,
    }
}

#[test]
fn the_job_reports_what_the_layer_rows_give_and_writes_its_files() {
    let m = manifest();
    let report = tcav::tcav(&job(&m), &mut NoTcavProgress).unwrap();
    let ours = prism_runs(&m, &[0]);
    assert_eq!(report.concepts.len(), 2);
    assert_eq!(report.correction, "bonferroni");
    assert_eq!(report.alpha_corrected, 0.025);
    assert_eq!(report.layer_shape, vec![8, 8, 8]);
    assert_eq!(report.inputs.samples, 16);
    for c in &report.concepts {
        assert_eq!(c.set.samples, 30);
        assert_eq!(c.runs.len(), 6);
        for run in &c.runs {
            let key = format!("{}__{}", run.concept, run.random);
            let (_, s, _) = ours.iter().find(|(k, _, _)| *k == key).unwrap();
            assert_eq!(run.sign_count, s[0], "{key}");
        }
        let signs: Vec<f64> = c.runs.iter().map(|r| r.sign_count).collect();
        let base: Vec<f64> = report
            .random_baseline
            .runs
            .iter()
            .map(|r| r.sign_count)
            .collect();
        let t = ttest_ind(&signs, &base).unwrap();
        assert_eq!(c.test.p_value, Some(t.pvalue).filter(|p| !p.is_nan()));
        assert_eq!(
            c.test.significant,
            c.test.p_value.is_some_and(|p| p < 0.025)
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let (json, png) = (tmp.path().join("r.json"), tmp.path().join("r.png"));
    tcav::write_report(&report, &json, Some(&png)).unwrap();
    let back: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(back["concepts"][0]["name"], "striped");
    assert_eq!(
        back["concepts"][0]["sign_count"]["mean"].as_f64().unwrap(),
        report.concepts[0].sign_count.mean
    );
    assert_eq!(back["random_baseline"]["runs"].as_array().unwrap().len(), 6);
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
}

#[test]
fn bad_inputs_are_named() {
    let m = manifest();
    let mut j = job(&m);
    j.layer = "/no/such/Relu".into();
    let e = tcav::tcav(&j, &mut NoTcavProgress).unwrap_err();
    assert!(matches!(e, TcavError::UnknownLayer { .. }), "{e}");
    assert!(e.to_string().contains("/no/such/Relu"));

    let mut j = job(&m);
    j.target = 3;
    let e = tcav::tcav(&j, &mut NoTcavProgress).unwrap_err();
    assert!(
        matches!(
            e,
            TcavError::Target {
                target: 3,
                classes: 3
            }
        ),
        "{e}"
    );

    let mut j = job(&m);
    j.concepts[1].path = dir().join("sets/nowhere");
    let e = tcav::tcav(&j, &mut NoTcavProgress).unwrap_err();
    assert!(e.to_string().contains("checkered"), "{e}");
    assert!(e.to_string().contains("nowhere"), "{e}");

    let mut j = job(&m);
    j.randoms.truncate(1);
    let e = tcav::tcav(&j, &mut NoTcavProgress).unwrap_err();
    assert!(matches!(e, TcavError::TooFewRandom { got: 1, .. }), "{e}");

    let mut j = job(&m);
    j.randoms[2].name = "striped".into();
    let e = tcav::tcav(&j, &mut NoTcavProgress).unwrap_err();
    assert!(matches!(e, TcavError::DuplicateName(_)), "{e}");
}
