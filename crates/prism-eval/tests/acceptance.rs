//! Acceptance on the trained fixture (`scripts/eval_make_fixture.py`), where the evidence is
//! certain: one coloured 8×8 square decides the class. LRP must beat the plain gradient and the
//! random order on MoRF AOPC, and attributions must decorrelate as the layers are randomised.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use prism_attribution::{Bound, MethodSpec, Target};
use prism_eval::similarity::{plane, spearman};
use prism_eval::{evaluate, Baseline, Method, Mode, Quiet, RegionPerturbation, Settings};
use prism_model::{Model, Tensor};
use prism_store::npy;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/eval")
}

fn methods(names: &[&str]) -> Vec<Method> {
    let base = MethodSpec {
        low: Some(Bound::Scalar(-3.0)),
        high: Some(Bound::Scalar(3.0)),
        ..MethodSpec::default()
    };
    names
        .iter()
        .map(|n| Method::parse(n, &base).expect("method"))
        .collect()
}

fn run(names: &[&str], modes: Vec<Mode>) -> prism_eval::Report {
    let model = Model::load(&dir().join("eval_cnn.onnx")).expect("model");
    let x: Tensor<f32> = npy::read_float(&dir().join("eval_cnn.input.npy")).expect("input");
    let settings = Settings {
        perturbation: RegionPerturbation {
            patch: 4,
            steps: 16,
            baseline: Baseline::Zero,
            batch_size: 64,
            seed: 0,
        },
        randomisation: modes,
        randomisation_samples: 8,
        ..Settings::default()
    };
    evaluate(
        &model,
        "eval_cnn",
        &x,
        &Target::Predicted,
        &methods(names),
        &settings,
        &Quiet,
    )
    .expect("evaluate")
}

fn report() -> &'static prism_eval::Report {
    static REPORT: OnceLock<prism_eval::Report> = OnceLock::new();
    REPORT.get_or_init(|| {
        run(
            &["epsilon-plus-flat", "epsilon-gamma-box", "gradient"],
            vec![Mode::Cascading, Mode::Independent],
        )
    })
}

#[test]
fn lrp_beats_gradient_and_random_order_on_morf_aopc() {
    let r = report();
    print!("{}", r.table());
    let aopc = |n: &str| r.methods.iter().find(|m| m.name == n).expect(n).morf.aopc;
    for lrp in ["epsilon-plus-flat", "epsilon-gamma-box"] {
        assert!(aopc(lrp) > aopc("gradient"), "{lrp} vs gradient");
        assert!(aopc(lrp) > r.random_order.aopc, "{lrp} vs random");
        // And LRP's least-relevant-first curve stays above its most-relevant-first one.
        let m = r.methods.iter().find(|m| m.name == lrp).expect(lrp);
        assert!(m.abpc > 0.0, "{lrp}: ABPC {}", m.abpc);
    }
    assert_eq!(r.ranking.last().map(String::as_str), Some("gradient"));
}

#[test]
fn attributions_decorrelate_as_layers_are_randomised() {
    let r = report();
    let layers = r
        .randomisation
        .as_ref()
        .expect("randomisation")
        .layers
        .len();
    assert_eq!(layers, 4);
    for m in &r.methods {
        for rc in &m.randomisation {
            assert_eq!(rc.steps.len(), layers);
            for s in &rc.steps {
                println!(
                    "{} {:?} {}: spearman {:.3} ssim {:.3} top-k {:.3}",
                    m.name, rc.mode, s.layer, s.spearman, s.ssim, s.top_k_intersection
                );
                // Any re-drawn layer changes the map (identical maps would give 1).
                assert!(s.spearman < 0.9, "{} {:?} {}", m.name, rc.mode, s.layer);
            }
            if rc.mode == Mode::Cascading {
                let first = &rc.steps[0];
                let last = &rc.steps[layers - 1];
                assert!(last.spearman < 0.5, "{}: {}", m.name, last.spearman);
                assert!(last.spearman < first.spearman, "{}", m.name);
                assert!(
                    last.top_k_intersection < first.top_k_intersection,
                    "{}",
                    m.name
                );
            }
        }
    }
}

#[test]
fn unrandomised_model_reproduces_the_maps() {
    // The control for the test above: recomputing on the original weights gives ρ = 1.
    let model = Model::load(&dir().join("eval_cnn.onnx")).expect("model");
    let x: Tensor<f32> = npy::read_float(&dir().join("eval_cnn.input.npy")).expect("input");
    let m = &methods(&["epsilon-plus-flat"])[0];
    let t = vec![0, 1, 2, 3, 0, 1, 2, 3];
    let a = m.attribute(&model, &x, &t, 8, true, &Quiet).expect("a");
    let b = m.attribute(&model, &x, &t, 3, true, &Quiet).expect("b");
    let per = x.len() / 8;
    for i in 0..8 {
        let p = plane(&a.data()[i * per..(i + 1) * per], 32 * 32, true);
        let q = plane(&b.data()[i * per..(i + 1) * per], 32 * 32, true);
        assert!((spearman(&p, &q) - 1.0).abs() < 1e-9);
    }
}
