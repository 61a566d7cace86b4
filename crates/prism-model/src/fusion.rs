//! Forward-only fusion: groups of nodes that the executor runs as one kernel when nobody asked
//! for the values between them.
//!
//! Exporters spell a dense layer as `MatMul` + `Add(bias)` and the exact GELU as five
//! element-wise nodes (`x · ½ · (1 + erf(x / √2))`); run node by node, each is a pass over the
//! activations and a fresh buffer. The graph itself is left as exported: attribution sees every
//! node and keeps every intermediate it needs ([`crate::Keep::NodeInputs`]), which turns the
//! fusion of a group off for that pass (see [`Fused::internal`]).

use crate::graph::{Graph, ValueId};
use crate::op::{BinaryOp, Op, UnaryOp};

/// One group of nodes computed together.
#[derive(Clone, Debug)]
pub(crate) struct Fused {
    /// The member nodes in topological order; the group runs when the last one is reached.
    pub members: Vec<usize>,
    /// Values produced and consumed inside the group: never computed when it runs fused, so it
    /// runs fused only when none of them is kept.
    pub internal: Vec<ValueId>,
    pub kind: FusedKind,
    /// The group's one result.
    pub output: ValueId,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum FusedKind {
    /// `a · b (+ bias along the last axis) (→ GELU)`: the bias is added by the GEMM, the GELU
    /// in place on its output.
    Linear {
        a: ValueId,
        b: ValueId,
        bias: Option<ValueId>,
        gelu: Option<Gelu>,
    },
    /// The exact GELU of `x`.
    Gelu { x: ValueId, gelu: Gelu },
}

/// `½ x (1 + erf(x · r))` with the model's own `r` (an f32 model stores `1/√2` or `√2` to f32
/// precision: computing with the exact value would differ from the graph by ~1e-8 in f64).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Gelu {
    pub r: f64,
}

/// The groups of a specialised graph, disjoint.
pub(crate) fn plan(g: &Graph) -> Vec<Fused> {
    let cons = consumers(g);
    let mut used = vec![false; g.nodes.len()];
    let mut groups = Vec::new();
    for (i, node) in g.nodes.iter().enumerate() {
        if used[i] || !matches!(node.op, Op::MatMul) || node.inputs.len() != 2 {
            continue;
        }
        let (Some(a), Some(b)) = (node.input(0), node.input(1)) else {
            continue;
        };
        let z = node.outputs[0];
        let mut members = vec![i];
        let mut internal = vec![];
        let mut out = z;
        let mut bias = None;
        if let Some((j, c)) = single(&cons, z).and_then(|j| bias_add(g, j, z).map(|c| (j, c))) {
            members.push(j);
            internal.push(z);
            out = g.nodes[j].outputs[0];
            bias = Some(c);
        }
        let gelu = gelu_from(g, &cons, out);
        if let Some((m, inner, y, _)) = &gelu {
            members.extend(m);
            internal.push(out);
            internal.extend(inner);
            out = *y;
        }
        if members.len() == 1 || members.iter().any(|&m| used[m]) {
            continue;
        }
        members.sort_unstable();
        members.iter().for_each(|&m| used[m] = true);
        groups.push(Fused {
            members,
            internal,
            kind: FusedKind::Linear {
                a,
                b,
                bias,
                gelu: gelu.map(|(.., r)| r),
            },
            output: out,
        });
    }
    for x in 0..g.values.len() {
        let x = ValueId(x);
        if let Some((mut members, internal, y, gelu)) = gelu_from(g, &cons, x) {
            if members.iter().any(|&m| used[m]) {
                continue;
            }
            members.sort_unstable();
            members.iter().for_each(|&m| used[m] = true);
            groups.push(Fused {
                members,
                internal,
                kind: FusedKind::Gelu { x, gelu },
                output: y,
            });
        }
    }
    groups
}

/// For each value, the nodes that read it, once per read.
fn consumers(g: &Graph) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); g.values.len()];
    for (i, n) in g.nodes.iter().enumerate() {
        for v in n.inputs.iter().flatten() {
            out[v.0].push(i);
        }
    }
    for o in &g.outputs {
        // a graph output is read by the caller: never internal to a group
        out[o.0].push(usize::MAX);
    }
    out
}

/// The one node that reads `v`, reading it once.
fn single(cons: &[Vec<usize>], v: ValueId) -> Option<usize> {
    match cons[v.0].as_slice() {
        [j] if *j != usize::MAX => Some(*j),
        _ => None,
    }
}

/// The other operand of binary node `j` of type `op` that reads `v`.
fn operand(g: &Graph, j: usize, op: BinaryOp, v: ValueId) -> Option<ValueId> {
    let n = &g.nodes[j];
    if !matches!(&n.op, Op::Binary(b) if *b == op) || n.inputs.len() != 2 {
        return None;
    }
    match (n.input(0)?, n.input(1)?) {
        (p, q) if p == v && q != v => Some(q),
        (p, q) if q == v && p != v => Some(p),
        _ => None,
    }
}

/// Whether `v` is a constant scalar equal to `c` (to f32 rounding).
fn is_scalar(g: &Graph, v: ValueId, c: f64) -> bool {
    g.constant(v)
        .and_then(|k| k.scalar_f64())
        .is_some_and(|s| (s - c).abs() <= 1e-6 * c.abs())
}

/// Node `j` adds a constant bias along the last axis of `z`: that bias.
fn bias_add(g: &Graph, j: usize, z: ValueId) -> Option<ValueId> {
    let c = operand(g, j, BinaryOp::Add, z)?;
    let (shape, zs) = (g.constant(c)?.shape(), g.shape(z)?);
    let (last, lead) = shape.split_last()?;
    (zs.last() == Some(last) && lead.iter().all(|&d| d == 1) && shape.len() <= zs.len())
        .then_some(c)
}

/// The exact GELU as exporters write it, starting at `x`: `(members, internal values, y, r)`.
/// Two spellings: `((x · (1 + erf(x / √2))) · ½` (PyTorch's `nn.GELU`) and
/// `(x · ½) · (1 + erf(x / √2))` (Hugging Face's `gelu`); `/ √2` may be `· (1/√2)`, and
/// either operand of a commutative node may come first.
#[allow(clippy::type_complexity)]
fn gelu_from(
    g: &Graph,
    cons: &[Vec<usize>],
    x: ValueId,
) -> Option<(Vec<usize>, Vec<ValueId>, ValueId, Gelu)> {
    let cx = &cons[x.0];
    if cx.len() != 2 || cx.contains(&usize::MAX) || cx[0] == cx[1] {
        return None;
    }
    let half = 0.5;
    let sqrt2 = std::f64::consts::SQRT_2;
    let out = |j: usize| g.nodes[j].outputs[0];
    for (di, oi) in [(0, 1), (1, 0)] {
        let (dn, other) = (cx[di], cx[oi]);
        let scalar = |c: ValueId| g.constant(c).and_then(|k| k.scalar_f64());
        let r = match operand(g, dn, BinaryOp::Div, x) {
            Some(c) if is_scalar(g, c, sqrt2) => scalar(c).map(|c| 1.0 / c),
            _ => operand(g, dn, BinaryOp::Mul, x)
                .filter(|&c| is_scalar(g, c, 1.0 / sqrt2))
                .and_then(scalar),
        };
        let Some(r) = r.map(|r| Gelu { r }) else {
            continue;
        };
        let d = out(dn);
        let en = single(cons, d)?;
        if !matches!(g.nodes[en].op, Op::Unary(UnaryOp::Erf)) {
            return None;
        }
        let e = out(en);
        let an = single(cons, e)?;
        if !operand(g, an, BinaryOp::Add, e).is_some_and(|c| is_scalar(g, c, 1.0)) {
            return None;
        }
        let a = out(an);
        let mn = single(cons, a)?;
        let p = operand(g, mn, BinaryOp::Mul, a)?;
        let m = out(mn);
        if p == x && other == mn {
            let yn = single(cons, m)?;
            if !operand(g, yn, BinaryOp::Mul, m).is_some_and(|c| is_scalar(g, c, half)) {
                return None;
            }
            return Some((vec![dn, en, an, mn, yn], vec![d, e, a, m], out(yn), r));
        }
        let is_half = operand(g, other, BinaryOp::Mul, x).is_some_and(|c| is_scalar(g, c, half));
        if is_half && out(other) == p && single(cons, p) == Some(mn) {
            return Some((vec![other, dn, en, an, mn], vec![p, d, e, a], m, r));
        }
        return None;
    }
    None
}
