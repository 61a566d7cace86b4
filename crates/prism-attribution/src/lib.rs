//! # prism-attribution
//!
//! Zennit's attribution methods on Prism's ONNX graph IR: every LRP rule ([`Rule`]), the
//! built-in composites and user composites from TOML ([`Composite`]), canonizers as graph
//! passes ([`canonize`]), and the attributors Gradient, SmoothGrad, IntegratedGradients and
//! Occlusion ([`Attributor`]), numerically matching Zennit.
//!
//! Unlike Zennit, rules attach to graph nodes rather than PyTorch modules, so functional
//! operations (residual additions, means, concatenations) are visible and any supported graph
//! works; the user's model is never mutated (canonizers build a new graph); the forward pass's
//! outputs are reused where a rule allows (Epsilon's `z`, Gamma's sign of `y`).
//!
//! It knows nothing of files: inputs and relevance are [`prism_model::Tensor`]s. Its numerics
//! go through [`prism_model::Backend`]: the linear rules are pass descriptions ([`passes`])
//! run by one executor generic over the backend, and the gradients ([`vjp`]) are generic too,
//! so a GPU backend needs no change here.
//!
//! ```no_run
//! use prism_attribution::{Attributor, Composite, CompositeParams, Explainer, SeedMode, Target};
//! use prism_model::{Model, Tensor};
//!
//! let model = Model::load("vgg16.onnx".as_ref())?;
//! let composite = Composite::builtin("epsilon-plus-flat", &CompositeParams::default())?;
//! let explainer = Explainer::new(&model).with_composite(composite);
//! let x = Tensor::<f32>::zeros(&[1, 3, 224, 224]);
//! let a = explainer.attribute(&x, &Target::Predicted, SeedMode::OneHot, &Attributor::Gradient)?;
//! println!("relevance {:?} for classes {:?}", a.relevance.shape(), a.targets);
//! # Ok::<(), prism_attribution::AttributionError>(())
//! ```

pub mod attributor;
pub mod batched;
pub mod cam;
pub mod canonize;
pub mod composite;
pub mod concept;
pub mod error;
pub mod linear;
pub mod method;
pub mod passes;
pub mod propagate;
pub mod roles;
pub mod rule;
pub mod target;
pub mod vjp;

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prism_model::backend::{Backend, Cpu, Map, Zip};
use prism_model::{Executor, Float, Graph, Keep, Model, Tensor};

pub use attributor::{
    Attributor, AttributorParams, BaselineArray, Baselines, Fill, Noise, ATTRIBUTORS,
    ATTRIBUTOR_HELP, DEFAULT_BASELINE, DEFAULT_BLUR_SIGMA, DEFAULT_NOISE_LEVEL, DEFAULT_N_ITER,
    DEFAULT_SEED, DEFAULT_STRIDE, DEFAULT_UNIFORM_BASELINES, DEFAULT_WINDOW,
};
pub use batched::{Explained, ExplainedBatch};
pub use cam::{default_layer, CamKind, CAM_ATTRIBUTORS};
pub use composite::{
    default_epsilon, Composite, CompositeParams, Group, Matcher, COMPOSITES, COMPOSITE_HELP,
    INNVESTIGATE_EPSILON_COMPOSITES, INNVESTIGATE_PRESET_EPSILON, TRANSFORMER_COMPOSITES,
};
pub use concept::{Concepts, Condition, Parallel, Record, RecordMode, Recorded};
pub use error::{AttributionError, Result};
pub use method::{
    BaselineArg, BaselineSource, CompositeSource, Method, MethodSpec, METHOD_FIELDS,
    OPTIONAL_METHOD_FIELDS,
};
pub use rule::{
    Bound, Rule, Stabilizer, DEFAULT_ALPHA, DEFAULT_BETA, DEFAULT_BETA_SMOOTH, DEFAULT_EPSILON,
    DEFAULT_GAMMA, DEFAULT_STABILIZER,
};
pub use target::resolve_targets;

/// Which output class receives the initial relevance.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// The same class for every sample.
    Class(usize),
    /// Each sample's predicted (arg-max) class.
    Predicted,
    /// One class per sample (e.g. the labels).
    PerSample(Vec<usize>),
    /// One element of an output with a position axis, `N × positions × classes` (a causal
    /// language model's next-token logits, a token classifier's scores): the class at
    /// `position` (negative counts from the end: `-1` is the last position), or the arg-max
    /// there when `class` is `None` (a causal LM's predicted next token).
    Position { position: i64, class: Option<usize> },
    /// One (position, class) per sample.
    PositionPerSample(Vec<(usize, usize)>),
    /// Class `class` against class `against` (`None`: each sample's predicted class): the
    /// seed is `one_hot(class) − one_hot(against)`, the gradient direction of
    /// `y_class − y_against`. With [`SeedMode::Logit`] it is multiplied by the output
    /// element-wise, `y_class` at `class` and `−y_against` at `against`, so the initial
    /// relevance sums to `y_class − y_against`.
    Contrast {
        class: Option<usize>,
        against: usize,
    },
    /// An arbitrary seed ([`SeedRows`]) in place of the one-hot, one row per sample.
    Seeds(SeedRows),
    /// A single-logit model (output `N × 1`): the seed is `−1`, explaining the evidence for
    /// the negative class (`−y` with [`SeedMode::Logit`]).
    Negative,
    /// A single-logit model: the seed is `sign(y)` per sample (`+1` where `y ≥ 0`), explaining
    /// each sample's decided class (`|y|` with [`SeedMode::Logit`]).
    Sign,
}

/// Seed rows for [`Target::Seeds`]: finite values, `rows × outputs` with `shape[0]` the
/// rows; checked against the model's output shape when the seed is formed.
#[derive(Clone, Debug, PartialEq)]
pub struct SeedRows {
    shape: Vec<usize>,
    values: Vec<f64>,
}

impl SeedRows {
    /// Seed rows from an `N × …` array (`shape`, C order). Refuses a rank below 2 and
    /// non-finite values, naming the first.
    pub fn new(shape: Vec<usize>, values: Vec<f64>) -> Result<SeedRows> {
        if shape.len() < 2 || shape.iter().product::<usize>() != values.len() {
            return Err(AttributionError::Target(format!(
                "a seed array must have shape N × outputs (one row per sample); got shape \
                 {shape:?} with {} values",
                values.len()
            )));
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            let per = values.len() / shape[0].max(1);
            return Err(AttributionError::Target(format!(
                "the seed array holds {} at row {}, column {}: seeds must be finite",
                values[i],
                i / per.max(1),
                i % per.max(1)
            )));
        }
        Ok(SeedRows { shape, values })
    }

    /// The array's shape (`[N, …]`).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The values, C order.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// The rows `rows`, in that order.
    pub(crate) fn take(&self, rows: &[usize]) -> SeedRows {
        let per = self.values.len() / self.shape[0].max(1);
        let mut shape = self.shape.clone();
        shape[0] = rows.len();
        SeedRows {
            shape,
            values: rows
                .iter()
                .flat_map(|&r| self.values[r * per..(r + 1) * per].iter().copied())
                .collect(),
        }
    }
}

impl Target {
    /// Reads a target as the command line spells it: `predicted`, a class index `K`, a
    /// contrast `A-B` or `predicted-B` ([`Target::Contrast`]), `negative` or `sign` for a
    /// single-logit model, or for outputs with a position axis `POS:K`, `POS:predicted`,
    /// `last:K`, `last` (= `last:predicted`), with `POS` an index (negative from the end).
    /// Label and seed files are the caller's (see [`Target::PerSample`],
    /// [`Target::PositionPerSample`], [`Target::Seeds`]).
    pub fn parse(spec: &str) -> Result<Target> {
        let bad = || {
            AttributionError::Target(format!(
                "target '{spec}' is not one of: predicted, a class index K, a contrast A-B or \
                 predicted-B, negative, sign (single-logit models), POS:K, POS:predicted, \
                 last:K, last (POS an index into the output's position axis, negative from the \
                 end)"
            ))
        };
        let class = |c: &str| -> Result<Option<usize>> {
            match c {
                "predicted" => Ok(None),
                c => c.parse().map(Some).map_err(|_| bad()),
            }
        };
        match spec.split_once(':') {
            None if spec == "predicted" => Ok(Target::Predicted),
            None if spec == "negative" => Ok(Target::Negative),
            None if spec == "sign" => Ok(Target::Sign),
            None if spec == "last" => Ok(Target::Position {
                position: -1,
                class: None,
            }),
            None => match spec.split_once('-') {
                Some((a, b)) if !a.is_empty() => {
                    let against: usize = b.parse().map_err(|_| bad())?;
                    let class = class(a)?;
                    if class == Some(against) {
                        return Err(AttributionError::Target(format!(
                            "target '{spec}' contrasts a class with itself: the seed would be \
                             zero"
                        )));
                    }
                    Ok(Target::Contrast { class, against })
                }
                _ => spec.parse().map(Target::Class).map_err(|_| bad()),
            },
            Some((pos, c)) => {
                let position = match pos {
                    "last" => -1,
                    p => p.parse().map_err(|_| bad())?,
                };
                Ok(Target::Position {
                    position,
                    class: class(c)?,
                })
            }
        }
    }

    /// The number of samples the target is for, when it holds one entry per sample.
    pub fn rows(&self) -> Option<usize> {
        match self {
            Target::PerSample(v) => Some(v.len()),
            Target::PositionPerSample(v) => Some(v.len()),
            Target::Seeds(s) => Some(s.shape[0]),
            _ => None,
        }
    }

    /// The target for the rows `offset..offset + count` of a run.
    pub fn slice(&self, offset: usize, count: usize) -> Target {
        let rows: Vec<usize> = (offset..offset + count).collect();
        match self {
            Target::PerSample(_) | Target::PositionPerSample(_) | Target::Seeds(_) => {
                target::take(self, &rows)
            }
            other => other.clone(),
        }
    }

    /// Whether the target names a position as well as a class.
    pub fn is_positional(&self) -> bool {
        matches!(self, Target::Position { .. } | Target::PositionPerSample(_))
    }
}

/// How the initial relevance is formed from the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SeedMode {
    /// 1 at the target class, 0 elsewhere (Zennit's convention).
    #[default]
    OneHot,
    /// The target class's output value (`output ⊙ one_hot`).
    Logit,
}

/// The result of attributing a batch.
#[derive(Clone, Debug)]
pub struct Attribution<T> {
    /// Relevance (or gradient) with the input's shape.
    pub relevance: Tensor<T>,
    /// The model's output on the (unperturbed) input.
    pub output: Tensor<T>,
    /// The target class of each sample.
    pub targets: Vec<usize>,
    /// The target position of each sample, for a positional [`Target`].
    pub positions: Option<Vec<usize>>,
    /// The relevance and activations recorded at hidden nodes ([`Explainer::with_concepts`]),
    /// in graph order.
    pub recorded: Vec<Recorded<T>>,
}

/// Where [`Explainer::attribute_inputs`] reads the relevance off.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum AttributeAt {
    /// The model's float input when it has exactly one and no integer inputs; for a token
    /// model (integer inputs), the output of its embedding lookup: the `Gather` from a constant
    /// table with run-time indices (the largest table when there are several: word, not
    /// position or segment, embeddings), with relevance per token (summed over the hidden
    /// dimension).
    #[default]
    Auto,
    /// A tensor (or a node, meaning its first output) by name, e.g. a hidden layer. The
    /// relevance has the tensor's shape (per token when it is an embedding lookup's output).
    Named(String),
}

impl AttributeAt {
    /// The value in the prepared graph `g` (specialised from `original`) and whether it is an
    /// embedding lookup's output.
    fn resolve(&self, original: &Graph, g: &Graph) -> Result<(prism_model::ValueId, bool)> {
        let is_embedding = |v: prism_model::ValueId| {
            g.producer(v).is_some_and(|n| {
                let node = g.node(n);
                node.op.type_name() == "Gather"
                    && node.input(0).is_some_and(|d| g.constant(d).is_some())
                    && node.input(1).is_some_and(|i| g.constant(i).is_none())
            })
        };
        match self {
            AttributeAt::Named(name) => {
                let v = g
                    .find_value(name)
                    .or_else(|| g.find_node(name).map(|n| g.node(n).outputs[0]))
                    .ok_or_else(|| {
                        AttributionError::Invalid(format!(
                            "no tensor or node named '{name}' in the model (after folding \
                             constants); `prism inspect --shapes` lists them"
                        ))
                    })?;
                if g.constant(v).is_some() {
                    return Err(AttributionError::Invalid(format!(
                        "'{name}' is a constant (it does not depend on the inputs): relevance \
                         cannot be read off it"
                    )));
                }
                if let Some(i) = g.inputs.iter().position(|i| *i == v) {
                    if original.input_type(i).is_integer() {
                        return Err(AttributionError::Invalid(format!(
                            "input '{name}' holds integers ({}): attribute at the embedding \
                             lookup's output instead (the default)",
                            original.input_type(i)
                        )));
                    }
                }
                Ok((v, is_embedding(v)))
            }
            AttributeAt::Auto => {
                let types: Vec<_> = (0..original.inputs.len())
                    .map(|i| original.input_type(i))
                    .collect();
                if types.iter().all(|t| !t.is_integer()) {
                    if g.inputs.len() == 1 {
                        return Ok((g.inputs[0], false));
                    }
                    return Err(AttributionError::Invalid(format!(
                        "the model has {} float inputs: choose where to attribute with \
                         --attribute-at (an input or a tensor name)",
                        g.inputs.len()
                    )));
                }
                let best = g
                    .nodes
                    .iter()
                    .filter(|n| is_embedding(n.outputs[0]))
                    .max_by_key(|n| {
                        // the largest table; the first of equal ones (max_by_key keeps the last)
                        let rows = n
                            .input(0)
                            .and_then(|d| g.shape(d))
                            .and_then(|s| s.first().copied())
                            .unwrap_or(0);
                        (rows, std::cmp::Reverse(n.outputs[0].0))
                    });
                best.map(|n| (n.outputs[0], true)).ok_or_else(|| {
                    AttributionError::Invalid(
                        "the model has integer inputs but no embedding lookup (Gather from a \
                         constant table by run-time indices) was found: choose where to \
                         attribute with --attribute-at"
                            .into(),
                    )
                })
            }
        }
    }
}

/// The result of [`Explainer::attribute_inputs`].
#[derive(Clone, Debug)]
pub struct TensorAttribution<T> {
    /// Relevance at the tensor `at`, with its shape.
    pub relevance: Tensor<T>,
    /// The model's first output.
    pub output: Tensor<T>,
    /// The target class of each sample.
    pub targets: Vec<usize>,
    /// The target position of each sample, for a positional [`Target`].
    pub positions: Option<Vec<usize>>,
    /// The name of the tensor the relevance was read off.
    pub at: String,
    /// When `at` is an embedding lookup's output: the relevance per token (`[batch, tokens]`,
    /// summed over the hidden dimension).
    pub per_token: Option<Tensor<T>>,
    /// The relevance and activations recorded at hidden nodes ([`Explainer::with_concepts`]),
    /// in graph order.
    pub recorded: Vec<Recorded<T>>,
}

type PreparedKey = (Vec<Vec<usize>>, prism_model::DType);

struct Prepared<T> {
    graph: Arc<Graph>,
    exec: Executor<T>,
    rules: Vec<Option<Rule>>,
    /// What the forward pass keeps for the backward sweep (and the recorded values).
    keep: Keep,
    /// The recorded nodes ([`Concepts::record`]) resolved in `graph`: `(node name, value)`.
    record: Vec<(String, prism_model::ValueId)>,
}

/// A node selected by the record settings, for inputs of a given shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedLayer {
    /// The node, as the model file names it (or the pattern, for a tensor name).
    pub node: String,
    /// Its output tensor in the prepared graph.
    pub tensor: String,
    /// The output's shape for one row (`[C, H, W]`, `[F]`, …).
    pub sample_shape: Vec<usize>,
}

/// A channel of a hidden layer, or one neuron of it (see
/// [`Explainer::attribute_from`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neuron {
    pub channel: usize,
    /// The position in the channel's flattened map (`None`: the whole channel).
    pub location: Option<usize>,
}

/// A sweep's CRP masks and recorded values, for one batch.
struct Plan {
    masks: Vec<concept::LayerMask>,
    /// [`Parallel::Exclude`]: the conditioned values, last first, where the sweep stops,
    /// masks and starts again.
    cuts: Vec<prism_model::ValueId>,
    record: Vec<prism_model::ValueId>,
}

/// What one sweep returns besides the relevance and the output: the recorded relevance and
/// activations.
struct Hooked<T> {
    relevance: Vec<Option<Tensor<T>>>,
    activations: Vec<Arc<Tensor<T>>>,
}

/// Attributes a model's decisions: a model, an optional composite and the canonizer switch.
pub struct Explainer<'m> {
    model: &'m Model,
    composite: Option<Composite>,
    canonize: bool,
    hidden_sum: bool,
    concepts: Concepts,
    cache: Mutex<HashMap<PreparedKey, Arc<dyn Any + Send + Sync>>>,
    /// The explainers of class activation maps, one per layer ([`cam`]).
    cams: cam::CamExplainers<'m>,
}

impl<'m> Explainer<'m> {
    /// An explainer giving plain gradients until a composite is set; canonizers on.
    pub fn new(model: &'m Model) -> Self {
        Explainer {
            model,
            composite: None,
            canonize: true,
            hidden_sum: false,
            concepts: Concepts::default(),
            cache: Mutex::new(HashMap::new()),
            cams: cam::CamExplainers::default(),
        }
    }

    /// Record relevance at hidden nodes and/or condition it on channels (CRP), see
    /// [`concept`]. Gradient-based methods only (the gradient and LRP composites). With `K`
    /// conditions, every sample gives `K` rows (`n·K + k`), each with its condition.
    pub fn with_concepts(mut self, concepts: Concepts) -> Self {
        self.concepts = concepts;
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self
    }

    /// The concept settings ([`with_concepts`](Self::with_concepts)).
    pub fn concepts(&self) -> &Concepts {
        &self.concepts
    }

    /// Attribute with LRP rules assigned by `composite`.
    pub fn with_composite(mut self, composite: Composite) -> Self {
        self.composite = Some(composite);
        self
    }

    /// Whether [`explain_batched`](Self::explain_batched) sums a token model's relevance over
    /// the hidden dimension of its embedding lookup (`[samples, tokens]`) instead of returning
    /// it whole (`[samples, tokens, hidden]`, the default).
    pub fn with_hidden_sum(mut self, on: bool) -> Self {
        self.hidden_sum = on;
        self
    }

    /// Turn canonizers (BatchNorm merging, explicit residual sums) on or off.
    pub fn with_canonizers(mut self, on: bool) -> Self {
        self.canonize = on;
        self
    }

    /// The prepared graph for a single-input model and this input shape.
    fn prepared<T: Float>(&self, shape: &[usize]) -> Result<Arc<Prepared<T>>> {
        let inputs = self.model.graph().inputs.len();
        if inputs != 1 {
            return Err(AttributionError::Invalid(format!(
                "this attribution takes a single-input model; this one has {inputs} inputs \
                 (attribute several inputs with `attribute_inputs`)"
            )));
        }
        self.prepared_for(&[shape.to_vec()])
    }

    /// The specialised, canonized graph, its executor and rules for these input shapes.
    fn prepared_for<T: Float>(&self, shapes: &[Vec<usize>]) -> Result<Arc<Prepared<T>>> {
        let key = (shapes.to_vec(), T::DTYPE);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = cache
            .get(&key)
            .and_then(|p| p.clone().downcast::<Prepared<T>>().ok())
        {
            return Ok(p);
        }
        let spec = self.model.specialize(shapes)?;
        // A bias exported as a separate Add is part of its layer, canonizers or not (Zennit
        // sees `nn.Linear` whole).
        let (spec, _) = canonize::merge_linear_bias(&spec, T::DTYPE)?;
        let graph = if self.canonize {
            Arc::new(canonize::merge_batchnorm(&spec, T::DTYPE)?.0)
        } else {
            Arc::new(spec)
        };
        let rules = match &self.composite {
            Some(c) => c.assign_checked(&graph, self.canonize)?,
            None => vec![None; graph.nodes.len()],
        };
        let exec = Executor::<T>::new(graph.clone())?;
        let record = match &self.concepts.record {
            Some(r) => concept::resolve_record(self.model.graph(), &graph, r)?,
            None => Vec::new(),
        };
        let mut kept = propagate::needed_values(&graph, &rules);
        kept.extend(record.iter().map(|(_, v)| *v));
        let keep = Keep::Values(kept);
        let p = Arc::new(Prepared {
            graph,
            exec,
            rules,
            keep,
            record,
        });
        cache.insert(key, p.clone());
        Ok(p)
    }

    /// The rule each node of the (specialised, canonized) graph gets for this input shape:
    /// `(node name, operator, rule name)`; `gradient` where no composite entry matched.
    pub fn rule_table(&self, shape: &[usize]) -> Result<Vec<(String, String, String)>> {
        self.rule_table_for(&[shape.to_vec()])
    }

    /// [`rule_table`](Self::rule_table) for a model with several inputs of these shapes.
    pub fn rule_table_for(&self, shapes: &[Vec<usize>]) -> Result<Vec<(String, String, String)>> {
        let p = self.prepared_for::<f32>(shapes)?;
        Ok(p.graph
            .nodes
            .iter()
            .zip(&p.rules)
            .map(|(n, r)| {
                (
                    n.name.clone(),
                    n.op.type_name().to_string(),
                    r.as_ref().map_or("gradient", Rule::name).to_string(),
                )
            })
            .collect())
    }

    /// Runs the model forward (on the canonized graph).
    pub fn forward<T: Float>(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        let p = self.prepared::<T>(x.shape())?;
        let t = p
            .exec
            .run_with(vec![x.clone()], &Keep::Outputs, self.model.nonfinite())?;
        Ok((*t.outputs[0]).clone())
    }

    /// Attributes the batch `x` (first axis = samples).
    pub fn attribute<T: Float>(
        &self,
        x: &Tensor<T>,
        target: &Target,
        seed: SeedMode,
        attributor: &Attributor,
    ) -> Result<Attribution<T>> {
        self.attribute_with_noise(x, target, seed, attributor, None)
    }

    /// Like [`attribute`](Self::attribute), with SmoothGrad's noise given instead of drawn
    /// (one tensor per iteration; used to compare with other implementations exactly).
    pub fn attribute_with_noise<T: Float>(
        &self,
        x: &Tensor<T>,
        target: &Target,
        seed: SeedMode,
        attributor: &Attributor,
        noise: Option<&[Tensor<T>]>,
    ) -> Result<Attribution<T>> {
        if x.rank() == 0 || x.shape()[0] == 0 {
            return Err(AttributionError::Invalid(format!(
                "expected a batch of samples, got shape {:?}",
                x.shape()
            )));
        }
        if let Attributor::Cam { kind, layer } = attributor {
            if self.concepts.is_active() {
                return Err(AttributionError::Invalid(format!(
                    "{} is a class activation map; recording relevance at nodes or \
                     conditioning it (CRP) takes the gradient or an LRP composite",
                    kind.name()
                )));
            }
            return self.cam(x, target, seed, *kind, layer.as_deref());
        }
        if self.concepts.is_active() {
            let a = self.attribute_at(vec![x.clone()], None, target, seed, attributor)?;
            return Ok(Attribution {
                relevance: a.relevance,
                output: a.output,
                targets: a.targets,
                positions: a.positions,
                recorded: a.recorded,
            });
        }
        let b = &Cpu;
        let p = self.prepared::<T>(x.shape())?;
        let output = (*p
            .exec
            .run_with(vec![x.clone()], &Keep::Outputs, self.model.nonfinite())?
            .outputs[0])
            .clone();
        let resolved = target::resolve(&output, target)?;
        let targets = resolved.classes();
        if resolved.positions().is_some() && matches!(attributor, Attributor::Occlusion { .. }) {
            return Err(AttributionError::Target(
                "occlusion scores whole classes; a target with a position takes the gradient, \
                 SmoothGrad, IntegratedGradients or an LRP composite"
                    .into(),
            ));
        }
        let relevance = match attributor {
            Attributor::Gradient => self.sweep(&p, x.clone(), &resolved, seed)?,
            Attributor::InputXGradient => {
                let g = self.sweep(&p, x.clone(), &resolved, seed)?;
                b.zip(Zip::Mul, x, &g)?
            }
            Attributor::SmoothGrad {
                noise_level,
                n_iter,
                seed: rng_seed,
                noise: kind,
            }
            | Attributor::SmoothGradSquared {
                noise_level,
                n_iter,
                seed: rng_seed,
                noise: kind,
            }
            | Attributor::VarGrad {
                noise_level,
                n_iter,
                seed: rng_seed,
                noise: kind,
            } => {
                let drawn;
                let noise = match noise {
                    Some(n) => n,
                    None => {
                        drawn = attributor::draw_noise(x, *noise_level, *n_iter, *rng_seed, *kind);
                        &drawn
                    }
                };
                let squares = !matches!(attributor, Attributor::SmoothGrad { .. });
                let mut acc = b.full(x.shape(), T::zero());
                let mut acc_sq = squares.then(|| b.full(x.shape(), T::zero()));
                for n in noise {
                    if n.shape() != x.shape() {
                        return Err(AttributionError::Invalid(format!(
                            "noise shape {:?} differs from the input's {:?}",
                            n.shape(),
                            x.shape()
                        )));
                    }
                    let xn = b.zip(Zip::Add, x, n)?;
                    let g = self.sweep(&p, xn, &resolved, seed)?;
                    if let Some(sq) = acc_sq.as_mut() {
                        b.zip_into(Zip::Add, sq, &b.zip(Zip::Mul, &g, &g)?)?;
                    }
                    b.zip_into(Zip::Add, &mut acc, &g)?;
                }
                let count = noise.len().max(1) as f64;
                let mean = b.map(Map::Divide(count), &acc);
                match (attributor, acc_sq) {
                    (Attributor::VarGrad { .. }, Some(sq)) => {
                        // E[g²] − E[g]², Captum's order of operations
                        let mean_sq = b.map(Map::Divide(count), &sq);
                        b.zip(Zip::Sub, &mean_sq, &b.zip(Zip::Mul, &mean, &mean)?)?
                    }
                    (_, Some(sq)) => b.map(Map::Divide(count), &sq),
                    (_, None) => mean,
                }
            }
            Attributor::IntegratedGradients {
                n_iter,
                baseline,
                baselines,
            } => match baselines {
                attributor::Baselines::Constant => {
                    let mut acc = b.full(x.shape(), T::zero());
                    for k in 1..=*n_iter {
                        let alpha = k as f64 / *n_iter as f64;
                        let xk = b.map(
                            Map::Interpolate {
                                baseline: *baseline,
                                alpha,
                            },
                            x,
                        );
                        let g = self.sweep(&p, xk, &resolved, seed)?;
                        b.zip_into(Zip::Add, &mut acc, &g)?;
                    }
                    b.zip(
                        Zip::PathIntegral {
                            steps: *n_iter as f64,
                            baseline: *baseline,
                        },
                        &acc,
                        x,
                    )?
                }
                attributor::Baselines::Blur { sigma } => {
                    let base = attributor::gaussian_blur(x, *sigma)?;
                    self.integrated_gradients(&p, x, &base, *n_iter, &resolved, seed)?
                }
                attributor::Baselines::Array(a) => {
                    let base = attributor::baseline_for(a, x)?;
                    self.integrated_gradients(&p, x, &base, *n_iter, &resolved, seed)?
                }
                attributor::Baselines::Uniform { count, seed: s } => {
                    let mut acc = b.full(x.shape(), T::zero());
                    for base in attributor::uniform_baselines(x, *count, *s) {
                        let ig =
                            self.integrated_gradients(&p, x, &base, *n_iter, &resolved, seed)?;
                        b.zip_into(Zip::Add, &mut acc, &ig)?;
                    }
                    b.map(Map::Divide((*count).max(1) as f64), &acc)
                }
            },
            Attributor::Occlusion {
                window,
                stride,
                invert,
                fill,
            } => {
                let masks = attributor::occlusion_masks(x.shape(), window, stride)?;
                let filler = match fill {
                    attributor::Fill::Zero => None,
                    attributor::Fill::Value(v) => Some(b.full(x.shape(), T::of(*v))),
                    attributor::Fill::Blur { sigma } => Some(attributor::gaussian_blur(x, *sigma)?),
                };
                let mut acc = b.full(x.shape(), T::zero());
                for m in &masks {
                    let mut xm = b.occlude(x, m, *invert)?;
                    if let Some(f) = &filler {
                        // the removed part from the fill: occlude(fill) keeps the complement
                        b.zip_into(Zip::Add, &mut xm, &b.occlude(f, m, !*invert)?)?;
                    }
                    let out = p
                        .exec
                        .run_with(vec![xm], &Keep::Outputs, self.model.nonfinite())?;
                    let scores = target::scores(&out.outputs[0], &resolved)?;
                    b.add_masked(&mut acc, m, &scores)?;
                }
                acc
            }
            Attributor::Cam { .. } => {
                return Err(AttributionError::Invalid(
                    "class activation maps are dispatched before (internal)".into(),
                ))
            }
            Attributor::Random { seed: s } => attributor::standard_normal(x.shape(), *s),
        };
        Ok(Attribution {
            relevance,
            output,
            targets,
            positions: resolved.positions(),
            recorded: Vec::new(),
        })
    }

    /// Attributes a batch of a model with any number of inputs (token ids, attention masks,
    /// float tensors; integers carried exactly in `T`, see [`Tensor::from_ints`]), reading the
    /// relevance off the tensor `at` names ([`AttributeAt`]). Gradient-based methods only
    /// (plain gradient and every LRP composite): SmoothGrad, IntegratedGradients and Occlusion
    /// perturb a float input and go through [`attribute`](Self::attribute).
    pub fn attribute_inputs<T: Float>(
        &self,
        inputs: Vec<Tensor<T>>,
        at: &AttributeAt,
        target: &Target,
        seed: SeedMode,
        attributor: &Attributor,
    ) -> Result<TensorAttribution<T>> {
        self.attribute_at(inputs, Some(at), target, seed, attributor)
    }

    /// [`attribute_inputs`](Self::attribute_inputs), or at the model's single input when `at`
    /// is `None`; with conditions ([`with_concepts`](Self::with_concepts)), each sample gives
    /// one row per condition.
    fn attribute_at<T: Float>(
        &self,
        inputs: Vec<Tensor<T>>,
        at: Option<&AttributeAt>,
        target: &Target,
        seed: SeedMode,
        attributor: &Attributor,
    ) -> Result<TensorAttribution<T>> {
        let n = inputs
            .first()
            .map_or(0, |x| x.shape().first().copied().unwrap_or(0));
        if n == 0 || inputs.iter().any(|x| x.shape().first() != Some(&n)) {
            return Err(AttributionError::Invalid(format!(
                "expected batches with the same number of samples (first axis), got shapes {:?}",
                inputs
                    .iter()
                    .map(|x| x.shape().to_vec())
                    .collect::<Vec<_>>()
            )));
        }
        if !matches!(attributor, Attributor::Gradient) {
            let what = match at {
                Some(AttributeAt::Named(name)) => format!("attributing at '{name}'"),
                _ if self.concepts.is_active() => {
                    "recording relevance at nodes or conditioning it (CRP)".to_string()
                }
                _ => "attributing at a tensor".to_string(),
            };
            return Err(AttributionError::Invalid(format!(
                "{} perturbs a float input; {what} takes the gradient or an LRP composite",
                attributor.name()
            )));
        }
        if let Some(l) = target.rows().filter(|l| *l != n) {
            return Err(AttributionError::Target(format!(
                "{l} labels for {n} samples"
            )));
        }
        let conds = &self.concepts.conditions;
        let k = conds.len().max(1);
        let (inputs, target) = if k > 1 {
            let inputs = inputs
                .iter()
                .map(|x| repeat_rows(x, k))
                .collect::<Result<Vec<_>>>()?;
            (inputs, target::repeat(target, k))
        } else {
            (inputs, target.clone())
        };
        let groups = match self.concepts.parallel {
            Parallel::Exclude if conds.len() > 1 => concept::groups(conds),
            _ => vec![(0..conds.len()).collect()],
        };
        if groups.len() == 1 {
            return self.attribute_rows(inputs, at, &target, seed, conds, n);
        }
        // Parallel::Exclude with conditions naming different layers: each group of conditions
        // on its own rows (zennit-crp sweeps each group on its own too), put back in order.
        let mut whole: Option<TensorAttribution<T>> = None;
        let mut targets = vec![0usize; n * k];
        let mut positions: Option<Vec<usize>> = None;
        for group in groups {
            let rows: Vec<usize> = (0..n)
                .flat_map(|s| group.iter().map(move |&c| s * k + c))
                .collect();
            let sub_inputs = inputs
                .iter()
                .map(|x| take_rows(x, &rows))
                .collect::<Result<Vec<_>>>()?;
            let sub_target = target::take(&target, &rows);
            let sub_conds: Vec<Condition> = group.iter().map(|&i| conds[i].clone()).collect();
            let a = self.attribute_rows(sub_inputs, at, &sub_target, seed, &sub_conds, n)?;
            let w = whole.get_or_insert_with(|| TensorAttribution {
                relevance: empty_rows(&a.relevance, n * k),
                output: empty_rows(&a.output, n * k),
                targets: Vec::new(),
                positions: None,
                at: a.at.clone(),
                per_token: a.per_token.as_ref().map(|t| empty_rows(t, n * k)),
                recorded: a
                    .recorded
                    .iter()
                    .map(|r| Recorded {
                        relevance: empty_rows(&r.relevance, n * k),
                        activation: empty_rows(&r.activation, n * k),
                        ..r.clone()
                    })
                    .collect(),
            });
            put_rows(&mut w.relevance, &rows, &a.relevance)?;
            put_rows(&mut w.output, &rows, &a.output)?;
            if let (Some(dst), Some(src)) = (w.per_token.as_mut(), a.per_token.as_ref()) {
                put_rows(dst, &rows, src)?;
            }
            for (dst, src) in w.recorded.iter_mut().zip(&a.recorded) {
                put_rows(&mut dst.relevance, &rows, &src.relevance)?;
                put_rows(&mut dst.activation, &rows, &src.activation)?;
            }
            for (i, &r) in rows.iter().enumerate() {
                targets[r] = a.targets[i];
                if let Some(p) = &a.positions {
                    positions.get_or_insert_with(|| vec![0; n * k])[r] = p[i];
                }
            }
        }
        let mut w = whole.ok_or_else(|| AttributionError::Invalid("no conditions".into()))?;
        w.targets = targets;
        w.positions = positions;
        Ok(w)
    }

    /// One gradient-based attribution of `inputs` (rows already one per sample and
    /// condition), at `at` (`None`: the single input), with the conditions `conds` (each row
    /// `s·K + k` under `conds[k]`, `samples` samples) and the recorded nodes.
    fn attribute_rows<T: Float>(
        &self,
        inputs: Vec<Tensor<T>>,
        at: Option<&AttributeAt>,
        target: &Target,
        seed: SeedMode,
        conds: &[Condition],
        samples: usize,
    ) -> Result<TensorAttribution<T>> {
        let shapes: Vec<Vec<usize>> = inputs.iter().map(|x| x.shape().to_vec()).collect();
        let p = self.prepared_for::<T>(&shapes)?;
        let (value, embedding) = match at {
            Some(at) => at.resolve(self.model.graph(), &p.graph)?,
            None => (p.graph.inputs[0], false),
        };
        let name = p.graph.value(value).name.clone();
        let plan = self.plan(&p, conds, samples)?;
        let token_model = (0..self.model.graph().inputs.len())
            .any(|i| self.model.graph().input_type(i).is_integer());
        let (relevance, output, resolved, hooked) =
            self.checked_sweep(&p, inputs, value, &plan, |output| {
                if token_model && output.rank() == 3 && !target.is_positional() {
                    return Err(AttributionError::Target(format!(
                        "the output has shape {:?}, one score per position and class (a \
                         language model's logits): name the position too, e.g. `last` (the \
                         predicted next token after the last position), `last:ID`, `POS:ID` \
                         or `POS:predicted`",
                        output.shape()
                    )));
                }
                let resolved = target::resolve(output, target)?;
                let seed_t = target::seed(output, &resolved, seed == SeedMode::Logit)?;
                Ok((seed_t, resolved))
            })?;
        let output = (*output).clone();
        let targets = resolved.classes();
        // relevance per token: the sum over the hidden dimension
        let per_token = embedding.then(|| {
            let axis = relevance.rank().saturating_sub(1);
            Cpu.reduce(&relevance, &[axis], false, false)
        });
        let recorded = self.recorded(&p, hooked)?;
        Ok(TensorAttribution {
            relevance,
            output,
            targets,
            positions: resolved.positions(),
            at: name,
            per_token,
            recorded,
        })
    }

    /// The nodes the record settings ([`Concepts::record`]) select for inputs of `shape` (batch
    /// axis included), in graph order.
    pub fn recorded_layers<T: Float>(&self, shape: &[usize]) -> Result<Vec<RecordedLayer>> {
        let p = self.prepared_for::<T>(&[shape.to_vec()])?;
        Ok(p.record
            .iter()
            .map(|(node, v)| RecordedLayer {
                node: node.clone(),
                tensor: p.graph.value(*v).name.clone(),
                sample_shape: p
                    .graph
                    .shape(*v)
                    .and_then(|s| s.get(1..))
                    .unwrap_or(&[])
                    .to_vec(),
            })
            .collect())
    }

    /// The relevance of single channels or neurons of a hidden layer, propagated to the input:
    /// for row `r` of `x`, the relevance at `layer`'s output (a node or tensor name, as for
    /// conditions) is its activation kept only at channel `picks[r].channel` (and, with a
    /// location, only at that position of the channel's flattened map), zero elsewhere; the
    /// composite's rules take it from there. This is zennit-crp's `start_layer` attribution
    /// with `ChannelConcept.mask` (a channel) or `mask_rf` (a neuron), which
    /// `FeatureVisualization` uses for reference heatmaps and receptive-field crops.
    pub fn attribute_from<T: Float>(
        &self,
        x: &Tensor<T>,
        layer: &str,
        picks: &[Neuron],
    ) -> Result<Tensor<T>> {
        let n = x.shape().first().copied().unwrap_or(0);
        if n == 0 || picks.len() != n {
            return Err(AttributionError::Invalid(format!(
                "{} neurons picked for {n} rows",
                picks.len()
            )));
        }
        let p = self.prepared_for::<T>(&[x.shape().to_vec()])?;
        let v = concept::resolve_layer(self.model.graph(), &p.graph, layer)?;
        let keep = match &p.keep {
            prism_model::Keep::Values(vs) => {
                let mut vs = vs.clone();
                vs.push(v);
                prism_model::Keep::Values(vs)
            }
            other => other.clone(),
        };
        let mut trace = p
            .exec
            .run_with(vec![x.clone()], &keep, self.model.nonfinite())?;
        let act = trace.get(v).cloned().ok_or_else(|| {
            AttributionError::Invalid(format!(
                "the forward pass did not keep the output of '{layer}'"
            ))
        })?;
        let shape = act.shape().to_vec();
        let (c, inner) = match shape[..] {
            [rows, c, ..] if rows == n => (c, shape[2..].iter().product::<usize>()),
            _ => {
                return Err(AttributionError::Invalid(format!(
                    "layer '{layer}' has output shape {shape:?}: picking a channel needs a \
                     channel axis (axis 1)"
                )))
            }
        };
        let mut seed = Cpu.full(&shape, T::zero());
        let src = act.data();
        let dst = seed.data_mut();
        for (row, pick) in picks.iter().enumerate() {
            if pick.channel >= c {
                return Err(AttributionError::Invalid(format!(
                    "layer '{layer}': channel {} does not exist; its output (per sample {:?}) \
                     has {c} channels (0-{})",
                    pick.channel,
                    &shape[1..],
                    c - 1
                )));
            }
            let start = (row * c + pick.channel) * inner;
            match pick.location {
                None => dst[start..start + inner].copy_from_slice(&src[start..start + inner]),
                Some(l) if l < inner => dst[start + l] = src[start + l],
                Some(l) => {
                    return Err(AttributionError::Invalid(format!(
                        "layer '{layer}': position {l} is past the {inner} positions of a \
                         channel's map"
                    )))
                }
            }
        }
        let mut hooks = concept::SweepHooks::none();
        let (mut r, _) = propagate::propagate_watched(
            &p.graph,
            &p.exec,
            &mut trace,
            &p.rules,
            vec![(v, seed)],
            &[p.graph.inputs[0]],
            false,
            &mut hooks,
        )?;
        Ok(r.remove(0))
    }

    /// Conditional relevance (CRP) with one channel of `layer` per row: row `r` of `x` is
    /// explained for its target with the relevance at `layer` kept only on `channels[r]`;
    /// parallel paths stay unconditioned ([`Parallel::Include`], as zennit-crp's
    /// `FeatureVisualization`). Used for the heatmaps of each sample's own top concepts.
    pub fn attribute_channel_rows<T: Float>(
        &self,
        x: &Tensor<T>,
        target: &Target,
        seed: SeedMode,
        layer: &str,
        channels: &[usize],
    ) -> Result<Tensor<T>> {
        let n = x.shape().first().copied().unwrap_or(0);
        if n == 0 || channels.len() != n {
            return Err(AttributionError::Invalid(format!(
                "{} channels for {n} rows",
                channels.len()
            )));
        }
        let p = self.prepared_for::<T>(&[x.shape().to_vec()])?;
        let v = concept::resolve_layer(self.model.graph(), &p.graph, layer)?;
        let c = p
            .graph
            .shape(v)
            .and_then(|s| s.get(1))
            .copied()
            .unwrap_or(0);
        if let Some(&bad) = channels.iter().find(|&&ch| ch >= c) {
            return Err(AttributionError::Invalid(format!(
                "layer '{layer}': channel {bad} does not exist; it has {c} channels"
            )));
        }
        let plan = Plan {
            masks: vec![concept::LayerMask {
                value: v,
                rows: channels.iter().map(|&ch| Some(vec![ch])).collect(),
            }],
            cuts: Vec::new(),
            record: Vec::new(),
        };
        let (relevance, _, (), _) =
            self.checked_sweep(&p, vec![x.clone()], p.graph.inputs[0], &plan, |output| {
                let resolved = target::resolve(output, target)?;
                Ok((
                    target::seed(output, &resolved, seed == SeedMode::Logit)?,
                    (),
                ))
            })?;
        Ok(relevance)
    }

    /// The masks and recorded values of one sweep over `samples` samples under `conds`.
    fn plan<T: Float>(&self, p: &Prepared<T>, conds: &[Condition], samples: usize) -> Result<Plan> {
        let masks = concept::layer_masks(self.model.graph(), &p.graph, conds, samples)?;
        let mut cuts: Vec<prism_model::ValueId> = match self.concepts.parallel {
            Parallel::Exclude => masks.iter().map(|m| m.value).collect(),
            Parallel::Include => Vec::new(),
        };
        cuts.sort_by_key(|v| std::cmp::Reverse(p.graph.producer(*v).map_or(0, |n| n.0 + 1)));
        Ok(Plan {
            masks,
            cuts,
            record: p.record.iter().map(|(_, v)| *v).collect(),
        })
    }

    /// The recorded relevance and activations of a sweep, shaped by the record mode.
    fn recorded<T: Float>(&self, p: &Prepared<T>, hooked: Hooked<T>) -> Result<Vec<Recorded<T>>> {
        let mode = self
            .concepts
            .record
            .as_ref()
            .map_or(RecordMode::Channels, |r| r.mode);
        p.record
            .iter()
            .zip(hooked.relevance)
            .zip(hooked.activations)
            .map(|(((node, v), rel), act)| {
                let act = (*act).clone();
                // No relevance reached it: zero.
                let rel = rel.unwrap_or_else(|| Cpu.full(act.shape(), T::zero()));
                let sample_shape = act.shape().get(1..).unwrap_or(&[]).to_vec();
                let (relevance, activation) = match mode {
                    RecordMode::Maps => (rel, act),
                    RecordMode::Channels => {
                        (concept::channel_sums(&rel)?, concept::channel_sums(&act)?)
                    }
                };
                Ok(Recorded {
                    node: node.clone(),
                    tensor: p.graph.value(*v).name.clone(),
                    sample_shape,
                    relevance,
                    activation,
                })
            })
            .collect()
    }

    /// One forward + backward sweep from the seed at the targets.
    fn sweep<T: Float>(
        &self,
        p: &Prepared<T>,
        x: Tensor<T>,
        targets: &target::Resolved,
        seed: SeedMode,
    ) -> Result<Tensor<T>> {
        let input = p.graph.inputs[0];
        let plan = Plan {
            masks: Vec::new(),
            cuts: Vec::new(),
            record: Vec::new(),
        };
        let (relevance, _, (), _) = self.checked_sweep(p, vec![x], input, &plan, |out| {
            Ok((target::seed(out, targets, seed == SeedMode::Logit)?, ()))
        })?;
        Ok(relevance)
    }

    /// Integrated Gradients from the baseline tensor `base` (right Riemann sum, `n_iter`
    /// steps): `(x − b) ⊙ (Σ_k ∇f(b + (x − b)·k/n)) / n`.
    fn integrated_gradients<T: Float>(
        &self,
        p: &Prepared<T>,
        x: &Tensor<T>,
        base: &Tensor<T>,
        n_iter: usize,
        targets: &target::Resolved,
        seed: SeedMode,
    ) -> Result<Tensor<T>> {
        let b = &Cpu;
        let diff = b.zip(Zip::Sub, x, base)?;
        let mut acc = b.full(x.shape(), T::zero());
        for k in 1..=n_iter {
            let alpha = T::of(k as f64 / n_iter as f64);
            let data = base
                .data()
                .iter()
                .zip(diff.data())
                .map(|(&b0, &d)| b0 + d * alpha)
                .collect();
            let xk = Tensor::new(x.shape().to_vec(), data)?;
            let g = self.sweep(p, xk, targets, seed)?;
            b.zip_into(Zip::Add, &mut acc, &g)?;
        }
        let steps = T::of(n_iter as f64);
        let data = acc
            .data()
            .iter()
            .zip(diff.data())
            .map(|(&a, &d)| a / steps * d)
            .collect();
        Ok(Tensor::new(x.shape().to_vec(), data)?)
    }

    /// One forward + backward sweep from `inputs` to the value `at`, seeded by `seed` from the
    /// model's output (which also returns what the caller needs of it, `E`), with `plan`'s
    /// masks and recording. Returns the relevance at `at`, the output, `E` and what was
    /// recorded. Unless non-finite values are allowed, non-finite relevance is an error naming
    /// the node whose rule produced the first of them: known when the sweep watched every node
    /// (debug builds), else found by sweeping again watching.
    #[allow(clippy::type_complexity)]
    fn checked_sweep<T: Float, E>(
        &self,
        p: &Prepared<T>,
        inputs: Vec<Tensor<T>>,
        at: prism_model::ValueId,
        plan: &Plan,
        seed: impl Fn(&Tensor<T>) -> Result<(Tensor<T>, E)>,
    ) -> Result<(Tensor<T>, Arc<Tensor<T>>, E, Hooked<T>)> {
        let policy = self.model.nonfinite();
        let watch = policy.checks() && prism_model::finite::watch_every_run();
        // Kept to sweep again if the relevance is not finite (an input-sized copy).
        let again = (policy.checks() && !watch).then(|| inputs.clone());
        let (relevance, output, extra, origin, hooked) =
            self.sweep_once(p, inputs, at, plan, &seed, policy, watch)?;
        if !policy.checks() {
            return Ok((relevance, output, extra, hooked));
        }
        let Some(report) = prism_model::NonFiniteReport::scan(&relevance, 0) else {
            return Ok((relevance, output, extra, hooked));
        };
        let origin = match (origin, again) {
            (Some(ni), _) => Some(ni),
            (None, Some(inputs)) => self.sweep_once(p, inputs, at, plan, &seed, policy, true)?.3,
            (None, None) => None,
        };
        let origin = match origin {
            Some(ni) => {
                let node = &p.graph.nodes[ni];
                let rule = p.rules[ni].as_ref().map_or("gradient", Rule::name);
                format!(
                    "the first non-finite relevance comes from the {rule} rule at node '{}' ({})",
                    node.name,
                    node.op.type_name()
                )
            }
            None => "no rule was seen producing it".into(),
        };
        Err(AttributionError::Model(
            prism_model::ModelError::NonFiniteResult {
                what: "the relevance".into(),
                report,
                origin,
            },
        ))
    }

    /// One sweep of [`checked_sweep`](Self::checked_sweep); with `watch`, also the node where
    /// non-finite relevance began (if any). With cuts ([`Parallel::Exclude`]) the sweep stops
    /// at each conditioned value in turn, and starts again from its masked relevance alone.
    #[allow(clippy::type_complexity, clippy::too_many_arguments)]
    fn sweep_once<T: Float, E>(
        &self,
        p: &Prepared<T>,
        inputs: Vec<Tensor<T>>,
        at: prism_model::ValueId,
        plan: &Plan,
        seed: &impl Fn(&Tensor<T>) -> Result<(Tensor<T>, E)>,
        policy: prism_model::NonFinite,
        watch: bool,
    ) -> Result<(Tensor<T>, Arc<Tensor<T>>, E, Option<usize>, Hooked<T>)> {
        let mut trace = p.exec.run_with(inputs, &p.keep, policy)?;
        let output = trace.outputs[0].clone();
        let activations = plan
            .record
            .iter()
            .map(|v| {
                trace.get(*v).cloned().ok_or_else(|| {
                    AttributionError::Invalid(format!(
                        "the forward pass did not keep the recorded tensor '{}'",
                        p.graph.value(*v).name
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let (seed_t, extra) = seed(&output)?;
        let mut hooks = concept::SweepHooks::new(plan.masks.clone(), plan.record.clone());
        let mut seeds = vec![(p.graph.outputs[0], seed_t)];
        let mut origin = None;
        for &cut in &plan.cuts {
            let (mut r, origins) = propagate::propagate_watched(
                &p.graph,
                &p.exec,
                &mut trace,
                &p.rules,
                seeds,
                &[cut],
                watch,
                &mut hooks,
            )?;
            origin = origin.or(origins[0]);
            seeds = vec![(cut, r.remove(0))];
        }
        let (mut r, origins) = propagate::propagate_watched(
            &p.graph,
            &p.exec,
            &mut trace,
            &p.rules,
            seeds,
            &[at],
            watch,
            &mut hooks,
        )?;
        let hooked = Hooked {
            relevance: hooks.into_recorded(),
            activations,
        };
        Ok((r.remove(0), output, extra, origin.or(origins[0]), hooked))
    }
}

/// Each row of `x` repeated `k` times in place (`[a, b]` → `[a, a, b, b]` for `k = 2`):
/// zennit-crp's `repeat_interleave` of samples over conditions.
pub fn repeat_rows<T: Float>(x: &Tensor<T>, k: usize) -> Result<Tensor<T>> {
    let n = x.shape().first().copied().unwrap_or(0);
    let row = x.len() / n.max(1);
    let mut data = Vec::with_capacity(x.len() * k);
    for r in x.data().chunks(row.max(1)) {
        for _ in 0..k {
            data.extend_from_slice(r);
        }
    }
    let mut shape = x.shape().to_vec();
    shape[0] = n * k;
    Ok(Tensor::new(shape, data)?)
}

/// The rows `rows` of `x`, in that order.
pub(crate) fn take_rows<T: Float>(x: &Tensor<T>, rows: &[usize]) -> Result<Tensor<T>> {
    let n = x.shape().first().copied().unwrap_or(0);
    let row = x.len() / n.max(1);
    let mut data = Vec::with_capacity(rows.len() * row);
    for &r in rows {
        data.extend_from_slice(&x.data()[r * row..(r + 1) * row]);
    }
    let mut shape = x.shape().to_vec();
    shape[0] = rows.len();
    Ok(Tensor::new(shape, data)?)
}

/// A zero tensor shaped like `x` with `n` rows.
fn empty_rows<T: Float>(x: &Tensor<T>, n: usize) -> Tensor<T> {
    let mut shape = x.shape().to_vec();
    if let Some(first) = shape.first_mut() {
        *first = n;
    }
    Cpu.full(&shape, T::zero())
}

/// Writes the rows of `src` to rows `rows` of `dst`.
fn put_rows<T: Float>(dst: &mut Tensor<T>, rows: &[usize], src: &Tensor<T>) -> Result<()> {
    let row = src.len() / rows.len().max(1);
    if dst.len() / dst.shape().first().copied().unwrap_or(1).max(1) != row {
        return Err(AttributionError::Invalid(format!(
            "rows of shape {:?} do not fit a tensor of shape {:?}",
            src.shape(),
            dst.shape()
        )));
    }
    let d = dst.data_mut();
    for (i, &r) in rows.iter().enumerate() {
        d[r * row..(r + 1) * row].copy_from_slice(&src.data()[i * row..(i + 1) * row]);
    }
    Ok(())
}

/// Number of classes (axis 1) and positions per class (axes 2..) of an output.
fn class_layout(shape: &[usize]) -> (usize, usize, usize) {
    let n = shape.first().copied().unwrap_or(1);
    let c = shape.get(1).copied().unwrap_or(1);
    let inner: usize = shape.iter().skip(2).product();
    (n, c, inner)
}
