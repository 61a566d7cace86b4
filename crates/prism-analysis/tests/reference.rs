//! Agreement with scipy / scikit-learn on fixtures made by `scripts/make_analysis_reference.py`.

use std::path::PathBuf;

use prism_analysis::config::{AffinityConfig, EigenConfig, EigenSolver, KnnConfig};
use prism_analysis::{cluster, eigen, graph, hdbscan, knn};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/analysis")
        .join(name)
}

fn load<T: npyz::Deserialize>(name: &str) -> (Vec<T>, Vec<u64>) {
    let f = std::fs::File::open(fixture(name)).unwrap();
    let npy = npyz::NpyFile::new(std::io::BufReader::new(f)).unwrap();
    let shape = npy.shape().to_vec();
    (npy.into_vec::<T>().unwrap(), shape)
}

/// Equal partitions up to a renaming of the labels (noise −1 must match exactly).
fn same_partition(a: &[i32], b: &[i64]) -> bool {
    let mut ab = std::collections::HashMap::new();
    let mut ba = std::collections::HashMap::new();
    a.len() == b.len()
        && a.iter().zip(b).all(|(&x, &y)| {
            if (x < 0) != (y < 0) {
                return false;
            }
            *ab.entry(x).or_insert(y) == y && *ba.entry(y).or_insert(x) == x
        })
}

fn spectral_case(solver: EigenSolver) -> (Vec<f64>, Vec<f64>) {
    let (x, shape) = load::<f32>("spectral_features.npy");
    let (n, d) = (shape[0] as usize, shape[1] as usize);
    let (want_knn, _) = load::<i64>("spectral_knn.npy");
    let g = knn::exact_knn(&x, n, d, 10);
    let got_knn: Vec<i64> = g.indices.iter().map(|&j| j as i64).collect();
    assert_eq!(got_knn, want_knn, "kNN lists differ from numpy's");
    let m = graph::normalised_adjacency(&graph::affinity(&g, &AffinityConfig::default()));
    let cfg = EigenConfig {
        n_eigval: 16,
        solver,
        tolerance: 1e-9,
        ..EigenConfig::default()
    };
    let s = eigen::spectral_embedding(&m, &cfg, 0).unwrap();
    let (want, _) = load::<f64>("spectral_eigenvalues.npy");
    (s.laplacian_ascending(), want)
}

#[test]
fn dense_eigenvalues_match_scipy_eigsh_to_1e_6() {
    let (got, want) = spectral_case(EigenSolver::Dense);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-6, "got {got:?}\nwant {want:?}");
    }
}

#[test]
fn sparse_eigenvalues_match_scipy_eigsh_to_1e_6() {
    let (got, want) = spectral_case(EigenSolver::Sparse);
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-6, "got {got:?}\nwant {want:?}");
    }
}

fn points() -> (Vec<f32>, usize, usize) {
    let (x, shape) = load::<f32>("cluster_points.npy");
    (x, shape[0] as usize, shape[1] as usize)
}

#[test]
fn kmeans_labels_match_sklearn_up_to_permutation() {
    let (x, n, d) = points();
    let (want, _) = load::<i64>("cluster_kmeans_k5.npy");
    let got = cluster::kmeans(&x, n, d, 5, 10, 300, 0);
    assert!(same_partition(&got, &want));
}

#[test]
fn ward_labels_match_sklearn_up_to_permutation_for_every_k() {
    let (x, n, d) = points();
    let ks: Vec<usize> = (2..=8).collect();
    let cuts = cluster::agglomerative_ward(&x, n, d, &ks);
    for (k, got) in ks.iter().zip(&cuts) {
        let (want, _) = load::<i64>(&format!("cluster_ward_k{k}.npy"));
        assert!(same_partition(got, &want), "k = {k}");
    }
}

#[test]
fn dbscan_labels_match_sklearn_up_to_permutation() {
    let (x, n, d) = points();
    let eps = [0.8, 1.5, 3.0];
    let all = cluster::dbscan_multi(&x, n, d, &eps, 5);
    for (e, got) in eps.iter().zip(&all) {
        let (want, _) = load::<i64>(&format!("cluster_dbscan_eps{e:?}.npy"));
        assert!(same_partition(got, &want), "eps = {e}");
    }
}

/// Share of points whose label is the one most of their cluster maps to in the reference
/// (noise maps to noise), and whether both have the same number of clusters.
fn agreement(got: &[i32], want: &[i64]) -> (f64, bool) {
    let mut conf = std::collections::BTreeMap::new();
    for (&g, &w) in got.iter().zip(want) {
        *conf.entry((g, w)).or_insert(0usize) += 1;
    }
    let mut best = std::collections::BTreeMap::new();
    for (&(g, w), &c) in &conf {
        let e = best.entry(g).or_insert((0usize, w));
        if c > e.0 && ((g < 0) == (w < 0)) {
            *e = (c, w);
        }
    }
    let hits: usize = best.values().map(|v| v.0).sum();
    let clusters = |m: i64| m + 1;
    let same = clusters(*got.iter().max().unwrap_or(&-1) as i64)
        == clusters(*want.iter().max().unwrap_or(&-1));
    (hits as f64 / got.len() as f64, same)
}

/// Python `hdbscan` (what CoRelAy calls), exact MST. Mutual-reachability distances tie often
/// (every edge of a point to a closer neighbour weighs its core distance), so a point at equal
/// reachability from two clusters may join either, depending on each implementation's MST
/// tie-breaking: the partitions must agree on ≥ 99 % of the points.
#[test]
fn hdbscan_labels_match_python_hdbscan() {
    let (x, shape) = load::<f32>("hdbscan_points.npy");
    let (n, d) = (shape[0] as usize, shape[1] as usize);
    for m in [5usize, 15] {
        let (want, _) = load::<i64>(&format!("hdbscan_labels_m{m}.npy"));
        let got = cluster::hdbscan(&x, n, d, m, &KnnConfig::default(), 0);
        let (share, same_k) = agreement(&got, &want);
        assert!(same_k && share >= 0.99, "min_cluster_size = {m}: {share}");
        // Few neighbours (more exact searches over cells) give the same result.
        let g = knn::exact_knn(&x, n, d, m);
        assert_eq!(hdbscan::hdbscan_with_knn(&x, n, d, &g, m), got);
    }
}
