//! Clusterings of the spectral embedding, one file per family: [`kmeans`](mod@kmeans),
//! [`agglomerative`](mod@agglomerative) (Ward), [`dbscan`](mod@dbscan),
//! [`hdbscan`](mod@hdbscan). Each file holds the algorithm and its
//! [`ClusteringFamily`](crate::family::ClusteringFamily) entry; the table that lists them is
//! [`AnalysisConfig::clusterings`](crate::AnalysisConfig::clusterings).
//!
//! Labels are renumbered by first appearance (0 for the cluster of the first non-noise
//! sample, …), so equal partitions give equal arrays; noise is −1. When k ≥ N every sample
//! is its own cluster (CoRelAy/scikit-learn raise instead; ViRelAy needs every category to
//! have every clustering name).

use std::borrow::Cow;

use crate::config::SpectralColumns;
use crate::family::Points;

pub mod agglomerative;
pub mod dbscan;
pub mod hdbscan;
pub mod kmeans;

pub use agglomerative::agglomerative_ward;
pub use dbscan::{dbscan, dbscan_multi};
pub use hdbscan::hdbscan;
pub use kmeans::kmeans;

/// Renumbers labels by first appearance, keeping −1 (noise).
pub fn canonical_labels(labels: &[i32]) -> Vec<i32> {
    let mut map = std::collections::HashMap::new();
    labels
        .iter()
        .map(|&l| {
            if l < 0 {
                -1
            } else {
                let next = map.len() as i32;
                *map.entry(l).or_insert(next)
            }
        })
        .collect()
}

/// ‖a − b‖² in f64: the k-nearest-neighbour stage's vectorised kernel.
fn sq_dist(a: &[f32], b: &[f32]) -> f64 {
    crate::knn::sq_dist_f64(a, b)
}

/// Number of clusters (noise excluded).
pub fn n_clusters(labels: &[i32]) -> usize {
    labels
        .iter()
        .copied()
        .filter(|&l| l >= 0)
        .max()
        .map_or(0, |m| m as usize + 1)
}

/// The spectral coordinates a k-cluster clustering runs on: all columns, or the k leading
/// ones (the last k in ViRelAy's layout) with rows re-normalised. Returns the rows and their
/// length.
pub fn columns_for(
    spectral: Points<'_>,
    k: usize,
    which: SpectralColumns,
) -> (Cow<'_, [f32]>, usize) {
    let Points { data: e, n, d } = spectral;
    if which == SpectralColumns::All || k >= d {
        return (Cow::Borrowed(e), d);
    }
    let mut out = Vec::with_capacity(n * k);
    for i in 0..n {
        let row = &e[i * d + d - k..(i + 1) * d];
        let norm = row
            .iter()
            .map(|&v| (v as f64) * (v as f64))
            .sum::<f64>()
            .sqrt();
        let s = if norm > 0.0 { 1.0 / norm } else { 0.0 };
        out.extend(row.iter().map(|&v| (v as f64 * s) as f32));
    }
    (Cow::Owned(out), k)
}

/// The range check shared by the k-cluster families.
fn check_k_range(section: &str, k_min: usize, k_max: usize) -> Result<(), String> {
    if k_min < 1 || k_max < k_min {
        return Err(format!(
            "{section}.k_min..k_max must satisfy 1 ≤ k_min ≤ k_max"
        ));
    }
    Ok(())
}

/// DBSCAN's and HDBSCAN's minimum sizes share one message (one line of the configuration
/// guide covers both).
const MIN_SAMPLES_MESSAGE: &str = "dbscan.min_samples must be ≥ 1 and hdbscan.min_cluster_size ≥ 2";

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use crate::config::KnnConfig;

    fn blobs() -> (Vec<f32>, usize, Vec<i32>) {
        let mut x = Vec::new();
        let mut truth = Vec::new();
        let centres = [[0.0f32, 0.0], [10.0, 0.0], [0.0, 10.0]];
        for i in 0..60 {
            let c = i % 3;
            let jitter = ((i * 37 % 17) as f32 / 17.0 - 0.5) * 0.5;
            let jitter2 = ((i * 53 % 19) as f32 / 19.0 - 0.5) * 0.5;
            x.push(centres[c][0] + jitter);
            x.push(centres[c][1] + jitter2);
            truth.push(c as i32);
        }
        (x, 60, canonical_labels(&truth))
    }

    #[test]
    fn kmeans_recovers_separated_blobs() {
        let (x, n, truth) = blobs();
        assert_eq!(kmeans(&x, n, 2, 3, 4, 100, 0), truth);
    }

    #[test]
    fn ward_cut_recovers_separated_blobs() {
        let (x, n, truth) = blobs();
        let cuts = agglomerative_ward(&x, n, 2, &[3, 2]);
        assert_eq!(cuts[0], truth);
        assert_eq!(n_clusters(&cuts[1]), 2);
    }

    #[test]
    fn dbscan_finds_blobs_and_marks_outliers_as_noise() {
        let (mut x, n, truth) = blobs();
        x.extend_from_slice(&[50.0, 50.0]);
        let labels = dbscan(&x, n + 1, 2, 1.0, 3);
        assert_eq!(&labels[..n], truth.as_slice());
        assert_eq!(labels[n], -1);
    }

    #[test]
    fn parallel_hdbscan_is_deterministic_and_finds_blobs() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (n, d) = (2400, 4);
        let mut x = Vec::with_capacity(n * d);
        for i in 0..n {
            for c in 0..d {
                let centre = if c == i % 3 { 5.0 } else { 0.0 };
                x.push(centre + rng.random::<f32>() * 0.5);
            }
        }
        let cfg = KnnConfig::default();
        let a = hdbscan(&x, n, d, 5, &cfg, 0);
        let b = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap()
            .install(|| hdbscan(&x, n, d, 5, &cfg, 0));
        assert_eq!(a, b);
        assert_eq!(n_clusters(&a), 3);
    }

    #[test]
    fn more_clusters_than_samples_gives_singletons() {
        let x = [0.0f32, 1.0];
        assert_eq!(kmeans(&x, 2, 1, 5, 1, 10, 0), vec![0, 1]);
    }
}
