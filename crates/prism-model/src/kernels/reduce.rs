//! Reductions over axes, softmax, and inference-mode batch normalisation.

use rayon::prelude::*;

use crate::tensor::{Float, Tensor};

/// Sums (or averages) over the given normalised axes.
pub fn reduce<T: Float>(x: &Tensor<T>, axes: &[usize], keepdims: bool, mean: bool) -> Tensor<T> {
    let s = x.shape();
    let mut out_full: Vec<usize> = s.to_vec();
    for &a in axes {
        out_full[a] = 1;
    }
    let n_out: usize = out_full.iter().product();
    let mut acc = vec![T::zero(); n_out];
    // strides of the reduced tensor, 0 on reduced axes
    let mut ost = vec![0usize; s.len()];
    let mut st = 1;
    for d in (0..s.len()).rev() {
        ost[d] = if out_full[d] == 1 && axes.contains(&d) {
            0
        } else {
            st
        };
        st *= out_full[d];
    }
    let mut idx = vec![0usize; s.len()];
    let mut pos = 0usize;
    for &v in x.data() {
        acc[pos] += v;
        for d in (0..s.len()).rev() {
            idx[d] += 1;
            pos += ost[d];
            if idx[d] < s[d] {
                break;
            }
            pos -= ost[d] * s[d];
            idx[d] = 0;
        }
    }
    if mean {
        let count: usize = axes.iter().map(|&a| s[a]).product();
        let c = T::of(count.max(1) as f64);
        acc.iter_mut().for_each(|v| *v = *v / c);
    }
    let shape = if keepdims {
        out_full
    } else {
        s.iter()
            .enumerate()
            .filter(|(i, _)| !axes.contains(i))
            .map(|(_, &d)| d)
            .collect()
    };
    Tensor::from_parts(shape, acc)
}

/// Softmax over a contiguous block: the tensor is viewed as outer × axis_len × inner.
pub fn softmax<T: Float>(x: &Tensor<T>, outer: usize, axis_len: usize, inner: usize) -> Tensor<T> {
    let mut out = x.data().to_vec();
    softmax_in_place(&mut out, outer, axis_len, inner);
    Tensor::from_parts(x.shape().to_vec(), out)
}

/// [`softmax`] overwriting its input.
pub fn softmax_in_place<T: Float>(out: &mut [T], outer: usize, axis_len: usize, inner: usize) {
    if axis_len == 0 || out.is_empty() {
        return;
    }
    out.par_chunks_mut(axis_len * inner)
        .take(outer)
        .for_each(|block| {
            if inner == 1 {
                // the common last-axis case, on contiguous rows
                let m = block.iter().fold(T::neg_infinity(), |m, &v| m.max(v));
                let mut sum = T::zero();
                for v in block.iter_mut() {
                    *v = (*v - m).exp();
                    sum += *v;
                }
                block.iter_mut().for_each(|v| *v = *v / sum);
                return;
            }
            for i in 0..inner {
                let mut m = T::neg_infinity();
                for k in 0..axis_len {
                    m = m.max(block[k * inner + i]);
                }
                let mut sum = T::zero();
                for k in 0..axis_len {
                    let e = (block[k * inner + i] - m).exp();
                    block[k * inner + i] = e;
                    sum += e;
                }
                for k in 0..axis_len {
                    block[k * inner + i] = block[k * inner + i] / sum;
                }
            }
        });
}

/// Per-channel affine coefficients of inference-mode batch normalisation:
/// `y = x · a + b` with `a = γ / √(σ² + ε)` and `b = β − μ · a`.
pub fn batchnorm_coefficients<T: Float>(
    scale: &[T],
    bias: &[T],
    mean: &[T],
    var: &[T],
    eps: f64,
) -> (Vec<T>, Vec<T>) {
    let a: Vec<T> = scale
        .iter()
        .zip(var)
        .map(|(&g, &v)| g / (v + T::of(eps)).sqrt())
        .collect();
    let b = bias
        .iter()
        .zip(mean)
        .zip(&a)
        .map(|((&b, &m), &a)| b - m * a)
        .collect();
    (a, b)
}

/// Applies per-channel `y = x · a[c] + b[c]` over N × C × (spatial…).
pub fn channel_affine<T: Float>(x: &Tensor<T>, a: &[T], b: &[T]) -> Tensor<T> {
    let c = a.len();
    let plane = if x.shape().len() > 2 {
        x.shape()[2..].iter().product()
    } else {
        1
    };
    let mut out = x.data().to_vec();
    out.par_chunks_mut(plane.max(1))
        .enumerate()
        .for_each(|(p, chunk)| {
            let ch = p % c;
            let (a, b) = (a[ch], b[ch]);
            chunk.iter_mut().for_each(|v| *v = *v * a + b);
        });
    Tensor::from_parts(x.shape().to_vec(), out)
}

/// Standardises each of the `rows` contiguous rows of `x`: `x̂ = (x − μ) · s` with the row's
/// mean `μ`, biased variance `σ²` (two passes) and `s = 1 / √(σ² + ε)`. Returns `(x̂, μ, s)`.
pub fn standardize<T: Float>(x: &[T], rows: usize, eps: f64) -> (Vec<T>, Vec<T>, Vec<T>) {
    let len = x.len() / rows.max(1);
    let mut y = x.to_vec();
    let mut mean = vec![T::zero(); rows];
    let mut inv = vec![T::zero(); rows];
    if len == 0 {
        return (y, mean, inv);
    }
    let n = T::of(len as f64);
    let eps = T::of(eps);
    y.par_chunks_mut(len)
        .zip(mean.par_iter_mut().zip(inv.par_iter_mut()))
        .for_each(|(row, (m, s))| {
            let mu = row.iter().copied().sum::<T>() / n;
            let var = row.iter().map(|&v| (v - mu) * (v - mu)).sum::<T>() / n;
            let inv = T::one() / (var + eps).sqrt();
            row.iter_mut().for_each(|v| *v = (*v - mu) * inv);
            *m = mu;
            *s = inv;
        });
    (y, mean, inv)
}

/// Layer normalisation of `rows` rows in place, `y = (x − μ) · s · γ + β` per row (the
/// arithmetic of [`standardize`] followed by the scale and the shift, in one pass over each row
/// while it is in cache); returns the per-row mean and `s = 1/√(σ² + ε)`.
pub fn layer_norm_in_place<T: Float>(
    x: &mut [T],
    rows: usize,
    eps: f64,
    scale: &[T],
    bias: Option<&[T]>,
) -> (Vec<T>, Vec<T>) {
    let len = x.len() / rows.max(1);
    let mut mean = vec![T::zero(); rows];
    let mut inv = vec![T::zero(); rows];
    if len == 0 {
        return (mean, inv);
    }
    let n = T::of(len as f64);
    let eps = T::of(eps);
    x.par_chunks_mut(len)
        .zip(mean.par_iter_mut().zip(inv.par_iter_mut()))
        .for_each(|(row, (m, s))| {
            let mu = row.iter().copied().sum::<T>() / n;
            let var = row.iter().map(|&v| (v - mu) * (v - mu)).sum::<T>() / n;
            let inv = T::one() / (var + eps).sqrt();
            match bias {
                Some(b) => row
                    .iter_mut()
                    .zip(scale.iter().zip(b))
                    .for_each(|(v, (&g, &c))| *v = (*v - mu) * inv * g + c),
                None => row
                    .iter_mut()
                    .zip(scale)
                    .for_each(|(v, &g)| *v = (*v - mu) * inv * g),
            }
            *m = mu;
            *s = inv;
        });
    (mean, inv)
}

/// Input-gradient of [`standardize`] for the gradient `g` at `x̂`, per row:
/// `∂x = s · (g − mean(g) − x̂ · mean(g ⊙ x̂))`.
pub fn standardize_grad<T: Float>(xhat: &[T], inv: &[T], g: &[T]) -> Vec<T> {
    let rows = inv.len();
    let len = xhat.len() / rows.max(1);
    let mut dx = vec![T::zero(); xhat.len()];
    if len == 0 {
        return dx;
    }
    let n = T::of(len as f64);
    dx.par_chunks_mut(len)
        .zip(xhat.par_chunks(len).zip(g.par_chunks(len)))
        .zip(inv.par_iter())
        .for_each(|((d, (xh, gr)), &s)| {
            let mg = gr.iter().copied().sum::<T>() / n;
            let mgx = gr.iter().zip(xh).map(|(&a, &b)| a * b).sum::<T>() / n;
            for ((dv, &gv), &xv) in d.iter_mut().zip(gr).zip(xh) {
                *dv = s * (gv - mg - xv * mgx);
            }
        });
    dx
}

/// Log-softmax over a tensor viewed as outer × axis_len × inner: `x − m − log Σ exp(x − m)`
/// with `m` the maximum along the axis.
pub fn log_softmax<T: Float>(
    x: &Tensor<T>,
    outer: usize,
    axis_len: usize,
    inner: usize,
) -> Tensor<T> {
    let mut out = x.data().to_vec();
    if axis_len == 0 || out.is_empty() {
        return Tensor::from_parts(x.shape().to_vec(), out);
    }
    out.par_chunks_mut(axis_len * inner)
        .take(outer)
        .for_each(|block| {
            for i in 0..inner {
                let mut m = T::neg_infinity();
                for k in 0..axis_len {
                    m = m.max(block[k * inner + i]);
                }
                let mut sum = T::zero();
                for k in 0..axis_len {
                    sum += (block[k * inner + i] - m).exp();
                }
                let lse = m + sum.ln();
                for k in 0..axis_len {
                    block[k * inner + i] = block[k * inner + i] - lse;
                }
            }
        });
    Tensor::from_parts(x.shape().to_vec(), out)
}

/// Input-gradient of [`log_softmax`] for its output `y`: `g − exp(y) · Σ_axis g`.
pub fn log_softmax_grad<T: Float>(
    y: &[T],
    g: &[T],
    outer: usize,
    axis_len: usize,
    inner: usize,
) -> Vec<T> {
    let mut dx = vec![T::zero(); y.len()];
    if axis_len == 0 || y.is_empty() {
        return dx;
    }
    let block = axis_len * inner;
    dx.par_chunks_mut(block)
        .zip(y.par_chunks(block).zip(g.par_chunks(block)))
        .take(outer)
        .for_each(|(d, (yb, gb))| {
            for i in 0..inner {
                let sum: T = (0..axis_len).map(|k| gb[k * inner + i]).sum();
                for k in 0..axis_len {
                    let at = k * inner + i;
                    d[at] = gb[at] - yb[at].exp() * sum;
                }
            }
        });
    dx
}

/// Cumulative sum along `axis` of `shape` (exclusive: each element leaves itself out;
/// reverse: summing from the end). Generic so constant folding can run it on integers.
pub fn cumsum<T>(x: &[T], shape: &[usize], axis: usize, exclusive: bool, reverse: bool) -> Vec<T>
where
    T: Copy + Default + std::ops::Add<Output = T>,
{
    let len = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let outer: usize = shape[..axis].iter().product();
    let mut y = vec![T::default(); x.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| (o * len + k) * inner + i;
            let mut acc = T::default();
            for step in 0..len {
                let k = if reverse { len - 1 - step } else { step };
                if exclusive {
                    y[at(k)] = acc;
                    acc = acc + x[at(k)];
                } else {
                    acc = acc + x[at(k)];
                    y[at(k)] = acc;
                }
            }
        }
    }
    y
}
