//! Fuzz targets for every parser of untrusted input (`fuzz/README.md`).
//!
//! Each module of [`targets`] is one target: `run(data)` feeds one input to a parser the way
//! Prism's commands do and ignores the parser's errors; only a panic, an abort, a hang or
//! running out of memory is a finding. The libFuzzer binaries (`fuzz_targets/`, feature
//! `libfuzzer`) call them, and the crate's tests replay the committed corpus through them.
//! Also here: a scratch directory per process for the parsers that read files, and the framing
//! that splits one input into several files.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The targets, one module each.
pub mod targets {
    pub mod cmsl;
    pub mod composite_toml;
    pub mod hdf5_analysis;
    pub mod hdf5_attribution;
    pub mod hdf5_concepts;
    pub mod hdf5_dataset;
    pub mod image;
    pub mod label_map;
    pub mod npy;
    pub mod onnx;
    pub mod project_yaml;
    pub mod tokens;
    pub mod viewer_api;
}

/// A target: feeds one input to its parser.
pub type Target = fn(&[u8]);

/// Every target by name (the name of its libFuzzer binary and of its corpus folder).
pub const TARGETS: [(&str, Target); 13] = [
    ("onnx", targets::onnx::run),
    ("npy", targets::npy::run),
    ("hdf5_attribution", targets::hdf5_attribution::run),
    ("hdf5_analysis", targets::hdf5_analysis::run),
    ("hdf5_concepts", targets::hdf5_concepts::run),
    ("hdf5_dataset", targets::hdf5_dataset::run),
    ("image", targets::image::run),
    ("project_yaml", targets::project_yaml::run),
    ("composite_toml", targets::composite_toml::run),
    ("cmsl", targets::cmsl::run),
    ("tokens", targets::tokens::run),
    ("label_map", targets::label_map::run),
    ("viewer_api", targets::viewer_api::run),
];

/// A scratch directory for this fuzzing process, removed when the process ends normally
/// (libFuzzer's `exit` on a crash leaves it in the system temp directory).
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("prism-fuzz-")
            .tempdir()
            .expect("a scratch directory for the fuzz target")
    })
    .path()
}

/// Writes `data` to `name` in the scratch directory and returns its path.
pub fn file(name: &str, data: &[u8]) -> PathBuf {
    let path = scratch().join(name);
    std::fs::write(&path, data).expect("writing the fuzz input to the scratch directory");
    path
}

/// A fresh, empty directory `name` in the scratch directory.
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = scratch().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating a directory in the scratch directory");
    dir
}

/// The separator of [`split`]: several files in one fuzz input.
pub const SEPARATOR: &[u8] = b"\n--8<--\n";

/// Splits an input into its parts at [`SEPARATOR`] (seed corpora join files with it).
pub fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while let Some(at) = rest.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
        parts.push(&rest[..at]);
        rest = &rest[at + SEPARATOR.len()..];
    }
    parts.push(rest);
    parts
}
