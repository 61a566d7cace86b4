//! The `/record` group of attribution files (`prism attribute --record`): written in batches and
//! read back, checked at reading, carried through the run protocol's parts, resumption and
//! merged shards unchanged, and absent from the settings (and run keys) of runs without it.

use std::path::{Path, PathBuf};

use prism_attribution::{MethodSpec, RecordMode};
use prism_store::run::{merge_shards, AttributionRun, PartData, PartRecord, Prepared, RunSpec};
use prism_store::{
    AttributionFile, AttributionLayout, AttributionWriter, BatchLabels, LabelLayout, LabelSource,
    RecordLayout, RecordNodeLayout, RecordRows, RecordSettings, RunError, RunSettings, Shard,
};

/// Two nodes: a map (`[4, 2, 2]` per sample, whole) and a dense layer (`[2]`, fewer channels
/// than `top_k`).
fn layout(mode: RecordMode) -> RecordLayout {
    RecordLayout {
        mode,
        top_k: 3,
        nodes: vec![
            RecordNodeLayout {
                node: "/features/features.0/Conv".into(),
                tensor: "conv_out".into(),
                sample_shape: vec![4, 2, 2],
            },
            RecordNodeLayout {
                node: "/fc/Gemm".into(),
                tensor: "logits".into(),
                sample_shape: vec![2],
            },
        ],
    }
}

/// Rows `a..b` of node `node`: values that depend on the sample only, so every batching of
/// the samples writes the same file.
fn rows(layout: &RecordLayout, node: usize, a: usize, b: usize) -> RecordRows {
    let l = &layout.nodes[node];
    let (len, k) = (l.row_len(layout.mode), l.k(layout.top_k));
    let mut r = RecordRows::default();
    for s in a..b {
        for i in 0..len {
            let v = (s * 100 + node * 10 + i) as f32 * 0.25 - 3.0;
            r.relevance.push(v);
            r.activation.push(v * v);
        }
        for j in 0..k {
            r.top_channels.push(((s + j + node) % l.channels()) as i64);
            r.top_share.push(1.0 / (j + s + 2) as f32);
        }
    }
    r
}

fn write_file(path: &Path, n: usize, layout: &RecordLayout) {
    let mut w = AttributionWriter::create(
        path,
        AttributionLayout {
            n_samples: n,
            sample_shape: vec![3],
            n_outputs: 2,
            labels: LabelLayout::Single,
            with_index: false,
            compression: Some(4),
        },
    )
    .unwrap();
    w.write_batch(
        0,
        &vec![0.5; n * 3],
        &vec![1.0; n * 2],
        &BatchLabels::Single(&vec![1; n]),
        None,
    )
    .unwrap();
    w.add_record(layout.clone()).unwrap();
    let h = n / 2;
    for node in 0..layout.nodes.len() {
        // the second half first: rows land where they belong
        w.write_record_rows(node, h, &rows(layout, node, h, n))
            .unwrap();
        w.write_record_rows(node, 0, &rows(layout, node, 0, h))
            .unwrap();
    }
    w.finish().unwrap();
}

#[test]
fn a_record_group_round_trips_in_both_modes() {
    let dir = tempfile::tempdir().unwrap();
    for mode in [RecordMode::Maps, RecordMode::Channels] {
        let path = dir.path().join(format!("{}.h5", mode.name()));
        let l = layout(mode);
        write_file(&path, 7, &l);
        let f = AttributionFile::open(&path).unwrap();
        assert_eq!(f.record().unwrap(), Some(l.clone()));
        for node in 0..2 {
            assert_eq!(
                f.read_record_rows(node, 0, 7).unwrap(),
                rows(&l, node, 0, 7)
            );
            assert_eq!(
                f.read_record_rows(node, 2, 5).unwrap(),
                rows(&l, node, 2, 5)
            );
        }
        // k = min(top_k, C): 3 of the map's 4 channels, both of the dense layer's 2
        assert_eq!(f.read_record_rows(1, 0, 1).unwrap().top_channels.len(), 2);
        assert_eq!(f.read_record_rows(0, 0, 1).unwrap().top_channels.len(), 3);
        assert!(f.read_record_rows(2, 0, 1).is_err());
        assert!(f.read_record_rows(0, 5, 8).is_err());
        drop(f);

        // the layout as docs/formats.md gives it
        let h = hdf5::File::open(&path).unwrap();
        let g = h.group("record").unwrap();
        let s = |loc: &hdf5::Group, a: &str| {
            loc.attr(a)
                .unwrap()
                .read_scalar::<hdf5::types::VarLenUnicode>()
                .unwrap()
                .to_string()
        };
        assert_eq!(s(&g, "format"), "prism-record");
        assert_eq!(s(&g, "mode"), mode.name());
        assert_eq!(g.attr("version").unwrap().read_scalar::<i64>().unwrap(), 1);
        assert_eq!(g.attr("top_k").unwrap().read_scalar::<i64>().unwrap(), 3);
        let n0 = h.group("record/000").unwrap();
        assert_eq!(s(&n0, "node"), "/features/features.0/Conv");
        assert_eq!(s(&n0, "tensor"), "conv_out");
        assert_eq!(
            n0.attr("sample_shape").unwrap().read_raw::<i64>().unwrap(),
            vec![4, 2, 2]
        );
        let shape = |p: &str| h.dataset(p).unwrap().shape();
        let want = match mode {
            RecordMode::Maps => vec![7, 4, 2, 2],
            RecordMode::Channels => vec![7, 4],
        };
        assert_eq!(shape("record/000/relevance"), want);
        assert_eq!(shape("record/000/activation"), want);
        assert_eq!(shape("record/000/top_channels"), vec![7, 3]);
        assert_eq!(shape("record/001/top_share"), vec![7, 2]);
        let td = |p: &str| {
            h.dataset(p)
                .unwrap()
                .dtype()
                .unwrap()
                .to_descriptor()
                .unwrap()
        };
        use hdf5::types::{FloatSize, IntSize, TypeDescriptor};
        assert_eq!(
            td("record/000/top_channels"),
            TypeDescriptor::Integer(IntSize::U8)
        );
        assert_eq!(
            td("record/000/relevance"),
            TypeDescriptor::Float(FloatSize::U4)
        );
    }
}

#[test]
fn files_without_a_record_say_so_and_unwritten_rows_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain.h5");
    let mut w = AttributionWriter::create(
        &path,
        AttributionLayout {
            n_samples: 4,
            sample_shape: vec![3],
            n_outputs: 2,
            labels: LabelLayout::Single,
            with_index: false,
            compression: None,
        },
    )
    .unwrap();
    w.write_batch(
        0,
        &[0.0; 12],
        &[0.0; 8],
        &BatchLabels::Single(&[0; 4]),
        None,
    )
    .unwrap();
    let l = layout(RecordMode::Channels);
    w.add_record(l.clone()).unwrap();
    w.write_record_rows(0, 0, &rows(&l, 0, 0, 4)).unwrap();
    w.write_record_rows(1, 0, &rows(&l, 1, 0, 3)).unwrap();
    // a batch that is not whole rows
    let mut bad = rows(&l, 1, 0, 1);
    bad.top_share.pop();
    let e = w.write_record_rows(1, 3, &bad).unwrap_err().to_string();
    assert!(e.contains("do not make whole rows"), "{e}");
    let e = w.finish().unwrap_err().to_string();
    assert!(
        e.contains("row 3 of recorded node 1 was never written"),
        "{e}"
    );
    assert!(!path.exists());

    write_plain(&path);
    assert_eq!(
        AttributionFile::open(&path).unwrap().record().unwrap(),
        None
    );
}

fn write_plain(path: &Path) {
    let mut w = AttributionWriter::create(
        path,
        AttributionLayout {
            n_samples: 2,
            sample_shape: vec![3],
            n_outputs: 2,
            labels: LabelLayout::Single,
            with_index: false,
            compression: None,
        },
    )
    .unwrap();
    w.write_batch(0, &[0.0; 6], &[0.0; 4], &BatchLabels::Single(&[0; 2]), None)
        .unwrap();
    w.finish().unwrap();
}

#[test]
fn a_damaged_record_is_an_error_naming_the_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.h5");
    let l = layout(RecordMode::Channels);
    write_file(&path, 4, &l);
    {
        let h = hdf5::File::open_rw(&path).unwrap();
        h.unlink("record/001/top_share").unwrap();
        h.new_dataset::<f32>()
            .shape([3, 2])
            .create("record/001/top_share")
            .unwrap();
    }
    let f = AttributionFile::open(&path).unwrap();
    // ViRelAy's datasets still read
    assert_eq!(f.read_rows(&[0, 3]).unwrap(), vec![0.5; 6]);
    let e = f.record().unwrap_err().to_string();
    assert!(
        e.contains("dataset `record/001/top_share` has shape [3, 2]") && e.contains("[4, 2]"),
        "{e}"
    );
    drop(f);
    {
        let h = hdf5::File::open_rw(&path).unwrap();
        h.unlink("record/001/top_share").unwrap();
    }
    let e = AttributionFile::open(&path)
        .unwrap()
        .record()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("dataset `record/001/top_share` is missing"),
        "{e}"
    );
}

/// The settings of a run of `n` samples in batches of 3, recording or not.
fn settings(n: usize, record: Option<RecordSettings>) -> RunSettings {
    RunSettings {
        format: RunSettings::FORMAT,
        model_blake3: "m".into(),
        dataset_fingerprint: "d".into(),
        dataset_len: n,
        method: MethodSpec::default(),
        target: "label".into(),
        batch_size: 3,
        limit: n,
        compression: None,
        record,
    }
}

fn record_settings(mode: RecordMode) -> RecordSettings {
    RecordSettings {
        patterns: vec!["/features/*".into(), "/fc/Gemm".into()],
        mode,
        top_k: 3,
    }
}

/// Runs the protocol for `shard` as a driver would, stopping after `stop_after` parts (then
/// resuming); returns the output.
fn run(
    output: &Path,
    settings: &RunSettings,
    shard: Option<Shard>,
    stop_after: Option<usize>,
) -> PathBuf {
    let spec = RunSpec {
        output: output.to_path_buf(),
        shard,
        settings: settings.clone(),
        model_name: "m.onnx".into(),
        dataset_name: "d.h5".into(),
        label_source: LabelSource::Dataset,
        force: false,
    };
    let l = settings.record.as_ref().map(|r| RecordLayout {
        top_k: r.top_k,
        ..layout(r.mode)
    });
    loop {
        let Prepared::Ready(mut r) = AttributionRun::prepare(spec.clone()).unwrap() else {
            panic!("a new run");
        };
        let mut written = 0;
        for p in r.pending() {
            let (a, b) = (p.samples.start, p.samples.end);
            let k = b - a;
            let relevance: Vec<f32> = (a * 3..b * 3).map(|v| v as f32).collect();
            let labels: Vec<u32> = (a..b).map(|s| s as u32 % 2).collect();
            let nodes: Option<Vec<RecordRows>> = l
                .as_ref()
                .map(|l| (0..l.nodes.len()).map(|i| rows(l, i, a, b)).collect());
            r.write_part(
                p.part,
                &PartData {
                    sample_shape: &[3],
                    relevance: &relevance,
                    prediction: &vec![0.25; k * 2],
                    labels: &labels,
                    record: l
                        .as_ref()
                        .zip(nodes.as_deref())
                        .map(|(layout, nodes)| PartRecord { layout, nodes }),
                },
            )
            .unwrap();
            written += 1;
            if stop_after == Some(written) {
                break;
            }
        }
        if r.pending().is_empty() {
            return r.finish().unwrap();
        }
        // dropped: as a kill between two parts
    }
}

/// Every record row of `p`.
fn record_of(p: &Path) -> (Option<RecordLayout>, Vec<RecordRows>) {
    let f = AttributionFile::open(p).unwrap();
    let layout = f.record().unwrap();
    let rows = layout
        .iter()
        .flat_map(|l| 0..l.nodes.len())
        .map(|node| f.read_record_rows(node, 0, f.n_samples()).unwrap())
        .collect();
    (layout, rows)
}

#[test]
fn records_survive_resumption_and_merged_shards_equal_the_unsharded_run() {
    let dir = tempfile::tempdir().unwrap();
    let n = 14;
    for mode in [RecordMode::Maps, RecordMode::Channels] {
        let s = settings(n, Some(record_settings(mode)));
        let whole = run(
            &dir.path().join(format!("whole-{}.h5", mode.name())),
            &s,
            None,
            None,
        );
        let (layout_w, rows_w) = record_of(&whole);
        let l = layout_w.clone().expect("the run recorded");
        assert_eq!(
            rows_w,
            (0..2).map(|i| rows(&l, i, 0, n)).collect::<Vec<_>>(),
            "the assembled record is every part's rows in order"
        );

        let resumed = run(
            &dir.path().join(format!("resumed-{}.h5", mode.name())),
            &s,
            None,
            Some(2),
        );
        assert_eq!(record_of(&resumed), (layout_w.clone(), rows_w.clone()));

        let pattern = dir
            .path()
            .join(format!("shard-{}-{{shard}}.h5", mode.name()));
        let shards: Vec<PathBuf> = (0..2)
            .map(|i| run(&pattern, &s, Shard::new(i, 2), Some(1)))
            .collect();
        let merged = dir.path().join(format!("merged-{}.h5", mode.name()));
        // given in reverse: merge orders the shards
        merge_shards(&[shards[1].clone(), shards[0].clone()], &merged, false).unwrap();
        assert_eq!(record_of(&merged), (layout_w, rows_w));
        let f = AttributionFile::open(&merged).unwrap();
        assert_eq!(f.index().unwrap(), (0..n as u32).collect::<Vec<_>>());
    }
}

#[test]
fn shards_recording_other_nodes_are_not_merged() {
    let dir = tempfile::tempdir().unwrap();
    let n = 12;
    let s = settings(n, Some(record_settings(RecordMode::Channels)));
    let a = run(&dir.path().join("a-{shard}.h5"), &s, Shard::new(0, 2), None);
    let b = run(&dir.path().join("b-{shard}.h5"), &s, Shard::new(1, 2), None);
    // the second shard's record names another node (settings alike otherwise)
    {
        let h = hdf5::File::open_rw(&b).unwrap();
        let g = h.group("record/001").unwrap();
        g.delete_attr("node").unwrap();
        let v: hdf5::types::VarLenUnicode = "/other/Gemm".parse().unwrap();
        g.new_attr::<hdf5::types::VarLenUnicode>()
            .create("node")
            .unwrap()
            .write_scalar(&v)
            .unwrap();
    }
    let e = merge_shards(&[a, b.clone()], &dir.path().join("m.h5"), false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("comes from another run"), "{e}");
    assert!(e.contains(&b.display().to_string()), "{e}");
}

#[test]
fn runs_without_record_keep_their_settings_and_keys() {
    let plain = settings(10, None);
    let json = plain.to_json().unwrap();
    // exactly the fields Prism wrote before recording existed
    assert!(!json.contains("record"), "{json}");
    assert!(
        json.ends_with("\"limit\":10,\"compression\":null}"),
        "{json}"
    );
    let back: RunSettings = serde_json::from_str(&json).unwrap();
    assert_eq!(back, plain);

    let recording = settings(10, Some(record_settings(RecordMode::Maps)));
    let json = recording.to_json().unwrap();
    assert!(
        json.ends_with(
            "\"record\":{\"patterns\":[\"/features/*\",\"/fc/Gemm\"],\"mode\":\"maps\",\
             \"top_k\":3}}"
        ),
        "{json}"
    );
    assert_eq!(
        serde_json::from_str::<RunSettings>(&json).unwrap(),
        recording
    );
    assert_ne!(plain.base_key().unwrap(), recording.base_key().unwrap());
    let channels = settings(10, Some(record_settings(RecordMode::Channels)));
    assert_ne!(recording.base_key().unwrap(), channels.base_key().unwrap());

    // a part must carry a record exactly when the run records
    let dir = tempfile::tempdir().unwrap();
    let Prepared::Ready(mut r) = AttributionRun::prepare(RunSpec {
        output: dir.path().join("o.h5"),
        shard: None,
        settings: recording,
        model_name: "m.onnx".into(),
        dataset_name: "d.h5".into(),
        label_source: LabelSource::Dataset,
        force: false,
    })
    .unwrap() else {
        panic!("a new run");
    };
    let e = r
        .write_part(
            0,
            &PartData {
                sample_shape: &[3],
                relevance: &[0.0; 9],
                prediction: &[0.0; 6],
                labels: &[0; 3],
                record: None,
            },
        )
        .unwrap_err();
    assert!(
        matches!(&e, RunError::BadPart { message, .. } if message.contains("no record")),
        "{e}"
    );
}
