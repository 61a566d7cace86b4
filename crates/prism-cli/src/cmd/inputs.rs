//! Model inputs from `.npy` files: the single positional INPUT, or `--input NAME=FILE.npy` per
//! graph input (token ids, attention masks, several float tensors). Integer and boolean inputs
//! are read as integers and carried exactly in the computation type (an id beyond 2²⁴ needs
//! `--dtype f64`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use prism_model::batch::InputValues;
use prism_model::{Float, Model, NonFinite, NonFiniteReport, Tensor};
use prism_store::npy;

/// The `--input NAME=FILE.npy` option, shared by the commands that run a model on arrays.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct NamedInputs {
    /// A graph input by name: `--input input_ids=ids.npy --input attention_mask=mask.npy`
    /// (repeatable; every input of the model, first axis = samples; integer inputs as int64 or
    /// int32 .npy). Replaces the positional INPUT for models with several inputs.
    #[arg(long = "input", value_name = "NAME=FILE.npy")]
    pub named: Vec<String>,
}

/// The `--allow-nonfinite` flag of the commands that run a model.
#[derive(clap::Args, Debug, Clone, Copy, Default)]
pub struct NonFiniteArgs {
    /// Accept inputs holding NaN or ±Inf, and non-finite results. By default they are an
    /// error (they usually mean broken preprocessing) naming the samples, or the node where a
    /// result stopped being finite.
    #[arg(long)]
    pub allow_nonfinite: bool,
}

impl NonFiniteArgs {
    /// Sets the model's policy from the flag.
    pub fn apply(&self, model: &Model) {
        model.set_nonfinite(NonFinite::allow_if(self.allow_nonfinite));
    }

    /// A warning on stderr when `t` (what `what` names) holds non-finite values, which only
    /// --allow-nonfinite lets through.
    pub fn warn<T: Float>(&self, what: &str, t: &Tensor<T>) {
        if let Some(report) = NonFiniteReport::scan(t, 0) {
            eprintln!("warning: {what} holds {report} (--allow-nonfinite)");
        }
    }

    /// An error when `x` (read from `path`) holds non-finite values, unless allowed.
    pub fn check<T: Float>(&self, path: &Path, x: &Tensor<T>) -> anyhow::Result<()> {
        if self.allow_nonfinite {
            return Ok(());
        }
        if let Some(report) = NonFiniteReport::scan(x, 0) {
            bail!(
                "{} holds {report}; check the preprocessing (a division by a zero standard \
                 deviation?), or pass --allow-nonfinite",
                path.display()
            );
        }
        Ok(())
    }
}

/// Reads one array for graph input `index` of `model`, checking it fits the declared type.
fn read_one<T: Float>(model: &Model, index: usize, path: &Path) -> anyhow::Result<Tensor<T>> {
    let g = model.graph();
    let name = &g.value(g.inputs[index]).name;
    let ty = g.input_type(index);
    let values = if ty.is_integer() {
        let ints = npy::read_i64(path)
            .with_context(|| format!("input '{name}' ({ty}) from {}", path.display()))?;
        InputValues::Ints {
            shape: ints.shape().to_vec(),
            data: ints.data().to_vec(),
        }
    } else {
        InputValues::Float(
            npy::read_float(path)
                .with_context(|| format!("input '{name}' from {}", path.display()))?,
        )
    };
    model
        .input_tensor(index, values)
        .with_context(|| format!("{}", path.display()))
}

/// The model's inputs in graph order, from the positional file or the named ones.
pub fn read_inputs<T: Float>(
    model: &Model,
    positional: Option<&Path>,
    named: &NamedInputs,
) -> anyhow::Result<Vec<Tensor<T>>> {
    let g = model.graph();
    let describe = || {
        (0..g.inputs.len())
            .map(|i| format!("{} ({})", g.value(g.inputs[i]).name, g.input_type(i)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let inputs = match (positional, named.named.is_empty()) {
        (Some(_), false) => {
            bail!("give either the positional INPUT or --input NAME=FILE, not both")
        }
        (None, true) => bail!(
            "no input given: pass INPUT.npy, or --input NAME=FILE.npy for each of the model's \
             inputs: {}",
            describe()
        ),
        (Some(p), true) => {
            if g.inputs.len() != 1 {
                bail!(
                    "the model has {} inputs ({}): give each with --input NAME=FILE.npy",
                    g.inputs.len(),
                    describe()
                );
            }
            vec![read_one(model, 0, p)?]
        }
        (None, false) => {
            let mut files: Vec<Option<PathBuf>> = vec![None; g.inputs.len()];
            for spec in &named.named {
                let Some((name, file)) = spec.split_once('=') else {
                    bail!("--input {spec:?}: expected NAME=FILE.npy");
                };
                let i = g.input_index(name).with_context(|| {
                    format!(
                        "--input {name}: the model has no input '{name}'; its inputs: {}",
                        describe()
                    )
                })?;
                if files[i].replace(PathBuf::from(file)).is_some() {
                    bail!("--input {name} is given twice");
                }
            }
            let missing: Vec<&str> = files
                .iter()
                .enumerate()
                .filter(|(_, f)| f.is_none())
                .map(|(i, _)| g.value(g.inputs[i]).name.as_str())
                .collect();
            if !missing.is_empty() {
                bail!(
                    "missing --input for {}: the model's inputs are {}",
                    missing.join(", "),
                    describe()
                );
            }
            files
                .iter()
                .enumerate()
                .filter_map(|(i, f)| f.as_deref().map(|f| read_one(model, i, f)))
                .collect::<anyhow::Result<_>>()?
        }
    };
    let n = inputs[0].shape()[0];
    if let Some((i, x)) = inputs.iter().enumerate().find(|(_, x)| x.shape()[0] != n) {
        bail!(
            "input '{}' has {} samples, input '{}' has {n}: every input needs the same first axis",
            g.value(g.inputs[i]).name,
            x.shape()[0],
            g.value(g.inputs[0]).name
        );
    }
    Ok(inputs)
}
