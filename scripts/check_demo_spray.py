#!/usr/bin/env python3
"""SpRAy check of the bundled demo data (assets/demo/, written by scripts/make_demo.py), mirroring
what `prism demo` / `prism analyze` do with their defaults:

  attribution  Zennit LRP, composite EpsilonPlusFlat, attributor Gradient with output seed
               one-hot(true label) (ViRelAy's "true_label" strategy), on the model of
               mnist-cnn.onnx (weights loaded into the torch twin of make_demo.build_model)
  preprocess   "spectral": sum over channels, divide each map by its (signed) sum over H x W
               (a zero sum leaves the map unscaled), flatten
  knn          exact euclidean kNN (float64, ties by index, self excluded), k = 32
  affinity     binary A per kNN edge, W = (A + A^T) / 2
  laplacian    M = D^-1/2 W D^-1/2; eigenpairs of the 32 largest eigenvalues of M (dense, as Prism
               for N <= 2500) = the 32 smallest of L = I - M
  eigengap     mu ascending Laplacian eigenvalues; suggested k = argmax_{k in [2, 30]} mu_k - mu_{k-1}
  kmeans       k = 2..10 on the k leading eigenvectors, rows L2-normalised (Prism's default,
               `columns = "leading"`), n_init 10, several seeds; also CoRelAy's "all 32 columns"
               variant for comparison

For the poisoned class it reports the cluster holding most artifact samples: its size, purity
(share of artifact samples in it) and recall (share of the artifact samples it holds), at the
suggested k and at k = 2. Exit status 1 when purity or recall at the suggested k is below 0.9
for any k-means seed (the acceptance criterion of `prism demo`).

    /root/anchors/bin/python scripts/check_demo_spray.py [--dir assets/demo] [--knn 32] [--classes all]
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np
import scipy.linalg
import scipy.sparse
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import make_demo  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent


def attribute(model, x: np.ndarray, y: np.ndarray, composite_name: str) -> np.ndarray:
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonGammaBox, EpsilonPlusFlat

    composite = EpsilonPlusFlat() if composite_name == "epsilon-plus-flat" else EpsilonGammaBox(low=0.0, high=1.0)
    out = []
    with Gradient(model=model, composite=composite) as attributor:
        for i in range(0, len(x), 500):
            xb = torch.from_numpy(x[i : i + 500]).requires_grad_(True)
            seed = torch.eye(10)[torch.from_numpy(y[i : i + 500].astype(np.int64))]
            _, r = attributor(xb, seed)
            out.append(r.detach().numpy())
    return np.concatenate(out)


def preprocess_spectral(r: np.ndarray) -> np.ndarray:
    s = r.sum(1)  # (n, H, W)
    tot = s.sum((1, 2), keepdims=True)
    ok = np.isfinite(tot) & (tot != 0)
    s = np.where(ok, s / np.where(ok, tot, 1.0), s)
    return s.reshape(len(s), -1).astype(np.float64)


def knn_graph(f: np.ndarray, k: int) -> scipy.sparse.csr_matrix:
    n = len(f)
    k = min(k, n - 1)
    sq = (f * f).sum(1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * f @ f.T
    np.fill_diagonal(d2, np.inf)
    nn_idx = np.argsort(d2, axis=1, kind="stable")[:, :k]
    rows = np.repeat(np.arange(n), k)
    a = scipy.sparse.csr_matrix((np.ones(n * k), (rows, nn_idx.ravel())), shape=(n, n))
    return ((a + a.T) / 2.0).tocsr()


def spectral(w: scipy.sparse.csr_matrix, n_eig: int):
    """Laplacian eigenvalues ascending (mu) and eigenvectors (columns in the same order)."""
    deg = np.asarray(w.sum(1)).ravel()
    dinv = 1.0 / np.sqrt(deg)
    m = (scipy.sparse.diags(dinv) @ w @ scipy.sparse.diags(dinv)).toarray()
    n = len(m)
    d = min(n_eig, n)
    lam, v = scipy.linalg.eigh(m, subset_by_index=(n - d, n - 1))  # ascending lambda
    return (1.0 - lam)[::-1], v[:, ::-1]


def eigengap(mu: np.ndarray, max_k: int = 30) -> int:
    hi = min(max_k, len(mu) - 1)
    gaps = np.diff(mu)  # gaps[k-1] = mu_k - mu_{k-1}
    return int(2 + np.argmax(gaps[1:hi]))


def kmeans(v: np.ndarray, k: int, seed: int, columns: str) -> np.ndarray:
    from sklearn.cluster import KMeans

    e = v[:, :k] if columns == "leading" else v
    norm = np.linalg.norm(e, axis=1, keepdims=True)
    e = e / np.where(norm > 0, norm, 1.0)
    return KMeans(k, n_init=10, random_state=seed).fit_predict(e)


def artifact_cluster(labels: np.ndarray, art: np.ndarray):
    c = np.bincount(labels[art]).argmax()
    members = labels == c
    hits = int((members & art).sum())
    return int(members.sum()), hits / members.sum(), hits / art.sum()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=pathlib.Path, default=ROOT / "assets" / "demo")
    ap.add_argument("--knn", default="32,16,10", help="kNN sizes to try; the first one is checked")
    ap.add_argument("--n-eig", type=int, default=32)
    ap.add_argument("--composite", default="epsilon-plus-flat", choices=["epsilon-plus-flat", "epsilon-gamma-box"])
    ap.add_argument("--classes", default="all", help="'all' or the poisoned class only ('poisoned')")
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args(argv)

    import h5py

    torch.set_num_threads(1)
    t0 = time.time()
    with h5py.File(args.dir / "mnist.h5", "r") as f:
        x, y, art = f["data"][:], f["label"][:].astype(np.int64), f["artifact"][:]
        k_p = int(f.attrs["artifact_class"])
    model = make_demo.load_onnx_into_model(args.dir / "mnist-cnn.onnx")
    knns = [int(s) for s in args.knn.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    classes = range(10) if args.classes == "all" else [k_p]
    print(f"SpRAy check ({args.composite}, spectral preprocessing, {args.n_eig} eigenpairs, k-means n_init 10)")
    ok = True
    for c in classes:
        idx = np.flatnonzero(y == c)
        r = attribute(model, x[idx], y[idx], args.composite)
        feat = preprocess_spectral(r)
        a = art[idx]
        if c == k_p:
            rr = r.sum(1)
            corner = rr[:, : make_demo.ARTIFACT_SIZE + 1, : make_demo.ARTIFACT_SIZE + 1].sum((1, 2)) / rr.sum((1, 2))
            print(
                f"class {c}: n={len(idx)}, {a.sum()} marked; share of relevance in the corner "
                f"{make_demo.ARTIFACT_SIZE + 1}x{make_demo.ARTIFACT_SIZE + 1}: marked median {np.median(corner[a]):.2f}, "
                f"unmarked median {np.median(corner[~a]):.3f}"
            )
        for j, kn in enumerate(knns):
            mu, v = spectral(knn_graph(feat, kn), args.n_eig)
            ks = eigengap(mu)
            line = f"class {c}: knn {kn:2d}: eigengap k={ks}, mu[1..6]={np.round(mu[1:7], 3).tolist()}"
            if c != k_p:
                if j == 0:
                    print(line)
                continue
            print(line)
            for columns in ("leading", "all"):
                for k in sorted({ks, 2}) + [kk for kk in (3, 4, 5) if kk not in (ks, 2)]:
                    res = [artifact_cluster(kmeans(v, k, s, columns), a) for s in seeds]
                    txt = "; ".join(f"size {n}, purity {p:.3f}, recall {rc:.3f}" for n, p, rc in res)
                    mark = " <- suggested" if k == ks else ""
                    print(f"    {columns:7s} k={k}: {txt}{mark}")
                    if j == 0 and columns == "leading" and k == ks:
                        ok &= all(p >= 0.9 and rc >= 0.9 for _, p, rc in res)
    print(f"check {'PASSED' if ok else 'FAILED'} (class {k_p}, knn {knns[0]}, leading columns, suggested k); "
          f"{time.time() - t0:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
