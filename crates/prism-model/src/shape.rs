//! Shape inference and operator geometry for concrete input shapes.

use crate::error::{ModelError, Result};
use crate::kernels::conv::{ConvGeom, Depth};
use crate::kernels::elementwise::broadcast_shape;
use crate::kernels::index::gather_nd_layout;
use crate::kernels::movement::{slice_spec, SliceSpec};
use crate::kernels::pool::PoolGeom;
use crate::kernels::resize::{axis_taps, is_identity, AxisResample, ResizePlan};
use crate::op::{AutoPad, BinaryOp, KeepAspect, Op, ResizeTarget, Window};

/// Normalises a possibly negative axis against a rank.
pub fn norm_axis(axis: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    (0..r).contains(&a).then_some(a as usize)
}

/// Spatial geometry along one axis: (pad_begin, pad_end, output size).
fn axis_geometry(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pads: (usize, usize),
    auto_pad: AutoPad,
    ceil_mode: bool,
) -> Option<(usize, usize, usize)> {
    // Kernel, stride, dilation and pads come from the model file: checked arithmetic.
    let eff = kernel
        .checked_sub(1)?
        .checked_mul(dilation)?
        .checked_add(1)?;
    let (pb, pe) = match auto_pad {
        AutoPad::NotSet => pads,
        AutoPad::Valid => (0, 0),
        AutoPad::SameUpper | AutoPad::SameLower => {
            let out = input.div_ceil(stride);
            let total = out
                .saturating_sub(1)
                .checked_mul(stride)?
                .checked_add(eff)?
                .saturating_sub(input);
            let small = total / 2;
            if auto_pad == AutoPad::SameUpper {
                (small, total - small)
            } else {
                (total - small, small)
            }
        }
    };
    let span = input.checked_add(pb)?.checked_add(pe)?.checked_sub(eff)?;
    let mut out = if ceil_mode {
        span.div_ceil(stride) + 1
    } else {
        span / stride + 1
    };
    // In ceil mode the last window must start inside the input or its left padding.
    if ceil_mode && (out - 1).checked_mul(stride)? >= input + pb {
        out -= 1;
    }
    Some((pb, pe, out))
}

/// Window parameters for 3 spatial axes (depth, height, width), lifting 1-D and 2-D windows
/// to depth and height 1.
struct Axes3 {
    k: [usize; 3],
    s: [usize; 3],
    d: [usize; 3],
    p: [(usize, usize); 3],
}

fn lift(window: &Window, kernel: &[usize], spatial: usize) -> Option<Axes3> {
    let get = |v: &[usize], i: usize, default: usize| -> usize {
        if v.is_empty() {
            default
        } else {
            v[i]
        }
    };
    if !(1..=3).contains(&spatial)
        || kernel.len() != spatial
        || (!window.strides.is_empty() && window.strides.len() != spatial)
        || (!window.dilations.is_empty() && window.dilations.len() != spatial)
        || (!window.pads.is_empty() && window.pads.len() != 2 * spatial)
    {
        return None;
    }
    let mut a = Axes3 {
        k: [1; 3],
        s: [1; 3],
        d: [1; 3],
        p: [(0, 0); 3],
    };
    let off = 3 - spatial;
    for (i, &k) in kernel.iter().enumerate() {
        a.k[off + i] = k;
        a.s[off + i] = get(&window.strides, i, 1).max(1);
        a.d[off + i] = get(&window.dilations, i, 1).max(1);
        let pb = get(&window.pads, i, 0);
        let pe = if window.pads.is_empty() {
            0
        } else {
            window.pads[spatial + i]
        };
        a.p[off + i] = (pb, pe);
    }
    Some(a)
}

/// (depth, height, width) of an N × C × spatial… input with 1 to 3 spatial axes.
fn spatial_dhw(x: &[usize]) -> Option<[usize; 3]> {
    match x.len() {
        3 => Some([1, 1, x[2]]),
        4 => Some([1, x[2], x[3]]),
        5 => Some([x[2], x[3], x[4]]),
        _ => None,
    }
}

/// Output shape with the same rank as the input (1-D stays 1-D).
fn out_shape(x: &[usize], c: usize, o: [usize; 3]) -> Vec<usize> {
    let mut s = vec![x[0], c, o[0], o[1], o[2]];
    s.drain(2..2 + (5 - x.len()));
    s
}

/// Geometry of a Conv node for input shape `x` and weight shape `w`.
pub fn conv_geom(
    node: &str,
    window: &Window,
    group: usize,
    x: &[usize],
    w: &[usize],
) -> Result<(ConvGeom, Vec<usize>)> {
    let err = |d: String| ModelError::node(node, "Conv", d);
    let dims = spatial_dhw(x).ok_or_else(|| {
        err(format!(
            "expects a 3-D, 4-D or 5-D input (N×C×L, N×C×H×W or N×C×D×H×W), got shape {x:?}"
        ))
    })?;
    if w.len() != x.len() {
        return Err(err(format!(
            "weight shape {w:?} does not fit input shape {x:?}"
        )));
    }
    let kernel = if window.kernel.is_empty() {
        w[2..].to_vec()
    } else {
        window.kernel.clone()
    };
    let a = lift(window, &kernel, x.len() - 2)
        .ok_or_else(|| err("inconsistent kernel/strides/dilations/pads attributes".into()))?;
    if group == 0 || x[1] % group != 0 || w[0] % group != 0 || w[1].checked_mul(group) != Some(x[1])
    {
        return Err(err(format!(
            "input has {} channels but the weight {w:?} with group={group} expects {}",
            x[1],
            w[1] * group
        )));
    }
    let mut geo = [(0, 0, 0); 3];
    for i in 0..3 {
        geo[i] = axis_geometry(
            dims[i],
            a.k[i],
            a.s[i],
            a.d[i],
            a.p[i],
            window.auto_pad,
            false,
        )
        .ok_or_else(|| err(format!("kernel larger than the padded input {x:?}")))?;
    }
    let g = ConvGeom {
        batch: x[0],
        c_in: x[1],
        h: dims[1],
        w: dims[2],
        c_out: w[0],
        kh: a.k[1],
        kw: a.k[2],
        sh: a.s[1],
        sw: a.s[2],
        dh: a.d[1],
        dw: a.d[2],
        pt: geo[1].0,
        pl: geo[2].0,
        ho: geo[1].2,
        wo: geo[2].2,
        group,
        depth: Depth {
            d: dims[0],
            k: a.k[0],
            s: a.s[0],
            dil: a.d[0],
            pf: geo[0].0,
            pb: geo[0].1,
            out: geo[0].2,
        },
    };
    let out = out_shape(x, g.c_out, [geo[0].2, geo[1].2, geo[2].2]);
    Ok((g, out))
}

/// Geometry of a ConvTranspose node: the returned [`ConvGeom`] is that of the forward
/// convolution whose input-gradient the transposed convolution computes.
pub fn conv_transpose_geom(
    node: &str,
    window: &Window,
    group: usize,
    output_padding: &[usize],
    output_shape: &[usize],
    x: &[usize],
    w: &[usize],
) -> Result<(ConvGeom, Vec<usize>)> {
    let err = |d: String| ModelError::node(node, "ConvTranspose", d);
    let inputs = spatial_dhw(x)
        .ok_or_else(|| err(format!("expects a 3-D, 4-D or 5-D input, got shape {x:?}")))?;
    if w.len() != x.len() || w[0] != x[1] || group == 0 || x[1] % group != 0 {
        return Err(err(format!(
            "weight shape {w:?} does not fit input shape {x:?} with group={group}"
        )));
    }
    let spatial = x.len() - 2;
    let kernel = if window.kernel.is_empty() {
        w[2..].to_vec()
    } else {
        window.kernel.clone()
    };
    let a = lift(window, &kernel, spatial).ok_or_else(|| err("inconsistent attributes".into()))?;
    let off = 3 - spatial;
    let mut op = [0usize; 3];
    let mut target = [None; 3];
    for i in 0..spatial {
        op[off + i] = output_padding.get(i).copied().unwrap_or(0);
        if !output_shape.is_empty() {
            target[off + i] = output_shape.get(output_shape.len() - spatial + i).copied();
        }
    }
    let mut outs = [0usize; 3];
    let mut begins = [0usize; 3];
    let mut ends = [0usize; 3];
    for i in 0..3 {
        let overflow =
            || err("the window's size overflows (kernel, stride or dilation too large)".into());
        let eff = a.k[i]
            .saturating_sub(1)
            .checked_mul(a.d[i])
            .and_then(|e| e.checked_add(1))
            .ok_or_else(overflow)?;
        let full = a.s[i]
            .checked_mul(inputs[i].saturating_sub(1))
            .and_then(|f| f.checked_add(op[i]))
            .and_then(|f| f.checked_add(eff))
            .ok_or_else(overflow)?;
        let (pb, pe) = if let Some(t) = target[i] {
            let total = full
                .checked_sub(t)
                .ok_or_else(|| err("output_shape larger than possible".into()))?;
            match window.auto_pad {
                AutoPad::SameUpper => (total / 2, total - total / 2),
                _ => (total - total / 2, total / 2),
            }
        } else {
            match window.auto_pad {
                AutoPad::SameUpper | AutoPad::SameLower => {
                    let t = inputs[i].saturating_mul(a.s[i]);
                    let total = full.saturating_sub(t);
                    if window.auto_pad == AutoPad::SameUpper {
                        (total / 2, total - total / 2)
                    } else {
                        (total - total / 2, total / 2)
                    }
                }
                AutoPad::Valid => (0, 0),
                AutoPad::NotSet => a.p[i],
            }
        };
        outs[i] = full
            .checked_sub(pb.saturating_add(pe))
            .filter(|&o| o > 0)
            .ok_or_else(|| err("padding removes the whole output".into()))?;
        begins[i] = pb;
        ends[i] = pe;
    }
    let c_out = w[1]
        .checked_mul(group)
        .ok_or_else(|| err(format!("group {group} is too large")))?;
    let g = ConvGeom {
        batch: x[0],
        c_in: c_out,
        h: outs[1],
        w: outs[2],
        c_out: x[1],
        kh: a.k[1],
        kw: a.k[2],
        sh: a.s[1],
        sw: a.s[2],
        dh: a.d[1],
        dw: a.d[2],
        pt: begins[1],
        pl: begins[2],
        ho: inputs[1],
        wo: inputs[2],
        group,
        depth: Depth {
            d: outs[0],
            k: a.k[0],
            s: a.s[0],
            dil: a.d[0],
            pf: begins[0],
            pb: ends[0],
            out: inputs[0],
        },
    };
    Ok((g, out_shape(x, c_out, outs)))
}

/// Geometry of a MaxPool/AveragePool node.
pub fn pool_geom(
    node: &str,
    op: &str,
    window: &Window,
    x: &[usize],
) -> Result<(PoolGeom, Vec<usize>)> {
    let err = |d: String| ModelError::node(node, op, d);
    let dims = spatial_dhw(x)
        .ok_or_else(|| err(format!("expects a 3-D, 4-D or 5-D input, got shape {x:?}")))?;
    let a = lift(window, &window.kernel, x.len() - 2)
        .ok_or_else(|| err("kernel_shape missing or inconsistent with the input rank".into()))?;
    let mut geo = [(0, 0, 0); 3];
    for i in 0..3 {
        geo[i] = axis_geometry(
            dims[i],
            a.k[i],
            a.s[i],
            a.d[i],
            a.p[i],
            window.auto_pad,
            window.ceil_mode,
        )
        .ok_or_else(|| err(format!("window larger than the padded input {x:?}")))?;
    }
    let g = PoolGeom {
        batch: x[0],
        channels: x[1],
        h: dims[1],
        w: dims[2],
        kh: a.k[1],
        kw: a.k[2],
        sh: a.s[1],
        sw: a.s[2],
        dh: a.d[1],
        dw: a.d[2],
        pt: geo[1].0,
        pl: geo[2].0,
        pb: geo[1].1,
        pr: geo[2].1,
        ho: geo[1].2,
        wo: geo[2].2,
        depth: Depth {
            d: dims[0],
            k: a.k[0],
            s: a.s[0],
            dil: a.d[0],
            pf: geo[0].0,
            pb: geo[0].1,
            out: geo[0].2,
        },
    };
    Ok((g, out_shape(x, x[1], [geo[0].2, geo[1].2, geo[2].2])))
}

/// Matrix dimensions of a Gemm: (M, K, N) after the transposition flags.
pub fn gemm_dims(
    a: &[usize],
    b: &[usize],
    trans_a: bool,
    trans_b: bool,
) -> Option<(usize, usize, usize)> {
    if a.len() != 2 || b.len() != 2 {
        return None;
    }
    let (m, k) = if trans_a { (a[1], a[0]) } else { (a[0], a[1]) };
    let (k2, n) = if trans_b { (b[1], b[0]) } else { (b[0], b[1]) };
    (k == k2).then_some((m, k, n))
}

/// (batch shape, M, K, N, output shape) of a numpy matmul.
pub type MatMulDims = (Vec<usize>, usize, usize, usize, Vec<usize>);

/// numpy matmul shapes: returns (batch shape, M, K, N, output shape).
pub fn matmul_dims(a: &[usize], b: &[usize]) -> Option<MatMulDims> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let a2: Vec<usize> = if a.len() == 1 {
        vec![1, a[0]]
    } else {
        a.to_vec()
    };
    let b2: Vec<usize> = if b.len() == 1 {
        vec![b[0], 1]
    } else {
        b.to_vec()
    };
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (k2, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if k != k2 {
        return None;
    }
    let batch = broadcast_shape(&a2[..a2.len() - 2], &b2[..b2.len() - 2])?;
    let mut out = batch.clone();
    if a.len() > 1 {
        out.push(m);
    }
    if b.len() > 1 {
        out.push(n);
    }
    Some((batch, m, k, n, out))
}

/// Resolves a Reshape target (`0` copies the input dim unless `allowzero`, `-1` is inferred).
pub fn reshape_target(input: &[usize], target: &[i64], allowzero: bool) -> Option<Vec<usize>> {
    // The target comes from the model file: products are checked (a wrapped product could
    // make a wrong shape look right).
    let product = |v: &[usize]| v.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let total = product(input)?;
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => out.push(*input.get(i)?),
            t if t >= 0 => out.push(t as usize),
            _ => return None,
        }
    }
    let known = product(&out)?;
    if let Some(i) = infer {
        if known == 0 || total % known != 0 {
            return None;
        }
        out[i] = total / known;
    }
    (product(&out)? == total).then_some(out)
}

/// Normalises a list of axes (deduplicated, sorted) against a rank.
pub fn norm_axes(axes: &[i64], rank: usize) -> Option<Vec<usize>> {
    let mut v: Vec<usize> = axes
        .iter()
        .map(|&a| norm_axis(a, rank))
        .collect::<Option<_>>()?;
    v.sort_unstable();
    v.dedup();
    Some(v)
}

/// Resolved Slice for an input shape.
pub fn slice_for(op: &Op, x: &[usize]) -> Option<SliceSpec> {
    let Op::Slice {
        starts: Some(starts),
        ends: Some(ends),
        axes,
        steps,
    } = op
    else {
        return None;
    };
    let axes: Vec<usize> = match axes {
        Some(a) => a
            .iter()
            .map(|&a| norm_axis(a, x.len()))
            .collect::<Option<_>>()?,
        None => (0..starts.len()).collect(),
    };
    if starts.len() != ends.len() || axes.len() != starts.len() {
        return None;
    }
    let steps = steps.clone().unwrap_or_else(|| vec![1; starts.len()]);
    slice_spec(x, starts, ends, &axes, &steps)
}

/// The largest product of an input shape's dimensions (zero-sized axes counted as 1) shape
/// inference accepts: 2⁴⁰, far beyond any tensor that fits in memory.
const MAX_SHAPE_SPAN: usize = 1 << 40;

/// Output shapes of a resolved node from its input shapes. `inputs` holds the shapes of the
/// node's present inputs in order (after specialisation removed parameter inputs).
pub fn infer(node: &str, op: &Op, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
    let t = op.type_name();
    let err = |d: String| ModelError::node(node, t, d);
    let need = |n: usize| -> Result<()> {
        if inputs.len() < n {
            Err(err(format!("needs {n} inputs, has {}", inputs.len())))
        } else {
            Ok(())
        }
    };
    need(1)?;
    // Shapes come from the model file (initializers may declare any dims, a zero-sized axis
    // beside huge ones): bound them so that the products and sums below cannot overflow.
    for s in inputs {
        let size = s
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d.max(1)))
            .filter(|&n| n <= MAX_SHAPE_SPAN);
        if size.is_none() {
            return Err(err(format!(
                "an input of shape {s:?} is too large (its dimensions multiply past 2^40)"
            )));
        }
    }
    let x = inputs[0];
    let one = |s: Vec<usize>| Ok(vec![s]);
    match op {
        Op::Conv { window, group } => {
            need(2)?;
            let (_, out) = conv_geom(node, window, *group, x, inputs[1])?;
            if let Some(b) = inputs.get(2) {
                if b.iter().product::<usize>() != inputs[1][0] {
                    return Err(err(format!("bias shape {b:?} does not match {} output channels", inputs[1][0])));
                }
            }
            one(out)
        }
        Op::ConvTranspose { window, group, output_padding, output_shape } => {
            need(2)?;
            let (_, out) = conv_transpose_geom(node, window, *group, output_padding, output_shape, x, inputs[1])?;
            one(out)
        }
        Op::Gemm { trans_a, trans_b, .. } => {
            need(2)?;
            let (m, _, n) = gemm_dims(x, inputs[1], *trans_a, *trans_b)
                .ok_or_else(|| err(format!("cannot multiply shapes {x:?} and {:?} (transA={}, transB={})", inputs[1], *trans_a as u8, *trans_b as u8)))?;
            if let Some(c) = inputs.get(2) {
                if broadcast_shape(c, &[m, n]).as_deref() != Some(&[m, n][..]) {
                    return Err(err(format!("bias shape {c:?} does not broadcast to [{m}, {n}]")));
                }
            }
            one(vec![m, n])
        }
        Op::MatMul => {
            need(2)?;
            let (.., out) = matmul_dims(x, inputs[1]).ok_or_else(|| err(format!("cannot multiply shapes {x:?} and {:?}", inputs[1])))?;
            one(out)
        }
        Op::Binary(BinaryOp::PRelu) => {
            need(2)?;
            // Unidirectional broadcasting: the slope must broadcast to the input's shape.
            if broadcast_shape(x, inputs[1]).as_deref() != Some(x) {
                return Err(err(format!("slope shape {:?} does not broadcast to the input shape {x:?} (ONNX broadcasts it from the last axis: a per-channel slope of an N×C×H×W input has shape [C, 1, 1])", inputs[1])));
            }
            one(x.to_vec())
        }
        Op::Binary(_) => {
            need(2)?;
            one(broadcast_shape(x, inputs[1]).ok_or_else(|| err(format!("shapes {x:?} and {:?} do not broadcast", inputs[1])))?)
        }
        Op::Max | Op::Min => {
            let mut s = x.to_vec();
            for other in &inputs[1..] {
                s = broadcast_shape(&s, other).ok_or_else(|| err(format!("shapes {:?} do not broadcast", inputs)))?;
            }
            one(s)
        }
        Op::Where => {
            need(3)?;
            let s = broadcast_shape(x, inputs[1]).and_then(|s| broadcast_shape(&s, inputs[2]));
            one(s.ok_or_else(|| err(format!("condition {x:?}, X {:?} and Y {:?} do not broadcast", inputs[1], inputs[2])))?)
        }
        Op::Unary(_) | Op::Identity | Op::Dropout | Op::Cast { .. } => one(x.to_vec()),
        Op::ClipInputs => one(x.to_vec()),
        Op::Softmax { axis, .. } => {
            norm_axis(*axis, x.len()).ok_or_else(|| err(format!("axis {axis} out of range for shape {x:?}")))?;
            one(x.to_vec())
        }
        Op::MaxPool { window } | Op::AveragePool { window, .. } => one(pool_geom(node, t, window, x)?.1),
        Op::GlobalAveragePool | Op::GlobalMaxPool => {
            if x.len() < 3 {
                return Err(err(format!("expects N×C×spatial input, got {x:?}")));
            }
            let mut s = x.to_vec();
            s[2..].iter_mut().for_each(|d| *d = 1);
            one(s)
        }
        Op::ReduceMean { axes, keepdims, noop_with_empty_axes } | Op::ReduceSum { axes, keepdims, noop_with_empty_axes } | Op::ReduceL2 { axes, keepdims, noop_with_empty_axes } => {
            let axes = reduce_axes(axes.as_deref(), *noop_with_empty_axes, x.len()).ok_or_else(|| err(format!("axes out of range for shape {x:?}")))?;
            let s = if *keepdims {
                x.iter().enumerate().map(|(i, &d)| if axes.contains(&i) { 1 } else { d }).collect()
            } else {
                x.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, &d)| d).collect()
            };
            one(s)
        }
        Op::BatchNormalization { .. } => {
            need(5)?;
            if x.len() < 2 {
                return Err(err(format!("expects N×C(×…) input, got {x:?}")));
            }
            for p in &inputs[1..5] {
                if p.iter().product::<usize>() != x[1] {
                    return Err(err(format!("parameter shape {p:?} does not match {} channels", x[1])));
                }
            }
            one(x.to_vec())
        }
        Op::Concat { axis } => {
            let a = norm_axis(*axis, x.len()).ok_or_else(|| err(format!("axis {axis} out of range for shape {x:?}")))?;
            let mut s = x.to_vec();
            for other in &inputs[1..] {
                if other.len() != x.len() || (0..x.len()).any(|i| i != a && other[i] != x[i]) {
                    return Err(err(format!("cannot concatenate {x:?} and {other:?} along axis {a}")));
                }
                s[a] = s[a]
                    .checked_add(other[a])
                    .ok_or_else(|| err(format!("concatenating {x:?} and {other:?} overflows")))?;
            }
            one(s)
        }
        Op::Flatten { axis } => {
            let a = if *axis < 0 { *axis + x.len() as i64 } else { *axis };
            if a < 0 || a as usize > x.len() {
                return Err(err(format!("axis {axis} out of range for shape {x:?}")));
            }
            let a = a as usize;
            one(vec![x[..a].iter().product(), x[a..].iter().product()])
        }
        Op::Reshape { shape: Some(target), allowzero } => one(
            reshape_target(x, target, *allowzero).ok_or_else(|| err(format!("cannot reshape {x:?} to {target:?}")))?,
        ),
        Op::Squeeze { axes } => {
            let s = match axes {
                Some(a) => {
                    let a = norm_axes(a, x.len()).ok_or_else(|| err(format!("axes {a:?} out of range for {x:?}")))?;
                    if a.iter().any(|&i| x[i] != 1) {
                        return Err(err(format!("cannot squeeze non-singleton axes {a:?} of {x:?}")));
                    }
                    x.iter().enumerate().filter(|(i, _)| !a.contains(i)).map(|(_, &d)| d).collect()
                }
                None => x.iter().copied().filter(|&d| d != 1).collect(),
            };
            one(s)
        }
        Op::Unsqueeze { axes: Some(axes) } => {
            let r = x.len() + axes.len();
            let a = norm_axes(axes, r).filter(|a| a.len() == axes.len()).ok_or_else(|| err(format!("axes {axes:?} invalid for {x:?}")))?;
            let mut it = x.iter();
            one((0..r).map(|i| if a.contains(&i) { 1 } else { *it.next().unwrap_or(&1) }).collect())
        }
        Op::Transpose { perm } => {
            let p = transpose_perm(perm.as_deref(), x.len()).ok_or_else(|| err(format!("perm {perm:?} invalid for {x:?}")))?;
            one(p.iter().map(|&i| x[i]).collect())
        }
        Op::Pad { pads: Some(pads), axes, .. } => {
            let full = full_pads(pads, axes.as_deref(), x.len()).ok_or_else(|| err(format!("pads {pads:?} do not fit {x:?}")))?;
            let r = x.len();
            // pads come from the model file: any i64, so the sum is checked
            let s: Option<Vec<usize>> = (0..r)
                .map(|i| {
                    i64::try_from(x[i])
                        .ok()
                        .and_then(|d| d.checked_add(full[i])?.checked_add(full[i + r]))
                        .and_then(|d| usize::try_from(d).ok())
                })
                .collect();
            one(s.ok_or_else(|| err(format!("pads {pads:?} crop {x:?} below zero")))?)
        }
        Op::Shape { start, end } => {
            let (s, e) = shape_range(*start, *end, x.len());
            one(vec![e.saturating_sub(s)])
        }
        Op::Gather { axis, indices: Some(idx) } => {
            let a = norm_axis(*axis, x.len()).ok_or_else(|| err(format!("axis {axis} out of range for {x:?}")))?;
            let mut s = x[..a].to_vec();
            s.extend_from_slice(idx.shape());
            s.extend_from_slice(&x[a + 1..]);
            one(s)
        }
        Op::Slice { .. } => one(slice_for(op, x).ok_or_else(|| err(format!("invalid slice of {x:?}")))?.len),
        Op::Expand { shape: Some(s) } => {
            let target: Vec<usize> = s.iter().map(|&d| d.max(0) as usize).collect();
            one(broadcast_shape(x, &target).ok_or_else(|| err(format!("cannot expand {x:?} to {s:?}")))?)
        }
        Op::Constant(c) => one(c.shape().to_vec()),
        Op::LayerNormalization { axis, .. } => {
            need(2)?;
            let a = norm_axis(*axis, x.len()).ok_or_else(|| err(format!("axis {axis} out of range for shape {x:?}")))?;
            for p in &inputs[1..] {
                if p.len() > x.len() - a || broadcast_shape(p, &x[a..]).as_deref() != Some(&x[a..]) {
                    return Err(err(format!("scale/bias shape {p:?} does not broadcast to the normalised dimensions {:?} of {x:?}", &x[a..])));
                }
            }
            let mut stats = x[..a].to_vec();
            stats.resize(x.len(), 1);
            Ok(vec![x.to_vec(), stats.clone(), stats])
        }
        Op::GroupNormalization { num_groups, per_channel, .. } => {
            need(3)?;
            if x.len() < 2 || x[1] % num_groups != 0 {
                return Err(err(format!("expects N×C(×…) input with C divisible by num_groups={num_groups}, got {x:?}")));
            }
            let want = if *per_channel { x[1] } else { *num_groups };
            for p in &inputs[1..3] {
                if p.iter().product::<usize>() != want {
                    return Err(err(format!(
                        "scale/bias shape {p:?} does not hold one value per {} ({want})",
                        if *per_channel { "channel (opset ≥ 21)" } else { "group (opset 18–20)" }
                    )));
                }
            }
            one(x.to_vec())
        }
        Op::InstanceNormalization { .. } => {
            need(3)?;
            if x.len() < 3 {
                return Err(err(format!("expects N×C×spatial input, got {x:?}")));
            }
            for p in &inputs[1..3] {
                if p.iter().product::<usize>() != x[1] {
                    return Err(err(format!("scale/bias shape {p:?} does not match {} channels", x[1])));
                }
            }
            one(x.to_vec())
        }
        Op::LogSoftmax { axis, .. } => {
            norm_axis(*axis, x.len()).ok_or_else(|| err(format!("axis {axis} out of range for shape {x:?}")))?;
            one(x.to_vec())
        }
        Op::Split { .. } => Ok(split_pieces(op, x).map_err(err)?.into_iter().map(|p| p.len).collect()),
        Op::Trilu { .. } => {
            if x.len() < 2 {
                return Err(err(format!("expects an input of rank ≥ 2, got {x:?}")));
            }
            one(x.to_vec())
        }
        Op::Tile { repeats: Some(r) } => {
            if r.len() != x.len() || r.iter().any(|&k| k < 1) {
                return Err(err(format!("repeats {r:?} must hold one positive count per axis of {x:?}")));
            }
            let out: Option<Vec<usize>> = x
                .iter()
                .zip(r)
                .map(|(&d, &k)| usize::try_from(k).ok().and_then(|k| d.checked_mul(k)))
                .collect();
            one(out.ok_or_else(|| err(format!("repeats {r:?} of {x:?} overflow the output size")))?)
        }
        Op::CumSum { axis: Some(axis), .. } => {
            norm_axis(*axis, x.len()).ok_or_else(|| err(format!("axis {axis} out of range for shape {x:?}")))?;
            one(x.to_vec())
        }
        Op::Einsum(eq) => one(eq.bind(inputs).map_err(err)?.output_shape()),
        Op::Gather { axis, indices: None } => {
            need(2)?;
            let a = norm_axis(*axis, x.len()).ok_or_else(|| err(format!("axis {axis} out of range for {x:?}")))?;
            let mut s = x[..a].to_vec();
            s.extend_from_slice(inputs[1]);
            s.extend_from_slice(&x[a + 1..]);
            one(s)
        }
        Op::GatherElements { axis } => {
            need(2)?;
            let a = norm_axis(*axis, x.len()).ok_or_else(|| err(format!("axis {axis} out of range for {x:?}")))?;
            let is = inputs[1];
            if is.len() != x.len() || (0..x.len()).any(|d| d != a && is[d] > x[d]) {
                return Err(err(format!("indices of shape {is:?} do not fit data {x:?} along axis {a}")));
            }
            one(is.to_vec())
        }
        Op::GatherND { batch_dims } => {
            need(2)?;
            one(gather_nd_layout(x, inputs[1], *batch_dims).map_err(err)?.0)
        }
        Op::ScatterND { .. } => {
            need(3)?;
            let (want, ..) = gather_nd_layout(x, inputs[1], 0).map_err(err)?;
            if inputs[2] != want.as_slice() {
                return Err(err(format!("updates of shape {:?} do not fit data {x:?} and indices {:?} (expected {want:?})", inputs[2], inputs[1])));
            }
            one(x.to_vec())
        }
        Op::Resize { .. } => one(resize_plan(node, op, x)?.output_shape),
        Op::ConstantOfShape { .. }
        | Op::Reshape { shape: None, .. }
        | Op::Unsqueeze { axes: None }
        | Op::Pad { pads: None, .. }
        | Op::Expand { shape: None }
        | Op::Range
        | Op::Tile { repeats: None }
        | Op::CumSum { axis: None, .. } => Err(err("a parameter input is not constant; Prism needs shapes and parameters that do not depend on the input values".into())),
    }
}

/// Sizes of the pieces of a Split along its (normalised) axis.
pub fn split_sizes(op: &Op, x: &[usize]) -> std::result::Result<(usize, Vec<usize>), String> {
    let Op::Split {
        axis,
        split,
        outputs,
        uneven,
    } = op
    else {
        return Err("not a Split".into());
    };
    let a = norm_axis(*axis, x.len())
        .ok_or_else(|| format!("axis {axis} out of range for shape {x:?}"))?;
    let (d, n) = (x[a], *outputs);
    let sizes = match split {
        Some(s) => {
            if s.len() != n || s.iter().any(|&v| v < 0) || s.iter().sum::<i64>() != d as i64 {
                return Err(format!(
                    "split {s:?} must hold {n} non-negative sizes summing to dimension {a} of {x:?} ({d})"
                ));
            }
            s.iter().map(|&v| v as usize).collect()
        }
        None if *uneven => {
            let chunk = d.div_ceil(n);
            let last = d as i64 - (chunk * (n - 1)) as i64;
            if last <= 0 {
                return Err(format!(
                    "num_outputs={n} cannot split dimension {a} of {x:?} ({d}): pieces of {chunk} leave none for the last output"
                ));
            }
            let mut v = vec![chunk; n - 1];
            v.push(last as usize);
            v
        }
        None => {
            if d % n != 0 {
                return Err(format!(
                    "dimension {a} of {x:?} ({d}) does not split evenly into {n} outputs; give split sizes"
                ));
            }
            vec![d / n; n]
        }
    };
    Ok((a, sizes))
}

/// The slices a Split takes, one per output.
pub fn split_pieces(op: &Op, x: &[usize]) -> std::result::Result<Vec<SliceSpec>, String> {
    let (a, sizes) = split_sizes(op, x)?;
    let mut start = 0i64;
    sizes
        .iter()
        .map(|&len| {
            let spec = slice_spec(x, &[start], &[start + len as i64], &[a], &[1])
                .ok_or_else(|| "invalid split".to_string());
            start += len as i64;
            spec
        })
        .collect()
}

/// Axes of a reduction, or `None` if out of range. Empty axes reduce everything unless
/// `noop_with_empty_axes`.
pub fn reduce_axes(axes: Option<&[i64]>, noop: bool, rank: usize) -> Option<Vec<usize>> {
    match axes {
        Some(a) if !a.is_empty() => norm_axes(a, rank),
        _ if noop => Some(vec![]),
        _ => Some((0..rank).collect()),
    }
}

/// Transpose permutation (default: reverse).
pub fn transpose_perm(perm: Option<&[usize]>, rank: usize) -> Option<Vec<usize>> {
    match perm {
        Some(p) => {
            let mut seen = vec![false; rank];
            if p.len() != rank
                || p.iter()
                    .any(|&i| i >= rank || std::mem::replace(&mut seen[i], true))
            {
                return None;
            }
            Some(p.to_vec())
        }
        None => Some((0..rank).rev().collect()),
    }
}

/// Expands Pad's `pads` (for `axes`, or all axes) to begin/end over every axis.
pub fn full_pads(pads: &[i64], axes: Option<&[i64]>, rank: usize) -> Option<Vec<i64>> {
    let axes: Vec<usize> = match axes {
        Some(a) => a
            .iter()
            .map(|&a| norm_axis(a, rank))
            .collect::<Option<_>>()?,
        None => (0..rank).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return None;
    }
    let mut full = vec![0i64; 2 * rank];
    for (i, &a) in axes.iter().enumerate() {
        full[a] = pads[i];
        full[a + rank] = pads[i + axes.len()];
    }
    Some(full)
}

/// Range of dims a Shape node returns.
pub fn shape_range(start: i64, end: Option<i64>, rank: usize) -> (usize, usize) {
    let r = rank as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    (clamp(start), clamp(end.unwrap_or(r)))
}

/// The resolved resampling of a Resize/Upsample node for input shape `x`: output sizes as
/// ONNX Runtime computes them (`⌊input · scale⌋` in `f32`; `sizes` as given, or scaled by one
/// common factor under `keep_aspect_ratio_policy`), and the scale each axis's coordinate
/// transformation uses (the given scale, or `output / input`).
pub fn resize_plan(node: &str, op: &Op, x: &[usize]) -> Result<ResizePlan> {
    let Op::Resize {
        mode,
        coord,
        target: Some(target),
        axes,
        keep_aspect,
        ..
    } = op
    else {
        return Err(ModelError::node(
            node,
            op.type_name(),
            "scales/sizes input is not constant; Prism needs output sizes that do not depend on the input values",
        ));
    };
    let err = |d: String| ModelError::node(node, op.type_name(), d);
    let rank = x.len();
    let axes: Vec<usize> = match axes {
        Some(a) => {
            let n = norm_axes(a, rank)
                .filter(|n| n.len() == a.len())
                .ok_or_else(|| err(format!("axes {a:?} invalid for input {x:?}")))?;
            // keep the order given (scales/sizes follow it)
            a.iter()
                .filter_map(|&v| norm_axis(v, rank))
                .take(n.len())
                .collect()
        }
        None => (0..rank).collect(),
    };
    let count = match target {
        ResizeTarget::Scales(v) => v.len(),
        ResizeTarget::Sizes(v) => v.len(),
    };
    if count != axes.len() {
        return Err(err(format!(
            "has {count} scales/sizes for {} axes of input {x:?}",
            axes.len()
        )));
    }
    let mut out = x.to_vec();
    let mut scales = vec![1.0f32; rank];
    match target {
        ResizeTarget::Scales(v) => {
            for (&a, &s) in axes.iter().zip(v) {
                if !(s > 0.0 && s.is_finite()) {
                    return Err(err(format!("scale {s} must be positive")));
                }
                scales[a] = s;
                out[a] = (s * x[a] as f32) as usize;
            }
        }
        ResizeTarget::Sizes(v) => {
            let ratio = |i: usize| v[i] as f32 / x[axes[i]] as f32;
            let common = match keep_aspect {
                KeepAspect::Stretch => None,
                KeepAspect::NotLarger => (0..axes.len()).map(ratio).reduce(f32::min),
                KeepAspect::NotSmaller => (0..axes.len()).map(ratio).reduce(f32::max),
            };
            for (i, &a) in axes.iter().enumerate() {
                if v[i] <= 0 {
                    return Err(err(format!("size {} must be positive", v[i])));
                }
                match common {
                    Some(c) => {
                        scales[a] = c;
                        out[a] = (c * x[a] as f32).round() as usize;
                    }
                    None => {
                        out[a] = v[i] as usize;
                        scales[a] = ratio(i);
                    }
                }
            }
        }
    }
    if out.contains(&0) {
        return Err(err(format!("resizing {x:?} gives the empty shape {out:?}")));
    }
    let mut plan = Vec::new();
    for a in 0..rank {
        let taps = axis_taps(*mode, *coord, scales[a], x[a], out[a]);
        if !is_identity(&taps, x[a]) {
            plan.push(AxisResample {
                axis: a,
                input: x[a],
                taps,
            });
        }
    }
    Ok(ResizePlan {
        input_shape: x.to_vec(),
        output_shape: out,
        axes: plan,
    })
}
