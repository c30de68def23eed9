//! The target-aware kernel layer, first family: bit-plane dot products.
//!
//! Lowering describes a binary convolution (one group) or dense layer as a
//! [`B1Dot`] problem and its weights as [`PlaneWeights`]: `b1` weights are
//! one sign plane; ternary weights a sign plane and a nonzero plane; a
//! RepConv conv over a read-through `replicate(x, times=b)` is read as x
//! with one plane per replica, or fewer signed-digit planes with shifts.
//! This layer picks a [`MicroKernel`] for the target (and the backend's
//! vector limit, [`LowerOptions`]), packs the planes in the layout that
//! kernel reads ([`layout::OcBlocked`]) and emits it in kir, with the
//! epilogue fused: the `i32` accumulator, thresholds to packed bits, or a
//! batch-norm to `f32`, or a table to packed bits ([`DotEpilogue`]).
//! Convolutions with groups are covered when each group's input channels
//! are whole 64-bit words and its output channels whole blocks. When no
//! micro-kernel applies (another target, groups of fewer channels or
//! depthwise, thresholds read through a replicate, groups over a replicate)
//! lowering keeps its scalar loop nests, which are also the reference
//! every micro-kernel is tested against, bit for bit
//! (`compiler/tests/kernels_b1.rs`).
//!
//! The family, "bit-plane dot, vectorized across output channels"
//! ([`b1_dot`]): a tile of `P` output pixels x `B` blocks of `V` output
//! channels held in `P * B` vector accumulators of `V` i64 lanes; V = 8, 4,
//! 2 or 1 by [`MicroKernel::lanes`], the tile by [`MicroKernel::choose`].

mod b1_dot;
pub mod f32_conv;
pub mod layout;

use bnnc_ir::PadValue;
use bnnc_kir::target::{Arch, Target};

use super::{Cx, LowerOptions};

/// A binary dot-product node as the micro-kernels see it: a convolution or
/// a dense layer (1x1 pixels and taps), its weights given as bit planes
/// ([`PlaneWeights`]).
///
/// Buffers: the input is packed `b1` NHWC, `words(c)` 64-bit words per pixel
/// (bit `ch % 64` of word `ch / 64` set for -1; tail bits 0), pixel
/// `(n, iy, ix)` at word `((n*h + iy)*w + ix) * words(c)`. The output pixel
/// `pix = (n*oh + oy)*ow + ox` holds `o` channels: `i32` accumulators at
/// element `pix*o + ch` ([`DotEpilogue::Acc`]), or packed bits, `words(o)`
/// words per pixel ([`DotEpilogue::Bits`]).
///
/// The accumulator of output channel `ch` at output pixel `(n, oy, ox)` is
/// the sum over taps `(i, j)` of: `c - 2 * popcount(x[n, iy, ix] xor w[ch, i,
/// j])` when `iy = oy*sh + i*dh - top` and `ix = ox*sw + j*dw - left` lie in
/// the input, else `pad * sum_c w[ch, i, j, c]` (0 for `pad_value=0`).
#[derive(Clone, Debug, PartialEq)]
pub struct B1Dot {
    /// How many samples (dense: rows) the leading dimension holds.
    pub samples: Samples,
    /// Input rows and columns (1 and 1 for dense).
    pub h: usize,
    pub w: usize,
    /// Output rows and columns (1 and 1 for dense).
    pub oh: usize,
    pub ow: usize,
    /// Output channels.
    pub o: usize,
    /// Kernel rows and columns (1 and 1 for dense).
    pub kh: usize,
    pub kw: usize,
    /// Input channels of one group: the bits of one tap (dense: K).
    pub c: usize,
    /// Convolution groups: output channel `ch` reads input channels
    /// `g*c .. (g+1)*c` of each pixel, `g = ch / (o / groups)`. With more
    /// than one group, `c` is a multiple of 64 (each group's channels are
    /// whole words of the pixel's `groups * c / 64`).
    pub groups: usize,
    /// `[sh, sw]`.
    pub stride: [usize; 2],
    /// `[dh, dw]`.
    pub dilation: [usize; 2],
    /// Padding above and left of the input; below and right follow from the
    /// output size.
    pub pad_top_left: [usize; 2],
    pub pad: PadValue,
    pub epilogue: DotEpilogue,
}

/// The leading dimension of a problem's input and output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Samples {
    /// The run-time `batch` (`N`).
    Batch,
    /// A fixed count (an unbatched tensor's first dimension).
    Fixed(usize),
}

/// What a binary dot kernel does with each accumulator.
#[derive(Clone, Debug, PartialEq)]
pub enum DotEpilogue {
    /// Store the `i32` accumulator.
    Acc,
    /// Store one bit per output channel: a fused `threshold` (one threshold
    /// per channel) or `sign`.
    Bits(Thresholds),
    /// Store the `f32` batch-norm of the accumulator ([`BnParams`]).
    Affine(BnParams),
    /// Store one bit per output channel from a fused `table` with `b1`
    /// values ([`TableBits`]).
    Table(TableBits),
}

/// A `table(acc, t, lo)` with `b1` entries: channel `ch`'s bit is entry
/// `clamp(y - lo, 0, r - 1)` of its row (set for -1). `rows` holds one row
/// per output channel, or one shared row, each packed like a `b1` tensor's
/// row of `r` entries (`ceil(r / 64)` words, bit k of word k / 64).
#[derive(Clone, Debug, PartialEq)]
pub struct TableBits {
    pub lo: i32,
    pub r: usize,
    pub rows: Vec<u64>,
}

/// A `batchnorm` fused into a dot kernel, per output channel `c`: the
/// `f32` output is `(y - mean) / den * gamma + beta` with `y` the `i32`
/// accumulator converted to f32 (round to nearest even) and `den` the f32
/// `sqrt(var + eps)`, in this order, each operation rounded (no fused
/// multiply-add): the op's exact value.
#[derive(Clone, Debug, PartialEq)]
pub struct BnParams {
    pub mean: Vec<f32>,
    pub den: Vec<f32>,
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
}

impl BnParams {
    fn len_is(&self, o: usize) -> bool {
        [&self.mean, &self.den, &self.gamma, &self.beta]
            .iter()
            .all(|v| v.len() == o)
    }
}

/// Per output channel `ch`: the bit is set (the value -1) where the
/// accumulator does not pass, passing meaning `acc >= t[ch]`, or
/// `acc <= t[ch]` where `down[ch]` (direction -1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Thresholds {
    pub t: Vec<i32>,
    pub down: Vec<bool>,
}

impl B1Dot {
    /// A dense layer `[N, c] x [o, c]`.
    pub fn dense(samples: Samples, o: usize, c: usize, epilogue: DotEpilogue) -> B1Dot {
        B1Dot {
            samples,
            h: 1,
            w: 1,
            oh: 1,
            ow: 1,
            o,
            kh: 1,
            kw: 1,
            c,
            groups: 1,
            stride: [1, 1],
            dilation: [1, 1],
            pad_top_left: [0, 0],
            pad: PadValue::Zero,
            epilogue,
        }
    }

    /// Kernel taps `kh * kw`.
    pub fn taps(&self) -> usize {
        self.kh * self.kw
    }

    /// Words of one tap (of one input pixel).
    pub fn words(&self) -> usize {
        self.c.div_ceil(64)
    }

    /// Bits summed per output: `taps * c`; the accumulator lies in `[-K, K]`.
    pub fn k(&self) -> usize {
        self.taps() * self.c
    }

    /// A dense layer, or a convolution whose every pixel is one tap over one
    /// input pixel: tiles run over the samples instead of an output row.
    fn is_dense(&self) -> bool {
        self.h == 1 && self.w == 1 && self.oh == 1 && self.ow == 1 && self.taps() == 1
    }

    /// The output rows (`axis` 0) or columns (1) whose every tap lies inside
    /// the input, `lo..hi` (empty when `lo >= hi`): `o*s - pad >= 0` and
    /// `o*s + (k-1)*d - pad <= n - 1`.
    pub fn interior(&self, axis: usize) -> (usize, usize) {
        match axis {
            0 => interior(
                self.h,
                self.kh,
                self.oh,
                self.stride[0],
                self.dilation[0],
                self.pad_top_left[0],
            ),
            _ => interior(
                self.w,
                self.kw,
                self.ow,
                self.stride[1],
                self.dilation[1],
                self.pad_top_left[1],
            ),
        }
    }

    /// Whether the micro-kernels compute this problem exactly: accumulators
    /// within `i32` by a wide margin (`K <= 2^30`), at least one channel, and
    /// shapes consistent with the epilogue.
    fn fits(&self) -> bool {
        let ok_epi = match &self.epilogue {
            DotEpilogue::Acc => true,
            DotEpilogue::Bits(t) => t.t.len() == self.o && t.down.len() == self.o,
            DotEpilogue::Affine(bn) => bn.len_is(self.o),
            DotEpilogue::Table(t) => {
                let wpr = t.r.div_ceil(64);
                t.r > 0 && (t.rows.len() == wpr || t.rows.len() == wpr * self.o)
            }
        };
        ok_epi
            && self.o > 0
            && self.c > 0
            && self.kh > 0
            && self.kw > 0
            && self.h > 0
            && self.w > 0
            && self.k() <= 1 << 30
            && self.groups > 0
            && self.o.is_multiple_of(self.groups)
            && (self.groups == 1 || self.c.is_multiple_of(64))
    }

    /// Whether micro-kernel `mk` computes this problem: one group, or
    /// groups whose output channels are whole blocks of V (and, for bits
    /// out, whole tiles of `V * B`, so each tile's bits lie in one word).
    fn fits_kernel(&self, mk: &MicroKernel) -> bool {
        let og = self.o / self.groups;
        let unit = match self.epilogue {
            DotEpilogue::Bits(_) | DotEpilogue::Table(_) => mk.lanes * mk.blocks,
            _ => mk.lanes,
        };
        self.groups == 1 || og.is_multiple_of(unit)
    }
}

/// The outputs `lo..hi` (empty when `lo >= hi`) of an axis of `n` inputs,
/// `k` taps, stride `s`, dilation `d` and padding `pad` before it, of `out`
/// outputs, whose every tap lies inside the input: `o*s - pad >= 0` and
/// `o*s + (k-1)*d - pad <= n - 1`.
fn interior(n: usize, k: usize, out: usize, s: usize, d: usize, pad: usize) -> (usize, usize) {
    let lo = pad.div_ceil(s);
    let reach = (k - 1) * d;
    let hi = if n - 1 + pad >= reach {
        ((n - 1 + pad - reach) / s + 1).min(out)
    } else {
        0
    };
    (lo.min(out), hi.max(lo.min(out)))
}

/// A register tile shape: `pixels` (P) output pixels x `blocks` (B) vectors
/// of output channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tile {
    pub pixels: usize,
    pub blocks: usize,
}

impl Tile {
    /// Whether the family can use this tile with vectors of `lanes` lanes:
    /// 1 to 16 pixels, at most 32 accumulators, and `lanes * blocks`
    /// dividing 64 (a tile's output bits lie in one word).
    pub fn fits(self, lanes: usize) -> bool {
        (1..=16).contains(&self.pixels)
            && self.blocks >= 1
            && self.pixels * self.blocks <= 32
            && 64 % (lanes * self.blocks) == 0
    }
}

impl std::fmt::Display for Tile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.pixels, self.blocks)
    }
}

impl std::str::FromStr for Tile {
    type Err = String;

    /// `PxB`, e.g. `4x2`.
    fn from_str(s: &str) -> Result<Tile, String> {
        let bad = || format!("`{s}` is not a tile: write PIXELSxBLOCKS, e.g. 4x2");
        let (p, b) = s.split_once('x').ok_or_else(bad)?;
        Ok(Tile {
            pixels: p.parse().map_err(|_| bad())?,
            blocks: b.parse().map_err(|_| bad())?,
        })
    }
}

/// The register tile of the "b1 dot, vectorized across output channels"
/// family: `pixels` (P) output pixels x `blocks` (B) vectors of `lanes` (V)
/// i64 lanes, one output channel per lane, so `P * B` vector accumulators
/// (V = 1: `i64` scalars, the instance for CPUs whose scalar `popcnt` beats
/// their vector popcount).
///
/// Per K step (one tap, one input word) the kernel loads B weight vectors,
/// splats each pixel's input word and adds `popcount(splat xor w)` to each
/// of the P x B accumulators: `P * B` vector xor/popcount/add for `B`
/// vector loads and `P` scalar loads (splats).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MicroKernel {
    pub lanes: usize,
    pub pixels: usize,
    pub blocks: usize,
}

impl MicroKernel {
    /// The vector width, in lanes of 64 bits, of the micro-kernel for
    /// `target` with vectors of at most `max_vector_bits`, or `None` for the
    /// scalar loops.
    ///
    /// - x86_64 with `avx512vpopcntdq` (and `avx512f`), 512 bits allowed:
    ///   V = 8 (`vpopcntq zmm`).
    /// - x86_64 with `avx2`, 256 bits allowed: V = 4 (LLVM counts the lanes
    ///   with `vpshufb` nibble tables and `vpsadbw`).
    /// - x86_64 with 128 bits allowed and a one-instruction 128-bit lane
    ///   popcount (`avx512vl` with `avx512vpopcntdq`, or `avx512bitalg` and
    ///   `avx512dq`: Cranelift's `vpopcntb` and `vpmullq`), or without
    ///   `popcnt` (the SSE2 baseline, where counting two lanes at once beats
    ///   counting one): V = 2.
    /// - other x86_64 with `popcnt` and 128 bits: V = 1, the family's
    ///   scalar-register instance (`popcnt` per word); there a 128-bit lane
    ///   popcount is a byte table lookup or bit arithmetic plus a 64-bit lane
    ///   multiply emulated by Cranelift, slower than two `popcnt`s.
    /// - aarch64 (NEON `cnt`): V = 2.
    /// - riscv64 with `zbb` (`cpop`), 64 bits allowed: V = 1. Without `zbb`
    ///   a popcount is a dozen instructions either way: the scalar loops.
    ///
    /// 128 bits is all Cranelift translates, whatever the target's features
    /// ([`crate::compile::Backend::max_vector_bits`]).
    pub fn lanes(target: &Target, max_vector_bits: u32) -> Option<usize> {
        let native = match target.arch {
            Arch::X86_64 if target.has("avx512vpopcntdq") && target.has("avx512f") => 512,
            Arch::X86_64 if target.has("avx2") => 256,
            Arch::X86_64 | Arch::Aarch64 => 128,
            Arch::Riscv64 if target.has("zbb") => 64,
            Arch::Riscv64 => 0,
        };
        let bits = native.min(max_vector_bits);
        let vector_popcount = target.has("avx512vl")
            && (target.has("avx512vpopcntdq")
                || (target.has("avx512bitalg") && target.has("avx512dq")));
        match bits {
            512.. => Some(8),
            256..=511 => Some(4),
            128..=255
                if target.arch == Arch::X86_64 && target.has("popcnt") && !vector_popcount =>
            {
                Some(1)
            }
            128..=255 => Some(2),
            64..=127 => Some(1),
            _ => None,
        }
    }

    /// The default tile: P = 4 pixels x B = 2 blocks, 8 accumulators, for
    /// every width (`lanes * 2` divides 64 for V <= 32). Measured on Zen 5
    /// with V = 8 (`bnnc bench-kernels --cpus znver4 --tile
    /// 4x2,6x4,2x8,3x4`, interleaved): the fastest of the four on the 3x3
    /// convolutions and dense batch 1, 6% behind 3x4 on the 1x1; 2x8 loses
    /// 16% on the 256-channel 3x3.
    pub fn default_tile(_lanes: usize) -> Tile {
        Tile {
            pixels: 4,
            blocks: 2,
        }
    }

    /// The micro-kernel for `target` under `opts`: V from
    /// [`MicroKernel::lanes`], the tile `opts.tile` when it
    /// [fits](Tile::fits) V, else [`MicroKernel::default_tile`].
    pub fn choose(target: &Target, opts: &LowerOptions) -> Option<MicroKernel> {
        let lanes = MicroKernel::lanes(target, opts.max_vector_bits)?;
        let tile = opts
            .tile
            .filter(|t| t.fits(lanes))
            .unwrap_or_else(|| MicroKernel::default_tile(lanes));
        debug_assert!(tile.fits(lanes));
        Some(MicroKernel {
            lanes,
            pixels: tile.pixels,
            blocks: tile.blocks,
        })
    }

    /// The tile of this instance.
    pub fn tile(&self) -> Tile {
        Tile {
            pixels: self.pixels,
            blocks: self.blocks,
        }
    }
}

/// The weights of a bit-plane dot: per output channel and tap, `planes`
/// rows of `words` words over the `c` input channels of a tap (bit `c % 64`
/// of word `c / 64`, tail bits 0), each plane `j` with a shift `k_j`:
///
/// - `sign`: `[o][tap][plane][word]`, a bit set where the plane's weight
///   is -1;
/// - `mask`: the same layout, a bit set where the weight is nonzero
///   (ternary weights), or `None` when every weight is ±1;
///
/// so an in-bounds tap adds `sum_j 2^k_j (nnz_j - 2 popcount((x xor s_j)
/// and m_j))` to the accumulator, `nnz_j` the plane's nonzero weights
/// (`terms[ch][tap] = sum_j 2^k_j nnz_j`), and a padded tap adds `pad *
/// sums[ch][tap]`, the sum of the tap's real weights.
///
/// One plane with no mask is a `b1` weight; one plane with a mask a
/// ternary weight; `b` planes of `C0` bits a RepConv conv over
/// `replicate(x, times=b)` read as x (plane r is replica r's slice of the
/// weights), or fewer signed-digit planes with shifts (the replicas'
/// combined weights `sum_j 2^k_j s_j`).
#[derive(Clone, Debug, PartialEq)]
pub struct PlaneWeights {
    pub planes: usize,
    pub shifts: Vec<u32>,
    pub sign: Vec<u64>,
    pub mask: Option<Vec<u64>>,
    pub terms: Vec<i64>,
    pub sums: Vec<i64>,
}

impl PlaneWeights {
    /// `b1` weights: `o * taps` rows of `words` words (a `b1` tensor's
    /// packed rows of `c` channels).
    pub fn b1(rows: Vec<u64>, c: usize, words: usize) -> PlaneWeights {
        let sums = if words == 0 {
            Vec::new()
        } else {
            rows.chunks_exact(words)
                .map(|r| c as i64 - 2 * r.iter().map(|x| i64::from(x.count_ones())).sum::<i64>())
                .collect()
        };
        PlaneWeights {
            planes: 1,
            shifts: vec![0],
            terms: vec![c as i64; sums.len()],
            sums,
            sign: rows,
            mask: None,
        }
    }

    /// Whether the layout is consistent with `problem`: `o * taps` rows of
    /// `planes` planes of `words` words, one shift per plane (each < 32),
    /// `terms` and `sums` per (channel, tap), no bit past `c` set.
    fn fits(&self, problem: &B1Dot) -> bool {
        let rows = problem.o * problem.taps();
        let words = problem.words();
        let n = rows * self.planes * words;
        let tail = if problem.c.is_multiple_of(64) {
            0
        } else {
            !0u64 << (problem.c % 64)
        };
        let clean =
            |v: &[u64]| words == 0 || v.chunks_exact(words).all(|r| r[words - 1] & tail == 0);
        self.planes > 0
            && self.shifts.len() == self.planes
            && self.shifts.iter().all(|&k| k < 32)
            && self.sign.len() == n
            && self.mask.as_ref().is_none_or(|m| m.len() == n)
            && self.terms.len() == rows
            && self.sums.len() == rows
            && clean(&self.sign)
            && self.mask.as_deref().is_none_or(clean)
    }

    /// `sum_tap terms[ch][tap]`: the accumulator of channel `ch` when every
    /// tap is in bounds and every bit agrees.
    fn total(&self, ch: usize, taps: usize) -> i64 {
        self.terms[ch * taps..][..taps].iter().sum()
    }
}

/// Emits `problem` with weights `w` as one kernel reading buffer `x` and
/// writing buffer `out`, with the micro-kernel the target gets. Returns
/// false, emitting nothing, when there is none or the problem does not fit
/// it; the caller then emits its scalar loops.
pub(crate) fn try_b1_dot(
    cx: &mut Cx,
    problem: &B1Dot,
    w: &PlaneWeights,
    x: usize,
    out: usize,
) -> bool {
    let Some(mk) = MicroKernel::choose(cx.target, &cx.opts) else {
        return false;
    };
    if !problem.fits() || !problem.fits_kernel(&mk) || !w.fits(problem) {
        return false;
    }
    // Every accumulator within [-2^30, 2^30]: |y| <= max_ch sum_tap sum_j
    // 2^k_j nnz_j, and |pad * sums| <= terms.
    let taps = problem.taps();
    if (0..problem.o).any(|ch| w.total(ch, taps) > 1 << 30) {
        return false;
    }
    b1_dot::emit(cx, problem, mk, w, x, out);
    true
}

/// Emits float `conv2d` or `dense` node `v` into buffer `out` with the
/// target's f32 micro-kernel ([`f32_conv`]) and returns true; false, emitting
/// nothing, when none applies (the caller emits its scalar loops).
pub(crate) fn try_f32_conv(
    cx: &mut Cx,
    v: bnnc_ir::ValueId,
    out: usize,
) -> Result<bool, super::LowerError> {
    f32_conv::try_emit(cx, v, out)
}
