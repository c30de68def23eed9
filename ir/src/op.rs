//! The closed set of graph operations and their attributes.
//!
//! Each variant's doc comment is the op's contract: operands, attributes, typing
//! and exact meaning. The reference interpreter (`bnnc-runtime`) implements these
//! words literally; every compiled path is tested against it.
//!
//! Conventions shared by all ops:
//! - activations are NHWC, conv weights OHWI `[out, kh, kw, in/groups]`, dense
//!   weights `[out, in]`; "channels" means the last axis;
//! - integer element types compute on their numeric values (see
//!   [`ElemType`](crate::ElemType)); where an op says "as f32" an integer is
//!   converted with round-to-nearest (exact below 2^24);
//! - `sign(x)` is -1 iff `x < 0`, so 0, -0.0 and NaN give +1.
//!
//! Adding an op: in bnnc-ir, the variant in this enum (with its contract) and
//! one row of the op table, `op_table!` below: text name, operands, and each
//! attribute's key, kind and default. Name, arity, operand names, parsing and
//! canonical printing are generated from that row; an attribute whose values
//! no existing kind reads gets a new kind in `text/attr.rs`. Then the op's
//! type rule in the verifier (`verify.rs`), the interpreter (`bnnc-runtime`)
//! and a corpus model. Exhaustive matches point at every place.

use crate::tensor::TensorData;
use crate::types::{ElemType, TensorType};

/// How a binary convolution treats positions outside the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PadValue {
    /// Padded positions hold +1 (bit 0).
    PlusOne,
    /// Padded positions hold -1 (bit 1).
    MinusOne,
    /// Padded positions contribute nothing to the sum: what a float model trained
    /// with zero padding computes. Compiled code adds a per-tap correction for
    /// each of the three (`pad * sum_c w` for +1 and -1, nothing for 0).
    Zero,
}

impl PadValue {
    /// The numeric value a padded position contributes as an operand of the product
    /// (0 for [`PadValue::Zero`]).
    pub fn value(self) -> i32 {
        match self {
            PadValue::PlusOne => 1,
            PadValue::MinusOne => -1,
            PadValue::Zero => 0,
        }
    }
}

/// Attributes of `conv2d`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dAttrs {
    /// `[sh, sw]`, each >= 1.
    pub stride: [usize; 2],
    /// `[top, left, bottom, right]`.
    pub padding: [usize; 4],
    /// `[dh, dw]`, each >= 1.
    pub dilation: [usize; 2],
    /// Input and output channels are split into this many groups (>= 1).
    pub groups: usize,
    /// What padded positions hold. `None` means the input type's zero (f32 0.0,
    /// integer 0), which is the same as [`PadValue::Zero`]; a `b1` input with
    /// padding must name it, since -1/+1/nothing all have users.
    pub pad_value: Option<PadValue>,
}

impl Default for Conv2dAttrs {
    fn default() -> Self {
        Conv2dAttrs {
            stride: [1, 1],
            padding: [0; 4],
            dilation: [1, 1],
            groups: 1,
            pad_value: None,
        }
    }
}

impl Conv2dAttrs {
    pub fn has_padding(&self) -> bool {
        self.padding.iter().any(|&p| p > 0)
    }

    /// The pad value that applies: [`PadValue::Zero`] when none was named.
    pub fn effective_pad(&self) -> PadValue {
        self.pad_value.unwrap_or(PadValue::Zero)
    }
}

/// Attributes of `maxpool2d` and `avgpool2d`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PoolAttrs {
    /// `[kh, kw]`, each >= 1.
    pub kernel: [usize; 2],
    /// `[sh, sw]`, each >= 1 (defaults to the kernel).
    pub stride: [usize; 2],
    /// `[top, left, bottom, right]`; padded positions are never part of a window's
    /// max or average (they are skipped, not filled).
    pub padding: [usize; 4],
}

/// A `sign` op's gradient estimator for training: a name and its numeric
/// parameters. Inference ignores it; the text format keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct Estimator {
    pub name: String,
    /// Parameters sorted by name.
    pub params: Vec<(String, f64)>,
}

/// Known estimators and the parameters each accepts. The trainer defines their
/// meaning; the IR only checks names.
pub const ESTIMATORS: &[(&str, &[&str])] = &[
    // Straight-through with clipping (Hubara et al.): grad 1 where |x| <= clip.
    ("ste", &["clip"]),
    // Identity straight-through (no clipping).
    ("identity", &[]),
    // Bi-Real Net's piecewise-polynomial ApproxSign.
    ("approx_sign", &[]),
    // SwishSign (BNN+): derivative of 2*sigmoid(beta x)(1 + beta x (1 - sigmoid(beta x))) - 1.
    ("swish_sign", &["beta"]),
    // DIR-Net distribution-sensitive two-stage estimator, k and t scheduled over training.
    ("dte", &["k_min", "k_max", "t_min", "t_max"]),
    // FDA: truncated Fourier series of the square wave, plus noise adaptation.
    ("fda", &["terms", "omega", "noise"]),
    // Learned binarizer ("binarization as binary classification").
    ("learned", &["hidden"]),
];

/// A graph operation. Operands are listed in order; `[C]` means one value per
/// channel (the last axis of the first operand).
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A model input of the declared type. No operands.
    Input(TensorType),
    /// A tensor read from the weights file under `key`, of the declared type.
    /// Storage (see `weights`): `f32` as F32, `i32` as I32, `b1` bit-packed as U8
    /// (8 channels a byte; I8 holding -1/+1 is still read), `ternary`/`iN` as I8
    /// holding the numeric values, `uN` as U8.
    Weight { key: String, ty: TensorType },
    /// A small constant written in the model text, row-major.
    Const { ty: TensorType, data: TensorData },
    /// `sign(x)`: any type -> `b1`, elementwise; -1 iff x < 0 (0, -0.0, NaN -> +1).
    /// `estimator` is a training attribute.
    Sign { estimator: Option<Estimator> },
    /// `quantize(x)`: any type -> `to` (a `uN` or `iN`), elementwise:
    /// `q = clamp(round_half_even(x / scale) + zero_point, lo, hi)` computed in f32
    /// then i64, where `[lo, hi]` is `clip` if given, else the range of `to`.
    /// NaN quantizes to `zero_point` clamped into range.
    Quantize {
        to: ElemType,
        scale: f32,
        zero_point: i32,
        clip: Option<(i32, i32)>,
    },
    /// `dequantize(q)`: integer type -> `f32`: `((q - zero_point) as f32) * scale`,
    /// the difference taken exactly (in i64) before the conversion.
    Dequantize { scale: f32, zero_point: i32 },
    /// `ternarize(x)`: any type -> `ternary`: +1 if x > delta, -1 if x < -delta,
    /// else 0 (NaN -> 0). Integers are compared exactly (not rounded to f32).
    Ternarize { delta: f32 },
    /// `threshold(x, t)` or `threshold(x, t, dir)`: multi-threshold over channels.
    /// `x: [.., C]` of any integer type with `t: i32`, or `f32` with `t: f32`;
    /// `t: [C, T]` or `[1, T]` (one row shared by all channels), optional
    /// `dir: i32 [C]` holding +1 or -1 (default +1). For channel c the result counts
    /// the thresholds passed: `#{k : x >= t[c,k]}` when dir = +1,
    /// `#{k : x <= t[c,k]}` when dir = -1. Thresholds need not be sorted.
    /// T = 1 gives `b1` (count 1 -> +1, count 0 -> -1, so `threshold(x, [0])` is
    /// `sign(x)`); T = 2^n - 1 gives `un`, the count itself.
    Threshold,
    /// `table(x, t, lo=L)`: a per-channel lookup over an integer range.
    /// `x: [.., C]` of any integer type (`b1` and `ternary` by their values
    /// -1/0/+1), `t: [C, R]` or `[1, R]` (one row shared by all channels) of any
    /// element type E, R >= 1. Result: x's shape, type E, with
    /// `out[.., c] = t[c, clamp(x - L, 0, R - 1)]` (the difference taken in
    /// i64), so entry k of a row is the value for `x = L + k` and inputs outside
    /// `[L, L + R - 1]` read the nearest end. The optimizer writes it for an
    /// elementwise chain between an accumulator and a `sign` whose sign switches
    /// more than once over the accumulator's range.
    Table { lo: i32 },
    /// `fill(x, value=v, to=E)`: a tensor of x's shape (batch included) with
    /// every element `v` of type E. x's elements are never read, only its
    /// shape; `v` must be a value of E (+1/-1 for `b1`, a whole number in range
    /// for integer types). The optimizer writes it for `sign` of a value known
    /// never to be negative.
    Fill { value: f32, to: ElemType },
    /// `conv2d(x, w)`: `x: [N, H, W, C]`, `w: [O, kh, kw, C/groups]` -> `[N, OH, OW, O]`
    /// with `OH = (H + top + bottom - dh*(kh-1) - 1) / sh + 1` (likewise OW).
    /// `out[n,y,x,o] = sum_{i,j,c} in(n, y*sh - top + i*dh, x*sw - left + j*dw,
    /// g*Cg + c) * w[o,i,j,c]` where g = o / (O/groups), Cg = C/groups, and an
    /// out-of-bounds position contributes the pad value (0 contributes nothing).
    /// Element-type pairs (x, w) -> out: see [`dot_result_type`]. Products are
    /// taken literally (an f32 input times a 0 ternary weight is `x * 0.0`), and
    /// f32 sums start from +0.0 and add in (i, j, c) order; integer sums wrap.
    Conv2d(Conv2dAttrs),
    /// `dense(x, w)`: `x: [N, K]`, `w: [O, K]` -> `[N, O]`,
    /// `out[n,o] = sum_k x[n,k] * w[o,k]`; types as [`dot_result_type`]. For
    /// b1 x b1 this is `K - 2 * popcount(a xor w)`. f32 sums start from +0.0
    /// and add in k order.
    Dense,
    /// `batchnorm(x, gamma, beta, mean, var)`, per channel, all `f32 [C]`:
    /// `y = (x - mean) / sqrt(var + eps) * gamma + beta`, evaluated in f32 in
    /// exactly that order. Any input type; result `f32`.
    BatchNorm { eps: f32 },
    /// `add(a, b)`: broadcasting (numpy rules) elementwise sum. Result `f32` if
    /// either operand is `f32`, else `i32` (wrapping).
    Add,
    /// `sub(a, b)`: as `add`, `a - b`.
    Sub,
    /// `mul(a, b)`: as `add`, `a * b`.
    Mul,
    /// `relu(x)`: `x` if `x > 0`, NaN if `x` is NaN, else +0.0 (so relu(-0.0) is
    /// +0.0); `f32` stays `f32`, integer types give `i32`.
    Relu,
    /// `prelu(x, alpha)`, `alpha: f32 [C]`: `x` if `x > 0` else `alpha * x`; `f32`.
    Prelu,
    /// `rprelu(x, gamma, beta, zeta)` (ReActNet), all `f32 [C]`:
    /// `u = x - gamma; y = (u > 0 ? u : beta * u) + zeta`; `f32`.
    Rprelu,
    /// `hardtanh(x) = min(max(x, -1), 1)`; `f32`. NaN stays NaN.
    Hardtanh,
    /// `clip(x, min=a, max=b) = min(max(x, a), b)`; `f32`. NaN stays NaN.
    /// Signed zeros: a bound replaces `x` only when `x` compares strictly
    /// outside it, so `x` keeps its own zero (`clip(-0.0, min=0, max=1)` is
    /// -0.0, `clip(+0.0, min=-0.0, max=1)` is +0.0); with `a > b` every
    /// non-NaN element becomes `b`.
    Clip { min: f32, max: f32 },
    /// `sigmoid(x) = 1 / (1 + exp(-x))`; `f32`. `exp` is the C library's
    /// `expf`, in the interpreter (Rust's `f32::exp` calls it) and in native
    /// code (a call to `expf`), so the bits are those of the platform's libm.
    Sigmoid,
    /// `maxpool2d(x)`: `[N,H,W,C]`, max over each window of in-bounds positions,
    /// scanned in row-major order: the first element, replaced by each later one
    /// that compares greater (so an f32 NaN wins only when it comes first).
    /// Keeps the element type (a `b1` max is +1 if any element is +1).
    MaxPool2d(PoolAttrs),
    /// `avgpool2d(x)`: mean over the in-bounds positions of each window; `f32`.
    /// Each element is converted to f32, summed from +0.0 in row-major window
    /// order, then divided by the count.
    AvgPool2d(PoolAttrs),
    /// `global_avgpool(x)`: `[N,H,W,C] -> [N,C]`, mean over H and W as f32,
    /// summed in row-major order then divided by H*W.
    GlobalAvgPool,
    /// `concat(a, b, ...)` along `axis` (negative counts from the end); one element
    /// type; the other dimensions equal.
    Concat { axis: i64 },
    /// `replicate(x, times=beta)`: `[.., C] -> [.., beta*C]`,
    /// `out[.., j] = x[.., j mod C]` (RepConv/Reptran channel replication: the
    /// input repeated beta times along channels).
    Replicate { times: usize },
    /// `channel_shuffle(x, groups=g)` (ShuffleNet): `C = g*m`;
    /// `out[.., i*g + k] = x[.., k*m + i]` for i < m, k < g.
    ChannelShuffle { groups: usize },
    /// `flatten(x)`: `[N, d1, ..] -> [N, d1*..]`, row-major.
    Flatten,
    /// `reshape(x, shape=[..])`: row-major reinterpretation; the batch `N` may
    /// appear only first, and only if x is batched.
    Reshape { shape: Vec<crate::types::Dim> },
    /// `softmax(x, axis)`: `exp(x - max) / sum exp(x - max)` along axis, the max
    /// taken over non-NaN elements and the sum in index order; `f32`. `exp` is
    /// the C library's `expf`, as for `sigmoid`.
    Softmax { axis: i64 },
    /// `argmax(x, axis)`: index (`i32`) of the first maximum along axis, which is
    /// removed. NaN elements never win unless the first element is NaN and nothing
    /// compares greater than it (then 0).
    Argmax { axis: i64 },
}

/// The op table: the one place that names every op of the text format, its
/// operands and its attributes. `op_table!(m)` hands the table to the macro `m`,
/// which generates code from it; three such consumers exist:
/// - here: [`Op::name`], [`Op::arity`], [`Op::operand_names`], [`Op::attr_keys`],
///   [`Op::is_leaf`] and [`OP_NAMES`];
/// - `text/parse.rs`: building an op from its name and attributes;
/// - `text/print.rs`: the canonical attributes of an op.
///
/// Grammar of the table:
/// - `leaves:` ops that declare a value and are written in their own syntax
///   (`input x: T`, `w = @key: T`, `k = [..]: T`): text name and variant;
/// - `calls:` ops written `name(operands, key=value, ..)`, in the order that
///   "unknown op" messages list them. Each row is
///   `"name"(operands) => Variant { key: Kind = default, .. }`, or
///   `=> Variant(Struct) { .. }` when the attributes are the fields of a struct
///   held by the variant. Unit variants have `{}`.
///   - Operands: `(x, w)` is exactly these; `(x, thresholds; dir)` makes the
///     names after `;` optional; `(a, ..)` is variadic, at least the named ones.
///     The names appear in arity messages.
///   - Attributes, one per field (a variant's fields and the table's keys must
///     agree, or the generated code does not compile), in the order they are
///     parsed and printed. `Kind` names one of the kinds in `text/attr.rs`,
///     which say how a value is read (with its error messages) and written.
///     The default is a value, which canonical printing omits; an earlier
///     key of the same op (as `stride: Pair = kernel`); or `Required("ex")`
///     for an attribute that must be written (`ex` is the example value in
///     the "needs the attribute" message, `key=ex`).
macro_rules! op_table {
    ($consumer:ident) => {
        $consumer! {
            leaves:
                "input" => Input,
                "weight" => Weight,
                "const" => Const;
            calls:
                "sign"(x) => Sign { estimator: Estimator = None },
                "quantize"(x) => Quantize {
                    to: IntType = Required("u4"),
                    scale: F32 = Required("0.125"),
                    zero_point: I32 = 0,
                    clip: IntRange = None,
                },
                "dequantize"(x) => Dequantize {
                    scale: F32 = Required("0.125"),
                    zero_point: I32 = 0,
                },
                "ternarize"(x) => Ternarize { delta: F32 = Required("0.5") },
                "threshold"(x, thresholds; dir) => Threshold {},
                "table"(x, table) => Table { lo: I32 = Required("-64") },
                "fill"(x) => Fill {
                    value: F32 = Required("1"),
                    to: ElemType = Required("b1"),
                },
                "conv2d"(x, w) => Conv2d(Conv2dAttrs) {
                    stride: Pair = [1, 1],
                    padding: Padding = [0; 4],
                    dilation: Pair = [1, 1],
                    groups: Count = 1,
                    pad_value: PadValue = None,
                },
                "dense"(x, w) => Dense {},
                "batchnorm"(x, gamma, beta, mean, var) => BatchNorm { eps: F32 = 1e-5 },
                "add"(a, b) => Add {},
                "sub"(a, b) => Sub {},
                "mul"(a, b) => Mul {},
                "relu"(x) => Relu {},
                "prelu"(x, alpha) => Prelu {},
                "rprelu"(x, gamma, beta, zeta) => Rprelu {},
                "hardtanh"(x) => Hardtanh {},
                "clip"(x) => Clip {
                    min: F32 = Required("0"),
                    max: F32 = Required("6"),
                },
                "sigmoid"(x) => Sigmoid {},
                "maxpool2d"(x) => MaxPool2d(PoolAttrs) {
                    kernel: Pair = Required("2"),
                    stride: Pair = kernel,
                    padding: Padding = [0; 4],
                },
                "avgpool2d"(x) => AvgPool2d(PoolAttrs) {
                    kernel: Pair = Required("2"),
                    stride: Pair = kernel,
                    padding: Padding = [0; 4],
                },
                "global_avgpool"(x) => GlobalAvgPool {},
                "concat"(a, ..) => Concat { axis: I64 = -1 },
                "replicate"(x) => Replicate { times: Count = Required("2") },
                "channel_shuffle"(x) => ChannelShuffle { groups: Count = Required("2") },
                "flatten"(x) => Flatten {},
                "reshape"(x) => Reshape { shape: Shape = Required("[N, 7, 7, 64]") },
                "softmax"(x) => Softmax { axis: I64 = -1 },
                "argmax"(x) => Argmax { axis: I64 = -1 },
        }
    };
}
pub(crate) use op_table;

/// The `Op` value (or pattern) of a table row with its attributes bound to
/// variables of the same names: `op_value!(Conv2d(Conv2dAttrs) { stride, .. })`.
macro_rules! op_value {
    ($variant:ident ($wrap:ident) { $($key:ident),* }) => {
        Op::$variant($wrap { $($key),* })
    };
    ($variant:ident { $($key:ident),* }) => {
        Op::$variant { $($key),* }
    };
}
pub(crate) use op_value;

/// Operand counts and names of a table row: `(min, max, names)`.
macro_rules! op_operands {
    ($($req:ident),+ , ..) => {
        (<[&str]>::len(&[$(stringify!($req)),+]), usize::MAX, None)
    };
    ($($req:ident),* $(; $($opt:ident),+)?) => {{
        const NAMES: &[&str] = &[$(stringify!($req),)* $($(stringify!($opt)),+)?];
        (<[&str]>::len(&[$(stringify!($req)),*]), NAMES.len(), Some(NAMES))
    }};
}

/// The table consumer of this module: op names, operands and attribute keys.
macro_rules! op_meta {
    (
        leaves: $($leaf:literal => $leaf_variant:ident),+ ;
        calls: $(
            $name:literal ($($operands:tt)*) => $variant:ident $(($wrap:ident))? {
                $($key:ident : $kind:ident = $default:expr),* $(,)?
            }
        ),+ $(,)?
    ) => {
        /// Every op written as a call `name(operands, key=value)`, in table order:
        /// exactly the op names the parser accepts.
        pub const OP_NAMES: &[&str] = &[$($name),+];

        impl Op {
            /// The op's name in the text format.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Op::$leaf_variant { .. } => $leaf,)+
                    $(Op::$variant { .. } => $name,)+
                }
            }

            /// Allowed operand counts `(min, max)`; `max = usize::MAX` for variadic.
            pub fn arity(&self) -> (usize, usize) {
                let (min, max, _) = self.operands();
                (min, max)
            }

            /// Names of the operands, for messages (`None` for variadic ops).
            pub fn operand_names(&self) -> Option<&'static [&'static str]> {
                self.operands().2
            }

            fn operands(&self) -> (usize, usize, Option<&'static [&'static str]>) {
                match self {
                    $(Op::$leaf_variant { .. } => (0, 0, Some(&[])),)+
                    $(Op::$variant { .. } => op_operands!($($operands)*),)+
                }
            }

            /// The attribute keys the text format accepts for this op, in the
            /// order they are printed (a `sign` estimator's own parameters are
            /// listed in [`ESTIMATORS`]). Empty for leaves.
            pub fn attr_keys(&self) -> &'static [&'static str] {
                match self {
                    $(Op::$leaf_variant { .. } => &[],)+
                    $(Op::$variant { .. } => &[$(stringify!($key)),*],)+
                }
            }

            /// True for ops that declare a value rather than compute one.
            pub fn is_leaf(&self) -> bool {
                matches!(self, $(Op::$leaf_variant { .. })|+)
            }
        }
    };
}
op_table!(op_meta);

/// The result element type of `conv2d`/`dense` for an (input, weight) pair, or
/// `None` when no kernel exists. The pairs:
/// - `f32 x f32 -> f32`;
/// - `f32 x b1 -> f32` and `f32 x ternary -> f32` (binary/ternary-weight networks:
///   additions and subtractions only);
/// - `b1 x b1 -> i32` (XNOR/popcount), `b1 x ternary`, `ternary x ternary -> i32`;
/// - `uN x b1 -> i32`, `uN x uM -> i32` (bit-serial);
/// - `i8 x i8 -> i32`.
pub fn dot_result_type(x: ElemType, w: ElemType) -> Option<ElemType> {
    use ElemType::*;
    match (x, w) {
        (F32, F32) | (F32, B1) | (F32, Ternary) => Some(F32),
        (B1, B1) | (B1, Ternary) | (Ternary, Ternary) => Some(I32),
        (UInt(_), B1) | (UInt(_), UInt(_)) => Some(I32),
        (SInt(8), SInt(8)) => Some(I32),
        _ => None,
    }
}

/// The supported pairs of [`dot_result_type`], for error messages.
pub const DOT_PAIRS: &str = "f32 x f32, f32 x b1, f32 x ternary, b1 x b1, b1 x ternary, \
ternary x ternary, uN x b1, uN x uM, i8 x i8";
