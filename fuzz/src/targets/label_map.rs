//! Label maps (prism-store `label_map`, ViRelAy's JSON list of classes).

/// One fuzz input (see the module documentation).
pub fn run(data: &[u8]) {
    let path = crate::file("label-map.json", data);
    let _ = prism_store::read_label_map(&path);
}
