//! ViRelAy attribution files: `attribution` (N×C×H×W, or N×F), `prediction` (N×classes),
//! `label` (N integers, or N×classes n-hot), optional `index` (N dataset sample numbers).
//!
//! The reader opens the file, checks that the datasets agree, and reads attribution rows on
//! demand (per class, in blocks), so the whole file is never in memory.
//!
//! A file may also hold the relevance recorded at hidden nodes (`prism attribute --record`)
//! in the group `/record`, which ViRelAy ignores: see [`RecordLayout`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hdf5::types::TypeDescriptor;

use crate::atomic::StagedFile;
use crate::error::{Result, StoreError};
use crate::h5util::{self, AttrValue};

mod record;

pub use record::{
    RecordLayout, RecordNodeLayout, RecordRows, RECORD, RECORD_FORMAT, RECORD_VERSION,
};

/// Names of the datasets in an attribution file (ViRelAy's layout).
pub const ATTRIBUTION: &str = "attribution";
pub const PREDICTION: &str = "prediction";
pub const LABEL: &str = "label";
pub const INDEX: &str = "index";

const LAYOUT_HINT: &str = "a ViRelAy attribution file has datasets `attribution` (N×C×H×W), \
                           `prediction` (N×classes), `label` (N) and optionally `index` (N)";

/// The labels of an attribution file.
#[derive(Debug, Clone, PartialEq)]
pub enum Labels {
    /// One class number per sample (ViRelAy's examples: uint16).
    Single(Vec<u32>),
    /// An n-hot matrix, row-major `n_samples × n_classes` (bool, or integers 0/1).
    MultiHot { n_classes: usize, bits: Vec<bool> },
}

impl Labels {
    /// Number of samples labelled.
    pub fn len(&self) -> usize {
        match self {
            Labels::Single(v) => v.len(),
            Labels::MultiHot { n_classes, bits } => bits.len().checked_div(*n_classes).unwrap_or(0),
        }
    }

    /// Whether no sample is labelled.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows (ascending) that belong to each class. With n-hot labels a row belongs to every
    /// class whose bit is set, as in ViRelAy.
    pub fn class_rows(&self) -> BTreeMap<u32, Vec<usize>> {
        let mut map: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        match self {
            Labels::Single(v) => {
                for (row, &c) in v.iter().enumerate() {
                    map.entry(c).or_default().push(row);
                }
            }
            Labels::MultiHot { n_classes, bits } => {
                for (row, chunk) in bits.chunks(*n_classes).enumerate() {
                    for (c, &b) in chunk.iter().enumerate() {
                        if b {
                            map.entry(c as u32).or_default().push(row);
                        }
                    }
                }
            }
        }
        map
    }
}

/// An open attribution file, validated, reading rows on demand.
pub struct AttributionFile {
    path: PathBuf,
    attribution: hdf5::Dataset,
    n_samples: usize,
    sample_shape: [usize; 3],
    /// The `attribution` dataset's shape as stored (N×C×H×W, N×H×W or N×F).
    shape: Vec<usize>,
    labels: Labels,
    index: Option<Vec<u32>>,
    prediction_shape: Vec<usize>,
    _file: hdf5::File,
}

impl std::fmt::Debug for AttributionFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttributionFile")
            .field("path", &self.path)
            .field("n_samples", &self.n_samples)
            .field("sample_shape", &self.sample_shape)
            .finish()
    }
}

impl AttributionFile {
    /// Opens and validates an attribution file. Labels, `index` and the prediction's shape are
    /// read now (small); attributions are read later with [`AttributionFile::read_rows`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = h5util::open_file(&path)?;
        let attribution = open_dataset(&file, &path, ATTRIBUTION)?;
        let shape = attribution.shape();
        let n_samples = match shape.first() {
            Some(&n) if (2..=4).contains(&shape.len()) => n,
            _ => {
                return Err(StoreError::Shape {
                    path,
                    dataset: ATTRIBUTION.into(),
                    found: shape,
                    expected: "it must be N×C×H×W, N×H×W or N×F".into(),
                })
            }
        };
        let sample_shape = match shape[1..] {
            [f] => [1, 1, f],
            [h, w] => [1, h, w],
            [c, h, w] => [c, h, w],
            _ => unreachable!("rank checked above"),
        };
        check_numeric(&attribution, &path, ATTRIBUTION, false)?;
        h5util::check_declared(&attribution, &path, ATTRIBUTION, false)?;

        let prediction = open_dataset(&file, &path, PREDICTION)?;
        let prediction_shape = prediction.shape();
        check_rows(
            &path,
            PREDICTION,
            &prediction_shape,
            n_samples,
            "N or N×classes",
        )?;
        check_numeric(&prediction, &path, PREDICTION, false)?;
        h5util::check_declared(&prediction, &path, PREDICTION, false)?;

        let label_ds = open_dataset(&file, &path, LABEL)?;
        let labels = read_labels(&label_ds, &path, n_samples)?;

        let index = if file.link_exists(INDEX) {
            let ds = open_dataset(&file, &path, INDEX)?;
            check_rows(
                &path,
                INDEX,
                &ds.shape(),
                n_samples,
                "N (one sample number per row)",
            )?;
            if ds.ndim() != 1 {
                return Err(StoreError::Shape {
                    path,
                    dataset: INDEX.into(),
                    found: ds.shape(),
                    expected: format!("it must be 1-D with {n_samples} entries"),
                });
            }
            check_numeric(&ds, &path, INDEX, true)?;
            h5util::check_declared(&ds, &path, INDEX, true)?;
            let v = ds.read_raw::<i64>().map_err(|source| StoreError::Read {
                path: path.clone(),
                dataset: INDEX.into(),
                source,
            })?;
            let mut out = Vec::with_capacity(v.len());
            for (row, x) in v.into_iter().enumerate() {
                out.push(u32::try_from(x).map_err(|_| StoreError::Invalid {
                    path: path.clone(),
                    dataset: INDEX.into(),
                    message: format!("row {row} holds {x}, but sample numbers must be in 0..2³²"),
                })?);
            }
            Some(out)
        } else {
            None
        };

        Ok(AttributionFile {
            path,
            attribution,
            n_samples,
            sample_shape,
            shape,
            labels,
            index,
            prediction_shape,
            _file: file,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of samples (rows).
    pub fn n_samples(&self) -> usize {
        self.n_samples
    }

    /// Shape of one sample as `[C, H, W]` (`[1, 1, F]` for N×F files, `[1, H, W]` for N×H×W).
    pub fn sample_shape(&self) -> [usize; 3] {
        self.sample_shape
    }

    /// The `attribution` dataset's shape as stored: N×C×H×W, N×H×W or N×F.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of values in one sample.
    pub fn sample_len(&self) -> usize {
        self.sample_shape.iter().product()
    }

    /// The labels.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// The `index` dataset (dataset sample number of each row), if the file has one.
    pub fn index(&self) -> Option<&[u32]> {
        self.index.as_deref()
    }

    /// The dataset sample number of `row`: the `index` entry, or the row itself without one.
    pub fn sample_number(&self, row: usize) -> u32 {
        match &self.index {
            Some(ix) => ix[row],
            None => row as u32,
        }
    }

    /// Shape of the `prediction` dataset.
    pub fn prediction_shape(&self) -> &[usize] {
        &self.prediction_shape
    }

    /// Reads the attributions of the given rows (ascending, distinct, each < N) as f32,
    /// row-major `rows.len() × sample_len`. Consecutive rows are read in one HDF5 call.
    pub fn read_rows(&self, rows: &[usize]) -> Result<Vec<f32>> {
        if let Some(w) = rows.windows(2).find(|w| w[0] >= w[1]) {
            return Err(StoreError::Usage {
                path: self.path.clone(),
                message: format!(
                    "rows must be ascending and distinct ({} then {})",
                    w[0], w[1]
                ),
            });
        }
        if let Some(&last) = rows.last() {
            if last >= self.n_samples {
                return Err(StoreError::Usage {
                    path: self.path.clone(),
                    message: format!("row {last} is past the end ({} rows)", self.n_samples),
                });
            }
        }
        let runs = h5util::row_runs(rows);
        // One run (the usual case: a class's consecutive rows) is returned as read, uncopied.
        let mut out = Vec::new();
        for (a, b) in runs {
            let block = h5util::read_rows_f32(&self.attribution, a, b).map_err(|source| {
                StoreError::Read {
                    path: self.path.clone(),
                    dataset: format!("{ATTRIBUTION}[{a}..{b}]"),
                    source,
                }
            })?;
            if block.len() != (b - a) * self.sample_len() {
                return Err(StoreError::Invalid {
                    path: self.path.clone(),
                    dataset: ATTRIBUTION.into(),
                    message: format!("rows {a}..{b} read back with a wrong length"),
                });
            }
            if out.is_empty() {
                out = block;
            } else {
                out.reserve(rows.len() * self.sample_len() - out.len());
                out.extend_from_slice(&block);
            }
        }
        Ok(out)
    }

    /// Reads rows `a..b` of `prediction` as f32, row-major `(b − a) × classes`.
    pub fn read_prediction_rows(&self, a: usize, b: usize) -> Result<Vec<f32>> {
        if a > b || b > self.n_samples {
            return Err(StoreError::Usage {
                path: self.path.clone(),
                message: format!("rows {a}..{b} are out of range ({} rows)", self.n_samples),
            });
        }
        let ds = open_dataset(&self._file, &self.path, PREDICTION)?;
        h5util::read_rows_f32(&ds, a, b).map_err(|source| StoreError::Read {
            path: self.path.clone(),
            dataset: format!("{PREDICTION}[{a}..{b}]"),
            source,
        })
    }

    /// Reads a root attribute (provenance), type-tolerantly.
    pub fn attr(&self, name: &str) -> Result<Option<AttrValue>> {
        h5util::read_attr(&self._file, &self.path, "/", name)
    }
}

fn open_dataset(file: &hdf5::File, path: &Path, name: &str) -> Result<hdf5::Dataset> {
    if !file.link_exists(name) {
        return Err(StoreError::MissingDataset {
            path: path.to_path_buf(),
            dataset: name.into(),
            hint: LAYOUT_HINT.into(),
        });
    }
    file.dataset(name).map_err(|source| {
        if file.group(name).is_ok() {
            StoreError::Dtype {
                path: path.to_path_buf(),
                dataset: name.into(),
                found: "a group".into(),
                expected: "Prism reads the dataset layout only (the group-of-samples layout \
                           is not supported yet; convert it to one N-row dataset)"
                    .into(),
            }
        } else {
            StoreError::Read {
                path: path.to_path_buf(),
                dataset: name.into(),
                source,
            }
        }
    })
}

fn check_rows(path: &Path, name: &str, shape: &[usize], n: usize, what: &str) -> Result<()> {
    if shape.first() != Some(&n) || shape.len() > 2 {
        return Err(StoreError::Shape {
            path: path.to_path_buf(),
            dataset: name.into(),
            found: shape.to_vec(),
            expected: format!(
                "it must be {what} with N = {n} rows, like `{ATTRIBUTION}` (is the file \
                 truncated, or are the datasets mislabelled?)"
            ),
        });
    }
    Ok(())
}

fn check_numeric(ds: &hdf5::Dataset, path: &Path, name: &str, integer: bool) -> Result<()> {
    let err = |source| StoreError::Read {
        path: path.to_path_buf(),
        dataset: name.into(),
        source,
    };
    let desc = ds.dtype().and_then(|t| t.to_descriptor()).map_err(err)?;
    let ok = match desc {
        TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) => true,
        TypeDescriptor::Float(_) => !integer,
        _ => false,
    };
    if !ok {
        return Err(StoreError::Dtype {
            path: path.to_path_buf(),
            dataset: name.into(),
            found: h5util::describe(&desc),
            expected: if integer {
                "it must hold integers".into()
            } else {
                "it must hold numbers (float32 in ViRelAy's files)".into()
            },
        });
    }
    Ok(())
}

fn read_labels(ds: &hdf5::Dataset, path: &Path, n: usize) -> Result<Labels> {
    let shape = ds.shape();
    check_rows(
        path,
        LABEL,
        &shape,
        n,
        "N (class numbers) or N×classes (n-hot)",
    )?;
    h5util::check_declared(ds, path, LABEL, true)?;
    let rerr = |source| StoreError::Read {
        path: path.to_path_buf(),
        dataset: LABEL.into(),
        source,
    };
    let desc = ds.dtype().and_then(|t| t.to_descriptor()).map_err(rerr)?;
    let invalid = |message: String| StoreError::Invalid {
        path: path.to_path_buf(),
        dataset: LABEL.into(),
        message,
    };
    if shape.len() == 2 {
        let n_classes = shape[1];
        let bits: Vec<bool> = match desc {
            TypeDescriptor::Boolean => ds.read_raw::<bool>().map_err(rerr)?,
            TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) | TypeDescriptor::Float(_) => {
                let v = ds.read_raw::<f64>().map_err(rerr)?;
                let mut bits = Vec::with_capacity(v.len());
                for (i, x) in v.into_iter().enumerate() {
                    if x != 0.0 && x != 1.0 {
                        return Err(invalid(format!(
                            "a 2-D label is read as n-hot, but row {}, column {} holds {x} \
                             (only 0 and 1 are allowed)",
                            i / n_classes.max(1),
                            i % n_classes.max(1)
                        )));
                    }
                    bits.push(x == 1.0);
                }
                bits
            }
            other => {
                return Err(StoreError::Dtype {
                    path: path.to_path_buf(),
                    dataset: LABEL.into(),
                    found: h5util::describe(&other),
                    expected: "an n-hot label must hold bool or 0/1 numbers".into(),
                })
            }
        };
        return Ok(Labels::MultiHot { n_classes, bits });
    }
    match desc {
        TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) | TypeDescriptor::Float(_) => {
            let v = ds.read_raw::<f64>().map_err(rerr)?;
            let mut out = Vec::with_capacity(v.len());
            for (row, x) in v.into_iter().enumerate() {
                if !(x >= 0.0 && x.fract() == 0.0 && x <= u32::MAX as f64) {
                    return Err(invalid(format!(
                        "row {row} holds {x}, but a label must be a class number (0, 1, 2, …)"
                    )));
                }
                out.push(x as u32);
            }
            Ok(Labels::Single(out))
        }
        other => Err(StoreError::Dtype {
            path: path.to_path_buf(),
            dataset: LABEL.into(),
            found: h5util::describe(&other),
            expected: "a label must hold class numbers (uint16 in ViRelAy's files)".into(),
        }),
    }
}

/// How the labels of a new attribution file are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelLayout {
    /// `label` is `N` uint16 class numbers (ViRelAy's examples).
    Single,
    /// `label` is `N × n_classes` bool (n-hot).
    MultiHot { n_classes: usize },
}

/// The shape of a new attribution file.
#[derive(Debug, Clone)]
pub struct AttributionLayout {
    pub n_samples: usize,
    /// Shape of one sample, e.g. `[C, H, W]` (any rank ≥ 1).
    pub sample_shape: Vec<usize>,
    /// Number of model outputs per sample (`prediction` is `N × n_outputs`).
    pub n_outputs: usize,
    pub labels: LabelLayout,
    /// Whether to write an `index` dataset.
    pub with_index: bool,
    /// gzip level (0–9) for `attribution`; `None` for no compression.
    pub compression: Option<u8>,
}

/// Writes a ViRelAy attribution file in batches of rows, under a temporary name until
/// [`AttributionWriter::finish`], which checks that every row was written and renames it.
pub struct AttributionWriter {
    target: StagedFile,
    file: hdf5::File,
    layout: AttributionLayout,
    attribution: hdf5::Dataset,
    prediction: hdf5::Dataset,
    label: hdf5::Dataset,
    index: Option<hdf5::Dataset>,
    written: Vec<bool>,
    /// The `/record` group ([`AttributionWriter::add_record`]).
    record: Option<record::RecordWriter>,
}

impl AttributionWriter {
    /// Creates the file (under a temporary name) with all datasets sized for `layout`.
    pub fn create(path: impl AsRef<Path>, layout: AttributionLayout) -> Result<Self> {
        let target = StagedFile::new(path.as_ref());
        let tpath = target.final_path().to_path_buf();
        let file = hdf5::File::create(target.temp_path()).map_err(|source| StoreError::Create {
            path: tpath.clone(),
            source,
        })?;
        let werr = |name: &str| {
            let tpath = tpath.clone();
            let name = name.to_string();
            move |source| StoreError::Write {
                path: tpath,
                dataset: name,
                source,
            }
        };
        let n = layout.n_samples;
        if n == 0 || layout.sample_shape.is_empty() || layout.sample_shape.contains(&0) {
            return Err(StoreError::Usage {
                path: tpath,
                message: format!(
                    "cannot write an attribution file of {n} samples of shape {:?}",
                    layout.sample_shape
                ),
            });
        }
        let mut shape = vec![n];
        shape.extend_from_slice(&layout.sample_shape);
        // Chunks of whole samples, about 1 MiB, so per-class reads touch few chunks.
        let sample_len: usize = layout.sample_shape.iter().product();
        let rows_per_chunk = (262_144 / sample_len.max(1)).clamp(1, n);
        let mut chunk = vec![rows_per_chunk];
        chunk.extend_from_slice(&layout.sample_shape);
        let mut builder = file.new_dataset::<f32>().shape(shape.clone()).chunk(chunk);
        if let Some(level) = layout.compression {
            builder = builder.deflate(level.min(9));
        }
        let attribution = builder.create(ATTRIBUTION).map_err(werr(ATTRIBUTION))?;
        let prediction = file
            .new_dataset::<f32>()
            .shape([n, layout.n_outputs.max(1)])
            .create(PREDICTION)
            .map_err(werr(PREDICTION))?;
        let label = match layout.labels {
            LabelLayout::Single => file.new_dataset::<u16>().shape([n]).create(LABEL),
            LabelLayout::MultiHot { n_classes } => file
                .new_dataset::<bool>()
                .shape([n, n_classes.max(1)])
                .create(LABEL),
        }
        .map_err(werr(LABEL))?;
        let index = if layout.with_index {
            Some(
                file.new_dataset::<u32>()
                    .shape([n])
                    .create(INDEX)
                    .map_err(werr(INDEX))?,
            )
        } else {
            None
        };
        Ok(AttributionWriter {
            target,
            file,
            written: vec![false; n],
            layout,
            attribution,
            prediction,
            label,
            index,
            record: None,
        })
    }

    /// Writes rows `start .. start + rows` (rows = `prediction.len() / n_outputs`).
    /// `attribution` is row-major samples; `labels` holds class numbers (`Single`) or
    /// row-major n-hot bits (`MultiHot`); `index` is required iff the layout has one.
    pub fn write_batch(
        &mut self,
        start: usize,
        attribution: &[f32],
        prediction: &[f32],
        labels: &BatchLabels<'_>,
        index: Option<&[u32]>,
    ) -> Result<()> {
        let path = self.target.final_path().to_path_buf();
        let usage = |message: String| StoreError::Usage {
            path: path.clone(),
            message,
        };
        let sample_len: usize = self.layout.sample_shape.iter().product();
        let rows = attribution.len() / sample_len;
        if rows == 0 || rows * sample_len != attribution.len() {
            return Err(usage(format!(
                "attribution batch of {} values is not a whole number of samples of {sample_len}",
                attribution.len()
            )));
        }
        let end = start + rows;
        if end > self.layout.n_samples {
            return Err(usage(format!(
                "rows {start}..{end} are past the end ({} rows)",
                self.layout.n_samples
            )));
        }
        let n_out = self.layout.n_outputs.max(1);
        if prediction.len() != rows * n_out {
            return Err(usage(format!(
                "prediction batch has {} values, expected {rows}×{n_out}",
                prediction.len()
            )));
        }
        let werr = |name: &str| {
            let path = path.clone();
            let name = name.to_string();
            move |source| StoreError::Write {
                path,
                dataset: name,
                source,
            }
        };
        let mut shape = vec![rows];
        shape.extend_from_slice(&self.layout.sample_shape);
        let arr = ndarray::ArrayViewD::from_shape(shape, attribution)
            .map_err(|e| usage(format!("attribution batch: {e}")))?;
        let sel = row_selection(start, end, self.layout.sample_shape.len() + 1);
        self.attribution
            .write_slice(&arr, sel)
            .map_err(werr(ATTRIBUTION))?;
        let pred = ndarray::ArrayView2::from_shape((rows, n_out), prediction)
            .map_err(|e| usage(format!("prediction batch: {e}")))?;
        self.prediction
            .write_slice(&pred, ndarray::s![start..end, ..])
            .map_err(werr(PREDICTION))?;
        match (labels, self.layout.labels) {
            (BatchLabels::Single(l), LabelLayout::Single) if l.len() == rows => {
                let mut v = Vec::with_capacity(rows);
                for &c in l.iter() {
                    v.push(u16::try_from(c).map_err(|_| {
                        usage(format!(
                            "label {c} does not fit uint16 (ViRelAy's label type)"
                        ))
                    })?);
                }
                self.label
                    .write_slice(&v, ndarray::s![start..end])
                    .map_err(werr(LABEL))?;
            }
            (BatchLabels::MultiHot(bits), LabelLayout::MultiHot { n_classes })
                if bits.len() == rows * n_classes =>
            {
                let arr = ndarray::ArrayView2::from_shape((rows, n_classes), bits)
                    .map_err(|e| usage(format!("label batch: {e}")))?;
                self.label
                    .write_slice(&arr, ndarray::s![start..end, ..])
                    .map_err(werr(LABEL))?;
            }
            _ => {
                return Err(usage(format!(
                    "label batch does not match the file's label layout {:?} for {rows} rows",
                    self.layout.labels
                )))
            }
        }
        match (&self.index, index) {
            (Some(ds), Some(ix)) if ix.len() == rows => {
                ds.write_slice(ix, ndarray::s![start..end])
                    .map_err(werr(INDEX))?;
            }
            (None, None) => {}
            _ => {
                return Err(usage(
                    "an `index` batch must be given exactly when the file has `index`, one per row"
                        .into(),
                ))
            }
        }
        self.written[start..end].iter_mut().for_each(|w| *w = true);
        Ok(())
    }

    /// The path the file will have when finished.
    pub fn path(&self) -> &Path {
        self.target.final_path()
    }

    /// Sets a root attribute (provenance: model, composite, attributor, versions, …).
    pub fn set_attr(&mut self, name: &str, value: &AttrValue) -> Result<()> {
        h5util::write_attr(&self.file, self.target.final_path(), "/", name, value)
    }

    /// Checks that every row was written, closes the file and renames it into place.
    pub fn finish(self) -> Result<()> {
        if let Some(row) = self.written.iter().position(|w| !w) {
            return Err(StoreError::Usage {
                path: self.target.final_path().to_path_buf(),
                message: format!("row {row} was never written; the file is left unfinished"),
            });
        }
        if let Some((node, row)) = self.record.as_ref().and_then(|r| r.unwritten()) {
            return Err(StoreError::Usage {
                path: self.target.final_path().to_path_buf(),
                message: format!(
                    "row {row} of recorded node {node} was never written; the file is left \
                     unfinished"
                ),
            });
        }
        let AttributionWriter {
            target,
            file,
            attribution,
            prediction,
            label,
            index,
            record,
            ..
        } = self;
        file.flush().map_err(|source| StoreError::Write {
            path: target.final_path().to_path_buf(),
            dataset: "/".into(),
            source,
        })?;
        drop((attribution, prediction, label, index, record));
        file.close().map_err(|source| StoreError::Write {
            path: target.final_path().to_path_buf(),
            dataset: "/".into(),
            source,
        })?;
        target.commit()?;
        Ok(())
    }
}

/// One batch of labels for [`AttributionWriter::write_batch`].
#[derive(Debug, Clone, Copy)]
pub enum BatchLabels<'a> {
    Single(&'a [u32]),
    MultiHot(&'a [bool]),
}

fn row_selection(start: usize, end: usize, rank: usize) -> hdf5::Hyperslab {
    let mut v: Vec<hdf5::SliceOrIndex> = vec![(start..end).into()];
    for _ in 1..rank {
        v.push((..).into());
    }
    hdf5::Hyperslab::from(v)
}
