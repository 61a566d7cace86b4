//! `prism project`: writes a ViRelAy project file tying dataset, label map, attributions and
//! analyses together, for ViRelAy and `prism serve` (`prism_store::project::write_project`).

use std::path::PathBuf;

use anyhow::bail;
use prism_store::project::{default_project_name, write_project, ProjectInputs};

/// Write a ViRelAy project file (YAML) for a dataset, its attributions and analyses.
///
/// Paths in the project are written relative to the project file, so keep the files beside it
/// (or below it): ViRelAy and `prism serve` refuse paths that lead outside its directory. The
/// dataset must be a ViRelAy HDF5 dataset or an image folder (ViRelAy reads no .npy), or a
/// token dataset directory (input_ids.npy and a vocabulary; see docs/datasets.md): that gives a
/// `type: tokens` project, which `prism serve` shows as text coloured by relevance and ViRelAy
/// refuses. Without --label-map, one is written next to the project: the image folder's class
/// names, or `class-N` names in the category naming `prism analyze` uses without a label map.
///
/// Examples:
///
///   prism project --dataset data.h5 --attribution attr.h5 --analysis analysis.h5 \
///       --label-map label-map.json --output project.yaml --name "MNIST demo"
///
///   prism project --dataset data.h5 --attribution attr.h5 --analysis analysis.h5 \
///       --concepts concepts.h5 --output project.yaml
///
///   prism project --dataset tokens/ --attribution attr.h5 --analysis analysis.h5 \
///       --output project.yaml --name "BERT sentiment"
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ProjectArgs {
    /// The dataset (HDF5 file, image folder or token dataset directory) the attributions were
    /// computed on.
    #[arg(long)]
    pub dataset: PathBuf,
    /// Attribution file(s) (`prism attribute`).
    #[arg(long = "attribution", required = true)]
    pub attributions: Vec<PathBuf>,
    /// Analysis file(s) (`prism analyze`).
    #[arg(long = "analysis")]
    pub analyses: Vec<PathBuf>,
    /// Concepts file(s) (`prism concepts`), shown in the viewer's concept panel; repeatable.
    /// Each is checked (complete, format version, samples within the dataset). ViRelAy ignores
    /// them.
    #[arg(long = "concepts", value_name = "FILE")]
    pub concepts: Vec<PathBuf>,
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

/// Runs `prism project`.
pub fn run(args: &ProjectArgs) -> anyhow::Result<()> {
    if args.output.exists() && !args.force {
        bail!(
            "{} exists; pass --force to overwrite it",
            args.output.display()
        );
    }
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| default_project_name(&args.output));
    let written = write_project(&ProjectInputs {
        dataset: &args.dataset,
        attributions: &args.attributions,
        analyses: &args.analyses,
        concepts: &args.concepts,
        label_map: args.label_map.as_deref(),
        output: &args.output,
        name,
        model_name: args.model_name.clone(),
        analysis_method: &args.analysis_method,
    })?;
    if let Some(p) = written.label_map_written {
        eprintln!("wrote label map {}", p.display());
    }
    eprintln!("wrote {}", args.output.display());
    Ok(())
}
