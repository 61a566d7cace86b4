#!/usr/bin/env python3
"""The method table picture of docs/methods.md (docs/img/methods.png): every method of `prism
explain` on the same image, drawn by `prism heatmap`.

The image is the demo's first planted seven (assets/demo/mnist.h5, sample 21: a seven with the
corner mark the demo model learned as a shortcut), explained for its class by the demo model
(assets/demo/mnist-cnn.onnx). Each panel is `prism explain … --attributor/--composite NAME` then
`prism heatmap` (coldnhot with zero at the centre for signed maps, hot for maps that are never
negative; the class activation maps at /4/Relu, the ReLU after the last convolution), composed with matplotlib.

How to run (from the repository root; needs a built `prism`, numpy, h5py, matplotlib)
    /root/anchors/bin/python scripts/make_method_table.py [--prism target/release/prism]
        [--out docs/img/methods.png]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

SAMPLE = 21
BOX = ["--low", "0", "--high", "1"]
# the class activation maps at the ReLU after the last convolution (the default layer, the
# convolution's own output, is negative where the ReLU cuts: Grad-CAM is zero there)
LAYER = ["--layer", "/4/Relu"]
# maps that are never negative get a one-sided colour map; the others zero at the centre
UNSIGNED = {"SmoothGrad²", "VarGrad", "Grad-CAM", "Grad-CAM++", "XGrad-CAM", "LayerCAM",
            "Eigen-CAM", "Score-CAM", "Ablation-CAM"}
METHODS = [
    ("LRP ε-plus-flat", ["--composite", "epsilon-plus-flat"]),
    ("LRP ε-γ-box", ["--composite", "epsilon-gamma-box", *BOX]),
    ("LRP ε-α2β1", ["--composite", "epsilon-alpha2-beta1"]),
    ("LRP ε-plus", ["--composite", "epsilon-plus"]),
    ("LRP-z", ["--composite", "lrp-z"]),
    ("LRP preset A", ["--composite", "lrp-sequential-preset-a"]),
    ("LRP preset B", ["--composite", "lrp-sequential-preset-b"]),
    ("DeepTaylor", ["--composite", "deep-taylor"]),
    ("DeepTaylor bounded", ["--composite", "deep-taylor-bounded", *BOX]),
    ("excitation backprop", ["--composite", "excitation-backprop"]),
    ("guided backprop", ["--composite", "guided-backprop"]),
    ("deconvnet", ["--composite", "deconvnet"]),
    ("gradient", ["--attributor", "gradient"]),
    ("input × gradient", ["--attributor", "input-x-gradient"]),
    ("SmoothGrad", ["--attributor", "smoothgrad"]),
    ("SmoothGrad²", ["--attributor", "smoothgrad-squared"]),
    ("VarGrad", ["--attributor", "vargrad"]),
    ("integrated gradients", ["--attributor", "integrated-gradients"]),
    ("occlusion", ["--attributor", "occlusion", "--window", "6", "--stride", "2"]),
    ("random", ["--attributor", "random"]),
    ("Grad-CAM", ["--attributor", "grad-cam", *LAYER]),
    ("Grad-CAM++", ["--attributor", "grad-cam-plus-plus", *LAYER]),
    ("XGrad-CAM", ["--attributor", "xgrad-cam", *LAYER]),
    ("LayerCAM", ["--attributor", "layer-cam", *LAYER]),
    ("Eigen-CAM", ["--attributor", "eigen-cam", *LAYER]),
    ("Score-CAM", ["--attributor", "score-cam", *LAYER]),
    ("Ablation-CAM", ["--attributor", "ablation-cam", *LAYER]),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prism", default="target/release/prism")
    ap.add_argument("--out", default="docs/img/methods.png")
    args = ap.parse_args()
    with h5py.File("assets/demo/mnist.h5") as f:
        x = f["data"][SAMPLE:SAMPLE + 1].astype(np.float32)
        label = int(f["label"][SAMPLE])
    panels = [("input (class %d, marked)" % label, None)]
    with tempfile.TemporaryDirectory() as tmp:
        xin = os.path.join(tmp, "x.npy")
        np.save(xin, x)
        for i, (title, flags) in enumerate(METHODS):
            r = os.path.join(tmp, f"r{i}.npy")
            png = os.path.join(tmp, f"h{i}.png")
            subprocess.run([args.prism, "explain", "assets/demo/mnist-cnn.onnx", xin, "-o", r,
                            "--target", str(label), *flags], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            cmap = ["--cmap", "hot"] if title in UNSIGNED else ["--symmetric", "--cmap",
                                                                 "coldnhot"]
            subprocess.run([args.prism, "heatmap", r, "-o", png, *cmap], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            panels.append((title, mpimg.imread(png)))
        cols = 7
        rows = -(-len(panels) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.6, rows * 1.8))
        for ax in axes.flat:
            ax.axis("off")
        for ax, (title, img) in zip(axes.flat, panels):
            if img is None:
                ax.imshow(x[0, 0], cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(img)
            ax.set_title(title, fontsize=7)
        fig.suptitle("prism explain on one demo digit (mnist-cnn.onnx), every method", fontsize=9)
        fig.tight_layout()
        fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out} ({len(panels) - 1} methods)")


if __name__ == "__main__":
    main()
