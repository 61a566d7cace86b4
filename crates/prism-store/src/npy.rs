//! NumPy `.npy` arrays, the interchange format of inputs, labels, logits and relevance maps:
//! the one `.npy` reader and writer of the workspace.
//!
//! [`NpyArray`] opens a file, checks its header and reads rows of the first axis by byte range,
//! so a dataset never has to fit in memory; [`read_float`] and [`read_i64`] read a whole array
//! into a [`Tensor`]; [`write_float`] and [`write_i64`] write one atomically. Every numeric
//! element type NumPy writes (float16/32/64, signed and unsigned integers of 1–8 bytes, bool),
//! little- or big-endian, is read; arrays must be in C order (1-D arrays in either order).
//! Values are widened to f64 exactly, then converted to the caller's type.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use npyz::WriterBuilder;
use prism_model::{DType, Float, Tensor};

/// Errors of reading or writing a `.npy` file; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    /// The file could not be opened or read.
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file could not be written (or renamed into place).
    #[error(transparent)]
    Write(#[from] crate::atomic::WriteError),
    /// The file is not a `.npy` array Prism reads (bad header, type, order, truncated data).
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

fn invalid(path: &Path, message: impl Into<String>) -> NpyError {
    NpyError::Invalid {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// The element type of a `.npy` array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NpyType {
    F16,
    F32,
    F64,
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
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            NpyType::U8 | NpyType::I8 | NpyType::Bool => 1,
            NpyType::U16 | NpyType::I16 | NpyType::F16 => 2,
            NpyType::U32 | NpyType::I32 | NpyType::F32 => 4,
            NpyType::U64 | NpyType::I64 | NpyType::F64 => 8,
        }
    }

    /// Whether the type holds floating-point numbers.
    pub fn is_float(self) -> bool {
        match self {
            NpyType::F16 | NpyType::F32 | NpyType::F64 => true,
            NpyType::U8
            | NpyType::I8
            | NpyType::U16
            | NpyType::I16
            | NpyType::U32
            | NpyType::I32
            | NpyType::U64
            | NpyType::I64
            | NpyType::Bool => false,
        }
    }
}

/// Counts the bytes the header parser consumes: the data starts right after them.
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

/// The most header bytes [`refuse_header`] looks at (NumPy writes headers of a few hundred
/// bytes; a longer one is left to npyz, which reads it in full).
const HEADER_SCAN_BYTES: u64 = 1 << 16;

/// The deepest nesting of brackets a header may have: NumPy's own headers nest a few levels (a
/// structured type with a sub-array: `{ [ ( (` is 4; a nested structure 6), and npyz's parser
/// takes time exponential in the depth (a header of 100 `[` took 14 s; 12 levels of mixed `{`
/// and `(` took 5 s).
const MAX_HEADER_NESTING: usize = 8;

/// Checks a header before npyz parses it, for what npyz does not survive: brackets nested
/// deeper than [`MAX_HEADER_NESTING`], or a tuple of integers (the shape, or a sub-array's
/// shape in the type) whose product, zero-length axes counted as 1, is beyond `u64` (npyz
/// multiplies the shape unchecked: a panic with overflow checks, a wrapped element count
/// without). Returns why the header is refused; leaves the file at its start.
fn refuse_header(file: &mut File) -> std::io::Result<Option<&'static str>> {
    // magic, version, header length (2 bytes in version 1, 4 after), then the header text
    let mut prefix = Vec::new();
    Read::take(&mut *file, 12).read_to_end(&mut prefix)?;
    let (start, len) = match prefix.get(6) {
        Some(1) if prefix.len() >= 10 => {
            (10, u64::from(u16::from_le_bytes([prefix[8], prefix[9]])))
        }
        Some(_) if prefix.len() >= 12 => (
            12,
            u64::from(u32::from_le_bytes([
                prefix[8], prefix[9], prefix[10], prefix[11],
            ])),
        ),
        _ => (prefix.len() as u64, 0),
    };
    let mut head = Vec::new();
    file.seek(SeekFrom::Start(start))?;
    Read::take(&mut *file, len.min(HEADER_SCAN_BYTES)).read_to_end(&mut head)?;
    file.seek(SeekFrom::Start(0))?;
    let mut depth = 0usize;
    for &b in &head {
        match b {
            b'[' | b'(' | b'{' => depth += 1,
            b']' | b')' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth > MAX_HEADER_NESTING {
            return Ok(Some("the header's brackets are nested too deeply"));
        }
    }
    let text = String::from_utf8_lossy(&head);
    for (at, _) in text.match_indices('(') {
        let inner = &text[at + 1..];
        let Some(close) = inner.find(')') else {
            break;
        };
        let mut product: u64 = 1;
        for part in inner[..close].split(',') {
            let digits = part.trim().trim_end_matches('L');
            if digits.is_empty() {
                continue;
            }
            let Ok(d) = digits.parse::<u128>() else {
                break;
            };
            match u64::try_from(d)
                .ok()
                .and_then(|d| product.checked_mul(d.max(1)))
            {
                Some(p) => product = p,
                None => {
                    return Ok(Some(
                        "the header's shape is too large to be an array in memory",
                    ))
                }
            }
        }
    }
    Ok(None)
}

/// An open `.npy` array: its header read and checked, its data read on demand.
#[derive(Debug)]
pub struct NpyArray {
    path: PathBuf,
    shape: Vec<usize>,
    ty: NpyType,
    big_endian: bool,
    offset: u64,
    descr: String,
    file: Mutex<File>,
}

impl NpyArray {
    /// Opens a `.npy` file and reads its header. Fails on a malformed header, a structured or
    /// non-numeric type, Fortran order (of more than one axis), or a file shorter than its shape.
    pub fn open(path: impl AsRef<Path>) -> Result<NpyArray, NpyError> {
        let path = path.as_ref();
        let mut file = File::open(path).map_err(|source| NpyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let refused = refuse_header(&mut file).map_err(|source| NpyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if let Some(why) = refused {
            return Err(invalid(path, why));
        }
        let mut counting = Counting {
            inner: &mut file,
            n: 0,
        };
        let header = npyz::NpyHeader::from_reader(&mut counting)
            .map_err(|e| invalid(path, format!("not a valid .npy file ({e})")))?;
        let offset = counting.n;
        if header.order() == npyz::Order::Fortran && header.shape().len() > 1 {
            return Err(invalid(
                path,
                "the array is in Fortran order; save it with np.ascontiguousarray(a)",
            ));
        }
        let npyz::DType::Plain(ts) = header.dtype() else {
            return Err(invalid(
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
                return Err(invalid(
                    path,
                    format!("element type `{ts}` is not supported (use float32)"),
                ))
            }
        };
        let big_endian = matches!(ts.endianness(), npyz::Endianness::Big);
        let shape: Vec<usize> = header.shape().iter().map(|&d| d as usize).collect();
        // The header's shape is untrusted: its size in bytes must not overflow before it is
        // compared with the file's length, and neither may that of any part of it (a row, an
        // image), which a zero-length axis elsewhere would hide: the size with zero-length axes
        // counted as 1 must fit.
        fn bytes(size: usize, mut dims: impl Iterator<Item = usize>) -> Option<u64> {
            dims.try_fold(size, |acc, d| acc.checked_mul(d))
                .and_then(|b| u64::try_from(b).ok())
        }
        let need = bytes(ty.size(), shape.iter().map(|&d| d.max(1)))
            .and_then(|_| bytes(ty.size(), shape.iter().copied()))
            .and_then(|data| offset.checked_add(data))
            .ok_or_else(|| {
                invalid(
                    path,
                    format!("the header's shape {shape:?} is too large to be an array in memory"),
                )
            })?;
        let have = file
            .metadata()
            .map_err(|source| NpyError::Io {
                path: path.to_path_buf(),
                source,
            })?
            .len();
        if have < need {
            return Err(invalid(
                path,
                format!(
                    "the file is truncated: shape {shape:?} needs {need} bytes, the file has \
                     {have} (re-create or re-copy it)"
                ),
            ));
        }
        Ok(NpyArray {
            path: path.to_path_buf(),
            shape,
            ty,
            big_endian,
            offset,
            descr: ts.to_string(),
            file: Mutex::new(file),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The array's shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The element type.
    pub fn element_type(&self) -> NpyType {
        self.ty
    }

    /// NumPy's type string, e.g. `<f4`.
    pub fn descr(&self) -> &str {
        &self.descr
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Elements per row of the first axis (1 for a 0-d or 1-D array).
    fn row_len(&self) -> usize {
        self.shape.get(1..).map_or(1, |s| s.iter().product())
    }

    /// Rows `[a, b)` of the first axis, widened to f64 (a 0-d array has one row).
    pub fn read_rows(&self, a: usize, b: usize) -> Result<Vec<f64>, NpyError> {
        let rows = self.shape.first().copied().unwrap_or(1);
        if a > b || b > rows {
            return Err(invalid(
                &self.path,
                format!("rows {a}..{b} are out of range ({rows} rows)"),
            ));
        }
        let row = self.row_len() * self.ty.size();
        let mut bytes = vec![0u8; (b - a) * row];
        {
            let mut file = self
                .file
                .lock()
                .map_err(|_| invalid(&self.path, "a reader thread failed earlier"))?;
            file.seek(SeekFrom::Start(self.offset + (a * row) as u64))
                .and_then(|_| file.read_exact(&mut bytes))
                .map_err(|e| invalid(&self.path, format!("cannot read rows {a}..{b}: {e}")))?;
        }
        Ok(self.decode(&bytes))
    }

    /// The whole array, widened to f64.
    pub fn read_all(&self) -> Result<Vec<f64>, NpyError> {
        let rows = self.shape.first().copied().unwrap_or(1);
        self.read_rows(0, rows)
    }

    fn decode(&self, bytes: &[u8]) -> Vec<f64> {
        let s = self.ty.size();
        let mut out = Vec::with_capacity(bytes.len() / s);
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
        out
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

fn tensor<T>(path: &Path, shape: Vec<usize>, data: Vec<T>) -> Result<Tensor<T>, NpyError> {
    Tensor::new(shape, data).map_err(|e| invalid(path, e.to_string()))
}

/// Reads a numeric array (float or integer, C order) as float `T`.
pub fn read_float<T: Float>(path: &Path) -> Result<Tensor<T>, NpyError> {
    let array = NpyArray::open(path)?;
    let data = array.read_all()?;
    tensor(
        path,
        array.shape.clone(),
        data.into_iter().map(T::of).collect(),
    )
}

/// [`read_float`], and the blake3 (hex) of the file's bytes: what a method records for an
/// array it reads (an Integrated Gradients baseline), like a composite file's hash.
pub fn read_float_hashed<T: Float>(path: &Path) -> Result<(Tensor<T>, String), NpyError> {
    let bytes = std::fs::read(path).map_err(|e| NpyError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let hash = blake3::hash(&bytes).to_hex().to_string();
    Ok((read_float(path)?, hash))
}

/// Reads an integer array (or a float array holding integers) as i64.
pub fn read_i64(path: &Path) -> Result<Tensor<i64>, NpyError> {
    let array = NpyArray::open(path)?;
    let data = array.read_all()?;
    let ints: Option<Vec<i64>> = data
        .iter()
        .map(|&v| (v.fract() == 0.0).then_some(v as i64))
        .collect();
    let ints = ints.ok_or_else(|| {
        invalid(
            path,
            "expected integer values (e.g. class labels), found fractions",
        )
    })?;
    tensor(path, array.shape.clone(), ints)
}

/// Writes a float tensor as `.npy` (f32 → `<f4`, f64 → `<f8`), atomically: the data goes to a
/// temporary file in the same folder that is renamed over `path` once complete.
pub fn write_float<T: Float>(path: &Path, t: &Tensor<T>) -> Result<(), NpyError> {
    match T::DTYPE {
        DType::F32 => {
            let v: Vec<f32> = t.data().iter().map(|x| x.f64() as f32).collect();
            write_with(path, t.shape(), &v)
        }
        DType::F64 => {
            let v: Vec<f64> = t.data().iter().map(|x| x.f64()).collect();
            write_with(path, t.shape(), &v)
        }
        DType::I64 => Err(invalid(path, "an i64 tensor is written with write_i64")),
    }
}

/// Writes an i64 tensor as `.npy`, atomically.
pub fn write_i64(path: &Path, t: &Tensor<i64>) -> Result<(), NpyError> {
    write_with(path, t.shape(), t.data())
}

/// Writes integers of shape `shape` (row-major) as an i64 `.npy`, atomically; for writers that
/// hold no [`Tensor`] (generated token datasets).
pub fn write_i64_array(path: &Path, shape: &[usize], data: &[i64]) -> Result<(), NpyError> {
    if shape.iter().product::<usize>() != data.len() {
        return Err(invalid(
            path,
            format!("shape {shape:?} does not hold {} values", data.len()),
        ));
    }
    write_with(path, shape, data)
}

fn write_with<T: npyz::AutoSerialize + Copy>(
    path: &Path,
    shape: &[usize],
    data: &[T],
) -> Result<(), NpyError> {
    crate::atomic::write_atomic(path, |w| {
        let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        let mut writer = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&shape)
            .writer(w)
            .begin_nd()?;
        writer.extend(data.iter().copied())?;
        writer.finish()
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_arrays_round_trip_bit_for_bit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        let t = Tensor::new(vec![2, 3], vec![0.1f32, -2.5, 1e-30, f32::MAX, 0.0, 7.0]).unwrap();
        write_float(&p, &t).unwrap();
        let back: Tensor<f32> = read_float(&p).unwrap();
        assert_eq!(back.shape(), [2, 3]);
        assert_eq!(
            back.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        let t64 = Tensor::new(vec![3], vec![0.1f64, -1.0 / 3.0, 1e300]).unwrap();
        write_float(&p, &t64).unwrap();
        assert_eq!(read_float::<f64>(&p).unwrap().data(), t64.data());
        let ints = Tensor::new(vec![4], vec![3i64, -1, 0, 1 << 40]).unwrap();
        write_i64(&p, &ints).unwrap();
        assert_eq!(read_i64(&p).unwrap().data(), ints.data());
    }

    #[test]
    fn rows_are_read_by_byte_range() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rows.npy");
        let t = Tensor::new(vec![4, 2], (0..8).map(f64::from).collect()).unwrap();
        write_float(&p, &t).unwrap();
        let a = NpyArray::open(&p).unwrap();
        assert_eq!(a.shape(), [4, 2]);
        assert_eq!(a.descr(), "<f8");
        assert_eq!(a.read_rows(1, 3).unwrap(), [2.0, 3.0, 4.0, 5.0]);
        assert!(a.read_rows(3, 5).is_err());
    }

    #[test]
    fn fractional_labels_are_refused_as_integers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.npy");
        write_float(&p, &Tensor::new(vec![2], vec![1.0f32, 1.5]).unwrap()).unwrap();
        let e = read_i64(&p).unwrap_err().to_string();
        assert!(e.contains("fractions") && e.contains("l.npy"), "{e}");
    }

    #[test]
    fn truncated_files_are_named_and_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cut.npy");
        write_float(&p, &Tensor::new(vec![64], vec![1.0f32; 64]).unwrap()).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 8]).unwrap();
        let e = read_float::<f32>(&p).unwrap_err().to_string();
        assert!(e.contains("truncated") && e.contains("cut.npy"), "{e}");
    }

    /// A `.npy` file with the given header dictionary and `data` after it (version 1.0).
    fn npy_bytes(dict: &str, data: &[u8]) -> Vec<u8> {
        let mut header = dict.to_string();
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    /// Found by fuzzing (`fuzz/run.sh npy`): a header whose shape's size overflows `usize`
    /// panicked (debug) or wrapped past the truncation check (release); a zero-length first
    /// axis hid an overflowing row size the same way.
    #[test]
    fn shapes_whose_size_overflows_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("huge.npy");
        for shape in [
            "(4611686018427387904, 4)",
            "(18446744073709551615,)",
            "(0, 4294967296, 4294967296)",
            "(3, 0, 18446744073709551615, 2)",
        ] {
            let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
            std::fs::write(&p, npy_bytes(&dict, &[0; 16])).unwrap();
            let e = NpyArray::open(&p).unwrap_err().to_string();
            assert!(
                e.contains("too large") && e.contains("huge.npy"),
                "{shape}: {e}"
            );
            assert!(read_float::<f32>(&p).is_err(), "{shape}");
        }
        // the helper writes valid files: an honest header opens
        let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }";
        std::fs::write(&p, npy_bytes(dict, &[0; 16])).unwrap();
        assert_eq!(NpyArray::open(&p).unwrap().shape(), [2, 2]);
    }

    /// Found by fuzzing (`fuzz/run.sh npy`): a header of deeply nested brackets took npyz's
    /// parser 14 s (its time grows exponentially with the depth).
    #[test]
    fn deeply_nested_headers_are_refused_quickly() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nested.npy");
        let dict = format!(
            "{{'descr': {}'<f4'{}, 'fortran_order': False, 'shape': (2,), }}",
            "[".repeat(100),
            "]".repeat(100)
        );
        std::fs::write(&p, npy_bytes(&dict, &[0; 8])).unwrap();
        let start = std::time::Instant::now();
        let e = NpyArray::open(&p).unwrap_err().to_string();
        assert!(e.contains("nested too deeply"), "{e}");
        assert!(start.elapsed().as_secs() < 1);
    }

    /// Found by fuzzing (`fuzz/run.sh npy`, after 2197 executions with the limit at 16): 12
    /// levels of mixed `{` and `(` took npyz 5 s. The input is in the corpus
    /// (`regression-nested-mixed.npy`); nesting deeper than 8 is refused.
    #[test]
    fn mixed_nesting_is_refused_quickly() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("mixed.npy");
        let dict = format!(
            "{{'descr': {}'<f4'{}, 'fortran_order': False, 'shape': (2,), }}",
            "{ (3,".repeat(5),
            ")}".repeat(5)
        );
        std::fs::write(&p, npy_bytes(&dict, &[0; 8])).unwrap();
        let start = std::time::Instant::now();
        let e = NpyArray::open(&p).unwrap_err().to_string();
        assert!(e.contains("nested too deeply"), "{e}");
        assert!(start.elapsed().as_secs() < 1);
    }
}
