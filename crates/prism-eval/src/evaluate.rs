//! All evaluations for several methods in one run: attribute once per method (or read the
//! attributions given), perturb all methods' MoRF/LeRF orders and the random order in shared
//! forward batches, run the faithfulness metrics asked for, randomise layers, add noise to the
//! weights, check completeness, rank.
//!
//! A run streams over chunks of samples ([`evaluate_chunks`]): everything but the
//! randomisation test is computed chunk by chunk and only per-sample numbers are kept, so the
//! memory is bounded by the chunk (and the `randomisation_samples` or weight-noise `samples`
//! first samples, which the randomisation test and the weight-noise check re-attribute at the
//! end). [`evaluate`] is the one-chunk form.

use std::time::Instant;

use prism_attribution::{resolve_targets, Attributor, Target};
use prism_model::{Float, Model, Tensor};

use crate::completeness;
use crate::error::{EvalError, Result};
use crate::faithfulness::{grid_segments, FaithfulnessCorrelation, Irof, Road};
use crate::method::Method;
use crate::perturbation::{Job, Order, RegionPerturbation, Samples};
use crate::randomisation::{parameter_layers, randomised_models, Mode};
use crate::report::{
    CurveSummary, FaithfulnessCorrelationSummary, IrofSummary, MethodReport, RandomisationCurve,
    RandomisationSettings, RandomisationStep, Report, RoadSummary,
};
use crate::similarity::{finite_mean, plane, spearman, ssim, top_k_intersection};
use crate::weight_noise::{
    parameter_tensors, perturbed_model, WeightNoise, WeightNoiseLevel, WeightNoiseSummary,
};
use crate::{forward_batched, relevance_sample_len, target_scores, Progress, Quiet};

/// The faithfulness metrics of Quantus to run besides region perturbation (none by default).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics {
    pub faithfulness_correlation: Option<FaithfulnessCorrelation>,
    pub road: Option<Road>,
    pub irof: Option<Irof>,
}

/// Attributions computed elsewhere (an attribution file), evaluated like a method.
#[derive(Clone, Debug)]
pub struct Given {
    /// The name in the report.
    pub name: String,
    /// The method that made them, when known: it is what the completeness check holds them to
    /// and what the randomisation test re-attributes with. Without it both are skipped.
    pub method: Option<Method>,
}

/// One chunk of the samples of a run.
#[derive(Clone, Debug)]
pub struct Chunk<T> {
    /// The inputs, N × ….
    pub x: Tensor<T>,
    /// Their targets.
    pub target: Target,
    /// The given attributions of these samples, one tensor per [`Given`] (the inputs' shape, or
    /// one channel).
    pub relevance: Vec<Tensor<T>>,
    /// IROF's segments, one `h × w` label map per sample (default: [`grid_segments`]).
    pub segments: Option<Vec<Vec<usize>>>,
}

/// What a streamed run evaluates.
#[derive(Clone, Copy, Debug)]
pub struct Evaluation<'a> {
    pub model: &'a Model,
    /// Recorded in the report.
    pub model_name: &'a str,
    /// Methods whose attributions are computed.
    pub methods: &'a [Method],
    /// Attributions that come with the chunks.
    pub given: &'a [Given],
    pub settings: &'a Settings,
    /// Samples in the whole run (for progress).
    pub samples: usize,
}

/// What to evaluate and how.
#[derive(Clone, Debug)]
pub struct Settings {
    pub perturbation: RegionPerturbation,
    /// Randomisation modes to run (none: skip the test).
    pub randomisation: Vec<Mode>,
    /// The first this-many samples enter the randomisation test (it re-attributes per layer).
    pub randomisation_samples: usize,
    /// Top-k intersection's k as a fraction of the plane's positions.
    pub top_k_fraction: f64,
    /// Compare |Σ_c R| (Quantus' MPRT default) rather than Σ_c R.
    pub abs: bool,
    /// Relative tolerance of the completeness check.
    pub tolerance: f64,
    /// Samples per attribution batch.
    pub attribution_batch: usize,
    /// Canonizers on (BatchNorm merging, explicit residual sums).
    pub canonize: bool,
    /// Quantus' faithfulness metrics to run.
    pub metrics: Metrics,
    /// The weight-noise check (none: skip it).
    pub weight_noise: Option<WeightNoise>,
}

impl Settings {
    /// Checks the ranges of the settings; the error names the parameters.
    pub fn validate(&self) -> Result<()> {
        let bad = |names: &[&'static str], detail: String| {
            Err(EvalError::Parameter {
                names: names.to_vec(),
                detail,
            })
        };
        let p = &self.perturbation;
        if p.patch == 0 || p.steps == 0 || p.batch_size == 0 {
            return bad(
                &["patch_size", "steps", "batch_size"],
                "must be positive".into(),
            );
        }
        if self.attribution_batch == 0 {
            return bad(&["attribution_batch"], "must be positive".into());
        }
        if !(self.top_k_fraction > 0.0 && self.top_k_fraction <= 1.0) {
            return bad(
                &["top_k"],
                format!(
                    "is a fraction of the pixels in (0, 1], got {}",
                    self.top_k_fraction
                ),
            );
        }
        if !(self.tolerance >= 0.0 && self.tolerance.is_finite()) {
            return bad(
                &["tolerance"],
                format!("must be a non-negative number, got {}", self.tolerance),
            );
        }
        if let Some(wn) = &self.weight_noise {
            wn.validate()?;
        }
        Ok(())
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            perturbation: RegionPerturbation::default(),
            randomisation: vec![Mode::Cascading],
            randomisation_samples: 16,
            top_k_fraction: 0.1,
            abs: true,
            tolerance: 0.05,
            attribution_batch: 16,
            canonize: true,
            metrics: Metrics::default(),
            weight_noise: None,
        }
    }
}

/// Evaluates `methods` on inputs `x` of `model`; `model_name` is recorded in the report.
pub fn evaluate<T: Float>(
    model: &Model,
    model_name: &str,
    x: &Tensor<T>,
    target: &Target,
    methods: &[Method],
    settings: &Settings,
    progress: &dyn Progress,
) -> Result<Report> {
    let run = Evaluation {
        model,
        model_name,
        methods,
        given: &[],
        settings,
        samples: x.shape().first().copied().unwrap_or(0),
    };
    let chunk = Chunk {
        x: x.clone(),
        target: target.clone(),
        relevance: Vec::new(),
        segments: None,
    };
    evaluate_chunks(&run, std::iter::once(Ok(chunk)), progress)
}

/// One method under evaluation: computed or given.
struct Entry<'a> {
    name: &'a str,
    method: Option<&'a Method>,
    given: bool,
}

/// What is kept of every sample while the chunks stream past.
#[derive(Default)]
struct PerMethod {
    morf: Vec<Vec<f64>>,
    lerf: Vec<Vec<f64>>,
    sums: Vec<f64>,
    expected: Vec<f64>,
    property: &'static str,
    seconds: f64,
    fc: Vec<f64>,
    road: Vec<Vec<f64>>,
    irof: Vec<f64>,
    irof_curves: Vec<Vec<f64>>,
    /// The first samples' maps (for the randomisation test and the weight-noise check).
    kept: Vec<f64>,
}

fn append<T: Float>(dst: &mut Vec<T>, src: &Tensor<T>, k: usize) {
    let n = src.shape()[0].max(1);
    let per = src.len() / n;
    dst.extend_from_slice(&src.data()[..k * per]);
}

/// Evaluates a run streamed as chunks of samples (a dataset read batch by batch): region
/// perturbation, the faithfulness metrics of `settings.metrics` and completeness per chunk,
/// the randomisation test at the end on the first `randomisation_samples` samples, and the
/// weight-noise check (`settings.weight_noise`) on its first `samples` samples. Random
/// draws depend on a sample's number in the run, not on the chunking. With one chunk the
/// progress is reported stage by stage, otherwise in samples.
pub fn evaluate_chunks<T: Float, I>(
    run: &Evaluation<'_>,
    chunks: I,
    progress: &dyn Progress,
) -> Result<Report>
where
    I: IntoIterator<Item = Result<Chunk<T>>>,
{
    let Evaluation {
        model,
        model_name,
        methods,
        given,
        settings,
        samples: total,
    } = *run;
    settings.validate()?;
    if methods.is_empty() && given.is_empty() {
        return Err(EvalError::Invalid("no methods to evaluate".into()));
    }
    let entries: Vec<Entry> = methods
        .iter()
        .map(|m| Entry {
            name: &m.name,
            method: Some(m),
            given: false,
        })
        .chain(given.iter().map(|g| Entry {
            name: &g.name,
            method: g.method.as_ref(),
            given: true,
        }))
        .collect();
    let pert = &settings.perturbation;
    let metrics = &settings.metrics;
    let mut acc: Vec<PerMethod> = entries.iter().map(|_| PerMethod::default()).collect();
    let mut random_curves: Vec<Vec<f64>> = Vec::new();
    let mut all_targets: Vec<usize> = Vec::new();
    let mut all_original: Vec<f64> = Vec::new();
    let mut shape: Option<Vec<usize>> = None;
    let mut first = 0usize;
    let keep_randomised = if settings.randomisation.is_empty() {
        0
    } else {
        settings.randomisation_samples
    };
    let keep_noisy = settings.weight_noise.as_ref().map_or(0, |wn| wn.samples);
    let keep = keep_randomised.max(keep_noisy);
    let mut kept_x: Vec<T> = Vec::new();
    let mut perturbation_seconds = 0.0;
    let mut chunks = chunks.into_iter().peekable();
    let mut detailed = true;
    let quiet = Quiet;

    while let Some(chunk) = chunks.next() {
        let chunk = chunk?;
        let x = &chunk.x;
        let n = x.shape().first().copied().unwrap_or(0);
        if n == 0 {
            continue;
        }
        if first == 0 {
            detailed = chunks.peek().is_none();
            if !detailed {
                progress.stage("evaluating", total as u64);
            }
        }
        let inner: &dyn Progress = if detailed { progress } else { &quiet };
        match &shape {
            None => shape = Some(x.shape().to_vec()),
            Some(s) if s[1..] != x.shape()[1..] => {
                return Err(EvalError::Invalid(format!(
                    "samples {first}..: shape {:?}, but the earlier samples have {:?}",
                    &x.shape()[1..],
                    &s[1..]
                )))
            }
            Some(_) => {}
        }
        if chunk.relevance.len() != given.len() {
            return Err(EvalError::Invalid(format!(
                "samples {first}..: {} attributions for {} given methods",
                chunk.relevance.len(),
                given.len()
            )));
        }
        model.check_inputs(std::slice::from_ref(x))?;
        let grid = pert.grid(x.shape())?;
        let out = forward_batched(model, x, pert.batch_size)?;
        let targets = resolve_targets(&out, &chunk.target)?;
        let original = target_scores(&out, &targets)?;

        // Attribute (or take the given attributions); completeness.
        let mut maps: Vec<Tensor<T>> = Vec::with_capacity(entries.len());
        let mut given_maps = chunk.relevance.into_iter();
        for (e, a) in entries.iter().zip(acc.iter_mut()) {
            let r = match (e.given, e.method) {
                (false, Some(m)) => {
                    inner.stage(&format!("attributing ({})", m.name), n as u64);
                    let t0 = Instant::now();
                    let r = m.attribute(
                        model,
                        x,
                        &targets,
                        settings.attribution_batch,
                        settings.canonize,
                        inner,
                    )?;
                    a.seconds += t0.elapsed().as_secs_f64();
                    r
                }
                _ => {
                    let r = given_maps.next().ok_or_else(|| {
                        EvalError::Invalid("fewer attributions than given methods".into())
                    })?;
                    if r.shape().first() != Some(&n) {
                        return Err(EvalError::Invalid(format!(
                            "samples {first}..{}: the attributions of {} hold {:?} rows for {n} \
                             samples",
                            first + n,
                            e.name,
                            r.shape().first()
                        )));
                    }
                    relevance_sample_len(r.shape(), x.shape()).map_err(|err| {
                        EvalError::Invalid(format!("the attributions of {}: {err}", e.name))
                    })?;
                    r
                }
            };
            let (expected, property) = match e.method {
                Some(m) => match (&m.composite, &m.attributor) {
                    // f(x) − f(baseline) for a constant baseline; blurred, random and array
                    // baselines are not checked
                    (
                        None,
                        Attributor::IntegratedGradients {
                            baseline,
                            baselines: prism_attribution::Baselines::Constant,
                            ..
                        },
                    ) => {
                        let b = Tensor::new(x.shape().to_vec(), vec![T::of(*baseline); x.len()])?;
                        let fb =
                            target_scores(&forward_batched(model, &b, pert.batch_size)?, &targets)?;
                        let e = original.iter().zip(&fb).map(|(a, b)| a - b).collect();
                        (e, "completeness")
                    }
                    _ if m.conserves() => (vec![1.0; n], "conservation"),
                    _ => (vec![1.0; n], "none"),
                },
                None => (vec![1.0; n], "none"),
            };
            let per = r.len() / n;
            a.sums.extend(
                r.data()
                    .chunks(per.max(1))
                    .map(|s| s.iter().map(|v| v.f64()).sum::<f64>()),
            );
            a.expected.extend(expected);
            a.property = property;
            maps.push(r);
        }

        // Region perturbation: every method's MoRF and LeRF jobs and the random order, batched.
        let mut jobs: Vec<Job> = Vec::new();
        for r in &maps {
            jobs.extend(pert.jobs_from(x, Some(r), Order::Morf, first)?);
            jobs.extend(pert.jobs_from(x, Some(r), Order::Lerf, first)?);
        }
        jobs.extend(pert.jobs_from(x, None, Order::Random, first)?);
        let steps = pert.steps.min(grid.len());
        inner.stage("perturbing", (jobs.len() * steps) as u64);
        let t0 = Instant::now();
        let samples = Samples {
            x,
            targets: &targets,
            original: &original,
            first,
        };
        let mut curves = pert.curves_from(model, &samples, &jobs, inner)?;
        perturbation_seconds += t0.elapsed().as_secs_f64();
        random_curves.extend(curves.split_off(2 * n * entries.len()));
        let mut curves = curves.into_iter();
        for a in acc.iter_mut() {
            a.morf.extend(curves.by_ref().take(n));
            a.lerf.extend(curves.by_ref().take(n));
        }

        // Quantus' faithfulness metrics.
        let segments = match (&metrics.irof, chunk.segments) {
            (None, _) => None,
            (Some(_), Some(s)) => Some(s),
            (Some(_), None) => {
                let (_, h, w) = crate::perturbation::sample_layout(x.shape())?;
                Some(vec![grid_segments(h, w); n])
            }
        };
        for ((e, a), r) in entries.iter().zip(acc.iter_mut()).zip(&maps) {
            if let Some(fc) = &metrics.faithfulness_correlation {
                inner.stage(
                    &format!("faithfulness correlation ({})", e.name),
                    (n * fc.nr_runs) as u64,
                );
                a.fc.extend(fc.scores(model, &samples, r, inner)?);
            }
            if let Some(road) = &metrics.road {
                inner.stage(
                    &format!("ROAD ({})", e.name),
                    (n * road.percentages.len()) as u64,
                );
                a.road.extend(road.curves(model, &samples, r, inner)?);
            }
            if let (Some(irof), Some(seg)) = (&metrics.irof, &segments) {
                inner.stage(&format!("IROF ({})", e.name), 0);
                for (aoc, curve) in irof.scores(model, &samples, r, seg, inner)? {
                    a.irof.push(aoc);
                    a.irof_curves.push(curve);
                }
            }
        }

        // The first samples, for the randomisation test and the weight-noise check.
        let k = keep.saturating_sub(first).min(n);
        if k > 0 {
            append(&mut kept_x, x, k);
            for (a, r) in acc.iter_mut().zip(&maps) {
                let per = r.len() / n;
                a.kept.extend(r.data()[..k * per].iter().map(|v| v.f64()));
            }
        }
        all_targets.extend(targets);
        all_original.extend(original);
        first += n;
        if !detailed {
            progress.inc(n as u64);
        }
    }
    let Some(mut input_shape) = shape else {
        return Err(EvalError::Invalid("no samples to evaluate".into()));
    };
    input_shape[0] = first;
    let n = first;
    let grid = pert.grid(&input_shape)?;
    let steps = pert.steps.min(grid.len());

    // Randomisation.
    let t0 = Instant::now();
    let layers = parameter_layers(model.graph());
    let params = parameter_tensors(&layers);
    let kept = keep.min(n);
    let (_, h, w) = crate::perturbation::sample_layout(&input_shape)?;
    let top_k = ((settings.top_k_fraction * (h * w) as f64).round() as usize).max(1);
    // The kept samples' inputs and each method's maps as planes.
    let mut kept_shape = input_shape.clone();
    kept_shape[0] = kept;
    let kept_x = Tensor::new(kept_shape, kept_x)?;
    let original_planes: Vec<Vec<Vec<f64>>> = acc
        .iter()
        .map(|a| {
            let per = a.kept.len() / kept.max(1);
            (0..kept)
                .map(|i| plane(&a.kept[i * per..(i + 1) * per], h * w, settings.abs))
                .collect()
        })
        .collect();
    let with_method: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].method.is_some())
        .collect();
    let compare = |orig: &[Vec<f64>], r: &Tensor<T>| {
        let k = orig.len();
        let per = r.len() / k.max(1);
        let (mut sp, mut ss, mut tk) = (Vec::new(), Vec::new(), Vec::new());
        for (i, o) in orig.iter().enumerate() {
            let p = plane(&r.data()[i * per..(i + 1) * per], h * w, settings.abs);
            sp.push(spearman(o, &p));
            ss.push(ssim(o, &p, h, w));
            tk.push(top_k_intersection(o, &p, top_k));
        }
        (sp, ss, tk)
    };
    let k = keep_randomised.min(n);
    let mut rand_curves: Vec<Vec<RandomisationCurve>> = vec![Vec::new(); entries.len()];
    let mut rand_settings = None;
    if k > 0 {
        if layers.is_empty() {
            return Err(EvalError::Invalid(
                "the randomisation test found no convolution or dense layer with constant \
                 weights; skip it with --randomisation none"
                    .into(),
            ));
        }
        let xs = first_samples(&kept_x, k)?;
        let ts = &all_targets[..k];
        for e in entries.iter().filter(|e| e.method.is_none()) {
            progress.note(&format!(
                "note: {} has no method to re-attribute with; the randomisation test skips it",
                e.name
            ));
        }
        for &mode in &settings.randomisation {
            progress.stage(
                &format!("randomising layers ({})", mode.name()),
                (layers.len() * with_method.len() * k) as u64,
            );
            let mut per_method: Vec<Vec<RandomisationStep>> = vec![Vec::new(); entries.len()];
            for (li, rm) in randomised_models(model, &layers, mode, pert.seed) {
                for &mi in &with_method {
                    let Some(m) = entries[mi].method else {
                        continue;
                    };
                    let r = m.attribute(
                        &rm,
                        &xs,
                        ts,
                        settings.attribution_batch,
                        settings.canonize,
                        progress,
                    )?;
                    let (sp, ss, tk) = compare(&original_planes[mi][..k], &r);
                    per_method[mi].push(RandomisationStep {
                        layer: layers[li].node.clone(),
                        spearman: finite_mean(&sp),
                        ssim: finite_mean(&ss),
                        top_k_intersection: finite_mean(&tk),
                        spearman_per_sample: sp,
                    });
                }
            }
            for &mi in &with_method {
                rand_curves[mi].push(RandomisationCurve {
                    mode,
                    steps: std::mem::take(&mut per_method[mi]),
                });
            }
        }
        rand_settings = Some(RandomisationSettings {
            modes: settings.randomisation.clone(),
            samples: k,
            seed: pert.seed,
            top_k,
            abs: settings.abs,
            layers,
        });
    }
    let randomisation_seconds = t0.elapsed().as_secs_f64();

    // Weight noise.
    let t0 = Instant::now();
    let mut noise_levels: Vec<Vec<WeightNoiseLevel>> = vec![Vec::new(); entries.len()];
    let mut noise_summary = None;
    if let Some(wn) = &settings.weight_noise {
        if params.is_empty() {
            return Err(EvalError::Invalid(
                "the weight-noise check found no convolution or dense layer with constant \
                 weights to perturb; leave out --weight-noise"
                    .into(),
            ));
        }
        let k = wn.samples.min(n);
        let xs = first_samples(&kept_x, k)?;
        let ts = &all_targets[..k];
        for e in entries.iter().filter(|e| e.method.is_none()) {
            progress.note(&format!(
                "note: {} has no method to re-attribute with; the weight-noise check skips it",
                e.name
            ));
        }
        let predicted = |m: &Model| -> Result<Vec<usize>> {
            let out = forward_batched(m, &xs, pert.batch_size)?;
            Ok(resolve_targets(&out, &Target::Predicted)?)
        };
        let original_predicted = predicted(model)?;
        progress.stage(
            "adding noise to the weights",
            (wn.sigmas.len() * wn.draws * with_method.len() * k) as u64,
        );
        let mut unchanged = Vec::with_capacity(wn.sigmas.len());
        for &sigma in &wn.sigmas {
            // [method][sample][draw]
            let mut sims = vec![vec![[Vec::new(), Vec::new(), Vec::new()]; k]; entries.len()];
            let mut same = 0usize;
            for draw in 0..wn.draws {
                let noisy = perturbed_model(model, &params, sigma, wn.scale, draw, pert.seed);
                same += predicted(&noisy)?
                    .iter()
                    .zip(&original_predicted)
                    .filter(|(a, b)| a == b)
                    .count();
                for &mi in &with_method {
                    let Some(m) = entries[mi].method else {
                        continue;
                    };
                    let r = m.attribute(
                        &noisy,
                        &xs,
                        ts,
                        settings.attribution_batch,
                        settings.canonize,
                        progress,
                    )?;
                    let (sp, ss, tk) = compare(&original_planes[mi][..k], &r);
                    for (i, s) in sims[mi].iter_mut().enumerate() {
                        s[0].push(sp[i]);
                        s[1].push(ss[i]);
                        s[2].push(tk[i]);
                    }
                }
            }
            unchanged.push(same as f64 / (k * wn.draws) as f64);
            for &mi in &with_method {
                let per_sample = |j: usize| -> Vec<f64> {
                    sims[mi].iter().map(|s| finite_mean(&s[j])).collect()
                };
                let all = |j: usize| -> Vec<f64> {
                    sims[mi].iter().flat_map(|s| s[j].iter().copied()).collect()
                };
                noise_levels[mi].push(WeightNoiseLevel {
                    sigma,
                    spearman: finite_mean(&all(0)),
                    ssim: finite_mean(&all(1)),
                    top_k_intersection: finite_mean(&all(2)),
                    spearman_per_sample: per_sample(0),
                });
            }
        }
        noise_summary = Some(WeightNoiseSummary {
            settings: wn.clone(),
            samples_used: k,
            seed: pert.seed,
            top_k,
            abs: settings.abs,
            tensors: params.len(),
            prediction_unchanged: unchanged,
        });
    }
    let weight_noise_seconds = t0.elapsed().as_secs_f64();

    let mut reports = Vec::with_capacity(entries.len());
    for (((e, a), rc), wn) in entries.iter().zip(acc).zip(rand_curves).zip(noise_levels) {
        let morf = CurveSummary::new(a.morf);
        let lerf = CurveSummary::new(a.lerf);
        let sums = Tensor::new(vec![n, 1], a.sums)?;
        let comp = completeness::check(&sums, &a.expected, settings.tolerance, a.property);
        reports.push(MethodReport {
            name: e.name.to_string(),
            precomputed: e.given,
            composite: e.method.is_some_and(|m| m.composite.is_some()),
            attributor: e
                .method
                .map_or_else(|| "unknown".to_string(), |m| format!("{:?}", m.attributor)),
            abpc: morf.aopc - lerf.aopc,
            morf,
            lerf,
            randomisation: rc,
            weight_noise: wn,
            completeness: comp,
            attribution_seconds: a.seconds,
            faithfulness_correlation: metrics
                .faithfulness_correlation
                .as_ref()
                .map(|_| FaithfulnessCorrelationSummary::new(a.fc)),
            road: metrics
                .road
                .as_ref()
                .map(|r| RoadSummary::new(&r.percentages, a.road)),
            irof: metrics
                .irof
                .as_ref()
                .map(|_| IrofSummary::new(a.irof, a.irof_curves)),
        });
    }
    let mut ranking: Vec<(String, f64)> = reports
        .iter()
        .map(|m| (m.name.clone(), m.morf.aopc))
        .collect();
    ranking.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(Report {
        prism_version: env!("CARGO_PKG_VERSION"),
        model: model_name.to_string(),
        input_shape,
        dtype: T::DTYPE.to_string(),
        targets: all_targets,
        original_scores: all_original,
        perturbation: pert.clone(),
        patches: grid.len(),
        steps,
        random_order: CurveSummary::new(random_curves),
        methods: reports,
        randomisation: rand_settings,
        weight_noise: noise_summary,
        faithfulness_correlation: metrics.faithfulness_correlation.clone(),
        road: metrics.road.clone(),
        irof: metrics.irof.clone(),
        ranking: ranking.into_iter().map(|r| r.0).collect(),
        perturbation_seconds,
        randomisation_seconds,
        weight_noise_seconds,
    })
}

/// The first `k` samples of `x`.
fn first_samples<T: Float>(x: &Tensor<T>, k: usize) -> Result<Tensor<T>> {
    let n = x.shape().first().copied().unwrap_or(0).max(1);
    let per = x.len() / n;
    let mut shape = x.shape().to_vec();
    shape[0] = k;
    Ok(Tensor::new(shape, x.data()[..k * per].to_vec())?)
}
