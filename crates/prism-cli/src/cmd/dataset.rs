//! Dataset flags shared by `attribute`, `project` and `demo`: kind, labels and preprocessing.

use std::path::PathBuf;

use prism_store::dataset::{DatasetOptions, DatasetOptionsText, OptionTextError};

/// How to read the dataset and preprocess its samples.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct DatasetArgs {
    /// Dataset kind: hdf5, image-folder or npy [default: from the path].
    #[arg(long, value_name = "KIND")]
    pub dataset_kind: Option<String>,
    /// Labels of a .npy dataset (.npy of class numbers) [default: <stem>.labels.npy if present].
    #[arg(long, value_name = "LABELS.npy")]
    pub labels: Option<PathBuf>,
    /// Image folders: resize the shorter side to S (`256`), or to exactly H×W (`224x224`).
    #[arg(long, value_name = "S|HxW")]
    pub resize: Option<String>,
    /// Image folders: centre-crop to H×W (`224x224`, or `224` for a square).
    #[arg(long, value_name = "S|HxW")]
    pub crop: Option<String>,
    /// Normalise per channel: `imagenet`, or `MEAN,…/STD,…` (e.g. `0.5/0.5`).
    #[arg(long, value_name = "NAME|MEAN/STD")]
    pub normalize: Option<String>,
    /// Image folders: 3 (RGB) or 1 (grayscale) channels [default: 3].
    #[arg(long)]
    pub channels: Option<usize>,
    /// Divide values by 255 [default: yes for image folders, no for HDF5 and .npy].
    #[arg(long, value_name = "BOOL")]
    pub scale: Option<bool>,
}

impl DatasetArgs {
    /// The options for [`prism_store::dataset::Dataset::open`] (parsed by
    /// [`DatasetOptionsText::parse`], the parser the Python package uses too).
    pub fn options(&self) -> anyhow::Result<DatasetOptions> {
        DatasetOptionsText {
            kind: self.dataset_kind.clone(),
            labels: self.labels.clone(),
            resize: self.resize.clone(),
            crop: self.crop.clone(),
            normalize: self.normalize.clone(),
            channels: self.channels,
            scale: self.scale,
        }
        .parse()
        .map_err(in_flag_words)
    }
}

/// A dataset option's error with its flag (`dataset_kind` → `--dataset-kind`).
fn in_flag_words(e: OptionTextError) -> anyhow::Error {
    let flag = format!("--{}", e.option().replace('_', "-"));
    match e {
        OptionTextError::Invalid { source, .. } => anyhow::Error::new(source).context(flag),
        // Each of these messages starts with the option's name, which the flag replaces.
        other => {
            let text = other.to_string();
            let rest = text.strip_prefix(other.option()).unwrap_or(&text);
            anyhow::anyhow!("{flag}{rest}")
        }
    }
}
