//! Resize (nearest and N-linear interpolation) as a sequence of 1-D resamplings, one per
//! resized axis, and its exact transpose (the input-gradient).
//!
//! Nearest and linear interpolation are separable: the N-linear weight of an input element is
//! the product of its 1-D weights, so resampling the axes one after another computes the same
//! sums. Each 1-D resampling reads at most two input positions per output position
//! ([`Tap`]); the gradient scatter-adds the output gradient with the same weights, axes in
//! reverse order. Source coordinates are computed in `f32`, as ONNX Runtime computes them, so
//! that rounding at exact half-way points agrees with the reference.

use rayon::prelude::*;

use crate::tensor::{Float, Tensor};

/// The input positions and weights one output position reads along an axis:
/// `y = w0 · x[i0] + w1 · x[i1]` (nearest: `w1 = 0`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tap {
    pub i0: usize,
    pub w0: f64,
    pub i1: usize,
    pub w1: f64,
}

/// The resampling of one axis.
#[derive(Clone, Debug, PartialEq)]
pub struct AxisResample {
    pub axis: usize,
    pub input: usize,
    /// One tap per output position.
    pub taps: Vec<Tap>,
}

/// A resolved Resize: the resampled axes in order (axes whose size and coordinates do not
/// change are left out).
#[derive(Clone, Debug, PartialEq)]
pub struct ResizePlan {
    pub input_shape: Vec<usize>,
    pub output_shape: Vec<usize>,
    pub axes: Vec<AxisResample>,
}

/// How an output coordinate maps to an input coordinate (ONNX
/// `coordinate_transformation_mode`; `Asymmetric` for opset < 11).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CoordMode {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
}

/// How nearest mode rounds a source coordinate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NearestMode {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
    /// Upsample and Resize before opset 11 (ONNX Runtime's rule): truncate when upsampling,
    /// round up when downsampling.
    Simple,
}

/// Interpolation of Resize.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResizeMode {
    Nearest(NearestMode),
    Linear,
}

/// Source coordinate of output position `x` (all arithmetic in `f32`, as ONNX Runtime).
fn source(coord: CoordMode, x: usize, scale: f32, input: usize, output: usize) -> f32 {
    let x = x as f32;
    match coord {
        CoordMode::HalfPixel => (x + 0.5) / scale - 0.5,
        CoordMode::HalfPixelSymmetric => {
            let adjustment = output as f32 / (scale * input as f32);
            let center = input as f32 / 2.0;
            let offset = center * (1.0 - adjustment);
            offset + (x + 0.5) / scale - 0.5
        }
        CoordMode::PytorchHalfPixel => {
            if output > 1 {
                (x + 0.5) / scale - 0.5
            } else {
                0.0
            }
        }
        CoordMode::AlignCorners => {
            if output == 1 {
                0.0
            } else {
                x * (input as f32 - 1.0) / (output as f32 - 1.0)
            }
        }
        CoordMode::Asymmetric => x / scale,
    }
}

/// The taps of one axis resampled from `input` to `output` positions with `scale`.
pub fn axis_taps(
    mode: ResizeMode,
    coord: CoordMode,
    scale: f32,
    input: usize,
    output: usize,
) -> Vec<Tap> {
    let last = input.saturating_sub(1);
    (0..output)
        .map(|x| {
            let s = source(coord, x, scale, input, output);
            match mode {
                ResizeMode::Nearest(n) => {
                    let i = match n {
                        NearestMode::RoundPreferFloor => {
                            if s == s.trunc() + 0.5 {
                                s.floor()
                            } else {
                                s.round()
                            }
                        }
                        NearestMode::RoundPreferCeil => {
                            if s == s.trunc() + 0.5 {
                                s.ceil()
                            } else {
                                s.round()
                            }
                        }
                        NearestMode::Floor => s.floor(),
                        NearestMode::Ceil => s.ceil(),
                        NearestMode::Simple => {
                            if scale < 1.0 {
                                s.ceil()
                            } else {
                                s.trunc()
                            }
                        }
                    };
                    let i = (i.max(0.0) as usize).min(last);
                    Tap {
                        i0: i,
                        w0: 1.0,
                        i1: i,
                        w1: 0.0,
                    }
                }
                ResizeMode::Linear => {
                    let s = s.clamp(0.0, last as f32);
                    let i0 = (s as usize).min(last);
                    let i1 = (i0 + 1).min(last);
                    let (w0, w1) = if i0 == i1 {
                        (0.5, 0.5)
                    } else {
                        ((i1 as f32 - s).abs(), (s - i0 as f32).abs())
                    };
                    Tap {
                        i0,
                        w0: w0 as f64,
                        i1,
                        w1: w1 as f64,
                    }
                }
            }
        })
        .collect()
}

/// Whether the taps are the identity (the axis need not be resampled).
pub fn is_identity(taps: &[Tap], input: usize) -> bool {
    taps.len() == input
        && taps.iter().enumerate().all(|(i, t)| {
            t.i0 == i && ((t.w0 == 1.0 && t.w1 == 0.0) || (t.i1 == i && t.w0 + t.w1 == 1.0))
        })
}

/// Resamples axis `a.axis` of `x`.
fn resample<T: Float>(x: &Tensor<T>, a: &AxisResample) -> Tensor<T> {
    let s = x.shape();
    let outer: usize = s[..a.axis].iter().product();
    let inner: usize = s[a.axis + 1..].iter().product();
    let out_len = a.taps.len();
    let mut shape = s.to_vec();
    shape[a.axis] = out_len;
    let mut y = vec![T::zero(); outer * out_len * inner];
    let taps: Vec<(usize, T, usize, T)> = a
        .taps
        .iter()
        .map(|t| (t.i0, T::of(t.w0), t.i1, T::of(t.w1)))
        .collect();
    let block_in = a.input * inner;
    y.par_chunks_mut((out_len * inner).max(1))
        .enumerate()
        .for_each(|(o, out)| {
            let src = &x.data()[o * block_in..][..block_in];
            for (j, &(i0, w0, i1, w1)) in taps.iter().enumerate() {
                let dst = &mut out[j * inner..][..inner];
                let r0 = &src[i0 * inner..][..inner];
                if w1 == T::zero() {
                    for (d, &v) in dst.iter_mut().zip(r0) {
                        *d = w0 * v;
                    }
                } else {
                    let r1 = &src[i1 * inner..][..inner];
                    for ((d, &v0), &v1) in dst.iter_mut().zip(r0).zip(r1) {
                        *d = w0 * v0 + w1 * v1;
                    }
                }
            }
        });
    Tensor::from_parts(shape, y)
}

/// The transpose of [`resample`]: scatter-adds `g` back to `a.input` positions.
fn resample_transpose<T: Float>(g: &Tensor<T>, a: &AxisResample) -> Tensor<T> {
    let s = g.shape();
    let outer: usize = s[..a.axis].iter().product();
    let inner: usize = s[a.axis + 1..].iter().product();
    let out_len = a.taps.len();
    let mut shape = s.to_vec();
    shape[a.axis] = a.input;
    let mut dx = vec![T::zero(); outer * a.input * inner];
    let taps: Vec<(usize, T, usize, T)> = a
        .taps
        .iter()
        .map(|t| (t.i0, T::of(t.w0), t.i1, T::of(t.w1)))
        .collect();
    let block_out = out_len * inner;
    dx.par_chunks_mut((a.input * inner).max(1))
        .enumerate()
        .for_each(|(o, din)| {
            let src = &g.data()[o * block_out..][..block_out];
            for (j, &(i0, w0, i1, w1)) in taps.iter().enumerate() {
                let gj = &src[j * inner..][..inner];
                for (d, &v) in din[i0 * inner..][..inner].iter_mut().zip(gj) {
                    *d += w0 * v;
                }
                if w1 != T::zero() {
                    for (d, &v) in din[i1 * inner..][..inner].iter_mut().zip(gj) {
                        *d += w1 * v;
                    }
                }
            }
        });
    Tensor::from_parts(shape, dx)
}

/// Resize forward.
pub fn resize<T: Float>(x: &Tensor<T>, plan: &ResizePlan) -> Tensor<T> {
    let mut y = x.clone();
    for a in &plan.axes {
        y = resample(&y, a);
    }
    y
}

/// Resize input-gradient: the transposed resamplings in reverse order.
pub fn resize_grad<T: Float>(g: &Tensor<T>, plan: &ResizePlan) -> Tensor<T> {
    let mut dx = g.clone();
    for a in plan.axes.iter().rev() {
        dx = resample_transpose(&dx, a);
    }
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_half_pixel_upsample_by_two() {
        let taps = axis_taps(ResizeMode::Linear, CoordMode::HalfPixel, 2.0, 2, 4);
        // sources -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1)
        let x = Tensor::from_parts(vec![2], vec![0.0f64, 4.0]);
        let plan = ResizePlan {
            input_shape: vec![2],
            output_shape: vec![4],
            axes: vec![AxisResample {
                axis: 0,
                input: 2,
                taps,
            }],
        };
        assert_eq!(resize(&x, &plan).data(), &[0.0, 1.0, 3.0, 4.0]);
        // the gradient is the transpose: <resize(x), g> = <x, resize_grad(g)>
        let g = Tensor::from_parts(vec![4], vec![1.0, 2.0, 3.0, 4.0]);
        let dx = resize_grad(&g, &plan);
        let lhs: f64 = resize(&x, &plan)
            .data()
            .iter()
            .zip(g.data())
            .map(|(a, b)| a * b)
            .sum();
        let rhs: f64 = x.data().iter().zip(dx.data()).map(|(a, b)| a * b).sum();
        assert!((lhs - rhs).abs() < 1e-12);
    }

    #[test]
    fn nearest_rounding_modes() {
        let idx = |n| {
            axis_taps(ResizeMode::Nearest(n), CoordMode::Asymmetric, 2.0, 3, 6)
                .iter()
                .map(|t| t.i0)
                .collect::<Vec<_>>()
        };
        // sources 0, .5, 1, 1.5, 2, 2.5
        assert_eq!(idx(NearestMode::RoundPreferFloor), [0, 0, 1, 1, 2, 2]);
        assert_eq!(idx(NearestMode::RoundPreferCeil), [0, 1, 1, 2, 2, 2]);
        assert_eq!(idx(NearestMode::Floor), [0, 0, 1, 1, 2, 2]);
        assert_eq!(idx(NearestMode::Ceil), [0, 1, 1, 2, 2, 2]);
    }
}
