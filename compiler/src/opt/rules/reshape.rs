//! Sign and threshold through `reshape` and `flatten`: the binarization moves
//! below the reinterpretation, next to the op that computes the values, where
//! it can fold with a batch-norm (`bn_to_threshold`), pass a max-pool
//! (`sign_maxpool_commute`, `sign_maxpool_never_nan`) and fuse into the
//! producing popcount kernel. BinaryAlexNet's
//! `sign(reshape(batchnorm(maxpool(acc))))` becomes
//! `reshape(threshold(maxpool(acc)))` this way, and
//! `reshape(maxpool(threshold(acc)))` when every direction is +1
//! (`threshold_maxpool_commute`).
//!
//! # Derivation (shared by the family)
//!
//! `flatten(x)` and `reshape(x, shape)` keep every element and its row-major
//! position: element `p` (flat index over the whole tensor, batch included) of
//! the result is element `p` of `x`; only the dimensions change. `sign` is
//! elementwise without parameters, so `sign(reshape(x))[p] = sign(x[p]) =
//! reshape(sign(x))[p]` for every element type (f32 NaN and -0.0 included:
//! `sign` sees the same bits either way), and the `b1` result reshapes like
//! any other tensor.
//!
//! `threshold(z, t, dir)` applies the parameters of z's channel, the last
//! axis: element `p` of a row-major tensor whose last dimension is `C` sits in
//! channel `p mod C`. With `C_in` channels before the reshape and `C_out`
//! after, `threshold(reshape(x), t)[p]` uses row `p mod C_out` of `t`, and
//! `reshape(threshold(x, t'))[p]` uses row `p mod C_in` of `t'`. So the two
//! agree for every x iff `t'[p mod C_in] = t[p mod C_out]` for every flat
//! index `p` of the tensor. The element count `E` is a multiple of `C_in`
//! and of `C_out` (each is a dimension), so of `L = lcm(C_in, C_out)`, and as
//! p runs over `0 .. L` the pair `(p mod C_in, p mod C_out)` takes (Chinese
//! remainder theorem) every `(a, b)` with `a = b (mod g)`, `g = gcd(C_in,
//! C_out)`, and no other. A `t'` exists iff `t[b]` depends only on `b mod g`,
//! i.e. the rows of `t` (and the entries of `dir`) are periodic with period
//! `g`; then `t'[a] = t[a mod g]`. In particular:
//! - one shared row (`t` is `[1, T]`): always, `t` and `dir` unchanged;
//! - `C_out` divides `C_in` (`[N, 1568] -> [N, 7, 7, 32]`: g = 32): always,
//!   `t'[a] = t[a mod C_out]`;
//! - `C_in` = `C_out`: always, unchanged;
//! - otherwise (`flatten` of `[N, 7, 7, 32]` to `[N, 1568]` with a threshold
//!   per flattened position, or `C_in = 4`, `C_out = 6`, g = 2) only when the
//!   per-channel parameters repeat with period g: a reshape that mixes
//!   channels with different thresholds leaves the threshold where it is.
//!
//! An empty tensor (E = 0) satisfies every form. The rule needs both last
//! dimensions fixed and at least 1, and writes a `t'` of `C_in` rows only
//! within the analysis' budget.

use bnnc_ir::{ElemType, Op, Tensor, TensorData};
use egg::Id;

use super::{nodes, op_of, Build};
use crate::opt::analysis::BnnGraph;
use crate::opt::lang::ENode;

/// True for `flatten` and `reshape`.
fn is_reshape(op: &Op) -> bool {
    matches!(op, Op::Flatten | Op::Reshape { .. })
}

/// `sign(reshape(y))` and `sign(flatten(y))` -> `reshape(sign(y))`,
/// `flatten(sign(y))`.
///
/// Derivation: the module's (`sign` has no parameters). Condition: `y` is not
/// `b1` (there `sign(y)` is `y` itself, `sign_of_binary`).
pub fn sign_through_reshape(egraph: &BnnGraph, _class: Id, node: &ENode) -> Option<Build> {
    let (Op::Sign { estimator }, [r]) = op_of(node)? else {
        return None;
    };
    for n in nodes(egraph, *r) {
        let Some((op, [y])) = op_of(n) else { continue };
        if !is_reshape(op) || egraph[*y].data.ty.elem == ElemType::B1 {
            continue;
        }
        return Some(Build::Node(
            op.clone(),
            vec![Build::Node(
                Op::Sign {
                    estimator: estimator.clone(),
                },
                vec![Build::Class(*y)],
            )],
        ));
    }
    None
}

/// The fixed last dimension of class `id`, if at least 1.
fn channels(egraph: &BnnGraph, id: Id) -> Option<usize> {
    egraph[id].data.ty.shape.last()?.fixed().filter(|&c| c >= 1)
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Rows of `t` (`[R, ..]`, R = `c_out`), made `c_in` rows by `t'[a] = t[a mod
/// g]`, or `None` when the rows are not periodic with period `g` (compared
/// exactly, f32 by bits) or `t` is not `c_out` rows.
fn periodic_rows(t: &Tensor, c_out: usize, c_in: usize, g: usize) -> Option<Tensor> {
    if t.dims.first() != Some(&c_out) {
        return None;
    }
    let width: usize = t.dims[1..].iter().product();
    let mut dims = t.dims.clone();
    dims[0] = c_in;
    match &t.data {
        TensorData::F32(v) => {
            let row = |r: usize| &v[r * width..(r + 1) * width];
            let same =
                |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
            if !(g..c_out).all(|r| same(row(r), row(r % g))) {
                return None;
            }
            let data = (0..c_in).flat_map(|a| row(a % g).iter().copied()).collect();
            Some(Tensor::f32(dims, data))
        }
        TensorData::Int(_) | TensorData::Bits(_) => {
            let v = t.as_int()?;
            let row = |r: usize| &v[r * width..(r + 1) * width];
            if !(g..c_out).all(|r| row(r) == row(r % g)) {
                return None;
            }
            let data = (0..c_in).flat_map(|a| row(a % g).iter().copied()).collect();
            Some(Tensor::int(t.elem, dims, data))
        }
    }
}

/// `threshold(reshape(x), t, dir)` (or over `flatten(x)`) ->
/// `reshape(threshold(x, t', dir'))` with `t'[a] = t[a mod g]`, `dir'`
/// likewise, `g = gcd(C_in, C_out)`.
///
/// Derivation: the module's. Condition: x's and the result's last dimensions
/// `C_in`, `C_out` are fixed and at least 1. When `C_in = C_out` the
/// parameter classes move as they are. Otherwise `t` is one shared row (kept
/// as it is) or `C_out` constant rows periodic with period g, and `dir`, when
/// present, is a constant of `C_out` entries periodic with period g; the new
/// constants of `C_in` rows must fit the analysis' budget.
pub fn threshold_through_reshape(egraph: &BnnGraph, _class: Id, node: &ENode) -> Option<Build> {
    let (Op::Threshold, kids) = op_of(node)? else {
        return None;
    };
    let (r, t) = (kids[0], kids[1]);
    let dir = kids.get(2).copied();
    let c_out = channels(egraph, r)?;
    let t_rows = egraph[t].data.ty.shape.first()?.fixed()?;
    let t_width: usize = egraph[t].data.ty.shape[1..]
        .iter()
        .map(|d| d.fixed())
        .try_fold(1usize, |a, d| a.checked_mul(d?))?;
    for n in nodes(egraph, r) {
        let Some((op, [x])) = op_of(n) else { continue };
        if !is_reshape(op) {
            continue;
        }
        let Some(c_in) = channels(egraph, *x) else {
            continue;
        };
        let g = gcd(c_in, c_out);
        let mut args = vec![Build::Class(*x)];
        if t_rows == 1 || c_in == c_out {
            args.push(Build::Class(t));
        } else {
            if !egraph
                .analysis
                .affordable((c_in as u64).saturating_mul(t_width as u64))
            {
                continue;
            }
            let Some(tk) = egraph[t].data.konst.as_deref() else {
                continue;
            };
            let Some(t2) = periodic_rows(tk, c_out, c_in, g) else {
                continue;
            };
            args.push(Build::Const(t2));
        }
        if let Some(d) = dir {
            if c_in == c_out {
                args.push(Build::Class(d));
            } else {
                if !egraph.analysis.affordable(c_in as u64) {
                    continue;
                }
                let Some(dk) = egraph[d].data.konst.as_deref() else {
                    continue;
                };
                let Some(d2) = periodic_rows(dk, c_out, c_in, g) else {
                    continue;
                };
                args.push(Build::Const(d2));
            }
        }
        return Some(Build::Node(
            op.clone(),
            vec![Build::Node(Op::Threshold, args)],
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use bnnc_ir::{Dim, ElemType, Op, Tensor, TensorType};
    use egg::Id;

    use crate::opt::analysis::BnnGraph;

    fn ty(e: ElemType, dims: &[usize]) -> TensorType {
        let mut s = vec![Dim::Batch];
        s.extend(dims.iter().map(|&d| Dim::Fixed(d)));
        TensorType::new(e, s)
    }

    fn reshape(dims: &[usize]) -> Op {
        let mut s = vec![Dim::Batch];
        s.extend(dims.iter().map(|&d| Dim::Fixed(d)));
        Op::Reshape { shape: s }
    }

    fn i32s(dims: Vec<usize>, v: &[i32]) -> Tensor {
        Tensor::int(ElemType::I32, dims, v.to_vec())
    }

    /// The (t, dir) values of the threshold over class `x` inside class `id`.
    fn threshold_over(eg: &BnnGraph, id: Id, x: Id) -> (Vec<i32>, Option<Vec<i32>>) {
        let th = find_op(eg, id, "threshold")
            .into_iter()
            .find(|n| n.children[0] == eg.find(x))
            .expect("threshold over x");
        let t = const_of(eg, th.children[1]).unwrap();
        let d = th.children.get(2).map(|&d| const_of(eg, d).unwrap());
        (
            t.as_int().unwrap().to_vec(),
            d.map(|d| d.as_int().unwrap().to_vec()),
        )
    }

    #[test]
    fn sign_through_reshape() {
        let mut eg = egraph(&[ty(ElemType::F32, &[2, 2, 3]), ty(ElemType::B1, &[2, 2, 3])]);
        let x = input(&mut eg, 0);
        let r = op(&mut eg, reshape(&[4, 3]), &[x]);
        let s = op(&mut eg, Op::Sign { estimator: None }, &[r]);
        let f = op(&mut eg, Op::Flatten, &[x]);
        let sf = op(&mut eg, Op::Sign { estimator: None }, &[f]);
        // b1: left to sign_of_binary.
        let b = input(&mut eg, 1);
        let fb = op(&mut eg, Op::Flatten, &[b]);
        let sb = op(&mut eg, Op::Sign { estimator: None }, &[fb]);
        let eg = run_rule(eg, "sign_through_reshape");
        for (cls, name) in [(s, "reshape"), (sf, "flatten")] {
            let moved = find_op(&eg, cls, name);
            assert_eq!(moved.len(), 1);
            let inner = find_op(&eg, moved[0].children[0], "sign");
            assert_eq!(inner[0].children[0], eg.find(x));
        }
        assert!(find_op(&eg, sb, "flatten").is_empty());
    }

    #[test]
    fn threshold_through_reshape() {
        // [N, 2, 6] -> [N, 4, 3]: C_in 6, C_out 3, g 3: always.
        // [N, 12] (flatten of [N, 2, 2, 3]) <- threshold per flattened
        // position: C_in 3, C_out 12, g 3: only when periodic with period 3.
        let mut eg = egraph(&[ty(ElemType::I32, &[2, 6]), ty(ElemType::I32, &[2, 2, 3])]);
        let x = input(&mut eg, 0);
        let r = op(&mut eg, reshape(&[4, 3]), &[x]);
        let t3 = konst(&mut eg, i32s(vec![3, 1], &[5, -1, 0]));
        let d3 = konst(&mut eg, i32s(vec![3], &[1, -1, 1]));
        let th = op(&mut eg, Op::Threshold, &[r, t3, d3]);
        let shared = konst(&mut eg, i32s(vec![1, 1], &[7]));
        let th_shared = op(&mut eg, Op::Threshold, &[r, shared]);
        let y = input(&mut eg, 1);
        let f = op(&mut eg, Op::Flatten, &[y]);
        let per: Vec<i32> = (0..12).map(|p| [2, 4, 6][p % 3]).collect();
        let t12 = konst(&mut eg, i32s(vec![12, 1], &per));
        let th_per = op(&mut eg, Op::Threshold, &[f, t12]);
        let mut mixed = per.clone();
        mixed[7] = 9;
        let t12m = konst(&mut eg, i32s(vec![12, 1], &mixed));
        let th_mixed = op(&mut eg, Op::Threshold, &[f, t12m]);
        let dm: Vec<i32> = (0..12).map(|p| if p == 4 { -1 } else { 1 }).collect();
        let d12m = konst(&mut eg, i32s(vec![12], &dm));
        let th_dmixed = op(&mut eg, Op::Threshold, &[f, t12, d12m]);
        let eg = run_rule(eg, "threshold_through_reshape");

        let moved = find_op(&eg, th, "reshape");
        assert_eq!(moved.len(), 1);
        let (t, d) = threshold_over(&eg, moved[0].children[0], x);
        assert_eq!(t, vec![5, -1, 0, 5, -1, 0]);
        assert_eq!(d, Some(vec![1, -1, 1, 1, -1, 1]));

        let moved = find_op(&eg, th_shared, "reshape");
        assert_eq!(moved.len(), 1);
        assert_eq!(
            threshold_over(&eg, moved[0].children[0], x),
            (vec![7], None)
        );

        let moved = find_op(&eg, th_per, "flatten");
        assert_eq!(moved.len(), 1);
        assert_eq!(
            threshold_over(&eg, moved[0].children[0], y),
            (vec![2, 4, 6], None)
        );
        // A reshape that mixes channels with different thresholds (or
        // directions): stays.
        assert!(find_op(&eg, th_mixed, "flatten").is_empty());
        assert!(find_op(&eg, th_dmixed, "flatten").is_empty());
    }

    #[test]
    fn threshold_through_reshape_matches_the_interpreter() {
        // C_in 4, C_out 6 (g 2), thresholds periodic with period 2: the moved
        // form gives the same bits on every value of a small range.
        use bnnc_runtime::ops::eval;
        let x = Tensor::int(
            ElemType::I32,
            vec![1, 3, 4],
            (0..12).map(|i| (i * 7 % 11) - 5).collect(),
        );
        let t6 = i32s(vec![6, 1], &[0, 2, 0, 2, 0, 2]);
        let d6 = i32s(vec![6], &[1, -1, 1, -1, 1, -1]);
        let shape = vec![Dim::Batch, Dim::Fixed(2), Dim::Fixed(6)];
        let r = eval(
            &Op::Reshape {
                shape: shape.clone(),
            },
            &[&x],
        )
        .unwrap();
        let want = eval(&Op::Threshold, &[&r, &t6, &d6]).unwrap();
        let t4 = super::periodic_rows(&t6, 6, 4, 2).unwrap();
        let d4 = super::periodic_rows(&d6, 6, 4, 2).unwrap();
        let th = eval(&Op::Threshold, &[&x, &t4, &d4]).unwrap();
        let got = eval(&Op::Reshape { shape }, &[&th]).unwrap();
        assert_eq!(got.as_int(), want.as_int());
    }
}
