#!/usr/bin/env python3
"""`prism attribute` vs a Zennit dataset loop (share/example/feed_forward.py style), same run.

Generates N random 256x256 JPEGs in an ImageFolder layout (2 classes), a VGG16 with random
weights (seeded; exported to ONNX for Prism), then times, on the same images and weights:
  - Zennit: torchvision ImageFolder + DataLoader (Resize 256, CenterCrop 224, ToTensor,
    Normalize ImageNet) + EpsilonPlusFlat + Gradient attributor, target = label, batch B;
  - Prism: `prism attribute --resize 256 --crop 224 --normalize imagenet
    --composite epsilon-plus-flat --target label --batch-size B`;
and prints images/s of both and the ratio. Both use --threads threads. `--limit M` times only
the first M images of the N-image folder on both sides (the folder is still listed in full).

    /root/anchors/bin/python bench/attribute/bench.py --n 2000 --batch-size 16 --threads 2
"""
import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="attribute only the first M images")
    ap.add_argument("--prism", default="target/release/prism")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import numpy as np
    import torch
    import torchvision
    from PIL import Image
    from torchvision import transforms
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonPlusFlat
    torch.set_num_threads(args.threads)

    work = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="prism-attr-bench-"))
    images = work / "images"
    rng = np.random.default_rng(0)
    if not (images / "done").exists():
        for i in range(args.n):
            d = images / f"class{i % 2}"
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(d / f"{i:05}.jpg", quality=90)
        (images / "done").write_text("")
    (images / "done").unlink()  # not an image: ImageFolder and Prism list every file
    torch.manual_seed(0)
    model = torchvision.models.vgg16().eval()
    onnx = work / "vgg16.onnx"
    if not onnx.exists():
        torch.onnx.export(model, torch.zeros(1, 3, 224, 224), str(onnx), opset_version=17,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)

    tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                             transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    loader = torch.utils.data.DataLoader(torchvision.datasets.ImageFolder(str(images), tf),
                                         batch_size=args.batch_size, shuffle=False, num_workers=0)
    m = min(args.limit or args.n, args.n)
    t0 = time.perf_counter()
    done = 0
    with Gradient(model, EpsilonPlusFlat()) as attributor:
        for x, y in loader:
            x, y = x[:m - done], y[:m - done]
            _, r = attributor(x, torch.eye(1000)[y])
            r.numpy()
            done += len(y)
            if done >= m:
                break
    zennit_s = time.perf_counter() - t0

    out = work / "attr.h5"
    cmd = [args.prism, "attribute", "--model", str(onnx), "--dataset", str(images), "--output", str(out),
           "--resize", "256", "--crop", "224", "--normalize", "imagenet", "--composite", "epsilon-plus-flat",
           "--target", "label", "--batch-size", str(args.batch_size), "--threads", str(args.threads), "--force"]
    if m < args.n:
        cmd += ["--limit", str(m)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
    prism_s = time.perf_counter() - t0
    (images / "done").write_text("")
    print(f"N={args.n} attributed={m} batch={args.batch_size} threads={args.threads}")
    print(f"zennit loop : {zennit_s:8.1f} s  {m / zennit_s:6.2f} images/s")
    print(f"prism       : {prism_s:8.1f} s  {m / prism_s:6.2f} images/s  (start-up, hashing and HDF5 writing included)")
    print(f"ratio       : {zennit_s / prism_s:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
