#!/usr/bin/env python3
"""zennit-crp reference fixtures for Concept Relevance Propagation (tests/fixtures/crp/).

Purpose
    Rust tests of Prism's CRP (conditional relevance: the LRP backward pass with the relevance at
    chosen layers masked to chosen channels) load two small ONNX models and compare with what
    zennit-crp 0.6.0 (package `crp`, run on Zennit 1.0) computes on the same networks: conditional
    heatmaps, relevances and activations recorded at layers, and the reference-sample selection
    (relevance and activation maximisation) of crp's FeatureVisualization. Every crp result is
    also recomputed with an independent implementation (Zennit composite plus our own
    out-of-place channel masks) and must agree to 1e-12 (float64) before it is written.

How to run (from the repository root; needs torch, torchvision, zennit 1.0, zennit-crp 0.6.0,
onnx, onnxruntime, numpy)
    /root/anchors/bin/python scripts/make_crp_fixtures.py [--out tests/fixtures/crp]

    zennit-crp 0.6.0 pins zennit<=0.4.6 in its metadata but is installed beside Zennit 1.0 on
    purpose; see "quirks" in the manifest for what that combination does. Deterministic: torch and onnxruntime on one thread, weights and inputs from
    fixed seeds (re-running writes byte-identical files). About 20 s. The output folder belongs to
    this script: files in it that this run did not write are deleted.

What it writes (under --out, default tests/fixtures/crp/; about 1.3 MB)
    <model>.onnx, <model>.input.npy
        crp_vgg and crp_resnet, legacy exporter (dynamo=False), opset 17, constant folding (the
        exporter folds BatchNorm into the preceding Conv), dynamic batch axis "batch"; float32
        input, 2 samples, 3 x 16 x 16.
    <model>__<case>__<dtype>.npy
        the FULL input relevance (crp's data.grad, rows x 3 x 16 x 16, not summed over channels),
        one row per (sample, condition) after crp's broadcasting (see manifest "row_map").
    <model>__<case>__<dtype>__rec__<module>__{relevance,activation}.npy
        attr.relevances[module] / attr.activations[module] as crp returns them (rows x C x H x W,
        rows x F for Linear). Under exclude_parallel=True crp returns 2x the relevance at the
        conditioned layer (manifest "relevance_factor"; see quirks).
    crp_refsel.data.npy, crp_refsel.labels.npy
        the 24-image data set (float32 N(0,1), 3 x 16 x 16; labels in 0..4) for reference-sample
        selection, run in float64.
    crp_refsel__<module>__<RelMax|ActMax>__{d_c_sorted,rel_c_sorted,rf_c_sorted}.npy
        FeatureVisualization's maximisation results (top samples x channels): sample indices,
        normalised values, argmax position (flat H*W index) of the channel map.
    manifest.json
        versions, conventions, models (ONNX node of every CRP layer, verified numerically),
        cases (conditions with ONNX-node and module keys, exclude_parallel, rows, files,
        prediction and heatmap sum per row, recorded channel sums), case-c skip-path fractions,
        refsel settings and quirks.

Models (random He-normal weights from fixed seeds, eval mode, in-place ReLUs turned off)
    crp_vgg     Conv(3>8)-BN-ReLU-Conv(8>8)-BN-ReLU-MaxPool2-Conv(8>16)-BN-ReLU-MaxPool2-Flatten-
                Linear(256>16)-ReLU-Linear(16>5); canonizer SequentialMergeBatchNorm
    crp_resnet  Conv(3>8)-BN-ReLU, torchvision BasicBlock(8>8), BasicBlock(8>16, stride 2, 1x1
                conv+BN downsample), AdaptiveAvgPool(1)-Flatten-Linear(16>5); canonizer
                ResNetCanonizer (BN merge + residual add as a zennit Sum module)
    Convs before a BN have no bias; BN has eps=0 and dyadic statistics (running_var in {1/4, 1, 4},
    weight in {1/2, 1}, running_mean and bias multiples of 1/16), so the exporter's float32
    fold and Zennit's MergeBatchNorm give bit-identical weights (asserted): the float64 references
    use exactly the float32 weights stored in the .onnx.

Composite: zennit EpsilonPlusFlat (epsilon 1e-6, stabilizer 1e-6) with the canonizers above;
crp CondAttribution(model) with ChannelConcept masks; relevance initialised with the logit at the
target (crp's relevance_init).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.metadata
import io
import json
import os
import re
import sys
import tempfile
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
from onnx import TensorProto, helper
from torchvision.models.resnet import BasicBlock

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import make_fixtures as mf  # noqa: E402  (one thread, exporter warnings off, init_weights)

from crp.attribution import CondAttribution  # noqa: E402
from crp.concepts import ChannelConcept  # noqa: E402
from crp.helper import load_maximization  # noqa: E402
from crp.visualization import FeatureVisualization  # noqa: E402
from zennit.canonizers import SequentialMergeBatchNorm  # noqa: E402
from zennit.composites import EpsilonPlusFlat  # noqa: E402
from zennit.torchvision import ResNetCanonizer  # noqa: E402

torch.set_num_threads(1)
warnings.filterwarnings("ignore", category=UserWarning)

OPSET = 17
EPS = 1e-6
STAB = 1e-6
TARGETS = [1, 3]
DTYPES = {"float64": torch.float64, "float32": torch.float32}


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


def bn(c):
    return nn.BatchNorm2d(c, eps=0.0)


class CrpVGG(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False), bn(8), nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1, bias=False), bn(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1, bias=False), bn(16), nn.ReLU(), nn.MaxPool2d(2))
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(nn.Linear(16 * 4 * 4, 16), nn.ReLU(), nn.Linear(16, 5))

    def forward(self, x):
        return self.classifier(self.flatten(self.features(x)))


class CrpResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = bn(8)
        self.relu = nn.ReLU()
        down = nn.Sequential(nn.Conv2d(8, 16, 1, stride=2, bias=False), bn(16))
        self.layer = nn.Sequential(BasicBlock(8, 8, norm_layer=bn),
                                   BasicBlock(8, 16, stride=2, downsample=down, norm_layer=bn))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = self.layer(self.relu(self.bn1(self.conv1(x))))
        return self.fc(self.flatten(self.avgpool(x)))


def dyadic_bn(model, seed):
    """Non-trivial BN affine parameters and running statistics whose fold is exact in float32."""
    g = np.random.default_rng(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.from_numpy(g.choice([0.5, 1.0], c)))
                m.bias.copy_(torch.from_numpy(g.integers(-8, 9, c) / 16.0))
                m.running_mean.copy_(torch.from_numpy(g.integers(-8, 9, c) / 16.0))
                m.running_var.copy_(torch.from_numpy(g.choice([0.25, 1.0, 4.0], c)))


MODELS = {
    # name: (seed, constructor, canonizer factory, canonizer label, layers)
    "crp_vgg": (31, CrpVGG, lambda: [SequentialMergeBatchNorm()], ["SequentialMergeBatchNorm"],
                ["features.0", "features.3", "features.7", "classifier.0"]),
    "crp_resnet": (32, CrpResNet, lambda: [ResNetCanonizer()], ["ResNetCanonizer"],
                   ["conv1", "layer.0.conv1", "layer.0.conv2", "layer.0", "layer.1.conv2",
                    "layer.1.downsample.0", "layer.1", "fc"]),
}


def build(name):
    seed, ctor, *_ = MODELS[name]
    torch.manual_seed(seed)
    model = ctor().eval()
    mf.init_weights(model, seed + 500)
    dyadic_bn(model, seed + 1000)
    for m in model.modules():
        if hasattr(m, "inplace"):
            m.inplace = False  # torchvision's BasicBlock ReLU is in-place; the forward is the same
    x = mf.make_input((2, 3, 16, 16), seed + 2000)
    return model, x


def composite_for(name):
    return EpsilonPlusFlat(epsilon=EPS, stabilizer=STAB, canonizers=MODELS[name][2]())


@contextlib.contextmanager
def canonized(name, model):
    handles = []
    try:
        for c in MODELS[name][2]():
            handles += c.apply(model)
        yield model
    finally:
        for h in reversed(handles):
            h.remove()


# --------------------------------------------------------------------------------------------
# ONNX export and the layer -> node map
# --------------------------------------------------------------------------------------------


def ort_session(model_bytes):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def export(name, model, x, out):
    path = os.path.join(out, f"{name}.onnx")
    buf = io.BytesIO()
    torch.onnx.export(model, (torch.from_numpy(x),), buf, dynamo=False, export_params=True,
                      opset_version=OPSET, do_constant_folding=True, input_names=["input"],
                      output_names=["output"],
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    proto = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(proto, full_check=True)
    with open(path, "wb") as f:
        f.write(buf.getvalue())
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    got = ort_session(buf.getvalue()).run(None, {"input": x})[0]
    diff = float(np.max(np.abs(got - ref)))
    assert diff <= 1e-5, f"{name}: onnxruntime differs from torch by {diff}"
    ops = sorted({n.op_type for n in proto.graph.node})
    assert "BatchNormalization" not in ops, f"{name}: exporter kept BatchNormalization"
    return proto, diff, ops


def module_of_node(node_name):
    """The torch module a legacy-exported node belongs to (make_reference's reading of the
    exporter's scope path)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from make_reference import onnx_module_name  # noqa: E402  (torch, zennit: already loaded)

    return onnx_module_name(node_name)


def layer_nodes(name, model, proto, x):
    """For every CRP layer (module name), the ONNX node whose output is the module's output on
    the canonized model: the last node (graph order is topological) inside the module's scope.
    Verified: onnxruntime's value of that node output equals torch's (forward hook on the
    canonized float32 model) to 1e-5; the merged Conv/Gemm weights equal the ONNX initializers
    bit for bit."""
    layers = MODELS[name][4]
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    nodes = {}
    for layer in layers:
        cands = [n for n in proto.graph.node
                 if module_of_node(n.name) == layer
                 or module_of_node(n.name).startswith(layer + ".")]
        assert cands, (name, layer)
        nodes[layer] = cands[-1]
    # onnxruntime intermediate values
    m = copy.deepcopy(proto)
    for node in nodes.values():
        m.graph.output.append(
            helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, None))
    sess = ort_session(m.SerializeToString())
    names = [o.name for o in sess.get_outputs()]
    vals = dict(zip(names, sess.run(None, {"input": x})))
    # torch values on the canonized model
    captured = {}
    mods = dict(model.named_modules())
    result = {}
    with canonized(name, model):
        hs = [mods[layer].register_forward_hook(
            lambda mod, inp, out, layer=layer: captured.__setitem__(layer, out.detach().numpy()))
            for layer in layers]
        with torch.no_grad():
            model(torch.from_numpy(x))
        for h in hs:
            h.remove()
        for layer in layers:
            node = nodes[layer]
            diff = float(np.max(np.abs(vals[node.output[0]] - captured[layer])))
            assert diff <= 1e-5, (name, layer, node.name, diff)
            mod = mods[layer]
            if isinstance(mod, (nn.Conv2d, nn.Linear)):
                assert node.op_type in ("Conv", "Gemm"), (layer, node.op_type)
                w = inits[node.input[1]]
                b = inits[node.input[2]]
                assert np.array_equal(w, mod.weight.detach().numpy()), (name, layer, "weight")
                assert np.array_equal(b, mod.bias.detach().numpy()), (name, layer, "bias")
            result[layer] = {"onnx_node": node.name, "op_type": node.op_type,
                             "onnx_output": node.output[0],
                             "output_shape": list(captured[layer].shape[1:]),
                             "ort_vs_torch_max_abs": diff}
    return result


# --------------------------------------------------------------------------------------------
# CRP: zennit-crp, and an independent re-computation
# --------------------------------------------------------------------------------------------


class FullHeatmapAttribution(CondAttribution):
    """crp's CondAttribution, but the heatmap is the full data.grad (rows x C x H x W) of the
    broadcast input instead of its channel sum."""

    def heatmap_modifier(self, data, on_device=None):
        return data.grad.detach().clone()


def broadcast_rows(n_data, n_cond):
    """crp's broadcast: equal lengths pair up; otherwise data is repeat_interleave'd over the
    conditions and the condition list repeated over the data: row = sample * n_cond + cond."""
    if n_data == n_cond:
        return [(i, i) for i in range(n_data)]
    return [(s, c) for s in range(n_data) for c in range(n_cond)]


def run_crp(attribution, composite, x, conditions, ep, record):
    data = x.clone().requires_grad_(True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # crp warns about unknown layer names: make it fatal
        return attribution(data, conditions, composite, record_layer=list(record),
                           exclude_parallel=ep)


class _RowMask(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, mask):
        ctx.save_for_backward(mask)
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        return grad * mask, None


def own_crp(model, composite, x, conditions, ep, record):
    """Independent CRP: Zennit composite, then forward hooks (registered after the composite,
    so they act downstream of Zennit's output identity) that multiply the gradient of every
    conditioned module output by a 0/1 channel mask per row, out of place. exclude_parallel:
    relevance is taken at the first listed layer with autograd.grad and only propagated on from
    there (layer by layer). Returns heatmap, {layer: relevance}, {layer: activation}, pred;
    the relevance at a conditioned layer is the masked one; for exclude_parallel only layers
    strictly above the first or below the last conditioned layer (or conditioned) are returned."""
    rows = broadcast_rows(len(x), len(conditions))
    data = x[[s for s, _ in rows]].clone().requires_grad_(True)
    conds = [conditions[c] for _, c in rows]
    cond_layers = []
    for cond in conds:
        for k in cond:
            if k != "y" and k not in cond_layers:
                cond_layers.append(k)
    mods = dict(model.named_modules())
    captured, order = {}, []

    def hook(layer):
        def fn(mod, inp, out):
            captured[layer] = out
            order.append(layer)
            if layer not in cond_layers:
                return None
            mask = torch.zeros_like(out)
            for r, cond in enumerate(conds):
                if layer in cond:
                    mask[r, cond[layer]] = 1
                else:
                    mask[r] = 1
            return _RowMask.apply(out, mask)
        return fn

    with composite.context(model) as modified:
        hs = [mods[layer].register_forward_hook(hook(layer))
              for layer in dict.fromkeys(list(cond_layers) + list(record))]
        pred = modified(data)
        init = torch.zeros_like(pred)
        for r, cond in enumerate(conds):
            init[r, cond["y"]] = pred[r, cond["y"]].detach()
        rel = {}
        if not ep or not cond_layers:
            grads = torch.autograd.grad(pred, [data] + [captured[r] for r in record], init,
                                        allow_unused=True)
            heat = grads[0]
            rel = dict(zip(record, grads[1:]))
        else:
            pos = {layer: order.index(layer) for layer in order}
            first, last = cond_layers[0], cond_layers[-1]
            above = [r for r in record if pos[r] > pos[first]]
            t, g = pred, init
            for i, layer in enumerate(cond_layers):
                ins = [captured[layer]] + ([captured[r] for r in above] if i == 0 else [])
                gs = torch.autograd.grad(t, ins, g, retain_graph=True)
                if i == 0:
                    rel.update(zip(above, gs[1:]))
                rel[layer] = gs[0]
                t, g = captured[layer], gs[0]
            below = [r for r in record if pos[r] < pos[last]]
            gs = torch.autograd.grad(t, [data] + [captured[r] for r in below], g)
            heat = gs[0]
            rel.update(zip(below, gs[1:]))
        for h in hs:
            h.remove()
    acts = {r: captured[r].detach() for r in record}
    return heat.detach(), {k: v.detach() for k, v in rel.items() if v is not None}, acts, \
        pred.detach(), rows


def out_of_place_mask(batch_id, concept_ids, layer_name=None):
    """ChannelConcept.mask's effect, but returning a new tensor instead of writing in place."""
    def fn(grad):
        mask = torch.ones_like(grad)
        mask[batch_id] = 0
        mask[batch_id, concept_ids] = 1
        return grad * mask
    return fn


def max_rel(a, b):
    a, b = (np.asarray(t.detach() if isinstance(t, torch.Tensor) else t, dtype=np.float64)
            for t in (a, b))
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------


def cases_for(name):
    """[(case, sample indices, conditions (module keys), exclude_parallel, record, dtypes)]."""
    t0, t1 = TARGETS
    if name == "crp_vgg":
        mid, late, early = "features.3", "features.7", "features.3"
        rec = ["features.3", "features.7", "classifier.0"]
    else:
        mid = "layer.0.conv1"
        rec = ["layer.0.conv2", "layer.1", "fc"]
    c = []
    for ep in (True, False):
        tag = "ep1" if ep else "ep0"
        c.append((f"a-single-{tag}", [0, 1], [{"y": [t0], mid: [2, 5]}, {"y": [t1], mid: [2, 5]}],
                  ep, [], ["float64", "float32"] if ep else ["float64"]))
    three = [{"y": [t0], mid: [0]}, {"y": [t0], mid: [1]}, {"y": [t0], mid: [2, 3]}]
    for ep in (False, True):
        tag = "ep1" if ep else "ep0"
        c.append((f"b-multi1-{tag}", [0], three, ep, [], ["float64"]))
        c.append((f"b-multi2-{tag}", [0, 1], three, ep, [], ["float64"]))
    if name == "crp_resnet":
        for layer, label, ch in (("layer.1.conv2", "c-conv2", [4, 9]),
                                 ("layer.1", "c-block", [4, 9])):
            for ep in (True, False):
                tag = "ep1" if ep else "ep0"
                c.append((f"{label}-{tag}", [0, 1],
                          [{"y": [t0], layer: ch}, {"y": [t1], layer: ch}], ep, [], ["float64"]))
    if name == "crp_vgg":
        for ep in (True, False):
            tag = "ep1" if ep else "ep0"
            c.append((f"d-twolayer-{tag}", [0, 1],
                      [{"y": [t0], late: [1, 6], early: [0, 2]},
                       {"y": [t1], late: [1, 6], early: [0, 2]}], ep, [], ["float64"]))
    cl = "features.3" if name == "crp_vgg" else "layer.1"
    c.append(("e-rec-nocond", [0, 1], [{"y": [t0]}, {"y": [t1]}], True, rec, ["float64"]))
    for ep in (True, False):
        tag = "ep1" if ep else "ep0"
        c.append((f"e-rec-cond-{tag}", [0, 1], [{"y": [t0], cl: [3]}, {"y": [t1], cl: [3]}],
                  ep, rec, ["float64"]))
    return c


def expected_relevance_factor(layer, conditions, ep):
    """crp (torch >= 2: autograd.grad also fills .grad of retain_grad tensors) accumulates the
    relevance of a conditioned layer twice under exclude_parallel=True: once from the partial
    autograd.grad, once as the root of the following backward."""
    in_cond = any(layer in c for c in conditions)
    return 2.0 if ep and in_cond else 1.0


# --------------------------------------------------------------------------------------------
# Reference-sample selection
# --------------------------------------------------------------------------------------------


REFSEL_LAYERS = ["features.3", "features.7"]
REFSEL_N, REFSEL_BATCH = 24, 8


class ListDataset:
    def __init__(self, data, labels):
        self.data, self.labels = data, labels

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return self.data[i], int(self.labels[i])


def run_refsel(model64, composite_factory, data, labels, checkpoint):
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        attribution = CondAttribution(model64)
        ds = ListDataset(torch.from_numpy(data).double(), labels)
        fv = FeatureVisualization(attribution, ds, {l: ChannelConcept() for l in REFSEL_LAYERS},
                                  preprocess_fn=None, path=tmp)
        saved = fv.run(composite_factory(), 0, REFSEL_N, batch_size=REFSEL_BATCH,
                       checkpoint=checkpoint)
        res = {}
        for mode, mx in (("RelMax", fv.RelMax), ("ActMax", fv.ActMax)):
            for layer in REFSEL_LAYERS:
                d, v, rf = load_maximization(mx.PATH, layer)
                res[(layer, mode)] = (np.array(d), np.array(v), np.array(rf))
        files = sorted({os.path.relpath(dp, tmp) for dp, _, fs in os.walk(tmp) if fs})
        stats_error = None
        try:
            fv.compute_stats(0, REFSEL_LAYERS[0], "relevance")
        except Exception as err:  # np.int (removed in numpy 1.24) in crp.helper.load_stat_targets
            stats_error = f"{type(err).__name__}: {err}"
    return res, files, saved, stats_error


def own_refsel(model64, name, data, labels):
    """Independent maximisation: per sample, relevance (init = logit at the label) and
    activation at each layer; channel score = sum over space, divided by the sum over channels
    of |score| (+1e-10); top samples per channel by score (descending)."""
    x = torch.from_numpy(data).double()
    comp = composite_for(name)
    conds = [{"y": [int(t)]} for t in labels]
    heat, rel, act, _, _ = own_crp(model64, comp, x, conds, False, REFSEL_LAYERS)
    out = {}
    for layer in REFSEL_LAYERS:
        for mode, t in (("RelMax", rel[layer]), ("ActMax", act[layer])):
            flat = t.reshape(t.shape[0], t.shape[1], -1)
            s = flat.sum(-1)
            s = s / (s.abs().sum(-1, keepdim=True) + 1e-10)
            out[(layer, mode)] = (s.numpy(), flat.argmax(-1).numpy())
    return out


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "crp"))
    args = ap.parse_args()
    out = args.out
    os.makedirs(out, exist_ok=True)
    written = set()

    def save(fname, arr):
        np.save(os.path.join(out, fname), arr)
        written.add(fname)
        return fname

    models_json, cases_json, checks = {}, [], {}
    quirk_measures = {}
    skip_fraction = {}

    for name in MODELS:
        model32, x_np = build(name)
        proto, ort_diff, ops = export(name, model32, x_np, out)
        written.add(f"{name}.onnx")
        save(f"{name}.input.npy", x_np)
        nodes = layer_nodes(name, model32, proto, x_np)
        node_of = {layer: v["onnx_node"] for layer, v in nodes.items()}
        models_json[name] = {
            "onnx": f"{name}.onnx", "input": f"{name}.input.npy",
            "input_shape": list(x_np.shape), "targets": TARGETS, "ops": ops,
            "layers": {layer: {k: v[k] for k in ("onnx_node", "op_type", "onnx_output",
                                                  "output_shape")}
                       for layer, v in nodes.items()},
            "composite": {"name": "EpsilonPlusFlat", "epsilon": EPS, "stabilizer": STAB},
            "canonizers": MODELS[name][3],
        }
        checks[name] = {"onnxruntime_vs_torch_output_max_abs": ort_diff,
                        "layer_nodes_ort_vs_torch_max_abs": max(v["ort_vs_torch_max_abs"]
                                                                for v in nodes.values())}

        # fresh build: a removed Zennit MergeBatchNorm leaves the BN tensors as instance
        # attributes that shadow the buffers, so .double() after canonizing misses them
        model64 = build(name)[0].double()
        by_dtype = {"float64": model64, "float32": model32}
        attrs = {d: FullHeatmapAttribution(m) for d, m in by_dtype.items()}
        f64_heat = {}

        # linearity / full-mask sanity checks (float64)
        x64 = torch.from_numpy(x_np).double()
        comp = composite_for(name)
        full_layer = "features.3" if name == "crp_vgg" else "layer.0.conv1"
        free = run_crp(attrs["float64"], comp, x64, [{"y": [TARGETS[0]]}, {"y": [TARGETS[1]]}],
                       True, [])
        allc = run_crp(attrs["float64"], comp, x64,
                       [{"y": [t], full_layer: list(range(8))} for t in TARGETS], False, [])
        checks[name]["all_channels_mask_vs_unconditioned_max_rel"] = max_rel(allc.heatmap,
                                                                             free.heatmap)
        assert checks[name]["all_channels_mask_vs_unconditioned_max_rel"] == 0.0
        # a mask that returns a new tensor instead of scaling in place is ignored (see quirks)
        conds = [{"y": [t], full_layer: [2, 5]} for t in TARGETS]
        oop = attrs["float64"](x64.clone().requires_grad_(True), conds, comp,
                               mask_map=out_of_place_mask, exclude_parallel=False)
        inpl = run_crp(attrs["float64"], comp, x64, conds, False, [])
        checks[name]["out_of_place_mask_vs_unconditioned_max_rel"] = max_rel(oop.heatmap,
                                                                             free.heatmap)
        checks[name]["in_place_mask_vs_unconditioned_max_rel"] = max_rel(inpl.heatmap,
                                                                         free.heatmap)
        assert checks[name]["out_of_place_mask_vs_unconditioned_max_rel"] == 0.0
        assert checks[name]["in_place_mask_vs_unconditioned_max_rel"] > 0.1

        for case, samples, conds, ep, record, dtypes in cases_for(name):
            for dname in dtypes:
                model = by_dtype[dname]
                x = torch.from_numpy(x_np[samples]).to(DTYPES[dname])
                comp = composite_for(name)
                attr = run_crp(attrs[dname], comp, x, conds, ep, record)
                heat, rel, act, pred, rows = own_crp(model, composite_for(name), x, conds, ep,
                                                     record)
                tol = 1e-12 if dname == "float64" else 1e-5
                e_heat = max_rel(attr.heatmap, heat)
                e_pred = max_rel(attr.prediction, pred)
                assert e_heat <= tol and e_pred <= tol, (name, case, dname, e_heat, e_pred)
                base = f"{name}__{case}__{dname}"
                fname = save(base + ".npy", attr.heatmap.numpy())
                entry = {
                    "model": name, "case": case, "dtype": dname, "samples": samples,
                    "conditions": [{("y" if k == "y" else node_of[k]): v for k, v in c.items()}
                                   for c in conds],
                    "conditions_modules": conds,
                    "exclude_parallel": ep, "rows": len(rows),
                    "row_map": [[s, c] for s, c in rows],
                    "file": fname, "shape": list(attr.heatmap.shape),
                    "prediction": attr.prediction.tolist(),
                    "row_sums": attr.heatmap.sum(dim=(1, 2, 3)).tolist(),
                    "independent_check_max_rel": e_heat,
                }
                if dname == "float64":
                    f64_heat[case] = attr.heatmap.numpy()
                else:
                    entry["max_abs_diff_vs_float64_over_max_abs"] = max_rel(attr.heatmap,
                                                                            f64_heat[case])
                if record:
                    entry["record"] = {}
                    for layer in record:
                        r_crp, a_crp = attr.relevances[layer], attr.activations[layer]
                        factor = expected_relevance_factor(layer, conds, ep)
                        e_rel = max_rel(r_crp, factor * rel[layer])
                        e_act = max_rel(a_crp, act[layer])
                        assert e_rel <= tol and e_act <= tol, (name, case, layer, e_rel, e_act)
                        rb = f"{base}__rec__{layer}"
                        sumdims = tuple(range(2, r_crp.dim()))
                        entry["record"][node_of[layer]] = {
                            "module": layer,
                            "relevance": save(rb + "__relevance.npy", r_crp.numpy()),
                            "activation": save(rb + "__activation.npy", a_crp.numpy()),
                            "shape": list(r_crp.shape),
                            "relevance_factor": factor,
                            "relevance_channel_sums": (r_crp.sum(dim=sumdims) if sumdims
                                                       else r_crp).tolist(),
                            "activation_channel_sums": (a_crp.sum(dim=sumdims) if sumdims
                                                        else a_crp).tolist(),
                        }
                cases_json.append(entry)

        if name == "crp_resnet":
            # skip path: unconditioned split at layer.1's Sum, and 1 - T/F of the case-c heatmaps
            x64 = torch.from_numpy(x_np).double()
            _, rel, _, _, _ = own_crp(model64, composite_for(name), x64,
                                      [{"y": [t]} for t in TARGETS], False,
                                      ["layer.1.conv2", "layer.1.downsample.0"])
            r_res = rel["layer.1.conv2"].sum(dim=(1, 2, 3))
            r_skip = rel["layer.1.downsample.0"].sum(dim=(1, 2, 3))
            sums = {c["case"]: np.array(c["row_sums"]) for c in cases_json
                    if c["model"] == name and c["dtype"] == "float64"}
            skip_fraction = {
                "note": "block layer.1 (downsample skip); rows = samples 0, 1 with targets "
                        f"{TARGETS}. unconditioned_share_at_sum: share of the relevance entering "
                        "layer.1's Sum that goes to the skip (downsample) input, "
                        "R_skip / (R_skip + R_residual), no condition. c-conv2: condition "
                        "layer.1.conv2 channels [4, 9]; skip_fraction = 1 - rowsum(ep True) / "
                        "rowsum(ep False): the part of the exclude_parallel=False heatmap that "
                        "comes through the unmasked skip path. c-block: same for the block "
                        "output (no parallel path: 0)",
                "unconditioned_share_at_sum": (r_skip / (r_skip + r_res)).tolist(),
                "c-conv2": (1 - sums["c-conv2-ep1"] / sums["c-conv2-ep0"]).tolist(),
                "c-block": (1 - sums["c-block-ep1"] / sums["c-block-ep0"]).tolist(),
            }

    # ---------------- reference-sample selection ----------------
    rng = np.random.default_rng(33)
    rs_data = rng.standard_normal((REFSEL_N, 3, 16, 16)).astype(np.float32)
    rs_labels = rng.integers(0, 5, REFSEL_N).astype(np.int64)
    save("crp_refsel.data.npy", rs_data)
    save("crp_refsel.labels.npy", rs_labels)
    model32, _ = build("crp_vgg")
    model64 = model32.double()
    res, tmp_files, saved, stats_error = run_refsel(model64, lambda: composite_for("crp_vgg"),
                                                    rs_data, rs_labels, checkpoint=1)
    res500, _, _, _ = run_refsel(model64, lambda: composite_for("crp_vgg"), rs_data, rs_labels,
                                 checkpoint=500)
    ours = own_refsel(model64, "crp_vgg", rs_data, rs_labels)
    refsel_files = {}
    refsel_checks = {}
    for (layer, mode), (d, v, rf) in res.items():
        d5, v5, rf5 = res500[(layer, mode)]
        same_ckpt = bool(np.array_equal(d, d5) and np.array_equal(v, v5)
                         and np.array_equal(rf, rf5))
        score, argmax = ours[(layer, mode)]
        # crp's values = our normalised score of the listed sample; ranking descending
        exp_v = np.take_along_axis(score, d.astype(np.int64), 0)
        e_v = max_rel(v, exp_v)
        exp_rf = np.take_along_axis(argmax, d.astype(np.int64), 0)
        desc = bool(np.all(np.diff(v, axis=0) <= 0))
        top = np.sort(score, axis=0)[::-1][:len(v)]
        e_top = max_rel(v, top)
        assert e_v <= 1e-12 and e_top <= 1e-12 and desc, (layer, mode, e_v, e_top)
        assert np.array_equal(rf, exp_rf), (layer, mode, "rf")
        key = f"{layer}/{mode}"
        base = f"crp_refsel__{layer}__{mode}"
        refsel_files[key] = {
            "onnx_node": models_json["crp_vgg"]["layers"][layer]["onnx_node"],
            "d_c_sorted": save(base + "__d_c_sorted.npy", d),
            "rel_c_sorted": save(base + "__rel_c_sorted.npy", v),
            "rf_c_sorted": save(base + "__rf_c_sorted.npy", rf),
            "shape": list(d.shape), "dtypes": [str(d.dtype), str(v.dtype), str(rf.dtype)],
            "checkpoint_1_equals_checkpoint_500": same_ckpt,
        }
        refsel_checks[key] = {"values_vs_independent_max_rel": e_v,
                              "top_values_vs_independent_sorted_max_rel": e_top}
        ties = []
        for c in range(v.shape[1]):
            start = 0
            for i in range(1, len(v) + 1):
                if i == len(v) or v[i, c] != v[start, c]:
                    if i - start > 1:
                        ties.append({"channel": c, "rows": [start, i], "value": float(v[start, c]),
                                     "samples": d[start:i, c].tolist()})
                    start = i
        refsel_files[key]["ties"] = ties

    # ---------------- manifest ----------------
    for f in os.listdir(out):
        if f not in written and f != "manifest.json":
            os.remove(os.path.join(out, f))
    manifest = {
        "zennit_version": importlib.metadata.version("zennit"),
        "zennit_crp_version": importlib.metadata.version("zennit-crp"),
        "torch_version": torch.__version__,
        "onnx_version": onnx.__version__,
        "onnxruntime_version": ort.__version__,
        "conventions": {
            "init": "relevance initialised at the output with the logit value at the target of "
                    "each row (crp relevance_init: mask[i, y_i] = prediction[i, y_i], other "
                    "logits 0); 'prediction' is crp's model output per row",
            "heatmap": "the FULL input relevance data.grad of the broadcast input, rows x 3 x "
                       "16 x 16 (crp's default heatmap_modifier would sum over channels)",
            "broadcast": "len(data) == len(conditions): row i = (sample i, condition i); "
                         "otherwise data is repeat_interleave'd over the conditions and the list "
                         "of conditions repeated over the data: row = sample * n_cond + cond. "
                         "row_map lists [sample, condition index] per row; samples lists which "
                         "input rows were passed",
            "mask": "ChannelConcept.mask: the relevance (gradient) at the module output is "
                    "multiplied by 1 on the listed channels (dim 1) and 0 elsewhere, for that "
                    "row only; rows without the layer in their condition are not masked",
            "exclude_parallel_true": "crp's default for CondAttribution: relevance is computed "
                                     "top-down to the first conditioned layer (autograd.grad), "
                                     "masked, then propagated only from that layer's output "
                                     "(and from layer to layer in dict order, last layer of the "
                                     "model first); paths that bypass the conditioned layer "
                                     "(residual skips) get no relevance. All condition dicts "
                                     "must have the same keys (crp splits by key set and "
                                     "concatenates groups, which would reorder rows)",
            "exclude_parallel_false": "what FeatureVisualization uses: one backward pass with "
                                      "the masks applied where the masked layers sit; parallel "
                                      "paths carry their unmasked relevance",
            "conditions_keys": "'conditions' uses ONNX node names (the node whose output is the "
                               "module output, see models[m].layers), 'conditions_modules' the "
                               "torch module names; 'y' is the model output",
            "record": "record[onnx node] = crp's attr.relevances / attr.activations at that "
                      "module output (full maps; channel sums over space in the manifest). "
                      "relevance_factor: crp's relevance = factor x the relevance that the "
                      "backward actually propagates (2 at a conditioned layer under "
                      "exclude_parallel=True, see quirks). The relevance at a conditioned layer "
                      "is the masked one",
            "row_sums": "sum of the heatmap over channels and pixels, per row",
            "rules": "EpsilonPlusFlat: Flat on the first conv (features.0 / conv1), ZPlus on "
                     "other convs, Epsilon(1e-6) on Linear, Pass on ReLU and merged BN, Norm on "
                     "ResNet's residual Sum and AdaptiveAvgPool, MaxPool plain gradient",
            "bn": "BN eps=0 with dyadic statistics: the exporter's fold and Zennit's merge give "
                  "bit-identical weights; float64 cases use exactly the .onnx float32 weights",
            "checks": "every heatmap, prediction, recorded relevance (divided by "
                      "relevance_factor) and activation equals an independent computation "
                      "(Zennit composite + own out-of-place masks) to 1e-12 relative in "
                      "float64, 1e-5 in float32",
        },
        "models": models_json,
        "checks": checks,
        "skip_fraction": skip_fraction,
        "refsel": {
            "model": "crp_vgg", "dtype": "float64 (model and data .double(); data stored "
                                         "float32)",
            "data": "crp_refsel.data.npy", "labels": "crp_refsel.labels.npy",
            "labels_values": rs_labels.tolist(),
            "layers": {l: models_json["crp_vgg"]["layers"][l]["onnx_node"] for l in REFSEL_LAYERS},
            "settings": {"layer_map": "ChannelConcept() per layer", "preprocess_fn": None,
                         "max_target": "sum", "abs_norm": True, "data_start": 0,
                         "data_end": REFSEL_N, "batch_size": REFSEL_BATCH, "checkpoint": 1,
                         "composite": "EpsilonPlusFlat + SequentialMergeBatchNorm",
                         "exclude_parallel": False, "SAMPLE_SIZE": 40},
            "targets": "FeatureVisualization.run conditions each sample on its dataset label: "
                       "conditions = [{'y': [label]}] (multitarget_to_single not implemented), "
                       "so relevance is initialised at the label's logit, not the predicted "
                       "class",
            "semantics": "RelMax: score[n, c] = sum over space of the relevance at the layer "
                         "output; ActMax: the same on the activation; both divided by "
                         "sum_c |score[n, c]| + 1e-10 (abs_norm). Per channel the samples are "
                         "sorted by score descending; rf_c_sorted = argmax over the flattened "
                         "H*W map of the raw relevance/activation of that channel (not of the "
                         "score). Arrays are (min(40, N)=24) x channels; d_c_sorted int64, "
                         "rel_c_sorted float64, rf_c_sorted int64",
            "files": refsel_files,
            "checks": refsel_checks,
            "crp_output_folders": tmp_files,
            "ties": "files[k].ties lists runs of equal values (rows [start, end) of a channel; "
                    "here exact zeros: the channel's relevance map is all zero for those "
                    "samples, and rf is then 0, torch.argmax's first maximum). Their order in "
                    "d_c_sorted is not specified (torch.argsort is unstable and crp flips an "
                    "ascending sort): compare values exactly, and sample indices as a set within "
                    "a tie run",
            "stats_error": stats_error,
        },
        "quirks": QUIRKS,
        "cases": cases_json,
    }
    cases = manifest.pop("cases")
    text = json.dumps(manifest, indent=1)
    text = re.sub(r"\[\s*([^\[\]{}]*?)\s*\]",
                  lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]", text)
    text = text[:-2] + ',\n "cases": [\n' + ",\n".join("  " + json.dumps(c) for c in cases) \
        + "\n ]\n}"
    assert json.loads(text)["cases"] == cases
    with open(os.path.join(out, "manifest.json"), "w") as f:
        f.write(text + "\n")
    total = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print(f"{len(cases)} cases, {len(written)} files, {total} bytes -> {os.path.relpath(out)}")
    for c in cases:
        print(f"  {c['model']:10s} {c['case']:16s} {c['dtype']:7s} rows={c['rows']} "
              f"sums={['%.6g' % s for s in c['row_sums']]}")
    print("skip fraction:", json.dumps({k: v for k, v in skip_fraction.items() if k != "note"}))


QUIRKS = [
    "Masks work only through aliasing: Zennit 1.0 wraps every hooked module output in an "
    "Identity (its rule reads the grad_output stored at that Identity), and crp's MaskHook, "
    "registered before the composite, sits upstream of it. ChannelConcept.mask multiplies the "
    "gradient IN PLACE and Identity.backward passes the same tensor on, so the stored "
    "grad_output is masked too. The heatmaps are right (checked against out-of-place masks "
    "placed after Zennit's hooks). A mask_map function that returns a new tensor instead is "
    "silently ignored by the masked layer's rule: the heatmap equals the unconditioned one "
    "(checks[m].out_of_place_mask_vs_unconditioned_max_rel = 0).",
    "exclude_parallel=True doubles attr.relevances at the conditioned layer(s): "
    "torch.autograd.grad(pred, layer_out) fills layer_out.grad (retain_grad) in torch 2.x, and "
    "the following torch.autograd.backward(layer_out, grad) adds the same gradient again. "
    "Heatmaps are unaffected. The manifest's relevance_factor is 2.0 there.",
    "exclude_parallel=True splits the conditions by their key set and concatenates the groups "
    "(heatmap, prediction, relevances): with mixed key sets the rows come back grouped, not in "
    "input order. All conditions here share their keys.",
    "exclude_parallel=True needs the layers in a condition ordered last-to-first (dict "
    "insertion order); otherwise autograd.grad raises and crp re-raises with a hint.",
    "CondAttribution's default heatmap_modifier sums data.grad over dim 1 (channels); with "
    "broadcasting, data is a repeat_interleave'd copy, so reading the caller's tensor .grad "
    "gives the sum over the repeated rows: subclass heatmap_modifier for the full map.",
    "crp's recording hook stores the raw module output; in-place ReLUs after a module without "
    "a Zennit rule could overwrite it (torchvision BasicBlock uses ReLU(inplace=True)): in-place "
    "is turned off (same forward).",
    "FeatureVisualization.run registers the composite before its own hooks (so its hooks act "
    "after Zennit's identity: no aliasing issue there) and calls CondAttribution with "
    "composite=None, exclude_parallel=False and conditions [{'y': [label]}].",
    "Maximization keeps SAMPLE_SIZE=40 rows; with 24 samples the arrays have 24 rows. "
    "Ties (exact zeros for dead channels in features.7) come out in an unspecified order: "
    "reference_sampling sorts with the unstable torch.argsort, sort_result_array with "
    "flip(argsort ascending), batch by batch and again when collecting checkpoints. checkpoint=1 "
    "and checkpoint=500 give the same arrays here. The statistics (RelStats/ActStats, per "
    "target) are written too, but FeatureVisualization.compute_stats fails: "
    "crp.helper.load_stat_targets uses np.int (removed in numpy 1.24), see refsel.stats_error.",
    "Zennit 1.0's MergeBatchNorm.remove restores the BN tensors with object.__setattr__, which "
    "leaves them as instance attributes shadowing the module's buffers: a later model.double() "
    "or .to(device) converts the buffers but not what the BN reads (running_mean/var stay "
    "float32: 'expected scalar type Double but found Float'). Every canonizer context (each "
    "CondAttribution call) does this; build or convert the model before the first attribution.",
    "crp 0.6.0's metadata pins zennit<=0.4.6; with Zennit 1.0 every API it uses still exists "
    "(NameMapComposite, Composite.context, RemovableHandle(List)); the attribution calls run "
    "with warnings as errors and FeatureVisualization.run emits none.",
]


if __name__ == "__main__":
    sys.exit(main())
