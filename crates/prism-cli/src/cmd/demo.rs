//! `prism demo`: the bundled end-to-end Clever-Hans demo (dataset-wide attribution and SpRAy).

/// Run the bundled Clever-Hans demo end to end (coming: it lands with the dataset-run issue).
///
/// Example:
///
///   prism demo
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct DemoArgs {}

pub fn run(_args: &DemoArgs) -> anyhow::Result<()> {
    println!(
        "prism demo is coming: it will attribute a bundled MNIST model with a planted shortcut, \
         run SpRAy and write a ViRelAy project. Today Prism can already `inspect`, `predict` and `explain` \
         ONNX models and render `heatmap`s; see `prism --help`."
    );
    Ok(())
}
