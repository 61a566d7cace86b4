//! `prism tcav`: testing with concept activation vectors (`prism_jobs::tcav`).

use std::path::PathBuf;

use anyhow::Context;
use prism_jobs::tcav::cav::{CavSettings, DEFAULT_L2, DEFAULT_TEST_FRACTION};
use prism_jobs::tcav::{
    tcav, write_report, ExampleSet, TcavError, TcavJob, TcavProgress, TcavSettings, DEFAULT_ALPHA,
};
use prism_model::DType;

use super::dataset::DatasetArgs;
use super::predict::DTypeArg;

/// Test whether a human concept, given by example images, matters to a class's prediction at a
/// layer: TCAV (Kim et al. 2018), with Captum's definitions.
///
/// For each concept and each random set, a concept activation vector (CAV) is the unit normal
/// of a linear classifier (L2-regularised logistic regression, λ = 0.01) telling the concept's
/// activations at --layer from the random set's, pointing to the concept; its accuracy is
/// measured on a seeded 33% held-out split. The TCAV score of a CAV is the share of the
/// --inputs samples whose target logit grows along it (∇h·v > 0, Captum's sign_count); the
/// magnitude is the mean of ∇h·v. A concept's scores over the random sets are compared with the
/// random baseline's (random set i against random set i+1) by Student's two-sided t-test;
/// with several concepts the level is Bonferroni-corrected (α / concepts).
///
/// Every set is a dataset as `prism attribute --dataset` reads it (an image folder
/// ROOT/<sub-folder>/<image>.png, an HDF5 file or a .npy array; labels ignored), all
/// preprocessed alike (--resize, --crop, --normalize). --inputs are samples of the --target
/// class. Writes a JSON report (per concept: the scores per random run, mean, std, p-value,
/// significance, CAV accuracies; see docs/tcav.md) and with --plot a bar chart.
///
/// Example:
///
///   prism tcav --model cnn.onnx --layer /features/features.29/Relu --target 340 \
///       --concept striped=concepts/striped --concept dotted=concepts/dotted \
///       --random random/r0 --random random/r1 --random random/r2 ... \
///       --inputs zebras/ --resize 256 --crop 224 --normalize imagenet \
///       -o tcav.json --plot tcav.png
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct TcavArgs {
    /// The ONNX model file.
    #[arg(long)]
    pub model: PathBuf,
    /// The layer: an ONNX node (its first output) or tensor name, as `prism inspect --shapes`
    /// prints them.
    #[arg(long, value_name = "NODE")]
    pub layer: String,
    /// The class whose output is differentiated (a class number).
    #[arg(long, value_name = "K")]
    pub target: usize,
    /// A concept's examples: NAME=PATH (image folder, .h5 or .npy); repeatable.
    #[arg(long, required = true, value_name = "NAME=PATH")]
    pub concept: Vec<String>,
    /// A random set (PATH, named after its last path component, or NAME=PATH); at least 2,
    /// the TCAV paper uses 10 or more; repeatable.
    #[arg(long, required = true, value_name = "[NAME=]PATH")]
    pub random: Vec<String>,
    /// The samples of the target class whose gradients are scored.
    #[arg(long, value_name = "PATH")]
    pub inputs: PathBuf,
    /// The JSON report to write.
    #[arg(long, short, value_name = "REPORT.json")]
    pub output: PathBuf,
    /// Also draw the mean TCAV scores as a bar chart (PNG).
    #[arg(long, value_name = "PLOT.png")]
    pub plot: Option<PathBuf>,
    #[command(flatten)]
    pub data: DatasetArgs,
    /// Seed of the CAVs' train/test splits.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Computation type of the model's passes.
    #[arg(long, value_enum, default_value_t = DTypeArg::F32)]
    pub dtype: DTypeArg,
    /// Significance level of the t-test (before the Bonferroni correction).
    #[arg(long, default_value_t = DEFAULT_ALPHA)]
    pub alpha: f64,
    /// L2 penalty λ of the CAV classifier.
    #[arg(long, default_value_t = DEFAULT_L2)]
    pub l2: f64,
    /// Share of each CAV's examples held out to measure its accuracy.
    #[arg(long, default_value_t = DEFAULT_TEST_FRACTION)]
    pub test_fraction: f64,
    /// Samples per forward/backward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Accept samples holding NaN or ±Inf (refused by default).
    #[arg(long)]
    pub allow_nonfinite: bool,
}

/// `NAME=PATH`, or for random sets a bare PATH named after its last component.
fn parse_set(spec: &str, flag: &str, bare: bool) -> anyhow::Result<ExampleSet> {
    if let Some((name, path)) = spec.split_once('=') {
        if !name.is_empty() && !name.contains(['/', '\\']) && !path.is_empty() {
            return Ok(ExampleSet {
                name: name.to_string(),
                path: path.into(),
            });
        }
    }
    if !bare {
        anyhow::bail!("{flag} takes NAME=PATH (e.g. striped=concepts/striped), got `{spec}`");
    }
    let path = PathBuf::from(spec);
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .with_context(|| format!("{flag} `{spec}` has no name: write NAME=PATH"))?;
    Ok(ExampleSet { name, path })
}

/// Prints a line per set read.
struct Lines;

impl TcavProgress for Lines {
    fn samples(&mut self, name: &str, done: usize, total: usize) {
        if done == total {
            eprintln!("{name}: {total} samples");
        }
    }
}

/// Runs `prism tcav`.
pub fn run(args: &TcavArgs) -> anyhow::Result<()> {
    let concepts = args
        .concept
        .iter()
        .map(|c| parse_set(c, "--concept", false))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let randoms = args
        .random
        .iter()
        .map(|c| parse_set(c, "--random", true))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if args.batch_size == 0 {
        anyhow::bail!("--batch-size must be at least 1");
    }
    let job = TcavJob {
        model: args.model.clone(),
        layer: args.layer.clone(),
        target: args.target,
        concepts,
        randoms,
        inputs: args.inputs.clone(),
        dataset_options: args.data.options()?,
        settings: TcavSettings {
            seed: args.seed,
            cav: CavSettings {
                l2: args.l2,
                test_fraction: args.test_fraction,
                ..CavSettings::default()
            },
            alpha: args.alpha,
        },
        dtype: match args.dtype {
            DTypeArg::F32 => DType::F32,
            DTypeArg::F64 => DType::F64,
        },
        batch_size: args.batch_size,
        allow_nonfinite: args.allow_nonfinite,
    };
    let report = tcav(&job, &mut Lines).map_err(in_flag_words)?;
    write_report(&report, &args.output, args.plot.as_deref())?;
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    let b = &report.random_baseline.sign_count;
    eprintln!("random baseline: TCAV score {:.3} ± {:.3}", b.mean, b.std);
    for c in &report.concepts {
        eprintln!(
            "{}: TCAV score {:.3} ± {:.3}, CAV accuracy {:.2}, p = {}{}",
            c.set.name,
            c.sign_count.mean,
            c.sign_count.std,
            c.cav_accuracy.mean,
            c.test
                .p_value
                .map_or("n/a".to_string(), |p| format!("{p:.3e}")),
            if c.test.significant {
                format!(" (significant at {})", report.alpha_corrected)
            } else {
                String::new()
            }
        );
    }
    eprintln!("wrote {}", args.output.display());
    if let Some(p) = &args.plot {
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}

/// The job's error with the flag that caused it.
fn in_flag_words(e: TcavError) -> anyhow::Error {
    let flag = match &e {
        TcavError::UnknownLayer { .. } => Some("--layer"),
        TcavError::Target { .. } => Some("--target"),
        TcavError::TooFewRandom { .. } => Some("--random"),
        TcavError::LoadModel { .. } => Some("--model"),
        TcavError::OpenSet { what, .. } | TcavError::ReadSet { what, .. } => Some(match *what {
            "concept" => "--concept",
            "random" => "--random",
            _ => "--inputs",
        }),
        _ => None,
    };
    match flag {
        Some(f) => anyhow::Error::new(e).context(f),
        None => anyhow::Error::new(e),
    }
}
