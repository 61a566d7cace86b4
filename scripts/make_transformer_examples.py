#!/usr/bin/env python3
"""The two transformer examples of docs/transformers.md, trained here (nothing downloaded).

* **ViT on the demo's Clever-Hans digits.** A small torchvision ``VisionTransformer`` (28×28,
  patch 4, 2 layers, 4 heads, hidden 32) trained on ``assets/demo/mnist.h5``, where a quarter of
  the sevens carry a 4×4 mark in the top-left corner. ``prism explain --composite attn-lrp``
  shows whether the transformer, like the demo's CNN, learned the mark.
* **BERT on a toy sentiment task.** A small Hugging Face ``BertForSequenceClassification``
  (hidden 32, 2 layers, 4 heads) trained on generated sentences: neutral filler words around one
  sentiment word ("great", "awful", …) that decides the label. ``prism explain --composite
  attn-lrp`` at the embeddings, rendered by ``prism heatmap --tokens``, shows which token decided.

Both models are exported with the legacy exporter (opset 17) into ``target/transformer-examples/``
and explained with the ``prism`` binary (``--prism-bin``, default target/release/prism). Writes
``docs/img/transformers-vit.png`` and ``docs/img/transformers-bert.png`` (+ ``.html``). Seeded,
one thread (about a minute).

    /root/anchors/bin/python scripts/make_transformer_examples.py [--prism-bin PATH]
"""
import argparse
import pathlib
import subprocess
import sys

import h5py
import numpy as np
import torch
import torch.nn as nn
from torchvision.models.vision_transformer import VisionTransformer
from transformers import BertConfig, BertForSequenceClassification

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "target" / "transformer-examples"
IMG = ROOT / "docs" / "img"


def run(*args):
    print("$", " ".join(str(a) for a in args))
    subprocess.run([str(a) for a in args], check=True)


def train(model, batches, epochs, lr):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for epoch in range(epochs):
        total, correct = 0.0, 0
        for x, y in batches():
            opt.zero_grad()
            logits = model(*x) if isinstance(x, tuple) else model(x)
            logits = getattr(logits, "logits", logits)
            loss = nn.functional.cross_entropy(logits, y)
            loss.backward()
            opt.step()
            total += float(loss) * len(y)
            correct += int((logits.argmax(1) == y).sum())
        n = sum(len(y) for _, y in batches())
        print(f"  epoch {epoch + 1}: loss {total / n:.3f}, train accuracy {correct / n:.3f}")


def vit_example(prism):
    with h5py.File(ROOT / "assets" / "demo" / "mnist.h5") as f:
        x = f["data"][:].astype(np.float32)
        y = f["label"][:].astype(np.int64)
        marked = f["artifact"][:]
        split = f["train"][:]
    model = VisionTransformer(image_size=28, patch_size=4, num_layers=2, num_heads=4,
                              hidden_dim=32, mlp_dim=64, num_classes=10)
    # one input channel: the patch embedding takes 1 channel
    model.conv_proj = nn.Conv2d(1, 32, kernel_size=4, stride=4)
    xt, yt = torch.from_numpy(x[split]), torch.from_numpy(y[split])
    g = torch.Generator().manual_seed(1)

    def batches():
        perm = torch.randperm(len(yt), generator=g)
        for i in range(0, len(yt), 64):
            j = perm[i:i + 64]
            yield xt[j], yt[j]

    print("training the ViT on the demo digits")
    model.train()
    train(model, batches, epochs=6, lr=2e-3)
    model.eval()
    with torch.no_grad():
        held = torch.from_numpy(x[~split])
        acc = (model(held).argmax(1).numpy() == y[~split]).mean()
        # the shortcut: the mark pasted onto held-out non-sevens
        others = ~split & (y != 7)
        xm = x[others].copy()
        xm[:, :, 0:4, 0:4] = 1.0
        to7 = (model(torch.from_numpy(xm)).argmax(1).numpy() == 7).mean()
    print(f"  held-out accuracy {acc:.3f}; the mark turns {to7:.0%} of other digits into 7")
    path = OUT / "vit-mnist.onnx"
    torch.onnx.export(model, (torch.from_numpy(x[:1]),), str(path), input_names=["x"],
                      output_names=["logits"], dynamic_axes={"x": {0: "batch"}}, opset_version=17,
                      dynamo=False)
    # two marked sevens, two unmarked sevens, two other digits
    pick = np.concatenate([np.flatnonzero(marked & (y == 7))[:2],
                           np.flatnonzero(~marked & (y == 7))[:2],
                           np.flatnonzero(y == 3)[:1], np.flatnonzero(y == 4)[:1]])
    np.save(OUT / "vit-inputs.npy", x[pick])
    run(prism, "explain", path, OUT / "vit-inputs.npy", "--composite", "attn-lrp",
        "--seed-mode", "logit", "-o", OUT / "vit-relevance.npy")
    run(prism, "heatmap", OUT / "vit-relevance.npy", "--grid=1x6", "--cmap", "bwr", "--symmetric",
        "--output", OUT / "vit-heatmaps.png")
    # 28-pixel digits: enlarged six times (nearest) for the docs, beside the inputs
    from PIL import Image
    grid = Image.open(OUT / "vit-heatmaps.png").convert("RGB")
    digits = Image.fromarray(np.concatenate(list((x[pick, 0] * 255).astype(np.uint8)), axis=1))
    both = Image.new("RGB", (grid.width, grid.height * 2))
    both.paste(digits.convert("RGB"), (0, 0))
    both.paste(grid, (0, grid.height))
    both.resize((both.width * 6, both.height * 6), Image.NEAREST).save(
        IMG / "transformers-vit.png")
    r = np.load(OUT / "vit-relevance.npy")
    corner = np.abs(r[:, :, 0:4, 0:4]).sum((1, 2, 3)) / np.abs(r).sum((1, 2, 3))
    print("  share of |relevance| in the top-left 4×4 corner:",
          ", ".join(f"{c:.0%}" for c in corner), "(marked 7, marked 7, 7, 7, 3, 4)")
    return acc, to7, corner


POSITIVE = ["great", "wonderful", "excellent", "lovely", "superb"]
NEGATIVE = ["awful", "terrible", "dreadful", "poor", "horrible"]
FILLER = ["the", "film", "was", "a", "story", "with", "acting", "and", "music", "of", "it",
          "plot", "scenes", "that", "very", "quite", "overall", "cast", "ending", "is"]


def bert_example(prism):
    vocab = ["[PAD]", "[CLS]", "[SEP]"] + FILLER + POSITIVE + NEGATIVE
    index = {w: i for i, w in enumerate(vocab)}
    rng = np.random.default_rng(3)
    length = 12

    def sentence():
        label = int(rng.integers(2))
        words = list(rng.choice(FILLER, size=int(rng.integers(6, length - 2))))
        words.insert(int(rng.integers(len(words) + 1)),
                     str(rng.choice(POSITIVE if label else NEGATIVE)))
        ids = [index["[CLS]"]] + [index[w] for w in words] + [index["[SEP]"]]
        mask = [1] * len(ids) + [0] * (length - len(ids))
        return ids + [0] * (length - len(ids)), mask, label

    data = [sentence() for _ in range(3000)]
    ids = torch.tensor([d[0] for d in data])
    mask = torch.tensor([d[1] for d in data])
    labels = torch.tensor([d[2] for d in data])
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=4, intermediate_size=64, max_position_embeddings=32,
                     num_labels=2, attn_implementation="eager")
    model = BertForSequenceClassification(cfg)
    g = torch.Generator().manual_seed(2)

    def batches():
        perm = torch.randperm(len(labels), generator=g)
        for i in range(0, len(labels), 64):
            j = perm[i:i + 64]
            yield (ids[j], mask[j]), labels[j]

    print("training BERT on the toy sentiment sentences")
    model.train()
    train(model, batches, epochs=4, lr=1e-3)
    model.eval()

    class Logits(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            return self.m(input_ids=input_ids, attention_mask=attention_mask).logits

    path = OUT / "bert-sentiment.onnx"
    torch.onnx.export(Logits(model), (ids[:1], mask[:1]), str(path),
                      input_names=["input_ids", "attention_mask"], output_names=["logits"],
                      dynamic_axes={"input_ids": {0: "batch"}, "attention_mask": {0: "batch"}},
                      opset_version=17, dynamo=False)
    texts = ["the film was a superb story with quite lovely music",
             "overall the acting was poor and the ending is dreadful",
             "a story of music that was very great"]
    rows, masks, tokens = [], [], []
    for t in texts:
        words = ["[CLS]"] + t.split() + ["[SEP]"]
        rows.append([index[w] for w in words] + [0] * (length - len(words)))
        masks.append([1] * len(words) + [0] * (length - len(words)))
        tokens.append(words + ["[PAD]"] * (length - len(words)))
    np.save(OUT / "bert-ids.npy", np.array(rows, dtype=np.int64))
    np.save(OUT / "bert-mask.npy", np.array(masks, dtype=np.int64))
    (OUT / "bert-tokens.txt").write_text("\n\n".join("\n".join(t) for t in tokens) + "\n")
    run(prism, "explain", path, "--input", f"input_ids={OUT / 'bert-ids.npy'}",
        "--input", f"attention_mask={OUT / 'bert-mask.npy'}", "--composite", "attn-lrp",
        "--seed-mode", "logit", "--reduce-hidden", "sum", "-o", OUT / "bert-relevance.npy")
    for ext in ("html", "png"):
        run(prism, "heatmap", OUT / "bert-relevance.npy", "--tokens", OUT / "bert-tokens.txt",
            "--attention-mask", OUT / "bert-mask.npy", "--output", IMG / f"transformers-bert.{ext}")
    r = np.load(OUT / "bert-relevance.npy")
    for t, row in zip(tokens, r):
        top = t[int(np.argmax(row))]
        print(f"  most relevant token: {top!r} ({row.max() / np.abs(row).sum():.0%} of |R|)")
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prism-bin", default=str(ROOT / "target" / "release" / "prism"))
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    IMG.mkdir(parents=True, exist_ok=True)
    vit_example(args.prism_bin)
    bert_example(args.prism_bin)
    return 0


if __name__ == "__main__":
    sys.exit(main())
