//! The attribution method's flags, shared by `explain`, `attribute`, `demo` and (the rule and
//! attributor parameters) `evaluate`: a thin clap mirror of [`MethodSpec`], with the library's
//! defaults.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use prism_attribution::{
    default_epsilon, AttributionError, BaselineArg, BaselineSource, Bound, CompositeSource, Fill,
    Method, MethodSpec, SeedMode, SeedRows, Target, ATTRIBUTOR_HELP, COMPOSITE_HELP, DEFAULT_ALPHA,
    DEFAULT_BETA, DEFAULT_BETA_SMOOTH, DEFAULT_GAMMA, DEFAULT_NOISE_LEVEL, DEFAULT_SEED,
    DEFAULT_STABILIZER, DEFAULT_STRIDE, DEFAULT_WINDOW,
};
use prism_model::Tensor;

/// Flags choosing and parametrising the attribution method.
#[derive(clap::Args, Debug, Clone)]
pub struct MethodArgs {
    /// Built-in LRP composite: Zennit's (epsilon-gamma-box, epsilon-plus, epsilon-plus-flat,
    /// epsilon-alpha2-beta1, epsilon-alpha2-beta1-flat, excitation-backprop, deconvnet,
    /// guided-backprop, beta-smooth), for transformers attn-lrp and cp-lrp (LXT's AttnLRP
    /// and CP-LRP), or iNNvestigate's analyzers (lrp-z, lrp-sequential-preset-a/-b and their
    /// -flat variants, deep-taylor, deep-taylor-bounded); `prism explain --help` describes
    /// each. Without one: plain gradients.
    #[arg(long, conflicts_with = "composite_file")]
    pub composite: Option<String>,
    /// With a transformer composite: the CNN composite whose rules the convolutions get (a
    /// convolutional stem or patch embedding), e.g. `--composite attn-lrp --conv-composite
    /// epsilon-gamma-box` (the same as `--composite attn-lrp:epsilon-gamma-box`).
    #[arg(long, requires = "composite", value_name = "NAME")]
    pub conv_composite: Option<String>,
    /// Your own composite as TOML (see docs/composites.md).
    #[arg(long, value_name = "FILE.toml")]
    pub composite_file: Option<PathBuf>,
    /// gradient, input-x-gradient, smoothgrad, smoothgrad-squared, vargrad,
    /// integrated-gradients, occlusion or random; or a class activation map at --layer
    /// (pytorch-grad-cam's): grad-cam, grad-cam-plus-plus, xgrad-cam, layer-cam, eigen-cam,
    /// score-cam, ablation-cam (N × 1 × H × W, in [0, 1]). `prism explain --help` describes each.
    #[arg(long, default_value = "gradient")]
    pub attributor: String,
    /// The layer of a class activation map: an ONNX node or tensor name as `prism inspect
    /// --shapes` prints them [default: the deepest convolution].
    #[arg(long, value_name = "NODE")]
    pub layer: Option<String>,
    /// Initial relevance: one-hot at the target (Zennit's convention; the default) or the
    /// target's logit (the default with --condition, as zennit-crp initialises it).
    #[arg(long, value_enum)]
    pub seed_mode: Option<SeedArg>,
    /// Skip the canonizers (BatchNorm merging, explicit residual sums).
    #[arg(long)]
    pub no_canonize: bool,
    #[command(flatten)]
    pub rules: RuleArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Integrated-gradients baseline: a number (a constant input; Zennit's 0), blur[:SIGMA] (a
    /// Gaussian blur of each input, σ in pixels, default 5), uniform[:K] (K baselines drawn
    /// uniformly in each sample's value range with --seed, the attributions averaged; default
    /// 10) or FILE.npy (one sample's shape for all samples, or one row per sample; its path and
    /// blake3 are recorded).
    #[arg(long, default_value = "0", allow_hyphen_values = true)]
    pub baseline: String,
    #[command(flatten)]
    pub occlusion: OcclusionArgs,
    /// Random seed (smoothgrad, smoothgrad-squared, vargrad, uniform baselines, random).
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
}

/// The rule parameters of the built-in composites (`explain`, `attribute`, `evaluate`).
#[derive(clap::Args, Debug, Clone)]
pub struct RuleArgs {
    /// Set every rule's bias to zero (Zennit's zero_params='bias').
    #[arg(long)]
    pub zero_bias: bool,
    /// ε of the Epsilon rule (dense layers) [default: 1e-6, Zennit's; 0, LXT's, for attn-lrp
    /// and cp-lrp].
    #[arg(long)]
    pub epsilon: Option<f64>,
    /// Stabiliser of the other rules.
    #[arg(long, default_value_t = DEFAULT_STABILIZER)]
    pub stabilizer: f64,
    /// γ of the Gamma rule.
    #[arg(long, default_value_t = DEFAULT_GAMMA)]
    pub gamma: f64,
    /// α of the AlphaBeta rule (α − β must be 1).
    #[arg(long, default_value_t = DEFAULT_ALPHA)]
    pub alpha: f64,
    /// β of the AlphaBeta rule.
    #[arg(long, default_value_t = DEFAULT_BETA)]
    pub beta: f64,
    /// ZBox lower bound of the input: one value, or one per channel (comma-separated).
    #[arg(long, allow_negative_numbers = true, value_delimiter = ',')]
    pub low: Option<Vec<f64>>,
    /// ZBox upper bound of the input: one value, or one per channel (comma-separated).
    #[arg(long, allow_negative_numbers = true, value_delimiter = ',')]
    pub high: Option<Vec<f64>>,
    /// β of the beta-smooth ReLU rule.
    #[arg(long, default_value_t = DEFAULT_BETA_SMOOTH)]
    pub beta_smooth: f64,
}

/// Parameters of the sampling attributors (smoothgrad, integrated-gradients).
#[derive(clap::Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Iterations of smoothgrad / integrated-gradients (default 20).
    #[arg(long)]
    pub n_iter: Option<usize>,
    /// SmoothGrad noise σ as a fraction of each sample's value range (with --absolute-noise:
    /// σ itself).
    #[arg(long, default_value_t = DEFAULT_NOISE_LEVEL)]
    pub noise_level: f64,
    /// Captum's noise for smoothgrad, smoothgrad-squared and vargrad: σ = --noise-level (its
    /// NoiseTunnel `stdevs`) and every copy noisy, instead of Zennit's (σ relative to each
    /// sample's range, the last copy noise-free).
    #[arg(long)]
    pub absolute_noise: bool,
}

/// Parameters of the occlusion attributor.
#[derive(clap::Args, Debug, Clone)]
pub struct OcclusionArgs {
    /// Occlusion window: one size for all non-batch dims, or sizes of the last dims.
    #[arg(long, value_delimiter = ',', default_values_t = [DEFAULT_WINDOW])]
    pub window: Vec<usize>,
    /// Occlusion stride, like --window.
    #[arg(long, value_delimiter = ',', default_values_t = [DEFAULT_STRIDE])]
    pub stride: Vec<usize>,
    /// Occlusion removes the window (classic) instead of keeping only it (Zennit's default).
    #[arg(long)]
    pub invert_occlusion: bool,
    /// What occlusion puts in place of the removed input: a number (default 0, Zennit's) or
    /// blur[:SIGMA] (a Gaussian blur of the input, σ default 5).
    #[arg(long, value_name = "VALUE|blur[:SIGMA]", allow_hyphen_values = true)]
    pub occlusion_fill: Option<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeedArg {
    OneHot,
    Logit,
}

/// `--low`/`--high` as a bound: one value is a scalar, several are per channel.
pub fn bound(v: &Option<Vec<f64>>) -> Option<Bound> {
    v.as_ref().map(|v| match v.as_slice() {
        [one] => Bound::Scalar(*one),
        _ => Bound::PerChannel(v.clone()),
    })
}

impl RuleArgs {
    /// Writes these flags into `spec`; ε left out is the default for `spec`'s composite
    /// (`composite_toml`: the text of its composite file).
    pub fn apply(&self, spec: &mut MethodSpec, composite_toml: Option<&str>) {
        spec.zero_bias = self.zero_bias;
        spec.epsilon = self.epsilon.unwrap_or_else(|| {
            let name = match &spec.composite {
                CompositeSource::Builtin { name } => Some(name.as_str()),
                _ => None,
            };
            default_epsilon(name, composite_toml)
        });
        spec.stabilizer = self.stabilizer;
        spec.gamma = self.gamma;
        spec.alpha = self.alpha;
        spec.beta = self.beta;
        spec.low = bound(&self.low);
        spec.high = bound(&self.high);
        spec.beta_smooth = self.beta_smooth;
    }
}

impl SamplingArgs {
    /// Writes these flags into `spec`.
    pub fn apply(&self, spec: &mut MethodSpec) {
        spec.n_iter = self.n_iter;
        spec.noise_level = self.noise_level;
        spec.absolute_noise = self.absolute_noise;
    }
}

impl OcclusionArgs {
    /// Writes these flags into `spec`.
    pub fn apply(&self, spec: &mut MethodSpec) -> anyhow::Result<()> {
        spec.window = self.window.clone();
        spec.stride = self.stride.clone();
        spec.invert_occlusion = self.invert_occlusion;
        spec.occlusion_fill = match &self.occlusion_fill {
            None => None,
            Some(v) => match v.parse::<Fill>().map_err(in_flag_words)? {
                Fill::Zero => None,
                fill => Some(fill),
            },
        };
        Ok(())
    }
}

/// A baseline `.npy` file: its source (path + blake3 of its bytes) and its values.
pub fn read_baseline_file(path: &Path) -> anyhow::Result<(BaselineSource, Tensor<f64>)> {
    let (values, blake3) = prism_store::npy::read_float_hashed::<f64>(path)
        .with_context(|| format!("reading the baseline {}", path.display()))?;
    Ok((
        BaselineSource::File {
            path: path.to_path_buf(),
            blake3,
        },
        values,
    ))
}

/// The methods `prism explain --help` lists: every built-in composite and attributor with a
/// line saying what it does and where it comes from.
pub fn methods_help() -> String {
    let mut out = String::from("Composites (--composite NAME):\n");
    for (name, line) in COMPOSITE_HELP {
        out.push_str(&format!("  {name}\n      {line}\n"));
    }
    out.push_str("\nAttributors (--attributor NAME):\n");
    for (name, line) in ATTRIBUTOR_HELP {
        out.push_str(&format!("  {name}\n      {line}\n"));
    }
    out
}

/// A composite file's path and text, and its source (path + blake3 of its bytes) for the spec.
pub fn read_composite_file(file: &Path) -> anyhow::Result<(CompositeSource, String)> {
    CompositeSource::read_file(file)
        .with_context(|| format!("reading composite {}", file.display()))
}

impl MethodArgs {
    /// The method these flags describe, and the composite file's text if there is one.
    pub fn spec(&self) -> anyhow::Result<(MethodSpec, Option<String>)> {
        let (composite, text) = match (&self.composite, &self.composite_file) {
            (Some(name), _) => {
                let name = match &self.conv_composite {
                    Some(conv) => format!("{name}:{conv}"),
                    None => name.clone(),
                };
                (CompositeSource::Builtin { name }, None)
            }
            (None, Some(file)) => {
                let (source, text) = read_composite_file(file)?;
                (source, Some(text))
            }
            (None, None) => (CompositeSource::None, None),
        };
        let mut spec = MethodSpec {
            composite,
            attributor: self.attributor.clone(),
            seed_mode: match self.seed_mode.unwrap_or(SeedArg::OneHot) {
                SeedArg::OneHot => SeedMode::OneHot,
                SeedArg::Logit => SeedMode::Logit,
            },
            canonize: !self.no_canonize,
            seed: self.seed,
            layer: self.layer.clone(),
            ..MethodSpec::default()
        };
        match BaselineArg::parse(&self.baseline).map_err(in_flag_words)? {
            BaselineArg::Constant(v) => spec.baseline = v,
            BaselineArg::Source(source) => spec.baseline_source = Some(source),
            BaselineArg::File(path) => spec.baseline_source = Some(read_baseline_file(&path)?.0),
        }
        self.rules.apply(&mut spec, text.as_deref());
        self.sampling.apply(&mut spec);
        self.occlusion.apply(&mut spec)?;
        Ok((spec, text))
    }

    /// The baseline array of a `--baseline FILE.npy`, read again for the run (the spec
    /// recorded its hash).
    fn baseline_array(&self, spec: &MethodSpec) -> anyhow::Result<Option<Tensor<f64>>> {
        match &spec.baseline_source {
            Some(BaselineSource::File { path, blake3 }) => {
                let (source, values) = read_baseline_file(path)?;
                if !matches!(&source, BaselineSource::File { blake3: b, .. } if b == blake3) {
                    bail!("the baseline {} changed while it was read", path.display());
                }
                Ok(Some(values))
            }
            _ => Ok(None),
        }
    }

    /// The method's spec (for provenance: its `Display` is the description) and the runnable
    /// composite and attributor.
    pub fn build(&self) -> anyhow::Result<(MethodSpec, Method)> {
        let (spec, text) = self.spec()?;
        let array = self.baseline_array(&spec)?;
        let method =
            spec.build_with(text.as_deref(), array)
                .map_err(|e| match (&spec.composite, e) {
                    (
                        CompositeSource::File { path, .. },
                        e @ AttributionError::CompositeFile { .. },
                    ) => anyhow::Error::new(e)
                        .context(format!("reading composite {}", path.display())),
                    (_, e) => in_flag_words(e),
                })?;
        Ok((spec, method))
    }
}

/// A library error about a method parameter, with the parameter's flag (`n_iter` →
/// `--n-iter`); other errors as they are.
pub fn in_flag_words(e: AttributionError) -> anyhow::Error {
    match e {
        AttributionError::Parameter { names, detail } => {
            let flags: Vec<String> = names
                .iter()
                .map(|n| format!("--{}", n.replace('_', "-")))
                .collect();
            anyhow::anyhow!("{} {detail}", flags.join(" and "))
        }
        other => other.into(),
    }
}

/// `--seed-file`: an `N × outputs` float array replacing the one-hot seed (shape checked
/// against the output when attributing; non-finite values refused here).
pub fn read_seed_file(path: &Path, n: usize) -> anyhow::Result<Target> {
    let t: Tensor<f64> = prism_store::npy::read_float(path)
        .with_context(|| format!("reading the seed array {}", path.display()))?;
    if t.shape().first() != Some(&n) || t.rank() < 2 {
        bail!(
            "{} has shape {:?}: a seed array needs one row per sample, {n} × outputs",
            path.display(),
            t.shape()
        );
    }
    let rows = SeedRows::new(t.shape().to_vec(), t.data().to_vec())
        .with_context(|| format!("in {}", path.display()))?;
    Ok(Target::Seeds(rows))
}

/// `--target` of `explain` and `evaluate`: a class index, `predicted`, a position and class
/// (`POS:K`, `POS:predicted`, `last:K`, `last`) for outputs with a position axis, or a `.npy`
/// of `n` labels (`n` classes, or `n × 2` positions and classes).
pub fn parse_target(t: &str, n: usize) -> anyhow::Result<Target> {
    if !t.ends_with(".npy") {
        return Ok(Target::parse(t)?);
    }
    let labels =
        prism_store::npy::read_i64(t.as_ref()).with_context(|| format!("reading labels {t}"))?;
    let index = |v: i64| usize::try_from(v).map_err(|_| anyhow::anyhow!("{t}: negative label {v}"));
    match labels.shape() {
        // one (position, class) row per sample
        [rows, 2] if *rows == n && labels.len() == 2 * n => Ok(Target::PositionPerSample(
            labels
                .data()
                .chunks(2)
                .map(|pc| Ok((index(pc[0])?, index(pc[1])?)))
                .collect::<anyhow::Result<_>>()?,
        )),
        _ if labels.len() == n => Ok(Target::PerSample(
            labels
                .data()
                .iter()
                .map(|&v| index(v))
                .collect::<anyhow::Result<_>>()?,
        )),
        s => bail!(
            "{t} has shape {s:?}: expected {n} labels (one class per sample) or {n} × 2 \
             (position, class) rows"
        ),
    }
}
