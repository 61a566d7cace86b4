//! HDF5 datasets (prism-store `dataset`, kind hdf5): open, labels, a batch of samples.
use prism_store::{Dataset, DatasetOptions};

/// One fuzz input (see the module documentation).
pub fn run(data: &[u8]) {
    let path = crate::file("dataset.h5", data);
    let Ok(ds) = Dataset::open(&path, &DatasetOptions::default()) else {
        return;
    };
    let n = ds.len();
    let _ = ds.labels();
    let _ = ds.class_names();
    if n > 0 {
        let _ = ds.read(&[0, n - 1]);
    }
}
