//! Canonizers: graph passes that make a model's structure explicit for LRP without changing
//! its forward output.
//!
//! * [`merge_batchnorm`]: a BatchNormalization directly after a Conv (group 1 for
//!   ConvTranspose) or Gemm whose output nothing else reads is folded into that node's weight and
//!   bias with Zennit's formula `W' = W·s`, `b' = (b − μ)·s + β`, `s = γ / √(σ² + ε)`.
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
    let nodes: Vec<Node> = nodes
        .into_iter()
        .zip(drop)
        .filter(|(_, d)| !d)
        .map(|(n, _)| n)
        .collect();
    let graph = Graph::from_parts(values, nodes, g.inputs.clone(), g.outputs.clone(), g.opset)?;
    Ok((graph, merged))
}
