//! `prism analyze`: SpRAy over an attribution file, written as a ViRelAy analysis file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::bail;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use prism_analysis::config::{EigenSolver, KnnMethod, UmapMetric, Variant};
use prism_analysis::{AnalysisConfig, Cache, ConfigOverrides, Progress, RunOptions};

/// Spectral relevance analysis (SpRAy) of every class of an attribution file.
///
/// Reads a ViRelAy attribution file (`attribution` N×C×H×W, `prediction`, `label`, optional
/// `index`) class by class, builds each class's kNN graph, takes the smallest eigenpairs of its
/// normalised Laplacian, clusters them (k-means and Ward for k = 2..30, DBSCAN, HDBSCAN) and
/// embeds them in 2-D (t-SNE, UMAP). Writes a ViRelAy analysis file; each category also gets
/// an eigengap score and a suggested number of clusters (`eigengap_suggested_k` attribute).
///
/// Results of every stage are cached next to the output (`ANALYSIS.h5.cache/`), keyed by the
/// exact input bytes and every parameter, so a rerun with a changed clustering parameter only
/// recomputes the clustering.
///
/// Example:
///
///   prism analyze attribution.h5 --output analysis.h5 --label-map label-map.json
///
///   prism analyze attribution.h5 --output analysis.h5 --variant absspectral \
///       --neighbors 16 --eigenvalues 16 --classes 0,3 --no-tsne --force
///
///   prism analyze attribution.h5 --output analysis.h5 --config spray.toml
///
/// Print the full configuration with defaults (a starting point for --config) with
/// `prism analyze --print-config`.
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct AnalyzeArgs {
    /// Attribution file (ViRelAy layout).
    #[arg(required_unless_present = "print_config")]
    pub attribution: Option<PathBuf>,
    /// Analysis file to write (ViRelAy layout).
    #[arg(long, short, required_unless_present = "print_config")]
    pub output: Option<PathBuf>,
    /// TOML configuration; flags given on the command line override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Overwrite an existing output file.
    #[arg(long)]
    pub force: bool,
    /// Only these classes (comma-separated class numbers).
    #[arg(long, value_delimiter = ',')]
    pub classes: Option<Vec<u32>>,
    /// ViRelAy label map (JSON); categories are then named by WordNet id.
    #[arg(long)]
    pub label_map: Option<PathBuf>,
    /// Cache directory [default: OUTPUT.cache next to the output].
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Do not read or write the cache.
    #[arg(long)]
    pub no_cache: bool,

    /// Preprocessing: spectral, absspectral, fullspectral or histogram [default: spectral].
    #[arg(long)]
    pub variant: Option<Variant>,
    /// Sum-pool attributions over P×P windows first [default: 1 = none].
    #[arg(long)]
    pub pool: Option<usize>,
    /// Neighbours of the kNN graph [default: 32].
    #[arg(long, short = 'n')]
    pub neighbors: Option<usize>,
    /// kNN search: auto (exact up to knn.approximate_above = 20 000 samples, approximate
    /// above), exact, or approximate (inverted-file index, seeded) [default: auto].
    #[arg(long)]
    pub knn: Option<KnnMethod>,
    /// Cells the approximate kNN searches per query (recall vs time) [default: 16].
    #[arg(long)]
    pub knn_nprobe: Option<usize>,
    /// Use RBF weights exp(-d²/2σ²) with this σ instead of binary edges.
    #[arg(long)]
    pub rbf_sigma: Option<f64>,
    /// Eigenpairs to keep [default: 32].
    #[arg(long, short = 'e')]
    pub eigenvalues: Option<usize>,
    /// Eigensolver: auto, dense or sparse [default: auto].
    #[arg(long)]
    pub eigen_solver: Option<EigenSolver>,
    /// Smallest and largest k of k-means and agglomerative clustering [default: 2 30].
    #[arg(long, num_args = 2, value_names = ["MIN", "MAX"])]
    pub k_range: Option<Vec<usize>>,
    /// DBSCAN radii [default: 0.2,0.3,…,3.0].
    #[arg(long, value_delimiter = ',')]
    pub dbscan_eps: Option<Vec<f64>>,
    /// HDBSCAN minimum cluster size [default: 5].
    #[arg(long)]
    pub hdbscan_min_cluster_size: Option<usize>,
    /// t-SNE perplexity [default: 30].
    #[arg(long)]
    pub perplexity: Option<f64>,
    /// UMAP neighbours [default: 15].
    #[arg(long)]
    pub umap_neighbors: Option<usize>,
    /// UMAP metric: correlation or euclidean [default: correlation].
    #[arg(long)]
    pub umap_metric: Option<UmapMetric>,
    /// Seed of every random choice [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Skip k-means.
    #[arg(long)]
    pub no_kmeans: bool,
    /// Skip agglomerative clustering.
    #[arg(long)]
    pub no_agglomerative: bool,
    /// Skip DBSCAN.
    #[arg(long)]
    pub no_dbscan: bool,
    /// Skip HDBSCAN.
    #[arg(long)]
    pub no_hdbscan: bool,
    /// Skip t-SNE.
    #[arg(long)]
    pub no_tsne: bool,
    /// Skip UMAP.
    #[arg(long)]
    pub no_umap: bool,
}

impl AnalyzeArgs {
    /// The configuration: file (if any), then command-line overrides.
    pub fn config(&self) -> anyhow::Result<AnalysisConfig> {
        let mut cfg = match &self.config {
            Some(p) => AnalysisConfig::read(p)?,
            None => AnalysisConfig::default(),
        };
        self.overrides().apply(&mut cfg)?;
        Ok(cfg)
    }

    /// The flags that override single parameters of the configuration.
    fn overrides(&self) -> ConfigOverrides {
        ConfigOverrides {
            variant: self.variant,
            pool: self.pool,
            neighbors: self.neighbors,
            knn: self.knn,
            knn_nprobe: self.knn_nprobe,
            rbf_sigma: self.rbf_sigma,
            eigenvalues: self.eigenvalues,
            eigen_solver: self.eigen_solver,
            // clap takes exactly two values (num_args = 2).
            k_range: match self.k_range.as_deref() {
                Some(&[lo, hi]) => Some([lo, hi]),
                _ => None,
            },
            dbscan_eps: self.dbscan_eps.clone(),
            hdbscan_min_cluster_size: self.hdbscan_min_cluster_size,
            perplexity: self.perplexity,
            umap_neighbors: self.umap_neighbors,
            umap_metric: self.umap_metric,
            seed: self.seed,
            no_kmeans: self.no_kmeans,
            no_agglomerative: self.no_agglomerative,
            no_dbscan: self.no_dbscan,
            no_hdbscan: self.no_hdbscan,
            no_tsne: self.no_tsne,
            no_umap: self.no_umap,
        }
    }
}

/// Progress bars: one for categories, one line per running category showing its stage.
struct Bars {
    multi: MultiProgress,
    total: Mutex<Option<ProgressBar>>,
    lines: Mutex<BTreeMap<String, ProgressBar>>,
}

impl Progress for Bars {
    fn run_started(&self, n: usize) {
        let bar = self.multi.add(ProgressBar::new(n as u64));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} categories",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix("analyze");
        if let Ok(mut t) = self.total.lock() {
            *t = Some(bar);
        }
    }
    fn class_started(&self, category: &str, n: usize) {
        let line = self.multi.add(ProgressBar::new_spinner());
        line.set_style(
            ProgressStyle::with_template("  {spinner} {prefix}: {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        line.set_prefix(format!("{category} ({n} samples)"));
        line.enable_steady_tick(std::time::Duration::from_millis(200));
        if let Ok(mut l) = self.lines.lock() {
            l.insert(category.to_string(), line);
        }
    }
    fn stage(&self, category: &str, stage: &'static str, cached: bool) {
        if let Ok(l) = self.lines.lock() {
            if let Some(line) = l.get(category) {
                line.set_message(if cached {
                    format!("{stage} (cached)")
                } else {
                    stage.to_string()
                });
            }
        }
        tracing::debug!(category, stage, cached, "stage");
    }
    fn class_finished(&self, category: &str) {
        if let Ok(mut l) = self.lines.lock() {
            if let Some(line) = l.remove(category) {
                line.finish_and_clear();
                self.multi.remove(&line);
            }
        }
        if let Ok(t) = self.total.lock() {
            if let Some(bar) = t.as_ref() {
                bar.inc(1);
            }
        }
    }
}

/// Runs `prism analyze`.
pub fn run(args: &AnalyzeArgs) -> anyhow::Result<()> {
    let cfg = args.config()?;
    if args.print_config {
        print!("{}", cfg.to_toml()?);
        return Ok(());
    }
    let (Some(input), Some(output)) = (&args.attribution, &args.output) else {
        bail!("ATTRIBUTION and --output are required");
    };
    if input == output {
        bail!("--output must differ from the attribution file");
    }
    let category_names = match &args.label_map {
        Some(p) => prism_analysis::category_names(p)?,
        None => BTreeMap::new(),
    };
    let cache = match (&args.cache_dir, args.no_cache) {
        (_, true) => Cache::disabled(),
        (Some(dir), false) => Cache::at(dir),
        (None, false) => Cache::beside(output),
    };
    let opts = RunOptions {
        classes: args.classes.clone(),
        category_names,
        cache,
        force: args.force,
        ..RunOptions::default()
    };
    let bars = Bars {
        multi: MultiProgress::new(),
        total: Mutex::new(None),
        lines: Mutex::new(BTreeMap::new()),
    };
    // Threads: the global --threads (rayon's global pool).
    let reports = prism_analysis::analyze_file(input, output, &cfg, &opts, &bars)?;
    if let Ok(t) = bars.total.lock() {
        if let Some(bar) = t.as_ref() {
            bar.finish();
        }
    }
    for r in &reports {
        let stages: Vec<String> = r
            .stage_seconds
            .iter()
            .map(|(s, t)| format!("{s}={t:.2}s"))
            .collect();
        tracing::info!(
            category = r.name.as_str(),
            n = r.n,
            suggested_k = r.suggested_k,
            cached = r.cached.join(",").as_str(),
            seconds = format!("{:.2}", r.seconds).as_str(),
            stages = stages.join(" ").as_str(),
            "category done"
        );
    }
    print_written(output, &reports);
    Ok(())
}

/// The line that closes an analysis: the file written and each category's eigengap-suggested k
/// (the first ten).
pub(super) fn print_written(output: &std::path::Path, reports: &[prism_analysis::CategoryReport]) {
    eprintln!(
        "wrote {} ({} categories; eigengap suggests k = {})",
        output.display(),
        reports.len(),
        reports
            .iter()
            .map(|r| format!("{}:{}", r.name, r.suggested_k))
            .take(10)
            .collect::<Vec<_>>()
            .join(" ")
            + if reports.len() > 10 { " …" } else { "" }
    );
}
