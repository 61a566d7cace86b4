//! Composites: ordered (matcher → rule) lists, first match wins, as plain data.
//!
//! Built-in composites carry Zennit's names (kebab case), layer maps and defaults; users load
//! their own from TOML ([`Composite::from_toml`]).

use std::path::Path;

use globset::{Glob, GlobMatcher};
use prism_model::op::{BinaryOp, UnaryOp};
use prism_model::{Graph, Node, Op, OpGroup};
use serde::Deserialize;

use crate::error::{AttributionError, Result};
use crate::rule::{Bound, Rule, Stabilizer};

/// Families of nodes a composite can match (Zennit's type groups, for graph nodes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Group {
    /// Conv, ConvTranspose
    Convolution,
    /// Gemm / MatMul with a constant weight (PyTorch's `nn.Linear`)
    Dense,
    /// Convolution or dense (Zennit's `Linear` group)
    Linear,
    /// Relu, LeakyRelu, Clip, Sigmoid, HardSigmoid, HardSwish, Tanh
    Activation,
    /// Relu only (DeconvNet, guided backprop, β-smooth)
    Relu,
    /// AveragePool, GlobalAveragePool, ReduceMean
    AveragePool,
    MaxPool,
    BatchNorm,
    /// Add/Sub of two computed tensors (residual connections; explicit when canonizing)
    Sum,
    Concat,
    Softmax,
}

/// What a composite entry applies to.
#[derive(Clone, Debug)]
pub enum Matcher {
    Group(Group),
    /// Node names, as a glob (`features.*`, `*/conv1`).
    Name(GlobMatcher),
    /// ONNX operator type (`Conv`, `Gemm`, …).
    OpType(String),
    /// The first node (in topological order from the input) of the group.
    First(Group),
}

/// Facts about a node that matching needs beyond the node itself.
pub struct NodeContext<'a> {
    pub graph: &'a Graph,
    /// Whether residual sums are made explicit (the sum canonizer is on).
    pub explicit_sums: bool,
}

fn computed_inputs(node: &Node, graph: &Graph) -> usize {
    node.inputs
        .iter()
        .flatten()
        .filter(|v| graph.constant(**v).is_none())
        .count()
}

impl Group {
    pub fn matches(self, node: &Node, ctx: &NodeContext) -> bool {
        let has_const_weight = || {
            node.input(1)
                .is_some_and(|v| ctx.graph.constant(v).is_some())
        };
        match self {
            Group::Convolution => node.op.group() == OpGroup::Convolution,
            Group::Dense => {
                matches!(node.op, Op::Gemm { trans_a: false, .. } | Op::MatMul)
                    && has_const_weight()
            }
            Group::Linear => {
                Group::Convolution.matches(node, ctx) || Group::Dense.matches(node, ctx)
            }
            Group::Activation => node.op.group() == OpGroup::Activation,
            Group::Relu => matches!(node.op, Op::Unary(UnaryOp::Relu)),
            Group::AveragePool => node.op.group() == OpGroup::AveragePool,
            Group::MaxPool => node.op.group() == OpGroup::MaxPool,
            Group::BatchNorm => node.op.group() == OpGroup::BatchNorm,
            Group::Sum => {
                ctx.explicit_sums
                    && matches!(node.op, Op::Binary(BinaryOp::Add))
                    && computed_inputs(node, ctx.graph) >= 2
            }
            Group::Concat => node.op.group() == OpGroup::Concat,
            Group::Softmax => node.op.group() == OpGroup::Softmax,
        }
    }
}

/// An ordered list of (matcher → rule); the first entry that matches a node decides its rule.
/// Nodes no entry matches propagate by their gradient.
#[derive(Clone, Debug)]
pub struct Composite {
    pub name: String,
    pub entries: Vec<(Matcher, Rule)>,
}

/// Parameters of the built-in composites (Zennit's defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct CompositeParams {
    pub epsilon: f64,
    pub stabilizer: f64,
    pub gamma: f64,
    pub alpha: f64,
    pub beta: f64,
    pub low: Option<Bound>,
    pub high: Option<Bound>,
    pub beta_smooth: f64,
    pub zero_bias: bool,
}

impl Default for CompositeParams {
    fn default() -> Self {
        CompositeParams {
            epsilon: 1e-6,
            stabilizer: 1e-6,
            gamma: 0.25,
            alpha: 2.0,
            beta: 1.0,
            low: None,
            high: None,
            beta_smooth: 10.0,
            zero_bias: false,
        }
    }
}

/// Names of the built-in composites.
pub const COMPOSITES: &[&str] = &[
    "epsilon-gamma-box",
    "epsilon-plus",
    "epsilon-plus-flat",
    "epsilon-alpha2-beta1",
    "epsilon-alpha2-beta1-flat",
    "excitation-backprop",
    "deconvnet",
    "guided-backprop",
    "beta-smooth",
];

impl Composite {
    /// A built-in composite by its (Zennit) name, in kebab or snake case.
    pub fn builtin(name: &str, p: &CompositeParams) -> Result<Composite> {
        let name = name.replace('_', "-");
        let stab = Stabilizer::eps(p.stabilizer);
        let eps = Rule::Epsilon {
            epsilon: Stabilizer::eps(p.epsilon),
            zero_bias: false,
        };
        let zplus = Rule::ZPlus {
            stabilizer: stab,
            zero_bias: false,
        };
        let ab = Rule::AlphaBeta {
            alpha: p.alpha,
            beta: p.beta,
            stabilizer: stab,
            zero_bias: false,
        };
        let base = vec![
            (Matcher::Group(Group::Activation), Rule::Pass),
            (Matcher::Group(Group::Sum), Rule::Norm { stabilizer: stab }),
            (
                Matcher::Group(Group::AveragePool),
                Rule::Norm { stabilizer: stab },
            ),
            (Matcher::Group(Group::BatchNorm), Rule::Pass),
        ];
        let with = |first: Option<(Matcher, Rule)>, conv: Rule, dense: Rule| {
            let mut e: Vec<(Matcher, Rule)> = first.into_iter().collect();
            e.extend(base.clone());
            e.push((Matcher::Group(Group::Convolution), conv));
            e.push((Matcher::Group(Group::Dense), dense));
            e
        };
        let flat = Rule::Flat { stabilizer: stab };
        let entries = match name.as_str() {
            "epsilon-gamma-box" => {
                let (Some(low), Some(high)) = (p.low.clone(), p.high.clone()) else {
                    return Err(AttributionError::Rule(
                        "epsilon-gamma-box needs the input's value range for its first layer: give --low and --high \
                         (e.g. the min and max of the normalised input domain)"
                            .into(),
                    ));
                };
                let zbox = Rule::ZBox {
                    low,
                    high,
                    stabilizer: stab,
                    zero_bias: false,
                };
                let gamma = Rule::Gamma {
                    gamma: p.gamma,
                    stabilizer: stab,
                    zero_bias: false,
                };
                with(Some((Matcher::First(Group::Convolution), zbox)), gamma, eps)
            }
            "epsilon-plus" => with(None, zplus, eps),
            "epsilon-alpha2-beta1" => with(None, ab, eps),
            "epsilon-plus-flat" => with(Some((Matcher::First(Group::Linear), flat)), zplus, eps),
            "epsilon-alpha2-beta1-flat" => {
                with(Some((Matcher::First(Group::Linear), flat)), ab, eps)
            }
            "excitation-backprop" => vec![
                (Matcher::Group(Group::Sum), Rule::Norm { stabilizer: stab }),
                (
                    Matcher::Group(Group::AveragePool),
                    Rule::Norm { stabilizer: stab },
                ),
                (Matcher::Group(Group::Linear), zplus),
            ],
            "deconvnet" => vec![(Matcher::Group(Group::Relu), Rule::ReluDeconvNet)],
            "guided-backprop" => vec![(Matcher::Group(Group::Relu), Rule::ReluGuidedBackprop)],
            "beta-smooth" => vec![(
                Matcher::Group(Group::Relu),
                Rule::ReluBetaSmooth {
                    beta: p.beta_smooth,
                },
            )],
            _ => {
                return Err(AttributionError::UnknownComposite {
                    name,
                    known: COMPOSITES.join(", "),
                })
            }
        };
        let mut c = Composite { name, entries };
        if p.zero_bias {
            c = c.with_zero_bias();
        }
        c.validate()?;
        Ok(c)
    }

    /// Checks every rule's parameters.
    pub fn validate(&self) -> Result<()> {
        self.entries.iter().try_for_each(|(_, r)| r.validate())
    }

    /// The same composite with biases zeroed in every rule (`--zero-bias`).
    pub fn with_zero_bias(mut self) -> Self {
        self.entries = self
            .entries
            .into_iter()
            .map(|(m, r)| (m, r.with_zero_bias()))
            .collect();
        self
    }

    /// The rule of every node of a (specialised, canonized) graph; `None` means gradient.
    pub fn assign(&self, graph: &Graph, explicit_sums: bool) -> Vec<Option<Rule>> {
        let ctx = NodeContext {
            graph,
            explicit_sums,
        };
        let mut firsts: Vec<Option<usize>> = vec![None; self.entries.len()];
        for (i, (m, _)) in self.entries.iter().enumerate() {
            if let Matcher::First(g) = m {
                firsts[i] = graph.nodes.iter().position(|n| g.matches(n, &ctx));
            }
        }
        graph
            .nodes
            .iter()
            .enumerate()
            .map(|(ni, n)| {
                self.entries.iter().enumerate().find_map(|(i, (m, r))| {
                    let hit = match m {
                        Matcher::Group(g) => g.matches(n, &ctx),
                        Matcher::Name(glob) => glob.is_match(&n.name),
                        Matcher::OpType(t) => n.op.type_name() == t,
                        Matcher::First(_) => firsts[i] == Some(ni),
                    };
                    hit.then(|| r.clone())
                })
            })
            .collect()
    }

    /// Loads a composite from a TOML file (format in `docs/composites.md`).
    pub fn from_toml_file(path: &Path) -> Result<Composite> {
        let text = std::fs::read_to_string(path).map_err(|e| AttributionError::CompositeFile {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        Composite::from_toml(&text).map_err(|e| match e {
            AttributionError::CompositeFile { detail, .. } => AttributionError::CompositeFile {
                path: path.display().to_string(),
                detail,
            },
            other => AttributionError::CompositeFile {
                path: path.display().to_string(),
                detail: other.to_string(),
            },
        })
    }

    /// Parses a composite from TOML text.
    pub fn from_toml(text: &str) -> Result<Composite> {
        let file: CompositeFile =
            toml::from_str(text).map_err(|e| AttributionError::CompositeFile {
                path: String::new(),
                detail: e.to_string(),
            })?;
        let bad = |d: String| AttributionError::CompositeFile {
            path: String::new(),
            detail: d,
        };
        let mut entries = Vec::new();
        for (i, e) in file.rule.into_iter().enumerate() {
            let m = &e.matcher;
            let set = [m.group.is_some(), m.name.is_some(), m.op.is_some()]
                .iter()
                .filter(|b| **b)
                .count();
            if set != 1 {
                return Err(bad(format!(
                    "rule #{}: `match` needs exactly one of group, name, op",
                    i + 1
                )));
            }
            let matcher = if let Some(g) = m.group {
                if m.first {
                    Matcher::First(g)
                } else {
                    Matcher::Group(g)
                }
            } else if let Some(n) = &m.name {
                Matcher::Name(
                    Glob::new(n)
                        .map_err(|e| bad(format!("rule #{}: bad name glob '{n}': {e}", i + 1)))?
                        .compile_matcher(),
                )
            } else {
                Matcher::OpType(m.op.clone().unwrap_or_default())
            };
            let stab = Stabilizer::eps(e.stabilizer.unwrap_or(1e-6));
            let zb = e.zero_bias;
            let rule = match e.rule.as_str() {
                "epsilon" => Rule::Epsilon { epsilon: Stabilizer::eps(e.epsilon.unwrap_or(1e-6)), zero_bias: zb },
                "zplus" => Rule::ZPlus { stabilizer: stab, zero_bias: zb },
                "alpha-beta" => Rule::AlphaBeta { alpha: e.alpha.unwrap_or(2.0), beta: e.beta.unwrap_or(1.0), stabilizer: stab, zero_bias: zb },
                "gamma" => Rule::Gamma { gamma: e.gamma.unwrap_or(0.25), stabilizer: stab, zero_bias: zb },
                "zbox" => Rule::ZBox {
                    low: e.low.clone().ok_or_else(|| bad(format!("rule #{}: zbox needs `low`", i + 1)))?,
                    high: e.high.clone().ok_or_else(|| bad(format!("rule #{}: zbox needs `high`", i + 1)))?,
                    stabilizer: stab,
                    zero_bias: zb,
                },
                "flat" => Rule::Flat { stabilizer: stab },
                "wsquare" => Rule::WSquare { stabilizer: stab, zero_bias: zb },
                "norm" => Rule::Norm { stabilizer: stab },
                "pass" => Rule::Pass,
                "gradient" => Rule::Gradient,
                "relu-deconvnet" => Rule::ReluDeconvNet,
                "relu-guided-backprop" => Rule::ReluGuidedBackprop,
                "relu-beta-smooth" => Rule::ReluBetaSmooth { beta: e.beta_smooth.unwrap_or(10.0) },
                other => {
                    return Err(bad(format!(
                        "rule #{}: unknown rule '{other}' (epsilon, zplus, alpha-beta, gamma, zbox, flat, wsquare, norm, pass, gradient, relu-deconvnet, relu-guided-backprop, relu-beta-smooth)",
                        i + 1
                    )))
                }
            };
            rule.validate()
                .map_err(|e| bad(format!("rule #{}: {e}", i + 1)))?;
            entries.push((matcher, rule));
        }
        Ok(Composite {
            name: file.name.unwrap_or_else(|| "custom".into()),
            entries,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompositeFile {
    name: Option<String>,
    #[serde(default)]
    rule: Vec<FileEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchSpec {
    group: Option<Group>,
    name: Option<String>,
    op: Option<String>,
    #[serde(default)]
    first: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    #[serde(rename = "match")]
    matcher: MatchSpec,
    rule: String,
    epsilon: Option<f64>,
    stabilizer: Option<f64>,
    gamma: Option<f64>,
    alpha: Option<f64>,
    beta: Option<f64>,
    low: Option<Bound>,
    high: Option<Bound>,
    beta_smooth: Option<f64>,
    #[serde(default)]
    zero_bias: bool,
}
