//! Quantization ops: quantize, dequantize and the multi-threshold.

use bnnc_ir::{ElemType, Tensor, TensorData};

use super::{as_f32, channels, f32_tensor, int_tensor, ints, op_err, OpError, OpResult};
use crate::mem::{try_collect, try_vec};

/// `quantize(x, to, scale, zero_point, clip)`: any type -> `to` (a `uN` or `iN`).
/// Each element, with `x` converted as f32:
/// `q = clamp(round_half_even(x / scale) + zero_point, lo, hi)`, the division and
/// rounding in f32 ([`f32::round_ties_even`]), then the sum and clamp in i64 (an
/// infinite or huge quotient saturates before it is clamped). `[lo, hi]` is
/// `clip` when given, else the range of `to`. NaN gives `zero_point` clamped
/// into `[lo, hi]`.
pub fn quantize(
    x: &Tensor,
    to: ElemType,
    scale: f32,
    zero_point: i32,
    clip: Option<(i32, i32)>,
) -> OpResult {
    if !matches!(to, ElemType::UInt(_) | ElemType::SInt(_)) {
        return Err(op_err!("quantize: target type {to} is not uN or iN"));
    }
    let (lo, hi) = match clip {
        Some((a, b)) => (a as i64, b as i64),
        None => to
            .int_range()
            .ok_or_else(|| op_err!("quantize: {to} has no integer range"))?,
    };
    // min/max rather than `clamp`, which panics when lo > hi.
    let clamp = |q: i64| q.max(lo).min(hi);
    let zp = zero_point as i64;
    let v = as_f32(x, "quantize")?;
    let out = try_collect(
        v.len(),
        v.iter().map(|&e| {
            let q = if e.is_nan() {
                clamp(zp)
            } else {
                // `as i64` saturates at the i64 range (inf included).
                let r = (e / scale).round_ties_even() as i64;
                clamp(r.saturating_add(zp))
            };
            // In range of `to` whenever [lo, hi] is (the verifier checks clip).
            q as i32
        }),
    )?;
    int_tensor(to, x.dims.clone(), out)
}

/// `dequantize(q, scale, zero_point)`: integer type -> `f32`,
/// `(q - zero_point) as f32 * scale`; the difference is exact (i64) and then
/// converted with round-to-nearest.
pub fn dequantize(q: &Tensor, scale: f32, zero_point: i32) -> OpResult {
    let v = ints(q, "dequantize")?;
    let zp = zero_point as i64;
    let out = try_collect(v.len(), v.iter().map(|&e| ((e as i64 - zp) as f32) * scale))?;
    f32_tensor(q.dims.clone(), out)
}

/// The element type of a threshold with `t` thresholds per channel: `b1` for
/// one, else the smallest `uN` (N >= 2) that holds the count `t`
/// (`T = 2^n - 1` gives `un`).
pub fn threshold_type(t: usize) -> Option<ElemType> {
    match t {
        0 => None,
        1 => Some(ElemType::B1),
        _ => (2u8..=8).find(|&n| (1usize << n) > t).map(ElemType::UInt),
    }
}

/// `threshold(x, t, dir)`: multi-threshold over channels. `x: [.., C]` (`i32`,
/// `f32` or any integer type), `t: [C, T]` or `[1, T]` of x's storage kind,
/// optional `dir: [C]` of +1/-1 (default +1). For an element in channel `c` the
/// count is `#{k : x >= t[c,k]}` when `dir[c] = +1` and `#{k : x <= t[c,k]}` when
/// `dir[c] = -1` (thresholds in any order; a NaN on either side passes nothing).
/// `T = 1` gives `b1` (count 1 -> +1, count 0 -> -1); larger `T` gives the count
/// as `uN` (see [`threshold_type`]).
pub fn threshold(x: &Tensor, t: &Tensor, dir: Option<&Tensor>) -> OpResult {
    let c = channels(x, "threshold x")?;
    let (rows, nt) = match t.dims.as_slice() {
        &[r, k] if r == c || r == 1 => (r, k),
        d => {
            return Err(op_err!(
                "threshold: thresholds must be [{c}, T] or [1, T], got dims {d:?}"
            ))
        }
    };
    let out_elem = threshold_type(nt)
        .ok_or_else(|| op_err!("threshold: T = {nt} thresholds per channel is not supported"))?;
    let dirs: Vec<bool> = match dir {
        None => vec![true; c],
        Some(d) => {
            let v = ints(d, "threshold dir")?;
            if d.dims.as_slice() != [c] {
                return Err(op_err!(
                    "threshold: dir must be [{c}], got dims {:?}",
                    d.dims
                ));
            }
            v.iter()
                .map(|&s| match s {
                    1 => Ok(true),
                    -1 => Ok(false),
                    _ => Err(op_err!("threshold: dir holds {s}, not +1 or -1")),
                })
                .collect::<Result<_, _>>()?
        }
    };
    // Thresholds of channel `ch`.
    let row = |ch: usize| if rows == 1 { 0 } else { ch * nt };
    let counts: Vec<i32> = match (&x.data, &t.data) {
        (TensorData::F32(_), TensorData::F32(_)) => {
            let xv = super::f32s(x, "threshold x")?;
            let tv = super::f32s(t, "threshold t")?;
            count_passed(xv, tv, c, nt, &dirs, row)?
        }
        (TensorData::Int(_) | TensorData::Bits(_), TensorData::Int(_) | TensorData::Bits(_)) => {
            let xv = ints(x, "threshold x")?;
            let tv = ints(t, "threshold t")?;
            count_passed(&xv, &tv, c, nt, &dirs, row)?
        }
        _ => {
            return Err(op_err!(
                "threshold: x is {} but thresholds are {}",
                x.elem,
                t.elem
            ))
        }
    };
    let out = if out_elem == ElemType::B1 {
        let mut counts = counts;
        for k in &mut counts {
            *k = if *k == 1 { 1 } else { -1 };
        }
        counts
    } else {
        counts
    };
    int_tensor(out_elem, x.dims.clone(), out)
}

/// For each element of a `[.., C]` buffer, the number of its channel's `nt`
/// thresholds it passes in its channel's direction.
fn count_passed<T: PartialOrd + Copy>(
    x: &[T],
    t: &[T],
    c: usize,
    nt: usize,
    up: &[bool],
    row: impl Fn(usize) -> usize,
) -> Result<Vec<i32>, OpError> {
    if c == 0 {
        return Ok(Vec::new());
    }
    let mut out = crate::mem::reserve(x.len())?;
    for xs in x.chunks(c) {
        for (ch, &e) in xs.iter().enumerate() {
            let ts = &t[row(ch)..row(ch) + nt];
            let n = if up[ch] {
                ts.iter().filter(|&&th| e >= th).count()
            } else {
                ts.iter().filter(|&&th| e <= th).count()
            };
            out.push(n as i32);
        }
    }
    Ok(out)
}

/// `table(x, t, lo)`: per-channel lookup. `x: [.., C]` of an integer type,
/// `t: [C, R]` or `[1, R]` of any type; element `e` of channel `c` becomes
/// `t[c, clamp(e - lo, 0, R - 1)]` (the difference in i64), of t's type.
pub fn table(x: &Tensor, t: &Tensor, lo: i32) -> OpResult {
    let c = channels(x, "table x")?;
    let xv = ints(x, "table x")?;
    let (rows, r) = match t.dims.as_slice() {
        &[rows, r] if (rows == c || rows == 1) && r >= 1 => (rows, r),
        d => {
            return Err(op_err!(
                "table: the table must be [{c}, R] or [1, R] with R >= 1, got dims {d:?}"
            ))
        }
    };
    // Index into t's flat data of channel `ch`'s entry for value `e`.
    let at = |ch: usize, e: i32| {
        let k = (e as i64 - lo as i64).clamp(0, r as i64 - 1) as usize;
        (if rows == 1 { 0 } else { ch * r }) + k
    };
    let idx = || {
        xv.chunks(c.max(1))
            .flat_map(move |xs| xs.iter().enumerate().map(move |(ch, &e)| at(ch, e)))
    };
    match &t.data {
        TensorData::F32(_) => {
            let tv = super::f32s(t, "table t")?;
            Ok(Tensor::f32(
                x.dims.clone(),
                try_collect(xv.len(), idx().map(|i| tv[i]))?,
            ))
        }
        TensorData::Int(_) | TensorData::Bits(_) => {
            let tv = ints(t, "table t")?;
            int_tensor(
                t.elem,
                x.dims.clone(),
                try_collect(xv.len(), idx().map(|i| tv[i]))?,
            )
        }
    }
}

/// `fill(x, value, to)`: x's dims, every element `value` as type `to` (an
/// integer type takes `value` as a whole number it admits).
pub fn fill(x: &Tensor, value: f32, to: ElemType) -> OpResult {
    let n = super::numel(&x.dims)?;
    if to == ElemType::F32 {
        return Ok(Tensor::f32(x.dims.clone(), try_vec(n, value)?));
    }
    if value.fract() != 0.0 || !to.admits(value as i64) {
        return Err(op_err!("fill: {value} is not a value of {to}"));
    }
    int_tensor(to, x.dims.clone(), try_vec(n, value as i32)?)
}
