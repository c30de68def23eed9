//! Kernel emitters: one kir function per node.
//!
//! Each emitter mirrors its op's reference definition (`bnnc_ir::op`) loop for
//! loop, so float results are summed in the interpreter's order and integer and
//! binary results are exact. Binary convolution and dense layers compute
//! `Cg - 2 * popcount(x xor w)` per kernel tap on packed words; padded taps add a
//! per-(output channel, tap) constant `pad * sum_c w` (0 for `pad_value=0`).

use bnnc_ir::{Dim, ElemType, Op, PadValue, TensorData, TensorType, ValueId};
use bnnc_kir::build::*;
use bnnc_kir::{BinOp, CmpOp, DataId, Expr, Ty, UnOp};

use super::emit::*;
use super::kernel::BnParams;
use super::{kernel, pack_bits, sample_elems, Cx, LowerError, Storage};

type R = Result<(), LowerError>;

/// Rows and channels of a tensor seen as `[rows, C]` per sample (C = last axis;
/// 1 for a batched vector).
fn rows_cols(ty: &TensorType) -> (usize, usize) {
    let dims: Vec<usize> = ty.shape.iter().map(|d| d.resolve(1)).collect();
    match (dims.len(), ty.is_batched()) {
        (0, _) | (1, true) => (1, 1),
        (1, false) => (1, dims[0]),
        (r, batched) => (
            dims[usize::from(batched)..r - 1].iter().product(),
            dims[r - 1],
        ),
    }
}

/// Samples to loop over: the batch for batched tensors, else 1.
fn samples(ty: &TensorType, batch: &Expr) -> Expr {
    if ty.is_batched() {
        batch.clone()
    } else {
        i64c(1)
    }
}

/// Samples of a conv, dense or pooling kernel, whose geometry reads the
/// dimensions after the first: the batch for batched tensors, else the first
/// dimension (an unbatched `[6, 70]` dense has 6 rows, an unbatched
/// `[3, H, W, C]` pool 3 images).
fn leading(ty: &TensorType, batch: &Expr) -> Expr {
    match ty.shape.first() {
        _ if ty.is_batched() => batch.clone(),
        Some(d) => c64(d.resolve(1)),
        None => i64c(1),
    }
}

/// Address of element `idx` of a 4-byte-element buffer.
fn at4(p: &Expr, idx: Expr) -> Expr {
    addr(p.clone(), idx, 4)
}

/// Address of word `idx` of a packed buffer.
fn at8(p: &Expr, idx: Expr) -> Expr {
    addr(p.clone(), idx, 8)
}

/// Loads element `idx` of a numeric buffer as f32 (converting i32).
fn load_f32(storage: Storage, p: &Expr, idx: Expr) -> Expr {
    match storage {
        Storage::F32 => load(Ty::F32, at4(p, idx)),
        _ => i2f(load(Ty::I32, at4(p, idx))),
    }
}

fn load_data_f32(d: DataId, idx: Expr) -> Expr {
    load(Ty::F32, at4(&Expr::DataAddr(d), idx))
}

fn f32_values(t: &bnnc_ir::Tensor) -> Vec<f32> {
    t.to_f32_vec()
}

pub(crate) fn lower_node(cx: &mut Cx, v: ValueId, out: usize) -> R {
    let node = cx.model.graph.node(v).clone();
    let ins = node.inputs.clone();
    let elem = |i: usize| cx.model.ty(ins[i]).elem;
    let out_elem = cx.model.ty(v).elem;
    match &node.op {
        Op::Input(_) | Op::Weight { .. } | Op::Const { .. } => Ok(()),
        Op::Sign { .. } | Op::Threshold | Op::Table { .. } if cx.fused.contains(&ins[0]) => {
            fused_dot(cx, v, ins[0], out)
        }
        Op::BatchNorm { .. } if cx.fused.contains(&ins[0]) => fused_affine(cx, v, ins[0], out),
        Op::Table { lo } => table(cx, v, &ins, *lo, out),
        Op::Fill { value, to } => fill(cx, v, *value, *to, out),
        Op::Sign { .. } => match elem(0) {
            ElemType::B1 => {
                let src = cx.operand(ins[0])?;
                copy(cx, v, src, out);
                Ok(())
            }
            ElemType::F32 | ElemType::I32 => {
                let src = cx.operand(ins[0])?;
                let st = cx.buf_storage(src);
                if st == Storage::F32 && sign_f32_vector(cx, src, out) {
                    return Ok(());
                }
                pack(cx, "sign", out, vec![src], move |_, p, idx, _| match st {
                    Storage::F32 => cmp(CmpOp::FLt, load(Ty::F32, at4(&p[0], idx)), f32c(0.0)),
                    _ => lt(load(Ty::I32, at4(&p[0], idx)), i32c(0)),
                });
                Ok(())
            }
            _ => Err(cx.unsupported(v, &[])),
        },
        Op::Threshold => threshold(cx, v, &ins, out),
        Op::Conv2d(attrs) => match (elem(0), elem(1)) {
            (ElemType::B1, ElemType::B1 | ElemType::Ternary) => {
                conv_b1(cx, v, &ins, attrs, out, Epilogue::Acc)
            }
            (ElemType::F32, ElemType::F32 | ElemType::B1 | ElemType::Ternary) => {
                conv_f32(cx, v, &ins, attrs, out)
            }
            _ => Err(cx.unsupported(v, &[])),
        },
        Op::Dense => match (elem(0), elem(1)) {
            (ElemType::B1, ElemType::B1 | ElemType::Ternary) => {
                dense_b1(cx, v, &ins, out, Epilogue::Acc)
            }
            (ElemType::F32, ElemType::F32 | ElemType::B1 | ElemType::Ternary) => {
                dense_f32(cx, v, &ins, out)
            }
            _ => Err(cx.unsupported(v, &[])),
        },
        Op::BatchNorm { .. } => {
            let bn = Affine::data(cx, &bn_params(cx, v)?);
            map(cx, v, ins[0], out, "batchnorm", move |_, x, c| {
                bn.apply(x, c)
            })
        }
        Op::Add | Op::Sub | Op::Mul => broadcast(cx, v, &ins, out),
        Op::Relu => {
            let float = out_elem == ElemType::F32;
            map(cx, v, ins[0], out, "relu", move |_, x, _| {
                if float {
                    let keep = bin(
                        BinOp::Or,
                        cmp(CmpOp::FGt, x.clone(), f32c(0.0)),
                        cmp(CmpOp::FUno, x.clone(), x.clone()),
                    );
                    select(keep, x, f32c(0.0))
                } else {
                    bin(BinOp::SMax, x, i32c(0))
                }
            })
        }
        Op::Prelu => {
            let p = const_params(cx, v, &ins[1..])?;
            let alpha = cx.data_f32("prelu_alpha", &p[0]);
            map(cx, v, ins[0], out, "prelu", move |_, x, c| {
                select(
                    cmp(CmpOp::FGt, x.clone(), f32c(0.0)),
                    x.clone(),
                    fmul(load_data_f32(alpha, c), x),
                )
            })
        }
        Op::Rprelu => {
            let p = const_params(cx, v, &ins[1..])?;
            let (g, b, z) = (
                cx.data_f32("rprelu_gamma", &p[0]),
                cx.data_f32("rprelu_beta", &p[1]),
                cx.data_f32("rprelu_zeta", &p[2]),
            );
            map(cx, v, ins[0], out, "rprelu", move |fb, x, c| {
                let u = fb.let_("u", Ty::F32, fsub(x, load_data_f32(g, c.clone())));
                let act = select(
                    cmp(CmpOp::FGt, u.clone(), f32c(0.0)),
                    u.clone(),
                    fmul(load_data_f32(b, c.clone()), u),
                );
                fadd(act, load_data_f32(z, c))
            })
        }
        Op::Hardtanh => clip(cx, v, ins[0], out, -1.0, 1.0),
        Op::Clip { min, max } => clip(cx, v, ins[0], out, *min, *max),
        Op::Sigmoid => {
            let expf = cx.expf();
            map(cx, v, ins[0], out, "sigmoid", move |_, x, _| {
                let e = Expr::CallExtern(expf, vec![un(UnOp::FNeg, x)]);
                fdiv(f32c(1.0), fadd(f32c(1.0), e))
            })
        }
        Op::Dequantize { scale, zero_point } => {
            if !matches!(elem(0), ElemType::I32 | ElemType::B1) {
                return Err(cx.unsupported(v, &[]));
            }
            let (scale, zp) = (*scale, *zero_point as i64);
            map_int(cx, v, ins[0], out, "dequantize", move |_, q, _| {
                let d = sub(to_i64(q), i64c(zp));
                fmul(
                    bnnc_kir::build::cast(bnnc_kir::CastOp::SIToF, d, Ty::F32),
                    f32c(scale),
                )
            })
        }
        Op::MaxPool2d(a) => {
            if elem(0) == ElemType::B1 {
                maxpool_b1(cx, v, ins[0], a, out)
            } else {
                pool(cx, v, ins[0], a, out, true)
            }
        }
        Op::AvgPool2d(a) => pool(cx, v, ins[0], a, out, false),
        Op::GlobalAvgPool => global_avgpool(cx, v, ins[0], out),
        Op::Concat { .. }
        | Op::Replicate { .. }
        | Op::ChannelShuffle { .. }
        | Op::Flatten
        | Op::Reshape { .. } => {
            if out_elem == ElemType::B1 {
                if let Some(r) = reshape_b1_words(cx, v, &node.op, &ins, out) {
                    return r;
                }
                if let Some(r) = channel_move_b1(cx, &node.op, &ins, out) {
                    return r;
                }
                // Move ±1 values as i32, then pack.
                let ty = TensorType::new(ElemType::I32, cx.model.ty(v).shape.clone());
                let tmp = cx.temp(format!("{}.i32", node.name), ty)?;
                movement(cx, v, &node.op, &ins, tmp)?;
                pack(cx, "pack", out, vec![tmp], |_, p, idx, _| {
                    lt(load(Ty::I32, at4(&p[0], idx)), i32c(0))
                });
                Ok(())
            } else {
                movement(cx, v, &node.op, &ins, out)
            }
        }
        Op::Softmax { axis } => softmax_argmax(cx, v, ins[0], *axis, out, true),
        Op::Argmax { axis } => softmax_argmax(cx, v, ins[0], *axis, out, false),
        Op::Quantize { .. } | Op::Ternarize { .. } => Err(cx.unsupported(v, &[])),
    }
}

/// Per-channel `f32` parameters that must be constants.
fn const_params(cx: &Cx, v: ValueId, ps: &[ValueId]) -> Result<Vec<Vec<f32>>, LowerError> {
    ps.iter()
        .map(|&p| {
            cx.constant(p)
                .map(f32_values)
                .ok_or_else(|| LowerError::Unsupported {
                    node: cx.model.graph.node(v).name.clone(),
                    op: format!(
                        "{} with a non-constant parameter",
                        cx.model.graph.node(v).op.name()
                    ),
                    types: cx.model.ty(p).to_string(),
                    at: cx.model.graph.node(v).locs.op,
                })
        })
        .collect()
}

/// Copies a buffer (any storage) in 4-byte units.
pub(crate) fn copy(cx: &mut Cx, _v: ValueId, src: usize, dst: usize) {
    let ty = cx.buf_ty(dst).clone();
    let units = (cx.buf_storage(dst).sample_bytes(sample_elems(&ty)) / 4) as usize;
    let (mut fb, batch, p) = cx.begin("copy", 2);
    let ns = samples(&ty, &batch);
    fb.for_("n", i64c(0), ns, |fb, n| {
        fb.for_n("i", units, |fb, i| {
            let idx = add(mul(n.clone(), c64(units)), i);
            fb.store(at4(&p[1], idx.clone()), load(Ty::I32, at4(&p[0], idx)));
        })
    });
    cx.end(fb, vec![src, dst]);
}

/// Unpacks a `b1` buffer into ±1 `i32` values.
pub(crate) fn unpack(cx: &mut Cx, _v: ValueId, src: usize, dst: usize) {
    let ty = cx.buf_ty(src).clone();
    let (rows, c) = rows_cols(&ty);
    let wpr = Storage::words(c);
    let (mut fb, batch, p) = cx.begin("unpack", 2);
    fb.for_("n", i64c(0), samples(&ty, &batch), |fb, n| {
        fb.for_n("r", rows, |fb, r| {
            let row = add(mul(n.clone(), c64(rows)), r);
            fb.for_n("c", c, |fb, ch| {
                let word = load(
                    Ty::I64,
                    at8(
                        &p[0],
                        add(mul(row.clone(), c64(wpr)), shru(ch.clone(), i64c(6))),
                    ),
                );
                let bit = and(shru(word, ch.clone()), i64c(1));
                let val = to_i32(sub(i64c(1), mul(i64c(2), bit)));
                fb.store(at4(&p[1], add(mul(row.clone(), c64(c)), ch)), val);
            })
        })
    });
    cx.end(fb, vec![src, dst]);
}

/// Packs into `out` (a `b1` buffer): element `idx` (row-major over the output
/// shape, channel `ch`) becomes -1 (bit 1) where `negative(fb, ptrs, idx, ch)`.
fn pack(
    cx: &mut Cx,
    what: &str,
    out: usize,
    args: Vec<usize>,
    negative: impl Fn(&mut Fb, &[Expr], Expr, Expr) -> Expr,
) {
    let ty = cx.buf_ty(out).clone();
    let (rows, c) = rows_cols(&ty);
    let wpr = Storage::words(c);
    let nargs = args.len();
    let (mut fb, batch, p) = cx.begin(what, nargs + 1);
    let bits = fb.var("bits", Ty::I64);
    fb.for_("n", i64c(0), samples(&ty, &batch), |fb, n| {
        fb.for_n("r", rows, |fb, r| {
            let row = add(mul(n.clone(), c64(rows)), r);
            fb.for_n("w", wpr, |fb, w| {
                fb.assign(bits, i64c(0));
                fb.for_n("j", c.min(64), |fb, j| {
                    let ch = add(mul(w.clone(), i64c(64)), j.clone());
                    let body = |fb: &mut Fb| {
                        let neg = negative(
                            fb,
                            &p[..nargs],
                            add(mul(row.clone(), c64(c)), ch.clone()),
                            ch.clone(),
                        );
                        fb.assign(bits, or(var(bits), shl(flag64(neg), j.clone())));
                    };
                    if c % 64 == 0 {
                        body(fb)
                    } else {
                        fb.if_(lt(ch.clone(), c64(c)), body)
                    }
                });
                fb.store(
                    at8(&p[nargs], add(mul(row.clone(), c64(wpr)), w)),
                    var(bits),
                );
            })
        })
    });
    let mut all = args;
    all.push(out);
    cx.end(fb, all);
}

/// `sign` of the f32 buffer `src` into packed bits `out` (a kernel named
/// `sign`, as the scalar packing's), with vectors of
/// V f32 lanes ([`kernel::f32_conv::F32Kernel::lanes`]; false, emitting
/// nothing, when the target gets none). Each full 64-bit word of a row is
/// `64 / V` compares `x < 0.0` (NaN and -0.0 compare false: +1, the op's
/// contract), each lane mask turned into V bits by `sign_bits` (`kmov`,
/// `movmsk`) at bit `k*V`; the row's last, partial word (C mod 64
/// channels) goes element by element, its bits past C 0.
fn sign_f32_vector(cx: &mut Cx, src: usize, out: usize) -> bool {
    let Some(v) = kernel::f32_conv::F32Kernel::lanes(cx.target, cx.opts.max_vector_bits) else {
        return false;
    };
    let ty = cx.buf_ty(out).clone();
    let (rows, c) = rows_cols(&ty);
    let (full, tail) = (c / 64, c % 64);
    if full == 0 {
        return false;
    }
    let wpr = Storage::words(c);
    let (mut fb, batch, p) = cx.begin("sign", 2);
    let ft = Ty::vec(bnnc_kir::Scalar::F32, v as u16);
    fb.for_("n", i64c(0), samples(&ty, &batch), |fb, n| {
        fb.for_n("r", rows, |fb, r| {
            let row = fb.let_("row", Ty::I64, add(mul(n.clone(), c64(rows)), r));
            fb.for_n("w", full, |fb, w| {
                let first = add(mul(row.clone(), c64(c)), mul(w.clone(), i64c(64)));
                let mut bits = i64c(0);
                for k in 0..64 / v {
                    let x = load(ft, at4(&p[0], add(first.clone(), c64(k * v))));
                    let neg = cmp(CmpOp::FLt, x, Expr::Splat(ft, Box::new(f32c(0.0))));
                    bits = or(bits, shl(Expr::SignBits(Box::new(neg)), c64(k * v)));
                }
                fb.store(at8(&p[1], add(mul(row.clone(), c64(wpr)), w)), bits);
            });
            if tail > 0 {
                let mut bits = i64c(0);
                for j in 0..tail {
                    let x = load(
                        Ty::F32,
                        at4(&p[0], add(mul(row.clone(), c64(c)), c64(full * 64 + j))),
                    );
                    bits = or(bits, shl(flag64(cmp(CmpOp::FLt, x, f32c(0.0))), c64(j)));
                }
                fb.store(at8(&p[1], add(mul(row.clone(), c64(wpr)), c64(full))), bits);
            }
        })
    });
    cx.end(fb, vec![src, out]);
    true
}

/// Elementwise map over `[rows, C]` with the channel index; `f` receives the
/// value as f32 (the output is f32).
fn map(
    cx: &mut Cx,
    v: ValueId,
    x: ValueId,
    out: usize,
    what: &str,
    f: impl Fn(&mut Fb, Expr, Expr) -> Expr,
) -> R {
    let src = cx.numeric(x)?;
    let st = cx.buf_storage(src);
    let out_float = cx.buf_storage(out) == Storage::F32;
    map_raw(cx, v, src, out, what, move |fb, p, idx, c| {
        let x = if out_float {
            load_f32(st, p, idx)
        } else {
            load(Ty::I32, at4(p, idx))
        };
        f(fb, x, c)
    })
}

/// Like [`map`] but `f` receives the raw `i32` value.
fn map_int(
    cx: &mut Cx,
    v: ValueId,
    x: ValueId,
    out: usize,
    what: &str,
    f: impl Fn(&mut Fb, Expr, Expr) -> Expr,
) -> R {
    let src = cx.numeric(x)?;
    map_raw(cx, v, src, out, what, move |fb, p, idx, c| {
        f(fb, load(Ty::I32, at4(p, idx)), c)
    })
}

fn map_raw(
    cx: &mut Cx,
    _v: ValueId,
    src: usize,
    out: usize,
    what: &str,
    f: impl Fn(&mut Fb, &Expr, Expr, Expr) -> Expr,
) -> R {
    let ty = cx.buf_ty(out).clone();
    let (rows, c) = rows_cols(&ty);
    let (mut fb, batch, p) = cx.begin(what, 2);
    fb.for_("n", i64c(0), samples(&ty, &batch), |fb, n| {
        fb.for_n("r", rows, |fb, r| {
            let row = add(mul(n.clone(), c64(rows)), r);
            fb.for_n("c", c, |fb, ch| {
                let idx = add(mul(row.clone(), c64(c)), ch.clone());
                let y = f(fb, &p[0], idx.clone(), ch);
                fb.store(at4(&p[1], idx), y);
            })
        })
    });
    cx.end(fb, vec![src, out]);
    Ok(())
}

fn clip(cx: &mut Cx, v: ValueId, x: ValueId, out: usize, lo: f32, hi: f32) -> R {
    map(cx, v, x, out, "clip", move |fb, x, _| {
        // NaN stays NaN: both comparisons are false for it.
        let l = fb.let_(
            "lo",
            Ty::F32,
            select(cmp(CmpOp::FLt, x.clone(), f32c(lo)), f32c(lo), x),
        );
        select(cmp(CmpOp::FGt, l.clone(), f32c(hi)), f32c(hi), l)
    })
}

/// Contiguous element strides of a shape (the batch dimension's extent does not
/// matter: it is outermost).
fn strides(ty: &TensorType) -> Vec<i64> {
    let dims: Vec<usize> = ty.shape.iter().map(|d| d.resolve(1)).collect();
    let mut s = vec![0i64; dims.len()];
    let mut acc = 1i64;
    for i in (0..dims.len()).rev() {
        s[i] = acc;
        acc *= dims[i] as i64;
    }
    s
}

/// Opens one loop per dimension of `ty` (the batch runs to `batch`), returning
/// the index expressions; close with as many `close_for`.
fn open_nest(fb: &mut Fb, ty: &TensorType, batch: &Expr) -> Vec<Expr> {
    ty.shape
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let end = match d {
                Dim::Batch => batch.clone(),
                Dim::Fixed(n) => c64(*n),
            };
            fb.open_for(&format!("i{i}"), i64c(0), end)
        })
        .collect()
}

fn linear(idx: &[Expr], strides: &[i64]) -> Expr {
    idx.iter()
        .zip(strides)
        .filter(|(_, &s)| s != 0)
        .fold(i64c(0), |acc, (i, &s)| {
            add(
                acc,
                if s == 1 {
                    i.clone()
                } else {
                    mul(i.clone(), i64c(s))
                },
            )
        })
}

/// Broadcasting `add`/`sub`/`mul`.
fn broadcast(cx: &mut Cx, v: ValueId, ins: &[ValueId], out: usize) -> R {
    let op = cx.model.graph.node(v).op.clone();
    let a = cx.numeric(ins[0])?;
    let b = cx.numeric(ins[1])?;
    let oty = cx.buf_ty(out).clone();
    let float = cx.buf_storage(out) == Storage::F32;
    let r = oty.rank();
    // Operand strides aligned to the output's dimensions; 0 where broadcast.
    let ostrides = strides(&oty);
    let operand_strides = |ty: &TensorType| -> Vec<i64> {
        let s = strides(ty);
        let off = r - ty.rank();
        (0..r)
            .map(|i| {
                if i < off {
                    0
                } else {
                    let d = ty.shape[i - off];
                    if d == Dim::Fixed(1) && oty.shape[i] != Dim::Fixed(1) {
                        0
                    } else {
                        s[i - off]
                    }
                }
            })
            .collect()
    };
    let (sa, sb) = (operand_strides(cx.buf_ty(a)), operand_strides(cx.buf_ty(b)));
    let (sta, stb) = (cx.buf_storage(a), cx.buf_storage(b));
    // An i32 multiply by one constant power of two 2^k (either side) is a
    // left shift by k: both are multiplication by 2^k modulo 2^32.
    let shift = if !float && matches!(op, Op::Mul) {
        let pow2 = |x: ValueId| {
            let t = cx.constant(x)?.as_int()?;
            let first = *t.first()?;
            (first > 0 && (first as u32).is_power_of_two() && t.iter().all(|&e| e == first))
                .then(|| first.trailing_zeros() as i32)
        };
        match (pow2(ins[1]), pow2(ins[0])) {
            (Some(k), _) => Some((0, k)),
            (None, Some(k)) => Some((1, k)),
            _ => None,
        }
    } else {
        None
    };
    let (mut fb, batch, p) = cx.begin(op.name(), 3);
    let idx = open_nest(&mut fb, &oty, &batch);
    let (ia, ib, io) = (
        linear(&idx, &sa),
        linear(&idx, &sb),
        linear(&idx, &ostrides),
    );
    let y = if float {
        let (x, z) = (load_f32(sta, &p[0], ia), load_f32(stb, &p[1], ib));
        match op {
            Op::Add => fadd(x, z),
            Op::Sub => fsub(x, z),
            _ => fmul(x, z),
        }
    } else {
        let (x, z) = (load(Ty::I32, at4(&p[0], ia)), load(Ty::I32, at4(&p[1], ib)));
        match (op, shift) {
            (Op::Add, _) => add(x, z),
            (Op::Sub, _) => sub(x, z),
            (_, Some((0, k))) => shl(x, i32c(k)),
            (_, Some((_, k))) => shl(z, i32c(k)),
            _ => mul(x, z),
        }
    };
    fb.store(at4(&p[2], io), y);
    for _ in 0..r {
        fb.close_for();
    }
    cx.end(fb, vec![a, b, out]);
    Ok(())
}

/// `threshold` with one threshold per channel (b1 output).
fn threshold(cx: &mut Cx, v: ValueId, ins: &[ValueId], out: usize) -> R {
    if cx.model.ty(v).elem != ElemType::B1 {
        return Err(cx.unsupported(v, &[]));
    }
    let (Some(t), dir) = (
        cx.constant(ins[1]).cloned(),
        ins.get(2).map(|&d| cx.constant(d).cloned()),
    ) else {
        return Err(cx.unsupported(v, &[]));
    };
    if matches!(dir, Some(None)) {
        return Err(cx.unsupported(v, &[]));
    }
    let shared = t.dims[0] == 1;
    let tdata = match &t.data {
        TensorData::F32(x) => cx.data_f32("thresholds", x),
        TensorData::Int(_) | TensorData::Bits(_) => {
            cx.data_i32("thresholds", &t.as_int().unwrap_or_default())
        }
    };
    let ddata = dir
        .flatten()
        .and_then(|d| d.as_int().map(|x| x.to_vec()))
        .map(|d| cx.data_i32("dir", &d));
    // i8 1 where value `x` of output channel `ch` passes no threshold.
    let negative = move |float: bool, x: Expr, ch: Expr| {
        let ti = if shared { i64c(0) } else { ch.clone() };
        let th = if float {
            load_data_f32(tdata, ti)
        } else {
            load(Ty::I32, at4(&Expr::DataAddr(tdata), ti))
        };
        let (ge, le) = if float {
            (
                cmp(CmpOp::FGe, x.clone(), th.clone()),
                cmp(CmpOp::FLe, x, th),
            )
        } else {
            (
                cmp(CmpOp::SGe, x.clone(), th.clone()),
                cmp(CmpOp::SLe, x, th),
            )
        };
        let passed = match ddata {
            None => ge,
            Some(d) => {
                let dv = load(Ty::I32, at4(&Expr::DataAddr(d), ch));
                select(cmp(CmpOp::Eq, dv, i32c(-1)), le, ge)
            }
        };
        cmp(CmpOp::Eq, passed, Expr::Int(0, Ty::I8))
    };
    if let Some((srcv, times)) = cx.read_through.get(&ins[0]).copied() {
        return threshold_replicated(cx, srcv, times, out, negative);
    }
    let src = cx.numeric(ins[0])?;
    let float = cx.buf_storage(src) == Storage::F32;
    pack(cx, "threshold", out, vec![src], move |_, p, idx, ch| {
        let ty = if float { Ty::F32 } else { Ty::I32 };
        negative(float, load(ty, at4(&p[0], idx)), ch)
    });
    Ok(())
}

/// `threshold(replicate(x0, times), ..)` reading x0 directly: each value of
/// x0 (channel c of C0) is loaded once and compared against the thresholds of
/// every output channel `r*C0 + c` that copies it, one bit each; the
/// replicated tensor is never stored.
fn threshold_replicated(
    cx: &mut Cx,
    x0: ValueId,
    times: usize,
    out: usize,
    negative: impl Fn(bool, Expr, Expr) -> Expr,
) -> R {
    let src = cx.numeric(x0)?;
    let float = cx.buf_storage(src) == Storage::F32;
    let ty = cx.buf_ty(out).clone();
    let (rows, c) = rows_cols(&ty);
    let c0 = c / times;
    let owords = Storage::words(c);
    let (mut fb, batch, p) = cx.begin("threshold_replicated", 2);
    fb.for_("n", i64c(0), samples(&ty, &batch), |fb, n| {
        fb.for_n("row", rows, |fb, r| {
            let row = fb.let_("row", Ty::I64, add(mul(n.clone(), c64(rows)), r));
            fb.for_n("w", owords, |fb, w| {
                fb.store(at8(&p[1], add(mul(row.clone(), c64(owords)), w)), i64c(0))
            });
            fb.for_n("c", c0, |fb, ch0| {
                let x = fb.let_(
                    "x",
                    if float { Ty::F32 } else { Ty::I32 },
                    load(
                        if float { Ty::F32 } else { Ty::I32 },
                        at4(&p[0], add(mul(row.clone(), c64(c0)), ch0.clone())),
                    ),
                );
                let store = |fb: &mut Fb, ch: Expr| {
                    let word = at8(
                        &p[1],
                        add(mul(row.clone(), c64(owords)), shru(ch.clone(), i64c(6))),
                    );
                    let bit = shl(flag64(negative(float, x.clone(), ch.clone())), ch);
                    fb.store(word.clone(), or(load(Ty::I64, word), bit));
                };
                for_replicas(fb, times, c0, &ch0, store);
            });
        })
    });
    cx.end(fb, vec![src, out]);
    Ok(())
}

/// Replicas unrolled up to this count; more are a loop, so that the code
/// does not grow with `replicate`'s `times`.
const MAX_UNROLLED_REPLICAS: usize = 8;

/// `body(fb, ch)` for the channel `ch = c + r * chans` of each replica `r`
/// in `0..times`: unrolled, or a loop over `r` for more than
/// [`MAX_UNROLLED_REPLICAS`].
fn for_replicas(
    fb: &mut Fb,
    times: usize,
    chans: usize,
    c: &Expr,
    mut body: impl FnMut(&mut Fb, Expr),
) {
    if times <= MAX_UNROLLED_REPLICAS {
        for r in 0..times {
            let ch = if r == 0 {
                c.clone()
            } else {
                add(c.clone(), c64(r * chans))
            };
            body(fb, ch);
        }
    } else {
        fb.for_n("r", times, |fb, r| {
            body(fb, add(c.clone(), mul(r, c64(chans))))
        });
    }
}

/// `table(x, t, lo)` over a stored integer value (see [`Lookup`]): `b1`
/// results are packed from the looked-up signs; `i32` and `f32` results store
/// the entry itself.
fn table(cx: &mut Cx, v: ValueId, ins: &[ValueId], lo: i32, out: usize) -> R {
    let t = cx
        .constant(ins[1])
        .cloned()
        .ok_or_else(|| cx.unsupported(v, &[]))?;
    let src = cx.numeric(ins[0])?;
    match t.elem {
        ElemType::B1 => {
            let lk = Lookup::new(cx, &t, lo).ok_or_else(|| cx.unsupported(v, &[]))?;
            pack(cx, "table", out, vec![src], move |fb, p, idx, ch| {
                lk.negative(fb, load(Ty::I32, at4(&p[0], idx)), &ch)
            });
            Ok(())
        }
        ElemType::I32 | ElemType::F32 => {
            let r = *t.dims.last().unwrap_or(&1);
            let shared = t.dims[0] == 1;
            let (data, ty) = match &t.data {
                TensorData::F32(x) => (cx.data_f32("table", x), Ty::F32),
                TensorData::Int(_) | TensorData::Bits(_) => (
                    cx.data_i32("table", &t.as_int().unwrap_or_default()),
                    Ty::I32,
                ),
            };
            map_raw(cx, v, src, out, "table", move |fb, p, idx, ch| {
                let k = clamp_index(fb, load(Ty::I32, at4(p, idx)), lo, r);
                let row = if shared { i64c(0) } else { mul(ch, c64(r)) };
                load(ty, at4(&Expr::DataAddr(data), add(row, k)))
            })
        }
        _ => Err(cx.unsupported(v, &[])),
    }
}

/// `fill(x, value, to)`: writes the constant; x is not read (lowering does
/// not compute a value that only fills use).
fn fill(cx: &mut Cx, v: ValueId, value: f32, to: ElemType, out: usize) -> R {
    let ty = cx.buf_ty(out).clone();
    let word = match to {
        ElemType::B1 => {
            pack(cx, "fill", out, vec![], move |_, _, _, _| {
                Expr::Int(i64::from(value < 0.0), Ty::I8)
            });
            return Ok(());
        }
        ElemType::I32 => i32c(value as i32),
        ElemType::F32 => f32c(value),
        _ => return Err(cx.unsupported(v, &[])),
    };
    let (rows, c) = rows_cols(&ty);
    let (mut fb, batch, p) = cx.begin("fill", 1);
    fb.for_("n", i64c(0), samples(&ty, &batch), |fb, n| {
        fb.for_n("i", rows * c, |fb, i| {
            let idx = add(mul(n.clone(), c64(rows * c)), i);
            fb.store(at4(&p[0], idx), word.clone());
        })
    });
    cx.end(fb, vec![out]);
    Ok(())
}

/// What a binary conv/dense kernel does with each output accumulator.
#[derive(Clone, Copy)]
enum Epilogue {
    /// Store the `i32` accumulator.
    Acc,
    /// Store one bit per output channel (1 = -1 where the threshold is not
    /// passed): a `threshold` or `sign` fused into the kernel.
    Bits(Thr),
    /// Store the `f32` of a `batchnorm` fused into the kernel.
    Affine(Affine),
}

/// The constants of `batchnorm` node `v`.
fn bn_params(cx: &Cx, v: ValueId) -> Result<BnParams, LowerError> {
    let node = cx.model.graph.node(v);
    let Op::BatchNorm { eps } = node.op else {
        return Err(LowerError::Internal("not a batchnorm".into()));
    };
    let mut params = const_params(cx, v, &node.inputs[1..])?;
    let den = params[3].iter().map(|&var| (var + eps).sqrt()).collect();
    let mean = std::mem::take(&mut params[2]);
    let beta = std::mem::take(&mut params[1]);
    let gamma = std::mem::take(&mut params[0]);
    Ok(BnParams {
        mean,
        den,
        gamma,
        beta,
    })
}

/// [`BnParams`] in data, `f32 [C]` each.
#[derive(Clone, Copy)]
struct Affine {
    mean: DataId,
    den: DataId,
    gamma: DataId,
    beta: DataId,
}

impl Affine {
    fn data(cx: &mut Cx, bn: &BnParams) -> Affine {
        Affine {
            mean: cx.data_f32("bn_mean", &bn.mean),
            den: cx.data_f32("bn_denom", &bn.den),
            gamma: cx.data_f32("bn_gamma", &bn.gamma),
            beta: cx.data_f32("bn_beta", &bn.beta),
        }
    }

    /// The batch-norm of f32 `x` in channel `c`, as [`BnParams::apply`].
    fn apply(&self, x: Expr, c: Expr) -> Expr {
        let centered = fsub(x, load_data_f32(self.mean, c.clone()));
        let normed = fdiv(centered, load_data_f32(self.den, c.clone()));
        fadd(
            fmul(normed, load_data_f32(self.gamma, c.clone())),
            load_data_f32(self.beta, c),
        )
    }
}

/// Lowers `batchnorm` node `v` together with its fused accumulator `acc` (a
/// binary conv/dense): the micro-kernel's affine epilogue, else the scalar
/// loops storing each output's batch-norm.
fn fused_affine(cx: &mut Cx, v: ValueId, acc: ValueId, out: usize) -> R {
    let bn = bn_params(cx, v)?;
    if micro_dot(cx, acc, out, kernel::DotEpilogue::Affine(bn))? {
        return Ok(());
    }
    let bn = Affine::data(cx, &bn_params(cx, v)?);
    let a = cx.model.graph.node(acc).clone();
    match &a.op {
        Op::Dense => dense_b1(cx, acc, &a.inputs, out, Epilogue::Affine(bn)),
        Op::Conv2d(attrs) => conv_b1(cx, acc, &a.inputs, attrs, out, Epilogue::Affine(bn)),
        _ => Err(LowerError::Internal(
            "fused accumulator is not a binary dot".into(),
        )),
    }
}

/// A per-channel threshold over an `i32` accumulator: passed when
/// `acc >= t[c]` (or `acc <= t[c]` where `dir[c] = -1`). `t = None` is 0.
///
/// With `reps > 1` the threshold reads `replicate(acc, times=reps)`: the
/// accumulator of channel `o` (of `chans`) is computed once and compared
/// against the thresholds of output channels `r*chans + o`, one bit each.
///
/// With `table` set, the bit comes from a `table` op's rows instead (see
/// [`Lookup`]); `t` and `dir` are then unused.
#[derive(Clone, Copy)]
struct Thr {
    t: Option<DataId>,
    shared: bool,
    dir: Option<DataId>,
    reps: usize,
    table: Option<Lookup>,
}

/// A `b1` `table(x, t, lo)` in data: each row packed like a `b1` tensor row
/// (bit k set where entry k is -1, `words(r)` words per row); row `c` (or row 0
/// when `shared`) has `r` entries, entry k for `x = lo + k`.
#[derive(Clone, Copy)]
struct Lookup {
    bits: DataId,
    lo: i32,
    r: usize,
    shared: bool,
}

impl Lookup {
    /// From the constant table of a `table` node with `b1` values.
    fn new(cx: &mut Cx, t: &bnnc_ir::Tensor, lo: i32) -> Option<Lookup> {
        let v = t.as_int()?;
        let (rows, r) = (t.dims[0], *t.dims.last()?);
        let bits = crate::lower::pack_bits(&v, rows, r);
        Some(Lookup {
            bits: cx.data_u64("table_bits", &bits),
            lo,
            r,
            shared: rows == 1,
        })
    }

    /// i8 1 where value `x` (i32) of channel `ch` looks up -1:
    /// `t[ch, clamp(x - lo, 0, r - 1)]`, the difference in i64.
    fn negative(&self, fb: &mut Fb, x: Expr, ch: &Expr) -> Expr {
        let k = clamp_index(fb, x, self.lo, self.r);
        let wpr = Storage::words(self.r);
        let row = if self.shared {
            i64c(0)
        } else {
            mul(ch.clone(), c64(wpr))
        };
        let word = load(
            Ty::I64,
            at8(
                &Expr::DataAddr(self.bits),
                add(row, shru(k.clone(), i64c(6))),
            ),
        );
        let bit = and(shru(word, and(k, i64c(63))), i64c(1));
        cmp(CmpOp::Ne, bit, i64c(0))
    }
}

/// `clamp(x - lo, 0, r - 1)` as i64 for an i32 `x` (the entry of a table row).
fn clamp_index(fb: &mut Fb, x: Expr, lo: i32, r: usize) -> Expr {
    let d = fb.let_("tbl_d", Ty::I64, sub(to_i64(x), i64c(lo as i64)));
    let hi = i64c(r as i64 - 1);
    let k = fb.let_(
        "tbl_k",
        Ty::I64,
        select(cmp(CmpOp::SLt, d.clone(), i64c(0)), i64c(0), d),
    );
    fb.let_(
        "tbl_i",
        Ty::I64,
        select(cmp(CmpOp::SGt, k.clone(), hi.clone()), hi, k),
    )
}

impl Thr {
    /// Output channels (words of the packed output row) for `chans`
    /// accumulators per pixel.
    fn out_words(&self, chans: usize) -> usize {
        Storage::words(chans * self.reps)
    }

    /// Sets, in the packed output row at word address `row` (pointer + word
    /// index of the row's first word), the bit of every output channel that
    /// reads accumulator `acc` of channel `o` (of `chans`) and does not pass.
    fn store_bits(&self, fb: &mut Fb, out: &Expr, row: Expr, acc: Expr, o: &Expr, chans: usize) {
        let acc = match self.table {
            Some(_) => fb.let_("acc", Ty::I32, acc),
            None => acc,
        };
        for_replicas(fb, self.reps, chans, o, |fb, ch| {
            let word = at8(out, add(row.clone(), shru(ch.clone(), i64c(6))));
            let neg = match self.table {
                Some(tb) => tb.negative(fb, acc.clone(), &ch),
                None => self.negative(acc.clone(), &ch),
            };
            let bit = shl(flag64(neg), ch);
            fb.store(word.clone(), or(load(Ty::I64, word), bit));
        });
    }

    /// i8 1 where the accumulator `acc` (i32) of output channel `o` does not
    /// pass.
    fn negative(&self, acc: Expr, o: &Expr) -> Expr {
        let t = match self.t {
            None => i32c(0),
            Some(d) => load(
                Ty::I32,
                at4(
                    &Expr::DataAddr(d),
                    if self.shared { i64c(0) } else { o.clone() },
                ),
            ),
        };
        let ge = cmp(CmpOp::SGe, acc.clone(), t.clone());
        let passed = match self.dir {
            None => ge,
            Some(d) => {
                let dv = load(Ty::I32, at4(&Expr::DataAddr(d), o.clone()));
                select(cmp(CmpOp::Eq, dv, i32c(-1)), cmp(CmpOp::SLe, acc, t), ge)
            }
        };
        cmp(CmpOp::Eq, passed, Expr::Int(0, Ty::I8))
    }
}

/// The threshold of a `threshold` (T = 1, constant thresholds and directions)
/// or `sign` node over an `i32` accumulator (read through `reps` replicas),
/// for fusing into its producer.
fn fused_threshold(
    cx: &mut Cx,
    v: ValueId,
    ins: &[ValueId],
    reps: usize,
) -> Result<Thr, LowerError> {
    match cx.model.graph.node(v).op {
        Op::Sign { .. } => Ok(Thr {
            t: None,
            shared: true,
            dir: None,
            reps,
            table: None,
        }),
        Op::Table { lo } => {
            let t = cx
                .constant(ins[1])
                .cloned()
                .ok_or_else(|| cx.unsupported(v, &[]))?;
            let table = Lookup::new(cx, &t, lo).ok_or_else(|| cx.unsupported(v, &[]))?;
            Ok(Thr {
                t: None,
                shared: true,
                dir: None,
                reps,
                table: Some(table),
            })
        }
        _ => {
            let t = cx
                .constant(ins[1])
                .cloned()
                .ok_or_else(|| cx.unsupported(v, &[]))?;
            let shared = t.dims[0] == 1;
            let tv = t.as_int().ok_or_else(|| cx.unsupported(v, &[]))?.to_vec();
            let td = cx.data_i32("thresholds", &tv);
            let dir = match ins.get(2) {
                None => None,
                Some(&d) => {
                    let dv = cx
                        .constant(d)
                        .and_then(|x| x.as_int().map(|x| x.to_vec()))
                        .ok_or_else(|| cx.unsupported(v, &[]))?;
                    Some(cx.data_i32("dir", &dv))
                }
            };
            Ok(Thr {
                t: Some(td),
                shared,
                dir,
                reps,
                table: None,
            })
        }
    }
}

/// True when `acc` is a binary conv/dense (`b1 x b1` or `b1 x ternary`,
/// constant weights) whose
/// only use is one operand of one node, and not a model output.
fn binary_dot_used_once(cx: &Cx, acc: ValueId, users: &[Vec<ValueId>]) -> bool {
    let g = &cx.model.graph;
    let a = g.node(acc);
    matches!(a.op, Op::Dense | Op::Conv2d(_))
        && cx.model.ty(a.inputs[0]).elem == ElemType::B1
        && matches!(
            cx.model.ty(a.inputs[1]).elem,
            ElemType::B1 | ElemType::Ternary
        )
        && cx.constant(a.inputs[1]).is_some()
        && cx.constant(acc).is_none()
        && users[acc.index()].len() == 1
        && !g.outputs.contains(&acc)
}

/// Can `threshold`/`sign` node `v` be computed inside the binary conv/dense
/// that produces its input? (T = 1 with constant thresholds; the accumulator
/// used by nothing else and not a model output.) The input may also be
/// `replicate(acc)` used only by `v`: the kernel then compares each
/// accumulator against every replica's thresholds. Returns the values the
/// kernel computes without storing them (the accumulator, and the replicate).
pub(crate) fn fusable(cx: &Cx, v: ValueId, users: &[Vec<ValueId>]) -> Vec<ValueId> {
    let g = &cx.model.graph;
    let n = g.node(v);
    let Some(&x) = n.inputs.first() else {
        return vec![];
    };
    let ok_consumer = match n.op {
        Op::Sign { .. } => cx.model.ty(x).elem == ElemType::I32,
        // A batch-norm of the accumulator itself (not through a replicate).
        Op::BatchNorm { .. } => {
            return if cx.model.ty(x).elem == ElemType::I32
                && n.inputs[1..].iter().all(|&i| cx.constant(i).is_some())
                && binary_dot_used_once(cx, x, users)
            {
                vec![x]
            } else {
                vec![]
            };
        }
        Op::Threshold | Op::Table { .. } => {
            cx.model.ty(v).elem == ElemType::B1
                && cx.model.ty(x).elem == ElemType::I32
                && n.inputs[1..].iter().all(|&i| cx.constant(i).is_some())
        }
        _ => false,
    };
    if !ok_consumer || cx.constant(x).is_some() {
        return vec![];
    }
    if binary_dot_used_once(cx, x, users) {
        return vec![x];
    }
    let xn = g.node(x);
    if let Op::Replicate { .. } = xn.op {
        let acc = xn.inputs[0];
        if users[x.index()].len() == 1
            && !g.outputs.contains(&x)
            && binary_dot_used_once(cx, acc, users)
        {
            return vec![acc, x];
        }
    }
    vec![]
}

/// Is `v` a `b1` or `f32` `replicate` that only conv (any groups) / dense
/// kernels read, as their input, or an `i32` / `f32` one that only
/// thresholds read? Those kernels then read its source (with the weights of
/// each replica, see [`conv_b1`], [`conv_f32`]; against each replica's
/// thresholds, see [`threshold_replicated`]), and the replicated tensor is
/// never stored. Returns (source, times).
pub(crate) fn replicate_read_through(
    cx: &Cx,
    v: ValueId,
    users: &[Vec<ValueId>],
) -> Option<(ValueId, usize)> {
    let g = &cx.model.graph;
    let n = g.node(v);
    let Op::Replicate { times } = n.op else {
        return None;
    };
    let elem = cx.model.ty(v).elem;
    if g.outputs.contains(&v) || users[v.index()].is_empty() {
        return None;
    }
    // i32 / f32 values read only by one-threshold `threshold`s (constant
    // parameters): see [`threshold_replicated`].
    if matches!(elem, ElemType::I32 | ElemType::F32)
        && users[v.index()].iter().all(|&u| {
            let un = g.node(u);
            matches!(un.op, Op::Threshold)
                && un.inputs[0] == v
                && cx.model.ty(u).elem == ElemType::B1
                && un.inputs[1..]
                    .iter()
                    .all(|&i| i != v && cx.constant(i).is_some())
        })
    {
        return Some((n.inputs[0], times));
    }
    if !matches!(elem, ElemType::B1 | ElemType::F32) {
        return None;
    }
    let ok = users[v.index()].iter().all(|&u| {
        let un = g.node(u);
        let dot = matches!(un.op, Op::Dense | Op::Conv2d(_));
        if !dot {
            return false;
        }
        let welem = cx.model.ty(un.inputs[1]).elem;
        // The kernels that read through: b1 x b1 and f32 x {f32, b1, ternary}.
        let kernel = match elem {
            ElemType::B1 => matches!(welem, ElemType::B1 | ElemType::Ternary),
            _ => matches!(welem, ElemType::F32 | ElemType::B1 | ElemType::Ternary),
        };
        kernel
            && un.inputs[0] == v
            && un.inputs[1] != v
            && cx.constant(un.inputs[1]).is_some()
            && cx.constant(u).is_none()
    });
    ok.then_some((n.inputs[0], times))
}

/// RepConv weights over `replicate(x, times=b)` (`b1` x and weights) combined
/// across the replicas: per row (output channel and tap) and source channel
/// c the combined weight `V_c = sum_r W[r*C0 + c]` has b's parity and
/// `|V_c| <= b`, and is written as `V_c = sum_j 2^k_j s_j,c` with every
/// `s_j,c` in {-1, +1} (`bits`: packed planes, layout `[row][plane][word]`,
/// bit set for -1). Then `sum_r sum_c W[r*C0 + c] x_c = sum_c V_c x_c =
/// sum_j 2^k_j (C0 - 2 popcount(x xor s_j))`: the kernel reads x once per
/// plane instead of once per replica.
///
/// Signed digits: an odd V with `|V| <= 2^m - 1` is `2^(m-1) sign(V) + V'`
/// with V' odd and `|V'| <= 2^(m-1) - 1` (V > 0: `V - 2^(m-1)` lies in
/// `[1 - 2^(m-1), 2^(m-1) - 1]`; symmetric for V < 0), down to `m = 1`,
/// `V = sign(V)`: m planes with shifts m-1 .. 0. An even V is `1 + (V - 1)`,
/// V - 1 odd with `|V - 1| <= b + 1`: one all-(+1) plane with shift 0 more.
/// Used only when that is fewer planes than replicas (b = 3, 5, 6, 7, ..).
struct ReplicaPlanes {
    bits: Vec<u64>,
    shifts: Vec<u32>,
}

impl ReplicaPlanes {
    /// `w`: rows of `reps * c0` weights (±1); `None` when planes would not
    /// be fewer than `reps`.
    fn new(w: &[i32], rows: usize, reps: usize, c0: usize) -> Option<ReplicaPlanes> {
        let even = reps.is_multiple_of(2);
        let bound = if even { reps + 1 } else { reps };
        let m = (1..32).find(|&m| (1usize << m) > bound)?;
        let np = m + usize::from(even);
        if np >= reps || w.len() != rows * reps * c0 {
            return None;
        }
        let mut shifts: Vec<u32> = (0..m as u32).rev().collect();
        if even {
            shifts.push(0);
        }
        let mut vals = vec![0i32; rows * np * c0];
        for row in 0..rows {
            for c in 0..c0 {
                let mut v: i32 = (0..reps).map(|r| w[(row * reps + r) * c0 + c]).sum();
                if even {
                    vals[(row * np + m) * c0 + c] = 1;
                    v -= 1;
                }
                for (jp, &k) in shifts[..m].iter().enumerate() {
                    let s = if v < 0 { -1 } else { 1 };
                    vals[(row * np + jp) * c0 + c] = s;
                    v -= s << k;
                }
                debug_assert_eq!(v, 0, "signed digits of a combined weight");
            }
        }
        Some(ReplicaPlanes {
            bits: crate::lower::pack_bits(&vals, rows * np, c0),
            shifts,
        })
    }

    /// `sum_j 2^k_j`: the weight of `C0` in each in-bounds tap.
    fn coef_sum(&self) -> usize {
        self.shifts.iter().map(|&k| 1usize << k).sum()
    }
}

/// `popcount(t) << shift` (i64): one plane's term of a [`ReplicaPlanes`] dot.
fn shifted_popcount(t: Expr, shift: u32) -> Expr {
    let n = un(UnOp::Popcnt, t);
    if shift == 0 {
        n
    } else {
        shl(n, i64c(shift as i64))
    }
}

/// True when every group of `cg` channels of a replicated input lies inside
/// one replica of `c0` channels (so it reads a contiguous run of the source).
fn groups_inside_replicas(groups: usize, cg: usize, c0: usize) -> bool {
    c0 > 0 && (0..groups).all(|g| (g * cg) / c0 == ((g + 1) * cg - 1) / c0)
}

/// The buffer a binary conv/dense reads for its input `x`, the number of
/// replicas it holds and the channels of one replica: `x` itself (1 replica),
/// or the source of a read-through `replicate`.
fn dot_input(cx: &mut Cx, x: ValueId) -> Result<(usize, usize, usize), LowerError> {
    match cx.read_through.get(&x).copied() {
        Some((src, times)) => {
            let b = cx.operand(src)?;
            let c = rows_cols(cx.model.ty(src)).1;
            Ok((b, times, c))
        }
        None => {
            let b = cx.operand(x)?;
            let c = rows_cols(cx.model.ty(x)).1;
            Ok((b, 1, c))
        }
    }
}

/// The micro-kernels' epilogue for `threshold`/`sign` node `v` fused into
/// a binary conv/dense with `o` output channels and read without replicas:
/// one threshold per channel (a `sign`: 0; a `threshold`: its constant
/// thresholds, shared or per channel, and directions), or a `table`'s
/// packed rows. `None` keeps the scalar loops.
fn micro_epilogue(cx: &Cx, v: ValueId, o: usize) -> Option<kernel::DotEpilogue> {
    let n = cx.model.graph.node(v);
    let (t, down) = match n.op {
        Op::Sign { .. } => (vec![0; o], vec![false; o]),
        Op::Threshold => {
            let t = cx.constant(n.inputs[1])?;
            let tv = t.as_int()?;
            let t = if t.dims[0] == 1 {
                vec![*tv.first()?; o]
            } else {
                tv.to_vec()
            };
            let down = match n.inputs.get(2) {
                None => vec![false; o],
                Some(&d) => cx.constant(d)?.as_int()?.iter().map(|&x| x == -1).collect(),
            };
            (t, down)
        }
        Op::Table { lo } => {
            let t = cx.constant(n.inputs[1])?;
            let (rows, r) = (t.dims[0], *t.dims.last()?);
            let rows = pack_bits(&t.as_int()?, rows, r);
            return Some(kernel::DotEpilogue::Table(kernel::TableBits {
                lo,
                r,
                rows,
            }));
        }
        _ => return None,
    };
    (t.len() == o && down.len() == o)
        .then_some(kernel::DotEpilogue::Bits(kernel::Thresholds { t, down }))
}

/// The dispatcher of binary dot products: emits node `v` (a dense, or a
/// conv, over a `b1` input or a read-through replicate of one (then with
/// one group), with constant `b1` or ternary weights) with the target's
/// micro-kernel and epilogue `epi`, and returns true; returns false,
/// emitting nothing, when no micro-kernel applies (the caller emits the
/// scalar loops).
fn micro_dot(
    cx: &mut Cx,
    v: ValueId,
    out: usize,
    epi: kernel::DotEpilogue,
) -> Result<bool, LowerError> {
    let node = cx.model.graph.node(v).clone();
    let Some(w) = cx.constant(node.inputs[1]).cloned() else {
        return Ok(false);
    };
    let samples = dot_samples(cx.buf_ty(out));
    let (rows, k, mut problem) = match &node.op {
        Op::Dense => (
            w.dims[0],
            w.dims[1],
            kernel::B1Dot::dense(samples, w.dims[0], w.dims[1], epi),
        ),
        Op::Conv2d(attrs) => {
            let g = geom(cx, v, &node.inputs, attrs);
            let problem = kernel::B1Dot {
                samples,
                h: g.h,
                w: g.w,
                oh: g.oh,
                ow: g.ow,
                o: g.o,
                kh: g.kh,
                kw: g.kw,
                c: g.cg,
                groups: g.groups,
                stride: attrs.stride,
                dilation: attrs.dilation,
                pad_top_left: [attrs.padding[0], attrs.padding[1]],
                pad: attrs.effective_pad(),
                epilogue: epi,
            };
            (g.o * g.kh * g.kw, g.cg, problem)
        }
        _ => return Ok(false),
    };
    let (x, reps, c0) = dot_input(cx, node.inputs[0])?;
    if reps > 1 && problem.groups > 1 {
        return Ok(false);
    }
    let planes = match (w.elem, reps) {
        // Rows of the weights' last axis: the tensor's own words when packed.
        (ElemType::B1, 1) => match w.to_b1_words() {
            Some(rows) => kernel::PlaneWeights::b1(rows.into_owned(), k, Storage::words(k)),
            None => return Ok(false),
        },
        // A plane per replica of c0 bits, or one of the group's k bits.
        (ElemType::B1 | ElemType::Ternary, _) if reps == 1 || reps * c0 == k => {
            let Some(wv) = w.as_int() else {
                return Ok(false);
            };
            let bits = if reps == 1 { k } else { c0 };
            plane_weights(&wv, rows, reps, bits, w.elem == ElemType::Ternary)
        }
        _ => return Ok(false),
    };
    if reps > 1 {
        problem.c = c0;
    }
    Ok(kernel::try_b1_dot(cx, &problem, &planes, x, out))
}

/// The bit planes of `rows` rows of `reps * c0` weights (±1, or -1/0/+1
/// when `ternary`) read against `c0` input channels (`reps` > 1: a
/// read-through `replicate`): one plane per replica, each its slice of the
/// row, with the nonzero positions as masks when `ternary`; or, for ±1
/// weights over 3, 5, 6, 7, .. replicas, the fewer signed-digit planes of
/// [`ReplicaPlanes`].
fn plane_weights(
    w: &[i32],
    rows: usize,
    reps: usize,
    c0: usize,
    ternary: bool,
) -> kernel::PlaneWeights {
    let k = reps * c0;
    let sums = (0..rows)
        .map(|r| w[r * k..][..k].iter().map(|&x| i64::from(x)).sum())
        .collect();
    let combined = (!ternary && reps > 1)
        .then(|| ReplicaPlanes::new(w, rows, reps, c0))
        .flatten();
    if let Some(pl) = combined {
        let coef = (pl.coef_sum() * c0) as i64;
        return kernel::PlaneWeights {
            planes: pl.shifts.len(),
            shifts: pl.shifts,
            sign: pl.bits,
            mask: None,
            terms: vec![coef; rows],
            sums,
        };
    }
    // [row][replica][c0] is the row-major order of `rows * reps` rows of c0.
    let sign = pack_bits(w, rows * reps, c0);
    let (mask, terms) = if ternary {
        let (mask, counts) = ternary_planes(w, rows, k);
        (
            Some(pack_bits(&mask, rows * reps, c0)),
            counts.iter().map(|&n| i64::from(n)).collect(),
        )
    } else {
        (None, vec![k as i64; rows])
    };
    kernel::PlaneWeights {
        planes: reps,
        shifts: vec![0; reps],
        sign,
        mask,
        terms,
        sums,
    }
}

/// The samples of a binary conv/dense output: the batch, or the first
/// dimension of an unbatched one.
fn dot_samples(ty: &TensorType) -> kernel::Samples {
    if ty.is_batched() {
        kernel::Samples::Batch
    } else {
        kernel::Samples::Fixed(ty.dims(1)[0])
    }
}

/// Lowers `v` (a threshold or sign) together with its fused accumulator (its
/// input `x`, or the accumulator that `x` replicates).
fn fused_dot(cx: &mut Cx, v: ValueId, x: ValueId, out: usize) -> R {
    let ins = cx.model.graph.node(v).inputs.clone();
    let (acc, reps) = match cx.model.graph.node(x).op {
        Op::Replicate { times } => (cx.model.graph.node(x).inputs[0], times),
        _ => (x, 1),
    };
    if reps == 1 {
        let o = rows_cols(cx.model.ty(acc)).1;
        if let Some(e) = micro_epilogue(cx, v, o) {
            if micro_dot(cx, acc, out, e)? {
                return Ok(());
            }
        }
    }
    let thr = fused_threshold(cx, v, &ins, reps)?;
    let a = cx.model.graph.node(acc).clone();
    match &a.op {
        Op::Dense => dense_b1(cx, acc, &a.inputs, out, Epilogue::Bits(thr)),
        Op::Conv2d(attrs) => conv_b1(cx, acc, &a.inputs, attrs, out, Epilogue::Bits(thr)),
        _ => Err(LowerError::Internal(
            "fused accumulator is not a binary dot".into(),
        )),
    }
}

/// Dense `f32 x {f32, b1, ternary}`: weights as f32 (±1 / 0 exactly).
fn dense_f32(cx: &mut Cx, v: ValueId, ins: &[ValueId], out: usize) -> R {
    // The target's f32 micro-kernel, if it covers this layer.
    if kernel::try_f32_conv(cx, v, out)? {
        return Ok(());
    }
    let w = cx
        .constant(ins[1])
        .cloned()
        .ok_or_else(|| cx.unsupported(v, &[]))?;
    let (o, k) = (w.dims[0], w.dims[1]);
    let wd = cx.data_f32("dense_w", &f32_values(&w));
    let (x, reps, c0) = dot_input(cx, ins[0])?;
    let ty = cx.buf_ty(out).clone();
    let (mut fb, batch, p) = cx.begin("dense_f32", 2);
    let acc = fb.var("acc", Ty::F32);
    fb.for_("n", i64c(0), leading(&ty, &batch), |fb, n| {
        fb.for_n("o", o, |fb, oi| {
            fb.assign(acc, f32c(0.0));
            // Term k = r*C0 + c reads x0[c] for a read-through replicate: the
            // same values added in the same order.
            let term = |fb: &mut Fb, ki: Expr, ci: Expr| {
                let xv = load(Ty::F32, at4(&p[0], add(mul(n.clone(), c64(c0)), ci)));
                let wv = load_data_f32(wd, add(mul(oi.clone(), c64(k)), ki));
                fb.assign(acc, fadd(var(acc), fmul(xv, wv)));
            };
            if reps == 1 {
                fb.for_n("k", k, |fb, ki| term(fb, ki.clone(), ki));
            } else {
                fb.for_n("r", reps, |fb, r| {
                    fb.for_n("c", c0, |fb, ci| {
                        term(fb, add(mul(r.clone(), c64(c0)), ci.clone()), ci)
                    })
                });
            }
            fb.store(at4(&p[1], add(mul(n.clone(), c64(o)), oi)), var(acc));
        })
    });
    cx.end(fb, vec![x, out]);
    Ok(())
}

/// Dense `b1 x b1`: `K - 2 * popcount(x xor w)` over packed words.
///
/// When the input is a read-through `replicate(x0, times=b)` (K = b*C0), the
/// kernel reads x0's words once per replica against that replica's slice of
/// the weights, packed separately: `sum_r popcount(x0 xor w_r)` counts the
/// same disagreements as `popcount(replicate(x0) xor w)` (tail bits are 0 in
/// both), so the accumulator is the same `K - 2 * popcount`.
fn dense_b1(cx: &mut Cx, v: ValueId, ins: &[ValueId], out: usize, epi: Epilogue) -> R {
    // The target's micro-kernel, if any (a fused threshold has tried it in
    // [`fused_dot`]).
    if let Epilogue::Acc = epi {
        if micro_dot(cx, v, out, kernel::DotEpilogue::Acc)? {
            return Ok(());
        }
    }
    let w = cx
        .constant(ins[1])
        .cloned()
        .ok_or_else(|| cx.unsupported(v, &[]))?;
    let (o, k) = (w.dims[0], w.dims[1]);
    let (x, reps, c0) = dot_input(cx, ins[0])?;
    let words = Storage::words(c0);
    let wv = w.as_int().unwrap_or_default();
    let wv: &[i32] = &wv;
    // Row (o, r) holds replica r's slice w[o, r*C0 .. (r+1)*C0]: the row-major
    // weights seen as `o*reps` rows of C0 channels.
    let planes = (reps > 1 && w.elem == ElemType::B1)
        .then(|| ReplicaPlanes::new(wv, o, reps, c0))
        .flatten();
    let packed = match &planes {
        Some(pl) => pl.bits.clone(),
        None => pack_bits(wv, o * reps, c0),
    };
    let wd = cx.data_u64("dense_w_packed", &packed);
    // Ternary weights: a second plane with the nonzero positions, and per
    // output the count of nonzero weights (which replaces K).
    let tern = (w.elem == ElemType::Ternary).then(|| {
        let (mask, counts) = ternary_planes(wv, o, k);
        let m = pack_bits(&mask, o * reps, c0);
        (
            cx.data_u64("dense_w_nonzero", &m),
            cx.data_i32("dense_w_count", &counts),
        )
    });
    let ty = cx.buf_ty(out).clone();
    let (mut fb, batch, p) = cx.begin("dense_b1", 2);
    let acc = fb.var("pc", Ty::I64);
    let owords = match epi {
        Epilogue::Bits(thr) => thr.out_words(o),
        Epilogue::Acc | Epilogue::Affine(_) => Storage::words(o),
    };
    fb.for_("n", i64c(0), leading(&ty, &batch), |fb, n| {
        if let Epilogue::Bits(_) = epi {
            fb.for_n("w", owords, |fb, wi| {
                fb.store(at8(&p[1], add(mul(n.clone(), c64(owords)), wi)), i64c(0))
            });
        }
        fb.for_n("o", o, |fb, oi| {
            fb.assign(acc, i64c(0));
            let word = |fb: &mut Fb, row: Expr, wi: Expr, shift: u32| {
                let xw = load(
                    Ty::I64,
                    at8(&p[0], add(mul(n.clone(), c64(words)), wi.clone())),
                );
                let wi = add(mul(row, c64(words)), wi);
                let ww = load(Ty::I64, at8(&Expr::DataAddr(wd), wi.clone()));
                let mut t = xor(xw, ww);
                if let Some((nz, _)) = tern {
                    t = and(t, load(Ty::I64, at8(&Expr::DataAddr(nz), wi)));
                }
                fb.assign(acc, add(var(acc), shifted_popcount(t, shift)));
            };
            if let Some(pl) = &planes {
                // acc = sum_j 2^k_j popcount(x xor plane_j).
                let np = pl.shifts.len();
                for (jp, &sh) in pl.shifts.iter().enumerate() {
                    let row = add(mul(oi.clone(), c64(np)), c64(jp));
                    fb.for_n("w", words, |fb, wi| word(fb, row.clone(), wi, sh));
                }
            } else if reps == 1 {
                fb.for_n("w", words, |fb, wi| word(fb, oi.clone(), wi, 0));
            } else {
                fb.for_n("r", reps, |fb, r| {
                    let row = add(mul(oi.clone(), c64(reps)), r);
                    fb.for_n("w", words, |fb, wi| word(fb, row.clone(), wi, 0));
                });
            }
            let terms = match (tern, &planes) {
                (Some((_, cnt)), _) => to_i64(load(Ty::I32, at4(&Expr::DataAddr(cnt), oi.clone()))),
                (None, Some(pl)) => c64(pl.coef_sum() * c0),
                (None, None) => c64(k),
            };
            let y = to_i32(sub(terms, mul(i64c(2), var(acc))));
            match epi {
                Epilogue::Acc => fb.store(at4(&p[1], add(mul(n.clone(), c64(o)), oi)), y),
                Epilogue::Affine(bn) => fb.store(
                    at4(&p[1], add(mul(n.clone(), c64(o)), oi.clone())),
                    bn.apply(i2f(y), oi),
                ),
                Epilogue::Bits(thr) => {
                    thr.store_bits(fb, &p[1], mul(n.clone(), c64(owords)), y, &oi, o)
                }
            }
        })
    });
    cx.end(fb, vec![x, out]);
    Ok(())
}

/// For ternary weights `[rows, k]` (row-major): -1 where a weight is nonzero
/// (packed, this is the plane of nonzero positions) and +1 elsewhere, and per
/// row the number of nonzero weights.
fn ternary_planes(w: &[i32], rows: usize, k: usize) -> (Vec<i32>, Vec<i32>) {
    let mask = w.iter().map(|&t| if t != 0 { -1 } else { 1 }).collect();
    let counts = (0..rows)
        .map(|r| w[r * k..(r + 1) * k].iter().filter(|&&t| t != 0).count() as i32)
        .collect();
    (mask, counts)
}

/// Geometry shared by the convolution kernels.
struct Geom {
    h: usize,
    w: usize,
    c: usize,
    oh: usize,
    ow: usize,
    o: usize,
    kh: usize,
    kw: usize,
    cg: usize,
    og: usize,
    groups: usize,
    attrs: bnnc_ir::Conv2dAttrs,
}

fn geom(cx: &Cx, v: ValueId, ins: &[ValueId], attrs: &bnnc_ir::Conv2dAttrs) -> Geom {
    let xd = cx.model.ty(ins[0]).dims(1);
    let wd = cx.model.ty(ins[1]).dims(1);
    let od = cx.model.ty(v).dims(1);
    Geom {
        h: xd[1],
        w: xd[2],
        c: xd[3],
        oh: od[1],
        ow: od[2],
        o: wd[0],
        kh: wd[1],
        kw: wd[2],
        cg: wd[3],
        og: wd[0] / attrs.groups,
        groups: attrs.groups,
        attrs: attrs.clone(),
    }
}

/// Loops n, oy, ox, group, o-in-group; calls `pixel(fb, pixel index)` once
/// per output pixel, then `body(fb, n, oy, ox, g, o)` for each output element.
fn conv_loops(
    fb: &mut Fb,
    g: &Geom,
    ns: Expr,
    pixel: impl Fn(&mut Fb, Expr),
    body: impl Fn(&mut Fb, &Expr, &Expr, &Expr, &Expr, &Expr),
) {
    fb.for_("n", i64c(0), ns, |fb, n| {
        fb.for_n("oy", g.oh, |fb, oy| {
            fb.for_n("ox", g.ow, |fb, ox| {
                pixel(
                    fb,
                    add(
                        mul(add(mul(n.clone(), c64(g.oh)), oy.clone()), c64(g.ow)),
                        ox.clone(),
                    ),
                );
                fb.for_n("g", g.groups, |fb, gi| {
                    fb.for_n("og", g.og, |fb, oo| {
                        let o = fb.let_("o", Ty::I64, add(mul(gi.clone(), c64(g.og)), oo));
                        body(fb, &n, &oy, &ox, &gi, &o);
                    })
                })
            })
        })
    });
}

fn conv_f32(
    cx: &mut Cx,
    v: ValueId,
    ins: &[ValueId],
    attrs: &bnnc_ir::Conv2dAttrs,
    out: usize,
) -> R {
    // The target's f32 micro-kernel, if it covers this convolution.
    if kernel::try_f32_conv(cx, v, out)? {
        return Ok(());
    }
    let w = cx
        .constant(ins[1])
        .cloned()
        .ok_or_else(|| cx.unsupported(v, &[]))?;
    let g = geom(cx, v, ins, attrs);
    let wd = cx.data_f32("conv_w", &f32_values(&w));
    let (x, reps, c0) = dot_input(cx, ins[0])?;
    // Grouped over a read-through replicate: channel g*Cg + c of the
    // replicated input is channel (g*Cg + c) mod C0 of the source, from a
    // table.
    let src_chan = (reps > 1 && g.groups != 1).then(|| {
        let t: Vec<i32> = (0..g.groups * g.cg).map(|k| (k % c0) as i32).collect();
        cx.data_i32("conv_src_channel", &t)
    });
    let ty = cx.buf_ty(out).clone();
    let (mut fb, batch, p) = cx.begin("conv2d_f32", 2);
    let acc = fb.var("acc", Ty::F32);
    conv_loops(
        &mut fb,
        &g,
        leading(&ty, &batch),
        |_, _| {},
        |fb, n, oy, ox, gi, o| {
            fb.assign(acc, f32c(0.0));
            fb.for_n("i", g.kh, |fb, i| {
                let iy = fb.let_(
                    "iy",
                    Ty::I64,
                    tap_pos(
                        oy,
                        &i,
                        g.attrs.stride[0],
                        g.attrs.dilation[0],
                        g.attrs.padding[0],
                    ),
                );
                fb.if_(in_range(iy.clone(), g.h), |fb| {
                    fb.for_n("j", g.kw, |fb, j| {
                        let ix = fb.let_(
                            "ix",
                            Ty::I64,
                            tap_pos(
                                ox,
                                &j,
                                g.attrs.stride[1],
                                g.attrs.dilation[1],
                                g.attrs.padding[1],
                            ),
                        );
                        fb.if_(in_range(ix.clone(), g.w), |fb| {
                            let pix = add(
                                mul(add(mul(n.clone(), c64(g.h)), iy.clone()), c64(g.w)),
                                ix.clone(),
                            );
                            let wtap = mul(
                                add(
                                    mul(add(mul(o.clone(), c64(g.kh)), i.clone()), c64(g.kw)),
                                    j.clone(),
                                ),
                                c64(g.cg),
                            );
                            // Adds x[xc] * w[.., wc] of this tap.
                            let term = |fb: &mut Fb, xc: Expr, wc: Expr| {
                                fb.assign(
                                    acc,
                                    fadd(
                                        var(acc),
                                        fmul(
                                            load(Ty::F32, at4(&p[0], xc)),
                                            load_data_f32(wd, add(wtap.clone(), wc)),
                                        ),
                                    ),
                                );
                            };
                            if let Some(tab) = src_chan {
                                fb.for_n("c", g.cg, |fb, c| {
                                    let k = add(mul(gi.clone(), c64(g.cg)), c.clone());
                                    let sc = to_i64(load(Ty::I32, at4(&Expr::DataAddr(tab), k)));
                                    term(fb, add(mul(pix.clone(), c64(c0)), sc), c)
                                })
                            } else if reps == 1 {
                                fb.for_n("c", g.cg, |fb, c| {
                                    let xi = add(
                                        add(mul(pix.clone(), c64(g.c)), mul(gi.clone(), c64(g.cg))),
                                        c.clone(),
                                    );
                                    term(fb, xi, c)
                                })
                            } else {
                                // Channel r*C0 + c of a read-through replicate is
                                // channel c of its source: the same products
                                // added in the same order.
                                fb.for_n("r", reps, |fb, r| {
                                    fb.for_n("c", c0, |fb, c| {
                                        let xi = add(mul(pix.clone(), c64(c0)), c.clone());
                                        term(fb, xi, add(mul(r.clone(), c64(c0)), c))
                                    })
                                })
                            }
                        })
                    })
                })
            });
            let oi = add(
                mul(
                    add(
                        mul(add(mul(n.clone(), c64(g.oh)), oy.clone()), c64(g.ow)),
                        ox.clone(),
                    ),
                    c64(g.o),
                ),
                o.clone(),
            );
            fb.store(at4(&p[1], oi), var(acc));
        },
    );
    cx.end(fb, vec![x, out]);
    Ok(())
}

/// Binary convolution on packed words. Weights are laid out per (o, i, j) over
/// the input's full word width, bits at the channel positions of o's group, so
/// `x xor w` lines up; with groups > 1 a per-group mask keeps only the group's
/// channels. Each in-bounds tap adds `Cg - 2 * popcount`; each padded tap adds
/// `pad * sum_c w[o,i,j,c]` from a table (nothing for `pad_value=0`).
///
/// A read-through `replicate(x0, times=b)` input (one group, C = b*C0) is
/// read as x0: each tap's weights are packed per replica over C0 channels
/// (layout `[tap][replica][word]`), and each replica's words are xor'ed with
/// the same x0 words. The popcounts add up to the popcount over the
/// replicated row (tail bits are 0 in both), so the tap still adds
/// `Cg - 2 * popcount` with Cg = C, and the padded-tap table is unchanged.
/// With 3, 5, 6 or more replicas the replicas' weights are combined into
/// fewer signed-digit planes ([`ReplicaPlanes`]) and x is read once per plane.
fn conv_b1(
    cx: &mut Cx,
    v: ValueId,
    ins: &[ValueId],
    attrs: &bnnc_ir::Conv2dAttrs,
    out: usize,
    epi: Epilogue,
) -> R {
    // The target's micro-kernel, if any (a fused threshold has tried it in
    // [`fused_dot`]).
    if let Epilogue::Acc = epi {
        if micro_dot(cx, v, out, kernel::DotEpilogue::Acc)? {
            return Ok(());
        }
    }
    let w = cx
        .constant(ins[1])
        .cloned()
        .ok_or_else(|| cx.unsupported(v, &[]))?;
    let g = geom(cx, v, ins, attrs);
    let wv = w.as_int().unwrap_or_default();
    let (x, reps, c0) = dot_input(cx, ins[0])?;
    // A grouped conv over a read-through replicate. When each group's
    // channels lie inside one replica, group g reads source channels from
    // `(g * Cg) mod C0`: the grouped kernel over the source with those
    // offsets. Otherwise (`straddle`) the weights keep the per-replica layout
    // and a mask per (group, replica, word) keeps the group's channels of
    // each replica.
    let grouped_rt = reps > 1 && g.groups != 1 && groups_inside_replicas(g.groups, g.cg, c0);
    let straddle = reps > 1 && g.groups != 1 && !grouped_rt;
    let start = |grp: usize| {
        if grouped_rt {
            (grp * g.cg) % c0
        } else {
            grp * g.cg
        }
    };
    let reps = if grouped_rt { 1 } else { reps };
    let words = Storage::words(c0);
    let tern = w.elem == ElemType::Ternary;
    let mut wfull = vec![0u64; g.o * g.kh * g.kw * reps * words];
    // Ternary weights: the nonzero positions (same layout) and per tap the
    // number of nonzero weights, which replaces Cg.
    let mut nzfull = vec![0u64; if tern { wfull.len() } else { 0 }];
    let mut cnttab = vec![0i32; if tern { g.o * g.kh * g.kw } else { 0 }];
    let mut padtab = vec![0i32; g.o * g.kh * g.kw];
    let pad = attrs.effective_pad();
    for o in 0..g.o {
        let grp = o / g.og;
        for i in 0..g.kh {
            for j in 0..g.kw {
                let tap = (o * g.kh + i) * g.kw + j;
                let mut sum = 0i32;
                for c in 0..g.cg {
                    let val = wv[tap * g.cg + c];
                    sum += val;
                    // Channel `full` of the (replicated) input is channel `ch`
                    // of replica `r` of the source.
                    let full = start(grp) + c;
                    let (r, ch) = (full / c0, full % c0);
                    let at = (tap * reps + r) * words + ch / 64;
                    if val < 0 {
                        wfull[at] |= 1u64 << (ch % 64);
                    }
                    if tern && val != 0 {
                        nzfull[at] |= 1u64 << (ch % 64);
                        cnttab[tap] += 1;
                    }
                }
                padtab[tap] = pad.value() * sum;
            }
        }
    }
    // RepConv with b >= 3 replicas: the replicas' weights combined into
    // signed-digit planes (fewer than b), see [`ReplicaPlanes`].
    let planes = (reps > 1 && !tern && g.groups == 1)
        .then(|| ReplicaPlanes::new(&wv, g.o * g.kh * g.kw, reps, c0))
        .flatten();
    let rows_per_tap = match &planes {
        Some(pl) => {
            wfull = pl.bits.clone();
            pl.shifts.len()
        }
        None => reps,
    };
    // Rows of masks: one per group, or per (group, replica) for `straddle`
    // (channel ch of replica r is channel r*C0 + ch of the group's range).
    let mask_reps = if straddle { reps } else { 1 };
    let masks: Vec<u64> = (0..g.groups * mask_reps)
        .flat_map(|row| {
            let (grp, r) = (row / mask_reps, row % mask_reps);
            (0..words).map(move |wi| {
                let mut m = 0u64;
                for b in 0..64 {
                    let ch = wi * 64 + b + if straddle { r * c0 } else { 0 };
                    if wi * 64 + b < c0 && ch >= start(grp) && ch < start(grp) + g.cg {
                        m |= 1 << b;
                    }
                }
                m
            })
        })
        .collect();
    // Word range of each group's channels.
    let lo: Vec<usize> = (0..g.groups).map(|grp| start(grp) / 64).collect();
    let hi: Vec<usize> = (0..g.groups)
        .map(|grp| (start(grp) + g.cg - 1) / 64 + 1)
        .collect();
    let wd = cx.data_u64("conv_w_packed", &wfull);
    let pd = (pad != PadValue::Zero).then(|| cx.data_i32("conv_pad", &padtab));
    // The nonzero plane keeps only the group's channels too.
    let md = (g.groups > 1 && !tern).then(|| cx.data_u64("conv_group_mask", &masks));
    let tern = tern.then(|| {
        (
            cx.data_u64("conv_w_nonzero", &nzfull),
            cx.data_i32("conv_w_count", &cnttab),
        )
    });
    let (lod, hid) = if g.groups > 1 {
        let l: Vec<i32> = lo.iter().map(|&x| x as i32).collect();
        let h: Vec<i32> = hi.iter().map(|&x| x as i32).collect();
        (
            Some(cx.data_i32("conv_group_lo", &l)),
            Some(cx.data_i32("conv_group_hi", &h)),
        )
    } else {
        (None, None)
    };
    let ty = cx.buf_ty(out).clone();
    let (mut fb, batch, p) = cx.begin("conv2d_b1", 2);
    let acc = fb.var("acc", Ty::I64);
    let pc = fb.var("pc", Ty::I64);
    let owords = match epi {
        Epilogue::Bits(thr) => thr.out_words(g.o),
        Epilogue::Acc | Epilogue::Affine(_) => Storage::words(g.o),
    };
    let p1 = p[1].clone();
    let pixel = move |fb: &mut Fb, pix: Expr| {
        if let Epilogue::Bits(_) = epi {
            fb.for_n("w", owords, |fb, wi| {
                fb.store(at8(&p1, add(mul(pix.clone(), c64(owords)), wi)), i64c(0))
            });
        }
    };
    let body = |fb: &mut Fb, n: &Expr, oy: &Expr, ox: &Expr, gi: &Expr, o: &Expr| {
        fb.assign(acc, i64c(0));
        let (wlo, whi) = match (lod, hid) {
            (Some(l), Some(h)) => (
                fb.let_(
                    "wlo",
                    Ty::I64,
                    to_i64(load(Ty::I32, at4(&Expr::DataAddr(l), gi.clone()))),
                ),
                fb.let_(
                    "whi",
                    Ty::I64,
                    to_i64(load(Ty::I32, at4(&Expr::DataAddr(h), gi.clone()))),
                ),
            ),
            _ => (i64c(0), c64(words)),
        };
        fb.for_n("i", g.kh, |fb, i| {
            let iy = fb.let_(
                "iy",
                Ty::I64,
                tap_pos(
                    oy,
                    &i,
                    g.attrs.stride[0],
                    g.attrs.dilation[0],
                    g.attrs.padding[0],
                ),
            );
            fb.for_n("j", g.kw, |fb, j| {
                let ix = fb.let_(
                    "ix",
                    Ty::I64,
                    tap_pos(
                        ox,
                        &j,
                        g.attrs.stride[1],
                        g.attrs.dilation[1],
                        g.attrs.padding[1],
                    ),
                );
                let tap = fb.let_(
                    "tap",
                    Ty::I64,
                    add(
                        mul(add(mul(o.clone(), c64(g.kh)), i.clone()), c64(g.kw)),
                        j.clone(),
                    ),
                );
                let inside = and(in_range(iy.clone(), g.h), in_range(ix.clone(), g.w));
                fb.if_else(
                    inside,
                    |fb| {
                        fb.assign(pc, i64c(0));
                        let pix = add(
                            mul(add(mul(n.clone(), c64(g.h)), iy.clone()), c64(g.w)),
                            ix.clone(),
                        );
                        let word = |fb: &mut Fb, row: Expr, wi: Expr, shift: u32, mrow: Expr| {
                            let xw = load(
                                Ty::I64,
                                at8(&p[0], add(mul(pix.clone(), c64(words)), wi.clone())),
                            );
                            let at = add(mul(row, c64(words)), wi.clone());
                            let ww = load(Ty::I64, at8(&Expr::DataAddr(wd), at.clone()));
                            let mut t = xor(xw, ww);
                            if let Some((nz, _)) = tern {
                                t = and(t, load(Ty::I64, at8(&Expr::DataAddr(nz), at)));
                            }
                            if let Some(m) = md {
                                t = and(
                                    t,
                                    load(
                                        Ty::I64,
                                        at8(&Expr::DataAddr(m), add(mul(mrow, c64(words)), wi)),
                                    ),
                                );
                            }
                            fb.assign(pc, add(var(pc), shifted_popcount(t, shift)));
                        };
                        if let Some(pl) = &planes {
                            // pc = sum_j 2^k_j popcount(x xor plane_j).
                            for (jp, &k) in pl.shifts.iter().enumerate() {
                                let row = add(mul(tap.clone(), c64(rows_per_tap)), c64(jp));
                                fb.for_n("w", words, |fb, wi| {
                                    word(fb, row.clone(), wi, k, gi.clone())
                                });
                            }
                        } else if reps > 1 {
                            fb.for_n("r", reps, |fb, r| {
                                let row = add(mul(tap.clone(), c64(reps)), r.clone());
                                let mrow = add(mul(gi.clone(), c64(mask_reps)), r);
                                fb.for_n("w", words, |fb, wi| {
                                    word(fb, row.clone(), wi, 0, mrow.clone())
                                });
                            });
                        } else if g.groups == 1 {
                            fb.for_n("w", words, |fb, wi| {
                                word(fb, tap.clone(), wi, 0, gi.clone())
                            });
                        } else {
                            fb.for_("w", wlo.clone(), whi.clone(), |fb, wi| {
                                word(fb, tap.clone(), wi, 0, gi.clone())
                            });
                        }
                        let terms = match (tern, &planes) {
                            (Some((_, cnt)), _) => {
                                to_i64(load(Ty::I32, at4(&Expr::DataAddr(cnt), tap.clone())))
                            }
                            (None, Some(pl)) => c64(pl.coef_sum() * c0),
                            (None, None) => c64(g.cg),
                        };
                        fb.assign(acc, add(var(acc), sub(terms, mul(i64c(2), var(pc)))));
                    },
                    |fb| {
                        if let Some(d) = pd {
                            let padv = to_i64(load(Ty::I32, at4(&Expr::DataAddr(d), tap.clone())));
                            fb.assign(acc, add(var(acc), padv));
                        }
                    },
                );
            })
        });
        let oi = add(
            mul(
                add(
                    mul(add(mul(n.clone(), c64(g.oh)), oy.clone()), c64(g.ow)),
                    ox.clone(),
                ),
                c64(g.o),
            ),
            o.clone(),
        );
        match epi {
            Epilogue::Acc => fb.store(at4(&p[1], oi), to_i32(var(acc))),
            Epilogue::Affine(bn) => {
                fb.store(at4(&p[1], oi), bn.apply(i2f(to_i32(var(acc))), o.clone()))
            }
            Epilogue::Bits(thr) => {
                let pix = add(
                    mul(add(mul(n.clone(), c64(g.oh)), oy.clone()), c64(g.ow)),
                    ox.clone(),
                );
                thr.store_bits(fb, &p[1], mul(pix, c64(owords)), to_i32(var(acc)), o, g.o);
            }
        }
    };
    conv_loops(&mut fb, &g, leading(&ty, &batch), pixel, body);
    cx.end(fb, vec![x, out]);
    Ok(())
}

/// Window positions of a pool: loops i, j with bounds checks, calling
/// `visit(fb, element index)` for each in-bounds position in row-major order.
fn pool_window(
    fb: &mut Fb,
    a: &bnnc_ir::PoolAttrs,
    dims: (usize, usize, usize),
    at: [&Expr; 4],
    visit: &dyn Fn(&mut Fb, Expr),
) {
    let (h, w, ch) = dims;
    let [n, oy, ox, c] = at;
    fb.for_n("i", a.kernel[0], |fb, i| {
        let iy = fb.let_("iy", Ty::I64, tap_pos(oy, &i, a.stride[0], 1, a.padding[0]));
        fb.if_(in_range(iy.clone(), h), |fb| {
            fb.for_n("j", a.kernel[1], |fb, j| {
                let ix = fb.let_("ix", Ty::I64, tap_pos(ox, &j, a.stride[1], 1, a.padding[1]));
                fb.if_(in_range(ix.clone(), w), |fb| {
                    let pix = add(mul(add(mul(n.clone(), c64(h)), iy.clone()), c64(w)), ix);
                    visit(fb, add(mul(pix, c64(ch)), c.clone()));
                })
            })
        })
    });
}

/// `maxpool2d` (f32/i32, keeping the first maximum) and `avgpool2d` (f32 mean).
fn pool(
    cx: &mut Cx,
    v: ValueId,
    x: ValueId,
    a: &bnnc_ir::PoolAttrs,
    out: usize,
    is_max: bool,
) -> R {
    let src = cx.numeric(x)?;
    let st = cx.buf_storage(src);
    let xd = cx.model.ty(x).dims(1);
    let od = cx.model.ty(v).dims(1);
    let (h, w, c, oh, ow) = (xd[1], xd[2], xd[3], od[1], od[2]);
    let ty = cx.buf_ty(out).clone();
    let float = cx.buf_storage(out) == Storage::F32;
    let (mut fb, batch, p) = cx.begin(if is_max { "maxpool2d" } else { "avgpool2d" }, 2);
    let vty = if float { Ty::F32 } else { Ty::I32 };
    let m = fb.var("m", vty);
    let have = fb.var("have", Ty::I8);
    let cnt = fb.var("count", Ty::I32);
    let p0 = p[0].clone();
    fb.for_("n", i64c(0), leading(&ty, &batch), |fb, n| {
        fb.for_n("oy", oh, |fb, oy| {
            fb.for_n("ox", ow, |fb, ox| {
                fb.for_n("c", c, |fb, ch| {
                    fb.assign(m, if float { f32c(0.0) } else { i32c(0) });
                    fb.assign(have, Expr::Int(0, Ty::I8));
                    fb.assign(cnt, i32c(0));
                    let visit = |fb: &mut Fb, idx: Expr| {
                        let val = if float {
                            load_f32(st, &p0, idx)
                        } else {
                            load(Ty::I32, at4(&p0, idx))
                        };
                        let val = fb.let_("v", vty, val);
                        if is_max {
                            let gt = cmp(
                                if float { CmpOp::FGt } else { CmpOp::SGt },
                                val.clone(),
                                var(m),
                            );
                            fb.assign(m, select(var(have), select(gt, val.clone(), var(m)), val));
                            fb.assign(have, Expr::Int(1, Ty::I8));
                        } else {
                            fb.assign(m, fadd(var(m), val));
                            fb.assign(cnt, add(var(cnt), i32c(1)));
                        }
                    };
                    pool_window(fb, a, (h, w, c), [&n, &oy, &ox, &ch], &visit);
                    let y = if is_max {
                        var(m)
                    } else {
                        fdiv(var(m), i2f(var(cnt)))
                    };
                    let oi = add(
                        mul(
                            add(
                                mul(add(mul(n.clone(), c64(oh)), oy.clone()), c64(ow)),
                                ox.clone(),
                            ),
                            c64(c),
                        ),
                        ch,
                    );
                    fb.store(at4(&p[1], oi), y);
                })
            })
        })
    });
    cx.end(fb, vec![src, out]);
    Ok(())
}

/// Binary maxpool on packed words: the max of ±1 values is +1 (bit 0) if any
/// is +1, so the result is the AND of the window's words.
fn maxpool_b1(cx: &mut Cx, v: ValueId, x: ValueId, a: &bnnc_ir::PoolAttrs, out: usize) -> R {
    let src = cx.operand(x)?;
    let xd = cx.model.ty(x).dims(1);
    let od = cx.model.ty(v).dims(1);
    let (h, w, c, oh, ow) = (xd[1], xd[2], xd[3], od[1], od[2]);
    let words = Storage::words(c);
    let ty = cx.buf_ty(out).clone();
    let (mut fb, batch, p) = cx.begin("maxpool2d_b1", 2);
    let m = fb.var("m", Ty::I64);
    let p0 = p[0].clone();
    fb.for_("n", i64c(0), leading(&ty, &batch), |fb, n| {
        fb.for_n("oy", oh, |fb, oy| {
            fb.for_n("ox", ow, |fb, ox| {
                fb.for_n("w", words, |fb, wi| {
                    fb.assign(m, i64c(-1));
                    let visit = |fb: &mut Fb, idx: Expr| {
                        fb.assign(m, and(var(m), load(Ty::I64, at8(&p0, idx))));
                    };
                    pool_window(fb, a, (h, w, words), [&n, &oy, &ox, &wi], &visit);
                    let oi = add(
                        mul(
                            add(
                                mul(add(mul(n.clone(), c64(oh)), oy.clone()), c64(ow)),
                                ox.clone(),
                            ),
                            c64(words),
                        ),
                        wi,
                    );
                    fb.store(at8(&p[1], oi), var(m));
                })
            })
        })
    });
    cx.end(fb, vec![src, out]);
    Ok(())
}

fn global_avgpool(cx: &mut Cx, _v: ValueId, x: ValueId, out: usize) -> R {
    let src = cx.numeric(x)?;
    let st = cx.buf_storage(src);
    let xd = cx.model.ty(x).dims(1);
    let (h, w, c) = (xd[1], xd[2], xd[3]);
    let ty = cx.buf_ty(out).clone();
    let (mut fb, batch, p) = cx.begin("global_avgpool", 2);
    let s = fb.var("sum", Ty::F32);
    fb.for_("n", i64c(0), leading(&ty, &batch), |fb, n| {
        fb.for_n("c", c, |fb, ch| {
            fb.assign(s, f32c(0.0));
            fb.for_n("y", h, |fb, y| {
                fb.for_n("x", w, |fb, xx| {
                    let pix = add(mul(add(mul(n.clone(), c64(h)), y.clone()), c64(w)), xx);
                    fb.assign(
                        s,
                        fadd(
                            var(s),
                            load_f32(st, &p[0], add(mul(pix, c64(c)), ch.clone())),
                        ),
                    );
                })
            });
            fb.store(
                at4(&p[1], add(mul(n.clone(), c64(c)), ch)),
                fdiv(var(s), f32c((h * w) as f32)),
            );
        })
    });
    cx.end(fb, vec![src, out]);
    Ok(())
}

/// How one operand's channels land in the output of a channel move.
#[derive(Clone, Copy)]
enum ChannelMap {
    /// Channel c goes to `offset + c` (concat along channels).
    Offset(usize),
    /// Channel `k*m + i` goes to `i*g + k` (channel_shuffle, C = g*m).
    Shuffle { g: usize, m: usize },
    /// Channel c goes to `r*C0 + c` for every replica r < times (replicate).
    Replicate { times: usize },
}

/// `concat` along channels, `channel_shuffle` and `replicate` of packed `b1`
/// values, bit by bit on the packed words (no unpacked copy): each output row
/// is cleared, then every source bit is or'ed in at its output channel.
/// `None` for other movements (they go through i32).
fn channel_move_b1(cx: &mut Cx, op: &Op, ins: &[ValueId], out: usize) -> Option<R> {
    let oty = cx.buf_ty(out).clone();
    let rank = oty.rank() as i64;
    let chans = |cx: &Cx, x: ValueId| rows_cols(cx.model.ty(x)).1;
    let maps: Vec<(usize, ChannelMap)> = match op {
        Op::Concat { axis } if (if *axis < 0 { axis + rank } else { *axis }) == rank - 1 => {
            let mut off = 0;
            ins.iter()
                .map(|&x| {
                    let c = chans(cx, x);
                    off += c;
                    (c, ChannelMap::Offset(off - c))
                })
                .collect()
        }
        Op::ChannelShuffle { groups } => {
            let c = chans(cx, ins[0]);
            vec![(
                c,
                ChannelMap::Shuffle {
                    g: *groups,
                    m: c / groups,
                },
            )]
        }
        Op::Replicate { times } => {
            vec![(chans(cx, ins[0]), ChannelMap::Replicate { times: *times })]
        }
        _ => return None,
    };
    Some((|| {
        let srcs = ins
            .iter()
            .map(|&x| cx.operand(x))
            .collect::<Result<Vec<_>, _>>()?;
        let (rows, c) = rows_cols(&oty);
        let owords = Storage::words(c);
        let k = srcs.len();
        let (mut fb, batch, p) = cx.begin("move_b1", k + 1);
        fb.for_("n", i64c(0), samples(&oty, &batch), |fb, n| {
            fb.for_n("row", rows, |fb, r| {
                let row = fb.let_("row", Ty::I64, add(mul(n.clone(), c64(rows)), r));
                fb.for_n("w", owords, |fb, w| {
                    fb.store(at8(&p[k], add(mul(row.clone(), c64(owords)), w)), i64c(0))
                });
                for (i, &(ci, map)) in maps.iter().enumerate() {
                    let wi = Storage::words(ci);
                    // Or's source channel `q` in at output channel `ch`.
                    let put = |fb: &mut Fb, q: Expr, ch: Expr| {
                        let sw = load(
                            Ty::I64,
                            at8(
                                &p[i],
                                add(mul(row.clone(), c64(wi)), shru(q.clone(), i64c(6))),
                            ),
                        );
                        let bit = and(shru(sw, q), i64c(1));
                        let word = at8(
                            &p[k],
                            add(mul(row.clone(), c64(owords)), shru(ch.clone(), i64c(6))),
                        );
                        fb.store(word.clone(), or(load(Ty::I64, word), shl(bit, ch)));
                    };
                    match map {
                        ChannelMap::Offset(off) => fb.for_n("c", ci, |fb, q| {
                            put(fb, q.clone(), add(q, c64(off)));
                        }),
                        ChannelMap::Shuffle { g, m } => fb.for_n("k", g, |fb, kk| {
                            fb.for_n("i", m, |fb, ii| {
                                let q = add(mul(kk.clone(), c64(m)), ii.clone());
                                put(fb, q, add(mul(ii, c64(g)), kk.clone()));
                            })
                        }),
                        ChannelMap::Replicate { times } => fb.for_n("r", times, |fb, rr| {
                            fb.for_n("c", ci, |fb, q| {
                                put(fb, q.clone(), add(mul(rr.clone(), c64(ci)), q));
                            })
                        }),
                    }
                }
            })
        });
        let mut args = srcs;
        args.push(out);
        cx.end(fb, args);
        Ok(())
    })())
}

/// `reshape` / `flatten` of a `b1` tensor whose packed words are the same
/// before and after: a copy of the words. That holds when the channel count
/// (last dimension) is unchanged, so every packed row is the same row, or
/// when both channel counts are multiples of 64, so rows have no tail bits
/// and the words of a sample are its bits in row-major order either way.
/// `None` for any other op or layout (the caller then moves unpacked values).
fn reshape_b1_words(cx: &mut Cx, v: ValueId, op: &Op, ins: &[ValueId], out: usize) -> Option<R> {
    if !matches!(op, Op::Flatten | Op::Reshape { .. }) {
        return None;
    }
    let cin = rows_cols(cx.model.ty(ins[0])).1;
    let cout = rows_cols(cx.buf_ty(out)).1;
    if cin != cout && !(cin.is_multiple_of(64) && cout.is_multiple_of(64)) {
        return None;
    }
    Some(cx.operand(ins[0]).map(|src| copy(cx, v, src, out)))
}

/// Data movement on numeric (f32 / i32) buffers: concat, replicate,
/// channel_shuffle, flatten, reshape. `out` has 4-byte elements.
fn movement(cx: &mut Cx, v: ValueId, op: &Op, ins: &[ValueId], out: usize) -> R {
    let oty = cx.buf_ty(out).clone();
    match op {
        Op::Flatten | Op::Reshape { .. } => {
            let src = cx.numeric(ins[0])?;
            copy(cx, v, src, out);
        }
        Op::Replicate { times } => {
            let src = cx.numeric(ins[0])?;
            let (rows, c) = rows_cols(cx.buf_ty(src));
            let times = *times;
            let (mut fb, batch, p) = cx.begin("replicate", 2);
            fb.for_("n", i64c(0), samples(&oty, &batch), |fb, n| {
                fb.for_n("r", rows, |fb, r| {
                    let row = add(mul(n.clone(), c64(rows)), r);
                    fb.for_n("t", times, |fb, t| {
                        fb.for_n("c", c, |fb, ch| {
                            let val = load(
                                Ty::I32,
                                at4(&p[0], add(mul(row.clone(), c64(c)), ch.clone())),
                            );
                            let oi = add(
                                add(mul(row.clone(), c64(c * times)), mul(t.clone(), c64(c))),
                                ch,
                            );
                            fb.store(at4(&p[1], oi), val);
                        })
                    })
                })
            });
            cx.end(fb, vec![src, out]);
        }
        Op::ChannelShuffle { groups } => {
            let src = cx.numeric(ins[0])?;
            let (rows, c) = rows_cols(cx.buf_ty(src));
            let g = *groups;
            let m = c / g;
            let (mut fb, batch, p) = cx.begin("channel_shuffle", 2);
            fb.for_("n", i64c(0), samples(&oty, &batch), |fb, n| {
                fb.for_n("r", rows, |fb, r| {
                    let row = add(mul(n.clone(), c64(rows)), r);
                    fb.for_n("i", m, |fb, i| {
                        fb.for_n("k", g, |fb, k| {
                            // out[.., i*g + k] = x[.., k*m + i]
                            let si = add(
                                mul(row.clone(), c64(c)),
                                add(mul(k.clone(), c64(m)), i.clone()),
                            );
                            let oi = add(mul(row.clone(), c64(c)), add(mul(i.clone(), c64(g)), k));
                            fb.store(at4(&p[1], oi), load(Ty::I32, at4(&p[0], si)));
                        })
                    })
                })
            });
            cx.end(fb, vec![src, out]);
        }
        Op::Concat { axis } => {
            let r = oty.rank() as i64;
            let ax = if *axis < 0 { axis + r } else { *axis } as usize;
            let ostr = strides(&oty);
            let mut offset = 0usize;
            for &x in ins {
                let src = cx.numeric(x)?;
                let ity = cx.buf_ty(src).clone();
                let istr = strides(&ity);
                let base = offset as i64 * ostr[ax];
                let (mut fb, batch, p) = cx.begin("concat", 2);
                let idx = open_nest(&mut fb, &ity, &batch);
                let oi = add(linear(&idx, &ostr), i64c(base));
                fb.store(
                    at4(&p[1], oi),
                    load(Ty::I32, at4(&p[0], linear(&idx, &istr))),
                );
                for _ in 0..ity.rank() {
                    fb.close_for();
                }
                cx.end(fb, vec![src, out]);
                offset += ity.shape[ax].resolve(1);
            }
        }
        _ => return Err(LowerError::Internal(format!("movement of {}", op.name()))),
    }
    Ok(())
}

/// `softmax` (f32) or `argmax` (i32) along an axis other than the batch.
fn softmax_argmax(cx: &mut Cx, v: ValueId, x: ValueId, axis: i64, out: usize, soft: bool) -> R {
    let src = cx.numeric(x)?;
    let st = cx.buf_storage(src);
    let xty = cx.model.ty(x).clone();
    let r = xty.rank() as i64;
    let ax = if axis < 0 { axis + r } else { axis } as usize;
    if xty.shape[ax] == Dim::Batch {
        return Err(LowerError::Unsupported {
            node: cx.model.graph.node(v).name.clone(),
            op: cx.model.graph.node(v).op.name().into(),
            types: "along the batch dimension".into(),
            at: cx.model.graph.node(v).locs.op,
        });
    }
    let dims = xty.dims(1);
    let first = usize::from(xty.is_batched());
    let outer: usize = dims[first..ax].iter().product();
    let len = dims[ax];
    let inner: usize = dims[ax + 1..].iter().product();
    let float = st == Storage::F32;
    let vty = if float { Ty::F32 } else { Ty::I32 };
    let expf = soft.then(|| cx.expf());
    let (mut fb, batch, p) = cx.begin(if soft { "softmax" } else { "argmax" }, 2);
    let m = fb.var("m", if soft { Ty::F32 } else { vty });
    let s = fb.var("sum", Ty::F32);
    let best = fb.var("best", Ty::I32);
    fb.for_("n", i64c(0), samples(&xty, &batch), |fb, n| {
        fb.for_n("o", outer, |fb, o| {
            fb.for_n("i", inner, |fb, i| {
                let line = add(
                    mul(add(mul(n.clone(), c64(outer)), o.clone()), c64(len * inner)),
                    i.clone(),
                );
                let at = |k: Expr| add(line.clone(), mul(k, c64(inner)));
                if soft {
                    // Max over non-NaN elements (a NaN never compares greater).
                    fb.assign(m, f32c(f32::NEG_INFINITY));
                    fb.for_n("k", len, |fb, k| {
                        let val = fb.let_("v", Ty::F32, load_f32(st, &p[0], at(k)));
                        fb.assign(m, select(cmp(CmpOp::FGt, val.clone(), var(m)), val, var(m)));
                    });
                    fb.assign(s, f32c(0.0));
                    fb.for_n("k", len, |fb, k| {
                        let e = fb.let_(
                            "e",
                            Ty::F32,
                            Expr::CallExtern(
                                expf.expect("expf"),
                                vec![fsub(load_f32(st, &p[0], at(k.clone())), var(m))],
                            ),
                        );
                        fb.store(at4(&p[1], at(k)), e.clone());
                        fb.assign(s, fadd(var(s), e));
                    });
                    fb.for_n("k", len, |fb, k| {
                        let y = fdiv(load(Ty::F32, at4(&p[1], at(k.clone()))), var(s));
                        fb.store(at4(&p[1], at(k)), y);
                    });
                } else {
                    let ld = |k: Expr| {
                        if float {
                            load(Ty::F32, at4(&p[0], at(k)))
                        } else {
                            load(Ty::I32, at4(&p[0], at(k)))
                        }
                    };
                    fb.assign(m, ld(i64c(0)));
                    fb.assign(best, i32c(0));
                    if len > 1 {
                        fb.for_("k", i64c(1), c64(len), |fb, k| {
                            let val = fb.let_("v", vty, ld(k.clone()));
                            let gt = fb.let_(
                                "gt",
                                Ty::I8,
                                cmp(
                                    if float { CmpOp::FGt } else { CmpOp::SGt },
                                    val.clone(),
                                    var(m),
                                ),
                            );
                            fb.assign(m, select(gt.clone(), val, var(m)));
                            fb.assign(best, select(gt, to_i32(k), var(best)));
                        });
                    }
                    let oi = add(
                        mul(add(mul(n.clone(), c64(outer)), o.clone()), c64(inner)),
                        i.clone(),
                    );
                    fb.store(at4(&p[1], oi), var(best));
                }
            })
        })
    });
    cx.end(fb, vec![src, out]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every combination of replica weights for b = 2..=9 (one channel,
    /// rows = all 2^b sign patterns): the planes' signed digits add up to the
    /// combined weight, and planes are used only when fewer than replicas.
    #[test]
    fn replica_planes_reconstruct_the_combined_weights() {
        for reps in 2..=9usize {
            let rows = 1usize << reps;
            let w: Vec<i32> = (0..rows)
                .flat_map(|m| (0..reps).map(move |r| if m >> r & 1 == 1 { -1 } else { 1 }))
                .collect();
            let Some(pl) = ReplicaPlanes::new(&w, rows, reps, 1) else {
                assert!(matches!(reps, 2 | 4), "no planes for b = {reps}");
                continue;
            };
            let np = pl.shifts.len();
            assert!(np < reps);
            let vals = crate::lower::unpack_bits(&pl.bits, rows * np, 1);
            for row in 0..rows {
                let v: i32 = w[row * reps..(row + 1) * reps].iter().sum();
                let got: i32 = (0..np).map(|j| vals[row * np + j] << pl.shifts[j]).sum();
                assert_eq!(got, v, "b = {reps}, row {row}");
            }
            let odd_sum = (1usize << (pl.shifts[0] + 1)) - 1;
            assert_eq!(
                pl.coef_sum(),
                odd_sum + usize::from(reps % 2 == 0),
                "b = {reps}"
            );
        }
    }
}
