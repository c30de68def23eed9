//! The micro-kernel family "f32 conv / dense, vectorized across output
//! channels".
//!
//! # Contract
//!
//! [`try_emit`] lowers a float convolution (`f32` input, `f32`, `b1` or
//! `ternary` weights, constant weights, the input not a read-through
//! replicate; one group, or depthwise: one input and one output channel per
//! group, at least 4 channels) or a float dense layer (`f32` input, constant
//! weights, not a read-through replicate) to one kir function `(batch, x,
//! out)` whose every output is bit for bit the scalar loops' (`conv_f32`,
//! `dense_f32` in `lower/kernels.rs`) and the interpreter's: per output
//! channel `o` and output pixel, `acc = +0.0`, then for each tap row `i`
//! whose input row lies inside the input, each tap column `j` whose input
//! column does, and each input channel `c` in order, `acc = acc + x * w` (an
//! IEEE single multiply, then an IEEE single add: kir has no fused
//! multiply-add and neither backend contracts). Out-of-bounds taps are
//! skipped, not added as zeros (`-0.0 + +0.0` is `+0.0`, so adding a zero
//! product is not the same as skipping it). `b1` and `ternary` weights are
//! their `f32` values, ±1 and 0, as the scalar loops read them. A dense
//! layer is the convolution of a 1x1 input with a 1x1 kernel: the same sum
//! over `k` in order.
//!
//! Vectorizing across output channels does not change any sum: lane `l` of
//! an accumulator holds exactly the scalar accumulator of one output, and
//! every lane sees the products in the scalar order.
//!
//! # Tiling
//!
//! With the [`F32Kernel`] `(V lanes, P pixels, B blocks)`:
//!
//! - **Weights** ([`pack`]): `[blk][i][j][c][lane]`, the `V` output channels
//!   of a block side by side for each (tap, input channel), so one vector
//!   load feeds `V` accumulators and the K loop reads memory in order. Lanes
//!   past `o` hold `+0.0`; their accumulators are never stored.
//! - **Channels.** `ceil(o / V)` blocks; a group is `B` consecutive blocks:
//!   `floor(o / V) / B` full groups in a loop, then one rest group with the
//!   remaining complete blocks and the partial block (stored lane by lane).
//! - **Pixels.** The output pixels whose every tap lies in the input form
//!   the rectangle `[oy_lo, oy_hi) x [ox_lo, ox_hi)` ([`F32Conv::interior`]);
//!   each of its rows is cut into `floor(span / P)` tiles of `P` neighbouring
//!   pixels and one tail tile of `span mod P`, with no bounds checks: pixel
//!   `p` of a tile reads `p * sw * C` floats after pixel 0. Every other pixel
//!   (the border) is a tile of one pixel that checks each tap row and column
//!   exactly as the scalar loops do and skips what lies outside. Dense:
//!   tiles of `P'` consecutive samples (`P'` the largest power of two `<=
//!   P`, so the tile count is a shift), then single samples.
//! - **K loop.** Per tap row `i`: when `dw == 1` the `kw * C` (tap column,
//!   channel) pairs are contiguous in the input row and in the packed
//!   weights, one loop over `k = j*C + c` (the scalar order); otherwise a
//!   loop over `j` and one over `c`. Per step: `B` weight vector loads, `P`
//!   scalar loads splat to `V` lanes, `P * B` vector multiplies and `P * B`
//!   vector adds.
//!
//! **Depthwise** (`groups = c = o`): the same tiles, but lane `l` of block
//! `b` is output *and* input channel `b*V + l`, so a K step (one tap; there
//! is one weight per channel and tap) loads the pixel's `V` input channels
//! as one vector instead of splatting one float. Weights
//! ([`pack_depthwise`]) are `[blk][tap][lane]`. A partial last block would
//! load past the pixel's channels, so when `o mod V != 0` the last block is
//! channels `o - V .. o`, overlapping the one before it (its lanes compute
//! those channels' sums again, identically, and store them again); V
//! narrows (16 -> 8 -> 4) to at most `o`, and fewer than 4 channels keep
//! the scalar loops. The sum per channel is the scalar one: `acc = +0.0`,
//! then `acc + x * w` over the in-bounds taps `(i, j)` in order.
//!
//! Register budget (accumulators + weight vectors + splat + product): AVX-512
//! (32 zmm) 6x4: 24 + 4 + 2 = 30; AVX2 (16 ymm) 6x2: 12 + 2 + 2 = 16; 128-bit
//! 3x4: 12 + 4 + 2 = 18 (32 registers on aarch64; on x86_64's 16 xmm
//! Cranelift still ran the stem faster with 3x4 than with 4x2 or 6x2).
//! Measured on a Zen 5 host with `BNNC_BENCH_TILE` in `cargo bench -p bnnc
//! --bench f32_conv --features llvm` (noisy, shared machine): V = 16 6x4,
//! 4x4 and 12x2 within noise (~180-220 GFLOP/s), 8x2, 4x3, 7x4 ~10% slower;
//! V = 8 (`BNNC_BENCH_CPU=x86_64:haswell`) 6x2 and 5x2 ~110 GFLOP/s, 4x2
//! 90-110, 3x4 and 4x3 55-63 (spills); V = 4 (Cranelift) 3x4 ~20, 4x2 and
//! 6x2 17-18 (with outliers).

use bnnc_ir::{ElemType, Op, ValueId};
use bnnc_kir::build::*;
use bnnc_kir::target::{Arch, Target};
use bnnc_kir::{DataId, Expr, Scalar, Ty, VarId};

use super::{Samples, Tile};
use crate::lower::emit::{and, c64, fadd, fmul, in_range, tap_pos, Fb};
use crate::lower::{Cx, LowerError, LowerOptions, Storage};

/// A float convolution (one group) or dense layer as the kernel sees it.
///
/// Buffers: the input is `f32` NHWC, pixel `(n, iy, ix)` at element
/// `((n*h + iy)*w + ix) * c`; the output pixel `pix = (n*oh + oy)*ow + ox`
/// holds `o` floats at `pix*o + ch`. Dense: `h = w = oh = ow = kh = kw =
/// 1`, `c = K`. The value is the scalar sum described in the module docs.
#[derive(Clone, Debug, PartialEq)]
pub struct F32Conv {
    pub samples: Samples,
    pub h: usize,
    pub w: usize,
    pub oh: usize,
    pub ow: usize,
    /// Output channels.
    pub o: usize,
    pub kh: usize,
    pub kw: usize,
    /// Input channels.
    pub c: usize,
    /// `[sh, sw]`.
    pub stride: [usize; 2],
    /// `[dh, dw]`.
    pub dilation: [usize; 2],
    /// Padding above and left; below and right follow from the output size.
    pub pad_top_left: [usize; 2],
    /// A dense layer (tiles over samples).
    pub dense: bool,
    /// A depthwise convolution: `groups = c = o`, output channel `ch` reads
    /// input channel `ch` only, weights `[o][kh][kw][1]`; the lanes of a
    /// block are `V` neighbouring channels of the input as well as of the
    /// output, loaded as one vector per pixel and tap.
    pub depthwise: bool,
}

impl F32Conv {
    fn taps(&self) -> usize {
        self.kh * self.kw
    }

    /// Weights per (output channel, tap): `c`, or 1 when depthwise.
    fn wc(&self) -> usize {
        if self.depthwise {
            1
        } else {
            self.c
        }
    }

    /// The output rows (`axis` 0) or columns (1) whose every tap lies inside
    /// the input, `lo..hi` (empty when `lo >= hi`): `o*s - pad >= 0` and
    /// `o*s + (k-1)*d - pad <= n - 1`.
    pub fn interior(&self, axis: usize) -> (usize, usize) {
        match axis {
            0 => super::interior(
                self.h,
                self.kh,
                self.oh,
                self.stride[0],
                self.dilation[0],
                self.pad_top_left[0],
            ),
            _ => super::interior(
                self.w,
                self.kw,
                self.ow,
                self.stride[1],
                self.dilation[1],
                self.pad_top_left[1],
            ),
        }
    }

    /// Non-empty shapes (the scalar loops handle the degenerate ones).
    fn fits(&self) -> bool {
        [
            self.h, self.w, self.oh, self.ow, self.o, self.kh, self.kw, self.c,
        ]
        .iter()
        .all(|&d| d > 0)
            && self.stride.iter().all(|&s| s > 0)
            && self.dilation.iter().all(|&d| d > 0)
    }
}

/// The register tile of the family: `pixels` (P) output pixels x `blocks`
/// (B) vectors of `lanes` (V) `f32` lanes, one output channel per lane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct F32Kernel {
    pub lanes: usize,
    pub pixels: usize,
    pub blocks: usize,
}

impl F32Kernel {
    /// V for `target` with vectors of at most `max_vector_bits`, or `None`
    /// (the scalar loops): 16 with `avx512f` and 512 bits, 8 with `avx` and
    /// 256 bits, 4 on x86_64 (SSE2) and aarch64 (NEON) with 128 bits (all
    /// Cranelift translates); riscv64: none.
    pub fn lanes(target: &Target, max_vector_bits: u32) -> Option<usize> {
        let native = match target.arch {
            Arch::X86_64 if target.has("avx512f") => 512,
            Arch::X86_64 if target.has("avx") => 256,
            Arch::X86_64 | Arch::Aarch64 => 128,
            Arch::Riscv64 => 0,
        };
        match native.min(max_vector_bits) {
            512.. => Some(16),
            256..=511 => Some(8),
            128..=255 => Some(4),
            _ => None,
        }
    }

    /// Whether the family takes `tile`: 1 to 16 pixels, 1 to 8 blocks, at
    /// most 32 accumulators.
    pub fn fits(tile: Tile) -> bool {
        (1..=16).contains(&tile.pixels)
            && (1..=8).contains(&tile.blocks)
            && tile.pixels * tile.blocks <= 32
    }

    /// The default tile for V lanes (see the module docs for the register
    /// budget).
    pub fn default_tile(lanes: usize) -> Tile {
        let (pixels, blocks) = match lanes {
            16 => (6, 4),
            8 => (6, 2),
            _ => (3, 4),
        };
        Tile { pixels, blocks }
    }

    /// The kernel for `target` under `opts`: `opts.tile` when it
    /// [fits](F32Kernel::fits), else the default.
    pub fn choose(target: &Target, opts: &LowerOptions) -> Option<F32Kernel> {
        let lanes = F32Kernel::lanes(target, opts.max_vector_bits)?;
        let tile = opts
            .tile
            .filter(|&t| F32Kernel::fits(t))
            .unwrap_or_else(|| F32Kernel::default_tile(lanes));
        Some(F32Kernel {
            lanes,
            pixels: tile.pixels,
            blocks: tile.blocks,
        })
    }
}

/// Packs `w` (`[o][kh][kw][c]` row-major, `taps = kh*kw`) as
/// `[blk][tap][c][lane]` with `lanes` channels per block, `+0.0` past `o`.
pub fn pack(w: &[f32], o: usize, taps: usize, c: usize, lanes: usize) -> Vec<f32> {
    assert_eq!(w.len(), o * taps * c);
    let mut out = vec![0.0f32; o.div_ceil(lanes) * taps * c * lanes];
    for ch in 0..o {
        for t in 0..taps {
            for ci in 0..c {
                out[((ch / lanes * taps + t) * c + ci) * lanes + ch % lanes] =
                    w[(ch * taps + t) * c + ci];
            }
        }
    }
    out
}

/// Packs depthwise weights `w` (`[o][taps]`, `lanes <= o`) as
/// `[blk][tap][lane]`: lane `l` of block `b` is channel `min(b * lanes, o -
/// lanes) + l`, so the last block holds the last `lanes` channels.
pub fn pack_depthwise(w: &[f32], o: usize, taps: usize, lanes: usize) -> Vec<f32> {
    assert!(w.len() == o * taps && lanes <= o);
    let blocks = o.div_ceil(lanes);
    let mut out = vec![0.0f32; blocks * taps * lanes];
    for b in 0..blocks {
        let ch0 = (b * lanes).min(o - lanes);
        for t in 0..taps {
            for l in 0..lanes {
                out[(b * taps + t) * lanes + l] = w[(ch0 + l) * taps + t];
            }
        }
    }
    out
}

/// Emits node `v` (a float `conv2d` or `dense`, see the module docs) with the
/// target's kernel, writing buffer `out`, and returns true; false, emitting
/// nothing, when the family does not cover it.
pub(crate) fn try_emit(cx: &mut Cx, v: ValueId, out: usize) -> Result<bool, LowerError> {
    let Some(mk) = F32Kernel::choose(cx.target, &cx.opts) else {
        return Ok(false);
    };
    let node = cx.model.graph.node(v).clone();
    let (xv, wv) = (node.inputs[0], node.inputs[1]);
    if cx.read_through.contains_key(&xv) || cx.model.ty(xv).elem != ElemType::F32 {
        return Ok(false);
    }
    let Some(w) = cx.constant(wv) else {
        return Ok(false);
    };
    if !matches!(w.elem, ElemType::F32 | ElemType::B1 | ElemType::Ternary) {
        return Ok(false);
    }
    let weights = w.to_f32_vec();
    let oty = cx.buf_ty(out).clone();
    let samples = if oty.is_batched() {
        Samples::Batch
    } else {
        match oty.dims(1).first() {
            Some(&n) => Samples::Fixed(n),
            None => return Ok(false),
        }
    };
    let wd = cx.model.ty(wv).dims(1);
    let problem = match &node.op {
        Op::Conv2d(attrs) if attrs.groups == 1 => {
            let xd = cx.model.ty(xv).dims(1);
            let od = cx.model.ty(v).dims(1);
            if xd.len() != 4 || od.len() != 4 || wd.len() != 4 || xd[3] != wd[3] {
                return Ok(false);
            }
            F32Conv {
                samples,
                h: xd[1],
                w: xd[2],
                oh: od[1],
                ow: od[2],
                o: wd[0],
                kh: wd[1],
                kw: wd[2],
                c: wd[3],
                stride: attrs.stride,
                dilation: attrs.dilation,
                pad_top_left: [attrs.padding[0], attrs.padding[1]],
                dense: false,
                depthwise: false,
            }
        }
        Op::Conv2d(attrs) => {
            // Depthwise: one input channel and one output channel per group.
            let xd = cx.model.ty(xv).dims(1);
            let od = cx.model.ty(v).dims(1);
            let g = attrs.groups;
            if xd.len() != 4 || od.len() != 4 || wd.len() != 4 {
                return Ok(false);
            }
            if !(wd[3] == 1 && wd[0] == g && xd[3] == g && od[3] == g) {
                return Ok(false);
            }
            F32Conv {
                samples,
                h: xd[1],
                w: xd[2],
                oh: od[1],
                ow: od[2],
                o: g,
                kh: wd[1],
                kw: wd[2],
                c: g,
                stride: attrs.stride,
                dilation: attrs.dilation,
                pad_top_left: [attrs.padding[0], attrs.padding[1]],
                dense: false,
                depthwise: true,
            }
        }
        Op::Dense => {
            let xd = cx.model.ty(xv).dims(1);
            if wd.len() != 2 || xd.len() != 2 || xd[1] != wd[1] {
                return Ok(false);
            }
            F32Conv {
                samples,
                h: 1,
                w: 1,
                oh: 1,
                ow: 1,
                o: wd[0],
                kh: 1,
                kw: 1,
                c: wd[1],
                stride: [1, 1],
                dilation: [1, 1],
                pad_top_left: [0, 0],
                dense: true,
                depthwise: false,
            }
        }
        _ => return Ok(false),
    };
    if !problem.fits() || weights.len() != problem.o * problem.taps() * problem.wc() {
        return Ok(false);
    }
    let mut mk = mk;
    if problem.depthwise {
        // Every block is V whole channels (the last one overlaps the one
        // before it): narrower vectors when there are fewer than V.
        while mk.lanes > problem.o && mk.lanes > 4 {
            mk.lanes /= 2;
        }
        if mk.lanes > problem.o {
            return Ok(false);
        }
    }
    let x = cx.operand(xv)?;
    if cx.buf_storage(x) != Storage::F32 {
        return Ok(false);
    }
    emit(cx, &problem, mk, &weights, x, out);
    Ok(true)
}

/// B consecutive (or fewer, for the rest) channel blocks from block `ob0`.
struct Group {
    ob0: Expr,
    blocks: usize,
    /// Real lanes of the group's last block.
    last: usize,
    /// Depthwise with `o mod V != 0`: the group's last block is channels
    /// `o - V .. o` (overlapping the block before it; its lanes compute the
    /// same values again, bit for bit, and store them again).
    shift_last: bool,
}

struct Kern<'a> {
    p: &'a F32Conv,
    mk: F32Kernel,
    /// `f32 x V`.
    vt: Ty,
    w: DataId,
    x: Expr,
    out: Expr,
    /// `P * B` accumulators, `(p, b)` at `p * B + b`.
    acc: Vec<VarId>,
}

fn emit(cx: &mut Cx, p: &F32Conv, mk: F32Kernel, w: &[f32], x: usize, out: usize) {
    let v = mk.lanes;
    let packed = if p.depthwise {
        pack_depthwise(w, p.o, p.taps(), v)
    } else {
        pack(w, p.o, p.taps(), p.c, v)
    };
    let wd = cx.data_f32(&format!("f32conv_w_oc{v}"), &packed);
    let name = if p.dense {
        "dense_f32_v"
    } else {
        "conv2d_f32_v"
    };
    let (mut fb, batch, ptrs) = cx.begin(name, 2);
    let vt = Ty::vec(Scalar::F32, v as u16);
    let acc = (0..mk.pixels * mk.blocks)
        .map(|k| fb.var(&format!("acc{}_{}", k / mk.blocks, k % mk.blocks), vt))
        .collect();
    let k = Kern {
        p,
        mk,
        vt,
        w: wd,
        x: ptrs[0].clone(),
        out: ptrs[1].clone(),
        acc,
    };
    let ns = match p.samples {
        Samples::Batch => batch,
        Samples::Fixed(n) => c64(n),
    };
    if p.dense {
        k.dense(&mut fb, ns);
    } else {
        k.conv(&mut fb, ns);
    }
    cx.end(fb, vec![x, out]);
}

impl Kern<'_> {
    /// Bytes of one block of packed weights: `taps * wc * V` floats.
    fn block_bytes(&self) -> usize {
        self.p.taps() * self.p.wc() * self.mk.lanes * 4
    }

    /// The first channel of block `b` of group `g`.
    fn ch0(&self, g: &Group, b: usize) -> Expr {
        if g.shift_last && b + 1 == g.blocks {
            c64(self.p.o - self.mk.lanes)
        } else {
            mul(add(g.ob0.clone(), c64(b)), c64(self.mk.lanes))
        }
    }

    /// Convolution: border pixels one by one with checks, then the interior
    /// rows in tiles of P.
    fn conv(&self, fb: &mut Fb, ns: Expr) {
        let p = self.p;
        let (ylo, yhi) = p.interior(0);
        let (xlo, xhi) = p.interior(1);
        let border = !(ylo == 0 && yhi == p.oh && xlo == 0 && xhi == p.ow);
        let pn = self.mk.pixels;
        fb.for_("n", i64c(0), ns, |fb, n| {
            if border {
                fb.for_n("oy", p.oh, |fb, oy| {
                    let row_in = in_range(sub(oy.clone(), c64(ylo)), yhi - ylo);
                    fb.for_n("ox", p.ow, |fb, ox| {
                        let col_in = in_range(sub(ox.clone(), c64(xlo)), xhi - xlo);
                        let inside = and(row_in.clone(), col_in);
                        fb.if_(
                            cmp(bnnc_kir::CmpOp::Eq, inside, Expr::Int(0, Ty::I8)),
                            |fb| {
                                let pix = fb.let_("pix", Ty::I64, self.pix(&n, &oy, &ox));
                                self.groups(fb, &|fb, g| {
                                    self.zero(fb, 1, g);
                                    self.k_checked(fb, g, &n, &oy, &ox);
                                    self.store(fb, 1, g, &pix);
                                });
                            },
                        );
                    })
                });
            }
            if yhi > ylo && xhi > xlo {
                let span = xhi - xlo;
                let (tiles, rem) = (span / pn, span % pn);
                fb.for_("oy", c64(ylo), c64(yhi), |fb, oy| {
                    fb.for_n("t", tiles, |fb, t| {
                        let ox0 = fb.let_("ox0", Ty::I64, add(c64(xlo), mul(t, c64(pn))));
                        self.conv_tile(fb, pn, &n, &oy, &ox0);
                    });
                    if rem > 0 {
                        self.conv_tile(fb, rem, &n, &oy, &c64(xlo + tiles * pn));
                    }
                });
            }
        });
    }

    /// `(n*oh + oy)*ow + ox`.
    fn pix(&self, n: &Expr, oy: &Expr, ox: &Expr) -> Expr {
        let p = self.p;
        add(
            mul(add(mul(n.clone(), c64(p.oh)), oy.clone()), c64(p.ow)),
            ox.clone(),
        )
    }

    /// An interior tile of `np` pixels from `(n, oy, ox0)`: every tap in
    /// bounds.
    fn conv_tile(&self, fb: &mut Fb, np: usize, n: &Expr, oy: &Expr, ox0: &Expr) {
        let p = self.p;
        let pix0 = fb.let_("pix", Ty::I64, self.pix(n, oy, ox0));
        // Input pixel (n, oy*sh - top, ox0*sw - left): tap (0, 0) of pixel 0.
        let iy0 = sub(mul(oy.clone(), c64(p.stride[0])), c64(p.pad_top_left[0]));
        let ix0 = sub(mul(ox0.clone(), c64(p.stride[1])), c64(p.pad_top_left[1]));
        let ipix = add(mul(add(mul(n.clone(), c64(p.h)), iy0), c64(p.w)), ix0);
        let x_tile = fb.let_(
            "x_tile",
            Ty::PTR,
            addr(self.x.clone(), ipix, (p.c * 4) as i64),
        );
        let pstride = p.stride[1] * p.c * 4;
        self.groups(fb, &|fb, g| {
            self.zero(fb, np, g);
            self.k_interior(fb, np, g, &x_tile, pstride);
            self.store(fb, np, g, &pix0);
        });
    }

    /// Dense: tiles of P' samples, then the remaining `batch mod P'` one by
    /// one, with P' the largest power of two <= P.
    fn dense(&self, fb: &mut Fb, ns: Expr) {
        let pn = 1usize << self.mk.pixels.ilog2();
        let sh = i64c(pn.trailing_zeros() as i64);
        let row = self.p.c * 4;
        let tiles = fb.let_(
            "tiles",
            Ty::I64,
            crate::lower::emit::shru(ns.clone(), sh.clone()),
        );
        let one = |fb: &mut Fb, n0: &Expr, np: usize| {
            let x_tile = fb.let_(
                "x_tile",
                Ty::PTR,
                addr(self.x.clone(), n0.clone(), row as i64),
            );
            self.groups(fb, &|fb, g| {
                self.zero(fb, np, g);
                self.k_interior(fb, np, g, &x_tile, row);
                self.store(fb, np, g, n0);
            });
        };
        fb.for_("t", i64c(0), tiles.clone(), |fb, t| {
            let n0 = fb.let_("n0", Ty::I64, crate::lower::emit::shl(t, sh.clone()));
            one(fb, &n0, pn);
        });
        fb.for_("n", crate::lower::emit::shl(tiles, sh), ns, |fb, n| {
            one(fb, &n, 1)
        });
    }

    /// The channel groups: full groups in a loop, then the rest group.
    fn groups(&self, fb: &mut Fb, body: &dyn Fn(&mut Fb, &Group)) {
        let (v, bb) = (self.mk.lanes, self.mk.blocks);
        let (full, part) = (self.p.o / v, self.p.o % v);
        let ng = full / bb;
        fb.for_n("g", ng, |fb, g| {
            let group = Group {
                ob0: mul(g, c64(bb)),
                blocks: bb,
                last: v,
                shift_last: false,
            };
            body(fb, &group)
        });
        let rest = full % bb + usize::from(part > 0);
        if rest > 0 {
            let dw = self.p.depthwise;
            let group = Group {
                ob0: c64(ng * bb),
                blocks: rest,
                last: if part > 0 && !dw { part } else { v },
                shift_last: part > 0 && dw,
            };
            body(fb, &group);
        }
    }

    /// Accumulators of the tile's `np` pixels to `+0.0`, the scalar start.
    fn zero(&self, fb: &mut Fb, np: usize, g: &Group) {
        for px in 0..np {
            for b in 0..g.blocks {
                let a = self.acc[px * self.mk.blocks + b];
                fb.assign(a, Expr::Splat(self.vt, Box::new(f32c(0.0))));
            }
        }
    }

    /// Byte address of the packed weights of the group's first block.
    fn w_group(&self, fb: &mut Fb, g: &Group) -> Expr {
        fb.let_(
            "w_grp",
            Ty::PTR,
            addr(
                Expr::DataAddr(self.w),
                g.ob0.clone(),
                self.block_bytes() as i64,
            ),
        )
    }

    /// The K loop of an interior tile: for each tap row i, the `kw * wc`
    /// (column, weight channel) pairs in the scalar order.
    fn k_interior(&self, fb: &mut Fb, np: usize, g: &Group, x_tile: &Expr, pstride: usize) {
        let p = self.p;
        let (v, wc) = (self.mk.lanes, p.wc());
        let w_grp = self.w_group(fb, g);
        fb.for_n("i", p.kh, |fb, i| {
            let x_i = fb.let_(
                "x_i",
                Ty::PTR,
                addr(
                    x_tile.clone(),
                    i.clone(),
                    (p.dilation[0] * p.w * p.c * 4) as i64,
                ),
            );
            let w_i = fb.let_(
                "w_i",
                Ty::PTR,
                addr(w_grp.clone(), i, (p.kw * wc * v * 4) as i64),
            );
            if !p.depthwise && (p.dilation[1] == 1 || p.kw == 1) {
                // (j, c) -> k = j*c + c: contiguous in the input row and in
                // the weights.
                fb.for_n("k", p.kw * p.c, |fb, k| {
                    let xa = addr(x_i.clone(), k.clone(), 4);
                    let wa = addr(w_i.clone(), k, (v * 4) as i64);
                    self.step(fb, np, g, xa, wa, pstride);
                });
            } else {
                fb.for_n("j", p.kw, |fb, j| {
                    let x_j = fb.let_(
                        "x_j",
                        Ty::PTR,
                        addr(x_i.clone(), j.clone(), (p.dilation[1] * p.c * 4) as i64),
                    );
                    let w_j = fb.let_("w_j", Ty::PTR, addr(w_i.clone(), j, (wc * v * 4) as i64));
                    fb.for_n("c", wc, |fb, c| {
                        let xa = addr(x_j.clone(), c.clone(), 4);
                        let wa = addr(w_j.clone(), c, (v * 4) as i64);
                        self.step(fb, np, g, xa, wa, pstride);
                    });
                });
            }
        });
    }

    /// The K loop of a border pixel: each tap row and column checked as the
    /// scalar loops check them; taps outside the input are skipped.
    fn k_checked(&self, fb: &mut Fb, g: &Group, n: &Expr, oy: &Expr, ox: &Expr) {
        let p = self.p;
        let v = self.mk.lanes;
        let w_grp = self.w_group(fb, g);
        fb.for_n("i", p.kh, |fb, i| {
            let iy = fb.let_(
                "iy",
                Ty::I64,
                tap_pos(oy, &i, p.stride[0], p.dilation[0], p.pad_top_left[0]),
            );
            fb.if_(in_range(iy.clone(), p.h), |fb| {
                fb.for_n("j", p.kw, |fb, j| {
                    let ix = fb.let_(
                        "ix",
                        Ty::I64,
                        tap_pos(ox, &j, p.stride[1], p.dilation[1], p.pad_top_left[1]),
                    );
                    fb.if_(in_range(ix.clone(), p.w), |fb| {
                        let ipix =
                            add(mul(add(mul(n.clone(), c64(p.h)), iy.clone()), c64(p.w)), ix);
                        let x_at = fb.let_(
                            "x_at",
                            Ty::PTR,
                            addr(self.x.clone(), ipix, (p.c * 4) as i64),
                        );
                        let tap = add(mul(i.clone(), c64(p.kw)), j);
                        let w_at = fb.let_(
                            "w_at",
                            Ty::PTR,
                            addr(w_grp.clone(), tap, (p.wc() * v * 4) as i64),
                        );
                        fb.for_n("c", p.wc(), |fb, c| {
                            let xa = addr(x_at.clone(), c.clone(), 4);
                            let wa = addr(w_at.clone(), c, (v * 4) as i64);
                            self.step(fb, 1, g, xa, wa, 0);
                        });
                    });
                });
            });
        });
    }

    /// One K step: the group's B weight vectors (block b at `wa + b *
    /// block_bytes`) against the input float of each pixel (pixel p at `xa +
    /// p * pstride`): `acc(p, b) = acc(p, b) + splat(x_p) * w_b`.
    fn step(&self, fb: &mut Fb, np: usize, g: &Group, xa: Expr, wa: Expr, pstride: usize) {
        let xa = fb.let_("xa", Ty::PTR, xa);
        let wa = fb.let_("wa", Ty::PTR, wa);
        let wv: Vec<Expr> = (0..g.blocks)
            .map(|b| {
                fb.let_(
                    "wv",
                    self.vt,
                    load(self.vt, add(wa.clone(), c64(b * self.block_bytes()))),
                )
            })
            .collect();
        for px in 0..np {
            let x_px = add(xa.clone(), c64(px * pstride));
            if self.p.depthwise {
                // The block's V channels of the pixel: one vector load.
                for (b, wvb) in wv.iter().enumerate() {
                    let xv = load(self.vt, addr(x_px.clone(), self.ch0(g, b), 4));
                    let a = self.acc[px * self.mk.blocks + b];
                    fb.assign(a, fadd(var(a), fmul(xv, wvb.clone())));
                }
                continue;
            }
            let xs = load(Ty::F32, x_px);
            let xs = fb.let_("xs", self.vt, Expr::Splat(self.vt, Box::new(xs)));
            for (b, wvb) in wv.iter().enumerate() {
                let a = self.acc[px * self.mk.blocks + b];
                fb.assign(a, fadd(var(a), fmul(xs.clone(), wvb.clone())));
            }
        }
    }

    /// Stores the group's outputs of the tile's `np` pixels (pixel `pix0 +
    /// p`): one vector store per complete block, lane by lane for the
    /// partial one.
    fn store(&self, fb: &mut Fb, np: usize, g: &Group, pix0: &Expr) {
        let (p, v) = (self.p, self.mk.lanes);
        for px in 0..np {
            for b in 0..g.blocks {
                let y = var(self.acc[px * self.mk.blocks + b]);
                let ch0 = self.ch0(g, b);
                let at = fb.let_(
                    "out_at",
                    Ty::PTR,
                    addr(
                        self.out.clone(),
                        add(mul(add(pix0.clone(), c64(px)), c64(p.o)), ch0),
                        4,
                    ),
                );
                let lanes = if b + 1 == g.blocks { g.last } else { v };
                if lanes == v {
                    fb.store(at, y);
                } else {
                    for l in 0..lanes {
                        let lane = Expr::Extract(Box::new(y.clone()), l as u16);
                        fb.store(add(at.clone(), c64(4 * l)), lane);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_puts_lanes_side_by_side_per_tap_and_channel() {
        // 5 channels, V = 4, 2 taps, 3 input channels.
        let w: Vec<f32> = (0..5 * 2 * 3).map(|k| k as f32 + 1.0).collect();
        let p = pack(&w, 5, 2, 3, 4);
        assert_eq!(p.len(), 2 * 2 * 3 * 4);
        // Block 0, tap 0, channel 0: channels 0..4.
        assert_eq!(&p[..4], &[1.0, 7.0, 13.0, 19.0]);
        // Block 0, tap 1, channel 2: w[ch][1][2] = ch*6 + 5 + 1.
        assert_eq!(&p[20..24], &[6.0, 12.0, 18.0, 24.0]);
        // Block 1: channel 4 then pad lanes of +0.0.
        assert_eq!(&p[24..28], &[25.0, 0.0, 0.0, 0.0]);
        assert!(p[25].to_bits() == 0);
    }

    #[test]
    fn lanes_follow_target_and_limit() {
        let l = |t: &str, b| F32Kernel::lanes(&Target::parse(t).unwrap(), b);
        assert_eq!(l("x86_64:znver4", 512), Some(16));
        assert_eq!(l("x86_64:haswell", 512), Some(8));
        assert_eq!(l("x86_64:znver4", 128), Some(4));
        assert_eq!(l("x86_64", 512), Some(4));
        assert_eq!(l("aarch64", 128), Some(4));
        assert_eq!(l("riscv64", 512), None);
        assert_eq!(l("x86_64:znver4", 0), None);
    }
}
