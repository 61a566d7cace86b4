//! Borrowed views of relevance (or input) batches: N×C×H×W, N×H×W or H×W, f32 or f64.

use std::fmt;
use std::ops::{Add, Div, Mul, Neg, Sub};

use crate::error::HeatmapError;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// The element types of relevance arrays: `f32` and `f64`.
///
/// Normalisation runs in the array's own type, as numpy does in Zennit, so that the pixels
/// match Zennit's bit for bit.
pub trait Element:
    sealed::Sealed
    + Copy
    + PartialOrd
    + Send
    + Sync
    + fmt::Debug
    + fmt::Display
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + 'static
{
    /// 0.
    const ZERO: Self;
    /// 255, the largest byte value.
    const BYTE_MAX: Self;
    /// 0.5.
    const HALF: Self;
    /// |self|.
    fn abs(self) -> Self;
    /// Neither NaN nor infinite.
    fn is_finite(self) -> bool;
    /// Widens (or keeps) to f64 exactly.
    fn to_f64(self) -> f64;
    /// `numpy.clip(self, 0, 255).astype(uint8)`: clips, then truncates toward zero (NaN gives 0).
    fn clip_to_byte(self) -> u8;
}

impl Element for f32 {
    const ZERO: Self = 0.0;
    const BYTE_MAX: Self = 255.0;
    const HALF: Self = 0.5;
    fn abs(self) -> Self {
        f32::abs(self)
    }
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn clip_to_byte(self) -> u8 {
        // `as` saturates and maps NaN to 0; for values in [0, 255] it truncates like numpy.
        self.clamp(0.0, 255.0) as u8
    }
}

impl Element for f64 {
    const ZERO: Self = 0.0;
    const BYTE_MAX: Self = 255.0;
    const HALF: Self = 0.5;
    fn abs(self) -> Self {
        f64::abs(self)
    }
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn clip_to_byte(self) -> u8 {
        self.clamp(0.0, 255.0) as u8
    }
}

/// A batch of N samples with C channels of H×W values, borrowed from a flat row-major buffer.
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a, T> {
    data: &'a [T],
    shape: [usize; 4],
}

impl<'a, T: Element> Batch<'a, T> {
    /// Views `data` with `shape`: N×C×H×W, N×H×W (C = 1) or H×W (N = C = 1).
    pub fn new(data: &'a [T], shape: &[usize]) -> Result<Self, HeatmapError> {
        let shape4 = match *shape {
            [h, w] => [1, 1, h, w],
            [n, h, w] => [n, 1, h, w],
            [n, c, h, w] => [n, c, h, w],
            _ => {
                return Err(HeatmapError::Shape {
                    shape: shape.to_vec(),
                    reason: "expected N×C×H×W, N×H×W or H×W".into(),
                })
            }
        };
        let expected = shape4.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if expected != Some(data.len()) {
            return Err(HeatmapError::Shape {
                shape: shape.to_vec(),
                reason: format!(
                    "the shape needs {expected:?} values, the data has {}",
                    data.len()
                ),
            });
        }
        if shape4.contains(&0) {
            return Err(HeatmapError::Shape {
                shape: shape.to_vec(),
                reason: "every dimension must be at least 1".into(),
            });
        }
        Ok(Self {
            data,
            shape: shape4,
        })
    }

    /// Number of samples N.
    pub fn len(&self) -> usize {
        self.shape[0]
    }

    /// Always false: a batch has at least one sample.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Channels C.
    pub fn channels(&self) -> usize {
        self.shape[1]
    }

    /// Height H.
    pub fn height(&self) -> usize {
        self.shape[2]
    }

    /// Width W.
    pub fn width(&self) -> usize {
        self.shape[3]
    }

    /// Sample `n` as C×H×W values.
    pub fn sample(&self, n: usize) -> &'a [T] {
        let size = self.shape[1] * self.shape[2] * self.shape[3];
        &self.data[n * size..(n + 1) * size]
    }

    /// Fails with the position of the first NaN or infinity in sample `n`.
    pub(crate) fn check_finite(&self, n: usize) -> Result<(), HeatmapError> {
        let plane = self.height() * self.width();
        match self.sample(n).iter().position(|v| !v.is_finite()) {
            None => Ok(()),
            Some(i) => {
                let within = i % plane;
                Err(HeatmapError::NonFinite {
                    sample: n,
                    row: within / self.width(),
                    column: within % self.width(),
                    value: self.sample(n)[i].to_string(),
                })
            }
        }
    }
}
