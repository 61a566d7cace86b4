//! CPU kernels: the numerics behind every operator, and the input-gradients attribution needs.
//!
//! Convolutions are im2col/col2im on the `gemm` crate (faer's matrix kernel), tiled so the
//! column buffer stays in cache, and parallel over (sample, tile) with rayon; the choice and
//! its measurements are in `docs/ARCHITECTURE.md`. Everything here works on contiguous
//! row-major buffers and is generic over [`Float`](crate::Float) (f32 or f64).

pub mod conv;
pub mod elementwise;
pub mod index;
pub mod linalg;
pub mod movement;
pub mod pool;
pub mod reduce;
pub mod resize;

/// A raw pointer that may cross threads. Every use writes disjoint regions, which the caller
/// guarantees by construction (distinct samples, channels or tiles).
#[derive(Clone, Copy)]
pub(crate) struct SyncPtr<T>(pub *mut T);
// SAFETY: the pointer is only dereferenced by kernels that write disjoint regions of a buffer
// they exclusively borrow for the duration of the parallel loop (see the type's doc).
unsafe impl<T: Send> Send for SyncPtr<T> {}
// SAFETY: as for `Send`: concurrent users never touch the same elements.
unsafe impl<T: Send> Sync for SyncPtr<T> {}

impl<T> SyncPtr<T> {
    /// Accessor (closures must capture the wrapper, not the raw field, to stay `Send`).
    #[inline]
    pub fn get(self) -> *mut T {
        self.0
    }
}

/// Number of worker threads kernels may use.
pub fn threads() -> usize {
    rayon::current_num_threads().max(1)
}
