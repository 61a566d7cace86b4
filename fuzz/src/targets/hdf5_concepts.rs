//! HDF5 concepts files (prism-store `concepts`): open and validate, then read what the viewer
//! reads: rows of relevance and activation, predictions, reference columns and whole tables,
//! heatmaps, attributes.
use prism_store::{ChannelQuantity, ConceptsFile, ReferenceKind};

/// One fuzz input (see the module documentation).
pub fn run(data: &[u8]) {
    let path = crate::file("concepts.h5", data);
    let Ok(file) = ConceptsFile::open(&path) else {
        return;
    };
    let n = file.n_rows();
    let _ = file.row_of(file.index().last().copied().unwrap_or(0));
    if n > 0 {
        let _ = file.prediction(n - 1);
    }
    for (layer, l) in file.layers().iter().enumerate() {
        if n > 0 {
            let rows = if n > 1 { vec![0, n - 1] } else { vec![0] };
            let _ = file.channel_rows(layer, ChannelQuantity::Relevance, &rows);
            let _ = file.channel_rows(layer, ChannelQuantity::Activation, &rows);
            if let Ok(Some(h)) = file.heatmaps(layer, n - 1) {
                if let Some(&c) = h.channels.first() {
                    let _ = file.heatmap(layer, n - 1, c);
                }
            }
            let _ = file.heatmap_channels_of(layer, 0);
        }
        for kind in ReferenceKind::ALL {
            let _ = file.references(layer, kind, 0);
            let _ = file.references(layer, kind, l.channels.saturating_sub(1));
            let _ = file.reference_table(layer, kind);
        }
    }
    for name in ["prism_model", "prism_settings", "prism_target"] {
        let _ = file.attr(name);
    }
}
