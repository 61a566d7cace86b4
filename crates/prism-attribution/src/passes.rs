//! The linear rules as pass descriptions, and the one generic executor that runs them.
//!
//! Zennit's model of a rule for `z = L_W(x) + b`: evaluate the layer on modified inputs with
//! modified parameters (one *pass* each), sum the passes into a denominator `z`, divide the
//! upper relevance by `stab(z)` and take each pass's input-gradient, multiplied by the
//! modified input it was evaluated on. A rule is a list of such [`Term`]s, combined by
//! [`Combine`]. [`Passes::of`] gives every linear rule's description; [`run`] executes any
//! description on any [`Backend`]. The fast paths in [`crate::linear`] are optimisations of
//! particular descriptions, pinned to this executor by property tests.

use std::borrow::Cow;

use prism_model::backend::{Backend, Map, Sign, Stabilize, Zip};
use prism_model::{Float, Tensor};

use crate::error::{AttributionError, Result};
use crate::linear::Linear;
use crate::rule::{Bound, Rule, Stabilizer};

/// What a pass feeds the layer instead of its input `x`.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// `x`.
    Identity,
    /// `x⁺`.
    Positive,
    /// `x⁻`.
    Negative,
    /// `1` (the gradient is then not multiplied by an input: Flat, W²).
    Ones,
    /// A constant input (ZBox's bounds `l`, `h`).
    Bound(Bound),
}

/// What a pass does to the weight, and to the bias when the pass has one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Param {
    /// `W`.
    Identity,
    /// `W⁺`.
    Positive,
    /// `W⁻`.
    Negative,
    /// `W + γW⁺`.
    GammaUp(f64),
    /// `W + γW⁻`.
    GammaDown(f64),
    /// `W ⊙ W`.
    Square,
    /// `1`.
    Ones,
}

/// One evaluation of the layer: `L_{param(W)}(input(x)) + param(b)` (no bias unless `bias`).
#[derive(Clone, Debug, PartialEq)]
pub struct Pass {
    pub input: Input,
    pub param: Param,
    pub bias: bool,
}

/// One denominator and its relevance: `z = Σ plus − Σ minus` over the passes,
/// `s = R / stab(z)` (kept only where the forward output `y` has `route`'s sign), and
/// `R_term = Σ_plus input ⊙ L_paramᵀ(s) − Σ_minus input ⊙ L_paramᵀ(s)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Term {
    pub plus: Vec<Pass>,
    pub minus: Vec<Pass>,
    pub route: Option<Sign>,
}

/// How the terms' relevances combine.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Combine {
    /// `Σ R_term` (one term: that term).
    Sum,
    /// `α·R₁ − β·R₂` (AlphaBeta).
    WeightedDifference { alpha: f64, beta: f64 },
}

/// A linear rule as data.
#[derive(Clone, Debug, PartialEq)]
pub struct Passes {
    pub terms: Vec<Term>,
    pub combine: Combine,
    pub stabilizer: Stabilizer,
}

fn pass(input: Input, param: Param, bias: bool) -> Pass {
    Pass { input, param, bias }
}

impl Passes {
    /// The description of a rule for linear nodes; `None` for rules that are not (Pass, Norm,
    /// the ReLU rules, Gradient).
    pub fn of(rule: &Rule) -> Option<Passes> {
        use Input as I;
        use Param as P;
        let term =
            |plus: Vec<Pass>, minus: Vec<Pass>, route: Option<Sign>| Term { plus, minus, route };
        let sum = |terms: Vec<Term>, stabilizer: &Stabilizer| Passes {
            terms,
            combine: Combine::Sum,
            stabilizer: *stabilizer,
        };
        Some(match rule {
            Rule::Epsilon { epsilon, zero_bias } => sum(
                vec![term(
                    vec![pass(I::Identity, P::Identity, !zero_bias)],
                    vec![],
                    None,
                )],
                epsilon,
            ),
            Rule::ZPlus {
                stabilizer,
                zero_bias,
            } => sum(
                vec![term(
                    vec![
                        pass(I::Positive, P::Positive, !zero_bias),
                        pass(I::Negative, P::Negative, false),
                    ],
                    vec![],
                    None,
                )],
                stabilizer,
            ),
            Rule::AlphaBeta {
                alpha,
                beta,
                stabilizer,
                zero_bias,
            } => Passes {
                terms: vec![
                    term(
                        vec![
                            pass(I::Positive, P::Positive, !zero_bias),
                            pass(I::Negative, P::Negative, false),
                        ],
                        vec![],
                        None,
                    ),
                    term(
                        vec![
                            pass(I::Positive, P::Negative, !zero_bias),
                            pass(I::Negative, P::Positive, false),
                        ],
                        vec![],
                        None,
                    ),
                ],
                combine: Combine::WeightedDifference {
                    alpha: *alpha,
                    beta: *beta,
                },
                stabilizer: *stabilizer,
            },
            Rule::Gamma {
                gamma,
                stabilizer,
                zero_bias,
            } => {
                let (up, dn) = (P::GammaUp(*gamma), P::GammaDown(*gamma));
                sum(
                    vec![
                        term(
                            vec![
                                pass(I::Positive, up, !zero_bias),
                                pass(I::Negative, dn, false),
                            ],
                            vec![],
                            Some(Sign::Positive),
                        ),
                        term(
                            vec![
                                pass(I::Positive, dn, !zero_bias),
                                pass(I::Negative, up, false),
                            ],
                            vec![],
                            Some(Sign::Negative),
                        ),
                    ],
                    stabilizer,
                )
            }
            Rule::ZBox {
                low,
                high,
                stabilizer,
                zero_bias,
            } => sum(
                vec![term(
                    vec![pass(I::Identity, P::Identity, !zero_bias)],
                    vec![
                        pass(I::Bound(low.clone()), P::Positive, !zero_bias),
                        pass(I::Bound(high.clone()), P::Negative, !zero_bias),
                    ],
                    None,
                )],
                stabilizer,
            ),
            Rule::Flat { stabilizer } => sum(
                vec![term(vec![pass(I::Ones, P::Ones, false)], vec![], None)],
                stabilizer,
            ),
            Rule::WSquare {
                stabilizer,
                zero_bias,
            } => sum(
                vec![term(
                    vec![pass(I::Ones, P::Square, !zero_bias)],
                    vec![],
                    None,
                )],
                stabilizer,
            ),
            Rule::Norm { .. }
            | Rule::Pass
            | Rule::ReluDeconvNet
            | Rule::ReluGuidedBackprop
            | Rule::ReluBetaSmooth { .. }
            | Rule::Uniform { .. }
            | Rule::ConstantGate { .. }
            | Rule::FrozenNorm { .. }
            | Rule::Gradient => return None,
        })
    }
}

/// The backend's view of a rule stabiliser.
pub fn stabilize(s: &Stabilizer) -> Stabilize {
    Stabilize {
        epsilon: s.epsilon,
        clip: s.clip,
        norm_scale: s.norm_scale,
    }
}

/// `R / stab(z)`.
pub fn ratio<T: Float, B: Backend<T>>(
    b: &B,
    r: &B::Tensor,
    z: &B::Tensor,
    s: &Stabilizer,
) -> Result<B::Tensor> {
    Ok(if s.norm_scale {
        b.zip(Zip::Div, r, &b.stabilize(z, &stabilize(s)))?
    } else {
        b.zip(
            Zip::StabilizedRatio {
                epsilon: s.epsilon,
                clip: s.clip,
            },
            r,
            z,
        )?
    })
}

/// A ZBox bound expanded to the input's shape.
pub fn bound<T: Float, B: Backend<T>>(b: &B, v: &Bound, shape: &[usize]) -> Result<B::Tensor> {
    match v {
        Bound::Scalar(v) => Ok(b.full(shape, T::of(*v))),
        Bound::PerChannel(vs) => {
            if shape.len() < 2 || shape[1] != vs.len() {
                return Err(AttributionError::Rule(format!("ZBox bound has {} values but the input has shape {shape:?} (one per channel expected)", vs.len())));
            }
            let plane: usize = shape[2..].iter().product();
            let data = (0..shape.iter().product::<usize>())
                .map(|i| T::of(vs[(i / plane.max(1)) % vs.len()]))
                .collect();
            Ok(b.upload(Tensor::new(shape.to_vec(), data)?)?)
        }
    }
}

fn param_map(p: Param) -> Option<Map> {
    match p {
        Param::Identity | Param::Ones => None,
        Param::Positive => Some(Map::Positive),
        Param::Negative => Some(Map::Negative),
        Param::GammaUp(g) => Some(Map::GammaUp(g)),
        Param::GammaDown(g) => Some(Map::GammaDown(g)),
        Param::Square => Some(Map::Square),
    }
}

/// Modified inputs and parameters, each computed once per rule application (the identity
/// modifiers borrow: weights are never copied).
struct Modified<'l, X: Clone> {
    inputs: Vec<(Input, Cow<'l, X>)>,
    weights: Vec<(Param, Cow<'l, X>)>,
    biases: Vec<(Param, Cow<'l, X>)>,
}

impl<'l, X: Clone> Modified<'l, X> {
    /// Computes what the passes of `term` need and has not been computed yet.
    fn prepare<T: Float, B: Backend<T, Tensor = X>>(
        &mut self,
        b: &B,
        term: &Term,
        lin: &'l Linear<'_, X>,
        x: &'l X,
    ) -> Result<()> {
        for p in term.plus.iter().chain(&term.minus) {
            if !self.inputs.iter().any(|(i, _)| *i == p.input) {
                let t = match &p.input {
                    Input::Identity => Cow::Borrowed(x),
                    Input::Positive => Cow::Owned(b.map(Map::Positive, x)),
                    Input::Negative => Cow::Owned(b.map(Map::Negative, x)),
                    Input::Ones => Cow::Owned(b.full(b.shape(x), T::one())),
                    Input::Bound(v) => Cow::Owned(bound(b, v, b.shape(x))?),
                };
                self.inputs.push((p.input.clone(), t));
            }
            let modify = |t: &'l X| match (p.param, param_map(p.param)) {
                (Param::Ones, _) => Cow::Owned(b.full(b.shape(t), T::one())),
                (_, Some(m)) => Cow::Owned(b.map(m, t)),
                (_, None) => Cow::Borrowed(t),
            };
            if !self.weights.iter().any(|(q, _)| *q == p.param) {
                self.weights.push((p.param, modify(&lin.weight)));
            }
            if let Some(bias) = lin.bias.as_deref().filter(|_| p.bias) {
                if !self.biases.iter().any(|(q, _)| *q == p.param) {
                    self.biases.push((p.param, modify(bias)));
                }
            }
        }
        Ok(())
    }
    fn input(&self, i: &Input) -> Result<&X> {
        self.inputs
            .iter()
            .find(|(j, _)| j == i)
            .map(|(_, t)| &**t)
            .ok_or_else(|| AttributionError::Rule(format!("input {i:?} was not prepared")))
    }
    fn weight(&self, p: Param) -> Result<&X> {
        self.weights
            .iter()
            .find(|(q, _)| *q == p)
            .map(|(_, t)| &**t)
            .ok_or_else(|| AttributionError::Rule(format!("weight {p:?} was not prepared")))
    }
    fn bias(&self, p: Param) -> Option<&X> {
        self.biases.iter().find(|(q, _)| *q == p).map(|(_, t)| &**t)
    }
}

/// `Σ plus − Σ minus` (no subtraction without minus passes).
fn difference<T: Float, B: Backend<T>>(
    b: &B,
    plus: Option<B::Tensor>,
    minus: Option<B::Tensor>,
) -> Result<B::Tensor> {
    match (plus, minus) {
        (Some(p), Some(q)) => Ok(b.zip(Zip::Sub, &p, &q)?),
        (Some(p), None) => Ok(p),
        (None, _) => Err(AttributionError::Rule(
            "a rule term needs at least one pass".into(),
        )),
    }
}

fn fold<X>(
    items: impl IntoIterator<Item = Result<X>>,
    mut add: impl FnMut(X, X) -> Result<X>,
) -> Result<Option<X>> {
    let mut acc = None;
    for item in items {
        let item = item?;
        acc = Some(match acc {
            None => item,
            Some(a) => add(a, item)?,
        });
    }
    Ok(acc)
}

/// Runs a rule description on a linear node: relevance `r` at the output, the node's input
/// `x` and its forward output `y`. Returns the relevance at the input.
///
/// Sums run left to right in the order of the description (the order is part of the result).
/// A term of exactly one unmodified pass with the layer's own bias takes its `z` from the
/// forward pass instead of recomputing it.
pub fn run<T: Float, B: Backend<T>>(
    b: &B,
    passes: &Passes,
    lin: &Linear<'_, B::Tensor>,
    x: &B::Tensor,
    y: &B::Tensor,
    r: &B::Tensor,
) -> Result<B::Tensor> {
    let mut m = Modified {
        inputs: Vec::new(),
        weights: Vec::new(),
        biases: Vec::new(),
    };
    let add = |a: B::Tensor, c: B::Tensor| -> Result<B::Tensor> { Ok(b.zip(Zip::Add, &a, &c)?) };
    let mut rels = Vec::with_capacity(passes.terms.len());
    for term in &passes.terms {
        m.prepare(b, term, lin, x)?;
        let m = &m;
        let reuse = match (term.plus.as_slice(), term.minus.is_empty()) {
            ([p], true) => {
                p.input == Input::Identity
                    && p.param == Param::Identity
                    && (p.bias || lin.bias.is_none())
            }
            _ => false,
        };
        let forward = |p: &Pass| -> Result<B::Tensor> {
            let bias = if p.bias { m.bias(p.param) } else { None };
            lin.forward(b, m.input(&p.input)?, m.weight(p.param)?, bias)
        };
        let z = if reuse {
            Cow::Borrowed(y)
        } else {
            let plus = fold(term.plus.iter().map(forward), add)?;
            let minus = fold(term.minus.iter().map(forward), add)?;
            Cow::Owned(difference(b, plus, minus)?)
        };
        let mut s = ratio(b, r, &z, &passes.stabilizer)?;
        drop(z);
        if let Some(sign) = term.route {
            s = b.zip(Zip::RouteBySign(sign), &s, y)?;
        }
        let grad = |p: &Pass| -> Result<B::Tensor> {
            let g = lin.vjp(b, &s, m.weight(p.param)?)?;
            if p.input == Input::Ones {
                // 1 ⊙ g = g exactly
                return Ok(g);
            }
            Ok(b.zip(Zip::Mul, m.input(&p.input)?, &g)?)
        };
        let plus = fold(term.plus.iter().map(grad), add)?;
        let minus = fold(term.minus.iter().map(grad), add)?;
        rels.push(difference(b, plus, minus)?);
    }
    match passes.combine {
        Combine::Sum => fold(rels.into_iter().map(Ok), add)?,
        Combine::WeightedDifference { alpha, beta } => match <[_; 2]>::try_from(rels) {
            Ok([p, q]) => Some(b.zip(Zip::WeightedDifference { alpha, beta }, &p, &q)?),
            Err(_) => None,
        },
    }
    .ok_or_else(|| AttributionError::Rule("a rule's terms do not fit its combination".into()))
}
