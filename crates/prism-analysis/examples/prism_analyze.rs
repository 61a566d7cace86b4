//! `prism analyze` standalone: the CLI's own module (`crates/prism-cli/src/cmd/analyze.rs`)
//! behind a minimal `main`, so the command can be built, benchmarked and checked with this
//! crate alone:
//!
//! ```text
//! cargo run --release -p prism-analysis --example prism_analyze -- ATTRIBUTION.h5 --output ANALYSIS.h5
//! ```

#[path = "../../prism-cli/src/cmd/analyze.rs"]
mod analyze;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "prism analyze")]
struct Cli {
    #[command(flatten)]
    args: analyze::AnalyzeArgs,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    analyze::run(&Cli::parse().args)
}
