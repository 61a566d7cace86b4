//! `Model`: an ONNX model with `predict`, `explain` and `rules`, numpy in and out.
//!
//! The work is the libraries' batch loops ([`prism_model::Model::predict_batched`],
//! [`prism_attribution::Explainer::explain_batched`]), the same calls `prism predict` and
//! `prism explain` make, so the numbers are the CLI's bit for bit.

use std::path::PathBuf;

use numpy::ndarray::{ArrayD, IxDyn};
use numpy::{
    PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods,
};
use prism_attribution::{AttributeAt, AttributionError, Explainer, Method, MethodSpec, Target};
use prism_model::batch::InputValues;
use prism_model::{Float, Flow, ModelError, Tensor};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

use crate::errors::{from_lib, invalid, Kind};
use crate::runtime::{compute, watch_signals};
use std::sync::atomic::{AtomicBool, Ordering};

/// The computation precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    F64,
}

/// Parses `dtype` ("float32"/"f32", "float64"/"f64").
pub fn parse_dtype(dtype: &str) -> PyResult<DType> {
    match dtype {
        "float32" | "f32" => Ok(DType::F32),
        "float64" | "f64" => Ok(DType::F64),
        other => Err(invalid(format!(
            "dtype {other:?} is not one of float32, float64"
        ))),
    }
}

/// The exception class for a model error: bad input is a `ValueError`.
fn model_kind(e: &ModelError) -> Kind {
    match e {
        ModelError::Batch { error, .. } => model_kind(error),
        ModelError::Input { .. } | ModelError::Invalid(_) | ModelError::NonFiniteInput { .. } => {
            Kind::InvalidArgument
        }
        _ => Kind::Model,
    }
}

/// A library error of the model crate as a Python exception.
pub fn model_error(e: &ModelError) -> PyErr {
    from_lib(model_kind(e), e)
}

/// A library error of the attribution crate as a Python exception, classed by its root cause.
pub fn attribution_error(e: &AttributionError) -> PyErr {
    from_lib(attribution_kind(e), e)
}

/// The exception class for an attribution error, by its root cause: a bad parameter, target
/// or layer name is a `ValueError`.
pub(crate) fn attribution_kind(e: &AttributionError) -> Kind {
    let mut inner = e;
    while let AttributionError::Batch { error, .. } = inner {
        inner = error;
    }
    match inner {
        AttributionError::Model(m) => model_kind(m),
        AttributionError::Parameter { .. }
        | AttributionError::Target(_)
        | AttributionError::Invalid(_)
        | AttributionError::UnknownComposite { .. }
        | AttributionError::UnknownAttributor { .. } => Kind::InvalidArgument,
        _ => Kind::Attribution,
    }
}

/// An object as a numpy array (`numpy.asarray` for lists, torch CPU tensors, …).
pub(crate) fn as_ndarray<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyUntypedArray>> {
    if let Ok(a) = obj.cast::<PyUntypedArray>() {
        return Ok(a.clone());
    }
    let np = obj.py().import("numpy")?;
    let a = np.getattr("asarray")?.call1((obj,))?;
    a.cast_into::<PyUntypedArray>()
        .map_err(|_| invalid("expected a numpy array (or something numpy.asarray accepts)"))
}

/// Copies a typed numpy array in logical (C) order, whatever its memory layout: one copy.
pub(crate) fn copy_as<E, T>(
    a: &Bound<'_, PyUntypedArray>,
    convert: impl Fn(E) -> T,
) -> PyResult<Vec<T>>
where
    E: numpy::Element + Copy,
{
    let typed = a
        .cast::<PyArrayDyn<E>>()
        .map_err(|_| invalid("internal: the array's dtype changed"))?;
    let ro = typed.readonly();
    let view = ro.as_array();
    Ok(match view.as_slice() {
        Some(s) => s.iter().map(|&v| convert(v)).collect(),
        None => view.iter().map(|&v| convert(v)).collect(),
    })
}

/// The values of one input array: floats (any float dtype) or integers (any integer dtype or
/// bool). `what` names the input in errors.
fn values_of<T: Float>(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<InputValues<T>> {
    let a = as_ndarray(obj)?;
    let shape = a.shape().to_vec();
    let dtype = a.dtype();
    let kind: char = dtype.kind().into();
    let size = dtype.itemsize();
    let floats = |data: Vec<T>| -> PyResult<InputValues<T>> {
        Tensor::new(shape.clone(), data)
            .map(InputValues::Float)
            .map_err(|e| model_error(&e))
    };
    let ints = |data: Vec<i64>| InputValues::Ints {
        shape: shape.clone(),
        data,
    };
    match (kind, size) {
        ('f', 2) => floats(copy_as(&a, |v: half::f16| T::of(f64::from(v)))?),
        ('f', 4) => floats(copy_as(&a, |v: f32| T::of(f64::from(v)))?),
        ('f', 8) => floats(copy_as(&a, T::of)?),
        ('i', 1) => Ok(ints(copy_as(&a, |v: i8| i64::from(v))?)),
        ('i', 2) => Ok(ints(copy_as(&a, |v: i16| i64::from(v))?)),
        ('i', 4) => Ok(ints(copy_as(&a, |v: i32| i64::from(v))?)),
        ('i', 8) => Ok(ints(copy_as(&a, |v: i64| v)?)),
        ('u', 1) => Ok(ints(copy_as(&a, |v: u8| i64::from(v))?)),
        ('u', 2) => Ok(ints(copy_as(&a, |v: u16| i64::from(v))?)),
        ('u', 4) => Ok(ints(copy_as(&a, |v: u32| i64::from(v))?)),
        ('u', 8) => {
            let v = copy_as(&a, |v: u64| v)?;
            let data = v
                .into_iter()
                .map(|x| {
                    i64::try_from(x).map_err(|_| invalid(format!("{what}: value {x} is too large")))
                })
                .collect::<PyResult<Vec<i64>>>()?;
            Ok(ints(data))
        }
        ('b', 1) => Ok(ints(copy_as(&a, |v: bool| i64::from(v))?)),
        _ => Err(invalid(format!(
            "{what}: arrays of dtype {} are not supported; give float32/float64 values \
             (or integers for integer inputs)",
            dtype.str().map(|s| s.to_string()).unwrap_or_default()
        ))),
    }
}

/// The model's inputs in graph order from one array (single-input models) or a dict by name.
fn read_inputs<T: Float>(
    model: &prism_model::Model,
    inputs: &Bound<'_, PyAny>,
) -> PyResult<Vec<Tensor<T>>> {
    let g = model.graph();
    let names: Vec<String> = g.inputs.iter().map(|v| g.value(*v).name.clone()).collect();
    let describe = || {
        (0..names.len())
            .map(|i| format!("{} ({})", names[i], g.input_type(i)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let one = |i: usize, obj: &Bound<'_, PyAny>| -> PyResult<Tensor<T>> {
        let values = values_of::<T>(obj, &format!("input '{}'", names[i]))?;
        model.input_tensor(i, values).map_err(|e| model_error(&e))
    };
    let tensors = if let Ok(dict) = inputs.cast::<PyDict>() {
        let mut given: Vec<Option<Tensor<T>>> = vec![None; names.len()];
        for (key, value) in dict.iter() {
            let key: String = key
                .extract()
                .map_err(|_| invalid("the inputs dict needs input names (str) as keys"))?;
            let i = names.iter().position(|n| *n == key).ok_or_else(|| {
                invalid(format!(
                    "the model has no input '{key}'; its inputs: {}",
                    describe()
                ))
            })?;
            given[i] = Some(one(i, &value)?);
        }
        let missing: Vec<&str> = given
            .iter()
            .zip(&names)
            .filter(|(t, _)| t.is_none())
            .map(|(_, n)| n.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(invalid(format!(
                "missing inputs {}: the model's inputs are {}",
                missing.join(", "),
                describe()
            )));
        }
        given.into_iter().flatten().collect()
    } else {
        if names.len() != 1 {
            return Err(invalid(format!(
                "the model has {} inputs ({}): pass a dict {{name: array}}",
                names.len(),
                describe()
            )));
        }
        vec![one(0, inputs)?]
    };
    prism_model::batch::sample_count(&tensors).map_err(|e| model_error(&e))?;
    Ok(tensors)
}

/// A tensor as a numpy array (no copy: the array takes the buffer).
fn to_numpy<'py, T: Float + numpy::Element>(
    py: Python<'py>,
    t: Tensor<T>,
) -> PyResult<Bound<'py, PyAny>> {
    let shape = t.shape().to_vec();
    let a = ArrayD::from_shape_vec(IxDyn(&shape), t.into_data())
        .map_err(|e| invalid(format!("internal: {e}")))?;
    Ok(PyArrayDyn::from_owned_array(py, a).into_any())
}

/// The runnable method of `method` (a dict of `prism explain`'s method parameters).
pub fn build_method(method: Option<&Bound<'_, PyAny>>) -> PyResult<(MethodSpec, Method)> {
    let (spec, text) = crate::jobs::attribute::method_spec(method)?;
    let array = crate::jobs::attribute::baseline_array(&spec)?;
    let built = spec
        .build_with(text.as_deref(), array)
        .map_err(|e| attribution_error(&e))?;
    Ok((spec, built))
}

/// `target`: "predicted"/None, a class index, one label per sample, a position and class as
/// the CLI spells them ("last", "last:K", "POS:K", "POS:predicted"), or one (position, class)
/// row per sample.
fn parse_target(target: Option<&Bound<'_, PyAny>>) -> PyResult<Target> {
    let Some(t) = target.filter(|t| !t.is_none()) else {
        return Ok(Target::Predicted);
    };
    if let Ok(s) = t.cast::<PyString>() {
        return Target::parse(s.to_cow()?.as_ref()).map_err(|e| invalid(e.to_string()));
    }
    if let Ok(c) = t.extract::<i64>() {
        return usize::try_from(c)
            .map(Target::Class)
            .map_err(|_| invalid(format!("target {c} is negative")));
    }
    let a = as_ndarray(t)?;
    let rows = a.ndim() == 2 && a.shape()[1] == 2;
    if a.ndim() != 1 && !rows {
        return Err(invalid(format!(
            "target: labels must be one per sample (1-D) or one (position, class) row per \
             sample (N × 2), got shape {:?}",
            a.shape()
        )));
    }
    match values_of::<f64>(a.as_any(), "target")? {
        InputValues::Ints { data, .. } => {
            let labels: Vec<usize> = data
                .into_iter()
                .map(|v| {
                    usize::try_from(v).map_err(|_| invalid(format!("target: negative label {v}")))
                })
                .collect::<PyResult<_>>()?;
            Ok(if rows {
                Target::PositionPerSample(labels.chunks(2).map(|pc| (pc[0], pc[1])).collect())
            } else {
                Target::PerSample(labels)
            })
        }
        InputValues::Float(_) => Err(invalid(
            "target: labels must be integers (e.g. numpy.int64), not floats",
        )),
    }
}

/// An ONNX model loaded by Prism.
#[pyclass(module = "prism_xai._prism", name = "Model", frozen)]
pub struct PyModel {
    model: prism_model::Model,
}

#[pymethods]
impl PyModel {
    #[new]
    #[pyo3(signature = (path, *, allow_nonfinite=false))]
    fn new(py: Python<'_>, path: PathBuf, allow_nonfinite: bool) -> PyResult<Self> {
        let model = compute(py, || prism_model::Model::load(&path)).map_err(|e| model_error(&e))?;
        model.set_nonfinite(prism_model::NonFinite::allow_if(allow_nonfinite));
        Ok(PyModel { model })
    }

    /// Whether inputs and results holding NaN or ±Inf are accepted (else a ValueError naming
    /// the samples, or a ModelError naming the node where a result stopped being finite).
    #[getter]
    fn allow_nonfinite(&self) -> bool {
        self.model.nonfinite() == prism_model::NonFinite::Allow
    }

    /// The file the model was loaded from.
    #[getter]
    fn path(&self) -> String {
        self.model.path().display().to_string()
    }

    /// The graph inputs: name, shape (ints, or names of symbolic dimensions) and dtype.
    #[getter]
    fn inputs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let g = self.model.graph();
        let list = PyList::empty(py);
        for (i, v) in g.inputs.iter().enumerate() {
            let d = PyDict::new(py);
            d.set_item("name", &g.value(*v).name)?;
            let dims = PyList::empty(py);
            for dim in g.input_dims(i) {
                match dim {
                    prism_model::Dim::Fixed(n) => dims.append(n)?,
                    prism_model::Dim::Symbolic(s) => dims.append(s)?,
                }
            }
            d.set_item("shape", dims)?;
            d.set_item("dtype", g.input_type(i).as_str())?;
            list.append(d)?;
        }
        Ok(list)
    }

    /// The graph outputs by name.
    #[getter]
    fn outputs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let g = self.model.graph();
        let list = PyList::empty(py);
        for v in &g.outputs {
            let d = PyDict::new(py);
            d.set_item("name", &g.value(*v).name)?;
            list.append(d)?;
        }
        Ok(list)
    }

    /// The model's first output on `inputs`, `batch_size` samples at a time.
    #[pyo3(signature = (inputs, *, dtype="float32", batch_size=16))]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        inputs: &Bound<'py, PyAny>,
        dtype: &str,
        batch_size: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        match parse_dtype(dtype)? {
            DType::F32 => self.predict_typed::<f32>(py, inputs, batch_size),
            DType::F64 => self.predict_typed::<f64>(py, inputs, batch_size),
        }
    }

    /// Relevance of `inputs` for `target`: `(relevance, targets, at, recorded)`; `concepts`:
    /// `{"conditions": [str], "exclude_parallel": bool, "record": [str], "record_mode": str,
    /// "top_k": int}` (CRP and recording, as `prism explain --condition/--record`).
    #[pyo3(signature = (inputs, *, target=None, dtype="float32", batch_size=16, attribute_at=None, method=None, reduce_hidden="none", concepts=None))]
    #[allow(clippy::too_many_arguments)]
    fn explain<'py>(
        &self,
        py: Python<'py>,
        inputs: &Bound<'py, PyAny>,
        target: Option<&Bound<'py, PyAny>>,
        dtype: &str,
        batch_size: usize,
        attribute_at: Option<String>,
        method: Option<&Bound<'py, PyAny>>,
        reduce_hidden: &str,
        concepts: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let (_, method) = build_method(method)?;
        let concepts = parse_concepts(concepts)?;
        let target = parse_target(target)?;
        let at = attribute_at.map(AttributeAt::Named);
        let sum = match reduce_hidden {
            "none" => false,
            "sum" => true,
            other => {
                return Err(invalid(format!(
                    "reduce_hidden must be \"none\" or \"sum\", got {other:?}"
                )))
            }
        };
        match parse_dtype(dtype)? {
            DType::F32 => self
                .explain_typed::<f32>(py, inputs, &target, at, method, batch_size, sum, concepts),
            DType::F64 => self
                .explain_typed::<f64>(py, inputs, &target, at, method, batch_size, sum, concepts),
        }
    }

    /// The rule each node gets: `(node, operator, rule)` for inputs of these shapes (a list of
    /// shapes, or the input arrays themselves).
    #[pyo3(signature = (inputs, *, method=None))]
    fn rules(
        &self,
        py: Python<'_>,
        inputs: &Bound<'_, PyAny>,
        method: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Vec<(String, String, String)>> {
        let (_, method) = build_method(method)?;
        let shapes: Vec<Vec<usize>> = match inputs.extract::<Vec<Vec<usize>>>() {
            Ok(shapes) if !inputs.is_instance_of::<PyUntypedArray>() => shapes,
            _ => read_inputs::<f32>(&self.model, inputs)?
                .iter()
                .map(|t| t.shape().to_vec())
                .collect(),
        };
        let explainer = explainer(&self.model, method);
        compute(py, || explainer.rule_table_for(&shapes)).map_err(|e| attribution_error(&e))
    }

    fn __repr__(&self) -> String {
        format!("Model({:?})", self.model.path().display().to_string())
    }
}

/// The concept settings of `explain` (`None`: none) and the top-table size.
fn parse_concepts(d: Option<&Bound<'_, PyDict>>) -> PyResult<(prism_attribution::Concepts, usize)> {
    use prism_attribution::{Concepts, Condition, Parallel, Record, RecordMode};
    let Some(d) = d else {
        return Ok((Concepts::default(), 10));
    };
    const KEYS: [&str; 5] = [
        "conditions",
        "exclude_parallel",
        "record",
        "record_mode",
        "top_k",
    ];
    for k in d.keys() {
        let k: String = k.extract()?;
        if !KEYS.contains(&k.as_str()) {
            return Err(invalid(format!(
                "concepts: unknown key '{k}'; valid: {}",
                KEYS.join(", ")
            )));
        }
    }
    let get_list = |key: &str| -> PyResult<Vec<String>> {
        match d.get_item(key)? {
            None => Ok(Vec::new()),
            Some(v) if v.is_none() => Ok(Vec::new()),
            Some(v) => v
                .extract::<Vec<String>>()
                .map_err(|_| invalid(format!("{key} must be a list of strings"))),
        }
    };
    let conditions = get_list("conditions")?
        .iter()
        .map(|c| Condition::parse(c))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| attribution_error(&e))?;
    let exclude = match d.get_item("exclude_parallel")? {
        Some(v) if !v.is_none() => v
            .extract::<bool>()
            .map_err(|_| invalid("exclude_parallel must be a bool"))?,
        _ => false,
    };
    if exclude && conditions.is_empty() {
        return Err(invalid("exclude_parallel needs at least one condition"));
    }
    let patterns = get_list("record")?;
    let mode = match d.get_item("record_mode")? {
        Some(v) if !v.is_none() => {
            let s: String = v
                .extract()
                .map_err(|_| invalid("record_mode must be \"channels\" or \"maps\""))?;
            RecordMode::parse(&s).map_err(|e| attribution_error(&e))?
        }
        _ => RecordMode::Channels,
    };
    let top_k = match d.get_item("top_k")? {
        Some(v) if !v.is_none() => v
            .extract::<usize>()
            .map_err(|_| invalid("top_k must be a non-negative integer"))?,
        _ => 10,
    };
    Ok((
        Concepts {
            conditions,
            parallel: if exclude {
                Parallel::Exclude
            } else {
                Parallel::Include
            },
            record: (!patterns.is_empty()).then_some(Record { patterns, mode }),
        },
        top_k,
    ))
}

/// An explainer for `method`'s composite and canonizers.
fn explainer(model: &prism_model::Model, method: Method) -> Explainer<'_> {
    let mut e = Explainer::new(model).with_canonizers(method.canonize);
    if let Some(c) = method.composite {
        e = e.with_composite(c);
    }
    e
}

/// A batch loop's answer to a stop request (Ctrl-C seen by [`watch_signals`]).
fn flow(stop: &AtomicBool) -> Flow {
    if stop.load(Ordering::SeqCst) {
        Flow::Stop
    } else {
        Flow::Continue
    }
}

impl PyModel {
    fn predict_typed<'py, T: Float + numpy::Element>(
        &self,
        py: Python<'py>,
        inputs: &Bound<'py, PyAny>,
        batch_size: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let x = read_inputs::<T>(&self.model, inputs)?;
        let stop = AtomicBool::new(false);
        let (y, interrupt) = watch_signals(py, &stop, || {
            self.model.predict_batched(&x, batch_size, |_| flow(&stop))
        });
        if let Some(e) = interrupt {
            return Err(e);
        }
        to_numpy(py, y.map_err(|e| model_error(&e))?)
    }

    #[allow(clippy::too_many_arguments)]
    fn explain_typed<'py, T: Float + numpy::Element>(
        &self,
        py: Python<'py>,
        inputs: &Bound<'py, PyAny>,
        target: &Target,
        at: Option<AttributeAt>,
        method: Method,
        batch_size: usize,
        hidden_sum: bool,
        concepts: (prism_attribution::Concepts, usize),
    ) -> PyResult<Bound<'py, PyTuple>> {
        let x = read_inputs::<T>(&self.model, inputs)?;
        let (seed, attributor) = (method.seed, method.attributor.clone());
        let (concepts, top_k) = concepts;
        let mut explainer = explainer(&self.model, method).with_hidden_sum(hidden_sum);
        if concepts.is_active() {
            explainer = explainer.with_concepts(concepts);
        }
        let stop = AtomicBool::new(false);
        let (result, interrupt) = watch_signals(py, &stop, || {
            explainer.explain_batched(
                &x,
                at.as_ref(),
                target,
                seed,
                &attributor,
                batch_size,
                |_| flow(&stop),
            )
        });
        if let Some(e) = interrupt {
            return Err(e);
        }
        let explained = result.map_err(|e| attribution_error(&e))?;
        let at_name = explained.at.unwrap_or_else(|| {
            let g = self.model.graph();
            g.value(g.inputs[0]).name.clone()
        });
        let targets: Vec<i64> = explained.targets.iter().map(|&t| t as i64).collect();
        let recorded = PyList::empty(py);
        for r in explained.recorded {
            let (idx, share) = r.top_channels(top_k);
            let rows = r.relevance.shape().first().copied().unwrap_or(0);
            let k = idx.len() / rows.max(1);
            let d = PyDict::new(py);
            d.set_item("node", &r.node)?;
            d.set_item("tensor", &r.tensor)?;
            d.set_item("sample_shape", r.sample_shape.clone())?;
            d.set_item("relevance", to_numpy(py, r.relevance)?)?;
            d.set_item("activation", to_numpy(py, r.activation)?)?;
            let idx: Vec<i64> = idx.iter().map(|&c| i64::from(c)).collect();
            let idx = ArrayD::from_shape_vec(IxDyn(&[rows, k]), idx)
                .map_err(|e| invalid(format!("top channels: {e}")))?;
            d.set_item("top_channels", PyArrayDyn::from_owned_array(py, idx))?;
            let share = Tensor::new(vec![rows, k], share).map_err(|e| model_error(&e))?;
            d.set_item("top_share", to_numpy(py, share)?)?;
            recorded.append(d)?;
        }
        let relevance = to_numpy(py, explained.relevance)?;
        let targets = numpy::PyArray1::from_vec(py, targets).into_any();
        PyTuple::new(
            py,
            [
                relevance,
                targets,
                PyString::new(py, &at_name).into_any(),
                recorded.into_any(),
            ],
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyModel>()?;
    m.add("METHOD_KEYS", crate::jobs::attribute::METHOD_KEYS.clone())?;
    Ok(())
}
