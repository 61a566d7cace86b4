//! `prism project`: writes a ViRelAy project file tying dataset, label map, attributions and
//! analyses together, for ViRelAy and `prism serve`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use prism_store::dataset::{Dataset, DatasetKind as StoreKind, DatasetOptions};
use prism_store::project::{
    relative_path, AnalysisSpec, AttributionsSpec, DatasetKind, DatasetSpec, DownSampling,
    UpSampling,
};
use prism_store::{AttributionFile, Project};

/// Write a ViRelAy project file (YAML) for a dataset, its attributions and analyses.
///
/// Paths in the project are written relative to the project file, so keep the files beside it
/// (or below it): ViRelAy and `prism serve` refuse paths that lead outside its directory. The
/// dataset must be a ViRelAy HDF5 dataset or an image folder (ViRelAy reads no .npy). Without
/// --label-map, one is written next to the project: the image folder's class names, or
/// `class-N` names in the category naming `prism analyze` uses without a label map.
///
/// Example:
///
///   prism project --dataset data.h5 --attribution attr.h5 --analysis analysis.h5 \
///       --label-map label-map.json --output project.yaml --name "MNIST demo"
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ProjectArgs {
    /// The dataset (HDF5 file or image folder) the attributions were computed on.
    #[arg(long)]
    pub dataset: PathBuf,
    /// Attribution file(s) (`prism attribute`).
    #[arg(long = "attribution", required = true)]
    pub attributions: Vec<PathBuf>,
    /// Analysis file(s) (`prism analyze`).
    #[arg(long = "analysis")]
    pub analyses: Vec<PathBuf>,
    /// ViRelAy label map (JSON list of {index, word_net_id, name}).
    #[arg(long)]
    pub label_map: Option<PathBuf>,
    /// The project file to write.
    #[arg(long, short)]
    pub output: PathBuf,
    /// Project name [default: the output's file stem].
    #[arg(long)]
    pub name: Option<String>,
    /// Model name shown in the viewer [default: from the attribution file].
    #[arg(long)]
    pub model_name: Option<String>,
    /// Name of the analysis method [default: spectral_analysis].
    #[arg(long, default_value = "spectral_analysis")]
    pub analysis_method: String,
    /// Overwrite an existing project file.
    #[arg(long)]
    pub force: bool,
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("cannot resolve {}", p.display()))
}

/// What `prism project` needs to describe one project.
pub struct ProjectInputs<'a> {
    pub dataset: &'a Path,
    pub attributions: &'a [PathBuf],
    pub analyses: &'a [PathBuf],
    pub label_map: Option<&'a Path>,
    pub output: &'a Path,
    pub name: String,
    pub model_name: Option<String>,
    pub analysis_method: &'a str,
}

/// Writes the project (and a label map if none is given). Shared with `prism demo`.
pub fn write_project(inp: &ProjectInputs<'_>) -> anyhow::Result<()> {
    let out_dir = absolute(inp.output)?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let dataset = Dataset::open(inp.dataset, &DatasetOptions::default())
        .with_context(|| format!("opening dataset {}", inp.dataset.display()))?;
    let [_, h, w] = dataset.sample_shape();
    let (kind, regex) = match dataset.kind() {
        StoreKind::Hdf5 => (DatasetKind::Hdf5, None),
        StoreKind::ImageFolder => (
            DatasetKind::ImageDirectory,
            // The class sub-folder's name, which the label map below uses as WordNet id.
            Some(r".*[/\\]([^/\\]+)[/\\][^/\\]+$".to_string()),
        ),
        StoreKind::Npy => bail!(
            "{} is a .npy array, which ViRelAy cannot read; write it as an HDF5 dataset \
             (`data`, `label`) or an image folder first",
            inp.dataset.display()
        ),
    };
    let first = AttributionFile::open(&inp.attributions[0])
        .with_context(|| format!("opening {}", inp.attributions[0].display()))?;
    let method = first
        .attr("prism_method")?
        .and_then(|v| v.as_str().map(str::to_string))
        .and_then(|m| {
            m.split_whitespace()
                .find_map(|kv| kv.strip_prefix("composite=").map(str::to_string))
        })
        .filter(|c| c != "none")
        .unwrap_or_else(|| "attribution".into());
    let strategy = match first
        .attr("prism_target")?
        .and_then(|v| v.as_str().map(str::to_string))
    {
        Some(t) if t == "predicted" => "predicted_label",
        _ => "true_label",
    };
    let model_name = inp.model_name.clone().unwrap_or_else(|| {
        first
            .attr("prism_model")
            .ok()
            .flatten()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "model".into())
    });
    let n_classes = first.prediction_shape().get(1).copied().unwrap_or(1);
    drop(first);

    let label_map = match inp.label_map {
        Some(p) => {
            prism_store::read_label_map(p)
                .with_context(|| format!("reading label map {}", p.display()))?;
            absolute(p)?
        }
        None => {
            let path = out_dir.join("label-map.json");
            let entries: Vec<serde_json::Value> = match dataset.class_names() {
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
            std::fs::write(&path, serde_json::to_string_pretty(&entries)?)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote label map {}", path.display());
            path
        }
    };
    let rel = |p: &Path| -> anyhow::Result<PathBuf> {
        let p = absolute(p)?;
        if !p.starts_with(&out_dir) {
            bail!(
                "{} is outside the project's directory {}; ViRelAy and `prism serve` only read \
                 files beside or below the project file (move or link it there)",
                p.display(),
                out_dir.display()
            );
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
                .collect::<anyhow::Result<_>>()?,
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
                    .collect::<anyhow::Result<_>>()?,
            }]
        },
    };
    project
        .write(inp.output)
        .with_context(|| format!("writing {}", inp.output.display()))?;
    Ok(())
}

/// Runs `prism project`.
pub fn run(args: &ProjectArgs) -> anyhow::Result<()> {
    if args.output.exists() && !args.force {
        bail!(
            "{} exists; pass --force to overwrite it",
            args.output.display()
        );
    }
    let name = args.name.clone().unwrap_or_else(|| {
        args.output
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "project".into())
    });
    write_project(&ProjectInputs {
        dataset: &args.dataset,
        attributions: &args.attributions,
        analyses: &args.analyses,
        label_map: args.label_map.as_deref(),
        output: &args.output,
        name,
        model_name: args.model_name.clone(),
        analysis_method: &args.analysis_method,
    })?;
    eprintln!("wrote {}", args.output.display());
    Ok(())
}
