//! The graph IR: named values and nodes in topological order.
//!
//! A [`Graph`] as loaded mirrors the ONNX file: some shapes are symbolic (a batch dimension
//! named `N`), and exporters' shape arithmetic (`Shape → Gather → Unsqueeze → Concat → Reshape`)
//! is still present. [`Graph::specialize`] binds concrete input shapes, folds every value that
//! can be computed without the input, resolves constant operator inputs into attributes, infers
//! every shape and drops dead code. Execution and attribution work on specialised graphs.

use std::collections::HashMap;

use crate::error::{ModelError, Result};
use crate::op::Op;
use crate::tensor::Constant;

/// Index of a value (tensor) in [`Graph::values`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub usize);

/// Index of a node in [`Graph::nodes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub usize);

/// One dimension of a declared input shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    Fixed(usize),
    /// A named (or unnamed, `?`) dimension bound when the graph is specialised.
    Symbolic(String),
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Fixed(d) => write!(f, "{d}"),
            Dim::Symbolic(s) => f.write_str(s),
        }
    }
}

/// Element type of a graph input as declared in the model file.
///
/// Run-time tensors are all float (`f32` or `f64`): integer and boolean inputs (token ids,
/// attention masks) are carried in the float type exactly, booleans as 0/1, and checked at the
/// boundary ([`crate::Tensor::from_ints`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ElemType {
    Float32,
    Float64,
    Int64,
    Int32,
    Bool,
}

impl ElemType {
    /// numpy's name of the type (`float32`, `int64`, `bool`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ElemType::Float32 => "float32",
            ElemType::Float64 => "float64",
            ElemType::Int64 => "int64",
            ElemType::Int32 => "int32",
            ElemType::Bool => "bool",
        }
    }

    /// Whether values of this type are integers (token ids, masks, booleans).
    pub fn is_integer(self) -> bool {
        !matches!(self, ElemType::Float32 | ElemType::Float64)
    }
}

impl std::fmt::Display for ElemType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a value comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A graph input, with its declared shape and element type.
    Input(Vec<Dim>, ElemType),
    /// A constant: an initializer, a `Constant` node or a folded value.
    Constant(Constant),
    /// Output `index` of node `node`.
    Node { node: NodeId, index: usize },
}

/// A named tensor of the graph.
#[derive(Clone, Debug)]
pub struct Value {
    pub name: String,
    pub source: Source,
    /// Concrete shape; always known in a specialised graph.
    pub shape: Option<Vec<usize>>,
}

/// One operator application.
#[derive(Clone, Debug)]
pub struct Node {
    /// The ONNX node name (or `<op>_<index>` when the file has none).
    pub name: String,
    pub op: Op,
    /// Inputs in ONNX order; `None` for an omitted optional input.
    pub inputs: Vec<Option<ValueId>>,
    pub outputs: Vec<ValueId>,
}

impl Node {
    /// Input `i` when present.
    pub fn input(&self, i: usize) -> Option<ValueId> {
        self.inputs.get(i).copied().flatten()
    }
}

/// A validated, topologically ordered computation graph.
#[derive(Clone, Debug)]
pub struct Graph {
    pub values: Vec<Value>,
    /// Nodes in topological order: every input of a node is defined before it.
    pub nodes: Vec<Node>,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
    /// The default-domain opset the model was exported with.
    pub opset: i64,
    /// Whether shapes are concrete and all constant computation is folded.
    pub specialized: bool,
}

impl Graph {
    pub fn value(&self, id: ValueId) -> &Value {
        &self.values[id.0]
    }
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0]
    }
    /// The constant behind a value, if it is one.
    pub fn constant(&self, id: ValueId) -> Option<&Constant> {
        match &self.values[id.0].source {
            Source::Constant(c) => Some(c),
            _ => None,
        }
    }
    /// The concrete shape of a value (specialised graphs know them all).
    pub fn shape(&self, id: ValueId) -> Option<&[usize]> {
        self.values[id.0].shape.as_deref()
    }
    /// Finds a value by name.
    pub fn find_value(&self, name: &str) -> Option<ValueId> {
        self.values.iter().position(|v| v.name == name).map(ValueId)
    }
    /// Finds a node by name.
    pub fn find_node(&self, name: &str) -> Option<NodeId> {
        self.nodes.iter().position(|n| n.name == name).map(NodeId)
    }
    /// The node producing a value, if it is computed.
    pub fn producer(&self, id: ValueId) -> Option<NodeId> {
        match self.values[id.0].source {
            Source::Node { node, .. } => Some(node),
            _ => None,
        }
    }
    /// For each value, the nodes that read it (in topological order).
    pub fn consumers(&self) -> Vec<Vec<NodeId>> {
        let mut out = vec![Vec::new(); self.values.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            for v in n.inputs.iter().flatten() {
                if !out[v.0].contains(&NodeId(i)) {
                    out[v.0].push(NodeId(i));
                }
            }
        }
        out
    }
    /// Declared shape of graph input `i`.
    pub fn input_dims(&self, i: usize) -> &[Dim] {
        match &self.values[self.inputs[i].0].source {
            Source::Input(d, _) => d,
            _ => &[],
        }
    }
    /// Declared element type of graph input `i`.
    pub fn input_type(&self, i: usize) -> ElemType {
        match &self.values[self.inputs[i].0].source {
            Source::Input(_, t) => *t,
            _ => ElemType::Float32,
        }
    }
    /// Index of the graph input called `name`.
    pub fn input_index(&self, name: &str) -> Option<usize> {
        self.inputs
            .iter()
            .position(|v| self.values[v.0].name == name)
    }
    /// Number of parameters: elements of float constants read by nodes.
    pub fn parameter_count(&self) -> usize {
        let mut seen = vec![false; self.values.len()];
        let mut n = 0;
        for node in &self.nodes {
            for v in node.inputs.iter().flatten() {
                if let Some(c) = self.constant(*v) {
                    if !seen[v.0] && c.dtype() != crate::DType::I64 {
                        seen[v.0] = true;
                        n += c.len();
                    }
                }
            }
        }
        n
    }

    /// Checks the invariants every stage relies on: each node input is defined before the node
    /// reads it, each value has one definition, and outputs exist.
    pub fn validate(&self) -> Result<()> {
        for (i, n) in self.nodes.iter().enumerate() {
            for v in n.inputs.iter().flatten() {
                if v.0 >= self.values.len() {
                    return Err(ModelError::node(
                        &n.name,
                        n.op.type_name(),
                        "input out of range",
                    ));
                }
                if let Source::Node { node, .. } = self.values[v.0].source {
                    if node.0 >= i {
                        return Err(ModelError::node(
                            &n.name,
                            n.op.type_name(),
                            format!("reads '{}' before it is computed", self.values[v.0].name),
                        ));
                    }
                }
            }
            for (k, v) in n.outputs.iter().enumerate() {
                match self.values[v.0].source {
                    Source::Node { node, index } if node.0 == i && index == k => {}
                    _ => {
                        return Err(ModelError::node(
                            &n.name,
                            n.op.type_name(),
                            format!("output '{}' has another definition", self.values[v.0].name),
                        ))
                    }
                }
            }
        }
        Ok(())
    }
}

/// Orders nodes so that producers come before consumers (Kahn's algorithm, stable with respect
/// to file order). Fails on a cycle, naming the nodes on it.
pub(crate) fn topological_order(
    names: &[String],
    deps: &[Vec<usize>],
) -> std::result::Result<Vec<usize>, Vec<String>> {
    let n = deps.len();
    let mut indegree = vec![0usize; n];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, d) in deps.iter().enumerate() {
        for &p in d {
            indegree[i] += 1;
            users[p].push(i);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> =
        (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &u in &users[i] {
            indegree[u] -= 1;
            if indegree[u] == 0 {
                ready.insert(u);
            }
        }
    }
    if order.len() == n {
        Ok(order)
    } else {
        Err((0..n)
            .filter(|&i| indegree[i] > 0)
            .map(|i| names[i].clone())
            .collect())
    }
}

/// Maps value names to ids while a graph is being built.
#[derive(Default)]
pub(crate) struct ValueTable {
    pub values: Vec<Value>,
    pub by_name: HashMap<String, ValueId>,
}

impl ValueTable {
    pub fn add(&mut self, value: Value) -> ValueId {
        let id = ValueId(self.values.len());
        self.by_name.insert(value.name.clone(), id);
        self.values.push(value);
        id
    }
}
