//! Lazy readers of attribution and analysis files: `read_attribution` → `AttributionFile`,
//! `read_analysis` → `AnalysisFile` (prism_store's readers; rows are read on request, never the
//! whole file).

use std::path::PathBuf;

use numpy::{PyArray1, PyArrayDyn, PyArrayMethods};
use prism_store::{AttrValue, Labels};
use pyo3::exceptions::PyIndexError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::errors::{error, from_lib, invalid, Kind};
use crate::runtime;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(read_attribution, m)?)?;
    m.add_function(wrap_pyfunction!(read_analysis, m)?)?;
    m.add_class::<AttributionFile>()?;
    m.add_class::<AnalysisFile>()?;
    Ok(())
}

fn store_error(e: prism_store::StoreError) -> PyErr {
    from_lib(Kind::Store, &e)
}

/// An attribution file (ViRelAy layout), read lazily: labels and the row index are loaded on
/// opening, attributions when asked for.
#[pyclass(module = "prism_xai._prism", name = "AttributionFile", frozen)]
pub struct AttributionFile {
    file: prism_store::AttributionFile,
}

/// Opens an attribution file (`prism attribute`'s output or any ViRelAy attribution file).
#[pyfunction]
fn read_attribution(py: Python<'_>, path: PathBuf) -> PyResult<AttributionFile> {
    let file =
        runtime::compute(py, || prism_store::AttributionFile::open(&path)).map_err(store_error)?;
    Ok(AttributionFile { file })
}

impl AttributionFile {
    /// The rows of `class_` (ascending), or every row.
    fn rows_of(&self, class_: Option<u32>) -> Vec<usize> {
        match class_ {
            None => (0..self.file.n_samples()).collect(),
            Some(c) => self
                .file
                .labels()
                .class_rows()
                .remove(&c)
                .unwrap_or_default(),
        }
    }

    /// The rows a reader (`read`, `prediction`) asks for: `indices`, the rows of `class_`, or
    /// every row.
    fn rows(
        &self,
        what: &str,
        indices: Option<&Bound<'_, PyAny>>,
        class_: Option<u32>,
    ) -> PyResult<Vec<usize>> {
        match (indices, class_) {
            (Some(_), Some(_)) => Err(invalid(format!(
                "{what}: give `indices` or `class_`, not both"
            ))),
            (Some(i), None) => self.rows_from(i),
            (None, c) => Ok(self.rows_of(c)),
        }
    }

    /// Rows from Python: any order, repeats allowed, negative numbers count from the end.
    fn rows_from(&self, indices: &Bound<'_, PyAny>) -> PyResult<Vec<usize>> {
        let n = self.file.n_samples() as i64;
        let given: Vec<i64> = match indices.extract::<i64>() {
            Ok(one) => vec![one],
            Err(_) => indices.extract().map_err(|_| {
                invalid(format!(
                    "`indices` must be an int or a sequence of ints, got {}",
                    super::describe(indices)
                ))
            })?,
        };
        given
            .iter()
            .map(|&i| {
                let r = if i < 0 { i + n } else { i };
                if (0..n).contains(&r) {
                    Ok(r as usize)
                } else {
                    Err(PyIndexError::new_err(format!(
                        "row {i} is outside the file's {n} rows"
                    )))
                }
            })
            .collect()
    }

    /// Reads `rows` (any order) as `read_rows` wants them: ascending and distinct, then puts
    /// them back in the order asked.
    fn read_in_order(
        &self,
        py: Python<'_>,
        rows: &[usize],
        width: usize,
        read: impl Fn(&[usize]) -> prism_store::Result<Vec<f32>> + Send + Sync,
    ) -> PyResult<Vec<f32>> {
        let mut sorted = rows.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let block = runtime::compute(py, || read(&sorted)).map_err(store_error)?;
        if sorted.as_slice() == rows {
            return Ok(block);
        }
        let mut out = Vec::with_capacity(rows.len() * width);
        for r in rows {
            // Every row is in `sorted`.
            let k = sorted
                .binary_search(r)
                .map_err(|_| error(Kind::Store, format!("row {r} was not read")))?;
            out.extend_from_slice(&block[k * width..(k + 1) * width]);
        }
        Ok(out)
    }
}

fn shaped<'py>(
    py: Python<'py>,
    data: Vec<f32>,
    shape: Vec<usize>,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    PyArray1::from_vec(py, data).reshape(shape)
}

#[pymethods]
impl AttributionFile {
    /// The file's path.
    #[getter]
    fn path(&self) -> String {
        self.file.path().display().to_string()
    }

    /// Number of samples (rows).
    fn __len__(&self) -> usize {
        self.file.n_samples()
    }

    /// The `attribution` dataset's shape: (N, C, H, W), (N, H, W) or (N, F).
    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.file.shape())
    }

    /// The labels: int64 [N], or [N, classes] 0/1 for n-hot labels.
    #[getter]
    fn labels<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(match self.file.labels() {
            Labels::Single(v) => {
                PyArray1::from_vec(py, v.iter().map(|&c| i64::from(c)).collect()).into_any()
            }
            Labels::MultiHot { n_classes, bits } => {
                PyArray1::from_vec(py, bits.iter().map(|&b| i64::from(b)).collect())
                    .reshape(vec![bits.len() / (*n_classes).max(1), *n_classes])?
                    .into_any()
            }
        })
    }

    /// The dataset sample number of each row (the `index` dataset, or the row numbers), int64.
    #[getter]
    fn index<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        let n = self.file.n_samples();
        PyArray1::from_vec(
            py,
            (0..n)
                .map(|r| i64::from(self.file.sample_number(r)))
                .collect(),
        )
    }

    /// The classes present, ascending.
    fn classes(&self) -> Vec<u32> {
        self.file.labels().class_rows().into_keys().collect()
    }

    /// The rows of class `class_` (every row without it), int64, ascending.
    #[pyo3(signature = (class_=None))]
    fn indices<'py>(&self, py: Python<'py>, class_: Option<u32>) -> Bound<'py, PyArray1<i64>> {
        PyArray1::from_vec(
            py,
            self.rows_of(class_).into_iter().map(|r| r as i64).collect(),
        )
    }

    /// Attributions as float32 [k, …] (the stored sample shape): the rows `indices` (in that
    /// order), the rows of class `class_`, or every row.
    #[pyo3(signature = (indices=None, class_=None))]
    fn read<'py>(
        &self,
        py: Python<'py>,
        indices: Option<&Bound<'py, PyAny>>,
        class_: Option<u32>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let rows = self.rows("read", indices, class_)?;
        let width = self.file.sample_len();
        let data = self.read_in_order(py, &rows, width, |r| self.file.read_rows(r))?;
        let mut shape = vec![rows.len()];
        shape.extend_from_slice(&self.file.shape()[1..]);
        shaped(py, data, shape)
    }

    /// The model's outputs (`prediction`) as float32 [k, classes], rows as in `read`.
    #[pyo3(signature = (indices=None, class_=None))]
    fn prediction<'py>(
        &self,
        py: Python<'py>,
        indices: Option<&Bound<'py, PyAny>>,
        class_: Option<u32>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let rows = self.rows("prediction", indices, class_)?;
        let classes: usize = self.file.prediction_shape()[1..].iter().product();
        let data = self.read_in_order(py, &rows, classes, |rows| {
            let mut out = Vec::with_capacity(rows.len() * classes);
            for (a, b) in prism_store::row_runs(rows) {
                out.extend(self.file.read_prediction_rows(a, b)?);
            }
            Ok(out)
        })?;
        let mut shape = vec![rows.len()];
        shape.extend_from_slice(&self.file.prediction_shape()[1..]);
        shaped(py, data, shape)
    }

    /// What the file recorded at hidden nodes (`prism attribute --record`): None without a
    /// record; else a dict node name → dict of `tensor`, `sample_shape`, `relevance` and
    /// `activation` (float32 [N, C] or [N, …sample_shape]), `top_channels` (int64 [N, k]) and
    /// `top_share` (float32 [N, k]), in graph order (the keys of `Model.explain_concepts`'s
    /// `recorded`).
    fn record<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let f = &self.file;
        let Some(layout) = runtime::compute(py, || f.record()).map_err(store_error)? else {
            return Ok(None);
        };
        let n = f.n_samples();
        let out = PyDict::new(py);
        for (i, node) in layout.nodes.iter().enumerate() {
            let rows = runtime::compute(py, || f.read_record_rows(i, 0, n)).map_err(store_error)?;
            let mut shape = vec![n];
            shape.extend(node.row_shape(layout.mode));
            let k = node.k(layout.top_k);
            let d = PyDict::new(py);
            d.set_item("tensor", &node.tensor)?;
            d.set_item("sample_shape", node.sample_shape.clone())?;
            d.set_item("relevance", shaped(py, rows.relevance, shape.clone())?)?;
            d.set_item("activation", shaped(py, rows.activation, shape)?)?;
            d.set_item(
                "top_channels",
                PyArray1::from_vec(py, rows.top_channels).reshape(vec![n, k])?,
            )?;
            d.set_item("top_share", shaped(py, rows.top_share, vec![n, k])?)?;
            out.set_item(&node.node, d)?;
        }
        Ok(Some(out))
    }

    /// The attribution method as recorded by Prism (`prism_method`), or None.
    #[getter]
    fn method(&self) -> PyResult<Option<String>> {
        Ok(match self.file.attr("prism_method").map_err(store_error)? {
            Some(AttrValue::Str(s)) => Some(s),
            _ => None,
        })
    }

    /// A root attribute (Prism's provenance: `prism_model`, `prism_target`, …), or None.
    fn attr<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        attr_value(py, self.file.attr(name).map_err(store_error)?)
    }

    fn __repr__(&self) -> String {
        format!(
            "AttributionFile({:?}, shape={:?})",
            self.file.path().display().to_string(),
            self.file.shape()
        )
    }
}

fn attr_value(py: Python<'_>, v: Option<AttrValue>) -> PyResult<Bound<'_, PyAny>> {
    Ok(match v {
        None => py.None().into_bound(py),
        Some(AttrValue::Str(s)) => s.into_pyobject(py)?.into_any(),
        Some(AttrValue::Int(i)) => i.into_pyobject(py)?.into_any(),
        Some(AttrValue::Float(f)) => f.into_pyobject(py)?.into_any(),
        Some(AttrValue::FloatArray(v)) => PyArray1::from_vec(py, v).into_any(),
        Some(AttrValue::IntArray(v)) => PyArray1::from_vec(py, v).into_any(),
    })
}

/// An analysis file (ViRelAy layout), read one category at a time.
#[pyclass(module = "prism_xai._prism", name = "AnalysisFile", frozen)]
pub struct AnalysisFile {
    file: prism_store::AnalysisFile,
}

/// Opens an analysis file (`prism analyze`'s output or any ViRelAy analysis file).
#[pyfunction]
fn read_analysis(py: Python<'_>, path: PathBuf) -> PyResult<AnalysisFile> {
    let file =
        runtime::compute(py, || prism_store::AnalysisFile::open(&path)).map_err(store_error)?;
    Ok(AnalysisFile { file })
}

#[pymethods]
impl AnalysisFile {
    /// The file's path.
    #[getter]
    fn path(&self) -> String {
        self.file.path().display().to_string()
    }

    /// The categories (one per class), as ViRelAy lists them.
    fn categories(&self) -> PyResult<Vec<String>> {
        self.file.listed_categories().map_err(store_error)
    }

    /// One category as a dict of numpy arrays, keyed like the file's datasets: `index` (int64
    /// sample numbers), `embedding/<name>` (float32 [n, d]), `eigenvalue/<name>` (float32,
    /// where stored) and `cluster/<name>` (int64 labels, −1 = noise); plus `suggested_k` (the
    /// eigengap's suggestion, an int) when recorded.
    fn category<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyDict>> {
        let reader = self.file.category_reader(name).ok_or_else(|| {
            let names = self.file.listed_categories().unwrap_or_default();
            invalid(format!(
                "{} has no category `{name}`; it has {}",
                self.file.path().display(),
                names.join(", ")
            ))
        })?;
        let d = PyDict::new(py);
        d.set_item(
            "index",
            PyArray1::from_vec(py, reader.index().map_err(store_error)?),
        )?;
        for e in reader.embeddings().map_err(store_error)? {
            let Some((dim, values)) = reader.embedding(&e.name).map_err(store_error)? else {
                continue;
            };
            let rows = values.len() / dim.max(1);
            d.set_item(
                format!("embedding/{}", e.name),
                shaped(py, values, vec![rows, dim])?,
            )?;
            if let Some(ev) = e.eigenvalue {
                d.set_item(format!("eigenvalue/{}", e.name), PyArray1::from_vec(py, ev))?;
            }
        }
        for c in reader.clusterings().map_err(store_error)? {
            if let Some(labels) = reader.clustering(&c).map_err(store_error)? {
                d.set_item(format!("cluster/{c}"), PyArray1::from_vec(py, labels))?;
            }
        }
        if let Some(k) = reader
            .int_attr("eigengap_suggested_k")
            .map_err(store_error)?
        {
            d.set_item("suggested_k", k)?;
        }
        Ok(d)
    }

    /// A root attribute (Prism's provenance), or None.
    fn attr<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        attr_value(py, self.file.attr(name).map_err(store_error)?)
    }

    fn __repr__(&self) -> String {
        format!("AnalysisFile({:?})", self.file.path().display().to_string())
    }
}
