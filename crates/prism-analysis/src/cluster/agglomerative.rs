//! Agglomerative clustering with Ward linkage (kodama), one clustering per k in
//! `k_min..=k_max` (`agglomerative-02`, …). It needs N(N−1)/2 distances, so categories above
//! `max_n` samples skip it with a warning.

use prism_store::{AttrValue, Clustering};
use rayon::prelude::*;

use super::{canonical_labels, check_k_range, columns_for, sq_dist};
use crate::cache::Key;
use crate::config::{AgglomerativeConfig, SpectralColumns};
use crate::error::Result;
use crate::family::{spectral_attr, ClusteringFamily, Family, FamilyInput};

impl Family for AgglomerativeConfig {
    fn name(&self) -> &'static str {
        "agglomerative"
    }

    fn check(&self) -> std::result::Result<(), String> {
        check_k_range(self.name(), self.k_min, self.k_max)
    }

    fn runs_on(&self, n: usize, category: &str) -> bool {
        if !self.enabled {
            return false;
        }
        if n > self.max_n {
            tracing::warn!(
                category,
                n,
                max_n = self.max_n,
                "agglomerative clustering skipped: Ward linkage needs N(N-1)/2 distances \
                 (raise agglomerative.max_n to force it)"
            );
            return false;
        }
        true
    }

    fn key(&self, eigen: &Key, _seed: u64) -> Result<Key> {
        Key::derive(eigen, self.name(), self)
    }
}

impl ClusteringFamily for AgglomerativeConfig {
    fn run(&self, input: &FamilyInput<'_>) -> Vec<Clustering> {
        let ks: Vec<usize> = (self.k_min..=self.k_max).collect();
        let p = input.spectral;
        let cuts: Vec<Vec<i32>> = match self.columns {
            // One linkage, cut at every k.
            SpectralColumns::All => agglomerative_ward(p.data, p.n, p.d, &ks),
            // One linkage per k, each on its own leading columns.
            SpectralColumns::Leading => ks
                .par_iter()
                .flat_map_iter(|&k| {
                    let (x, xd) = columns_for(p, k, SpectralColumns::Leading);
                    agglomerative_ward(&x, p.n, xd, &[k])
                })
                .collect(),
        };
        cuts.into_iter()
            .zip(&ks)
            .map(|(labels, &k)| Clustering {
                name: format!("agglomerative-{k:02}"),
                labels,
                attrs: vec![spectral_attr(), ("k".into(), AttrValue::Int(k as i64))],
            })
            .collect()
    }
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
