#!/usr/bin/env python3
"""Zennit's side of bench/heatmap: imsave every sample of RELEVANCE.npy, print the throughput,
and (with --compare DIR) check that Prism's PNGs in DIR show the same pixels.

    python zennit_imsave.py RELEVANCE.npy OUT_DIR [--cmap bwr] [--symmetric] [--compare PRISM_DIR]
"""
import argparse
import os
import sys
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'scripts'))
import make_heatmap_reference  # noqa: E402,F401  (installs the Pillow 13 putpalette shim)
from zennit.image import imsave  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('relevance')
    parser.add_argument('out')
    parser.add_argument('--cmap', default='bwr')
    parser.add_argument('--symmetric', action='store_true')
    parser.add_argument('--compare')
    args = parser.parse_args()

    relevance = np.load(args.relevance)
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    for n, sample in enumerate(relevance):
        imsave(os.path.join(args.out, f'{n:04d}.png'), sample, cmap=args.cmap, symmetric=args.symmetric)
    seconds = time.perf_counter() - start
    print(f'zennit: {len(relevance)} heatmaps of {relevance.shape[1]}x{relevance.shape[2]} in '
          f'{seconds:.3f} s = {len(relevance) / seconds:.1f} images/s (1 thread)')

    if args.compare:
        step = max(1, len(relevance) // 25)
        for n in range(0, len(relevance), step):
            name = f'{n:04d}.png'
            ours = np.asarray(Image.open(os.path.join(args.compare, name)).convert('RGB'))
            theirs = np.asarray(Image.open(os.path.join(args.out, name)).convert('RGB'))
            if not np.array_equal(ours, theirs):
                sys.exit(f'pixel mismatch in {name}')
        print(f'pixels identical in {len(range(0, len(relevance), step))} compared images')


if __name__ == '__main__':
    main()
