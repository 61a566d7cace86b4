//! Quantus 0.6's faithfulness metrics, re-implemented from their definitions (see
//! `docs/evaluation.md`, "Faithfulness metrics of Quantus"):
//!
//! * [`FaithfulnessCorrelation`] (`quantus.FaithfulnessCorrelation`, Bhatt et al. 2020): random
//!   feature subsets set to a baseline; Pearson correlation between the subsets' relevance sums
//!   and the drops of the target logit.
//! * [`Road`] (`quantus.ROAD`, Rong et al. 2022): the most relevant pixels removed by noisy
//!   linear imputation, for a list of percentages; whether the target stays the arg-max class.
//! * [`Irof`] (`quantus.IROF`, Rieger & Hansen 2020): superpixels removed most-relevant-first
//!   (replaced by the mean); the area over the curve of the target's softmax probability
//!   relative to the unperturbed one.
//!
//! Every metric takes relevance of the inputs' shape or with one channel (N×1×H×W for N×C×H×W
//! inputs, e.g. a class-activation map), which stands for every channel as Quantus broadcasts it.
//! Perturbed copies of all samples and steps share forward batches ([`crate::scorer`]).

use prism_model::{Float, Model, Tensor};
use serde::Serialize;

use crate::error::{EvalError, Result};
use crate::perturbation::{sample_layout, Samples};
use crate::rng::{purpose, SplitMix64};
use crate::scorer::{Score, Scorer};
use crate::similarity::pearson;
use crate::Progress;

/// One sample's relevance as the metrics read it: `rc` channels (1 or the inputs' `c`) of
/// `plane` positions.
struct View<'a, T> {
    data: &'a [T],
    rc: usize,
    plane: usize,
}

impl<T: Float> View<'_, T> {
    /// The relevance of input feature `f` (channel-major index into C × plane).
    fn at(&self, f: usize) -> f64 {
        let (c, p) = (f / self.plane, f % self.plane);
        let c = if self.rc == 1 { 0 } else { c };
        self.data[c * self.plane + p].f64()
    }

    /// Each position's relevance summed over the relevance's channels.
    fn plane_sums(&self) -> Vec<f64> {
        let mut s = vec![0.0; self.plane];
        for ch in self.data.chunks(self.plane.max(1)) {
            s.iter_mut().zip(ch).for_each(|(a, v)| *a += v.f64());
        }
        s
    }
}

/// The relevance of each sample of a chunk, checked against the inputs.
fn views<'a, T: Float>(x: &Tensor<T>, relevance: &'a Tensor<T>) -> Result<Vec<View<'a, T>>> {
    let per = crate::relevance_sample_len(relevance.shape(), x.shape())?;
    let (c, h, w) = sample_layout(x.shape())?;
    let plane = h * w;
    let rc = per / plane.max(1);
    if rc != 1 && rc != c {
        return Err(EvalError::Invalid(format!(
            "relevance of shape {:?} for inputs of shape {:?}",
            relevance.shape(),
            x.shape()
        )));
    }
    Ok(relevance
        .data()
        .chunks(per.max(1))
        .map(|data| View { data, rc, plane })
        .collect())
}

/// Indices `0..v.len()` by descending value; ties keep index order (a stable sort).
fn descending(v: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
    idx
}

/// The value perturbed features take (Quantus' `perturb_baseline`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
pub enum FeatureBaseline {
    /// The sample's minimum over all its features (Quantus' `"black"`).
    Black,
    /// The sample's maximum (`"white"`).
    White,
    /// The sample's mean (`"mean"`).
    Mean,
    /// A constant.
    Value(f64),
}

impl FeatureBaseline {
    /// Parses `black`, `white`, `mean` or a number.
    pub fn parse(s: &str) -> Result<FeatureBaseline> {
        Ok(match s.trim() {
            "black" => FeatureBaseline::Black,
            "white" => FeatureBaseline::White,
            "mean" => FeatureBaseline::Mean,
            v => match v.parse::<f64>() {
                Ok(x) if x.is_finite() => FeatureBaseline::Value(x),
                _ => {
                    return Err(EvalError::Invalid(format!(
                        "unknown feature baseline '{s}'; use black, white, mean or a number"
                    )))
                }
            },
        })
    }

    /// The value for one sample.
    pub fn value<T: Float>(&self, sample: &[T]) -> f64 {
        let it = sample.iter().map(|v| v.f64());
        match *self {
            FeatureBaseline::Black => it.fold(f64::INFINITY, f64::min),
            FeatureBaseline::White => it.fold(f64::NEG_INFINITY, f64::max),
            FeatureBaseline::Mean => it.sum::<f64>() / sample.len().max(1) as f64,
            FeatureBaseline::Value(v) => v,
        }
    }
}

/// Faithfulness correlation (`quantus.FaithfulnessCorrelation`, defaults: 100 runs, subsets of
/// 224 features, the `black` baseline, Pearson correlation, logits).
///
/// For each sample and run `r`, a subset `S_r` of `subset_size` distinct input features (over
/// C × H × W) is set to the baseline; with `Δ_r = f_c(x) − f_c(x_{S_r})` and `a_r = Σ_{i∈S_r}
/// R_i`, the score is `pearson(a, Δ)` over the runs (NaN when either is constant). Subsets are
/// drawn from a SplitMix64 stream per sample (stream (sample, 4) under the seed; Quantus draws
/// them from numpy's global generator), or given ([`FaithfulnessCorrelation::scores_with`]).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FaithfulnessCorrelation {
    pub nr_runs: usize,
    pub subset_size: usize,
    pub baseline: FeatureBaseline,
    /// Perturbed inputs per forward pass.
    pub batch_size: usize,
    pub seed: u64,
}

impl Default for FaithfulnessCorrelation {
    fn default() -> Self {
        FaithfulnessCorrelation {
            nr_runs: 100,
            subset_size: 224,
            baseline: FeatureBaseline::Black,
            batch_size: 32,
            seed: 0,
        }
    }
}

impl FaithfulnessCorrelation {
    /// The subsets of run `0..nr_runs` for the run's sample `sample` of `n_features` features.
    pub fn subsets(&self, n_features: usize, sample: usize) -> Vec<Vec<usize>> {
        let mut rng = SplitMix64::stream(self.seed, sample as u64, purpose::SUBSETS);
        (0..self.nr_runs)
            .map(|_| rng.subset(n_features, self.subset_size))
            .collect()
    }

    fn check(&self, n_features: usize) -> Result<()> {
        if self.nr_runs < 2 || self.subset_size == 0 || self.subset_size > n_features {
            return Err(EvalError::Parameter {
                names: vec!["nr_runs", "subset_size"],
                detail: format!(
                    "must be at least 2 runs of 1 to {n_features} features (the input size), \
                     got {} runs of {}",
                    self.nr_runs, self.subset_size
                ),
            });
        }
        Ok(())
    }

    /// Each sample's correlation, with the subsets drawn from the seed.
    pub fn scores<T: Float>(
        &self,
        model: &Model,
        samples: &Samples<'_, T>,
        relevance: &Tensor<T>,
        progress: &dyn Progress,
    ) -> Result<Vec<f64>> {
        let n = samples.x.shape().first().copied().unwrap_or(0);
        let f = samples.x.len() / n.max(1);
        let subsets: Vec<Vec<Vec<usize>>> =
            (0..n).map(|i| self.subsets(f, samples.first + i)).collect();
        self.scores_with(model, samples, relevance, &subsets, progress)
    }

    /// Each sample's correlation for given subsets (`subsets[sample][run]`, feature indices
    /// into the flattened C × H × W sample).
    pub fn scores_with<T: Float>(
        &self,
        model: &Model,
        samples: &Samples<'_, T>,
        relevance: &Tensor<T>,
        subsets: &[Vec<Vec<usize>>],
        progress: &dyn Progress,
    ) -> Result<Vec<f64>> {
        let x = samples.x;
        let n = x.shape().first().copied().unwrap_or(0);
        let per = x.len() / n.max(1);
        self.check(per)?;
        let views = views(x, relevance)?;
        if subsets.len() != n || samples.original.len() != n || samples.targets.len() != n {
            return Err(EvalError::Invalid(format!(
                "{} subset lists, {} scores and {} targets for {n} samples",
                subsets.len(),
                samples.original.len(),
                samples.targets.len()
            )));
        }
        let mut drops: Vec<Vec<f64>> = subsets.iter().map(|s| vec![0.0; s.len()]).collect();
        let mut scorer = Scorer::new(model, &x.shape()[1..], self.batch_size, Score::Logit)?;
        let mut sums: Vec<Vec<f64>> = Vec::with_capacity(n);
        for (i, runs) in subsets.iter().enumerate() {
            let sample = &x.data()[i * per..(i + 1) * per];
            let b = T::of(self.baseline.value(sample));
            let mut s = Vec::with_capacity(runs.len());
            for (r, subset) in runs.iter().enumerate() {
                if let Some(&bad) = subset.iter().find(|&&f| f >= per) {
                    return Err(EvalError::Invalid(format!(
                        "sample {i}, run {r}: feature {bad} is out of range ({per} features)"
                    )));
                }
                let mut cur = sample.to_vec();
                for &f in subset {
                    cur[f] = b;
                }
                s.push(subset.iter().map(|&f| views[i].at(f)).sum());
                progress.inc(scorer.push(&cur, samples.targets[i], (i, r), &mut drops)? as u64);
            }
            sums.push(s);
        }
        progress.inc(scorer.flush(&mut drops)? as u64);
        Ok(drops
            .iter_mut()
            .zip(&sums)
            .zip(samples.original)
            .map(|((d, s), &y)| {
                d.iter_mut().for_each(|v| *v = y - *v);
                pearson(s, d)
            })
            .collect())
    }
}

/// Noisy linear imputation's neighbours and weights (Rong et al. 2022): the 4 direct
/// neighbours weigh 1/6, the 4 diagonal ones 1/12.
const NEIGHBOURS: [((isize, isize), f64); 8] = [
    ((1, 1), 1.0 / 12.0),
    ((0, 1), 1.0 / 6.0),
    ((-1, 1), 1.0 / 12.0),
    ((1, -1), 1.0 / 12.0),
    ((0, -1), 1.0 / 6.0),
    ((-1, -1), 1.0 / 12.0),
    ((1, 0), 1.0 / 6.0),
    ((-1, 0), 1.0 / 6.0),
];

/// Linear imputation of the pixels `removed` (positions of the `h × w` plane) of every channel
/// of a `c × h × w` sample, without noise: each removed value becomes the weighted mean of its
/// in-image neighbours (weights of [`NEIGHBOURS`], renormalised at the border), known or
/// imputed, i.e. the solution of one sparse symmetric positive-definite system per channel
/// (solved by conjugate gradients to a relative residual of 1e-13; Quantus uses a direct
/// sparse solver). A set of removed pixels with no known neighbour anywhere (the whole image)
/// is an error.
pub fn linear_imputation(
    sample: &[f64],
    (c, h, w): (usize, usize, usize),
    removed: &[usize],
) -> Result<Vec<f64>> {
    let plane = h * w;
    let mut out = sample.to_vec();
    if removed.is_empty() {
        return Ok(out);
    }
    if removed.len() >= plane {
        return Err(EvalError::Invalid(format!(
            "linear imputation of all {plane} pixels has nothing to impute from; remove fewer"
        )));
    }
    let mut var = vec![usize::MAX; plane];
    for (k, &p) in removed.iter().enumerate() {
        if p >= plane || var[p] != usize::MAX {
            return Err(EvalError::Invalid(format!(
                "pixel {p} is out of range or listed twice ({plane} pixels)"
            )));
        }
        var[p] = k;
    }
    // Per unknown: its diagonal (the in-image neighbours' weight), its unknown neighbours and
    // its known neighbours (pixel, weight).
    let k = removed.len();
    let mut diag = vec![0.0; k];
    let mut unknown: Vec<Vec<(usize, f64)>> = vec![Vec::new(); k];
    let mut known: Vec<Vec<(usize, f64)>> = vec![Vec::new(); k];
    for (i, &p) in removed.iter().enumerate() {
        let (y, x) = ((p / w) as isize, (p % w) as isize);
        for ((dy, dx), wt) in NEIGHBOURS {
            let (ny, nx) = (y + dy, x + dx);
            if ny < 0 || nx < 0 || ny >= h as isize || nx >= w as isize {
                continue;
            }
            diag[i] += wt;
            let q = ny as usize * w + nx as usize;
            match var[q] {
                usize::MAX => known[i].push((q, wt)),
                j => unknown[i].push((j, wt)),
            }
        }
    }
    let apply = |v: &[f64], out: &mut [f64]| {
        for i in 0..k {
            out[i] = diag[i] * v[i] - unknown[i].iter().map(|&(j, wt)| wt * v[j]).sum::<f64>();
        }
    };
    for ch in 0..c {
        let src = &sample[ch * plane..(ch + 1) * plane];
        let rhs: Vec<f64> = known
            .iter()
            .map(|kn| kn.iter().map(|&(q, wt)| wt * src[q]).sum())
            .collect();
        let sol = conjugate_gradients(&rhs, &diag, &apply)?;
        for (i, &p) in removed.iter().enumerate() {
            out[ch * plane + p] = sol[i];
        }
    }
    Ok(out)
}

/// Solves `M v = b` for a symmetric positive-definite `M` (applied by `apply`) by conjugate
/// gradients with the Jacobi preconditioner `diag`.
fn conjugate_gradients(
    b: &[f64],
    diag: &[f64],
    apply: &dyn Fn(&[f64], &mut [f64]),
) -> Result<Vec<f64>> {
    let k = b.len();
    let norm = |v: &[f64]| v.iter().map(|a| a * a).sum::<f64>().sqrt();
    let bn = norm(b);
    let mut v: Vec<f64> = b.iter().zip(diag).map(|(b, d)| b / d).collect();
    if bn == 0.0 {
        return Ok(vec![0.0; k]);
    }
    let mut mv = vec![0.0; k];
    apply(&v, &mut mv);
    let mut r: Vec<f64> = b.iter().zip(&mv).map(|(b, m)| b - m).collect();
    let mut z: Vec<f64> = r.iter().zip(diag).map(|(r, d)| r / d).collect();
    let mut p = z.clone();
    let mut rz: f64 = r.iter().zip(&z).map(|(a, b)| a * b).sum();
    let max_iter = 20 * k + 200;
    for _ in 0..max_iter {
        if norm(&r) <= 1e-13 * bn {
            return Ok(v);
        }
        apply(&p, &mut mv);
        let pmp: f64 = p.iter().zip(&mv).map(|(a, b)| a * b).sum();
        if pmp <= 0.0 || !pmp.is_finite() {
            break;
        }
        let alpha = rz / pmp;
        for i in 0..k {
            v[i] += alpha * p[i];
            r[i] -= alpha * mv[i];
        }
        z.iter_mut()
            .zip(&r)
            .zip(diag)
            .for_each(|((z, r), d)| *z = r / d);
        let rz_new: f64 = r.iter().zip(&z).map(|(a, b)| a * b).sum();
        let beta = rz_new / rz;
        rz = rz_new;
        p.iter_mut().zip(&z).for_each(|(p, z)| *p = z + beta * *p);
    }
    if norm(&r) <= 1e-10 * bn {
        return Ok(v);
    }
    Err(EvalError::Invalid(format!(
        "the linear imputation's system of {k} pixels did not converge (residual {:.3e} of \
         {bn:.3e}); the removed pixels may leave none to impute from",
        norm(&r)
    )))
}

/// ROAD, RemOve And Debias (`quantus.ROAD`; defaults: percentages 1, 3, …, 99, noise 0.01).
///
/// For each percentage `p`, the `⌊H·W·p/100⌋` positions of highest relevance (summed over the
/// relevance's channels; most relevant first, ties in raster order) are removed in every
/// channel by noisy linear imputation ([`linear_imputation`] plus `noise · 𝒩(0, 1)` per removed
/// value, SplitMix64 stream (sample, 5) under the seed); the score is 1 when the target is
/// still the model's arg-max class, else 0. The curve is the mean over samples per percentage;
/// its area is the trapezoid rule with unit spacing (Quantus' `calculate_auc`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Road {
    pub percentages: Vec<f64>,
    pub noise: f64,
    /// Perturbed inputs per forward pass.
    pub batch_size: usize,
    pub seed: u64,
}

impl Default for Road {
    fn default() -> Self {
        Road {
            percentages: (1..100).step_by(2).map(f64::from).collect(),
            noise: 0.01,
            batch_size: 32,
            seed: 0,
        }
    }
}

impl Road {
    /// Each sample's curve: 1 or 0 per percentage.
    pub fn curves<T: Float>(
        &self,
        model: &Model,
        samples: &Samples<'_, T>,
        relevance: &Tensor<T>,
        progress: &dyn Progress,
    ) -> Result<Vec<Vec<f64>>> {
        let x = samples.x;
        let layout @ (_, h, w) = sample_layout(x.shape())?;
        let plane = h * w;
        if let Some(p) = self
            .percentages
            .iter()
            .find(|p| !(**p >= 0.0 && **p < 100.0))
        {
            return Err(EvalError::Parameter {
                names: vec!["road_percentages"],
                detail: format!("are percentages in [0, 100), got {p}"),
            });
        }
        if !(self.noise >= 0.0 && self.noise.is_finite()) {
            return Err(EvalError::Parameter {
                names: vec!["road_noise"],
                detail: format!("must be a non-negative number, got {}", self.noise),
            });
        }
        let views = views(x, relevance)?;
        let n = views.len();
        let per = x.len() / n.max(1);
        let mut out = vec![vec![0.0; self.percentages.len()]; n];
        let mut scorer = Scorer::new(model, &x.shape()[1..], self.batch_size, Score::Hit)?;
        for (i, view) in views.iter().enumerate() {
            let order = descending(&view.plane_sums());
            let sample: Vec<f64> = x.data()[i * per..(i + 1) * per]
                .iter()
                .map(|v| v.f64())
                .collect();
            let mut rng =
                SplitMix64::stream(self.seed, (samples.first + i) as u64, purpose::ROAD_NOISE);
            for (j, &p) in self.percentages.iter().enumerate() {
                let k = (plane as f64 * p / 100.0) as usize;
                let mut v = linear_imputation(&sample, layout, &order[..k])
                    .map_err(|e| EvalError::Invalid(format!("ROAD at {p} %: {e}")))?;
                if self.noise > 0.0 {
                    for ch in v.chunks_mut(plane) {
                        for &q in &order[..k] {
                            ch[q] += self.noise * rng.normal();
                        }
                    }
                }
                let cur: Vec<T> = v.into_iter().map(T::of).collect();
                progress.inc(scorer.push(&cur, samples.targets[i], (i, j), &mut out)? as u64);
            }
        }
        progress.inc(scorer.flush(&mut out)? as u64);
        Ok(out)
    }
}

/// Area under a curve by the trapezoid rule with unit spacing (numpy's `trapz(y, dx=1)`).
pub fn trapezoid(y: &[f64]) -> f64 {
    y.windows(2).map(|p| (p[0] + p[1]) / 2.0).sum()
}

/// Iterative removal of features (`quantus.IROF`; defaults: SLIC superpixels, the `mean`
/// baseline, softmax probabilities).
///
/// A sample's segments (labels `0..S` over its `h × w` plane) are ranked by their mean
/// relevance (over the relevance's channels and the segment's pixels), most relevant first
/// (ties in label order). Step `k = 1 … S` replaces segment `k` of that order, in every
/// channel, by the mean of the sample as perturbed so far (all channels and pixels), keeping
/// the earlier replacements; `q_k = p_c(x⁽ᵏ⁾) / p_c(x)` with `p_c` the target's softmax
/// probability. The score is the area over that curve, `S − trapezoid(q_1 … q_S)`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Irof {
    /// Perturbed inputs per forward pass.
    pub batch_size: usize,
}

impl Default for Irof {
    fn default() -> Self {
        Irof { batch_size: 32 }
    }
}

/// A regular grid of square segments of edge `⌈√(h·w/100)⌉` (about SLIC's default of 100
/// segments; Prism's default segmenter, which is not SLIC), labelled in raster order.
pub fn grid_segments(h: usize, w: usize) -> Vec<usize> {
    let edge = ((h * w) as f64 / 100.0).sqrt().ceil().max(1.0) as usize;
    let cols = w.div_ceil(edge);
    (0..h * w)
        .map(|p| (p / w / edge) * cols + (p % w) / edge)
        .collect()
}

impl Irof {
    /// Each sample's AOC and its curve `q_1 … q_S`. `segments` holds one `h × w` label map per
    /// sample (labels `0..S`, every label used).
    pub fn scores<T: Float>(
        &self,
        model: &Model,
        samples: &Samples<'_, T>,
        relevance: &Tensor<T>,
        segments: &[Vec<usize>],
        progress: &dyn Progress,
    ) -> Result<Vec<(f64, Vec<f64>)>> {
        let x = samples.x;
        let (_, h, w) = sample_layout(x.shape())?;
        let plane = h * w;
        let views = views(x, relevance)?;
        let n = views.len();
        if segments.len() != n {
            return Err(EvalError::Invalid(format!(
                "{} segment maps for {n} samples",
                segments.len()
            )));
        }
        let per = x.len() / n.max(1);
        let mut out: Vec<Vec<f64>> = Vec::with_capacity(n);
        let mut ranked = Vec::with_capacity(n);
        for (i, seg) in segments.iter().enumerate() {
            if seg.len() != plane {
                return Err(EvalError::Invalid(format!(
                    "sample {}: a segment map of {} labels for a {h}×{w} plane",
                    samples.first + i,
                    seg.len()
                )));
            }
            let s = seg.iter().max().map_or(0, |m| m + 1);
            let mut count = vec![0usize; s];
            seg.iter().for_each(|&l| count[l] += 1);
            if let Some(l) = count.iter().position(|&c| c == 0) {
                return Err(EvalError::Invalid(format!(
                    "sample {}: segment label {l} is unused; labels must be 0..{s} with every \
                     label present",
                    samples.first + i
                )));
            }
            let sums = views[i].plane_sums();
            let mut mean = vec![0.0; s];
            seg.iter().zip(&sums).for_each(|(&l, v)| mean[l] += v);
            mean.iter_mut()
                .zip(&count)
                .for_each(|(m, &c)| *m /= (c * views[i].rc) as f64);
            ranked.push(descending(&mean));
            out.push(vec![0.0; s]);
        }
        let mut scorer = Scorer::new(model, &x.shape()[1..], self.batch_size, Score::Softmax)?;
        for (i, order) in ranked.iter().enumerate() {
            let mut cur: Vec<f64> = x.data()[i * per..(i + 1) * per]
                .iter()
                .map(|v| v.f64())
                .collect();
            for (k, &label) in order.iter().enumerate() {
                let m = cur.iter().sum::<f64>() / cur.len().max(1) as f64;
                for ch in cur.chunks_mut(plane) {
                    ch.iter_mut()
                        .zip(&segments[i])
                        .filter(|(_, &l)| l == label)
                        .for_each(|(v, _)| *v = m);
                }
                let input: Vec<T> = cur.iter().map(|&v| T::of(v)).collect();
                progress.inc(scorer.push(&input, samples.targets[i], (i, k), &mut out)? as u64);
            }
        }
        progress.inc(scorer.flush(&mut out)? as u64);
        // the unperturbed probabilities
        let mut base = vec![vec![0.0; 1]; n];
        for i in 0..n {
            scorer.push(
                &x.data()[i * per..(i + 1) * per],
                samples.targets[i],
                (i, 0),
                &mut base,
            )?;
        }
        scorer.flush(&mut base)?;
        Ok(out
            .into_iter()
            .zip(base)
            .map(|(mut q, p0)| {
                q.iter_mut().for_each(|v| *v /= p0[0]);
                (q.len() as f64 - trapezoid(&q), q)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imputation_of_one_pixel_is_the_weighted_mean_of_its_neighbours() {
        // 3×3 plane, the centre removed: every neighbour is known.
        let s: Vec<f64> = (0..9).map(|v| (v * v) as f64).collect();
        let out = linear_imputation(&s, (1, 3, 3), &[4]).unwrap();
        let want = (s[0] + s[2] + s[6] + s[8]) / 12.0 + (s[1] + s[3] + s[5] + s[7]) / 6.0;
        assert!((out[4] - want).abs() < 1e-12, "{} {want}", out[4]);
        assert_eq!(out[0], s[0]);
        // a corner: three neighbours, weights renormalised
        let out = linear_imputation(&s, (1, 3, 3), &[0]).unwrap();
        let want = (s[1] / 6.0 + s[3] / 6.0 + s[4] / 12.0) / (1.0 / 6.0 + 1.0 / 6.0 + 1.0 / 12.0);
        assert!((out[0] - want).abs() < 1e-12);
        assert!(linear_imputation(&s, (1, 3, 3), &(0..9).collect::<Vec<_>>()).is_err());
    }

    #[test]
    fn imputed_values_satisfy_the_mean_value_equations() {
        let (h, w) = (6, 7);
        let s: Vec<f64> = (0..2 * h * w).map(|v| ((v * 37) % 11) as f64).collect();
        let removed = [3, 4, 10, 11, 12, 17, 40, 41];
        let out = linear_imputation(&s, (2, h, w), &removed).unwrap();
        for ch in 0..2 {
            let p = &out[ch * h * w..(ch + 1) * h * w];
            for &q in &removed {
                let (y, x) = ((q / w) as isize, (q % w) as isize);
                let (mut num, mut den) = (0.0, 0.0);
                for ((dy, dx), wt) in NEIGHBOURS {
                    let (ny, nx) = (y + dy, x + dx);
                    if ny >= 0 && nx >= 0 && ny < h as isize && nx < w as isize {
                        num += wt * p[ny as usize * w + nx as usize];
                        den += wt;
                    }
                }
                assert!((p[q] - num / den).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn grid_segments_cover_the_plane_with_about_100_cells() {
        let s = grid_segments(32, 32);
        let n = s.iter().max().unwrap() + 1;
        assert_eq!(n, 64); // edge ⌈√10.24⌉ = 4
        assert_eq!(s[0], 0);
        assert_eq!(s[4], 1);
        assert_eq!(s[32 * 4], 8);
    }

    #[test]
    fn trapezoid_matches_numpy() {
        assert_eq!(trapezoid(&[1.0, 2.0, 4.0]), 4.5);
        assert_eq!(trapezoid(&[3.0]), 0.0);
    }

    #[test]
    fn feature_baselines_parse_and_evaluate() {
        let s = [1.0f64, -2.0, 4.0];
        assert_eq!(FeatureBaseline::parse("black").unwrap().value(&s), -2.0);
        assert_eq!(FeatureBaseline::parse("white").unwrap().value(&s), 4.0);
        assert_eq!(FeatureBaseline::parse("mean").unwrap().value(&s), 1.0);
        assert_eq!(FeatureBaseline::parse("0.5").unwrap().value(&s), 0.5);
        assert!(FeatureBaseline::parse("grey").is_err());
    }
}
