//! Error types: one for CMSL sources, one for everything else.

use std::path::PathBuf;

/// A CMSL source that does not compile, with the position of the offending character.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid colour map {text:?} at character {position}: {kind}; see docs/heatmaps.md for the CMSL grammar")]
pub struct CmslError {
    /// The whole source, as given.
    pub text: String,
    /// Where parsing failed, counted in characters from 0 (the length of the source when it
    /// ends too early).
    pub position: usize,
    /// What is wrong there.
    pub kind: CmslErrorKind,
}

impl CmslError {
    /// Two lines: the source and a caret under the bad character, for terminals.
    pub fn pointer(&self) -> String {
        format!("  {}\n  {}^", self.text, " ".repeat(self.position))
    }
}

/// What went wrong in a CMSL source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmslErrorKind {
    /// A character that is not a hex digit, `:`, `,` or whitespace.
    #[error("{found:?} is not a hex digit, ':', ',' or whitespace")]
    InvalidCharacter {
        /// The character found.
        found: char,
    },
    /// A valid token in the wrong place.
    #[error("found {found}, expected {expected}")]
    Unexpected {
        /// What was found.
        found: String,
        /// What the grammar allows here.
        expected: &'static str,
    },
    /// The source stops inside a node.
    #[error("the source ends early, expected {expected}")]
    UnexpectedEnd {
        /// What the grammar needs to finish the node.
        expected: &'static str,
    },
    /// Fewer than two colour nodes.
    #[error("a colour map needs at least 2 colours, found {found}")]
    TooFewColors {
        /// How many nodes were given.
        found: usize,
    },
    /// An explicit index below the index of the node before it.
    #[error("index {index:#04x} is below the previous node's index {previous:#04x}; indices must not decrease")]
    Descending {
        /// The index given.
        index: u16,
        /// The index of the node before it.
        previous: u16,
    },
}

/// Anything that can go wrong while rendering heatmaps.
#[derive(Debug, thiserror::Error)]
pub enum HeatmapError {
    /// A colour-map argument that is neither a built-in name nor valid CMSL.
    #[error("unknown colour map {name:?}: it is not a built-in map ({known}) and not valid CMSL ({cmsl})")]
    UnknownColorMap {
        /// The argument given.
        name: String,
        /// The built-in names, comma-separated.
        known: String,
        /// Why it is not CMSL either.
        cmsl: Box<CmslError>,
    },
    /// A malformed CMSL source.
    #[error(transparent)]
    Cmsl(#[from] CmslError),
    /// An array whose shape cannot be a batch of heatmaps.
    #[error("cannot render an array of shape {shape:?}: {reason}")]
    Shape {
        /// The shape given.
        shape: Vec<usize>,
        /// What is wrong with it.
        reason: String,
    },
    /// A NaN or infinite relevance value.
    #[error("relevance of sample {sample} is {value} at row {row}, column {column}; heatmaps need finite values (check the attribution)")]
    NonFinite {
        /// The sample (0-based).
        sample: usize,
        /// The row (0-based).
        row: usize,
        /// The column (0-based).
        column: usize,
        /// The value found, as text.
        value: String,
    },
    /// Token strings that do not pair up with the token relevance (counts of samples or of
    /// tokens differ).
    #[error("{0}")]
    TokenCount(String),
    /// Invalid rendering parameters.
    #[error("invalid parameter: {0}")]
    Parameter(String),
    /// Encoding or decoding a PNG failed.
    #[error("PNG {action} failed for {path}")]
    Png {
        /// "encoding" or "decoding".
        action: &'static str,
        /// The file, or "<memory>".
        path: PathBuf,
        /// The underlying error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Reading or writing a file failed.
    #[error("cannot {action} {path}")]
    Io {
        /// What was attempted ("write", "create directory").
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}
