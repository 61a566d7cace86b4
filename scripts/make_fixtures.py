#!/usr/bin/env python3
"""Generate Prism's committed ONNX test fixtures (tests/fixtures/).

Purpose
    Small, deterministic ONNX models with a fixed input and onnxruntime's reference output, used
    by the Rust tests of the ONNX loader and the CPU forward engine (crates/prism-model), plus a
    set of deliberately broken files for the loader's error paths.

How to run (from the repository root; needs torch, torchvision, onnx, onnxruntime)
    /root/anchors/bin/python scripts/make_fixtures.py [--out tests/fixtures]

    Everything is seeded, so a re-run with the same library versions writes the same numbers.
    torch and onnxruntime are pinned to one thread (cheap: all models are tiny). The script
    overwrites the files it writes and deletes nothing else.

What it writes (under --out, default tests/fixtures/)
    <name>.onnx          the model (input "input", output "output", dynamic batch axis)
    <name>.onnx.data     only for helper_external: its weights as ONNX external data
    <name>.input.npy     float32 input, batch 2 or 3 (N x C x H x W, N x C x L or N x F)
    <name>.output.npy    float32 onnxruntime output (CPU provider, graph optimisations off)
    manifest.json        {"models": [{name, onnx, input, output, opset, input_name, ops, note,
                          exporter, input_shape, output_shape}], "errors": [{file, kind, note}]}
                          Paths in it are relative to the fixtures folder.
    errors/              truncated.onnx, not_onnx.onnx, unsupported_op.onnx, undefined_input.onnx,
                         cycle.onnx, wrong_shape.input.npy (see the "errors" list of the manifest)

Torch models are exported with the legacy TorchScript exporter (torch.onnx.export(...,
dynamo=False)), which emits the classic op set (Flatten/Gemm, Shape-Gather-Unsqueeze-Concat-Reshape
for x.view(x.size(0), -1), Clip for ReLU6, ...). Models whose name starts with "helper_" are
written with onnx.helper directly. Each torch model's onnxruntime output is also checked against
the torch output, and every valid model passes onnx.checker.check_model. A summary table is printed
at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torchvision.models.resnet import BasicBlock, Bottleneck

torch.set_num_threads(1)
try:
    torch.set_num_interop_threads(1)
except RuntimeError:
    pass
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=UserWarning)
warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)

DEFAULT_OPSET = 17
HELPER_IR_VERSION = 8  # oldest IR that allows opset 17; every ONNX reader handles it
LEGACY = "torch.onnx.export legacy TorchScript exporter (dynamo=False)"


# --------------------------------------------------------------------------------------------
# Utilities
# --------------------------------------------------------------------------------------------


def randomize_bn(model: nn.Module, seed: int) -> None:
    """Give every BatchNorm non-trivial affine parameters and running statistics (var > 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)  # [0.5, 1.5)
                m.bias.copy_(torch.rand(c, generator=g) - 0.5)  # [-0.5, 0.5)
                m.running_mean.copy_((torch.rand(c, generator=g) - 0.5) * 0.6)
                m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)  # [0.5, 2.0)


def init_weights(model: nn.Module, seed: int) -> None:
    """He-normal weights (fan_in, ReLU gain) and U(-0.2, 0.2) biases for Conv/ConvTranspose/Linear.

    PyTorch's default init shrinks activations layer by layer, which leaves softmax outputs
    near-uniform and outputs small; this keeps activations around unit scale instead."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                w = m.weight
                if isinstance(m, nn.ConvTranspose2d):  # (in, out/groups, kh, kw): fan_in per output
                    fan_in = w.shape[0] // m.groups * w[0, 0].numel()
                else:
                    fan_in = w[0].numel()
                w.copy_(torch.randn(w.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_((torch.rand(m.bias.shape, generator=g) - 0.5) * 0.4)


def prepare_torch_model(model: nn.Module, seed: int) -> nn.Module:
    """Eval mode plus the fixture's deterministic weights (init_weights, randomize_bn).

    Used by Fixtures.torch_model and by scripts/make_reference.py, which rebuilds the same models
    (construct under torch.manual_seed(seed), then this) to compute Zennit references."""
    model.eval()
    init_weights(model, seed + 500)
    randomize_bn(model, seed + 1000)
    return model


def make_input(shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def run_ort(path: str, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    # Reference semantics of the graph as written, no fusions.
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    out = sess.run(None, {name: x})[0]
    return np.asarray(out, dtype=np.float32)


def op_types(model: onnx.ModelProto) -> list[str]:
    return sorted({n.op_type for n in model.graph.node})


def opset_of(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    raise ValueError("no default-domain opset")


class Fixtures:
    def __init__(self, out: str):
        self.out = out
        self.models: list[dict] = []
        self.errors: list[dict] = []
        os.makedirs(out, exist_ok=True)
        os.makedirs(os.path.join(out, "errors"), exist_ok=True)

    def path(self, rel: str) -> str:
        return os.path.join(self.out, rel)

    def _finish(self, name, x, note, exporter, must_have=(), torch_out=None, extra_files=()):
        onnx_rel = f"{name}.onnx"
        onnx_path = self.path(onnx_rel)
        onnx.checker.check_model(onnx_path, full_check=True)  # path: resolves external data
        model = onnx.load(onnx_path, load_external_data=False)
        ops = op_types(model)
        missing = [o for o in must_have if o not in ops]
        if missing:
            raise RuntimeError(f"{name}: expected ops {missing} not in graph {ops}")
        y = run_ort(onnx_path, x)
        diff = None
        if torch_out is not None:
            diff = float(np.max(np.abs(torch_out - y)))
            tol = 1e-4 * max(1.0, float(np.max(np.abs(torch_out))))
            if diff > tol:
                raise RuntimeError(f"{name}: onnxruntime and torch differ by {diff}")
        np.save(self.path(f"{name}.input.npy"), x)
        np.save(self.path(f"{name}.output.npy"), y)
        size = os.path.getsize(onnx_path) + sum(os.path.getsize(self.path(f)) for f in extra_files)
        self.models.append(
            {
                "name": name,
                "onnx": onnx_rel,
                "input": f"{name}.input.npy",
                "output": f"{name}.output.npy",
                "opset": opset_of(model),
                "input_name": model.graph.input[0].name,
                "ops": ops,
                "note": note,
                "exporter": exporter,
                "input_shape": list(x.shape),
                "output_shape": list(y.shape),
                **({"external_data": list(extra_files)} if extra_files else {}),
                "_size": size,
                "_max_abs": float(np.max(np.abs(y))),
                "_torch_diff": diff,
            }
        )

    def torch_model(self, name, model, input_shape, note, *, seed, opset=DEFAULT_OPSET,
                    constant_folding=True, must_have=()):
        prepare_torch_model(model, seed)
        x = make_input(input_shape, seed + 2000)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        dyn = {i: {0: "batch"} for i in ("input", "output")}
        torch.onnx.export(
            model,
            (torch.from_numpy(x),),
            self.path(f"{name}.onnx"),
            dynamo=False,
            export_params=True,
            opset_version=opset,
            do_constant_folding=constant_folding,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes=dyn,
        )
        full_note = (
            f"{note} Exported with {LEGACY}, opset {opset}, "
            f"do_constant_folding={constant_folding}."
        )
        self._finish(name, x, full_note, LEGACY, must_have, ref)

    def helper_model(self, name, model, input_shape, note, *, seed, must_have=(), save=None,
                     extra_files=()):
        onnx.checker.check_model(model, full_check=True)
        if save is None:
            onnx.save_model(model, self.path(f"{name}.onnx"))
        else:
            save(model, self.path(f"{name}.onnx"))
        x = make_input(input_shape, seed + 2000)
        self._finish(name, x, note + " Built with onnx.helper.", "onnx.helper", must_have,
                     None, extra_files)

    def error(self, file, kind, note, **extra):
        self.errors.append({"file": file, "kind": kind, "note": note, **extra})

    def write_manifest(self):
        models = [{k: v for k, v in m.items() if not k.startswith("_")} for m in self.models]
        text = json.dumps({"models": models, "errors": self.errors}, indent=2)
        # Keep lists of scalars (ops, shapes) on one line.
        text = re.sub(r"\[\s*([^\[\]{}]*?)\s*\]",
                      lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]", text)
        with open(self.path("manifest.json"), "w") as f:
            f.write(text + "\n")


# --------------------------------------------------------------------------------------------
# Torch models
# --------------------------------------------------------------------------------------------


def mlp() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 32),
        nn.ReLU(),
        nn.Linear(32, 16),
        nn.Tanh(),
        nn.Linear(16, 10),
    )


class TinyVGG(nn.Module):
    """VGG-style: (Conv[-BN]-ReLU)x2, MaxPool, Conv[-BN]-ReLU, MaxPool, view-flatten,
    Linear-ReLU-Dropout-Linear-Softmax. Input N x 3 x 16 x 16."""

    def __init__(self, bn: bool):
        super().__init__()

        def block(cin, cout):
            layers = [nn.Conv2d(cin, cout, 3, padding=1)]
            if bn:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.ReLU(inplace=True))
            return layers

        self.features = nn.Sequential(
            *block(3, 8), *block(8, 8), nn.MaxPool2d(2, 2), *block(8, 16), nn.MaxPool2d(2, 2)
        )
        self.classifier = nn.Sequential(
            nn.Linear(16 * 4 * 4, 32),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(32, 10),
            nn.Softmax(dim=1),
        )

    def forward(self, x):
        x = self.features(x)
        x = x.view(x.size(0), -1)
        return self.classifier(x)


class TinyResNet(nn.Module):
    """torchvision BasicBlock/Bottleneck; stem Conv-BN-ReLU + MaxPool(3, 2, padding=1);
    AdaptiveAvgPool2d(1) + flatten + Linear. Input N x 3 x 32 x 32."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )

        def down(cin, cout):
            return nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=2, bias=False), nn.BatchNorm2d(cout)
            )

        self.layers = nn.Sequential(
            BasicBlock(8, 8),
            BasicBlock(8, 16, stride=2, downsample=down(8, 16)),
            Bottleneck(16, 4),  # 16 -> 4 -> 4 -> 16, identity shortcut
            Bottleneck(16, 8, stride=2, downsample=down(16, 32)),  # -> 32 channels
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.layers(self.stem(x))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand-BN-ReLU6, 3x3 depthwise-BN-ReLU6, 1x1 project-BN, (+x)."""

    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hid = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.body = nn.Sequential(
            nn.Conv2d(cin, hid, 1, bias=False), nn.BatchNorm2d(hid), nn.ReLU6(inplace=True),
            nn.Conv2d(hid, hid, 3, stride, 1, groups=hid, bias=False), nn.BatchNorm2d(hid),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hid, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )

    def forward(self, x):
        y = self.body(x)
        return x + y if self.use_res else y


class SqueezeExcite(nn.Module):
    """MobileNetV3 SE: AdaptiveAvgPool(1) -> 1x1 conv -> ReLU -> 1x1 conv -> Hardsigmoid -> Mul."""

    def __init__(self, c, r):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c, r, 1)
        self.fc2 = nn.Conv2d(r, c, 1)

    def forward(self, x):
        s = self.fc2(F.relu(self.fc1(self.pool(x))))
        return x * F.hardsigmoid(s)


class V3Block(nn.Module):
    """MobileNetV3 bneck: 1x1 expand-BN-HardSwish, depthwise-BN-HardSwish, SE, 1x1 project-BN,
    residual Add."""

    def __init__(self, c, hid):
        super().__init__()
        self.expand = nn.Sequential(
            nn.Conv2d(c, hid, 1, bias=False), nn.BatchNorm2d(hid), nn.Hardswish()
        )
        self.dw = nn.Sequential(
            nn.Conv2d(hid, hid, 3, 1, 1, groups=hid, bias=False),
            nn.BatchNorm2d(hid),
            nn.Hardswish(),
        )
        self.se = SqueezeExcite(hid, 8)
        self.project = nn.Sequential(nn.Conv2d(hid, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        return x + self.project(self.se(self.dw(self.expand(x))))


class TinyMobileNetV2(nn.Module):
    """Stem Conv(s2)-BN-ReLU6, two inverted residuals, one MobileNetV3 block (HardSwish + SE with
    Hardsigmoid), an EfficientNet-like 1x1 conv + SiLU written as x*sigmoid(x), global pool,
    flatten, Dropout, Linear. Input N x 3 x 16 x 16."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6(inplace=True)
        )
        self.ir1 = InvertedResidual(8, 8, 1, 2)  # residual Add
        self.ir2 = InvertedResidual(8, 16, 2, 2)  # no residual, stride 2
        self.v3 = V3Block(16, 32)
        self.head = nn.Sequential(nn.Conv2d(16, 32, 1, bias=False), nn.BatchNorm2d(32))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.v3(self.ir2(self.ir1(self.stem(x))))
        x = self.head(x)
        x = x * torch.sigmoid(x)  # SiLU, spelled out
        x = torch.flatten(self.pool(x), 1)
        return self.fc(self.drop(x))


class DenseLayer(nn.Module):
    """torchvision _DenseLayer: cat(inputs) -> BN-ReLU-Conv1x1 -> BN-ReLU-Conv3x3."""

    def __init__(self, cin, growth, bn_size=2):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, feats):
        x = torch.cat(feats, 1)
        x = self.conv1(F.relu(self.norm1(x)))
        return self.conv2(F.relu(self.norm2(x)))


class DenseBlock(nn.Module):
    def __init__(self, n, cin, growth):
        super().__init__()
        self.layers = nn.ModuleList(DenseLayer(cin + i * growth, growth) for i in range(n))

    def forward(self, x):
        feats = [x]
        for layer in self.layers:
            feats.append(layer(feats))
        return torch.cat(feats, 1)


class TinyDenseNet(nn.Module):
    """Stem conv, dense block (2 layers, growth 4), transition BN-ReLU-Conv1x1-AvgPool2d(2), dense
    block, final BN-ReLU, AdaptiveAvgPool2d(1), flatten, Linear. Input N x 3 x 16 x 16."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.block1 = DenseBlock(2, 8, 4)  # -> 16
        self.trans = nn.Sequential(
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, 8, 1, bias=False),
            nn.AvgPool2d(2),
        )
        self.block2 = DenseBlock(2, 8, 4)  # -> 16
        self.norm = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.block2(self.trans(self.block1(self.stem(x))))
        x = F.relu(self.norm(x))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


class OpsConv(nn.Module):
    """Dilated conv + LeakyReLU; F.pad constant (asymmetric) + grouped stride-2 conv + Sigmoid;
    F.pad reflect + bias-free conv + Tanh; ConvTranspose2d(stride 2, padding 1, output_padding 1).
    Input N x 3 x 12 x 12 -> N x 4 x 16 x 12."""

    def __init__(self):
        super().__init__()
        self.dil = nn.Conv2d(3, 6, 3, padding=2, dilation=2)
        self.strided = nn.Conv2d(6, 8, 3, stride=2, groups=2)
        self.plain = nn.Conv2d(8, 8, 3, bias=False)
        self.up = nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1)

    def forward(self, x):
        x = F.leaky_relu(self.dil(x), 0.1)  # 6 x 12 x 12
        x = F.pad(x, (1, 0, 2, 1), mode="constant", value=0.25)  # left 1, right 0, top 2, bottom 1
        x = torch.sigmoid(self.strided(x))  # 8 x 7 x 6 (padded to 15 x 13)
        x = F.pad(x, (1, 1, 2, 1), mode="reflect")  # 8 x 10 x 8
        x = torch.tanh(self.plain(x))  # 8 x 8 x 6
        return self.up(x)  # 4 x 16 x 12


class OpsPool(nn.Module):
    """AvgPool2d(count_include_pad=False, ceil_mode=True), AvgPool2d with padding counted,
    MaxPool2d(ceil_mode=True), spatial mean (ReduceMean keepdims), Sub broadcast.
    Input N x 4 x 11 x 11 -> N x 4 x 3 x 3."""

    def __init__(self):
        super().__init__()
        self.avg = nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
        self.avg_pad = nn.AvgPool2d(3, stride=1, padding=1)  # count_include_pad=True
        self.max = nn.MaxPool2d(2, stride=2, ceil_mode=True)

    def forward(self, x):
        a = self.avg(x)  # 4 x 6 x 6
        b = self.max(self.avg_pad(a))  # 4 x 3 x 3
        m = b.mean(dim=(2, 3), keepdim=True)  # 4 x 1 x 1
        return b - m


class OpsElementwise(nn.Module):
    """Scalar Sub/Mul/Div, per-channel broadcast Sub/Div/Mul/Add, flatten(2), batched 3-D matmul
    with a transpose, matmul with a 2-D weight, unsqueeze/squeeze, Softmax(dim=1) on 3-D.
    Input N x 4 x 6 x 6 -> N x 4 x 9."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(7)
        self.register_buffer("mean", torch.rand(1, 4, 1, 1, generator=g) - 0.5)
        self.register_buffer("std", torch.rand(1, 4, 1, 1, generator=g) + 0.5)
        self.scale = nn.Parameter(torch.rand(1, 4, 1, 1, generator=g) + 0.5)
        self.shift = nn.Parameter(torch.rand(1, 4, 1, 1, generator=g) - 0.5)
        self.w = nn.Parameter(torch.randn(4, 5, generator=g) * 0.5)

    def forward(self, x):
        y = (x - 0.5) * 2.0 / 3.0
        y = (y - self.mean) / self.std
        y = y * self.scale + self.shift
        z = y.flatten(2)  # N x 4 x 36
        gram = torch.matmul(z, z.transpose(1, 2)) / 36.0  # N x 4 x 4 (batched)
        h = torch.matmul(gram, self.w)  # N x 4 x 5
        h = h.unsqueeze(1)  # N x 1 x 4 x 5
        h = torch.relu(h).squeeze(1)  # N x 4 x 5
        s = torch.softmax(torch.cat([h, gram], dim=2), dim=1)  # N x 4 x 9, softmax over dim 1
        return s


class Conv1dNet(nn.Module):
    """Conv1d-BN-ReLU, MaxPool1d, dilated stride-2 Conv1d-ReLU, AvgPool1d, flatten, Linear.
    Input N x 3 x 16."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm1d(6)
        self.c2 = nn.Conv1d(6, 8, 3, stride=2, padding=2, dilation=2)
        self.fc = nn.Linear(8 * 2, 5)

    def forward(self, x):
        x = F.max_pool1d(F.relu(self.bn(self.c1(x))), 2)  # 6 x 8
        x = F.relu(self.c2(x))  # 8 x 4
        x = F.avg_pool1d(x, 2)  # 8 x 2
        return self.fc(torch.flatten(x, 1))


# --------------------------------------------------------------------------------------------
# onnx.helper models
# --------------------------------------------------------------------------------------------


def _rng(seed):
    return np.random.default_rng(seed)


def _typed(name, arr):
    """A float initializer in the typed float_data field (raw=False)."""
    arr = np.asarray(arr, dtype=np.float32)
    return helper.make_tensor(name, TensorProto.FLOAT, arr.shape, arr.flatten().tolist(), raw=False)


def _raw(name, arr):
    return numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name)


def _io(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _model(graph, opset=DEFAULT_OPSET):
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                          producer_name="prism make_fixtures.py")
    m.ir_version = HELPER_IR_VERSION
    return m


def helper_typed_init(seed):
    r = _rng(seed)
    w = r.standard_normal((3, 2, 3, 3)) * 0.4
    b = r.standard_normal(3) * 0.1
    gw = r.standard_normal((48, 5)) * 0.2
    gb = r.standard_normal(5) * 0.1
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [0, -1], raw=False)  # int64_data
    nodes = [
        helper.make_node("Conv", ["input", "w", "b"], ["c"], name="conv", kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Reshape", ["r", "shape"], ["flat"], name="reshape"),
        helper.make_node("Gemm", ["flat", "gw", "gb"], ["output"], name="gemm"),
    ]
    g = helper.make_graph(nodes, "helper_typed_init", [_io("input", ["batch", 2, 6, 6])],
                          [_io("output", ["batch", 5])],
                          [_typed("w", w), _typed("b", b), _typed("gw", gw), _typed("gb", gb),
                           shape])
    m = _model(g)
    for t in m.graph.initializer:
        assert not t.raw_data, t.name
    return m


def helper_autopad(seed):
    r = _rng(seed)
    w1 = r.standard_normal((4, 2, 3, 3)) * 0.4
    b1 = r.standard_normal(4) * 0.1
    w2 = r.standard_normal((4, 4, 2, 2)) * 0.4
    nodes = [
        # 8x8, k3 s2 -> 4x4, total pad 1: SAME_UPPER puts it at the end (bottom/right)
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv_same_upper",
                         kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        # 4x4, k2 s1 -> 4x4, total pad 1: SAME_LOWER puts it at the start (top/left)
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv_same_lower",
                         kernel_shape=[2, 2], auto_pad="SAME_LOWER"),
        # 4x4, k3 s2 -> 2x2, total pad 1 at the end
        helper.make_node("MaxPool", ["c2"], ["output"], name="maxpool_same_upper",
                         kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
    ]
    g = helper.make_graph(nodes, "helper_autopad", [_io("input", ["batch", 2, 8, 8])],
                          [_io("output", ["batch", 4, 2, 2])],
                          [_raw("w1", w1), _raw("b1", b1), _raw("w2", w2)])
    return _model(g)


def helper_external(seed):
    r = _rng(seed)
    w = r.standard_normal((4, 3, 3, 3)) * 0.4
    b = r.standard_normal(4) * 0.1
    fw = r.standard_normal((3, 4)) * 0.5
    fb = r.standard_normal(3) * 0.1
    nodes = [
        helper.make_node("Conv", ["input", "w", "b"], ["c"], name="conv", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="gap"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["output"], name="fc", transB=1),
    ]
    g = helper.make_graph(nodes, "helper_external", [_io("input", ["batch", 3, 8, 8])],
                          [_io("output", ["batch", 3])],
                          [_raw("w", w), _raw("b", b), _raw("fw", fw), _raw("fb", fb)])
    return _model(g)


def helper_pad(seed):
    del seed
    i64 = lambda name, v: helper.make_tensor(name, TensorProto.INT64, [len(v)], v)  # noqa: E731
    nodes = [
        # ONNX pads layout: [x1_begin, x2_begin, ..., x1_end, x2_end, ...]
        helper.make_node("Pad", ["input", "pads_c", "value"], ["p1"], name="pad_constant",
                         mode="constant"),
        helper.make_node("Pad", ["p1", "pads_r"], ["p2"], name="pad_reflect", mode="reflect"),
        helper.make_node("Pad", ["p2", "pads_e"], ["output"], name="pad_edge", mode="edge"),
    ]
    g = helper.make_graph(
        nodes, "helper_pad", [_io("input", ["batch", 2, 5, 5])],
        [_io("output", ["batch", 2, 12, 12])],
        [i64("pads_c", [0, 0, 1, 2, 0, 0, 2, 1]), _raw("value", np.array(0.5)),
         i64("pads_r", [0, 0, 2, 1, 0, 0, 1, 2]), i64("pads_e", [0, 0, 1, 0, 0, 0, 0, 1])])
    return _model(g)


def helper_identity_dropout(seed):
    r = _rng(seed)
    w = r.standard_normal((6, 6)) * 0.5
    b = r.standard_normal(6) * 0.1
    nodes = [
        # Inference-mode Dropout (no training_mode input): identity; ratio given as an input.
        helper.make_node("Dropout", ["input", "ratio"], ["d"], name="dropout"),
        helper.make_node("Gemm", ["d", "W", "b"], ["h"], name="gemm"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        # The legacy torch exporter deduplicates equal initializers and re-creates the duplicates
        # as Identity(initializer) nodes, e.g. zero biases or BN weights of ones: same pattern.
        helper.make_node("Identity", ["W"], ["W_alias"], name="identity_weight"),
        helper.make_node("MatMul", ["r", "W_alias"], ["m"], name="matmul"),
        helper.make_node("Identity", ["m"], ["output"], name="identity_out"),
    ]
    g = helper.make_graph(nodes, "helper_identity_dropout", [_io("input", ["batch", 6])],
                          [_io("output", ["batch", 6])],
                          [_raw("ratio", np.array(0.5)), _raw("W", w), _raw("b", b)])
    return _model(g)


def save_external(model, path):
    # onnx appends to an existing data file, so remove the previous run's first.
    data = os.path.join(os.path.dirname(path), "helper_external.onnx.data")
    if os.path.exists(data):
        os.remove(data)
    onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location="helper_external.onnx.data", size_threshold=0)
    os.chmod(data, 0o644)


def helper_gemm_flags(seed):
    r = _rng(seed)
    b = r.standard_normal((4, 6)) * 0.5  # [out, in], used with transB=1
    c = r.standard_normal(4)  # [out], broadcast over the batch
    nodes = [helper.make_node("Gemm", ["input", "B", "C"], ["output"], name="gemm",
                              transA=0, transB=1, alpha=0.5, beta=2.0)]
    g = helper.make_graph(nodes, "helper_gemm_flags", [_io("input", ["batch", 6])],
                          [_io("output", ["batch", 4])], [_raw("B", b), _raw("C", c)])
    return _model(g)


def helper_matmul(seed):
    r = _rng(seed)
    w = r.standard_normal((6, 5)) * 0.5  # [in, out]
    b = r.standard_normal(5) * 0.1
    nodes = [
        helper.make_node("MatMul", ["input", "W"], ["mm"], name="matmul"),
        helper.make_node("Add", ["mm", "bias"], ["output"], name="add_bias"),
    ]
    g = helper.make_graph(nodes, "helper_matmul", [_io("input", ["batch", 6])],
                          [_io("output", ["batch", 5])], [_raw("W", w), _raw("bias", b)])
    return _model(g)


# --------------------------------------------------------------------------------------------
# Error fixtures
# --------------------------------------------------------------------------------------------


def write_errors(fx: Fixtures):
    vgg_path = fx.path("tiny_vgg.onnx")
    data = open(vgg_path, "rb").read()
    with open(fx.path("errors/truncated.onnx"), "wb") as f:
        f.write(data[: int(len(data) * 0.6)])
    fx.error("errors/truncated.onnx", "truncated",
             f"First 60% ({int(len(data) * 0.6)} of {len(data)} bytes) of tiny_vgg.onnx; "
             "protobuf decoding must fail cleanly.")

    with open(fx.path("errors/not_onnx.onnx"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR this is not an ONNX model, just text.\n")
    fx.error("errors/not_onnx.onnx", "not_onnx",
             "PNG signature followed by plain text; not a protobuf ModelProto.")

    # Valid model with Det (matrix determinant), which Prism does not support.
    g = helper.make_graph(
        [helper.make_node("Det", ["input"], ["output"], name="my_det")],
        "unsupported_op", [_io("input", ["batch", 3, 3])], [_io("output", ["batch"])])
    m = _model(g)
    onnx.checker.check_model(m, full_check=True)
    onnx.save_model(m, fx.path("errors/unsupported_op.onnx"))
    fx.error("errors/unsupported_op.onnx", "unsupported_op",
             "Valid model (passes onnx.checker) with one Det node named 'my_det'; the error "
             "should name the op and the node.",
             op="Det", node="my_det")

    g = helper.make_graph(
        [helper.make_node("Relu", ["input"], ["r"], name="relu"),
         helper.make_node("Add", ["r", "ghost"], ["output"], name="add_ghost")],
        "undefined_input", [_io("input", ["batch", 4])], [_io("output", ["batch", 4])])
    onnx.save_model(_model(g), fx.path("errors/undefined_input.onnx"))
    fx.error("errors/undefined_input.onnx", "undefined_input",
             "Node 'add_ghost' reads tensor 'ghost', which is neither a graph input, an "
             "initializer nor any node's output. Saved without the checker.",
             node="add_ghost", tensor="ghost")

    g = helper.make_graph(
        [helper.make_node("Add", ["input", "b"], ["a"], name="cycle_add"),
         helper.make_node("Relu", ["a"], ["b"], name="cycle_relu")],
        "cycle", [_io("input", ["batch", 4])], [_io("a", ["batch", 4])])
    onnx.save_model(_model(g), fx.path("errors/cycle.onnx"))
    fx.error("errors/cycle.onnx", "cycle",
             "Nodes 'cycle_add' (input + b -> a) and 'cycle_relu' (a -> b) feed each other; "
             "graph output is 'a'. Saved without the checker.", nodes=["cycle_add", "cycle_relu"])

    x = make_input((2, 1, 7, 5), 4242)
    np.save(fx.path("errors/wrong_shape.input.npy"), x)
    fx.error("errors/wrong_shape.input.npy", "wrong_shape",
             "float32 2x1x7x5 input for tiny_vgg.onnx, which expects N x 3 x 16 x 16 "
             "(channel count and spatial size both wrong).", model="tiny_vgg.onnx")

    # Sanity: every error file must really be rejected by onnx or onnxruntime.
    for e in fx.errors:
        p = fx.path(e["file"])
        if e["kind"] == "wrong_shape":
            try:
                run_ort(vgg_path, np.load(p))
            except Exception:
                continue
            raise RuntimeError("onnxruntime accepted wrong_shape input")
        if e["kind"] == "unsupported_op":
            continue  # valid ONNX by design
        try:
            onnx.checker.check_model(onnx.load(p), full_check=True)
        except Exception:
            continue
        raise RuntimeError(f"{e['file']} passes onnx.checker")


# --------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--out", default=os.path.join(root, "tests", "fixtures"))
    args = ap.parse_args()
    fx = Fixtures(args.out)

    def seeded(seed, ctor):
        torch.manual_seed(seed)
        return ctor()

    fx.torch_model("mlp", seeded(1, mlp), (3, 1, 8, 8),
                   "Flatten + Linear-ReLU-Linear-Tanh-Linear (Gemm).", seed=1,
                   must_have=["Flatten", "Gemm", "Relu", "Tanh"])
    fx.torch_model("tiny_vgg_bn", seeded(2, lambda: TinyVGG(bn=True)), (2, 3, 16, 16),
                   "Conv-BN-ReLU blocks, MaxPool, x.view(x.size(0), -1) flatten, Linear-ReLU-"
                   "Dropout-Linear-Softmax; BatchNormalization kept (no folding), so the flatten "
                   "is Shape/Gather/Unsqueeze/Concat/Reshape with Constant nodes. Dropout is "
                   "dropped by the exporter in eval mode.", seed=2, constant_folding=False,
                   must_have=["BatchNormalization", "Shape", "Gather", "Unsqueeze", "Concat",
                              "Reshape", "Softmax"])
    fx.torch_model("tiny_vgg", seeded(3, lambda: TinyVGG(bn=False)), (2, 3, 16, 16),
                   "Like tiny_vgg_bn without BatchNorm; constant folding on.", seed=3,
                   must_have=["Conv", "MaxPool", "Reshape", "Softmax"])
    fx.torch_model("tiny_resnet", seeded(4, TinyResNet), (2, 3, 32, 32),
                   "torchvision BasicBlock x2 + Bottleneck x2 (1x1/3x3 convs, stride-2 1x1 "
                   "downsample, residual Add), MaxPool(3,2,pad 1), GlobalAveragePool, Flatten, "
                   "Gemm. BatchNorm folded into Conv by the exporter.", seed=4,
                   must_have=["Add", "GlobalAveragePool", "MaxPool", "Flatten", "Gemm"])
    fx.torch_model("tiny_resnet_opset11", seeded(4, TinyResNet), (2, 3, 32, 32),
                   "Same network and weights as tiny_resnet, opset 11.", seed=4, opset=11,
                   must_have=["Add", "GlobalAveragePool", "MaxPool"])
    fx.torch_model("tiny_mobilenetv2", seeded(5, TinyMobileNetV2), (2, 3, 16, 16),
                   "Inverted residuals (depthwise conv, ReLU6 as Clip, residual Add), a "
                   "MobileNetV3 block (HardSwish, SE: GlobalAveragePool-Conv-Relu-Conv-"
                   "HardSigmoid-Mul), SiLU as Sigmoid+Mul, GlobalAveragePool, Gemm. BN folded.",
                   seed=5, must_have=["Clip", "HardSwish", "HardSigmoid", "Sigmoid", "Mul", "Add",
                                      "GlobalAveragePool"])
    fx.torch_model("tiny_densenet", seeded(6, TinyDenseNet), (2, 3, 16, 16),
                   "Dense blocks (Concat, BN-ReLU-Conv1x1-BN-ReLU-Conv3x3), transition with "
                   "AveragePool 2x2, final BN-ReLU, GlobalAveragePool, Gemm. BatchNormalization "
                   "kept, including BN right after Concat.", seed=6, constant_folding=False,
                   must_have=["BatchNormalization", "Concat", "AveragePool", "GlobalAveragePool"])
    fx.torch_model("ops_conv", seeded(7, OpsConv), (2, 3, 12, 12),
                   "Dilated conv + LeakyRelu(0.1); Pad constant 0.25 asymmetric (l1 r0 t2 b1) + "
                   "grouped (groups=2) stride-2 conv + Sigmoid; Pad reflect (l1 r1 t2 b1) + "
                   "bias-free conv + Tanh; ConvTranspose (k3, stride 2, pads 1, "
                   "output_padding 1). The exporter computes each Pad's pads with a constant "
                   "subgraph (Constant, ConstantOfShape, Concat, Reshape, Slice with step -1, "
                   "Transpose, Reshape, Cast); the constant value is a Pad input.", seed=7,
                   must_have=["Pad", "ConvTranspose", "LeakyRelu", "Sigmoid", "Tanh"])
    fx.torch_model("ops_pool", seeded(8, OpsPool), (2, 4, 11, 11),
                   "AveragePool k3 s2 p1 ceil_mode=1 count_include_pad=0; AveragePool k3 s1 p1 "
                   "count_include_pad=1; MaxPool k2 s2 ceil_mode=1; ReduceMean over H,W with "
                   "keepdims; Sub broadcast.", seed=8,
                   must_have=["AveragePool", "MaxPool", "ReduceMean", "Sub"])
    fx.torch_model("ops_elementwise", seeded(9, OpsElementwise), (2, 4, 6, 6),
                   "Scalar Sub/Mul/Div, per-channel broadcast Sub/Div/Mul/Add, flatten(2), "
                   "batched 3-D MatMul with Transpose, MatMul with 2-D weight, Unsqueeze/Relu/"
                   "Squeeze, Concat, Softmax(axis=1) on a 3-D tensor.", seed=9,
                   must_have=["MatMul", "Transpose", "Unsqueeze", "Squeeze", "Softmax", "Div"])
    fx.torch_model("ops_elementwise_opset11", seeded(9, OpsElementwise), (2, 4, 6, 6),
                   "Same network and weights as ops_elementwise at opset 11: Squeeze/Unsqueeze "
                   "take axes as attributes.", seed=9, opset=11,
                   must_have=["MatMul", "Unsqueeze", "Squeeze", "Softmax"])
    fx.torch_model("ops_pool_opset18", seeded(8, OpsPool), (2, 4, 11, 11),
                   "Same network as ops_pool at opset 18: ReduceMean takes axes as an input.",
                   seed=8, opset=18, must_have=["AveragePool", "MaxPool", "ReduceMean"])
    fx.torch_model("conv1d", seeded(10, Conv1dNet), (3, 3, 16),
                   "N x C x L input: Conv1d (BN folded), Relu, MaxPool 1-D, dilated stride-2 "
                   "Conv1d, AveragePool 1-D, Flatten, Gemm.", seed=10,
                   must_have=["Conv", "MaxPool", "AveragePool", "Gemm"])

    fx.helper_model("helper_typed_init", helper_typed_init(11), (2, 2, 6, 6),
                    "Conv and Gemm initializers in typed float_data (no raw_data); Reshape shape "
                    "initializer [0, -1] in int64_data (0 = copy that dimension).", seed=11,
                    must_have=["Conv", "Gemm", "Reshape"])
    fx.helper_model("helper_autopad", helper_autopad(12), (2, 2, 8, 8),
                    "Conv auto_pad=SAME_UPPER (k3 s2 on 8x8, extra pad at end), Conv "
                    "auto_pad=SAME_LOWER (k2 s1, pad at start, no bias), MaxPool auto_pad="
                    "SAME_UPPER (k3 s2).", seed=12, must_have=["Conv", "MaxPool"])
    fx.helper_model("helper_external", helper_external(13), (2, 3, 8, 8),
                    "Conv-Relu-GlobalAveragePool-Flatten-Gemm(transB=1); all initializers in "
                    "external data file helper_external.onnx.data (one file, size_threshold=0).",
                    seed=13, save=save_external, extra_files=["helper_external.onnx.data"])
    fx.helper_model("helper_pad", helper_pad(16), (2, 2, 5, 5),
                    "Pad with pads as int64 initializers: constant (value 0.5 as input, "
                    "asymmetric), reflect, edge.", seed=16, must_have=["Pad"])
    fx.helper_model("helper_identity_dropout", helper_identity_dropout(17), (3, 6),
                    "Dropout in inference mode (ratio as input) and Identity nodes, one of them on "
                    "an initializer (Identity(W) feeding MatMul), the pattern the torch exporter "
                    "emits for deduplicated equal initializers (seen in torchvision densenet121 "
                    "and efficientnet_b0 exports).", seed=17,
                    must_have=["Dropout", "Identity", "Gemm", "MatMul"])
    fx.helper_model("helper_gemm_flags", helper_gemm_flags(14), (3, 6),
                    "Gemm transA=0 transB=1 alpha=0.5 beta=2.0, C of shape [out] broadcast.",
                    seed=14, must_have=["Gemm"])
    fx.helper_model("helper_matmul", helper_matmul(15), (3, 6),
                    "MatMul with a 2-D [in, out] weight, then Add of a [out] bias.", seed=15,
                    must_have=["MatMul", "Add"])

    ext = onnx.load(fx.path("helper_external.onnx"), load_external_data=False)
    assert all(t.data_location == TensorProto.EXTERNAL for t in ext.graph.initializer)

    write_errors(fx)
    fx.write_manifest()

    print(f"\n{'name':<24} {'bytes':>8} {'max|out|':>9} {'|ort-torch|':>11}  ops")
    total = 0
    for m in fx.models:
        total += m["_size"]
        d = "-" if m["_torch_diff"] is None else f"{m['_torch_diff']:.1e}"
        ops = " ".join(m["ops"])
        print(f"{m['name']:<24} {m['_size']:>8} {m['_max_abs']:>9.4g} {d:>11}  {ops}")
    print(f"\n{len(fx.models)} models ({total} bytes of ONNX), {len(fx.errors)} error fixtures "
          f"-> {os.path.relpath(args.out)}")


if __name__ == "__main__":
    sys.exit(main())
