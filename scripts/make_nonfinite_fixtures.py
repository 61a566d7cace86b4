"""Fixtures for the non-finite checks (issue 20): tiny ONNX models whose results stop being
finite at a known node from finite inputs, and input batches holding NaN / ±Inf.

    /root/anchors/bin/python scripts/make_nonfinite_fixtures.py   # any Python with onnx, numpy

Writes tests/fixtures/nonfinite/:
  sqrt_head.onnx     x[N,4] -> MatMul 'features' -> Sqrt 'sqrt_head' -> y[N,3]; a sample whose
                     features are negative gets NaN at 'sqrt_head'.
  finite.npy         [4,4] finite inputs (sqrt_head gives finite outputs on them)
  negative.npy       [4,4] finite inputs; sample 2 makes sqrt_head's input negative
  nan.npy            [4,4] with NaN in samples 1 and 3, +Inf in sample 3
  sqrt_zero.npy      [2,4] finite inputs; sample 1 makes sqrt_head's third output exactly 0,
                     where the gradient of Sqrt is infinite
"""
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "nonfinite"


def save(graph, name):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, OUT / name)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    w = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0.5]], dtype=np.float32)
    save(
        helper.make_graph(
            [
                helper.make_node("MatMul", ["x", "w"], ["f"], name="features"),
                helper.make_node("Sqrt", ["f"], ["y"], name="sqrt_head"),
            ],
            "sqrt_head",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
            [numpy_helper.from_array(w, "w")],
        ),
        "sqrt_head.onnx",
    )
    rng = np.random.default_rng(0)
    finite = rng.uniform(0.1, 1.0, (4, 4)).astype(np.float32)
    np.save(OUT / "finite.npy", finite)
    negative = finite.copy()
    negative[2] = [-1.0, -2.0, 0.5, -1.0]
    np.save(OUT / "negative.npy", negative)
    nan = finite.copy()
    nan[1, 2] = np.nan
    nan[3, 0] = np.nan
    nan[3, 1] = np.inf
    np.save(OUT / "nan.npy", nan)
    sqrt_zero = np.array([[0.5, 0.5, 0.5, 1.0], [0.5, 0.5, -0.5, 1.0]], dtype=np.float32)
    np.save(OUT / "sqrt_zero.npy", sqrt_zero)


if __name__ == "__main__":
    main()
