//! `tcav`: `prism tcav` as a function (`prism_jobs::tcav`), returning the report as a dict.

// The library's errors hold the model's and the store's unboxed (see prism-jobs); they pass
// through a closure here once per call.
#![allow(clippy::result_large_err)]

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use prism_jobs::tcav::cav::{CavSettings, DEFAULT_L2, DEFAULT_TEST_FRACTION};
use prism_jobs::tcav::{
    report_json, tcav as run_tcav, write_report, ExampleSet, NoTcavProgress, TcavError, TcavJob,
    TcavSettings, DEFAULT_ALPHA,
};
use prism_model::DType;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use super::attribute::dataset_options;
use super::{describe, model_path, watch_signals, Options};
use crate::errors::{from_lib, invalid, Kind};

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(tcav, m)?)?;
    Ok(())
}

const TCAV_OPTIONS: &[&str] = &[
    "output",
    "plot",
    "seed",
    "dtype",
    "alpha",
    "l2",
    "test_fraction",
    "batch_size",
    "allow_nonfinite",
    "dataset_kind",
    "labels",
    "resize",
    "crop",
    "normalize",
    "channels",
    "scale",
];

/// Named sets from a `{name: path}` mapping or a sequence of paths or `(name, path)` pairs
/// (a bare path is named after its last component, as the CLI's `--random PATH`).
fn sets(what: &str, value: &Bound<'_, PyAny>) -> PyResult<Vec<ExampleSet>> {
    let bad = || {
        invalid(format!(
            "tcav: `{what}` must be a dict {{name: path}} or a list of paths or (name, path) \
             pairs, got {}",
            describe(value)
        ))
    };
    let named = |name: String, path: PathBuf| ExampleSet { name, path };
    if let Ok(d) = value.cast::<PyDict>() {
        return d
            .iter()
            .map(|(k, v)| {
                Ok(named(
                    k.extract().map_err(|_| bad())?,
                    v.extract().map_err(|_| bad())?,
                ))
            })
            .collect();
    }
    if value.extract::<String>().is_ok() {
        return Err(bad());
    }
    let mut out = Vec::new();
    for item in value.try_iter().map_err(|_| bad())? {
        let item = item?;
        if let Ok(t) = item.cast::<PyTuple>() {
            let (n, p): (String, PathBuf) = t.extract().map_err(|_| bad())?;
            out.push(named(n, p));
        } else if let Ok(l) = item.cast::<PyList>() {
            let (n, p): (String, PathBuf) = l.extract().map_err(|_| bad())?;
            out.push(named(n, p));
        } else {
            let p: PathBuf = item.extract().map_err(|_| bad())?;
            let name = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    invalid(format!(
                        "tcav: the {what} path {} has no name: give (name, path)",
                        p.display()
                    ))
                })?;
            out.push(named(name, p));
        }
    }
    Ok(out)
}

/// A TCAV error as a Python exception: bad arguments (layer, class, set counts, names,
/// settings) as `InvalidArgumentError`, sets that cannot be read as `StoreError` (or
/// `PrismFileNotFoundError`), the model's failures as `ModelError`/`AttributionError`.
fn tcav_error(e: TcavError) -> PyErr {
    let kind = match &e {
        TcavError::UnknownLayer { .. }
        | TcavError::Target { .. }
        | TcavError::TooFewRandom { .. }
        | TcavError::NoConcepts
        | TcavError::DuplicateName(_)
        | TcavError::BatchSize
        | TcavError::DType(_)
        | TcavError::Settings(_)
        | TcavError::SampleShape { .. }
        | TcavError::EmptySet { .. }
        | TcavError::NonFinite { .. } => Kind::InvalidArgument,
        TcavError::LoadModel { .. } => Kind::Model,
        TcavError::Model { .. } | TcavError::Cav { .. } => Kind::Attribution,
        TcavError::Plot(_) => Kind::Evaluation,
        TcavError::OpenSet { .. }
        | TcavError::ReadSet { .. }
        | TcavError::Write(_)
        | TcavError::Json(_) => Kind::Store,
    };
    from_lib(kind, &e)
}

/// Tests concepts with concept activation vectors (TCAV), as `prism tcav`.
// The arguments are the Python function's positional parameters.
#[allow(clippy::too_many_arguments)]
#[pyfunction]
#[pyo3(signature = (model, layer, target, concepts, randoms, inputs, **options))]
fn tcav<'py>(
    py: Python<'py>,
    model: &Bound<'py, PyAny>,
    layer: String,
    target: usize,
    concepts: &Bound<'py, PyAny>,
    randoms: &Bound<'py, PyAny>,
    inputs: PathBuf,
    options: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let o = Options::new("tcav", TCAV_OPTIONS, options)?;
    let dtype = match o
        .get_or::<String>("dtype", "\"f32\" or \"f64\"", "f32".into())?
        .as_str()
    {
        "f32" | "float32" => DType::F32,
        "f64" | "float64" => DType::F64,
        other => {
            return Err(o.bad(
                "dtype",
                format!("must be \"f32\" or \"f64\", got {other:?}"),
            ))
        }
    };
    let batch_size: usize = o.get_or("batch_size", "a positive int", 32)?;
    let job = TcavJob {
        model: model_path(model)?,
        layer,
        target,
        concepts: sets("concepts", concepts)?,
        randoms: sets("randoms", randoms)?,
        inputs,
        dataset_options: dataset_options(&o)?,
        settings: TcavSettings {
            seed: o.get_or("seed", "a non-negative int", 0)?,
            cav: CavSettings {
                l2: o.get_or("l2", "a float > 0", DEFAULT_L2)?,
                test_fraction: o.get_or(
                    "test_fraction",
                    "a float in (0, 1)",
                    DEFAULT_TEST_FRACTION,
                )?,
                ..CavSettings::default()
            },
            alpha: o.get_or("alpha", "a float in (0, 1)", DEFAULT_ALPHA)?,
        },
        dtype,
        batch_size,
        allow_nonfinite: o.flag("allow_nonfinite")?,
    };
    let output = o.path("output")?;
    let plot = o.path("plot")?;
    if plot.is_some() && output.is_none() {
        return Err(o.bad(
            "plot",
            "needs `output` too (the report the plot belongs to)",
        ));
    }
    let stop = AtomicBool::new(false);
    let (result, interrupt) = watch_signals(py, &stop, || {
        let report = run_tcav(&job, &mut NoTcavProgress)?;
        if let Some(out) = &output {
            write_report(&report, out, plot.as_deref())?;
        }
        report_json(&report)
    });
    if let Some(e) = interrupt {
        return Err(e);
    }
    let json = result.map_err(tcav_error)?;
    let text = String::from_utf8(json).map_err(|e| invalid(e.to_string()))?;
    py.import("json")?.call_method1("loads", (text,))
}
