//! Linear nodes (convolution, transposed convolution, dense) as `z = L_W(x) + b`, with the
//! forward and input-gradient that rules evaluate under modified inputs and parameters, and the
//! application of every weight-modifying rule.

use std::borrow::Cow;

use prism_model::kernels::conv::{self, ConvGeom};
use prism_model::kernels::elementwise::broadcast_map;
use prism_model::kernels::linalg;
use prism_model::op::Op;
use prism_model::{shape, Float, Node, Tensor};
use rayon::prelude::*;

use crate::error::{AttributionError, Result};
use crate::rule::{Bound, Rule, Stabilizer};

enum Kind {
    Conv(ConvGeom),
    ConvTranspose(ConvGeom),
    /// rows × k input; weight k × n, or n × k when `trans` (Gemm's transB, PyTorch's Linear)
    Dense {
        rows: usize,
        k: usize,
        n: usize,
        trans: bool,
    },
}

/// A node of the form `z = L_W(x) + b`. The weight and bias are borrowed from the graph (a
/// copy is made only when Gemm's alpha/beta must be folded in).
pub struct Linear<'a, T: Clone> {
    kind: Kind,
    x_shape: Vec<usize>,
    y_shape: Vec<usize>,
    /// Conv/ConvTranspose: ONNX layout; dense: see [`Kind::Dense`] (alpha folded in).
    pub weight: Cow<'a, Tensor<T>>,
    /// Conv: [C_out]; dense: broadcastable to the output (beta folded in).
    pub bias: Option<Cow<'a, Tensor<T>>>,
}

impl<'a, T: Float> Linear<'a, T> {
    /// Recognises a linear node; `ins` are its inputs (data, weight, bias).
    pub fn from_node(node: &Node, ins: &[&'a Tensor<T>]) -> Result<Option<Self>> {
        let x = ins[0];
        Ok(Some(match &node.op {
            Op::Conv { window, group } => {
                let (g, y) =
                    shape::conv_geom(&node.name, window, *group, x.shape(), ins[1].shape())?;
                Linear {
                    kind: Kind::Conv(g),
                    x_shape: x.shape().to_vec(),
                    y_shape: y,
                    weight: Cow::Borrowed(ins[1]),
                    bias: ins.get(2).map(|b| Cow::Borrowed(*b)),
                }
            }
            Op::ConvTranspose {
                window,
                group,
                output_padding,
                output_shape,
            } => {
                let (g, y) = shape::conv_transpose_geom(
                    &node.name,
                    window,
                    *group,
                    output_padding,
                    output_shape,
                    x.shape(),
                    ins[1].shape(),
                )?;
                Linear {
                    kind: Kind::ConvTranspose(g),
                    x_shape: x.shape().to_vec(),
                    y_shape: y,
                    weight: Cow::Borrowed(ins[1]),
                    bias: ins.get(2).map(|b| Cow::Borrowed(*b)),
                }
            }
            Op::Gemm {
                alpha,
                beta,
                trans_a: false,
                trans_b,
            } if ins.len() >= 2 => {
                let (m, k, n) = shape::gemm_dims(x.shape(), ins[1].shape(), false, *trans_b)
                    .ok_or_else(|| {
                        AttributionError::Invalid(format!("node '{}': gemm shapes", node.name))
                    })?;
                let scaled = |t: &'a Tensor<T>, f: f64| {
                    if f == 1.0 {
                        Cow::Borrowed(t)
                    } else {
                        Cow::Owned(t.map(|&v| v * T::of(f)))
                    }
                };
                let w = scaled(ins[1], *alpha);
                let bias = ins.get(2).map(|c| scaled(c, *beta));
                Linear {
                    kind: Kind::Dense {
                        rows: m,
                        k,
                        n,
                        trans: *trans_b,
                    },
                    x_shape: x.shape().to_vec(),
                    y_shape: vec![m, n],
                    weight: w,
                    bias,
                }
            }
            Op::MatMul if ins[1].rank() == 2 && x.rank() >= 2 => {
                let (k, n) = (ins[1].shape()[0], ins[1].shape()[1]);
                if x.shape()[x.rank() - 1] != k {
                    return Ok(None);
                }
                let mut y = x.shape().to_vec();
                *y.last_mut().unwrap_or(&mut 0) = n;
                Linear {
                    kind: Kind::Dense {
                        rows: x.len() / k.max(1),
                        k,
                        n,
                        trans: false,
                    },
                    x_shape: x.shape().to_vec(),
                    y_shape: y,
                    weight: Cow::Borrowed(ins[1]),
                    bias: None,
                }
            }
            _ => return Ok(None),
        }))
    }

    /// `L_w(x) + b`.
    pub fn forward(&self, x: &[T], w: &[T], b: Option<&Tensor<T>>) -> Tensor<T> {
        match &self.kind {
            Kind::Conv(g) => Tensor::new(
                self.y_shape.clone(),
                conv::conv2d(x, w, b.map(|b| b.data()), g).into_data(),
            )
            .unwrap_or_else(|_| Tensor::zeros(&self.y_shape)),
            Kind::ConvTranspose(g) => Tensor::new(
                self.y_shape.clone(),
                conv::conv_transpose2d(x, w, b.map(|b| b.data()), g).into_data(),
            )
            .unwrap_or_else(|_| Tensor::zeros(&self.y_shape)),
            Kind::Dense { rows, k, n, trans } => {
                let y = linalg::matmul_t(
                    *rows,
                    *n,
                    *k,
                    x,
                    false,
                    w,
                    *trans,
                    prism_model::kernels::threads(),
                );
                let y = Tensor::new(self.y_shape.clone(), y)
                    .unwrap_or_else(|_| Tensor::zeros(&self.y_shape));
                match b {
                    Some(b) => broadcast_map(&y, b, &self.y_shape, |a, c| a + c),
                    None => y,
                }
            }
        }
    }

    /// Input-gradient of `L_w` for output-gradient `g`.
    pub fn vjp(&self, g: &[T], w: &[T]) -> Tensor<T> {
        let data = match &self.kind {
            Kind::Conv(geom) => conv::conv2d_input_grad(g, w, geom).into_data(),
            Kind::ConvTranspose(geom) => conv::conv2d(g, w, None, geom).into_data(),
            Kind::Dense { rows, k, n, trans } => {
                // dx = g · Wᵀ: the stored weight read transposed
                linalg::matmul_t(
                    *rows,
                    *k,
                    *n,
                    g,
                    false,
                    w,
                    !*trans,
                    prism_model::kernels::threads(),
                )
            }
        };
        Tensor::new(self.x_shape.clone(), data).unwrap_or_else(|_| Tensor::zeros(&self.x_shape))
    }

    fn ones_weight(&self) -> Vec<T> {
        vec![T::one(); self.weight.len()]
    }
}

/// Element-wise maps run on all threads for large tensors: the rules' arithmetic between the
/// convolutions would otherwise dominate on big activations.
const PAR_MIN: usize = 1 << 14;

fn map<T: Float>(t: &Tensor<T>, f: impl Fn(T) -> T + Sync + Send) -> Tensor<T> {
    let data: Vec<T> = if t.len() >= PAR_MIN {
        t.data()
            .par_iter()
            .with_min_len(4096)
            .map(|&v| f(v))
            .collect()
    } else {
        t.data().iter().map(|&v| f(v)).collect()
    };
    Tensor::new(t.shape().to_vec(), data).unwrap_or_else(|_| Tensor::zeros(t.shape()))
}
fn pos<T: Float>(t: &Tensor<T>) -> Tensor<T> {
    map(t, |v| if v > T::zero() { v } else { T::zero() })
}
fn neg<T: Float>(t: &Tensor<T>) -> Tensor<T> {
    map(t, |v| if v < T::zero() { v } else { T::zero() })
}
fn zip<T: Float>(a: &Tensor<T>, b: &Tensor<T>, f: impl Fn(T, T) -> T + Sync + Send) -> Tensor<T> {
    let data: Vec<T> = if a.len() >= PAR_MIN {
        a.data()
            .par_iter()
            .with_min_len(4096)
            .zip(b.data().par_iter())
            .map(|(&x, &y)| f(x, y))
            .collect()
    } else {
        a.data()
            .iter()
            .zip(b.data())
            .map(|(&x, &y)| f(x, y))
            .collect()
    };
    Tensor::new(a.shape().to_vec(), data).unwrap_or_else(|_| Tensor::zeros(a.shape()))
}
fn add<T: Float>(a: &Tensor<T>, b: &Tensor<T>) -> Tensor<T> {
    zip(a, b, |x, y| x + y)
}
fn mul<T: Float>(a: &Tensor<T>, b: &Tensor<T>) -> Tensor<T> {
    zip(a, b, |x, y| x * y)
}

/// Element-wise product of two tensors of the same shape (parallel for large tensors).
pub fn product<T: Float>(a: &Tensor<T>, b: &Tensor<T>) -> Tensor<T> {
    mul(a, b)
}

/// Zennit's stabilised denominator.
pub fn stabilize<T: Float>(z: &Tensor<T>, s: &Stabilizer) -> Tensor<T> {
    let n = z.shape().first().copied().unwrap_or(1).max(1);
    let per = z.len() / n;
    let mut out = z.data().to_vec();
    for (i, chunk) in out.chunks_mut(per.max(1)).enumerate() {
        let mut eps = T::of(s.epsilon);
        if s.norm_scale {
            let zs = &z.data()[i * per..(i + 1) * per];
            let ms: T = zs.iter().map(|&v| v * v).sum::<T>() / T::of(per.max(1) as f64);
            eps *= ms.sqrt();
        }
        for v in chunk.iter_mut() {
            let sign = if *v < T::zero() { -T::one() } else { T::one() };
            *v = if s.clip {
                sign * v.abs().max(eps)
            } else {
                *v + sign * eps
            };
        }
    }
    Tensor::new(z.shape().to_vec(), out).unwrap_or_else(|_| Tensor::zeros(z.shape()))
}

/// `R / stab(z)`.
pub fn ratio<T: Float>(r: &Tensor<T>, z: &Tensor<T>, s: &Stabilizer) -> Tensor<T> {
    if s.norm_scale {
        return zip(r, &stabilize(z, s), |a, b| a / b);
    }
    let (eps, clip) = (T::of(s.epsilon), s.clip);
    zip(r, z, move |rv, zv| {
        let sign = if zv < T::zero() { -T::one() } else { T::one() };
        rv / if clip {
            sign * zv.abs().max(eps)
        } else {
            zv + sign * eps
        }
    })
}

fn bound<T: Float>(b: &Bound, shape: &[usize]) -> Result<Tensor<T>> {
    match b {
        Bound::Scalar(v) => Ok(Tensor::new(
            shape.to_vec(),
            vec![T::of(*v); shape.iter().product()],
        )?),
        Bound::PerChannel(vs) => {
            if shape.len() < 2 || shape[1] != vs.len() {
                return Err(AttributionError::Rule(format!("ZBox bound has {} values but the input has shape {shape:?} (one per channel expected)", vs.len())));
            }
            let plane: usize = shape[2..].iter().product();
            let data = (0..shape.iter().product::<usize>())
                .map(|i| T::of(vs[(i / plane.max(1)) % vs.len()]))
                .collect();
            Ok(Tensor::new(shape.to_vec(), data)?)
        }
    }
}

/// The rules whose passes simplify for an input without negative values (`x⁻ = 0`).
#[allow(clippy::type_complexity)]
fn apply_nonnegative<T: Float>(
    rule: &Rule,
    lin: &Linear<'_, T>,
    x: &Tensor<T>,
    y: &Tensor<T>,
    r: &Tensor<T>,
    bias: &dyn Fn(bool, &dyn Fn(&Tensor<T>) -> Tensor<T>) -> Option<Tensor<T>>,
) -> Result<Option<Tensor<T>>> {
    let w = &lin.weight;
    Ok(Some(match rule {
        Rule::ZPlus {
            stabilizer,
            zero_bias,
        } => {
            let wp = pos(w);
            let z = lin.forward(x.data(), wp.data(), bias(*zero_bias, &|b| pos(b)).as_ref());
            mul(x, &lin.vjp(ratio(r, &z, stabilizer).data(), wp.data()))
        }
        Rule::AlphaBeta {
            alpha,
            beta,
            stabilizer,
            zero_bias,
        } => {
            let (wp, wn) = (pos(w), neg(w));
            let za = lin.forward(x.data(), wp.data(), bias(*zero_bias, &|b| pos(b)).as_ref());
            let zb = lin.forward(x.data(), wn.data(), bias(*zero_bias, &|b| neg(b)).as_ref());
            let ra = lin.vjp(ratio(r, &za, stabilizer).data(), wp.data());
            let rb = lin.vjp(ratio(r, &zb, stabilizer).data(), wn.data());
            let (a, b) = (T::of(*alpha), T::of(*beta));
            mul(x, &zip(&ra, &rb, |p, q| a * p - b * q))
        }
        Rule::Gamma {
            gamma,
            stabilizer,
            zero_bias,
        } => {
            // With W_a = W + γW⁺ and W_b = W + γW⁻ = (1+γ)W − γW⁺, and L_W(x) = y − b from the
            // forward pass, one convolution (u = L_{W⁺}(x)) gives both denominators:
            //   z⁺ = L_W(x) + γu + b_a,   z⁻ = (1+γ)L_W(x) − γu + b_b,
            // and two input-gradients give the relevance:
            //   R_in = x ⊙ [Wᵀ(s⁺ + (1+γ)s⁻) + γW⁺ᵀ(s⁺ − s⁻)].
            let g = T::of(*gamma);
            let wp = pos(w);
            let u = lin.forward(x.data(), wp.data(), None);
            if let Some(out) = gamma_fused(lin, x, y, r, &u, w, &wp, g, stabilizer, *zero_bias) {
                return Ok(Some(out));
            }
            let lw = match lin.bias.as_deref() {
                Some(b) => sub_bias(lin, y, b),
                None => y.clone(),
            };
            let up = |t: &Tensor<T>| map(t, |v| v + g * if v > T::zero() { v } else { T::zero() });
            let dn = |t: &Tensor<T>| map(t, |v| v + g * if v < T::zero() { v } else { T::zero() });
            let mut zp = zip(&lw, &u, |l, uv| l + g * uv);
            let mut zn = zip(&lw, &u, |l, uv| (T::one() + g) * l - g * uv);
            if let Some(ba) = bias(*zero_bias, &up) {
                zp = add_bias(lin, &zp, &ba);
            }
            if let Some(bb) = bias(*zero_bias, &dn) {
                zn = add_bias(lin, &zn, &bb);
            }
            let sp = zip(&ratio(r, &zp, stabilizer), y, |s, yv| {
                if yv > T::zero() {
                    s
                } else {
                    T::zero()
                }
            });
            let sn = zip(&ratio(r, &zn, stabilizer), y, |s, yv| {
                if yv < T::zero() {
                    s
                } else {
                    T::zero()
                }
            });
            let s_w = zip(&sp, &sn, |a, b| a + (T::one() + g) * b);
            let s_wp = zip(&sp, &sn, |a, b| g * (a - b));
            let total = add(
                &lin.vjp(s_w.data(), w.data()),
                &lin.vjp(s_wp.data(), wp.data()),
            );
            mul(x, &total)
        }
        _ => return Ok(None),
    }))
}

/// Gamma after a ReLU in two passes over the activations instead of a dozen: the routed,
/// stabilised ratios for both input-gradients in one pass, then `x ⊙ (v₁ + v₂)` in another.
/// `None` when the bias is not one value per output channel (conv) or column (dense), or the
/// stabiliser is norm-scaled; the caller then takes the general path.
#[allow(clippy::too_many_arguments)]
fn gamma_fused<T: Float>(
    lin: &Linear<'_, T>,
    x: &Tensor<T>,
    y: &Tensor<T>,
    r: &Tensor<T>,
    u: &Tensor<T>,
    w: &Tensor<T>,
    wp: &Tensor<T>,
    g: T,
    stab: &Stabilizer,
    zero_bias: bool,
) -> Option<Tensor<T>> {
    if stab.norm_scale {
        return None;
    }
    // Per-element channel index of the bias.
    let (channels, plane) = match lin.kind {
        Kind::Conv(_) | Kind::ConvTranspose(_) => {
            let c = y.shape().get(1).copied().unwrap_or(1).max(1);
            (c, y.len() / (y.shape()[0].max(1) * c).max(1))
        }
        Kind::Dense { n, .. } => (n, 1),
    };
    let zero = vec![T::zero(); channels];
    let b: Vec<T> = match lin.bias.as_deref() {
        Some(b) if b.len() == channels => b.data().to_vec(),
        Some(_) => return None,
        None => zero.clone(),
    };
    let (ba, bb): (Vec<T>, Vec<T>) = if zero_bias {
        (zero.clone(), zero)
    } else {
        b.iter()
            .map(|&v| (v + g * v.max(T::zero()), v + g * v.min(T::zero())))
            .unzip()
    };
    let (eps, clip) = (T::of(stab.epsilon), stab.clip);
    let st = move |z: T| {
        let sign = if z < T::zero() { -T::one() } else { T::one() };
        if clip {
            sign * z.abs().max(eps)
        } else {
            z + sign * eps
        }
    };
    let one_g = T::one() + g;
    let n = y.len();
    let mut s_w = vec![T::zero(); n];
    let mut s_wp = vec![T::zero(); n];
    let (yd, ud, rd) = (y.data(), u.data(), r.data());
    s_w.par_iter_mut()
        .zip(s_wp.par_iter_mut())
        .enumerate()
        .with_min_len(4096)
        .for_each(|(i, (sw, swp))| {
            let c = (i / plane) % channels;
            let yv = yd[i];
            let lw = yv - b[c];
            let (sp, sn) = if yv > T::zero() {
                (rd[i] / st(lw + g * ud[i] + ba[c]), T::zero())
            } else if yv < T::zero() {
                (T::zero(), rd[i] / st(one_g * lw - g * ud[i] + bb[c]))
            } else {
                (T::zero(), T::zero())
            };
            *sw = sp + one_g * sn;
            *swp = g * (sp - sn);
        });
    let mut v1 = lin.vjp(&s_w, w.data());
    drop(s_w);
    let v2 = lin.vjp(&s_wp, wp.data());
    v1.data_mut()
        .par_iter_mut()
        .with_min_len(4096)
        .zip(v2.data().par_iter())
        .zip(x.data().par_iter())
        .for_each(|((a, &b2), &xv)| *a = xv * (*a + b2));
    Some(v1)
}

/// Adds a bias the way the node's forward does (per output channel for convolutions,
/// broadcast for dense layers).
fn add_bias<T: Float>(lin: &Linear<'_, T>, z: &Tensor<T>, b: &Tensor<T>) -> Tensor<T> {
    match lin.kind {
        Kind::Dense { .. } => broadcast_map(z, b, z.shape(), |a, c| a + c),
        _ => channel_map(z, b, |a, c| a + c),
    }
}

fn sub_bias<T: Float>(lin: &Linear<'_, T>, y: &Tensor<T>, b: &Tensor<T>) -> Tensor<T> {
    match lin.kind {
        Kind::Dense { .. } => broadcast_map(y, b, y.shape(), |a, c| a - c),
        _ => channel_map(y, b, |a, c| a - c),
    }
}

/// `f(z[n, c, …], b[c])` over the channel axis 1.
fn channel_map<T: Float>(
    z: &Tensor<T>,
    b: &Tensor<T>,
    f: impl Fn(T, T) -> T + Sync + Send,
) -> Tensor<T> {
    let c = z.shape().get(1).copied().unwrap_or(1).max(1);
    let plane = z.len() / (z.shape()[0].max(1) * c).max(1);
    let data: Vec<T> = z
        .data()
        .par_iter()
        .with_min_len(4096)
        .enumerate()
        .map(|(i, &v)| f(v, b.data()[(i / plane.max(1)) % c]))
        .collect();
    Tensor::new(z.shape().to_vec(), data).unwrap_or_else(|_| Tensor::zeros(z.shape()))
}

/// Applies a weight-modifying rule to a linear node: relevance `r` at the output, the node's
/// input `x` and its (forward-pass) output `y`. Returns the relevance at the input.
pub fn apply<T: Float>(
    rule: &Rule,
    lin: &Linear<'_, T>,
    x: &Tensor<T>,
    y: &Tensor<T>,
    r: &Tensor<T>,
) -> Result<Tensor<T>> {
    let w = &lin.weight;
    let bias = |zero: bool, f: &dyn Fn(&Tensor<T>) -> Tensor<T>| {
        if zero {
            None
        } else {
            lin.bias.as_deref().map(f)
        }
    };
    // After a ReLU the input has no negative part: every pass on x⁻ contributes exactly zero
    // (those passes carry no bias), so they are skipped. Zennit always runs them.
    if x.data()
        .par_iter()
        .with_min_len(4096)
        .all(|&v| v >= T::zero())
    {
        if let Some(r) = apply_nonnegative(rule, lin, x, y, r, &bias)? {
            return Ok(r);
        }
    }
    Ok(match rule {
        Rule::Epsilon { epsilon, zero_bias } => {
            // Reuse the forward's z unless the bias must go.
            let z = if *zero_bias && lin.bias.is_some() {
                lin.forward(x.data(), w.data(), None)
            } else {
                y.clone()
            };
            let s = ratio(r, &z, epsilon);
            mul(x, &lin.vjp(s.data(), w.data()))
        }
        Rule::ZPlus {
            stabilizer,
            zero_bias,
        } => {
            let (xp, xn, wp, wn) = (pos(x), neg(x), pos(w), neg(w));
            let bp = bias(*zero_bias, &|b| pos(b));
            let z = add(
                &lin.forward(xp.data(), wp.data(), bp.as_ref()),
                &lin.forward(xn.data(), wn.data(), None),
            );
            let s = ratio(r, &z, stabilizer);
            add(
                &mul(&xp, &lin.vjp(s.data(), wp.data())),
                &mul(&xn, &lin.vjp(s.data(), wn.data())),
            )
        }
        Rule::AlphaBeta {
            alpha,
            beta,
            stabilizer,
            zero_bias,
        } => {
            let (xp, xn, wp, wn) = (pos(x), neg(x), pos(w), neg(w));
            let bp = bias(*zero_bias, &|b| pos(b));
            let bn = bias(*zero_bias, &|b| neg(b));
            let za = add(
                &lin.forward(xp.data(), wp.data(), bp.as_ref()),
                &lin.forward(xn.data(), wn.data(), None),
            );
            let zb = add(
                &lin.forward(xp.data(), wn.data(), bn.as_ref()),
                &lin.forward(xn.data(), wp.data(), None),
            );
            let sa = ratio(r, &za, stabilizer);
            let sb = ratio(r, &zb, stabilizer);
            let ra = add(
                &mul(&xp, &lin.vjp(sa.data(), wp.data())),
                &mul(&xn, &lin.vjp(sa.data(), wn.data())),
            );
            let rb = add(
                &mul(&xp, &lin.vjp(sb.data(), wn.data())),
                &mul(&xn, &lin.vjp(sb.data(), wp.data())),
            );
            let (a, b) = (T::of(*alpha), T::of(*beta));
            zip(&ra, &rb, |p, q| a * p - b * q)
        }
        Rule::Gamma {
            gamma,
            stabilizer,
            zero_bias,
        } => {
            let g = T::of(*gamma);
            let (xp, xn) = (pos(x), neg(x));
            // W + γW⁺ and W + γW⁻ (same for the bias)
            let up = |t: &Tensor<T>| map(t, |v| v + g * if v > T::zero() { v } else { T::zero() });
            let dn = |t: &Tensor<T>| map(t, |v| v + g * if v < T::zero() { v } else { T::zero() });
            let (wa, wb) = (up(w), dn(w));
            let ba = bias(*zero_bias, &up);
            let bb = bias(*zero_bias, &dn);
            let zp = add(
                &lin.forward(xp.data(), wa.data(), ba.as_ref()),
                &lin.forward(xn.data(), wb.data(), None),
            );
            let zn = add(
                &lin.forward(xp.data(), wb.data(), bb.as_ref()),
                &lin.forward(xn.data(), wa.data(), None),
            );
            // Route by the sign of the unmodified output (the forward's y; no fifth pass).
            let sp = zip(&ratio(r, &zp, stabilizer), y, |s, yv| {
                if yv > T::zero() {
                    s
                } else {
                    T::zero()
                }
            });
            let sn = zip(&ratio(r, &zn, stabilizer), y, |s, yv| {
                if yv < T::zero() {
                    s
                } else {
                    T::zero()
                }
            });
            let a = add(
                &mul(&xp, &lin.vjp(sp.data(), wa.data())),
                &mul(&xn, &lin.vjp(sp.data(), wb.data())),
            );
            let b = add(
                &mul(&xp, &lin.vjp(sn.data(), wb.data())),
                &mul(&xn, &lin.vjp(sn.data(), wa.data())),
            );
            add(&a, &b)
        }
        Rule::ZBox {
            low,
            high,
            stabilizer,
            zero_bias,
        } => {
            let l = bound::<T>(low, x.shape())?;
            let h = bound::<T>(high, x.shape())?;
            let (wp, wn) = (pos(w), neg(w));
            let b0 = bias(*zero_bias, &|b| b.clone());
            let bp = bias(*zero_bias, &|b| pos(b));
            let bn = bias(*zero_bias, &|b| neg(b));
            let o0 = lin.forward(x.data(), w.data(), b0.as_ref());
            let o1 = lin.forward(l.data(), wp.data(), bp.as_ref());
            let o2 = lin.forward(h.data(), wn.data(), bn.as_ref());
            let z = zip(&o0, &add(&o1, &o2), |a, b| a - b);
            let s = ratio(r, &z, stabilizer);
            let pos_part = mul(x, &lin.vjp(s.data(), w.data()));
            let neg_part = add(
                &mul(&l, &lin.vjp(s.data(), wp.data())),
                &mul(&h, &lin.vjp(s.data(), wn.data())),
            );
            zip(&pos_part, &neg_part, |a, b| a - b)
        }
        Rule::Flat { stabilizer } => {
            let ones_x = vec![T::one(); x.len()];
            let ones_w = lin.ones_weight();
            let z = lin.forward(&ones_x, &ones_w, None);
            let s = ratio(r, &z, stabilizer);
            lin.vjp(s.data(), &ones_w)
        }
        Rule::WSquare {
            stabilizer,
            zero_bias,
        } => {
            let ones_x = vec![T::one(); x.len()];
            let w2 = map(w, |v| v * v);
            let b2 = bias(*zero_bias, &|b| map(b, |v| v * v));
            let z = lin.forward(&ones_x, w2.data(), b2.as_ref());
            let s = ratio(r, &z, stabilizer);
            lin.vjp(s.data(), w2.data())
        }
        other => {
            return Err(AttributionError::Rule(format!(
                "{} is not a rule for linear nodes",
                other.name()
            )))
        }
    })
}
