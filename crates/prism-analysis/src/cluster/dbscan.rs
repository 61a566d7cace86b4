//! DBSCAN for a list of radii (`dbscan-eps=0.2`, …), scikit-learn's definition.

use prism_store::{AttrValue, Clustering};
use rayon::prelude::*;

use super::{canonical_labels, sq_dist};
use crate::cache::Key;
use crate::config::DbscanConfig;
use crate::error::Result;
use crate::family::{spectral_attr, ClusteringFamily, Family, FamilyInput};

impl Family for DbscanConfig {
    fn name(&self) -> &'static str {
        "dbscan"
    }

    fn check(&self) -> std::result::Result<(), String> {
        if self.eps.iter().any(|e| !(*e > 0.0 && e.is_finite())) {
            return Err("dbscan.eps values must be finite and > 0".into());
        }
        if self.min_samples == 0 {
            return Err(super::MIN_SAMPLES_MESSAGE.into());
        }
        Ok(())
    }

    fn runs_on(&self, _n: usize, _category: &str) -> bool {
        self.enabled && !self.eps.is_empty()
    }

    fn key(&self, eigen: &Key, _seed: u64) -> Result<Key> {
        Key::derive(eigen, self.name(), self)
    }
}

impl ClusteringFamily for DbscanConfig {
    fn run(&self, input: &FamilyInput<'_>) -> Vec<Clustering> {
        let p = input.spectral;
        dbscan_multi(p.data, p.n, p.d, &self.eps, self.min_samples)
            .into_iter()
            .zip(&self.eps)
            .map(|(labels, &eps)| Clustering {
                name: format!("dbscan-eps={}", py_float(eps)),
                labels,
                attrs: vec![
                    spectral_attr(),
                    ("eps".into(), AttrValue::Float(eps)),
                    (
                        "min_samples".into(),
                        AttrValue::Int(self.min_samples as i64),
                    ),
                ],
            })
            .collect()
    }
}

/// Formats eps as Python's `str(float)` does for CoRelAy's names (`0.2`, `1.0`).
fn py_float(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

/// Neighbour lists within a radius: for each point, (squared distance, index) ascending,
/// itself included. `None` if they would hold more than `budget` pairs in total (the caller
/// then computes without lists, see [`dbscan_tiled`]).
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
/// is computed in tiles of rows ([`dbscan_tiled`]), which needs no more memory than the budget
/// and gives the same labels.
pub fn dbscan_multi(
    x: &[f32],
    n: usize,
    d: usize,
    eps: &[f64],
    min_samples: usize,
) -> Vec<Vec<i32>> {
    dbscan_multi_within(x, n, d, eps, min_samples, DBSCAN_PAIR_BUDGET)
}

/// [`dbscan_multi`] with the neighbour pairs held in memory at most `budget`.
fn dbscan_multi_within(
    x: &[f32],
    n: usize,
    d: usize,
    eps: &[f64],
    min_samples: usize,
    budget: usize,
) -> Vec<Vec<i32>> {
    let eps_max = eps.iter().copied().fold(0.0, f64::max);
    if let Some(lists) = radius_neighbours(x, n, d, eps_max, budget) {
        return eps
            .iter()
            .map(|&e| dbscan_from_lists(&lists, e, min_samples))
            .collect();
    }
    eps.iter()
        .map(|&e| dbscan_tiled(x, n, d, e, eps_max, min_samples, budget))
        .collect()
}

/// DBSCAN for radius `eps` without neighbour lists: core points by counting, clusters by
/// joining core pairs found a tile of rows at a time (at most `budget` pairs held), border
/// points by their nearest core neighbour. "Within" is decided exactly as
/// [`dbscan_from_lists`] decides it on lists of radius `eps_max`, so both give equal labels.
fn dbscan_tiled(
    x: &[f32],
    n: usize,
    d: usize,
    eps: f64,
    eps_max: f64,
    min_samples: usize,
    budget: usize,
) -> Vec<i32> {
    let (max2, eps2) = (eps_max * eps_max, (eps * eps) as f32);
    let row = |i: usize| &x[i * d..(i + 1) * d];
    let near = |i: usize, j: usize| {
        let s = sq_dist(row(i), row(j));
        (s <= max2 && (s as f32) <= eps2).then_some(s as f32)
    };
    let core: Vec<bool> = (0..n)
        .into_par_iter()
        .map(|i| (0..n).filter(|&j| near(i, j).is_some()).count() >= min_samples)
        .collect();
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(p: &mut [usize], mut a: usize) -> usize {
        while p[a] != a {
            p[a] = p[p[a]];
            a = p[a];
        }
        a
    }
    let tile = (budget / n.max(1)).max(1);
    let is_core = core.as_slice();
    for start in (0..n).step_by(tile) {
        let pairs: Vec<(usize, usize)> = (start..(start + tile).min(n))
            .into_par_iter()
            .filter(|&i| is_core[i])
            .flat_map_iter(|i| {
                (i + 1..n)
                    .filter(move |&j| is_core[j] && near(i, j).is_some())
                    .map(move |j| (i, j))
            })
            .collect();
        for (i, j) in pairs {
            let (a, b) = (find(&mut parent, i), find(&mut parent, j));
            if a != b {
                parent[a.max(b)] = a.min(b);
            }
        }
    }
    let mut labels = vec![-1i32; n];
    for (i, l) in labels.iter_mut().enumerate() {
        if core[i] {
            *l = find(&mut parent, i) as i32;
        }
    }
    // Border points: the nearest core neighbour (ties: the lower index), as in the lists.
    let border: Vec<(usize, usize)> = (0..n)
        .into_par_iter()
        .filter(|&i| !core[i])
        .filter_map(|i| {
            (0..n)
                .filter(|&j| core[j])
                .filter_map(|j| near(i, j).map(|s| (s, j)))
                .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
                .map(|(_, j)| (i, j))
        })
        .collect();
    for (i, j) in border {
        labels[i] = labels[j];
    }
    canonical_labels(&labels)
}

/// DBSCAN for one radius (see [`dbscan_multi`]).
pub fn dbscan(x: &[f32], n: usize, d: usize, eps: f64, min_samples: usize) -> Vec<i32> {
    // One radius in, one labelling out.
    dbscan_multi(x, n, d, &[eps], min_samples)
        .into_iter()
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three blobs, a bridge point and far outliers, in 3-D (deterministic).
    fn points() -> (Vec<f32>, usize) {
        let mut x = Vec::new();
        let mut state = 7u64;
        let mut rnd = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        for c in [[0.0, 0.0, 0.0], [3.0, 0.0, 0.0], [0.0, 3.0, 1.0]] {
            for _ in 0..40 {
                x.extend(c.iter().map(|v| v + 0.6 * rnd()));
            }
        }
        x.extend([1.5, 0.0, 0.0, 9.0, 9.0, 9.0, -9.0, 4.0, 2.0]);
        let n = x.len() / 3;
        (x, n)
    }

    #[test]
    fn tiles_give_the_labels_of_the_lists() {
        let (x, n) = points();
        let eps = [0.25, 0.4, 0.9, 1.6];
        let lists = dbscan_multi_within(&x, n, 3, &eps, 4, usize::MAX);
        // A budget far below the pairs: every radius goes through the tiles (7 rows each).
        let tiled = dbscan_multi_within(&x, n, 3, &eps, 4, 7 * n);
        assert!(radius_neighbours(&x, n, 3, 1.6, 7 * n).is_none());
        assert_eq!(lists, tiled);
        // Not a trivial labelling: several clusters and some noise at a middle radius.
        let l = &tiled[2];
        assert!(l.contains(&-1), "{l:?}");
        assert!(l.iter().copied().max().unwrap_or(-1) >= 2, "{l:?}");
    }

    #[test]
    fn a_budget_too_small_for_one_row_still_clusters() {
        let (x, n) = points();
        let small = dbscan_multi_within(&x, n, 3, &[0.9], 4, 1);
        assert_eq!(small, dbscan_multi_within(&x, n, 3, &[0.9], 4, usize::MAX));
        assert!(small[0].iter().any(|&v| v >= 0));
    }
}
