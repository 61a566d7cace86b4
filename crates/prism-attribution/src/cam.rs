//! Class activation maps (CAM) at a hidden layer, with pytorch-grad-cam 1.5's definitions:
//! Grad-CAM, Grad-CAM++, XGrad-CAM, LayerCAM, Eigen-CAM, Score-CAM and Ablation-CAM.
//!
//! Every method weighs the layer's activation maps `A_k` (one per channel `k`, `h × w`) and
//! sums them; the map then goes through pytorch-grad-cam's `BaseCAM` pipeline: a ReLU, a
//! min-max normalisation at the layer's resolution (`(m − min) / (1e-7 + max)`), a bilinear
//! resize to the input's `H × W` with half-pixel centres (OpenCV's `INTER_LINEAR`), a ReLU and
//! the same normalisation again. The result has shape `N × 1 × H × W`, values in `[0, 1]`.
//!
//! The gradient `g = ∂y_t/∂A` is the plain gradient of the target's logit (pytorch-grad-cam's
//! `ClassifierOutputTarget`); the graph is read as exported (no canonizers: the activation of a
//! convolution followed by a BatchNormalization node is the convolution's output).
//!
//! | method | map |
//! |---|---|
//! | `grad-cam` | `Σ_k mean_p(g_k) · A_k` |
//! | `grad-cam-plus-plus` | `Σ_k w_k A_k`, `w_k = Σ_p ReLU(g) · g² / (2g² + (Σ_p A_k) g³ + 1e-6)` (0 where `g = 0`) |
//! | `xgrad-cam` | `Σ_k w_k A_k`, `w_k = Σ_p g · A_k / (Σ_p A_k + 1e-7)` |
//! | `layer-cam` | `Σ_k ReLU(g_k) ⊙ A_k` |
//! | `eigen-cam` | the projection of the centred `(h·w) × C` activations on their first right singular vector |
//! | `score-cam` | `Σ_k softmax_k(y_t(x ⊙ M_k)) · A_k`, `M_k` = `A_k` upsampled (bilinear, aligned corners) and min-max normalised (`+1e-8`) |
//! | `ablation-cam` | `Σ_k (y_t − y_t^{(k)}) / y_t · A_k`, `y_t^{(k)}`: the score with channel `k` ablated |
//!
//! Two departures, documented in `docs/methods.md`: Eigen-CAM's singular vector has no sign of
//! its own (LAPACK's is implementation-defined); Prism orients it so that the projection's
//! largest magnitude is positive (the sign correction of pytorch-grad-cam's Seg-Eigen-CAM).
//! Ablation-CAM writes pytorch-grad-cam's ablation value: 0 when the sample's smallest
//! activation is 0, else `min − 1e7·(j + 1)` for the `j`-th channel of each group of 32 (its
//! `AblationLayer` lowers the minimum of the batch it edits row by row); and Prism computes only
//! the layers after the ablated one (the values they read from before it are kept from one
//! forward pass), which gives the same scores.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prism_model::{Float, Graph, Keep, Tensor, ValueId};

use crate::concept::{Concepts, Record, RecordMode};
use crate::error::{AttributionError, Result};
use crate::target::{self, Resolved};
use crate::{take_rows, AttributeAt, Attribution, Attributor, Explainer, SeedMode, Target};

/// A class-activation-map method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CamKind {
    GradCam,
    GradCamPlusPlus,
    XGradCam,
    LayerCam,
    EigenCam,
    ScoreCam,
    AblationCam,
}

/// The class-activation-map attributors, by name.
pub const CAM_ATTRIBUTORS: [(&str, CamKind); 7] = [
    ("grad-cam", CamKind::GradCam),
    ("grad-cam-plus-plus", CamKind::GradCamPlusPlus),
    ("xgrad-cam", CamKind::XGradCam),
    ("layer-cam", CamKind::LayerCam),
    ("eigen-cam", CamKind::EigenCam),
    ("score-cam", CamKind::ScoreCam),
    ("ablation-cam", CamKind::AblationCam),
];

/// Masked inputs per forward pass of Score-CAM (pytorch-grad-cam's default batch).
const SCORE_CAM_BATCH: usize = 16;
/// Rows per group of pytorch-grad-cam's Ablation-CAM (its `batch_size`), which its ablation
/// value depends on.
const ABLATION_GROUP: usize = 32;
/// pytorch-grad-cam's ablation offset.
const ABLATION_VALUE: f64 = 1e7;

impl CamKind {
    /// The method's name (`grad-cam`, …).
    pub fn name(self) -> &'static str {
        CAM_ATTRIBUTORS
            .iter()
            .find(|(_, k)| *k == self)
            .map_or("cam", |(n, _)| n)
    }

    /// The method of this name (kebab or snake case; `gradcam`, `scorecam` … accepted).
    pub fn by_name(name: &str) -> Option<CamKind> {
        let squash = |s: &str| s.replace(['-', '_'], "").replace("plusplus", "pp");
        let want = squash(&name.to_ascii_lowercase());
        CAM_ATTRIBUTORS
            .iter()
            .find(|(n, _)| squash(n) == want)
            .map(|(_, k)| *k)
    }

    /// Whether the method needs the gradient at the layer.
    pub fn uses_gradients(self) -> bool {
        matches!(
            self,
            CamKind::GradCam | CamKind::GradCamPlusPlus | CamKind::XGradCam | CamKind::LayerCam
        )
    }
}

/// The default layer of the class-activation maps: the deepest convolution, the `Conv` node
/// with the longest path from the model's inputs (the last in graph order among equals). Not
/// simply the last `Conv` in graph order: exporters put a ResNet block's 1×1 downsampling
/// convolution after the block's last 3×3 (or 1×1) convolution, though it sits one layer from
/// the block's input.
pub fn default_layer(g: &Graph) -> Result<String> {
    let mut depth = vec![0usize; g.values.len()];
    let mut best: Option<(usize, usize)> = None;
    for (i, node) in g.nodes.iter().enumerate() {
        let d = 1 + node
            .inputs
            .iter()
            .flatten()
            .map(|v| depth[v.0])
            .max()
            .unwrap_or(0);
        for o in &node.outputs {
            depth[o.0] = d;
        }
        if node.op.type_name() == "Conv" && best.is_none_or(|(bd, _)| d >= bd) {
            best = Some((d, i));
        }
    }
    best.map(|(_, i)| g.nodes[i].name.clone()).ok_or_else(|| {
        AttributionError::Invalid(
            "the model has no convolution (Conv node) for a class activation map: name the \
             layer with --layer (`prism inspect --shapes` lists the nodes)"
                .into(),
        )
    })
}

/// `name` as a glob matching only itself.
fn glob_literal(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '*' | '?' | '[' | ']' | '{' | '}' | '\\' | '!' => format!("[{c}]"),
            c => c.to_string(),
        })
        .collect()
}

/// Per-layer inner explainers (plain gradients, no canonizers, the layer recorded), kept by
/// the [`Explainer`] that runs the maps so that their prepared graphs are reused.
#[derive(Default)]
pub(crate) struct CamExplainers<'m> {
    by_layer: Mutex<HashMap<String, Arc<Explainer<'m>>>>,
}

impl<'m> CamExplainers<'m> {
    fn get(&self, model: &'m prism_model::Model, layer: &str) -> Arc<Explainer<'m>> {
        let mut map = self.by_layer.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(layer.to_string())
            .or_insert_with(|| {
                Arc::new(
                    Explainer::new(model)
                        .with_canonizers(false)
                        .with_concepts(Concepts {
                            record: Some(Record {
                                patterns: vec![glob_literal(layer)],
                                mode: RecordMode::Maps,
                            }),
                            ..Concepts::default()
                        }),
                )
            })
            .clone()
    }
}

/// The layer's activations (and gradients) for a batch, as `f64`, `N × K × (h·w)`.
struct LayerMaps {
    n: usize,
    k: usize,
    h: usize,
    w: usize,
    act: Vec<f64>,
    grad: Vec<f64>,
}

impl LayerMaps {
    fn hw(&self) -> usize {
        self.h * self.w
    }

    /// The positions of channel `c` of sample `s` in `act` and `grad`.
    fn channel(&self, s: usize, c: usize) -> std::ops::Range<usize> {
        let hw = self.hw();
        let at = (s * self.k + c) * hw;
        at..at + hw
    }
}

fn layer_shape(name: &str, shape: &[usize]) -> Result<(usize, usize, usize, usize)> {
    match shape {
        [n, k, h, w] => Ok((*n, *k, *h, *w)),
        s => Err(AttributionError::Invalid(format!(
            "layer '{name}' has output shape {s:?}; class activation maps need N × C × h × w \
             (a convolutional layer): choose another with --layer"
        ))),
    }
}

impl<'m> Explainer<'m> {
    /// A class activation map of `kind` at `layer` (`None`: [`default_layer`]) for the batch
    /// `x` (`N × C × H × W`): the relevance has shape `N × 1 × H × W`.
    pub(crate) fn cam<T: Float>(
        &self,
        x: &Tensor<T>,
        target: &Target,
        seed: SeedMode,
        kind: CamKind,
        layer: Option<&str>,
    ) -> Result<Attribution<T>> {
        let (n, _, height, width) = match x.shape() {
            [n, c, h, w] => (*n, *c, *h, *w),
            s => {
                return Err(AttributionError::Invalid(format!(
                    "{} needs image inputs of shape N × C × H × W, got {s:?}",
                    kind.name()
                )))
            }
        };
        if self.composite.is_some() {
            return Err(AttributionError::Invalid(format!(
                "{} weighs a layer's activations by plain gradients or scores; it takes no LRP \
                 composite",
                kind.name()
            )));
        }
        if seed != SeedMode::OneHot {
            return Err(AttributionError::Invalid(format!(
                "{} scores the target's logit (pytorch-grad-cam's ClassifierOutputTarget): \
                 the seed mode must be one-hot",
                kind.name()
            )));
        }
        if target.is_positional() {
            return Err(AttributionError::Target(format!(
                "{} explains a class of an N × classes output; a target with a position does \
                 not apply",
                kind.name()
            )));
        }
        let layer = match layer {
            Some(l) => l.to_string(),
            None => default_layer(self.model.graph())?,
        };
        let g = self.model.graph();
        if g.find_node(&layer).is_none() && g.find_value(&layer).is_none() {
            return Err(AttributionError::Invalid(format!(
                "{}: the model has no node or tensor named '{layer}'; `prism inspect --shapes` \
                 lists them",
                kind.name()
            )));
        }
        let inner = self.cams.get(self.model, &layer);
        let (maps, output, resolved) = if kind.uses_gradients() {
            let a = inner.attribute_inputs(
                vec![x.clone()],
                &AttributeAt::Named(layer.clone()),
                target,
                SeedMode::OneHot,
                &Attributor::Gradient,
            )?;
            let rec = a.recorded.first().ok_or_else(|| {
                AttributionError::Invalid(format!("layer '{layer}' was not recorded (internal)"))
            })?;
            let (_, k, h, w) = layer_shape(&layer, a.relevance.shape())?;
            let maps = LayerMaps {
                n,
                k,
                h,
                w,
                act: rec.activation.data().iter().map(|v| v.f64()).collect(),
                grad: a.relevance.data().iter().map(|v| v.f64()).collect(),
            };
            let resolved = Resolved::Classes(a.targets.clone());
            (maps, a.output, resolved)
        } else {
            let (act, output) = inner.forward_keeping(x, &layer)?;
            let (_, k, h, w) = layer_shape(&layer, act.shape())?;
            let maps = LayerMaps {
                n,
                k,
                h,
                w,
                act: act.data().iter().map(|v| v.f64()).collect(),
                grad: Vec::new(),
            };
            let resolved = target::resolve(&output, target)?;
            (maps, output, resolved)
        };
        let targets = resolved.classes();
        let cams: Vec<Vec<f64>> = match kind {
            CamKind::GradCam | CamKind::GradCamPlusPlus | CamKind::XGradCam => {
                let weights = gradient_weights(kind, &maps);
                weighted_sum(&maps, &weights)
            }
            CamKind::LayerCam => layer_cam(&maps),
            CamKind::EigenCam => (0..n)
                .map(|s| eigen_projection(&maps, s))
                .collect::<Result<_>>()?,
            CamKind::ScoreCam => {
                let seed_t = target::seed(&output, &resolved, false)?;
                let weights = inner.score_cam_weights(x, &maps, &seed_t)?;
                weighted_sum(&maps, &weights)
            }
            CamKind::AblationCam => {
                let seed_t = target::seed(&output, &resolved, false)?;
                let weights = inner.ablation_cam_weights(x, &layer, &maps, &output, &seed_t)?;
                weighted_sum(&maps, &weights)
            }
        };
        let mut data = Vec::with_capacity(n * height * width);
        for cam in cams {
            let mut m: Vec<f64> = cam.into_iter().map(|v| v.max(0.0)).collect();
            min_max(&mut m);
            let mut up = resize_half_pixel(&m, maps.h, maps.w, height, width);
            up.iter_mut().for_each(|v| *v = v.max(0.0));
            min_max(&mut up);
            data.extend(up.into_iter().map(T::of));
        }
        Ok(Attribution {
            relevance: Tensor::new(vec![n, 1, height, width], data)?,
            output,
            targets,
            positions: None,
            recorded: Vec::new(),
        })
    }

    /// The forward pass keeping `layer`'s output: (that output, the model's output).
    fn forward_keeping<T: Float>(
        &self,
        x: &Tensor<T>,
        layer: &str,
    ) -> Result<(Tensor<T>, Tensor<T>)> {
        let p = self.prepared::<T>(x.shape())?;
        let (v, _) = AttributeAt::Named(layer.to_string()).resolve(self.model.graph(), &p.graph)?;
        let t = p.exec.run_with(
            vec![x.clone()],
            &Keep::Values(vec![v]),
            self.model.nonfinite(),
        )?;
        let act = t.get(v).ok_or_else(|| {
            AttributionError::Invalid(format!("layer '{layer}' was not kept (internal)"))
        })?;
        Ok(((**act).clone(), (*t.outputs[0]).clone()))
    }

    /// Score-CAM's channel weights, `N × K`: the softmax over channels of the target's score on
    /// the input masked by each channel's upsampled, normalised map. Channels with a constant
    /// map mask the input to zero: the model's score on a zero input, computed once.
    fn score_cam_weights<T: Float>(
        &self,
        x: &Tensor<T>,
        maps: &LayerMaps,
        seed: &Tensor<T>,
    ) -> Result<Vec<Vec<f64>>> {
        let (n, k) = (maps.n, maps.k);
        let per = x.len() / n.max(1);
        let (c_in, hh, ww) = (x.shape()[1], x.shape()[2], x.shape()[3]);
        let score = |out: &[T], s: usize| seed_score(out, seed, s);
        let mut scores = vec![vec![f64::NAN; k]; n];
        // (sample, channel, mask) of the rows to run
        let mut pending: Vec<(usize, usize, Vec<f64>)> = Vec::new();
        let mut zero_rows: Vec<(usize, usize)> = Vec::new();
        let batch_shape = |rows: usize| vec![rows, c_in, hh, ww];
        let flush = |pending: &mut Vec<(usize, usize, Vec<f64>)>,
                     scores: &mut Vec<Vec<f64>>|
         -> Result<()> {
            if pending.is_empty() {
                return Ok(());
            }
            let rows = SCORE_CAM_BATCH;
            let mut data = vec![T::zero(); rows * per];
            for (r, (s, _, mask)) in pending.iter().enumerate() {
                let xs = &x.data()[s * per..(s + 1) * per];
                let dst = &mut data[r * per..(r + 1) * per];
                for ci in 0..c_in {
                    let plane = ci * hh * ww;
                    for (i, m) in mask.iter().enumerate() {
                        dst[plane + i] = T::of(xs[plane + i].f64() * m);
                    }
                }
            }
            let out = self.forward(&Tensor::new(batch_shape(rows), data)?)?;
            let per_out = out.len() / rows;
            for (r, (s, c, _)) in pending.drain(..).enumerate() {
                scores[s][c] = score(&out.data()[r * per_out..(r + 1) * per_out], s);
            }
            Ok(())
        };
        for s in 0..n {
            for c in 0..k {
                let a = &maps.act[maps.channel(s, c)];
                let mut up = resize_aligned(a, maps.h, maps.w, hh, ww);
                let (lo, hi) = up
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
                        (l.min(v), h.max(v))
                    });
                if hi - lo == 0.0 {
                    zero_rows.push((s, c));
                    continue;
                }
                up.iter_mut()
                    .for_each(|v| *v = (*v - lo) / (hi - lo + 1e-8));
                pending.push((s, c, up));
                if pending.len() == SCORE_CAM_BATCH {
                    flush(&mut pending, &mut scores)?;
                }
            }
        }
        flush(&mut pending, &mut scores)?;
        if !zero_rows.is_empty() {
            let out = self.forward(&Tensor::zeros(&batch_shape(1)))?;
            for (s, c) in zero_rows {
                scores[s][c] = score(out.data(), s);
            }
        }
        Ok(scores.into_iter().map(|row| softmax(&row)).collect())
    }

    /// Ablation-CAM's channel weights, `N × K`: `(y − y_k) / y` with `y` the target's score and
    /// `y_k` its score with channel `k` of the layer ablated. Only the nodes after the layer run
    /// again, from the layer's ablated output and the other values they read (kept from one
    /// forward pass).
    fn ablation_cam_weights<T: Float>(
        &self,
        x: &Tensor<T>,
        layer: &str,
        maps: &LayerMaps,
        output: &Tensor<T>,
        seed: &Tensor<T>,
    ) -> Result<Vec<Vec<f64>>> {
        let (n, k, hw) = (maps.n, maps.k, maps.hw());
        let p = self.prepared::<T>(x.shape())?;
        let (v, _) = AttributeAt::Named(layer.to_string()).resolve(self.model.graph(), &p.graph)?;
        let frontier = p.exec.frontier(v);
        let mut kept = frontier.clone();
        kept.push(v);
        let base = p
            .exec
            .run_with(vec![x.clone()], &Keep::Values(kept), self.model.nonfinite())?;
        let value_of = |id: ValueId| -> Result<Arc<Tensor<T>>> {
            let t = base.get(id).cloned().ok_or_else(|| {
                AttributionError::Invalid(format!(
                    "value '{}' was not kept (internal)",
                    p.graph.value(id).name
                ))
            })?;
            if t.shape().first() != Some(&n) {
                return Err(AttributionError::Invalid(format!(
                    "ablation-cam reruns the layers after '{layer}' from the values they read; \
                     '{}' has shape {:?}, without the batch axis first",
                    p.graph.value(id).name,
                    t.shape()
                )));
            }
            Ok(t)
        };
        let act = value_of(v)?;
        let frontier: Vec<(ValueId, Arc<Tensor<T>>)> = frontier
            .into_iter()
            .map(|id| value_of(id).map(|t| (id, t)))
            .collect::<Result<_>>()?;
        let score = |out: &[T], s: usize| seed_score(out, seed, s);
        let per_out = output.len() / n.max(1);
        let original: Vec<f64> = (0..n)
            .map(|s| score(&output.data()[s * per_out..(s + 1) * per_out], s))
            .collect();
        if let Some(s) = original.iter().position(|&y| y == 0.0) {
            return Err(AttributionError::Invalid(format!(
                "ablation-cam divides by the target's score, which is 0 for sample {s}"
            )));
        }
        // pytorch-grad-cam's ablation values, per sample and channel
        let per_act = act.len() / n;
        let lowest: Vec<T> = act
            .data()
            .chunks(per_act.max(1))
            .map(|sample| {
                sample
                    .iter()
                    .fold(T::of(f64::INFINITY), |m, &v| if v < m { v } else { m })
            })
            .collect();
        let ablation = |s: usize, c: usize| -> T {
            if lowest[s] == T::zero() {
                return T::zero();
            }
            let mut value = lowest[s];
            for _ in 0..=(c % ABLATION_GROUP) {
                value = value - T::of(ABLATION_VALUE);
            }
            value
        };
        let pairs: Vec<(usize, usize)> = (0..n).flat_map(|s| (0..k).map(move |c| (s, c))).collect();
        let mut weights = vec![vec![0.0; k]; n];
        for chunk in pairs.chunks(n) {
            // rows of the chunk: the pairs, padded with the first pair (scores not used)
            let rows: Vec<(usize, usize)> = (0..n)
                .map(|r| chunk.get(r).copied().unwrap_or(chunk[0]))
                .collect();
            let samples: Vec<usize> = rows.iter().map(|(s, _)| *s).collect();
            let mut ablated = take_rows(&act, &samples)?;
            {
                let data = ablated.data_mut();
                for (r, &(s, c)) in rows.iter().enumerate() {
                    let value = ablation(s, c);
                    let at = r * per_act + c * hw;
                    data[at..at + hw].iter_mut().for_each(|d| *d = value);
                }
            }
            let mut given = vec![(v, Arc::new(ablated))];
            for (id, t) in &frontier {
                given.push((*id, Arc::new(take_rows(t, &samples)?)));
            }
            let outs = p.exec.run_from(given, self.model.nonfinite())?;
            let out = &outs[0];
            for (r, &(s, c)) in chunk.iter().enumerate() {
                let y = score(&out.data()[r * per_out..(r + 1) * per_out], s);
                weights[s][c] = (original[s] - y) / original[s];
            }
        }
        Ok(weights)
    }
}

/// The score of sample `s`'s output row `out` under its seed (`seed · out`: the target's logit
/// for a one-hot seed, a difference of logits for a contrastive one).
fn seed_score<T: Float>(out: &[T], seed: &Tensor<T>, s: usize) -> f64 {
    let classes = seed.len() / seed.shape().first().copied().unwrap_or(1).max(1);
    out.iter()
        .zip(&seed.data()[s * classes..(s + 1) * classes])
        .map(|(o, w)| o.f64() * w.f64())
        .sum()
}

/// Grad-CAM, Grad-CAM++ and XGrad-CAM's channel weights, `N × K`.
fn gradient_weights(kind: CamKind, m: &LayerMaps) -> Vec<Vec<f64>> {
    (0..m.n)
        .map(|s| {
            (0..m.k)
                .map(|c| {
                    let r = m.channel(s, c);
                    let (a, g) = (&m.act[r.clone()], &m.grad[r]);
                    let sum_a: f64 = a.iter().sum();
                    match kind {
                        CamKind::GradCam => g.iter().sum::<f64>() / g.len().max(1) as f64,
                        CamKind::GradCamPlusPlus => g
                            .iter()
                            .map(|&g| {
                                if g == 0.0 {
                                    return 0.0;
                                }
                                let g2 = g * g;
                                let aij = g2 / (2.0 * g2 + sum_a * g2 * g + 1e-6);
                                g.max(0.0) * aij
                            })
                            .sum(),
                        _ => a.iter().zip(g).map(|(&a, &g)| g * a / (sum_a + 1e-7)).sum(),
                    }
                })
                .collect()
        })
        .collect()
}

/// `Σ_k w_k A_k` per sample.
fn weighted_sum(m: &LayerMaps, weights: &[Vec<f64>]) -> Vec<Vec<f64>> {
    (0..m.n)
        .map(|s| {
            let mut cam = vec![0.0; m.hw()];
            for (c, &w) in weights[s].iter().enumerate() {
                for (o, a) in cam.iter_mut().zip(&m.act[m.channel(s, c)]) {
                    *o += w * a;
                }
            }
            cam
        })
        .collect()
}

/// LayerCAM: `Σ_k ReLU(g_k) ⊙ A_k` per sample.
fn layer_cam(m: &LayerMaps) -> Vec<Vec<f64>> {
    (0..m.n)
        .map(|s| {
            let mut cam = vec![0.0; m.hw()];
            for c in 0..m.k {
                let r = m.channel(s, c);
                for ((o, a), g) in cam.iter_mut().zip(&m.act[r.clone()]).zip(&m.grad[r]) {
                    *o += g.max(0.0) * a;
                }
            }
            cam
        })
        .collect()
}

/// Eigen-CAM: the centred `(h·w) × K` activations of sample `s` (NaN as 0) projected on their
/// first right singular vector, oriented so that the largest magnitude is positive.
fn eigen_projection(m: &LayerMaps, s: usize) -> Result<Vec<f64>> {
    use faer::{Mat, Side};
    let (hw, k) = (m.hw(), m.k);
    // centred, position-major: mat[p][c]
    let mut centred = vec![0.0; hw * k];
    for c in 0..k {
        let a = &m.act[m.channel(s, c)];
        let clean = |v: f64| if v.is_nan() { 0.0 } else { v };
        let mean = a.iter().map(|&v| clean(v)).sum::<f64>() / hw.max(1) as f64;
        for (p, &v) in a.iter().enumerate() {
            centred[p * k + c] = clean(v) - mean;
        }
    }
    let x = Mat::<f64>::from_fn(hw, k, |p, c| centred[p * k + c]);
    let fail = |e: faer::linalg::evd::EvdError| {
        AttributionError::Invalid(format!("eigen-cam's eigendecomposition failed: {e:?}"))
    };
    // the smaller Gram matrix: XᵀX (K × K, then p = X v) or XXᵀ (hw × hw, then p = σ u)
    let mut p: Vec<f64> = if k <= hw {
        let gram = x.transpose() * &x;
        let evd = gram.self_adjoint_eigen(Side::Lower).map_err(fail)?;
        let v: Vec<f64> = (0..k).map(|c| evd.U()[(c, k - 1)]).collect();
        (0..hw)
            .map(|q| (0..k).map(|c| centred[q * k + c] * v[c]).sum())
            .collect()
    } else {
        let gram = &x * x.transpose();
        let evd = gram.self_adjoint_eigen(Side::Lower).map_err(fail)?;
        let sigma = evd.S()[hw - 1].max(0.0).sqrt();
        (0..hw).map(|q| sigma * evd.U()[(q, hw - 1)]).collect()
    };
    let (lo, hi) = p
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    if lo.abs() > hi.abs() {
        p.iter_mut().for_each(|v| *v = -*v);
    }
    Ok(p)
}

/// pytorch-grad-cam's `scale_cam_image` normalisation: `(m − min) / (1e-7 + max(m − min))`.
fn min_max(m: &mut [f64]) {
    let lo = m.iter().copied().fold(f64::INFINITY, f64::min);
    m.iter_mut().for_each(|v| *v -= lo);
    let hi = m.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    m.iter_mut().for_each(|v| *v /= 1e-7 + hi);
}

fn softmax(row: &[f64]) -> Vec<f64> {
    let top = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = row.iter().map(|v| (v - top).exp()).collect();
    let total: f64 = e.iter().sum();
    e.into_iter().map(|v| v / total).collect()
}

/// Source index and weight of the next index along one axis, half-pixel centres (OpenCV's
/// `INTER_LINEAR`, PyTorch's `align_corners=False`), clamped at the borders.
fn half_pixel(dst: usize, src_len: usize, dst_len: usize) -> (usize, usize, f64) {
    let scale = src_len as f64 / dst_len as f64;
    let f = (dst as f64 + 0.5) * scale - 0.5;
    let mut i = f.floor();
    let mut t = f - i;
    if i < 0.0 {
        i = 0.0;
        t = 0.0;
    }
    let i = i as usize;
    if i + 1 >= src_len {
        return (src_len - 1, src_len - 1, 0.0);
    }
    (i, i + 1, t)
}

/// Source index and weight along one axis with aligned corners (`UpsamplingBilinear2d`).
fn aligned(dst: usize, src_len: usize, dst_len: usize) -> (usize, usize, f64) {
    if dst_len <= 1 || src_len <= 1 {
        return (0, 0, 0.0);
    }
    let f = dst as f64 * (src_len - 1) as f64 / (dst_len - 1) as f64;
    let i = (f.floor() as usize).min(src_len - 1);
    let j = (i + 1).min(src_len - 1);
    (i, j, f - i as f64)
}

fn bilinear(
    m: &[f64],
    h: usize,
    w: usize,
    hh: usize,
    ww: usize,
    axis: fn(usize, usize, usize) -> (usize, usize, f64),
) -> Vec<f64> {
    let cols: Vec<(usize, usize, f64)> = (0..ww).map(|x| axis(x, w, ww)).collect();
    let mut out = Vec::with_capacity(hh * ww);
    for y in 0..hh {
        let (y0, y1, ty) = axis(y, h, hh);
        for &(x0, x1, tx) in &cols {
            let top = m[y0 * w + x0] * (1.0 - tx) + m[y0 * w + x1] * tx;
            let bottom = m[y1 * w + x0] * (1.0 - tx) + m[y1 * w + x1] * tx;
            out.push(top * (1.0 - ty) + bottom * ty);
        }
    }
    out
}

/// Bilinear resize, half-pixel centres (OpenCV's `cv2.resize` with `INTER_LINEAR`).
pub fn resize_half_pixel(m: &[f64], h: usize, w: usize, hh: usize, ww: usize) -> Vec<f64> {
    bilinear(m, h, w, hh, ww, half_pixel)
}

/// Bilinear resize with aligned corners (PyTorch's `UpsamplingBilinear2d`).
pub fn resize_aligned(m: &[f64], h: usize, w: usize, hh: usize, ww: usize) -> Vec<f64> {
    bilinear(m, h, w, hh, ww, aligned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_pixel_resize_matches_hand_values() {
        // 2 → 4: source positions -0.25, 0.25, 0.75, 1.25 → clamped, 0.25, 0.75, clamped
        let up = resize_half_pixel(&[0.0, 1.0], 1, 2, 1, 4);
        assert_eq!(up, vec![0.0, 0.25, 0.75, 1.0]);
        let same = resize_half_pixel(&[1.0, 2.0, 3.0, 4.0], 2, 2, 2, 2);
        assert_eq!(same, vec![1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn aligned_resize_keeps_the_corners() {
        let up = resize_aligned(&[0.0, 3.0], 1, 2, 1, 4);
        assert_eq!(up, vec![0.0, 1.0, 2.0, 3.0]);
    }

    #[test]
    fn names_read_back() {
        for (name, kind) in CAM_ATTRIBUTORS {
            assert_eq!(kind.name(), name);
            assert_eq!(CamKind::by_name(name), Some(kind));
            assert_eq!(CamKind::by_name(&name.replace('-', "_")), Some(kind));
        }
        assert_eq!(CamKind::by_name("gradcam++"), None);
        assert_eq!(
            CamKind::by_name("gradcampp"),
            Some(CamKind::GradCamPlusPlus)
        );
    }

    #[test]
    fn min_max_of_a_constant_map_is_zero() {
        let mut m = vec![2.0; 4];
        min_max(&mut m);
        assert_eq!(m, vec![0.0; 4]);
    }
}
