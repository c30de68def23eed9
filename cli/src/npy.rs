//! NumPy `.npy` files as model inputs and outputs.
//!
//! Reading accepts `float32`, `float64` (converted to f32), `int8`, `int16`,
//! `int32`, `int64`, `uint8`, `uint16` and `uint32` arrays in either byte order and
//! C or Fortran order. [`to_input`] then converts the array to a model input's
//! declared type: floats to `f32` as they are, integers to an integer type with
//! every value checked against the type (`b1` takes only -1 and +1), integers to
//! `f32` only when the f32 holds them exactly (every |x| <= 2^24 does; 16777217
//! is refused), and integral floats to an integer type. A file whose data is
//! shorter or longer than its header says is refused.
//!
//! Writing stores `f32` tensors as `<f4` and every integer type as `<i4` holding
//! the numeric values (a `b1` output is written as -1/+1).

use std::io;
use std::path::{Path, PathBuf};

use bnnc_ir::{ElemType, Tensor, TensorData, TensorType};
use npyz::{DType, NpyFile, Order, TypeChar, WriterBuilder};

/// Errors of reading or writing an `.npy` file, or of matching it to an input.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("{}: error: cannot read: {source}", bnnc_ir::error::escape_path(path))]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: error: cannot write: {source}", bnnc_ir::error::escape_path(path))]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file is not a readable `.npy` array, or does not fit the input.
    #[error(
        "{}: error: {}",
        bnnc_ir::error::escape_path(path),
        bnnc_ir::error::escape(message)
    )]
    Invalid { path: PathBuf, message: String },
}

/// The values of an `.npy` array, widened to one float and one integer kind.
#[derive(Clone, Debug, PartialEq)]
pub enum NpyValues {
    Float(Vec<f32>),
    Int(Vec<i64>),
}

/// An array read from an `.npy` file, in C (row-major) order.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    pub dims: Vec<usize>,
    /// The file's dtype as numpy writes it, e.g. `<f4`, for messages.
    pub dtype: String,
    pub values: NpyValues,
}

/// Reads an `.npy` file.
pub fn read(path: &Path) -> Result<NpyArray, NpyError> {
    let bytes = std::fs::read(path).map_err(|source| NpyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    decode(&bytes).map_err(|message| NpyError::Invalid {
        path: path.to_path_buf(),
        message,
    })
}

/// Decodes the bytes of an `.npy` file. The data must be exactly as long as
/// the header's shape and dtype say. Every error is one line.
pub fn decode(bytes: &[u8]) -> Result<NpyArray, String> {
    let file = NpyFile::new(bytes)
        .map_err(|e| format!("not an .npy file: {}", one_line(&e.to_string())))?;
    let dtype = file.dtype();
    let DType::Plain(ts) = &dtype else {
        return Err(format!(
            "structured dtype {} is not supported; bnnc reads plain numeric arrays",
            dtype.descr()
        ));
    };
    let dims: Vec<usize> = file
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| "dimension too large".to_string()))
        .collect::<Result<_, _>>()?;
    let n = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or("the shape's element count overflows")?;
    // Refuse a header that claims more data than the file holds before
    // allocating for it, and data the header does not account for.
    let size = ts.num_bytes().unwrap_or(0);
    let have = bytes.len().saturating_sub(data_offset(bytes));
    match n.checked_mul(size) {
        Some(need) if need == have => {}
        need => {
            let what = if need.is_some_and(|need| need < have) {
                "longer than its header says"
            } else {
                "truncated"
            };
            return Err(format!(
                "{what}: shape {dims:?} of {ts} needs {n} elements of {size} bytes but the \
                 file holds {have} bytes of data"
            ));
        }
    }
    let order = file.order();
    let unsupported = || {
        format!(
            "dtype {ts} is not supported; bnnc reads float32, float64, int8, int16, int32, \
             int64, uint8, uint16 and uint32"
        )
    };
    let io = |e: io::Error| format!("cannot read data: {e}");
    let values = match (ts.type_char(), size) {
        (TypeChar::Float, 4) => NpyValues::Float(file.into_vec::<f32>().map_err(io)?),
        (TypeChar::Float, 8) => NpyValues::Float(
            file.into_vec::<f64>()
                .map_err(io)?
                .into_iter()
                .map(|x| x as f32)
                .collect(),
        ),
        (TypeChar::Int, 1) => ints(file.into_vec::<i8>().map_err(io)?),
        (TypeChar::Int, 2) => ints(file.into_vec::<i16>().map_err(io)?),
        (TypeChar::Int, 4) => ints(file.into_vec::<i32>().map_err(io)?),
        (TypeChar::Int, 8) => NpyValues::Int(file.into_vec::<i64>().map_err(io)?),
        (TypeChar::Uint, 1) => ints(file.into_vec::<u8>().map_err(io)?),
        (TypeChar::Uint, 2) => ints(file.into_vec::<u16>().map_err(io)?),
        (TypeChar::Uint, 4) => ints(file.into_vec::<u32>().map_err(io)?),
        _ => return Err(unsupported()),
    };
    let len = match &values {
        NpyValues::Float(v) => v.len(),
        NpyValues::Int(v) => v.len(),
    };
    if len != n {
        return Err(format!(
            "holds {len} elements but its shape {dims:?} needs {n}"
        ));
    }
    let values = match order {
        Order::C => values,
        Order::Fortran => match values {
            NpyValues::Float(v) => NpyValues::Float(fortran_to_c(&v, &dims)),
            NpyValues::Int(v) => NpyValues::Int(fortran_to_c(&v, &dims)),
        },
    };
    Ok(NpyArray {
        dims,
        dtype: ts.to_string(),
        values,
    })
}

/// Where the data starts: after the magic, the version, the header length
/// (2 bytes in version 1, 4 in versions 2 and 3) and the header.
fn data_offset(bytes: &[u8]) -> usize {
    let le = |r: std::ops::Range<usize>| {
        bytes.get(r).map(|b| {
            b.iter()
                .rev()
                .fold(0usize, |acc, &x| acc << 8 | usize::from(x))
        })
    };
    match bytes.get(6) {
        Some(1) => le(8..10).map_or(usize::MAX, |h| 10 + h),
        _ => le(8..12).map_or(usize::MAX, |h| 12usize.saturating_add(h)),
    }
}

/// A multi-line message of the `.npy` reader on one line: its text, where
/// in the header the problem is (` --> line:col`) and what was expected
/// (`= expected ...`), without the quoted source lines.
fn one_line(message: &str) -> String {
    let mut out = String::new();
    for l in message.lines() {
        let (text, at) = match l.split_once("-->") {
            Some((text, at)) => (text.trim(), Some(at.trim())),
            None => (l.trim(), None),
        };
        let quoted_source = text.starts_with('|')
            || text
                .split_once('|')
                .is_some_and(|(n, _)| n.trim().chars().all(|c| c.is_ascii_digit()));
        if let Some(note) = text.strip_prefix('=') {
            out.push_str("; ");
            out.push_str(note.trim());
        } else if !text.is_empty() && !quoted_source {
            if !out.is_empty() {
                out.push_str("; ");
            }
            out.push_str(text.trim_end_matches(':'));
        }
        if let Some(at) = at {
            match at.split_once(':') {
                Some((line, col)) => {
                    out.push_str(&format!(" at line {line}, column {col} of the header"))
                }
                None => out.push_str(&format!(" at {at}")),
            }
        }
    }
    out
}

fn ints<T: Into<i64>>(v: Vec<T>) -> NpyValues {
    NpyValues::Int(v.into_iter().map(Into::into).collect())
}

/// Reorders column-major (Fortran) data to row-major.
fn fortran_to_c<T: Copy>(v: &[T], dims: &[usize]) -> Vec<T> {
    let mut out = Vec::with_capacity(v.len());
    let mut index = vec![0usize; dims.len()];
    for _ in 0..v.len() {
        // Fortran offset: first index fastest.
        let mut off = 0;
        let mut stride = 1;
        for (i, &d) in index.iter().zip(dims) {
            off += i * stride;
            stride *= d;
        }
        out.push(v[off]);
        // Advance the row-major index: last index fastest.
        for k in (0..dims.len()).rev() {
            index[k] += 1;
            if index[k] < dims[k] {
                break;
            }
            index[k] = 0;
        }
    }
    out
}

/// Converts an array to a tensor of the input type `ty` (whose batch dimension
/// takes the array's first dimension). `name` is the input's name, for messages.
pub fn to_input(arr: &NpyArray, name: &str, ty: &TensorType) -> Result<Tensor, String> {
    let shape_ok = arr.dims.len() == ty.rank()
        && arr
            .dims
            .iter()
            .zip(&ty.shape)
            .all(|(&d, s)| s.fixed().is_none_or(|f| f == d));
    if !shape_ok {
        return Err(format!(
            "array of shape {:?} does not fit input `{name}`: {ty}",
            arr.dims
        ));
    }
    let dims = arr.dims.clone();
    match (ty.elem, &arr.values) {
        (ElemType::F32, NpyValues::Float(v)) => Ok(Tensor::f32(dims, v.clone())),
        (ElemType::F32, NpyValues::Int(v)) => {
            let mut out = Vec::with_capacity(v.len());
            for (i, &x) in v.iter().enumerate() {
                let f = x as f32;
                // Casting f32 to i128 is exact for every integer-valued f32.
                if f as i128 != i128::from(x) {
                    return Err(format!(
                        "input `{name}` is {ty} but element {i} of the array is {x}, which no \
                         f32 holds exactly (the nearest is {f:.0}); integers fill f32 inputs \
                         only when exact (every |x| <= 2^24 is): convert the array to float32 \
                         to accept the rounding"
                    ));
                }
                out.push(f);
            }
            Ok(Tensor::f32(dims, out))
        }
        (elem, values) => {
            let mut out = Vec::with_capacity(arr.dims.iter().product());
            let ints: Box<dyn Iterator<Item = Result<i64, f32>>> = match values {
                NpyValues::Int(v) => Box::new(v.iter().map(|&x| Ok(x))),
                NpyValues::Float(v) => Box::new(v.iter().map(|&x| {
                    if x.fract() == 0.0 && x.abs() < 2f32.powi(40) {
                        Ok(x as i64)
                    } else {
                        Err(x)
                    }
                })),
            };
            for (i, x) in ints.enumerate() {
                match x {
                    Ok(x) if elem.admits(x) => out.push(x as i32),
                    Ok(x) => {
                        return Err(format!(
                            "input `{name}` is {ty} but element {i} of the array is {x}, \
                             which is not a {elem} value"
                        ))
                    }
                    Err(x) => {
                        return Err(format!(
                            "input `{name}` is {ty} but element {i} of the array is {x}, \
                             which is not an integer"
                        ))
                    }
                }
            }
            Ok(Tensor::int(elem, dims, out))
        }
    }
}

/// Encodes a tensor as `.npy` bytes: `<f4` for `f32`, `<i4` for integer types.
pub fn encode(t: &Tensor) -> io::Result<Vec<u8>> {
    let shape: Vec<u64> = t.dims.iter().map(|&d| d as u64).collect();
    let mut buf = Vec::new();
    match &t.data {
        TensorData::F32(v) => {
            let mut w = npyz::WriteOptions::new()
                .default_dtype()
                .shape(&shape)
                .writer(&mut buf)
                .begin_nd()?;
            w.extend(v.iter().copied())?;
            w.finish()?;
        }
        TensorData::Int(_) | TensorData::Bits(_) => {
            let v = t.as_int().unwrap_or_default();
            let mut w = npyz::WriteOptions::new()
                .default_dtype()
                .shape(&shape)
                .writer(&mut buf)
                .begin_nd()?;
            w.extend(v.iter().copied())?;
            w.finish()?;
        }
    }
    Ok(buf)
}

/// Writes a tensor to an `.npy` file (see [`encode`]), atomically.
pub fn write(path: &Path, t: &Tensor) -> Result<(), NpyError> {
    let err = |source| NpyError::Write {
        path: path.to_path_buf(),
        source,
    };
    let bytes = encode(t).map_err(err)?;
    bnnc_ir::files::write_atomic(path, &bytes).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bnnc_ir::Dim;

    fn npy<T: npyz::AutoSerialize + Copy>(shape: &[u64], data: &[T], fortran: bool) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(shape)
            .order(if fortran { Order::Fortran } else { Order::C })
            .writer(&mut buf)
            .begin_nd()
            .unwrap();
        w.extend(data.iter().copied()).unwrap();
        w.finish().unwrap();
        buf
    }

    #[test]
    fn round_trip_f32_and_i32() {
        let t = Tensor::f32(vec![2, 3], vec![1.0, -2.5, 0.0, 3.25, 4.0, -0.5]);
        let a = decode(&encode(&t).unwrap()).unwrap();
        assert_eq!(a.dims, vec![2, 3]);
        assert_eq!(a.values, NpyValues::Float(t.to_f32_vec()));
        let b = Tensor::int(ElemType::B1, vec![3], vec![-1, 1, 1]);
        let a = decode(&encode(&b).unwrap()).unwrap();
        assert_eq!(a.values, NpyValues::Int(vec![-1, 1, 1]));
        assert_eq!(a.dtype, "<i4");
    }

    #[test]
    fn reads_f64_and_u8_and_fortran_order() {
        let a = decode(&npy::<f64>(&[2], &[0.5, -1.0], false)).unwrap();
        assert_eq!(a.values, NpyValues::Float(vec![0.5, -1.0]));
        let a = decode(&npy::<u8>(&[3], &[0, 7, 255], false)).unwrap();
        assert_eq!(a.values, NpyValues::Int(vec![0, 7, 255]));
        // Fortran [2, 3]: column-major storage of [[1, 2, 3], [4, 5, 6]].
        let a = decode(&npy::<i32>(&[2, 3], &[1, 4, 2, 5, 3, 6], true)).unwrap();
        assert_eq!(a.values, NpyValues::Int(vec![1, 2, 3, 4, 5, 6]));
    }

    #[test]
    fn rejects_garbage_and_truncation() {
        assert!(decode(b"hello").is_err());
        assert!(decode(&[]).is_err());
        let mut good = npy::<f32>(&[4], &[1.0, 2.0, 3.0, 4.0], false);
        good.truncate(good.len() - 4);
        assert!(decode(&good).unwrap_err().contains("truncated"));
        assert!(decode(&npy::<bool>(&[1], &[true], false)).is_err());
    }

    #[test]
    fn rejects_data_longer_than_the_header_says() {
        let mut long = npy::<f32>(&[2], &[1.0, 2.0], false);
        long.extend_from_slice(&3f32.to_le_bytes());
        let e = decode(&long).unwrap_err();
        assert!(e.starts_with("longer than its header says"), "{e}");
        assert!(e.contains("holds 12 bytes"), "{e}");
    }

    #[test]
    fn header_errors_are_one_line() {
        let mut bad = b"\x93NUMPY\x01\x00".to_vec();
        let header = b"{'descr': '<f4', 'fortran_order'\n\n }                     \n";
        bad.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bad.extend_from_slice(header);
        let e = decode(&bad).unwrap_err();
        assert!(!e.contains('\n'), "{e}");
        assert!(e.starts_with("not an .npy file: "), "{e}");
        assert!(e.contains("at line 1, column"), "{e}");
    }

    #[test]
    fn integers_fill_f32_inputs_only_exactly() {
        let ty = TensorType::new(ElemType::F32, vec![Dim::Batch, Dim::Fixed(4)]);
        let arr = |v: Vec<i64>| NpyArray {
            dims: vec![1, 4],
            dtype: "<i8".into(),
            values: NpyValues::Int(v),
        };
        let exact = [16777216, -16777216, 1 << 40, i64::MIN];
        let t = to_input(&arr(exact.to_vec()), "x", &ty).unwrap();
        let back: Vec<i64> = t.to_f32_vec().iter().map(|&f| f as i64).collect();
        assert_eq!(back, exact);
        for bad in [16777217, -16777217, i64::MAX, (1 << 40) + 1] {
            let e = to_input(&arr(vec![0, 1, bad, 3]), "x", &ty).unwrap_err();
            assert!(
                e.contains(&format!("element 2 of the array is {bad}")) && e.contains("exactly"),
                "{e}"
            );
        }
    }

    #[test]
    fn converts_to_input_types() {
        let batched = |elem, c| TensorType::new(elem, vec![Dim::Batch, Dim::Fixed(c)]);
        let a = NpyArray {
            dims: vec![2, 2],
            dtype: "<i1".into(),
            values: NpyValues::Int(vec![-1, 1, 1, -1]),
        };
        let t = to_input(&a, "x", &batched(ElemType::B1, 2)).unwrap();
        assert_eq!(t.elem, ElemType::B1);
        assert_eq!(t.as_int().as_deref(), Some(&[-1, 1, 1, -1][..]));
        let t = to_input(&a, "x", &batched(ElemType::F32, 2)).unwrap();
        assert_eq!(t.as_f32(), Some(&[-1.0, 1.0, 1.0, -1.0][..]));
        let e = to_input(&a, "x", &batched(ElemType::UInt(2), 2)).unwrap_err();
        assert!(e.contains("element 0"), "{e}");
        let e = to_input(&a, "x", &batched(ElemType::F32, 3)).unwrap_err();
        assert!(e.contains("does not fit"), "{e}");
        let f = NpyArray {
            dims: vec![1, 2],
            dtype: "<f4".into(),
            values: NpyValues::Float(vec![1.0, 0.5]),
        };
        let e = to_input(&f, "x", &batched(ElemType::I32, 2)).unwrap_err();
        assert!(e.contains("not an integer"), "{e}");
    }
}
