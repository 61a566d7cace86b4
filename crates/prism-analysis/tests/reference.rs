//! Agreement with scipy / scikit-learn on fixtures made by `scripts/make_analysis_reference.py`.

use std::path::PathBuf;

use prism_analysis::config::{AffinityConfig, EigenConfig, EigenSolver};
use prism_analysis::{cluster, eigen, graph, knn};

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
