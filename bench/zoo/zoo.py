#!/usr/bin/env python3
"""Model zoo check: real-world architectures, both PyTorch ONNX exporters, `prism predict` vs onnxruntime.

What it does (issue 14, item 6; not run in CI)
    For every model: build it with random weights (no downloads: torchvision ``weights=None``,
    timm ``pretrained=False``, Hugging Face ``*Model(*Config())``), seeded, eval mode. BatchNorm
    running statistics are first estimated from one batch of noise (as
    scripts/export_torchvision.py does; otherwise an untrained eval-mode network's outputs vanish
    or explode). Then, per exporter:
      legacy  torch.onnx.export(..., dynamo=False, opset_version=17, dynamic_axes={batch})
      dynamo  torch.onnx.export(..., dynamo=True, dynamic_shapes={batch}) ; prog.save(path)
    onnxruntime (CPU, graph optimisations off) runs the file, then
      prism predict MODEL.onnx --input NAME=FILE.npy [...] --output out.npy --top-k 0
    (the positional form ``prism predict MODEL.onnx FILE.npy`` when the binary has no --input
    option). Output 0 is compared: scaled error = max|prism - ort| / max|ort|, pass <= 1e-3.
    An export failure or an onnxruntime failure is recorded and not counted against Prism.
    Every model's files live in a temporary folder that is deleted before the next model starts.

    Prints a table and a summary: P/T passed (T = exports onnxruntime can run), failures grouped
    by the operator Prism is missing; writes everything to --out (JSON), after every model.

    --timing times ViT-B/16 (torchvision vit_b_16, 224x224) and BERT-base (seq 128) forward at
    batch 8 with Prism, onnxruntime and PyTorch on the same number of threads, and prints ratios.

How to run (from the repository root; the venv must have torch, torchvision, timm,
transformers, onnx, onnxruntime, onnxscript)
    cargo build --release -p prism-cli                       # target/release/prism
    /root/anchors/bin/python bench/zoo/zoo.py                # whole zoo, 224x224, both exporters
    /root/anchors/bin/python bench/zoo/zoo.py --size 160     # the non-224 case
    /root/anchors/bin/python bench/zoo/zoo.py --models resnet18,hf:bert --exporters dynamo
    /root/anchors/bin/python bench/zoo/zoo.py --models none --timing --build-bench
    /root/anchors/bin/python bench/zoo/zoo.py --list         # model names
See bench/zoo/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import traceback
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOL = 1e-3

# torchvision: one or two representatives of every classification family
TORCHVISION = [
    "alexnet", "vgg11", "vgg16_bn", "resnet18", "resnet50", "resnext50_32x4d", "wide_resnet50_2",
    "densenet121", "squeezenet1_0", "squeezenet1_1", "inception_v3", "googlenet", "mobilenet_v2",
    "mobilenet_v3_small", "mobilenet_v3_large", "mnasnet0_5", "shufflenet_v2_x0_5",
    "efficientnet_b0", "efficientnet_v2_s", "regnet_x_400mf", "regnet_y_400mf", "convnext_tiny",
    "vit_b_16", "swin_t", "swin_v2_t", "maxvit_t",
]
TIMM = [
    "timm:vit_small_patch16_224", "timm:deit_small_patch16_224", "timm:convnext_tiny",
    "timm:efficientnetv2_rw_t", "timm:regnety_002",
]
HF = ["hf:bert", "hf:distilbert", "hf:gpt2"]
DEFAULT_MODELS = TORCHVISION + TIMM + HF


def log(*a):
    print(*a, flush=True)


# ---------------------------------------------------------------------------------------------
# model construction
# ---------------------------------------------------------------------------------------------

def token_model(hf_model):
    """Wraps a Hugging Face model: positional (input_ids, attention_mask) -> last_hidden_state."""
    import torch

    class TokenModel(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            kw = {"use_cache": False} if "gpt2" in type(self.m).__name__.lower() else {}
            return self.m(input_ids=input_ids, attention_mask=attention_mask,
                          return_dict=True, **kw).last_hidden_state

    return TokenModel(hf_model)


def hf_config(name, tiny):
    import transformers as tf
    if name == "bert":
        c = tf.BertConfig()  # defaults = bert-base-uncased
        if tiny:
            c = tf.BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=128, vocab_size=1000, max_position_embeddings=256)
        return c, tf.BertModel
    if name == "distilbert":
        c = tf.DistilBertConfig()  # defaults = distilbert-base-uncased
        if tiny:
            c = tf.DistilBertConfig(dim=64, n_layers=2, n_heads=2, hidden_dim=128,
                                    vocab_size=1000, max_position_embeddings=256)
        return c, tf.DistilBertModel
    if name == "gpt2":
        c = tf.GPT2Config(use_cache=False)  # defaults = gpt2 (124M)
        if tiny:
            c = tf.GPT2Config(n_embd=64, n_layer=2, n_head=2, vocab_size=1000, n_positions=256,
                              bos_token_id=0, eos_token_id=0, use_cache=False)
        return c, tf.GPT2Model
    raise KeyError(f"unknown Hugging Face model '{name}' (bert, distilbert, gpt2)")


def randomize_zero_init(model, seed):
    """Draw weights that the architecture initialises to zero (ViT's and Swin's classifier
    heads, layer-scale or zero-init residual branches): with them the output is constant and
    the comparison proves nothing. Returns how many tensors were redrawn."""
    import torch
    g = torch.Generator().manual_seed(seed + 3)
    n = 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2 and not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
                n += 1
            elif p.dim() == 1 and not p.any() and not name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
                n += 1
    return n


def calibrate_bn(model, size, seed, calib_batch=8):
    """Estimate BN running statistics from a batch of noise; the rest of the model stays in eval."""
    import numpy as np
    import torch
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
        m.train()
    x = np.random.default_rng(seed + 2).standard_normal(
        (calib_batch, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        model(torch.from_numpy(x))
    for m in bns:
        m.eval()
    return len(bns)


def build(name, size, batch, seq, seed, tiny):
    """-> (module, [(input_name, ndarray)], kind, note). kind: 'image' | 'tokens'."""
    import numpy as np
    import torch
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed + 1)
    if name.startswith("hf:"):
        config, cls = hf_config(name[3:], tiny)
        model = token_model(cls(config)).eval()
        vocab = config.vocab_size
        ids = rng.integers(0, vocab, size=(batch, seq), dtype=np.int64)
        mask = np.ones((batch, seq), dtype=np.int64)
        if batch > 1:
            mask[1, seq - seq // 4:] = 0  # padding at the end of the second sequence
        note = f"{cls.__name__}({type(config).__name__}{'(tiny)' if tiny else '()'}), seq {seq}"
        return model, [("input_ids", ids), ("attention_mask", mask)], "tokens", note
    if name.startswith("timm:"):
        import timm
        arch = name[5:]
        kw = {}
        if arch.startswith(("vit_", "deit_", "eva", "beit")):
            kw["img_size"] = size
        model = timm.create_model(arch, pretrained=False, **kw).eval()
        note = f"timm.create_model('{arch}', pretrained=False{''.join(f', {k}={v}' for k, v in kw.items())})"
    else:
        import torchvision
        kw = {}
        if name.startswith("vit_"):
            kw["image_size"] = size
        if name.startswith("maxvit"):
            kw["input_size"] = (size, size)
        if name in ("googlenet", "inception_v3"):
            kw["init_weights"] = True
        model = torchvision.models.get_model(name, weights=None, **kw).eval()
        note = f"torchvision.models.{name}(weights=None{''.join(f', {k}={v}' for k, v in kw.items())})"
    nz = randomize_zero_init(model, seed)
    if nz:
        note += f", {nz} zero-initialised weights drawn at random"
    nbn = calibrate_bn(model, size, seed)
    if nbn:
        note += f", BN statistics calibrated on noise ({nbn} BN layers)"
    x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
    return model, [("input", x)], "image", note


# ---------------------------------------------------------------------------------------------
# export, onnxruntime, prism
# ---------------------------------------------------------------------------------------------

def short(e, n=400):
    s = " ".join(str(e).split())
    return s if len(s) <= n else s[: n - 3] + "..."


def export(model, inputs, kind, exporter, path, opset, dynamic_seq):
    import torch
    names = [n for n, _ in inputs]
    args = tuple(torch.from_numpy(a) for _, a in inputs)
    seq_dyn = dynamic_seq and kind == "tokens"
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "legacy":
            axes = {n: ({0: "batch", 1: "seq"} if seq_dyn else {0: "batch"}) for n in names}
            axes["output"] = {0: "batch", 1: "seq"} if seq_dyn else {0: "batch"}
            torch.onnx.export(model, args, str(path), dynamo=False, opset_version=opset,
                              input_names=names, output_names=["output"], dynamic_axes=axes)
        elif exporter == "dynamo":
            batch = torch.export.Dim("batch", min=1, max=4096)
            s = torch.export.Dim("seq", min=2, max=512)
            shapes = tuple({0: batch, 1: s} if seq_dyn else {0: batch} for _ in names)
            prog = torch.onnx.export(model, args, dynamo=True, dynamic_shapes=shapes,
                                     input_names=names, output_names=["output"])
            prog.save(str(path))
        else:
            raise ValueError(f"unknown exporter {exporter}")


def onnx_info(path):
    import onnx
    m = onnx.load(str(path), load_external_data=False)
    ops = sorted({(n.domain + "::" if n.domain not in ("", "ai.onnx") else "") + n.op_type
                  for n in m.graph.node})
    # ops inside local functions (if the exporter left any) count too
    for f in m.functions:
        ops = sorted(set(ops) | {n.op_type for n in f.node})
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)
    return ops, opset


def run_ort(path, feeds, threads, optimize=False):
    import numpy as np
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    missing = [n for n in names if n not in feeds]
    if missing:
        raise RuntimeError(f"model inputs {names}, no data for {missing}")
    out = sess.run(None, {n: feeds[n] for n in names})[0]
    return np.asarray(out), sess


_HELP_CACHE = {}


def prism_has_named_inputs(prism):
    """Whether `prism predict` takes --input NAME=FILE (issue 14, item 2)."""
    if prism not in _HELP_CACHE:
        try:
            h = subprocess.run([prism, "predict", "--help"], capture_output=True, text=True,
                               timeout=60).stdout
        except Exception:  # noqa: BLE001
            h = ""
        _HELP_CACHE[prism] = bool(re.search(r"--input[ =<]", h))
    return _HELP_CACHE[prism]


def prism_cmd(prism, model_path, files, threads, output=None, extra=()):
    """files: [(name, path)]. Named form when the binary has it, else positional (first input)."""
    cmd = [prism, "predict", str(model_path)]
    if prism_has_named_inputs(prism):
        for n, f in files:
            cmd += ["--input", f"{n}={f}"]
    else:
        cmd += [str(files[0][1])]
    if output:
        cmd += ["--output", str(output)]
    cmd += ["--top-k", "0", "--threads", str(threads), *extra]
    return cmd


def prism_env(threads):
    return dict(os.environ, RAYON_NUM_THREADS=str(threads), RUST_BACKTRACE="0")


RE_UNSUPPORTED = re.compile(r"uses operator '([^']+)'(?: \(domain '([^']*)'\))?")
RE_UNSUPPORTED_LIST = re.compile(r"unsupported operators?(?:\(s\))?[:\s]+([A-Za-z0-9_:.]+(?:\s*,\s*[A-Za-z0-9_:.]+)*)",
                                 re.IGNORECASE)
RE_SUPPORTED = re.compile(r"supported operators: ([A-Za-z0-9_, ]+)")


def clean_error(stderr):
    """Prism's error as one line, without the long list of supported operators."""
    lines = [l.strip() for l in stderr.splitlines() if l.strip()]
    lines = [l for l in lines if l not in ("Caused by:",) and not l.startswith(("note: run with", "wrote logits"))]
    lines = [re.sub(r"^\d+:\s*", "", l) for l in lines]
    s = " | ".join(lines)
    s = re.sub(r";?\s*supported operators: [A-Za-z0-9_, ]+", "", s)
    return s


def missing_ops(stderr, model_ops):
    """Operators Prism lacks: the one its error names, plus every other op of the model that is
    absent from the supported list the error prints."""
    named = []
    for m in RE_UNSUPPORTED.finditer(stderr):
        named.append((m.group(2) + "::" if m.group(2) else "") + m.group(1))
    for m in RE_UNSUPPORTED_LIST.finditer(stderr):
        named += [t.strip() for t in m.group(1).split(",") if t.strip()]
    if not named:
        return []
    sup = RE_SUPPORTED.search(stderr)
    rest = []
    if sup:
        supported = {t.strip() for t in sup.group(1).split(",")}
        rest = [o for o in model_ops if o not in supported]
    return sorted(set(named) | set(rest))


def check_one(name, exporter, model, inputs, kind, ref, args, work):
    """One (model, exporter) row."""
    import numpy as np
    row = {"model": name, "exporter": exporter, "status": None, "scaled_error": None,
           "message": "", "missing_ops": [], "ops": [], "opset": None,
           "export_s": None, "ort_s": None, "prism_s": None}
    path = work / f"{exporter}.onnx"
    t0 = time.time()
    try:
        export(model, inputs, kind, exporter, path, args.opset, args.dynamic_seq)
    except Exception as e:  # noqa: BLE001
        row.update(status="export failed", message=f"export failed: {short(e)}",
                   export_s=round(time.time() - t0, 2))
        return row
    row["export_s"] = round(time.time() - t0, 2)
    try:
        row["ops"], row["opset"] = onnx_info(path)
        row["size_mb"] = round(sum(f.stat().st_size for f in work.glob(f"{exporter}.onnx*")) / 1e6, 1)
    except Exception as e:  # noqa: BLE001
        row["message"] = f"onnx.load: {short(e)}"

    feeds = {n: a for n, a in inputs}
    t0 = time.time()
    try:
        y_ort, _ = run_ort(path, feeds, args.threads)
    except Exception as e:  # noqa: BLE001
        row.update(status="ort failed", message=f"ort failed: {short(e)}",
                   ort_s=round(time.time() - t0, 2))
        return row
    row["ort_s"] = round(time.time() - t0, 2)
    if ref is not None and ref.shape == y_ort.shape:
        row["ort_vs_torch"] = float(np.max(np.abs(ref - y_ort)) / max(np.max(np.abs(ref)), 1e-30))

    files = []
    for n, a in inputs:
        f = work / f"in.{re.sub(r'[^A-Za-z0-9_.-]', '_', n)}.npy"
        np.save(f, a)  # float32 images, int64 token ids and masks
        files.append((n, f))
    out = work / f"{exporter}.prism.npy"
    cmd = prism_cmd(args.prism, path, files, args.threads, output=out)
    row["prism_cmd"] = " ".join(str(c) for c in cmd)
    t0 = time.time()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=prism_env(args.threads),
                           timeout=args.prism_timeout)
        rc, stderr = p.returncode, p.stderr + p.stdout
    except subprocess.TimeoutExpired:
        rc, stderr = -1, f"timed out after {args.prism_timeout} s"
    row["prism_s"] = round(time.time() - t0, 2)
    if rc != 0 or not out.exists():
        msg = clean_error(stderr).replace(f"{work}/", "") or f"exit code {rc}"
        row.update(status="prism failed", message=msg,
                   missing_ops=missing_ops(stderr, row["ops"]))
        return row
    y = np.load(out)
    if y.size != y_ort.size:
        row.update(status="mismatch",
                   message=f"output shape {list(y.shape)}, onnxruntime {list(y_ort.shape)}")
        return row
    y = y.reshape(y_ort.shape).astype(np.float64)
    yo = y_ort.astype(np.float64)
    denom = float(np.max(np.abs(yo)))
    err = float(np.max(np.abs(y - yo)) / max(denom, 1e-30))
    if not np.all(np.isfinite(y)):
        err = float("inf")
    row["scaled_error"] = err
    row["max_abs_ort"] = denom
    if err <= TOL:
        row["status"] = "pass"
    else:
        row.update(status="mismatch", message=f"scaled max error {err:.3g} > {TOL:g}")
    return row


def run_model(name, args):
    import numpy as np
    import torch
    rows = []
    t0 = time.time()
    work = Path(tempfile.mkdtemp(prefix="zoo-", dir=args.workdir))
    try:
        try:
            model, inputs, kind, note = build(name, args.size, args.batch, args.seq, args.seed, args.tiny)
            with torch.no_grad():
                ref = model(*[torch.from_numpy(a) for _, a in inputs])
            ref = ref.detach().numpy() if isinstance(ref, torch.Tensor) else None
        except Exception as e:  # noqa: BLE001
            msg = f"model failed: {short(e)}"
            log(f"  {name}: {msg}")
            return [{"model": name, "exporter": ex, "status": "model failed", "message": msg,
                     "scaled_error": None, "missing_ops": []} for ex in args.exporters]
        for ex in args.exporters:
            row = check_one(name, ex, model, inputs, kind, ref, args, work)
            row["note"] = note
            row["input_shapes"] = {n: list(a.shape) for n, a in inputs}
            row["input_dtypes"] = {n: str(a.dtype) for n, a in inputs}
            rows.append(row)
            print_row(row)
            if args.keep_dir:
                dst = Path(args.keep_dir) / name.replace(":", "_")
                dst.mkdir(parents=True, exist_ok=True)
                for f in work.iterdir():
                    shutil.copy2(f, dst / f.name)
            for f in work.glob(f"{ex}.*"):  # free the disk before the next exporter
                f.unlink()
        del model
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for r in rows:
        r["model_s"] = round(time.time() - t0, 1)
    return rows


# ---------------------------------------------------------------------------------------------
# table and summary
# ---------------------------------------------------------------------------------------------

HEADER = f"{'model':<28} {'exporter':<7} {'status':<13} {'error':>9} {'export':>7} {'prism':>7}  message"


def fmt_s(v):
    return f"{v:7.1f}" if isinstance(v, (int, float)) else f"{'-':>7}"


def print_row(r):
    e = r.get("scaled_error")
    es = f"{e:9.1e}" if isinstance(e, float) else f"{'-':>9}"
    msg = r.get("message", "")
    if r.get("missing_ops"):
        msg = "missing " + ",".join(r["missing_ops"]) + " | " + msg
    if len(msg) > 110:
        msg = msg[:107] + "..."
    log(f"{r['model']:<28} {r['exporter']:<7} {r['status']:<13} {es} {fmt_s(r.get('export_s'))} "
        f"{fmt_s(r.get('prism_s'))}  {msg}")


def normalise(msg):
    """Group key for failures without a missing op: drop paths, node names and numbers."""
    m = re.sub(r"(?<![\w.])/(?:[\w.+-]+/)+[\w.+-]*", "<path>", msg)
    m = re.sub(r"\b(legacy|dynamo)\.onnx", "MODEL.onnx", m)
    m = re.sub(r"'[^']*'", "'…'", m)
    m = re.sub(r"\d+", "N", m)
    return m[:160]


def summary(rows):
    lines = []
    ran = [r for r in rows if r["status"] in ("pass", "mismatch", "prism failed")]
    passed = [r for r in ran if r["status"] == "pass"]
    lines.append(f"Prism passed {len(passed)}/{len(ran)} of the exports onnxruntime runs "
                 f"(scaled max error <= {TOL:g})")
    for ex in sorted({r["exporter"] for r in rows}):
        rr = [r for r in ran if r["exporter"] == ex]
        lines.append(f"  {ex:<7} {sum(r['status'] == 'pass' for r in rr)}/{len(rr)}")
    for st in ("export failed", "ort failed", "model failed"):
        bad = [r for r in rows if r["status"] == st]
        if bad:
            lines.append(f"{st} (not counted): {len(bad)}: "
                         + ", ".join(f"{r['model']}/{r['exporter']}" for r in bad))
    byop = {}
    other = {}
    for r in ran:
        if r["status"] == "pass":
            continue
        if r.get("missing_ops"):
            for op in r["missing_ops"]:
                byop.setdefault(op, []).append(f"{r['model']}/{r['exporter']}")
        else:
            key = "mismatch" if r["status"] == "mismatch" and "scaled" in r["message"] \
                else normalise(r["message"])
            other.setdefault(key, []).append(f"{r['model']}/{r['exporter']}")
    if byop:
        lines.append("Failures by missing operator (an export may need several):")
        for op, who in sorted(byop.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            lines.append(f"  {op:<24} {len(who):>3}  {', '.join(who)}")
    if other:
        lines.append("Other failures:")
        for k, who in sorted(other.items(), key=lambda kv: -len(kv[1])):
            lines.append(f"  {len(who):>3}  {k}\n       {', '.join(who)}")
    return lines, {"passed": len(passed), "total": len(ran),
                   "by_missing_op": byop, "other_failures": other}


# ---------------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------------

def median_time(f, warmup, runs):
    for _ in range(warmup):
        f()
    t = []
    for _ in range(runs):
        s = time.perf_counter()
        f()
        t.append((time.perf_counter() - s) * 1e3)
    return statistics.median(t), min(t)


def prism_bench_model(args, path, batch, files, kind, size):
    """Prism forward time through the timing harness crates/prism-model/examples/bench.rs
    (`bench model MODEL.onnx BATCH`: one warm-up, runs until 2 s, 3..20 runs, median).
    That harness feeds one random N x 3 x 224 x 224 input, so it is used only for an image model
    at 224; other inputs go as `--input NAME=FILE.npy` (BATCH is then read from the arrays);
    with an older harness that lacks it, None is returned (the caller falls back to the
    predict slope)."""
    exe = args.bench_exe
    if not exe or not Path(exe).exists():
        return None, f"no timing harness at {exe}"
    env = prism_env(args.threads)
    if kind == "image" and size == 224:
        cmd = [exe, "model", str(path), str(batch)]
    else:
        # today's harness would read "--input" as a batch size and time a random 224x224 image
        # instead: use the named form only when its usage line mentions it
        usage = subprocess.run([exe], capture_output=True, text=True, env=env, timeout=60)
        if "--input" not in usage.stdout + usage.stderr:
            return None, "the timing harness feeds only N x 3 x 224 x 224 images"
        cmd = [exe, "model", str(path), str(batch)] + [
            a for n, f in files for a in ("--input", f"{n}={f}")]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.prism_timeout)
    recs = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
    if p.returncode != 0 or not recs:
        return None, f"bench harness: {clean_error(p.stderr)[:200] or p.returncode}"
    return (recs[-1]["median_ms"], recs[-1]["min_ms"]), "examples/bench (median of its runs)"


def prism_predict_slope(args, path, inputs, batch, work, k=4):
    """Prism forward time from `prism predict` wall times: one run on `batch` samples and one on
    k*batch samples with --batch-size batch; (t_k - t_1) / (k - 1) is one forward pass of `batch`
    samples without the model load, process start and file reading (medians over --runs)."""
    import numpy as np
    small, big = [], []
    for n, a in inputs:
        f1, fk = work / f"t1.{n}.npy", work / f"tk.{n}.npy"
        np.save(f1, a)
        np.save(fk, np.concatenate([a] * k, axis=0))
        small.append((n, f1))
        big.append((n, fk))
    env = prism_env(args.threads)
    c1 = prism_cmd(args.prism, path, small, args.threads, extra=["--batch-size", str(batch)])
    ck = prism_cmd(args.prism, path, big, args.threads, extra=["--batch-size", str(batch)])

    def wall(cmd):
        s = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.prism_timeout)
        if p.returncode != 0:
            raise RuntimeError(clean_error(p.stderr)[:300])
        return (time.perf_counter() - s) * 1e3

    wall(c1)  # warm-up (page cache)
    t1 = [wall(c1) for _ in range(args.runs)]
    tk = [wall(ck) for _ in range(args.runs)]
    per = (statistics.median(tk) - statistics.median(t1)) / (k - 1)
    return (per, per), f"prism predict slope ({k}x{batch} vs {batch} samples, medians of {args.runs})"


def timing(args):
    import numpy as np
    import torch
    results = []
    ex = args.timing_exporter
    size = args.timing_size
    for name in resolve_models(args.timing_models, False):
        work = Path(tempfile.mkdtemp(prefix="zoo-time-", dir=args.workdir))
        try:
            model, inputs, kind, note = build(name, size, args.timing_batch,
                                              args.timing_seq, args.seed, args.tiny)
            label = (f"{name} b={args.timing_batch} " +
                     (f"{size}x{size}" if kind == "image" else f"seq={args.timing_seq}"))
            log(f"timing {label} ({note}), {args.threads} threads, exporter {ex}")
            rec = {"case": label, "note": note, "threads": args.threads, "exporter": ex}
            tin = [torch.from_numpy(a) for _, a in inputs]
            with torch.no_grad():
                rec["torch_ms"], rec["torch_min_ms"] = median_time(lambda: model(*tin), args.warmup,
                                                                   args.runs)
            log(f"  torch        {rec['torch_ms']:9.1f} ms")
            path = work / f"{ex}.onnx"
            export(model, inputs, kind, ex, path, args.opset, False)
            del model
            feeds = {n: a for n, a in inputs}
            for opt, key in ((True, "ort_ms"), (False, "ort_noopt_ms")):
                _, sess = run_ort(path, feeds, args.threads, optimize=opt)
                rec[key], rec[key.replace("_ms", "_min_ms")] = median_time(
                    lambda: sess.run(None, feeds), args.warmup, args.runs)
                del sess
            log(f"  onnxruntime  {rec['ort_ms']:9.1f} ms (graph optimisations on; "
                f"{rec['ort_noopt_ms']:.1f} ms with them off)")
            files = []
            for n, a in inputs:
                f = work / f"in.{n}.npy"
                np.save(f, a)
                files.append((n, f))
            t, how = prism_bench_model(args, path, args.timing_batch, files, kind, size)
            if t is None:
                log(f"  ({how}; using prism predict wall times)")
                try:
                    t, how = prism_predict_slope(args, path, inputs, args.timing_batch, work)
                except Exception as e:  # noqa: BLE001
                    t, how = None, f"prism failed: {short(e, 300)}"
            rec["prism_method"] = how
            if t is not None:
                rec["prism_ms"], rec["prism_min_ms"] = t
                rec["prism_vs_ort"] = t[0] / rec["ort_ms"]
                rec["prism_vs_torch"] = t[0] / rec["torch_ms"]
                log(f"  prism        {t[0]:9.1f} ms  [{how}]")
                log(f"  prism/ort {rec['prism_vs_ort']:.2f}x   prism/torch {rec['prism_vs_torch']:.2f}x"
                    + ("   (acceptance: ViT-B/16 within 1.5x of onnxruntime)" if name == "vit_b_16" else ""))
            else:
                log(f"  prism        -  {how}")
            results.append(rec)
        except Exception as e:  # noqa: BLE001
            log(f"  {name}: timing failed: {short(e)}")
            results.append({"case": name, "error": short(e)})
        finally:
            shutil.rmtree(work, ignore_errors=True)
    if results:
        log(f"\n{'case':<26}{'prism ms':>10}{'ort ms':>10}{'torch ms':>10}{'p/ort':>8}{'p/torch':>9}")
        for r in results:
            if "torch_ms" not in r:
                continue
            p = r.get("prism_ms")
            log(f"{r['case']:<26}{(f'{p:.1f}' if p else '-'):>10}{r['ort_ms']:>10.1f}{r['torch_ms']:>10.1f}"
                f"{(f'{p / r['ort_ms']:.2f}x' if p else '-'):>8}{(f'{p / r['torch_ms']:.2f}x' if p else '-'):>9}")
    return results


# ---------------------------------------------------------------------------------------------

def resolve_models(spec, all_tv):
    if spec in ("", "none"):
        return []
    if spec == "all":
        names = list(DEFAULT_MODELS)
    else:
        names = [n.strip() for n in spec.split(",") if n.strip()]
        aliases = {"bert": "hf:bert", "distilbert": "hf:distilbert", "gpt2": "hf:gpt2"}
        names = [aliases.get(n, n) for n in names]
    if all_tv:
        import torchvision
        extra = sorted(torchvision.models.list_models(module=torchvision.models))
        names = [n for n in names if n.startswith(("timm:", "hf:"))] + extra + \
            [n for n in names if n not in extra and not n.startswith(("timm:", "hf:"))]
    return names


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="See bench/zoo/README.md")
    ap.add_argument("--models", default="all",
                    help="comma-separated: torchvision names (any classification model), "
                         "timm:<name>, hf:bert, hf:distilbert, hf:gpt2; 'all' (default) = the zoo "
                         "list (--list), 'none' = no zoo (with --timing)")
    ap.add_argument("--all-torchvision", action="store_true",
                    help="every torchvision classification model instead of one or two per family")
    ap.add_argument("--list", action="store_true", help="print the default model list and exit")
    ap.add_argument("--exporters", default="legacy,dynamo", help="legacy,dynamo (default both)")
    ap.add_argument("--size", type=int, default=224, help="image side (default 224)")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=16, help="token models' sequence length (default 16)")
    ap.add_argument("--dynamic-seq", action="store_true",
                    help="token models: sequence axis dynamic too (default: batch only)")
    ap.add_argument("--tiny", action="store_true",
                    help="shrink the Hugging Face configs (2 layers, width 64) for smoke tests")
    ap.add_argument("--opset", type=int, default=17, help="legacy exporter opset (default 17); "
                    "the dynamo exporter uses its own default")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2,
                    help="threads for torch, onnxruntime and Prism (RAYON_NUM_THREADS, --threads)")
    ap.add_argument("--prism", default="target/release/prism",
                    help="prism binary (default target/release/prism, relative to the repo root)")
    ap.add_argument("--prism-timeout", type=int, default=900, help="seconds per prism run")
    ap.add_argument("--out", default=None,
                    help="JSON results (default target/zoo/results.json, git-ignored)")
    ap.add_argument("--workdir", default=None, help="where the per-model temp folders go")
    ap.add_argument("--keep-dir", default=None,
                    help="copy every model's files (onnx, inputs, outputs) here (disk!)")
    t = ap.add_argument_group("timing (--timing)")
    t.add_argument("--timing", action="store_true",
                   help="time ViT-B/16 and BERT-base forward: Prism, onnxruntime, PyTorch")
    t.add_argument("--timing-models", default="vit_b_16,hf:bert",
                   help="models to time (default vit_b_16,hf:bert)")
    t.add_argument("--timing-batch", type=int, default=8)
    t.add_argument("--timing-seq", type=int, default=128)
    t.add_argument("--timing-size", type=int, default=224)
    t.add_argument("--timing-exporter", default="legacy", choices=["legacy", "dynamo"])
    t.add_argument("--runs", type=int, default=5, help="timed runs after the warm-up (median)")
    t.add_argument("--warmup", type=int, default=1)
    t.add_argument("--bench-exe", default="target/release/examples/bench",
                   help="Prism timing harness (crates/prism-model/examples/bench.rs)")
    t.add_argument("--build-bench", action="store_true",
                   help="cargo build --release -p prism-model --example bench first")
    args = ap.parse_args()

    if args.list:
        print("\n".join(DEFAULT_MODELS))
        return
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[k] = str(args.threads)
    args.exporters = [e.strip() for e in args.exporters.split(",") if e.strip()]
    for e in args.exporters:
        if e not in ("legacy", "dynamo"):
            ap.error(f"unknown exporter '{e}' (legacy, dynamo)")
    if args.out is None:
        args.out = str(ROOT / "target" / "zoo" / "results.json")
    for attr in ("prism", "bench_exe"):
        p = Path(getattr(args, attr))
        if not p.is_absolute() and not p.exists():
            p = ROOT / p
        setattr(args, attr, str(p))

    import numpy as np  # noqa: F401
    import onnx
    import onnxruntime
    import torch
    torch.set_num_threads(args.threads)
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    warnings.filterwarnings("ignore")
    import logging
    logging.getLogger("torch").setLevel(logging.ERROR)
    logging.getLogger("onnxscript").setLevel(logging.ERROR)
    with contextlib.suppress(Exception):
        import transformers
        transformers.logging.set_verbosity_error()

    names = resolve_models(args.models, args.all_torchvision)
    if names and not Path(args.prism).exists():
        ap.error(f"no prism binary at {args.prism} (cargo build --release -p prism-cli, or --prism)")
    versions = {"torch": torch.__version__, "onnx": onnx.__version__,
                "onnxruntime": onnxruntime.__version__, "python": platform.python_version()}
    for mod in ("torchvision", "timm", "transformers", "onnxscript"):
        with contextlib.suppress(Exception):
            versions[mod] = __import__(mod).__version__
    result = {"args": {k: v for k, v in vars(args).items()}, "versions": versions,
              "prism_named_inputs": prism_has_named_inputs(args.prism) if names else None,
              "rows": [], "summary": None, "timing": None}

    def save():
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            with open(args.out, "w") as f:
                json.dump(result, f, indent=1, default=str)
                f.write("\n")

    if names:
        log(f"{len(names)} models x {args.exporters}, size {args.size}, batch {args.batch}, "
            f"threads {args.threads}, prism {args.prism}"
            f"{'' if result['prism_named_inputs'] else ' (no --input NAME=FILE: positional input)'}")
        log(HEADER)
        t0 = time.time()
        for name in names:
            try:
                result["rows"] += run_model(name, args)
            except Exception as e:  # noqa: BLE001 — keep going, whatever breaks
                traceback.print_exc()
                result["rows"] += [{"model": name, "exporter": ex, "status": "model failed",
                                    "message": f"script error: {short(e)}", "missing_ops": []}
                                   for ex in args.exporters]
            lines, result["summary"] = summary(result["rows"])
            save()
        log("")
        log(HEADER)
        for r in result["rows"]:
            print_row(r)
        log("")
        for line in lines:
            log(line)
        log(f"({time.time() - t0:.0f} s)")

    if args.timing:
        if args.build_bench:
            subprocess.run(["cargo", "build", "--release", "-q", "-p", "prism-model", "--example",
                            "bench"], cwd=ROOT, check=True)
        log("")
        result["timing"] = timing(args)
        save()
    if args.out:
        log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
