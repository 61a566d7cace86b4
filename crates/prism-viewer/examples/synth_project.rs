//! Writes a generated ViRelAy project for the viewer's browser and load tests.
//!
//! ```sh
//! cargo run -p prism-viewer --example synth_project -- OUT_DIR            # small demo
//! cargo run -p prism-viewer --example synth_project -- OUT_DIR --points 1000000
//! cargo run -p prism-viewer --example synth_project -- OUT_DIR --tokens 12   # a token project
//! cargo run -p prism-viewer --example synth_project -- OUT_DIR --classes 2 --per-class 3 --size 4
//! ```
//! Prints the path of the project YAML.

use std::path::PathBuf;
use std::process::ExitCode;

use prism_viewer::synthetic::SyntheticProject;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage =
        "usage: synth_project OUT_DIR [--points N] [--classes C --per-class K] [--size S] [--tokens T]";
    let Some(out) = args.first().map(PathBuf::from) else {
        eprintln!("{usage}");
        return ExitCode::from(2);
    };
    let mut spec = SyntheticProject::demo();
    let mut it = args[1..].iter();
    while let Some(flag) = it.next() {
        let Some(value) = it.next().and_then(|v| v.parse::<usize>().ok()) else {
            eprintln!("{flag} needs a number; {usage}");
            return ExitCode::from(2);
        };
        match flag.as_str() {
            "--points" => spec = SyntheticProject::large(value),
            "--classes" => spec.classes = value,
            "--per-class" => spec.per_class = value,
            "--size" => spec.size = value,
            "--tokens" => {
                spec.dataset = prism_store::project::DatasetKind::Tokens;
                spec.size = value;
                spec.name = "Synthetic tokens".into();
            }
            _ => {
                eprintln!("unknown flag {flag}; {usage}");
                return ExitCode::from(2);
            }
        }
    }
    match spec.write(&out) {
        Ok(yaml) => {
            println!("{}", yaml.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
