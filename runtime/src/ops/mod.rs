//! One function per op, grouped by family. Each function's doc comment states
//! what it computes; together they are the exact meaning of [`Op`].
//!
//! Functions take their operands as tensors of concrete dims and return a new
//! tensor. An operand of a type or shape the verifier excludes gives an
//! [`OpError`], never a panic.
//!
//! - [`elementwise`]: sign, ternarize, relu, prelu, rprelu, hardtanh, clip,
//!   sigmoid, batchnorm, broadcasting add/sub/mul;
//! - [`quant`]: quantize, dequantize, threshold, table, fill;
//! - [`dot`]: conv2d and dense over every element-type pair;
//! - [`pool`]: maxpool2d, avgpool2d, global_avgpool;
//! - [`shape`]: concat, replicate, channel_shuffle, flatten, reshape;
//! - [`reduce`]: softmax, argmax.

pub mod dot;
pub mod elementwise;
pub mod pool;
pub mod quant;
pub mod reduce;
pub mod shape;

use std::borrow::Cow;

use bnnc_ir::{ElemType, Op, Tensor, TensorData};

use crate::mem::{try_collect, AllocError};

/// Why an op computed no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// An operand the op cannot take (something a verified model never produces).
    #[error("{0}")]
    Invalid(String),
    /// The result or a temporary buffer could not be allocated.
    #[error(transparent)]
    Alloc(#[from] AllocError),
}

/// Result of an op function.
pub type OpResult = Result<Tensor, OpError>;

/// Builds an [`OpError`] from a format string.
macro_rules! op_err {
    ($($arg:tt)*) => {
        $crate::ops::OpError::Invalid(format!($($arg)*))
    };
}
pub(crate) use op_err;

/// Evaluates one non-leaf op on its operands (in the op's operand order). Leaf
/// ops (`input`, `weight`, `const`) are an error: the caller resolves them.
pub fn eval(op: &Op, args: &[&Tensor]) -> OpResult {
    let (min, max) = op.arity();
    if args.len() < min || args.len() > max {
        return Err(op_err!(
            "{} takes {}..={} operands, got {}",
            op.name(),
            min,
            max,
            args.len()
        ));
    }
    let leaf = || op_err!("`{}` declares a value and is not evaluated", op.name());
    // Every non-leaf op takes at least one operand; the arity check above makes
    // the fixed-position operands below exist.
    let Some(&x) = args.first() else {
        return Err(leaf());
    };
    match op {
        Op::Input(_) | Op::Weight { .. } | Op::Const { .. } => Err(leaf()),
        Op::Sign { .. } => elementwise::sign(x),
        Op::Quantize {
            to,
            scale,
            zero_point,
            clip,
        } => quant::quantize(x, *to, *scale, *zero_point, *clip),
        Op::Dequantize { scale, zero_point } => quant::dequantize(x, *scale, *zero_point),
        Op::Ternarize { delta } => elementwise::ternarize(x, *delta),
        Op::Threshold => quant::threshold(args[0], args[1], args.get(2).copied()),
        Op::Table { lo } => quant::table(args[0], args[1], *lo),
        Op::Fill { value, to } => quant::fill(x, *value, *to),
        Op::Conv2d(attrs) => dot::conv2d(args[0], args[1], attrs),
        Op::Dense => dot::dense(args[0], args[1]),
        Op::BatchNorm { eps } => {
            elementwise::batchnorm(args[0], args[1], args[2], args[3], args[4], *eps)
        }
        Op::Add => elementwise::add(args[0], args[1]),
        Op::Sub => elementwise::sub(args[0], args[1]),
        Op::Mul => elementwise::mul(args[0], args[1]),
        Op::Relu => elementwise::relu(x),
        Op::Prelu => elementwise::prelu(args[0], args[1]),
        Op::Rprelu => elementwise::rprelu(args[0], args[1], args[2], args[3]),
        Op::Hardtanh => elementwise::hardtanh(x),
        Op::Clip { min, max } => elementwise::clip(x, *min, *max),
        Op::Sigmoid => elementwise::sigmoid(x),
        Op::MaxPool2d(attrs) => pool::maxpool2d(x, attrs),
        Op::AvgPool2d(attrs) => pool::avgpool2d(x, attrs),
        Op::GlobalAvgPool => pool::global_avgpool(x),
        Op::Concat { axis } => shape::concat(args, *axis),
        Op::Replicate { times } => shape::replicate(x, *times),
        Op::ChannelShuffle { groups } => shape::channel_shuffle(x, *groups),
        Op::Flatten => shape::flatten(x),
        Op::Reshape { shape } => shape::reshape(x, shape),
        Op::Softmax { axis } => reduce::softmax(x, *axis),
        Op::Argmax { axis } => reduce::argmax(x, *axis),
    }
}

// ---------------------------------------------------------------------------
// Helpers shared by the op families.

/// The f32 elements of an `f32` tensor.
pub(crate) fn f32s<'a>(t: &'a Tensor, what: &str) -> Result<&'a [f32], OpError> {
    match (&t.data, t.elem) {
        (TensorData::F32(v), ElemType::F32) if v.len() == numel(&t.dims)? => Ok(v),
        _ => Err(op_err!(
            "{what}: expected an f32 tensor, got {}{:?}",
            t.elem,
            t.dims
        )),
    }
}

/// The numeric values of an integer-typed tensor: borrowed, or unpacked from
/// packed `b1` storage.
pub(crate) fn ints<'a>(t: &'a Tensor, what: &str) -> Result<Cow<'a, [i32]>, OpError> {
    match &t.data {
        TensorData::Int(v) if t.elem.is_integer() && v.len() == numel(&t.dims)? => {
            Ok(Cow::Borrowed(v))
        }
        TensorData::Bits(w) if t.check_storage().is_ok() => {
            let (rows, c) = bnnc_ir::tensor::b1_rows(&t.dims).unwrap_or((0, 0));
            let wpr = bnnc_ir::tensor::b1_row_words(c);
            let bits = w
                .chunks_exact(wpr.max(1))
                .take(if wpr == 0 { 0 } else { rows })
                .flat_map(|row| {
                    (0..c).map(move |k| 1 - 2 * ((row[k / 64] >> (k % 64)) & 1) as i32)
                });
            Ok(Cow::Owned(try_collect(numel(&t.dims)?, bits)?))
        }
        _ => Err(op_err!(
            "{what}: expected an integer tensor, got {}{:?}",
            t.elem,
            t.dims
        )),
    }
}

/// The element values as f32 (integers converted with round-to-nearest, exact
/// below 2^24); borrowed when the tensor is already `f32`.
pub(crate) fn as_f32<'a>(t: &'a Tensor, what: &str) -> Result<Cow<'a, [f32]>, OpError> {
    match &t.data {
        TensorData::F32(_) => f32s(t, what).map(Cow::Borrowed),
        TensorData::Int(_) | TensorData::Bits(_) => {
            let v = ints(t, what)?;
            Ok(Cow::Owned(try_collect(
                v.len(),
                v.iter().map(|&x| x as f32),
            )?))
        }
    }
}

/// The elements of `t` in `F32` or `Int` storage (a copy; packed `b1`
/// unpacked), for ops that move elements without changing them.
pub(crate) fn unpacked_data(t: &Tensor, what: &str) -> Result<TensorData, OpError> {
    checked(t, what)?;
    Ok(match &t.data {
        TensorData::Bits(_) => TensorData::Int(ints(t, what)?.into_owned()),
        TensorData::F32(v) => TensorData::F32(try_collect(v.len(), v.iter().copied())?),
        TensorData::Int(v) => TensorData::Int(try_collect(v.len(), v.iter().copied())?),
    })
}

/// Number of elements of `dims`, or an error when it overflows.
pub(crate) fn numel(dims: &[usize]) -> Result<usize, OpError> {
    dims.iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| op_err!("dims {dims:?} overflow"))
}

/// Resolves a possibly negative `axis` against `rank`.
pub fn norm_axis(axis: i64, rank: usize) -> Result<usize, OpError> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if (0..r).contains(&a) {
        Ok(a as usize)
    } else {
        Err(op_err!("axis {axis} is out of range for rank {rank}"))
    }
}

/// The last dimension (channels) of `t`, which must have rank >= 1.
pub(crate) fn channels(t: &Tensor, what: &str) -> Result<usize, OpError> {
    t.dims
        .last()
        .copied()
        .ok_or_else(|| op_err!("{what}: expected rank >= 1, got a scalar"))
}

/// A per-channel `f32 [C]` parameter.
pub(crate) fn per_channel<'a>(t: &'a Tensor, c: usize, what: &str) -> Result<&'a [f32], OpError> {
    let v = f32s(t, what)?;
    if t.dims.as_slice() != [c] {
        return Err(op_err!("{what}: expected f32[{c}], got dims {:?}", t.dims));
    }
    Ok(v)
}

/// A new f32 tensor (the length is checked by the callers' construction).
pub(crate) fn f32_tensor(dims: Vec<usize>, data: Vec<f32>) -> OpResult {
    if numel(&dims)? != data.len() {
        return Err(op_err!(
            "result dims {dims:?} do not hold {} elements",
            data.len()
        ));
    }
    Ok(Tensor {
        elem: ElemType::F32,
        dims,
        data: TensorData::F32(data),
    })
}

/// A new integer tensor of element type `elem`.
pub(crate) fn int_tensor(elem: ElemType, dims: Vec<usize>, data: Vec<i32>) -> OpResult {
    if numel(&dims)? != data.len() || !elem.is_integer() {
        return Err(op_err!(
            "result {elem}{dims:?} does not hold {} integers",
            data.len()
        ));
    }
    Ok(Tensor {
        elem,
        dims,
        data: TensorData::Int(data),
    })
}

/// A tensor of `elem` with the same storage kind as `data`.
pub(crate) fn same_kind(elem: ElemType, dims: Vec<usize>, data: TensorData) -> OpResult {
    match data {
        TensorData::F32(v) if elem == ElemType::F32 => f32_tensor(dims, v),
        TensorData::Int(v) => int_tensor(elem, dims, v),
        TensorData::F32(_) => Err(op_err!("{elem} result with f32 data")),
        TensorData::Bits(_) => Err(op_err!("{elem} result with packed data")),
    }
}

/// Checks that a tensor's storage length matches its dims.
pub(crate) fn checked(t: &Tensor, what: &str) -> Result<(), OpError> {
    match &t.data {
        TensorData::F32(_) => f32s(t, what).map(|_| ()),
        TensorData::Int(_) => ints(t, what).map(|_| ()),
        TensorData::Bits(_) => t.check_storage().map_err(|m| op_err!("{what}: {m}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bnnc_ir::{Conv2dAttrs, Dim, PoolAttrs};

    fn f(dims: &[usize], v: &[f32]) -> Tensor {
        Tensor::f32(dims.to_vec(), v.to_vec())
    }

    fn b1(dims: &[usize], v: &[i32]) -> Tensor {
        Tensor::int(ElemType::B1, dims.to_vec(), v.to_vec())
    }

    #[test]
    fn broadcast_indices() {
        let (dims, ia, ib) = elementwise::broadcast(&[2, 1], &[3]).unwrap();
        assert_eq!(dims, [2, 3]);
        assert_eq!(ia, [0, 0, 0, 1, 1, 1]);
        assert_eq!(ib, [0, 1, 2, 0, 1, 2]);
        let (dims, ia, ib) = elementwise::broadcast(&[], &[2]).unwrap();
        assert_eq!((dims, ia, ib), (vec![2], vec![0, 0], vec![0, 1]));
        assert!(elementwise::broadcast(&[2], &[3]).is_none());
    }

    #[test]
    fn threshold_types() {
        assert_eq!(quant::threshold_type(0), None);
        assert_eq!(quant::threshold_type(1), Some(ElemType::B1));
        assert_eq!(quant::threshold_type(3), Some(ElemType::UInt(2)));
        assert_eq!(quant::threshold_type(7), Some(ElemType::UInt(3)));
        assert_eq!(quant::threshold_type(255), Some(ElemType::UInt(8)));
        assert_eq!(quant::threshold_type(256), None);
    }

    #[test]
    fn bad_operands_are_errors_not_panics() {
        let x = f(&[1, 3], &[1.0, 2.0, 3.0]);
        // dense with mismatched K, and with an unsupported pair.
        assert!(dot::dense(&x, &f(&[2, 2], &[0.0; 4])).is_err());
        assert!(dot::dense(&b1(&[1, 3], &[1; 3]), &f(&[1, 3], &[0.0; 3])).is_err());
        // conv2d: groups that do not divide, a kernel that does not fit, rank 2.
        let img = b1(&[1, 2, 2, 3], &[1; 12]);
        let w = b1(&[2, 1, 1, 3], &[1; 6]);
        let attrs = Conv2dAttrs {
            groups: 2,
            ..Conv2dAttrs::default()
        };
        assert!(dot::conv2d(&img, &w, &attrs).is_err());
        let big = b1(&[1, 3, 3, 3], &[1; 27]);
        assert!(dot::conv2d(&img, &big, &Conv2dAttrs::default()).is_err());
        let zero_stride = Conv2dAttrs {
            stride: [0, 1],
            ..Conv2dAttrs::default()
        };
        assert!(dot::conv2d(&img, &w, &zero_stride).is_err());
        assert!(dot::conv2d(&x, &w, &Conv2dAttrs::default()).is_err());
        // threshold with thresholds of the wrong shape, kind or dir.
        let xi = Tensor::int(ElemType::I32, vec![1, 2], vec![1, 2]);
        let t = Tensor::int(ElemType::I32, vec![3, 1], vec![0; 3]);
        assert!(quant::threshold(&xi, &t, None).is_err());
        let tf = f(&[1, 1], &[0.0]);
        assert!(quant::threshold(&xi, &tf, None).is_err());
        let t = Tensor::int(ElemType::I32, vec![1, 1], vec![0]);
        let dir = Tensor::int(ElemType::I32, vec![2], vec![1, 0]);
        assert!(quant::threshold(&xi, &t, Some(&dir)).is_err());
        // A pool window entirely in the padding.
        let a = PoolAttrs {
            kernel: [1, 1],
            stride: [1, 1],
            padding: [1, 0, 0, 0],
        };
        assert!(pool::maxpool2d(&img, &a).is_err());
        assert!(pool::avgpool2d(&img, &a).is_err());
        // Shape ops.
        assert!(shape::concat(&[&x, &img], 0).is_err());
        assert!(shape::concat(&[&x], 5).is_err());
        assert!(shape::channel_shuffle(&x, 2).is_err());
        assert!(shape::replicate(&x, 0).is_err());
        assert!(shape::reshape(&x, &[Dim::Fixed(2), Dim::Fixed(2)]).is_err());
        // reshape resolves a leading N from x's first dimension.
        let r = shape::reshape(&x, &[Dim::Batch, Dim::Fixed(3), Dim::Fixed(1)]).unwrap();
        assert_eq!(r.dims, [1, 3, 1]);
        assert!(reduce::argmax(&f(&[2, 0], &[]), 1).is_err());
        // A tensor whose data does not match its dims.
        let broken = Tensor {
            elem: ElemType::F32,
            dims: vec![2, 2],
            data: TensorData::F32(vec![0.0]),
        };
        assert!(elementwise::sign(&broken).is_err());
        assert!(elementwise::relu(&broken).is_err());
        assert!(shape::flatten(&broken).is_err());
        // Leaf ops and wrong arity through `eval`.
        assert!(eval(&Op::Dense, &[&x]).is_err());
        assert!(eval(&Op::Flatten, &[]).is_err());
        let leaf = Op::Input(bnnc_ir::TensorType::fixed(ElemType::F32, &[1]));
        assert!(eval(&leaf, &[]).is_err());
    }

    #[test]
    fn i32_dot_lanes_match_sequential_sum() {
        // 8 lanes plus a tail of 3; the wrapping sum is order-independent.
        let a: Vec<i32> = (0..19).map(|i| i * 7 - 50).collect();
        let w: Vec<i32> = (0..19).map(|i| 3 - i).collect();
        let x = Tensor::int(ElemType::SInt(8), vec![1, 19], a.clone());
        let wt = Tensor::int(ElemType::SInt(8), vec![1, 19], w.clone());
        let y = dot::dense(&x, &wt).unwrap();
        let want: i32 = a.iter().zip(&w).map(|(p, q)| p * q).sum();
        assert_eq!(y.as_int().unwrap()[..], [want]);
    }
}
