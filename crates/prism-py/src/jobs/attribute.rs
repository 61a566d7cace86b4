//! `attribute`: `prism attribute` as a function (`prism_jobs::attribute_dataset`).

// The library's errors hold the store's unboxed (see prism-jobs); they pass through a closure
// here once per call.
#![allow(clippy::result_large_err)]

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use prism_attribution::{
    AttributionError, BaselineArg, BaselineSource, Bound as Range, CompositeSource, Fill,
    MethodSpec, RecordMode, SeedMode,
};
use prism_jobs::{attribute_dataset, AttributeJob, AttributeOutcome, JobError, RunProgress};
use prism_store::{DatasetOptionsText, RecordSettings, RunError, Shard};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use super::{model_path, report, watch_signals, Options};
use crate::errors::{from_lib, invalid, Kind};

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(attribute, m)?)?;
    Ok(())
}

const ATTRIBUTE_OPTIONS: &[&str] = &[
    "method",
    "target",
    "batch_size",
    "shard",
    "limit",
    "compression",
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
    "record",
    "record_mode",
    "top_k",
    "progress",
];

/// The dataset options of `attribute` (and `project`'s dataset): the CLI's `--dataset-kind`,
/// `--labels`, `--resize`, `--crop`, `--normalize`, `--channels`, `--scale`, parsed by
/// [`DatasetOptionsText::parse`] like the CLI's. Sizes may also be given as an int or an
/// `(H, W)` pair, and `normalize` as a `(mean, std)` pair of floats or lists of floats.
pub(crate) fn dataset_options(o: &Options<'_>) -> PyResult<prism_store::DatasetOptions> {
    let text = DatasetOptionsText {
        kind: o.get("dataset_kind", "a str (hdf5, image-folder, npy)")?,
        labels: o.path("labels")?,
        resize: size_text(o, "resize")?,
        crop: size_text(o, "crop")?,
        normalize: normalize_text(o)?,
        channels: o.get("channels", "1 or 3")?,
        scale: o.get("scale", "True or False")?,
    };
    text.parse()
        .map_err(|e| invalid(format!("{}: {}", o.job, crate::errors::chain(&e))))
}

/// `S`, `HxW`, an int or an `(H, W)` pair, as the text the parser takes.
fn size_text(o: &Options<'_>, name: &'static str) -> PyResult<Option<String>> {
    const WHAT: &str = "an int, an (H, W) pair or a str `S` / `HxW`";
    let Some(v) = o.raw(name)? else {
        return Ok(None);
    };
    if let Ok(s) = v.extract::<String>() {
        return Ok(Some(s));
    }
    if let Ok(n) = v.extract::<usize>() {
        return Ok(Some(n.to_string()));
    }
    if let Ok((h, w)) = v.extract::<(usize, usize)>() {
        return Ok(Some(format!("{h}x{w}")));
    }
    Err(o.ill_typed(name, WHAT, &v))
}

/// `imagenet`, `MEAN,…/STD,…` or a `(mean, std)` pair, as the text the parser takes.
fn normalize_text(o: &Options<'_>) -> PyResult<Option<String>> {
    const WHAT: &str = "`imagenet`, a str `MEAN,…/STD,…` or a (mean, std) pair";
    let Some(v) = o.raw("normalize")? else {
        return Ok(None);
    };
    if let Ok(s) = v.extract::<String>() {
        return Ok(Some(s));
    }
    let list = |x: &Bound<'_, PyAny>| -> Option<String> {
        let values: Vec<f64> = match x.extract::<f64>() {
            Ok(one) => vec![one],
            Err(_) => x.extract::<Vec<f64>>().ok()?,
        };
        Some(
            values
                .iter()
                .map(f64::to_string)
                .collect::<Vec<_>>()
                .join(","),
        )
    };
    if let Ok(pair) = v.cast::<PyTuple>() {
        if pair.len() == 2 {
            if let (Some(m), Some(s)) = (list(&pair.get_item(0)?), list(&pair.get_item(1)?)) {
                return Ok(Some(format!("{m}/{s}")));
            }
        }
    }
    if let Ok(pair) = v.cast::<PyList>() {
        if pair.len() == 2 {
            if let (Some(m), Some(s)) = (list(&pair.get_item(0)?), list(&pair.get_item(1)?)) {
                return Ok(Some(format!("{m}/{s}")));
            }
        }
    }
    Err(o.ill_typed("normalize", WHAT, &v))
}

/// The keys of the `method` dict (the flags of `prism explain`'s method, snake case).
pub(crate) static METHOD_KEYS: std::sync::LazyLock<Vec<&'static str>> =
    std::sync::LazyLock::new(|| {
        let mut keys = prism_attribution::METHOD_FIELDS.to_vec();
        keys.insert(1, "composite_file");
        // the optional fields a user sets (`baseline_source` is written through `baseline`)
        keys.extend(["layer", "absolute_noise", "occlusion_fill"]);
        keys
    });

/// A ZBox bound: one float, or one per channel.
pub(crate) fn bound(o: &Options<'_>, name: &'static str) -> PyResult<Option<Range>> {
    Ok(
        o.list::<f64>(name, "a float or a list of floats (one per channel)")?
            .map(|v| match v.as_slice() {
                [one] => Range::Scalar(*one),
                _ => Range::PerChannel(v),
            }),
    )
}

/// The rule, sampling and occlusion parameters present in `o` (keys as in [`METHOD_KEYS`];
/// `baseline_key` names the integrated-gradients baseline), written into `spec`.
pub(crate) fn apply_parameters(
    o: &Options<'_>,
    spec: &mut MethodSpec,
    baseline_key: &'static str,
) -> PyResult<()> {
    const FLOAT: &str = "a float";
    spec.zero_bias = o.flag("zero_bias")?;
    spec.epsilon = o.get_or("epsilon", FLOAT, spec.epsilon)?;
    spec.stabilizer = o.get_or("stabilizer", FLOAT, spec.stabilizer)?;
    spec.gamma = o.get_or("gamma", FLOAT, spec.gamma)?;
    spec.alpha = o.get_or("alpha", FLOAT, spec.alpha)?;
    spec.beta = o.get_or("beta", FLOAT, spec.beta)?;
    spec.low = bound(o, "low")?.or(spec.low.take());
    spec.high = bound(o, "high")?.or(spec.high.take());
    spec.beta_smooth = o.get_or("beta_smooth", FLOAT, spec.beta_smooth)?;
    spec.n_iter = o.get("n_iter", "an int")?.or(spec.n_iter);
    spec.noise_level = o.get_or("noise_level", FLOAT, spec.noise_level)?;
    match o.raw(baseline_key)? {
        None => {}
        Some(v) => {
            let arg = match v.extract::<f64>() {
                Ok(x) => BaselineArg::Constant(x),
                Err(_) => {
                    let text: String = v.extract().map_err(|_| {
                        o.ill_typed(
                            baseline_key,
                            "a float, \"blur[:SIGMA]\", \"uniform[:K]\" or a .npy path",
                            &v,
                        )
                    })?;
                    BaselineArg::parse(&text).map_err(|e| o.bad(baseline_key, e))?
                }
            };
            match arg {
                BaselineArg::Constant(x) => spec.baseline = x,
                BaselineArg::Source(source) => spec.baseline_source = Some(source),
                BaselineArg::File(path) => {
                    spec.baseline_source = Some(read_baseline_file(&path)?.0);
                }
            }
        }
    }
    spec.absolute_noise = o.flag("absolute_noise")?;
    if let Some(fill) = o.raw("occlusion_fill")? {
        let text = match fill.extract::<f64>() {
            Ok(x) => x.to_string(),
            Err(_) => fill
                .extract::<String>()
                .map_err(|_| o.ill_typed("occlusion_fill", "a float or \"blur[:SIGMA]\"", &fill))?,
        };
        spec.occlusion_fill = match text
            .parse::<Fill>()
            .map_err(|e| o.bad("occlusion_fill", e))?
        {
            Fill::Zero => None,
            f => Some(f),
        };
    }
    const SIZES: &str = "an int or a list of ints";
    if let Some(w) = o.list::<usize>("window", SIZES)? {
        spec.window = w;
    }
    if let Some(s) = o.list::<usize>("stride", SIZES)? {
        spec.stride = s;
    }
    spec.invert_occlusion = o.flag("invert_occlusion")?;
    spec.seed = o.get_or("seed", "a non-negative int", spec.seed)?;
    if let Some(layer) = o.text("layer", "a node or tensor name (str)")? {
        spec.layer = Some(layer);
    }
    Ok(())
}

/// A baseline `.npy` file: its source (path + blake3 of its bytes) and its values.
pub(crate) fn read_baseline_file(
    path: &std::path::Path,
) -> PyResult<(BaselineSource, prism_model::Tensor<f64>)> {
    if !path.exists() {
        return Err(crate::errors::error(
            Kind::FileNotFound,
            format!("baseline file {} does not exist", path.display()),
        ));
    }
    let (values, blake3) = prism_store::npy::read_float_hashed::<f64>(path)
        .map_err(|e| invalid(crate::errors::chain(&e)))?;
    Ok((
        BaselineSource::File {
            path: path.to_path_buf(),
            blake3,
        },
        values,
    ))
}

/// The array of a method whose baseline is a file (read again; the spec holds its hash).
pub(crate) fn baseline_array(spec: &MethodSpec) -> PyResult<Option<prism_model::Tensor<f64>>> {
    match &spec.baseline_source {
        Some(BaselineSource::File { path, blake3 }) => {
            let (source, values) = read_baseline_file(path)?;
            if !matches!(&source, BaselineSource::File { blake3: b, .. } if b == blake3) {
                return Err(invalid(format!(
                    "the baseline {} changed while it was read",
                    path.display()
                )));
            }
            Ok(Some(values))
        }
        _ => Ok(None),
    }
}

/// A library error about the method: bad parameters as `InvalidArgumentError`, others as
/// `AttributionError` (see [`crate::model::attribution_error`]).
pub(crate) fn method_error(e: AttributionError) -> PyErr {
    crate::model::attribution_error(&e)
}

/// A composite file's source (path + blake3 of its bytes, as the CLI records it) and text.
pub(crate) fn read_composite_file(path: &std::path::Path) -> PyResult<(CompositeSource, String)> {
    if !path.exists() {
        return Err(crate::errors::error(
            Kind::FileNotFound,
            format!("composite file {} does not exist", path.display()),
        ));
    }
    CompositeSource::read_file(path).map_err(|e| crate::model::attribution_error(&e))
}

/// The `method` dict (the keys of [`METHOD_KEYS`]) as a method spec and its composite file's
/// text: the one reader of method parameters, for `Model.explain`/`rules` and the jobs.
pub(crate) fn method_spec(
    method: Option<&Bound<'_, PyAny>>,
) -> PyResult<(MethodSpec, Option<String>)> {
    method_spec_or(method, None)
}

/// [`method_spec`], with the built-in composite `default_composite` when the dict names
/// neither `composite` nor `composite_file` (`prism concepts`' epsilon-plus-flat).
pub(crate) fn method_spec_or(
    method: Option<&Bound<'_, PyAny>>,
    default_composite: Option<&str>,
) -> PyResult<(MethodSpec, Option<String>)> {
    let dict = match method {
        None => None,
        Some(m) if m.is_none() => None,
        Some(m) => Some(m.cast::<PyDict>().map_err(|_| {
            invalid(format!(
                "`method` must be a dict of the method's parameters ({}), got {}",
                METHOD_KEYS.join(", "),
                super::describe(m)
            ))
        })?),
    };
    let o = Options::new("method", &METHOD_KEYS, dict)?;
    let mut spec = MethodSpec::default();
    let composite: Option<String> = o.get("composite", "a str")?;
    let file = o.path("composite_file")?;
    let text = match (composite, file) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "method: `composite` and `composite_file` exclude each other",
            ))
        }
        (Some(name), None) => {
            spec.composite = CompositeSource::Builtin { name };
            None
        }
        (None, Some(path)) => {
            let (source, text) = read_composite_file(&path)?;
            spec.composite = source;
            Some(text)
        }
        (None, None) => {
            if let Some(name) = default_composite {
                spec.composite = CompositeSource::Builtin { name: name.into() };
            }
            None
        }
    };
    spec.attributor = o.get_or("attributor", "a str", spec.attributor)?;
    spec.seed_mode = match o
        .get::<String>("seed_mode", "`one-hot` or `logit`")?
        .as_deref()
    {
        None | Some("one-hot" | "one_hot") => SeedMode::OneHot,
        Some("logit") => SeedMode::Logit,
        Some(other) => {
            return Err(invalid(format!(
                "method: `seed_mode` must be `one-hot` or `logit`, got `{other}`"
            )))
        }
    };
    spec.canonize = o.get_or("canonize", "True or False", true)?;
    // ε left out: the composite's default (LXT's 0 for attn-lrp and cp-lrp)
    spec.epsilon = prism_attribution::default_epsilon(
        match &spec.composite {
            CompositeSource::Builtin { name } => Some(name.as_str()),
            _ => None,
        },
        text.as_deref(),
    );
    apply_parameters(&o, &mut spec, "baseline")?;
    Ok((spec, text))
}

/// Progress of a dataset run (`attribute`, `concepts`), to the Python callback; stops the run
/// on Ctrl-C (seen by [`watch_signals`]) or when the callback raises.
pub(crate) struct Progress<'a> {
    callback: Option<Py<PyAny>>,
    stop: &'a AtomicBool,
    /// The callback's first exception, raised when the run returns.
    pub error: Option<PyErr>,
    total: usize,
    done: usize,
}

impl<'a> Progress<'a> {
    /// Progress to `callback` (none: only Ctrl-C is watched), stopping when `stop` is set.
    pub fn new(callback: Option<Py<PyAny>>, stop: &'a AtomicBool) -> Self {
        Progress {
            callback,
            stop,
            error: None,
            total: 0,
            done: 0,
        }
    }

    /// Reports an event without a stopping point (the run goes on; an exception of the
    /// callback is raised when it returns).
    fn event(&mut self, event: impl FnOnce(&Bound<'_, PyDict>) -> PyResult<()>) {
        if self.error.is_none() {
            if let Err(e) = report(&self.callback, event) {
                self.error = Some(e);
            }
        }
    }
}

impl RunProgress for Progress<'_> {
    fn started(&mut self, run: &prism_jobs::RunStarted) {
        self.total = run.samples;
        self.done = run.done;
        self.event(|d| {
            d.set_item("event", "started")?;
            d.set_item("total", run.samples)?;
            d.set_item("done", run.done)?;
            d.set_item("resumed", run.resumed)?;
            d.set_item("output", run.output.display().to_string())?;
            d.set_item("work_dir", run.work_dir.display().to_string())
        });
    }

    fn part_written(&mut self, samples: usize) -> ControlFlow<()> {
        self.done += samples;
        if self.error.is_none() {
            let (done, total) = (self.done, self.total);
            if let Err(e) = report(&self.callback, |d| {
                d.set_item("event", "part")?;
                d.set_item("done", done)?;
                d.set_item("total", total)
            }) {
                self.error = Some(e);
            }
        }
        if self.error.is_some() || self.stop.load(Ordering::SeqCst) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    fn computed(&mut self) {
        self.event(|d| d.set_item("event", "computed"));
    }

    fn step(&mut self, what: &str) {
        self.event(|d| {
            d.set_item("event", "step")?;
            d.set_item("what", what)
        });
    }
}

/// `record`, `record_mode` and `top_k` (the CLI's `--record`, `--record-mode`,
/// `--record-top-k`): `None` without `record`.
fn record_settings(o: &Options<'_>) -> PyResult<Option<RecordSettings>> {
    let patterns: Vec<String> = o
        .list("record", "a node-name glob (str) or a list of them")?
        .unwrap_or_default();
    let mode: Option<String> = o.get("record_mode", "\"channels\" or \"maps\"")?;
    let top_k: Option<usize> = o.get("top_k", "a positive int")?;
    if patterns.is_empty() {
        if mode.is_some() || top_k.is_some() {
            return Err(invalid(
                "attribute: `record_mode` and `top_k` need `record` (the nodes to record)",
            ));
        }
        return Ok(None);
    }
    let mode = match mode.as_deref() {
        None => RecordMode::Channels,
        Some(m) => RecordMode::parse(m).map_err(|e| invalid(format!("attribute: {e}")))?,
    };
    let top_k = top_k.unwrap_or(10);
    if top_k == 0 {
        return Err(o.bad("top_k", "must be at least 1"));
    }
    Ok(Some(RecordSettings {
        patterns,
        mode,
        top_k,
    }))
}

/// A job's error as the Python exception of its kind.
pub(crate) fn job_error(e: JobError) -> PyErr {
    let kind = match &e {
        JobError::BatchSize
        | JobError::RecordTopK
        | JobError::Record { .. }
        | JobError::Compression(_)
        | JobError::Target(_)
        | JobError::NeedsLabels { .. }
        | JobError::TokenInput { .. }
        | JobError::NonFiniteSamples { .. } => Kind::InvalidArgument,
        JobError::LoadModel { .. } | JobError::Tensor(_) => Kind::Model,
        JobError::Layers { source } => crate::model::attribution_kind(source),
        JobError::Attribute { .. } => Kind::Attribution,
        JobError::Run(RunError::OutputExists { path }) => {
            return crate::errors::error(
                Kind::Store,
                format!(
                    "{} exists (from other settings or not a complete Prism attribution \
                     file); pass force=True to overwrite it",
                    path.display()
                ),
            )
        }
        JobError::OpenDataset { .. }
        | JobError::ReadBatch { .. }
        | JobError::NoSamples { .. }
        | JobError::Run(_) => Kind::Store,
    };
    from_lib(kind, &e)
}

/// `target` of a dataset job: `label` (default), `predicted` or a class number, as the CLI's
/// `--target` spells it.
pub(crate) fn dataset_target(o: &Options<'_>) -> PyResult<String> {
    let target = o
        .text("target", "`label`, `predicted` or a class number")?
        .unwrap_or_else(|| "label".into());
    if target.parse::<prism_store::TargetSpec>().is_err() {
        return Err(invalid(format!(
            "{}: `target` must be `label`, `predicted` or a class number, got `{target}`",
            o.job
        )));
    }
    Ok(target)
}

/// `shard`: `"I/N"` (0-based), or none.
pub(crate) fn shard(o: &Options<'_>) -> PyResult<Option<Shard>> {
    match o.get::<String>("shard", "a str `I/N`")? {
        None => Ok(None),
        Some(s) => Ok(Some(
            s.parse::<Shard>()
                .map_err(|e| invalid(format!("{}: {e}", o.job)))?,
        )),
    }
}

/// Attributes every sample of a dataset and writes a ViRelAy attribution file, like
/// `prism attribute` (resumable: an interrupted call continues where it stopped).
#[pyfunction]
#[pyo3(signature = (model, dataset, output, **options))]
fn attribute<'py>(
    py: Python<'py>,
    model: &Bound<'py, PyAny>,
    dataset: PathBuf,
    output: PathBuf,
    options: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyDict>> {
    let o = Options::new("attribute", ATTRIBUTE_OPTIONS, options)?;
    let model = model_path(model)?;
    let (spec, text) = method_spec(o.raw("method")?.as_ref())?;
    let method = prism_jobs::Method::new(spec, text.as_deref()).map_err(method_error)?;
    let target = dataset_target(&o)?;
    let shard = shard(&o)?;
    let compression: Option<u8> = o.get("compression", "a gzip level 0–9")?;
    let record = record_settings(&o)?;
    let job = AttributeJob {
        model,
        dataset,
        dataset_options: dataset_options(&o)?,
        output,
        target,
        batch_size: o.get_or("batch_size", "a positive int", 16)?,
        shard,
        limit: o.get("limit", "a non-negative int")?,
        compression,
        prefetch: o.get_or("prefetch", "a non-negative int", 2)?,
        force: o.flag("force")?,
        allow_nonfinite: o.flag("allow_nonfinite")?,
        record,
    };
    let stop = AtomicBool::new(false);
    let mut progress = Progress::new(o.callback("progress")?, &stop);
    let (outcome, interrupt) = watch_signals(py, &stop, || {
        attribute_dataset(&job, &method, &mut progress)
    });
    if let Some(e) = interrupt.or(progress.error.take()) {
        return Err(e);
    }
    let outcome = outcome.map_err(job_error)?;
    let d = PyDict::new(py);
    match outcome {
        AttributeOutcome::AlreadyComplete { output } => {
            let file = prism_store::AttributionFile::open(&output)
                .map_err(|e| from_lib(Kind::Store, &e))?;
            d.set_item("status", "complete")?;
            d.set_item("output", output.display().to_string())?;
            d.set_item("samples", file.n_samples())?;
        }
        AttributeOutcome::Written { output, samples } => {
            d.set_item("status", "written")?;
            d.set_item("output", output.display().to_string())?;
            d.set_item("samples", samples)?;
        }
        AttributeOutcome::Stopped { output, parts } => {
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
