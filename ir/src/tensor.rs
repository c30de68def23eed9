//! Concrete tensors: the values weights files hold and the interpreter computes.
//!
//! # Packed `b1`
//!
//! A `b1` tensor may hold its elements as bits ([`TensorData::Bits`]) instead
//! of one `i32` each: 32 times less memory, which is how weights files load
//! (see [`crate::weights`]). The layout is the one of compiled code (design.md,
//! section 2): the last axis of `C` elements is a row of `ceil(C / 64)` words
//! ([`b1_row_words`]); element `c` of a row is bit `c % 64` of word `c / 64`; a
//! set bit means -1 and a clear bit +1; the unused tail bits of a row's last
//! word are 0. A scalar is one row of one element. Code that needs values
//! unpacks one tensor on demand ([`Tensor::as_int`]); equality compares
//! values, whatever the storage.

use std::borrow::Cow;

use crate::types::{ElemType, TensorType};

/// Element storage. `f32` tensors hold `F32`; every integer element type (`i32`,
/// `b1`, `ternary`, `uN`, `iN`) may hold its numeric value in `Int` (so a `b1`
/// element is -1 or +1, never a bit); a `b1` tensor may instead hold `Bits`
/// (the module doc's layout). The derived equality compares storage; use
/// [`Tensor`]'s, which compares values.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    Int(Vec<i32>),
    /// Packed `b1` elements, `rows * ceil(C / 64)` words (module doc).
    Bits(Vec<u64>),
}

/// A dense, row-major tensor with concrete dimensions.
#[derive(Clone, Debug)]
pub struct Tensor {
    pub elem: ElemType,
    pub dims: Vec<usize>,
    pub data: TensorData,
}

/// Words one packed row of `c` elements takes.
pub fn b1_row_words(c: usize) -> usize {
    c.div_ceil(64)
}

/// Rows and row length (`C`) of packed `b1` data of logical shape `dims` (a
/// scalar is one row of one element), or `None` when the row count overflows.
pub fn b1_rows(dims: &[usize]) -> Option<(usize, usize)> {
    match dims.split_last() {
        None => Some((1, 1)),
        Some((&c, rest)) => Some((rest.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?, c)),
    }
}

/// Words packed `b1` data of logical shape `dims` takes, or `None` when that
/// overflows `usize`.
pub fn b1_packed_len(dims: &[usize]) -> Option<usize> {
    let (rows, c) = b1_rows(dims)?;
    rows.checked_mul(b1_row_words(c))
}

/// Packs ±1 values (row-major, logical shape `dims`) into words (module doc).
/// A value other than -1 and +1 is an error naming the first, as (index, value).
pub fn pack_b1_words(dims: &[usize], values: &[i32]) -> Result<Vec<u64>, (usize, i32)> {
    let (rows, c) = b1_rows(dims).unwrap_or((0, 0));
    let wpr = b1_row_words(c);
    let mut out = vec![0u64; rows.saturating_mul(wpr)];
    if c == 0 {
        return Ok(out);
    }
    for (i, &v) in values.iter().enumerate() {
        let (r, k) = (i / c, i % c);
        match v {
            1 => {}
            -1 => out[r * wpr + k / 64] |= 1 << (k % 64),
            other => return Err((i, other)),
        }
    }
    Ok(out)
}

/// Unpacks words of logical shape `dims` to ±1 values (the inverse of
/// [`pack_b1_words`]); rows missing from `words` are not produced.
pub fn unpack_b1_words(dims: &[usize], words: &[u64]) -> Vec<i32> {
    let (rows, c) = b1_rows(dims).unwrap_or((0, 0));
    let wpr = b1_row_words(c);
    let mut out = Vec::with_capacity(rows.saturating_mul(c));
    if wpr == 0 {
        return out;
    }
    for row in words.chunks_exact(wpr).take(rows) {
        out.extend((0..c).map(|k| 1 - 2 * ((row[k / 64] >> (k % 64)) & 1) as i32));
    }
    out
}

/// The first row (index) of packed words with a set bit beyond its `c`
/// elements, with the offending word.
fn b1_tail_error(words: &[u64], c: usize) -> Option<(usize, u64)> {
    let wpr = b1_row_words(c);
    let used = c % 64;
    if wpr == 0 || used == 0 {
        return None;
    }
    words
        .chunks_exact(wpr)
        .map(|row| row[wpr - 1])
        .enumerate()
        .find(|&(_, last)| last >> used != 0)
}

/// Checks packed `b1` words against logical shape `dims`: exactly the words
/// of `dims`, every unused tail bit 0.
pub fn check_b1_words(dims: &[usize], words: &[u64]) -> Result<(), String> {
    let need =
        b1_packed_len(dims).ok_or_else(|| format!("dims {dims:?} overflow the address space"))?;
    if words.len() != need {
        return Err(format!(
            "{} words stored, but packed dims {dims:?} need {need}",
            words.len()
        ));
    }
    let c = b1_rows(dims).map_or(1, |(_, c)| c);
    if let Some((row, word)) = b1_tail_error(words, c) {
        return Err(format!(
            "packed row {row} has nonzero unused bits in its last word \
             (0x{word:016x}; only the low {} bits hold elements)",
            c % 64
        ));
    }
    Ok(())
}

impl Tensor {
    /// An `f32` tensor. Panics if `data.len()` is not the product of `dims`
    /// (a programming error, not an input error).
    pub fn f32(dims: Vec<usize>, data: Vec<f32>) -> Tensor {
        assert_eq!(dims.iter().product::<usize>(), data.len(), "tensor size");
        Tensor {
            elem: ElemType::F32,
            dims,
            data: TensorData::F32(data),
        }
    }

    /// An integer-valued tensor of element type `elem` (values are not checked;
    /// see [`Tensor::check_values`]).
    pub fn int(elem: ElemType, dims: Vec<usize>, data: Vec<i32>) -> Tensor {
        assert!(elem.is_integer(), "Tensor::int with f32");
        assert_eq!(dims.iter().product::<usize>(), data.len(), "tensor size");
        Tensor {
            elem,
            dims,
            data: TensorData::Int(data),
        }
    }

    /// A `b1` tensor of packed words (module doc). Panics if `words` does not
    /// hold exactly the words of `dims` or has a nonzero tail bit (a
    /// programming error; [`Tensor::check_storage`] checks such a tensor).
    pub fn b1_packed(dims: Vec<usize>, words: Vec<u64>) -> Tensor {
        let t = Tensor {
            elem: ElemType::B1,
            dims,
            data: TensorData::Bits(words),
        };
        if let Err(e) = t.check_storage() {
            panic!("Tensor::b1_packed: {e}");
        }
        t
    }

    /// A tensor of zeros (for `b1`, of +1: the zero bit).
    pub fn zeros(elem: ElemType, dims: Vec<usize>) -> Tensor {
        let n = dims.iter().product();
        match elem {
            ElemType::F32 => Tensor::f32(dims, vec![0.0; n]),
            ElemType::B1 => Tensor::int(elem, dims, vec![1; n]),
            _ => Tensor::int(elem, dims, vec![0; n]),
        }
    }

    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }

    /// Bytes the elements take in memory (a packed `b1` tensor 8 per 64 elements).
    pub fn storage_bytes(&self) -> usize {
        match &self.data {
            TensorData::F32(v) => std::mem::size_of_val(v.as_slice()),
            TensorData::Int(v) => std::mem::size_of_val(v.as_slice()),
            TensorData::Bits(v) => std::mem::size_of_val(v.as_slice()),
        }
    }

    /// The element values as `f32` (integers converted exactly where |v| < 2^24).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            TensorData::F32(v) => v.clone(),
            TensorData::Int(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::Bits(_) => self
                .as_int()
                .unwrap_or_default()
                .iter()
                .map(|&x| x as f32)
                .collect(),
        }
    }

    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Some(v),
            TensorData::Int(_) | TensorData::Bits(_) => None,
        }
    }

    /// The numeric values of an integer tensor: borrowed when stored as `Int`,
    /// unpacked (a new buffer of 4 bytes per element) when packed `b1`.
    /// `None` for `f32` data.
    pub fn as_int(&self) -> Option<Cow<'_, [i32]>> {
        match &self.data {
            TensorData::Int(v) => Some(Cow::Borrowed(v)),
            TensorData::Bits(w) => Some(Cow::Owned(unpack_b1_words(&self.dims, w))),
            TensorData::F32(_) => None,
        }
    }

    /// The numeric values of an integer tensor in row-major order, read one
    /// at a time from any storage (a packed `b1` tensor is not unpacked into
    /// a buffer). `None` for `f32` data.
    pub fn int_iter(&self) -> Option<Box<dyn Iterator<Item = i32> + '_>> {
        match &self.data {
            TensorData::Int(v) => Some(Box::new(v.iter().copied())),
            TensorData::Bits(w) => {
                let (rows, c) = b1_rows(&self.dims)?;
                let wpr = b1_row_words(c);
                Some(Box::new((0..rows).flat_map(move |r| {
                    (0..c).map(move |k| 1 - 2 * ((w[r * wpr + k / 64] >> (k % 64)) & 1) as i32)
                })))
            }
            TensorData::F32(_) => None,
        }
    }

    /// The packed words of a tensor stored as [`TensorData::Bits`].
    pub fn as_bits(&self) -> Option<&[u64]> {
        match &self.data {
            TensorData::Bits(w) => Some(w),
            _ => None,
        }
    }

    /// The packed words (module doc) of a `b1` tensor, whatever its storage:
    /// borrowed when packed, packed from its values when stored as `Int`.
    /// `None` for another element type or an `Int` value other than ±1.
    pub fn to_b1_words(&self) -> Option<Cow<'_, [u64]>> {
        if self.elem != ElemType::B1 {
            return None;
        }
        match &self.data {
            TensorData::Bits(w) => Some(Cow::Borrowed(w)),
            TensorData::Int(v) => pack_b1_words(&self.dims, v).ok().map(Cow::Owned),
            TensorData::F32(_) => None,
        }
    }

    /// This tensor with a `b1` tensor's `Int` values packed into
    /// [`TensorData::Bits`]; any other tensor (or one holding a value other
    /// than ±1) unchanged.
    pub fn into_packed(self) -> Tensor {
        match (&self.data, self.elem) {
            (TensorData::Int(v), ElemType::B1) if self.check_storage().is_ok() => {
                match pack_b1_words(&self.dims, v) {
                    Ok(words) => Tensor {
                        elem: self.elem,
                        dims: self.dims,
                        data: TensorData::Bits(words),
                    },
                    Err(_) => self,
                }
            }
            _ => self,
        }
    }

    /// This tensor with every element in `F32` or `Int` storage: borrowed
    /// unless it is packed, then unpacked.
    pub fn unpacked(&self) -> Cow<'_, Tensor> {
        match &self.data {
            TensorData::Bits(w) => Cow::Owned(Tensor {
                elem: self.elem,
                dims: self.dims.clone(),
                data: TensorData::Int(unpack_b1_words(&self.dims, w)),
            }),
            _ => Cow::Borrowed(self),
        }
    }

    /// Checks that the storage fits the element type and the dims: `F32`
    /// exactly for `f32`, `Bits` only for `b1` (with zero tail bits), and as
    /// many elements (or words) as the dims need.
    pub fn check_storage(&self) -> Result<(), String> {
        let numel = self
            .dims
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| format!("dims {:?} overflow the address space", self.dims))?;
        let kind = |what: &str| format!("element type {} stored as {what} data", self.elem);
        let (len, need) = match &self.data {
            TensorData::F32(v) if self.elem == ElemType::F32 => (v.len(), numel),
            TensorData::F32(_) => return Err(kind("f32")),
            TensorData::Int(_) if self.elem == ElemType::F32 => return Err(kind("integer")),
            TensorData::Int(v) => (v.len(), numel),
            TensorData::Bits(_) if self.elem != ElemType::B1 => return Err(kind("packed b1")),
            TensorData::Bits(w) => return check_b1_words(&self.dims, w),
        };
        if len != need {
            return Err(format!(
                "{len} elements stored, but dims {:?} need {need}",
                self.dims
            ));
        }
        Ok(())
    }

    /// Does this tensor have type `ty` for some batch size (or exactly, when unbatched)?
    pub fn matches(&self, ty: &TensorType) -> bool {
        self.elem == ty.elem
            && self.dims.len() == ty.rank()
            && self
                .dims
                .iter()
                .zip(&ty.shape)
                .all(|(&d, s)| s.fixed().is_none_or(|f| f == d))
    }

    /// The first element that is not a value of the element type, as (index, value).
    /// (Packed `b1` elements are ±1 by construction.)
    pub fn check_values(&self) -> Option<(usize, i64)> {
        match &self.data {
            TensorData::F32(_) | TensorData::Bits(_) => None,
            TensorData::Int(v) => v
                .iter()
                .enumerate()
                .find(|(_, &x)| !self.elem.admits(x as i64))
                .map(|(i, &x)| (i, x as i64)),
        }
    }
}

/// Equal element types, dims and element values, whatever the storage (a
/// packed `b1` tensor equals the `Int` tensor of its values). `f32` elements
/// compare as floats (so a NaN is unequal to itself).
impl PartialEq for Tensor {
    fn eq(&self, other: &Tensor) -> bool {
        if self.elem != other.elem || self.dims != other.dims {
            return false;
        }
        match (&self.data, &other.data) {
            (TensorData::F32(a), TensorData::F32(b)) => a == b,
            (TensorData::Int(a), TensorData::Int(b)) => a == b,
            // Same dims and zero tail bits: equal words are equal values.
            (TensorData::Bits(a), TensorData::Bits(b)) => a == b,
            (TensorData::Bits(_), TensorData::Int(_))
            | (TensorData::Int(_), TensorData::Bits(_)) => self.as_int() == other.as_int(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(n: usize) -> Vec<i32> {
        (0..n)
            .map(|i| if (i * 7 + i / 3) % 5 < 2 { -1 } else { 1 })
            .collect()
    }

    #[test]
    fn packed_b1_round_trips_and_equals_its_values() {
        for dims in [
            vec![],
            vec![0],
            vec![3, 0],
            vec![1],
            vec![2, 63],
            vec![3, 64],
            vec![2, 3, 65],
            vec![130],
        ] {
            let n = dims.iter().product();
            let v = pattern(n);
            let t = Tensor::int(ElemType::B1, dims.clone(), v.clone());
            let p = t.clone().into_packed();
            assert!(p.as_bits().is_some(), "{dims:?}");
            assert_eq!(p.storage_bytes(), 8 * b1_packed_len(&dims).unwrap());
            assert_eq!(p.as_int().unwrap(), v, "{dims:?}");
            assert_eq!(p.int_iter().unwrap().collect::<Vec<_>>(), v, "{dims:?}");
            assert_eq!(t.int_iter().unwrap().collect::<Vec<_>>(), v, "{dims:?}");
            assert_eq!(p, t, "{dims:?}");
            assert_eq!(t, p, "{dims:?}");
            assert_eq!(p.unpacked().into_owned().data, TensorData::Int(v.clone()));
            assert_eq!(t.to_b1_words().unwrap(), p.as_bits().unwrap());
            assert_eq!(p.to_f32_vec(), t.to_f32_vec());
            assert_eq!(p.check_values(), None);
            p.check_storage().unwrap();
        }
    }

    #[test]
    fn packed_layout_is_the_compiled_one() {
        // Row 0: -1 at 0 and 64; row 1: -1 at 1. C = 65: two words per row.
        let mut v = vec![1; 130];
        v[0] = -1;
        v[64] = -1;
        v[65 + 1] = -1;
        let p = Tensor::int(ElemType::B1, vec![2, 65], v).into_packed();
        assert_eq!(p.as_bits().unwrap(), [1, 1, 2, 0]);
    }

    #[test]
    fn unequal_values_and_malformed_storage() {
        let t = Tensor::int(ElemType::B1, vec![2, 3], vec![1, -1, 1, 1, 1, 1]);
        let u = Tensor::int(ElemType::B1, vec![2, 3], vec![1, 1, 1, 1, 1, 1]).into_packed();
        assert_ne!(t, u);
        assert_ne!(u, t);
        let bad_tail = Tensor {
            elem: ElemType::B1,
            dims: vec![1, 3],
            data: TensorData::Bits(vec![8]),
        };
        assert!(bad_tail
            .check_storage()
            .unwrap_err()
            .contains("unused bits"));
        let short = Tensor {
            elem: ElemType::B1,
            dims: vec![2, 3],
            data: TensorData::Bits(vec![0]),
        };
        assert!(short.check_storage().is_err());
        let not_b1 = Tensor {
            elem: ElemType::I32,
            dims: vec![1],
            data: TensorData::Bits(vec![0]),
        };
        assert!(not_b1.check_storage().is_err());
        // A b1 `Int` tensor holding 0 stays unpacked (check_values reports it).
        let zero = Tensor::int(ElemType::B1, vec![2], vec![1, 0]).into_packed();
        assert_eq!(zero.check_values(), Some((1, 0)));
    }
}
