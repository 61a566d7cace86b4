#!/usr/bin/env python3
"""Checks that ViRelAy (pip `virelay`) opens the attribution and analysis files Prism wrote.

Builds a ViRelAy project around them (a dataset HDF5 of matching size, a label map, the YAML)
and reads, through ViRelAy's own model code and its Flask API, every category, every
embedding x clustering pair, and every member's attribution. Exit status 0 = all readable.

    /root/anchors-analysis/bin/python scripts/check_virelay_compat.py \
        ATTRIBUTION.h5 ANALYSIS.h5 [--workdir DIR]

or, for a whole project Prism wrote (`prism project`, `prism demo`), opened as it is:

    /root/anchors-analysis/bin/python scripts/check_virelay_compat.py --project prism-demo/project.yaml

Not run by CI (needs the Python package `virelay`, AGPL, kept outside the Rust build).
"""
import argparse
import json
import os
import pathlib
import shutil
import sys
import tempfile

import h5py
import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("attribution", nargs="?")
    ap.add_argument("analysis", nargs="?")
    ap.add_argument("--project", help="open this project file as it is (written by Prism)")
    ap.add_argument("--workdir", help="where to build the project (default: a temporary directory)")
    args = ap.parse_args()
    if args.project is None and (args.attribution is None or args.analysis is None):
        ap.error("give ATTRIBUTION and ANALYSIS, or --project")

    from virelay.model import Workspace  # imported late: a clear error if virelay is missing
    from virelay.server import Server

    if args.project is not None:
        import yaml
        name = yaml.safe_load(pathlib.Path(args.project).read_text())["project"]["name"]
        workspace = Workspace()
        workspace.add_project(str(args.project))
        return check(workspace, workspace.get_project(name), Server)

    work = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="prism-virelay-"))
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(args.attribution, work / "attribution.h5")
    shutil.copy(args.analysis, work / "analysis.h5")

    with h5py.File(work / "attribution.h5", "r") as f:
        n, shape = f["attribution"].shape[0], f["attribution"].shape[1:]
        label = f["label"][()]
        print(f"attribution: {n} samples of {shape}, label {label.dtype} {label.shape},"
              f" attrs {dict(f.attrs)}")
    classes = sorted(set(np.unique(label).tolist())) if label.ndim == 1 else list(range(label.shape[1]))
    with h5py.File(work / "analysis.h5", "r") as f:
        category_names = list(f.keys())
    # Category names are WordNet ids (with a label map) or f'{class:08d}'.
    label_map = []
    for c in range(max(classes) + 1):
        wnid = next((name for name in category_names if name == f"{c:08d}"), f"{c:08d}")
        label_map.append({"index": c, "word_net_id": wnid, "name": f"class {c}"})
    (work / "label-map.json").write_text(json.dumps(label_map))

    # A dataset of matching size: ViRelAy shows dataset images next to attributions.
    c, h, w = (shape + (1, 1, 1))[:3] if len(shape) == 3 else (1, 8, 8)
    rng = np.random.default_rng(0)
    with h5py.File(work / "dataset.h5", "w") as f:
        f.create_dataset("data", data=rng.random((n, 3, h, w), dtype=np.float32))
        f.create_dataset("label", data=label)
    (work / "project.yaml").write_text(
        "project:\n"
        "  name: Prism compatibility check\n"
        "  model: synthetic\n"
        "  label_map: label-map.json\n"
        "  dataset:\n"
        "    name: synthetic\n"
        "    type: hdf5\n"
        "    path: dataset.h5\n"
        f"    input_width: {w}\n"
        f"    input_height: {h}\n"
        "    up_sampling_method: none\n"
        "    down_sampling_method: none\n"
        "  attributions:\n"
        "    attribution_method: lrp\n"
        "    attribution_strategy: true_label\n"
        "    sources:\n"
        "      - attribution.h5\n"
        "  analyses:\n"
        "    - analysis_method: spectral_analysis\n"
        "      sources:\n"
        "        - analysis.h5\n"
    )

    workspace = Workspace()
    workspace.add_project(str(work / "project.yaml"))
    return check(workspace, workspace.get_project("Prism compatibility check"), Server)


def check(workspace, project, Server) -> int:
    """Reads every category, embedding x clustering pair and member through ViRelAy."""
    failures = 0
    n_analyses = n_attr = 0
    for method in project.get_analysis_methods():
        categories = project.get_analysis_categories(method)
        clusterings = project.get_analysis_clustering_names(method)
        embeddings = project.get_analysis_embedding_names(method)
        print(f"method {method}: {len(categories)} categories, {len(embeddings)} embeddings"
              f" {embeddings}, {len(clusterings)} clusterings")
        for cat in categories:
            for emb in embeddings:
                for clu in clusterings:
                    try:
                        a = project.get_analysis(method, cat.name, clu, emb)
                        e = np.asarray(a.embedding)
                        cl = np.asarray(a.clustering)
                        assert e.shape[0] == cl.shape[0] == len(a.attribution_indices), "row counts differ"
                        assert np.all(np.isfinite(e)), "non-finite embedding"
                        if emb == "spectral":
                            assert a.eigenvalues is not None and len(a.eigenvalues) == e.shape[1]
                        n_analyses += 1
                    except Exception as exc:  # report every failure, not just the first
                        failures += 1
                        print(f"FAIL {cat.name}/{emb}/{clu}: {exc!r}")
            # Every member's attribution and sample must resolve.
            a = project.get_analysis(method, cat.name, clusterings[0], embeddings[0])
            for idx in a.attribution_indices:
                try:
                    att = project.get_attribution(int(idx))
                    project.get_sample(int(idx))
                    assert att.data is not None
                    n_attr += 1
                except Exception as exc:
                    failures += 1
                    print(f"FAIL attribution {idx} of {cat.name}: {exc!r}")
                    break

    # The HTTP API as the browser uses it (one request per category).
    server = Server(workspace)
    client = server.app.test_client()
    for cat in project.get_analysis_categories(method):
        r = client.get(f"/api/projects/0/analyses/{method.replace('_', '-')}"
                       f"?category={cat.name}&clustering={clusterings[0]}&embedding=spectral")
        if r.status_code != 200 or "eigenvalues" not in r.get_json():
            failures += 1
            print(f"FAIL API {cat.name}: {r.status_code} {r.data[:200]!r}")
    workspace.close()
    print(f"{n_analyses} analyses and {n_attr} attributions read through ViRelAy; {failures} failures")
    print(f"{n_analyses + n_attr} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
