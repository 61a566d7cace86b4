//! The SpRAy pipeline as a list of named stages, per category:
//!
//! ```text
//! read (blocks) → preprocess → knn → affinity+laplacian → eigen → { kmeans, agglomerative,
//!                                                                  dbscan, hdbscan, tsne, umap }
//! ```
//!
//! Each stage is a plain function of the previous stage's output and its own config section;
//! each cached stage has a key derived from the one before it (see [`crate::cache`]). The
//! stages after `eigen` are not named here: they are the entries of the family tables
//! ([`AnalysisConfig::clusterings`], [`AnalysisConfig::embeddings`]; see [`crate::family`]),
//! which this module loops over.
//! Categories run in parallel (rayon), and so do the heavy loops inside each stage.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use prism_store::{AnalysisWriter, AttrValue, AttributionFile, Category, Clustering, Embedding};
use rayon::prelude::*;
use serde::Serialize;

use crate::cache::{take, Array, Blob, Cache, Key, Seeded};
use crate::config::{AnalysisConfig, KnnMethod};
use crate::eigen::{eigengap, SpectralEmbedding};
use crate::error::{AnalysisError, Result};
use crate::family::{spectral_attr, FamilyInput, Points};
use crate::{eigen, graph, knn, preprocess};

/// The stages before the families, as shown in progress; then come
/// [`AnalysisConfig::family_names`].
pub const UPSTREAM_STAGES: [&str; 4] = ["preprocess", "knn", "laplacian", "eigen"];

/// Every stage name of `cfg`, in pipeline order.
pub fn stage_names(cfg: &AnalysisConfig) -> Vec<&'static str> {
    let mut names = UPSTREAM_STAGES.to_vec();
    names.extend(cfg.family_names());
    names
}

/// Receives progress events (the CLI draws bars from them). All methods default to nothing.
pub trait Progress: Sync {
    fn run_started(&self, _n_categories: usize) {}
    fn class_started(&self, _category: &str, _n: usize) {}
    fn stage(&self, _category: &str, _stage: &'static str, _cached: bool) {}
    fn class_finished(&self, _category: &str) {}
}

/// Ignores progress.
pub struct NoProgress;
impl Progress for NoProgress {}

/// The cache keys of every stage of one category.
#[derive(Debug, Clone, PartialEq)]
pub struct StageKeys {
    pub preprocess: Key,
    pub knn: Key,
    pub laplacian: Key,
    pub eigen: Key,
    /// Each family's key, by name, in table order (clusterings, then embeddings).
    pub families: Vec<(&'static str, Key)>,
}

impl StageKeys {
    /// Derives every key from the input key and the configuration.
    pub fn new(input: &Key, cfg: &AnalysisConfig) -> Result<Self> {
        let s = cfg.seed;
        let preprocess = Key::derive(input, "preprocess", &cfg.preprocess)?;
        // The seed only matters to the approximate kNN (its k-means quantiser).
        let knn_seed = (cfg.knn.method != KnnMethod::Exact).then_some(s);
        let knn = Key::derive(
            &preprocess,
            "knn",
            &Seeded {
                params: &cfg.knn,
                seed: knn_seed,
            },
        )?;
        let laplacian = Key::derive(&knn, "laplacian", &cfg.affinity)?;
        let eigen = Key::derive(
            &laplacian,
            "eigen",
            &Seeded {
                params: &cfg.eigen,
                seed: s,
            },
        )?;
        let mut families = Vec::new();
        for f in cfg.clusterings() {
            families.push((f.name(), f.key(&eigen, s)?));
        }
        for f in cfg.embeddings() {
            families.push((f.name(), f.key(&eigen, s)?));
        }
        Ok(StageKeys {
            preprocess,
            knn,
            laplacian,
            eigen,
            families,
        })
    }

    /// The key of the family `name`, if the configuration has it.
    pub fn family(&self, name: &str) -> Option<&Key> {
        self.families
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, k)| k)
    }

    /// The key of `family`, or an error naming it (keys made from another configuration).
    fn of(&self, family: &'static str) -> Result<&Key> {
        self.family(family).ok_or_else(|| AnalysisError::Config {
            message: format!(
                "stage keys have no key for `{family}`: they were derived from another \
                 configuration"
            ),
        })
    }
}

/// What happened in one category.
#[derive(Debug, Clone, PartialEq)]
pub struct CategoryReport {
    pub name: String,
    pub n: usize,
    pub suggested_k: usize,
    /// Stages served from the cache.
    pub cached: Vec<&'static str>,
    /// Wall time of the category, reading and preprocessing included.
    pub seconds: f64,
    /// Wall time per stage, in the order run (`read+preprocess` first).
    pub stage_seconds: Vec<(&'static str, f64)>,
}

/// The result of analysing one category: its file content and a report.
#[derive(Debug, Clone)]
pub struct CategoryAnalysis {
    pub category: Category,
    pub report: CategoryReport,
}

fn numerical(category: &str, stage: &'static str, message: String) -> AnalysisError {
    AnalysisError::Numerical {
        category: category.to_string(),
        stage,
        message,
    }
}

/// One category's preprocessed input.
#[derive(Debug, Clone)]
pub struct CategoryFeatures<'a> {
    /// Category (group) name.
    pub name: &'a str,
    /// Row-major `n × d` feature vectors.
    pub features: &'a [f32],
    pub n: usize,
    pub d: usize,
    /// Sample number of each row; becomes the category's `index`.
    pub sample_numbers: Vec<u32>,
}

/// Runs every stage after preprocessing on one category's features.
pub fn analyze_features(
    input: CategoryFeatures<'_>,
    cfg: &AnalysisConfig,
    keys: &StageKeys,
    cache: &Cache,
    progress: &dyn Progress,
) -> Result<CategoryAnalysis> {
    let CategoryFeatures {
        name,
        features,
        n,
        d,
        sample_numbers,
    } = input;
    cfg.validate()?;
    let start = Instant::now();
    let mut cached: Vec<&'static str> = Vec::new();
    let mut marks: Vec<(&'static str, Instant)> = Vec::new();
    let mut note = |stage: &'static str, hit: bool| {
        progress.stage(name, stage, hit);
        marks.push((stage, Instant::now()));
        if hit {
            cached.push(stage);
        }
    };

    // knn → laplacian → eigen (only computed on an eigen miss).
    let spectral = match cache
        .get(&keys.eigen)
        .and_then(|b| spectral_from_blob(&b, n))
    {
        Some(s) => {
            note("eigen", true);
            s
        }
        None => {
            let knn_graph = match cache.get(&keys.knn).and_then(|b| knn_from_blob(&b, n)) {
                Some(g) => {
                    note("knn", true);
                    g
                }
                None => {
                    note("knn", false);
                    let g = knn::knn(features, n, d, cfg.knn.k, &cfg.knn, cfg.seed);
                    if knn::uses_approximate(&cfg.knn, n) {
                        let recall = knn::estimate_recall(features, n, d, &g, 100, cfg.seed);
                        tracing::info!(
                            category = name,
                            n,
                            nprobe = cfg.knn.nprobe,
                            recall = format!("{recall:.3}").as_str(),
                            "approximate kNN; recall estimated on 100 sampled queries"
                        );
                    }
                    cache.put(
                        &keys.knn,
                        &vec![
                            ("indices".into(), Array::U32(g.indices.clone())),
                            ("distances".into(), Array::F32(g.distances.clone())),
                        ],
                    )?;
                    g
                }
            };
            note("laplacian", false);
            let m = graph::normalised_adjacency(&graph::affinity(&knn_graph, &cfg.affinity));
            note("eigen", false);
            let s = eigen::spectral_embedding(&m, &cfg.eigen, cfg.seed)
                .map_err(|e| numerical(name, "eigen", e))?;
            cache.put(&keys.eigen, &spectral_to_blob(&s))?;
            s
        }
    };
    let (gaps, suggested_k) = eigengap(&spectral.laplacian_ascending(), cfg.eigen.max_suggested_k);
    let ed = spectral.d;

    let after_eigen = Instant::now();
    let mut stage_seconds: Vec<(&'static str, f64)> = marks
        .iter()
        .enumerate()
        .map(|(i, &(stage, t))| {
            let next = marks.get(i + 1).map_or(after_eigen, |m| m.1);
            (stage, (next - t).as_secs_f64())
        })
        .collect();

    // Everything below depends only on the spectral embedding: the clustering families and
    // the 2-D embeddings (tables in `AnalysisConfig`) run concurrently, each loaded from the
    // cache or computed (t-SNE and UMAP are single-threaded).
    let input = FamilyInput {
        category: name,
        spectral: Points {
            data: &spectral.vectors,
            n,
            d: ed,
        },
        knn: &cfg.knn,
        seed: cfg.seed,
    };
    let (clustered, embedded): (Vec<_>, Vec<_>) = rayon::join(
        || {
            cfg.clusterings()
                .into_par_iter()
                .map(|f| {
                    if !f.runs_on(n, name) {
                        return Ok(None);
                    }
                    let stage = f.name();
                    let t = Instant::now();
                    let (hit, value) = load_or_compute(
                        cache,
                        keys.of(stage)?,
                        &|hit| progress.stage(name, stage, hit),
                        &|| f.run(&input),
                    )?;
                    Ok(Some(StageOutput {
                        stage,
                        hit,
                        seconds: t.elapsed().as_secs_f64(),
                        value,
                    }))
                })
                .collect::<Vec<Result<Option<StageOutput<Vec<Clustering>>>>>>()
        },
        || {
            cfg.embeddings()
                .into_par_iter()
                .map(|f| {
                    if !f.runs_on(n, name) {
                        return Ok(None);
                    }
                    let stage = f.name();
                    let t = Instant::now();
                    let key = keys.of(stage)?;
                    let hit = cache.get(key).and_then(|b| match take(&b, stage) {
                        Some(Array::F32(v)) if v.len() == n * 2 => Some(v.clone()),
                        _ => None,
                    });
                    progress.stage(name, stage, hit.is_some());
                    let (hit, value) = match hit {
                        Some(v) => (true, v),
                        None => {
                            let v = f.run(&input);
                            cache.put(key, &vec![(stage.to_string(), Array::F32(v.clone()))])?;
                            (false, v)
                        }
                    };
                    Ok(Some(StageOutput {
                        stage,
                        hit,
                        seconds: t.elapsed().as_secs_f64(),
                        value,
                    }))
                })
                .collect::<Vec<Result<Option<StageOutput<Vec<f32>>>>>>()
        },
    );

    let mut clusterings: Vec<Clustering> = Vec::new();
    for r in clustered {
        if let Some(out) = r? {
            stage_seconds.push((out.stage, out.seconds));
            if out.hit {
                cached.push(out.stage);
            }
            clusterings.extend(out.value);
        }
    }
    let mut embeddings = vec![Embedding {
        name: "spectral".into(),
        dim: ed,
        values: spectral.vectors.clone(),
        eigenvalue: Some(spectral.eigenvalues.iter().map(|&v| v as f32).collect()),
        attrs: vec![
            ("solver".into(), AttrValue::Str(spectral.solver.into())),
            (
                "max_residual".into(),
                AttrValue::Float(spectral.max_residual),
            ),
        ],
    }];
    for r in embedded {
        if let Some(out) = r? {
            stage_seconds.push((out.stage, out.seconds));
            if out.hit {
                cached.push(out.stage);
            }
            embeddings.push(Embedding {
                name: out.stage.into(),
                dim: 2,
                values: out.value,
                eigenvalue: None,
                attrs: vec![
                    spectral_attr(),
                    ("index".into(), AttrValue::IntArray(vec![0, 1])),
                ],
            });
        }
    }

    let attrs = vec![
        ("n_samples".into(), AttrValue::Int(n as i64)),
        ("n_eigval".into(), AttrValue::Int(ed as i64)),
        (
            "eigengap".into(),
            AttrValue::FloatArray(gaps.iter().map(|&g| g as f32).collect()),
        ),
        (
            "eigengap_suggested_k".into(),
            AttrValue::Int(suggested_k as i64),
        ),
        (
            "eigen_solver".into(),
            AttrValue::Str(spectral.solver.into()),
        ),
        (
            "eigen_max_residual".into(),
            AttrValue::Float(spectral.max_residual),
        ),
    ];
    let category = Category {
        name: name.to_string(),
        index: sample_numbers,
        embeddings,
        clusterings,
        attrs,
    };
    Ok(CategoryAnalysis {
        category,
        report: CategoryReport {
            name: name.to_string(),
            n,
            suggested_k,
            cached,
            seconds: start.elapsed().as_secs_f64(),
            stage_seconds,
        },
    })
}

/// One downstream stage's result, with whether it came from the cache and its wall time.
struct StageOutput<T> {
    stage: &'static str,
    hit: bool,
    seconds: f64,
    value: T,
}

/// Loads a clustering family from the cache, or computes and stores it; `announce(hit)` is
/// called before any computation. The blob holds each clustering's labels plus a JSON entry
/// `__meta` with the names and attributes, so a hit needs no recomputation at all.
fn load_or_compute(
    cache: &Cache,
    key: &Key,
    announce: &dyn Fn(bool),
    compute: &dyn Fn() -> Vec<Clustering>,
) -> Result<(bool, Vec<Clustering>)> {
    if let Some(blob) = cache.get(key) {
        if let Some(Array::U8(bytes)) = take(&blob, "__meta") {
            if let Ok(list) =
                serde_json::from_slice::<Vec<(String, Vec<(String, AttrJson)>)>>(bytes)
            {
                let mut out = Vec::new();
                for (name, attrs) in list {
                    if let Some(Array::I32(l)) = take(&blob, &name) {
                        out.push(Clustering {
                            name,
                            labels: l.clone(),
                            attrs: attrs.into_iter().map(|(k, v)| (k, v.into())).collect(),
                        });
                    }
                }
                announce(true);
                return Ok((true, out));
            }
        }
    }
    announce(false);
    let computed = compute();
    let meta: Vec<(String, Vec<(String, AttrJson)>)> = computed
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                c.attrs
                    .iter()
                    .map(|(k, v)| (k.clone(), AttrJson::from(v)))
                    .collect(),
            )
        })
        .collect();
    let meta_bytes = serde_json::to_vec(&meta).map_err(|source| AnalysisError::CacheEncoding {
        what: format!("the clustering names and attributes of blob {}", key.hex()),
        source,
    })?;
    let mut blob: Blob = vec![("__meta".into(), Array::U8(meta_bytes))];
    for c in &computed {
        blob.push((c.name.clone(), Array::I32(c.labels.clone())));
    }
    cache.put(key, &blob)?;
    Ok((false, computed))
}

/// Attribute values as stored in the cache's JSON side entry.
#[derive(Serialize, serde::Deserialize)]
enum AttrJson {
    Str(String),
    Int(i64),
    Float(f64),
    FloatArray(Vec<f32>),
    IntArray(Vec<i64>),
}

impl From<&AttrValue> for AttrJson {
    fn from(v: &AttrValue) -> Self {
        match v {
            AttrValue::Str(s) => AttrJson::Str(s.clone()),
            AttrValue::Int(i) => AttrJson::Int(*i),
            AttrValue::Float(f) => AttrJson::Float(*f),
            AttrValue::FloatArray(a) => AttrJson::FloatArray(a.clone()),
            AttrValue::IntArray(a) => AttrJson::IntArray(a.clone()),
        }
    }
}

impl From<AttrJson> for AttrValue {
    fn from(v: AttrJson) -> Self {
        match v {
            AttrJson::Str(s) => AttrValue::Str(s),
            AttrJson::Int(i) => AttrValue::Int(i),
            AttrJson::Float(f) => AttrValue::Float(f),
            AttrJson::FloatArray(a) => AttrValue::FloatArray(a),
            AttrJson::IntArray(a) => AttrValue::IntArray(a),
        }
    }
}

fn spectral_to_blob(s: &SpectralEmbedding) -> Blob {
    vec![
        ("eigenvalues".into(), Array::F64(s.eigenvalues.clone())),
        ("vectors".into(), Array::F32(s.vectors.clone())),
        (
            "meta".into(),
            Array::F64(vec![
                s.max_residual,
                if s.solver == "dense" { 0.0 } else { 1.0 },
            ]),
        ),
    ]
}

fn spectral_from_blob(b: &Blob, n: usize) -> Option<SpectralEmbedding> {
    let (Some(Array::F64(ev)), Some(Array::F32(v)), Some(Array::F64(meta))) =
        (take(b, "eigenvalues"), take(b, "vectors"), take(b, "meta"))
    else {
        return None;
    };
    let d = ev.len();
    if d == 0 || v.len() != n * d || meta.len() != 2 {
        return None;
    }
    Some(SpectralEmbedding {
        n,
        d,
        eigenvalues: ev.clone(),
        vectors: v.clone(),
        max_residual: meta[0],
        solver: if meta[1] == 0.0 { "dense" } else { "sparse" },
    })
}

fn knn_from_blob(b: &Blob, n: usize) -> Option<knn::KnnGraph> {
    let (Some(Array::U32(ind)), Some(Array::F32(dist))) =
        (take(b, "indices"), take(b, "distances"))
    else {
        return None;
    };
    if n == 0
        || ind.len() != dist.len()
        || ind.len() % n != 0
        || ind.iter().any(|&j| j as usize >= n)
    {
        return None;
    }
    Some(knn::KnnGraph {
        n,
        k: ind.len() / n,
        indices: ind.clone(),
        distances: dist.clone(),
    })
}

/// Options of a whole-file run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Only these classes (all if `None`).
    pub classes: Option<Vec<u32>>,
    /// Category name per class (e.g. WordNet ids from a label map); default `{class:08}`.
    pub category_names: BTreeMap<u32, String>,
    pub cache: Cache,
    /// Overwrite an existing output.
    pub force: bool,
    /// Bytes of raw attributions read per HDF5 call (at least one row). Small blocks keep
    /// memory bounded and let the allocator reuse the same pages block after block: a fresh
    /// 150 MB buffer per block costs more in page faults than the read itself.
    pub block_bytes: usize,
}

/// The category names of a ViRelAy label map (class number → WordNet id), for
/// [`RunOptions::category_names`].
pub fn category_names(label_map: &Path) -> Result<BTreeMap<u32, String>> {
    Ok(prism_store::read_label_map(label_map)?
        .into_iter()
        .map(|e| (e.index, e.word_net_id))
        .collect())
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            classes: None,
            category_names: BTreeMap::new(),
            cache: Cache::disabled(),
            force: false,
            block_bytes: 8 << 20,
        }
    }
}

/// Reads one class's rows in blocks, hashing the exact bytes and preprocessing each block.
/// Returns (features, feature length, input key, degenerate-sample count); relevance holding
/// NaN or ±Inf is an error naming the samples ([`AnalysisError::NonFinite`]).
pub fn read_and_preprocess(
    file: &AttributionFile,
    class: u32,
    rows: &[usize],
    cfg: &AnalysisConfig,
    block_bytes: usize,
) -> Result<(Vec<f32>, usize, Key, usize)> {
    let shape = file.sample_shape();
    let block_rows = (block_bytes / (4 * file.sample_len()).max(1)).max(1);
    let d = preprocess::feature_len(&cfg.preprocess, shape);
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"prism-input-v1");
    for s in shape {
        hasher.update(&(s as u64).to_le_bytes());
    }
    hasher.update(&(rows.len() as u64).to_le_bytes());
    for &r in rows {
        hasher.update(&(r as u64).to_le_bytes());
    }
    let mut features = Vec::with_capacity(rows.len() * d);
    let mut degenerate = 0;
    // Block i is hashed and preprocessed while block i + 1 is read.
    let chunks: Vec<&[usize]> = rows.chunks(block_rows).collect();
    let mut next = chunks.first().map(|c| file.read_rows(c));
    let sample_len = file.sample_len().max(1);
    let mut nonfinite: Vec<u32> = Vec::new();
    let mut nonfinite_count = 0;
    for i in 0..chunks.len() {
        let Some(block) = next.take() else { break };
        let block = block?;
        if block.iter().any(|v| !v.is_finite()) {
            for (k, sample) in block.chunks(sample_len).enumerate() {
                if sample.iter().any(|v| !v.is_finite()) {
                    nonfinite_count += 1;
                    if nonfinite.len() < 8 {
                        nonfinite.push(file.sample_number(chunks[i][k]));
                    }
                }
            }
            next = chunks.get(i + 1).map(|c| file.read_rows(c));
            continue;
        }
        let (_, ahead) = rayon::join(
            || {
                // The exact bytes, little-endian on every platform.
                if cfg!(target_endian = "little") {
                    hasher.update_rayon(bytemuck::cast_slice(&block));
                } else {
                    let bytes: Vec<u8> = block.iter().flat_map(|v| v.to_le_bytes()).collect();
                    hasher.update_rayon(&bytes);
                }
                degenerate +=
                    preprocess::preprocess_block(&cfg.preprocess, shape, &block, &mut features);
            },
            || chunks.get(i + 1).map(|c| file.read_rows(c)),
        );
        next = ahead;
    }
    if nonfinite_count > 0 {
        return Err(AnalysisError::NonFinite {
            path: file.path().to_path_buf(),
            class,
            count: nonfinite_count,
            samples: nonfinite,
        });
    }
    Ok((features, d, Key::input(hasher), degenerate))
}

/// Analyses every class of an attribution file and writes a ViRelAy analysis file.
/// Refuses to overwrite `output` unless `opts.force`; writes it under a temporary name first.
pub fn analyze_file(
    input: &Path,
    output: &Path,
    cfg: &AnalysisConfig,
    opts: &RunOptions,
    progress: &dyn Progress,
) -> Result<Vec<CategoryReport>> {
    cfg.validate()?;
    if output.exists() && !opts.force {
        return Err(AnalysisError::OutputExists {
            path: output.to_path_buf(),
        });
    }
    let file = AttributionFile::open(input)?;
    let mut jobs: Vec<(u32, Vec<usize>)> = file.labels().class_rows().into_iter().collect();
    if let Some(only) = &opts.classes {
        jobs.retain(|(c, _)| only.contains(c));
        if let Some(missing) = only.iter().find(|c| !jobs.iter().any(|(j, _)| j == *c)) {
            return Err(AnalysisError::Config {
                message: format!("class {missing} has no samples in `{}`", input.display()),
            });
        }
    }
    progress.run_started(jobs.len());
    let results: Vec<Result<CategoryAnalysis>> = jobs
        .par_iter()
        .map(|(class, rows)| {
            let name = opts
                .category_names
                .get(class)
                .cloned()
                .unwrap_or_else(|| format!("{class:08}"));
            progress.class_started(&name, rows.len());
            progress.stage(&name, "preprocess", false);
            let t0 = Instant::now();
            let (features, d, input_key, degenerate) =
                read_and_preprocess(&file, *class, rows, cfg, opts.block_bytes)?;
            let read_seconds = t0.elapsed().as_secs_f64();
            if degenerate > 0 {
                tracing::warn!(
                    category = name.as_str(),
                    degenerate,
                    "samples with a zero attribution sum were left unnormalised"
                );
            }
            let keys = StageKeys::new(&input_key, cfg)?;
            let numbers: Vec<u32> = rows.iter().map(|&r| file.sample_number(r)).collect();
            let input = CategoryFeatures {
                name: &name,
                features: &features,
                n: rows.len(),
                d,
                sample_numbers: numbers,
            };
            let mut out = analyze_features(input, cfg, &keys, &opts.cache, progress)?;
            out.category
                .attrs
                .push(("class".into(), AttrValue::Int(*class as i64)));
            out.category.attrs.push((
                "degenerate_samples".into(),
                AttrValue::Int(degenerate as i64),
            ));
            out.report.seconds += read_seconds;
            out.report
                .stage_seconds
                .insert(0, ("read+preprocess", read_seconds));
            progress.class_finished(&name);
            Ok(out)
        })
        .collect();
    let mut writer = AnalysisWriter::create(output)?;
    let source = input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    prism_store::AnalysisProvenance::new(cfg.to_toml()?, source).write(&mut writer)?;
    let mut reports = Vec::with_capacity(results.len());
    for r in results {
        let r = r?;
        writer.write_category(&r.category)?;
        reports.push(r.report);
    }
    writer.finish()?;
    Ok(reports)
}
