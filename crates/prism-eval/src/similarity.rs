//! Similarity of two attribution maps: Spearman rank correlation, SSIM and top-k intersection,
//! as used by the model-parameter randomisation test (Adebayo et al. 2018).
//!
//! Maps are compared as 2-D planes: [`plane`] sums the channels, optionally takes the absolute
//! value (Quantus' `abs=True`, its MPRT default) and divides by the largest magnitude (Quantus'
//! `normalise_by_max`), which Spearman and top-k ignore and SSIM needs.

use prism_model::Float;

/// One sample's `c × h × w` attribution reduced to an `h × w` plane: channel sum, `|·|` when
/// `abs`, then divided by its largest magnitude (unless that is 0).
pub fn plane<T: Float>(sample: &[T], plane_len: usize, abs: bool) -> Vec<f64> {
    let mut p = vec![0.0; plane_len];
    for ch in sample.chunks(plane_len.max(1)) {
        p.iter_mut().zip(ch).for_each(|(a, v)| *a += v.f64());
    }
    if abs {
        p.iter_mut().for_each(|v| *v = v.abs());
    }
    let m = p.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if m > 0.0 {
        p.iter_mut().for_each(|v| *v /= m);
    }
    p
}

/// Ranks starting at 1, ties getting the mean of their ranks.
pub fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = mean;
        }
        i = j + 1;
    }
    r
}

/// Pearson correlation; NaN when either side is constant.
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len()) as f64;
    let ma = a.iter().sum::<f64>() / n;
    let mb = b.iter().sum::<f64>() / n;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    if saa == 0.0 || sbb == 0.0 {
        return f64::NAN;
    }
    sab / (saa.sqrt() * sbb.sqrt())
}

/// Spearman's rank correlation (Pearson of tie-averaged ranks, as scipy's `spearmanr`).
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    pearson(&ranks(a), &ranks(b))
}

/// Structural similarity of two `h × w` planes as scikit-image's `structural_similarity`
/// computes it by default: a uniform `7 × 7` window (smaller, odd, on small planes), sample
/// covariances, `K₁ = 0.01`, `K₂ = 0.03`, the data range `max − min` over both planes, and the
/// mean over the window positions that lie inside the plane.
pub fn ssim(a: &[f64], b: &[f64], h: usize, w: usize) -> f64 {
    let win = 7.min(h).min(w);
    let win = if win % 2 == 0 { win - 1 } else { win };
    if win == 0 {
        return f64::NAN;
    }
    let (lo, hi) = a
        .iter()
        .chain(b)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |m, &v| {
            (m.0.min(v), m.1.max(v))
        });
    let range = hi - lo;
    let c1 = (0.01 * range).powi(2);
    let c2 = (0.03 * range).powi(2);
    let np = (win * win) as f64;
    let cov_norm = if np > 1.0 { np / (np - 1.0) } else { 1.0 };
    let (mut total, mut count) = (0.0, 0usize);
    for y0 in 0..=h - win {
        for x0 in 0..=w - win {
            let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for y in y0..y0 + win {
                for x in x0..x0 + win {
                    let (p, q) = (a[y * w + x], b[y * w + x]);
                    sa += p;
                    sb += q;
                    saa += p * p;
                    sbb += q * q;
                    sab += p * q;
                }
            }
            let (ua, ub) = (sa / np, sb / np);
            let vaa = cov_norm * (saa / np - ua * ua);
            let vbb = cov_norm * (sbb / np - ub * ub);
            let vab = cov_norm * (sab / np - ua * ub);
            let s = ((2.0 * ua * ub + c1) * (2.0 * vab + c2))
                / ((ua * ua + ub * ub + c1) * (vaa + vbb + c2));
            total += s;
            count += 1;
        }
    }
    total / count as f64
}

/// Indices of the `k` largest values (ties: lower index first).
pub fn top_k(v: &[f64], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
    idx.truncate(k);
    idx
}

/// Fraction of the `k` most relevant positions of `a` that are also among those of `b`.
pub fn top_k_intersection(a: &[f64], b: &[f64], k: usize) -> f64 {
    let k = k.min(a.len()).max(1);
    let mut in_b = vec![false; b.len()];
    for i in top_k(b, k) {
        in_b[i] = true;
    }
    top_k(a, k).iter().filter(|&&i| in_b[i]).count() as f64 / k as f64
}

/// Mean of the finite values (NaN when there are none).
pub fn finite_mean(v: &[f64]) -> f64 {
    let f: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if f.is_empty() {
        f64::NAN
    } else {
        f.iter().sum::<f64>() / f.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_average_ties() {
        assert_eq!(ranks(&[10.0, 20.0, 10.0, 5.0]), vec![2.5, 4.0, 2.5, 1.0]);
    }

    #[test]
    fn spearman_is_one_for_monotone_maps_and_minus_one_reversed() {
        let a: Vec<f64> = (0..20).map(|i| i as f64).collect();
        let b: Vec<f64> = a.iter().map(|v| v.powi(3) + 1.0).collect();
        let c: Vec<f64> = a.iter().map(|v| -v.exp()).collect();
        assert!((spearman(&a, &b) - 1.0).abs() < 1e-12);
        assert!((spearman(&a, &c) + 1.0).abs() < 1e-12);
    }

    #[test]
    fn spearman_matches_scipy_with_ties() {
        // scipy.stats.spearmanr([1, 2, 2, 3, 5, 4], [2, 1, 3, 3, 6, 5]).statistic
        let r = spearman(
            &[1.0, 2.0, 2.0, 3.0, 5.0, 4.0],
            &[2.0, 1.0, 3.0, 3.0, 6.0, 5.0],
        );
        assert!((r - 0.8676470588235294).abs() < 1e-12, "{r}");
    }

    #[test]
    fn ssim_is_one_for_identical_planes_and_lower_for_noise() {
        let a: Vec<f64> = (0..100).map(|i| ((i * 37) % 17) as f64 / 17.0).collect();
        let b: Vec<f64> = (0..100).map(|i| ((i * 53) % 23) as f64 / 23.0).collect();
        assert!((ssim(&a, &a, 10, 10) - 1.0).abs() < 1e-12);
        assert!(ssim(&a, &b, 10, 10) < 0.5);
    }

    #[test]
    fn top_k_intersection_counts_shared_positions() {
        let a = [5.0, 4.0, 3.0, 2.0, 1.0];
        let b = [5.0, 0.0, 3.0, 0.0, 4.0];
        assert_eq!(top_k_intersection(&a, &b, 2), 0.5);
        assert_eq!(top_k_intersection(&a, &a, 3), 1.0);
    }

    #[test]
    fn plane_sums_channels_and_normalises_by_max() {
        let p = plane(&[1.0f32, -2.0, 1.0, -2.0], 2, false);
        assert_eq!(p, vec![0.5, -1.0]);
        assert_eq!(plane(&[1.0f32, -2.0, 1.0, -2.0], 2, true), vec![0.5, 1.0]);
    }
}
