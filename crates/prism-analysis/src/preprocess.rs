//! Preprocessing: attribution rows (C×H×W) → feature vectors, block by block.
//!
//! The variants follow CoRelAy's script (`spectral`, `absspectral`, `fullspectral`,
//! `histogram`). CoRelAy's `Normalize` divides by the *signed* sum, which blows up when the sum
//! is near 0; Prism does the same (to give the same features) but leaves a sample unscaled when
//! its sum is 0 or not finite, instead of producing inf/NaN, and counts such samples.

use crate::config::{PreprocessConfig, Variant};

/// Output length of one sample for a given input shape `[C, H, W]`.
pub fn feature_len(cfg: &PreprocessConfig, shape: [usize; 3]) -> usize {
    let [c, h, w] = pooled_shape(shape, cfg.pool);
    match cfg.variant {
        Variant::Spectral | Variant::Absspectral => h * w,
        Variant::Fullspectral => c * h * w,
        Variant::Histogram => c * cfg.histogram_bins,
    }
}

fn pooled_shape([c, h, w]: [usize; 3], p: usize) -> [usize; 3] {
    [c, h.div_ceil(p), w.div_ceil(p)]
}

/// Preprocesses `rows` samples (row-major, each `C×H×W`) into `out` (appended, each
/// [`feature_len`] values). Returns how many samples had a zero or non-finite sum.
pub fn preprocess_block(
    cfg: &PreprocessConfig,
    shape: [usize; 3],
    block: &[f32],
    out: &mut Vec<f32>,
) -> usize {
    let len: usize = shape.iter().product();
    let mut degenerate = 0;
    let mut pooled = Vec::new();
    let mut tmp = Vec::new();
    for sample in block.chunks_exact(len) {
        let (s, pshape) = if cfg.pool > 1 {
            sum_pool(sample, shape, cfg.pool, &mut pooled);
            (pooled.as_slice(), pooled_shape(shape, cfg.pool))
        } else {
            (sample, shape)
        };
        let [c, h, w] = pshape;
        let hw = h * w;
        match cfg.variant {
            Variant::Spectral | Variant::Absspectral => {
                tmp.clear();
                tmp.resize(hw, 0.0f64);
                let abs = cfg.variant == Variant::Absspectral;
                for ch in 0..c {
                    for (t, &v) in tmp.iter_mut().zip(&s[ch * hw..(ch + 1) * hw]) {
                        *t += if abs { (v as f64).abs() } else { v as f64 };
                    }
                }
                degenerate += normalise_into(&tmp, out);
            }
            Variant::Fullspectral => {
                tmp.clear();
                tmp.extend(s.iter().map(|&v| v as f64));
                degenerate += normalise_into(&tmp, out);
            }
            Variant::Histogram => {
                tmp.clear();
                tmp.extend(s.iter().map(|&v| v as f64));
                let mut normed = Vec::with_capacity(tmp.len());
                degenerate += normalise_into(&tmp, &mut normed);
                for ch in 0..c {
                    histogram_density(&normed[ch * hw..(ch + 1) * hw], cfg.histogram_bins, out);
                }
            }
        }
    }
    degenerate
}

/// Divides by the signed sum (CoRelAy's `Normalize`); unscaled if the sum is 0 or not finite.
fn normalise_into(values: &[f64], out: &mut Vec<f32>) -> usize {
    let sum: f64 = values.iter().sum();
    if sum != 0.0 && sum.is_finite() {
        out.extend(values.iter().map(|v| (v / sum) as f32));
        0
    } else {
        out.extend(values.iter().map(|&v| v as f32));
        1
    }
}

/// Sum pooling over p×p windows (partial windows at the edges sum what they cover).
fn sum_pool(sample: &[f32], [c, h, w]: [usize; 3], p: usize, out: &mut Vec<f32>) {
    let (ph, pw) = (h.div_ceil(p), w.div_ceil(p));
    out.clear();
    out.resize(c * ph * pw, 0.0);
    for ch in 0..c {
        for y in 0..h {
            let row = &sample[(ch * h + y) * w..(ch * h + y + 1) * w];
            let orow = &mut out[(ch * ph + y / p) * pw..(ch * ph + y / p + 1) * pw];
            for (x, &v) in row.iter().enumerate() {
                orow[x / p] += v;
            }
        }
    }
}

/// numpy's `histogram(x, bins, density=True)`: range = [min, max] (±0.5 when equal), last bin
/// closed, values = count / (n · bin width).
fn histogram_density(x: &[f32], bins: usize, out: &mut Vec<f32>) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for &v in x {
        let v = v as f64;
        if v.is_finite() {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    if !lo.is_finite() {
        out.extend(std::iter::repeat_n(0.0, bins));
        return;
    }
    if lo == hi {
        lo -= 0.5;
        hi += 0.5;
    }
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0usize; bins];
    let mut n = 0usize;
    for &v in x {
        let v = v as f64;
        if !v.is_finite() {
            continue;
        }
        let mut b = ((v - lo) / width) as usize;
        if b >= bins {
            b = bins - 1;
        }
        counts[b] += 1;
        n += 1;
    }
    let scale = 1.0 / (n.max(1) as f64 * width);
    out.extend(counts.iter().map(|&c| (c as f64 * scale) as f32));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(variant: Variant, pool: usize) -> PreprocessConfig {
        PreprocessConfig {
            variant,
            pool,
            histogram_bins: 4,
        }
    }

    #[test]
    fn spectral_sums_channels_and_normalises_by_the_spatial_sum() {
        // C=2, H=1, W=2
        let x = [1.0f32, 2.0, 3.0, 4.0];
        let mut out = Vec::new();
        let bad = preprocess_block(&cfg(Variant::Spectral, 1), [2, 1, 2], &x, &mut out);
        assert_eq!(bad, 0);
        assert_eq!(out, vec![4.0 / 10.0, 6.0 / 10.0]);
    }

    #[test]
    fn absspectral_uses_absolute_values() {
        let x = [-1.0f32, 1.0];
        let mut out = Vec::new();
        preprocess_block(&cfg(Variant::Absspectral, 1), [1, 1, 2], &x, &mut out);
        assert_eq!(out, vec![0.5, 0.5]);
    }

    #[test]
    fn zero_sum_sample_is_left_unscaled_and_counted() {
        let x = [-1.0f32, 1.0];
        let mut out = Vec::new();
        let bad = preprocess_block(&cfg(Variant::Spectral, 1), [1, 1, 2], &x, &mut out);
        assert_eq!(bad, 1);
        assert_eq!(out, vec![-1.0, 1.0]);
    }

    #[test]
    fn pooling_keeps_the_sum_and_shrinks_each_side() {
        let x: Vec<f32> = (0..9).map(|v| v as f32).collect(); // 1×3×3
        let mut out = Vec::new();
        let c = cfg(Variant::Fullspectral, 2);
        preprocess_block(&c, [1, 3, 3], &x, &mut out);
        assert_eq!(out.len(), feature_len(&c, [1, 3, 3]));
        assert_eq!(out.len(), 4);
        let s: f32 = out.iter().sum();
        assert!((s - 1.0).abs() < 1e-6);
        assert!((out[0] - (0.0 + 1.0 + 3.0 + 4.0) / 36.0).abs() < 1e-6);
    }

    #[test]
    fn histogram_matches_numpy_density() {
        // numpy.histogram([0,1,2,3], bins=4, density=True) -> [1/3]*4 (width 0.75)
        let mut out = Vec::new();
        histogram_density(&[0.0, 1.0, 2.0, 3.0], 4, &mut out);
        for v in out {
            assert!((v - 1.0 / 3.0).abs() < 1e-6);
        }
    }
}
