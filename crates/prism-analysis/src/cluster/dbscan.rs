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
    // One radius in, one labelling out.
    dbscan_multi(x, n, d, &[eps], min_samples)
        .into_iter()
        .flatten()
        .collect()
}
