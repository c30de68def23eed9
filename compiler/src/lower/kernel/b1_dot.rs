//! The micro-kernel family "bit-plane dot, vectorized across output
//! channels".
//!
//! # Contract
//!
//! [`emit`] writes one kir function `(batch, x, out)` computing a [`B1Dot`]
//! exactly as the scalar loops (and the interpreter) do: the same `i32`
//! accumulators, or the same packed bits, for every output pixel and channel,
//! tail bits of bit outputs 0. It reads the packed input and writes only the
//! output buffer.
//!
//! # Tiling
//!
//! With the [`MicroKernel`] `(V lanes, P pixels, B blocks)` (for V = 1 read
//! "vector" as `i64` scalar: no splat, the lane is the value):
//!
//! - **Channels.** The `o` output channels form `ceil(o / V)` blocks of V
//!   ([`OcBlocked`] weights: one vector load is one word of V channels).
//!   A *group* is B consecutive blocks, `V * B` channels starting at channel
//!   `o0 = ob0 * V` (`ob0` a multiple of B): `floor(o / V) / B` full groups
//!   in a run-time loop, then one *rest* group with the remaining complete
//!   blocks and the partial block, if any (at most B blocks; its last block
//!   has `o % V` real lanes).
//! - **Samples.** Convolution: the samples form `floor(N / P')` tiles of P'
//!   (P' the largest power of two <= P). Each output pixel of such a tile
//!   of samples is one tile of P' pixels, `h*w*words` words apart in the
//!   input and `oh*ow` pixels apart in the output; at a border pixel the
//!   same taps are out of bounds in every sample, so the checked tile
//!   shares one correction. The weight vectors loaded per K step then feed
//!   P' samples at border pixels too, so a batch costs less per sample than
//!   one sample. The remaining `N mod P'` samples are tiled as below.
//! - **Pixels.** Convolution: the output pixels whose every tap lies inside
//!   the input form the rectangle `[oy_lo, oy_hi) x [ox_lo, ox_hi)`
//!   ([`B1Dot::interior`]); each of its rows is cut into
//!   `floor((ox_hi - ox_lo) / P)` tiles of P neighbouring pixels and one tail
//!   tile of `(ox_hi - ox_lo) mod P` pixels. Pixels of tile t sit at
//!   `ox0 + p` with `ox0 = ox_lo + t*P`, so at tap `(i, j)` pixel p reads
//!   input column `(ox0 + p)*sw + j*dw - left`: `p * sw * words` words after
//!   pixel 0. These tiles carry no bounds check. Every other output pixel
//!   (the border) is a tile of one pixel that checks each tap and adds the
//!   padded tap's correction. Dense: tiles of P' consecutive samples (P' the
//!   largest power of two <= P), then tiles of one sample for `batch mod P'`.
//! - **K loop.** For each tap `(i, j)`, plane j and word `w` of the tap
//!   (`taps * planes * words` steps): load the B sign vectors of the group
//!   (and B nonzero vectors for ternary weights), and for each pixel p
//!   splat its input word (the same word for every plane) and add
//!   `popcount((splat xor s) and m) << k_j` to accumulator `(p, b)`: `P * B`
//!   vector xor/popcount/add (and `and`, and a shift for `k_j > 0`) per `B`
//!   (or `2B`) vector and `P` scalar loads.
//! - **Accumulator.** Lane l of accumulator `(p, b)` counts the disagreeing
//!   nonzero bits of channel `ch = (ob0 + b) * V + l`, weighted by `2^k_j`,
//!   over the in-bounds taps. A tap in bounds adds `terms - 2*pc_tap` to the
//!   output (`terms = sum_j 2^k_j nnz_j`, [`PlaneWeights`]; `c` for `b1`
//!   weights), a padded one `pad * sums` (the sum of its weights), so the
//!   output is `y = total - 2*pc + corr` with `total = sum_tap terms` and
//!   `corr` the sum over out-of-bounds taps of `pad * sums - terms`. Interior
//!   tiles have `corr = 0`. `|y| <= total <= 2^30`, so the i64 lanes hold it
//!   exactly and truncating to i32 is the scalar result. `total` and the
//!   corrections are constants when they are the same in every lane (`b1`
//!   weights: `total = K = taps*c`), else per-lane tables.
//!
//! # Epilogues
//!
//! - `Acc`: `y` truncated to i32, stored at `pix * o + ch`: one vector store
//!   of V i32 per complete block when V >= 4 (128-bit stores or wider: LLVM
//!   targets), else lane by lane (`extract`), and lane by lane for the
//!   partial block.
//! - `Affine`: `f32(i32(y))`, then `- mean`, `/ den`, `* gamma`, `+ beta`,
//!   each rounded in f32 as the `batchnorm` op says; one vector of V f32
//!   per complete block when V >= 4, lane by lane otherwise. Lanes are
//!   independent outputs, so vector code computes the scalar values.
//! - `Table`: lane by lane, channel `ch`'s bit is bit `clamp(y - lo, 0, r -
//!   1)` of its table row, the group's bits stored as for `Bits`.
//! - `Bits`: the channel's bit is set where the value does not pass.
//!   Border pixels test `a < t'` with `a = y`, `t' = t` (direction +1) or
//!   `a = -y`, `t' = -t` (direction -1; `-y = (y xor m) - m` with `m` all
//!   ones in those lanes); pad lanes get `t' = i64::MIN`, which every value
//!   passes. Interior tiles, where `y = K - 2*pc` exactly (K the channel's
//!   `total`), test the popcount accumulator itself with one compare,
//!   `(pc xor m) > T`: with
//!   `d = K - t`, `y < t <=> pc > floor(d/2)` (`T = floor(d/2)`, `m = 0`),
//!   and `y > t <=> pc < ceil(d/2) <=> -pc - 1 > -ceil(d/2) - 1` (`T =
//!   -ceil(d/2) - 1`, `m = -1`, `pc xor -1 = -pc - 1`); pad lanes get `T =
//!   i64::MAX`. Either compare's lane mask becomes V bits by `sign_bits`
//!   (`kmov` from a mask register, `movmsk`), shifted to bit `b*V` for block
//!   b and or-ed (V = 1: the compare's 0/1 at bit b); `V*B` divides 64, so
//!   the group's bits land in word `o0 / 64` of the pixel at bit `o0 mod 64`.
//!   Each tile zeroes its pixels' words first.
//! - **Groups.** A convolution with `groups > 1` whose groups' input
//!   channels are whole words: group `gi` reads words `gi * words ..` of
//!   each input pixel (`groups * words` words), and its output channels are
//!   whole blocks (whole tiles for bits out), so each channel group lies in
//!   one convolution group and the rest are unchanged.

use bnnc_kir::build::*;
use bnnc_kir::{CastOp, CmpOp, DataId, Expr, Scalar, Ty, UnOp, VarId};

use super::layout::OcBlocked;
use super::{B1Dot, DotEpilogue, MicroKernel, PlaneWeights, Samples};
use crate::lower::emit::{
    and, c64, fadd, fdiv, flag64, fmul, fsub, i2f, in_range, or, shl, shru, tap_pos, to_i32, xor,
    Fb,
};
use crate::lower::{Cx, Storage};

fn i64_bytes(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The value of every element, when they are all equal (and there is one).
fn uniform(v: &[i64]) -> Option<i64> {
    let first = *v.first()?;
    v.iter().all(|&x| x == first).then_some(first)
}

/// The `Bits` epilogue's constants, in data.
#[derive(Clone, Copy)]
struct ThrData {
    /// `[blk][lane]`: `t'` (see the module docs), `i64::MIN` in pad lanes.
    t: DataId,
    /// `[blk][lane]`: `T` of the interior tiles' compare `(pc xor m) > T`
    /// on the popcount accumulator (see the module docs), `i64::MAX` in pad
    /// lanes.
    t_pc: DataId,
    /// `[blk][lane]`: -1 where the direction is -1, else 0; `None` when no
    /// channel has direction -1.
    down: Option<DataId>,
}

/// The `Table` epilogue's rows, in data: row `ch` (or row 0 when `shared`)
/// packed as a `b1` row of `r` entries, entry k for `y = lo + k`.
#[derive(Clone, Copy)]
struct TblData {
    bits: DataId,
    lo: i32,
    r: usize,
    shared: bool,
}

/// The `Affine` epilogue's constants, in data: `[blk][lane]` f32 (pad
/// lanes: mean 0, den 1, gamma 0, beta 0).
#[derive(Clone, Copy)]
struct AffData {
    mean: DataId,
    den: DataId,
    gamma: DataId,
    beta: DataId,
}

/// B consecutive (or fewer, for the rest) channel blocks from block `ob0`.
struct Group {
    ob0: Expr,
    blocks: usize,
    /// Real lanes of the group's last block.
    last: usize,
    /// Byte offset of the convolution group's channels in an input pixel.
    x_off: Expr,
}

/// Where a tile's pixels are.
enum At<'a> {
    /// Output row `oy` of sample `n`, pixels `ox0 ..`; or, `across`, pixel
    /// `(oy, ox0)` of samples `n ..`.
    Conv {
        n: &'a Expr,
        oy: &'a Expr,
        ox0: &'a Expr,
        across: bool,
    },
    /// Samples `n0 ..` of a dense layer.
    Dense { n0: &'a Expr },
}

struct Kern<'a> {
    p: &'a B1Dot,
    mk: MicroKernel,
    /// `i64 x V`.
    vt: Ty,
    words: usize,
    taps: usize,
    /// Weight planes per (channel, tap) and their shifts.
    shifts: &'a [u32],
    /// Sign planes, [`OcBlocked`] with `taps * planes` rows per channel.
    w: DataId,
    /// Nonzero planes (ternary weights), same layout.
    mask: Option<DataId>,
    /// `[blk][lane]`: `sum_tap terms`, the accumulator's value when every
    /// tap is in bounds and every bit agrees; `Err(K)` when it is K in every
    /// lane.
    total: Result<DataId, i64>,
    /// `[blk][tap][lane]`: `pad * sums - terms`, added for an out-of-bounds
    /// tap; `Err(q)` when it is q in every lane and tap.
    padc: Result<DataId, i64>,
    thr: Option<ThrData>,
    aff: Option<AffData>,
    tbl: Option<TblData>,
    x: Expr,
    out: Expr,
    /// `P * B` accumulators, `(p, b)` at `p * B + b`.
    acc: Vec<VarId>,
    /// B border corrections.
    corr: Vec<VarId>,
}

/// Emits the kernel (see the module docs) for `p` with weights `w`
/// (`[o][kh][kw][c]` packed by rows of `c` channels), reading buffer `x`,
/// writing buffer `out`.
pub(super) fn emit(
    cx: &mut Cx,
    p: &B1Dot,
    mk: MicroKernel,
    pw: &PlaneWeights,
    x: usize,
    out: usize,
) {
    let (v, taps, words) = (mk.lanes, p.taps(), p.words());
    let layout = OcBlocked {
        lanes: v,
        o: p.o,
        taps: taps * pw.planes,
        words,
    };
    let wd = cx.data_u64(&format!("b1dot_w_oc{v}"), &layout.pack_rows(&pw.sign));
    let mask = pw
        .mask
        .as_ref()
        .map(|m| cx.data_u64(&format!("b1dot_nonzero_oc{v}"), &layout.pack_rows(m)));
    let per = OcBlocked {
        lanes: v,
        o: p.o,
        taps: 1,
        words: 1,
    };
    let totals: Vec<i64> = (0..p.o).map(|ch| pw.total(ch, taps)).collect();
    let total = match uniform(&totals) {
        Some(k) => Err(k),
        None => Ok(cx.data(
            "b1dot_totals",
            64,
            i64_bytes(&per.lanes_i64(|ch, _| totals[ch], 0)),
        )),
    };
    let (ylo, yhi) = p.interior(0);
    let (xlo, xhi) = p.interior(1);
    let border = !(ylo == 0 && yhi == p.oh && xlo == 0 && xhi == p.ow);
    let pad = i64::from(p.pad.value());
    let corr_of = |ch: usize, tap: usize| {
        let r = ch * taps + tap;
        pad * pw.sums[r] - pw.terms[r]
    };
    let corrs: Vec<i64> = (0..p.o * taps)
        .map(|r| corr_of(r / taps, r % taps))
        .collect();
    let padc = match uniform(&corrs) {
        Some(q) => Err(q),
        None if border => {
            let per_tap = OcBlocked {
                lanes: v,
                o: p.o,
                taps,
                words: 1,
            };
            Ok(cx.data(
                "b1dot_pad_corr",
                64,
                i64_bytes(&per_tap.lanes_i64(corr_of, 0)),
            ))
        }
        None => Err(0),
    };
    let aff = match &p.epilogue {
        DotEpilogue::Affine(bn) => {
            let mut table = |name: &str, v: &[f32], pad: f32| {
                let lanes =
                    per.lanes_i64(|ch, _| i64::from(v[ch].to_bits()), i64::from(pad.to_bits()));
                let bytes: Vec<u8> = lanes
                    .iter()
                    .flat_map(|&b| (b as u32).to_le_bytes())
                    .collect();
                cx.data(name, 64, bytes)
            };
            Some(AffData {
                mean: table("b1dot_bn_mean", &bn.mean, 0.0),
                den: table("b1dot_bn_denom", &bn.den, 1.0),
                gamma: table("b1dot_bn_gamma", &bn.gamma, 0.0),
                beta: table("b1dot_bn_beta", &bn.beta, 0.0),
            })
        }
        _ => None,
    };
    let tbl = match &p.epilogue {
        DotEpilogue::Table(t) => Some(TblData {
            bits: cx.data_u64("b1dot_table_bits", &t.rows),
            lo: t.lo,
            r: t.r,
            shared: t.rows.len() == t.r.div_ceil(64),
        }),
        _ => None,
    };
    let thr = match &p.epilogue {
        DotEpilogue::Acc | DotEpilogue::Affine(_) | DotEpilogue::Table(_) => None,
        DotEpilogue::Bits(th) => {
            let t = per.lanes_i64(
                |ch, _| {
                    let t = i64::from(th.t[ch]);
                    if th.down[ch] {
                        -t
                    } else {
                        t
                    }
                },
                i64::MIN,
            );
            let t = cx.data("b1dot_thresholds", 64, i64_bytes(&t));
            let t_pc = per.lanes_i64(
                |ch, _| {
                    // K - t, halved: floor for direction +1, ceil for -1.
                    let d = totals[ch] - i64::from(th.t[ch]);
                    if th.down[ch] {
                        (-d).div_euclid(2) - 1
                    } else {
                        d.div_euclid(2)
                    }
                },
                i64::MAX,
            );
            let t_pc = cx.data("b1dot_pc_thresholds", 64, i64_bytes(&t_pc));
            let down = th.down.iter().any(|&d| d).then(|| {
                let m = per.lanes_i64(|ch, _| -i64::from(th.down[ch]), 0);
                cx.data("b1dot_down", 64, i64_bytes(&m))
            });
            Some(ThrData { t, t_pc, down })
        }
    };
    let dense = p.is_dense();
    let (mut fb, batch, ptrs) = cx.begin(if dense { "dense_b1" } else { "conv2d_b1" }, 2);
    let vt = Ty::vec(Scalar::I64, v as u16);
    let acc = (0..mk.pixels * mk.blocks)
        .map(|k| fb.var(&format!("acc{}_{}", k / mk.blocks, k % mk.blocks), vt))
        .collect();
    let corr = (0..mk.blocks)
        .map(|b| fb.var(&format!("corr{b}"), vt))
        .collect();
    let k = Kern {
        p,
        mk,
        vt,
        words,
        taps,
        shifts: &pw.shifts,
        w: wd,
        mask,
        total,
        padc,
        thr,
        aff,
        tbl,
        x: ptrs[0].clone(),
        out: ptrs[1].clone(),
        acc,
        corr,
    };
    let ns = match p.samples {
        Samples::Batch => batch,
        Samples::Fixed(n) => c64(n),
    };
    if dense {
        k.dense(&mut fb, ns);
    } else {
        k.conv(&mut fb, ns, (ylo, yhi), (xlo, xhi), border);
    }
    cx.end(fb, vec![x, out]);
}

impl Kern<'_> {
    /// `x` in every lane (`x` itself for V = 1).
    fn splat(&self, x: Expr) -> Expr {
        if self.mk.lanes == 1 {
            x
        } else {
            Expr::Splat(self.vt, Box::new(x))
        }
    }

    /// Lane `l` of `y` (`y` itself for V = 1).
    fn lane(&self, y: Expr, l: usize) -> Expr {
        if self.mk.lanes == 1 {
            y
        } else {
            Expr::Extract(Box::new(y), l as u16)
        }
    }

    /// The vector of block `ob` in a `[blk][lane]` table.
    fn block_vec(&self, d: DataId, ob: &Expr) -> Expr {
        load(
            self.vt,
            add(Expr::DataAddr(d), mul(ob.clone(), c64(self.mk.lanes * 8))),
        )
    }

    /// Convolution. Samples in tiles of P' (the largest power of two <= P;
    /// the tile count is a shift): each output pixel of P' samples is one
    /// tile, with checks at border pixels (the same taps are out of bounds
    /// in every sample, so the tile shares one correction). The remaining
    /// `samples mod P'` one by one: border pixels as tiles of one pixel with
    /// checks, then the interior rows in tiles of P.
    fn conv(&self, fb: &mut Fb, ns: Expr, ys: (usize, usize), xs: (usize, usize), border: bool) {
        let p = self.p;
        let ((ylo, yhi), (xlo, xhi)) = (ys, xs);
        let pn = self.mk.pixels;
        let inside = |oy: &Expr, ox: &Expr| {
            let row_in = in_range(sub(oy.clone(), c64(ylo)), yhi - ylo);
            let col_in = in_range(sub(ox.clone(), c64(xlo)), xhi - xlo);
            and(row_in, col_in)
        };
        let ps = 1usize << pn.ilog2();
        let enough = match p.samples {
            Samples::Batch => true,
            Samples::Fixed(n) => n >= ps,
        };
        let first = if ps > 1 && enough {
            let sh = i64c(ps.trailing_zeros() as i64);
            let stiles = fb.let_("stiles", Ty::I64, shru(ns.clone(), sh.clone()));
            fb.for_("t", i64c(0), stiles.clone(), |fb, t| {
                let n0 = fb.let_("n0", Ty::I64, shl(t, sh.clone()));
                fb.for_n("oy", p.oh, |fb, oy| {
                    fb.for_n("ox", p.ow, |fb, ox| {
                        let at = At::Conv {
                            n: &n0,
                            oy: &oy,
                            ox0: &ox,
                            across: true,
                        };
                        if border {
                            fb.if_else(
                                inside(&oy, &ox),
                                |fb| self.tile(fb, ps, &at, false),
                                |fb| self.tile(fb, ps, &at, true),
                            );
                        } else {
                            self.tile(fb, ps, &at, false);
                        }
                    })
                })
            });
            shl(stiles, sh)
        } else {
            i64c(0)
        };
        fb.for_("n", first, ns, |fb, n| {
            if border {
                fb.for_n("oy", p.oh, |fb, oy| {
                    fb.for_n("ox", p.ow, |fb, ox| {
                        let at = At::Conv {
                            n: &n,
                            oy: &oy,
                            ox0: &ox,
                            across: false,
                        };
                        let outside = cmp(CmpOp::Eq, inside(&oy, &ox), Expr::Int(0, Ty::I8));
                        fb.if_(outside, |fb| self.tile(fb, 1, &at, true));
                    })
                });
            }
            if yhi > ylo && xhi > xlo {
                let span = xhi - xlo;
                let (tiles, rem) = (span / pn, span % pn);
                fb.for_("oy", c64(ylo), c64(yhi), |fb, oy| {
                    fb.for_n("t", tiles, |fb, t| {
                        let ox0 = fb.let_("ox0", Ty::I64, add(c64(xlo), mul(t, c64(pn))));
                        let at = At::Conv {
                            n: &n,
                            oy: &oy,
                            ox0: &ox0,
                            across: false,
                        };
                        self.tile(fb, pn, &at, false);
                    });
                    if rem > 0 {
                        let ox0 = c64(xlo + tiles * pn);
                        let at = At::Conv {
                            n: &n,
                            oy: &oy,
                            ox0: &ox0,
                            across: false,
                        };
                        self.tile(fb, rem, &at, false);
                    }
                });
            }
        });
    }

    /// Dense: tiles of P' samples, then the remaining `batch mod P'` one by
    /// one, with P' the largest power of two <= P (the tile count is a shift).
    fn dense(&self, fb: &mut Fb, ns: Expr) {
        let pn = 1usize << self.mk.pixels.ilog2();
        let sh = i64c(pn.trailing_zeros() as i64);
        let tiles = fb.let_("tiles", Ty::I64, shru(ns.clone(), sh.clone()));
        fb.for_("t", i64c(0), tiles.clone(), |fb, t| {
            let n0 = fb.let_("n0", Ty::I64, shl(t, sh.clone()));
            self.tile(fb, pn, &At::Dense { n0: &n0 }, false);
        });
        fb.for_("n", shl(tiles, sh), ns, |fb, n| {
            self.tile(fb, 1, &At::Dense { n0: &n }, false);
        });
    }

    /// Bytes of one input pixel: `groups * words` words (a convolution
    /// group's channels are whole words, [`B1Dot::groups`]).
    fn xpix(&self) -> usize {
        self.p.groups * self.words * 8
    }

    /// The channel groups of each convolution group `gi` (its `o / groups`
    /// output channels are whole blocks, starting at block `gi * og / V`,
    /// and read the input words from `gi * words`): full groups in a loop,
    /// then the rest group.
    fn groups(&self, fb: &mut Fb, body: &dyn Fn(&mut Fb, &Group)) {
        let (v, bb) = (self.mk.lanes, self.mk.blocks);
        let og = self.p.o / self.p.groups;
        let (full, part) = (og / v, og % v);
        let ng = full / bb;
        let rest = full % bb + usize::from(part > 0);
        let each = |fb: &mut Fb, gi: Expr| {
            let base = mul(gi.clone(), c64(og / v));
            let x_off = mul(gi, c64(self.words * 8));
            fb.for_n("g", ng, |fb, g| {
                let group = Group {
                    ob0: add(base.clone(), mul(g, c64(bb))),
                    blocks: bb,
                    last: v,
                    x_off: x_off.clone(),
                };
                body(fb, &group)
            });
            if rest > 0 {
                let group = Group {
                    ob0: add(base, c64(ng * bb)),
                    blocks: rest,
                    last: if part > 0 { part } else { v },
                    x_off,
                };
                body(fb, &group);
            }
        };
        if self.p.groups == 1 {
            each(fb, i64c(0));
        } else {
            fb.for_n("gi", self.p.groups, each);
        }
    }

    /// One tile of `np` pixels over every channel (checked: one output
    /// pixel of `np` samples, or `np == 1`).
    fn tile(&self, fb: &mut Fb, np: usize, at: &At, checked: bool) {
        let p = self.p;
        // Output pixels of the tile: pix0 + px * pstride.
        let pstride = match at {
            At::Conv { across: true, .. } => p.oh * p.ow,
            _ => 1,
        };
        let pix0 = match at {
            At::Conv { n, oy, ox0, .. } => fb.let_(
                "pix",
                Ty::I64,
                add(
                    mul(add(mul((*n).clone(), c64(p.oh)), (*oy).clone()), c64(p.ow)),
                    (*ox0).clone(),
                ),
            ),
            At::Dense { n0 } => (*n0).clone(),
        };
        if let DotEpilogue::Bits(_) | DotEpilogue::Table(_) = p.epilogue {
            let ow = Storage::words(p.o);
            for px in 0..np {
                let row = mul(add(pix0.clone(), c64(px * pstride)), c64(ow));
                fb.for_n("w", ow, |fb, wi| {
                    fb.store(addr(self.out.clone(), add(row.clone(), wi), 8), i64c(0));
                });
            }
        }
        self.groups(fb, &|fb, g| {
            for px in 0..np {
                for b in 0..g.blocks {
                    fb.assign(self.acc[px * self.mk.blocks + b], self.splat(i64c(0)));
                }
            }
            if checked {
                for b in 0..g.blocks {
                    fb.assign(self.corr[b], self.splat(i64c(0)));
                }
            }
            // Byte distance between the tile's pixels in the input: a whole
            // sample, or `sw` input pixels along the row.
            let x_stride = match at {
                At::Conv { across: true, .. } => p.h * p.w * self.xpix(),
                _ => p.stride[1] * self.xpix(),
            };
            match at {
                At::Conv { n, oy, ox0, .. } if checked => {
                    self.conv_k_checked(fb, np, g, n, oy, ox0, x_stride)
                }
                At::Conv { n, oy, ox0, .. } => self.conv_k(fb, np, g, n, oy, ox0, x_stride),
                At::Dense { n0 } => {
                    let x_at = fb.let_(
                        "x_at",
                        Ty::PTR,
                        addr(self.x.clone(), (*n0).clone(), self.xpix() as i64),
                    );
                    let w_at = self.weights_at(fb, g, i64c(0));
                    let x_at = add(x_at, g.x_off.clone());
                    self.words_of_tap(fb, np, g, &w_at, &x_at, self.xpix());
                }
            }
            self.epilogue(fb, np, g, &pix0, pstride, checked);
        });
    }

    /// The K loop of an interior tile: every tap in bounds; the tile's
    /// pixels `x_stride` bytes apart in the input.
    #[allow(clippy::too_many_arguments)]
    fn conv_k(
        &self,
        fb: &mut Fb,
        np: usize,
        g: &Group,
        n: &Expr,
        oy: &Expr,
        ox0: &Expr,
        x_stride: usize,
    ) {
        let p = self.p;
        let row_bytes = (p.w * self.xpix()) as i64;
        fb.for_n("i", p.kh, |fb, i| {
            let iy = tap_pos(oy, &i, p.stride[0], p.dilation[0], p.pad_top_left[0]);
            // Byte address of input pixel (n, iy, 0).
            let x_row = fb.let_(
                "x_row",
                Ty::PTR,
                addr(self.x.clone(), add(mul(n.clone(), c64(p.h)), iy), row_bytes),
            );
            fb.for_n("j", p.kw, |fb, j| {
                let ix0 = tap_pos(ox0, &j, p.stride[1], p.dilation[1], p.pad_top_left[1]);
                let x_at = fb.let_(
                    "x_at",
                    Ty::PTR,
                    add(
                        addr(x_row.clone(), ix0, self.xpix() as i64),
                        g.x_off.clone(),
                    ),
                );
                let tap = add(mul(i.clone(), c64(p.kw)), j);
                let w_at = self.weights_at(fb, g, tap);
                self.words_of_tap(fb, np, g, &w_at, &x_at, x_stride);
            })
        });
    }

    /// The K loop of a border pixel (of `np` samples `x_stride` bytes
    /// apart): each tap checked, padded taps add their correction.
    #[allow(clippy::too_many_arguments)]
    fn conv_k_checked(
        &self,
        fb: &mut Fb,
        np: usize,
        g: &Group,
        n: &Expr,
        oy: &Expr,
        ox: &Expr,
        x_stride: usize,
    ) {
        let p = self.p;
        fb.for_n("i", p.kh, |fb, i| {
            let iy = fb.let_(
                "iy",
                Ty::I64,
                tap_pos(oy, &i, p.stride[0], p.dilation[0], p.pad_top_left[0]),
            );
            fb.for_n("j", p.kw, |fb, j| {
                let ix = fb.let_(
                    "ix",
                    Ty::I64,
                    tap_pos(ox, &j, p.stride[1], p.dilation[1], p.pad_top_left[1]),
                );
                let tap = fb.let_("tap", Ty::I64, add(mul(i.clone(), c64(p.kw)), j));
                let inside = and(in_range(iy.clone(), p.h), in_range(ix.clone(), p.w));
                fb.if_else(
                    inside,
                    |fb| {
                        let pix = add(mul(add(mul(n.clone(), c64(p.h)), iy.clone()), c64(p.w)), ix);
                        let x_at = fb.let_(
                            "x_at",
                            Ty::PTR,
                            add(
                                addr(self.x.clone(), pix, self.xpix() as i64),
                                g.x_off.clone(),
                            ),
                        );
                        let w_at = self.weights_at(fb, g, tap.clone());
                        self.words_of_tap(fb, np, g, &w_at, &x_at, x_stride);
                    },
                    |fb| {
                        for b in 0..g.blocks {
                            let c = match self.padc {
                                Ok(d) => load(
                                    self.vt,
                                    addr(
                                        Expr::DataAddr(d),
                                        add(
                                            mul(add(g.ob0.clone(), c64(b)), c64(self.taps)),
                                            tap.clone(),
                                        ),
                                        (self.mk.lanes * 8) as i64,
                                    ),
                                ),
                                Err(q) => self.splat(i64c(q)),
                            };
                            fb.assign(self.corr[b], add(var(self.corr[b]), c));
                        }
                    },
                );
            })
        });
    }

    /// Byte offset of word 0 of plane 0 of tap `tap` of block `ob0` (the
    /// group's first) in the weight planes.
    fn weights_at(&self, fb: &mut Fb, g: &Group, tap: Expr) -> Expr {
        let planes = self.shifts.len();
        fb.let_(
            "w_at",
            Ty::I64,
            mul(
                add(mul(g.ob0.clone(), c64(self.taps)), tap),
                c64(planes * self.words * self.mk.lanes * 8),
            ),
        )
    }

    /// The K steps of one tap: for each plane j and word, B weight vectors
    /// (block b at byte `w_at + b * taps*planes*words*V*8 + (j*words + w) *
    /// V*8` of the sign planes, and of the nonzero planes when the weights
    /// are ternary) against the input word of each pixel (pixel p at `x_at +
    /// p * x_stride + w * 8`, the same for every plane):
    /// `acc += popcount((x xor s) and m) << k_j`.
    fn words_of_tap(
        &self,
        fb: &mut Fb,
        np: usize,
        g: &Group,
        w_at: &Expr,
        x_at: &Expr,
        x_stride: usize,
    ) {
        let v = self.mk.lanes;
        let planes = self.shifts.len();
        let block_bytes = self.taps * planes * self.words * v * 8;
        for (j, &k) in self.shifts.iter().enumerate() {
            fb.for_n("w", self.words, |fb, wi| {
                let off = fb.let_(
                    "wo",
                    Ty::I64,
                    add(
                        w_at.clone(),
                        mul(add(c64(j * self.words), wi.clone()), c64(v * 8)),
                    ),
                );
                let xa = fb.let_("xa", Ty::PTR, addr(x_at.clone(), wi, 8));
                let plane = |fb: &mut Fb, d: DataId, name: &str| -> Vec<Expr> {
                    let wa = fb.let_("wa", Ty::PTR, add(Expr::DataAddr(d), off.clone()));
                    (0..g.blocks)
                        .map(|b| {
                            fb.let_(
                                name,
                                self.vt,
                                load(self.vt, add(wa.clone(), c64(b * block_bytes))),
                            )
                        })
                        .collect()
                };
                let wv = plane(fb, self.w, "wv");
                let mv = self.mask.map(|m| plane(fb, m, "mv"));
                for px in 0..np {
                    let xw = load(Ty::I64, add(xa.clone(), c64(px * x_stride)));
                    let xs = fb.let_("xs", self.vt, self.splat(xw));
                    for (b, wvb) in wv.iter().enumerate() {
                        let a = self.acc[px * self.mk.blocks + b];
                        let mut t = xor(xs.clone(), wvb.clone());
                        if let Some(mv) = &mv {
                            t = and(t, mv[b].clone());
                        }
                        let mut pc = un(UnOp::Popcnt, t);
                        if k > 0 {
                            pc = shl(pc, self.splat(c64(k as usize)));
                        }
                        fb.assign(a, add(var(a), pc));
                    }
                }
            });
        }
    }

    /// The `Table` epilogue's bits of the group at pixel `px` of the tile,
    /// lane by lane: channel `ch`'s bit is bit `k` of its table row, `k =
    /// clamp(y - lo, 0, r - 1)` (set: -1); pad lanes give 0.
    fn table_bits(&self, fb: &mut Fb, g: &Group, tb: TblData, px: usize, checked: bool) -> Expr {
        let v = self.mk.lanes;
        let wpr = tb.r.div_ceil(64);
        let mut bits = i64c(0);
        for b in 0..g.blocks {
            let a = var(self.acc[px * self.mk.blocks + b]);
            let ob = add(g.ob0.clone(), c64(b));
            let total = match self.total {
                Ok(d) => self.block_vec(d, &ob),
                Err(k) => self.splat(i64c(k)),
            };
            let mut y = sub(total, add(a.clone(), a));
            if checked {
                y = add(y, var(self.corr[b]));
            }
            let y = fb.let_("y", self.vt, y);
            let lanes = if b + 1 == g.blocks { g.last } else { v };
            for l in 0..lanes {
                let d = fb.let_(
                    "tbl_d",
                    Ty::I64,
                    sub(self.lane(y.clone(), l), i64c(i64::from(tb.lo))),
                );
                let hi = c64(tb.r - 1);
                let k = select(cmp(CmpOp::SLt, d.clone(), i64c(0)), i64c(0), d);
                let k = fb.let_("tbl_k", Ty::I64, k);
                let k = fb.let_(
                    "tbl_i",
                    Ty::I64,
                    select(cmp(CmpOp::SGt, k.clone(), hi.clone()), hi, k),
                );
                let row = if tb.shared {
                    i64c(0)
                } else {
                    mul(add(mul(ob.clone(), c64(v)), c64(l)), c64(wpr))
                };
                let word = load(
                    Ty::I64,
                    addr(
                        Expr::DataAddr(tb.bits),
                        add(row, shru(k.clone(), i64c(6))),
                        8,
                    ),
                );
                let bit = and(shru(word, and(k, i64c(63))), i64c(1));
                bits = or(bits, shl(bit, c64(b * v + l)));
            }
        }
        fb.let_("bits", Ty::I64, bits)
    }

    /// Stores the batch-norm of `y` (`i64 x V`, block `ob`) at f32 pointer
    /// `at` for the block's first `lanes` channels: `(f32(i32(y)) - mean) /
    /// den * gamma + beta`, each operation rounded as the op says (vector
    /// lanes are independent outputs, so vectors change no result). One
    /// vector of V f32 when the block is complete and V >= 4, else lane by
    /// lane.
    fn affine_store(&self, fb: &mut Fb, a: AffData, y: Expr, ob: &Expr, at: &Expr, lanes: usize) {
        let v = self.mk.lanes;
        if lanes == v && v >= 4 {
            let ft = Ty::vec(Scalar::F32, v as u16);
            let it = Ty::vec(Scalar::I32, v as u16);
            let vec_of = |d: DataId| load(ft, add(Expr::DataAddr(d), mul(ob.clone(), c64(v * 4))));
            let yf = cast(CastOp::SIToF, cast(CastOp::Trunc, y, it), ft);
            let r = fadd(
                fmul(
                    fdiv(fsub(yf, vec_of(a.mean)), vec_of(a.den)),
                    vec_of(a.gamma),
                ),
                vec_of(a.beta),
            );
            fb.store(at.clone(), r);
        } else {
            for l in 0..lanes {
                let ch = add(mul(ob.clone(), c64(v)), c64(l));
                let at_c = |d: DataId| load(Ty::F32, addr(Expr::DataAddr(d), ch.clone(), 4));
                let yf = i2f(to_i32(self.lane(y.clone(), l)));
                let r = fadd(
                    fmul(fdiv(fsub(yf, at_c(a.mean)), at_c(a.den)), at_c(a.gamma)),
                    at_c(a.beta),
                );
                fb.store(add(at.clone(), c64(4 * l)), r);
            }
        }
    }

    /// Stores the group's outputs of the tile's `np` pixels.
    fn epilogue(
        &self,
        fb: &mut Fb,
        np: usize,
        g: &Group,
        pix0: &Expr,
        pstride: usize,
        checked: bool,
    ) {
        let (p, v) = (self.p, self.mk.lanes);
        let total = |ob: &Expr| match self.total {
            Ok(d) => self.block_vec(d, ob),
            Err(k) => self.splat(i64c(k)),
        };
        for px in 0..np {
            let pix = add(pix0.clone(), c64(px * pstride));
            let accs = (0..g.blocks).map(|b| var(self.acc[px * self.mk.blocks + b]));
            if let Some(tb) = self.tbl {
                let bits = self.table_bits(fb, g, tb, px, checked);
                self.store_bits(fb, g, &pix, bits);
                continue;
            }
            let Some(thr) = self.thr else {
                for (b, a) in accs.enumerate() {
                    let ob = add(g.ob0.clone(), c64(b));
                    let mut y = sub(total(&ob), add(a.clone(), a));
                    if checked {
                        y = add(y, var(self.corr[b]));
                    }
                    let y = fb.let_("y", self.vt, y);
                    let ch0 = mul(add(g.ob0.clone(), c64(b)), c64(v));
                    let at = fb.let_(
                        "out_at",
                        Ty::PTR,
                        addr(self.out.clone(), add(mul(pix.clone(), c64(p.o)), ch0), 4),
                    );
                    let lanes = if b + 1 == g.blocks { g.last } else { v };
                    if let Some(aff) = self.aff {
                        self.affine_store(fb, aff, y, &ob, &at, lanes);
                    } else if lanes == v && v >= 4 {
                        let narrow = cast(CastOp::Trunc, y, Ty::vec(Scalar::I32, v as u16));
                        fb.store(at, narrow);
                    } else {
                        for l in 0..lanes {
                            let lane = self.lane(y.clone(), l);
                            fb.store(add(at.clone(), c64(4 * l)), to_i32(lane));
                        }
                    }
                }
                continue;
            };
            let mut bits: Option<Expr> = None;
            for (b, a) in accs.enumerate() {
                let ob = add(g.ob0.clone(), c64(b));
                let flip = |fb: &mut Fb, x: Expr| match thr.down {
                    Some(d) => {
                        let m = fb.let_("down", self.vt, self.block_vec(d, &ob));
                        xor(x, m)
                    }
                    None => x,
                };
                let fails = if checked {
                    // y = K - 2*pc + corr; a = y, or -y = (y xor m) - m
                    // where the direction is -1; fails where a < t'.
                    let y = add(sub(total(&ob), add(a.clone(), a)), var(self.corr[b]));
                    let a = match thr.down {
                        Some(d) => {
                            let m = fb.let_("down", self.vt, self.block_vec(d, &ob));
                            sub(xor(y, m.clone()), m)
                        }
                        None => y,
                    };
                    cmp(CmpOp::SLt, a, self.block_vec(thr.t, &ob))
                } else {
                    // y = K - 2*pc, so y < t <=> pc > floor((K - t) / 2), and
                    // y > t <=> pc < ceil((K - t) / 2) <=> (pc xor -1) >
                    // -ceil((K - t) / 2) - 1: one compare on the accumulator.
                    let a = flip(fb, a);
                    cmp(CmpOp::SGt, a, self.block_vec(thr.t_pc, &ob))
                };
                let part = if v > 1 {
                    shl(Expr::SignBits(Box::new(fails)), c64(b * v))
                } else {
                    // V = 1: the i8 0/1 of the compare.
                    shl(flag64(fails), c64(b))
                };
                bits = Some(match bits {
                    None => part,
                    Some(x) => or(x, part),
                });
            }
            let bits = fb.let_("bits", Ty::I64, bits.expect("a group has a block"));
            self.store_bits(fb, g, &pix, bits);
        }
    }

    /// Ors the group's `V * B` output bits `bits` into output pixel `pix`:
    /// `V * B` divides 64 and the group's first channel `o0` is a multiple
    /// of it, so they land in word `o0 / 64` at bit `o0 mod 64`.
    fn store_bits(&self, fb: &mut Fb, g: &Group, pix: &Expr, bits: Expr) {
        let (p, v) = (self.p, self.mk.lanes);
        {
            let o0 = mul(g.ob0.clone(), c64(v));
            let word = fb.let_(
                "out_at",
                Ty::PTR,
                addr(
                    self.out.clone(),
                    add(
                        mul(pix.clone(), c64(Storage::words(p.o))),
                        shru(o0.clone(), i64c(6)),
                    ),
                    8,
                ),
            );
            let old = load(Ty::I64, word.clone());
            fb.store(word, or(old, shl(bits, and(o0, i64c(63)))));
        }
    }
}
