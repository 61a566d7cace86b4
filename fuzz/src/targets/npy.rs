//! `.npy` arrays (prism-store `npy`): header, shape, element type, the data read back.
use prism_store::npy::{read_float, read_i64, NpyArray};

/// One fuzz input (see the module documentation).
pub fn run(data: &[u8]) {
    let path = crate::file("input.npy", data);
    if let Ok(array) = NpyArray::open(&path) {
        let _ = array.shape();
        let _ = array.len();
        let rows = array.shape().first().copied().unwrap_or(1);
        let _ = array.read_rows(rows / 2, rows);
        let _ = array.read_all();
    }
    let _ = read_float::<f32>(&path);
    let _ = read_i64(&path);
}
