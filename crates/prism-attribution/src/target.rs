//! Target resolution: which output class of each sample receives the initial relevance.

use prism_model::{Float, Tensor};

use crate::error::{AttributionError, Result};
use crate::{class_layout, Target};

/// The target class of each sample of an N × classes × … `output`: a fixed class, each
/// sample's arg-max (scores summed over positions; the first maximum on ties), or the given
/// per-sample classes, each checked against the number of classes.
pub fn resolve_targets<T: Float>(output: &Tensor<T>, target: &Target) -> Result<Vec<usize>> {
    let (n, c, inner) = class_layout(output.shape());
    if output.rank() < 2 {
        return Err(AttributionError::Target(format!(
            "the model's output has shape {:?}; expected N × classes",
            output.shape()
        )));
    }
    let check = |t: usize| {
        if t < c {
            Ok(t)
        } else {
            Err(AttributionError::Target(format!(
                "class {t} is out of range: the model has {c} classes (0..{})",
                c - 1
            )))
        }
    };
    match target {
        Target::Class(t) => Ok(vec![check(*t)?; n]),
        Target::PerSample(ts) => {
            if ts.len() != n {
                return Err(AttributionError::Target(format!(
                    "{} labels for {n} samples",
                    ts.len()
                )));
            }
            ts.iter().map(|&t| check(t)).collect()
        }
        Target::Predicted => Ok((0..n)
            .map(|i| {
                let row = &output.data()[i * c * inner..(i + 1) * c * inner];
                let score = |k: usize| {
                    (0..inner)
                        .map(|j| row[k * inner + j])
                        .fold(T::zero(), |a, b| a + b)
                };
                (0..c).fold(0, |best, k| if score(k) > score(best) { k } else { best })
            })
            .collect()),
    }
}
