//! Relevance recorded at hidden nodes by `prism explain --record` (and CRP conditions), written
//! beside the relevance `.npy`: a folder `<output stem>.record/` holding one `.npy` per node and
//! quantity and an `index.json` that names them.
//!
//! ```text
//! relevance.npy                      the input relevance (rows × input shape)
//! relevance.record/index.json        {"format": "prism-record", "version": 1, "mode",
//!                                     "rows_per_sample", "conditions", "top_k",
//!                                     "nodes": [{"node", "tensor", "sample_shape",
//!                                                "relevance", "activation",
//!                                                "top_channels", "top_share"}]}
//! relevance.record/000.relevance.npy rows × C (mode channels: summed over space) or
//!                                    rows × C × … (mode maps)
//! relevance.record/000.activation.npy  shaped alike
//! relevance.record/000.top_channels.npy  rows × k int64: the k most relevant channels
//! relevance.record/000.top_share.npy     rows × k: their shares R_c / Σ|R_c'|
//! ```
//!
//! Files are numbered in graph order (node names hold `/`, which a file name cannot); the index
//! maps numbers to nodes. The folder is written under a temporary name and renamed into place,
//! so a reader sees the old folder or the complete new one.

use std::path::{Path, PathBuf};

use prism_model::{Float, Tensor};
use serde::Serialize;

use crate::atomic::WriteError;
use crate::npy::{self, NpyError};

/// What one recorded node gives.
#[derive(Debug)]
pub struct RecordedNode<'a, T> {
    pub node: &'a str,
    pub tensor: &'a str,
    pub sample_shape: &'a [usize],
    pub relevance: &'a Tensor<T>,
    pub activation: &'a Tensor<T>,
    /// Per row, the top channels and their shares (`rows × k`, row-major).
    pub top_channels: &'a [u32],
    pub top_share: &'a [T],
}

/// The run's settings the index repeats.
#[derive(Debug, Serialize)]
pub struct RecordInfo {
    /// `channels` or `maps`.
    pub mode: String,
    /// Rows per sample: the number of CRP conditions (1 without).
    pub rows_per_sample: usize,
    /// The conditions as given (`LAYER:ch,ch`), one per row of each sample.
    pub conditions: Vec<String>,
    /// Whether parallel paths around conditioned layers were excluded.
    pub exclude_parallel: bool,
    /// Channels per row in the top tables.
    pub top_k: usize,
}

#[derive(Serialize)]
struct IndexNode<'a> {
    node: &'a str,
    tensor: &'a str,
    sample_shape: &'a [usize],
    relevance: String,
    activation: String,
    top_channels: String,
    top_share: String,
}

#[derive(Serialize)]
struct Index<'a> {
    format: &'static str,
    version: u32,
    #[serde(flatten)]
    info: &'a RecordInfo,
    nodes: Vec<IndexNode<'a>>,
}

/// The record folder of a relevance output: `relevance.npy` → `relevance.record`.
pub fn record_dir(output: &Path) -> PathBuf {
    let stem = output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "relevance".into());
    output.with_file_name(format!("{stem}.record"))
}

/// Writes the record folder `dir` (replacing an old one once the new one is complete).
pub fn write_record<T: Float>(
    dir: &Path,
    info: &RecordInfo,
    nodes: &[RecordedNode<'_, T>],
) -> Result<(), NpyError> {
    let name = dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "record".into());
    let staging = dir.with_file_name(format!(".{name}.partial-{}", std::process::id()));
    let io = |path: &Path, e: std::io::Error| NpyError::Write(WriteError::new(path, e));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| io(&staging, e))?;
    }
    std::fs::create_dir_all(&staging).map_err(|e| io(&staging, e))?;
    let mut index = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let file = |what: &str| format!("{i:03}.{what}.npy");
        npy::write_float(&staging.join(file("relevance")), n.relevance)?;
        npy::write_float(&staging.join(file("activation")), n.activation)?;
        let rows = n.relevance.shape().first().copied().unwrap_or(0);
        let k = n.top_channels.len() / rows.max(1);
        let top: Vec<i64> = n.top_channels.iter().map(|&c| i64::from(c)).collect();
        npy::write_i64_array(&staging.join(file("top_channels")), &[rows, k], &top)?;
        let share =
            Tensor::new(vec![rows, k], n.top_share.to_vec()).map_err(|e| NpyError::Invalid {
                path: staging.join(file("top_share")),
                message: e.to_string(),
            })?;
        npy::write_float(&staging.join(file("top_share")), &share)?;
        index.push(IndexNode {
            node: n.node,
            tensor: n.tensor,
            sample_shape: n.sample_shape,
            relevance: file("relevance"),
            activation: file("activation"),
            top_channels: file("top_channels"),
            top_share: file("top_share"),
        });
    }
    let json = serde_json::to_vec_pretty(&Index {
        format: "prism-record",
        version: 1,
        info,
        nodes: index,
    })
    .map_err(|e| NpyError::Invalid {
        path: staging.join("index.json"),
        message: format!("cannot serialise the index: {e}"),
    })?;
    let index_path = staging.join("index.json");
    std::fs::write(&index_path, json).map_err(|e| io(&index_path, e))?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| io(dir, e))?;
    }
    std::fs::rename(&staging, dir).map_err(|e| io(dir, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_folder_sits_beside_the_output_and_is_replaced_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("rel.npy");
        let dir = record_dir(&out);
        assert_eq!(dir, tmp.path().join("rel.record"));
        let rel = Tensor::new(vec![2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let info = RecordInfo {
            mode: "channels".into(),
            rows_per_sample: 1,
            conditions: vec![],
            exclude_parallel: false,
            top_k: 1,
        };
        let node = RecordedNode {
            node: "/a/Conv",
            tensor: "a_out",
            sample_shape: &[3, 4, 4],
            relevance: &rel,
            activation: &rel,
            top_channels: &[2, 2],
            top_share: &[0.5, 0.4],
        };
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("stale.npy"), b"old").unwrap();
        write_record(&dir, &info, &[node]).unwrap();
        assert!(!dir.join("stale.npy").exists());
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
        assert_eq!(index["nodes"][0]["node"], "/a/Conv");
        assert_eq!(index["mode"], "channels");
        let back: Tensor<f32> = npy::read_float(&dir.join("000.relevance.npy")).unwrap();
        assert_eq!(back.data(), rel.data());
        let top = npy::read_i64(&dir.join("000.top_channels.npy")).unwrap();
        assert_eq!(top.shape(), &[2, 1]);
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("partial"))
            .collect();
        assert!(leftovers.is_empty());
    }
}
