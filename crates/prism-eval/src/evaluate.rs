//! All evaluations for several methods in one run: attribute once per method, perturb all
//! methods' MoRF/LeRF orders and the random order in shared forward batches, randomise layers,
//! check completeness, rank.

use std::time::Instant;

use prism_attribution::{resolve_targets, Attributor, Target};
use prism_model::{Float, Model, Tensor};

use crate::completeness;
use crate::error::{EvalError, Result};
use crate::method::Method;
use crate::perturbation::{Job, Order, RegionPerturbation};
use crate::randomisation::{parameter_layers, randomised_models, Mode};
use crate::report::{
    CurveSummary, MethodReport, RandomisationCurve, RandomisationSettings, RandomisationStep,
    Report,
};
use crate::similarity::{finite_mean, plane, spearman, ssim, top_k_intersection};
use crate::{forward_batched, target_scores, Progress};

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
        }
    }
}

fn take<T: Float>(x: &Tensor<T>, k: usize) -> Result<Tensor<T>> {
    let n = x.shape()[0];
    let per = x.len() / n.max(1);
    let mut shape = x.shape().to_vec();
    shape[0] = k.min(n);
    Ok(Tensor::new(shape, x.data()[..k.min(n) * per].to_vec())?)
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
    if methods.is_empty() {
        return Err(EvalError::Invalid("no methods to evaluate".into()));
    }
    model.check_inputs(std::slice::from_ref(x))?;
    let pert = &settings.perturbation;
    let grid = pert.grid(x.shape())?;
    let steps = pert.steps_for(x.shape())?;
    let n = x.shape()[0];
    let out = forward_batched(model, x, pert.batch_size)?;
    let targets = resolve_targets(&out, target)?;
    let original = target_scores(&out, &targets)?;

    // Attribute once per method; check completeness.
    let mut maps = Vec::with_capacity(methods.len());
    let mut partial = Vec::with_capacity(methods.len());
    for m in methods {
        progress.stage(&format!("attributing ({})", m.name), n as u64);
        let t0 = Instant::now();
        let r = m.attribute(
            model,
            x,
            &targets,
            settings.attribution_batch,
            settings.canonize,
            progress,
        )?;
        let secs = t0.elapsed().as_secs_f64();
        let (expected, property) = match (&m.composite, &m.attributor) {
            (None, Attributor::IntegratedGradients { baseline, .. }) => {
                let b = Tensor::new(x.shape().to_vec(), vec![T::of(*baseline); x.len()])?;
                let fb = target_scores(&forward_batched(model, &b, pert.batch_size)?, &targets)?;
                let e = original.iter().zip(&fb).map(|(a, b)| a - b).collect();
                (e, "completeness")
            }
            _ if m.conserves() => (vec![1.0; n], "conservation"),
            _ => (vec![1.0; n], "none"),
        };
        partial.push((
            secs,
            completeness::check(&r, &expected, settings.tolerance, property),
        ));
        maps.push(r);
    }

    // Region perturbation: every method's MoRF and LeRF jobs and the random order, batched.
    let mut jobs: Vec<Job> = Vec::new();
    for r in &maps {
        jobs.extend(pert.jobs(x, Some(r), Order::Morf)?);
        jobs.extend(pert.jobs(x, Some(r), Order::Lerf)?);
    }
    jobs.extend(pert.jobs(x, None, Order::Random)?);
    progress.stage("perturbing", (jobs.len() * steps) as u64);
    let t0 = Instant::now();
    let mut curves = pert.curves(model, x, &targets, &original, &jobs, progress)?;
    let perturbation_seconds = t0.elapsed().as_secs_f64();
    let random_order = CurveSummary::new(curves.split_off(2 * n * methods.len()));

    // Randomisation.
    let t0 = Instant::now();
    let layers = parameter_layers(model.graph());
    let k = settings.randomisation_samples.min(n);
    let mut rand_curves: Vec<Vec<RandomisationCurve>> = vec![Vec::new(); methods.len()];
    let mut rand_settings = None;
    if !settings.randomisation.is_empty() && k > 0 {
        if layers.is_empty() {
            return Err(EvalError::Invalid(
                "the randomisation test found no convolution or dense layer with constant \
                 weights; skip it with --randomisation none"
                    .into(),
            ));
        }
        let (_, h, w) = crate::perturbation::sample_layout(x.shape())?;
        let top_k = ((settings.top_k_fraction * (h * w) as f64).round() as usize).max(1);
        let xs = take(x, k)?;
        let ts = &targets[..k];
        let per = x.len() / n;
        let original_planes: Vec<Vec<Vec<f64>>> = maps
            .iter()
            .map(|r| {
                (0..k)
                    .map(|i| plane(&r.data()[i * per..(i + 1) * per], h * w, settings.abs))
                    .collect()
            })
            .collect();
        for &mode in &settings.randomisation {
            progress.stage(
                &format!("randomising layers ({})", mode.name()),
                (layers.len() * methods.len() * k) as u64,
            );
            let mut per_method: Vec<Vec<RandomisationStep>> = vec![Vec::new(); methods.len()];
            for (li, rm) in randomised_models(model, &layers, mode, pert.seed) {
                for (mi, m) in methods.iter().enumerate() {
                    let r = m.attribute(
                        &rm,
                        &xs,
                        ts,
                        settings.attribution_batch,
                        settings.canonize,
                        progress,
                    )?;
                    let (mut sp, mut ss, mut tk) = (Vec::new(), Vec::new(), Vec::new());
                    for (i, orig) in original_planes[mi].iter().enumerate() {
                        let p = plane(&r.data()[i * per..(i + 1) * per], h * w, settings.abs);
                        sp.push(spearman(orig, &p));
                        ss.push(ssim(orig, &p, h, w));
                        tk.push(top_k_intersection(orig, &p, top_k));
                    }
                    per_method[mi].push(RandomisationStep {
                        layer: layers[li].node.clone(),
                        spearman: finite_mean(&sp),
                        ssim: finite_mean(&ss),
                        top_k_intersection: finite_mean(&tk),
                        spearman_per_sample: sp,
                    });
                }
            }
            for (mi, steps) in per_method.into_iter().enumerate() {
                rand_curves[mi].push(RandomisationCurve { mode, steps });
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

    let mut curves = curves.into_iter();
    let mut reports = Vec::with_capacity(methods.len());
    for ((m, (secs, comp)), rc) in methods.iter().zip(partial).zip(rand_curves) {
        let morf = CurveSummary::new(curves.by_ref().take(n).collect());
        let lerf = CurveSummary::new(curves.by_ref().take(n).collect());
        reports.push(MethodReport {
            name: m.name.clone(),
            composite: m.composite.is_some(),
            attributor: format!("{:?}", m.attributor),
            abpc: morf.aopc - lerf.aopc,
            morf,
            lerf,
            randomisation: rc,
            completeness: comp,
            attribution_seconds: secs,
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
        input_shape: x.shape().to_vec(),
        dtype: T::DTYPE.to_string(),
        targets,
        original_scores: original,
        perturbation: pert.clone(),
        patches: grid.len(),
        steps,
        random_order,
        methods: reports,
        randomisation: rand_settings,
        ranking: ranking.into_iter().map(|r| r.0).collect(),
        perturbation_seconds,
        randomisation_seconds,
    })
}
