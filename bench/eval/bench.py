#!/usr/bin/env python3
"""Region perturbation: Prism versus Quantus' RegionPerturbation, same data, same run.

VGG16 (torchvision, random weights, torch.manual_seed(0): the model scripts/export_torchvision.py
exports) on N seeded noise images of 224x224; the relevance is the same seeded array for both
tools; targets are the torch model's predictions. Both perturb 8x8 patches most-relevant-first
with a zero baseline for --steps steps and record the target logit. Prism runs
`crates/prism-eval/examples/bench_perturbation.rs` (release), Quantus 0.6 runs on PyTorch (CPU)
with the same number of threads. The script checks that the curves agree (f32: 1e-3 relative),
then prints both times and the ratio.

The issue's setting is --n 100 --steps 100 (10,100 VGG16 forward passes per tool: about an hour
per tool on a 2-core machine). Run from the repository root:

  /root/anchors/bin/python bench/eval/bench.py --n 100 --steps 100
  /root/anchors/bin/python bench/eval/bench.py --n 8 --steps 25        # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--patch", type=int, default=8)
    ap.add_argument("--batch", type=int, default=32, help="Prism: perturbed inputs per forward")
    ap.add_argument("--quantus-batch", type=int, default=64, help="Quantus: samples per batch")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--onnx", default=str(ROOT / "target/torchvision/vgg16.onnx"))
    ap.add_argument("--work", default=str(ROOT / "bench/out/eval"))
    ap.add_argument("--target-dir", default=os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target")))
    args = ap.parse_args()

    os.environ["RAYON_NUM_THREADS"] = str(args.threads)
    import torch
    import torchvision
    import quantus

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if not Path(args.onnx).exists():
        subprocess.run(
            [sys.executable, "scripts/export_torchvision.py", "--models", "vgg16", "--out", str(Path(args.onnx).parent)],
            cwd=ROOT,
            check=True,
        )

    torch.manual_seed(0)
    model = torchvision.models.vgg16(weights=None).eval()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.n, 3, 224, 224)).astype(np.float32)
    a = rng.standard_normal((args.n, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        y = model(torch.from_numpy(x)).argmax(1).numpy().astype(np.int64)
    for name, arr in [("x", x), ("a", a), ("y", y)]:
        np.save(work / f"{name}.npy", arr)

    # Prism.
    subprocess.run(
        ["cargo", "build", "--release", "-q", "-p", "prism-eval", "--example", "bench_perturbation"],
        cwd=ROOT,
        check=True,
        env={**os.environ, "CARGO_TARGET_DIR": args.target_dir},
    )
    exe = Path(args.target_dir) / "release/examples/bench_perturbation"
    out = subprocess.run(
        [str(exe), args.onnx, str(work / "x.npy"), str(work / "a.npy"), str(work / "y.npy"),
         str(args.patch), str(args.steps), str(args.batch), "morf", str(work / "prism_curves.npy")],
        check=True,
        capture_output=True,
        text=True,
    )
    prism = json.loads(out.stdout.strip().splitlines()[-1])
    prism_curves = np.load(work / "prism_curves.npy")

    # Quantus, on the same data.
    metric = quantus.RegionPerturbation(
        patch_size=args.patch,
        order="morf",
        regions_evaluation=args.steps,
        perturb_baseline=0.0,
        normalise=False,
        abs=False,
        disable_warnings=True,
        display_progressbar=False,
    )
    t0 = time.perf_counter()
    scores = metric(
        model=model, x_batch=x, y_batch=y, a_batch=a, device="cpu", batch_size=args.quantus_batch,
        softmax=False,
    )
    q_secs = time.perf_counter() - t0
    q = np.asarray(scores)  # f(x) - f(x_k), k = 1..L
    p = prism_curves[:, :1] - prism_curves[:, 1:]
    err = np.abs(p - q).max() / max(1.0, np.abs(q).max())
    print(f"region perturbation, VGG16, {args.n} images 224x224, {args.steps} steps of {args.patch}x{args.patch}, "
          f"{args.threads} threads")
    print(f"curves agree: max |Prism - Quantus| / max|Quantus| = {err:.2e}")
    print(f"{'':10} {'seconds':>10} {'forwards/s':>11}")
    fw = args.n * (args.steps + 1)
    print(f"{'Prism':10} {prism['seconds']:>10.2f} {fw / prism['seconds']:>11.2f}")
    print(f"{'Quantus':10} {q_secs:>10.2f} {fw / q_secs:>11.2f}")
    print(f"speedup Prism vs Quantus: {q_secs / prism['seconds']:.2f}x")
    (work / "result.json").write_text(json.dumps(
        {"n": args.n, "steps": args.steps, "threads": args.threads, "prism_s": prism["seconds"],
         "quantus_s": q_secs, "speedup": q_secs / prism["seconds"], "max_rel_curve_diff": float(err)}) + "\n")
    if err > 1e-3:
        raise SystemExit("curves disagree")


if __name__ == "__main__":
    main()
