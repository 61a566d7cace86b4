//! `prism attribute`, `prism merge` and `prism project` through the real binary, on the bundled
//! demo data (MNIST digits and a small CNN): resumption after SIGKILL, sharding, merging.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use prism_store::{AttributionFile, Project, Provenance};

/// Tests that run HDF5 in this process (the library runs) must not overlap tests that spawn
/// `prism`: libhdf5 opens files without close-on-exec, so a child spawned while a file is open
/// inherits its descriptor and with it the file's lock, and a later open in this process
/// fails ("unable to lock file"). Spawning tests share this lock; library tests take it alone.
static CHILDREN: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn spawning() -> std::sync::RwLockReadGuard<'static, ()> {
    CHILDREN.read().unwrap_or_else(|e| e.into_inner())
}

fn in_process() -> std::sync::RwLockWriteGuard<'static, ()> {
    CHILDREN.write().unwrap_or_else(|e| e.into_inner())
}

fn prism() -> Command {
    Command::new(env!("CARGO_BIN_EXE_prism"))
}

fn assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/demo")
}

/// `prism attribute` on the first `limit` demo samples, batches of 8.
fn attribute_cmd(out: &Path, limit: usize, extra: &[&str]) -> Command {
    let mut c = prism();
    c.args(["attribute", "--model"])
        .arg(assets().join("mnist-cnn.onnx"))
        .arg("--dataset")
        .arg(assets().join("mnist.h5"))
        .arg("--output")
        .arg(out)
        .args(["--composite", "epsilon-plus-flat", "--batch-size", "8"])
        .args(["--limit", &limit.to_string(), "--threads", "1"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn run_ok(mut c: Command) -> String {
    let out = c.output().expect("prism runs");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "prism failed: {err}");
    err
}

fn run_err(mut c: Command) -> String {
    let out = c.output().expect("prism runs");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "prism should have failed");
    assert!(
        err.starts_with("error: "),
        "one-line error expected, got {err}"
    );
    err
}

/// Everything a ViRelAy reader sees, plus Prism's run key.
#[derive(Debug, PartialEq)]
struct Contents {
    attribution: Vec<f32>,
    prediction: Vec<f32>,
    labels: prism_store::Labels,
    index: Vec<u32>,
    run_key: Option<String>,
    complete: Option<i64>,
}

fn contents(p: &Path) -> Contents {
    let f = AttributionFile::open(p).expect("readable attribution file");
    let provenance = Provenance::read(&f).expect("readable provenance");
    let rows: Vec<usize> = (0..f.n_samples()).collect();
    Contents {
        attribution: f.read_rows(&rows).expect("attribution"),
        prediction: f
            .read_prediction_rows(0, f.n_samples())
            .expect("prediction"),
        labels: f.labels().clone(),
        index: f.index().expect("index").to_vec(),
        run_key: provenance.as_ref().map(|p| p.run_key.clone()),
        // The flag is written as the integer 1 (`prism_complete`).
        complete: provenance.as_ref().and_then(|p| p.complete.then_some(1)),
    }
}

#[test]
fn killed_runs_resume_to_the_uninterrupted_result() {
    let _guard = spawning();
    let dir = tempfile::tempdir().expect("tempdir");
    let reference = dir.path().join("reference.h5");
    run_ok(attribute_cmd(&reference, 400, &[]));
    let want = contents(&reference);
    assert_eq!(want.index, (0..400).collect::<Vec<u32>>());
    assert_eq!(want.complete, Some(1));

    let out = dir.path().join("resumed.h5");
    let partial = dir.path().join("resumed.h5.partial");
    let mut interrupted_with_parts = 0;
    // Kill at several points: during start-up, early, mid-run and (likely) late.
    for delay_ms in [20u64, 150, 300, 450, 600, 750] {
        let mut child = attribute_cmd(&out, 400, &[])
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        if out.exists() {
            // The run finished before the kill: the file is complete, start again.
            assert_eq!(contents(&out).complete, Some(1));
            std::fs::remove_file(&out).expect("remove");
            continue;
        }
        let parts = std::fs::read_dir(&partial)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("part-"))
                    .count()
            })
            .unwrap_or(0);
        if parts > 0 {
            interrupted_with_parts += 1;
        }
    }
    assert!(
        interrupted_with_parts > 0,
        "no kill landed mid-run; the test did not exercise resumption"
    );
    if !out.exists() {
        let log = run_ok(attribute_cmd(&out, 400, &[]));
        assert!(
            log.contains("resuming") || !partial.exists(),
            "a rerun after a kill should resume: {log}"
        );
    }
    assert!(!partial.exists(), "the work directory is removed when done");
    assert!(
        contents(&out) == want,
        "resumed result differs from the uninterrupted one"
    );

    // Rerunning a finished run does nothing; other settings are refused.
    let log = run_ok(attribute_cmd(&out, 400, &[]));
    assert!(log.contains("already complete"), "{log}");
    let err = run_err(attribute_cmd(&out, 300, &[]));
    assert!(err.contains("--force"), "{err}");
}

#[test]
fn merged_shards_equal_an_unsharded_run_and_bad_sets_are_refused() {
    let _guard = spawning();
    let dir = tempfile::tempdir().expect("tempdir");
    let whole = dir.path().join("whole.h5");
    run_ok(attribute_cmd(&whole, 90, &[]));
    let pattern = dir.path().join("attr-{shard}.h5");
    for s in ["0/2", "1/2"] {
        run_ok(attribute_cmd(&pattern, 90, &["--shard", s]));
    }
    let s0 = dir.path().join("attr-000-of-002.h5");
    let s1 = dir.path().join("attr-001-of-002.h5");
    // Shards are whole batches of 8: 12 batches, 6 each.
    assert_eq!(contents(&s0).index, (0..48).collect::<Vec<u32>>());
    assert_eq!(contents(&s1).index, (48..90).collect::<Vec<u32>>());

    let merged = dir.path().join("merged.h5");
    let mut c = prism();
    c.arg("merge")
        .arg(&s1)
        .arg(&s0)
        .arg("--output")
        .arg(&merged);
    run_ok(c);
    assert!(
        contents(&merged) == contents(&whole),
        "merged shards differ from the unsharded run"
    );

    // Overlap: the same shard twice.
    let mut c = prism();
    c.arg("merge")
        .arg(&s0)
        .arg(&s0)
        .arg(&s1)
        .arg("--output")
        .arg(dir.path().join("bad.h5"));
    assert!(run_err(c).contains("overlap"));
    // Missing: one shard of two.
    let mut c = prism();
    c.arg("merge")
        .arg(&s0)
        .arg("--output")
        .arg(dir.path().join("bad.h5"));
    assert!(run_err(c).contains("leave 42 of 90 samples out"));
    // Another run: a different method.
    let other = dir.path().join("other-{shard}.h5");
    run_ok(attribute_cmd(
        &other,
        90,
        &["--shard", "1/2", "--epsilon", "0.5"],
    ));
    let mut c = prism();
    c.arg("merge")
        .arg(&s0)
        .arg(dir.path().join("other-001-of-002.h5"))
        .arg("--output")
        .arg(dir.path().join("bad.h5"));
    assert!(run_err(c).contains("another run"));
    assert!(!dir.path().join("bad.h5").exists());
}

#[test]
fn bad_arguments_get_one_line_errors() {
    let _guard = spawning();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("a.h5");
    assert!(run_err(attribute_cmd(&out, 10, &["--shard", "2/2"])).contains("--shard"));
    let mut c = prism();
    c.args(["attribute", "--model"])
        .arg(assets().join("mnist-cnn.onnx"))
        .arg("--dataset")
        .arg(dir.path().join("missing.h5"))
        .arg("--output")
        .arg(&out);
    assert!(run_err(c).contains("missing.h5"));
    assert!(!out.exists());
}

#[test]
fn project_file_ties_the_files_together() {
    let _guard = spawning();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("mnist.h5");
    std::fs::copy(assets().join("mnist.h5"), &data).expect("copy");
    let attr = dir.path().join("attr.h5");
    let mut c = attribute_cmd(&attr, 40, &[]);
    c.arg("--force");
    run_ok(c);
    let yaml = dir.path().join("project.yaml");
    let mut c = prism();
    c.args(["project", "--dataset"])
        .arg(&data)
        .arg("--attribution")
        .arg(&attr)
        .arg("--label-map")
        .arg(assets().join("label-map.json"))
        .arg("--output")
        .arg(&yaml);
    // The label map lies outside the project's directory: refused.
    assert!(run_err(c).contains("outside the project's directory"));
    let mut c = prism();
    c.args(["project", "--dataset"])
        .arg(&data)
        .arg("--attribution")
        .arg(&attr)
        .arg("--output")
        .arg(&yaml)
        .args(["--name", "MNIST"]);
    run_ok(c);
    let p = Project::read(&yaml).expect("project reads back");
    assert_eq!(p.name, "MNIST");
    assert_eq!(p.dataset.path, PathBuf::from("mnist.h5"));
    assert_eq!(p.attributions.sources, vec![PathBuf::from("attr.h5")]);
    assert_eq!(p.attributions.method, "epsilon-plus-flat");
    assert_eq!((p.dataset.input_width, p.dataset.input_height), (28, 28));
    assert!(dir.path().join("label-map.json").exists());
}

/// Stops a library run after `n` parts, as a kill between two parts would.
struct StopAfter(usize);

impl prism_jobs::RunProgress for StopAfter {
    fn part_written(&mut self, _samples: usize) -> std::ops::ControlFlow<()> {
        self.0 = self.0.saturating_sub(1);
        if self.0 == 0 {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    }
}

#[test]
fn library_runs_write_the_same_files_as_the_cli() {
    let _guard = in_process();
    let dir = tempfile::tempdir().expect("tempdir");
    let cli = dir.path().join("cli.h5");
    run_ok(attribute_cmd(&cli, 90, &[]));
    let cli_shards = dir.path().join("cli-{shard}.h5");
    for s in ["0/2", "1/2"] {
        run_ok(attribute_cmd(&cli_shards, 90, &["--shard", s]));
    }
    let cli_merged = dir.path().join("cli-merged.h5");
    let mut c = prism();
    c.arg("merge")
        .arg(dir.path().join("cli-000-of-002.h5"))
        .arg(dir.path().join("cli-001-of-002.h5"))
        .arg("--output")
        .arg(&cli_merged);
    run_ok(c);

    // The same runs through the library alone, each stopped once and resumed.
    let method = prism_jobs::demo::demo_method().expect("the demo's method");
    let job = |output: PathBuf, shard| prism_jobs::AttributeJob {
        model: assets().join("mnist-cnn.onnx"),
        dataset: assets().join("mnist.h5"),
        dataset_options: Default::default(),
        output,
        target: "label".into(),
        batch_size: 8,
        shard,
        limit: Some(90),
        compression: None,
        prefetch: 2,
        force: false,
        allow_nonfinite: false,
        record: None,
    };
    let lib_shards = dir.path().join("lib-{shard}.h5");
    let runs = [
        job(dir.path().join("lib.h5"), None),
        job(lib_shards.clone(), prism_store::Shard::new(0, 2)),
        job(lib_shards, prism_store::Shard::new(1, 2)),
    ];
    for j in &runs {
        let stopped = prism_jobs::attribute_dataset(j, &method, &mut StopAfter(2)).expect("run");
        assert!(matches!(
            stopped,
            prism_jobs::AttributeOutcome::Stopped { .. }
        ));
        prism_jobs::attribute_dataset(j, &method, &mut prism_jobs::NoProgress).expect("resume");
    }
    let lib_merged = dir.path().join("lib-merged.h5");
    prism_store::merge_shards(
        &[
            dir.path().join("lib-000-of-002.h5"),
            dir.path().join("lib-001-of-002.h5"),
        ],
        &lib_merged,
        false,
    )
    .expect("merge");

    for (a, b) in [
        ("cli.h5", "lib.h5"),
        ("cli-000-of-002.h5", "lib-000-of-002.h5"),
        ("cli-001-of-002.h5", "lib-001-of-002.h5"),
        ("cli-merged.h5", "lib-merged.h5"),
    ] {
        // Every dataset and the whole provenance record (the bytes differ in the write times
        // that HDF5 object headers carry).
        let (a_path, b_path) = (dir.path().join(a), dir.path().join(b));
        assert!(contents(&a_path) == contents(&b_path), "{a} and {b} differ");
        let provenance = |p: &Path| {
            Provenance::read(&AttributionFile::open(p).expect("file")).expect("provenance")
        };
        assert_eq!(
            provenance(&a_path),
            provenance(&b_path),
            "{a} and {b} differ"
        );
    }
}

/// A token dataset for the small BERT of `tests/fixtures/models` (vocabulary of 50): `n`
/// sentences of 8 ids, every third padded by two, a vocabulary with markup at id 7.
fn token_dataset(dir: &Path, n: usize) -> PathBuf {
    let data = dir.join("tokens");
    std::fs::create_dir_all(&data).expect("mkdir");
    let mut state = 12345u64;
    let mut ids = Vec::with_capacity(n * 8);
    let mut mask = Vec::with_capacity(n * 8);
    for i in 0..n {
        let real = if i % 3 == 1 { 6 } else { 8 };
        for p in 0..8 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ids.push(if p < real {
                1 + ((state >> 33) % 49) as i64
            } else {
                0
            });
            mask.push(i64::from(p < real));
        }
    }
    prism_store::npy::write_i64_array(&data.join("input_ids.npy"), &[n, 8], &ids).expect("ids");
    prism_store::npy::write_i64_array(&data.join("attention_mask.npy"), &[n, 8], &mask)
        .expect("mask");
    let mut vocab: Vec<String> = (0..50).map(|i| format!("w{i}")).collect();
    vocab[0] = "[PAD]".into();
    vocab[7] = "<i>&</i>".into();
    std::fs::write(data.join("vocab.txt"), vocab.join("\n") + "\n").expect("vocab");
    data
}

fn bert() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models/bert.dynamo.onnx")
}

/// `prism attribute` of the BERT on a token dataset with AttnLRP, batches of 8.
fn token_attribute_cmd(data: &Path, out: &Path) -> Command {
    let mut c = prism();
    c.args(["attribute", "--model"])
        .arg(bert())
        .arg("--dataset")
        .arg(data)
        .arg("--output")
        .arg(out)
        .args(["--composite", "attn-lrp", "--target", "predicted"])
        .args(["--batch-size", "8", "--threads", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// A GET on the viewer, answered as (status, body).
fn http_get(addr: std::net::SocketAddr, target: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, raw)
}

#[test]
fn token_runs_resume_and_end_in_the_viewer_as_coloured_text() {
    let _guard = in_process();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = token_dataset(dir.path(), 48);
    let reference = dir.path().join("reference.h5");
    run_ok(token_attribute_cmd(&data, &reference));
    let want = contents(&reference);
    assert_eq!(want.attribution.len(), 48 * 8, "one value per token");

    // Stopped after two of six parts (as a kill between parts), resumed by the CLI.
    let attr = dir.path().join("attr.h5");
    let method = prism_jobs::Method::new(
        prism_attribution::MethodSpec {
            composite: prism_attribution::CompositeSource::Builtin {
                name: "attn-lrp".into(),
            },
            // the CLI's default ε for a transformer composite
            epsilon: prism_attribution::default_epsilon(Some("attn-lrp"), None),
            ..Default::default()
        },
        None,
    )
    .expect("attn-lrp");
    let job = prism_jobs::AttributeJob {
        model: bert(),
        dataset: data.clone(),
        dataset_options: Default::default(),
        output: attr.clone(),
        target: "predicted".into(),
        batch_size: 8,
        shard: None,
        limit: None,
        compression: None,
        prefetch: 2,
        force: false,
        allow_nonfinite: false,
        record: None,
    };
    let stopped = prism_jobs::attribute_dataset(&job, &method, &mut StopAfter(2)).expect("run");
    assert!(matches!(
        stopped,
        prism_jobs::AttributeOutcome::Stopped { .. }
    ));
    let log = run_ok(token_attribute_cmd(&data, &attr));
    assert!(log.contains("resuming"), "{log}");
    assert!(
        contents(&attr) == want,
        "resumed result differs from the uninterrupted one"
    );

    // SpRAy over the relevance per token, the project, and the viewer.
    let analysis = dir.path().join("analysis.h5");
    let mut c = prism();
    c.arg("analyze")
        .arg(&attr)
        .arg("--output")
        .arg(&analysis)
        .args(["--no-tsne", "--threads", "1"]);
    run_ok(c);
    let yaml = dir.path().join("project.yaml");
    let mut c = prism();
    c.args(["project", "--dataset"])
        .arg(&data)
        .arg("--attribution")
        .arg(&attr)
        .arg("--analysis")
        .arg(&analysis)
        .arg("--output")
        .arg(&yaml);
    run_ok(c);
    let p = Project::read(&yaml).expect("project reads back");
    assert_eq!(p.dataset.kind, prism_store::project::DatasetKind::Tokens);
    assert_eq!(p.dataset.path, PathBuf::from("tokens"));
    assert_eq!((p.dataset.input_width, p.dataset.input_height), (8, 1));
    assert_eq!(p.attributions.method, "attn-lrp");

    let ws = prism_viewer::Workspace::open(&[&yaml]).expect("the viewer opens it");
    let server = prism_viewer::spawn(
        ws,
        &prism_viewer::ServeOptions {
            port: 0,
            ..Default::default()
        },
    )
    .expect("serve");
    let (status, body) = http_get(server.addr(), "/api/projects/0");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"datasetKind\":\"tokens\""), "{body}");
    let sample = (0..48).find(|&i| i % 3 == 1).expect("a padded sample");
    let (status, body) = http_get(
        server.addr(),
        &format!("/api/projects/0/attributions/{sample}/tokens?colorMap=coldnhot"),
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&format!("sample {sample} · 6 tokens")),
        "{body}"
    );
    assert!(!body.contains("<i>"), "{body}");
    let (status, body) = http_get(server.addr(), "/api/projects/0/attributions/48/tokens");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("errorMessage"), "{body}");
}

// ------------------------------------------------------------------------------------------------
// `prism attribute --record`: relevance recorded at hidden nodes, in the file's `/record` group
// ------------------------------------------------------------------------------------------------

fn crp(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/crp")
        .join(p)
}

/// The CRP fixtures' 24 reference images (3×16×16) as a `.npy` dataset with its labels beside
/// it, for the fixture VGG.
fn record_dataset(dir: &Path) -> PathBuf {
    let data = dir.join("images.npy");
    std::fs::copy(crp("crp_refsel.data.npy"), &data).expect("copy");
    std::fs::copy(crp("crp_refsel.labels.npy"), dir.join("images.labels.npy")).expect("copy");
    data
}

/// Every convolution and the first dense layer of the fixture VGG.
const RECORDED: [&str; 4] = [
    "--record",
    "/features/*/Conv",
    "--record",
    "/classifier/classifier.0/Gemm",
];

/// `prism attribute` of the fixture VGG (epsilon-plus-flat, the predicted class, batches of 8).
fn record_attribute_cmd(data: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = prism();
    c.args(["attribute", "--model"])
        .arg(crp("crp_vgg.onnx"))
        .arg("--dataset")
        .arg(data)
        .arg("--output")
        .arg(out)
        .args(["--composite", "epsilon-plus-flat", "--target", "predicted"])
        .args(["--batch-size", "8", "--threads", "1"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The record of an attribution file: its layout and every row of every node.
fn file_record(p: &Path) -> (prism_store::RecordLayout, Vec<prism_store::RecordRows>) {
    let f = AttributionFile::open(p).expect("attribution file");
    let layout = f.record().expect("a readable record").expect("a record");
    let rows = (0..layout.nodes.len())
        .map(|node| {
            f.read_record_rows(node, 0, f.n_samples())
                .expect("record rows")
        })
        .collect();
    (layout, rows)
}

#[test]
fn attribute_records_what_explain_records_into_the_file() {
    let _guard = in_process();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = record_dataset(dir.path());

    // `prism explain --record` on the same samples, batch size and dtype
    let r = dir.path().join("r.npy");
    let mut c = prism();
    c.arg("explain")
        .arg(crp("crp_vgg.onnx"))
        .arg(&data)
        .arg("-o")
        .arg(&r)
        .args(["--composite", "epsilon-plus-flat", "--batch-size", "8"])
        .args([
            "--threads",
            "1",
            "--record-mode",
            "maps",
            "--record-top-k",
            "4",
        ])
        .args(RECORDED)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    run_ok(c);
    let rec = dir.path().join("r.record");
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(rec.join("index.json")).expect("index"))
            .expect("json");

    let maps = dir.path().join("maps.h5");
    run_ok(record_attribute_cmd(
        &data,
        &maps,
        &[
            &RECORDED[..],
            &["--record-mode", "maps", "--record-top-k", "4"],
        ]
        .concat(),
    ));
    let (layout, rows) = file_record(&maps);
    assert_eq!(layout.mode, prism_attribution::RecordMode::Maps);
    assert_eq!(layout.top_k, 4);
    let nodes = index["nodes"].as_array().expect("nodes");
    let names: Vec<&str> = layout.nodes.iter().map(|n| n.node.as_str()).collect();
    assert_eq!(
        names,
        [
            "/features/features.0/Conv",
            "/features/features.3/Conv",
            "/features/features.7/Conv",
            "/classifier/classifier.0/Gemm"
        ]
    );
    assert_eq!(nodes.len(), layout.nodes.len());
    for ((n, l), got) in nodes.iter().zip(&layout.nodes).zip(&rows) {
        assert_eq!(n["node"], l.node.as_str());
        assert_eq!(n["tensor"], l.tensor.as_str());
        let shape: Vec<usize> = serde_json::from_value(n["sample_shape"].clone()).expect("shape");
        assert_eq!(shape, l.sample_shape, "{}", l.node);
        let float = |key: &str| {
            let t: prism_model::Tensor<f32> =
                prism_store::npy::read_float(&rec.join(n[key].as_str().expect("file")))
                    .expect("npy");
            let mut want = vec![24];
            want.extend(&l.sample_shape);
            if key == "relevance" || key == "activation" {
                assert_eq!(t.shape(), &want[..], "{} {key}", l.node);
            }
            t.data().to_vec()
        };
        assert!(
            got.relevance.iter().any(|v| *v != 0.0) && got.top_share.iter().any(|v| *v > 0.0),
            "{}: relevance reaches the node",
            l.node
        );
        // bit for bit
        assert_eq!(
            bits(&got.relevance),
            bits(&float("relevance")),
            "{}",
            l.node
        );
        assert_eq!(
            bits(&got.activation),
            bits(&float("activation")),
            "{}",
            l.node
        );
        assert_eq!(
            bits(&got.top_share),
            bits(&float("top_share")),
            "{}",
            l.node
        );
        let top = prism_store::npy::read_i64(&rec.join(n["top_channels"].as_str().expect("file")))
            .expect("npy");
        assert_eq!(top.shape(), &[24, l.k(4)]);
        assert_eq!(got.top_channels, top.data(), "{}", l.node);
    }
    // the input relevance is explain's too
    let explained: prism_model::Tensor<f32> = prism_store::npy::read_float(&r).expect("npy");
    let attributed = contents(&maps).attribution;
    assert_eq!(bits(&attributed), bits(explained.data()));

    // channels: the maps summed over space, the same top tables
    let channels = dir.path().join("channels.h5");
    run_ok(record_attribute_cmd(
        &data,
        &channels,
        &[&RECORDED[..], &["--record-top-k", "4"]].concat(),
    ));
    let (c_layout, c_rows) = file_record(&channels);
    assert_eq!(c_layout.mode, prism_attribution::RecordMode::Channels);
    assert_eq!(c_layout.nodes, layout.nodes);
    for ((l, m), c) in layout.nodes.iter().zip(&rows).zip(&c_rows) {
        let mut shape = vec![24];
        shape.extend(&l.sample_shape);
        let sums = |v: &[f32]| {
            let t = prism_model::Tensor::new(shape.clone(), v.to_vec()).expect("tensor");
            prism_attribution::concept::channel_sums(&t)
                .expect("sums")
                .data()
                .to_vec()
        };
        assert_eq!(bits(&c.relevance), bits(&sums(&m.relevance)), "{}", l.node);
        assert_eq!(
            bits(&c.activation),
            bits(&sums(&m.activation)),
            "{}",
            l.node
        );
        assert_eq!(c.top_channels, m.top_channels, "{}", l.node);
        assert_eq!(bits(&c.top_share), bits(&m.top_share), "{}", l.node);
    }

    // Without --record: no record, the same relevance, another run key.
    let plain = dir.path().join("plain.h5");
    run_ok(record_attribute_cmd(&data, &plain, &[]));
    let f = AttributionFile::open(&plain).expect("file");
    assert_eq!(f.record().expect("readable"), None);
    drop(f);
    let plain_contents = contents(&plain);
    assert_eq!(bits(&plain_contents.attribution), bits(&attributed));
    assert_ne!(plain_contents.run_key, contents(&maps).run_key);
    assert_ne!(contents(&channels).run_key, contents(&maps).run_key);
    // Recording into the output of a run without: other settings, refused unless --force.
    let with = [
        &RECORDED[..],
        &["--record-mode", "maps", "--record-top-k", "4"],
    ]
    .concat();
    let err = run_err(record_attribute_cmd(&data, &plain, &with));
    assert!(err.contains("--force"), "{err}");
    assert_eq!(
        contents(&plain),
        plain_contents,
        "the refused run changed nothing"
    );
    run_ok(record_attribute_cmd(
        &data,
        &plain,
        &[&with[..], &["--force"]].concat(),
    ));
    assert_eq!(file_record(&plain), (layout, rows));
    assert_eq!(contents(&plain).run_key, contents(&maps).run_key);
}

#[test]
fn recorded_runs_resume_and_merge_to_the_uninterrupted_record() {
    let _guard = in_process();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = record_dataset(dir.path());
    let flags = [
        &RECORDED[..],
        &["--record-mode", "maps", "--record-top-k", "3"],
    ]
    .concat();
    let whole = dir.path().join("whole.h5");
    run_ok(record_attribute_cmd(&data, &whole, &flags));
    let want = (contents(&whole), file_record(&whole));
    assert_eq!(want.0.index, (0..24).collect::<Vec<u32>>());

    // Stopped after one of three parts (as a kill between parts), resumed by the CLI.
    let resumed = dir.path().join("resumed.h5");
    let job = prism_jobs::AttributeJob {
        model: crp("crp_vgg.onnx"),
        dataset: data.clone(),
        dataset_options: Default::default(),
        output: resumed.clone(),
        target: "predicted".into(),
        batch_size: 8,
        shard: None,
        limit: None,
        compression: None,
        prefetch: 2,
        force: false,
        allow_nonfinite: false,
        record: Some(prism_store::RecordSettings {
            patterns: vec![
                "/features/*/Conv".into(),
                "/classifier/classifier.0/Gemm".into(),
            ],
            mode: prism_attribution::RecordMode::Maps,
            top_k: 3,
        }),
    };
    let method = prism_jobs::demo::demo_method().expect("epsilon-plus-flat");
    let stopped = prism_jobs::attribute_dataset(&job, &method, &mut StopAfter(1)).expect("run");
    assert!(matches!(
        stopped,
        prism_jobs::AttributeOutcome::Stopped { parts: 1, .. }
    ));
    // the interrupted run is one with --record: resuming without it is refused
    let err = run_err(record_attribute_cmd(&data, &resumed, &[]));
    assert!(
        err.contains("other settings") && err.contains("--record"),
        "{err}"
    );
    let log = run_ok(record_attribute_cmd(&data, &resumed, &flags));
    assert!(log.contains("resuming"), "{log}");
    assert!(
        (contents(&resumed), file_record(&resumed)) == want,
        "the resumed file differs from the uninterrupted one"
    );

    // Shards (one batch and two) merged.
    let pattern = dir.path().join("attr-{shard}.h5");
    for s in ["0/2", "1/2"] {
        run_ok(record_attribute_cmd(
            &data,
            &pattern,
            &[&flags[..], &["--shard", s]].concat(),
        ));
    }
    let s0 = dir.path().join("attr-000-of-002.h5");
    let s1 = dir.path().join("attr-001-of-002.h5");
    assert_eq!(file_record(&s0).1[0].top_channels.len(), 8 * 3);
    let merged = dir.path().join("merged.h5");
    let mut c = prism();
    c.arg("merge")
        .arg(&s1)
        .arg(&s0)
        .arg("--output")
        .arg(&merged);
    run_ok(c);
    assert!(
        (contents(&merged), file_record(&merged)) == want,
        "merged shards differ from the unsharded run"
    );
}

#[test]
fn bad_record_flags_are_one_line_errors_before_any_work() {
    let _guard = spawning();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = record_dataset(dir.path());
    let out = dir.path().join("a.h5");
    let partial = dir.path().join("a.h5.partial");
    let err = run_err(record_attribute_cmd(
        &data,
        &out,
        &["--record", "/features/*/Conv", "--record", "/nope/*"],
    ));
    assert!(
        err.contains("record pattern '/nope/*' matches no node"),
        "{err}"
    );
    assert!(
        !partial.exists(),
        "a refused record leaves no work directory"
    );
    let err = run_err(record_attribute_cmd(
        &data,
        &out,
        &["--record", "/features/*/Conv", "--attributor", "smoothgrad"],
    ));
    assert!(
        err.contains("takes the gradient or an LRP composite"),
        "{err}"
    );
    let err = run_err(record_attribute_cmd(
        &data,
        &out,
        &["--record", "/features/*/Conv", "--record-top-k", "0"],
    ));
    assert!(err.contains("--record-top-k must be at least 1"), "{err}");
    assert!(!out.exists() && !partial.exists());
}

/// A class activation map over a dataset: the file holds N × 1 × H × W maps, the ones
/// pytorch-grad-cam computes (tests/fixtures/cam), resumable parts and all.
#[test]
fn attribute_writes_class_activation_maps() {
    let _guard = in_process();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/cam");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cam.h5");
    let mut c = prism();
    c.args(["attribute", "--model"])
        .arg(fixtures.join("cam_vgg.onnx"))
        .arg("--dataset")
        .arg(fixtures.join("cam_vgg.input.npy"))
        .arg("--output")
        .arg(&out)
        .args([
            "--attributor",
            "grad-cam",
            "--layer",
            "/features/features.5/Conv",
        ])
        .args([
            "--target",
            "predicted",
            "--batch-size",
            "2",
            "--threads",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    run_ok(c);
    let f = AttributionFile::open(&out).expect("attribution file");
    assert_eq!(f.sample_shape(), [1, 20, 24]);
    let got = contents(&out).attribution;
    let want: prism_model::Tensor<f32> =
        prism_store::npy::read_float(&fixtures.join("cam_vgg__conv3__grad-cam__predicted.npy"))
            .unwrap();
    assert_eq!(got.len(), want.len());
    let diff = got
        .iter()
        .zip(want.data())
        .fold(0f32, |d, (a, b)| d.max((a - b).abs()));
    assert!(diff <= 5e-5, "largest difference {diff}");
}
