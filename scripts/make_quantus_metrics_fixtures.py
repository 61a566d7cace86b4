#!/usr/bin/env python3
"""Fixtures for Prism's versions of Quantus 0.6's faithfulness metrics (Prism issue 18).

Writes tests/fixtures/eval/quantus/ (a few kB):
  tiny_cnn.onnx           Conv(1→4, 3x3)-ReLU-Conv(4→4, 3x3)-ReLU-GlobalAvgPool-Gemm(4→3), seeded
                          random weights rounded to float32 (the ONNX file is float32; Quantus runs
                          the same weights in float64)
  input.npy               4 samples, float32, 4x1x24x24 (one channel: Quantus 0.6's ROAD and IROF
                          fail on several channels, see docs/evaluation.md)
  relevance.npy           float32 attributions, 4x1x24x24
  segments.npy            scikit-image SLIC segments as Quantus' IROF computes them, int64 4x24x24
  subsets.npy             the feature subsets numpy drew inside FaithfulnessCorrelation, int64
                          samples x runs x subset_size
  values.json             targets; Quantus' FaithfulnessCorrelation, ROAD (noise 0) and IROF
                          (batch size 1) per sample; noise-free linear imputations of
                          quantus.functions.perturb_func.noisy_linear_imputation

Run from the repository root (a few seconds):
  /root/anchors/bin/python scripts/make_quantus_metrics_fixtures.py
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import quantus
import torch
from quantus.functions.perturb_func import noisy_linear_imputation
from skimage.segmentation import slic
from torch import nn

warnings.filterwarnings("ignore")
# Quantus 0.6's IROF calls np.trapz, which numpy 2 removed.
if not hasattr(np, "trapz"):
    np.trapz = np.trapezoid  # type: ignore[attr-defined]


class TinyCnn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.c2(torch.relu(self.c1(x))))
        return self.fc(x.mean(dim=(2, 3)))


class Double(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.double())


def main() -> None:
    out = Path("tests/fixtures/eval/quantus")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(3)
    model = TinyCnn().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.float())
    rng = np.random.default_rng(5)
    n, h, w = 4, 24, 24
    x = rng.uniform(0.0, 1.0, size=(n, 1, h, w)).astype(np.float32)
    # a bright blob per sample, so that the classes differ
    for i in range(n):
        r, c = 2 + 4 * i, 3 + 3 * i
        x[i, 0, r : r + 6, c : c + 6] += 1.5
    a = (rng.normal(size=x.shape) + 2.0 * (x > 1.2)).astype(np.float32)
    torch.onnx.export(
        model,
        (torch.from_numpy(x),),
        out / "tiny_cnn.onnx",
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    # Quantus feeds float32 tensors; the wrapper computes in float64 from them (perturbed values
    # are rounded to float32 on the way, a relative 6e-8).
    model64 = Double(model.double()).eval()
    xd, ad = x.astype(np.float64), a.astype(np.float64)
    with torch.no_grad():
        y = model64(torch.from_numpy(xd)).argmax(1).numpy()

    # FaithfulnessCorrelation: record the subsets numpy draws.
    drawn: list[np.ndarray] = []
    choice = np.random.choice

    def recording_choice(*args, **kwargs):
        r = choice(*args, **kwargs)
        drawn.append(np.asarray(r))
        return r

    runs, subset = 20, 30
    np.random.seed(11)
    np.random.choice = recording_choice  # type: ignore[assignment]
    try:
        fc = quantus.FaithfulnessCorrelation(
            nr_runs=runs, subset_size=subset, return_aggregate=False, disable_warnings=True
        )(model=model64, x_batch=xd, y_batch=y, a_batch=ad, device="cpu")
    finally:
        np.random.choice = choice  # type: ignore[assignment]
    # drawn in run-major order: run 0 of every sample, run 1, ...
    subsets = np.stack(drawn).reshape(runs, n, subset).transpose(1, 0, 2)

    percentages = [10, 30, 50, 70, 90]
    road = quantus.ROAD(percentages=percentages, noise=0.0, disable_warnings=True)
    road(model=model64, x_batch=xd, y_batch=y, a_batch=ad, device="cpu")
    road_per_sample = road.evaluation_scores  # {percentage: mean}
    road_curve = [float(road_per_sample[p]) for p in percentages]

    segments = np.stack(
        [slic(np.moveaxis(xi, 0, -1).astype("double"), start_label=0) for xi in xd]
    ).astype(np.int64)
    irof = []
    for i in range(n):
        v = quantus.IROF(return_aggregate=False, disable_warnings=True)(
            model=model64,
            x_batch=xd[i : i + 1],
            y_batch=y[i : i + 1],
            a_batch=ad[i : i + 1],
            device="cpu",
            batch_size=1,
        )
        irof.append(float(v[0]))

    imputations = []
    for i, k in [(0, 40), (1, 300), (2, 575)]:
        order = np.argsort(-ad[i].reshape(-1), kind="stable")[:k]
        imputations.append(
            {
                "sample": i,
                "removed": order.tolist(),
                "imputed": noisy_linear_imputation(xd[i], order, noise=0.0).reshape(-1).tolist(),
            }
        )

    np.save(out / "input.npy", x)
    np.save(out / "relevance.npy", a)
    np.save(out / "segments.npy", segments)
    np.save(out / "subsets.npy", subsets.astype(np.int64))
    (out / "values.json").write_text(
        json.dumps(
            {
                "quantus": quantus.__version__,
                "targets": y.tolist(),
                "faithfulness_correlation": {
                    "nr_runs": runs,
                    "subset_size": subset,
                    "perturb_baseline": "black",
                    "per_sample": [float(v) for v in fc],
                },
                "road": {"percentages": percentages, "noise": 0.0, "curve": road_curve},
                "irof": {"per_sample": irof, "segments": [int(s.max()) + 1 for s in segments]},
                "imputations": imputations,
            },
            indent=1,
        )
        + "\n"
    )
    print("fc", fc, "road", road_curve, "irof", irof, "segments", [int(s.max()) + 1 for s in segments])


if __name__ == "__main__":
    main()
