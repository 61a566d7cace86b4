//! `prism attribute`: attributions of a whole dataset into a ViRelAy attribution file,
//! streaming, resumable and sharded.
//!
//! The work is `prism_jobs::attribute_dataset` over the run protocol of `prism_store::run`
//! (work directory, lock, parts, provenance, assembly); this module parses the flags and the
//! shard (including SLURM and Kubernetes variables), draws the progress bar and words errors
//! with the flags' names.

use std::ops::ControlFlow;
use std::path::PathBuf;

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use prism_jobs::{attribute_dataset, AttributeJob, AttributeOutcome, JobError, RunProgress};
use prism_store::{RecordSettings, RunError, Shard, TargetSpec};

use super::dataset::DatasetArgs;
use super::method::MethodArgs;

/// Attribute every sample of a dataset and write a ViRelAy attribution file.
///
/// DATASET is a ViRelAy HDF5 dataset (`data`, `label`), an image folder (one sub-folder per
/// class, PNG or JPEG; resize/crop/normalise with the flags below) or a .npy array with a
/// labels file. The output has `attribution` (N×C×H×W), `prediction` (N×classes), `label` and
/// `index` (dataset sample numbers), plus provenance attributes (model hash, method, dataset
/// fingerprint, Prism version).
///
/// Resumable: killed at any point (even with kill -9), the same command continues where it
/// stopped; finished batches are kept in OUTPUT.partial/ until the file is complete. The file
/// under OUTPUT's name only ever appears complete.
///
/// Sharded: --shard I/N (0 ≤ I < N) processes the I-th of N contiguous slices; without it,
/// SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT or JOB_COMPLETION_INDEX (Kubernetes; with
/// --shards N or PRISM_SHARD_COUNT) are read. Each shard writes OUTPUT with `{shard}` replaced
/// (or `.shard-I-of-N` inserted before the extension); `prism merge` joins them.
///
/// Concepts (docs/concepts.md): --record NODE_GLOB keeps the relevance and activation at those
/// nodes' outputs, per channel (--record-mode channels, N × C) or whole (maps), with each
/// sample's --record-top-k most relevant channels and their shares, in the group /record of
/// the output (ViRelAy ignores it; docs/formats.md): the values `prism explain --record` gives
/// for the same samples and batch size. Gradient-based methods only.
///
/// Examples:
///
///   prism attribute --model vgg16.onnx --dataset imagenet-val/ --output attr.h5 \
///       --resize 256 --crop 224 --normalize imagenet --composite epsilon-plus-flat
///
///   prism attribute --model mnist.onnx --dataset mnist.h5 --output attr.h5 --target predicted
///
///   prism attribute --model m.onnx --dataset data.h5 --output attr-{shard}.h5 --shard 0/4
///   prism merge attr-*.h5 --output attr.h5
///
///   prism attribute --model vgg16.onnx --dataset images/ --output attr.h5 --resize 256 \
///       --crop 224 --normalize imagenet --composite epsilon-plus-flat --record '/features/*/Conv'
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct AttributeArgs {
    /// The ONNX model file.
    #[arg(long)]
    pub model: PathBuf,
    /// The dataset: HDF5 file, image folder or .npy array; or a token dataset (a directory
    /// with input_ids.npy and vocab.txt, see docs/datasets.md), whose relevance is written
    /// per token.
    #[arg(long)]
    pub dataset: PathBuf,
    /// The attribution file to write (.h5); `{shard}` is replaced by the shard.
    #[arg(long, short)]
    pub output: PathBuf,
    #[command(flatten)]
    pub data: DatasetArgs,
    #[command(flatten)]
    pub method: MethodArgs,
    /// Target class: `label` (the dataset's labels), `predicted` (arg-max) or a class number.
    #[arg(long, default_value = "label")]
    pub target: String,
    /// Samples per batch (also the unit of resumption).
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Process shard I of N (0-based), e.g. `2/8`.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Number of shards when the shard number comes from JOB_COMPLETION_INDEX.
    #[arg(long, value_name = "N")]
    pub shards: Option<usize>,
    /// Only the first N samples of the dataset (before sharding).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// gzip level (0–9) of the final `attribution` dataset [default: uncompressed].
    #[arg(long, value_name = "LEVEL")]
    pub compression: Option<u8>,
    /// Batches decoded ahead of the model.
    #[arg(long, default_value_t = 2)]
    pub prefetch: usize,
    /// Start over: discard an interrupted run and overwrite an existing output.
    #[arg(long)]
    pub force: bool,
    /// Attribute samples holding NaN or ±Inf (refused by default: they usually mean broken
    /// preprocessing), and accept non-finite relevance.
    #[arg(long)]
    pub allow_nonfinite: bool,
    #[command(flatten)]
    pub record: super::concepts::RecordArgs,
}

fn parse_shard(s: &str) -> anyhow::Result<Shard> {
    s.parse::<Shard>().map_err(|e| anyhow::anyhow!("--{e}"))
}

fn env_usize(name: &str) -> anyhow::Result<Option<usize>> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| anyhow::anyhow!("environment variable {name}=`{v}` is not a number")),
        _ => Ok(None),
    }
}

/// The shard from --shard (`shard`), else from SLURM array or Kubernetes indexed-job variables
/// (`shards`: --shards).
pub fn resolve_shard(
    shard: Option<&str>,
    shards: Option<usize>,
) -> anyhow::Result<Option<(Shard, &'static str)>> {
    if let Some(s) = shard {
        return Ok(Some((parse_shard(s)?, "--shard")));
    }
    if let (Some(id), Some(count)) = (
        env_usize("SLURM_ARRAY_TASK_ID")?,
        env_usize("SLURM_ARRAY_TASK_COUNT")?,
    ) {
        // Arrays may start at 1 (--array=1-8): count from SLURM_ARRAY_TASK_MIN.
        let min = env_usize("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let index = id.checked_sub(min).filter(|&i| i < count).ok_or_else(|| {
            anyhow::anyhow!(
                "SLURM_ARRAY_TASK_ID={id} is outside the array ({count} tasks from {min}); \
                 use --shard I/N"
            )
        })?;
        return Ok(Some((Shard { index, count }, "SLURM_ARRAY_TASK_ID")));
    }
    if let Some(index) = env_usize("JOB_COMPLETION_INDEX")? {
        let count = match shards {
            Some(n) => Some(n),
            None => env_usize("PRISM_SHARD_COUNT")?,
        };
        let Some(count) = count else {
            bail!(
                "JOB_COMPLETION_INDEX={index} is set but the number of shards is not: \
                 pass --shards N (the job's completions) or set PRISM_SHARD_COUNT"
            );
        };
        if index >= count {
            bail!("JOB_COMPLETION_INDEX={index} is not below the shard count {count}");
        }
        return Ok(Some((Shard { index, count }, "JOB_COMPLETION_INDEX")));
    }
    Ok(None)
}

/// Runs `prism attribute`.
pub fn run(args: &AttributeArgs) -> anyhow::Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    if matches!(args.compression, Some(l) if l > 9) {
        bail!("--compression takes a gzip level 0–9");
    }
    let (spec, built) = args.method.build()?;
    let method = prism_jobs::Method { spec, built };
    if args.target.parse::<TargetSpec>().is_err() {
        bail!(
            "--target must be `label`, `predicted` or a class number, got `{}`",
            args.target
        );
    }
    if !args.record.record.is_empty() && args.record.record_top_k == 0 {
        bail!("--record-top-k must be at least 1");
    }
    let record = args.record.build().map(|r| RecordSettings {
        patterns: r.patterns,
        mode: r.mode,
        top_k: args.record.record_top_k,
    });
    let shard = resolve_shard(args.shard.as_deref(), args.shards)?;
    if let Some((s, from)) = shard {
        eprintln!("shard {}/{} (from {from})", s.index, s.count);
    }
    let job = AttributeJob {
        model: args.model.clone(),
        dataset: args.dataset.clone(),
        dataset_options: args.data.options()?,
        output: args.output.clone(),
        target: args.target.clone(),
        batch_size: args.batch_size,
        shard: shard.map(|(s, _)| s),
        limit: args.limit,
        compression: args.compression,
        prefetch: args.prefetch,
        force: args.force,
        allow_nonfinite: args.allow_nonfinite,
        record,
    };
    match attribute_dataset(&job, &method, &mut Bar::default()).map_err(cli_error)? {
        AttributeOutcome::AlreadyComplete { output } => eprintln!(
            "{} is already complete for these settings; nothing to do",
            output.display()
        ),
        AttributeOutcome::Written { output, samples } => {
            eprintln!("wrote {} ({samples} samples)", output.display())
        }
        // The bar never asks to stop.
        AttributeOutcome::Stopped { .. } => {}
    }
    Ok(())
}

/// The library's errors, with the flags that fix them named.
pub fn cli_error(e: JobError) -> anyhow::Error {
    match e {
        JobError::NeedsLabels { path, unlabelled } => anyhow::anyhow!(
            "--target label needs a label for every sample, but {} has {}; \
             use --target predicted (or give --labels for a .npy dataset)",
            path.display(),
            if unlabelled {
                "unlabelled samples"
            } else {
                "no labels"
            }
        ),
        JobError::Run(RunError::OutputExists { path }) => anyhow::anyhow!(
            "{} exists (from other settings or not a complete Prism attribution file); \
             pass --force to overwrite it",
            path.display()
        ),
        JobError::Run(RunError::Locked { output, dir }) => anyhow::anyhow!(
            "another `prism attribute` is writing {} (its work directory {} is locked)",
            output.display(),
            dir.display()
        ),
        JobError::Run(RunError::OtherSettings { dir }) => anyhow::anyhow!(
            "{} holds an interrupted run with other settings (model, dataset, method, \
             target, batch size, limit, shard, compression or --record differ); rerun it \
             with the same arguments, or pass --force to discard it",
            dir.display()
        ),
        JobError::Run(RunError::PartsMismatch {
            dir,
            found,
            expected,
        }) => anyhow::anyhow!(
            "the parts in {} hold {found} samples, expected {expected}; rerun with --force",
            dir.display()
        ),
        JobError::RecordTopK => anyhow::anyhow!("--record-top-k must be at least 1"),
        e => e.into(),
    }
}

/// The progress bar of a dataset run (`attribute`, `concepts`).
#[derive(Default)]
pub struct Bar {
    bar: Option<ProgressBar>,
    /// The command shown before the bar (`attribute` when empty).
    what: &'static str,
}

impl Bar {
    /// A bar labelled with the command `what`.
    pub fn named(what: &'static str) -> Bar {
        Bar { bar: None, what }
    }
}

impl RunProgress for Bar {
    fn started(&mut self, run: &prism_jobs::RunStarted) {
        if run.resumed {
            eprintln!("resuming the interrupted run in {}", run.work_dir.display());
        }
        let bar = ProgressBar::new(run.samples as u64);
        let what = if self.what.is_empty() {
            "attribute"
        } else {
            self.what
        };
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{what} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} samples  {{per_sec}}  \
                 eta {{eta}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_position(run.done as u64);
        bar.reset_eta();
        self.bar = Some(bar);
    }

    fn part_written(&mut self, samples: usize) -> ControlFlow<()> {
        if let Some(bar) = &self.bar {
            bar.inc(samples as u64);
        }
        ControlFlow::Continue(())
    }

    fn computed(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn step(&mut self, what: &str) {
        eprintln!("{what}");
    }
}
