//! The gradient of every operator fixture (tests/fixtures/ops, `grad: true`) against central
//! finite differences of the forward pass, in f64: the vector-Jacobian products that every
//! attribution method builds on, checked for every operator and attribute variant the fixtures
//! cover, at every float input.

#[path = "../../prism-model/tests/common/op_fixture.rs"]
mod op_fixture;

use op_fixture::cases;
use prism_attribution::propagate::propagate;
use prism_model::{Executor, Keep, Model, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Σ_i ⟨c_i, y_i(x)⟩ over the graph outputs.
fn objective(exec: &Executor<f64>, inputs: &[Tensor<f64>], cot: &[Tensor<f64>]) -> f64 {
    let t = exec.run(inputs.to_vec(), &Keep::Outputs).expect("forward");
    t.outputs
        .iter()
        .zip(cot)
        .map(|(y, c)| {
            y.data()
                .iter()
                .zip(c.data())
                .map(|(a, b)| a * b)
                .sum::<f64>()
        })
        .sum()
}

#[test]
fn every_operator_gradient_matches_finite_differences() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in cases().into_iter().filter(|c| c.grad) {
        let model = Model::load(&case.onnx).unwrap_or_else(|e| panic!("{}: {e}", case.id));
        let inputs = case.read_inputs::<f64>();
        let shapes: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape().to_vec()).collect();
        let exec = model
            .executor::<f64>(&shapes)
            .unwrap_or_else(|e| panic!("{}: {e}", case.id));
        let graph = exec.graph().clone();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut trace = exec
            .run(inputs.clone(), &Keep::NodeInputs)
            .unwrap_or_else(|e| panic!("{}: {e}", case.id));
        let cot: Vec<Tensor<f64>> = trace
            .outputs
            .iter()
            .map(|y| {
                let data = (0..y.len()).map(|_| rng.random_range(-1.0..1.0)).collect();
                Tensor::new(y.shape().to_vec(), data).expect("shape")
            })
            .collect();
        let seeds = graph.outputs.iter().copied().zip(cot.clone()).collect();
        let rules = vec![None; graph.nodes.len()];
        let grads = match propagate(&graph, &exec, &mut trace, &rules, seeds) {
            Ok(g) => g,
            Err(e) => {
                failures.push(format!("{}: {e}", case.id));
                continue;
            }
        };
        for (i, ((_, is_int), g)) in case.inputs.iter().zip(&grads).enumerate() {
            if *is_int {
                continue;
            }
            let n = inputs[i].len();
            let coords: Vec<usize> = if n <= 32 {
                (0..n).collect()
            } else {
                (0..32).map(|_| rng.random_range(0..n)).collect()
            };
            let gmax = g.data().iter().fold(0f64, |m, v| m.max(v.abs()));
            let mut worst = 0f64;
            for &k in &coords {
                let x0 = inputs[i].data()[k];
                let h = 1e-5 * x0.abs().max(1.0);
                let mut plus = inputs.clone();
                plus[i].data_mut()[k] = x0 + h;
                let mut minus = inputs.clone();
                minus[i].data_mut()[k] = x0 - h;
                let fd =
                    (objective(&exec, &plus, &cot) - objective(&exec, &minus, &cot)) / (2.0 * h);
                worst = worst.max((fd - g.data()[k]).abs());
            }
            checked += 1;
            let tol = 1e-5 * (1.0 + gmax);
            eprintln!(
                "{} input {i}: max |fd − vjp| {worst:.2e} (tol {tol:.1e})",
                case.id
            );
            if worst.is_nan() || worst > tol {
                failures.push(format!(
                    "{} input {i}: gradient differs from finite differences by {worst:e} (max |g| {gmax:e})",
                    case.id
                ));
            }
        }
    }
    assert!(checked > 0, "no gradient was checked");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
