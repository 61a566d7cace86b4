"""Indexing and resampling operators: Gather with run-time indices (embedding lookups),
GatherElements, GatherND, ScatterND (and their integer folding on shape tensors), Resize and
Upsample, and Conv/MaxPool/AveragePool/ConvTranspose with 3 spatial dimensions."""

import numpy as np
from onnx import helper

from op_cases.common import Case, init, make_model, rng, single

r = rng(14)


def f32(*shape, scale=1.0):
    return (r.standard_normal(shape) * scale).astype(np.float32)


def i64(values):
    return np.array(values, np.int64)


def resize(x, attrs, opset, scales=None, sizes=None, roi_empty=False, legacy=False, op="Resize"):
    """A one-node Resize/Upsample with constant scales/sizes (missing ones as empty names)."""
    params = []
    names = ["x"]
    if legacy:
        if scales is not None:
            params.append(("scales", np.array(scales, np.float32)))
            names.append("scales")
    else:
        names.append("roi" if roi_empty else "")
        if roi_empty:
            params.append(("roi", np.zeros((0,), np.float32)))
        if scales is not None:
            params.append(("scales", np.array(scales, np.float32)))
            names.append("scales")
        elif opset < 13:
            # required before opset 13: an empty tensor stands for "absent"
            params.append(("scales", np.zeros((0,), np.float32)))
            names.append("scales")
        else:
            names.append("")
        if sizes is not None:
            params.append(("sizes", np.array(sizes, np.int64)))
            names.append("sizes")
    while names and names[-1] == "":
        names.pop()
    return single(op, [("x", x)], attrs, params, opset=opset, node_inputs=names)


def resize_case(name, x, attrs, opset=13, note="", **kw):
    return Case(name, resize(np.zeros_like(x), attrs, opset, **kw), [x], note=note)


def resize_error(name, x, attrs, error, opset=13, **kw):
    return Case(name, resize(np.zeros_like(x), attrs, opset, **kw), [x], error=error)


# --- Gather with run-time indices -------------------------------------------------------------

embedding = f32(10, 4)
gather_cases = [
    Case(
        "gather_runtime_indices",
        single("Gather", [("data", f32(5, 3)), ("ids", i64([[0, 4, -1], [2, 2, 1]]))],
               {"axis": 0}),
        [f32(5, 3), i64([[0, 4, -1], [2, 2, 1]])],
        note="run-time int64 indices (negative wraps, duplicates scatter-add in the gradient)",
    ),
    Case(
        "gather_runtime_axis_neg",
        single("Gather", [("data", f32(2, 3, 4)), ("ids", i64([3, 0]))], {"axis": -1}),
        [f32(2, 3, 4), i64([3, 0])],
        note="run-time indices on the last axis (negative axis attribute)",
    ),
    Case(
        "gather_embedding_lookup",
        make_model(
            [helper.make_node("Gather", ["table", "ids"], ["e"], axis=0),
             helper.make_node("Mul", ["e", "scale"], ["y"])],
            [("ids", i64([[1, 7, 3, 9, 0], [2, 2, 5, 8, 6]])), ("scale", f32(1, 1, 4))],
            ["y"],
            [init("table", embedding)],
        ),
        [i64([[1, 7, 3, 9, 0], [2, 2, 5, 8, 6]]), f32(1, 1, 4)],
        note="the embedding lookup of a token model: constant table, token ids from a graph input",
    ),
    Case(
        "gather_runtime_out_of_range",
        single("Gather", [("data", f32(5, 3)), ("ids", i64([1, 5]))], {"axis": 0}),
        [f32(5, 3), i64([1, 5])],
        error="out of range",
    ),
]

# --- GatherElements ---------------------------------------------------------------------------

gather_elements_cases = [
    Case(
        "gather_elements_axis1_const",
        single("GatherElements", [("x", f32(3, 4))], {"axis": 1},
               [("idx", i64([[0, -1], [2, 2], [3, 1]]))]),
        [f32(3, 4)],
        note="constant indices, negative index, duplicates",
    ),
    Case(
        "gather_elements_runtime_neg_axis",
        single("GatherElements", [("x", f32(3, 4)), ("idx", i64([[2, 0, 1, 1], [0, 0, 2, -3]]))],
               {"axis": -2}),
        [f32(3, 4), i64([[2, 0, 1, 1], [0, 0, 2, -3]])],
        note="run-time indices, axis -2, output smaller than the data",
    ),
    Case(
        "gather_elements_3d_axis2",
        single("GatherElements", [("x", f32(2, 3, 5))], {"axis": 2},
               [("idx", r.integers(0, 5, (2, 2, 3)).astype(np.int64))]),
        [f32(2, 3, 5)],
    ),
    Case(
        "gather_elements_out_of_range",
        single("GatherElements", [("x", f32(3, 4))], {"axis": 1}, [("idx", i64([[4], [0], [0]]))]),
        [f32(3, 4)],
        error="out of range",
    ),
]

# --- GatherND -----------------------------------------------------------------------------------

gather_nd_cases = [
    Case(
        "gather_nd_b0_const",
        single("GatherND", [("x", f32(3, 4, 2))], {}, [("idx", i64([[0, 1], [2, -1], [0, 1]]))]),
        [f32(3, 4, 2)],
        note="batch_dims 0, slices of the last axis, repeated tuple",
    ),
    Case(
        "gather_nd_b0_full_tuple",
        single("GatherND", [("x", f32(3, 4)), ("idx", i64([[[0, 1]], [[2, 3]]]))], {}),
        [f32(3, 4), i64([[[0, 1]], [[2, 3]]])],
        note="run-time indices addressing single elements",
    ),
    Case(
        "gather_nd_b1",
        single("GatherND", [("x", f32(2, 3, 4)), ("idx", i64([[[1], [0]], [[2], [2]]]))],
               {"batch_dims": 1}),
        [f32(2, 3, 4), i64([[[1], [0]], [[2], [2]]])],
        note="batch_dims 1 (run-time indices)",
    ),
    Case(
        "gather_nd_b2",
        single("GatherND", [("x", f32(2, 3, 4))], {"batch_dims": 2},
               [("idx", i64([[[1], [0], [3]], [[2], [2], [0]]]))]),
        [f32(2, 3, 4)],
        note="batch_dims 2",
    ),
    Case(
        "gather_nd_out_of_range",
        single("GatherND", [("x", f32(3, 4))], {}, [("idx", i64([[3, 0]]))]),
        [f32(3, 4)],
        error="out of range",
    ),
]

# --- ScatterND ----------------------------------------------------------------------------------

scatter_cases = [
    Case(
        "scatter_nd_none",
        single("ScatterND", [("data", f32(4, 3)), ("upd", f32(2, 3))], {},
               [("idx", i64([[1], [-1]]))], node_inputs=["data", "idx", "upd"]),
        [f32(4, 3), f32(2, 3)],
        note="rows replaced; gradients at data (replaced rows zero) and updates",
    ),
    Case(
        "scatter_nd_add_runtime",
        single("ScatterND", [("data", f32(2, 3, 4)), ("idx", i64([[0, 1], [1, 2], [0, 1]])),
                             ("upd", f32(3, 4))], {"reduction": "add"}, opset=16),
        [f32(2, 3, 4), i64([[0, 1], [1, 2], [0, 1]]), f32(3, 4)],
        note="reduction add with a duplicated index (run-time indices)",
    ),
    Case(
        "scatter_nd_mul",
        single("ScatterND", [("data", f32(5)), ("upd", f32(2))], {"reduction": "mul"},
               [("idx", i64([[0], [3]]))], opset=16, node_inputs=["data", "idx", "upd"]),
        [f32(5), f32(2)],
        grad=False,
        note="reduction mul: forward only (its gradient is a clear error)",
    ),
    Case(
        "scatter_nd_max",
        single("ScatterND", [("data", f32(5)), ("upd", f32(2))], {"reduction": "max"},
               [("idx", i64([[1], [4]]))], opset=18, node_inputs=["data", "idx", "upd"]),
        [f32(5), f32(2)],
        grad=False,
        note="reduction max: forward only",
    ),
    Case(
        "scatter_nd_bad_reduction",
        single("ScatterND", [("data", f32(5)), ("upd", f32(2))], {"reduction": "average"},
               [("idx", i64([[1], [4]]))], opset=18, node_inputs=["data", "idx", "upd"]),
        [f32(5), f32(2)],
        error="reduction 'average' is not supported",
    ),
]

# --- integer folding on shape tensors (the dynamo exporter's shape arithmetic) ----------------

x4 = f32(1, 2, 3, 4)
fold_cases = [
    Case(
        "fold_gathernd_shape",
        make_model(
            [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("GatherND", ["s", "gi"], ["hw"]),
             helper.make_node("Concat", ["m1", "hw"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["y"])],
            [("x", x4)],
            ["y"],
            [init("gi", i64([[2], [3]])), init("m1", i64([-1]))],
        ),
        [x4],
        note="GatherND on a constant shape tensor, folded on integers",
    ),
    Case(
        "fold_elements_scatter_shape",
        make_model(
            [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("GatherElements", ["s", "rev"], ["sr"], axis=0),
             helper.make_node("ScatterND", ["sr", "si", "su"], ["t"]),
             helper.make_node("Reshape", ["x", "t"], ["y"])],
            [("x", x4)],
            ["y"],
            [init("rev", i64([3, 2, 1, 0])), init("si", i64([[0]])), init("su", i64([-1]))],
        ),
        [x4],
        note="GatherElements and ScatterND on a constant shape tensor, folded on integers",
    ),
    Case(
        "fold_gather_runtime_form_const",
        make_model(
            [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Add", ["zero", "one"], ["k"]),
             helper.make_node("Gather", ["s", "k"], ["d"], axis=0),
             helper.make_node("Concat", ["m1", "d"], ["t"], axis=0),
             helper.make_node("Reshape", ["x", "t"], ["y"])],
            [("x", x4)],
            ["y"],
            [init("zero", i64([0])), init("one", i64([3])), init("m1", i64([-1]))],
        ),
        [x4],
        note="Gather whose indices are a folded constant",
    ),
]

# --- Resize / Upsample --------------------------------------------------------------------------

x2d = f32(1, 2, 3, 4)
resize_cases = [
    resize_case("resize_nearest_half_pixel", x2d, {"mode": "nearest"}, scales=[1, 1, 2, 1.5],
                note="default nearest_mode round_prefer_floor"),
    resize_case("resize_nearest_asym_floor_sizes", x2d,
                {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                 "nearest_mode": "floor"}, sizes=[1, 2, 7, 5]),
    resize_case("resize_nearest_align_ceil", x2d,
                {"mode": "nearest", "coordinate_transformation_mode": "align_corners",
                 "nearest_mode": "ceil"}, sizes=[1, 2, 5, 9]),
    resize_case("resize_nearest_prefer_ceil_down", f32(1, 1, 6, 8),
                {"mode": "nearest", "nearest_mode": "round_prefer_ceil"}, scales=[1, 1, 0.5, 0.75],
                note="downsampling"),
    resize_case("resize_nearest_pytorch_half_pixel", x2d,
                {"mode": "nearest", "coordinate_transformation_mode": "pytorch_half_pixel",
                 "nearest_mode": "round_prefer_ceil"}, sizes=[1, 2, 6, 1]),
    resize_case("resize_linear_half_pixel", x2d, {"mode": "linear"}, scales=[1, 1, 2, 2],
                note="bilinear, the U-Net upsampling"),
    resize_case("resize_linear_align_corners", x2d,
                {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
                sizes=[1, 2, 5, 7]),
    resize_case("resize_linear_pytorch_half_pixel_down", f32(1, 2, 5, 6),
                {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"},
                sizes=[1, 2, 3, 4]),
    resize_case("resize_linear_asymmetric", x2d,
                {"mode": "linear", "coordinate_transformation_mode": "asymmetric"},
                scales=[1, 1, 1.5, 2.5]),
    resize_case("resize_linear_1d", f32(2, 3, 5), {"mode": "linear"}, scales=[1, 1, 1.6],
                note="1 spatial axis"),
    resize_case("resize_linear_3d", f32(1, 2, 3, 4, 3), {"mode": "linear"},
                scales=[1, 1, 2, 1.5, 2], note="trilinear, 3 spatial axes"),
    resize_case("resize_nearest_3d", f32(1, 1, 2, 3, 4), {"mode": "nearest"},
                sizes=[1, 1, 4, 6, 6]),
    resize_case("resize_opset10_nearest", x2d, {"mode": "nearest"}, opset=10,
                scales=[1, 1, 2, 1.5], legacy=True, note="Resize-10: X, scales; asymmetric"),
    resize_case("resize_opset10_linear", x2d, {"mode": "linear"}, opset=10,
                scales=[1, 1, 2, 2], legacy=True),
    resize_case("resize_opset11_roi_sizes", x2d, {"mode": "linear"}, opset=11,
                sizes=[1, 2, 6, 8], roi_empty=True, note="opset 11 with an empty roi"),
    resize_case("resize_opset18_axes", x2d, {"mode": "linear", "axes": [2, 3]}, opset=18,
                scales=[2, 1.5], note="scales for the given axes only"),
    resize_case("resize_opset18_axes_neg_sizes", x2d, {"mode": "nearest", "axes": [-1, -2]},
                opset=18, sizes=[6, 5], note="negative axes in another order"),
    resize_case("resize_opset18_not_larger", x2d,
                {"mode": "linear", "axes": [2, 3], "keep_aspect_ratio_policy": "not_larger"},
                opset=18, sizes=[7, 6]),
    resize_case("resize_opset18_not_smaller", x2d,
                {"mode": "nearest", "axes": [2, 3], "keep_aspect_ratio_policy": "not_smaller"},
                opset=18, sizes=[7, 6]),
    resize_case("resize_opset19_half_pixel_symmetric", x2d,
                {"mode": "linear", "coordinate_transformation_mode": "half_pixel_symmetric"},
                opset=19, scales=[1, 1, 1.7, 2.2]),
    Case("upsample_opset7_nearest",
         single("Upsample", [("x", np.zeros_like(x2d))],
                {"mode": "nearest", "scales": [1.0, 1.0, 2.0, 3.0]}, opset=7),
         [x2d], note="deprecated Upsample, scales attribute"),
    Case("upsample_opset9_linear",
         single("Upsample", [("x", np.zeros_like(x2d))], {"mode": "linear"},
                [("scales", np.array([1, 1, 2, 2], np.float32))], opset=9),
         [x2d], note="deprecated Upsample, scales input"),
    resize_error("resize_cubic", x2d, {"mode": "cubic"}, "mode 'cubic' is not supported",
                 scales=[1, 1, 2, 2]),
    resize_error("resize_antialias", x2d, {"mode": "linear", "antialias": 1},
                 "antialias=1 is not supported", opset=18, scales=[1, 1, 0.5, 0.5]),
    resize_error("resize_tf_crop_and_resize", x2d,
                 {"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize"},
                 "'tf_crop_and_resize' is not supported", scales=[1, 1, 2, 2]),
]

# --- 3-D convolution and pooling ----------------------------------------------------------------

x3 = f32(2, 2, 5, 6, 5)
conv3d_cases = [
    Case(
        "conv3d_pads_strides",
        single("Conv", [("x", np.zeros_like(x3))], {"pads": [1, 0, 1, 1, 1, 0], "strides": [2, 1, 2]},
               [("w", f32(3, 2, 3, 2, 3, scale=0.3)), ("b", f32(3))]),
        [x3],
        note="3 spatial axes, asymmetric pads, strides, bias",
    ),
    Case(
        "conv3d_dilated_grouped",
        single("Conv", [("x", np.zeros((1, 4, 6, 5, 5), np.float32))],
               {"dilations": [2, 1, 2], "group": 2, "pads": [1, 1, 1, 1, 1, 1]},
               [("w", f32(4, 2, 2, 3, 2, scale=0.3))]),
        [f32(1, 4, 6, 5, 5)],
        note="dilations and 2 groups",
    ),
    Case(
        "conv3d_depthwise_same",
        single("Conv", [("x", np.zeros((1, 3, 4, 4, 4), np.float32))],
               {"group": 3, "auto_pad": "SAME_UPPER", "strides": [2, 2, 2]},
               [("w", f32(3, 1, 3, 3, 3, scale=0.3))]),
        [f32(1, 3, 4, 4, 4)],
        note="depthwise with SAME_UPPER padding",
    ),
    Case(
        "conv_transpose3d",
        single("ConvTranspose", [("x", np.zeros((1, 2, 3, 3, 2), np.float32))],
               {"strides": [2, 2, 1], "pads": [0, 1, 0, 0, 0, 0], "output_padding": [1, 0, 0]},
               [("w", f32(2, 3, 2, 3, 2, scale=0.3)), ("b", f32(3))]),
        [f32(1, 2, 3, 3, 2)],
        note="transposed 3-D convolution with output_padding and bias",
    ),
    Case(
        "maxpool3d",
        single("MaxPool", [("x", np.zeros_like(x3))],
               {"kernel_shape": [2, 3, 2], "strides": [2, 2, 2], "pads": [0, 1, 1, 1, 1, 0]}),
        [x3],
        note="3-D max pooling with padding",
    ),
    Case(
        "maxpool3d_ceil_dilated",
        single("MaxPool", [("x", np.zeros_like(x3))],
               {"kernel_shape": [2, 2, 2], "strides": [2, 2, 2], "dilations": [1, 2, 1],
                "ceil_mode": 1}, opset=12),
        [x3],
    ),
    Case(
        "avgpool3d_exclude_pad",
        single("AveragePool", [("x", np.zeros_like(x3))],
               {"kernel_shape": [3, 2, 3], "strides": [1, 2, 2], "pads": [1, 0, 1, 1, 1, 1]}),
        [x3],
    ),
    Case(
        "avgpool3d_include_pad",
        single("AveragePool", [("x", np.zeros_like(x3))],
               {"kernel_shape": [3, 2, 3], "strides": [2, 2, 2], "pads": [1, 1, 1, 1, 0, 1],
                "count_include_pad": 1}),
        [x3],
    ),
    Case(
        "global_pools_3d",
        make_model(
            [helper.make_node("GlobalAveragePool", ["x"], ["a"]),
             helper.make_node("GlobalMaxPool", ["x"], ["m"]),
             helper.make_node("Add", ["a", "m"], ["y"])],
            [("x", np.zeros_like(x3))],
            ["y"],
        ),
        [x3],
    ),
    Case(
        "cnn3d_small",
        make_model(
            [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1] * 6),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2, 2],
                              strides=[2, 2, 2]),
             helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], kernel_shape=[2, 2, 2]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "w3", "b3"], ["y"], transB=1)],
            [("x", np.zeros((2, 1, 6, 6, 6), np.float32))],
            ["y"],
            [init("w1", f32(3, 1, 3, 3, 3, scale=0.4)), init("b1", f32(3, scale=0.1)),
             init("w2", f32(4, 3, 2, 2, 2, scale=0.4)), init("b2", f32(4, scale=0.1)),
             init("w3", f32(3, 4)), init("b3", f32(3, scale=0.1))],
        ),
        [f32(2, 1, 6, 6, 6)],
        note="a small 3-D CNN (crates/prism-attribution/tests/conv3d.rs runs LRP on it)",
    ),
]

CASES = (
    gather_cases
    + gather_elements_cases
    + gather_nd_cases
    + scatter_cases
    + fold_cases
    + resize_cases
    + conv3d_cases
)
