//! Crash-safe output files: every file Prism writes that a later run, ViRelAy or the viewer
//! reads back goes through here.
//!
//! A file is written under a temporary name in its target's directory
//! (`.NAME.partial-HOST-PID-N`), flushed to disk (`fsync`), renamed over the target (an atomic
//! step on POSIX file systems) and the directory is flushed, so the rename itself survives a
//! power cut. Killed at any moment (SIGKILL, out of memory, a full disk), a writer leaves either
//! the old file or the complete new one under the target's name, never a partial file; the
//! temporary file it leaves behind has a name no reader opens, and the next writer of the same
//! target on the same machine removes it ([`remove_stale_partials`]).
//!
//! Two ways in: [`write_atomic`] for a file written through a [`Write`] (YAML, JSON, `.npy`,
//! PNG, cache blobs), and [`StagedFile`] for a file a library creates by path (HDF5): create it
//! at [`StagedFile::temp_path`], close it, then [`StagedFile::commit`]. Commands that write
//! outputs (`attribute`, `merge`, `analyze`, `project`, the demo, and the planned `concepts`)
//! use these two and nothing else; a new command should too.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// An output file that could not be written (or not moved into place).
#[derive(Debug, thiserror::Error)]
#[error("cannot write `{}`{}", path.display(), full_disk_hint(source))]
pub struct WriteError {
    /// The file's final name (the one the user asked for), not the temporary one.
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl WriteError {
    /// A write error of `path`.
    pub fn new(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        WriteError {
            path: path.into(),
            source,
        }
    }
}

/// Says what to do when an error means that the disk (or a quota, or a file size limit) is full.
pub fn full_disk_hint(e: &std::io::Error) -> &'static str {
    if is_full_disk(e) {
        " (the disk is full or a file size limit was reached; free space or write elsewhere)"
    } else {
        ""
    }
}

/// Whether `e` means no space: ENOSPC, EDQUOT or EFBIG.
pub fn is_full_disk(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::FileTooLarge
    )
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The prefix of every temporary name of `final_name`: `.NAME.partial-`.
fn partial_prefix(final_name: &str) -> String {
    format!(".{final_name}.partial-")
}

fn host_name() -> String {
    #[cfg(unix)]
    {
        let mut buf = [0u8; 256];
        // SAFETY: `buf` is valid for `buf.len()` bytes; gethostname writes at most that many.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        if rc == 0 {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            let name: String = String::from_utf8_lossy(&buf[..end])
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            if !name.is_empty() {
                return name;
            }
        }
    }
    "host".into()
}

/// A file being written under a temporary name next to its target; [`StagedFile::commit`]
/// moves it into place. Dropped uncommitted (an error, a panic), the temporary file is removed.
#[derive(Debug)]
pub struct StagedFile {
    final_path: PathBuf,
    temp_path: PathBuf,
    committed: bool,
}

impl StagedFile {
    /// Stages `final_path`: picks a temporary name in the same directory, unique to this
    /// process and call, and removes the temporaries that dead writers of the same target on
    /// this machine left behind. Creates nothing yet.
    pub fn new(final_path: impl AsRef<Path>) -> Self {
        let final_path = final_path.as_ref();
        let name = final_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "output".to_string());
        remove_stale_partials(final_path);
        let temp_name = format!(
            "{}{}-{}-{}",
            partial_prefix(&name),
            host_name(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        StagedFile {
            final_path: final_path.to_path_buf(),
            temp_path: sibling(final_path, &temp_name),
            committed: false,
        }
    }

    /// Where to write.
    pub fn temp_path(&self) -> &Path {
        &self.temp_path
    }

    /// The target.
    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// Flushes the (closed) temporary file to disk, renames it over the target and flushes
    /// the directory. Errors name the target.
    pub fn commit(mut self) -> Result<(), WriteError> {
        let err = |e| WriteError::new(&self.final_path, e);
        // fsync through a read-only descriptor: Linux and macOS flush the file's data whatever
        // the descriptor's mode.
        File::open(&self.temp_path)
            .and_then(|f| f.sync_all())
            .map_err(err)?;
        std::fs::rename(&self.temp_path, &self.final_path).map_err(err)?;
        self.committed = true;
        sync_dir(&self.final_path).map_err(err)
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if !self.committed {
            // Nothing to do if it was never created.
            let _ = std::fs::remove_file(&self.temp_path);
        }
    }
}

/// Writes `path` through `write` (buffered), atomically: the target holds either its old
/// content or everything `write` wrote, never part of it. Errors name `path`.
pub fn write_atomic(
    path: impl AsRef<Path>,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<(), WriteError> {
    let staged = StagedFile::new(path.as_ref());
    let err = |e| WriteError::new(staged.final_path(), e);
    let file = File::create(staged.temp_path()).map_err(err)?;
    let mut w = BufWriter::new(file);
    write(&mut w).map_err(err)?;
    let file = w.into_inner().map_err(|e| err(e.into_error()))?;
    // Flushed here, so that a full disk surfaces as this write's error.
    file.sync_all().map_err(err)?;
    drop(file);
    staged.commit()
}

/// Writes `bytes` to `path` atomically (see [`write_atomic`]).
pub fn write_bytes_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<(), WriteError> {
    write_atomic(path, |w| w.write_all(bytes))
}

/// Removes the temporary files of `final_path` that writers on this machine left when they
/// were killed (their process is gone). Temporaries of live processes and of other machines
/// (a shared file system) are left alone. Best effort: a file that cannot be removed stays.
pub fn remove_stale_partials(final_path: &Path) {
    let Some(name) = final_path.file_name() else {
        return;
    };
    let prefix = format!(
        "{}{}-",
        partial_prefix(&name.to_string_lossy()),
        host_name()
    );
    let dir = match final_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let entry = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = entry.strip_prefix(&prefix) else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| !process_alive(pid)) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(unix)]
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return true;
    };
    // SAFETY: signal 0 only checks that the process exists; it sends nothing.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(not(unix))]
fn process_alive(_pid: u32) -> bool {
    true
}

fn sibling(final_path: &Path, name: &str) -> PathBuf {
    match final_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.join(name),
        _ => PathBuf::from(name),
    }
}

/// Flushes the directory holding `path`, so that a rename into it is durable.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        match File::open(dir).and_then(|d| d.sync_all()) {
            // Some file systems (FUSE, network mounts) do not flush directories; the rename
            // itself has happened.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::InvalidInput | std::io::ErrorKind::Unsupported
                ) =>
            {
                Ok(())
            }
            other => other,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.yaml");
        write_bytes_atomic(&p, b"old").unwrap();
        let e = write_atomic(&p, |w| {
            w.write_all(b"half of the new")?;
            Err(std::io::Error::other("interrupted"))
        })
        .unwrap_err();
        assert_eq!(e.path, p);
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(listing(dir.path()), vec!["out.yaml"]);
        write_bytes_atomic(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(listing(dir.path()), vec!["out.yaml"]);
    }

    #[test]
    fn temporaries_of_dead_writers_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.h5");
        let host = host_name();
        // A pid above the kernel's limit (4194304) is never alive.
        let dead = format!(".a.h5.partial-{host}-4294967-0");
        let live = format!(".a.h5.partial-{host}-{}-99", std::process::id());
        let elsewhere = ".a.h5.partial-otherhost-4294967-0".to_string();
        let other_target = format!(".b.h5.partial-{host}-4294967-0");
        for n in [&dead, &live, &elsewhere, &other_target] {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        let staged = StagedFile::new(&p);
        let mut want = vec![live, elsewhere, other_target];
        want.sort();
        assert_eq!(listing(dir.path()), want);
        drop(staged);
    }

    #[test]
    fn staged_files_get_distinct_names_and_commit_replaces_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.bin");
        std::fs::write(&p, b"old").unwrap();
        let a = StagedFile::new(&p);
        let b = StagedFile::new(&p);
        assert_ne!(a.temp_path(), b.temp_path());
        assert_eq!(a.temp_path().parent(), p.parent());
        std::fs::write(a.temp_path(), b"new").unwrap();
        a.commit().unwrap();
        drop(b);
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(listing(dir.path()), vec!["x.bin"]);
    }

    #[test]
    fn full_disk_errors_say_so_and_name_the_target() {
        let e = WriteError::new("out/a.h5", std::io::Error::from_raw_os_error(libc::ENOSPC));
        let text = e.to_string();
        assert!(text.contains("`out/a.h5`"), "{text}");
        assert!(text.contains("disk is full"), "{text}");
        // The cause is chained, not repeated in the message.
        assert!(!text.contains("os error"), "{text}");
        let e = WriteError::new("a", std::io::Error::from_raw_os_error(libc::EACCES));
        assert!(!e.to_string().contains("disk is full"));
    }
}
