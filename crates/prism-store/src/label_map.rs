//! ViRelAy label maps: a JSON list of `{"index": int, "word_net_id": str, "name": str}`.

use std::path::Path;

use serde::Deserialize;

use crate::error::{Result, StoreError};

/// One class of a label map.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LabelEntry {
    pub index: u32,
    pub word_net_id: String,
    pub name: String,
}

/// Reads a ViRelAy label map.
pub fn read_label_map(path: impl AsRef<Path>) -> Result<Vec<LabelEntry>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| StoreError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| StoreError::Invalid {
        path: path.to_path_buf(),
        dataset: "(label map)".into(),
        message: format!(
            "{e}; a label map is a JSON list of {{\"index\", \"word_net_id\", \"name\"}} objects"
        ),
    })
}
