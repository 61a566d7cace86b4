//! Operators that move values without arithmetic: concat, transpose, slice, gather, pad, expand.
//! Generic over the element type so constant folding can run them on integer shape tensors.

use crate::op::PadMode;
use crate::tensor::Tensor;

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Concatenates tensors along `axis` (already normalised); shapes must agree elsewhere.
pub fn concat<T: Copy>(parts: &[&Tensor<T>], axis: usize) -> Tensor<T> {
    let mut shape = parts[0].shape().to_vec();
    shape[axis] = parts.iter().map(|p| p.shape()[axis]).sum();
    let outer: usize = shape[..axis].iter().product();
    let mut data = Vec::with_capacity(shape.iter().product());
    for o in 0..outer {
        for p in parts {
            let chunk: usize = p.shape()[axis..].iter().product();
            data.extend_from_slice(&p.data()[o * chunk..(o + 1) * chunk]);
        }
    }
    Tensor::from_parts(shape, data)
}

/// Permutes axes: output axis i is input axis `perm[i]`.
pub fn transpose<T: Copy>(x: &Tensor<T>, perm: &[usize]) -> Tensor<T> {
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
    let in_strides = strides(x.shape());
    let src_strides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let data = gather_strided(x.data(), &shape, &src_strides, 0);
    Tensor::from_parts(shape, data)
}

/// Reads `shape` elements from `src` at `offset + Σ index_i · strides_i`.
///
/// Axes of length 1 are dropped and neighbours that are contiguous in `src` merged first; then
/// runs that are contiguous in `src` are copied whole, and a swap of the last two axes (a matrix
/// transpose, as attention's `kᵀ`) goes by square tiles so that reads and writes both stay in
/// cache.
fn gather_strided<T: Copy>(src: &[T], shape: &[usize], strides: &[usize], offset: usize) -> Vec<T> {
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return out;
    }
    // (length, stride), outermost first, canonical
    let mut dims: Vec<(usize, usize)> = Vec::with_capacity(shape.len());
    for (&len, &st) in shape.iter().zip(strides) {
        if len == 1 {
            continue;
        }
        match dims.last_mut() {
            Some(prev) if prev.1 == st * len => *prev = (prev.0 * len, st),
            _ => dims.push((len, st)),
        }
    }
    let Some(&(inner, inner_st)) = dims.last() else {
        out.push(src[offset]);
        return out;
    };
    let outer = &dims[..dims.len() - 1];
    // the offset of outer index r (row-major over `outer`)
    let base = |r: usize| {
        let (mut pos, mut rem) = (offset, r);
        for &(len, st) in outer.iter().rev() {
            pos += (rem % len) * st;
            rem /= len;
        }
        pos
    };
    if inner_st == 1 {
        for r in 0..n / inner {
            let b = base(r);
            out.extend_from_slice(&src[b..b + inner]);
        }
        return out;
    }
    if let Some(&(rows, 1)) = outer.last() {
        // out[.., i, j] = src[b + i + j·inner_st]: a transpose of rows × inner, tile by tile
        const TILE: usize = 16;
        let lead = &outer[..outer.len() - 1];
        let blocks: usize = lead.iter().map(|d| d.0).product();
        out.resize(n, src[offset]);
        for blk in 0..blocks {
            let (mut b, mut rem) = (offset, blk);
            for &(len, st) in lead.iter().rev() {
                b += (rem % len) * st;
                rem /= len;
            }
            let dst = &mut out[blk * rows * inner..(blk + 1) * rows * inner];
            for i0 in (0..rows).step_by(TILE) {
                for j0 in (0..inner).step_by(TILE) {
                    for i in i0..(i0 + TILE).min(rows) {
                        for j in j0..(j0 + TILE).min(inner) {
                            dst[i * inner + j] = src[b + i + j * inner_st];
                        }
                    }
                }
            }
        }
        return out;
    }
    for r in 0..n / inner {
        let b = base(r);
        out.extend((0..inner).map(|j| src[b + j * inner_st]));
    }
    out
}

/// A resolved slice along each axis: `start`, `step` (may be negative) and element count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceSpec {
    pub start: Vec<isize>,
    pub step: Vec<isize>,
    pub len: Vec<usize>,
}

/// Resolves ONNX Slice parameters against a shape (clamping like the ONNX reference).
pub fn slice_spec(
    shape: &[usize],
    starts: &[i64],
    ends: &[i64],
    axes: &[usize],
    steps: &[i64],
) -> Option<SliceSpec> {
    let r = shape.len();
    let mut spec = SliceSpec {
        start: vec![0; r],
        step: vec![1; r],
        len: shape.to_vec(),
    };
    for (i, &ax) in axes.iter().enumerate() {
        let d = shape[ax] as i64;
        let step = *steps.get(i).unwrap_or(&1);
        if step == 0 {
            return None;
        }
        let norm = |v: i64| if v < 0 { v + d } else { v };
        let (s, e) = (norm(starts[i]), norm(ends[i]));
        let (s, e) = if step > 0 {
            (s.clamp(0, d), e.clamp(0, d))
        } else {
            (s.clamp(-1, d - 1), e.clamp(-1, d - 1))
        };
        let len = if step > 0 {
            ((e - s).max(0) + step - 1) / step
        } else {
            ((s - e).max(0) + (-step) - 1) / (-step)
        };
        spec.start[ax] = s as isize;
        spec.step[ax] = step as isize;
        spec.len[ax] = len as usize;
    }
    Some(spec)
}

/// Applies a resolved slice.
pub fn slice<T: Copy>(x: &Tensor<T>, spec: &SliceSpec) -> Tensor<T> {
    let st = strides(x.shape());
    let n: usize = spec.len.iter().product();
    let mut out = Vec::with_capacity(n);
    let r = spec.len.len();
    let mut idx = vec![0usize; r];
    for _ in 0..n {
        let mut pos = 0isize;
        for d in 0..r {
            pos += (spec.start[d] + idx[d] as isize * spec.step[d]) * st[d] as isize;
        }
        out.push(x.data()[pos as usize]);
        for d in (0..r).rev() {
            idx[d] += 1;
            if idx[d] < spec.len[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Tensor::from_parts(spec.len.clone(), out)
}

/// ONNX Gather: picks `indices` (negative counts from the end) along `axis`.
pub fn gather<T: Copy>(x: &Tensor<T>, indices: &Tensor<i64>, axis: usize) -> Option<Tensor<T>> {
    let s = x.shape();
    let d = s[axis] as i64;
    let outer: usize = s[..axis].iter().product();
    let inner: usize = s[axis + 1..].iter().product();
    let mut shape = s[..axis].to_vec();
    shape.extend_from_slice(indices.shape());
    shape.extend_from_slice(&s[axis + 1..]);
    let mut data = Vec::with_capacity(shape.iter().product());
    for o in 0..outer {
        for &i in indices.data() {
            let i = if i < 0 { i + d } else { i };
            if i < 0 || i >= d {
                return None;
            }
            let base = (o * s[axis] + i as usize) * inner;
            data.extend_from_slice(&x.data()[base..base + inner]);
        }
    }
    Some(Tensor::from_parts(shape, data))
}

/// For a padding of a tensor of shape `shape` with `pads` = [begin_0, …, begin_r, end_0, …,
/// end_r] (negative values crop): the output shape and, per output element, the input element
/// it copies (`None` for constant padding). Shared by [`pad`] and its gradient.
pub fn pad_sources(
    shape: &[usize],
    pads: &[i64],
    mode: PadMode,
) -> Option<(Vec<usize>, Vec<Option<usize>>)> {
    let r = shape.len();
    let out: Vec<usize> = (0..r)
        .map(|i| usize::try_from(shape[i] as i64 + pads[i] + pads[i + r]).ok())
        .collect::<Option<_>>()?;
    if mode != PadMode::Constant && shape.contains(&0) {
        return None;
    }
    let st = strides(shape);
    let n: usize = out.iter().product();
    let mut sources = Vec::with_capacity(n);
    let mut idx = vec![0usize; r];
    for _ in 0..n {
        let mut pos = Some(0usize);
        for d in 0..r {
            let len = shape[d] as i64;
            let mut i = idx[d] as i64 - pads[d];
            if i < 0 || i >= len {
                match mode {
                    PadMode::Constant => {
                        pos = None;
                        break;
                    }
                    PadMode::Edge => i = i.clamp(0, len - 1),
                    PadMode::Reflect if len == 1 => i = 0,
                    PadMode::Reflect => {
                        let period = 2 * (len - 1);
                        i = i.rem_euclid(period);
                        if i >= len {
                            i = period - i;
                        }
                    }
                }
            }
            pos = pos.map(|p| p + i as usize * st[d]);
        }
        sources.push(pos);
        for d in (0..r).rev() {
            idx[d] += 1;
            if idx[d] < out[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Some((out, sources))
}

/// Pads with `pads` = [begin_0, …, begin_r, end_0, …, end_r] (negative values crop).
pub fn pad<T: Copy>(x: &Tensor<T>, pads: &[i64], mode: PadMode, value: T) -> Option<Tensor<T>> {
    let (shape, sources) = pad_sources(x.shape(), pads, mode)?;
    let data = sources
        .iter()
        .map(|s| s.map_or(value, |i| x.data()[i]))
        .collect();
    Some(Tensor::from_parts(shape, data))
}

/// Broadcasts `x` to `shape` (which must be a valid broadcast target).
pub fn expand<T: Copy>(x: &Tensor<T>, shape: &[usize]) -> Tensor<T> {
    let st = super::elementwise::broadcast_strides(x.shape(), shape);
    let data = gather_strided(x.data(), shape, &st, 0);
    Tensor::from_parts(shape.to_vec(), data)
}

/// ONNX Trilu: keeps, in every matrix of the last two axes, the elements with `j − i ≥ k`
/// (`upper`) or `j − i ≤ k` (lower) and zeroes the others.
pub fn trilu<T: Copy + Default>(x: &Tensor<T>, k: i64, upper: bool) -> Tensor<T> {
    let s = x.shape();
    let r = s.len();
    let (rows, cols) = (s[r - 2], s[r - 1]);
    let data = x
        .data()
        .iter()
        .enumerate()
        .map(|(idx, &v)| {
            let j = (idx % cols) as i64;
            let i = ((idx / cols) % rows) as i64;
            let keep = if upper { j - i >= k } else { j - i <= k };
            if keep {
                v
            } else {
                T::default()
            }
        })
        .collect();
    Tensor::from_parts(s.to_vec(), data)
}
