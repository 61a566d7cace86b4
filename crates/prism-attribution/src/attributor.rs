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
    /// Mean gradient over `n_iter` noisy copies of the input, noise σ = `noise_level` × the
    /// per-sample value range; the last iteration is noise-free (Zennit). Seeded.
    SmoothGrad {
        noise_level: f64,
        n_iter: usize,
        seed: u64,
    },
    /// `(x − b) ⊙ mean_k ∇f(b + k/n · (x − b))`, k = 1..n (right Riemann sum), with a constant
    /// baseline `b` (Zennit's default: 0).
    IntegratedGradients { n_iter: usize, baseline: f64 },
    /// Model score with a window of the input kept (default, Zennit) or removed (`invert`),
    /// accumulated over the window's positions; windows roll around the borders (Zennit).
    Occlusion {
        window: Vec<usize>,
        stride: Vec<usize>,
        invert: bool,
    },
    /// A class activation map at a layer (pytorch-grad-cam's definitions, see
    /// [`crate::cam`]): `N × 1 × H × W`, in `[0, 1]`. `layer`: an ONNX node or tensor name;
    /// `None`: the deepest convolution ([`crate::cam::default_layer`]).
    Cam {
        kind: CamKind,
        layer: Option<String>,
    },
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
/// Seed of SmoothGrad's noise.
pub const DEFAULT_SEED: u64 = 0;

/// Names accepted by [`Attributor::by_name`].
pub const ATTRIBUTORS: &[&str] = &[
    "gradient",
    "smoothgrad",
    "integrated-gradients",
    "occlusion",
    "grad-cam",
    "grad-cam-plus-plus",
    "xgrad-cam",
    "layer-cam",
    "eigen-cam",
    "score-cam",
    "ablation-cam",
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
        }
    }
}

impl Attributor {
    /// The attributor's name (`gradient`, `smoothgrad`, `integrated-gradients`, `occlusion`).
    pub fn name(&self) -> &'static str {
        match self {
            Attributor::Gradient => "gradient",
            Attributor::SmoothGrad { .. } => "smoothgrad",
            Attributor::IntegratedGradients { .. } => "integrated-gradients",
            Attributor::Occlusion { .. } => "occlusion",
            Attributor::Cam { kind, .. } => kind.name(),
        }
    }

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
        Ok(match name.replace('_', "-").as_str() {
            "gradient" => Attributor::Gradient,
            "smoothgrad" | "smooth-grad" => {
                if !(p.noise_level >= 0.0 && p.noise_level.is_finite()) {
                    return Err(AttributionError::Parameter {
                        names: &["noise_level"],
                        detail: format!("must be a non-negative number, got {}", p.noise_level),
                    });
                }
                Attributor::SmoothGrad {
                    noise_level: p.noise_level,
                    n_iter,
                    seed: p.seed,
                }
            }
            "integrated-gradients" | "integratedgradients" => Attributor::IntegratedGradients {
                n_iter,
                baseline: p.baseline,
            },
            "occlusion" => {
                if p.window.iter().chain(&p.stride).any(|&v| v == 0) {
                    return Err(AttributionError::Parameter {
                        names: &["window", "stride"],
                        detail: "of occlusion must be positive".into(),
                    });
                }
                Attributor::Occlusion {
                    window: p.window.clone(),
                    stride: p.stride.clone(),
                    invert: p.invert,
                }
            }
            other => {
                return Err(AttributionError::UnknownAttributor {
                    name: other.to_string(),
                })
            }
        })
    }
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
