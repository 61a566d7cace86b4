#!/usr/bin/env python3
"""The Python package's overhead: `prism_xai` `model.explain` against the Rust library.

Runs, on the same model, batch, composite and threads, one after the other:
- the Rust library through `crates/prism-attribution/examples/bench_lrp` (an `Explainer` reused
  across calls, the input made in Rust), and
- `prism_xai.Model(path).explain(x, composite=..., low=-3, high=3)` from Python (numpy in,
  numpy out: the input copy, the output hand-over, a fresh explainer per call),
each the median of REPS after a warm-up, and prints the ratio (the issue's target: ≤ 1.05 on
VGG16, batch 8, 224²). Needs prism_xai installed in this interpreter and the model exported
(`scripts/export_torchvision.py --models vgg16` writes target/torchvision/vgg16.onnx).

    python bench/python/overhead.py --model target/torchvision/vgg16.onnx --threads 2
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "target/torchvision/vgg16.onnx"))
    ap.add_argument("--composite", default="epsilon-plus-flat")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--bench-lrp", default=None, help="the bench_lrp binary (default: build it)")
    a = ap.parse_args()

    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads))
    exe = a.bench_lrp
    if exe is None:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "prism-attribution", "--example", "bench_lrp"], cwd=ROOT, check=True)
        target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
        exe = str(target / "release/examples/bench_lrp")
    rust = json.loads(subprocess.run([exe, a.model, a.composite, str(a.batch), str(a.reps)], env=env, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])

    import numpy as np
    import prism_xai

    prism_xai.set_num_threads(a.threads)
    model = prism_xai.Model(a.model)
    x = np.random.default_rng(7).uniform(-2, 2, (a.batch, 3, 224, 224)).astype(np.float32)

    def once():
        s = time.perf_counter()
        model.explain(x, target=0, composite=a.composite, low=-3.0, high=3.0, batch_size=a.batch)
        return (time.perf_counter() - s) * 1e3

    once()
    times = sorted(once() for _ in range(a.reps))
    py_ms = times[len(times) // 2]
    load = os.getloadavg()
    print(f"{Path(a.model).name} {a.composite} batch {a.batch}, {a.threads} threads, load {load[0]:.2f}")
    print(f"rust library {rust['lrp_ms']:.0f} ms, python {py_ms:.0f} ms, ratio {py_ms / rust['lrp_ms']:.3f}")


if __name__ == "__main__":
    sys.exit(main())
