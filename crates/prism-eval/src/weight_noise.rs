//! Robustness of explanations to small model perturbations: Gaussian noise added to every
//! parameter, the attributions recomputed and compared with the unperturbed ones (cf. Heo et
//! al. 2019, *Fooling neural network interpretations via adversarial model manipulation*,
//! NeurIPS: a model changed so little that its predictions stay can explain very differently).
//!
//! For each noise level σ and draw d, every parameter tensor `W` (the weights and biases of the
//! convolution and dense layers, the set [`crate::randomisation::parameter_layers`] finds) becomes
//!
//! ```text
//! W' = W + σ · ε          (Absolute, the default: Quantus' ModelInterface.sample(mean=0,
//!                          std=σ, noise_type="additive"))
//! W' = W + σ · std(W) · ε (Relative: σ in units of the tensor's own standard deviation,
//!                          population std, ddof = 0)
//! ```
//!
//! with `ε ~ N(0, 1)` element-wise, drawn by [`SplitMix64::normal`] from the stream
//! (`d · 2³² + p`, [`purpose::WEIGHT_NOISE`]) under the seed, where `p` numbers the parameter
//! tensors in graph order (a weight, then its bias). The same `ε` serves every σ of a draw
//! (common random numbers), so the curve over σ changes only by the noise's scale.
//!
//! Unlike Quantus, which perturbs every `torch.nn.Parameter` (BatchNorm's scale and shift too),
//! only convolution and dense parameters are perturbed: the ONNX graph does not say which other
//! constants were trained.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use prism_model::{Constant, Graph, Model, Source, ValueId};
use serde::Serialize;

use crate::error::{EvalError, Result};
use crate::randomisation::Layer;
use crate::rng::{purpose, SplitMix64};

/// Draws per noise level unless given (`--weight-noise-draws`).
pub const DEFAULT_DRAWS: usize = 3;
/// Samples re-attributed on the perturbed models unless given (`--weight-noise-samples`).
pub const DEFAULT_SAMPLES: usize = 16;

/// What σ is measured in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoiseScale {
    /// σ is the noise's standard deviation (Quantus' additive `sample`).
    #[default]
    Absolute,
    /// σ times each tensor's standard deviation.
    Relative,
}

impl NoiseScale {
    pub fn parse(s: &str) -> Result<NoiseScale> {
        match s.trim() {
            "absolute" => Ok(NoiseScale::Absolute),
            "relative" => Ok(NoiseScale::Relative),
            other => Err(EvalError::Invalid(format!(
                "unknown noise scale '{other}'; use absolute or relative"
            ))),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            NoiseScale::Absolute => "absolute",
            NoiseScale::Relative => "relative",
        }
    }
}

/// The weight-noise check's settings.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WeightNoise {
    /// Noise levels σ (≥ 0), in the order reported.
    pub sigmas: Vec<f64>,
    /// Independent draws per σ; results are averaged over them.
    pub draws: usize,
    pub scale: NoiseScale,
    /// The first this-many samples are re-attributed on each perturbed model.
    pub samples: usize,
}

impl WeightNoise {
    /// `sigmas` with the default draws, scale and samples.
    pub fn new(sigmas: Vec<f64>) -> WeightNoise {
        WeightNoise {
            sigmas,
            draws: DEFAULT_DRAWS,
            scale: NoiseScale::Absolute,
            samples: DEFAULT_SAMPLES,
        }
    }

    /// Checks the ranges; the error names the parameter as the front ends spell it.
    pub fn validate(&self) -> Result<()> {
        let bad = |name: &'static str, detail: String| {
            Err(EvalError::Parameter {
                names: vec![name],
                detail,
            })
        };
        if self.sigmas.is_empty() {
            return bad("weight_noise", "needs at least one noise level σ".into());
        }
        if let Some(s) = self.sigmas.iter().find(|s| !(s.is_finite() && **s >= 0.0)) {
            return bad(
                "weight_noise",
                format!("is a list of standard deviations σ ≥ 0, got {s}"),
            );
        }
        if self.draws == 0 || self.draws > 1 << 16 {
            return bad(
                "weight_noise_draws",
                format!("must be between 1 and 65536, got {}", self.draws),
            );
        }
        if self.samples == 0 {
            return bad("weight_noise_samples", "must be positive".into());
        }
        Ok(())
    }
}

/// The parameter tensors of `layers` in order (a weight, then its bias), each once.
pub fn parameter_tensors(layers: &[Layer]) -> Vec<ValueId> {
    let mut seen = HashSet::new();
    layers
        .iter()
        .flat_map(|l| std::iter::once(l.weight).chain(l.bias))
        .filter(|v| seen.insert(*v))
        .collect()
}

/// Adds draw `draw`'s noise of level `sigma` to the parameter tensors `params` of `graph`.
pub fn add_noise(
    graph: &mut Graph,
    params: &[ValueId],
    sigma: f64,
    scale: NoiseScale,
    draw: usize,
    seed: u64,
) {
    for (p, &v) in params.iter().enumerate() {
        let Some(c) = graph.constant(v) else { continue };
        let mut w = c.to_f64();
        let std = match scale {
            NoiseScale::Absolute => 1.0,
            NoiseScale::Relative => population_std(w.data()),
        };
        let mut rng = SplitMix64::stream(
            seed,
            ((draw as u64) << 32) | p as u64,
            purpose::WEIGHT_NOISE,
        );
        for x in w.data_mut() {
            *x += sigma * std * rng.normal();
        }
        let new = match c {
            Constant::F64(_) => Constant::F64(Arc::new(w)),
            _ => Constant::f32(w.map(|&x| x as f32)),
        };
        graph.values[v.0].source = Source::Constant(new);
    }
}

/// numpy's `std` (ddof = 0); 0 for an empty tensor.
fn population_std(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n).sqrt()
}

/// `model` with draw `draw`'s noise of level `sigma` on `params`.
pub fn perturbed_model(
    model: &Model,
    params: &[ValueId],
    sigma: f64,
    scale: NoiseScale,
    draw: usize,
    seed: u64,
) -> Model {
    let mut g = model.graph().clone();
    add_noise(&mut g, params, sigma, scale, draw, seed);
    Model::from_graph(g, PathBuf::from(model.path()))
}

/// The check's result on one method: similarity to the unperturbed maps per σ.
#[derive(Clone, Debug, Serialize)]
pub struct WeightNoiseLevel {
    pub sigma: f64,
    /// Mean over draws and samples (samples with a NaN correlation, a constant map, left out).
    pub spearman: f64,
    pub ssim: f64,
    pub top_k_intersection: f64,
    /// Each sample's Spearman correlation, mean over the draws.
    pub spearman_per_sample: Vec<f64>,
}

/// The check's settings and what it measured of the model itself.
#[derive(Clone, Debug, Serialize)]
pub struct WeightNoiseSummary {
    #[serde(flatten)]
    pub settings: WeightNoise,
    /// Samples actually re-attributed (`samples`, or fewer when the run has fewer).
    pub samples_used: usize,
    pub seed: u64,
    /// k of the top-k intersection (positions of the plane).
    pub top_k: usize,
    /// Maps compared as |Σ_c R| (true) or Σ_c R.
    pub abs: bool,
    /// Parameter tensors perturbed.
    pub tensors: usize,
    /// Per σ: the fraction of (sample, draw) pairs whose predicted class (arg-max) is that of
    /// the unperturbed model.
    pub prediction_unchanged: Vec<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::randomisation::parameter_layers;

    fn fixture() -> Model {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/eval/eval_cnn.onnx");
        Model::load(&p).expect("fixture")
    }

    /// The perturbation `W' − W` of every parameter, flattened in order.
    fn noise_of(original: &Graph, perturbed: &Graph, params: &[ValueId]) -> Vec<f64> {
        let values = |g: &Graph, v: ValueId| -> Vec<f64> {
            g.constant(v)
                .map(|c| c.to_f64().into_data())
                .expect("a parameter")
        };
        params
            .iter()
            .flat_map(|&v| {
                let a = values(original, v);
                values(perturbed, v)
                    .into_iter()
                    .zip(a)
                    .map(|(b, a)| b - a)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn mean_std(v: &[f64]) -> (f64, f64) {
        let n = v.len() as f64;
        let m = v.iter().sum::<f64>() / n;
        (m, population_std(v))
    }

    #[test]
    fn absolute_noise_is_seeded_and_has_the_requested_mean_and_std() {
        let m = fixture();
        let params = parameter_tensors(&parameter_layers(m.graph()));
        assert_eq!(params.len(), 8);
        let a = perturbed_model(&m, &params, 0.05, NoiseScale::Absolute, 1, 7);
        let b = perturbed_model(&m, &params, 0.05, NoiseScale::Absolute, 1, 7);
        let na = noise_of(m.graph(), a.graph(), &params);
        assert_eq!(na, noise_of(m.graph(), b.graph(), &params));
        assert!(na.len() > 3000, "{}", na.len());
        let (mean, std) = mean_std(&na);
        assert!(mean.abs() < 0.05 * 0.06, "mean {mean}");
        assert!((std / 0.05 - 1.0).abs() < 0.05, "std {std}");
        let other_draw = perturbed_model(&m, &params, 0.05, NoiseScale::Absolute, 2, 7);
        let other_seed = perturbed_model(&m, &params, 0.05, NoiseScale::Absolute, 1, 8);
        assert_ne!(na, noise_of(m.graph(), other_draw.graph(), &params));
        assert_ne!(na, noise_of(m.graph(), other_seed.graph(), &params));
    }

    /// Values from a numpy transcription of the documented draws (SplitMix64 `stream(seed,
    /// d·2³² + p, 6)`, Box–Muller cosine), added in f64 to the fixture's weights read with
    /// `onnx.numpy_helper` and rounded to float32.
    #[test]
    fn perturbed_weights_equal_a_numpy_reference() {
        let m = fixture();
        let params = parameter_tensors(&parameter_layers(m.graph()));
        let value = |g: &Graph, v: ValueId| g.constant(v).expect("parameter").to_f64().into_data();
        // first convolution's bias (p = 1), draw 1, seed 7, σ = 0.05, absolute
        let a = perturbed_model(&m, &params, 0.05, NoiseScale::Absolute, 1, 7);
        let expected = [
            -0.18189087510108948,
            -0.190138578414917,
            0.25538864731788635,
            -0.10026129335165024,
            -0.006395732518285513,
            0.3262789845466614,
            0.13152645528316498,
            -0.02554629184305668,
        ];
        assert_eq!(value(a.graph(), params[1]), expected);
        // first convolution's weight (p = 0), draw 0, seed 3, σ = 0.2 × std(W), relative
        let r = perturbed_model(&m, &params, 0.2, NoiseScale::Relative, 0, 3);
        let expected = [
            -0.13208451867103577,
            -0.05638391152024269,
            -0.23771776258945465,
            -0.18663464486598969,
        ];
        for (got, want) in value(r.graph(), params[0]).iter().zip(expected) {
            assert!((got - want).abs() <= 1e-7 * want.abs(), "{got} {want}");
        }
    }

    #[test]
    fn a_draw_uses_the_same_directions_for_every_sigma() {
        let m = fixture();
        let params = parameter_tensors(&parameter_layers(m.graph()));
        let small = perturbed_model(&m, &params, 0.01, NoiseScale::Absolute, 0, 3);
        let large = perturbed_model(&m, &params, 0.5, NoiseScale::Absolute, 0, 3);
        let s = noise_of(m.graph(), small.graph(), &params);
        let l = noise_of(m.graph(), large.graph(), &params);
        // f32 weights: equal up to rounding at the weights' magnitude
        for (a, b) in s.iter().zip(&l) {
            assert!((a * 50.0 - b).abs() < 1e-4, "{a} {b}");
        }
    }

    #[test]
    fn zero_sigma_leaves_the_weights_unchanged() {
        let m = fixture();
        let params = parameter_tensors(&parameter_layers(m.graph()));
        let z = perturbed_model(&m, &params, 0.0, NoiseScale::Relative, 0, 3);
        assert!(noise_of(m.graph(), z.graph(), &params)
            .iter()
            .all(|&d| d == 0.0));
    }

    #[test]
    fn relative_noise_scales_with_each_tensors_std() {
        let m = fixture();
        let params = parameter_tensors(&parameter_layers(m.graph()));
        let r = perturbed_model(&m, &params, 0.5, NoiseScale::Relative, 0, 11);
        // the largest tensor (16 × 16 × 3 × 3 weights) has enough values for the statistics
        let v = params[4];
        let w = m.graph().constant(v).expect("weight").to_f64().into_data();
        assert_eq!(w.len(), 16 * 16 * 9);
        let d = noise_of(m.graph(), r.graph(), &[v]);
        let (mean, std) = mean_std(&d);
        let target = 0.5 * population_std(&w);
        assert!(mean.abs() < 0.06 * target, "{mean} {target}");
        assert!((std / target - 1.0).abs() < 0.05, "{std} {target}");
    }

    #[test]
    fn bad_settings_name_the_parameter() {
        let msg = |w: WeightNoise| w.validate().map_err(|e| e.to_string()).err();
        assert_eq!(msg(WeightNoise::new(vec![0.0, 0.1])), None);
        let e = msg(WeightNoise::new(vec![0.1, -0.2])).expect("negative σ");
        assert!(e.starts_with("weight_noise ") && e.contains("-0.2"), "{e}");
        assert!(msg(WeightNoise::new(vec![f64::NAN])).is_some());
        assert!(msg(WeightNoise::new(vec![])).is_some());
        let e = msg(WeightNoise {
            draws: 0,
            ..WeightNoise::new(vec![0.1])
        })
        .expect("K = 0");
        assert!(e.starts_with("weight_noise_draws "), "{e}");
        assert!(NoiseScale::parse("percent").is_err());
        assert_eq!(
            NoiseScale::parse("relative").ok(),
            Some(NoiseScale::Relative)
        );
    }
}
