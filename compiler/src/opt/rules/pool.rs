//! Sign across a float max-pool: `sign(maxpool2d(y))` over an f32 `y` that
//! can never be NaN becomes `maxpool2d(sign(y))`, a max-pool on bits. When `y`
//! is a batch-norm (or any chain of the threshold family) over a binary
//! layer's integer accumulator, `bn_to_threshold` then turns `sign(y)` into
//! integer thresholds, so `sign(maxpool(batchnorm(conv_b1)))` ends as
//! `maxpool2d(threshold(acc))`, the pool an AND of packed words.
//!
//! # Derivation
//!
//! `maxpool2d` (`bnnc_ir::op`) scans each window's in-bounds positions
//! `e_1 .. e_k` (k >= 1: the verifier requires every padding to be smaller
//! than the kernel, and the interpreter refuses an empty window in both
//! forms alike) in row-major order, keeping the first element and replacing
//! it by each later one that compares greater. Padded positions are skipped,
//! not filled, by the f32 and the `b1` maxpool alike, so both forms see the
//! same `e_i` and padding needs no condition.
//!
//! If no `e_i` is NaN, `>` is a total preorder on them (-0.0 and +0.0 compare
//! equal, infinities are ordinary), so the result `m` is one of the `e_i` and
//! `m >= e_i` for every i. `sign` is monotone non-decreasing (-1 iff `< 0`),
//! so `sign(e_i) <= sign(m)` for all i and `sign(m)` is attained: `sign(m) =
//! max_i sign(e_i)`, the `b1` maxpool of the signs (+1 iff any sign is +1; on
//! packed bits, where a set bit is -1, the AND of the window's words). A
//! window holding -0.0 and +0.0 may give either zero as `m`; both have sign +1.
//!
//! With a NaN the two differ: for `e_1 = -1, e_2 = NaN` the f32 maxpool keeps
//! -1 (NaN never compares greater), so `sign(maxpool) = -1`, but `sign(NaN) =
//! +1` makes the pooled signs +1. So the rule needs a proof that `y` is never
//! NaN. It takes it from the threshold family's chains (`find_chains`): `y` is
//! `f_n(..f_1(acc))`, elementwise steps with per-channel constants over an
//! integer accumulator whose channel c takes only values of the finite set
//! `V_c` (the analysis' range). Every element of `y` in channel c is then
//! `f(v)` for some `v` in `V_c`, and the chain is evaluated by the
//! interpreter (`bnnc_runtime::ops::eval`, the exact semantics) on every
//! value of every `V_c`; the rule fires only when no result is NaN.
//! Ranges larger than [`BRUTE_FORCE_LIMIT`] values per channel, or
//! evaluations beyond the analysis' budget, are not examined and the rule
//! does not fire. A float `y` computed from model inputs (a float stem
//! convolution over f32 pixels) is never proven: an input NaN or infinity
//! makes NaNs that need not come first in a window.

use bnnc_ir::{ElemType, Op, TensorData};
use egg::Id;

use super::threshold::{acc_ranges, chain_key, eval_chain, find_chains, BRUTE_FORCE_LIMIT};
use super::{nodes, op_of, Build};
use crate::opt::analysis::{BnnGraph, Interval};
use crate::opt::lang::ENode;

/// `sign(maxpool2d(y)) -> maxpool2d(sign(y))` for f32 `y` proven never NaN.
///
/// Derivation and the proof of "never NaN": the module docs. Condition: `y`
/// is `f32`, and some chain of elementwise steps with per-channel constants
/// from an integer accumulator with a range ends in `y`'s class and gives no
/// NaN on any value of the accumulator's per-channel ranges (at most
/// [`BRUTE_FORCE_LIMIT`] values per channel, channels times values within the
/// analysis' budget). Integer `y` is `sign_maxpool_commute`'s case.
pub fn sign_maxpool_never_nan(egraph: &BnnGraph, _class: Id, node: &ENode) -> Option<Build> {
    let (Op::Sign { estimator }, [p]) = op_of(node)? else {
        return None;
    };
    for m in nodes(egraph, *p) {
        let Some((Op::MaxPool2d(a), [y])) = op_of(m) else {
            continue;
        };
        if egraph[*y].data.ty.elem != ElemType::F32 || !never_nan(egraph, *y) {
            continue;
        }
        return Some(Build::Node(
            Op::MaxPool2d(a.clone()),
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

/// True when some chain into `y` proves that no element of `y` is NaN (see
/// the module docs); the answer per chain is cached in the analysis'
/// `fold_cache` under `nan|` and the chain's key.
pub fn never_nan(egraph: &BnnGraph, y: Id) -> bool {
    for chain in find_chains(egraph, y) {
        let Some(ranges) = acc_ranges(egraph, chain.acc) else {
            continue;
        };
        let elem = egraph[chain.acc].data.ty.elem;
        let mut key = b"nan|".to_vec();
        key.extend(chain_key(&chain.steps, elem, &ranges));
        let cache = &egraph.analysis.fold_cache;
        let cached = cache.lock().expect("lock").get(&key).cloned();
        let ok = match cached {
            Some(r) => r.is_some(),
            None => {
                let ok = chain_never_nan(&chain.steps, elem, &ranges, egraph.analysis.budget);
                let v = ok.then(|| (Vec::new(), Vec::new()));
                cache.lock().expect("lock").insert(key, v);
                ok
            }
        };
        if ok {
            return true;
        }
    }
    false
}

/// True when `steps` evaluated on every value of every channel's range gives
/// no f32 NaN; false when it gives one, does not evaluate, or would take more
/// than [`BRUTE_FORCE_LIMIT`] values per channel or `limit` values in all.
pub fn chain_never_nan(
    steps: &[super::threshold::Step],
    elem: ElemType,
    ranges: &[Interval],
    limit: u64,
) -> bool {
    let c = ranges.len();
    let Some(max) = ranges.iter().map(|r| r.count()).max() else {
        return false;
    };
    if c == 0 || max > BRUTE_FORCE_LIMIT || max.saturating_mul(c as u64) > limit {
        return false;
    }
    // Rows of at most 2^20 elements; row k holds value k of every channel
    // (the last value repeated past a channel's end).
    let chunk = ((1usize << 20) / c).max(1) as u64;
    let mut row0 = 0u64;
    while row0 < max {
        let rows = chunk.min(max - row0) as usize;
        let mut data = Vec::with_capacity(rows * c);
        for r in 0..rows as u64 {
            for iv in ranges {
                let k = (row0 + r).min(iv.count() - 1);
                let Ok(v) = i32::try_from(iv.value(k)) else {
                    return false;
                };
                data.push(v);
            }
        }
        let Some(t) = eval_chain(steps, elem, rows, c, data) else {
            return false;
        };
        match &t.data {
            TensorData::F32(v) if v.iter().all(|x| !x.is_nan()) => {}
            TensorData::F32(_) => return false,
            // An integer result has no NaN.
            TensorData::Int(_) | TensorData::Bits(_) => {}
        }
        row0 += rows as u64;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use bnnc_ir::{Conv2dAttrs, Dim, ElemType, Op, PadValue, PoolAttrs, Tensor, TensorType};

    fn pool(padding: [usize; 4]) -> Op {
        Op::MaxPool2d(PoolAttrs {
            kernel: [2, 2],
            stride: [2, 2],
            padding,
        })
    }

    fn nhwc(e: ElemType, c: usize) -> TensorType {
        TensorType::new(
            e,
            vec![Dim::Batch, Dim::Fixed(4), Dim::Fixed(4), Dim::Fixed(c)],
        )
    }

    fn bn_consts(eg: &mut super::BnnGraph, var: [f32; 2]) -> Vec<egg::Id> {
        vec![
            konst(eg, Tensor::f32(vec![2], vec![1.5, -0.5])),
            konst(eg, Tensor::f32(vec![2], vec![0.25, 0.0])),
            konst(eg, Tensor::f32(vec![2], vec![1.0, -3.0])),
            konst(eg, Tensor::f32(vec![2], var.to_vec())),
        ]
    }

    #[test]
    fn sign_maxpool_never_nan() {
        // A binary conv accumulator (range -18..18 step 2) through a
        // batch-norm: never NaN, so the rule fires (with padding too). The same
        // batch-norm over an f32 input, and one whose variance makes
        // `sqrt(var + eps)` NaN, stay.
        let mut eg = egraph(&[nhwc(ElemType::B1, 2), nhwc(ElemType::F32, 2)]);
        let x = input(&mut eg, 0);
        let w = konst(
            &mut eg,
            Tensor::int(ElemType::B1, vec![2, 3, 3, 2], vec![1; 36]),
        );
        let acc = op(
            &mut eg,
            Op::Conv2d(Conv2dAttrs {
                stride: [1, 1],
                padding: [1, 1, 1, 1],
                dilation: [1, 1],
                groups: 1,
                pad_value: Some(PadValue::PlusOne),
            }),
            &[x, w],
        );
        let bn = Op::BatchNorm { eps: 1e-5 };
        let k = bn_consts(&mut eg, [1.0, 4.0]);
        let y = op(&mut eg, bn.clone(), &[acc, k[0], k[1], k[2], k[3]]);
        let sign = Op::Sign { estimator: None };
        let p = op(&mut eg, pool([0; 4]), &[y]);
        let s = op(&mut eg, sign.clone(), &[p]);
        let pp = op(&mut eg, pool([1, 1, 0, 0]), &[y]);
        let sp = op(&mut eg, sign.clone(), &[pp]);
        // NaN statistics: var = -1 makes sqrt(var + eps) NaN.
        let kn = bn_consts(&mut eg, [1.0, -1.0]);
        let yn = op(&mut eg, bn.clone(), &[acc, kn[0], kn[1], kn[2], kn[3]]);
        let pn = op(&mut eg, pool([0; 4]), &[yn]);
        let sn = op(&mut eg, sign.clone(), &[pn]);
        // f32 input: may be NaN.
        let xf = input(&mut eg, 1);
        let yf = op(&mut eg, bn, &[xf, k[0], k[1], k[2], k[3]]);
        let pf = op(&mut eg, pool([0; 4]), &[yf]);
        let sf = op(&mut eg, sign, &[pf]);
        let eg = run_rule(eg, "sign_maxpool_never_nan");
        for (cls, of) in [(s, y), (sp, y)] {
            let pooled = find_op(&eg, cls, "maxpool2d");
            assert_eq!(pooled.len(), 1);
            let inner = find_op(&eg, pooled[0].children[0], "sign");
            assert_eq!(inner[0].children[0], eg.find(of));
        }
        assert_eq!(
            find_op(&eg, sp, "maxpool2d")[0].graph_op(),
            Some(&pool([1, 1, 0, 0]))
        );
        assert!(find_op(&eg, sn, "maxpool2d").is_empty());
        assert!(find_op(&eg, sf, "maxpool2d").is_empty());
    }

    #[test]
    fn chain_never_nan_on_every_value() {
        use super::super::threshold::Step;
        use crate::opt::analysis::Interval;
        use std::sync::Arc;
        let step = |var: f32| Step {
            op: Op::BatchNorm { eps: 0.0 },
            pos: 0,
            consts: vec![
                None,
                Some(Arc::new(Tensor::f32(vec![1], vec![0.0]))),
                Some(Arc::new(Tensor::f32(vec![1], vec![1.0]))),
                Some(Arc::new(Tensor::f32(vec![1], vec![4.0]))),
                Some(Arc::new(Tensor::f32(vec![1], vec![var]))),
            ],
        };
        let r = [Interval::new(-8, 8, 2)];
        // gamma 0 and var 0: (x - 4) / 0 * 0 is NaN only at x = 4 (0 / 0 * 0),
        // +-inf * 0 = NaN elsewhere: NaN somewhere, so not proven.
        assert!(!super::chain_never_nan(
            &[step(0.0)],
            ElemType::I32,
            &r,
            1 << 22
        ));
        // var 1: (x - 4) * 0 + 1 = 1 everywhere.
        assert!(super::chain_never_nan(
            &[step(1.0)],
            ElemType::I32,
            &r,
            1 << 22
        ));
        // Over the budget: not examined.
        assert!(!super::chain_never_nan(&[step(1.0)], ElemType::I32, &r, 4));
    }
}
