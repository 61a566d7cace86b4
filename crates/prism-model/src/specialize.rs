//! Specialisation: binding concrete input shapes, folding constants, resolving parameter
//! inputs into attributes, inferring shapes and removing dead code.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{ModelError, Result};
use crate::exec::{run_node, run_node_i64};
use crate::graph::{Dim, Graph, Node, NodeId, Source, Value, ValueId};
use crate::op::{BinaryOp, CastTo, Op, ResizeTarget, UnaryOp};
use crate::shape::infer;
use crate::tensor::{Constant, DType, Float, Tensor};

/// The most elements one constant that specialisation folds may have (`ConstantOfShape`,
/// `Range` and any node whose inputs are all constant): 2²⁷, 1 GiB of `i64`. A model file
/// chooses these sizes, so a larger one is refused rather than allocated (a declared 2⁶⁰ would
/// abort).
pub const MAX_FOLDED_ELEMENTS: usize = 1 << 27;

/// The elements specialisation may fold in all: [`MAX_FOLDED_ELEMENTS`] plus twice the
/// elements of the model's own constants (initializers and `Constant` nodes). One large
/// constant, or the model's weights transposed or cast once or twice, fit; a file of a few KB
/// that chains `ConstantOfShape → Concat → Reshape → …` on 2²⁶-element tensors does not (each
/// within the per-constant cap, together several GiB).
#[derive(Debug)]
struct FoldBudget {
    left: usize,
    total: usize,
}

impl FoldBudget {
    fn for_graph(g: &Graph) -> FoldBudget {
        let own: usize = g
            .values
            .iter()
            .filter_map(|v| match &v.source {
                Source::Constant(c) => Some(c.len()),
                _ => None,
            })
            .chain(g.nodes.iter().filter_map(|n| match &n.op {
                Op::Constant(c) => Some(c.len()),
                _ => None,
            }))
            .fold(0usize, usize::saturating_add);
        let total = MAX_FOLDED_ELEMENTS.saturating_add(own.saturating_mul(2));
        FoldBudget { left: total, total }
    }

    /// Charges the element count of the outputs a node would fold to, checked against
    /// [`MAX_FOLDED_ELEMENTS`] per constant, the budget in all, and for overflow, before
    /// anything is allocated; returns the count.
    fn charge(&mut self, node: &Node, shapes: &[Vec<usize>]) -> Result<usize> {
        let err = |detail: String| {
            ModelError::node(
                &node.name,
                node.op.type_name(),
                format!("{detail} (the model file or a large input shape asks for it)"),
            )
        };
        let mut total = 0usize;
        for s in shapes {
            let n = s
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .filter(|&n| n <= MAX_FOLDED_ELEMENTS);
            total = match n.and_then(|n| total.checked_add(n)) {
                Some(t) if t <= MAX_FOLDED_ELEMENTS => t,
                _ => {
                    return Err(err(format!(
                        "its constant output of shape {s:?} has more than \
                         {MAX_FOLDED_ELEMENTS} elements, the most Prism folds into one constant"
                    )))
                }
            };
        }
        if total > self.left {
            return Err(err(format!(
                "folding its constant output ({total} elements) would take the constants \
                 folded for this model past their budget of {} elements ({MAX_FOLDED_ELEMENTS} \
                 plus twice the {} elements of the model's own constants)",
                self.total,
                (self.total - MAX_FOLDED_ELEMENTS) / 2
            )));
        }
        self.left -= total;
        Ok(total)
    }
}

impl Graph {
    /// Specialises the graph to concrete input shapes (one per graph input).
    ///
    /// Every value that does not depend on the inputs' *values* is folded to a constant (the
    /// exporters' `Shape → Gather → Concat → Reshape` chains included), operator parameters
    /// given as constant inputs become attributes, every shape is inferred and checked, and
    /// nodes that no output depends on are removed.
    pub fn specialize(&self, input_shapes: &[Vec<usize>]) -> Result<Graph> {
        if input_shapes.len() != self.inputs.len() {
            return Err(ModelError::Invalid(format!(
                "the model takes {} input(s) ({}), got {}",
                self.inputs.len(),
                self.inputs
                    .iter()
                    .map(|i| self.value(*i).name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                input_shapes.len()
            )));
        }
        let mut values = self.values.clone();
        let mut symbols: HashMap<String, usize> = HashMap::new();
        for (i, (id, shape)) in self.inputs.iter().zip(input_shapes).enumerate() {
            let dims = self.input_dims(i);
            let name = &self.value(*id).name;
            let declared = dims
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let mismatch = || ModelError::Input {
                name: name.clone(),
                detail: format!("expects shape [{declared}], got {shape:?}"),
            };
            if !dims.is_empty() && dims.len() != shape.len() {
                return Err(mismatch());
            }
            for (d, &s) in dims.iter().zip(shape) {
                match d {
                    Dim::Fixed(f) if *f != s => return Err(mismatch()),
                    Dim::Symbolic(sym)
                        if sym != "?" && *symbols.entry(sym.clone()).or_insert(s) != s =>
                    {
                        return Err(mismatch());
                    }
                    _ => {}
                }
            }
            if shape.contains(&0) {
                return Err(ModelError::Input {
                    name: name.clone(),
                    detail: format!("shape {shape:?} has an empty dimension"),
                });
            }
            values[id.0].shape = Some(shape.clone());
        }

        let mut budget = FoldBudget::for_graph(self);
        let mut nodes: Vec<Node> = Vec::new();
        for node in &self.nodes {
            let t = node.op.type_name();
            let constant = |v: ValueId| match &values[v.0].source {
                Source::Constant(c) => Some(c.clone()),
                _ => None,
            };
            if let Op::Constant(c) = &node.op {
                set_constant(&mut values, node.outputs[0], c.clone());
                continue;
            }
            let (op, kept) = resolve(node, &constant)?;
            let shapes: Vec<&[usize]> = kept
                .iter()
                .map(|v| {
                    values[v.0].shape.as_deref().ok_or_else(|| {
                        ModelError::node(
                            &node.name,
                            t,
                            format!("shape of input '{}' is unknown", values[v.0].name),
                        )
                    })
                })
                .collect::<Result<_>>()?;
            let fold_all = !kept.is_empty() && kept.iter().all(|v| constant(*v).is_some());
            if let Op::ConstantOfShape { value } = &op {
                let dims = node
                    .input(0)
                    .and_then(&constant)
                    .and_then(|c| c.to_i64())
                    .ok_or_else(|| {
                        ModelError::node(&node.name, t, "shape input must be constant")
                    })?;
                let dims: Vec<usize> = dims.iter().map(|&d| d.max(0) as usize).collect();
                let fill = value.to_f64().data().first().copied().unwrap_or(0.0);
                let n = budget.charge(node, std::slice::from_ref(&dims))?;
                let c = match value.dtype() {
                    DType::I64 => Constant::i64(Tensor::from_parts(dims, vec![fill as i64; n])),
                    DType::F64 => Constant::F64(Arc::new(Tensor::from_parts(dims, vec![fill; n]))),
                    DType::F32 => Constant::f32(Tensor::from_parts(dims, vec![fill as f32; n])),
                };
                set_constant(&mut values, node.outputs[0], c);
                continue;
            }
            if let Op::Range = &op {
                let c = range(node, &kept.iter().map(|v| constant(*v)).collect::<Vec<_>>())?;
                budget.charge(node, &[vec![c.len()]])?;
                set_constant(&mut values, node.outputs[0], c);
                continue;
            }
            let outs = infer(&node.name, &op, &shapes)?;
            if let Op::Shape { start, end } = &op {
                let (s, e) = crate::shape::shape_range(*start, *end, shapes[0].len());
                let dims: Vec<i64> = shapes[0][s..e].iter().map(|&d| d as i64).collect();
                set_constant(
                    &mut values,
                    node.outputs[0],
                    Constant::i64(Tensor::from_parts(vec![dims.len()], dims)),
                );
                continue;
            }
            if fold_all {
                budget.charge(node, &outs)?;
                let ins: Vec<Constant> = kept.iter().filter_map(|v| constant(*v)).collect();
                let folded = fold(node, &op, &ins, &outs)?;
                for (o, c) in node.outputs.iter().zip(folded) {
                    set_constant(&mut values, *o, c);
                }
                continue;
            }
            let pos = NodeId(nodes.len());
            for (k, (o, s)) in node.outputs.iter().zip(&outs).enumerate() {
                values[o.0].source = Source::Node {
                    node: pos,
                    index: k,
                };
                values[o.0].shape = Some(s.clone());
            }
            nodes.push(Node {
                name: node.name.clone(),
                op,
                inputs: kept.into_iter().map(Some).collect(),
                outputs: node.outputs.clone(),
            });
        }
        compact(
            values,
            nodes,
            self.inputs.clone(),
            self.outputs.clone(),
            self.opset,
        )
    }
}

impl Graph {
    /// Rebuilds a graph from edited parts (used by graph passes such as canonizers): node
    /// outputs get their sources from the node order, values no node or output needs are
    /// dropped, ids are renumbered, and the result is validated. `nodes` must be in
    /// topological order.
    pub fn from_parts(
        values: Vec<Value>,
        nodes: Vec<Node>,
        inputs: Vec<ValueId>,
        outputs: Vec<ValueId>,
        opset: i64,
    ) -> Result<Graph> {
        compact(values, nodes, inputs, outputs, opset)
    }
}

fn set_constant(values: &mut [Value], id: ValueId, c: Constant) {
    values[id.0].shape = Some(c.shape().to_vec());
    values[id.0].source = Source::Constant(c);
}

/// Resolves parameter inputs into attributes; returns the op and the data inputs it keeps.
fn resolve(
    node: &Node,
    constant: &dyn Fn(ValueId) -> Option<Constant>,
) -> Result<(Op, Vec<ValueId>)> {
    let t = node.op.type_name();
    let param = |i: usize, what: &str| -> Result<Option<Constant>> {
        match node.input(i) {
            None => Ok(None),
            Some(v) => constant(v).map(Some).ok_or_else(|| {
                ModelError::node(
                    &node.name,
                    t,
                    format!("its {what} input must be constant; Prism needs parameters that do not depend on the input values"),
                )
            }),
        }
    };
    let ints = |i: usize, what: &str| -> Result<Option<Vec<i64>>> {
        match param(i, what)? {
            None => Ok(None),
            Some(c) => c
                .to_i64()
                .map(Some)
                .ok_or_else(|| ModelError::node(&node.name, t, format!("{what} must be integers"))),
        }
    };
    let first = || -> Result<Vec<ValueId>> {
        node.input(0)
            .map(|v| vec![v])
            .ok_or_else(|| ModelError::node(&node.name, t, "has no data input"))
    };
    let op = match &node.op {
        Op::ClipInputs => {
            let min = param(1, "min")?
                .and_then(|c| c.scalar_f64())
                .unwrap_or(f64::NEG_INFINITY);
            let max = param(2, "max")?
                .and_then(|c| c.scalar_f64())
                .unwrap_or(f64::INFINITY);
            Op::Unary(UnaryOp::Clip { min, max })
        }
        Op::Reshape {
            shape: None,
            allowzero,
        } => Op::Reshape {
            shape: Some(
                ints(1, "shape")?
                    .ok_or_else(|| ModelError::node(&node.name, t, "missing shape input"))?,
            ),
            allowzero: *allowzero,
        },
        Op::Squeeze { axes: None } => Op::Squeeze {
            axes: ints(1, "axes")?,
        },
        Op::Unsqueeze { axes: None } => Op::Unsqueeze {
            axes: Some(
                ints(1, "axes")?
                    .ok_or_else(|| ModelError::node(&node.name, t, "missing axes input"))?,
            ),
        },
        Op::ReduceMean {
            axes: None,
            keepdims,
            noop_with_empty_axes,
        } => Op::ReduceMean {
            axes: ints(1, "axes")?,
            keepdims: *keepdims,
            noop_with_empty_axes: *noop_with_empty_axes,
        },
        Op::ReduceSum {
            axes: None,
            keepdims,
            noop_with_empty_axes,
        } => Op::ReduceSum {
            axes: ints(1, "axes")?,
            keepdims: *keepdims,
            noop_with_empty_axes: *noop_with_empty_axes,
        },
        Op::ReduceL2 {
            axes: None,
            keepdims,
            noop_with_empty_axes,
        } => Op::ReduceL2 {
            axes: ints(1, "axes")?,
            keepdims: *keepdims,
            noop_with_empty_axes: *noop_with_empty_axes,
        },
        Op::Pad {
            mode, pads: None, ..
        } => Op::Pad {
            mode: *mode,
            pads: Some(
                ints(1, "pads")?
                    .ok_or_else(|| ModelError::node(&node.name, t, "missing pads input"))?,
            ),
            value: param(2, "constant_value")?
                .and_then(|c| c.scalar_f64())
                .unwrap_or(0.0),
            axes: ints(3, "axes")?,
        },
        Op::Slice { starts: None, .. } => Op::Slice {
            starts: ints(1, "starts")?,
            ends: ints(2, "ends")?,
            axes: ints(3, "axes")?,
            steps: ints(4, "steps")?,
        },
        Op::Expand { shape: None } => Op::Expand {
            shape: ints(2 - 1, "shape")?,
        },
        Op::Gather {
            axis,
            indices: None,
        } => {
            let iv = node
                .input(1)
                .ok_or_else(|| ModelError::node(&node.name, t, "missing indices input"))?;
            let Some(idx) = constant(iv) else {
                // Run-time indices (an embedding lookup of token ids): a second data input.
                return Ok((node.op.clone(), vec![first()?[0], iv]));
            };
            let data = idx
                .to_i64()
                .ok_or_else(|| ModelError::node(&node.name, t, "indices must be integers"))?;
            Op::Gather {
                axis: *axis,
                indices: Some(Arc::new(Tensor::from_parts(idx.shape().to_vec(), data))),
            }
        }
        Op::Split {
            axis,
            split,
            outputs,
            uneven,
        } => Op::Split {
            axis: *axis,
            split: match ints(1, "split")? {
                Some(s) => Some(s),
                None => split.clone(),
            },
            outputs: *outputs,
            uneven: *uneven,
        },
        Op::Trilu { upper, k } => Op::Trilu {
            upper: *upper,
            k: match ints(1, "k")? {
                Some(v) if v.len() == 1 => v[0],
                Some(v) => {
                    return Err(ModelError::node(
                        &node.name,
                        t,
                        format!("k must be a scalar, got {} values", v.len()),
                    ))
                }
                None => *k,
            },
        },
        Op::Tile { repeats: None } => Op::Tile {
            repeats: Some(
                ints(1, "repeats")?
                    .ok_or_else(|| ModelError::node(&node.name, t, "missing repeats input"))?,
            ),
        },
        Op::CumSum {
            axis: None,
            exclusive,
            reverse,
        } => {
            let axis = ints(1, "axis")?
                .ok_or_else(|| ModelError::node(&node.name, t, "missing axis input"))?;
            if axis.len() != 1 {
                return Err(ModelError::node(
                    &node.name,
                    t,
                    format!("axis must be a scalar, got {} values", axis.len()),
                ));
            }
            Op::CumSum {
                axis: Some(axis[0]),
                exclusive: *exclusive,
                reverse: *reverse,
            }
        }
        Op::Resize {
            target: None,
            mode,
            coord,
            axes,
            keep_aspect,
            legacy_inputs,
            upsample,
        } => {
            // An empty tensor stands for an absent optional input (opset 11–12 exports).
            let present = |c: Option<Constant>| c.filter(|c| !c.is_empty());
            let (scales, sizes) = if *legacy_inputs {
                (present(param(1, "scales")?), None)
            } else {
                (present(param(2, "scales")?), present(param(3, "sizes")?))
            };
            let target = match (scales, sizes) {
                (Some(_), Some(_)) => {
                    return Err(ModelError::node(
                        &node.name,
                        t,
                        "gives both scales and sizes; ONNX allows only one",
                    ))
                }
                (Some(sc), None) => {
                    ResizeTarget::Scales(sc.to_f64().data().iter().map(|&v| v as f32).collect())
                }
                (None, Some(sz)) => ResizeTarget::Sizes(
                    sz.to_i64()
                        .ok_or_else(|| ModelError::node(&node.name, t, "sizes must be integers"))?,
                ),
                (None, None) => {
                    return Err(ModelError::node(
                        &node.name,
                        t,
                        "has neither scales nor sizes",
                    ))
                }
            };
            Op::Resize {
                target: Some(target),
                mode: *mode,
                coord: *coord,
                axes: axes.clone(),
                keep_aspect: *keep_aspect,
                legacy_inputs: *legacy_inputs,
                upsample: *upsample,
            }
        }
        Op::ConstantOfShape { .. } => return Ok((node.op.clone(), vec![])),
        op @ (Op::Dropout
        | Op::Cast { .. }
        | Op::Identity
        | Op::Shape { .. }
        | Op::Flatten { .. }
        | Op::Transpose { .. }) => return Ok((op.clone(), first()?)),
        op => {
            let mut kept = Vec::new();
            let mut gap = false;
            for i in &node.inputs {
                match i {
                    Some(v) if gap => {
                        return Err(ModelError::node(
                            &node.name,
                            t,
                            format!(
                                "omits an optional input before '{v:?}', which is not supported"
                            ),
                        ))
                    }
                    Some(v) => kept.push(*v),
                    None => gap = true,
                }
            }
            return Ok((op.clone(), kept));
        }
    };
    Ok((op, first()?))
}

/// Evaluates a node whose inputs are all constant.
fn fold(node: &Node, op: &Op, ins: &[Constant], outs: &[Vec<usize>]) -> Result<Vec<Constant>> {
    let t = node.op.type_name();
    if let Op::Cast { to } = op {
        let c = &ins[0];
        return Ok(vec![match to {
            // `as` truncates toward zero (and saturates), as ONNX Runtime's float→int casts do
            // for values in range.
            CastTo::Int => match c {
                Constant::I64(_) => c.clone(),
                _ => Constant::i64(c.to_f64().map(|&v| v as i64)),
            },
            CastTo::Bool => Constant::i64(c.to_f64().map(|&v| (v != 0.0) as i64)),
            CastTo::F32 => Constant::f32(c.to_f64().cast()),
            CastTo::F64 => Constant::F64(Arc::new(c.to_f64())),
        }]);
    }
    // An integer base keeps its type under a float exponent (ONNX Runtime computes the power
    // in double and truncates).
    if let (Op::Binary(BinaryOp::Pow), Some(Constant::I64(_)), Some(e)) =
        (op, ins.first(), ins.get(1))
    {
        if e.dtype() != DType::I64 {
            let (base, e) = (ins[0].to_f64(), e.to_f64());
            let y = run_node::<f64>(node, op, &[&base, &e], outs)?;
            return Ok(y
                .into_iter()
                .map(|t| Constant::i64(t.map(|&v| v as i64)))
                .collect());
        }
    }
    if let (Op::Split { .. }, [Constant::I64(x)]) = (op, ins) {
        // Integer pieces (shape arithmetic): the float kernel's slices, on integers.
        return Ok(crate::shape::split_pieces(op, x.shape())
            .map_err(|e| ModelError::node(&node.name, t, e))?
            .iter()
            .map(|spec| Constant::i64(crate::kernels::movement::slice(x, spec)))
            .collect());
    }
    if ins.iter().all(|c| c.dtype() == DType::I64) {
        let ts: Vec<&Tensor<i64>> = ins
            .iter()
            .filter_map(|c| match c {
                Constant::I64(t) => Some(&**t),
                _ => None,
            })
            .collect();
        if let Some(y) = run_node_i64(op, &ts, outs) {
            return Ok(vec![Constant::i64(y)]);
        }
        // Index ops on integer constants return `None` above on bad indices: say why.
        if let (
            Op::Gather { indices: None, .. }
            | Op::GatherElements { .. }
            | Op::GatherND { .. }
            | Op::ScatterND { .. },
            Some(idx),
        ) = (op, ts.get(1))
        {
            return Err(ModelError::node(
                &node.name,
                t,
                format!(
                    "indices of shape {:?} do not fit the data of shape {:?} (an index is out of range or the shapes disagree)",
                    idx.shape(),
                    ts[0].shape()
                ),
            ));
        }
    }
    fn float<T: Float>(
        node: &Node,
        op: &Op,
        ins: &[Constant],
        outs: &[Vec<usize>],
    ) -> Result<Vec<Constant>> {
        let ts: Vec<Arc<Tensor<T>>> = ins.iter().map(|c| c.to_float::<T>()).collect();
        let refs: Vec<&Tensor<T>> = ts.iter().map(|t| &**t).collect();
        Ok(run_node(node, op, &refs, outs)?
            .into_iter()
            .map(T::into_constant)
            .collect())
    }
    let any_f64 = ins.iter().any(|c| c.dtype() == DType::F64);
    let any_float = ins.iter().any(|c| c.dtype() != DType::I64);
    if !any_float {
        return Err(ModelError::node(
            &node.name,
            t,
            "cannot be evaluated on integer tensors",
        ));
    }
    if any_f64 {
        float::<f64>(node, op, ins, outs)
    } else {
        float::<f32>(node, op, ins, outs)
    }
}

/// Folds a Range node: `⌈(limit − start) / delta⌉` values `start, start + delta, …`
/// (accumulated, as the ONNX definition does), integer when all three inputs are.
fn range(node: &Node, ins: &[Option<Constant>]) -> Result<Constant> {
    let t = node.op.type_name();
    let err = |d: &str| ModelError::node(&node.name, t, d);
    let [Some(start), Some(limit), Some(delta)] = ins else {
        return Err(err(
            "start, limit and delta must be constant (Range's output shape depends on their values)",
        ));
    };
    if [start, limit, delta].iter().any(|c| c.len() != 1) {
        return Err(err("start, limit and delta must be scalars"));
    }
    let scalar = |c: &Constant| c.to_f64().data()[0];
    let (s, l, d) = (scalar(start), scalar(limit), scalar(delta));
    if d == 0.0 {
        return Err(err("delta must not be zero"));
    }
    let n = ((l - s) / d).ceil().max(0.0);
    if !n.is_finite() || n > MAX_FOLDED_ELEMENTS as f64 {
        return Err(err(&format!(
            "the range has too many elements (more than {MAX_FOLDED_ELEMENTS}, the most Prism \
             folds into a constant)"
        )));
    }
    let n = n as usize;
    Ok(match (start, limit, delta) {
        (Constant::I64(s), Constant::I64(l), Constant::I64(d)) => {
            let (s, l, d) = (s.data()[0], l.data()[0], d.data()[0]);
            // Exact integer count: ⌈(l − s) / d⌉ without rounding through floats, in i128 so
            // that no start, limit or delta overflows.
            let (s, l, d) = (i128::from(s), i128::from(l), i128::from(d));
            let span = l - s;
            let n = if (span > 0) == (d > 0) && span != 0 {
                (span + d - d.signum()) / d
            } else {
                0
            };
            let n = usize::try_from(n).unwrap_or(0).min(MAX_FOLDED_ELEMENTS);
            // every element lies between start and limit, so fits in i64
            Constant::i64(Tensor::from_parts(
                vec![n],
                (0..n as i128).map(|i| (s + i * d) as i64).collect(),
            ))
        }
        _ if [start, limit, delta]
            .iter()
            .any(|c| c.dtype() == DType::F64) =>
        {
            let mut v = Vec::with_capacity(n);
            let mut x = s;
            for _ in 0..n {
                v.push(x);
                x += d;
            }
            Constant::F64(Arc::new(Tensor::from_parts(vec![n], v)))
        }
        _ => {
            let (mut x, d) = (s as f32, d as f32);
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(x);
                x += d;
            }
            Constant::f32(Tensor::from_parts(vec![n], v))
        }
    })
}

/// Drops dead nodes and unused values, renumbering what is left.
fn compact(
    values: Vec<Value>,
    nodes: Vec<Node>,
    inputs: Vec<ValueId>,
    outputs: Vec<ValueId>,
    opset: i64,
) -> Result<Graph> {
    let mut needed = vec![false; values.len()];
    for o in &outputs {
        needed[o.0] = true;
    }
    let mut live = vec![false; nodes.len()];
    for (i, n) in nodes.iter().enumerate().rev() {
        if n.outputs.iter().any(|o| needed[o.0]) {
            live[i] = true;
            for v in n.inputs.iter().flatten() {
                needed[v.0] = true;
            }
            for o in &n.outputs {
                needed[o.0] = true;
            }
        }
    }
    for i in &inputs {
        needed[i.0] = true;
    }
    let mut remap = vec![usize::MAX; values.len()];
    let mut new_values = Vec::new();
    for (i, v) in values.into_iter().enumerate() {
        if needed[i] {
            remap[i] = new_values.len();
            new_values.push(v);
        }
    }
    let id = |v: ValueId| ValueId(remap[v.0]);
    let mut new_nodes = Vec::new();
    for (n, keep) in nodes.into_iter().zip(live) {
        if !keep {
            continue;
        }
        let pos = NodeId(new_nodes.len());
        for (k, o) in n.outputs.iter().enumerate() {
            new_values[remap[o.0]].source = Source::Node {
                node: pos,
                index: k,
            };
        }
        new_nodes.push(Node {
            name: n.name,
            op: n.op,
            inputs: n.inputs.into_iter().map(|v| v.map(id)).collect(),
            outputs: n.outputs.into_iter().map(id).collect(),
        });
    }
    let g = Graph {
        values: new_values,
        nodes: new_nodes,
        inputs: inputs.into_iter().map(id).collect(),
        outputs: outputs.into_iter().map(id).collect(),
        opset,
        specialized: true,
    };
    g.validate()?;
    Ok(g)
}
