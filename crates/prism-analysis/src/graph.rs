//! The affinity graph and the symmetric normalised Laplacian, sparse (CSR).
//!
//! CoRelAy's `SymmetricNormalLaplacian` returns the normalised adjacency M = D^-½ W D^-½, not
//! L = I − M; both have the same eigenvectors, with λ(L) = 1 − λ(M). Prism keeps M (its largest
//! eigenpairs are L's smallest, the end of the spectrum spectral clustering wants).

use crate::config::{AffinityConfig, AffinityKind};
use crate::knn::KnnGraph;

/// A square sparse matrix in CSR form (symmetric by construction here).
#[derive(Debug, Clone, PartialEq)]
pub struct Csr {
    pub n: usize,
    pub indptr: Vec<usize>,
    pub indices: Vec<u32>,
    pub values: Vec<f64>,
}

impl Csr {
    /// Number of stored entries.
    pub fn nnz(&self) -> usize {
        self.values.len()
    }

    /// Row sums.
    pub fn row_sums(&self) -> Vec<f64> {
        (0..self.n)
            .map(|i| self.values[self.indptr[i]..self.indptr[i + 1]].iter().sum())
            .collect()
    }
}

/// W = (A + Aᵀ)/2 where A has one entry per kNN edge: 1 (binary, CoRelAy's `SparseKNN`) or
/// exp(−d²/2σ²) (RBF).
pub fn affinity(knn: &KnnGraph, cfg: &AffinityConfig) -> Csr {
    let (n, k) = (knn.n, knn.k);
    let weight = |d: f32| match cfg.kind {
        AffinityKind::Binary => 1.0,
        AffinityKind::Rbf => (-(d as f64).powi(2) / (2.0 * cfg.sigma * cfg.sigma)).exp(),
    };
    // Each edge (i, j, w) contributes w/2 to (i, j) and to (j, i).
    let mut counts = vec![0usize; n];
    for i in 0..n {
        counts[i] += k;
        for &j in &knn.indices[i * k..(i + 1) * k] {
            counts[j as usize] += 1;
        }
    }
    let mut indptr = vec![0usize; n + 1];
    for i in 0..n {
        indptr[i + 1] = indptr[i] + counts[i];
    }
    let mut fill = indptr[..n].to_vec();
    let mut entries = vec![(0u32, 0f64); indptr[n]];
    for i in 0..n {
        for s in 0..k {
            let j = knn.indices[i * k + s] as usize;
            let w = weight(knn.distances[i * k + s]) / 2.0;
            entries[fill[i]] = (j as u32, w);
            fill[i] += 1;
            entries[fill[j]] = (i as u32, w);
            fill[j] += 1;
        }
    }
    // Sort each row by column and merge duplicates (mutual neighbours).
    let mut out_ptr = vec![0usize; n + 1];
    let mut indices = Vec::with_capacity(entries.len());
    let mut values = Vec::with_capacity(entries.len());
    for i in 0..n {
        let row = &mut entries[indptr[i]..indptr[i + 1]];
        row.sort_by_key(|e| e.0);
        let mut last: Option<u32> = None;
        for &(j, w) in row.iter() {
            if last == Some(j) {
                if let Some(v) = values.last_mut() {
                    *v += w;
                }
            } else {
                indices.push(j);
                values.push(w);
                last = Some(j);
            }
        }
        out_ptr[i + 1] = indices.len();
    }
    Csr {
        n,
        indptr: out_ptr,
        indices,
        values,
    }
}

/// M = D^-½ W D^-½ with D the row sums of W (rows with sum 0 stay 0).
pub fn normalised_adjacency(w: &Csr) -> Csr {
    let inv_sqrt: Vec<f64> = w
        .row_sums()
        .into_iter()
        .map(|d| if d > 0.0 { 1.0 / d.sqrt() } else { 0.0 })
        .collect();
    let mut m = w.clone();
    for i in 0..m.n {
        for p in m.indptr[i]..m.indptr[i + 1] {
            m.values[p] *= inv_sqrt[i] * inv_sqrt[m.indices[p] as usize];
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_affinity_is_symmetric_with_half_weights_for_one_sided_edges() {
        // 0 -> 1, 1 -> 0, 2 -> 1 (k = 1)
        let knn = KnnGraph {
            n: 3,
            k: 1,
            indices: vec![1, 0, 1],
            distances: vec![1.0, 1.0, 2.0],
        };
        let w = affinity(&knn, &AffinityConfig::default());
        let dense = |i: usize, j: usize| {
            (w.indptr[i]..w.indptr[i + 1])
                .find(|&p| w.indices[p] as usize == j)
                .map(|p| w.values[p])
                .unwrap_or(0.0)
        };
        assert_eq!(dense(0, 1), 1.0);
        assert_eq!(dense(1, 0), 1.0);
        assert_eq!(dense(1, 2), 0.5);
        assert_eq!(dense(2, 1), 0.5);
        assert_eq!(dense(0, 2), 0.0);
    }
}
