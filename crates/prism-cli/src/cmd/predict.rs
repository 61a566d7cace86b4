//! `prism predict`: run a model on a .npy batch; logits to .npy and the top-k classes.

use std::path::PathBuf;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use prism_model::{Float, Flow, Model, Tensor};
use prism_store::npy;

/// Run an ONNX model on inputs from a .npy file and report the top-k classes per sample.
///
/// INPUT is a float32/float64 .npy array in the model's layout (N×C×H×W for images, N×F for
/// vectors), already preprocessed. A model with several inputs (a token model's input_ids and
/// attention_mask, say) takes each with --input NAME=FILE.npy instead; integer inputs are int64
/// or int32 .npy arrays (`prism inspect` lists the inputs with their types). Samples are
/// processed in chunks of --batch-size; the first output (N × classes) is written to --output
/// if given.
///
/// Examples:
///
///   prism predict resnet50.onnx images.npy --top-k 5
///
///   prism predict model.onnx inputs.npy --output logits.npy --dtype f64
///
///   prism predict bert.onnx --input input_ids=ids.npy --input attention_mask=mask.npy -o out.npy
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct PredictArgs {
    /// The ONNX model file.
    pub model: PathBuf,
    /// Input array (.npy), first axis = samples (single-input models).
    pub input: Option<PathBuf>,
    #[command(flatten)]
    pub inputs: super::inputs::NamedInputs,
    /// Where to write the logits (.npy, N × classes, in --dtype).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// How many classes to print per sample (0: none).
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Computation precision.
    #[arg(long, value_enum, default_value_t = DTypeArg::F32)]
    pub dtype: DTypeArg,
    /// Samples per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[command(flatten)]
    pub nonfinite: super::inputs::NonFiniteArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DTypeArg {
    F32,
    F64,
}

pub fn run(args: &PredictArgs) -> anyhow::Result<()> {
    match args.dtype {
        DTypeArg::F32 => run_typed::<f32>(args),
        DTypeArg::F64 => run_typed::<f64>(args),
    }
}

/// Reads a batch of samples (.npy, first axis = samples) as `T`.
pub(crate) fn read_batch<T: Float>(path: &std::path::Path) -> anyhow::Result<Tensor<T>> {
    let x: Tensor<T> = npy::read_float(path)?;
    if x.rank() == 0 || x.shape()[0] == 0 {
        bail!(
            "{}: expected a batch of samples (first axis = samples), got shape {:?}",
            path.display(),
            x.shape()
        );
    }
    Ok(x)
}

/// A progress bar over `n` samples, shown only when there is more than one chunk.
pub(crate) fn sample_progress(n: usize, chunks: usize) -> ProgressBar {
    if chunks <= 1 {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(n as u64);
    b.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} samples  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    b
}

fn run_typed<T: Float>(args: &PredictArgs) -> anyhow::Result<()> {
    let model =
        Model::load(&args.model).with_context(|| format!("loading {}", args.model.display()))?;
    args.nonfinite.apply(&model);
    let x: Vec<Tensor<T>> =
        super::inputs::read_inputs(&model, args.input.as_deref(), &args.inputs)?;
    let n = x[0].shape()[0];
    let bar = sample_progress(n, n.div_ceil(args.batch_size.max(1)));
    let logits = model
        .predict_batched(&x, args.batch_size, |done| {
            bar.inc(done.count as u64);
            Flow::Continue
        })
        .with_context(|| format!("running {}", args.model.display()))?;
    bar.finish_and_clear();
    args.nonfinite.warn("the output", &logits);
    if let Some(out) = &args.output {
        // The error names the file and says it was being written.
        npy::write_float(out, &logits)?;
        eprintln!("wrote logits {:?} to {}", logits.shape(), out.display());
    }
    if args.top_k > 0 {
        let classes = logits.len() / n;
        for (i, row) in logits.data().chunks(classes.max(1)).enumerate() {
            let mut idx: Vec<usize> = (0..row.len()).collect();
            // NaN (only with --allow-nonfinite) sorts last.
            idx.sort_by(|&a, &b| {
                let key = |v: T| {
                    let v = v.f64();
                    if v.is_nan() {
                        f64::NEG_INFINITY
                    } else {
                        v
                    }
                };
                key(row[b]).total_cmp(&key(row[a]))
            });
            let top: Vec<String> = idx
                .iter()
                .take(args.top_k)
                .map(|&c| format!("{c} ({:.4})", row[c].f64()))
                .collect();
            println!("sample {i}: {}", top.join(", "));
        }
    }
    Ok(())
}
