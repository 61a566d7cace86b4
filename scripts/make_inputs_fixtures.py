#!/usr/bin/env python3
"""Reference fixtures for the richer attributor inputs and iNNvestigate's analyzers (issue 18).

How to run (from the repository root; needs torch, captum 0.9, scipy, onnx)
    /root/anchors/bin/python scripts/make_inputs_fixtures.py [--out tests/fixtures/inputs]

Everything is seeded; a re-run with the same library versions writes the same numbers.

What it writes (under --out), all arrays float64 .npy:
    cnn.onnx, cnn.input.npy    a tiny CNN (conv-relu-maxpool-conv-relu-flatten-dense-relu-dense,
                               4 classes, conv biases zero: see "iNNvestigate" below), N = 3
    logit.onnx, logit.input.npy  a single-logit MLP (output N x 1), N = 4
    captum_*.npy               Captum 0.9: InputXGradient; NoiseTunnel(Saliency(abs=False))
                               smoothgrad_sq and vargrad with the noise Captum drew saved as
                               noise.npy (n_samples x N x ...; iteration k of Prism is
                               noise[k]); IntegratedGradients (method="riemann_right") with a
                               per-sample and a shared array baseline, and with the blur
                               baseline (scipy.ndimage.gaussian_filter, mode "reflect")
    target_*.npy               torch autograd: the gradient of y_A - y_B (contrast), of
                               sum(S * y) for a seed array S (seeds.npy), of -y and sign(y) * y
                               of the single-logit model
    innvestigate_*.npy         iNNvestigate 2.1.2's rules (relevance_rule.py, deeptaylor.py,
                               relevance_analyzer.py at 10e4fc4), transcribed in torch float64:
                               each rule as iNNvestigate writes it (Z = layer(X), safe_divide,
                               gradient, times X), seeded with the output's value at the target
                               (iNNvestigate's analyze), compared with Prism's built-in
                               composites at --stabilizer 0 and --seed-mode logit
    manifest.json              what each file is and the parameters

iNNvestigate itself needs TensorFlow; its formulas are short enough to transcribe. Two of its
choices differ from Prism's (Zennit's) rules and are kept out of the comparison on purpose: its
AlphaBetaRule with bias gives the positive and the negative pass the whole bias (Prism: b+ and
b-), so the conv biases are zero here; its DeepTaylor gives a layer with a kernel and no fused
activation (the output layer) the w^2 rule, while Prism's deep-taylor gives every linear layer
z+: the reference follows Prism there (deep-taylor is documented as such).
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import scipy.ndimage
import torch
import torch.nn as nn
from captum.attr import (
    InputXGradient,
    IntegratedGradients,
    NoiseTunnel,
    Saliency,
)

torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)


class Cnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 3, padding=1)
        self.conv2 = nn.Conv2d(3, 4, 3, padding=1)
        self.fc1 = nn.Linear(4 * 4 * 4, 8)
        self.fc2 = nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = nn.functional.max_pool2d(x, 2)
        x = torch.relu(self.conv2(x))
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        return self.fc2(x)


class Logit(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 6)
        self.fc2 = nn.Linear(6, 1)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def float32_weights(model):
    """Round every parameter to float32 (the ONNX file's precision), kept in float64."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.float().double())


def export(model, x, path):
    m32 = type(model)()
    m32.load_state_dict({k: v.float() for k, v in model.state_dict().items()})
    m32.float().eval()
    torch.onnx.export(
        m32,
        (x.float(),),
        path,
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        opset_version=13,
        dynamo=False,
    )


def save(out, name, t):
    a = t.detach().numpy() if torch.is_tensor(t) else np.asarray(t)
    np.save(os.path.join(out, name), a.astype(np.float64))
    return name


def grad_of(model, x, seed_fn):
    x = x.clone().requires_grad_(True)
    y = model(x)
    (g,) = torch.autograd.grad(y, x, seed_fn(y))
    return g


# ---- iNNvestigate's rules (relevance_rule.py), transcribed --------------------------------

EPS = 1e-7  # keras.backend.epsilon(), iNNvestigate's safe_divide factor


def safe_divide(a, b):
    return a / (b + EPS * (b == 0).to(b.dtype))


def layer_fn(layer, weight=None, bias=True):
    w = layer.weight if weight is None else weight
    b = layer.bias if bias else None
    if isinstance(layer, nn.Conv2d):
        return lambda x: nn.functional.conv2d(x, w, b, padding=layer.padding)
    return lambda x: nn.functional.linear(x, w, b)


def grads(fn, x, tmp):
    x = x.detach().requires_grad_(True)
    z = fn(x)
    (g,) = torch.autograd.grad(z, x, tmp)
    return g


def rule_z(layer, x, r, epsilon=None):
    fn = layer_fn(layer)
    z = fn(x).detach()
    if epsilon is None:
        tmp = safe_divide(r, z)
    else:
        tmp = r / (z + ((z >= 0).to(z.dtype) * 2 - 1) * epsilon)
    return x * grads(fn, x, tmp)


def rule_alpha_beta(layer, x, r, alpha, beta, bias):
    wp = layer.weight * (layer.weight > 0)
    wn = layer.weight * (layer.weight < 0)
    xp, xn = x * (x > 0), x * (x < 0)

    def part(w1, w2):
        # iNNvestigate: each pass keeps the layer's bias split by sign, b+ + b- = b in the sum
        b1 = layer.bias * (layer.bias > 0) if bias else None
        b2 = layer.bias * (layer.bias < 0) if bias else None
        f1 = layer_fn(layer, w1, False) if b1 is None else (lambda v: layer_fn(layer, w1, False)(v) + shape_bias(layer, b1))
        f2 = layer_fn(layer, w2, False) if b2 is None else (lambda v: layer_fn(layer, w2, False)(v) + shape_bias(layer, b2))
        z = (f1(xp) + f2(xn)).detach()
        tmp = safe_divide(r, z)
        return xp * grads(f1, xp, tmp) + xn * grads(f2, xn, tmp)

    act = part(wp, wn)
    if beta:
        inh = part(wn, wp)
        return alpha * act - beta * inh
    return act


def shape_bias(layer, b):
    return b.view(1, -1, 1, 1) if isinstance(layer, nn.Conv2d) else b


def rule_flat(layer, x, r):
    ones_w = torch.ones_like(layer.weight)
    fn = layer_fn(layer, ones_w, False)
    z = fn(torch.ones_like(x)).detach()
    tmp = safe_divide(r, z)
    return grads(fn, x, tmp)


def rule_bounded(layer, x, r, low, high):
    wp = layer.weight * (layer.weight > 0)
    wn = layer.weight * (layer.weight < 0)
    lo = torch.full_like(x, low)
    hi = torch.full_like(x, high)
    fa = layer_fn(layer, None, False)
    fb = layer_fn(layer, wp, False)
    fc = layer_fn(layer, wn, False)
    z = (fa(x) - (fb(lo) + fc(hi))).detach()
    tmp = safe_divide(r, z)
    return x * grads(fa, x, tmp) - (lo * grads(fb, lo, tmp) + hi * grads(fc, hi, tmp))


def innvestigate(model, x, targets, rules):
    """Backward pass through Cnn with `rules[layer_name](layer, x, r)`; ReLU passes relevance,
    max pooling and flatten take the gradient; seeded with y at the target (iNNvestigate)."""
    a0 = x
    z1 = model.conv1(a0)
    a1 = torch.relu(z1)
    p1 = nn.functional.max_pool2d(a1, 2)
    z2 = model.conv2(p1)
    a2 = torch.relu(z2)
    f = torch.flatten(a2, 1)
    z3 = model.fc1(f)
    a3 = torch.relu(z3)
    y = model.fc2(a3)
    r = torch.zeros_like(y)
    r[torch.arange(len(targets)), targets] = y[torch.arange(len(targets)), targets]
    r = r.detach()
    r = rules["fc2"](model.fc2, a3.detach(), r)
    r = rules["fc1"](model.fc1, f.detach(), r)
    r = r.view_as(a2)
    r = rules["conv2"](model.conv2, p1.detach(), r)
    p = a1.detach().requires_grad_(True)
    (r,) = torch.autograd.grad(nn.functional.max_pool2d(p, 2), p, r)
    r = rules["conv1"](model.conv1, a0.detach(), r)
    return r.detach()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/inputs")
    args = ap.parse_args()
    out = args.out
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    manifest = {"captum": {}, "targets": {}, "innvestigate": {}}

    cnn = Cnn()
    with torch.no_grad():
        cnn.conv1.bias.zero_()
        cnn.conv2.bias.zero_()
    float32_weights(cnn)
    cnn.eval()
    x = torch.randn(3, 1, 8, 8)
    export(cnn, x, os.path.join(out, "cnn.onnx"))
    save(out, "cnn.input.npy", x)
    targets = [1, 3, 0]
    t = torch.tensor(targets)
    manifest["targets_cnn"] = targets

    # Captum: InputXGradient
    save(out, "captum_ixg.npy", InputXGradient(cnn).attribute(x, target=t))
    manifest["captum"]["input-x-gradient"] = {"file": "captum_ixg.npy"}

    # Captum NoiseTunnel over Saliency(abs=False), recording the noise it draws
    drawn = []
    original = NoiseTunnel._add_noise_to_input

    def recording(inp, stdev, n):
        noisy = original(inp, stdev, n)
        drawn.append((noisy - inp.repeat_interleave(n, dim=0)).detach().clone())
        return noisy

    NoiseTunnel._add_noise_to_input = staticmethod(recording)
    nt_samples, stdev = 4, 0.3
    for kind, name in [("smoothgrad_sq", "smoothgrad-squared"), ("vargrad", "vargrad")]:
        drawn.clear()
        torch.manual_seed(1)
        a = NoiseTunnel(Saliency(cnn)).attribute(
            x, nt_type=kind, nt_samples=nt_samples, stdevs=stdev, target=t, abs=False
        )
        (noise,) = drawn
        # Captum's rows: sample i's copies are rows i*S .. i*S+S-1; Prism's: iteration-major
        noise = noise.view(x.shape[0], nt_samples, *x.shape[1:]).transpose(0, 1)
        save(out, f"captum_{kind}.npy", a)
        save(out, f"captum_{kind}_noise.npy", noise)
        manifest["captum"][name] = {
            "file": f"captum_{kind}.npy",
            "noise": f"captum_{kind}_noise.npy",
            "n_iter": nt_samples,
            "noise_level": stdev,
        }
    NoiseTunnel._add_noise_to_input = staticmethod(original)

    # Captum IntegratedGradients with array baselines (right Riemann sum = Prism's)
    n_steps = 8
    ig = IntegratedGradients(cnn)
    per_sample = torch.randn(3, 1, 8, 8) * 0.5
    shared = torch.randn(1, 1, 8, 8) * 0.5
    blur_sigma = 1.5
    blurred = torch.from_numpy(
        scipy.ndimage.gaussian_filter(
            x.numpy(), sigma=(0, 0, blur_sigma, blur_sigma), mode="reflect", truncate=4.0
        )
    )
    save(out, "baseline_per_sample.npy", per_sample)
    save(out, "baseline_shared.npy", shared)
    save(out, "blur.npy", blurred)
    for name, base in [
        ("per-sample", per_sample),
        ("shared", shared.expand_as(x)),
        ("blur", blurred),
    ]:
        a = ig.attribute(x, baselines=base, target=t, n_steps=n_steps, method="riemann_right")
        save(out, f"captum_ig_{name}.npy", a)
        manifest["captum"][f"ig-{name}"] = {"file": f"captum_ig_{name}.npy", "n_iter": n_steps}
    manifest["captum"]["ig-blur"]["sigma"] = blur_sigma

    # targets: contrast, seed array
    save(
        out,
        "target_contrast.npy",
        grad_of(cnn, x, lambda y: torch.eye(4)[[2] * 3] - torch.eye(4)[[0] * 3]),
    )
    manifest["targets"]["contrast"] = {"file": "target_contrast.npy", "class": 2, "against": 0}
    seeds = torch.randn(3, 4)
    save(out, "seeds.npy", seeds)
    save(out, "target_seeds.npy", grad_of(cnn, x, lambda y: seeds))
    manifest["targets"]["seeds"] = {"file": "target_seeds.npy", "seeds": "seeds.npy"}

    logit = Logit()
    float32_weights(logit)
    logit.eval()
    xl = torch.randn(4, 16)
    export(logit, xl, os.path.join(out, "logit.onnx"))
    save(out, "logit.input.npy", xl)
    save(out, "target_negative.npy", grad_of(logit, xl, lambda y: -torch.ones_like(y)))
    save(out, "target_sign.npy", grad_of(logit, xl, lambda y: torch.sign(y) * y.detach()))
    manifest["targets"]["negative"] = {"file": "target_negative.npy"}
    manifest["targets"]["sign-logit"] = {"file": "target_sign.npy"}

    # iNNvestigate's analyzers
    low, high = -3.0, 3.0
    eps_a = 0.1

    def eps(e):
        return lambda layer, x, r: rule_z(layer, x, r, epsilon=e)

    z = lambda layer, x, r: rule_z(layer, x, r)
    a1b0 = lambda layer, x, r: rule_alpha_beta(layer, x, r, 1.0, 0.0, True)
    a2b1 = lambda layer, x, r: rule_alpha_beta(layer, x, r, 2.0, 1.0, True)
    zplus_nb = lambda layer, x, r: rule_alpha_beta(layer, x, r, 1.0, 0.0, False)
    flat = rule_flat
    bounded = lambda layer, x, r: rule_bounded(layer, x, r, low, high)
    presets = {
        "lrp-z": {"conv1": z, "conv2": z, "fc1": z, "fc2": z},
        "lrp-sequential-preset-a": {"conv1": a1b0, "conv2": a1b0, "fc1": eps(eps_a), "fc2": eps(eps_a)},
        "lrp-sequential-preset-b": {"conv1": a2b1, "conv2": a2b1, "fc1": eps(eps_a), "fc2": eps(eps_a)},
        "lrp-sequential-preset-a-flat": {"conv1": flat, "conv2": a1b0, "fc1": eps(eps_a), "fc2": eps(eps_a)},
        "lrp-sequential-preset-b-flat": {"conv1": flat, "conv2": a2b1, "fc1": eps(eps_a), "fc2": eps(eps_a)},
        "deep-taylor": {"conv1": zplus_nb, "conv2": zplus_nb, "fc1": zplus_nb, "fc2": zplus_nb},
        "deep-taylor-bounded": {"conv1": bounded, "conv2": zplus_nb, "fc1": zplus_nb, "fc2": zplus_nb},
    }
    for name, rules in presets.items():
        r = innvestigate(cnn, x, targets, rules)
        save(out, f"innvestigate_{name}.npy", r)
        manifest["innvestigate"][name] = {"file": f"innvestigate_{name}.npy"}
    manifest["innvestigate_params"] = {"epsilon": eps_a, "low": low, "high": high, "stabilizer": 0.0}

    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    print("wrote", out)


if __name__ == "__main__":
    main()
