//! Single parameters set on top of a configuration: `prism analyze`'s flags and the Python
//! package's keyword arguments, one struct for both so they override the same fields the same
//! way.

use crate::config::{AffinityKind, AnalysisConfig, EigenSolver, KnnMethod, UmapMetric, Variant};
use crate::error::Result;

/// Overrides of an [`AnalysisConfig`]: each `Some` replaces the field it names, each `no_*`
/// turns its family off. Field names are the CLI's flags in snake case.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigOverrides {
    /// `preprocess.variant`.
    pub variant: Option<Variant>,
    /// `preprocess.pool`.
    pub pool: Option<usize>,
    /// `knn.k`.
    pub neighbors: Option<usize>,
    /// `knn.method`.
    pub knn: Option<KnnMethod>,
    /// `knn.nprobe`.
    pub knn_nprobe: Option<usize>,
    /// RBF affinity with this σ (`affinity.kind = rbf`, `affinity.sigma`).
    pub rbf_sigma: Option<f64>,
    /// `eigen.n_eigval`.
    pub eigenvalues: Option<usize>,
    /// `eigen.solver`.
    pub eigen_solver: Option<EigenSolver>,
    /// `[k_min, k_max]` of k-means and agglomerative clustering.
    pub k_range: Option<[usize; 2]>,
    /// `dbscan.eps`.
    pub dbscan_eps: Option<Vec<f64>>,
    /// `hdbscan.min_cluster_size`.
    pub hdbscan_min_cluster_size: Option<usize>,
    /// `tsne.perplexity`.
    pub perplexity: Option<f64>,
    /// `umap.n_neighbors`.
    pub umap_neighbors: Option<usize>,
    /// `umap.metric`.
    pub umap_metric: Option<UmapMetric>,
    /// `seed`.
    pub seed: Option<u64>,
    pub no_kmeans: bool,
    pub no_agglomerative: bool,
    pub no_dbscan: bool,
    pub no_hdbscan: bool,
    pub no_tsne: bool,
    pub no_umap: bool,
}

impl ConfigOverrides {
    /// Writes the overrides into `cfg` and validates the result.
    pub fn apply(&self, cfg: &mut AnalysisConfig) -> Result<()> {
        if let Some(v) = self.variant {
            cfg.preprocess.variant = v;
        }
        if let Some(p) = self.pool {
            cfg.preprocess.pool = p;
        }
        if let Some(k) = self.neighbors {
            cfg.knn.k = k;
        }
        if let Some(m) = self.knn {
            cfg.knn.method = m;
        }
        if let Some(p) = self.knn_nprobe {
            cfg.knn.nprobe = p;
        }
        if let Some(s) = self.rbf_sigma {
            cfg.affinity.kind = AffinityKind::Rbf;
            cfg.affinity.sigma = s;
        }
        if let Some(e) = self.eigenvalues {
            cfg.eigen.n_eigval = e;
        }
        if let Some(s) = self.eigen_solver {
            cfg.eigen.solver = s;
        }
        if let Some([lo, hi]) = self.k_range {
            cfg.kmeans.k_min = lo;
            cfg.kmeans.k_max = hi;
            cfg.agglomerative.k_min = lo;
            cfg.agglomerative.k_max = hi;
        }
        if let Some(eps) = &self.dbscan_eps {
            cfg.dbscan.eps = eps.clone();
        }
        if let Some(m) = self.hdbscan_min_cluster_size {
            cfg.hdbscan.min_cluster_size = m;
        }
        if let Some(p) = self.perplexity {
            cfg.tsne.perplexity = p;
        }
        if let Some(k) = self.umap_neighbors {
            cfg.umap.n_neighbors = k;
        }
        if let Some(m) = self.umap_metric {
            cfg.umap.metric = m;
        }
        if let Some(s) = self.seed {
            cfg.seed = s;
        }
        cfg.kmeans.enabled &= !self.no_kmeans;
        cfg.agglomerative.enabled &= !self.no_agglomerative;
        cfg.dbscan.enabled &= !self.no_dbscan;
        cfg.hdbscan.enabled &= !self.no_hdbscan;
        cfg.tsne.enabled &= !self.no_tsne;
        cfg.umap.enabled &= !self.no_umap;
        cfg.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_only_the_fields_they_name() {
        let mut cfg = AnalysisConfig::default();
        ConfigOverrides::default().apply(&mut cfg).unwrap();
        assert_eq!(cfg, AnalysisConfig::default());
        ConfigOverrides {
            k_range: Some([3, 5]),
            rbf_sigma: Some(2.0),
            no_umap: true,
            ..Default::default()
        }
        .apply(&mut cfg)
        .unwrap();
        assert_eq!((cfg.kmeans.k_min, cfg.agglomerative.k_max), (3, 5));
        assert_eq!(cfg.affinity.kind, AffinityKind::Rbf);
        assert!(!cfg.umap.enabled && cfg.tsne.enabled);
    }

    #[test]
    fn overrides_are_validated() {
        let bad = ConfigOverrides {
            neighbors: Some(0),
            ..Default::default()
        };
        assert!(bad.apply(&mut AnalysisConfig::default()).is_err());
    }
}
