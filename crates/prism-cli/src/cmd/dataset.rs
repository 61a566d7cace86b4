//! Dataset flags shared by `attribute`, `project` and `demo`: kind, labels and preprocessing.

use std::path::PathBuf;

use anyhow::{bail, Context};
use prism_store::dataset::{DatasetKind, DatasetOptions, Normalize, Preprocess, Resize};

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

fn size2(flag: &str, s: &str) -> anyhow::Result<[usize; 2]> {
    let parse = |v: &str| -> anyhow::Result<usize> {
        match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => bail!("--{flag} takes S or HxW with positive integers, got `{s}`"),
        }
    };
    match s.split_once(['x', 'X', '×']) {
        Some((h, w)) => Ok([parse(h)?, parse(w)?]),
        None => {
            let v = parse(s)?;
            Ok([v, v])
        }
    }
}

fn floats(flag: &str, s: &str) -> anyhow::Result<Vec<f32>> {
    s.split(',')
        .map(|v| {
            v.trim().parse::<f32>().map_err(|_| {
                anyhow::anyhow!("--{flag}: `{v}` is not a number (expected e.g. 0.485,0.456,0.406/0.229,0.224,0.225)")
            })
        })
        .collect()
}

impl DatasetArgs {
    /// The options for [`prism_store::dataset::Dataset::open`].
    pub fn options(&self) -> anyhow::Result<DatasetOptions> {
        let kind = self
            .dataset_kind
            .as_deref()
            .map(DatasetKind::by_name)
            .transpose()
            .context("--dataset-kind")?;
        let resize = match &self.resize {
            None => None,
            Some(s) if s.contains(['x', 'X', '×']) => Some(Resize::Exact(size2("resize", s)?)),
            Some(s) => Some(Resize::Shorter(size2("resize", s)?[0])),
        };
        let crop = self.crop.as_deref().map(|s| size2("crop", s)).transpose()?;
        let normalize = match self.normalize.as_deref() {
            None => None,
            Some(s) => match s.split_once('/') {
                Some((m, sd)) => Some(
                    Normalize::new(floats("normalize", m)?, floats("normalize", sd)?)
                        .context("--normalize")?,
                ),
                None => Some(Normalize::by_name(s).context("--normalize")?),
            },
        };
        Ok(DatasetOptions {
            kind,
            labels: self.labels.clone(),
            preprocess: Preprocess {
                resize,
                crop,
                scale: self.scale,
                normalize,
                channels: self.channels,
            },
        })
    }
}
