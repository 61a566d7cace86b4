//! Typed errors of evaluation.

/// What can go wrong while evaluating attributions.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Model(#[from] prism_model::ModelError),
    #[error(transparent)]
    Attribution(#[from] prism_attribution::AttributionError),
    /// Parameters out of range, named as the front ends spell them (snake case).
    #[error("{} {detail}", names.join(", "))]
    Parameter {
        names: Vec<&'static str>,
        detail: String,
    },
    /// Bad configuration or inputs of the wrong shape.
    #[error("{0}")]
    Invalid(String),
    /// Reading a dataset, an attribution file or a segments file failed (what is named).
    #[error("{what}")]
    Read {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Writing a report or a plot failed.
    #[error("{path}: {detail}")]
    Io { path: String, detail: String },
}

pub type Result<T, E = EvalError> = std::result::Result<T, E>;
