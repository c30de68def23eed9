//! JIT semantics of scalar kir: every operation on edge values, compared
//! with Rust computing the same thing.

mod common;

use bnnc_kir::build::*;
use bnnc_kir::{BinOp, CastOp, CmpOp, Expr, Scalar, Stmt, Ty, UnOp};
use common::*;

const INT_TYPES: [(Scalar, u32); 4] = [
    (Scalar::I8, 8),
    (Scalar::I16, 16),
    (Scalar::I32, 32),
    (Scalar::I64, 64),
];

const INT_BINOPS: [BinOp; 10] = [
    BinOp::Add,
    BinOp::Sub,
    BinOp::Mul,
    BinOp::And,
    BinOp::Or,
    BinOp::Xor,
    BinOp::Shl,
    BinOp::ShrU,
    BinOp::ShrS,
    BinOp::SMin,
];

const INT_CMPS: [CmpOp; 7] = [
    CmpOp::Eq,
    CmpOp::Ne,
    CmpOp::SLt,
    CmpOp::SLe,
    CmpOp::SGt,
    CmpOp::SGe,
    CmpOp::ULt,
];

fn edge_values() -> Vec<i64> {
    let mut v = vec![
        0,
        1,
        -1,
        2,
        3,
        7,
        8,
        9,
        15,
        16,
        17,
        31,
        32,
        33,
        63,
        64,
        65,
        127,
        128,
        255,
        -128,
        -129,
        0x5555,
        0x7fff,
        -0x8000,
        i32::MAX as i64,
        i32::MIN as i64,
        u32::MAX as i64,
        i64::MAX,
        i64::MIN,
        0x0123_4567_89ab_cdef,
        -0x0123_4567_89ab_cdef,
    ];
    v.extend(
        bytes(7, 64)
            .chunks(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap())),
    );
    v
}

/// Sign-extends the low `bits` of `x`.
fn sx(x: i64, bits: u32) -> i64 {
    (x << (64 - bits)) >> (64 - bits)
}

/// `name(a: i64, b: i64) -> i64` computing `op` on the low `bits` of a and
/// b, sign-extended back to i64 (so no i8/i16 crosses the call boundary).
fn int_fn(
    name: &str,
    bits: u32,
    body: impl Fn(Expr, Expr) -> Expr,
    ret_i8: bool,
) -> bnnc_kir::Function {
    let (mut f, p) = func(name, &[("a", Ty::I64), ("b", Ty::I64)], Some(Ty::I64));
    let t = int_ty(bits);
    let narrow = |e: Expr| {
        if bits == 64 {
            e
        } else {
            cast(CastOp::Trunc, e, t)
        }
    };
    let r = body(narrow(var(p[0])), narrow(var(p[1])));
    let (r, rbits) = if ret_i8 { (r, 8) } else { (r, bits) };
    let r = if rbits == 64 {
        r
    } else {
        cast(CastOp::SExt, r, Ty::I64)
    };
    f.body.push(Stmt::Return(Some(r)));
    f
}

fn int_ty(bits: u32) -> Ty {
    match bits {
        8 => Ty::I8,
        16 => Ty::I16,
        32 => Ty::I32,
        _ => Ty::I64,
    }
}

fn ref_bin(op: BinOp, a: i64, b: i64, bits: u32) -> i64 {
    let (a, b) = (sx(a, bits), sx(b, bits));
    let mask = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let sh = (b as u32) & (bits - 1);
    let r = match op {
        BinOp::Add => a.wrapping_add(b),
        BinOp::Sub => a.wrapping_sub(b),
        BinOp::Mul => a.wrapping_mul(b),
        BinOp::And => a & b,
        BinOp::Or => a | b,
        BinOp::Xor => a ^ b,
        BinOp::Shl => a.wrapping_shl(sh),
        BinOp::ShrU => ((a as u64 & mask) >> sh) as i64,
        BinOp::ShrS => a >> sh,
        BinOp::SMin => a.min(b),
        BinOp::SMax => a.max(b),
        _ => unreachable!(),
    };
    sx(r, bits)
}

fn ref_cmp(op: CmpOp, a: i64, b: i64, bits: u32) -> i64 {
    let (a, b) = (sx(a, bits), sx(b, bits));
    let mask = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let r = match op {
        CmpOp::Eq => a == b,
        CmpOp::Ne => a != b,
        CmpOp::SLt => a < b,
        CmpOp::SLe => a <= b,
        CmpOp::SGt => a > b,
        CmpOp::SGe => a >= b,
        CmpOp::ULt => (a as u64 & mask) < (b as u64 & mask),
        _ => unreachable!(),
    };
    r as i64
}

type F2 = extern "C" fn(i64, i64) -> i64;

#[test]
fn integer_binops_and_compares_on_edge_values() {
    let mut fns = Vec::new();
    let mut ops: Vec<BinOp> = INT_BINOPS.to_vec();
    ops.push(BinOp::SMax);
    for (_, bits) in INT_TYPES {
        for op in &ops {
            fns.push(int_fn(
                &format!("{op:?}_{bits}"),
                bits,
                |a, b| bin(*op, a, b),
                false,
            ));
        }
        for op in INT_CMPS {
            fns.push(int_fn(
                &format!("{op:?}_{bits}"),
                bits,
                |a, b| cmp(op, a, b),
                true,
            ));
        }
    }
    let m = module(fns);
    let vals = edge_values();
    for t in jit_targets() {
        let j = jit(&m, &t);
        for (_, bits) in INT_TYPES {
            for op in &ops {
                let f: F2 = unsafe { std::mem::transmute(fn_addr(&j, &format!("{op:?}_{bits}"))) };
                for &a in &vals {
                    for &b in &vals {
                        assert_eq!(
                            f(a, b),
                            ref_bin(*op, a, b, bits),
                            "{t}: {op:?} on i{bits} of {a:#x}, {b:#x}"
                        );
                    }
                }
            }
            for op in INT_CMPS {
                let f: F2 = unsafe { std::mem::transmute(fn_addr(&j, &format!("{op:?}_{bits}"))) };
                for &a in &vals {
                    for &b in &vals {
                        assert_eq!(
                            f(a, b),
                            ref_cmp(op, a, b, bits),
                            "{t}: {op:?} on i{bits} of {a:#x}, {b:#x}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn integer_unops_on_edge_values() {
    let mut fns = Vec::new();
    let ops = [UnOp::Popcnt, UnOp::Not, UnOp::Neg];
    for (_, bits) in INT_TYPES {
        for op in ops {
            fns.push(int_fn(
                &format!("{op:?}_{bits}"),
                bits,
                |a, _| un(op, a),
                false,
            ));
        }
    }
    let m = module(fns);
    for t in jit_targets() {
        let j = jit(&m, &t);
        for (_, bits) in INT_TYPES {
            let mask = if bits == 64 {
                u64::MAX
            } else {
                (1u64 << bits) - 1
            };
            for op in ops {
                let f: F2 = unsafe { std::mem::transmute(fn_addr(&j, &format!("{op:?}_{bits}"))) };
                for &a in &edge_values() {
                    let x = sx(a, bits);
                    let want = match op {
                        UnOp::Popcnt => (x as u64 & mask).count_ones() as i64,
                        UnOp::Not => sx(!x, bits),
                        _ => sx(x.wrapping_neg(), bits),
                    };
                    assert_eq!(f(a, 0), want, "{t}: {op:?} on i{bits} of {a:#x}");
                }
            }
        }
    }
}

fn float_values() -> Vec<f32> {
    vec![
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.5,
        1.5,
        -2.5,
        3.0e38,
        -3.0e38,
        1.0e-45,
        f32::MIN_POSITIVE,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        f32::from_bits(0x7fa0_0001),
        std::f32::consts::PI,
        1.0e7,
        16777217.0,
    ]
}

#[test]
fn float_ops_on_edge_values() {
    let bins = [BinOp::FAdd, BinOp::FSub, BinOp::FMul, BinOp::FDiv];
    let cmps = [
        CmpOp::FEq,
        CmpOp::FLt,
        CmpOp::FLe,
        CmpOp::FGt,
        CmpOp::FGe,
        CmpOp::FUno,
    ];
    let mut fns = Vec::new();
    let params = [("a", Ty::F32), ("b", Ty::F32)];
    for op in bins {
        let (mut f, p) = func(&format!("{op:?}"), &params, Some(Ty::F32));
        f.body
            .push(Stmt::Return(Some(bin(op, var(p[0]), var(p[1])))));
        fns.push(f);
    }
    for op in [UnOp::FNeg, UnOp::FSqrt] {
        let (mut f, p) = func(&format!("{op:?}"), &params, Some(Ty::F32));
        f.body.push(Stmt::Return(Some(un(op, var(p[0])))));
        fns.push(f);
    }
    for op in cmps {
        let (mut f, p) = func(&format!("{op:?}"), &params, Some(Ty::I64));
        let c = cmp(op, var(p[0]), var(p[1]));
        f.body
            .push(Stmt::Return(Some(cast(CastOp::ZExt, c, Ty::I64))));
        fns.push(f);
    }
    // A multiply then an add: a * b - 1 must round twice (no FMA).
    let (mut f, p) = func("muladd", &params, Some(Ty::F32));
    let e = bin(
        BinOp::FAdd,
        bin(BinOp::FMul, var(p[0]), var(p[1])),
        f32c(-1.0),
    );
    f.body.push(Stmt::Return(Some(e)));
    fns.push(f);
    let m = module(fns);
    let vals = float_values();
    type FF = extern "C" fn(f32, f32) -> f32;
    type FC = extern "C" fn(f32, f32) -> i64;
    for t in jit_targets() {
        let j = jit(&m, &t);
        for op in bins {
            let f: FF = unsafe { std::mem::transmute(fn_addr(&j, &format!("{op:?}"))) };
            for &a in &vals {
                for &b in &vals {
                    let (a, b) = (std::hint::black_box(a), std::hint::black_box(b));
                    let want = match op {
                        BinOp::FAdd => a + b,
                        BinOp::FSub => a - b,
                        BinOp::FMul => a * b,
                        _ => a / b,
                    };
                    assert!(same_f32(f(a, b), want), "{t}: {op:?}({a:?}, {b:?})");
                }
            }
        }
        let fneg: FF = unsafe { std::mem::transmute(fn_addr(&j, "FNeg")) };
        let fsqrt: FF = unsafe { std::mem::transmute(fn_addr(&j, "FSqrt")) };
        let muladd: FF = unsafe { std::mem::transmute(fn_addr(&j, "muladd")) };
        for &a in &vals {
            // Negation flips the sign bit, NaN included.
            assert_eq!(fneg(a, 0.0).to_bits(), (-a).to_bits(), "{t}: fneg({a:?})");
            assert!(same_f32(fsqrt(a, 0.0), a.sqrt()), "{t}: fsqrt({a:?})");
        }
        assert_eq!(fsqrt(-0.0, 0.0).to_bits(), (-0.0f32).to_bits());
        let x = 1.0f32 + 1.0 / 4096.0;
        let unfused = std::hint::black_box(x) * std::hint::black_box(x) - 1.0;
        assert_ne!(
            unfused,
            x.mul_add(x, -1.0),
            "the test values must tell FMA apart"
        );
        assert_eq!(
            muladd(x, x).to_bits(),
            unfused.to_bits(),
            "{t}: contraction"
        );
        for op in cmps {
            let f: FC = unsafe { std::mem::transmute(fn_addr(&j, &format!("{op:?}"))) };
            for &a in &vals {
                for &b in &vals {
                    let want = match op {
                        CmpOp::FEq => a == b,
                        CmpOp::FLt => a < b,
                        CmpOp::FLe => a <= b,
                        CmpOp::FGt => a > b,
                        CmpOp::FGe => a >= b,
                        // FUno: either operand is NaN (the kir contract).
                        _ => a.is_nan() || b.is_nan(),
                    };
                    assert_eq!(f(a, b), want as i64, "{t}: {op:?}({a:?}, {b:?})");
                }
            }
        }
    }
}

#[test]
fn casts() {
    let mut fns = Vec::new();
    // (name, from bits, to bits, op): a: i64 -> trunc to `from` -> op -> i64.
    let int_casts: Vec<(String, u32, u32, CastOp)> = {
        let mut v = Vec::new();
        for (_, from) in INT_TYPES {
            for (_, to) in INT_TYPES {
                if from < to {
                    v.push((format!("sext_{from}_{to}"), from, to, CastOp::SExt));
                    v.push((format!("zext_{from}_{to}"), from, to, CastOp::ZExt));
                }
                if from > to {
                    v.push((format!("trunc_{from}_{to}"), from, to, CastOp::Trunc));
                }
            }
        }
        v
    };
    for (name, from, to, op) in &int_casts {
        let (mut f, p) = func(name, &[("a", Ty::I64)], Some(Ty::I64));
        let mut e = var(p[0]);
        if *from < 64 {
            e = cast(CastOp::Trunc, e, int_ty(*from));
        }
        e = cast(*op, e, int_ty(*to));
        // Back to i64 with a zero extension, so the test sees every bit
        // the cast produced.
        if *to < 64 {
            e = cast(CastOp::ZExt, e, Ty::I64);
        }
        f.body.push(Stmt::Return(Some(e)));
        fns.push(f);
    }
    for (_, bits) in INT_TYPES {
        let (mut f, p) = func(&format!("sitof_{bits}"), &[("a", Ty::I64)], Some(Ty::F32));
        let mut e = var(p[0]);
        if bits < 64 {
            e = cast(CastOp::Trunc, e, int_ty(bits));
        }
        f.body
            .push(Stmt::Return(Some(cast(CastOp::SIToF, e, Ty::F32))));
        fns.push(f);
    }
    let (mut f, p) = func("f2i", &[("a", Ty::F32)], Some(Ty::I32));
    f.body.push(Stmt::Return(Some(cast(
        CastOp::Bitcast,
        var(p[0]),
        Ty::I32,
    ))));
    fns.push(f);
    let (mut f, p) = func("i2f", &[("a", Ty::I32)], Some(Ty::F32));
    f.body.push(Stmt::Return(Some(cast(
        CastOp::Bitcast,
        var(p[0]),
        Ty::F32,
    ))));
    fns.push(f);
    let m = module(fns);
    let mut vals = edge_values();
    vals.extend([(1 << 53) + 1, (1 << 24) + 1, -(1 << 24) - 3, 0x7fff_ff80]);
    for t in jit_targets() {
        let j = jit(&m, &t);
        for (name, from, to, op) in &int_casts {
            let f: extern "C" fn(i64) -> i64 = unsafe { std::mem::transmute(fn_addr(&j, name)) };
            for &a in &vals {
                let x = sx(a, *from);
                let from_mask = if *from == 64 {
                    u64::MAX
                } else {
                    (1u64 << from) - 1
                };
                let to_mask = if *to == 64 {
                    u64::MAX
                } else {
                    (1u64 << to) - 1
                };
                let want = match op {
                    CastOp::SExt => x as u64 & to_mask,
                    CastOp::ZExt => x as u64 & from_mask,
                    _ => x as u64 & to_mask,
                };
                assert_eq!(f(a) as u64, want, "{t}: {name}({a:#x})");
            }
        }
        for (_, bits) in INT_TYPES {
            let f: extern "C" fn(i64) -> f32 =
                unsafe { std::mem::transmute(fn_addr(&j, &format!("sitof_{bits}"))) };
            for &a in &vals {
                let want = sx(a, bits) as f32;
                assert_eq!(f(a).to_bits(), want.to_bits(), "{t}: sitof_{bits}({a:#x})");
            }
        }
        let f2i: extern "C" fn(f32) -> i32 = unsafe { std::mem::transmute(fn_addr(&j, "f2i")) };
        let i2f: extern "C" fn(i32) -> f32 = unsafe { std::mem::transmute(fn_addr(&j, "i2f")) };
        for a in float_values() {
            assert_eq!(f2i(a) as u32, a.to_bits(), "{t}: bitcast {a:?}");
            assert_eq!(
                i2f(a.to_bits() as i32).to_bits(),
                a.to_bits(),
                "{t}: bitcast back"
            );
        }
    }
}

#[test]
fn constants_and_select() {
    // sel(a, b) = a < b ? a * 3 : -7:i16 widened, plus constants of each
    // type that do not fit in a signed 8/16/32-bit immediate.
    let (mut f, p) = func("sel", &[("a", Ty::I64), ("b", Ty::I64)], Some(Ty::I64));
    let c = cmp(CmpOp::SLt, var(p[0]), var(p[1]));
    let neg7 = cast(CastOp::SExt, Expr::Int(-7, Ty::I16), Ty::I64);
    let e = select(c, mul(var(p[0]), i64c(3)), neg7);
    f.body.push(Stmt::Return(Some(e)));
    let (mut g, _) = func("consts", &[], Some(Ty::I64));
    // 0xff:i8 zero-extended is 255; -1:i32 zero-extended is 2^32 - 1.
    let e = add(
        cast(CastOp::ZExt, Expr::Int(-1, Ty::I8), Ty::I64),
        cast(CastOp::ZExt, Expr::Int(-1, Ty::I32), Ty::I64),
    );
    let e = add(e, cast(CastOp::SExt, Expr::Int(0x8000, Ty::I16), Ty::I64));
    g.body.push(Stmt::Return(Some(e)));
    let (mut h, q) = func("fsel", &[("a", Ty::F32), ("b", Ty::F32)], Some(Ty::F32));
    let c = cmp(CmpOp::FLt, var(q[0]), var(q[1]));
    h.body
        .push(Stmt::Return(Some(select(c, var(q[0]), f32c(-0.0)))));
    let m = module(vec![f, g, h]);
    for t in jit_targets() {
        let j = jit(&m, &t);
        let sel: F2 = unsafe { std::mem::transmute(fn_addr(&j, "sel")) };
        assert_eq!(sel(1, 2), 3);
        assert_eq!(sel(2, 2), -7);
        assert_eq!(sel(i64::MIN, 0), i64::MIN.wrapping_mul(3));
        let consts: extern "C" fn() -> i64 = unsafe { std::mem::transmute(fn_addr(&j, "consts")) };
        assert_eq!(consts(), 255 + 0xffff_ffff - 0x8000);
        let fsel: extern "C" fn(f32, f32) -> f32 =
            unsafe { std::mem::transmute(fn_addr(&j, "fsel")) };
        assert_eq!(fsel(1.0, 2.0), 1.0);
        assert_eq!(fsel(f32::NAN, 2.0).to_bits(), (-0.0f32).to_bits());
    }
}
