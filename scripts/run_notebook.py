#!/usr/bin/env python3
"""Executes a notebook top to bottom and fails on the first cell that raises (outside CI).

Purpose
    Issue 16: the example notebook `examples/python_quickstart.ipynb` must run top to bottom.
    This runs it in a fresh kernel of the current Python (which needs prism_xai installed) and
    checks that every heatmap cell produced an image.

How to run (from the repository root)
    pip install ./crates/prism-py nbclient nbformat ipykernel
    python scripts/run_notebook.py [examples/python_quickstart.ipynb] [--output executed.ipynb]
        [--timeout 600]

    Exit status 0 when every cell ran; 1 with the failing cell's error otherwise. The notebook
    file itself is not modified (--output writes the executed copy, with outputs).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebook", nargs="?",
                    default=os.path.join(ROOT, "examples", "python_quickstart.ipynb"))
    ap.add_argument("--output", help="write the executed notebook here")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    ap.add_argument("--kernel", default="python3")
    a = ap.parse_args()

    nb = nbformat.read(a.notebook, as_version=4)
    client = NotebookClient(nb, timeout=a.timeout, kernel_name=a.kernel,
                            resources={"metadata": {"path": ROOT}})
    t0 = time.time()
    try:
        client.execute()
    except CellExecutionError as e:
        print(f"{a.notebook}: a cell failed:\n{e}", file=sys.stderr)
        return 1
    finally:
        if a.output:
            nbformat.write(nb, a.output)
    code = [c for c in nb.cells if c.cell_type == "code"]
    images = sum(1 for c in code for o in c.get("outputs", [])
                 if "image/png" in o.get("data", {}))
    if images == 0:
        print(f"{a.notebook}: ran, but no cell displayed an image (a Heatmap's _repr_png_)",
              file=sys.stderr)
        return 1
    print(f"{a.notebook}: {len(code)} code cells ran in {time.time() - t0:.1f} s, "
          f"{images} images displayed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
