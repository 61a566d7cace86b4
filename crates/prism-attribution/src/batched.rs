//! Attributing many samples batch by batch: the loop of `prism explain` as one library call,
//! shared by every front end (the CLI, the Python package), so they write the same numbers.

use prism_model::batch::{sample_count, split_batches, BatchDone, Flow};
use prism_model::{Float, ModelError, Tensor};

use crate::error::{AttributionError, Result};
use crate::{AttributeAt, Attributor, Explainer, Recorded, SeedMode, Target};

/// What one finished batch of [`Explainer::explain_batched`] reports.
#[derive(Debug)]
pub struct ExplainedBatch<'a, T> {
    /// Where the batch sits in the run.
    pub done: BatchDone,
    /// The target class of each of its samples.
    pub targets: &'a [usize],
    /// The target position of each of its samples, for a positional target.
    pub positions: Option<&'a [usize]>,
    /// Its relevance (the batch's part of [`Explained::relevance`]): one row per sample, or
    /// per sample and condition (CRP, `n·K + k`).
    pub relevance: &'a Tensor<T>,
    /// What it recorded at hidden nodes (rows as `relevance`).
    pub recorded: &'a [Recorded<T>],
}

/// The relevance of a whole run.
#[derive(Clone, Debug)]
pub struct Explained<T> {
    /// Relevance with the input's shape (a single float input) or the tensor's shape (an
    /// attribution at a tensor, a token model's embedding lookup: `[samples, tokens,
    /// hidden]`), `[samples, tokens]` when summed over the hidden dimension
    /// ([`Explainer::with_hidden_sum`]).
    pub relevance: Tensor<T>,
    /// The target class of each sample.
    pub targets: Vec<usize>,
    /// The target position of each sample, for a positional target.
    pub positions: Option<Vec<usize>>,
    /// The tensor the relevance was read off; `None`: the model's input.
    pub at: Option<String>,
    /// Whether the relevance was summed over the hidden dimension of an embedding lookup.
    pub per_token: bool,
    /// The relevance and activations recorded at hidden nodes ([`Explainer::with_concepts`]),
    /// all rows.
    pub recorded: Vec<Recorded<T>>,
    /// Rows per sample: the number of CRP conditions (1 without).
    pub rows_per_sample: usize,
}

impl Explainer<'_> {
    /// Attributes `inputs` (graph order, first axis = samples), `batch_size` samples at a time.
    ///
    /// A single-float-input model without `at` is attributed at its input with any attributor
    /// (as [`attribute`](Self::attribute)); other models, or an explicit `at`, read the
    /// relevance off a tensor (as [`attribute_inputs`](Self::attribute_inputs)). `target` is
    /// for the whole run (a per-sample target holds one class per sample). `on_batch` sees each
    /// finished batch and may stop the run, which then returns
    /// [`AttributionError::Stopped`].
    #[allow(clippy::too_many_arguments)]
    pub fn explain_batched<T: Float>(
        &self,
        inputs: &[Tensor<T>],
        at: Option<&AttributeAt>,
        target: &Target,
        seed: SeedMode,
        attributor: &Attributor,
        batch_size: usize,
        mut on_batch: impl FnMut(&ExplainedBatch<'_, T>) -> Flow,
    ) -> Result<Explained<T>> {
        let total = sample_count(inputs)?;
        self.model.check_inputs(inputs)?;
        if let Some(k) = target.rows().filter(|k| *k != total) {
            return Err(AttributionError::Target(format!(
                "{k} labels for {total} samples"
            )));
        }
        let g = self.model.graph();
        let plain = at.is_none() && g.inputs.len() == 1 && !g.input_type(0).is_integer();
        let mut data: Vec<T> = Vec::new();
        let mut shape: Vec<usize> = Vec::new();
        let mut targets: Vec<usize> = Vec::with_capacity(total);
        let mut positions: Option<Vec<usize>> = None;
        let mut at_name: Option<String> = None;
        let mut per_token = false;
        let mut recorded: Vec<Recorded<T>> = Vec::new();
        let mut recorded_data: Vec<(Vec<T>, Vec<T>)> = Vec::new();
        let mut offset = 0;
        for part in split_batches(inputs, batch_size)? {
            let count = part[0].shape()[0];
            let t = target.slice(offset, count);
            let batch_attributor = attributor.rows(offset, count)?;
            let attributor = &batch_attributor;
            let in_batch = |e: AttributionError| match e {
                // A non-finite report is renumbered to the run's samples instead.
                AttributionError::Model(
                    m @ (ModelError::NonFiniteInput { .. } | ModelError::NonFiniteResult { .. }),
                ) => AttributionError::Model(m.in_batch(offset, offset + count)),
                e => AttributionError::Batch {
                    start: offset,
                    end: offset + count,
                    error: Box::new(e),
                },
            };
            let (relevance, batch_targets, batch_positions, batch_recorded) = if plain {
                let a = self
                    .attribute(&part[0], &t, seed, attributor)
                    .map_err(in_batch)?;
                (a.relevance, a.targets, a.positions, a.recorded)
            } else {
                let a = self
                    .attribute_inputs(part, at.unwrap_or(&AttributeAt::Auto), &t, seed, attributor)
                    .map_err(in_batch)?;
                at_name = Some(a.at);
                match a.per_token {
                    Some(r) if self.hidden_sum => {
                        per_token = true;
                        (r, a.targets, a.positions, a.recorded)
                    }
                    _ => (a.relevance, a.targets, a.positions, a.recorded),
                }
            };
            if recorded.is_empty() {
                recorded = batch_recorded.clone();
                recorded_data = vec![(Vec::new(), Vec::new()); recorded.len()];
            }
            for (acc, r) in recorded_data.iter_mut().zip(&batch_recorded) {
                acc.0.extend_from_slice(r.relevance.data());
                acc.1.extend_from_slice(r.activation.data());
            }
            shape = relevance.shape().to_vec();
            data.extend_from_slice(relevance.data());
            targets.extend_from_slice(&batch_targets);
            if let Some(p) = &batch_positions {
                positions.get_or_insert_with(Vec::new).extend_from_slice(p);
            }
            let done = BatchDone {
                offset,
                count,
                total,
            };
            offset += count;
            let flow = on_batch(&ExplainedBatch {
                done,
                targets: &batch_targets,
                positions: batch_positions.as_deref(),
                relevance: &relevance,
                recorded: &batch_recorded,
            });
            if flow == Flow::Stop && offset < total {
                return Err(AttributionError::Model(ModelError::Stopped {
                    done: offset,
                    total,
                }));
            }
        }
        let rows_per_sample = self.concepts().conditions.len().max(1);
        let rows = total * rows_per_sample;
        shape[0] = rows;
        for (r, (rel, act)) in recorded.iter_mut().zip(recorded_data) {
            let mut s = r.relevance.shape().to_vec();
            s[0] = rows;
            r.relevance = Tensor::new(s.clone(), rel)?;
            r.activation = Tensor::new(s, act)?;
        }
        Ok(Explained {
            relevance: Tensor::new(shape, data)?,
            targets,
            positions,
            at: at_name,
            per_token,
            recorded,
            rows_per_sample,
        })
    }
}
