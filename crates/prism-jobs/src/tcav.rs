//! Testing with Concept Activation Vectors (TCAV; Kim et al. 2018), `prism tcav`: does a
//! human concept (stripes, say), given by example images, matter to a class's prediction at a
//! layer?
//!
//! 1. The activations `h_l(x)` at the layer (an ONNX node or tensor), flattened per sample, for
//!    every concept set and every random set ([`layer_activations`]).
//! 2. Per (concept, random set) pair, a CAV: the unit normal of a linear classifier's boundary
//!    between the concept's and the random set's activations, pointing to the concept, with its
//!    held-out accuracy ([`cav::train_cav`]: L2-regularised logistic regression, seeded split).
//! 3. Over the target's samples (`inputs`), the directional derivatives
//!    `S_i = ∇h_l f_target(x_i) · v_CAV` ([`layer_gradients`]); the TCAV score is the share of
//!    `S_i > 0` (Captum's `sign_count`), and `magnitude` is their mean (Captum 0.9's).
//! 4. The concept's scores over its random runs against the random baseline's (random set `i`
//!    as a "concept" against random set `i + 1 mod m`): Student's two-sided t-test
//!    ([`stats::ttest_ind`], scipy's `ttest_ind`), significant when `p < α / k` for `k`
//!    concepts tested (Bonferroni).
//!
//! Captum's `TCAV` is the reference for the definitions (`scripts/make_tcav_fixtures.py`,
//! `tests/tcav.rs`); `docs/tcav.md` lists where Prism differs (the classifier, the CAV's
//! length, the random baseline).

// The errors carry the model's and the dataset's errors unboxed, as the crate's other jobs.
#![allow(clippy::result_large_err)]

pub mod cav;
pub mod stats;

use std::path::{Path, PathBuf};

use prism_attribution::{AttributeAt, Attributor, Explainer, SeedMode, Target};
use prism_model::{DType, Float, Model, NonFiniteReport, Tensor};
use prism_store::dataset::{Dataset, DatasetError, DatasetOptions};
use serde::Serialize;

use cav::{CavError, CavSettings, Rows};

/// One set of examples: a name and a dataset prism-store reads (an image folder,
/// `ROOT/<any sub-folder>/<image>.png`, an HDF5 file or a `.npy` array); labels are ignored.
#[derive(Clone, Debug, PartialEq)]
pub struct ExampleSet {
    pub name: String,
    pub path: PathBuf,
}

/// The statistical settings of a TCAV run.
#[derive(Clone, Debug, PartialEq)]
pub struct TcavSettings {
    /// Seeds the train/test splits of the CAVs.
    pub seed: u64,
    pub cav: CavSettings,
    /// The significance level before the Bonferroni correction.
    pub alpha: f64,
}

/// The default significance level.
pub const DEFAULT_ALPHA: f64 = 0.05;

impl Default for TcavSettings {
    fn default() -> Self {
        TcavSettings {
            seed: 0,
            cav: CavSettings::default(),
            alpha: DEFAULT_ALPHA,
        }
    }
}

/// One TCAV run.
#[derive(Clone, Debug)]
pub struct TcavJob {
    pub model: PathBuf,
    /// An ONNX node (its first output) or tensor name.
    pub layer: String,
    /// The class whose logit is differentiated.
    pub target: usize,
    pub concepts: Vec<ExampleSet>,
    /// At least 2; the paper runs ≥ 10.
    pub randoms: Vec<ExampleSet>,
    /// The samples of the target class.
    pub inputs: PathBuf,
    /// How every set is read and preprocessed (as `prism attribute --dataset`).
    pub dataset_options: DatasetOptions,
    pub settings: TcavSettings,
    /// Computation type of the forward and backward passes (f32 or f64).
    pub dtype: DType,
    pub batch_size: usize,
    pub allow_nonfinite: bool,
}

/// What a TCAV run reports while it reads the sets.
pub trait TcavProgress {
    /// `done` of `total` samples of the set `name` passed through the model.
    fn samples(&mut self, name: &str, done: usize, total: usize);
}

/// Reports nothing.
pub struct NoTcavProgress;

impl TcavProgress for NoTcavProgress {
    fn samples(&mut self, _: &str, _: usize, _: usize) {}
}

/// Why a TCAV run failed.
#[derive(Debug, thiserror::Error)]
pub enum TcavError {
    #[error("loading {}", path.display())]
    LoadModel {
        path: PathBuf,
        #[source]
        source: prism_model::ModelError,
    },
    #[error(
        "the model has no node or tensor named '{layer}'; `prism inspect --shapes` lists them"
    )]
    UnknownLayer { layer: String },
    #[error("opening the {what} set '{name}' ({})", path.display())]
    OpenSet {
        what: &'static str,
        name: String,
        path: PathBuf,
        #[source]
        source: DatasetError,
    },
    #[error("reading the {what} set '{name}' ({})", path.display())]
    ReadSet {
        what: &'static str,
        name: String,
        path: PathBuf,
        #[source]
        source: DatasetError,
    },
    #[error(
        "the {what} set '{name}' ({}) holds samples of shape {got:?}, the inputs {want:?}; \
         preprocess every set to the model's input size (--resize/--crop)",
        path.display()
    )]
    SampleShape {
        what: &'static str,
        name: String,
        path: PathBuf,
        got: Vec<usize>,
        want: Vec<usize>,
    },
    #[error("the {what} set '{name}' ({}) has no samples", path.display())]
    EmptySet {
        what: &'static str,
        name: String,
        path: PathBuf,
    },
    #[error(
        "the {what} set '{name}' ({}) holds {report}; check it, or allow non-finite values",
        path.display()
    )]
    NonFinite {
        what: &'static str,
        name: String,
        path: PathBuf,
        report: NonFiniteReport,
    },
    #[error("running the model on the {what} set '{name}' at layer '{layer}'")]
    Model {
        what: &'static str,
        name: String,
        layer: String,
        #[source]
        source: prism_attribution::AttributionError,
    },
    #[error("target class {target} does not exist: the model's output has {classes} classes")]
    Target { target: usize, classes: usize },
    #[error("TCAV needs at least {need} random sets for its t-test, got {got}")]
    TooFewRandom { got: usize, need: usize },
    #[error("no concept set given")]
    NoConcepts,
    #[error("the set name '{0}' is used twice; give every concept and random set its own name")]
    DuplicateName(String),
    #[error("the batch size must be at least 1")]
    BatchSize,
    #[error("TCAV computes in f32 or f64, not {0}")]
    DType(DType),
    #[error("{0}")]
    Settings(String),
    #[error("training the CAV of '{concept}' against '{random}'")]
    Cav {
        concept: String,
        random: String,
        #[source]
        source: CavError,
    },
    #[error("writing the TCAV report")]
    Write(#[from] prism_store::WriteError),
    #[error("encoding the report as JSON")]
    Json(#[source] serde_json::Error),
    #[error("drawing the plot")]
    Plot(#[source] prism_eval::EvalError),
}

/// Activations or gradients at the layer: `n` rows of `d` values (row-major, f64), and the
/// layer's shape for one sample.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerRows {
    pub data: Vec<f64>,
    pub n: usize,
    pub d: usize,
    pub sample_shape: Vec<usize>,
}

impl LayerRows {
    pub fn rows(&self) -> Rows<'_> {
        Rows {
            data: &self.data,
            n: self.n,
            d: self.d,
        }
    }

    fn push<T: Float>(&mut self, t: &Tensor<T>) {
        let shape = t.shape();
        let rows = shape.first().copied().unwrap_or(0);
        self.sample_shape = shape.get(1..).unwrap_or(&[]).to_vec();
        self.d = self.sample_shape.iter().product();
        self.n += rows;
        self.data.extend(t.data().iter().map(|v| v.f64()));
    }
}

/// An open set and where it comes from (for error messages).
#[derive(Clone, Copy, Debug)]
pub struct SetRef<'a> {
    /// `concept`, `random` or `inputs`.
    pub what: &'static str,
    pub name: &'a str,
    pub path: &'a Path,
    pub dataset: &'a Dataset,
}

/// Checks that `layer` names a node or tensor of `model`.
pub fn check_layer(model: &Model, layer: &str) -> Result<(), TcavError> {
    let g = model.graph();
    if g.find_node(layer).is_none() && g.find_value(layer).is_none() {
        return Err(TcavError::UnknownLayer {
            layer: layer.to_string(),
        });
    }
    Ok(())
}

/// The set's samples as batches of the model's input in `T` (non-finite values refused unless
/// allowed), each handed to `each`.
fn for_batches<T: Float>(
    set: SetRef<'_>,
    batch_size: usize,
    allow_nonfinite: bool,
    progress: &mut dyn TcavProgress,
    mut each: impl FnMut(Tensor<T>) -> Result<(), TcavError>,
) -> Result<(), TcavError> {
    if batch_size == 0 {
        return Err(TcavError::BatchSize);
    }
    let dataset = set.dataset;
    let n = dataset.len();
    if n == 0 {
        return Err(TcavError::EmptySet {
            what: set.what,
            name: set.name.to_string(),
            path: set.path.to_path_buf(),
        });
    }
    let indices: Vec<usize> = (0..n).collect();
    for chunk in indices.chunks(batch_size) {
        let batch = dataset.read(chunk).map_err(|source| TcavError::ReadSet {
            what: set.what,
            name: set.name.to_string(),
            path: set.path.to_path_buf(),
            source,
        })?;
        let mut shape = vec![chunk.len()];
        shape.extend_from_slice(dataset.input_shape());
        let data: Vec<T> = batch.data.iter().map(|&v| T::of(f64::from(v))).collect();
        let model_err = |e: prism_model::ModelError| TcavError::Model {
            what: set.what,
            name: set.name.to_string(),
            layer: "(input)".into(),
            source: e.into(),
        };
        let x = Tensor::new(shape, data).map_err(model_err)?;
        if !allow_nonfinite {
            if let Some(report) = NonFiniteReport::scan(&x, chunk[0]) {
                return Err(TcavError::NonFinite {
                    what: set.what,
                    name: set.name.to_string(),
                    path: set.path.to_path_buf(),
                    report,
                });
            }
        }
        each(x)?;
        progress.samples(set.name, chunk[chunk.len() - 1] + 1, n);
    }
    Ok(())
}

/// The activations at `layer` of every sample of `dataset`, flattened per sample.
pub fn layer_activations<T: Float>(
    model: &Model,
    layer: &str,
    set: SetRef<'_>,
    batch_size: usize,
    allow_nonfinite: bool,
    progress: &mut dyn TcavProgress,
) -> Result<LayerRows, TcavError> {
    check_layer(model, layer)?;
    let mut out = LayerRows {
        data: Vec::new(),
        n: 0,
        d: 0,
        sample_shape: Vec::new(),
    };
    let wrap = |source: prism_attribution::AttributionError| TcavError::Model {
        what: set.what,
        name: set.name.to_string(),
        layer: layer.to_string(),
        source,
    };
    // the layer's value in the graph specialised for the batch's shape: found once per shape
    // (every batch but a shorter last one has the same)
    let mut found: Option<(Vec<usize>, prism_model::ValueId)> = None;
    for_batches::<T>(set, batch_size, allow_nonfinite, progress, |x| {
        let v = match &found {
            Some((shape, v)) if shape.as_slice() == x.shape() => *v,
            _ => {
                let g = model
                    .specialize(&[x.shape().to_vec()])
                    .map_err(|e| wrap(e.into()))?;
                let v = g
                    .find_value(layer)
                    .or_else(|| g.find_node(layer).map(|n| g.node(n).outputs[0]))
                    .ok_or_else(|| TcavError::UnknownLayer {
                        layer: layer.to_string(),
                    })?;
                found = Some((x.shape().to_vec(), v));
                v
            }
        };
        let trace = model
            .trace(vec![x], &prism_model::Keep::Values(vec![v]))
            .map_err(|e| wrap(e.into()))?;
        let act = trace.get(v).ok_or_else(|| {
            wrap(prism_attribution::AttributionError::Invalid(format!(
                "'{layer}' is a constant of the model (it does not depend on the input)"
            )))
        })?;
        out.push(act.as_ref());
        Ok(())
    })?;
    Ok(out)
}

/// The gradient of the `target` class's output at `layer` (the plain gradient: no composite,
/// no canonizers, the graph as exported) for every sample of `dataset`, flattened per sample;
/// Captum's `LayerGradientXActivation(multiply_by_inputs=False)`.
pub fn layer_gradients<T: Float>(
    model: &Model,
    layer: &str,
    target: usize,
    set: SetRef<'_>,
    batch_size: usize,
    allow_nonfinite: bool,
    progress: &mut dyn TcavProgress,
) -> Result<LayerRows, TcavError> {
    check_layer(model, layer)?;
    let explainer = Explainer::new(model).with_canonizers(false);
    let mut out = LayerRows {
        data: Vec::new(),
        n: 0,
        d: 0,
        sample_shape: Vec::new(),
    };
    let wrap = |source: prism_attribution::AttributionError| TcavError::Model {
        what: set.what,
        name: set.name.to_string(),
        layer: layer.to_string(),
        source,
    };
    let mut checked = false;
    for_batches::<T>(set, batch_size, allow_nonfinite, progress, |x| {
        if !checked {
            let output = explainer.forward(&x).map_err(wrap)?;
            let classes = output.shape().get(1).copied().unwrap_or(1);
            if output.shape().len() != 2 || target >= classes {
                return Err(TcavError::Target { target, classes });
            }
            checked = true;
        }
        let a = explainer
            .attribute_inputs(
                vec![x],
                &AttributeAt::Named(layer.to_string()),
                &Target::Class(target),
                SeedMode::OneHot,
                &Attributor::Gradient,
            )
            .map_err(wrap)?;
        out.push(&a.relevance);
        Ok(())
    })?;
    Ok(out)
}

/// One CAV's scores.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Run {
    /// The set the CAV points to (a concept, or a random set for the baseline).
    pub concept: String,
    /// The random set it was told from.
    pub random: String,
    pub sign_count: f64,
    pub magnitude: f64,
    pub cav_accuracy: f64,
    pub cav_iterations: usize,
    pub cav_converged: bool,
}

/// Mean and standard deviation (population, ddof = 0, as numpy's `std`) of a score.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub mean: f64,
    pub std: f64,
}

impl Summary {
    fn of(v: impl Iterator<Item = f64> + Clone) -> Summary {
        let n = v.clone().count().max(1) as f64;
        let mean = v.clone().sum::<f64>() / n;
        let var = v.map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
        Summary {
            mean,
            std: var.sqrt(),
        }
    }
}

/// A t-test of a concept's scores against the random baseline's.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Test {
    /// `None` (JSON null) when it is undefined (no variance and equal means).
    pub t_statistic: Option<f64>,
    pub p_value: Option<f64>,
    /// `p < α / k` (Bonferroni over the `k` concepts).
    pub significant: bool,
}

/// A set as the report names it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SetInfo {
    pub name: String,
    pub path: String,
    pub samples: usize,
}

/// One concept's results.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConceptResult {
    #[serde(flatten)]
    pub set: SetInfo,
    /// One per random set, in the order given.
    pub runs: Vec<Run>,
    pub sign_count: Summary,
    pub magnitude: Summary,
    pub cav_accuracy: Summary,
    /// The test of the sign counts (the TCAV score); it decides `significant`.
    pub test: Test,
    /// The same test of the magnitudes, for information.
    pub test_magnitude: Test,
}

/// The random baseline: random set `i` against random set `i + 1 mod m`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Baseline {
    pub runs: Vec<Run>,
    pub sign_count: Summary,
    pub magnitude: Summary,
    pub cav_accuracy: Summary,
}

/// The classifier's settings, as reported.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassifierInfo {
    pub kind: &'static str,
    pub l2: f64,
    pub test_fraction: f64,
    pub tolerance: f64,
    pub max_iterations: usize,
}

/// A TCAV report (written as JSON, see docs/tcav.md).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TcavReport {
    pub model: String,
    pub layer: String,
    /// The layer's shape for one sample (the CAVs have its product of features).
    pub layer_shape: Vec<usize>,
    pub target: usize,
    pub dtype: String,
    pub seed: u64,
    pub classifier: ClassifierInfo,
    pub alpha: f64,
    /// `bonferroni` when several concepts are tested, else `none`.
    pub correction: &'static str,
    /// `α / k`.
    pub alpha_corrected: f64,
    pub inputs: SetInfo,
    pub randoms: Vec<SetInfo>,
    pub random_baseline: Baseline,
    pub concepts: Vec<ConceptResult>,
    /// Things to know about the result (few random sets, a CAV that did not converge, a CAV
    /// no better than chance).
    pub warnings: Vec<String>,
}

/// The layer's rows of a named set.
pub struct NamedRows<'a> {
    pub set: SetInfo,
    pub rows: &'a LayerRows,
}

/// The run header of a report (what [`tcav_scores`] does not know).
#[derive(Clone, Debug)]
pub struct ReportHeader {
    pub model: String,
    pub layer: String,
    pub target: usize,
    pub dtype: DType,
    pub inputs: SetInfo,
}

/// The stream of the split of concept `c`'s CAV against random set `r` (`c = None`: the
/// baseline's random set `r`).
fn split_stream(c: Option<usize>, r: usize) -> u64 {
    let group = c.map_or(0, |c| c as u64 + 1);
    (group << 32) | r as u64
}

/// TCAV from the layer's rows: the CAVs, the scores over `gradients`, the t-tests.
pub fn tcav_scores(
    header: ReportHeader,
    concepts: &[NamedRows<'_>],
    randoms: &[NamedRows<'_>],
    gradients: &LayerRows,
    settings: &TcavSettings,
) -> Result<TcavReport, TcavError> {
    if concepts.is_empty() {
        return Err(TcavError::NoConcepts);
    }
    if randoms.len() < 2 {
        return Err(TcavError::TooFewRandom {
            got: randoms.len(),
            need: 2,
        });
    }
    if !(settings.alpha > 0.0 && settings.alpha < 1.0) {
        return Err(TcavError::Settings(format!(
            "the significance level must lie in (0, 1), got {}",
            settings.alpha
        )));
    }
    let c = &settings.cav;
    let valid = (c.test_fraction > 0.0 && c.test_fraction < 1.0)
        && c.l2 > 0.0
        && c.l2.is_finite()
        && c.tolerance > 0.0;
    if !valid {
        return Err(TcavError::Settings(format!(
            "the CAV settings need 0 < test fraction < 1 (got {}), an L2 penalty > 0 (got {}) \
             and a tolerance > 0 (got {})",
            c.test_fraction, c.l2, c.tolerance
        )));
    }
    let mut warnings = Vec::new();
    if randoms.len() < 10 {
        warnings.push(format!(
            "only {} random sets: the TCAV paper tests against at least 10",
            randoms.len()
        ));
    }
    let run = |a: &NamedRows<'_>, r: &NamedRows<'_>, stream: u64, warnings: &mut Vec<String>| {
        let cav = cav::train_cav(a.rows.rows(), r.rows.rows(), settings.seed, stream, c).map_err(
            |source| TcavError::Cav {
                concept: a.set.name.clone(),
                random: r.set.name.clone(),
                source,
            },
        )?;
        if !cav.converged {
            warnings.push(format!(
                "the CAV of '{}' against '{}' stopped after {} steps without reaching the \
                 tolerance",
                a.set.name, r.set.name, cav.iterations
            ));
        }
        let s = cav::tcav_scores(gradients.rows(), &cav.vector);
        Ok::<Run, TcavError>(Run {
            concept: a.set.name.clone(),
            random: r.set.name.clone(),
            sign_count: s.sign_count,
            magnitude: s.magnitude,
            cav_accuracy: cav.accuracy,
            cav_iterations: cav.iterations,
            cav_converged: cav.converged,
        })
    };
    let m = randoms.len();
    let mut base_runs = Vec::with_capacity(m);
    for i in 0..m {
        base_runs.push(run(
            &randoms[i],
            &randoms[(i + 1) % m],
            split_stream(None, i),
            &mut warnings,
        )?);
    }
    let summarise = |runs: &[Run], f: fn(&Run) -> f64| Summary::of(runs.iter().map(f));
    let k = concepts.len();
    let alpha_corrected = settings.alpha / k as f64;
    let test = |a: &[Run], b: &[Run], f: fn(&Run) -> f64| {
        let xa: Vec<f64> = a.iter().map(f).collect();
        let xb: Vec<f64> = b.iter().map(f).collect();
        let t = stats::ttest_ind(&xa, &xb);
        let t_statistic = t.map(|t| t.statistic).filter(|v| !v.is_nan());
        let p_value = t.map(|t| t.pvalue).filter(|v| !v.is_nan());
        Test {
            t_statistic,
            p_value,
            significant: p_value.is_some_and(|p| p < alpha_corrected),
        }
    };
    let mut results = Vec::with_capacity(k);
    for (ci, concept) in concepts.iter().enumerate() {
        let mut runs = Vec::with_capacity(m);
        for (ri, random) in randoms.iter().enumerate() {
            runs.push(run(
                concept,
                random,
                split_stream(Some(ci), ri),
                &mut warnings,
            )?);
        }
        let acc = summarise(&runs, |r| r.cav_accuracy);
        if acc.mean <= 0.6 {
            warnings.push(format!(
                "the CAVs of '{}' classify only {:.0}% of held-out examples right on average: \
                 the layer hardly tells the concept from the random sets",
                concept.set.name,
                100.0 * acc.mean
            ));
        }
        results.push(ConceptResult {
            set: concept.set.clone(),
            sign_count: summarise(&runs, |r| r.sign_count),
            magnitude: summarise(&runs, |r| r.magnitude),
            cav_accuracy: acc,
            test: test(&runs, &base_runs, |r| r.sign_count),
            test_magnitude: test(&runs, &base_runs, |r| r.magnitude),
            runs,
        });
    }
    Ok(TcavReport {
        model: header.model,
        layer: header.layer,
        layer_shape: gradients.sample_shape.clone(),
        target: header.target,
        dtype: header.dtype.to_string(),
        seed: settings.seed,
        classifier: ClassifierInfo {
            kind: "logistic-regression",
            l2: c.l2,
            test_fraction: c.test_fraction,
            tolerance: c.tolerance,
            max_iterations: c.max_iterations,
        },
        alpha: settings.alpha,
        correction: if k > 1 { "bonferroni" } else { "none" },
        alpha_corrected,
        inputs: header.inputs,
        randoms: randoms.iter().map(|r| r.set.clone()).collect(),
        random_baseline: Baseline {
            sign_count: summarise(&base_runs, |r| r.sign_count),
            magnitude: summarise(&base_runs, |r| r.magnitude),
            cav_accuracy: summarise(&base_runs, |r| r.cav_accuracy),
            runs: base_runs,
        },
        concepts: results,
        warnings,
    })
}

fn open_set(
    what: &'static str,
    set: &ExampleSet,
    o: &DatasetOptions,
) -> Result<Dataset, TcavError> {
    Dataset::open(&set.path, o).map_err(|source| TcavError::OpenSet {
        what,
        name: set.name.clone(),
        path: set.path.clone(),
        source,
    })
}

/// Runs TCAV: reads every set, computes the activations and gradients at the layer in the
/// job's dtype, trains the CAVs and tests the concepts ([`tcav_scores`]).
pub fn tcav(job: &TcavJob, progress: &mut dyn TcavProgress) -> Result<TcavReport, TcavError> {
    match job.dtype {
        DType::F32 => tcav_in::<f32>(job, progress),
        DType::F64 => tcav_in::<f64>(job, progress),
        other => Err(TcavError::DType(other)),
    }
}

fn tcav_in<T: Float>(
    job: &TcavJob,
    progress: &mut dyn TcavProgress,
) -> Result<TcavReport, TcavError> {
    if job.concepts.is_empty() {
        return Err(TcavError::NoConcepts);
    }
    if job.randoms.len() < 2 {
        return Err(TcavError::TooFewRandom {
            got: job.randoms.len(),
            need: 2,
        });
    }
    let mut names: Vec<&str> = Vec::new();
    for s in job.concepts.iter().chain(&job.randoms) {
        if names.contains(&s.name.as_str()) {
            return Err(TcavError::DuplicateName(s.name.clone()));
        }
        names.push(&s.name);
    }
    let model = Model::load(&job.model).map_err(|source| TcavError::LoadModel {
        path: job.model.clone(),
        source,
    })?;
    check_layer(&model, &job.layer)?;
    let o = &job.dataset_options;
    // Open every set first, so that a bad folder is reported before any work.
    let inputs_set = ExampleSet {
        name: "inputs".into(),
        path: job.inputs.clone(),
    };
    let inputs = open_set("inputs", &inputs_set, o)?;
    let want = inputs.input_shape().to_vec();
    let mut opened = Vec::new();
    for (what, set) in job
        .concepts
        .iter()
        .map(|s| ("concept", s))
        .chain(job.randoms.iter().map(|s| ("random", s)))
    {
        let d = open_set(what, set, o)?;
        if d.input_shape() != want.as_slice() {
            return Err(TcavError::SampleShape {
                what,
                name: set.name.clone(),
                path: set.path.clone(),
                got: d.input_shape().to_vec(),
                want,
            });
        }
        opened.push((what, set, d));
    }
    let gradients = layer_gradients::<T>(
        &model,
        &job.layer,
        job.target,
        SetRef {
            what: "inputs",
            name: "inputs",
            path: &job.inputs,
            dataset: &inputs,
        },
        job.batch_size,
        job.allow_nonfinite,
        progress,
    )?;
    let mut rows = Vec::with_capacity(opened.len());
    for (what, set, d) in &opened {
        rows.push(layer_activations::<T>(
            &model,
            &job.layer,
            SetRef {
                what,
                name: &set.name,
                path: &set.path,
                dataset: d,
            },
            job.batch_size,
            job.allow_nonfinite,
            progress,
        )?);
    }
    let info = |set: &ExampleSet, n: usize| SetInfo {
        name: set.name.clone(),
        path: set.path.display().to_string(),
        samples: n,
    };
    let named: Vec<NamedRows<'_>> = opened
        .iter()
        .zip(&rows)
        .map(|((_, set, _), r)| NamedRows {
            set: info(set, r.n),
            rows: r,
        })
        .collect();
    let (concepts, randoms) = named.split_at(job.concepts.len());
    tcav_scores(
        ReportHeader {
            model: job.model.display().to_string(),
            layer: job.layer.clone(),
            target: job.target,
            dtype: job.dtype,
            inputs: info(&inputs_set, gradients.n),
        },
        concepts,
        randoms,
        &gradients,
        &job.settings,
    )
}

/// The report as pretty-printed JSON.
pub fn report_json(report: &TcavReport) -> Result<Vec<u8>, TcavError> {
    let mut bytes = serde_json::to_vec_pretty(report).map_err(TcavError::Json)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The bar chart of the report: per concept its mean TCAV score (sign count) with ±1 std
/// whiskers, `*` after the name when significant and the p-value under it; the random
/// baseline's in grey; a dashed line at 0.5.
pub fn report_plot(report: &TcavReport) -> prism_eval::plot::BarPlot {
    use prism_eval::plot::{Bar, BarPlot};
    let mut bars: Vec<Bar> = report
        .concepts
        .iter()
        .map(|c| Bar {
            label: format!(
                "{}{}",
                c.set.name,
                if c.test.significant { " *" } else { "" }
            ),
            value: c.sign_count.mean,
            error: c.sign_count.std,
            note: c
                .test
                .p_value
                .map_or("p=n/a".into(), |p| format!("p={}", format_p(p))),
            reference: false,
        })
        .collect();
    bars.push(Bar {
        label: "random".into(),
        value: report.random_baseline.sign_count.mean,
        error: report.random_baseline.sign_count.std,
        note: String::new(),
        reference: true,
    });
    BarPlot {
        title: format!("TCAV  {}  class {}", report.layer, report.target),
        y_label: "TCAV score".into(),
        y_range: Some((0.0, 1.0)),
        guide: Some(0.5),
        bars,
    }
}

fn format_p(p: f64) -> String {
    if p >= 0.001 {
        format!("{p:.3}")
    } else {
        format!("{p:.1e}")
    }
}

/// Writes the report as JSON to `json` and, with `plot`, its bar chart as PNG (each through
/// `prism_store::atomic`: the old file or the complete new one).
pub fn write_report(
    report: &TcavReport,
    json: &Path,
    plot: Option<&Path>,
) -> Result<(), TcavError> {
    let png = match plot {
        Some(_) => Some(report_plot(report).png(900, 520).map_err(TcavError::Plot)?),
        None => None,
    };
    prism_store::write_bytes_atomic(json, &report_json(report)?)?;
    if let (Some(path), Some(png)) = (plot, png) {
        prism_store::write_bytes_atomic(path, &png)?;
    }
    Ok(())
}
