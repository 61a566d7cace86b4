#!/usr/bin/env python3
"""`prism explain --attributor score-cam` (and grad-cam) vs pytorch-grad-cam, side by side.

torchvision ResNet50 (random weights, torch.manual_seed(0), eval), N seeded noise images of
224x224, target = class 0 for every image, layer = the last bottleneck's output
(`model.layer4[-1]`, ONNX `/layer4/layer4.2/relu_2/Relu`: pytorch-grad-cam's recommended ResNet
layer; 2048 channels of 7x7, so Score-CAM runs 2048 masked forward passes per image), the same
thread count. pytorch-grad-cam's ScoreCAM uses batch_size 16 (its default); Prism runs its
masked inputs in batches of 16 too. Each side runs in its own process: wall time and peak memory
(max RSS, from wait4; the parent imports no torch, whose footprint a child would inherit);
the maps are compared (largest difference, maps in [0, 1]). Times are whole processes: for
Grad-CAM they are mostly start-up (PyTorch's import and model construction, Prism's model load).

    /root/anchors/bin/python bench/cam/bench.py [--n 8] [--threads 2] [--methods score-cam,grad-cam]

Needs torch, torchvision, grad-cam 1.5, onnx, numpy. The model is exported here (legacy exporter,
BatchNorm folded) from the same seeded torchvision model the reference side builds; files go to
target/bench-cam/.
"""
import argparse
import io
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
LAYER = "/layer4/layer4.2/relu_2/Relu"
CLASSES = {"score-cam": "ScoreCAM", "grad-cam": "GradCAM", "ablation-cam": "AblationCAM"}


def model():
    import torch
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet50(weights=None).eval()


def run_child(cmd, env):
    """Runs a command; returns (wall seconds, peak RSS in MiB)."""
    start = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{cmd} failed with {code}")
    return wall, usage.ru_maxrss / 1024


def worker(method, data, out, threads):
    import numpy as np
    import pytorch_grad_cam
    import torch
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.set_num_threads(threads)
    m = model()
    x = torch.from_numpy(np.load(data))
    cam = getattr(pytorch_grad_cam, CLASSES[method])(model=m, target_layers=[m.layer4[-1]])
    if method == "score-cam":
        cam.batch_size = 16
    maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(0)] * len(x))
    np.save(out, maps)


def export(data, out):
    import numpy as np
    import torch

    buf = io.BytesIO()
    torch.onnx.export(model(), (torch.from_numpy(np.load(data)[:1]),), buf, dynamo=False,
                      opset_version=17, do_constant_folding=True, input_names=["input"],
                      output_names=["output"],
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    Path(out).write_bytes(buf.getvalue())


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=8, help="images")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--methods", default="score-cam,grad-cam")
    ap.add_argument("--worker", nargs=3, metavar=("METHOD", "DATA", "OUT"),
                    help=argparse.SUPPRESS)
    ap.add_argument("--export", nargs=2, metavar=("DATA", "OUT"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(*a.worker, a.threads)
        return
    if a.export:
        export(*a.export)
        return
    from importlib.metadata import version

    # no torch in this process: a child's peak RSS (wait4) starts from its parent's at the fork
    import numpy as np
    import onnx

    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads),
               MKL_NUM_THREADS=str(a.threads))
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "prism-cli"], cwd=ROOT, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    prism = target / "release" / "prism"
    work = ROOT / "target/bench-cam"
    work.mkdir(parents=True, exist_ok=True)
    onnx_path = work / "resnet50.onnx"
    data = work / f"data-{a.n}.npy"
    np.save(data, np.random.default_rng(0).standard_normal((a.n, 3, 224, 224), dtype=np.float32))
    if not onnx_path.exists():
        subprocess.run([sys.executable, __file__, "--export", str(data), str(onnx_path)],
                       check=True)
    names = {n.name for n in onnx.load(str(onnx_path), load_external_data=False).graph.node}
    assert LAYER in names, f"{LAYER} not in the export"
    load = os.getloadavg()
    print(f"load before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; torch {version('torch')}, "
          f"grad-cam {version('grad-cam')}; ResNet50, N={a.n}, {a.threads} threads", flush=True)
    rows = []
    for method in a.methods.split(","):
        mine = work / f"prism-{method}.npy"
        theirs = work / f"ref-{method}.npy"
        pw, pm = run_child([str(prism), "--threads", str(a.threads), "explain", str(onnx_path),
                            str(data), "-o", str(mine), "--attributor", method, "--layer", LAYER,
                            "--target", "0", "--batch-size", str(a.n)], env)
        print(f"prism {method}: {pw:.1f} s, {pm:.0f} MiB", flush=True)
        rw, rm = run_child([sys.executable, __file__, "--threads", str(a.threads), "--worker",
                            method, str(data), str(theirs)], env)
        print(f"pytorch-grad-cam {method}: {rw:.1f} s, {rm:.0f} MiB", flush=True)
        diff = float(np.max(np.abs(np.load(mine)[:, 0] - np.load(theirs))))
        rows.append((method, pw, pm, rw, rm, diff))
    print(f"\nResNet50 at {LAYER}, N={a.n}, {a.threads} threads")
    print(f"{'method':<14}{'prism s':>9}{'MiB':>7}{'grad-cam s':>12}{'MiB':>7}{'speedup':>9}"
          f"{'memory':>8}{'max |Δ|':>10}")
    for method, pw, pm, rw, rm, diff in rows:
        print(f"{method:<14}{pw:>9.1f}{pm:>7.0f}{rw:>12.1f}{rm:>7.0f}{rw / pw:>8.2f}x"
              f"{pm / rm:>8.2f}{diff:>10.2e}")
    load = os.getloadavg()
    print(f"load after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
