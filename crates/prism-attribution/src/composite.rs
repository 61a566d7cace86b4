//! Composites: ordered (matcher → rule) lists, first match wins, as plain data.
//!
//! Built-in composites carry Zennit's names (kebab case), layer maps and defaults; users load
//! their own from TOML ([`Composite::from_toml`]).

use globset::{Glob, GlobMatcher};
use prism_model::op::{BinaryOp, UnaryOp};
use prism_model::{Graph, Node, Op, OpGroup};
use serde::Deserialize;

use crate::error::{AttributionError, Result};
use crate::roles::Roles;
use crate::rule::{
    Bound, Rule, RuleFields, DEFAULT_ALPHA, DEFAULT_BETA, DEFAULT_BETA_SMOOTH, DEFAULT_EPSILON,
    DEFAULT_GAMMA, DEFAULT_STABILIZER,
};

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
    /// Element-wise non-linearities: every unary operator (GELU, Erf, Tanh, Sigmoid, …),
    /// Clip, PRelu, and the nodes of an element-wise function of one tensor spelled in several
    /// nodes (an exported GELU or SiLU; see [`crate::roles`]). For the identity rule (`pass`).
    Nonlinearity,
    /// Products of two or more computed tensors (`Q·Kᵀ`, `A·V`, gating `Mul`, Einsum), other
    /// than activations and normalisations.
    Product,
    /// LayerNormalization, GroupNormalization, InstanceNormalization, and the `Mul`/`Div` by the
    /// normaliser of a decomposed LayerNorm or RMSNorm.
    Normalization,
    /// Every node (a composite's last, catch-all entry).
    Any,
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
    /// The transformer roles of the graph's nodes.
    pub roles: &'a Roles,
}

fn computed_inputs(node: &Node, graph: &Graph) -> usize {
    node.inputs
        .iter()
        .flatten()
        .filter(|v| graph.constant(**v).is_none())
        .count()
}

impl Group {
    /// Whether node `ni` (`node`) of `ctx.graph` belongs to the group.
    pub fn matches(self, ni: usize, node: &Node, ctx: &NodeContext) -> bool {
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
                Group::Convolution.matches(ni, node, ctx) || Group::Dense.matches(ni, node, ctx)
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
            Group::Nonlinearity => {
                matches!(
                    node.op,
                    Op::Unary(_) | Op::ClipInputs | Op::Binary(BinaryOp::PRelu)
                ) || ctx.roles.activation[ni]
            }
            Group::Product => ctx.roles.product[ni],
            Group::Normalization => {
                matches!(
                    node.op,
                    Op::LayerNormalization { .. }
                        | Op::GroupNormalization { .. }
                        | Op::InstanceNormalization { .. }
                ) || ctx.roles.normaliser[ni].is_some()
            }
            Group::Any => true,
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

/// Parameters of the built-in composites (Zennit's defaults); in a composite file, the values
/// of the parameters an entry leaves out.
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
            epsilon: DEFAULT_EPSILON,
            stabilizer: DEFAULT_STABILIZER,
            gamma: DEFAULT_GAMMA,
            alpha: DEFAULT_ALPHA,
            beta: DEFAULT_BETA,
            low: None,
            high: None,
            beta_smooth: DEFAULT_BETA_SMOOTH,
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
    "attn-lrp",
    "cp-lrp",
    "lrp-z",
    "lrp-sequential-preset-a",
    "lrp-sequential-preset-b",
    "lrp-sequential-preset-a-flat",
    "lrp-sequential-preset-b-flat",
    "deep-taylor",
    "deep-taylor-bounded",
];

/// One line per built-in composite: what it assigns and its reference (for `--help`).
pub const COMPOSITE_HELP: &[(&str, &str)] = &[
    (
        "epsilon-gamma-box",
        "z^B first layer, γ convolutions, ε dense (Zennit EpsilonGammaBox; Montavon et al. 2019)",
    ),
    (
        "epsilon-plus",
        "z⁺ convolutions, ε dense (Zennit EpsilonPlus; Kohlbrenner et al. 2020)",
    ),
    (
        "epsilon-plus-flat",
        "epsilon-plus with a flat first layer (Zennit EpsilonPlusFlat)",
    ),
    (
        "epsilon-alpha2-beta1",
        "α2β1 convolutions, ε dense (Zennit EpsilonAlpha2Beta1; Bach et al. 2015)",
    ),
    (
        "epsilon-alpha2-beta1-flat",
        "epsilon-alpha2-beta1 with a flat first layer (Zennit)",
    ),
    (
        "excitation-backprop",
        "z⁺ on every linear layer (Zennit ExcitationBackprop; Zhang et al. 2016)",
    ),
    (
        "deconvnet",
        "ReLUs pass positive relevance (Zennit DeconvNet; Zeiler & Fergus 2014)",
    ),
    (
        "guided-backprop",
        "ReLUs pass positive gradients (Zennit GuidedBackprop; Springenberg et al. 2015)",
    ),
    (
        "beta-smooth",
        "softplus gradient for ReLUs (Zennit BetaSmooth; Dombrowski et al. 2019)",
    ),
    (
        "attn-lrp",
        "AttnLRP for transformers (LXT; Achtibat et al. 2024)",
    ),
    ("cp-lrp", "CP-LRP for transformers (LXT; Ali et al. 2022)"),
    (
        "lrp-z",
        "the z-rule (LRP-0) on every linear layer (iNNvestigate LRPZ; Bach et al. 2015)",
    ),
    (
        "lrp-sequential-preset-a",
        "ε = 0.1 dense, α1β0 convolutions (iNNvestigate LRPSequentialPresetA)",
    ),
    (
        "lrp-sequential-preset-b",
        "ε = 0.1 dense, α2β1 convolutions (iNNvestigate LRPSequentialPresetB)",
    ),
    (
        "lrp-sequential-preset-a-flat",
        "preset A with a flat first layer (iNNvestigate LRPSequentialPresetAFlat)",
    ),
    (
        "lrp-sequential-preset-b-flat",
        "preset B with a flat first layer (iNNvestigate LRPSequentialPresetBFlat)",
    ),
    (
        "deep-taylor",
        "z⁺ without bias on every linear layer (iNNvestigate DeepTaylor; Montavon et al. 2017)",
    ),
    (
        "deep-taylor-bounded",
        "deep-taylor with z^B on the first layer, --low/--high (iNNvestigate BoundedDeepTaylor)",
    ),
];

/// The built-in composites' TOML files (`composites/*.toml`), read by the same parser as user
/// files; the parameters they leave out come from [`CompositeParams`].
const BUILTIN_FILES: [(&str, &str); 18] = [
    (
        "epsilon-gamma-box",
        include_str!("../composites/epsilon-gamma-box.toml"),
    ),
    (
        "epsilon-plus",
        include_str!("../composites/epsilon-plus.toml"),
    ),
    (
        "epsilon-plus-flat",
        include_str!("../composites/epsilon-plus-flat.toml"),
    ),
    (
        "epsilon-alpha2-beta1",
        include_str!("../composites/epsilon-alpha2-beta1.toml"),
    ),
    (
        "epsilon-alpha2-beta1-flat",
        include_str!("../composites/epsilon-alpha2-beta1-flat.toml"),
    ),
    (
        "excitation-backprop",
        include_str!("../composites/excitation-backprop.toml"),
    ),
    ("deconvnet", include_str!("../composites/deconvnet.toml")),
    (
        "guided-backprop",
        include_str!("../composites/guided-backprop.toml"),
    ),
    (
        "beta-smooth",
        include_str!("../composites/beta-smooth.toml"),
    ),
    ("attn-lrp", include_str!("../composites/attn-lrp.toml")),
    ("cp-lrp", include_str!("../composites/cp-lrp.toml")),
    ("lrp-z", include_str!("../composites/lrp-z.toml")),
    (
        "lrp-sequential-preset-a",
        include_str!("../composites/lrp-sequential-preset-a.toml"),
    ),
    (
        "lrp-sequential-preset-b",
        include_str!("../composites/lrp-sequential-preset-b.toml"),
    ),
    (
        "lrp-sequential-preset-a-flat",
        include_str!("../composites/lrp-sequential-preset-a-flat.toml"),
    ),
    (
        "lrp-sequential-preset-b-flat",
        include_str!("../composites/lrp-sequential-preset-b-flat.toml"),
    ),
    (
        "deep-taylor",
        include_str!("../composites/deep-taylor.toml"),
    ),
    (
        "deep-taylor-bounded",
        include_str!("../composites/deep-taylor-bounded.toml"),
    ),
];

/// The built-in composites for transformers, whose linear layers default to LXT's ε = 0
/// ([`default_epsilon`]).
pub const TRANSFORMER_COMPOSITES: &[&str] = &["attn-lrp", "cp-lrp"];

/// The built-in composites whose dense layers default to iNNvestigate's ε = 0.1
/// ([`default_epsilon`]).
pub const INNVESTIGATE_EPSILON_COMPOSITES: &[&str] = &[
    "lrp-sequential-preset-a",
    "lrp-sequential-preset-b",
    "lrp-sequential-preset-a-flat",
    "lrp-sequential-preset-b-flat",
];

/// iNNvestigate's ε of its sequential presets.
pub const INNVESTIGATE_PRESET_EPSILON: f64 = 0.1;

/// The ε of the Epsilon rule when the user gives none: LXT's 0 for the transformer composites
/// (also as the base of a mixed name `attn-lrp+epsilon-gamma-box`, or extended by a composite
/// file: `toml` is the file's text), iNNvestigate's 0.1 for its sequential presets
/// ([`INNVESTIGATE_EPSILON_COMPOSITES`], also when extended), Zennit's [`DEFAULT_EPSILON`]
/// otherwise.
pub fn default_epsilon(composite: Option<&str>, toml: Option<&str>) -> f64 {
    let transformer = |name: &str| {
        let base = name.split(':').next().unwrap_or(name).replace('_', "-");
        TRANSFORMER_COMPOSITES.contains(&base.as_str())
    };
    let extends = toml
        .and_then(|t| toml::from_str::<toml::Table>(t).ok())
        .and_then(|t| t.get("extends").and_then(|e| e.as_str().map(String::from)));
    let preset =
        |name: &str| INNVESTIGATE_EPSILON_COMPOSITES.contains(&name.replace('_', "-").as_str());
    if composite.is_some_and(transformer) || extends.as_deref().is_some_and(transformer) {
        0.0
    } else if composite.is_some_and(preset) || extends.as_deref().is_some_and(preset) {
        INNVESTIGATE_PRESET_EPSILON
    } else {
        DEFAULT_EPSILON
    }
}

/// The TOML text of a built-in composite (kebab or snake case), if there is one by that name.
pub fn builtin_toml(name: &str) -> Option<&'static str> {
    let name = name.replace('_', "-");
    BUILTIN_FILES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
}

/// Who wrote a composite file: errors and validation differ, the parser does not.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// A user's file: every entry is checked as it is read; messages name the entry.
    User,
    /// A built-in (errors as the hand-written built-ins gave them).
    Builtin,
}

impl Composite {
    /// A built-in composite by its (Zennit) name, in kebab or snake case. A mixed name
    /// `BASE:CNN` (e.g. `attn-lrp:epsilon-gamma-box`, for a convolutional stem under a
    /// transformer) gives the convolutions the rules `CNN` gives them (its first-layer rule to
    /// the first convolution) and every other node `BASE`'s rule.
    pub fn builtin(name: &str, p: &CompositeParams) -> Result<Composite> {
        let name = name.replace('_', "-");
        let mut c = match name.split_once(':') {
            None => builtin_unchecked(&name, p)?,
            Some((base, conv)) => {
                let mut c = builtin_unchecked(conv, p)?.for_convolutions();
                if c.entries.is_empty() {
                    return Err(AttributionError::Rule(format!(
                        "'{conv}' has no rule for convolutions to lend to '{base}'"
                    )));
                }
                c.entries.extend(builtin_unchecked(base, p)?.entries);
                c.name = name.clone();
                c
            }
        };
        if p.zero_bias {
            c = c.with_zero_bias();
        }
        c.validate()?;
        Ok(c)
    }

    /// The entries that concern convolutions, restricted to them: a `linear` entry becomes a
    /// `convolution` entry, a first-layer entry applies to the first convolution, and the rest
    /// (dense layers, activations, sums, names, operator types) is dropped.
    fn for_convolutions(self) -> Composite {
        let entries = self
            .entries
            .into_iter()
            .filter_map(|(m, r)| {
                let m = match m {
                    Matcher::Group(Group::Convolution | Group::Linear) => {
                        Matcher::Group(Group::Convolution)
                    }
                    Matcher::First(Group::Convolution | Group::Linear) => {
                        Matcher::First(Group::Convolution)
                    }
                    _ => return None,
                };
                Some((m, r))
            })
            .collect();
        Composite {
            name: self.name,
            entries,
        }
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
    /// The rules that depend on a node's place in the graph get it here: `constant-gate` its
    /// gate operand, `frozen-norm` on a `Mul`/`Div` its normaliser operand.
    pub fn assign(&self, graph: &Graph, explicit_sums: bool) -> Vec<Option<Rule>> {
        self.assign_with(graph, explicit_sums, &Roles::of(graph))
    }

    /// [`assign`](Self::assign) with the graph's roles already read.
    fn assign_with(&self, graph: &Graph, explicit_sums: bool, roles: &Roles) -> Vec<Option<Rule>> {
        let ctx = NodeContext {
            graph,
            explicit_sums,
            roles,
        };
        let mut firsts: Vec<Option<usize>> = vec![None; self.entries.len()];
        for (i, (m, _)) in self.entries.iter().enumerate() {
            if let Matcher::First(g) = m {
                firsts[i] = graph
                    .nodes
                    .iter()
                    .enumerate()
                    .position(|(ni, n)| g.matches(ni, n, &ctx));
            }
        }
        graph
            .nodes
            .iter()
            .enumerate()
            .map(|(ni, n)| {
                self.entries.iter().enumerate().find_map(|(i, (m, r))| {
                    let hit = match m {
                        Matcher::Group(g) => g.matches(ni, n, &ctx),
                        Matcher::Name(glob) => glob.is_match(&n.name),
                        Matcher::OpType(t) => n.op.type_name() == t,
                        Matcher::First(_) => firsts[i] == Some(ni),
                    };
                    hit.then(|| match r {
                        Rule::ConstantGate { stabilizer, .. } => Rule::ConstantGate {
                            stabilizer: *stabilizer,
                            gate: roles.gate[ni],
                        },
                        Rule::FrozenNorm { stabilizer, .. } => Rule::FrozenNorm {
                            stabilizer: *stabilizer,
                            normaliser: roles.normaliser[ni],
                        },
                        r => r.clone(),
                    })
                })
            })
            .collect()
    }

    /// [`assign`](Self::assign), refusing a model with attention on which the composite leaves
    /// a transformer node (a product of computed tensors, a normalisation, attention weights)
    /// without a rule: such a node would pass relevance by its plain gradient, which no
    /// transformer LRP method does. A composite that names `gradient` for them is taken at its
    /// word.
    pub fn assign_checked(&self, graph: &Graph, explicit_sums: bool) -> Result<Vec<Option<Rule>>> {
        let roles = Roles::of(graph);
        let rules = self.assign_with(graph, explicit_sums, &roles);
        if !roles.has_attention() {
            return Ok(rules);
        }
        let missing: Vec<String> = rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_none())
            .filter_map(|(ni, _)| {
                roles.transformer_role(graph, ni).map(|role| {
                    let n = &graph.nodes[ni];
                    format!("'{}' ({}, {role})", n.name, n.op.type_name())
                })
            })
            .collect();
        if missing.is_empty() {
            return Ok(rules);
        }
        let shown = missing.len().min(5);
        Err(AttributionError::Rule(format!(
            "composite '{}' leaves {} transformer node(s) of this model without a rule (they \
             would pass relevance by their plain gradient): {}{}. Use --composite attn-lrp or \
             cp-lrp (with --conv-composite NAME for a convolutional stem), a composite file that \
             extends one of them, or give these nodes rule = \"gradient\" explicitly",
            self.name,
            missing.len(),
            missing[..shown].join(", "),
            if missing.len() > shown {
                format!(" and {} more", missing.len() - shown)
            } else {
                String::new()
            }
        )))
    }

    /// Parses a composite from TOML text (format in `docs/composites.md`); parameters an entry
    /// leaves out are Zennit's defaults, and a built-in it `extends` gets those too.
    pub fn from_toml(text: &str) -> Result<Composite> {
        Composite::from_toml_with(text, &CompositeParams::default())
    }

    /// [`Composite::from_toml`], with the built-in that the file `extends` (if any) built with
    /// `builtin_params` (the method's parameters, e.g. `--low`/`--high` for
    /// `epsilon-gamma-box`). The file's own entries still default to Zennit's values.
    pub fn from_toml_with(text: &str, builtin_params: &CompositeParams) -> Result<Composite> {
        let Parsed {
            mut composite,
            extends,
        } = parse(text, &CompositeParams::default(), Origin::User)?;
        if let Some(base) = extends {
            // the file's entries come first: they override the built-in's where both match
            composite
                .entries
                .extend(Composite::builtin(&base, builtin_params)?.entries);
        }
        Ok(composite)
    }
}

/// A parsed file: its composite (own entries first) and the built-in it extends.
struct Parsed {
    composite: Composite,
    extends: Option<String>,
}

fn file_error(detail: String) -> AttributionError {
    AttributionError::CompositeFile {
        path: String::new(),
        detail,
    }
}

/// A built-in composite's entries with `p` (and those of the built-in it extends), before
/// zeroing biases and validation.
fn builtin_unchecked(name: &str, p: &CompositeParams) -> Result<Composite> {
    let text = builtin_toml(name).ok_or_else(|| AttributionError::UnknownComposite {
        name: name.to_string(),
        known: COMPOSITES.join(", "),
    })?;
    let Parsed {
        mut composite,
        extends,
    } = parse(text, p, Origin::Builtin)?;
    if let Some(base) = extends {
        composite
            .entries
            .extend(builtin_unchecked(&base, p)?.entries);
    }
    Ok(composite)
}

/// The one parser of composite files, built-in and user: entries in order, parameters an entry
/// leaves out taken from `defaults`.
fn parse(text: &str, defaults: &CompositeParams, origin: Origin) -> Result<Parsed> {
    let file: CompositeFile = toml::from_str(text).map_err(|e| file_error(e.to_string()))?;
    let name = file.name.unwrap_or_else(|| "custom".into());
    let mut entries = Vec::new();
    for (i, e) in file.rule.into_iter().enumerate() {
        let at = |d: String| file_error(format!("rule #{}: {d}", i + 1));
        let matcher = e.matcher.matcher().map_err(at)?;
        let fields = e.fields();
        if origin == Origin::Builtin
            && fields.rule == "zbox"
            && (fields.low.is_none() && defaults.low.is_none()
                || fields.high.is_none() && defaults.high.is_none())
        {
            return Err(AttributionError::Rule(format!(
                "{name} needs the input's value range for its first layer: give --low and --high \
                 (e.g. the min and max of the normalised input domain)"
            )));
        }
        let rule = fields.to_rule(defaults).map_err(at)?;
        if origin == Origin::User {
            rule.validate().map_err(|e| at(e.to_string()))?;
        }
        entries.push((matcher, rule));
    }
    Ok(Parsed {
        composite: Composite { name, entries },
        extends: file.extends,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompositeFile {
    name: Option<String>,
    /// A built-in composite whose entries follow this file's.
    extends: Option<String>,
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

impl MatchSpec {
    fn matcher(&self) -> std::result::Result<Matcher, String> {
        match (self.group, &self.name, &self.op) {
            (Some(g), None, None) if self.first => Ok(Matcher::First(g)),
            (Some(g), None, None) => Ok(Matcher::Group(g)),
            (None, Some(n), None) => Ok(Matcher::Name(
                Glob::new(n)
                    .map_err(|e| format!("bad name glob '{n}': {e}"))?
                    .compile_matcher(),
            )),
            (None, None, Some(op)) => Ok(Matcher::OpType(op.clone())),
            _ => Err("`match` needs exactly one of group, name, op".into()),
        }
    }
}

/// One `[[rule]]` of a composite file: the match and the rule's fields, side by side.
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

impl FileEntry {
    fn fields(self) -> RuleFields {
        RuleFields {
            rule: self.rule,
            epsilon: self.epsilon,
            stabilizer: self.stabilizer,
            gamma: self.gamma,
            alpha: self.alpha,
            beta: self.beta,
            low: self.low,
            high: self.high,
            beta_smooth: self.beta_smooth,
            zero_bias: self.zero_bias,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_and_attributor_has_one_help_line() {
        let names: Vec<&str> = COMPOSITE_HELP.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, COMPOSITES);
        let names: Vec<&str> = crate::ATTRIBUTOR_HELP.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, crate::ATTRIBUTORS);
    }

    #[test]
    fn every_builtin_name_has_its_toml_file() {
        assert_eq!(COMPOSITES.len(), BUILTIN_FILES.len());
        let boxed = CompositeParams {
            low: Some(Bound::Scalar(0.0)),
            high: Some(Bound::Scalar(1.0)),
            ..CompositeParams::default()
        };
        for (name, (file_name, text)) in COMPOSITES.iter().zip(BUILTIN_FILES) {
            assert_eq!(*name, file_name);
            let parsed = parse(text, &boxed, Origin::User).unwrap();
            assert_eq!(parsed.composite.name, *name);
        }
    }
}
