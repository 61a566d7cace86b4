#!/usr/bin/env python3
"""Independent numpy implementation of region perturbation (issue 8), for Prism's parity test.

Written from the definitions in docs/evaluation.md, not from Prism's code: the model runs
forward in float64 numpy (a small interpreter for the fixture's operators: Conv, Relu, MaxPool,
GlobalAveragePool, Flatten, Gemm), patches are ranked with numpy's stable argsort, baselines
are built with numpy, and the random orders and uniform noise come from SplitMix64 written out
below. Prism's `region_perturbation_matches_numpy_reference` test (crates/prism-eval/tests)
runs the same configurations in f64 and must agree to 1e-5.

Reads  tests/fixtures/eval/eval_cnn.{onnx,input.npy,relevance.npy}
Writes tests/fixtures/eval/region_perturbation.reference.json

Run from the repository root: /root/anchors/bin/python scripts/eval_reference.py
Needs numpy and onnx (only to read the weights).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
ORDER, UNIFORM = 1, 2


# ------------------------------------------------------------------------------------------
# SplitMix64
# ------------------------------------------------------------------------------------------


def mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


class SplitMix64:
    def __init__(self, state: int) -> None:
        self.state = state & MASK

    @staticmethod
    def stream(seed: int, a: int, b: int) -> "SplitMix64":
        return SplitMix64(mix((seed + mix((a * (1 << 16) + b) & MASK)) & MASK))

    def next(self) -> int:
        self.state = (self.state + GOLDEN) & MASK
        return mix(self.state)

    def uniform(self) -> float:
        return (self.next() >> 11) * 2.0**-53

    def permutation(self, n: int) -> list[int]:
        p = list(range(n))
        for j in range(n - 1, 0, -1):
            r = self.next() % (j + 1)
            p[j], p[r] = p[r], p[j]
        return p


# ------------------------------------------------------------------------------------------
# float64 forward of the fixture model
# ------------------------------------------------------------------------------------------


def attrs(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def conv(x, w, b, pads, strides):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    oh = (xp.shape[2] - kh) // strides[0] + 1
    ow = (xp.shape[3] - kw) // strides[1] + 1
    y = np.zeros((n, o, oh, ow))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i : i + strides[0] * oh : strides[0], j : j + strides[1] * ow : strides[1]]
            y += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    return y + b[None, :, None, None]


def maxpool(x, k, s):
    n, c, h, w = x.shape
    oh, ow = (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1
    y = np.full((n, c, oh, ow), -np.inf)
    for i in range(k[0]):
        for j in range(k[1]):
            y = np.maximum(y, x[:, :, i : i + s[0] * oh : s[0], j : j + s[1] * ow : s[1]])
    return y


class Net:
    def __init__(self, path: Path) -> None:
        m = onnx.load(path)
        self.graph = m.graph
        self.params = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in m.graph.initializer}

    def __call__(self, x: np.ndarray) -> np.ndarray:
        env = dict(self.params)
        env[self.graph.input[0].name] = x.astype(np.float64)
        for node in self.graph.node:
            a = attrs(node)
            i = [env[k] for k in node.input]
            op = node.op_type
            if op == "Conv":
                y = conv(i[0], i[1], i[2], a.get("pads", [0, 0, 0, 0]), a.get("strides", [1, 1]))
            elif op == "Relu":
                y = np.maximum(i[0], 0.0)
            elif op == "MaxPool":
                y = maxpool(i[0], a["kernel_shape"], a["strides"])
            elif op == "GlobalAveragePool":
                y = i[0].mean(axis=(2, 3), keepdims=True)
            elif op == "Flatten":
                y = i[0].reshape(i[0].shape[0], -1)
            elif op == "Gemm":
                w = i[1].T if a.get("transB", 0) else i[1]
                y = a.get("alpha", 1.0) * i[0] @ w + a.get("beta", 1.0) * i[2]
            else:
                raise SystemExit(f"eval_reference.py: operator {op} is not implemented")
            env[node.output[0]] = y
        return env[self.graph.output[0].name]


# ------------------------------------------------------------------------------------------
# region perturbation, from the definitions
# ------------------------------------------------------------------------------------------


def reflect(i: int, n: int) -> int:
    j = i % (2 * n)
    return 2 * n - 1 - j if j >= n else j


def blur(sample: np.ndarray, sigma: float) -> np.ndarray:
    r = max(int(np.ceil(3 * sigma)), 1)
    t = np.arange(-r, r + 1)
    k = np.exp(-(t**2) / (2 * sigma * sigma))
    k /= k.sum()
    c, h, w = sample.shape
    cols = np.array([[reflect(x + d, w) for d in t] for x in range(w)])  # w x (2r+1)
    rows = np.array([[reflect(y + d, h) for d in t] for y in range(h)])
    tmp = (sample[:, :, cols] * k).sum(-1)  # rows first
    return (tmp[:, rows, :] * k[None, :, None]).sum(2)


def baseline(sample: np.ndarray, kind: str, seed: int, index: int) -> np.ndarray:
    if kind == "zero":
        return np.zeros_like(sample)
    if kind == "mean":
        return np.broadcast_to(sample.mean(axis=(1, 2), keepdims=True), sample.shape).copy()
    if kind == "uniform":
        lo, hi = sample.min(), sample.max()
        rng = SplitMix64.stream(seed, index, UNIFORM)
        u = np.array([rng.uniform() for _ in range(sample.size)])
        return (lo + (hi - lo) * u).reshape(sample.shape)
    if kind.startswith("blur:"):
        return blur(sample, float(kind[5:]))
    raise ValueError(kind)


def patches(h: int, w: int, p: int) -> list[tuple[int, int, int, int]]:
    out = []
    for r0 in range(0, h, p):
        for c0 in range(0, w, p):
            out.append((r0, min(r0 + p, h), c0, min(c0 + p, w)))
    return out


def curves(net, x, rel, targets, p, steps, kind, order, seed):
    n, c, h, w = x.shape
    regions = patches(h, w, p)
    steps = min(steps, len(regions))
    f0 = net(x)[np.arange(n), targets]
    out = np.zeros((n, steps + 1))
    out[:, 0] = f0
    for i in range(n):
        sums = np.array([rel[i, :, a:b, c0:c1].sum() for a, b, c0, c1 in regions])
        if order == "morf":
            idx = np.argsort(-sums, kind="stable")
        elif order == "lerf":
            idx = np.argsort(sums, kind="stable")
        else:
            idx = SplitMix64.stream(seed, i, ORDER).permutation(len(regions))
        base = baseline(x[i], kind, seed, i)
        cur = x[i].copy()
        batch = []
        for k in range(steps):
            a, b, c0, c1 = regions[idx[k]]
            cur[:, a:b, c0:c1] = base[:, a:b, c0:c1]
            batch.append(cur.copy())
        out[i, 1:] = net(np.stack(batch))[:, targets[i]]
    return out


CONFIGS = [
    {"patch": 4, "steps": 24, "baseline": "zero"},
    {"patch": 4, "steps": 24, "baseline": "mean"},
    {"patch": 4, "steps": 24, "baseline": "uniform"},
    {"patch": 4, "steps": 24, "baseline": "blur:2"},
    {"patch": 5, "steps": 100, "baseline": "blur:1.3"},
    {"patch": 8, "steps": 16, "baseline": "zero"},
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dir", default="tests/fixtures/eval")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    d = Path(args.dir)
    net = Net(d / "eval_cnn.onnx")
    x = np.load(d / "eval_cnn.input.npy").astype(np.float64)
    rel = np.load(d / "eval_cnn.relevance.npy").astype(np.float64)
    targets = net(x).argmax(1)
    results = []
    for cfg in CONFIGS:
        entry = dict(cfg)
        for order in ("morf", "lerf", "random"):
            cv = curves(net, x, rel, targets, cfg["patch"], cfg["steps"], cfg["baseline"], order, args.seed)
            entry[order] = cv.tolist()
            entry[f"{order}_aopc"] = float((cv[:, :1] - cv).mean())
        results.append(entry)
        print(
            f"patch {cfg['patch']} steps {cfg['steps']:>3} {cfg['baseline']:<8} "
            f"AOPC morf {entry['morf_aopc']:.4f} lerf {entry['lerf_aopc']:.4f} random {entry['random_aopc']:.4f}"
        )
    out = {"seed": args.seed, "targets": targets.tolist(), "configs": results}
    (d / "region_perturbation.reference.json").write_text(json.dumps(out) + "\n")
    print(f"wrote {d / 'region_perturbation.reference.json'}")


if __name__ == "__main__":
    main()
