//! Dense layers exported as `MatMul` + a separate bias `Add` (every `nn.Linear` of a
//! transformer, from both PyTorch exporters) get the same LRP relevance as Zennit gives
//! `nn.Linear`, bias included: tests/fixtures/linear_bias, written by
//! scripts/make_linear_bias_reference.py (Zennit 1.0, float64).

use std::path::{Path, PathBuf};

use prism_attribution::{canonize, Attributor, Composite, Explainer, SeedMode, Target};
use prism_model::{DType, Model, Op, Tensor};
use prism_store::npy;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/linear_bias")
}

fn composite(rule: &str) -> Composite {
    let params = match rule {
        "epsilon" => "epsilon = 1e-6",
        "alpha-beta" => "alpha = 2.0\nbeta = 1.0",
        "gamma" => "gamma = 0.25",
        _ => "",
    };
    Composite::from_toml(&format!(
        "name = \"dense-{rule}\"\n\n[[rule]]\nmatch = {{ group = \"activation\" }}\nrule = \"pass\"\n\n\
         [[rule]]\nmatch = {{ group = \"dense\" }}\nrule = \"{rule}\"\n{params}\n"
    ))
    .unwrap_or_else(|e| panic!("{rule}: {e}"))
}

#[test]
fn matmul_plus_bias_add_matches_zennit_linear_in_f64() {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("manifest.json")).unwrap())
            .unwrap();
    let x: Tensor<f64> = npy::read_float(&dir().join("input.npy")).unwrap();
    let targets: Vec<usize> = manifest["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as usize)
        .collect();
    let mut checked = 0;
    for exporter in ["legacy", "dynamo"] {
        let file = manifest["exports"][exporter]["onnx"].as_str().unwrap();
        let model = Model::load(&dir().join(file)).unwrap();
        // The export really splits the bias off (otherwise this test proves nothing).
        let spec = model.specialize(&[x.shape().to_vec()]).unwrap();
        let (merged_graph, merged) = canonize::merge_linear_bias(&spec, DType::F64).unwrap();
        assert_eq!(
            merged, 2,
            "{exporter}: fc1 and fc2 carry a separate bias Add"
        );
        assert!(
            !merged_graph
                .nodes
                .iter()
                .any(|n| matches!(n.op, Op::Binary(_))),
            "{exporter}: no Add is left after merging"
        );
        for case in manifest["cases"].as_array().unwrap() {
            let rule = case["rule"].as_str().unwrap();
            let want: Tensor<f64> =
                npy::read_float(&dir().join(case["file"].as_str().unwrap())).unwrap();
            let explainer = Explainer::new(&model).with_composite(composite(rule));
            let got = explainer
                .attribute(
                    &x,
                    &Target::PerSample(targets.clone()),
                    SeedMode::OneHot,
                    &Attributor::Gradient,
                )
                .unwrap_or_else(|e| panic!("{exporter} {rule}: {e}"))
                .relevance;
            assert_eq!(got.shape(), want.shape());
            let scale = want.data().iter().fold(0f64, |m, v| m.max(v.abs()));
            let err = got
                .data()
                .iter()
                .zip(want.data())
                .map(|(a, b)| (a - b).abs())
                .fold(0f64, f64::max)
                / scale;
            eprintln!("{exporter} {rule}: max error {err:.2e} of max |R| {scale:.3}");
            assert!(
                err <= 1e-6,
                "{exporter} {rule}: relative error {err:e} vs Zennit"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 8);
}

#[test]
fn merging_the_bias_keeps_the_forward_output() {
    let x: Tensor<f64> = npy::read_float(&dir().join("input.npy")).unwrap();
    for exporter in ["legacy", "dynamo"] {
        let model = Model::load(&dir().join(format!("token_mlp.{exporter}.onnx"))).unwrap();
        let plain = model.forward(vec![x.clone()]).unwrap();
        let spec = model.specialize(&[x.shape().to_vec()]).unwrap();
        let (g, _) = canonize::merge_linear_bias(&spec, DType::F64).unwrap();
        let exec = prism_model::Executor::<f64>::new(std::sync::Arc::new(g)).unwrap();
        let merged = exec
            .run(vec![x.clone()], &prism_model::Keep::Outputs)
            .unwrap();
        let d = plain[0]
            .data()
            .iter()
            .zip(merged.outputs[0].data())
            .map(|(a, b)| (a - b).abs())
            .fold(0f64, f64::max);
        assert!(d < 1e-12, "{exporter}: forward changed by {d}");
    }
}

#[test]
fn conv_and_gemm_with_a_separate_bias_add_are_explained_like_their_fused_form() {
    let x: Tensor<f64> = npy::read_float(&dir().join("conv_input.npy")).unwrap();
    let fused = Model::load(&dir().join("conv_bias.onnx")).unwrap();
    let split = Model::load(&dir().join("conv_add.onnx")).unwrap();
    let spec = split.specialize(&[x.shape().to_vec()]).unwrap();
    assert_eq!(
        canonize::merge_linear_bias(&spec, DType::F64).unwrap().1,
        2,
        "the Conv's and the Gemm's Add are merged"
    );
    for name in ["epsilon-alpha2-beta1", "epsilon-plus", "epsilon-plus-flat"] {
        let c = Composite::builtin(name, &Default::default()).unwrap();
        let run = |m: &Model| {
            Explainer::new(m)
                .with_composite(c.clone())
                .attribute(
                    &x,
                    &Target::Class(1),
                    SeedMode::OneHot,
                    &Attributor::Gradient,
                )
                .unwrap()
                .relevance
        };
        let (a, b) = (run(&fused), run(&split));
        let scale = a.data().iter().fold(0f64, |m, v| m.max(v.abs()));
        let d = a
            .data()
            .iter()
            .zip(b.data())
            .map(|(p, q)| (p - q).abs())
            .fold(0f64, f64::max);
        assert!(d <= 1e-12 * scale.max(1.0), "{name}: differs by {d}");
    }
}
