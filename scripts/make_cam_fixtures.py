#!/usr/bin/env python3
"""pytorch-grad-cam reference fixtures for Prism's class activation maps (tests/fixtures/cam/).

Purpose
    `cargo test -p prism-attribution --test cam_reference` compares Prism's grad-cam,
    grad-cam-plus-plus, xgrad-cam, layer-cam, eigen-cam, score-cam and ablation-cam with what
    pytorch-grad-cam (pip `grad-cam`) 1.5 computes on the same two small networks, at named
    layers and at Prism's default layer (the deepest convolution).

How to run (from the repository root; needs torch, grad-cam 1.5, onnx, onnxscript, onnxruntime,
numpy)
    /root/anchors/bin/python scripts/make_cam_fixtures.py [--out tests/fixtures/cam]

    Deterministic (fixed seeds, one thread); about 10 s. The output folder belongs to this
    script: files in it that this run did not write are deleted.

What it writes (under --out; about 300 KB)
    cam_vgg.onnx     legacy exporter (dynamo=False), opset 17: Conv(3>8)-ReLU-Conv(8>8)-ReLU-
                     MaxPool2-Conv(8>16)-ReLU-MaxPool2-Flatten-Linear(16*5*6>6); input 3 x 20 x 24
                     (H != W, and maps of 10 x 12 and 5 x 6 that do not divide the input evenly
                     after pooling).
    cam_resnet.onnx  the dynamo exporter (dynamo=True; it folds BatchNormalization into the
                     Conv before it too, and puts the 1x1 downsample after the block's conv2):
                     Conv(3>8)-BN-ReLU, a basic block (8>8), a basic block (8>16, stride 2, 1x1
                     conv + BN downsample), AdaptiveAvgPool(1)-Flatten-Linear(16>6). Each ReLU is
                     its own module (torchvision's BasicBlock reuses one ReLU module, which makes
                     pytorch-grad-cam record the wrong call).
    <model>.input.npy                float32, 3 samples.
    <model>__<layer>__<method>__<target>.npy
                     pytorch-grad-cam's map, float32, N x H x W; <target> is `labels` (the classes
                     in manifest "labels") or `predicted` (targets=None).
    manifest.json    versions; per model the layers: {key, module, onnx node (found by comparing
                     every node's output with the module's output under onnxruntime), default
                     (whether it is Prism's default layer)}; the files; eigen-cam notes.

Conventions
    All ReLUs are non-in-place (an in-place ReLU after the target layer makes pytorch-grad-cam's
    saved activation the post-ReLU tensor). Targets are ClassifierOutputTarget (the logit).
    eigen-cam: the reference is pytorch-grad-cam's EigenCAM with the projection of its
    Seg-Eigen-CAM (`get_2d_projection_with_sign_correction`): the sign of a singular vector is
    LAPACK's choice, and Prism orients it by that rule; the manifest notes, per case, whether
    plain EigenCAM gave the same map. Score-CAM uses batch_size 16, Ablation-CAM its default 32.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import json
import os
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn

from pytorch_grad_cam import (AblationCAM, EigenCAM, GradCAM, GradCAMPlusPlus, LayerCAM,
                              ScoreCAM, XGradCAM)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_with_sign_correction

OPSET = 17
N = 3
LABELS = [1, 3, 0]


class SignedEigenCAM(EigenCAM):
    """EigenCAM with Seg-Eigen-CAM's sign correction (the package's own projection)."""

    def get_cam_image(self, input_tensor, target_layer, target_category, activations, grads,
                      eigen_smooth):
        return get_2d_projection_with_sign_correction(activations)


METHODS = {
    "grad-cam": GradCAM,
    "grad-cam-plus-plus": GradCAMPlusPlus,
    "xgrad-cam": XGradCAM,
    "layer-cam": LayerCAM,
    "eigen-cam": SignedEigenCAM,
    "score-cam": ScoreCAM,
    "ablation-cam": AblationCAM,
}


class Vgg(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Linear(16 * 5 * 6, 6)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu2 = nn.ReLU()
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(y + (x if self.down is None else self.down(x)))


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
                                  nn.ReLU())
        self.block1 = Block(8, 8, 1)
        self.block2 = Block(8, 16, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 6)

    def forward(self, x):
        x = self.block2(self.block1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def init(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
    return model.eval()


def export(model, x, dynamo):
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            prog = torch.onnx.export(model, (torch.from_numpy(x),), dynamo=True,
                                     opset_version=18, input_names=["input"],
                                     output_names=["output"],
                                     dynamic_shapes=({0: torch.export.Dim("batch")},))
            prog.save(buf)
        else:
            torch.onnx.export(model, (torch.from_numpy(x),), buf, dynamo=False,
                              export_params=True, opset_version=OPSET, do_constant_folding=True,
                              input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    proto = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(proto)
    return proto


def session(proto):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(proto.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])


def node_of(proto, x, activation):
    """The first ONNX node (graph order) whose first output equals the module's output."""
    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    names = []
    for node in probe.graph.node:
        if node.op_type in ("Constant", "Identity", "Reshape", "Shape"):
            continue
        names.append((node.name, node.output[0]))
        probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(node.output[0]))
    outs = session(probe).run([o for _, o in names], {"input": x})
    for (name, _), value in zip(names, outs):
        if value.shape == activation.shape and np.max(np.abs(value - activation)) <= 1e-5:
            return name
    raise SystemExit(f"no ONNX node computes the activation of shape {activation.shape}")


def module_output(model, module, x):
    got = {}

    def hook(_module, _inputs, output):
        got.setdefault("a", output.detach().numpy().copy())

    h = module.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.from_numpy(x))
    h.remove()
    return got["a"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="tests/fixtures/cam")
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    written = set()

    def save(name, array):
        np.save(os.path.join(args.out, name), array)
        written.add(name)

    manifest = {
        "versions": {p: importlib.metadata.version(p)
                     for p in ("torch", "grad-cam", "onnx", "onnxruntime", "numpy")},
        "labels": LABELS,
        "models": {},
    }
    rng = np.random.default_rng(7)
    specs = [
        ("cam_vgg", init(Vgg(), 1), (3, 20, 24), False,
         lambda m: [("conv3", m.features[5], True), ("relu2", m.features[3], False)]),
        ("cam_resnet", init(ResNet(), 2), (3, 16, 16), True,
         lambda m: [("block2_bn2", m.block2.bn2, True), ("block2_out", m.block2.relu2, False),
                    ("block1_bn2", m.block1.bn2, False)]),
    ]
    for name, model, shape, dynamo, layers in specs:
        x = rng.standard_normal((N, *shape)).astype(np.float32)
        proto = export(model, x, dynamo)
        with open(os.path.join(args.out, f"{name}.onnx"), "wb") as f:
            f.write(proto.SerializeToString())
        written.add(f"{name}.onnx")
        save(f"{name}.input.npy", x)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        got = session(proto).run(None, {"input": x})[0]
        assert np.max(np.abs(got - ref)) <= 1e-5, name
        entry = {"exporter": "dynamo" if dynamo else "legacy",
                 "ops": sorted({n.op_type for n in proto.graph.node}),
                 "predicted": [int(v) for v in ref.argmax(1)], "layers": []}
        for key, module, default in layers(model):
            act = module_output(model, module, x)
            node = node_of(proto, x, act)
            layer = {"key": key, "node": node, "default": default, "shape": list(act.shape),
                     "files": {}, "eigen_plain_equal": {}}
            for method, cls in METHODS.items():
                for tname, targets in (("labels", [ClassifierOutputTarget(c) for c in LABELS]),
                                       ("predicted", None)):
                    cam = cls(model=model, target_layers=[module])
                    if method == "score-cam":
                        cam.batch_size = 16
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        out = cam(input_tensor=torch.from_numpy(x), targets=targets)
                    fname = f"{name}__{key}__{method}__{tname}.npy"
                    save(fname, np.asarray(out, dtype=np.float32))
                    layer["files"][f"{method}__{tname}"] = fname
                    if method == "eigen-cam":
                        plain = EigenCAM(model=model, target_layers=[module])(
                            input_tensor=torch.from_numpy(x), targets=targets)
                        layer["eigen_plain_equal"][tname] = bool(
                            np.max(np.abs(plain - out)) <= 1e-6)
            entry["layers"].append(layer)
        manifest["models"][name] = entry
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    written.add("manifest.json")
    for stale in set(os.listdir(args.out)) - written:
        os.remove(os.path.join(args.out, stale))
    print(f"wrote {len(written)} files to {args.out}")


if __name__ == "__main__":
    main()
