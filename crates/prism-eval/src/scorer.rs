//! Perturbed inputs queued for shared forward passes, each scored for its target class.
//!
//! The faithfulness metrics make many perturbed copies of every sample; the [`Scorer`] collects
//! them into forward batches of a fixed size (copies of different samples and steps mixed) and
//! files each score under the (row, column) its caller names.

use prism_model::{Float, Model, Tensor};

use crate::error::{EvalError, Result};
use crate::target_scores;

/// How an output row is turned into a number for the target class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Score {
    /// The raw output (logit), summed over positions for outputs with more axes.
    Logit,
    /// The softmax probability over the classes (axis 1 of an N × classes output).
    Softmax,
    /// 1 when the target is the arg-max class (the first maximum), else 0.
    Hit,
}

/// Scores of `out` (N × classes, or N × classes × … for [`Score::Logit`]) for `targets`.
pub fn scores<T: Float>(out: &Tensor<T>, targets: &[usize], score: Score) -> Result<Vec<f64>> {
    if score == Score::Logit {
        return target_scores(out, targets);
    }
    let shape = out.shape();
    if shape.len() != 2 || targets.len() != shape[0] {
        return Err(EvalError::Invalid(format!(
            "this metric needs an N × classes model output for {} samples, got shape {shape:?}",
            targets.len()
        )));
    }
    let c = shape[1];
    targets
        .iter()
        .enumerate()
        .map(|(s, &t)| {
            if t >= c {
                return Err(EvalError::Invalid(format!(
                    "target class {t} is out of range: the model has {c} classes"
                )));
            }
            let row: Vec<f64> = out.data()[s * c..(s + 1) * c]
                .iter()
                .map(|v| v.f64())
                .collect();
            Ok(match score {
                Score::Softmax => {
                    let m = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
                    let z: f64 = row.iter().map(|v| (v - m).exp()).sum();
                    (row[t] - m).exp() / z
                }
                // numpy's argmax: the first maximum
                _ => {
                    let best = row
                        .iter()
                        .enumerate()
                        .fold(0, |b, (i, &v)| if v > row[b] { i } else { b });
                    f64::from(u8::from(best == t))
                }
            })
        })
        .collect()
}

/// Perturbed inputs waiting for a forward pass; each score lands in `out[row][col]`.
pub struct Scorer<'a, T> {
    model: &'a Model,
    tail: Vec<usize>,
    cap: usize,
    per: usize,
    score: Score,
    data: Vec<T>,
    owners: Vec<(usize, usize, usize)>,
}

impl<'a, T: Float> Scorer<'a, T> {
    /// A scorer for inputs of one sample's shape `tail`, `cap` inputs per forward pass.
    pub fn new(model: &'a Model, tail: &[usize], cap: usize, score: Score) -> Result<Self> {
        if cap == 0 {
            return Err(EvalError::Invalid("the batch size must be positive".into()));
        }
        let per = tail.iter().product();
        Ok(Scorer {
            model,
            tail: tail.to_vec(),
            cap,
            per,
            score,
            data: Vec::with_capacity(cap * per),
            owners: Vec::with_capacity(cap),
        })
    }

    /// Queues one input (`per` values) whose score for `target` goes to `out[row][col]`;
    /// runs the model when the batch is full. Returns the number of inputs scored.
    pub fn push(
        &mut self,
        input: &[T],
        target: usize,
        (row, col): (usize, usize),
        out: &mut [Vec<f64>],
    ) -> Result<usize> {
        if input.len() != self.per {
            return Err(EvalError::Invalid(format!(
                "a perturbed input of {} values for samples of shape {:?}",
                input.len(),
                self.tail
            )));
        }
        self.data.extend_from_slice(input);
        self.owners.push((row, col, target));
        if self.owners.len() == self.cap {
            return self.flush(out);
        }
        Ok(0)
    }

    /// Runs the model on the queued inputs. Returns the number scored.
    pub fn flush(&mut self, out: &mut [Vec<f64>]) -> Result<usize> {
        let n = self.owners.len();
        if n == 0 {
            return Ok(0);
        }
        let mut shape = vec![n];
        shape.extend_from_slice(&self.tail);
        let data = std::mem::replace(&mut self.data, Vec::with_capacity(self.cap * self.per));
        let y = self.model.forward(vec![Tensor::new(shape, data)?])?;
        let y = y
            .first()
            .ok_or_else(|| EvalError::Invalid("the model has no output".into()))?;
        let targets: Vec<usize> = self.owners.iter().map(|o| o.2).collect();
        for (&(r, c, _), s) in self.owners.iter().zip(scores(y, &targets, self.score)?) {
            out[r][c] = s;
        }
        self.owners.clear();
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_and_hit_scores_read_the_target_row() {
        let out = Tensor::new(vec![2, 3], vec![1.0f64, 2.0, 0.0, 5.0, 5.0, 1.0]).unwrap();
        let p = scores(&out, &[1, 0], Score::Softmax).unwrap();
        let z0 = 1f64.exp() + 2f64.exp() + 1.0;
        assert!((p[0] - 2f64.exp() / z0).abs() < 1e-12);
        // ties: the first maximum wins, as numpy's argmax
        assert_eq!(scores(&out, &[1, 0], Score::Hit).unwrap(), vec![1.0, 1.0]);
        assert_eq!(scores(&out, &[0, 1], Score::Hit).unwrap(), vec![0.0, 0.0]);
        assert!(scores(&out, &[3, 0], Score::Softmax).is_err());
    }
}
