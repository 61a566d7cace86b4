//! Matrix products on the `gemm` crate.

use gemm::Parallelism;

use crate::tensor::Float;

/// A strided matrix view: element (i, j) is at `ptr[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct Mat<T> {
    pub ptr: *const T,
    pub rs: isize,
    pub cs: isize,
}

impl<T> Mat<T> {
    /// A row-major matrix with `cols` columns.
    pub fn rows(data: &[T], cols: usize) -> Self {
        Mat {
            ptr: data.as_ptr(),
            rs: cols as isize,
            cs: 1,
        }
    }
    /// The transpose of a row-major matrix with `cols` columns.
    pub fn rows_t(data: &[T], cols: usize) -> Self {
        Mat {
            ptr: data.as_ptr(),
            rs: 1,
            cs: cols as isize,
        }
    }
}

/// `dst (m×n, row stride dst_rs) (+)= lhs (m×k) · rhs (k×n)`.
///
/// # Safety
/// The views must cover m×k, k×n and m×n elements inside live allocations, and `dst` must not
/// alias the operands or be written concurrently in the same region.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_raw<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut T,
    dst_rs: usize,
    lhs: Mat<T>,
    rhs: Mat<T>,
    accumulate: bool,
    threads: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                // SAFETY: the caller guarantees that `dst` covers m rows of n elements at row
                // stride `dst_rs` inside one live allocation, not aliased by anyone else.
                unsafe { std::slice::from_raw_parts_mut(dst.add(i * dst_rs), n) }.fill(T::zero());
            }
        }
        return;
    }
    let par = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: the caller guarantees the three views cover m×k, k×n and m×n elements inside
    // live allocations and that `dst` aliases neither operand nor another writer's region.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs.ptr,
            lhs.cs,
            lhs.rs,
            rhs.ptr,
            rhs.cs,
            rhs.rs,
            T::one(),
            T::one(),
            false,
            false,
            false,
            par,
        )
    };
}

/// `c (+)= a · b` for row-major slices: a is m×k, b is k×n, c is m×n.
#[allow(clippy::too_many_arguments)]
pub fn matmul<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    b: &[T],
    c: &mut [T],
    accumulate: bool,
    threads: usize,
) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    // SAFETY: sizes checked above; c is a distinct &mut borrow.
    unsafe {
        gemm_raw(
            m,
            n,
            k,
            c.as_mut_ptr(),
            n,
            Mat::rows(a, k),
            Mat::rows(b, n),
            accumulate,
            threads,
        )
    }
}

/// `op(a) · op(b)` as a fresh m×n row-major buffer, where `op(a)` is m×k — `a` stored row-major
/// as m×k, or as k×m when `a_t` — and `op(b)` is k×n — `b` stored k×n, or n×k when `b_t`.
/// Transposes are strided views: nothing is copied (dense weights can be hundreds of MB).
#[allow(clippy::too_many_arguments)]
pub fn matmul_t<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    a_t: bool,
    b: &[T],
    b_t: bool,
    threads: usize,
) -> Vec<T> {
    assert!(
        a.len() >= m * k && b.len() >= k * n,
        "matmul_t: operand sizes"
    );
    let lhs = if a_t {
        Mat::rows_t(a, m)
    } else {
        Mat::rows(a, k)
    };
    let rhs = if b_t {
        Mat::rows_t(b, k)
    } else {
        Mat::rows(b, n)
    };
    let mut c = vec![T::zero(); m * n];
    // SAFETY: sizes checked above; c is a fresh buffer of m×n.
    unsafe { gemm_raw(m, n, k, c.as_mut_ptr(), n, lhs, rhs, false, threads) };
    c
}
