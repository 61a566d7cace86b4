"""Normalisations, LogSoftmax/Softmax on any axis, Split, Trilu, Range, Tile, CumSum, Einsum and
N-D MatMul: forward against onnxruntime, gradients against finite differences, and the errors
for what Prism does not support."""

import numpy as np
from onnx import helper

from op_cases.common import Case, init, make_model, rng, single, tensor_info

r = rng(14)


def f32(*shape):
    return r.standard_normal(shape).astype(np.float32)


def zeros(*shape):
    return np.zeros(shape, np.float32)


def node(op, ins, outs, **attrs):
    return helper.make_node(op, ins, outs, **attrs)


CASES = []


def case(name, model, inputs, **kw):
    CASES.append(Case(name, model, inputs, **kw))


# --- LayerNormalization (opset 17) ------------------------------------------------------------

case(
    "layernorm_last_axis",
    single("LayerNormalization", [("x", zeros(2, 3, 8))], {},
           params=[("scale", f32(8)), ("bias", f32(8))]),
    [f32(2, 3, 8)],
    note="axis -1 (the default), scale and bias per feature",
)
case(
    "layernorm_axis1_no_bias",
    single("LayerNormalization", [("x", zeros(2, 3, 4))], {"axis": 1, "epsilon": 1e-3},
           params=[("scale", f32(3, 4))]),
    [f32(2, 3, 4)],
    note="statistics over the last two axes, no bias, epsilon 1e-3",
)
case(
    "layernorm_negative_axis_broadcast_scale",
    single("LayerNormalization", [("x", zeros(2, 3, 4))], {"axis": -2},
           params=[("scale", f32(1, 4)), ("bias", f32(4))]),
    [f32(2, 3, 4)],
    note="axis -2; scale [1, 4] and bias [4] broadcast over the normalised [3, 4]",
)
case(
    "layernorm_mean_invstd_outputs",
    single("LayerNormalization", [("x", zeros(2, 5, 6))], {"axis": 2},
           params=[("scale", f32(6)), ("bias", f32(6))], n_outputs=3),
    [f32(2, 5, 6)],
    note="the graph reads Mean and InvStdDev: computed, and their gradients flow back",
)
case(
    "layernorm_scale_bias_inputs",
    single("LayerNormalization", [("x", zeros(3, 4)), ("scale", zeros(4)), ("bias", zeros(4))]),
    [f32(3, 4), f32(4), f32(4)],
    note="scale and bias as graph inputs: their gradients too",
)
case(
    "layernorm_stash_type_half",
    single("LayerNormalization", [("x", zeros(2, 4))], {"stash_type": 10},
           params=[("scale", f32(4))]),
    [f32(2, 4)],
    error="stash_type 10",
)
case(
    "layernorm_scale_mismatch",
    single("LayerNormalization", [("x", zeros(2, 4))], {}, params=[("scale", f32(3))]),
    [f32(2, 4)],
    error="does not broadcast to the normalised dimensions",
)

# --- GroupNormalization (opset 18: per group; opset 21: per channel) ---------------------------

def groupnorm(x, groups, params, opset, inputs=(), **attrs):
    """GroupNormalization is a function op: its output type is declared, not inferred."""
    names = ["x"] + [n for n, _ in inputs] + [n for n, _ in params]
    return make_model(
        [node("GroupNormalization", names, ["y"], num_groups=groups, **attrs)],
        [("x", x)] + list(inputs), [tensor_info("y", x)],
        [init(n, a) for n, a in params], opset=opset, ir_version=10 if opset >= 21 else 8,
    )


case(
    "groupnorm_opset18_per_group",
    groupnorm(zeros(2, 6, 3, 3), 3, [("scale", f32(3)), ("bias", f32(3))], 18),
    [f32(2, 6, 3, 3)],
    note="opset 18: scale and bias per group",
    extra={"skip_checker": "the checker marks GroupNormalization-18 deprecated; "
                           "onnxruntime runs it"},
)
case(
    "groupnorm_opset21_per_channel",
    groupnorm(zeros(2, 6, 5), 2, [("scale", f32(6)), ("bias", f32(6))], 21, epsilon=1e-3),
    [f32(2, 6, 5)],
    note="opset 21: scale and bias per channel",
)
case(
    "groupnorm_params_inputs",
    groupnorm(zeros(2, 4, 3), 2, [], 21, inputs=[("scale", zeros(4)), ("bias", zeros(4))]),
    [f32(2, 4, 3), f32(4), f32(4)],
    note="scale and bias as graph inputs: their gradients too",
)
case(
    "groupnorm_groups_not_dividing",
    groupnorm(zeros(2, 6, 3), 4, [("scale", f32(6)), ("bias", f32(6))], 21),
    [f32(2, 6, 3)],
    error="divisible by num_groups=4",
)

# --- InstanceNormalization ---------------------------------------------------------------------

case(
    "instancenorm_4d",
    single("InstanceNormalization", [("x", zeros(2, 3, 4, 5))], {},
           params=[("scale", f32(3)), ("B", f32(3))], opset=17),
    [f32(2, 3, 4, 5)],
)
case(
    "instancenorm_3d_epsilon",
    single("InstanceNormalization", [("x", zeros(2, 3, 7))], {"epsilon": 1e-2},
           params=[("scale", f32(3)), ("B", f32(3))], opset=17),
    [f32(2, 3, 7)],
)
case(
    "instancenorm_params_inputs",
    single("InstanceNormalization",
           [("x", zeros(2, 3, 4)), ("scale", zeros(3)), ("B", zeros(3))], opset=17),
    [f32(2, 3, 4), f32(3), f32(3)],
)
case(
    "instancenorm_scale_mismatch",
    single("InstanceNormalization", [("x", zeros(2, 3, 4))], {},
           params=[("scale", f32(4)), ("B", f32(4))], opset=17),
    [f32(2, 3, 4)],
    error="does not match 3 channels",
)

# --- LogSoftmax and Softmax on any axis ---------------------------------------------------------

case(
    "logsoftmax_axis1",
    single("LogSoftmax", [("x", zeros(2, 5, 3))], {"axis": 1}, opset=13),
    [f32(2, 5, 3)],
)
case(
    "logsoftmax_default_axis",
    single("LogSoftmax", [("x", zeros(3, 6))], {}, opset=13),
    [f32(3, 6)],
)
case(
    "logsoftmax_negative_axis_rank4",
    single("LogSoftmax", [("x", zeros(2, 3, 4, 2))], {"axis": -3}, opset=13),
    [f32(2, 3, 4, 2)],
)
case(
    "logsoftmax_opset11_flatten",
    single("LogSoftmax", [("x", zeros(2, 3, 4))], {"axis": 1}, opset=11),
    [f32(2, 3, 4)],
    note="before opset 13: over the flattened axes from axis on",
)
case(
    "logsoftmax_axis_out_of_range",
    single("LogSoftmax", [("x", zeros(2, 3))], {"axis": 2}, opset=13),
    [f32(2, 3)],
    error="axis 2 out of range",
)
for rank, axis in [(2, 0), (2, -2), (3, -2), (4, 1), (4, -3), (4, 2)]:
    shape = [2, 3, 4, 3][:rank]
    case(
        f"softmax_rank{rank}_axis{axis}".replace("-", "m"),
        single("Softmax", [("x", zeros(*shape))], {"axis": axis}, opset=13),
        [f32(*shape)],
    )
case(
    "softmax_opset11_flatten_negative_axis",
    single("Softmax", [("x", zeros(2, 3, 4, 2))], {"axis": -2}, opset=11),
    [f32(2, 3, 4, 2)],
)

# --- Split -------------------------------------------------------------------------------------

case(
    "split_attr_opset11",
    single("Split", [("x", zeros(2, 6))], {"axis": 1, "split": [1, 2, 3]}, opset=11,
           n_outputs=3),
    [f32(2, 6)],
    note="split sizes as an attribute (before opset 13); every piece a graph output",
)
case(
    "split_input_opset13_negative_axis",
    single("Split", [("x", zeros(2, 6, 2))], {"axis": -2},
           params=[("split", np.array([2, 4], np.int64))], opset=13, n_outputs=2),
    [f32(2, 6, 2)],
    note="split sizes as a constant input (opset 13–17)",
)
case(
    "split_equal_opset13",
    single("Split", [("x", zeros(6, 2))], {}, opset=13, n_outputs=3),
    [f32(6, 2)],
)
case(
    "split_num_outputs_uneven_opset18",
    single("Split", [("x", zeros(2, 7))], {"axis": 1, "num_outputs": 3}, opset=18, n_outputs=3),
    [f32(2, 7)],
    note="num_outputs=3 over 7: pieces 3, 3, 1",
)
case(
    "split_some_pieces_used",
    make_model(
        [node("Split", ["x"], ["a", "b", "c"], axis=0),
         node("Mul", ["a", "c"], ["y"])],
        [("x", zeros(6, 3))], ["y"], opset=13,
    ),
    [f32(6, 3)],
    note="the middle piece is read by no one: its gradient is zero",
)
case(
    "split_shape_arithmetic_folded",
    make_model(
        [node("Shape", ["x"], ["s"]),
         node("Split", ["s"], ["s0", "s1"], axis=0, split=[1, 2]),
         node("Concat", ["s1", "s0"], ["t"], axis=0),
         node("Reshape", ["x", "t"], ["y"])],
        [("x", zeros(2, 3, 4))], [tensor_info("y", np.float32, [3, 4, 2])], opset=11,
    ),
    [f32(2, 3, 4)],
    note="Split of an integer shape, folded at specialisation",
)
case(
    "split_sizes_wrong_sum",
    single("Split", [("x", zeros(2, 6))], {"axis": 1},
           params=[("split", np.array([2, 3], np.int64))], opset=13, n_outputs=2),
    [f32(2, 6)],
    error="summing to dimension 1",
)
case(
    "split_num_outputs_mismatch",
    single("Split", [("x", zeros(2, 6))], {"axis": 1, "num_outputs": 3}, opset=18, n_outputs=2),
    [f32(2, 6)],
    error="num_outputs=3 but the node has 2 outputs",
)

# --- Trilu -------------------------------------------------------------------------------------

case(
    "trilu_upper",
    single("Trilu", [("x", zeros(2, 4, 5))], {}, opset=14),
    [f32(2, 4, 5)],
)
case(
    "trilu_lower_negative_k",
    single("Trilu", [("x", zeros(2, 5, 4))], {"upper": 0},
           params=[("k", np.array(-1, np.int64))], opset=14),
    [f32(2, 5, 4)],
)
case(
    "trilu_upper_k2",
    single("Trilu", [("x", zeros(4, 4))], {"upper": 1},
           params=[("k", np.array(2, np.int64))], opset=14),
    [f32(4, 4)],
)
case(
    "trilu_causal_mask_folded",
    make_model(
        [node("Shape", ["x"], ["s"]),
         node("Slice", ["s", "st", "en"], ["hw"]),
         node("ConstantOfShape", ["hw"], ["ones"],
              value=helper.make_tensor("v", 1, [1], [1.0])),
         node("Trilu", ["ones"], ["mask"], upper=0),
         node("Mul", ["x", "mask"], ["y"])],
        [("x", zeros(2, 4, 4))], ["y"],
        [init("st", np.array([1], np.int64)), init("en", np.array([3], np.int64))], opset=14,
    ),
    [f32(2, 4, 4)],
    note="a causal mask built from the input's shape and folded to a constant",
)
case(
    "trilu_int_mask_folded",
    make_model(
        [node("Trilu", ["ones", "k"], ["mask"], upper=1),
         node("Cast", ["mask"], ["m"], to=1),
         node("Mul", ["x", "m"], ["y"])],
        [("x", zeros(3, 3))], ["y"],
        [init("ones", np.ones((3, 3), np.int64)), init("k", np.array(1, np.int64))], opset=14,
    ),
    [f32(3, 3)],
    note="Trilu on an integer constant (folded on integers)",
)
case(
    "trilu_k_not_constant",
    make_model(
        [node("ReduceSum", ["x"], ["s"], keepdims=0),
         node("Cast", ["s"], ["k"], to=7),
         node("Trilu", ["x", "k"], ["y"])],
        [("x", zeros(3, 3))], ["y"], opset=11 + 3,
    ),
    [f32(3, 3)],
    error="its k input must be constant",
)

# --- Range -------------------------------------------------------------------------------------

case(
    "range_int_from_shape",
    make_model(
        [node("Shape", ["x"], ["s"]),
         node("Gather", ["s", "one"], ["d"], axis=0),
         node("Range", ["zero", "d", "step"], ["r"]),
         node("Cast", ["r"], ["rf"], to=1),
         node("Add", ["x", "rf"], ["y"])],
        [("x", zeros(2, 5))], ["y"],
        [init("one", np.array(1, np.int64)), init("zero", np.array(0, np.int64)),
         init("step", np.array(1, np.int64))], opset=13,
    ),
    [f32(2, 5)],
    note="positions 0..d from the input's shape (integer, folded)",
)
case(
    "range_float",
    make_model(
        [node("Range", ["a", "b", "c"], ["r"]), node("Mul", ["x", "r"], ["y"])],
        [("x", zeros(5))], ["y"],
        [init("a", np.array(0.5, np.float32)), init("b", np.array(3.0, np.float32)),
         init("c", np.array(0.5, np.float32))], opset=13,
    ),
    [f32(5)],
)
case(
    "range_negative_delta",
    make_model(
        [node("Range", ["a", "b", "c"], ["r"]), node("Cast", ["r"], ["rf"], to=1),
         node("Add", ["x", "rf"], ["y"])],
        [("x", zeros(3))], ["y"],
        [init("a", np.array(10, np.int64)), init("b", np.array(2, np.int64)),
         init("c", np.array(-3, np.int64))], opset=13,
    ),
    [f32(3)],
    note="10, 7, 4",
)
case(
    "range_not_constant",
    make_model(
        [node("ReduceSum", ["x"], ["s"], keepdims=0),
         node("Range", ["zero", "s", "step"], ["r"]),
         node("Add", ["x", "r"], ["y"])],
        [("x", zeros(3))], ["y"],
        [init("zero", np.array(0, np.float32)), init("step", np.array(1, np.float32))],
        opset=13,
    ),
    [f32(3)],
    error="must be constant",
)

# --- Tile --------------------------------------------------------------------------------------

case(
    "tile_2d",
    single("Tile", [("x", zeros(2, 3))], params=[("repeats", np.array([2, 2], np.int64))],
           opset=13),
    [f32(2, 3)],
)
case(
    "tile_3d",
    single("Tile", [("x", zeros(2, 1, 3))], params=[("repeats", np.array([1, 3, 2], np.int64))],
           opset=13),
    [f32(2, 1, 3)],
)
case(
    "tile_repeats_wrong_length",
    single("Tile", [("x", zeros(2, 3))], params=[("repeats", np.array([2], np.int64))],
           opset=13),
    [f32(2, 3)],
    error="one positive count per axis",
)

# --- CumSum ------------------------------------------------------------------------------------

for name, shape, axis, excl, rev in [
    ("cumsum_axis0", (4, 3), 0, 0, 0),
    ("cumsum_exclusive", (2, 5, 2), 1, 1, 0),
    ("cumsum_reverse", (3, 4), -1, 0, 1),
    ("cumsum_exclusive_reverse_negative_axis", (2, 3, 4), -2, 1, 1),
]:
    case(
        name,
        single("CumSum", [("x", zeros(*shape))], {"exclusive": excl, "reverse": rev},
               params=[("axis", np.array(axis, np.int64))], opset=14),
        [f32(*shape)],
    )
case(
    "cumsum_axis_out_of_range",
    single("CumSum", [("x", zeros(2, 3))], params=[("axis", np.array(2, np.int64))], opset=14),
    [f32(2, 3)],
    error="axis 2 out of range",
)

# --- Einsum ------------------------------------------------------------------------------------

for name, eq, shapes in [
    ("einsum_attention_scores", "bhid,bhjd->bhij", [(2, 2, 3, 4), (2, 2, 5, 4)]),
    ("einsum_attention_values", "bhij,bhjd->bhid", [(2, 2, 3, 5), (2, 2, 5, 4)]),
    ("einsum_matmul", "ij,jk->ik", [(3, 4), (4, 5)]),
    ("einsum_transpose", "bij->bji", [(2, 3, 4)]),
    ("einsum_ellipsis_batched", "...ij,...jk->...ik", [(2, 1, 4, 5), (2, 3, 5, 2)]),
    ("einsum_dot", "i,i->", [(6,), (6,)]),
    ("einsum_implicit_output", "ij,jk", [(3, 4), (4, 2)]),
    ("einsum_three_operands", "ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]),
    ("einsum_reduce", "bij->b", [(2, 3, 4)]),
    ("einsum_outer_spaces", "i , j -> ij", [(3,), (4,)]),
]:
    case(
        name,
        single("Einsum", [(f"x{i}", zeros(*s)) for i, s in enumerate(shapes)],
               {"equation": eq}, opset=12),
        [f32(*s) for s in shapes],
    )
case(
    "einsum_linear_weight",
    single("Einsum", [("x", zeros(2, 3, 4))], {"equation": "bid,jd->bij"},
           params=[("w", f32(5, 4))], opset=12),
    [f32(2, 3, 4)],
    note="a linear layer with its weight as an initializer",
)
case(
    "einsum_diagonal_unsupported",
    single("Einsum", [("x", zeros(3, 3))], {"equation": "ii->i"}, opset=12),
    [f32(3, 3)],
    error="index 'i' repeats in term 'ii'",
)

# --- MatMul with N-D broadcasting and 1-D operands ----------------------------------------------

for name, sa, sb in [
    ("matmul_broadcast_both", (2, 1, 4, 5), (3, 5, 6)),
    ("matmul_1d_left", (5,), (2, 5, 3)),
    ("matmul_1d_right", (2, 4, 5), (5,)),
    ("matmul_1d_both", (5,), (5,)),
]:
    case(
        name,
        single("MatMul", [("a", zeros(*sa)), ("b", zeros(*sb))], opset=13),
        [f32(*sa), f32(*sb)],
    )

# ReduceL2 (Swin V2's cosine attention normalises queries and keys with it)
_rl2 = np.random.default_rng(41).standard_normal((2, 3, 4)).astype(np.float32)
CASES += [
    Case("reduce_l2_last_axis_keepdims",
         single("ReduceL2", [("x", _rl2)], {"axes": [-1], "keepdims": 1}, opset=13),
         [_rl2], note="opset 13: axes attribute"),
    Case("reduce_l2_axes_input_opset18",
         single("ReduceL2", [("x", _rl2)], {"keepdims": 0}, opset=18,
                params=[("axes", np.array([0, 2], np.int64))]),
         [_rl2], note="opset 18: axes as an input, keepdims 0"),
    Case("reduce_l2_all",
         single("ReduceL2", [("x", _rl2)], {"keepdims": 0}, opset=13),
         [_rl2], note="no axes: every axis"),
]
