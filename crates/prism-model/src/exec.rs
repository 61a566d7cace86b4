//! Executing resolved nodes: float kernels at run time (through the [`Cpu`] backend), integer
//! kernels for constant folding.

use std::sync::Arc;

use crate::backend::{Backend, Cpu, Map, SoftmaxAxis, Zip};
use crate::error::{ModelError, Result};
use crate::finite::{any_nonfinite, NonFinite, NonFiniteReport};
use crate::fusion::{self, Fused, FusedKind};
use crate::graph::{Graph, Node, Source, ValueId};
use crate::kernels::{elementwise, index, linalg, movement, reduce, threads};
use crate::op::{BinaryOp, CastTo, Op, UnaryOp};
use crate::shape::{self, norm_axis};
use crate::tensor::{Float, Tensor};

/// Runs one resolved node on float inputs. `outs` are the inferred output shapes.
pub fn run_node<T: Float>(
    node: &Node,
    op: &Op,
    inputs: &[&Tensor<T>],
    outs: &[Vec<usize>],
) -> Result<Vec<Tensor<T>>> {
    let name = &node.name;
    let t = op.type_name();
    let err = |d: String| ModelError::node(name, t, d);
    // Backend errors name the backend operation; say which node it was.
    let at = |e: ModelError| ModelError::node(name, t, e.to_string());
    let cpu = Cpu;
    let x = inputs[0];
    let out0 = || outs[0].clone();
    let y = match op {
        Op::Conv { window, group } => {
            let (g, shape) = shape::conv_geom(name, window, *group, x.shape(), inputs[1].shape())?;
            let y = cpu
                .conv2d(x, inputs[1], inputs.get(2).copied(), &g)
                .map_err(at)?;
            y.reshape(shape)?
        }
        Op::ConvTranspose {
            window,
            group,
            output_padding,
            output_shape,
        } => {
            let (g, shape) = shape::conv_transpose_geom(
                name,
                window,
                *group,
                output_padding,
                output_shape,
                x.shape(),
                inputs[1].shape(),
            )?;
            let y = cpu
                .conv_transpose2d(x, inputs[1], inputs.get(2).copied(), &g)
                .map_err(at)?;
            y.reshape(shape)?
        }
        Op::Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
        } => gemm(
            x,
            inputs[1],
            inputs.get(2).copied(),
            *alpha,
            *beta,
            *trans_a,
            *trans_b,
            &out0(),
        )?,
        Op::MatMul => {
            let n = inputs[1].shape().last().copied().unwrap_or(1);
            // A bias merged from a separate Add (prism-attribution's `merge_linear_bias`): in
            // the GEMM when it is one value per column, else broadcast afterwards.
            let row = inputs
                .get(2)
                .filter(|c| c.rank() <= outs[0].len())
                .and_then(|c| row_bias(c, n));
            let y = matmul_bias(x, inputs[1], row)
                .ok_or_else(|| err("shapes do not multiply".into()))?;
            match inputs.get(2) {
                Some(_) if row.is_some() => y,
                Some(bias) => cpu
                    .broadcast(Zip::Add, &y, bias)
                    .map_err(|_| err("bias does not broadcast".into()))?,
                None => y,
            }
        }
        Op::Binary(b) => {
            let f = match b {
                BinaryOp::Add => Zip::Add,
                BinaryOp::Sub => Zip::Sub,
                BinaryOp::Mul => Zip::Mul,
                BinaryOp::Div => Zip::Div,
                b => Zip::Binary(*b),
            };
            cpu.broadcast(f, x, inputs[1])
                .map_err(|_| err("shapes do not broadcast".into()))?
        }
        Op::Unary(u) => cpu.map(Map::Unary(*u), x),
        Op::Max | Op::Min => {
            let f = if matches!(op, Op::Max) {
                Zip::Max
            } else {
                Zip::Min
            };
            let mut y = x.clone();
            for other in &inputs[1..] {
                y = cpu.broadcast(f, &y, other).map_err(at)?;
            }
            y
        }
        Op::Where => {
            if inputs.len() != 3 {
                return Err(err(format!("needs 3 inputs, has {}", inputs.len())));
            }
            cpu.select(x, inputs[1], inputs[2]).map_err(at)?
        }
        Op::Cast { to } => match to {
            // Run-time values are float whatever their ONNX type: integers are carried as
            // their value, booleans as 0/1.
            CastTo::F32 | CastTo::F64 => x.clone(),
            CastTo::Int => cpu.map(Map::Truncate, x),
            CastTo::Bool => cpu.map(Map::NonZero, x),
        },
        Op::Softmax { axis, flatten } => {
            let a = norm_axis(*axis, x.rank()).ok_or_else(|| err("axis out of range".into()))?;
            let s = x.shape();
            let outer: usize = s[..a].iter().product();
            let (len, inner) = if *flatten {
                (s[a..].iter().product(), 1)
            } else {
                (s[a], s[a + 1..].iter().product())
            };
            cpu.softmax(x, &SoftmaxAxis { outer, len, inner })
                .map_err(at)?
        }
        Op::MaxPool { window } => {
            let (g, shape) = shape::pool_geom(name, t, window, x.shape())?;
            cpu.max_pool(x, &g).map_err(at)?.reshape(shape)?
        }
        Op::AveragePool {
            window,
            count_include_pad,
        } => {
            let (g, shape) = shape::pool_geom(name, t, window, x.shape())?;
            cpu.avg_pool(x, &g, *count_include_pad)
                .map_err(at)?
                .reshape(shape)?
        }
        Op::GlobalAveragePool => cpu.global_avg_pool(x),
        Op::GlobalMaxPool => cpu.global_max_pool(x),
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
            let a = shape::reduce_axes(axes.as_deref(), *noop_with_empty_axes, x.rank())
                .ok_or_else(|| err("axes out of range".into()))?;
            cpu.reduce(x, &a, *keepdims, matches!(op, Op::ReduceMean { .. }))
        }
        Op::ReduceL2 {
            axes,
            keepdims,
            noop_with_empty_axes,
        } => {
            let a = shape::reduce_axes(axes.as_deref(), *noop_with_empty_axes, x.rank())
                .ok_or_else(|| err("axes out of range".into()))?;
            let sq = cpu.zip(Zip::Mul, x, x).map_err(at)?;
            cpu.map(
                Map::Unary(UnaryOp::Sqrt),
                &cpu.reduce(&sq, &a, *keepdims, false),
            )
        }
        Op::BatchNormalization { epsilon } => {
            let (a, b) = cpu
                .batchnorm_coefficients(inputs[1], inputs[2], inputs[3], inputs[4], *epsilon)
                .map_err(at)?;
            cpu.channel_affine(x, &a, &b).map_err(at)?
        }
        Op::Concat { axis } => {
            let a = norm_axis(*axis, x.rank()).ok_or_else(|| err("axis out of range".into()))?;
            cpu.concat(inputs, a).map_err(at)?
        }
        Op::Flatten { .. }
        | Op::Reshape { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. }
        | Op::Identity
        | Op::Dropout => Tensor::from_parts(out0(), x.data().to_vec()),
        Op::Transpose { perm } => {
            let p = shape::transpose_perm(perm.as_deref(), x.rank())
                .ok_or_else(|| err("bad perm".into()))?;
            cpu.transpose(x, &p).map_err(at)?
        }
        Op::Pad {
            mode,
            pads: Some(pads),
            value,
            axes,
        } => {
            let full = shape::full_pads(pads, axes.as_deref(), x.rank())
                .ok_or_else(|| err("bad pads".into()))?;
            cpu.pad(x, &full, *mode, T::of(*value))
                .map_err(|_| err("cannot pad an empty axis in this mode".into()))?
        }
        Op::Gather {
            axis,
            indices: Some(idx),
        } => {
            let a = norm_axis(*axis, x.rank()).ok_or_else(|| err("axis out of range".into()))?;
            cpu.gather(x, idx, a)
                .map_err(|_| err("index out of range".into()))?
        }
        Op::Slice { .. } => cpu.slice(
            x,
            &shape::slice_for(op, x.shape()).ok_or_else(|| err("invalid slice".into()))?,
        ),
        Op::Expand { .. } => cpu.expand(x, &outs[0]).map_err(at)?,
        Op::Shape { start, end } => {
            let (s, e) = shape::shape_range(*start, *end, x.rank());
            Tensor::from_parts(
                vec![e - s],
                x.shape()[s..e].iter().map(|&d| T::of(d as f64)).collect(),
            )
        }
        Op::Constant(c) => (*c.to_float::<T>()).clone(),
        Op::LayerNormalization { axis, epsilon } => {
            return layer_norm(node, x.clone(), &inputs[1..], *axis, *epsilon, outs);
        }
        Op::GroupNormalization {
            num_groups,
            epsilon,
            per_channel,
        } => {
            let (n, c) = (x.shape()[0], x.shape()[1]);
            let (xhat, _, _) = cpu.standardize(x, n * num_groups, *epsilon).map_err(at)?;
            let groups = (!*per_channel).then_some(*num_groups);
            let scale = norm_channels(&cpu, inputs[1], groups, c).map_err(at)?;
            let bias = norm_channels(&cpu, inputs[2], groups, c).map_err(at)?;
            cpu.channel_affine(&xhat, &scale, &bias).map_err(at)?
        }
        Op::InstanceNormalization { epsilon } => {
            let (n, c) = (x.shape()[0], x.shape()[1]);
            let (xhat, _, _) = cpu.standardize(x, n * c, *epsilon).map_err(at)?;
            let scale = norm_channels(&cpu, inputs[1], None, c).map_err(at)?;
            let bias = norm_channels(&cpu, inputs[2], None, c).map_err(at)?;
            cpu.channel_affine(&xhat, &scale, &bias).map_err(at)?
        }
        Op::LogSoftmax { axis, flatten } => {
            let a = softmax_axis(*axis, *flatten, x.shape())
                .ok_or_else(|| err("axis out of range".into()))?;
            cpu.log_softmax(x, &a).map_err(at)?
        }
        Op::Split { .. } => {
            let pieces = shape::split_pieces(op, x.shape()).map_err(err)?;
            let ys: Vec<Tensor<T>> = pieces.iter().map(|p| cpu.slice(x, p)).collect();
            if ys.len() != outs.len() || ys.iter().zip(outs).any(|(y, o)| y.shape() != o.as_slice())
            {
                return Err(err(format!(
                    "computed pieces {:?} differ from the inferred {outs:?}",
                    ys.iter().map(|y| y.shape().to_vec()).collect::<Vec<_>>()
                )));
            }
            return Ok(ys);
        }
        Op::Trilu { upper, k } => cpu.trilu(x, *k, *upper).map_err(at)?,
        Op::Tile { repeats: Some(r) } => tile(&cpu, x, r).map_err(at)?,
        Op::CumSum {
            axis: Some(axis),
            exclusive,
            reverse,
        } => {
            let a = norm_axis(*axis, x.rank()).ok_or_else(|| err("axis out of range".into()))?;
            cpu.cumsum(x, a, *exclusive, *reverse).map_err(at)?
        }
        Op::Einsum(eq) => {
            let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
            eq.bind(&shapes)
                .map_err(err)?
                .eval(&cpu, inputs)
                .map_err(at)?
        }
        Op::Range => {
            return Err(err(
                "Range is evaluated at specialisation (internal: the graph was not specialised)"
                    .into(),
            ))
        }
        Op::Tile { repeats: None } | Op::CumSum { axis: None, .. } => {
            return Err(err(
                "unresolved parameter input (internal: the graph was not specialised)".into(),
            ))
        }
        Op::Gather {
            axis,
            indices: None,
        } => {
            let a = norm_axis(*axis, x.rank()).ok_or_else(|| err("axis out of range".into()))?;
            let idx = run_indices(inputs, 1).map_err(&err)?;
            cpu.gather(x, &idx, a).map_err(at)?
        }
        Op::GatherElements { axis } => {
            let a = norm_axis(*axis, x.rank()).ok_or_else(|| err("axis out of range".into()))?;
            let idx = run_indices(inputs, 1).map_err(&err)?;
            cpu.gather_elements(x, &idx, a).map_err(at)?
        }
        Op::GatherND { batch_dims } => {
            let idx = run_indices(inputs, 1).map_err(&err)?;
            cpu.gather_nd(x, &idx, *batch_dims).map_err(at)?
        }
        Op::ScatterND { reduction } => {
            let idx = run_indices(inputs, 1).map_err(&err)?;
            let u = inputs
                .get(2)
                .ok_or_else(|| err("missing updates input".into()))?;
            cpu.scatter_nd(x, &idx, u, *reduction).map_err(at)?
        }
        Op::Resize { .. } => {
            let plan = shape::resize_plan(name, op, x.shape())?;
            cpu.resize(x, &plan).map_err(at)?
        }
        Op::ConstantOfShape { .. } | Op::ClipInputs | Op::Pad { pads: None, .. } => {
            return Err(err(
                "unresolved parameter input (internal: the graph was not specialised)".into(),
            ))
        }
    };
    if y.shape() != outs[0].as_slice() {
        return Err(err(format!(
            "computed shape {:?} differs from the inferred {:?}",
            y.shape(),
            outs[0]
        )));
    }
    Ok(vec![y])
}

/// LayerNormalization of `x` (reusing its buffer), with the Mean and InvStdDev outputs when
/// the node has them: one pass per row when scale and bias have the normalised shape, else
/// standardisation followed by broadcast scale and bias.
fn layer_norm<T: Float>(
    node: &Node,
    mut x: Tensor<T>,
    params: &[&Tensor<T>],
    axis: i64,
    epsilon: f64,
    outs: &[Vec<usize>],
) -> Result<Vec<Tensor<T>>> {
    let err = |d: String| ModelError::node(&node.name, node.op.type_name(), d);
    let at = |e: ModelError| err(e.to_string());
    let cpu = Cpu;
    let a = norm_axis(axis, x.rank()).ok_or_else(|| err("axis out of range".into()))?;
    let rows: usize = x.shape()[..a].iter().product();
    let scale = params
        .first()
        .ok_or_else(|| err("missing scale input".into()))?;
    let bias = params.get(1);
    let fits = |t: &Tensor<T>| t.shape() == &x.shape()[a..];
    let (y, mean, inv) = if fits(scale) && bias.is_none_or(|b| fits(b)) {
        let (mean, inv) = reduce::layer_norm_in_place(
            x.data_mut(),
            rows,
            epsilon,
            scale.data(),
            bias.map(|b| b.data()),
        );
        let rows = vec![rows];
        (
            x,
            Tensor::from_parts(rows.clone(), mean),
            Tensor::from_parts(rows, inv),
        )
    } else {
        let (xhat, mean, inv) = cpu.standardize(&x, rows, epsilon).map_err(at)?;
        let mut y = cpu.broadcast(Zip::Mul, &xhat, scale).map_err(at)?;
        if let Some(bias) = bias {
            y = cpu.broadcast(Zip::Add, &y, bias).map_err(at)?;
        }
        (y, mean, inv)
    };
    if y.shape() != outs[0].as_slice() {
        return Err(err(format!(
            "scale/bias broadcast the output to {:?}, not {:?}",
            y.shape(),
            outs[0]
        )));
    }
    // Mean and InvStdDev, when the node has those outputs.
    let mut ys = vec![y];
    for (stat, shape) in [mean, inv].into_iter().zip(outs.iter().skip(1)) {
        ys.push(stat.reshape(shape.clone())?);
    }
    Ok(ys)
}

/// Runs a node that may overwrite its input at `pos` (`x`, which no later node reads): the
/// data-movement ops that only rename a shape, element-wise ops, Softmax and
/// LayerNormalization reuse its buffer; any other op runs as [`run_node`] does.
fn run_node_reusing<T: Float>(
    node: &Node,
    mut x: Tensor<T>,
    pos: usize,
    others: &[&Tensor<T>],
    outs: &[Vec<usize>],
) -> Result<Vec<Tensor<T>>> {
    let err = |d: String| ModelError::node(&node.name, node.op.type_name(), d);
    let y = match &node.op {
        Op::Flatten { .. }
        | Op::Reshape { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. }
        | Op::Identity
        | Op::Dropout
        | Op::Cast {
            to: CastTo::F32 | CastTo::F64,
        } if pos == 0 => x.reshape(outs[0].clone())?,
        Op::Unary(u) if pos == 0 => {
            let f = elementwise::unary_fn::<T>(*u);
            elementwise::map_in_place(x.data_mut(), f);
            x
        }
        Op::Binary(b) if x.shape() == outs[0].as_slice() && others.len() == 1 => {
            let ok = match b {
                BinaryOp::Add => {
                    elementwise::broadcast_assign(&mut x, others[0], pos == 1, |p, q| p + q)
                }
                BinaryOp::Sub => {
                    elementwise::broadcast_assign(&mut x, others[0], pos == 1, |p, q| p - q)
                }
                BinaryOp::Mul => {
                    elementwise::broadcast_assign(&mut x, others[0], pos == 1, |p, q| p * q)
                }
                BinaryOp::Div => {
                    elementwise::broadcast_assign(&mut x, others[0], pos == 1, |p, q| p / q)
                }
                b => elementwise::broadcast_assign(
                    &mut x,
                    others[0],
                    pos == 1,
                    elementwise::binary_fn::<T>(*b),
                ),
            };
            if !ok {
                return Err(err("shapes do not broadcast".into()));
            }
            x
        }
        Op::Softmax { axis, flatten } if pos == 0 => {
            let a = softmax_axis(*axis, *flatten, x.shape())
                .ok_or_else(|| err("axis out of range".into()))?;
            reduce::softmax_in_place(x.data_mut(), a.outer, a.len, a.inner);
            x
        }
        Op::LayerNormalization { axis, epsilon } if pos == 0 => {
            return layer_norm(node, x, others, *axis, *epsilon, outs);
        }
        op => {
            let mut ins = others.to_vec();
            ins.insert(pos.min(ins.len()), &x);
            return run_node(node, op, &ins, outs);
        }
    };
    if y.shape() != outs[0].as_slice() {
        return Err(err(format!(
            "computed shape {:?} differs from the inferred {:?}",
            y.shape(),
            outs[0]
        )));
    }
    Ok(vec![y])
}

/// Which inputs of `op` [`run_node_reusing`] can overwrite.
fn reusable_inputs(op: &Op) -> &'static [usize] {
    match op {
        Op::Flatten { .. }
        | Op::Reshape { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. }
        | Op::Identity
        | Op::Dropout
        | Op::Cast {
            to: CastTo::F32 | CastTo::F64,
        }
        | Op::Unary(_)
        | Op::Softmax { .. }
        | Op::LayerNormalization { .. } => &[0],
        Op::Binary(_) => &[0, 1],
        _ => &[],
    }
}

/// A bias of `n` values along the last axis (shape `[n]`, or `[1, …, 1, n]`), as a row.
fn row_bias<T>(c: &Tensor<T>, n: usize) -> Option<&[T]> {
    let (last, lead) = c.shape().split_last()?;
    (*last == n && lead.iter().all(|&d| d == 1)).then_some(c.data())
}

/// The outer × axis × inner view of a (Log)Softmax (flattened from `axis` on before opset 13).
pub fn softmax_axis(axis: i64, flatten: bool, s: &[usize]) -> Option<SoftmaxAxis> {
    let a = norm_axis(axis, s.len())?;
    let outer: usize = s[..a].iter().product();
    let (len, inner) = if flatten {
        (s[a..].iter().product(), 1)
    } else {
        (s[a], s[a + 1..].iter().product())
    };
    Some(SoftmaxAxis { outer, len, inner })
}

/// A normalisation's scale or bias as one value per channel (shape `[c]`): as is, or with
/// each of `groups` values repeated for the `c / groups` channels of its group.
pub fn norm_channels<T: Float, B: Backend<T>>(
    b: &B,
    t: &B::Tensor,
    groups: Option<usize>,
    c: usize,
) -> Result<B::Tensor> {
    match groups {
        None => b.reshape(t.clone(), vec![c]),
        Some(g) => {
            let t = b.reshape(t.clone(), vec![g, 1])?;
            let t = b.expand(&t, &[g, c / g.max(1)])?;
            b.reshape(t, vec![c])
        }
    }
}

/// ONNX Tile as a broadcast: `x` of shape [d₀, d₁, …] viewed as [1, d₀, 1, d₁, …], expanded to
/// [r₀, d₀, r₁, d₁, …] and read as [r₀·d₀, r₁·d₁, …].
pub fn tile<T: Float, B: Backend<T>>(b: &B, x: &B::Tensor, repeats: &[i64]) -> Result<B::Tensor> {
    let s = b.shape(x).to_vec();
    let (ones, full, out) = tile_shapes(&s, repeats)?;
    let t = b.reshape(x.clone(), ones)?;
    let t = b.expand(&t, &full)?;
    b.reshape(t, out)
}

/// The interleaved shapes of [`tile`]: ([1, d₀, 1, d₁, …], [r₀, d₀, r₁, d₁, …], output).
pub fn tile_shapes(s: &[usize], repeats: &[i64]) -> Result<(Vec<usize>, Vec<usize>, Vec<usize>)> {
    if repeats.len() != s.len() || repeats.iter().any(|&r| r < 1) {
        return Err(ModelError::Invalid(format!(
            "tile: repeats {repeats:?} must hold one positive count per axis of {s:?}"
        )));
    }
    let ones = s.iter().flat_map(|&d| [1, d]).collect();
    let full = s
        .iter()
        .zip(repeats)
        .flat_map(|(&d, &r)| [r as usize, d])
        .collect();
    let out = s
        .iter()
        .zip(repeats)
        .map(|(&d, &r)| d * r as usize)
        .collect();
    Ok((ones, full, out))
}

/// Run-time indices from input `i` (carried in the float type): checked integral here, in
/// range by the kernel.
fn run_indices<T: Float>(
    inputs: &[&Tensor<T>],
    i: usize,
) -> std::result::Result<Tensor<i64>, String> {
    let t = inputs
        .get(i)
        .ok_or_else(|| "missing indices input".to_string())?;
    index::indices_from_float(t)
}

#[allow(clippy::too_many_arguments)]
fn gemm<T: Float>(
    a: &Tensor<T>,
    b: &Tensor<T>,
    c: Option<&Tensor<T>>,
    alpha: f64,
    beta: f64,
    ta: bool,
    tb: bool,
    out: &[usize],
) -> Result<Tensor<T>> {
    let (m, k, n) = shape::gemm_dims(a.shape(), b.shape(), ta, tb)
        .ok_or_else(|| ModelError::Invalid("gemm shapes".into()))?;
    let mut y = match c {
        Some(c) if beta != 0.0 => {
            let mut y = movement::expand(c, out);
            if beta != 1.0 {
                y.data_mut().iter_mut().for_each(|v| *v *= T::of(beta));
            }
            y
        }
        _ => Tensor::zeros(out),
    };
    let lhs = if ta {
        linalg::Mat::rows_t(a.data(), m)
    } else {
        linalg::Mat::rows(a.data(), k)
    };
    let rhs = if tb {
        linalg::Mat::rows_t(b.data(), k)
    } else {
        linalg::Mat::rows(b.data(), n)
    };
    if alpha == 1.0 {
        // SAFETY: operand views match the checked shapes; y is a fresh buffer of m×n.
        unsafe {
            linalg::gemm_raw(
                m,
                n,
                k,
                y.data_mut().as_mut_ptr(),
                n,
                lhs,
                rhs,
                true,
                threads(),
            )
        };
    } else {
        let mut p = Tensor::<T>::zeros(out);
        // SAFETY: as above.
        unsafe {
            linalg::gemm_raw(
                m,
                n,
                k,
                p.data_mut().as_mut_ptr(),
                n,
                lhs,
                rhs,
                false,
                threads(),
            )
        };
        let al = T::of(alpha);
        y.data_mut()
            .iter_mut()
            .zip(p.data())
            .for_each(|(v, &q)| *v += al * q);
    }
    Ok(y)
}

/// numpy-style matmul with broadcasting over leading batch dimensions.
pub fn matmul<T: Float>(a: &Tensor<T>, b: &Tensor<T>) -> Option<Tensor<T>> {
    matmul_bias(a, b, None)
}

/// [`matmul`] plus a bias of one value per output column (a dense layer), added by the GEMM
/// itself: the output rows start as the bias and the products accumulate onto them.
pub fn matmul_bias<T: Float>(
    a: &Tensor<T>,
    b: &Tensor<T>,
    bias: Option<&[T]>,
) -> Option<Tensor<T>> {
    let (batch, m, k, n, out) = shape::matmul_dims(a.shape(), b.shape())?;
    let nb: usize = batch.iter().product();
    let a_batch: Vec<usize> = if a.rank() > 2 {
        a.shape()[..a.rank() - 2].to_vec()
    } else {
        vec![]
    };
    let b_batch: Vec<usize> = if b.rank() > 2 {
        b.shape()[..b.rank() - 2].to_vec()
    } else {
        vec![]
    };
    let mut y = match bias {
        Some(c) if c.len() != n => return None,
        Some(c) if n > 0 => c.iter().copied().cycle().take(nb * m * n).collect(),
        _ => vec![T::zero(); nb * m * n],
    };
    let acc = bias.is_some();
    if m * n == 0 {
        return Some(Tensor::from_parts(out, y));
    }
    // The right operand is shared by every batch (a dense layer on [batch, tokens, features]):
    // one GEMM over all rows, on all threads.
    if b_batch.iter().all(|&d| d == 1) && a_batch.iter().product::<usize>() == nb {
        linalg::matmul(nb * m, n, k, a.data(), b.data(), &mut y, acc, threads());
        return Some(Tensor::from_parts(out, y));
    }
    let sa = elementwise::broadcast_strides(&a_batch, &batch);
    let sb = elementwise::broadcast_strides(&b_batch, &batch);
    let offsets = |i: usize| {
        let (mut oa, mut ob, mut rem) = (0, 0, i);
        for d in (0..batch.len()).rev() {
            let j = rem % batch[d];
            rem /= batch[d];
            oa += j * sa[d];
            ob += j * sb[d];
        }
        (oa, ob)
    };
    let one = |i: usize, yi: &mut [T], inner: usize| {
        let (oa, ob) = offsets(i);
        let av = &a.data()[oa * m * k..][..m * k];
        let bv = &b.data()[ob * k * n..][..k * n];
        linalg::matmul(m, n, k, av, bv, yi, acc, inner);
    };
    if nb < threads() {
        for (i, yi) in y.chunks_mut(m * n).enumerate() {
            one(i, yi, threads());
        }
    } else {
        // Many small products (attention heads): one per task, each single-threaded.
        use rayon::prelude::*;
        y.par_chunks_mut(m * n)
            .enumerate()
            .for_each(|(i, yi)| one(i, yi, 1));
    }
    Some(Tensor::from_parts(out, y))
}

/// Runs a resolved node on integer constants (shape arithmetic); `None` if the op has no
/// integer meaning.
pub fn run_node_i64(op: &Op, inputs: &[&Tensor<i64>], outs: &[Vec<usize>]) -> Option<Tensor<i64>> {
    let x = inputs[0];
    Some(match op {
        Op::Binary(b) => elementwise::binary_i64(*b, x, inputs.get(1)?)?,
        Op::Concat { axis } => movement::concat(inputs, norm_axis(*axis, x.rank())?),
        Op::Flatten { .. }
        | Op::Reshape { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. }
        | Op::Identity => Tensor::from_parts(outs[0].clone(), x.data().to_vec()),
        Op::Cast { to } => match to {
            CastTo::Bool => x.map(|&v| (v != 0) as i64),
            CastTo::Int | CastTo::F32 | CastTo::F64 => x.clone(),
        },
        Op::Max | Op::Min => {
            let max = matches!(op, Op::Max);
            let mut y = x.clone();
            for other in &inputs[1..] {
                let shape = elementwise::broadcast_shape(y.shape(), other.shape())?;
                y = elementwise::broadcast_map(&y, other, &shape, |a, b| {
                    if max {
                        a.max(b)
                    } else {
                        a.min(b)
                    }
                });
            }
            y
        }
        Op::Where => elementwise::select(x, inputs.get(1)?, inputs.get(2)?)?,
        Op::Unary(UnaryOp::Not) => x.map(|&v| (v == 0) as i64),
        // integers are never NaN or infinite
        Op::Unary(UnaryOp::IsNaN | UnaryOp::IsInf { .. }) => x.map(|_| 0),
        Op::Unary(UnaryOp::Clip { min, max }) => x.map(|&v| {
            let f = v as f64;
            if f < *min {
                min.ceil() as i64
            } else if f > *max {
                max.floor() as i64
            } else {
                v
            }
        }),
        Op::Transpose { perm } => {
            movement::transpose(x, &shape::transpose_perm(perm.as_deref(), x.rank())?)
        }
        Op::Gather {
            axis,
            indices: Some(idx),
        } => movement::gather(x, idx, norm_axis(*axis, x.rank())?)?,
        Op::Slice { .. } => movement::slice(x, &shape::slice_for(op, x.shape())?),
        Op::Gather {
            axis,
            indices: None,
        } => movement::gather(x, inputs.get(1)?, norm_axis(*axis, x.rank())?)?,
        Op::GatherElements { axis } => {
            index::gather_elements(x, inputs.get(1)?, norm_axis(*axis, x.rank())?).ok()?
        }
        Op::GatherND { batch_dims } => index::gather_nd(x, inputs.get(1)?, *batch_dims).ok()?,
        Op::ScatterND { reduction } => {
            index::scatter_nd(x, inputs.get(1)?, inputs.get(2)?, *reduction).ok()?
        }
        Op::Expand { .. } => movement::expand(x, &outs[0]),
        Op::Pad {
            pads: Some(p),
            axes,
            value,
            mode,
        } => movement::pad(
            x,
            &shape::full_pads(p, axes.as_deref(), x.rank())?,
            *mode,
            *value as i64,
        )?,
        Op::Trilu { upper, k } if x.rank() >= 2 => movement::trilu(x, *k, *upper),
        Op::CumSum {
            axis: Some(axis),
            exclusive,
            reverse,
        } => {
            let a = norm_axis(*axis, x.rank())?;
            Tensor::from_parts(
                x.shape().to_vec(),
                reduce::cumsum(x.data(), x.shape(), a, *exclusive, *reverse),
            )
        }
        Op::Tile { repeats: Some(r) } => {
            let (ones, full, out) = tile_shapes(x.shape(), r).ok()?;
            let t = movement::expand(&Tensor::from_parts(ones, x.data().to_vec()), &full);
            Tensor::from_parts(out, t.into_data())
        }
        Op::Unary(UnaryOp::Neg) => x.map(|v| -v),
        Op::Unary(UnaryOp::Abs) => x.map(|v| v.abs()),
        Op::ReduceSum {
            axes,
            keepdims,
            noop_with_empty_axes,
        } => {
            let a = shape::reduce_axes(axes.as_deref(), *noop_with_empty_axes, x.rank())?;
            let f = reduce::reduce(&x.map(|&v| v as f64), &a, *keepdims, false);
            f.map(|&v| v as i64)
        }
        // Float-only arithmetic, and parameters that specialisation resolves: no integer
        // meaning (a new operator must say here whether it folds on integers).
        Op::ReduceL2 { .. } => return None,
        Op::Unary(
            UnaryOp::Relu
            | UnaryOp::LeakyRelu { .. }
            | UnaryOp::Sigmoid
            | UnaryOp::HardSigmoid { .. }
            | UnaryOp::HardSwish
            | UnaryOp::Tanh
            | UnaryOp::Exp
            | UnaryOp::Sqrt
            | UnaryOp::Gelu { .. }
            | UnaryOp::Erf
            | UnaryOp::Reciprocal
            | UnaryOp::Log
            | UnaryOp::Elu { .. }
            | UnaryOp::Selu { .. }
            | UnaryOp::Celu { .. }
            | UnaryOp::Softplus
            | UnaryOp::Softsign
            | UnaryOp::Mish
            | UnaryOp::Sin
            | UnaryOp::Cos,
        )
        | Op::Conv { .. }
        | Op::ConvTranspose { .. }
        | Op::Gemm { .. }
        | Op::MatMul
        | Op::ClipInputs
        | Op::Softmax { .. }
        | Op::MaxPool { .. }
        | Op::AveragePool { .. }
        | Op::GlobalAveragePool
        | Op::GlobalMaxPool
        | Op::ReduceMean { .. }
        | Op::BatchNormalization { .. }
        | Op::Dropout
        | Op::Pad { pads: None, .. }
        | Op::Constant(_)
        | Op::Shape { .. }
        | Op::Resize { .. }
        | Op::ConstantOfShape { .. }
        | Op::LayerNormalization { .. }
        | Op::GroupNormalization { .. }
        | Op::InstanceNormalization { .. }
        | Op::LogSoftmax { .. }
        // Split folds on integers in `specialize` (it has several outputs).
        | Op::Split { .. }
        | Op::Trilu { .. }
        | Op::Range
        | Op::Tile { repeats: None }
        | Op::CumSum { axis: None, .. }
        | Op::Einsum(_) => return None,
    })
}

/// Which computed tensors a forward pass keeps.
#[derive(Clone, Debug, Default)]
pub enum Keep {
    /// Only the graph outputs (intermediates are freed as soon as their last reader ran).
    #[default]
    Outputs,
    /// Every tensor some node reads: what attribution needs for its backward sweep.
    NodeInputs,
    /// The graph outputs and these values.
    Values(Vec<ValueId>),
}

/// The tensors of one forward pass.
#[derive(Debug)]
pub struct Trace<T> {
    /// Indexed by [`ValueId`]; `None` for values not kept (and for constants).
    pub values: Vec<Option<Arc<Tensor<T>>>>,
    /// The graph outputs in order.
    pub outputs: Vec<Arc<Tensor<T>>>,
}

impl<T> Trace<T> {
    pub fn get(&self, id: ValueId) -> Option<&Arc<Tensor<T>>> {
        self.values.get(id.0).and_then(Option::as_ref)
    }
}

/// Where a non-finite value first appeared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    /// A node's output, from finite inputs.
    Node(usize),
    /// A fused group's output (index into the executor's groups), from finite inputs.
    Group(usize),
    /// A constant of the model holding NaN or ±Inf (an attention mask's -Inf, say).
    Constant(ValueId),
}

/// The non-finite bookkeeping of a watched run: for each value holding NaN or ±Inf, where the
/// first of them appeared (its own node, or the origin of a non-finite input).
struct Watch {
    origin: Vec<Option<Origin>>,
}

impl Watch {
    fn new<T: Float>(exec: &Executor<T>) -> Self {
        let origin = exec
            .consts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                c.as_ref()
                    .filter(|c| any_nonfinite(c.data()))
                    .map(|_| Origin::Constant(ValueId(i)))
            })
            .collect();
        Watch { origin }
    }

    /// Notes value `out` (computed as `y` from `inputs` by `here`).
    fn saw<'a, T: Float>(
        &mut self,
        out: ValueId,
        y: &Tensor<T>,
        inputs: impl Iterator<Item = &'a ValueId>,
        here: Origin,
    ) {
        if !any_nonfinite(y.data()) {
            return;
        }
        let inherited = inputs.filter_map(|v| self.origin[v.0]).next();
        self.origin[out.0] = Some(inherited.unwrap_or(here));
    }

    /// The origin in words.
    fn describe(&self, g: &Graph, origin: Option<Origin>, groups: &[Fused]) -> String {
        let node = |i: usize| {
            let n = &g.nodes[i];
            format!("'{}' ({})", n.name, n.op.type_name())
        };
        match origin {
            Some(Origin::Node(i)) => format!(
                "the first non-finite value appears at the output of node {}",
                node(i)
            ),
            Some(Origin::Group(k)) => {
                let names: Vec<String> = groups[k].members.iter().map(|&m| node(m)).collect();
                format!(
                    "the first non-finite value appears in the nodes {}",
                    names.join(", ")
                )
            }
            Some(Origin::Constant(v)) => format!(
                "it comes from the model's constant '{}', which holds NaN or ±Inf",
                g.value(v).name
            ),
            None => "no node was seen producing it".into(),
        }
    }
}

/// Runs a specialised graph in one float type, with its constants converted once.
#[derive(Debug)]
pub struct Executor<T> {
    graph: Arc<Graph>,
    consts: Vec<Option<Arc<Tensor<T>>>>,
    /// For each value, how many node inputs read it (for freeing intermediates).
    readers: Vec<usize>,
    /// Node groups run as one kernel when their intermediates are not kept.
    groups: Vec<Fused>,
    /// For each node, its group in `groups`.
    group_of: Vec<Option<usize>>,
}

impl<T: Float> Executor<T> {
    /// Prepares a specialised graph for execution in `T`.
    pub fn new(graph: Arc<Graph>) -> Result<Self> {
        if !graph.specialized {
            return Err(ModelError::Invalid(
                "the executor needs a specialised graph (call Graph::specialize)".into(),
            ));
        }
        let consts = graph
            .values
            .iter()
            .map(|v| match &v.source {
                Source::Constant(c) => Some(c.to_float::<T>()),
                _ => None,
            })
            .collect();
        let mut readers = vec![0; graph.values.len()];
        for n in &graph.nodes {
            for v in n.inputs.iter().flatten() {
                readers[v.0] += 1;
            }
        }
        for o in &graph.outputs {
            readers[o.0] += 1;
        }
        let groups = fusion::plan(&graph);
        let mut group_of = vec![None; graph.nodes.len()];
        for (i, f) in groups.iter().enumerate() {
            f.members.iter().for_each(|&m| group_of[m] = Some(i));
        }
        Ok(Executor {
            graph,
            consts,
            readers,
            groups,
            group_of,
        })
    }

    pub fn graph(&self) -> &Arc<Graph> {
        &self.graph
    }

    /// How many node groups a forward pass that keeps only the outputs runs as one kernel
    /// (dense layers with their bias Add and GELU, GELUs spelt as five nodes).
    pub fn fused_groups(&self) -> usize {
        self.groups.len()
    }

    /// The constant behind a value, converted to `T`.
    pub fn constant(&self, id: ValueId) -> Option<&Arc<Tensor<T>>> {
        self.consts.get(id.0).and_then(Option::as_ref)
    }

    /// Runs a fused group (see [`fusion`]): its output.
    fn run_fused(
        &self,
        f: &Fused,
        vals: &mut [Option<Arc<Tensor<T>>>],
        remaining: &[usize],
        keep_mask: &[bool],
    ) -> Result<Tensor<T>> {
        let g = &*self.graph;
        let last = &g.nodes[f.members[f.members.len() - 1]];
        let err = |d: String| ModelError::node(&last.name, last.op.type_name(), d);
        let get = |vals: &[Option<Arc<Tensor<T>>>], v: ValueId| {
            self.consts[v.0]
                .clone()
                .or_else(|| vals[v.0].clone())
                .ok_or_else(|| err(format!("input '{}' was not computed", g.value(v).name)))
        };
        let y = match f.kind {
            FusedKind::Linear { a, b, bias, gelu } => {
                let (a, b) = (get(vals, a)?, get(vals, b)?);
                let bias = bias.map(|c| get(vals, c)).transpose()?;
                let mut y = matmul_bias(&a, &b, bias.as_ref().map(|c| c.data()))
                    .ok_or_else(|| err("shapes do not multiply".into()))?;
                if let Some(gelu) = gelu {
                    elementwise::gelu_in_place(y.data_mut(), gelu.r);
                }
                y
            }
            FusedKind::Gelu { x, gelu } => {
                // x's buffer becomes y's when only this group still reads it.
                let reads = f
                    .members
                    .iter()
                    .flat_map(|&m| g.nodes[m].inputs.iter().flatten())
                    .filter(|&&v| v == x)
                    .count();
                let free = self.consts[x.0].is_none() && !keep_mask[x.0] && remaining[x.0] == reads;
                let mut y = match vals[x.0].take() {
                    Some(t) if free => Arc::try_unwrap(t).unwrap_or_else(|t| (*t).clone()),
                    t => {
                        vals[x.0] = t;
                        (*get(vals, x)?).clone()
                    }
                };
                elementwise::gelu_in_place(y.data_mut(), gelu.r);
                y
            }
        };
        let want = g.shape(f.output).unwrap_or_default();
        if y.shape() != want {
            return Err(err(format!(
                "computed shape {:?} differs from the inferred {want:?}",
                y.shape()
            )));
        }
        Ok(y)
    }

    /// Runs the graph on `inputs` (one tensor per graph input, shapes as specialised),
    /// refusing non-finite inputs and results ([`NonFinite::Error`], see [`Self::run_with`]).
    pub fn run(&self, inputs: Vec<Tensor<T>>, keep: &Keep) -> Result<Trace<T>> {
        self.run_with(inputs, keep, NonFinite::Error)
    }

    /// Runs the graph on `inputs` under a non-finite policy. With [`NonFinite::Error`], an
    /// input holding NaN or ±Inf is an error naming its samples, and so is a non-finite graph
    /// output: the run is then repeated watching every node, and the error names the node
    /// where the first non-finite value appeared (or the constant it came from). Debug builds
    /// watch every node on every run. [`NonFinite::Allow`] checks nothing.
    pub fn run_with(
        &self,
        inputs: Vec<Tensor<T>>,
        keep: &Keep,
        policy: NonFinite,
    ) -> Result<Trace<T>> {
        let g = &*self.graph;
        if !policy.checks() {
            return self.run_inner(inputs.into_iter().map(Arc::new).collect(), keep, None);
        }
        for (id, t) in g.inputs.iter().zip(&inputs) {
            if let Some(report) = NonFiniteReport::scan(t, 0) {
                return Err(ModelError::NonFiniteInput {
                    name: g.value(*id).name.clone(),
                    report,
                });
            }
        }
        let inputs: Vec<Arc<Tensor<T>>> = inputs.into_iter().map(Arc::new).collect();
        if crate::finite::watch_every_run() {
            let mut watch = Watch::new(self);
            let trace = self.run_inner(inputs, keep, Some(&mut watch))?;
            return self.check_outputs(trace, &watch);
        }
        let trace = self.run_inner(inputs.clone(), keep, None)?;
        if !trace.outputs.iter().any(|y| any_nonfinite(y.data())) {
            return Ok(trace);
        }
        drop(trace);
        // Run again watching every node, to say where it began.
        let mut watch = Watch::new(self);
        let trace = self.run_inner(inputs, keep, Some(&mut watch))?;
        self.check_outputs(trace, &watch)
    }

    /// The values that the nodes downstream of `from` read without depending on it: with
    /// `from` itself, what [`run_from`](Self::run_from) needs to compute the outputs again after
    /// `from` changed (a skip connection's other branch, say). In graph order, constants left
    /// out.
    pub fn frontier(&self, from: ValueId) -> Vec<ValueId> {
        let g = &*self.graph;
        let mut downstream = vec![false; g.values.len()];
        downstream[from.0] = true;
        let mut read = vec![false; g.values.len()];
        for node in &g.nodes {
            if node.inputs.iter().flatten().any(|v| downstream[v.0]) {
                for v in node.inputs.iter().flatten() {
                    read[v.0] = true;
                }
                for o in &node.outputs {
                    downstream[o.0] = true;
                }
            }
        }
        (0..g.values.len())
            .filter(|&i| read[i] && !downstream[i] && self.consts[i].is_none())
            .map(ValueId)
            .collect()
    }

    /// The graph outputs computed from `given` values (each with its shape in the graph) and
    /// the constants alone: only the nodes between them and the outputs run, node by node.
    /// Used to run the rest of a model again after a hidden tensor was changed (Ablation-CAM),
    /// with `given` = the changed tensor and its [`frontier`](Self::frontier).
    pub fn run_from(
        &self,
        given: Vec<(ValueId, Arc<Tensor<T>>)>,
        policy: NonFinite,
    ) -> Result<Vec<Arc<Tensor<T>>>> {
        let g = &*self.graph;
        let mut vals: Vec<Option<Arc<Tensor<T>>>> = vec![None; g.values.len()];
        for (id, t) in given {
            let want = g.shape(id).unwrap_or_default();
            if t.shape() != want {
                return Err(ModelError::Invalid(format!(
                    "value '{}' given with shape {:?}, the graph has {want:?}",
                    g.value(id).name,
                    t.shape()
                )));
            }
            vals[id.0] = Some(t);
        }
        // the nodes the outputs need, from the outputs back to given values and constants
        let mut needed = vec![false; g.nodes.len()];
        let mut wanted: Vec<ValueId> = g.outputs.clone();
        let mut seen = vec![false; g.values.len()];
        while let Some(v) = wanted.pop() {
            if std::mem::replace(&mut seen[v.0], true)
                || vals[v.0].is_some()
                || self.consts[v.0].is_some()
            {
                continue;
            }
            let Some(n) = g.producer(v) else {
                return Err(ModelError::Invalid(format!(
                    "value '{}' is needed but neither given nor computed by a node",
                    g.value(v).name
                )));
            };
            if !std::mem::replace(&mut needed[n.0], true) {
                wanted.extend(g.node(n).inputs.iter().flatten().copied());
            }
        }
        for (ni, node) in g.nodes.iter().enumerate() {
            if !needed[ni] {
                continue;
            }
            let outs: Vec<Vec<usize>> = node
                .outputs
                .iter()
                .map(|o| g.shape(*o).unwrap_or_default().to_vec())
                .collect();
            let ins: Vec<&Tensor<T>> = node
                .inputs
                .iter()
                .flatten()
                .map(|v| {
                    self.consts[v.0]
                        .as_deref()
                        .or(vals[v.0].as_deref())
                        .ok_or_else(|| {
                            ModelError::node(
                                &node.name,
                                node.op.type_name(),
                                format!("input '{}' was not computed", g.value(*v).name),
                            )
                        })
                })
                .collect::<Result<_>>()?;
            let ys = run_node(node, &node.op, &ins, &outs)?;
            drop(ins);
            for (o, y) in node.outputs.iter().zip(ys) {
                vals[o.0] = Some(Arc::new(y));
            }
        }
        let outputs = self.outputs_of(&vals)?;
        if policy.checks() {
            for (o, y) in g.outputs.iter().zip(&outputs) {
                if let Some(report) = NonFiniteReport::scan(y, 0) {
                    return Err(ModelError::NonFiniteResult {
                        what: format!("the model's output '{}'", g.value(*o).name),
                        report,
                        origin: "a run from a hidden tensor (not watched node by node)".into(),
                    });
                }
            }
        }
        Ok(outputs)
    }

    /// The graph outputs among computed values `vals` (or constants).
    fn outputs_of(&self, vals: &[Option<Arc<Tensor<T>>>]) -> Result<Vec<Arc<Tensor<T>>>> {
        let g = &*self.graph;
        g.outputs
            .iter()
            .map(|o| {
                self.consts[o.0]
                    .clone()
                    .or_else(|| vals[o.0].clone())
                    .ok_or_else(|| {
                        ModelError::Invalid(format!(
                            "output '{}' was not computed",
                            g.value(*o).name
                        ))
                    })
            })
            .collect()
    }

    /// `trace` if its outputs are finite, else the error naming where they stopped being so.
    fn check_outputs(&self, trace: Trace<T>, watch: &Watch) -> Result<Trace<T>> {
        let g = &*self.graph;
        for (o, y) in g.outputs.iter().zip(&trace.outputs) {
            if let Some(report) = NonFiniteReport::scan(y, 0) {
                return Err(ModelError::NonFiniteResult {
                    what: format!("the model's output '{}'", g.value(*o).name),
                    report,
                    origin: watch.describe(g, watch.origin[o.0], &self.groups),
                });
            }
        }
        Ok(trace)
    }

    fn run_inner(
        &self,
        inputs: Vec<Arc<Tensor<T>>>,
        keep: &Keep,
        mut watch: Option<&mut Watch>,
    ) -> Result<Trace<T>> {
        let g = &*self.graph;
        if inputs.len() != g.inputs.len() {
            return Err(ModelError::Invalid(format!(
                "the model takes {} input(s), got {}",
                g.inputs.len(),
                inputs.len()
            )));
        }
        let mut vals: Vec<Option<Arc<Tensor<T>>>> = vec![None; g.values.len()];
        let mut keep_mask = vec![false; g.values.len()];
        match keep {
            Keep::Outputs => {}
            Keep::NodeInputs => {
                for n in &g.nodes {
                    for v in n.inputs.iter().flatten() {
                        keep_mask[v.0] = self.consts[v.0].is_none();
                    }
                }
            }
            Keep::Values(ids) => ids.iter().for_each(|v| keep_mask[v.0] = true),
        }
        for o in &g.outputs {
            keep_mask[o.0] = true;
        }
        for (id, t) in g.inputs.iter().zip(inputs) {
            let want = g.shape(*id).unwrap_or_default();
            if t.shape() != want {
                return Err(ModelError::Input {
                    name: g.value(*id).name.clone(),
                    detail: format!("expected shape {want:?}, got {:?}", t.shape()),
                });
            }
            vals[id.0] = Some(t);
        }
        let mut remaining = self.readers.clone();
        let fused: Vec<bool> = self
            .groups
            .iter()
            .map(|f| !f.internal.iter().any(|v| keep_mask[v.0]))
            .collect();
        for (ni, node) in g.nodes.iter().enumerate() {
            if let Some((k, f)) = self.group_of[ni]
                .filter(|&i| fused[i])
                .map(|i| (i, &self.groups[i]))
            {
                // Members run together at the last one (their inputs are all computed by then).
                if f.members.last() != Some(&ni) {
                    continue;
                }
                let y = self.run_fused(f, &mut vals, &remaining, &keep_mask)?;
                if let Some(w) = watch.as_deref_mut() {
                    let ins = f
                        .members
                        .iter()
                        .flat_map(|&m| g.nodes[m].inputs.iter().flatten());
                    w.saw(f.output, &y, ins, Origin::Group(k));
                }
                vals[f.output.0] = Some(Arc::new(y));
                for &m in &f.members {
                    for v in g.nodes[m].inputs.iter().flatten() {
                        remaining[v.0] = remaining[v.0].saturating_sub(1);
                        if remaining[v.0] == 0 && !keep_mask[v.0] {
                            vals[v.0] = None;
                        }
                    }
                }
                continue;
            }
            let outs: Vec<Vec<usize>> = node
                .outputs
                .iter()
                .map(|o| g.shape(*o).unwrap_or_default().to_vec())
                .collect();
            // An input that no later node reads and nobody keeps: its buffer can become the
            // output (a Reshape renames it, an element-wise op overwrites it).
            let flat: Vec<ValueId> = node.inputs.iter().flatten().copied().collect();
            let mut owned = None;
            for &pos in reusable_inputs(&node.op) {
                let Some(&v) = flat.get(pos) else { continue };
                if self.consts[v.0].is_some() || keep_mask[v.0] || remaining[v.0] != 1 {
                    continue;
                }
                if let Some(arc) = vals[v.0].take() {
                    match Arc::try_unwrap(arc) {
                        Ok(t) => {
                            owned = Some((pos, t));
                            break;
                        }
                        Err(arc) => vals[v.0] = Some(arc),
                    }
                }
            }
            let ins: Vec<&Tensor<T>> = flat
                .iter()
                .enumerate()
                .filter(|(i, _)| owned.as_ref().is_none_or(|(pos, _)| pos != i))
                .map(|(_, v)| {
                    self.consts[v.0]
                        .as_deref()
                        .or(vals[v.0].as_deref())
                        .ok_or_else(|| {
                            ModelError::node(
                                &node.name,
                                node.op.type_name(),
                                format!("input '{}' was not computed", g.value(*v).name),
                            )
                        })
                })
                .collect::<Result<_>>()?;
            let ys = match owned {
                Some((pos, x)) => run_node_reusing(node, x, pos, &ins, &outs)?,
                None => run_node(node, &node.op, &ins, &outs)?,
            };
            drop(ins);
            for (o, y) in node.outputs.iter().zip(ys) {
                if let Some(w) = watch.as_deref_mut() {
                    w.saw(*o, &y, node.inputs.iter().flatten(), Origin::Node(ni));
                }
                vals[o.0] = Some(Arc::new(y));
            }
            for v in node.inputs.iter().flatten() {
                remaining[v.0] = remaining[v.0].saturating_sub(1);
                if remaining[v.0] == 0 && !keep_mask[v.0] {
                    vals[v.0] = None;
                }
            }
        }
        let outputs = self.outputs_of(&vals)?;
        for (i, v) in vals.iter_mut().enumerate() {
            if !keep_mask[i] {
                *v = None;
            }
        }
        Ok(Trace {
            values: vals,
            outputs,
        })
    }
}
