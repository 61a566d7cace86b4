//! # prism-eval
//!
//! Quantitative evaluation of attributions (issue 8): how faithful, how model-dependent and how
//! conservative an attribution method is, on your model and your data.
//!
//! * [`perturbation`]: region perturbation / pixel flipping (Samek et al. 2017): patches
//!   replaced most-relevant-first, least-relevant-first or at random with a baseline (zero,
//!   mean, uniform noise, blur); AOPC and the area between the MoRF and LeRF curves. Perturbed
//!   inputs of all samples, orders and steps share forward batches.
//! * [`randomisation`]: the model-parameter randomisation test (Adebayo et al. 2018), cascading,
//!   independent or bottom-up, with Spearman, SSIM and top-k intersection ([`similarity`]).
//! * [`weight_noise`]: Gaussian noise added to every parameter (Quantus' additive
//!   `ModelInterface.sample`); how much the attributions and predictions change.
//! * [`completeness`]: Σ R against the seed, per sample and method.
//! * [`evaluate()`]: all of it for several methods in one run, ranked, as a [`report::Report`]
//!   (serialisable to JSON, printable as a table) and PNG line plots ([`plot`]).
//!
//! Attributions come from `prism-attribution` (any composite and attributor, see [`Method`]);
//! the model runs on `prism-model`. The crate writes no files except through [`plot`] and
//! [`report::Report::write_json`]; the `prism evaluate` command wires it to the command line.
//! It does not define new attribution methods, and it evaluates single-input classifiers.

pub mod completeness;
pub mod error;
pub mod evaluate;
pub mod faithfulness;
pub mod method;
pub mod perturbation;
pub mod plot;
pub mod randomisation;
pub mod report;
pub mod rng;
pub mod scorer;
pub mod similarity;
pub mod source;
pub mod weight_noise;

use prism_model::{Float, Model, Tensor};

pub use error::{EvalError, Result};
pub use evaluate::{evaluate, evaluate_chunks, Chunk, Given, Metrics, Settings};
pub use faithfulness::{FaithfulnessCorrelation, FeatureBaseline, Irof, Road};
pub use method::{zbox_bounds_from_inputs, Method};
pub use perturbation::{Baseline, Order, RegionPerturbation, Samples};
pub use randomisation::Mode;
pub use report::Report;
pub use weight_noise::{NoiseScale, WeightNoise};

/// Progress of a long evaluation, reported stage by stage (the CLI draws bars).
pub trait Progress: Sync {
    /// A new stage of `total` units begins.
    fn stage(&self, _name: &str, _total: u64) {}
    /// `n` more units of the current stage are done.
    fn inc(&self, _n: u64) {}
    /// A line for the user (printed above any progress bar).
    fn note(&self, _line: &str) {}
}

/// No progress reporting.
pub struct Quiet;
impl Progress for Quiet {}

/// Values per sample of a relevance of shape `relevance` for inputs of shape `x`: the same
/// shape, or one channel (N×1×… for N×C×… inputs) that stands for every channel.
pub fn relevance_sample_len(relevance: &[usize], x: &[usize]) -> Result<usize> {
    let one_channel = relevance.len() == x.len()
        && x.len() >= 3
        && relevance[0] == x[0]
        && relevance[1] == 1
        && relevance[2..] == x[2..];
    if relevance != x && !one_channel {
        return Err(EvalError::Invalid(format!(
            "relevance of shape {relevance:?} for inputs of shape {x:?}: it must have the              inputs' shape, or one channel (N×1×…)"
        )));
    }
    Ok(relevance.iter().skip(1).product())
}

/// Classes (axis 1) and positions per class (axes 2..) of an N × classes × … output.
fn class_layout(shape: &[usize]) -> Result<(usize, usize, usize)> {
    if shape.len() < 2 {
        return Err(EvalError::Invalid(format!(
            "the model's output has shape {shape:?}; expected N × classes"
        )));
    }
    Ok((shape[0], shape[1], shape[2..].iter().product()))
}

/// Each sample's score for its target class (summed over positions when the output has more
/// axes), in f64.
pub fn target_scores<T: Float>(out: &Tensor<T>, targets: &[usize]) -> Result<Vec<f64>> {
    let (n, c, inner) = class_layout(out.shape())?;
    if targets.len() != n {
        return Err(EvalError::Invalid(format!(
            "{} targets for {n} outputs",
            targets.len()
        )));
    }
    targets
        .iter()
        .enumerate()
        .map(|(s, &t)| {
            if t >= c {
                return Err(EvalError::Invalid(format!(
                    "target class {t} is out of range: the model has {c} classes"
                )));
            }
            Ok((0..inner)
                .map(|j| out.data()[(s * c + t) * inner + j].f64())
                .sum())
        })
        .collect()
}

/// Runs the model on `x` in batches of `batch` samples; returns the outputs (N × classes × …).
pub fn forward_batched<T: Float>(model: &Model, x: &Tensor<T>, batch: usize) -> Result<Tensor<T>> {
    let n = x.shape().first().copied().unwrap_or(0);
    if n == 0 {
        return Err(EvalError::Invalid(format!(
            "expected a batch of samples, got shape {:?}",
            x.shape()
        )));
    }
    let per = x.len() / n;
    let mut data = Vec::new();
    let mut out_shape = Vec::new();
    for s in (0..n).step_by(batch.max(1)) {
        let e = (s + batch.max(1)).min(n);
        let mut shape = x.shape().to_vec();
        shape[0] = e - s;
        let y = model.forward(vec![Tensor::new(
            shape,
            x.data()[s * per..e * per].to_vec(),
        )?])?;
        let y = y
            .first()
            .ok_or_else(|| EvalError::Invalid("the model has no output".into()))?;
        out_shape = y.shape().to_vec();
        data.extend_from_slice(y.data());
    }
    out_shape[0] = n;
    Ok(Tensor::new(out_shape, data)?)
}
