//! The dataset jobs: `attribute`, `concepts`, `analyze`, `project`, `evaluate`, the readers
//! `read_attribution`, `read_analysis` (lazy) and `read_concepts`, and `serve`.
//!
//! Each job is the library call the `prism` binary makes (`prism_jobs::attribute_dataset`,
//! `prism_jobs::concepts_dataset`, `prism_analysis::analyze_file`,
//! `prism_store::project::write_project`, `prism_eval::evaluate`, `prism_viewer::spawn`), with
//! the options built by the same library parsers, so the package and the CLI write the same
//! bytes. Options are keyword arguments named like the CLI's flags in snake case, with its
//! defaults; an unknown or ill-typed option raises `InvalidArgumentError` naming the valid ones.
//!
//! Long jobs run on a helper thread with the GIL released while the calling thread watches for
//! Ctrl-C ([`watch_signals`]): an attribution or concepts run then stops after its current part
//! (resumable, as after a kill) and the call raises `KeyboardInterrupt`. Progress goes to an
//! optional Python callable as small dicts (`{"event": "part", "done": k, "total": n}`).

mod analyze;
pub(crate) mod attribute;
mod concepts;
mod evaluate;
mod files;
mod serve;
mod tcav;

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::errors::invalid;

/// Registers the jobs' functions and classes in `_prism`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    attribute::register(m)?;
    concepts::register(m)?;
    analyze::register(m)?;
    evaluate::register(m)?;
    files::register(m)?;
    serve::register(m)?;
    tcav::register(m)?;
    Ok(())
}

/// A short description of a Python value for error messages: its repr (cut) and type.
fn describe(value: &Bound<'_, PyAny>) -> String {
    let repr = value
        .repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "<unprintable>".into());
    let repr = if repr.chars().count() > 60 {
        format!("{}…", repr.chars().take(60).collect::<String>())
    } else {
        repr
    };
    let ty = value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into());
    format!("{repr} ({ty})")
}

/// The keyword options of one job: checked against the job's option names, read typed.
pub(crate) struct Options<'py> {
    job: &'static str,
    valid: &'static [&'static str],
    dict: Option<Bound<'py, PyDict>>,
}

impl<'py> Options<'py> {
    /// Checks that every key of `dict` is one of `valid`.
    pub fn new(
        job: &'static str,
        valid: &'static [&'static str],
        dict: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Self> {
        if let Some(d) = dict {
            for key in d.keys() {
                let name = key
                    .cast::<PyString>()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|_| describe(&key));
                if !valid.contains(&name.as_str()) {
                    return Err(invalid(format!(
                        "{job}: unknown option `{name}`; the options are {}",
                        valid.join(", ")
                    )));
                }
            }
        }
        Ok(Options {
            job,
            valid,
            dict: dict.cloned(),
        })
    }

    /// The value of `name`, `None` when missing or `None`.
    pub fn raw(&self, name: &'static str) -> PyResult<Option<Bound<'py, PyAny>>> {
        debug_assert!(self.valid.contains(&name), "{name} is not an option");
        match &self.dict {
            None => Ok(None),
            Some(d) => Ok(d.get_item(name)?.filter(|v| !v.is_none())),
        }
    }

    /// An `InvalidArgumentError` saying that `name` must be `what`.
    pub fn ill_typed(&self, name: &str, what: &str, value: &Bound<'_, PyAny>) -> PyErr {
        invalid(format!(
            "{}: `{name}` must be {what}, got {}",
            self.job,
            describe(value)
        ))
    }

    /// An `InvalidArgumentError` about `name`.
    pub fn bad(&self, name: &str, message: impl std::fmt::Display) -> PyErr {
        invalid(format!("{}: `{name}` {message}", self.job))
    }

    /// The value of `name` as `T` (`what` describes `T` in the error).
    pub fn get<T>(&self, name: &'static str, what: &str) -> PyResult<Option<T>>
    where
        T: for<'a> FromPyObject<'a, 'py>,
    {
        match self.raw(name)? {
            None => Ok(None),
            Some(v) => match v.extract::<T>() {
                Ok(t) => Ok(Some(t)),
                Err(_) => Err(self.ill_typed(name, what, &v)),
            },
        }
    }

    /// The value of `name`, or `default`.
    pub fn get_or<T>(&self, name: &'static str, what: &str, default: T) -> PyResult<T>
    where
        T: for<'a> FromPyObject<'a, 'py>,
    {
        Ok(self.get(name, what)?.unwrap_or(default))
    }

    /// A boolean flag (default false).
    pub fn flag(&self, name: &'static str) -> PyResult<bool> {
        self.get_or(name, "True or False", false)
    }

    /// A path (`str` or `os.PathLike`).
    pub fn path(&self, name: &'static str) -> PyResult<Option<PathBuf>> {
        self.get(name, "a path (str or os.PathLike)")
    }

    /// A string, or an integer written as one (`target=3`, `resize=256`).
    pub fn text(&self, name: &'static str, what: &str) -> PyResult<Option<String>> {
        match self.raw(name)? {
            None => Ok(None),
            Some(v) => {
                if let Ok(s) = v.extract::<String>() {
                    Ok(Some(s))
                } else if let (false, Ok(i)) = (
                    v.is_instance_of::<pyo3::types::PyBool>(),
                    v.extract::<i64>(),
                ) {
                    Ok(Some(i.to_string()))
                } else {
                    Err(self.ill_typed(name, what, &v))
                }
            }
        }
    }

    /// A list of values, or one value standing for a list of one (`methods="gradient"`).
    pub fn list<T>(&self, name: &'static str, what: &str) -> PyResult<Option<Vec<T>>>
    where
        T: for<'a> FromPyObject<'a, 'py>,
    {
        match self.raw(name)? {
            None => Ok(None),
            Some(v) => {
                if let Ok(one) = v.extract::<T>() {
                    return Ok(Some(vec![one]));
                }
                if v.is_instance_of::<PyString>() {
                    return Err(self.ill_typed(name, what, &v));
                }
                let mut out = Vec::new();
                for item in v.try_iter().map_err(|_| self.ill_typed(name, what, &v))? {
                    let item = item?;
                    out.push(
                        item.extract::<T>()
                            .map_err(|_| self.ill_typed(name, what, &v))?,
                    );
                }
                Ok(Some(out))
            }
        }
    }

    /// The progress callable, if given.
    pub fn callback(&self, name: &'static str) -> PyResult<Option<Py<PyAny>>> {
        match self.raw(name)? {
            None => Ok(None),
            Some(v) if v.is_callable() => Ok(Some(v.unbind())),
            Some(v) => Err(self.ill_typed(name, "a callable taking a dict", &v)),
        }
    }
}

/// A model argument: a path, or an object with a `path` attribute (`prism_xai.Model`).
pub(crate) fn model_path(model: &Bound<'_, PyAny>) -> PyResult<PathBuf> {
    if let Ok(p) = model.extract::<PathBuf>() {
        return Ok(p);
    }
    if let Ok(p) = model.getattr("path").and_then(|p| p.extract::<PathBuf>()) {
        return Ok(p);
    }
    Err(invalid(format!(
        "`model` must be a path to an ONNX file or a Model, got {}",
        describe(model)
    )))
}

/// Calls the progress callback with `event`; the callback's exception is returned.
pub(crate) fn report(
    callback: &Option<Py<PyAny>>,
    event: impl FnOnce(&Bound<'_, PyDict>) -> PyResult<()>,
) -> PyResult<()> {
    let Some(cb) = callback else { return Ok(()) };
    Python::attach(|py| {
        let d = PyDict::new(py);
        event(&d)?;
        cb.bind(py).call1((d,))?;
        Ok(())
    })
}

pub(crate) use crate::runtime::watch_signals;
