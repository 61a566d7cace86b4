//! Small HDF5 helpers shared by the readers and writers: attributes, row reads.

use std::path::Path;

use hdf5::types::{TypeDescriptor, VarLenAscii, VarLenUnicode};
use ndarray::s;

use crate::error::{Result, StoreError};

/// A value of an HDF5 attribute as Prism writes and reads it.
///
/// Strings are written as variable-length UTF-8 (what h5py returns as `str`), and read
/// tolerantly (variable or fixed length, ASCII or UTF-8), because other writers differ.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    Float(f64),
    FloatArray(Vec<f32>),
    IntArray(Vec<i64>),
}

impl AttrValue {
    /// The string, if this is a string attribute.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttrValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

pub(crate) fn write_attr(
    loc: &hdf5::Location,
    path: &Path,
    owner: &str,
    name: &str,
    value: &AttrValue,
) -> Result<()> {
    let err = |source| StoreError::Write {
        path: path.to_path_buf(),
        dataset: format!("{owner}@{name}"),
        source,
    };
    if loc.attr_names().map_err(err)?.iter().any(|n| n == name) {
        loc.delete_attr(name).map_err(err)?;
    }
    match value {
        AttrValue::Str(s) => {
            let v: VarLenUnicode = s.parse().map_err(|e: hdf5::types::StringError| {
                err(hdf5::Error::from(e.to_string().as_str()))
            })?;
            loc.new_attr::<VarLenUnicode>()
                .create(name)
                .and_then(|a| a.write_scalar(&v))
                .map_err(err)?;
        }
        AttrValue::Int(v) => loc
            .new_attr::<i64>()
            .create(name)
            .and_then(|a| a.write_scalar(v))
            .map_err(err)?,
        AttrValue::Float(v) => loc
            .new_attr::<f64>()
            .create(name)
            .and_then(|a| a.write_scalar(v))
            .map_err(err)?,
        AttrValue::FloatArray(v) => {
            loc.new_attr_builder()
                .with_data(v.as_slice())
                .create(name)
                .map_err(err)?;
        }
        AttrValue::IntArray(v) => {
            loc.new_attr_builder()
                .with_data(v.as_slice())
                .create(name)
                .map_err(err)?;
        }
    }
    Ok(())
}

/// Reads an attribute type-tolerantly; `None` if it is absent or of a kind Prism does not use.
pub(crate) fn read_attr(
    loc: &hdf5::Location,
    path: &Path,
    owner: &str,
    name: &str,
) -> Result<Option<AttrValue>> {
    let err = |source| StoreError::Read {
        path: path.to_path_buf(),
        dataset: format!("{owner}@{name}"),
        source,
    };
    if !loc.attr_names().map_err(err)?.iter().any(|n| n == name) {
        return Ok(None);
    }
    let attr = loc.attr(name).map_err(err)?;
    let desc = attr.dtype().and_then(|t| t.to_descriptor()).map_err(err)?;
    let scalar = attr.is_scalar();
    let value = match desc {
        TypeDescriptor::VarLenUnicode => AttrValue::Str(
            attr.read_scalar::<VarLenUnicode>()
                .map_err(err)?
                .to_string(),
        ),
        TypeDescriptor::VarLenAscii => {
            AttrValue::Str(attr.read_scalar::<VarLenAscii>().map_err(err)?.to_string())
        }
        TypeDescriptor::FixedAscii(_) | TypeDescriptor::FixedUnicode(_) => {
            // Read the raw bytes: fixed-length strings of any size.
            let bytes = attr.read_raw::<u8>().ok();
            match bytes {
                Some(b) => AttrValue::Str(
                    String::from_utf8_lossy(&b)
                        .trim_end_matches('\0')
                        .to_string(),
                ),
                None => return Ok(None),
            }
        }
        TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) if scalar => {
            AttrValue::Int(attr.read_scalar::<i64>().map_err(err)?)
        }
        TypeDescriptor::Float(_) if scalar => {
            AttrValue::Float(attr.read_scalar::<f64>().map_err(err)?)
        }
        TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) => {
            AttrValue::IntArray(attr.read_raw::<i64>().map_err(err)?)
        }
        TypeDescriptor::Float(_) => AttrValue::FloatArray(attr.read_raw::<f32>().map_err(err)?),
        _ => return Ok(None),
    };
    Ok(Some(value))
}

/// Reads rows `[a, b)` of a dataset of rank 1 to 4 as f32 (HDF5 converts other number types).
/// Opens an HDF5 file for reading; the error names the file.
pub(crate) fn open_file(path: &Path) -> Result<hdf5::File> {
    // A missing file is an I/O error of its own (callers tell it from a broken file), not
    // HDF5's generic open failure.
    if let Err(source) = std::fs::metadata(path) {
        if source.kind() == std::io::ErrorKind::NotFound {
            return Err(StoreError::NotFound {
                path: path.to_path_buf(),
                source,
            });
        }
    }
    hdf5::File::open(path).map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    })
}

/// The most elements Prism reads from one HDF5 dataset in one piece (a whole `label`, `index`,
/// embedding or clustering) or as one row of a row-read dataset (one sample of `attribution`,
/// `prediction` or a dataset's `data`): 2²⁸, 1 GiB of f32. An HDF5 header may declare any shape
/// (a chunked dataset needs no storage for unwritten chunks), and reading a declared 2⁴⁰ values
/// would abort the process on a failed allocation; such a dataset is refused first.
pub const MAX_READ_ELEMENTS: usize = 1 << 28;

/// Refuses a dataset whose declared size is past [`MAX_READ_ELEMENTS`]: in all (`whole`), or
/// per row (the dimensions after the first) for a dataset read by rows.
pub(crate) fn check_declared(
    ds: &hdf5::Dataset,
    path: &Path,
    name: &str,
    whole: bool,
) -> Result<()> {
    let shape = ds.shape();
    let dims = if whole {
        &shape[..]
    } else {
        shape.get(1..).unwrap_or(&[])
    };
    let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    match n {
        Some(n) if n <= MAX_READ_ELEMENTS => Ok(()),
        _ => Err(StoreError::Shape {
            path: path.to_path_buf(),
            dataset: name.to_string(),
            found: shape,
            expected: format!(
                "{} more than the {MAX_READ_ELEMENTS} values Prism reads {} (is the file \
                 corrupt?)",
                if whole {
                    "it declares"
                } else {
                    "each row declares"
                },
                if whole { "from one dataset" } else { "per row" },
            ),
        }),
    }
}

pub(crate) fn read_rows_f32(ds: &hdf5::Dataset, a: usize, b: usize) -> hdf5::Result<Vec<f32>> {
    let arr: ndarray::ArrayD<f32> = match ds.ndim() {
        1 => ds.read_slice(s![a..b])?,
        2 => ds.read_slice(s![a..b, ..])?,
        3 => ds.read_slice(s![a..b, .., ..])?,
        4 => ds.read_slice(s![a..b, .., .., ..])?,
        5 => ds.read_slice(s![a..b, .., .., .., ..])?,
        n => {
            return Err(format!("datasets of rank {n} are not supported")
                .as_str()
                .into())
        }
    };
    Ok(into_vec(arr))
}

pub(crate) fn into_vec<T: Clone, D: ndarray::Dimension>(arr: ndarray::Array<T, D>) -> Vec<T> {
    if arr.is_standard_layout() {
        let (v, off) = arr.into_raw_vec_and_offset();
        if off.unwrap_or(0) == 0 {
            return v;
        }
        // An offset only happens for views into a larger buffer; fall through to a copy.
        return v;
    }
    arr.iter().cloned().collect()
}

/// Describes an HDF5 type for error messages.
pub(crate) fn describe(desc: &TypeDescriptor) -> String {
    format!("{desc}")
}

/// Splits sorted, distinct row numbers into runs of consecutive rows `[start, end)`.
pub fn row_runs(rows: &[usize]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut iter = rows.iter().copied();
    let Some(first) = iter.next() else {
        return runs;
    };
    let (mut a, mut b) = (first, first + 1);
    for r in iter {
        if r == b {
            b += 1;
        } else {
            runs.push((a, b));
            a = r;
            b = r + 1;
        }
    }
    runs.push((a, b));
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_runs_groups_consecutive_rows() {
        assert_eq!(row_runs(&[]), vec![]);
        assert_eq!(row_runs(&[3]), vec![(3, 4)]);
        assert_eq!(row_runs(&[0, 1, 2, 5, 6, 9]), vec![(0, 3), (5, 7), (9, 10)]);
    }
}
