//! Element types, dimensions and tensor types of the graph IR.
//!
//! Every value in a bnnc graph has a [`TensorType`]: an [`ElemType`] and a static
//! shape whose first dimension may be the symbolic batch `N`.

use std::fmt;

/// The element type of a tensor.
///
/// The *numeric value* of each element type is what arithmetic, comparisons and the
/// interpreter see:
/// - `f32`: IEEE-754 single precision;
/// - `i32`: 32-bit two's-complement accumulator;
/// - `b1`: bipolar binary, value -1 or +1 (packed as bit 1 = -1, bit 0 = +1);
/// - `ternary`: -1, 0 or +1;
/// - `uN` (N in 2..=8): unsigned, 0 ..= 2^N - 1;
/// - `iN` (N in 2..=8): signed two's complement, -2^(N-1) ..= 2^(N-1) - 1; `i8` is int8.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ElemType {
    F32,
    I32,
    B1,
    Ternary,
    /// Unsigned n-bit integer, 2 <= bits <= 8.
    UInt(u8),
    /// Signed n-bit integer, 2 <= bits <= 8 (`SInt(8)` is int8).
    SInt(u8),
}

impl ElemType {
    /// Parses an element type name (`f32`, `i32`, `b1`, `ternary`, `u2`..`u8`, `i2`..`i8`).
    pub fn from_name(s: &str) -> Option<ElemType> {
        match s {
            "f32" => Some(ElemType::F32),
            "i32" => Some(ElemType::I32),
            "b1" => Some(ElemType::B1),
            "ternary" => Some(ElemType::Ternary),
            _ => {
                let (signed, digits) = if let Some(d) = s.strip_prefix('u') {
                    (false, d)
                } else if let Some(d) = s.strip_prefix('i') {
                    (true, d)
                } else {
                    return None;
                };
                if digits.len() != 1 {
                    return None;
                }
                let bits: u8 = digits.parse().ok()?;
                if !(2..=8).contains(&bits) {
                    return None;
                }
                Some(if signed {
                    ElemType::SInt(bits)
                } else {
                    ElemType::UInt(bits)
                })
            }
        }
    }

    /// All names accepted by [`ElemType::from_name`], for error messages.
    pub const NAMES: &'static str = "f32, i32, b1, ternary, u2..u8, i2..i8";

    /// True for every type whose values are integers (everything but `f32`).
    pub fn is_integer(self) -> bool {
        !matches!(self, ElemType::F32)
    }

    /// Smallest and largest numeric value, for integer types.
    pub fn int_range(self) -> Option<(i64, i64)> {
        match self {
            ElemType::F32 => None,
            ElemType::I32 => Some((i32::MIN as i64, i32::MAX as i64)),
            ElemType::B1 | ElemType::Ternary => Some((-1, 1)),
            ElemType::UInt(b) => Some((0, (1i64 << b) - 1)),
            ElemType::SInt(b) => Some((-(1i64 << (b - 1)), (1i64 << (b - 1)) - 1)),
        }
    }

    /// True when `v` is a value of this type (`b1` excludes 0).
    pub fn admits(self, v: i64) -> bool {
        match self {
            ElemType::B1 => v == -1 || v == 1,
            _ => match self.int_range() {
                Some((lo, hi)) => lo <= v && v <= hi,
                None => true,
            },
        }
    }

    /// Storage width in bits of one element (1 for `b1`, 2 for `ternary`).
    pub fn bits(self) -> u32 {
        match self {
            ElemType::F32 | ElemType::I32 => 32,
            ElemType::B1 => 1,
            ElemType::Ternary => 2,
            ElemType::UInt(b) | ElemType::SInt(b) => b as u32,
        }
    }
}

impl fmt::Display for ElemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElemType::F32 => f.write_str("f32"),
            ElemType::I32 => f.write_str("i32"),
            ElemType::B1 => f.write_str("b1"),
            ElemType::Ternary => f.write_str("ternary"),
            ElemType::UInt(b) => write!(f, "u{b}"),
            ElemType::SInt(b) => write!(f, "i{b}"),
        }
    }
}

/// One dimension of a shape: a fixed size, or the batch `N` (only ever first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    /// The batch size, chosen at run time.
    Batch,
    Fixed(usize),
}

impl Dim {
    /// The size with the batch dimension resolved to `batch`.
    pub fn resolve(self, batch: usize) -> usize {
        match self {
            Dim::Batch => batch,
            Dim::Fixed(n) => n,
        }
    }

    pub fn fixed(self) -> Option<usize> {
        match self {
            Dim::Batch => None,
            Dim::Fixed(n) => Some(n),
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Batch => f.write_str("N"),
            Dim::Fixed(n) => write!(f, "{n}"),
        }
    }
}

/// A shape: dimensions outermost first. Activations are NHWC.
pub type Shape = Vec<Dim>;

/// Element type plus shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    pub elem: ElemType,
    pub shape: Shape,
}

impl TensorType {
    pub fn new(elem: ElemType, shape: Shape) -> Self {
        TensorType { elem, shape }
    }

    /// A type with all-fixed dimensions.
    pub fn fixed(elem: ElemType, dims: &[usize]) -> Self {
        TensorType {
            elem,
            shape: dims.iter().map(|&d| Dim::Fixed(d)).collect(),
        }
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// True when the first dimension is the batch `N`.
    pub fn is_batched(&self) -> bool {
        self.shape.first() == Some(&Dim::Batch)
    }

    /// Concrete dimensions for a given batch size.
    pub fn dims(&self, batch: usize) -> Vec<usize> {
        self.shape.iter().map(|d| d.resolve(batch)).collect()
    }

    /// Number of elements for a given batch size (saturating, never overflows).
    pub fn numel(&self, batch: usize) -> usize {
        self.shape
            .iter()
            .fold(1usize, |acc, d| acc.saturating_mul(d.resolve(batch)))
    }

    /// The last dimension (channels in NHWC), if fixed.
    pub fn channels(&self) -> Option<usize> {
        self.shape.last().and_then(|d| d.fixed())
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[", self.elem)?;
        for (i, d) in self.shape.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elem_names_round_trip() {
        for name in [
            "f32", "i32", "b1", "ternary", "u2", "u5", "u8", "i2", "i7", "i8",
        ] {
            let t = ElemType::from_name(name).unwrap();
            assert_eq!(t.to_string(), name);
        }
        for bad in ["u1", "u9", "i1", "i9", "f16", "u", "u10", "b2", ""] {
            assert_eq!(ElemType::from_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(ElemType::UInt(2).int_range(), Some((0, 3)));
        assert_eq!(ElemType::SInt(8).int_range(), Some((-128, 127)));
        assert!(!ElemType::B1.admits(0));
        assert!(ElemType::Ternary.admits(0));
    }
}
