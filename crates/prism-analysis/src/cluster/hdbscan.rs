//! HDBSCAN as one clustering (`hdbscan`); the algorithm is [`crate::hdbscan`].

use prism_store::{AttrValue, Clustering};

use crate::cache::Key;
use crate::config::{HdbscanConfig, KnnConfig};
use crate::error::Result;
use crate::family::{spectral_attr, ClusteringFamily, Family, FamilyInput};

impl Family for HdbscanConfig {
    fn name(&self) -> &'static str {
        "hdbscan"
    }

    fn check(&self) -> std::result::Result<(), String> {
        if self.min_cluster_size < 2 {
            return Err(super::MIN_SAMPLES_MESSAGE.into());
        }
        Ok(())
    }

    fn runs_on(&self, _n: usize, _category: &str) -> bool {
        self.enabled
    }

    /// The neighbour lists follow `knn` and the seed, both already in the eigen key.
    fn key(&self, eigen: &Key, _seed: u64) -> Result<Key> {
        Key::derive(eigen, self.name(), self)
    }
}

impl ClusteringFamily for HdbscanConfig {
    fn run(&self, input: &FamilyInput<'_>) -> Vec<Clustering> {
        let p = input.spectral;
        let labels = hdbscan(
            p.data,
            p.n,
            p.d,
            self.min_cluster_size,
            input.knn,
            input.seed,
        );
        vec![Clustering {
            name: "hdbscan".into(),
            labels,
            attrs: vec![
                spectral_attr(),
                (
                    "min_cluster_size".into(),
                    AttrValue::Int(self.min_cluster_size as i64),
                ),
            ],
        }]
    }
}

/// HDBSCAN with Python `hdbscan`'s defaults (`min_samples` = `min_cluster_size`, excess of
/// mass); see [`crate::hdbscan`]. The core distances come from `min_cluster_size`-neighbour
/// lists by [`crate::knn::knn`] under `knn_cfg`: exact, or approximate for large N. Too
/// few samples, or non-finite values, give all noise.
pub fn hdbscan(
    x: &[f32],
    n: usize,
    d: usize,
    min_cluster_size: usize,
    knn_cfg: &KnnConfig,
    seed: u64,
) -> Vec<i32> {
    if n <= min_cluster_size || min_cluster_size < 2 {
        return vec![-1; n];
    }
    // Only the core distance (the `min_cluster_size`-th neighbour) is taken from the lists.
    let k = min_cluster_size.min(n - 1);
    let g = crate::knn::knn(x, n, d, k, knn_cfg, seed);
    crate::hdbscan::hdbscan_with_knn(x, n, d, &g, min_cluster_size)
}
