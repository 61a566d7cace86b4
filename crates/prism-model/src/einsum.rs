//! Einstein summation: parsing an ONNX `Einsum` equation, binding it to operand shapes, and
//! evaluating it as transposes, reductions and batched matrix products on any [`Backend`].
//!
//! Operands are contracted pairwise from the left; each pair becomes one batched matmul
//! (`[batch…, M, K] · [batch…, K, N]`), so the forms exporters emit for attention
//! (`bhid,bhjd->bhij`) and linear layers (`bid,jd->bij`) run as a single product. The gradient
//! of an einsum with respect to one operand is again an einsum (of the output-gradient and the
//! other operands), see [`Bound::grad`].
//!
//! Size-1 axes broadcast against the same label's size in other operands (as numpy and
//! onnxruntime do). Repeated indices within one term (diagonals, traces) are not supported and
//! fail with a clear error at load time.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::backend::Backend;
use crate::error::{ModelError, Result};
use crate::tensor::Float;

/// One subscript of a term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sym {
    Letter(u8),
    Ellipsis,
}

/// A parsed equation such as `bhid,bhjd->bhij` (whitespace ignored).
#[derive(Clone, Debug, PartialEq)]
pub struct Equation {
    text: String,
    inputs: Vec<Vec<Sym>>,
    /// `None` in implicit mode (no `->`): the output is the ellipsis followed by the letters
    /// that occur once, in alphabetical order.
    output: Option<Vec<Sym>>,
}

/// An axis label once bound to shapes: a letter by its byte, the ellipsis axes from
/// [`ELLIPSIS`] on (right-aligned across operands, like numpy broadcasting).
pub type Label = u32;
const ELLIPSIS: Label = 256;

/// An equation bound to operand shapes: every axis labelled, every label sized.
#[derive(Clone, Debug, PartialEq)]
pub struct Bound {
    pub inputs: Vec<Vec<Label>>,
    pub output: Vec<Label>,
    /// The broadcast size of every label.
    pub sizes: HashMap<Label, usize>,
}

impl Equation {
    /// Parses an equation; the error says what is not supported.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let s: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let (lhs, rhs) = match s.split_once("->") {
            Some((l, r)) => (l, Some(r)),
            None => (s.as_str(), None),
        };
        if rhs.is_some_and(|r| r.contains("->")) {
            return Err(format!("equation '{text}' has more than one '->'"));
        }
        let term = |t: &str| -> std::result::Result<Vec<Sym>, String> {
            let b = t.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < b.len() {
                match b[i] {
                    b'.' if t[i..].starts_with("...") => {
                        if out.contains(&Sym::Ellipsis) {
                            return Err(format!("term '{t}' has more than one ellipsis"));
                        }
                        out.push(Sym::Ellipsis);
                        i += 3;
                    }
                    c if c.is_ascii_alphabetic() => {
                        if out.contains(&Sym::Letter(c)) {
                            return Err(format!(
                                "index '{}' repeats in term '{t}' (a diagonal or trace), which \
                                 is not supported",
                                c as char
                            ));
                        }
                        out.push(Sym::Letter(c));
                        i += 1;
                    }
                    _ => {
                        return Err(format!(
                            "term '{t}' of equation '{text}' has an invalid subscript; \
                             subscripts are letters and '...'"
                        ))
                    }
                }
            }
            Ok(out)
        };
        let inputs = lhs
            .split(',')
            .map(term)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let output = rhs.map(term).transpose()?;
        if let Some(out) = &output {
            for s in out {
                if let Sym::Letter(c) = s {
                    if !inputs.iter().any(|t| t.contains(s)) {
                        return Err(format!(
                            "output index '{}' of equation '{text}' occurs in no input",
                            *c as char
                        ));
                    }
                }
            }
        }
        Ok(Equation {
            text: text.to_string(),
            inputs,
            output,
        })
    }

    /// The equation as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// How many operands the equation takes.
    pub fn operands(&self) -> usize {
        self.inputs.len()
    }

    /// Labels every axis of operands of these shapes; the error names the misfit.
    pub fn bind(&self, shapes: &[&[usize]]) -> std::result::Result<Bound, String> {
        if shapes.len() != self.inputs.len() {
            return Err(format!(
                "equation '{}' takes {} operand(s), the node has {}",
                self.text,
                self.inputs.len(),
                shapes.len()
            ));
        }
        let letters = |t: &[Sym]| t.iter().filter(|s| matches!(s, Sym::Letter(_))).count();
        let mut ell = Vec::with_capacity(shapes.len());
        for (t, s) in self.inputs.iter().zip(shapes) {
            let n = letters(t);
            let fits = if t.contains(&Sym::Ellipsis) {
                s.len() >= n
            } else {
                s.len() == n
            };
            if !fits {
                return Err(format!(
                    "operand of shape {s:?} does not fit its term in '{}' ({n} indices)",
                    self.text
                ));
            }
            ell.push(s.len() - n);
        }
        let e = ell.iter().copied().max().unwrap_or(0);
        let ellipsis = |rank: usize| ELLIPSIS + (e - rank) as Label..ELLIPSIS + e as Label;
        let mut sizes: HashMap<Label, usize> = HashMap::new();
        let mut inputs = Vec::with_capacity(shapes.len());
        for ((t, s), &r) in self.inputs.iter().zip(shapes).zip(&ell) {
            let labels: Vec<Label> = t
                .iter()
                .flat_map(|sym| match sym {
                    Sym::Letter(c) => *c as Label..*c as Label + 1,
                    Sym::Ellipsis => ellipsis(r),
                })
                .collect();
            for (&l, &d) in labels.iter().zip(s.iter()) {
                let size = sizes.entry(l).or_insert(d);
                match (*size, d) {
                    (a, b) if a == b => {}
                    (1, b) => *size = b,
                    (_, 1) => {}
                    (a, b) => {
                        return Err(format!(
                            "{} has size {a} in one operand and {b} in another (equation '{}')",
                            label_name(l),
                            self.text
                        ))
                    }
                }
            }
            inputs.push(labels);
        }
        let output: Vec<Label> = match &self.output {
            Some(out) => out
                .iter()
                .flat_map(|sym| match sym {
                    Sym::Letter(c) => *c as Label..*c as Label + 1,
                    Sym::Ellipsis => ellipsis(e),
                })
                .collect(),
            None => {
                let mut once: Vec<Label> = sizes
                    .keys()
                    .copied()
                    .filter(|&l| l < ELLIPSIS)
                    .filter(|l| inputs.iter().filter(|t| t.contains(l)).count() == 1)
                    .collect();
                once.sort_unstable();
                ellipsis(e).chain(once).collect()
            }
        };
        Ok(Bound {
            inputs,
            output,
            sizes,
        })
    }
}

fn label_name(l: Label) -> String {
    if l < ELLIPSIS {
        format!("index '{}'", char::from(l as u8))
    } else {
        format!("ellipsis axis {}", l - ELLIPSIS)
    }
}

impl Bound {
    /// The output shape.
    pub fn output_shape(&self) -> Vec<usize> {
        self.shape_of(&self.output)
    }

    fn shape_of(&self, labels: &[Label]) -> Vec<usize> {
        labels.iter().map(|l| self.sizes[l]).collect()
    }

    /// Evaluates the equation on `operands` (in the shapes it was bound to).
    pub fn eval<T: Float, B: Backend<T>>(
        &self,
        b: &B,
        operands: &[&B::Tensor],
    ) -> Result<B::Tensor> {
        let terms: Vec<(Cow<B::Tensor>, Vec<Label>)> = operands
            .iter()
            .zip(&self.inputs)
            .map(|(t, l)| (Cow::Borrowed(*t), l.clone()))
            .collect();
        contract(b, terms, &self.output, &self.sizes)
    }

    /// The gradient with respect to operand `i` for the output-gradient `g`: the einsum of `g`
    /// and the other operands onto operand `i`'s labels, broadcast along the labels only
    /// operand `i` has and summed over the axes it broadcast.
    pub fn grad<T: Float, B: Backend<T>>(
        &self,
        b: &B,
        operands: &[&B::Tensor],
        g: &B::Tensor,
        i: usize,
    ) -> Result<B::Tensor> {
        let mut terms: Vec<(Cow<B::Tensor>, Vec<Label>)> =
            vec![(Cow::Borrowed(g), self.output.clone())];
        for (j, (t, l)) in operands.iter().zip(&self.inputs).enumerate() {
            if j != i {
                terms.push((Cow::Borrowed(*t), l.clone()));
            }
        }
        let mine = &self.inputs[i];
        let reached: Vec<Label> = mine
            .iter()
            .copied()
            .filter(|l| terms.iter().any(|(_, ls)| ls.contains(l)))
            .collect();
        let d = contract(b, terms, &reached, &self.sizes)?;
        // Labels of operand i alone (summed in the forward pass) get size 1, then broadcast.
        let with_ones: Vec<usize> = mine
            .iter()
            .map(|l| {
                if reached.contains(l) {
                    self.sizes[l]
                } else {
                    1
                }
            })
            .collect();
        let d = b.reshape(d, with_ones)?;
        let d = b.expand(&d, &self.shape_of(mine))?;
        let own = b.shape(operands[i]).to_vec();
        b.reduce_to_shape(&d, &own)
    }
}

/// Sums `t` (labelled `labels`) over the labels `drop`, keeping them as size-1 axes when
/// `keep` (else removing them from `labels`).
fn sum_over<'a, T: Float, B: Backend<T>>(
    b: &B,
    t: Cow<'a, B::Tensor>,
    labels: &mut Vec<Label>,
    drop: &[Label],
    keep: bool,
) -> Cow<'a, B::Tensor> {
    let axes: Vec<usize> = labels
        .iter()
        .enumerate()
        .filter(|(_, l)| drop.contains(l))
        .map(|(i, _)| i)
        .collect();
    if axes.is_empty() {
        return t;
    }
    if !keep {
        labels.retain(|l| !drop.contains(l));
    }
    Cow::Owned(b.reduce(&t, &axes, keep, false))
}

/// Permutes `t` (labelled `from`) into the label order `to` (a permutation of `from`).
fn permute<'a, T: Float, B: Backend<T>>(
    b: &B,
    t: Cow<'a, B::Tensor>,
    from: &[Label],
    to: &[Label],
) -> Result<Cow<'a, B::Tensor>> {
    let perm: Vec<usize> = to
        .iter()
        .map(|l| from.iter().position(|m| m == l))
        .collect::<Option<_>>()
        .ok_or_else(|| ModelError::Invalid("einsum: label permutation (internal)".into()))?;
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        Ok(t)
    } else {
        Ok(Cow::Owned(b.transpose(&t, &perm)?))
    }
}

/// Contracts labelled operands into the labels `out` (every label of `out` occurs in some
/// operand; `sizes` holds each label's broadcast size).
fn contract<T: Float, B: Backend<T>>(
    b: &B,
    terms: Vec<(Cow<B::Tensor>, Vec<Label>)>,
    out: &[Label],
    sizes: &HashMap<Label, usize>,
) -> Result<B::Tensor> {
    let mut rest = terms.into_iter();
    let Some((mut cur, mut cl)) = rest.next() else {
        return Err(ModelError::Invalid("einsum: no operands".into()));
    };
    let rest: Vec<(Cow<B::Tensor>, Vec<Label>)> = rest.collect();
    let needed_after =
        |k: usize, l: &Label| out.contains(l) || rest[k..].iter().any(|(_, ls)| ls.contains(l));
    // Labels of the first operand nothing else needs are summed right away.
    let lone: Vec<Label> = cl.iter().copied().filter(|l| !needed_after(0, l)).collect();
    cur = sum_over(b, cur, &mut cl, &lone, false);
    for (k, (next, nl)) in rest.iter().enumerate() {
        let mut nl = nl.clone();
        let next = Cow::Borrowed(&**next);
        let lone: Vec<Label> = nl
            .iter()
            .copied()
            .filter(|l| !cl.contains(l) && !needed_after(k + 1, l))
            .collect();
        let mut next = sum_over(b, next, &mut nl, &lone, false);
        let keep = |l: &Label| needed_after(k + 1, l);
        let batch: Vec<Label> = cl
            .iter()
            .copied()
            .filter(|l| nl.contains(l) && keep(l))
            .collect();
        let summed: Vec<Label> = cl
            .iter()
            .copied()
            .filter(|l| nl.contains(l) && !keep(l))
            .collect();
        let left: Vec<Label> = cl.iter().copied().filter(|l| !nl.contains(l)).collect();
        let right: Vec<Label> = nl.iter().copied().filter(|l| !cl.contains(l)).collect();
        // A summed label of size 1 on one side only: sum the other side over it first.
        let dim = |t: &B::Tensor, ls: &[Label], l: Label| {
            ls.iter().position(|&m| m == l).map_or(1, |i| b.shape(t)[i])
        };
        let cur_ones: Vec<Label> = summed
            .iter()
            .copied()
            .filter(|&l| dim(&next, &nl, l) == 1 && dim(&cur, &cl, l) != 1)
            .collect();
        let next_ones: Vec<Label> = summed
            .iter()
            .copied()
            .filter(|&l| dim(&cur, &cl, l) == 1 && dim(&next, &nl, l) != 1)
            .collect();
        cur = sum_over(b, cur, &mut cl, &cur_ones, true);
        next = sum_over(b, next, &mut nl, &next_ones, true);
        let dims = |t: &B::Tensor, ls: &[Label], which: &[Label]| -> Vec<usize> {
            which.iter().map(|&l| dim(t, ls, l)).collect()
        };
        let (cb, cm, ck) = (
            dims(&cur, &cl, &batch),
            dims(&cur, &cl, &left),
            dims(&cur, &cl, &summed),
        );
        let (nb, nk, nn) = (
            dims(&next, &nl, &batch),
            dims(&next, &nl, &summed),
            dims(&next, &nl, &right),
        );
        let kk: usize = ck.iter().product();
        if kk != nk.iter().product::<usize>() {
            return Err(ModelError::shape("einsum", b.shape(&cur), b.shape(&next)));
        }
        let mm: usize = cm.iter().product();
        let nnn: usize = nn.iter().product();
        let order_c: Vec<Label> = batch.iter().chain(&left).chain(&summed).copied().collect();
        let order_n: Vec<Label> = batch.iter().chain(&summed).chain(&right).copied().collect();
        let a = permute(b, cur, &cl, &order_c)?.into_owned();
        let a = b.reshape(a, cb.iter().copied().chain([mm, kk]).collect())?;
        let c = permute(b, next, &nl, &order_n)?.into_owned();
        let c = b.reshape(c, nb.iter().copied().chain([kk, nnn]).collect())?;
        let p = b.matmul_batched(&a, &c)?;
        let batch_sizes: Vec<usize> = b.shape(&p)[..batch.len()].to_vec();
        let shape: Vec<usize> = batch_sizes.into_iter().chain(cm).chain(nn).collect();
        cur = Cow::Owned(b.reshape(p, shape)?);
        cl = batch.iter().chain(&left).chain(&right).copied().collect();
    }
    let extra: Vec<Label> = cl.iter().copied().filter(|l| !out.contains(l)).collect();
    cur = sum_over(b, cur, &mut cl, &extra, false);
    let cur = permute(b, cur, &cl, out)?.into_owned();
    let full: Vec<usize> = out
        .iter()
        .map(|l| sizes.get(l).copied().unwrap_or(1))
        .collect();
    if b.shape(&cur) == full.as_slice() {
        Ok(cur)
    } else {
        b.expand(&cur, &full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Cpu;
    use crate::tensor::Tensor;

    fn t(shape: &[usize]) -> Tensor<f64> {
        let n: usize = shape.iter().product();
        Tensor::new(
            shape.to_vec(),
            (0..n).map(|i| ((i * 7) % 11) as f64 - 5.0).collect(),
        )
        .unwrap()
    }

    /// Reference: the sum over all label assignments, by brute force.
    fn naive(eq: &str, ops: &[&Tensor<f64>]) -> Tensor<f64> {
        let shapes: Vec<&[usize]> = ops.iter().map(|o| o.shape()).collect();
        let bd = Equation::parse(eq).unwrap().bind(&shapes).unwrap();
        let mut labels: Vec<Label> = bd.sizes.keys().copied().collect();
        labels.sort_unstable();
        let out_shape = bd.output_shape();
        let mut y = Tensor::<f64>::zeros(&out_shape);
        let total: usize = labels.iter().map(|l| bd.sizes[l]).product();
        for mut idx in 0..total {
            let mut val: HashMap<Label, usize> = HashMap::new();
            for l in labels.iter().rev() {
                val.insert(*l, idx % bd.sizes[l]);
                idx /= bd.sizes[l];
            }
            let at = |ls: &[Label], shape: &[usize]| {
                ls.iter()
                    .zip(shape)
                    .fold(0, |acc, (l, &d)| acc * d + if d == 1 { 0 } else { val[l] })
            };
            let p: f64 = ops
                .iter()
                .zip(&bd.inputs)
                .map(|(o, ls)| o.data()[at(ls, o.shape())])
                .product();
            let o = at(&bd.output, &out_shape);
            y.data_mut()[o] += p;
        }
        y
    }

    fn check(eq: &str, shapes: &[&[usize]]) {
        let ops: Vec<Tensor<f64>> = shapes.iter().map(|s| t(s)).collect();
        let refs: Vec<&Tensor<f64>> = ops.iter().collect();
        let bd = Equation::parse(eq).unwrap().bind(shapes).unwrap();
        let y = bd.eval(&Cpu, &refs).unwrap();
        let want = naive(eq, &refs);
        assert_eq!(y.shape(), want.shape(), "{eq}");
        for (a, b) in y.data().iter().zip(want.data()) {
            assert!((a - b).abs() < 1e-9, "{eq}: {a} vs {b}");
        }
    }

    #[test]
    fn einsum_matches_brute_force_sums() {
        check("bhid,bhjd->bhij", &[&[2, 2, 3, 4], &[2, 2, 5, 4]]);
        check("bhij,bhjd->bhid", &[&[2, 2, 3, 5], &[2, 2, 5, 4]]);
        check("bid,jd->bij", &[&[2, 3, 4], &[5, 4]]);
        check("ij,jk->ik", &[&[3, 4], &[4, 5]]);
        check("bij->bji", &[&[2, 3, 4]]);
        check("...ij,...jk->...ik", &[&[2, 1, 3, 4], &[3, 4, 5]]);
        check("i,i->", &[&[4], &[4]]);
        check("ij,jk", &[&[3, 4], &[4, 5]]);
        check("ba", &[&[3, 4]]);
        check("ij,jk,kl->il", &[&[2, 3], &[3, 4], &[4, 2]]);
        check("ij,ij", &[&[1, 3], &[5, 3]]);
        check("...i,...i->...", &[&[1, 3], &[5, 3]]);
        check("abc,cd->", &[&[2, 3, 4], &[4, 2]]);
        check("ik,jk->kij", &[&[2, 3], &[4, 3]]);
    }

    #[test]
    fn einsum_rejects_diagonals() {
        let e = Equation::parse("ii->i").unwrap_err();
        assert!(e.contains("repeats"), "{e}");
        assert!(Equation::parse("ij->k").is_err());
        assert!(Equation::parse("i.j").is_err());
    }
}
