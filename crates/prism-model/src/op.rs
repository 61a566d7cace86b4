//! The operators Prism understands, as a Rust enum with typed attributes.
//!
//! Attributes that ONNX passes as constant *inputs* in newer opsets (Clip's min/max, Pad's pads,
//! Squeeze's axes, Reshape's shape, …) are resolved into these fields when a graph is
//! specialised to concrete input shapes; after that the node keeps only its data inputs and
//! parameters (weights, biases, BatchNorm statistics).

use crate::kernels::index::ScatterReduction;
use crate::kernels::resize::{CoordMode, ResizeMode};
use crate::tensor::{Constant, DType};

/// Geometry of an N-d convolution or pooling window (N = 1, 2 or 3 spatial dimensions).
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// Kernel size per spatial dimension; empty until known (Conv infers it from the weight).
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    /// ONNX order: begin of every axis, then end of every axis. Empty means zeros.
    pub pads: Vec<usize>,
    pub auto_pad: AutoPad,
    pub ceil_mode: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoPad {
    NotSet,
    SameUpper,
    SameLower,
    Valid,
}

/// The output size of a Resize: per-axis scales or target sizes.
#[derive(Clone, Debug, PartialEq)]
pub enum ResizeTarget {
    /// One scale per axis of `axes` (all axes when absent); output = ⌊input · scale⌋.
    Scales(Vec<f32>),
    /// One size per axis of `axes` (all axes when absent).
    Sizes(Vec<i64>),
}

/// Resize's `keep_aspect_ratio_policy` (applies to `sizes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeepAspect {
    Stretch,
    NotLarger,
    NotSmaller,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PadMode {
    Constant,
    Reflect,
    Edge,
}

/// The element type a Cast converts to. At run time every tensor is float (the dtype
/// convention): integers are carried as their value, booleans as 0/1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CastTo {
    /// float32 (also float16/bfloat16, which Prism computes in float32).
    F32,
    F64,
    /// Any integer type: truncation toward zero.
    Int,
    /// `x ≠ 0` as 0/1.
    Bool,
}

impl CastTo {
    /// The dtype a folded constant of this type is stored in.
    pub fn dtype(self) -> DType {
        match self {
            CastTo::F32 => DType::F32,
            CastTo::F64 => DType::F64,
            CastTo::Int | CastTo::Bool => DType::I64,
        }
    }
}

/// Element-wise binary arithmetic with numpy-style broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    /// `a^b` (`powf`; a negative base needs an integral exponent).
    Pow,
    /// Remainder: `fmod` takes the sign of the dividend (C `fmod`), otherwise of the divisor
    /// (integer/Python semantics, ONNX's default for integer tensors).
    Mod {
        fmod: bool,
    },
    /// Comparisons and logic give booleans as 0/1 (the run-time dtype convention); logic reads
    /// any non-zero value as true.
    Equal,
    Less,
    Greater,
    LessOrEqual,
    GreaterOrEqual,
    And,
    Or,
    Xor,
    /// `x` where `x ≥ 0`, else `slope·x`; the slope (input 1, a parameter) broadcasts
    /// unidirectionally to the shape of `x`.
    PRelu,
}

/// Element-wise unary maps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    Relu,
    LeakyRelu {
        alpha: f64,
    },
    /// Clamp to [min, max]; ReLU6 exports as Clip(0, 6).
    Clip {
        min: f64,
        max: f64,
    },
    Sigmoid,
    /// max(0, min(1, alpha·x + beta))
    HardSigmoid {
        alpha: f64,
        beta: f64,
    },
    /// x · HardSigmoid(x) with alpha = 1/6, beta = 1/2
    HardSwish,
    Tanh,
    Exp,
    Sqrt,
    Neg,
    Abs,
    /// `x·Φ(x)` (`tanh`: PyTorch's tanh approximation `½x(1 + tanh(√(2/π)(x + 0.044715x³)))`).
    Gelu {
        tanh: bool,
    },
    Erf,
    /// `1/x`
    Reciprocal,
    /// Natural logarithm.
    Log,
    /// `x` for `x > 0`, else `α(eˣ − 1)`.
    Elu {
        alpha: f64,
    },
    /// `γ·x` for `x > 0`, else `γ·α(eˣ − 1)`.
    Selu {
        alpha: f64,
        gamma: f64,
    },
    /// `max(0, x) + min(0, α(exp(x/α) − 1))`.
    Celu {
        alpha: f64,
    },
    /// `ln(1 + eˣ)`
    Softplus,
    /// `x / (1 + |x|)`
    Softsign,
    /// `x·tanh(softplus(x))`
    Mish,
    /// Logical not on 0/1 values: `1` where `x = 0`, else `0`.
    Not,
    /// `1` where `x` is NaN, else `0` (Hugging Face exports test masks with it).
    IsNaN,
    /// `1` where `x` is an infinity of a detected sign, else `0`.
    IsInf {
        negative: bool,
        positive: bool,
    },
    Sin,
    Cos,
}

/// One operator with its attributes.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Inputs: X, W, optional B.
    Conv {
        window: Window,
        group: usize,
    },
    /// Inputs: X, W (C_in × C_out/group × k…), optional B.
    ConvTranspose {
        window: Window,
        group: usize,
        output_padding: Vec<usize>,
        output_shape: Vec<usize>,
    },
    /// Y = alpha · A' B' + beta · C
    Gemm {
        alpha: f64,
        beta: f64,
        trans_a: bool,
        trans_b: bool,
    },
    MatMul,
    Binary(BinaryOp),
    Unary(UnaryOp),
    /// Resolved from Clip's optional inputs at specialisation.
    ClipInputs,
    Softmax {
        axis: i64,
        /// Opset < 13: softmax over the flattened dimensions from `axis` on.
        flatten: bool,
    },
    MaxPool {
        window: Window,
    },
    AveragePool {
        window: Window,
        count_include_pad: bool,
    },
    GlobalAveragePool,
    GlobalMaxPool,
    ReduceMean {
        axes: Option<Vec<i64>>,
        keepdims: bool,
        noop_with_empty_axes: bool,
    },
    /// `sqrt(Σ x²)` over the axes (cosine attention in Swin V2 normalises with it).
    ReduceL2 {
        axes: Option<Vec<i64>>,
        keepdims: bool,
        noop_with_empty_axes: bool,
    },
    ReduceSum {
        axes: Option<Vec<i64>>,
        keepdims: bool,
        noop_with_empty_axes: bool,
    },
    /// Inference-mode batch normalisation. Inputs: X, scale, B, mean, var.
    BatchNormalization {
        epsilon: f64,
    },
    Concat {
        axis: i64,
    },
    Flatten {
        axis: i64,
    },
    /// Target shape, resolved from the shape input at specialisation.
    Reshape {
        shape: Option<Vec<i64>>,
        allowzero: bool,
    },
    Squeeze {
        axes: Option<Vec<i64>>,
    },
    Unsqueeze {
        axes: Option<Vec<i64>>,
    },
    Transpose {
        perm: Option<Vec<usize>>,
    },
    Identity,
    Dropout,
    Pad {
        mode: PadMode,
        pads: Option<Vec<i64>>,
        value: f64,
        axes: Option<Vec<i64>>,
    },
    Constant(Constant),
    Shape {
        start: i64,
        end: Option<i64>,
    },
    /// Indices resolved from a constant input at specialisation (the fast path), or `None`:
    /// run-time indices as the second input (carried in the float type, checked integral and
    /// in range when the node runs).
    Gather {
        axis: i64,
        indices: Option<std::sync::Arc<crate::tensor::Tensor<i64>>>,
    },
    /// Also CastLike, whose target type the loader reads from its second input.
    Cast {
        to: CastTo,
    },
    /// Element-wise maximum of one or more inputs (numpy broadcasting).
    Max,
    /// Element-wise minimum of one or more inputs (numpy broadcasting).
    Min,
    /// `X` where `condition ≠ 0`, else `Y` (inputs: condition, X, Y; three-way broadcasting).
    Where,
    Slice {
        starts: Option<Vec<i64>>,
        ends: Option<Vec<i64>>,
        axes: Option<Vec<i64>>,
        steps: Option<Vec<i64>>,
    },
    ConstantOfShape {
        value: Constant,
    },
    Expand {
        shape: Option<Vec<i64>>,
    },
    /// Inputs: X, Scale, optional B; outputs Y and, when the graph reads them, Mean and
    /// InvStdDev (shape `X.shape[..axis]` followed by ones). Statistics over the axes from
    /// `axis` on, computed in the run's float type (`stash_type` 1 or 11).
    LayerNormalization {
        axis: i64,
        epsilon: f64,
    },
    /// Inputs: X (N × C × …), scale, bias. Statistics per sample and group of
    /// `C / num_groups` channels; scale and bias hold one value per group (opset 18–20) or
    /// per channel (`per_channel`, opset 21).
    GroupNormalization {
        num_groups: usize,
        epsilon: f64,
        per_channel: bool,
    },
    /// Inputs: X (N × C × …), scale [C], B [C]. Statistics per sample and channel.
    InstanceNormalization {
        epsilon: f64,
    },
    /// `x − log Σ exp x` along `axis` (flattened from `axis` on before opset 13).
    LogSoftmax {
        axis: i64,
        flatten: bool,
    },
    /// Splits the input along `axis` into `outputs` pieces: of the sizes `split` (attribute
    /// before opset 13, constant input after), equal pieces, or with `uneven` (opset 18's
    /// `num_outputs`) pieces of ⌈d / outputs⌉ with a smaller last one.
    Split {
        axis: i64,
        split: Option<Vec<i64>>,
        outputs: usize,
        uneven: bool,
    },
    /// Keeps the upper (`j − i ≥ k`) or lower (`j − i ≤ k`) triangle of the last two axes; `k`
    /// resolved from the optional constant input.
    Trilu {
        upper: bool,
        k: i64,
    },
    /// Inputs: start, limit, delta (scalars); always folded at specialisation, since its
    /// output shape depends on the values.
    Range,
    /// Repeats resolved from the constant input at specialisation.
    Tile {
        repeats: Option<Vec<i64>>,
    },
    /// Cumulative sum along `axis` (resolved from the constant input).
    CumSum {
        axis: Option<i64>,
        exclusive: bool,
        reverse: bool,
    },
    /// A parsed Einstein summation.
    Einsum(crate::einsum::Equation),
    /// Inputs: data, indices (constant or run-time); output shaped like the indices.
    GatherElements {
        axis: i64,
    },
    /// Inputs: data, indices `[b…, i…, k]`.
    GatherND {
        batch_dims: usize,
    },
    /// Inputs: data, indices, updates.
    ScatterND {
        reduction: ScatterReduction,
    },
    /// Resize, and the deprecated Upsample (`upsample`). The target is resolved from the
    /// constant `scales`/`sizes` inputs at specialisation (Upsample-7 has it as an attribute).
    Resize {
        mode: ResizeMode,
        coord: CoordMode,
        target: Option<ResizeTarget>,
        axes: Option<Vec<i64>>,
        keep_aspect: KeepAspect,
        /// Input layout X, scales (Upsample-9, Resize-10) instead of X, roi, scales, sizes.
        legacy_inputs: bool,
        upsample: bool,
    },
}

/// Names of every ONNX operator type Prism accepts (for error messages and `inspect`).
pub const SUPPORTED_OPS: &[&str] = &[
    "Abs",
    "Add",
    "And",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "CastLike",
    "Celu",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "ConvTranspose",
    "Cos",
    "CumSum",
    "Div",
    "Dropout",
    "Einsum",
    "Elu",
    "Equal",
    "Erf",
    "Exp",
    "Expand",
    "Flatten",
    "Gather",
    "GatherElements",
    "GatherND",
    "Gelu",
    "Gemm",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "Greater",
    "GreaterOrEqual",
    "GroupNormalization",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "InstanceNormalization",
    "IsInf",
    "IsNaN",
    "LayerNormalization",
    "LeakyRelu",
    "Less",
    "LessOrEqual",
    "Log",
    "LogSoftmax",
    "MatMul",
    "Max",
    "MaxPool",
    "Min",
    "Mish",
    "Mod",
    "Mul",
    "Neg",
    "Not",
    "Or",
    "PRelu",
    "Pad",
    "Pow",
    "Range",
    "Reciprocal",
    "ReduceMean",
    "ReduceL2",
    "ReduceSum",
    "Relu",
    "Reshape",
    "Resize",
    "ScatterND",
    "Selu",
    "Shape",
    "Sigmoid",
    "Sin",
    "Slice",
    "Softmax",
    "Softplus",
    "Softsign",
    "Split",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Tanh",
    "Tile",
    "Transpose",
    "Trilu",
    "Unsqueeze",
    "Upsample",
    "Where",
    "Xor",
];

/// Coarse families of operators, the vocabulary that composites match on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpGroup {
    /// Conv, ConvTranspose
    Convolution,
    /// Gemm, MatMul with a parameter
    Dense,
    /// Element-wise non-linearities (ReLU, Sigmoid, …)
    Activation,
    AveragePool,
    MaxPool,
    BatchNorm,
    /// Add/Sub of two computed tensors (e.g. a residual connection)
    Sum,
    Concat,
    /// Reshape-like ops that move no values (Flatten, Reshape, Squeeze, Identity, Dropout, …)
    Shape,
    Softmax,
    Other,
}

impl Op {
    /// The ONNX operator type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Op::Conv { .. } => "Conv",
            Op::ConvTranspose { .. } => "ConvTranspose",
            Op::Gemm { .. } => "Gemm",
            Op::MatMul => "MatMul",
            Op::Binary(b) => match b {
                BinaryOp::Add => "Add",
                BinaryOp::Sub => "Sub",
                BinaryOp::Mul => "Mul",
                BinaryOp::Div => "Div",
                BinaryOp::Pow => "Pow",
                BinaryOp::Mod { .. } => "Mod",
                BinaryOp::Equal => "Equal",
                BinaryOp::Less => "Less",
                BinaryOp::Greater => "Greater",
                BinaryOp::LessOrEqual => "LessOrEqual",
                BinaryOp::GreaterOrEqual => "GreaterOrEqual",
                BinaryOp::And => "And",
                BinaryOp::Or => "Or",
                BinaryOp::Xor => "Xor",
                BinaryOp::PRelu => "PRelu",
            },
            Op::Unary(u) => match u {
                UnaryOp::Relu => "Relu",
                UnaryOp::LeakyRelu { .. } => "LeakyRelu",
                UnaryOp::Clip { .. } => "Clip",
                UnaryOp::Sigmoid => "Sigmoid",
                UnaryOp::HardSigmoid { .. } => "HardSigmoid",
                UnaryOp::HardSwish => "HardSwish",
                UnaryOp::Tanh => "Tanh",
                UnaryOp::Exp => "Exp",
                UnaryOp::Sqrt => "Sqrt",
                UnaryOp::Neg => "Neg",
                UnaryOp::Abs => "Abs",
                UnaryOp::Gelu { .. } => "Gelu",
                UnaryOp::Erf => "Erf",
                UnaryOp::Reciprocal => "Reciprocal",
                UnaryOp::Log => "Log",
                UnaryOp::Elu { .. } => "Elu",
                UnaryOp::Selu { .. } => "Selu",
                UnaryOp::Celu { .. } => "Celu",
                UnaryOp::Softplus => "Softplus",
                UnaryOp::Softsign => "Softsign",
                UnaryOp::Mish => "Mish",
                UnaryOp::Not => "Not",
                UnaryOp::IsNaN => "IsNaN",
                UnaryOp::IsInf { .. } => "IsInf",
                UnaryOp::Sin => "Sin",
                UnaryOp::Cos => "Cos",
            },
            Op::ClipInputs => "Clip",
            Op::Softmax { .. } => "Softmax",
            Op::MaxPool { .. } => "MaxPool",
            Op::AveragePool { .. } => "AveragePool",
            Op::GlobalAveragePool => "GlobalAveragePool",
            Op::GlobalMaxPool => "GlobalMaxPool",
            Op::ReduceMean { .. } => "ReduceMean",
            Op::ReduceSum { .. } => "ReduceSum",
            Op::ReduceL2 { .. } => "ReduceL2",
            Op::BatchNormalization { .. } => "BatchNormalization",
            Op::Concat { .. } => "Concat",
            Op::Flatten { .. } => "Flatten",
            Op::Reshape { .. } => "Reshape",
            Op::Squeeze { .. } => "Squeeze",
            Op::Unsqueeze { .. } => "Unsqueeze",
            Op::Transpose { .. } => "Transpose",
            Op::Identity => "Identity",
            Op::Dropout => "Dropout",
            Op::Pad { .. } => "Pad",
            Op::Constant(_) => "Constant",
            Op::Shape { .. } => "Shape",
            Op::Gather { .. } => "Gather",
            Op::Cast { .. } => "Cast",
            Op::Max => "Max",
            Op::Min => "Min",
            Op::Where => "Where",
            Op::Slice { .. } => "Slice",
            Op::ConstantOfShape { .. } => "ConstantOfShape",
            Op::Expand { .. } => "Expand",
            Op::LayerNormalization { .. } => "LayerNormalization",
            Op::GroupNormalization { .. } => "GroupNormalization",
            Op::InstanceNormalization { .. } => "InstanceNormalization",
            Op::LogSoftmax { .. } => "LogSoftmax",
            Op::Split { .. } => "Split",
            Op::Trilu { .. } => "Trilu",
            Op::Range => "Range",
            Op::Tile { .. } => "Tile",
            Op::CumSum { .. } => "CumSum",
            Op::Einsum(_) => "Einsum",
            Op::GatherElements { .. } => "GatherElements",
            Op::GatherND { .. } => "GatherND",
            Op::ScatterND { .. } => "ScatterND",
            Op::Resize { upsample: true, .. } => "Upsample",
            Op::Resize { .. } => "Resize",
        }
    }

    /// The family this operator belongs to (composites match on it).
    pub fn group(&self) -> OpGroup {
        match self {
            Op::Conv { .. } | Op::ConvTranspose { .. } => OpGroup::Convolution,
            Op::Gemm { .. } | Op::MatMul => OpGroup::Dense,
            Op::Unary(
                UnaryOp::Exp
                | UnaryOp::Sqrt
                | UnaryOp::Neg
                | UnaryOp::Abs
                | UnaryOp::Erf
                | UnaryOp::Reciprocal
                | UnaryOp::Log
                | UnaryOp::Not
                | UnaryOp::IsNaN
                | UnaryOp::IsInf { .. }
                | UnaryOp::Sin
                | UnaryOp::Cos,
            ) => OpGroup::Other,
            Op::Unary(_) | Op::ClipInputs | Op::Binary(BinaryOp::PRelu) => OpGroup::Activation,
            Op::AveragePool { .. } | Op::GlobalAveragePool | Op::ReduceMean { .. } => {
                OpGroup::AveragePool
            }
            Op::MaxPool { .. } | Op::GlobalMaxPool => OpGroup::MaxPool,
            Op::BatchNormalization { .. } => OpGroup::BatchNorm,
            Op::Binary(BinaryOp::Add | BinaryOp::Sub) | Op::ReduceSum { .. } => OpGroup::Sum,
            Op::Concat { .. } => OpGroup::Concat,
            Op::Flatten { .. }
            | Op::Reshape { .. }
            | Op::Squeeze { .. }
            | Op::Unsqueeze { .. }
            | Op::Identity
            | Op::Dropout => OpGroup::Shape,
            Op::Softmax { .. } => OpGroup::Softmax,
            _ => OpGroup::Other,
        }
    }

    /// Whether the op only reinterprets the shape of its first input (no value changes).
    pub fn is_reshape(&self) -> bool {
        self.group() == OpGroup::Shape
    }
}
