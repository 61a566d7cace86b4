//! Running a model on many samples batch by batch: the loop every front end (`prism predict`,
//! the Python package, evaluation) shares, so that they all compute the same numbers.

use crate::error::{ModelError, Result};
use crate::finite::NonFiniteReport;
use crate::graph::ElemType;
use crate::tensor::{Float, Tensor};
use crate::Model;

/// Whether a batch loop goes on after a batch (a progress callback's answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Stop after this batch: the loop returns [`ModelError::Stopped`].
    Stop,
}

/// The number of samples (the shared first axis) of `inputs`; an error when they disagree, when
/// there are none or when an input has no first axis.
pub fn sample_count<T: Float>(inputs: &[Tensor<T>]) -> Result<usize> {
    let first = inputs
        .first()
        .ok_or_else(|| ModelError::Invalid("no inputs given".into()))?;
    let n = match first.shape().first() {
        Some(&n) if n > 0 => n,
        _ => {
            return Err(ModelError::Invalid(format!(
                "expected a batch of samples (first axis = samples), got shape {:?}",
                first.shape()
            )))
        }
    };
    if let Some((i, x)) = inputs
        .iter()
        .enumerate()
        .find(|(_, x)| x.shape().first() != Some(&n))
    {
        return Err(ModelError::Invalid(format!(
            "input {i} has shape {:?} but input 0 has {n} samples: every input needs the same \
             first axis",
            x.shape()
        )));
    }
    Ok(n)
}

/// Splits every input along the first axis into batches of at most `size` samples: one list of
/// inputs per batch, in order.
pub fn split_batches<T: Float>(inputs: &[Tensor<T>], size: usize) -> Result<Vec<Vec<Tensor<T>>>> {
    if size == 0 {
        return Err(ModelError::Invalid(
            "the batch size must be at least 1".into(),
        ));
    }
    let n = sample_count(inputs)?;
    let mut batches = Vec::with_capacity(n.div_ceil(size));
    for start in (0..n).step_by(size) {
        let end = (start + size).min(n);
        let batch = inputs
            .iter()
            .map(|x| {
                let per = x.len() / n;
                let mut shape = x.shape().to_vec();
                shape[0] = end - start;
                Tensor::new(shape, x.data()[start * per..end * per].to_vec())
            })
            .collect::<Result<Vec<_>>>()?;
        batches.push(batch);
    }
    Ok(batches)
}

/// The values given for one graph input, before they become a run-time tensor.
#[derive(Clone, Debug)]
pub enum InputValues<T> {
    /// Floating-point values (any float input).
    Float(Tensor<T>),
    /// Integer values (token ids, masks, indices; booleans as 0/1).
    Ints { shape: Vec<usize>, data: Vec<i64> },
}

impl Model {
    /// The run-time tensor for graph input `index` from `values`, checked against the input's
    /// declared element type: an integer input takes integers (carried exactly in `T`, see
    /// [`Tensor::from_ints`]), a boolean input only 0 and 1, a float input floats; and the
    /// values must be a batch (a first axis with at least one sample).
    pub fn input_tensor<T: Float>(
        &self,
        index: usize,
        values: InputValues<T>,
    ) -> Result<Tensor<T>> {
        let g = self.graph();
        let id = *g.inputs.get(index).ok_or_else(|| {
            ModelError::Invalid(format!(
                "the model has {} inputs, there is no input {index}",
                g.inputs.len()
            ))
        })?;
        let name = g.value(id).name.clone();
        let ty = g.input_type(index);
        let bad = |detail: String| ModelError::Input {
            name: name.clone(),
            detail,
        };
        let x = match values {
            InputValues::Ints { shape, data } => {
                if !ty.is_integer() {
                    return Err(bad(format!(
                        "the input is {ty}; give floating-point values, not integers"
                    )));
                }
                if ty == ElemType::Bool && data.iter().any(|v| *v != 0 && *v != 1) {
                    return Err(bad(
                        "the input is boolean, but the values are not all 0 or 1".into(),
                    ));
                }
                Tensor::from_ints(shape, &data).map_err(|e| bad(e.to_string()))?
            }
            InputValues::Float(x) => {
                if ty.is_integer() {
                    return Err(bad(format!(
                        "the input is {ty}; give integers (e.g. int64 token ids), not floats"
                    )));
                }
                x
            }
        };
        if x.rank() == 0 || x.shape()[0] == 0 {
            return Err(bad(format!(
                "expected a batch of samples (first axis = samples), got shape {:?}",
                x.shape()
            )));
        }
        Ok(x)
    }
}

impl Model {
    /// Refuses NaN and ±Inf in `inputs` (graph order, first axis = samples) unless the model
    /// allows them ([`Model::set_nonfinite`]): the error names the input and the samples. A
    /// batch loop checks the whole run up front, so that the samples are numbered in it.
    pub fn check_inputs<T: Float>(&self, inputs: &[Tensor<T>]) -> Result<()> {
        self.check_inputs_from(inputs, 0)
    }

    /// [`check_inputs`](Self::check_inputs) for a batch whose first sample is sample `offset`
    /// of a longer run.
    pub fn check_inputs_from<T: Float>(&self, inputs: &[Tensor<T>], offset: usize) -> Result<()> {
        if !self.nonfinite().checks() {
            return Ok(());
        }
        for (i, x) in inputs.iter().enumerate() {
            if let Some(report) = NonFiniteReport::scan(x, offset) {
                let name = self
                    .graph()
                    .inputs
                    .get(i)
                    .map(|v| self.graph().value(*v).name.clone())
                    .unwrap_or_else(|| format!("#{i}"));
                return Err(ModelError::NonFiniteInput { name, report });
            }
        }
        Ok(())
    }
}

/// What a batch loop reports after each batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchDone {
    /// The first sample of the batch.
    pub offset: usize,
    /// Samples in the batch.
    pub count: usize,
    /// Samples in the whole run.
    pub total: usize,
}

impl Model {
    /// The model's first output on `inputs` (graph order, first axis = samples), computed
    /// `batch_size` samples at a time and joined. `on_batch` sees each finished batch and may
    /// stop the loop. The output must be per sample (its first axis the batch).
    pub fn predict_batched<T: Float>(
        &self,
        inputs: &[Tensor<T>],
        batch_size: usize,
        mut on_batch: impl FnMut(BatchDone) -> Flow,
    ) -> Result<Tensor<T>> {
        let total = sample_count(inputs)?;
        self.check_inputs(inputs)?;
        let mut data: Vec<T> = Vec::new();
        let mut shape: Vec<usize> = Vec::new();
        let mut offset = 0;
        for part in split_batches(inputs, batch_size)? {
            let count = part[0].shape()[0];
            let y = self
                .forward(part)
                .map_err(|e| e.in_batch(offset, offset + count))?;
            let y = y
                .first()
                .ok_or_else(|| ModelError::Invalid("the model has no output".into()))?;
            if y.shape().first() != Some(&count) {
                return Err(ModelError::Invalid(format!(
                    "the model's output has shape {:?}, which is not per sample (batch of {count})",
                    y.shape()
                )));
            }
            shape = y.shape().to_vec();
            data.extend_from_slice(y.data());
            let done = BatchDone {
                offset,
                count,
                total,
            };
            offset += count;
            if on_batch(done) == Flow::Stop && offset < total {
                return Err(ModelError::Stopped {
                    done: offset,
                    total,
                });
            }
        }
        shape[0] = total;
        Tensor::new(shape, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_order_and_sizes() {
        let x = Tensor::new(vec![5, 2], (0..10).map(|v| v as f32).collect()).unwrap();
        let m = Tensor::new(vec![5], (0..5).map(|v| v as f32).collect()).unwrap();
        let b = split_batches(&[x, m], 2).unwrap();
        assert_eq!(b.len(), 3);
        assert_eq!(b[2][0].shape(), &[1, 2]);
        assert_eq!(b[2][0].data(), &[8.0, 9.0]);
        assert_eq!(b[1][1].data(), &[2.0, 3.0]);
    }

    #[test]
    fn split_refuses_mismatched_or_empty() {
        let x = Tensor::new(vec![3, 2], vec![0f32; 6]).unwrap();
        let m = Tensor::new(vec![2], vec![0f32; 2]).unwrap();
        assert!(split_batches(&[x.clone(), m], 2).is_err());
        assert!(split_batches(&[x], 0).is_err());
        assert!(split_batches::<f32>(&[], 2).is_err());
        let empty = Tensor::new(vec![0, 2], Vec::<f32>::new()).unwrap();
        assert!(split_batches(&[empty], 2).is_err());
    }
}
