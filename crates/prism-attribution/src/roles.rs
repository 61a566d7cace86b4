//! What a node does in a transformer, read off the graph: the facts the transformer rule
//! groups ([`crate::Group::Nonlinearity`], [`crate::Group::Product`],
//! [`crate::Group::Normalization`]) and the rules `constant-gate` and `frozen-norm` need.
//!
//! Exporters do not keep PyTorch's modules: GELU arrives as five element-wise nodes, SiLU as
//! `x · sigmoid(x)`, an RMSNorm as `x · 1/√(mean(x²) + ε)`, attention as two `MatMul`s around a
//! `Softmax`. These facts recover the roles from the data flow alone:
//!
//! - an **element-wise function of one tensor**: a group of element-wise nodes whose computed
//!   inputs all trace back (through element-wise nodes) to a single tensor `x` and that combine
//!   two or more of those paths (`x · sigmoid(x)`, `½x(1 + erf(x/√2))`, the tanh-GELU). Its
//!   nodes are [`Roles::activation`]: the identity rule passes the relevance of its result to
//!   `x` whole, whichever path it takes inside;
//! - a **normaliser**: an operand of a `Mul`/`Div` that is broadcast over the other operand and
//!   is computed from a reduction (`ReduceMean`, `ReduceSum`, `ReduceL2`) through element-wise
//!   nodes — the `1/σ` of a decomposed LayerNorm or RMSNorm ([`Roles::normaliser`]);
//! - a **product** of two computed tensors that is neither of the above: `Q·Kᵀ`, `A·V`, a
//!   gating `Mul` ([`Roles::product`]); and its **gate**, the one operand (if exactly one) that
//!   is an attention weight (a `Softmax` output) or an activation's output, possibly reshaped
//!   or transposed on the way ([`Roles::gate`]).

use prism_model::op::{BinaryOp, CastTo, Op};
use prism_model::{Graph, OpGroup, ValueId};

/// Where the element-wise computation of a value starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Root {
    /// One tensor (the value itself when its producer is not element-wise).
    One(ValueId),
    /// Several tensors.
    Many,
}

/// The roles of a specialised graph's nodes, indexed like `graph.nodes`.
#[derive(Clone, Debug)]
pub struct Roles {
    /// Part of an element-wise function of one tensor that combines several paths from it.
    pub activation: Vec<bool>,
    /// A `Mul`/`Div` by a normaliser: the index of the normaliser operand.
    pub normaliser: Vec<Option<usize>>,
    /// A product of two or more computed tensors (not an activation, not a normalisation).
    pub product: Vec<bool>,
    /// For a product: the index of its one gate operand, if exactly one operand is a gate.
    pub gate: Vec<Option<usize>>,
    /// A Softmax whose output is an operand of a product: attention weights.
    pub attention: Vec<bool>,
}

/// Whether a node computes each output element from the same element of each computed input.
fn elementwise(graph: &Graph, ni: usize) -> bool {
    let node = &graph.nodes[ni];
    let kind = match &node.op {
        Op::Unary(_) | Op::ClipInputs | Op::Max | Op::Min | Op::Identity | Op::Dropout => true,
        Op::Binary(b) => matches!(
            b,
            BinaryOp::Add
                | BinaryOp::Sub
                | BinaryOp::Mul
                | BinaryOp::Div
                | BinaryOp::Pow
                | BinaryOp::PRelu
        ),
        Op::Cast { to } => matches!(to, CastTo::F32 | CastTo::F64),
        _ => false,
    };
    if !kind {
        return false;
    }
    let out = graph.shape(node.outputs[0]);
    out.is_some()
        && node
            .inputs
            .iter()
            .flatten()
            .filter(|v| graph.constant(**v).is_none())
            .all(|v| graph.shape(*v) == out)
}

fn computed(graph: &Graph, ni: usize) -> Vec<(usize, ValueId)> {
    graph.nodes[ni]
        .inputs
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| (i, v)))
        .filter(|(_, v)| graph.constant(*v).is_none())
        .collect()
}

/// Ops that only move, select or copy values (their z-rule is their gradient).
pub(crate) fn moves_values(op: &Op) -> bool {
    op.group() == OpGroup::Shape
        || matches!(
            op,
            Op::Transpose { .. }
                | Op::Slice { .. }
                | Op::Gather { .. }
                | Op::GatherElements { .. }
                | Op::GatherND { .. }
                | Op::Concat { .. }
                | Op::Split { .. }
                | Op::Expand { .. }
                | Op::Tile { .. }
                | Op::Where
                | Op::Trilu { .. }
                | Op::MaxPool { .. }
                | Op::GlobalMaxPool
                | Op::Cast {
                    to: CastTo::F32 | CastTo::F64
                }
        )
}

/// The node a value comes from, past nodes with one computed input that `through` accepts.
fn source(graph: &Graph, mut v: ValueId, through: impl Fn(usize) -> bool) -> Option<usize> {
    loop {
        let p = graph.producer(v)?.0;
        let ins = computed(graph, p);
        if through(p) && ins.len() == 1 {
            v = ins[0].1;
        } else {
            return Some(p);
        }
    }
}

impl Roles {
    /// Whether the graph holds attention (a Softmax weighting a product).
    pub fn has_attention(&self) -> bool {
        self.attention.iter().any(|a| *a)
    }

    /// What a transformer node is, for messages: its role and the rules that apply to it;
    /// `None` for nodes that are not specific to transformers.
    pub fn transformer_role(&self, graph: &Graph, ni: usize) -> Option<&'static str> {
        let op = &graph.nodes[ni].op;
        if self.product[ni] {
            Some("a product of two computed tensors: uniform (AttnLRP) or constant-gate (CP-LRP)")
        } else if self.normaliser[ni].is_some()
            || matches!(
                op,
                Op::LayerNormalization { .. }
                    | Op::GroupNormalization { .. }
                    | Op::InstanceNormalization { .. }
            )
        {
            Some("a normalisation: frozen-norm")
        } else if self.attention[ni] {
            Some("attention weights: norm (the softmax rule of AttnLRP)")
        } else {
            None
        }
    }

    pub fn of(graph: &Graph) -> Roles {
        let n = graph.nodes.len();
        let ew: Vec<bool> = (0..n).map(|i| elementwise(graph, i)).collect();
        // the element-wise root of every computed value
        let mut root: Vec<Option<Root>> = vec![None; graph.values.len()];
        for (ni, node) in graph.nodes.iter().enumerate() {
            let r = if ew[ni] {
                let mut r = None;
                for (_, v) in computed(graph, ni) {
                    let rv = root[v.0].unwrap_or(Root::One(v));
                    r = Some(match (r, rv) {
                        (None, x) => x,
                        (Some(Root::One(a)), Root::One(b)) if a == b => Root::One(a),
                        _ => Root::Many,
                    });
                }
                r
            } else {
                None
            };
            for o in &node.outputs {
                root[o.0] = Some(r.unwrap_or(Root::One(*o)));
            }
        }
        let root_of = |v: ValueId| root[v.0].unwrap_or(Root::One(v));

        // element-wise functions of one tensor combining several paths from it
        let mut activation = vec![false; n];
        for ni in 0..n {
            if !ew[ni] || computed(graph, ni).len() < 2 {
                continue;
            }
            let Root::One(x) = root_of(graph.nodes[ni].outputs[0]) else {
                continue;
            };
            // the node and every element-wise node between it and x
            let mut stack = vec![ni];
            while let Some(m) = stack.pop() {
                if activation[m] {
                    continue;
                }
                activation[m] = true;
                for (_, v) in computed(graph, m) {
                    if v == x {
                        continue;
                    }
                    if let Some(p) = graph.producer(v) {
                        if ew[p.0] {
                            stack.push(p.0);
                        }
                    }
                }
            }
        }

        // where a value comes from, past element-wise and value-moving nodes
        let origin = |v: ValueId| source(graph, v, |p| ew[p] || moves_values(&graph.nodes[p].op));
        let elems = |v: ValueId| graph.shape(v).map(|s| s.iter().product::<usize>());
        let norm_like = |v: ValueId, out: ValueId| {
            elems(v) < elems(out)
                && origin(v).is_some_and(|p| {
                    matches!(
                        graph.nodes[p].op,
                        Op::ReduceMean { .. } | Op::ReduceSum { .. } | Op::ReduceL2 { .. }
                    )
                })
        };
        let mut normaliser = vec![None; n];
        for (ni, node) in graph.nodes.iter().enumerate() {
            let c = computed(graph, ni);
            if c.len() != 2 || activation[ni] {
                continue;
            }
            let out = node.outputs[0];
            let (a, b) = (norm_like(c[0].1, out), norm_like(c[1].1, out));
            normaliser[ni] = match node.op {
                Op::Binary(BinaryOp::Mul) if a != b => Some(if a { c[0].0 } else { c[1].0 }),
                Op::Binary(BinaryOp::Div) if b && !a => Some(c[1].0),
                _ => None,
            };
        }

        // gates: attention weights and activation outputs, reshaped or not
        let gate_like = |v: ValueId| {
            source(graph, v, |p| moves_values(&graph.nodes[p].op)).is_some_and(|p| {
                activation[p]
                    || matches!(
                        graph.nodes[p].op,
                        Op::Softmax { .. } | Op::Unary(_) | Op::ClipInputs
                    )
            })
        };
        let mut product = vec![false; n];
        let mut gate = vec![None; n];
        for (ni, node) in graph.nodes.iter().enumerate() {
            let c = computed(graph, ni);
            let multiplies = matches!(
                node.op,
                Op::Binary(BinaryOp::Mul) | Op::MatMul | Op::Gemm { .. } | Op::Einsum(_)
            );
            if !multiplies || c.len() < 2 || activation[ni] || normaliser[ni].is_some() {
                continue;
            }
            product[ni] = true;
            let gates: Vec<usize> = c
                .iter()
                .filter(|(_, v)| gate_like(*v))
                .map(|(i, _)| *i)
                .collect();
            if gates.len() == 1 && c.len() == 2 {
                gate[ni] = Some(gates[0]);
            }
        }
        // Softmax outputs that weight a product (possibly reshaped on the way)
        let mut attention = vec![false; n];
        for ni in (0..n).filter(|&ni| product[ni]) {
            for (_, v) in computed(graph, ni) {
                if let Some(p) = source(graph, v, |p| moves_values(&graph.nodes[p].op)) {
                    if matches!(graph.nodes[p].op, Op::Softmax { .. }) {
                        attention[p] = true;
                    }
                }
            }
        }
        Roles {
            activation,
            normaliser,
            product,
            gate,
            attention,
        }
    }
}
