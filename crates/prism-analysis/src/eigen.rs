//! The spectral embedding: the smallest eigenpairs of the normalised Laplacian L = I − M, i.e.
//! the largest of M = D^-½ W D^-½, in ViRelAy's layout.
//!
//! CoRelAy asks ARPACK for M's largest-*magnitude* eigenvalues (`which='LM'`), which also picks
//! large negative ones (high-frequency vectors useless for clustering); Prism takes the
//! algebraically largest, the correct end.
//!
//! Layout (as CoRelAy stores it, which ViRelAy plots): column j holds the eigenvector of M's
//! j-th largest-but-ordered-ascending eigenvalue λ_j, so the stored values 1 − λ_j are
//! *descending* and the last column is the trivial one (stored value ≈ 0); every row of the
//! eigenvector matrix is L2-normalised. Each eigenvector's sign is fixed (its largest-magnitude
//! entry is positive) so results are deterministic.
//!
//! Solvers: dense (faer's symmetric eigendecomposition, exact, for moderate N) and sparse
//! (Chebyshev-filtered subspace iteration with Rayleigh–Ritz, accepting only when every wanted
//! residual ‖Mv − λv‖ is below the tolerance; no Lanczos, whose faer version can hang).

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par, Side};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

use crate::config::{EigenConfig, EigenSolver};
use crate::graph::Csr;

/// The eigen stage's result.
#[derive(Debug, Clone, PartialEq)]
pub struct SpectralEmbedding {
    pub n: usize,
    /// Number of eigenpairs kept (n_eigval, or N for small classes).
    pub d: usize,
    /// Laplacian eigenvalues 1 − λ in ViRelAy's order (descending; last ≈ 0).
    pub eigenvalues: Vec<f64>,
    /// Row-major `n × d`, rows L2-normalised.
    pub vectors: Vec<f32>,
    /// Largest residual ‖Mv − λv‖ of the kept pairs (before row normalisation).
    pub max_residual: f64,
    /// `dense` or `sparse`.
    pub solver: &'static str,
}

impl SpectralEmbedding {
    /// The Laplacian eigenvalues in ascending order (0 first).
    pub fn laplacian_ascending(&self) -> Vec<f64> {
        self.eigenvalues.iter().rev().copied().collect()
    }
}

/// Eigengap score: `gaps[k]` = μ_k − μ_{k−1} for ascending Laplacian eigenvalues μ, and the
/// number of clusters k ∈ [2, max_k] with the largest gap (1 if there are fewer than 3 values).
pub fn eigengap(laplacian_ascending: &[f64], max_k: usize) -> (Vec<f64>, usize) {
    let mu = laplacian_ascending;
    let gaps: Vec<f64> = (0..mu.len())
        .map(|k| if k == 0 { 0.0 } else { mu[k] - mu[k - 1] })
        .collect();
    let hi = max_k.min(mu.len().saturating_sub(1));
    let mut best = 1;
    let mut best_gap = f64::NEG_INFINITY;
    for (k, &g) in gaps.iter().enumerate().take(hi + 1).skip(2) {
        if g > best_gap {
            best_gap = g;
            best = k;
        }
    }
    (gaps, best)
}

/// Computes the spectral embedding of the normalised adjacency `m`.
pub fn spectral_embedding(
    m: &Csr,
    cfg: &EigenConfig,
    seed: u64,
) -> Result<SpectralEmbedding, String> {
    // faer's decompositions (dense eigen, QR) use the global parallelism; sequential keeps them
    // bitwise reproducible (parallel reductions reorder sums, which rotates degenerate
    // eigenspaces). Prism's explicit GEMMs pass their own `Par` and are unaffected.
    faer::set_global_parallelism(Par::Seq);
    let n = m.n;
    let d = cfg.n_eigval.min(n);
    if n == 0 {
        return Err("no samples".into());
    }
    let dense = match cfg.solver {
        EigenSolver::Dense => true,
        EigenSolver::Sparse => false,
        EigenSolver::Auto => n <= cfg.dense_max_n,
    };
    // A subspace method needs a block larger than d; tiny problems go dense.
    let dense = dense || n <= (d + 16).max(64);
    let (lambda, vecs, residual, solver) = if dense {
        let (l, v) = dense_top(m, d)?;
        let r = max_residual(m, &l, &v, d);
        (l, v, r, "dense")
    } else {
        let (l, v, r) = chebyshev_subspace(m, d, cfg, seed)?;
        (l, v, r, "sparse")
    };
    // lambda ascending (λ_0 smallest of the kept block … λ_{d-1} ≈ 1); vecs row-major n×d.
    let eigenvalues: Vec<f64> = lambda.iter().map(|l| 1.0 - l).collect();
    let mut vectors = vec![0f32; n * d];
    let mut v = vecs;
    for c in 0..d {
        // Fix the sign: largest-magnitude entry positive (first one on ties).
        let mut best = 0;
        for i in 0..n {
            if v[i * d + c].abs() > v[best * d + c].abs() {
                best = i;
            }
        }
        if v[best * d + c] < 0.0 {
            for i in 0..n {
                v[i * d + c] = -v[i * d + c];
            }
        }
    }
    for i in 0..n {
        let row = &v[i * d..(i + 1) * d];
        let norm = row.iter().map(|x| x * x).sum::<f64>().sqrt();
        let s = if norm > 0.0 { 1.0 / norm } else { 0.0 };
        for c in 0..d {
            vectors[i * d + c] = (row[c] * s) as f32;
        }
    }
    Ok(SpectralEmbedding {
        n,
        d,
        eigenvalues,
        vectors,
        max_residual: residual,
        solver,
    })
}

/// Dense: the `d` largest eigenpairs of M, ascending, vectors row-major n×d.
fn dense_top(m: &Csr, d: usize) -> Result<(Vec<f64>, Vec<f64>), String> {
    let n = m.n;
    let mut a = Mat::<f64>::zeros(n, n);
    for i in 0..n {
        for p in m.indptr[i]..m.indptr[i + 1] {
            a[(i, m.indices[p] as usize)] = m.values[p];
        }
    }
    let evd = a
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| format!("dense eigendecomposition failed: {e:?}"))?;
    let s = evd.S();
    let u = evd.U();
    let first = n - d;
    let lambda: Vec<f64> = (first..n).map(|j| s[j]).collect();
    let mut v = vec![0f64; n * d];
    for i in 0..n {
        for c in 0..d {
            v[i * d + c] = u[(i, first + c)];
        }
    }
    Ok((lambda, v))
}

/// Y = M X for row-major X (n × cols).
fn spmm(m: &Csr, x: &[f64], cols: usize, y: &mut [f64]) {
    y.par_chunks_mut(cols).enumerate().for_each(|(i, yr)| {
        yr.fill(0.0);
        for p in m.indptr[i]..m.indptr[i + 1] {
            let j = m.indices[p] as usize;
            let w = m.values[p];
            let xr = &x[j * cols..(j + 1) * cols];
            for (a, &b) in yr.iter_mut().zip(xr) {
                *a += w * b;
            }
        }
    });
}

fn max_residual(m: &Csr, lambda: &[f64], v: &[f64], d: usize) -> f64 {
    let mut mv = vec![0f64; v.len()];
    spmm(m, v, d, &mut mv);
    let mut worst = 0f64;
    for (c, &l) in lambda.iter().enumerate() {
        let r: f64 = (0..m.n)
            .map(|i| (mv[i * d + c] - l * v[i * d + c]).powi(2))
            .sum::<f64>()
            .sqrt();
        worst = worst.max(r);
    }
    worst
}

/// Row-major slice → owned column-major matrix.
fn to_mat(x: &[f64], n: usize, b: usize) -> Mat<f64> {
    MatRef::from_row_major_slice(x, n, b).to_owned()
}

fn from_mat(m: MatRef<'_, f64>, out: &mut Vec<f64>) {
    let (n, b) = (m.nrows(), m.ncols());
    out.clear();
    out.resize(n * b, 0.0);
    for c in 0..b {
        for i in 0..n {
            out[i * b + c] = m[(i, c)];
        }
    }
}

/// Orthonormalises the columns of row-major X (thin QR).
fn orthonormalise(x: &mut Vec<f64>, n: usize, b: usize) {
    let q = to_mat(x, n, b).qr().compute_thin_Q();
    from_mat(q.as_ref(), x);
}

/// Rayleigh–Ritz on orthonormal X: returns Ritz values (descending) and rotates X in place.
fn rayleigh_ritz(m: &Csr, x: &mut Vec<f64>, n: usize, b: usize) -> Result<Vec<f64>, String> {
    let mut mx = vec![0f64; n * b];
    spmm(m, x, b, &mut mx);
    let xm = to_mat(x, n, b);
    let mxm = to_mat(&mx, n, b);
    let mut h = Mat::<f64>::zeros(b, b);
    // Sequential: a parallel split of the long inner dimension would reorder the sums.
    matmul(
        h.as_mut(),
        Accum::Replace,
        xm.transpose(),
        mxm.as_ref(),
        1.0,
        Par::Seq,
    );
    let hs = Mat::<f64>::from_fn(b, b, |i, j| 0.5 * (h[(i, j)] + h[(j, i)]));
    let evd = hs
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| format!("Rayleigh–Ritz eigendecomposition failed: {e:?}"))?;
    // Descending order.
    let theta: Vec<f64> = (0..b).rev().map(|j| evd.S()[j]).collect();
    let q = Mat::<f64>::from_fn(b, b, |i, j| evd.U()[(i, b - 1 - j)]);
    let mut rotated = Mat::<f64>::zeros(n, b);
    matmul(
        rotated.as_mut(),
        Accum::Replace,
        xm.as_ref(),
        q.as_ref(),
        1.0,
        Par::rayon(0),
    );
    from_mat(rotated.as_ref(), x);
    Ok(theta)
}

/// Chebyshev-filtered subspace iteration for the `d` largest eigenpairs of M (spectrum in
/// [−1, 1]). Returns (λ ascending, vectors row-major n×d, max residual).
fn chebyshev_subspace(
    m: &Csr,
    d: usize,
    cfg: &EigenConfig,
    seed: u64,
) -> Result<(Vec<f64>, Vec<f64>, f64), String> {
    let n = m.n;
    let b = (d + (d / 2).max(8)).min(n);
    let degree = 12;
    let lower = -1.0f64;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_e19e);
    let mut x: Vec<f64> = (0..n * b)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    orthonormalise(&mut x, n, b);
    let mut theta = rayleigh_ritz(m, &mut x, n, b)?;
    let mut y_prev = vec![0f64; n * b];
    let mut y = vec![0f64; n * b];
    let mut tmp = vec![0f64; n * b];
    let mut worst = f64::INFINITY;
    for iteration in 0..cfg.max_iterations {
        // Damp [lower, cut], amplify (cut, 1]: cut = smallest Ritz value of the block.
        let cut = theta[b - 1].max(lower + 1e-3).min(theta[d - 1] - 1e-9);
        let e = (cut - lower) / 2.0;
        let c = (cut + lower) / 2.0;
        // y_prev = X, y = (M X − c X)/e, then y_{k+1} = 2 (M y_k − c y_k)/e − y_{k−1}.
        y_prev.copy_from_slice(&x);
        spmm(m, &x, b, &mut y);
        y.par_iter_mut()
            .zip(x.par_iter())
            .for_each(|(yv, &xv)| *yv = (*yv - c * xv) / e);
        for _ in 1..degree {
            spmm(m, &y, b, &mut tmp);
            tmp.par_iter_mut()
                .zip(y.par_iter())
                .zip(y_prev.par_iter())
                .for_each(|((t, &yv), &pv)| *t = 2.0 * (*t - c * yv) / e - pv);
            std::mem::swap(&mut y_prev, &mut y);
            std::mem::swap(&mut y, &mut tmp);
            let scale = y.iter().fold(0f64, |a, v| a.max(v.abs()));
            if scale > 1e150 {
                y.iter_mut().for_each(|v| *v /= scale);
                y_prev.iter_mut().for_each(|v| *v /= scale);
            }
        }
        std::mem::swap(&mut x, &mut y);
        orthonormalise(&mut x, n, b);
        theta = rayleigh_ritz(m, &mut x, n, b)?;
        // Residuals of the d wanted pairs.
        spmm(m, &x, b, &mut tmp);
        worst = (0..d)
            .map(|col| {
                (0..n)
                    .map(|i| (tmp[i * b + col] - theta[col] * x[i * b + col]).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .fold(0f64, f64::max);
        if worst <= cfg.tolerance {
            tracing::debug!(
                n,
                block = b,
                iterations = iteration + 1,
                residual = worst,
                "sparse eigensolver converged"
            );
            // Ascending order of the kept d: reverse the descending Ritz block.
            let lambda: Vec<f64> = (0..d).rev().map(|j| theta[j]).collect();
            let mut v = vec![0f64; n * d];
            for i in 0..n {
                for (slot, j) in (0..d).rev().enumerate() {
                    v[i * d + slot] = x[i * b + j];
                }
            }
            return Ok((lambda, v, worst));
        }
    }
    Err(format!(
        "the sparse eigensolver did not converge in {} iterations (largest residual {worst:.2e} \
         > tolerance {:.1e}); raise eigen.max_iterations or use eigen.solver = \"dense\"",
        cfg.max_iterations, cfg.tolerance
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eigengap_suggests_the_number_of_components() {
        let mu = [0.0, 0.0, 0.0, 0.5, 0.6, 0.7];
        let (_, k) = eigengap(&mu, 30);
        assert_eq!(k, 3);
    }
}
