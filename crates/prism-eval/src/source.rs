//! Dataset-scale runs: samples streamed in chunks from a dataset, read by `prism-store`'s
//! dataset readers (the ones `prism attribute --dataset` uses: HDF5, image folders, `.npy`),
//! optionally with the attributions of an attribution file written by `prism attribute`,
//! matched to the dataset by sample number (the file's `index`).
//!
//! The file's provenance names its dataset (by file name: looked for beside the file, then in
//! the working directory, unless a dataset is given), its target and its method; the dataset's
//! fingerprint must be the one recorded (same data, same preprocessing flags). Only one chunk
//! of samples and attributions is in memory at a time.

use std::path::{Path, PathBuf};

use prism_attribution::{CompositeSource, MethodSpec, Target};
use prism_model::{Float, NonFiniteReport, Tensor};
use prism_store::dataset::{Dataset, DatasetOptions};
use prism_store::{AttributionFile, NpyArray, Provenance, TargetSpec};

use crate::error::{EvalError, Result};
use crate::evaluate::{Chunk, Given};
use crate::method::Method;

/// Where a dataset-scale run's samples (and attributions) come from.
#[derive(Clone, Debug, Default)]
pub struct SourceSpec {
    /// The dataset; `None`: the one the attribution file's provenance names.
    pub dataset: Option<PathBuf>,
    /// How the dataset is read and preprocessed (as for `prism attribute`).
    pub options: DatasetOptions,
    /// An attribution file of `prism attribute` to evaluate instead of computing methods.
    pub attributions: Option<PathBuf>,
    /// IROF's segments: a `.npy` of integer labels, one `H × W` map per dataset sample.
    pub segments: Option<PathBuf>,
    /// Only the first N samples (of the attribution file's rows, or of the dataset).
    pub limit: Option<usize>,
    /// Batches decoded ahead of the evaluation.
    pub prefetch: usize,
    /// Accept samples holding NaN or ±Inf.
    pub allow_nonfinite: bool,
}

/// An opened source: the dataset, the run's sample numbers and the given attributions.
pub struct Source {
    /// The dataset read.
    pub dataset_path: PathBuf,
    dataset: Dataset,
    /// The dataset sample number of each sample of the run, in run order.
    pub indices: Vec<usize>,
    attributions: Option<AttributionFile>,
    /// The attribution file as a method (empty without a file).
    pub given: Vec<Given>,
    /// The target the attribution file was made for (`label`, `predicted` or a class), when
    /// its provenance says.
    pub recorded_target: Option<String>,
    /// Things the user should know (printed by the front ends).
    pub notes: Vec<String>,
    segments: Option<NpyArray>,
    allow_nonfinite: bool,
}

fn read_err(what: String) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> EvalError {
    move |source| EvalError::Read { what, source }
}

/// A method's name as `prism evaluate --methods` spells it: `COMPOSITE`, `ATTRIBUTOR` or
/// `COMPOSITE+ATTRIBUTOR`.
fn method_name(spec: &MethodSpec) -> String {
    let composite = match &spec.composite {
        CompositeSource::None => None,
        CompositeSource::Builtin { name } => Some(name.clone()),
        CompositeSource::File { path, .. } => Some(
            path.file_stem()
                .map_or_else(|| "composite".into(), |s| s.to_string_lossy().into_owned()),
        ),
    };
    match composite {
        None => spec.attributor.clone(),
        Some(c) if spec.attributor == "gradient" => c,
        Some(c) => format!("{c}+{}", spec.attributor),
    }
}

impl Source {
    /// Opens the dataset (and the attribution file), checks that they belong together, and
    /// lists the run's samples. `model` is the model to evaluate (a note says when the file
    /// was made with another one).
    pub fn open(spec: &SourceSpec, model: &Path) -> Result<Source> {
        let mut notes = Vec::new();
        let file = match &spec.attributions {
            Some(p) => Some(
                AttributionFile::open(p)
                    .map_err(|e| read_err(format!("reading {}", p.display()))(e.into()))?,
            ),
            None => None,
        };
        let provenance = match &file {
            Some(f) => Provenance::read(f)
                .map_err(|e| read_err(format!("reading {}", f.path().display()))(e.into()))?,
            None => None,
        };
        let dataset_path = match (&spec.dataset, &file, &provenance) {
            (Some(d), _, _) => d.clone(),
            (None, Some(f), Some(p)) => {
                let beside = f
                    .path()
                    .parent()
                    .map(|d| d.join(&p.dataset))
                    .filter(|c| c.exists());
                match beside.or_else(|| Some(PathBuf::from(&p.dataset)).filter(|c| c.exists())) {
                    Some(d) => d,
                    None => {
                        return Err(EvalError::Invalid(format!(
                            "{} was made from the dataset `{}` (its file name only), which is \
                             neither beside it nor in the working directory; give the dataset",
                            f.path().display(),
                            p.dataset
                        )))
                    }
                }
            }
            (None, Some(f), None) => {
                return Err(EvalError::Invalid(format!(
                    "{} has no Prism provenance naming its dataset; give the dataset its rows \
                     were computed from",
                    f.path().display()
                )))
            }
            (None, None, _) => {
                return Err(EvalError::Invalid(
                    "no dataset and no attribution file to read samples from".into(),
                ))
            }
        };
        let dataset = Dataset::open(&dataset_path, &spec.options).map_err(|e| {
            read_err(format!("opening dataset {}", dataset_path.display()))(e.into())
        })?;
        let mut indices: Vec<usize> = match &file {
            Some(f) => (0..f.n_samples())
                .map(|r| f.sample_number(r) as usize)
                .collect(),
            None => (0..dataset.len()).collect(),
        };
        if let Some(l) = spec.limit {
            indices.truncate(l);
        }
        if indices.is_empty() {
            return Err(EvalError::Invalid(format!(
                "{} has no samples to evaluate",
                dataset_path.display()
            )));
        }
        let mut given = Vec::new();
        let mut recorded_target = None;
        if let Some(f) = &file {
            let fname = f.path().display();
            if let Some(p) = &provenance {
                if p.settings.dataset_fingerprint != dataset.fingerprint() {
                    return Err(EvalError::Invalid(format!(
                        "{} is not the dataset {fname} was computed from (its fingerprint \
                         differs: other samples, or other preprocessing flags than those given \
                         to `prism attribute`)",
                        dataset_path.display()
                    )));
                }
                if p.settings.dataset_len != dataset.len() {
                    return Err(EvalError::Invalid(format!(
                        "{fname} was computed from a dataset of {} samples; {} has {}",
                        p.settings.dataset_len,
                        dataset_path.display(),
                        dataset.len()
                    )));
                }
                let hash = prism_store::run::hash_file(model)
                    .map_err(|e| read_err(format!("reading {}", model.display()))(e.into()))?;
                if hash != p.settings.model_blake3 {
                    notes.push(format!(
                        "note: {fname} was computed with another model ({}) than {}",
                        p.model,
                        model.display()
                    ));
                }
                recorded_target = Some(p.settings.target.clone());
            }
            if let Some(&bad) = indices.iter().find(|&&i| i >= dataset.len()) {
                return Err(EvalError::Invalid(format!(
                    "{fname} holds sample number {bad}, but {} has {} samples",
                    dataset_path.display(),
                    dataset.len()
                )));
            }
            let mut x_shape = vec![1];
            x_shape.extend_from_slice(dataset.input_shape());
            let r_shape = relevance_shape(f, &x_shape, 1);
            crate::relevance_sample_len(&r_shape, &x_shape).map_err(|_| {
                EvalError::Invalid(format!(
                    "{fname} holds attributions of shape {:?} per sample, but the samples of {} \
                     have shape {:?}; evaluate the file with the dataset (and preprocessing) it \
                     was computed from",
                    &f.shape()[1..],
                    dataset_path.display(),
                    dataset.input_shape()
                ))
            })?;
            let (name, method) = match &provenance {
                Some(p) => {
                    let name = method_name(&p.settings.method);
                    match Method::from_spec(name.clone(), p.settings.method.clone(), None) {
                        Ok(m) => (name, Some(m)),
                        Err(_) => {
                            notes.push(format!(
                                "note: the method of {fname} ({name}) cannot be rebuilt here \
                                 (a composite file?); completeness and randomisation skip it"
                            ));
                            (name, None)
                        }
                    }
                }
                None => (
                    f.path()
                        .file_stem()
                        .map_or_else(|| "attributions".into(), |s| s.to_string_lossy().into()),
                    None,
                ),
            };
            given.push(Given { name, method });
        }
        let segments = match &spec.segments {
            Some(p) => {
                let a = NpyArray::open(p)
                    .map_err(|e| read_err(format!("reading {}", p.display()))(e.into()))?;
                let want = dataset.sample_shape();
                let top = indices.iter().max().copied().unwrap_or(0);
                if a.shape().len() != 3 || a.shape()[1..] != want[1..] || a.shape()[0] <= top {
                    return Err(EvalError::Invalid(format!(
                        "{}: segments of shape {:?}; expected one {}×{} label map per dataset \
                         sample (at least {} × {} × {})",
                        p.display(),
                        a.shape(),
                        want[1],
                        want[2],
                        top + 1,
                        want[1],
                        want[2]
                    )));
                }
                Some(a)
            }
            None => None,
        };
        Ok(Source {
            dataset_path,
            dataset,
            indices,
            attributions: file,
            given,
            recorded_target,
            notes,
            segments,
            allow_nonfinite: spec.allow_nonfinite,
        })
    }

    /// Samples in the run.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Whether the run has no samples (never, once opened).
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// The run in chunks of `batch` samples for `target`, decoded `prefetch` batches ahead.
    pub fn chunks<T: Float>(
        &self,
        batch: usize,
        target: TargetSpec,
        prefetch: usize,
    ) -> impl Iterator<Item = Result<Chunk<T>>> + '_ {
        let batch = batch.max(1);
        let stream = self.dataset.batches(self.indices.clone(), batch, prefetch);
        stream.enumerate().map(move |(j, b)| {
            let path = &self.dataset_path;
            let b = b.map_err(|e| read_err(format!("reading {}", path.display()))(e.into()))?;
            let k = b.indices.len();
            let mut shape = vec![k];
            shape.extend_from_slice(self.dataset.input_shape());
            let x = Tensor::new(shape, b.data.iter().map(|&v| T::of(f64::from(v))).collect())?;
            if !self.allow_nonfinite {
                if let Some(report) = NonFiniteReport::scan(&x, 0) {
                    let report = report.renumbered(|s| b.indices.get(s).copied().unwrap_or(s));
                    return Err(EvalError::Invalid(format!(
                        "{} holds {report} (numbered as in the dataset); check the dataset and \
                         its preprocessing, or allow non-finite values",
                        path.display()
                    )));
                }
            }
            let target = match target {
                TargetSpec::Predicted => Target::Predicted,
                TargetSpec::Class(c) => Target::Class(c),
                TargetSpec::Label => Target::PerSample(
                    b.labels
                        .iter()
                        .zip(&b.indices)
                        .map(|(l, i)| {
                            l.map(|v| v as usize).ok_or_else(|| {
                                EvalError::Invalid(format!(
                                    "the target `label` needs every sample's label, but sample \
                                     {i} of {} has none; use the predicted class",
                                    path.display()
                                ))
                            })
                        })
                        .collect::<Result<_>>()?,
                ),
            };
            let rows: Vec<usize> = (j * batch..j * batch + k).collect();
            let mut relevance = Vec::new();
            if let Some(f) = &self.attributions {
                let data = f
                    .read_rows(&rows)
                    .map_err(|e| read_err(format!("reading {}", f.path().display()))(e.into()))?;
                let r_shape = relevance_shape(f, x.shape(), k);
                relevance.push(Tensor::new(
                    r_shape,
                    data.iter().map(|&v| T::of(f64::from(v))).collect(),
                )?);
            }
            let segments = match &self.segments {
                Some(a) => Some(
                    b.indices
                        .iter()
                        .map(|&i| read_labels(a, i))
                        .collect::<Result<Vec<_>>>()?,
                ),
                None => None,
            };
            Ok(Chunk {
                x,
                target,
                relevance,
                segments,
            })
        })
    }
}

/// The shape of `k` rows of `f`'s attributions as the metrics read them: as stored, or with a
/// channel axis of 1 inserted when the file is N×H×W for N×C×H×W inputs.
fn relevance_shape(f: &AttributionFile, x_shape: &[usize], k: usize) -> Vec<usize> {
    let mut s = vec![k];
    if f.shape().len() + 1 == x_shape.len() && x_shape.len() == 4 {
        s.push(1);
    }
    s.extend_from_slice(&f.shape()[1..]);
    s
}

/// Row `i` of a segments array as labels (non-negative integers).
fn read_labels(a: &NpyArray, i: usize) -> Result<Vec<usize>> {
    let row = a
        .read_rows(i, i + 1)
        .map_err(|e| read_err(format!("reading {}", a.path().display()))(e.into()))?;
    row.iter()
        .map(|&v| {
            if v >= 0.0 && v.fract() == 0.0 && v < 1e9 {
                Ok(v as usize)
            } else {
                Err(EvalError::Invalid(format!(
                    "{}: sample {i} has the segment label {v}; labels are integers 0..S",
                    a.path().display()
                )))
            }
        })
        .collect()
}

/// Segments for IROF from an in-memory array: `n × h × w` labels (as read from a `.npy`).
pub fn segments_from<T: Float>(labels: &Tensor<T>, x_shape: &[usize]) -> Result<Vec<Vec<usize>>> {
    let (_, h, w) = crate::perturbation::sample_layout(x_shape)?;
    let n = x_shape[0];
    if labels.shape() != [n, h, w] {
        return Err(EvalError::Invalid(format!(
            "segments of shape {:?} for inputs of shape {x_shape:?}; expected {n}×{h}×{w}",
            labels.shape()
        )));
    }
    labels
        .data()
        .chunks(h * w)
        .enumerate()
        .map(|(i, s)| {
            s.iter()
                .map(|v| {
                    let v = v.f64();
                    if v >= 0.0 && v.fract() == 0.0 && v < 1e9 {
                        Ok(v as usize)
                    } else {
                        Err(EvalError::Invalid(format!(
                            "sample {i} has the segment label {v}; labels are integers 0..S"
                        )))
                    }
                })
                .collect()
        })
        .collect()
}
