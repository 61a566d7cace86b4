//! Exact k-nearest neighbours by blocked matrix products, never an N×N matrix.
//!
//! For a block of B query rows, ‖x−y‖² = ‖x‖² + ‖y‖² − 2x·y is computed against all rows with
//! one f32 GEMM (B×N, the only large temporary), the best `k + margin` candidates are kept,
//! and their distances recomputed exactly in f64 before the final `k` are chosen. The f64
//! re-ranking makes the neighbour lists independent of GEMM rounding, so results agree with a
//! float64 reference (scipy/numpy) and are deterministic. Ties break by the smaller index.
//!
//! [`approximate_knn`] (an inverted-file index, IVF) serves large N: a seeded k-means coarse
//! quantiser splits the rows into ~√N lists, and each query searches the `nprobe` lists whose
//! centroids are nearest, exactly (blocked f32 GEMM per list, then the same f64 re-ranking).
//! Every GEMM runs sequentially inside one task (tasks run in parallel, each writing its own
//! slot), so the result does not depend on the number of threads.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::config::{KnnConfig, KnnMethod};

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

/// Rows per GEMM block: bounds the B×N temporary to about 64 MiB, and keeps blocks small
/// enough (N/8) that the symmetric scheme skips close to half of the products.
fn block_rows(n: usize) -> usize {
    ((16 << 20) / n.max(1)).min(n / 8).clamp(16, 1024)
}

/// ‖a − b‖² in f64 (each difference exact, squares summed in f64): the distance that every
/// neighbour list is finally ranked by. Uses AVX2 where the CPU has it (detected at run time);
/// both paths perform the same operations in the same order, so results are identical.
pub(crate) fn sq_dist_f64(a: &[f32], b: &[f32]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { sq_dist_f64_avx2(a, b) };
        }
    }
    sq_dist_f64_body(a, b)
}

/// [`sq_dist_f64_body`] in AVX intrinsics: the same sixteen lanes (four 4-wide vectors), the
/// same additions in the same order (no fused multiply-add), so the same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) unsafe fn sq_dist_f64_avx2(a: &[f32], b: &[f32]) -> f64 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let full = n / 16 * 16;
    let mut acc = [_mm256_setzero_pd(); 4];
    let mut i = 0;
    while i < full {
        for (v, acc) in acc.iter_mut().enumerate() {
            // SAFETY: i + 4v + 4 ≤ full ≤ both lengths; unaligned loads.
            let (p, q) = unsafe {
                (
                    _mm_loadu_ps(a.as_ptr().add(i + 4 * v)),
                    _mm_loadu_ps(b.as_ptr().add(i + 4 * v)),
                )
            };
            let t = _mm256_sub_pd(_mm256_cvtps_pd(p), _mm256_cvtps_pd(q));
            *acc = _mm256_add_pd(*acc, _mm256_mul_pd(t, t));
        }
        i += 16;
    }
    let h = _mm256_add_pd(_mm256_add_pd(_mm256_add_pd(acc[0], acc[1]), acc[2]), acc[3]);
    let mut half = [0f64; 4];
    // SAFETY: `half` holds four f64.
    unsafe { _mm256_storeu_pd(half.as_mut_ptr(), h) };
    let mut s = (half[0] + half[1]) + (half[2] + half[3]);
    for (&p, &q) in a[full..n].iter().zip(&b[full..n]) {
        let t = p as f64 - q as f64;
        s += t * t;
    }
    s
}

/// Sixteen independent accumulators (four 4-lane vectors) so that the loop vectorises and
/// is not bound by the latency of one add chain.
#[inline(always)]
pub(crate) fn sq_dist_f64_body(a: &[f32], b: &[f32]) -> f64 {
    const L: usize = 16;
    let mut acc = [0f64; L];
    let (ca, cb) = (a.chunks_exact(L), b.chunks_exact(L));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (p, q) in ca.zip(cb) {
        for l in 0..L {
            let t = p[l] as f64 - q[l] as f64;
            acc[l] += t * t;
        }
    }
    let mut half = [0f64; 4];
    for (l, v) in acc.iter().enumerate() {
        half[l % 4] += v;
    }
    let mut s = (half[0] + half[1]) + (half[2] + half[3]);
    for (&p, &q) in ra.iter().zip(rb) {
        let t = p as f64 - q as f64;
        s += t * t;
    }
    s
}

/// The final neighbours of rows `first .. first + pools.len()` from their candidates: exact
/// f64 distances, ascending, ties by index; fills `ind` and `dist` (`k` slots per row).
///
/// Computing a distance streams a whole row from memory (200 KB for a 224×224 heatmap), so
/// the pairs are deduplicated first (i→j and j→i are one pair) and computed in (smaller,
/// larger) order, which keeps the smaller row hot in cache across its pairs. At N = 1300 of
/// 224×224 this pass is still memory-bound (no clear gain measured over one row at a time);
/// a cluster-ordered tiling would read each row once per tile. Each distance is the same
/// function of the two rows whatever the order, so the result does not change.
fn rerank_rows(
    x: &[f32],
    d: usize,
    first: usize,
    pools: &[Vec<(f32, u32)>],
    k: usize,
    ind: &mut [u32],
    dist: &mut [f32],
) {
    let row = |i: usize| &x[i * d..(i + 1) * d];
    let mut pairs: Vec<(u32, u32)> = pools
        .iter()
        .enumerate()
        .flat_map(|(r, pool)| {
            let i = (first + r) as u32;
            pool.iter().map(move |&(_, j)| (i.min(j), i.max(j)))
        })
        .collect();
    pairs.par_sort_unstable();
    pairs.dedup();
    let exact: Vec<f64> = pairs
        .par_iter()
        .with_min_len(64)
        .map(|&(a, b)| sq_dist_f64(row(a as usize), row(b as usize)))
        .collect();
    ind.par_chunks_exact_mut(k)
        .zip(dist.par_chunks_exact_mut(k))
        .zip(pools.par_iter())
        .enumerate()
        .for_each(|(r, ((ind, dist), pool))| {
            let i = (first + r) as u32;
            let mut ranked: Vec<(f64, u32)> = pool
                .iter()
                .map(|&(_, j)| {
                    let key = (i.min(j), i.max(j));
                    // Every pool pair is in `pairs`, which is sorted and deduplicated.
                    let at = pairs.partition_point(|p| *p < key);
                    (exact[at], j)
                })
                .collect();
            ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            for (slot, &(s, j)) in ranked.iter().take(k).enumerate() {
                ind[slot] = j;
                dist[slot] = s.sqrt() as f32;
            }
        });
}

/// Exact kNN of the `n × d` row-major matrix `x`; `k` is capped at `n − 1`.
///
/// The Gram matrix is symmetric, so only its lower triangle is computed, block row by block
/// row: block I (rows [s, e)) is multiplied with rows [0, e), giving each of its rows the
/// candidates among earlier rows and each earlier row (by the transposed entries) those among
/// block I. Every row keeps a running list of its best `k + margin` candidates (a total order on
/// (score, index), so the kept set does not depend on the order of the merges), re-ranked in
/// f64 at the end.
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
    let norms = row_norms(x, d);
    let xr = MatRef::from_row_major_slice(x, n, d);
    let b = block_rows(n);
    // Running candidates per row: (score ‖y‖² − 2x·y, index), at most 2·cand before pruning.
    let mut lists: Vec<Vec<(f32, u32)>> = (0..n).map(|_| Vec::with_capacity(2 * cand)).collect();
    let mut gram = vec![0f32; b * n];
    for start in (0..n).step_by(b) {
        let end = (start + b).min(n);
        let rows = end - start;
        let g = &mut gram[..rows * end];
        matmul(
            MatMut::from_row_major_slice_mut(g, rows, end),
            Accum::Replace,
            xr.subrows(start, rows),
            xr.subrows(0, end).transpose(),
            1.0f32,
            Par::rayon(0),
        );
        let g = &gram[..rows * end];
        let (before, block) = lists.split_at_mut(start);
        // Rows of the block: candidates among rows [0, end), itself excluded.
        block[..rows]
            .par_iter_mut()
            .enumerate()
            .for_each(|(r, list)| {
                let i = start + r;
                list.extend(
                    g[r * end..(r + 1) * end]
                        .iter()
                        .zip(&norms[..end])
                        .enumerate()
                        .filter(|&(j, _)| j != i)
                        .map(|(j, (&gij, &nj))| (nj - 2.0 * gij, j as u32)),
                );
                keep_best(list, cand);
            });
        // Earlier rows: candidates among the block's rows (column j of the product).
        before.par_iter_mut().enumerate().for_each(|(j, list)| {
            list.extend(
                (0..rows).map(|r| (norms[start + r] - 2.0 * g[r * end + j], (start + r) as u32)),
            );
            if list.len() >= 2 * cand {
                keep_best(list, cand);
            }
        });
    }
    lists.par_iter_mut().for_each(|list| keep_best(list, cand));
    let mut indices = vec![0u32; n * k];
    let mut distances = vec![0f32; n * k];
    rerank_rows(x, d, 0, &lists, k, &mut indices, &mut distances);
    KnnGraph {
        n,
        k,
        indices,
        distances,
    }
}

/// Whether `cfg` computes the kNN of `n` rows approximately.
pub fn uses_approximate(cfg: &KnnConfig, n: usize) -> bool {
    match cfg.method {
        KnnMethod::Exact => false,
        KnnMethod::Approximate => true,
        KnnMethod::Auto => n > cfg.approximate_above,
    }
}

/// kNN by the method `cfg` selects for `n` rows (exact, or IVF with `cfg.lists`/`cfg.nprobe`).
pub fn knn(x: &[f32], n: usize, d: usize, k: usize, cfg: &KnnConfig, seed: u64) -> KnnGraph {
    if uses_approximate(cfg, n) {
        approximate_knn(x, n, d, k, cfg.lists, cfg.nprobe, seed)
    } else {
        exact_knn(x, n, d, k)
    }
}

/// Orders (score, index) pairs by score, then index: a total order, so selections are
/// deterministic.
fn by_score(a: &(f32, u32), b: &(f32, u32)) -> std::cmp::Ordering {
    a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
}

/// Keeps the `m` best pairs of `v` (unsorted).
fn keep_best(v: &mut Vec<(f32, u32)>, m: usize) {
    if v.len() > m {
        v.select_nth_unstable_by(m - 1, by_score);
        v.truncate(m);
    }
}

/// For every row of `q` (`nq × d`), the `p` nearest rows of `c` (`nc × d`, squared norms
/// `cn`) by ascending distance, ties by index: row-major `nq × p`. Blocks of rows of fixed size
/// run in parallel, each with a sequential GEMM, so the result is thread-count independent.
pub(crate) fn nearest_rows(
    q: &[f32],
    nq: usize,
    c: &[f32],
    cn: &[f32],
    d: usize,
    p: usize,
) -> Vec<u32> {
    let nc = cn.len();
    let p = p.min(nc);
    let cr = MatRef::from_row_major_slice(c, nc, d);
    let block = 256;
    let mut out = vec![0u32; nq * p];
    out.par_chunks_mut(block * p)
        .enumerate()
        .for_each(|(b, dst)| {
            let start = b * block;
            let rows = dst.len() / p.max(1);
            let mut g = vec![0f32; rows * nc];
            matmul(
                MatMut::from_row_major_slice_mut(&mut g, rows, nc),
                Accum::Replace,
                MatRef::from_row_major_slice(&q[start * d..(start + rows) * d], rows, d),
                cr.transpose(),
                1.0f32,
                Par::Seq,
            );
            let mut scratch: Vec<(f32, u32)> = Vec::with_capacity(nc);
            for r in 0..rows {
                scratch.clear();
                scratch.extend(
                    g[r * nc..(r + 1) * nc]
                        .iter()
                        .zip(cn)
                        .enumerate()
                        .map(|(j, (&gj, &nj))| (nj - 2.0 * gj, j as u32)),
                );
                keep_best(&mut scratch, p);
                scratch.sort_by(by_score);
                for (s, &(_, j)) in scratch.iter().enumerate() {
                    dst[r * p + s] = j;
                }
            }
        });
    out
}

pub(crate) fn row_norms(x: &[f32], d: usize) -> Vec<f32> {
    x.par_chunks_exact(d)
        .map(|r| r.iter().map(|v| v * v).sum())
        .collect()
}

/// Seeded k-means (Lloyd, f64 sums in a fixed order) of the rows `sample` of `x` into `nlist`
/// centroids, initialised with `nlist` distinct sampled rows: the IVF coarse quantiser.
pub(crate) fn train_quantiser(
    x: &[f32],
    d: usize,
    sample: &[usize],
    nlist: usize,
    iterations: usize,
) -> Vec<f32> {
    let s = sample.len();
    let mut train = Vec::with_capacity(s * d);
    for &i in sample {
        train.extend_from_slice(&x[i * d..(i + 1) * d]);
    }
    let mut centroids = train[..nlist * d].to_vec();
    for it in 0..iterations {
        let cn = row_norms(&centroids, d);
        let assign = nearest_rows(&train, s, &centroids, &cn, d, 1);
        // Members of each centroid, in sample order.
        let mut members: Vec<Vec<u32>> = vec![Vec::new(); nlist];
        for (r, &c) in assign.iter().enumerate() {
            members[c as usize].push(r as u32);
        }
        let next: Vec<Vec<f32>> = members
            .par_iter()
            .enumerate()
            .map(|(c, m)| {
                if m.is_empty() {
                    // Re-seed an empty list with a sample row chosen by a fixed rule.
                    let r = (it * 7919 + c * 104_729) % s;
                    return train[r * d..(r + 1) * d].to_vec();
                }
                let mut acc = vec![0f64; d];
                for &r in m {
                    for (a, &v) in acc
                        .iter_mut()
                        .zip(&train[r as usize * d..(r as usize + 1) * d])
                    {
                        *a += v as f64;
                    }
                }
                acc.iter().map(|&a| (a / m.len() as f64) as f32).collect()
            })
            .collect();
        let next: Vec<f32> = next.concat();
        let moved = next != centroids;
        centroids = next;
        if !moved {
            break;
        }
    }
    centroids
}

/// Approximate kNN with an inverted-file index: `lists` k-means cells (0 = round(√N)) trained on
/// a seeded sample of at most 64 rows per list, each row stored in its nearest cell, each
/// query searching its `nprobe` nearest cells exactly (f32 GEMM, then the best `k + margin`
/// candidates re-ranked in f64). Deterministic for a seed and independent of the thread count.
/// Queries whose probed cells hold fewer than `k + 1` rows are searched exhaustively.
pub fn approximate_knn(
    x: &[f32],
    n: usize,
    d: usize,
    k: usize,
    lists: usize,
    nprobe: usize,
    seed: u64,
) -> KnnGraph {
    let k = k.min(n.saturating_sub(1));
    let nlist = if lists == 0 {
        ((n as f64).sqrt().round() as usize).max(1)
    } else {
        lists
    }
    .min(n.max(1));
    let nprobe = nprobe.clamp(1, nlist.max(1));
    if k == 0 || d == 0 || nprobe >= nlist {
        return exact_knn(x, n, d, k);
    }
    let margin = (k / 4).max(8);
    let cand = (k + margin).min(n - 1);

    // Coarse quantiser on a seeded sample (a partial Fisher–Yates shuffle).
    let s = (64 * nlist).min(n);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x1f_5eed);
    let mut perm: Vec<usize> = (0..n).collect();
    for i in 0..s {
        let j = rng.random_range(i..n);
        perm.swap(i, j);
    }
    let sample = &perm[..s];
    let centroids = train_quantiser(x, d, sample, nlist, 10);
    let cn = row_norms(&centroids, d);
    let probes = nearest_rows(x, n, &centroids, &cn, d, nprobe);

    // Cells: rows grouped by their nearest centroid, copied contiguously.
    let mut cell_of_pos: Vec<usize> = vec![0; nlist + 1];
    for i in 0..n {
        cell_of_pos[probes[i * nprobe] as usize + 1] += 1;
    }
    for c in 0..nlist {
        cell_of_pos[c + 1] += cell_of_pos[c];
    }
    let starts = cell_of_pos;
    let mut fill = starts[..nlist].to_vec();
    let mut order = vec![0u32; n];
    for i in 0..n {
        let c = probes[i * nprobe] as usize;
        order[fill[c]] = i as u32;
        fill[c] += 1;
    }
    let mut xp = vec![0f32; n * d];
    xp.par_chunks_mut(d)
        .zip(order.par_iter())
        .for_each(|(dst, &i)| dst.copy_from_slice(&x[i as usize * d..(i as usize + 1) * d]));
    let pn = row_norms(&xp, d);
    drop(perm);

    let mut indices = vec![0u32; n * k];
    let mut distances = vec![0f32; n * k];
    // Queries in blocks bound the candidate buffers (block × nprobe × cand pairs).
    let qblock = ((32 << 20) / (8 * nprobe * cand).max(1)).clamp(256, n);
    for qstart in (0..n).step_by(qblock) {
        let qend = (qstart + qblock).min(n);
        // (query, slot) pairs per cell.
        let mut per_cell: Vec<Vec<(u32, u32)>> = vec![Vec::new(); nlist];
        for q in qstart..qend {
            for slot in 0..nprobe {
                per_cell[probes[q * nprobe + slot] as usize].push((q as u32, slot as u32));
            }
        }
        // Per cell: (slot of (query, probe), its best candidates in the cell).
        type CellHits = Vec<(usize, Vec<(f32, u32)>)>;
        let found: Vec<CellHits> = per_cell
            .par_iter()
            .enumerate()
            .filter(|(_, qs)| !qs.is_empty())
            .map(|(c, qs)| {
                let (lo, hi) = (starts[c], starts[c + 1]);
                let m = hi - lo;
                let mut out = Vec::with_capacity(qs.len());
                if m == 0 {
                    return out;
                }
                let mut qx = Vec::with_capacity(qs.len() * d);
                for &(q, _) in qs {
                    qx.extend_from_slice(&x[q as usize * d..(q as usize + 1) * d]);
                }
                let mut g = vec![0f32; qs.len() * m];
                matmul(
                    MatMut::from_row_major_slice_mut(&mut g, qs.len(), m),
                    Accum::Replace,
                    MatRef::from_row_major_slice(&qx, qs.len(), d),
                    MatRef::from_row_major_slice(&xp[lo * d..hi * d], m, d).transpose(),
                    1.0f32,
                    Par::Seq,
                );
                for (r, &(q, slot)) in qs.iter().enumerate() {
                    let mut v: Vec<(f32, u32)> = g[r * m..(r + 1) * m]
                        .iter()
                        .zip(&pn[lo..hi])
                        .zip(&order[lo..hi])
                        .filter(|&(_, &j)| j != q)
                        .map(|((&gj, &nj), &j)| (nj - 2.0 * gj, j))
                        .collect();
                    keep_best(&mut v, cand);
                    out.push(((q as usize - qstart) * nprobe + slot as usize, v));
                }
                out
            })
            .collect();
        let mut slots: Vec<Vec<(f32, u32)>> = vec![Vec::new(); (qend - qstart) * nprobe];
        for list in found {
            for (at, v) in list {
                slots[at] = v;
            }
        }
        let pools: Vec<Vec<(f32, u32)>> = (qstart..qend)
            .into_par_iter()
            .map(|i| {
                let r = i - qstart;
                let mut pool: Vec<(f32, u32)> = slots[r * nprobe..(r + 1) * nprobe].concat();
                if pool.len() < k {
                    // Too few rows in the probed cells: search all of them.
                    pool = (0..n as u32)
                        .filter(|&j| j as usize != i)
                        .map(|j| (0.0, j))
                        .collect();
                } else {
                    keep_best(&mut pool, cand);
                }
                pool
            })
            .collect();
        drop(slots);
        rerank_rows(
            x,
            d,
            qstart,
            &pools,
            k,
            &mut indices[qstart * k..qend * k],
            &mut distances[qstart * k..qend * k],
        );
    }
    KnnGraph {
        n,
        k,
        indices,
        distances,
    }
}

/// Share of the true `g.k` nearest neighbours that `g` found, over `samples` seeded query
/// rows (exact distances; a found neighbour at the same distance as a true one counts).
pub fn estimate_recall(
    x: &[f32],
    n: usize,
    d: usize,
    g: &KnnGraph,
    samples: usize,
    seed: u64,
) -> f64 {
    let k = g.k;
    if k == 0 || n < 2 {
        return 1.0;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x2ec_a11);
    let queries: Vec<usize> = (0..samples.min(n))
        .map(|_| rng.random_range(0..n))
        .collect();
    let hits: usize = queries
        .par_iter()
        .map(|&i| {
            let xi = &x[i * d..(i + 1) * d];
            let mut all: Vec<f64> = (0..n)
                .filter(|&j| j != i)
                .map(|j| sq_dist_f64(xi, &x[j * d..(j + 1) * d]))
                .collect();
            all.select_nth_unstable_by(k - 1, |a, b| a.total_cmp(b));
            let kth = all[k - 1];
            g.indices[i * k..(i + 1) * k]
                .iter()
                .filter(|&&j| sq_dist_f64(xi, &x[j as usize * d..(j as usize + 1) * d]) <= kth)
                .count()
        })
        .sum();
    hits as f64 / (queries.len() * k) as f64
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

    /// 40 clusters of 3000 points in 24 dimensions, each with a low-rank (4-d) spread plus
    /// small isotropic noise.
    fn clustered(n: usize, d: usize) -> Vec<f32> {
        use rand_distr::{Distribution, StandardNormal};
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut g = || -> f32 { StandardNormal.sample(&mut rng) };
        let clusters = 40;
        let centres: Vec<f32> = (0..clusters * d).map(|_| 4.0 * g()).collect();
        let bases: Vec<f32> = (0..clusters * 4 * d).map(|_| g()).collect();
        let mut x = Vec::with_capacity(n * d);
        for i in 0..n {
            let c = i % clusters;
            let z: [f32; 4] = [g(), g(), g(), g()];
            for j in 0..d {
                let mut v = centres[c * d + j] + 0.05 * g();
                for (t, zt) in z.iter().enumerate() {
                    v += zt * bases[(c * 4 + t) * d + j];
                }
                x.push(v);
            }
        }
        x
    }

    fn recall(a: &KnnGraph, b: &KnnGraph) -> f64 {
        let k = a.k;
        let hits: usize = (0..a.n)
            .map(|i| {
                let want = &b.indices[i * k..(i + 1) * k];
                a.indices[i * k..(i + 1) * k]
                    .iter()
                    .filter(|j| want.contains(j))
                    .count()
            })
            .sum();
        hits as f64 / (a.n * k) as f64
    }

    #[test]
    fn approximate_knn_has_high_recall_and_ignores_the_thread_count() {
        let (n, d, k) = (3000, 24, 32);
        let x = clustered(n, d);
        let exact = exact_knn(&x, n, d, k);
        let cfg = KnnConfig {
            method: KnnMethod::Approximate,
            ..KnnConfig::default()
        };
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| knn(&x, n, d, k, &cfg, 5))
        };
        let one = run(1);
        let r = recall(&one, &exact);
        assert!(r >= 0.95, "recall@{k} = {r}");
        assert_eq!(one, run(3));
        assert_eq!(one, run(1));
        // Every list has k distinct neighbours, none of them the query itself.
        for i in 0..n {
            let row = &one.indices[i * k..(i + 1) * k];
            assert!(row.iter().all(|&j| j as usize != i));
            let mut s = row.to_vec();
            s.sort();
            s.dedup();
            assert_eq!(s.len(), k);
        }
        let est = estimate_recall(&x, n, d, &one, 200, 0);
        assert!((est - r).abs() < 0.05, "estimate {est} vs {r}");
    }

    #[test]
    fn approximate_knn_with_every_cell_probed_is_exact() {
        let (n, d, k) = (500, 8, 10);
        let x = clustered(n, d);
        assert_eq!(
            approximate_knn(&x, n, d, k, 4, 4, 0),
            exact_knn(&x, n, d, k)
        );
        // Tiny cells (fewer rows than k) fall back to an exhaustive search.
        let g = approximate_knn(&x, n, d, k, 400, 1, 0);
        assert!(recall(&g, &exact_knn(&x, n, d, k)) > 0.5);
    }

    /// The AVX2 kernel and the portable one give the same bits, for every length remainder.
    #[test]
    fn sq_dist_paths_agree_bit_for_bit() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for len in [0usize, 1, 5, 15, 16, 17, 31, 32, 33, 100, 1027] {
            let a: Vec<f32> = (0..len).map(|_| rng.random::<f32>() * 4.0 - 2.0).collect();
            let b: Vec<f32> = (0..len).map(|_| rng.random::<f32>() * 1e-3).collect();
            let portable = sq_dist_f64_body(&a, &b);
            assert_eq!(
                sq_dist_f64(&a, &b).to_bits(),
                portable.to_bits(),
                "len {len}"
            );
            let naive: f64 = a
                .iter()
                .zip(&b)
                .map(|(&p, &q)| (p as f64 - q as f64).powi(2))
                .sum();
            assert!(
                (portable - naive).abs() <= 1e-12 * naive.max(1.0),
                "len {len}"
            );
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
