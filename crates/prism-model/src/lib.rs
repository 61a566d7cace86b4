//! # prism-model
//!
//! ONNX models as a typed graph IR, with shape inference and fast CPU forward execution.
//!
//! This crate is Prism's foundation: it loads a model exported from PyTorch, TensorFlow or JAX
//! at run time ([`Model::load`]), validates it, specialises it to concrete input shapes (folding
//! the shape arithmetic exporters emit) and runs it forward in f32 or f64 on all cores, keeping
//! on request the intermediate tensors that attribution needs ([`Keep::NodeInputs`]). Its
//! kernels ([`kernels`]) include the input-gradients of convolution and pooling, which the
//! attribution crate builds its propagation rules on.
//!
//! The [`backend`] module is the seam between algorithms and hardware: the [`Backend`] trait
//! names every tensor operation the forward pass and the attribution rules compute (with
//! element-wise arithmetic as data, [`backend::Map`] and [`backend::Zip`], and an associated
//! tensor type so a GPU backend can keep tensors on the device); [`Cpu`] is its implementation
//! on the kernels, bit-identical to calling them directly.
//!
//! It knows nothing of attribution, datasets or files other than `.onnx`.
//!
//! ```no_run
//! use prism_model::{Model, Tensor};
//! let model = Model::load("model.onnx".as_ref())?;
//! let x = Tensor::<f32>::zeros(&[8, 3, 224, 224]);
//! let logits = model.forward(vec![x])?;
//! println!("{:?}", logits[0].shape());
//! # Ok::<(), prism_model::ModelError>(())
//! ```

pub mod backend;
pub mod batch;
pub mod einsum;
pub mod error;
pub mod exec;
pub mod finite;
mod fusion;
pub mod graph;
pub mod kernels;
pub mod onnx;
pub mod op;
pub mod shape;
mod specialize;
pub mod tensor;

use std::any::Any;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub use backend::{Backend, Cpu};
pub use batch::{split_batches, BatchDone, Flow};
pub use error::{ModelError, Result};
pub use exec::{Executor, Keep, Trace};
pub use finite::{NonFinite, NonFiniteReport};
pub use graph::{Dim, ElemType, Graph, Node, NodeId, Source, Value, ValueId};
pub use op::{Op, OpGroup};
pub use tensor::{Constant, DType, Float, Tensor};

type ExecutorKey = (Vec<Vec<usize>>, DType);

/// A loaded model: its graph as in the file, plus caches of specialised graphs and executors
/// per input shape (a dataset run sees one or two batch shapes).
pub struct Model {
    graph: Graph,
    path: PathBuf,
    executors: Mutex<HashMap<ExecutorKey, Arc<dyn Any + Send + Sync>>>,
    /// Whether non-finite inputs and results are allowed ([`NonFinite::Allow`]).
    allow_nonfinite: AtomicBool,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("path", &self.path)
            .field("nodes", &self.graph.nodes.len())
            .finish()
    }
}

impl Model {
    /// Loads and validates an ONNX file (external data files are read from its folder).
    pub fn load(path: &Path) -> Result<Self> {
        Ok(Model::from_graph(onnx::load(path)?, path.to_path_buf()))
    }

    /// Wraps an already built graph.
    pub fn from_graph(graph: Graph, path: PathBuf) -> Self {
        Model {
            graph,
            path,
            executors: Mutex::new(HashMap::new()),
            allow_nonfinite: AtomicBool::new(false),
        }
    }

    /// The graph as loaded (symbolic shapes, unfolded).
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What a NaN or ±Inf in an input or a result means for every run of this model and of
    /// what is computed on it (attribution, evaluation): an error (the default) or nothing.
    pub fn set_nonfinite(&self, policy: NonFinite) {
        self.allow_nonfinite
            .store(policy == NonFinite::Allow, Ordering::Relaxed);
    }

    /// The policy set by [`Self::set_nonfinite`].
    pub fn nonfinite(&self) -> NonFinite {
        NonFinite::allow_if(self.allow_nonfinite.load(Ordering::Relaxed))
    }

    /// The graph specialised to these input shapes (see [`Graph::specialize`]).
    pub fn specialize(&self, input_shapes: &[Vec<usize>]) -> Result<Arc<Graph>> {
        Ok(self.executor::<f32>(input_shapes)?.graph().clone())
    }

    /// An executor for these input shapes in `T`, built once and cached.
    pub fn executor<T: Float>(&self, input_shapes: &[Vec<usize>]) -> Result<Arc<Executor<T>>> {
        let key = (input_shapes.to_vec(), T::DTYPE);
        let mut cache = self.executors.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = cache
            .get(&key)
            .and_then(|e| e.clone().downcast::<Executor<T>>().ok())
        {
            return Ok(e);
        }
        // Reuse a specialisation made for another dtype.
        let graph = cache
            .iter()
            .find(|((shapes, _), _)| shapes.as_slice() == input_shapes)
            .and_then(|(_, e)| {
                e.clone()
                    .downcast::<Executor<f32>>()
                    .map(|e| e.graph().clone())
                    .or_else(|e| e.downcast::<Executor<f64>>().map(|e| e.graph().clone()))
                    .ok()
            });
        let graph = match graph {
            Some(g) => g,
            None => Arc::new(self.graph.specialize(input_shapes)?),
        };
        let exec = Arc::new(Executor::<T>::new(graph)?);
        cache.insert(key, exec.clone());
        Ok(exec)
    }

    /// Runs the model forward and returns its outputs.
    pub fn forward<T: Float>(&self, inputs: Vec<Tensor<T>>) -> Result<Vec<Arc<Tensor<T>>>> {
        Ok(self.trace(inputs, &Keep::Outputs)?.outputs)
    }

    /// Runs the model forward keeping the tensors `keep` asks for.
    pub fn trace<T: Float>(&self, inputs: Vec<Tensor<T>>, keep: &Keep) -> Result<Trace<T>> {
        let shapes: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape().to_vec()).collect();
        self.executor::<T>(&shapes)?
            .run_with(inputs, keep, self.nonfinite())
    }
}
