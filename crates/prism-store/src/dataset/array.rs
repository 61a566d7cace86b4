//! Array datasets: ViRelAy HDF5 files (`data` N×…, `label`) and `.npy` arrays, read row by row
//! (HDF5 hyperslabs, `.npy` byte ranges), never whole.

use std::path::{Path, PathBuf};

use hdf5::types::TypeDescriptor;

use super::{DatasetError, LabelSet};
use crate::error::StoreError;
use crate::h5util;
use crate::npy::{NpyArray, NpyError, NpyType};

pub(crate) const DATA: &str = "data";
pub(crate) const LABEL: &str = "label";

/// Rows of an HDF5 `data` dataset.
pub(crate) struct Hdf5Data {
    pub path: PathBuf,
    pub data: hdf5::Dataset,
    pub shape: Vec<usize>,
    pub dtype: String,
    /// The element type as stored.
    pub desc: TypeDescriptor,
    _file: hdf5::File,
}

impl std::fmt::Debug for Hdf5Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hdf5Data")
            .field("path", &self.path)
            .field("shape", &self.shape)
            .field("dtype", &self.dtype)
            .finish()
    }
}

fn read_err(path: &Path, dataset: &str, source: hdf5::Error) -> DatasetError {
    DatasetError::Store(StoreError::Read {
        path: path.to_path_buf(),
        dataset: dataset.into(),
        source,
    })
}

impl Hdf5Data {
    /// Opens `data` (and reads `label`, if present) of a ViRelAy HDF5 dataset.
    pub(crate) fn open(path: &Path) -> Result<(Self, Option<LabelSet>), DatasetError> {
        let file = crate::h5util::open_file(path).map_err(DatasetError::Store)?;
        if !file.link_exists(DATA) {
            return Err(DatasetError::Store(StoreError::MissingDataset {
                path: path.to_path_buf(),
                dataset: DATA.into(),
                hint: "a ViRelAy HDF5 dataset has `data` (N×C×H×W) and `label` (N)".into(),
            }));
        }
        if file.group(DATA).is_ok() {
            return Err(DatasetError::Shape {
                path: path.to_path_buf(),
                dataset: DATA.into(),
                found: vec![],
                expected: "`data` is a group of per-sample datasets; Prism reads `data` as one \
                           N×C×H×W dataset (stack the samples into one array)"
                    .into(),
            });
        }
        let data = file
            .dataset(DATA)
            .map_err(|source| read_err(path, DATA, source))?;
        let shape = data.shape();
        if !(2..=4).contains(&shape.len()) || shape[1..].contains(&0) {
            return Err(DatasetError::Shape {
                path: path.to_path_buf(),
                dataset: DATA.into(),
                found: shape,
                expected: "it must be N×C×H×W, N×H×W or N×F".into(),
            });
        }
        h5util::check_declared(&data, path, DATA, false).map_err(DatasetError::Store)?;
        let desc = data
            .dtype()
            .and_then(|t| t.to_descriptor())
            .map_err(|source| read_err(path, DATA, source))?;
        match desc {
            TypeDescriptor::Float(_) | TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) => {
            }
            other => {
                return Err(DatasetError::Store(StoreError::Dtype {
                    path: path.to_path_buf(),
                    dataset: DATA.into(),
                    found: h5util::describe(&other),
                    expected: "`data` must hold numbers (float32 in ViRelAy's files)".into(),
                }))
            }
        }
        let labels = if file.link_exists(LABEL) {
            let ds = file
                .dataset(LABEL)
                .map_err(|source| read_err(path, LABEL, source))?;
            Some(read_hdf5_labels(&ds, path, shape[0])?)
        } else {
            None
        };
        Ok((
            Hdf5Data {
                path: path.to_path_buf(),
                data,
                dtype: h5util::describe(&desc),
                desc,
                shape,
                _file: file,
            },
            labels,
        ))
    }

    /// Reads rows `[a, b)` as f32 (HDF5 converts other number types).
    pub(crate) fn read_rows(&self, a: usize, b: usize) -> Result<Vec<f32>, DatasetError> {
        self.read_rows_h5(a, b)
            .map_err(|source| read_err(&self.path, DATA, source))
    }

    /// Reads rows `[a, b)` as f32, with HDF5's own error.
    pub(crate) fn read_rows_h5(&self, a: usize, b: usize) -> hdf5::Result<Vec<f32>> {
        h5util::read_rows_f32(&self.data, a, b)
    }
}

fn read_hdf5_labels(ds: &hdf5::Dataset, path: &Path, n: usize) -> Result<LabelSet, DatasetError> {
    let shape = ds.shape();
    h5util::check_declared(ds, path, LABEL, true).map_err(DatasetError::Store)?;
    let desc = ds
        .dtype()
        .and_then(|t| t.to_descriptor())
        .map_err(|source| read_err(path, LABEL, source))?;
    let where_ = format!("{}:{LABEL}", path.display());
    if shape.first() != Some(&n) || shape.len() > 2 {
        return Err(DatasetError::LabelCount {
            path: path.to_path_buf(),
            labels: where_,
            samples: n,
            found: shape,
        });
    }
    match (shape.len(), desc) {
        (2, TypeDescriptor::Boolean) => {
            let bits = ds
                .read_raw::<bool>()
                .map_err(|source| read_err(path, LABEL, source))?;
            Ok(LabelSet::multi_hot(shape[1], bits))
        }
        (_, TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_)) => {
            let v = ds
                .read_raw::<i64>()
                .map_err(|source| read_err(path, LABEL, source))?;
            LabelSet::from_ints(&shape, v, &where_)
        }
        (_, other) => Err(DatasetError::Labels {
            labels: where_,
            message: format!(
                "`{LABEL}` holds {}; labels must be integers (class numbers, N) or bool (n-hot, \
                 N×classes)",
                h5util::describe(&other)
            ),
        }),
    }
}

fn npy_err(e: NpyError) -> DatasetError {
    match e {
        NpyError::Io { path, source } => DatasetError::Io { path, source },
        NpyError::Write(e) => DatasetError::Store(e.into()),
        NpyError::Invalid { path, message } => DatasetError::Npy { path, message },
    }
}

/// Rows of a `.npy` array (N×…), read by byte range.
#[derive(Debug)]
pub(crate) struct NpyData {
    pub array: NpyArray,
}

impl NpyData {
    pub(crate) fn open(path: &Path) -> Result<Self, DatasetError> {
        let array = NpyArray::open(path).map_err(npy_err)?;
        let shape = array.shape();
        if !(2..=4).contains(&shape.len()) || shape[1..].contains(&0) {
            return Err(DatasetError::Shape {
                path: path.to_path_buf(),
                dataset: "array".into(),
                found: shape.to_vec(),
                expected: "it must be N×C×H×W, N×H×W or N×F".into(),
            });
        }
        if array.element_type() == NpyType::Bool {
            return Err(DatasetError::Npy {
                path: path.to_path_buf(),
                message: "a bool array is not model input; save float32".into(),
            });
        }
        Ok(NpyData { array })
    }

    /// Reads rows `[a, b)` as f32.
    pub(crate) fn read_rows(&self, a: usize, b: usize) -> Result<Vec<f32>, DatasetError> {
        let v = self.array.read_rows(a, b).map_err(npy_err)?;
        Ok(v.into_iter().map(|x| x as f32).collect())
    }
}

/// Reads a labels `.npy` file: N integers (class numbers; negative = unlabelled) or an N×classes
/// bool / 0-1 integer n-hot matrix.
pub(crate) fn read_npy_labels(path: &Path, n: usize) -> Result<LabelSet, DatasetError> {
    let array = NpyArray::open(path).map_err(npy_err)?;
    let shape = array.shape().to_vec();
    let where_ = path.display().to_string();
    if shape.first() != Some(&n) || shape.len() > 2 {
        return Err(DatasetError::LabelCount {
            path: path.to_path_buf(),
            labels: where_,
            samples: n,
            found: shape,
        });
    }
    let values = array.read_all().map_err(npy_err)?;
    if array.element_type() == NpyType::Bool && shape.len() == 2 {
        let bits = values.iter().map(|&v| v != 0.0).collect();
        return Ok(LabelSet::multi_hot(shape[1], bits));
    }
    let mut ints = Vec::with_capacity(values.len());
    for (i, v) in values.into_iter().enumerate() {
        if v.fract() != 0.0 || !v.is_finite() {
            return Err(DatasetError::Labels {
                labels: where_,
                message: format!(
                    "entry {i} holds {v}, but labels must be class numbers (integers)"
                ),
            });
        }
        ints.push(v as i64);
    }
    LabelSet::from_ints(&shape, ints, &where_)
}
