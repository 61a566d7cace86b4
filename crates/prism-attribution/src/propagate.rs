//! The backward sweep: relevance from the outputs to the inputs, node by node in reverse
//! topological order; contributions to a tensor read by several nodes are summed.
//!
//! The sweep runs on the [`Cpu`] backend, where the forward [`Executor`] keeps its tensors;
//! the rules themselves ([`apply`], [`linear`], [`vjp`]) are generic over the [`Backend`].

use prism_model::backend::{Backend, Cpu, Map, Zip};
use prism_model::finite::any_nonfinite;
use prism_model::op::{BinaryOp, Op, UnaryOp};
use prism_model::{Executor, Float, Graph, Tensor, Trace, ValueId};

use crate::concept::SweepHooks;
use crate::error::{AttributionError, Result};
use crate::linear::{self, Linear};
use crate::passes::ratio;
use crate::roles::moves_values;
use crate::rule::{Rule, Stabilizer};
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

/// The values the backward sweep reads with these rules (the forward pass keeps these and the
/// outputs, [`prism_model::Keep::Values`]): every input and output of a node whose rule needs
/// them, which is every rule but `pass` (it moves the relevance by shape alone). Inside an
/// exported GELU or SiLU, whose nodes pass relevance on, nothing is kept.
pub fn needed_values(graph: &Graph, rules: &[Option<Rule>]) -> Vec<ValueId> {
    let mut keep = vec![false; graph.values.len()];
    for (node, rule) in graph.nodes.iter().zip(rules) {
        if *rule == Some(Rule::Pass) {
            continue;
        }
        for v in node.inputs.iter().flatten().chain(&node.outputs) {
            keep[v.0] = true;
        }
    }
    keep.iter()
        .enumerate()
        .filter(|(_, k)| **k)
        .map(|(i, _)| ValueId(i))
        .collect()
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
    let mut hooks = SweepHooks::none();
    Ok(propagate_watched(graph, exec, trace, rules, seeds, at, false, &mut hooks)?.0)
}

/// The relevance at each requested value, and for each the node index where non-finite
/// relevance began (see [`propagate_watched`]).
pub type Watched<T> = (Vec<Tensor<T>>, Vec<Option<usize>>);

/// [`propagate_to`], optionally (`watch`) noting for each relevance that holds NaN or ±Inf the
/// node whose rule produced the first of them from finite relevance: the second result gives,
/// for each value in `at`, that node's index (`None`: finite, or not watched). `hooks` see the
/// relevance at each node's outputs once it is complete, before the node's rule spreads it:
/// CRP's channel masks and recording ([`crate::concept`]).
#[allow(clippy::too_many_arguments)]
pub fn propagate_watched<T: Float>(
    graph: &Graph,
    exec: &Executor<T>,
    trace: &mut Trace<T>,
    rules: &[Option<Rule>],
    seeds: Vec<(ValueId, Tensor<T>)>,
    at: &[ValueId],
    watch: bool,
    hooks: &mut SweepHooks<T>,
) -> Result<Watched<T>> {
    let hooked = !hooks.is_empty();
    let b = &Cpu;
    // Where each value's non-finite relevance began (watched runs only).
    let mut bad: Vec<Option<usize>> = vec![None; graph.values.len()];
    let note = |bad: &mut Vec<Option<usize>>, rel: &[Option<Tensor<T>>], ni: usize| {
        if !watch {
            return;
        }
        let node = &graph.nodes[ni];
        let from = node.outputs.iter().find_map(|o| bad[o.0]).unwrap_or(ni);
        for v in node.inputs.iter().flatten() {
            if bad[v.0].is_none() && rel[v.0].as_ref().is_some_and(|r| any_nonfinite(r.data())) {
                bad[v.0] = Some(from);
            }
        }
    };
    let mut rel: Vec<Option<Tensor<T>>> = vec![None; graph.values.len()];
    for (v, t) in seeds {
        add_into(b, &mut rel[v.0], t)?;
    }
    // Values that depend on a value in `at`: relevance elsewhere (an attention mask's branch,
    // position ids) can never reach `at`, so the sweep skips it.
    let mut live = vec![false; graph.values.len()];
    for v in at {
        live[v.0] = true;
    }
    for node in &graph.nodes {
        if node.inputs.iter().flatten().any(|v| live[v.0]) {
            for o in &node.outputs {
                live[o.0] = true;
            }
        }
    }
    let mut captured: Vec<Option<Option<Tensor<T>>>> = vec![None; at.len()];
    // When every value asked for is computed, the sweep ends at the last cut.
    let all_computed = at.iter().all(|v| graph.producer(*v).is_some());
    let mut remaining = at.len();
    for (ni, node) in graph.nodes.iter().enumerate().rev() {
        if hooked {
            for o in &node.outputs {
                hooks.complete(*o, &mut rel[o.0])?;
            }
        }
        if node.outputs.iter().any(|o| at.contains(o)) {
            // A cut: the relevance here is complete (all readers ran); it flows no further.
            for (k, v) in at.iter().enumerate() {
                if node.outputs.contains(v) && captured[k].is_none() {
                    captured[k] = Some(rel[v.0].take());
                    remaining = remaining.saturating_sub(1);
                }
            }
            // The node's forward values stay: a sweep seeded at its output (CRP's
            // `Parallel::Exclude`, restarting at a cut) runs its rule next.
            if all_computed && remaining == 0 {
                break;
            }
            continue;
        }
        // A node's output is read by its consumers, all processed before it: once the node is
        // done, its forward value is no longer needed and goes (peak memory falls as we go).
        let mut rs: Vec<Option<Tensor<T>>> = node.outputs.iter().map(|o| rel[o.0].take()).collect();
        if rs.iter().all(Option::is_none) || !node.outputs.iter().any(|o| live[o.0]) {
            for o in &node.outputs {
                trace.values[o.0] = None;
            }
            continue;
        }
        // Relevance at outputs after the first (Split's pieces, LayerNormalization's
        // statistics): the node's gradient from all its outputs at once.
        if rs.iter().skip(1).any(Option::is_some) {
            multi_output(
                graph,
                exec,
                trace,
                node,
                rules[ni].as_ref(),
                &rs,
                &mut rel,
                &live,
            )?;
            note(&mut bad, &rel, ni);
            for o in &node.outputs {
                trace.values[o.0] = None;
            }
            continue;
        }
        let Some(r) = rs[0].take() else {
            continue;
        };
        // Pass hands the relevance on unchanged to the first computed input of the output's
        // shape: moved, not copied, and without the forward values (see [`needed_values`]).
        if rules[ni] == Some(Rule::Pass) {
            let x = node.inputs.iter().flatten().find(|x| {
                graph.shape(**x) == Some(r.shape()) && exec.constant(**x).is_none() && live[x.0]
            });
            let Some(x) = x else {
                return Err(node_err(
                    node,
                    format!(
                        "the pass rule needs a computed input of the output's shape {:?}",
                        r.shape()
                    ),
                ));
            };
            add_into(b, &mut rel[x.0], r)?;
            note(&mut bad, &rel, ni);
            for o in &node.outputs {
                trace.values[o.0] = None;
            }
            continue;
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
            .map(|v| exec.constant(*v).is_none() && live[v.0])
            .collect();
        let grads = apply(b, node, rules[ni].as_ref(), &ins, y, &r, &wanted)?;
        for (v, g) in node.inputs.iter().flatten().zip(grads) {
            if let Some(g) = g {
                if exec.constant(*v).is_none() && live[v.0] {
                    add_into(b, &mut rel[v.0], g)?;
                }
            }
        }
        note(&mut bad, &rel, ni);
        for o in &node.outputs {
            trace.values[o.0] = None;
        }
    }
    let origins = at.iter().map(|v| bad[v.0]).collect();
    let relevance = at
        .iter()
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
        .collect::<Result<_>>()?;
    Ok((relevance, origins))
}

/// The backward step of a node whose relevance arrived at several outputs (`rs`, one per
/// output): by the gradient (see [`vjp_outputs`]), since a rule describes one output.
#[allow(clippy::too_many_arguments)]
fn multi_output<T: Float>(
    graph: &Graph,
    exec: &Executor<T>,
    trace: &Trace<T>,
    node: &prism_model::Node,
    rule: Option<&Rule>,
    rs: &[Option<Tensor<T>>],
    rel: &mut [Option<Tensor<T>>],
    live: &[bool],
) -> Result<()> {
    let b = &Cpu;
    // For nodes that only move values (Split), the z-rule and the pass rule are the gradient.
    let by_gradient = |r: &Rule| {
        *r == Rule::Gradient
            || (moves_values(&node.op) && matches!(r, Rule::Norm { .. } | Rule::Pass))
    };
    if let Some(rule) = rule.filter(|r| !by_gradient(r)) {
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
        .map(|v| exec.constant(*v).is_none() && live[v.0])
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
            // all relevance to the first computed input of the output's shape
            let k = (0..ins.len())
                .find(|&i| wanted.get(i).copied().unwrap_or(false) && b.shape(ins[i]) == b.shape(r))
                .ok_or_else(|| {
                    node_err(
                        node,
                        format!(
                            "the pass rule needs an input of the output's shape {:?}, got {:?}",
                            b.shape(r),
                            ins.iter().map(|t| b.shape(*t).to_vec()).collect::<Vec<_>>()
                        ),
                    )
                })?;
            let mut out: Vec<Option<B::Tensor>> = (0..ins.len()).map(|_| None).collect();
            out[k] = Some(r.clone());
            Ok(out)
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
        // Moving, selecting or copying values: the z-rule is the gradient of the relevance.
        Rule::Norm { .. } if moves_values(&node.op) => vjp(b, node, ins, y, r, wanted),
        Rule::Norm { stabilizer } => z_rule(b, node, ins, y, r, wanted, stabilizer, 1.0),
        Rule::Uniform { stabilizer }
        | Rule::ConstantGate {
            stabilizer,
            gate: None,
        } => {
            let k = wanted.iter().filter(|w| **w).count().max(1);
            z_rule(b, node, ins, y, r, wanted, stabilizer, k as f64)
        }
        Rule::ConstantGate {
            stabilizer,
            gate: Some(gate),
        } => {
            let mut held = wanted.to_vec();
            if let Some(w) = held.get_mut(*gate) {
                *w = false;
            }
            z_rule(b, node, ins, y, r, &held, stabilizer, 1.0)
        }
        Rule::FrozenNorm {
            stabilizer,
            normaliser: Some(k),
        } => {
            let mut held = wanted.to_vec();
            if let Some(w) = held.get_mut(*k) {
                *w = false;
            }
            z_rule(b, node, ins, y, r, &held, stabilizer, 1.0)
        }
        Rule::FrozenNorm {
            stabilizer,
            normaliser: None,
        } => {
            let s = ratio(b, r, y, stabilizer)?;
            let g = frozen_norm_grad(b, node, ins, &s)?;
            first(b.zip(Zip::Relevance, &g, x)?)
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

/// The z-rule on the inputs `wanted` names (the others held constant):
/// `x_i ⊙ J_iᵀ(R / stab(y)) / share`, no relevance where the gradient vanishes.
#[allow(clippy::too_many_arguments)]
fn z_rule<T: Float, B: Backend<T>>(
    b: &B,
    node: &prism_model::Node,
    ins: &[&B::Tensor],
    y: &B::Tensor,
    r: &B::Tensor,
    wanted: &[bool],
    stabilizer: &Stabilizer,
    share: f64,
) -> Result<Vec<Option<B::Tensor>>> {
    let s = ratio(b, r, y, stabilizer)?;
    let s = if share == 1.0 {
        s
    } else {
        b.map(Map::Divide(share), &s)
    };
    let grads = vjp(b, node, ins, y, &s, wanted)?;
    grads
        .into_iter()
        .zip(ins)
        .zip(wanted)
        .map(|((g, x), w)| match (g, w) {
            (Some(g), true) => Ok(Some(b.broadcast(Zip::Relevance, &g, x)?)),
            _ => Ok(None),
        })
        .collect()
}

/// The input-gradient of a normalisation with its normaliser `1/σ` held constant, for the
/// output-gradient `s`: per normalised row `(w⊙s − mean(w⊙s)) / σ` (the mean subtraction is
/// differentiated, the standard deviation is not).
fn frozen_norm_grad<T: Float, B: Backend<T>>(
    b: &B,
    node: &prism_model::Node,
    ins: &[&B::Tensor],
    s: &B::Tensor,
) -> Result<B::Tensor> {
    let x = ins[0];
    let xs = b.shape(x).to_vec();
    let missing = || {
        node_err(
            node,
            "expects an input, a scale and (optionally) a bias".into(),
        )
    };
    let scale = *ins.get(1).ok_or_else(missing)?;
    let (rows, eps, gh) = match &node.op {
        Op::LayerNormalization { axis, epsilon } => {
            let a = prism_model::shape::norm_axis(*axis, xs.len())
                .ok_or_else(|| node_err(node, format!("axis {axis} out of range")))?;
            let rows: usize = xs[..a].iter().product();
            (rows, *epsilon, b.broadcast(Zip::Mul, s, scale)?)
        }
        Op::GroupNormalization {
            num_groups,
            epsilon,
            per_channel,
        } => {
            let c = xs.get(1).copied().ok_or_else(missing)?;
            let groups = (!*per_channel).then_some(*num_groups);
            let w = prism_model::exec::norm_channels(b, scale, groups, c)
                .map_err(|e| node_err(node, e.to_string()))?;
            (xs[0] * num_groups, *epsilon, b.channel(Zip::Mul, s, &w)?)
        }
        Op::InstanceNormalization { epsilon } => {
            let c = xs.get(1).copied().ok_or_else(missing)?;
            (xs[0] * c, *epsilon, b.channel(Zip::Mul, s, scale)?)
        }
        other => {
            return Err(node_err(
                node,
                format!(
                    "the frozen-norm rule applies to LayerNormalization, GroupNormalization, \
                     InstanceNormalization and to the Mul/Div by a normaliser (1/σ of a \
                     decomposed LayerNorm or RMSNorm); {} is neither",
                    other.type_name()
                ),
            ))
        }
    };
    let (_, _, inv) = b.standardize(x, rows, eps)?;
    let len: usize = xs.iter().product();
    let per = len / rows.max(1);
    let g = b.reshape(gh, vec![rows, per])?;
    let mean = b.reduce(&g, &[1], true, true);
    let centred = b.broadcast(Zip::Sub, &g, &mean)?;
    let inv = b.reshape(inv, vec![rows, 1])?;
    let out = b.broadcast(Zip::Mul, &centred, &inv)?;
    Ok(b.reshape(out, xs)?)
}
