//! Max and average pooling over 2-D windows (1-D as height 1) and 3-D windows, and their
//! input-gradients. The 2-D kernels are untouched by the 3-D ones: a window with a depth axis
//! ([`Depth`]) takes its own loops.

use rayon::prelude::*;

use super::conv::Depth;

use crate::tensor::{Float, Tensor};

/// Fully resolved geometry of a 2-D pooling window over N × C × H × W.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolGeom {
    pub batch: usize,
    pub channels: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub dh: usize,
    pub dw: usize,
    pub pt: usize,
    pub pl: usize,
    /// Bottom/right padding (matters for `count_include_pad`).
    pub pb: usize,
    pub pr: usize,
    pub ho: usize,
    pub wo: usize,
    /// The depth axis of a 3-D window ([`Depth::FLAT`] otherwise).
    pub depth: Depth,
}

impl PoolGeom {
    pub fn input_shape(&self) -> Vec<usize> {
        if self.depth.is_flat() {
            vec![self.batch, self.channels, self.h, self.w]
        } else {
            vec![self.batch, self.channels, self.depth.d, self.h, self.w]
        }
    }
    pub fn output_shape(&self) -> Vec<usize> {
        if self.depth.is_flat() {
            vec![self.batch, self.channels, self.ho, self.wo]
        } else {
            vec![self.batch, self.channels, self.depth.out, self.ho, self.wo]
        }
    }
    /// Flat input positions of the 3-D window of output (oz, oy, ox), inside the input.
    fn window3(&self, oz: usize, oy: usize, ox: usize) -> impl Iterator<Item = usize> + '_ {
        let dp = self.depth;
        (0..dp.k)
            .filter_map(move |kz| dp.source(oz, kz))
            .flat_map(move |iz| {
                self.window(oy, ox)
                    .map(move |(iy, ix)| (iz * self.h + iy) * self.w + ix)
            })
    }
    /// The divisor of a 3-D average-pooling window.
    fn divisor3(&self, oz: usize, oy: usize, ox: usize, count_include_pad: bool) -> usize {
        if count_include_pad {
            let dp = self.depth;
            let z0 = (oz * dp.s) as isize - dp.pf as isize;
            let z1 = (z0 + ((dp.k - 1) * dp.dil + 1) as isize).min((dp.d + dp.pb) as isize);
            (z0..z1).step_by(dp.dil).count() * divisor(self, oy, ox, true)
        } else {
            self.window3(oz, oy, ox).count()
        }
    }
    /// Input positions (iy, ix) of the window of output (oy, ox), inside the input.
    fn window(&self, oy: usize, ox: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        let y0 = (oy * self.sh) as isize - self.pt as isize;
        let x0 = (ox * self.sw) as isize - self.pl as isize;
        (0..self.kh).flat_map(move |ky| {
            let iy = y0 + (ky * self.dh) as isize;
            (0..self.kw).filter_map(move |kx| {
                let ix = x0 + (kx * self.dw) as isize;
                (iy >= 0 && ix >= 0 && iy < self.h as isize && ix < self.w as isize)
                    .then_some((iy as usize, ix as usize))
            })
        })
    }
}

/// Max pooling; windows that lie entirely in the padding yield −∞ like ONNX Runtime.
pub fn max_pool<T: Float>(x: &[T], g: &PoolGeom) -> Tensor<T> {
    if !g.depth.is_flat() {
        return pool3d(x, g, |xp, oz, oy, ox| {
            g.window3(oz, oy, ox)
                .map(|i| xp[i])
                .fold(
                    T::neg_infinity(),
                    |a, b| if b > a || b.is_nan() { b } else { a },
                )
        });
    }
    let (pi, po) = (g.h * g.w, g.ho * g.wo);
    let mut y = vec![T::zero(); g.batch * g.channels * po];
    y.par_chunks_mut(po.max(1))
        .enumerate()
        .for_each(|(p, out)| {
            let xp = &x[p * pi..][..pi];
            for oy in 0..g.ho {
                for ox in 0..g.wo {
                    out[oy * g.wo + ox] = g.window(oy, ox).map(|(iy, ix)| xp[iy * g.w + ix]).fold(
                        T::neg_infinity(),
                        |a, b| if b > a || b.is_nan() { b } else { a },
                    );
                }
            }
        });
    Tensor::from_parts(g.output_shape(), y)
}

/// Gradient of max pooling: each output's gradient goes to the first maximal input of its
/// window (winner takes all, like PyTorch).
pub fn max_pool_input_grad<T: Float>(x: &[T], dy: &[T], g: &PoolGeom) -> Tensor<T> {
    if !g.depth.is_flat() {
        return pool3d_grad(dy, g, |xp_index, oz, oy, ox, v, din| {
            let xp = &x[xp_index..];
            let mut best: Option<(usize, T)> = None;
            for i in g.window3(oz, oy, ox) {
                if best.is_none_or(|(_, b)| xp[i] > b) {
                    best = Some((i, xp[i]));
                }
            }
            if let Some((i, _)) = best {
                din[i] += v;
            }
        });
    }
    let (pi, po) = (g.h * g.w, g.ho * g.wo);
    let mut dx = vec![T::zero(); g.batch * g.channels * pi];
    dx.par_chunks_mut(pi.max(1))
        .enumerate()
        .for_each(|(p, din)| {
            let xp = &x[p * pi..][..pi];
            let gp = &dy[p * po..][..po];
            for oy in 0..g.ho {
                for ox in 0..g.wo {
                    let mut best: Option<(usize, T)> = None;
                    for (iy, ix) in g.window(oy, ox) {
                        let v = xp[iy * g.w + ix];
                        if best.is_none_or(|(_, b)| v > b) {
                            best = Some((iy * g.w + ix, v));
                        }
                    }
                    if let Some((i, _)) = best {
                        din[i] += gp[oy * g.wo + ox];
                    }
                }
            }
        });
    Tensor::from_parts(vec![g.batch, g.channels, g.h, g.w], dx)
}

/// The divisor of each average-pooling window.
fn divisor(g: &PoolGeom, oy: usize, ox: usize, count_include_pad: bool) -> usize {
    if count_include_pad {
        // Window clipped to the padded input (not to the ceil-mode overhang).
        let y0 = (oy * g.sh) as isize - g.pt as isize;
        let x0 = (ox * g.sw) as isize - g.pl as isize;
        let y1 = (y0 + ((g.kh - 1) * g.dh + 1) as isize).min((g.h + g.pb) as isize);
        let x1 = (x0 + ((g.kw - 1) * g.dw + 1) as isize).min((g.w + g.pr) as isize);
        let ny = (y0..y1).step_by(g.dh).count();
        let nx = (x0..x1).step_by(g.dw).count();
        ny * nx
    } else {
        g.window(oy, ox).count()
    }
}

/// Average pooling.
pub fn avg_pool<T: Float>(x: &[T], g: &PoolGeom, count_include_pad: bool) -> Tensor<T> {
    if !g.depth.is_flat() {
        return pool3d(x, g, |xp, oz, oy, ox| {
            let s: T = g.window3(oz, oy, ox).map(|i| xp[i]).sum();
            s / T::of(g.divisor3(oz, oy, ox, count_include_pad).max(1) as f64)
        });
    }
    let (pi, po) = (g.h * g.w, g.ho * g.wo);
    let mut y = vec![T::zero(); g.batch * g.channels * po];
    y.par_chunks_mut(po.max(1))
        .enumerate()
        .for_each(|(p, out)| {
            let xp = &x[p * pi..][..pi];
            for oy in 0..g.ho {
                for ox in 0..g.wo {
                    let s: T = g.window(oy, ox).map(|(iy, ix)| xp[iy * g.w + ix]).sum();
                    let d = divisor(g, oy, ox, count_include_pad).max(1);
                    out[oy * g.wo + ox] = s / T::of(d as f64);
                }
            }
        });
    Tensor::from_parts(g.output_shape(), y)
}

/// Gradient of average pooling: each output's gradient spread evenly over its window.
pub fn avg_pool_input_grad<T: Float>(dy: &[T], g: &PoolGeom, count_include_pad: bool) -> Tensor<T> {
    if !g.depth.is_flat() {
        return pool3d_grad(dy, g, |_, oz, oy, ox, v, din| {
            let v = v / T::of(g.divisor3(oz, oy, ox, count_include_pad).max(1) as f64);
            for i in g.window3(oz, oy, ox) {
                din[i] += v;
            }
        });
    }
    let (pi, po) = (g.h * g.w, g.ho * g.wo);
    let mut dx = vec![T::zero(); g.batch * g.channels * pi];
    dx.par_chunks_mut(pi.max(1))
        .enumerate()
        .for_each(|(p, din)| {
            let gp = &dy[p * po..][..po];
            for oy in 0..g.ho {
                for ox in 0..g.wo {
                    let d = divisor(g, oy, ox, count_include_pad).max(1);
                    let v = gp[oy * g.wo + ox] / T::of(d as f64);
                    for (iy, ix) in g.window(oy, ox) {
                        din[iy * g.w + ix] += v;
                    }
                }
            }
        });
    Tensor::from_parts(vec![g.batch, g.channels, g.h, g.w], dx)
}

/// A 3-D pooling forward: `f(volume, oz, oy, ox)` per output, parallel over (sample, channel).
fn pool3d<T: Float>(
    x: &[T],
    g: &PoolGeom,
    f: impl Fn(&[T], usize, usize, usize) -> T + Sync,
) -> Tensor<T> {
    let vi = g.depth.d * g.h * g.w;
    let vo = g.depth.out * g.ho * g.wo;
    let mut y = vec![T::zero(); g.batch * g.channels * vo];
    y.par_chunks_mut(vo.max(1))
        .enumerate()
        .for_each(|(p, out)| {
            let xp = &x[p * vi..][..vi];
            for oz in 0..g.depth.out {
                for oy in 0..g.ho {
                    for ox in 0..g.wo {
                        out[(oz * g.ho + oy) * g.wo + ox] = f(xp, oz, oy, ox);
                    }
                }
            }
        });
    Tensor::from_parts(g.output_shape(), y)
}

/// A 3-D pooling input-gradient: `f(volume offset, oz, oy, ox, dy, dx volume)` per output.
fn pool3d_grad<T: Float>(
    dy: &[T],
    g: &PoolGeom,
    f: impl Fn(usize, usize, usize, usize, T, &mut [T]) + Sync,
) -> Tensor<T> {
    let vi = g.depth.d * g.h * g.w;
    let vo = g.depth.out * g.ho * g.wo;
    let mut dx = vec![T::zero(); g.batch * g.channels * vi];
    dx.par_chunks_mut(vi.max(1))
        .enumerate()
        .for_each(|(p, din)| {
            let gp = &dy[p * vo..][..vo];
            for oz in 0..g.depth.out {
                for oy in 0..g.ho {
                    for ox in 0..g.wo {
                        f(p * vi, oz, oy, ox, gp[(oz * g.ho + oy) * g.wo + ox], din);
                    }
                }
            }
        });
    Tensor::from_parts(g.input_shape(), dx)
}

/// Mean over each plane of an N × C × (spatial…) tensor, keeping singleton spatial dims.
pub fn global_avg_pool<T: Float>(x: &Tensor<T>) -> Tensor<T> {
    global_reduce(x, |p| {
        p.iter().copied().sum::<T>() / T::of(p.len().max(1) as f64)
    })
}

/// Max over each plane of an N × C × (spatial…) tensor, keeping singleton spatial dims.
pub fn global_max_pool<T: Float>(x: &Tensor<T>) -> Tensor<T> {
    global_reduce(x, |p| p.iter().copied().fold(T::neg_infinity(), T::max))
}

fn global_reduce<T: Float>(x: &Tensor<T>, f: impl Fn(&[T]) -> T + Sync) -> Tensor<T> {
    let s = x.shape();
    let planes = s[0] * s.get(1).copied().unwrap_or(1);
    let plane = x.len() / planes.max(1);
    let data: Vec<T> = if plane == 0 {
        vec![T::zero(); planes]
    } else {
        x.data().par_chunks(plane).map(&f).collect()
    };
    let mut shape = s.to_vec();
    for d in shape.iter_mut().skip(2) {
        *d = 1;
    }
    Tensor::from_parts(shape, data)
}
