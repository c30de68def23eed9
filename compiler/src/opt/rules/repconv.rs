//! RepConv replication (RepConv / Reptran, "RepBConv"): a binary layer that
//! reads `replicate(x, times=b)` reads `x` with its weights combined across
//! the replicas, so the replicated tensor is never computed.
//!
//! The other RepConv forms need no rewrite: a threshold over
//! `replicate(acc)` whose `b` threshold sets agree moves before the replicate
//! ([`super::movement::threshold_through_replicate`]); with different sets it
//! stays `threshold(replicate(acc), t)`, and lowering computes `acc` once and
//! compares it against the `b` sets inside the producing kernel. A conv or
//! dense over a replicate that this rule leaves alone is lowered without
//! storing the replicate either: for `b1` x the kernel combines the replicas'
//! weights itself, into signed-digit planes `V = sum_j 2^k_j s_j` (2 planes
//! for b = 3, 3 for b = 5 or 7, ...; `lower::kernels`, `ReplicaPlanes`), and
//! reads x once per plane; grouped convs read x at each group's offset (a
//! group spanning two replicas with a mask per replica). Float inputs are read once per
//! replica with that replica's weights: combining float weights would round
//! differently (`x*w1 + x*w2` is not `x*(w1 + w2)` in f32).

use bnnc_ir::{ElemType, Op, Tensor};
use egg::Id;

use super::{nodes, op_of, Build};
use crate::opt::analysis::BnnGraph;
use crate::opt::lang::ENode;

/// `conv2d(replicate(x, times=b), W)` -> `mul(conv2d(x, T), k)` and likewise
/// `dense`, for `b1` x, constant `b1` or ternary W (one group), when the
/// combined weights `W'[.., c] = sum_r W[.., r*C + c]` are `k * T` for one
/// integer k >= 1 and T in {-1, 0, +1} (T is `b1` when it has no zero, else
/// `ternary`; the `mul` is left out for k = 1).
///
/// Derivation: with C input channels of x, channel `r*C + c` of
/// `replicate(x)` is channel c of x (`bnnc_ir::Op::Replicate`). A conv output
/// is `sum_{i,j} sum_{c' < bC} in(c') * W[o,i,j,c']` where `in(c')` is the
/// input at an in-bounds tap and the pad value p at a padded one (0
/// contributes nothing); at an in-bounds tap `in(r*C + c) = x(c)`, and at a
/// padded tap every `in(c')` is p. Grouping the terms by c:
/// `sum_{c'} in(c') W[c'] = sum_c in_x(c) * sum_r W[r*C + c] = sum_c in_x(c) *
/// k T[c] = k * sum_c in_x(c) T[c]`, where `in_x` is x's tap value or p, i.e.
/// the conv of x with T (same stride, padding, pad value, dilation) times k.
/// Integer products and sums wrap modulo 2^32 in both forms, and the ring
/// laws hold there, so every i32 result is the same. Dense is the 1x1 case.
///
/// For `times = 2` every combined weight is -2, 0 or +2 (k = 2), so the rule
/// always applies: the `b1 x ternary` kernel reads x's words once per tap
/// (`count - 2 * popcount((x xor w) & nonzero)`) instead of twice. Float
/// inputs are left alone: `sum_r x_c * w_r` and `x_c * sum_r w_r` round
/// differently.
pub fn repconv_combine_weights(egraph: &BnnGraph, _class: Id, node: &ENode) -> Option<Build> {
    let (op, [xr, w]) = op_of(node)? else {
        return None;
    };
    match op {
        Op::Dense => {}
        Op::Conv2d(a) if a.groups == 1 => {}
        _ => return None,
    }
    let wt = egraph[*w].data.konst.as_deref()?;
    if !matches!(wt.elem, ElemType::B1 | ElemType::Ternary) {
        return None;
    }
    for n in nodes(egraph, *xr) {
        let Some((Op::Replicate { times }, [x])) = op_of(n) else {
            continue;
        };
        if egraph[*x].data.ty.elem != ElemType::B1 || *times < 2 {
            continue;
        }
        let full = *wt.dims.last()?;
        let c = full / times;
        let vals = wt.as_int()?;
        let rows = vals.len() / full;
        let mut combined = Vec::with_capacity(rows * c);
        for row in vals.chunks(full) {
            for ch in 0..c {
                combined.push((0..*times).map(|r| row[r * c + ch]).sum::<i32>());
            }
        }
        let k = combined.iter().map(|v| v.abs()).max()?.max(1);
        if combined.iter().any(|&v| v != 0 && v.abs() != k) {
            continue;
        }
        let t: Vec<i32> = combined.iter().map(|&v| v / k).collect();
        let elem = if t.contains(&0) {
            ElemType::Ternary
        } else {
            ElemType::B1
        };
        let mut dims = wt.dims.clone();
        *dims.last_mut()? = c;
        let dot = Build::Node(
            op.clone(),
            vec![Build::Class(*x), Build::Const(Tensor::int(elem, dims, t))],
        );
        return Some(if k == 1 {
            dot
        } else {
            Build::Node(
                Op::Mul,
                vec![
                    dot,
                    Build::Const(Tensor::int(ElemType::I32, vec![1], vec![k])),
                ],
            )
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use bnnc_ir::{Conv2dAttrs, Dim, ElemType, Op, PadValue, Tensor, TensorType};

    fn b1(dims: Vec<usize>, seed: u64) -> Tensor {
        let n: usize = dims.iter().product();
        let mut s = seed;
        let v = (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                if s >> 63 == 1 {
                    1
                } else {
                    -1
                }
            })
            .collect();
        Tensor::int(ElemType::B1, dims, v)
    }

    #[test]
    fn repconv_combine_weights() {
        let ty = TensorType::new(
            ElemType::B1,
            vec![Dim::Batch, Dim::Fixed(4), Dim::Fixed(4), Dim::Fixed(3)],
        );
        let mut eg = egraph(&[ty]);
        let x = input(&mut eg, 0);
        let xr = op(&mut eg, Op::Replicate { times: 2 }, &[x]);
        let wt = b1(vec![2, 3, 3, 6], 7);
        let w = konst(&mut eg, wt.clone());
        let attrs = Conv2dAttrs {
            padding: [1; 4],
            pad_value: Some(PadValue::MinusOne),
            ..Conv2dAttrs::default()
        };
        let conv = op(&mut eg, Op::Conv2d(attrs.clone()), &[xr, w]);
        // times = 3 with mixed magnitudes (1 and 3) has no k * ternary form.
        let x3 = op(&mut eg, Op::Replicate { times: 3 }, &[x]);
        let w3 = konst(
            &mut eg,
            Tensor::int(
                ElemType::B1,
                vec![1, 1, 1, 9],
                vec![1, 1, 1, 1, -1, 1, 1, 1, 1],
            ),
        );
        let conv3 = op(&mut eg, Op::Conv2d(Conv2dAttrs::default()), &[x3, w3]);
        let eg = run_rule(eg, "repconv_combine_weights");

        let muls = find_op(&eg, conv, "mul");
        assert_eq!(muls.len(), 1);
        assert_eq!(
            const_of(&eg, muls[0].children[1])
                .unwrap()
                .as_int()
                .unwrap()[..],
            [2]
        );
        let inner = find_op(&eg, muls[0].children[0], "conv2d");
        assert_eq!(inner[0].graph_op(), Some(&Op::Conv2d(attrs)));
        assert_eq!(inner[0].children[0], eg.find(x));
        let t = const_of(&eg, inner[0].children[1]).unwrap();
        assert_eq!(t.elem, ElemType::Ternary);
        assert_eq!(t.dims, [2, 3, 3, 3]);
        let (wv, tv) = (wt.as_int().unwrap(), t.as_int().unwrap());
        for (i, &tc) in tv.iter().enumerate() {
            let (row, c) = (i / 3, i % 3);
            assert_eq!(2 * tc, wv[row * 6 + c] + wv[row * 6 + 3 + c]);
        }
        assert!(find_op(&eg, conv3, "mul").is_empty());
        assert_eq!(find_op(&eg, conv3, "conv2d").len(), 1);

        // The interpreter agrees on a random input, padded taps included.
        let xv = b1(vec![2, 4, 4, 3], 11);
        let rep = bnnc_runtime::ops::eval(&Op::Replicate { times: 2 }, &[&xv]).unwrap();
        let attrs = match inner[0].graph_op() {
            Some(op) => op.clone(),
            None => unreachable!(),
        };
        let want = bnnc_runtime::ops::eval(&attrs, &[&rep, &wt]).unwrap();
        let got = bnnc_runtime::ops::eval(&attrs, &[&xv, &t]).unwrap();
        let two = Tensor::int(ElemType::I32, vec![1], vec![2]);
        let got = bnnc_runtime::ops::eval(&Op::Mul, &[&got, &two]).unwrap();
        assert_eq!(got.as_int(), want.as_int());
    }
}
