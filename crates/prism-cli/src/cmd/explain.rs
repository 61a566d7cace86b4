//! `prism explain`: attributions (LRP, gradients, occlusion) for a batch of inputs.

use std::path::PathBuf;

use anyhow::{bail, Context};
use prism_attribution::{
    Attributor, AttributorParams, Bound, Composite, CompositeParams, Explainer, SeedMode, Target,
};
use prism_model::{npy, Float, Model, Tensor};

use super::predict::{chunks, read_batch, sample_progress, DTypeArg};

/// Explain a model's decisions: relevance (or gradient) of each input for a target class.
///
/// With --composite, LRP rules are assigned to the graph's nodes by one of Zennit's composites
/// (epsilon-gamma-box, epsilon-plus, epsilon-plus-flat, epsilon-alpha2-beta1,
/// epsilon-alpha2-beta1-flat, excitation-backprop, deconvnet, guided-backprop, beta-smooth) or
/// by your own (--composite-file, see docs/composites.md). The attributor drives the backward
/// pass: gradient (default), smoothgrad, integrated-gradients or occlusion. Canonizers (merging
/// BatchNorm into the layer before it, explicit residual sums) are on unless --no-canonize.
///
/// INPUT is a float32/float64 .npy array, already preprocessed, first axis = samples. The
/// relevance is written with the input's shape.
///
/// Examples:
///
///   prism explain vgg16.onnx images.npy --output relevance.npy --composite epsilon-plus-flat
///
///   prism explain resnet50.onnx images.npy -o r.npy --composite epsilon-gamma-box --low -2.12 --high 2.64
///
///   prism explain model.onnx x.npy -o r.npy --attributor integrated-gradients --n-iter 50 --target labels.npy
///
///   prism explain model.onnx x.npy -o r.npy --composite epsilon-plus --show-rules
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ExplainArgs {
    /// The ONNX model file.
    pub model: PathBuf,
    /// Input array (.npy), first axis = samples.
    pub input: PathBuf,
    /// Where to write the relevance (.npy, the input's shape, in --dtype).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Built-in LRP composite (Zennit's names, kebab case). Without one: plain gradients.
    #[arg(long, conflicts_with = "composite_file")]
    pub composite: Option<String>,
    /// Your own composite as TOML (see docs/composites.md).
    #[arg(long, value_name = "FILE.toml")]
    pub composite_file: Option<PathBuf>,
    /// gradient, smoothgrad, integrated-gradients or occlusion.
    #[arg(long, default_value = "gradient")]
    pub attributor: String,
    /// Target class: a class index, `predicted` (arg-max, default) or a .npy of per-sample labels.
    #[arg(long, default_value = "predicted")]
    pub target: String,
    /// Initial relevance: one-hot at the target (Zennit's convention) or the target's logit.
    #[arg(long, value_enum, default_value_t = SeedArg::OneHot)]
    pub seed_mode: SeedArg,
    /// Computation precision.
    #[arg(long, value_enum, default_value_t = DTypeArg::F32)]
    pub dtype: DTypeArg,
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
    /// Samples per batch.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Print the rule each node gets, then continue.
    #[arg(long)]
    pub show_rules: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeedArg {
    OneHot,
    Logit,
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

pub fn run(args: &ExplainArgs) -> anyhow::Result<()> {
    match args.dtype {
        DTypeArg::F32 => run_typed::<f32>(args),
        DTypeArg::F64 => run_typed::<f64>(args),
    }
}

fn run_typed<T: Float + npyz::AutoSerialize>(args: &ExplainArgs) -> anyhow::Result<()> {
    let params = CompositeParams {
        epsilon: args.epsilon,
        stabilizer: args.stabilizer,
        gamma: args.gamma,
        alpha: args.alpha,
        beta: args.beta,
        low: bound(&args.low),
        high: bound(&args.high),
        beta_smooth: args.beta_smooth,
        zero_bias: args.zero_bias,
    };
    let composite = match (&args.composite, &args.composite_file) {
        (Some(name), _) => Some(Composite::builtin(name, &params)?),
        (None, Some(file)) => {
            let c = Composite::from_toml_file(file)?;
            Some(if args.zero_bias {
                c.with_zero_bias()
            } else {
                c
            })
        }
        (None, None) => None,
    };
    let attributor = Attributor::by_name(
        &args.attributor,
        &AttributorParams {
            n_iter: args.n_iter,
            noise_level: args.noise_level,
            window: args.window.clone(),
            stride: args.stride.clone(),
            invert: args.invert_occlusion,
            seed: args.seed,
            baseline: args.baseline,
        },
    )?;
    let model =
        Model::load(&args.model).with_context(|| format!("loading {}", args.model.display()))?;
    let x: Tensor<T> = read_batch(&args.input)?;
    let n = x.shape()[0];
    let target = match args.target.as_str() {
        "predicted" => Target::Predicted,
        t if t.ends_with(".npy") => {
            let labels =
                npy::read_i64(t.as_ref()).with_context(|| format!("reading labels {t}"))?;
            if labels.len() != n {
                bail!("{t} holds {} labels for {n} samples", labels.len());
            }
            let labels: Vec<usize> = labels
                .data()
                .iter()
                .map(|&v| {
                    usize::try_from(v).map_err(|_| anyhow::anyhow!("{t}: negative label {v}"))
                })
                .collect::<anyhow::Result<_>>()?;
            Target::PerSample(labels)
        }
        t => Target::Class(t.parse().map_err(|_| {
            anyhow::anyhow!(
                "--target must be a class index, `predicted` or a labels .npy file, got '{t}'"
            )
        })?),
    };
    let mut explainer = Explainer::new(&model).with_canonizers(!args.no_canonize);
    if let Some(c) = composite {
        explainer = explainer.with_composite(c);
    }
    let seed = match args.seed_mode {
        SeedArg::OneHot => SeedMode::OneHot,
        SeedArg::Logit => SeedMode::Logit,
    };
    let parts = chunks(&x, args.batch_size);
    if args.show_rules {
        for (node, op, rule) in explainer
            .rule_table(parts[0].shape())
            .context("assigning rules")?
        {
            println!("{node:<50} {op:<20} {rule}");
        }
    }
    let bar = sample_progress(n, parts.len());
    let mut relevance: Vec<T> = Vec::with_capacity(x.len());
    let mut offset = 0;
    for part in parts {
        let k = part.shape()[0];
        let t = match &target {
            Target::PerSample(v) => Target::PerSample(v[offset..offset + k].to_vec()),
            other => other.clone(),
        };
        let a = explainer
            .attribute(&part, &t, seed, &attributor)
            .with_context(|| format!("attributing samples {offset}..{}", offset + k))?;
        let per = a.relevance.len() / k;
        for (i, (&cls, r)) in a
            .targets
            .iter()
            .zip(a.relevance.data().chunks(per))
            .enumerate()
        {
            let sum: f64 = r.iter().map(|v| v.f64()).sum();
            bar.suspend(|| {
                println!(
                    "sample {}: target {cls}, relevance sum {sum:.6}",
                    offset + i
                )
            });
        }
        relevance.extend_from_slice(a.relevance.data());
        offset += k;
        bar.inc(k as u64);
    }
    bar.finish_and_clear();
    let r = Tensor::new(x.shape().to_vec(), relevance)?;
    npy::write_float(&args.output, &r)
        .with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!(
        "wrote relevance {:?} to {}",
        r.shape(),
        args.output.display()
    );
    Ok(())
}
