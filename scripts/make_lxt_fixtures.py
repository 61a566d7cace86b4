#!/usr/bin/env python3
"""Transformer parity fixtures against LXT 2.1 (AttnLRP / CP-LRP), for Prism's tests (issue 15).

Small random-weight models built from configs (nothing is downloaded), in float64:

* ``vit``: torchvision ``VisionTransformer`` shrunk (32x32 images, 8x8 patches, 2 layers, 2
  heads, hidden 16, MLP 32, 5 classes). Relevance at the input pixels [N, 3, 32, 32].
* ``bert``: Hugging Face ``BertForSequenceClassification`` (vocab 60, hidden 16, 2 layers, 4
  heads, intermediate 32, 32 positions, 3 labels); batch 2 of 8 tokens, the second sample padded
  (its last two ``attention_mask`` entries are 0).
* ``gpt2``: ``GPT2LMHeadModel`` (n_embd 16, 2 layers, 4 heads, vocab 60), 7 tokens; the target
  is the next-token logit at the last position, for the arg-max token id.
* ``llama``: ``LlamaForCausalLM`` (hidden 16, 2 layers, 4 heads, 2 key/value heads,
  intermediate 32, vocab 60; RMSNorm, SiLU gating, rotary embeddings), 7 tokens, target as for gpt2.
  The token models use 4 heads of 4 (not 2 of 8): the dynamo exporter stores the attention
  scale 1/sqrt(head_dim) as a float32 number, exact for head_dim 4 (and BERT-base's 64).
* ``bert_conservation``: the BERT above with every bias, every LayerNorm shift and the position
  and token-type embeddings zeroed: CP-LRP conserves there (sum of relevance = the explained
  logit; checked here, tested again in Rust).

Each model (``model.double()``; weights and pixels are float32-representable numbers, so a
float32 copy holds the same values) is exported with the legacy TorchScript exporter
(``dynamo=False``, opset 17) and the dynamo exporter (``dynamo=True``, opset 18), both with a
dynamic batch axis. onnxruntime must reproduce torch's float64 outputs within 1e-9 (relative to
the largest |output|), else the script fails. Where onnxruntime's CPU provider has no float64
kernel (Conv, Erf) the ONNX reference evaluator (numpy, float64; its float32 Erf replaced) checks
instead. Where the dynamo exporter wrote Python constants as float32 numbers (tanh-GELU's
0.044715 and sqrt(2/pi), an epsilon) the graph itself is that far from torch: allowed up to 1e-7
and recorded in the manifest's notes.

Relevance is LXT's efficient implementation (gradient x input on a patched model), float64:
for token models at the word-embedding output, [N, tokens, hidden] (``emb =
model.get_input_embeddings()(ids)``, the model run on ``inputs_embeds=emb`` with the attention
mask, ``logit.backward()`` from the target logit's value, ``R = emb * emb.grad``); for the ViT at
the input pixels (input x gradient). Linear layers are plain gradient (LRP-epsilon with epsilon 0;
no zennit rules). Which LXT map or primitives made each file is recorded in the manifest:

* ViT ``cp-lrp``: LXT's own map for torchvision ViT (``lxt.efficient.models.vit_torch.cp_LRP``:
  identity rule on GELU, LXT's LayerNorm, query and key detached inside
  ``nn.MultiheadAttention``).
* ViT ``attn-lrp``: LXT has no map (nn.MultiheadAttention cannot be patched inside). The script
  runs the same weights through its own functional forward and applies LXT's primitives the way
  LXT's BERT patch does: ``divide_gradient(Q@K^T, 2)``, ``divide_gradient(A@V, 2)``,
  ``identity_rule_implicit`` on GELU and ``lxt.efficient.patches.layer_norm_forward``. The same
  functional forward with query/key detached reproduces LXT's ``cp_LRP`` map (checked).
* BERT ``attn-lrp``: LXT's bert map (it swaps in its transformers-4 copy of modeling_bert). It
  runs on transformers 5 after three shims (a stub for the removed
  ``find_pruneable_heads_and_indices`` import, ``config.position_embedding_type = "absolute"``,
  transformers 4's ``get_extended_attention_mask`` / ``get_head_mask`` on its BertModel); the
  weights are those of the transformers-5 model. Cross-checked against the same semantics applied
  to the transformers-5 modules with LXT's primitives.
* BERT ``cp-lrp``: LXT has no BERT CP map: LXT's ``cp_wrap_attention_forward`` (query and key
  detached) on the eager attention, LayerNorm and identity rules as in the AttnLRP map.
* GPT-2 / LLaMA: LXT's ``attnLRP`` and ``cp_LRP`` maps, except the attention entry:
  LXT 2.1's ``patch_attention`` replaces ``ALL_ATTENTION_FUNCTIONS`` by a dict, and transformers
  5 then fails (``'dict' object has no attribute 'get_interface'``); ``patch_cp_attention`` works
  but rewrites transformers' global attention registry in place. The script wraps the module's
  ``eager_attention_forward`` with LXT's own ``wrap_attention_forward`` /
  ``cp_wrap_attention_forward`` (the functions LXT installs) and runs eager attention; for CP-LRP
  the result equals LXT's unmodified ``cp_LRP`` maps to 1e-15 (checked once by hand).
* LLaMA float32 islands: Hugging Face's RMSNorm (and LXT's ``rms_norm_forward``), its rotary
  cos/sin and its eager attention softmax compute in float32 even for a float64 model; the
  fixture model uses the same formulas in the input dtype (so the export has no float32
  island), and LXT's RMSNorm rule (normaliser detached) is applied in float64.

Also checked per model: the patched forward equals the plain one; the inputs_embeds harness with
no patches equals gradient x input taken from the token-id path; LXT's relevance differs from
plain gradient x input (the patches took effect); LXT's identity rule (which divides by
``x + 1e-10``) agrees with the exact identity rule. Prints sum R vs the logit and max |R|.

Writes tests/fixtures/transformers/: ``<model>.<exporter>.onnx``, ``<model>.in<i>.npy`` (graph
input order; int64 ids and masks, float64 pixels), ``<model>.<exporter>.out0.npy``,
``<model>.<composite>.relevance.npy`` (LXT's, as it computes it),
``<model>.<composite>.exact_identity.relevance.npy`` (the same with the exact identity rule) and
manifest.json. Deterministic. Needs ``lxt==2.1``.
Run from the repository root:

    /root/anchors/bin/python scripts/make_lxt_fixtures.py [--only NAME ...]
"""

import argparse
import contextlib
import json
import math
import pathlib
import warnings
from functools import partial

import numpy as np
import onnx
from onnx import numpy_helper
import onnxruntime as ort
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun
import torch
import torch.nn as nn
import torch.nn.functional as F

# LXT 2.1's package import pulls in its transformers-4 copy of modeling_bert, which imports a
# helper transformers 5 removed; it is only used for head pruning, so a stub lets it load.
import transformers.pytorch_utils as _pu

if not hasattr(_pu, "find_pruneable_heads_and_indices"):
    def _no_pruning(*_a, **_k):
        raise NotImplementedError("head pruning is not supported by this fixture script")
    _pu.find_pruneable_heads_and_indices = _no_pruning

import lxt.efficient.models.bert as lxt_bert  # noqa: E402
import lxt.efficient.models.gpt2 as lxt_gpt2  # noqa: E402
import lxt.efficient.models.llama as lxt_llama  # noqa: E402
import lxt.efficient.models.vit_torch as lxt_vit  # noqa: E402
from lxt.efficient import monkey_patch  # noqa: E402
from lxt.efficient import patches as lxt_patches  # noqa: E402
from lxt.efficient import rules as lxt_rules  # noqa: E402
from torchvision.models import vision_transformer as tv_vit  # noqa: E402
from transformers import (BertConfig, GPT2Config, LlamaConfig,  # noqa: E402
                          GPT2LMHeadModel, LlamaForCausalLM)
from transformers.models.bert import modeling_bert  # noqa: E402
from transformers.models.gpt2 import modeling_gpt2  # noqa: E402
from transformers.models.llama import modeling_llama  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "transformers"
ORT_TOL = 1e-9
ORT_TOL_F32_SCALARS = 1e-7  # see float32_scalars()
CROSS_TOL = 1e-10  # two implementations of the same rules, relative to max |R|
# LXT's identity rule saves f(x) / (x + 1e-10): a few 1e-9 of max |R| from the exact rule here
IDENTITY_TOL = 1e-7
VOCAB = 60
# Token models: hidden 16 in 4 heads, so the attention scale 1/sqrt(4) = 0.5 is exact in float32
# (the dynamo exporter writes that Python scalar as a float32 value; with 2 heads of 8 the export
# is 2.5e-9 off torch's float64; BERT-base's 1/sqrt(64) is exact too).
HEADS = 4


# ---------------------------------------------------------------------------------------------
# Patch bookkeeping: LXT patches classes and modules globally; every use is undone afterwards.

def _snapshot(objs):
    return [(o, dict(vars(o))) for o in objs]


def _restore(snap):
    for obj, saved in snap:
        for key in list(vars(obj)):
            if key not in saved and not key.startswith("__"):
                delattr(obj, key)
        for key, value in saved.items():
            if key.startswith("__"):
                continue
            if vars(obj).get(key, object()) is not value:
                setattr(obj, key, value)


@contextlib.contextmanager
def patched(patch_map, extra=()):
    """Apply an LXT patch map (target -> patch function) and undo it on exit."""
    snap = _snapshot(list(patch_map) + list(extra))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            monkey_patch(None, patch_map)
        yield
    finally:
        _restore(snap)


@contextlib.contextmanager
def exact_identity_rule():
    """LXT's identity rule saves f(x) / (x + 1e-10); this swaps in the exact f(x) / x."""
    fwd = lxt_rules.identity_rule_implicit_fn.forward
    saved = fwd.__defaults__
    fwd.__defaults__ = (0.0,)
    try:
        yield
    finally:
        fwd.__defaults__ = saved


def attention_only(module, wrapper):
    """LXT's attention wrapper on ``module.eager_attention_forward`` only (see the docstring:
    LXT 2.1's own patch_attention breaks transformers 5's attention registry)."""
    def patch(mod):
        mod.eager_attention_forward = wrapper(mod.eager_attention_forward)
        return True
    return {module: patch}


def float_rms_norm_forward(self, x):
    """RMSNorm in the input dtype (HF's and LXT's versions go through float32)."""
    return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))


def lxt_rms_norm_forward_f64(self, x):
    """LXT's rms_norm_forward (normaliser detached), without its float32 round trip."""
    rs = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
    return self.weight * (x * lxt_rules.stop_gradient(rs))


# LXT's patch_method skips a patch whose function lives in the same module as the method it
# replaces (its "already patched" check): this one must not look like float_rms_norm_forward's
# module, or the RMSNorm rule would silently not be applied.
lxt_rms_norm_forward_f64.__module__ = "lxt_fixture_rules"


def float_rotary_forward(self, x, position_ids):
    """Rotary cos/sin in the input dtype (HF computes them in float32)."""
    freqs = position_ids[..., None].to(x.dtype) * self.inv_freq.to(device=x.device, dtype=x.dtype)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos() * self.attention_scaling, emb.sin() * self.attention_scaling


def float_llama_attention(module, query, key, value, attention_mask, scaling, dropout=0.0,
                          **_kwargs):
    """Hugging Face's eager LLaMA attention with the softmax in the input dtype (HF's runs in
    float32)."""
    key = modeling_llama.repeat_kv(key, module.num_key_value_groups)
    value = modeling_llama.repeat_kv(value, module.num_key_value_groups)
    w = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        w = w + attention_mask
    w = nn.functional.softmax(w, dim=-1)
    w = nn.functional.dropout(w, p=dropout, training=module.training)
    return torch.matmul(w, value).transpose(1, 2).contiguous(), w


# The fixture's LLaMA computes RMSNorm, the rotary tables and the attention softmax in its own
# dtype, in every run and in the export.
modeling_llama.LlamaRMSNorm.forward = float_rms_norm_forward
modeling_llama.LlamaRotaryEmbedding.forward = float_rotary_forward
modeling_llama.eager_attention_forward = float_llama_attention


def bert_own(cp):
    """BERT semantics on the transformers-5 modules with LXT's primitives."""
    def intermediate(self, h):
        return lxt_rules.identity_rule_implicit(self.intermediate_act_fn, self.dense(h))

    def pooler(self, h):
        return lxt_rules.identity_rule_implicit(self.activation, self.dense(h[:, 0]))

    attn = lxt_patches.cp_wrap_attention_forward if cp else lxt_patches.wrap_attention_forward
    return {
        nn.LayerNorm: partial(lxt_patches.patch_method, lxt_patches.layer_norm_forward),
        nn.Dropout: partial(lxt_patches.patch_method, lxt_patches.dropout_forward),
        modeling_bert.BertIntermediate: partial(lxt_patches.patch_method, intermediate),
        modeling_bert.BertPooler: partial(lxt_patches.patch_method, pooler),
        **attention_only(modeling_bert, attn),
    }


def gpt2_map(cp):
    base = lxt_gpt2.cp_LRP if cp else lxt_gpt2.attnLRP
    m = {k: v for k, v in base.items() if k is not modeling_gpt2}
    attn = lxt_patches.cp_wrap_attention_forward if cp else lxt_patches.wrap_attention_forward
    return {**m, **attention_only(modeling_gpt2, attn)}


def llama_map(cp):
    base = lxt_llama.cp_LRP if cp else lxt_llama.attnLRP
    m = {k: v for k, v in base.items() if k is not modeling_llama}
    m[modeling_llama.LlamaRMSNorm] = partial(lxt_patches.patch_method, lxt_rms_norm_forward_f64)
    attn = lxt_patches.cp_wrap_attention_forward if cp else lxt_patches.wrap_attention_forward
    return {**m, **attention_only(modeling_llama, attn)}


# ---------------------------------------------------------------------------------------------
# LXT's transformers-4 BERT on transformers 5.

def _t4_extended_attention_mask(self, attention_mask, input_shape, device=None, dtype=None):
    dtype = dtype or self.dtype
    return (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def _t4_head_mask(self, head_mask, num_hidden_layers, is_attention_chunked=False):
    if head_mask is not None:
        raise NotImplementedError("head masks are not used here")
    return [None] * num_hidden_layers


lxt_bert.BertModel.get_extended_attention_mask = _t4_extended_attention_mask
lxt_bert.BertModel.get_head_mask = _t4_head_mask


def lxt_bert_model(model):
    """LXT's BERT (its transformers-4 classes) with the weights of ``model``; to be called while
    LXT's bert map is applied."""
    cfg = BertConfig(**model.config.to_dict())
    cfg.position_embedding_type = "absolute"
    cfg._attn_implementation = "eager"
    m = modeling_bert.BertForSequenceClassification(cfg)
    assert type(m).__module__ == lxt_bert.__name__, type(m).__module__
    missing, unexpected = m.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and all("position_ids" in k or "token_type_ids" in k for k in missing), \
        (missing, unexpected)
    return m.double().eval()


# ---------------------------------------------------------------------------------------------
# Models

def seed_weights(model, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                p.copy_(torch.randn_like(p) * (1.0 / math.sqrt(p[0].numel())))
            elif name.endswith("weight"):  # LayerNorm / RMSNorm scale
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) * 0.1)
            p.copy_(p.float())  # float32-representable: a float32 copy holds the same numbers


def tokens(shape, seed, pad_from=None):
    r = np.random.default_rng(seed)
    ids = r.integers(1, VOCAB, size=shape).astype(np.int64)
    mask = np.ones(shape, np.int64)
    if pad_from is not None:
        ids[-1, pad_from:] = 0
        mask[-1, pad_from:] = 0
    return ids, mask


class MaskedLogits(nn.Module):
    """Export wrapper for BERT: (input_ids, attention_mask) -> logits."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


class CausalLogits(nn.Module):
    """Export wrapper for a causal LM: input_ids -> logits [N, tokens, vocab] (no cache). An
    all-ones attention mask made in the graph keeps transformers off its packed-sequence
    detection (torch.diff, which the legacy exporter cannot export); same logits."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        return self.model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                          use_cache=False).logits


def make_vit():
    m = tv_vit.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                 hidden_dim=16, mlp_dim=32, num_classes=5)
    seed_weights(m, 21)
    x = np.random.default_rng(22).standard_normal((2, 3, 32, 32)).astype(np.float32)
    x = x.astype(np.float64)
    return m.double().eval(), {"x": x}


def bert_config():
    return BertConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2,
                      num_attention_heads=HEADS, intermediate_size=32, max_position_embeddings=32,
                      num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                      attn_implementation="eager")


def make_bert():
    m = modeling_bert.BertForSequenceClassification(bert_config())
    seed_weights(m, 31)
    ids, mask = tokens((2, 8), 32, pad_from=6)
    return m.double().eval(), {"input_ids": ids, "attention_mask": mask}


def make_bert_conservation():
    m, feeds = make_bert()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("bias") or "position_embeddings" in name or \
                    "token_type_embeddings" in name:
                p.zero_()
    return m, feeds


def make_gpt2():
    cfg = GPT2Config(vocab_size=VOCAB, n_embd=16, n_layer=2, n_head=HEADS, n_positions=32,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                     attn_implementation="eager")
    m = GPT2LMHeadModel(cfg)
    seed_weights(m, 41)
    ids, _ = tokens((2, 7), 42)
    return m.double().eval(), {"input_ids": ids}


def make_llama():
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2,
                      num_attention_heads=HEADS, num_key_value_heads=2, intermediate_size=32,
                      max_position_embeddings=32, attn_implementation="eager",
                      tie_word_embeddings=False)
    m = LlamaForCausalLM(cfg)
    seed_weights(m, 51)
    ids, _ = tokens((2, 7), 52)
    return m.double().eval(), {"input_ids": ids}


# ---------------------------------------------------------------------------------------------
# Relevance harnesses

def vit_functional(m, x, cp):
    """torchvision's ViT forward, written out, with LXT's primitives (AttnLRP, or CP-LRP with
    query and key detached)."""
    n = x.shape[0]
    h = m._process_input(x)
    h = torch.cat([m.class_token.expand(n, -1, -1), h], dim=1)
    h = h + m.encoder.pos_embedding
    for blk in m.encoder.layers:
        att = blk.self_attention
        heads, d = att.num_heads, att.embed_dim
        hd = d // heads
        y = lxt_patches.layer_norm_forward(blk.ln_1, h)
        qkv = F.linear(y, att.in_proj_weight, att.in_proj_bias)
        q, k, v = (t.reshape(n, -1, heads, hd).transpose(1, 2) for t in qkv.chunk(3, dim=-1))
        if cp:
            q, k = lxt_rules.stop_gradient(q), lxt_rules.stop_gradient(k)
        s = q @ k.transpose(-2, -1)
        if not cp:
            s = lxt_rules.divide_gradient(s, 2)
        a = torch.softmax(s / math.sqrt(hd), dim=-1)
        c = a @ v
        if not cp:
            c = lxt_rules.divide_gradient(c, 2)
        c = c.transpose(1, 2).reshape(n, -1, d)
        h = h + att.out_proj(c)
        y = lxt_patches.layer_norm_forward(blk.ln_2, h)
        lin1, act, _, lin2, _ = blk.mlp
        y = lin2(lxt_rules.identity_rule_implicit(act, lin1(y)))
        h = h + y
    h = lxt_patches.layer_norm_forward(m.encoder.ln, h)
    return m.heads(h[:, 0])


def pixel_relevance(forward, x, targets):
    x = x.clone().requires_grad_()
    y = forward(x)
    sel = y.gather(1, targets[:, None])[:, 0]
    sel.sum().backward()
    return (x * x.grad).detach(), sel.detach()


def token_relevance(model, feeds, select):
    """LXT's recipe: relevance at the word-embedding output."""
    ids = torch.from_numpy(feeds["input_ids"])
    kw = {"attention_mask": torch.from_numpy(feeds["attention_mask"])} \
        if "attention_mask" in feeds else {"use_cache": False}
    emb = model.get_input_embeddings()(ids).detach().requires_grad_()
    out = model(inputs_embeds=emb, **kw).logits
    sel = select(out)
    sel.sum().backward()
    return (emb * emb.grad).detach(), sel.detach(), out.detach()


def token_gradient_input_via_ids(model, feeds, select):
    """Plain gradient x input at the embedding output, taken through the token-id path (a hook
    on the embedding module): the independent wiring check for token_relevance."""
    got = {}

    def keep(_m, _i, out):
        out.retain_grad()
        got["e"] = out

    h = model.get_input_embeddings().register_forward_hook(keep)
    kw = {k: torch.from_numpy(v) for k, v in feeds.items()}
    if "attention_mask" not in kw:
        kw["use_cache"] = False
    out = model(**kw).logits
    h.remove()
    select(out).sum().backward()
    return (got["e"] * got["e"].grad).detach()


def rel_err(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def check_differs(label, err, floor=1e-3):
    status = "ok" if err >= floor else "FAIL"
    print(f"    {label:<58} {err:.2e} (min {floor:.0e}) {status}")
    if err < floor:
        raise SystemExit(f"check failed: {label}: {err:.3e} < {floor:.0e} (patches not applied?)")


def check(label, err, tol):
    status = "ok" if err <= tol else "FAIL"
    print(f"    {label:<58} {err:.2e} (tol {tol:.0e}) {status}")
    if err > tol:
        raise SystemExit(f"check failed: {label}: {err:.3e} > {tol:.0e}")
    return err


# ---------------------------------------------------------------------------------------------
# Export

def export(model, feeds, path, exporter):
    args = tuple(torch.from_numpy(v) for v in feeds.values())
    names = list(feeds)
    with warnings.catch_warnings():  # grad mode on: MHA fast path off
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
    m = onnx.load(str(path))
    # Source locations and stack traces (the dynamo exporter's) change nothing Prism reads.
    for n in m.graph.node:
        n.doc_string = ""
        del n.metadata_props[:]
    for v in list(m.graph.value_info) + list(m.graph.initializer) + list(m.graph.input) + \
            list(m.graph.output):
        v.doc_string = ""
        if hasattr(v, "metadata_props"):
            del v.metadata_props[:]
    del m.metadata_props[:]
    m.doc_string = ""
    onnx.save(m, str(path))
    onnx.checker.check_model(m)
    return m


class Erf(OpRun):
    """The reference evaluator's Erf goes through float32; this one keeps float64."""

    op_domain = ""

    def _run(self, x):
        return (np.vectorize(math.erf, otypes=[x.dtype])(x),)


def float32_scalars(m):
    """Float64 scalar initializers whose value is a float32 number with a long mantissa (not a
    short binary fraction such as 0.5 or 3.0): Python constants the exporter rounded."""
    found = {}
    for init in m.graph.initializer:
        a = numpy_helper.to_array(init)
        if a.dtype != np.float64 or a.size != 1 or not np.isfinite(a).all():
            continue
        v = float(a.reshape(()))
        if v == float(np.float32(v)) and v != float(np.float16(v)):
            found[init.name] = v
    return found


def run_ort(path, feeds):
    """onnxruntime's output, or (where its CPU provider has no float64 kernel for an op, e.g.
    Conv) the ONNX reference evaluator's, computed in float64 by numpy. Returns (y, checker)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001
        if "NOT_IMPLEMENTED" not in str(e):
            raise
        why = str(e).split(":", 2)[-1].strip()[:160]
        ev = ReferenceEvaluator(str(path), new_ops=[Erf])
        return ev.run(None, feeds)[0], f"onnx.reference ({why})"
    return sess.run(None, feeds)[0], "onnxruntime"


def export_both(name, wrapper, feeds, ref, entry, may_fail):
    for exporter in ("legacy", "dynamo"):
        path = OUT / f"{name}.{exporter}.onnx"
        try:
            m = export(wrapper, feeds, path, exporter)
            graph_inputs = [i.name for i in m.graph.input]
            assert graph_inputs == list(feeds), (graph_inputs, list(feeds))
            y, checker = run_ort(path, feeds)
        except Exception as e:  # noqa: BLE001 - recorded for llama, fatal otherwise
            if not may_fail:
                raise
            msg = f"{type(e).__name__}: {e}"[:400]
            entry["exports"][exporter] = {"error": msg}
            entry["notes"].append(f"{exporter} export or onnxruntime failed: {msg}")
            print(f"  {exporter}: FAILED {msg[:200]}")
            path.unlink(missing_ok=True)
            continue
        err = rel_err(y, ref)
        tol = ORT_TOL
        rounded = float32_scalars(m)
        if rounded:
            # The dynamo exporter stores Python float constants (tanh-GELU's 0.044715 and
            # sqrt(2/pi), ...) as float32 numbers even in a float64 graph: the graph itself is
            # that far from torch. Allowed, and recorded.
            tol = ORT_TOL_F32_SCALARS
            note = (f"{exporter}: float64 scalar constants with float32 values in the graph "
                    f"({', '.join(f'{k}={v!r}' for k, v in rounded.items())}): the export is "
                    f"{err:.1e} (relative) off torch's float64 output")
            entry["notes"].append(note)
            print(f"  note: {note}")
        if err > tol or y.dtype != np.float64:
            raise SystemExit(f"{name} {exporter}: {checker} vs torch {err:.3e} ({y.dtype})")
        out = f"{name}.{exporter}.out0.npy"
        np.save(OUT / out, y)
        ops = sorted({n.op_type for n in m.graph.node})
        entry["exports"][exporter] = {"onnx": path.name, "output": out,
                                      "opset": m.opset_import[0].version, "ops": ops,
                                      "bytes": path.stat().st_size, "checked_with": checker,
                                      "checked_error": err}
        print(f"  {exporter:<6} {path.stat().st_size:>7} B  {checker.split()[0]}~torch {err:.1e}  "
              f"{' '.join(ops)}")


# ---------------------------------------------------------------------------------------------
# Per-model drivers

def save_relevance(name, composite, rel, sel, made_by, entry, at, id_err, exact):
    f = f"{name}.{composite}.relevance.npy"
    fx = f"{name}.{composite}.exact_identity.relevance.npy"
    np.save(OUT / f, rel.numpy())
    np.save(OUT / fx, exact.numpy())
    sums = rel.reshape(rel.shape[0], -1).sum(1)
    print(f"  {composite:<9} max|R| {rel.abs().max().item():.3e}   sum R "
          f"{np.array2string(sums.numpy(), precision=6)}  vs logit "
          f"{np.array2string(sel.numpy(), precision=6)}")
    entry["composites"][composite] = {"relevance": f, "shape": list(rel.shape), "at": at,
                                      "made_by": made_by, "sum_relevance": sums.tolist(),
                                      "explained_logit": sel.tolist(),
                                      "max_abs": rel.abs().max().item(),
                                      "exact_identity_relevance": fx,
                                      "lxt_identity_vs_exact": id_err}


def do_vit(entry):
    model, feeds = make_vit()
    x = torch.from_numpy(feeds["x"])
    with torch.no_grad():
        ref = model(x)
    targets = ref.argmax(1)
    entry["targets"] = [{"class": int(t)} for t in targets]
    entry["output_shape"] = list(ref.shape)
    export_both("vit", model, feeds, ref.numpy(), entry, False)

    with torch.no_grad():
        check("own functional forward == torchvision forward",
              rel_err(vit_functional(model, x, False), ref), 1e-12)
    plain, _ = pixel_relevance(model, x, targets)
    for comp, cp in (("cp-lrp", True), ("attn-lrp", False)):
        own, sel = pixel_relevance(lambda t, cp=cp: vit_functional(model, t, cp), x, targets)
        with exact_identity_rule():
            exact, _ = pixel_relevance(lambda t, cp=cp: vit_functional(model, t, cp), x, targets)
        id_err = check(f"{comp}: LXT identity rule (x+1e-10) vs exact", rel_err(own, exact),
                       IDENTITY_TOL)
        check_differs(f"{comp}: differs from plain gradient x input", rel_err(own, plain))
        if cp:
            with patched(lxt_vit.cp_LRP):
                with torch.no_grad():
                    check("LXT cp_LRP map: forward unchanged", rel_err(model(x), ref), 1e-12)
                lxt_rel, sel = pixel_relevance(model, x, targets)
            check("cp-lrp: LXT vit_torch.cp_LRP map == own functional", rel_err(own, lxt_rel),
                  CROSS_TOL)
            save_relevance("vit", comp, lxt_rel, sel, "lxt.efficient.models.vit_torch.cp_LRP "
                           "(LXT's own map for torchvision ViT)", entry, "input pixels [N,3,H,W]",
                           id_err, exact)
        else:
            save_relevance("vit", comp, own, sel,
                           "own functional ViT forward with LXT primitives: "
                           "divide_gradient(QK^T, 2), "
                           "divide_gradient(AV, 2), identity_rule_implicit(GELU), "
                           "patches.layer_norm_forward "
                           "(LXT has no AttnLRP map for torchvision ViT)",
                           entry, "input pixels [N,3,H,W]", id_err, exact)
    entry["notes"].append("relevance at the input pixels = input x gradient through the patch "
                          "convolution (plain gradient, epsilon 0; no zennit rules)")


def select_class(targets):
    return lambda out: out.gather(1, targets[:, None])[:, 0]


def select_next_token(targets):
    return lambda out: out[:, -1, :].gather(1, targets[:, None])[:, 0]


def token_checks(model, feeds, select, ref):
    plain, _, out = token_relevance(model, feeds, select)
    check("inputs_embeds path forward == token-id forward", rel_err(out, ref), 1e-12)
    check("harness (no patches) == gradient x input via the id path",
          rel_err(plain, token_gradient_input_via_ids(model, feeds, select)), 1e-12)
    return plain


def lxt_token_run(model_fn, feeds, select, patch_map, ref, plain, label):
    """Relevance under ``patch_map`` (LXT's identity rule, and the exact one for comparison)."""
    runs = []
    for exact in (False, True):
        ctx = exact_identity_rule() if exact else contextlib.nullcontext()
        with patched(patch_map), ctx:
            m = model_fn()
            rel, sel, out = token_relevance(m, feeds, select)
        runs.append((rel, sel, out))
    rel, sel, out = runs[0]
    check(f"{label}: patched forward == plain forward", rel_err(out, ref), 1e-12)
    id_err = check(f"{label}: LXT identity rule (x+1e-10) vs exact", rel_err(rel, runs[1][0]),
                   IDENTITY_TOL)
    check_differs(f"{label}: differs from plain gradient x input", rel_err(rel, plain))
    return rel, sel, id_err, runs[1][0]


def do_bert(entry, name="bert", conservation=False):
    model, feeds = (make_bert_conservation if conservation else make_bert)()
    t = {k: torch.from_numpy(v) for k, v in feeds.items()}
    with torch.no_grad():
        ref = model(**t).logits
    targets = ref.argmax(1)
    entry["targets"] = [{"class": int(c)} for c in targets]
    entry["output_shape"] = list(ref.shape)
    export_both(name, MaskedLogits(model), feeds, ref.numpy(), entry, False)
    sel_fn = select_class(targets)
    plain = token_checks(model, feeds, sel_fn, ref)
    at = "word-embedding output [N, tokens, hidden]"

    if conservation:
        rel, sel, id_err, exact = lxt_token_run(lambda: model, feeds, sel_fn, bert_own(True), ref,
                                                plain, "cp-lrp")
        check("cp-lrp conserves: sum R == logit (LXT's identity rule)",
              rel_err(rel.sum(dim=(1, 2)), sel), 1e-8)
        check("cp-lrp conserves: sum R == logit (exact identity rule)",
              rel_err(exact.sum(dim=(1, 2)), sel), 1e-12)
        save_relevance(name, "cp-lrp", rel, sel, "as bert cp-lrp", entry, at, id_err, exact)
        entry["notes"].append("every bias, LayerNorm shift, position and token-type embedding "
                              "zeroed: CP-LRP conserves (sum R == logit, checked here)")
        return

    # AttnLRP: LXT's own (transformers-4) BERT, cross-checked against the same rules on the
    # transformers-5 modules.
    lxt_rel, sel, id_err, exact = lxt_token_run(lambda: lxt_bert_model(model), feeds, sel_fn,
                                                lxt_bert.attnLRP,
                                 ref, plain, "attn-lrp (LXT bert map)")
    own, _, _, own_exact = lxt_token_run(lambda: model, feeds, sel_fn, bert_own(False), ref, plain,
                           "attn-lrp (own, HF5 modules)")
    check("attn-lrp: LXT bert map == own on HF5 modules", rel_err(own, lxt_rel), CROSS_TOL)
    check("attn-lrp: same, exact identity rule", rel_err(own_exact, exact), CROSS_TOL)
    save_relevance(name, "attn-lrp", lxt_rel, sel,
                   "lxt.efficient.models.bert.attnLRP (LXT's transformers-4 BERT, shimmed to run "
                   "on transformers 5; weights from the transformers-5 model)", entry, at, id_err,
                   exact)
    cp, sel, id_err, exact = lxt_token_run(lambda: model, feeds, sel_fn, bert_own(True), ref, plain,
                                    "cp-lrp")
    save_relevance(name, "cp-lrp", cp, sel,
                   "LXT primitives on the transformers-5 BERT: cp_wrap_attention_forward "
                   "(query, key detached) on eager attention, patches.layer_norm_forward, "
                   "identity_rule_implicit on GELU and the pooler tanh (LXT has no BERT CP map)",
                   entry, at, id_err, exact)
    entry["notes"].append("LXT's BERT map needs three shims on transformers 5.25 (see the "
                          "script's docstring); its relevance equals the same rules applied to "
                          "the transformers-5 modules within 1e-10")


def do_causal(entry, name, make, map_fn, map_name):
    model, feeds = make()
    t = {k: torch.from_numpy(v) for k, v in feeds.items()}
    with torch.no_grad():
        ref = model(**t, use_cache=False).logits
    tokens_ = ref[:, -1].argmax(1)
    last = ref.shape[1] - 1
    entry["targets"] = [{"position": last, "token": int(k)} for k in tokens_]
    entry["output_shape"] = list(ref.shape)
    export_both(name, CausalLogits(model), feeds, ref.numpy(), entry, name == "llama")
    sel_fn = select_next_token(tokens_)
    plain = token_checks(model, feeds, sel_fn, ref)
    at = "word-embedding output [N, tokens, hidden]"
    for comp, cp in (("attn-lrp", False), ("cp-lrp", True)):
        rel, sel, id_err, exact = lxt_token_run(lambda: model, feeds, sel_fn, map_fn(cp), ref,
                                                plain, comp)
        save_relevance(name, comp, rel, sel,
                       f"lxt.efficient.models.{map_name}.{'cp_LRP' if cp else 'attnLRP'} with the "
                       f"attention entry replaced by LXT's "
                       f"{'cp_wrap_attention_forward' if cp else 'wrap_attention_forward'} on "
                       f"modeling_{map_name}.eager_attention_forward", entry, at, id_err, exact)
    entry["notes"].append("LXT 2.1's patch_attention fails on transformers 5 (it replaces the "
                          "attention registry by a dict) and patch_cp_attention edits the global "
                          "registry: the script wraps eager_attention_forward with LXT's own "
                          "wrap_attention_forward / cp_wrap_attention_forward (same functions)")
    if name == "llama":
        entry["notes"].append("RMSNorm, the rotary cos/sin and the attention softmax computed in "
                              "the input dtype (HF and LXT use float32); LXT's RMSNorm rule "
                              "(normaliser detached) "
                              "applied in float64")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args()
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    manifest_path = OUT / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest.update({"lxt": "2.1", "torch": torch.__version__.split("+")[0],
                     "dtype": "float64", "ort_tolerance": ORT_TOL})
    manifest.setdefault("models", {})
    drivers = {
        "vit": do_vit,
        "bert": do_bert,
        "bert_conservation": partial(do_bert, name="bert_conservation", conservation=True),
        "gpt2": partial(do_causal, name="gpt2", make=make_gpt2, map_fn=gpt2_map, map_name="gpt2"),
        "llama": partial(do_causal, name="llama", make=make_llama, map_fn=llama_map,
                         map_name="llama"),
    }
    for name, drive in drivers.items():
        if args.only and name not in args.only:
            continue
        print(name)
        entry = {"exports": {}, "composites": {}, "notes": []}
        drive(entry)
        _, feeds = {"vit": make_vit, "bert": make_bert, "bert_conservation": make_bert,
                    "gpt2": make_gpt2, "llama": make_llama}[name]()
        entry["inputs"] = []
        for i, (k, v) in enumerate(feeds.items()):
            np.save(OUT / f"{name}.in{i}.npy", v)
            entry["inputs"].append({"name": k, "dtype": str(v.dtype), "shape": list(v.shape),
                                    "file": f"{name}.in{i}.npy"})
        manifest["models"][name] = entry
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
