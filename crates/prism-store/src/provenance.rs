//! Provenance: what produced a file, as typed records with exactly one writer and one reader.
//!
//! Prism records how a file was made in root attributes named `prism_*`, which ViRelAy
//! ignores. Those names are private to this module: everything else reads and writes the typed
//! records below, so a name, a type or an order cannot drift between the writer (`attribute`,
//! `merge`) and the readers (`merge`, `project`, the tests).
//!
//! The attributes are written exactly as Prism has always written them (same names, HDF5 types,
//! values and creation order), so files stay bit-identical: the creation order is part of the
//! file's bytes, which is why [`ProvenanceOrder`] exists.
//!
//! The method is a typed `prism_attribution::MethodSpec`: written with its `Display` (the
//! historic description, byte for byte) and read back with its `FromStr`, so no other crate
//! parses description text.

use std::str::FromStr;

use prism_attribution::{MethodSpec, RecordMode};
use serde::{Deserialize, Serialize};

use crate::analysis::AnalysisWriter;
use crate::attribution::{AttributionFile, AttributionWriter};
use crate::error::{Result, StoreError};
use crate::h5util::AttrValue;

/// The attribute names, in one place.
pub(crate) mod name {
    pub const COMPLETE: &str = "prism_complete";
    pub const VERSION: &str = "prism_version";
    pub const FORMAT_VERSION: &str = "prism_format_version";
    pub const RUN_KEY: &str = "prism_run_key";
    pub const BASE_KEY: &str = "prism_base_key";
    pub const SETTINGS: &str = "prism_settings";
    pub const MODEL: &str = "prism_model";
    pub const MODEL_BLAKE3: &str = "prism_model_blake3";
    pub const DATASET: &str = "prism_dataset";
    pub const DATASET_FINGERPRINT: &str = "prism_dataset_fingerprint";
    pub const METHOD: &str = "prism_method";
    pub const TARGET: &str = "prism_target";
    pub const LABEL_SOURCE: &str = "prism_label_source";
    pub const TOTAL_SAMPLES: &str = "prism_total_samples";
    pub const SHARD_INDEX: &str = "prism_shard_index";
    pub const SHARD_COUNT: &str = "prism_shard_count";
    pub const PARAMETERS: &str = "prism_parameters";
    pub const SOURCE: &str = "prism_source";
    pub const GENERATOR: &str = "prism_generator";
}

/// The Prism version written into every file (the workspace's version).
pub const PRISM_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Which slice of the dataset a run covers: shard `index` of `count` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// A shard, if `index < count`.
    pub fn new(index: usize, count: usize) -> Option<Shard> {
        (index < count).then_some(Shard { index, count })
    }
}

/// A shard spelled other than `I/N` with `0 ≤ I < N`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shard takes I/N with 0 ≤ I < N (e.g. 0/4), got `{0}`")]
pub struct ShardParseError(pub String);

impl FromStr for Shard {
    type Err = ShardParseError;

    /// `I/N`: shard `I` (0-based) of `N`.
    fn from_str(s: &str) -> std::result::Result<Self, ShardParseError> {
        let bad = || ShardParseError(s.to_string());
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse::<usize>().map_err(|_| bad())?,
            n.trim().parse::<usize>().map_err(|_| bad())?,
        );
        Shard::new(index, count).ok_or_else(bad)
    }
}

/// The method in the settings: its description text (`MethodSpec`'s `Display`, which the run
/// keys hash and `prism_method` holds), read back with `FromStr`.
pub(crate) mod method_text {
    use prism_attribution::MethodSpec;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(m: &MethodSpec, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(m)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<MethodSpec, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The record mode in the settings: its command-line spelling (`channels`, `maps`).
mod record_mode {
    use prism_attribution::RecordMode;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(m: &RecordMode, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(m.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<RecordMode, D::Error> {
        RecordMode::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// What a run records at hidden nodes (`prism attribute --record`): part of the settings, so
/// a run with other record settings is another run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordSettings {
    /// Node-name globs (or tensor names), as given (`prism_attribution::Record::patterns`).
    pub patterns: Vec<String>,
    /// Per channel or whole.
    #[serde(with = "record_mode")]
    pub mode: RecordMode,
    /// Channels per row in the top tables (at least 1).
    pub top_k: usize,
}

/// The attribution target of a run: the dataset's labels, the predicted class or one class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetSpec {
    Label,
    Predicted,
    Class(usize),
}

impl FromStr for TargetSpec {
    type Err = String;

    /// `label` (or `labels`), `predicted` or a class number.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "label" | "labels" => Ok(TargetSpec::Label),
            "predicted" => Ok(TargetSpec::Predicted),
            t => t.parse().map(TargetSpec::Class).map_err(|_| {
                format!("a target is `label`, `predicted` or a class number, not `{t}`")
            }),
        }
    }
}

/// Where the `label` dataset of an attribution file comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelSource {
    /// The dataset's labels.
    Dataset,
    /// The model's predictions (the dataset has no label for some sample).
    Predicted,
}

impl LabelSource {
    fn as_str(self) -> &'static str {
        match self {
            LabelSource::Dataset => "dataset",
            LabelSource::Predicted => "predicted",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "dataset" => Some(LabelSource::Dataset),
            "predicted" => Some(LabelSource::Predicted),
            _ => None,
        }
    }
}

/// Everything that determines a run's result: equal settings ⇒ the same output file.
///
/// Serialised as JSON (field order as declared) into `run.json` and `prism_settings`, and
/// hashed into the run keys, so the fields, their order and their spelling are part of the
/// format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    pub format: u32,
    pub model_blake3: String,
    pub dataset_fingerprint: String,
    /// Samples in the dataset (before `--limit`).
    pub dataset_len: usize,
    /// The method, with every parameter (serialised as its description text).
    #[serde(with = "method_text")]
    pub method: MethodSpec,
    /// The target as the user spelled it (`label`, `labels`, `predicted`, `3`): the key
    /// hashes this text, so it is kept verbatim; [`RunSettings::target_spec`] parses it.
    pub target: String,
    pub batch_size: usize,
    /// Samples attributed (the first `limit` of the dataset, before sharding).
    pub limit: usize,
    /// gzip level of the final `attribution` dataset.
    pub compression: Option<u8>,
    /// The hidden nodes recorded (`None`: none). Left out of the JSON when `None`, so the
    /// settings and keys of runs without recording are those Prism always wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<RecordSettings>,
}

impl RunSettings {
    /// The version of the settings record (`format`).
    pub const FORMAT: u32 = 1;

    /// The JSON of the settings (what `prism_settings` holds and the keys hash).
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// Key of the unsharded run (and of merged shards).
    pub fn base_key(&self) -> Result<String, serde_json::Error> {
        Ok(blake3::hash(self.to_json()?.as_bytes())
            .to_hex()
            .to_string())
    }

    /// Key of this shard's run (the base key without a shard).
    pub fn run_key(&self, shard: Option<Shard>) -> Result<String, serde_json::Error> {
        let base = self.base_key()?;
        Ok(match shard {
            None => base,
            Some(s) => {
                let t = format!("{base}:{}/{}", s.index, s.count);
                blake3::hash(t.as_bytes()).to_hex().to_string()
            }
        })
    }

    /// The target, parsed.
    pub fn target_spec(&self) -> std::result::Result<TargetSpec, String> {
        self.target.parse()
    }
}

/// The provenance of an attribution file written by `prism attribute` or `prism merge`.
#[derive(Debug, Clone, PartialEq)]
pub struct Provenance {
    /// Whether the file is complete (`prism_complete = 1`). Only complete files are ever
    /// renamed into place; the flag lets readers tell them from foreign files.
    pub complete: bool,
    /// Prism version that wrote the file.
    pub version: String,
    /// Format version of the file ([`crate::FORMAT_VERSION`]).
    pub format_version: i64,
    /// Key of this file's run (a shard's own key, or the base key for whole runs).
    pub run_key: String,
    /// Key of the unsharded run: equal for every shard of one run.
    pub base_key: String,
    /// The settings (model hash, dataset fingerprint, method, target, …).
    pub settings: RunSettings,
    /// The model's file name.
    pub model: String,
    /// The dataset's file name.
    pub dataset: String,
    pub label_source: LabelSource,
    /// Samples of the whole run (all shards together).
    pub total_samples: usize,
    /// The shard this file holds; `None` for a whole run or merged shards.
    pub shard: Option<Shard>,
}

/// The order in which the attributes are created. It is part of the file's bytes, and
/// `prism attribute` and `prism merge` have always written different orders, so both are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvenanceOrder {
    /// `prism attribute`: the completeness flag first.
    Run,
    /// `prism merge`: the first shard's record copied, then the run's own key, shard and flag.
    Merged,
}

impl Provenance {
    /// The record of a run on these settings.
    pub fn attributes(&self) -> Result<Vec<(&'static str, AttrValue)>, serde_json::Error> {
        let (shard_index, shard_count) = self.shard.map_or((0, 1), |s| (s.index, s.count));
        let s = &self.settings;
        Ok(vec![
            (name::COMPLETE, AttrValue::Int(i64::from(self.complete))),
            (name::VERSION, AttrValue::Str(self.version.clone())),
            (name::FORMAT_VERSION, AttrValue::Int(self.format_version)),
            (name::RUN_KEY, AttrValue::Str(self.run_key.clone())),
            (name::BASE_KEY, AttrValue::Str(self.base_key.clone())),
            (name::SETTINGS, AttrValue::Str(s.to_json()?)),
            (name::MODEL, AttrValue::Str(self.model.clone())),
            (name::MODEL_BLAKE3, AttrValue::Str(s.model_blake3.clone())),
            (name::DATASET, AttrValue::Str(self.dataset.clone())),
            (
                name::DATASET_FINGERPRINT,
                AttrValue::Str(s.dataset_fingerprint.clone()),
            ),
            (name::METHOD, AttrValue::Str(s.method.to_string())),
            (name::TARGET, AttrValue::Str(s.target.clone())),
            (
                name::LABEL_SOURCE,
                AttrValue::Str(self.label_source.as_str().into()),
            ),
            (
                name::TOTAL_SAMPLES,
                AttrValue::Int(self.total_samples as i64),
            ),
            (name::SHARD_INDEX, AttrValue::Int(shard_index as i64)),
            (name::SHARD_COUNT, AttrValue::Int(shard_count as i64)),
        ])
    }

    /// Writes the record as root attributes of `w`: the one writer.
    pub fn write(&self, w: &mut AttributionWriter, order: ProvenanceOrder) -> Result<()> {
        let attrs = self.attributes().map_err(|e| StoreError::Usage {
            path: w.path().to_path_buf(),
            message: format!("cannot serialise the run's settings: {e}"),
        })?;
        match order {
            ProvenanceOrder::Run => {
                for (n, v) in &attrs {
                    w.set_attr(n, v)?;
                }
            }
            ProvenanceOrder::Merged => {
                // The record first (without the run's own key, shard and flag), then those.
                let own = [
                    name::RUN_KEY,
                    name::SHARD_INDEX,
                    name::SHARD_COUNT,
                    name::COMPLETE,
                ];
                for (n, v) in attrs.iter().filter(|(n, _)| !own.contains(n)) {
                    w.set_attr(n, v)?;
                }
                for n in own {
                    if let Some((_, v)) = attrs.iter().find(|(m, _)| *m == n) {
                        w.set_attr(n, v)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads the record of `f`: the one reader. `None` for a file that Prism's run protocol
    /// did not write (no run key), an error for a record that is partial or malformed.
    pub fn read(f: &AttributionFile) -> Result<Option<Provenance>> {
        let Some(run_key) = f.attr(name::RUN_KEY)? else {
            return Ok(None);
        };
        let bad = |attr: &str, what: &str| StoreError::Invalid {
            path: f.path().to_path_buf(),
            dataset: format!("/@{attr}"),
            message: format!(
                "{what}; the file's Prism provenance is damaged (rerun `prism attribute`)"
            ),
        };
        let string = |attr: &'static str, v: Option<AttrValue>| match v {
            Some(AttrValue::Str(s)) => Ok(s),
            Some(_) => Err(bad(attr, "it must be a string")),
            None => Err(bad(attr, "it is missing")),
        };
        let int = |attr: &'static str, v: Option<AttrValue>| match v {
            Some(AttrValue::Int(i)) => Ok(i),
            Some(_) => Err(bad(attr, "it must be an integer")),
            None => Err(bad(attr, "it is missing")),
        };
        let count = |attr: &'static str, v: Option<AttrValue>| {
            int(attr, v)
                .and_then(|i| usize::try_from(i).map_err(|_| bad(attr, "it must not be negative")))
        };
        let run_key = string(name::RUN_KEY, Some(run_key))?;
        let complete = matches!(f.attr(name::COMPLETE)?, Some(AttrValue::Int(1)));
        let settings_json = string(name::SETTINGS, f.attr(name::SETTINGS)?)?;
        let settings: RunSettings = serde_json::from_str(&settings_json).map_err(|e| {
            bad(
                name::SETTINGS,
                &format!("it is not a settings record ({e})"),
            )
        })?;
        let label_source = string(name::LABEL_SOURCE, f.attr(name::LABEL_SOURCE)?)?;
        let label_source = LabelSource::parse(&label_source)
            .ok_or_else(|| bad(name::LABEL_SOURCE, "it must be `dataset` or `predicted`"))?;
        let shard_index = count(name::SHARD_INDEX, f.attr(name::SHARD_INDEX)?)?;
        let shard_count = count(name::SHARD_COUNT, f.attr(name::SHARD_COUNT)?)?;
        let shard = match (shard_index, shard_count) {
            (0, 1) => None,
            (i, n) => Some(
                Shard::new(i, n)
                    .ok_or_else(|| bad(name::SHARD_INDEX, "it must be below the shard count"))?,
            ),
        };
        Ok(Some(Provenance {
            complete,
            version: string(name::VERSION, f.attr(name::VERSION)?)?,
            format_version: int(name::FORMAT_VERSION, f.attr(name::FORMAT_VERSION)?)?,
            run_key,
            base_key: string(name::BASE_KEY, f.attr(name::BASE_KEY)?)?,
            settings,
            model: string(name::MODEL, f.attr(name::MODEL)?)?,
            dataset: string(name::DATASET, f.attr(name::DATASET)?)?,
            label_source,
            total_samples: count(name::TOTAL_SAMPLES, f.attr(name::TOTAL_SAMPLES)?)?,
            shard,
        }))
    }
}

/// A file whose root attributes Prism writes (analysis and attribution files).
pub trait RootAttributes {
    /// Sets one root attribute.
    fn set_root_attr(&mut self, name: &str, value: &AttrValue) -> Result<()>;
}

impl RootAttributes for AnalysisWriter {
    fn set_root_attr(&mut self, name: &str, value: &AttrValue) -> Result<()> {
        self.set_attr(name, value)
    }
}

impl RootAttributes for AttributionWriter {
    fn set_root_attr(&mut self, name: &str, value: &AttrValue) -> Result<()> {
        self.set_attr(name, value)
    }
}

/// The provenance of an analysis file (`prism analyze`): version, format, the analysis
/// parameters (the configuration as TOML) and the attribution file analysed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalysisProvenance {
    pub version: String,
    pub format_version: i64,
    /// The effective configuration, as TOML.
    pub parameters: String,
    /// The attribution file's name (without its directory).
    pub source: String,
}

impl AnalysisProvenance {
    /// The record of this Prism version for `parameters` and `source`.
    pub fn new(parameters: String, source: String) -> Self {
        AnalysisProvenance {
            version: PRISM_VERSION.into(),
            format_version: crate::FORMAT_VERSION,
            parameters,
            source,
        }
    }

    /// Writes `prism_version`, `prism_format_version`, `prism_parameters` and `prism_source`,
    /// in that order (the bytes `prism analyze` has always written).
    pub fn write(&self, w: &mut impl RootAttributes) -> Result<()> {
        w.set_root_attr(name::VERSION, &AttrValue::Str(self.version.clone()))?;
        w.set_root_attr(name::FORMAT_VERSION, &AttrValue::Int(self.format_version))?;
        w.set_root_attr(name::PARAMETERS, &AttrValue::Str(self.parameters.clone()))?;
        write_source(w, &self.source)
    }
}

/// Writes only `prism_source` (what produced a file that has no other provenance, e.g. the
/// viewer's synthetic example: `synthetic`).
pub fn write_source(w: &mut impl RootAttributes, source: &str) -> Result<()> {
    w.set_root_attr(name::SOURCE, &AttrValue::Str(source.into()))
}

/// Writes only `prism_generator`: the program that generated a synthetic file (the analysis
/// crate's `synthetic_attribution` example).
pub fn write_generator(w: &mut impl RootAttributes, generator: &str) -> Result<()> {
    w.set_root_attr(name::GENERATOR, &AttrValue::Str(generator.into()))
}

#[cfg(test)]
mod shard_tests {
    use super::*;

    #[test]
    fn shard_parses_index_of_count() {
        assert_eq!("2/8".parse(), Ok(Shard { index: 2, count: 8 }));
        assert_eq!(" 0 / 1 ".parse(), Ok(Shard { index: 0, count: 1 }));
        for bad in ["4/4", "1", "a/2", "-1/2", ""] {
            assert_eq!(
                bad.parse::<Shard>(),
                Err(ShardParseError(bad.to_string())),
                "{bad}"
            );
        }
    }
}
