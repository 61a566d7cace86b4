#!/usr/bin/env python3
"""Captum 0.9 TCAV reference fixtures for `prism tcav` (tests/fixtures/tcav/).

Purpose
    `cargo test -p prism-jobs --test tcav` compares Prism's TCAV with Captum's
    (`captum.concept.TCAV`) on a tiny CNN and small synthetic image sets:
    (a) the activations and gradients at the layer (f32 and f64), (b) the TCAV scores with
    Captum's own CAVs given, (c) the scores of Prism's classifier against the spread of Captum's
    over several seeds, (d) the two-sided t-test against scipy.stats.ttest_ind.

How to run (from the repository root; needs torch, captum 0.9, scikit-learn, scipy, onnx,
onnxscript, onnxruntime, numpy, Pillow)
    /root/anchors/bin/python scripts/make_tcav_fixtures.py [--out tests/fixtures/tcav]

    Deterministic (fixed seeds, one thread); about 20 s. The output folder belongs to this
    script: it is emptied first.

What it writes (under --out; about 300 KB)
    tcav_cnn.onnx    legacy exporter, opset 17: Conv(3>6,3x3,p1)-ReLU-MaxPool2-Conv(6>8,3x3,p1)-
                     ReLU-MaxPool2-Flatten-Linear(8*4*4>3); input 3 x 16 x 16; non-in-place ReLUs.
                     The TCAV layer is the second ReLU (module `relu2`, ONNX node in manifest).
    sets/<name>/img/NNN.png
                     16 x 16 RGB image folders (one class folder `img`, as prism-store's image
                     folders are laid out): `striped` (30 images of horizontal stripes of random
                     period, phase and colours, with noise), `checkered` (30 checkerboards),
                     `random_0` … `random_5` (20 uniform-noise images each) and `inputs` (16
                     stripes-and-noise mixtures: the samples of the target class 0).
    act__<set>__f32.npy, act__<set>__f64.npy
                     Captum's `LayerActivation` at the layer, flattened per sample (N x 512);
                     f64 for `striped` and `random_0` only.
    grad__inputs__f32.npy, grad__inputs__f64.npy
                     Captum's `LayerGradientXActivation(multiply_by_inputs=False)` (the gradient
                     of the target's logit at the layer) on `inputs`, N x 512: what TCAV scores.
    cav__<concept>__<random>.npy
                     Captum's CAV (its weight row for the concept, float32) of every experiment
                     of the first seed.
    manifest.json    versions, layer names, target, the experiments, and per seed every
                     experiment's sign_count, magnitude, CAV accuracy and the CAV's Euclidean norm (Captum's
                     magnitude / norm is the magnitude of its unit CAV, which Prism reports); the t-test cases with
                     scipy's statistic and p-value.

Captum's settings: `TCAV(model, layers=["relu2"])` with its `DefaultClassifier` (sklearn's
SGDClassifier, hinge loss, alpha=0.01, max_iter=1000, tol=1e-3, the split shuffled by Python's
`random` with test_split_ratio 0.33). A run's seed seeds `random`, numpy and torch. Each seed
runs in a fresh save_path (Captum otherwise reloads the CAVs saved by the run before).
Experiments: every concept against every random set (`<concept>__random_i`), and the random
baseline, random_i against random_{(i+1) mod m} (Prism's default pairing).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import json
import os
import random
import shutil
import tempfile
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
from PIL import Image
from scipy import stats

SEEDS = [0, 1, 2, 3, 4, 5, 6, 7]
TARGET = 0
LAYER = "relu2"
N_RANDOM = 6
# the sets whose f64 activations are stored (all sets in f32)
F64_SETS = ["striped", "random_0"]


class TinyCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.relu1 = nn.ReLU(inplace=False)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.relu2 = nn.ReLU(inplace=False)
        self.pool2 = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 4 * 4, 3)

    def forward(self, x):
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        return self.fc(torch.flatten(x, 1))


def striped(rng):
    period = rng.integers(2, 6)
    phase = rng.integers(0, period)
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    rows = ((np.arange(16) + phase) // max(period // 2, 1)) % 2
    img = np.where(rows[:, None, None] == 1, a, b) * np.ones((16, 16, 3))
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def checkered(rng):
    size = rng.integers(2, 5)
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    yy, xx = np.mgrid[0:16, 0:16]
    cells = ((yy // size) + (xx // size)) % 2
    img = np.where(cells[:, :, None] == 1, a, b).astype(np.float64)
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def noise(rng):
    return rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)


def mixture(rng):
    w = rng.uniform(0.3, 0.8)
    img = w * striped(rng) + (1 - w) * noise(rng)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_set(out, name, images):
    folder = os.path.join(out, "sets", name, "img")
    os.makedirs(folder)
    for i, img in enumerate(images):
        Image.fromarray(img, "RGB").save(os.path.join(folder, f"{i:03d}.png"))


def read_set(out, name):
    """The PNGs as prism-store reads an image folder: sorted, RGB, /255, N x 3 x H x W."""
    folder = os.path.join(out, "sets", name, "img")
    files = sorted(os.listdir(folder))
    arr = [np.asarray(Image.open(os.path.join(folder, f)).convert("RGB")) for f in files]
    return (np.stack(arr).astype(np.float32) / np.float32(255.0)).transpose(0, 3, 1, 2).copy()


def export(model, x):
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.from_numpy(x),), buf, dynamo=False, export_params=True,
                          opset_version=17, do_constant_folding=True, input_names=["input"],
                          output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    proto = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(proto)
    return proto


def onnx_node_of(proto, model, x):
    """The ONNX node whose output equals module `relu2`'s output (checked with onnxruntime)."""
    got = {}
    h = getattr(model, LAYER).register_forward_hook(lambda m, i, o: got.setdefault("o", o))
    with torch.no_grad():
        model(torch.from_numpy(x))
    h.remove()
    want = got["o"].numpy()
    cands = [n for n in proto.graph.node if n.op_type == "Relu"]
    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    for n in cands:
        probe.graph.output.append(onnx.helper.make_tensor_value_info(n.output[0], 1, None))
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = sess.run([n.output[0] for n in cands], {"input": x})
    for n, o in zip(cands, outs):
        if o.shape == want.shape and np.max(np.abs(o - want)) <= 1e-5 * max(1.0, np.abs(want).max()):
            return n.name
    raise SystemExit("no ONNX node matches relu2")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/tcav")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from captum.attr import LayerActivation, LayerGradientXActivation
    from captum.concept import TCAV, Concept

    if os.path.isdir(args.out):
        shutil.rmtree(args.out)
    os.makedirs(args.out)

    rng = np.random.default_rng(20240518)
    write_set(args.out, "striped", [striped(rng) for _ in range(30)])
    write_set(args.out, "checkered", [checkered(rng) for _ in range(30)])
    randoms = [f"random_{i}" for i in range(N_RANDOM)]
    for r in randoms:
        write_set(args.out, r, [noise(rng) for _ in range(20)])
    write_set(args.out, "inputs", [mixture(rng) for _ in range(16)])
    concepts = ["striped", "checkered"]
    names = concepts + randoms
    data = {n: read_set(args.out, n) for n in names + ["inputs"]}

    torch.manual_seed(7)
    model = TinyCnn().eval()
    # PyTorch's default initialisation leaves this net's activations at ~0.05, where no concept
    # is linearly told from noise under the L2 penalty: scale them to order 1
    with torch.no_grad():
        model.conv1.weight.mul_(4.0)
        model.conv2.weight.mul_(4.0)
    proto = export(model, data["inputs"])
    with open(os.path.join(args.out, "tcav_cnn.onnx"), "wb") as f:
        f.write(proto.SerializeToString())
    node = onnx_node_of(proto, model, data["inputs"])

    def save(name, arr):
        np.save(os.path.join(args.out, name), arr)

    # (a) activations and gradients at the layer, f32 and f64
    for dtype, tag in [(torch.float32, "f32"), (torch.float64, "f64")]:
        m = TinyCnn()
        m.load_state_dict(model.state_dict())
        m = m.to(dtype).eval()
        layer = getattr(m, LAYER)
        for n in (names if tag == "f32" else F64_SETS):
            a = LayerActivation(m, layer).attribute(torch.from_numpy(data[n]).to(dtype))
            save(f"act__{n}__{tag}.npy", a.reshape(a.shape[0], -1).detach().numpy())
        g = LayerGradientXActivation(m, layer, multiply_by_inputs=False).attribute(
            torch.from_numpy(data["inputs"]).to(dtype), target=TARGET)
        save(f"grad__inputs__{tag}.npy", g.reshape(g.shape[0], -1).detach().numpy())

    # Captum's TCAV, once per seed
    experiments = [(c, r) for c in concepts for r in randoms]
    experiments += [(randoms[i], randoms[(i + 1) % N_RANDOM]) for i in range(N_RANDOM)]
    runs = []
    for seed in SEEDS:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        objs = {n: Concept(i, n, torch.utils.data.DataLoader(
            torch.from_numpy(data[n]), batch_size=64)) for i, n in enumerate(names)}
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tcav = TCAV(model, layers=[LAYER], save_path=tmp + "/")
            sets = [[objs[a], objs[b]] for a, b in experiments]
            scores = tcav.interpret(torch.from_numpy(data["inputs"]), sets, target=TARGET)
            run = {"seed": seed, "experiments": {}}
            for (a, b), s in zip(experiments, sets):
                key = f"{objs[a].id}-{objs[b].id}"
                cav = tcav.cavs[key][LAYER]
                classes = list(cav.stats["classes"])
                w = cav.stats["weights"][classes.index(objs[a].id)].float().numpy()
                if seed == SEEDS[0]:
                    save(f"cav__{a}__{b}.npy", w)
                run["experiments"][f"{a}__{b}"] = {
                    "sign_count": float(scores[key][LAYER]["sign_count"][0]),
                    "magnitude": float(scores[key][LAYER]["magnitude"][0]),
                    "accuracy": float(cav.stats["accs"]),
                    "cav_norm": float(np.linalg.norm(w.astype(np.float64))),
                }
            runs.append(run)

    # (d) t-test cases: scipy.stats.ttest_ind (pooled variance, two-sided)
    trng = np.random.default_rng(5)
    cases = [
        (trng.uniform(0, 1, 10), trng.uniform(0, 1, 10)),
        (trng.normal(0.8, 0.05, 10), trng.normal(0.5, 0.1, 10)),
        (trng.normal(0.6, 0.2, 3), trng.normal(0.5, 0.2, 7)),
        (trng.normal(0.0, 1.0, 2), trng.normal(0.1, 1.0, 2)),
        (trng.normal(10.0, 0.01, 25), trng.normal(9.9, 0.01, 30)),
        (np.array([0.5, 0.52, 0.49, 0.51]), np.array([0.5, 0.48, 0.53, 0.49, 0.5])),
        (trng.normal(1.0, 1.0, 100), trng.normal(1.05, 1.0, 80)),
    ]
    # the scores of the first seed's experiments, concept against the random baseline
    base = [runs[0]["experiments"][f"{randoms[i]}__{randoms[(i + 1) % N_RANDOM]}"]["sign_count"]
            for i in range(N_RANDOM)]
    for c in concepts:
        cases.append((np.array([runs[0]["experiments"][f"{c}__{r}"]["sign_count"]
                                for r in randoms]), np.array(base)))
    ttests = []
    for a, b in cases:
        t, p = stats.ttest_ind(a, b)
        ttests.append({"a": [float(v) for v in a], "b": [float(v) for v in b],
                       "statistic": float(t), "pvalue": float(p)})

    manifest = {
        "versions": {k: importlib.metadata.version(k) for k in
                     ["torch", "captum", "scikit-learn", "scipy", "onnx"]},
        "model": "tcav_cnn.onnx",
        "layer_module": LAYER,
        "layer": node,
        "target": TARGET,
        "concepts": concepts,
        "randoms": randoms,
        "experiments": [f"{a}__{b}" for a, b in experiments],
        "runs": runs,
        "ttests": ttests,
    }
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    for c in concepts + randoms[:1]:
        sc = [[r["experiments"][e]["sign_count"] for r in runs]
              for e in manifest["experiments"] if e.startswith(c + "__")]
        print(c, np.round(np.mean(sc, axis=1), 3), np.round(np.std(sc, axis=1), 3))


if __name__ == "__main__":
    main()
