//! Concept activation vectors: an L2-regularised logistic regression of concept against random
//! activations, solved to a stated tolerance by a deterministic optimiser; and the TCAV scores
//! of a CAV over the target's gradients.
//!
//! **The classifier.** Labels `y = 1` (concept) and `y = 0` (random); the model
//! `p(concept | x) = σ(w·x + b)`; the objective over the `m` training rows
//!
//! ```text
//! L(w, b) = (1/m) Σ_i log(1 + exp(−s_i (w·x_i + b))) + (λ/2) ‖w‖²,   s_i = 2y_i − 1,
//! ```
//!
//! with λ = [`DEFAULT_L2`] = 0.01 (the `alpha` of Captum's default `SGDClassifier`, which
//! writes its objective the same way with the hinge loss) and the intercept `b` not penalised.
//! `L` is strictly convex in `w`: its minimiser is unique, and Prism computes it rather than
//! sampling one by stochastic gradient descent.
//!
//! **The optimiser.** Nesterov's accelerated gradient descent from `w = 0, b = 0` with the
//! constant step `1/L_f`, `L_f = λ_max([X 1][X 1]ᵀ)/(4m) + λ` (the gradient's Lipschitz constant;
//! λ_max bounded from above by the smaller of the Frobenius norm and the largest absolute row
//! sum), momentum `(k − 1)/(k + 2)`, restarted (k = 0) whenever the step goes against the
//! gradient (O'Donoghue & Candès 2015). Every iterate of gradient descent from 0 stays in the
//! row space of `X`, `w = Xᵀα`, so the iteration runs on `α ∈ ℝ^m` with the Gram matrix
//! `K = XXᵀ` (computed once, `m² d`; each step then costs `m²`, not `m d`).
//!
//! **Stopping rule.** The gradient norm `‖∇L(w, b)‖ = √(uᵀKu + ḡ_b²)` (`u = r/m + λα`,
//! `r_i = σ(z_i) − y_i`) falls to [`DEFAULT_TOLERANCE`] times its value at the start, or
//! [`DEFAULT_MAX_ITERATIONS`] steps are taken ([`Cav::converged`] says which).
//!
//! **The CAV** is `w/‖w‖`: the unit normal of the decision boundary, pointing to the concept.
//! Captum's is the SGD weight vector itself, whose length depends on the run; the sign counts
//! do not depend on the length, the magnitudes do (see docs/tcav.md).

use prism_eval::rng::SplitMix64;

/// λ of the L2 penalty (Captum's `SGDClassifier(alpha=0.01)`).
pub const DEFAULT_L2: f64 = 0.01;
/// The share of the examples held out to measure the CAV's accuracy (Captum's
/// `test_split_ratio`).
pub const DEFAULT_TEST_FRACTION: f64 = 0.33;
/// The optimiser stops when the gradient norm is this fraction of the initial one.
pub const DEFAULT_TOLERANCE: f64 = 1e-8;
/// The most optimiser steps per CAV.
pub const DEFAULT_MAX_ITERATIONS: usize = 100_000;

/// How CAVs are trained.
#[derive(Clone, Debug, PartialEq)]
pub struct CavSettings {
    /// λ of the L2 penalty on `w`.
    pub l2: f64,
    /// Held-out share of the examples, `⌊fraction · n⌋` of them (Captum: `int(0.33 · n)`).
    pub test_fraction: f64,
    /// Relative gradient-norm tolerance.
    pub tolerance: f64,
    pub max_iterations: usize,
}

impl Default for CavSettings {
    fn default() -> Self {
        CavSettings {
            l2: DEFAULT_L2,
            test_fraction: DEFAULT_TEST_FRACTION,
            tolerance: DEFAULT_TOLERANCE,
            max_iterations: DEFAULT_MAX_ITERATIONS,
        }
    }
}

/// Rows of activations: `n` rows of `d` values, row-major.
#[derive(Clone, Copy, Debug)]
pub struct Rows<'a> {
    pub data: &'a [f64],
    pub n: usize,
    pub d: usize,
}

impl<'a> Rows<'a> {
    /// `data` as rows of `d` values (`data.len()` must be a multiple of `d`).
    pub fn new(data: &'a [f64], d: usize) -> Rows<'a> {
        Rows {
            data,
            n: data.len().checked_div(d).unwrap_or(0),
            d,
        }
    }

    pub fn row(&self, i: usize) -> &'a [f64] {
        &self.data[i * self.d..(i + 1) * self.d]
    }
}

/// A trained concept activation vector.
#[derive(Clone, Debug, PartialEq)]
pub struct Cav {
    /// The unit normal of the decision boundary, towards the concept.
    pub vector: Vec<f64>,
    /// The classifier's weights `w` (not normalised) and intercept `b`.
    pub weights: Vec<f64>,
    pub intercept: f64,
    /// The share of held-out examples classified right.
    pub accuracy: f64,
    pub train: usize,
    pub test: usize,
    /// Optimiser steps taken.
    pub iterations: usize,
    /// Whether the stopping tolerance was reached (else `max_iterations` ran out).
    pub converged: bool,
}

/// Why no CAV could be trained.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CavError {
    #[error(
        "{concept} + {random} examples give a held-out set of {test} and a training set of \
         {train} with both kinds ({test_fraction} held out); give each set at least 3 examples"
    )]
    TooFew {
        concept: usize,
        random: usize,
        train: usize,
        test: usize,
        test_fraction: f64,
    },
    #[error("the concept and random activations have {0} and {1} features; they must match")]
    Features(usize, usize),
    #[error(
        "the classifier found no direction that tells the concept from the random examples \
         (‖w‖ = {0}): the two sets' activations at the layer are alike"
    )]
    Degenerate(f64),
    #[error("the activations hold NaN or ±Inf")]
    NonFinite,
}

/// Trains the CAV of `concept` against `random`. The examples (concept rows first, then random
/// ones) are shuffled by a SplitMix64 permutation of stream (`seed`, `stream`) and the first
/// `⌊test_fraction · n⌋` held out, as Captum's `_train_test_split` does with Python's `random`.
pub fn train_cav(
    concept: Rows<'_>,
    random: Rows<'_>,
    seed: u64,
    stream: u64,
    settings: &CavSettings,
) -> Result<Cav, CavError> {
    if concept.d != random.d {
        return Err(CavError::Features(concept.d, random.d));
    }
    if concept
        .data
        .iter()
        .chain(random.data)
        .any(|v| !v.is_finite())
    {
        return Err(CavError::NonFinite);
    }
    let d = concept.d;
    let n = concept.n + random.n;
    let row = |i: usize| {
        if i < concept.n {
            (concept.row(i), 1.0)
        } else {
            (random.row(i - concept.n), 0.0)
        }
    };
    let order = SplitMix64::stream(seed, stream, PURPOSE_SPLIT).permutation(n);
    let test = (settings.test_fraction * n as f64) as usize;
    let (held, train) = order.split_at(test.min(n));
    let labels = |ix: &[usize]| ix.iter().map(|&i| row(i).1).collect::<Vec<f64>>();
    let y_train = labels(train);
    let both = y_train.contains(&1.0) && y_train.contains(&0.0);
    if held.is_empty() || !both {
        return Err(CavError::TooFew {
            concept: concept.n,
            random: random.n,
            train: train.len(),
            test: held.len(),
            test_fraction: settings.test_fraction,
        });
    }
    let x: Vec<&[f64]> = train.iter().map(|&i| row(i).0).collect();
    let (alpha, intercept, iterations, converged) = fit(&x, &y_train, settings);
    let mut weights = vec![0.0; d];
    for (a, xi) in alpha.iter().zip(&x) {
        for (w, v) in weights.iter_mut().zip(xi.iter()) {
            *w += a * v;
        }
    }
    let norm = weights.iter().map(|v| v * v).sum::<f64>().sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return Err(CavError::Degenerate(norm));
    }
    let correct = held
        .iter()
        .filter(|&&i| {
            let (xi, yi) = row(i);
            let z = dot(&weights, xi) + intercept;
            (z > 0.0) == (yi == 1.0)
        })
        .count();
    Ok(Cav {
        vector: weights.iter().map(|v| v / norm).collect(),
        weights,
        intercept,
        accuracy: correct as f64 / held.len() as f64,
        train: train.len(),
        test: held.len(),
        iterations,
        converged,
    })
}

/// The stream purpose of the train/test split.
const PURPOSE_SPLIT: u64 = 0x7CA5;

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Minimises the objective over `w = Xᵀα` and `b`: `(α, b, steps, converged)`.
fn fit(x: &[&[f64]], y: &[f64], s: &CavSettings) -> (Vec<f64>, f64, usize, bool) {
    let m = x.len();
    let mf = m as f64;
    let lambda = s.l2;
    // K = XXᵀ, symmetric
    let mut k = vec![0.0; m * m];
    for i in 0..m {
        for j in 0..=i {
            let v = dot(x[i], x[j]);
            k[i * m + j] = v;
            k[j * m + i] = v;
        }
    }
    // λ_max of K + 11ᵀ (the intercept's column) ≤ min(‖·‖_F, max row sum of |·|)
    let frob = k.iter().map(|v| (v + 1.0) * (v + 1.0)).sum::<f64>().sqrt();
    let rows = (0..m)
        .map(|i| k[i * m..(i + 1) * m].iter().map(|v| (v + 1.0).abs()).sum())
        .fold(0.0, f64::max);
    let lipschitz = frob.min(rows) / (4.0 * mf) + lambda;
    let step = 1.0 / lipschitz;
    let ka = |a: &[f64]| -> Vec<f64> { (0..m).map(|i| dot(&k[i * m..(i + 1) * m], a)).collect() };
    // gradient at (α, b): (u = r/m + λα, g_b = Σr/m) and its norm √(uᵀKu + g_b²)
    let gradient = |a: &[f64], b: f64| -> (Vec<f64>, f64, f64) {
        let z = ka(a);
        let r: Vec<f64> = z.iter().zip(y).map(|(z, y)| sigmoid(z + b) - y).collect();
        let u: Vec<f64> = r.iter().zip(a).map(|(r, a)| r / mf + lambda * a).collect();
        let gb = r.iter().sum::<f64>() / mf;
        let norm = (dot(&u, &ka(&u)).max(0.0) + gb * gb).sqrt();
        (u, gb, norm)
    };
    let (mut a, mut b) = (vec![0.0; m], 0.0);
    let (mut a_prev, mut b_prev) = (a.clone(), b);
    let (_, _, g0) = gradient(&a, b);
    if g0 == 0.0 {
        return (a, b, 0, true);
    }
    let mut k_momentum = 0usize;
    for it in 1..=s.max_iterations {
        let beta = k_momentum as f64 / (k_momentum as f64 + 3.0);
        let va: Vec<f64> = a
            .iter()
            .zip(&a_prev)
            .map(|(x, p)| x + beta * (x - p))
            .collect();
        let vb = b + beta * (b - b_prev);
        let (u, gb, _) = gradient(&va, vb);
        let na: Vec<f64> = va.iter().zip(&u).map(|(v, u)| v - step * u).collect();
        let nb = vb - step * gb;
        // restart when the step goes against the gradient: ⟨∇L(v), x_new − x⟩ > 0, in w-space
        let da: Vec<f64> = na.iter().zip(&a).map(|(n, o)| n - o).collect();
        let along = dot(&u, &ka(&da)) + gb * (nb - b);
        k_momentum = if along > 0.0 { 0 } else { k_momentum + 1 };
        a_prev = std::mem::replace(&mut a, na);
        b_prev = std::mem::replace(&mut b, nb);
        let (_, _, g) = gradient(&a, b);
        if g <= s.tolerance * g0 {
            return (a, b, it, true);
        }
    }
    (a, b, s.max_iterations, false)
}

/// The TCAV scores of `cav` over the rows of `gradients` (the target's gradient at the layer,
/// one row per sample): the directional derivatives `S_i = ∇h(x_i) · v`; `sign_count` is the
/// share with `S_i > 0`, `magnitude` their mean (Captum 0.9's `magnitude`: `mean(S)`).
pub fn tcav_scores(gradients: Rows<'_>, cav: &[f64]) -> Scores {
    let s: Vec<f64> = (0..gradients.n)
        .map(|i| dot(gradients.row(i), cav))
        .collect();
    let n = s.len().max(1) as f64;
    Scores {
        sign_count: s.iter().filter(|v| **v > 0.0).count() as f64 / n,
        magnitude: s.iter().sum::<f64>() / n,
        derivatives: s,
    }
}

/// The scores of one CAV over the target's samples.
#[derive(Clone, Debug, PartialEq)]
pub struct Scores {
    pub sign_count: f64,
    pub magnitude: f64,
    /// `S_i` per sample.
    pub derivatives: Vec<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points around (±2, 0, …) with a little seeded noise.
    fn cloud(n: usize, d: usize, centre: f64, seed: u64) -> Vec<f64> {
        let mut r = SplitMix64::new(seed);
        (0..n * d)
            .map(|i| (if i % d == 0 { centre } else { 0.0 }) + 0.5 * r.normal())
            .collect()
    }

    #[test]
    fn separable_clouds_give_the_axis_towards_the_concept() {
        let (d, n) = (5, 30);
        let c = cloud(n, d, 2.0, 1);
        let r = cloud(n, d, -2.0, 2);
        let cav = train_cav(
            Rows::new(&c, d),
            Rows::new(&r, d),
            0,
            0,
            &CavSettings::default(),
        )
        .unwrap();
        assert!(cav.converged);
        assert_eq!(cav.test, 19);
        assert_eq!(cav.accuracy, 1.0);
        assert!(cav.vector[0] > 0.9, "{:?}", cav.vector);
        let norm: f64 = cav.vector.iter().map(|v| v * v).sum();
        assert!((norm - 1.0).abs() < 1e-12);
    }

    #[test]
    fn the_optimum_has_zero_gradient_in_the_primal() {
        let (d, n) = (7, 12);
        let c = cloud(n, d, 0.5, 3);
        let r = cloud(n, d, -0.5, 4);
        let s = CavSettings::default();
        let cav = train_cav(Rows::new(&c, d), Rows::new(&r, d), 9, 0, &s).unwrap();
        assert!(cav.converged);
        // recompute the training set and the primal gradient ∇_w = Xᵀr/m + λw, ∇_b = Σr/m
        let order = SplitMix64::stream(9, 0, PURPOSE_SPLIT).permutation(2 * n);
        let train = &order[cav.test..];
        let mut gw: Vec<f64> = cav.weights.iter().map(|w| s.l2 * w).collect();
        let mut gb = 0.0;
        for &i in train {
            let (x, y) = if i < n {
                (&c[i * d..(i + 1) * d], 1.0)
            } else {
                (&r[(i - n) * d..(i - n + 1) * d], 0.0)
            };
            let res = sigmoid(dot(&cav.weights, x) + cav.intercept) - y;
            for (g, v) in gw.iter_mut().zip(x) {
                *g += res * v / train.len() as f64;
            }
            gb += res / train.len() as f64;
        }
        let g = (dot(&gw, &gw) + gb * gb).sqrt();
        assert!(g < 1e-7, "gradient norm {g}");
    }

    #[test]
    fn the_split_depends_on_the_seed_only() {
        let d = 3;
        let c = cloud(10, d, 1.0, 5);
        let r = cloud(10, d, -1.0, 6);
        let s = CavSettings::default();
        let a = train_cav(Rows::new(&c, d), Rows::new(&r, d), 1, 0, &s).unwrap();
        let b = train_cav(Rows::new(&c, d), Rows::new(&r, d), 1, 0, &s).unwrap();
        let other = train_cav(Rows::new(&c, d), Rows::new(&r, d), 2, 0, &s).unwrap();
        assert_eq!(a, b);
        assert_ne!(a.weights, other.weights);
    }

    #[test]
    fn too_few_examples_are_refused() {
        // 3 examples: ⌊0.33 · 3⌋ = 0 held out
        let c = [1.0];
        let r = [0.0, 0.5];
        let e = train_cav(
            Rows::new(&c, 1),
            Rows::new(&r, 1),
            0,
            0,
            &CavSettings::default(),
        );
        assert!(matches!(e, Err(CavError::TooFew { .. })), "{e:?}");
    }

    #[test]
    fn scores_count_positive_derivatives() {
        let g = [1.0, 0.0, -1.0, 0.0, 0.0, 2.0, 0.0, 0.0];
        let s = tcav_scores(Rows::new(&g, 2), &[1.0, 0.5]);
        assert_eq!(s.derivatives, vec![1.0, -1.0, 1.0, 0.0]);
        assert_eq!(s.sign_count, 0.5);
        assert_eq!(s.magnitude, 0.25);
    }
}
