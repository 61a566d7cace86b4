//! `prism evaluate`: region perturbation (AOPC), parameter randomisation and completeness for
//! several attribution methods in one run, ranked.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use prism_attribution::{default_epsilon, MethodSpec, DEFAULT_BASELINE};
use prism_eval::evaluate::Evaluation;
use prism_eval::source::{segments_from, Source, SourceSpec};
use prism_eval::{
    evaluate_chunks, zbox_bounds_from_inputs, Baseline, Chunk, EvalError, FaithfulnessCorrelation,
    FeatureBaseline, Irof, Method, Metrics, Mode, NoiseScale, Progress, RegionPerturbation, Road,
    Settings, WeightNoise,
};
use prism_model::{Float, Model, Tensor};
use prism_store::TargetSpec;

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
///   * weight noise (with --weight-noise): Gaussian noise N(0, σ²) added to every weight and
///     bias (Quantus' additive ModelInterface.sample), --weight-noise-draws times per σ; the
///     share of unchanged predictions and the similarity of the recomputed attributions to the
///     originals (Spearman, SSIM, top-k intersection).
///
/// Rule and attributor flags are those of `prism explain`; without --low/--high, ZBox gets the
/// inputs' minimum and maximum. --composite-file adds your own composite (named by its `name`).
///
/// --metrics adds Quantus 0.6's faithfulness metrics: faithfulness-correlation, road, irof
/// (docs/evaluation.md gives each definition and where Prism differs).
///
/// Dataset scale: --model M --dataset D streams the dataset in batches of --attribution-batch
/// samples (HDF5, image folder or .npy, read and preprocessed as by `prism attribute`), so the
/// memory is bounded by a batch. --attributions FILE.h5 evaluates the attributions of
/// `prism attribute` instead of computing methods: the samples come from the dataset the file
/// names (or --dataset, with the same preprocessing flags), matched by sample number; the
/// target defaults to the file's.
///
/// Writes report.json and PNG plots into --output-dir and prints a table ranked by MoRF AOPC.
/// See docs/evaluation.md for the definitions.
///
/// Examples:
///
///   prism evaluate vgg16.onnx images.npy -o eval/ --methods epsilon-plus-flat,epsilon-gamma-box,gradient
///
///   prism evaluate --model vgg16.onnx --dataset val/ --resize 256 --crop 224 --normalize imagenet \
///       -o eval/ --metrics road,faithfulness-correlation --randomisation none
///
///   prism evaluate --model vgg16.onnx --attributions attr.h5 --resize 256 --crop 224 \
///       --normalize imagenet -o eval/ --metrics irof
///
///   prism evaluate model.onnx x.npy -o eval/ --baseline blur --steps 50 --randomisation cascading,independent
///
///   prism evaluate model.onnx x.npy -o eval/ --target labels.npy --randomisation none --patch-size 16
///
///   prism evaluate model.onnx x.npy -o eval/ --randomisation none --weight-noise 0.001,0.01,0.1
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct EvaluateArgs {
    /// The ONNX model file (or --model).
    #[arg(required_unless_present = "model_flag")]
    pub model: Option<PathBuf>,
    /// Input array (.npy), first axis = samples, already preprocessed (or --dataset,
    /// --attributions).
    #[arg(conflicts_with_all = ["dataset", "attributions"])]
    pub input: Option<PathBuf>,
    /// The ONNX model file (the dataset form's spelling of MODEL).
    #[arg(long = "model", value_name = "MODEL.onnx", conflicts_with = "model")]
    pub model_flag: Option<PathBuf>,
    /// Evaluate on a dataset, streamed in batches: HDF5 file, image folder or .npy array
    /// (preprocessing flags as for `prism attribute`).
    #[arg(long, value_name = "PATH")]
    pub dataset: Option<PathBuf>,
    /// Evaluate the attributions of an attribution file of `prism attribute` (matched to the
    /// dataset by sample number) instead of computing methods (add --methods to compare).
    #[arg(long, value_name = "FILE.h5")]
    pub attributions: Option<PathBuf>,
    #[command(flatten)]
    pub data: super::dataset::DatasetArgs,
    /// Only the first N samples (of the dataset, or of the attribution file's rows).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Dataset batches decoded ahead of the evaluation.
    #[arg(long, default_value_t = 2)]
    pub prefetch: usize,
    /// Quantus' faithfulness metrics to add, comma-separated: faithfulness-correlation (fc),
    /// road, irof.
    #[arg(long, value_delimiter = ',', value_name = "METRIC")]
    pub metrics: Vec<String>,
    /// Faithfulness correlation: random subsets per sample (Quantus' nr_runs).
    #[arg(long, default_value_t = 100)]
    pub fc_runs: usize,
    /// Faithfulness correlation: features per subset (Quantus' subset_size).
    #[arg(long, default_value_t = 224)]
    pub fc_subset_size: usize,
    /// Faithfulness correlation: what subset features become: black (the sample's minimum),
    /// white, mean or a number (Quantus' perturb_baseline).
    #[arg(long, default_value = "black", allow_hyphen_values = true)]
    pub fc_baseline: String,
    /// ROAD: percentages of pixels removed, comma-separated [default: 1,3,…,99].
    #[arg(long, value_delimiter = ',', value_name = "P")]
    pub road_percentages: Vec<f64>,
    /// ROAD: standard deviation of the noise added to imputed values.
    #[arg(long, default_value_t = 0.01)]
    pub road_noise: f64,
    /// IROF: segments as a .npy of integer labels, one H×W map per sample (e.g. scikit-image's
    /// SLIC, as Quantus uses) [default: a grid of about 100 squares].
    #[arg(long, value_name = "SEGMENTS.npy")]
    pub segments: Option<PathBuf>,
    /// Folder for report.json and the plots (created if missing).
    #[arg(short, long)]
    pub output_dir: PathBuf,
    /// Methods, comma-separated: composites (epsilon-plus-flat, …), attributors (gradient,
    /// smoothgrad, integrated-gradients, occlusion) or COMPOSITE+ATTRIBUTOR.
    /// [default: epsilon-plus-flat,epsilon-gamma-box,gradient; none with --attributions]
    #[arg(long, value_delimiter = ',')]
    pub methods: Option<Vec<String>>,
    /// Also evaluate your own composite (TOML, see docs/composites.md), named by its `name`.
    #[arg(long, value_name = "FILE.toml")]
    pub composite_file: Option<PathBuf>,
    /// Target class: a class index, `predicted` (arg-max), a .npy of per-sample labels, or for
    /// datasets `label` [default: predicted; with --attributions, the file's target].
    #[arg(long)]
    pub target: Option<String>,
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
    /// Weight noise: standard deviations σ of the Gaussian noise added to every weight and bias,
    /// comma-separated (e.g. 0.001,0.01,0.1) [default: no weight-noise check].
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "SIGMA",
        allow_negative_numbers = true
    )]
    pub weight_noise: Vec<f64>,
    /// Weight noise: independent draws per σ (seeded by --seed); results are their mean.
    #[arg(long, value_name = "K", default_value_t = prism_eval::weight_noise::DEFAULT_DRAWS)]
    pub weight_noise_draws: usize,
    /// Weight noise: samples re-attributed on each perturbed model (the first ones).
    #[arg(long, value_name = "N", default_value_t = prism_eval::weight_noise::DEFAULT_SAMPLES)]
    pub weight_noise_samples: usize,
    /// Weight noise: σ is `absolute` (Quantus' additive noise) or `relative` to each weight
    /// tensor's standard deviation.
    #[arg(long, value_name = "SCALE", default_value = "absolute")]
    pub weight_noise_scale: String,
    /// Relative tolerance of the completeness check.
    #[arg(long, default_value_t = 0.05)]
    pub tolerance: f64,
    /// Seed of random orders, uniform noise, re-drawn weights and weight noise.
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
    /// The layer of the class-activation-map methods (grad-cam, …): an ONNX node or tensor
    /// name [default: the deepest convolution]. The other methods ignore it.
    #[arg(long, value_name = "NODE")]
    pub layer: Option<String>,
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

/// Progress bars per stage, printed notes above them; plain lines (a stage's start and each
/// tenth of it) when stderr is not a terminal.
enum Bars {
    Bar(ProgressBar),
    Plain(std::sync::Mutex<(String, u64, u64, u64)>),
}

impl Bars {
    fn new() -> Bars {
        if !std::io::stderr().is_terminal() {
            return Bars::Plain(std::sync::Mutex::new((String::new(), 0, 0, 0)));
        }
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{msg:32} {bar:40} {pos}/{len}  {per_sec}  eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Bars::Bar(bar)
    }

    fn finish(&self) {
        if let Bars::Bar(b) = self {
            b.finish_and_clear();
        }
    }
}

impl Progress for Bars {
    fn stage(&self, name: &str, total: u64) {
        match self {
            Bars::Bar(b) => {
                b.set_length(total);
                b.set_position(0);
                b.set_message(name.to_string());
            }
            Bars::Plain(m) => {
                if let Ok(mut s) = m.lock() {
                    *s = (name.to_string(), total, 0, 0);
                }
                eprintln!("{name}: 0/{total}");
            }
        }
    }
    fn inc(&self, n: u64) {
        match self {
            Bars::Bar(b) => b.inc(n),
            Bars::Plain(m) => {
                if let Ok(mut s) = m.lock() {
                    s.2 += n;
                    let tenth = (s.2 * 10).checked_div(s.1).unwrap_or(0); // no total: no tenths
                    if tenth > s.3 {
                        s.3 = tenth;
                        eprintln!("{}: {}/{}", s.0, s.2, s.1);
                    }
                }
            }
        }
    }
    fn note(&self, line: &str) {
        match self {
            Bars::Bar(b) => b.suspend(|| eprintln!("{line}")),
            Bars::Plain(_) => eprintln!("{line}"),
        }
    }
}

pub fn run(args: &EvaluateArgs) -> anyhow::Result<()> {
    match args.dtype {
        DTypeArg::F32 => run_typed::<f32>(args),
        DTypeArg::F64 => run_typed::<f64>(args),
    }
}

/// The faithfulness metrics of --metrics with their flags.
fn metrics(args: &EvaluateArgs) -> anyhow::Result<Metrics> {
    let mut m = Metrics::default();
    for name in args
        .metrics
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        match name {
            "faithfulness-correlation" | "fc" => {
                m.faithfulness_correlation = Some(FaithfulnessCorrelation {
                    nr_runs: args.fc_runs,
                    subset_size: args.fc_subset_size,
                    baseline: FeatureBaseline::parse(&args.fc_baseline).context("--fc-baseline")?,
                    batch_size: args.batch_size,
                    seed: args.seed,
                })
            }
            "road" => {
                m.road = Some(Road {
                    percentages: if args.road_percentages.is_empty() {
                        Road::default().percentages
                    } else {
                        args.road_percentages.clone()
                    },
                    noise: args.road_noise,
                    batch_size: args.batch_size,
                    seed: args.seed,
                })
            }
            "irof" => {
                m.irof = Some(Irof {
                    batch_size: args.batch_size,
                })
            }
            other => bail!(
                "--metrics: unknown metric '{other}'; use faithfulness-correlation (fc), road or \
                 irof"
            ),
        }
    }
    if args.segments.is_some() && m.irof.is_none() {
        bail!("--segments is IROF's; add --metrics irof");
    }
    Ok(m)
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
        metrics: Metrics::default(),
        weight_noise: (!args.weight_noise.is_empty()).then(|| WeightNoise {
            sigmas: args.weight_noise.clone(),
            draws: args.weight_noise_draws,
            scale: NoiseScale::Absolute,
            samples: args.weight_noise_samples,
        }),
    };
    settings.validate().map_err(in_flag_words)?;
    let scale = NoiseScale::parse(&args.weight_noise_scale).context("--weight-noise-scale")?;
    Ok(Settings {
        randomisation: Mode::parse_list(&args.randomisation).context("--randomisation")?,
        perturbation: RegionPerturbation {
            baseline: Baseline::parse(&args.baseline, args.patch_size).context("--baseline")?,
            ..settings.perturbation
        },
        metrics: metrics(args)?,
        weight_noise: settings.weight_noise.map(|wn| WeightNoise { scale, ..wn }),
        ..settings
    })
}

/// The inputs' range over a streamed source (one pass; for ZBox bounds).
fn source_range(source: &Source, batch: usize, prefetch: usize) -> anyhow::Result<(f64, f64)> {
    let mut range = (f64::INFINITY, f64::NEG_INFINITY);
    for chunk in source.chunks::<f32>(batch, TargetSpec::Predicted, prefetch) {
        let chunk = chunk.map_err(in_flag_words)?;
        for v in chunk.x.data().iter().map(|&v| f64::from(v)) {
            if v.is_finite() {
                range = (range.0.min(v), range.1.max(v));
            }
        }
    }
    if range.0 > range.1 {
        bail!(
            "the dataset holds no finite value, so it gives no ZBox bounds; give --low and --high"
        );
    }
    Ok(range)
}

fn run_typed<T: Float>(args: &EvaluateArgs) -> anyhow::Result<()> {
    let settings = settings(args)?;
    let model_path = match (&args.model, &args.model_flag) {
        (Some(m), _) | (None, Some(m)) => m.clone(),
        (None, None) => bail!("give the model: MODEL or --model"),
    };
    let streamed = args.dataset.is_some() || args.attributions.is_some();
    let (x, source): (Option<Tensor<T>>, Option<Source>) = match (&args.input, streamed) {
        (Some(input), false) => {
            let x: Tensor<T> = read_batch(input)?;
            args.nonfinite.check(input, &x)?;
            (Some(x), None)
        }
        (None, true) => {
            let spec = SourceSpec {
                dataset: args.dataset.clone(),
                options: args.data.options()?,
                attributions: args.attributions.clone(),
                segments: args.segments.clone(),
                limit: args.limit,
                prefetch: args.prefetch,
                allow_nonfinite: args.nonfinite.allow_nonfinite,
            };
            let source = Source::open(&spec, &model_path).map_err(in_flag_words)?;
            for n in &source.notes {
                eprintln!("{n}");
            }
            (None, Some(source))
        }
        (None, false) => bail!("give the inputs: INPUT.npy, --dataset or --attributions"),
        (Some(_), true) => bail!("INPUT.npy and --dataset/--attributions exclude each other"),
    };
    if x.is_some() && (args.limit.is_some() || args.data.options()? != Default::default()) {
        bail!("--limit and the dataset flags apply to --dataset and --attributions");
    }
    let mut base = MethodSpec {
        canonize: settings.canonize,
        baseline: args.ig_baseline,
        seed: args.seed,
        ..MethodSpec::default()
    };
    args.rules.apply(&mut base, None);
    args.sampling.apply(&mut base);
    base.layer = args.layer.clone();
    args.occlusion.apply(&mut base)?;
    let names: Vec<String> = match (&args.methods, &args.attributions) {
        (Some(m), _) => m.clone(),
        (None, Some(_)) => Vec::new(),
        (None, None) => ["epsilon-plus-flat", "epsilon-gamma-box", "gradient"]
            .map(String::from)
            .to_vec(),
    };
    // ZBox (epsilon-gamma-box's first layer) needs the input domain; unless given, it is taken
    // from the inputs, which is what evaluation on this data set can know.
    let needs_box = names.iter().any(|m| m.contains("box"));
    let given = base.low.is_some() && base.high.is_some();
    if (needs_box || args.composite_file.is_some()) && !given {
        let (lo, hi) = match (&x, &source) {
            (Some(x), _) => zbox_bounds_from_inputs(&mut base, x).map_err(in_flag_words)?,
            (None, Some(s)) => {
                let (lo, hi) = source_range(s, args.attribution_batch, args.prefetch)?;
                base.low = base
                    .low
                    .take()
                    .or(Some(prism_attribution::Bound::Scalar(lo)));
                base.high = base
                    .high
                    .take()
                    .or(Some(prism_attribution::Bound::Scalar(hi)));
                (lo, hi)
            }
            (None, None) => unreachable!("inputs resolved above"),
        };
        if needs_box {
            eprintln!(
                "note: ZBox bounds not given; using the inputs' range --low {lo} --high {hi}"
            );
        }
    }
    let mut methods: Vec<Method> = names
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
    let given_methods = source.as_ref().map_or(&[][..], |s| &s.given[..]);
    if methods.is_empty() && given_methods.is_empty() {
        bail!("--methods is empty; name at least one composite or attributor");
    }
    let model =
        Model::load(&model_path).with_context(|| format!("loading {}", model_path.display()))?;
    args.nonfinite.apply(&model);
    std::fs::create_dir_all(&args.output_dir)
        .with_context(|| format!("creating {}", args.output_dir.display()))?;

    let progress = Bars::new();
    let model_name = model_path.display().to_string();
    let report = match (x, &source) {
        (Some(x), _) => {
            let n = x.shape()[0];
            let target =
                super::method::parse_target(args.target.as_deref().unwrap_or("predicted"), n)?;
            let segments = match &args.segments {
                Some(p) => {
                    let labels: Tensor<f64> = prism_store::npy::read_float(p)
                        .with_context(|| format!("reading {}", p.display()))?;
                    Some(
                        segments_from(&labels, x.shape())
                            .map_err(in_flag_words)
                            .with_context(|| format!("--segments {}", p.display()))?,
                    )
                }
                None => None,
            };
            let run = Evaluation {
                model: &model,
                model_name: &model_name,
                methods: &methods,
                given: &[],
                settings: &settings,
                samples: n,
            };
            let chunk = Chunk {
                x,
                target,
                relevance: Vec::new(),
                segments,
            };
            evaluate_chunks(&run, std::iter::once(Ok(chunk)), &progress)
        }
        (None, Some(source)) => {
            let target = args
                .target
                .clone()
                .or_else(|| source.recorded_target.clone())
                .unwrap_or_else(|| "predicted".into());
            let target: TargetSpec = target.parse().map_err(|e: String| {
                anyhow::anyhow!("--target: {e} (per-sample .npy targets are for INPUT.npy)")
            })?;
            let run = Evaluation {
                model: &model,
                model_name: &model_name,
                methods: &methods,
                given: &source.given,
                settings: &settings,
                samples: source.len(),
            };
            evaluate_chunks(
                &run,
                source.chunks::<T>(args.attribution_batch, target, args.prefetch),
                &progress,
            )
        }
        (None, None) => unreachable!("inputs resolved above"),
    }
    .map_err(in_flag_words)
    .context("evaluating")?;
    progress.finish();
    let json = args.output_dir.join("report.json");
    report
        .write_json(&json)
        .with_context(|| format!("writing {}", json.display()))?;
    print!("{}", report.table());
    let noise_time = match &report.weight_noise {
        Some(_) => format!(", weight noise {:.1} s", report.weight_noise_seconds),
        None => String::new(),
    };
    eprintln!(
        "perturbation {:.1} s, randomisation {:.1} s{noise_time}; wrote {}",
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
