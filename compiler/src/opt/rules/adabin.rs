//! AdaBin affine binary dots: a float `conv2d` or `dense` whose input is an
//! elementwise affine of a `b1` value and whose constant weight takes at most
//! two values per output channel becomes integer binary dots plus per-channel
//! integer corrections, dequantized by one power-of-two scale.
//!
//! AdaBin (Tu, Chen, Ren and Wang, 2022, "AdaBin: Improving Binary Neural
//! Networks with Adaptive Binary Sets", ECCV) binarizes activations to the set
//! `{b1, b2}` as `a_b = alpha * sign(a - beta) + beta` (alpha, beta scalars per
//! layer) and weights to two values per output channel,
//! `w_b = alpha_w * sign(w - beta_w) + beta_w`, and computes a layer as one
//! popcount dot plus corrections (`s`, `t` the sign patterns, n the length):
//!
//! ```text
//! sum a_b w_b = alpha alpha_w (s . t) + alpha beta_w sum(s)
//!             + beta alpha_w sum(t) + n beta beta_w
//! ```
//!
//! That identity holds in real arithmetic; the interpreter sums f32 products
//! with rounding, so [`affine_binary_dot`] uses it only where it proves that
//! every rounding of the float sum is exact.

use bnnc_ir::{Conv2dAttrs, Dim, ElemType, Op, PadValue, Tensor, TensorType};
use egg::Id;

use super::threshold::{eval_chain, find_chains};
use super::{op_of, Build};
use crate::opt::analysis::{infer_type, BnnGraph};
use crate::opt::lang::ENode;

/// Smallest exponent of the dequantize scale `u / 4`: the scale stays a normal
/// f32 (`>= 2^-126`).
const MIN_SCALE_EXP: i32 = -126;

/// The exponent `e` of the lowest set bit of a finite nonzero f32: `v = m * 2^e`
/// with `m` an odd integer.
fn low_exp(v: f32) -> i32 {
    let bits = v.to_bits();
    let exp = ((bits >> 23) & 0xff) as i32;
    let frac = bits & 0x7f_ffff;
    // Normal: v = (2^23 + frac) * 2^(exp - 150); subnormal: frac * 2^-149.
    let (mant, e0) = if exp == 0 {
        (frac, -149)
    } else {
        (frac | 0x80_0000, exp - 150)
    };
    e0 + mant.trailing_zeros() as i32
}

/// The `b1` class `s` and the two f32 values `[a(-1), a(+1)]` of an elementwise
/// chain from `s` to the f32 class `x`, evaluated with the reference
/// interpreter on `s = -1` and `s = +1` in every channel. `None` unless some
/// chain gives the same finite pair in every channel (values compared as
/// numbers, so +0.0 and -0.0 count as one: only their sum matters, and a zero
/// product adds nothing to it).
pub fn binary_affine_input(egraph: &BnnGraph, x: Id) -> Option<(Id, [f32; 2])> {
    let c = egraph[x].data.ty.shape.last()?.fixed()?;
    if c == 0 || !egraph.analysis.affordable((c as u64).saturating_mul(2)) {
        return None;
    }
    for chain in find_chains(egraph, x) {
        if egraph[chain.acc].data.ty.elem != ElemType::B1 {
            continue;
        }
        let mut data = vec![-1; c];
        data.extend(std::iter::repeat_n(1, c));
        let Some(t) = eval_chain(&chain.steps, ElemType::B1, 2, c, data) else {
            continue;
        };
        let Some(v) = t.as_f32() else { continue };
        let (lo, hi) = (v[0], v[c]);
        if lo.is_finite()
            && hi.is_finite()
            && v[..c].iter().all(|&a| a == lo)
            && v[c..].iter().all(|&a| a == hi)
        {
            return Some((chain.acc, [lo, hi]));
        }
    }
    None
}

/// The integer form of one layer (see [`affine_binary_dot`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// `u = 2^u_exp`: every product is an integer multiple of u.
    pub u_exp: i32,
    /// Per output channel `[C0, C1, C2, C3]`, in units of `u / 4`.
    pub coef: Vec<[i64; 4]>,
    /// The weights' sign pattern, the weight's shape flattened: +1 where the
    /// weight is its channel's larger value `p_o`, -1 where it is `q_o`.
    pub t: Vec<i32>,
}

/// The plan for activations `a = [a(-1), a(+1)]` and weights `w` (`o` rows of
/// length `k`, the dot length), or `None` when a channel has more than two
/// values, a product is not finite, every product is zero, the scale `u / 4`
/// would be below `2^-126`, or the bound `k * max|P| < 2^24 u` (or
/// `k * max|P| <= f32::MAX`) fails.
pub fn plan(a: [f32; 2], w: &[f32], o: usize, k: usize) -> Option<Plan> {
    if o == 0 || k == 0 || w.len() != o.checked_mul(k)? {
        return None;
    }
    // Per channel the values [q, p] (p >= q) and the products P[s][t]
    // (index 0 for -1, 1 for +1) = fl(a_s * w_t).
    let mut prods = Vec::with_capacity(o);
    let mut t = Vec::with_capacity(w.len());
    for row in w.chunks(k) {
        let (mut p, mut q) = (row[0], row[0]);
        for &v in row {
            if v.is_nan() {
                return None;
            }
            if v != p && v != q {
                if p != q {
                    return None;
                }
                p = p.max(v);
                q = q.min(v);
            }
        }
        t.extend(row.iter().map(|&v| if v == p { 1 } else { -1 }));
        let wv = [q, p];
        prods.push([[a[0] * wv[0], a[0] * wv[1]], [a[1] * wv[0], a[1] * wv[1]]]);
    }
    let all = prods.iter().flatten().flatten();
    if !all.clone().all(|v| v.is_finite()) {
        return None;
    }
    let u_exp = all.filter(|&&v| v != 0.0).map(|&v| low_exp(v)).min()?;
    if u_exp - 2 < MIN_SCALE_EXP {
        return None;
    }
    let inv_u = 2f64.powi(-u_exp);
    let mut coef = Vec::with_capacity(o);
    for pr in &prods {
        let mut qv = [[0i64; 2]; 2];
        let mut qmax = 0i64;
        for s in 0..2 {
            for tt in 0..2 {
                // Exact: a power-of-two scaling of an f32 in f64's range.
                let f = pr[s][tt] as f64 * inv_u;
                if f.abs() >= (1u64 << 24) as f64 || f.fract() != 0.0 {
                    return None;
                }
                qv[s][tt] = f as i64;
                qmax = qmax.max(qv[s][tt].abs());
            }
        }
        let bound = (k as i64).checked_mul(qmax)?;
        if bound >= 1 << 24 || bound as f64 * 2f64.powi(u_exp) > f32::MAX as f64 {
            return None;
        }
        let (mm, mp, pm, pp) = (qv[0][0], qv[0][1], qv[1][0], qv[1][1]);
        coef.push([
            pp + pm + mp + mm,
            pp + pm - mp - mm,
            pp - pm + mp - mm,
            pp - pm - mp + mm,
        ]);
    }
    Some(Plan { u_exp, coef, t })
}

/// The geometry of the dot: for `dense`, one "position" with `k` taps; for a
/// conv, the output extent and which taps of each position are in bounds.
enum Geometry {
    Dense {
        k: usize,
    },
    Conv {
        attrs: Conv2dAttrs,
        /// Input H, W, C; kernel kh, kw; output OH, OW.
        h: usize,
        w: usize,
        c: usize,
        kh: usize,
        kw: usize,
        oh: usize,
        ow: usize,
    },
}

impl Geometry {
    fn dot_len(&self) -> usize {
        match self {
            Geometry::Dense { k } => *k,
            Geometry::Conv { c, kh, kw, .. } => kh * kw * c,
        }
    }

    /// The constant term `E = C0 n + C2 Wsum` of the derivation (step 5) per
    /// output position and channel, as an i32 tensor: `[O]` when it is the
    /// same at every position (always for dense), else `[OH, OW, O]`. `n` is
    /// the number of in-bounds products of the position and `Wsum` the sum of
    /// `t` over them. Taps are in bounds exactly as the interpreter decides:
    /// input row `y*sh + i*dh - top` in `[0, H)`, likewise columns.
    ///
    /// The work is proportional to the weights, never to the output's extent
    /// or the padding: along each axis the in-bounds kernel rows of a position
    /// form one range that changes only where a tap enters or leaves the input
    /// ([`tap_runs`]: at most `2 kh + 1` runs of positions), and the sum of `t`
    /// over a rectangle of taps comes from prefix sums. Only a
    /// position-dependent E is written out, and only when its `OH * OW * O`
    /// elements are at most `limit`. `None` when it is larger, or a value
    /// leaves i32.
    fn corrections(&self, t: &[i32], coef: &[[i64; 4]], limit: u64) -> Option<Tensor> {
        let o = coef.len();
        let e_of = |cf: &[i64; 4], n: i64, wsum: i64| -> Option<i32> {
            let v = cf[0]
                .checked_mul(n)?
                .checked_add(cf[2].checked_mul(wsum)?)?;
            i32::try_from(v).ok()
        };
        match self {
            Geometry::Dense { k } => {
                let mut e = Vec::with_capacity(o);
                for (cf, row) in coef.iter().zip(t.chunks(*k)) {
                    let wsum = row.iter().map(|&v| v as i64).sum();
                    e.push(e_of(cf, *k as i64, wsum)?);
                }
                Some(Tensor::int(ElemType::I32, vec![o], e))
            }
            Geometry::Conv {
                attrs,
                h,
                w,
                c,
                kh,
                kw,
                oh,
                ow,
            } => {
                let [sh, sw] = attrs.stride;
                let [dh, dw] = attrs.dilation;
                let (top, left) = (attrs.padding[0], attrs.padding[1]);
                let ys = tap_runs(*oh, *kh, sh, dh, top, *h)?;
                let xs = tap_runs(*ow, *kw, sw, dw, left, *w)?;
                // pre[o][i][j]: the sum of t over taps [0, i) x [0, j) of
                // output channel o (each tap summed over the input channels).
                let (ph, pw) = (kh + 1, kw + 1);
                let mut pre = vec![0i64; o.checked_mul(ph * pw)?];
                for oc in 0..o {
                    for i in 0..*kh {
                        for j in 0..*kw {
                            let at = ((oc * kh + i) * kw + j) * c;
                            let tap: i64 = t[at..at + c].iter().map(|&v| v as i64).sum();
                            let p = |i: usize, j: usize| oc * ph * pw + i * pw + j;
                            pre[p(i + 1, j + 1)] =
                                tap + pre[p(i, j + 1)] + pre[p(i + 1, j)] - pre[p(i, j)];
                        }
                    }
                }
                // One row of O values per pair of runs.
                let mut tiles: Vec<Vec<i32>> = Vec::with_capacity(ys.len() * xs.len());
                for &(_, _, i0, i1) in &ys {
                    for &(_, _, j0, j1) in &xs {
                        let n = ((i1 - i0) * (j1 - j0) * c) as i64;
                        let row = (0..o)
                            .map(|oc| {
                                let p = |i: usize, j: usize| pre[oc * ph * pw + i * pw + j];
                                let wsum = p(i1, j1) - p(i0, j1) - p(i1, j0) + p(i0, j0);
                                e_of(&coef[oc], n, wsum)
                            })
                            .collect::<Option<Vec<i32>>>()?;
                        tiles.push(row);
                    }
                }
                let Some(first) = tiles.first() else {
                    // No output position: any E is right.
                    return Some(Tensor::int(ElemType::I32, vec![o], vec![0; o]));
                };
                if tiles.iter().all(|r| r == first) {
                    return Some(Tensor::int(ElemType::I32, vec![o], first.clone()));
                }
                let elems = (*oh as u64)
                    .checked_mul(*ow as u64)?
                    .checked_mul(o as u64)?;
                if elems > limit {
                    return None;
                }
                let mut e = Vec::with_capacity(elems as usize);
                for (ry, &(y0, y1, _, _)) in ys.iter().enumerate() {
                    for _ in y0..y1 {
                        for (rx, &(x0, x1, _, _)) in xs.iter().enumerate() {
                            for _ in x0..x1 {
                                e.extend_from_slice(&tiles[ry * xs.len() + rx]);
                            }
                        }
                    }
                }
                Some(Tensor::int(ElemType::I32, vec![*oh, *ow, o], e))
            }
        }
    }

    /// The binary dot op over `s`: the same geometry, padded taps contributing
    /// nothing (`pad_value=0`).
    fn binary_op(&self) -> Op {
        match self {
            Geometry::Dense { .. } => Op::Dense,
            Geometry::Conv { attrs, .. } => Op::Conv2d(Conv2dAttrs {
                pad_value: if attrs.has_padding() {
                    Some(PadValue::Zero)
                } else {
                    None
                },
                ..attrs.clone()
            }),
        }
    }

    /// The shape of an all-(+1) weight with one output channel.
    fn ones_dims(&self) -> Vec<usize> {
        match self {
            Geometry::Dense { k } => vec![1, *k],
            Geometry::Conv { c, kh, kw, .. } => vec![1, *kh, *kw, *c],
        }
    }
}

/// The runs of output positions along one axis over which the same kernel
/// taps are in bounds: `(start, end, lo, hi)` says positions `start..end`
/// read exactly taps `lo..hi` (an empty range where none is in bounds); the
/// runs cover `0..out` in order and there are at most `2 k + 1`. Tap `i` at
/// position `p` reads input `p*s + i*d - pad`, in bounds when in `[0, ext)`,
/// i.e. for `p` from `ceil((pad - i*d) / s)` up to, excluding,
/// `ceil((pad + ext - i*d) / s)`. `None` for a zero stride or taps that are
/// not one range (impossible for a positive dilation).
fn tap_runs(
    out: usize,
    k: usize,
    s: usize,
    d: usize,
    pad: usize,
    ext: usize,
) -> Option<Vec<(usize, usize, usize, usize)>> {
    if s == 0 {
        return None;
    }
    let (s, d, pad, ext) = (s as u128, d as u128, pad as u128, ext as u128);
    let bound = |i: usize| {
        let at = i as u128 * d;
        let clamp = |p: u128| p.min(out as u128) as usize;
        (
            clamp(pad.saturating_sub(at).div_ceil(s)),
            clamp((pad + ext).saturating_sub(at).div_ceil(s)),
        )
    };
    let bounds: Vec<(usize, usize)> = (0..k).map(bound).collect();
    let mut cuts: Vec<usize> = vec![0, out];
    cuts.extend(bounds.iter().flat_map(|&(a, b)| [a, b]));
    cuts.sort_unstable();
    cuts.dedup();
    let mut runs = Vec::with_capacity(cuts.len());
    for win in cuts.windows(2) {
        let (start, end) = (win[0], win[1]);
        let taps: Vec<usize> = (0..k)
            .filter(|&i| bounds[i].0 <= start && start < bounds[i].1)
            .collect();
        let (lo, hi) = match (taps.first(), taps.last()) {
            (Some(&lo), Some(&last)) => (lo, last + 1),
            _ => (0, 0),
        };
        if hi - lo != taps.len() {
            return None;
        }
        runs.push((start, end, lo, hi));
    }
    Some(runs)
}

/// `v` as i32 values, `None` if one does not fit.
fn to_i32(v: &[i64]) -> Option<Vec<i32>> {
    v.iter().map(|&x| i32::try_from(x).ok()).collect()
}

/// The type of `b` as the verifier infers it, or `None` if it does not type-check.
fn build_type(egraph: &BnnGraph, b: &Build) -> Option<TensorType> {
    match b {
        Build::Class(id) => Some(egraph[*id].data.ty.clone()),
        Build::Const(t) => Some(TensorType::fixed(t.elem, &t.dims)),
        Build::Node(op, kids) => {
            let tys: Vec<TensorType> = kids
                .iter()
                .map(|k| build_type(egraph, k))
                .collect::<Option<_>>()?;
            let refs: Vec<&TensorType> = tys.iter().collect();
            infer_type(op, &refs).ok()
        }
    }
}

/// `conv2d(a, W)` / `dense(a, W)` with `a = f(s)` an elementwise chain of a
/// `b1` value `s` giving the same pair `{a-, a+}` in every input channel, and a
/// constant W with at most two values `{q_o, p_o}` (p_o >= q_o) per output
/// channel ->
/// `dequantize(add(add(mul(D, C3), mul(A, C1)), E), scale=u/4)` where
/// `D = conv2d(s, T)`, `A = conv2d(s, ones)` (same stride, padding,
/// dilation, `pad_value=0`; `dense` likewise), T the sign pattern of W (+1
/// where `w = p_o`), `C1`, `C3` i32 `[O]` and E i32 `[OH, OW, O]` (`[O]` when it
/// does not depend on the position). Terms whose coefficients are all zero are
/// left out. Only `groups == 1`; any stride, padding, dilation.
///
/// # Derivation
///
/// 1. *The activations.* `a` is computed elementwise from `s` by per-channel
///    constants, so at every position `a = a-` where `s = -1` and `a = a+`
///    where `s = +1`; the pair is computed by the interpreter on `s = -1, +1`
///    ([`binary_affine_input`]), never assumed, and must be finite and the
///    same in every input channel.
/// 2. *The products.* Let `t = +1` where `w = p_o`, `-1` where `w = q_o`. The
///    interpreter adds `fl(a * w)`, i.e. one of the four f32 products
///    `P(s, t) = fl(a_s * w_t)`, computed here with the same f32
///    multiplication. Let `u = 2^e` be the largest power of two dividing every
///    nonzero product of every channel (the smallest lowest-set-bit), so each
///    `P(s, t) = Q(s, t) u` with Q an integer.
/// 3. *Exact sums.* The rule fires only when, per channel,
///    `K * max|Q| < 2^24` and `K * max|P| <= f32::MAX` (K the dot length,
///    `kh*kw*C` or the dense K). An output adds at most K products (padded
///    taps of an f32 conv contribute nothing), starting from +0.0; by
///    induction every partial sum is exact: if the running sum is the exact
///    `m u` with `|m| <= K max|Q|`, the next exact sum is `m' u` with
///    `|m'| < 2^24`, a value with at most 24 significant bits, at least `u >=
///    2^-149` and at most f32::MAX in magnitude, hence an f32, so rounding
///    returns it. So the f32 result is the exact real sum `S`, whatever the
///    order.
/// 4. *Signed zero.* Starting from +0.0, the running sum is never -0.0: adding
///    a product (of either sign of zero) to +0.0 gives +0.0 or the product's
///    nonzero value, and an exact sum of two nonzero values that is zero is
///    +0.0 in round-to-nearest. So `S = 0` comes out as +0.0. The new form
///    gives `(0 as f32) * (u/4) = +0.0` as well (the scale is positive).
/// 5. *Bilinear decomposition.* For s, t in {-1, +1}, with `Q++ = Q(+1, +1)`
///    etc., interpolation on the four corners gives
///    `4 Q(s, t) = C0 + C1 s + C2 t + C3 s t` where
///    `C0 = Q++ + Q+- + Q-+ + Q--`, `C1 = Q++ + Q+- - Q-+ - Q--`,
///    `C2 = Q++ - Q+- + Q-+ - Q--`, `C3 = Q++ - Q+- - Q-+ + Q--`
///    (each corner: e.g. s = t = +1 gives `C0 + C1 + C2 + C3 = 4 Q++`, the
///    other three Q's cancel). Summing over the in-bounds taps of an output:
///    `4 S / u = C0 n + C1 A + C2 Wsum + C3 D` with n the number of in-bounds
///    products, `A = sum s` over them (the `b1` conv of s with an all-(+1)
///    weight and `pad_value=0`), `Wsum = sum t` over them and
///    `D = sum s t` (the `b1` conv of s with T, `pad_value=0`). n and Wsum
///    depend only on the position and channel (they change only at the
///    borders): `E = C0 n + C2 Wsum` is a constant computed here from the same
///    in-bounds test as the interpreter's.
/// 6. *Integers.* `q = C3 D + C1 A + E = 4 S / u = 4m` with `|m| < 2^24`:
///    `|D|, |A|, n, |Wsum| <= K` and `|Ci| <= 4 max|Q|`, so every i32 term and
///    partial sum is below `16 K max|Q| < 2^28` in magnitude (no wrap).
/// 7. *Dequantize.* `dequantize(q, scale=u/4)` is `(q as f32) * (u/4)`; `q =
///    4m` has at most 24 significant bits, so the conversion is exact; the
///    scale `u/4 = 2^(e-2)` is a normal f32 (the rule refuses `e - 2 < -126`),
///    and the exact product `m u = S` is an f32 (step 3), so the multiplication
///    is exact too: the result is the interpreter's, bit for bit.
pub fn affine_binary_dot(egraph: &BnnGraph, class: Id, node: &ENode) -> Option<Build> {
    let (op, [x, w]) = op_of(node)? else {
        return None;
    };
    let wt = egraph[*w].data.konst.as_deref()?;
    if egraph[*x].data.ty.elem != ElemType::F32 || egraph[*x].data.konst.is_some() {
        return None;
    }
    let wd = &wt.dims;
    let geom = match op {
        Op::Dense => {
            let [_, k] = wd[..] else { return None };
            Geometry::Dense { k }
        }
        Op::Conv2d(attrs) => {
            if attrs.groups != 1 || (attrs.has_padding() && attrs.effective_pad() != PadValue::Zero)
            {
                return None;
            }
            let [_, kh, kw, _] = wd[..] else { return None };
            let xs = &egraph[*x].data.ty.shape;
            let ys = &egraph[class].data.ty.shape;
            let fixed = |s: &[Dim], i: usize| s.get(i).and_then(|d| d.fixed());
            let (h, w, c) = (fixed(xs, 1)?, fixed(xs, 2)?, fixed(xs, 3)?);
            let (oh, ow) = (fixed(ys, 1)?, fixed(ys, 2)?);
            if wd[3] != c {
                return None;
            }
            Geometry::Conv {
                attrs: attrs.clone(),
                h,
                w,
                c,
                kh,
                kw,
                oh,
                ow,
            }
        }
        _ => return None,
    };
    let o = wd[0];
    let k = geom.dot_len();
    let (s, a) = binary_affine_input(egraph, *x)?;
    let wv = match wt.elem {
        ElemType::F32 | ElemType::B1 | ElemType::Ternary => wt.to_f32_vec(),
        _ => return None,
    };
    let plan = plan(a, &wv, o, k)?;

    let c1: Vec<i64> = plan.coef.iter().map(|c| c[1]).collect();
    let c3: Vec<i64> = plan.coef.iter().map(|c| c[3]).collect();
    let e = geom.corrections(&plan.t, &plan.coef, egraph.analysis.budget)?;
    let (c1, c3) = (to_i32(&c1)?, to_i32(&c3)?);

    let dot = geom.binary_op();
    let mut terms = Vec::new();
    if c3.iter().any(|&v| v != 0) {
        let tt = Tensor::int(ElemType::B1, wd.clone(), plan.t.clone());
        let d = Build::Node(dot.clone(), vec![Build::Class(s), Build::Const(tt)]);
        let coef = Tensor::int(ElemType::I32, vec![o], c3);
        terms.push(Build::Node(Op::Mul, vec![d, Build::Const(coef)]));
    }
    if c1.iter().any(|&v| v != 0) {
        let dims = geom.ones_dims();
        let ones = Tensor::int(ElemType::B1, dims.clone(), vec![1; dims.iter().product()]);
        let a = Build::Node(dot, vec![Build::Class(s), Build::Const(ones)]);
        let coef = Tensor::int(ElemType::I32, vec![o], c1);
        terms.push(Build::Node(Op::Mul, vec![a, Build::Const(coef)]));
    }
    // Without a term that reads s the result would lose the batch dimension;
    // such a layer (a- = a+, or every weight zero) is left alone.
    let mut sum = terms
        .into_iter()
        .reduce(|l, r| Build::Node(Op::Add, vec![l, r]))?;
    if e.as_int()?.iter().any(|&v| v != 0) {
        sum = Build::Node(Op::Add, vec![sum, Build::Const(e)]);
    }
    let scale = f32::from_bits(((plan.u_exp - 2 + 127) as u32) << 23);
    let out = Build::Node(
        Op::Dequantize {
            scale,
            zero_point: 0,
        },
        vec![sum],
    );
    (build_type(egraph, &out)? == egraph[class].data.ty).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::opt::lang::NodeOp;

    /// A small deterministic generator.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 33
        }
        fn b1(&mut self, dims: Vec<usize>) -> Tensor {
            let n = dims.iter().product();
            let v = (0..n)
                .map(|_| if self.next() & 1 == 1 { 1 } else { -1 })
                .collect();
            Tensor::int(ElemType::B1, dims, v)
        }
    }

    /// AdaBin weights: `aw[o] * sign + bw[o]` with a random sign pattern.
    fn two_valued(rng: &mut Rng, dims: Vec<usize>, aw: &[f32], bw: &[f32]) -> Tensor {
        let k: usize = dims[1..].iter().product();
        let signs = rng.b1(dims.clone());
        let v = signs
            .as_int()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, &s)| aw[i / k] * s as f32 + bw[i / k])
            .collect();
        Tensor::f32(dims, v)
    }

    fn f(v: &[f32]) -> Tensor {
        Tensor::f32(vec![v.len()], v.to_vec())
    }

    /// Evaluates class `id` with the interpreter from the first e-node of each
    /// class (the tests run one rule, so every class but the rewritten one has
    /// a single node).
    fn eval_class(eg: &BnnGraph, id: Id, inputs: &[Tensor], depth: usize) -> Tensor {
        assert!(depth < 32, "term too deep");
        let class = &eg[eg.find(id)];
        if let Some(t) = &class.data.konst {
            return (**t).clone();
        }
        eval_node(eg, &class.nodes[0], inputs, depth)
    }

    fn eval_node(eg: &BnnGraph, n: &ENode, inputs: &[Tensor], depth: usize) -> Tensor {
        match &n.op {
            NodeOp::Input(i) => inputs[*i as usize].clone(),
            NodeOp::Const(c) => (**eg.analysis.tensor(*c)).clone(),
            NodeOp::Op(k) => {
                let args: Vec<Tensor> = n
                    .children
                    .iter()
                    .map(|&c| eval_class(eg, c, inputs, depth + 1))
                    .collect();
                let refs: Vec<&Tensor> = args.iter().collect();
                bnnc_runtime::ops::eval(&k.op, &refs).unwrap()
            }
        }
    }

    fn same_bits(a: &Tensor, b: &Tensor) -> bool {
        let (x, y) = (a.as_f32().unwrap(), b.as_f32().unwrap());
        a.dims == b.dims && x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits())
    }

    /// One layer under test: `dot(add(mul(s, alpha), beta), W)` on input `i`.
    struct Layer {
        dot: Id,
        s: Id,
        input: usize,
        alpha: Tensor,
        beta: Tensor,
        w: Tensor,
        op: Op,
    }

    fn layer(
        eg: &mut BnnGraph,
        input: usize,
        alpha: Tensor,
        beta: Tensor,
        w: Tensor,
        op: Op,
    ) -> Layer {
        let s = super::super::testing::input(eg, input as u32);
        let al = konst(eg, alpha.clone());
        let be = konst(eg, beta.clone());
        let m = super::super::testing::op(eg, Op::Mul, &[s, al]);
        let a = super::super::testing::op(eg, Op::Add, &[m, be]);
        let wc = konst(eg, w.clone());
        let dot = super::super::testing::op(eg, op.clone(), &[a, wc]);
        Layer {
            dot,
            s,
            input,
            alpha,
            beta,
            w,
            op,
        }
    }

    /// The original layer on `inputs`, with the interpreter.
    fn original(l: &Layer, inputs: &[Tensor]) -> Tensor {
        let ev = bnnc_runtime::ops::eval;
        let m = ev(&Op::Mul, &[&inputs[l.input], &l.alpha]).unwrap();
        let a = ev(&Op::Add, &[&m, &l.beta]).unwrap();
        ev(&l.op, &[&a, &l.w]).unwrap()
    }

    /// The rewritten form of `l` (its one `dequantize` node) agrees with the
    /// original bit for bit on `rounds` random inputs; returns how many output
    /// elements were exactly zero (all of them +0.0).
    fn check_equal(eg: &BnnGraph, l: &Layer, types: &[TensorType], rng: &mut Rng) -> usize {
        let dq = find_op(eg, l.dot, "dequantize");
        assert_eq!(dq.len(), 1, "one dequantize form");
        let mut zeros = 0;
        for _ in 0..4 {
            let inputs: Vec<Tensor> = types.iter().map(|t| rng.b1(t.dims(3))).collect();
            let want = original(l, &inputs);
            let got = eval_node(eg, dq[0], &inputs, 0);
            assert!(same_bits(&got, &want), "{:?}\n{:?}", got, want);
            let w = want.as_f32().unwrap();
            assert!(w.iter().all(|v| *v != 0.0 || v.is_sign_positive()));
            zeros += w.iter().filter(|v| **v == 0.0).count();
        }
        zeros
    }

    fn nhwc(n: &[usize]) -> TensorType {
        let mut s = vec![Dim::Batch];
        s.extend(n.iter().map(|&d| Dim::Fixed(d)));
        TensorType::new(ElemType::B1, s)
    }

    #[test]
    fn affine_binary_dot() {
        let mut rng = Rng(5);
        let types = [
            nhwc(&[7, 6, 5]),
            nhwc(&[37]),
            nhwc(&[2]),
            nhwc(&[4]),
            nhwc(&[5, 5, 3]),
        ];
        let mut eg = egraph(&types);
        // AdaBin activations {-1, 0.5} (alpha 0.75, beta -0.25), weights
        // aw * sign + bw per channel (one channel with a single value).
        let w = two_valued(
            &mut rng,
            vec![4, 3, 3, 5],
            &[0.5, 1.25, 0.125, 0.0],
            &[0.25, -0.75, 0.0, 2.0],
        );
        let strided = Op::Conv2d(Conv2dAttrs {
            stride: [2, 2],
            padding: [1; 4],
            ..Conv2dAttrs::default()
        });
        let conv = layer(&mut eg, 0, f(&[0.75]), f(&[-0.25]), w, strided.clone());
        // Asymmetric padding, dilation, stride 1.
        let w2 = two_valued(
            &mut rng,
            vec![3, 2, 3, 5],
            &[1.0, 0.5, 3.0],
            &[0.5, 0.5, -1.0],
        );
        let dilated = Op::Conv2d(Conv2dAttrs {
            padding: [0, 2, 1, 1],
            dilation: [2, 1],
            ..Conv2dAttrs::default()
        });
        let conv2 = layer(&mut eg, 0, f(&[1.5]), f(&[0.5]), w2, dilated);
        let wd = two_valued(&mut rng, vec![3, 37], &[0.25, 2.0, 1.0], &[-0.5, 0.0, 0.25]);
        let dense = layer(&mut eg, 1, f(&[1.5]), f(&[0.25]), wd, Op::Dense);
        // a in {0, 1} against negative weights: products are -0.0 where s = -1,
        // and sums of only those are +0.0 in both forms.
        let wz = two_valued(&mut rng, vec![2, 2], &[0.25, 0.5], &[-0.75, -1.0]);
        let zero = layer(&mut eg, 2, f(&[0.5]), f(&[0.5]), wz, Op::Dense);
        // a in {-1, +1}, weights +-0.5: sums cancel to zero often.
        let wc = two_valued(&mut rng, vec![3, 4], &[0.5, 0.5, 0.5], &[0.0, 0.0, 0.0]);
        let cancel = layer(&mut eg, 3, f(&[1.0]), f(&[0.0]), wc, Op::Dense);
        // Padding wider than the kernel: corner outputs have no in-bounds tap.
        let wp = two_valued(&mut rng, vec![2, 2, 2, 3], &[0.5, 0.25], &[0.5, -0.25]);
        let wide = Op::Conv2d(Conv2dAttrs {
            padding: [3, 3, 3, 3],
            ..Conv2dAttrs::default()
        });
        let pad = layer(&mut eg, 4, f(&[0.75]), f(&[-0.25]), wp, wide);

        let eg = run_rule(eg, "affine_binary_dot");

        // The expected form: dequantize(add(add(mul(D, C3), mul(A, C1)), E))
        // with D the b1 conv of s with the weights' sign pattern.
        let dq = find_op(&eg, conv.dot, "dequantize");
        assert_eq!(dq.len(), 1);
        // a in {-1, 0.5}, w in {0.75, -0.25}, {0.5, -2}, {0.125, -0.125}, {2}:
        // the smallest product bit is 2^-4 (0.5 * 0.125), scale 2^-6.
        assert_eq!(
            dq[0].graph_op(),
            Some(&Op::Dequantize {
                scale: 1.0 / 64.0,
                zero_point: 0
            })
        );
        let add = find_op(&eg, dq[0].children[0], "add");
        assert_eq!(add.len(), 1);
        let e = const_of(&eg, add[0].children[1]).expect("E is a constant");
        assert_eq!(e.dims, [4, 3, 4], "E varies at the borders");
        let inner = find_op(&eg, add[0].children[0], "add");
        assert_eq!(inner.len(), 1);
        let mul_d = find_op(&eg, inner[0].children[0], "mul");
        let d = find_op(&eg, mul_d[0].children[0], "conv2d");
        assert_eq!(d[0].children[0], eg.find(conv.s));
        let t = const_of(&eg, d[0].children[1]).unwrap();
        assert_eq!(t.elem, ElemType::B1);
        let wv = conv.w.as_f32().unwrap();
        for (i, &tv) in t.as_int().unwrap().iter().enumerate() {
            let row = &wv[i / 45 * 45..(i / 45 + 1) * 45];
            let p = row.iter().copied().fold(f32::MIN, f32::max);
            assert_eq!(tv == 1, wv[i] == p, "T is +1 where w is the larger value");
        }
        let Some(Op::Conv2d(a)) = d[0].graph_op() else {
            panic!("conv2d")
        };
        assert_eq!(a.pad_value, Some(PadValue::Zero));
        assert_eq!((a.stride, a.padding), ([2, 2], [1; 4]));

        let inputs: Vec<TensorType> = types.to_vec();
        for l in [&conv, &conv2, &dense, &pad] {
            check_equal(&eg, l, &inputs, &mut rng);
        }
        assert!(check_equal(&eg, &zero, &inputs, &mut rng) > 0);
        assert!(check_equal(&eg, &cancel, &inputs, &mut rng) > 0);
        // Dense: E does not depend on the position, so it is `[O]`.
        let dq = find_op(&eg, dense.dot, "dequantize");
        let add = find_op(&eg, dq[0].children[0], "add");
        assert_eq!(const_of(&eg, add[0].children[1]).unwrap().dims, [3]);
    }

    #[test]
    fn affine_binary_dot_refuses_inexact_sums() {
        let mut rng = Rng(9);
        let types = [nhwc(&[5, 5, 4]), nhwc(&[3])];
        let mut eg = egraph(&types);
        let w = two_valued(
            &mut rng,
            vec![3, 3, 3, 4],
            &[0.5, 1.0, 0.25],
            &[0.25, 0.0, 0.5],
        );
        let conv = Op::Conv2d(Conv2dAttrs {
            padding: [1; 4],
            ..Conv2dAttrs::default()
        });
        // alpha = 0.1 is not dyadic: its products have 24 significant bits.
        let inexact = layer(&mut eg, 0, f(&[0.1]), f(&[0.0]), w.clone(), conv.clone());
        // One pair per input channel is required.
        let per_chan = layer(
            &mut eg,
            0,
            f(&[0.5, 0.5, 0.25, 0.5]),
            f(&[0.0]),
            w.clone(),
            conv.clone(),
        );
        // Three values in a weight channel.
        let mut w3 = w.clone();
        if let bnnc_ir::TensorData::F32(v) = &mut w3.data {
            v[0] = 7.0;
            v[1] = 5.0;
            v[2] = 3.0;
        }
        let three = layer(&mut eg, 0, f(&[0.5]), f(&[0.0]), w3, conv.clone());
        // Dyadic, but v = 1 + 2^-23 has 24 significant bits: u = 2^-23,
        // Q = 2^23 + 1 and K * max|Q| = 3 (2^23 + 1) >= 2^24.
        let v = 1.0 + 2f32.powi(-23);
        let big = Tensor::f32(vec![1, 3], vec![v; 3]);
        let bound = layer(&mut eg, 1, f(&[1.0]), f(&[0.0]), big, Op::Dense);
        // Groups other than one.
        let wg = two_valued(&mut rng, vec![2, 3, 3, 2], &[0.5, 1.0], &[0.0, 0.0]);
        let grouped = Op::Conv2d(Conv2dAttrs {
            groups: 2,
            ..Conv2dAttrs::default()
        });
        let groups = layer(&mut eg, 0, f(&[0.5]), f(&[0.0]), wg, grouped);
        // alpha = 0 with beta = 0.5: a+ = a-, no term reads s.
        let constant = layer(&mut eg, 0, f(&[0.0]), f(&[0.5]), w, conv);
        let eg = run_rule(eg, "affine_binary_dot");
        for (name, l) in [
            ("alpha = 0.1", &inexact),
            ("per-channel pairs", &per_chan),
            ("three values", &three),
            ("bound", &bound),
            ("groups", &groups),
            ("a- = a+", &constant),
        ] {
            assert!(find_op(&eg, l.dot, "dequantize").is_empty(), "{name}");
        }
        // There the f32 sum really rounds: v + v + v = 3 + 1.5 * 2^-22 is not
        // an f32 (the ulp of [2, 4) is 2^-22), so an exact integer form would
        // differ from the interpreter.
        let x = Tensor::int(ElemType::B1, vec![1, 3], vec![1; 3]);
        let got = original(&bound, &[x.clone(), x]);
        let exact = 3.0 * (1.0 + 2f64.powi(-23));
        assert_ne!(got.as_f32().unwrap()[0] as f64, exact);
    }

    /// The runs of [`tap_runs`] say exactly which taps the interpreter's
    /// in-bounds test accepts, for every position, over strides, dilations,
    /// paddings wider than the kernel and kernels wider than the input.
    #[test]
    fn tap_runs_match_the_in_bounds_test() {
        for out in [0usize, 1, 4, 9] {
            for k in 1..5 {
                for s in 1..4 {
                    for d in 1..3 {
                        for pad in [0usize, 1, 3, 7] {
                            for ext in [1usize, 2, 5] {
                                let runs = tap_runs(out, k, s, d, pad, ext).unwrap();
                                assert!(runs.len() <= 2 * k + 1);
                                let mut next = 0;
                                for &(start, end, lo, hi) in &runs {
                                    assert_eq!(start, next);
                                    assert!(start < end);
                                    next = end;
                                    for p in start..end {
                                        let inb: Vec<usize> = (0..k)
                                            .filter(|&i| {
                                                (p * s + i * d)
                                                    .checked_sub(pad)
                                                    .is_some_and(|v| v < ext)
                                            })
                                            .collect();
                                        assert_eq!(inb, (lo..hi).collect::<Vec<_>>());
                                    }
                                }
                                assert_eq!(next, out);
                            }
                        }
                    }
                }
            }
        }
        // Huge paddings cost as little as small ones.
        let runs = tap_runs(200_000_000_001, 3, 1, 1, 99_999_999_999, 6).unwrap();
        assert_eq!(runs.len(), 7);
        assert!(tap_runs(4, 3, 0, 1, 0, 4).is_none());
    }

    #[test]
    fn plan_decomposition_is_exact() {
        // 4 Q(s, t) = C0 + C1 s + C2 t + C3 s t on every corner, for random
        // dyadic pairs.
        let mut rng = Rng(3);
        for _ in 0..200 {
            let d = |r: &mut Rng| (r.next() % 33) as f32 * 0.125 - 2.0;
            let a = [d(&mut rng), d(&mut rng)];
            let (p, q) = (d(&mut rng), d(&mut rng));
            let w = [p, q, q, p, p];
            let all_zero = a.iter().all(|&x| x == 0.0) || (p == 0.0 && q == 0.0);
            let Some(pl) = plan(a, &w, 1, 5) else {
                // Only an all-zero layer has no scale; everything else here
                // is a multiple of 2^-6 far below the bound.
                assert!(all_zero, "a = {a:?}, w = {p}, {q}");
                continue;
            };
            assert!(!all_zero);
            let u = 2f64.powi(pl.u_exp);
            let c = pl.coef[0];
            for (i, &wv) in w.iter().enumerate() {
                for (si, s) in [(0usize, -1i64), (1, 1)] {
                    let t = pl.t[i] as i64;
                    let prod = (a[si] * wv) as f64;
                    assert_eq!(
                        4.0 * prod / u,
                        (c[0] + c[1] * s + c[2] * t + c[3] * s * t) as f64
                    );
                }
            }
        }
        assert_eq!(low_exp(0.75), -2);
        assert_eq!(low_exp(-6.0), 1);
        assert_eq!(low_exp(f32::from_bits(1)), -149);
        assert_eq!(low_exp(f32::MAX), 104);
    }
}
