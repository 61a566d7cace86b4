#!/usr/bin/env python3
"""Prism vs Zennit, side by side in one run: LRP (epsilon-gamma-box, epsilon-plus-flat) on
torchvision VGG16 and ResNet50 (random weights), batch 8, 224x224, same thread count.

Each configuration runs in its own process so that its peak memory (max RSS, from wait4) is
its own. Times are medians of --reps runs (default 3) after a warm-up. Prints throughput ratios, peak-memory
ratios, and Prism's LRP time relative to its own forward pass.

    python3 bench/attribution_bench.py [--threads 2] [--batch 8] [--models vgg16,resnet50]

Needs torch, torchvision, zennit, onnx (see scripts/README.md); the ONNX exports come from
scripts/export_torchvision.py (run automatically when missing).
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMPOSITES = ("epsilon-gamma-box", "epsilon-plus-flat")


def run_child(cmd, env):
    """Runs a command; returns (its JSON line, its peak RSS in MiB)."""
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"{cmd} failed with {p.returncode}")
    line = [l for l in out.splitlines() if l.startswith("{")][-1]
    return json.loads(line), usage.ru_maxrss / 1024


def zennit_worker(model_name, composite, batch, threads, reps):
    import torch
    import torchvision
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonGammaBox, EpsilonPlusFlat
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = getattr(torchvision.models, model_name)(weights=None).eval()
    canon = [ResNetCanonizer()] if model_name.startswith("resnet") else [VGGCanonizer()]
    if composite == "epsilon-gamma-box":
        comp = EpsilonGammaBox(low=-3.0, high=3.0, canonizers=canon)
    else:
        comp = EpsilonPlusFlat(canonizers=canon)
    x = torch.rand(batch, 3, 224, 224) * 4 - 2
    one_hot = torch.eye(1000)[[0] * batch]

    def once():
        s = time.perf_counter()
        with Gradient(model=model, composite=comp) as attributor:
            attributor(x, one_hot)
        return (time.perf_counter() - s) * 1e3

    once()
    t = sorted(once() for _ in range(reps))
    print(json.dumps({"side": "zennit", "lrp_ms": t[len(t) // 2]}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--models", default="vgg16,resnet50")
    ap.add_argument("--reps", type=int, default=3, help="timed runs after the warm-up (median)")
    ap.add_argument("--worker", nargs=3, metavar=("MODEL", "COMPOSITE", "BATCH"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        zennit_worker(a.worker[0], a.worker[1], int(a.worker[2]), a.threads, a.reps)
        return
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads))
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "prism-attribution", "--example", "bench_lrp"], cwd=ROOT, check=True)
    exe = ROOT / "target/release/examples/bench_lrp"
    rows = []
    for name in a.models.split(","):
        path = ROOT / "target/torchvision" / f"{name}.onnx"
        if not path.exists():
            subprocess.run([sys.executable, str(ROOT / "scripts/export_torchvision.py"), "--models", name], check=True, cwd=ROOT)
        for comp in COMPOSITES:
            p, p_mem = run_child([str(exe), str(path), comp, str(a.batch), str(a.reps)], env)
            z, z_mem = run_child([sys.executable, __file__, "--threads", str(a.threads), "--reps", str(a.reps), "--worker", name, comp, str(a.batch)], env)
            rows.append((name, comp, p, p_mem, z, z_mem))
            print(f"{name} {comp}: prism {p['lrp_ms']:.0f} ms ({p_mem:.0f} MiB), zennit {z['lrp_ms']:.0f} ms ({z_mem:.0f} MiB)", flush=True)
    print(f"\nbatch {a.batch}, {a.threads} threads")
    print(f"{'model':<10}{'composite':<20}{'prism ms':>9}{'zennit ms':>10}{'speedup':>8}{'prism MiB':>10}{'zennit MiB':>11}{'mem':>6}{'lrp/fwd':>8}")
    for name, comp, p, pm, z, zm in rows:
        print(f"{name:<10}{comp:<20}{p['lrp_ms']:>9.0f}{z['lrp_ms']:>10.0f}{z['lrp_ms'] / p['lrp_ms']:>7.2f}x{pm:>10.0f}{zm:>11.0f}{pm / zm:>6.2f}{p['lrp_ms'] / p['forward_ms']:>8.2f}")


if __name__ == "__main__":
    main()
