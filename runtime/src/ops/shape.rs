//! Data-movement ops: concat, replicate, channel_shuffle, flatten, reshape.
//! None of them changes an element's value or type.

use bnnc_ir::{Dim, Tensor, TensorData};

use super::{
    channels, checked, norm_axis, numel, op_err, same_kind, unpacked_data, OpError, OpResult,
};
use crate::mem::reserve;

/// Moves the elements of `x` (a `[.., C]` buffer) so that output channel `j` of
/// each row is input channel `src(j)`, with `out_c` output channels.
fn gather_channels(x: &Tensor, out_c: usize, src: impl Fn(usize) -> usize) -> OpResult {
    checked(x, "x")?;
    let c = channels(x, "x")?;
    let mut dims = x.dims.clone();
    if let Some(last) = dims.last_mut() {
        *last = out_c;
    }
    let rows = x.numel().checked_div(c).unwrap_or(0);
    numel(&dims)?;
    fn go<T: Copy>(
        v: &[T],
        rows: usize,
        c: usize,
        out_c: usize,
        src: &dyn Fn(usize) -> usize,
    ) -> Result<Vec<T>, OpError> {
        let mut out = reserve(rows * out_c)?;
        for r in 0..rows {
            let row = &v[r * c..(r + 1) * c];
            out.extend((0..out_c).map(|j| row[src(j)]));
        }
        Ok(out)
    }
    let data = match &x.data {
        TensorData::F32(v) => TensorData::F32(go(v, rows, c, out_c, &src)?),
        TensorData::Int(_) | TensorData::Bits(_) => {
            TensorData::Int(go(&super::ints(x, "x")?, rows, c, out_c, &src)?)
        }
    };
    same_kind(x.elem, dims, data)
}

/// `replicate(x, times=beta)`: `[.., C]` -> `[.., beta*C]` with
/// `out[.., j] = x[.., j mod C]` (the channels repeated `beta` times).
pub fn replicate(x: &Tensor, times: usize) -> OpResult {
    let c = channels(x, "replicate")?;
    if c == 0 || times == 0 {
        return Err(op_err!("replicate: {times} times over {c} channels"));
    }
    let out_c = c
        .checked_mul(times)
        .ok_or_else(|| op_err!("replicate: {times} x {c} channels overflow"))?;
    gather_channels(x, out_c, |j| j % c)
}

/// `channel_shuffle(x, groups=g)` (ShuffleNet): `C = g*m`,
/// `out[.., i*g + k] = x[.., k*m + i]` for `i < m`, `k < g`.
pub fn channel_shuffle(x: &Tensor, groups: usize) -> OpResult {
    let c = channels(x, "channel_shuffle")?;
    if groups == 0 || c % groups != 0 {
        return Err(op_err!(
            "channel_shuffle: {groups} groups do not divide {c} channels"
        ));
    }
    let m = c / groups;
    // Output channel j = i*g + k reads input channel k*m + i.
    gather_channels(x, c, |j| (j % groups) * m + j / groups)
}

/// `concat(a, b, ...)` along `axis` (negative counts from the end): all operands
/// of one element type, equal in every other dimension; the result holds, for
/// each index of the leading axes, the operands' slices one after another.
pub fn concat(args: &[&Tensor], axis: i64) -> OpResult {
    let Some(first) = args.first() else {
        return Err(op_err!("concat: no operands"));
    };
    let rank = first.dims.len();
    let ax = norm_axis(axis, rank)?;
    let mut dims = first.dims.clone();
    dims[ax] = 0;
    for (i, t) in args.iter().enumerate() {
        checked(t, "concat")?;
        let same_rest = t.dims.len() == rank
            && t.dims
                .iter()
                .zip(&first.dims)
                .enumerate()
                .all(|(k, (a, b))| k == ax || a == b);
        if t.elem != first.elem || !same_rest {
            return Err(op_err!(
                "concat: operand {i} is {}{:?}, operand 0 is {}{:?} (axis {ax})",
                t.elem,
                t.dims,
                first.elem,
                first.dims
            ));
        }
        dims[ax] = dims[ax]
            .checked_add(t.dims[ax])
            .ok_or_else(|| op_err!("concat: axis size overflows"))?;
    }
    numel(&dims)?;
    // Saturating: with an empty axis nothing is read, and a non-empty tensor's
    // sub-products never overflow (its element count was checked).
    let prod = |d: &[usize]| d.iter().fold(1usize, |a, &b| a.saturating_mul(b));
    let outer = prod(&first.dims[..ax]);
    let chunk = |t: &Tensor| -> usize { prod(&t.dims[ax..]) };
    fn go<T: Copy>(parts: &[(&[T], usize)], outer: usize) -> Result<Vec<T>, OpError> {
        let mut out = reserve(parts.iter().map(|p| p.0.len()).sum())?;
        for o in 0..outer {
            for &(v, k) in parts {
                out.extend_from_slice(&v[o * k..(o + 1) * k]);
            }
        }
        Ok(out)
    }
    let data = match &first.data {
        TensorData::F32(_) => {
            let mut parts = Vec::with_capacity(args.len());
            for t in args {
                parts.push((super::f32s(t, "concat")?, chunk(t)));
            }
            TensorData::F32(go(&parts, outer)?)
        }
        TensorData::Int(_) | TensorData::Bits(_) => {
            let mut values = Vec::with_capacity(args.len());
            for t in args {
                values.push((super::ints(t, "concat")?, chunk(t)));
            }
            let parts: Vec<(&[i32], usize)> = values.iter().map(|(v, k)| (&v[..], *k)).collect();
            TensorData::Int(go(&parts, outer)?)
        }
    };
    same_kind(first.elem, dims, data)
}

/// `flatten(x)`: `[N, d1, ..]` -> `[N, d1*..]`, the row-major order unchanged.
pub fn flatten(x: &Tensor) -> OpResult {
    checked(x, "flatten")?;
    let Some((&n, rest)) = x.dims.split_first() else {
        return Err(op_err!("flatten: expected rank >= 1, got a scalar"));
    };
    let dims = vec![n, numel(rest)?];
    same_kind(x.elem, dims, unpacked_data(x, "flatten")?)
}

/// `reshape(x, shape)`: the same elements in the same row-major order under
/// `shape`, whose leading `N` (if any) is x's first dimension; it must hold as
/// many elements as `x`.
pub fn reshape(x: &Tensor, shape: &[Dim]) -> OpResult {
    checked(x, "reshape")?;
    let batch = match (shape.first(), x.dims.first()) {
        (Some(Dim::Batch), Some(&n)) => n,
        (Some(Dim::Batch), None) => {
            return Err(op_err!("reshape: target names N but x is a scalar"));
        }
        _ => 1,
    };
    let dims: Vec<usize> = shape.iter().map(|d| d.resolve(batch)).collect();
    if numel(&dims)? != x.numel() {
        return Err(op_err!(
            "reshape: {:?} ({} elements) cannot become {dims:?}",
            x.dims,
            x.numel()
        ));
    }
    same_kind(x.elem, dims, unpacked_data(x, "reshape")?)
}
