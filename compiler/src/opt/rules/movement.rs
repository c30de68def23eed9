//! Sign and threshold across data movement: a binarization after `concat`,
//! `channel_shuffle` or `replicate` moves to the values being moved, so it sits
//! right after the op that computes them (and, in lowering, fuses into the
//! producing binary conv/dense: packed bits come out of the popcount loop, and
//! the movement then carries bits instead of `i32` accumulators).
//!
//! # Derivation (shared by the family)
//!
//! `sign` is elementwise, and `threshold(x, t, dir)` is elementwise with
//! parameters chosen by the channel: element `x[.., j]` becomes
//! `#{k : x[.., j] >= t[j, k]}` (dir +1) or `#{k : x[.., j] <= t[j, k]}`
//! (dir -1), with row 0 of `t` for every channel when `t` has one row. A
//! movement op `m` only copies elements: every output element `m(x)[p]` is
//! `x_i[q]` for one operand `i` and one position `q` that depend on `p` alone,
//! not on any value. So for an elementwise `f`, `f(m(x))[p] = f(x_i[q])`, and
//! `m(f(x))[p]` is the same value provided `f` applied at `q` of `x_i` uses the
//! parameters that `f` used at `p` of `m(x)`. For `sign` there are none; for
//! `threshold` the parameters of output channel `j` of `m(x)` must become those
//! of the channel it was copied from:
//! - `concat` along channels: operand `i` holds output channels
//!   `off_i .. off_i + C_i`, so it gets those rows of `t` and entries of `dir`;
//!   along any other axis every operand has all C channels, so the same `t`,
//!   `dir`;
//! - `channel_shuffle(groups = g)`, `C = g*m`: output channel `i*g + k` is input
//!   channel `k*m + i`, so input channel `k*m + i` gets row `i*g + k`;
//! - `replicate(times = b)`: output channel `r*C + c` is input channel `c` for
//!   every replica `r`; one threshold over the input serves all replicas only
//!   when the `b` threshold sets agree (`t[r*C + c] = t[c]`, `dir` likewise).
//!   When they differ, the form stays `threshold(replicate(acc), t)`, which
//!   lowering computes from one accumulator against the `b` sets (the
//!   replicated accumulator is never stored).
//!
//! The result's element type is the same in both forms (`b1`, or `uN` from
//! the count of T thresholds), so the movement op types alike.

use bnnc_ir::{Op, Tensor, TensorData};
use egg::Id;

use super::{nodes, op_of, Build};
use crate::opt::analysis::{chan_count, BnnGraph};
use crate::opt::lang::ENode;

/// The rows `idx` of a `[R, T]` threshold table (or the entries `idx` of a
/// `[C]` direction vector), in that order.
fn pick_rows(t: &Tensor, idx: &[usize]) -> Tensor {
    let width: usize = t.dims[1..].iter().product();
    let mut dims = t.dims.clone();
    dims[0] = idx.len();
    match &t.data {
        TensorData::F32(v) => Tensor::f32(
            dims,
            idx.iter()
                .flat_map(|&r| v[r * width..(r + 1) * width].iter().copied())
                .collect(),
        ),
        TensorData::Int(_) | TensorData::Bits(_) => {
            let v = t.as_int().unwrap_or_default();
            Tensor::int(
                t.elem,
                dims,
                idx.iter()
                    .flat_map(|&r| v[r * width..(r + 1) * width].iter().copied())
                    .collect(),
            )
        }
    }
}

/// The threshold parameters of a `threshold(x, t[, dir])` node over `c`
/// channels: the threshold class, whether it is one row shared by all
/// channels, and the direction class.
struct Params {
    t: Id,
    shared: bool,
    dir: Option<Id>,
}

impl Params {
    fn of(egraph: &BnnGraph, kids: &[Id]) -> Option<Params> {
        let t = kids[1];
        let rows = egraph[t].data.ty.shape.first()?.fixed()?;
        Some(Params {
            t,
            shared: rows == 1,
            dir: kids.get(2).copied(),
        })
    }

    /// `threshold(x, ..)` with the parameters of channels `idx()` (in the
    /// order given), or `None` when they are needed but not constant. The
    /// channel list is made only when a constant with a row per channel is
    /// there to pick from, so its length is bounded by that constant's.
    fn select(&self, egraph: &BnnGraph, x: Build, idx: impl Fn() -> Vec<usize>) -> Option<Build> {
        let t = if self.shared {
            Build::Class(self.t)
        } else {
            Build::Const(pick_rows(egraph[self.t].data.konst.as_deref()?, &idx()))
        };
        let mut args = vec![x, t];
        if let Some(d) = self.dir {
            args.push(Build::Const(pick_rows(
                egraph[d].data.konst.as_deref()?,
                &idx(),
            )));
        }
        Some(Build::Node(Op::Threshold, args))
    }

    /// `threshold(x, ..)` with the same parameter classes.
    fn same(&self, x: Build) -> Build {
        let mut args = vec![x, Build::Class(self.t)];
        args.extend(self.dir.map(Build::Class));
        Build::Node(Op::Threshold, args)
    }
}

/// The channel axis of a value of rank `rank` named by `axis` (negative counts
/// from the end) is the last one.
fn is_channel_axis(axis: i64, rank: usize) -> bool {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    a == rank as i64 - 1
}

/// `sign(concat(a_1, .., a_n))`, `sign(channel_shuffle(a))` and
/// `sign(replicate(a))` -> the same movement of `sign(a_i)`.
///
/// Derivation: the family's, with `sign` having no parameters: each output
/// element of the movement is a copy of one input element, and `sign` of a
/// copy is the copy of the `sign`. Exact for every element type (f32 NaN and
/// -0.0 included: `sign` sees the same bits either way).
pub fn sign_through_movement(egraph: &BnnGraph, _class: Id, node: &ENode) -> Option<Build> {
    let (Op::Sign { estimator }, [m]) = op_of(node)? else {
        return None;
    };
    let sign = |x: Id| {
        Build::Node(
            Op::Sign {
                estimator: estimator.clone(),
            },
            vec![Build::Class(x)],
        )
    };
    for n in nodes(egraph, *m) {
        let Some((op, kids)) = op_of(n) else { continue };
        if matches!(
            op,
            Op::Concat { .. } | Op::ChannelShuffle { .. } | Op::Replicate { .. }
        ) {
            return Some(Build::Node(
                op.clone(),
                kids.iter().map(|&k| sign(k)).collect(),
            ));
        }
    }
    None
}

/// `threshold(concat(a_1, .., a_n, axis), t, dir)` ->
/// `concat(threshold(a_1, t_1, dir_1), .., axis)`.
///
/// Derivation: the family's. Along the channel axis operand `i` covers output
/// channels `off_i .. off_i + C_i` and gets those rows of `t` (all of `t` when
/// it is one shared row) and those entries of `dir`; along another axis every
/// operand has the same C channels and keeps `t` and `dir` as they are.
pub fn threshold_through_concat(egraph: &BnnGraph, _class: Id, node: &ENode) -> Option<Build> {
    let (Op::Threshold, kids) = op_of(node)? else {
        return None;
    };
    let p = Params::of(egraph, kids)?;
    for n in nodes(egraph, kids[0]) {
        let Some((Op::Concat { axis }, parts)) = op_of(n) else {
            continue;
        };
        let rank = egraph[kids[0]].data.ty.rank();
        let mut args = Vec::with_capacity(parts.len());
        if is_channel_axis(*axis, rank) {
            let mut off = 0;
            for &a in parts {
                let c = chan_count(&egraph[a].data.ty);
                args.push(p.select(egraph, Build::Class(a), || (off..off + c).collect())?);
                off += c;
            }
        } else {
            args.extend(parts.iter().map(|&a| p.same(Build::Class(a))));
        }
        return Some(Build::Node(Op::Concat { axis: *axis }, args));
    }
    None
}

/// `threshold(channel_shuffle(a, groups=g), t, dir)` ->
/// `channel_shuffle(threshold(a, t', dir'), groups=g)` with
/// `t'[k*m + i] = t[i*g + k]` (and `dir'` likewise), `C = g*m`.
///
/// Derivation: the family's: output channel `i*g + k` of the shuffle is input
/// channel `k*m + i`, so the threshold applied to it moves to that channel.
pub fn threshold_through_shuffle(egraph: &BnnGraph, _class: Id, node: &ENode) -> Option<Build> {
    let (Op::Threshold, kids) = op_of(node)? else {
        return None;
    };
    let p = Params::of(egraph, kids)?;
    for n in nodes(egraph, kids[0]) {
        let Some((Op::ChannelShuffle { groups }, [a])) = op_of(n) else {
            continue;
        };
        let g = *groups;
        let c = chan_count(&egraph[*a].data.ty);
        if g == 0 || !c.is_multiple_of(g) {
            continue;
        }
        let m = c / g;
        // Input channel q = k*m + i takes the parameters of output i*g + k.
        let idx = || (0..c).map(|q| (q % m) * g + q / m).collect();
        let th = p.select(egraph, Build::Class(*a), idx)?;
        return Some(Build::Node(Op::ChannelShuffle { groups: g }, vec![th]));
    }
    None
}

/// `threshold(replicate(a, times=b), t, dir)` -> `replicate(threshold(a, t0,
/// dir0), times=b)` when the `b` threshold sets agree: `t[r*C + c] = t[c]` and
/// `dir[r*C + c] = dir[c]` for every replica `r` (always when `t` is one
/// shared row and there is no `dir`); `t0`, `dir0` are the first set.
///
/// Derivation: the family's: output channel `r*C + c` is a copy of input
/// channel `c`, thresholded with set `r`; when every set equals set 0, the
/// copies of `threshold(a, set 0)` are the same bits.
pub fn threshold_through_replicate(egraph: &BnnGraph, _class: Id, node: &ENode) -> Option<Build> {
    let (Op::Threshold, kids) = op_of(node)? else {
        return None;
    };
    let p = Params::of(egraph, kids)?;
    for n in nodes(egraph, kids[0]) {
        let Some((Op::Replicate { times }, [a])) = op_of(n) else {
            continue;
        };
        let c = chan_count(&egraph[*a].data.ty);
        let agree = |t: &Tensor| -> bool {
            let width: usize = t.dims[1..].iter().product();
            let rows = t.dims[0];
            if rows == 1 {
                return true;
            }
            let ints = t.as_int();
            let same = |i: usize, j: usize| match (&t.data, &ints) {
                (TensorData::F32(v), _) => {
                    (0..width).all(|k| v[i * width + k].to_bits() == v[j * width + k].to_bits())
                }
                (_, Some(v)) => (0..width).all(|k| v[i * width + k] == v[j * width + k]),
                (_, None) => false,
            };
            c.checked_mul(*times) == Some(rows) && (c..rows).all(|r| same(r, r % c))
        };
        if !p.shared && !agree(egraph[p.t].data.konst.as_deref()?) {
            continue;
        }
        if let Some(d) = p.dir {
            if !agree(egraph[d].data.konst.as_deref()?) {
                continue;
            }
        }
        let th = p.select(egraph, Build::Class(*a), || (0..c).collect())?;
        return Some(Build::Node(Op::Replicate { times: *times }, vec![th]));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use bnnc_ir::{Dim, ElemType, Op, Tensor, TensorType};
    use egg::Id;

    use crate::opt::analysis::BnnGraph;

    fn nhwc(e: ElemType, c: usize) -> TensorType {
        TensorType::new(
            e,
            vec![Dim::Batch, Dim::Fixed(2), Dim::Fixed(2), Dim::Fixed(c)],
        )
    }

    fn i32s(dims: Vec<usize>, v: &[i32]) -> Tensor {
        Tensor::int(ElemType::I32, dims, v.to_vec())
    }

    /// The threshold node over class `x` inside class `id`: (t, dir) values.
    fn threshold_over(eg: &BnnGraph, id: Id, x: Id) -> (Vec<i32>, Option<Vec<i32>>) {
        let th = find_op(eg, id, "threshold");
        let th = th
            .iter()
            .find(|n| n.children[0] == eg.find(x))
            .expect("a threshold over x");
        let t = const_of(eg, th.children[1])
            .unwrap()
            .as_int()
            .unwrap()
            .to_vec();
        let d = th
            .children
            .get(2)
            .map(|&d| const_of(eg, d).unwrap().as_int().unwrap().to_vec());
        (t, d)
    }

    #[test]
    fn sign_through_movement() {
        let mut eg = egraph(&[nhwc(ElemType::F32, 3), nhwc(ElemType::F32, 2)]);
        let a = input(&mut eg, 0);
        let b = input(&mut eg, 1);
        let cat = op(&mut eg, Op::Concat { axis: -1 }, &[a, b]);
        let s = op(&mut eg, Op::Sign { estimator: None }, &[cat]);
        let rep = op(&mut eg, Op::Replicate { times: 2 }, &[b]);
        let sr = op(&mut eg, Op::Sign { estimator: None }, &[rep]);
        let eg = run_rule(eg, "sign_through_movement");
        let moved = find_op(&eg, s, "concat");
        assert_eq!(moved.len(), 1);
        for (k, x) in [a, b].into_iter().enumerate() {
            let part = moved[0].children[k];
            assert_eq!(find_op(&eg, part, "sign")[0].children[0], eg.find(x));
        }
        let moved = find_op(&eg, sr, "replicate");
        assert_eq!(moved.len(), 1);
        assert_eq!(
            find_op(&eg, moved[0].children[0], "sign")[0].children[0],
            eg.find(b)
        );
    }

    #[test]
    fn threshold_through_concat() {
        let mut eg = egraph(&[nhwc(ElemType::I32, 2), nhwc(ElemType::I32, 3)]);
        let a = input(&mut eg, 0);
        let b = input(&mut eg, 1);
        let cat = op(&mut eg, Op::Concat { axis: 3 }, &[a, b]);
        let t = konst(&mut eg, i32s(vec![5, 1], &[10, 11, 12, 13, 14]));
        let d = konst(&mut eg, i32s(vec![5], &[1, -1, -1, 1, -1]));
        let th = op(&mut eg, Op::Threshold, &[cat, t, d]);
        // Along H: both parts keep the parameters.
        let cat_h = op(&mut eg, Op::Concat { axis: 1 }, &[b, b]);
        let t3 = konst(&mut eg, i32s(vec![3, 1], &[1, 2, 3]));
        let th_h = op(&mut eg, Op::Threshold, &[cat_h, t3]);
        let eg = run_rule(eg, "threshold_through_concat");
        let moved = find_op(&eg, th, "concat");
        assert_eq!(moved.len(), 1);
        let (ta, da) = threshold_over(&eg, moved[0].children[0], a);
        let (tb, db) = threshold_over(&eg, moved[0].children[1], b);
        assert_eq!((ta, da), (vec![10, 11], Some(vec![1, -1])));
        assert_eq!((tb, db), (vec![12, 13, 14], Some(vec![-1, 1, -1])));
        let moved = find_op(&eg, th_h, "concat");
        assert_eq!(moved.len(), 1);
        assert_eq!(threshold_over(&eg, moved[0].children[1], b).0, [1, 2, 3]);
    }

    #[test]
    fn threshold_through_shuffle() {
        // C = 6, g = 2, m = 3: output i*2 + k is input k*3 + i.
        let mut eg = egraph(&[nhwc(ElemType::I32, 6)]);
        let a = input(&mut eg, 0);
        let sh = op(&mut eg, Op::ChannelShuffle { groups: 2 }, &[a]);
        let t = konst(&mut eg, i32s(vec![6, 1], &[0, 1, 2, 3, 4, 5]));
        let th = op(&mut eg, Op::Threshold, &[sh, t]);
        let eg = run_rule(eg, "threshold_through_shuffle");
        let moved = find_op(&eg, th, "channel_shuffle");
        assert_eq!(moved.len(), 1);
        let (t, d) = threshold_over(&eg, moved[0].children[0], a);
        // Input q = k*3 + i takes output i*2 + k: q=0 (k0,i0) -> 0, q=1 (i1) -> 2,
        // q=2 -> 4, q=3 (k1,i0) -> 1, q=4 -> 3, q=5 -> 5.
        assert_eq!(t, [0, 2, 4, 1, 3, 5]);
        assert_eq!(d, None);
    }

    #[test]
    fn threshold_through_replicate() {
        let mut eg = egraph(&[nhwc(ElemType::I32, 2)]);
        let a = input(&mut eg, 0);
        let rep = op(&mut eg, Op::Replicate { times: 3 }, &[a]);
        let same = konst(&mut eg, i32s(vec![6, 1], &[4, -4, 4, -4, 4, -4]));
        let dir = konst(&mut eg, i32s(vec![6], &[1, -1, 1, -1, 1, -1]));
        let th = op(&mut eg, Op::Threshold, &[rep, same, dir]);
        // Different sets per replica: stays (one accumulator, three sets).
        let diff = konst(&mut eg, i32s(vec![6, 1], &[4, -4, 4, -4, 5, -4]));
        let th_diff = op(&mut eg, Op::Threshold, &[rep, diff]);
        let eg = run_rule(eg, "threshold_through_replicate");
        let moved = find_op(&eg, th, "replicate");
        assert_eq!(moved.len(), 1);
        let (t, d) = threshold_over(&eg, moved[0].children[0], a);
        assert_eq!((t, d), (vec![4, -4], Some(vec![1, -1])));
        assert!(find_op(&eg, th_diff, "replicate").is_empty());
    }
}
