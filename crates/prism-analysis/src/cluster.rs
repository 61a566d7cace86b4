//! Clusterings of the spectral embedding: k-means, agglomerative (Ward), DBSCAN, HDBSCAN.
//!
//! Labels are renumbered by first appearance (0 for the cluster of the first non-noise
//! sample, …), so equal partitions give equal arrays; noise is −1. When k ≥ N every sample
//! is its own cluster (CoRelAy/scikit-learn raise instead; ViRelAy needs every category to
//! have every clustering name).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::config::KnnConfig;

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

/// Ward linkage (kodama) once, then cut at every k in `ks`. Memory N(N−1)/2 f64.
pub fn agglomerative_ward(x: &[f32], n: usize, d: usize, ks: &[usize]) -> Vec<Vec<i32>> {
    if n < 2 {
        return ks.iter().map(|_| vec![0; n]).collect();
    }
    let mut condensed = Vec::with_capacity(n * (n - 1) / 2);
    for i in 0..n {
        for j in i + 1..n {
            condensed.push(sq_dist(&x[i * d..(i + 1) * d], &x[j * d..(j + 1) * d]).sqrt());
        }
    }
    let dendrogram = kodama::linkage(&mut condensed, n, kodama::Method::Ward);
    let steps = dendrogram.steps();
    ks.iter()
        .map(|&k| {
            if k >= n {
                return (0..n as i32).collect();
            }
            // Apply the first n − k merges with union–find over 2n − 1 cluster ids.
            let mut parent: Vec<usize> = (0..2 * n).collect();
            fn find(p: &mut [usize], mut a: usize) -> usize {
                while p[a] != a {
                    p[a] = p[p[a]];
                    a = p[a];
                }
                a
            }
            for (s, step) in steps.iter().take(n - k).enumerate() {
                let new = n + s;
                let a = find(&mut parent, step.cluster1);
                let b = find(&mut parent, step.cluster2);
                parent[a] = new;
                parent[b] = new;
            }
            let labels: Vec<i32> = (0..n).map(|i| find(&mut parent, i) as i32).collect();
            canonical_labels(&labels)
        })
        .collect()
}

/// Neighbour lists within a radius: for each point, (squared distance, index) ascending,
/// itself included. `None` if they would hold more than `budget` pairs in total.
fn radius_neighbours(
    x: &[f32],
    n: usize,
    d: usize,
    eps: f64,
    budget: usize,
) -> Option<Vec<Vec<(f32, u32)>>> {
    let eps2 = eps * eps;
    let row = |i: usize| &x[i * d..(i + 1) * d];
    let total: usize = (0..n)
        .into_par_iter()
        .map(|i| (0..n).filter(|&j| sq_dist(row(i), row(j)) <= eps2).count())
        .sum();
    if total > budget {
        return None;
    }
    Some(
        (0..n)
            .into_par_iter()
            .map(|i| {
                let mut v: Vec<(f32, u32)> = (0..n)
                    .filter_map(|j| {
                        let s = sq_dist(row(i), row(j));
                        (s <= eps2).then_some((s as f32, j as u32))
                    })
                    .collect();
                v.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                v
            })
            .collect(),
    )
}

/// DBSCAN on precomputed neighbour lists (each sorted ascending, radius ≥ eps).
fn dbscan_from_lists(lists: &[Vec<(f32, u32)>], eps: f64, min_samples: usize) -> Vec<i32> {
    let n = lists.len();
    let eps2 = (eps * eps) as f32;
    let within = |i: usize| {
        let l = &lists[i];
        &l[..l.partition_point(|p| p.0 <= eps2)]
    };
    let core: Vec<bool> = (0..n).map(|i| within(i).len() >= min_samples).collect();
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(p: &mut [usize], mut a: usize) -> usize {
        while p[a] != a {
            p[a] = p[p[a]];
            a = p[a];
        }
        a
    }
    for i in 0..n {
        if !core[i] {
            continue;
        }
        for &(_, j) in within(i) {
            let j = j as usize;
            if core[j] {
                let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                if a != b {
                    parent[a.max(b)] = a.min(b);
                }
            }
        }
    }
    let mut labels = vec![-1i32; n];
    for (i, l) in labels.iter_mut().enumerate() {
        if core[i] {
            *l = find(&mut parent, i) as i32;
        }
    }
    for i in 0..n {
        if !core[i] {
            // Border point: the nearest core neighbour's cluster.
            if let Some(&(_, j)) = within(i).iter().find(|p| core[p.1 as usize]) {
                labels[i] = labels[j as usize];
            }
        }
    }
    canonical_labels(&labels)
}

/// Most neighbour pairs kept in memory for DBSCAN (8 bytes each).
const DBSCAN_PAIR_BUDGET: usize = 64 << 20;

/// DBSCAN with Euclidean distance for several radii (scikit-learn's definition: a core point
/// has at least `min_samples` points, itself included, within `eps`; a border point joins its
/// nearest core neighbour's cluster). The neighbour lists of the largest radius are computed
/// once and reused for the others when they fit [`DBSCAN_PAIR_BUDGET`]; otherwise each radius
/// is computed on its own.
pub fn dbscan_multi(
    x: &[f32],
    n: usize,
    d: usize,
    eps: &[f64],
    min_samples: usize,
) -> Vec<Vec<i32>> {
    let eps_max = eps.iter().copied().fold(0.0, f64::max);
    if let Some(lists) = radius_neighbours(x, n, d, eps_max, DBSCAN_PAIR_BUDGET) {
        return eps
            .iter()
            .map(|&e| dbscan_from_lists(&lists, e, min_samples))
            .collect();
    }
    eps.iter()
        .map(
            |&e| match radius_neighbours(x, n, d, e, DBSCAN_PAIR_BUDGET) {
                Some(lists) => dbscan_from_lists(&lists, e, min_samples),
                None => vec![-1; n],
            },
        )
        .collect()
}

/// DBSCAN for one radius (see [`dbscan_multi`]).
pub fn dbscan(x: &[f32], n: usize, d: usize, eps: f64, min_samples: usize) -> Vec<i32> {
    dbscan_multi(x, n, d, &[eps], min_samples)
        .pop()
        .unwrap_or_default()
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

/// Number of clusters (noise excluded).
pub fn n_clusters(labels: &[i32]) -> usize {
    labels
        .iter()
        .copied()
        .filter(|&l| l >= 0)
        .max()
        .map_or(0, |m| m as usize + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

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
