//! Typed errors: each says what went wrong, in which file and dataset, and what to do.
//!
//! A message never repeats its cause: the cause is chained (`#[source]`) and printed by whoever
//! prints the chain (`anyhow`'s `{:#}` in the CLI, the Python binding's `chain`), so a message
//! that also wrote `{source}` would print it twice.

use std::path::PathBuf;

/// Errors from reading or writing Prism's HDF5 files.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file does not exist (or cannot be looked at).
    #[error("cannot open `{path}` for reading")]
    NotFound {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file could not be opened as HDF5 (not HDF5, truncated, no permission).
    #[error(
        "cannot open `{path}` as HDF5 (check that the path is right and that the file is a \
         complete HDF5 file: a truncated or partly copied file fails here)"
    )]
    Open {
        path: PathBuf,
        #[source]
        source: hdf5::Error,
    },
    /// The file could not be created.
    #[error(
        "cannot create `{path}` for writing (check that the directory exists and is writable)"
    )]
    Create {
        path: PathBuf,
        #[source]
        source: hdf5::Error,
    },
    /// A dataset the format requires is absent.
    #[error("`{path}`: dataset `{dataset}` is missing; {hint}")]
    MissingDataset {
        path: PathBuf,
        dataset: String,
        hint: String,
    },
    /// A dataset has a shape the format does not allow, or disagrees with another dataset.
    #[error("`{path}`: dataset `{dataset}` has shape {found:?}, but {expected}")]
    Shape {
        path: PathBuf,
        dataset: String,
        found: Vec<usize>,
        expected: String,
    },
    /// A dataset holds values of a type the format does not allow.
    #[error("`{path}`: dataset `{dataset}` holds {found}, but {expected}")]
    Dtype {
        path: PathBuf,
        dataset: String,
        found: String,
        expected: String,
    },
    /// A dataset has the right shape and type, but invalid values.
    #[error("`{path}`: dataset `{dataset}`: {message}")]
    Invalid {
        path: PathBuf,
        dataset: String,
        message: String,
    },
    /// HDF5 failed while reading a dataset or attribute (often: the file is truncated or corrupt).
    #[error(
        "`{path}`: reading `{dataset}` failed (the file may be truncated or corrupt; re-create \
         or re-copy it)"
    )]
    Read {
        path: PathBuf,
        dataset: String,
        #[source]
        source: hdf5::Error,
    },
    /// HDF5 failed while writing a dataset or attribute.
    #[error("`{path}`: writing `{dataset}` failed (check free disk space and permissions)")]
    Write {
        path: PathBuf,
        dataset: String,
        #[source]
        source: hdf5::Error,
    },
    /// A caller passed data that does not fit the file being written.
    #[error("`{path}`: {message}")]
    Usage { path: PathBuf, message: String },
    /// An output file could not be written or moved into place (see [`crate::atomic`]).
    #[error(transparent)]
    Output(#[from] crate::atomic::WriteError),
    /// A file-system operation (read, resolve) failed.
    #[error("cannot {action} `{path}`")]
    Io {
        /// What was being done, as a verb: `read`, `resolve`.
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Short alias used throughout the crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// `err` and its sources as one message, outermost first, each cause once (a source whose text
/// its outer message already holds is not repeated). For front ends that show an error as one
/// string (the viewer's JSON errors, Python exceptions).
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    message
}
