//! Element-wise maps and numpy-style broadcasting binary operations.

use rayon::prelude::*;

use crate::op::{BinaryOp, UnaryOp};
use crate::tensor::{Float, Tensor};

const PAR_MIN: usize = 1 << 15;

/// The broadcast shape of two shapes (numpy rules), or `None` when they are incompatible.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// Strides of `shape` (row-major) aligned to `out`, with 0 on broadcast axes.
pub fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; out.len()];
    let mut s = 1;
    for i in (0..shape.len()).rev() {
        let j = i + out.len() - shape.len();
        strides[j] = if shape[i] == 1 { 0 } else { s };
        s *= shape[i];
    }
    strides
}

/// Applies `f` element-wise over the broadcast of `a` and `b` into a new tensor.
pub fn broadcast_map<T, U, V>(
    a: &Tensor<T>,
    b: &Tensor<U>,
    out_shape: &[usize],
    f: impl Fn(T, U) -> V + Sync,
) -> Tensor<V>
where
    T: Copy + Sync,
    U: Copy + Sync,
    V: Copy + Default + Send,
{
    let n: usize = out_shape.iter().product();
    let mut out = vec![V::default(); n];
    if n == 0 {
        return Tensor::from_parts(out_shape.to_vec(), out);
    }
    let (ad, bd) = (a.data(), b.data());
    if a.shape() == out_shape && b.shape() == out_shape {
        let run = |(o, (x, y)): (&mut V, (&T, &U))| *o = f(*x, *y);
        if n >= PAR_MIN {
            out.par_iter_mut()
                .zip(ad.par_iter().zip(bd.par_iter()))
                .for_each(run);
        } else {
            out.iter_mut().zip(ad.iter().zip(bd.iter())).for_each(run);
        }
        return Tensor::from_parts(out_shape.to_vec(), out);
    }
    let sa = broadcast_strides(a.shape(), out_shape);
    let sb = broadcast_strides(b.shape(), out_shape);
    let last = out_shape.len() - 1;
    let inner = out_shape[last];
    let (ia, ib) = (sa[last], sb[last]);
    let row = |(r, o): (usize, &mut [V])| {
        // offset of row r in a and b
        let (mut oa, mut ob, mut rem) = (0, 0, r);
        for d in (0..last).rev() {
            let i = rem % out_shape[d];
            rem /= out_shape[d];
            oa += i * sa[d];
            ob += i * sb[d];
        }
        for (j, v) in o.iter_mut().enumerate() {
            *v = f(ad[oa + j * ia], bd[ob + j * ib]);
        }
    };
    if n >= PAR_MIN {
        out.par_chunks_mut(inner.max(1)).enumerate().for_each(row);
    } else {
        out.chunks_mut(inner.max(1)).enumerate().for_each(row);
    }
    Tensor::from_parts(out_shape.to_vec(), out)
}

/// `a op b` with broadcasting; `None` when the shapes do not broadcast.
pub fn binary<T: Float>(op: BinaryOp, a: &Tensor<T>, b: &Tensor<T>) -> Option<Tensor<T>> {
    let shape = broadcast_shape(a.shape(), b.shape())?;
    Some(match op {
        BinaryOp::Add => broadcast_map(a, b, &shape, |x, y| x + y),
        BinaryOp::Sub => broadcast_map(a, b, &shape, |x, y| x - y),
        BinaryOp::Mul => broadcast_map(a, b, &shape, |x, y| x * y),
        BinaryOp::Div => broadcast_map(a, b, &shape, |x, y| x / y),
    })
}

/// Integer version of [`binary`] (shape arithmetic during constant folding); division
/// truncates toward zero like ONNX Runtime, and division by zero yields 0 rather than trapping.
pub fn binary_i64(op: BinaryOp, a: &Tensor<i64>, b: &Tensor<i64>) -> Option<Tensor<i64>> {
    let shape = broadcast_shape(a.shape(), b.shape())?;
    Some(match op {
        BinaryOp::Add => broadcast_map(a, b, &shape, |x, y| x.wrapping_add(y)),
        BinaryOp::Sub => broadcast_map(a, b, &shape, |x, y| x.wrapping_sub(y)),
        BinaryOp::Mul => broadcast_map(a, b, &shape, |x, y| x.wrapping_mul(y)),
        BinaryOp::Div => broadcast_map(a, b, &shape, |x, y| x.checked_div(y).unwrap_or(0)),
    })
}

/// The scalar function of a unary op.
#[inline]
pub fn unary_fn<T: Float>(op: UnaryOp) -> impl Fn(T) -> T + Sync + Send + Copy {
    move |x: T| match op {
        UnaryOp::Relu => {
            if x > T::zero() {
                x
            } else {
                T::zero()
            }
        }
        UnaryOp::LeakyRelu { alpha } => {
            if x >= T::zero() {
                x
            } else {
                x * T::of(alpha)
            }
        }
        UnaryOp::Clip { min, max } => {
            let (lo, hi) = (T::of(min), T::of(max));
            if x < lo {
                lo
            } else if x > hi {
                hi
            } else {
                x
            }
        }
        UnaryOp::Sigmoid => T::one() / (T::one() + (-x).exp()),
        UnaryOp::HardSigmoid { alpha, beta } => (T::of(alpha) * x + T::of(beta))
            .max(T::zero())
            .min(T::one()),
        UnaryOp::HardSwish => x * (x / T::of(6.0) + T::of(0.5)).max(T::zero()).min(T::one()),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Neg => -x,
        UnaryOp::Abs => x.abs(),
    }
}

/// Applies a unary op element-wise.
pub fn unary<T: Float>(op: UnaryOp, x: &Tensor<T>) -> Tensor<T> {
    let f = unary_fn::<T>(op);
    let data: Vec<T> = if x.len() >= PAR_MIN {
        x.data().par_iter().map(|&v| f(v)).collect()
    } else {
        x.data().iter().map(|&v| f(v)).collect()
    };
    Tensor::from_parts(x.shape().to_vec(), data)
}
