//! A small dense tensor: a shape and a contiguous row-major buffer.
//!
//! Prism's numerics need little from a tensor type: contiguous NCHW storage that kernels can
//! slice, and a dtype parameter (f32 or f64). Keeping it this small keeps the kernels readable
//! and lets a GPU backend later own its own buffers behind the same shapes.

use std::fmt::Debug;
use std::sync::Arc;

use crate::error::{ModelError, Result};

/// Element type of computed tensors: `f32` (default) or `f64` (for tight parity checks).
pub trait Float:
    num_traits::Float
    + num_traits::FromPrimitive
    + std::ops::AddAssign
    + std::ops::MulAssign
    + std::iter::Sum
    + Default
    + Debug
    + Send
    + Sync
    + 'static
{
    /// The run-time tag of this type.
    const DTYPE: DType;
    /// The largest integer magnitude this type holds exactly (2²⁴ for f32, 2⁵³ for f64):
    /// integer inputs (token ids) beyond it cannot be carried without rounding.
    const EXACT_INT: i64;
    /// Converts from f64 (rounding to nearest for f32).
    fn of(v: f64) -> Self;
    /// Widens to f64.
    fn f64(self) -> f64;
    /// Borrows a constant as this type when it already is (no copy), `None` otherwise.
    fn borrow_constant(c: &Constant) -> Option<Arc<Tensor<Self>>>;
    /// Wraps a tensor of this type as a constant.
    fn into_constant(t: Tensor<Self>) -> Constant;
}

impl Float for f32 {
    const DTYPE: DType = DType::F32;
    const EXACT_INT: i64 = 1 << 24;
    fn of(v: f64) -> Self {
        v as f32
    }
    fn f64(self) -> f64 {
        self as f64
    }
    fn borrow_constant(c: &Constant) -> Option<Arc<Tensor<Self>>> {
        match c {
            Constant::F32(t) => Some(t.clone()),
            _ => None,
        }
    }
    fn into_constant(t: Tensor<Self>) -> Constant {
        Constant::F32(Arc::new(t))
    }
}

impl Float for f64 {
    const DTYPE: DType = DType::F64;
    const EXACT_INT: i64 = 1 << 53;
    fn of(v: f64) -> Self {
        v
    }
    fn f64(self) -> f64 {
        self
    }
    fn borrow_constant(c: &Constant) -> Option<Arc<Tensor<Self>>> {
        match c {
            Constant::F64(t) => Some(t.clone()),
            _ => None,
        }
    }
    fn into_constant(t: Tensor<Self>) -> Constant {
        Constant::F64(Arc::new(t))
    }
}

/// Element types Prism distinguishes at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F64,
    I64,
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::I64 => "i64",
        })
    }
}

/// A dense row-major tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor<T> {
    shape: Vec<usize>,
    data: Vec<T>,
}

impl<T: Float> Tensor<T> {
    /// Carries integer values (token ids, masks, indices) in the float type, exactly: fails when
    /// a value is beyond [`Float::EXACT_INT`] (run in f64 for such inputs).
    pub fn from_ints(shape: Vec<usize>, data: &[i64]) -> Result<Self> {
        if let Some(v) = data.iter().find(|v| v.unsigned_abs() > T::EXACT_INT as u64) {
            return Err(ModelError::Invalid(format!(
                "integer value {v} cannot be carried exactly in {} (largest: {}); run in f64",
                T::DTYPE,
                T::EXACT_INT
            )));
        }
        Tensor::new(shape, data.iter().map(|&v| T::of(v as f64)).collect())
    }
}

impl<T: Copy + Default> Tensor<T> {
    /// A tensor of zeros (the type's default value).
    pub fn zeros(shape: &[usize]) -> Self {
        Tensor {
            shape: shape.to_vec(),
            data: vec![T::default(); shape.iter().product()],
        }
    }
}

impl<T> Tensor<T> {
    /// Wraps `data` with `shape`; fails when the element count does not match.
    pub fn new(shape: Vec<usize>, data: Vec<T>) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(ModelError::Invalid(format!(
                "a tensor of shape {shape:?} needs {n} elements, got {}",
                data.len()
            )));
        }
        Ok(Tensor { shape, data })
    }
    /// Internal constructor for kernels that computed the length themselves.
    pub(crate) fn from_parts(shape: Vec<usize>, data: Vec<T>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Tensor { shape, data }
    }
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn data(&self) -> &[T] {
        &self.data
    }
    pub fn data_mut(&mut self) -> &mut [T] {
        &mut self.data
    }
    pub fn into_data(self) -> Vec<T> {
        self.data
    }
    pub fn len(&self) -> usize {
        self.data.len()
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
    /// The same data under another shape with the same element count.
    pub fn reshape(self, shape: Vec<usize>) -> Result<Self> {
        Tensor::new(shape, self.data)
    }
    /// Applies `f` to every element.
    pub fn map<U>(&self, f: impl Fn(&T) -> U) -> Tensor<U> {
        Tensor {
            shape: self.shape.clone(),
            data: self.data.iter().map(f).collect(),
        }
    }
}

impl<T: Float> Tensor<T> {
    /// Converts to another float type.
    pub fn cast<U: Float>(&self) -> Tensor<U> {
        self.map(|v| U::of(v.f64()))
    }
}

/// A constant tensor of the graph (initializer, `Constant` node or folded value).
///
/// Float constants keep the precision they were stored in; the executor converts them once to
/// the dtype it runs in (sharing, not copying, when the types agree).
#[derive(Clone, Debug, PartialEq)]
pub enum Constant {
    F32(Arc<Tensor<f32>>),
    F64(Arc<Tensor<f64>>),
    I64(Arc<Tensor<i64>>),
}

impl Constant {
    pub fn shape(&self) -> &[usize] {
        match self {
            Constant::F32(t) => t.shape(),
            Constant::F64(t) => t.shape(),
            Constant::I64(t) => t.shape(),
        }
    }
    pub fn dtype(&self) -> DType {
        match self {
            Constant::F32(_) => DType::F32,
            Constant::F64(_) => DType::F64,
            Constant::I64(_) => DType::I64,
        }
    }
    pub fn len(&self) -> usize {
        self.shape().iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The values as f64 (integers converted).
    pub fn to_f64(&self) -> Tensor<f64> {
        match self {
            Constant::F32(t) => t.cast(),
            Constant::F64(t) => (**t).clone(),
            Constant::I64(t) => t.map(|&v| v as f64),
        }
    }
    /// The values as the float type `T`, shared when the constant already has that type.
    pub fn to_float<T: Float>(&self) -> Arc<Tensor<T>> {
        if let Some(t) = T::borrow_constant(self) {
            return t;
        }
        Arc::new(match self {
            Constant::F32(t) => t.cast(),
            Constant::F64(t) => t.cast(),
            Constant::I64(t) => t.map(|&v| T::of(v as f64)),
        })
    }
    /// The values as integers; floats must be integral.
    pub fn to_i64(&self) -> Option<Vec<i64>> {
        match self {
            Constant::I64(t) => Some(t.data().to_vec()),
            Constant::F32(t) => t
                .data()
                .iter()
                .map(|&v| (v.fract() == 0.0).then_some(v as i64))
                .collect(),
            Constant::F64(t) => t
                .data()
                .iter()
                .map(|&v| (v.fract() == 0.0).then_some(v as i64))
                .collect(),
        }
    }
    pub fn scalar_f64(&self) -> Option<f64> {
        (self.len() == 1).then(|| self.to_f64().data()[0])
    }
    pub fn i64(t: Tensor<i64>) -> Self {
        Constant::I64(Arc::new(t))
    }
    pub fn f32(t: Tensor<f32>) -> Self {
        Constant::F32(Arc::new(t))
    }
}
