//! `prism explain`: attributions (LRP, gradients, occlusion) for a batch of inputs.

use std::path::PathBuf;

use anyhow::Context;
use prism_attribution::{AttributeAt, Explainer, Target};
use prism_model::{Float, Model, Tensor};
use prism_store::npy;

use super::method::MethodArgs;
use super::predict::{chunks, sample_progress, DTypeArg};

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
/// Token models and other models with several inputs take each with --input NAME=FILE.npy
/// (integer ids and masks as int64/int32 .npy). Their relevance is read off the output of the
/// embedding lookup (the Gather from the largest constant table by the token ids) and summed
/// over the hidden dimension: one value per token, written as N × tokens. --attribute-at NAME
/// reads it off another tensor or node instead (its full shape; `prism inspect --nodes` lists
/// the names), for image models too. These take the gradient or an LRP composite.
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
///
///   prism explain bert.onnx --input input_ids=ids.npy --input attention_mask=mask.npy -o tokens.npy --composite epsilon-plus
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ExplainArgs {
    /// The ONNX model file.
    pub model: PathBuf,
    /// Input array (.npy), first axis = samples (single-input models).
    pub input: Option<PathBuf>,
    #[command(flatten)]
    pub inputs: super::inputs::NamedInputs,
    /// Read the relevance off this tensor or node (default: the float input, or a token
    /// model's embedding lookup, per token).
    #[arg(long, value_name = "NAME")]
    pub attribute_at: Option<String>,
    /// Where to write the relevance (.npy, the input's shape, in --dtype).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Target class: a class index, `predicted` (arg-max, default) or a .npy of per-sample labels.
    #[arg(long, default_value = "predicted")]
    pub target: String,
    /// Computation precision.
    #[arg(long, value_enum, default_value_t = DTypeArg::F32)]
    pub dtype: DTypeArg,
    #[command(flatten)]
    pub method: MethodArgs,
    /// Samples per batch.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Print the rule each node gets, then continue.
    #[arg(long)]
    pub show_rules: bool,
}

pub fn run(args: &ExplainArgs) -> anyhow::Result<()> {
    match args.dtype {
        DTypeArg::F32 => run_typed::<f32>(args),
        DTypeArg::F64 => run_typed::<f64>(args),
    }
}

fn run_typed<T: Float>(args: &ExplainArgs) -> anyhow::Result<()> {
    let (_, method) = args.method.build()?;
    let model =
        Model::load(&args.model).with_context(|| format!("loading {}", args.model.display()))?;
    let g = model.graph();
    let plain = g.inputs.len() == 1 && !g.input_type(0).is_integer();
    if !plain || args.attribute_at.is_some() {
        return run_at::<T>(args, &model, method);
    }
    let mut x: Vec<Tensor<T>> =
        super::inputs::read_inputs(&model, args.input.as_deref(), &args.inputs)?;
    let x = x.remove(0);
    let n = x.shape()[0];
    let target = super::method::parse_target(&args.target, n)?;
    let mut explainer = Explainer::new(&model).with_canonizers(method.canonize);
    if let Some(c) = method.composite {
        explainer = explainer.with_composite(c);
    }
    let (seed, attributor) = (method.seed, method.attributor);
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

/// Attribution at a tensor (`--attribute-at`, or a token model's embedding lookup) for models
/// with any inputs.
fn run_at<T: Float>(
    args: &ExplainArgs,
    model: &Model,
    method: prism_attribution::Method,
) -> anyhow::Result<()> {
    let inputs: Vec<Tensor<T>> =
        super::inputs::read_inputs(model, args.input.as_deref(), &args.inputs)?;
    let n = inputs[0].shape()[0];
    let target = super::method::parse_target(&args.target, n)?;
    let mut explainer = Explainer::new(model).with_canonizers(method.canonize);
    if let Some(c) = method.composite {
        explainer = explainer.with_composite(c);
    }
    let at = match &args.attribute_at {
        Some(name) => AttributeAt::Named(name.clone()),
        None => AttributeAt::Auto,
    };
    if args.show_rules {
        let shapes: Vec<Vec<usize>> = inputs.iter().map(|x| x.shape().to_vec()).collect();
        for (node, op, rule) in explainer
            .rule_table_for(&shapes)
            .context("assigning rules")?
        {
            println!("{node:<50} {op:<20} {rule}");
        }
    }
    let parts = super::inputs::chunk_inputs(&inputs, args.batch_size);
    let bar = sample_progress(n, parts.len());
    let mut relevance: Vec<T> = Vec::new();
    let mut shape: Vec<usize> = Vec::new();
    let mut at_name = String::new();
    let mut offset = 0;
    for part in parts {
        let k = part[0].shape()[0];
        let t = match &target {
            Target::PerSample(v) => Target::PerSample(v[offset..offset + k].to_vec()),
            other => other.clone(),
        };
        let a = explainer
            .attribute_inputs(part, &at, &t, method.seed, &method.attributor)
            .with_context(|| format!("attributing samples {offset}..{}", offset + k))?;
        let (rel, per_token) = match a.per_token {
            Some(t) => (t, true),
            None => (a.relevance, false),
        };
        let per = rel.len() / k.max(1);
        for (i, (&cls, r)) in a
            .targets
            .iter()
            .zip(rel.data().chunks(per.max(1)))
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
        shape = rel.shape().to_vec();
        at_name = if per_token {
            format!("{} (per token)", a.at)
        } else {
            a.at
        };
        relevance.extend_from_slice(rel.data());
        offset += k;
        bar.inc(k as u64);
    }
    bar.finish_and_clear();
    shape[0] = n;
    let r = Tensor::new(shape, relevance)?;
    npy::write_float(&args.output, &r)
        .with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!(
        "wrote relevance at {at_name} {:?} to {}",
        r.shape(),
        args.output.display()
    );
    Ok(())
}
