#!/usr/bin/env python3
"""Checks the Python package against Zennit 1.0 and Quantus 0.6 (outside CI: needs torch).

Purpose
    Issue 16's acceptance: ``prism_xai.from_torch`` + ``Model.explain`` in float64 match Zennit
    1.0 to 1e-6 (max |ΔR| / max |R|) on torchvision ResNet18 and VGG11-BN, and the Quantus
    adapter works with a Quantus metric.

    1. For each model (random He-normal weights, BatchNorm statistics and affine parameters made
       non-trivial, eval mode): ``from_torch`` exports it (dynamo first, legacy fallback; the
       exporter used is reported), Prism explains a batch in float64 with EpsilonGammaBox
       (low=-3, high=3) and EpsilonPlusFlat, and Zennit 1.0 explains the same batch with the
       module cast to float64 and the canonizers Zennit needs (``ResNetCanonizer``,
       ``VGGCanonizer``), with the same targets (Prism's predicted classes, one-hot output
       gradient). Reports max |ΔR| / max |R| and the logits' max |Δ| / max |y|.
    2. The Zennit-shaped adapter (``prism_xai.zennit.Gradient``) on the same model and input
       gives the same relevance as ``Model.explain``.
    3. Quantus: ``quantus.Sparseness`` on relevance from ``prism_xai.quantus_explain_func``
       (Quantus calls the adapter) and on Zennit's relevance given as ``a_batch``: the scores
       must agree; and ``quantus.FaithfulnessCorrelation`` runs with the adapter as
       ``explain_func`` (reported; a smoke test of the call shape).

How to run (from the repository root)
    /root/anchors/bin/pip install ./crates/prism-py        # or maturin develop there
    /root/anchors/bin/pip install "quantus>=0.6,<0.7"      # if missing
    /root/anchors/bin/python scripts/check_python_parity.py [--batch 2] [--size 224]
        [--models resnet18,vgg11_bn] [--cache-dir DIR] [--no-quantus]

    Exit status 1 if a parity figure exceeds 1e-6 or a Quantus score disagrees. Exports go to a
    temporary cache unless --cache-dir is given. About 3-6 minutes on two cores at 224².
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import warnings

import numpy as np
import torch
import torchvision

import prism_xai
from prism_xai.zennit import Gradient as PrismGradient

from zennit.attribution import Gradient
from zennit.composites import EpsilonGammaBox, EpsilonPlusFlat
from zennit.torchvision import ResNetCanonizer, VGGCanonizer

LIMIT = 1e-6
LOW, HIGH = -3.0, 3.0


def build(name: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = getattr(torchvision.models, name)(weights=None).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_((torch.rand(m.bias.shape, generator=g) - 0.5) * 0.4)
            elif isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.rand(c, generator=g) - 0.5)
                m.running_mean.copy_((torch.rand(c, generator=g) - 0.5) * 0.6)
                m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
    return model


def zennit_relevance(model: torch.nn.Module, name: str, composite: str, x: np.ndarray,
                     targets: np.ndarray):
    canonizers = [ResNetCanonizer()] if name.startswith("resnet") else [VGGCanonizer()]
    if composite == "epsilon-gamma-box":
        comp = EpsilonGammaBox(low=LOW, high=HIGH, canonizers=canonizers)
    else:
        comp = EpsilonPlusFlat(canonizers=canonizers)
    m64 = build_double(model)
    xt = torch.from_numpy(x).double()
    with Gradient(m64, comp) as attributor:
        out, rel = attributor(xt, torch.eye(1000, dtype=torch.float64)[torch.from_numpy(targets)])
    return out.detach().numpy(), rel.detach().numpy()


def build_double(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    m = copy.deepcopy(model).double().eval()
    for mod in m.modules():  # in-place ReLUs overwrite what Zennit's hooks store
        if hasattr(mod, "inplace"):
            mod.inplace = False
    return m


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--models", default="resnet18,vgg11_bn")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--no-quantus", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING,
                        format="%(name)s: %(message)s")
    warnings.filterwarnings("ignore")
    torch.set_num_threads(os.cpu_count() or 1)
    cache = a.cache_dir or tempfile.mkdtemp(prefix="prism-parity-")
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"prism_xai {prism_xai.__version__}, cache {cache}")

    failed = False
    rng = np.random.default_rng(0)
    rows = []
    for i, name in enumerate(a.models.split(",")):
        model = build(name, 10 + i)
        x = rng.standard_normal((a.batch, 3, a.size, a.size)).astype(np.float32)
        t0 = time.time()
        pm = prism_xai.from_torch(model, torch.from_numpy(x), cache_dir=cache)
        export_s = time.time() - t0
        logits = pm.predict(x, dtype="float64")
        with torch.no_grad():
            ref_logits = build_double(model)(torch.from_numpy(x).double()).numpy()
        out_err = rel_err(logits, ref_logits)
        targets = np.argmax(logits, axis=1).astype(np.int64)
        print(f"{name}: exported in {export_s:.1f} s -> {os.path.basename(pm.path)}; "
              f"logits max|Δ|/max|y| = {out_err:.2e} (float64)")
        failed |= out_err > LIMIT
        for composite in ("epsilon-gamma-box", "epsilon-plus-flat"):
            params = dict(low=LOW, high=HIGH) if composite == "epsilon-gamma-box" else {}
            t0 = time.time()
            rp = pm.explain(x, targets, composite=composite, dtype="float64", **params)
            prism_s = time.time() - t0
            t0 = time.time()
            _, rz = zennit_relevance(model, name, composite, x, targets)
            zennit_s = time.time() - t0
            err = rel_err(rp, rz)
            ok = err <= LIMIT
            failed |= not ok
            rows.append((name, composite, err, prism_s, zennit_s))
            print(f"  {composite:<18} max|ΔR|/max|R| = {err:.2e} {'ok' if ok else 'FAIL'} "
                  f"(prism {prism_s:.1f} s, zennit {zennit_s:.1f} s, f64, batch {a.batch})")
        # The Zennit-shaped adapter gives Model.explain's numbers.
        with PrismGradient(model, "epsilon-plus-flat", cache_dir=cache) as attributor:
            _, ra = attributor(torch.from_numpy(x).double(),
                               torch.eye(1000, dtype=torch.float64)[torch.from_numpy(targets)])
        rp = pm.explain(x, targets, composite="epsilon-plus-flat", dtype="float64")
        same = np.array_equal(ra.numpy(), rp)
        failed |= not same
        print(f"  prism_xai.zennit.Gradient == Model.explain: {same}")

        if not a.no_quantus and i == 0:
            failed |= check_quantus(model, name, x, targets, cache)

    print("PASS" if not failed else "FAIL")
    return 1 if failed else 0


def check_quantus(model, name, x, targets, cache) -> bool:
    try:
        import quantus
    except ImportError:
        print("quantus: not installed (pip install 'quantus>=0.6,<0.7'); skipped")
        return False
    failed = False
    kwargs = {"composite": "epsilon-plus-flat", "dtype": "float64", "cache_dir": cache}
    sparseness = quantus.Sparseness(disable_warnings=True, display_progressbar=False)
    s_prism = sparseness(model=model, x_batch=x, y_batch=targets, a_batch=None,
                         explain_func=prism_xai.quantus_explain_func,
                         explain_func_kwargs=kwargs, device="cpu")
    _, rz = zennit_relevance(model, name, "epsilon-plus-flat", x, targets)
    s_zennit = sparseness(model=model, x_batch=x, y_batch=targets,
                          a_batch=rz.sum(axis=1, keepdims=True), device="cpu")
    diff = float(np.max(np.abs(np.asarray(s_prism) - np.asarray(s_zennit))))
    ok = diff <= 1e-6
    failed |= not ok
    print(f"quantus {quantus.__version__} Sparseness ({name}, epsilon-plus-flat): prism "
          f"{np.round(s_prism, 6).tolist()} zennit {np.round(s_zennit, 6).tolist()} "
          f"max|Δ| {diff:.1e} {'ok' if ok else 'FAIL'}")
    faith = quantus.FaithfulnessCorrelation(
        nr_runs=10, subset_size=224, perturb_baseline="black", return_aggregate=False,
        disable_warnings=True, display_progressbar=False)
    t0 = time.time()
    scores = faith(model=model, x_batch=x, y_batch=targets, a_batch=None,
                   explain_func=prism_xai.quantus_explain_func,
                   explain_func_kwargs={"composite": "epsilon-plus-flat", "cache_dir": cache},
                   device="cpu")
    finite = bool(np.all(np.isfinite(scores)))
    failed |= not finite
    print(f"quantus FaithfulnessCorrelation ({name}, epsilon-plus-flat, nr_runs 10): "
          f"{np.round(scores, 4).tolist()} in {time.time() - t0:.1f} s "
          f"{'ok' if finite else 'FAIL (not finite)'}")
    return failed


if __name__ == "__main__":
    sys.exit(main())
