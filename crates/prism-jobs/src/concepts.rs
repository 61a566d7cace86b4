//! Relevance and activation maximisation over a dataset (`prism concepts`): for every channel
//! ("concept") of the chosen layers, the samples that make it most relevant (RelMax) and most
//! active (ActMax), with receptive-field crops, as zennit-crp's `FeatureVisualization` finds
//! them; plus each sample's channel relevance table and, optionally, the conditional heatmaps
//! of its most relevant concepts.
//!
//! One batch ([`concept_batch`]): the explanation of the target (seeded with its logit, as
//! zennit-crp) records the relevance and activation maps of the layers; the sweep stops at the
//! earliest of them, as nothing below is needed. Per channel, the relevance and activation
//! summed over space and the position of each map's maximum are kept. When every batch is
//! done, each channel's best `top_n` samples are selected by their `abs_norm` scores
//! ([`prism_store::Maxima::select`]), and for the first `crops` of them the relevance of the
//! single neuron at that position (its activation, zero elsewhere) is propagated to the input
//! ([`prism_attribution::Explainer::attribute_from`]); the crop is the bounding box of that
//! heatmap (summed over input channels), blurred and thresholded as zennit-crp's
//! `vis_opaque_img` does ([`crop_box`]).
//!
//! The run is resumable and shardable like `prism attribute` (the work directory of
//! [`prism_store::concepts_run`]); crops are saved per layer, so a run killed while cropping
//! resumes at the layer it was on.

// The errors carry the store's, the dataset's and the analysis' errors unboxed.
#![allow(clippy::result_large_err)]

use std::path::{Path, PathBuf};

use prism_attribution::{
    AttributeAt, Attributor, Concepts, Explainer, Neuron, Record, RecordMode, RecordedLayer,
    SeedMode, Target,
};
use prism_model::{Float, Model, NonFinite, Tensor};
use prism_store::concepts_run::{
    abs_norm_scores, ConceptPart, ConceptPrepared, ConceptRun, ConceptRunSpec, ConceptSettings,
    LayerInfo, LayerMaxima, LayerRows, Maxima,
};
use prism_store::dataset::{Dataset, DatasetOptions};
use prism_store::run::hash_file;
use prism_store::{Shard, TargetSpec};

use crate::attribute::{attribute_error, batch_input, JobError, Method, RunProgress, RunStarted};

/// One relevance-maximisation run.
#[derive(Debug, Clone)]
pub struct ConceptsJob {
    pub model: PathBuf,
    /// An HDF5 dataset, image folder or `.npy` array (token datasets are not supported).
    pub dataset: PathBuf,
    pub dataset_options: DatasetOptions,
    /// The concepts file; `{shard}` is replaced for a shard.
    pub output: PathBuf,
    /// Node-name globs of the layers (as `--record` takes them).
    pub layers: Vec<String>,
    /// `label`, `predicted` or a class number.
    pub target: String,
    pub batch_size: usize,
    pub shard: Option<Shard>,
    pub limit: Option<usize>,
    /// Samples kept per channel and mode.
    pub top_n: usize,
    /// Receptive-field crops per channel and mode (the first of the `top_n`).
    pub crops: usize,
    /// Conditional heatmaps of each sample's most relevant channels, per layer.
    pub sample_heatmaps: usize,
    pub prefetch: usize,
    pub force: bool,
    pub allow_nonfinite: bool,
}

/// How a concepts run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConceptsOutcome {
    /// The output already was a complete file of this run.
    AlreadyComplete { output: PathBuf },
    Written {
        output: PathBuf,
        samples: usize,
        layers: Vec<String>,
    },
    /// Stopped by the progress callback after `parts` parts.
    Stopped { output: PathBuf, parts: usize },
}

/// One batch's tables (see [`concept_batch`]).
#[derive(Debug, Clone, PartialEq)]
pub struct BatchTables {
    /// The class explained per row.
    pub target: Vec<u32>,
    /// Model outputs, `rows × classes`.
    pub prediction: Vec<f32>,
    pub layers: Vec<LayerBatch>,
}

/// One layer's rows of a batch: tables `rows × C`.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerBatch {
    pub relevance: Vec<f32>,
    pub activation: Vec<f32>,
    pub relevance_location: Vec<i64>,
    pub activation_location: Vec<i64>,
    /// `rows × M × H × W` (M = sample heatmaps).
    pub heatmap: Vec<f32>,
    /// `rows × M`.
    pub heatmap_channel: Vec<i32>,
}

/// The explainer of a concepts run: the method's composite, recording the layers' maps.
pub fn concepts_explainer<'m>(
    model: &'m Model,
    method: &Method,
    layers: &[String],
) -> Explainer<'m> {
    let mut e = Explainer::new(model)
        .with_canonizers(method.built.canonize)
        .with_concepts(Concepts {
            record: Some(Record {
                patterns: layers.to_vec(),
                mode: RecordMode::Maps,
            }),
            ..Concepts::default()
        });
    if let Some(c) = &method.built.composite {
        e = e.with_composite(c.clone());
    }
    e
}

/// Per row and channel of `t` (`[rows, C, …]`): the sum over space and the position of the
/// maximum (the first, as `torch.argmax`; 0 for `[rows, C]`).
fn sums_and_argmax<T: Float>(t: &Tensor<T>) -> (Vec<f32>, Vec<i64>) {
    let shape = t.shape();
    let (rows, c) = (shape[0], shape.get(1).copied().unwrap_or(1));
    let inner: usize = shape.iter().skip(2).product();
    let mut sums = Vec::with_capacity(rows * c);
    let mut loc = Vec::with_capacity(rows * c);
    for map in t.data().chunks(inner.max(1)) {
        let mut s = 0.0f64;
        let mut best = 0usize;
        for (i, v) in map.iter().enumerate() {
            s += v.f64();
            if v.f64() > map[best].f64() {
                best = i;
            }
        }
        sums.push(s as f32);
        loc.push(best as i64);
    }
    (sums, loc)
}

/// The tables of one batch `x` under `target`: per layer (`layers`, as
/// [`Explainer::recorded_layers`] gives them), the channel relevance and activation, their
/// maxima's positions, and the conditional heatmaps of each row's `sample_heatmaps` most
/// relevant channels.
pub fn concept_batch<T: Float>(
    explainer: &Explainer<'_>,
    layers: &[RecordedLayer],
    x: &Tensor<T>,
    target: &Target,
    sample_heatmaps: usize,
) -> Result<BatchTables, prism_attribution::AttributionError> {
    let Some(first) = layers.first() else {
        return Err(prism_attribution::AttributionError::Invalid(
            "no layer to record".into(),
        ));
    };
    // The sweep ends at the earliest layer: nothing below it is needed.
    let a = explainer.attribute_inputs(
        vec![x.clone()],
        &AttributeAt::Named(first.tensor.clone()),
        target,
        SeedMode::Logit,
        &Attributor::Gradient,
    )?;
    let rows = x.shape()[0];
    let targets: Vec<usize> = a.targets.clone();
    let mut out = BatchTables {
        target: targets.iter().map(|&t| t as u32).collect(),
        prediction: a.output.data().iter().map(|v| v.f64() as f32).collect(),
        layers: Vec::with_capacity(layers.len()),
    };
    for (layer, rec) in layers.iter().zip(&a.recorded) {
        let (relevance, relevance_location) = sums_and_argmax(&rec.relevance);
        let (activation, activation_location) = sums_and_argmax(&rec.activation);
        let (mut heatmap, mut heatmap_channel) = (Vec::new(), Vec::new());
        if sample_heatmaps > 0 {
            let (top, _) = rec.top_channels(sample_heatmaps);
            let m = top.len() / rows.max(1);
            let x_rep = prism_attribution::repeat_rows(x, m)?;
            let t_rep: Vec<usize> = targets
                .iter()
                .flat_map(|&t| std::iter::repeat_n(t, m))
                .collect();
            let channels: Vec<usize> = top.iter().map(|&c| c as usize).collect();
            let h = explainer.attribute_channel_rows(
                &x_rep,
                &Target::PerSample(t_rep),
                SeedMode::Logit,
                &layer.node,
                &channels,
            )?;
            heatmap = channel_sum(&h).into_iter().map(|v| v as f32).collect();
            heatmap_channel = top.iter().map(|&c| c as i32).collect();
            // Fewer channels than asked for: pad with empty heatmaps (channel -1).
            if m < sample_heatmaps {
                let hw = heatmap.len() / (rows * m).max(1);
                let mut hp = Vec::with_capacity(rows * sample_heatmaps * hw);
                let mut cp = Vec::with_capacity(rows * sample_heatmaps);
                for r in 0..rows {
                    hp.extend_from_slice(&heatmap[r * m * hw..(r + 1) * m * hw]);
                    hp.extend(std::iter::repeat_n(0.0, (sample_heatmaps - m) * hw));
                    cp.extend_from_slice(&heatmap_channel[r * m..(r + 1) * m]);
                    cp.extend(std::iter::repeat_n(-1, sample_heatmaps - m));
                }
                heatmap = hp;
                heatmap_channel = cp;
            }
        }
        out.layers.push(LayerBatch {
            relevance,
            activation,
            relevance_location,
            activation_location,
            heatmap,
            heatmap_channel,
        });
    }
    Ok(out)
}

/// `[rows, C, H, W]` summed over `C`: `rows × H × W` (zennit-crp's heatmap).
fn channel_sum<T: Float>(t: &Tensor<T>) -> Vec<f64> {
    let shape = t.shape();
    let (rows, c) = (shape[0], shape.get(1).copied().unwrap_or(1));
    let hw: usize = shape.iter().skip(2).product();
    let mut out = vec![0.0f64; rows * hw];
    for r in 0..rows {
        for ch in 0..c {
            let src = &t.data()[(r * c + ch) * hw..(r * c + ch + 1) * hw];
            for (o, v) in out[r * hw..(r + 1) * hw].iter_mut().zip(src) {
                *o += v.f64();
            }
        }
    }
    out
}

/// torchvision's `gaussian_blur` kernel of size `k` with its default σ = 0.3·((k−1)/2 − 1) + 0.8.
fn gaussian_kernel(k: usize) -> Vec<f64> {
    let sigma = 0.3 * ((k as f64 - 1.0) * 0.5 - 1.0) + 0.8;
    let half = (k as f64 - 1.0) * 0.5;
    let w: Vec<f64> = (0..k)
        .map(|i| {
            let x = i as f64 - half;
            (-0.5 * (x / sigma).powi(2)).exp()
        })
        .collect();
    let s: f64 = w.iter().sum();
    w.into_iter().map(|v| v / s).collect()
}

/// Reflects an index into `0..n` (reflect padding, the edge not repeated).
fn reflect(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let mut j = i.rem_euclid(period);
    if j >= n as isize {
        j = period - j;
    }
    j as usize
}

/// The receptive-field crop of a neuron's input heatmap `heat` (`h × w`, summed over
/// channels), as zennit-crp draws its reference samples (`vis_opaque_img`, `rf=True`): blurred
/// by a 19-pixel Gaussian (σ = 3.2, reflect padding), divided by its maximum (+1e-10), and
/// cut to the bounding box of the pixels above 0.1. Returns `[y0, y1, x0, x1]`, end exclusive
/// (zennit-crp slices `[row1:row2]` and so drops the last row and column; the box here keeps
/// them); all 0 when no pixel passes.
pub fn crop_box(heat: &[f64], h: usize, w: usize) -> [i32; 4] {
    const KERNEL: usize = 19;
    const THRESHOLD: f64 = 0.1;
    let k = gaussian_kernel(KERNEL);
    let half = (KERNEL / 2) as isize;
    let mut tmp = vec![0.0; h * w];
    for y in 0..h {
        for x in 0..w {
            tmp[y * w + x] = k
                .iter()
                .enumerate()
                .map(|(i, kv)| kv * heat[y * w + reflect(x as isize + i as isize - half, w)])
                .sum();
        }
    }
    let mut blur = vec![0.0; h * w];
    for y in 0..h {
        for x in 0..w {
            blur[y * w + x] = k
                .iter()
                .enumerate()
                .map(|(i, kv)| kv * tmp[reflect(y as isize + i as isize - half, h) * w + x])
                .sum();
        }
    }
    let max = blur.iter().copied().fold(f64::NEG_INFINITY, f64::max) + 1e-10;
    let (mut y0, mut y1, mut x0, mut x1) = (usize::MAX, 0, usize::MAX, 0);
    for y in 0..h {
        for x in 0..w {
            if blur[y * w + x] / max > THRESHOLD {
                y0 = y0.min(y);
                y1 = y1.max(y + 1);
                x0 = x0.min(x);
                x1 = x1.max(x + 1);
            }
        }
    }
    if y0 == usize::MAX {
        return [0; 4];
    }
    [y0 as i32, y1 as i32, x0 as i32, x1 as i32]
}

/// The crops of `m`'s first `crops` entries per channel (in place), for `layer`, reading the
/// samples from `dataset`, `job.batch_size` neurons at a time.
fn compute_crops(
    explainer: &Explainer<'_>,
    job: &ConceptsJob,
    dataset: &Dataset,
    layer: &str,
    maxima: &mut [&mut Maxima],
    input_shape: &[usize],
) -> Result<(), JobError> {
    let crops = job.crops;
    // Every (sample, channel, location) to crop, once.
    let mut items: Vec<(i64, usize, i64)> = Vec::new();
    for m in maxima.iter() {
        for k in 0..crops.min(m.top_n) {
            for c in 0..m.channels {
                let at = k * m.channels + c;
                if m.sample[at] >= 0 {
                    items.push((m.sample[at], c, m.location[at]));
                }
            }
        }
    }
    items.sort_unstable();
    items.dedup();
    let mut boxes: std::collections::HashMap<(i64, usize, i64), [i32; 4]> =
        std::collections::HashMap::with_capacity(items.len());
    let (h, w) = match input_shape[..] {
        [_, h, w] => (h, w),
        [h, w] => (h, w),
        _ => {
            return Err(JobError::Target(format!(
                "receptive-field crops need image inputs (C×H×W), not {input_shape:?}; use \
                 --crops 0"
            )))
        }
    };
    for chunk in items.chunks(job.batch_size.max(1)) {
        let indices: Vec<usize> = chunk.iter().map(|it| it.0 as usize).collect();
        let batch = dataset
            .read(&indices)
            .map_err(|source| JobError::ReadBatch {
                path: job.dataset.clone(),
                source,
            })?;
        let mut shape = vec![indices.len()];
        shape.extend_from_slice(input_shape);
        let x = Tensor::new(shape, batch.data)?;
        let picks: Vec<Neuron> = chunk
            .iter()
            .map(|it| Neuron {
                channel: it.1,
                location: Some(it.2 as usize),
            })
            .collect();
        let heat = explainer
            .attribute_from(&x, layer, &picks)
            .map_err(|source| JobError::Attribute {
                first: indices[0],
                last: indices[indices.len() - 1],
                source,
            })?;
        let sums = channel_sum(&heat);
        for (i, it) in chunk.iter().enumerate() {
            boxes.insert(*it, crop_box(&sums[i * h * w..(i + 1) * h * w], h, w));
        }
    }
    for m in maxima.iter_mut() {
        m.crops = crops.min(m.top_n);
        for k in 0..m.crops {
            for c in 0..m.channels {
                let at = k * m.channels + c;
                if let Some(b) = boxes.get(&(m.sample[at], c, m.location[at])) {
                    m.boxes[at * 4..at * 4 + 4].copy_from_slice(b);
                }
            }
        }
    }
    Ok(())
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Runs `job` with `method` (an LRP composite or the gradient), resuming an interrupted run
/// with the same settings. `progress.step` names the crop phase of each layer.
pub fn concepts_dataset(
    job: &ConceptsJob,
    method: &Method,
    progress: &mut dyn RunProgress,
) -> Result<ConceptsOutcome, JobError> {
    if job.batch_size == 0 {
        return Err(JobError::BatchSize);
    }
    if job.layers.is_empty() {
        return Err(JobError::Target(
            "name the layers to analyse (--layers GLOB, e.g. '/features/*/Conv')".into(),
        ));
    }
    if job.top_n == 0 {
        return Err(JobError::Target(
            "--top-n must be at least 1 (samples kept per concept)".into(),
        ));
    }
    let target: TargetSpec = job.target.parse().map_err(JobError::Target)?;
    let dataset = Dataset::open(&job.dataset, &job.dataset_options).map_err(|source| {
        JobError::OpenDataset {
            path: job.dataset.clone(),
            source,
        }
    })?;
    let labels = dataset.labels().map(|l| l.iter().all(Option::is_some));
    if target == TargetSpec::Label && labels != Some(true) {
        return Err(JobError::NeedsLabels {
            path: job.dataset.clone(),
            unlabelled: labels.is_some(),
        });
    }
    let n_all = dataset.len();
    let n = job.limit.map_or(n_all, |l| l.min(n_all));
    if n == 0 {
        return Err(JobError::NoSamples {
            path: job.dataset.clone(),
        });
    }
    // The model and the layers are checked before the run's work directory is made: a layer
    // glob that matches nothing leaves nothing behind that a corrected run would refuse.
    let model = Model::load(&job.model).map_err(|source| JobError::LoadModel {
        path: job.model.clone(),
        source,
    })?;
    model.set_nonfinite(NonFinite::allow_if(job.allow_nonfinite));
    let explainer = concepts_explainer(&model, method, &job.layers);
    let input_shape = dataset.input_shape().to_vec();
    let mut batch_shape = vec![job.batch_size];
    batch_shape.extend_from_slice(&input_shape);
    let recorded = explainer
        .recorded_layers::<f32>(&batch_shape)
        .map_err(|source| JobError::Layers { source })?;
    let infos: Vec<LayerInfo> = recorded
        .iter()
        .map(|l| LayerInfo {
            node: l.node.clone(),
            tensor: l.tensor.clone(),
            shape: l.sample_shape.clone(),
        })
        .collect();
    if let Some(bad) = infos.iter().find(|i| i.shape.is_empty()) {
        return Err(JobError::Target(format!(
            "layer '{}' has a scalar output per sample: concepts need a channel axis",
            bad.node
        )));
    }
    let settings = ConceptSettings {
        format: ConceptSettings::FORMAT,
        model_blake3: hash_file(&job.model)?,
        dataset_fingerprint: dataset.fingerprint().to_string(),
        dataset_len: n_all,
        method: method.spec.clone(),
        target: job.target.clone(),
        layers: job.layers.clone(),
        top_n: job.top_n,
        crops: job.crops,
        sample_heatmaps: job.sample_heatmaps,
        batch_size: job.batch_size,
        limit: n,
    };
    let mut run = match ConceptRun::prepare(ConceptRunSpec {
        output: job.output.clone(),
        shard: job.shard,
        settings,
        model_name: file_name(&job.model),
        dataset_name: file_name(&job.dataset),
        force: job.force,
    })? {
        ConceptPrepared::AlreadyComplete { output } => {
            return Ok(ConceptsOutcome::AlreadyComplete { output })
        }
        ConceptPrepared::Ready(run) => *run,
    };
    let input_hw = match input_shape[..] {
        [_, h, w] | [h, w] => [h, w],
        [f] => [1, f],
        _ => [1, 1],
    };
    progress.started(&RunStarted {
        output: run.output().to_path_buf(),
        work_dir: run.work_dir().to_path_buf(),
        resumed: run.resumed(),
        samples: run.samples().len(),
        done: run.done_samples(),
    });
    let pending = run.pending();
    let todo: Vec<usize> = pending.iter().flat_map(|b| b.samples.clone()).collect();
    let stream = dataset.batches(todo, job.batch_size, job.prefetch);
    for (done, (p, batch)) in pending.iter().zip(stream).enumerate() {
        let batch = batch.map_err(|source| JobError::ReadBatch {
            path: job.dataset.clone(),
            source,
        })?;
        let k = batch.indices.len();
        let (x, t, batch) = batch_input(
            &job.dataset,
            batch,
            &input_shape,
            target,
            job.allow_nonfinite,
        )?;
        let (first, last) = (p.samples.start, p.samples.end - 1);
        let tables = concept_batch(&explainer, &recorded, &x, &t, job.sample_heatmaps)
            .map_err(|source| attribute_error(first, last, &batch.indices, source))?;
        let layers: Vec<LayerRows<'_>> = infos
            .iter()
            .zip(&tables.layers)
            .map(|(info, l)| LayerRows {
                info,
                relevance: &l.relevance,
                activation: &l.activation,
                relevance_location: &l.relevance_location,
                activation_location: &l.activation_location,
                heatmap: &l.heatmap,
                heatmap_channel: &l.heatmap_channel,
            })
            .collect();
        run.write_part(
            p.part,
            &ConceptPart {
                target: &tables.target,
                prediction: &tables.prediction,
                input_hw,
                layers,
            },
        )?;
        if progress.part_written(k).is_break() {
            return Ok(ConceptsOutcome::Stopped {
                output: run.output().to_path_buf(),
                parts: done + 1,
            });
        }
    }
    progress.computed();
    // Selection and crops, layer by layer (each saved, so a killed run resumes there).
    let all = run.tables()?;
    let mut maxima = Vec::with_capacity(all.layers.len());
    for (li, lt) in all.layers.iter().enumerate() {
        if let Some(m) = run.saved_maxima(li)? {
            maxima.push(m);
            continue;
        }
        progress.step(&format!(
            "layer {}/{} '{}': selecting and cropping",
            li + 1,
            all.layers.len(),
            lt.info.node
        ));
        let c = lt.info.channels();
        let mut m = LayerMaxima {
            relmax: Maxima::select(
                &all.index,
                &abs_norm_scores(&lt.relevance, c),
                &lt.relevance_location,
                c,
                job.top_n,
            ),
            actmax: Maxima::select(
                &all.index,
                &abs_norm_scores(&lt.activation, c),
                &lt.activation_location,
                c,
                job.top_n,
            ),
        };
        if job.crops > 0 {
            let LayerMaxima { relmax, actmax } = &mut m;
            compute_crops(
                &explainer,
                job,
                &dataset,
                &lt.info.node,
                &mut [relmax, actmax],
                &input_shape,
            )?;
        }
        run.save_maxima(li, &m)?;
        maxima.push(m);
    }
    let samples = run.samples().len();
    let layers = infos.iter().map(|i| i.node.clone()).collect();
    let output = run.finish(&maxima)?;
    Ok(ConceptsOutcome::Written {
        output,
        samples,
        layers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blur_kernel_is_torchvisions() {
        let k = gaussian_kernel(19);
        assert_eq!(k.len(), 19);
        assert!((k.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // σ = 3.2: the centre over its neighbour is exp(1 / (2·3.2²))
        let ratio = k[9] / k[10];
        assert!((ratio - (1.0 / (2.0 * 3.2 * 3.2f64)).exp()).abs() < 1e-12);
    }

    #[test]
    fn reflection_does_not_repeat_the_edge() {
        let got: Vec<usize> = (-3..8).map(|i| reflect(i, 5)).collect();
        assert_eq!(got, vec![3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1]);
    }

    #[test]
    fn a_point_heatmap_crops_around_the_point() {
        let (h, w) = (40, 30);
        let mut heat = vec![0.0; h * w];
        heat[20 * w + 10] = 1.0;
        let b = crop_box(&heat, h, w);
        // symmetric around (20, 10): blurred values above 10% of the peak lie within
        // sqrt(2·ln 10)·σ ≈ 6.9 px
        assert_eq!(b, [14, 27, 4, 17]);
        assert_eq!(crop_box(&vec![0.0; h * w], h, w), [0; 4]);
    }

    #[test]
    fn sums_and_maxima_per_channel() {
        let t = Tensor::new(vec![1, 2, 3], vec![1.0f64, 5.0, 2.0, -1.0, -3.0, -1.0]).unwrap();
        let (s, l) = sums_and_argmax(&t);
        assert_eq!(s, vec![8.0, -5.0]);
        assert_eq!(l, vec![1, 0]);
    }
}
