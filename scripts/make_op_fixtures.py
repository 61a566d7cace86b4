"""Writes the operator fixtures that crates/prism-model/tests/op_fixtures.rs and
crates/prism-attribution/tests/op_gradients.rs check.

Every module in scripts/op_cases/ (one per operator group) lists ``CASES`` (see
scripts/op_cases/common.py). For each case this writes, under tests/fixtures/ops/<group>/:
``<name>.onnx``, its inputs ``<name>.in<i>.npy`` and, unless the case expects an error,
onnxruntime's outputs ``<name>.out<i>.npy`` (booleans as int64 0/1), plus ``<name>.json``
(``grad``, ``error``, ``note``, input names and dtypes, opset). Deterministic: reruns write
identical files.

Run from the repository root: /root/anchors/bin/python scripts/make_op_fixtures.py [GROUP ...]
"""

import argparse
import importlib
import json
import pathlib
import shutil
import sys

import numpy as np
import onnx
import onnxruntime as ort

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))


def groups():
    return sorted(
        p.stem for p in (ROOT / "scripts" / "op_cases").glob("*.py")
        if p.stem not in ("__init__", "common")
    )


def run_group(group, out_root):
    mod = importlib.import_module(f"op_cases.{group}")
    out = out_root / group
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    names = set()
    rows = []
    for case in mod.CASES:
        if case.name in names:
            raise SystemExit(f"{group}: duplicate case name {case.name}")
        names.add(case.name)
        # A case may skip the checker with a reason (e.g. an operator version the checker
        # marks deprecated but exporters still emit and onnxruntime runs).
        if case.error is None and not case.extra.get("skip_checker"):
            onnx.checker.check_model(case.model, full_check=True)
        (out / f"{case.name}.onnx").write_bytes(case.model.SerializeToString())
        feeds = {}
        for i, (vi, arr) in enumerate(zip(case.model.graph.input, case.inputs)):
            arr = np.array(arr, order="C")  # not ascontiguousarray: it makes 0-d arrays 1-d
            np.save(out / f"{case.name}.in{i}.npy", arr)
            feeds[vi.name] = arr
        meta = {
            "grad": bool(case.grad and case.error is None),
            "error": case.error,
            "note": case.note,
            "opset": case.model.opset_import[0].version,
            "inputs": [
                {"name": vi.name, "dtype": str(np.asarray(a).dtype)}
                for vi, a in zip(case.model.graph.input, case.inputs)
            ],
            **case.extra,
        }
        status = f"error: {case.error}"
        if case.error is None:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            sess = ort.InferenceSession(
                case.model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
            )
            ys = sess.run(None, feeds)
            for i, y in enumerate(ys):
                y = np.asarray(y)
                if y.dtype == np.bool_:
                    y = y.astype(np.int64)
                elif y.dtype == np.int32:
                    y = y.astype(np.int64)
                np.save(out / f"{case.name}.out{i}.npy", np.array(y, order="C"))
            meta["outputs"] = [str(np.asarray(y).dtype) for y in ys]
            status = " ".join(str(list(np.asarray(y).shape)) for y in ys)
        (out / f"{case.name}.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        rows.append((case.name, status))
    width = max((len(n) for n, _ in rows), default=0)
    print(f"{group}: {len(rows)} cases -> {out.relative_to(ROOT)}")
    for n, s in rows:
        print(f"  {n:<{width}}  {s}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("groups", nargs="*", help=f"groups to write (default: all of {groups()})")
    ap.add_argument("--out", default=str(ROOT / "tests" / "fixtures" / "ops"))
    args = ap.parse_args()
    for g in args.groups or groups():
        if g not in groups():
            raise SystemExit(f"unknown group {g!r}; known: {groups()}")
        run_group(g, pathlib.Path(args.out))


if __name__ == "__main__":
    main()
