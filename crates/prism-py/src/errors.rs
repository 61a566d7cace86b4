//! Prism's errors as Python exceptions.
//!
//! The exception classes are defined in Python (`prism_xai/_errors.py`) so that they can inherit
//! from both `PrismError` and the built-in class a Python user expects to catch
//! (`InvalidArgumentError` is a `ValueError`, `PrismFileNotFoundError` a `FileNotFoundError`).
//! Every error is raised with Prism's own message, its causes joined by ": ".

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

/// Which Python exception class an error becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    InvalidArgument,
    FileNotFound,
    Model,
    Attribution,
    Heatmap,
    Store,
    Analysis,
    Evaluation,
    Viewer,
}

impl Kind {
    fn class_name(self) -> &'static str {
        match self {
            Kind::InvalidArgument => "InvalidArgumentError",
            Kind::FileNotFound => "PrismFileNotFoundError",
            Kind::Model => "ModelError",
            Kind::Attribution => "AttributionError",
            Kind::Heatmap => "HeatmapError",
            Kind::Store => "StoreError",
            Kind::Analysis => "AnalysisError",
            Kind::Evaluation => "EvaluationError",
            Kind::Viewer => "ViewerError",
        }
    }
}

/// A Python exception of class `kind` with `message`.
pub fn error(kind: Kind, message: impl Into<String>) -> PyErr {
    let message = message.into();
    Python::attach(|py| {
        match py
            .import("prism_xai._errors")
            .and_then(|m| m.getattr(kind.class_name()))
        {
            Ok(class) => match class.call1((message.clone(),)) {
                Ok(instance) => PyErr::from_value(instance),
                Err(e) => e,
            },
            // The package's Python half is missing (the extension imported on its own): still a
            // clear error, never a lost one.
            Err(_) => PyRuntimeError::new_err(format!("{}: {message}", kind.class_name())),
        }
    })
}

/// `err` and its sources as one message, outermost first (see [`prism_store::error::chain`]).
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    prism_store::error::chain(err)
}

/// An I/O-rooted error: `FileNotFound` when the chain holds a not-found I/O error.
fn io_kind(err: &(dyn std::error::Error + 'static)) -> Option<Kind> {
    let mut e: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cur) = e {
        if let Some(io) = cur.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::NotFound {
                return Some(Kind::FileNotFound);
            }
        }
        e = cur.source();
    }
    None
}

/// Converts a library error into the Python exception of `kind` (or `PrismFileNotFoundError`
/// when the root cause is a missing file).
pub fn from_lib(kind: Kind, err: &(dyn std::error::Error + 'static)) -> PyErr {
    error(io_kind(err).unwrap_or(kind), chain(err))
}

/// `InvalidArgumentError(message)`.
pub fn invalid(message: impl Into<String>) -> PyErr {
    error(Kind::InvalidArgument, message)
}
