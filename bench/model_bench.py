#!/usr/bin/env python3
"""Prism vs PyTorch, side by side in one run: conv2d forward and input-gradient on VGG16's 3x3
layer shapes, and whole VGG16 / ResNet50 forward at batch 1 and 8 (random weights, 224x224).

Both sides use the same thread count (RAYON_NUM_THREADS for Prism, torch.set_num_threads and
OMP/MKL variables for PyTorch) and the same protocol: one warm-up, then repeat until 2 s have
passed (3 to 20 runs); the table shows medians and the ratio Prism / PyTorch (lower is better).

    python3 bench/model_bench.py [--threads 2] [--skip-conv] [--skip-models]

Needs torch + torchvision + onnx (scripts/README.md); the ONNX models come from
scripts/export_torchvision.py (exported into target/torchvision/ when missing).
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timeit(f):
    f()
    t = []
    start = time.perf_counter()
    while len(t) < 3 or (time.perf_counter() - start < 2.0 and len(t) < 20):
        s = time.perf_counter()
        f()
        t.append((time.perf_counter() - s) * 1e3)
    t.sort()
    return t[len(t) // 2], t[0]


def prism(args, threads):
    exe = ROOT / "target/release/examples/bench"
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run([str(exe), *args], env=env, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-conv", action="store_true")
    ap.add_argument("--skip-models", action="store_true")
    ap.add_argument("--batches", default="1,8")
    a = ap.parse_args()
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[k] = str(a.threads)
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(a.threads)
    print(f"threads={a.threads} torch={torch.__version__} ({torch.backends.mkldnn.is_available() and 'oneDNN' or 'no oneDNN'})")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "prism-model", "--example", "bench"], cwd=ROOT, check=True)
    rows = []
    if not a.skip_conv:
        ours = {(r["kind"], r["batch"], r["c"], r["h"]): r for r in prism(["conv"], a.threads)}
        torch.manual_seed(0)
        for b in (1, 8):
            for c, h in ((64, 224), (128, 112), (256, 56), (512, 28), (512, 14)):
                x = torch.randn(b, c, h, h)
                w = torch.randn(c, c, 3, 3)
                bias = torch.randn(c)
                with torch.no_grad():
                    fwd = timeit(lambda: F.conv2d(x, w, bias, padding=1))
                    # conv input-gradient (VJP), as torch's autograd computes it
                    grad = timeit(lambda: torch.ops.aten.convolution_backward(
                        x, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [True, False, False]))
                for kind, t in (("conv_fwd", fwd), ("conv_grad", grad)):
                    p = ours[(kind, b, c, h)]
                    rows.append((f"{kind} b={b} {c}@{h}", p["median_ms"], t[0]))
    if not a.skip_models:
        import torchvision
        tv = ROOT / "target/torchvision"
        for name in ("vgg16", "resnet50"):
            path = tv / f"{name}.onnx"
            if not path.exists():
                subprocess.run([sys.executable, str(ROOT / "scripts/export_torchvision.py"), "--models", name, "--out", str(tv)], check=True)
            torch.manual_seed(0)
            model = getattr(torchvision.models, name)(weights=None).eval()
            for b in [int(v) for v in a.batches.split(",")]:
                (p,) = prism(["model", str(path), str(b)], a.threads)
                x = torch.randn(b, 3, 224, 224)
                with torch.no_grad():
                    t = timeit(lambda: model(x))
                rows.append((f"{name} forward b={b}", p["median_ms"], t[0]))
    print(f"{'case':<28}{'prism ms':>10}{'torch ms':>10}{'ratio':>8}")
    for name, p, t in rows:
        print(f"{name:<28}{p:>10.1f}{t:>10.1f}{p / t:>7.2f}x")


if __name__ == "__main__":
    main()
