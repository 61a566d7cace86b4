//! SplitMix64: the small, fully specified generator behind every random choice of the
//! evaluation (random patch orders, uniform-noise baselines, re-drawn weights, weight noise).
//!
//! It is used instead of a library generator so that `scripts/eval_reference.py` can reproduce
//! the random orders and noise bit for bit in a few lines of Python:
//!
//! ```text
//! next():  state += 0x9E3779B97F4A7C15;  z = state
//!          z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;  z = (z ^ (z >> 27)) * 0x94D049BB133111EB
//!          return z ^ (z >> 31)                          (all arithmetic mod 2^64)
//! uniform(): (next() >> 11) * 2^-53                       in [0, 1)
//! stream(seed, a, b): state = mix(seed + mix(a * 2^16 + b))  where mix is next()'s finaliser
//! ```

/// The SplitMix64 generator (Steele, Lea & Flood 2014).
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output finaliser: a bijective 64-bit mixer.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Stream ids: which random choice a stream serves.
pub mod purpose {
    /// A random patch order.
    pub const ORDER: u64 = 1;
    /// A uniform-noise baseline image.
    pub const UNIFORM: u64 = 2;
    /// Re-drawn layer weights.
    pub const WEIGHTS: u64 = 3;
    /// Faithfulness correlation's random feature subsets.
    pub const SUBSETS: u64 = 4;
    /// ROAD's imputation noise.
    pub const ROAD_NOISE: u64 = 5;
    /// Gaussian noise added to the weights (`weight_noise`).
    pub const WEIGHT_NOISE: u64 = 6;
}

impl SplitMix64 {
    pub fn new(state: u64) -> Self {
        SplitMix64 { state }
    }

    /// An independent stream for (`a`, `b`), e.g. (sample index, purpose), under `seed`.
    pub fn stream(seed: u64, a: u64, b: u64) -> Self {
        SplitMix64::new(mix(
            seed.wrapping_add(mix(a.wrapping_mul(1 << 16).wrapping_add(b)))
        ))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix(self.state)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal by Box–Muller: `√(−2 ln(1 − u₁)) · cos(2π u₂)` from two uniforms (one
    /// draw per pair; the sine is not kept, so each value costs two uniforms).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform();
        let u2 = self.uniform();
        (-2.0 * (1.0 - u1).ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// `k` distinct values of `0..n` in draw order (a partial Fisher–Yates from the front:
    /// step `j` swaps `j` with `j + next() mod (n − j)`). `k` is capped at `n`.
    pub fn subset(&mut self, n: usize, k: usize) -> Vec<usize> {
        let k = k.min(n);
        let mut p: Vec<usize> = (0..n).collect();
        for j in 0..k {
            let r = j + (self.next_u64() % (n - j) as u64) as usize;
            p.swap(j, r);
        }
        p.truncate(k);
        p
    }

    /// A uniformly shuffled `0..n` (Fisher–Yates from the back, `next() mod (j + 1)`).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for j in (1..n).rev() {
            let r = (self.next_u64() % (j as u64 + 1)) as usize;
            p.swap(j, r);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_published_splitmix64_sequence() {
        // Reference values of SplitMix64 seeded with 1234567 (from the original C code).
        let mut r = SplitMix64::new(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
        assert_eq!(r.next_u64(), 9817491932198370423);
    }

    #[test]
    fn permutation_is_a_permutation_and_depends_on_the_stream() {
        let a = SplitMix64::stream(7, 0, purpose::ORDER).permutation(50);
        let b = SplitMix64::stream(7, 1, purpose::ORDER).permutation(50);
        let mut s = a.clone();
        s.sort_unstable();
        assert_eq!(s, (0..50).collect::<Vec<_>>());
        assert_ne!(a, b);
        assert_eq!(a, SplitMix64::stream(7, 0, purpose::ORDER).permutation(50));
    }

    #[test]
    fn subset_draws_distinct_values_and_normal_has_unit_variance() {
        let mut r = SplitMix64::stream(3, 0, purpose::SUBSETS);
        let s = r.subset(100, 30);
        let mut u = s.clone();
        u.sort_unstable();
        u.dedup();
        assert_eq!(u.len(), 30);
        assert!(s.iter().all(|&v| v < 100));
        assert_eq!(r.subset(5, 9).len(), 5);
        let mut g = SplitMix64::stream(3, 0, purpose::ROAD_NOISE);
        let v: Vec<f64> = (0..20000).map(|_| g.normal()).collect();
        let m = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64;
        assert!(m.abs() < 0.03 && (var - 1.0).abs() < 0.05, "{m} {var}");
    }
}
