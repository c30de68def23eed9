//! Concrete tensors: the values weights files hold and the interpreter computes.

use crate::types::{ElemType, TensorType};

/// Element storage. `f32` tensors hold `F32`; every integer element type (`i32`,
/// `b1`, `ternary`, `uN`, `iN`) holds its numeric value in `Int` (so a `b1` element
/// is -1 or +1, never a bit).
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    Int(Vec<i32>),
}

/// A dense, row-major tensor with concrete dimensions.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub elem: ElemType,
    pub dims: Vec<usize>,
    pub data: TensorData,
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

    /// The element values as `f32` (integers converted exactly where |v| < 2^24).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            TensorData::F32(v) => v.clone(),
            TensorData::Int(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Some(v),
            TensorData::Int(_) => None,
        }
    }

    pub fn as_int(&self) -> Option<&[i32]> {
        match &self.data {
            TensorData::Int(v) => Some(v),
            TensorData::F32(_) => None,
        }
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
    pub fn check_values(&self) -> Option<(usize, i64)> {
        match &self.data {
            TensorData::F32(_) => None,
            TensorData::Int(v) => v
                .iter()
                .enumerate()
                .find(|(_, &x)| !self.elem.admits(x as i64))
                .map(|(i, &x)| (i, x as i64)),
        }
    }
}
