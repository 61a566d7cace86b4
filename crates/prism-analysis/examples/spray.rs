//! Runs the whole pipeline on an attribution file without the CLI (benchmarks, checks):
//!
//! ```text
//! cargo run --release -p prism-analysis --example spray -- IN.h5 OUT.h5 [CONFIG.toml]
//! ```
//!
//! Prints per-category timings and the eigengap-suggested k. Overwrites OUT.h5; no cache.

use prism_analysis::{analyze_file, AnalysisConfig, NoProgress, RunOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        return Err("usage: spray IN.h5 OUT.h5 [CONFIG.toml]".into());
    }
    let cfg = match args.get(2) {
        Some(p) => AnalysisConfig::from_toml(&std::fs::read_to_string(p)?)?,
        None => AnalysisConfig::default(),
    };
    let opts = RunOptions {
        force: true,
        ..RunOptions::default()
    };
    let t = std::time::Instant::now();
    let reports = analyze_file(args[0].as_ref(), args[1].as_ref(), &cfg, &opts, &NoProgress)?;
    for r in &reports {
        println!(
            "category {} n={} suggested_k={} seconds={:.3}",
            r.name, r.n, r.suggested_k, r.seconds
        );
    }
    println!("total_seconds={:.3}", t.elapsed().as_secs_f64());
    Ok(())
}
