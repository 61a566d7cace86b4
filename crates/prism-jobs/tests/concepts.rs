//! `prism concepts` through the library: the reference samples zennit-crp's
//! `FeatureVisualization.run` selects (tests/fixtures/crp, written by
//! scripts/make_crp_fixtures.py), and the run protocol on the demo data (stopped and resumed,
//! sharded and merged, compared with the uninterrupted run), crops and heatmaps.

use std::collections::{BTreeSet, HashMap};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use prism_attribution::{RecordedLayer, Target};
use prism_jobs::concepts::{concept_batch, concepts_explainer};
use prism_jobs::demo::demo_method;
use prism_jobs::{concepts_dataset, ConceptsJob, ConceptsOutcome, RunProgress};
use prism_model::{Model, Tensor};
use prism_store::concepts_run::{abs_norm_scores, read_concept_rows, read_concepts};
use prism_store::{merge_concepts, npy, Maxima, Shard};
use serde_json::Value;

fn crp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/crp")
}

fn assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/demo")
}

/// The selection of zennit-crp's FeatureVisualization (EpsilonPlusFlat, BN merged, targets =
/// labels, batches of 8, float64) on 24 images: every sample order, score and maximum position.
#[test]
fn relmax_and_actmax_select_what_zennit_crp_selects() {
    let dir = crp_dir();
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let refsel = &manifest["refsel"];
    let model = Model::load(&dir.join("crp_vgg.onnx")).unwrap();
    let data: Tensor<f32> = npy::read_float(&dir.join("crp_refsel.data.npy")).unwrap();
    let labels: Vec<usize> = refsel["labels_values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let layer_names: Vec<(String, String)> = refsel["layers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(m, n)| (m.clone(), n.as_str().unwrap().to_string()))
        .collect();
    let nodes: Vec<String> = layer_names.iter().map(|(_, n)| n.clone()).collect();
    let method = demo_method().unwrap();
    let explainer = concepts_explainer(&model, &method, &nodes);
    let x: Tensor<f64> = Tensor::new(
        data.shape().to_vec(),
        data.data().iter().map(|&v| f64::from(v)).collect(),
    )
    .unwrap();
    let n = x.shape()[0];
    let row = x.len() / n;
    let mut shape = x.shape().to_vec();
    shape[0] = 8;
    let layers: Vec<RecordedLayer> = explainer.recorded_layers::<f64>(&shape).unwrap();
    assert_eq!(
        layers.iter().map(|l| l.node.clone()).collect::<Vec<_>>(),
        {
            let mut s = nodes.clone();
            s.sort();
            s
        },
        "layers in graph order"
    );
    // tables over the 24 samples, in batches of 8 (as the reference ran)
    let mut rel: Vec<Vec<f32>> = vec![Vec::new(); layers.len()];
    let mut act: Vec<Vec<f32>> = vec![Vec::new(); layers.len()];
    let mut rel_loc: Vec<Vec<i64>> = vec![Vec::new(); layers.len()];
    let mut act_loc: Vec<Vec<i64>> = vec![Vec::new(); layers.len()];
    for b in (0..n).step_by(8) {
        let e = (b + 8).min(n);
        let mut s = x.shape().to_vec();
        s[0] = e - b;
        let xb = Tensor::new(s, x.data()[b * row..e * row].to_vec()).unwrap();
        let t = concept_batch(
            &explainer,
            &layers,
            &xb,
            &Target::PerSample(labels[b..e].to_vec()),
            0,
        )
        .unwrap();
        for (i, l) in t.layers.iter().enumerate() {
            rel[i].extend(&l.relevance);
            act[i].extend(&l.activation);
            rel_loc[i].extend(&l.relevance_location);
            act_loc[i].extend(&l.activation_location);
        }
    }
    let index: Vec<u32> = (0..n as u32).collect();
    let mut checked = 0;
    for (module, node) in &layer_names {
        let li = layers.iter().position(|l| &l.node == node).unwrap();
        let c = layers[li].sample_shape[0];
        for (mode, values, locs) in [
            ("RelMax", &rel[li], &rel_loc[li]),
            ("ActMax", &act[li], &act_loc[li]),
        ] {
            let files = &refsel["files"][format!("{module}/{mode}")];
            let read_i = |k: &str| {
                npy::read_i64(&dir.join(files[k].as_str().unwrap()))
                    .unwrap()
                    .data()
                    .to_vec()
            };
            let want_d = read_i("d_c_sorted");
            let want_rf = read_i("rf_c_sorted");
            let want_rel: Tensor<f64> =
                npy::read_float(&dir.join(files["rel_c_sorted"].as_str().unwrap())).unwrap();
            let m = Maxima::select(&index, &abs_norm_scores(values, c), locs, c, 40);
            // rows of a channel that the reference leaves in unspecified order (exact ties)
            let mut tied: HashMap<usize, (usize, usize)> = HashMap::new();
            for t in files["ties"].as_array().unwrap() {
                let r = t["rows"].as_array().unwrap();
                tied.insert(
                    t["channel"].as_u64().unwrap() as usize,
                    (
                        r[0].as_u64().unwrap() as usize,
                        r[1].as_u64().unwrap() as usize,
                    ),
                );
            }
            for ch in 0..c {
                let col = |v: &[i64], k: usize| v[k * c + ch];
                let (t0, t1) = tied.get(&ch).copied().unwrap_or((usize::MAX, 0));
                let want_tied: BTreeSet<(i64, i64)> = (t0..=t1.min(n - 1))
                    .filter(|_| t0 != usize::MAX)
                    .map(|k| (col(&want_d, k), col(&want_rf, k)))
                    .collect();
                let got_tied: BTreeSet<(i64, i64)> = (t0..=t1.min(n - 1))
                    .filter(|_| t0 != usize::MAX)
                    .map(|k| (m.sample[k * c + ch], m.location[k * c + ch]))
                    .collect();
                assert_eq!(got_tied, want_tied, "{module} {mode} channel {ch} ties");
                for k in 0..n {
                    let want_score = want_rel.data()[k * c + ch];
                    let got_score = f64::from(m.score[k * c + ch]);
                    assert!(
                        (got_score - want_score).abs() <= 1e-6 * want_score.abs().max(1e-3),
                        "{module} {mode} channel {ch} rank {k}: score {got_score} vs \
                         {want_score}"
                    );
                    if (t0..=t1).contains(&k) {
                        continue;
                    }
                    assert_eq!(
                        (m.sample[k * c + ch], m.location[k * c + ch]),
                        (col(&want_d, k), col(&want_rf, k)),
                        "{module} {mode} channel {ch} rank {k}: (sample, position)"
                    );
                    checked += 1;
                }
                // fewer samples than kept: the rest is empty
                assert_eq!(m.sample[n * c + ch], -1);
                assert!(m.score[n * c + ch].is_nan());
            }
        }
    }
    assert!(checked > 1000, "{checked} entries compared");
}

/// The demo's model on its digits: two conv layers.
fn job(output: &Path, limit: usize, shard: Option<Shard>) -> ConceptsJob {
    ConceptsJob {
        model: assets().join("mnist-cnn.onnx"),
        dataset: assets().join("mnist.h5"),
        dataset_options: Default::default(),
        output: output.to_path_buf(),
        layers: vec!["/*/Conv".into()],
        target: "label".into(),
        batch_size: 8,
        shard,
        limit: Some(limit),
        top_n: 6,
        crops: 3,
        sample_heatmaps: 2,
        prefetch: 2,
        force: false,
        allow_nonfinite: false,
    }
}

struct StopAfter(usize);

impl RunProgress for StopAfter {
    fn part_written(&mut self, _samples: usize) -> ControlFlow<()> {
        self.0 -= 1;
        if self.0 == 0 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

#[test]
fn a_stopped_run_resumes_and_shards_merge_to_the_same_file() {
    let tmp = tempfile::tempdir().unwrap();
    let method = demo_method().unwrap();
    let whole = tmp.path().join("whole.h5");
    let out =
        concepts_dataset(&job(&whole, 40, None), &method, &mut prism_jobs::NoProgress).unwrap();
    let ConceptsOutcome::Written {
        samples, layers, ..
    } = out
    else {
        panic!("{out:?}")
    };
    assert_eq!(samples, 40);
    assert_eq!(layers, vec!["/0/Conv".to_string(), "/3/Conv".to_string()]);
    let (tables, maxima) = read_concepts(&whole).unwrap();
    assert_eq!(tables.index, (0..40).collect::<Vec<u32>>());

    // Stopped after 2 of 5 parts, then resumed.
    let resumed = tmp.path().join("resumed.h5");
    let out = concepts_dataset(&job(&resumed, 40, None), &method, &mut StopAfter(2)).unwrap();
    assert!(
        matches!(out, ConceptsOutcome::Stopped { parts: 2, .. }),
        "{out:?}"
    );
    assert!(!resumed.exists());
    concepts_dataset(
        &job(&resumed, 40, None),
        &method,
        &mut prism_jobs::NoProgress,
    )
    .unwrap();
    let again = read_concepts(&resumed).unwrap();
    assert_eq!(again.1, maxima);
    for (a, b) in again.0.layers.iter().zip(&tables.layers) {
        assert_eq!(a.relevance, b.relevance);
        assert_eq!(a.activation_location, b.activation_location);
    }
    // A second run finds it complete.
    let out = concepts_dataset(
        &job(&resumed, 40, None),
        &method,
        &mut prism_jobs::NoProgress,
    )
    .unwrap();
    assert!(matches!(out, ConceptsOutcome::AlreadyComplete { .. }));

    // Two shards, merged.
    let pattern = tmp.path().join("shard-{shard}.h5");
    let mut shard_files = Vec::new();
    for i in 0..2 {
        let s = Shard::new(i, 2).unwrap();
        let out = concepts_dataset(
            &job(&pattern, 40, Some(s)),
            &method,
            &mut prism_jobs::NoProgress,
        )
        .unwrap();
        let ConceptsOutcome::Written { output, .. } = out else {
            panic!("{out:?}")
        };
        shard_files.push(output);
    }
    let merged = tmp.path().join("merged.h5");
    // shards in any order
    shard_files.reverse();
    merge_concepts(&shard_files, &merged, false).unwrap();
    let m = read_concepts(&merged).unwrap();
    assert_eq!(m.0.index, tables.index);
    assert_eq!(m.1, maxima, "merged shards select as the whole run");
    for (a, b) in m.0.layers.iter().zip(&tables.layers) {
        assert_eq!(a.relevance, b.relevance);
        assert_eq!(a.activation, b.activation);
    }
    // A shard alone is refused: samples are missing.
    let e = merge_concepts(&shard_files[..1], &tmp.path().join("half.h5"), false).unwrap_err();
    assert!(e.to_string().contains("leave 16 of 40 samples out"), "{e}");
}

#[test]
fn crops_are_computed_for_the_first_references_and_lie_in_the_image() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("c.h5");
    concepts_dataset(
        &job(&out, 24, None),
        &demo_method().unwrap(),
        &mut prism_jobs::NoProgress,
    )
    .unwrap();
    let (tables, maxima) = read_concepts(&out).unwrap();
    let mut checked = 0;
    for (lt, lm) in tables.layers.iter().zip(&maxima) {
        let c = lt.info.channels();
        for m in [&lm.relmax, &lm.actmax] {
            assert_eq!(m.crops, 3);
            for k in 0..m.top_n {
                for ch in 0..c {
                    let at = k * c + ch;
                    let b = &m.boxes[at * 4..at * 4 + 4];
                    if k < 3 && m.score[at] > 0.0 {
                        assert!(
                            b[0] < b[1] && b[2] < b[3] && b[1] <= 28 && b[3] <= 28,
                            "{} channel {ch} rank {k}: box {b:?}",
                            lt.info.node
                        );
                    } else if k >= 3 {
                        assert_eq!(b, &[0, 0, 0, 0]);
                    }
                }
            }
            // scores descend per channel
            for ch in 0..c {
                for k in 1..m.top_n {
                    assert!(m.score[(k - 1) * c + ch] >= m.score[k * c + ch]);
                }
            }
        }
        // the first layer (3×3, stride 1, padding 1, on 28×28) maps position (y, x) to the
        // input pixels around (y, x): the crop holds that pixel
        if lt.info.node == "/0/Conv" {
            let m = &lm.relmax;
            for ch in 0..c {
                if m.score[ch] <= 0.0 {
                    continue;
                }
                let (y, x) = ((m.location[ch] / 28) as i32, (m.location[ch] % 28) as i32);
                let b = &m.boxes[ch * 4..ch * 4 + 4];
                assert!(
                    b[0] <= y && y < b[1] && b[2] <= x && x < b[3],
                    "channel {ch}: position ({y}, {x}), box {b:?}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 0);
}

#[test]
fn layers_that_do_not_exist_are_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let mut j = job(&tmp.path().join("x.h5"), 8, None);
    j.layers = vec!["/features/*/Conv".into()];
    let e = concepts_dataset(&j, &demo_method().unwrap(), &mut prism_jobs::NoProgress).unwrap_err();
    let msg = format!(
        "{e}: {}",
        std::error::Error::source(&e)
            .map(|s| s.to_string())
            .unwrap_or_default()
    );
    assert!(msg.contains("matches no node"), "{msg}");
    assert!(msg.starts_with("finding the layers"), "{msg}");
    // nothing is left behind that the corrected run would refuse
    assert!(!tmp.path().join("x.h5.partial").exists());
    j.layers = vec!["/*/Conv".into()];
    j.top_n = 2;
    j.crops = 0;
    j.sample_heatmaps = 0;
    let done = concepts_dataset(&j, &demo_method().unwrap(), &mut prism_jobs::NoProgress);
    assert!(
        matches!(done, Ok(ConceptsOutcome::Written { .. })),
        "{done:?}"
    );
}

#[test]
fn the_rows_read_back_hold_the_targets_and_the_heatmaps_of_the_most_relevant_channels() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("c.h5");
    concepts_dataset(
        &job(&out, 24, None),
        &demo_method().unwrap(),
        &mut prism_jobs::NoProgress,
    )
    .unwrap();
    let (tables, _) = read_concepts(&out).unwrap();
    let rows = read_concept_rows(&out).unwrap();
    let data = prism_store::Dataset::open(assets().join("mnist.h5"), &Default::default()).unwrap();
    let labels = data.labels().unwrap();
    let want: Vec<u32> = labels[..24].iter().map(|l| l.unwrap()).collect();
    assert_eq!(rows.target, want, "target = the labels");
    assert_eq!(rows.classes, 10);
    assert_eq!(rows.prediction.len(), 24 * 10);
    assert_eq!(rows.heatmaps.len(), tables.layers.len());
    for (lt, hm) in tables.layers.iter().zip(&rows.heatmaps) {
        let hm = hm.as_ref().expect("sample_heatmaps 2 keeps heatmaps");
        assert_eq!(hm.shape, [24, 2, 28, 28]);
        let c = lt.info.channels();
        for r in 0..24 {
            // the two most relevant channels, largest first
            let row = &lt.relevance[r * c..(r + 1) * c];
            let mut order: Vec<usize> = (0..c).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            let got: Vec<usize> = hm.channel[r * 2..r * 2 + 2]
                .iter()
                .map(|&ch| ch as usize)
                .collect();
            assert_eq!(got, order[..2], "{} row {r}", lt.info.node);
            let map = &hm.heatmap[r * 2 * 784..(r * 2 + 1) * 784];
            assert!(map.iter().all(|v| v.is_finite()) && map.iter().any(|&v| v != 0.0));
        }
    }
}
