//! Attributors: how the backward sweep is driven (Zennit's semantics and defaults).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use prism_model::{Float, Tensor};

use crate::cam::{CamKind, CAM_ATTRIBUTORS};
use crate::error::{AttributionError, Result};

/// An attribution method wrapping the (modified) gradient.
#[derive(Clone, Debug, PartialEq)]
pub enum Attributor {
    /// One backward sweep (with a composite: LRP).
    Gradient,
    /// `x ⊙ ∇f(x)` (Shrikumar et al. 2016; iNNvestigate's `InputTimesGradient`, Captum's
    /// `InputXGradient`); with a composite, `x ⊙` the modified gradient.
    InputXGradient,
    /// Mean gradient over `n_iter` noisy copies of the input (Smilkov et al. 2017), noise as
    /// [`Noise`] says (Zennit's convention by default). Seeded.
    SmoothGrad {
        noise_level: f64,
        n_iter: usize,
        seed: u64,
        noise: Noise,
    },
    /// Mean of the squared gradient over noisy copies, `mean_k g_k²` (Captum's NoiseTunnel
    /// `smoothgrad_sq`; Hooker et al. 2019).
    SmoothGradSquared {
        noise_level: f64,
        n_iter: usize,
        seed: u64,
        noise: Noise,
    },
    /// Variance of the gradient over noisy copies, `mean_k g_k² − (mean_k g_k)²` (Captum's
    /// NoiseTunnel `vargrad`; Adebayo et al. 2018).
    VarGrad {
        noise_level: f64,
        n_iter: usize,
        seed: u64,
        noise: Noise,
    },
    /// `(x − b) ⊙ mean_k ∇f(b + k/n · (x − b))`, k = 1..n (right Riemann sum), with the
    /// baseline `b` of [`Baselines`]: the constant `baseline` (Zennit's default: 0), a blur of
    /// the input, uniform random baselines (the attributions averaged) or an array.
    IntegratedGradients {
        n_iter: usize,
        baseline: f64,
        baselines: Baselines,
    },
    /// Model score with a window of the input kept (default, Zennit) or removed (`invert`),
    /// accumulated over the window's positions; windows roll around the borders (Zennit). The
    /// removed part is replaced by `fill` (Zennit's: zero).
    Occlusion {
        window: Vec<usize>,
        stride: Vec<usize>,
        invert: bool,
        fill: Fill,
    },
    /// A class activation map at a layer (pytorch-grad-cam's definitions, see
    /// [`crate::cam`]): `N × 1 × H × W`, in `[0, 1]`. `layer`: an ONNX node or tensor name;
    /// `None`: the deepest convolution ([`crate::cam::default_layer`]).
    Cam {
        kind: CamKind,
        layer: Option<String>,
    },
    /// Gaussian noise `N(0, 1)` of the input's shape, seeded (iNNvestigate's `Random`
    /// analyzer): a baseline for evaluations.
    Random { seed: u64 },
}

/// How the noisy copies of SmoothGrad, SmoothGrad² and VarGrad are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Noise {
    /// Zennit's: σ = `noise_level` × each sample's value range (max − min), and the last of
    /// the `n_iter` copies is the input itself (noise-free).
    #[default]
    Relative,
    /// Captum's NoiseTunnel (`stdevs`): σ = `noise_level` itself, every copy noisy.
    Absolute,
}

/// The baselines of Integrated Gradients.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Baselines {
    /// The constant `baseline` of [`Attributor::IntegratedGradients`].
    #[default]
    Constant,
    /// A Gaussian blur of each input ([`gaussian_blur`], σ in samples along each spatial
    /// axis; Sturmfels et al. 2020, "Visualizing the impact of feature attribution baselines").
    Blur { sigma: f64 },
    /// `count` baselines drawn uniformly in each sample's value range `[min, max]` (seeded by
    /// `seed`); the attribution is the mean of their Integrated Gradients (expected-gradients
    /// style with a fixed path).
    Uniform { count: usize, seed: u64 },
    /// One baseline for every sample (the shape of one sample) or one per sample.
    Array(std::sync::Arc<BaselineArray>),
}

/// A baseline array and where it came from (for messages).
#[derive(Clone, Debug, PartialEq)]
pub struct BaselineArray {
    /// The file it was read from (or a name).
    pub name: String,
    /// `[…sample shape]`, `[1, …]` (one for all samples) or `[N, …]` (one per sample).
    pub values: Tensor<f64>,
}

/// What Occlusion puts where it removes the input. Written `VALUE` or `blur:SIGMA` (`blur`
/// alone: σ = [`DEFAULT_BLUR_SIGMA`]) in flags and descriptions.
#[derive(Clone, Copy, Debug, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Fill {
    /// Zero (Zennit's `torch.zeros_like`).
    #[default]
    Zero,
    /// A constant.
    Value(f64),
    /// A Gaussian blur of the input ([`gaussian_blur`]).
    Blur { sigma: f64 },
}

/// Zennit's iterations of SmoothGrad and Integrated Gradients.
pub const DEFAULT_N_ITER: usize = 20;
/// Zennit's SmoothGrad noise σ, as a fraction of each sample's value range.
pub const DEFAULT_NOISE_LEVEL: f64 = 0.1;
/// Zennit's Integrated Gradients baseline (a constant input).
pub const DEFAULT_BASELINE: f64 = 0.0;
/// Occlusion window edge (all non-batch dims).
pub const DEFAULT_WINDOW: usize = 8;
/// Occlusion stride (all non-batch dims).
pub const DEFAULT_STRIDE: usize = 8;
/// Seed of SmoothGrad's noise, the uniform baselines and the random attributor.
pub const DEFAULT_SEED: u64 = 0;
/// σ of the blur baseline and the blur fill, in samples (pixels) along each spatial axis.
pub const DEFAULT_BLUR_SIGMA: f64 = 5.0;
/// Number of uniform random baselines of Integrated Gradients.
pub const DEFAULT_UNIFORM_BASELINES: usize = 10;

/// Names accepted by [`Attributor::by_name`].
pub const ATTRIBUTORS: &[&str] = &[
    "gradient",
    "input-x-gradient",
    "smoothgrad",
    "smoothgrad-squared",
    "vargrad",
    "integrated-gradients",
    "occlusion",
    "grad-cam",
    "grad-cam-plus-plus",
    "xgrad-cam",
    "layer-cam",
    "eigen-cam",
    "score-cam",
    "ablation-cam",
    "random",
];

/// One line per attributor: what it computes and its reference (for `--help`).
pub const ATTRIBUTOR_HELP: &[(&str, &str)] = &[
    ("gradient", "the gradient; with a composite, LRP (Zennit's Gradient)"),
    (
        "input-x-gradient",
        "x ⊙ gradient (Shrikumar et al. 2016; Captum InputXGradient, iNNvestigate InputTimesGradient)",
    ),
    (
        "smoothgrad",
        "mean gradient over noisy copies (Smilkov et al. 2017; Zennit SmoothGrad)",
    ),
    (
        "smoothgrad-squared",
        "mean squared gradient over noisy copies (Hooker et al. 2019; Captum NoiseTunnel smoothgrad_sq)",
    ),
    (
        "vargrad",
        "variance of the gradient over noisy copies (Adebayo et al. 2018; Captum NoiseTunnel vargrad)",
    ),
    (
        "integrated-gradients",
        "path integral of the gradient from a baseline (Sundararajan et al. 2017; Zennit, Captum)",
    ),
    (
        "occlusion",
        "score change when windows of the input are occluded (Zeiler & Fergus 2014; Zennit Occlusion)",
    ),
    (
        "grad-cam",
        "layer maps weighted by the mean gradient (Selvaraju et al. 2017; pytorch-grad-cam GradCAM)",
    ),
    (
        "grad-cam-plus-plus",
        "layer maps weighted by higher-order gradient terms (Chattopadhay et al. 2018; pytorch-grad-cam)",
    ),
    (
        "xgrad-cam",
        "layer maps weighted by Σ gradient·activation / Σ activation (Fu et al. 2020; pytorch-grad-cam)",
    ),
    (
        "layer-cam",
        "ReLU(gradient) ⊙ activation per position (Jiang et al. 2021; pytorch-grad-cam LayerCAM)",
    ),
    (
        "eigen-cam",
        "first principal component of the layer's activations (Muhammad & Yeasin 2020; pytorch-grad-cam)",
    ),
    (
        "score-cam",
        "layer maps weighted by the scores of the input masked by each (Wang et al. 2020; pytorch-grad-cam)",
    ),
    (
        "ablation-cam",
        "layer maps weighted by the score drop when each is ablated (Desai & Ramaswamy 2020; pytorch-grad-cam)",
    ),
    (
        "random",
        "Gaussian noise N(0, 1), seeded: a baseline for evaluations (iNNvestigate Random)",
    ),
];

/// Attributor parameters (Zennit's defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct AttributorParams {
    pub n_iter: Option<usize>,
    pub noise_level: f64,
    pub window: Vec<usize>,
    pub stride: Vec<usize>,
    pub invert: bool,
    pub seed: u64,
    pub baseline: f64,
    /// The layer of a class activation map (`None`: the deepest convolution).
    pub layer: Option<String>,
    /// Captum's noise convention ([`Noise::Absolute`]) instead of Zennit's.
    pub absolute_noise: bool,
    /// Integrated Gradients' baselines other than the constant `baseline`.
    pub baselines: Baselines,
    /// Occlusion's fill.
    pub fill: Fill,
}

impl Default for AttributorParams {
    fn default() -> Self {
        AttributorParams {
            n_iter: None,
            noise_level: DEFAULT_NOISE_LEVEL,
            window: vec![DEFAULT_WINDOW],
            stride: vec![DEFAULT_STRIDE],
            invert: false,
            seed: DEFAULT_SEED,
            baseline: DEFAULT_BASELINE,
            layer: None,
            absolute_noise: false,
            baselines: Baselines::Constant,
            fill: Fill::Zero,
        }
    }
}

impl Attributor {
    /// The attributor's name (one of [`ATTRIBUTORS`]).
    pub fn name(&self) -> &'static str {
        match self {
            Attributor::Gradient => "gradient",
            Attributor::InputXGradient => "input-x-gradient",
            Attributor::SmoothGrad { .. } => "smoothgrad",
            Attributor::SmoothGradSquared { .. } => "smoothgrad-squared",
            Attributor::VarGrad { .. } => "vargrad",
            Attributor::IntegratedGradients { .. } => "integrated-gradients",
            Attributor::Occlusion { .. } => "occlusion",
            Attributor::Cam { kind, .. } => kind.name(),
            Attributor::Random { .. } => "random",
        }
    }

    /// The attributor `name` (one of [`ATTRIBUTORS`], snake case accepted) with parameters
    /// `p`, checked.
    pub fn by_name(name: &str, p: &AttributorParams) -> Result<Attributor> {
        let n_iter = p.n_iter.unwrap_or(DEFAULT_N_ITER);
        if n_iter == 0 {
            return Err(AttributionError::Parameter {
                names: &["n_iter"],
                detail: "must be at least 1".into(),
            });
        }
        if let Some(kind) = CamKind::by_name(name) {
            return Ok(Attributor::Cam {
                kind,
                layer: p.layer.clone(),
            });
        }
        if let Some(layer) = &p.layer {
            return Err(AttributionError::Parameter {
                names: &["layer"],
                detail: format!(
                    "'{layer}' is for the class activation maps ({}); {name} takes no layer",
                    CAM_ATTRIBUTORS.map(|(n, _)| n).join(", ")
                ),
            });
        }
        let noise = if p.absolute_noise {
            Noise::Absolute
        } else {
            Noise::Relative
        };
        let noisy = || -> Result<()> {
            if !(p.noise_level >= 0.0 && p.noise_level.is_finite()) {
                return Err(AttributionError::Parameter {
                    names: &["noise_level"],
                    detail: format!("must be a non-negative number, got {}", p.noise_level),
                });
            }
            Ok(())
        };
        let name = name.replace('_', "-");
        let takes_noise = matches!(
            name.as_str(),
            "smoothgrad" | "smooth-grad" | "smoothgrad-squared" | "vargrad"
        );
        if p.absolute_noise && !takes_noise {
            return Err(AttributionError::Parameter {
                names: &["absolute_noise"],
                detail: format!(
                    "applies to smoothgrad, smoothgrad-squared and vargrad, not {name}"
                ),
            });
        }
        if p.baselines != Baselines::Constant && name != "integrated-gradients" {
            return Err(AttributionError::Parameter {
                names: &["baseline"],
                detail: format!(
                    "blur, uniform and array baselines are for integrated-gradients, not {name}"
                ),
            });
        }
        if p.fill != Fill::Zero && name != "occlusion" {
            return Err(AttributionError::Parameter {
                names: &["occlusion_fill"],
                detail: format!("is for occlusion, not {name}"),
            });
        }
        Ok(match name.as_str() {
            "gradient" => Attributor::Gradient,
            "input-x-gradient" | "inputxgradient" => Attributor::InputXGradient,
            "smoothgrad" | "smooth-grad" => {
                noisy()?;
                Attributor::SmoothGrad {
                    noise_level: p.noise_level,
                    n_iter,
                    seed: p.seed,
                    noise,
                }
            }
            "smoothgrad-squared" => {
                noisy()?;
                Attributor::SmoothGradSquared {
                    noise_level: p.noise_level,
                    n_iter,
                    seed: p.seed,
                    noise,
                }
            }
            "vargrad" => {
                noisy()?;
                Attributor::VarGrad {
                    noise_level: p.noise_level,
                    n_iter,
                    seed: p.seed,
                    noise,
                }
            }
            "integrated-gradients" | "integratedgradients" => {
                match &p.baselines {
                    Baselines::Blur { sigma } => check_sigma(*sigma, "baseline")?,
                    Baselines::Uniform { count: 0, .. } => {
                        return Err(AttributionError::Parameter {
                            names: &["baseline"],
                            detail: "uniform:K needs K ≥ 1 baselines".into(),
                        })
                    }
                    Baselines::Array(a) => check_array(a)?,
                    Baselines::Constant | Baselines::Uniform { .. } => {}
                }
                if !p.baseline.is_finite() {
                    return Err(AttributionError::Parameter {
                        names: &["baseline"],
                        detail: format!("must be a finite number, got {}", p.baseline),
                    });
                }
                Attributor::IntegratedGradients {
                    n_iter,
                    baseline: p.baseline,
                    baselines: p.baselines.clone(),
                }
            }
            "occlusion" => {
                if p.window.iter().chain(&p.stride).any(|&v| v == 0) {
                    return Err(AttributionError::Parameter {
                        names: &["window", "stride"],
                        detail: "of occlusion must be positive".into(),
                    });
                }
                match p.fill {
                    Fill::Blur { sigma } => check_sigma(sigma, "occlusion_fill")?,
                    Fill::Value(v) if !v.is_finite() => {
                        return Err(AttributionError::Parameter {
                            names: &["occlusion_fill"],
                            detail: format!("must be a finite number, got {v}"),
                        })
                    }
                    Fill::Value(_) | Fill::Zero => {}
                }
                Attributor::Occlusion {
                    window: p.window.clone(),
                    stride: p.stride.clone(),
                    invert: p.invert,
                    fill: p.fill,
                }
            }
            "random" => Attributor::Random { seed: p.seed },
            other => {
                return Err(AttributionError::UnknownAttributor {
                    name: other.to_string(),
                })
            }
        })
    }

    /// The attributor for the rows `offset..offset + count` of a run: a per-sample baseline
    /// array keeps those rows; everything else is unchanged.
    pub fn rows(&self, offset: usize, count: usize) -> Result<Attributor> {
        let Attributor::IntegratedGradients {
            n_iter,
            baseline,
            baselines: Baselines::Array(a),
        } = self
        else {
            return Ok(self.clone());
        };
        let s = a.values.shape();
        if s.first().is_none_or(|&rows| rows <= 1) {
            return Ok(self.clone());
        }
        if offset + count > s[0] {
            return Err(AttributionError::Invalid(format!(
                "the baseline array {} has {} rows (one per sample); samples {offset}..{} were \
                 asked for",
                a.name,
                s[0],
                offset + count
            )));
        }
        let per = a.values.len() / s[0];
        let mut shape = s.to_vec();
        shape[0] = count;
        let values = Tensor::new(
            shape,
            a.values.data()[offset * per..(offset + count) * per].to_vec(),
        )?;
        Ok(Attributor::IntegratedGradients {
            n_iter: *n_iter,
            baseline: *baseline,
            baselines: Baselines::Array(std::sync::Arc::new(BaselineArray {
                name: a.name.clone(),
                values,
            })),
        })
    }
}

impl std::fmt::Display for Fill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fill::Zero => f.write_str("0"),
            Fill::Value(v) => write!(f, "{v}"),
            Fill::Blur { sigma } => write!(f, "blur:{sigma}"),
        }
    }
}

impl std::str::FromStr for Fill {
    type Err = AttributionError;

    fn from_str(s: &str) -> Result<Fill> {
        let bad = || AttributionError::Parameter {
            names: &["occlusion_fill"],
            detail: format!("'{s}' is neither a number nor blur[:SIGMA]"),
        };
        if let Some(rest) = s.strip_prefix("blur") {
            let sigma = match rest.strip_prefix(':') {
                Some(v) => v.parse().map_err(|_| bad())?,
                None if rest.is_empty() => DEFAULT_BLUR_SIGMA,
                None => return Err(bad()),
            };
            return Ok(Fill::Blur { sigma });
        }
        let v: f64 = s.parse().map_err(|_| bad())?;
        Ok(if v == 0.0 && v.is_sign_positive() {
            Fill::Zero
        } else {
            Fill::Value(v)
        })
    }
}

impl From<Fill> for String {
    fn from(f: Fill) -> String {
        f.to_string()
    }
}

impl TryFrom<String> for Fill {
    type Error = AttributionError;

    fn try_from(s: String) -> Result<Fill> {
        s.parse()
    }
}

fn check_sigma(sigma: f64, name: &'static str) -> Result<()> {
    if sigma >= 0.0 && sigma.is_finite() {
        return Ok(());
    }
    let names: &'static [&'static str] = if name == "baseline" {
        &["baseline"]
    } else {
        &["occlusion_fill"]
    };
    Err(AttributionError::Parameter {
        names,
        detail: format!("blur:SIGMA needs a finite σ ≥ 0, got {sigma}"),
    })
}

fn check_array(a: &BaselineArray) -> Result<()> {
    if let Some(i) = a.values.data().iter().position(|v| !v.is_finite()) {
        return Err(AttributionError::Invalid(format!(
            "the baseline array {} holds a non-finite value ({}) at flat index {i}: a baseline \
             must be finite",
            a.name,
            a.values.data()[i]
        )));
    }
    Ok(())
}

/// The baseline array `a` for a batch `x`: `[x.len()]` values, from one sample's worth
/// (`[…]` or `[1, …]`, repeated) or one per sample (`[N, …]`); any other shape is an error
/// naming both shapes.
pub fn baseline_for<T: Float>(a: &BaselineArray, x: &Tensor<T>) -> Result<Tensor<T>> {
    let xs = x.shape();
    let bs = a.values.shape();
    let sample = &xs[1..];
    let n = xs[0];
    let repeat = bs == sample || (bs.len() == xs.len() && bs[0] == 1 && &bs[1..] == sample);
    let data: Vec<T> = if repeat {
        (0..n)
            .flat_map(|_| a.values.data().iter().map(|&v| T::of(v)))
            .collect()
    } else if bs == xs {
        a.values.data().iter().map(|&v| T::of(v)).collect()
    } else {
        return Err(AttributionError::Invalid(format!(
            "the baseline array {} has shape {bs:?}; the input (batch of {n}) needs one sample's \
             shape {sample:?} (or [1, …]) for all samples, or {xs:?} with one row per sample \
             (a per-sample baseline has a row for every sample of the run)",
            a.name
        )));
    };
    Ok(Tensor::new(xs.to_vec(), data)?)
}

/// The noise of SmoothGrad, SmoothGrad² and VarGrad for `x`: `n_iter` tensors. With
/// [`Noise::Relative`] (Zennit), σ = `noise_level` × each sample's value range and the last
/// tensor is zeros; with [`Noise::Absolute`] (Captum), σ = `noise_level` and every tensor is
/// drawn.
pub fn draw_noise<T: Float>(
    x: &Tensor<T>,
    noise_level: f64,
    n_iter: usize,
    seed: u64,
    noise: Noise,
) -> Vec<Tensor<T>> {
    match noise {
        Noise::Relative => smoothgrad_noise(x, noise_level, n_iter, seed),
        Noise::Absolute => {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..n_iter)
                .map(|_| {
                    let mut t = Tensor::zeros(x.shape());
                    if let Ok(d) = Normal::new(0.0, noise_level) {
                        if noise_level > 0.0 {
                            for v in t.data_mut() {
                                *v = T::of(d.sample(&mut rng));
                            }
                        }
                    }
                    t
                })
                .collect()
        }
    }
}

/// Standard normal values of `x`'s shape from `seed` (the random attributor).
pub fn standard_normal<T: Float>(shape: &[usize], seed: u64) -> Tensor<T> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut t = Tensor::zeros(shape);
    for v in t.data_mut() {
        let z: f64 = rand_distr::StandardNormal.sample(&mut rng);
        *v = T::of(z);
    }
    t
}

/// `count` baselines for `x`, each value drawn uniformly in its sample's `[min, max]`,
/// from `seed`.
pub fn uniform_baselines<T: Float>(x: &Tensor<T>, count: usize, seed: u64) -> Vec<Tensor<T>> {
    let n = x.shape()[0].max(1);
    let per = (x.len() / n).max(1);
    let ranges: Vec<(f64, f64)> = x
        .data()
        .chunks(per)
        .map(|s| {
            s.iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                    (a.min(v.f64()), b.max(v.f64()))
                })
        })
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let mut t = Tensor::zeros(x.shape());
            for (i, v) in t.data_mut().iter_mut().enumerate() {
                let (lo, hi) = ranges[i / per];
                let u: f64 = rand::Rng::random(&mut rng);
                *v = T::of(lo + (hi - lo) * u);
            }
            t
        })
        .collect()
}

/// A Gaussian blur of each sample of `x` (SciPy's `gaussian_filter` with `mode='reflect'`,
/// `truncate=4`): along every axis after the channel axis (axes 2.. of `N × C × …`), or along
/// axis 1 of an `N × F` input. The kernel is `exp(−k²/2σ²)` normalised, `|k| ≤ ⌊4σ + ½⌋`;
/// borders mirror the edge sample (`d c b a | a b c d | d c b a`). σ = 0 leaves `x` as it is.
pub fn gaussian_blur<T: Float>(x: &Tensor<T>, sigma: f64) -> Result<Tensor<T>> {
    let shape = x.shape().to_vec();
    let axes: Vec<usize> = match shape.len() {
        0 | 1 => Vec::new(),
        2 => vec![1],
        r => (2..r).collect(),
    };
    let radius = (4.0 * sigma + 0.5) as usize;
    if sigma <= 0.0 || radius == 0 {
        return Ok(x.clone());
    }
    let mut kernel: Vec<f64> = (0..=2 * radius)
        .map(|i| {
            let k = i as f64 - radius as f64;
            (-0.5 * (k / sigma) * (k / sigma)).exp()
        })
        .collect();
    let total: f64 = kernel.iter().sum();
    kernel.iter_mut().for_each(|w| *w /= total);
    let mut data: Vec<f64> = x.data().iter().map(|v| v.f64()).collect();
    for &axis in &axes {
        let len = shape[axis];
        let inner: usize = shape[axis + 1..].iter().product();
        let outer: usize = shape[..axis].iter().product();
        let mut out = vec![0.0; data.len()];
        let reflect = |i: isize| -> usize {
            // half-sample symmetric, repeated for kernels wider than the axis
            let period = 2 * len as isize;
            let m = i.rem_euclid(period);
            if m < len as isize {
                m as usize
            } else {
                (period - 1 - m) as usize
            }
        };
        for o in 0..outer {
            for j in 0..inner {
                let at = |p: usize| (o * len + p) * inner + j;
                for p in 0..len {
                    let mut acc = 0.0;
                    for (q, w) in kernel.iter().enumerate() {
                        let src = reflect(p as isize + q as isize - radius as isize);
                        acc += w * data[at(src)];
                    }
                    out[at(p)] = acc;
                }
            }
        }
        data = out;
    }
    Ok(Tensor::new(shape, data.into_iter().map(T::of).collect())?)
}

/// SmoothGrad's noise for `x`: `n_iter` tensors, the last all zeros.
pub fn smoothgrad_noise<T: Float>(
    x: &Tensor<T>,
    noise_level: f64,
    n_iter: usize,
    seed: u64,
) -> Vec<Tensor<T>> {
    let n = x.shape()[0].max(1);
    let per = x.len() / n;
    let stds: Vec<f64> = x
        .data()
        .chunks(per.max(1))
        .map(|s| {
            let (lo, hi) = s
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                    (a.min(v.f64()), b.max(v.f64()))
                });
            noise_level * (hi - lo)
        })
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n_iter)
        .map(|it| {
            if it + 1 == n_iter {
                return Tensor::zeros(x.shape());
            }
            // filled in place: the noise has x's shape by construction
            let mut noise = Tensor::zeros(x.shape());
            for (i, v) in noise.data_mut().iter_mut().enumerate() {
                let sd = stds[i / per.max(1)];
                *v = match Normal::new(0.0, sd.max(0.0)) {
                    Ok(d) if sd > 0.0 => T::of(d.sample(&mut rng)),
                    _ => T::zero(),
                };
            }
            noise
        })
        .collect()
}

/// Occlusion masks (1 = kept) over the non-batch dims of `shape`, Zennit's layout: an int
/// window/stride applies to all non-batch dims (clipped to their size); a list applies to the
/// last dims, earlier dims get a full-size window.
pub fn occlusion_masks(
    shape: &[usize],
    window: &[usize],
    stride: &[usize],
) -> Result<Vec<Vec<bool>>> {
    let dims = &shape[1..];
    let expand = |v: &[usize], name: &str| -> Result<Vec<usize>> {
        if v.len() == 1 {
            Ok(dims.iter().map(|&d| v[0].min(d)).collect())
        } else if v.len() <= dims.len() {
            let lead = dims.len() - v.len();
            Ok(dims
                .iter()
                .enumerate()
                .map(|(i, &d)| if i < lead { d } else { v[i - lead].min(d) })
                .collect())
        } else {
            Err(AttributionError::Invalid(format!(
                "occlusion {name} {v:?} has more entries than the input's non-batch dims {dims:?}"
            )))
        }
    };
    let w = expand(window, "window")?;
    let s = {
        // stride for leading dims (full window) is the full size
        let s = expand(stride, "stride")?;
        if stride.len() > 1 {
            let lead = dims.len() - stride.len();
            s.iter()
                .enumerate()
                .map(|(i, &v)| if i < lead { dims[i] } else { v })
                .collect::<Vec<_>>()
        } else {
            s
        }
    };
    let total: usize = dims.iter().product();
    let offsets: Vec<Vec<usize>> = dims
        .iter()
        .zip(&s)
        .map(|(&d, &st)| (0..d).step_by(st.max(1)).collect())
        .collect();
    let mut masks = Vec::new();
    let mut idx = vec![0usize; dims.len()];
    loop {
        let off: Vec<usize> = idx.iter().zip(&offsets).map(|(&i, o)| o[i]).collect();
        let mut m = vec![false; total];
        let mut p = vec![0usize; dims.len()];
        for flag in m.iter_mut() {
            // inside the rolled window along every dim
            *flag = p
                .iter()
                .zip(&off)
                .zip(dims.iter().zip(&w))
                .all(|((&pi, &o), (&d, &wi))| (pi + d - o) % d < wi);
            for k in (0..dims.len()).rev() {
                p[k] += 1;
                if p[k] < dims[k] {
                    break;
                }
                p[k] = 0;
            }
        }
        masks.push(m);
        let mut k = dims.len();
        loop {
            if k == 0 {
                return Ok(masks);
            }
            k -= 1;
            idx[k] += 1;
            if idx[k] < offsets[k].len() {
                break;
            }
            idx[k] = 0;
        }
    }
}
