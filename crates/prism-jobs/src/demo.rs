//! The demo: the whole story on bundled data, with nothing to download.
//!
//! The crate carries a real dataset and a model with a planted shortcut (`assets/demo/`, made
//! by `scripts/make_demo.py`): 10 000 MNIST digits, a quarter of the sevens marked with a small
//! square in the top-left corner, and a small CNN trained on them, which learned to rely on the
//! mark. [`run_demo`] attributes every sample (LRP, epsilon-plus-flat, true label), runs SpRAy
//! on each class, writes a ViRelAy project and reports, per class, the strategies found and any
//! cluster whose relevance sits in an image corner.

// The errors carry the store's, the dataset's and the analysis' errors unboxed, like prism-store
// (`StoreError` holds `hdf5::Error`); boxing them is left for one workspace-wide change.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use prism_analysis::{AnalysisConfig, AnalysisError, Cache, CategoryReport, RunOptions};
use prism_attribution::{CompositeSource, MethodSpec};
use prism_store::dataset::DatasetOptions;
use prism_store::project::{write_project, ProjectError, ProjectInputs};
use prism_store::{AnalysisFile, AttrValue, AttributionFile, StoreError};

use crate::attribute::{attribute_dataset, AttributeJob, AttributeOutcome, JobError, Method};
use crate::concepts::{concepts_dataset, ConceptsJob, ConceptsOutcome};
use crate::RunProgress;

/// The model with the planted shortcut.
pub const MODEL: &[u8] = include_bytes!("../../../assets/demo/mnist-cnn.onnx");
/// 10 000 MNIST digits (`data`, `label`, and the ground truth `artifact`).
pub const DATASET: &[u8] = include_bytes!("../../../assets/demo/mnist.h5");
/// The digits' label map.
pub const LABEL_MAP: &[u8] = include_bytes!("../../../assets/demo/label-map.json");

/// The demo's composite (also named in its messages).
pub const COMPOSITE: &str = "epsilon-plus-flat";
/// Samples per batch of the demo's attribution run.
pub const BATCH_SIZE: usize = 64;

/// Where and how to run the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Directory for the project and its files.
    pub output: PathBuf,
    /// Redo every step from scratch.
    pub force: bool,
}

/// Progress of the demo: its steps, the attribution run and the analysis.
pub trait DemoProgress {
    /// A step starts (`1/3 attributing …`).
    fn step(&mut self, _line: &str) {}
    /// Progress of the attribution run.
    fn attribution(&mut self) -> &mut dyn RunProgress;
    /// The attribution run ended.
    fn attributed(&mut self, _outcome: &AttributeOutcome) {}
    /// Progress of the analysis.
    fn analysis(&self) -> &dyn prism_analysis::Progress {
        &prism_analysis::NoProgress
    }
    /// The analysis file is written.
    fn analysed(&mut self, _output: &Path, _reports: &[CategoryReport]) {}
}

/// The demo's files and what SpRAy found.
#[derive(Debug)]
pub struct DemoReport {
    pub project: PathBuf,
    pub attribution: PathBuf,
    pub analysis: PathBuf,
    /// The relevance-maximisation file (`prism concepts`).
    pub concepts: PathBuf,
    pub findings: Vec<Finding>,
    /// The concept that carries the suspect cluster's relevance.
    pub concept: Option<ConceptFinding>,
}

/// Errors of the demo.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Attribute(#[from] JobError),
    #[error("the attribution run stopped before its end")]
    Stopped,
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
    #[error(transparent)]
    Project(#[from] ProjectError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the demo's method")]
    Method(#[from] prism_attribution::AttributionError),
    #[error(
        "{}: category {category} lists sample {sample}, which {} does not hold",
        analysis.display(),
        attribution.display()
    )]
    UnknownSample {
        analysis: PathBuf,
        attribution: PathBuf,
        category: String,
        sample: u32,
    },
}

/// Writes `bytes` to `path` unless it already holds exactly them.
fn put(path: &Path, bytes: &[u8]) -> Result<(), DemoError> {
    if std::fs::read(path).is_ok_and(|b| b == bytes) {
        return Ok(());
    }
    prism_store::write_bytes_atomic(path, bytes).map_err(StoreError::from)?;
    Ok(())
}

/// The demo's method: LRP with epsilon-plus-flat and Zennit's defaults otherwise (gradient
/// attributor, one-hot seed, canonizers on): what `prism attribute --composite
/// epsilon-plus-flat` records, so the demo's files equal the command's.
pub fn demo_method() -> Result<Method, prism_attribution::AttributionError> {
    let spec = MethodSpec {
        composite: CompositeSource::Builtin {
            name: COMPOSITE.into(),
        },
        ..MethodSpec::default()
    };
    Method::new(spec, None)
}

/// Runs the demo into `opts.output`: attribute, analyse, write the project, find shortcuts.
/// Rerunning reuses finished steps (the attribution run's own resumption, the analysis cache).
pub fn run_demo(
    opts: &DemoOptions,
    progress: &mut dyn DemoProgress,
) -> Result<DemoReport, DemoError> {
    let dir = &opts.output;
    std::fs::create_dir_all(dir).map_err(|source| DemoError::Io {
        action: "create",
        path: dir.clone(),
        source,
    })?;
    let model = dir.join("mnist-cnn.onnx");
    let dataset = dir.join("mnist.h5");
    let label_map = dir.join("label-map.json");
    let attribution = dir.join("attribution.h5");
    let analysis = dir.join("analysis.h5");
    let concepts = dir.join("concepts.h5");
    let project = dir.join("project.yaml");
    put(&model, MODEL)?;
    put(&dataset, DATASET)?;
    put(&label_map, LABEL_MAP)?;

    progress.step("1/4 attributing 10 000 digits (LRP epsilon-plus-flat, true label)");
    let job = AttributeJob {
        model: model.clone(),
        dataset: dataset.clone(),
        dataset_options: DatasetOptions::default(),
        output: attribution.clone(),
        target: "label".into(),
        batch_size: BATCH_SIZE,
        shard: None,
        limit: None,
        compression: None,
        prefetch: 2,
        force: opts.force,
        allow_nonfinite: false,
        record: None,
    };
    let outcome = attribute_dataset(&job, &demo_method()?, progress.attribution())?;
    progress.attributed(&outcome);
    if let AttributeOutcome::Stopped { .. } = outcome {
        return Err(DemoError::Stopped);
    }

    progress.step("2/4 SpRAy: clustering each class's attributions");
    let cfg = AnalysisConfig::default();
    cfg.validate()?;
    let mut category_names = BTreeMap::new();
    for e in prism_store::read_label_map(&label_map)? {
        category_names.insert(e.index, e.word_net_id);
    }
    let mut cache_dir = analysis.as_os_str().to_owned();
    cache_dir.push(".cache");
    let run_options = RunOptions {
        classes: None,
        category_names,
        cache: Cache::at(PathBuf::from(cache_dir)),
        force: true,
        ..RunOptions::default()
    };
    let reports = prism_analysis::analyze_file(
        &attribution,
        &analysis,
        &cfg,
        &run_options,
        progress.analysis(),
    )?;
    progress.analysed(&analysis, &reports);

    progress.step(
        "3/4 concepts: the most relevant and most active digits of every channel of both \
         convolutions (relevance maximisation)",
    );
    let cjob = ConceptsJob {
        model: model.clone(),
        dataset: dataset.clone(),
        dataset_options: DatasetOptions::default(),
        output: concepts.clone(),
        layers: CONCEPT_LAYERS.iter().map(|s| s.to_string()).collect(),
        target: "label".into(),
        batch_size: BATCH_SIZE,
        shard: None,
        limit: None,
        top_n: CONCEPT_TOP_N,
        crops: CONCEPT_TOP_N,
        sample_heatmaps: 1,
        prefetch: 2,
        force: opts.force,
        allow_nonfinite: false,
    };
    if let ConceptsOutcome::Stopped { .. } =
        concepts_dataset(&cjob, &demo_method()?, progress.attribution())?
    {
        return Err(DemoError::Stopped);
    }

    progress.step("4/4 writing the ViRelAy project");
    write_project(&ProjectInputs {
        dataset: &dataset,
        attributions: std::slice::from_ref(&attribution),
        analyses: std::slice::from_ref(&analysis),
        concepts: std::slice::from_ref(&concepts),
        label_map: Some(&label_map),
        output: &project,
        name: "Prism demo: MNIST with a planted shortcut".into(),
        model_name: Some("MNIST CNN (shortcut planted in class 7)".into()),
        analysis_method: "spectral_analysis",
    })?;
    let findings = findings(&attribution, &analysis)?;
    let concept = match suspect_of(&findings) {
        Some((f, c)) => concept_finding(&concepts, &attribution, &analysis, f, c)?,
        None => None,
    };
    Ok(DemoReport {
        project,
        attribution,
        analysis,
        concepts,
        findings,
        concept,
    })
}

impl DemoReport {
    /// The most suspicious cluster (the largest share of relevance in a corner), with its
    /// class's finding: what `prism demo --serve` opens the viewer on.
    pub fn suspect(&self) -> Option<(&Finding, &CornerCluster)> {
        suspect_of(&self.findings)
    }

    /// What SpRAy found, as the demo prints it: one line per class, then the suspects.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        s.push_str("\nWhat SpRAy found (eigengap-suggested number of strategies per class):\n");
        for f in &self.findings {
            s.push_str(&f.line());
            s.push('\n');
        }
        let suspects: Vec<&Finding> = self
            .findings
            .iter()
            .filter(|f| f.corner.is_some())
            .collect();
        if suspects.is_empty() {
            s.push_str("\nNo cluster concentrates its relevance in an image corner.\n");
        }
        for f in suspects {
            if let Some(c) = &f.corner {
                // Writing into a String cannot fail.
                let _ = writeln!(
                    s,
                    "\n=> {}: {} samples (cluster {} of {}) form their own strategy, \
                     relying on the {} corner ({:.0}% of their relevance there, {:.0}% for the \
                     rest of the class). A likely \"Clever Hans\" shortcut: look at them in the \
                     viewer.",
                    f.category,
                    c.size,
                    c.cluster,
                    f.clustering(),
                    c.corner,
                    100.0 * c.share,
                    100.0 * c.rest_share
                );
            }
        }
        if let Some(c) = &self.concept {
            let _ = writeln!(
                s,
                "\n=> The concept behind it (prism concepts): channel {} of {}. Its relevance \
                 peaks in the {} corner for {:.0}% of these samples ({:.0}% for the rest of \
                 the class), and it carries {:.1}% of their relevance at that layer ({:.1}% \
                 for the rest). {} of its {} most activating reference digits have their \
                 receptive-field crop in the {} corner{} See it in the concept view (`prism \
                 demo --serve`).",
                c.channel,
                c.layer,
                c.corner,
                100.0 * c.peaks_in_corner,
                100.0 * c.rest_peaks_in_corner,
                100.0 * c.share,
                100.0 * c.rest_share,
                c.in_corner,
                c.references,
                c.corner,
                if 2 * c.in_corner > c.references {
                    ": it responds to what sits there, the mark."
                } else {
                    "; its references do not single the mark out."
                }
            );
        }
        s
    }
}

/// The most suspicious cluster of `findings` (the largest share of relevance in a corner).
fn suspect_of(findings: &[Finding]) -> Option<(&Finding, &CornerCluster)> {
    findings
        .iter()
        .filter_map(|f| f.corner.as_ref().map(|c| (f, c)))
        .max_by(|a, b| a.1.share.total_cmp(&b.1.share))
}

/// The layers of the demo's concept step (both convolutions).
pub const CONCEPT_LAYERS: [&str; 2] = ["/0/Conv", "/3/Conv"];
/// References kept (and cropped) per channel in the demo.
pub const CONCEPT_TOP_N: usize = 8;

/// The concept (channel) that carries a suspect cluster's corner relevance, and where its
/// reference crops lie.
#[derive(Debug, Clone, PartialEq)]
pub struct ConceptFinding {
    pub layer: String,
    pub channel: usize,
    /// The share of the cluster's samples whose channel relevance peaks in the corner.
    pub peaks_in_corner: f64,
    /// The same for the rest of the class.
    pub rest_peaks_in_corner: f64,
    /// Mean share `R_c / Σ|R|` over the cluster's samples.
    pub share: f64,
    /// The same over the rest of the class.
    pub rest_share: f64,
    /// References looked at (the channel's most active samples, activation maximisation).
    pub references: usize,
    /// Of them, those whose receptive-field crop lies in the corner (its centre within the
    /// corner's third of the image).
    pub in_corner: usize,
    pub corner: &'static str,
}

/// The concept that carries the relevance of `finding`'s suspect `corner` cluster, from the
/// concepts file alone (no ground truth): among the channels of every layer whose relevance
/// peaks in that corner for at least 90 % of the cluster's samples and at most 10 % of the
/// rest of the class, the one with the most activation-maximisation references whose crop lies
/// in the corner (crops in the input pixels of `attribution`'s samples), then the one whose
/// mean share of the relevance grows most from the rest of the class to the cluster.
pub fn concept_finding(
    concepts: &Path,
    attribution: &Path,
    analysis: &Path,
    finding: &Finding,
    corner: &CornerCluster,
) -> Result<Option<ConceptFinding>, DemoError> {
    let (tables, maxima) = prism_store::concepts_run::read_concepts(concepts)?;
    let row_of: BTreeMap<u32, usize> = tables
        .index
        .iter()
        .enumerate()
        .map(|(r, &s)| (s, r))
        .collect();
    let file = AnalysisFile::open(analysis)?;
    let cat = file.category(&finding.category)?;
    let Some(clustering) = cat
        .clusterings
        .iter()
        .find(|cl| cl.name == finding.clustering())
    else {
        return Ok(None);
    };
    // The class's rows: in the cluster or not.
    let (mut inside, mut outside) = (Vec::new(), Vec::new());
    for (&s, &label) in cat.index.iter().zip(&clustering.labels) {
        if let Some(&r) = row_of.get(&s) {
            if label == corner.cluster {
                inside.push(r);
            } else {
                outside.push(r);
            }
        }
    }
    if inside.is_empty() || outside.is_empty() {
        return Ok(None);
    }
    let ci = CORNERS
        .iter()
        .position(|&n| n == corner.corner)
        .unwrap_or(0);
    // In corner `ci` of an h × w map: the same fifth as the relevance corners above.
    let in_corner = |y: usize, x: usize, h: usize, w: usize| {
        let (bh, bw) = (h.div_ceil(5), w.div_ceil(5));
        match ci {
            0 => y < bh && x < bw,
            1 => y < bh && x >= w - bw,
            2 => y >= h - bh && x < bw,
            _ => y >= h - bh && x >= w - bw,
        }
    };
    let [_, ih, iw] = AttributionFile::open(attribution)?.sample_shape();
    // A crop in the corner: its centre within the corner's third of the image.
    let crop_in_corner = |b: &[i32]| {
        let (cy, cx) = (f64::from(b[0] + b[1]) / 2.0, f64::from(b[2] + b[3]) / 2.0);
        let (top, left) = (cy < ih as f64 / 3.0, cx < iw as f64 / 3.0);
        let (bottom, right) = (cy >= 2.0 * ih as f64 / 3.0, cx >= 2.0 * iw as f64 / 3.0);
        match ci {
            0 => top && left,
            1 => top && right,
            2 => bottom && left,
            _ => bottom && right,
        }
    };
    let mut best: Option<ConceptFinding> = None;
    for (li, layer) in tables.layers.iter().enumerate() {
        let c = layer.info.channels();
        let (h, w) = match layer.info.shape[..] {
            [_, h, w] => (h, w),
            _ => continue,
        };
        let scores = prism_store::concepts_run::abs_norm_scores(&layer.relevance, c);
        for ch in 0..c {
            let peaks = |rows: &[usize]| {
                rows.iter()
                    .filter(|&&r| {
                        let l = layer.relevance_location[r * c + ch].max(0) as usize;
                        in_corner(l / w, l % w, h, w)
                    })
                    .count() as f64
                    / rows.len() as f64
            };
            let mean = |rows: &[usize]| {
                rows.iter()
                    .map(|&r| f64::from(scores[r * c + ch]))
                    .sum::<f64>()
                    / rows.len() as f64
            };
            let (p_in, p_out) = (peaks(&inside), peaks(&outside));
            if p_in < 0.9 || p_out > 0.1 {
                continue;
            }
            let m = &maxima[li].actmax;
            let refs: Vec<usize> = (0..m.crops.min(m.top_n))
                .map(|k| k * m.channels + ch)
                .filter(|&at| m.sample[at] >= 0)
                .collect();
            let found = ConceptFinding {
                layer: layer.info.node.clone(),
                channel: ch,
                peaks_in_corner: p_in,
                rest_peaks_in_corner: p_out,
                share: mean(&inside),
                rest_share: mean(&outside),
                references: refs.len(),
                in_corner: refs
                    .iter()
                    .filter(|&&at| crop_in_corner(&m.boxes[at * 4..at * 4 + 4]))
                    .count(),
                corner: corner.corner,
            };
            // The references in the corner first, then the gain in share.
            let key = |f: &ConceptFinding| (f.in_corner, f.share - f.rest_share);
            if best.as_ref().is_none_or(|b| {
                key(&found).0 > key(b).0 || (key(&found).0 == key(b).0 && key(&found).1 > key(b).1)
            }) {
                best = Some(found);
            }
        }
    }
    Ok(best)
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
    /// The name of the clustering the finding is about (`kmeans-02`).
    pub fn clustering(&self) -> String {
        clustering_name(self.k)
    }

    /// The class's line of the report.
    pub fn line(&self) -> String {
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

/// The name of SpRAy's k-means clustering with `k` clusters.
fn clustering_name(k: usize) -> String {
    format!("kmeans-{k:02}")
}

const CORNERS: [&str; 4] = ["top-left", "top-right", "bottom-left", "bottom-right"];

/// Per class: the clustering at the suggested k, and clusters whose mean normalised absolute
/// relevance puts a large share into one corner (a box of a fifth of the height and width)
/// while the rest of the class puts little there.
pub fn findings(attribution: &Path, analysis: &Path) -> Result<Vec<Finding>, DemoError> {
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
        // A category without the attribute (never written by Prism) counts as one strategy.
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
            .find(|c| c.name == clustering_name(k));
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
                None => {
                    return Err(DemoError::UnknownSample {
                        analysis: analysis.to_path_buf(),
                        attribution: attribution.to_path_buf(),
                        category: name,
                        sample: s,
                    })
                }
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
