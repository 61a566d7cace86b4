#!/usr/bin/env python3
"""`prism concepts` vs zennit-crp's FeatureVisualization.run, side by side in one run.

Relevance and activation maximisation (RelMax + ActMax, top 40 per channel, abs_norm, target =
label, EpsilonPlusFlat with the VGG canonizer) on torchvision VGG16 (random weights, seeded) for
its last three convolutions (features.24, .26, .28), over N seeded noise images of 224x224 with
seeded labels, batch 8, the same thread count. Each side runs in its own process: wall time and
peak memory (max RSS, from wait4). Prism runs twice: without crops (what FeatureVisualization.run
computes; zennit-crp computes crops later, per concept shown) and with --crops 8 (receptive-field
boxes for the 8 best references of every channel, both modes).

    /root/anchors/bin/python bench/concepts/bench.py [--n 2000] [--threads 2] [--batch 8]
        [--no-crops-run]

Needs torch, torchvision, zennit 1.0, zennit-crp 0.6 (`pip install --no-deps zennit-crp` plus
`pip install tqdm matplotlib`, its other imports: it pins zennit<=0.4.6 but works with 1.0),
onnx, numpy (see scripts/README.md). The ONNX export
comes from scripts/export_torchvision.py (run when missing); data go to target/bench-concepts/.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
LAYERS = ("features.24", "features.26", "features.28")


def run_child(cmd, env):
    """Runs a command; returns (wall seconds, peak RSS in MiB, stdout)."""
    start = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{cmd} failed with {code}")
    return wall, usage.ru_maxrss / 1024, out


def crp_worker(data, labels, n, batch, threads):
    import numpy as np
    import torch
    import torchvision
    from crp.attribution import CondAttribution
    from crp.concepts import ChannelConcept
    from crp.visualization import FeatureVisualization
    from zennit.composites import EpsilonPlusFlat
    from zennit.torchvision import VGGCanonizer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = torchvision.models.vgg16(weights=None).eval()
    x = np.load(data, mmap_mode="r")
    y = np.load(labels)

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return n

        def __getitem__(self, i):
            return torch.from_numpy(np.array(x[i])), int(y[i])

    out = tempfile.mkdtemp(prefix="crp-fv-")
    try:
        fv = FeatureVisualization(
            CondAttribution(model),
            Data(),
            {name: ChannelConcept() for name in LAYERS},
            preprocess_fn=None,
            path=out,
            max_target="sum",
            abs_norm=True,
        )
        start = time.perf_counter()
        fv.run(EpsilonPlusFlat(canonizers=[VGGCanonizer()]), 0, n, batch_size=batch, checkpoint=500)
        print(json.dumps({"seconds": time.perf_counter() - start}))
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="images")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--no-crops-run", action="store_true", help="skip Prism's run with --crops 8")
    ap.add_argument("--worker", nargs=2, metavar=("DATA", "LABELS"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        crp_worker(a.worker[0], a.worker[1], a.n, a.batch, a.threads)
        return
    from importlib.metadata import version

    import numpy as np
    import torch

    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads))
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "prism-cli"], cwd=ROOT, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    prism = target / "release" / "prism"
    onnx = ROOT / "target/torchvision/vgg16.onnx"
    if not onnx.exists():
        subprocess.run([sys.executable, str(ROOT / "scripts/export_torchvision.py"), "--models", "vgg16"], check=True, cwd=ROOT)
    work = ROOT / "target/bench-concepts"
    work.mkdir(parents=True, exist_ok=True)
    data, labels = work / f"data-{a.n}.npy", work / f"labels-{a.n}.npy"
    if not data.exists():
        rng = np.random.default_rng(0)
        arr = np.lib.format.open_memmap(data, mode="w+", dtype=np.float32, shape=(a.n, 3, 224, 224))
        for i in range(0, a.n, 100):
            arr[i:i + 100] = rng.standard_normal((min(100, a.n - i), 3, 224, 224), dtype=np.float32)
        arr.flush()
        del arr
        np.save(labels, rng.integers(0, 1000, a.n).astype(np.int64))
    layers = []
    for name in LAYERS:
        layers += ["--layers", f"/features/{name}/Conv"]
    load = os.getloadavg()
    print(f"load before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; torch {torch.__version__}, zennit {version('zennit')}, "
          f"zennit-crp {version('zennit-crp')}; N={a.n}, batch {a.batch}, {a.threads} threads", flush=True)
    rows = []
    for crops in ([0] if a.no_crops_run else [0, 8]):
        out = work / f"concepts-{crops}.h5"
        cmd = [str(prism), "--threads", str(a.threads), "concepts", "--model", str(onnx), "--dataset", str(data),
               "--labels", str(labels), *layers, "--top-n", "40", "--crops", str(crops), "--batch-size", str(a.batch),
               "--output", str(out), "--force"]
        wall, mem, _ = run_child(cmd, env)
        rows.append((f"prism concepts --crops {crops}", wall, mem))
        print(f"prism --crops {crops}: {wall:.1f} s, {mem:.0f} MiB", flush=True)
    wall, mem, out = run_child([sys.executable, __file__, "--n", str(a.n), "--batch", str(a.batch), "--threads",
                                str(a.threads), "--worker", str(data), str(labels)], env)
    rows.append(("zennit-crp FeatureVisualization.run", wall, mem))
    print(f"zennit-crp: {wall:.1f} s, {mem:.0f} MiB", flush=True)
    crp_wall, crp_mem = rows[-1][1], rows[-1][2]
    print(f"\nVGG16, layers {', '.join(LAYERS)}, N={a.n}, batch {a.batch}, {a.threads} threads")
    print(f"{'run':<40}{'seconds':>9}{'img/s':>8}{'MiB':>8}{'speedup':>9}{'memory':>8}")
    for name, w, m in rows:
        print(f"{name:<40}{w:>9.1f}{a.n / w:>8.2f}{m:>8.0f}{crp_wall / w:>8.2f}x{m / crp_mem:>8.2f}")
    load = os.getloadavg()
    print(f"load after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
