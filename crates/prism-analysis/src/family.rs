//! The analysis's extension point: the clusterings and 2-D embeddings that run on a category's
//! spectral embedding, as two tables of *families* the pipeline loops over.
//!
//! A family is one method with its whole range of settings (k-means for k = 2..30 is one
//! family writing 29 clusterings). Each entry knows
//!
//! * its **name**: the TOML section of its parameters, its cache stage, its progress label and
//!   the name (or name prefix) of what it writes to the analysis file;
//! * its **parameters**, range-checked by [`Family::check`] when the configuration is validated;
//! * its **cache key**, derived from the eigen stage's key ([`Family::key`]);
//! * its **run** function, called only on a cache miss.
//!
//! The tables are [`AnalysisConfig::clusterings`] and [`AnalysisConfig::embeddings`]: each
//! entry *is* the family's parameter section (`KMeansConfig` implements [`ClusteringFamily`]),
//! so the table line sits next to the config field it reads, and a family cannot run with
//! another family's parameters. Trait objects rather than an enum: a new method is one file
//! with its `impl` (the compiler then demands every item: name, check, key, run), its section
//! and table line in `config.rs` and its `pub mod` line; an enum would need a new arm in every
//! `match` across the crate, and the pipeline would name every method. The walkthrough is in
//! `docs/analysis.md` ("Adding a clustering method").
//!
//! Order matters twice: families write their results in table order (the analysis file's
//! dataset order), and the cache key of each is independent of the others, so adding a family
//! leaves every existing key, and so every existing cache, valid.

use prism_store::{AttrValue, Clustering};

use crate::cache::Key;
use crate::config::{AnalysisConfig, KnnConfig};
use crate::error::Result;

/// A row-major `n × d` matrix of points, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct Points<'a> {
    pub data: &'a [f32],
    pub n: usize,
    pub d: usize,
}

impl<'a> Points<'a> {
    /// A view of `data` as `n` rows of `d` values; `None` unless `data.len() == n·d`.
    pub fn new(data: &'a [f32], n: usize, d: usize) -> Option<Self> {
        (n.checked_mul(d) == Some(data.len())).then_some(Points { data, n, d })
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &'a [f32] {
        &self.data[i * self.d..(i + 1) * self.d]
    }
}

/// What a family runs on: one category's spectral embedding and the settings it shares.
#[derive(Debug, Clone, Copy)]
pub struct FamilyInput<'a> {
    /// The category's name (for warnings).
    pub category: &'a str,
    /// The spectral embedding in ViRelAy's layout: `n_eigval` columns, the eigenvector of the
    /// largest eigenvalue of the normalised adjacency (the trivial one) last.
    pub spectral: Points<'a>,
    /// How neighbour lists are computed (t-SNE, UMAP and HDBSCAN build their own).
    pub knn: &'a KnnConfig,
    /// Seed of every random choice.
    pub seed: u64,
}

/// What every family has: a name, checked parameters, a cache key, and a rule for skipping.
pub trait Family: Sync {
    /// The family's name: its TOML section, cache stage and progress label.
    fn name(&self) -> &'static str;

    /// Checks the parameters' ranges; the message names the parameter and its valid range.
    fn check(&self) -> std::result::Result<(), String>;

    /// Whether the family runs on a category of `n` samples. `false` writes nothing for it
    /// (a disabled family, or one that cannot afford this `n`: say why with a warning).
    fn runs_on(&self, n: usize, category: &str) -> bool;

    /// The cache key of the family's results, from the eigen stage's key: every parameter
    /// that changes the output must be in it, the seed only if the family draws random numbers.
    fn key(&self, eigen: &Key, seed: u64) -> Result<Key>;
}

/// A clustering family: any number of named clusterings of the spectral embedding.
pub trait ClusteringFamily: Family {
    /// The clusterings, in the order they are written. Names start with [`Family::name`]
    /// (`kmeans-02`, `dbscan-eps=0.2`, `hdbscan`); labels are renumbered by first appearance
    /// ([`crate::cluster::canonical_labels`]), −1 for noise. Must be deterministic for a given
    /// input and seed (the cache and the tests assume it).
    fn run(&self, input: &FamilyInput<'_>) -> Vec<Clustering>;
}

/// A 2-D embedding family, written as the embedding named [`Family::name`].
pub trait EmbeddingFamily: Family {
    /// Row-major `n × 2` coordinates; deterministic for a given input and seed.
    fn run(&self, input: &FamilyInput<'_>) -> Vec<f32>;
}

/// The attribute every family's result carries: the embedding it ran on (ViRelAy reads it).
pub fn spectral_attr() -> (String, AttrValue) {
    ("embedding".to_string(), AttrValue::Str("spectral".into()))
}

impl AnalysisConfig {
    /// Every family's name, clusterings first, in table order.
    pub fn family_names(&self) -> Vec<&'static str> {
        let clusterings = self.clusterings().into_iter().map(|f| f.name());
        let embeddings = self.embeddings().into_iter().map(|f| f.name());
        clusterings.chain(embeddings).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The configuration sections that are stages before the families, not families.
    const UPSTREAM_SECTIONS: [&str; 4] = ["preprocess", "knn", "affinity", "eigen"];

    #[test]
    fn family_names_are_unique_and_every_method_section_names_one_family() {
        let cfg = AnalysisConfig::default();
        let names = cfg.family_names();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            names.len(),
            "duplicate family name in {names:?}"
        );
        // Every section of the configuration file after the upstream stages resolves to
        // exactly one family, and every family has its section.
        let toml: toml::Table = toml::from_str(&cfg.to_toml().unwrap()).unwrap();
        let sections: Vec<&str> = toml
            .iter()
            .filter(|(_, v)| v.is_table())
            .map(|(k, _)| k.as_str())
            .filter(|k| !UPSTREAM_SECTIONS.contains(k))
            .collect();
        for section in &sections {
            let hits = names.iter().filter(|n| *n == section).count();
            assert_eq!(hits, 1, "section `{section}` resolves to {hits} families");
        }
        for name in &names {
            assert!(sections.contains(name), "family `{name}` has no section");
        }
    }

    #[test]
    fn every_family_key_depends_on_its_own_name_and_the_eigen_key() {
        let cfg = AnalysisConfig::default();
        let (a, b) = (Key([1; 32]), Key([2; 32]));
        let keys: Vec<Key> = cfg
            .clusterings()
            .into_iter()
            .map(|f| f.key(&a, 0).unwrap())
            .chain(cfg.embeddings().into_iter().map(|f| f.key(&a, 0).unwrap()))
            .collect();
        let mut unique = keys.iter().map(|k| k.0).collect::<Vec<_>>();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), keys.len());
        for f in cfg.clusterings() {
            assert_ne!(f.key(&a, 0).unwrap(), f.key(&b, 0).unwrap(), "{}", f.name());
        }
        for f in cfg.embeddings() {
            assert_ne!(f.key(&a, 0).unwrap(), f.key(&b, 0).unwrap(), "{}", f.name());
        }
    }

    #[test]
    fn points_view_checks_its_shape() {
        let data = [0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0];
        let p = Points::new(&data, 3, 2).unwrap();
        assert_eq!(p.row(1), &[2.0, 3.0]);
        assert!(Points::new(&data, 4, 2).is_none());
    }
}
