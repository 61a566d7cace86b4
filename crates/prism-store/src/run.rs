//! The file protocol of a resumable, sharded dataset run (`prism attribute`) and of merging
//! its shards (`prism merge`).
//!
//! A run writes each finished batch as a small attribution file `part-NNNNNN.h5` in the work
//! directory `OUTPUT.partial/` (under a temporary name, renamed when complete), next to
//! `run.json`, which records the run's settings. Killed at any moment and rerun with the same
//! settings, it skips the parts that exist. When every part is there, [`AttributionRun::finish`]
//! copies them in order into `OUTPUT` (again under a temporary name, renamed when complete,
//! with `prism_complete = 1`) and removes the work directory. So the file under the output's
//! name is always complete, and an interrupted run never loses more than the batches in flight.
//!
//! The protocol is here, in the crate that owns the files, and knows nothing of models or
//! methods: a driver (the `prism` binary, `prism-jobs`, a GPU runner, a cluster job) asks
//! [`AttributionRun::prepare`] for the run, computes each [`PendingBatch`] however it likes,
//! hands the result to [`AttributionRun::write_part`] and calls [`AttributionRun::finish`].
//! Any driver gets the same resumption, sharding, locking and provenance, and the same bytes.

// The errors carry the store's and the dataset's errors unboxed, like the rest of the crate
// (`StoreError` holds `hdf5::Error`); boxing them is left for one crate-wide change.
#![allow(clippy::result_large_err)]

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::attribution::{
    AttributionFile, AttributionLayout, AttributionWriter, BatchLabels, LabelLayout, Labels,
    RecordLayout, RecordRows,
};
use crate::error::StoreError;
use crate::provenance::{
    LabelSource, Provenance, ProvenanceOrder, RunSettings, Shard, PRISM_VERSION,
};
use crate::workdir::{io_err, part_path, Opened, WorkDir, WorkSpec};

/// Errors of the run protocol.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file-system operation failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A shard with no whole batch in it.
    #[error(
        "shard {index}/{count} of {samples} samples in batches of {batch_size} is empty; \
         use fewer shards"
    )]
    EmptyShard {
        index: usize,
        count: usize,
        samples: usize,
        batch_size: usize,
    },
    /// The output exists and is not a complete file of this run.
    #[error(
        "{} exists (from other settings or not a complete Prism attribution file); start over \
         (force) to overwrite it",
        path.display()
    )]
    OutputExists { path: PathBuf },
    /// Another process holds the work directory's lock.
    #[error("another run is writing {} (its work directory {} is locked)", output.display(), dir.display())]
    Locked { output: PathBuf, dir: PathBuf },
    /// The work directory holds an interrupted run with other settings.
    #[error(
        "{} holds an interrupted run with other settings (model, dataset, method, target, \
         batch size, limit, shard, compression or recorded nodes differ); rerun it with the \
         same settings, or start over (force) to discard it",
        dir.display()
    )]
    OtherSettings { dir: PathBuf },
    /// The parts do not add up to the run.
    #[error("the parts in {} hold {found} samples, expected {expected}; start over (force)", dir.display())]
    PartsMismatch {
        dir: PathBuf,
        found: usize,
        expected: usize,
    },
    /// A file in the work directory is not a part of this run.
    #[error("{} {why}; it is not a part of this run", path.display())]
    NotAPart { path: PathBuf, why: &'static str },
    /// A batch handed to [`AttributionRun::write_part`] does not fit the run.
    #[error("part {part}: {message}")]
    BadPart { part: usize, message: String },
    /// The settings could not be serialised (never happens for valid settings).
    #[error("cannot serialise the run's settings")]
    Settings(#[from] serde_json::Error),
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

/// The output path of a shard: `{shard}` replaced, or `.shard-I-of-N` before the extension.
pub fn shard_output(output: &Path, shard: Option<Shard>) -> PathBuf {
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

/// blake3 of a file's bytes, streamed (the model hash of [`RunSettings`]).
pub fn hash_file(path: &Path) -> Result<String, RunError> {
    let io = |action| {
        move |source| RunError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    };
    let mut f = fs::File::open(path).map_err(io("open"))?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io("read"))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().to_hex().to_string())
}

/// What a run is: where it writes, which slice, with which settings and provenance.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The output file as given; `{shard}` is replaced for a shard (see [`shard_output`]).
    pub output: PathBuf,
    pub shard: Option<Shard>,
    pub settings: RunSettings,
    /// The model's file name (provenance).
    pub model_name: String,
    /// The dataset's file name (provenance).
    pub dataset_name: String,
    pub label_source: LabelSource,
    /// Start over: discard an interrupted run and overwrite an existing output.
    pub force: bool,
}

/// `run.json` in the work directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RunRecord {
    run_key: String,
    settings: RunSettings,
    shard: Option<Shard>,
    samples: usize,
}

/// One batch still to compute: part number `part` holds the dataset samples `samples`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingBatch {
    pub part: usize,
    pub samples: Range<usize>,
}

/// The result of one batch, for [`AttributionRun::write_part`].
#[derive(Debug, Clone, Copy)]
pub struct PartData<'a> {
    /// Shape of one sample (the model's input without the batch axis).
    pub sample_shape: &'a [usize],
    /// Relevance, row-major `samples × sample_shape`.
    pub relevance: &'a [f32],
    /// Model outputs, row-major `samples × n_outputs`.
    pub prediction: &'a [f32],
    /// One label per sample (the dataset's, or the target attributed).
    pub labels: &'a [u32],
    /// What was recorded at hidden nodes: required exactly when the run's settings record
    /// ([`RunSettings::record`]).
    pub record: Option<PartRecord<'a>>,
}

/// The relevance recorded at hidden nodes for one batch (see
/// [`crate::attribution::RecordLayout`]).
#[derive(Debug, Clone, Copy)]
pub struct PartRecord<'a> {
    /// The nodes; its mode and `top_k` must be the run's.
    pub layout: &'a RecordLayout,
    /// One entry per node of `layout`, each with the batch's rows.
    pub nodes: &'a [RecordRows],
}

/// What [`AttributionRun::prepare`] found.
#[derive(Debug)]
pub enum Prepared {
    /// The output is already a complete file of this run: nothing to do.
    AlreadyComplete { output: PathBuf },
    /// The run, locked, ready for its pending batches.
    Ready(Box<AttributionRun>),
}

/// A run in progress: its work directory is locked until the run is dropped or finished.
#[derive(Debug)]
pub struct AttributionRun {
    output: PathBuf,
    dir: PathBuf,
    spec: RunSpec,
    run_key: String,
    samples: Range<usize>,
    batches: Vec<Range<usize>>,
    done: BTreeSet<usize>,
    resumed: bool,
    _lock: fs::File,
}

impl AttributionRun {
    /// Sets the run up: checks the output, creates and locks the work directory, records or
    /// checks the settings (resuming an interrupted run with equal settings) and lists the
    /// parts already done.
    pub fn prepare(spec: RunSpec) -> Result<Prepared, RunError> {
        let s = &spec.settings;
        let run_key = s.run_key(spec.shard)?;
        let record = RunRecord {
            run_key: run_key.clone(),
            settings: s.clone(),
            shard: spec.shard,
            samples: {
                let (lo, hi) = shard_range(s.limit, s.batch_size, spec.shard);
                hi - lo
            },
        };
        let opened = WorkDir::open(&WorkSpec {
            output: &spec.output,
            shard: spec.shard,
            run_key: &run_key,
            record: &record,
            limit: s.limit,
            batch_size: s.batch_size,
            force: spec.force,
            complete_key: &complete_key,
        })?;
        let w = match opened {
            Opened::Complete(output) => return Ok(Prepared::AlreadyComplete { output }),
            Opened::Ready(w) => w,
        };
        Ok(Prepared::Ready(Box::new(AttributionRun {
            output: w.output,
            dir: w.dir,
            spec,
            run_key,
            samples: w.samples,
            batches: w.batches,
            done: w.done,
            resumed: w.resumed,
            _lock: w.lock,
        })))
    }

    /// The file the run writes (the shard's name for a shard).
    pub fn output(&self) -> &Path {
        &self.output
    }

    /// The work directory (`OUTPUT.partial/`).
    pub fn work_dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the work directory held an interrupted run with these settings.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// The dataset samples this run (or shard) covers.
    pub fn samples(&self) -> Range<usize> {
        self.samples.clone()
    }

    /// Samples in the parts already written.
    pub fn done_samples(&self) -> usize {
        self.done.iter().map(|&j| self.batches[j].len()).sum()
    }

    /// The batches still to compute, in order.
    pub fn pending(&self) -> Vec<PendingBatch> {
        (0..self.batches.len())
            .filter(|j| !self.done.contains(j))
            .map(|part| PendingBatch {
                part,
                samples: self.batches[part].clone(),
            })
            .collect()
    }

    /// Writes one batch's result as its part file (atomically).
    pub fn write_part(&mut self, part: usize, data: &PartData<'_>) -> Result<(), RunError> {
        let bad = |message: String| RunError::BadPart { part, message };
        let Some(samples) = self.batches.get(part).cloned() else {
            return Err(bad(format!("the run has {} parts", self.batches.len())));
        };
        let k = samples.len();
        if data.labels.len() != k || data.prediction.len() % k != 0 {
            return Err(bad(format!(
                "{} labels and {} outputs do not make {k} samples",
                data.labels.len(),
                data.prediction.len()
            )));
        }
        let index: Vec<u32> = samples
            .clone()
            .map(u32::try_from)
            .collect::<Result<_, _>>()
            .map_err(|_| {
                bad("sample numbers beyond 2³² do not fit ViRelAy's uint32 index".into())
            })?;
        let mut w = AttributionWriter::create(
            part_path(&self.dir, part),
            AttributionLayout {
                n_samples: k,
                sample_shape: data.sample_shape.to_vec(),
                n_outputs: data.prediction.len() / k,
                labels: LabelLayout::Single,
                with_index: true,
                compression: None,
            },
        )?;
        w.write_batch(
            0,
            data.relevance,
            data.prediction,
            &BatchLabels::Single(data.labels),
            Some(&index),
        )?;
        match (&self.spec.settings.record, data.record) {
            (None, None) => {}
            (Some(settings), Some(r)) => {
                if r.layout.mode != settings.mode || r.layout.top_k != settings.top_k {
                    return Err(bad(format!(
                        "the record is in mode {} with top_k {}, the run's in mode {} with \
                         top_k {}",
                        r.layout.mode.name(),
                        r.layout.top_k,
                        settings.mode.name(),
                        settings.top_k
                    )));
                }
                if r.nodes.len() != r.layout.nodes.len() {
                    return Err(bad(format!(
                        "{} recorded nodes, but rows for {}",
                        r.layout.nodes.len(),
                        r.nodes.len()
                    )));
                }
                w.add_record(r.layout.clone())?;
                for (i, rows) in r.nodes.iter().enumerate() {
                    w.write_record_rows(i, 0, rows)?;
                }
            }
            (Some(_), None) => {
                return Err(bad(
                    "the run records hidden nodes, but the batch has no record".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(bad(
                    "the batch has a record, but the run's settings record no nodes".into(),
                ))
            }
        }
        w.finish()?;
        self.done.insert(part);
        Ok(())
    }

    /// Copies the parts, in order, into the output, marks it complete, removes the work
    /// directory and releases the lock. Returns the output's path.
    pub fn finish(self) -> Result<PathBuf, RunError> {
        self.assemble()?;
        let AttributionRun {
            output, dir, _lock, ..
        } = self;
        drop(_lock);
        fs::remove_dir_all(&dir).map_err(io_err("remove", &dir))?;
        Ok(output)
    }

    fn assemble(&self) -> Result<(), RunError> {
        let settings = &self.spec.settings;
        let n_samples = self.samples.len();
        let first_path = part_path(&self.dir, 0);
        let first = AttributionFile::open(&first_path)?;
        let n_outputs = first.prediction_shape().get(1).copied().unwrap_or(1);
        let sample_shape = first.sample_shape().to_vec();
        let record = first.record()?;
        drop(first);
        if record.is_some() != settings.record.is_some() {
            return Err(RunError::NotAPart {
                path: first_path,
                why: if record.is_some() {
                    "records hidden nodes, but the run does not"
                } else {
                    "records no hidden nodes, but the run does"
                },
            });
        }
        let mut w = AttributionWriter::create(
            &self.output,
            AttributionLayout {
                n_samples,
                sample_shape,
                n_outputs,
                labels: LabelLayout::Single,
                with_index: true,
                compression: settings.compression,
            },
        )?;
        if let Some(layout) = &record {
            w.add_record(layout.clone())?;
        }
        let mut offset = 0;
        for j in 0..self.batches.len() {
            let p = part_path(&self.dir, j);
            let part = AttributionFile::open(&p)?;
            if part.record()? != record {
                return Err(RunError::NotAPart {
                    path: p,
                    why: "records other hidden nodes than the first part",
                });
            }
            if let Some(layout) = &record {
                for node in 0..layout.nodes.len() {
                    let rows = part.read_record_rows(node, 0, part.n_samples())?;
                    // Rows past the run's end are caught by the writer.
                    w.write_record_rows(node, offset, &rows)?;
                }
            }
            let rows: Vec<usize> = (0..part.n_samples()).collect();
            let attribution = part.read_rows(&rows)?;
            let prediction = part.read_prediction_rows(0, part.n_samples())?;
            let Labels::Single(labels) = part.labels() else {
                return Err(RunError::NotAPart {
                    path: p,
                    why: "has n-hot labels",
                });
            };
            let Some(index) = part.index() else {
                return Err(RunError::NotAPart {
                    path: p,
                    why: "has no `index`",
                });
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
        if offset != n_samples {
            return Err(RunError::PartsMismatch {
                dir: self.dir.clone(),
                found: offset,
                expected: n_samples,
            });
        }
        let provenance = Provenance {
            complete: true,
            version: PRISM_VERSION.into(),
            format_version: crate::FORMAT_VERSION,
            run_key: self.run_key.clone(),
            base_key: settings.base_key()?,
            settings: settings.clone(),
            model: self.spec.model_name.clone(),
            dataset: self.spec.dataset_name.clone(),
            label_source: self.spec.label_source,
            total_samples: settings.limit,
            shard: self.spec.shard,
        };
        provenance.write(&mut w, ProvenanceOrder::Run)?;
        w.finish()?;
        Ok(())
    }
}

/// The run key of an existing output file, if it is a complete Prism file.
fn complete_key(path: &Path) -> Option<String> {
    let f = AttributionFile::open(path).ok()?;
    let p = Provenance::read(&f).ok()??;
    p.complete.then_some(p.run_key)
}

/// Errors of [`merge_shards`].
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The output exists and overwriting was not asked for.
    #[error("{} exists; start over (force) to overwrite it", path.display())]
    OutputExists { path: PathBuf },
    /// The output is one of the shards.
    #[error("the merged file must differ from the shard files")]
    OutputIsShard,
    /// No shard was given.
    #[error("no shard files to merge")]
    NoShards,
    /// A shard could not be opened.
    #[error("opening shard {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: StoreError,
    },
    #[error(
        "{} is not a complete Prism attribution file (an interrupted run? rerun \
         `prism attribute` for that shard with the same arguments)",
        path.display()
    )]
    Incomplete { path: PathBuf },
    #[error("{} comes from another run than {} (model, dataset, method or settings differ)", path.display(), first.display())]
    OtherRun { path: PathBuf, first: PathBuf },
    #[error("{} has no `index` dataset", path.display())]
    NoIndex { path: PathBuf },
    #[error("{} holds sample {sample}, beyond the run's {total} samples", path.display())]
    Beyond {
        path: PathBuf,
        sample: usize,
        total: usize,
    },
    #[error("{} and {} overlap (both hold sample {sample}); merge each shard once", first.display(), second.display())]
    Overlap {
        first: PathBuf,
        second: PathBuf,
        sample: usize,
    },
    #[error(
        "the shards leave {missing} of {total} samples out (the first is sample {first}); \
         the run has {shards} shards and {given} were given"
    )]
    Missing {
        missing: usize,
        total: usize,
        first: usize,
        shards: usize,
        given: usize,
    },
    #[error("{} has n-hot labels", path.display())]
    MultiHot { path: PathBuf },
    #[error("{}'s `index` is not ascending; it was not written by `prism attribute`", path.display())]
    NotAscending { path: PathBuf },
}

/// What [`merge_shards`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    pub output: PathBuf,
    pub shards: usize,
    pub samples: usize,
}

/// Joins the complete shards of one run into `output`: the file the unsharded run would have
/// written (same rows, same provenance with the base key as its run key).
///
/// Every shard must be complete and come from the same run (same base key); shards that
/// overlap or leave samples out are refused, naming the files.
pub fn merge_shards(shards: &[PathBuf], output: &Path, force: bool) -> Result<Merged, MergeError> {
    if output.exists() && !force {
        return Err(MergeError::OutputExists {
            path: output.to_path_buf(),
        });
    }
    if shards.iter().any(|s| s == output) {
        return Err(MergeError::OutputIsShard);
    }
    let mut files = Vec::with_capacity(shards.len());
    let mut records = Vec::with_capacity(shards.len());
    for p in shards {
        let f = AttributionFile::open(p).map_err(|source| MergeError::Open {
            path: p.clone(),
            source,
        })?;
        match Provenance::read(&f)? {
            Some(r) if r.complete => records.push(r),
            _ => return Err(MergeError::Incomplete { path: p.clone() }),
        }
        files.push(f);
    }
    let Some(first_record) = records.first() else {
        return Err(MergeError::NoShards);
    };
    let record_layout = files[0].record()?;
    for (fi, f) in files.iter().enumerate().skip(1) {
        if f.record()? != record_layout {
            return Err(MergeError::OtherRun {
                path: shards[fi].clone(),
                first: shards[0].clone(),
            });
        }
    }
    let total = first_record.total_samples;
    let mut owner: Vec<Option<usize>> = vec![None; total];
    for (fi, f) in files.iter().enumerate() {
        if records[fi].base_key != first_record.base_key {
            return Err(MergeError::OtherRun {
                path: shards[fi].clone(),
                first: shards[0].clone(),
            });
        }
        let Some(index) = f.index() else {
            return Err(MergeError::NoIndex {
                path: shards[fi].clone(),
            });
        };
        for &i in index {
            let i = i as usize;
            if i >= total {
                return Err(MergeError::Beyond {
                    path: shards[fi].clone(),
                    sample: i,
                    total,
                });
            }
            if let Some(other) = owner[i] {
                return Err(MergeError::Overlap {
                    first: shards[other].clone(),
                    second: shards[fi].clone(),
                    sample: i,
                });
            }
            owner[i] = Some(fi);
        }
    }
    let missing = owner.iter().filter(|o| o.is_none()).count();
    if let Some(first) = owner.iter().position(Option::is_none) {
        return Err(MergeError::Missing {
            missing,
            total,
            first,
            shards: first_record.shard.map_or(1, |s| s.count),
            given: files.len(),
        });
    }
    // Rows in sample order: shards are contiguous slices, so order the files by first sample.
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by_key(|&fi| files[fi].index().and_then(|ix| ix.first().copied()));
    let first = &files[order[0]];
    let n_outputs = first.prediction_shape().get(1).copied().unwrap_or(1);
    let mut w = AttributionWriter::create(
        output,
        AttributionLayout {
            n_samples: total,
            sample_shape: first.sample_shape().to_vec(),
            n_outputs,
            labels: LabelLayout::Single,
            with_index: true,
            compression: records[order[0]].settings.compression.map(|c| c.min(9)),
        },
    )?;
    if let Some(layout) = &record_layout {
        w.add_record(layout.clone())?;
    }
    let mut offset = 0;
    for &fi in &order {
        let f = &files[fi];
        let n = f.n_samples();
        let Labels::Single(labels) = f.labels() else {
            return Err(MergeError::MultiHot {
                path: shards[fi].clone(),
            });
        };
        let index = f.index().unwrap_or_default();
        if index.windows(2).any(|w| w[0] >= w[1]) {
            return Err(MergeError::NotAscending {
                path: shards[fi].clone(),
            });
        }
        // Copy in blocks to bound memory.
        let block = ((64 << 20) / (4 * f.sample_len().max(1))).max(1);
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
        if let Some(layout) = &record_layout {
            for (node, l) in layout.nodes.iter().enumerate() {
                let row = 4 * (2 * l.row_len(layout.mode) + 3 * l.k(layout.top_k));
                let block = ((64 << 20) / row.max(1)).max(1);
                for a in (0..n).step_by(block) {
                    let b = (a + block).min(n);
                    let rows = f.read_record_rows(node, a, b)?;
                    w.write_record_rows(node, offset + a, &rows)?;
                }
            }
        }
        offset += n;
    }
    // Provenance: the first slice's, made that of the unsharded run.
    let record = &records[order[0]];
    let merged = Provenance {
        complete: true,
        run_key: record.base_key.clone(),
        shard: None,
        ..record.clone()
    };
    merged.write(&mut w, ProvenanceOrder::Merged)?;
    // Renamed over an existing output (with force): the old file stays until then.
    w.finish()?;
    Ok(Merged {
        output: output.to_path_buf(),
        shards: files.len(),
        samples: total,
    })
}
