#!/usr/bin/env python3
"""Reference values for Prism's image-folder datasets (`prism-store`'s `dataset` module).

Writes a tiny torchvision `ImageFolder` under crates/prism-store/tests/fixtures/dataset/folder/
(PNG RGB, RGBA, grayscale and a JPEG, in two class folders, one image in a nested folder, and a
non-image file that must be ignored), then runs torchvision's preprocessing on it and stores the
tensors in reference.json. `tests/dataset.rs` opens the same folder with Prism and compares.

Run with an environment that has torch, torchvision and Pillow:
    /root/anchors/bin/python scripts/make_dataset_reference.py
"""
import json
import pathlib

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision import transforms as T

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "crates/prism-store/tests/fixtures/dataset"
FOLDER = OUT / "folder"


def pattern(h, w, c, seed):
    y, x, k = np.meshgrid(np.arange(h), np.arange(w), np.arange(c), indexing="ij")
    return ((x * 37 + y * 91 + k * 53 + seed * 17 + (x * y) % 7 * 11) % 256).astype(np.uint8)


def write_images():
    (FOLDER / "b_dog/nested").mkdir(parents=True, exist_ok=True)
    (FOLDER / "a_cat").mkdir(parents=True, exist_ok=True)
    Image.fromarray(pattern(17, 23, 3, 1), "RGB").save(FOLDER / "b_dog/rgb.png")
    Image.fromarray(pattern(21, 19, 4, 2), "RGBA").save(FOLDER / "b_dog/nested/rgba.png")
    Image.fromarray(pattern(12, 16, 1, 3)[:, :, 0], "L").save(FOLDER / "a_cat/gray.png")
    # A smooth image so that JPEG decoders agree closely; 4:2:0 chroma subsampling (the default).
    y, x = np.mgrid[0:15, 0:20]
    smooth = np.stack([x * 12, y * 16, (x + y) * 6], axis=-1).astype(np.uint8)
    Image.fromarray(smooth, "RGB").save(FOLDER / "a_cat/photo.jpg", quality=95)
    (FOLDER / "a_cat/notes.txt").write_text("not an image; ImageFolder ignores it\n")


PIPELINES = {
    # name: (prism options, torchvision transform)
    "resize10_crop8_imagenet": (
        {"resize": {"shorter": 10}, "crop": [8, 8], "normalize": "imagenet", "channels": 3},
        T.Compose([T.Resize(10), T.CenterCrop(8), T.ToTensor(),
                   T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])]),
    ),
    # Up-sampling to an exact size, then a crop larger than the image in one axis (zero padding).
    "exact12x9_crop14x7": (
        {"resize": {"exact": [12, 9]}, "crop": [14, 7], "normalize": None, "channels": 3},
        T.Compose([T.Resize((12, 9)), T.CenterCrop((14, 7)), T.ToTensor()]),
    ),
    "gray_resize7_crop5": (
        {"resize": {"shorter": 7}, "crop": [5, 5], "normalize": None, "channels": 1},
        T.Compose([T.Grayscale(1), T.Resize(7), T.CenterCrop(5), T.ToTensor()]),
    ),
}


def main():
    write_images()
    ref = {"torch": torch.__version__, "torchvision": torchvision.__version__,
           "pillow": Image.__version__, "pipelines": []}
    for name, (opts, tf) in PIPELINES.items():
        ds = torchvision.datasets.ImageFolder(str(FOLDER), transform=tf)
        samples = [str(pathlib.Path(p).relative_to(FOLDER)).replace("\\", "/") for p, _ in ds.samples]
        data = torch.stack([ds[i][0] for i in range(len(ds))])
        ref["pipelines"].append({
            "name": name, "options": opts, "classes": ds.classes, "samples": samples,
            "targets": [t for _, t in ds.samples], "shape": list(data.shape),
            "data": [round(float(v), 7) for v in data.flatten()],
        })
    (OUT / "reference.json").write_text(json.dumps(ref, indent=None) + "\n")
    print("wrote", OUT / "reference.json")


if __name__ == "__main__":
    main()
