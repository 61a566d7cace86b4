//! SplitMix64: the small, fully specified generator behind every random choice of the
//! evaluation (random patch orders, uniform-noise baselines, re-drawn weights).
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
}
