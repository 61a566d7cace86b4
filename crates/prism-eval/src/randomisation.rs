//! Model-parameter randomisation test (MPRT; Adebayo et al. 2018, *Sanity checks for saliency
//! maps*, NeurIPS).
//!
//! The weights (and bias) of one parameterised layer at a time are re-drawn, the attributions
//! recomputed for the same targets, and each randomised map compared with the original one
//! (Spearman rank correlation, SSIM, top-k intersection; see [`crate::similarity`]). An
//! attribution that depends on what the model learned decorrelates as layers are randomised.
//!
//! * **Cascading** (top-down): layers are randomised from the output towards the input, each step
//!   keeping the earlier randomisations (Adebayo's main test, Quantus' `top_down`).
//! * **Independent**: one layer at a time, all others original.
//! * **Bottom-up** cascading: from the input towards the output (Quantus' `bottom_up`).
//!
//! Re-drawn values follow PyTorch's default initialisation of `Conv`/`Linear` layers,
//! `U(−1/√fan_in, 1/√fan_in)` for the weights and the bias, from a SplitMix64 stream per layer
//! (layer index, 3) under the seed, so a run is reproducible.

use std::path::PathBuf;
use std::sync::Arc;

use prism_model::{Constant, Graph, Model, Op, OpGroup, Source, Tensor, ValueId};
use serde::Serialize;

use crate::error::{EvalError, Result};
use crate::rng::{purpose, SplitMix64};

/// How layers are randomised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Output to input, cumulative.
    Cascading,
    /// One layer at a time.
    Independent,
    /// Input to output, cumulative.
    BottomUp,
}

impl Mode {
    pub fn parse(s: &str) -> Result<Mode> {
        Ok(match s {
            "cascading" | "top-down" => Mode::Cascading,
            "independent" => Mode::Independent,
            "bottom-up" => Mode::BottomUp,
            _ => {
                return Err(EvalError::Invalid(format!(
                    "unknown randomisation '{s}'; use cascading, independent or bottom-up"
                )))
            }
        })
    }

    /// A list of modes; `none` anywhere in it means no randomisation test.
    pub fn parse_list<S: AsRef<str>>(modes: &[S]) -> Result<Vec<Mode>> {
        if modes.iter().any(|m| m.as_ref().trim() == "none") {
            return Ok(Vec::new());
        }
        modes
            .iter()
            .map(|m| Mode::parse(m.as_ref().trim()))
            .collect()
    }

    pub fn name(&self) -> &'static str {
        match self {
            Mode::Cascading => "cascading",
            Mode::Independent => "independent",
            Mode::BottomUp => "bottom-up",
        }
    }
}

/// A layer with parameters: a convolution or dense node with a constant weight.
#[derive(Clone, Debug, Serialize)]
pub struct Layer {
    /// Node name in the ONNX file.
    pub node: String,
    pub op: &'static str,
    #[serde(skip)]
    pub weight: ValueId,
    #[serde(skip)]
    pub bias: Option<ValueId>,
    /// Fan-in used for the re-draw bound.
    pub fan_in: usize,
}

/// The parameterised layers of a (loaded) graph in topological order.
pub fn parameter_layers(graph: &Graph) -> Vec<Layer> {
    let is_float = |v: ValueId| {
        graph
            .constant(v)
            .is_some_and(|c| !matches!(c, Constant::I64(_)))
    };
    graph
        .nodes
        .iter()
        .filter_map(|n| {
            let group = n.op.group();
            if group != OpGroup::Convolution && group != OpGroup::Dense {
                return None;
            }
            // MatMul may carry its parameter on either side.
            let (wi, bi) = match n.op {
                Op::MatMul if n.input(0).is_some_and(is_float) => (0, None),
                Op::MatMul => (1, None),
                _ => (1, Some(2)),
            };
            let weight = n.input(wi).filter(|&v| is_float(v))?;
            let shape = graph.constant(weight)?.shape().to_vec();
            let fan_in = match (&n.op, shape.as_slice()) {
                (Op::Gemm { trans_b: true, .. }, [_, k]) => *k,
                (Op::Gemm { .. }, [k, _]) => *k,
                (Op::MatMul, s) if wi == 1 && s.len() >= 2 => s[s.len() - 2],
                (Op::MatMul, s) if s.len() >= 2 => s[s.len() - 1],
                (_, s) if !s.is_empty() && s[0] > 0 => s.iter().product::<usize>() / s[0],
                _ => 1,
            };
            Some(Layer {
                node: n.name.clone(),
                op: n.op.type_name(),
                weight,
                bias: bi.and_then(|b| n.input(b)).filter(|&v| is_float(v)),
                fan_in: fan_in.max(1),
            })
        })
        .collect()
}

/// Replaces layer `layer`'s weight and bias in `graph` by fresh draws.
pub fn randomize_layer(graph: &mut Graph, layer: &Layer, index: usize, seed: u64) {
    let bound = 1.0 / (layer.fan_in as f64).sqrt();
    let mut rng = SplitMix64::stream(seed, index as u64, purpose::WEIGHTS);
    for v in std::iter::once(layer.weight).chain(layer.bias) {
        let Some(c) = graph.constant(v) else { continue };
        // drawn in place: the new weights have the old ones' shape by construction
        let mut draws = Tensor::<f64>::zeros(c.shape());
        for d in draws.data_mut() {
            *d = bound * (2.0 * rng.uniform() - 1.0);
        }
        let new = match c {
            Constant::F64(_) => Constant::F64(Arc::new(draws)),
            _ => Constant::f32(draws.map(|&d| d as f32)),
        };
        graph.values[v.0].source = Source::Constant(new);
    }
}

/// The sequence of randomised models for `mode`: for each step, the layer randomised last (its
/// index in `layers`) and the model.
pub fn randomised_models<'a>(
    model: &'a Model,
    layers: &'a [Layer],
    mode: Mode,
    seed: u64,
) -> impl Iterator<Item = (usize, Model)> + 'a {
    let order: Vec<usize> = match mode {
        Mode::Cascading => (0..layers.len()).rev().collect(),
        Mode::Independent | Mode::BottomUp => (0..layers.len()).collect(),
    };
    let mut cascade = model.graph().clone();
    order.into_iter().map(move |i| {
        let g = if mode == Mode::Independent {
            let mut g = model.graph().clone();
            randomize_layer(&mut g, &layers[i], i, seed);
            g
        } else {
            randomize_layer(&mut cascade, &layers[i], i, seed);
            cascade.clone()
        };
        (i, Model::from_graph(g, PathBuf::from(model.path())))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Model {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/eval/eval_cnn.onnx");
        Model::load(&p).expect("fixture")
    }

    fn values(g: &Graph, v: ValueId) -> Vec<f64> {
        g.constant(v).expect("constant").to_f64().into_data()
    }

    #[test]
    fn finds_convolutions_and_dense_layers_with_their_fan_in() {
        let m = fixture();
        let layers = parameter_layers(m.graph());
        let ops: Vec<&str> = layers.iter().map(|l| l.op).collect();
        assert_eq!(ops, ["Conv", "Conv", "Conv", "Gemm"]);
        let fan: Vec<usize> = layers.iter().map(|l| l.fan_in).collect();
        assert_eq!(fan, [3 * 9, 8 * 9, 16 * 9, 16]);
        assert!(layers.iter().all(|l| l.bias.is_some()));
    }

    #[test]
    fn redraw_is_seeded_bounded_and_touches_only_its_layer() {
        let m = fixture();
        let layers = parameter_layers(m.graph());
        let mut a = m.graph().clone();
        let mut b = m.graph().clone();
        randomize_layer(&mut a, &layers[1], 1, 5);
        randomize_layer(&mut b, &layers[1], 1, 5);
        let w = layers[1].weight;
        assert_eq!(values(&a, w), values(&b, w));
        assert_ne!(values(&a, w), values(m.graph(), w));
        let bound = 1.0 / (layers[1].fan_in as f64).sqrt();
        assert!(values(&a, w).iter().all(|v| v.abs() <= bound));
        assert_eq!(
            a.constant(w).map(|c| c.shape().to_vec()),
            m.graph().constant(w).map(|c| c.shape().to_vec())
        );
        let w0 = layers[0].weight;
        assert_eq!(values(&a, w0), values(m.graph(), w0));
        let mut c = m.graph().clone();
        randomize_layer(&mut c, &layers[1], 1, 6);
        assert_ne!(values(&a, w), values(&c, w));
    }

    #[test]
    fn cascading_goes_top_down_and_keeps_earlier_draws() {
        let m = fixture();
        let layers = parameter_layers(m.graph());
        let steps: Vec<(usize, Model)> =
            randomised_models(&m, &layers, Mode::Cascading, 0).collect();
        let order: Vec<usize> = steps.iter().map(|s| s.0).collect();
        assert_eq!(order, [3, 2, 1, 0]);
        let last = steps[3].1.graph();
        for l in &layers {
            assert_ne!(
                values(last, l.weight),
                values(m.graph(), l.weight),
                "{}",
                l.node
            );
        }
        let indep: Vec<(usize, Model)> =
            randomised_models(&m, &layers, Mode::Independent, 0).collect();
        let g = indep[3].1.graph();
        assert_eq!(
            values(g, layers[0].weight),
            values(m.graph(), layers[0].weight)
        );
    }
}
