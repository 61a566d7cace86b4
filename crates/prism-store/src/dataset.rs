//! Datasets for dataset-wide attribution: ViRelAy HDF5 datasets (`data`, `label`), image folders
//! (one sub-folder per class, like torchvision's `ImageFolder`) and `.npy` arrays with labels.
//!
//! A [`Dataset`] gives random access to preprocessed samples ([`Dataset::read_batch`], N×C×H×W
//! f32), so that sharding and resuming are a matter of choosing indices, and a prefetching
//! iterator ([`Dataset::batches`]) that decodes the next batches on a background thread while the
//! caller runs the model. Nothing holds the dataset in memory: HDF5 is read by hyperslab, `.npy`
//! by byte range, images one batch at a time (decoded in parallel with rayon). Only labels and
//! the file list are kept. [`Dataset::fingerprint`] identifies the dataset and its preprocessing,
//! so that a resumed run can check it continues the same work. See `docs/datasets.md`.

mod array;
mod display;
mod image_folder;
mod preprocess;
mod spelled;
mod tokens;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::h5util::row_runs;
use array::{Hdf5Data, NpyData};
use image_folder::ImageFolder;

pub use display::{resample, DisplayDataset, DisplayError, RgbImage};
pub use preprocess::{Normalize, Preprocess, Resize, IMAGENET_MEAN, IMAGENET_STD};
pub use spelled::{parse_size, DatasetOptionsText, OptionTextError};
pub use tokens::TokenDataset;
pub use writer::{write_dataset, DataLayout, DatasetWriter, SampleType};

/// Errors from opening or reading a dataset. Each names the file (and dataset or image).
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// An HDF5 error (open, missing dataset, type, read), with file and dataset.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file or folder could not be read.
    #[error("cannot read `{path}`")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An image could not be opened, decoded or fitted to the dataset's sample size.
    #[error("image `{path}` (sample {index}): {message}")]
    Image {
        path: PathBuf,
        index: usize,
        message: String,
    },
    /// The folder holds images of formats Prism does not decode (torchvision would use them).
    #[error(
        "`{path}`: {count} image(s) of a format Prism does not read (only PNG and JPEG); convert \
         them to PNG, or move them out of the folder"
    )]
    UnsupportedImage { path: PathBuf, count: usize },
    /// No samples (or a class without samples).
    #[error("`{path}`: {message}")]
    Empty { path: PathBuf, message: String },
    /// A `.npy` file is malformed, truncated or of an unsupported type.
    #[error("`{path}`: {message}")]
    Npy { path: PathBuf, message: String },
    /// The data has a rank or shape Prism cannot use.
    #[error("`{path}`: `{dataset}` has shape {found:?}, but {expected}")]
    Shape {
        path: PathBuf,
        dataset: String,
        found: Vec<usize>,
        expected: String,
    },
    /// The labels do not match the samples one to one.
    #[error(
        "`{path}` has {samples} samples, but the labels `{labels}` have shape {found:?} (N or \
         N×classes with N = {samples} expected)"
    )]
    LabelCount {
        path: PathBuf,
        labels: String,
        samples: usize,
        found: Vec<usize>,
    },
    /// Label values are not class numbers or n-hot bits.
    #[error("labels `{labels}`: {message}")]
    Labels { labels: String, message: String },
    /// Invalid or inapplicable options.
    #[error("dataset options: {message}")]
    Options { message: String },
    /// The dataset's kind could not be told from its path.
    #[error("`{path}`: {message}")]
    Kind { path: PathBuf, message: String },
    /// A sample index beyond the dataset.
    #[error("`{path}`: sample {index} does not exist (the dataset has {len} samples)")]
    Index {
        path: PathBuf,
        index: usize,
        len: usize,
    },
    /// The background decoding thread stopped without an error value (it panicked).
    #[error("`{path}`: the background decoding thread stopped unexpectedly: {message}")]
    Thread { path: PathBuf, message: String },
}

/// Short alias for dataset results.
pub type Result<T, E = DatasetError> = std::result::Result<T, E>;

/// The kinds of dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetKind {
    /// A ViRelAy HDF5 dataset: `data` (N×C×H×W, N×H×W or N×F) and `label`.
    Hdf5,
    /// A folder with one sub-folder per class (PNG and JPEG images).
    ImageFolder,
    /// A `.npy` array (N×C×H×W, N×H×W or N×F), labels from a second `.npy` file.
    Npy,
}

impl DatasetKind {
    /// The kind's name as used on the command line and in fingerprints.
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Hdf5 => "hdf5",
            DatasetKind::ImageFolder => "image-folder",
            DatasetKind::Npy => "npy",
        }
    }

    /// Parses `hdf5`, `image-folder` (or `images`), `npy`.
    pub fn by_name(name: &str) -> Result<Self> {
        match name.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "hdf5" | "h5" => Ok(DatasetKind::Hdf5),
            "image-folder" | "images" | "image-directory" => Ok(DatasetKind::ImageFolder),
            "npy" => Ok(DatasetKind::Npy),
            other => Err(DatasetError::Options {
                message: format!(
                    "unknown dataset kind `{other}`; use `hdf5`, `image-folder` or `npy`"
                ),
            }),
        }
    }
}

/// How to open a dataset.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DatasetOptions {
    /// The kind; `None` tells it from the path (directory → image folder, `.h5`/`.hdf5` → HDF5,
    /// `.npy` → array).
    pub kind: Option<DatasetKind>,
    /// Labels of a `.npy` dataset; `None` looks for `<stem>.labels.npy` beside it, else the
    /// samples are unlabelled.
    pub labels: Option<PathBuf>,
    /// Preprocessing (see [`Preprocess`]).
    pub preprocess: Preprocess,
}

/// Labels: the class of each sample and, for n-hot labels, the bits.
#[derive(Debug, Clone, Default)]
pub(crate) struct LabelSet {
    first: Vec<Option<u32>>,
    multi_hot: Option<(usize, Vec<bool>)>,
}

impl LabelSet {
    /// n-hot rows; a sample's class is its first (lowest) set bit, `None` if none is set.
    fn multi_hot(n_classes: usize, bits: Vec<bool>) -> Self {
        let first = bits
            .chunks(n_classes.max(1))
            .map(|row| row.iter().position(|&b| b).map(|c| c as u32))
            .collect();
        LabelSet {
            first,
            multi_hot: Some((n_classes, bits)),
        }
    }

    /// Integers: N class numbers (negative = unlabelled) or an N×classes 0/1 matrix.
    fn from_ints(shape: &[usize], ints: Vec<i64>, labels: &str) -> Result<Self> {
        let bad = |message: String| DatasetError::Labels {
            labels: labels.to_string(),
            message,
        };
        if shape.len() == 2 {
            let n_classes = shape[1];
            let mut bits = Vec::with_capacity(ints.len());
            for (i, v) in ints.into_iter().enumerate() {
                if v != 0 && v != 1 {
                    return Err(bad(format!(
                        "a 2-D label is n-hot, but row {}, column {} holds {v} (only 0 and 1)",
                        i / n_classes.max(1),
                        i % n_classes.max(1)
                    )));
                }
                bits.push(v == 1);
            }
            return Ok(Self::multi_hot(n_classes, bits));
        }
        let mut first = Vec::with_capacity(ints.len());
        for (i, v) in ints.into_iter().enumerate() {
            first.push(match v {
                v if v < 0 => None,
                v => Some(u32::try_from(v).map_err(|_| {
                    bad(format!(
                        "sample {i} has label {v}, beyond the class numbers Prism keeps (u32)"
                    ))
                })?),
            });
        }
        Ok(LabelSet {
            first,
            multi_hot: None,
        })
    }
}

#[derive(Debug)]
enum Source {
    Hdf5(Hdf5Data),
    Npy(NpyData),
    Images(ImageFolder),
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    kind: DatasetKind,
    source: Source,
    len: usize,
    labels: Option<LabelSet>,
    class_names: Option<Vec<String>>,
    sample_shape: [usize; 3],
    input_shape: Vec<usize>,
    preprocess: Preprocess,
    scale: bool,
    fingerprint: String,
}

/// An open dataset. Cloning is cheap (shared); it can be used from several threads.
#[derive(Debug, Clone)]
pub struct Dataset {
    inner: Arc<Inner>,
}

/// One batch of preprocessed samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The dataset indices of the samples, in order.
    pub indices: Vec<usize>,
    /// Samples, row-major `[n, C, H, W]` (see [`Dataset::sample_shape`]).
    pub data: Vec<f32>,
    /// The label of each sample, if known.
    pub labels: Vec<Option<u32>>,
    /// `[n, C, H, W]`.
    pub shape: [usize; 4],
}

fn hash_str(h: &mut blake3::Hasher, s: &str) {
    h.update(&(s.len() as u64).to_le_bytes());
    h.update(s.as_bytes());
}

impl Dataset {
    /// Opens a dataset, telling its kind from the path unless `options.kind` says it.
    ///
    /// Reads the labels, the image list (image folders) or the array header now; samples are
    /// read by [`Dataset::read_batch`] and [`Dataset::batches`].
    pub fn open(path: impl AsRef<Path>, options: &DatasetOptions) -> Result<Dataset> {
        let path = path.as_ref().to_path_buf();
        let kind = match options.kind {
            Some(k) => k,
            None => detect_kind(&path)?,
        };
        let p = options.preprocess.clone();
        if options.labels.is_some() && kind != DatasetKind::Npy {
            return Err(DatasetError::Options {
                message: format!(
                    "a labels file applies to .npy datasets; {} datasets carry their labels",
                    kind.name()
                ),
            });
        }
        let mut h = blake3::Hasher::new();
        hash_str(&mut h, "prism-dataset-fingerprint-v1");
        hash_str(&mut h, kind.name());
        let inner = match kind {
            DatasetKind::ImageFolder => {
                let folder = ImageFolder::open(&path, &p)?;
                let scale = p.scale.unwrap_or(true);
                let [hh, ww] = folder.hw;
                let c = folder.channels;
                hash_str(&mut h, &p.canonical(scale, c));
                for name in &folder.classes {
                    hash_str(&mut h, name);
                }
                for e in &folder.entries {
                    hash_str(&mut h, &e.rel);
                    h.update(&e.class.to_le_bytes());
                    h.update(&e.size.to_le_bytes());
                    h.update(&e.mtime_ns.to_le_bytes());
                }
                let labels = LabelSet {
                    first: folder.entries.iter().map(|e| Some(e.class)).collect(),
                    multi_hot: None,
                };
                Inner {
                    len: folder.entries.len(),
                    class_names: Some(folder.classes.clone()),
                    labels: Some(labels),
                    sample_shape: [c, hh, ww],
                    input_shape: vec![c, hh, ww],
                    source: Source::Images(folder),
                    scale,
                    path,
                    kind,
                    preprocess: p,
                    fingerprint: String::new(),
                }
            }
            DatasetKind::Hdf5 => {
                let (data, labels) = Hdf5Data::open(&path)?;
                hash_str(&mut h, &data.dtype);
                let shape = data.shape.clone();
                Self::array_inner(path, kind, Source::Hdf5(data), shape, labels, p)?
            }
            DatasetKind::Npy => {
                let data = NpyData::open(&path)?;
                let labels_path = match &options.labels {
                    Some(l) => Some(l.clone()),
                    None => {
                        let sibling = sibling_labels(&path);
                        sibling.filter(|s| s.is_file())
                    }
                };
                let n = data.array.shape()[0];
                let labels = match labels_path {
                    Some(lp) => Some(array::read_npy_labels(&lp, n)?),
                    None => None,
                };
                hash_str(&mut h, data.array.descr());
                let shape = data.array.shape().to_vec();
                Self::array_inner(path, kind, Source::Npy(data), shape, labels, p)?
            }
        };
        let mut inner = inner;
        if inner.len == 0 {
            return Err(DatasetError::Empty {
                path: inner.path.clone(),
                message: "the dataset has no samples".into(),
            });
        }
        if !matches!(inner.source, Source::Images(_)) {
            // Arrays: the shape, labels and a sample of rows identify the content (robust to
            // copying, unlike modification times).
            hash_str(
                &mut h,
                &inner
                    .preprocess
                    .canonical(inner.scale, inner.sample_shape[0]),
            );
            for d in &inner.input_shape {
                h.update(&(*d as u64).to_le_bytes());
            }
            h.update(&(inner.len as u64).to_le_bytes());
            hash_labels(&mut h, inner.labels.as_ref());
            let n = inner.len;
            let mut rows: Vec<usize> = (0..16).map(|k| k * (n - 1) / 15).collect();
            rows.dedup();
            let (raw, _) = inner.read_raw(&rows)?;
            for v in raw {
                h.update(&v.to_le_bytes());
            }
        }
        inner.fingerprint = h.finalize().to_hex().to_string();
        Ok(Dataset {
            inner: Arc::new(inner),
        })
    }

    fn array_inner(
        path: PathBuf,
        kind: DatasetKind,
        source: Source,
        shape: Vec<usize>,
        labels: Option<LabelSet>,
        p: Preprocess,
    ) -> Result<Inner> {
        let sample_shape = match shape[1..] {
            [f] => [1, 1, f],
            [hh, ww] => [1, hh, ww],
            [c, hh, ww] => [c, hh, ww],
            _ => {
                return Err(DatasetError::Shape {
                    path,
                    dataset: "data".into(),
                    found: shape,
                    expected: "it must be N×C×H×W, N×H×W or N×F".into(),
                })
            }
        };
        // Normalisation channels: the first sample axis (C, or F for N×F).
        let channels = if shape.len() == 2 {
            shape[1]
        } else {
            sample_shape[0]
        };
        p.check_array(channels)?;
        let scale = p.scale.unwrap_or(false);
        Ok(Inner {
            len: shape[0],
            input_shape: shape[1..].to_vec(),
            sample_shape,
            labels,
            class_names: None,
            path,
            kind,
            source,
            preprocess: p,
            scale,
            fingerprint: String::new(),
        })
    }

    /// The dataset's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The dataset's kind.
    pub fn kind(&self) -> DatasetKind {
        self.inner.kind
    }

    /// The number of samples.
    pub fn len(&self) -> usize {
        self.inner.len
    }

    /// Whether the dataset has no samples (never, once opened).
    pub fn is_empty(&self) -> bool {
        self.inner.len == 0
    }

    /// `[C, H, W]` of one preprocessed sample (N×F data: `[1, 1, F]`; N×H×W: `[1, H, W]`).
    pub fn sample_shape(&self) -> [usize; 3] {
        self.inner.sample_shape
    }

    /// One sample's shape as stored (`[C, H, W]`, `[H, W]` or `[F]`): the model's input shape
    /// without the batch axis.
    pub fn input_shape(&self) -> &[usize] {
        &self.inner.input_shape
    }

    /// Values per sample (`C·H·W`).
    pub fn sample_len(&self) -> usize {
        self.inner.sample_shape.iter().product()
    }

    /// The label of sample `i`: its class, or `None` if unlabelled (no labels, a negative label,
    /// an all-zero n-hot row, or `i` out of range).
    pub fn label(&self, i: usize) -> Option<u32> {
        self.inner.labels.as_ref()?.first.get(i).copied().flatten()
    }

    /// All labels (one per sample), or `None` if the dataset has none.
    pub fn labels(&self) -> Option<&[Option<u32>]> {
        self.inner.labels.as_ref().map(|l| l.first.as_slice())
    }

    /// n-hot labels as stored (`n_classes`, row-major bits), if the labels are n-hot.
    pub fn multi_hot(&self) -> Option<(usize, &[bool])> {
        let (n, bits) = self.inner.labels.as_ref()?.multi_hot.as_ref()?;
        Some((*n, bits.as_slice()))
    }

    /// Class names in class-number order (image folders: the sorted sub-folder names).
    pub fn class_names(&self) -> Option<&[String]> {
        self.inner.class_names.as_deref()
    }

    /// The preprocessing in effect (`scale` resolved).
    pub fn preprocess(&self) -> Preprocess {
        let mut p = self.inner.preprocess.clone();
        p.scale = Some(self.inner.scale);
        if matches!(self.inner.source, Source::Images(_)) {
            p.channels = Some(self.inner.sample_shape[0]);
        }
        p
    }

    /// A hex BLAKE3 hash identifying the dataset and its preprocessing: for image folders the
    /// class names and every file's relative path, size and modification time; for HDF5 and
    /// `.npy` the type, shape, labels and the content of 16 evenly spaced samples. A resumed run
    /// compares it to the one it recorded.
    pub fn fingerprint(&self) -> &str {
        &self.inner.fingerprint
    }

    /// The relative path of image sample `i` (image folders only).
    pub fn sample_name(&self, i: usize) -> Option<&str> {
        match &self.inner.source {
            Source::Images(f) => f.entries.get(i).map(|e| e.rel.as_str()),
            _ => None,
        }
    }

    /// Reads the samples `indices` (any order, repeats allowed), preprocessed, as N×C×H×W f32,
    /// with their labels. Images are decoded in parallel (rayon); HDF5 and `.npy` rows are read
    /// in runs of consecutive indices.
    pub fn read_batch(&self, indices: &[usize]) -> Result<(Vec<f32>, Vec<Option<u32>>)> {
        let (mut data, labels) = self.inner.read_raw(indices)?;
        let inner = &self.inner;
        if !matches!(inner.source, Source::Images(_)) {
            let len = self.sample_len();
            if inner.scale {
                data.iter_mut().for_each(|v| *v /= 255.0);
            }
            if let Some(n) = &inner.preprocess.normalize {
                let c = if inner.input_shape.len() == 1 {
                    inner.input_shape[0]
                } else {
                    inner.sample_shape[0]
                };
                for sample in data.chunks_mut(len) {
                    n.apply(sample, c);
                }
            }
        }
        Ok((data, labels))
    }

    /// Reads one [`Batch`].
    pub fn read(&self, indices: &[usize]) -> Result<Batch> {
        let (data, labels) = self.read_batch(indices)?;
        let [c, h, w] = self.sample_shape();
        Ok(Batch {
            indices: indices.to_vec(),
            data,
            labels,
            shape: [indices.len(), c, h, w],
        })
    }

    /// Batches of `batch_size` samples (the last may be smaller) in the order of `indices`.
    ///
    /// With `prefetch > 0`, a background thread decodes ahead while the caller works, holding at
    /// most `prefetch` decoded batches besides the one the caller has; with `prefetch == 0`
    /// each batch is read when asked for. After an error the iterator ends. Dropping the
    /// iterator stops the thread (after the batch it is decoding).
    pub fn batches(&self, indices: Vec<usize>, batch_size: usize, prefetch: usize) -> Batches {
        let batch_size = batch_size.max(1);
        let total = indices.len().div_ceil(batch_size);
        if prefetch == 0 {
            return Batches {
                state: BatchesState::Inline {
                    dataset: self.clone(),
                    indices,
                    batch_size,
                    next: 0,
                },
                remaining: total,
            };
        }
        let (tx, rx) = mpsc::sync_channel::<Result<Batch>>(prefetch - 1);
        let dataset = self.clone();
        let handle = std::thread::Builder::new()
            .name("prism-dataset-prefetch".into())
            .spawn(move || {
                for chunk in indices.chunks(batch_size) {
                    let item = dataset.read(chunk);
                    let failed = item.is_err();
                    if tx.send(item).is_err() || failed {
                        break;
                    }
                }
            });
        match handle {
            Ok(handle) => Batches {
                state: BatchesState::Thread {
                    rx,
                    handle: Some(handle),
                    path: self.inner.path.clone(),
                },
                remaining: total,
            },
            Err(e) => Batches {
                state: BatchesState::Failed(Some(DatasetError::Thread {
                    path: self.inner.path.clone(),
                    message: format!("cannot start it: {e}"),
                })),
                remaining: total,
            },
        }
    }
}

impl Inner {
    /// Samples as stored (arrays) or fully preprocessed (images).
    fn read_raw(&self, indices: &[usize]) -> Result<(Vec<f32>, Vec<Option<u32>>)> {
        let inner = self;
        if let Some(&index) = indices.iter().find(|&&i| i >= inner.len) {
            return Err(DatasetError::Index {
                path: inner.path.clone(),
                index,
                len: inner.len,
            });
        }
        let len: usize = self.sample_shape.iter().product();
        let labels = indices
            .iter()
            .map(|&i| {
                self.labels
                    .as_ref()
                    .and_then(|l| l.first.get(i).copied().flatten())
            })
            .collect();
        let mut out = vec![0f32; indices.len() * len];
        match &inner.source {
            Source::Images(folder) => {
                out.par_chunks_mut(len.max(1))
                    .zip(indices.par_iter())
                    .try_for_each(|(dst, &i)| {
                        folder.load(i, &inner.preprocess, inner.scale, dst)
                    })?;
            }
            Source::Hdf5(_) | Source::Npy(_) => {
                let mut sorted = indices.to_vec();
                sorted.sort_unstable();
                sorted.dedup();
                for (a, b) in row_runs(&sorted) {
                    let rows = match &inner.source {
                        Source::Hdf5(d) => d.read_rows(a, b)?,
                        Source::Npy(d) => d.read_rows(a, b)?,
                        Source::Images(_) => unreachable!("handled above"),
                    };
                    if rows.len() != (b - a) * len {
                        return Err(DatasetError::Shape {
                            path: inner.path.clone(),
                            dataset: "data".into(),
                            found: vec![rows.len()],
                            expected: format!("rows {a}..{b} should hold {} values", (b - a) * len),
                        });
                    }
                    for (k, &i) in indices.iter().enumerate() {
                        if (a..b).contains(&i) {
                            let src = (i - a) * len;
                            out[k * len..(k + 1) * len].copy_from_slice(&rows[src..src + len]);
                        }
                    }
                }
            }
        }
        Ok((out, labels))
    }
}

fn hash_labels(h: &mut blake3::Hasher, labels: Option<&LabelSet>) {
    let Some(l) = labels else {
        hash_str(h, "no-labels");
        return;
    };
    for v in &l.first {
        h.update(&v.map_or(-1i64, i64::from).to_le_bytes());
    }
    if let Some((n, bits)) = &l.multi_hot {
        h.update(&(*n as u64).to_le_bytes());
        let bytes: Vec<u8> = bits.iter().map(|&b| b as u8).collect();
        h.update(&bytes);
    }
}

fn sibling_labels(path: &Path) -> Option<PathBuf> {
    let stem = path.file_stem()?.to_string_lossy().into_owned();
    Some(path.with_file_name(format!("{stem}.labels.npy")))
}

fn detect_kind(path: &Path) -> Result<DatasetKind> {
    let meta = std::fs::metadata(path).map_err(|source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.is_dir() {
        return Ok(DatasetKind::ImageFolder);
    }
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "h5" | "hdf5" | "hdf" => Ok(DatasetKind::Hdf5),
        "npy" => Ok(DatasetKind::Npy),
        _ => Err(DatasetError::Kind {
            path: path.to_path_buf(),
            message: "cannot tell the dataset's kind: give a folder of class sub-folders, an \
                      HDF5 file (.h5, .hdf5) or a .npy array, or name the kind"
                .into(),
        }),
    }
}

enum BatchesState {
    Inline {
        dataset: Dataset,
        indices: Vec<usize>,
        batch_size: usize,
        next: usize,
    },
    Thread {
        rx: mpsc::Receiver<Result<Batch>>,
        handle: Option<JoinHandle<()>>,
        path: PathBuf,
    },
    Failed(Option<DatasetError>),
}

/// The iterator of [`Dataset::batches`].
pub struct Batches {
    state: BatchesState,
    remaining: usize,
}

impl std::fmt::Debug for Batches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batches")
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

impl Iterator for Batches {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.remaining == 0 {
            return None;
        }
        let item = match &mut self.state {
            BatchesState::Inline {
                dataset,
                indices,
                batch_size,
                next,
            } => {
                let a = *next * *batch_size;
                let b = (a + *batch_size).min(indices.len());
                *next += 1;
                dataset.read(&indices[a..b])
            }
            BatchesState::Thread { rx, handle, path } => match rx.recv() {
                Ok(item) => item,
                Err(_) => {
                    // The sender is gone before the last batch: the thread panicked.
                    let message = match handle.take().map(JoinHandle::join) {
                        Some(Err(panic)) => panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "it panicked".into()),
                        _ => "it ended early".into(),
                    };
                    Err(DatasetError::Thread {
                        path: path.clone(),
                        message,
                    })
                }
            },
            BatchesState::Failed(e) => match e.take() {
                Some(e) => Err(e),
                None => return None,
            },
        };
        self.remaining = if item.is_err() { 0 } else { self.remaining - 1 };
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining))
    }
}

impl Drop for Batches {
    fn drop(&mut self) {
        if let BatchesState::Thread { rx, handle, .. } = &mut self.state {
            // Close the channel first so that a blocked sender wakes up and the thread ends.
            let (_, dummy) = mpsc::sync_channel(0);
            drop(std::mem::replace(rx, dummy));
            if let Some(h) = handle.take() {
                let _ = h.join();
            }
        }
    }
}
