//! `analyze` (`prism analyze`: `prism_analysis::analyze_file`) and `project` (`prism project`:
//! `prism_store::project::write_project`).

// The library's errors hold the store's unboxed (see prism-jobs); they pass through a closure
// here once per call.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use prism_analysis::{AnalysisConfig, AnalysisError, Cache, ConfigOverrides, RunOptions};
use prism_store::project::{default_project_name, write_project, ProjectInputs};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::{report, watch_signals, Options};
use crate::errors::{error, from_lib, invalid, Kind};
use crate::runtime;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(analyze, m)?)?;
    m.add_function(wrap_pyfunction!(project, m)?)?;
    Ok(())
}

const ANALYZE_OPTIONS: &[&str] = &[
    "config",
    "force",
    "classes",
    "label_map",
    "cache_dir",
    "no_cache",
    "variant",
    "pool",
    "neighbors",
    "knn",
    "knn_nprobe",
    "rbf_sigma",
    "eigenvalues",
    "eigen_solver",
    "k_range",
    "dbscan_eps",
    "hdbscan_min_cluster_size",
    "perplexity",
    "umap_neighbors",
    "umap_metric",
    "seed",
    "no_kmeans",
    "no_agglomerative",
    "no_dbscan",
    "no_hdbscan",
    "no_tsne",
    "no_umap",
    "progress",
];

/// A name parsed by the library's `FromStr` (variant, kNN method, solver, metric).
fn named<T: std::str::FromStr<Err = String>>(
    o: &Options<'_>,
    name: &'static str,
) -> PyResult<Option<T>> {
    match o.get::<String>(name, "a str")? {
        None => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|e| o.bad(name, e)),
    }
}

/// The keyword arguments that override single configuration parameters (the CLI's flags).
fn overrides(o: &Options<'_>) -> PyResult<ConfigOverrides> {
    const INT: &str = "a positive int";
    const FLOAT: &str = "a float";
    let k_range = o
        .get::<(usize, usize)>("k_range", "a (min, max) pair of ints")?
        .map(|(lo, hi)| [lo, hi]);
    Ok(ConfigOverrides {
        variant: named(o, "variant")?,
        pool: o.get("pool", INT)?,
        neighbors: o.get("neighbors", INT)?,
        knn: named(o, "knn")?,
        knn_nprobe: o.get("knn_nprobe", INT)?,
        rbf_sigma: o.get("rbf_sigma", FLOAT)?,
        eigenvalues: o.get("eigenvalues", INT)?,
        eigen_solver: named(o, "eigen_solver")?,
        k_range,
        dbscan_eps: o.list("dbscan_eps", "a float or a list of floats")?,
        hdbscan_min_cluster_size: o.get("hdbscan_min_cluster_size", INT)?,
        perplexity: o.get("perplexity", FLOAT)?,
        umap_neighbors: o.get("umap_neighbors", INT)?,
        umap_metric: named(o, "umap_metric")?,
        seed: o.get("seed", "a non-negative int")?,
        no_kmeans: o.flag("no_kmeans")?,
        no_agglomerative: o.flag("no_agglomerative")?,
        no_dbscan: o.flag("no_dbscan")?,
        no_hdbscan: o.flag("no_hdbscan")?,
        no_tsne: o.flag("no_tsne")?,
        no_umap: o.flag("no_umap")?,
    })
}

fn analysis_error(e: AnalysisError) -> PyErr {
    match e {
        AnalysisError::Config { message } => invalid(message),
        AnalysisError::OutputExists { path } => error(
            Kind::Analysis,
            format!(
                "`{}` already exists; pass force=True to overwrite it",
                path.display()
            ),
        ),
        e => from_lib(Kind::Analysis, &e),
    }
}

/// Analysis progress to the Python callback: `started` (categories), `stage` per stage of a
/// category, `part` per category done. The callback's first exception is kept (and raised
/// when the analysis ends: the pipeline has no stopping point).
struct Progress {
    callback: Option<Py<PyAny>>,
    state: Mutex<(usize, usize)>,
    error: Mutex<Option<PyErr>>,
}

impl Progress {
    fn send(&self, event: impl FnOnce(&Bound<'_, PyDict>) -> PyResult<()>) {
        let failed = self.error.lock().map(|e| e.is_some()).unwrap_or(true);
        if failed {
            return;
        }
        if let Err(e) = report(&self.callback, event) {
            if let Ok(mut slot) = self.error.lock() {
                slot.get_or_insert(e);
            }
        }
    }
}

impl prism_analysis::Progress for Progress {
    fn run_started(&self, n_categories: usize) {
        if let Ok(mut s) = self.state.lock() {
            *s = (0, n_categories);
        }
        self.send(|d| {
            d.set_item("event", "started")?;
            d.set_item("done", 0)?;
            d.set_item("total", n_categories)
        });
    }

    fn stage(&self, category: &str, stage: &'static str, cached: bool) {
        self.send(|d| {
            d.set_item("event", "stage")?;
            d.set_item("category", category)?;
            d.set_item("stage", stage)?;
            d.set_item("cached", cached)
        });
    }

    fn class_finished(&self, category: &str) {
        let (done, total) = match self.state.lock() {
            Ok(mut s) => {
                s.0 += 1;
                *s
            }
            Err(_) => return,
        };
        self.send(|d| {
            d.set_item("event", "part")?;
            d.set_item("category", category)?;
            d.set_item("done", done)?;
            d.set_item("total", total)
        });
    }
}

/// SpRAy over every class of an attribution file, written as a ViRelAy analysis file, like
/// `prism analyze`. Returns the output's path and a report per category.
#[pyfunction]
#[pyo3(signature = (attribution, output, **options))]
fn analyze<'py>(
    py: Python<'py>,
    attribution: PathBuf,
    output: PathBuf,
    options: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyDict>> {
    let o = Options::new("analyze", ANALYZE_OPTIONS, options)?;
    let mut cfg = match o.path("config")? {
        Some(p) => AnalysisConfig::read(&p).map_err(analysis_error)?,
        None => AnalysisConfig::default(),
    };
    overrides(&o)?.apply(&mut cfg).map_err(analysis_error)?;
    if attribution == output {
        return Err(invalid(
            "analyze: `output` must differ from the attribution file",
        ));
    }
    let category_names = match o.path("label_map")? {
        Some(p) => prism_analysis::category_names(&p).map_err(analysis_error)?,
        None => BTreeMap::new(),
    };
    let cache = match (o.path("cache_dir")?, o.flag("no_cache")?) {
        (_, true) => Cache::disabled(),
        (Some(dir), false) => Cache::at(dir),
        (None, false) => Cache::beside(&output),
    };
    let opts = RunOptions {
        classes: o.list("classes", "an int or a list of ints (class numbers)")?,
        category_names,
        cache,
        force: o.flag("force")?,
        ..RunOptions::default()
    };
    let progress = Progress {
        callback: o.callback("progress")?,
        state: Mutex::new((0, 0)),
        error: Mutex::new(None),
    };
    // The pipeline cannot stop half-way: a Ctrl-C is raised when it returns.
    let stop = AtomicBool::new(false);
    let (reports, interrupt) = watch_signals(py, &stop, || {
        prism_analysis::analyze_file(&attribution, &output, &cfg, &opts, &progress)
    });
    if let Some(e) = interrupt {
        return Err(e);
    }
    if let Some(e) = progress.error.into_inner().ok().flatten() {
        return Err(e);
    }
    let reports = reports.map_err(analysis_error)?;
    let d = PyDict::new(py);
    d.set_item("output", output.display().to_string())?;
    let categories = pyo3::types::PyList::empty(py);
    for r in &reports {
        let c = PyDict::new(py);
        c.set_item("name", &r.name)?;
        c.set_item("samples", r.n)?;
        c.set_item("suggested_k", r.suggested_k)?;
        c.set_item("cached", r.cached.clone())?;
        c.set_item("seconds", r.seconds)?;
        let stages = PyDict::new(py);
        for (s, t) in &r.stage_seconds {
            stages.set_item(*s, *t)?;
        }
        c.set_item("stage_seconds", stages)?;
        categories.append(c)?;
    }
    d.set_item("categories", categories)?;
    Ok(d)
}

const PROJECT_OPTIONS: &[&str] = &[
    "analyses",
    "label_map",
    "name",
    "model_name",
    "analysis_method",
    "force",
];

/// Writes a ViRelAy project file (YAML) for a dataset, its attributions and analyses, like
/// `prism project`.
#[pyfunction]
#[pyo3(signature = (dataset, attributions, output, **options))]
fn project<'py>(
    py: Python<'py>,
    dataset: PathBuf,
    attributions: &Bound<'py, PyAny>,
    output: PathBuf,
    options: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyDict>> {
    let o = Options::new("project", PROJECT_OPTIONS, options)?;
    let attributions: Vec<PathBuf> = match attributions.extract::<PathBuf>() {
        Ok(one) => vec![one],
        Err(_) => attributions.extract().map_err(|_| {
            invalid(format!(
                "project: `attributions` must be a path or a list of paths, got {}",
                super::describe(attributions)
            ))
        })?,
    };
    if attributions.is_empty() {
        return Err(invalid("project: `attributions` names no file"));
    }
    let analyses: Vec<PathBuf> = o
        .list("analyses", "a path or a list of paths")?
        .unwrap_or_default();
    if output.exists() && !o.flag("force")? {
        return Err(error(
            Kind::Store,
            format!(
                "{} exists; pass force=True to overwrite it",
                output.display()
            ),
        ));
    }
    let name = o
        .get::<String>("name", "a str")?
        .unwrap_or_else(|| default_project_name(&output));
    let label_map = o.path("label_map")?;
    let model_name = o.get("model_name", "a str")?;
    let analysis_method: String =
        o.get_or("analysis_method", "a str", "spectral_analysis".into())?;
    let written = runtime::compute(py, || {
        write_project(&ProjectInputs {
            dataset: &dataset,
            attributions: &attributions,
            analyses: &analyses,
            concepts: &[],
            label_map: label_map.as_deref(),
            output: &output,
            name: name.clone(),
            model_name,
            analysis_method: &analysis_method,
        })
    })
    .map_err(|e| from_lib(Kind::Store, &e))?;
    let d = PyDict::new(py);
    d.set_item("output", output.display().to_string())?;
    d.set_item("name", name)?;
    d.set_item(
        "label_map_written",
        written.label_map_written.map(|p| p.display().to_string()),
    )?;
    Ok(d)
}
