//! Target resolution: which output class of each sample receives the initial relevance.

use prism_model::{Float, Tensor};

use crate::error::{AttributionError, Result};
use crate::{class_layout, Target};

/// The target class of each sample of an N × classes × … `output`: a fixed class, each
/// sample's arg-max (scores summed over positions; the first maximum on ties), or the given
/// per-sample classes, each checked against the number of classes.
pub fn resolve_targets<T: Float>(output: &Tensor<T>, target: &Target) -> Result<Vec<usize>> {
    let (n, c, _) = class_layout(output.shape());
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
        Target::Position { .. } | Target::PositionPerSample(_) => {
            Err(AttributionError::Target(format!(
                "a target with a position needs an output of shape N × positions × classes \
                 and cannot be used here (output shape {:?})",
                output.shape()
            )))
        }
        Target::Predicted => Ok(predicted(output)),
        Target::Contrast { .. } | Target::Seeds(_) | Target::Negative | Target::Sign => {
            Ok(custom(output, target)?.0)
        }
    }
}

/// Each sample's arg-max class (scores summed over positions; the first maximum on ties).
fn predicted<T: Float>(output: &Tensor<T>) -> Vec<usize> {
    let (n, c, inner) = class_layout(output.shape());
    (0..n)
        .map(|i| {
            let row = &output.data()[i * c * inner..(i + 1) * c * inner];
            let score = |k: usize| {
                (0..inner)
                    .map(|j| row[k * inner + j])
                    .fold(T::zero(), |a, b| a + b)
            };
            (0..c).fold(0, |best, k| if score(k) > score(best) { k } else { best })
        })
        .collect()
}

/// The class of each sample and the one-hot-mode seed (output-shaped, C order) of a
/// contrast, a seed array, `negative` or `sign`.
fn custom<T: Float>(output: &Tensor<T>, target: &Target) -> Result<(Vec<usize>, Vec<f64>)> {
    let shape = output.shape();
    let (n, c, inner) = class_layout(shape);
    let single_logit = |what: &str| -> Result<()> {
        if c != 1 || inner != 1 {
            return Err(AttributionError::Target(format!(
                "target '{what}' is for a model with a single logit (output N × 1); this \
                 model's output has shape {shape:?}: name a class, or a contrast A-B"
            )));
        }
        Ok(())
    };
    match target {
        Target::Contrast { class, against } => {
            let check = |t: usize| {
                if t < c {
                    Ok(t)
                } else {
                    Err(AttributionError::Target(format!(
                        "class {t} is out of range: the model has {c} classes (0..{})",
                        c.saturating_sub(1)
                    )))
                }
            };
            let against = check(*against)?;
            let classes = match class {
                Some(k) => vec![check(*k)?; n],
                None => predicted(output),
            };
            let mut seed = vec![0.0; output.len()];
            for (i, &k) in classes.iter().enumerate() {
                for j in 0..inner {
                    seed[(i * c + k) * inner + j] += 1.0;
                    seed[(i * c + against) * inner + j] -= 1.0;
                }
            }
            Ok((classes, seed))
        }
        Target::Seeds(rows) => {
            if rows.shape() != shape {
                return Err(AttributionError::Target(format!(
                    "the seed array has shape {:?}; the model's output for these samples has \
                     shape {shape:?} (one row per sample, one value per output)",
                    rows.shape()
                )));
            }
            let per = (output.len() / n.max(1)).max(1);
            let classes = rows
                .values()
                .chunks(per)
                .map(|r| {
                    (0..r.len()).fold(0, |best, k| if r[k] > r[best] { k } else { best }) / inner
                })
                .collect();
            Ok((classes, rows.values().to_vec()))
        }
        Target::Negative => {
            single_logit("negative")?;
            Ok((vec![0; n], vec![-1.0; n]))
        }
        Target::Sign => {
            single_logit("sign")?;
            let seed = output
                .data()
                .iter()
                .map(|&y| if y >= T::zero() { 1.0 } else { -1.0 })
                .collect();
            Ok((vec![0; n], seed))
        }
        _ => Err(AttributionError::Target(
            "not a contrast, seed array, negative or sign target (internal)".into(),
        )),
    }
}

/// Targets resolved against an output: one class per sample, or for a positional target one
/// (position, class) per sample of an `N × positions × classes` output.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Resolved {
    Classes(Vec<usize>),
    Positions(Vec<(usize, usize)>),
    /// A seed other than a one-hot: each sample's class (for the record) and the one-hot-mode
    /// seed, output-shaped.
    Custom {
        classes: Vec<usize>,
        seed: Vec<f64>,
    },
}

impl Resolved {
    /// The class of each sample.
    pub fn classes(&self) -> Vec<usize> {
        match self {
            Resolved::Classes(c) => c.clone(),
            Resolved::Positions(p) => p.iter().map(|(_, c)| *c).collect(),
            Resolved::Custom { classes, .. } => classes.clone(),
        }
    }

    /// The position of each sample, for positional targets.
    pub fn positions(&self) -> Option<Vec<usize>> {
        match self {
            Resolved::Classes(_) | Resolved::Custom { .. } => None,
            Resolved::Positions(p) => Some(p.iter().map(|(q, _)| *q).collect()),
        }
    }
}

/// Resolves any target against `output`.
pub(crate) fn resolve<T: Float>(output: &Tensor<T>, target: &Target) -> Result<Resolved> {
    if target.is_positional() {
        resolve_positions(output, target).map(Resolved::Positions)
    } else if matches!(
        target,
        Target::Contrast { .. } | Target::Seeds(_) | Target::Negative | Target::Sign
    ) {
        let (classes, seed) = custom(output, target)?;
        Ok(Resolved::Custom { classes, seed })
    } else {
        resolve_targets(output, target).map(Resolved::Classes)
    }
}

/// The (position, class) of each sample for a positional target ([`Target::Position`],
/// [`Target::PositionPerSample`]) on an `N × positions × classes` output; positions and classes
/// are checked against the output's shape.
pub fn resolve_positions<T: Float>(
    output: &Tensor<T>,
    target: &Target,
) -> Result<Vec<(usize, usize)>> {
    let &[n, len, c] = output.shape() else {
        return Err(AttributionError::Target(format!(
            "a target with a position needs an output of shape N × positions × classes; this \
             one has shape {:?}",
            output.shape()
        )));
    };
    let check = |p: usize, k: usize| {
        if p >= len {
            Err(AttributionError::Target(format!(
                "position {p} is out of range: the output has {len} positions"
            )))
        } else if k >= c {
            Err(AttributionError::Target(format!(
                "class {k} is out of range: the output has {c} classes per position (0..{})",
                c.saturating_sub(1)
            )))
        } else {
            Ok((p, k))
        }
    };
    match target {
        Target::Position { position, class } => {
            let p = if *position < 0 {
                let back = position.unsigned_abs() as usize;
                len.checked_sub(back).ok_or_else(|| {
                    AttributionError::Target(format!(
                        "position {position} is out of range: the output has {len} positions"
                    ))
                })?
            } else {
                *position as usize
            };
            (0..n)
                .map(|i| {
                    let k = match class {
                        Some(k) => *k,
                        None => {
                            if p >= len {
                                return check(p, 0);
                            }
                            let row = &output.data()[(i * len + p) * c..(i * len + p + 1) * c];
                            (0..c).fold(0, |best, k| if row[k] > row[best] { k } else { best })
                        }
                    };
                    check(p, k)
                })
                .collect()
        }
        Target::PositionPerSample(v) => {
            if v.len() != n {
                return Err(AttributionError::Target(format!(
                    "{} (position, class) targets for {n} samples",
                    v.len()
                )));
            }
            v.iter().map(|&(p, k)| check(p, k)).collect()
        }
        _ => Err(AttributionError::Target(
            "not a positional target (internal)".into(),
        )),
    }
}

/// The initial relevance: at each sample's target, `1` or (with `logit`) the output's value
/// there; zero elsewhere. A custom seed ([`Resolved::Custom`]) as it is, or (with `logit`)
/// multiplied by the output element-wise.
pub(crate) fn seed<T: Float>(output: &Tensor<T>, r: &Resolved, logit: bool) -> Result<Tensor<T>> {
    use prism_model::backend::Backend;
    match r {
        Resolved::Classes(c) => Ok(prism_model::backend::Cpu.seed(output, c, logit)?),
        Resolved::Custom { seed, .. } => {
            if seed.len() != output.len() {
                return Err(AttributionError::Target(format!(
                    "a seed of {} values for an output of shape {:?}",
                    seed.len(),
                    output.shape()
                )));
            }
            let data = seed
                .iter()
                .zip(output.data())
                .map(|(&s, &y)| if logit { T::of(s) * y } else { T::of(s) })
                .collect();
            Ok(Tensor::new(output.shape().to_vec(), data)?)
        }
        Resolved::Positions(p) => {
            let s = output.shape();
            let (len, c) = (s[1], s[2]);
            let mut data = vec![T::zero(); output.len()];
            for (i, &(q, k)) in p.iter().enumerate() {
                let at = (i * len + q) * c + k;
                data[at] = if logit { output.data()[at] } else { T::one() };
            }
            Ok(Tensor::new(s.to_vec(), data)?)
        }
    }
}

/// The score occlusion tracks per sample: the target class's output (summed over positions),
/// or for a custom seed `Σ seed ⊙ output` (e.g. `y_A − y_B` for a contrast).
pub(crate) fn scores<T: Float>(output: &Tensor<T>, r: &Resolved) -> Result<Vec<T>> {
    use prism_model::backend::Backend;
    match r {
        Resolved::Classes(c) => Ok(prism_model::backend::Cpu.class_scores(output, c)?),
        Resolved::Custom { seed, .. } => {
            let n = output.shape().first().copied().unwrap_or(1).max(1);
            let per = (output.len() / n).max(1);
            Ok(output
                .data()
                .chunks(per)
                .zip(seed.chunks(per))
                .map(|(y, s)| {
                    y.iter()
                        .zip(s)
                        .fold(T::zero(), |acc, (&y, &s)| acc + T::of(s) * y)
                })
                .collect())
        }
        Resolved::Positions(_) => Err(AttributionError::Target(
            "occlusion scores whole classes; a target with a position takes a gradient-based \
             method"
                .into(),
        )),
    }
}

/// `target` for a batch whose every row is repeated `k` times in place (one row per CRP
/// condition): per-sample targets repeat alike; the others hold for every row.
pub(crate) fn repeat(target: &Target, k: usize) -> Target {
    let rep = |v: &[usize]| v.iter().flat_map(|&t| std::iter::repeat_n(t, k)).collect();
    match target {
        Target::PerSample(v) => Target::PerSample(rep(v)),
        Target::PositionPerSample(v) => {
            Target::PositionPerSample(v.iter().flat_map(|&t| std::iter::repeat_n(t, k)).collect())
        }
        Target::Seeds(s) => {
            let rows: Vec<usize> = (0..s.shape()[0])
                .flat_map(|r| std::iter::repeat_n(r, k))
                .collect();
            Target::Seeds(s.take(&rows))
        }
        other => other.clone(),
    }
}

/// `target` for the rows `rows` of a batch.
pub(crate) fn take(target: &Target, rows: &[usize]) -> Target {
    match target {
        Target::PerSample(v) => Target::PerSample(rows.iter().map(|&r| v[r]).collect()),
        Target::PositionPerSample(v) => {
            Target::PositionPerSample(rows.iter().map(|&r| v[r]).collect())
        }
        Target::Seeds(s) => Target::Seeds(s.take(rows)),
        other => other.clone(),
    }
}
