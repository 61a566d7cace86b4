//! `evaluate`: `prism evaluate` as a function (`prism_eval::evaluate`): region perturbation,
//! parameter randomisation and completeness for several methods, report.json and plots.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use numpy::{PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use prism_attribution::{MethodSpec, Target};
use prism_eval::weight_noise::{DEFAULT_DRAWS, DEFAULT_SAMPLES};
use prism_eval::{
    zbox_bounds_from_inputs, Baseline, EvalError, Method, Mode, NoiseScale, RegionPerturbation,
    Settings, WeightNoise,
};
use prism_model::{Float, Model, Tensor};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::attribute::{apply_parameters, method_error, read_composite_file};
use super::{model_path, report, watch_signals, Options};
use crate::errors::{from_lib, invalid, Kind};

/// Quantus' faithfulness metrics from `metrics=[...]` and their options (`prism evaluate
/// --metrics`'s names and defaults).
fn metrics(o: &Options<'_>, seed: u64) -> PyResult<prism_eval::Metrics> {
    let names: Vec<String> = o
        .list("metrics", "a str or a list of str")?
        .unwrap_or_default();
    let batch_size = o.get_or("batch_size", "a positive int", 32)?;
    let mut m = prism_eval::Metrics::default();
    for name in &names {
        match name.trim() {
            "faithfulness-correlation" | "faithfulness_correlation" | "fc" => {
                let baseline: String = o.get_or("fc_baseline", "a str", "black".into())?;
                m.faithfulness_correlation = Some(prism_eval::FaithfulnessCorrelation {
                    nr_runs: o.get_or("fc_runs", "an int ≥ 2", 100)?,
                    subset_size: o.get_or("fc_subset_size", "a positive int", 224)?,
                    baseline: prism_eval::FeatureBaseline::parse(&baseline)
                        .map_err(option_error("fc_baseline"))?,
                    batch_size,
                    seed,
                })
            }
            "road" => {
                m.road = Some(prism_eval::Road {
                    percentages: o
                        .list("road_percentages", "a list of floats")?
                        .unwrap_or_else(|| prism_eval::Road::default().percentages),
                    noise: o.get_or("road_noise", "a non-negative float", 0.01)?,
                    batch_size,
                    seed,
                })
            }
            "irof" => m.irof = Some(prism_eval::Irof { batch_size }),
            other => {
                return Err(o.bad(
                    "metrics",
                    format!("unknown metric '{other}'; use faithfulness-correlation, road, irof"),
                ))
            }
        }
    }
    Ok(m)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(evaluate, m)?)?;
    Ok(())
}

const EVALUATE_OPTIONS: &[&str] = &[
    "methods",
    "allow_nonfinite",
    "composite_file",
    "target",
    "patch_size",
    "steps",
    "baseline",
    "batch_size",
    "attribution_batch",
    "randomisation",
    "randomisation_samples",
    "top_k",
    "signed",
    "tolerance",
    "seed",
    "dtype",
    "no_canonize",
    "no_plots",
    "zero_bias",
    "epsilon",
    "stabilizer",
    "gamma",
    "alpha",
    "beta",
    "low",
    "high",
    "beta_smooth",
    "n_iter",
    "noise_level",
    "ig_baseline",
    "window",
    "stride",
    "invert_occlusion",
    // read by `apply_parameters` since the method options were merged (absent before: a
    // debug build panicked on the first evaluate call)
    "absolute_noise",
    "occlusion_fill",
    "layer",
    "progress",
    "metrics",
    "fc_runs",
    "fc_subset_size",
    "fc_baseline",
    "road_percentages",
    "road_noise",
    "weight_noise",
    "weight_noise_draws",
    "weight_noise_samples",
    "weight_noise_scale",
];

/// `prism evaluate`'s default methods.
const DEFAULT_METHODS: &[&str] = &["epsilon-plus-flat", "epsilon-gamma-box", "gradient"];

fn eval_error(e: EvalError) -> PyErr {
    match e {
        EvalError::Attribution(a) => method_error(a),
        EvalError::Parameter { names, detail } => {
            invalid(format!("evaluate: {} {detail}", names.join(", ")))
        }
        EvalError::Model(m) => from_lib(Kind::Model, &m),
        e => from_lib(Kind::Evaluation, &e),
    }
}

/// An error parsing option `name` (a method, mode or baseline name) as an invalid argument.
fn option_error(name: &'static str) -> impl Fn(EvalError) -> PyErr {
    move |e| match e {
        EvalError::Invalid(message) => invalid(format!("evaluate: `{name}`: {message}")),
        e => eval_error(e),
    }
}

/// The inputs as a tensor of `T`: an array of any float dtype and layout (one copy), or a
/// `.npy` path.
fn inputs<T: Float + numpy::Element>(
    py: Python<'_>,
    x: &Bound<'_, PyAny>,
    dtype: &str,
) -> PyResult<Tensor<T>> {
    if let Ok(path) = x.extract::<PathBuf>() {
        return prism_store::npy::read_float::<T>(&path).map_err(|e| from_lib(Kind::Store, &e));
    }
    let np = py.import("numpy")?;
    if !x.is_instance(&np.getattr("ndarray")?)? {
        return Err(invalid(format!(
            "evaluate: `inputs` must be a numpy array or a .npy path, got {}",
            super::describe(x)
        )));
    }
    let kind: String = x.getattr("dtype")?.getattr("kind")?.extract()?;
    if kind != "f" {
        return Err(invalid(format!(
            "evaluate: `inputs` must be a float array, got dtype {}",
            x.getattr("dtype")?.str()?
        )));
    }
    let converted = np.call_method1("asarray", (x, dtype))?;
    let array = converted.cast::<PyArrayDyn<T>>()?.readonly();
    let shape = array.shape().to_vec();
    let data: Vec<T> = array.as_array().iter().copied().collect();
    Tensor::new(shape, data).map_err(|e| from_lib(Kind::Model, &e))
}

/// `target`: `predicted`, a class number, a 1-D integer array of labels or a labels `.npy`.
fn target(py: Python<'_>, o: &Options<'_>, n: usize) -> PyResult<Target> {
    const WHAT: &str = "`predicted`, a class number, an integer array of labels or a .npy path";
    let Some(v) = o.raw("target")? else {
        return Ok(Target::Predicted);
    };
    let labels: Vec<i64> = if let Ok(s) = v.extract::<String>() {
        if s == "predicted" {
            return Ok(Target::Predicted);
        }
        if let Ok(c) = s.parse::<usize>() {
            return Ok(Target::Class(c));
        }
        if !s.ends_with(".npy") {
            return Err(o.ill_typed("target", WHAT, &v));
        }
        prism_store::npy::read_i64(s.as_ref())
            .map_err(|e| from_lib(Kind::Store, &e))?
            .data()
            .to_vec()
    } else if let (false, Ok(c)) = (
        v.is_instance_of::<pyo3::types::PyBool>(),
        v.extract::<usize>(),
    ) {
        return Ok(Target::Class(c));
    } else {
        let np = py.import("numpy")?;
        let a = np.call_method1("asarray", (&v,))?;
        let kind: String = a.getattr("dtype")?.getattr("kind")?.extract()?;
        if !matches!(kind.as_str(), "i" | "u") || a.getattr("ndim")?.extract::<usize>()? != 1 {
            return Err(o.ill_typed("target", WHAT, &v));
        }
        a.call_method1("astype", ("int64",))?.extract()?
    };
    if labels.len() != n {
        return Err(o.bad(
            "target",
            format!("holds {} labels for {n} samples", labels.len()),
        ));
    }
    labels
        .iter()
        .map(|&l| {
            usize::try_from(l).map_err(|_| o.bad("target", format!("has a negative label {l}")))
        })
        .collect::<PyResult<_>>()
        .map(Target::PerSample)
}

/// Evaluation progress to the Python callback (`stage`, `part` with done/total) and notes to
/// the `prism_xai` logger.
struct Progress {
    callback: Option<Py<PyAny>>,
    state: Mutex<(String, u64, u64)>,
    error: Mutex<Option<PyErr>>,
}

impl Progress {
    fn send(&self, event: impl FnOnce(&Bound<'_, PyDict>) -> PyResult<()>) {
        if self.error.lock().map(|e| e.is_some()).unwrap_or(true) {
            return;
        }
        if let Err(e) = report(&self.callback, event) {
            if let Ok(mut slot) = self.error.lock() {
                slot.get_or_insert(e);
            }
        }
    }
}

impl prism_eval::Progress for Progress {
    fn stage(&self, name: &str, total: u64) {
        if let Ok(mut s) = self.state.lock() {
            *s = (name.to_string(), 0, total);
        }
        self.send(|d| {
            d.set_item("event", "stage")?;
            d.set_item("stage", name)?;
            d.set_item("done", 0)?;
            d.set_item("total", total)
        });
    }

    fn inc(&self, n: u64) {
        let (stage, done, total) = match self.state.lock() {
            Ok(mut s) => {
                s.1 += n;
                s.clone()
            }
            Err(_) => return,
        };
        self.send(|d| {
            d.set_item("event", "part")?;
            d.set_item("stage", stage)?;
            d.set_item("done", done)?;
            d.set_item("total", total)
        });
    }

    fn note(&self, line: &str) {
        Python::attach(|py| {
            // Logging never fails the evaluation.
            let _ = py
                .import("logging")
                .and_then(|l| l.call_method1("getLogger", ("prism_xai",)))
                .and_then(|l| l.call_method1("info", (line,)));
        });
    }
}

/// Evaluates attribution methods (region perturbation, parameter randomisation, completeness),
/// like `prism evaluate`: writes `report.json` (and plots) into `output_dir` and returns the
/// report as a dict.
#[pyfunction]
#[pyo3(signature = (model, inputs, output_dir, **options))]
fn evaluate<'py>(
    py: Python<'py>,
    model: &Bound<'py, PyAny>,
    inputs: &Bound<'py, PyAny>,
    output_dir: PathBuf,
    options: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyDict>> {
    let o = Options::new("evaluate", EVALUATE_OPTIONS, options)?;
    match o
        .get_or::<String>("dtype", "`float32` or `float64`", "float32".into())?
        .as_str()
    {
        "float32" | "f32" => run::<f32>(py, model, inputs, output_dir, &o, "float32"),
        "float64" | "f64" => run::<f64>(py, model, inputs, output_dir, &o, "float64"),
        other => Err(invalid(format!(
            "evaluate: `dtype` must be `float32` or `float64`, got `{other}`"
        ))),
    }
}

/// The weight-noise check from `weight_noise=[σ, …]` and its options (`prism evaluate
/// --weight-noise`'s names and defaults); none without `weight_noise`.
fn weight_noise(o: &Options<'_>) -> PyResult<Option<WeightNoise>> {
    let Some(sigmas) = o.list::<f64>("weight_noise", "a float or a list of floats")? else {
        return Ok(None);
    };
    let scale: String = o.get_or("weight_noise_scale", "a str", "absolute".into())?;
    Ok(Some(WeightNoise {
        sigmas,
        draws: o.get_or("weight_noise_draws", "a positive int", DEFAULT_DRAWS)?,
        scale: NoiseScale::parse(&scale).map_err(option_error("weight_noise_scale"))?,
        samples: o.get_or("weight_noise_samples", "a positive int", DEFAULT_SAMPLES)?,
    }))
}

fn run<'py, T: Float + numpy::Element>(
    py: Python<'py>,
    model: &Bound<'py, PyAny>,
    x: &Bound<'py, PyAny>,
    output_dir: PathBuf,
    o: &Options<'py>,
    dtype: &str,
) -> PyResult<Bound<'py, PyDict>> {
    const INT: &str = "a positive int";
    let patch = o.get_or("patch_size", INT, 8)?;
    let seed = o.get_or("seed", "a non-negative int", 0u64)?;
    let randomisation: Vec<String> = o
        .list("randomisation", "a str or a list of str")?
        .unwrap_or_else(|| vec!["cascading".into()]);
    let settings = Settings {
        perturbation: RegionPerturbation {
            patch,
            steps: o.get_or("steps", INT, 100)?,
            baseline: Baseline::Zero,
            batch_size: o.get_or("batch_size", INT, 32)?,
            seed,
        },
        randomisation: Vec::new(),
        randomisation_samples: o.get_or("randomisation_samples", "a non-negative int", 16)?,
        top_k_fraction: o.get_or("top_k", "a float in (0, 1]", 0.1)?,
        abs: !o.flag("signed")?,
        tolerance: o.get_or("tolerance", "a non-negative float", 0.05)?,
        attribution_batch: o.get_or("attribution_batch", INT, 16)?,
        canonize: !o.flag("no_canonize")?,
        metrics: metrics(o, seed)?,
        weight_noise: weight_noise(o)?,
    };
    settings.validate().map_err(eval_error)?;
    let baseline: String = o.get_or("baseline", "a str", "zero".into())?;
    let settings = Settings {
        randomisation: Mode::parse_list(&randomisation).map_err(option_error("randomisation"))?,
        perturbation: RegionPerturbation {
            baseline: Baseline::parse(&baseline, patch).map_err(option_error("baseline"))?,
            ..settings.perturbation
        },
        ..settings
    };
    let x: Tensor<T> = inputs(py, x, dtype)?;
    if x.shape().first().is_none_or(|&n| n == 0) {
        return Err(invalid(format!(
            "evaluate: `inputs` must be a batch of samples (first axis = samples), got shape {:?}",
            x.shape()
        )));
    }
    let mut base = MethodSpec {
        canonize: settings.canonize,
        seed,
        ..MethodSpec::default()
    };
    apply_parameters(o, &mut base, "ig_baseline")?;
    let allow_nonfinite = o.flag("allow_nonfinite")?;
    if !allow_nonfinite {
        if let Some(report) = prism_model::NonFiniteReport::scan(&x, 0) {
            return Err(invalid(format!(
                "evaluate: `inputs` hold {report}; check the preprocessing, or pass \
                 allow_nonfinite=True"
            )));
        }
    }
    zbox_bounds_from_inputs(&mut base, &x).map_err(eval_error)?;
    let names: Vec<String> = o
        .list("methods", "a str or a list of str")?
        .unwrap_or_else(|| DEFAULT_METHODS.iter().map(|s| s.to_string()).collect());
    let mut methods: Vec<Method> = names
        .iter()
        .filter(|m| !m.trim().is_empty())
        .map(|m| Method::parse(m, &base).map_err(option_error("methods")))
        .collect::<PyResult<_>>()?;
    if let Some(file) = o.path("composite_file")? {
        let (source, text) = read_composite_file(&file)?;
        methods.push(
            Method::from_composite_file(source, &text, &base)
                .map_err(option_error("composite_file"))?,
        );
    }
    if methods.is_empty() {
        return Err(invalid(
            "evaluate: `methods` is empty; name at least one composite or attributor",
        ));
    }
    let model_file = model_path(model)?;
    let target = target(py, o, x.shape()[0])?;
    let no_plots = o.flag("no_plots")?;
    let progress = Progress {
        callback: o.callback("progress")?,
        state: Mutex::new((String::new(), 0, 0)),
        error: Mutex::new(None),
    };
    let stop = AtomicBool::new(false);
    let (result, interrupt) = watch_signals(py, &stop, || -> Result<_, PyErr> {
        let model = Model::load(&model_file).map_err(|e| from_lib(Kind::Model, &e))?;
        model.set_nonfinite(prism_model::NonFinite::allow_if(allow_nonfinite));
        std::fs::create_dir_all(&output_dir).map_err(|e| from_lib(Kind::Evaluation, &e))?;
        let report = prism_eval::evaluate(
            &model,
            &model_file.display().to_string(),
            &x,
            &target,
            &methods,
            &settings,
            &progress,
        )
        .map_err(eval_error)?;
        let json = output_dir.join("report.json");
        report.write_json(&json).map_err(eval_error)?;
        let plots = if no_plots {
            Vec::new()
        } else {
            prism_eval::plot::write_report_plots(&report, &output_dir).map_err(eval_error)?
        };
        Ok((report, json, plots))
    });
    if let Some(e) = interrupt {
        return Err(e);
    }
    if let Some(e) = progress.error.into_inner().ok().flatten() {
        return Err(e);
    }
    let (report, json, plots) = result?;
    let text = std::fs::read_to_string(&json).map_err(|e| from_lib(Kind::Evaluation, &e))?;
    let d = py
        .import("json")?
        .call_method1("loads", (text,))?
        .cast_into::<PyDict>()?;
    d.set_item("report_path", json.display().to_string())?;
    d.set_item(
        "plots",
        plots
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>(),
    )?;
    d.set_item("table", report.table())?;
    Ok(d)
}
