//! `prism attribute`: attributions of a whole dataset into a ViRelAy attribution file,
//! streaming, resumable and sharded.
//!
//! A run writes each finished batch as a small attribution file `part-NNNNNN.h5` in the work
//! directory `OUTPUT.partial/` (under a temporary name, renamed when complete), next to
//! `run.json`, which records the run's settings. Killed at any moment and rerun with the same
//! arguments, it skips the parts that exist. When every part is there, it copies them in order
//! into `OUTPUT` (again under a temporary name, renamed when complete, with the root attribute
//! `prism_complete = 1`) and removes the work directory. So the file under the output's name is
//! always complete, and an interrupted run never loses more than the batches in flight.

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use prism_attribution::{Explainer, Target};
use prism_model::{Model, Tensor};
use prism_store::dataset::Dataset;
use prism_store::{
    AttrValue, AttributionFile, AttributionLayout, AttributionWriter, BatchLabels, LabelLayout,
    Labels,
};
use serde::{Deserialize, Serialize};

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
/// Examples:
///
///   prism attribute --model vgg16.onnx --dataset imagenet-val/ --output attr.h5 \
///       --resize 256 --crop 224 --normalize imagenet --composite epsilon-plus-flat
///
///   prism attribute --model mnist.onnx --dataset mnist.h5 --output attr.h5 --target predicted
///
///   prism attribute --model m.onnx --dataset data.h5 --output attr-{shard}.h5 --shard 0/4
///   prism merge attr-*.h5 --output attr.h5
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct AttributeArgs {
    /// The ONNX model file.
    #[arg(long)]
    pub model: PathBuf,
    /// The dataset: HDF5 file, image folder or .npy array.
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
}

/// Which slice of the dataset a run covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

fn parse_shard(s: &str) -> anyhow::Result<Shard> {
    let bad = || anyhow::anyhow!("--shard takes I/N with 0 ≤ I < N (e.g. 0/4), got `{s}`");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (index, count) = (
        i.trim().parse::<usize>().map_err(|_| bad())?,
        n.trim().parse::<usize>().map_err(|_| bad())?,
    );
    if count == 0 || index >= count {
        return Err(bad());
    }
    Ok(Shard { index, count })
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

/// The shard from --shard, else from SLURM array or Kubernetes indexed-job variables.
fn resolve_shard(args: &AttributeArgs) -> anyhow::Result<Option<(Shard, &'static str)>> {
    if let Some(s) = &args.shard {
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
        let count = match args.shards {
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

/// The output path of a shard: `{shard}` replaced, or `.shard-I-of-N` before the extension.
fn shard_output(output: &Path, shard: Option<Shard>) -> PathBuf {
    let Some(s) = shard else {
        return output.to_path_buf();
    };
    let tag = format!("{:03}-of-{:03}", s.index, s.count);
    let text = output.to_string_lossy();
    if text.contains("{shard}") {
        return PathBuf::from(text.replace("{shard}", &tag));
    }
    let stem = output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match output.extension() {
        Some(ext) => format!("{stem}.shard-{tag}.{}", ext.to_string_lossy()),
        None => format!("{stem}.shard-{tag}"),
    };
    output.with_file_name(name)
}

/// The contiguous slice `[lo, hi)` of `n` samples that a shard covers: whole batches of the
/// unsharded run, so that every sample is computed in the same batch as without sharding and
/// merged shards equal the unsharded file bit for bit (batch composition changes rounding).
pub fn shard_range(n: usize, batch_size: usize, shard: Option<Shard>) -> (usize, usize) {
    let Some(s) = shard else {
        return (0, n);
    };
    let batches = n.div_ceil(batch_size.max(1));
    let (a, b) = (
        s.index * batches / s.count,
        (s.index + 1) * batches / s.count,
    );
    ((a * batch_size).min(n), (b * batch_size).min(n))
}

/// blake3 of a file's bytes, streamed.
pub fn hash_file(path: &Path) -> anyhow::Result<String> {
    let mut f = fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().to_hex().to_string())
}

/// Everything that determines a run's result. Equal settings ⇒ the same output file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub format: u32,
    pub model_blake3: String,
    pub dataset_fingerprint: String,
    pub dataset_len: usize,
    pub method: String,
    pub target: String,
    pub batch_size: usize,
    pub limit: usize,
    pub compression: Option<u8>,
}

impl Settings {
    /// Key of the unsharded run (and of merged shards).
    pub fn base_key(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        blake3::hash(json.as_bytes()).to_hex().to_string()
    }

    /// Key of this shard's run.
    pub fn run_key(&self, shard: Option<Shard>) -> String {
        match shard {
            None => self.base_key(),
            Some(s) => {
                let t = format!("{}:{}/{}", self.base_key(), s.index, s.count);
                blake3::hash(t.as_bytes()).to_hex().to_string()
            }
        }
    }
}

/// `run.json` in the work directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RunRecord {
    run_key: String,
    settings: Settings,
    shard: Option<Shard>,
    samples: usize,
}

fn work_dir(output: &Path) -> PathBuf {
    let mut s = output.as_os_str().to_owned();
    s.push(".partial");
    PathBuf::from(s)
}

fn part_path(dir: &Path, j: usize) -> PathBuf {
    dir.join(format!("part-{j:06}.h5"))
}

/// Removes the temporary files of writers killed before they finished (`.NAME.partial-PID`).
fn remove_stale_temps(dir: &Path, name_prefix: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!(".{name_prefix}")) && name.contains(".partial-") {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Writes `text` to `path` atomically (temporary file, then rename).
fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The complete-run key of an existing output file, if it is a complete Prism file.
fn complete_key(path: &Path) -> Option<String> {
    let f = AttributionFile::open(path).ok()?;
    match f.attr("prism_complete").ok()?? {
        AttrValue::Int(1) => {}
        _ => return None,
    }
    f.attr("prism_run_key")
        .ok()?
        .and_then(|v| v.as_str().map(str::to_string))
}

/// Runs `prism attribute`.
pub fn run(args: &AttributeArgs) -> anyhow::Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    if matches!(args.compression, Some(l) if l > 9) {
        bail!("--compression takes a gzip level 0–9");
    }
    let (spec, method) = args.method.build()?;
    let target_mode = match args.target.as_str() {
        "label" | "labels" => TargetMode::Label,
        "predicted" => TargetMode::Predicted,
        t => TargetMode::Class(t.parse().map_err(|_| {
            anyhow::anyhow!("--target must be `label`, `predicted` or a class number, got `{t}`")
        })?),
    };
    let options = args.data.options()?;
    let dataset = Dataset::open(&args.dataset, &options)
        .with_context(|| format!("opening dataset {}", args.dataset.display()))?;
    let label_source = match dataset.labels() {
        Some(l) if l.iter().all(Option::is_some) => "dataset",
        _ => "predicted",
    };
    if target_mode == TargetMode::Label && label_source != "dataset" {
        bail!(
            "--target label needs a label for every sample, but {} has {}; \
             use --target predicted (or give --labels for a .npy dataset)",
            args.dataset.display(),
            if dataset.labels().is_some() {
                "unlabelled samples"
            } else {
                "no labels"
            }
        );
    }
    let n_all = dataset.len();
    let n = args.limit.map_or(n_all, |l| l.min(n_all));
    if n == 0 {
        bail!("{} has no samples to attribute", args.dataset.display());
    }
    let shard = resolve_shard(args)?;
    if let Some((s, from)) = shard {
        eprintln!("shard {}/{} (from {from})", s.index, s.count);
    }
    let shard = shard.map(|(s, _)| s);
    let (lo, hi) = shard_range(n, args.batch_size, shard);
    if lo == hi {
        bail!(
            "shard {}/{} of {n} samples in batches of {} is empty; use fewer shards",
            shard.map_or(0, |s| s.index),
            shard.map_or(1, |s| s.count),
            args.batch_size
        );
    }
    let output = shard_output(&args.output, shard);
    let settings = Settings {
        format: 1,
        model_blake3: hash_file(&args.model)?,
        dataset_fingerprint: dataset.fingerprint().to_string(),
        dataset_len: n_all,
        method: spec.to_string(),
        target: args.target.clone(),
        batch_size: args.batch_size,
        limit: n,
        compression: args.compression,
    };
    let run_key = settings.run_key(shard);

    if output.exists() {
        if args.force {
            fs::remove_file(&output)
                .with_context(|| format!("cannot remove {}", output.display()))?;
        } else if complete_key(&output).as_deref() == Some(run_key.as_str()) {
            eprintln!(
                "{} is already complete for these settings; nothing to do",
                output.display()
            );
            return Ok(());
        } else {
            bail!(
                "{} exists (from other settings or not a complete Prism attribution file); \
                 pass --force to overwrite it",
                output.display()
            );
        }
    }
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }

    // The work directory, locked for the run's duration.
    let dir = work_dir(&output);
    if args.force && dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let lock = fs::File::create(dir.join(".lock"))
        .with_context(|| format!("cannot create a lock in {}", dir.display()))?;
    if !try_lock(&lock) {
        bail!(
            "another `prism attribute` is writing {} (its work directory {} is locked)",
            output.display(),
            dir.display()
        );
    }
    let record = RunRecord {
        run_key: run_key.clone(),
        settings: settings.clone(),
        shard,
        samples: hi - lo,
    };
    let record_path = dir.join("run.json");
    match fs::read_to_string(&record_path) {
        Ok(text) => {
            let old: Option<RunRecord> = serde_json::from_str(&text).ok();
            if old.as_ref().map(|r| &r.run_key) != Some(&run_key) {
                bail!(
                    "{} holds an interrupted run with other settings (model, dataset, method, \
                     target, batch size, limit, shard or compression differ); rerun it with \
                     the same arguments, or pass --force to discard it",
                    dir.display()
                );
            }
            eprintln!("resuming the interrupted run in {}", dir.display());
        }
        Err(_) => write_atomic(&record_path, &serde_json::to_string_pretty(&record)?)?,
    }
    remove_stale_temps(&dir, "part-");
    let out_name = output
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some(parent) = output.parent() {
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        remove_stale_temps(parent, &out_name);
    }

    let indices: Vec<usize> = (lo..hi).collect();
    let batches: Vec<&[usize]> = indices.chunks(args.batch_size).collect();
    let done: BTreeSet<usize> = (0..batches.len())
        .filter(|&j| part_path(&dir, j).exists())
        .collect();
    let todo: Vec<usize> = (0..batches.len()).filter(|j| !done.contains(j)).collect();
    let todo_indices: Vec<usize> = todo.iter().flat_map(|&j| batches[j].to_vec()).collect();

    let model =
        Model::load(&args.model).with_context(|| format!("loading {}", args.model.display()))?;
    let mut explainer = Explainer::new(&model).with_canonizers(method.canonize);
    if let Some(c) = method.composite {
        explainer = explainer.with_composite(c);
    }
    let bar = ProgressBar::new((hi - lo) as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "attribute [{elapsed_precise}] {wide_bar} {pos}/{len} samples  {per_sec}  eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(done.iter().map(|&j| batches[j].len() as u64).sum());
    bar.reset_eta();
    let input_shape = dataset.input_shape().to_vec();
    let stream = dataset.batches(todo_indices, args.batch_size, args.prefetch);
    for (&j, batch) in todo.iter().zip(stream) {
        let batch = batch.with_context(|| format!("reading {}", args.dataset.display()))?;
        let k = batch.indices.len();
        let mut shape = vec![k];
        shape.extend_from_slice(&input_shape);
        let x = Tensor::new(shape, batch.data)?;
        let target = match target_mode {
            TargetMode::Predicted => Target::Predicted,
            TargetMode::Class(c) => Target::Class(c),
            TargetMode::Label => Target::PerSample(
                batch
                    .labels
                    .iter()
                    .map(|l| l.map_or(0, |v| v as usize))
                    .collect(),
            ),
        };
        let (first, last) = (batch.indices[0], batch.indices[k - 1]);
        let a = explainer
            .attribute(&x, &target, method.seed, &method.attributor)
            .with_context(|| format!("attributing samples {first}..={last}"))?;
        let labels: Vec<u32> = if label_source == "dataset" {
            batch.labels.iter().map(|l| l.unwrap_or(0)).collect()
        } else {
            a.targets.iter().map(|&t| t as u32).collect()
        };
        let index: Vec<u32> = batch
            .indices
            .iter()
            .map(|&i| u32::try_from(i))
            .collect::<Result<_, _>>()
            .context("sample numbers beyond 2³² do not fit ViRelAy's uint32 index")?;
        let n_outputs = a.output.len() / k;
        let mut w = AttributionWriter::create(
            part_path(&dir, j),
            AttributionLayout {
                n_samples: k,
                sample_shape: input_shape.clone(),
                n_outputs,
                labels: LabelLayout::Single,
                with_index: true,
                compression: None,
            },
        )?;
        w.write_batch(
            0,
            a.relevance.data(),
            a.output.data(),
            &BatchLabels::Single(&labels),
            Some(&index),
        )?;
        w.finish()?;
        bar.inc(k as u64);
    }
    bar.finish_and_clear();

    assemble(
        &dir,
        batches.len(),
        &output,
        &args.model,
        &args.dataset,
        &settings,
        &record,
        label_source,
    )?;
    drop(lock);
    fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    eprintln!("wrote {} ({} samples)", output.display(), hi - lo);
    Ok(())
}

/// An exclusive advisory lock on `file` for the process's lifetime (released when the file is
/// closed or the process dies, even by SIGKILL); false if another process holds it.
#[cfg(unix)]
fn try_lock(file: &fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a valid, open descriptor owned by `file`.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

#[cfg(not(unix))]
fn try_lock(_file: &fs::File) -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TargetMode {
    Label,
    Predicted,
    Class(usize),
}

/// Copies the parts, in order, into the final file and marks it complete.
#[allow(clippy::too_many_arguments)]
fn assemble(
    dir: &Path,
    n_parts: usize,
    output: &Path,
    model: &Path,
    dataset: &Path,
    settings: &Settings,
    record: &RunRecord,
    label_source: &str,
) -> anyhow::Result<()> {
    let first = AttributionFile::open(part_path(dir, 0))?;
    let n_outputs = first.prediction_shape().get(1).copied().unwrap_or(1);
    let sample_shape = first.sample_shape().to_vec();
    drop(first);
    let mut w = AttributionWriter::create(
        output,
        AttributionLayout {
            n_samples: record.samples,
            sample_shape,
            n_outputs,
            labels: LabelLayout::Single,
            with_index: true,
            compression: settings.compression,
        },
    )?;
    let mut offset = 0;
    for j in 0..n_parts {
        let p = part_path(dir, j);
        let part = AttributionFile::open(&p)?;
        let rows: Vec<usize> = (0..part.n_samples()).collect();
        let attribution = part.read_rows(&rows)?;
        let prediction = part.read_prediction_rows(0, part.n_samples())?;
        let Labels::Single(labels) = part.labels() else {
            bail!(
                "{} has n-hot labels; it is not a part of this run",
                p.display()
            );
        };
        let Some(index) = part.index() else {
            bail!(
                "{} has no `index`; it is not a part of this run",
                p.display()
            );
        };
        w.write_batch(
            offset,
            &attribution,
            &prediction,
            &BatchLabels::Single(labels),
            Some(index),
        )?;
        offset += part.n_samples();
    }
    if offset != record.samples {
        bail!(
            "the parts in {} hold {offset} samples, expected {}; rerun with --force",
            dir.display(),
            record.samples
        );
    }
    let model_name = model
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dataset_name = dataset
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (shard_index, shard_count) = record.shard.map_or((0, 1), |s| (s.index, s.count));
    let attrs = [
        ("prism_complete", AttrValue::Int(1)),
        (
            "prism_version",
            AttrValue::Str(env!("CARGO_PKG_VERSION").into()),
        ),
        (
            "prism_format_version",
            AttrValue::Int(prism_store::FORMAT_VERSION),
        ),
        ("prism_run_key", AttrValue::Str(record.run_key.clone())),
        ("prism_base_key", AttrValue::Str(settings.base_key())),
        (
            "prism_settings",
            AttrValue::Str(serde_json::to_string(settings)?),
        ),
        ("prism_model", AttrValue::Str(model_name)),
        (
            "prism_model_blake3",
            AttrValue::Str(settings.model_blake3.clone()),
        ),
        ("prism_dataset", AttrValue::Str(dataset_name)),
        (
            "prism_dataset_fingerprint",
            AttrValue::Str(settings.dataset_fingerprint.clone()),
        ),
        ("prism_method", AttrValue::Str(settings.method.clone())),
        ("prism_target", AttrValue::Str(settings.target.clone())),
        ("prism_label_source", AttrValue::Str(label_source.into())),
        ("prism_total_samples", AttrValue::Int(settings.limit as i64)),
        ("prism_shard_index", AttrValue::Int(shard_index as i64)),
        ("prism_shard_count", AttrValue::Int(shard_count as i64)),
    ];
    for (name, value) in &attrs {
        w.set_attr(name, value)?;
    }
    w.finish()?;
    Ok(())
}
