//! The CPU backend: the kernels of [`crate::kernels`] on host tensors, all cores via rayon.
//!
//! Element-wise work is split across threads only above [`PAR_MIN`] elements; that changes no
//! result, since every element is computed on its own. Reductions keep the summation order of
//! the kernels they replace (sequential where those were sequential), so results are
//! bit-identical to the code before the seam.

use rayon::prelude::*;

use super::{Backend, GammaRatios, Map, MatMul, Sign, SoftmaxAxis, Stabilize, Zip};
use crate::error::{ModelError, Result};
use crate::kernels::conv::{self, ConvGeom};
use crate::kernels::elementwise::{
    self, binary_fn, broadcast_map, broadcast_shape, broadcast_strides, unary_fn,
};
use crate::kernels::index::{self, ScatterReduction};
use crate::kernels::movement::{self, SliceSpec};
use crate::kernels::pool::{self, PoolGeom};
use crate::kernels::resize::{self, ResizePlan};
use crate::kernels::{linalg, reduce, threads};
use crate::op::{BinaryOp, PadMode, UnaryOp};
use crate::tensor::{Float, Tensor};

/// Element-wise work goes parallel from this many elements on.
const PAR_MIN: usize = 1 << 14;
/// Smallest piece of element-wise work a thread takes.
const PAR_CHUNK: usize = 4096;

/// The CPU backend (stateless: the thread pool is rayon's global one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cpu;

#[inline]
fn stab<T: Float>(z: T, eps: T, clip: bool) -> T {
    let sign = if z < T::zero() { -T::one() } else { T::one() };
    if clip {
        sign * z.abs().max(eps)
    } else {
        z + sign * eps
    }
}

/// The scalar function of a [`Map`], its parameters converted once.
#[inline]
fn map_fn<T: Float>(f: Map) -> impl Fn(T) -> T + Sync + Send + Copy {
    let zero = T::zero();
    let (p, q) = match f {
        Map::GammaUp(g) | Map::GammaDown(g) => (T::of(g), zero),
        Map::Scale(c) | Map::Divide(c) => (T::of(c), zero),
        Map::Interpolate { baseline, alpha } => (T::of(baseline), T::of(alpha)),
        Map::Positive
        | Map::Negative
        | Map::MaxZero
        | Map::Square
        | Map::Negate
        | Map::Unary(_)
        | Map::Truncate
        | Map::NonZero => (zero, zero),
    };
    let unary = match f {
        Map::Unary(u) => u,
        _ => UnaryOp::Neg,
    };
    let u = unary_fn::<T>(unary);
    move |v: T| match f {
        Map::Positive => {
            if v > zero {
                v
            } else {
                zero
            }
        }
        Map::Negative => {
            if v < zero {
                v
            } else {
                zero
            }
        }
        Map::MaxZero => v.max(zero),
        Map::GammaUp(_) => v + p * if v > zero { v } else { zero },
        Map::GammaDown(_) => v + p * if v < zero { v } else { zero },
        Map::Square => v * v,
        Map::Scale(_) => v * p,
        Map::Divide(_) => v / p,
        Map::Negate => -v,
        Map::Interpolate { .. } => p + (v - p) * q,
        Map::Unary(_) => u(v),
        Map::Truncate => v.trunc(),
        Map::NonZero => {
            if v != zero {
                T::one()
            } else {
                zero
            }
        }
    }
}

/// [`Zip::StabilizedRatio`] without clipping, as its own function (the rules' hottest loop).
#[inline]
fn stabilized_ratio<T: Float>(eps: T) -> impl Fn(T, T) -> T + Sync + Send + Copy {
    move |a: T, b: T| ratio_of(a, stab(b, eps, false))
}

/// `a / d`, and `0` where the stabilised denominator `d` is `0` (possible only with ε = 0: no
/// relevance flows through an output that is exactly zero).
#[inline]
fn ratio_of<T: Float>(a: T, d: T) -> T {
    if d == T::zero() {
        T::zero()
    } else {
        a / d
    }
}

/// [`Zip::Relevance`] as its own function.
#[inline]
fn relevance<T: Float>(a: T, b: T) -> T {
    if a == T::zero() {
        T::zero()
    } else {
        a * b
    }
}

/// The scalar function of a [`Zip`], its parameters converted once.
#[inline]
fn zip_fn<T: Float>(f: Zip) -> impl Fn(T, T) -> T + Sync + Send + Copy {
    let zero = T::zero();
    let one = T::one();
    let (p, q) = match f {
        Zip::StabilizedRatio { epsilon, .. } => (T::of(epsilon), zero),
        Zip::WeightedDifference { alpha, beta } => (T::of(alpha), T::of(beta)),
        Zip::AddScaled(g)
        | Zip::GammaLower(g)
        | Zip::GammaRouteW(g)
        | Zip::GammaRouteWPlus(g)
        | Zip::BetaSmoothGate(g) => (T::of(g), zero),
        Zip::PathIntegral { steps, baseline } => (T::of(steps), T::of(baseline)),
        Zip::Add
        | Zip::Sub
        | Zip::Mul
        | Zip::Div
        | Zip::NegMul
        | Zip::RouteBySign(_)
        | Zip::GuidedBackprop
        | Zip::Binary(_)
        | Zip::Max
        | Zip::Min
        | Zip::PowGradBase
        | Zip::PowGradExponent
        | Zip::ModQuotient { .. }
        | Zip::PReluGrad
        | Zip::Relevance => (zero, zero),
    };
    let binary = match f {
        Zip::Binary(op) => op,
        _ => BinaryOp::Add,
    };
    let bin = binary_fn::<T>(binary);
    move |a: T, b: T| match f {
        Zip::Add => a + b,
        Zip::Sub => a - b,
        Zip::Mul => a * b,
        Zip::Div => a / b,
        Zip::NegMul => -a * b,
        Zip::StabilizedRatio { clip, .. } => ratio_of(a, stab(b, p, clip)),
        Zip::Relevance => relevance(a, b),
        Zip::RouteBySign(Sign::Positive) => {
            if b > zero {
                a
            } else {
                zero
            }
        }
        Zip::RouteBySign(Sign::Negative) => {
            if b < zero {
                a
            } else {
                zero
            }
        }
        Zip::WeightedDifference { .. } => p * a - q * b,
        Zip::AddScaled(_) => a + p * b,
        Zip::GammaLower(_) => (one + p) * a - p * b,
        Zip::GammaRouteW(_) => a + (one + p) * b,
        Zip::GammaRouteWPlus(_) => p * (a - b),
        Zip::GuidedBackprop => {
            if a > zero && b > zero {
                b
            } else {
                zero
            }
        }
        Zip::BetaSmoothGate(_) => b / (one + (-p * a).exp()),
        Zip::PathIntegral { .. } => a / p * (b - q),
        Zip::Binary(_) => bin(a, b),
        Zip::Max => {
            if a >= b {
                a
            } else {
                b
            }
        }
        Zip::Min => {
            if a <= b {
                a
            } else {
                b
            }
        }
        Zip::PowGradBase => {
            if b == zero {
                zero
            } else {
                b * a.powf(b - one)
            }
        }
        Zip::PowGradExponent => {
            if a == zero {
                zero
            } else {
                b * a.ln()
            }
        }
        Zip::ModQuotient { fmod: true } => -(a / b).trunc(),
        Zip::ModQuotient { fmod: false } => -(a / b).floor(),
        Zip::PReluGrad => {
            if a > zero {
                one
            } else {
                b
            }
        }
    }
}

fn same<T>(op: &'static str, a: &Tensor<T>, b: &Tensor<T>) -> Result<()> {
    if a.shape() == b.shape() {
        Ok(())
    } else {
        Err(ModelError::shape(op, a.shape(), b.shape()))
    }
}

fn len_is<T>(op: &'static str, t: &Tensor<T>, shape: &[usize]) -> Result<()> {
    if t.len() == shape.iter().product::<usize>() {
        Ok(())
    } else {
        Err(ModelError::shape(op, t.shape(), shape))
    }
}

/// Per-channel layout of an N × C × (spatial…) tensor: (channels, elements per plane).
fn channel_layout(shape: &[usize]) -> (usize, usize) {
    let c = shape.get(1).copied().unwrap_or(1).max(1);
    let n = shape.first().copied().unwrap_or(1).max(1);
    let total: usize = shape.iter().product();
    (c, (total / (n * c).max(1)).max(1))
}

impl<T: Float> Backend<T> for Cpu {
    type Tensor = Tensor<T>;

    fn shape<'t>(&self, t: &'t Tensor<T>) -> &'t [usize] {
        t.shape()
    }

    fn upload(&self, t: Tensor<T>) -> Result<Tensor<T>> {
        Ok(t)
    }

    fn download(&self, t: &Tensor<T>) -> Result<Tensor<T>> {
        Ok(t.clone())
    }

    fn full(&self, shape: &[usize], v: T) -> Tensor<T> {
        Tensor::from_parts(shape.to_vec(), vec![v; shape.iter().product()])
    }

    fn reshape(&self, t: Tensor<T>, shape: Vec<usize>) -> Result<Tensor<T>> {
        len_is("reshape", &t, &shape)?;
        t.reshape(shape)
    }

    fn map(&self, f: Map, x: &Tensor<T>) -> Tensor<T> {
        let f = map_fn::<T>(f);
        let data: Vec<T> = if x.len() >= PAR_MIN {
            x.data()
                .par_iter()
                .with_min_len(PAR_CHUNK)
                .map(|&v| f(v))
                .collect()
        } else {
            x.data().iter().map(|&v| f(v)).collect()
        };
        Tensor::from_parts(x.shape().to_vec(), data)
    }

    fn zip(&self, f: Zip, a: &Tensor<T>, b: &Tensor<T>) -> Result<Tensor<T>> {
        same("zip", a, b)?;
        fn run<T: Float>(a: &Tensor<T>, b: &Tensor<T>, f: impl Fn(T, T) -> T + Sync) -> Vec<T> {
            if a.len() >= PAR_MIN {
                a.data()
                    .par_iter()
                    .with_min_len(PAR_CHUNK)
                    .zip(b.data().par_iter())
                    .map(|(&x, &y)| f(x, y))
                    .collect()
            } else {
                a.data()
                    .iter()
                    .zip(b.data())
                    .map(|(&x, &y)| f(x, y))
                    .collect()
            }
        }
        // The rules' hot arithmetic gets its own loop (no per-element dispatch).
        let data = match f {
            Zip::Add => run(a, b, |x: T, y: T| x + y),
            Zip::Mul => run(a, b, |x: T, y: T| x * y),
            Zip::StabilizedRatio {
                epsilon,
                clip: false,
            } => run(a, b, stabilized_ratio(T::of(epsilon))),
            Zip::Relevance => run(a, b, relevance),
            _ => run(a, b, zip_fn::<T>(f)),
        };
        Ok(Tensor::from_parts(a.shape().to_vec(), data))
    }

    fn zip_into(&self, f: Zip, a: &mut Tensor<T>, b: &Tensor<T>) -> Result<()> {
        same("zip_into", a, b)?;
        fn run<T: Float>(a: &mut Tensor<T>, b: &Tensor<T>, f: impl Fn(T, T) -> T + Sync) {
            if a.len() >= PAR_MIN {
                a.data_mut()
                    .par_iter_mut()
                    .with_min_len(PAR_CHUNK)
                    .zip(b.data().par_iter())
                    .for_each(|(x, &y)| *x = f(*x, y));
            } else {
                a.data_mut()
                    .iter_mut()
                    .zip(b.data())
                    .for_each(|(x, &y)| *x = f(*x, y));
            }
        }
        // summing relevance contributions is the common case: its own loop
        match f {
            Zip::Add => run(a, b, |x: T, y: T| x + y),
            _ => run(a, b, zip_fn::<T>(f)),
        }
        Ok(())
    }

    fn broadcast(&self, f: Zip, a: &Tensor<T>, b: &Tensor<T>) -> Result<Tensor<T>> {
        let shape = broadcast_shape(a.shape(), b.shape())
            .ok_or_else(|| ModelError::shape("broadcast", a.shape(), b.shape()))?;
        // The arithmetic every graph is full of gets its own loop (no per-element dispatch).
        Ok(match f {
            Zip::Add => broadcast_map(a, b, &shape, |x: T, y: T| x + y),
            Zip::Sub => broadcast_map(a, b, &shape, |x: T, y: T| x - y),
            Zip::Mul => broadcast_map(a, b, &shape, |x: T, y: T| x * y),
            Zip::Div => broadcast_map(a, b, &shape, |x: T, y: T| x / y),
            Zip::StabilizedRatio {
                epsilon,
                clip: false,
            } => broadcast_map(a, b, &shape, stabilized_ratio(T::of(epsilon))),
            Zip::Relevance => broadcast_map(a, b, &shape, relevance),
            _ => broadcast_map(a, b, &shape, zip_fn::<T>(f)),
        })
    }

    fn select(&self, c: &Tensor<T>, a: &Tensor<T>, b: &Tensor<T>) -> Result<Tensor<T>> {
        // Name the pair that fails: the condition and X, or their broadcast and Y.
        let ca = broadcast_shape(c.shape(), a.shape())
            .ok_or_else(|| ModelError::shape("select", c.shape(), a.shape()))?;
        elementwise::select(c, a, b).ok_or_else(|| ModelError::shape("select", &ca, b.shape()))
    }

    fn channel(&self, f: Zip, z: &Tensor<T>, b: &Tensor<T>) -> Result<Tensor<T>> {
        let (c, plane) = channel_layout(z.shape());
        if b.len() != c {
            return Err(ModelError::shape("channel", z.shape(), b.shape()));
        }
        let f = zip_fn::<T>(f);
        let bd = b.data();
        let data: Vec<T> = z
            .data()
            .par_iter()
            .with_min_len(PAR_CHUNK)
            .enumerate()
            .map(|(i, &v)| f(v, bd[(i / plane) % c]))
            .collect();
        Ok(Tensor::from_parts(z.shape().to_vec(), data))
    }

    fn unary_grad(
        &self,
        u: UnaryOp,
        x: &Tensor<T>,
        y: &Tensor<T>,
        g: &Tensor<T>,
    ) -> Result<Tensor<T>> {
        same("unary_grad", x, y)?;
        same("unary_grad", x, g)?;
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
                UnaryOp::Gelu { tanh: false } => {
                    // Φ(x) + x·φ(x)
                    let cdf = T::of(0.5)
                        * (one + elementwise::erf(xv * T::of(std::f64::consts::FRAC_1_SQRT_2)));
                    let pdf = (T::of(-0.5) * xv * xv).exp()
                        * T::of(
                            0.5 * std::f64::consts::FRAC_2_SQRT_PI
                                * std::f64::consts::FRAC_1_SQRT_2,
                        );
                    cdf + xv * pdf
                }
                UnaryOp::Gelu { tanh: true } => {
                    let (beta, kappa) = (
                        T::of(elementwise::GELU_TANH_BETA),
                        T::of(elementwise::GELU_TANH_KAPPA),
                    );
                    let x2 = xv * xv;
                    let t = (beta * (xv + kappa * x2 * xv)).tanh();
                    T::of(0.5) * (one + t)
                        + T::of(0.5) * xv * (one - t * t) * beta * (one + T::of(3.0) * kappa * x2)
                }
                UnaryOp::Erf => T::of(std::f64::consts::FRAC_2_SQRT_PI) * (-xv * xv).exp(),
                UnaryOp::Reciprocal => -yv * yv,
                UnaryOp::Log => one / xv,
                UnaryOp::Elu { alpha } => {
                    if xv > zero {
                        one
                    } else {
                        T::of(alpha) * xv.exp()
                    }
                }
                UnaryOp::Selu { alpha, gamma } => {
                    if xv > zero {
                        T::of(gamma)
                    } else {
                        T::of(gamma) * T::of(alpha) * xv.exp()
                    }
                }
                UnaryOp::Celu { alpha } => {
                    if xv > zero {
                        one
                    } else {
                        (xv / T::of(alpha)).exp()
                    }
                }
                UnaryOp::Softplus => one / (one + (-xv).exp()),
                UnaryOp::Softsign => {
                    let d = one + xv.abs();
                    one / (d * d)
                }
                UnaryOp::Mish => {
                    let t = elementwise::softplus(xv).tanh();
                    let sig = one / (one + (-xv).exp());
                    t + xv * sig * (one - t * t)
                }
                // Boolean-valued: piecewise constant.
                UnaryOp::Not | UnaryOp::IsNaN | UnaryOp::IsInf { .. } => zero,
                UnaryOp::Sin => xv.cos(),
                UnaryOp::Cos => -xv.sin(),
            }
        };
        let data = x
            .data()
            .iter()
            .zip(y.data())
            .zip(g.data())
            .map(|((&xv, &yv), &gv)| f(xv, yv) * gv)
            .collect();
        Ok(Tensor::from_parts(x.shape().to_vec(), data))
    }

    fn stabilize(&self, z: &Tensor<T>, s: &Stabilize) -> Tensor<T> {
        let n = z.shape().first().copied().unwrap_or(1).max(1);
        let per = z.len() / n;
        let mut out = z.data().to_vec();
        for (i, chunk) in out.chunks_mut(per.max(1)).enumerate() {
            let mut eps = T::of(s.epsilon);
            if s.norm_scale {
                // Sequential sum: the per-sample scale must not depend on the thread count.
                let zs = &z.data()[i * per..(i + 1) * per];
                let ms: T = zs.iter().map(|&v| v * v).sum::<T>() / T::of(per.max(1) as f64);
                eps *= ms.sqrt();
            }
            for v in chunk.iter_mut() {
                *v = stab(*v, eps, s.clip);
            }
        }
        Tensor::from_parts(z.shape().to_vec(), out)
    }

    fn gamma_ratios(
        &self,
        p: &GammaRatios,
        y: &Tensor<T>,
        u: &Tensor<T>,
        r: &Tensor<T>,
        bias: Option<&Tensor<T>>,
    ) -> Result<(Tensor<T>, Tensor<T>)> {
        same("gamma_ratios", y, u)?;
        same("gamma_ratios", y, r)?;
        let (channels, plane) = (p.channels.max(1), p.plane.max(1));
        let g = T::of(p.gamma);
        let zero = vec![T::zero(); channels];
        let b: Vec<T> = match bias {
            Some(b) if b.len() == channels => b.data().to_vec(),
            Some(b) => return Err(ModelError::shape("gamma_ratios", y.shape(), b.shape())),
            None => zero.clone(),
        };
        let (ba, bb): (Vec<T>, Vec<T>) = if p.zero_bias {
            (zero.clone(), zero)
        } else {
            b.iter()
                .map(|&v| (v + g * v.max(T::zero()), v + g * v.min(T::zero())))
                .unzip()
        };
        let (eps, clip) = (T::of(p.epsilon), p.clip);
        let one_g = T::one() + g;
        let n = y.len();
        let mut s_w = vec![T::zero(); n];
        let mut s_wp = vec![T::zero(); n];
        let (yd, ud, rd) = (y.data(), u.data(), r.data());
        s_w.par_iter_mut()
            .zip(s_wp.par_iter_mut())
            .enumerate()
            .with_min_len(PAR_CHUNK)
            .for_each(|(i, (sw, swp))| {
                let c = (i / plane) % channels;
                let yv = yd[i];
                let lw = yv - b[c];
                let (sp, sn) = if yv > T::zero() {
                    (rd[i] / stab(lw + g * ud[i] + ba[c], eps, clip), T::zero())
                } else if yv < T::zero() {
                    (
                        T::zero(),
                        rd[i] / stab(one_g * lw - g * ud[i] + bb[c], eps, clip),
                    )
                } else {
                    (T::zero(), T::zero())
                };
                *sw = sp + one_g * sn;
                *swp = g * (sp - sn);
            });
        Ok((
            Tensor::from_parts(y.shape().to_vec(), s_w),
            Tensor::from_parts(y.shape().to_vec(), s_wp),
        ))
    }

    fn all_nonnegative(&self, x: &Tensor<T>) -> bool {
        x.data()
            .par_iter()
            .with_min_len(PAR_CHUNK)
            .all(|&v| v >= T::zero())
    }

    fn conv2d(
        &self,
        x: &Tensor<T>,
        w: &Tensor<T>,
        bias: Option<&Tensor<T>>,
        g: &ConvGeom,
    ) -> Result<Tensor<T>> {
        len_is("conv2d (input)", x, &g.input_shape())?;
        if w.len() != g.c_out * g.k() {
            return Err(ModelError::shape("conv2d (weight)", x.shape(), w.shape()));
        }
        if let Some(b) = bias.filter(|b| b.len() != g.c_out) {
            return Err(ModelError::shape("conv2d (bias)", w.shape(), b.shape()));
        }
        Ok(conv::conv2d(x.data(), w.data(), bias.map(|b| b.data()), g))
    }

    fn conv2d_input_grad(&self, dy: &Tensor<T>, w: &Tensor<T>, g: &ConvGeom) -> Result<Tensor<T>> {
        len_is("conv2d input-gradient", dy, &g.output_shape())?;
        if w.len() != g.c_out * g.k() {
            return Err(ModelError::shape(
                "conv2d input-gradient (weight)",
                dy.shape(),
                w.shape(),
            ));
        }
        Ok(conv::conv2d_input_grad(dy.data(), w.data(), g))
    }

    fn conv_transpose2d(
        &self,
        x: &Tensor<T>,
        w: &Tensor<T>,
        bias: Option<&Tensor<T>>,
        g: &ConvGeom,
    ) -> Result<Tensor<T>> {
        len_is("conv_transpose2d (input)", x, &g.output_shape())?;
        if w.len() != g.c_out * g.k() {
            return Err(ModelError::shape(
                "conv_transpose2d (weight)",
                x.shape(),
                w.shape(),
            ));
        }
        if let Some(b) = bias.filter(|b| b.len() != g.c_in) {
            return Err(ModelError::shape(
                "conv_transpose2d (bias)",
                w.shape(),
                b.shape(),
            ));
        }
        Ok(conv::conv_transpose2d(
            x.data(),
            w.data(),
            bias.map(|b| b.data()),
            g,
        ))
    }

    fn matmul(
        &self,
        p: &MatMul,
        a: &Tensor<T>,
        b: &Tensor<T>,
        out: Vec<usize>,
    ) -> Result<Tensor<T>> {
        if a.len() < p.m * p.k || b.len() < p.k * p.n {
            return Err(ModelError::shape("matmul", a.shape(), b.shape()));
        }
        if out.iter().product::<usize>() != p.m * p.n {
            return Err(ModelError::shape("matmul (output)", &out, &[p.m, p.n]));
        }
        let y = linalg::matmul_t(p.m, p.n, p.k, a.data(), p.a_t, b.data(), p.b_t, threads());
        Ok(Tensor::from_parts(out, y))
    }

    fn matmul_batched(&self, a: &Tensor<T>, b: &Tensor<T>) -> Result<Tensor<T>> {
        crate::exec::matmul(a, b).ok_or_else(|| ModelError::shape("matmul", a.shape(), b.shape()))
    }

    fn max_pool(&self, x: &Tensor<T>, g: &PoolGeom) -> Result<Tensor<T>> {
        len_is("max_pool", x, &g.input_shape())?;
        Ok(pool::max_pool(x.data(), g))
    }

    fn max_pool_input_grad(
        &self,
        x: &Tensor<T>,
        dy: &Tensor<T>,
        g: &PoolGeom,
    ) -> Result<Tensor<T>> {
        len_is("max_pool input-gradient", x, &g.input_shape())?;
        len_is("max_pool input-gradient", dy, &g.output_shape())?;
        Ok(pool::max_pool_input_grad(x.data(), dy.data(), g))
    }

    fn avg_pool(&self, x: &Tensor<T>, g: &PoolGeom, count_include_pad: bool) -> Result<Tensor<T>> {
        len_is("avg_pool", x, &g.input_shape())?;
        Ok(pool::avg_pool(x.data(), g, count_include_pad))
    }

    fn avg_pool_input_grad(
        &self,
        dy: &Tensor<T>,
        g: &PoolGeom,
        count_include_pad: bool,
    ) -> Result<Tensor<T>> {
        len_is("avg_pool input-gradient", dy, &g.output_shape())?;
        Ok(pool::avg_pool_input_grad(dy.data(), g, count_include_pad))
    }

    fn global_avg_pool(&self, x: &Tensor<T>) -> Tensor<T> {
        pool::global_avg_pool(x)
    }

    fn global_max_pool(&self, x: &Tensor<T>) -> Tensor<T> {
        pool::global_max_pool(x)
    }

    fn global_avg_pool_grad(&self, g: &Tensor<T>, x_shape: &[usize]) -> Result<Tensor<T>> {
        let plane: usize = x_shape.iter().skip(2).product();
        if g.len() * plane != x_shape.iter().product::<usize>() {
            return Err(ModelError::shape(
                "global_avg_pool gradient",
                g.shape(),
                x_shape,
            ));
        }
        let n = T::of(plane.max(1) as f64);
        let data: Vec<T> = g
            .data()
            .iter()
            .flat_map(|&v| std::iter::repeat_n(v / n, plane))
            .collect();
        Ok(Tensor::from_parts(x_shape.to_vec(), data))
    }

    fn global_max_pool_grad(&self, x: &Tensor<T>, g: &Tensor<T>) -> Result<Tensor<T>> {
        let plane: usize = x.shape().iter().skip(2).product();
        if g.len() * plane != x.len() {
            return Err(ModelError::shape(
                "global_max_pool gradient",
                x.shape(),
                g.shape(),
            ));
        }
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
        Ok(Tensor::from_parts(x.shape().to_vec(), dx))
    }

    fn reduce(&self, x: &Tensor<T>, axes: &[usize], keepdims: bool, mean: bool) -> Tensor<T> {
        reduce::reduce(x, axes, keepdims, mean)
    }

    fn reduce_to_shape(&self, g: &Tensor<T>, shape: &[usize]) -> Result<Tensor<T>> {
        if g.shape() == shape {
            return Ok(g.clone());
        }
        let out_shape = g.shape();
        if shape.len() > out_shape.len()
            || broadcast_shape(shape, out_shape).as_deref() != Some(out_shape)
        {
            return Err(ModelError::shape("reduce_to_shape", out_shape, shape));
        }
        let strides = broadcast_strides(shape, out_shape);
        let mut acc = vec![T::zero(); shape.iter().product()];
        let mut idx = vec![0usize; out_shape.len()];
        let mut pos = 0usize;
        // Sequential: the order of the sums is part of the result.
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
        Ok(Tensor::from_parts(shape.to_vec(), acc))
    }

    fn softmax(&self, x: &Tensor<T>, a: &SoftmaxAxis) -> Result<Tensor<T>> {
        if a.outer * a.len * a.inner != x.len() {
            return Err(ModelError::shape(
                "softmax",
                x.shape(),
                &[a.outer, a.len, a.inner],
            ));
        }
        Ok(reduce::softmax(x, a.outer, a.len, a.inner))
    }

    fn softmax_grad(&self, y: &Tensor<T>, g: &Tensor<T>, a: &SoftmaxAxis) -> Result<Tensor<T>> {
        same("softmax gradient", y, g)?;
        if a.outer * a.len * a.inner != y.len() {
            return Err(ModelError::shape(
                "softmax gradient",
                y.shape(),
                &[a.outer, a.len, a.inner],
            ));
        }
        let (len, inner) = (a.len, a.inner);
        let (gd, yd) = (g.data(), y.data());
        let mut dx = vec![T::zero(); y.len()];
        for o in 0..a.outer {
            for i in 0..inner {
                let at = |k: usize| o * len * inner + k * inner + i;
                let dot: T = (0..len).map(|k| gd[at(k)] * yd[at(k)]).sum();
                for k in 0..len {
                    dx[at(k)] = yd[at(k)] * (gd[at(k)] - dot);
                }
            }
        }
        Ok(Tensor::from_parts(y.shape().to_vec(), dx))
    }

    fn batchnorm_coefficients(
        &self,
        scale: &Tensor<T>,
        bias: &Tensor<T>,
        mean: &Tensor<T>,
        var: &Tensor<T>,
        eps: f64,
    ) -> Result<(Tensor<T>, Tensor<T>)> {
        for t in [bias, mean, var] {
            same("batchnorm", scale, t)?;
        }
        let (a, b) =
            reduce::batchnorm_coefficients(scale.data(), bias.data(), mean.data(), var.data(), eps);
        Ok((
            Tensor::from_parts(vec![a.len()], a),
            Tensor::from_parts(vec![b.len()], b),
        ))
    }

    fn channel_affine(&self, x: &Tensor<T>, a: &Tensor<T>, b: &Tensor<T>) -> Result<Tensor<T>> {
        same("channel_affine", a, b)?;
        if x.shape().get(1).copied().unwrap_or(1) != a.len() {
            return Err(ModelError::shape("channel_affine", x.shape(), a.shape()));
        }
        Ok(reduce::channel_affine(x, a.data(), b.data()))
    }

    fn standardize(
        &self,
        x: &Tensor<T>,
        rows: usize,
        eps: f64,
    ) -> Result<(Tensor<T>, Tensor<T>, Tensor<T>)> {
        if rows == 0 || x.len() % rows != 0 {
            return Err(ModelError::shape("standardize", x.shape(), &[rows]));
        }
        let (y, mean, inv) = reduce::standardize(x.data(), rows, eps);
        Ok((
            Tensor::from_parts(x.shape().to_vec(), y),
            Tensor::from_parts(vec![rows], mean),
            Tensor::from_parts(vec![rows], inv),
        ))
    }

    fn standardize_grad(
        &self,
        xhat: &Tensor<T>,
        inv_std: &Tensor<T>,
        g: &Tensor<T>,
    ) -> Result<Tensor<T>> {
        same("standardize gradient", xhat, g)?;
        if inv_std.is_empty() || xhat.len() % inv_std.len() != 0 {
            return Err(ModelError::shape(
                "standardize gradient",
                xhat.shape(),
                inv_std.shape(),
            ));
        }
        let dx = reduce::standardize_grad(xhat.data(), inv_std.data(), g.data());
        Ok(Tensor::from_parts(xhat.shape().to_vec(), dx))
    }

    fn log_softmax(&self, x: &Tensor<T>, a: &SoftmaxAxis) -> Result<Tensor<T>> {
        if a.outer * a.len * a.inner != x.len() {
            return Err(ModelError::shape(
                "log_softmax",
                x.shape(),
                &[a.outer, a.len, a.inner],
            ));
        }
        Ok(reduce::log_softmax(x, a.outer, a.len, a.inner))
    }

    fn log_softmax_grad(&self, y: &Tensor<T>, g: &Tensor<T>, a: &SoftmaxAxis) -> Result<Tensor<T>> {
        same("log_softmax gradient", y, g)?;
        if a.outer * a.len * a.inner != y.len() {
            return Err(ModelError::shape(
                "log_softmax gradient",
                y.shape(),
                &[a.outer, a.len, a.inner],
            ));
        }
        let dx = reduce::log_softmax_grad(y.data(), g.data(), a.outer, a.len, a.inner);
        Ok(Tensor::from_parts(y.shape().to_vec(), dx))
    }

    fn cumsum(
        &self,
        x: &Tensor<T>,
        axis: usize,
        exclusive: bool,
        reverse: bool,
    ) -> Result<Tensor<T>> {
        if axis >= x.rank() {
            return Err(ModelError::shape("cumsum", x.shape(), &[axis]));
        }
        let y = reduce::cumsum(x.data(), x.shape(), axis, exclusive, reverse);
        Ok(Tensor::from_parts(x.shape().to_vec(), y))
    }

    fn trilu(&self, x: &Tensor<T>, k: i64, upper: bool) -> Result<Tensor<T>> {
        if x.rank() < 2 {
            return Err(ModelError::shape("trilu", x.shape(), &[2]));
        }
        Ok(movement::trilu(x, k, upper))
    }

    fn transpose(&self, x: &Tensor<T>, perm: &[usize]) -> Result<Tensor<T>> {
        let mut seen = vec![false; x.rank()];
        if perm.len() != x.rank()
            || perm
                .iter()
                .any(|&p| p >= x.rank() || std::mem::replace(&mut seen[p], true))
        {
            return Err(ModelError::shape("transpose", x.shape(), perm));
        }
        Ok(movement::transpose(x, perm))
    }

    fn slice(&self, x: &Tensor<T>, spec: &SliceSpec) -> Tensor<T> {
        movement::slice(x, spec)
    }

    fn slice_grad(&self, g: &Tensor<T>, shape: &[usize], spec: &SliceSpec) -> Result<Tensor<T>> {
        if spec.len.len() != shape.len() || g.shape() != spec.len.as_slice() {
            return Err(ModelError::shape("slice gradient", g.shape(), shape));
        }
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
        Ok(Tensor::from_parts(shape.to_vec(), dx))
    }

    fn pad(&self, x: &Tensor<T>, pads: &[i64], mode: PadMode, value: T) -> Result<Tensor<T>> {
        if pads.len() != 2 * x.rank() {
            return Err(ModelError::shape("pad", x.shape(), &[pads.len()]));
        }
        movement::pad(x, pads, mode, value).ok_or_else(|| {
            ModelError::Invalid(format!(
                "pad: cannot pad shape {:?} by {pads:?} in {mode:?} mode",
                x.shape()
            ))
        })
    }

    fn pad_grad(
        &self,
        g: &Tensor<T>,
        shape: &[usize],
        pads: &[i64],
        mode: PadMode,
    ) -> Result<Tensor<T>> {
        if pads.len() != 2 * shape.len() {
            return Err(ModelError::shape("pad gradient", shape, &[pads.len()]));
        }
        let (out, sources) = movement::pad_sources(shape, pads, mode).ok_or_else(|| {
            ModelError::Invalid(format!(
                "pad gradient: cannot pad shape {shape:?} by {pads:?} in {mode:?} mode"
            ))
        })?;
        if out.as_slice() != g.shape() {
            return Err(ModelError::shape("pad gradient", g.shape(), &out));
        }
        let mut dx = vec![T::zero(); shape.iter().product()];
        for (src, &v) in sources.iter().zip(g.data()) {
            if let Some(i) = src {
                dx[*i] += v;
            }
        }
        Ok(Tensor::from_parts(shape.to_vec(), dx))
    }

    fn expand(&self, x: &Tensor<T>, shape: &[usize]) -> Result<Tensor<T>> {
        if broadcast_shape(x.shape(), shape).as_deref() != Some(shape) {
            return Err(ModelError::shape("expand", x.shape(), shape));
        }
        Ok(movement::expand(x, shape))
    }

    fn gather(&self, x: &Tensor<T>, indices: &Tensor<i64>, axis: usize) -> Result<Tensor<T>> {
        if axis >= x.rank() {
            return Err(ModelError::shape("gather", x.shape(), &[axis]));
        }
        movement::gather(x, indices, axis).ok_or_else(|| {
            let n = x.shape()[axis] as i64;
            // the first offending index and where it sits (for a token model: sample and token)
            let bad = indices
                .data()
                .iter()
                .position(|&i| i >= n || i < -n)
                .map(|k| {
                    let mut at = Vec::with_capacity(indices.rank());
                    let mut rest = k;
                    for d in indices.shape().iter().rev() {
                        at.push(rest % d.max(&1));
                        rest /= d.max(&1);
                    }
                    at.reverse();
                    format!(
                        "index {} at {at:?} of the indices (shape {:?})",
                        indices.data()[k],
                        indices.shape()
                    )
                })
                .unwrap_or_else(|| "an index".into());
            ModelError::Invalid(format!(
                "gather: {bad} is out of range for axis {axis} of shape {:?} (valid: {} to {}; \
                 for an embedding lookup, token ids must be below the vocabulary size {n})",
                x.shape(),
                -n,
                n - 1
            ))
        })
    }

    fn gather_grad(
        &self,
        g: &Tensor<T>,
        shape: &[usize],
        indices: &Tensor<i64>,
        axis: usize,
    ) -> Result<Tensor<T>> {
        if axis >= shape.len() {
            return Err(ModelError::shape("gather gradient", g.shape(), shape));
        }
        let d = shape[axis];
        let outer: usize = shape[..axis].iter().product();
        let inner: usize = shape[axis + 1..].iter().product();
        if g.len() != outer * indices.len() * inner {
            return Err(ModelError::shape("gather gradient", g.shape(), shape));
        }
        let mut dx = vec![T::zero(); shape.iter().product()];
        let mut gi = 0;
        for o in 0..outer {
            for &i in indices.data() {
                let i = if i < 0 { i + d as i64 } else { i };
                if i < 0 || i as usize >= d {
                    return Err(ModelError::Invalid(format!(
                        "gather gradient: index {i} is out of range for axis {axis} of shape {shape:?}"
                    )));
                }
                let base = (o * d + i as usize) * inner;
                for k in 0..inner {
                    dx[base + k] += g.data()[gi];
                    gi += 1;
                }
            }
        }
        Ok(Tensor::from_parts(shape.to_vec(), dx))
    }

    fn gather_elements(
        &self,
        x: &Tensor<T>,
        indices: &Tensor<i64>,
        axis: usize,
    ) -> Result<Tensor<T>> {
        if axis >= x.rank() {
            return Err(ModelError::shape("gather_elements", x.shape(), &[axis]));
        }
        index::gather_elements(x, indices, axis)
            .map_err(|e| ModelError::Invalid(format!("gather_elements: {e}")))
    }

    fn gather_elements_grad(
        &self,
        g: &Tensor<T>,
        shape: &[usize],
        indices: &Tensor<i64>,
        axis: usize,
    ) -> Result<Tensor<T>> {
        if axis >= shape.len() {
            return Err(ModelError::shape(
                "gather_elements gradient",
                g.shape(),
                shape,
            ));
        }
        index::gather_elements_grad(g, shape, indices, axis)
            .map_err(|e| ModelError::Invalid(format!("gather_elements gradient: {e}")))
    }

    fn gather_nd(
        &self,
        x: &Tensor<T>,
        indices: &Tensor<i64>,
        batch_dims: usize,
    ) -> Result<Tensor<T>> {
        index::gather_nd(x, indices, batch_dims)
            .map_err(|e| ModelError::Invalid(format!("gather_nd: {e}")))
    }

    fn gather_nd_grad(
        &self,
        g: &Tensor<T>,
        shape: &[usize],
        indices: &Tensor<i64>,
        batch_dims: usize,
    ) -> Result<Tensor<T>> {
        index::gather_nd_grad(g, shape, indices, batch_dims)
            .map_err(|e| ModelError::Invalid(format!("gather_nd gradient: {e}")))
    }

    fn scatter_nd(
        &self,
        data: &Tensor<T>,
        indices: &Tensor<i64>,
        updates: &Tensor<T>,
        reduction: ScatterReduction,
    ) -> Result<Tensor<T>> {
        index::scatter_nd(data, indices, updates, reduction)
            .map_err(|e| ModelError::Invalid(format!("scatter_nd: {e}")))
    }

    fn resize(&self, x: &Tensor<T>, plan: &ResizePlan) -> Result<Tensor<T>> {
        if x.shape() != plan.input_shape.as_slice() {
            return Err(ModelError::shape("resize", x.shape(), &plan.input_shape));
        }
        Ok(resize::resize(x, plan))
    }

    fn resize_grad(&self, g: &Tensor<T>, plan: &ResizePlan) -> Result<Tensor<T>> {
        if g.shape() != plan.output_shape.as_slice() {
            return Err(ModelError::shape(
                "resize gradient",
                g.shape(),
                &plan.output_shape,
            ));
        }
        Ok(resize::resize_grad(g, plan))
    }

    fn concat(&self, xs: &[&Tensor<T>], axis: usize) -> Result<Tensor<T>> {
        let Some(first) = xs.first() else {
            return Err(ModelError::Invalid("concat: no inputs".into()));
        };
        for x in xs {
            let fits = x.rank() == first.rank()
                && axis < x.rank()
                && (0..x.rank()).all(|d| d == axis || x.shape()[d] == first.shape()[d]);
            if !fits {
                return Err(ModelError::shape("concat", first.shape(), x.shape()));
            }
        }
        Ok(movement::concat(xs, axis))
    }

    fn seed(&self, out: &Tensor<T>, targets: &[usize], logit: bool) -> Result<Tensor<T>> {
        let s = out.shape();
        let n = s.first().copied().unwrap_or(1);
        let c = s.get(1).copied().unwrap_or(1);
        let inner: usize = s.iter().skip(2).product();
        if targets.len() != n || targets.iter().any(|&t| t >= c) {
            return Err(ModelError::shape("seed", s, &[targets.len()]));
        }
        let data = out
            .data()
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let (smp, k) = (i / (c * inner), (i / inner) % c);
                if targets[smp] != k {
                    T::zero()
                } else if logit {
                    v
                } else {
                    T::one()
                }
            })
            .collect();
        Ok(Tensor::from_parts(s.to_vec(), data))
    }

    fn occlude(&self, x: &Tensor<T>, mask: &[bool], invert: bool) -> Result<Tensor<T>> {
        let n = x.shape().first().copied().unwrap_or(1);
        if mask.len() * n != x.len() {
            return Err(ModelError::shape("occlude", x.shape(), &[mask.len()]));
        }
        let per = mask.len().max(1);
        let data = x
            .data()
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                if mask[i % per] != invert {
                    v
                } else {
                    T::zero()
                }
            })
            .collect();
        Ok(Tensor::from_parts(x.shape().to_vec(), data))
    }

    fn class_scores(&self, out: &Tensor<T>, targets: &[usize]) -> Result<Vec<T>> {
        let s = out.shape();
        let n = s.first().copied().unwrap_or(1);
        let c = s.get(1).copied().unwrap_or(1);
        let inner: usize = s.iter().skip(2).product();
        if targets.len() != n || targets.iter().any(|&t| t >= c) {
            return Err(ModelError::shape("class_scores", s, &[targets.len()]));
        }
        Ok((0..n)
            .map(|smp| {
                (0..inner)
                    .map(|j| out.data()[(smp * c + targets[smp]) * inner + j])
                    .fold(T::zero(), |a, b| a + b)
            })
            .collect())
    }

    fn add_masked(&self, acc: &mut Tensor<T>, mask: &[bool], scores: &[T]) -> Result<()> {
        if mask.len() * scores.len() != acc.len() {
            return Err(ModelError::shape(
                "add_masked",
                acc.shape(),
                &[scores.len(), mask.len()],
            ));
        }
        let per = mask.len().max(1);
        for (i, a) in acc.data_mut().iter_mut().enumerate() {
            if mask[i % per] {
                *a += scores[i / per];
            }
        }
        Ok(())
    }
}
