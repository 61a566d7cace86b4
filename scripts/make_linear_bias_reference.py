#!/usr/bin/env python3
"""Zennit reference relevance for dense layers exported as MatMul + Add (issue 14, item 3).

A transformer's ``nn.Linear`` acts on a 3-D input ``[batch, tokens, features]``; both PyTorch
exporters write it as ``MatMul`` + a separate bias ``Add`` (only 2-D inputs become ``Gemm``).
Prism must give the bias its part in every rule, as Zennit does for ``nn.Linear``. This script
builds a small token MLP (Linear with bias, Linear without bias, a final Linear on the flattened
tokens), exports it with both exporters, and writes Zennit's float64 relevance for LRP-ε,
LRP-αβ (α=2, β=1), LRP-γ (γ=0.25) and LRP-z⁺ on every Linear (activations: gradient).

Writes tests/fixtures/linear_bias/: token_mlp.{legacy,dynamo}.onnx, input.npy (float32),
``<rule>.npy`` (float64 relevance w.r.t. the input, target classes in manifest.json) and
manifest.json. Deterministic. Run from the repository root:
    /root/anchors/bin/python scripts/make_linear_bias_reference.py
Needs torch, zennit 1.0, onnx, onnxruntime, onnxscript (the dynamo exporter).
"""

import json
import pathlib
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import zennit
from zennit.composites import LayerMapComposite
from zennit.rules import AlphaBeta, Epsilon, Gamma, ZPlus
from zennit.attribution import Gradient

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "linear_bias"
TOKENS, FEATURES, CLASSES = 4, 6, 3
TARGETS = [0, 2]


class TokenMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(FEATURES, 8)
        self.fc2 = nn.Linear(8, 8)
        self.fc3 = nn.Linear(8, 5, bias=False)
        self.act = nn.ReLU()
        self.head = nn.Linear(TOKENS * 5, CLASSES)

    def forward(self, x):
        h = self.act(self.fc1(x))
        h = self.act(self.fc2(h))
        h = self.act(self.fc3(h))
        return self.head(torch.flatten(h, 1))


RULES = {
    "epsilon": lambda: Epsilon(epsilon=1e-6),
    "alpha-beta": lambda: AlphaBeta(alpha=2.0, beta=1.0),
    "gamma": lambda: Gamma(gamma=0.25),
    "zplus": lambda: ZPlus(),
}


def split_bias_pairs(rng):
    """Conv and Gemm with their bias in the node vs. in a separate Add (constant first or second):
    Prism must explain each pair identically."""
    from onnx import TensorProto, helper, numpy_helper

    def model(nodes, inits, x_shape, name):
        g = helper.make_graph(
            nodes, name,
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *x_shape[1:]])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
            [numpy_helper.from_array(v, k) for k, v in inits.items()],
        )
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
        onnx.checker.check_model(m)
        return m

    w = (rng.standard_normal((4, 2, 3, 3)) * 0.5).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    hw = (rng.standard_normal((3, 4 * 3 * 3)) * 0.3).astype(np.float32)
    hb = rng.standard_normal(3).astype(np.float32)
    head = [helper.make_node("Relu", ["c"], ["r"]), helper.make_node("Flatten", ["r"], ["f"])]
    pairs = {
        "conv_bias": ([helper.make_node("Conv", ["x", "w", "b"], ["c"])] + head
                      + [helper.make_node("Gemm", ["f", "hw", "hb"], ["y"], transB=1)],
                      {"w": w, "b": b, "hw": hw, "hb": hb}),
        "conv_add": ([helper.make_node("Conv", ["x", "w"], ["c0"]),
                      helper.make_node("Add", ["b4", "c0"], ["c"])] + head
                     + [helper.make_node("Gemm", ["f", "hw"], ["g"], transB=1),
                        helper.make_node("Add", ["g", "hb2"], ["y"])],
                     {"w": w, "b4": b.reshape(1, 4, 1, 1), "hw": hw, "hb2": hb.reshape(1, 3)}),
    }
    x = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    np.save(OUT / "conv_input.npy", x)
    outs = {}
    for name, (nodes, inits) in pairs.items():
        m = model(nodes, inits, x.shape, name)
        (OUT / f"{name}.onnx").write_bytes(m.SerializeToString())
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        outs[name] = sess.run(None, {"x": x})[0]
    assert np.abs(outs["conv_bias"] - outs["conv_add"]).max() < 1e-5


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = TokenMLP().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, TOKENS, FEATURES)).astype(np.float32)
    OUT.mkdir(parents=True, exist_ok=True)
    np.save(OUT / "input.npy", x)
    split_bias_pairs(rng)

    files = {}
    for exporter in ("legacy", "dynamo"):
        path = OUT / f"token_mlp.{exporter}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if exporter == "legacy":
                torch.onnx.export(
                    model, (torch.from_numpy(x),), str(path), dynamo=False, opset_version=17,
                    input_names=["x"], output_names=["logits"],
                    dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
                )
            else:
                batch = torch.export.Dim("batch", min=1, max=1024)
                prog = torch.onnx.export(
                    model, (torch.from_numpy(x),), dynamo=True, opset_version=18,
                    input_names=["x"], output_names=["logits"],
                    dynamic_shapes=({0: batch},),
                )
                prog.save(str(path))
        m = onnx.load(str(path))
        onnx.checker.check_model(m)
        ops = sorted({n.op_type for n in m.graph.node})
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        y = sess.run(None, {m.graph.input[0].name: x})[0]
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        assert np.abs(y - ref).max() < 1e-5, (exporter, np.abs(y - ref).max())
        assert "MatMul" in ops and "Add" in ops, (exporter, ops)
        files[exporter] = {"onnx": path.name, "ops": ops}
        print(f"{exporter}: {ops}")

    m64 = TokenMLP().eval()
    m64.load_state_dict(model.state_dict())
    m64 = m64.double()
    x64 = torch.from_numpy(x).double()
    one_hot = torch.zeros(2, CLASSES, dtype=torch.float64)
    for i, t in enumerate(TARGETS):
        one_hot[i, t] = 1.0
    cases = []
    for name, rule in RULES.items():
        composite = LayerMapComposite(layer_map=[(nn.Linear, rule())])
        with Gradient(model=m64, composite=composite) as attributor:
            _, rel = attributor(x64.clone().requires_grad_(True), one_hot)
        rel = rel.detach().numpy()
        np.save(OUT / f"{name}.npy", rel)
        cases.append({"rule": name, "file": f"{name}.npy",
                      "relevance_sum": [float(r.sum()) for r in rel]})
        print(f"{name}: relevance sums {[round(float(r.sum()), 6) for r in rel]}")
    manifest = {
        "zennit_version": zennit.__version__ if hasattr(zennit, "__version__") else "1.0",
        "torch_version": torch.__version__,
        "targets": TARGETS,
        "input": "input.npy",
        "exports": files,
        "rule_params": {"epsilon": 1e-6, "alpha": 2.0, "beta": 1.0, "gamma": 0.25},
        "cases": cases,
    }
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
