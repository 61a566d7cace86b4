//! `prism inspect`: a readable summary of an ONNX model.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use prism_model::{Dim, Model};

/// Summarise an ONNX model: inputs and outputs with shapes, nodes by type, parameter count,
/// and (with --shapes) every node with its input and output shapes.
///
/// Shapes are computed by specialising the graph to a concrete input shape: symbolic batch
/// dimensions take --batch (default 1); other symbolic dimensions need --input-shape.
///
/// Examples:
///
///   prism inspect resnet50.onnx
///
///   prism inspect resnet50.onnx --shapes --batch 8
///
///   prism inspect model.onnx --input-shape 1,3,299,299
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct InspectArgs {
    /// The ONNX model file.
    pub model: PathBuf,
    /// List every node with its operator and input/output shapes.
    #[arg(long)]
    pub shapes: bool,
    /// Batch size used for symbolic batch dimensions.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Full input shape (comma-separated), for models with other symbolic dimensions.
    #[arg(long, value_name = "D0,D1,...", value_delimiter = ',')]
    pub input_shape: Option<Vec<usize>>,
}

pub(crate) fn fmt_shape(s: &[usize]) -> String {
    format!(
        "[{}]",
        s.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The concrete input shapes for a model: `explicit` for a single-input model, otherwise the
/// declared shapes with symbolic batch dimensions set to `batch`.
pub(crate) fn concrete_input_shapes(
    model: &Model,
    batch: usize,
    explicit: Option<&[usize]>,
) -> anyhow::Result<Vec<Vec<usize>>> {
    let g = model.graph();
    if let Some(s) = explicit {
        if g.inputs.len() != 1 {
            bail!(
                "--input-shape applies to single-input models; this one has {} inputs",
                g.inputs.len()
            );
        }
        return Ok(vec![s.to_vec()]);
    }
    (0..g.inputs.len())
        .map(|i| {
            let dims = g.input_dims(i);
            dims.iter()
                .enumerate()
                .map(|(k, d)| match d {
                    Dim::Fixed(v) => Ok(*v),
                    Dim::Symbolic(_) if k == 0 => Ok(batch),
                    Dim::Symbolic(s) => bail!(
                        "input '{}' has a symbolic dimension '{s}' at position {k}; give the full shape with --input-shape",
                        g.value(g.inputs[i]).name
                    ),
                })
                .collect()
        })
        .collect()
}

pub fn run(args: &InspectArgs) -> anyhow::Result<()> {
    let model =
        Model::load(&args.model).with_context(|| format!("loading {}", args.model.display()))?;
    let g = model.graph();
    println!("Model: {}", args.model.display());
    println!(
        "  opset {}, {} nodes, {} parameters",
        g.opset,
        g.nodes.len(),
        group_digits(g.parameter_count())
    );
    println!("Inputs:");
    for (i, id) in g.inputs.iter().enumerate() {
        let dims: Vec<String> = g.input_dims(i).iter().map(ToString::to_string).collect();
        println!(
            "  {}  [{}]  {}",
            g.value(*id).name,
            dims.join(", "),
            g.input_type(i)
        );
    }
    let shapes = concrete_input_shapes(&model, args.batch, args.input_shape.as_deref())?;
    let sg = model.specialize(&shapes).context("inferring shapes")?;
    println!(
        "Outputs (for input shape{} {}):",
        if shapes.len() > 1 { "s" } else { "" },
        shapes
            .iter()
            .map(|s| fmt_shape(s))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for id in &sg.outputs {
        println!(
            "  {}  {}",
            sg.value(*id).name,
            fmt_shape(sg.shape(*id).unwrap_or_default())
        );
    }
    let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
    for n in &g.nodes {
        *by_type.entry(n.op.type_name()).or_default() += 1;
    }
    println!("Nodes by type (as in the file):");
    let line: Vec<String> = by_type.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("  {}", line.join(", "));
    println!(
        "After folding shape arithmetic and constants: {} compute nodes",
        sg.nodes.len()
    );
    if args.shapes {
        println!("{:<40} {:<20} {:<40} output", "node", "op", "inputs");
        for n in &sg.nodes {
            let ins: Vec<String> = n
                .inputs
                .iter()
                .flatten()
                .filter(|v| sg.constant(**v).is_none())
                .map(|v| fmt_shape(sg.shape(*v).unwrap_or_default()))
                .collect();
            let outs: Vec<String> = n
                .outputs
                .iter()
                .map(|v| fmt_shape(sg.shape(*v).unwrap_or_default()))
                .collect();
            println!(
                "{:<40} {:<20} {:<40} {}",
                n.name,
                n.op.type_name(),
                ins.join(" "),
                outs.join(" ")
            );
        }
    }
    Ok(())
}

fn group_digits(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
