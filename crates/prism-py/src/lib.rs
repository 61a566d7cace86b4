//! # prism-py
//!
//! The Rust half of Prism's Python package `prism-xai` (import name `prism_xai`): a PyO3
//! extension module, `prism_xai._prism`, over Prism's libraries. It converts numpy arrays to
//! and from [`prism_model::Tensor`]s, Python keyword arguments to the libraries' option structs
//! and library errors to Python exceptions (`errors`); the work itself is always a library call,
//! the same one the `prism` binary makes, so the package and the CLI write the same numbers.
//!
//! Long calls release the GIL and run on Prism's own thread pool (`set_num_threads`); they look
//! for Ctrl-C between batches and raise `KeyboardInterrupt`. The Python half
//! (`python/prism_xai/`) adds the conveniences (PyTorch export, Jupyter display, adapters); see
//! `docs/python.md`.

use pyo3::prelude::*;

pub mod errors;
pub mod heatmap;
pub mod jobs;
pub mod model;
pub mod runtime;

/// The extension module `prism_xai._prism`.
#[pymodule]
fn _prism(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    runtime::register(m)?;
    model::register(m)?;
    heatmap::register(m)?;
    jobs::register(m)?;
    Ok(())
}
