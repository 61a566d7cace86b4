//! Typed errors of model loading, validation, shape inference and execution.

use std::path::PathBuf;

use crate::finite::NonFiniteReport;

/// Everything that can go wrong between an ONNX file on disk and a forward result.
///
/// Messages say what is wrong, where (file, node, tensor) and, where there is one, what to do.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid ONNX model ({detail}); is the file complete and really an .onnx export?")]
    Decode { path: PathBuf, detail: String },
    #[error("{0}")]
    Invalid(String),
    /// A batch of a batch loop failed: `start..end` are its samples.
    #[error("samples {start}..{end}: {error}")]
    Batch {
        start: usize,
        end: usize,
        error: Box<ModelError>,
    },
    /// A batch loop was stopped by its caller (e.g. Ctrl-C) after `done` of `total` samples.
    #[error("stopped after {done} of {total} samples")]
    Stopped { done: usize, total: usize },
    #[error(
        "node '{node}' uses operator '{op}'{domain}, which Prism does not support; supported operators: {supported}"
    )]
    UnsupportedOp {
        node: String,
        op: String,
        domain: String,
        supported: String,
    },
    #[error("node '{node}' ({op}): {detail}")]
    Node {
        node: String,
        op: String,
        detail: String,
    },
    #[error("tensor '{name}': {detail}")]
    Tensor { name: String, detail: String },
    #[error("input '{name}': {detail}")]
    Input { name: String, detail: String },
    /// NaN or ±Inf in an input, refused by [`crate::NonFinite::Error`].
    #[error(
        "input '{name}' has {report}; check the preprocessing (a division by a zero standard \
         deviation? an unreadable sample?), or allow non-finite values (--allow-nonfinite, \
         Python: allow_nonfinite=True)"
    )]
    NonFiniteInput {
        name: String,
        report: NonFiniteReport,
    },
    /// NaN or ±Inf in a result computed from finite inputs; `origin` says where it first
    /// appeared.
    #[error(
        "{what} has {report} although the inputs are finite: {origin} (allow non-finite values \
         with --allow-nonfinite, Python: allow_nonfinite=True)"
    )]
    NonFiniteResult {
        what: String,
        report: NonFiniteReport,
        origin: String,
    },
    /// Two operands of a backend operation do not fit together.
    #[error("{op}: shapes {left:?} and {right:?} do not fit")]
    Shape {
        op: &'static str,
        left: Vec<usize>,
        right: Vec<usize>,
    },
}

impl ModelError {
    /// This error, from a batch holding samples `start..end` of a longer run: a non-finite
    /// report renumbered to the run's samples, any other error wrapped in [`ModelError::Batch`].
    pub fn in_batch(self, start: usize, end: usize) -> Self {
        match self {
            ModelError::NonFiniteInput { name, report } => ModelError::NonFiniteInput {
                name,
                report: report.shifted(start),
            },
            ModelError::NonFiniteResult {
                what,
                report,
                origin,
            } => ModelError::NonFiniteResult {
                what,
                report: report.shifted(start),
                origin,
            },
            error => ModelError::Batch {
                start,
                end,
                error: Box::new(error),
            },
        }
    }

    pub(crate) fn node(node: &str, op: &str, detail: impl Into<String>) -> Self {
        ModelError::Node {
            node: node.to_string(),
            op: op.to_string(),
            detail: detail.into(),
        }
    }
    pub(crate) fn shape(op: &'static str, left: &[usize], right: &[usize]) -> Self {
        ModelError::Shape {
            op,
            left: left.to_vec(),
            right: right.to_vec(),
        }
    }
    pub(crate) fn tensor(name: &str, detail: impl Into<String>) -> Self {
        ModelError::Tensor {
            name: name.to_string(),
            detail: detail.into(),
        }
    }
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
