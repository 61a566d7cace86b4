//! HDF5 analysis files (prism-store `analysis`): categories, their index, embeddings and
//! clusterings, read the way the viewer and `prism project` read them.
use prism_store::AnalysisFile;

/// One fuzz input (see the module documentation).
pub fn run(data: &[u8]) {
    let path = crate::file("analysis.h5", data);
    let Ok(file) = AnalysisFile::open(&path) else {
        return;
    };
    let _ = file.attr("method");
    let Ok(names) = file.categories() else {
        return;
    };
    let _ = file.listed_categories();
    for name in names.iter().take(4) {
        let _ = file.category(name);
        let Some(reader) = file.category_reader(name) else {
            continue;
        };
        let _ = reader.len();
        let _ = reader.index();
        if let Ok(embeddings) = reader.embeddings() {
            for e in embeddings.iter().take(4) {
                let _ = reader.embedding(&e.name);
                let _ = reader.embedding_columns(&e.name, (0, 1));
            }
        }
        if let Ok(clusterings) = reader.clusterings() {
            for c in clusterings.iter().take(4) {
                let _ = reader.clustering(c);
            }
        }
    }
}
