//! The concept options of `explain` and `attribute`: recording relevance at nodes
//! (`--record`) and CRP conditions (`--condition`, `explain` only).

use prism_attribution::{Concepts, Condition, Parallel, Record, RecordMode};

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
