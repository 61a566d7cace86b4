//! The samples of a project's dataset, as the viewer shows them. The reader lives in
//! `prism-store` ([`prism_store::DisplayDataset`]), the only crate that knows the files; this
//! module names it for the viewer.

pub use prism_store::dataset::resample;
pub use prism_store::{DisplayDataset as Dataset, RgbImage};
