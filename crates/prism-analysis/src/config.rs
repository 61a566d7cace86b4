//! Parameters of every stage, with CoRelAy's defaults (its `virelay_analysis.py` / ViRelAy's
//! `meta_analysis.py`) unless noted. Loadable from TOML; every field has a default.
//!
//! The sections after `eigen` are the parameters of the clustering and embedding families;
//! each section's type is its family's entry in [`AnalysisConfig::clusterings`] or
//! [`AnalysisConfig::embeddings`] and checks its own ranges ([`crate::family::Family::check`]).

use serde::{Deserialize, Serialize};

use crate::error::{AnalysisError, Result};
use crate::family::{ClusteringFamily, EmbeddingFamily};

/// The whole analysis configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalysisConfig {
    pub preprocess: PreprocessConfig,
    pub knn: KnnConfig,
    pub affinity: AffinityConfig,
    pub eigen: EigenConfig,
    pub kmeans: KMeansConfig,
    pub agglomerative: AgglomerativeConfig,
    pub dbscan: DbscanConfig,
    pub hdbscan: HdbscanConfig,
    pub tsne: TsneConfig,
    pub umap: UmapConfig,
    /// Seed of every random choice (k-means++, t-SNE and UMAP initialisation, eigensolver start).
    pub seed: u64,
}

impl AnalysisConfig {
    /// Parses a TOML configuration (missing fields take their defaults).
    pub fn from_toml(text: &str) -> Result<Self> {
        let cfg: AnalysisConfig = toml::from_str(text).map_err(|e| AnalysisError::Config {
            message: format!("invalid configuration: {e}"),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads a TOML configuration file (missing fields take their defaults).
    pub fn read(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| AnalysisError::ConfigFile {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text).map_err(|e| match e {
            AnalysisError::Config { message } => AnalysisError::Config {
                message: format!("in configuration `{}`: {message}", path.display()),
            },
            e => e,
        })
    }

    /// The configuration as TOML (e.g. to start a config file from the defaults).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|source| AnalysisError::ConfigEncoding { source })
    }

    /// Checks every parameter's range; the error names the parameter and its valid range.
    pub fn validate(&self) -> Result<()> {
        let bad = |message: String| Err(AnalysisError::Config { message });
        if self.preprocess.pool == 0 {
            return bad("preprocess.pool must be ≥ 1 (1 = no pooling)".into());
        }
        if self.preprocess.histogram_bins == 0 {
            return bad("preprocess.histogram_bins must be ≥ 1".into());
        }
        if self.knn.k == 0 {
            return bad("knn.k must be ≥ 1".into());
        }
        if self.knn.nprobe == 0 {
            return bad("knn.nprobe must be ≥ 1".into());
        }
        if let AffinityKind::Rbf = self.affinity.kind {
            if self.affinity.sigma.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
                return bad("affinity.sigma must be > 0".into());
            }
        }
        if self.eigen.n_eigval < 2 {
            return bad("eigen.n_eigval must be ≥ 2".into());
        }
        if !(self.eigen.tolerance > 0.0 && self.eigen.tolerance < 1e-2) {
            return bad("eigen.tolerance must be in (0, 0.01)".into());
        }
        for check in self
            .clusterings()
            .into_iter()
            .map(|f| f.check())
            .chain(self.embeddings().into_iter().map(|f| f.check()))
        {
            check.map_err(|message| AnalysisError::Config { message })?;
        }
        Ok(())
    }
}

impl AnalysisConfig {
    /// The clustering families, in the order their clusterings are written: the extension
    /// point of [`crate::family`]. A new family is a field above and a line here.
    pub fn clusterings(&self) -> Vec<&dyn ClusteringFamily> {
        vec![
            &self.kmeans,
            &self.agglomerative,
            &self.dbscan,
            &self.hdbscan,
        ]
    }

    /// The 2-D embedding families, in the order they are written after `spectral`.
    pub fn embeddings(&self) -> Vec<&dyn EmbeddingFamily> {
        vec![&self.tsne, &self.umap]
    }
}

/// How attributions become feature vectors (CoRelAy's `VARIANTS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// Sum over channels, divide by the sum over H×W, flatten (CoRelAy's default).
    Spectral,
    /// Like `spectral` on |R|.
    Absspectral,
    /// Divide by the sum over C×H×W, flatten.
    Fullspectral,
    /// Divide by the sum over C×H×W, then a per-channel density histogram.
    Histogram,
}

impl std::str::FromStr for Variant {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "spectral" => Ok(Variant::Spectral),
            "absspectral" => Ok(Variant::Absspectral),
            "fullspectral" => Ok(Variant::Fullspectral),
            "histogram" => Ok(Variant::Histogram),
            _ => Err(format!(
                "unknown variant `{s}` (spectral, absspectral, fullspectral, histogram)"
            )),
        }
    }
}

impl Variant {
    /// The variant's name as CoRelAy's script and the CLI spell it.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Spectral => "spectral",
            Variant::Absspectral => "absspectral",
            Variant::Fullspectral => "fullspectral",
            Variant::Histogram => "histogram",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PreprocessConfig {
    pub variant: Variant,
    /// Spatial sum-pooling window (p×p) applied first; 1 = none. Prism's addition: it shrinks
    /// 224×224 attributions 4× per step at little loss for clustering.
    pub pool: usize,
    /// Bins of the `histogram` variant (CoRelAy: 32).
    pub histogram_bins: usize,
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        PreprocessConfig {
            variant: Variant::Spectral,
            pool: 1,
            histogram_bins: 32,
        }
    }
}

/// How the kNN graphs (the affinity graph's, and those of t-SNE and UMAP) are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KnnMethod {
    /// Exact up to `approximate_above` samples, approximate beyond.
    Auto,
    /// Exact (blocked GEMM over all pairs, O(N²·d)).
    Exact,
    /// Inverted-file index (seeded k-means cells, `nprobe` cells searched exactly per query).
    Approximate,
}

impl std::str::FromStr for KnnMethod {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(KnnMethod::Auto),
            "exact" => Ok(KnnMethod::Exact),
            "approximate" => Ok(KnnMethod::Approximate),
            _ => Err(format!(
                "unknown kNN method `{s}` (auto, exact, approximate)"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KnnConfig {
    /// Neighbours per sample (CoRelAy's script: 32); capped at N−1.
    pub k: usize,
    /// `auto`, `exact` or `approximate`.
    pub method: KnnMethod,
    /// Under `auto`, the largest N computed exactly.
    pub approximate_above: usize,
    /// Cells of the approximate index; 0 = round(√N).
    pub lists: usize,
    /// Cells searched per query by the approximate index (more: higher recall, slower).
    pub nprobe: usize,
}

impl Default for KnnConfig {
    fn default() -> Self {
        KnnConfig {
            k: 32,
            method: KnnMethod::Auto,
            approximate_above: 20_000,
            lists: 0,
            nprobe: 16,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AffinityKind {
    /// Weight 1 per kNN edge, then (A + Aᵀ)/2 (CoRelAy's `SparseKNN`).
    Binary,
    /// Weight exp(−d²/2σ²) per kNN edge, then (A + Aᵀ)/2.
    Rbf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AffinityConfig {
    pub kind: AffinityKind,
    /// σ of the RBF weights (CoRelAy: 1.0).
    pub sigma: f64,
}

impl Default for AffinityConfig {
    fn default() -> Self {
        AffinityConfig {
            kind: AffinityKind::Binary,
            sigma: 1.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EigenSolver {
    /// Dense for N ≤ `dense_max_n`, sparse above.
    Auto,
    /// Dense symmetric eigendecomposition (exact; O(N²) memory, O(N³) time).
    Dense,
    /// Chebyshev-filtered subspace iteration on the sparse matrix, with residual checks.
    Sparse,
}

impl std::str::FromStr for EigenSolver {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(EigenSolver::Auto),
            "dense" => Ok(EigenSolver::Dense),
            "sparse" => Ok(EigenSolver::Sparse),
            _ => Err(format!("unknown solver `{s}` (auto, dense, sparse)")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EigenConfig {
    /// Eigenpairs to keep (CoRelAy: 32); a class with fewer samples keeps N.
    pub n_eigval: usize,
    pub solver: EigenSolver,
    /// Largest N for the dense solver under `auto`.
    pub dense_max_n: usize,
    /// Residual bound ‖Mv − λv‖ of the sparse solver.
    pub tolerance: f64,
    /// Iteration cap of the sparse solver.
    pub max_iterations: usize,
    /// Largest k the eigengap may suggest.
    pub max_suggested_k: usize,
}

impl Default for EigenConfig {
    fn default() -> Self {
        EigenConfig {
            n_eigval: 32,
            solver: EigenSolver::Auto,
            dense_max_n: 1000,
            tolerance: 1e-6,
            max_iterations: 500,
            max_suggested_k: 30,
        }
    }
}

/// Which spectral coordinates a k-cluster clustering sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpectralColumns {
    /// The k eigenvectors of the k smallest Laplacian eigenvalues, rows re-normalised (Ng,
    /// Jordan & Weiss 2001, the textbook spectral clustering; Prism's default).
    Leading,
    /// All n_eigval columns for every k (CoRelAy's script). Higher eigenvectors, which carry
    /// within-cluster variation, then dominate the distances and can split true clusters.
    All,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KMeansConfig {
    pub enabled: bool,
    pub columns: SpectralColumns,
    pub k_min: usize,
    pub k_max: usize,
    /// Restarts (best inertia wins). scikit-learn ≥ 1.4 uses 1 with k-means++; Prism uses 10
    /// because it is cheap here and makes results far less dependent on the seed.
    pub n_init: usize,
    pub max_iter: usize,
}

impl Default for KMeansConfig {
    fn default() -> Self {
        KMeansConfig {
            enabled: true,
            columns: SpectralColumns::Leading,
            k_min: 2,
            k_max: 30,
            n_init: 10,
            max_iter: 300,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgglomerativeConfig {
    pub enabled: bool,
    pub columns: SpectralColumns,
    pub k_min: usize,
    pub k_max: usize,
    /// Ward linkage needs N(N−1)/2 distances; above this N it is skipped with a warning.
    pub max_n: usize,
}

impl Default for AgglomerativeConfig {
    fn default() -> Self {
        AgglomerativeConfig {
            enabled: true,
            columns: SpectralColumns::Leading,
            k_min: 2,
            k_max: 30,
            max_n: 20_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DbscanConfig {
    pub enabled: bool,
    /// Radii; CoRelAy's script runs eps = k/10 for k = 2..30.
    pub eps: Vec<f64>,
    pub min_samples: usize,
}

impl Default for DbscanConfig {
    fn default() -> Self {
        DbscanConfig {
            enabled: true,
            eps: (2..=30).map(|k| k as f64 / 10.0).collect(),
            min_samples: 5,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HdbscanConfig {
    pub enabled: bool,
    /// CoRelAy's `HDBSCAN(n_clusters=5)` passes 5 as `min_cluster_size`.
    pub min_cluster_size: usize,
}

impl Default for HdbscanConfig {
    fn default() -> Self {
        HdbscanConfig {
            enabled: true,
            min_cluster_size: 5,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TsneConfig {
    pub enabled: bool,
    pub perplexity: f64,
    pub early_exaggeration: f64,
    pub iterations: usize,
    /// Barnes-Hut accuracy (scikit-learn: 0.5).
    pub theta: f64,
}

impl Default for TsneConfig {
    fn default() -> Self {
        TsneConfig {
            enabled: true,
            perplexity: 30.0,
            early_exaggeration: 12.0,
            iterations: 1000,
            theta: 0.5,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UmapMetric {
    /// 1 − Pearson correlation (CoRelAy's default).
    Correlation,
    Euclidean,
}

impl std::str::FromStr for UmapMetric {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "correlation" => Ok(UmapMetric::Correlation),
            "euclidean" => Ok(UmapMetric::Euclidean),
            _ => Err(format!("unknown metric `{s}` (correlation, euclidean)")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UmapConfig {
    pub enabled: bool,
    pub n_neighbors: usize,
    pub min_dist: f64,
    pub spread: f64,
    pub metric: UmapMetric,
    /// Optimisation epochs; 0 = umap-learn's rule (500 for N ≤ 10 000, else 200).
    pub epochs: usize,
    pub negative_sample_rate: usize,
}

impl Default for UmapConfig {
    fn default() -> Self {
        UmapConfig {
            enabled: true,
            n_neighbors: 15,
            min_dist: 0.1,
            spread: 1.0,
            metric: UmapMetric::Correlation,
            epochs: 0,
            negative_sample_rate: 5,
        }
    }
}
