//! Array datasets: ViRelAy HDF5 files (`data` N×…, `label`) and `.npy` arrays, read row by row
//! (HDF5 hyperslabs, `.npy` byte ranges), never whole.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hdf5::types::TypeDescriptor;

use super::{DatasetError, LabelSet};
use crate::error::StoreError;
use crate::h5util;

pub(crate) const DATA: &str = "data";
pub(crate) const LABEL: &str = "label";

/// Rows of an HDF5 `data` dataset.
pub(crate) struct Hdf5Data {
    pub path: PathBuf,
    pub data: hdf5::Dataset,
    pub shape: Vec<usize>,
    pub dtype: String,
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
                shape,
                _file: file,
            },
            labels,
        ))
    }

    /// Reads rows `[a, b)` as f32 (HDF5 converts other number types).
    pub(crate) fn read_rows(&self, a: usize, b: usize) -> Result<Vec<f32>, DatasetError> {
        h5util::read_rows_f32(&self.data, a, b).map_err(|source| read_err(&self.path, DATA, source))
    }
}

fn read_hdf5_labels(ds: &hdf5::Dataset, path: &Path, n: usize) -> Result<LabelSet, DatasetError> {
    let shape = ds.shape();
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

/// The element type of a `.npy` array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NpyType {
    F32,
    F64,
    F16,
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    Bool,
}

impl NpyType {
    fn size(self) -> usize {
        match self {
            NpyType::U8 | NpyType::I8 | NpyType::Bool => 1,
            NpyType::U16 | NpyType::I16 | NpyType::F16 => 2,
            NpyType::U32 | NpyType::I32 | NpyType::F32 => 4,
            NpyType::U64 | NpyType::I64 | NpyType::F64 => 8,
        }
    }
}

/// A `.npy` file's header: shape, element type, byte order, where the data starts.
#[derive(Debug)]
pub(crate) struct NpyLayout {
    pub shape: Vec<usize>,
    ty: NpyType,
    big_endian: bool,
    offset: u64,
    pub descr: String,
}

struct Counting<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n += k as u64;
        Ok(k)
    }
}

fn npy_err(path: &Path, message: impl Into<String>) -> DatasetError {
    DatasetError::Npy {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl NpyLayout {
    fn read(path: &Path, file: &mut File) -> Result<Self, DatasetError> {
        let mut counting = Counting {
            inner: &mut *file,
            n: 0,
        };
        let header = npyz::NpyHeader::from_reader(&mut counting)
            .map_err(|e| npy_err(path, format!("not a valid .npy file ({e})")))?;
        let offset = counting.n;
        if header.order() == npyz::Order::Fortran && header.shape().len() > 1 {
            return Err(npy_err(
                path,
                "the array is in Fortran order; save it with np.ascontiguousarray(a)",
            ));
        }
        let npyz::DType::Plain(ts) = header.dtype() else {
            return Err(npy_err(
                path,
                "structured arrays are not supported; save a plain numeric array",
            ));
        };
        use npyz::TypeChar as T;
        let ty = match (ts.type_char(), ts.size_field()) {
            (T::Float, 4) => NpyType::F32,
            (T::Float, 8) => NpyType::F64,
            (T::Float, 2) => NpyType::F16,
            (T::Uint, 1) => NpyType::U8,
            (T::Int, 1) => NpyType::I8,
            (T::Uint, 2) => NpyType::U16,
            (T::Int, 2) => NpyType::I16,
            (T::Uint, 4) => NpyType::U32,
            (T::Int, 4) => NpyType::I32,
            (T::Uint, 8) => NpyType::U64,
            (T::Int, 8) => NpyType::I64,
            (T::Bool, 1) => NpyType::Bool,
            _ => {
                return Err(npy_err(
                    path,
                    format!("element type `{ts}` is not supported (use float32)"),
                ))
            }
        };
        let big_endian = matches!(ts.endianness(), npyz::Endianness::Big);
        let shape: Vec<usize> = header.shape().iter().map(|&d| d as usize).collect();
        let count: usize = shape.iter().product();
        let need = offset + (count * ty.size()) as u64;
        let have = file.metadata().map(|m| m.len()).unwrap_or(0);
        if have < need {
            return Err(npy_err(
                path,
                format!(
                    "the file is truncated: shape {shape:?} needs {need} bytes, the file has \
                     {have} (re-create or re-copy it)"
                ),
            ));
        }
        Ok(NpyLayout {
            shape,
            ty,
            big_endian,
            offset,
            descr: ts.to_string(),
        })
    }

    fn decode(&self, bytes: &[u8], out: &mut Vec<f64>) {
        let s = self.ty.size();
        for chunk in bytes.chunks_exact(s) {
            let mut b = [0u8; 8];
            b[..s].copy_from_slice(chunk);
            if self.big_endian {
                b[..s].reverse();
            }
            let v = match self.ty {
                NpyType::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
                NpyType::F64 => f64::from_le_bytes(b),
                NpyType::F16 => f16_to_f64(u16::from_le_bytes([b[0], b[1]])),
                NpyType::U8 | NpyType::Bool => b[0] as f64,
                NpyType::I8 => b[0] as i8 as f64,
                NpyType::U16 => u16::from_le_bytes([b[0], b[1]]) as f64,
                NpyType::I16 => i16::from_le_bytes([b[0], b[1]]) as f64,
                NpyType::U32 => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
                NpyType::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
                NpyType::U64 => u64::from_le_bytes(b) as f64,
                NpyType::I64 => i64::from_le_bytes(b) as f64,
            };
            out.push(v);
        }
    }
}

fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f64;
    sign * match exp {
        0 => frac * 2f64.powi(-24),
        31 if frac == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}

/// Rows of a `.npy` array (N×…), read by byte range.
#[derive(Debug)]
pub(crate) struct NpyData {
    pub path: PathBuf,
    pub layout: NpyLayout,
    file: Mutex<File>,
}

impl NpyData {
    pub(crate) fn open(path: &Path) -> Result<Self, DatasetError> {
        let mut file = File::open(path).map_err(|source| DatasetError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let layout = NpyLayout::read(path, &mut file)?;
        if !(2..=4).contains(&layout.shape.len()) || layout.shape[1..].contains(&0) {
            return Err(DatasetError::Shape {
                path: path.to_path_buf(),
                dataset: "array".into(),
                found: layout.shape,
                expected: "it must be N×C×H×W, N×H×W or N×F".into(),
            });
        }
        if layout.ty == NpyType::Bool {
            return Err(npy_err(
                path,
                "a bool array is not model input; save float32",
            ));
        }
        Ok(NpyData {
            path: path.to_path_buf(),
            layout,
            file: Mutex::new(file),
        })
    }

    /// Reads rows `[a, b)` as f32.
    pub(crate) fn read_rows(&self, a: usize, b: usize) -> Result<Vec<f32>, DatasetError> {
        let row: usize = self.layout.shape[1..].iter().product::<usize>() * self.layout.ty.size();
        let mut bytes = vec![0u8; (b - a) * row];
        {
            let mut file = self
                .file
                .lock()
                .map_err(|_| npy_err(&self.path, "a reader thread failed earlier"))?;
            file.seek(SeekFrom::Start(self.layout.offset + (a * row) as u64))
                .and_then(|_| file.read_exact(&mut bytes))
                .map_err(|e| npy_err(&self.path, format!("cannot read rows {a}..{b}: {e}")))?;
        }
        let mut v = Vec::with_capacity(bytes.len() / self.layout.ty.size());
        self.layout.decode(&bytes, &mut v);
        Ok(v.into_iter().map(|x| x as f32).collect())
    }
}

/// Reads a labels `.npy` file: N integers (class numbers; negative = unlabelled) or an N×classes
/// bool / 0-1 integer n-hot matrix.
pub(crate) fn read_npy_labels(path: &Path, n: usize) -> Result<LabelSet, DatasetError> {
    let mut file = File::open(path).map_err(|source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let layout = NpyLayout::read(path, &mut file)?;
    let where_ = path.display().to_string();
    if layout.shape.first() != Some(&n) || layout.shape.len() > 2 {
        return Err(DatasetError::LabelCount {
            path: path.to_path_buf(),
            labels: where_,
            samples: n,
            found: layout.shape,
        });
    }
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(layout.offset))
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(|source| DatasetError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    let mut values = Vec::new();
    layout.decode(&bytes, &mut values);
    values.truncate(layout.shape.iter().product());
    if layout.ty == NpyType::Bool && layout.shape.len() == 2 {
        let bits = values.iter().map(|&v| v != 0.0).collect();
        return Ok(LabelSet::multi_hot(layout.shape[1], bits));
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
    LabelSet::from_ints(&layout.shape, ints, &where_)
}
