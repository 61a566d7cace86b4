//! The work directory of a resumable, sharded dataset run, shared by the runs of `prism
//! attribute` ([`crate::run`]) and `prism concepts` ([`crate::concepts_run`]): the output's
//! name for a shard, the `OUTPUT.partial/` directory with its lock and `run.json`, the batches
//! of the run (or shard) and the parts already written.

use std::collections::BTreeSet;
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::StoreError;
use crate::provenance::Shard;
use crate::run::{shard_output, shard_range, RunError};

/// What a run is, for [`WorkDir::open`].
pub(crate) struct WorkSpec<'a, R: Serialize> {
    /// The output as given (`{shard}` is replaced for a shard).
    pub output: &'a Path,
    pub shard: Option<Shard>,
    /// The run's key: equal keys, equal files.
    pub run_key: &'a str,
    /// Written as `run.json` (its `run_key` field is compared when resuming).
    pub record: &'a R,
    /// Samples of the whole run, before sharding.
    pub limit: usize,
    pub batch_size: usize,
    /// Discard an interrupted run and overwrite an existing output.
    pub force: bool,
    /// The run key of an existing output, if it is a complete file.
    pub complete_key: &'a dyn Fn(&Path) -> Option<String>,
}

/// A locked work directory, ready for the pending batches.
#[derive(Debug)]
pub(crate) struct WorkDir {
    pub output: PathBuf,
    pub dir: PathBuf,
    pub samples: Range<usize>,
    pub batches: Vec<Range<usize>>,
    pub done: BTreeSet<usize>,
    pub resumed: bool,
    /// Held for the run's duration.
    pub lock: fs::File,
}

/// What [`WorkDir::open`] found.
pub(crate) enum Opened {
    /// The output is already a complete file of this run.
    Complete(PathBuf),
    Ready(WorkDir),
}

impl WorkDir {
    /// Checks the output, creates and locks the work directory, records or checks the
    /// settings (resuming an interrupted run with the same key) and lists the parts done.
    pub fn open<R: Serialize>(spec: &WorkSpec<'_, R>) -> Result<Opened, RunError> {
        let (lo, hi) = shard_range(spec.limit, spec.batch_size, spec.shard);
        if lo == hi {
            return Err(RunError::EmptyShard {
                index: spec.shard.map_or(0, |s| s.index),
                count: spec.shard.map_or(1, |s| s.count),
                samples: spec.limit,
                batch_size: spec.batch_size,
            });
        }
        let output = shard_output(spec.output, spec.shard);
        // With force, an existing output stays until the new one replaces it (renamed over
        // it when finished): killed before that, the old file is still there.
        if output.exists() && !spec.force {
            if (spec.complete_key)(&output).as_deref() == Some(spec.run_key) {
                return Ok(Opened::Complete(output));
            } else {
                return Err(RunError::OutputExists { path: output });
            }
        }
        if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(io_err("create", parent))?;
        }

        // The work directory, locked for the run's duration.
        let dir = work_dir(&output);
        if spec.force && dir.exists() {
            fs::remove_dir_all(&dir).map_err(io_err("remove", &dir))?;
        }
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        let lock = fs::File::create(dir.join(".lock")).map_err(|source| RunError::Io {
            action: "create a lock in",
            path: dir.clone(),
            source,
        })?;
        if !try_lock(&lock) {
            return Err(RunError::Locked { output, dir });
        }
        let record_path = dir.join("run.json");
        let resumed = match fs::read_to_string(&record_path) {
            Ok(text) => {
                let old: Option<serde_json::Value> = serde_json::from_str(&text).ok();
                let old_key = old
                    .as_ref()
                    .and_then(|v| v.get("run_key"))
                    .and_then(|k| k.as_str());
                if old_key != Some(spec.run_key) {
                    return Err(RunError::OtherSettings { dir });
                }
                true
            }
            Err(_) => {
                let text = serde_json::to_string_pretty(spec.record)?;
                crate::atomic::write_bytes_atomic(&record_path, text.as_bytes())
                    .map_err(StoreError::from)?;
                false
            }
        };
        remove_stale_temps(&dir, "part-");
        let out_name = output
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(parent) = output.parent() {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            remove_stale_temps(parent, &out_name);
        }
        let batch_size = spec.batch_size.max(1);
        let batches: Vec<Range<usize>> = (lo..hi)
            .step_by(batch_size)
            .map(|a| a..(a + batch_size).min(hi))
            .collect();
        let done = (0..batches.len())
            .filter(|&j| part_path(&dir, j).exists())
            .collect();
        Ok(Opened::Ready(WorkDir {
            output,
            dir,
            samples: lo..hi,
            batches,
            done,
            resumed,
            lock,
        }))
    }
}

pub(crate) fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RunError {
    let path = path.to_path_buf();
    move |source| RunError::Io {
        action,
        path,
        source,
    }
}

fn work_dir(output: &Path) -> PathBuf {
    let mut s = output.as_os_str().to_owned();
    s.push(".partial");
    PathBuf::from(s)
}

/// The file of part `j` (batch `j` of the run) in the work directory.
pub(crate) fn part_path(dir: &Path, j: usize) -> PathBuf {
    dir.join(format!("part-{j:06}.h5"))
}

/// Removes the temporary files of writers killed before they finished (`.NAME.partial-PID`).
fn remove_stale_temps(dir: &Path, name_prefix: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!(".{name_prefix}")) && name.contains(".partial-") {
            // A file that is already gone (another cleaner) is what we wanted.
            let _ = fs::remove_file(e.path());
        }
    }
}

/// An exclusive advisory lock on `file` for the process's lifetime (released when the file is
/// closed or the process dies, even by SIGKILL); false if another process holds it.
#[cfg(unix)]
fn try_lock(file: &fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a valid, open descriptor owned by `file`.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

#[cfg(not(unix))]
fn try_lock(_file: &fs::File) -> bool {
    true
}
