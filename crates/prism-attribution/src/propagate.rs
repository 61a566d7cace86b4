//! The backward sweep: relevance from the outputs to the inputs, node by node in reverse
//! topological order; contributions to a tensor read by several nodes are summed.

use prism_model::kernels::elementwise::broadcast_map;
use prism_model::op::{Op, UnaryOp};
use prism_model::{Executor, Float, Graph, Tensor, Trace, ValueId};

use crate::error::{AttributionError, Result};
use crate::linear::{self, Linear};
use crate::rule::Rule;
use crate::vjp::vjp;

fn add_into<T: Float>(slot: &mut Option<Tensor<T>>, t: Tensor<T>) {
    match slot {
        Some(acc) => acc
            .data_mut()
            .iter_mut()
            .zip(t.data())
            .for_each(|(a, &b)| *a += b),
        None => *slot = Some(t),
    }
}

/// Propagates `seeds` (relevance at given values, usually the graph output) back through the
/// graph with `rules[node]` (`None`: gradient). Returns the relevance at each graph input.
pub fn propagate<T: Float>(
    graph: &Graph,
    exec: &Executor<T>,
    trace: &mut Trace<T>,
    rules: &[Option<Rule>],
    seeds: Vec<(ValueId, Tensor<T>)>,
) -> Result<Vec<Tensor<T>>> {
    let mut rel: Vec<Option<Tensor<T>>> = vec![None; graph.values.len()];
    for (v, t) in seeds {
        add_into(&mut rel[v.0], t);
    }
    for (ni, node) in graph.nodes.iter().enumerate().rev() {
        // A node's output is read by its consumers, all processed before it: once the node is
        // done, its forward value is no longer needed and goes (peak memory falls as we go).
        let Some(r) = rel[node.outputs[0].0].take() else {
            for o in &node.outputs {
                trace.values[o.0] = None;
            }
            continue;
        };
        // Pass hands the relevance on unchanged: move it instead of copying.
        if rules[ni] == Some(Rule::Pass) {
            if let Some(x) = node.input(0) {
                if graph.shape(x) == Some(r.shape()) && exec.constant(x).is_none() {
                    add_into(&mut rel[x.0], r);
                    for o in &node.outputs {
                        trace.values[o.0] = None;
                    }
                    continue;
                }
            }
        }
        let fetch = |v: ValueId| {
            exec.constant(v)
                .or_else(|| trace.get(v))
                .map(|t| &**t)
                .ok_or_else(|| AttributionError::Node {
                    node: node.name.clone(),
                    op: node.op.type_name().into(),
                    detail: format!(
                        "tensor '{}' was not kept by the forward pass",
                        graph.value(v).name
                    ),
                })
        };
        let ins: Vec<&Tensor<T>> = node
            .inputs
            .iter()
            .flatten()
            .map(|v| fetch(*v))
            .collect::<Result<_>>()?;
        let y = fetch(node.outputs[0])?;
        let wanted: Vec<bool> = node
            .inputs
            .iter()
            .flatten()
            .map(|v| exec.constant(*v).is_none())
            .collect();
        let grads = apply(node, rules[ni].as_ref(), &ins, y, &r, &wanted)?;
        for (v, g) in node.inputs.iter().flatten().zip(grads) {
            if let Some(g) = g {
                if exec.constant(*v).is_none() {
                    add_into(&mut rel[v.0], g);
                }
            }
        }
        for o in &node.outputs {
            trace.values[o.0] = None;
        }
    }
    Ok(graph
        .inputs
        .iter()
        .map(|i| {
            rel[i.0]
                .take()
                .unwrap_or_else(|| Tensor::zeros(graph.shape(*i).unwrap_or_default()))
        })
        .collect())
}

fn node_err(node: &prism_model::Node, detail: String) -> AttributionError {
    AttributionError::Node {
        node: node.name.clone(),
        op: node.op.type_name().into(),
        detail,
    }
}

/// Maps the relevance `r` at a node's output to its inputs by `rule`.
fn apply<T: Float>(
    node: &prism_model::Node,
    rule: Option<&Rule>,
    ins: &[&Tensor<T>],
    y: &Tensor<T>,
    r: &Tensor<T>,
    wanted: &[bool],
) -> Result<Vec<Option<Tensor<T>>>> {
    let Some(rule) = rule else {
        return vjp(node, ins, y, r, wanted);
    };
    let x = ins[0];
    let first = |t: Tensor<T>| {
        let mut v = vec![Some(t)];
        v.extend((1..ins.len()).map(|_| None));
        Ok(v)
    };
    match rule {
        Rule::Gradient => vjp(node, ins, y, r, wanted),
        Rule::Pass => {
            if x.shape() != r.shape() {
                return Err(node_err(
                    node,
                    format!(
                        "the Pass rule needs equal input and output shapes, got {:?} and {:?}",
                        x.shape(),
                        r.shape()
                    ),
                ));
            }
            first(r.clone())
        }
        Rule::Norm { stabilizer }
            if matches!(node.op, Op::Binary(prism_model::op::BinaryOp::Add))
                && ins.iter().all(|t| t.shape() == y.shape()) =>
        {
            // Residual sum without broadcasting: R_i = x_i · R / stab(Σ x) in one pass each.
            let s = linear::ratio(r, y, stabilizer);
            Ok(ins.iter().map(|x| Some(linear::product(x, &s))).collect())
        }
        Rule::Norm { stabilizer } => {
            let s = linear::ratio(r, y, stabilizer);
            let grads = vjp(node, ins, y, &s, wanted)?;
            Ok(grads
                .into_iter()
                .zip(ins)
                .map(|(g, x)| g.map(|g| broadcast_map(&g, x, g.shape(), |a, b| a * b)))
                .collect())
        }
        Rule::ReluDeconvNet | Rule::ReluGuidedBackprop | Rule::ReluBetaSmooth { .. } => {
            if !matches!(node.op, Op::Unary(UnaryOp::Relu)) {
                return Err(node_err(
                    node,
                    format!("the {} rule applies to Relu nodes only", rule.name()),
                ));
            }
            let data: Vec<T> = match rule {
                Rule::ReluDeconvNet => r.data().iter().map(|&v| v.max(T::zero())).collect(),
                Rule::ReluGuidedBackprop => x
                    .data()
                    .iter()
                    .zip(r.data())
                    .map(|(&xv, &rv)| {
                        if xv > T::zero() && rv > T::zero() {
                            rv
                        } else {
                            T::zero()
                        }
                    })
                    .collect(),
                Rule::ReluBetaSmooth { beta } => x
                    .data()
                    .iter()
                    .zip(r.data())
                    .map(|(&xv, &rv)| rv / (T::one() + (-T::of(*beta) * xv).exp()))
                    .collect(),
                _ => unreachable!("matched above"),
            };
            first(Tensor::new(x.shape().to_vec(), data)?)
        }
        rule => {
            let lin = Linear::from_node(node, ins)?.ok_or_else(|| {
                node_err(
                    node,
                    format!(
                        "the {} rule needs a convolution or dense node with a weight",
                        rule.name()
                    ),
                )
            })?;
            first(linear::apply(rule, &lin, x, y, r)?)
        }
    }
}
