"""Building blocks for operator fixture cases (see scripts/make_op_fixtures.py).

A case is one small ONNX graph built with ``onnx.helper``, its inputs, and what the Rust tests
check: the forward pass against onnxruntime (always, unless ``error`` is set), the gradient at
every float input against finite differences (``grad``), or that Prism refuses the model with a
message containing ``error``.
"""

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

NP_TO_ONNX = {
    np.dtype("float32"): TensorProto.FLOAT,
    np.dtype("float64"): TensorProto.DOUBLE,
    np.dtype("int64"): TensorProto.INT64,
    np.dtype("int32"): TensorProto.INT32,
    np.dtype("bool"): TensorProto.BOOL,
    np.dtype("uint8"): TensorProto.UINT8,
}


@dataclass
class Case:
    name: str
    model: onnx.ModelProto
    inputs: list
    grad: bool = True
    error: str | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)


def rng(seed=0):
    return np.random.default_rng(seed)


def tensor_info(name, arr_or_dtype, shape=None):
    """A graph input/output declaration from an array (or a dtype and a shape)."""
    if isinstance(arr_or_dtype, np.ndarray):
        dtype, shape = arr_or_dtype.dtype, list(arr_or_dtype.shape)
    else:
        dtype = np.dtype(arr_or_dtype)
    return helper.make_tensor_value_info(name, NP_TO_ONNX[np.dtype(dtype)], shape)


def init(name, arr):
    """An initializer from a numpy array."""
    return numpy_helper.from_array(np.asarray(arr), name)


def make_model(nodes, inputs, outputs, initializers=(), opset=17, ir_version=8):
    """A checked single-graph model.

    ``inputs``: list of (name, array) pairs (the arrays fix dtype and shape) or ValueInfoProtos;
    ``outputs``: list of names (type and shape left for inference) or ValueInfoProtos.
    """
    ins = [i if isinstance(i, onnx.ValueInfoProto) else tensor_info(i[0], i[1]) for i in inputs]
    outs = [
        o if isinstance(o, onnx.ValueInfoProto) else helper.make_empty_tensor_value_info(o)
        for o in outputs
    ]
    graph = helper.make_graph(list(nodes), "case", ins, outs, list(initializers))
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version
    )
    model = onnx.shape_inference.infer_shapes(model)
    # Declare output types from inference so onnxruntime and Prism see a complete model.
    inferred = {v.name: v for v in model.graph.value_info}
    for o in model.graph.output:
        if not o.type.HasField("tensor_type") and o.name in inferred:
            o.CopyFrom(inferred[o.name])
    return model


def single(op, inputs, attrs=None, params=(), opset=17, n_outputs=1, **kw):
    """A one-node model: ``inputs`` (name, array) are graph inputs, ``params`` (name, array) are
    initializers appended after them in the node's input list (use "" in ``kw['node_inputs']``
    to give an explicit order with omitted optional inputs)."""
    names = kw.get("node_inputs") or [n for n, _ in inputs] + [n for n, _ in params]
    outs = [f"y{i}" for i in range(n_outputs)]
    node = helper.make_node(op, names, outs, **(attrs or {}))
    return make_model(
        [node], inputs, outs, [init(n, a) for n, a in params], opset=opset
    )
