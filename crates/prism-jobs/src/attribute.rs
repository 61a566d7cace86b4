//! Attributing a whole dataset: the loop that reads batches, attributes them with a method and
//! hands each result to the run protocol of `prism_store::run` (resume, shards, lock,
//! provenance). `prism attribute` is this call plus argument parsing and a progress bar.

// The errors carry the store's, the dataset's and the analysis' errors unboxed, like prism-store
// (`StoreError` holds `hdf5::Error`); boxing them is left for one workspace-wide change.
#![allow(clippy::result_large_err)]

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use prism_attribution::{
    AttributeAt, AttributionError, Attributor, Concepts, Explainer, MethodSpec, Parallel, Record,
    Recorded, Target,
};
use prism_model::batch::InputValues;
use prism_model::{Model, ModelError, NonFinite, NonFiniteReport, Tensor};
use prism_store::dataset::{Dataset, DatasetError, DatasetOptions, TokenDataset};
use prism_store::run::{
    hash_file, AttributionRun, PartData, PartRecord, Prepared, RunError, RunSpec,
};
use prism_store::{
    LabelSource, RecordLayout, RecordNodeLayout, RecordRows, RecordSettings, RunSettings, Shard,
    TargetSpec,
};

/// The attribution method: its typed description (recorded in the file and hashed into the
/// run key) and the parts built from it.
#[derive(Debug, Clone)]
pub struct Method {
    pub spec: MethodSpec,
    pub built: prism_attribution::Method,
}

impl Method {
    /// Builds `spec`; `composite_toml` is the composite file's text for a file composite.
    pub fn new(
        spec: MethodSpec,
        composite_toml: Option<&str>,
    ) -> Result<Method, prism_attribution::AttributionError> {
        let built = spec.build(composite_toml)?;
        Ok(Method { spec, built })
    }
}

/// One dataset attribution run. Equal jobs (and methods) write equal files.
#[derive(Debug, Clone)]
pub struct AttributeJob {
    /// The ONNX model.
    pub model: PathBuf,
    /// The dataset: HDF5 file, image folder or `.npy` array, or a token dataset directory
    /// (`prism_store::TokenDataset`, recognised when `dataset_options.kind` is `None`).
    pub dataset: PathBuf,
    /// How the dataset is read and preprocessed.
    pub dataset_options: DatasetOptions,
    /// The attribution file; for a shard, `{shard}` is replaced (see
    /// [`prism_store::run::shard_output`]).
    pub output: PathBuf,
    /// `label`, `predicted` or a class number, as spelled (it is part of the run key).
    pub target: String,
    /// Samples per batch (also the unit of resumption).
    pub batch_size: usize,
    pub shard: Option<Shard>,
    /// Only the first N samples of the dataset (before sharding).
    pub limit: Option<usize>,
    /// gzip level (0–9) of the final `attribution` dataset.
    pub compression: Option<u8>,
    /// Batches decoded ahead of the model.
    pub prefetch: usize,
    /// Start over: discard an interrupted run and overwrite an existing output.
    pub force: bool,
    /// Attribute samples holding NaN or ±Inf instead of refusing them (and accept non-finite
    /// results): see [`prism_model::NonFinite`].
    pub allow_nonfinite: bool,
    /// Record the relevance and activation at these hidden nodes into the file's `/record`
    /// group (`prism attribute --record`; see [`prism_store::RecordLayout`]), the quantities
    /// of `prism explain --record`. Gradient-based methods only (the gradient and LRP
    /// composites). Part of the run's settings.
    pub record: Option<RecordSettings>,
}

/// The run as it starts, for progress displays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStarted {
    pub output: PathBuf,
    pub work_dir: PathBuf,
    /// Whether an interrupted run is being resumed.
    pub resumed: bool,
    /// Samples of this run (or shard).
    pub samples: usize,
    /// Samples already in the parts of an interrupted run.
    pub done: usize,
}

/// Progress of a run. Every method has a default that ignores it.
pub trait RunProgress {
    /// The run is set up (called once, before the first batch).
    fn started(&mut self, _run: &RunStarted) {}
    /// A part of `samples` samples was written. `Break` stops the run there, as a kill would:
    /// the parts written so far are kept, and the same job later resumes after them.
    fn part_written(&mut self, _samples: usize) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
    /// Every batch is done; the parts are being assembled.
    fn computed(&mut self) {}
    /// A later phase of the run began (`prism concepts`: a layer's selection and crops).
    fn step(&mut self, _what: &str) {}
}

/// Ignores progress.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl RunProgress for NoProgress {}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeOutcome {
    /// The output already was a complete file of this run: nothing was done.
    AlreadyComplete { output: PathBuf },
    /// The output was written.
    Written { output: PathBuf, samples: usize },
    /// Stopped by the progress callback; the work directory holds the parts written.
    Stopped { output: PathBuf, parts: usize },
}

/// Errors of a dataset job, in library words (the binary adds flag names).
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("the batch size must be at least 1")]
    BatchSize,
    #[error("a gzip level is 0–9, not {0}")]
    Compression(u8),
    #[error("{0}")]
    Target(String),
    #[error("opening dataset {}", path.display())]
    OpenDataset {
        path: PathBuf,
        #[source]
        source: DatasetError,
    },
    /// The target is the dataset's labels, but some or all samples have none.
    #[error(
        "the target `label` needs a label for every sample, but {} has {}; attribute the \
         predicted class instead",
        path.display(),
        if *unlabelled { "unlabelled samples" } else { "no labels" }
    )]
    NeedsLabels { path: PathBuf, unlabelled: bool },
    #[error("{} has no samples to attribute", path.display())]
    NoSamples { path: PathBuf },
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("loading {}", path.display())]
    LoadModel {
        path: PathBuf,
        #[source]
        source: ModelError,
    },
    #[error("reading {}", path.display())]
    ReadBatch {
        path: PathBuf,
        #[source]
        source: DatasetError,
    },
    #[error(transparent)]
    Tensor(#[from] ModelError),
    /// A model input that the token dataset does not hold.
    #[error(
        "the model's input '{input}' has no {input}.npy in the token dataset {} (it holds: {})",
        path.display(),
        held.join(", ")
    )]
    TokenInput {
        path: PathBuf,
        input: String,
        held: Vec<String>,
    },
    /// NaN or ±Inf in the samples read (refused unless the job allows them).
    #[error(
        "{} holds {report} (numbered as in the dataset); check the dataset and its \
         preprocessing, or allow non-finite values (--allow-nonfinite, Python: \
         allow_nonfinite=True)",
        path.display()
    )]
    NonFiniteSamples {
        path: PathBuf,
        report: prism_model::NonFiniteReport,
    },
    /// The record settings ask for no top channel.
    #[error("the record's top_k must be at least 1")]
    RecordTopK,
    /// The record settings do not fit the model or the method (a pattern matching no node, a
    /// method that perturbs the input).
    #[error("recording relevance at hidden nodes")]
    Record {
        #[source]
        source: AttributionError,
    },
    /// The layers of a concepts run do not fit the model (a glob that matches no node).
    #[error("finding the layers to analyse")]
    Layers {
        #[source]
        source: AttributionError,
    },
    #[error("attributing samples {first}..={last}")]
    Attribute {
        first: usize,
        last: usize,
        #[source]
        source: prism_attribution::AttributionError,
    },
}

/// The error of attributing the batch of dataset samples `indices` (run samples
/// `first..=last`): a non-finite report numbers its samples as in the dataset.
pub(crate) fn attribute_error(
    first: usize,
    last: usize,
    indices: &[usize],
    source: prism_attribution::AttributionError,
) -> JobError {
    use prism_attribution::AttributionError as A;
    let source = match source {
        A::Model(ModelError::NonFiniteResult {
            what,
            report,
            origin,
        }) => A::Model(ModelError::NonFiniteResult {
            what: format!("{what} (samples numbered as in the dataset)"),
            report: report.renumbered(|s| indices.get(s).copied().unwrap_or(s)),
            origin,
        }),
        other => other,
    };
    JobError::Attribute {
        first,
        last,
        source,
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A batch read from the dataset (`path`) as the model's input (`[k, …input_shape]`) and the
/// target of its samples, with the batch's indices and labels; samples holding NaN or ±Inf are
/// refused unless allowed (numbered as in the dataset). With `TargetSpec::Label` every sample
/// must have a label (the callers check before the run).
pub(crate) fn batch_input(
    path: &Path,
    batch: prism_store::Batch,
    input_shape: &[usize],
    target: TargetSpec,
    allow_nonfinite: bool,
) -> Result<(Tensor<f32>, Target, prism_store::Batch), JobError> {
    let mut shape = vec![batch.indices.len()];
    shape.extend_from_slice(input_shape);
    let mut batch = batch;
    let x = Tensor::new(shape, std::mem::take(&mut batch.data))?;
    if !allow_nonfinite {
        if let Some(report) = NonFiniteReport::scan(&x, 0) {
            return Err(JobError::NonFiniteSamples {
                path: path.to_path_buf(),
                report: report.renumbered(|s| batch.indices.get(s).copied().unwrap_or(s)),
            });
        }
    }
    let t = match target {
        TargetSpec::Predicted => Target::Predicted,
        TargetSpec::Class(c) => Target::Class(c),
        TargetSpec::Label => Target::PerSample(
            batch
                .labels
                .iter()
                .map(|l| l.map_or(0, |v| v as usize))
                .collect(),
        ),
    };
    Ok((x, t, batch))
}

/// The run of `job` over a dataset of `n_all` samples (`labels`: whether it has labels, and
/// whether every sample has one; `fingerprint`: the dataset's identity): the target checked
/// against the labels, then the attribution file prepared (new, resumed, or `Err` with the
/// outcome when it is already complete).
fn prepare_run(
    job: &AttributeJob,
    method: &Method,
    target: TargetSpec,
    labels: Option<bool>,
    n_all: usize,
    fingerprint: &str,
) -> Result<Result<(AttributionRun, LabelSource), AttributeOutcome>, JobError> {
    let label_source = match labels {
        Some(true) => LabelSource::Dataset,
        _ => LabelSource::Predicted,
    };
    if target == TargetSpec::Label && label_source != LabelSource::Dataset {
        return Err(JobError::NeedsLabels {
            path: job.dataset.clone(),
            unlabelled: labels.is_some(),
        });
    }
    let n = job.limit.map_or(n_all, |l| l.min(n_all));
    if n == 0 {
        return Err(JobError::NoSamples {
            path: job.dataset.clone(),
        });
    }
    let settings = RunSettings {
        format: RunSettings::FORMAT,
        model_blake3: hash_file(&job.model)?,
        dataset_fingerprint: fingerprint.to_string(),
        dataset_len: n_all,
        method: method.spec.clone(),
        target: job.target.clone(),
        batch_size: job.batch_size,
        limit: n,
        compression: job.compression,
        record: job.record.clone(),
    };
    let prepared = AttributionRun::prepare(RunSpec {
        output: job.output.clone(),
        shard: job.shard,
        settings,
        model_name: file_name(&job.model),
        dataset_name: file_name(&job.dataset),
        label_source,
        force: job.force,
    })?;
    Ok(match prepared {
        Prepared::AlreadyComplete { output } => Err(AttributeOutcome::AlreadyComplete { output }),
        Prepared::Ready(run) => Ok((*run, label_source)),
    })
}

fn load_model(job: &AttributeJob) -> Result<Model, JobError> {
    Model::load(&job.model).map_err(|source| JobError::LoadModel {
        path: job.model.clone(),
        source,
    })
}

/// The explainer of `method` on `model`, recording `record`'s nodes.
fn explainer<'m>(
    model: &'m Model,
    method: &Method,
    record: Option<&RecordSettings>,
) -> Explainer<'m> {
    let mut explainer = Explainer::new(model).with_canonizers(method.built.canonize);
    if let Some(c) = &method.built.composite {
        explainer = explainer.with_composite(c.clone());
    }
    if let Some(r) = record {
        explainer = explainer.with_concepts(Concepts {
            conditions: Vec::new(),
            parallel: Parallel::Include,
            record: Some(Record {
                patterns: r.patterns.clone(),
                mode: r.mode,
            }),
        });
    }
    explainer
}

/// Checks `job.record` on the model before the run is set up (so that a pattern matching
/// nothing leaves no work directory behind): the method is gradient-based and every pattern
/// matches a node with a computed output, for inputs of `shapes` (one sample each).
fn check_record(
    job: &AttributeJob,
    method: &Method,
    model: &Model,
    shapes: &[Vec<usize>],
) -> Result<(), JobError> {
    let Some(record) = &job.record else {
        return Ok(());
    };
    if record.top_k == 0 {
        return Err(JobError::RecordTopK);
    }
    let source = if !matches!(method.built.attributor, Attributor::Gradient) {
        AttributionError::Invalid(format!(
            "{} perturbs a float input; recording relevance at nodes takes the gradient or an \
             LRP composite",
            method.built.attributor.name()
        ))
    } else {
        match explainer(model, method, Some(record)).rule_table_for(shapes) {
            Ok(_) => return Ok(()),
            Err(e) => e,
        }
    };
    Err(JobError::Record { source })
}

/// One batch's recorded nodes as the store lays them out: the quantities `prism explain
/// --record` writes (`Recorded::top_channels` for the top tables).
fn record_part(
    recorded: &[Recorded<f32>],
    settings: &RecordSettings,
) -> (RecordLayout, Vec<RecordRows>) {
    let layout = RecordLayout {
        mode: settings.mode,
        top_k: settings.top_k,
        nodes: recorded
            .iter()
            .map(|r| RecordNodeLayout {
                node: r.node.clone(),
                tensor: r.tensor.clone(),
                sample_shape: r.sample_shape.clone(),
            })
            .collect(),
    };
    let rows = recorded
        .iter()
        .map(|r| {
            let (channels, share) = r.top_channels(settings.top_k);
            RecordRows {
                relevance: r.relevance.data().to_vec(),
                activation: r.activation.data().to_vec(),
                top_channels: channels.into_iter().map(i64::from).collect(),
                top_share: share,
            }
        })
        .collect();
    (layout, rows)
}

/// Attributes every sample of `job.dataset` (or of its shard) with `method` and writes the
/// attribution file, resuming an interrupted run with the same settings.
pub fn attribute_dataset(
    job: &AttributeJob,
    method: &Method,
    progress: &mut dyn RunProgress,
) -> Result<AttributeOutcome, JobError> {
    if job.batch_size == 0 {
        return Err(JobError::BatchSize);
    }
    if let Some(l) = job.compression.filter(|&l| l > 9) {
        return Err(JobError::Compression(l));
    }
    let target: TargetSpec = job.target.parse().map_err(JobError::Target)?;
    if job.dataset_options.kind.is_none() && TokenDataset::is_token_dataset(&job.dataset) {
        return attribute_tokens(job, method, target, progress);
    }
    let dataset = Dataset::open(&job.dataset, &job.dataset_options).map_err(|source| {
        JobError::OpenDataset {
            path: job.dataset.clone(),
            source,
        }
    })?;
    let labels = dataset.labels().map(|l| l.iter().all(Option::is_some));
    let input_shape = dataset.input_shape().to_vec();
    // Recording is checked on the model first; without it, the model is loaded only when
    // there is work to do.
    let early = match &job.record {
        Some(_) => {
            let model = load_model(job)?;
            let mut one = vec![1];
            one.extend_from_slice(&input_shape);
            check_record(job, method, &model, &[one])?;
            Some(model)
        }
        None => None,
    };
    let (mut run, label_source) = match prepare_run(
        job,
        method,
        target,
        labels,
        dataset.len(),
        dataset.fingerprint(),
    )? {
        Ok(run) => run,
        Err(done) => return Ok(done),
    };
    let pending = run.pending();
    let todo_indices: Vec<usize> = pending.iter().flat_map(|b| b.samples.clone()).collect();

    let model = match early {
        Some(m) => m,
        None => load_model(job)?,
    };
    model.set_nonfinite(NonFinite::allow_if(job.allow_nonfinite));
    let explainer = explainer(&model, method, job.record.as_ref());
    progress.started(&RunStarted {
        output: run.output().to_path_buf(),
        work_dir: run.work_dir().to_path_buf(),
        resumed: run.resumed(),
        samples: run.samples().len(),
        done: run.done_samples(),
    });
    let stream = dataset.batches(todo_indices, job.batch_size, job.prefetch);
    for (done, (pending, batch)) in pending.iter().zip(stream).enumerate() {
        let batch = batch.map_err(|source| JobError::ReadBatch {
            path: job.dataset.clone(),
            source,
        })?;
        let k = batch.indices.len();
        let (x, t, batch) = batch_input(
            &job.dataset,
            batch,
            &input_shape,
            target,
            job.allow_nonfinite,
        )?;
        let (first, last) = (pending.samples.start, pending.samples.end - 1);
        let a = explainer
            .attribute(&x, &t, method.built.seed, &method.built.attributor)
            .map_err(|source| attribute_error(first, last, &batch.indices, source))?;
        let labels: Vec<u32> = match label_source {
            LabelSource::Dataset => batch.labels.iter().map(|l| l.unwrap_or(0)).collect(),
            LabelSource::Predicted => a.targets.iter().map(|&t| t as u32).collect(),
        };
        let record = job.record.as_ref().map(|r| record_part(&a.recorded, r));
        run.write_part(
            pending.part,
            &PartData {
                // the relevance's own shape: the input's, or a class activation map's 1 × H × W
                sample_shape: &a.relevance.shape()[1..],
                relevance: a.relevance.data(),
                prediction: a.output.data(),
                labels: &labels,
                record: record
                    .as_ref()
                    .map(|(layout, nodes)| PartRecord { layout, nodes }),
            },
        )?;
        if progress.part_written(k).is_break() {
            return Ok(AttributeOutcome::Stopped {
                output: run.output().to_path_buf(),
                parts: done + 1,
            });
        }
    }
    progress.computed();
    let samples = run.samples().len();
    let output = run.finish()?;
    Ok(AttributeOutcome::Written { output, samples })
}

/// [`attribute_dataset`] for a token dataset (`prism_store::TokenDataset`): the model's inputs
/// are fed by name from the dataset's arrays, and the relevance is read off the embedding
/// lookup's output, per token (`[N, T]` in the attribution file). Gradient-based methods only
/// (the gradient and every LRP composite), as for `prism explain --input`.
fn attribute_tokens(
    job: &AttributeJob,
    method: &Method,
    target: TargetSpec,
    progress: &mut dyn RunProgress,
) -> Result<AttributeOutcome, JobError> {
    let open_error = |source| JobError::OpenDataset {
        path: job.dataset.clone(),
        source,
    };
    let dataset = TokenDataset::open(&job.dataset).map_err(open_error)?;
    let labels = dataset.labels().map(|l| l.iter().all(Option::is_some));
    let positions = dataset.positions();
    let early = match &job.record {
        Some(_) => {
            let model = load_model(job)?;
            let shapes = vec![vec![1, positions]; model.graph().inputs.len()];
            check_record(job, method, &model, &shapes)?;
            Some(model)
        }
        None => None,
    };
    let (mut run, label_source) = match prepare_run(
        job,
        method,
        target,
        labels,
        dataset.len(),
        dataset.fingerprint(),
    )? {
        Ok(run) => run,
        Err(done) => return Ok(done),
    };
    let model = match early {
        Some(m) => m,
        None => load_model(job)?,
    };
    // which dataset array feeds each graph input (extra arrays, e.g. a mask the model does
    // not take, are not fed)
    let held: Vec<String> = dataset
        .input_names()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let graph = model.graph();
    let feeds: Vec<usize> = (0..graph.inputs.len())
        .map(|i| {
            let name = &graph.value(graph.inputs[i]).name;
            held.iter()
                .position(|h| h == name)
                .ok_or_else(|| JobError::TokenInput {
                    path: job.dataset.clone(),
                    input: name.clone(),
                    held: held.clone(),
                })
        })
        .collect::<Result<_, _>>()?;
    model.set_nonfinite(NonFinite::allow_if(job.allow_nonfinite));
    let explainer = explainer(&model, method, job.record.as_ref());
    progress.started(&RunStarted {
        output: run.output().to_path_buf(),
        work_dir: run.work_dir().to_path_buf(),
        resumed: run.resumed(),
        samples: run.samples().len(),
        done: run.done_samples(),
    });
    let labels_all = dataset.labels().map(<[Option<u32>]>::to_vec);
    for (done, pending) in run.pending().iter().enumerate() {
        let indices: Vec<usize> = pending.samples.clone().collect();
        let k = indices.len();
        let read_error = |source| JobError::ReadBatch {
            path: job.dataset.clone(),
            source,
        };
        let arrays = dataset.read_inputs(&indices).map_err(read_error)?;
        let inputs = feeds
            .iter()
            .enumerate()
            .map(|(i, &a)| {
                model.input_tensor::<f32>(
                    i,
                    InputValues::Ints {
                        shape: vec![k, positions],
                        data: arrays[a].1.clone(),
                    },
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let batch_labels: Vec<Option<u32>> = indices
            .iter()
            .map(|&i| labels_all.as_ref().and_then(|l| l[i]))
            .collect();
        let t = match target {
            TargetSpec::Predicted => Target::Predicted,
            TargetSpec::Class(c) => Target::Class(c),
            // Every sample has a label (checked above).
            TargetSpec::Label => Target::PerSample(
                batch_labels
                    .iter()
                    .map(|l| l.map_or(0, |v| v as usize))
                    .collect(),
            ),
        };
        let (first, last) = (pending.samples.start, pending.samples.end - 1);
        let a = explainer
            .attribute_inputs(
                inputs,
                &AttributeAt::Auto,
                &t,
                method.built.seed,
                &method.built.attributor,
            )
            .map_err(|source| attribute_error(first, last, &indices, source))?;
        let relevance = a.per_token.unwrap_or(a.relevance);
        let labels: Vec<u32> = match label_source {
            LabelSource::Dataset => batch_labels.iter().map(|l| l.unwrap_or(0)).collect(),
            LabelSource::Predicted => a.targets.iter().map(|&t| t as u32).collect(),
        };
        let record = job.record.as_ref().map(|r| record_part(&a.recorded, r));
        run.write_part(
            pending.part,
            &PartData {
                sample_shape: &relevance.shape()[1..],
                relevance: relevance.data(),
                prediction: a.output.data(),
                labels: &labels,
                record: record
                    .as_ref()
                    .map(|(layout, nodes)| PartRecord { layout, nodes }),
            },
        )?;
        if progress.part_written(k).is_break() {
            return Ok(AttributeOutcome::Stopped {
                output: run.output().to_path_buf(),
                parts: done + 1,
            });
        }
    }
    progress.computed();
    let samples = run.samples().len();
    let output = run.finish()?;
    Ok(AttributeOutcome::Written { output, samples })
}
