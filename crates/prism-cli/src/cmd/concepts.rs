//! The concept options of `explain` and `attribute` (recording relevance at nodes, `--record`;
//! CRP conditions, `--condition`, `explain` only) and `prism concepts` (relevance and
//! activation maximisation over a dataset, `prism_jobs::concepts_dataset`).

use std::path::PathBuf;

use prism_attribution::{Concepts, Condition, Parallel, Record, RecordMode};
use prism_jobs::{concepts_dataset, ConceptsJob, ConceptsOutcome};

use super::dataset::DatasetArgs;
use super::method::MethodArgs;

/// `--record NODE_GLOB`, `--record-mode`, `--record-top-k`.
#[derive(clap::Args, Debug, Clone)]
pub struct RecordArgs {
    /// Record the relevance and activation at the outputs of these nodes (ONNX node names as
    /// `prism inspect --shapes` prints them; globs: `*` matches any characters, `/` included,
    /// e.g. '/features/*/Conv'; repeatable). `explain` writes them beside the output,
    /// `attribute` into the output's /record group (see --help).
    #[arg(long, value_name = "NODE_GLOB")]
    pub record: Vec<String>,
    /// Keep recorded tensors per channel (summed over space: rows × C) or whole (maps).
    #[arg(long, value_enum, default_value_t = RecordModeArg::Channels)]
    pub record_mode: RecordModeArg,
    /// Channels per sample in the recorded nodes' top-concept tables.
    #[arg(long, default_value_t = 10, value_name = "K")]
    pub record_top_k: usize,
}

/// `--record-mode`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordModeArg {
    Channels,
    Maps,
}

impl RecordArgs {
    /// The record settings, `None` without `--record`.
    pub fn build(&self) -> Option<Record> {
        (!self.record.is_empty()).then(|| Record {
            patterns: self.record.clone(),
            mode: match self.record_mode {
                RecordModeArg::Channels => RecordMode::Channels,
                RecordModeArg::Maps => RecordMode::Maps,
            },
        })
    }
}

/// `--condition`, `--exclude-parallel`.
#[derive(clap::Args, Debug, Clone)]
pub struct ConditionArgs {
    /// A CRP condition: keep only these channels of LAYER's output (an ONNX node name as
    /// `prism inspect --shapes` prints it) when relevance passes it, e.g.
    /// '/features/features.28/Conv:3,7' or '…:0-15'; several layers: 'L1:3;L2:0,1'. Repeat
    /// for several conditions: each sample then gives one row per condition (sample n,
    /// condition k → row n·K + k). The target is --target's.
    #[arg(long, value_name = "LAYER:ch,ch", allow_hyphen_values = true)]
    pub condition: Vec<String>,
    /// Drop relevance that reaches a conditioned layer's inputs around the layer (a residual
    /// connection's skip path): the heatmap holds the concept's sole contribution
    /// (zennit-crp's CondAttribution default, exclude_parallel=True). Without it, such paths
    /// carry their relevance on unconditioned (exclude_parallel=False, as zennit-crp's
    /// FeatureVisualization).
    #[arg(long)]
    pub exclude_parallel: bool,
}

impl ConditionArgs {
    /// The parsed conditions.
    pub fn conditions(&self) -> anyhow::Result<Vec<Condition>> {
        Ok(self
            .condition
            .iter()
            .map(|c| Condition::parse(c))
            .collect::<Result<_, _>>()?)
    }

    /// The concept settings with `record`.
    pub fn build(&self, record: Option<Record>) -> anyhow::Result<Concepts> {
        if self.exclude_parallel && self.condition.is_empty() {
            anyhow::bail!("--exclude-parallel needs at least one --condition");
        }
        Ok(Concepts {
            conditions: self.conditions()?,
            parallel: if self.exclude_parallel {
                Parallel::Exclude
            } else {
                Parallel::Include
            },
            record,
        })
    }
}

/// Find, for every channel ("concept") of the chosen layers, the dataset samples that make it
/// most relevant (relevance maximisation) and most active (activation maximisation), with
/// receptive-field crops: zennit-crp's FeatureVisualization, as a resumable, sharded job.
///
/// Each sample is explained for its target (the relevance seeded with the target's logit, as
/// zennit-crp) with the composite (default epsilon-plus-flat); the relevance and activation at
/// the layers' outputs are summed over space per channel. A channel's best samples are those
/// with the largest share R_c / (Σ|R_c'| + 1e-10) (zennit-crp's abs_norm), ties by sample
/// number. With --crops N, for the first N of them the single neuron at the channel map's
/// maximum is explained down to the input (its activation as relevance), and the crop is the
/// bounding box of that heatmap, blurred and thresholded as zennit-crp draws it.
///
/// The output (HDF5, see docs/formats.md "concepts.h5"): per layer, every sample's channel
/// relevance and activation, the RelMax and ActMax tables (samples, scores, positions, crop
/// boxes), and with --sample-heatmaps M each sample's conditional (CRP) heatmaps for its M most
/// relevant channels. `prism project --concepts` adds it to a viewer project.
///
/// Resumable (killed, the same command continues; crops are kept per layer) and sharded
/// (--shard I/N, then `prism merge`), like `prism attribute`.
///
/// Examples:
///
///   prism concepts --model vgg16.onnx --dataset imagenet-val/ --resize 256 --crop 224 \
///       --normalize imagenet --layers '/features/features.2[468]/Conv' --output concepts.h5
///
///   prism concepts --model m.onnx --dataset data.h5 --layers '*/conv2/Conv' \
///       --crops 8 --sample-heatmaps 3 --output concepts.h5
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ConceptsArgs {
    /// The ONNX model file.
    #[arg(long)]
    pub model: PathBuf,
    /// The dataset: HDF5 file, image folder or .npy array.
    #[arg(long)]
    pub dataset: PathBuf,
    /// The concepts file to write (.h5); `{shard}` is replaced by the shard.
    #[arg(long, short)]
    pub output: PathBuf,
    /// The layers: ONNX node names as `prism inspect --shapes` prints them, or globs (`*`
    /// matches any characters, `/` included); repeatable. Their outputs need a channel axis.
    #[arg(long, required = true, value_name = "GLOB")]
    pub layers: Vec<String>,
    #[command(flatten)]
    pub data: DatasetArgs,
    #[command(flatten)]
    pub method: MethodArgs,
    /// Target class: `label` (the dataset's labels), `predicted` (arg-max) or a class number.
    #[arg(long, default_value = "label")]
    pub target: String,
    /// Reference samples kept per channel, by relevance and by activation (zennit-crp keeps
    /// 40).
    #[arg(long, default_value_t = 40, value_name = "N")]
    pub top_n: usize,
    /// Receptive-field crops computed per channel and mode (the best N references; zennit-crp
    /// shows 8). Each is a forward and a backward pass of its own: layers × channels × 2 × N
    /// passes (VGG16's last three convolutions, N = 8: 24 576), far more than the dataset's
    /// own pass for a large model. 0 (default): none; the viewer then shows whole references.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub crops: usize,
    /// Conditional heatmaps stored per sample and layer, for its M most relevant channels
    /// (what the viewer's concept panel shows); each costs a full backward pass. 0: none.
    #[arg(long, default_value_t = 0, value_name = "M")]
    pub sample_heatmaps: usize,
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
    /// Batches decoded ahead of the model.
    #[arg(long, default_value_t = 2)]
    pub prefetch: usize,
    /// Start over: discard an interrupted run and overwrite an existing output.
    #[arg(long)]
    pub force: bool,
    /// Accept samples holding NaN or ±Inf (refused by default).
    #[arg(long)]
    pub allow_nonfinite: bool,
}

/// Runs `prism concepts`.
pub fn run(args: &ConceptsArgs) -> anyhow::Result<()> {
    if args.batch_size == 0 {
        anyhow::bail!("--batch-size must be at least 1");
    }
    if args.top_n == 0 {
        anyhow::bail!("--top-n must be at least 1");
    }
    if args.crops > args.top_n {
        anyhow::bail!(
            "--crops {} is more than the --top-n {} references kept",
            args.crops,
            args.top_n
        );
    }
    let mut method_args = args.method.clone();
    if method_args.composite.is_none() && method_args.composite_file.is_none() {
        method_args.composite = Some("epsilon-plus-flat".into());
    }
    let (spec, built) = method_args.build()?;
    let method = prism_jobs::Method { spec, built };
    if args.target.parse::<prism_store::TargetSpec>().is_err() {
        anyhow::bail!(
            "--target must be `label`, `predicted` or a class number, got `{}`",
            args.target
        );
    }
    let shard = super::attribute::resolve_shard(args.shard.as_deref(), args.shards)?;
    if let Some((s, from)) = shard {
        eprintln!("shard {}/{} (from {from})", s.index, s.count);
    }
    let job = ConceptsJob {
        model: args.model.clone(),
        dataset: args.dataset.clone(),
        dataset_options: args.data.options()?,
        output: args.output.clone(),
        layers: args.layers.clone(),
        target: args.target.clone(),
        batch_size: args.batch_size,
        shard: shard.map(|(s, _)| s),
        limit: args.limit,
        top_n: args.top_n,
        crops: args.crops,
        sample_heatmaps: args.sample_heatmaps,
        prefetch: args.prefetch,
        force: args.force,
        allow_nonfinite: args.allow_nonfinite,
    };
    let mut bar = super::attribute::Bar::named("concepts");
    match concepts_dataset(&job, &method, &mut bar).map_err(super::attribute::cli_error)? {
        ConceptsOutcome::AlreadyComplete { output } => eprintln!(
            "{} is already complete for these settings; nothing to do",
            output.display()
        ),
        ConceptsOutcome::Written {
            output,
            samples,
            layers,
        } => eprintln!(
            "wrote {} ({samples} samples, {} layers: {})",
            output.display(),
            layers.len(),
            layers.join(", ")
        ),
        ConceptsOutcome::Stopped { .. } => {}
    }
    Ok(())
}
