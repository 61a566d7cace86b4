//! Indexing operators whose indices are data: GatherElements, GatherND, ScatterND, and the
//! scatter-adds that are their gradients. Generic over the element type so constant folding
//! runs them on integer shape tensors too.
//!
//! Indices follow ONNX: a negative index counts from the end of its axis; an index outside
//! `[-d, d)` is an error (never clamped). Run-time indices arrive in the float type of the
//! forward pass ([`indices_from_float`] checks that they are integral).

use crate::tensor::{Float, Tensor};

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Wraps a negative index and checks it against the axis length `d`.
fn wrap(i: i64, d: usize) -> Result<usize, String> {
    let w = if i < 0 { i + d as i64 } else { i };
    if w < 0 || w >= d as i64 {
        Err(format!(
            "index {i} is out of range for an axis of length {d}"
        ))
    } else {
        Ok(w as usize)
    }
}

/// Reads run-time indices carried in a float tensor: every value must be an integer.
pub fn indices_from_float<T: Float>(t: &Tensor<T>) -> Result<Tensor<i64>, String> {
    let data = t
        .data()
        .iter()
        .map(|&v| {
            let f = v.f64();
            if f.fract() == 0.0 && f.abs() < 9.0e15 {
                Ok(f as i64)
            } else {
                Err(format!("index {f} is not an integer"))
            }
        })
        .collect::<Result<Vec<i64>, String>>()?;
    Ok(Tensor::from_parts(t.shape().to_vec(), data))
}

/// Visits every element of `indices` (shape of the output) with its position in `x` along
/// GatherElements' `axis`: `f(flat output index, flat index into x)`.
fn elements_positions(
    x: &[usize],
    indices: &Tensor<i64>,
    axis: usize,
    mut f: impl FnMut(usize, usize),
) -> Result<(), String> {
    let is = indices.shape();
    if is.len() != x.len() {
        return Err(format!(
            "indices of shape {is:?} must have the rank of the data {x:?}"
        ));
    }
    if (0..x.len()).any(|d| d != axis && is[d] > x[d]) {
        return Err(format!(
            "indices of shape {is:?} exceed the data {x:?} outside axis {axis}"
        ));
    }
    let xs = strides(x);
    let mut pos = vec![0usize; is.len()];
    for (o, &i) in indices.data().iter().enumerate() {
        let k = wrap(i, x[axis])?;
        let mut src = 0;
        for d in 0..is.len() {
            src += if d == axis { k } else { pos[d] } * xs[d];
        }
        f(o, src);
        for d in (0..is.len()).rev() {
            pos[d] += 1;
            if pos[d] < is[d] {
                break;
            }
            pos[d] = 0;
        }
    }
    Ok(())
}

/// ONNX GatherElements: `y[p] = x[p with p[axis] = indices[p]]`, output shaped like `indices`.
pub fn gather_elements<T: Copy>(
    x: &Tensor<T>,
    indices: &Tensor<i64>,
    axis: usize,
) -> Result<Tensor<T>, String> {
    let mut out = Vec::with_capacity(indices.len());
    elements_positions(x.shape(), indices, axis, |_, src| out.push(x.data()[src]))?;
    Ok(Tensor::from_parts(indices.shape().to_vec(), out))
}

/// Gradient of [`gather_elements`]: `g` scatter-added into zeros of `shape`.
pub fn gather_elements_grad<T: Float>(
    g: &Tensor<T>,
    shape: &[usize],
    indices: &Tensor<i64>,
    axis: usize,
) -> Result<Tensor<T>, String> {
    if g.shape() != indices.shape() {
        return Err(format!(
            "gradient of shape {:?} does not match indices {:?}",
            g.shape(),
            indices.shape()
        ));
    }
    let mut dx = vec![T::zero(); shape.iter().product()];
    elements_positions(shape, indices, axis, |o, src| dx[src] += g.data()[o])?;
    Ok(Tensor::from_parts(shape.to_vec(), dx))
}

/// Layout of a GatherND/ScatterND: `(output shape, batch count, slices per batch, index depth
/// k, elements per slice)`. Data `[b…, d…]`, indices `[b…, i…, k]`, output `[b…, i…, d[k..]…]`.
pub fn gather_nd_layout(
    x: &[usize],
    indices: &[usize],
    batch_dims: usize,
) -> Result<(Vec<usize>, usize, usize, usize, usize), String> {
    let Some((&k, idx_outer)) = indices.split_last() else {
        return Err("indices must have rank at least 1".into());
    };
    if batch_dims >= x.len() || batch_dims >= indices.len() {
        return Err(format!(
            "batch_dims={batch_dims} needs data {x:?} and indices {indices:?} of larger rank"
        ));
    }
    if x[..batch_dims] != indices[..batch_dims] {
        return Err(format!(
            "the first batch_dims={batch_dims} axes of data {x:?} and indices {indices:?} differ"
        ));
    }
    if k < 1 || batch_dims + k > x.len() {
        return Err(format!(
            "index tuples of length {k} do not fit data {x:?} with batch_dims={batch_dims}"
        ));
    }
    let mut out = idx_outer.to_vec();
    out.extend_from_slice(&x[batch_dims + k..]);
    let batch: usize = x[..batch_dims].iter().product();
    let slices: usize = idx_outer[batch_dims..].iter().product();
    let inner: usize = x[batch_dims + k..].iter().product();
    Ok((out, batch, slices, k, inner))
}

/// Visits every index tuple of a GatherND: `f(slice number, offset of the slice in x)`.
fn nd_positions(
    x: &[usize],
    indices: &Tensor<i64>,
    batch_dims: usize,
    mut f: impl FnMut(usize, usize),
) -> Result<(), String> {
    let (_, batch, slices, k, inner) = gather_nd_layout(x, indices.shape(), batch_dims)?;
    let per_batch: usize = x[batch_dims..].iter().product();
    let xs = strides(&x[batch_dims..]);
    for b in 0..batch {
        for s in 0..slices {
            let n = b * slices + s;
            let tuple = &indices.data()[n * k..][..k];
            let mut off = b * per_batch;
            for (j, &i) in tuple.iter().enumerate() {
                off += wrap(i, x[batch_dims + j])? * xs[j];
            }
            debug_assert!(off + inner <= x.iter().product::<usize>());
            f(n, off);
        }
    }
    Ok(())
}

/// ONNX GatherND with `batch_dims`.
pub fn gather_nd<T: Copy>(
    x: &Tensor<T>,
    indices: &Tensor<i64>,
    batch_dims: usize,
) -> Result<Tensor<T>, String> {
    let (shape, _, _, _, inner) = gather_nd_layout(x.shape(), indices.shape(), batch_dims)?;
    let mut out = Vec::with_capacity(shape.iter().product());
    nd_positions(x.shape(), indices, batch_dims, |_, off| {
        out.extend_from_slice(&x.data()[off..off + inner])
    })?;
    Ok(Tensor::from_parts(shape, out))
}

/// Gradient of [`gather_nd`]: every slice of `g` added back at its source in zeros of `shape`.
pub fn gather_nd_grad<T: Float>(
    g: &Tensor<T>,
    shape: &[usize],
    indices: &Tensor<i64>,
    batch_dims: usize,
) -> Result<Tensor<T>, String> {
    let (out, _, _, _, inner) = gather_nd_layout(shape, indices.shape(), batch_dims)?;
    if g.shape() != out.as_slice() {
        return Err(format!(
            "gradient of shape {:?} does not match the gathered shape {out:?}",
            g.shape()
        ));
    }
    let mut dx = vec![T::zero(); shape.iter().product()];
    nd_positions(shape, indices, batch_dims, |n, off| {
        for (d, &v) in dx[off..off + inner]
            .iter_mut()
            .zip(&g.data()[n * inner..][..inner])
        {
            *d += v;
        }
    })?;
    Ok(Tensor::from_parts(shape.to_vec(), dx))
}

/// ScatterND's `reduction` attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScatterReduction {
    /// Plain assignment (the last update of a duplicated index wins, as in ONNX Runtime).
    None,
    Add,
    Mul,
    Max,
    Min,
}

/// ONNX ScatterND: a copy of `data` with the slices at `indices` replaced by (or reduced with)
/// `updates` (shape `indices.shape[..-1] ++ data.shape[k..]`).
pub fn scatter_nd<T: Copy + PartialOrd + std::ops::Add<Output = T> + std::ops::Mul<Output = T>>(
    data: &Tensor<T>,
    indices: &Tensor<i64>,
    updates: &Tensor<T>,
    reduction: ScatterReduction,
) -> Result<Tensor<T>, String> {
    let (want, _, _, _, inner) = gather_nd_layout(data.shape(), indices.shape(), 0)?;
    if updates.shape() != want.as_slice() {
        return Err(format!(
            "updates of shape {:?} do not fit data {:?} and indices {:?} (expected {want:?})",
            updates.shape(),
            data.shape(),
            indices.shape()
        ));
    }
    let mut y = data.data().to_vec();
    let u = updates.data();
    nd_positions(data.shape(), indices, 0, |n, off| {
        let src = &u[n * inner..][..inner];
        let dst = &mut y[off..off + inner];
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = match reduction {
                ScatterReduction::None => v,
                ScatterReduction::Add => *d + v,
                ScatterReduction::Mul => *d * v,
                ScatterReduction::Max => {
                    if v > *d {
                        v
                    } else {
                        *d
                    }
                }
                ScatterReduction::Min => {
                    if v < *d {
                        v
                    } else {
                        *d
                    }
                }
            };
        }
    })?;
    Ok(Tensor::from_parts(data.shape().to_vec(), y))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize], v: &[i64]) -> Tensor<i64> {
        Tensor::from_parts(shape.to_vec(), v.to_vec())
    }

    #[test]
    fn gather_elements_axis1_with_negative_index() {
        let x = t(&[2, 3], &[1, 2, 3, 4, 5, 6]);
        let y = gather_elements(&x, &t(&[2, 2], &[0, -1, 2, 1]), 1).unwrap();
        assert_eq!(y.data(), &[1, 3, 6, 5]);
        assert!(gather_elements(&x, &t(&[1, 1], &[3]), 1).is_err());
    }

    #[test]
    fn gather_nd_with_batch_dims() {
        let x = t(&[2, 2, 2], &[0, 1, 2, 3, 4, 5, 6, 7]);
        // batch_dims 1: per batch pick row
        let y = gather_nd(&x, &t(&[2, 1], &[1, 0]), 1).unwrap();
        assert_eq!(y.shape(), &[2, 2]);
        assert_eq!(y.data(), &[2, 3, 4, 5]);
        let y = gather_nd(&x, &t(&[2, 3], &[0, 0, 1, 1, 1, 0]), 0).unwrap();
        assert_eq!(y.data(), &[1, 6]);
    }

    #[test]
    fn scatter_nd_reductions() {
        let x = t(&[4], &[1, 2, 3, 4]);
        let i = t(&[2, 1], &[1, -1]);
        let u = t(&[2], &[10, 20]);
        assert_eq!(
            scatter_nd(&x, &i, &u, ScatterReduction::None)
                .unwrap()
                .data(),
            &[1, 10, 3, 20]
        );
        assert_eq!(
            scatter_nd(&x, &i, &u, ScatterReduction::Add)
                .unwrap()
                .data(),
            &[1, 12, 3, 24]
        );
        assert!(scatter_nd(
            &x,
            &t(&[1, 1], &[4]),
            &t(&[1], &[0]),
            ScatterReduction::None
        )
        .is_err());
    }

    #[test]
    fn float_indices_must_be_integral() {
        let ok = Tensor::from_parts(vec![2], vec![1.0f32, -2.0]);
        assert_eq!(indices_from_float(&ok).unwrap().data(), &[1, -2]);
        let bad = Tensor::from_parts(vec![1], vec![0.5f64]);
        assert!(indices_from_float(&bad).is_err());
    }
}
