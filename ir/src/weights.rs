//! Weights I/O: safetensors files holding the tensors a model's `@key`s name.
//!
//! Storage dtypes per element type: `f32` as F32, `i32` as I32, `b1`, `ternary`
//! and `iN` as I8 holding numeric values, `uN` as U8. A stored tensor is checked
//! against the type its `weight` op declares when the model is loaded.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use crate::tensor::{Tensor, TensorData};
use crate::types::{ElemType, TensorType};

/// A set of named tensors, as read from or written to a safetensors file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Weights {
    pub tensors: BTreeMap<String, Tensor>,
}

/// How a stored tensor fails to match a declared type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WeightMismatch {
    #[error("is missing from the weights file")]
    Missing,
    #[error("is stored as {found} but the model declares {expected}, stored as {storage}")]
    Dtype {
        found: String,
        expected: ElemType,
        storage: &'static str,
    },
    #[error("has shape {found:?} in the weights file but the model declares {expected}")]
    Shape { found: Vec<usize>, expected: String },
    #[error("holds {value} at flat index {index}, which is not a {elem} value")]
    Value {
        index: usize,
        value: i64,
        elem: ElemType,
    },
}

/// The safetensors dtype name used to store `elem`.
pub fn storage_dtype(elem: ElemType) -> &'static str {
    match elem {
        ElemType::F32 => "F32",
        ElemType::I32 => "I32",
        ElemType::B1 | ElemType::Ternary | ElemType::SInt(_) => "I8",
        ElemType::UInt(_) => "U8",
    }
}

impl Weights {
    pub fn new() -> Weights {
        Weights::default()
    }

    pub fn insert(&mut self, key: impl Into<String>, t: Tensor) {
        self.tensors.insert(key.into(), t);
    }

    pub fn get(&self, key: &str) -> Option<&Tensor> {
        self.tensors.get(key)
    }

    /// The tensor under `key`, checked against and retyped to `ty` (e.g. an I8
    /// tensor declared `b1` must hold only -1 and +1). Weights have no batch
    /// dimension, so `ty` must be fully fixed.
    pub fn get_as(&self, key: &str, ty: &TensorType) -> Result<Tensor, WeightMismatch> {
        let t = self.tensors.get(key).ok_or(WeightMismatch::Missing)?;
        let stored = storage_dtype(t.elem);
        let want = storage_dtype(ty.elem);
        if stored != want {
            return Err(WeightMismatch::Dtype {
                found: stored.to_string(),
                expected: ty.elem,
                storage: want,
            });
        }
        let dims: Option<Vec<usize>> = ty.shape.iter().map(|d| d.fixed()).collect();
        if dims.as_deref() != Some(&t.dims[..]) {
            return Err(WeightMismatch::Shape {
                found: t.dims.clone(),
                expected: ty.to_string(),
            });
        }
        let mut out = t.clone();
        out.elem = ty.elem;
        if let Some((index, value)) = out.check_values() {
            return Err(WeightMismatch::Value {
                index,
                value,
                elem: ty.elem,
            });
        }
        Ok(out)
    }

    /// Parses safetensors bytes. F32, I32, I8 and U8 tensors are accepted.
    pub fn from_bytes(bytes: &[u8]) -> Result<Weights, String> {
        let st =
            SafeTensors::deserialize(bytes).map_err(|e| format!("not a safetensors file: {e}"))?;
        let mut w = Weights::new();
        for (name, view) in st.tensors() {
            let dims = view.shape().to_vec();
            let data = view.data();
            let t = match view.dtype() {
                Dtype::F32 => Tensor::f32(
                    dims,
                    data.chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                ),
                Dtype::I32 => Tensor::int(
                    ElemType::I32,
                    dims,
                    data.chunks_exact(4)
                        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                ),
                Dtype::I8 => Tensor::int(
                    ElemType::SInt(8),
                    dims,
                    data.iter().map(|&b| b as i8 as i32).collect(),
                ),
                Dtype::U8 => Tensor::int(
                    ElemType::UInt(8),
                    dims,
                    data.iter().map(|&b| b as i32).collect(),
                ),
                other => {
                    return Err(format!(
                        "tensor `{name}` has dtype {other:?}; bnnc reads F32, I32, I8 and U8"
                    ))
                }
            };
            w.insert(name, t);
        }
        Ok(w)
    }

    /// Serialises to safetensors bytes (each tensor in its storage dtype).
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        struct Raw {
            dtype: Dtype,
            shape: Vec<usize>,
            bytes: Vec<u8>,
        }
        impl safetensors::View for &Raw {
            fn dtype(&self) -> Dtype {
                self.dtype
            }
            fn shape(&self) -> &[usize] {
                &self.shape
            }
            fn data(&self) -> std::borrow::Cow<'_, [u8]> {
                std::borrow::Cow::Borrowed(&self.bytes)
            }
            fn data_len(&self) -> usize {
                self.bytes.len()
            }
        }
        let mut raws = Vec::new();
        for (name, t) in &self.tensors {
            let (dtype, bytes) = match (&t.data, storage_dtype(t.elem)) {
                (TensorData::F32(v), _) => {
                    (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect())
                }
                (TensorData::Int(v), "I32") => {
                    (Dtype::I32, v.iter().flat_map(|x| x.to_le_bytes()).collect())
                }
                (TensorData::Int(v), "I8") => {
                    (Dtype::I8, v.iter().map(|&x| x as i8 as u8).collect())
                }
                (TensorData::Int(v), _) => (Dtype::U8, v.iter().map(|&x| x as u8).collect()),
            };
            raws.push((
                name.clone(),
                Raw {
                    dtype,
                    shape: t.dims.clone(),
                    bytes,
                },
            ));
        }
        safetensors::serialize(raws.iter().map(|(n, r)| (n.clone(), r)), None)
            .map_err(|e| format!("cannot serialise weights: {e}"))
    }

    /// Reads a safetensors file.
    pub fn load(path: &Path) -> Result<Weights, crate::Error> {
        let bytes = std::fs::read(path).map_err(|source| crate::Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Weights::from_bytes(&bytes).map_err(|message| crate::Error::Weights {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Writes a safetensors file.
    pub fn save(&self, path: &Path) -> Result<(), crate::Error> {
        let bytes = self.to_bytes().map_err(|message| crate::Error::Weights {
            path: path.to_path_buf(),
            message,
        })?;
        std::fs::write(path, bytes).map_err(|source| crate::Error::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_bytes() {
        let mut w = Weights::new();
        w.insert("a", Tensor::f32(vec![2], vec![1.5, -2.0]));
        w.insert("b", Tensor::int(ElemType::I32, vec![1, 2], vec![7, -9]));
        w.insert(
            "c",
            Tensor::int(ElemType::SInt(8), vec![3], vec![-1, 1, -1]),
        );
        w.insert("d", Tensor::int(ElemType::UInt(8), vec![2], vec![0, 255]));
        let back = Weights::from_bytes(&w.to_bytes().unwrap()).unwrap();
        assert_eq!(back, w);
    }

    #[test]
    fn typed_access_checks_values() {
        let mut w = Weights::new();
        w.insert("c", Tensor::int(ElemType::SInt(8), vec![3], vec![-1, 0, 1]));
        let b1 = TensorType::fixed(ElemType::B1, &[3]);
        assert!(matches!(
            w.get_as("c", &b1),
            Err(WeightMismatch::Value { index: 1, .. })
        ));
        let tern = TensorType::fixed(ElemType::Ternary, &[3]);
        assert_eq!(w.get_as("c", &tern).unwrap().elem, ElemType::Ternary);
        let f = TensorType::fixed(ElemType::F32, &[3]);
        assert!(matches!(
            w.get_as("c", &f),
            Err(WeightMismatch::Dtype { .. })
        ));
        assert_eq!(w.get_as("zz", &f), Err(WeightMismatch::Missing));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(Weights::from_bytes(b"not safetensors").is_err());
        assert!(Weights::from_bytes(&[]).is_err());
    }
}
