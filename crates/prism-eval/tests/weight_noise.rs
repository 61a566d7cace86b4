//! The weight-noise check (robustness of explanations to small model perturbations) on the
//! trained fixture: σ = 0 reproduces the maps and predictions, a large σ changes them, the
//! result does not depend on the chunking, and bad settings are errors.

use std::path::{Path, PathBuf};

use prism_attribution::{Bound, MethodSpec, Target};
use prism_eval::evaluate::Evaluation;
use prism_eval::{
    evaluate, evaluate_chunks, Baseline, Chunk, EvalError, Method, NoiseScale, Quiet,
    RegionPerturbation, Report, Settings, WeightNoise,
};
use prism_model::{Model, Tensor};
use prism_store::npy;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/eval")
}

fn methods() -> Vec<Method> {
    let base = MethodSpec {
        low: Some(Bound::Scalar(-3.0)),
        high: Some(Bound::Scalar(3.0)),
        ..MethodSpec::default()
    };
    ["epsilon-plus-flat", "gradient"]
        .iter()
        .map(|n| Method::parse(n, &base).expect("method"))
        .collect()
}

fn settings(noise: WeightNoise) -> Settings {
    Settings {
        perturbation: RegionPerturbation {
            patch: 8,
            steps: 2,
            baseline: Baseline::Zero,
            batch_size: 64,
            seed: 4,
        },
        randomisation: Vec::new(),
        weight_noise: Some(noise),
        ..Settings::default()
    }
}

fn inputs() -> (Model, Tensor<f32>) {
    let model = Model::load(&dir().join("eval_cnn.onnx")).expect("model");
    let x: Tensor<f32> = npy::read_float(&dir().join("eval_cnn.input.npy")).expect("input");
    (model, x)
}

fn run(noise: WeightNoise) -> Result<Report, EvalError> {
    let (model, x) = inputs();
    evaluate(
        &model,
        "eval_cnn",
        &x,
        &Target::Predicted,
        &methods(),
        &settings(noise),
        &Quiet,
    )
}

fn noise(sigmas: &[f64], draws: usize) -> WeightNoise {
    WeightNoise {
        draws,
        samples: 6,
        ..WeightNoise::new(sigmas.to_vec())
    }
}

#[test]
fn zero_sigma_reproduces_maps_and_predictions_and_large_sigma_does_not() {
    let r = run(noise(&[0.0, 0.02, 1.0], 2)).expect("evaluate");
    print!("{}", r.table());
    let wn = r.weight_noise.as_ref().expect("weight noise");
    assert_eq!(wn.samples_used, 6);
    assert_eq!(wn.tensors, 8);
    assert_eq!(wn.prediction_unchanged[0], 1.0);
    assert!(
        wn.prediction_unchanged[2] < 1.0,
        "{:?}",
        wn.prediction_unchanged
    );
    for m in &r.methods {
        let l = &m.weight_noise;
        assert_eq!(
            l.iter().map(|l| l.sigma).collect::<Vec<_>>(),
            [0.0, 0.02, 1.0]
        );
        assert!(
            (l[0].spearman - 1.0).abs() < 1e-9,
            "{}: {}",
            m.name,
            l[0].spearman
        );
        assert!((l[0].ssim - 1.0).abs() < 1e-9, "{}: {}", m.name, l[0].ssim);
        assert_eq!(l[0].top_k_intersection, 1.0, "{}", m.name);
        assert_eq!(l[0].spearman_per_sample.len(), 6);
        // a small perturbation changes the maps a little, a large one a lot
        assert!(l[1].spearman < 1.0 - 1e-6, "{}: {}", m.name, l[1].spearman);
        assert!(l[2].spearman < l[1].spearman, "{}: {:?}", m.name, l);
        assert!(l[2].spearman < 0.7, "{}: {}", m.name, l[2].spearman);
        assert!(l[2].top_k_intersection < l[0].top_k_intersection);
    }
    let json = serde_json::to_value(&r).expect("json");
    assert_eq!(json["weight_noise"]["scale"], "absolute");
    assert_eq!(json["weight_noise"]["draws"], 2);
    assert_eq!(json["methods"][0]["weight_noise"][2]["sigma"], 1.0);
    assert!(r.table().contains("same prediction"));
}

#[test]
fn weight_noise_does_not_depend_on_the_chunking() {
    let (model, x) = inputs();
    let ms = methods();
    let s = settings(WeightNoise {
        scale: NoiseScale::Relative,
        ..noise(&[0.3], 2)
    });
    let whole = evaluate(&model, "m", &x, &Target::Predicted, &ms, &s, &Quiet).expect("whole");
    let per = x.len() / 8;
    let chunk = |a: usize, b: usize| {
        Ok(Chunk {
            x: Tensor::new(vec![b - a, 3, 32, 32], x.data()[a * per..b * per].to_vec())?,
            target: Target::Predicted,
            relevance: Vec::new(),
            segments: None,
        })
    };
    let run = Evaluation {
        model: &model,
        model_name: "m",
        methods: &ms,
        given: &[],
        settings: &s,
        samples: 8,
    };
    let chunked =
        evaluate_chunks(&run, [chunk(0, 3), chunk(3, 5), chunk(5, 8)], &Quiet).expect("chunked");
    let a = serde_json::to_value(&whole.weight_noise).expect("json");
    let b = serde_json::to_value(&chunked.weight_noise).expect("json");
    assert_eq!(a, b);
    for (m, c) in whole.methods.iter().zip(&chunked.methods) {
        let a = serde_json::to_value(&m.weight_noise).expect("json");
        assert_eq!(a, serde_json::to_value(&c.weight_noise).expect("json"));
    }
}

#[test]
fn negative_sigma_and_zero_draws_are_errors_naming_the_option() {
    let e = run(noise(&[0.1, -1.0], 3)).map(|_| ()).expect_err("σ < 0");
    assert!(
        matches!(&e, EvalError::Parameter { names, .. } if names == &["weight_noise"]),
        "{e}"
    );
    assert!(e.to_string().contains("σ ≥ 0"), "{e}");
    let e = run(noise(&[0.1], 0)).map(|_| ()).expect_err("K = 0");
    assert!(
        matches!(&e, EvalError::Parameter { names, .. } if names == &["weight_noise_draws"]),
        "{e}"
    );
}
