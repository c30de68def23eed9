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

use super::threshold::{
    acc_ranges, cached_thresholds, chain_key, eval_chain, find_chains, threshold_build, Step,
};
use super::{nodes, op_of, Build};
use crate::opt::analysis::{chan_count, infer_type, is_per_channel, Affine, BnnGraph, Interval};
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
        let Some(ranges) = acc_ranges(egraph, chain.acc) else {
            continue;
        };
        let elem = egraph[chain.acc].data.ty.elem;
        if let Some((t, dir)) = cached_thresholds(egraph, &chain.steps, elem, &ranges) {
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

/// Most `accumulator value x candidate` pairs evaluated for one chain by
/// [`collapse_affine_epilogue`] (beyond it the rule does not try).
const AFFINE_WORK_LIMIT: u64 = 1 << 24;

/// Scale and offset candidates per channel: 5 scales (the f32 nearest the
/// exact product and 1, 2 ulps either side) times 6 offsets (-0.0, then the
/// nearest f32 to the exact offset and 1, 2 ulps either side).
const ULP_STEPS: [i32; 5] = [0, -1, 1, -2, 2];

/// `x` moved by `k` ulps (finite values only; others stay).
fn ulps(x: f32, k: i32) -> f32 {
    if !x.is_finite() || k == 0 {
        return x;
    }
    let mut y = x;
    for _ in 0..k.unsigned_abs() {
        y = if k > 0 { y.next_up() } else { y.next_down() };
    }
    y
}

/// The step ops that are affine maps of the running value in exact
/// arithmetic, and their cost weight (batchnorm's four f32 operations).
fn affine_weight(op: &Op) -> Option<u32> {
    match op {
        Op::Mul | Op::Add | Op::Sub | Op::Dequantize { .. } => Some(1),
        Op::BatchNorm { .. } => Some(4),
        _ => None,
    }
}

/// Per channel, the exact (f64) `(A, B)` with `steps(x) = A*x + B` in real
/// arithmetic.
fn affine_coeffs(steps: &[Step], c: usize) -> Option<Vec<(f64, f64)>> {
    let mut ab = vec![(1.0f64, 0.0f64); c];
    for s in steps {
        let vals: Vec<Option<Vec<f32>>> = s
            .consts
            .iter()
            .map(|t| t.as_ref().map(|t| t.to_f32_vec()))
            .collect();
        let k = |i: usize, ch: usize| -> Option<f64> {
            let v = vals.get(i)?.as_ref()?;
            Some(*v.get(if v.len() == 1 { 0 } else { ch })? as f64)
        };
        for (ch, e) in ab.iter_mut().enumerate() {
            let (a, b) = *e;
            *e = match (&s.op, s.pos) {
                (Op::Mul, p) => {
                    let m = k(1 - p, ch)?;
                    (a * m, b * m)
                }
                (Op::Add, p) => (a, b + k(1 - p, ch)?),
                (Op::Sub, 0) => (a, b - k(1, ch)?),
                (Op::Sub, _) => (-a, k(0, ch)? - b),
                (Op::BatchNorm { eps }, 0) => {
                    let (g, be, m, v) = (k(1, ch)?, k(2, ch)?, k(3, ch)?, k(4, ch)?);
                    let d = (v + *eps as f64).sqrt();
                    (a * g / d, (b - m) * g / d + be)
                }
                (Op::Dequantize { scale, zero_point }, 0) => {
                    (a * *scale as f64, (b - *zero_point as f64) * *scale as f64)
                }
                _ => return None,
            };
        }
    }
    Some(ab)
}

/// Per channel a `(scale, offset)` whose `acc * scale + offset` (f32, as the
/// interpreter computes `add(mul(acc, s), b)`) equals `steps(acc)` bit for bit
/// on every value of the channel's range; `None` if some channel has none.
fn affine_epilogue(steps: &[Step], elem: ElemType, ranges: &[Interval]) -> Option<Affine> {
    let c = ranges.len();
    let rows = ranges.iter().map(|r| r.count()).max()?;
    let m = ULP_STEPS.len() * (ULP_STEPS.len() + 1);
    if rows.saturating_mul(c as u64).saturating_mul(m as u64) > AFFINE_WORK_LIMIT {
        return None;
    }
    let ab = affine_coeffs(steps, c)?;
    let rows = rows as usize;
    let value = |ch: usize, r: usize| ranges[ch].value((r as u64).min(ranges[ch].count() - 1));
    let data: Vec<i32> = (0..rows)
        .flat_map(|r| (0..c).map(move |ch| value(ch, r) as i32))
        .collect();
    let want = eval_chain(steps, elem, rows, c, data)?;
    let want = want.as_f32()?;
    // Candidate j of channel ch sits in column ch*m + j.
    let mut sv = Vec::with_capacity(c * m);
    let mut bv = Vec::with_capacity(c * m);
    for &(a, b) in &ab {
        let (s0, b0) = (a as f32, b as f32);
        let offsets = std::iter::once(-0.0).chain(ULP_STEPS.iter().map(|&k| ulps(b0, k)));
        for b in offsets {
            for &k in &ULP_STEPS {
                sv.push(ulps(s0, k));
                bv.push(b);
            }
        }
    }
    let xs: Vec<i32> = (0..rows)
        .flat_map(|r| (0..c * m).map(move |col| value(col / m, r) as i32))
        .collect();
    let x = Tensor::int(elem, vec![rows, c * m], xs);
    let prod =
        bnnc_runtime::ops::eval(&Op::Mul, &[&x, &Tensor::f32(vec![c * m], sv.clone())]).ok()?;
    let got =
        bnnc_runtime::ops::eval(&Op::Add, &[&prod, &Tensor::f32(vec![c * m], bv.clone())]).ok()?;
    let got = got.as_f32()?;
    let same = |p: f32, q: f32| p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan());
    let mut scale = Vec::with_capacity(c);
    let mut offset = Vec::with_capacity(c);
    for (ch, iv) in ranges.iter().enumerate() {
        let n = iv.count() as usize;
        let j = (0..m).find(|&j| {
            let col = ch * m + j;
            (0..n).all(|r| same(got[r * c * m + col], want[r * c + ch]))
        })?;
        scale.push(sv[ch * m + j]);
        offset.push(bv[ch * m + j]);
    }
    Some((scale, offset))
}

/// XNOR-Net's real-valued epilogue in one multiply and one add per channel:
/// a chain of `mul`/`add`/`sub` by per-channel constants, `batchnorm` and
/// `dequantize` over an integer accumulator, whose result stays f32 ->
/// `add(mul(acc, s), b)` (or just `mul(acc, s)` / `add(acc, b)`), when that is
/// exact on the accumulator's whole range.
///
/// XNOR-Net (Rastegari et al., 2016) rescales a binary dot by the per-channel
/// weight scale alpha and the input scale K: `(acc * alpha) * k`. In real
/// arithmetic every step is affine, so the chain is `A_c * acc + B_c` per
/// channel; but f32 rounds after every step, and `(acc * alpha) * k` (two
/// roundings) is in general not the f32 `acc * (alpha * k)` (one). So nothing
/// is assumed: per channel the rule proposes scales within 2 ulps of f32(A_c)
/// and offsets within 2 ulps of f32(B_c) (or -0.0), and keeps the first pair
/// whose `add(mul(acc, s), b)`, evaluated by the reference interpreter (i32 to
/// f32 conversion, rounding, signed zeros, NaN), equals the chain's value bit
/// for bit on every accumulator value of the channel's range (at most 2^16
/// values, see [`crate::opt::analysis::Interval`]). If some channel has no such
/// pair the rule does not fire.
///
/// It fires where the collapse is exact: a scale that is a power of two
/// (DIR-Net's shift scales; multiplying by 2^e is exact in f32 unless it
/// overflows or goes subnormal, so `(acc * alpha) * 2^e = acc * (alpha * 2^e)`,
/// which the check confirms for the actual range), scales of 1, offsets that
/// add exactly, and chains whose roundings agree on the whole range. `b =
/// -0.0` is the identity of f32 addition (`x + -0.0 = x` for every x, -0.0 and
/// NaN included), so a channel without offset uses it, and when every channel
/// does the `add` is left out; `s = 1` is exact (`acc * 1.0` is the converted
/// accumulator), so when every channel has it the `mul` is left out. The rule
/// only fires when the result is fewer operations than the chain (batchnorm
/// counts 4).
pub fn collapse_affine_epilogue(egraph: &BnnGraph, class: Id, node: &ENode) -> Option<Build> {
    let (op, _) = op_of(node)?;
    affine_weight(op)?;
    if egraph[class].data.ty.elem != ElemType::F32 {
        return None;
    }
    for chain in find_chains(egraph, class) {
        let weight: Option<u32> = chain.steps.iter().map(|s| affine_weight(&s.op)).sum();
        let Some(weight) = weight else { continue };
        if weight < 2 {
            continue;
        }
        let Some(ranges) = acc_ranges(egraph, chain.acc) else {
            continue;
        };
        let elem = egraph[chain.acc].data.ty.elem;
        let key = chain_key(&chain.steps, elem, &ranges);
        let cache = &egraph.analysis.affine_cache;
        let cached = cache.lock().expect("lock").get(&key).cloned();
        let found = match cached {
            Some(r) => r,
            None => {
                let r = affine_epilogue(&chain.steps, elem, &ranges);
                cache.lock().expect("lock").insert(key, r.clone());
                r
            }
        };
        let Some((scale, offset)) = found else {
            continue;
        };
        let no_add = offset.iter().all(|b| b.to_bits() == (-0.0f32).to_bits());
        let no_mul = scale.iter().all(|&s| s == 1.0);
        let ops = u32::from(!no_add) + u32::from(!no_mul);
        if ops >= weight {
            continue;
        }
        let c = scale.len();
        let per_channel = |v: Vec<f32>| {
            if v.iter().all(|x| x.to_bits() == v[0].to_bits()) {
                Tensor::f32(vec![1], vec![v[0]])
            } else {
                Tensor::f32(vec![c], v)
            }
        };
        let mut y = Build::Class(chain.acc);
        if !no_mul || no_add {
            y = Build::Node(Op::Mul, vec![y, Build::Const(per_channel(scale))]);
        }
        if !no_add {
            y = Build::Node(Op::Add, vec![y, Build::Const(per_channel(offset))]);
        }
        return Some(y);
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
                // The combined constant broadcasts the two: no larger than
                // the budget allows.
                let tys = [
                    TensorType::fixed(c1.elem, &c1.dims),
                    TensorType::fixed(c2.elem, &c2.dims),
                ];
                match infer_type(&cop, &[&tys[0], &tys[1]]) {
                    Ok(t) if egraph.analysis.affordable(t.numel(1) as u64) => {}
                    _ => continue,
                }
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
        assert_eq!(t.as_int().unwrap()[..], [3, -1, -5]);
        assert_eq!(dir.as_int().unwrap()[..], [1, -1, 1]);
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

    /// A `b1 x b1` dense of length k (accumulator in {-k, -k + 2, .., k})
    /// with 3 outputs: (graph, acc).
    fn dense(k: usize) -> (crate::opt::analysis::BnnGraph, egg::Id) {
        let mut eg = egraph(&[TensorType::new(
            ElemType::B1,
            vec![Dim::Batch, Dim::Fixed(k)],
        )]);
        let x = input(&mut eg, 0);
        let w = konst(
            &mut eg,
            Tensor::int(ElemType::B1, vec![3, k], vec![1; 3 * k]),
        );
        let acc = op(&mut eg, Op::Dense, &[x, w]);
        (eg, acc)
    }

    #[test]
    fn collapse_affine_epilogue() {
        // XNOR-Net: (acc * alpha) * k with k a power of two collapses into one
        // multiply by alpha * k (exact: scaling by 2^-2 does not round).
        let (mut eg, acc) = dense(301);
        let alpha = f(&[0.066_438_89, -0.024_400_018, 0.050_453_33]);
        let al = konst(&mut eg, alpha.clone());
        let k = konst(&mut eg, f(&[0.25]));
        let ya = op(&mut eg, Op::Mul, &[acc, al]);
        let y = op(&mut eg, Op::Mul, &[ya, k]);
        // batchnorm whose steps are exact on [-301, 301]:
        // ((x - 3) / 1) * 2 + 0.5 = 2x - 5.5.
        let bn: Vec<egg::Id> = [[2.0; 3], [0.5; 3], [3.0; 3], [1.0; 3]]
            .into_iter()
            .map(|t| konst(&mut eg, f(&t)))
            .collect();
        let n = op(
            &mut eg,
            Op::BatchNorm { eps: 0.0 },
            &[acc, bn[0], bn[1], bn[2], bn[3]],
        );
        // A scale that is not a power of two: (acc * 0.1) * 0.3 rounds twice,
        // and no scale near 0.03 gives the same f32 for every accumulator.
        let a1 = konst(&mut eg, f(&[0.1]));
        let k3 = konst(&mut eg, f(&[0.3]));
        let z1 = op(&mut eg, Op::Mul, &[acc, a1]);
        let z = op(&mut eg, Op::Mul, &[z1, k3]);
        let eg = run_rule(eg, "collapse_affine_epilogue");

        let one = find_op(&eg, y, "mul");
        let folded: Vec<_> = one
            .iter()
            .filter(|m| m.children[0] == eg.find(acc))
            .collect();
        assert_eq!(folded.len(), 1);
        let s = const_of(&eg, folded[0].children[1]).unwrap();
        let want: Vec<f32> = alpha.as_f32().unwrap().iter().map(|a| a * 0.25).collect();
        assert_eq!(s.as_f32().unwrap(), want);

        let adds = find_op(&eg, n, "add");
        assert_eq!(adds.len(), 1);
        assert_eq!(
            const_of(&eg, adds[0].children[1])
                .unwrap()
                .as_f32()
                .unwrap(),
            [-5.5]
        );
        let inner = find_op(&eg, adds[0].children[0], "mul");
        assert_eq!(inner[0].children[0], eg.find(acc));
        assert_eq!(
            const_of(&eg, inner[0].children[1])
                .unwrap()
                .as_f32()
                .unwrap(),
            [2.0]
        );

        assert!(find_op(&eg, z, "mul")
            .iter()
            .all(|m| m.children[0] != eg.find(acc)));
        // Why: some accumulator rounds differently.
        let s = 0.1f32 * 0.3f32;
        assert!((-301..=301)
            .any(|a: i32| ((a as f32 * 0.1) * 0.3).to_bits() != (a as f32 * s).to_bits()));
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
        assert_eq!(c.as_int().unwrap()[..], [2, 5i32.wrapping_sub(i32::MAX)]);
    }
}
