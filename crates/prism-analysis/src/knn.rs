//! Exact k-nearest neighbours by blocked matrix products, never an N×N matrix.
//!
//! For a block of B query rows, ‖x−y‖² = ‖x‖² + ‖y‖² − 2x·y is computed against all rows with
//! one f32 GEMM (B×N, the only large temporary), the best `k + margin` candidates are kept,
//! and their distances recomputed exactly in f64 before the final `k` are chosen. The f64
//! re-ranking makes the neighbour lists independent of GEMM rounding, so results agree with a
//! float64 reference (scipy/numpy) and are deterministic. Ties break by the smaller index.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

/// Neighbour lists: for each row, `k` neighbours (not itself) by ascending distance.
#[derive(Debug, Clone, PartialEq)]
pub struct KnnGraph {
    pub n: usize,
    pub k: usize,
    /// Row-major `n × k` neighbour indices.
    pub indices: Vec<u32>,
    /// Row-major `n × k` Euclidean distances.
    pub distances: Vec<f32>,
}

/// Rows per GEMM block: bounds the B×N temporary to about 64 MiB.
fn block_rows(n: usize) -> usize {
    ((16 << 20) / n.max(1)).clamp(16, 1024)
}

/// ‖a − b‖² in f64, with four independent accumulators so that it vectorises.
fn sq_dist_f64(a: &[f32], b: &[f32]) -> f64 {
    let mut acc = [0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (p, q) in ca.zip(cb) {
        for l in 0..4 {
            let t = p[l] as f64 - q[l] as f64;
            acc[l] += t * t;
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (&p, &q) in ra.iter().zip(rb) {
        let t = p as f64 - q as f64;
        s += t * t;
    }
    s
}

/// Exact kNN of the `n × d` row-major matrix `x`; `k` is capped at `n − 1`.
pub fn exact_knn(x: &[f32], n: usize, d: usize, k: usize) -> KnnGraph {
    let k = k.min(n.saturating_sub(1));
    if k == 0 || d == 0 {
        return KnnGraph {
            n,
            k,
            indices: Vec::new(),
            distances: Vec::new(),
        };
    }
    let margin = (k / 4).max(8);
    let cand = (k + margin).min(n - 1);
    let norms: Vec<f32> = x
        .par_chunks_exact(d)
        .map(|r| r.iter().map(|v| v * v).sum())
        .collect();
    let xr = MatRef::from_row_major_slice(x, n, d);
    let b = block_rows(n);
    let mut indices = vec![0u32; n * k];
    let mut distances = vec![0f32; n * k];
    let mut gram = vec![0f32; b * n];
    for start in (0..n).step_by(b) {
        let end = (start + b).min(n);
        let rows = end - start;
        let g = &mut gram[..rows * n];
        {
            let dst = MatMut::from_row_major_slice_mut(g, rows, n);
            matmul(
                dst,
                Accum::Replace,
                xr.subrows(start, rows),
                xr.transpose(),
                1.0f32,
                Par::rayon(0),
            );
        }
        let g = &gram[..rows * n];
        indices[start * k..end * k]
            .par_chunks_exact_mut(k)
            .zip(distances[start * k..end * k].par_chunks_exact_mut(k))
            .enumerate()
            .for_each_init(
                || Vec::with_capacity(n),
                |scratch: &mut Vec<(f32, u32)>, (r, (ind, dist))| {
                    let i = start + r;
                    let grow = &g[r * n..(r + 1) * n];
                    scratch.clear();
                    scratch.extend(
                        grow.iter()
                            .zip(&norms)
                            .enumerate()
                            .filter(|&(j, _)| j != i)
                            .map(|(j, (&gij, &nj))| (nj - 2.0 * gij, j as u32)),
                    );
                    let by =
                        |a: &(f32, u32), b: &(f32, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
                    if scratch.len() > cand {
                        scratch.select_nth_unstable_by(cand - 1, by);
                        scratch.truncate(cand);
                    }
                    let xi = &x[i * d..(i + 1) * d];
                    let mut exact: Vec<(f64, u32)> = scratch
                        .iter()
                        .map(|&(_, j)| {
                            let xj = &x[j as usize * d..(j as usize + 1) * d];
                            (sq_dist_f64(xi, xj), j)
                        })
                        .collect();
                    exact.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                    for (slot, &(s, j)) in exact.iter().take(k).enumerate() {
                        ind[slot] = j;
                        dist[slot] = s.sqrt() as f32;
                    }
                },
            );
    }
    KnnGraph {
        n,
        k,
        indices,
        distances,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute(x: &[f32], n: usize, d: usize, k: usize) -> Vec<Vec<u32>> {
        (0..n)
            .map(|i| {
                let mut v: Vec<(f64, u32)> = (0..n)
                    .filter(|&j| j != i)
                    .map(|j| {
                        let s: f64 = (0..d)
                            .map(|c| (x[i * d + c] as f64 - x[j * d + c] as f64).powi(2))
                            .sum();
                        (s, j as u32)
                    })
                    .collect();
                v.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                v.into_iter().take(k).map(|p| p.1).collect()
            })
            .collect()
    }

    #[test]
    fn blocked_knn_equals_brute_force() {
        let (n, d, k) = (300, 7, 10);
        let x: Vec<f32> = (0..n * d)
            .map(|i| ((i * 7919 % 1009) as f32 / 1009.0).sin() * 3.0)
            .collect();
        let g = exact_knn(&x, n, d, k);
        let b = brute(&x, n, d, k);
        for (i, want) in b.iter().enumerate() {
            assert_eq!(&g.indices[i * k..(i + 1) * k], want.as_slice(), "row {i}");
        }
    }

    #[test]
    fn k_is_capped_at_n_minus_one() {
        let x = [0.0f32, 1.0, 3.0];
        let g = exact_knn(&x, 3, 1, 32);
        assert_eq!(g.k, 2);
        assert_eq!(&g.indices[0..2], &[1, 2]);
    }
}
