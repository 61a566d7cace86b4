//! Token datasets: the inputs of a text model, a vocabulary to spell them, optional labels.
//!
//! A token dataset is a directory (`docs/datasets.md`, "Token datasets"):
//!
//! ```text
//! tokens/
//!   input_ids.npy         [N, T] integers: token ids (required)
//!   attention_mask.npy    [N, T] 0/1 (optional; 1 = real token, 0 = padding)
//!   <name>.npy            [N, T] integers: any further model input, by its ONNX name
//!                         (e.g. token_type_ids.npy)
//!   labels.npy            [N] class numbers (optional; negative = unlabelled)
//!   vocab.txt             one token per line, id = line number from 0 (BERT's file), or
//!   vocab.json            {"token": id, ...} (GPT-2's file)
//! ```
//!
//! Opening checks every shape and every id against the vocabulary's size, so a wrong
//! vocabulary fails here rather than as a wrong rendering. Everything is held in memory: token
//! ids are small (N × T integers).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::dataset::DatasetError;
use crate::npy::read_i64;

/// The file of the token ids.
pub const INPUT_IDS: &str = "input_ids";
/// The file of the attention mask, also a model input.
pub const ATTENTION_MASK: &str = "attention_mask";
/// The file of the labels (not a model input).
pub const LABELS: &str = "labels.npy";

/// A directory of token ids with their vocabulary.
#[derive(Debug, Clone)]
pub struct TokenDataset {
    dir: PathBuf,
    samples: usize,
    positions: usize,
    /// Model inputs by name, `input_ids` first, then the others sorted by name; each [N, T].
    inputs: Vec<(String, Vec<i64>)>,
    labels: Option<Vec<Option<u32>>>,
    vocab: Vec<String>,
    fingerprint: String,
}

impl TokenDataset {
    /// Whether `dir` looks like a token dataset: a directory with `input_ids.npy` and a
    /// vocabulary (`vocab.txt` or `vocab.json`).
    pub fn is_token_dataset(dir: &Path) -> bool {
        dir.join(format!("{INPUT_IDS}.npy")).is_file()
            && (dir.join("vocab.txt").is_file() || dir.join("vocab.json").is_file())
    }

    /// Opens and checks a token dataset (see the module documentation).
    pub fn open(dir: &Path) -> Result<Self, DatasetError> {
        let io = |path: &Path, source| DatasetError::Io {
            path: path.to_owned(),
            source,
        };
        let vocab = read_vocab(dir)?;
        let mut names: Vec<(String, PathBuf)> = Vec::new();
        let entries = std::fs::read_dir(dir).map_err(|e| io(dir, e))?;
        for entry in entries {
            let path = entry.map_err(|e| io(dir, e))?.path();
            let is_npy = path.extension().is_some_and(|e| e == "npy");
            let name = path.file_stem().map(|s| s.to_string_lossy().into_owned());
            if let (true, Some(name)) = (is_npy, name) {
                if path.file_name().is_some_and(|f| f != LABELS) {
                    names.push((name, path));
                }
            }
        }
        // input_ids first, then the others by name
        names.sort_by(|a, b| (a.0 != INPUT_IDS, &a.0).cmp(&(b.0 != INPUT_IDS, &b.0)));
        if names.first().is_none_or(|(n, _)| n != INPUT_IDS) {
            return Err(DatasetError::Kind {
                path: dir.to_owned(),
                message: format!(
                    "a token dataset needs `{INPUT_IDS}.npy` ([N, tokens] integer ids)"
                ),
            });
        }
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"prism token dataset 1");
        let mut inputs = Vec::with_capacity(names.len());
        let mut shape: Option<Vec<usize>> = None;
        for (name, path) in &names {
            let t = read_i64(path).map_err(|e| DatasetError::Npy {
                path: path.clone(),
                message: e.to_string(),
            })?;
            let expected = shape.get_or_insert_with(|| t.shape().to_vec());
            if t.shape().len() != 2 || t.shape() != expected.as_slice() || t.shape().contains(&0) {
                return Err(DatasetError::Shape {
                    path: path.clone(),
                    dataset: name.clone(),
                    found: t.shape().to_vec(),
                    expected: format!(
                        "every model input of a token dataset is [N, tokens] with N, tokens ≥ 1 \
                         and the shape of `{INPUT_IDS}` ({expected:?})"
                    ),
                });
            }
            hasher.update(&(name.len() as u64).to_le_bytes());
            hasher.update(name.as_bytes());
            for v in t.data() {
                hasher.update(&v.to_le_bytes());
            }
            inputs.push((name.clone(), t.data().to_vec()));
        }
        let [samples, positions] = shape.as_deref().unwrap_or(&[0, 0])[..] else {
            unreachable!("checked: rank 2")
        };
        check_ids(dir, &inputs[0].1, positions, vocab.len())?;
        if let Some((_, mask)) = inputs.iter().find(|(n, _)| n == ATTENTION_MASK) {
            if let Some(i) = mask.iter().position(|&v| v != 0 && v != 1) {
                return Err(DatasetError::Npy {
                    path: dir.join(format!("{ATTENTION_MASK}.npy")),
                    message: format!(
                        "an attention mask holds 0 and 1, but sample {}, position {} holds {}",
                        i / positions,
                        i % positions,
                        mask[i]
                    ),
                });
            }
        }
        let labels_path = dir.join(LABELS);
        let labels = if labels_path.is_file() {
            let t = read_i64(&labels_path).map_err(|e| DatasetError::Npy {
                path: labels_path.clone(),
                message: e.to_string(),
            })?;
            if t.shape() != [samples] {
                return Err(DatasetError::LabelCount {
                    path: dir.to_owned(),
                    labels: labels_path.display().to_string(),
                    samples,
                    found: t.shape().to_vec(),
                });
            }
            for v in t.data() {
                hasher.update(&v.to_le_bytes());
            }
            Some(
                t.data()
                    .iter()
                    .map(|&v| u32::try_from(v).ok())
                    .collect::<Vec<_>>(),
            )
        } else {
            None
        };
        for token in &vocab {
            hasher.update(&(token.len() as u64).to_le_bytes());
            hasher.update(token.as_bytes());
        }
        Ok(Self {
            dir: dir.to_owned(),
            samples,
            positions,
            inputs,
            labels,
            vocab,
            fingerprint: hasher.finalize().to_hex().to_string(),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Number of samples N.
    pub fn len(&self) -> usize {
        self.samples
    }

    /// Always false: opening refuses empty datasets.
    pub fn is_empty(&self) -> bool {
        self.samples == 0
    }

    /// Token positions per sample T.
    pub fn positions(&self) -> usize {
        self.positions
    }

    /// The model inputs' names, `input_ids` first.
    pub fn input_names(&self) -> Vec<&str> {
        self.inputs.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The model inputs of samples `indices`, each `[indices.len(), T]`, in the order of
    /// [`input_names`](Self::input_names).
    pub fn read_inputs(&self, indices: &[usize]) -> Result<Vec<(String, Vec<i64>)>, DatasetError> {
        let t = self.positions;
        if let Some(&i) = indices.iter().find(|&&i| i >= self.samples) {
            return Err(DatasetError::Index {
                path: self.dir.clone(),
                index: i,
                len: self.samples,
            });
        }
        Ok(self
            .inputs
            .iter()
            .map(|(name, data)| {
                let rows = indices
                    .iter()
                    .flat_map(|&i| data[i * t..(i + 1) * t].iter().copied())
                    .collect();
                (name.clone(), rows)
            })
            .collect())
    }

    /// The labels, if the dataset has `labels.npy` (`None` for negative values).
    pub fn labels(&self) -> Option<&[Option<u32>]> {
        self.labels.as_deref()
    }

    /// The vocabulary: token of each id.
    pub fn vocab(&self) -> &[String] {
        &self.vocab
    }

    /// The tokens of sample `k`, spelled by the vocabulary (all T positions, padding included).
    pub fn tokens(&self, k: usize) -> Result<Vec<String>, DatasetError> {
        let ids = self.row(INPUT_IDS, k)?.unwrap_or_default();
        // ids were checked against the vocabulary when the dataset was opened
        Ok(ids
            .iter()
            .map(|&id| self.vocab[id as usize].clone())
            .collect())
    }

    /// The attention mask of sample `k` (`true` = real token), if the dataset has one.
    pub fn mask(&self, k: usize) -> Result<Option<Vec<bool>>, DatasetError> {
        Ok(self
            .row(ATTENTION_MASK, k)?
            .map(|row| row.iter().map(|&v| v != 0).collect()))
    }

    fn row(&self, name: &str, k: usize) -> Result<Option<&[i64]>, DatasetError> {
        if k >= self.samples {
            return Err(DatasetError::Index {
                path: self.dir.clone(),
                index: k,
                len: self.samples,
            });
        }
        let t = self.positions;
        Ok(self
            .inputs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, data)| &data[k * t..(k + 1) * t]))
    }

    /// Identifies the ids, inputs, labels and vocabulary (blake3 of their values), so that a
    /// resumed run can check it continues the same work.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// Every id must lie in `0..vocab`.
fn check_ids(dir: &Path, ids: &[i64], positions: usize, vocab: usize) -> Result<(), DatasetError> {
    match ids
        .iter()
        .position(|&id| id < 0 || usize::try_from(id).is_ok_and(|id| id >= vocab))
    {
        None => Ok(()),
        Some(i) => Err(DatasetError::Npy {
            path: dir.join(format!("{INPUT_IDS}.npy")),
            message: format!(
                "sample {}, position {} holds token id {}, outside the vocabulary's {vocab} \
                 ids (0 .. {}); is this the model's vocabulary?",
                i / positions,
                i % positions,
                ids[i],
                vocab.saturating_sub(1)
            ),
        }),
    }
}

/// `vocab.txt` (one token per line, id = line number) or `vocab.json` ({token: id}).
fn read_vocab(dir: &Path) -> Result<Vec<String>, DatasetError> {
    let txt = dir.join("vocab.txt");
    let json = dir.join("vocab.json");
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|source| DatasetError::Io {
            path: path.to_owned(),
            source,
        })
    };
    let vocab = if txt.is_file() {
        let text = read(&txt)?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let text = text.strip_suffix('\n').unwrap_or(text);
        text.split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l).to_owned())
            .collect::<Vec<_>>()
    } else if json.is_file() {
        let bad = |message: String| DatasetError::Kind {
            path: json.clone(),
            message,
        };
        let map: BTreeMap<String, i64> = serde_json::from_str(&read(&json)?)
            .map_err(|e| bad(format!("expected a JSON object of token → id: {e}")))?;
        let mut vocab: Vec<Option<String>> = vec![None; map.len()];
        for (token, id) in map {
            let slot = usize::try_from(id)
                .ok()
                .and_then(|i| vocab.get_mut(i))
                .ok_or_else(|| {
                    bad(format!(
                        "token {token:?} has id {id}; ids must be 0 .. number of tokens − 1"
                    ))
                })?;
            if let Some(other) = slot.replace(token.clone()) {
                return Err(bad(format!("tokens {other:?} and {token:?} share id {id}")));
            }
        }
        vocab.into_iter().flatten().collect()
    } else {
        return Err(DatasetError::Kind {
            path: dir.to_owned(),
            message: "a token dataset needs a vocabulary: vocab.txt (one token per line) or \
                      vocab.json ({\"token\": id})"
                .into(),
        });
    };
    if vocab.is_empty() || vocab == [""] {
        return Err(DatasetError::Empty {
            path: dir.to_owned(),
            message: "the vocabulary is empty".into(),
        });
    }
    Ok(vocab)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npy::write_i64;
    use prism_model::Tensor;

    fn write(dir: &Path, name: &str, shape: &[usize], data: Vec<i64>) {
        write_i64(&dir.join(name), &Tensor::new(shape.to_vec(), data).unwrap()).unwrap();
    }

    fn dataset() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("vocab.txt"),
            "[PAD]\n[CLS]\n[SEP]\nplay\n##ing\n \n",
        )
        .unwrap();
        write(
            dir.path(),
            "input_ids.npy",
            &[2, 4],
            vec![1, 3, 4, 2, 1, 5, 2, 0],
        );
        write(
            dir.path(),
            "attention_mask.npy",
            &[2, 4],
            vec![1, 1, 1, 1, 1, 1, 1, 0],
        );
        write(dir.path(), "token_type_ids.npy", &[2, 4], vec![0; 8]);
        write(dir.path(), "labels.npy", &[2], vec![1, -1]);
        dir
    }

    #[test]
    fn a_token_dataset_spells_its_samples_with_the_vocabulary() {
        let dir = dataset();
        assert!(TokenDataset::is_token_dataset(dir.path()));
        let d = TokenDataset::open(dir.path()).unwrap();
        assert_eq!((d.len(), d.positions()), (2, 4));
        assert_eq!(
            d.input_names(),
            ["input_ids", "attention_mask", "token_type_ids"]
        );
        assert_eq!(d.tokens(0).unwrap(), ["[CLS]", "play", "##ing", "[SEP]"]);
        assert_eq!(d.tokens(1).unwrap(), ["[CLS]", " ", "[SEP]", "[PAD]"]);
        assert_eq!(d.mask(1).unwrap().unwrap(), [true, true, true, false]);
        assert_eq!(d.labels().unwrap(), [Some(1), None]);
        let inputs = d.read_inputs(&[1]).unwrap();
        assert_eq!(inputs[0], ("input_ids".to_string(), vec![1, 5, 2, 0]));
        assert!(d.read_inputs(&[2]).is_err());
        assert_eq!(
            d.fingerprint(),
            TokenDataset::open(dir.path()).unwrap().fingerprint()
        );
    }

    #[test]
    fn ids_outside_the_vocabulary_are_an_error() {
        let dir = dataset();
        write(
            dir.path(),
            "input_ids.npy",
            &[2, 4],
            vec![1, 3, 4, 2, 1, 6, 2, 0],
        );
        let e = TokenDataset::open(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("sample 1, position 1") && e.contains("token id 6") && e.contains("6 ids"),
            "{e}"
        );
    }

    #[test]
    fn inputs_of_other_shapes_and_bad_masks_are_errors() {
        let dir = dataset();
        write(dir.path(), "token_type_ids.npy", &[2, 3], vec![0; 6]);
        let e = TokenDataset::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("token_type_ids") && e.contains("[2, 4]"), "{e}");
        let dir = dataset();
        write(
            dir.path(),
            "attention_mask.npy",
            &[2, 4],
            vec![1, 1, 2, 1, 1, 1, 1, 0],
        );
        let e = TokenDataset::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("sample 0, position 2 holds 2"), "{e}");
    }

    #[test]
    fn a_json_vocabulary_maps_tokens_to_ids() {
        let dir = dataset();
        std::fs::remove_file(dir.path().join("vocab.txt")).unwrap();
        std::fs::write(
            dir.path().join("vocab.json"),
            r###"{"[PAD]": 0, "[CLS]": 1, "[SEP]": 2, "play": 3, "##ing": 4, "Ġ": 5}"###,
        )
        .unwrap();
        let d = TokenDataset::open(dir.path()).unwrap();
        assert_eq!(d.tokens(1).unwrap(), ["[CLS]", "Ġ", "[SEP]", "[PAD]"]);
        std::fs::write(dir.path().join("vocab.json"), r#"{"a": 0, "b": 0}"#).unwrap();
        assert!(TokenDataset::open(dir.path())
            .unwrap_err()
            .to_string()
            .contains("share id 0"));
    }
}
