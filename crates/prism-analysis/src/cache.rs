//! Stage-wise result cache.
//!
//! A stage's key is blake3 over: the cache format version, the stage's name, its parameters
//! (canonical JSON of the typed config, so every field counts) and the key of the stage before
//! it; the first key covers the exact bytes of the class's attributions as read (f32
//! little-endian, row by row), their rows and shape. So a changed parameter changes its stage's
//! key and every later one, and nothing earlier (unlike CoRelAy, whose keys omit non-identifier
//! parameters and round the data to 2 decimals).
//!
//! Blobs are files `<dir>/<key>.bin`: a magic line, a JSON header (arrays: name, type, shape,
//! byte range; blake3 of the payload), then little-endian payload. Written with
//! `prism_store::write_atomic` (temporary name, fsync, rename); a blob that fails its checksum
//! or whose arrays do not fit their byte ranges is a miss, recomputed and rewritten.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{AnalysisError, Result};

/// Version of the cache layout and of the stage semantics; bump when either changes.
pub const CACHE_FORMAT_VERSION: u32 = 1;

const MAGIC: &[u8] = b"PRISM-CACHE\n";

/// A stage key (blake3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(pub [u8; 32]);

impl Key {
    /// The key of a class's input: its rows, sample shape and exact attribution bytes.
    pub fn input(hasher: blake3::Hasher) -> Key {
        Key(*hasher.finalize().as_bytes())
    }

    /// The key of `stage` with `params`, following `upstream`. Parameters that JSON cannot
    /// represent are an error: a key without them would serve one stage's result for another's.
    pub fn derive<P: Serialize>(upstream: &Key, stage: &str, params: &P) -> Result<Key> {
        // serde_json of a typed struct is deterministic (field order is declaration order).
        let json = serde_json::to_vec(params).map_err(|source| AnalysisError::CacheEncoding {
            what: format!("the parameters of stage `{stage}`"),
            source,
        })?;
        let mut h = blake3::Hasher::new();
        h.update(&CACHE_FORMAT_VERSION.to_le_bytes());
        h.update(stage.as_bytes());
        h.update(&[0]);
        h.update(&(json.len() as u64).to_le_bytes());
        h.update(&json);
        h.update(&upstream.0);
        Ok(Key(*h.finalize().as_bytes()))
    }

    /// Hex form.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The parameters of a stage that draws random numbers, with the seed: the key's JSON is
/// `{"params": {…}, "seed": …}`.
#[derive(Debug, Serialize)]
pub struct Seeded<'a, T, S> {
    pub params: &'a T,
    pub seed: S,
}

/// An array stored in a blob.
#[derive(Debug, Clone, PartialEq)]
pub enum Array {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I32(Vec<i32>),
    U32(Vec<u32>),
    U8(Vec<u8>),
}

impl Array {
    fn tag(&self) -> &'static str {
        match self {
            Array::F32(_) => "f32",
            Array::F64(_) => "f64",
            Array::I32(_) => "i32",
            Array::U32(_) => "u32",
            Array::U8(_) => "u8",
        }
    }

    fn bytes(&self) -> Vec<u8> {
        match self {
            Array::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Array::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Array::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Array::U32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Array::U8(v) => v.clone(),
        }
    }

    fn parse(tag: &str, b: &[u8]) -> Option<Array> {
        let size = match tag {
            "f64" => 8,
            "u8" => 1,
            _ => 4,
        };
        if b.len() % size != 0 {
            return None;
        }
        Some(match tag {
            "f32" => Array::F32(
                b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            "i32" => Array::I32(
                b.chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            "u32" => Array::U32(
                b.chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            "u8" => Array::U8(b.to_vec()),
            "f64" => Array::F64(
                b.chunks_exact(8)
                    .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect(),
            ),
            _ => return None,
        })
    }
}

/// A stage's stored result: named arrays.
pub type Blob = Vec<(String, Array)>;

#[derive(Serialize, Deserialize)]
struct Header {
    arrays: Vec<(String, String, usize, usize)>,
    checksum: String,
}

/// The cache: a directory, or disabled.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: Option<PathBuf>,
}

impl Cache {
    /// A cache in `dir` (created on first write).
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Cache {
            dir: Some(dir.into()),
        }
    }

    /// The default cache of an analysis written to `output`: `OUTPUT.cache/` beside it.
    pub fn beside(output: &Path) -> Self {
        let mut dir = output.as_os_str().to_owned();
        dir.push(".cache");
        Cache::at(PathBuf::from(dir))
    }

    /// No caching.
    pub fn disabled() -> Self {
        Cache { dir: None }
    }

    /// The directory, if enabled.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn path(&self, key: &Key) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{}.bin", key.hex())))
    }

    /// Reads a blob; `None` on a miss or a damaged blob.
    pub fn get(&self, key: &Key) -> Option<Blob> {
        let data = std::fs::read(self.path(key)?).ok()?;
        let rest = data.strip_prefix(MAGIC)?;
        let nl = rest.iter().position(|&b| b == b'\n')?;
        let header: Header = serde_json::from_slice(&rest[..nl]).ok()?;
        let payload = &rest[nl + 1..];
        if blake3::hash(payload).to_hex().as_str() != header.checksum {
            return None;
        }
        header
            .arrays
            .iter()
            .map(|(name, tag, a, b)| {
                let bytes = payload.get(*a..*b)?;
                Some((name.clone(), Array::parse(tag, bytes)?))
            })
            .collect()
    }

    /// Stores a blob (temporary name, then rename). Does nothing when disabled.
    pub fn put(&self, key: &Key, blob: &Blob) -> Result<()> {
        let (Some(dir), Some(path)) = (self.dir.as_ref(), self.path(key)) else {
            return Ok(());
        };
        let err = |source| AnalysisError::Cache {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        let mut payload = Vec::new();
        let mut arrays = Vec::new();
        for (name, arr) in blob {
            let a = payload.len();
            payload.extend_from_slice(&arr.bytes());
            arrays.push((name.clone(), arr.tag().to_string(), a, payload.len()));
        }
        let header = Header {
            arrays,
            checksum: blake3::hash(&payload).to_hex().to_string(),
        };
        let header =
            serde_json::to_vec(&header).map_err(|source| AnalysisError::CacheEncoding {
                what: format!("the header of blob {}", key.hex()),
                source,
            })?;
        // Atomic: a blob is either absent or complete under its name (a kill leaves at most
        // a temporary file, which no key names); the checksum catches what the disk mangles.
        prism_store::write_atomic(&path, |f| {
            f.write_all(MAGIC)?;
            f.write_all(&header)?;
            f.write_all(b"\n")?;
            f.write_all(&payload)
        })
        .map_err(|e| AnalysisError::Cache {
            path: e.path,
            source: e.source,
        })
    }
}

/// Looks up an array by name in a blob.
pub fn take<'a>(blob: &'a Blob, name: &str) -> Option<&'a Array> {
    blob.iter().find(|(n, _)| n == name).map(|(_, a)| a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_round_trips_and_damaged_blob_misses() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path());
        let key = Key::derive(&Key([0; 32]), "test", &1u32).unwrap();
        let blob: Blob = vec![
            ("a".into(), Array::F32(vec![1.0, 2.5])),
            ("b".into(), Array::I32(vec![-1, 7])),
        ];
        cache.put(&key, &blob).unwrap();
        assert_eq!(cache.get(&key), Some(blob));
        let path = dir.path().join(format!("{}.bin", key.hex()));
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(cache.get(&key), None);
    }
}
