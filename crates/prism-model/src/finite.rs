//! Non-finite values (NaN, ±Inf): finding them, counting them per sample, and the policy that
//! decides whether they are an error.
//!
//! A NaN in an input batch usually means a broken preprocessing step (a division by a zero
//! standard deviation, an image that failed to decode into garbage). Left alone it flows through
//! the model into plausible-looking logits, relevance and evaluation tables. Prism therefore
//! refuses non-finite inputs by default ([`NonFinite::Error`]), checks what it computes (model
//! outputs, relevance) and, when a result is non-finite, names the node where the first
//! non-finite value appeared. [`NonFinite::Allow`] turns all of this off for the rare data where
//! NaN or Inf is meant (`--allow-nonfinite` in the CLI, `allow_nonfinite=True` in Python).

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::tensor::{Float, Tensor};

/// What a non-finite value in an input or a result means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NonFinite {
    /// An error naming the samples (inputs) or the node where it first appeared (results).
    #[default]
    Error,
    /// Carry on: NaN and Inf flow through like any other value; nothing is checked.
    Allow,
}

impl NonFinite {
    /// `Allow` when `allow`, else `Error`.
    pub fn allow_if(allow: bool) -> Self {
        if allow {
            NonFinite::Allow
        } else {
            NonFinite::Error
        }
    }

    /// Whether values are checked.
    pub fn checks(self) -> bool {
        self == NonFinite::Error
    }
}

/// When runs under [`NonFinite::Error`] watch every node (to name where a non-finite value
/// first appeared) rather than only their results: 0 = debug builds always, release builds only
/// to explain a non-finite result (the default); 1 = always; 2 = only to explain a result.
static WATCH: AtomicU8 = AtomicU8::new(0);

/// How runs look for the origin of a non-finite result (see [`watch_every_run`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchMode {
    /// Debug builds watch every node on every run; release builds check the results and run
    /// again watching when one is not finite.
    Auto,
    /// Every run watches every node.
    Always,
    /// Runs check their results and run again watching when one is not finite (release's way;
    /// tests of that path set it).
    OnFailure,
}

/// Sets how runs look for the origin of non-finite results, for the whole process.
pub fn set_watch_mode(mode: WatchMode) {
    let v = match mode {
        WatchMode::Auto => 0,
        WatchMode::Always => 1,
        WatchMode::OnFailure => 2,
    };
    WATCH.store(v, Ordering::Relaxed);
}

/// Whether a checked run watches every node from the start (see [`WatchMode`]).
pub fn watch_every_run() -> bool {
    match WATCH.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => cfg!(debug_assertions),
    }
}

/// Whether any value of `data` is NaN or ±Inf (a fast scan, no allocation).
pub fn any_nonfinite<T: Float>(data: &[T]) -> bool {
    // Chunked so the compiler can vectorise the inner fold.
    data.chunks(256)
        .any(|c| c.iter().fold(false, |bad, v| bad | !v.f64().is_finite()))
}

/// How many samples are listed by number in a [`NonFiniteReport`]'s message.
const LISTED: usize = 8;

/// Where the non-finite values of a batch are: counts, and the samples (first axis) that hold
/// them, numbered from `offset` (the batch's first sample in the whole run).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NonFiniteReport {
    /// NaN values.
    pub nan: usize,
    /// +Inf and -Inf values.
    pub inf: usize,
    /// Samples holding at least one (numbered from the run's first sample), ascending.
    pub samples: Vec<usize>,
    /// Samples in the batch.
    pub of: usize,
}

impl NonFiniteReport {
    /// The report for `t` (first axis = samples; a scalar or empty tensor is one sample),
    /// `None` when every value is finite. Samples are numbered from `offset`.
    pub fn scan<T: Float>(t: &Tensor<T>, offset: usize) -> Option<NonFiniteReport> {
        if !any_nonfinite(t.data()) {
            return None;
        }
        let n = t.shape().first().copied().unwrap_or(1).max(1);
        let per = (t.len() / n).max(1);
        let (mut nan, mut inf) = (0, 0);
        let mut samples = Vec::new();
        for (i, row) in t.data().chunks(per).enumerate() {
            let mut here = false;
            for v in row {
                let v = v.f64();
                if v.is_nan() {
                    nan += 1;
                    here = true;
                } else if v.is_infinite() {
                    inf += 1;
                    here = true;
                }
            }
            if here {
                samples.push(offset + i);
            }
        }
        Some(NonFiniteReport {
            nan,
            inf,
            samples,
            of: n,
        })
    }

    /// This report with its samples renumbered from `offset` (for a batch of a longer run).
    pub fn shifted(self, offset: usize) -> Self {
        self.renumbered(|s| s + offset)
    }

    /// This report with each sample number `s` replaced by `number(s)` (a batch's samples as
    /// dataset indices, say).
    pub fn renumbered(mut self, number: impl Fn(usize) -> usize) -> Self {
        self.samples.iter_mut().for_each(|s| *s = number(*s));
        self
    }
}

impl fmt::Display for NonFiniteReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds = match (self.nan, self.inf) {
            (n, 0) => format!("{n} NaN"),
            (0, i) => format!("{i} ±Inf"),
            (n, i) => format!("{n} NaN and {i} ±Inf"),
        };
        let k = self.samples.len();
        let listed: Vec<String> = self
            .samples
            .iter()
            .take(LISTED)
            .map(ToString::to_string)
            .collect();
        let more = if k > LISTED {
            format!(", … ({} more)", k - LISTED)
        } else {
            String::new()
        };
        write!(
            f,
            "{kinds} value{} in {k} of {} sample{} (sample{} {}{more})",
            if self.nan + self.inf == 1 { "" } else { "s" },
            self.of,
            if self.of == 1 { "" } else { "s" },
            if k == 1 { "" } else { "s" },
            listed.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_samples() {
        let t = Tensor::new(
            vec![4, 2],
            vec![
                0.0,
                f32::NAN,
                1.0,
                2.0,
                f32::INFINITY,
                f32::NEG_INFINITY,
                3.0,
                4.0,
            ],
        )
        .unwrap();
        let r = NonFiniteReport::scan(&t, 10).unwrap();
        assert_eq!((r.nan, r.inf, r.of), (1, 2, 4));
        assert_eq!(r.samples, vec![10, 12]);
        assert_eq!(
            r.to_string(),
            "1 NaN and 2 ±Inf values in 2 of 4 samples (samples 10, 12)"
        );
        let ok = Tensor::new(vec![2], vec![1.0f64, -1e300]).unwrap();
        assert!(NonFiniteReport::scan(&ok, 0).is_none());
    }

    #[test]
    fn long_lists_are_cut() {
        let t = Tensor::new(vec![20, 1], vec![f64::NAN; 20]).unwrap();
        let s = NonFiniteReport::scan(&t, 0).unwrap().to_string();
        assert!(s.contains("20 NaN values in 20 of 20 samples"), "{s}");
        assert!(s.contains("7, … (12 more)"), "{s}");
    }

    #[test]
    fn any_nonfinite_finds_the_last_value() {
        let mut v = vec![0.5f32; 1000];
        assert!(!any_nonfinite(&v));
        v[999] = f32::NAN;
        assert!(any_nonfinite(&v));
    }
}
