//! `prism merge`: joins the shards of a `prism attribute --shard` run into one attribution file
//! (`prism_store::run::merge_shards`), or those of a `prism concepts --shard` run into one
//! concepts file (`prism_store::merge_concepts`).

use std::path::PathBuf;

use prism_store::run::{merge_shards, MergeError};

/// Join the shards of a sharded `prism attribute` (or `prism concepts`) run into one file.
///
/// Every shard must be complete and come from the same run (same model, dataset, method and
/// settings); shards that overlap or leave samples out are refused, naming the files. The result
/// equals the file an unsharded run would have written.
///
/// Example:
///
///   prism merge attr.shard-000-of-002.h5 attr.shard-001-of-002.h5 --output attr.h5
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct MergeArgs {
    /// The shard files.
    #[arg(required = true)]
    pub shards: Vec<PathBuf>,
    /// The merged attribution file.
    #[arg(long, short)]
    pub output: PathBuf,
    /// Overwrite an existing output.
    #[arg(long)]
    pub force: bool,
}

/// Runs `prism merge`.
pub fn run(args: &MergeArgs) -> anyhow::Result<()> {
    if args
        .shards
        .first()
        .is_some_and(|s| prism_store::concepts_run::is_concepts_file(s))
    {
        let merged = prism_store::merge_concepts(&args.shards, &args.output, args.force)
            .map_err(merge_error)?;
        eprintln!(
            "merged {} concepts shards into {} ({} samples)",
            merged.shards,
            merged.output.display(),
            merged.samples
        );
        return Ok(());
    }
    let merged = merge_shards(&args.shards, &args.output, args.force).map_err(merge_error)?;
    eprintln!(
        "merged {} shards into {} ({} samples)",
        merged.shards,
        merged.output.display(),
        merged.samples
    );
    Ok(())
}

/// The library's errors, with the flags that fix them named.
fn merge_error(e: MergeError) -> anyhow::Error {
    match e {
        MergeError::OutputExists { path } => {
            anyhow::anyhow!("{} exists; pass --force to overwrite it", path.display())
        }
        MergeError::OutputIsShard => anyhow::anyhow!("--output must differ from the shard files"),
        e => e.into(),
    }
}
