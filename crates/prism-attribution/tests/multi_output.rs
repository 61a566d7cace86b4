//! Relevance at the outputs of a node with several outputs (Split's pieces) flows back to its
//! input: the pieces' gradients concatenated, zeros where a piece received none.

use std::path::Path;

use prism_attribution::propagate::propagate;
use prism_attribution::rule::Rule;
use prism_model::{Keep, Model, Tensor};

fn split_model() -> Model {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/ops/structure/split_attr_opset11.onnx");
    Model::load(&p).expect("fixture loads")
}

#[test]
fn relevance_at_one_piece_of_a_split_reaches_only_its_slice() {
    // x [2, 6] split along axis 1 into pieces of 1, 2 and 3 columns; seed only the middle one.
    let model = split_model();
    let x = Tensor::new(vec![2, 6], (0..12).map(|v| v as f64).collect()).unwrap();
    let exec = model.executor::<f64>(&[vec![2, 6]]).unwrap();
    let graph = exec.graph().clone();
    let mut trace = exec.run(vec![x], &Keep::NodeInputs).unwrap();
    let seed = Tensor::new(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    let rules = vec![None; graph.nodes.len()];
    let r = propagate(
        &graph,
        &exec,
        &mut trace,
        &rules,
        vec![(graph.outputs[1], seed)],
    )
    .unwrap();
    assert_eq!(
        r[0].data(),
        &[0.0, 1.0, 2.0, 0.0, 0.0, 0.0, 0.0, 3.0, 4.0, 0.0, 0.0, 0.0]
    );
}

#[test]
fn relevance_at_several_pieces_sums_to_the_seeds() {
    let model = split_model();
    let x = Tensor::new(vec![2, 6], (0..12).map(|v| v as f64 + 1.0).collect()).unwrap();
    let exec = model.executor::<f64>(&[vec![2, 6]]).unwrap();
    let graph = exec.graph().clone();
    let mut trace = exec.run(vec![x], &Keep::NodeInputs).unwrap();
    let seeds = graph
        .outputs
        .iter()
        .zip([1usize, 2, 3])
        .map(|(&o, w)| (o, Tensor::new(vec![2, w], vec![w as f64; 2 * w]).unwrap()))
        .collect();
    let rules = vec![None; graph.nodes.len()];
    let r = propagate(&graph, &exec, &mut trace, &rules, seeds).unwrap();
    assert_eq!(
        r[0].data(),
        &[1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 1.0, 2.0, 2.0, 3.0, 3.0, 3.0]
    );
}

#[test]
fn a_single_output_rule_on_a_split_with_several_relevant_pieces_is_an_error() {
    let model = split_model();
    let x = Tensor::new(vec![2, 6], vec![1.0; 12]).unwrap();
    let exec = model.executor::<f64>(&[vec![2, 6]]).unwrap();
    let graph = exec.graph().clone();
    let mut trace = exec.run(vec![x], &Keep::NodeInputs).unwrap();
    let seeds = graph
        .outputs
        .iter()
        .zip([1usize, 2, 3])
        .map(|(&o, w)| (o, Tensor::new(vec![2, w], vec![1.0; 2 * w]).unwrap()))
        .collect();
    let rules = vec![Some(Rule::ReluDeconvNet); graph.nodes.len()];
    let e = propagate(&graph, &exec, &mut trace, &rules, seeds)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("several of its outputs") && e.contains("relu-deconvnet"),
        "{e}"
    );
}

/// On a node that only moves values (Split), the pass rule and the z-rule are its gradient: the
/// pieces' relevance is concatenated back.
#[test]
fn pass_and_norm_on_a_split_concatenate_the_pieces() {
    let model = split_model();
    let x = Tensor::new(vec![2, 6], vec![1.0; 12]).unwrap();
    let exec = model.executor::<f64>(&[vec![2, 6]]).unwrap();
    let graph = exec.graph().clone();
    for rule in [
        Rule::Pass,
        Rule::Norm {
            stabilizer: prism_attribution::Stabilizer::eps(0.0),
        },
    ] {
        let mut trace = exec.run(vec![x.clone()], &Keep::NodeInputs).unwrap();
        let seeds = graph
            .outputs
            .iter()
            .zip([1usize, 2, 3])
            .map(|(&o, w)| (o, Tensor::new(vec![2, w], vec![w as f64; 2 * w]).unwrap()))
            .collect();
        let rules = vec![Some(rule.clone()); graph.nodes.len()];
        let r = propagate(&graph, &exec, &mut trace, &rules, seeds).unwrap();
        let total: f64 = r[0].data().iter().sum();
        assert!(
            (total - 2.0 * (1.0 + 4.0 + 9.0)).abs() < 1e-12,
            "{rule:?}: {total}"
        );
    }
}
