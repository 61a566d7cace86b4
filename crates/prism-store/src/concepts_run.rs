//! The files of `prism concepts` (relevance and activation maximisation over a dataset): the
//! resumable, sharded run that writes them and the merge of shards. The layout, version 1, is
//! in `docs/formats.md` ("concepts.h5").
//!
//! The run uses the work directory of `prism attribute` ([`crate::workdir`]): each batch
//! becomes a part file `part-NNNNNN.h5` holding its rows of the per-sample tables (channel
//! relevance and activation, the position of each channel's maximum, the optional conditional
//! heatmaps). When every part is there, the driver reads the tables back
//! ([`ConceptRun::tables`]), selects each channel's best samples ([`Maxima::select`]),
//! computes their receptive-field crops (saving each layer's result in the work directory, so a
//! killed run resumes there: [`ConceptRun::save_maxima`]) and [`ConceptRun::finish`]es: the parts
//! and the maxima are copied into the output under a temporary name, marked complete and
//! renamed into place.
//!
//! Rows are ordered by sample; a channel's best samples by score (descending, NaN last), ties
//! by ascending sample number, so that shards merged ([`merge_concepts`]) give the unsharded
//! file's selection: a sample among the `K` best of the whole run is among the `K` best of its
//! shard, whose file holds its crop.

// The errors carry the store's errors unboxed, like the rest of the crate.
#![allow(clippy::result_large_err)]

use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use hdf5::H5Type;
use prism_attribution::MethodSpec;
use serde::{Deserialize, Serialize};

use crate::atomic::StagedFile;
use crate::concepts::{
    ATTR_FORMAT as FORMAT_ATTR, FORMAT_NAME as CONCEPTS_FORMAT,
    FORMAT_VERSION as CONCEPTS_FORMAT_VERSION,
};
use crate::error::StoreError;
use crate::h5util::{self, AttrValue};
use crate::provenance::{name, Shard, PRISM_VERSION};
use crate::run::{MergeError, PendingBatch, RunError};
use crate::workdir::{io_err, part_path, Opened, WorkDir, WorkSpec};

/// Everything that determines a concepts run's result: equal settings ⇒ the same file.
/// Serialised as JSON into `run.json` and `prism_settings` and hashed into the run keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConceptSettings {
    pub format: u32,
    pub model_blake3: String,
    pub dataset_fingerprint: String,
    pub dataset_len: usize,
    #[serde(with = "crate::provenance::method_text")]
    pub method: MethodSpec,
    /// `label`, `predicted` or a class number, as spelled.
    pub target: String,
    /// The layer globs, as given.
    pub layers: Vec<String>,
    /// Samples kept per channel and mode.
    pub top_n: usize,
    /// Receptive-field crops computed per channel and mode (the first of the `top_n`).
    pub crops: usize,
    /// Conditional heatmaps per sample and layer (its most relevant channels).
    pub sample_heatmaps: usize,
    pub batch_size: usize,
    /// Samples of the run (the first `limit` of the dataset, before sharding).
    pub limit: usize,
}

impl ConceptSettings {
    /// The version of the settings record.
    pub const FORMAT: u32 = 1;

    /// Key of the unsharded run (and of merged shards).
    pub fn base_key(&self) -> Result<String, serde_json::Error> {
        let json = serde_json::to_string(self)?;
        Ok(blake3::hash(format!("concepts:{json}").as_bytes())
            .to_hex()
            .to_string())
    }

    /// Key of a shard's run.
    pub fn run_key(&self, shard: Option<Shard>) -> Result<String, serde_json::Error> {
        let base = self.base_key()?;
        Ok(match shard {
            None => base,
            Some(s) => blake3::hash(format!("{base}:{}/{}", s.index, s.count).as_bytes())
                .to_hex()
                .to_string(),
        })
    }
}

/// What a concepts run is.
#[derive(Debug, Clone)]
pub struct ConceptRunSpec {
    /// The output as given (`{shard}` is replaced for a shard).
    pub output: PathBuf,
    pub shard: Option<Shard>,
    pub settings: ConceptSettings,
    /// The model's file name (provenance).
    pub model_name: String,
    /// The dataset's file name (provenance).
    pub dataset_name: String,
    /// Start over: discard an interrupted run and overwrite an existing output.
    pub force: bool,
}

/// `run.json` of a concepts run.
#[derive(Serialize)]
struct ConceptRecord<'a> {
    run_key: &'a str,
    settings: &'a ConceptSettings,
    shard: Option<Shard>,
}

/// A layer of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// The node, as the model file names it.
    pub node: String,
    /// Its output tensor.
    pub tensor: String,
    /// One sample's output shape (`[C, H, W]`, `[C]`).
    pub shape: Vec<usize>,
}

impl LayerInfo {
    /// Channels (axis 1 of the output).
    pub fn channels(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }
}

/// One layer's rows of a batch, for [`ConceptRun::write_part`]. Tables are row-major
/// `rows × C`.
#[derive(Debug, Clone, Copy)]
pub struct LayerRows<'a> {
    pub info: &'a LayerInfo,
    /// Σ over space of the relevance at the layer's output.
    pub relevance: &'a [f32],
    /// Σ over space of the activation.
    pub activation: &'a [f32],
    /// Per channel, the position of the relevance map's maximum (flattened).
    pub relevance_location: &'a [i64],
    /// Per channel, the position of the activation map's maximum.
    pub activation_location: &'a [i64],
    /// `rows × M × H × W` conditional heatmaps (empty when M = 0).
    pub heatmap: &'a [f32],
    /// `rows × M`: their channels.
    pub heatmap_channel: &'a [i32],
}

/// The result of one batch.
#[derive(Debug, Clone)]
pub struct ConceptPart<'a> {
    /// The class explained per row.
    pub target: &'a [u32],
    /// Model outputs, `rows × classes`.
    pub prediction: &'a [f32],
    /// The input's spatial size `[H, W]` (the heatmaps' shape).
    pub input_hw: [usize; 2],
    pub layers: Vec<LayerRows<'a>>,
}

/// Every row's tables of one layer, read back from the parts.
#[derive(Debug, Clone)]
pub struct LayerTables {
    pub info: LayerInfo,
    pub relevance: Vec<f32>,
    pub activation: Vec<f32>,
    pub relevance_location: Vec<i64>,
    pub activation_location: Vec<i64>,
}

/// The run's tables: row `i` is dataset sample `index[i]`.
#[derive(Debug, Clone)]
pub struct ConceptTables {
    pub index: Vec<u32>,
    pub layers: Vec<LayerTables>,
}

/// One mode's best samples per channel (`K × C`, column `c` for channel `c`, best first).
#[derive(Debug, Clone, PartialEq)]
pub struct Maxima {
    /// `K`.
    pub top_n: usize,
    /// `C`.
    pub channels: usize,
    /// Dataset sample numbers; -1 where the run has fewer than `K` rows.
    pub sample: Vec<i64>,
    /// `R_c / (Σ_c' |R_c'| + 1e-10)`; NaN where `sample` is -1.
    pub score: Vec<f32>,
    /// The position of the channel map's maximum in that sample.
    pub location: Vec<i64>,
    /// `K × C × 4`: y0, y1, x0, x1 of the receptive-field crop (end exclusive); 0 where not
    /// computed.
    pub boxes: Vec<i32>,
    /// Boxes computed per channel (the first `crops` rows).
    pub crops: usize,
}

/// The normalisation of zennit-crp's `abs_norm`.
const ABS_NORM_EPS: f64 = 1e-10;

/// Per row, `values[c] / (Σ_c' |values[c']| + 1e-10)` (zennit-crp's `abs_norm`), as f32.
pub fn abs_norm_scores(values: &[f32], channels: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(values.len());
    for row in values.chunks(channels.max(1)) {
        let total: f64 = row.iter().map(|v| f64::from(*v).abs()).sum::<f64>() + ABS_NORM_EPS;
        out.extend(row.iter().map(|v| (f64::from(*v) / total) as f32));
    }
    out
}

/// The order of candidates: score descending (NaN last), then sample ascending.
fn better(a: (f32, i64), b: (f32, i64)) -> std::cmp::Ordering {
    match (a.0.is_nan(), b.0.is_nan()) {
        (false, true) => std::cmp::Ordering::Less,
        (true, false) => std::cmp::Ordering::Greater,
        (true, true) => a.1.cmp(&b.1),
        (false, false) => b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)),
    }
}

impl Maxima {
    /// The `top_n` best rows per channel by `score` (`rows × C`), rows being the dataset
    /// samples `index`; `location` is `rows × C`. No boxes yet.
    pub fn select(
        index: &[u32],
        score: &[f32],
        location: &[i64],
        channels: usize,
        top_n: usize,
    ) -> Maxima {
        let mut m = Maxima::empty(top_n, channels);
        let rows = index.len();
        for c in 0..channels {
            let mut order: Vec<usize> = (0..rows).collect();
            order.sort_by(|&a, &b| {
                better(
                    (score[a * channels + c], i64::from(index[a])),
                    (score[b * channels + c], i64::from(index[b])),
                )
            });
            for (k, &r) in order.iter().take(top_n).enumerate() {
                let at = k * channels + c;
                m.sample[at] = i64::from(index[r]);
                m.score[at] = score[r * channels + c];
                m.location[at] = location[r * channels + c];
            }
        }
        m
    }

    /// No samples: every entry -1 / NaN.
    pub fn empty(top_n: usize, channels: usize) -> Maxima {
        Maxima {
            top_n,
            channels,
            sample: vec![-1; top_n * channels],
            score: vec![f32::NAN; top_n * channels],
            location: vec![0; top_n * channels],
            boxes: vec![0; top_n * channels * 4],
            crops: 0,
        }
    }

    /// The union of several selections of the same channels (each holding its boxes), cut to
    /// `top_n`: what the selection over all their rows gives.
    pub fn merge(parts: &[Maxima], top_n: usize, crops: usize) -> Maxima {
        let channels = parts.first().map_or(0, |m| m.channels);
        let mut m = Maxima::empty(top_n, channels);
        m.crops = crops;
        for c in 0..channels {
            let mut cands: Vec<(f32, i64, i64, [i32; 4])> = Vec::new();
            for p in parts {
                for k in 0..p.top_n {
                    let at = k * p.channels + c;
                    if p.sample[at] >= 0 {
                        let b = &p.boxes[at * 4..at * 4 + 4];
                        cands.push((
                            p.score[at],
                            p.sample[at],
                            p.location[at],
                            [b[0], b[1], b[2], b[3]],
                        ));
                    }
                }
            }
            cands.sort_by(|a, b| better((a.0, a.1), (b.0, b.1)));
            for (k, cand) in cands.iter().take(top_n).enumerate() {
                let at = k * channels + c;
                m.sample[at] = cand.1;
                m.score[at] = cand.0;
                m.location[at] = cand.2;
                if k < crops {
                    m.boxes[at * 4..at * 4 + 4].copy_from_slice(&cand.3);
                }
            }
        }
        m
    }
}

/// One layer's maxima by relevance and by activation.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerMaxima {
    pub relmax: Maxima,
    pub actmax: Maxima,
}

/// What [`ConceptRun::prepare`] found.
#[derive(Debug)]
pub enum ConceptPrepared {
    /// The output is already a complete file of this run.
    AlreadyComplete {
        output: PathBuf,
    },
    Ready(Box<ConceptRun>),
}

/// A concepts run in progress; its work directory is locked until it is dropped or finished.
#[derive(Debug)]
pub struct ConceptRun {
    work: WorkDir,
    spec: ConceptRunSpec,
    run_key: String,
}

impl ConceptRun {
    /// Sets the run up (see [`crate::run::AttributionRun::prepare`], which this mirrors).
    pub fn prepare(spec: ConceptRunSpec) -> Result<ConceptPrepared, RunError> {
        let s = &spec.settings;
        let run_key = s.run_key(spec.shard)?;
        let record = ConceptRecord {
            run_key: &run_key,
            settings: s,
            shard: spec.shard,
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
        Ok(match opened {
            Opened::Complete(output) => ConceptPrepared::AlreadyComplete { output },
            Opened::Ready(work) => ConceptPrepared::Ready(Box::new(ConceptRun {
                work,
                spec,
                run_key,
            })),
        })
    }

    /// The file the run writes (the shard's name for a shard).
    pub fn output(&self) -> &Path {
        &self.work.output
    }

    /// The work directory (`OUTPUT.partial/`).
    pub fn work_dir(&self) -> &Path {
        &self.work.dir
    }

    /// Whether the work directory held an interrupted run with these settings.
    pub fn resumed(&self) -> bool {
        self.work.resumed
    }

    /// The dataset samples this run (or shard) covers.
    pub fn samples(&self) -> Range<usize> {
        self.work.samples.clone()
    }

    /// Samples in the parts already written.
    pub fn done_samples(&self) -> usize {
        self.work
            .done
            .iter()
            .map(|&j| self.work.batches[j].len())
            .sum()
    }

    /// The batches still to compute, in order.
    pub fn pending(&self) -> Vec<PendingBatch> {
        (0..self.work.batches.len())
            .filter(|j| !self.work.done.contains(j))
            .map(|part| PendingBatch {
                part,
                samples: self.work.batches[part].clone(),
            })
            .collect()
    }

    /// Writes one batch's tables as its part file (atomically).
    pub fn write_part(&mut self, part: usize, data: &ConceptPart<'_>) -> Result<(), RunError> {
        let bad = |message: String| RunError::BadPart { part, message };
        let Some(samples) = self.work.batches.get(part).cloned() else {
            return Err(bad(format!(
                "the run has {} parts",
                self.work.batches.len()
            )));
        };
        let index: Vec<u32> = samples
            .map(u32::try_from)
            .collect::<Result<_, _>>()
            .map_err(|_| bad("sample numbers beyond 2³² do not fit the uint32 index".into()))?;
        let m = self.spec.settings.sample_heatmaps;
        check_part(&index, data, m).map_err(bad)?;
        let target = StagedFile::new(part_path(&self.work.dir, part));
        let path = target.final_path().to_path_buf();
        let file = create(&target)?;
        write_rows(&file, &path, &index, data, m)?;
        close(file, &path)?;
        target.commit().map_err(StoreError::from)?;
        self.work.done.insert(part);
        Ok(())
    }

    /// Every part's tables, in row order (`relevance`, `activation` and the maxima's
    /// positions; the heatmaps stay in the parts until [`finish`](Self::finish)).
    pub fn tables(&self) -> Result<ConceptTables, RunError> {
        let mut out: Option<ConceptTables> = None;
        for j in 0..self.work.batches.len() {
            let p = part_path(&self.work.dir, j);
            let file = h5util::open_file(&p)?;
            let index: Vec<u32> = read_all(&file, &p, "index")?.0;
            let layers = read_layer_infos(&file, &p)?;
            let t = out.get_or_insert_with(|| ConceptTables {
                index: Vec::new(),
                layers: layers
                    .iter()
                    .map(|(_, info)| LayerTables {
                        info: info.clone(),
                        relevance: Vec::new(),
                        activation: Vec::new(),
                        relevance_location: Vec::new(),
                        activation_location: Vec::new(),
                    })
                    .collect(),
            });
            if layers.len() != t.layers.len()
                || layers.iter().zip(&t.layers).any(|((_, a), b)| *a != b.info)
            {
                return Err(RunError::NotAPart {
                    path: p,
                    why: "has other layers than the first part",
                });
            }
            t.index.extend_from_slice(&index);
            for ((g, _), lt) in layers.iter().zip(t.layers.iter_mut()) {
                let grp = group(&file, &p, g)?;
                let at = |n: &str| format!("{g}/{n}");
                lt.relevance
                    .extend(read_all::<f32>(&grp, &p, &at("relevance"))?.0);
                lt.activation
                    .extend(read_all::<f32>(&grp, &p, &at("activation"))?.0);
                lt.relevance_location
                    .extend(read_all::<i64>(&grp, &p, &at("relevance_location"))?.0);
                lt.activation_location
                    .extend(read_all::<i64>(&grp, &p, &at("activation_location"))?.0);
            }
        }
        let t = out.ok_or_else(|| RunError::PartsMismatch {
            dir: self.work.dir.clone(),
            found: 0,
            expected: self.work.samples.len(),
        })?;
        if t.index.len() != self.work.samples.len() {
            return Err(RunError::PartsMismatch {
                dir: self.work.dir.clone(),
                found: t.index.len(),
                expected: self.work.samples.len(),
            });
        }
        Ok(t)
    }

    fn maxima_path(&self, layer: usize) -> PathBuf {
        self.work.dir.join(format!("maxima-{layer:03}.h5"))
    }

    /// The maxima of `layer` saved by an earlier, interrupted finish (crops included).
    pub fn saved_maxima(&self, layer: usize) -> Result<Option<LayerMaxima>, RunError> {
        let p = self.maxima_path(layer);
        if !p.exists() {
            return Ok(None);
        }
        let file = h5util::open_file(&p)?;
        Ok(Some(LayerMaxima {
            relmax: read_maxima(&file, &p, "relmax")?,
            actmax: read_maxima(&file, &p, "actmax")?,
        }))
    }

    /// Keeps `layer`'s maxima (with their crops) in the work directory, for a resumed run.
    pub fn save_maxima(&self, layer: usize, m: &LayerMaxima) -> Result<(), RunError> {
        let target = StagedFile::new(self.maxima_path(layer));
        let path = target.final_path().to_path_buf();
        let file = create(&target)?;
        write_maxima(&file, &path, "relmax", "relmax", &m.relmax)?;
        write_maxima(&file, &path, "actmax", "actmax", &m.actmax)?;
        close(file, &path)?;
        target.commit().map_err(StoreError::from)?;
        Ok(())
    }

    /// Copies the parts and `maxima` (one per layer) into the output, marks it complete,
    /// removes the work directory and releases the lock. Returns the output's path.
    pub fn finish(self, maxima: &[LayerMaxima]) -> Result<PathBuf, RunError> {
        let parts: Vec<PathBuf> = (0..self.work.batches.len())
            .map(|j| part_path(&self.work.dir, j))
            .collect();
        let s = &self.spec.settings;
        let prov = ConceptProvenance {
            run_key: self.run_key.clone(),
            base_key: s.base_key()?,
            settings: serde_json::to_string(s)?,
            model: self.spec.model_name.clone(),
            dataset: self.spec.dataset_name.clone(),
            target: s.target.clone(),
            total_samples: s.limit,
            shard: self.spec.shard,
        };
        assemble(&self.work.output, &parts, maxima, s.sample_heatmaps, &prov)?;
        let ConceptRun { work, .. } = self;
        let WorkDir {
            output, dir, lock, ..
        } = work;
        drop(lock);
        fs::remove_dir_all(&dir).map_err(io_err("remove", &dir))?;
        Ok(output)
    }
}

/// The root attributes of a concepts file.
#[derive(Debug, Clone)]
struct ConceptProvenance {
    run_key: String,
    base_key: String,
    settings: String,
    model: String,
    dataset: String,
    target: String,
    total_samples: usize,
    shard: Option<Shard>,
}

impl ConceptProvenance {
    fn write(&self, file: &hdf5::File, path: &Path) -> Result<(), StoreError> {
        let mut attrs = vec![
            (FORMAT_ATTR, AttrValue::Str(CONCEPTS_FORMAT.into())),
            (
                name::FORMAT_VERSION,
                AttrValue::Int(CONCEPTS_FORMAT_VERSION),
            ),
            (name::VERSION, AttrValue::Str(PRISM_VERSION.into())),
            (name::RUN_KEY, AttrValue::Str(self.run_key.clone())),
            (name::BASE_KEY, AttrValue::Str(self.base_key.clone())),
            (name::SETTINGS, AttrValue::Str(self.settings.clone())),
            (name::MODEL, AttrValue::Str(self.model.clone())),
            (name::DATASET, AttrValue::Str(self.dataset.clone())),
            (name::TARGET, AttrValue::Str(self.target.clone())),
            (
                name::TOTAL_SAMPLES,
                AttrValue::Int(self.total_samples as i64),
            ),
        ];
        if let Some(s) = self.shard {
            attrs.push((name::SHARD_INDEX, AttrValue::Int(s.index as i64)));
            attrs.push((name::SHARD_COUNT, AttrValue::Int(s.count as i64)));
        }
        attrs.push((name::COMPLETE, AttrValue::Int(1)));
        for (n, v) in &attrs {
            h5util::write_attr(file, path, "/", n, v)?;
        }
        Ok(())
    }

    fn read(file: &hdf5::File, path: &Path) -> Result<Option<ConceptProvenance>, StoreError> {
        let get = |n: &str| h5util::read_attr(file, path, "/", n);
        let text = |v: Option<AttrValue>| match v {
            Some(AttrValue::Str(s)) => Some(s),
            _ => None,
        };
        let int = |v: Option<AttrValue>| match v {
            Some(AttrValue::Int(i)) => usize::try_from(i).ok(),
            _ => None,
        };
        if text(get(FORMAT_ATTR)?).as_deref() != Some(CONCEPTS_FORMAT)
            || int(get(name::COMPLETE)?) != Some(1)
        {
            return Ok(None);
        }
        let shard = match (int(get(name::SHARD_INDEX)?), int(get(name::SHARD_COUNT)?)) {
            (Some(index), Some(count)) => Shard::new(index, count),
            _ => None,
        };
        let (Some(run_key), Some(base_key), Some(settings), Some(total_samples)) = (
            text(get(name::RUN_KEY)?),
            text(get(name::BASE_KEY)?),
            text(get(name::SETTINGS)?),
            int(get(name::TOTAL_SAMPLES)?),
        ) else {
            return Ok(None);
        };
        Ok(Some(ConceptProvenance {
            run_key,
            base_key,
            settings,
            model: text(get(name::MODEL)?).unwrap_or_default(),
            dataset: text(get(name::DATASET)?).unwrap_or_default(),
            target: text(get(name::TARGET)?).unwrap_or_default(),
            total_samples,
            shard,
        }))
    }
}

/// Whether `path` is a concepts file (its `prism_format`), for `prism merge`.
pub fn is_concepts_file(path: &Path) -> bool {
    let Ok(file) = h5util::open_file(path) else {
        return false;
    };
    matches!(
        h5util::read_attr(&file, path, "/", FORMAT_ATTR),
        Ok(Some(AttrValue::Str(s))) if s == CONCEPTS_FORMAT
    )
}

/// The run key of an existing complete concepts file.
fn complete_key(path: &Path) -> Option<String> {
    let file = h5util::open_file(path).ok()?;
    ConceptProvenance::read(&file, path)
        .ok()
        .flatten()
        .map(|p| p.run_key)
}

fn check_part(index: &[u32], d: &ConceptPart<'_>, m: usize) -> Result<(), String> {
    let k = index.len();
    if d.target.len() != k || d.prediction.is_empty() || d.prediction.len() % k != 0 {
        return Err(format!(
            "{} targets and {} outputs do not make {k} rows",
            d.target.len(),
            d.prediction.len()
        ));
    }
    let hw = d.input_hw[0] * d.input_hw[1];
    for l in &d.layers {
        let c = l.info.channels();
        let tables = [
            l.relevance.len(),
            l.activation.len(),
            l.relevance_location.len(),
            l.activation_location.len(),
        ];
        if tables.iter().any(|&n| n != k * c)
            || l.heatmap.len() != k * m * hw
            || l.heatmap_channel.len() != k * m
        {
            return Err(format!(
                "layer '{}': tables of {tables:?} values, {} heatmap values and {} heatmap \
                 channels do not make {k} rows of {c} channels and {m} heatmaps of {:?}",
                l.info.node,
                l.heatmap.len(),
                l.heatmap_channel.len(),
                d.input_hw
            ));
        }
    }
    Ok(())
}

fn create(target: &StagedFile) -> Result<hdf5::File, StoreError> {
    hdf5::File::create(target.temp_path()).map_err(|source| StoreError::Create {
        path: target.final_path().to_path_buf(),
        source,
    })
}

fn close(file: hdf5::File, path: &Path) -> Result<(), StoreError> {
    let err = |source| StoreError::Write {
        path: path.to_path_buf(),
        dataset: "/".into(),
        source,
    };
    file.flush().map_err(err)?;
    file.close().map_err(err)
}

fn write_err(path: &Path, dataset: &str) -> impl FnOnce(hdf5::Error) -> StoreError {
    let (path, dataset) = (path.to_path_buf(), dataset.to_string());
    move |source| StoreError::Write {
        path,
        dataset,
        source,
    }
}

/// A dataset `name` of `shape` in `loc`, holding `data`.
fn put<T: H5Type>(
    loc: &hdf5::Group,
    path: &Path,
    name: &str,
    shape: &[usize],
    data: &[T],
) -> Result<(), StoreError> {
    let arr =
        ndarray::ArrayViewD::from_shape(shape.to_vec(), data).map_err(|e| StoreError::Usage {
            path: path.to_path_buf(),
            message: format!("{name}: {e}"),
        })?;
    let ds = loc
        .new_dataset::<T>()
        .shape(shape.to_vec())
        .create(name)
        .map_err(write_err(path, name))?;
    ds.write(&arr).map_err(write_err(path, name))
}

fn group(file: &hdf5::Group, path: &Path, name: &str) -> Result<hdf5::Group, StoreError> {
    file.group(name).map_err(|source| StoreError::Read {
        path: path.to_path_buf(),
        dataset: name.into(),
        source,
    })
}

/// A whole dataset and its shape, checked against the read limit.
fn read_all<T: H5Type>(
    loc: &hdf5::Group,
    path: &Path,
    name: &str,
) -> Result<(Vec<T>, Vec<usize>), StoreError> {
    let short = name.rsplit('/').next().unwrap_or(name);
    let ds = loc.dataset(short).map_err(|source| StoreError::Read {
        path: path.to_path_buf(),
        dataset: name.into(),
        source,
    })?;
    h5util::check_declared(&ds, path, name, true)?;
    let v = ds.read_raw::<T>().map_err(|source| StoreError::Read {
        path: path.to_path_buf(),
        dataset: name.into(),
        source,
    })?;
    Ok((v, ds.shape()))
}

fn layer_name(i: usize) -> String {
    format!("layers/{i:03}")
}

/// The rows of one batch (a part) or of the whole run (the output's tables).
fn write_rows(
    file: &hdf5::File,
    path: &Path,
    index: &[u32],
    d: &ConceptPart<'_>,
    m: usize,
) -> Result<(), StoreError> {
    let k = index.len();
    put(file, path, "index", &[k], index)?;
    put(file, path, "target", &[k], d.target)?;
    put(
        file,
        path,
        "prediction",
        &[k, d.prediction.len() / k.max(1)],
        d.prediction,
    )?;
    file.create_group("layers")
        .map_err(write_err(path, "layers"))?;
    for (i, l) in d.layers.iter().enumerate() {
        let gname = layer_name(i);
        let g = file.create_group(&gname).map_err(write_err(path, &gname))?;
        write_layer_attrs(&g, path, &gname, l.info)?;
        let c = l.info.channels();
        put(&g, path, "relevance", &[k, c], l.relevance)?;
        put(&g, path, "activation", &[k, c], l.activation)?;
        put(
            &g,
            path,
            "relevance_location",
            &[k, c],
            l.relevance_location,
        )?;
        put(
            &g,
            path,
            "activation_location",
            &[k, c],
            l.activation_location,
        )?;
        if m > 0 {
            let [h, w] = d.input_hw;
            put(&g, path, "heatmap", &[k, m, h, w], l.heatmap)?;
            put(&g, path, "heatmap_channel", &[k, m], l.heatmap_channel)?;
        }
    }
    Ok(())
}

fn write_layer_attrs(
    g: &hdf5::Group,
    path: &Path,
    gname: &str,
    info: &LayerInfo,
) -> Result<(), StoreError> {
    h5util::write_attr(g, path, gname, "node", &AttrValue::Str(info.node.clone()))?;
    h5util::write_attr(
        g,
        path,
        gname,
        "tensor",
        &AttrValue::Str(info.tensor.clone()),
    )?;
    h5util::write_attr(
        g,
        path,
        gname,
        "shape",
        &AttrValue::IntArray(info.shape.iter().map(|&d| d as i64).collect()),
    )?;
    h5util::write_attr(
        g,
        path,
        gname,
        "channels",
        &AttrValue::Int(info.channels() as i64),
    )
}

/// The layer groups of a file: `(group name, info)`, in order.
fn read_layer_infos(
    file: &hdf5::File,
    path: &Path,
) -> Result<Vec<(String, LayerInfo)>, StoreError> {
    let layers = group(file, path, "layers")?;
    let mut names = layers.member_names().map_err(|source| StoreError::Read {
        path: path.to_path_buf(),
        dataset: "layers".into(),
        source,
    })?;
    names.sort();
    let mut out = Vec::new();
    for n in names {
        let gname = format!("layers/{n}");
        let g = group(file, path, &gname)?;
        let attr = |a: &str| h5util::read_attr(&g, path, &gname, a);
        let bad = |what: &str| StoreError::Invalid {
            path: path.to_path_buf(),
            dataset: gname.clone(),
            message: format!("its attribute `{what}` is missing or of the wrong type"),
        };
        let (Some(AttrValue::Str(node)), Some(AttrValue::Str(tensor))) =
            (attr("node")?, attr("tensor")?)
        else {
            return Err(bad("node"));
        };
        let shape = match attr("shape")? {
            Some(AttrValue::IntArray(v)) => v
                .into_iter()
                .map(usize::try_from)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| bad("shape"))?,
            Some(AttrValue::Int(d)) => vec![usize::try_from(d).map_err(|_| bad("shape"))?],
            _ => return Err(bad("shape")),
        };
        out.push((
            gname,
            LayerInfo {
                node,
                tensor,
                shape,
            },
        ));
    }
    Ok(out)
}

/// Writes `m` as the group `name` of `parent` (`gname`: the group's full name, for errors).
fn write_maxima(
    parent: &hdf5::Group,
    path: &Path,
    name: &str,
    gname: &str,
    m: &Maxima,
) -> Result<(), StoreError> {
    let g = parent.create_group(name).map_err(write_err(path, gname))?;
    h5util::write_attr(&g, path, gname, "crops", &AttrValue::Int(m.crops as i64))?;
    let (k, c) = (m.top_n, m.channels);
    put(&g, path, "sample", &[k, c], &m.sample)?;
    put(&g, path, "score", &[k, c], &m.score)?;
    put(&g, path, "location", &[k, c], &m.location)?;
    put(&g, path, "box", &[k, c, 4], &m.boxes)
}

fn read_maxima(file: &hdf5::File, path: &Path, gname: &str) -> Result<Maxima, StoreError> {
    let g = group(file, path, gname)?;
    let crops = match h5util::read_attr(&g, path, gname, "crops")? {
        Some(AttrValue::Int(n)) => usize::try_from(n).unwrap_or(0),
        _ => 0,
    };
    let at = |n: &str| format!("{gname}/{n}");
    let (sample, shape) = read_all::<i64>(&g, path, &at("sample"))?;
    let [k, c] = shape[..] else {
        return Err(StoreError::Shape {
            path: path.to_path_buf(),
            dataset: at("sample"),
            found: shape,
            expected: "K × channels".into(),
        });
    };
    let score = read_all::<f32>(&g, path, &at("score"))?.0;
    let location = read_all::<i64>(&g, path, &at("location"))?.0;
    let boxes = read_all::<i32>(&g, path, &at("box"))?.0;
    if score.len() != k * c || location.len() != k * c || boxes.len() != k * c * 4 {
        return Err(StoreError::Invalid {
            path: path.to_path_buf(),
            dataset: gname.into(),
            message: format!("`score`, `location` and `box` do not match `sample`'s {k}×{c}"),
        });
    }
    Ok(Maxima {
        top_n: k,
        channels: c,
        sample,
        score,
        location,
        boxes,
        crops,
    })
}

/// Writes the output from row sources (parts, or shards) and the maxima.
fn assemble(
    output: &Path,
    sources: &[PathBuf],
    maxima: &[LayerMaxima],
    m: usize,
    prov: &ConceptProvenance,
) -> Result<(), StoreError> {
    // The rows, concatenated source by source (tables are small: rows × C).
    let mut index: Vec<u32> = Vec::new();
    let mut target: Vec<u32> = Vec::new();
    let mut prediction: Vec<f32> = Vec::new();
    let mut infos: Vec<(String, LayerInfo)> = Vec::new();
    let mut rel: Vec<Vec<f32>> = Vec::new();
    let mut act: Vec<Vec<f32>> = Vec::new();
    let mut rel_loc: Vec<Vec<i64>> = Vec::new();
    let mut act_loc: Vec<Vec<i64>> = Vec::new();
    let mut hm_channel: Vec<Vec<i32>> = Vec::new();
    let mut hw = [0usize; 2];
    for p in sources {
        let file = h5util::open_file(p)?;
        index.extend(read_all::<u32>(&file, p, "index")?.0);
        target.extend(read_all::<u32>(&file, p, "target")?.0);
        prediction.extend(read_all::<f32>(&file, p, "prediction")?.0);
        let li = read_layer_infos(&file, p)?;
        if infos.is_empty() {
            infos = li.clone();
            rel = vec![Vec::new(); li.len()];
            act = vec![Vec::new(); li.len()];
            rel_loc = vec![Vec::new(); li.len()];
            act_loc = vec![Vec::new(); li.len()];
            hm_channel = vec![Vec::new(); li.len()];
        } else if li.iter().map(|(_, i)| i).ne(infos.iter().map(|(_, i)| i)) {
            return Err(StoreError::Invalid {
                path: p.clone(),
                dataset: "layers".into(),
                message: "its layers differ from the first file's".into(),
            });
        }
        for (i, (g, _)) in li.iter().enumerate() {
            let grp = group(&file, p, g)?;
            let at = |n: &str| format!("{g}/{n}");
            rel[i].extend(read_all::<f32>(&grp, p, &at("relevance"))?.0);
            act[i].extend(read_all::<f32>(&grp, p, &at("activation"))?.0);
            rel_loc[i].extend(read_all::<i64>(&grp, p, &at("relevance_location"))?.0);
            act_loc[i].extend(read_all::<i64>(&grp, p, &at("activation_location"))?.0);
            if m > 0 {
                hm_channel[i].extend(read_all::<i32>(&grp, p, &at("heatmap_channel"))?.0);
                let ds = grp.dataset("heatmap").map_err(|source| StoreError::Read {
                    path: p.clone(),
                    dataset: at("heatmap"),
                    source,
                })?;
                if let [_, _, h, w] = ds.shape()[..] {
                    hw = [h, w];
                }
            }
        }
    }
    if maxima.len() != infos.len() {
        return Err(StoreError::Usage {
            path: output.to_path_buf(),
            message: format!("{} maxima for {} layers", maxima.len(), infos.len()),
        });
    }
    let n = index.len();
    let stage = StagedFile::new(output);
    let path = stage.final_path().to_path_buf();
    let file = create(&stage)?;
    let empty_f: Vec<f32> = Vec::new();
    let empty_i: Vec<i32> = Vec::new();
    let layer_rows: Vec<LayerRows<'_>> = infos
        .iter()
        .enumerate()
        .map(|(i, (_, info))| LayerRows {
            info,
            relevance: &rel[i],
            activation: &act[i],
            relevance_location: &rel_loc[i],
            activation_location: &act_loc[i],
            heatmap: &empty_f,
            heatmap_channel: &empty_i,
        })
        .collect();
    write_rows(
        &file,
        &path,
        &index,
        &ConceptPart {
            target: &target,
            prediction: &prediction,
            input_hw: hw,
            layers: layer_rows,
        },
        0,
    )?;
    for (i, (gname, _)) in infos.iter().enumerate() {
        let g = group(&file, &path, gname)?;
        let at = |n: &str| format!("{gname}/{n}");
        write_maxima(&g, &path, "relmax", &at("relmax"), &maxima[i].relmax)?;
        write_maxima(&g, &path, "actmax", &at("actmax"), &maxima[i].actmax)?;
        if m > 0 {
            put(&g, &path, "heatmap_channel", &[n, m], &hm_channel[i])?;
            // The heatmaps, copied source by source (they are the bulk of the file).
            let [h, w] = hw;
            let ds = g
                .new_dataset::<f32>()
                .shape([n, m, h, w])
                .chunk([1, m.max(1), h.max(1), w.max(1)])
                .deflate(4)
                .create("heatmap")
                .map_err(write_err(&path, "heatmap"))?;
            let mut row = 0;
            for p in sources {
                let src = h5util::open_file(p)?;
                let sg = group(&src, p, gname)?;
                let (data, shape) = read_all::<f32>(&sg, p, &format!("{gname}/heatmap"))?;
                let k = shape.first().copied().unwrap_or(0);
                let arr = ndarray::ArrayView4::from_shape((k, m, h, w), &data).map_err(|e| {
                    StoreError::Invalid {
                        path: p.clone(),
                        dataset: format!("{gname}/heatmap"),
                        message: e.to_string(),
                    }
                })?;
                ds.write_slice(&arr, ndarray::s![row..row + k, .., .., ..])
                    .map_err(write_err(&path, "heatmap"))?;
                row += k;
            }
        }
    }
    prov.write(&file, &path)?;
    close(file, &path)?;
    stage.commit()?;
    Ok(())
}

/// The tables and maxima of a complete concepts file (heatmaps are not read): what tests and
/// tools compare. The viewer reads files row by row instead.
pub fn read_concepts(path: &Path) -> Result<(ConceptTables, Vec<LayerMaxima>), StoreError> {
    let file = open_complete(path)?;
    let index = read_all::<u32>(&file, path, "index")?.0;
    let mut layers = Vec::new();
    let mut maxima = Vec::new();
    for (g, info) in read_layer_infos(&file, path)? {
        let grp = group(&file, path, &g)?;
        let at = |n: &str| format!("{g}/{n}");
        layers.push(LayerTables {
            info,
            relevance: read_all(&grp, path, &at("relevance"))?.0,
            activation: read_all(&grp, path, &at("activation"))?.0,
            relevance_location: read_all(&grp, path, &at("relevance_location"))?.0,
            activation_location: read_all(&grp, path, &at("activation_location"))?.0,
        });
        maxima.push(LayerMaxima {
            relmax: read_maxima(&file, path, &at("relmax"))?,
            actmax: read_maxima(&file, path, &at("actmax"))?,
        });
    }
    Ok((ConceptTables { index, layers }, maxima))
}

/// Opens a concepts file, refusing one that is not complete.
fn open_complete(path: &Path) -> Result<hdf5::File, StoreError> {
    let file = h5util::open_file(path)?;
    if ConceptProvenance::read(&file, path)?.is_none() {
        return Err(StoreError::Invalid {
            path: path.to_path_buf(),
            dataset: "/".into(),
            message: "not a complete Prism concepts file (an interrupted `prism concepts`? \
                      rerun it with the same arguments)"
                .into(),
        });
    }
    Ok(file)
}

/// The rows and layers of a complete concepts file, read without its tables.
pub fn concepts_summary(path: &Path) -> Result<(usize, Vec<LayerInfo>), StoreError> {
    let file = open_complete(path)?;
    let rows = file
        .dataset("index")
        .map_err(|source| StoreError::Read {
            path: path.to_path_buf(),
            dataset: "index".into(),
            source,
        })?
        .size();
    let layers = read_layer_infos(&file, path)?
        .into_iter()
        .map(|(_, info)| info)
        .collect();
    Ok((rows, layers))
}

/// One layer's conditional heatmaps (`prism concepts --sample-heatmaps M`).
#[derive(Debug, Clone, PartialEq)]
pub struct SampleHeatmaps {
    /// `[N, M, H, W]`.
    pub shape: [usize; 4],
    /// Row-major, `shape`'s product values.
    pub heatmap: Vec<f32>,
    /// `N × M`: the channel of each heatmap (-1 for padding, where the layer has fewer than
    /// M channels).
    pub channel: Vec<i32>,
}

/// What [`read_concepts`] leaves out of a concepts file: per row the class explained and the
/// model output, per layer the conditional heatmaps.
#[derive(Debug, Clone, PartialEq)]
pub struct ConceptRows {
    /// `N`.
    pub target: Vec<u32>,
    /// `N × classes`.
    pub prediction: Vec<f32>,
    pub classes: usize,
    /// One per layer, in file order; `None` for a run without heatmaps.
    pub heatmaps: Vec<Option<SampleHeatmaps>>,
}

/// The targets, model outputs and conditional heatmaps of a complete concepts file (each
/// dataset checked against the rows of `index`).
pub fn read_concept_rows(path: &Path) -> Result<ConceptRows, StoreError> {
    let file = open_complete(path)?;
    let n = read_all::<u32>(&file, path, "index")?.0.len();
    let shape_err = |dataset: String, found: Vec<usize>, expected: String| StoreError::Shape {
        path: path.to_path_buf(),
        dataset,
        found,
        expected,
    };
    let (target, shape) = read_all::<u32>(&file, path, "target")?;
    if shape != [n] {
        return Err(shape_err(
            "target".into(),
            shape,
            format!("[{n}] (one per row)"),
        ));
    }
    let (prediction, shape) = read_all::<f32>(&file, path, "prediction")?;
    let classes = match shape[..] {
        [rows, classes] if rows == n => classes,
        _ => {
            return Err(shape_err(
                "prediction".into(),
                shape,
                format!("[{n}, classes]"),
            ))
        }
    };
    let mut heatmaps = Vec::new();
    for (g, _) in read_layer_infos(&file, path)? {
        let grp = group(&file, path, &g)?;
        let at = |name: &str| format!("{g}/{name}");
        if !grp.link_exists("heatmap") {
            heatmaps.push(None);
            continue;
        }
        let (heatmap, shape) = read_all::<f32>(&grp, path, &at("heatmap"))?;
        let [rows, m, h, w] = shape[..] else {
            return Err(shape_err(at("heatmap"), shape, format!("[{n}, M, H, W]")));
        };
        if rows != n {
            return Err(shape_err(at("heatmap"), shape, format!("[{n}, M, H, W]")));
        }
        let (channel, cshape) = read_all::<i32>(&grp, path, &at("heatmap_channel"))?;
        if cshape != [n, m] {
            return Err(shape_err(
                at("heatmap_channel"),
                cshape,
                format!("[{n}, {m}] (as `heatmap`)"),
            ));
        }
        heatmaps.push(Some(SampleHeatmaps {
            shape: [rows, m, h, w],
            heatmap,
            channel,
        }));
    }
    Ok(ConceptRows {
        target,
        prediction,
        classes,
        heatmaps,
    })
}

/// What [`merge_concepts`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedConcepts {
    pub output: PathBuf,
    pub shards: usize,
    pub samples: usize,
}

/// Joins the complete shards of one concepts run into `output`: the file the unsharded run
/// would have written (rows in sample order, each channel's best samples over all shards).
pub fn merge_concepts(
    shards: &[PathBuf],
    output: &Path,
    force: bool,
) -> Result<MergedConcepts, MergeError> {
    if output.exists() && !force {
        return Err(MergeError::OutputExists {
            path: output.to_path_buf(),
        });
    }
    if shards.iter().any(|s| s == output) {
        return Err(MergeError::OutputIsShard);
    }
    let mut records: Vec<(PathBuf, ConceptProvenance, u32)> = Vec::new();
    for p in shards {
        let open = |source| MergeError::Open {
            path: p.clone(),
            source,
        };
        let file = h5util::open_file(p).map_err(open)?;
        let Some(prov) = ConceptProvenance::read(&file, p).map_err(open)? else {
            return Err(MergeError::Incomplete { path: p.clone() });
        };
        let index = read_all::<u32>(&file, p, "index").map_err(open)?.0;
        let Some(&first) = index.first() else {
            return Err(MergeError::NoIndex { path: p.clone() });
        };
        if index.windows(2).any(|w| w[0] >= w[1]) {
            return Err(MergeError::NotAscending { path: p.clone() });
        }
        records.push((p.clone(), prov, first));
    }
    let Some(first) = records.first().cloned() else {
        return Err(MergeError::NoShards);
    };
    for (p, prov, _) in &records {
        if prov.base_key != first.1.base_key {
            return Err(MergeError::OtherRun {
                path: p.clone(),
                first: first.0.clone(),
            });
        }
    }
    records.sort_by_key(|r| r.2);
    // Coverage: every sample once.
    let total = first.1.total_samples;
    let mut owner: Vec<Option<usize>> = vec![None; total];
    for (fi, (p, _, _)) in records.iter().enumerate() {
        let file = h5util::open_file(p)?;
        for i in read_all::<u32>(&file, p, "index")?.0 {
            let i = i as usize;
            if i >= total {
                return Err(MergeError::Beyond {
                    path: p.clone(),
                    sample: i,
                    total,
                });
            }
            if let Some(o) = owner[i] {
                return Err(MergeError::Overlap {
                    first: records[o].0.clone(),
                    second: p.clone(),
                    sample: i,
                });
            }
            owner[i] = Some(fi);
        }
    }
    let missing = owner.iter().filter(|o| o.is_none()).count();
    if let Some(first_missing) = owner.iter().position(Option::is_none) {
        return Err(MergeError::Missing {
            missing,
            total,
            first: first_missing,
            shards: first.1.shard.map_or(1, |s| s.count),
            given: records.len(),
        });
    }
    let settings: ConceptSettings =
        serde_json::from_str(&first.1.settings).map_err(|e| StoreError::Invalid {
            path: first.0.clone(),
            dataset: format!("/@{}", name::SETTINGS),
            message: format!("cannot read the run's settings: {e}"),
        })?;
    // Each layer's maxima: the union of the shards', cut to top_n.
    let paths: Vec<PathBuf> = records.iter().map(|r| r.0.clone()).collect();
    let mut per_layer: Vec<(Vec<Maxima>, Vec<Maxima>)> = Vec::new();
    for p in &paths {
        let file = h5util::open_file(p)?;
        let infos = read_layer_infos(&file, p)?;
        if per_layer.is_empty() {
            per_layer = vec![(Vec::new(), Vec::new()); infos.len()];
        }
        if infos.len() != per_layer.len() {
            return Err(MergeError::OtherRun {
                path: p.clone(),
                first: paths[0].clone(),
            });
        }
        for (i, (g, _)) in infos.iter().enumerate() {
            per_layer[i]
                .0
                .push(read_maxima(&file, p, &format!("{g}/relmax"))?);
            per_layer[i]
                .1
                .push(read_maxima(&file, p, &format!("{g}/actmax"))?);
        }
    }
    let maxima: Vec<LayerMaxima> = per_layer
        .iter()
        .map(|(r, a)| LayerMaxima {
            relmax: Maxima::merge(r, settings.top_n, settings.crops),
            actmax: Maxima::merge(a, settings.top_n, settings.crops),
        })
        .collect();
    let prov = ConceptProvenance {
        run_key: first.1.base_key.clone(),
        shard: None,
        ..first.1.clone()
    };
    assemble(output, &paths, &maxima, settings.sample_heatmaps, &prov)?;
    Ok(MergedConcepts {
        output: output.to_path_buf(),
        shards: records.len(),
        samples: total,
    })
}
