//! LRP on a 3-D CNN (medical and video volumes): 3-D convolutions are linear layers for every
//! rule, 3-D max pooling passes relevance by its gradient, and ε without bias conserves
//! relevance (tests/fixtures/ops/indexing/cnn3d_small, written by scripts/make_op_fixtures.py).

use std::path::{Path, PathBuf};

use prism_attribution::{
    Attributor, Composite, CompositeParams, Explainer, Group, Matcher, Rule, SeedMode, Stabilizer,
    Target,
};
use prism_model::{Model, Tensor};
use prism_store::npy;

fn fixture() -> (Model, Tensor<f64>) {
    let dir: PathBuf =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/ops/indexing");
    let m = Model::load(&dir.join("cnn3d_small.onnx")).unwrap();
    let x: Tensor<f64> = npy::read_float(&dir.join("cnn3d_small.in0.npy")).unwrap();
    (m, x)
}

#[test]
fn epsilon_without_bias_conserves_relevance_through_3d_convolutions() {
    let (m, x) = fixture();
    let st = Stabilizer::eps(1e-12);
    let composite = Composite {
        name: "test-epsilon".into(),
        entries: vec![
            (Matcher::Group(Group::Activation), Rule::Pass),
            (
                Matcher::Group(Group::AveragePool),
                Rule::Norm { stabilizer: st },
            ),
            (
                Matcher::Group(Group::Linear),
                Rule::Epsilon {
                    epsilon: st,
                    zero_bias: true,
                },
            ),
        ],
    };
    let a = Explainer::new(&m)
        .with_composite(composite)
        .attribute(
            &x,
            &Target::Predicted,
            SeedMode::OneHot,
            &Attributor::Gradient,
        )
        .unwrap();
    assert_eq!(a.relevance.shape(), x.shape());
    let per_sample = a.relevance.len() / x.shape()[0];
    for (i, c) in a.relevance.data().chunks(per_sample).enumerate() {
        let s: f64 = c.iter().sum();
        assert!(
            (s - 1.0).abs() < 1e-6,
            "sample {i}: Σ R_in = {s}, expected 1"
        );
    }
}

#[test]
fn every_builtin_composite_runs_on_a_3d_cnn() {
    let (m, x) = fixture();
    let p = CompositeParams {
        low: Some(prism_attribution::Bound::Scalar(-3.0)),
        high: Some(prism_attribution::Bound::Scalar(3.0)),
        ..Default::default()
    };
    for comp in prism_attribution::COMPOSITES {
        let c = Composite::builtin(comp, &p).unwrap();
        let a = Explainer::new(&m)
            .with_composite(c)
            .attribute(
                &x,
                &Target::Predicted,
                SeedMode::OneHot,
                &Attributor::Gradient,
            )
            .unwrap_or_else(|e| panic!("{comp}: {e}"));
        assert_eq!(a.relevance.shape(), x.shape());
        assert!(
            a.relevance.data().iter().all(|v| v.is_finite()),
            "{comp}: non-finite relevance"
        );
    }
}
