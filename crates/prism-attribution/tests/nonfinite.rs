//! The release builds' way of naming where a non-finite result began: check the results, and
//! only when one is not finite run again watching every node (debug builds, which run the other
//! tests, watch every run). Fixtures: `scripts/make_nonfinite_fixtures.py`.

use std::path::PathBuf;

use prism_attribution::{Attributor, Explainer, SeedMode, Target};
use prism_model::finite::{set_watch_mode, WatchMode};
use prism_model::{Model, ModelError, NonFinite, Tensor};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/nonfinite")
        .join(name)
}

fn read(name: &str) -> Tensor<f32> {
    prism_store::npy::read_float(&fixture(name)).unwrap()
}

#[test]
fn results_are_traced_back_to_their_node_when_runs_do_not_watch() {
    set_watch_mode(WatchMode::OnFailure);
    let model = Model::load(&fixture("sqrt_head.onnx")).unwrap();

    // Forward: NaN from finite inputs at 'sqrt_head'.
    let err = model
        .predict_batched(&[read("negative.npy")], 3, |_| prism_model::Flow::Continue)
        .unwrap_err();
    match &err {
        ModelError::NonFiniteResult { report, origin, .. } => {
            assert_eq!(report.samples, vec![2], "numbered in the run: {err}");
            assert!(origin.contains("node 'sqrt_head' (Sqrt)"), "{err}");
        }
        other => panic!("{other}"),
    }

    // Backward: Sqrt's infinite gradient at 0.
    let explainer = Explainer::new(&model);
    let x = read("sqrt_zero.npy");
    let err = explainer
        .attribute(
            &x,
            &Target::Class(2),
            SeedMode::OneHot,
            &Attributor::Gradient,
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("gradient rule at node 'sqrt_head' (Sqrt)"),
        "{err}"
    );
    assert!(err.contains("(sample 1)"), "{err}");

    // Allowed: the same computations go through, NaN and all.
    model.set_nonfinite(NonFinite::Allow);
    let a = explainer
        .attribute(
            &x,
            &Target::Class(2),
            SeedMode::OneHot,
            &Attributor::Gradient,
        )
        .unwrap();
    assert!(a.relevance.data()[4..].iter().any(|v| !v.is_finite()));
    assert!(a.relevance.data()[..4].iter().all(|v| v.is_finite()));
}
