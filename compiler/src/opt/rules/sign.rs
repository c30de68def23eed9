//! Sign and threshold algebra.

use bnnc_ir::{ElemType, Op};
use egg::Id;

use super::{nodes, op_of, Build};
use crate::opt::analysis::BnnGraph;
use crate::opt::lang::ENode;

/// `sign(x) -> x` when `x` is `b1`.
///
/// Derivation: a `b1` element is -1 or +1; `sign` maps -1 to -1 (-1 < 0) and +1 to
/// +1, so it is the identity on `b1`. This covers `sign(sign(x)) = sign(x)` and
/// the sign of any threshold with one threshold per channel.
pub fn sign_of_binary(egraph: &BnnGraph, _class: Id, node: &ENode) -> Option<Build> {
    let (Op::Sign { .. }, [x]) = op_of(node)? else {
        return None;
    };
    (egraph[*x].data.ty.elem == ElemType::B1).then_some(Build::Class(*x))
}

/// `sign(x) -> fill(x, value=1, to=b1)` when `x` is never negative.
///
/// Derivation: `sign(e)` is -1 iff `e < 0`. The analysis' `never_negative`
/// fact says no element of x is `< 0` (for integers from the exact ranges, for
/// f32 from the op definitions: relu, sigmoid, non-negative sums and products,
/// NaN included, since `NaN < 0` is false). So every element of `sign(x)` is
/// +1, which is `fill`'s result of x's shape. `fill` reads no element of x,
/// so x is computed only if something else needs it.
pub fn sign_of_nonnegative(egraph: &BnnGraph, _class: Id, node: &ENode) -> Option<Build> {
    let (Op::Sign { .. }, [x]) = op_of(node)? else {
        return None;
    };
    let d = &egraph[*x].data;
    // A constant folds to a constant instead; a `b1` x is `sign(x)` itself
    // ([`sign_of_binary`]).
    if !d.never_negative || d.konst.is_some() || d.ty.elem == ElemType::B1 {
        return None;
    }
    Some(Build::Node(
        Op::Fill {
            value: 1.0,
            to: ElemType::B1,
        },
        vec![Build::Class(*x)],
    ))
}

/// `sign(maxpool2d(x)) -> maxpool2d(sign(x))` for integer-typed `x`.
///
/// Derivation: maxpool scans each window's in-bounds elements `e_1..e_k` in
/// row-major order, keeping the first and replacing it by each later element
/// that compares greater; on integers this is `m = max_i e_i` (a tie keeps an
/// equal value). `sign` is monotone non-decreasing, so `sign(e_i) <= sign(m)` for
/// every i and `sign(m)` is attained at the element equal to m: `sign(m) =
/// max_i sign(e_i)`, which is the `b1` maxpool of the signs (+1 iff any is +1).
/// Padding is skipped by both forms alike.
///
/// Not for `f32`: with `e_1 = -1, e_2 = NaN` maxpool gives -1 (NaN never compares
/// greater), so `sign(maxpool) = -1`, but `sign(NaN) = +1` makes the pooled signs
/// +1. The rule therefore requires an integer element type, which has no NaN.
pub fn sign_maxpool_commute(egraph: &BnnGraph, _class: Id, node: &ENode) -> Option<Build> {
    let (Op::Sign { estimator }, [p]) = op_of(node)? else {
        return None;
    };
    for m in nodes(egraph, *p) {
        if let Some((Op::MaxPool2d(a), [x])) = op_of(m) {
            let e = egraph[*x].data.ty.elem;
            if e.is_integer() && e != ElemType::B1 {
                return Some(Build::Node(
                    Op::MaxPool2d(a.clone()),
                    vec![Build::Node(
                        Op::Sign {
                            estimator: estimator.clone(),
                        },
                        vec![Build::Class(*x)],
                    )],
                ));
            }
        }
    }
    None
}

/// `threshold(maxpool2d(x), t) -> maxpool2d(threshold(x, t))` for integer `x`,
/// one threshold per channel and every direction +1.
///
/// Derivation: per channel c, `f(v) = (v >= t_c) ? +1 : -1` is monotone
/// non-decreasing, so as for [`sign_maxpool_commute`] `f(max_i e_i) = max_i
/// f(e_i)`, the `b1` maxpool of the thresholded window. A channel with direction
/// -1 is non-increasing (it would need a min-pool), so the rule requires every
/// direction to be +1 (a constant `dir` of all +1, or none).
pub fn threshold_maxpool_commute(egraph: &BnnGraph, _class: Id, node: &ENode) -> Option<Build> {
    let (Op::Threshold, kids) = op_of(node)? else {
        return None;
    };
    let (p, t) = (kids[0], kids[1]);
    if egraph[t].data.ty.shape.last().and_then(|d| d.fixed()) != Some(1) {
        return None;
    }
    if let Some(&d) = kids.get(2) {
        let dirs = egraph[d].data.konst.as_ref()?;
        if !dirs.as_int()?.iter().all(|&v| v == 1) {
            return None;
        }
    }
    for m in nodes(egraph, p) {
        if let Some((Op::MaxPool2d(a), [x])) = op_of(m) {
            let e = egraph[*x].data.ty.elem;
            if e.is_integer() {
                let mut args = vec![Build::Class(*x), Build::Class(t)];
                if let Some(&d) = kids.get(2) {
                    args.push(Build::Class(d));
                }
                return Some(Build::Node(
                    Op::MaxPool2d(a.clone()),
                    vec![Build::Node(Op::Threshold, args)],
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use bnnc_ir::{Dim, ElemType, Op, PoolAttrs, Tensor, TensorType};

    fn pool() -> Op {
        Op::MaxPool2d(PoolAttrs {
            kernel: [2, 2],
            stride: [2, 2],
            padding: [0; 4],
        })
    }

    fn nhwc(e: ElemType) -> TensorType {
        TensorType::new(
            e,
            vec![Dim::Batch, Dim::Fixed(4), Dim::Fixed(4), Dim::Fixed(3)],
        )
    }

    #[test]
    fn sign_of_binary() {
        let mut eg = egraph(&[nhwc(ElemType::F32)]);
        let x = input(&mut eg, 0);
        let s = op(&mut eg, Op::Sign { estimator: None }, &[x]);
        let ss = op(&mut eg, Op::Sign { estimator: None }, &[s]);
        let eg = run_rule(eg, "sign_of_binary");
        assert_eq!(eg.find(s), eg.find(ss));
        assert_ne!(eg.find(s), eg.find(x));
    }

    #[test]
    fn sign_of_nonnegative() {
        // relu(f32) and sigmoid are never negative (NaN included); an
        // arbitrary input and hardtanh(relu) (not tracked) are left alone.
        let mut eg = egraph(&[nhwc(ElemType::F32), nhwc(ElemType::F32)]);
        let x = input(&mut eg, 0);
        let r = op(&mut eg, Op::Relu, &[x]);
        let s = op(&mut eg, Op::Sign { estimator: None }, &[r]);
        let sg = op(&mut eg, Op::Sigmoid, &[x]);
        let ssg = op(&mut eg, Op::Sign { estimator: None }, &[sg]);
        let y = input(&mut eg, 1);
        let sy = op(&mut eg, Op::Sign { estimator: None }, &[y]);
        let h = op(&mut eg, Op::Hardtanh, &[r]);
        let sh = op(&mut eg, Op::Sign { estimator: None }, &[h]);
        // sign(s) for the b1 s = +1 is s itself (sign_of_binary), never
        // fill(s): in s's own class that would be a cycle.
        let ss = op(&mut eg, Op::Sign { estimator: None }, &[s]);
        let eg = run_rule(eg, "sign_of_nonnegative");
        assert!(find_op(&eg, ss, "fill")
            .iter()
            .all(|f| f.children[0] != eg.find(s)));
        for (cls, of) in [(s, r), (ssg, sg)] {
            let f = find_op(&eg, cls, "fill");
            assert_eq!(f.len(), 1);
            assert_eq!(f[0].children[0], eg.find(of));
            assert_eq!(
                f[0].graph_op(),
                Some(&Op::Fill {
                    value: 1.0,
                    to: ElemType::B1
                })
            );
        }
        // An arbitrary input, and hardtanh (not tracked) stay.
        assert!(find_op(&eg, sy, "fill").is_empty());
        assert!(find_op(&eg, sh, "fill").is_empty());
    }

    #[test]
    fn sign_maxpool_commute() {
        let mut eg = egraph(&[nhwc(ElemType::I32), nhwc(ElemType::F32)]);
        let x = input(&mut eg, 0);
        let p = op(&mut eg, pool(), &[x]);
        let s = op(&mut eg, Op::Sign { estimator: None }, &[p]);
        // f32: must not fire (NaN).
        let xf = input(&mut eg, 1);
        let pf = op(&mut eg, pool(), &[xf]);
        let sf = op(&mut eg, Op::Sign { estimator: None }, &[pf]);
        let eg = run_rule(eg, "sign_maxpool_commute");
        let pooled = find_op(&eg, s, "maxpool2d");
        assert_eq!(pooled.len(), 1);
        let inner = pooled[0].children[0];
        assert_eq!(find_op(&eg, inner, "sign")[0].children[0], eg.find(x));
        assert!(find_op(&eg, sf, "maxpool2d").is_empty());
    }

    #[test]
    fn threshold_maxpool_commute() {
        let mut eg = egraph(&[nhwc(ElemType::I32)]);
        let x = input(&mut eg, 0);
        let p = op(&mut eg, pool(), &[x]);
        let t = konst(
            &mut eg,
            Tensor::int(ElemType::I32, vec![3, 1], vec![0, 5, -2]),
        );
        let up = konst(&mut eg, Tensor::int(ElemType::I32, vec![3], vec![1, 1, 1]));
        let mixed = konst(&mut eg, Tensor::int(ElemType::I32, vec![3], vec![1, -1, 1]));
        let th = op(&mut eg, Op::Threshold, &[p, t, up]);
        let th_mixed = op(&mut eg, Op::Threshold, &[p, t, mixed]);
        let eg = run_rule(eg, "threshold_maxpool_commute");
        let pooled = find_op(&eg, th, "maxpool2d");
        assert_eq!(pooled.len(), 1);
        let inner = find_op(&eg, pooled[0].children[0], "threshold");
        assert_eq!(inner[0].children[0], eg.find(x));
        assert!(find_op(&eg, th_mixed, "maxpool2d").is_empty());
    }
}
