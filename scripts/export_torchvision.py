#!/usr/bin/env python3
"""Export full-size torchvision classifiers (random weights) to ONNX with reference outputs.

Purpose
    Realistic-size models for Prism's parity tests and benchmarks, too large to commit:
    vgg16 (~528 MB), resnet50 (~98 MB), densenet121 (~31 MB), mobilenet_v2 (~14 MB),
    efficientnet_b0 (~21 MB). Weights are torchvision's default random initialisation
    (weights=None) under a fixed seed, so no download is needed; models are in eval mode.
    With default BatchNorm statistics (mean 0, var 1) an untrained eval-mode network's activations
    vanish or explode (mobilenet_v2's logits come out around 1e-9, resnet50's around 1e2), which
    makes a useless parity reference. So, unless --no-calibrate-bn is given, the BN running
    statistics are first estimated from one seeded batch of noise (BN layers alone in train mode,
    momentum=None, no gradients; Dropout/StochasticDepth stay in eval mode).

How to run (from the repository root)
    /root/anchors/bin/python scripts/export_torchvision.py [--models resnet50,mobilenet_v2]
        [--out target/torchvision] [--opset 17] [--batch 2] [--seed 0] [--keep-bn]
        [--no-calibrate-bn] [--calib-batch 8] [--threads 2]

    --keep-bn exports with do_constant_folding=False, so BatchNormalization nodes stay in the
    graph (by default the exporter folds eval-mode BN into the preceding Conv).

What it writes (under --out, default target/torchvision/, which git ignores)
    <name>.onnx          legacy TorchScript exporter (dynamo=False), input "input"
                         N x 3 x 224 x 224, output "output" N x 1000, dynamic batch axis
    <name>.input.npy     float32 batch of standard-normal noise (seeded), batch x 3 x 224 x 224
    <name>.output.npy    float32 onnxruntime output (CPU, graph optimisations off) on that input
    manifest.json        the same fields as tests/fixtures/manifest.json, for the models written in
                         this run (merged with the entries already there)
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torchvision

warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=UserWarning)

MODELS = ["vgg16", "resnet50", "densenet121", "mobilenet_v2", "efficientnet_b0"]
LEGACY = "torch.onnx.export legacy TorchScript exporter (dynamo=False)"


def run_ort(path, x, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, {sess.get_inputs()[0].name: x})[0], dtype=np.float32)


def calibrate_bn(model, args):
    """Estimate BN running statistics from a batch of noise; the rest of the model stays in eval."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
        m.train()
    x = np.random.default_rng(args.seed + 2).standard_normal(
        (args.calib_batch, 3, args.size, args.size)).astype(np.float32)
    with torch.no_grad():
        model(torch.from_numpy(x))
    for m in bns:
        m.eval()


def export_one(name, args):
    t0 = time.time()
    torch.manual_seed(args.seed)
    model = getattr(torchvision.models, name)(weights=None).eval()
    if args.calibrate_bn:
        calibrate_bn(model, args)
    x = np.random.default_rng(args.seed + 1).standard_normal(
        (args.batch, 3, args.size, args.size)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    path = os.path.join(args.out, f"{name}.onnx")
    torch.onnx.export(
        model, (torch.from_numpy(x),), path, dynamo=False, opset_version=args.opset,
        do_constant_folding=not args.keep_bn, input_names=["input"], output_names=["output"],
        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
    )
    del model
    onnx.checker.check_model(path)
    proto = onnx.load(path, load_external_data=False)
    ops = sorted({n.op_type for n in proto.graph.node})
    del proto
    y = run_ort(path, x, args.threads)
    diff = float(np.max(np.abs(ref - y)))
    np.save(os.path.join(args.out, f"{name}.input.npy"), x)
    np.save(os.path.join(args.out, f"{name}.output.npy"), y)
    size = os.path.getsize(path)
    print(f"{name:<16} {size / 1e6:8.1f} MB  max|out| {np.max(np.abs(y)):9.4g}  "
          f"|ort-torch| {diff:.2e}  {time.time() - t0:6.1f} s  {' '.join(ops)}", flush=True)
    tol = 1e-3 * max(1.0, float(np.max(np.abs(ref))))
    if diff > tol:
        print(f"  WARNING: onnxruntime and torch differ by {diff} (> {tol})")
    bn = (f"BN statistics calibrated on {args.calib_batch} noise images"
          if args.calibrate_bn else "default BN statistics")
    return {
        "name": name, "onnx": f"{name}.onnx", "input": f"{name}.input.npy",
        "output": f"{name}.output.npy", "opset": args.opset, "input_name": "input", "ops": ops,
        "note": f"torchvision.models.{name}(weights=None), torch.manual_seed({args.seed}), eval, "
                f"{bn}. Exported with {LEGACY}, opset {args.opset}, "
                f"do_constant_folding={not args.keep_bn}.",
        "exporter": LEGACY, "input_shape": list(x.shape), "output_shape": list(y.shape),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS),
                    help=f"comma-separated subset of {','.join(MODELS)} (default: all)")
    ap.add_argument("--out", default=os.path.join("target", "torchvision"))
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep-bn", action="store_true",
                    help="do_constant_folding=False: keep BatchNormalization nodes")
    ap.add_argument("--no-calibrate-bn", dest="calibrate_bn", action="store_false",
                    help="keep torchvision's default BN statistics (mean 0, var 1)")
    ap.add_argument("--calib-batch", type=int, default=8,
                    help="noise images used to estimate BN statistics (default 8)")
    ap.add_argument("--threads", type=int, default=2, help="torch and onnxruntime threads")
    args = ap.parse_args()
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        ap.error(f"unknown model(s) {unknown}; choose from {MODELS}")
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)

    manifest_path = os.path.join(args.out, "manifest.json")
    entries = {}
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            entries = {m["name"]: m for m in json.load(f).get("models", [])}
    for name in names:
        entries[name] = export_one(name, args)
        with open(manifest_path, "w") as f:
            json.dump({"models": [entries[k] for k in sorted(entries)]}, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
