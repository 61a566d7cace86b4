//! The SpRAy pipeline as a list of named stages, per category:
//!
//! ```text
//! read (blocks) → preprocess → knn → affinity+laplacian → eigen → { kmeans, agglomerative,
//!                                                                  dbscan, hdbscan, tsne, umap }
//! ```
//!
//! Each stage is a plain function of the previous stage's output and its own config section;
//! each cached stage has a key derived from the one before it (see [`crate::cache`]).
//! Categories run in parallel (rayon), and so do the heavy loops inside each stage.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use prism_store::{AnalysisWriter, AttrValue, AttributionFile, Category, Clustering, Embedding};
use rayon::prelude::*;
use serde::Serialize;

use crate::cache::{take, Array, Blob, Cache, Key};
use crate::config::{AnalysisConfig, KnnMethod, SpectralColumns};
use crate::eigen::{eigengap, SpectralEmbedding};
use crate::error::{AnalysisError, Result};
use crate::{cluster, eigen, embed, graph, knn, preprocess};

/// Stage names, as shown in progress and stored in `prism_cached_stages`.
pub const STAGES: [&str; 10] = [
    "preprocess",
    "knn",
    "laplacian",
    "eigen",
    "kmeans",
    "agglomerative",
    "dbscan",
    "hdbscan",
    "tsne",
    "umap",
];

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
    pub kmeans: Key,
    pub agglomerative: Key,
    pub dbscan: Key,
    pub hdbscan: Key,
    pub tsne: Key,
    pub umap: Key,
}

impl StageKeys {
    /// Derives every key from the input key and the configuration.
    pub fn new(input: &Key, cfg: &AnalysisConfig) -> Self {
        #[derive(Serialize)]
        struct Seeded<'a, T, S> {
            params: &'a T,
            seed: S,
        }
        let s = cfg.seed;
        let preprocess = Key::derive(input, "preprocess", &cfg.preprocess);
        // The seed only matters to the approximate kNN (its k-means quantiser).
        let knn_seed = (cfg.knn.method != KnnMethod::Exact).then_some(s);
        let knn = Key::derive(
            &preprocess,
            "knn",
            &Seeded {
                params: &cfg.knn,
                seed: knn_seed,
            },
        );
        let laplacian = Key::derive(&knn, "laplacian", &cfg.affinity);
        let eigen = Key::derive(
            &laplacian,
            "eigen",
            &Seeded {
                params: &cfg.eigen,
                seed: s,
            },
        );
        StageKeys {
            kmeans: Key::derive(
                &eigen,
                "kmeans",
                &Seeded {
                    params: &cfg.kmeans,
                    seed: s,
                },
            ),
            agglomerative: Key::derive(&eigen, "agglomerative", &cfg.agglomerative),
            dbscan: Key::derive(&eigen, "dbscan", &cfg.dbscan),
            hdbscan: Key::derive(&eigen, "hdbscan", &cfg.hdbscan),
            tsne: Key::derive(
                &eigen,
                "tsne",
                &Seeded {
                    params: &cfg.tsne,
                    seed: s,
                },
            ),
            umap: Key::derive(
                &eigen,
                "umap",
                &Seeded {
                    params: &cfg.umap,
                    seed: s,
                },
            ),
            preprocess,
            knn,
            laplacian,
            eigen,
        }
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

/// Formats eps as Python's `str(float)` does for CoRelAy's names (`0.2`, `1.0`).
fn py_float(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
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
    let (e, ed) = (&spectral.vectors, spectral.d);

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
    // the 2-D embeddings run concurrently (t-SNE and UMAP are single-threaded).
    let spectral_attr = || ("embedding".to_string(), AttrValue::Str("spectral".into()));
    let family = |stage: &'static str,
                  key: &Key,
                  compute: &dyn Fn() -> Computed|
     -> Result<Option<StageOutput<Computed>>> {
        let t = Instant::now();
        let (hit, value) =
            load_or_compute(cache, key, &|hit| progress.stage(name, stage, hit), compute)?;
        Ok(Some(StageOutput {
            stage,
            hit,
            seconds: t.elapsed().as_secs_f64(),
            value,
        }))
    };
    let two_d = |stage: &'static str,
                 key: &Key,
                 compute: &dyn Fn() -> Vec<f32>|
     -> Result<Option<StageOutput<Vec<f32>>>> {
        let t = Instant::now();
        let hit = cache.get(key).and_then(|b| match take(&b, stage) {
            Some(Array::F32(v)) if v.len() == n * 2 => Some(v.clone()),
            _ => None,
        });
        progress.stage(name, stage, hit.is_some());
        let (hit, value) = match hit {
            Some(v) => (true, v),
            None => {
                let v = compute();
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
    };
    let kmeans_job = || {
        if !cfg.kmeans.enabled {
            return Ok(None);
        }
        let ks: Vec<usize> = (cfg.kmeans.k_min..=cfg.kmeans.k_max).collect();
        family("kmeans", &keys.kmeans, &|| {
            ks.par_iter()
                .map(|&k| {
                    let (x, xd) = columns_for(e, n, ed, k, cfg.kmeans.columns);
                    let l = cluster::kmeans(
                        &x,
                        n,
                        xd,
                        k,
                        cfg.kmeans.n_init,
                        cfg.kmeans.max_iter,
                        cfg.seed,
                    );
                    (
                        format!("kmeans-{k:02}"),
                        l,
                        vec![spectral_attr(), ("k".into(), AttrValue::Int(k as i64))],
                    )
                })
                .collect()
        })
    };
    let agglomerative_job = || {
        if !cfg.agglomerative.enabled {
            return Ok(None);
        }
        if n > cfg.agglomerative.max_n {
            tracing::warn!(
                category = name,
                n,
                max_n = cfg.agglomerative.max_n,
                "agglomerative clustering skipped: Ward linkage needs N(N-1)/2 distances \
                 (raise agglomerative.max_n to force it)"
            );
            return Ok(None);
        }
        let ks: Vec<usize> = (cfg.agglomerative.k_min..=cfg.agglomerative.k_max).collect();
        family("agglomerative", &keys.agglomerative, &|| {
            let cuts: Vec<Vec<i32>> = match cfg.agglomerative.columns {
                // One linkage, cut at every k.
                SpectralColumns::All => cluster::agglomerative_ward(e, n, ed, &ks),
                // One linkage per k, each on its own leading columns.
                SpectralColumns::Leading => ks
                    .par_iter()
                    .map(|&k| {
                        let (x, xd) = columns_for(e, n, ed, k, SpectralColumns::Leading);
                        cluster::agglomerative_ward(&x, n, xd, &[k])
                            .pop()
                            .unwrap_or_default()
                    })
                    .collect(),
            };
            cuts.into_iter()
                .zip(&ks)
                .map(|(l, &k)| {
                    (
                        format!("agglomerative-{k:02}"),
                        l,
                        vec![spectral_attr(), ("k".into(), AttrValue::Int(k as i64))],
                    )
                })
                .collect()
        })
    };
    let dbscan_job = || {
        if !cfg.dbscan.enabled || cfg.dbscan.eps.is_empty() {
            return Ok(None);
        }
        family("dbscan", &keys.dbscan, &|| {
            cluster::dbscan_multi(e, n, ed, &cfg.dbscan.eps, cfg.dbscan.min_samples)
                .into_iter()
                .zip(&cfg.dbscan.eps)
                .map(|(l, &eps)| {
                    (
                        format!("dbscan-eps={}", py_float(eps)),
                        l,
                        vec![
                            spectral_attr(),
                            ("eps".into(), AttrValue::Float(eps)),
                            (
                                "min_samples".into(),
                                AttrValue::Int(cfg.dbscan.min_samples as i64),
                            ),
                        ],
                    )
                })
                .collect()
        })
    };
    let hdbscan_job = || {
        if !cfg.hdbscan.enabled {
            return Ok(None);
        }
        family("hdbscan", &keys.hdbscan, &|| {
            let l = cluster::hdbscan(e, n, ed, cfg.hdbscan.min_cluster_size, &cfg.knn, cfg.seed);
            vec![(
                "hdbscan".into(),
                l,
                vec![
                    spectral_attr(),
                    (
                        "min_cluster_size".into(),
                        AttrValue::Int(cfg.hdbscan.min_cluster_size as i64),
                    ),
                ],
            )]
        })
    };
    // Both 2-D embeddings run on the spectral embedding, as in CoRelAy's pipeline.
    let tsne_job = || {
        if !cfg.tsne.enabled {
            return Ok(None);
        }
        two_d("tsne", &keys.tsne, &|| {
            embed::tsne(e, n, ed, &cfg.tsne, &cfg.knn, cfg.seed)
        })
    };
    let umap_job = || {
        if !cfg.umap.enabled {
            return Ok(None);
        }
        // Initialise from the two leading non-trivial spectral coordinates.
        let init: Vec<f32> = (0..n)
            .flat_map(|i| {
                let row = &e[i * ed..(i + 1) * ed];
                let a = if ed >= 2 { row[ed - 2] } else { 0.0 };
                let b = if ed >= 3 { row[ed - 3] } else { 0.0 };
                [a, b]
            })
            .collect();
        two_d("umap", &keys.umap, &|| {
            embed::umap(e, n, ed, &init, &cfg.umap, &cfg.knn, cfg.seed)
        })
    };
    let ((r_kmeans, r_agglo), ((r_dbscan, r_hdbscan), (r_tsne, r_umap))) = rayon::join(
        || rayon::join(kmeans_job, agglomerative_job),
        || {
            rayon::join(
                || rayon::join(dbscan_job, hdbscan_job),
                || rayon::join(tsne_job, umap_job),
            )
        },
    );

    let mut clusterings: Vec<Clustering> = Vec::new();
    for r in [r_kmeans, r_agglo, r_dbscan, r_hdbscan] {
        if let Some(out) = r? {
            stage_seconds.push((out.stage, out.seconds));
            if out.hit {
                cached.push(out.stage);
            }
            clusterings.extend(
                out.value
                    .into_iter()
                    .map(|(name, labels, attrs)| Clustering {
                        name,
                        labels,
                        attrs,
                    }),
            );
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
    for r in [r_tsne, r_umap] {
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

/// The spectral coordinates a k-cluster clustering runs on: all columns, or the k leading
/// ones (the last k in ViRelAy's layout) with rows re-normalised.
fn columns_for(
    e: &[f32],
    n: usize,
    d: usize,
    k: usize,
    which: SpectralColumns,
) -> (Vec<f32>, usize) {
    if which == SpectralColumns::All || k >= d {
        return (e.to_vec(), d);
    }
    let mut out = Vec::with_capacity(n * k);
    for i in 0..n {
        let row = &e[i * d + d - k..(i + 1) * d];
        let norm = row
            .iter()
            .map(|&v| (v as f64) * (v as f64))
            .sum::<f64>()
            .sqrt();
        let s = if norm > 0.0 { 1.0 / norm } else { 0.0 };
        out.extend(row.iter().map(|&v| (v as f64 * s) as f32));
    }
    (out, k)
}

type Computed = Vec<(String, Vec<i32>, Vec<(String, AttrValue)>)>;

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
    compute: &dyn Fn() -> Computed,
) -> Result<(bool, Computed)> {
    if let Some(blob) = cache.get(key) {
        if let Some(Array::U8(bytes)) = take(&blob, "__meta") {
            if let Ok(list) =
                serde_json::from_slice::<Vec<(String, Vec<(String, AttrJson)>)>>(bytes)
            {
                let mut out = Vec::new();
                for (name, attrs) in list {
                    if let Some(Array::I32(l)) = take(&blob, &name) {
                        out.push((
                            name,
                            l.clone(),
                            attrs.into_iter().map(|(k, v)| (k, v.into())).collect(),
                        ));
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
        .map(|(n, _, a)| {
            (
                n.clone(),
                a.iter()
                    .map(|(k, v)| (k.clone(), AttrJson::from(v)))
                    .collect(),
            )
        })
        .collect();
    let meta_bytes = serde_json::to_vec(&meta).unwrap_or_default();
    let mut blob: Blob = vec![("__meta".into(), Array::U8(meta_bytes))];
    for (name, labels, _) in &computed {
        blob.push((name.clone(), Array::I32(labels.clone())));
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
/// Returns (features, feature length, input key, degenerate-sample count).
pub fn read_and_preprocess(
    file: &AttributionFile,
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
    for i in 0..chunks.len() {
        let Some(block) = next.take() else { break };
        let block = block?;
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
                read_and_preprocess(&file, rows, cfg, opts.block_bytes)?;
            let read_seconds = t0.elapsed().as_secs_f64();
            if degenerate > 0 {
                tracing::warn!(
                    category = name.as_str(),
                    degenerate,
                    "samples with a zero or non-finite attribution sum were left unnormalised"
                );
            }
            let keys = StageKeys::new(&input_key, cfg);
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
    writer.set_attr(
        "prism_version",
        &AttrValue::Str(env!("CARGO_PKG_VERSION").into()),
    )?;
    writer.set_attr(
        "prism_format_version",
        &AttrValue::Int(prism_store::FORMAT_VERSION),
    )?;
    writer.set_attr("prism_parameters", &AttrValue::Str(cfg.to_toml()))?;
    writer.set_attr(
        "prism_source",
        &AttrValue::Str(
            input
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ),
    )?;
    let mut reports = Vec::with_capacity(results.len());
    for r in results {
        let r = r?;
        writer.write_category(&r.category)?;
        reports.push(r.report);
    }
    writer.finish()?;
    Ok(reports)
}
