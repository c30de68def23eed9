//! The micro-kernel family "b1 dot, vectorized across output channels".
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
//! - **K loop.** For each tap `(i, j)` and word `w` of the tap (K = `taps *
//!   words` steps): load the B weight vectors of the group, and for each
//!   pixel p splat its input word and add `popcount(splat xor w_b)` to
//!   accumulator `(p, b)`: `P * B` vector xor/popcount/add per `B` vector
//!   and `P` scalar loads.
//! - **Accumulator.** Lane l of accumulator `(p, b)` counts the disagreeing
//!   bits of channel `(ob0 + b) * V + l` over the in-bounds taps, so the
//!   output is `y = taps*c - 2*pc + corr` with `corr` the sum over
//!   out-of-bounds taps of `pad * sum_c w - c` (an in-bounds tap adds
//!   `c - 2*pc_tap`, a padded one `pad * sum_c w`; `K = taps*c` counts `c` for
//!   every tap). Interior tiles have `corr = 0`. `|y| <= K <= 2^30`, so the
//!   i64 lanes hold it exactly and truncating to i32 is the scalar result.
//!
//! # Epilogues
//!
//! - `Acc`: `y` truncated to i32, stored at `pix * o + ch`: one vector store
//!   of V i32 per complete block when V >= 4 (128-bit stores or wider: LLVM
//!   targets), else lane by lane (`extract`), and lane by lane for the
//!   partial block.
//! - `Bits`: the channel's bit is set where the value does not pass.
//!   Border pixels test `a < t'` with `a = y`, `t' = t` (direction +1) or
//!   `a = -y`, `t' = -t` (direction -1; `-y = (y xor m) - m` with `m` all
//!   ones in those lanes); pad lanes get `t' = i64::MIN`, which every value
//!   passes. Interior tiles, where `y = K - 2*pc` exactly, test the
//!   popcount accumulator itself with one compare, `(pc xor m) > T`: with
//!   `d = K - t`, `y < t <=> pc > floor(d/2)` (`T = floor(d/2)`, `m = 0`),
//!   and `y > t <=> pc < ceil(d/2) <=> -pc - 1 > -ceil(d/2) - 1` (`T =
//!   -ceil(d/2) - 1`, `m = -1`, `pc xor -1 = -pc - 1`); pad lanes get `T =
//!   i64::MAX`. Either compare's lane mask becomes V bits by `sign_bits`
//!   (`kmov` from a mask register, `movmsk`), shifted to bit `b*V` for block
//!   b and or-ed (V = 1: the compare's 0/1 at bit b); `V*B` divides 64, so
//!   the group's bits land in word `o0 / 64` of the pixel at bit `o0 mod 64`.
//!   Each tile zeroes its pixels' words first.

use bnnc_ir::PadValue;
use bnnc_kir::build::*;
use bnnc_kir::{CastOp, CmpOp, DataId, Expr, Scalar, Ty, UnOp, VarId};

use super::layout::OcBlocked;
use super::{B1Dot, DotEpilogue, MicroKernel, Samples};
use crate::lower::emit::{and, flag64, in_range, or, shl, shru, to_i32, xor, Fb};
use crate::lower::{Cx, Storage};

fn c64(x: usize) -> Expr {
    i64c(x as i64)
}

fn i64_bytes(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// `out * stride + k * dil - pad`: the input row (or column) of tap `k`.
fn tap_pos(out: &Expr, k: &Expr, stride: usize, dil: usize, pad: usize) -> Expr {
    sub(
        add(mul(out.clone(), c64(stride)), mul(k.clone(), c64(dil))),
        c64(pad),
    )
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

/// B consecutive (or fewer, for the rest) channel blocks from block `ob0`.
struct Group {
    ob0: Expr,
    blocks: usize,
    /// Real lanes of the group's last block.
    last: usize,
}

/// Where a tile's pixels are.
enum At<'a> {
    /// Output row `oy` of sample `n`, pixels `ox0 ..`.
    Conv {
        n: &'a Expr,
        oy: &'a Expr,
        ox0: &'a Expr,
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
    w: DataId,
    /// `[blk][tap][lane]`: `pad * sum_c w - c`, added for an out-of-bounds
    /// tap; `None` for `pad_value=0`, where it is `-c` in every lane.
    padc: Option<DataId>,
    thr: Option<ThrData>,
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
pub(super) fn emit(cx: &mut Cx, p: &B1Dot, mk: MicroKernel, w: &[u64], x: usize, out: usize) {
    let (v, taps, words) = (mk.lanes, p.taps(), p.words());
    let layout = OcBlocked {
        lanes: v,
        o: p.o,
        taps,
        words,
    };
    let wd = cx.data_u64(&format!("b1dot_w_oc{v}"), &layout.pack_rows(w));
    let (ylo, yhi) = p.interior(0);
    let (xlo, xhi) = p.interior(1);
    let border = !(ylo == 0 && yhi == p.oh && xlo == 0 && xhi == p.ow);
    let padc = (border && p.pad != PadValue::Zero).then(|| {
        let pad = i64::from(p.pad.value());
        let corr = layout.lanes_i64(
            |ch, tap| {
                // Each set bit is a -1: the row sums to c - 2 * popcount.
                let row = &w[(ch * taps + tap) * words..][..words];
                let minus: i64 = row.iter().map(|x| i64::from(x.count_ones())).sum();
                pad * (p.c as i64 - 2 * minus) - p.c as i64
            },
            0,
        );
        cx.data("b1dot_pad_corr", 64, i64_bytes(&corr))
    });
    let thr = match &p.epilogue {
        DotEpilogue::Acc => None,
        DotEpilogue::Bits(th) => {
            let per = OcBlocked {
                lanes: v,
                o: p.o,
                taps: 1,
                words: 1,
            };
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
            let kk = p.k() as i64;
            let t_pc = per.lanes_i64(
                |ch, _| {
                    // K - t, halved: floor for direction +1, ceil for -1.
                    let d = kk - i64::from(th.t[ch]);
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
        w: wd,
        padc,
        thr,
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

    /// Convolution: border pixels one by one with checks, then the interior
    /// rows in tiles of P.
    fn conv(&self, fb: &mut Fb, ns: Expr, ys: (usize, usize), xs: (usize, usize), border: bool) {
        let p = self.p;
        let ((ylo, yhi), (xlo, xhi)) = (ys, xs);
        let pn = self.mk.pixels;
        fb.for_("n", i64c(0), ns, |fb, n| {
            if border {
                fb.for_n("oy", p.oh, |fb, oy| {
                    let row_in = in_range(sub(oy.clone(), c64(ylo)), yhi - ylo);
                    fb.for_n("ox", p.ow, |fb, ox| {
                        let col_in = in_range(sub(ox.clone(), c64(xlo)), xhi - xlo);
                        let inside = and(row_in.clone(), col_in);
                        fb.if_(cmp(CmpOp::Eq, inside, Expr::Int(0, Ty::I8)), |fb| {
                            let at = At::Conv {
                                n: &n,
                                oy: &oy,
                                ox0: &ox,
                            };
                            self.tile(fb, 1, &at, true);
                        });
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
                        };
                        self.tile(fb, pn, &at, false);
                    });
                    if rem > 0 {
                        let ox0 = c64(xlo + tiles * pn);
                        let at = At::Conv {
                            n: &n,
                            oy: &oy,
                            ox0: &ox0,
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
            };
            body(fb, &group)
        });
        let rest = full % bb + usize::from(part > 0);
        if rest > 0 {
            let group = Group {
                ob0: c64(ng * bb),
                blocks: rest,
                last: if part > 0 { part } else { v },
            };
            body(fb, &group);
        }
    }

    /// One tile of `np` pixels (`np == 1` when `checked`) over every channel.
    fn tile(&self, fb: &mut Fb, np: usize, at: &At, checked: bool) {
        let p = self.p;
        let pix0 = match at {
            At::Conv { n, oy, ox0 } => fb.let_(
                "pix",
                Ty::I64,
                add(
                    mul(add(mul((*n).clone(), c64(p.oh)), (*oy).clone()), c64(p.ow)),
                    (*ox0).clone(),
                ),
            ),
            At::Dense { n0 } => (*n0).clone(),
        };
        if let DotEpilogue::Bits(_) = p.epilogue {
            let ow = Storage::words(p.o);
            for px in 0..np {
                let row = mul(add(pix0.clone(), c64(px)), c64(ow));
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
            match at {
                At::Conv { n, oy, ox0 } if checked => self.conv_k_checked(fb, g, n, oy, ox0),
                At::Conv { n, oy, ox0 } => self.conv_k(fb, np, g, n, oy, ox0),
                At::Dense { n0 } => {
                    let x_at = fb.let_(
                        "x_at",
                        Ty::PTR,
                        addr(self.x.clone(), (*n0).clone(), (self.words * 8) as i64),
                    );
                    let w_at = fb.let_(
                        "w_at",
                        Ty::PTR,
                        addr(
                            Expr::DataAddr(self.w),
                            g.ob0.clone(),
                            (self.words * self.mk.lanes * 8) as i64,
                        ),
                    );
                    self.words_of_tap(fb, np, g, &w_at, &x_at, self.words * 8);
                }
            }
            self.epilogue(fb, np, g, &pix0, checked);
        });
    }

    /// The K loop of an interior tile: every tap in bounds.
    fn conv_k(&self, fb: &mut Fb, np: usize, g: &Group, n: &Expr, oy: &Expr, ox0: &Expr) {
        let p = self.p;
        let row_bytes = (p.w * self.words * 8) as i64;
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
                    addr(x_row.clone(), ix0, (self.words * 8) as i64),
                );
                let tap = add(mul(i.clone(), c64(p.kw)), j);
                let w_at = self.weights_at(fb, g, tap);
                self.words_of_tap(fb, np, g, &w_at, &x_at, p.stride[1] * self.words * 8);
            })
        });
    }

    /// The K loop of a border pixel: each tap checked, padded taps add their
    /// correction.
    fn conv_k_checked(&self, fb: &mut Fb, g: &Group, n: &Expr, oy: &Expr, ox: &Expr) {
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
                            addr(self.x.clone(), pix, (self.words * 8) as i64),
                        );
                        let w_at = self.weights_at(fb, g, tap.clone());
                        self.words_of_tap(fb, 1, g, &w_at, &x_at, 0);
                    },
                    |fb| {
                        for b in 0..g.blocks {
                            let c = match self.padc {
                                Some(d) => load(
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
                                None => self.splat(i64c(-(p.c as i64))),
                            };
                            fb.assign(self.corr[b], add(var(self.corr[b]), c));
                        }
                    },
                );
            })
        });
    }

    /// Byte address of word 0 of tap `tap` of block `ob0` (the group's first).
    fn weights_at(&self, fb: &mut Fb, g: &Group, tap: Expr) -> Expr {
        fb.let_(
            "w_at",
            Ty::PTR,
            addr(
                Expr::DataAddr(self.w),
                add(mul(g.ob0.clone(), c64(self.taps)), tap),
                (self.words * self.mk.lanes * 8) as i64,
            ),
        )
    }

    /// The K steps of one tap: for each word, B weight vectors (block b at
    /// `w_at + b * taps*words*V*8 + w * V*8`) against the input word of each
    /// pixel (pixel p at `x_at + p * x_stride + w * 8`).
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
        let block_bytes = self.taps * self.words * v * 8;
        fb.for_n("w", self.words, |fb, wi| {
            let wa = fb.let_(
                "wa",
                Ty::PTR,
                addr(w_at.clone(), wi.clone(), (v * 8) as i64),
            );
            let xa = fb.let_("xa", Ty::PTR, addr(x_at.clone(), wi, 8));
            let wv: Vec<Expr> = (0..g.blocks)
                .map(|b| {
                    fb.let_(
                        "wv",
                        self.vt,
                        load(self.vt, add(wa.clone(), c64(b * block_bytes))),
                    )
                })
                .collect();
            for px in 0..np {
                let xw = load(Ty::I64, add(xa.clone(), c64(px * x_stride)));
                let xs = fb.let_("xs", self.vt, self.splat(xw));
                for (b, wvb) in wv.iter().enumerate() {
                    let a = self.acc[px * self.mk.blocks + b];
                    let pc = un(UnOp::Popcnt, xor(xs.clone(), wvb.clone()));
                    fb.assign(a, add(var(a), pc));
                }
            }
        });
    }

    /// Stores the group's outputs of the tile's `np` pixels.
    fn epilogue(&self, fb: &mut Fb, np: usize, g: &Group, pix0: &Expr, checked: bool) {
        let (p, v) = (self.p, self.mk.lanes);
        let kk = self.splat(c64(p.k()));
        for px in 0..np {
            let pix = add(pix0.clone(), c64(px));
            let accs = (0..g.blocks).map(|b| var(self.acc[px * self.mk.blocks + b]));
            let Some(thr) = self.thr else {
                for (b, a) in accs.enumerate() {
                    let mut y = sub(kk.clone(), add(a.clone(), a));
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
                    if lanes == v && v >= 4 {
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
                    let y = add(sub(kk.clone(), add(a.clone(), a)), var(self.corr[b]));
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
            let o0 = mul(g.ob0.clone(), c64(v));
            let word = fb.let_(
                "out_at",
                Ty::PTR,
                addr(
                    self.out.clone(),
                    add(
                        mul(pix, c64(Storage::words(p.o))),
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
