"""Element-wise operators: activations and unary maths, Pow/Mod, comparisons and logic, Max/Min,
PRelu, Where, Cast/CastLike, HardTanh-as-Clip, decomposed LayerNorm and RMSNorm, and the
integer shape arithmetic that exporters fold (Equal/Less/Greater/Not/And/Or/Where/Mod/Max/Min/
Pow/Cast on Shape outputs).

Gradient cases keep their inputs away from kinks and ties (finite differences in float64).
"""

import numpy as np
from onnx import TensorProto, helper

from op_cases.common import Case, init, make_model, rng, single

r = rng(14)


def f32(*shape, lo=-2.0, hi=2.0):
    return r.uniform(lo, hi, shape).astype(np.float32)


def away_from_zero(*shape, margin=0.1):
    """Uniform in ±[margin, 2]: no element near a kink at 0."""
    x = r.uniform(margin, 2.0, shape) * r.choice([-1.0, 1.0], shape)
    return x.astype(np.float32)


def unary(op, x, attrs=None, opset=17, ir_version=8, **kw):
    node = helper.make_node(op, ["x"], ["y"], **(attrs or {}))
    return make_model([node], [("x", x)], ["y"], opset=opset, ir_version=ir_version, **kw)


CASES = []

# --- unary -----------------------------------------------------------------------------------

for name, op, attrs, x, opset in [
    ("gelu_none", "Gelu", {}, f32(2, 3, 4, lo=-4, hi=4), 20),
    ("gelu_none_explicit", "Gelu", {"approximate": "none"}, f32(2, 5), 20),
    ("gelu_tanh", "Gelu", {"approximate": "tanh"}, f32(2, 3, 4, lo=-4, hi=4), 20),
    ("erf", "Erf", {}, f32(3, 4, lo=-3, hi=3), 13),
    ("reciprocal", "Reciprocal", {}, away_from_zero(3, 4, margin=0.3), 13),
    ("log", "Log", {}, f32(3, 4, lo=0.1, hi=5), 13),
    ("elu_default", "Elu", {}, away_from_zero(3, 4), 6),
    ("elu_alpha", "Elu", {"alpha": 0.5}, away_from_zero(3, 4), 6),
    ("selu_default", "Selu", {}, away_from_zero(3, 4), 6),
    ("selu_attrs", "Selu", {"alpha": 1.5, "gamma": 2.0}, away_from_zero(3, 4), 6),
    ("celu_alpha", "Celu", {"alpha": 2.0}, away_from_zero(3, 4), 12),
    ("softplus", "Softplus", {}, f32(3, 4, lo=-30, hi=30), 1),
    ("softsign", "Softsign", {}, away_from_zero(3, 4), 1),
    ("mish", "Mish", {}, f32(3, 4, lo=-5, hi=5), 18),
    ("sin", "Sin", {}, f32(3, 4, lo=-4, hi=4), 7),
    ("cos", "Cos", {}, f32(3, 4, lo=-4, hi=4), 7),
]:
    opset = max(opset, 7)
    CASES.append(
        Case(name, unary(op, np.zeros_like(x), attrs, opset=opset,
                         ir_version=9 if opset >= 19 else 8), [x])
    )

CASES += [
    Case(
        "gelu_unknown_approximation",
        unary("Gelu", f32(2, 3), {"approximate": "erf"}, opset=20, ir_version=9),
        [f32(2, 3)],
        error="Gelu approximate 'erf' is not supported; supported: none, tanh",
    ),
    Case(
        "not_bool_input",
        unary("Not", np.zeros((2, 5), np.bool_), opset=13),
        [r.random((2, 5)) > 0.5],
        grad=False,
        note="a boolean graph input carried as 0/1",
    ),
    Case(
        "not_of_comparison",
        make_model(
            [helper.make_node("Less", ["x", "t"], ["c"]),
             helper.make_node("Not", ["c"], ["n"]),
             helper.make_node("Where", ["n", "x", "z"], ["y"])],
            [("x", f32(3, 4))], ["y"],
            [init("t", np.float32(0.0)), init("z", np.float32(0.0))], opset=13,
        ),
        [away_from_zero(3, 4)],
        note="relu written as Where(Not(x < 0), x, 0)",
    ),
]

# --- Clip with optional bounds (HardTanh, ReLU6, clamp(min=…)) -------------------------------

CASES += [
    Case(
        "clip_min_only",
        single("Clip", [("x", f32(3, 4))], params=[("lo", np.float32(-0.5))], opset=13),
        [np.array([[-1.5, -0.2, 0.3, 0.9], [1.8, 0.5, -0.8, 1.1], [0.0, 1.2, -2.0, -0.6]],
                  np.float32)],
        note="clamp(min=-0.5): only the min input",
    ),
    Case(
        "clip_max_only_empty_min",
        make_model(
            [helper.make_node("Clip", ["x", "", "hi"], ["y"])],
            [("x", f32(3, 4))], ["y"], [init("hi", np.float32(0.7))], opset=13,
        ),
        [np.array([[-1.5, -0.2, 0.3, 0.9], [1.8, 0.5, -0.8, 1.1], [0.0, 1.2, -2.0, 0.6]],
                  np.float32)],
        note="clamp(max=0.7): the min input named by an empty string",
    ),
    Case(
        "hardtanh_as_clip",
        single("Clip", [("x", f32(3, 4))],
               params=[("lo", np.float32(-1.0)), ("hi", np.float32(1.0))], opset=11),
        [np.array([[-1.5, -0.2, 0.3, 0.9], [1.8, 0.5, -0.8, 1.1], [0.1, 1.2, -2.0, 0.6]],
                  np.float32)],
        note="nn.Hardtanh exports as Clip(-1, 1)",
    ),
]

# --- Pow -----------------------------------------------------------------------------------------

CASES += [
    Case(
        "pow_square_constant",
        single("Pow", [("x", f32(2, 3, 4))], params=[("e", np.float32(2.0))], opset=13),
        [f32(2, 3, 4)],
        note="x² with a constant exponent (LayerNorm's variance)",
    ),
    Case(
        "pow_int_exponent_negative_base",
        single("Pow", [("x", f32(2, 3))], params=[("e", np.int64(3))], opset=13),
        [f32(2, 3)],
        note="an int64 exponent on a negative float base",
    ),
    Case(
        "pow_computed_broadcast",
        single("Pow", [("x", f32(2, 3, 4, lo=0.2, hi=3)), ("e", f32(3, 1, lo=-1.5, hi=2.5))],
               opset=15),
        [f32(2, 3, 4, lo=0.2, hi=3), f32(3, 1, lo=-1.5, hi=2.5)],
        note="computed exponent broadcast over the base: gradients to both",
    ),
    Case(
        "pow_castlike_dynamo",
        make_model(
            [helper.make_node("CastLike", ["two", "x"], ["e"]),
             helper.make_node("Pow", ["x", "e"], ["y"])],
            [("x", f32(2, 5))], ["y"], [init("two", np.float64(2.0))], opset=18,
        ),
        [f32(2, 5)],
        note="the dynamo exporter's CastLike of a scalar to a graph input's type",
    ),
]

# --- comparisons and logic ------------------------------------------------------------------------

a_cmp = np.round(f32(2, 3, 4) * 2) / 2  # ties with b on purpose for Equal
b_cmp = np.round(f32(3, 1) * 2) / 2
for op in ["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"]:
    name = "".join("_" + c.lower() if c.isupper() else c for c in op).lstrip("_")
    # Ties make ≤/≥ discontinuous under finite differences: no gradient check there (the VJP is
    # zero everywhere; Equal's finite difference at a tie is zero as well).
    CASES.append(
        Case(
            f"{name}_broadcast",
            single(op, [("a", a_cmp), ("b", b_cmp)], opset=13),
            [a_cmp, b_cmp],
            grad=op in ("Equal",),
            note="boolean output as 0/1, broadcasting, with ties",
        )
    )

bools = [r.random((2, 3, 4)) > 0.5, r.random((3, 1)) > 0.5]
for op in ["And", "Or", "Xor"]:
    CASES.append(
        Case(f"{op.lower()}_broadcast",
             single(op, [("a", bools[0]), ("b", bools[1])], opset=7), bools, grad=False)
    )

CASES.append(
    Case(
        "greater_and_mask",
        make_model(
            [helper.make_node("Greater", ["x", "lo"], ["g"]),
             helper.make_node("Less", ["x", "hi"], ["l"]),
             helper.make_node("And", ["g", "l"], ["m"]),
             helper.make_node("Cast", ["m"], ["mf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["x", "mf"], ["y"])],
            [("x", f32(4, 5))], ["y"],
            [init("lo", np.float32(-0.5)), init("hi", np.float32(1.0))], opset=13,
        ),
        [np.array([[-1.2, -0.3, 0.2, 0.8, 1.5], [0.4, -0.9, 1.3, 0.1, -0.1],
                   [0.6, 1.9, -1.7, 0.3, 0.7], [-0.2, 0.5, 1.1, -0.6, 0.9]], np.float32)],
        note="a band mask from comparisons, cast to float and applied",
    )
)

# --- Mod -----------------------------------------------------------------------------------------

mod_a = np.array([[5.3, -5.3, 7.6, -7.6], [2.2, -1.3, 3.7, 9.4]], np.float32)
mod_b = np.array([2.1, 2.1, -3.0, -3.0], np.float32)
ints_a = np.array([[7, -7, 7, -7, 0, 9], [13, -13, 4, -4, 5, -5]], np.int64)
ints_b = np.array([3, 3, -3, -3, 4, 2], np.int64)
CASES += [
    Case("mod_fmod_float", single("Mod", [("a", mod_a), ("b", mod_b)], {"fmod": 1}, opset=13),
         [mod_a, mod_b], note="C fmod: the sign of the dividend"),
    Case("mod_int_python", single("Mod", [("a", ints_a), ("b", ints_b)], opset=13),
         [ints_a, ints_b], grad=False, note="integer Mod: the sign of the divisor"),
    Case("mod_int_fmod", single("Mod", [("a", ints_a), ("b", ints_b)], {"fmod": 1}, opset=13),
         [ints_a, ints_b], grad=False),
    Case(
        "mod_cast_runtime_ints",
        make_model(
            [helper.make_node("Cast", ["x"], ["i"], to=TensorProto.INT64),
             helper.make_node("Mod", ["i", "k"], ["m"]),
             helper.make_node("Cast", ["m"], ["y"], to=TensorProto.FLOAT)],
            [("x", f32(2, 6))], ["y"], [init("k", np.array([3, -3, 4, 5, -2, 7], np.int64))],
            opset=13,
        ),
        [np.array([[7.9, -7.9, 5.2, -5.2, 3.5, -0.5], [12.1, -12.1, 0.7, 11.0, -9.9, 100.2]],
                  np.float32)],
        grad=False,
        note="float→int Cast truncates toward zero, then integer Mod at run time",
    ),
    Case("mod_bad_fmod", single("Mod", [("a", mod_a), ("b", mod_b)], {"fmod": 2}, opset=13),
         [mod_a, mod_b], error="Mod fmod=2 is not supported"),
]

# --- Max / Min -------------------------------------------------------------------------------------

CASES += [
    Case(
        "max_three_broadcast",
        single("Max", [("a", f32(2, 3, 4)), ("b", f32(3, 1)), ("c", f32(4))], opset=13),
        [f32(2, 3, 4), f32(3, 1), f32(4)],
        note="variadic, broadcasting: the gradient goes to the winner",
    ),
    Case("max_single", single("Max", [("a", f32(2, 3))], opset=13), [f32(2, 3)]),
    Case(
        "min_two_broadcast",
        single("Min", [("a", f32(2, 3, 4)), ("b", f32(1, 4))], opset=13),
        [f32(2, 3, 4), f32(1, 4)],
    ),
    Case(
        "min_with_constant",
        single("Min", [("a", f32(2, 5))], params=[("cap", np.float32(0.5))], opset=8),
        [away_from_zero(2, 5)],
        note="clamp written as Min with a constant",
    ),
]

# --- PRelu -------------------------------------------------------------------------------------

CASES += [
    Case(
        "prelu_per_channel_nchw",
        single("PRelu", [("x", f32(2, 3, 4, 5))],
               params=[("slope", np.array([0.1, 0.25, -0.3], np.float32).reshape(3, 1, 1))],
               opset=16),
        [away_from_zero(2, 3, 4, 5)],
        note="nn.PReLU(3) exports its slope as [C, 1, 1]",
    ),
    Case(
        "prelu_per_feature_2d",
        single("PRelu", [("x", f32(4, 3))],
               params=[("slope", np.array([0.1, 0.25, 0.5], np.float32))], opset=9),
        [away_from_zero(4, 3)],
        note="slope [C] against an N×C input",
    ),
    Case(
        "prelu_shared",
        single("PRelu", [("x", f32(2, 3, 4))], params=[("slope", np.array([0.2], np.float32))],
               opset=16),
        [away_from_zero(2, 3, 4)],
    ),
    Case(
        "prelu_slope_input",
        single("PRelu", [("x", f32(2, 3, 4)), ("slope", f32(3, 1, lo=-0.5, hi=0.5))],
               opset=16),
        [away_from_zero(2, 3, 4), f32(3, 1, lo=-0.5, hi=0.5)],
        note="a computed slope: its gradient is checked too",
    ),
    Case(
        "prelu_slope_not_broadcastable",
        single("PRelu", [("x", f32(1, 3, 4, 5))],
               params=[("slope", np.array([0.1, 0.2, 0.3], np.float32))], opset=16),
        [f32(1, 3, 4, 5)],
        error="does not broadcast to the input shape",
    ),
]

# --- Where ------------------------------------------------------------------------------------

CASES += [
    Case(
        "where_three_way_broadcast",
        single("Where", [("c", np.zeros((2, 1, 4), np.bool_)), ("x", f32(3, 1)),
                         ("y", f32(2, 3, 4))], opset=16),
        [r.random((2, 1, 4)) > 0.5, f32(3, 1), f32(2, 3, 4)],
        note="condition, X and Y broadcast to a common shape; gradients reduced to X and Y",
    ),
    Case(
        "where_attention_mask",
        make_model(
            [helper.make_node("Equal", ["mask", "zero"], ["pad"]),
             helper.make_node("Where", ["pad", "neg", "scores"], ["masked"]),
             helper.make_node("Softmax", ["masked"], ["y"], axis=-1)],
            [("scores", f32(2, 3, 5)), ("mask", np.zeros((2, 1, 5), np.int64))], ["y"],
            [init("zero", np.int64(0)), init("neg", np.float32(-1e4))], opset=13,
        ),
        [f32(2, 3, 5), np.array([[[1, 1, 1, 0, 0]], [[1, 1, 1, 1, 0]]], np.int64)],
        note="a BERT-style attention mask from an int64 mask input",
    ),
]

# --- Cast / CastLike ------------------------------------------------------------------------------

cast_x = np.array([[-2.7, -1.5, -0.4, 0.0, 0.4, 1.5], [2.7, 3.99, -3.99, 0.2, -0.0, 7.0]],
                  np.float32)
CASES += [
    Case("cast_float_to_int64_truncates", unary("Cast", cast_x, {"to": TensorProto.INT64},
                                                 opset=13), [cast_x], grad=False),
    Case("cast_float_to_int32", unary("Cast", cast_x, {"to": TensorProto.INT32}, opset=13),
         [cast_x], grad=False),
    Case("cast_float_to_bool", unary("Cast", cast_x, {"to": TensorProto.BOOL}, opset=13),
         [cast_x], grad=False),
    Case(
        "cast_int_to_float_scale",
        make_model(
            [helper.make_node("Cast", ["ids"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["f", "x"], ["y"])],
            [("ids", np.zeros((2, 3), np.int64)), ("x", f32(2, 3))], ["y"], opset=13,
        ),
        [np.array([[0, 3, -2], [5, 1, 7]], np.int64), f32(2, 3)],
    ),
    Case(
        "castlike_to_int_initializer",
        make_model(
            [helper.make_node("CastLike", ["x", "like"], ["y"])],
            [("x", cast_x)], ["y"], [init("like", np.zeros((1,), np.int64))], opset=15,
        ),
        [cast_x],
        grad=False,
        note="target type from an int64 initializer: truncation",
    ),
    Case(
        "castlike_to_graph_input_type",
        make_model(
            [helper.make_node("CastLike", ["ids", "x"], ["f"]),
             helper.make_node("Add", ["f", "x"], ["y"])],
            [("ids", np.zeros((2, 3), np.int64)), ("x", f32(2, 3))], ["y"], opset=15,
        ),
        [np.array([[0, 3, -2], [5, 1, 7]], np.int64), f32(2, 3)],
        note="target type from a float graph input",
    ),
]


def castlike_unknown():
    m = make_model(
        [helper.make_node("Relu", ["x"], ["r"]),
         helper.make_node("CastLike", ["x", "r"], ["y"])],
        [("x", f32(2, 3))], ["y"], opset=15,
    )
    m.graph.ClearField("value_info")  # the target's type is not declared anywhere
    return m


CASES.append(
    Case("castlike_unknown_target_type", castlike_unknown(), [f32(2, 3)],
         error="element type of its target_type input 'r' is not known")
)

# --- normalisation patterns ---------------------------------------------------------------------


def layernorm_decomposed():
    d = 6
    gamma = (1 + 0.2 * r.standard_normal(d)).astype(np.float32)
    beta = (0.1 * r.standard_normal(d)).astype(np.float32)
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["mean"], axes=[-1]),
        helper.make_node("Sub", ["x", "mean"], ["xc"]),
        helper.make_node("Pow", ["xc", "two"], ["sq"]),
        helper.make_node("ReduceMean", ["sq"], ["var"], axes=[-1]),
        helper.make_node("Add", ["var", "eps"], ["ve"]),
        helper.make_node("Sqrt", ["ve"], ["std"]),
        helper.make_node("Div", ["xc", "std"], ["xn"]),
        helper.make_node("Mul", ["xn", "gamma"], ["xs"]),
        helper.make_node("Add", ["xs", "beta"], ["y"]),
    ]
    inits = [init("two", np.float32(2.0)), init("eps", np.float32(1e-5)),
             init("gamma", gamma), init("beta", beta)]
    return make_model(nodes, [("x", f32(2, 4, d))], ["y"], inits, opset=13)


def rmsnorm():
    d = 8
    weight = (1 + 0.2 * r.standard_normal(d)).astype(np.float32)
    nodes = [
        helper.make_node("Pow", ["x", "two"], ["sq"]),
        helper.make_node("ReduceMean", ["sq", "axes"], ["ms"], keepdims=1),
        helper.make_node("Add", ["ms", "eps"], ["mse"]),
        helper.make_node("Sqrt", ["mse"], ["rms"]),
        helper.make_node("Reciprocal", ["rms"], ["inv"]),
        helper.make_node("Mul", ["x", "inv"], ["xn"]),
        helper.make_node("Mul", ["xn", "weight"], ["y"]),
    ]
    inits = [init("two", np.float32(2.0)), init("axes", np.array([-1], np.int64)),
             init("eps", np.float32(1e-6)), init("weight", weight)]
    return make_model(nodes, [("x", f32(2, 3, d))], ["y"], inits, opset=18)


CASES += [
    Case("layernorm_decomposed", layernorm_decomposed(), [f32(2, 4, 6)],
         note="older exporters' LayerNorm: ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, "
              "Mul, Add"),
    Case("rmsnorm_decomposed", rmsnorm(), [f32(2, 3, 8)],
         note="LLaMA-style RMSNorm: Pow, ReduceMean (axes input), Add, Sqrt, Reciprocal, Mul"),
]

# --- integer shape arithmetic, folded -------------------------------------------------------------


def shape_arithmetic():
    i64 = lambda name, v: init(name, np.array(v, np.int64))  # noqa: E731
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),                  # [2, 6, 4]
        helper.make_node("Pow", ["s", "two"], ["p"]),             # [4, 36, 16]
        helper.make_node("Less", ["p", "twenty"], ["lt"]),        # [1, 0, 1]
        helper.make_node("Greater", ["s", "three"], ["gt"]),      # [0, 1, 1]
        helper.make_node("Not", ["gt"], ["ngt"]),                 # [1, 0, 0]
        helper.make_node("And", ["lt", "ngt"], ["a"]),            # [1, 0, 0]
        helper.make_node("Or", ["a", "gt"], ["o"]),               # [1, 1, 1]
        helper.make_node("Max", ["s", "one"], ["mx"]),
        helper.make_node("Min", ["mx", "hundred"], ["mn"]),       # [2, 6, 4]
        helper.make_node("Clip", ["mn", "one", "hundred"], ["cl"]),
        helper.make_node("Pow", ["cl", "twof"], ["pf"]),          # int64 [4, 36, 16]
        helper.make_node("Sub", ["pf", "p"], ["z3"]),             # [0, 0, 0]
        helper.make_node("Add", ["cl", "z3"], ["cz"]),            # [2, 6, 4]
        helper.make_node("Where", ["o", "cz", "zero"], ["w"]),    # [2, 6, 4]
        helper.make_node("Mod", ["w", "five"], ["m"]),            # [2, 1, 4]
        helper.make_node("Equal", ["m", "one"], ["e"]),           # [0, 1, 0]
        helper.make_node("Cast", ["e"], ["ei"], to=TensorProto.INT64),
        helper.make_node("Where", ["e", "minus1", "w"], ["t"]),   # [2, -1, 4]
        helper.make_node("Sub", ["t", "ei"], ["t2"]),             # [2, -2, 4]
        helper.make_node("Add", ["t2", "ei"], ["shape"]),         # [2, -1, 4]
        helper.make_node("Reshape", ["x", "shape"], ["xr"]),
        helper.make_node("Cast", ["shape"], ["sf"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["sf"], ["k"], keepdims=0),  # 5
        helper.make_node("Mul", ["xr", "k"], ["y"]),
    ]
    inits = [i64("two", 2), i64("twenty", 20), i64("three", 3), i64("one", 1),
             i64("hundred", 100), i64("zero", 0), i64("five", 5), i64("minus1", -1),
             init("twof", np.float32(2.0))]
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 6, 4])
    return make_model(nodes, [("x", f32(2, 6, 4))], [y], inits, opset=13)


CASES.append(
    Case("shape_arithmetic_folded", shape_arithmetic(), [f32(2, 6, 4)],
         note="Equal/Less/Greater/Not/And/Or/Where/Mod/Max/Min/Pow/Cast on a Shape output, "
              "folded to Reshape's constant shape")
)

# IsNaN / IsInf: Hugging Face exports test their masks with them.
_special = np.array([[1.0, np.nan, np.inf, -np.inf, 0.0, -2.5]], np.float32)
CASES += [
    Case("isnan", unary("IsNaN", np.zeros_like(_special), opset=13), [_special], grad=False,
         note="0/1 where the input is NaN"),
    Case("isinf", unary("IsInf", np.zeros_like(_special), opset=13), [_special], grad=False,
         note="both signs (default)"),
    Case("isinf_positive_only",
         unary("IsInf", np.zeros_like(_special), {"detect_negative": 0}, opset=13),
         [_special], grad=False, note="detect_negative = 0"),
    Case("isnan_of_masked_softmax",
         make_model(
             [helper.make_node("Softmax", ["x"], ["s"], axis=-1),
              helper.make_node("IsNaN", ["s"], ["nan"]),
              helper.make_node("Where", ["nan", "zero", "s"], ["y"])],
             [("x", f32(2, 5))], ["y"], [init("zero", np.float32(0.0))], opset=13),
         [f32(2, 5)], note="the Hugging Face pattern: Where(IsNaN(p), 0, p)"),
]
