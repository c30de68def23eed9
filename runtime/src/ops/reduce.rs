//! Reductions along one axis: softmax and argmax.

use bnnc_ir::{ElemType, Tensor, TensorData};

use super::{as_f32, f32_tensor, int_tensor, norm_axis, op_err, OpError, OpResult};
use crate::mem::{reserve, try_vec};

/// Splits `dims` around `axis` into (outer, axis length, inner) element counts.
fn split(dims: &[usize], axis: usize) -> (usize, usize, usize) {
    let prod = |d: &[usize]| d.iter().fold(1usize, |a, &b| a.saturating_mul(b));
    (prod(&dims[..axis]), dims[axis], prod(&dims[axis + 1..]))
}

/// `softmax(x, axis)`: `f32`, for each line along `axis` (negative counts from
/// the end): `m` = the largest element (NaNs ignored; -inf for an all-NaN line),
/// `e_k = exp(x_k - m)`, `s = sum_k e_k` summed from +0.0 in index order, and
/// `y_k = e_k / s`. Integer inputs are converted as f32.
pub fn softmax(x: &Tensor, axis: i64) -> OpResult {
    let ax = norm_axis(axis, x.dims.len())?;
    let v = as_f32(x, "softmax")?;
    let (outer, len, inner) = split(&x.dims, ax);
    let mut out = try_vec(v.len(), 0.0f32)?;
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| (o * len + k) * inner + i;
            let m = (0..len).map(|k| v[at(k)]).fold(f32::NEG_INFINITY, f32::max);
            let mut s = 0.0f32;
            for k in 0..len {
                let e = (v[at(k)] - m).exp();
                out[at(k)] = e;
                s += e;
            }
            for k in 0..len {
                out[at(k)] /= s;
            }
        }
    }
    f32_tensor(x.dims.clone(), out)
}

/// `argmax(x, axis)`: `i32`, `axis` removed: for each line along `axis`, the index
/// of its first maximum. Scanning in index order, the candidate is replaced only
/// by a strictly greater element, so ties give the first index, a NaN never wins
/// unless it is first (then nothing compares greater and the result is 0).
pub fn argmax(x: &Tensor, axis: i64) -> OpResult {
    let ax = norm_axis(axis, x.dims.len())?;
    let (outer, len, inner) = split(&x.dims, ax);
    let mut dims = x.dims.clone();
    dims.remove(ax);
    if len == 0 && outer.saturating_mul(inner) > 0 {
        return Err(op_err!("argmax: axis {ax} of {:?} is empty", x.dims));
    }
    fn go<T: PartialOrd + Copy>(
        v: &[T],
        outer: usize,
        len: usize,
        inner: usize,
    ) -> Result<Vec<i32>, OpError> {
        let mut out = reserve(outer * inner)?;
        for o in 0..outer {
            for i in 0..inner {
                let at = |k: usize| (o * len + k) * inner + i;
                let mut best = 0usize;
                for k in 1..len {
                    if v[at(k)] > v[at(best)] {
                        best = k;
                    }
                }
                out.push(best as i32);
            }
        }
        Ok(out)
    }
    let out = match &x.data {
        TensorData::F32(_) => go(super::f32s(x, "argmax")?, outer, len, inner)?,
        TensorData::Int(_) | TensorData::Bits(_) => {
            go(&super::ints(x, "argmax")?, outer, len, inner)?
        }
    };
    int_tensor(ElemType::I32, dims, out)
}
