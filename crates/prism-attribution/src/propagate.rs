//! The backward sweep: relevance from the outputs to the inputs, node by node in reverse
//! topological order; contributions to a tensor read by several nodes are summed.
//!
//! The sweep runs on the [`Cpu`] backend, where the forward [`Executor`] keeps its tensors;
//! the rules themselves ([`apply`], [`linear`], [`vjp`]) are generic over the [`Backend`].

use prism_model::backend::{Backend, Cpu, Zip};
use prism_model::op::{BinaryOp, Op, UnaryOp};
use prism_model::{Executor, Float, Graph, Tensor, Trace, ValueId};

use crate::error::{AttributionError, Result};
use crate::linear::{self, Linear};
use crate::passes::ratio;
use crate::rule::Rule;
use crate::vjp::{vjp, vjp_outputs};

fn add_into<T: Float, B: Backend<T>>(
    b: &B,
    slot: &mut Option<B::Tensor>,
    t: B::Tensor,
) -> Result<()> {
    match slot {
        Some(acc) => b.zip_into(Zip::Add, acc, &t)?,
        None => *slot = Some(t),
    }
    Ok(())
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
    propagate_to(graph, exec, trace, rules, seeds, &graph.inputs)
}

/// [`propagate`], returning the relevance at the values `at` (graph inputs or computed tensors,
/// e.g. a token model's embedding output) instead of the inputs. The sweep stops at each of
/// them: nothing flows past a value in `at`, and it ends once all are reached.
pub fn propagate_to<T: Float>(
    graph: &Graph,
    exec: &Executor<T>,
    trace: &mut Trace<T>,
    rules: &[Option<Rule>],
    seeds: Vec<(ValueId, Tensor<T>)>,
    at: &[ValueId],
) -> Result<Vec<Tensor<T>>> {
    let b = &Cpu;
    let mut rel: Vec<Option<Tensor<T>>> = vec![None; graph.values.len()];
    for (v, t) in seeds {
        add_into(b, &mut rel[v.0], t)?;
    }
    let mut captured: Vec<Option<Option<Tensor<T>>>> = vec![None; at.len()];
    // When every value asked for is computed, the sweep ends at the last cut.
    let all_computed = at.iter().all(|v| graph.producer(*v).is_some());
    let mut remaining = at.len();
    for (ni, node) in graph.nodes.iter().enumerate().rev() {
        if node.outputs.iter().any(|o| at.contains(o)) {
            // A cut: the relevance here is complete (all readers ran); it flows no further.
            for (k, v) in at.iter().enumerate() {
                if node.outputs.contains(v) && captured[k].is_none() {
                    captured[k] = Some(rel[v.0].take());
                    remaining = remaining.saturating_sub(1);
                }
            }
            for o in &node.outputs {
                trace.values[o.0] = None;
            }
            if all_computed && remaining == 0 {
                break;
            }
            continue;
        }
        // A node's output is read by its consumers, all processed before it: once the node is
        // done, its forward value is no longer needed and goes (peak memory falls as we go).
        let mut rs: Vec<Option<Tensor<T>>> = node.outputs.iter().map(|o| rel[o.0].take()).collect();
        if rs.iter().all(Option::is_none) {
            for o in &node.outputs {
                trace.values[o.0] = None;
            }
            continue;
        }
        // Relevance at outputs after the first (Split's pieces, LayerNormalization's
        // statistics): the node's gradient from all its outputs at once.
        if rs.iter().skip(1).any(Option::is_some) {
            multi_output(graph, exec, trace, node, rules[ni].as_ref(), &rs, &mut rel)?;
            for o in &node.outputs {
                trace.values[o.0] = None;
            }
            continue;
        }
        let Some(r) = rs[0].take() else {
            continue;
        };
        // Pass hands the relevance on unchanged: move it instead of copying.
        if rules[ni] == Some(Rule::Pass) {
            if let Some(x) = node.input(0) {
                if graph.shape(x) == Some(r.shape()) && exec.constant(x).is_none() {
                    add_into(b, &mut rel[x.0], r)?;
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
        let grads = apply(b, node, rules[ni].as_ref(), &ins, y, &r, &wanted)?;
        for (v, g) in node.inputs.iter().flatten().zip(grads) {
            if let Some(g) = g {
                if exec.constant(*v).is_none() {
                    add_into(b, &mut rel[v.0], g)?;
                }
            }
        }
        for o in &node.outputs {
            trace.values[o.0] = None;
        }
    }
    at.iter()
        .zip(captured)
        .map(|(i, c)| match c.flatten().or_else(|| rel[i.0].take()) {
            Some(r) => Ok(r),
            // No path from the seeds reaches this value: its relevance is zero.
            None => {
                let shape = graph.shape(*i).ok_or_else(|| {
                    AttributionError::Invalid(format!(
                        "tensor '{}' has no known shape",
                        graph.value(*i).name
                    ))
                })?;
                Ok(b.full(shape, T::zero()))
            }
        })
        .collect()
}

/// The backward step of a node whose relevance arrived at several outputs (`rs`, one per
/// output): by the gradient (see [`vjp_outputs`]), since a rule describes one output.
fn multi_output<T: Float>(
    graph: &Graph,
    exec: &Executor<T>,
    trace: &Trace<T>,
    node: &prism_model::Node,
    rule: Option<&Rule>,
    rs: &[Option<Tensor<T>>],
    rel: &mut [Option<Tensor<T>>],
) -> Result<()> {
    let b = &Cpu;
    if let Some(rule) = rule.filter(|r| **r != Rule::Gradient) {
        return Err(node_err(
            node,
            format!(
                "relevance reached several of its outputs, and the {} rule describes one; \
                 give this node the gradient rule",
                rule.name()
            ),
        ));
    }
    let fetch = |v: ValueId| {
        exec.constant(v)
            .or_else(|| trace.get(v))
            .map(|t| &**t)
            .ok_or_else(|| {
                node_err(
                    node,
                    format!(
                        "tensor '{}' was not kept by the forward pass",
                        graph.value(v).name
                    ),
                )
            })
    };
    let ins: Vec<&Tensor<T>> = node
        .inputs
        .iter()
        .flatten()
        .map(|v| fetch(*v))
        .collect::<Result<_>>()?;
    let ys: Vec<Option<&Tensor<T>>> = node.outputs.iter().map(|o| fetch(*o).ok()).collect();
    let gs: Vec<Option<&Tensor<T>>> = rs.iter().map(Option::as_ref).collect();
    let wanted: Vec<bool> = node
        .inputs
        .iter()
        .flatten()
        .map(|v| exec.constant(*v).is_none())
        .collect();
    let grads = vjp_outputs(b, node, &ins, &ys, &gs, &wanted)?;
    for (v, g) in node.inputs.iter().flatten().zip(grads) {
        if let Some(g) = g {
            if exec.constant(*v).is_none() {
                add_into(b, &mut rel[v.0], g)?;
            }
        }
    }
    Ok(())
}

fn node_err(node: &prism_model::Node, detail: String) -> AttributionError {
    AttributionError::Node {
        node: node.name.clone(),
        op: node.op.type_name().into(),
        detail,
    }
}

/// Maps the relevance `r` at a node's output to its inputs by `rule` (`None`: gradient), on
/// backend `b`.
pub fn apply<T: Float, B: Backend<T>>(
    b: &B,
    node: &prism_model::Node,
    rule: Option<&Rule>,
    ins: &[&B::Tensor],
    y: &B::Tensor,
    r: &B::Tensor,
    wanted: &[bool],
) -> Result<Vec<Option<B::Tensor>>> {
    let Some(rule) = rule else {
        return vjp(b, node, ins, y, r, wanted);
    };
    let x = ins[0];
    let first = |t: B::Tensor| {
        let mut v = vec![Some(t)];
        v.extend((1..ins.len()).map(|_| None));
        Ok(v)
    };
    let relu_only = || {
        if matches!(node.op, Op::Unary(UnaryOp::Relu)) {
            Ok(())
        } else {
            Err(node_err(
                node,
                format!("the {} rule applies to Relu nodes only", rule.name()),
            ))
        }
    };
    match rule {
        Rule::Gradient => vjp(b, node, ins, y, r, wanted),
        Rule::Pass => {
            if b.shape(x) != b.shape(r) {
                return Err(node_err(
                    node,
                    format!(
                        "the Pass rule needs equal input and output shapes, got {:?} and {:?}",
                        b.shape(x),
                        b.shape(r)
                    ),
                ));
            }
            first(r.clone())
        }
        Rule::Norm { stabilizer }
            if matches!(node.op, Op::Binary(BinaryOp::Add))
                && ins.iter().all(|t| b.shape(t) == b.shape(y)) =>
        {
            // Residual sum without broadcasting: R_i = x_i · R / stab(Σ x) in one pass each.
            let s = ratio(b, r, y, stabilizer)?;
            ins.iter()
                .map(|x| Ok(Some(b.zip(Zip::Mul, x, &s)?)))
                .collect()
        }
        Rule::Norm { stabilizer } => {
            let s = ratio(b, r, y, stabilizer)?;
            let grads = vjp(b, node, ins, y, &s, wanted)?;
            grads
                .into_iter()
                .zip(ins)
                .map(|(g, x)| {
                    g.map(|g| b.broadcast(Zip::Mul, &g, x))
                        .transpose()
                        .map_err(AttributionError::from)
                })
                .collect()
        }
        Rule::ReluDeconvNet => {
            relu_only()?;
            first(b.map(prism_model::backend::Map::MaxZero, r))
        }
        Rule::ReluGuidedBackprop => {
            relu_only()?;
            first(b.zip(Zip::GuidedBackprop, x, r)?)
        }
        Rule::ReluBetaSmooth { beta } => {
            relu_only()?;
            first(b.zip(Zip::BetaSmoothGate(*beta), x, r)?)
        }
        Rule::Epsilon { .. }
        | Rule::ZPlus { .. }
        | Rule::AlphaBeta { .. }
        | Rule::Gamma { .. }
        | Rule::ZBox { .. }
        | Rule::Flat { .. }
        | Rule::WSquare { .. } => {
            let lin = Linear::from_node(b, node, ins)?.ok_or_else(|| {
                node_err(
                    node,
                    format!(
                        "the {} rule needs a convolution or dense node with a weight",
                        rule.name()
                    ),
                )
            })?;
            first(linear::apply(b, rule, &lin, x, y, r)?)
        }
    }
}
