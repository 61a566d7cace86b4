//! Canonizers: graph passes that make a model's structure explicit for LRP without changing
//! its forward output.
//!
//! * [`merge_batchnorm`]: a BatchNormalization directly after a Conv (group 1 for
//!   ConvTranspose) or Gemm whose output nothing else reads is folded into that node's weight and
//!   bias with Zennit's formula `W' = W·s`, `b' = (b − μ)·s + β`, `s = γ / √(σ² + ε)`.
//! * [`merge_linear_bias`]: a bias exported as a separate `Add` of a constant after a `MatMul`
//!   (every `nn.Linear` on a 3-D input, i.e. every linear layer of a transformer; Keras `Dense`
//!   through tf2onnx), a `Conv` or a `Gemm` becomes that node's bias, so the LRP rules see
//!   `z = Wx + b` exactly as Zennit sees `nn.Linear`/`nn.Conv2d` (not a canonizer in Zennit's
//!   sense: it restores the layer the exporter split, and always runs).
//! * Explicit residual sums: every `Add` of two computed tensors is visible to composites (the
//!   `sum` group), which is what Zennit's ResNet canonizer achieves for torchvision's blocks,
//!   here for any architecture; it is a flag of the rule assignment, not a graph change.
//!
//! BatchNorm that cannot be merged stays and gets `Pass` from the LRP composites; Concat routes
//! relevance by slice and MaxPool by its gradient (winner takes all), as in Zennit.

use std::sync::Arc;

use prism_model::{Constant, DType, Graph, Node, Op, Source, Tensor, Value, ValueId};

use crate::error::Result;

fn const_f64(g: &Graph, v: Option<ValueId>) -> Option<Tensor<f64>> {
    v.and_then(|v| g.constant(v)).map(Constant::to_f64)
}

/// Stores `t` as f64 when the graph will run in f64 or already had f64 weights, else as f32.
fn like(t: Tensor<f64>, like: &Constant, dtype: DType) -> Constant {
    match (like, dtype) {
        (Constant::F64(_), _) | (_, DType::F64) => Constant::F64(Arc::new(t)),
        _ => Constant::f32(t.cast()),
    }
}

/// The graph `g` with these values and nodes, less the nodes marked in `drop` (a merged node's
/// output now comes from the node it was merged into).
fn rebuild(g: &Graph, values: Vec<Value>, nodes: Vec<Node>, drop: &[bool]) -> Result<Graph> {
    let nodes: Vec<Node> = nodes
        .into_iter()
        .zip(drop)
        .filter(|(_, d)| !**d)
        .map(|(n, _)| n)
        .collect();
    Ok(Graph::from_parts(
        values,
        nodes,
        g.inputs.clone(),
        g.outputs.clone(),
        g.opset,
    )?)
}

/// Folds BatchNorm nodes into the linear node before them, computing the merged parameters
/// in f64 and storing them for execution in `dtype`. Returns the new graph and the number of
/// merged nodes.
pub fn merge_batchnorm(g: &Graph, dtype: DType) -> Result<(Graph, usize)> {
    let consumers = g.consumers();
    let mut values: Vec<Value> = g.values.clone();
    let mut nodes: Vec<Node> = g.nodes.clone();
    let mut drop = vec![false; nodes.len()];
    let mut merged = 0;
    for bi in 0..nodes.len() {
        let Op::BatchNormalization { epsilon } = nodes[bi].op else {
            continue;
        };
        let bn = &nodes[bi];
        let Some(x) = bn.input(0) else { continue };
        let Some(Source::Node { node: li, .. }) = Some(g.value(x).source.clone()) else {
            continue;
        };
        if consumers[x.0].len() != 1 || g.outputs.contains(&x) {
            continue;
        }
        let lin = &nodes[li.0];
        let (Some(w_id), Some(wc)) = (lin.input(1), lin.input(1).and_then(|v| g.constant(v)))
        else {
            continue;
        };
        let out_axis = match &lin.op {
            Op::Conv { .. } => 0,
            Op::ConvTranspose { group: 1, .. } => 1,
            Op::Gemm {
                alpha,
                beta,
                trans_a: false,
                trans_b,
            } if *alpha == 1.0 && *beta == 1.0 => {
                if *trans_b {
                    0
                } else {
                    1
                }
            }
            _ => continue,
        };
        let (Some(gamma), Some(beta), Some(mean), Some(var)) = (
            const_f64(g, bn.input(1)),
            const_f64(g, bn.input(2)),
            const_f64(g, bn.input(3)),
            const_f64(g, bn.input(4)),
        ) else {
            continue;
        };
        let w = wc.to_f64();
        let c = gamma.len();
        if w.shape().get(out_axis) != Some(&c)
            || matches!(lin.op, Op::Gemm { .. })
                && lin
                    .input(2)
                    .is_some_and(|b| g.constant(b).is_none_or(|bc| bc.len() != c))
        {
            continue;
        }
        let scale: Vec<f64> = (0..c)
            .map(|i| gamma.data()[i] / (var.data()[i] + epsilon).sqrt())
            .collect();
        let mut wd = w.data().to_vec();
        let shape = w.shape().to_vec();
        let inner: usize = shape[out_axis + 1..].iter().product();
        for (i, v) in wd.iter_mut().enumerate() {
            *v *= scale[(i / inner) % c];
        }
        let b = const_f64(g, lin.input(2))
            .map(|b| b.data().to_vec())
            .unwrap_or_else(|| vec![0.0; c]);
        let bd: Vec<f64> = (0..c)
            .map(|i| (b[i] - mean.data()[i]) * scale[i] + beta.data()[i])
            .collect();
        let new_w = like(Tensor::new(shape, wd)?, wc, dtype);
        let new_b = like(Tensor::new(vec![c], bd)?, wc, dtype);
        let wv = ValueId(values.len());
        values.push(Value {
            name: format!("{}.weight.bn_merged", g.value(w_id).name),
            shape: Some(new_w.shape().to_vec()),
            source: Source::Constant(new_w),
        });
        let bv = ValueId(values.len());
        values.push(Value {
            name: format!("{}.bias.bn_merged", nodes[li.0].name),
            shape: Some(vec![c]),
            source: Source::Constant(new_b),
        });
        let bn_out = bn.outputs[0];
        let lin = &mut nodes[li.0];
        lin.inputs = vec![lin.inputs[0], Some(wv), Some(bv)];
        lin.outputs = vec![bn_out];
        drop[bi] = true;
        merged += 1;
    }
    Ok((rebuild(g, values, nodes, &drop)?, merged))
}

/// Folds a constant `Add` after a dense or convolution node into that node's bias (see the
/// module documentation). Returns the new graph and the number of merged `Add` nodes.
///
/// Merged: `MatMul(x, W)` with a constant 2-D `W` (`k × n`) plus a constant of `n` values along
/// the last axis (shape `[n]`, `[1, n]`, `[1, 1, n]`, …; the `MatMul` gets a third input, its
/// bias); `Conv`/`ConvTranspose` plus one value per output channel (`[C, 1, 1]`,
/// `[1, C, 1, 1]`, …; added to the existing bias); `Gemm` (no transposed input) plus one value
/// per column (`[n]` or `[1, n]`; `C' = β·C + c`, `β = 1`). The linear node's output must be
/// read by that `Add` alone, either operand order.
pub fn merge_linear_bias(g: &Graph, dtype: DType) -> Result<(Graph, usize)> {
    let consumers = g.consumers();
    let mut values: Vec<Value> = g.values.clone();
    let mut nodes: Vec<Node> = g.nodes.clone();
    let mut drop = vec![false; nodes.len()];
    let mut merged = 0;
    for ai in 0..nodes.len() {
        if !matches!(nodes[ai].op, Op::Binary(prism_model::op::BinaryOp::Add)) {
            continue;
        }
        let (Some(p), Some(q)) = (nodes[ai].input(0), nodes[ai].input(1)) else {
            continue;
        };
        // (computed operand from a linear node, constant operand)
        let (z, c) = match (g.constant(p).is_some(), g.constant(q).is_some()) {
            (false, true) => (p, q),
            (true, false) => (q, p),
            _ => continue,
        };
        let Source::Node { node: li, index: 0 } = g.value(z).source else {
            continue;
        };
        if consumers[z.0].len() != 1 || g.outputs.contains(&z) || drop[li.0] {
            continue;
        }
        let (Some(zs), Some(ys)) = (g.shape(z), g.shape(nodes[ai].outputs[0])) else {
            continue;
        };
        if zs != ys {
            continue; // the Add broadcasts the linear output: not a bias
        }
        let Some(cc) = g.constant(c) else { continue };
        let cv = cc.to_f64();
        let cs = cv.shape();
        if cs.len() > zs.len() {
            continue;
        }
        // The constant's dims aligned to the output's (numpy broadcasting from the right).
        let pad = zs.len() - cs.len();
        let aligned: Vec<usize> = std::iter::repeat_n(1, pad)
            .chain(cs.iter().copied())
            .collect();
        let lin = &nodes[li.0];
        let weight = lin.input(1).and_then(|w| g.constant(w));
        let (axis, op) = match &lin.op {
            Op::MatMul if weight.is_some_and(|w| w.shape().len() == 2) && zs.len() >= 2 => {
                (zs.len() - 1, lin.op.clone())
            }
            Op::Conv { .. } | Op::ConvTranspose { .. } if weight.is_some() && zs.len() >= 2 => {
                (1, lin.op.clone())
            }
            Op::Gemm {
                alpha,
                beta,
                trans_a: false,
                trans_b,
            } if zs.len() == 2 => (
                1,
                Op::Gemm {
                    alpha: *alpha,
                    beta: if lin.input(2).is_some() { *beta } else { 1.0 },
                    trans_a: false,
                    trans_b: *trans_b,
                },
            ),
            _ => continue,
        };
        let n = zs[axis];
        if aligned
            .iter()
            .enumerate()
            .any(|(i, &d)| d != if i == axis { n } else { 1 })
        {
            continue;
        }
        // The existing bias, scaled by Gemm's beta, plus the constant.
        let old = const_f64(g, lin.input(2));
        if lin.input(2).is_some() && old.as_ref().is_none_or(|b| b.len() != n) {
            continue;
        }
        let scale = match &lin.op {
            Op::Gemm { beta, .. } => *beta,
            _ => 1.0,
        };
        let bias: Vec<f64> = (0..n)
            .map(|i| old.as_ref().map_or(0.0, |b| b.data()[i] * scale) + cv.data()[i])
            .collect();
        let op = match op {
            Op::Gemm {
                alpha,
                trans_a,
                trans_b,
                ..
            } => Op::Gemm {
                alpha,
                beta: 1.0,
                trans_a,
                trans_b,
            },
            other => other,
        };
        let b = like(Tensor::new(vec![n], bias)?, cc, dtype);
        let bv = ValueId(values.len());
        values.push(Value {
            name: format!("{}.bias.add_merged", lin.name),
            shape: Some(vec![n]),
            source: Source::Constant(b),
        });
        let out = nodes[ai].outputs[0];
        let lin = &mut nodes[li.0];
        lin.op = op;
        lin.inputs = vec![lin.inputs[0], lin.inputs[1], Some(bv)];
        lin.outputs = vec![out];
        values[out.0].source = Source::Node { node: li, index: 0 };
        drop[ai] = true;
        merged += 1;
    }
    Ok((rebuild(g, values, nodes, &drop)?, merged))
}
