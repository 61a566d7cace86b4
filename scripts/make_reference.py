#!/usr/bin/env python3
"""Zennit reference attributions for Prism's attribution tests (tests/fixtures/reference/).

Purpose
    Rust tests of crates/prism-attribution load a fixture ONNX model, run an attribution and compare
    the relevance with what Zennit (0.5.1, the version in /root/anchors) computes on the same
    network. This script rebuilds the torch models behind the fixtures (importing the builders of
    scripts/make_fixtures.py), makes them equal to the ONNX graphs (exporter-folded BatchNorm),
    applies the canonizers a Zennit user would apply, and writes Zennit's relevance for every
    composite and attributor, in float64 and float32.

How to run (from the repository root; needs torch, torchvision, zennit 0.5.1, onnx, numpy)
    /root/anchors/bin/python scripts/make_reference.py [--out tests/fixtures/reference]

    Deterministic: torch runs on one thread, there is no torch RNG use, SmoothGrad noise comes
    from numpy with fixed seeds. About 30 s on two cores. The output folder belongs to this
    script: .npy files in it that this run did not write are deleted.

What it writes (under --out, default tests/fixtures/reference/)
    <model>__<method>__<dtype>.npy
        relevance w.r.t. the input, same shape and dtype as tests/fixtures/<model>.input.npy
        (dtype float64: model and input cast with .double(); float32: as stored).
    <model>__smoothgrad-noise.npy
        float32 standard-normal draws z, shape (n_iter - 1, *input_shape); iteration i < n_iter-1
        evaluates the gradient at x + z[i] * std (z cast to the input dtype, std per sample,
        see manifest); the last iteration is noise-free (Zennit's SmoothGrad). The values are
        exactly representable in both dtypes, so one file serves float32 and float64.
    manifest.json
        {"zennit_version", "conventions", "models": {<model>: {...}}, "cases": [{...}]}: every
        case with model, method (kebab case), attributor, composite, canonizers, all parameters,
        seed mode, targets per sample, dtype, file, relevance sum per sample; per model the ONNX
        nodes with the rule each composite gives them (null = plain gradient).
    NOTES.md
        Zennit version, canonizers per model, Zennit quirks met and how they are handled (with
        measured sizes), functional ops that Zennit leaves to plain autograd.

Methods per model: the nine registered Zennit composites with their defaults (Gradient attributor,
epsilon-gamma-box with low=-3, high=3), epsilon-plus_zero-bias, epsilon-plus_logit, gradient,
integrated-gradients (n_iter 20, zero baseline), occlusion_logit (window/stride 4, 2 for the MLP),
smoothgrad (n_iter 5, noise 0.1), smoothgrad_epsilon-plus, integrated-gradients_epsilon-plus, and
for models with functional ops the "_literal" variants (see NOTES.md).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.metadata
import json
import os
import re
import sys
import warnings

import numpy as np
import onnx
import torch
import torch.nn as nn
from onnx import numpy_helper
from torchvision.models.resnet import BasicBlock, Bottleneck

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import make_fixtures as mf  # noqa: E402  (sets torch to one thread, silences exporter warnings)

from zennit.attribution import Gradient, IntegratedGradients, Occlusion, SmoothGrad  # noqa: E402
from zennit.canonizers import (  # noqa: E402
    AttributeCanonizer,
    NamedMergeBatchNorm,
    SequentialMergeBatchNorm,
)
from zennit.composites import (  # noqa: E402
    BetaSmooth,
    DeconvNet,
    EpsilonAlpha2Beta1,
    EpsilonAlpha2Beta1Flat,
    EpsilonGammaBox,
    EpsilonPlus,
    EpsilonPlusFlat,
    ExcitationBackprop,
    GuidedBackprop,
)
from zennit.layer import Sum  # noqa: E402
from zennit.torchvision import ResNetCanonizer  # noqa: E402

torch.set_num_threads(1)
warnings.filterwarnings("ignore", category=UserWarning)

FIXTURES = os.path.join(ROOT, "tests", "fixtures")
DTYPES = {"float64": torch.float64, "float32": torch.float32}

# name -> (seed, constructor): the same pairs as make_fixtures.main() (the stored-output check
# below fails loudly if they ever drift apart).
MODELS = {
    "mlp": (1, mf.mlp),
    "tiny_vgg": (3, lambda: mf.TinyVGG(bn=False)),
    "tiny_vgg_bn": (2, lambda: mf.TinyVGG(bn=True)),
    "tiny_resnet": (4, mf.TinyResNet),
    "tiny_mobilenetv2": (5, mf.TinyMobileNetV2),
    "tiny_densenet": (6, mf.TinyDenseNet),
    "conv1d": (10, mf.Conv1dNet),
}

IG_N_ITER = 20
SG_N_ITER = 5
SG_NOISE_LEVEL = 0.1
LOW, HIGH = -3.0, 3.0


def occlusion_window(model_name):
    return 2 if model_name == "mlp" else 4  # MLP input is 1 x 8 x 8: a 4 x 4 grid of windows


# --------------------------------------------------------------------------------------------
# Building the models and making them equal to the ONNX graphs
# --------------------------------------------------------------------------------------------


def build(name):
    seed, ctor = MODELS[name]
    torch.manual_seed(seed)
    model = mf.prepare_torch_model(ctor(), seed)
    # In-place activations overwrite the input that Zennit's forward hooks store (ReLUBetaSmooth
    # then computes sigmoid(beta * relu(x)) instead of sigmoid(beta * x)); the forward is the same
    # either way, so turn in-place off to get the rule's defined value.
    for m in model.modules():
        if hasattr(m, "inplace"):
            m.inplace = False
    x = np.load(os.path.join(FIXTURES, f"{name}.input.npy"))
    y = np.load(os.path.join(FIXTURES, f"{name}.output.npy"))
    assert np.array_equal(x, mf.make_input(x.shape, seed + 2000)), f"{name}: input drifted"
    with torch.no_grad():
        out = model(torch.from_numpy(x)).numpy()
    diff = float(np.max(np.abs(out - y)))
    assert diff <= 1e-5, f"{name}: rebuilt torch model differs from the stored output by {diff}"
    return model, x, y, diff


def onnx_module_name(node_name):
    """'/layers/layers.1/downsample/downsample.0/Conv' -> 'layers.1.downsample.0' (the legacy
    exporter's scope path; a Sequential child 'seq.k' follows its parent's scope 'seq')."""
    parts = node_name.strip("/").split("/")[:-1]
    out, prev = [], None
    for part in parts:
        out.append(part[len(prev) + 1:] if prev is not None and part.startswith(prev + ".")
                   else part)
        prev = part
    return ".".join(out)


def sync_with_onnx(name, model):
    """Make the torch model compute exactly the ONNX graph.

    The exporter folded BatchNorm into the preceding convs (constant folding, in float32) for
    tiny_resnet, tiny_mobilenetv2 and conv1d. For those, the BN modules are replaced by
    nn.Identity and the conv weights/biases by the ONNX initializers, so that float64 references
    use the float32 weights the Rust engine reads (an f64 re-merge differs in the last f32 bit of
    every folded weight, ~1e-7 relative). All other Conv/Gemm weights must equal the ONNX
    initializers bit for bit. Returns the list of modules taken from ONNX."""
    graph = onnx.load(os.path.join(FIXTURES, f"{name}.onnx")).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    onnx_has_bn = any(n.op_type == "BatchNormalization" for n in graph.node)
    modules = dict(model.named_modules())
    seen, folded = set(), []
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm"):
            continue
        mname = onnx_module_name(node.name)
        mod = modules[mname]
        assert isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Linear)), (name, node.name, mod)
        if node.op_type == "Gemm":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            assert attrs.get("transB", 0) == 1 and attrs.get("transA", 0) == 0
            assert attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0
        w = inits[node.input[1]]
        b = inits[node.input[2]] if len(node.input) > 2 and node.input[2] else None
        assert tuple(w.shape) == tuple(mod.weight.shape), (name, node.name)
        same_w = np.array_equal(w, mod.weight.detach().numpy())
        same_b = (b is None and mod.bias is None) or (
            b is not None and mod.bias is not None and np.array_equal(b, mod.bias.detach().numpy()))
        seen.add(mname)
        if same_w and same_b:
            continue
        assert not onnx_has_bn, f"{name}: {node.name} differs from torch but BN was not folded"
        with torch.no_grad():
            mod.weight = nn.Parameter(torch.from_numpy(w.copy()))
            mod.bias = nn.Parameter(torch.from_numpy(b.copy()))
        folded.append(mname)
    linears = {n for n, m in modules.items() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))}
    assert linears == seen, f"{name}: unmatched modules {linears - seen}"
    bns = [n for n, m in modules.items() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if folded:
        assert len(folded) == len(bns), f"{name}: {len(folded)} folded convs, {len(bns)} BNs"
        for bn in bns:
            parent, _, child = bn.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, nn.Identity())
    return folded


# --------------------------------------------------------------------------------------------
# Canonizers
# --------------------------------------------------------------------------------------------


class _ZeroEpsMixin:
    """zennit 0.5.1's MergeBatchNorm makes the BN an identity by setting weight=1, bias=0,
    mean=0, var=1, but leaves eps, so the 'identity' still divides by sqrt(1 + eps). Zennit 1.0
    also sets eps=0; do the same (and restore it on removal)."""

    def register(self, linears, batch_norm):
        super().register(linears, batch_norm)
        self.batch_norm_eps = batch_norm.eps
        batch_norm.eps = 0.0

    def remove(self):
        super().remove()
        self.batch_norm.eps = self.batch_norm_eps


class ExactSequentialMergeBatchNorm(_ZeroEpsMixin, SequentialMergeBatchNorm):
    pass


class ExactNamedMergeBatchNorm(_ZeroEpsMixin, NamedMergeBatchNorm):
    pass


class ForwardCanonizer(AttributeCanonizer):
    """AttributeCanonizer (like zennit.torchvision's ResNet canonizers): for instances of the
    classes in `table`, replace `forward` by a version in which residual additions go through a
    zennit.layer.Sum module and functional activations/pools are fresh modules, so that the
    composites can attach rules to them. table: {cls: (predicate, forward, {attr: factory})}."""

    def __init__(self, table, label):
        self.table = table
        self.label = label
        super().__init__(self._map)

    def _map(self, name, module):
        for cls, (pred, fwd, extra) in self.table.items():
            if type(module) is cls and pred(module):
                return {"forward": fwd.__get__(module), **{k: f() for k, f in extra.items()}}
        return None

    def copy(self):
        return ForwardCanonizer(self.table, self.label)


def _always(_):
    return True


def _basic_block_forward(self, x):
    """torchvision BasicBlock as in zennit.torchvision.ResNetBasicBlockCanonizer, but with one
    ReLU module per call site (torchvision reuses self.relu; see NOTES.md, beta-smooth)."""
    identity = x
    out = self.canonizer_relu_1(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    if self.downsample is not None:
        identity = self.downsample(x)
    out = self.canonizer_sum(torch.stack([identity, out], dim=-1))
    return self.canonizer_relu_2(out)


def _bottleneck_forward(self, x):
    """torchvision Bottleneck as in zennit.torchvision.ResNetBottleneckCanonizer, one ReLU
    module per call site."""
    identity = x
    out = self.canonizer_relu_1(self.bn1(self.conv1(x)))
    out = self.canonizer_relu_2(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    if self.downsample is not None:
        identity = self.downsample(x)
    out = self.canonizer_sum(torch.stack([identity, out], dim=-1))
    return self.canonizer_relu_3(out)


def _inverted_residual_forward(self, x):
    return self.canonizer_sum(torch.stack([x, self.body(x)], dim=-1))


def _v3_block_forward(self, x):
    y = self.project(self.se(self.dw(self.expand(x))))
    return self.canonizer_sum(torch.stack([x, y], dim=-1))


def _squeeze_excite_forward(self, x):
    s = self.fc2(self.canonizer_relu(self.fc1(self.pool(x))))
    return x * self.canonizer_hardsigmoid(s)


def _mobilenet_forward(self, x):
    x = self.v3(self.ir2(self.ir1(self.stem(x))))
    x = self.head(x)
    x = x * self.canonizer_sigmoid(x)  # SiLU: Sigmoid module (Pass in LRP), Mul stays gradient
    x = torch.flatten(self.pool(x), 1)
    return self.fc(self.drop(x))


def _dense_layer_forward(self, feats):
    x = torch.cat(feats, 1)
    x = self.conv1(self.canonizer_relu_1(self.norm1(x)))
    return self.conv2(self.canonizer_relu_2(self.norm2(x)))


def _densenet_forward(self, x):
    x = self.block2(self.trans(self.block1(self.stem(x))))
    x = self.canonizer_relu(self.norm(x))
    x = torch.flatten(self.canonizer_pool(x), 1)
    return self.fc(x)


def _conv1d_forward(self, x):
    x = self.canonizer_maxpool(self.canonizer_relu_1(self.bn(self.c1(x))))
    x = self.canonizer_relu_2(self.c2(x))
    x = self.canonizer_avgpool(x)
    return self.fc(torch.flatten(x, 1))


RESNET_TABLE = {
    BasicBlock: (_always, _basic_block_forward,
                 {"canonizer_sum": Sum, "canonizer_relu_1": nn.ReLU, "canonizer_relu_2": nn.ReLU}),
    Bottleneck: (_always, _bottleneck_forward,
                 {"canonizer_sum": Sum, "canonizer_relu_1": nn.ReLU, "canonizer_relu_2": nn.ReLU,
                  "canonizer_relu_3": nn.ReLU}),
}
MOBILENET_TABLE = {
    mf.InvertedResidual: (lambda m: m.use_res, _inverted_residual_forward, {"canonizer_sum": Sum}),
    mf.V3Block: (_always, _v3_block_forward, {"canonizer_sum": Sum}),
    mf.SqueezeExcite: (_always, _squeeze_excite_forward,
                       {"canonizer_relu": nn.ReLU, "canonizer_hardsigmoid": nn.Hardsigmoid}),
    mf.TinyMobileNetV2: (_always, _mobilenet_forward, {"canonizer_sigmoid": nn.Sigmoid}),
}
DENSENET_TABLE = {
    mf.DenseLayer: (_always, _dense_layer_forward,
                    {"canonizer_relu_1": nn.ReLU, "canonizer_relu_2": nn.ReLU}),
    mf.TinyDenseNet: (_always, _densenet_forward,
                      {"canonizer_relu": nn.ReLU, "canonizer_pool": lambda: nn.AdaptiveAvgPool2d(1)}),
}
CONV1D_TABLE = {
    mf.Conv1dNet: (_always, _conv1d_forward,
                   {"canonizer_relu_1": nn.ReLU, "canonizer_maxpool": lambda: nn.MaxPool1d(2),
                    "canonizer_relu_2": nn.ReLU, "canonizer_avgpool": lambda: nn.AvgPool1d(2)}),
}

# DenseLayer.conv1 -> norm2 are the only BN-after-conv pairs in tiny_densenet whose conv output
# feeds nothing else; every other BN follows a Concat (norm1, trans.0, norm), and a
# SequentialMergeBatchNorm would wrongly merge e.g. stem -> block1.layers.0.norm1 (the stem
# output also feeds the block's concatenation unnormalised).
DENSENET_MERGES = [([f"{b}.layers.{i}.conv1"], f"{b}.layers.{i}.norm2")
                   for b in ("block1", "block2") for i in (0, 1)]

CANONIZER_DOCS = {
    "merge-batchnorm-sequential": "ExactSequentialMergeBatchNorm: zennit SequentialMergeBatchNorm "
    "(BN right after Conv/Linear in module order merged into it: W' = W*g/sqrt(v+eps), "
    "b' = (b-m)*g/sqrt(v+eps)+beta) plus eps=0 on the emptied BN (0.5.1 leaves eps)",
    "merge-batchnorm-named": "ExactNamedMergeBatchNorm(block{1,2}.layers.{0,1}.conv1 -> .norm2): "
    "same merge for the listed pairs only, eps=0",
    "resnet-sum": "ForwardCanonizer on torchvision BasicBlock/Bottleneck = "
    "zennit.torchvision.ResNetBasicBlock/BottleneckCanonizer (residual out+identity -> "
    "Sum(stack([identity, out], -1)) -> Norm rule) with one ReLU module per call site",
    "mobilenet-sum-modules": "ForwardCanonizer: residual adds of InvertedResidual(use_res) and "
    "V3Block -> Sum (Norm); SE F.relu/F.hardsigmoid -> nn.ReLU/nn.Hardsigmoid; "
    "SiLU x*torch.sigmoid(x) -> x*nn.Sigmoid()(x) (Mul stays plain gradient)",
    "densenet-modules": "ForwardCanonizer: DenseLayer F.relu x2 -> nn.ReLU; final F.relu -> "
    "nn.ReLU, F.adaptive_avg_pool2d -> nn.AdaptiveAvgPool2d(1) (Norm)",
    "conv1d-modules": "ForwardCanonizer: F.relu x2 -> nn.ReLU, F.max_pool1d -> nn.MaxPool1d(2), "
    "F.avg_pool1d -> nn.AvgPool1d(2) (Norm)",
}


def canonizers_for(name, literal=False):
    """[(label, canonizer)] for a model. literal=True: only what a user gets without rewriting
    functional ops (BN merge where the ONNX keeps BN, nothing else)."""
    if name == "tiny_vgg_bn":
        return [("merge-batchnorm-sequential", ExactSequentialMergeBatchNorm())]
    if name == "tiny_densenet":
        merge = [("merge-batchnorm-named", ExactNamedMergeBatchNorm(DENSENET_MERGES))]
        return merge if literal else merge + [
            ("densenet-modules", ForwardCanonizer(DENSENET_TABLE, "densenet-modules"))]
    if literal:
        return []
    table = {"tiny_resnet": ("resnet-sum", RESNET_TABLE),
             "tiny_mobilenetv2": ("mobilenet-sum-modules", MOBILENET_TABLE),
             "conv1d": ("conv1d-modules", CONV1D_TABLE)}.get(name)
    return [(table[0], ForwardCanonizer(table[1], table[0]))] if table else []


LITERAL_MODELS = ("tiny_mobilenetv2", "tiny_densenet", "conv1d")


@contextlib.contextmanager
def applied(model, canonizers):
    instances = []
    try:
        for c in canonizers:
            instances += c.apply(model)
        yield model
    finally:
        for inst in reversed(instances):
            inst.remove()


# --------------------------------------------------------------------------------------------
# Composites and cases
# --------------------------------------------------------------------------------------------

EPS = 1e-6
STAB = 1e-6

COMPOSITES = {
    # kebab name: (class, explicit kwargs with every default spelled out)
    "epsilon-gamma-box": (EpsilonGammaBox, dict(low=LOW, high=HIGH, epsilon=EPS, gamma=0.25,
                                                stabilizer=STAB, zero_params=None)),
    "epsilon-plus": (EpsilonPlus, dict(epsilon=EPS, stabilizer=STAB, zero_params=None)),
    "epsilon-plus-flat": (EpsilonPlusFlat, dict(epsilon=EPS, stabilizer=STAB, zero_params=None)),
    "epsilon-alpha2-beta1": (EpsilonAlpha2Beta1, dict(epsilon=EPS, stabilizer=STAB,
                                                      zero_params=None)),
    "epsilon-alpha2-beta1-flat": (EpsilonAlpha2Beta1Flat, dict(epsilon=EPS, stabilizer=STAB,
                                                               zero_params=None)),
    "excitation-backprop": (ExcitationBackprop, dict(stabilizer=STAB, zero_params=None)),
    "deconvnet": (DeconvNet, dict()),
    "guided-backprop": (GuidedBackprop, dict()),
    "beta-smooth": (BetaSmooth, dict(beta_smooth=10.0)),
}
# Rule parameters that the composites fix internally (recorded in the manifest).
FIXED_RULE_PARAMS = {
    "epsilon-alpha2-beta1": dict(alpha=2.0, beta=1.0),
    "epsilon-alpha2-beta1-flat": dict(alpha=2.0, beta=1.0),
}


def make_composite(cname, canonizers, **override):
    cls, kwargs = COMPOSITES[cname]
    kwargs = {**kwargs, **override}
    return cls(canonizers=[c for _, c in canonizers], **kwargs), kwargs


def composite_params(cname, kwargs):
    return {**kwargs, **FIXED_RULE_PARAMS.get(cname, {})}


def cases_for(name):
    """(method, attributor, composite or None, seed mode, extra) for one model."""
    out = [(c, "gradient", c, "one-hot", {}) for c in COMPOSITES]
    out += [
        ("epsilon-plus_zero-bias", "gradient", "epsilon-plus", "one-hot",
         {"override": {"zero_params": "bias"}}),
        ("epsilon-plus_logit", "gradient", "epsilon-plus", "logit", {}),
        ("gradient", "gradient", None, "one-hot", {}),
        ("integrated-gradients", "integrated-gradients", None, "one-hot", {}),
        ("integrated-gradients_epsilon-plus", "integrated-gradients", "epsilon-plus", "one-hot", {}),
        ("smoothgrad", "smoothgrad", None, "one-hot", {}),
        ("smoothgrad_epsilon-plus", "smoothgrad", "epsilon-plus", "one-hot", {}),
        ("occlusion_logit", "occlusion", None, "logit", {}),
    ]
    if name in LITERAL_MODELS:
        out += [("epsilon-plus_literal", "gradient", "epsilon-plus", "one-hot", {"literal": True}),
                ("guided-backprop_literal", "gradient", "guided-backprop", "one-hot",
                 {"literal": True})]
    return out


@contextlib.contextmanager
def default_dtype(dtype):
    """zennit 0.5.1 IntegratedGradients builds its alphas with torch.linspace(1/n, 1, n), i.e. in
    the default dtype; with float64 inputs they would be float32-rounded. Run float64 cases with
    float64 as the default dtype (alphas exact to f64)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


@contextlib.contextmanager
def injected_randn(zs):
    """Make torch.randn_like (used by zennit's SmoothGrad) return the given draws in order."""
    it = iter(zs)
    original = torch.randn_like

    def fake(inp, *args, **kwargs):
        z = next(it)
        assert tuple(z.shape) == tuple(inp.shape)
        return z.to(dtype=inp.dtype, device=inp.device)

    torch.randn_like = fake
    try:
        yield
    finally:
        torch.randn_like = original
    assert next(it, None) is None, "not all noise draws were used"


def seed_fn(seed_mode, one_hot):
    if seed_mode == "one-hot":
        return one_hot
    return lambda out: out * one_hot


def smoothgrad_std(x):
    dims = tuple(range(1, x.ndim))
    return SG_NOISE_LEVEL * (x.amax(dims, keepdim=True) - x.amin(dims, keepdim=True))


def run_case(model, x, case, one_hot, noise_z, composite):
    """Returns the relevance (torch tensor) of one case."""
    method, attributor, cname, seed_mode, extra = case
    attr_out = seed_fn(seed_mode, one_hot)
    inp = x.detach().clone()
    if attributor == "gradient":
        _, rel = Gradient(model, composite, attr_output=attr_out)(inp)
    elif attributor == "integrated-gradients":
        with default_dtype(x.dtype):
            _, rel = IntegratedGradients(model, composite, attr_output=attr_out,
                                         n_iter=IG_N_ITER)(inp)
    elif attributor == "smoothgrad":
        zs = [torch.from_numpy(z) for z in noise_z]
        with injected_randn(zs):
            _, rel = SmoothGrad(model, composite, attr_output=attr_out, noise_level=SG_NOISE_LEVEL,
                                n_iter=SG_N_ITER)(inp)
    elif attributor == "occlusion":
        w = occlusion_window(extra.get("model"))
        _, rel = Occlusion(model, None, attr_output=attr_out, window=w, stride=w)(inp)
    else:
        raise ValueError(attributor)
    return rel.detach()


def manual_smoothgrad(model, x, one_hot, noise_z, composite):
    """Independent re-computation: mean over iterations of the (modified) gradient at x + eps_i,
    eps_i = z_i * std for i < n_iter - 1, eps = 0 for the last iteration."""
    std = smoothgrad_std(x)
    acc = torch.zeros_like(x)
    grad = Gradient(model, composite, attr_output=one_hot)
    ctx = composite.context(model) if composite is not None else contextlib.nullcontext()
    with ctx:
        for i in range(SG_N_ITER):
            eps = torch.from_numpy(noise_z[i]).to(x.dtype) * std if i < SG_N_ITER - 1 \
                else torch.zeros_like(x)
            _, g = grad((x + eps).detach())
            acc += g / SG_N_ITER
    return acc


def manual_integrated_gradients(model, x, one_hot, composite):
    """alpha_k = k/n exactly (k = 1..n), right Riemann sum, zero baseline."""
    acc = torch.zeros_like(x)
    grad = Gradient(model, composite, attr_output=one_hot)
    ctx = composite.context(model) if composite is not None else contextlib.nullcontext()
    with ctx:
        for k in range(1, IG_N_ITER + 1):
            _, g = grad((x * (k / IG_N_ITER)).detach())
            acc += g / IG_N_ITER
    return acc * x


def rel_err(a, b):
    a = a.detach().double()
    b = b.detach().double()
    return float((a - b).abs().max() / max(float(b.abs().max()), 1e-300))


# --------------------------------------------------------------------------------------------
# Rule tables: which ONNX node gets which rule
# --------------------------------------------------------------------------------------------

MODULE_OP = [  # torch module type -> ONNX op the legacy exporter writes for it
    ((nn.Conv1d, nn.Conv2d), "Conv"), (nn.Linear, "Gemm"), (nn.ReLU, "Relu"),
    (nn.ReLU6, "Clip"), (nn.Hardswish, "HardSwish"), (nn.Hardsigmoid, "HardSigmoid"),
    (nn.Sigmoid, "Sigmoid"), (nn.Tanh, "Tanh"), ((nn.MaxPool1d, nn.MaxPool2d), "MaxPool"),
    ((nn.AvgPool1d, nn.AvgPool2d), "AveragePool"), (nn.AdaptiveAvgPool2d, "GlobalAveragePool"),
    (Sum, "Add"), (nn.modules.batchnorm._BatchNorm, "BatchNormalization"), (nn.Softmax, "Softmax"),
    (nn.Flatten, "Flatten"),
]


def module_op(module):
    return next((op for types, op in MODULE_OP if isinstance(module, types)), None)


def rule_label(hook):
    return None if hook is None else type(hook).__name__


def rule_table(name, model, x, canonizers, composite):
    """Align the module calls of the canonized model with the ONNX nodes (the k-th call of a
    module exporting to op T is the k-th ONNX node of type T; asserted by counts) and return
    [[node name, op, rule or None]] for every ONNX node (None: no hook, plain gradient)."""
    graph = onnx.load(os.path.join(FIXTURES, f"{name}.onnx")).graph
    with applied(model, canonizers):
        ctx, hooks = {}, {}
        for mname, module in model.named_modules():  # exactly Composite.register's traversal
            hooks[id(module)] = composite.module_map(ctx, mname, module)
        calls = {}
        handles = []
        for module in model.modules():
            op = module_op(module)
            if op is not None and not list(module.children()):
                def rec(m, _i, _o, op=op):
                    merged = isinstance(m, nn.modules.batchnorm._BatchNorm) and m.eps == 0.0
                    calls.setdefault(op, []).append((rule_label(hooks[id(m)]), merged))
                handles.append(module.register_forward_hook(rec))
        with torch.no_grad():
            model(x)
        for h in handles:
            h.remove()
    nodes = [n for n in graph.node]
    by_op = {}
    for n in nodes:
        by_op.setdefault(n.op_type, []).append(n)
    table, merged = [], []
    counters = {}
    for n in nodes:
        rule = None
        if n.op_type in calls:
            k = counters.get(n.op_type, 0)
            counters[n.op_type] = k + 1
            rule, is_merged = calls[n.op_type][k]
            if is_merged:
                merged.append(n.name)
        table.append([n.name, n.op_type, rule])
    for op, lst in calls.items():
        if op == "BatchNormalization" and op not in by_op:
            continue
        if op == "Flatten":  # torch.flatten also exports to Flatten; nn.Flatten has no rule
            continue
        assert len(lst) == len(by_op.get(op, [])), (name, op, len(lst), len(by_op.get(op, [])))
    return table, merged


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def fmt_float(v):
    return float(f"{v:.17g}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(FIXTURES, "reference"))
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated subset")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    names = [m for m in args.models.split(",") if m]

    written = set()
    cases_json = []
    models_json = {}
    quirks = {}
    checks = {}

    for name in names:
        model32, x_np, y_np, build_diff = build(name)
        unsynced = copy.deepcopy(model32)
        folded = sync_with_onnx(name, model32)
        with torch.no_grad():
            synced_out = model32(torch.from_numpy(x_np)).numpy()
        sync_diff = float(np.max(np.abs(synced_out - y_np)))
        assert sync_diff <= 1e-5, f"{name}: ONNX-synced model differs from ORT by {sync_diff}"
        model64 = copy.deepcopy(model32).double()
        targets = [int(t) for t in np.argmax(y_np, axis=1)]
        n_out = y_np.shape[1]

        noise_rng = np.random.default_rng(7000 + MODELS[name][0])
        noise_z = noise_rng.standard_normal((SG_N_ITER - 1,) + x_np.shape).astype(np.float32)
        noise_file = f"{name}__smoothgrad-noise.npy"
        np.save(os.path.join(args.out, noise_file), noise_z)
        written.add(noise_file)

        mchecks = {"rebuilt_vs_stored_output_max_abs": build_diff,
                   "onnx_synced_vs_stored_output_max_abs": sync_diff,
                   "weights_from_onnx": folded}
        models_json[name] = {
            "onnx": f"../{name}.onnx", "input": f"../{name}.input.npy",
            "input_shape": list(x_np.shape), "targets": targets,
            "bn_folded_by_exporter": bool(folded),
            "canonizers": [lbl for lbl, _ in canonizers_for(name)],
            "canonizers_literal": ([lbl for lbl, _ in canonizers_for(name, literal=True)]
                                   if name in LITERAL_MODELS else None),
            "smoothgrad_noise": noise_file,
        }

        results = {}
        for dname, dtype in DTYPES.items():
            model = model64 if dtype == torch.float64 else model32
            x = torch.from_numpy(x_np).to(dtype)
            with torch.no_grad():
                out = model(x)
            assert [int(t) for t in out.argmax(1)] == targets, f"{name}/{dname}: argmax differs"
            one_hot = torch.eye(n_out, dtype=dtype)[targets]

            # canonizers keep the forward output
            for literal in (False, True):
                if literal and name not in LITERAL_MODELS:
                    continue
                with torch.no_grad(), applied(model, [c for _, c in canonizers_for(name, literal)]):
                    out_c = model(x)
                d = float((out_c - out).abs().max())
                tol = 1e-6 if dtype == torch.float64 else 1e-4
                assert d <= tol, f"{name}/{dname}: canonizers change the output by {d}"
                mchecks[f"canonized{'_literal' if literal else ''}_forward_max_abs_{dname}"] = d
            std = smoothgrad_std(x)
            models_json[name].setdefault("smoothgrad_std", {})[dname] = [
                fmt_float(v) for v in std.flatten().tolist()]

            for case in cases_for(name):
                method, attributor, cname, seed_mode, extra = case
                literal = extra.get("literal", False)
                canons = canonizers_for(name, literal) if cname else []
                composite, ckw = (make_composite(cname, canons, **extra.get("override", {}))
                                  if cname else (None, None))
                case = (method, attributor, cname, seed_mode, {**extra, "model": name})
                rel = run_case(model, x, case, one_hot, noise_z, composite)
                assert rel.dtype == dtype and tuple(rel.shape) == x_np.shape
                assert torch.isfinite(rel).all(), f"{name}/{method}/{dname}: non-finite"

                # independent re-computations
                if attributor == "smoothgrad":
                    comp2 = make_composite(cname, canonizers_for(name))[0] if cname else None
                    e = rel_err(rel, manual_smoothgrad(model, x, one_hot, noise_z, comp2))
                    assert e < (1e-12 if dtype == torch.float64 else 1e-5), (name, method, e)
                    mchecks[f"{method}_vs_manual_{dname}"] = e
                if attributor == "integrated-gradients":
                    comp2 = make_composite(cname, canonizers_for(name))[0] if cname else None
                    e = rel_err(rel, manual_integrated_gradients(model, x, one_hot, comp2))
                    assert e < (1e-10 if dtype == torch.float64 else 1e-4), (name, method, e)
                    mchecks[f"{method}_vs_manual_{dname}"] = e

                fname = f"{name}__{method}__{dname}.npy"
                arr = rel.numpy()
                np.save(os.path.join(args.out, fname), arr)
                written.add(fname)

                params = {}
                if cname:
                    params.update(composite_params(cname, ckw))
                if attributor == "integrated-gradients":
                    params.update(n_iter=IG_N_ITER, baseline="zeros")
                if attributor == "smoothgrad":
                    params.update(n_iter=SG_N_ITER, noise_level=SG_NOISE_LEVEL,
                                  noise_file=noise_file, noise_std=models_json[name][
                                      "smoothgrad_std"][dname])
                if attributor == "occlusion":
                    w = occlusion_window(name)
                    occ = Occlusion(model, window=w, stride=w)
                    win, stride = occ._resolve_window_stride(x)
                    params.update(window_arg=w, stride_arg=w, window=list(win),
                                  stride=list(stride), occlusion_fn="keep-window-zero-rest")
                sums = [fmt_float(v) for v in arr.reshape(arr.shape[0], -1)
                        .astype(np.float64).sum(1)]
                results[(method, dname)] = arr
                vs64 = {}
                if dname == "float32":  # DTYPES runs float64 first
                    a64 = results[(method, "float64")]
                    vs64 = {"max_abs_diff_vs_float64_over_max_abs": fmt_float(
                        np.abs(arr.astype(np.float64) - a64).max()
                        / max(float(np.abs(a64).max()), 1e-300))}
                cases_json.append({
                    "model": name, "method": method, "attributor": attributor,
                    "composite": cname,
                    "canonizers": [lbl for lbl, _ in canons],
                    "params": params, "seed_mode": seed_mode, "targets": targets,
                    "dtype": dname, "file": fname, "shape": list(arr.shape),
                    "relevance_sum": sums, **vs64,
                })
                print(f"{name:<17} {dname:<8} {method:<36} sum {sums}", flush=True)

        # rule tables (per composite, canonical canonizers), float64 model
        x64 = torch.from_numpy(x_np).double()
        models_json[name]["rules"] = {}
        table = None
        for cname in COMPOSITES:
            canons = canonizers_for(name)
            composite, _ = make_composite(cname, canons)
            t, merged = rule_table(name, model64, x64, [c for _, c in canons], composite)
            if table is None:
                table = t
                models_json[name]["onnx_nodes"] = [[n, op] for n, op, _ in t]
                models_json[name]["merged_batchnorm_nodes"] = merged
            models_json[name]["rules"][cname] = [r for _, _, r in t]

        # quirk measurements
        q = {}
        if name in LITERAL_MODELS:
            q["literal_vs_canonical_rel_err_f64"] = {
                m: rel_err(torch.from_numpy(results[(f"{m}_literal", "float64")]),
                           torch.from_numpy(results[(m, "float64")]))
                for m in ("epsilon-plus", "guided-backprop")}
        x64 = torch.from_numpy(x_np).double()
        oh64 = torch.eye(n_out, dtype=torch.float64)[targets]
        if name == "tiny_vgg_bn":
            m = model64
            with torch.no_grad():
                ref = m(x64)
                with applied(m, [SequentialMergeBatchNorm()]):
                    stock = m(x64)
            q["stock_merge_forward_max_abs"] = float((stock - ref).abs().max())
            r_exact = run_case(m, x64, ("", "gradient", "", "one-hot", {}), oh64, None,
                               EpsilonPlus(canonizers=[ExactSequentialMergeBatchNorm()]))
            r_stock = run_case(m, x64, ("", "gradient", "", "one-hot", {}), oh64, None,
                               EpsilonPlus(canonizers=[SequentialMergeBatchNorm()]))
            q["stock_merge_epsilon_plus_rel_err"] = rel_err(r_stock, r_exact)
        if name == "tiny_resnet":
            # our resnet canonizer == zennit.torchvision.ResNetCanonizer except for beta-smooth
            diffs = {}
            for cname in COMPOSITES:
                ours = run_case(model64, x64, ("", "gradient", cname, "one-hot", {}), oh64, None,
                                make_composite(cname, canonizers_for(name))[0])
                cls, kw = COMPOSITES[cname]
                try:
                    theirs = run_case(model64, x64, ("", "gradient", cname, "one-hot", {}), oh64,
                                      None, cls(canonizers=[ResNetCanonizer()], **kw))
                    diffs[cname] = rel_err(theirs, ours)
                except RuntimeError as err:
                    diffs[cname] = f"RuntimeError: {str(err).splitlines()[0]}"
            q["zennit_resnet_canonizer_vs_ours_rel_err"] = diffs
            for cname, e in diffs.items():
                if cname != "beta-smooth":
                    assert isinstance(e, float) and e < 1e-12, (cname, e)
        if folded:
            # ONNX (folded f32) weights vs an f64 re-merge of the torch BN: size of the effect
            m_unsynced = unsynced.double()
            canon = [ExactSequentialMergeBatchNorm()] + [c for _, c in canonizers_for(name)]
            r_unsynced = run_case(m_unsynced, x64, ("", "gradient", "", "one-hot", {}), oh64, None,
                                  EpsilonPlus(canonizers=canon))
            r_synced = run_case(model64, x64, ("", "gradient", "", "one-hot", {}), oh64, None,
                                make_composite("epsilon-plus", canonizers_for(name))[0])
            q["f64_remerged_vs_onnx_weights_epsilon_plus_rel_err"] = rel_err(r_unsynced, r_synced)
        # IG alphas in float32 (zennit 0.5.1 with default dtype float32) vs exact, float64 input
        ig_f32_alpha = IntegratedGradients(model64, None, attr_output=oh64, n_iter=IG_N_ITER)(
            x64.clone())[1]
        ig_exact = manual_integrated_gradients(model64, x64, oh64, None)
        q["ig_float32_alphas_rel_err_f64"] = rel_err(ig_f32_alpha, ig_exact)
        quirks[name] = q
        checks[name] = mchecks

    # stale files
    for f in os.listdir(args.out):
        if f.endswith(".npy") and f not in written:
            os.remove(os.path.join(args.out, f))

    manifest = {
        "zennit_version": importlib.metadata.version("zennit"),
        "torch_version": torch.__version__,
        "generator": "scripts/make_reference.py",
        "conventions": {
            "file": "<model>__<method>__<dtype>.npy, relevance w.r.t. the input, same shape and "
                    "dtype as the input",
            "targets": "argmax of the stored output (<model>.output.npy) per sample; the same in "
                       "torch float32 and float64",
            "seed_mode": {"one-hot": "attr_output = one_hot(target) (Zennit's constant seed)",
                          "logit": "attr_output = output * one_hot(target) (for tiny_vgg* the "
                                   "output is the Softmax probability)"},
            "relevance_sum": "per sample, summed in float64",
            "integrated-gradients": "alphas = torch.linspace(1/n_iter, 1, n_iter) in the input "
                                    "dtype (right Riemann sum, = k/n up to an ulp); result = "
                                    "(sum_k grad(baseline + alpha_k (x - baseline)) / n_iter) * "
                                    "(x - baseline); baseline zeros",
            "smoothgrad": "iteration i < n_iter-1 evaluates at x + z[i].astype(dtype) * std, z from "
                          "noise_file (shape (n_iter-1, *input_shape)), std = noise_level * (amax - "
                          "amin) over the non-batch dims, per sample, computed in dtype (listed as "
                          "noise_std); the last iteration evaluates at x; result = sum_i grad_i / "
                          "n_iter (accumulated in that order)",
            "occlusion": "Zennit Occlusion, occlusion_fn keep-window-zero-rest = "
                         "occlude_independent(fill_fn=zeros_like, invert=False): the window is "
                         "kept, everything else zeroed. window/stride are the resolved tuples "
                         "(int window_arg clipped per non-batch dim, batch dim full); offsets "
                         "product(range(0, size, stride)), mask rolled (wraps); score = "
                         "seed(model(occluded)).sum(non-batch dims); result += mask * score. "
                         "Stored only with seed logit (a constant one-hot seed scores 1 for "
                         "every window: relevance all ones)",
            "onnx_nodes/rules": "models[m].rules[composite][i] is the Zennit rule class attached "
                                "to the module that exports to models[m].onnx_nodes[i] (canonical "
                                "canonizers applied); null = no hook = plain autograd gradient",
            "literal": "methods ending in _literal use only the BN merge: functional ops "
                       "(F.relu, F.avg_pool, x + y, ...) keep plain autograd; not expressible "
                       "per ONNX op type (see NOTES.md)",
            "canonizers": CANONIZER_DOCS,
        },
        "models": models_json,
        "checks": checks,
        "quirks": quirks,
        "cases": cases_json,
    }
    cases = manifest.pop("cases")
    text = json.dumps(manifest, indent=1)
    text = re.sub(r"\[\s*([^\[\]{}]*?)\s*\]",  # lists of scalars on one line
                  lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]", text)
    text = text[:-2] + ',\n "cases": [\n' + ",\n".join("  " + json.dumps(c) for c in cases) \
        + "\n ]\n}"
    assert json.loads(text)["cases"] == cases
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        f.write(text + "\n")
    write_notes(args.out, quirks, checks, models_json)
    total = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    print(f"\n{len(cases_json)} cases, {len(written)} .npy files, {total} bytes -> "
          f"{os.path.relpath(args.out)}")


def write_notes(out, quirks, checks, models):
    q = quirks
    lines = []
    add = lines.append

    def g(model, key, fmt="{:.1e}"):
        v = q.get(model, {}).get(key)
        return "n/a" if v is None else fmt.format(v)

    add("# Zennit reference attributions: notes")
    add("")
    add("Generated by `scripts/make_reference.py` (do not edit by hand; numbers below are measured "
        "by that run). Zennit **0.5.1** (PyPI), torch " + torch.__version__ + ", one thread.")
    add("")
    add("## Models and canonizers")
    add("")
    add("Every model is rebuilt with `make_fixtures.py`'s builders and checked against the stored "
        "`<model>.output.npy` (1e-5). Where the exporter folded BatchNorm into the convs "
        "(`tiny_resnet`, `tiny_mobilenetv2`, `conv1d`), the torch BN modules are replaced by "
        "`nn.Identity` and the conv weights/biases by the ONNX initializers, so that the float64 "
        "references use exactly the float32 weights in the `.onnx` (re-merging in float64 "
        "instead changes epsilon-plus relevance by a relative "
        f"{g('tiny_resnet', 'f64_remerged_vs_onnx_weights_epsilon_plus_rel_err')} (tiny_resnet), "
        f"{g('tiny_mobilenetv2', 'f64_remerged_vs_onnx_weights_epsilon_plus_rel_err')} "
        f"(tiny_mobilenetv2), {g('conv1d', 'f64_remerged_vs_onnx_weights_epsilon_plus_rel_err')} "
        "(conv1d)). All other weights equal the ONNX initializers bit for bit (asserted).")
    add("")
    fwd = [v for c in checks.values() for k, v in c.items()
           if k.startswith("canonized") and k.endswith("float64")]
    add("Canonizers (applied for every composite, i.e. also deconvnet/guided-backprop/beta-smooth; "
        "asserted to keep the output within 1e-6 in float64, measured max |Δ| = "
        + (f"{max(fwd):.1e}" if fwd else "n/a") + "):")
    add("")
    add("| model | canonizers | effect |")
    add("|---|---|---|")
    add("| mlp | none | Flatten, Linear-ReLU-Linear-Tanh-Linear: all modules |")
    add("| tiny_vgg | none | all layers are modules |")
    add("| tiny_vgg_bn | merge-batchnorm-sequential | the 3 Conv-BN pairs merged (BN → exact "
        "identity, eps=0) |")
    add("| tiny_resnet | resnet-sum | BN already folded (ONNX); residual `out + identity` → "
        "`Sum(stack([identity, out], -1))` with Norm; one ReLU module per call (torchvision "
        "shares `self.relu`) |")
    add("| tiny_mobilenetv2 | mobilenet-sum-modules | BN already folded; residual adds of ir1 and "
        "v3 → Sum (Norm); SE `F.relu`/`F.hardsigmoid` and SiLU's `torch.sigmoid` → modules "
        "(Pass); the two Muls stay plain gradient |")
    add("| tiny_densenet | merge-batchnorm-named, densenet-modules | only DenseLayer conv1→norm2 "
        "(4 pairs) merged; norm1 ×4, trans.0 and the final norm follow a Concat and stay as BN "
        "(Pass in LRP composites); `F.relu` → nn.ReLU, `F.adaptive_avg_pool2d` → "
        "nn.AdaptiveAvgPool2d (Norm) |")
    add("| conv1d | conv1d-modules | BN already folded; `F.relu` ×2 → nn.ReLU, `F.max_pool1d` → "
        "nn.MaxPool1d, `F.avg_pool1d` → nn.AvgPool1d (Norm) |")
    add("")
    add("Why the functional ops are turned into modules: Zennit attaches rules to `nn.Module` "
        "instances only, so a functional `F.relu`, `F.avg_pool1d` or `x + y` silently gets the "
        "plain gradient, while the same op written as a module gets Pass/Norm. In the ONNX graph "
        "both are the same node (`Relu`, `AveragePool`, `Add`), so a graph engine can only "
        "implement one behaviour per op type. The canonical references therefore use the "
        "module form everywhere (what `ResNetCanonizer` does for torchvision's residual add). "
        "The `_literal` cases (epsilon-plus, guided-backprop for tiny_mobilenetv2, tiny_densenet, "
        "conv1d) keep the functional ops as written, to show what a Zennit user gets without "
        "that rewrite; they are not meant to be matched by a per-op-type engine.")
    add("")
    add("Functional ops left to plain autograd (canonical → literal):")
    add("")
    add("| model | plain gradient in the canonical references | additionally in `_literal` |")
    add("|---|---|---|")
    add("| mlp | Flatten (module, no rule) | – |")
    add("| tiny_vgg, tiny_vgg_bn | MaxPool, `x.view(x.size(0), -1)` (Shape/Gather/Unsqueeze/"
        "Concat/Reshape), Dropout (absent in ONNX), Softmax (module, but not in Zennit's "
        "`Activation` group, so no rule) | – |")
    add("| tiny_resnet | stem MaxPool, `torch.stack` (before Sum), `torch.flatten` (Flatten) | "
        "(no literal case; without the canonizer the 4 residual `Add`s would be plain gradient) |")
    add("| tiny_mobilenetv2 | SE gate `Mul`, SiLU `Mul`, `torch.stack`, `torch.flatten`, Dropout "
        "| residual `Add` ×2, SE `Relu`, `HardSigmoid`, SiLU `Sigmoid` |")
    add("| tiny_densenet | `torch.cat` (Concat) ×6, `torch.flatten` | `Relu` ×9 of 10 (only "
        "trans.1 is a module), `GlobalAveragePool` |")
    add("| conv1d | `torch.flatten` | `Relu` ×2, `AveragePool` (`F.max_pool1d` is plain "
        "gradient either way) |")
    lit = {m: q[m]["literal_vs_canonical_rel_err_f64"] for m in q
           if "literal_vs_canonical_rel_err_f64" in q[m]}
    add("")
    add("How much the rewrite matters (max |literal − canonical| / max |canonical|, float64): "
        + "; ".join(f"{m}: epsilon-plus {v['epsilon-plus']:.2g}, guided-backprop "
                    f"{v['guided-backprop']:.2g}" for m, v in lit.items()) + ".")
    add("")
    add("## Zennit quirks met and how the references handle them")
    add("")
    add("1. **MergeBatchNorm leaves `eps`** (0.5.1; fixed in 1.0): the emptied BN computes "
        "x/sqrt(1+eps). Confirmed in the installed source. With the stock "
        "`SequentialMergeBatchNorm`, tiny_vgg_bn's float64 output changes by "
        f"{g('tiny_vgg_bn', 'stock_merge_forward_max_abs')} and epsilon-plus relevance by a "
        f"relative {g('tiny_vgg_bn', 'stock_merge_epsilon_plus_rel_err')}. The references use "
        "`ExactSequentialMergeBatchNorm` / `ExactNamedMergeBatchNorm` (subclasses that also set "
        "eps=0 and restore it on removal).")
    d = q.get("tiny_resnet", {}).get("zennit_resnet_canonizer_vs_ours_rel_err", {})
    add("2. **Shared ReLU module + beta-smooth**: torchvision's BasicBlock/Bottleneck call "
        "`self.relu` two or three times. `ReLUBetaSmooth` stores the module input in its forward "
        "hook, so the last call's input overwrites the earlier ones and the backward of the earlier "
        "calls uses the wrong input. Our resnet canonizer gives every call site its own ReLU. "
        "Compared with `zennit.torchvision.ResNetCanonizer` on the same model, all composites "
        "agree " + (("bit for bit" if max(v for k, v in d.items() if k != 'beta-smooth') == 0
                     else f"to {max(v for k, v in d.items() if k != 'beta-smooth'):.1e} relative")
                    if d else "n/a")
        + "; beta-smooth with the stock canonizer gives: "
        + (str(d.get('beta-smooth')) if d else "n/a") + " (the Bottleneck's shared ReLU sees "
        "8- and 32-channel inputs, so the stale stored input does not even broadcast).")
    ig = [q[m]["ig_float32_alphas_rel_err_f64"] for m in q if "ig_float32_alphas_rel_err_f64" in q[m]]
    add("3. **IntegratedGradients alphas in float32**: `torch.linspace(1/n, 1, n)` uses the "
        "default dtype, so float64 inputs get float32-rounded alphas (relative effect up to "
        + (f"{max(ig):.1e}" if ig else "n/a") + " here). The float64 cases run with "
        "`torch.set_default_dtype(float64)`; they match an exact alpha_k = k/n re-computation "
        "to ≤ 1e-10 (asserted).")
    add("4. **Occlusion with a one-hot seed is constant**: since zennit PR #117 the score is "
        "`attr_output_fn(output).sum()`, not multiplied by the output, so a constant one-hot "
        "gives score 1 for every window and, with stride = window, relevance 1 everywhere. Only "
        "`occlusion_logit` (score = output[target] of the occluded input; window kept, the rest "
        "zeroed, Zennit's default `occlusion_fn`) is stored. With an int window, Zennit clips "
        "it per non-batch dim (`min(4, C)` covers all channels) and masks all samples at once.")
    add("5. **SmoothGrad**: the *last* of the n_iter iterations is noise-free (docs say the first). "
        "Noise is injected by replacing `torch.randn_like` while zennit's own `SmoothGrad` runs; "
        "the result equals an independent mean of gradients at x + z_i·std (asserted ≤ 1e-12 "
        "relative in float64).")
    add("6. **Softmax is not an `Activation`** in Zennit's type groups, so tiny_vgg's final "
        "Softmax gets the plain gradient in every composite (one-hot seed: R = p_t(δ_t − p), "
        "which sums to 0; hence the tiny_vgg/tiny_vgg_bn LRP relevance sums near 0, exactly 0 "
        "up to rounding with zero_params='bias').")
    add("7. **EpsilonGammaBox's first layer is a convolution only** (`first_map = Convolution`), "
        "so the MLP gets no ZBox at all (its first Linear gets Epsilon). The `*-flat` composites "
        "match any linear layer (Conv or Linear) for Flat.")
    add("8. **Gamma's sign pass** uses the unmodified layer (bias kept even with "
        "zero_params='bias').")
    add("9. **zero_params='bias'** zeroes the bias in every pass of Epsilon/ZPlus (the ZPlus "
        "negative pass always has bias zero).")
    add("10. Pass on an *unmerged* BN (tiny_densenet norm1/trans.0/norm) passes relevance "
        "through unchanged, ignoring the BN's scale; in excitation-backprop, deconvnet, "
        "guided-backprop and beta-smooth the BN (merged or not) is plain gradient.")
    add("")
    add("## Layer → rule map (canonical references)")
    add("")
    add("Rules attach by module type, first match wins; the 'first layer' is the first module "
        "in `named_modules()` order (= registration order = ONNX node order for these models) "
        "matching the composite's `first_map`. `manifest.json` lists, per model, every ONNX node "
        "with the rule of each composite.")
    add("")
    add("| ONNX op | LRP composites (epsilon-*, *-flat, epsilon-gamma-box) | excitation-backprop "
        "| deconvnet / guided-backprop / beta-smooth |")
    add("|---|---|---|---|")
    add("| Conv (any: 1-D, depthwise, 1×1) | ZPlus (epsilon-plus*), AlphaBeta(2,1) (alpha2-beta1*), "
        "Gamma(0.25) (gamma-box); first Conv: ZBox(−3, 3) in gamma-box, Flat in *-flat | ZPlus "
        "| gradient |")
    add("| Gemm (Linear) | Epsilon(1e-6); Flat if it is the first linear layer (*-flat, MLP) | "
        "ZPlus | gradient |")
    add("| Relu | Pass | gradient | ReLUDeconvNet / ReLUGuidedBackprop / ReLUBetaSmooth(10) |")
    add("| Clip (ReLU6), HardSwish, HardSigmoid, Sigmoid, Tanh | Pass | gradient | gradient |")
    add("| Add (residual, via Sum) | Norm | Norm | gradient |")
    add("| AveragePool, GlobalAveragePool | Norm | Norm | gradient |")
    add("| BatchNormalization (unmerged) | Pass | gradient | gradient |")
    add("| MaxPool, Mul, Concat, Flatten, Reshape, Softmax | gradient | gradient | gradient |")
    add("")
    add("Stabilizer everywhere: z + 1e-6·sign(z), sign(0) = +1. `models[m].merged_batchnorm_nodes` "
        "lists the BN nodes that the canonizer merged into the preceding Conv (they are exact "
        "identities with Pass afterwards); every other BatchNormalization node is unmerged.")
    add("")
    add("Plain-gradient details that matter for exact parity: MaxPool routes the gradient to the "
        "first maximal element of each window in row-major order (ties are common after ReLU: "
        "an all-zero window sends everything to its first element; this shows in deconvnet, "
        "which ignores the ReLU mask); padding of MaxPool is −inf. ReLU's gradient is 1[x > 0] "
        "(0 at x = 0); Clip/ReLU6's is 1[0 < x < 6]. Mul: ∂(a·b) = (b·R, a·R), both inputs; "
        "SiLU's x feeds both. Concat splits, Flatten/Reshape reshape. Dropout is absent.")
    add("")
    add("float32 cases carry `max_abs_diff_vs_float64_over_max_abs` in the manifest (median "
        "about 3e-7; the worst are integrated-gradients_epsilon-plus, up to ~2e-3 on "
        "tiny_vgg_bn, where small alpha·x makes the epsilon-stabilised denominators tiny): use "
        "float64 for tight parity and a per-case tolerance for float32.")
    with open(os.path.join(out, "NOTES.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
