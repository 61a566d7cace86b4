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
    /// HDF5 failed while reading a file of a project.
    #[error("`{path}`: reading `{dataset}` failed: {source}")]
    Hdf5 {
        path: PathBuf,
        dataset: String,
        #[source]
        source: hdf5::Error,
    },
    /// A file-system operation failed.
    #[error("`{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The server could not start or stopped with an error.
    #[error("{message}: {source}")]
    Server {
        message: String,
        #[source]
        source: std::io::Error,
    },
    /// Rendering an image failed.
    #[error(transparent)]
    Heatmap(#[from] prism_heatmap::HeatmapError),
    /// Decoding an image of an image-directory dataset failed.
    #[error("`{path}`: cannot decode the image: {message}")]
    Image { path: PathBuf, message: String },
}
