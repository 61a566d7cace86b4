//! Vector-Jacobian products (input-gradients) of every operator Prism executes.
//!
//! A node without an LRP rule passes relevance on by its true gradient, so the same machinery
//! gives plain gradients, and the modified-gradient rules call into these for the linear part.
//! Every computation goes through the [`Backend`] seam; the match over operators is
//! exhaustive, so a new operator cannot compile without a decision on its gradient.

use std::borrow::Cow;

use prism_model::backend::{Backend, Map, MatMul, SoftmaxAxis, Zip};
use prism_model::exec::{norm_channels, softmax_axis, tile_shapes};
use prism_model::kernels::index::{self, ScatterReduction};
use prism_model::op::{BinaryOp, CastTo, Op};
use prism_model::shape::{self, norm_axis};
use prism_model::{Float, Node};

use crate::error::{AttributionError, Result};

fn err(node: &Node, detail: impl Into<String>) -> AttributionError {
    AttributionError::Node {
        node: node.name.clone(),
        op: node.op.type_name().to_string(),
        detail: detail.into(),
    }
}

/// Input-gradients of `node` for output-gradient `g`, computed on backend `b`. `ins` are the
/// node's inputs (data and parameters, in order), `y` its output, `wanted[i]` whether input i
/// needs a gradient (it is computed, not a parameter). Returns one gradient per input (`None`
/// where not computed).
pub fn vjp<T: Float, B: Backend<T>>(
    b: &B,
    node: &Node,
    ins: &[&B::Tensor],
    y: &B::Tensor,
    g: &B::Tensor,
    wanted: &[bool],
) -> Result<Vec<Option<B::Tensor>>> {
    let x = ins[0];
    let xs = b.shape(x);
    let rank = xs.len();
    let one = |t: B::Tensor| Ok(vec![Some(t)]);
    match &node.op {
        Op::Conv { window, group } => {
            let (geom, _) = shape::conv_geom(&node.name, window, *group, xs, b.shape(ins[1]))?;
            let dx = b.conv2d_input_grad(g, ins[1], &geom)?;
            one(b.reshape(dx, xs.to_vec())?)
        }
        Op::ConvTranspose {
            window,
            group,
            output_padding,
            output_shape,
        } => {
            let (geom, _) = shape::conv_transpose_geom(
                &node.name,
                window,
                *group,
                output_padding,
                output_shape,
                xs,
                b.shape(ins[1]),
            )?;
            let dx = b.conv2d(g, ins[1], None, &geom)?;
            one(b.reshape(dx, xs.to_vec())?)
        }
        Op::Gemm {
            alpha,
            trans_a,
            trans_b,
            ..
        } => {
            let (m, k, n) = shape::gemm_dims(xs, b.shape(ins[1]), *trans_a, *trans_b)
                .ok_or_else(|| err(node, "gemm shapes"))?;
            // dA' = alpha · g · B'ᵀ ; dB' = alpha · A'ᵀ · g, with transposes as strided views
            // (weights of dense layers can be hundreds of MB: never copy them).
            let scale = |t: B::Tensor| {
                if *alpha != 1.0 {
                    b.map(Map::Scale(*alpha), &t)
                } else {
                    t
                }
            };
            // B'ᵀ (n×k): B' is B (stored k×n, read transposed) or Bᵀ (B stored n×k, read as is)
            let p = MatMul {
                m,
                n: k,
                k: n,
                a_t: false,
                b_t: !*trans_b,
            };
            let da = scale(b.matmul(&p, g, ins[1], vec![m, k])?);
            let da = if *trans_a {
                b.transpose(&da, &[1, 0])?
            } else {
                da
            };
            let mut out = vec![Some(da)];
            if ins.len() > 1 {
                out.push(if wanted.get(1).copied().unwrap_or(false) {
                    // A'ᵀ (k×m): A' is A (stored m×k, read transposed) or Aᵀ (A stored k×m)
                    let p = MatMul {
                        m: k,
                        n,
                        k: m,
                        a_t: !*trans_a,
                        b_t: false,
                    };
                    let db = scale(b.matmul(&p, ins[0], g, vec![k, n])?);
                    Some(if *trans_b {
                        b.transpose(&db, &[1, 0])?
                    } else {
                        db
                    })
                } else {
                    None
                });
            }
            if ins.len() > 2 {
                out.push(None);
            }
            Ok(out)
        }
        Op::MatMul => {
            let (sa, sw) = (b.shape(ins[0]).to_vec(), b.shape(ins[1]).to_vec());
            let (batch, m, _, n, _) = shape::matmul_dims(&sa, &sw)
                .ok_or_else(|| err(node, format!("cannot multiply shapes {sa:?} and {sw:?}")))?;
            // numpy's 1-D operands are a row (left) or a column (right) vector; the output
            // lacks that axis, so the gradient gets it back.
            let a: Cow<B::Tensor> = if sa.len() == 1 {
                Cow::Owned(b.reshape(ins[0].clone(), vec![1, sa[0]])?)
            } else {
                Cow::Borrowed(ins[0])
            };
            let w: Cow<B::Tensor> = if sw.len() == 1 {
                Cow::Owned(b.reshape(ins[1].clone(), vec![sw[0], 1])?)
            } else {
                Cow::Borrowed(ins[1])
            };
            let full: Vec<usize> = batch.iter().copied().chain([m, n]).collect();
            let g = if b.shape(g) == full.as_slice() {
                Cow::Borrowed(g)
            } else {
                Cow::Owned(b.reshape(g.clone(), full)?)
            };
            let da = b.matmul_batched(&g, &swap_last(b, &w)?)?;
            let da = b.reshape(b.reduce_to_shape(&da, b.shape(&*a))?, sa)?;
            let db = if wanted.get(1).copied().unwrap_or(false) {
                let db = b.matmul_batched(&swap_last(b, &a)?, &g)?;
                Some(b.reshape(b.reduce_to_shape(&db, b.shape(&*w))?, sw)?)
            } else {
                None
            };
            let mut out = vec![Some(da), db];
            if ins.len() > 2 {
                out.push(None); // a merged bias (a parameter)
            }
            Ok(out)
        }
        Op::Binary(op) => {
            let (l, r) = (ins[0], ins[1]);
            let reduced =
                |gl: B::Tensor, gr: Option<B::Tensor>| -> Result<Vec<Option<B::Tensor>>> {
                    Ok(vec![
                        Some(b.reduce_to_shape(&gl, b.shape(l))?),
                        gr.map(|gr| b.reduce_to_shape(&gr, b.shape(r)))
                            .transpose()?,
                    ])
                };
            let want_r = wanted.get(1).copied().unwrap_or(false);
            match op {
                BinaryOp::Add => reduced(g.clone(), Some(g.clone())),
                BinaryOp::Sub => reduced(g.clone(), Some(b.map(Map::Negate, g))),
                BinaryOp::Mul => reduced(
                    b.broadcast(Zip::Mul, g, r)?,
                    Some(b.broadcast(Zip::Mul, g, l)?),
                ),
                BinaryOp::Div => {
                    let gl = b.broadcast(Zip::Div, g, r)?;
                    // d(a/b)/db = -a/b² = -y/b
                    let yb = b.broadcast(Zip::Div, y, r)?;
                    reduced(gl, Some(b.broadcast(Zip::NegMul, g, &yb)?))
                }
                BinaryOp::Pow => {
                    // ∂xᵉ/∂x = e·x^(e−1), ∂xᵉ/∂e = xᵉ·ln x
                    let gl = b.zip(Zip::Mul, g, &b.broadcast(Zip::PowGradBase, l, r)?)?;
                    let gr = if want_r {
                        let xb = b.expand(l, b.shape(y))?;
                        Some(b.zip(Zip::Mul, g, &b.zip(Zip::PowGradExponent, &xb, y)?)?)
                    } else {
                        None
                    };
                    reduced(gl, gr)
                }
                BinaryOp::Mod { fmod } => {
                    // mod(a, b) = a − q·b with q = trunc(a/b) (fmod) or floor(a/b), piecewise
                    // constant: ∂/∂a = 1, ∂/∂b = −q.
                    let gr = if want_r {
                        Some(b.zip(
                            Zip::Mul,
                            g,
                            &b.broadcast(Zip::ModQuotient { fmod: *fmod }, l, r)?,
                        )?)
                    } else {
                        None
                    };
                    reduced(g.clone(), gr)
                }
                BinaryOp::PRelu => {
                    let gl = b.zip(Zip::Mul, g, &b.broadcast(Zip::PReluGrad, l, r)?)?;
                    let gr = if want_r {
                        Some(b.zip(Zip::Mul, g, &b.map(Map::Negative, l))?)
                    } else {
                        None
                    };
                    reduced(gl, gr)
                }
                // Boolean-valued: piecewise constant, zero gradient.
                BinaryOp::Equal
                | BinaryOp::Less
                | BinaryOp::Greater
                | BinaryOp::LessOrEqual
                | BinaryOp::GreaterOrEqual
                | BinaryOp::And
                | BinaryOp::Or
                | BinaryOp::Xor => Ok(vec![
                    Some(b.full(b.shape(l), T::zero())),
                    Some(b.full(b.shape(r), T::zero())),
                ]),
            }
        }
        Op::Max | Op::Min => {
            // The gradient goes to the winner: the first input that equals the output at each
            // position (ties go to the earliest input, like MaxPool's first maximum).
            let mut claimed = b.full(b.shape(y), T::zero());
            let mut out = Vec::with_capacity(ins.len());
            for t in ins {
                let eq = b.broadcast(Zip::Binary(BinaryOp::Equal), y, t)?;
                // eq, claimed ∈ {0, 1}: eq > claimed ⟺ equal here and no earlier winner.
                let wins = b.zip(Zip::Binary(BinaryOp::Greater), &eq, &claimed)?;
                claimed = b.zip(Zip::Binary(BinaryOp::Or), &claimed, &eq)?;
                let gi = b.zip(Zip::Mul, g, &wins)?;
                out.push(Some(b.reduce_to_shape(&gi, b.shape(t))?));
            }
            Ok(out)
        }
        Op::Where => {
            // The condition gets no gradient; X and Y get g where they were chosen.
            let zero = b.full(&[], T::zero());
            let gx = b.select(x, g, &zero)?;
            let gy = b.select(x, &zero, g)?;
            Ok(vec![
                None,
                Some(b.reduce_to_shape(&gx, b.shape(ins[1]))?),
                Some(b.reduce_to_shape(&gy, b.shape(ins[2]))?),
            ])
        }
        Op::Cast { to } => match to {
            CastTo::F32 | CastTo::F64 => one(g.clone()),
            // Rounding to an integer or a boolean is piecewise constant.
            CastTo::Int | CastTo::Bool => one(b.full(xs, T::zero())),
        },
        Op::Unary(u) => one(b.unary_grad(*u, x, y, g)?),
        Op::Softmax { axis, flatten } => {
            let a = norm_axis(*axis, rank).ok_or_else(|| err(node, "axis"))?;
            let outer: usize = xs[..a].iter().product();
            let (len, inner) = if *flatten {
                (xs[a..].iter().product(), 1)
            } else {
                (xs[a], xs[a + 1..].iter().product())
            };
            one(b.softmax_grad(y, g, &SoftmaxAxis { outer, len, inner })?)
        }
        Op::MaxPool { window } => {
            let (geom, _) = shape::pool_geom(&node.name, "MaxPool", window, xs)?;
            one(b.reshape(b.max_pool_input_grad(x, g, &geom)?, xs.to_vec())?)
        }
        Op::AveragePool {
            window,
            count_include_pad,
        } => {
            let (geom, _) = shape::pool_geom(&node.name, "AveragePool", window, xs)?;
            let dx = b.avg_pool_input_grad(g, &geom, *count_include_pad)?;
            one(b.reshape(dx, xs.to_vec())?)
        }
        Op::GlobalAveragePool => one(b.global_avg_pool_grad(g, xs)?),
        Op::GlobalMaxPool => one(b.global_max_pool_grad(x, g)?),
        Op::ReduceMean {
            axes,
            keepdims,
            noop_with_empty_axes,
        }
        | Op::ReduceSum {
            axes,
            keepdims,
            noop_with_empty_axes,
        } => {
            let (ax, kept) = reduced(node, xs, axes.as_deref(), *noop_with_empty_axes)?;
            let gk = if *keepdims {
                g.clone()
            } else {
                b.reshape(g.clone(), kept)?
            };
            let dx = b.expand(&gk, xs)?;
            if matches!(node.op, Op::ReduceMean { .. }) {
                let count: usize = ax.iter().map(|&a| xs[a]).product();
                one(b.map(Map::Divide(count.max(1) as f64), &dx))
            } else {
                one(dx)
            }
        }
        Op::ReduceL2 {
            axes,
            keepdims,
            noop_with_empty_axes,
        } => {
            // d‖x‖/dx = x / ‖x‖ (NaN where a whole slice is zero, as the formula says)
            let (_, kept) = reduced(node, xs, axes.as_deref(), *noop_with_empty_axes)?;
            let (gk, yk) = if *keepdims {
                (g.clone(), y.clone())
            } else {
                (
                    b.reshape(g.clone(), kept.clone())?,
                    b.reshape(y.clone(), kept)?,
                )
            };
            let ratio = b.zip(Zip::Div, &gk, &yk)?;
            one(b.broadcast(Zip::Mul, x, &ratio)?)
        }
        Op::BatchNormalization { epsilon } => {
            let (a, _) = b.batchnorm_coefficients(ins[1], ins[2], ins[3], ins[4], *epsilon)?;
            let zero = b.full(b.shape(&a), T::zero());
            let mut out = vec![Some(b.channel_affine(g, &a, &zero)?)];
            out.extend((1..ins.len()).map(|_| None));
            Ok(out)
        }
        Op::Concat { axis } => {
            let a = norm_axis(*axis, rank).ok_or_else(|| err(node, "axis"))?;
            let mut start = 0i64;
            let mut out = Vec::new();
            for t in ins {
                let len = b.shape(t)[a] as i64;
                let spec = prism_model::kernels::movement::slice_spec(
                    b.shape(g),
                    &[start],
                    &[start + len],
                    &[a],
                    &[1],
                )
                .ok_or_else(|| err(node, "slice"))?;
                out.push(Some(b.slice(g, &spec)));
                start += len;
            }
            Ok(out)
        }
        Op::Flatten { .. }
        | Op::Reshape { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. }
        | Op::Identity
        | Op::Dropout => one(b.reshape(g.clone(), xs.to_vec())?),
        Op::Transpose { perm } => {
            let p =
                shape::transpose_perm(perm.as_deref(), rank).ok_or_else(|| err(node, "perm"))?;
            let mut inv = vec![0; p.len()];
            for (i, &q) in p.iter().enumerate() {
                inv[q] = i;
            }
            one(b.transpose(g, &inv)?)
        }
        Op::Pad {
            mode,
            pads: Some(pads),
            axes,
            ..
        } => {
            let full =
                shape::full_pads(pads, axes.as_deref(), rank).ok_or_else(|| err(node, "pads"))?;
            one(b.pad_grad(g, xs, &full, *mode)?)
        }
        Op::Slice { .. } => {
            let spec = shape::slice_for(&node.op, xs).ok_or_else(|| err(node, "slice"))?;
            one(b.slice_grad(g, xs, &spec)?)
        }
        Op::Expand { .. } => one(b.reduce_to_shape(g, xs)?),
        Op::Gather {
            axis,
            indices: Some(idx),
        } => {
            let a = norm_axis(*axis, rank).ok_or_else(|| err(node, "axis"))?;
            one(b.gather_grad(g, xs, idx, a)?)
        }
        Op::LayerNormalization { .. } => layer_norm_grad(b, node, ins, &[Some(g)], wanted),
        Op::GroupNormalization {
            num_groups,
            epsilon,
            per_channel,
        } => {
            let groups = (!*per_channel).then_some(*num_groups);
            channel_norm_grad(b, node, ins, g, wanted, *num_groups, groups, *epsilon)
        }
        Op::InstanceNormalization { epsilon } => {
            let c = xs.get(1).copied().ok_or_else(|| err(node, "input rank"))?;
            channel_norm_grad(b, node, ins, g, wanted, c, None, *epsilon)
        }
        Op::LogSoftmax { axis, flatten } => {
            let a = softmax_axis(*axis, *flatten, xs).ok_or_else(|| err(node, "axis"))?;
            one(b.log_softmax_grad(y, g, &a)?)
        }
        Op::Split { .. } => split_grad(b, node, ins, &[Some(g)]),
        Op::Trilu { upper, k } => one(b.trilu(g, *k, *upper)?),
        Op::Tile { repeats: Some(r) } => {
            let (_, full, _) = tile_shapes(xs, r)?;
            let gt = b.reshape(g.clone(), full)?;
            let axes: Vec<usize> = (0..rank).map(|i| 2 * i).collect();
            let mut out = vec![Some(b.reduce(&gt, &axes, false, false))];
            out.extend((1..ins.len()).map(|_| None));
            Ok(out)
        }
        Op::CumSum {
            axis: Some(axis),
            exclusive,
            reverse,
        } => {
            // The sum over the later (earlier, when reversed) outputs each element entered.
            let a = norm_axis(*axis, rank).ok_or_else(|| err(node, "axis"))?;
            one(b.cumsum(g, a, *exclusive, !*reverse)?)
        }
        Op::Einsum(eq) => {
            let shapes: Vec<&[usize]> = ins.iter().map(|t| b.shape(*t)).collect();
            let bound = eq.bind(&shapes).map_err(|e| err(node, e))?;
            (0..ins.len())
                .map(|i| {
                    if i == 0 || wanted.get(i).copied().unwrap_or(false) {
                        Ok(Some(bound.grad(b, ins, g, i)?))
                    } else {
                        Ok(None)
                    }
                })
                .collect()
        }
        // Outputs that do not depend on the input values (shapes, constants): no gradient
        // flows through them.
        Op::Shape { .. } | Op::Constant(_) | Op::ConstantOfShape { .. } | Op::Range => Err(err(
            node,
            format!(
                "has no gradient: operator {} does not depend on its input's values",
                node.op.type_name()
            ),
        )),
        // Run-time indices get no gradient; the data gets the gathered gradient scattered
        // back (an embedding table that is a constant is not `wanted`).
        Op::Gather {
            axis,
            indices: None,
        } => {
            let a = norm_axis(*axis, rank).ok_or_else(|| err(node, "axis"))?;
            let dx = if wanted.first().copied().unwrap_or(false) {
                Some(b.gather_grad(g, xs, &host_indices(b, node, ins, 1)?, a)?)
            } else {
                None
            };
            Ok(vec![dx, None])
        }
        Op::GatherElements { axis } => {
            let a = norm_axis(*axis, rank).ok_or_else(|| err(node, "axis"))?;
            let dx = if wanted.first().copied().unwrap_or(false) {
                Some(b.gather_elements_grad(g, xs, &host_indices(b, node, ins, 1)?, a)?)
            } else {
                None
            };
            Ok(vec![dx, None])
        }
        Op::GatherND { batch_dims } => {
            let dx = if wanted.first().copied().unwrap_or(false) {
                Some(b.gather_nd_grad(g, xs, &host_indices(b, node, ins, 1)?, *batch_dims)?)
            } else {
                None
            };
            Ok(vec![dx, None])
        }
        Op::ScatterND { reduction } => {
            let idx = host_indices(b, node, ins, 1)?;
            let u = ins
                .get(2)
                .ok_or_else(|| err(node, "missing updates input"))?;
            // y = data with the indexed slices replaced (none) or incremented (add) by updates:
            // the data's gradient is g with the replaced slices zeroed (none) or g itself (add);
            // the updates' gradient is g gathered at the indices.
            let dd = match reduction {
                ScatterReduction::None => {
                    let zeros = b.full(b.shape(u), T::zero());
                    b.scatter_nd(g, &idx, &zeros, ScatterReduction::None)?
                }
                ScatterReduction::Add => g.clone(),
                ScatterReduction::Mul | ScatterReduction::Max | ScatterReduction::Min => {
                    return Err(err(
                        node,
                        format!(
                            "the gradient of ScatterND with reduction '{}' is not supported (none and add are)",
                            format!("{reduction:?}").to_lowercase()
                        ),
                    ))
                }
            };
            let du = if wanted.get(2).copied().unwrap_or(false) {
                Some(b.gather_nd(g, &idx, 0)?)
            } else {
                None
            };
            Ok(vec![Some(dd), None, du])
        }
        Op::Resize { .. } => {
            let plan = shape::resize_plan(&node.name, &node.op, xs)?;
            one(b.resize_grad(g, &plan)?)
        }
        // Parameter inputs that specialisation resolves: a node still carrying them was not
        // specialised.
        Op::ClipInputs
        | Op::Pad { pads: None, .. }
        | Op::Tile { repeats: None }
        | Op::CumSum { axis: None, .. } => Err(err(
            node,
            "has no gradient: unresolved parameter input (internal: the graph was not specialised)",
        )),
    }
}

/// Input-gradients of a node whose outputs received the gradients `gs` (one per output,
/// `None` where none arrived; `ys` the outputs the forward pass kept). Split concatenates its
/// pieces' gradients (zeros where a piece got none); LayerNormalization adds the gradients at
/// its Mean and InvStdDev outputs; any other node takes a gradient at its first output only.
pub fn vjp_outputs<T: Float, B: Backend<T>>(
    b: &B,
    node: &Node,
    ins: &[&B::Tensor],
    ys: &[Option<&B::Tensor>],
    gs: &[Option<&B::Tensor>],
    wanted: &[bool],
) -> Result<Vec<Option<B::Tensor>>> {
    match &node.op {
        Op::Split { .. } => split_grad(b, node, ins, gs),
        Op::LayerNormalization { .. } => layer_norm_grad(b, node, ins, gs, wanted),
        _ => {
            if let Some(k) = gs.iter().skip(1).position(Option::is_some) {
                return Err(err(
                    node,
                    format!(
                        "a gradient reached output {} of the node; {} propagates gradients from \
                         its first output only",
                        k + 1,
                        node.op.type_name()
                    ),
                ));
            }
            let (Some(y), Some(g)) = (ys.first().copied().flatten(), gs.first().copied().flatten())
            else {
                return Err(err(node, "no gradient and output to propagate (internal)"));
            };
            vjp(b, node, ins, y, g, wanted)
        }
    }
}

/// Split's input-gradient: the output-gradients concatenated along the split axis, zeros for
/// outputs that received none.
fn split_grad<T: Float, B: Backend<T>>(
    b: &B,
    node: &Node,
    ins: &[&B::Tensor],
    gs: &[Option<&B::Tensor>],
) -> Result<Vec<Option<B::Tensor>>> {
    let xs = b.shape(ins[0]).to_vec();
    let (axis, _) = shape::split_sizes(&node.op, &xs).map_err(|e| err(node, e))?;
    let pieces = shape::split_pieces(&node.op, &xs).map_err(|e| err(node, e))?;
    let zeros: Vec<Option<B::Tensor>> = pieces
        .iter()
        .enumerate()
        .map(|(k, p)| match gs.get(k).copied().flatten() {
            Some(g) if b.shape(g) == p.len.as_slice() => Ok(None),
            Some(g) => Err(err(
                node,
                format!(
                    "gradient of shape {:?} at output {k}, which has shape {:?}",
                    b.shape(g),
                    p.len
                ),
            )),
            None => Ok(Some(b.full(&p.len, T::zero()))),
        })
        .collect::<Result<_>>()?;
    let parts: Vec<&B::Tensor> = zeros
        .iter()
        .enumerate()
        .map(|(k, z)| match z {
            Some(z) => Ok(z),
            None => gs
                .get(k)
                .copied()
                .flatten()
                .ok_or_else(|| err(node, "gradient (internal)")),
        })
        .collect::<Result<_>>()?;
    let mut out = vec![Some(b.concat(&parts, axis)?)];
    out.extend((1..ins.len()).map(|_| None));
    Ok(out)
}

/// LayerNormalization's exact input-gradient (mean and variance as functions of `x`), with
/// the gradients at Mean (`∂μ/∂x = 1/n`) and InvStdDev (`∂s/∂x = −s²·x̂/n`) added when they
/// arrive; the scale and bias gradients when wanted.
fn layer_norm_grad<T: Float, B: Backend<T>>(
    b: &B,
    node: &Node,
    ins: &[&B::Tensor],
    gs: &[Option<&B::Tensor>],
    wanted: &[bool],
) -> Result<Vec<Option<B::Tensor>>> {
    let Op::LayerNormalization { axis, epsilon } = &node.op else {
        return Err(err(node, "not a LayerNormalization (internal)"));
    };
    let (x, scale) = (ins[0], ins[1]);
    let xs = b.shape(x).to_vec();
    let a = norm_axis(*axis, xs.len()).ok_or_else(|| err(node, "axis"))?;
    let rows: usize = xs[..a].iter().product();
    let n = xs[a..].iter().product::<usize>().max(1) as f64;
    let (xhat, _, inv) = b.standardize(x, rows, *epsilon)?;
    let mut stat_shape = xs[..a].to_vec();
    stat_shape.resize(xs.len(), 1);
    let mut dx: Option<B::Tensor> = None;
    let mut out = vec![None; ins.len()];
    if let Some(g) = gs.first().copied().flatten() {
        let gh = b.broadcast(Zip::Mul, g, scale)?;
        dx = Some(b.standardize_grad(&xhat, &inv, &gh)?);
        if wanted.get(1).copied().unwrap_or(false) {
            let gx = b.zip(Zip::Mul, g, &xhat)?;
            out[1] = Some(b.reduce_to_shape(&gx, b.shape(scale))?);
        }
        if let (Some(bias), true) = (ins.get(2), wanted.get(2).copied().unwrap_or(false)) {
            out[2] = Some(b.reduce_to_shape(g, b.shape(*bias))?);
        }
    }
    if let Some(gm) = gs.get(1).copied().flatten() {
        let t = b.reshape(b.map(Map::Divide(n), gm), stat_shape.clone())?;
        dx = Some(match dx {
            Some(d) => b.broadcast(Zip::Add, &d, &t)?,
            None => b.expand(&t, &xs)?,
        });
    }
    if let Some(gi) = gs.get(2).copied().flatten() {
        let inv = b.reshape(inv, stat_shape.clone())?;
        let inv2 = b.zip(Zip::Mul, &inv, &inv)?;
        let c = b.map(Map::Divide(n), &b.zip(Zip::Mul, gi, &inv2)?);
        let t = b.broadcast(Zip::Mul, &xhat, &c)?;
        dx = Some(match dx {
            Some(d) => b.zip(Zip::Sub, &d, &t)?,
            None => b.map(Map::Negate, &t),
        });
    }
    out[0] = Some(dx.ok_or_else(|| err(node, "no gradient reached any output (internal)"))?);
    Ok(out)
}

/// Input-gradient of Group/Instance normalisation: statistics over `rows_per_sample` groups of
/// channels per sample, the affine part per channel (`groups`: scale and bias per group,
/// repeated over the group's channels); scale and bias gradients when wanted.
#[allow(clippy::too_many_arguments)]
fn channel_norm_grad<T: Float, B: Backend<T>>(
    b: &B,
    node: &Node,
    ins: &[&B::Tensor],
    g: &B::Tensor,
    wanted: &[bool],
    rows_per_sample: usize,
    groups: Option<usize>,
    eps: f64,
) -> Result<Vec<Option<B::Tensor>>> {
    let x = ins[0];
    let xs = b.shape(x).to_vec();
    if xs.len() < 2 || ins.len() < 3 {
        return Err(err(node, "expects N×C(×…) input, scale and bias"));
    }
    let c = xs[1];
    let (xhat, _, inv) = b.standardize(x, xs[0] * rows_per_sample, eps)?;
    let scale = norm_channels(b, ins[1], groups, c)?;
    let gh = b.channel(Zip::Mul, g, &scale)?;
    let mut out = vec![Some(b.standardize_grad(&xhat, &inv, &gh)?)];
    // Per channel: sum over samples and positions; per group: then over the group's channels.
    let per_param = |t: &B::Tensor, like: &B::Tensor| -> Result<B::Tensor> {
        let axes: Vec<usize> = (0..xs.len()).filter(|&i| i != 1).collect();
        let mut s = b.reduce(t, &axes, false, false);
        if let Some(gr) = groups {
            s = b.reduce(&b.reshape(s, vec![gr, c / gr.max(1)])?, &[1], false, false);
        }
        Ok(b.reshape(s, b.shape(like).to_vec())?)
    };
    out.push(if wanted.get(1).copied().unwrap_or(false) {
        Some(per_param(&b.zip(Zip::Mul, g, &xhat)?, ins[1])?)
    } else {
        None
    });
    out.push(if wanted.get(2).copied().unwrap_or(false) {
        Some(per_param(g, ins[2])?)
    } else {
        None
    });
    Ok(out)
}

/// Run-time indices of input `i`, read back to the host (they are small) and checked integral.
fn host_indices<T: Float, B: Backend<T>>(
    b: &B,
    node: &Node,
    ins: &[&B::Tensor],
    i: usize,
) -> Result<prism_model::Tensor<i64>> {
    let t = ins
        .get(i)
        .ok_or_else(|| err(node, "missing indices input"))?;
    let host = b.download(t)?;
    index::indices_from_float(&host).map_err(|e| err(node, e))
}

/// The axes a reduction sums over and the input shape with those axes kept as 1.
fn reduced(
    node: &Node,
    xs: &[usize],
    axes: Option<&[i64]>,
    noop_with_empty_axes: bool,
) -> Result<(Vec<usize>, Vec<usize>)> {
    let ax = shape::reduce_axes(axes, noop_with_empty_axes, xs.len())
        .ok_or_else(|| err(node, "axes"))?;
    let kept = xs
        .iter()
        .enumerate()
        .map(|(i, &d)| if ax.contains(&i) { 1 } else { d })
        .collect();
    Ok((ax, kept))
}

fn swap_last<T: Float, B: Backend<T>>(b: &B, t: &B::Tensor) -> Result<B::Tensor> {
    let r = b.shape(t).len();
    let mut p: Vec<usize> = (0..r).collect();
    p.swap(r - 1, r - 2);
    Ok(b.transpose(t, &p)?)
}
