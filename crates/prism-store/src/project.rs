//! ViRelAy project files: the YAML that ties a dataset, a label map, attribution files and
//! analysis files together for the viewer.
//!
//! ```yaml
//! project:
//!   name: CIFAR-10 VGG16
//!   model: VGG16
//!   label_map: label-map.json
//!   dataset:
//!     name: CIFAR-10
//!     type: hdf5                       # or image_directory, or tokens (Prism only)
//!     path: dataset.h5
//!     input_width: 32
//!     input_height: 32
//!     up_sampling_method: none         # none fill_zeros fill_ones edge_repeat mirror_edge
//!                                      # wrap_around resize
//!     down_sampling_method: none       # none center_crop resize
//!     # image_directory only, exactly one of:
//!     # label_index_regex / label_word_net_id_regex
//!   attributions:
//!     attribution_method: epsilon-gamma-box
//!     attribution_strategy: true_label # or predicted_label
//!     sources: [attribution.h5]
//!   analyses:
//!     - analysis_method: spectral_analysis
//!       sources: [analysis.h5]
//!   concepts:                          # optional, Prism only (ViRelAy ignores the key)
//!     sources: [concepts.h5]           # `prism concepts` files
//! ```
//!
//! Every path is relative to the YAML file's directory (ViRelAy's rule). [`Project`] keeps the
//! paths as written; [`Project::resolve_confined`] joins them to the directory and refuses any
//! that lead outside it (what a server needs). The field names are ViRelAy's (`model.py`),
//! which is the contract.
//!
//! `type: tokens` is Prism's own: `path` is a token dataset directory
//! ([`TokenDataset`](crate::dataset::TokenDataset)), `input_width` its number of token positions
//! and `input_height` 1. Only `prism serve` shows such projects; ViRelAy refuses them when it
//! loads them (`The specified dataset type "tokens" is unknown.`), and image projects are
//! written exactly as before.

// The errors carry the store's and the dataset's errors unboxed, like the rest of the crate
// (`StoreError` holds `hdf5::Error`); boxing them is left for one crate-wide change.
#![allow(clippy::result_large_err)]

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};

/// A ViRelAy project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Project {
    /// Display name (ViRelAy looks projects up by it, so keep names distinct).
    pub name: String,
    /// Display name of the model.
    pub model: String,
    /// Label map (JSON list of `{index, word_net_id, name}`), relative to the YAML.
    pub label_map: PathBuf,
    /// The dataset the attributions were computed on.
    pub dataset: DatasetSpec,
    /// Attribution files.
    pub attributions: AttributionsSpec,
    /// Analyses; each has a method name and one or more analysis files.
    #[serde(default)]
    pub analyses: Vec<AnalysisSpec>,
    /// Concepts files (`prism concepts`), Prism's own optional key: absent from the YAML when
    /// `None`, so projects without concepts are written exactly as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concepts: Option<ConceptsSpec>,
}

/// The dataset of a project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    /// Display name.
    pub name: String,
    /// HDF5 file (`data` N×C×H×W, `label`), a directory of images, or a token dataset.
    #[serde(rename = "type")]
    pub kind: DatasetKind,
    /// The HDF5 file, the image directory or the token dataset directory, relative to the YAML.
    pub path: PathBuf,
    /// Width of the model's input; images are resampled to it. Token datasets: the number of
    /// token positions.
    pub input_width: u32,
    /// Height of the model's input (1 for token datasets).
    pub input_height: u32,
    /// How smaller images are brought up to the input size.
    #[serde(rename = "up_sampling_method", default)]
    pub up_sampling: UpSampling,
    /// How larger images are brought down to the input size.
    #[serde(rename = "down_sampling_method", default)]
    pub down_sampling: DownSampling,
    /// Image directories: a regex on the image's path whose first group is the class number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_index_regex: Option<String>,
    /// Image directories: a regex on the image's path whose first group is the WordNet id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_word_net_id_regex: Option<String>,
}

/// Kind of dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetKind {
    /// One HDF5 file with `data` and `label`.
    Hdf5,
    /// A directory tree of images (sorted paths; optional `<path>_paths.txt`).
    ImageDirectory,
    /// A token dataset directory (`input_ids.npy`, a vocabulary, optional `attention_mask.npy`
    /// and `labels.npy`); Prism's own kind, which ViRelAy does not know.
    Tokens,
}

/// Up-sampling methods (ViRelAy's names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpSampling {
    #[default]
    None,
    FillZeros,
    FillOnes,
    EdgeRepeat,
    MirrorEdge,
    WrapAround,
    Resize,
}

/// Down-sampling methods (ViRelAy's names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DownSampling {
    #[default]
    None,
    CenterCrop,
    Resize,
}

/// The attribution files of a project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributionsSpec {
    /// How they were computed (display only), e.g. `epsilon-gamma-box`.
    #[serde(rename = "attribution_method")]
    pub method: String,
    /// Which class was explained: `true_label` or `predicted_label` (display only).
    #[serde(rename = "attribution_strategy")]
    pub strategy: String,
    /// Attribution files, relative to the YAML.
    pub sources: Vec<PathBuf>,
}

/// One analysis of a project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisSpec {
    /// Name shown in the viewer, e.g. `spectral_analysis`.
    #[serde(rename = "analysis_method")]
    pub method: String,
    /// Analysis files, relative to the YAML.
    pub sources: Vec<PathBuf>,
}

/// The concepts files of a project (`prism concepts`; see `docs/formats.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConceptsSpec {
    /// Concepts files, relative to the YAML.
    pub sources: Vec<PathBuf>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectYaml {
    project: Project,
}

impl Project {
    /// Reads and checks a project file (paths are kept as written).
    pub fn read(path: impl AsRef<Path>) -> Result<Project> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| StoreError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        })?;
        Project::from_yaml(&text, path)
    }

    /// Parses and checks project YAML; `origin` names the file in errors.
    pub fn from_yaml(text: &str, origin: &Path) -> Result<Project> {
        let parsed: ProjectYaml = serde_saphyr::from_str(text).map_err(|e| {
            // The parser's message comes with a source snippet over several lines; keep the
            // first line, which says what and where.
            let full = e.to_string();
            let first = full.lines().next().unwrap_or("").trim();
            let first = first.strip_prefix("error: ").unwrap_or(first);
            StoreError::Usage {
                path: origin.to_path_buf(),
                message: format!(
                    "not a ViRelAy project file: {first}; it needs a top-level `project:` with \
                     `name`, `model`, `label_map`, `dataset`, `attributions` and `analyses` \
                     (see docs/viewer.md)"
                ),
            }
        })?;
        parsed.project.check(origin)?;
        Ok(parsed.project)
    }

    /// The project as YAML, in ViRelAy's layout.
    pub fn to_yaml(&self) -> Result<String> {
        serde_saphyr::to_string(&ProjectYaml {
            project: self.clone(),
        })
        .map_err(|e| StoreError::Usage {
            path: PathBuf::from("<project>"),
            message: format!("cannot write the project as YAML: {e}"),
        })
    }

    /// Checks the project and writes it to `path`, under a temporary name first.
    /// Paths should be relative to `path`'s directory (see [`relative_path`]).
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        self.check(path)?;
        let text = self.to_yaml()?;
        crate::atomic::write_bytes_atomic(path, text.as_bytes())?;
        Ok(())
    }

    /// Every file path of the project, as written: label map, dataset, attributions, analyses,
    /// concepts files.
    pub fn paths(&self) -> Vec<&Path> {
        let mut out = vec![self.label_map.as_path(), self.dataset.path.as_path()];
        out.extend(self.attributions.sources.iter().map(PathBuf::as_path));
        for a in &self.analyses {
            out.extend(a.sources.iter().map(PathBuf::as_path));
        }
        if let Some(c) = &self.concepts {
            out.extend(c.sources.iter().map(PathBuf::as_path));
        }
        out
    }

    /// Resolves `relative` (a path from this project) against `dir` (the YAML's directory),
    /// refusing paths that lead outside `dir`: absolute paths, `..` past the top, and symbolic
    /// links pointing out. The file must exist.
    pub fn resolve_confined(dir: &Path, relative: &Path) -> Result<PathBuf> {
        confined(dir, relative)
    }

    fn check(&self, origin: &Path) -> Result<()> {
        let bad = |message: String| StoreError::Usage {
            path: origin.to_path_buf(),
            message,
        };
        if self.attributions.sources.is_empty() {
            return Err(bad(
                "`attributions.sources` lists no attribution file".into()
            ));
        }
        for a in &self.analyses {
            if a.sources.is_empty() {
                return Err(bad(format!(
                    "analysis `{}` lists no analysis file in `sources`",
                    a.method
                )));
            }
        }
        if self.concepts.as_ref().is_some_and(|c| c.sources.is_empty()) {
            return Err(bad(
                "`concepts.sources` lists no concepts file (leave `concepts` out instead)".into(),
            ));
        }
        if self.dataset.input_width == 0 || self.dataset.input_height == 0 {
            return Err(bad(format!(
                "dataset input size {}×{} must be at least 1×1",
                self.dataset.input_width, self.dataset.input_height
            )));
        }
        if self.dataset.kind == DatasetKind::ImageDirectory
            && self.dataset.label_index_regex.is_some()
                == self.dataset.label_word_net_id_regex.is_some()
        {
            return Err(bad(
                "an image_directory dataset needs exactly one of `label_index_regex` and \
                 `label_word_net_id_regex`"
                    .into(),
            ));
        }
        if self.paths().iter().any(|p| p.as_os_str().is_empty()) {
            return Err(bad("a path in the project is empty".into()));
        }
        Ok(())
    }
}

/// `to` expressed relative to the directory `from_dir` (both absolute, or both relative to the
/// same place), with `..` where needed; for writing project files next to their data.
pub fn relative_path(from_dir: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from_dir.components().collect();
    let target: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&target).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for c in &from[common..] {
        if !matches!(c, Component::CurDir) {
            out.push("..");
        }
    }
    for c in &target[common..] {
        out.push(c.as_os_str());
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

fn confined(dir: &Path, relative: &Path) -> Result<PathBuf> {
    let refuse = |why: &str| StoreError::Usage {
        path: relative.to_path_buf(),
        message: format!(
            "refused: {why}; every path in a project must stay inside the project's directory \
             `{}`",
            dir.display()
        ),
    };
    if relative.is_absolute() || relative.has_root() {
        return Err(refuse("the path is absolute"));
    }
    let base = dir.canonicalize().map_err(|source| StoreError::Io {
        action: "resolve",
        path: dir.to_path_buf(),
        source,
    })?;
    let joined = base.join(relative);
    let real = joined.canonicalize().map_err(|source| StoreError::Io {
        action: "resolve",
        path: joined.clone(),
        source,
    })?;
    if !real.starts_with(&base) {
        return Err(refuse("it leads outside (through `..` or a symbolic link)"));
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Project {
        Project {
            name: "CIFAR-10: VGG16 # test".into(),
            model: "VGG16".into(),
            label_map: "label-map.json".into(),
            dataset: DatasetSpec {
                name: "CIFAR-10".into(),
                kind: DatasetKind::Hdf5,
                path: "data/dataset.h5".into(),
                input_width: 32,
                input_height: 24,
                up_sampling: UpSampling::FillZeros,
                down_sampling: DownSampling::CenterCrop,
                label_index_regex: None,
                label_word_net_id_regex: None,
            },
            attributions: AttributionsSpec {
                method: "epsilon-gamma-box".into(),
                strategy: "true_label".into(),
                sources: vec!["attribution.h5".into()],
            },
            analyses: vec![
                AnalysisSpec {
                    method: "spectral_analysis".into(),
                    sources: vec!["analysis.h5".into()],
                },
                AnalysisSpec {
                    method: "absspectral".into(),
                    sources: vec!["a1.h5".into(), "a2.h5".into()],
                },
            ],
            concepts: None,
        }
    }

    #[test]
    fn project_round_trips_through_yaml() {
        let p = sample();
        let text = p.to_yaml().unwrap();
        let back = Project::from_yaml(&text, Path::new("p.yaml")).unwrap();
        assert_eq!(back, p);
        assert!(text.contains("attribution_method"), "{text}");
        assert!(text.contains("type: hdf5"), "{text}");
    }

    #[test]
    fn virelay_written_project_is_read() {
        // As ViRelAy's make_project.py writes it (no up/down-sampling defaults needed here).
        let text = "project:\n  name: Test\n  model: VGG16\n  label_map: label-map.json\n  \
                    dataset:\n    name: CIFAR-10\n    type: image_directory\n    path: images\n    \
                    input_width: 32\n    input_height: 32\n    down_sampling_method: resize\n    \
                    up_sampling_method: resize\n    label_index_regex: '.*/([0-9]+)/[^/]+$'\n  \
                    attributions:\n    attribution_method: lrp\n    attribution_strategy: \
                    true_label\n    sources:\n    - attribution.h5\n  analyses:\n  - \
                    analysis_method: spectral_analysis\n    sources:\n    - analysis.h5\n";
        let p = Project::from_yaml(text, Path::new("p.yaml")).unwrap();
        assert_eq!(p.dataset.kind, DatasetKind::ImageDirectory);
        assert_eq!(p.dataset.up_sampling, UpSampling::Resize);
        assert_eq!(
            p.dataset.label_index_regex.as_deref(),
            Some(".*/([0-9]+)/[^/]+$")
        );
        assert_eq!(p.analyses[0].sources, vec![PathBuf::from("analysis.h5")]);
    }

    #[test]
    fn token_projects_are_type_tokens_and_image_projects_are_unchanged() {
        let mut p = sample();
        p.dataset.kind = DatasetKind::Tokens;
        p.dataset.path = "tokens".into();
        p.dataset.input_height = 1;
        let text = p.to_yaml().unwrap();
        assert!(text.contains("type: tokens"), "{text}");
        assert_eq!(Project::from_yaml(&text, Path::new("p.yaml")).unwrap(), p);
        // an image project's YAML has no key ViRelAy does not know
        let text = sample().to_yaml().unwrap();
        for key in text
            .lines()
            .filter_map(|l| l.trim_start().split(':').next())
        {
            assert!(
                [
                    "project",
                    "name",
                    "model",
                    "label_map",
                    "dataset",
                    "type",
                    "path",
                    "input_width",
                    "input_height",
                    "up_sampling_method",
                    "down_sampling_method",
                    "attributions",
                    "attribution_method",
                    "attribution_strategy",
                    "sources",
                    "analyses",
                    "- analysis_method",
                    "- attribution.h5",
                    "- analysis.h5",
                    "- a1.h5",
                    "- a2.h5",
                ]
                .contains(&key),
                "{key} in {text}"
            );
        }
    }

    #[test]
    fn concepts_key_is_optional_and_adds_only_its_own_lines() {
        let without = sample().to_yaml().unwrap();
        assert!(!without.contains("concepts"), "{without}");
        let mut p = sample();
        p.concepts = Some(ConceptsSpec {
            sources: vec!["concepts.h5".into(), "more/c2.h5".into()],
        });
        let with = p.to_yaml().unwrap();
        // The project without concepts is written byte for byte as before; the key follows.
        let extra = with
            .strip_prefix(without.as_str())
            .unwrap_or_else(|| panic!("{with}"));
        assert_eq!(
            extra,
            "  concepts:\n    sources:\n    - concepts.h5\n    - more/c2.h5\n"
        );
        let back = Project::from_yaml(&with, Path::new("p.yaml")).unwrap();
        assert_eq!(back, p);
        assert!(back.paths().contains(&Path::new("more/c2.h5")));
        // An empty list and unknown keys under `concepts` are refused.
        p.concepts = Some(ConceptsSpec { sources: vec![] });
        let e = Project::from_yaml(&p.to_yaml().unwrap(), Path::new("p.yaml")).unwrap_err();
        assert!(e.to_string().contains("concepts.sources"), "{e}");
        let text = with.replace("  concepts:\n", "  concepts:\n    layers: 3\n");
        assert!(Project::from_yaml(&text, Path::new("p.yaml")).is_err());
    }

    #[test]
    fn malformed_projects_are_refused_with_the_reason() {
        let e = Project::from_yaml("project: {name: x}", Path::new("p.yaml")).unwrap_err();
        assert!(e.to_string().contains("p.yaml"), "{e}");
        let mut p = sample();
        p.dataset.kind = DatasetKind::ImageDirectory;
        let e = p
            .write(std::env::temp_dir().join("never.yaml"))
            .unwrap_err();
        assert!(e.to_string().contains("exactly one"), "{e}");
        let mut p = sample();
        p.attributions.sources.clear();
        assert!(Project::from_yaml(&p.to_yaml().unwrap(), Path::new("p.yaml")).is_err());
    }

    #[test]
    fn names_that_yaml_1_1_reads_as_other_types_are_quoted() {
        // ViRelAy reads projects with PyYAML (YAML 1.1), where yes/on/null/1.5 are not strings.
        for name in ["yes", "No", "on", "null", "~", "1.5", "12", "0x1f", "true"] {
            let mut p = sample();
            p.name = name.into();
            p.model = name.into();
            let text = p.to_yaml().unwrap();
            let line = text
                .lines()
                .find(|l| l.trim_start().starts_with("name:"))
                .unwrap();
            let value = line.trim_start().trim_start_matches("name:").trim();
            assert!(
                value.starts_with('"') || value.starts_with('\''),
                "{name} is written unquoted: {line}"
            );
            assert_eq!(
                Project::from_yaml(&text, Path::new("p.yaml")).unwrap().name,
                name
            );
        }
    }

    #[test]
    fn write_then_read_gives_the_same_project() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("project.yaml");
        sample().write(&path).unwrap();
        assert_eq!(Project::read(&path).unwrap(), sample());
    }

    #[test]
    fn paths_outside_the_project_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("proj");
        std::fs::create_dir(&inner).unwrap();
        std::fs::write(inner.join("a.h5"), b"x").unwrap();
        std::fs::write(dir.path().join("secret.h5"), b"x").unwrap();
        assert!(Project::resolve_confined(&inner, Path::new("a.h5")).is_ok());
        assert!(Project::resolve_confined(&inner, Path::new("./sub/../a.h5")).is_err()); // no sub
        assert!(Project::resolve_confined(&inner, Path::new("../secret.h5")).is_err());
        let abs = dir.path().join("secret.h5");
        assert!(Project::resolve_confined(&inner, &abs).is_err());
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path().join("secret.h5"), inner.join("link.h5"))
                .unwrap();
            let e = Project::resolve_confined(&inner, Path::new("link.h5")).unwrap_err();
            assert!(e.to_string().contains("outside"), "{e}");
        }
    }

    #[test]
    fn relative_paths_climb_where_needed() {
        assert_eq!(
            relative_path(Path::new("/a/b"), Path::new("/a/b/c/d.h5")),
            PathBuf::from("c/d.h5")
        );
        assert_eq!(
            relative_path(Path::new("/a/b"), Path::new("/a/x.h5")),
            PathBuf::from("../x.h5")
        );
    }
}

/// Errors of [`write_project`].
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("opening dataset {}", path.display())]
    Dataset {
        path: PathBuf,
        #[source]
        source: crate::dataset::DatasetError,
    },
    #[error(
        "{} is a .npy array, which ViRelAy cannot read; write it as an HDF5 dataset \
         (`data`, `label`) or an image folder first",
        path.display()
    )]
    NpyDataset { path: PathBuf },
    #[error("opening {}", path.display())]
    Attribution {
        path: PathBuf,
        #[source]
        source: StoreError,
    },
    #[error("reading label map {}", path.display())]
    LabelMap {
        path: PathBuf,
        #[source]
        source: StoreError,
    },
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{} is outside the project's directory {}; ViRelAy and `prism serve` only read \
         files beside or below the project file (move or link it there)",
        path.display(),
        dir.display()
    )]
    Outside { path: PathBuf, dir: PathBuf },
    #[error("writing {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: StoreError,
    },
    #[error("a project needs at least one attribution file")]
    NoAttribution,
    #[error("opening concepts file {}", path.display())]
    Concepts {
        path: PathBuf,
        #[source]
        source: StoreError,
    },
    #[error(
        "{} explains dataset sample {sample}, but the dataset {} has {len} samples; was it \
         computed on this dataset?",
        path.display(),
        dataset.display()
    )]
    ConceptsSamples {
        path: PathBuf,
        dataset: PathBuf,
        sample: u32,
        len: usize,
    },
    #[error(
        "{} holds {found} value(s) per sample, but the token dataset {} has {positions} token \
         position(s); were the attributions computed on this dataset?",
        attribution.display(),
        dataset.display()
    )]
    TokenPositions {
        attribution: PathBuf,
        dataset: PathBuf,
        found: usize,
        positions: usize,
    },
}

/// What [`write_project`] needs to describe one project.
#[derive(Debug, Clone)]
pub struct ProjectInputs<'a> {
    /// The dataset (HDF5 file, image folder or token dataset directory) the attributions were
    /// computed on.
    pub dataset: &'a Path,
    /// Attribution files; the first one's provenance names the method, target and model.
    pub attributions: &'a [PathBuf],
    pub analyses: &'a [PathBuf],
    /// Concepts files (`prism concepts`); each is opened and checked, and its samples must be
    /// the dataset's. None: the project has no `concepts` key.
    pub concepts: &'a [PathBuf],
    /// The label map; without one, one is written next to the project.
    pub label_map: Option<&'a Path>,
    /// The project file to write.
    pub output: &'a Path,
    pub name: String,
    /// Model name shown in the viewer; default: the attribution file's model file name.
    pub model_name: Option<String>,
    /// Name of the analysis method, e.g. `spectral_analysis`.
    pub analysis_method: &'a str,
}

/// A project's default name: the project file's stem (`project` if it has none).
pub fn default_project_name(output: &Path) -> String {
    output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "project".into())
}

/// What [`write_project`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectWritten {
    /// The label map written next to the project, if none was given.
    pub label_map_written: Option<PathBuf>,
}

fn absolute(p: &Path) -> std::result::Result<PathBuf, ProjectError> {
    std::path::absolute(p).map_err(|source| ProjectError::Io {
        action: "resolve",
        path: p.to_path_buf(),
        source,
    })
}

/// Writes a ViRelAy project (and a label map if none is given) for a dataset, its attribution
/// files and analyses. The method, strategy and model name come from the first attribution
/// file's [`Provenance`](crate::provenance::Provenance) (defaults for files without one).
/// Paths are written relative to the project; files outside its directory are refused. A token
/// dataset directory gives a `type: tokens` project (only `prism serve` shows those).
pub fn write_project(inp: &ProjectInputs<'_>) -> std::result::Result<ProjectWritten, ProjectError> {
    use crate::dataset::{Dataset, DatasetKind as StoreKind, DatasetOptions, TokenDataset};
    use crate::provenance::{Provenance, TargetSpec};
    use prism_attribution::CompositeSource;

    enum Opened {
        Images(Dataset),
        Tokens(TokenDataset),
    }

    let out_dir = absolute(inp.output)?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let dataset_error = |source| ProjectError::Dataset {
        path: inp.dataset.to_path_buf(),
        source,
    };
    // A token dataset (a directory with input_ids.npy and a vocabulary), else what
    // `Dataset::open` recognises.
    let opened = if TokenDataset::is_token_dataset(inp.dataset) {
        Opened::Tokens(TokenDataset::open(inp.dataset).map_err(dataset_error)?)
    } else {
        Opened::Images(
            Dataset::open(inp.dataset, &DatasetOptions::default()).map_err(dataset_error)?,
        )
    };
    let (kind, regex, w, h) = match &opened {
        Opened::Tokens(t) => (DatasetKind::Tokens, None, t.positions(), 1),
        Opened::Images(dataset) => {
            let [_, h, w] = dataset.sample_shape();
            match dataset.kind() {
                StoreKind::Hdf5 => (DatasetKind::Hdf5, None, w, h),
                StoreKind::ImageFolder => (
                    DatasetKind::ImageDirectory,
                    // The class sub-folder's name, which the label map below uses as WordNet id.
                    Some(r".*[/\\]([^/\\]+)[/\\][^/\\]+$".to_string()),
                    w,
                    h,
                ),
                StoreKind::Npy => {
                    return Err(ProjectError::NpyDataset {
                        path: inp.dataset.to_path_buf(),
                    })
                }
            }
        }
    };
    let first_path = inp
        .attributions
        .first()
        .ok_or(ProjectError::NoAttribution)?;
    let first =
        crate::AttributionFile::open(first_path).map_err(|source| ProjectError::Attribution {
            path: first_path.clone(),
            source,
        })?;
    let provenance = Provenance::read(&first)?;
    let method = match provenance.as_ref().map(|p| &p.settings.method.composite) {
        Some(CompositeSource::Builtin { name }) => name.clone(),
        Some(file @ CompositeSource::File { .. }) => file.to_string(),
        Some(CompositeSource::None) | None => "attribution".into(),
    };
    let predicted = provenance
        .as_ref()
        .is_some_and(|p| p.settings.target_spec() == Ok(TargetSpec::Predicted));
    let strategy = if predicted {
        "predicted_label"
    } else {
        "true_label"
    };
    let model_name = match (&inp.model_name, &provenance) {
        (Some(m), _) => m.clone(),
        (None, Some(p)) => p.model.clone(),
        (None, None) => "model".into(),
    };
    let n_classes = first.prediction_shape().get(1).copied().unwrap_or(1);
    if kind == DatasetKind::Tokens && first.sample_len() != w {
        return Err(ProjectError::TokenPositions {
            attribution: first_path.clone(),
            dataset: inp.dataset.to_path_buf(),
            found: first.sample_len(),
            positions: w,
        });
    }
    drop(first);
    let dataset_len = match &opened {
        Opened::Images(d) => d.len(),
        Opened::Tokens(t) => t.len(),
    };
    for path in inp.concepts {
        let file = crate::ConceptsFile::open(path).map_err(|source| ProjectError::Concepts {
            path: path.clone(),
            source,
        })?;
        if let Some(&sample) = file.index().last().filter(|&&s| s as usize >= dataset_len) {
            return Err(ProjectError::ConceptsSamples {
                path: path.clone(),
                dataset: inp.dataset.to_path_buf(),
                sample,
                len: dataset_len,
            });
        }
    }

    let mut label_map_written = None;
    let label_map = match inp.label_map {
        Some(p) => {
            crate::read_label_map(p).map_err(|source| ProjectError::LabelMap {
                path: p.to_path_buf(),
                source,
            })?;
            absolute(p)?
        }
        None => {
            let path = out_dir.join("label-map.json");
            let class_names = match &opened {
                Opened::Images(d) => d.class_names(),
                Opened::Tokens(_) => None,
            };
            let entries: Vec<serde_json::Value> = match class_names {
                Some(names) => names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| serde_json::json!({"index": i, "word_net_id": n, "name": n}))
                    .collect(),
                None => (0..n_classes)
                    .map(|i| {
                        serde_json::json!({
                            "index": i, "word_net_id": format!("{i:08}"), "name": format!("class-{i}")
                        })
                    })
                    .collect(),
            };
            let text = serde_json::to_string_pretty(&entries).map_err(|e| ProjectError::Io {
                action: "write",
                path: path.clone(),
                source: e.into(),
            })?;
            crate::atomic::write_bytes_atomic(&path, text.as_bytes()).map_err(StoreError::from)?;
            label_map_written = Some(path.clone());
            path
        }
    };
    let rel = |p: &Path| -> std::result::Result<PathBuf, ProjectError> {
        let p = absolute(p)?;
        if !p.starts_with(&out_dir) {
            return Err(ProjectError::Outside {
                path: p,
                dir: out_dir.clone(),
            });
        }
        Ok(relative_path(&out_dir, &p))
    };
    let project = Project {
        name: inp.name.clone(),
        model: model_name,
        label_map: rel(&label_map)?,
        dataset: DatasetSpec {
            name: inp
                .dataset
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "dataset".into()),
            kind,
            path: rel(inp.dataset)?,
            input_width: w as u32,
            input_height: h as u32,
            up_sampling: UpSampling::None,
            down_sampling: DownSampling::None,
            label_index_regex: None,
            label_word_net_id_regex: regex,
        },
        attributions: AttributionsSpec {
            method,
            strategy: strategy.into(),
            sources: inp
                .attributions
                .iter()
                .map(|p| rel(p))
                .collect::<std::result::Result<_, _>>()?,
        },
        analyses: if inp.analyses.is_empty() {
            Vec::new()
        } else {
            vec![AnalysisSpec {
                method: inp.analysis_method.to_string(),
                sources: inp
                    .analyses
                    .iter()
                    .map(|p| rel(p))
                    .collect::<std::result::Result<_, _>>()?,
            }]
        },
        concepts: if inp.concepts.is_empty() {
            None
        } else {
            Some(ConceptsSpec {
                sources: inp
                    .concepts
                    .iter()
                    .map(|p| rel(p))
                    .collect::<std::result::Result<_, _>>()?,
            })
        },
    };
    project
        .write(inp.output)
        .map_err(|source| ProjectError::Write {
            path: inp.output.to_path_buf(),
            source,
        })?;
    Ok(ProjectWritten { label_map_written })
}
