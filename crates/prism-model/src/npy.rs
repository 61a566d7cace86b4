//! Reading and writing NumPy `.npy` arrays (the interchange format of inputs, logits and
//! relevance maps), on the `npyz` crate.

use std::io::{BufWriter, Write};
use std::path::Path;

use npyz::{TypeChar, WriterBuilder};

use crate::error::{ModelError, Result};
use crate::tensor::{Float, Tensor};

fn io_err(path: &Path, source: std::io::Error) -> ModelError {
    ModelError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn bad(path: &Path, detail: impl Into<String>) -> ModelError {
    ModelError::Invalid(format!("{}: {}", path.display(), detail.into()))
}

/// Reads a numeric array (float or integer, C order) as float `T`.
pub fn read_float<T: Float>(path: &Path) -> Result<Tensor<T>> {
    let (shape, data) = read_any(path)?;
    Ok(Tensor::from_parts(
        shape,
        data.into_iter().map(T::of).collect(),
    ))
}

/// Reads an integer array (or a float array holding integers) as i64.
pub fn read_i64(path: &Path) -> Result<Tensor<i64>> {
    let (shape, data) = read_any(path)?;
    let ints: Option<Vec<i64>> = data
        .iter()
        .map(|&v| (v.fract() == 0.0).then_some(v as i64))
        .collect();
    let ints = ints.ok_or_else(|| {
        bad(
            path,
            "expected integer values (e.g. class labels), found fractions",
        )
    })?;
    Ok(Tensor::from_parts(shape, ints))
}

fn read_any(path: &Path) -> Result<(Vec<usize>, Vec<f64>)> {
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    let file = npyz::NpyFile::new(&bytes[..])
        .map_err(|e| bad(path, format!("not a valid .npy file ({e})")))?;
    if file.order() == npyz::Order::Fortran {
        return Err(bad(
            path,
            "array is in Fortran order; save it with np.ascontiguousarray(a)",
        ));
    }
    let shape: Vec<usize> = file.shape().iter().map(|&d| d as usize).collect();
    let npyz::DType::Plain(ts) = file.dtype() else {
        return Err(bad(
            path,
            "structured arrays are not supported; save a plain numeric array",
        ));
    };
    let truncated = |e: std::io::Error| {
        bad(
            path,
            format!("cannot read the data ({e}); the file may be truncated"),
        )
    };
    let data: Vec<f64> = match (ts.type_char(), ts.size_field()) {
        (TypeChar::Float, 4) => file
            .into_vec::<f32>()
            .map_err(truncated)?
            .into_iter()
            .map(f64::from)
            .collect(),
        (TypeChar::Float, 8) => file.into_vec::<f64>().map_err(truncated)?,
        (TypeChar::Int, 8) => file
            .into_vec::<i64>()
            .map_err(truncated)?
            .into_iter()
            .map(|v| v as f64)
            .collect(),
        (TypeChar::Int, 4) => file
            .into_vec::<i32>()
            .map_err(truncated)?
            .into_iter()
            .map(f64::from)
            .collect(),
        (TypeChar::Int, 2) => file
            .into_vec::<i16>()
            .map_err(truncated)?
            .into_iter()
            .map(f64::from)
            .collect(),
        (TypeChar::Int, 1) => file
            .into_vec::<i8>()
            .map_err(truncated)?
            .into_iter()
            .map(f64::from)
            .collect(),
        (TypeChar::Uint, 1) | (TypeChar::Bool, 1) => file
            .into_vec::<u8>()
            .map_err(truncated)?
            .into_iter()
            .map(f64::from)
            .collect(),
        (TypeChar::Uint, 2) => file
            .into_vec::<u16>()
            .map_err(truncated)?
            .into_iter()
            .map(f64::from)
            .collect(),
        (TypeChar::Uint, 4) => file
            .into_vec::<u32>()
            .map_err(truncated)?
            .into_iter()
            .map(f64::from)
            .collect(),
        (TypeChar::Uint, 8) => file
            .into_vec::<u64>()
            .map_err(truncated)?
            .into_iter()
            .map(|v| v as f64)
            .collect(),
        _ => {
            return Err(bad(
                path,
                format!("unsupported dtype '{ts}'; use float32, float64 or an integer type"),
            ))
        }
    };
    if data.len() != shape.iter().product::<usize>() {
        return Err(bad(
            path,
            "data length does not match the header's shape; the file is truncated",
        ));
    }
    Ok((shape, data))
}

/// Writes a float tensor as `.npy` (f32 → `<f4`, f64 → `<f8`), atomically: the data goes to a
/// temporary file in the same folder that is renamed over `path` once complete.
pub fn write_float<T: Float + npyz::AutoSerialize>(path: &Path, t: &Tensor<T>) -> Result<()> {
    write_with(path, t.shape(), t.data())
}

/// Writes an i64 tensor as `.npy`, atomically.
pub fn write_i64(path: &Path, t: &Tensor<i64>) -> Result<()> {
    write_with(path, t.shape(), t.data())
}

fn write_with<T: npyz::AutoSerialize + Copy>(
    path: &Path,
    shape: &[usize],
    data: &[T],
) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.partial-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let file = std::fs::File::create(&tmp)?;
        let mut w = BufWriter::new(file);
        let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        let mut writer = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&shape)
            .writer(&mut w)
            .begin_nd()?;
        writer.extend(data.iter().copied())?;
        writer.finish()?;
        w.flush()?;
        Ok(())
    })();
    match result.and_then(|_| std::fs::rename(&tmp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(io_err(path, e))
        }
    }
}
