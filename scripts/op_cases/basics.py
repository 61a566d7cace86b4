"""Existing operators through the fixture framework, and integer graph inputs."""

import numpy as np
from onnx import helper

from op_cases.common import Case, make_model, rng, single

r = rng(1)

CASES = [
    Case(
        "add_broadcast",
        single("Add", [("a", r.standard_normal((2, 3, 4)).astype(np.float32)),
                       ("b", r.standard_normal((3, 1)).astype(np.float32))]),
        [r.standard_normal((2, 3, 4)).astype(np.float32),
         r.standard_normal((3, 1)).astype(np.float32)],
        note="two float inputs with broadcasting",
    ),
    Case(
        "softmax_axis1",
        single("Softmax", [("x", np.zeros((2, 5, 3), np.float32))], {"axis": 1}, opset=13),
        [r.standard_normal((2, 5, 3)).astype(np.float32)],
        note="softmax over a middle axis",
    ),
    Case(
        "int_input_cast",
        make_model(
            [helper.make_node("Cast", ["ids"], ["f"], to=1),
             helper.make_node("Mul", ["f", "x"], ["y"])],
            [("ids", np.zeros((2, 4), np.int64)), ("x", np.zeros((2, 4), np.float32))],
            ["y"],
        ),
        [np.array([[0, 1, 2, 3], [7, 5, 3, 1]], np.int64),
         r.standard_normal((2, 4)).astype(np.float32)],
        note="an int64 graph input carried in the float type",
    ),
    Case(
        "unsupported_input_type",
        make_model(
            [helper.make_node("Cast", ["x"], ["y"], to=1)],
            [("x", np.zeros((2,), np.uint8))],
            ["y"],
        ),
        [np.zeros((2,), np.uint8)],
        error="element type uint8",
    ),
]
