//! k-means on the spectral embedding, one clustering per k in `k_min..=k_max`
//! (`kmeans-02`, …): k-means++ seeding (scikit-learn's greedy variant), Lloyd iterations,
//! `n_init` restarts with the lowest inertia kept.

use prism_store::{AttrValue, Clustering};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::{canonical_labels, check_k_range, columns_for, sq_dist};
use crate::cache::{Key, Seeded};
use crate::config::KMeansConfig;
use crate::error::Result;
use crate::family::{spectral_attr, ClusteringFamily, Family, FamilyInput};

impl Family for KMeansConfig {
    fn name(&self) -> &'static str {
        "kmeans"
    }

    fn check(&self) -> std::result::Result<(), String> {
        check_k_range(self.name(), self.k_min, self.k_max)?;
        if self.n_init == 0 || self.max_iter == 0 {
            return Err("kmeans.n_init and kmeans.max_iter must be ≥ 1".into());
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

impl ClusteringFamily for KMeansConfig {
    fn run(&self, input: &FamilyInput<'_>) -> Vec<Clustering> {
        let ks: Vec<usize> = (self.k_min..=self.k_max).collect();
        ks.par_iter()
            .map(|&k| {
                let (x, xd) = columns_for(input.spectral, k, self.columns);
                let labels = kmeans(
                    &x,
                    input.spectral.n,
                    xd,
                    k,
                    self.n_init,
                    self.max_iter,
                    input.seed,
                );
                Clustering {
                    name: format!("kmeans-{k:02}"),
                    labels,
                    attrs: vec![spectral_attr(), ("k".into(), AttrValue::Int(k as i64))],
                }
            })
            .collect()
    }
}

/// k-means (k-means++ seeding as in scikit-learn, Lloyd iterations, `n_init` restarts with
/// the lowest inertia kept). Deterministic for a given seed.
pub fn kmeans(
    x: &[f32],
    n: usize,
    d: usize,
    k: usize,
    n_init: usize,
    max_iter: usize,
    seed: u64,
) -> Vec<i32> {
    if k >= n {
        return (0..n as i32).collect();
    }
    let mut best: Option<(f64, Vec<i32>)> = None;
    for run in 0..n_init {
        let mut rng =
            ChaCha8Rng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(run as u64));
        let (inertia, labels) = kmeans_once(x, n, d, k, max_iter, &mut rng);
        if best.as_ref().is_none_or(|(b, _)| inertia < *b) {
            best = Some((inertia, labels));
        }
    }
    canonical_labels(&best.map(|b| b.1).unwrap_or_default())
}

fn kmeans_once(
    x: &[f32],
    n: usize,
    d: usize,
    k: usize,
    max_iter: usize,
    rng: &mut ChaCha8Rng,
) -> (f64, Vec<i32>) {
    let row = |i: usize| &x[i * d..(i + 1) * d];
    // k-means++ with 2 + ln k local trials per centre (scikit-learn's greedy variant).
    let trials = 2 + (k as f64).ln() as usize;
    let mut centres: Vec<f32> = Vec::with_capacity(k * d);
    let first = rng.random_range(0..n);
    centres.extend_from_slice(row(first));
    let mut closest: Vec<f64> = (0..n).map(|i| sq_dist(row(i), row(first))).collect();
    let mut pot: f64 = closest.iter().sum();
    for _ in 1..k {
        let mut best_cand = None;
        for _ in 0..trials {
            let cand = if pot > 0.0 {
                let mut r = rng.random::<f64>() * pot;
                let mut pick = n - 1;
                for (i, &c) in closest.iter().enumerate() {
                    if r < c {
                        pick = i;
                        break;
                    }
                    r -= c;
                }
                pick
            } else {
                rng.random_range(0..n)
            };
            let new_closest: Vec<f64> = (0..n)
                .map(|i| closest[i].min(sq_dist(row(i), row(cand))))
                .collect();
            let new_pot: f64 = new_closest.iter().sum();
            if best_cand.as_ref().is_none_or(|(p, _, _)| new_pot < *p) {
                best_cand = Some((new_pot, cand, new_closest));
            }
        }
        if let Some((p, c, cl)) = best_cand {
            centres.extend_from_slice(row(c));
            closest = cl;
            pot = p;
        }
    }
    let mut labels = vec![0i32; n];
    let mut inertia = f64::INFINITY;
    let mut sums = vec![0f64; k * d];
    let mut counts = vec![0usize; k];
    for _ in 0..max_iter {
        // Assign.
        let assigned: Vec<(i32, f64)> = (0..n)
            .into_par_iter()
            .map(|i| {
                let mut bj = 0;
                let mut bd = f64::INFINITY;
                for j in 0..k {
                    let dd = sq_dist(row(i), &centres[j * d..(j + 1) * d]);
                    if dd < bd {
                        bd = dd;
                        bj = j;
                    }
                }
                (bj as i32, bd)
            })
            .collect();
        let new_inertia: f64 = assigned.iter().map(|a| a.1).sum();
        for (l, a) in labels.iter_mut().zip(&assigned) {
            *l = a.0;
        }
        // Update.
        sums.fill(0.0);
        counts.fill(0);
        for (i, &l) in labels.iter().enumerate() {
            let l = l as usize;
            counts[l] += 1;
            for (s, &v) in sums[l * d..(l + 1) * d].iter_mut().zip(row(i)) {
                *s += v as f64;
            }
        }
        let mut shift = 0f64;
        for j in 0..k {
            if counts[j] == 0 {
                // Empty cluster: move its centre to the point farthest from its centre.
                let far = (0..n)
                    .max_by(|&a, &b| assigned[a].1.total_cmp(&assigned[b].1))
                    .unwrap_or(0);
                centres[j * d..(j + 1) * d].copy_from_slice(row(far));
                shift = f64::INFINITY;
                continue;
            }
            for c in 0..d {
                let v = (sums[j * d + c] / counts[j] as f64) as f32;
                let t = (v - centres[j * d + c]) as f64;
                shift += t * t;
                centres[j * d + c] = v;
            }
        }
        let converged = shift <= 1e-8 || (inertia - new_inertia).abs() <= 1e-12 * inertia.abs();
        inertia = new_inertia;
        if converged {
            break;
        }
    }
    (inertia, labels)
}
