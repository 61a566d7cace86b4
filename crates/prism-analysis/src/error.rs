//! Typed errors of the analysis: what failed, for which category and stage, and what to do.

use std::path::PathBuf;

/// Errors of the SpRAy pipeline.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// Reading the attribution file or writing the analysis file failed.
    #[error(transparent)]
    Store(#[from] prism_store::StoreError),
    /// A parameter is out of range or the configuration file is invalid.
    #[error("{message}")]
    Config { message: String },
    /// The configuration file could not be read.
    #[error("cannot read configuration `{}`", path.display())]
    ConfigFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A numerical stage failed (e.g. the eigensolver did not converge).
    #[error("category `{category}`, stage `{stage}`: {message}")]
    Numerical {
        category: String,
        stage: &'static str,
        message: String,
    },
    /// The output exists and overwriting was not asked for.
    /// NaN or ±Inf in the attributions read (SpRAy's distances would be meaningless).
    #[error(
        "`{}` holds non-finite relevance (NaN or ±Inf) in {count} sample{} of class {class} \
         (sample numbers {}); attribute them again (prism attribute refuses non-finite relevance \
         unless --allow-nonfinite was given) or leave the class out (--classes)",
        path.display(),
        if *count == 1 { "" } else { "s" },
        samples.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")
    )]
    NonFinite {
        path: PathBuf,
        class: u32,
        count: usize,
        /// The first few sample numbers (as in the attribution file's index).
        samples: Vec<u32>,
    },
    #[error("`{path}` already exists; pass --force to overwrite it")]
    OutputExists { path: PathBuf },
    /// The configuration could not be written as TOML (it is recorded in every analysis file).
    #[error("cannot write the analysis configuration as TOML")]
    ConfigEncoding {
        #[source]
        source: toml::ser::Error,
    },
    /// A cache key or blob could not be encoded (a value JSON cannot represent).
    #[error("cache: cannot encode {what}")]
    CacheEncoding {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// The cache directory could not be used.
    #[error(
        "cannot write to the cache: `{}`{} (pass a writable --cache-dir, or --no-cache)",
        path.display(),
        prism_store::atomic::full_disk_hint(source)
    )]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Short alias used throughout the crate.
pub type Result<T, E = AnalysisError> = std::result::Result<T, E>;
