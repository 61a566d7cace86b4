//! HDF5 attribution files (prism-store `attribution`): open and validate, read rows,
//! predictions and attributes, and the recorded nodes of `/record`.
use prism_store::AttributionFile;

/// One fuzz input (see the module documentation).
pub fn run(data: &[u8]) {
    let path = crate::file("attribution.h5", data);
    let Ok(file) = AttributionFile::open(&path) else {
        return;
    };
    let n = file.n_samples();
    let _ = file.labels().class_rows();
    if n > 0 {
        let _ = file.read_rows(&[0, n - 1]);
        let _ = file.read_prediction_rows(0, n.min(4));
        let _ = file.sample_number(n - 1);
    }
    for name in ["method", "composite", "model", "prism_version"] {
        let _ = file.attr(name);
    }
    if let Ok(Some(record)) = file.record() {
        for node in 0..record.nodes.len() {
            let _ = file.read_record_rows(node, 0, n.min(4));
            let _ = file.read_record_rows(node, n.saturating_sub(1), n);
        }
    }
}
