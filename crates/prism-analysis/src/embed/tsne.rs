//! t-SNE (Barnes–Hut, the `bhtsne` crate, seeded initialisation), written as the embedding
//! `tsne`.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::trivial_2d;
use crate::cache::{Key, Seeded};
use crate::config::{KnnConfig, TsneConfig};
use crate::error::Result;
use crate::family::{EmbeddingFamily, Family, FamilyInput};
use crate::knn::knn;

impl Family for TsneConfig {
    fn name(&self) -> &'static str {
        "tsne"
    }

    fn check(&self) -> std::result::Result<(), String> {
        if !(self.perplexity > 0.0 && self.theta > 0.0 && self.iterations >= 250) {
            return Err("tsne.perplexity and tsne.theta must be > 0, tsne.iterations ≥ 250".into());
        }
        Ok(())
    }

    fn runs_on(&self, _n: usize, _category: &str) -> bool {
        self.enabled
    }

    fn key(&self, eigen: &Key, seed: u64) -> Result<Key> {
        Key::derive(eigen, self.name(), &Seeded { params: self, seed })
    }
}

impl EmbeddingFamily for TsneConfig {
    /// On the spectral embedding, as in CoRelAy's pipeline.
    fn run(&self, input: &FamilyInput<'_>) -> Vec<f32> {
        let p = input.spectral;
        tsne(p.data, p.n, p.d, self, input.knn, input.seed)
    }
}

/// t-SNE to 2-D; row-major `n × 2`. Perplexity is capped at (N − 1)/3 for small N.
/// Its neighbour lists come from [`knn`] under `knn_cfg` (approximate for large N).
pub fn tsne(
    x: &[f32],
    n: usize,
    d: usize,
    cfg: &TsneConfig,
    knn_cfg: &KnnConfig,
    seed: u64,
) -> Vec<f32> {
    if n < 5 {
        return trivial_2d(x, n, d);
    }
    let perplexity = cfg.perplexity.min((n as f64 - 1.0) / 3.0 - 1.0).max(1.0) as f32;
    let rows: Vec<&[f32]> = x.chunks_exact(d).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x75e_0001);
    // scikit-learn's random init: N(0, 1e-4²).
    let init: Vec<f32> = (0..n * 2)
        .map(|_| {
            let z: f64 = StandardNormal.sample(&mut rng);
            (1e-4 * z) as f32
        })
        .collect::<Vec<f32>>();
    // Neighbours (3·perplexity, as bhtsne's own search) from Prism's deterministic kNN:
    // bhtsne's vantage-point tree picks vantage points from an unseeded RNG.
    let k = ((3.0 * perplexity) as usize).clamp(1, n - 1);
    let g = knn(x, n, d, k, knn_cfg, seed);
    let neighbours: Vec<Vec<bhtsne::Neighbor<f32>>> = (0..n)
        .map(|i| {
            (0..g.k)
                .map(|s| bhtsne::Neighbor {
                    index: g.indices[i * g.k + s] as usize,
                    distance: g.distances[i * g.k + s],
                })
                .collect()
        })
        .collect();
    let fit = || {
        let mut t: bhtsne::tSNE<f32, &[f32]> = bhtsne::tSNE::new(&rows);
        t.perplexity(perplexity)
            .epochs(cfg.iterations)
            .early_exaggeration(cfg.early_exaggeration as f32)
            .initial_embedding(init.clone());
        t.barnes_hut_with_neighbors(cfg.theta as f32, &neighbours);
        t.embedding()
    };
    // bhtsne parallelises with rayon and its parallel sums make results run-dependent; a
    // one-thread pool makes them reproducible (categories still run in parallel).
    let e = match rayon::ThreadPoolBuilder::new().num_threads(1).build() {
        Ok(pool) => pool.install(fit),
        Err(_) => fit(),
    };
    if e.len() == n * 2 && e.iter().all(|v| v.is_finite()) {
        e
    } else {
        trivial_2d(x, n, d)
    }
}
