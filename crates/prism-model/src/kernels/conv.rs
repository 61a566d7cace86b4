//! 2-D convolution (1-D as height 1): forward, input-gradient (VJP) and transposed convolution.
//! 3-D convolutions are sums of 2-D ones, one per kernel depth slice ([`Depth`]).
//!
//! Forward: per sample and tile of output rows, im2col into a cache-sized buffer, then one GEMM
//! `W (C_out × C_in·kh·kw) · col` written straight into the output. Input-gradient: the adjoint,
//! `Wᵀ · g` followed by col2im (scatter-add). A transposed convolution is the input-gradient of
//! the convolution with the same weight. 1×1 stride-1 unpadded convolutions skip im2col, and
//! depthwise convolutions use direct loops (a GEMM with one row would waste the kernel).

use rayon::prelude::*;

use super::linalg::{gemm_raw, Mat};
use super::{threads, SyncPtr};
use crate::tensor::{Float, Tensor};

/// The depth axis of a 3-D convolution or pooling window (N × C × D × H × W);
/// [`Depth::FLAT`] for 1-D and 2-D ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Depth {
    /// Input depth.
    pub d: usize,
    /// Kernel depth, stride and dilation.
    pub k: usize,
    pub s: usize,
    pub dil: usize,
    /// Padding in front (and at the back: shapes `out`, and pooling's `count_include_pad`).
    pub pf: usize,
    pub pb: usize,
    /// Output depth.
    pub out: usize,
}

impl Depth {
    /// No depth axis (1-D and 2-D windows).
    pub const FLAT: Depth = Depth {
        d: 1,
        k: 1,
        s: 1,
        dil: 1,
        pf: 0,
        pb: 0,
        out: 1,
    };
    /// Whether the window has a real depth axis (a depth-1 volume with a depth-1 kernel runs
    /// as 2-D).
    pub fn is_flat(&self) -> bool {
        self.d == 1 && self.k == 1 && self.out == 1 && self.pf == 0
    }
    /// Input depth position of output depth `o` and kernel depth `kz`, if inside the input.
    pub fn source(&self, o: usize, kz: usize) -> Option<usize> {
        let i = (o * self.s + kz * self.dil) as isize - self.pf as isize;
        (i >= 0 && (i as usize) < self.d).then_some(i as usize)
    }
}

/// Fully resolved geometry of a 2-D (or, with [`Depth`], 3-D) convolution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    pub batch: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub dh: usize,
    pub dw: usize,
    /// Padding at the top and left (bottom/right padding only shapes `ho`/`wo`).
    pub pt: usize,
    pub pl: usize,
    pub ho: usize,
    pub wo: usize,
    pub group: usize,
    /// The depth axis of a 3-D convolution ([`Depth::FLAT`] otherwise).
    pub depth: Depth,
}

impl ConvGeom {
    pub fn cin_g(&self) -> usize {
        self.c_in / self.group
    }
    pub fn cout_g(&self) -> usize {
        self.c_out / self.group
    }
    /// Weight elements per output channel: C_in/group · (kd ·) kh · kw.
    pub fn k(&self) -> usize {
        self.cin_g() * self.depth.k * self.kh * self.kw
    }
    pub fn input_shape(&self) -> Vec<usize> {
        if self.depth.is_flat() {
            vec![self.batch, self.c_in, self.h, self.w]
        } else {
            vec![self.batch, self.c_in, self.depth.d, self.h, self.w]
        }
    }
    pub fn output_shape(&self) -> Vec<usize> {
        if self.depth.is_flat() {
            vec![self.batch, self.c_out, self.ho, self.wo]
        } else {
            vec![self.batch, self.c_out, self.depth.out, self.ho, self.wo]
        }
    }
    /// The 2-D convolution of one kernel depth slice over every (sample, output depth) pair.
    fn slice_2d(&self) -> ConvGeom {
        ConvGeom {
            batch: self.batch * self.depth.out,
            depth: Depth::FLAT,
            ..self.clone()
        }
    }
    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.sh == 1 && self.sw == 1 && self.pt == 0 && self.pl == 0
    }
    fn is_depthwise(&self) -> bool {
        self.group > 1 && self.group == self.c_in
    }
    /// Output rows per tile: keeps the column buffer near `budget` bytes.
    fn rows_per_tile<T>(&self) -> usize {
        let budget = 1usize << 21;
        let row_bytes = self.k() * self.wo * std::mem::size_of::<T>();
        (budget / row_bytes.max(1)).clamp(1, self.ho.max(1))
    }
}

/// Fills `col` (k × (rows·wo), row-major) with the receptive fields of output rows
/// `oy0..oy0+rows` of one group of one sample (`x` is that group's C_in/g × h × w block).
fn im2col<T: Float>(g: &ConvGeom, x: &[T], oy0: usize, rows: usize, col: &mut [T]) {
    let n = rows * g.wo;
    let (h, w) = (g.h as isize, g.w as isize);
    let mut r = 0;
    for ci in 0..g.cin_g() {
        let plane = &x[ci * g.h * g.w..(ci + 1) * g.h * g.w];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let dst = &mut col[r * n..(r + 1) * n];
                r += 1;
                let dx = (kx * g.dw) as isize - g.pl as isize;
                for (t, oy) in (oy0..oy0 + rows).enumerate() {
                    let seg = &mut dst[t * g.wo..(t + 1) * g.wo];
                    let iy = (oy * g.sh + ky * g.dh) as isize - g.pt as isize;
                    if iy < 0 || iy >= h {
                        seg.fill(T::zero());
                        continue;
                    }
                    let src = &plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    if g.sw == 1 {
                        // contiguous run with zero fringes
                        let lo = (-dx).clamp(0, g.wo as isize) as usize;
                        let hi = (w - dx).clamp(0, g.wo as isize) as usize;
                        seg[..lo].fill(T::zero());
                        if hi > lo {
                            let s0 = (lo as isize + dx) as usize;
                            seg[lo..hi].copy_from_slice(&src[s0..s0 + hi - lo]);
                        }
                        seg[hi.max(lo)..].fill(T::zero());
                    } else {
                        for (ox, v) in seg.iter_mut().enumerate() {
                            let ix = (ox * g.sw) as isize + dx;
                            *v = if ix >= 0 && ix < w {
                                src[ix as usize]
                            } else {
                                T::zero()
                            };
                        }
                    }
                }
            }
        }
    }
}

/// Adds the columns of `col` back into the image block `x` (the adjoint of [`im2col`]).
fn col2im<T: Float>(g: &ConvGeom, col: &[T], oy0: usize, rows: usize, x: &mut [T]) {
    let n = rows * g.wo;
    let (h, w) = (g.h as isize, g.w as isize);
    let mut r = 0;
    for ci in 0..g.cin_g() {
        let plane = &mut x[ci * g.h * g.w..(ci + 1) * g.h * g.w];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let src = &col[r * n..(r + 1) * n];
                r += 1;
                let dx = (kx * g.dw) as isize - g.pl as isize;
                for (t, oy) in (oy0..oy0 + rows).enumerate() {
                    let iy = (oy * g.sh + ky * g.dh) as isize - g.pt as isize;
                    if iy < 0 || iy >= h {
                        continue;
                    }
                    let seg = &src[t * g.wo..(t + 1) * g.wo];
                    let dst = &mut plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    if g.sw == 1 {
                        let lo = (-dx).clamp(0, g.wo as isize) as usize;
                        let hi = (w - dx).clamp(0, g.wo as isize) as usize;
                        if hi > lo {
                            let s0 = (lo as isize + dx) as usize;
                            for (d, &v) in dst[s0..s0 + hi - lo].iter_mut().zip(&seg[lo..hi]) {
                                *d += v;
                            }
                        }
                    } else {
                        for (ox, &v) in seg.iter().enumerate() {
                            let ix = (ox * g.sw) as isize + dx;
                            if ix >= 0 && ix < w {
                                dst[ix as usize] += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Convolution forward: `y = conv(x, w) + b`, with `w` of shape C_out × C_in/group × kh × kw.
pub fn conv2d<T: Float>(x: &[T], w: &[T], bias: Option<&[T]>, g: &ConvGeom) -> Tensor<T> {
    let out_shape = g.output_shape();
    let mut y = vec![T::zero(); out_shape.iter().product()];
    conv2d_into(x, w, bias, g, &mut y);
    Tensor::from_parts(out_shape.to_vec(), y)
}

/// [`conv2d`] into a caller-provided output buffer (overwritten).
pub fn conv2d_into<T: Float>(x: &[T], w: &[T], bias: Option<&[T]>, g: &ConvGeom, y: &mut [T]) {
    if !g.depth.is_flat() {
        conv3d_into(x, w, bias, g, y);
        return;
    }
    let plane_out = g.ho * g.wo;
    assert_eq!(x.len(), g.batch * g.c_in * g.h * g.w, "conv2d: input size");
    assert_eq!(w.len(), g.c_out * g.k(), "conv2d: weight size");
    assert_eq!(
        y.len(),
        g.batch * g.c_out * plane_out,
        "conv2d: output size"
    );
    // Start from the bias (or zero); the GEMMs accumulate onto it.
    for (o, chunk) in y.chunks_mut(plane_out).enumerate() {
        let b = bias.map_or(T::zero(), |b| b[o % g.c_out]);
        chunk.fill(b);
    }
    if plane_out == 0 {
        return;
    }
    if g.is_depthwise() {
        depthwise(x, w, g, y);
        return;
    }
    let rows = g.rows_per_tile::<T>();
    let tiles = g.ho.div_ceil(rows);
    let jobs = g.batch * g.group * tiles;
    // With fewer jobs than threads, let the GEMM itself use the threads.
    let inner = if jobs < threads() { threads() } else { 1 };
    let k = g.k();
    let yp = SyncPtr(y.as_mut_ptr());
    let job = |j: usize, col: &mut Vec<T>| {
        let (n, rest) = (j / (g.group * tiles), j % (g.group * tiles));
        let (gi, t) = (rest / tiles, rest % tiles);
        let oy0 = t * rows;
        let nrows = rows.min(g.ho - oy0);
        let ncols = nrows * g.wo;
        let xg = &x[(n * g.c_in + gi * g.cin_g()) * g.h * g.w..][..g.cin_g() * g.h * g.w];
        let wg = &w[gi * g.cout_g() * k..][..g.cout_g() * k];
        let rhs = if g.is_pointwise() {
            Mat {
                ptr: xg[oy0 * g.wo..].as_ptr(),
                rs: plane_out as isize,
                cs: 1,
            }
        } else {
            col.resize(k * ncols, T::zero());
            im2col(g, xg, oy0, nrows, col);
            Mat::rows(col, ncols)
        };
        let offset = (n * g.c_out + gi * g.cout_g()) * plane_out + oy0 * g.wo;
        // SAFETY: each job writes the rows of its own (sample, group) channels and its own
        // output columns; the operands are live slices of the checked sizes.
        unsafe {
            gemm_raw(
                g.cout_g(),
                ncols,
                k,
                yp.get().add(offset),
                plane_out,
                Mat::rows(wg, k),
                rhs,
                true,
                inner,
            )
        }
    };
    if inner > 1 {
        let mut col = Vec::new();
        (0..jobs).for_each(|j| job(j, &mut col));
    } else {
        (0..jobs)
            .into_par_iter()
            .for_each_init(Vec::new, |col, j| job(j, col));
    }
}

/// Depthwise convolution (group = C_in; C_out = group · multiplier) by direct loops.
fn depthwise<T: Float>(x: &[T], w: &[T], g: &ConvGeom, y: &mut [T]) {
    let plane_in = g.h * g.w;
    let plane_out = g.ho * g.wo;
    let mult = g.cout_g();
    y.par_chunks_mut(plane_out)
        .enumerate()
        .for_each(|(o, out)| {
            let (n, co) = (o / g.c_out, o % g.c_out);
            let ci = co / mult;
            let xp = &x[(n * g.c_in + ci) * plane_in..][..plane_in];
            let wk = &w[co * g.kh * g.kw..][..g.kh * g.kw];
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    let wv = wk[ky * g.kw + kx];
                    let dx = (kx * g.dw) as isize - g.pl as isize;
                    for oy in 0..g.ho {
                        let iy = (oy * g.sh + ky * g.dh) as isize - g.pt as isize;
                        if iy < 0 || iy >= g.h as isize {
                            continue;
                        }
                        let src = &xp[iy as usize * g.w..][..g.w];
                        let dst = &mut out[oy * g.wo..][..g.wo];
                        for (ox, d) in dst.iter_mut().enumerate() {
                            let ix = (ox * g.sw) as isize + dx;
                            if ix >= 0 && ix < g.w as isize {
                                *d += wv * src[ix as usize];
                            }
                        }
                    }
                }
            }
        });
}

/// Input-gradient of [`conv2d`]: `dx = col2im(Wᵀ · dy)` for an output gradient `dy`.
pub fn conv2d_input_grad<T: Float>(dy: &[T], w: &[T], g: &ConvGeom) -> Tensor<T> {
    let in_shape = g.input_shape();
    let mut dx = vec![T::zero(); in_shape.iter().product()];
    conv2d_input_grad_into(dy, w, g, &mut dx);
    Tensor::from_parts(in_shape.to_vec(), dx)
}

/// [`conv2d_input_grad`] into a caller-provided buffer (overwritten).
pub fn conv2d_input_grad_into<T: Float>(dy: &[T], w: &[T], g: &ConvGeom, dx: &mut [T]) {
    if !g.depth.is_flat() {
        conv3d_input_grad_into(dy, w, g, dx);
        return;
    }
    let plane_in = g.h * g.w;
    let plane_out = g.ho * g.wo;
    assert_eq!(
        dy.len(),
        g.batch * g.c_out * plane_out,
        "conv2d_input_grad: gradient size"
    );
    assert_eq!(w.len(), g.c_out * g.k(), "conv2d_input_grad: weight size");
    assert_eq!(
        dx.len(),
        g.batch * g.c_in * plane_in,
        "conv2d_input_grad: input size"
    );
    dx.fill(T::zero());
    if plane_out == 0 {
        return;
    }
    if g.is_depthwise() {
        depthwise_input_grad(dy, w, g, dx);
        return;
    }
    let k = g.k();
    let rows = g.rows_per_tile::<T>();
    let tiles = g.ho.div_ceil(rows);
    // Tiles of one (sample, group) overlap in the input, so they run in order; parallelism is
    // over (sample, group), or inside the GEMM when there are too few of those.
    let jobs = g.batch * g.group;
    let inner = if jobs < threads() { threads() } else { 1 };
    let dxp = SyncPtr(dx.as_mut_ptr());
    let job = |j: usize, col: &mut Vec<T>| {
        let (n, gi) = (j / g.group, j % g.group);
        let wg = &w[gi * g.cout_g() * k..][..g.cout_g() * k];
        let dyg = &dy[(n * g.c_out + gi * g.cout_g()) * plane_out..][..g.cout_g() * plane_out];
        let off = (n * g.c_in + gi * g.cin_g()) * plane_in;
        // SAFETY: job j owns the input channels of its (sample, group).
        let dxg =
            unsafe { std::slice::from_raw_parts_mut(dxp.get().add(off), g.cin_g() * plane_in) };
        for t in 0..tiles {
            let oy0 = t * rows;
            let nrows = rows.min(g.ho - oy0);
            let ncols = nrows * g.wo;
            let rhs = Mat {
                ptr: dyg[oy0 * g.wo..].as_ptr(),
                rs: plane_out as isize,
                cs: 1,
            };
            if g.is_pointwise() {
                // SAFETY: writes the tile's columns of dxg, within bounds.
                unsafe {
                    gemm_raw(
                        k,
                        ncols,
                        g.cout_g(),
                        dxg[oy0 * g.wo..].as_mut_ptr(),
                        plane_in,
                        Mat::rows_t(wg, k),
                        rhs,
                        true,
                        inner,
                    )
                }
            } else {
                col.resize(k * ncols, T::zero());
                // SAFETY: col is a private buffer of k × ncols.
                unsafe {
                    gemm_raw(
                        k,
                        ncols,
                        g.cout_g(),
                        col.as_mut_ptr(),
                        ncols,
                        Mat::rows_t(wg, k),
                        rhs,
                        false,
                        inner,
                    )
                }
                col2im(g, col, oy0, nrows, dxg);
            }
        }
    };
    if inner > 1 {
        let mut col = Vec::new();
        (0..jobs).for_each(|j| job(j, &mut col));
    } else {
        (0..jobs)
            .into_par_iter()
            .for_each_init(Vec::new, |col, j| job(j, col));
    }
}

fn depthwise_input_grad<T: Float>(dy: &[T], w: &[T], g: &ConvGeom, dx: &mut [T]) {
    let plane_in = g.h * g.w;
    let plane_out = g.ho * g.wo;
    let mult = g.cout_g();
    dx.par_chunks_mut(plane_in)
        .enumerate()
        .for_each(|(o, xin)| {
            let (n, ci) = (o / g.c_in, o % g.c_in);
            for m in 0..mult {
                let co = ci * mult + m;
                let gp = &dy[(n * g.c_out + co) * plane_out..][..plane_out];
                let wk = &w[co * g.kh * g.kw..][..g.kh * g.kw];
                for ky in 0..g.kh {
                    for kx in 0..g.kw {
                        let wv = wk[ky * g.kw + kx];
                        let dx0 = (kx * g.dw) as isize - g.pl as isize;
                        for oy in 0..g.ho {
                            let iy = (oy * g.sh + ky * g.dh) as isize - g.pt as isize;
                            if iy < 0 || iy >= g.h as isize {
                                continue;
                            }
                            let dst = &mut xin[iy as usize * g.w..][..g.w];
                            let src = &gp[oy * g.wo..][..g.wo];
                            for (ox, &v) in src.iter().enumerate() {
                                let ix = (ox * g.sw) as isize + dx0;
                                if ix >= 0 && ix < g.w as isize {
                                    dst[ix as usize] += wv * v;
                                }
                            }
                        }
                    }
                }
            }
        });
}

/// Transposed convolution: `y = convᵀ(x, w) + b` with ONNX's weight layout
/// C_in × C_out/group × kh × kw. `g` is the geometry of the *forward* convolution whose
/// input-gradient this is: its input (`c_in`, `h`, `w`) is the transposed convolution's output
/// and its output (`c_out`, `ho`, `wo`) the transposed convolution's input.
pub fn conv_transpose2d<T: Float>(x: &[T], w: &[T], bias: Option<&[T]>, g: &ConvGeom) -> Tensor<T> {
    let mut y = conv2d_input_grad(x, w, g);
    if let Some(b) = bias {
        let plane = g.depth.d * g.h * g.w;
        y.data_mut()
            .par_chunks_mut(plane)
            .enumerate()
            .for_each(|(o, p)| {
                let v = b[o % g.c_in];
                p.iter_mut().for_each(|e| *e += v);
            });
    }
    y
}

/// The weights of kernel depth slice `kz`: C_out × C_in/group × kh × kw out of
/// C_out × C_in/group × kd × kh × kw.
fn weight_slice<T: Float>(w: &[T], g: &ConvGeom, kz: usize) -> Vec<T> {
    let khw = g.kh * g.kw;
    let rows = g.c_out * g.cin_g();
    let mut out = Vec::with_capacity(rows * khw);
    for r in 0..rows {
        out.extend_from_slice(&w[(r * g.depth.k + kz) * khw..][..khw]);
    }
    out
}

/// 3-D convolution as a sum over kernel depth slices `kz` of 2-D convolutions: the input
/// planes each output depth reads through `kz` are stacked as a batch of N · D_out images
/// (zero planes in the padding), convolved with the slice's weights, and added up.
fn conv3d_into<T: Float>(x: &[T], w: &[T], bias: Option<&[T]>, g: &ConvGeom, y: &mut [T]) {
    let dp = g.depth;
    let (plane_in, plane_out) = (g.h * g.w, g.ho * g.wo);
    assert_eq!(
        x.len(),
        g.batch * g.c_in * dp.d * plane_in,
        "conv3d: input size"
    );
    assert_eq!(w.len(), g.c_out * g.k(), "conv3d: weight size");
    assert_eq!(
        y.len(),
        g.batch * g.c_out * dp.out * plane_out,
        "conv3d: output size"
    );
    let g2 = g.slice_2d();
    let mut stack = vec![T::zero(); g2.batch * g.c_in * plane_in];
    let mut part = vec![T::zero(); g2.batch * g.c_out * plane_out];
    // acc[(n, o), co] accumulates the slices; written to y[n, co, o] at the end
    let mut acc = vec![T::zero(); part.len()];
    for kz in 0..dp.k {
        let mut any = false;
        for n in 0..g.batch {
            for o in 0..dp.out {
                let src = dp.source(o, kz);
                any |= src.is_some();
                for ci in 0..g.c_in {
                    let dst = &mut stack[((n * dp.out + o) * g.c_in + ci) * plane_in..][..plane_in];
                    match src {
                        Some(iz) => dst.copy_from_slice(
                            &x[((n * g.c_in + ci) * dp.d + iz) * plane_in..][..plane_in],
                        ),
                        None => dst.fill(T::zero()),
                    }
                }
            }
        }
        if !any {
            continue;
        }
        conv2d_into(&stack, &weight_slice(w, g, kz), None, &g2, &mut part);
        acc.par_iter_mut().zip(&part).for_each(|(a, &p)| *a += p);
    }
    for n in 0..g.batch {
        for co in 0..g.c_out {
            let b = bias.map_or(T::zero(), |b| b[co]);
            for o in 0..dp.out {
                let src = &acc[((n * dp.out + o) * g.c_out + co) * plane_out..][..plane_out];
                let dst = &mut y[((n * g.c_out + co) * dp.out + o) * plane_out..][..plane_out];
                for (d, &v) in dst.iter_mut().zip(src) {
                    *d = v + b;
                }
            }
        }
    }
}

/// Input-gradient of [`conv3d_into`]: per kernel depth slice, the 2-D input-gradient of the
/// stacked output gradient, added back to the input planes it came from.
fn conv3d_input_grad_into<T: Float>(dy: &[T], w: &[T], g: &ConvGeom, dx: &mut [T]) {
    let dp = g.depth;
    let (plane_in, plane_out) = (g.h * g.w, g.ho * g.wo);
    assert_eq!(
        dy.len(),
        g.batch * g.c_out * dp.out * plane_out,
        "conv3d_input_grad: gradient size"
    );
    assert_eq!(w.len(), g.c_out * g.k(), "conv3d_input_grad: weight size");
    assert_eq!(
        dx.len(),
        g.batch * g.c_in * dp.d * plane_in,
        "conv3d_input_grad: input size"
    );
    dx.fill(T::zero());
    let g2 = g.slice_2d();
    // dy[n, co, o] → stacked[(n, o), co]
    let mut stacked = vec![T::zero(); dy.len()];
    for n in 0..g.batch {
        for co in 0..g.c_out {
            for o in 0..dp.out {
                stacked[((n * dp.out + o) * g.c_out + co) * plane_out..][..plane_out]
                    .copy_from_slice(
                        &dy[((n * g.c_out + co) * dp.out + o) * plane_out..][..plane_out],
                    );
            }
        }
    }
    let mut part = vec![T::zero(); g2.batch * g.c_in * plane_in];
    for kz in 0..dp.k {
        if (0..dp.out).all(|o| dp.source(o, kz).is_none()) {
            continue;
        }
        conv2d_input_grad_into(&stacked, &weight_slice(w, g, kz), &g2, &mut part);
        for n in 0..g.batch {
            for o in 0..dp.out {
                let Some(iz) = dp.source(o, kz) else {
                    continue;
                };
                for ci in 0..g.c_in {
                    let src = &part[((n * dp.out + o) * g.c_in + ci) * plane_in..][..plane_in];
                    let dst = &mut dx[((n * g.c_in + ci) * dp.d + iz) * plane_in..][..plane_in];
                    for (d, &v) in dst.iter_mut().zip(src) {
                        *d += v;
                    }
                }
            }
        }
    }
}
