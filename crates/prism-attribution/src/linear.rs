//! Linear nodes (convolution, transposed convolution, dense) as `z = L_W(x) + b`, with the
//! forward and input-gradient that rules evaluate under modified inputs and parameters, and the
//! application of every weight-modifying rule: the generic pass executor
//! ([`crate::passes::run`]) and the measured fast paths for inputs without negative values.

use std::borrow::Cow;

use prism_model::backend::{Backend, GammaRatios, Map, MatMul, Sign, Zip};
use prism_model::kernels::conv::ConvGeom;
use prism_model::op::Op;
use prism_model::{shape, Float, Node};

use crate::error::{AttributionError, Result};
use crate::passes::{self, ratio, Passes};
use crate::rule::{Rule, Stabilizer};

/// The linear map of a [`Linear`] node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
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
///
/// `X` is the tensor type of the backend the node is evaluated on.
pub struct Linear<'a, X: Clone> {
    pub kind: Kind,
    pub x_shape: Vec<usize>,
    pub y_shape: Vec<usize>,
    /// Conv/ConvTranspose: ONNX layout; dense: see [`Kind::Dense`] (alpha folded in).
    pub weight: Cow<'a, X>,
    /// Conv: [C_out]; dense: broadcastable to the output (beta folded in).
    pub bias: Option<Cow<'a, X>>,
}

impl<'a, X: Clone> Linear<'a, X> {
    /// Recognises a linear node; `ins` are its inputs (data, weight, bias).
    pub fn from_node<T: Float, B: Backend<T, Tensor = X>>(
        b: &B,
        node: &Node,
        ins: &[&'a X],
    ) -> Result<Option<Self>> {
        let (Some(x), Some(w)) = (ins.first(), ins.get(1)) else {
            return Ok(None);
        };
        let (xs, ws) = (b.shape(x), b.shape(w));
        Ok(Some(match &node.op {
            Op::Conv { window, group } => {
                let (g, y) = shape::conv_geom(&node.name, window, *group, xs, ws)?;
                Linear {
                    kind: Kind::Conv(g),
                    x_shape: xs.to_vec(),
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
                    xs,
                    ws,
                )?;
                Linear {
                    kind: Kind::ConvTranspose(g),
                    x_shape: xs.to_vec(),
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
                let (m, k, n) = shape::gemm_dims(xs, ws, false, *trans_b).ok_or_else(|| {
                    AttributionError::Invalid(format!("node '{}': gemm shapes", node.name))
                })?;
                let scaled = |t: &'a X, f: f64| {
                    if f == 1.0 {
                        Cow::Borrowed(t)
                    } else {
                        Cow::Owned(b.map(Map::Scale(f), t))
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
                    x_shape: xs.to_vec(),
                    y_shape: vec![m, n],
                    weight: w,
                    bias,
                }
            }
            Op::MatMul if ws.len() == 2 && xs.len() >= 2 => {
                let (k, n) = (ws[0], ws[1]);
                if xs[xs.len() - 1] != k {
                    return Ok(None);
                }
                let mut y = xs.to_vec();
                *y.last_mut().unwrap_or(&mut 0) = n;
                Linear {
                    kind: Kind::Dense {
                        rows: xs.iter().product::<usize>() / k.max(1),
                        k,
                        n,
                        trans: false,
                    },
                    x_shape: xs.to_vec(),
                    y_shape: y,
                    weight: Cow::Borrowed(ins[1]),
                    // A bias merged from a separate Add (`canonize::merge_linear_bias`).
                    bias: ins.get(2).map(|b| Cow::Borrowed(*b)),
                }
            }
            _ => return Ok(None),
        }))
    }

    /// `L_w(x) + b`.
    pub fn forward<T: Float, B: Backend<T, Tensor = X>>(
        &self,
        b: &B,
        x: &X,
        w: &X,
        bias: Option<&X>,
    ) -> Result<X> {
        Ok(match &self.kind {
            Kind::Conv(g) => b.reshape(b.conv2d(x, w, bias, g)?, self.y_shape.clone())?,
            Kind::ConvTranspose(g) => {
                b.reshape(b.conv_transpose2d(x, w, bias, g)?, self.y_shape.clone())?
            }
            Kind::Dense { rows, k, n, trans } => {
                let p = MatMul {
                    m: *rows,
                    n: *n,
                    k: *k,
                    a_t: false,
                    b_t: *trans,
                };
                let y = b.matmul(&p, x, w, self.y_shape.clone())?;
                match bias {
                    Some(c) => b.broadcast(Zip::Add, &y, c)?,
                    None => y,
                }
            }
        })
    }

    /// Input-gradient of `L_w` for output-gradient `g`.
    pub fn vjp<T: Float, B: Backend<T, Tensor = X>>(&self, b: &B, g: &X, w: &X) -> Result<X> {
        Ok(match &self.kind {
            Kind::Conv(geom) => {
                b.reshape(b.conv2d_input_grad(g, w, geom)?, self.x_shape.clone())?
            }
            Kind::ConvTranspose(geom) => {
                b.reshape(b.conv2d(g, w, None, geom)?, self.x_shape.clone())?
            }
            Kind::Dense { rows, k, n, trans } => {
                // dx = g · Wᵀ: the stored weight read transposed
                let p = MatMul {
                    m: *rows,
                    n: *k,
                    k: *n,
                    a_t: false,
                    b_t: !*trans,
                };
                b.matmul(&p, g, w, self.x_shape.clone())?
            }
        })
    }

    /// Adds (`Zip::Add`) or removes (`Zip::Sub`) a bias the way the node's forward adds it (per
    /// output channel for convolutions, broadcast for dense layers).
    fn with_bias<T: Float, B: Backend<T, Tensor = X>>(
        &self,
        b: &B,
        op: Zip,
        z: &X,
        bias: &X,
    ) -> Result<X> {
        Ok(match self.kind {
            Kind::Dense { .. } => b.broadcast(op, z, bias)?,
            Kind::Conv(_) | Kind::ConvTranspose(_) => b.channel(op, z, bias)?,
        })
    }
}

/// The rules whose passes simplify for an input without negative values (`x⁻ = 0`): every
/// pass on `x⁻` contributes exactly zero (those passes carry no bias), so they are skipped,
/// and `x` is factored out of the sums of input-gradients. `None` for the other rules.
pub fn apply_nonnegative<T: Float, B: Backend<T>>(
    b: &B,
    rule: &Rule,
    lin: &Linear<'_, B::Tensor>,
    x: &B::Tensor,
    y: &B::Tensor,
    r: &B::Tensor,
) -> Result<Option<B::Tensor>> {
    let w = &*lin.weight;
    let bias = |zero: bool, m: Map| -> Option<B::Tensor> {
        if zero {
            None
        } else {
            lin.bias.as_deref().map(|c| b.map(m, c))
        }
    };
    Ok(Some(match rule {
        Rule::ZPlus {
            stabilizer,
            zero_bias,
        } => {
            let wp = b.map(Map::Positive, w);
            let z = lin.forward(b, x, &wp, bias(*zero_bias, Map::Positive).as_ref())?;
            b.zip(
                Zip::Mul,
                x,
                &lin.vjp(b, &ratio(b, r, &z, stabilizer)?, &wp)?,
            )?
        }
        Rule::AlphaBeta {
            alpha,
            beta,
            stabilizer,
            zero_bias,
        } => {
            let (wp, wn) = (b.map(Map::Positive, w), b.map(Map::Negative, w));
            let za = lin.forward(b, x, &wp, bias(*zero_bias, Map::Positive).as_ref())?;
            let zb = lin.forward(b, x, &wn, bias(*zero_bias, Map::Negative).as_ref())?;
            let ra = lin.vjp(b, &ratio(b, r, &za, stabilizer)?, &wp)?;
            let rb = lin.vjp(b, &ratio(b, r, &zb, stabilizer)?, &wn)?;
            let d = b.zip(
                Zip::WeightedDifference {
                    alpha: *alpha,
                    beta: *beta,
                },
                &ra,
                &rb,
            )?;
            b.zip(Zip::Mul, x, &d)?
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
            let g = *gamma;
            let wp = b.map(Map::Positive, w);
            let u = lin.forward(b, x, &wp, None)?;
            if let Some(out) = gamma_fused(b, lin, x, y, r, &u, &wp, g, stabilizer, *zero_bias)? {
                return Ok(Some(out));
            }
            let lw = match lin.bias.as_deref() {
                Some(c) => Cow::Owned(lin.with_bias(b, Zip::Sub, y, c)?),
                None => Cow::Borrowed(y),
            };
            let mut zp = b.zip(Zip::AddScaled(g), &lw, &u)?;
            let mut zn = b.zip(Zip::GammaLower(g), &lw, &u)?;
            if let Some(ba) = bias(*zero_bias, Map::GammaUp(g)) {
                zp = lin.with_bias(b, Zip::Add, &zp, &ba)?;
            }
            if let Some(bb) = bias(*zero_bias, Map::GammaDown(g)) {
                zn = lin.with_bias(b, Zip::Add, &zn, &bb)?;
            }
            let sp = b.zip(
                Zip::RouteBySign(Sign::Positive),
                &ratio(b, r, &zp, stabilizer)?,
                y,
            )?;
            let sn = b.zip(
                Zip::RouteBySign(Sign::Negative),
                &ratio(b, r, &zn, stabilizer)?,
                y,
            )?;
            let s_w = b.zip(Zip::GammaRouteW(g), &sp, &sn)?;
            let s_wp = b.zip(Zip::GammaRouteWPlus(g), &sp, &sn)?;
            let total = b.zip(Zip::Add, &lin.vjp(b, &s_w, w)?, &lin.vjp(b, &s_wp, &wp)?)?;
            b.zip(Zip::Mul, x, &total)?
        }
        Rule::Epsilon { .. }
        | Rule::ZBox { .. }
        | Rule::Flat { .. }
        | Rule::WSquare { .. }
        | Rule::Norm { .. }
        | Rule::Pass
        | Rule::ReluDeconvNet
        | Rule::ReluGuidedBackprop
        | Rule::ReluBetaSmooth { .. }
        | Rule::Uniform { .. }
        | Rule::ConstantGate { .. }
        | Rule::FrozenNorm { .. }
        | Rule::Gradient => return Ok(None),
    }))
}

/// Gamma after a ReLU in two passes over the activations instead of a dozen: the routed,
/// stabilised ratios for both input-gradients in one pass ([`Backend::gamma_ratios`]), then
/// `x ⊙ (v₁ + v₂)`. `None` when the bias is not one value per output channel (conv) or column
/// (dense), or the stabiliser is norm-scaled; the caller then takes the general path.
#[allow(clippy::too_many_arguments)]
pub fn gamma_fused<T: Float, B: Backend<T>>(
    b: &B,
    lin: &Linear<'_, B::Tensor>,
    x: &B::Tensor,
    y: &B::Tensor,
    r: &B::Tensor,
    u: &B::Tensor,
    wp: &B::Tensor,
    gamma: f64,
    stab: &Stabilizer,
    zero_bias: bool,
) -> Result<Option<B::Tensor>> {
    if stab.norm_scale {
        return Ok(None);
    }
    // Per-element channel index of the bias.
    let ys = b.shape(y);
    let len: usize = ys.iter().product();
    let (channels, plane) = match lin.kind {
        Kind::Conv(_) | Kind::ConvTranspose(_) => {
            let c = ys.get(1).copied().unwrap_or(1).max(1);
            (
                c,
                len / (ys.first().copied().unwrap_or(1).max(1) * c).max(1),
            )
        }
        Kind::Dense { n, .. } => (n, 1),
    };
    let bias = lin.bias.as_deref();
    if bias.is_some_and(|c| b.shape(c).iter().product::<usize>() != channels) {
        return Ok(None);
    }
    let p = GammaRatios {
        gamma,
        epsilon: stab.epsilon,
        clip: stab.clip,
        zero_bias,
        channels,
        plane,
    };
    let (s_w, s_wp) = b.gamma_ratios(&p, y, u, r, bias)?;
    let mut v1 = lin.vjp(b, &s_w, &lin.weight)?;
    drop(s_w);
    let v2 = lin.vjp(b, &s_wp, wp)?;
    b.zip_into(Zip::Add, &mut v1, &v2)?;
    b.zip_into(Zip::Mul, &mut v1, x)?;
    Ok(Some(v1))
}

/// Applies a weight-modifying rule to a linear node: relevance `r` at the output, the node's
/// input `x` and its (forward-pass) output `y`. Returns the relevance at the input.
///
/// The rule's pass description ([`Passes::of`]) runs on the generic executor
/// ([`passes::run`]), except for inputs without negative values, where
/// [`apply_nonnegative`] takes the measured fast paths (Zennit always runs every pass).
pub fn apply<T: Float, B: Backend<T>>(
    b: &B,
    rule: &Rule,
    lin: &Linear<'_, B::Tensor>,
    x: &B::Tensor,
    y: &B::Tensor,
    r: &B::Tensor,
) -> Result<B::Tensor> {
    if b.all_nonnegative(x) {
        if let Some(r) = apply_nonnegative(b, rule, lin, x, y, r)? {
            return Ok(r);
        }
    }
    apply_generic(b, rule, lin, x, y, r)
}

/// Applies a rule by its pass description alone (no fast path).
pub fn apply_generic<T: Float, B: Backend<T>>(
    b: &B,
    rule: &Rule,
    lin: &Linear<'_, B::Tensor>,
    x: &B::Tensor,
    y: &B::Tensor,
    r: &B::Tensor,
) -> Result<B::Tensor> {
    let p = Passes::of(rule).ok_or_else(|| {
        AttributionError::Rule(format!("{} is not a rule for linear nodes", rule.name()))
    })?;
    passes::run(b, &p, lin, x, y, r)
}
