//! UMAP (Prism's own implementation of McInnes et al. 2018, following umap-learn's defaults:
//! fuzzy kNN graph, a/b fitted from `min_dist`/`spread`, SGD with negative sampling), written
//! as the embedding `umap`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::trivial_2d;
use crate::cache::{Key, Seeded};
use crate::config::{KnnConfig, UmapConfig, UmapMetric};
use crate::error::Result;
use crate::family::{EmbeddingFamily, Family, FamilyInput};
use crate::knn::knn;

impl Family for UmapConfig {
    fn name(&self) -> &'static str {
        "umap"
    }

    fn check(&self) -> std::result::Result<(), String> {
        if self.n_neighbors < 2 || !(self.min_dist >= 0.0 && self.spread > 0.0) {
            return Err("umap.n_neighbors must be ≥ 2, umap.min_dist ≥ 0, umap.spread > 0".into());
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

impl EmbeddingFamily for UmapConfig {
    /// On the spectral embedding, as in CoRelAy's pipeline, initialised from its two leading
    /// non-trivial coordinates.
    fn run(&self, input: &FamilyInput<'_>) -> Vec<f32> {
        let p = input.spectral;
        let ed = p.d;
        let init: Vec<f32> = (0..p.n)
            .flat_map(|i| {
                let row = p.row(i);
                let a = if ed >= 2 { row[ed - 2] } else { 0.0 };
                let b = if ed >= 3 { row[ed - 3] } else { 0.0 };
                [a, b]
            })
            .collect();
        umap(p.data, p.n, p.d, &init, self, input.knn, input.seed)
    }
}

/// Fits a, b of the low-dimensional similarity 1 / (1 + a·y^(2b)) to the target curve
/// (1 for y < min_dist, exp(−(y − min_dist)/spread) beyond), by Gauss–Newton on 300 points of
/// [0, 3·spread] as umap-learn's `find_ab_params` does with `curve_fit`.
pub fn fit_ab(min_dist: f64, spread: f64) -> (f64, f64) {
    let xs: Vec<f64> = (0..300).map(|i| 3.0 * spread * i as f64 / 299.0).collect();
    let ys: Vec<f64> = xs
        .iter()
        .map(|&x| {
            if x < min_dist {
                1.0
            } else {
                (-(x - min_dist) / spread).exp()
            }
        })
        .collect();
    let (mut a, mut b) = (1.0f64, 1.0f64);
    let mut lambda = 1e-3;
    let sse = |a: f64, b: f64| -> f64 {
        xs.iter()
            .zip(&ys)
            .map(|(&x, &y)| (1.0 / (1.0 + a * x.powf(2.0 * b)) - y).powi(2))
            .sum()
    };
    let mut cur = sse(a, b);
    for _ in 0..200 {
        // Jacobian of the residuals.
        let (mut jtj, mut jtr) = ([[0f64; 2]; 2], [0f64; 2]);
        for (&x, &y) in xs.iter().zip(&ys) {
            if x <= 0.0 {
                continue;
            }
            let p = x.powf(2.0 * b);
            let f = 1.0 / (1.0 + a * p);
            let r = f - y;
            let da = -p * f * f;
            let db = -a * p * 2.0 * x.ln() * f * f;
            let j = [da, db];
            for u in 0..2 {
                jtr[u] += j[u] * r;
                for v in 0..2 {
                    jtj[u][v] += j[u] * j[v];
                }
            }
        }
        // Levenberg–Marquardt step.
        let m = [
            [jtj[0][0] * (1.0 + lambda), jtj[0][1]],
            [jtj[1][0], jtj[1][1] * (1.0 + lambda)],
        ];
        let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
        if det.abs() < 1e-300 {
            break;
        }
        let step_a = (m[1][1] * jtr[0] - m[0][1] * jtr[1]) / det;
        let step_b = (m[0][0] * jtr[1] - m[1][0] * jtr[0]) / det;
        let (na, nb) = (a - step_a, b - step_b);
        let next = if na > 0.0 && nb > 0.0 {
            sse(na, nb)
        } else {
            f64::INFINITY
        };
        if next < cur {
            let done = (cur - next) < 1e-14;
            a = na;
            b = nb;
            cur = next;
            lambda = (lambda * 0.3).max(1e-12);
            if done {
                break;
            }
        } else {
            lambda *= 10.0;
            if lambda > 1e12 {
                break;
            }
        }
    }
    (a, b)
}

/// UMAP to 2-D; row-major `n × 2`. `init` (n × 2) seeds the layout (Prism passes the two
/// leading non-trivial spectral coordinates, close to umap-learn's spectral initialisation).
/// Its neighbour lists come from [`knn`] under `knn_cfg` (approximate for large N).
pub fn umap(
    x: &[f32],
    n: usize,
    d: usize,
    init: &[f32],
    cfg: &UmapConfig,
    knn_cfg: &KnnConfig,
    seed: u64,
) -> Vec<f32> {
    if n < 4 {
        return trivial_2d(x, n, d);
    }
    // Correlation distance = 1 − cos of centred rows = ‖â − b̂‖²/2 for centred, unit rows.
    let transformed: Vec<f32> = match cfg.metric {
        UmapMetric::Euclidean => x.to_vec(),
        UmapMetric::Correlation => x
            .chunks_exact(d)
            .flat_map(|r| {
                let mean = r.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
                let c: Vec<f64> = r.iter().map(|&v| v as f64 - mean).collect();
                let norm = c.iter().map(|v| v * v).sum::<f64>().sqrt();
                let s = if norm > 0.0 { 1.0 / norm } else { 0.0 };
                c.into_iter().map(move |v| (v * s) as f32)
            })
            .collect(),
    };
    let k = (cfg.n_neighbors - 1).min(n - 1);
    let g = knn(&transformed, n, d, k, knn_cfg, seed);
    let dist = |e: f32| -> f64 {
        match cfg.metric {
            UmapMetric::Euclidean => e as f64,
            UmapMetric::Correlation => (e as f64) * (e as f64) / 2.0,
        }
    };
    // Smooth kNN distances: ρ_i = nearest distance, σ_i from Σ exp(−(d−ρ)/σ) = log2(k + 1).
    let target = ((k + 1) as f64).log2();
    let mut rows: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n];
    for (i, row) in rows.iter_mut().enumerate() {
        let ds: Vec<f64> = g.distances[i * k..(i + 1) * k]
            .iter()
            .map(|&e| dist(e))
            .collect();
        let rho = ds.iter().copied().find(|&v| v > 0.0).unwrap_or(0.0);
        let (mut lo, mut hi, mut sigma) = (0.0f64, f64::INFINITY, 1.0f64);
        for _ in 0..64 {
            let s: f64 = ds
                .iter()
                .map(|&v| (-((v - rho).max(0.0)) / sigma).exp())
                .sum();
            if (s - target).abs() < 1e-5 {
                break;
            }
            if s > target {
                hi = sigma;
                sigma = (lo + hi) / 2.0;
            } else {
                lo = sigma;
                sigma = if hi.is_infinite() {
                    sigma * 2.0
                } else {
                    (lo + hi) / 2.0
                };
            }
        }
        let mean_d = ds.iter().sum::<f64>() / ds.len().max(1) as f64;
        sigma = sigma.max(1e-3 * mean_d).max(1e-12);
        for (s, &v) in ds.iter().enumerate() {
            let j = g.indices[i * k + s] as usize;
            row.push((j, (-((v - rho).max(0.0)) / sigma).exp()));
        }
    }
    // Fuzzy union: w = a + b − a·b over both directions.
    let mut edges: std::collections::BTreeMap<(usize, usize), (f64, f64)> = Default::default();
    for (i, r) in rows.iter().enumerate() {
        for &(j, w) in r {
            let key = (i.min(j), i.max(j));
            let e = edges.entry(key).or_insert((0.0, 0.0));
            if i < j {
                e.0 = w;
            } else {
                e.1 = w;
            }
        }
    }
    let graph: Vec<(usize, usize, f64)> = edges
        .into_iter()
        .map(|((i, j), (a, b))| (i, j, a + b - a * b))
        .collect();
    let n_epochs = if cfg.epochs > 0 {
        cfg.epochs
    } else if n <= 10_000 {
        500
    } else {
        200
    };
    let wmax = graph.iter().map(|e| e.2).fold(0.0, f64::max);
    let graph: Vec<(usize, usize, f64)> = graph
        .into_iter()
        .filter(|e| e.2 >= wmax / n_epochs as f64)
        .collect();
    let (a, b) = fit_ab(cfg.min_dist, cfg.spread);

    // Initial layout: `init` scaled to [0, 10] plus small noise (umap-learn's convention).
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x00ba_5eed);
    let mut y = vec![0f64; n * 2];
    for c in 0..2 {
        let (lo, hi) = (0..n).fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), i| {
            let v = init.get(i * 2 + c).copied().unwrap_or(0.0) as f64;
            (l.min(v), h.max(v))
        });
        let span = if hi > lo { hi - lo } else { 1.0 };
        for i in 0..n {
            let v = init.get(i * 2 + c).copied().unwrap_or(0.0) as f64;
            let noise: f64 = StandardNormal.sample(&mut rng);
            y[i * 2 + c] = 10.0 * (v - lo) / span + 1e-4 * noise;
        }
    }

    let eps_per_sample: Vec<f64> = graph.iter().map(|e| wmax / e.2).collect();
    let neg_rate = cfg.negative_sample_rate as f64;
    let eps_per_neg: Vec<f64> = eps_per_sample.iter().map(|e| e / neg_rate).collect();
    let mut next_sample = eps_per_sample.clone();
    let mut next_neg = eps_per_neg.clone();
    let clip = |v: f64| v.clamp(-4.0, 4.0);
    for epoch in 0..n_epochs {
        let alpha = 1.0 - epoch as f64 / n_epochs as f64;
        let e = epoch as f64;
        for (idx, &(i, j, _)) in graph.iter().enumerate() {
            if next_sample[idx] > e + 1.0 {
                continue;
            }
            // Attraction (both ends move, as umap-learn's `move_other`).
            let (dx, dy) = (y[i * 2] - y[j * 2], y[i * 2 + 1] - y[j * 2 + 1]);
            let d2 = dx * dx + dy * dy;
            if d2 > 0.0 {
                // d2^(b−1) = d2^b / d2: one powf per update.
                let pb = d2.powf(b);
                let coef = -2.0 * a * b * (pb / d2) / (a * pb + 1.0);
                let (gx, gy) = (clip(coef * dx) * alpha, clip(coef * dy) * alpha);
                y[i * 2] += gx;
                y[i * 2 + 1] += gy;
                y[j * 2] -= gx;
                y[j * 2 + 1] -= gy;
            }
            next_sample[idx] += eps_per_sample[idx];
            // Repulsion from random samples.
            let n_neg = ((e + 1.0 - next_neg[idx]) / eps_per_neg[idx]).max(0.0) as usize;
            for _ in 0..n_neg {
                let m = rng.random_range(0..n);
                if m == i {
                    continue;
                }
                let (dx, dy) = (y[i * 2] - y[m * 2], y[i * 2 + 1] - y[m * 2 + 1]);
                let d2 = dx * dx + dy * dy;
                let (gx, gy) = if d2 > 0.0 {
                    let coef = 2.0 * b / ((0.001 + d2) * (a * d2.powf(b) + 1.0));
                    (clip(coef * dx), clip(coef * dy))
                } else {
                    (4.0, 4.0)
                };
                y[i * 2] += gx * alpha;
                y[i * 2 + 1] += gy * alpha;
            }
            next_neg[idx] += n_neg as f64 * eps_per_neg[idx];
        }
    }
    y.into_iter().map(|v| v as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ab_fit_matches_umap_learn_for_default_min_dist() {
        // umap-learn: find_ab_params(1.0, 0.1) = (1.5769, 0.8951)
        let (a, b) = fit_ab(0.1, 1.0);
        assert!((a - 1.577).abs() < 0.01, "a = {a}");
        assert!((b - 0.895).abs() < 0.01, "b = {b}");
    }
}
