//! Typed errors of the viewer: loading projects and running the server.

use std::path::PathBuf;

/// Errors while loading projects or serving them.
#[derive(Debug, thiserror::Error)]
pub enum ViewerError {
    /// A project file or one of its data files could not be read.
    #[error(transparent)]
    Store(#[from] prism_store::StoreError),
    /// A project's data is inconsistent or unsupported.
    #[error("`{path}`: {message}")]
    Project { path: PathBuf, message: String },
    /// Reading a sample of a project's dataset failed.
    #[error(transparent)]
    Dataset(prism_store::DisplayError),
    /// Writing a generated dataset failed.
    #[error(transparent)]
    DatasetWrite(#[from] prism_store::DatasetError),
    /// Writing an array of a generated token dataset failed.
    #[error(transparent)]
    NpyWrite(#[from] prism_store::NpyError),
    /// A file-system operation failed.
    #[error("`{path}`: I/O error")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The server could not start or stopped with an error.
    #[error("{message}")]
    Server {
        message: String,
        #[source]
        source: std::io::Error,
    },
    /// Rendering an image failed.
    #[error(transparent)]
    Heatmap(#[from] prism_heatmap::HeatmapError),
    /// The server's access settings are refused (a short token, a non-loopback address without
    /// `allow_remote`, a malformed allowed host name), or no token could be made.
    #[error("{0}")]
    Access(String),
    /// Decoding an image of an image-directory dataset, or writing a generated one, failed (the
    /// message says which).
    #[error("`{path}`: {message}")]
    Image { path: PathBuf, message: String },
}

impl From<prism_store::DisplayError> for ViewerError {
    /// The display reader's errors in the viewer's words (same messages as before the reader
    /// moved to `prism-store`).
    fn from(e: prism_store::DisplayError) -> Self {
        use prism_store::DisplayError as D;
        match e {
            D::Store(s) => ViewerError::Store(s),
            D::Invalid { path, message } => ViewerError::Project { path, message },
            D::Io { path, source } => ViewerError::Io { path, source },
            D::Image { path, message } => ViewerError::Image { path, message },
            other @ D::Read { .. } => ViewerError::Dataset(other),
        }
    }
}
