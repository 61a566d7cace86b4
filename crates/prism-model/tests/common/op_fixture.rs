//! The operator fixtures written by `scripts/make_op_fixtures.py` (tests/fixtures/ops/<group>/):
//! one small ONNX graph per case, its inputs, onnxruntime's outputs and a JSON sidecar. Shared by
//! prism-model's forward test and prism-attribution's gradient test.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use prism_model::{Float, Tensor};
use prism_store::npy;

/// One fixture case.
pub struct OpCase {
    /// `<group>/<name>`
    pub id: String,
    pub onnx: PathBuf,
    /// Expected error substring (the model must be refused).
    pub error: Option<String>,
    /// Whether the gradient at float inputs is checked.
    pub grad: bool,
    /// Per input: its `.npy` path and whether it holds integers (token ids, indices, masks).
    pub inputs: Vec<(PathBuf, bool)>,
    /// onnxruntime's outputs, in order.
    pub outputs: Vec<PathBuf>,
}

impl OpCase {
    /// The inputs as `T` (integers carried exactly).
    pub fn read_inputs<T: Float>(&self) -> Vec<Tensor<T>> {
        self.inputs
            .iter()
            .map(|(p, _)| npy::read_float::<T>(p).unwrap_or_else(|e| panic!("{}: {e}", self.id)))
            .collect()
    }

    /// onnxruntime's outputs as `T`.
    pub fn read_outputs<T: Float>(&self) -> Vec<Tensor<T>> {
        self.outputs
            .iter()
            .map(|p| npy::read_float::<T>(p).unwrap_or_else(|e| panic!("{}: {e}", self.id)))
            .collect()
    }
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/ops")
}

/// Every case of every group, sorted by id.
pub fn cases() -> Vec<OpCase> {
    let mut out = Vec::new();
    let mut groups: Vec<PathBuf> = std::fs::read_dir(root())
        .expect("tests/fixtures/ops exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_dir())
        .collect();
    groups.sort();
    for g in groups {
        let group = g.file_name().unwrap().to_string_lossy().to_string();
        let mut jsons: Vec<PathBuf> = std::fs::read_dir(&g)
            .expect("group dir")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        jsons.sort();
        for j in jsons {
            let name = j.file_stem().unwrap().to_string_lossy().to_string();
            let meta: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&j).expect("json")).expect("json");
            let inputs = meta["inputs"]
                .as_array()
                .expect("inputs")
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let dtype = m["dtype"].as_str().expect("dtype");
                    (
                        g.join(format!("{name}.in{i}.npy")),
                        !dtype.starts_with("float"),
                    )
                })
                .collect();
            let n_out = meta["outputs"].as_array().map_or(0, Vec::len);
            out.push(OpCase {
                id: format!("{group}/{name}"),
                onnx: g.join(format!("{name}.onnx")),
                error: meta["error"].as_str().map(str::to_string),
                grad: meta["grad"].as_bool().unwrap_or(false),
                inputs,
                outputs: (0..n_out)
                    .map(|i| g.join(format!("{name}.out{i}.npy")))
                    .collect(),
            });
        }
    }
    out
}

/// max |a − b| / max(max |b|, 1e-6): the scaled max error of the acceptance criteria.
pub fn scaled_error<T: Float>(a: &Tensor<T>, b: &Tensor<T>) -> f64 {
    let scale = b
        .data()
        .iter()
        .fold(0f64, |m, v| m.max(v.f64().abs()))
        .max(1e-6);
    a.data()
        .iter()
        .zip(b.data())
        .map(|(x, y)| {
            let (x, y) = (x.f64(), y.f64());
            if x == y {
                0.0 // equal infinities
            } else {
                (x - y).abs()
            }
        })
        .fold(
            0f64,
            |m, d| if d.is_nan() { f64::INFINITY } else { m.max(d) },
        )
        / scale
}
