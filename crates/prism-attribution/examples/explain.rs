//! The library API in one screen: load a model, pick a composite, attribute a batch.
//!
//! ```text
//! cargo run -p prism-attribution --example explain [MODEL.onnx INPUT.npy]
//! ```
//! Without arguments it explains the bundled tiny ResNet fixture.

use std::path::PathBuf;

use prism_attribution::{Attributor, Composite, CompositeParams, Explainer, SeedMode, Target};
use prism_model::{Model, Tensor};
use prism_store::npy;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (model_path, input_path) = match args.as_slice() {
        [m, x] => (PathBuf::from(m), PathBuf::from(x)),
        _ => (
            root.join("tiny_resnet.onnx"),
            root.join("tiny_resnet.input.npy"),
        ),
    };

    // 1. Load the ONNX model and the (preprocessed) input batch.
    let model = Model::load(&model_path)?;
    let x: Tensor<f32> = npy::read_float(&input_path)?;

    // 2. Choose a composite: Zennit's EpsilonPlusFlat with default parameters.
    let composite = Composite::builtin("epsilon-plus-flat", &CompositeParams::default())?;
    let explainer = Explainer::new(&model).with_composite(composite);

    // 3. Attribute the predicted class of every sample.
    let a = explainer.attribute(
        &x,
        &Target::Predicted,
        SeedMode::OneHot,
        &Attributor::Gradient,
    )?;

    let per = a.relevance.len() / x.shape()[0];
    for (i, r) in a.relevance.data().chunks(per).enumerate() {
        let sum: f32 = r.iter().sum();
        println!("sample {i}: class {}, relevance sum {sum:.4}", a.targets[i]);
    }
    Ok(())
}
