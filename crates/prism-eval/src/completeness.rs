//! Completeness / conservation: does the relevance add up to what was put in?
//!
//! LRP conserves relevance layer by layer, so Σᵢ Rᵢ should equal the seed (1 for Zennit's one-hot
//! seed), up to what biases and stabilisers absorb. Integrated Gradients satisfies completeness,
//! Σᵢ Rᵢ = f_c(x) − f_c(x̄), up to its Riemann-sum error. Other attributors (gradient, SmoothGrad,
//! occlusion) promise neither; their sums are reported against the seed but not held to it.

use prism_model::{Float, Tensor};
use serde::Serialize;

/// Σ R against the expected total, per sample, for one method.
#[derive(Clone, Debug, Serialize)]
pub struct Completeness {
    /// What the method promises: `conservation`, `completeness` or `none`.
    pub property: &'static str,
    /// The expected total per sample (the seed, or f(x) − f(baseline)).
    pub expected: Vec<f64>,
    /// Σ R per sample.
    pub sums: Vec<f64>,
    /// |Σ R − expected| / |expected| per sample.
    pub relative_error: Vec<f64>,
    pub max_relative_error: f64,
    /// Mean of Σ R / expected.
    pub mean_ratio: f64,
    pub tolerance: f64,
    /// Samples whose relative error is within the tolerance.
    pub within_tolerance: usize,
    /// Whether every sample is within the tolerance (`None` when the method promises nothing).
    pub passed: Option<bool>,
}

/// Compares each sample's Σ R with `expected`.
pub fn check<T: Float>(
    relevance: &Tensor<T>,
    expected: &[f64],
    tolerance: f64,
    property: &'static str,
) -> Completeness {
    let n = expected.len().max(1);
    let per = relevance.len() / n;
    let sums: Vec<f64> = relevance
        .data()
        .chunks(per.max(1))
        .map(|r| r.iter().map(|v| v.f64()).sum())
        .collect();
    let rel: Vec<f64> = sums
        .iter()
        .zip(expected)
        .map(|(s, e)| (s - e).abs() / e.abs().max(1e-12))
        .collect();
    let within = rel.iter().filter(|&&r| r <= tolerance).count();
    let ratio = sums
        .iter()
        .zip(expected)
        .map(|(s, e)| s / if *e == 0.0 { 1e-12 } else { *e })
        .sum::<f64>()
        / n as f64;
    Completeness {
        property,
        max_relative_error: rel.iter().fold(0.0, |m, &r| m.max(r)),
        passed: (property != "none").then_some(within == rel.len()),
        expected: expected.to_vec(),
        sums,
        relative_error: rel,
        mean_ratio: ratio,
        tolerance,
        within_tolerance: within,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_are_compared_per_sample_with_the_tolerance() {
        let r = Tensor::new(vec![2, 3], vec![0.5f64, 0.25, 0.25, 0.5, 0.3, 0.3]).unwrap();
        let c = check(&r, &[1.0, 1.0], 0.05, "conservation");
        assert_eq!(c.sums, vec![1.0, 1.1]);
        assert_eq!(c.within_tolerance, 1);
        assert_eq!(c.passed, Some(false));
        assert!((c.max_relative_error - 0.1).abs() < 1e-12);
        let none = check(&r, &[1.0, 1.0], 0.05, "none");
        assert_eq!(none.passed, None);
    }
}
