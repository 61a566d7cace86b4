#!/usr/bin/env python3
"""Prism vs LXT 2.1 on transformers (issue 15): AttnLRP on ViT-B/16 and BERT-base, same threads.

Models (random weights, float32): torchvision ``vit_b_16`` at 224x224 and Hugging Face
``BertForSequenceClassification`` with BERT-base's config (12 layers, hidden 768, 2 labels) on
128 tokens; batch 8 by default. Relevance for each sample's arg-max class, seeded with the
logit's value.

* LXT side (a worker subprocess of this script): BERT with LXT's own bert map (``attnLRP``;
  LXT's transformers-4 modeling_bert, shimmed to run on transformers 5, with the weights of the
  transformers-5 model), relevance at the word-embedding output; ViT with LXT's own map for
  torchvision ViT, which is ``vit_torch.cp_LRP`` (AttnLRP outside attention, CP-LRP inside: LXT
  cannot patch inside ``nn.MultiheadAttention``), relevance at the pixels. Timed: forward +
  ``logit.backward()`` + input x grad, median of ``--runs`` after one warm-up; also the forward
  alone (no grad).
* Prism side: the same model exported to ONNX (legacy exporter, opset 17; cached under
  ``target/lxt_bench/``), then ``prism explain MODEL --input NAME=FILE ... --composite attn-lrp
  --seed-mode logit -o R.npy`` through ``--prism-bin`` (``--prism-args`` replaces the method
  arguments), one process per run (so its time includes process start, model load and reading
  the inputs); also ``prism predict`` for context.

Threads: ``--threads`` (default 2) for both: ``torch.set_num_threads`` and OMP/MKL variables for
LXT, ``RAYON_NUM_THREADS`` for Prism. Peak memory: each side runs in its own process; LXT's is
the worker's peak RSS (VmHWM, which includes Python and torch), Prism's the ru_maxrss of each
``prism`` process (os.wait4), the largest over the runs. Prints a table and the ratio lines
(throughput Prism/LXT, memory Prism/LXT); ``--json OUT`` saves everything.

    /root/anchors/bin/python bench/transformers/lxt_bench.py [--models vit,bert] [--batch 8]
        [--tokens 128] [--runs 5] [--threads 2] [--prism-bin target/release/prism] [--json OUT]

Needs torch, torchvision, transformers, onnx and ``lxt==2.1`` (``pip install lxt==2.1``). Not run
in CI. Quick check on a shared machine: ``--batch 1 --runs 1``.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
CACHE = ROOT / "target" / "lxt_bench"
SEED = 0


def set_threads(n):
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[k] = str(n)


def peak_rss_mb():
    """This process's peak resident set (VmHWM), MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------------------
# Models and inputs (the same in the export and the LXT worker: seeded construction)

def bert_config():
    from transformers import BertConfig
    cfg = BertConfig(num_labels=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                     attn_implementation="eager")  # BERT-base: 12 layers, 768 hidden, 12 heads
    return cfg


def build(model):
    import torch
    torch.manual_seed(SEED)
    if model == "vit":
        from torchvision.models import vit_b_16
        m = vit_b_16(weights=None)
        # torchvision zero-initialises the head; random logits make the target meaningful
        torch.nn.init.normal_(m.heads.head.weight, std=0.02)
    else:
        from transformers.models.bert import modeling_bert
        m = modeling_bert.BertForSequenceClassification(bert_config())
    return m.eval()


def inputs(model, batch, tokens):
    import numpy as np
    r = np.random.default_rng(SEED + 1)
    if model == "vit":
        return {"x": r.standard_normal((batch, 3, 224, 224)).astype(np.float32)}
    ids = r.integers(1000, 30000, size=(batch, tokens)).astype(np.int64)
    ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP]
    return {"input_ids": ids, "attention_mask": np.ones((batch, tokens), np.int64)}


# ---------------------------------------------------------------------------------------------
# LXT worker

def lxt_shims():
    """LXT 2.1 on transformers 5: its transformers-4 modeling_bert imports a removed helper
    (only used for head pruning) and calls two removed PreTrainedModel methods."""
    import torch
    import transformers.pytorch_utils as pu
    if not hasattr(pu, "find_pruneable_heads_and_indices"):
        def no_pruning(*_a, **_k):
            raise NotImplementedError("head pruning")
        pu.find_pruneable_heads_and_indices = no_pruning
    import lxt.efficient.models.bert as lxt_bert

    def extended_mask(self, attention_mask, input_shape, device=None, dtype=None):
        dtype = dtype or self.dtype
        return (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min

    def head_mask(self, head_mask, num_hidden_layers, is_attention_chunked=False):
        return [None] * num_hidden_layers

    lxt_bert.BertModel.get_extended_attention_mask = extended_mask
    lxt_bert.BertModel.get_head_mask = head_mask
    return lxt_bert


def median_ms(f, runs):
    f()  # warm-up
    t = []
    for _ in range(runs):
        s = time.perf_counter()
        f()
        t.append((time.perf_counter() - s) * 1e3)
    return statistics.median(t), t


def lxt_worker(a):
    set_threads(a.threads)
    import numpy as np
    import torch
    torch.set_num_threads(a.threads)
    warnings.simplefilter("ignore")
    lxt_bert = lxt_shims()
    from lxt.efficient import monkey_patch
    feeds = {k: torch.from_numpy(v) for k, v in inputs(a.model, a.batch, a.tokens).items()}
    if a.model == "vit":
        import lxt.efficient.models.vit_torch as lxt_vit
        from torchvision.models import vision_transformer
        model = build("vit")
        monkey_patch(vision_transformer, lxt_vit.cp_LRP)
        lxt_map = "lxt.efficient.models.vit_torch.cp_LRP (LXT's only map for torchvision ViT)"
        x = feeds["x"]

        def forward(inp):
            return model(inp)

        def explain():
            inp = x.clone().requires_grad_()
            y = forward(inp)
            y.gather(1, y.argmax(1, keepdim=True)).sum().backward()
            return (inp * inp.grad).detach()
    else:
        from transformers.models.bert import modeling_bert
        hf5 = build("bert")
        monkey_patch(modeling_bert, lxt_bert.attnLRP)
        cfg = bert_config()
        cfg.position_embedding_type = "absolute"
        cfg._attn_implementation = "eager"
        model = modeling_bert.BertForSequenceClassification(cfg)
        model.load_state_dict(hf5.state_dict(), strict=False)
        model.eval()
        del hf5
        lxt_map = "lxt.efficient.models.bert.attnLRP (LXT's bert map)"
        ids, mask = feeds["input_ids"], feeds["attention_mask"]

        def forward(emb):
            return model(inputs_embeds=emb, attention_mask=mask).logits

        def explain():
            emb = model.get_input_embeddings()(ids).detach().requires_grad_()
            y = forward(emb)
            y.gather(1, y.argmax(1, keepdim=True)).sum().backward()
            return (emb * emb.grad).detach()

        x = None

    def forward_only():
        with torch.no_grad():
            if a.model == "vit":
                return forward(x)
            return forward(model.get_input_embeddings()(ids))

    fwd_ms, _ = median_ms(forward_only, a.runs)
    exp_ms, times = median_ms(explain, a.runs)
    r = explain()
    if a.save:
        np.save(a.save, r.numpy())
    print(json.dumps({"explain_ms": exp_ms, "explain_runs_ms": times, "forward_ms": fwd_ms,
                      "peak_rss_mb": peak_rss_mb(), "map": lxt_map,
                      "relevance_shape": list(r.shape), "torch": torch.__version__,
                      "threads": torch.get_num_threads()}))


# ---------------------------------------------------------------------------------------------
# Export worker (its own process, so its memory does not count anywhere)

def export_worker(a):
    import numpy as np
    import torch
    import onnx
    warnings.simplefilter("ignore")
    model = build(a.model)
    feeds = inputs(a.model, 1, a.tokens)
    names = list(feeds)
    args = tuple(torch.from_numpy(v) for v in feeds.values())
    if a.model == "bert":
        class Logits(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, input_ids, attention_mask):
                return self.m(input_ids=input_ids, attention_mask=attention_mask).logits
        model = Logits(model)
    axes = {n: {0: "batch"} for n in names}
    if a.model == "bert":
        axes = {n: {0: "batch", 1: "tokens"} for n in names}
    # grad mode on: nn.MultiheadAttention's fused fast path (not exportable) stays off
    torch.onnx.export(model, args, a.out, dynamo=False, opset_version=17, input_names=names,
                      output_names=["logits"], dynamic_axes={**axes, "logits": {0: "batch"}})
    onnx.checker.check_model(a.out)
    np.save(a.out + ".names.npy", np.array(names))


# ---------------------------------------------------------------------------------------------
# Driver

def run_child(cmd, env=None):
    """Run a command; return (seconds, peak RSS MB of that process, stdout, stderr, rc)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        p = subprocess.Popen(cmd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(p.pid, 0)
        secs = time.perf_counter() - start
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return (secs, usage.ru_maxrss / 1024, out.read().decode(errors="replace"),
                err.read().decode(errors="replace"), p.returncode)


def ensure_onnx(model, tokens):
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / (f"{model}_s{SEED}.onnx" if model == "vit" else f"bert_s{SEED}.onnx")
    if not path.exists():
        print(f"exporting {model} to {path} ...", flush=True)
        secs, _, out, err, rc = run_child([sys.executable, __file__, "--worker", "export",
                                           "--model", model, "--tokens", str(tokens),
                                           "--out", str(path)])
        if rc != 0:
            raise SystemExit(f"export of {model} failed:\n{err[-3000:]}")
    return path


def prism_side(a, model, onnx_path, feeds_dir, env):
    import numpy as np
    feeds = inputs(model, a.batch, a.tokens)
    args = []
    for k, v in feeds.items():
        f = feeds_dir / f"{model}.{k}.npy"
        np.save(f, v)
        args += ["--input", f"{k}={f}"]
    res = {}
    # `prism inspect` parses the model and stops: its time estimates what every explain/predict
    # process spends starting and loading the model (its exit status is ignored: it may ask for
    # --input-shape on symbolic dimensions after having loaded the model).
    t = []
    for i in range(a.runs + 1):
        secs, _, _, _, _ = run_child([a.prism_bin, "inspect", str(onnx_path)], env)
        if i:
            t.append(secs * 1e3)
    res["load"] = {"ms": statistics.median(t), "runs_ms": t}
    for what, cmd in (
            ("explain", [a.prism_bin, "explain", str(onnx_path), *args, *a.prism_args.split(),
                         "-o", str(feeds_dir / f"{model}.R.npy")]),
            ("predict", [a.prism_bin, "predict", str(onnx_path), *args, "-o",
                         str(feeds_dir / f"{model}.logits.npy")])):
        times, peaks = [], []
        for i in range(a.runs + 1):  # the first run warms the page cache
            secs, peak, _, err, rc = run_child(cmd, env)
            if rc != 0:
                msg = (err.strip().splitlines() or ["(no message)"])[-1][:300]
                res[what] = {"error": f"exit {rc}: {msg}", "command": " ".join(cmd)}
                break
            if i:
                times.append(secs * 1e3)
                peaks.append(peak)
        else:
            res[what] = {"ms": statistics.median(times), "runs_ms": times,
                         "peak_rss_mb": max(peaks), "command": " ".join(cmd)}
    if "ms" in res.get("explain", {}):
        r = np.load(feeds_dir / f"{model}.R.npy")
        res["explain"]["relevance_shape"] = list(r.shape)
        res["explain"]["ms_minus_load"] = res["explain"]["ms"] - res["load"]["ms"]
    return res


def fmt(v, spec):
    width = int(spec.split(".")[0] or 1)
    return format(v, spec) if isinstance(v, (int, float)) else "-".rjust(width)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--models", default="vit,bert")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prism-bin", default=str(ROOT / "target" / "release" / "prism"))
    ap.add_argument("--prism-args", default="--composite attn-lrp --seed-mode logit",
                    help="method arguments of `prism explain` (default: %(default)s)")
    ap.add_argument("--json", metavar="OUT")
    ap.add_argument("--skip-prism", action="store_true")
    ap.add_argument("--skip-lxt", action="store_true")
    # internal: worker processes
    ap.add_argument("--worker", choices=["lxt", "export"], help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--save", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker == "lxt":
        return lxt_worker(a)
    if a.worker == "export":
        return export_worker(a)

    models = [m.strip() for m in a.models.split(",") if m.strip()]
    bad = [m for m in models if m not in ("vit", "bert")]
    if bad:
        raise SystemExit(f"unknown model(s) {bad}: choose from vit, bert")
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads))
    prism_ok = Path(a.prism_bin).is_file() and os.access(a.prism_bin, os.X_OK)
    if not a.skip_prism and not prism_ok:
        print(f"note: no Prism binary at {a.prism_bin} (build with cargo build --release -p "
              f"prism-cli, or pass --prism-bin): Prism side skipped")
    report = {"threads": a.threads, "batch": a.batch, "tokens": a.tokens, "runs": a.runs,
              "prism_bin": a.prism_bin, "prism_args": a.prism_args,
              "load_average": os.getloadavg(), "models": {}}
    work = Path(tempfile.mkdtemp(prefix="lxt_bench_"))
    for model in models:
        print(f"== {model} (batch {a.batch}" + (f", {a.tokens} tokens" if model == "bert" else "")
              + f", {a.threads} threads, {a.runs} runs)", flush=True)
        entry = {}
        if not a.skip_lxt:
            cmd = [sys.executable, __file__, "--worker", "lxt", "--model", model, "--batch",
                   str(a.batch), "--tokens", str(a.tokens), "--runs", str(a.runs), "--threads",
                   str(a.threads)]
            _, peak, out, err, rc = run_child(cmd, dict(os.environ))
            if rc != 0:
                entry["lxt"] = {"error": f"exit {rc}: " + err.strip()[-600:]}
            else:
                entry["lxt"] = json.loads(out.strip().splitlines()[-1])
                entry["lxt"]["peak_rss_mb_wait4"] = peak
        if not a.skip_prism and prism_ok:
            onnx_path = ensure_onnx(model, a.tokens)
            entry["prism"] = prism_side(a, model, onnx_path, work, env)
            entry["prism"]["onnx"] = str(onnx_path)
        report["models"][model] = entry

    # table
    print()
    print(f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs "
          f"(timings on a busy machine are not comparable)")
    print(f"{'model':<6} {'side':<15} {'ms (median)':>12} {'samples/s':>10} {'peak RSS MB':>12}"
          f"  note")
    for model, e in report["models"].items():
        lx = e.get("lxt", {})
        pr = e.get("prism", {})
        rows = []
        if lx:
            rows += [("LXT explain", lx.get("explain_ms"), lx.get("peak_rss_mb"),
                      lx.get("error") or lx.get("map", "")),
                     ("LXT forward", lx.get("forward_ms"), None, "no grad")]
        if pr:
            ex = pr.get("explain", {})
            rows += [("Prism explain", ex.get("ms"), ex.get("peak_rss_mb"),
                      ex.get("error", a.prism_args + ", one process per run, load included")),
                     ("Prism expl-load", ex.get("ms_minus_load"), None,
                      "explain minus `prism inspect` (start + model load)"),
                     ("Prism predict", pr.get("predict", {}).get("ms"),
                      pr.get("predict", {}).get("peak_rss_mb"),
                      pr.get("predict", {}).get("error", "load included")),
                     ("Prism load", pr["load"]["ms"], None, "`prism inspect`")]
        for side, ms, rss, note in rows:
            if ms is None and rss is None and not note:
                continue
            sps = a.batch / (ms / 1e3) if isinstance(ms, (int, float)) and ms > 0 else None
            print(f"{model:<6} {side:<15} {fmt(ms, '12.1f')} {fmt(sps, '10.2f')} "
                  f"{fmt(rss, '12.0f')}  {str(note)[:90]}")
        lms, pms = lx.get("explain_ms"), pr.get("explain", {}).get("ms")
        lrss, prss = lx.get("peak_rss_mb"), pr.get("explain", {}).get("peak_rss_mb")
        if lms and pms:
            e["throughput_ratio"] = lms / pms
            e["memory_ratio"] = prss / lrss
            adj = pr["explain"]["ms_minus_load"]
            e["throughput_ratio_minus_load"] = lms / adj if adj > 0 else None
            print(f"{model:<6} ratio: throughput Prism/LXT {lms / pms:.2f}x end to end, "
                  f"{fmt(e['throughput_ratio_minus_load'], '.2f')}x without Prism's model load "
                  f"(target >= 2); memory Prism/LXT {prss / lrss:.2f} (target <= 0.5)")
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
