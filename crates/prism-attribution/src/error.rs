//! Typed errors of attribution.

/// What can go wrong while attributing: bad configuration, bad targets, or the model.
#[derive(Debug, thiserror::Error)]
pub enum AttributionError {
    #[error(transparent)]
    Model(#[from] prism_model::ModelError),
    #[error("node '{node}' ({op}): {detail}")]
    Node {
        node: String,
        op: String,
        detail: String,
    },
    #[error("invalid rule: {0}")]
    Rule(String),
    #[error("unknown composite '{name}'; built-in composites: {known}")]
    UnknownComposite { name: String, known: String },
    #[error("unknown attributor '{name}'; attributors: gradient, smoothgrad, integrated-gradients, occlusion")]
    UnknownAttributor { name: String },
    #[error("composite file {path}: {detail}")]
    CompositeFile { path: String, detail: String },
    /// A method parameter out of its range; `names` are [`crate::MethodSpec`]'s fields.
    #[error("{} {detail}", names.join(" and "))]
    Parameter {
        names: &'static [&'static str],
        detail: String,
    },
    #[error("method description: {0}")]
    MethodDescription(String),
    #[error("target: {0}")]
    Target(String),
    #[error("{0}")]
    Invalid(String),
    /// A batch of [`crate::Explainer::explain_batched`] failed: `start..end` are its samples.
    #[error("attributing samples {start}..{end}: {error}")]
    Batch {
        start: usize,
        end: usize,
        error: Box<AttributionError>,
    },
}

pub type Result<T, E = AttributionError> = std::result::Result<T, E>;
