//! Scale folding: per-channel scales and offsets before a binarization, and
//! chains of integer offsets and scales.
//!
//! XNOR-Net's per-channel alpha (Rastegari et al., 2016) and ReActNet's RSign
//! shift `sign(x - beta)` (Liu et al., 2020) are explicit `mul`/`sub` ops in the
//! graph; before a `sign` they fold away or into thresholds.
//!
//! Not folded (and why): chains of f32 `mul`/`add` by constants, since
//! `(x * a) * b` and `x * (a * b)` round differently in f32; `sign(x - beta)` over
//! f32 `x`, since `sign(NaN - beta) = +1` while `threshold(NaN, beta)` = -1 (no
//! threshold form reproduces NaN); `sign(x * s)` over f32 `x` with `s <= 0.5`
//! (see [`sign_positive_scale`]).

use bnnc_ir::{ElemType, Op, Tensor, TensorType};
use egg::Id;

use super::threshold::{cached_thresholds, find_chains, threshold_build};
use super::{nodes, op_of, Build};
use crate::opt::analysis::{chan_count, infer_type, is_per_channel, BnnGraph};
use crate::opt::lang::ENode;

/// `sign(x * s)`, `sign(x + c)`, `sign(x - c)` and chains of them over an integer
/// accumulator `x` -> `threshold(x, t, dir)`.
///
/// The threshold family's derivation with steps restricted to `mul`/`add`/`sub`
/// by per-channel constants: `x*s` for `s > 0` is non-decreasing, so
/// `sign(x*s + c)` is +1 from the first accumulator value where the exact f32
/// result is `>= 0` (dir +1); `s < 0` flips it (dir -1; note `sign(x * s)` at
/// `x = 0` is `sign(-0.0) = +1`, which the evaluation reproduces); `s = 0` makes
/// the channel constant.
pub fn sign_scale_to_threshold(egraph: &BnnGraph, _class: Id, node: &ENode) -> Option<Build> {
    let (Op::Sign { .. }, [y]) = op_of(node)? else {
        return None;
    };
    for chain in find_chains(egraph, *y) {
        if !chain
            .steps
            .iter()
            .all(|s| matches!(s.op, Op::Mul | Op::Add | Op::Sub))
        {
            continue;
        }
        let d = &egraph[chain.acc].data;
        let ranges = d.range.as_deref()?;
        if ranges.len() != chan_count(&d.ty) {
            continue;
        }
        if let Some((t, dir)) = cached_thresholds(egraph, &chain.steps, d.ty.elem, ranges) {
            return Some(threshold_build(chain.acc, t, dir));
        }
    }
    None
}

/// `sign(mul(x, s)) -> sign(x)` (either operand order) when every per-channel
/// scale `s_c` is positive enough that the product keeps the sign of `x`:
/// `s_c > 0.5` for f32 `x`, `s_c > 0` (f32) for integer `x`.
///
/// Derivation: f32 multiplication by `s > 0` rounds `x * s` to nearest, which
/// keeps the sign of every nonzero `x` unless the product underflows to zero. The
/// smallest nonzero |x| is 2^-149, and `|x * s| > 2^-150` (half of it, which
/// rounds to zero on a tie) exactly when `s > 0.5`; overflow gives an infinity of
/// the right sign. `x = ±0` gives `±0` (sign +1 both), `NaN` gives NaN (+1),
/// `±inf` gives `±inf` (and `s = inf` gives `0 * inf = NaN`, +1, for `x = 0`,
/// matching `sign(0) = +1`). For integer `x` (converted to f32, sign kept)
/// `|x| >= 1`, so `|x * s| >= s >= 2^-149` and any `s > 0` works. An integer
/// scale makes the product an `i32` that may wrap, so it is not taken.
pub fn sign_positive_scale(egraph: &BnnGraph, _class: Id, node: &ENode) -> Option<Build> {
    let (Op::Sign { estimator }, [y]) = op_of(node)? else {
        return None;
    };
    let yty = &egraph[*y].data.ty;
    for m in nodes(egraph, *y) {
        let Some((Op::Mul, [a, b])) = op_of(m) else {
            continue;
        };
        for (x, s) in [(*a, *b), (*b, *a)] {
            let (xd, sd) = (&egraph[x].data, &egraph[s].data);
            if xd.konst.is_some() || xd.ty.shape != yty.shape {
                continue;
            }
            let Some(st) = sd.konst.as_ref() else {
                continue;
            };
            if st.elem != ElemType::F32 || !is_per_channel(&sd.ty, chan_count(&xd.ty), xd.ty.rank())
            {
                continue;
            }
            let bound = if xd.ty.elem == ElemType::F32 {
                0.5
            } else {
                0.0
            };
            if st.as_f32()?.iter().all(|&v| v > bound) {
                return Some(Build::Node(
                    Op::Sign {
                        estimator: estimator.clone(),
                    },
                    vec![Build::Class(x)],
                ));
            }
        }
    }
    None
}

/// Integer offsets and scales collapse: over integer-typed operands (the result
/// is `i32` with wrapping arithmetic, i.e. arithmetic modulo 2^32, a ring),
/// - `(x + a) + b -> x + (a + b)`, `(x - a) + b -> x + (b - a)`,
/// - `(x + a) - b -> x + (a - b)`, `(x - a) - b -> x - (a + b)`,
/// - `(x * a) * b -> x * (a * b)`,
///
/// for constant integer `a`, `b` (either operand order for `+` and `*`).
/// Associativity and commutativity hold exactly modulo 2^32, and broadcasting
/// is elementwise by index, so every element is the same. The combined constant
/// is computed by the interpreter. (The f32 forms round differently and are not
/// rewritten.)
pub fn collapse_int_affine(egraph: &BnnGraph, class: Id, node: &ENode) -> Option<Build> {
    let (outer, [p, q]) = op_of(node)? else {
        return None;
    };
    if !matches!(outer, Op::Add | Op::Sub | Op::Mul) {
        return None;
    }
    let want = &egraph[class].data.ty;
    let int_const = |id: Id| -> Option<&Tensor> {
        let t = egraph[id].data.konst.as_deref()?;
        t.elem.is_integer().then_some(t)
    };
    // (inner class, outer constant), trying both orders of a commutative op.
    let mut pairs = vec![(*p, *q)];
    if !matches!(outer, Op::Sub) {
        pairs.push((*q, *p));
    }
    for (inner, bid) in pairs {
        let Some(b) = int_const(bid) else { continue };
        for n in nodes(egraph, inner) {
            let Some((iop, [u, v])) = op_of(n) else {
                continue;
            };
            let mut cands = vec![(*u, *v)];
            if matches!(iop, Op::Add | Op::Mul) {
                cands.push((*v, *u));
            }
            for (x, aid) in cands {
                let Some(a) = int_const(aid) else { continue };
                let xd = &egraph[x].data;
                if xd.konst.is_some() || !xd.ty.elem.is_integer() {
                    continue;
                }
                // (combine op, first, second, outer op of the result)
                let (cop, c1, c2, rop) = match (iop, outer) {
                    (Op::Add, Op::Add) => (Op::Add, a, b, Op::Add),
                    (Op::Sub, Op::Add) => (Op::Sub, b, a, Op::Add),
                    (Op::Add, Op::Sub) => (Op::Sub, a, b, Op::Add),
                    (Op::Sub, Op::Sub) => (Op::Add, a, b, Op::Sub),
                    (Op::Mul, Op::Mul) => (Op::Mul, a, b, Op::Mul),
                    _ => continue,
                };
                let Ok(c) = bnnc_runtime::ops::eval(&cop, &[c1, c2]) else {
                    continue;
                };
                let cty = TensorType::fixed(c.elem, &c.dims);
                if infer_type(&rop, &[&xd.ty, &cty]).ok().as_ref() != Some(want) {
                    continue;
                }
                return Some(Build::Node(rop, vec![Build::Class(x), Build::Const(c)]));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use bnnc_ir::{Dim, ElemType, Op, Tensor, TensorType};

    fn f(v: &[f32]) -> Tensor {
        Tensor::f32(vec![v.len()], v.to_vec())
    }

    #[test]
    fn sign_scale_to_threshold() {
        // XNOR-style: sign(acc * alpha - c) over a b1 x b1 dense of length 5.
        let mut eg = egraph(&[TensorType::new(
            ElemType::B1,
            vec![Dim::Batch, Dim::Fixed(5)],
        )]);
        let x = input(&mut eg, 0);
        let w = konst(&mut eg, Tensor::int(ElemType::B1, vec![3, 5], vec![1; 15]));
        let acc = op(&mut eg, Op::Dense, &[x, w]);
        let alpha = konst(&mut eg, f(&[0.5, -0.25, 0.0]));
        let c = konst(&mut eg, f(&[0.75, 0.25, -1.0]));
        let m = op(&mut eg, Op::Mul, &[acc, alpha]);
        let y = op(&mut eg, Op::Sub, &[m, c]);
        let s = op(&mut eg, Op::Sign { estimator: None }, &[y]);
        let eg = run_rule(eg, "sign_scale_to_threshold");
        let th = find_op(&eg, s, "threshold");
        assert_eq!(th.len(), 1);
        let t = const_of(&eg, th[0].children[1]).unwrap();
        let dir = const_of(&eg, th[0].children[2]).unwrap();
        // ch0: 0.5 acc - 0.75 >= 0 iff acc >= 1.5 -> odd 3; ch1: -0.25 acc - 0.25
        // >= 0 iff acc <= -1; ch2: 0 - (-1) = 1 always: t = lo = -5.
        assert_eq!(t.as_int().unwrap(), [3, -1, -5]);
        assert_eq!(dir.as_int().unwrap(), [1, -1, 1]);
    }

    #[test]
    fn sign_positive_scale() {
        let ty = TensorType::new(ElemType::F32, vec![Dim::Batch, Dim::Fixed(2)]);
        let mut eg = egraph(&[ty]);
        let x = input(&mut eg, 0);
        let big = konst(&mut eg, f(&[0.75, 3.0]));
        let small = konst(&mut eg, f(&[0.5, 3.0]));
        let m1 = op(&mut eg, Op::Mul, &[big, x]);
        let m2 = op(&mut eg, Op::Mul, &[x, small]);
        let s1 = op(&mut eg, Op::Sign { estimator: None }, &[m1]);
        let s2 = op(&mut eg, Op::Sign { estimator: None }, &[m2]);
        let sx = op(&mut eg, Op::Sign { estimator: None }, &[x]);
        let eg = run_rule(eg, "sign_positive_scale");
        assert_eq!(eg.find(s1), eg.find(sx));
        assert_ne!(eg.find(s2), eg.find(sx));
        // 0.5 is excluded for a reason: -2^-149 * 0.5 rounds to -0.0.
        let tiny = -f32::from_bits(1);
        assert_eq!((tiny * 0.5).to_bits(), (-0.0f32).to_bits());
    }

    #[test]
    fn collapse_int_affine() {
        let ty = TensorType::new(ElemType::I32, vec![Dim::Batch, Dim::Fixed(2)]);
        let mut eg = egraph(&[ty]);
        let x = input(&mut eg, 0);
        let a = konst(
            &mut eg,
            Tensor::int(ElemType::I32, vec![2], vec![3, i32::MAX]),
        );
        let b = konst(&mut eg, Tensor::int(ElemType::I32, vec![1], vec![5]));
        let s = op(&mut eg, Op::Sub, &[x, a]);
        let y = op(&mut eg, Op::Add, &[b, s]);
        let eg = run_rule(eg, "collapse_int_affine");
        let adds = find_op(&eg, y, "add");
        let folded: Vec<_> = adds
            .iter()
            .filter(|n| n.children[0] == eg.find(x))
            .collect();
        assert_eq!(folded.len(), 1);
        let c = const_of(&eg, folded[0].children[1]).unwrap();
        assert_eq!(c.as_int().unwrap(), [2, 5i32.wrapping_sub(i32::MAX)]);
    }
}
