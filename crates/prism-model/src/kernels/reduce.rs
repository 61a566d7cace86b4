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
                    let e = (block[k * inner + i] - m).exp();
                    block[k * inner + i] = e;
                    sum += e;
                }
                for k in 0..axis_len {
                    block[k * inner + i] = block[k * inner + i] / sum;
                }
            }
        });
    Tensor::from_parts(x.shape().to_vec(), out)
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
