//! Vector-Jacobian products (input-gradients) of every operator Prism executes.
//!
//! A node without an LRP rule passes relevance on by its true gradient, so the same machinery
//! gives plain gradients, and the modified-gradient rules call into these for the linear part.

use prism_model::kernels::elementwise::{broadcast_map, broadcast_strides};
use prism_model::kernels::{conv, linalg, movement, pool, reduce};
use prism_model::op::{BinaryOp, Op, PadMode, UnaryOp};
use prism_model::shape::{self, norm_axis};
use prism_model::{Float, Node, Tensor};

use crate::error::{AttributionError, Result};

/// Sums `g` over the axes along which a tensor of `shape` was broadcast to `g`'s shape.
pub fn reduce_to_shape<T: Float>(g: &Tensor<T>, shape: &[usize]) -> Tensor<T> {
    if g.shape() == shape {
        return g.clone();
    }
    let out_shape = g.shape().to_vec();
    let strides = broadcast_strides(shape, &out_shape);
    let mut acc = vec![T::zero(); shape.iter().product()];
    let mut idx = vec![0usize; out_shape.len()];
    let mut pos = 0usize;
    for &v in g.data() {
        acc[pos] += v;
        for d in (0..out_shape.len()).rev() {
            idx[d] += 1;
            pos += strides[d];
            if idx[d] < out_shape[d] {
                break;
            }
            pos -= strides[d] * out_shape[d];
            idx[d] = 0;
        }
    }
    Tensor::new(shape.to_vec(), acc).unwrap_or_else(|_| Tensor::zeros(shape))
}

fn err(node: &Node, detail: impl Into<String>) -> AttributionError {
    AttributionError::Node {
        node: node.name.clone(),
        op: node.op.type_name().to_string(),
        detail: detail.into(),
    }
}

/// Input-gradients of `node` for output-gradient `g`. `ins` are the node's inputs (data and
/// parameters, in order), `y` its output, `wanted[i]` whether input i needs a gradient (it is
/// computed, not a parameter). Returns one gradient per input (`None` where not computed).
pub fn vjp<T: Float>(
    node: &Node,
    ins: &[&Tensor<T>],
    y: &Tensor<T>,
    g: &Tensor<T>,
    wanted: &[bool],
) -> Result<Vec<Option<Tensor<T>>>> {
    let x = ins[0];
    let one = |t: Tensor<T>| Ok(vec![Some(t)]);
    match &node.op {
        Op::Conv { window, group } => {
            let (geom, _) =
                shape::conv_geom(&node.name, window, *group, x.shape(), ins[1].shape())?;
            let dx = conv::conv2d_input_grad(g.data(), ins[1].data(), &geom);
            one(dx.reshape(x.shape().to_vec())?)
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
                x.shape(),
                ins[1].shape(),
            )?;
            let dx = conv::conv2d(g.data(), ins[1].data(), None, &geom);
            one(dx.reshape(x.shape().to_vec())?)
        }
        Op::Gemm {
            alpha,
            trans_a,
            trans_b,
            ..
        } => {
            let (m, k, n) = shape::gemm_dims(x.shape(), ins[1].shape(), *trans_a, *trans_b)
                .ok_or_else(|| err(node, "gemm shapes"))?;
            // dA' = alpha · g · B'ᵀ ; dB' = alpha · A'ᵀ · g, with transposes as strided views
            // (weights of dense layers can be hundreds of MB: never copy them).
            let threads = prism_model::kernels::threads();
            // B'ᵀ (n×k): B' is B (stored k×n, read transposed) or Bᵀ (B stored n×k, read as is)
            let mut da =
                linalg::matmul_t(m, k, n, g.data(), false, ins[1].data(), !*trans_b, threads);
            scale(&mut da, *alpha);
            let da = Tensor::new(vec![m, k], da)?;
            let da = if *trans_a {
                movement::transpose(&da, &[1, 0])
            } else {
                da
            };
            let mut out = vec![Some(da)];
            if ins.len() > 1 {
                out.push(if wanted.get(1).copied().unwrap_or(false) {
                    // A'ᵀ (k×m): A' is A (stored m×k, read transposed) or Aᵀ (A stored k×m)
                    let mut db = linalg::matmul_t(
                        k,
                        n,
                        m,
                        ins[0].data(),
                        !*trans_a,
                        g.data(),
                        false,
                        threads,
                    );
                    scale(&mut db, *alpha);
                    let db = Tensor::new(vec![k, n], db)?;
                    Some(if *trans_b {
                        movement::transpose(&db, &[1, 0])
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
            let (a, b) = (ins[0], ins[1]);
            if a.rank() < 2 || b.rank() < 2 {
                return Err(err(
                    node,
                    "gradients of 1-D matmul operands are not supported",
                ));
            }
            let bt = swap_last(b);
            let at = swap_last(a);
            let da = prism_model::exec::matmul(g, &bt).ok_or_else(|| err(node, "matmul shapes"))?;
            let db = if wanted.get(1).copied().unwrap_or(false) {
                let db =
                    prism_model::exec::matmul(&at, g).ok_or_else(|| err(node, "matmul shapes"))?;
                Some(reduce_to_shape(&db, b.shape()))
            } else {
                None
            };
            Ok(vec![Some(reduce_to_shape(&da, a.shape())), db])
        }
        Op::Binary(op) => {
            let (a, b) = (ins[0], ins[1]);
            let out = g.shape().to_vec();
            let (ga, gb) = match op {
                BinaryOp::Add => (g.clone(), g.clone()),
                BinaryOp::Sub => (g.clone(), g.map(|v| -*v)),
                BinaryOp::Mul => (
                    broadcast_map(g, b, &out, |gv, bv| gv * bv),
                    broadcast_map(g, a, &out, |gv, av| gv * av),
                ),
                BinaryOp::Div => {
                    let ga = broadcast_map(g, b, &out, |gv, bv| gv / bv);
                    // d(a/b)/db = -a/b² = -y/b
                    let yb = broadcast_map(y, b, &out, |yv, bv| yv / bv);
                    (ga, broadcast_map(g, &yb, &out, |gv, q| -gv * q))
                }
            };
            Ok(vec![
                Some(reduce_to_shape(&ga, a.shape())),
                Some(reduce_to_shape(&gb, b.shape())),
            ])
        }
        Op::Unary(u) => one(unary_vjp(*u, x, y, g)),
        Op::Softmax { axis, flatten } => {
            let a = norm_axis(*axis, x.rank()).ok_or_else(|| err(node, "axis"))?;
            let s = x.shape();
            let outer: usize = s[..a].iter().product();
            let (len, inner) = if *flatten {
                (s[a..].iter().product(), 1)
            } else {
                (s[a], s[a + 1..].iter().product())
            };
            let mut dx = vec![T::zero(); x.len()];
            for o in 0..outer {
                for i in 0..inner {
                    let at = |k: usize| o * len * inner + k * inner + i;
                    let dot: T = (0..len).map(|k| g.data()[at(k)] * y.data()[at(k)]).sum();
                    for k in 0..len {
                        dx[at(k)] = y.data()[at(k)] * (g.data()[at(k)] - dot);
                    }
                }
            }
            one(Tensor::new(s.to_vec(), dx)?)
        }
        Op::MaxPool { window } => {
            let (geom, _) = shape::pool_geom(&node.name, "MaxPool", window, x.shape())?;
            one(pool::max_pool_input_grad(x.data(), g.data(), &geom).reshape(x.shape().to_vec())?)
        }
        Op::AveragePool {
            window,
            count_include_pad,
        } => {
            let (geom, _) = shape::pool_geom(&node.name, "AveragePool", window, x.shape())?;
            one(
                pool::avg_pool_input_grad(g.data(), &geom, *count_include_pad)
                    .reshape(x.shape().to_vec())?,
            )
        }
        Op::GlobalAveragePool => {
            let plane: usize = x.shape()[2..].iter().product();
            let n = T::of(plane.max(1) as f64);
            let data: Vec<T> = g
                .data()
                .iter()
                .flat_map(|&v| std::iter::repeat_n(v / n, plane))
                .collect();
            one(Tensor::new(x.shape().to_vec(), data)?)
        }
        Op::GlobalMaxPool => {
            let plane: usize = x.shape()[2..].iter().product();
            let mut dx = vec![T::zero(); x.len()];
            for (p, chunk) in x.data().chunks(plane.max(1)).enumerate() {
                let mut best = 0;
                for (i, &v) in chunk.iter().enumerate() {
                    if v > chunk[best] {
                        best = i;
                    }
                }
                dx[p * plane + best] = g.data()[p];
            }
            one(Tensor::new(x.shape().to_vec(), dx)?)
        }
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
            let ax = shape::reduce_axes(axes.as_deref(), *noop_with_empty_axes, x.rank())
                .ok_or_else(|| err(node, "axes"))?;
            let kept: Vec<usize> = x
                .shape()
                .iter()
                .enumerate()
                .map(|(i, &d)| if ax.contains(&i) { 1 } else { d })
                .collect();
            let gk = if *keepdims {
                g.clone()
            } else {
                g.clone().reshape(kept)?
            };
            let mut dx = movement::expand(&gk, x.shape());
            if matches!(node.op, Op::ReduceMean { .. }) {
                let count: usize = ax.iter().map(|&a| x.shape()[a]).product();
                let c = T::of(count.max(1) as f64);
                dx.data_mut().iter_mut().for_each(|v| *v = *v / c);
            }
            one(dx)
        }
        Op::BatchNormalization { epsilon } => {
            let (a, _) = reduce::batchnorm_coefficients(
                ins[1].data(),
                ins[2].data(),
                ins[3].data(),
                ins[4].data(),
                *epsilon,
            );
            let zero = vec![T::zero(); a.len()];
            let mut out = vec![Some(reduce::channel_affine(g, &a, &zero))];
            out.extend((1..ins.len()).map(|_| None));
            Ok(out)
        }
        Op::Concat { axis } => {
            let a = norm_axis(*axis, x.rank()).ok_or_else(|| err(node, "axis"))?;
            let mut start = 0i64;
            let mut out = Vec::new();
            for t in ins {
                let len = t.shape()[a] as i64;
                let spec = movement::slice_spec(g.shape(), &[start], &[start + len], &[a], &[1])
                    .ok_or_else(|| err(node, "slice"))?;
                out.push(Some(movement::slice(g, &spec)));
                start += len;
            }
            Ok(out)
        }
        Op::Flatten { .. }
        | Op::Reshape { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. }
        | Op::Identity
        | Op::Dropout
        | Op::Cast { .. } => one(Tensor::new(x.shape().to_vec(), g.data().to_vec())?),
        Op::Transpose { perm } => {
            let p = shape::transpose_perm(perm.as_deref(), x.rank())
                .ok_or_else(|| err(node, "perm"))?;
            let mut inv = vec![0; p.len()];
            for (i, &q) in p.iter().enumerate() {
                inv[q] = i;
            }
            one(movement::transpose(g, &inv))
        }
        Op::Pad {
            mode,
            pads: Some(pads),
            axes,
            ..
        } => {
            let full = shape::full_pads(pads, axes.as_deref(), x.rank())
                .ok_or_else(|| err(node, "pads"))?;
            one(pad_vjp(x.shape(), &full, *mode, g))
        }
        Op::Slice { .. } => {
            let spec = shape::slice_for(&node.op, x.shape()).ok_or_else(|| err(node, "slice"))?;
            one(scatter_slice(x.shape(), &spec, g))
        }
        Op::Expand { .. } => one(reduce_to_shape(g, x.shape())),
        Op::Gather {
            axis,
            indices: Some(idx),
        } => {
            let a = norm_axis(*axis, x.rank()).ok_or_else(|| err(node, "axis"))?;
            let s = x.shape();
            let outer: usize = s[..a].iter().product();
            let inner: usize = s[a + 1..].iter().product();
            let mut dx = vec![T::zero(); x.len()];
            let mut gi = 0;
            for o in 0..outer {
                for &i in idx.data() {
                    let i = if i < 0 { i + s[a] as i64 } else { i } as usize;
                    let base = (o * s[a] + i) * inner;
                    for k in 0..inner {
                        dx[base + k] += g.data()[gi];
                        gi += 1;
                    }
                }
            }
            one(Tensor::new(s.to_vec(), dx)?)
        }
        other => Err(err(
            node,
            format!("has no gradient for operator {}", other.type_name()),
        )),
    }
}

fn scale<T: Float>(v: &mut [T], alpha: f64) {
    if alpha != 1.0 {
        let a = T::of(alpha);
        v.iter_mut().for_each(|x| *x *= a);
    }
}

fn swap_last<T: Float>(t: &Tensor<T>) -> Tensor<T> {
    let r = t.rank();
    let mut p: Vec<usize> = (0..r).collect();
    p.swap(r - 1, r - 2);
    movement::transpose(t, &p)
}

/// Gradient of a unary op, as PyTorch defines it at the kinks.
pub fn unary_vjp<T: Float>(u: UnaryOp, x: &Tensor<T>, y: &Tensor<T>, g: &Tensor<T>) -> Tensor<T> {
    let zero = T::zero();
    let one = T::one();
    let f = |xv: T, yv: T| -> T {
        match u {
            UnaryOp::Relu => {
                if xv > zero {
                    one
                } else {
                    zero
                }
            }
            UnaryOp::LeakyRelu { alpha } => {
                if xv > zero {
                    one
                } else {
                    T::of(alpha)
                }
            }
            UnaryOp::Clip { min, max } => {
                if xv >= T::of(min) && xv <= T::of(max) {
                    one
                } else {
                    zero
                }
            }
            UnaryOp::Sigmoid => yv * (one - yv),
            UnaryOp::HardSigmoid { alpha, beta } => {
                let t = T::of(alpha) * xv + T::of(beta);
                if t > zero && t < one {
                    T::of(alpha)
                } else {
                    zero
                }
            }
            UnaryOp::HardSwish => {
                if xv < T::of(-3.0) {
                    zero
                } else if xv <= T::of(3.0) {
                    xv / T::of(3.0) + T::of(0.5)
                } else {
                    one
                }
            }
            UnaryOp::Tanh => one - yv * yv,
            UnaryOp::Exp => yv,
            UnaryOp::Sqrt => T::of(0.5) / yv,
            UnaryOp::Neg => -one,
            UnaryOp::Abs => {
                if xv > zero {
                    one
                } else if xv < zero {
                    -one
                } else {
                    zero
                }
            }
        }
    };
    let data = x
        .data()
        .iter()
        .zip(y.data())
        .zip(g.data())
        .map(|((&xv, &yv), &gv)| f(xv, yv) * gv)
        .collect();
    Tensor::new(x.shape().to_vec(), data).unwrap_or_else(|_| Tensor::zeros(x.shape()))
}

fn scatter_slice<T: Float>(
    shape: &[usize],
    spec: &movement::SliceSpec,
    g: &Tensor<T>,
) -> Tensor<T> {
    let mut dx = vec![T::zero(); shape.iter().product()];
    let mut st = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        st[i] = st[i + 1] * shape[i + 1];
    }
    let r = shape.len();
    let mut idx = vec![0usize; r];
    for &v in g.data() {
        let mut pos = 0isize;
        for d in 0..r {
            pos += (spec.start[d] + idx[d] as isize * spec.step[d]) * st[d] as isize;
        }
        dx[pos as usize] += v;
        for d in (0..r).rev() {
            idx[d] += 1;
            if idx[d] < spec.len[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Tensor::new(shape.to_vec(), dx).unwrap_or_else(|_| Tensor::zeros(shape))
}

fn pad_vjp<T: Float>(shape: &[usize], pads: &[i64], mode: PadMode, g: &Tensor<T>) -> Tensor<T> {
    let mut dx = vec![T::zero(); shape.iter().product()];
    if let Some((_, sources)) = movement::pad_sources(shape, pads, mode) {
        for (src, &v) in sources.iter().zip(g.data()) {
            if let Some(i) = src {
                dx[*i] += v;
            }
        }
    }
    Tensor::new(shape.to_vec(), dx).unwrap_or_else(|_| Tensor::zeros(shape))
}
