//! `prism merge`: joins the shards of a `prism attribute --shard` run into one attribution file.

use std::path::PathBuf;

use anyhow::{bail, Context};
use prism_store::{
    AttrValue, AttributionFile, AttributionLayout, AttributionWriter, BatchLabels, LabelLayout,
    Labels,
};

/// Join the shards of a sharded `prism attribute` run into one attribution file.
///
/// Every shard must be complete and come from the same run (same model, dataset, method and
/// settings); shards that overlap or leave samples out are refused, naming the files. The result
/// equals the file an unsharded run would have written.
///
/// Example:
///
///   prism merge attr.shard-000-of-002.h5 attr.shard-001-of-002.h5 --output attr.h5
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct MergeArgs {
    /// The shard files.
    #[arg(required = true)]
    pub shards: Vec<PathBuf>,
    /// The merged attribution file.
    #[arg(long, short)]
    pub output: PathBuf,
    /// Overwrite an existing output.
    #[arg(long)]
    pub force: bool,
}

fn str_attr(f: &AttributionFile, name: &str) -> anyhow::Result<Option<String>> {
    Ok(f.attr(name)?.and_then(|v| v.as_str().map(str::to_string)))
}

fn int_attr(f: &AttributionFile, name: &str) -> anyhow::Result<Option<i64>> {
    Ok(match f.attr(name)? {
        Some(AttrValue::Int(v)) => Some(v),
        _ => None,
    })
}

/// Runs `prism merge`.
pub fn run(args: &MergeArgs) -> anyhow::Result<()> {
    if args.output.exists() && !args.force {
        bail!(
            "{} exists; pass --force to overwrite it",
            args.output.display()
        );
    }
    if args.shards.iter().any(|s| s == &args.output) {
        bail!("--output must differ from the shard files");
    }
    let mut files = Vec::with_capacity(args.shards.len());
    for p in &args.shards {
        let f =
            AttributionFile::open(p).with_context(|| format!("opening shard {}", p.display()))?;
        if int_attr(&f, "prism_complete")? != Some(1) {
            bail!(
                "{} is not a complete Prism attribution file (an interrupted run? rerun \
                 `prism attribute` for that shard with the same arguments)",
                p.display()
            );
        }
        files.push(f);
    }
    let base = str_attr(&files[0], "prism_base_key")?;
    let total = int_attr(&files[0], "prism_total_samples")?;
    let (Some(base), Some(total)) = (base, total) else {
        bail!(
            "{} lacks Prism's run attributes; only files written by `prism attribute` can be merged",
            args.shards[0].display()
        );
    };
    let total = usize::try_from(total).context("bad prism_total_samples")?;
    let mut owner: Vec<Option<usize>> = vec![None; total];
    for (fi, f) in files.iter().enumerate() {
        if str_attr(f, "prism_base_key")?.as_deref() != Some(base.as_str()) {
            bail!(
                "{} comes from another run than {} (model, dataset, method or settings differ)",
                args.shards[fi].display(),
                args.shards[0].display()
            );
        }
        let Some(index) = f.index() else {
            bail!("{} has no `index` dataset", args.shards[fi].display());
        };
        for &i in index {
            let i = i as usize;
            if i >= total {
                bail!(
                    "{} holds sample {i}, beyond the run's {total} samples",
                    args.shards[fi].display()
                );
            }
            if let Some(other) = owner[i] {
                bail!(
                    "{} and {} overlap (both hold sample {i}); merge each shard once",
                    args.shards[other].display(),
                    args.shards[fi].display()
                );
            }
            owner[i] = Some(fi);
        }
    }
    let missing = owner.iter().filter(|o| o.is_none()).count();
    if missing > 0 {
        let first = owner.iter().position(Option::is_none).unwrap_or(0);
        let count = int_attr(&files[0], "prism_shard_count")?.unwrap_or(0);
        bail!(
            "the shards leave {missing} of {total} samples out (the first is sample {first}); \
             the run has {count} shards and {} were given",
            files.len()
        );
    }
    // Rows in sample order: shards are contiguous slices, so order the files by first sample.
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by_key(|&fi| files[fi].index().and_then(|ix| ix.first().copied()));
    let first = &files[order[0]];
    let n_outputs = first.prediction_shape().get(1).copied().unwrap_or(1);
    let mut w = AttributionWriter::create(
        &args.output,
        AttributionLayout {
            n_samples: total,
            sample_shape: first.sample_shape().to_vec(),
            n_outputs,
            labels: LabelLayout::Single,
            with_index: true,
            compression: settings_compression(first)?,
        },
    )?;
    let mut offset = 0;
    for &fi in &order {
        let f = &files[fi];
        let n = f.n_samples();
        let Labels::Single(labels) = f.labels() else {
            bail!("{} has n-hot labels", args.shards[fi].display());
        };
        let index = f.index().unwrap_or_default();
        if index.windows(2).any(|w| w[0] >= w[1]) {
            bail!(
                "{}'s `index` is not ascending; it was not written by `prism attribute`",
                args.shards[fi].display()
            );
        }
        // Copy in blocks to bound memory.
        let block = (64 << 20) / (4 * f.sample_len().max(1)).max(1);
        let block = block.max(1);
        for a in (0..n).step_by(block) {
            let b = (a + block).min(n);
            let rows: Vec<usize> = (a..b).collect();
            let attribution = f.read_rows(&rows)?;
            let prediction = f.read_prediction_rows(a, b)?;
            w.write_batch(
                offset + a,
                &attribution,
                &prediction,
                &BatchLabels::Single(&labels[a..b]),
                Some(&index[a..b]),
            )?;
        }
        offset += n;
    }
    // Provenance: the first shard's, made that of the unsharded run.
    for name in [
        "prism_version",
        "prism_format_version",
        "prism_base_key",
        "prism_settings",
        "prism_model",
        "prism_model_blake3",
        "prism_dataset",
        "prism_dataset_fingerprint",
        "prism_method",
        "prism_target",
        "prism_label_source",
        "prism_total_samples",
    ] {
        if let Some(v) = first.attr(name)? {
            w.set_attr(name, &v)?;
        }
    }
    w.set_attr("prism_run_key", &AttrValue::Str(base))?;
    w.set_attr("prism_shard_index", &AttrValue::Int(0))?;
    w.set_attr("prism_shard_count", &AttrValue::Int(1))?;
    w.set_attr("prism_complete", &AttrValue::Int(1))?;
    if args.force && args.output.exists() {
        std::fs::remove_file(&args.output)
            .with_context(|| format!("cannot replace {}", args.output.display()))?;
    }
    w.finish()?;
    eprintln!(
        "merged {} shards into {} ({total} samples)",
        files.len(),
        args.output.display()
    );
    Ok(())
}

fn settings_compression(f: &AttributionFile) -> anyhow::Result<Option<u8>> {
    let Some(s) = str_attr(f, "prism_settings")? else {
        return Ok(None);
    };
    let v: serde_json::Value = serde_json::from_str(&s).context("bad prism_settings")?;
    Ok(v.get("compression")
        .and_then(|c| c.as_u64())
        .map(|c| c.min(9) as u8))
}
