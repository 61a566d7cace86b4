//! The backend seam: every tensor operation the forward pass and the attribution rules compute,
//! behind one trait.
//!
//! Attribution code (rules, gradients, the backward sweep, the attributors' accumulation) calls
//! only [`Backend`] methods; it never loops over a tensor's elements itself. A backend owns its
//! tensors through the associated type [`Backend::Tensor`]: for [`Cpu`] that is the host
//! [`Tensor`], for a GPU backend it would be a device buffer, so activations can stay on the
//! device for a whole sweep and only inputs and outputs cross ([`Backend::upload`],
//! [`Backend::download`]).
//!
//! Element-wise arithmetic is described as data ([`Map`], [`Zip`]), not closures: a GPU backend
//! compiles one kernel per variant (or fuses a rule's variants), and the CPU backend matches on
//! the variant once per call, outside its inner loop. Each variant documents its formula in the
//! order of its floating-point operations, which every backend must keep so that results agree
//! with the reference to the last bit on the CPU.
//!
//! Shape mismatches are [`ModelError::Shape`] errors naming the operation and both shapes.

mod cpu;

pub use cpu::Cpu;

use crate::error::Result;
use crate::kernels::conv::ConvGeom;
use crate::kernels::index::ScatterReduction;
use crate::kernels::movement::SliceSpec;
use crate::kernels::pool::PoolGeom;
use crate::kernels::resize::ResizePlan;
use crate::op::{BinaryOp, PadMode, UnaryOp};
use crate::tensor::{Float, Tensor};

/// The sign an element must have to be kept by [`Zip::RouteBySign`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Sign {
    /// Strictly positive.
    Positive,
    /// Strictly negative.
    Negative,
}

/// A one-operand element-wise map `x ↦ f(x)`. Parameters are `f64` and converted to the
/// element type once per call (as `T::of`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Map {
    /// `x⁺`: `x` if `x > 0`, else `0`.
    Positive,
    /// `x⁻`: `x` if `x < 0`, else `0`.
    Negative,
    /// `max(x, 0)` by `Float::max` (DeconvNet's rectified relevance).
    MaxZero,
    /// `x + γ·x⁺` (Gamma's modifier of the positive contributions).
    GammaUp(f64),
    /// `x + γ·x⁻` (Gamma's modifier of the negative contributions).
    GammaDown(f64),
    /// `x · x`.
    Square,
    /// `x · c`.
    Scale(f64),
    /// `x / c`.
    Divide(f64),
    /// `−x`.
    Negate,
    /// `b + (x − b) · α` (a point on the straight path from the baseline `b` to `x`).
    Interpolate { baseline: f64, alpha: f64 },
    /// An ONNX unary operator (see [`crate::kernels::elementwise::unary_fn`]).
    Unary(UnaryOp),
    /// `trunc(x)`: a Cast to an integer type (integers are carried in the float type).
    Truncate,
    /// `1` where `x ≠ 0`, else `0`: a Cast to bool.
    NonZero,
}

/// A two-operand element-wise map `(a, b) ↦ f(a, b)`, on equal shapes ([`Backend::zip`]), with
/// broadcasting ([`Backend::broadcast`]) or with `b` one value per channel
/// ([`Backend::channel`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Zip {
    /// `a + b`.
    Add,
    /// `a − b`.
    Sub,
    /// `a · b`.
    Mul,
    /// `a / b`.
    Div,
    /// `−a · b`.
    NegMul,
    /// Zennit's stabilised ratio `a / stab(b)`, with `stab(z) = z + sign(z)·ε`, or
    /// `sign(z)·max(|z|, ε)` when `clip`; `sign(0) = +1`. Where the stabilised denominator is
    /// `0` (possible only with ε = 0, LXT's choice for transformers) the ratio is `0`: no
    /// relevance flows through an output that is exactly zero.
    StabilizedRatio { epsilon: f64, clip: bool },
    /// `a` where `b` has the sign, else `0` (Gamma routes by the sign of the output).
    RouteBySign(Sign),
    /// `α·a − β·b` (AlphaBeta's combination of its two terms).
    WeightedDifference { alpha: f64, beta: f64 },
    /// `a + γ·b`.
    AddScaled(f64),
    /// `(1 + γ)·a − γ·b`.
    GammaLower(f64),
    /// `a + (1 + γ)·b`.
    GammaRouteW(f64),
    /// `γ·(a − b)`.
    GammaRouteWPlus(f64),
    /// `b` where `a > 0` and `b > 0`, else `0` (Guided Backprop; `a` the input, `b` the
    /// relevance).
    GuidedBackprop,
    /// `b / (1 + exp(−β·a))` (the β-smoothed ReLU gradient; `a` the input, `b` the relevance).
    BetaSmoothGate(f64),
    /// `a / n · (b − base)` (Integrated Gradients: mean gradient times the input's distance
    /// from the baseline).
    PathIntegral { steps: f64, baseline: f64 },
    /// An ONNX binary operator (see [`crate::kernels::elementwise::binary_fn`]).
    Binary(BinaryOp),
    /// `a` if `a ≥ b`, else `b` (Max).
    Max,
    /// `a` if `a ≤ b`, else `b` (Min).
    Min,
    /// `b · a^(b − 1)`, and `0` where `b = 0` (∂aᵇ/∂a, as PyTorch masks it).
    PowGradBase,
    /// `b · ln a`, and `0` where `a = 0` (∂xᵉ/∂e from `a = x`, `b = y = xᵉ`, as PyTorch masks
    /// it; NaN for a negative base, where the derivative does not exist).
    PowGradExponent,
    /// `−trunc(a / b)` (`fmod`) or `−floor(a / b)`: ∂ mod(a, b)/∂b.
    ModQuotient { fmod: bool },
    /// `1` where `a > 0`, else `b` (∂PRelu(a; b)/∂a, PyTorch's choice at `0`).
    PReluGrad,
    /// `a · b`, and `0` where `a = 0`: relevance as (modified) gradient `a` times value `b`,
    /// none where the gradient vanishes even at an infinite value (a masked attention score).
    Relevance,
}

/// A dense product `op(a) · op(b)` of row-major matrices, `op(a)` m×k, `op(b)` k×n. A
/// transposed operand is read as a strided view (weights are never copied).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatMul {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// `a` is stored k×m and read transposed.
    pub a_t: bool,
    /// `b` is stored n×k and read transposed.
    pub b_t: bool,
}

/// Zennit's stabiliser as a value: `z + sign(z)·ε` (or clipped), with `ε` scaled per sample by
/// the root mean square of `z` when `norm_scale`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stabilize {
    pub epsilon: f64,
    pub clip: bool,
    pub norm_scale: bool,
}

/// Softmax over a tensor viewed as outer × axis × inner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftmaxAxis {
    pub outer: usize,
    pub len: usize,
    pub inner: usize,
}

/// Gamma's routed, stabilised ratios for a layer after a ReLU, in one pass: with
/// `L_W(x) = y − b`, `u = L_{W⁺}(x)`, `z⁺ = L_W(x) + γu + b_a` and
/// `z⁻ = (1+γ)L_W(x) − γu + b_b`, the outputs are `s_W = s⁺ + (1+γ)s⁻` and
/// `s_{W⁺} = γ(s⁺ − s⁻)` where `s± = R / stab(z±)` routed by the sign of `y`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GammaRatios {
    pub gamma: f64,
    pub epsilon: f64,
    pub clip: bool,
    /// Drop the bias from the denominators (`b_a = b_b = 0`).
    pub zero_bias: bool,
    /// Bias channels and the elements per (sample, channel): element `i` has channel
    /// `(i / plane) % channels`.
    pub channels: usize,
    pub plane: usize,
}

/// Where a computation runs, and the tensors it computes on.
///
/// Every method that combines tensors checks their shapes and returns [`ModelError::Shape`]
/// (naming the operation and both shapes) when they do not fit. Geometry structs
/// ([`ConvGeom`], [`PoolGeom`], [`SliceSpec`]) are resolved on the host by the shape code and
/// passed by reference.
///
/// [`ModelError::Shape`]: crate::ModelError::Shape
pub trait Backend<T: Float>: Send + Sync {
    /// A tensor in this backend's memory.
    type Tensor: Clone + Send + Sync;

    // --- memory -------------------------------------------------------------------------

    /// The shape of a tensor (kept on the host by every backend).
    fn shape<'t>(&self, t: &'t Self::Tensor) -> &'t [usize];
    /// Moves a host tensor into the backend.
    fn upload(&self, t: Tensor<T>) -> Result<Self::Tensor>;
    /// Copies a tensor back to the host.
    fn download(&self, t: &Self::Tensor) -> Result<Tensor<T>>;
    /// A tensor of `shape` filled with `v`.
    fn full(&self, shape: &[usize], v: T) -> Self::Tensor;
    /// The same elements under another shape with the same element count (no copy).
    fn reshape(&self, t: Self::Tensor, shape: Vec<usize>) -> Result<Self::Tensor>;

    // --- element-wise -------------------------------------------------------------------

    /// `f(x)` element-wise.
    fn map(&self, f: Map, x: &Self::Tensor) -> Self::Tensor;
    /// `f(a, b)` element-wise on equal shapes.
    fn zip(&self, f: Zip, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;
    /// `a ← f(a, b)` element-wise on equal shapes, in place.
    fn zip_into(&self, f: Zip, a: &mut Self::Tensor, b: &Self::Tensor) -> Result<()>;
    /// `f(a, b)` with numpy broadcasting to the common shape.
    fn broadcast(&self, f: Zip, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;
    /// `a` where `c ≠ 0`, else `b`, with three-way numpy broadcasting (ONNX Where).
    fn select(&self, c: &Self::Tensor, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;
    /// `f(z[n, c, …], b[c])`: `b` holds one value per channel (axis 1) of `z`.
    fn channel(&self, f: Zip, z: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;
    /// The gradient of an ONNX unary operator: `g · f'(x)` (with `y = f(x)`), as PyTorch
    /// defines it at the kinks.
    fn unary_grad(
        &self,
        u: UnaryOp,
        x: &Self::Tensor,
        y: &Self::Tensor,
        g: &Self::Tensor,
    ) -> Result<Self::Tensor>;
    /// Zennit's stabilised denominator `stab(z)` (per-sample ε when norm-scaled).
    fn stabilize(&self, z: &Self::Tensor, s: &Stabilize) -> Self::Tensor;
    /// [`GammaRatios`]: `(s_W, s_{W⁺})` from the forward output `y`, `u = L_{W⁺}(x)`, the
    /// relevance `r` and the layer's bias (one value per channel).
    fn gamma_ratios(
        &self,
        p: &GammaRatios,
        y: &Self::Tensor,
        u: &Self::Tensor,
        r: &Self::Tensor,
        bias: Option<&Self::Tensor>,
    ) -> Result<(Self::Tensor, Self::Tensor)>;
    /// Whether no element is negative (a decision, read back to the host).
    fn all_nonnegative(&self, x: &Self::Tensor) -> bool;

    // --- linear ---------------------------------------------------------------------------

    /// Convolution `conv(x, w) + b` (output N × C_out × ho × wo).
    fn conv2d(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        bias: Option<&Self::Tensor>,
        g: &ConvGeom,
    ) -> Result<Self::Tensor>;
    /// Input-gradient of [`conv2d`](Self::conv2d) (output N × C_in × h × w).
    fn conv2d_input_grad(
        &self,
        dy: &Self::Tensor,
        w: &Self::Tensor,
        g: &ConvGeom,
    ) -> Result<Self::Tensor>;
    /// Transposed convolution: the input-gradient of the convolution `g`, plus a bias.
    fn conv_transpose2d(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        bias: Option<&Self::Tensor>,
        g: &ConvGeom,
    ) -> Result<Self::Tensor>;
    /// The dense product `p` of `a` and `b`, shaped `out`.
    fn matmul(
        &self,
        p: &MatMul,
        a: &Self::Tensor,
        b: &Self::Tensor,
        out: Vec<usize>,
    ) -> Result<Self::Tensor>;
    /// numpy-style matmul with broadcasting over leading batch dimensions.
    fn matmul_batched(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;

    // --- pooling ------------------------------------------------------------------------

    fn max_pool(&self, x: &Self::Tensor, g: &PoolGeom) -> Result<Self::Tensor>;
    /// Winner-takes-all gradient of max pooling.
    fn max_pool_input_grad(
        &self,
        x: &Self::Tensor,
        dy: &Self::Tensor,
        g: &PoolGeom,
    ) -> Result<Self::Tensor>;
    fn avg_pool(
        &self,
        x: &Self::Tensor,
        g: &PoolGeom,
        count_include_pad: bool,
    ) -> Result<Self::Tensor>;
    fn avg_pool_input_grad(
        &self,
        dy: &Self::Tensor,
        g: &PoolGeom,
        count_include_pad: bool,
    ) -> Result<Self::Tensor>;
    fn global_avg_pool(&self, x: &Self::Tensor) -> Self::Tensor;
    fn global_max_pool(&self, x: &Self::Tensor) -> Self::Tensor;
    /// Each plane of `x_shape` gets its pooled gradient divided by the plane size.
    fn global_avg_pool_grad(&self, g: &Self::Tensor, x_shape: &[usize]) -> Result<Self::Tensor>;
    /// Each plane's gradient goes to the first maximal element of `x`.
    fn global_max_pool_grad(&self, x: &Self::Tensor, g: &Self::Tensor) -> Result<Self::Tensor>;

    // --- reductions and normalisation ---------------------------------------------------

    /// Sum (or mean) over normalised `axes`.
    fn reduce(&self, x: &Self::Tensor, axes: &[usize], keepdims: bool, mean: bool) -> Self::Tensor;
    /// Sums `g` over the axes along which a tensor of `shape` was broadcast to `g`'s shape.
    fn reduce_to_shape(&self, g: &Self::Tensor, shape: &[usize]) -> Result<Self::Tensor>;
    fn softmax(&self, x: &Self::Tensor, a: &SoftmaxAxis) -> Result<Self::Tensor>;
    /// `y ⊙ (g − Σ_axis g ⊙ y)` for the softmax output `y`.
    fn softmax_grad(
        &self,
        y: &Self::Tensor,
        g: &Self::Tensor,
        a: &SoftmaxAxis,
    ) -> Result<Self::Tensor>;
    /// Per-channel `(a, b)` of inference-mode batch normalisation
    /// (`a = γ / √(σ² + ε)`, `b = β − μ·a`).
    fn batchnorm_coefficients(
        &self,
        scale: &Self::Tensor,
        bias: &Self::Tensor,
        mean: &Self::Tensor,
        var: &Self::Tensor,
        eps: f64,
    ) -> Result<(Self::Tensor, Self::Tensor)>;
    /// `x[n, c, …] · a[c] + b[c]`.
    fn channel_affine(
        &self,
        x: &Self::Tensor,
        a: &Self::Tensor,
        b: &Self::Tensor,
    ) -> Result<Self::Tensor>;

    /// Standardises each of `rows` contiguous rows of `x`: `x̂ = (x − μ) · s` with the row's
    /// mean `μ`, biased variance `σ²` and `s = 1 / √(σ² + ε)` (Layer/Group/Instance
    /// normalisation before their affine part). Returns `(x̂, μ, s)`, the statistics shaped
    /// `[rows]`.
    fn standardize(
        &self,
        x: &Self::Tensor,
        rows: usize,
        eps: f64,
    ) -> Result<(Self::Tensor, Self::Tensor, Self::Tensor)>;
    /// Input-gradient of [`standardize`](Self::standardize) for the gradient `g` at `x̂`, with
    /// the statistics counted as functions of `x`: per row
    /// `s · (g − mean(g) − x̂ · mean(g ⊙ x̂))`.
    fn standardize_grad(
        &self,
        xhat: &Self::Tensor,
        inv_std: &Self::Tensor,
        g: &Self::Tensor,
    ) -> Result<Self::Tensor>;
    /// `x − log Σ_axis exp x` (stabilised by the maximum along the axis).
    fn log_softmax(&self, x: &Self::Tensor, a: &SoftmaxAxis) -> Result<Self::Tensor>;
    /// `g − exp(y) · Σ_axis g` for the log-softmax output `y`.
    fn log_softmax_grad(
        &self,
        y: &Self::Tensor,
        g: &Self::Tensor,
        a: &SoftmaxAxis,
    ) -> Result<Self::Tensor>;
    /// Cumulative sum along `axis` (`exclusive`: without the element itself; `reverse`: from
    /// the end).
    fn cumsum(
        &self,
        x: &Self::Tensor,
        axis: usize,
        exclusive: bool,
        reverse: bool,
    ) -> Result<Self::Tensor>;

    // --- data movement and their gradients ----------------------------------------------

    /// Keeps the upper (`j − i ≥ k`) or lower (`j − i ≤ k`) triangle of every matrix of the
    /// last two axes, zeroes the rest.
    fn trilu(&self, x: &Self::Tensor, k: i64, upper: bool) -> Result<Self::Tensor>;

    fn transpose(&self, x: &Self::Tensor, perm: &[usize]) -> Result<Self::Tensor>;
    fn slice(&self, x: &Self::Tensor, spec: &SliceSpec) -> Self::Tensor;
    /// Adds `g` into a zero tensor of `shape` at the positions `spec` selects.
    fn slice_grad(
        &self,
        g: &Self::Tensor,
        shape: &[usize],
        spec: &SliceSpec,
    ) -> Result<Self::Tensor>;
    /// `pads` = [begin_0, …, begin_r, end_0, …, end_r] (negative values crop).
    fn pad(&self, x: &Self::Tensor, pads: &[i64], mode: PadMode, value: T) -> Result<Self::Tensor>;
    /// Adds each element of `g` to the input element its padded position copies.
    fn pad_grad(
        &self,
        g: &Self::Tensor,
        shape: &[usize],
        pads: &[i64],
        mode: PadMode,
    ) -> Result<Self::Tensor>;
    /// Broadcasts `x` to `shape`.
    fn expand(&self, x: &Self::Tensor, shape: &[usize]) -> Result<Self::Tensor>;
    fn gather(&self, x: &Self::Tensor, indices: &Tensor<i64>, axis: usize) -> Result<Self::Tensor>;
    /// Adds the gathered gradient `g` back at `indices` of a zero tensor of `shape`.
    fn gather_grad(
        &self,
        g: &Self::Tensor,
        shape: &[usize],
        indices: &Tensor<i64>,
        axis: usize,
    ) -> Result<Self::Tensor>;
    fn concat(&self, xs: &[&Self::Tensor], axis: usize) -> Result<Self::Tensor>;
    /// ONNX GatherElements along `axis` (indices on the host, checked in range).
    fn gather_elements(
        &self,
        x: &Self::Tensor,
        indices: &Tensor<i64>,
        axis: usize,
    ) -> Result<Self::Tensor>;
    /// Adds `g` back at the positions [`gather_elements`](Self::gather_elements) read, in a
    /// zero tensor of `shape`.
    fn gather_elements_grad(
        &self,
        g: &Self::Tensor,
        shape: &[usize],
        indices: &Tensor<i64>,
        axis: usize,
    ) -> Result<Self::Tensor>;
    /// ONNX GatherND with `batch_dims`.
    fn gather_nd(
        &self,
        x: &Self::Tensor,
        indices: &Tensor<i64>,
        batch_dims: usize,
    ) -> Result<Self::Tensor>;
    /// Adds every gathered slice of `g` back at its source in a zero tensor of `shape`.
    fn gather_nd_grad(
        &self,
        g: &Self::Tensor,
        shape: &[usize],
        indices: &Tensor<i64>,
        batch_dims: usize,
    ) -> Result<Self::Tensor>;
    /// ONNX ScatterND: `data` with the slices at `indices` replaced by (or reduced with)
    /// `updates`.
    fn scatter_nd(
        &self,
        data: &Self::Tensor,
        indices: &Tensor<i64>,
        updates: &Self::Tensor,
        reduction: ScatterReduction,
    ) -> Result<Self::Tensor>;
    /// Resize by a resolved [`ResizePlan`] (nearest or N-linear).
    fn resize(&self, x: &Self::Tensor, plan: &ResizePlan) -> Result<Self::Tensor>;
    /// The transpose of [`resize`](Self::resize): its input-gradient.
    fn resize_grad(&self, g: &Self::Tensor, plan: &ResizePlan) -> Result<Self::Tensor>;

    // --- attribution bookkeeping --------------------------------------------------------

    /// The initial relevance: at each sample's target class (axis 1, all positions of axes
    /// 2..) `1`, or the output itself when `logit`; `0` elsewhere.
    fn seed(&self, out: &Self::Tensor, targets: &[usize], logit: bool) -> Result<Self::Tensor>;
    /// `x` with the elements of every sample where `mask[i] == invert` set to zero (`mask`
    /// covers one sample).
    fn occlude(&self, x: &Self::Tensor, mask: &[bool], invert: bool) -> Result<Self::Tensor>;
    /// Each sample's output for its target class, summed over positions (axes 2..), read back
    /// to the host.
    fn class_scores(&self, out: &Self::Tensor, targets: &[usize]) -> Result<Vec<T>>;
    /// `acc[s, i] += scores[s]` wherever `mask[i]` (`mask` covers one sample).
    fn add_masked(&self, acc: &mut Self::Tensor, mask: &[bool], scores: &[T]) -> Result<()>;
}
