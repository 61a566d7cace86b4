//! Token inputs: the tokens files of `prism heatmap --tokens` (prism-store `tokens`, text and
//! JSON) and token datasets (prism-store `TokenDataset`: `input_ids.npy`, a vocabulary, an
//! attention mask and labels), then the display spelling of the tokens (prism-heatmap).
//!
//! The first byte picks: 0 text tokens file, 1 JSON tokens file, otherwise a token dataset whose
//! files are the parts of the rest (separated by `crate::SEPARATOR`): `input_ids.npy`,
//! the vocabulary (`vocab.json` if it starts with `{`, else `vocab.txt`), `attention_mask.npy`,
//! `labels.npy`.
use prism_heatmap::{display_tokens, SubwordStyle};
use prism_store::TokenDataset;

fn spell(rows: &[Vec<String>]) {
    for row in rows.iter().take(4) {
        for style in [
            SubwordStyle::Auto,
            SubwordStyle::WordPiece,
            SubwordStyle::ByteLevel,
            SubwordStyle::SentencePiece,
        ] {
            let _ = display_tokens(row, style.resolve(row));
        }
    }
}

/// One fuzz input (see the module documentation).
pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        0 => {
            let path = crate::file("tokens.txt", rest);
            if let Ok(rows) = prism_store::read_tokens(&path) {
                spell(&rows);
            }
        }
        1 => {
            let path = crate::file("tokens.json", rest);
            if let Ok(rows) = prism_store::read_tokens(&path) {
                spell(&rows);
            }
        }
        _ => {
            let dir = crate::fresh_dir("tokens");
            let parts = crate::split(rest);
            let vocab_name = |v: &[u8]| {
                if v.first() == Some(&b'{') {
                    "vocab.json"
                } else {
                    "vocab.txt"
                }
            };
            for (i, part) in parts.iter().enumerate().take(4) {
                let name = match i {
                    0 => "input_ids.npy",
                    1 => vocab_name(part),
                    2 => "attention_mask.npy",
                    _ => "labels.npy",
                };
                std::fs::write(dir.join(name), part).expect("writing a token dataset file");
            }
            let Ok(ds) = TokenDataset::open(&dir) else {
                return;
            };
            if let Ok(rows) = ds.tokens(0) {
                spell(&[rows]);
            }
        }
    }
}
