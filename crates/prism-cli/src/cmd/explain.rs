//! `prism explain`: attributions (LRP, gradients, occlusion) for a batch of inputs.

use std::path::PathBuf;

use anyhow::Context;
use prism_attribution::{AttributeAt, Explainer};
use prism_model::{Float, Flow, Model, Tensor};
use prism_store::{npy, record};

use super::method::MethodArgs;
use super::predict::{sample_progress, DTypeArg};

/// Explain a model's decisions: relevance (or gradient) of each input for a target class.
///
/// With --composite, LRP rules are assigned to the graph's nodes by one of Zennit's composites
/// (epsilon-gamma-box, epsilon-plus, epsilon-plus-flat, epsilon-alpha2-beta1,
/// epsilon-alpha2-beta1-flat, excitation-backprop, deconvnet, guided-backprop, beta-smooth), by
/// a transformer composite (attn-lrp: AttnLRP; cp-lrp: CP-LRP; as LXT computes them, ε = 0;
/// --conv-composite gives a convolutional stem a CNN composite; docs/transformers.md) or by
/// your own (--composite-file, see docs/composites.md); iNNvestigate's analyzers are built-ins
/// too (lrp-z, lrp-sequential-preset-a/-b[-flat], deep-taylor[-bounded]). The attributor drives
/// the backward pass: gradient (default), input-x-gradient, smoothgrad, smoothgrad-squared,
/// vargrad, integrated-gradients, occlusion, or random (a baseline). Canonizers (merging
/// BatchNorm into the layer before it, explicit residual sums) are on unless --no-canonize.
/// Every method is listed with its reference at the end of `prism explain --help`.
///
/// Class activation maps (pytorch-grad-cam 1.5's definitions, docs/methods.md) weigh the
/// activation maps of a layer (--layer NODE; default: the deepest convolution) and upsample
/// the sum to the input (N × 1 × H × W, min-max normalised to [0, 1]):
///   grad-cam            channel weights = mean gradient (Selvaraju et al. 2017)
///   grad-cam-plus-plus  weights from second- and third-order gradient terms (Chattopadhay et al. 2018)
///   xgrad-cam           weights = Σ gradient · activation / Σ activation (Fu et al. 2020)
///   layer-cam           ReLU(gradient) ⊙ activation, per position (Jiang et al. 2021)
///   eigen-cam           first principal component of the activations (Muhammad & Yeasin 2020)
///   score-cam           softmax of the scores of the input masked by each map (Wang et al. 2020)
///   ablation-cam        score drop when a channel is ablated (Desai & Ramaswamy 2020)
///
/// INPUT is a float32/float64 .npy array, already preprocessed, first axis = samples. The
/// relevance is written with the input's shape.
///
/// Token models and other models with several inputs take each with --input NAME=FILE.npy
/// (integer ids and masks as int64/int32 .npy). Their relevance is read off the output of the
/// embedding lookup (the Gather from the largest constant table by the token ids), written as
/// N × tokens × hidden; --reduce-hidden sum writes one value per token (N × tokens).
/// --attribute-at NAME reads it off another tensor or node instead (its full shape; `prism
/// inspect --shapes` lists the names), for image models too. These take the gradient or an LRP
/// composite. A language model's output has a position axis (N × tokens × vocabulary): name
/// the position with the target (--target last, the predicted next token after the last
/// position; last:ID; POS:ID). LXT's convention, `logit.backward()`, is --seed-mode logit.
///
/// Concepts (docs/concepts.md): --record NODE_GLOB keeps the relevance and activation at those
/// nodes' outputs, per channel (--record-mode channels, rows × C) or whole (maps), with each
/// row's top channels and their shares; they are written to the folder OUTPUT-STEM.record/
/// beside the output (index.json names the files). --condition 'LAYER:ch,ch' conditions the
/// relevance on channels of a layer (Concept Relevance Propagation, as zennit-crp): only those
/// channels pass relevance on at LAYER's output; repeat it for several conditions (each sample
/// then gives one row per condition, n·K + k). With --condition the initial relevance is the
/// target's logit (zennit-crp's), unless --seed-mode says otherwise.
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
///   prism explain model.onnx x.npy -o r.npy --attributor integrated-gradients --baseline blur:3 --target 3-5
///
///   prism explain model.onnx x.npy -o r.npy --attributor vargrad --absolute-noise --noise-level 0.2
///
///   prism explain model.onnx x.npy -o r.npy --composite lrp-sequential-preset-a-flat
///
///   prism explain bert.onnx --input input_ids=ids.npy --input attention_mask=mask.npy -o r.npy --composite attn-lrp --seed-mode logit
///
///   prism explain gpt2.onnx --input input_ids=ids.npy -o r.npy --composite cp-lrp --target last --reduce-hidden sum
///
///   prism explain vit.onnx images.npy -o r.npy --composite attn-lrp --conv-composite epsilon-gamma-box --low -1 --high 1
///
///   prism explain vgg16.onnx x.npy -o r.npy --composite epsilon-plus-flat --record '/features/*/Conv'
///
///   prism explain resnet50.onnx x.npy -o cam.npy --attributor grad-cam --layer /layer4/layer4.2/relu_2/Relu
///
///   prism explain vgg16.onnx x.npy -o r.npy --composite epsilon-plus-flat --target 3 --condition '/features/features.28/Conv:12' --condition '/features/features.28/Conv:40,41'
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
    /// Target class: a class index, `predicted` (arg-max, default) or a .npy of per-sample
    /// labels; a contrast `A-B` or `predicted-B` (seed one-hot(A) − one-hot(B); with
    /// --seed-mode logit, y_A at A and −y_B at B, so the seed sums to y_A − y_B); for a
    /// single-logit model (output N × 1), `negative` (seed −1: evidence for the negative
    /// class) or `sign` (seed sign(y) per sample). For outputs with a position axis
    /// (N × positions × classes, a language model's logits): `last` (the arg-max at the last
    /// position), `last:K`, `POS:K`, `POS:predicted` (POS negative from the end), or a .npy of
    /// N × 2 (position, class) rows.
    #[arg(long, default_value = "predicted", allow_hyphen_values = true)]
    pub target: String,
    /// An N × outputs float array replacing the one-hot seed (any initial relevance; the
    /// output's shape, finite values). Excludes --target.
    #[arg(long, value_name = "SEEDS.npy", conflicts_with = "target")]
    pub seed_file: Option<PathBuf>,
    /// A token model's relevance at its embedding lookup: `none` keeps N × tokens × hidden,
    /// `sum` sums over the hidden dimension (one value per token, N × tokens).
    #[arg(long, value_enum, default_value_t = ReduceHidden::None)]
    pub reduce_hidden: ReduceHidden,
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
    #[command(flatten)]
    pub record: super::concepts::RecordArgs,
    #[command(flatten)]
    pub conditions: super::concepts::ConditionArgs,
    #[command(flatten)]
    pub nonfinite: super::inputs::NonFiniteArgs,
}

/// `--reduce-hidden`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceHidden {
    None,
    Sum,
}

pub fn run(args: &ExplainArgs) -> anyhow::Result<()> {
    match args.dtype {
        DTypeArg::F32 => run_typed::<f32>(args),
        DTypeArg::F64 => run_typed::<f64>(args),
    }
}

fn run_typed<T: Float>(args: &ExplainArgs) -> anyhow::Result<()> {
    let (_, mut method) = args.method.build()?;
    let concepts = args.conditions.build(args.record.build())?;
    if !concepts.conditions.is_empty() && args.method.seed_mode.is_none() {
        method.seed = prism_attribution::SeedMode::Logit;
    }
    let k_rows = concepts.conditions.len().max(1);
    let model =
        Model::load(&args.model).with_context(|| format!("loading {}", args.model.display()))?;
    args.nonfinite.apply(&model);
    if let prism_attribution::Attributor::Cam { kind, layer } = &method.attributor {
        let layer = match layer {
            Some(l) => l.clone(),
            None => prism_attribution::default_layer(model.graph())?,
        };
        eprintln!("{} at layer {layer}", kind.name());
    }
    let inputs: Vec<Tensor<T>> =
        super::inputs::read_inputs(&model, args.input.as_deref(), &args.inputs)?;
    let n = inputs[0].shape()[0];
    let target = match &args.seed_file {
        Some(f) => super::method::read_seed_file(f, n)?,
        None => super::method::parse_target(&args.target, n)?,
    };
    let mut explainer = Explainer::new(&model)
        .with_canonizers(method.canonize)
        .with_hidden_sum(args.reduce_hidden == ReduceHidden::Sum);
    if let Some(c) = method.composite {
        explainer = explainer.with_composite(c);
    }
    if concepts.is_active() {
        explainer = explainer.with_concepts(concepts.clone());
    }
    let at = args
        .attribute_at
        .as_ref()
        .map(|name| AttributeAt::Named(name.clone()));
    if args.show_rules {
        let shapes: Vec<Vec<usize>> = inputs
            .iter()
            .map(|x| {
                let mut s = x.shape().to_vec();
                s[0] = s[0].min(args.batch_size.max(1));
                s
            })
            .collect();
        for (node, op, rule) in explainer
            .rule_table_for(&shapes)
            .context("assigning rules")?
        {
            println!("{node:<50} {op:<20} {rule}");
        }
    }
    let bar = sample_progress(n, n.div_ceil(args.batch_size.max(1)));
    let explained = explainer
        .explain_batched(
            &inputs,
            at.as_ref(),
            &target,
            method.seed,
            &method.attributor,
            args.batch_size,
            |batch| {
                let k = batch.done.count;
                let rows = batch.relevance.shape().first().copied().unwrap_or(k);
                let per = batch.relevance.len() / rows.max(1);
                for (i, (&cls, r)) in batch
                    .targets
                    .iter()
                    .zip(batch.relevance.data().chunks(per.max(1)))
                    .enumerate()
                {
                    let sum: f64 = r.iter().map(|v| v.f64()).sum();
                    let at = batch
                        .positions
                        .map(|p| format!(" at position {}", p[i]))
                        .unwrap_or_default();
                    let cond = if k_rows > 1 {
                        format!(", condition {}", i % k_rows)
                    } else {
                        String::new()
                    };
                    bar.suspend(|| {
                        println!(
                            "sample {}{cond}: target {cls}{at}, relevance sum {sum:.6}",
                            batch.done.offset + i / k_rows
                        )
                    });
                }
                bar.inc(k as u64);
                Flow::Continue
            },
        )
        .context("attributing")?;
    bar.finish_and_clear();
    let r = explained.relevance;
    args.nonfinite.warn("the relevance", &r);
    // The error names the file and says it was being written.
    npy::write_float(&args.output, &r)?;
    if !explained.recorded.is_empty() {
        let dir = record::record_dir(&args.output);
        let tops: Vec<(Vec<u32>, Vec<T>)> = explained
            .recorded
            .iter()
            .map(|rec| rec.top_channels(args.record.record_top_k))
            .collect();
        let nodes: Vec<record::RecordedNode<'_, T>> = explained
            .recorded
            .iter()
            .zip(&tops)
            .map(|(rec, (idx, share))| record::RecordedNode {
                node: &rec.node,
                tensor: &rec.tensor,
                sample_shape: &rec.sample_shape,
                relevance: &rec.relevance,
                activation: &rec.activation,
                top_channels: idx,
                top_share: share,
            })
            .collect();
        let info = record::RecordInfo {
            mode: concepts
                .record
                .as_ref()
                .map_or("channels", |r| r.mode.name())
                .to_string(),
            rows_per_sample: explained.rows_per_sample,
            conditions: args.conditions.condition.clone(),
            exclude_parallel: args.conditions.exclude_parallel,
            top_k: args.record.record_top_k,
        };
        record::write_record(&dir, &info, &nodes)?;
        eprintln!(
            "wrote the relevance and activations at {} node(s) to {}",
            nodes.len(),
            dir.display()
        );
    }
    if explained.rows_per_sample > 1 {
        eprintln!(
            "{n} samples × {} conditions: row n·{} + k is sample n under condition k",
            explained.rows_per_sample, explained.rows_per_sample
        );
    }
    match explained.at {
        None => eprintln!(
            "wrote relevance {:?} to {}",
            r.shape(),
            args.output.display()
        ),
        Some(at) => eprintln!(
            "wrote relevance at {at}{} {:?} to {}",
            if explained.per_token {
                " (per token)"
            } else {
                ""
            },
            r.shape(),
            args.output.display()
        ),
    }
    Ok(())
}
