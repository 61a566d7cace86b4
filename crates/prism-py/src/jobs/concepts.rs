//! `concepts`: `prism concepts` as a function (`prism_jobs::concepts_dataset`), and
//! `read_concepts`, its file as numpy arrays.

// The library's errors hold the store's unboxed (see prism-jobs); they pass through a closure
// here once per call.
#![allow(clippy::result_large_err)]

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use numpy::{PyArray1, PyArrayMethods};
use prism_jobs::{concepts_dataset, ConceptsJob, ConceptsOutcome, JobError};
use prism_store::concepts_run::{self, Maxima};
use prism_store::RunError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use super::attribute::{
    dataset_options, dataset_target, job_error, method_error, method_spec_or, shard, Progress,
};
use super::{model_path, watch_signals, Options};
use crate::errors::{error, from_lib, invalid, Kind};
use crate::runtime;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(concepts, m)?)?;
    m.add_function(wrap_pyfunction!(read_concepts, m)?)?;
    Ok(())
}

const CONCEPTS_OPTIONS: &[&str] = &[
    "layers",
    "method",
    "target",
    "top_n",
    "crops",
    "sample_heatmaps",
    "batch_size",
    "shard",
    "limit",
    "prefetch",
    "force",
    "allow_nonfinite",
    "dataset_kind",
    "labels",
    "resize",
    "crop",
    "normalize",
    "channels",
    "scale",
    "progress",
];

/// The composite of `prism concepts` when the method names none (the CLI's default, and
/// zennit-crp's examples').
const DEFAULT_COMPOSITE: &str = "epsilon-plus-flat";

/// A concepts job's error as a Python exception: as `attribute`'s, with the file named as a
/// concepts file.
fn concepts_error(e: JobError) -> PyErr {
    match e {
        JobError::Run(RunError::OutputExists { path }) => error(
            Kind::Store,
            format!(
                "{} exists (from other settings or not a complete Prism concepts file); pass \
                 force=True to overwrite it",
                path.display()
            ),
        ),
        e => job_error(e),
    }
}

/// Finds, for every channel of the chosen layers, the dataset samples that make it most
/// relevant and most active (zennit-crp's FeatureVisualization), like `prism concepts`
/// (resumable: an interrupted call continues where it stopped).
#[pyfunction]
#[pyo3(signature = (model, dataset, output, **options))]
fn concepts<'py>(
    py: Python<'py>,
    model: &Bound<'py, PyAny>,
    dataset: PathBuf,
    output: PathBuf,
    options: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyDict>> {
    let o = Options::new("concepts", CONCEPTS_OPTIONS, options)?;
    let model = model_path(model)?;
    let layers: Vec<String> = o
        .list("layers", "a node-name glob (str) or a list of them")?
        .unwrap_or_default();
    if layers.is_empty() {
        return Err(invalid(
            "concepts: `layers` is required: the node names (or globs, `*` matching any \
             characters, `/` included) of the layers to analyse, e.g. \"/features/*/Conv\"; \
             `prism inspect --shapes` lists them",
        ));
    }
    let (spec, text) = method_spec_or(o.raw("method")?.as_ref(), Some(DEFAULT_COMPOSITE))?;
    let method = prism_jobs::Method::new(spec, text.as_deref()).map_err(method_error)?;
    let target = dataset_target(&o)?;
    let batch_size: usize = o.get_or("batch_size", "a positive int", 16)?;
    if batch_size == 0 {
        return Err(o.bad("batch_size", "must be at least 1"));
    }
    let top_n: usize = o.get_or("top_n", "a positive int", 40)?;
    if top_n == 0 {
        return Err(o.bad("top_n", "must be at least 1 (samples kept per concept)"));
    }
    let crops: usize = o.get_or("crops", "a non-negative int", 0)?;
    if crops > top_n {
        return Err(o.bad(
            "crops",
            format!("{crops} is more than the top_n {top_n} references kept"),
        ));
    }
    let shard = shard(&o)?;
    let job = ConceptsJob {
        model,
        dataset,
        dataset_options: dataset_options(&o)?,
        output,
        layers,
        target,
        batch_size,
        shard,
        limit: o.get("limit", "a non-negative int")?,
        top_n,
        crops,
        sample_heatmaps: o.get_or("sample_heatmaps", "a non-negative int", 0)?,
        prefetch: o.get_or("prefetch", "a non-negative int", 2)?,
        force: o.flag("force")?,
        allow_nonfinite: o.flag("allow_nonfinite")?,
    };
    let stop = AtomicBool::new(false);
    let mut progress = Progress::new(o.callback("progress")?, &stop);
    let (outcome, interrupt) =
        watch_signals(py, &stop, || concepts_dataset(&job, &method, &mut progress));
    if let Some(e) = interrupt.or(progress.error.take()) {
        return Err(e);
    }
    let outcome = outcome.map_err(concepts_error)?;
    let d = PyDict::new(py);
    match outcome {
        ConceptsOutcome::AlreadyComplete { output } => {
            let (samples, layers) =
                concepts_run::concepts_summary(&output).map_err(|e| from_lib(Kind::Store, &e))?;
            d.set_item("status", "complete")?;
            d.set_item("output", output.display().to_string())?;
            d.set_item("samples", samples)?;
            let names: Vec<String> = layers.into_iter().map(|l| l.node).collect();
            d.set_item("layers", names)?;
        }
        ConceptsOutcome::Written {
            output,
            samples,
            layers,
        } => {
            d.set_item("status", "written")?;
            d.set_item("output", output.display().to_string())?;
            d.set_item("samples", samples)?;
            d.set_item("layers", layers)?;
        }
        ConceptsOutcome::Stopped { output, parts } => {
            d.set_item("status", "stopped")?;
            d.set_item("output", output.display().to_string())?;
            d.set_item("parts", parts)?;
        }
    }
    d.set_item("method", method.spec.to_string())?;
    if let Some(s) = shard {
        d.set_item("shard", (s.index, s.count))?;
    }
    Ok(d)
}

/// One mode's maxima as a dict of `[K, C]` arrays (`box`: `[K, C, 4]`).
fn maxima_dict<'py>(py: Python<'py>, m: Maxima) -> PyResult<Bound<'py, PyDict>> {
    let (k, c) = (m.top_n, m.channels);
    let d = PyDict::new(py);
    d.set_item("sample", PyArray1::from_vec(py, m.sample).reshape([k, c])?)?;
    d.set_item("score", PyArray1::from_vec(py, m.score).reshape([k, c])?)?;
    d.set_item(
        "location",
        PyArray1::from_vec(py, m.location).reshape([k, c])?,
    )?;
    d.set_item("box", PyArray1::from_vec(py, m.boxes).reshape([k, c, 4])?)?;
    d.set_item("crops", m.crops)?;
    Ok(d)
}

/// Reads a concepts file (`prism concepts`' output) into numpy arrays.
#[pyfunction]
fn read_concepts(py: Python<'_>, path: PathBuf) -> PyResult<Bound<'_, PyDict>> {
    let read = runtime::compute(py, || {
        let (tables, maxima) = concepts_run::read_concepts(&path)?;
        let rows = concepts_run::read_concept_rows(&path)?;
        Ok::<_, prism_store::StoreError>((tables, maxima, rows))
    });
    let (tables, maxima, rows) = read.map_err(|e| from_lib(Kind::Store, &e))?;
    let n = tables.index.len();
    let d = PyDict::new(py);
    let wide = |v: Vec<u32>| -> Vec<i64> { v.into_iter().map(i64::from).collect() };
    d.set_item("index", PyArray1::from_vec(py, wide(tables.index)))?;
    d.set_item("target", PyArray1::from_vec(py, wide(rows.target)))?;
    d.set_item(
        "prediction",
        PyArray1::from_vec(py, rows.prediction).reshape([n, rows.classes])?,
    )?;
    let layers = PyList::empty(py);
    for ((lt, lm), hm) in tables.layers.into_iter().zip(maxima).zip(rows.heatmaps) {
        let c = lt.info.channels();
        let l = PyDict::new(py);
        l.set_item("node", &lt.info.node)?;
        l.set_item("tensor", &lt.info.tensor)?;
        l.set_item("shape", lt.info.shape.clone())?;
        let table = |v| -> PyResult<_> { PyArray1::from_vec(py, v).reshape([n, c]) };
        l.set_item("relevance", table(lt.relevance)?)?;
        l.set_item("activation", table(lt.activation)?)?;
        let table = |v| -> PyResult<_> { PyArray1::from_vec(py, v).reshape([n, c]) };
        l.set_item("relevance_location", table(lt.relevance_location)?)?;
        l.set_item("activation_location", table(lt.activation_location)?)?;
        l.set_item("relmax", maxima_dict(py, lm.relmax)?)?;
        l.set_item("actmax", maxima_dict(py, lm.actmax)?)?;
        if let Some(h) = hm {
            let [rows_n, m, hh, ww] = h.shape;
            l.set_item(
                "heatmap",
                PyArray1::from_vec(py, h.heatmap).reshape([rows_n, m, hh, ww])?,
            )?;
            l.set_item(
                "heatmap_channel",
                PyArray1::from_vec(py, h.channel).reshape([rows_n, m])?,
            )?;
        }
        layers.append(l)?;
    }
    d.set_item("layers", layers)?;
    Ok(d)
}
