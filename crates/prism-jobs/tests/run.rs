//! A resumable, sharded attribution run and its merge through the library API alone (no
//! binary), on the bundled demo data: stopped after some parts (as a kill would), resumed,
//! sharded, merged, and compared with the uninterrupted run (every dataset and the whole
//! provenance record; HDF5 object headers carry write times, so bytes always differ).

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use prism_jobs::demo::demo_method;
use prism_jobs::{attribute_dataset, AttributeJob, AttributeOutcome, RunProgress, RunStarted};
use prism_store::run::{merge_shards, MergeError};
use prism_store::{AttributionFile, Provenance, Shard};

fn assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/demo")
}

/// The demo's method on the first `limit` samples, batches of 8.
fn job(output: &Path, limit: usize, shard: Option<Shard>) -> AttributeJob {
    AttributeJob {
        model: assets().join("mnist-cnn.onnx"),
        dataset: assets().join("mnist.h5"),
        dataset_options: Default::default(),
        output: output.to_path_buf(),
        target: "label".into(),
        batch_size: 8,
        shard,
        limit: Some(limit),
        compression: None,
        prefetch: 2,
        force: false,
        allow_nonfinite: false,
        record: None,
    }
}

/// Stops the run after `stop_after` parts (a kill between two parts); records the start.
struct StopAfter {
    stop_after: usize,
    written: usize,
    started: Option<RunStarted>,
}

impl StopAfter {
    fn new(stop_after: usize) -> Self {
        StopAfter {
            stop_after,
            written: 0,
            started: None,
        }
    }
}

impl RunProgress for StopAfter {
    fn started(&mut self, run: &RunStarted) {
        self.started = Some(run.clone());
    }
    fn part_written(&mut self, _samples: usize) -> ControlFlow<()> {
        self.written += 1;
        if self.written >= self.stop_after {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

fn run(job: &AttributeJob, stop_after: usize) -> (AttributeOutcome, StopAfter) {
    let method = demo_method().expect("the demo's method builds");
    let mut progress = StopAfter::new(stop_after);
    let outcome = attribute_dataset(job, &method, &mut progress).expect("the run succeeds");
    (outcome, progress)
}

/// Everything a ViRelAy reader sees, plus the provenance.
#[derive(Debug, PartialEq)]
struct Contents {
    attribution: Vec<f32>,
    prediction: Vec<f32>,
    labels: prism_store::Labels,
    index: Vec<u32>,
    provenance: Option<Provenance>,
}

fn contents(p: &Path) -> Contents {
    let f = AttributionFile::open(p).expect("readable attribution file");
    let rows: Vec<usize> = (0..f.n_samples()).collect();
    Contents {
        attribution: f.read_rows(&rows).expect("attribution"),
        prediction: f
            .read_prediction_rows(0, f.n_samples())
            .expect("prediction"),
        labels: f.labels().clone(),
        index: f.index().expect("index").to_vec(),
        provenance: Provenance::read(&f).expect("provenance"),
    }
}

#[test]
fn stopped_runs_resume_to_the_uninterrupted_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reference = dir.path().join("reference.h5");
    let (outcome, _) = run(&job(&reference, 90, None), usize::MAX);
    assert_eq!(
        outcome,
        AttributeOutcome::Written {
            output: reference.clone(),
            samples: 90
        }
    );
    let want = contents(&reference);
    let provenance = want.provenance.as_ref().expect("a Prism run file");
    assert!(provenance.complete);
    assert_eq!(provenance.run_key, provenance.base_key);
    assert_eq!(provenance.total_samples, 90);
    assert_eq!(
        provenance.settings.method,
        demo_method().expect("method").spec,
        "the method is read back as the typed value it was written from"
    );

    // Stopped after 2 parts, then after 3 more, then to the end: 12 parts of 8 samples.
    let out = dir.path().join("resumed.h5");
    let partial = dir.path().join("resumed.h5.partial");
    let (outcome, first) = run(&job(&out, 90, None), 2);
    assert!(matches!(
        outcome,
        AttributeOutcome::Stopped { parts: 2, .. }
    ));
    assert!(!out.exists(), "a stopped run leaves no output");
    assert!(partial.exists(), "a stopped run keeps its parts");
    assert_eq!(first.started.as_ref().map(|s| s.resumed), Some(false));
    let (outcome, second) = run(&job(&out, 90, None), 3);
    assert!(matches!(
        outcome,
        AttributeOutcome::Stopped { parts: 3, .. }
    ));
    let started = second.started.expect("started");
    assert!(started.resumed);
    assert_eq!(started.done, 16);
    let (outcome, third) = run(&job(&out, 90, None), usize::MAX);
    assert!(matches!(
        outcome,
        AttributeOutcome::Written { samples: 90, .. }
    ));
    assert_eq!(third.started.map(|s| s.done), Some(40));
    assert!(!partial.exists(), "the work directory is removed when done");
    // Byte comparison is not possible (HDF5 object headers carry write times): every
    // dataset and the whole provenance record are compared instead.
    assert!(
        contents(&out) == want,
        "the resumed file differs from the uninterrupted one"
    );

    // A finished run is not redone; other settings are refused.
    let (outcome, _) = run(&job(&out, 90, None), usize::MAX);
    assert_eq!(
        outcome,
        AttributeOutcome::AlreadyComplete {
            output: out.clone()
        }
    );
    let method = demo_method().expect("method");
    let err = attribute_dataset(&job(&out, 80, None), &method, &mut prism_jobs::NoProgress)
        .expect_err("other settings are refused");
    assert!(
        matches!(
            err,
            prism_jobs::JobError::Run(prism_store::RunError::OutputExists { .. })
        ),
        "{err}"
    );
}

#[test]
fn merged_shards_equal_the_unsharded_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let whole = dir.path().join("whole.h5");
    run(&job(&whole, 90, None), usize::MAX);
    let pattern = dir.path().join("attr-{shard}.h5");
    let s0 = Shard::new(0, 2);
    let s1 = Shard::new(1, 2);
    // Shard 1 is stopped once and resumed.
    run(&job(&pattern, 90, s0), usize::MAX);
    let (outcome, _) = run(&job(&pattern, 90, s1), 2);
    assert!(matches!(outcome, AttributeOutcome::Stopped { .. }));
    let (_, resumed) = run(&job(&pattern, 90, s1), usize::MAX);
    assert!(resumed.started.is_some_and(|s| s.resumed));
    let f0 = dir.path().join("attr-000-of-002.h5");
    let f1 = dir.path().join("attr-001-of-002.h5");
    // Whole batches of 8: 12 batches, 6 each.
    assert_eq!(contents(&f0).index, (0..48).collect::<Vec<u32>>());
    assert_eq!(contents(&f1).index, (48..90).collect::<Vec<u32>>());
    let p1 = contents(&f1).provenance.expect("shard provenance");
    assert_eq!(p1.shard, s1);
    assert_ne!(p1.run_key, p1.base_key);

    let merged = dir.path().join("merged.h5");
    let m = merge_shards(&[f1.clone(), f0.clone()], &merged, false).expect("merge");
    assert_eq!((m.shards, m.samples), (2, 90));
    // Same rows and the same provenance record as the unsharded run.
    assert!(
        contents(&merged) == contents(&whole),
        "merged shards differ from the unsharded run"
    );

    let bad = dir.path().join("bad.h5");
    let err = merge_shards(&[f0.clone(), f0.clone(), f1.clone()], &bad, false);
    assert!(matches!(err, Err(MergeError::Overlap { sample: 0, .. })));
    let err = merge_shards(std::slice::from_ref(&f0), &bad, false);
    assert!(matches!(
        err,
        Err(MergeError::Missing {
            missing: 42,
            total: 90,
            ..
        })
    ));
    let err = merge_shards(std::slice::from_ref(&f0), &merged, false);
    assert!(matches!(err, Err(MergeError::OutputExists { .. })));
    assert!(!bad.exists());
}
