//! Crash safety of the commands that write files a later run trusts (`analyze` with its stage
//! cache, `merge`, `project`), through the real binary: SIGKILL after seeded random delays
//! leaves the old output or the complete new one (never a partial file under its name), and a
//! rerun gives the uninterrupted result; a full disk (RLIMIT_FSIZE with SIGXFSZ ignored, so
//! writes fail with EFBIG) is a one-line error naming the file, and leaves no output behind.
//! `attribute`'s resumption after kills is tested in `attribute.rs`.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use prism_store::{AnalysisFile, AttributionFile, Category, Project};

fn prism() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_prism"));
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

fn assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/demo")
}

fn run_ok(mut c: Command) -> String {
    let out = c.output().expect("prism runs");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "prism failed: {err}");
    err
}

/// A seeded stream of delays (splitmix64), so a failure can be replayed.
struct Delays(u64);

impl Delays {
    fn next_ms(&mut self, max_ms: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % max_ms.max(1)
    }
}

/// Starts `c`, SIGKILLs it after `delay_ms` (or lets it end first) and waits for it.
fn kill_after(mut c: Command, delay_ms: u64) {
    let mut child = c.stderr(Stdio::null()).spawn().expect("spawn");
    std::thread::sleep(Duration::from_millis(delay_ms));
    let _ = child.kill(); // SIGKILL; an error means it had already ended
    let _ = child.wait();
}

/// Wall time of one uninterrupted run of `c`, which must succeed.
fn timed(c: Command) -> u64 {
    let t = Instant::now();
    run_ok(c);
    t.elapsed().as_millis() as u64
}

/// Every entry under `dir` (recursively) whose name marks a temporary file.
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            found.extend(temporaries(&p));
        } else if e.file_name().to_string_lossy().contains(".partial-") {
            found.push(p);
        }
    }
    found
}

/// `prism attribute` on the first `limit` demo samples (a small, fast input for the others).
fn attribute(out: &Path, limit: usize, extra: &[&str]) {
    let mut c = prism();
    c.args(["attribute", "--model"])
        .arg(assets().join("mnist-cnn.onnx"))
        .arg("--dataset")
        .arg(assets().join("mnist.h5"))
        .arg("--output")
        .arg(out)
        .args(["--composite", "epsilon-plus-flat", "--batch-size", "8"])
        .args(["--limit", &limit.to_string(), "--threads", "1"])
        .args(extra);
    run_ok(c);
}

/// What an analysis file holds, category by category.
fn analysis(p: &Path) -> Vec<Category> {
    let f = AnalysisFile::open(p).expect("a complete analysis file");
    f.categories()
        .expect("categories")
        .iter()
        .map(|c| f.category(c).expect("category"))
        .collect()
}

fn analyze_cmd(input: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = prism();
    c.arg("analyze")
        .arg(input)
        .arg("--output")
        .arg(out)
        .args(["--threads", "1"])
        .args(extra);
    c
}

#[test]
fn killed_analyze_leaves_the_old_file_or_the_new_one_and_damaged_cache_entries_are_recomputed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let attr = dir.path().join("attr.h5");
    attribute(&attr, 200, &[]);
    let reference = dir.path().join("reference.h5");
    let ms = timed(analyze_cmd(&attr, &reference, &["--no-cache"]));
    let want = analysis(&reference);
    // The old output: an analysis of one class only.
    let old = dir.path().join("old.h5");
    run_ok(analyze_cmd(&attr, &old, &["--no-cache", "--classes", "0"]));
    let old_bytes = std::fs::read(&old).expect("old");

    let out = dir.path().join("out.h5");
    let cache = dir.path().join("out.h5.cache");
    let mut delays = Delays(20);
    let (mut kept_old, mut replaced) = (0, 0);
    for _ in 0..8 {
        std::fs::copy(&old, &out).expect("copy");
        kill_after(
            analyze_cmd(&attr, &out, &["--force"]),
            delays.next_ms(ms * 11 / 10),
        );
        if std::fs::read(&out).expect("the output is never removed") == old_bytes {
            kept_old += 1;
        } else {
            assert!(
                analysis(&out) == want,
                "a killed analyze left a file that is neither the old nor the new one"
            );
            replaced += 1;
        }
    }
    assert!(
        kept_old > 0,
        "no kill landed before the end ({replaced} finished)"
    );

    // The rerun reads what the killed runs cached and gives the uninterrupted result.
    run_ok(analyze_cmd(&attr, &out, &["--force"]));
    assert!(analysis(&out) == want, "rerun after kills differs");
    assert_eq!(temporaries(dir.path()), Vec::<PathBuf>::new());

    // Truncated and altered cache entries are misses, recomputed, never read as valid.
    let blobs: Vec<PathBuf> = std::fs::read_dir(&cache)
        .expect("cache")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(blobs.len() > 4, "the cache holds {} entries", blobs.len());
    for (i, b) in blobs.iter().enumerate() {
        let mut bytes = std::fs::read(b).expect("blob");
        match i % 3 {
            0 => bytes.truncate(bytes.len() / 2),
            1 => bytes.truncate(bytes.len() - 1),
            _ => {
                let last = bytes.len() - 1;
                bytes[last] ^= 0x40;
            }
        }
        std::fs::write(b, bytes).expect("damage");
    }
    run_ok(analyze_cmd(&attr, &out, &["--force"]));
    assert!(
        analysis(&out) == want,
        "damaged cache entries changed the result"
    );
    // And were rewritten whole: a third run equals too.
    run_ok(analyze_cmd(&attr, &out, &["--force"]));
    assert!(analysis(&out) == want);
}

/// Everything a ViRelAy reader sees of an attribution file.
fn attribution(p: &Path) -> (Vec<f32>, Vec<f32>, prism_store::Labels, Vec<u32>) {
    let f = AttributionFile::open(p).expect("a complete attribution file");
    let rows: Vec<usize> = (0..f.n_samples()).collect();
    (
        f.read_rows(&rows).expect("attribution"),
        f.read_prediction_rows(0, f.n_samples())
            .expect("prediction"),
        f.labels().clone(),
        f.index().expect("index").to_vec(),
    )
}

#[test]
fn killed_merge_leaves_the_old_file_or_the_complete_merge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let whole = dir.path().join("whole.h5");
    attribute(&whole, 90, &[]);
    let pattern = dir.path().join("attr-{shard}.h5");
    for s in ["0/2", "1/2"] {
        attribute(&pattern, 90, &["--shard", s]);
    }
    let shards = [
        dir.path().join("attr-000-of-002.h5"),
        dir.path().join("attr-001-of-002.h5"),
    ];
    let merge = |out: &Path, force: bool| {
        let mut c = prism();
        c.arg("merge").args(&shards).arg("--output").arg(out);
        if force {
            c.arg("--force");
        }
        c
    };
    let want = attribution(&whole);
    let ms = timed(merge(&dir.path().join("timing.h5"), false));

    // Without an old file: absent or complete.
    let out = dir.path().join("merged.h5");
    let mut delays = Delays(7);
    let mut absent = 0;
    for _ in 0..6 {
        kill_after(merge(&out, false), delays.next_ms(ms * 11 / 10));
        if out.exists() {
            assert!(
                attribution(&out) == want,
                "a killed merge left a partial file"
            );
            std::fs::remove_file(&out).expect("remove");
        } else {
            absent += 1;
        }
    }
    // With --force over an old file: the old one or the merge, never neither.
    let old_bytes = std::fs::read(&shards[0]).expect("old");
    for _ in 0..6 {
        std::fs::write(&out, &old_bytes).expect("old output");
        kill_after(merge(&out, true), delays.next_ms(ms * 11 / 10));
        let now = std::fs::read(&out).expect("the old output is never removed first");
        if now != old_bytes {
            assert!(
                attribution(&out) == want,
                "a killed merge left a partial file"
            );
        } else {
            absent += 1;
        }
    }
    assert!(absent > 0, "no kill landed before the end");
    run_ok(merge(&out, true));
    assert!(
        attribution(&out) == want,
        "the rerun differs from an uninterrupted merge"
    );
    assert_eq!(temporaries(dir.path()), Vec::<PathBuf>::new());
}

#[test]
fn killed_project_leaves_the_old_files_or_the_complete_new_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("mnist.h5");
    std::fs::copy(assets().join("mnist.h5"), &data).expect("copy");
    let attr = dir.path().join("attr.h5");
    attribute(&attr, 40, &[]);
    let yaml = dir.path().join("project.yaml");
    let label_map = dir.path().join("label-map.json");
    let project = |name: &str| {
        let mut c = prism();
        c.args(["project", "--dataset"])
            .arg(&data)
            .arg("--attribution")
            .arg(&attr)
            .arg("--output")
            .arg(&yaml)
            .args(["--name", name, "--force"]);
        c
    };
    let ms = timed(project("old"));
    let old_yaml = std::fs::read(&yaml).expect("old project");
    let label_map_bytes = std::fs::read(&label_map).expect("label map");
    run_ok(project("new"));
    let new_yaml = std::fs::read(&yaml).expect("new project");
    assert_ne!(old_yaml, new_yaml);

    let mut delays = Delays(3);
    let mut kept_old = 0;
    for _ in 0..8 {
        std::fs::write(&yaml, &old_yaml).expect("old");
        // A label map cut short by an earlier crash must not survive either.
        std::fs::write(&label_map, &label_map_bytes[..label_map_bytes.len() / 2]).expect("cut");
        kill_after(project("new"), delays.next_ms(ms * 11 / 10));
        let now = std::fs::read(&yaml).expect("the project file is never removed");
        assert!(
            now == old_yaml || now == new_yaml,
            "a partial project file was left"
        );
        let map = std::fs::read(&label_map).expect("the label map is never removed");
        assert!(
            map == label_map_bytes || map == label_map_bytes[..label_map_bytes.len() / 2],
            "a partial label map was left"
        );
        if now == old_yaml {
            kept_old += 1;
        } else {
            assert_eq!(
                std::fs::read(&label_map).expect("label map"),
                label_map_bytes
            );
            Project::read(&yaml).expect("the new project reads back");
        }
    }
    assert!(kept_old > 0, "no kill landed before the end");
    run_ok(project("new"));
    assert_eq!(std::fs::read(&yaml).expect("project"), new_yaml);
    assert_eq!(
        std::fs::read(&label_map).expect("label map"),
        label_map_bytes
    );
    assert_eq!(temporaries(dir.path()), Vec::<PathBuf>::new());
}

/// Runs `c` with files limited to `bytes` and SIGXFSZ ignored: a write past the limit fails
/// with EFBIG ("File too large"), as on a full disk.
fn with_file_size_limit(mut c: Command, bytes: u64) -> Output {
    // SAFETY: the closure runs in the child between fork and exec and only calls
    // async-signal-safe functions (setrlimit, signal).
    unsafe {
        c.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: bytes as libc::rlim_t,
                rlim_max: bytes as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    c.output().expect("prism runs")
}

/// A full-disk failure: non-zero exit, one `error:` line that names `file`, says the write
/// failed and why, and no panic.
fn assert_full_disk_error(out: &Output, file: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "a write past the limit succeeded: {err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one error line expected:\n{err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(err.contains(file), "the error should name {file}: {err}");
    assert!(
        err.contains("writ"),
        "the error should say it was writing: {err}"
    );
    assert!(
        !err.contains("reading"),
        "a write error that says reading: {err}"
    );
    assert!(
        err.contains("File too large") || err.contains("disk is full"),
        "the error should say why: {err}"
    );
    // The cause is printed once (not again by a message that also holds it).
    assert!(
        err.matches("os error 27").count() <= 1,
        "the cause twice: {err}"
    );
    err
}

#[test]
fn a_full_disk_is_a_clear_error_and_leaves_no_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let attr = dir.path().join("attr.h5");
    attribute(&attr, 200, &[]);
    let full = dir.path().join("full");
    std::fs::create_dir(&full).expect("mkdir");

    // attribute: the first part file does not fit.
    let out = full.join("attr.h5");
    let mut c = prism();
    c.args(["attribute", "--model"])
        .arg(assets().join("mnist-cnn.onnx"))
        .arg("--dataset")
        .arg(assets().join("mnist.h5"))
        .arg("--output")
        .arg(&out)
        .args(["--composite", "epsilon-plus-flat", "--batch-size", "8"])
        .args(["--limit", "200", "--threads", "1"]);
    assert_full_disk_error(&with_file_size_limit(c, 20_000), "part-000000.h5");
    assert!(!out.exists());

    // analyze, without a cache: the analysis file does not fit.
    let out = full.join("analysis.h5");
    let c = analyze_cmd(&attr, &out, &["--no-cache"]);
    assert_full_disk_error(&with_file_size_limit(c, 4096), "analysis.h5");
    assert!(!out.exists());
    // analyze with its cache: a cache entry does not fit.
    let c = analyze_cmd(&attr, &out, &[]);
    let err = assert_full_disk_error(&with_file_size_limit(c, 1024), "analysis.h5.cache");
    assert!(err.contains("disk is full"), "{err}");
    assert!(!out.exists());

    // project: not even the label map fits.
    let data = full.join("mnist.h5");
    std::fs::copy(assets().join("mnist.h5"), &data).expect("copy");
    let attr_in = full.join("attr-in.h5");
    std::fs::copy(&attr, &attr_in).expect("copy");
    let yaml = full.join("project.yaml");
    let mut c = prism();
    c.args(["project", "--dataset"])
        .arg(&data)
        .arg("--attribution")
        .arg(&attr_in)
        .arg("--output")
        .arg(&yaml);
    let err = assert_full_disk_error(&with_file_size_limit(c, 16), "label-map.json");
    assert!(err.contains("disk is full"), "{err}");
    assert!(!yaml.exists() && !full.join("label-map.json").exists());

    // merge: the merged file does not fit.
    let merged = full.join("merged.h5");
    let mut c = prism();
    c.arg("merge").arg(&attr).arg("--output").arg(&merged);
    assert_full_disk_error(&with_file_size_limit(c, 20_000), "merged.h5");
    assert!(!merged.exists());

    assert_eq!(temporaries(dir.path()), Vec::<PathBuf>::new());
}
