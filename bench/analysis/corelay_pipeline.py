#!/usr/bin/env python3
"""CoRelAy's SpRAy pipeline, as in its `virelay_analysis.py` example (variant `spectral`,
SparseKNN(32), EigenDecomposition(32), k-means and agglomerative for k = 2..30, DBSCAN for
eps = k/10, HDBSCAN, UMAP, t-SNE), run per class on an attribution file, with stage timings.

    /root/anchors-analysis/bin/python bench/analysis/corelay_pipeline.py ATTRIBUTION.h5 [--json OUT]

The preprocessing functions (sum over channels, normalise, flatten) are written here from
their definitions, since CoRelAy ships none.
"""
import argparse
import json
import time

import h5py
import numpy as np
from corelay.processor.affinity import SparseKNN
from corelay.processor.clustering import DBSCAN, HDBSCAN, AgglomerativeClustering, KMeans
from corelay.processor.distance import SciPyPDist
from corelay.processor.embedding import EigenDecomposition, TSNEEmbedding, UMAPEmbedding
from corelay.processor.laplacian import SymmetricNormalLaplacian


def preprocess(x):
    x = x.sum(axis=1)  # channels
    x = x / x.sum(axis=(1, 2), keepdims=True)
    return x.reshape(len(x), -1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("attribution")
    ap.add_argument("--json")
    ap.add_argument("--skip", nargs="*", default=[], help="stages to skip (e.g. tsne umap)")
    args = ap.parse_args()
    ks = range(2, 31)
    out = {}
    with h5py.File(args.attribution, "r") as f:
        labels = f["label"][()]
        for c in np.unique(labels):
            t = {}
            t0 = time.perf_counter()
            idx = np.nonzero(labels == c)[0]
            x = f["attribution"][idx, :]
            t["read"] = time.perf_counter() - t0

            def timed(name, fn, data):
                s = time.perf_counter()
                r = fn(data)
                t[name] = time.perf_counter() - s
                return r

            feats = timed("preprocess", preprocess, x)
            dist = timed("pdist", SciPyPDist(metric="euclidean"), feats)
            aff = timed("knn", SparseKNN(n_neighbors=32, symmetric=True), dist)
            lap = timed("laplacian", SymmetricNormalLaplacian(), aff)
            ev, emb = timed("eigen", EigenDecomposition(n_eigval=32), lap)
            timed("kmeans_x29", lambda e: [KMeans(n_clusters=k)(e) for k in ks], emb)
            timed("dbscan_x29", lambda e: [DBSCAN(eps=k / 10.0)(e) for k in ks], emb)
            timed("hdbscan", HDBSCAN(), emb)
            timed("agglomerative_x29", lambda e: [AgglomerativeClustering(n_clusters=k)(e) for k in ks], emb)
            if "umap" not in args.skip:
                timed("umap", UMAPEmbedding(), emb)
            if "tsne" not in args.skip:
                timed("tsne", TSNEEmbedding(), emb)
            t["total"] = time.perf_counter() - t0
            out[int(c)] = t
            print(f"class {c} n={len(idx)} " + " ".join(f"{k}={v:.2f}s" for k, v in t.items()), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
