//! The evaluation report: serialisable to JSON, printable as a compact ranked table.

use std::path::Path;

use serde::Serialize;

use crate::completeness::Completeness;
use crate::error::{EvalError, Result};
use crate::faithfulness::{trapezoid, FaithfulnessCorrelation, Irof, Road};
use crate::perturbation::{aopc, RegionPerturbation};
use crate::randomisation::{Layer, Mode};
use crate::similarity::finite_mean;
use crate::weight_noise::{WeightNoiseLevel, WeightNoiseSummary};

/// Perturbation curves of one method and order, with their AOPC.
#[derive(Clone, Debug, Serialize)]
pub struct CurveSummary {
    /// Mean target score after k = 0 … L perturbed patches.
    pub mean_curve: Vec<f64>,
    /// AOPC averaged over samples.
    pub aopc: f64,
    /// Standard error of that mean.
    pub aopc_stderr: f64,
    pub per_sample_aopc: Vec<f64>,
    /// Every sample's curve (samples × (L + 1)).
    pub curves: Vec<Vec<f64>>,
}

impl CurveSummary {
    pub fn new(curves: Vec<Vec<f64>>) -> CurveSummary {
        let n = curves.len().max(1) as f64;
        let len = curves.first().map_or(0, Vec::len);
        let mean_curve = (0..len)
            .map(|k| curves.iter().map(|c| c[k]).sum::<f64>() / n)
            .collect();
        let per: Vec<f64> = curves.iter().map(|c| aopc(c)).collect();
        let m = per.iter().sum::<f64>() / n;
        let var = per.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / (n - 1.0).max(1.0);
        CurveSummary {
            mean_curve,
            aopc: m,
            aopc_stderr: (var / n).sqrt(),
            per_sample_aopc: per,
            curves,
        }
    }
}

/// Faithfulness correlation of one method (`quantus.FaithfulnessCorrelation`).
#[derive(Clone, Debug, Serialize)]
pub struct FaithfulnessCorrelationSummary {
    /// Mean over the samples with a finite correlation (Quantus' aggregate is `np.mean`).
    pub mean: f64,
    /// Each sample's Pearson correlation (NaN, written `null`, when a side is constant).
    pub per_sample: Vec<f64>,
}

impl FaithfulnessCorrelationSummary {
    pub fn new(per_sample: Vec<f64>) -> Self {
        FaithfulnessCorrelationSummary {
            mean: finite_mean(&per_sample),
            per_sample,
        }
    }
}

/// ROAD of one method (`quantus.ROAD`).
#[derive(Clone, Debug, Serialize)]
pub struct RoadSummary {
    pub percentages: Vec<f64>,
    /// Share of samples still classified as their target, per percentage (Quantus' result).
    pub curve: Vec<f64>,
    /// Trapezoid area under `curve` with unit spacing (Quantus' `calculate_auc`).
    pub auc: f64,
    /// Each sample's 1/0 per percentage.
    pub per_sample: Vec<Vec<f64>>,
}

impl RoadSummary {
    pub fn new(percentages: &[f64], per_sample: Vec<Vec<f64>>) -> Self {
        let n = per_sample.len().max(1) as f64;
        let curve: Vec<f64> = (0..percentages.len())
            .map(|j| per_sample.iter().map(|c| c[j]).sum::<f64>() / n)
            .collect();
        RoadSummary {
            percentages: percentages.to_vec(),
            auc: trapezoid(&curve),
            curve,
            per_sample,
        }
    }
}

/// IROF of one method (`quantus.IROF`).
#[derive(Clone, Debug, Serialize)]
pub struct IrofSummary {
    /// Mean area over the curve (Quantus' aggregate).
    pub mean: f64,
    pub per_sample: Vec<f64>,
    /// Each sample's curve p_c(x⁽ᵏ⁾)/p_c(x), k = 1 … segments.
    pub curves: Vec<Vec<f64>>,
}

impl IrofSummary {
    pub fn new(per_sample: Vec<f64>, curves: Vec<Vec<f64>>) -> Self {
        IrofSummary {
            mean: finite_mean(&per_sample),
            per_sample,
            curves,
        }
    }
}

/// Similarity of randomised and original maps after one randomisation step.
#[derive(Clone, Debug, Serialize)]
pub struct RandomisationStep {
    /// The layer randomised at this step (cumulatively for cascading modes).
    pub layer: String,
    pub spearman: f64,
    pub ssim: f64,
    pub top_k_intersection: f64,
    pub spearman_per_sample: Vec<f64>,
}

/// One method's randomisation curve for one mode.
#[derive(Clone, Debug, Serialize)]
pub struct RandomisationCurve {
    pub mode: Mode,
    pub steps: Vec<RandomisationStep>,
}

/// Everything measured for one method.
#[derive(Clone, Debug, Serialize)]
pub struct MethodReport {
    pub name: String,
    /// Whether the attributions were given (read from a file) rather than computed.
    pub precomputed: bool,
    pub composite: bool,
    pub attributor: String,
    pub morf: CurveSummary,
    pub lerf: CurveSummary,
    /// Area between the LeRF and MoRF curves (= AOPC_MoRF − AOPC_LeRF).
    pub abpc: f64,
    pub randomisation: Vec<RandomisationCurve>,
    /// Similarity to the unperturbed maps per weight-noise level (absent: not run, or no
    /// method to re-attribute with).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub weight_noise: Vec<WeightNoiseLevel>,
    pub completeness: Completeness,
    /// Seconds spent attributing the inputs once.
    pub attribution_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub faithfulness_correlation: Option<FaithfulnessCorrelationSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub road: Option<RoadSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub irof: Option<IrofSummary>,
}

/// Randomisation settings and the layers found.
#[derive(Clone, Debug, Serialize)]
pub struct RandomisationSettings {
    pub modes: Vec<Mode>,
    pub samples: usize,
    pub seed: u64,
    /// k of the top-k intersection (positions of the plane).
    pub top_k: usize,
    /// Maps compared as |Σ_c R| (true) or Σ_c R.
    pub abs: bool,
    pub layers: Vec<Layer>,
}

/// The whole evaluation.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub prism_version: &'static str,
    pub model: String,
    pub input_shape: Vec<usize>,
    pub dtype: String,
    pub targets: Vec<usize>,
    pub original_scores: Vec<f64>,
    pub perturbation: RegionPerturbation,
    /// Number of patches per sample and of perturbation steps L.
    pub patches: usize,
    pub steps: usize,
    pub random_order: CurveSummary,
    pub methods: Vec<MethodReport>,
    pub randomisation: Option<RandomisationSettings>,
    /// The weight-noise check's settings and prediction changes (absent: not run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight_noise: Option<WeightNoiseSummary>,
    /// Settings of the faithfulness metrics run (absent: not run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub faithfulness_correlation: Option<FaithfulnessCorrelation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub road: Option<Road>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub irof: Option<Irof>,
    /// Method names, best first by MoRF AOPC.
    pub ranking: Vec<String>,
    pub perturbation_seconds: f64,
    pub randomisation_seconds: f64,
    pub weight_noise_seconds: f64,
}

fn fmt(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.4}")
    } else {
        "-".into()
    }
}

impl Report {
    /// Writes the report as pretty JSON (NaN becomes `null`).
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let io = |e: String| EvalError::Io {
            path: path.display().to_string(),
            detail: e,
        };
        let s = serde_json::to_string_pretty(self).map_err(|e| io(e.to_string()))?;
        std::fs::write(path, s + "\n").map_err(|e| io(e.to_string()))
    }

    /// The compact table: methods ranked by MoRF AOPC, then the random-order baseline.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let w = self
            .methods
            .iter()
            .map(|m| m.name.len())
            .chain([12])
            .max()
            .unwrap_or(12);
        let mprt = |m: &MethodReport, mode: Mode| {
            m.randomisation
                .iter()
                .find(|r| r.mode == mode)
                .and_then(|r| r.steps.last())
                .map_or("-".to_string(), |st| fmt(st.spearman))
        };
        s.push_str(&format!(
            "{:>2}  {:<w$}  {:>10}  {:>10}  {:>10}  {:>9}  {:>9}  {:>8}  {}\n",
            "#",
            "method",
            "MoRF AOPC",
            "LeRF AOPC",
            "ABPC",
            "MPRT ρ c",
            "MPRT ρ i",
            "ΣR/exp",
            "conserved"
        ));
        for (rank, name) in self.ranking.iter().enumerate() {
            let Some(m) = self.methods.iter().find(|m| &m.name == name) else {
                continue;
            };
            let cons = match m.completeness.passed {
                Some(true) => "yes".to_string(),
                Some(false) => format!(
                    "no ({}/{})",
                    m.completeness.within_tolerance,
                    m.completeness.sums.len()
                ),
                None => "n/a".to_string(),
            };
            s.push_str(&format!(
                "{:>2}  {:<w$}  {:>10}  {:>10}  {:>10}  {:>9}  {:>9}  {:>8}  {}\n",
                rank + 1,
                m.name,
                fmt(m.morf.aopc),
                fmt(m.lerf.aopc),
                fmt(m.abpc),
                mprt(m, Mode::Cascading),
                // Independent: the mean over layers says more than the last layer.
                m.randomisation
                    .iter()
                    .find(|r| r.mode == Mode::Independent)
                    .map_or("-".to_string(), |r| fmt(crate::similarity::finite_mean(
                        &r.steps.iter().map(|st| st.spearman).collect::<Vec<_>>()
                    ))),
                fmt(m.completeness.mean_ratio),
                cons
            ));
        }
        s.push_str(&format!(
            "    {:<w$}  {:>10}\n",
            "random order",
            fmt(self.random_order.aopc)
        ));
        if self.faithfulness_correlation.is_some() || self.road.is_some() || self.irof.is_some() {
            s.push_str(&format!(
                "    {:<w$}  {:>10}  {:>10}  {:>10}\n",
                "faithfulness", "FC ρ", "ROAD AUC", "IROF AOC"
            ));
            for name in &self.ranking {
                let Some(m) = self.methods.iter().find(|m| &m.name == name) else {
                    continue;
                };
                let or = |v: Option<f64>| v.map_or("-".to_string(), fmt);
                s.push_str(&format!(
                    "    {:<w$}  {:>10}  {:>10}  {:>10}\n",
                    m.name,
                    or(m.faithfulness_correlation.as_ref().map(|f| f.mean)),
                    or(m.road.as_ref().map(|r| r.auc)),
                    or(m.irof.as_ref().map(|r| r.mean)),
                ));
            }
        }
        if let Some(wn) = &self.weight_noise {
            let w = w.max("same prediction".len());
            s.push_str(&format!("    {:<w$}", "weight noise ρ"));
            for sigma in &wn.settings.sigmas {
                s.push_str(&format!("  {:>10}", format!("σ={sigma}")));
            }
            s.push('\n');
            let row = |s: &mut String, name: &str, values: Vec<f64>| {
                s.push_str(&format!("    {name:<w$}"));
                for v in values {
                    s.push_str(&format!("  {:>10}", fmt(v)));
                }
                s.push('\n');
            };
            row(&mut s, "same prediction", wn.prediction_unchanged.clone());
            for name in &self.ranking {
                let Some(m) = self.methods.iter().find(|m| &m.name == name) else {
                    continue;
                };
                if !m.weight_noise.is_empty() {
                    row(
                        &mut s,
                        &m.name,
                        m.weight_noise.iter().map(|l| l.spearman).collect(),
                    );
                }
            }
            s.push_str(&format!(
                "Weight noise: N(0, σ{}) added to every weight and bias, {} draws; ρ: Spearman \
                 with the unperturbed maps (mean over draws and {} samples), same prediction: \
                 share of arg-max classes unchanged. Robust explanations stay high while the \
                 predictions do.\n",
                match wn.settings.scale {
                    crate::weight_noise::NoiseScale::Absolute => "²",
                    crate::weight_noise::NoiseScale::Relative => "² · var(W)",
                },
                wn.settings.draws,
                wn.samples_used
            ));
        }
        s.push_str(&format!(
            "AOPC over {} steps of {}×{} patches (baseline {}); MoRF higher is better, LeRF lower. \
             MPRT ρ: Spearman with the original maps, c = all layers randomised (cascading), \
             i = mean over single layers (independent); lower means the map depends on the weights. \
             ΣR/exp: relevance sum over what the method should conserve (seed, or f(x) − f(x̄)).\n",
            self.steps,
            self.perturbation.patch,
            self.perturbation.patch,
            self.perturbation.baseline.name()
        ));
        s
    }
}
