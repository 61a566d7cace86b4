//! Writes ViRelAy HDF5 datasets: `data` (N×C×H×W float32, gzip-compressed chunks of whole
//! samples) and `label` (N uint16), what ViRelAy's `make_test_data.py` writes.

use std::path::{Path, PathBuf};

use super::array::{DATA, LABEL};
use super::{DatasetError, Result};
use crate::atomic::StagedFile;
use crate::error::StoreError;

/// The element type of a written dataset's `data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleType {
    /// float32, what ViRelAy's `make_test_data.py` writes.
    F32,
    /// uint8 (pictures as stored bytes); written with [`DatasetWriter::write_u8`].
    U8,
}

/// How `data` is stored: element type, chunk size and compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataLayout {
    pub sample_type: SampleType,
    /// Values per chunk (rounded down to whole samples, at least one sample).
    pub chunk_values: usize,
    /// gzip level, or `None` for uncompressed chunks.
    pub deflate: Option<u8>,
}

impl Default for DataLayout {
    /// float32 in gzip-compressed (level 4) chunks of about 1 MiB.
    fn default() -> Self {
        DataLayout {
            sample_type: SampleType::F32,
            chunk_values: 262_144,
            deflate: Some(4),
        }
    }
}

/// Writes a ViRelAy HDF5 dataset batch by batch; the file appears under its name only after
/// [`DatasetWriter::finish`] (it is written under a temporary name until then).
pub struct DatasetWriter {
    target: StagedFile,
    _file: hdf5::File,
    data: hdf5::Dataset,
    label: hdf5::Dataset,
    n: usize,
    sample_len: usize,
    sample_type: SampleType,
    written: usize,
}

impl std::fmt::Debug for DatasetWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatasetWriter")
            .field("path", &self.target.final_path())
            .field("n", &self.n)
            .field("written", &self.written)
            .finish()
    }
}

fn usage(path: &Path, message: String) -> DatasetError {
    DatasetError::Store(StoreError::Usage {
        path: path.to_path_buf(),
        message,
    })
}

impl DatasetWriter {
    /// Creates a dataset of `n` samples of shape `sample_shape` (`[C, H, W]`, or any shape),
    /// float32 in the [`DataLayout::default`] layout.
    pub fn create(path: impl AsRef<Path>, n: usize, sample_shape: &[usize]) -> Result<Self> {
        Self::with_layout(path, n, sample_shape, DataLayout::default())
    }

    /// Creates a dataset of `n` samples of shape `sample_shape` stored as `layout` says.
    pub fn with_layout(
        path: impl AsRef<Path>,
        n: usize,
        sample_shape: &[usize],
        layout: DataLayout,
    ) -> Result<Self> {
        let target = StagedFile::new(path.as_ref());
        let fpath: PathBuf = target.final_path().to_path_buf();
        if n == 0 || sample_shape.is_empty() || sample_shape.contains(&0) {
            return Err(usage(
                &fpath,
                format!("cannot write a dataset of {n} samples of shape {sample_shape:?}"),
            ));
        }
        let file = hdf5::File::create(target.temp_path()).map_err(|source| StoreError::Create {
            path: fpath.clone(),
            source,
        })?;
        let werr = |name: &'static str| {
            let fpath = fpath.clone();
            move |source| {
                DatasetError::Store(StoreError::Write {
                    path: fpath,
                    dataset: name.into(),
                    source,
                })
            }
        };
        let sample_len: usize = sample_shape.iter().product();
        let mut shape = vec![n];
        shape.extend_from_slice(sample_shape);
        // Chunks of whole samples.
        let mut chunk = vec![(layout.chunk_values / sample_len.max(1)).clamp(1, n)];
        chunk.extend_from_slice(sample_shape);
        let builder = match layout.sample_type {
            SampleType::F32 => file.new_dataset::<f32>(),
            SampleType::U8 => file.new_dataset::<u8>(),
        }
        .shape(shape)
        .chunk(chunk);
        let builder = match layout.deflate {
            Some(level) => builder.deflate(level),
            None => builder,
        };
        let data = builder.create(DATA).map_err(werr(DATA))?;
        let label = file
            .new_dataset::<u16>()
            .shape([n])
            .create(LABEL)
            .map_err(werr(LABEL))?;
        Ok(DatasetWriter {
            target,
            _file: file,
            data,
            label,
            n,
            sample_len,
            sample_type: layout.sample_type,
            written: 0,
        })
    }

    /// Appends samples (row-major) and their labels (class numbers < 65 536) to a float32
    /// dataset.
    pub fn write(&mut self, data: &[f32], labels: &[u32]) -> Result<()> {
        self.write_rows(SampleType::F32, data, labels)
    }

    /// Appends samples stored as bytes to a [`SampleType::U8`] dataset.
    pub fn write_u8(&mut self, data: &[u8], labels: &[u32]) -> Result<()> {
        self.write_rows(SampleType::U8, data, labels)
    }

    fn write_rows<T: hdf5::H5Type>(
        &mut self,
        sample_type: SampleType,
        data: &[T],
        labels: &[u32],
    ) -> Result<()> {
        let path = self.target.final_path().to_path_buf();
        if sample_type != self.sample_type {
            return Err(usage(
                &path,
                format!(
                    "{sample_type:?} samples given, but the dataset stores {:?}",
                    self.sample_type
                ),
            ));
        }
        let rows = labels.len();
        if data.len() != rows * self.sample_len {
            return Err(usage(
                &path,
                format!(
                    "{} values for {rows} labels, but a sample has {} values",
                    data.len(),
                    self.sample_len
                ),
            ));
        }
        if self.written + rows > self.n {
            return Err(usage(
                &path,
                format!(
                    "{} samples written plus {rows} exceed the {} the dataset was created for",
                    self.written, self.n
                ),
            ));
        }
        let labels16: Vec<u16> = labels
            .iter()
            .map(|&l| {
                u16::try_from(l).map_err(|_| {
                    usage(
                        &path,
                        format!("label {l} does not fit ViRelAy's uint16 labels"),
                    )
                })
            })
            .collect::<Result<_>>()?;
        let (a, b) = (self.written, self.written + rows);
        let mut shape = vec![rows];
        shape.extend_from_slice(&self.data.shape()[1..]);
        let arr = ndarray::ArrayView::from_shape(shape, data)
            .map_err(|e| usage(&path, format!("bad batch shape: {e}")))?;
        let werr = |name: &str| {
            let path = path.clone();
            let name = name.to_string();
            move |source| {
                DatasetError::Store(StoreError::Write {
                    path,
                    dataset: name,
                    source,
                })
            }
        };
        let sel = ndarray::SliceInfoElem::Slice {
            start: a as isize,
            end: Some(b as isize),
            step: 1,
        };
        let mut slices = vec![sel];
        slices.extend(std::iter::repeat_n(
            ndarray::SliceInfoElem::Slice {
                start: 0,
                end: None,
                step: 1,
            },
            self.data.ndim() - 1,
        ));
        let info = ndarray::SliceInfo::<_, ndarray::IxDyn, ndarray::IxDyn>::try_from(slices)
            .map_err(|e| usage(&path, format!("bad selection: {e}")))?;
        self.data.write_slice(&arr, info).map_err(werr(DATA))?;
        self.label
            .write_slice(&labels16, a..b)
            .map_err(werr(LABEL))?;
        self.written = b;
        Ok(())
    }

    /// Checks that all samples were written, closes the file and renames it into place.
    pub fn finish(self) -> Result<()> {
        if self.written != self.n {
            return Err(usage(
                self.target.final_path(),
                format!("only {} of {} samples were written", self.written, self.n),
            ));
        }
        let DatasetWriter {
            target,
            _file,
            data,
            label,
            ..
        } = self;
        drop((data, label));
        _file.close().map_err(|source| {
            DatasetError::Store(StoreError::Write {
                path: target.final_path().to_path_buf(),
                dataset: "/".into(),
                source,
            })
        })?;
        target.commit().map_err(|e| DatasetError::Store(e.into()))
    }
}

/// Writes a whole ViRelAy HDF5 dataset: `data` (N×`sample_shape`) and `label` (N).
pub fn write_dataset(
    path: impl AsRef<Path>,
    sample_shape: &[usize],
    data: &[f32],
    labels: &[u32],
) -> Result<()> {
    let mut w = DatasetWriter::create(path, labels.len(), sample_shape)?;
    w.write(data, labels)?;
    w.finish()
}
