//! `prism evaluate`: region perturbation (AOPC), parameter randomisation and completeness for
//! several attribution methods in one run, ranked.

use std::path::PathBuf;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use prism_attribution::{default_epsilon, MethodSpec, DEFAULT_BASELINE};
use prism_eval::{
    zbox_bounds_from_inputs, Baseline, EvalError, Method, Mode, Progress, RegionPerturbation,
    Settings,
};
use prism_model::{Float, Model, Tensor};

use super::method::{read_composite_file, OcclusionArgs, RuleArgs, SamplingArgs};
use super::predict::{read_batch, DTypeArg};

/// Evaluate attribution methods: region perturbation, parameter randomisation, completeness.
///
/// For each method in --methods (a composite, an attributor, or COMPOSITE+ATTRIBUTOR), Prism
/// attributes the inputs once and then measures:
///
///   * region perturbation (Samek et al.): --patch-size patches replaced by a baseline
///     (zero, mean, uniform, blur[:SIGMA]) most-relevant-first (MoRF) and least-relevant-first
///     (LeRF) for --steps steps; the target score is recorded after each step (many steps per
///     forward batch). AOPC (MoRF: higher is better) and the area between the MoRF and LeRF
///     curves; a random order is the baseline every method should beat.
///   * model-parameter randomisation (Adebayo et al.): the weights of one layer at a time are
///     re-drawn (seeded), cascading from the output and/or independently, the attributions
///     recomputed and compared with the originals (Spearman, SSIM, top-k intersection).
///   * completeness: Σ R against the seed (LRP) or f(x) − f(baseline) (integrated gradients).
///
/// Rule and attributor flags are those of `prism explain`; without --low/--high, ZBox gets the
/// inputs' minimum and maximum. --composite-file adds your own composite (named by its `name`).
///
/// Writes report.json and PNG plots into --output-dir and prints a table ranked by MoRF AOPC.
/// See docs/evaluation.md for the definitions.
///
/// Examples:
///
///   prism evaluate vgg16.onnx images.npy -o eval/ --methods epsilon-plus-flat,epsilon-gamma-box,gradient
///
///   prism evaluate model.onnx x.npy -o eval/ --baseline blur --steps 50 --randomisation cascading,independent
///
///   prism evaluate model.onnx x.npy -o eval/ --target labels.npy --randomisation none --patch-size 16
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct EvaluateArgs {
    /// The ONNX model file.
    pub model: PathBuf,
    /// Input array (.npy), first axis = samples, already preprocessed.
    pub input: PathBuf,
    /// Folder for report.json and the plots (created if missing).
    #[arg(short, long)]
    pub output_dir: PathBuf,
    /// Methods, comma-separated: composites (epsilon-plus-flat, …), attributors (gradient,
    /// smoothgrad, integrated-gradients, occlusion) or COMPOSITE+ATTRIBUTOR.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "epsilon-plus-flat,epsilon-gamma-box,gradient"
    )]
    pub methods: Vec<String>,
    /// Also evaluate your own composite (TOML, see docs/composites.md), named by its `name`.
    #[arg(long, value_name = "FILE.toml")]
    pub composite_file: Option<PathBuf>,
    /// Target class: a class index, `predicted` (arg-max, default) or a .npy of per-sample labels.
    #[arg(long, default_value = "predicted")]
    pub target: String,
    /// Patch edge length in pixels.
    #[arg(long, default_value_t = 8)]
    pub patch_size: usize,
    /// Number of patches to perturb (capped at the number of patches).
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// What perturbed patches become: zero, mean, uniform, blur (σ = patch/2) or blur:SIGMA.
    #[arg(long, default_value = "zero")]
    pub baseline: String,
    /// Perturbed inputs per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Samples per attribution batch.
    #[arg(long, default_value_t = 16)]
    pub attribution_batch: usize,
    /// Randomisation modes, comma-separated: cascading, independent, bottom-up, or none.
    #[arg(long, value_delimiter = ',', default_value = "cascading")]
    pub randomisation: Vec<String>,
    /// Samples entering the randomisation test (the first ones).
    #[arg(long, default_value_t = 16)]
    pub randomisation_samples: usize,
    /// k of the top-k intersection, as a fraction of the pixels.
    #[arg(long, default_value_t = 0.1)]
    pub top_k: f64,
    /// Compare signed maps in the randomisation test (default: absolute values, as Quantus).
    #[arg(long)]
    pub signed: bool,
    /// Relative tolerance of the completeness check.
    #[arg(long, default_value_t = 0.05)]
    pub tolerance: f64,
    /// Seed of random orders, uniform noise and re-drawn weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Computation precision.
    #[arg(long, value_enum, default_value_t = DTypeArg::F32)]
    pub dtype: DTypeArg,
    /// Skip the canonizers (BatchNorm merging, explicit residual sums).
    #[arg(long)]
    pub no_canonize: bool,
    /// Do not write PNG plots.
    #[arg(long)]
    pub no_plots: bool,
    // Rule parameters of the composites, as in `prism explain`. Without --low/--high, ZBox
    // (epsilon-gamma-box's first layer) gets the inputs' minimum and maximum.
    #[command(flatten)]
    pub rules: RuleArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Integrated-gradients baseline (a constant).
    #[arg(long, default_value_t = DEFAULT_BASELINE, allow_negative_numbers = true)]
    pub ig_baseline: f64,
    #[command(flatten)]
    pub occlusion: OcclusionArgs,
    #[command(flatten)]
    pub nonfinite: super::inputs::NonFiniteArgs,
}

/// An evaluation error; a method parameter's in flag words (see [`super::method::in_flag_words`]).
fn in_flag_words(e: EvalError) -> anyhow::Error {
    match e {
        EvalError::Attribution(a) => super::method::in_flag_words(a),
        EvalError::Parameter { names, detail } => {
            let flags: Vec<String> = names
                .iter()
                .map(|n| format!("--{}", n.replace('_', "-")))
                .collect();
            let list = match flags.split_last() {
                Some((last, rest)) if !rest.is_empty() => {
                    format!("{} and {last}", rest.join(", "))
                }
                _ => flags.join(""),
            };
            anyhow::anyhow!("{list} {detail}")
        }
        other => other.into(),
    }
}

/// Progress bars per stage, printed notes above them.
struct Bars(ProgressBar);

impl Progress for Bars {
    fn stage(&self, name: &str, total: u64) {
        self.0.set_length(total);
        self.0.set_position(0);
        self.0.set_message(name.to_string());
    }
    fn inc(&self, n: u64) {
        self.0.inc(n);
    }
    fn note(&self, line: &str) {
        self.0.suspend(|| eprintln!("{line}"));
    }
}

pub fn run(args: &EvaluateArgs) -> anyhow::Result<()> {
    match args.dtype {
        DTypeArg::F32 => run_typed::<f32>(args),
        DTypeArg::F64 => run_typed::<f64>(args),
    }
}

fn settings(args: &EvaluateArgs) -> anyhow::Result<Settings> {
    let settings = Settings {
        perturbation: RegionPerturbation {
            patch: args.patch_size,
            steps: args.steps,
            baseline: Baseline::Zero,
            batch_size: args.batch_size,
            seed: args.seed,
        },
        randomisation: Vec::new(),
        randomisation_samples: args.randomisation_samples,
        top_k_fraction: args.top_k,
        abs: !args.signed,
        tolerance: args.tolerance,
        attribution_batch: args.attribution_batch,
        canonize: !args.no_canonize,
    };
    settings.validate().map_err(in_flag_words)?;
    Ok(Settings {
        randomisation: Mode::parse_list(&args.randomisation).context("--randomisation")?,
        perturbation: RegionPerturbation {
            baseline: Baseline::parse(&args.baseline, args.patch_size).context("--baseline")?,
            ..settings.perturbation
        },
        ..settings
    })
}

fn run_typed<T: Float>(args: &EvaluateArgs) -> anyhow::Result<()> {
    let settings = settings(args)?;
    let x: Tensor<T> = read_batch(&args.input)?;
    args.nonfinite.check(&args.input, &x)?;
    let mut base = MethodSpec {
        canonize: settings.canonize,
        baseline: args.ig_baseline,
        seed: args.seed,
        ..MethodSpec::default()
    };
    args.rules.apply(&mut base, None);
    args.sampling.apply(&mut base);
    args.occlusion.apply(&mut base)?;
    // ZBox (epsilon-gamma-box's first layer) needs the input domain; unless given, it is taken
    // from the inputs, which is what evaluation on this data set can know.
    let needs_box = args.methods.iter().any(|m| m.contains("box"));
    let given = base.low.is_some() && base.high.is_some();
    if needs_box || args.composite_file.is_some() {
        let (lo, hi) = zbox_bounds_from_inputs(&mut base, &x).map_err(in_flag_words)?;
        if needs_box && !given {
            eprintln!(
                "note: ZBox bounds not given; using the inputs' range --low {lo} --high {hi}"
            );
        }
    }
    let mut methods: Vec<Method> = args
        .methods
        .iter()
        .filter(|m| !m.trim().is_empty())
        .map(|m| {
            // ε left out: the default of the method's own composite (LXT's 0 for attn-lrp)
            let mut b = base.clone();
            if args.rules.epsilon.is_none() {
                b.epsilon = default_epsilon(m.split('+').next(), None);
            }
            Method::parse(m, &b)
                .map_err(in_flag_words)
                .context("--methods")
        })
        .collect::<anyhow::Result<_>>()?;
    if let Some(file) = &args.composite_file {
        let (composite, text) = read_composite_file(file)?;
        let mut b = base.clone();
        if args.rules.epsilon.is_none() {
            b.epsilon = default_epsilon(None, Some(&text));
        }
        let m = Method::from_composite_file(composite, &text, &b)
            .map_err(in_flag_words)
            .with_context(|| format!("reading composite {}", file.display()))?;
        methods.push(m);
    }
    if methods.is_empty() {
        bail!("--methods is empty; name at least one composite or attributor");
    }
    let model =
        Model::load(&args.model).with_context(|| format!("loading {}", args.model.display()))?;
    args.nonfinite.apply(&model);
    let target = super::method::parse_target(&args.target, x.shape()[0])?;
    std::fs::create_dir_all(&args.output_dir)
        .with_context(|| format!("creating {}", args.output_dir.display()))?;

    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg:32} {bar:40} {pos}/{len}  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let progress = Bars(bar);
    let report = prism_eval::evaluate(
        &model,
        &args.model.display().to_string(),
        &x,
        &target,
        &methods,
        &settings,
        &progress,
    )
    .context("evaluating")?;
    progress.0.finish_and_clear();

    let json = args.output_dir.join("report.json");
    report
        .write_json(&json)
        .with_context(|| format!("writing {}", json.display()))?;
    print!("{}", report.table());
    eprintln!(
        "perturbation {:.1} s, randomisation {:.1} s; wrote {}",
        report.perturbation_seconds,
        report.randomisation_seconds,
        json.display()
    );
    if !args.no_plots {
        let files = prism_eval::plot::write_report_plots(&report, &args.output_dir)
            .context("writing plots")?;
        eprintln!(
            "wrote {} plots into {}",
            files.len(),
            args.output_dir.display()
        );
    }
    Ok(())
}
