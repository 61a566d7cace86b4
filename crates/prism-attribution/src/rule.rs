//! LRP rules as small declarative values, and the one mechanism that applies them.
//!
//! Every rule for a linear node `z = f(x; W, b)` (convolution, transposed convolution, dense)
//! is Zennit's modified gradient: evaluate `f` on modified inputs with modified parameters
//! (one *pass* each), map the upper relevance `R` through a stabilised division, take the
//! input-gradient of each pass and combine (`reduce`) with the modified inputs. Notation below:
//! `x⁺ = max(x, 0)`, `x⁻ = min(x, 0)`, `W⁺`, `W⁻` likewise, `stab` the [`Stabilizer`].

use serde::{Deserialize, Serialize};

use crate::composite::CompositeParams;
use crate::error::{AttributionError, Result};

/// Zennit's ε of the Epsilon rule.
pub const DEFAULT_EPSILON: f64 = 1e-6;
/// Zennit's stabiliser ε of every other rule.
pub const DEFAULT_STABILIZER: f64 = 1e-6;
/// Zennit's γ of the Gamma rule.
pub const DEFAULT_GAMMA: f64 = 0.25;
/// Zennit's α of the AlphaBeta rule.
pub const DEFAULT_ALPHA: f64 = 2.0;
/// Zennit's β of the AlphaBeta rule.
pub const DEFAULT_BETA: f64 = 1.0;
/// Zennit's β of the β-smooth ReLU rule.
pub const DEFAULT_BETA_SMOOTH: f64 = 10.0;

/// Zennit's stabiliser: `z + sign(z)·ε` with `sign(0) = +1`; with `clip`, `sign(z)·max(|z|, ε)`;
/// with `norm_scale`, ε is scaled per sample by `√mean(z²)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stabilizer {
    pub epsilon: f64,
    #[serde(default)]
    pub clip: bool,
    #[serde(default)]
    pub norm_scale: bool,
}

impl Default for Stabilizer {
    fn default() -> Self {
        Stabilizer::eps(DEFAULT_STABILIZER)
    }
}

impl Stabilizer {
    pub fn eps(epsilon: f64) -> Self {
        Stabilizer {
            epsilon,
            clip: false,
            norm_scale: false,
        }
    }
}

/// Lower/upper input bound of the ZBox rule: a scalar, or one value per input channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Bound {
    Scalar(f64),
    PerChannel(Vec<f64>),
}

/// A propagation rule. Parameters and defaults are Zennit's.
///
/// Deserialises from the fields of a composite file's `[[rule]]` ([`RuleFields`]: `rule =
/// "gamma"`, `gamma = 0.5`, …), parameters left out being Zennit's defaults.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "RuleFields")]
pub enum Rule {
    /// LRP-ε: `R_in = x ⊙ Wᵀ(R / stab_ε(z))`, `z = Wx + b` (taken from the forward pass).
    Epsilon {
        epsilon: Stabilizer,
        zero_bias: bool,
    },
    /// LRP-z⁺ (α=1, β=0 with negative inputs): `z = W⁺x⁺ + W⁻x⁻ + b⁺`,
    /// `R_in = x⁺ ⊙ W⁺ᵀs + x⁻ ⊙ W⁻ᵀs`, `s = R / stab(z)`.
    ZPlus {
        stabilizer: Stabilizer,
        zero_bias: bool,
    },
    /// LRP-αβ (α − β = 1): positive part as z⁺ scaled by α, minus β times the negative part
    /// `z_β = W⁻x⁺ + W⁺x⁻ + b⁻`.
    AlphaBeta {
        alpha: f64,
        beta: f64,
        stabilizer: Stabilizer,
        zero_bias: bool,
    },
    /// Generalised LRP-γ (Montavon 2019; Andéol 2021): weights `W + γW⁺` / `W + γW⁻` on the
    /// positive and negative input parts, routed by the sign of the unmodified output.
    Gamma {
        gamma: f64,
        stabilizer: Stabilizer,
        zero_bias: bool,
    },
    /// LRP-z^B for bounded inputs `low ≤ x ≤ high`: `z = Wx − W⁺l − W⁻h`,
    /// `R_in = x ⊙ Wᵀs − l ⊙ W⁺ᵀs − h ⊙ W⁻ᵀs`.
    ZBox {
        low: Bound,
        high: Bound,
        stabilizer: Stabilizer,
        zero_bias: bool,
    },
    /// LRP-flat: relevance spread uniformly over the receptive field (`R_in = 1ᵀ(R / stab(1·1))`).
    Flat { stabilizer: Stabilizer },
    /// LRP-w²: `R_in = (W²)ᵀ(R / stab(W²·1 + b²))`.
    WSquare {
        stabilizer: Stabilizer,
        zero_bias: bool,
    },
    /// Proportional redistribution for parameter-free nodes (sums, average pooling):
    /// `R_in = x ⊙ J_fᵀ(R / stab(f(x)))`.
    Norm { stabilizer: Stabilizer },
    /// Pass relevance through unchanged (activations, unmerged batch norm).
    Pass,
    /// DeconvNet ReLU: `R_in = max(R, 0)`.
    ReluDeconvNet,
    /// Guided backprop ReLU: the ReLU gradient, where the upper gradient is positive.
    ReluGuidedBackprop,
    /// ReLU with the softplus gradient `sigmoid(β x) ⊙ R` (Dombrowski 2019).
    ReluBetaSmooth { beta: f64 },
    /// The true gradient (vector-Jacobian product).
    Gradient,
    /// AttnLRP's uniform rule for a product of computed tensors (`Q·Kᵀ`, `A·V`, a gating
    /// `Mul`; Achtibat et al. 2024, eq. 7): each of the `k` operands `x_i` gets
    /// `x_i ⊙ J_iᵀ(R / stab(y)) / k`, its z-rule share with the others held constant, divided
    /// equally. The operands' relevance sums to the output's.
    Uniform { stabilizer: Stabilizer },
    /// CP-LRP's rule for a product (Ali et al. 2022): the gate operand (an attention weight, a
    /// `Softmax` output, or an activation's output gating another tensor) is held constant and
    /// the other operand gets all relevance by the z-rule, `x ⊙ Jᵀ(R / stab(y))`. `gate` is the
    /// gate's input index, found on the graph when rules are assigned; without one (both or
    /// neither operand is a gate) the node is treated by [`Rule::Uniform`].
    ConstantGate {
        stabilizer: Stabilizer,
        gate: Option<usize>,
    },
    /// A normalisation with its normaliser held constant (LXT's LayerNorm and RMSNorm; the
    /// identity rule of AttnLRP for normalisation): for `LayerNormalization`,
    /// `GroupNormalization` and `InstanceNormalization`, `R_x = x ⊙ J̃ᵀ(R / stab(y))` with
    /// `J̃ᵀv = (w⊙v − mean(w⊙v)) / σ` (σ constant, the mean subtraction kept); for the
    /// `Mul`/`Div` of a decomposed LayerNorm/RMSNorm, the operand that is not the normaliser
    /// (input index `normaliser`, found on the graph) gets all relevance.
    FrozenNorm {
        stabilizer: Stabilizer,
        normaliser: Option<usize>,
    },
}

impl Rule {
    /// Checks parameters the way Zennit does at construction (e.g. α − β = 1).
    pub fn validate(&self) -> Result<()> {
        match self {
            Rule::AlphaBeta { alpha, beta, .. } => {
                if *alpha < 0.0 || *beta < 0.0 {
                    return Err(AttributionError::Rule(format!(
                        "alpha ({alpha}) and beta ({beta}) must be non-negative"
                    )));
                }
                if (alpha - beta - 1.0).abs() > 1e-12 {
                    return Err(AttributionError::Rule(format!(
                        "alpha − beta must be 1 (got alpha={alpha}, beta={beta})"
                    )));
                }
                Ok(())
            }
            Rule::Gamma { gamma, .. } if *gamma < 0.0 => Err(AttributionError::Rule(format!(
                "gamma must be non-negative, got {gamma}"
            ))),
            Rule::ReluBetaSmooth { beta } if !beta.is_finite() => {
                Err(AttributionError::Rule("beta_smooth must be finite".into()))
            }
            Rule::Epsilon { epsilon: s, .. } if !(s.epsilon >= 0.0 && s.epsilon.is_finite()) => {
                Err(AttributionError::Rule(format!(
                    "epsilon must be a finite number ≥ 0, got {}",
                    s.epsilon
                )))
            }
            Rule::ZBox { low, high, .. } => {
                let values = |b: &Bound| match b {
                    Bound::Scalar(v) => vec![*v],
                    Bound::PerChannel(v) => v.clone(),
                };
                let (lo, hi) = (values(low), values(high));
                if lo.iter().chain(&hi).any(|v| !v.is_finite()) {
                    return Err(AttributionError::Rule(format!(
                        "the ZBox bounds must be finite numbers, got low={lo:?} high={hi:?} \
                         (the input domain's minimum and maximum after normalisation)"
                    )));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Whether the rule modifies a linear node's weights (needs a parameterised node).
    pub fn needs_linear(&self) -> bool {
        matches!(
            self,
            Rule::Epsilon { .. }
                | Rule::ZPlus { .. }
                | Rule::AlphaBeta { .. }
                | Rule::Gamma { .. }
                | Rule::ZBox { .. }
                | Rule::Flat { .. }
                | Rule::WSquare { .. }
        )
    }

    /// Short name for messages and provenance.
    pub fn name(&self) -> &'static str {
        match self {
            Rule::Epsilon { .. } => "epsilon",
            Rule::ZPlus { .. } => "zplus",
            Rule::AlphaBeta { .. } => "alpha-beta",
            Rule::Gamma { .. } => "gamma",
            Rule::ZBox { .. } => "zbox",
            Rule::Flat { .. } => "flat",
            Rule::WSquare { .. } => "wsquare",
            Rule::Norm { .. } => "norm",
            Rule::Pass => "pass",
            Rule::ReluDeconvNet => "relu-deconvnet",
            Rule::ReluGuidedBackprop => "relu-guided-backprop",
            Rule::ReluBetaSmooth { .. } => "relu-beta-smooth",
            Rule::Gradient => "gradient",
            Rule::Uniform { .. } => "uniform",
            Rule::ConstantGate { .. } => "constant-gate",
            Rule::FrozenNorm { .. } => "frozen-norm",
        }
    }

    /// A copy with the bias zeroed in every pass (Zennit's `zero_params='bias'`).
    pub fn with_zero_bias(mut self) -> Self {
        match &mut self {
            Rule::Epsilon { zero_bias, .. }
            | Rule::ZPlus { zero_bias, .. }
            | Rule::AlphaBeta { zero_bias, .. }
            | Rule::Gamma { zero_bias, .. }
            | Rule::ZBox { zero_bias, .. }
            | Rule::WSquare { zero_bias, .. } => *zero_bias = true,
            _ => {}
        }
        self
    }
}

/// Rule names as composite files spell them.
pub const RULES: &[&str] = &[
    "epsilon",
    "zplus",
    "alpha-beta",
    "gamma",
    "zbox",
    "flat",
    "wsquare",
    "norm",
    "pass",
    "gradient",
    "relu-deconvnet",
    "relu-guided-backprop",
    "relu-beta-smooth",
    "uniform",
    "constant-gate",
    "frozen-norm",
];

/// A rule as written in a composite file: its name and whichever parameters it sets.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFields {
    /// One of [`RULES`].
    pub rule: String,
    pub epsilon: Option<f64>,
    pub stabilizer: Option<f64>,
    pub gamma: Option<f64>,
    pub alpha: Option<f64>,
    pub beta: Option<f64>,
    pub low: Option<Bound>,
    pub high: Option<Bound>,
    pub beta_smooth: Option<f64>,
    #[serde(default)]
    pub zero_bias: bool,
}

impl RuleFields {
    /// The rule, with the parameters it leaves out taken from `defaults` (not validated).
    pub fn to_rule(&self, defaults: &CompositeParams) -> std::result::Result<Rule, String> {
        let stabilizer = Stabilizer::eps(self.stabilizer.unwrap_or(defaults.stabilizer));
        let zero_bias = self.zero_bias;
        let bound = |v: &Option<Bound>, d: &Option<Bound>, key: &str| {
            v.clone()
                .or_else(|| d.clone())
                .ok_or_else(|| format!("zbox needs `{key}`"))
        };
        Ok(match self.rule.as_str() {
            "epsilon" => Rule::Epsilon {
                epsilon: Stabilizer::eps(self.epsilon.unwrap_or(defaults.epsilon)),
                zero_bias,
            },
            "zplus" => Rule::ZPlus {
                stabilizer,
                zero_bias,
            },
            "alpha-beta" => Rule::AlphaBeta {
                alpha: self.alpha.unwrap_or(defaults.alpha),
                beta: self.beta.unwrap_or(defaults.beta),
                stabilizer,
                zero_bias,
            },
            "gamma" => Rule::Gamma {
                gamma: self.gamma.unwrap_or(defaults.gamma),
                stabilizer,
                zero_bias,
            },
            "zbox" => Rule::ZBox {
                low: bound(&self.low, &defaults.low, "low")?,
                high: bound(&self.high, &defaults.high, "high")?,
                stabilizer,
                zero_bias,
            },
            "flat" => Rule::Flat { stabilizer },
            "wsquare" => Rule::WSquare {
                stabilizer,
                zero_bias,
            },
            "norm" => Rule::Norm { stabilizer },
            "pass" => Rule::Pass,
            "gradient" => Rule::Gradient,
            "relu-deconvnet" => Rule::ReluDeconvNet,
            "relu-guided-backprop" => Rule::ReluGuidedBackprop,
            "relu-beta-smooth" => Rule::ReluBetaSmooth {
                beta: self.beta_smooth.unwrap_or(defaults.beta_smooth),
            },
            "uniform" => Rule::Uniform { stabilizer },
            "constant-gate" => Rule::ConstantGate {
                stabilizer,
                gate: None,
            },
            "frozen-norm" => Rule::FrozenNorm {
                stabilizer,
                normaliser: None,
            },
            other => return Err(format!("unknown rule '{other}' ({})", RULES.join(", "))),
        })
    }
}

impl TryFrom<RuleFields> for Rule {
    type Error = AttributionError;

    /// Zennit's defaults for what the fields leave out; the rule is validated.
    fn try_from(fields: RuleFields) -> Result<Rule> {
        let rule = fields
            .to_rule(&CompositeParams::default())
            .map_err(AttributionError::Rule)?;
        rule.validate()?;
        Ok(rule)
    }
}
