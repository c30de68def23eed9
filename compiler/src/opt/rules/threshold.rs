//! Integer-domain folding: an elementwise chain between an integer accumulator
//! and the next `sign` becomes per-channel integer thresholds.
//!
//! # Derivation (shared by every rule of this family)
//!
//! Let `acc` be an integer-typed value whose channel c only ever holds values of
//! the finite set `V_c = {lo, lo + step, .., hi}` (the analysis' range: a
//! `b1 x b1` dot of length K has `V = {-K, -K + 2, .., K}`), and let
//! `y = f_n(..f_1(acc))` where each `f_i` is an elementwise op whose other operands
//! are per-channel constants (batchnorm, add/sub/mul by a constant, prelu,
//! rprelu, hardtanh, clip, relu, sigmoid, quantize, dequantize, ternarize, sign).
//! Then `sign(y)` in channel c is a function `g_c : V_c -> {-1, +1}` that depends
//! on nothing else. `threshold(acc, t, dir)` with one threshold per channel is
//! `+1` iff `acc >= t_c` (dir +1) or `acc <= t_c` (dir -1). So `sign(y)` equals a
//! threshold exactly when every `g_c` switches at most once along `V_c`:
//! - `g_c` constant +1: `t_c = lo` with dir +1 (always passed);
//! - `g_c` constant -1: `t_c = hi + 1` with dir +1 (never passed);
//! - -1 below `v_k`, +1 from `v_k` on: `t_c = v_k`, dir +1;
//! - +1 up to `v_k`, -1 above: `t_c = v_k`, dir -1.
//!
//! `g_c` is computed, never assumed: the chain is evaluated with
//! `bnnc_runtime::ops::eval` (the exact f32 semantics of every op, e.g.
//! batchnorm's `(x - mean) / sqrt(var + eps) * gamma + beta` in that order) on
//! every value of `V_c` when `|V_c| <= 2^16` ([`BRUTE_FORCE_LIMIT`]). A chain
//! whose sign switches twice (e.g. prelu with a negative slope) is left alone
//! here: `fold_chain_to_table` makes it a `table` over the accumulator range.
//!
//! Larger ranges (bit-serial or i32 inputs) are folded only when every op of the
//! chain is monotone on finite values (batchnorm, add/sub/mul by a constant,
//! relu, hardtanh, clip, prelu and rprelu with slopes >= 0, quantize,
//! dequantize, ternarize, sign; f32 rounding is monotone) and every f32
//! intermediate is finite at both ends of the range. Then by induction each
//! intermediate's value at any point of the range lies between its values at the
//! ends, so it is finite (no NaN anywhere) and the composition is monotone; so
//! `sign(y)` (which is `y >= 0` off NaN, -0.0 included) switches at most once, and
//! a binary search on the exact evaluation finds where.
//!
//! Negative gamma gives dir -1; zero gamma gives `y = beta` (or NaN, sign +1)
//! for every accumulator, a constant channel; eps, NaN or infinite statistics
//! are whatever the evaluation says.

use std::sync::Arc;

use bnnc_ir::{ElemType, Op, Tensor, TensorData};
use egg::Id;

use super::{nodes, op_of, Build};
use crate::opt::analysis::{
    chan_count, channel_ranges, is_per_channel, BnnGraph, Interval, Thresholds,
};
use crate::opt::lang::ENode;

/// Channels whose range has at most this many values are evaluated exhaustively.
pub const BRUTE_FORCE_LIMIT: u64 = 1 << 16;

/// Longest chain looked for.
const MAX_CHAIN: usize = 8;

/// Most chains examined from one `sign`.
const MAX_PATHS: usize = 64;

/// One elementwise step: `op` with the running value as operand `pos` and the
/// constants (flattened to one dimension) as the others.
#[derive(Clone, Debug)]
pub struct Step {
    pub op: Op,
    pub pos: usize,
    pub consts: Vec<Option<Arc<Tensor>>>,
}

/// `sign(steps(acc))`: the accumulator class and the steps applied to it in order.
#[derive(Clone, Debug)]
pub struct Chain {
    pub acc: Id,
    pub steps: Vec<Step>,
}

fn is_step_op(op: &Op) -> bool {
    matches!(
        op,
        Op::BatchNorm { .. }
            | Op::Add
            | Op::Sub
            | Op::Mul
            | Op::Prelu
            | Op::Rprelu
            | Op::Hardtanh
            | Op::Clip { .. }
            | Op::Relu
            | Op::Sigmoid
            | Op::Quantize { .. }
            | Op::Dequantize { .. }
            | Op::Ternarize { .. }
            | Op::Sign { .. }
    )
}

/// Every chain of elementwise steps that ends in class `y` and starts at a
/// non-constant integer class with a range, longest first.
pub fn find_chains(egraph: &BnnGraph, y: Id) -> Vec<Chain> {
    let mut out = Vec::new();
    let mut budget = MAX_PATHS;
    let mut rev = Vec::new();
    dfs(egraph, y, &mut rev, &mut out, &mut budget);
    // Longest first; the sort is stable, so ties keep the search order.
    out.sort_by_key(|c| std::cmp::Reverse(c.steps.len()));
    out
}

fn dfs(
    egraph: &BnnGraph,
    class: Id,
    rev: &mut Vec<Step>,
    out: &mut Vec<Chain>,
    budget: &mut usize,
) {
    if *budget == 0 {
        return;
    }
    *budget -= 1;
    let d = &egraph[class].data;
    if !rev.is_empty() && d.ty.elem.is_integer() && d.range.is_some() && d.konst.is_none() {
        out.push(Chain {
            acc: egraph.find(class),
            steps: rev.iter().rev().cloned().collect(),
        });
    }
    if rev.len() == MAX_CHAIN {
        return;
    }
    let Some(c) = d.ty.shape.last().and_then(|x| x.fixed()) else {
        return;
    };
    let rank = d.ty.rank();
    for n in nodes(egraph, class) {
        let Some((op, kids)) = op_of(n) else { continue };
        if !is_step_op(op) {
            continue;
        }
        let running: Vec<usize> = (0..kids.len())
            .filter(|&i| egraph[kids[i]].data.konst.is_none())
            .collect();
        let [pos] = running[..] else { continue };
        // Only add/sub/mul may carry the running value in another slot.
        if pos != 0 && !matches!(op, Op::Add | Op::Sub | Op::Mul) {
            continue;
        }
        if egraph[kids[pos]].data.ty.shape != d.ty.shape {
            continue;
        }
        let mut consts = Vec::with_capacity(kids.len());
        let mut ok = true;
        for (i, &k) in kids.iter().enumerate() {
            if i == pos {
                consts.push(None);
                continue;
            }
            let kd = &egraph[k].data;
            if !is_per_channel(&kd.ty, c, rank) {
                ok = false;
                break;
            }
            let t = kd.konst.as_ref().expect("constant operand");
            let mut flat = (**t).clone();
            flat.dims = vec![flat.numel()];
            consts.push(Some(Arc::new(flat)));
        }
        if !ok {
            continue;
        }
        rev.push(Step {
            op: op.clone(),
            pos,
            consts,
        });
        dfs(egraph, kids[pos], rev, out, budget);
        rev.pop();
        if *budget == 0 {
            return;
        }
    }
}

/// Evaluates `sign(steps(x))` for `x` of element type `elem` and dims `[rows, c]`
/// holding `data`, with the reference interpreter. Returns the signs and every
/// intermediate tensor.
fn evaluate(
    steps: &[Step],
    elem: ElemType,
    rows: usize,
    c: usize,
    data: Vec<i32>,
) -> Option<(Vec<i32>, Vec<Tensor>)> {
    let mut cur = Tensor::int(elem, vec![rows, c], data);
    let mut trail = Vec::with_capacity(steps.len());
    for s in steps {
        let args: Vec<&Tensor> = s
            .consts
            .iter()
            .map(|k| k.as_deref().unwrap_or(&cur))
            .collect();
        let next = bnnc_runtime::ops::eval(&s.op, &args).ok()?;
        if next.numel() != rows * c {
            return None;
        }
        trail.push(std::mem::replace(&mut cur, next));
    }
    let signs = bnnc_runtime::ops::elementwise::sign(&cur).ok()?;
    trail.push(cur);
    Some((signs.as_int()?.to_vec(), trail))
}

/// The value of `steps(x)` for `x` of element type `elem` and dims `[rows, c]`
/// holding `data`, computed by the reference interpreter.
pub fn eval_chain(
    steps: &[Step],
    elem: ElemType,
    rows: usize,
    c: usize,
    data: Vec<i32>,
) -> Option<Tensor> {
    let mut cur = Tensor::int(elem, vec![rows, c], data);
    for s in steps {
        let args: Vec<&Tensor> = s
            .consts
            .iter()
            .map(|k| k.as_deref().unwrap_or(&cur))
            .collect();
        let next = bnnc_runtime::ops::eval(&s.op, &args).ok()?;
        if next.numel() != rows * c {
            return None;
        }
        cur = next;
    }
    Some(cur)
}

/// Per-channel state while scanning a channel's values in increasing order.
#[derive(Clone, Copy)]
struct Scan {
    first: i32,
    last: i32,
    changes: u32,
    /// Index of the first value after the first change.
    switch: u64,
}

/// Rounds of [`bisect`] at most: a range has at most 2^64 values.
const BISECT_ROUNDS: u64 = 66;

/// The accumulator `acc`'s interval in each of its channels, or `None` when it
/// has no range or more channels than the budget ([`BnnGraph`]'s
/// `analysis.budget`): then no rule of the family fires on it.
pub fn acc_ranges(egraph: &BnnGraph, acc: Id) -> Option<Vec<Interval>> {
    let d = &egraph[acc].data;
    channel_ranges(
        d.range.as_deref()?,
        chan_count(&d.ty),
        egraph.analysis.budget,
    )
}

/// One threshold per channel and its direction, for `sign(steps(acc))` over the
/// accumulator's per-channel ranges; `None` when some channel is not a threshold
/// function of the accumulator, or when finding out would evaluate the chain on
/// more than `limit` values (channels times values per channel, or channels
/// times the rounds of the binary search).
pub fn chain_thresholds(
    steps: &[Step],
    elem: ElemType,
    ranges: &[Interval],
    limit: u64,
) -> Option<Thresholds> {
    let c = ranges.len();
    if c == 0 {
        return None;
    }
    let max = ranges.iter().map(|r| r.count()).max()?;
    let kinds: Vec<(i32, i32, u64)> = if max <= BRUTE_FORCE_LIMIT {
        if max.checked_mul(c as u64)? > limit {
            return None;
        }
        brute_force(steps, elem, ranges, max)?
    } else {
        if (c as u64).checked_mul(BISECT_ROUNDS)? > limit {
            return None;
        }
        bisect(steps, elem, ranges)?
    };
    let mut t = Vec::with_capacity(c);
    let mut dir = Vec::with_capacity(c);
    for (iv, &(first, last, switch)) in ranges.iter().zip(&kinds) {
        let (tc, dc) = if first == last {
            if first == 1 {
                (iv.lo, 1)
            } else if iv.hi < i32::MAX as i64 {
                (iv.hi + 1, 1)
            } else if iv.lo > i32::MIN as i64 {
                (iv.lo - 1, -1)
            } else {
                return None;
            }
        } else if last == 1 {
            (iv.value(switch), 1)
        } else {
            (iv.value(switch - 1), -1)
        };
        t.push(i32::try_from(tc).ok()?);
        dir.push(dc);
    }
    Some((t, dir))
}

/// Evaluates every value of every channel; per channel (first sign, last sign,
/// switch index), `None` if a channel switches twice.
fn brute_force(
    steps: &[Step],
    elem: ElemType,
    ranges: &[Interval],
    max: u64,
) -> Option<Vec<(i32, i32, u64)>> {
    let c = ranges.len();
    let chunk = ((1usize << 20) / c).max(1) as u64;
    let mut scans: Vec<Option<Scan>> = vec![None; c];
    let mut row0 = 0u64;
    while row0 < max {
        let rows = chunk.min(max - row0) as usize;
        let mut data = Vec::with_capacity(rows * c);
        for r in 0..rows as u64 {
            for iv in ranges {
                let k = (row0 + r).min(iv.count() - 1);
                data.push(iv.value(k) as i32);
            }
        }
        let (signs, _) = evaluate(steps, elem, rows, c, data)?;
        for r in 0..rows {
            for (ch, iv) in ranges.iter().enumerate() {
                let k = row0 + r as u64;
                if k >= iv.count() {
                    continue;
                }
                let s = signs[r * c + ch];
                let sc = scans[ch].get_or_insert(Scan {
                    first: s,
                    last: s,
                    changes: 0,
                    switch: 0,
                });
                if s != sc.last {
                    sc.changes += 1;
                    if sc.changes > 1 {
                        return None;
                    }
                    sc.switch = k;
                    sc.last = s;
                }
            }
        }
        row0 += rows as u64;
    }
    scans
        .into_iter()
        .map(|s| s.map(|s| (s.first, s.last, s.switch)))
        .collect()
}

/// True when `step` is monotone on finite inputs (see the module docs).
fn monotone(step: &Step) -> bool {
    let nonneg = |k: usize| {
        step.consts
            .get(k)
            .and_then(|t| t.as_ref())
            .and_then(|t| t.as_f32().map(|v| v.iter().all(|&a| a >= 0.0)))
            .unwrap_or(false)
    };
    match &step.op {
        Op::BatchNorm { .. }
        | Op::Relu
        | Op::Hardtanh
        | Op::Clip { .. }
        | Op::Quantize { .. }
        | Op::Dequantize { .. }
        | Op::Ternarize { .. }
        | Op::Sign { .. } => true,
        // Integer add/sub/mul may wrap; only the f32 forms are allowed.
        Op::Add | Op::Sub | Op::Mul => step
            .consts
            .iter()
            .flatten()
            .any(|t| t.elem == ElemType::F32),
        Op::Prelu => nonneg(1),
        Op::Rprelu => nonneg(2),
        _ => false,
    }
}

/// Binary search per channel for chains of monotone steps (large ranges).
fn bisect(steps: &[Step], elem: ElemType, ranges: &[Interval]) -> Option<Vec<(i32, i32, u64)>> {
    if !steps.iter().all(monotone) {
        return None;
    }
    let c = ranges.len();
    let mut data = Vec::with_capacity(2 * c);
    data.extend(ranges.iter().map(|iv| iv.lo as i32));
    data.extend(ranges.iter().map(|iv| iv.hi as i32));
    let (signs, trail) = evaluate(steps, elem, 2, c, data)?;
    for t in &trail {
        if let TensorData::F32(v) = &t.data {
            if !v.iter().all(|x| x.is_finite()) {
                return None;
            }
        }
    }
    let first: Vec<i32> = signs[..c].to_vec();
    let last: Vec<i32> = signs[c..].to_vec();
    // Invariant for switching channels: sign(v_lo) = first, sign(v_hi) = last.
    let mut lo: Vec<u64> = vec![0; c];
    let mut hi: Vec<u64> = ranges.iter().map(|iv| iv.count() - 1).collect();
    loop {
        let active: Vec<usize> = (0..c)
            .filter(|&ch| first[ch] != last[ch] && hi[ch] - lo[ch] > 1)
            .collect();
        if active.is_empty() {
            break;
        }
        let mids: Vec<u64> = (0..c).map(|ch| lo[ch] + (hi[ch] - lo[ch]) / 2).collect();
        let data: Vec<i32> = (0..c).map(|ch| ranges[ch].value(mids[ch]) as i32).collect();
        let (s, _) = evaluate(steps, elem, 1, c, data)?;
        for ch in active {
            if s[ch] == first[ch] {
                lo[ch] = mids[ch];
            } else {
                hi[ch] = mids[ch];
            }
        }
    }
    Some((0..c).map(|ch| (first[ch], last[ch], hi[ch])).collect())
}

/// [`chain_thresholds`], remembered in the analysis' cache.
pub fn cached_thresholds(
    egraph: &BnnGraph,
    steps: &[Step],
    elem: ElemType,
    ranges: &[Interval],
) -> Option<Thresholds> {
    let key = chain_key(steps, elem, ranges);
    let cache = &egraph.analysis.fold_cache;
    if let Some(r) = cache.lock().expect("lock").get(&key) {
        return r.clone();
    }
    let r = chain_thresholds(steps, elem, ranges, egraph.analysis.budget);
    cache.lock().expect("lock").insert(key, r.clone());
    r
}

/// A key that identifies a chain exactly: the accumulator's element type and
/// ranges, and every step's op, position and constants (f32 by bits).
pub fn chain_key(steps: &[Step], elem: ElemType, ranges: &[Interval]) -> Vec<u8> {
    let mut key = format!("{elem}|{ranges:?}").into_bytes();
    for s in steps {
        key.extend_from_slice(format!("|{:?}@{}", s.op, s.pos).as_bytes());
        for t in s.consts.iter().flatten() {
            key.extend_from_slice(format!("{}{:?}", t.elem, t.dims).as_bytes());
            match &t.data {
                TensorData::F32(v) => v
                    .iter()
                    .for_each(|x| key.extend_from_slice(&x.to_bits().to_le_bytes())),
                TensorData::Int(_) | TensorData::Bits(_) => t
                    .as_int()
                    .unwrap_or_default()
                    .iter()
                    .for_each(|x| key.extend_from_slice(&x.to_le_bytes())),
            }
        }
    }
    key
}

/// The threshold form of `sign(y)` for the first chain into `y` that `accept`s
/// and folds.
fn fold_sign(egraph: &BnnGraph, y: Id, accept: impl Fn(&[Step]) -> bool) -> Option<Build> {
    for chain in find_chains(egraph, y) {
        if !accept(&chain.steps) {
            continue;
        }
        let Some(ranges) = acc_ranges(egraph, chain.acc) else {
            continue;
        };
        let elem = egraph[chain.acc].data.ty.elem;
        let Some((t, dir)) = cached_thresholds(egraph, &chain.steps, elem, &ranges) else {
            continue;
        };
        return Some(threshold_build(chain.acc, t, dir));
    }
    None
}

/// Largest table [`fold_chain_to_table`] writes: entries per channel row, and
/// entries in all (one bit each in compiled code).
pub const TABLE_ROW_LIMIT: u64 = 1 << 14;
pub const TABLE_LIMIT: u64 = 1 << 21;

/// The exact table of `sign(steps(acc))` over the accumulator's ranges:
/// `(t, lo)` with `t: b1 [C, R]` (`[1, R]` when every row is equal) and entry
/// k of row c the sign at `acc = lo + k`. Values of `[lo, lo + R)` outside
/// channel c's set `V_c` never occur; their entries repeat the entry of the
/// nearest smaller value of `V_c` (or the first one). `None` when a range is
/// empty or too large ([`TABLE_ROW_LIMIT`], [`TABLE_LIMIT`]), when the
/// evaluation would take more than `limit` values (channels times values per
/// channel), or when the chain does not evaluate.
pub fn chain_table(
    steps: &[Step],
    elem: ElemType,
    ranges: &[Interval],
    limit: u64,
) -> Option<(Tensor, i32)> {
    let c = ranges.len();
    let lo = ranges.iter().map(|r| r.lo).min()?;
    let hi = ranges.iter().map(|r| r.hi).max()?;
    let r = u64::try_from(hi - lo + 1).ok()?;
    if r > TABLE_ROW_LIMIT || r.checked_mul(c as u64)? > TABLE_LIMIT {
        return None;
    }
    let max = ranges.iter().map(|iv| iv.count()).max()?;
    if max.checked_mul(c as u64)? > limit {
        return None;
    }
    let lo32 = i32::try_from(lo).ok()?;
    i32::try_from(hi).ok()?;
    let max = ranges.iter().map(|iv| iv.count()).max()? as usize;
    // Row k of the evaluation holds value k of every channel (the last value
    // repeated past a channel's end).
    let mut data = Vec::with_capacity(max * c);
    for k in 0..max as u64 {
        for iv in ranges {
            data.push(iv.value(k.min(iv.count() - 1)) as i32);
        }
    }
    let (signs, _) = evaluate(steps, elem, max, c, data)?;
    let r = r as usize;
    let mut t = Vec::with_capacity(c * r);
    for (ch, iv) in ranges.iter().enumerate() {
        for e in 0..r as i64 {
            let v = lo + e;
            // Index in V_c of the nearest member <= v (0 below the range).
            let k = if v <= iv.lo {
                0
            } else {
                (((v.min(iv.hi) - iv.lo) / iv.step) as u64).min(iv.count() - 1)
            };
            t.push(signs[k as usize * c + ch]);
        }
    }
    let shared = (1..c).all(|ch| t[ch * r..(ch + 1) * r] == t[..r]);
    let tensor = if shared {
        Tensor::int(ElemType::B1, vec![1, r], t[..r].to_vec())
    } else {
        Tensor::int(ElemType::B1, vec![c, r], t)
    };
    Some((tensor, lo32))
}

/// `threshold(acc, t, dir)` with `t: i32 [C, 1]` (`[1, 1]` when all equal) and
/// `dir` left out when every direction is +1.
pub fn threshold_build(acc: Id, t: Vec<i32>, dir: Vec<i32>) -> Build {
    let c = t.len();
    let tt = if t.iter().all(|&v| v == t[0]) {
        Tensor::int(ElemType::I32, vec![1, 1], vec![t[0]])
    } else {
        Tensor::int(ElemType::I32, vec![c, 1], t)
    };
    let mut args = vec![Build::Class(acc), Build::Const(tt)];
    if dir.iter().any(|&d| d != 1) {
        args.push(Build::Const(Tensor::int(ElemType::I32, vec![c], dir)));
    }
    Build::Node(Op::Threshold, args)
}

/// `sign(batchnorm(acc, gamma, beta, mean, var)) -> threshold(acc, t, dir)`.
///
/// The chain of the module docs with the single step batchnorm: per channel,
/// `y(x) = (x - mean) / sqrt(var + eps) * gamma + beta` in f32 is evaluated on
/// every accumulator value (or bisected for large ranges, each of the four f32
/// steps being monotone: non-decreasing for gamma > 0, non-increasing for
/// gamma < 0); the +1 outputs are the high accumulators for gamma > 0
/// (`t = min{x : y(x) >= 0}`, dir +1), the low ones for gamma < 0
/// (`t = max{x : y(x) >= 0}`, dir -1); gamma = 0 gives the constant
/// `sign(beta)` (or +1 where `0 * inf` is NaN), a threshold always or never
/// passed.
pub fn bn_to_threshold(egraph: &BnnGraph, _class: Id, node: &ENode) -> Option<Build> {
    let (Op::Sign { .. }, [y]) = op_of(node)? else {
        return None;
    };
    fold_sign(egraph, *y, |s| {
        s.len() == 1 && matches!(s[0].op, Op::BatchNorm { .. })
    })
}

/// `sign(f_n(..f_1(acc))) -> table(acc, g, lo)` for an elementwise chain whose
/// sign is no threshold function of the accumulator.
///
/// Derivation: as in the module docs, `sign(y)` in channel c is the function
/// `g_c : V_c -> {-1, +1}` of the accumulator alone, evaluated here with the
/// interpreter on every value of `V_c` (so only ranges of at most
/// [`BRUTE_FORCE_LIMIT`] values). `table(acc, t, lo)` returns
/// `t[c, clamp(acc - lo, 0, R - 1)]`; with `lo = min_c lo_c` and
/// `R = max_c hi_c - lo + 1` every accumulator value is inside the table, and
/// entry `acc - lo` of row c is `g_c(acc)` for each `acc` in `V_c`. The other
/// entries are never read. Chains that are thresholds are left to
/// [`fold_chain_to_threshold`] (cheaper, and fusable the same way).
pub fn fold_chain_to_table(egraph: &BnnGraph, _class: Id, node: &ENode) -> Option<Build> {
    let (Op::Sign { .. }, [y]) = op_of(node)? else {
        return None;
    };
    for chain in find_chains(egraph, *y) {
        let Some(ranges) = acc_ranges(egraph, chain.acc) else {
            continue;
        };
        let elem = egraph[chain.acc].data.ty.elem;
        if ranges.iter().any(|r| r.count() > BRUTE_FORCE_LIMIT)
            || cached_thresholds(egraph, &chain.steps, elem, &ranges).is_some()
        {
            continue;
        }
        let budget = egraph.analysis.budget;
        let Some((t, lo)) = chain_table(&chain.steps, elem, &ranges, budget) else {
            continue;
        };
        return Some(Build::Node(
            Op::Table { lo },
            vec![Build::Class(chain.acc), Build::Const(t)],
        ));
    }
    None
}

/// `sign(f_n(..f_1(acc))) -> threshold(acc, t, dir)` for any elementwise chain
/// with per-channel constants (see the module docs).
pub fn fold_chain_to_threshold(egraph: &BnnGraph, _class: Id, node: &ENode) -> Option<Build> {
    let (Op::Sign { .. }, [y]) = op_of(node)? else {
        return None;
    };
    fold_sign(egraph, *y, |_| true)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use bnnc_ir::{Dim, TensorType};
    use bnnc_tests_free::*;

    /// A tiny deterministic generator (the tests crate is not a dependency).
    mod bnnc_tests_free {
        pub struct Rng(pub u64);
        impl Rng {
            pub fn next(&mut self) -> u64 {
                self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = self.0;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^ (z >> 31)
            }
            pub fn f32(&mut self, lo: f32, hi: f32) -> f32 {
                lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
            }
        }
    }

    fn f(v: &[f32]) -> Tensor {
        Tensor::f32(vec![v.len()], v.to_vec())
    }

    /// The threshold's tensors in class `id`: (t per channel, dir per channel).
    fn threshold_of(eg: &BnnGraph, id: Id, acc: Id, c: usize) -> (Vec<i32>, Vec<i32>) {
        let th = find_op(eg, id, "threshold");
        assert_eq!(th.len(), 1, "one threshold form");
        assert_eq!(th[0].children[0], eg.find(acc));
        let t = const_of(eg, th[0].children[1]).unwrap();
        let t = t.as_int().unwrap();
        let t: Vec<i32> = (0..c)
            .map(|k| t[if t.len() == 1 { 0 } else { k }])
            .collect();
        let dir = match th[0].children.get(2) {
            Some(&d) => const_of(eg, d).unwrap().as_int().unwrap().to_vec(),
            None => vec![1; c],
        };
        (t, dir)
    }

    /// Checks the threshold against the interpreter's batchnorm + sign on every
    /// value of [-k, k] (all integers, not just the attainable parity).
    fn brute_check(params: [&Tensor; 4], eps: f32, k: i64, t: &[i32], dir: &[i32]) {
        let c = t.len();
        let vals: Vec<i32> = (-k..=k).map(|v| v as i32).collect();
        let rows = vals.len();
        let x = Tensor::int(
            ElemType::I32,
            vec![rows, c],
            vals.iter()
                .flat_map(|&v| std::iter::repeat_n(v, c))
                .collect(),
        );
        let y = bnnc_runtime::ops::elementwise::batchnorm(
            &x, params[0], params[1], params[2], params[3], eps,
        )
        .unwrap();
        let s = bnnc_runtime::ops::elementwise::sign(&y).unwrap();
        let th = Tensor::int(ElemType::I32, vec![c, 1], t.to_vec());
        let d = Tensor::int(ElemType::I32, vec![c], dir.to_vec());
        let got = bnnc_runtime::ops::quant::threshold(&x, &th, Some(&d)).unwrap();
        // Only the attainable parity must agree; check it.
        for (i, (a, b)) in s
            .as_int()
            .unwrap()
            .iter()
            .zip(got.as_int().unwrap().iter())
            .enumerate()
        {
            let v = vals[i / c] as i64;
            if (v - k).rem_euclid(2) == 0 {
                assert_eq!(a, b, "x = {v}, channel {}", i % c);
            }
        }
    }

    fn bn_graph(k: usize, params: [Tensor; 4], eps: f32) -> (BnnGraph, Id, Id) {
        let c = params[0].numel();
        let mut eg = egraph(&[TensorType::new(
            ElemType::B1,
            vec![Dim::Batch, Dim::Fixed(k)],
        )]);
        let x = input(&mut eg, 0);
        let mut wv = Vec::new();
        for i in 0..c * k {
            wv.push(if (i * 7 + i / 3) % 5 < 2 { -1 } else { 1 });
        }
        let w = konst(&mut eg, Tensor::int(ElemType::B1, vec![c, k], wv));
        let acc = op(&mut eg, Op::Dense, &[x, w]);
        let ps: Vec<Id> = params.into_iter().map(|p| konst(&mut eg, p)).collect();
        let n = op(
            &mut eg,
            Op::BatchNorm { eps },
            &[acc, ps[0], ps[1], ps[2], ps[3]],
        );
        let s = op(&mut eg, Op::Sign { estimator: None }, &[n]);
        (eg, acc, s)
    }

    #[test]
    fn bn_to_threshold() {
        // gamma > 0, < 0, = 0 (beta >= 0 and < 0), NaN-producing zero variance.
        let gamma = f(&[0.5, -1.25, 0.0, 0.0, 2.0, -0.75]);
        let beta = f(&[0.1, -0.3, 0.2, -0.2, 0.0, 0.0]);
        let mean = f(&[3.0, -2.5, 1.0, 1.0, 0.5, 4.0]);
        let var = f(&[4.0, 0.25, 1.0, 1.0, 0.0, 2.0]);
        let eps = 1e-5;
        let k = 25;
        let params = [gamma, beta, mean, var];
        let (eg, acc, s) = bn_graph(k, params.clone(), eps);
        let eg = run_rule(eg, "bn_to_threshold");
        let (t, dir) = threshold_of(&eg, s, acc, 6);
        assert_eq!(dir, [1, -1, 1, 1, 1, -1]);
        // gamma = 0: beta >= 0 always passes, beta < 0 never does.
        assert_eq!(t[2], -(k as i32));
        assert_eq!(t[3], k as i32 + 1);
        brute_check(
            [&params[0], &params[1], &params[2], &params[3]],
            eps,
            k as i64,
            &t,
            &dir,
        );
    }

    #[test]
    fn bn_to_threshold_random_stats() {
        let mut rng = Rng(42);
        for round in 0..20 {
            let c = 16;
            let k = 1 + round * 7;
            let gamma: Vec<f32> = (0..c)
                .map(|_| match rng.next() % 5 {
                    0 => 0.0,
                    1 | 2 => rng.f32(-2.0, -0.01),
                    _ => rng.f32(0.01, 2.0),
                })
                .collect();
            let beta: Vec<f32> = (0..c).map(|_| rng.f32(-2.0, 2.0)).collect();
            let mean: Vec<f32> = (0..c).map(|_| rng.f32(-(k as f32), k as f32)).collect();
            let var: Vec<f32> = (0..c).map(|_| rng.f32(0.0, 30.0)).collect();
            let eps = [0.0, 1e-5, 1e-3][round % 3];
            let params = [f(&gamma), f(&beta), f(&mean), f(&var)];
            let (eg, acc, s) = bn_graph(k, params.clone(), eps);
            let eg = run_rule(eg, "bn_to_threshold");
            let (t, dir) = threshold_of(&eg, s, acc, c);
            brute_check(
                [&params[0], &params[1], &params[2], &params[3]],
                eps,
                k as i64,
                &t,
                &dir,
            );
        }
    }

    /// An e-graph with a `b1 [N, k]` input and its dense with the `b1`
    /// weights `wv` (`[wv.len() / k, k]`); returns the graph and the
    /// accumulator.
    fn binary_dense(k: usize, wv: Vec<i32>) -> (BnnGraph, Id) {
        let mut eg = egraph(&[TensorType::new(
            ElemType::B1,
            vec![Dim::Batch, Dim::Fixed(k)],
        )]);
        let x = input(&mut eg, 0);
        let c = wv.len() / k;
        let w = konst(&mut eg, Tensor::int(ElemType::B1, vec![c, k], wv));
        let acc = op(&mut eg, Op::Dense, &[x, w]);
        (eg, acc)
    }

    #[test]
    fn fold_chain_to_threshold() {
        // sign(prelu(add(mul(acc, s), b), alpha)) with alpha >= 0 folds; a
        // negative prelu slope whose sign flips twice does not.
        let (k, c) = (9usize, 3usize);
        let (mut eg, acc) = binary_dense(k, vec![1; c * k]);
        let s = konst(&mut eg, f(&[0.5, -2.0, 0.25]));
        let b = konst(&mut eg, f(&[1.0, 0.5, -1.5]));
        let alpha = konst(&mut eg, f(&[0.1, 0.5, 0.2]));
        let m = op(&mut eg, Op::Mul, &[acc, s]);
        let a = op(&mut eg, Op::Add, &[m, b]);
        let p = op(&mut eg, Op::Prelu, &[a, alpha]);
        let sp = op(&mut eg, Op::Sign { estimator: None }, &[p]);
        // Two switches: sign(prelu(acc + 1, -1) - 2) = sign(|acc + 1| - 2) is +1
        // for acc <= -3, -1 for acc = -1, +1 for acc >= 1.
        let one = konst(&mut eg, f(&[1.0, 1.0, 1.0]));
        let neg = konst(&mut eg, f(&[-1.0, -1.0, -1.0]));
        let two = konst(&mut eg, f(&[2.0, 2.0, 2.0]));
        let a1 = op(&mut eg, Op::Add, &[acc, one]);
        let p1 = op(&mut eg, Op::Prelu, &[a1, neg]);
        let s1 = op(&mut eg, Op::Sub, &[p1, two]);
        let bad = op(&mut eg, Op::Sign { estimator: None }, &[s1]);
        let eg = run_rule(eg, "fold_chain_to_threshold");
        let (t, dir) = threshold_of(&eg, sp, acc, c);
        // Channel 0: 0.5*acc + 1 >= 0 iff acc >= -2 (acc odd: -1); prelu keeps
        // the sign. Channel 1: -2*acc + 0.5 >= 0 iff acc <= 0.25 (odd: -1).
        // Channel 2: 0.25*acc - 1.5 >= 0 iff acc >= 6 (odd: 7).
        assert_eq!(t, [-1, -1, 7]);
        assert_eq!(dir, [1, -1, 1]);
        assert!(find_op(&eg, bad, "threshold").is_empty());
    }

    #[test]
    fn fold_chain_to_table() {
        // sign(prelu(acc + b, alpha) - d): with alpha < 0 the value is
        // |.|-shaped, so the sign switches twice (no threshold); with alpha > 0
        // it is a threshold and the table rule leaves it alone.
        let (k, c) = (9usize, 3usize);
        let wv: Vec<i32> = (0..c * k)
            .map(|i| if (i * 5 + 1) % 3 == 0 { -1 } else { 1 })
            .collect();
        let (mut eg, acc) = binary_dense(k, wv.clone());
        let b = konst(&mut eg, f(&[1.0, -0.5, 2.0]));
        let alpha = konst(&mut eg, f(&[-1.0, -0.25, -3.0]));
        let d = konst(&mut eg, f(&[2.0, 0.5, 4.5]));
        let a = op(&mut eg, Op::Add, &[acc, b]);
        let p = op(&mut eg, Op::Prelu, &[a, alpha]);
        let y = op(&mut eg, Op::Sub, &[p, d]);
        let s = op(&mut eg, Op::Sign { estimator: None }, &[y]);
        let pos = konst(&mut eg, f(&[0.5, 0.5, 0.5]));
        let p2 = op(&mut eg, Op::Prelu, &[a, pos]);
        let s2 = op(&mut eg, Op::Sign { estimator: None }, &[p2]);
        let eg = run_rule(eg, "fold_chain_to_table");
        assert!(find_op(&eg, s2, "table").is_empty(), "a threshold chain");
        let tb = find_op(&eg, s, "table");
        assert_eq!(tb.len(), 1);
        assert_eq!(tb[0].children[0], eg.find(acc));
        let Some(Op::Table { lo }) = tb[0].graph_op() else {
            panic!("not a table")
        };
        let t = const_of(&eg, tb[0].children[1]).unwrap();
        assert_eq!(*lo, -(k as i32));
        assert_eq!(t.dims, [c, 2 * k + 1]);
        // The table op on every input equals the chain (interpreter on both).
        let mut rng = 7u64;
        let n = 64;
        let xs: Vec<i32> = (0..n * k)
            .map(|_| {
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                if (rng >> 33).is_multiple_of(2) {
                    1
                } else {
                    -1
                }
            })
            .collect();
        let xt = Tensor::int(ElemType::B1, vec![n, k], xs);
        let wt = Tensor::int(ElemType::B1, vec![c, k], wv);
        let acc_v = bnnc_runtime::ops::dot::dense(&xt, &wt).unwrap();
        let ev = |op: Op, args: &[&Tensor]| bnnc_runtime::ops::eval(&op, args).unwrap();
        let bt = f(&[1.0, -0.5, 2.0]);
        let at = f(&[-1.0, -0.25, -3.0]);
        let dt = f(&[2.0, 0.5, 4.5]);
        let chain = ev(
            Op::Sign { estimator: None },
            &[&ev(
                Op::Sub,
                &[&ev(Op::Prelu, &[&ev(Op::Add, &[&acc_v, &bt]), &at]), &dt],
            )],
        );
        let tabled = ev(Op::Table { lo: *lo }, &[&acc_v, &t]);
        assert_eq!(chain, tabled);
        // Each channel really switches twice over its range (so the table is
        // needed): channel 0 is sign(|acc + 1| - 2) for odd acc.
        let row0: Vec<i32> = t.as_int().unwrap()[..2 * k + 1].to_vec();
        let at_acc = |v: i32| row0[(v + k as i32) as usize];
        assert_eq!(
            [at_acc(-5), at_acc(-1), at_acc(1), at_acc(3)],
            [1, -1, 1, 1]
        );
    }

    #[test]
    fn large_ranges_bisect() {
        // i32 input: 2^32 values, batchnorm is monotone and finite: bisect.
        let mut eg = egraph(&[TensorType::new(
            ElemType::I32,
            vec![Dim::Batch, Dim::Fixed(2)],
        )]);
        let x = input(&mut eg, 0);
        let ps = [
            f(&[1.0, -3.0]),
            f(&[0.0, 1.0]),
            f(&[1000.5, -7.0]),
            f(&[1.0, 1.0]),
        ];
        let ids: Vec<Id> = ps.iter().map(|p| konst(&mut eg, p.clone())).collect();
        let n = op(
            &mut eg,
            Op::BatchNorm { eps: 0.0 },
            &[x, ids[0], ids[1], ids[2], ids[3]],
        );
        let s = op(&mut eg, Op::Sign { estimator: None }, &[n]);
        let eg = run_rule(eg, "bn_to_threshold");
        let (t, dir) = threshold_of(&eg, s, x, 2);
        assert_eq!(dir, [1, -1]);
        // Check near the switch points with the interpreter.
        for (ch, around) in [(0usize, t[0]), (1, t[1])] {
            for v in around - 3..=around + 3 {
                let xv = Tensor::int(ElemType::I32, vec![1, 2], vec![v, v]);
                let y = bnnc_runtime::ops::elementwise::batchnorm(
                    &xv, &ps[0], &ps[1], &ps[2], &ps[3], 0.0,
                )
                .unwrap();
                let want = bnnc_runtime::ops::elementwise::sign(&y)
                    .unwrap()
                    .as_int()
                    .unwrap()[ch];
                let pass = if dir[ch] == 1 { v >= t[ch] } else { v <= t[ch] };
                assert_eq!(want, if pass { 1 } else { -1 }, "channel {ch} x {v}");
            }
        }
    }
}
