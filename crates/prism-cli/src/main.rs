//! `prism`: dataset-wide explainable AI for ONNX models.
//!
//! This binary only parses arguments and wires the library crates together; each command
//! lives in its own module under `cmd/`.

mod cmd;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Prism: explain ONNX classifiers, dataset-wide.
///
/// Load a model exported from PyTorch, TensorFlow or JAX, run it, attribute its decisions
/// (Zennit's LRP rules), render heatmaps and find its prediction strategies (SpRAy).
///
/// Quick start:
///
///   prism inspect model.onnx
///
///   prism predict model.onnx inputs.npy --output logits.npy --top-k 3
///
///   prism explain model.onnx inputs.npy --output relevance.npy --composite epsilon-plus-flat
#[derive(Parser, Debug)]
#[command(
    name = "prism",
    version,
    verbatim_doc_comment,
    propagate_version = true
)]
struct Cli {
    /// Worker threads (default: all cores, or RAYON_NUM_THREADS).
    #[arg(long, global = true, value_name = "N")]
    threads: Option<usize>,
    /// Log more (-v: info, -vv: debug). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

// The variants are parsed once per process; boxing the large ones would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    Inspect(cmd::inspect::InspectArgs),
    Predict(cmd::predict::PredictArgs),
    Explain(cmd::explain::ExplainArgs),
    Heatmap(cmd::heatmap::HeatmapArgs),
    Attribute(cmd::attribute::AttributeArgs),
    Merge(cmd::merge::MergeArgs),
    Concepts(cmd::concepts::ConceptsArgs),
    Tcav(cmd::tcav::TcavArgs),
    Project(cmd::project::ProjectArgs),
    Analyze(cmd::analyze::AnalyzeArgs),
    Demo(cmd::demo::DemoArgs),
    Evaluate(cmd::evaluate::EvaluateArgs),
    Serve(cmd::serve::ServeArgs),
}

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`prism inspect m.onnx --shapes | head`) like other Unix tools.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // `prism explain --help` ends with every method and its reference (from the library's
    // tables, so the list cannot drift from the names).
    let matches = Cli::command()
        .mut_subcommand("explain", |c| {
            c.after_long_help(cmd::method::methods_help())
        })
        .get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    if let Some(n) = cli.threads {
        if let Err(e) = rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()
        {
            eprintln!("error: cannot set up {n} threads: {e}");
            return ExitCode::from(2);
        }
    }
    let result = match &cli.command {
        Command::Inspect(a) => cmd::inspect::run(a),
        Command::Predict(a) => cmd::predict::run(a),
        Command::Explain(a) => cmd::explain::run(a),
        Command::Heatmap(a) => cmd::heatmap::run(a),
        Command::Attribute(a) => cmd::attribute::run(a),
        Command::Merge(a) => cmd::merge::run(a),
        Command::Concepts(a) => cmd::concepts::run(a),
        Command::Tcav(a) => cmd::tcav::run(a),
        Command::Project(a) => cmd::project::run(a),
        Command::Analyze(a) => cmd::analyze::run(a),
        Command::Demo(a) => cmd::demo::run(a),
        Command::Evaluate(a) => cmd::evaluate::run(a),
        Command::Serve(a) => cmd::serve::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the context chain joined, the way users read it.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
