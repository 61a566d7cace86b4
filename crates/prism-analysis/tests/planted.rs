//! End to end on a synthetic attribution file with planted structure: three prototypes per
//! class plus a small "Clever Hans" group whose relevance sits on a corner watermark.

use prism_analysis::cache::Key;
use prism_analysis::config::AnalysisConfig;
use prism_analysis::{analyze_file, Cache, NoProgress, RunOptions, StageKeys};
use prism_store::{
    AnalysisFile, AttrValue, AttributionLayout, AttributionWriter, BatchLabels, LabelLayout,
};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

const H: usize = 16;
const PER_CLASS: usize = 200;
const ARTIFACT: usize = 20;

/// Writes 2 classes × 200 samples (interleaved rows), 20 per class carrying the watermark.
/// Returns, per row, whether it is an artifact sample.
fn planted_file(path: &std::path::Path) -> Vec<bool> {
    let n = 2 * PER_CLASS;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let protos = [(4.0, 4.0), (4.0, 11.0), (11.0, 7.0)];
    let mut data = Vec::with_capacity(n * H * H);
    let mut labels = Vec::new();
    let mut artifact = Vec::new();
    for row in 0..n {
        let class = (row % 2) as u32;
        let within = row / 2;
        let is_artifact = within < ARTIFACT;
        let (py, px) = protos[within % 3];
        let strength = if is_artifact { 0.15 } else { 1.0 };
        for y in 0..H {
            for x in 0..H {
                let d2 = (y as f64 - py).powi(2) + (x as f64 - px).powi(2);
                let mut v = strength * (-d2 / 8.0).exp();
                if is_artifact && y >= H - 3 && x >= H - 3 {
                    v += 3.0;
                }
                let noise: f64 = StandardNormal.sample(&mut rng);
                v += 0.03 * noise;
                data.push(v as f32);
            }
        }
        labels.push(class);
        artifact.push(is_artifact);
    }
    let layout = AttributionLayout {
        n_samples: n,
        sample_shape: vec![1, H, H],
        n_outputs: 2,
        labels: LabelLayout::Single,
        with_index: true,
        compression: None,
    };
    let mut w = AttributionWriter::create(path, layout).unwrap();
    let pred: Vec<f32> = (0..n * 2).map(|_| rng.random::<f32>()).collect();
    let index: Vec<u32> = (0..n as u32).map(|i| 1000 + i).collect();
    w.write_batch(0, &data, &pred, &BatchLabels::Single(&labels), Some(&index))
        .unwrap();
    w.finish().unwrap();
    artifact
}

fn small_config() -> AnalysisConfig {
    let mut cfg = AnalysisConfig::default();
    cfg.knn.k = 10;
    cfg.eigen.n_eigval = 12;
    cfg.kmeans.k_max = 8;
    cfg.agglomerative.k_max = 8;
    cfg.dbscan.eps = vec![0.3, 0.6];
    cfg.tsne.iterations = 300;
    cfg.umap.epochs = 100;
    cfg
}

#[test]
fn planted_artifact_group_is_one_pure_cluster_at_the_eigengap_k() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("attribution.h5");
    let output = dir.path().join("analysis.h5");
    let artifact = planted_file(&input);
    let opts = RunOptions {
        cache: Cache::at(dir.path().join("cache")),
        ..RunOptions::default()
    };
    let cfg = small_config();
    let reports = analyze_file(&input, &output, &cfg, &opts, &NoProgress).unwrap();
    assert_eq!(reports.len(), 2);
    let f = AnalysisFile::open(&output).unwrap();
    assert_eq!(f.categories().unwrap(), vec!["00000000", "00000001"]);
    for (c, name) in ["00000000", "00000001"].iter().enumerate() {
        let cat = f.category(name).unwrap();
        // index holds the attribution file's `index` values of this class's rows.
        let rows: Vec<usize> = (0..2 * PER_CLASS).filter(|r| r % 2 == c).collect();
        assert_eq!(
            cat.index,
            rows.iter().map(|&r| 1000 + r as u32).collect::<Vec<_>>()
        );
        let k = cat
            .attrs
            .iter()
            .find(|(n, _)| n == "eigengap_suggested_k")
            .and_then(|(_, v)| {
                if let AttrValue::Int(k) = v {
                    Some(*k as usize)
                } else {
                    None
                }
            })
            .unwrap();
        assert_eq!(k, 4, "three prototypes + the artifact group");
        let spectral = cat
            .embeddings
            .iter()
            .find(|e| e.name == "spectral")
            .unwrap();
        let ev = spectral.eigenvalue.as_ref().unwrap();
        assert_eq!(ev.len(), 12);
        assert!(
            ev.windows(2).all(|w| w[0] >= w[1] - 1e-6),
            "descending: {ev:?}"
        );
        assert!(ev[11].abs() < 1e-6);
        for prefix in ["kmeans", "agglomerative"] {
            let labels = &cat
                .clusterings
                .iter()
                .find(|cl| cl.name == format!("{prefix}-{k:02}"))
                .unwrap()
                .labels;
            let is_art: Vec<bool> = rows.iter().map(|&r| artifact[r]).collect();
            // The cluster holding most artifact samples.
            let mut votes = std::collections::HashMap::new();
            for (l, &a) in labels.iter().zip(&is_art) {
                if a {
                    *votes.entry(*l).or_insert(0usize) += 1;
                }
            }
            let (&cl, &hits) = votes.iter().max_by_key(|(_, &v)| v).unwrap();
            let size = labels.iter().filter(|&&l| l == cl).count();
            let purity = hits as f64 / size as f64;
            let recall = hits as f64 / ARTIFACT as f64;
            assert!(
                purity >= 0.9 && recall >= 0.9,
                "{prefix}: purity {purity}, recall {recall}"
            );
        }
        for name in ["tsne", "umap"] {
            let e = cat.embeddings.iter().find(|e| e.name == name).unwrap();
            assert_eq!(e.values.len(), PER_CLASS * 2);
            assert!(e.values.iter().all(|v| v.is_finite()));
        }
        assert!(cat.clusterings.iter().any(|c| c.name == "dbscan-eps=0.3"));
        assert!(cat.clusterings.iter().any(|c| c.name == "hdbscan"));
    }

    // Rerun: refused without --force, then everything from the cache with identical output.
    assert!(analyze_file(&input, &output, &cfg, &opts, &NoProgress).is_err());
    let first = f.category("00000000").unwrap();
    drop(f);
    let opts_force = RunOptions {
        force: true,
        ..opts.clone()
    };
    let reports = analyze_file(&input, &output, &cfg, &opts_force, &NoProgress).unwrap();
    for r in &reports {
        for stage in [
            "eigen",
            "kmeans",
            "agglomerative",
            "dbscan",
            "hdbscan",
            "tsne",
            "umap",
        ] {
            assert!(
                r.cached.contains(&stage),
                "{stage} not cached: {:?}",
                r.cached
            );
        }
    }
    assert_eq!(
        AnalysisFile::open(&output)
            .unwrap()
            .category("00000000")
            .unwrap(),
        first
    );

    // A changed k-means parameter recomputes k-means only.
    let mut cfg2 = cfg.clone();
    cfg2.kmeans.n_init = 3;
    let reports = analyze_file(&input, &output, &cfg2, &opts_force, &NoProgress).unwrap();
    for r in &reports {
        assert!(!r.cached.contains(&"kmeans"));
        assert!(r.cached.contains(&"eigen") && r.cached.contains(&"tsne"));
    }
}

#[test]
fn analysis_is_deterministic_without_cache() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("attribution.h5");
    planted_file(&input);
    let cfg = small_config();
    let mut outs = Vec::new();
    for i in 0..2 {
        let output = dir.path().join(format!("a{i}.h5"));
        analyze_file(&input, &output, &cfg, &RunOptions::default(), &NoProgress).unwrap();
        let mut cat = AnalysisFile::open(&output)
            .unwrap()
            .category("00000001")
            .unwrap();
        cat.clusterings.sort_by(|a, b| a.name.cmp(&b.name));
        cat.embeddings.sort_by(|a, b| a.name.cmp(&b.name));
        outs.push(cat);
    }
    for (a, b) in outs[0].embeddings.iter().zip(&outs[1].embeddings) {
        assert_eq!(a, b, "embedding {}", a.name);
    }
    for (a, b) in outs[0].clusterings.iter().zip(&outs[1].clusterings) {
        assert_eq!(a, b, "clustering {}", a.name);
    }
    assert_eq!(outs[0], outs[1]);
}

#[test]
fn class_with_fewer_samples_than_eigenvalues_is_analysed() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("tiny.h5");
    let n = 7;
    let layout = AttributionLayout {
        n_samples: n,
        sample_shape: vec![3, 4, 4],
        n_outputs: 2,
        labels: LabelLayout::Single,
        with_index: false,
        compression: None,
    };
    let mut w = AttributionWriter::create(&input, layout).unwrap();
    let data: Vec<f32> = (0..n * 48).map(|i| ((i * 31 % 17) as f32) + 1.0).collect();
    let labels = [0u32, 0, 0, 0, 0, 0, 1];
    w.write_batch(0, &data, &[0.0; 14], &BatchLabels::Single(&labels), None)
        .unwrap();
    w.finish().unwrap();
    let output = dir.path().join("analysis.h5");
    analyze_file(
        &input,
        &output,
        &AnalysisConfig::default(),
        &RunOptions::default(),
        &NoProgress,
    )
    .unwrap();
    let f = AnalysisFile::open(&output).unwrap();
    let big = f.category("00000000").unwrap();
    assert_eq!(big.embeddings[0].dim, 6);
    // Every clustering name exists in every category (ViRelAy takes names from the first).
    let small = f.category("00000001").unwrap();
    let names = |c: &prism_store::Category| {
        c.clusterings
            .iter()
            .map(|c| c.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&big), names(&small));
    assert_eq!(small.index, vec![6]);
}

#[test]
fn changing_any_parameter_changes_its_stage_key_and_no_earlier_one() {
    let input = Key([1; 32]);
    let base = AnalysisConfig::default();
    let k0 = StageKeys::new(&input, &base).unwrap();
    let order = |k: &StageKeys| {
        let family = |name: &str| *k.family(name).unwrap();
        vec![
            ("preprocess", k.preprocess),
            ("knn", k.knn),
            ("laplacian", k.laplacian),
            ("eigen", k.eigen),
            ("kmeans", family("kmeans")),
            ("agglomerative", family("agglomerative")),
            ("dbscan", family("dbscan")),
            ("hdbscan", family("hdbscan")),
            ("tsne", family("tsne")),
            ("umap", family("umap")),
        ]
    };
    type Edit = fn(&mut AnalysisConfig);
    let edits: Vec<(&str, Edit)> = vec![
        ("preprocess", |c| {
            c.preprocess.variant = prism_analysis::config::Variant::Absspectral
        }),
        ("preprocess", |c| c.preprocess.pool = 2),
        ("preprocess", |c| c.preprocess.histogram_bins = 16),
        ("knn", |c| c.knn.k = 31),
        ("knn", |c| {
            c.knn.method = prism_analysis::config::KnnMethod::Exact
        }),
        ("knn", |c| c.knn.approximate_above = 10),
        ("knn", |c| c.knn.lists = 10),
        ("knn", |c| c.knn.nprobe = 4),
        ("laplacian", |c| {
            c.affinity.kind = prism_analysis::config::AffinityKind::Rbf
        }),
        ("laplacian", |c| c.affinity.sigma = 2.0),
        ("eigen", |c| c.eigen.n_eigval = 31),
        ("eigen", |c| {
            c.eigen.solver = prism_analysis::config::EigenSolver::Sparse
        }),
        ("eigen", |c| c.eigen.dense_max_n = 10),
        ("eigen", |c| c.eigen.tolerance = 1e-7),
        ("eigen", |c| c.eigen.max_iterations = 10),
        ("eigen", |c| c.eigen.max_suggested_k = 10),
        // The seed drives the approximate kNN's quantiser (auto may pick it), so it starts there.
        ("knn", |c| c.seed = 1),
        ("kmeans", |c| c.kmeans.enabled = false),
        ("kmeans", |c| {
            c.kmeans.columns = prism_analysis::config::SpectralColumns::All
        }),
        ("agglomerative", |c| {
            c.agglomerative.columns = prism_analysis::config::SpectralColumns::All
        }),
        ("kmeans", |c| c.kmeans.k_min = 3),
        ("kmeans", |c| c.kmeans.k_max = 20),
        ("kmeans", |c| c.kmeans.n_init = 1),
        ("kmeans", |c| c.kmeans.max_iter = 10),
        ("agglomerative", |c| c.agglomerative.enabled = false),
        ("agglomerative", |c| c.agglomerative.k_min = 3),
        ("agglomerative", |c| c.agglomerative.k_max = 9),
        ("agglomerative", |c| c.agglomerative.max_n = 9),
        ("dbscan", |c| c.dbscan.enabled = false),
        ("dbscan", |c| c.dbscan.eps = vec![0.5]),
        ("dbscan", |c| c.dbscan.min_samples = 4),
        ("hdbscan", |c| c.hdbscan.enabled = false),
        ("hdbscan", |c| c.hdbscan.min_cluster_size = 6),
        ("tsne", |c| c.tsne.enabled = false),
        ("tsne", |c| c.tsne.perplexity = 20.0),
        ("tsne", |c| c.tsne.early_exaggeration = 4.0),
        ("tsne", |c| c.tsne.iterations = 500),
        ("tsne", |c| c.tsne.theta = 0.3),
        ("umap", |c| c.umap.enabled = false),
        ("umap", |c| c.umap.n_neighbors = 5),
        ("umap", |c| c.umap.min_dist = 0.5),
        ("umap", |c| c.umap.spread = 2.0),
        ("umap", |c| {
            c.umap.metric = prism_analysis::config::UmapMetric::Euclidean
        }),
        ("umap", |c| c.umap.epochs = 7),
        ("umap", |c| c.umap.negative_sample_rate = 3),
    ];
    for (stage, edit) in edits {
        let mut cfg = base.clone();
        edit(&mut cfg);
        assert_ne!(cfg, base, "edit for {stage} changed nothing");
        let k1 = StageKeys::new(&input, &cfg).unwrap();
        let pos = order(&k0).iter().position(|(s, _)| *s == stage).unwrap();
        let (a, b) = (order(&k0), order(&k1));
        assert_ne!(a[pos].1, b[pos].1, "{stage} key unchanged");
        for i in 0..pos.min(4) {
            assert_eq!(
                a[i].1, b[i].1,
                "{stage} edit changed earlier key {}",
                a[i].0
            );
        }
    }
    // A different input changes every key.
    let k2 = StageKeys::new(&Key([2; 32]), &base).unwrap();
    assert!(order(&k0).iter().zip(order(&k2)).all(|(a, b)| a.1 != b.1));
}

#[test]
fn exact_knn_key_ignores_the_seed() {
    let input = Key([2; 32]);
    let mut cfg = AnalysisConfig::default();
    cfg.knn.method = prism_analysis::config::KnnMethod::Exact;
    let a = StageKeys::new(&input, &cfg).unwrap();
    cfg.seed = 9;
    let b = StageKeys::new(&input, &cfg).unwrap();
    assert_eq!(a.knn, b.knn);
    assert_ne!(a.eigen, b.eigen);
}

/// The keys of release 1's cache (format version 1), for the default configuration and with
/// the exact kNN (no seed in the kNN key): a refactor that changes them silently invalidates
/// every user's cache.
#[test]
fn stage_keys_stay_those_of_existing_caches() {
    let mut exact = AnalysisConfig::default();
    exact.knn.method = prism_analysis::config::KnnMethod::Exact;
    let expected: [[&str; 10]; 2] = [
        [
            "preprocess 899b5aa8e35c3cb33ed5a4fba2857427ff5ffa32f510aae821616c3b914a4d64",
            "knn 0a0cb22ca070195b7c0e18ef561f0a68184ea9ed639a8f055c5e28190c0e96e0",
            "laplacian a70886b90b14878becf95d92bf3213b2999bd803181a4b764bd13597307dab3a",
            "eigen c332dca863617635ea46d50f935ea0692ba4e94490394e1125876db9a896f3e9",
            "kmeans d42f61da37d3f9d2650aa5add763ef32a491290ad462527e5cf32c1ab9218355",
            "agglomerative e76a4ff9982bca9ada7031bedc287b433e832f4b7627eddf72dbc7000bc50f79",
            "dbscan 4cf920240a1686ba16c549fd9b9a02ec30808807f4b4c6c5a4ff6dc5187bb5ac",
            "hdbscan 6c902049c71b2b8a7efe201f558daf525d5fdab3aea0afe362f0c428c1051277",
            "tsne 96242a6830589ab593b567614933b03f7407563628030e3e1325565e87db2201",
            "umap af6e3ece9ecefbab9724fbc8edade3692dae04d309b0d00dcc719d02a91d10d5",
        ],
        [
            "preprocess 899b5aa8e35c3cb33ed5a4fba2857427ff5ffa32f510aae821616c3b914a4d64",
            "knn 0258b02772af7f590386c76382cd889c2f22d3fdc89bcf56d07ab3147f1d30a8",
            "laplacian 38d1755758fa70063372c7dd6c8a6857e089c21f87f543162face0231ae29f6f",
            "eigen eec88e8369c275beae064582d92e01447aa896fd4561a6f0f6faf5808e430daf",
            "kmeans 3358ab4c39f7cbaf463a811aeab4587088b9f130f0787d82a658745ed8c380d9",
            "agglomerative 7322000c423ddc65ecd12abe229cae062495daf5e67116a9685aae37d22be077",
            "dbscan 913abf54905330ea833bbaf2c5d13a528aec2840b6944ace7780e3faf2ea7628",
            "hdbscan d61f795afc0aa90cc68f61aaad3d5dc41514dc36af66834d9cb8cfe531974172",
            "tsne 0a7be7a4a50981f33d9c922ab034d56075e0df678e7f3c5c73058a7b2c57bebc",
            "umap 9e4734288980a7c3945f952a03c83af348ecee56fa6b697f492c830d052bc70b",
        ],
    ];
    for (cfg, want) in [AnalysisConfig::default(), exact].iter().zip(expected) {
        let k = StageKeys::new(&Key([1; 32]), cfg).unwrap();
        let mut got = vec![
            format!("preprocess {}", k.preprocess.hex()),
            format!("knn {}", k.knn.hex()),
            format!("laplacian {}", k.laplacian.hex()),
            format!("eigen {}", k.eigen.hex()),
        ];
        got.extend(
            k.families
                .iter()
                .map(|(name, key)| format!("{name} {}", key.hex())),
        );
        assert_eq!(got, want);
    }
}
