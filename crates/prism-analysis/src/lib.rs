//! Prism's SpRAy pipeline (Spectral Relevance Analysis): from the attributions of each class
//! to clusters of prediction strategies.
//!
//! Per category: preprocess the attributions (CoRelAy's `spectral`, `absspectral`,
//! `fullspectral`, `histogram`, optional down-pooling) → exact kNN graph by blocked matrix
//! products (never an N×N distance matrix) → binary (or RBF) symmetric affinity → symmetric
//! normalised Laplacian → its smallest eigenpairs (dense for moderate N, a sparse subspace
//! solver with residual checks beyond) with an eigengap score and suggested k → k-means,
//! agglomerative (Ward), DBSCAN, HDBSCAN on the spectral embedding → t-SNE and UMAP. Every stage
//! is seeded and deterministic, named, configurable ([`AnalysisConfig`], TOML) and cached by a
//! key over the exact input bytes and every parameter ([`cache`]). Categories run in parallel.
//! The clusterings and embeddings are tables of families ([`family`]): a new method is one
//! file plus a line in the table.
//!
//! It does not read or write files itself beyond the cache (that is `prism-store`), draw
//! progress bars (it reports [`pipeline::Progress`] events) or parse command lines (`prism-cli`).
//! Differences from CoRelAy, each deliberate, are documented where they occur and in
//! `docs/analysis.md`.

pub mod cache;
pub mod cluster;
pub mod config;
pub mod eigen;
pub mod embed;
pub mod error;
pub mod family;
pub mod graph;
pub mod hdbscan;
pub mod knn;
pub mod overrides;
pub mod pipeline;
pub mod preprocess;

pub use cache::Cache;
pub use config::AnalysisConfig;
pub use error::{AnalysisError, Result};
pub use family::{ClusteringFamily, EmbeddingFamily, Family, FamilyInput, Points};
pub use overrides::ConfigOverrides;
pub use pipeline::{
    analyze_features, analyze_file, category_names, CategoryFeatures, CategoryReport, NoProgress,
    Progress, RunOptions, StageKeys,
};
