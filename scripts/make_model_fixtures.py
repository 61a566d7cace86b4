#!/usr/bin/env python3
"""Small modern models, exported with both PyTorch exporters, for Prism's model tests (issue 14).

Each model is a miniature of a family people train today: a ViT, a Swin-like windowed-attention
block (shifted windows with a roll), a ConvNeXt block (depthwise 7x7, LayerNorm, GELU, layer
scale), a BERT-like encoder (token ids + attention mask, GELU, LayerNorm, a classifier head), a
GPT-2-like decoder (causal mask from Trilu/Where, tanh-GELU), a ShuffleNetV2 block (channel
split, shuffle), a U-Net-like model (Resize up-sampling, skip concatenation), and a 3-D CNN
(Conv3d, MaxPool3d, AvgPool3d). Weights are seeded (BatchNorm statistics estimated on noise).

Every model is exported with the legacy TorchScript exporter (``dynamo=False``, opset 17, a
dynamic batch axis) and with the dynamo exporter (``dynamo=True``, opset 18, dynamic batch), and
onnxruntime's outputs are stored. Writes tests/fixtures/models/:
``<model>.<exporter>.onnx``, ``<model>.in<i>.npy`` (one per graph input, in graph order; int64 for
token ids and masks), ``<model>.<exporter>.out0.npy`` and manifest.json (inputs by name and dtype,
op types per export, notes). Deterministic. Run from the repository root:

    /root/anchors/bin/python scripts/make_model_fixtures.py [--only NAME ...]
"""

import argparse
import json
import math
import pathlib
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "models"


class Attention(nn.Module):
    def __init__(self, dim, heads, causal=False):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, mask=None):
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads)
        if self.causal:
            causal = torch.tril(torch.ones(t, t, dtype=torch.bool, device=x.device))
            att = att.masked_fill(~causal, float("-inf"))
        if mask is not None:  # [b, t] with 1 = keep
            att = att + (1.0 - mask[:, None, None, :].to(att.dtype)) * -1e4
        att = att.softmax(dim=-1)
        return self.proj((att @ v).transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, dim, heads, causal=False, approx="none"):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.att = Attention(dim, heads, causal)
        self.fc1, self.fc2 = nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)
        self.approx = approx

    def forward(self, x, mask=None):
        x = x + self.att(self.ln1(x), mask)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x)), approximate=self.approx))


class TinyViT(nn.Module):
    """Patch embedding (conv 4x4/4), class token, positions, two blocks, head."""

    def __init__(self, dim=16, classes=5):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, 4)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, 17, dim))
        self.blocks = nn.ModuleList([Block(dim, 2), Block(dim, 2)])
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        for b in self.blocks:
            x = b(x)
        return self.head(self.norm(x)[:, 0])


class TinySwin(nn.Module):
    """Patch embedding, then windowed attention on 2x2 windows, shifted by a roll."""

    def __init__(self, dim=12, classes=4, win=2):
        super().__init__()
        self.win = win
        self.patch = nn.Conv2d(3, dim, 2, 2)
        self.norm0 = nn.LayerNorm(dim)
        self.b1, self.b2 = Block(dim, 3), Block(dim, 3)
        self.head = nn.Linear(dim, classes)

    def windows(self, x, blk, shift):
        b, h, w, c = x.shape
        if shift:
            x = torch.roll(x, shifts=(-1, -1), dims=(1, 2))
        s = self.win
        xw = x.reshape(b, h // s, s, w // s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, s * s, c)
        xw = blk(xw)
        x = xw.reshape(b, h // s, w // s, s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
        if shift:
            x = torch.roll(x, shifts=(1, 1), dims=(1, 2))
        return x

    def forward(self, x):
        x = self.norm0(self.patch(x).permute(0, 2, 3, 1))
        x = self.windows(x, self.b1, False)
        x = self.windows(x, self.b2, True)
        return self.head(x.mean(dim=(1, 2)))


class TinyConvNeXt(nn.Module):
    def __init__(self, dim=8, classes=4):
        super().__init__()
        self.stem = nn.Conv2d(3, dim, 2, 2)
        self.dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pw1, self.pw2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 0.5))
        self.head_norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, classes)

    def forward(self, x):
        x = self.stem(x)
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.pw2(F.gelu(self.pw1(self.norm(y)))) * self.gamma
        x = x + y.permute(0, 3, 1, 2)
        return self.head(self.head_norm(x.mean((2, 3))))


class TinyBert(nn.Module):
    """Token + position + segment embeddings, LayerNorm, two blocks with a padding mask, the
    pooled first token, a classifier."""

    def __init__(self, vocab=50, dim=16, classes=3, max_len=32):
        super().__init__()
        self.tok, self.pos, self.seg = (nn.Embedding(vocab, dim), nn.Embedding(max_len, dim),
                                        nn.Embedding(2, dim))
        self.ln = nn.LayerNorm(dim, eps=1e-12)
        self.blocks = nn.ModuleList([Block(dim, 2), Block(dim, 2)])
        self.pool, self.head = nn.Linear(dim, dim), nn.Linear(dim, classes)

    def forward(self, input_ids, attention_mask):
        t = input_ids.shape[1]
        pos = torch.arange(t, device=input_ids.device).unsqueeze(0)
        x = self.tok(input_ids) + self.pos(pos) + self.seg(torch.zeros_like(input_ids))
        x = self.ln(x)
        for b in self.blocks:
            x = b(x, attention_mask)
        return self.head(torch.tanh(self.pool(x[:, 0])))


class TinyGPT(nn.Module):
    """Token + position embeddings, two causal blocks (tanh GELU), LayerNorm, a tied LM head,
    the next-token logits at the last position."""

    def __init__(self, vocab=40, dim=16, max_len=32):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, dim), nn.Embedding(max_len, dim)
        self.blocks = nn.ModuleList([Block(dim, 2, True, "tanh"), Block(dim, 2, True, "tanh")])
        self.ln = nn.LayerNorm(dim)

    def forward(self, input_ids):
        t = input_ids.shape[1]
        x = self.tok(input_ids) + self.pos(torch.arange(t, device=input_ids.device))
        for b in self.blocks:
            x = b(x)
        return self.ln(x)[:, -1] @ self.tok.weight.t()


class TinyShuffle(nn.Module):
    """ShuffleNetV2 unit: chunk into two, a branch on one half, concat, channel shuffle."""

    def __init__(self, c=8, classes=4):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        h = c // 2
        self.branch = nn.Sequential(
            nn.Conv2d(h, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU(),
            nn.Conv2d(h, h, 3, padding=1, groups=h, bias=False), nn.BatchNorm2d(h),
            nn.Conv2d(h, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU())
        self.head = nn.Linear(c, classes)

    def forward(self, x):
        x = F.relu(self.stem(x))
        a, b = x.chunk(2, dim=1)
        x = torch.cat([a, self.branch(b)], 1)
        n, c, h, w = x.shape
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
        return self.head(x.mean((2, 3)))


class TinyUNet(nn.Module):
    """Encoder (conv, max-pool), bottleneck, decoder with bilinear and nearest Resize, skip
    concatenation, a per-pixel 2-class head (output N x 2 x H x W)."""

    def __init__(self, c=6):
        super().__init__()
        self.e1 = nn.Conv2d(3, c, 3, padding=1)
        self.e2 = nn.Conv2d(c, 2 * c, 3, padding=1)
        self.d1 = nn.Conv2d(3 * c, c, 3, padding=1)
        self.d0 = nn.Conv2d(c + 2 * c, c, 3, padding=1)
        self.out = nn.Conv2d(c, 2, 1)

    def forward(self, x):
        s1 = F.relu(self.e1(x))
        s2 = F.relu(self.e2(F.max_pool2d(s1, 2)))
        b = F.max_pool2d(s2, 2)
        u = F.interpolate(b, scale_factor=2.0, mode="bilinear", align_corners=False)
        u = F.relu(self.d1(torch.cat([u, s2[:, :self.e1.out_channels]], 1)))
        u = F.interpolate(u, scale_factor=2.0, mode="nearest")
        u = F.relu(self.d0(torch.cat([u, F.interpolate(s2, size=s1.shape[-2:], mode="bilinear",
                                                       align_corners=True)], 1)))
        return self.out(u)


class Tiny3D(nn.Module):
    def __init__(self, classes=3):
        super().__init__()
        self.c1 = nn.Conv3d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm3d(4)
        self.c2 = nn.Conv3d(4, 6, (3, 3, 3), stride=(1, 2, 2), padding=1)
        self.head = nn.Linear(6, classes)

    def forward(self, x):
        x = F.max_pool3d(F.relu(self.bn(self.c1(x))), 2)
        x = F.avg_pool3d(F.relu(self.c2(x)), (1, 2, 2))
        return self.head(x.mean((2, 3, 4)))


def image(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def tokens(vocab, shape, seed, pad_from=None):
    r = np.random.default_rng(seed)
    ids = r.integers(1, vocab, size=shape).astype(np.int64)
    mask = np.ones(shape, np.int64)
    if pad_from is not None:
        ids[-1, pad_from:] = 0
        mask[-1, pad_from:] = 0
    return ids, mask


def models():
    ids, mask = tokens(50, (2, 8), 5, pad_from=6)
    gids, _ = tokens(40, (2, 7), 6)
    return {
        "vit": (TinyViT(), {"x": image((2, 3, 16, 16), 1)}, "patch conv, class token, 2 blocks"),
        "swin": (TinySwin(), {"x": image((2, 3, 8, 8), 2)}, "2x2 windows, shifted by a roll"),
        "convnext": (TinyConvNeXt(), {"x": image((2, 3, 12, 12), 3)},
                     "depthwise 7x7, channels-last LayerNorm, GELU, layer scale"),
        "bert": (TinyBert(), {"input_ids": ids, "attention_mask": mask},
                 "token/position/segment embeddings, padding mask, pooled classifier"),
        "gpt": (TinyGPT(), {"input_ids": gids}, "causal mask, tanh GELU, tied LM head"),
        "shufflenet": (TinyShuffle(), {"x": image((2, 3, 8, 8), 4)}, "chunk, branch, shuffle"),
        "unet": (TinyUNet(), {"x": image((2, 3, 8, 8), 7)}, "bilinear/nearest Resize, skips"),
        "conv3d": (Tiny3D(), {"x": image((2, 1, 4, 8, 8), 8)}, "Conv3d, MaxPool3d, AvgPool3d"),
    }


def seed_weights(model, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                p.copy_(torch.randn_like(p) * (1.0 / math.sqrt(p[0].numel())))
            elif "gamma" not in name and "weight" not in name:
                p.copy_(torch.randn_like(p) * 0.1)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if bns:
        model.train()
        for m in bns:
            m.momentum = None
        return True
    return False


def export(model, feeds, path, exporter):
    args = tuple(torch.from_numpy(v) for v in feeds.values())
    names = list(feeds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "legacy":
            torch.onnx.export(model, args, str(path), dynamo=False, opset_version=17,
                              input_names=names, output_names=["y"],
                              dynamic_axes={**{n: {0: "batch"} for n in names}, "y": {0: "batch"}})
        else:
            batch = torch.export.Dim("batch", min=1, max=1024)
            prog = torch.onnx.export(model, args, dynamo=True, opset_version=18,
                                     input_names=names, output_names=["y"],
                                     dynamic_shapes=tuple({0: batch} for _ in names))
            prog.save(str(path))


def token_gradient(model, name, feeds):
    """Gradient of each sample's predicted logit w.r.t. the word-embedding output (float64,
    [batch, tokens, hidden]): what Prism's attribution at the embedding lookup computes with the
    plain gradient, before it sums over the hidden dimension (a sum that is ~0 here: a
    LayerNorm follows)."""
    m64 = type(model)()
    m64.load_state_dict(model.state_dict())
    m64 = m64.double().eval()
    grabbed = {}

    def keep(_m, _i, out):
        out.retain_grad()
        grabbed["emb"] = out

    h = m64.tok.register_forward_hook(keep)
    y = m64(*(torch.from_numpy(v) for v in feeds.values()))
    h.remove()
    targets = y.argmax(1)
    y.gather(1, targets[:, None]).sum().backward()
    g = grabbed["emb"].grad.numpy()
    np.save(OUT / f"{name}.token_gradient.npy", g)
    return {"file": f"{name}.token_gradient.npy", "targets": targets.tolist()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args()
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    manifest_path = OUT / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"models": {}}
    for name, (model, feeds, note) in models().items():
        if args.only and name not in args.only:
            continue
        if seed_weights(model, 11):
            with torch.no_grad():
                x0 = next(iter(feeds.values()))
                noise = torch.from_numpy(image((16, *x0.shape[1:]), 99))
                model(noise)
        model.eval()
        for i, arr in enumerate(feeds.values()):
            np.save(OUT / f"{name}.in{i}.npy", arr)
        with torch.no_grad():
            ref = model(*(torch.from_numpy(v) for v in feeds.values())).numpy()
        entry = {"note": note, "inputs": [{"name": k, "dtype": str(v.dtype), "shape": list(v.shape)}
                                          for k, v in feeds.items()], "exports": {}}
        for exporter in ("legacy", "dynamo"):
            path = OUT / f"{name}.{exporter}.onnx"
            try:
                export(model, feeds, path, exporter)
            except Exception as e:  # noqa: BLE001 - recorded, not fatal
                entry["exports"][exporter] = {"error": f"{type(e).__name__}: {e}"[:300]}
                print(f"{name} {exporter}: export failed: {e}"[:200])
                continue
            m = onnx.load(str(path))
            # Strip source locations and stack traces (the dynamo exporter writes them on every
            # node): they make up most of the file and change nothing Prism reads.
            for n in m.graph.node:
                n.doc_string = ""
                del n.metadata_props[:]
            for v in list(m.graph.value_info) + list(m.graph.initializer):
                v.doc_string = ""
                if hasattr(v, "metadata_props"):
                    del v.metadata_props[:]
            del m.metadata_props[:]
            m.doc_string = ""
            onnx.save(m, str(path))
            onnx.checker.check_model(m)
            graph_inputs = [i.name for i in m.graph.input]
            assert graph_inputs == list(feeds), (name, exporter, graph_inputs)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            y = sess.run(None, feeds)[0]
            err = float(np.abs(y - ref).max() / max(np.abs(ref).max(), 1e-6))
            assert err < 1e-4, (name, exporter, err)
            np.save(OUT / f"{name}.{exporter}.out0.npy", y)
            ops = sorted({n.op_type for n in m.graph.node})
            entry["exports"][exporter] = {"onnx": path.name, "output": f"{name}.{exporter}.out0.npy",
                                          "opset": m.opset_import[0].version, "ops": ops,
                                          "bytes": path.stat().st_size}
            print(f"{name:<10} {exporter:<6} {path.stat().st_size:>7} B  torch~ort {err:.1e}  {' '.join(ops)}")
        if hasattr(model, "tok"):
            entry["token_gradient"] = token_gradient(model, name, feeds)
        manifest["models"][name] = entry
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
