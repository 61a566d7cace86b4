#!/usr/bin/env python3
"""Reference numbers for prism-analysis tests (scipy / scikit-learn), written to
tests/fixtures/analysis/. Not run by CI; rerun after changing the definitions:

    python3 -m venv /root/anchors-analysis
    /root/anchors-analysis/bin/pip install numpy scipy scikit-learn
    /root/anchors-analysis/bin/python scripts/make_analysis_reference.py

Files:
  spectral_features.npy        (N, D) float32: 3 overlapping blobs (connected kNN graph)
  spectral_knn.npy             (N, K) int64: exact kNN (float64 distances, ties by index)
  spectral_eigenvalues.npy     (E,) float64: the E smallest eigenvalues of L = I - D^-1/2 W D^-1/2,
                               ascending, from scipy eigsh(which='LA') on M = D^-1/2 W D^-1/2,
                               with W = (A + A^T)/2, A binary kNN (CoRelAy's SparseKNN)
  cluster_points.npy           (N, D) float32: 5 well-separated blobs
  cluster_kmeans_k5.npy        sklearn KMeans(5, n_init=10, random_state=0) labels
  cluster_ward_k{2..8}.npy     sklearn AgglomerativeClustering(k, linkage='ward') labels
  cluster_dbscan_eps{E}.npy    sklearn DBSCAN(eps=E, min_samples=5) labels
  hdbscan_points.npy           (N, D) float32: blobs of different density, a sub-blob, noise
  hdbscan_labels_m{M}.npy      hdbscan.HDBSCAN(min_cluster_size=M, approx_min_span_tree=False)
                               labels (CoRelAy's HDBSCAN; needs `pip install hdbscan`)
"""
import pathlib

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
from sklearn.cluster import DBSCAN, AgglomerativeClustering, KMeans

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "analysis"
OUT.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(20261123)

# --- spectral: eigenvalues of the normalised Laplacian --------------------------------------
n_per, dim, k, n_eig = 100, 12, 10, 16
centres = rng.normal(0.0, 1.2, size=(3, dim))
x = np.concatenate([c + rng.normal(0.0, 1.0, size=(n_per, dim)) for c in centres]).astype(np.float32)
n = len(x)
xd = x.astype(np.float64)
d2 = ((xd[:, None, :] - xd[None, :, :]) ** 2).sum(-1)
np.fill_diagonal(d2, np.inf)
knn = np.argsort(d2, axis=1, kind="stable")[:, :k]
rows = np.repeat(np.arange(n), k)
a = scipy.sparse.csr_matrix((np.ones(n * k), (rows, knn.ravel())), shape=(n, n))
w = (a + a.T) / 2.0
deg = np.asarray(w.sum(1)).ravel()
dinv = scipy.sparse.diags(1.0 / np.sqrt(deg))
m = dinv @ w @ dinv
n_comp, _ = scipy.sparse.csgraph.connected_components(w)
assert n_comp == 1, "the spectral fixture must be connected"
lam = scipy.sparse.linalg.eigsh(m, k=n_eig, which="LA", tol=1e-12, return_eigenvectors=False)
lap = np.sort(1.0 - lam)
np.save(OUT / "spectral_features.npy", x)
np.save(OUT / "spectral_knn.npy", knn.astype(np.int64))
np.save(OUT / "spectral_eigenvalues.npy", lap)

# --- clusterings on well-separated data ------------------------------------------------------
centres = rng.normal(0.0, 8.0, size=(5, 6))
pts = np.concatenate([c + rng.normal(0.0, 0.6, size=(60, 6)) for c in centres]).astype(np.float32)
perm = rng.permutation(len(pts))
pts = pts[perm]
np.save(OUT / "cluster_points.npy", pts)
np.save(OUT / "cluster_kmeans_k5.npy", KMeans(5, n_init=10, random_state=0).fit_predict(pts).astype(np.int64))
for kk in range(2, 9):
    lab = AgglomerativeClustering(n_clusters=kk, linkage="ward").fit_predict(pts)
    np.save(OUT / f"cluster_ward_k{kk}.npy", lab.astype(np.int64))
for eps in (0.8, 1.5, 3.0):
    lab = DBSCAN(eps=eps, min_samples=5).fit_predict(pts)
    np.save(OUT / f"cluster_dbscan_eps{eps}.npy", lab.astype(np.int64))
# --- HDBSCAN (the `hdbscan` package CoRelAy uses), exact MST ------------------------------------
try:
    import hdbscan
except ImportError:
    hdbscan = None
if hdbscan is not None:
    hr = np.random.default_rng(5)
    parts = [
        hr.normal([0, 0, 0, 0], 0.3, size=(150, 4)),
        hr.normal([4, 0, 0, 0], 0.8, size=(150, 4)),
        hr.normal([0, 5, 0, 0], 0.15, size=(60, 4)),
        hr.normal([0, 5.6, 0, 0], 0.15, size=(60, 4)),
        hr.uniform(-3, 8, size=(80, 4)),
    ]
    hp = np.concatenate(parts).astype(np.float32)
    hp = hp[hr.permutation(len(hp))]
    np.save(OUT / "hdbscan_points.npy", hp)
    for mcs in (5, 15):
        lab = hdbscan.HDBSCAN(min_cluster_size=mcs, approx_min_span_tree=False).fit_predict(
            hp.astype(np.float64))
        np.save(OUT / f"hdbscan_labels_m{mcs}.npy", lab.astype(np.int64))
        print("hdbscan m", mcs, "clusters", lab.max() + 1, "noise", (lab < 0).sum())

print("wrote", sorted(p.name for p in OUT.glob("*.npy")))
