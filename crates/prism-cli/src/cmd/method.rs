//! The attribution method shared by `explain`, `attribute` and `demo`: composite (built-in or
//! TOML), attributor and their parameters, as command-line flags.

use std::path::PathBuf;

use anyhow::{bail, Context};
use prism_attribution::{
    Attributor, AttributorParams, Bound, Composite, CompositeParams, SeedMode, Target,
};

/// Flags choosing and parametrising the attribution method.
#[derive(clap::Args, Debug, Clone)]
pub struct MethodArgs {
    /// Built-in LRP composite (Zennit's names, kebab case). Without one: plain gradients.
    #[arg(long, conflicts_with = "composite_file")]
    pub composite: Option<String>,
    /// Your own composite as TOML (see docs/composites.md).
    #[arg(long, value_name = "FILE.toml")]
    pub composite_file: Option<PathBuf>,
    /// gradient, smoothgrad, integrated-gradients or occlusion.
    #[arg(long, default_value = "gradient")]
    pub attributor: String,
    /// Initial relevance: one-hot at the target (Zennit's convention) or the target's logit.
    #[arg(long, value_enum, default_value_t = SeedArg::OneHot)]
    pub seed_mode: SeedArg,
    /// Skip the canonizers (BatchNorm merging, explicit residual sums).
    #[arg(long)]
    pub no_canonize: bool,
    /// Set every rule's bias to zero (Zennit's zero_params='bias').
    #[arg(long)]
    pub zero_bias: bool,
    /// ε of the Epsilon rule (dense layers).
    #[arg(long, default_value_t = 1e-6)]
    pub epsilon: f64,
    /// Stabiliser of the other rules.
    #[arg(long, default_value_t = 1e-6)]
    pub stabilizer: f64,
    /// γ of the Gamma rule.
    #[arg(long, default_value_t = 0.25)]
    pub gamma: f64,
    /// α of the AlphaBeta rule (α − β must be 1).
    #[arg(long, default_value_t = 2.0)]
    pub alpha: f64,
    /// β of the AlphaBeta rule.
    #[arg(long, default_value_t = 1.0)]
    pub beta: f64,
    /// ZBox lower bound of the input: one value, or one per channel (comma-separated).
    #[arg(long, allow_negative_numbers = true, value_delimiter = ',')]
    pub low: Option<Vec<f64>>,
    /// ZBox upper bound of the input: one value, or one per channel (comma-separated).
    #[arg(long, allow_negative_numbers = true, value_delimiter = ',')]
    pub high: Option<Vec<f64>>,
    /// β of the beta-smooth ReLU rule.
    #[arg(long, default_value_t = 10.0)]
    pub beta_smooth: f64,
    /// Iterations of smoothgrad / integrated-gradients (default 20).
    #[arg(long)]
    pub n_iter: Option<usize>,
    /// SmoothGrad noise σ as a fraction of each sample's value range.
    #[arg(long, default_value_t = 0.1)]
    pub noise_level: f64,
    /// Integrated-gradients baseline (a constant).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub baseline: f64,
    /// Occlusion window: one size for all non-batch dims, or sizes of the last dims.
    #[arg(long, value_delimiter = ',', default_value = "8")]
    pub window: Vec<usize>,
    /// Occlusion stride, like --window.
    #[arg(long, value_delimiter = ',', default_value = "8")]
    pub stride: Vec<usize>,
    /// Occlusion removes the window (classic) instead of keeping only it (Zennit's default).
    #[arg(long)]
    pub invert_occlusion: bool,
    /// Random seed (smoothgrad).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeedArg {
    OneHot,
    Logit,
}

/// The method, ready to run, and a one-line description for provenance and logs.
pub struct Method {
    pub composite: Option<Composite>,
    pub attributor: Attributor,
    pub seed: SeedMode,
    pub canonize: bool,
    /// e.g. `composite=epsilon-plus-flat attributor=gradient epsilon=1e-6 …`: every parameter.
    pub description: String,
}

fn bound(v: &Option<Vec<f64>>) -> Option<Bound> {
    v.as_ref().map(|v| {
        if v.len() == 1 {
            Bound::Scalar(v[0])
        } else {
            Bound::PerChannel(v.clone())
        }
    })
}

impl MethodArgs {
    /// Builds the composite and attributor (errors name the bad flag or file).
    pub fn build(&self) -> anyhow::Result<Method> {
        let params = CompositeParams {
            epsilon: self.epsilon,
            stabilizer: self.stabilizer,
            gamma: self.gamma,
            alpha: self.alpha,
            beta: self.beta,
            low: bound(&self.low),
            high: bound(&self.high),
            beta_smooth: self.beta_smooth,
            zero_bias: self.zero_bias,
        };
        let composite = match (&self.composite, &self.composite_file) {
            (Some(name), _) => Some(Composite::builtin(name, &params)?),
            (None, Some(file)) => {
                let c = Composite::from_toml_file(file)
                    .with_context(|| format!("reading composite {}", file.display()))?;
                Some(if self.zero_bias {
                    c.with_zero_bias()
                } else {
                    c
                })
            }
            (None, None) => None,
        };
        let attributor = Attributor::by_name(
            &self.attributor,
            &AttributorParams {
                n_iter: self.n_iter,
                noise_level: self.noise_level,
                window: self.window.clone(),
                stride: self.stride.clone(),
                invert: self.invert_occlusion,
                seed: self.seed,
                baseline: self.baseline,
            },
        )?;
        let seed = match self.seed_mode {
            SeedArg::OneHot => SeedMode::OneHot,
            SeedArg::Logit => SeedMode::Logit,
        };
        let composite_name = match (&self.composite, &self.composite_file) {
            (Some(name), _) => name.clone(),
            (None, Some(file)) => {
                let text = std::fs::read(file)
                    .with_context(|| format!("reading composite {}", file.display()))?;
                format!("file:{}#{}", file.display(), blake3::hash(&text).to_hex())
            }
            (None, None) => "none".into(),
        };
        let description = format!(
            "composite={composite_name} attributor={} seed_mode={:?} canonize={} zero_bias={} \
             epsilon={} stabilizer={} gamma={} alpha={} beta={} low={:?} high={:?} beta_smooth={} \
             n_iter={:?} noise_level={} baseline={} window={:?} stride={:?} invert_occlusion={} seed={}",
            self.attributor,
            self.seed_mode,
            !self.no_canonize,
            self.zero_bias,
            self.epsilon,
            self.stabilizer,
            self.gamma,
            self.alpha,
            self.beta,
            self.low,
            self.high,
            self.beta_smooth,
            self.n_iter,
            self.noise_level,
            self.baseline,
            self.window,
            self.stride,
            self.invert_occlusion,
            self.seed,
        );
        Ok(Method {
            composite,
            attributor,
            seed,
            canonize: !self.no_canonize,
            description,
        })
    }
}

/// `--target` of `explain` and `evaluate`: a class index, `predicted`, or a `.npy` of `n` labels.
pub fn parse_target(t: &str, n: usize) -> anyhow::Result<Target> {
    Ok(match t {
        "predicted" => Target::Predicted,
        t if t.ends_with(".npy") => {
            let labels = prism_store::npy::read_i64(t.as_ref())
                .with_context(|| format!("reading labels {t}"))?;
            if labels.len() != n {
                bail!("{t} holds {} labels for {n} samples", labels.len());
            }
            Target::PerSample(
                labels
                    .data()
                    .iter()
                    .map(|&v| {
                        usize::try_from(v).map_err(|_| anyhow::anyhow!("{t}: negative label {v}"))
                    })
                    .collect::<anyhow::Result<_>>()?,
            )
        }
        t => Target::Class(t.parse().map_err(|_| {
            anyhow::anyhow!(
                "--target must be a class index, `predicted` or a labels .npy file, got '{t}'"
            )
        })?),
    })
}
