//! Weights I/O: safetensors files holding the tensors a model's `@key`s name.
//!
//! # Storage
//!
//! Each element type is stored in one safetensors dtype ([`Storage`]):
//!
//! | element type | stored as |
//! | --- | --- |
//! | `f32` | F32 |
//! | `i32` | I32 |
//! | `b1` | **packed b1** (below); files written before packing, with I8 -1/+1, still load |
//! | `ternary`, `iN` | I8 holding the numeric value |
//! | `uN` | U8 holding the numeric value |
//!
//! A stored tensor is checked against the type its `weight` op declares when
//! the model is loaded ([`Weights::get_as`]).
//!
//! # Packed b1
//!
//! A `b1` tensor of logical shape `[d0, .., dk-1, C]` is stored as a U8 tensor of
//! shape `[d0, .., dk-1, ceil(C / 8)]`: every row of the last axis packed 8
//! elements per byte, each row starting on a byte boundary. Element `c` of a row
//! is bit `c % 8` (least significant bit first) of byte `c / 8`; bit 1 means -1,
//! bit 0 means +1; the unused high bits of a row's last byte are 0. This is
//! the packing of compiled code (channel `c` is bit `c % 64` of little-endian
//! word `c / 64`) at byte granularity: eight bytes of a row read as a
//! little-endian `u64` are one packed word, and numpy's
//! `np.unpackbits(a, axis=-1, bitorder="little")[..., :C]` recovers the bits. A
//! scalar (rank 0) `b1` is stored as shape `[1]`.
//!
//! Which U8 tensors are packed b1, and their logical shapes, is recorded in the
//! file's `__metadata__` under the one key [`PACKED_B1_KEY`] (`bnnc.packed_b1`),
//! whose value is a JSON object from tensor name to logical shape, names sorted:
//!
//! ```text
//! "__metadata__": {"bnnc.packed_b1": "{\"fc1.weight\":[1024,784],\"fc2.weight\":[1024,1024]}"}
//! ```
//!
//! (One key rather than one per tensor keeps the file's bytes deterministic:
//! safetensors writes metadata in hash order.) Reading checks every entry: the
//! named tensor exists, is U8, has exactly the stored shape its logical shape
//! implies (so its byte count), and has zero tail bits; anything else is a
//! [`FormatError`]. Other metadata keys are ignored. A packed tensor loads as a
//! `b1` [`Tensor`] of its logical shape (values -1/+1), the same tensor an I8 file
//! gives after [`Weights::get_as`] with a `b1` type.
//!
//! Writing packs every `b1` tensor ([`Weights::to_bytes`], [`Weights::save`]);
//! [`Weights::to_bytes_with`] with [`B1Storage::I8`] writes the old one-byte form.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use crate::tensor::{Tensor, TensorData};
use crate::types::{ElemType, TensorType};

/// The `__metadata__` key that lists packed b1 tensors and their logical shapes.
pub const PACKED_B1_KEY: &str = "bnnc.packed_b1";

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

/// Why bytes are not a weights file bnnc reads, or a [`Weights`] cannot be written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The bytes are not a safetensors file.
    #[error("not a safetensors file: {0}")]
    NotSafetensors(String),
    /// A tensor in a dtype bnnc does not read.
    #[error("tensor `{name}` has dtype {dtype}; bnnc reads F32, I32, I8 and U8")]
    UnsupportedDtype { name: String, dtype: String },
    /// The `bnnc.packed_b1` metadata is not a JSON object of name -> shape.
    #[error("metadata `{PACKED_B1_KEY}` is malformed at byte {at}: {message}")]
    PackedMetadata { at: usize, message: String },
    /// The metadata names a packed tensor the file does not hold.
    #[error("metadata `{PACKED_B1_KEY}` lists `{name}`, but the file has no tensor `{name}`")]
    PackedMissing { name: String },
    /// A packed b1 tensor not stored as U8.
    #[error("packed b1 tensor `{name}` has dtype {dtype}; packed b1 is stored as U8")]
    PackedDtype { name: String, dtype: String },
    /// A packed b1 tensor whose stored shape (and so byte count) does not fit
    /// its logical shape.
    #[error(
        "packed b1 tensor `{name}` of logical shape {logical:?} must be stored with shape \
         {expected:?} ({expected_bytes} bytes), but has shape {found:?} ({found_bytes} bytes)"
    )]
    PackedShape {
        name: String,
        logical: Vec<usize>,
        expected: Vec<usize>,
        expected_bytes: usize,
        found: Vec<usize>,
        found_bytes: usize,
    },
    /// A packed row with a 1 in the unused bits of its last byte.
    #[error(
        "packed b1 tensor `{name}`: row {row} has nonzero unused bits in its last byte \
         (0x{byte:02x}; only the low {used} bits hold elements)"
    )]
    PackedTailBits {
        name: String,
        row: usize,
        byte: u8,
        used: u32,
    },
    /// A logical shape whose element count overflows.
    #[error("tensor `{name}` has shape {shape:?}, too large")]
    TooLarge { name: String, shape: Vec<usize> },
    /// A tensor whose data does not fit its element type (writing).
    #[error("tensor `{name}` cannot be stored as {elem}: {message}")]
    Unstorable {
        name: String,
        elem: ElemType,
        message: String,
    },
    /// The safetensors writer failed.
    #[error("cannot serialise weights: {0}")]
    Serialize(String),
    /// A tensor's entry in the header does not describe its data (dtype,
    /// shape, data offsets, or data past the end of the file).
    #[error("tensor `{name}`: {message}")]
    Tensor { name: String, message: String },
}

/// Why the safetensors crate refused `bytes`, as a [`FormatError::Tensor`]
/// naming the tensor at fault, when one is: its header entry is checked as
/// the crate checks it (known dtype, shape, offsets in order without gaps,
/// byte count of shape and dtype, data inside the file). `None` when the
/// header itself is unreadable or no single tensor is at fault.
fn tensor_at_fault(bytes: &[u8]) -> Option<FormatError> {
    let n = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
    let header = bytes.get(8..8usize.checked_add(n)?)?;
    let data_len = bytes.len() - 8 - n;
    let serde_json::Value::Object(entries) = serde_json::from_slice(header).ok()? else {
        return None;
    };
    let fault = |name: &str, message: String| {
        Some(FormatError::Tensor {
            name: name.to_string(),
            message,
        })
    };
    let mut spans = Vec::new();
    for (name, entry) in &entries {
        if name == "__metadata__" {
            continue;
        }
        let dtype = entry.get("dtype");
        let Some(dtype) = dtype.and_then(|d| serde_json::from_value::<Dtype>(d.clone()).ok())
        else {
            return fault(
                name,
                format!(
                    "unknown dtype {}",
                    dtype.map_or("(none)".to_string(), |d| d.to_string())
                ),
            );
        };
        let dims: Option<Vec<usize>> = entry.get("shape").and_then(|s| {
            s.as_array()?
                .iter()
                .map(|d| usize::try_from(d.as_u64()?).ok())
                .collect()
        });
        let Some(dims) = dims else {
            return fault(name, "`shape` is not a list of dimensions".to_string());
        };
        let offsets: Option<Vec<usize>> = entry.get("data_offsets").and_then(|s| {
            s.as_array()?
                .iter()
                .map(|d| usize::try_from(d.as_u64()?).ok())
                .collect()
        });
        let (start, end) = match offsets.as_deref() {
            Some(&[start, end]) if start <= end => (start, end),
            _ => {
                return fault(
                    name,
                    "`data_offsets` is not [start, end] with start <= end".to_string(),
                )
            }
        };
        let bits = dims
            .iter()
            .try_fold(dtype.bitsize(), |a, &d| a.checked_mul(d));
        let Some(bits) = bits.filter(|b| b % 8 == 0) else {
            return fault(
                name,
                format!("shape {dims:?} of {dtype:?} is not a whole number of bytes that fits in memory"),
            );
        };
        if end - start != bits / 8 {
            return fault(
                name,
                format!(
                    "shape {dims:?} of {dtype:?} takes {} bytes, but its data_offsets [{start}, {end}] hold {}",
                    bits / 8,
                    end - start
                ),
            );
        }
        spans.push((start, end, name.as_str()));
    }
    spans.sort();
    let mut at = (0, None::<&str>);
    for &(start, end, name) in &spans {
        if start != at.0 {
            let after = at.1.map_or("the start of the data".to_string(), |p| {
                format!("the end of tensor `{p}`")
            });
            return fault(
                name,
                format!(
                    "its data starts at byte {start} of the data, but {after} is at byte {}: tensors' data must follow each other without gaps or overlaps",
                    at.0
                ),
            );
        }
        if end > data_len {
            return fault(
                name,
                format!(
                    "its data (bytes {start}..{end} of the data) goes past the end of the file, which holds {data_len} bytes of data (truncated?)"
                ),
            );
        }
        at = (end, Some(name));
    }
    match at {
        (end, Some(last)) if end < data_len => fault(
            last,
            format!(
                "the file holds {} bytes after this tensor's data, the last in the file",
                data_len - end
            ),
        ),
        _ => None,
    }
}

/// Why [`Weights::read_tensors`] failed: the file's contents, or reading it.
enum LoadError {
    Format(FormatError),
    Io(std::io::Error),
}

impl From<FormatError> for LoadError {
    fn from(e: FormatError) -> LoadError {
        LoadError::Format(e)
    }
}

/// The bytes of one tensor streamed through a buffer of whole `unit`s (a
/// chunk of about 64 KiB, at least one unit): `f` sees the data from `start`
/// to `start + len` in order.
fn stream(
    start: usize,
    len: usize,
    unit: usize,
    fetch: &mut dyn FnMut(usize, &mut [u8]) -> std::io::Result<()>,
    mut f: impl FnMut(&[u8]) -> Result<(), FormatError>,
) -> Result<(), LoadError> {
    let unit = unit.max(1);
    let chunk = ((1 << 16) / unit).max(1) * unit;
    let mut buf = vec![0u8; chunk.min(len)];
    let mut done = 0;
    while done < len {
        let k = chunk.min(len - done);
        fetch(start + done, &mut buf[..k]).map_err(LoadError::Io)?;
        f(&buf[..k])?;
        done += k;
    }
    Ok(())
}

/// The header of the safetensors file `file` and where its data starts, or
/// `None` when the header is not one this reader accepts (the caller then
/// reads the whole file with [`Weights::from_bytes`], whose error says why):
/// the length prefix, a header the safetensors crate parses and validates,
/// and data that ends exactly at the end of the file.
fn read_header(
    file: &mut std::fs::File,
) -> std::io::Result<Option<(u64, safetensors::tensor::Metadata)>> {
    use std::io::Read;
    let file_len = file.metadata()?.len();
    let mut n = [0u8; 8];
    if file_len < 8 {
        return Ok(None);
    }
    file.read_exact(&mut n)?;
    let n = u64::from_le_bytes(n);
    // The header size limit of the safetensors crate.
    if n > 100_000_000 || n > file_len - 8 {
        return Ok(None);
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header)?;
    let Ok(meta) = serde_json::from_slice::<safetensors::tensor::Metadata>(&header) else {
        return Ok(None);
    };
    let data_start = 8 + n;
    if data_start.checked_add(meta.data_len() as u64) != Some(file_len) {
        return Ok(None);
    }
    Ok(Some((data_start, meta)))
}

/// The storage class of an element type in a weights file (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    F32,
    I32,
    /// One signed byte per element.
    I8,
    /// One unsigned byte per element.
    U8,
    /// `b1`, 8 elements per byte along the last axis, listed in the metadata.
    PackedB1,
}

impl Storage {
    /// How `elem` is written.
    pub fn of(elem: ElemType) -> Storage {
        match elem {
            ElemType::F32 => Storage::F32,
            ElemType::I32 => Storage::I32,
            ElemType::B1 => Storage::PackedB1,
            ElemType::Ternary | ElemType::SInt(_) => Storage::I8,
            ElemType::UInt(_) => Storage::U8,
        }
    }

    /// The name used in messages: the safetensors dtype, or `packed b1`.
    pub fn name(self) -> &'static str {
        match self {
            Storage::F32 => "F32",
            Storage::I32 => "I32",
            Storage::I8 => "I8",
            Storage::U8 => "U8",
            Storage::PackedB1 => "packed b1",
        }
    }
}

/// How [`Weights::to_bytes_with`] writes `b1` tensors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum B1Storage {
    /// 8 per byte along the last axis, listed in the metadata (the default).
    #[default]
    Packed,
    /// One I8 per element holding -1 or +1 (the format before packing).
    I8,
}

/// The name of the storage used for `elem` (`F32`, `I32`, `I8`, `U8` or
/// `packed b1`), for messages.
pub fn storage_dtype(elem: ElemType) -> &'static str {
    Storage::of(elem).name()
}

/// Bytes one packed row of `c` elements takes.
fn packed_row_bytes(c: usize) -> usize {
    c.div_ceil(8)
}

/// The stored (U8) shape of a packed b1 tensor of logical shape `dims`.
pub fn packed_b1_shape(dims: &[usize]) -> Vec<usize> {
    match dims.split_last() {
        None => vec![1],
        Some((&c, rest)) => {
            let mut s = rest.to_vec();
            s.push(packed_row_bytes(c));
            s
        }
    }
}

/// Packs ±1 values (row-major, logical shape `dims`) as described in the
/// module doc. Values other than -1 and +1 are an error (naming the first).
pub fn pack_b1(dims: &[usize], values: &[i32]) -> Result<Vec<u8>, (usize, i32)> {
    let c = dims.last().copied().unwrap_or(1);
    let row_bytes = packed_row_bytes(c);
    let rows = if c == 0 { 0 } else { values.len().div_ceil(c) };
    let mut out = vec![0u8; rows * row_bytes];
    for (i, &v) in values.iter().enumerate() {
        let (r, k) = (i / c, i % c);
        match v {
            1 => {}
            -1 => out[r * row_bytes + k / 8] |= 1 << (k % 8),
            other => return Err((i, other)),
        }
    }
    Ok(out)
}

/// The packed bytes of a packed b1 tensor of logical shape `dims` as the
/// words of a [`TensorData::Bits`] tensor (each row's bytes read as
/// little-endian words, the last one zero-extended). `bytes` must hold exactly
/// the bytes of [`packed_b1_shape`]; nonzero tail bits are an error (the row
/// and its last byte).
fn packed_bytes_to_words(
    name: &str,
    dims: &[usize],
    bytes: &[u8],
) -> Result<Vec<u64>, FormatError> {
    let c = dims.last().copied().unwrap_or(1);
    let row_bytes = packed_row_bytes(c);
    let wpr = crate::tensor::b1_row_words(c);
    let rows = bytes.len().checked_div(row_bytes).unwrap_or(0);
    let mut out = Vec::with_capacity(rows * wpr);
    if row_bytes == 0 {
        return Ok(out);
    }
    let used = (c % 8) as u32;
    for (row, chunk) in bytes.chunks_exact(row_bytes).enumerate() {
        let last = chunk[row_bytes - 1];
        if used != 0 && last >> used != 0 {
            return Err(FormatError::PackedTailBits {
                name: name.to_string(),
                row,
                byte: last,
                used,
            });
        }
        out.extend(chunk.chunks(8).map(|w| {
            let mut b = [0u8; 8];
            b[..w.len()].copy_from_slice(w);
            u64::from_le_bytes(b)
        }));
    }
    Ok(out)
}

/// The packed bytes (module doc) of [`TensorData::Bits`] words of logical
/// shape `dims`: the first `ceil(C / 8)` bytes of each row's words.
fn words_to_packed_bytes(dims: &[usize], words: &[u64]) -> Vec<u8> {
    let c = dims.last().copied().unwrap_or(1);
    let (row_bytes, wpr) = (packed_row_bytes(c), crate::tensor::b1_row_words(c));
    if wpr == 0 {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(words.len() / wpr * row_bytes);
    for row in words.chunks_exact(wpr) {
        out.extend(row.iter().flat_map(|w| w.to_le_bytes()).take(row_bytes));
    }
    out
}

/// The metadata value listing packed tensors: a JSON object, names sorted.
fn packed_b1_metadata(entries: &BTreeMap<String, Vec<usize>>) -> String {
    let mut s = String::from("{");
    for (i, (name, dims)) in entries.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push('"');
        for ch in name.chars() {
            match ch {
                '"' => s.push_str("\\\""),
                '\\' => s.push_str("\\\\"),
                c if (c as u32) < 0x20 => s.push_str(&format!("\\u{:04x}", c as u32)),
                c => s.push(c),
            }
        }
        s.push_str("\":[");
        let dims: Vec<String> = dims.iter().map(usize::to_string).collect();
        s.push_str(&dims.join(","));
        s.push(']');
    }
    s.push('}');
    s
}

/// Parses the value [`packed_b1_metadata`] writes: a JSON object from string to
/// array of non-negative integers (any JSON whitespace and string escapes).
fn parse_packed_b1_metadata(src: &str) -> Result<BTreeMap<String, Vec<usize>>, FormatError> {
    struct P<'a> {
        b: &'a [u8],
        i: usize,
    }
    impl P<'_> {
        fn err<T>(&self, message: impl Into<String>) -> Result<T, FormatError> {
            Err(FormatError::PackedMetadata {
                at: self.i,
                message: message.into(),
            })
        }
        fn ws(&mut self) {
            while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
                self.i += 1;
            }
        }
        fn eat(&mut self, c: u8) -> Result<(), FormatError> {
            self.ws();
            if self.b.get(self.i) == Some(&c) {
                self.i += 1;
                Ok(())
            } else {
                self.err(format!("expected `{}`", c as char))
            }
        }
        fn peek(&mut self) -> Option<u8> {
            self.ws();
            self.b.get(self.i).copied()
        }
        fn hex4(&mut self) -> Result<u32, FormatError> {
            let Some(h) = self.b.get(self.i..self.i + 4) else {
                return self.err("expected 4 hex digits after \\u");
            };
            let Some(v) = std::str::from_utf8(h)
                .ok()
                .and_then(|h| u32::from_str_radix(h, 16).ok())
            else {
                return self.err("expected 4 hex digits after \\u");
            };
            self.i += 4;
            Ok(v)
        }
        fn string(&mut self) -> Result<String, FormatError> {
            self.eat(b'"')?;
            let mut out = Vec::new();
            loop {
                let Some(&c) = self.b.get(self.i) else {
                    return self.err("unterminated string");
                };
                self.i += 1;
                match c {
                    b'"' => break,
                    b'\\' => {
                        let Some(&e) = self.b.get(self.i) else {
                            return self.err("unterminated string");
                        };
                        self.i += 1;
                        let ch = match e {
                            b'"' => '"',
                            b'\\' => '\\',
                            b'/' => '/',
                            b'b' => '\u{8}',
                            b'f' => '\u{c}',
                            b'n' => '\n',
                            b'r' => '\r',
                            b't' => '\t',
                            b'u' => {
                                let hi = self.hex4()?;
                                let code = if (0xD800..0xDC00).contains(&hi) {
                                    if self.b.get(self.i..self.i + 2) != Some(b"\\u") {
                                        return self.err("unpaired surrogate");
                                    }
                                    self.i += 2;
                                    let lo = self.hex4()?;
                                    if !(0xDC00..0xE000).contains(&lo) {
                                        return self.err("unpaired surrogate");
                                    }
                                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                                } else {
                                    hi
                                };
                                match char::from_u32(code) {
                                    Some(ch) => ch,
                                    None => return self.err("invalid \\u escape"),
                                }
                            }
                            _ => return self.err("invalid escape"),
                        };
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    }
                    c if c < 0x20 => return self.err("control character in string"),
                    c => out.push(c),
                }
            }
            // The input is a &str and escapes add whole chars, so this holds.
            String::from_utf8(out).or_else(|_| self.err("invalid UTF-8 in string"))
        }
        fn uint(&mut self) -> Result<usize, FormatError> {
            self.ws();
            let start = self.i;
            while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
                self.i += 1;
            }
            let digits = std::str::from_utf8(&self.b[start..self.i]).unwrap_or("");
            if digits.is_empty() {
                self.i = start;
                return self.err("expected a dimension (a non-negative integer)");
            }
            match digits.parse() {
                Ok(v) => Ok(v),
                Err(_) => {
                    self.i = start;
                    self.err(format!("dimension {digits} is too large"))
                }
            }
        }
    }
    let mut p = P {
        b: src.as_bytes(),
        i: 0,
    };
    let mut out = BTreeMap::new();
    p.eat(b'{')?;
    if p.peek() == Some(b'}') {
        p.i += 1;
    } else {
        loop {
            p.ws();
            let at = p.i;
            let name = p.string()?;
            p.eat(b':')?;
            p.eat(b'[')?;
            let mut dims = Vec::new();
            if p.peek() == Some(b']') {
                p.i += 1;
            } else {
                loop {
                    dims.push(p.uint()?);
                    match p.peek() {
                        Some(b',') => p.i += 1,
                        Some(b']') => {
                            p.i += 1;
                            break;
                        }
                        _ => return p.err("expected `,` or `]`"),
                    }
                }
            }
            if out.insert(name.clone(), dims).is_some() {
                p.i = at;
                return p.err(format!("`{name}` is listed twice"));
            }
            match p.peek() {
                Some(b',') => p.i += 1,
                Some(b'}') => {
                    p.i += 1;
                    break;
                }
                _ => return p.err("expected `,` or `}`"),
            }
        }
    }
    if p.peek().is_some() {
        return p.err("unexpected text after the object");
    }
    Ok(out)
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

    /// Whether stored tensor `t` can be a tensor of `ty`: its storage class
    /// ([`Storage`]) must be the one `ty.elem` is stored in, except that a
    /// `b1` declaration also takes an I8 tensor (the format before packing);
    /// its shape must be `ty`'s, and every value must be a value of `ty.elem`
    /// (an I8 tensor declared `b1` holds only -1 and +1). Weights have no
    /// batch dimension, so `ty` must be fully fixed.
    fn check_as(t: &Tensor, ty: &TensorType) -> Result<(), WeightMismatch> {
        let stored = Storage::of(t.elem);
        let want = Storage::of(ty.elem);
        let legacy_b1 = ty.elem == ElemType::B1 && stored == Storage::I8;
        if stored != want && !legacy_b1 {
            return Err(WeightMismatch::Dtype {
                found: stored.name().to_string(),
                expected: ty.elem,
                storage: want.name(),
            });
        }
        let dims: Option<Vec<usize>> = ty.shape.iter().map(|d| d.fixed()).collect();
        if dims.as_deref() != Some(&t.dims[..]) {
            return Err(WeightMismatch::Shape {
                found: t.dims.clone(),
                expected: ty.to_string(),
            });
        }
        // Packed storage holds only ±1, which `b1` (the only packed type) admits.
        if let TensorData::Int(v) = &t.data {
            if let Some((index, &value)) = v
                .iter()
                .enumerate()
                .find(|(_, &x)| !ty.elem.admits(x as i64))
            {
                return Err(WeightMismatch::Value {
                    index,
                    value: value as i64,
                    elem: ty.elem,
                });
            }
        }
        Ok(())
    }

    /// The tensor under `key`, checked against `ty` (see below) and retyped
    /// to it; a `b1` result is packed ([`TensorData::Bits`]), also when the
    /// file holds I8. The stored tensor's storage class ([`Storage`]) must be
    /// the one `ty.elem` is stored in, except that a `b1` declaration also
    /// takes an I8 tensor (the format before packing); its shape must be
    /// `ty`'s, and every value must be a value of `ty.elem` (an I8 tensor
    /// declared `b1` holds only -1 and +1). Weights have no batch dimension,
    /// so `ty` must be fully fixed.
    pub fn get_as(&self, key: &str, ty: &TensorType) -> Result<Tensor, WeightMismatch> {
        let t = self.tensors.get(key).ok_or(WeightMismatch::Missing)?;
        Weights::check_as(t, ty)?;
        Ok(Weights::retype(t.clone(), ty))
    }

    /// Like [`Weights::get_as`], but moves the tensor out of the set instead
    /// of copying it (it is gone afterwards, also when it does not match).
    pub fn take_as(&mut self, key: &str, ty: &TensorType) -> Result<Tensor, WeightMismatch> {
        let t = self.tensors.remove(key).ok_or(WeightMismatch::Missing)?;
        Weights::check_as(&t, ty)?;
        Ok(Weights::retype(t, ty))
    }

    /// `t` as a tensor of `ty` (checked by [`Weights::check_as`]): `b1` packed.
    fn retype(mut t: Tensor, ty: &TensorType) -> Tensor {
        t.elem = ty.elem;
        if ty.elem == ElemType::B1 {
            t.into_packed()
        } else {
            t
        }
    }

    /// Parses safetensors bytes: F32, I32, I8 and U8 tensors, and U8 tensors
    /// the metadata lists as packed b1 (loaded as `b1` tensors of their logical
    /// shape). I8 tensors load as `i8`, U8 as `u8`; [`Weights::get_as`] retypes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Weights, FormatError> {
        let refused = |e: safetensors::SafeTensorError| {
            tensor_at_fault(bytes).unwrap_or(FormatError::NotSafetensors(e.to_string()))
        };
        let (n, meta) = SafeTensors::read_metadata(bytes).map_err(refused)?;
        let data = &bytes[8 + n..];
        Weights::read_tensors(&meta, &mut |at, buf| {
            let src = data.get(at..at + buf.len()).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "past the end")
            })?;
            buf.copy_from_slice(src);
            Ok(())
        })
        .map_err(|e| match e {
            LoadError::Format(e) => e,
            // `read_metadata` checked that the data covers every tensor.
            LoadError::Io(e) => FormatError::NotSafetensors(e.to_string()),
        })
    }

    /// The tensors `meta` describes, each read from the data section (after
    /// the header) by `fetch(offset, buf)`, which fills `buf` with the bytes
    /// at `offset`. Each tensor is read in chunks straight into its storage,
    /// so no copy of the file is held.
    fn read_tensors(
        meta: &safetensors::tensor::Metadata,
        fetch: &mut dyn FnMut(usize, &mut [u8]) -> std::io::Result<()>,
    ) -> Result<Weights, LoadError> {
        let mut packed = match meta.metadata().as_ref().and_then(|m| m.get(PACKED_B1_KEY)) {
            Some(v) => parse_packed_b1_metadata(v)?,
            None => BTreeMap::new(),
        };
        let mut w = Weights::new();
        for name in meta.offset_keys() {
            let Some(info) = meta.info(&name) else {
                continue;
            };
            let dims = info.shape.clone();
            let (start, end) = info.data_offsets;
            let len = end - start;
            if let Some(logical) = packed.remove(&name) {
                if info.dtype != Dtype::U8 {
                    return Err(FormatError::PackedDtype {
                        name,
                        dtype: format!("{:?}", info.dtype),
                    }
                    .into());
                }
                logical
                    .iter()
                    .try_fold(1usize, |a, &d| a.checked_mul(d))
                    .ok_or_else(|| FormatError::TooLarge {
                        name: name.clone(),
                        shape: logical.clone(),
                    })?;
                let expected = packed_b1_shape(&logical);
                let expected_bytes = expected
                    .iter()
                    .try_fold(1usize, |a, &d| a.checked_mul(d))
                    .ok_or_else(|| FormatError::TooLarge {
                        name: name.clone(),
                        shape: logical.clone(),
                    })?;
                if dims != expected {
                    return Err(FormatError::PackedShape {
                        name,
                        logical,
                        expected,
                        expected_bytes,
                        found: dims,
                        found_bytes: len,
                    }
                    .into());
                }
                let row_bytes = expected.last().copied().unwrap_or(1);
                let c = logical.last().copied().unwrap_or(1);
                let mut words = Vec::with_capacity(
                    len.checked_div(row_bytes).unwrap_or(0) * crate::tensor::b1_row_words(c),
                );
                let mut row = 0;
                stream(start, len, row_bytes, fetch, |chunk| {
                    let more =
                        packed_bytes_to_words(&name, &logical, chunk).map_err(|e| match e {
                            FormatError::PackedTailBits {
                                name,
                                row: r,
                                byte,
                                used,
                            } => FormatError::PackedTailBits {
                                name,
                                row: row + r,
                                byte,
                                used,
                            },
                            e => e,
                        })?;
                    row += chunk.len() / row_bytes.max(1);
                    words.extend_from_slice(&more);
                    Ok(())
                })?;
                w.insert(name, Tensor::b1_packed(logical, words));
                continue;
            }
            fn le4(c: &[u8]) -> [u8; 4] {
                [c[0], c[1], c[2], c[3]]
            }
            let data = match info.dtype {
                Dtype::F32 => {
                    let mut v = Vec::with_capacity(len / 4);
                    stream(start, len, 4, fetch, |c| {
                        v.extend(c.chunks_exact(4).map(|c| f32::from_le_bytes(le4(c))));
                        Ok(())
                    })?;
                    TensorData::F32(v)
                }
                Dtype::I32 | Dtype::I8 | Dtype::U8 => {
                    let size = if info.dtype == Dtype::I32 { 4 } else { 1 };
                    let mut v = Vec::with_capacity(len / size);
                    stream(start, len, size, fetch, |c| {
                        match info.dtype {
                            Dtype::I32 => {
                                v.extend(c.chunks_exact(4).map(|c| i32::from_le_bytes(le4(c))))
                            }
                            Dtype::I8 => v.extend(c.iter().map(|&b| b as i8 as i32)),
                            _ => v.extend(c.iter().map(|&b| b as i32)),
                        }
                        Ok(())
                    })?;
                    TensorData::Int(v)
                }
                other => {
                    return Err(FormatError::UnsupportedDtype {
                        name,
                        dtype: format!("{other:?}"),
                    }
                    .into())
                }
            };
            let elem = match info.dtype {
                Dtype::F32 => ElemType::F32,
                Dtype::I32 => ElemType::I32,
                Dtype::I8 => ElemType::SInt(8),
                _ => ElemType::UInt(8),
            };
            w.insert(name, Tensor { elem, dims, data });
        }
        if let Some(name) = packed.into_keys().next() {
            return Err(FormatError::PackedMissing { name }.into());
        }
        Ok(w)
    }

    /// Serialises to safetensors bytes, each tensor in its storage (`b1`
    /// packed; see the module doc). The bytes depend only on the tensors. The
    /// error is the message of a [`FormatError`] (this signature predates it;
    /// [`Weights::to_bytes_with`] returns the typed error).
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        self.to_bytes_with(B1Storage::Packed)
            .map_err(|e| e.to_string())
    }

    /// Serialises to safetensors bytes, writing `b1` tensors as `b1` says.
    /// A tensor whose data does not fit its element type (f32 data in an
    /// integer type, a `b1` value other than ±1) is an error.
    pub fn to_bytes_with(&self, b1: B1Storage) -> Result<Vec<u8>, FormatError> {
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
        let mut packed = BTreeMap::new();
        for (name, t) in &self.tensors {
            let unstorable = |message: String| FormatError::Unstorable {
                name: name.clone(),
                elem: t.elem,
                message,
            };
            let mut storage = Storage::of(t.elem);
            if storage == Storage::PackedB1 && b1 == B1Storage::I8 {
                storage = Storage::I8;
            }
            let raw = match (&t.data, storage) {
                (TensorData::F32(v), Storage::F32) => Raw {
                    dtype: Dtype::F32,
                    shape: t.dims.clone(),
                    bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                },
                (TensorData::Int(v), Storage::I32) => Raw {
                    dtype: Dtype::I32,
                    shape: t.dims.clone(),
                    bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                },
                (TensorData::Int(v), Storage::I8 | Storage::U8) => {
                    let (lo, hi) = if storage == Storage::I8 {
                        (-128, 127)
                    } else {
                        (0, 255)
                    };
                    if let Some((i, x)) = v.iter().enumerate().find(|(_, &x)| x < lo || x > hi) {
                        return Err(unstorable(format!(
                            "element {i} is {x}, outside {}",
                            storage.name()
                        )));
                    }
                    Raw {
                        dtype: if storage == Storage::I8 {
                            Dtype::I8
                        } else {
                            Dtype::U8
                        },
                        shape: t.dims.clone(),
                        bytes: v.iter().map(|&x| x as u8).collect(),
                    }
                }
                (TensorData::Int(v), Storage::PackedB1) => {
                    let bytes = pack_b1(&t.dims, v).map_err(|(i, x)| {
                        unstorable(format!("element {i} is {x}, not -1 or +1"))
                    })?;
                    packed.insert(name.clone(), t.dims.clone());
                    Raw {
                        dtype: Dtype::U8,
                        shape: packed_b1_shape(&t.dims),
                        bytes,
                    }
                }
                (TensorData::Bits(w), Storage::PackedB1) => {
                    t.check_storage().map_err(unstorable)?;
                    packed.insert(name.clone(), t.dims.clone());
                    Raw {
                        dtype: Dtype::U8,
                        shape: packed_b1_shape(&t.dims),
                        bytes: words_to_packed_bytes(&t.dims, w),
                    }
                }
                (TensorData::Bits(w), Storage::I8) => {
                    t.check_storage().map_err(unstorable)?;
                    Raw {
                        dtype: Dtype::I8,
                        shape: t.dims.clone(),
                        bytes: crate::tensor::unpack_b1_words(&t.dims, w)
                            .iter()
                            .map(|&x| x as u8)
                            .collect(),
                    }
                }
                (TensorData::F32(_), _) => {
                    return Err(unstorable("it holds f32 data".to_string()));
                }
                (TensorData::Int(_), _) => {
                    return Err(unstorable("it holds integer data".to_string()));
                }
                (TensorData::Bits(_), _) => {
                    return Err(unstorable("it holds packed b1 data".to_string()));
                }
            };
            raws.push((name.clone(), raw));
        }
        let meta = (!packed.is_empty()).then(|| {
            std::collections::HashMap::from([(
                PACKED_B1_KEY.to_string(),
                packed_b1_metadata(&packed),
            )])
        });
        safetensors::serialize(raws.iter().map(|(n, r)| (n.clone(), r)), meta)
            .map_err(|e| FormatError::Serialize(e.to_string()))
    }

    /// Reads a safetensors file: its header, then each tensor straight into
    /// its storage (the file is never held in memory as a whole). A file
    /// whose header the reader refuses is read whole by
    /// [`Weights::from_bytes`] for its diagnosis.
    pub fn load(path: &Path) -> Result<Weights, crate::Error> {
        let io = |source| crate::Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let format = |e: FormatError| crate::Error::Weights {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        if let Some((data_start, meta)) = read_header(&mut file).map_err(io)? {
            use std::io::{Read, Seek, SeekFrom};
            let mut fetch = |at: usize, buf: &mut [u8]| {
                file.seek(SeekFrom::Start(data_start + at as u64))?;
                file.read_exact(buf)
            };
            return Weights::read_tensors(&meta, &mut fetch).map_err(|e| match e {
                LoadError::Format(e) => format(e),
                LoadError::Io(e) => io(e),
            });
        }
        let bytes = std::fs::read(path).map_err(io)?;
        Weights::from_bytes(&bytes).map_err(format)
    }

    /// Writes a safetensors file (`b1` packed).
    pub fn save(&self, path: &Path) -> Result<(), crate::Error> {
        self.save_with(path, B1Storage::Packed)
    }

    /// Writes a safetensors file with `b1` tensors stored as `b1` says,
    /// atomically ([`crate::files::write_atomic`]).
    pub fn save_with(&self, path: &Path, b1: B1Storage) -> Result<(), crate::Error> {
        let bytes = self.to_bytes_with(b1).map_err(|e| crate::Error::Weights {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        crate::files::write_atomic(path, &bytes).map_err(|source| crate::Error::Write {
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
        w.insert(
            "e",
            Tensor::int(ElemType::B1, vec![2, 3], vec![-1, 1, 1, 1, -1, -1]),
        );
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

    /// A deterministic ±1 pattern that is neither periodic in 8 nor in 64.
    fn pattern(n: usize, seed: u64) -> Vec<i32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                if s & 1 == 1 {
                    -1
                } else {
                    1
                }
            })
            .collect()
    }

    /// The stored dtype, shape and bytes of tensor `name` in a file.
    fn stored(bytes: &[u8], name: &str) -> (Dtype, Vec<usize>, Vec<u8>) {
        let st = SafeTensors::deserialize(bytes).unwrap();
        let v = st.tensor(name).unwrap();
        (v.dtype(), v.shape().to_vec(), v.data().to_vec())
    }

    #[test]
    fn packed_b1_round_trips_at_every_tail_length() {
        for c in [1usize, 7, 8, 9, 64, 65] {
            let dims = vec![3, 2, c];
            let t = Tensor::int(ElemType::B1, dims.clone(), pattern(6 * c, c as u64));
            let mut w = Weights::new();
            w.insert("w", t.clone());
            let bytes = w.to_bytes().unwrap();
            let (dtype, shape, data) = stored(&bytes, "w");
            assert_eq!(dtype, Dtype::U8, "C = {c}");
            assert_eq!(shape, vec![3, 2, c.div_ceil(8)], "C = {c}");
            assert_eq!(data.len(), 6 * c.div_ceil(8), "C = {c}");
            let back = Weights::from_bytes(&bytes).unwrap();
            assert_eq!(back.get("w"), Some(&t), "C = {c}");
            let ty = TensorType::fixed(ElemType::B1, &dims);
            assert_eq!(back.get_as("w", &ty).unwrap(), t, "C = {c}");
            // The same tensor through the one-byte form gives the same b1 tensor.
            let old = Weights::from_bytes(&w.to_bytes_with(B1Storage::I8).unwrap()).unwrap();
            assert_eq!(old.get("w").unwrap().elem, ElemType::SInt(8));
            assert_eq!(old.get_as("w", &ty).unwrap(), t, "C = {c}");
        }
    }

    #[test]
    fn packed_b1_bit_order_is_lsb_first_bit_1_is_minus_1() {
        // Row 0: -1 at 0, 3 and 9; row 1: -1 at 8 only. C = 10: 2 bytes per row.
        let mut v = vec![1; 20];
        for i in [0, 3, 9, 10 + 8] {
            v[i] = -1;
        }
        let mut w = Weights::new();
        w.insert("w", Tensor::int(ElemType::B1, vec![2, 10], v));
        let bytes = w.to_bytes().unwrap();
        assert_eq!(
            stored(&bytes, "w").2,
            vec![0b0000_1001, 0b0000_0010, 0, 0b0000_0001]
        );
        let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
        let meta = meta.metadata().clone().unwrap();
        assert_eq!(meta[PACKED_B1_KEY], r#"{"w":[2,10]}"#);
    }

    #[test]
    fn packed_b1_scalar_and_empty() {
        let mut w = Weights::new();
        w.insert("s", Tensor::int(ElemType::B1, vec![], vec![-1]));
        w.insert("z", Tensor::int(ElemType::B1, vec![4, 0], vec![]));
        w.insert("y", Tensor::int(ElemType::B1, vec![0, 5], vec![]));
        let bytes = w.to_bytes().unwrap();
        assert_eq!(stored(&bytes, "s"), (Dtype::U8, vec![1], vec![1]));
        assert_eq!(Weights::from_bytes(&bytes).unwrap(), w);
    }

    #[test]
    fn packed_file_is_deterministic_and_names_are_escaped() {
        let mut w = Weights::new();
        for (i, name) in ["a", "b.c/d", "quote\"back\\slash", "tab\tnl\n", "ünï"]
            .into_iter()
            .enumerate()
        {
            w.insert(
                name,
                Tensor::int(ElemType::B1, vec![1, 9], pattern(9, i as u64)),
            );
        }
        let bytes = w.to_bytes().unwrap();
        for _ in 0..4 {
            assert_eq!(w.to_bytes().unwrap(), bytes);
        }
        assert_eq!(Weights::from_bytes(&bytes).unwrap(), w);
    }

    #[test]
    fn packed_b1_is_only_b1() {
        let mut w = Weights::new();
        w.insert("w", Tensor::int(ElemType::B1, vec![4], vec![1, -1, 1, 1]));
        let w = Weights::from_bytes(&w.to_bytes().unwrap()).unwrap();
        let err = w
            .get_as("w", &TensorType::fixed(ElemType::SInt(8), &[4]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "is stored as packed b1 but the model declares i8, stored as I8"
        );
        assert!(matches!(
            w.get_as("w", &TensorType::fixed(ElemType::B1, &[2, 2])),
            Err(WeightMismatch::Shape { .. })
        ));
    }

    #[test]
    fn unstorable_tensors_are_errors() {
        let mut w = Weights::new();
        w.insert("w", Tensor::int(ElemType::B1, vec![3], vec![1, 0, -1]));
        assert_eq!(
            w.to_bytes().unwrap_err(),
            "tensor `w` cannot be stored as b1: element 1 is 0, not -1 or +1"
        );
        let mut w = Weights::new();
        w.insert("u", Tensor::int(ElemType::UInt(8), vec![1], vec![256]));
        assert!(matches!(
            w.to_bytes_with(B1Storage::Packed),
            Err(FormatError::Unstorable { .. })
        ));
    }

    /// A file with the given raw tensors and `bnnc.packed_b1` metadata.
    fn raw_file(tensors: &[(&str, Dtype, &[usize], &[u8])], packed: Option<&str>) -> Vec<u8> {
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
            .iter()
            .map(|&(n, d, s, b)| {
                (
                    n.to_string(),
                    safetensors::tensor::TensorView::new(d, s.to_vec(), b).unwrap(),
                )
            })
            .collect();
        let meta = packed
            .map(|p| std::collections::HashMap::from([(PACKED_B1_KEY.to_string(), p.to_string())]));
        safetensors::serialize(views, meta).unwrap()
    }

    fn load_err(bytes: &[u8]) -> String {
        Weights::from_bytes(bytes).unwrap_err().to_string()
    }

    #[test]
    fn a_hand_written_packed_file_loads() {
        let bytes = raw_file(
            &[("w", Dtype::U8, &[2, 2], &[0xff, 0x01, 0x00, 0x00])],
            Some(" { \"w\" : [ 2 , 9 ] } "),
        );
        let w = Weights::from_bytes(&bytes).unwrap();
        let mut want = vec![-1; 9];
        want.extend([1; 9]);
        assert_eq!(
            w.get("w"),
            Some(&Tensor::int(ElemType::B1, vec![2, 9], want))
        );
    }

    #[test]
    fn wrong_byte_count_is_an_error() {
        // [2, 9] needs 2 bytes per row; 1 byte per row is stored.
        let bytes = raw_file(
            &[("w", Dtype::U8, &[2, 1], &[0, 0])],
            Some(r#"{"w":[2,9]}"#),
        );
        assert_eq!(
            load_err(&bytes),
            "packed b1 tensor `w` of logical shape [2, 9] must be stored with shape [2, 2] \
             (4 bytes), but has shape [2, 1] (2 bytes)"
        );
        // Right byte count, wrong split into rows.
        let bytes = raw_file(&[("w", Dtype::U8, &[4], &[0; 4])], Some(r#"{"w":[2,9]}"#));
        assert!(matches!(
            Weights::from_bytes(&bytes),
            Err(FormatError::PackedShape { .. })
        ));
    }

    #[test]
    fn bad_packed_metadata_is_an_error() {
        let t: &[(&str, Dtype, &[usize], &[u8])] = &[("w", Dtype::U8, &[2, 2], &[0; 4])];
        for (meta, want) in [
            ("[2,9]", "metadata `bnnc.packed_b1` is malformed at byte 0: expected `{`"),
            (r#"{"w":[2,-9]}"#, "metadata `bnnc.packed_b1` is malformed at byte 8: expected a dimension (a non-negative integer)"),
            (r#"{"w":[2,9]"#, "metadata `bnnc.packed_b1` is malformed at byte 10: expected `,` or `}`"),
            (r#"{"w":[2,9]} x"#, "metadata `bnnc.packed_b1` is malformed at byte 12: unexpected text after the object"),
            (r#"{"w":[2,9],"w":[2,9]}"#, "metadata `bnnc.packed_b1` is malformed at byte 11: `w` is listed twice"),
            (r#"{"w":[2,99999999999999999999999]}"#, "metadata `bnnc.packed_b1` is malformed at byte 8: dimension 99999999999999999999999 is too large"),
            (r#"{"w":[2,9],"v":[1]}"#, "metadata `bnnc.packed_b1` lists `v`, but the file has no tensor `v`"),
        ] {
            assert_eq!(load_err(&raw_file(t, Some(meta))), want, "{meta}");
        }
        let bytes = raw_file(
            &[("w", Dtype::I8, &[2, 2], &[0; 4])],
            Some(r#"{"w":[2,9]}"#),
        );
        assert_eq!(
            load_err(&bytes),
            "packed b1 tensor `w` has dtype I8; packed b1 is stored as U8"
        );
    }

    #[test]
    fn nonzero_tail_bits_are_an_error() {
        // C = 9: the second byte of each row uses bit 0 only; row 1 sets bit 1.
        let bytes = raw_file(
            &[("w", Dtype::U8, &[2, 2], &[0, 1, 0, 3])],
            Some(r#"{"w":[2,9]}"#),
        );
        assert_eq!(
            load_err(&bytes),
            "packed b1 tensor `w`: row 1 has nonzero unused bits in its last byte (0x03; \
             only the low 1 bits hold elements)"
        );
    }

    /// `bytes` written to a fresh file, loaded by [`Weights::load`].
    fn load_file(name: &str, bytes: &[u8]) -> Result<Weights, crate::Error> {
        let dir = std::env::temp_dir().join(format!("bnnc-weights-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("w.safetensors");
        std::fs::write(&path, bytes).unwrap();
        let w = Weights::load(&path);
        let _ = std::fs::remove_dir_all(&dir);
        w
    }

    #[test]
    fn a_file_streams_into_the_tensors_from_bytes_gives() {
        // Rows of 250 bytes: the packed tensor spans two 64 KiB chunks.
        let mut w = Weights::new();
        w.insert(
            "b",
            Tensor::int(ElemType::B1, vec![300, 2000], pattern(600_000, 3)),
        );
        w.insert(
            "f",
            Tensor::f32(
                vec![3, 50_000],
                (0..150_000).map(|i| i as f32 * 0.5).collect(),
            ),
        );
        w.insert("i", Tensor::int(ElemType::I32, vec![2], vec![-7, 1 << 30]));
        w.insert(
            "s",
            Tensor::int(ElemType::SInt(8), vec![3], vec![-128, 0, 127]),
        );
        w.insert("u", Tensor::int(ElemType::UInt(8), vec![2], vec![0, 255]));
        let bytes = w.to_bytes().unwrap();
        let loaded = load_file("stream", &bytes).unwrap();
        assert_eq!(loaded, w);
        assert_eq!(loaded, Weights::from_bytes(&bytes).unwrap());
        assert!(loaded.get("b").unwrap().as_bits().is_some());
    }

    #[test]
    fn tail_bits_in_a_later_chunk_name_their_row() {
        // C = 9: two bytes per row, 32768 rows per chunk; row 40000 is in the second.
        let rows = 50_000;
        let mut data = vec![0u8; rows * 2];
        data[40_000 * 2 + 1] = 2;
        let bytes = raw_file(
            &[("w", Dtype::U8, &[rows, 2], &data)],
            Some(r#"{"w":[50000,9]}"#),
        );
        let want = "packed b1 tensor `w`: row 40000 has nonzero unused bits in its last byte \
                    (0x02; only the low 1 bits hold elements)";
        assert_eq!(load_err(&bytes), want);
        let e = load_file("tail", &bytes).unwrap_err().to_string();
        assert!(e.ends_with(want), "{e}");
    }

    #[test]
    fn a_file_the_reader_refuses_is_diagnosed_as_from_bytes_does() {
        let good = raw_file(&[("w", Dtype::F32, &[2], &[0; 8])], None);
        let mut long = good.clone();
        long.push(0);
        for (name, bytes) in [
            ("garbage", b"not safetensors".to_vec()),
            ("empty", Vec::new()),
            ("long", long),
            ("short", good[..good.len() - 1].to_vec()),
        ] {
            let e = load_file(name, &bytes).unwrap_err().to_string();
            assert!(e.ends_with(&load_err(&bytes)), "{name}: {e}");
        }
    }

    #[test]
    fn unlisted_u8_tensors_and_other_metadata_load_as_before() {
        let views = vec![(
            "u".to_string(),
            safetensors::tensor::TensorView::new(Dtype::U8, vec![2], &[3u8, 4][..]).unwrap(),
        )];
        let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
        let bytes = safetensors::serialize(views, Some(meta)).unwrap();
        let w = Weights::from_bytes(&bytes).unwrap();
        assert_eq!(
            w.get("u"),
            Some(&Tensor::int(ElemType::UInt(8), vec![2], vec![3, 4]))
        );
    }
}
