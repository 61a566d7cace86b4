#!/usr/bin/env python3
"""Builds the evaluation fixture in tests/fixtures/eval/ (issue 8).

A tiny CNN is *trained* (so that attribution quality is meaningful) on a synthetic task whose
evidence is certain: a 32x32 RGB image of Gaussian noise holds one 8x8 square whose colour is
the class (red, green, blue, yellow). Removing the square destroys the evidence, so a good
attribution puts its relevance on the square, and most-relevant-first region perturbation must
make the class score fall fast.

Writes:
  eval_cnn.onnx           Conv-ReLU-MaxPool x2, Conv-ReLU, GlobalAveragePool, Flatten, Gemm
                          (legacy TorchScript exporter, opset 17, constant folding on)
  eval_cnn.input.npy      8 held-out images, float32, 8x3x32x32
  eval_cnn.labels.npy     their classes, int64
  eval_cnn.relevance.npy  a fixed relevance map (seeded noise plus a bump on each square), used
                          only to compare region perturbation with scripts/eval_reference.py

Everything is seeded and single-threaded, so a re-run writes the same files. Run from the
repository root (about 20 s):
  /root/anchors/bin/python scripts/eval_make_fixture.py
then
  /root/anchors/bin/python scripts/eval_reference.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

COLOURS = np.array(
    [[1.0, -0.6, -0.6], [-0.6, 1.0, -0.6], [-0.6, -0.6, 1.0], [1.0, 1.0, -0.6]], dtype=np.float32
)


def make_data(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = rng.normal(0.0, 0.35, size=(n, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, len(COLOURS), size=n)
    pos = rng.integers(0, 32 - 8 + 1, size=(n, 2))
    for i in range(n):
        r, c = pos[i]
        x[i, :, r : r + 8, c : c + 8] += 1.5 * COLOURS[y[i]][:, None, None]
    return x, y.astype(np.int64), pos


class EvalCnn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(16, len(COLOURS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", default="tests/fixtures/eval")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(0)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    xtr, ytr, _ = make_data(4096, rng)
    model = EvalCnn()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(xtr), torch.from_numpy(ytr)
    for epoch in range(6):
        perm = torch.randperm(len(xt))
        for s in range(0, len(xt), 64):
            idx = perm[s : s + 64]
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()

    xte, yte, pos = make_data(512, np.random.default_rng(1))
    with torch.no_grad():
        acc = (model(torch.from_numpy(xte)).argmax(1).numpy() == yte).mean()
    print(f"held-out accuracy {acc:.3f}")

    x, y, p = xte[:8], yte[:8], pos[:8]
    rel_rng = np.random.default_rng(2)
    rel = rel_rng.normal(0.0, 1.0, size=x.shape)
    for i in range(len(x)):
        r, c = p[i]
        rel[i, :, r : r + 8, c : c + 8] += 2.0
    np.save(out / "eval_cnn.input.npy", x)
    np.save(out / "eval_cnn.labels.npy", y)
    np.save(out / "eval_cnn.relevance.npy", rel.astype(np.float32))
    torch.onnx.export(
        model,
        (torch.from_numpy(x),),
        out / "eval_cnn.onnx",
        dynamo=False,
        export_params=True,
        opset_version=17,
        do_constant_folding=True,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    (out / "eval_cnn.json").write_text(
        json.dumps(
            {
                "model": "eval_cnn.onnx",
                "task": "class = colour of one 8x8 square in 32x32 Gaussian noise",
                "held_out_accuracy": float(acc),
                "square_top_left": p.tolist(),
                "labels": y.tolist(),
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
