//! JIT semantics of 128-bit vector kir (i8x16, i16x8, i32x4, i64x2, f32x4),
//! lane by lane against Rust, on every runnable target (SSE2 baseline
//! included, where Cranelift or the backend emulates missing instructions).

mod common;

use bnnc_kir::build::*;
use bnnc_kir::{BinOp, CastOp, CmpOp, Expr, Function, Scalar, Stmt, Ty, UnOp, VarId};
use common::*;

const INT_LANES: [(Scalar, u32); 4] = [
    (Scalar::I8, 8),
    (Scalar::I16, 16),
    (Scalar::I32, 32),
    (Scalar::I64, 64),
];

const BINOPS: [BinOp; 11] = [
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
    BinOp::SMax,
];

const CMPS: [CmpOp; 7] = [
    CmpOp::Eq,
    CmpOp::Ne,
    CmpOp::SLt,
    CmpOp::SLe,
    CmpOp::SGt,
    CmpOp::SGe,
    CmpOp::ULt,
];

type VFn = extern "C" fn(*const u8, *const u8, *mut u8);

/// The pointer parameters `a` and `b` of every `vfn` function.
const PARAM_A: VarId = VarId(0);
const PARAM_B: VarId = VarId(1);

fn vty(s: Scalar) -> Ty {
    Ty::vec(s, (128 / s.bits()) as u16)
}

/// `name(a, b, out)`: `*out = body(load a, load b)` (the stored value's own
/// type decides how many bytes are written).
fn vfn(name: &str, t: Ty, body: impl Fn(Expr, Expr) -> Expr) -> Function {
    let (mut f, p) = func(
        name,
        &[("a", Ty::PTR), ("b", Ty::PTR), ("out", Ty::PTR)],
        None,
    );
    let value = body(load(t, var(p[0])), load(t, var(p[1])));
    f.body.push(Stmt::Store {
        addr: var(p[2]),
        value,
    });
    f
}

fn sx(x: i64, bits: u32) -> i64 {
    (x << (64 - bits)) >> (64 - bits)
}

fn lanes(v: &[u8; 16], bits: u32) -> Vec<i64> {
    let n = (bits / 8) as usize;
    v.chunks(n)
        .map(|c| {
            let mut b = [0u8; 8];
            b[..n].copy_from_slice(c);
            sx(i64::from_le_bytes(b), bits)
        })
        .collect()
}

fn pack(ls: &[i64], bits: u32) -> [u8; 16] {
    let n = (bits / 8) as usize;
    let mut out = [0u8; 16];
    for (i, l) in ls.iter().enumerate() {
        out[i * n..(i + 1) * n].copy_from_slice(&l.to_le_bytes()[..n]);
    }
    out
}

fn ref_bin(op: BinOp, a: i64, b: i64, bits: u32) -> i64 {
    let mask = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let sh = (b as u32) & (bits - 1);
    sx(
        match op {
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
        },
        bits,
    )
}

fn ref_cmp(op: CmpOp, a: i64, b: i64, bits: u32) -> bool {
    let mask = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    match op {
        CmpOp::Eq => a == b,
        CmpOp::Ne => a != b,
        CmpOp::SLt => a < b,
        CmpOp::SLe => a <= b,
        CmpOp::SGt => a > b,
        CmpOp::SGe => a >= b,
        CmpOp::ULt => (a as u64 & mask) < (b as u64 & mask),
        _ => unreachable!(),
    }
}

/// Input pairs: random bytes, lane extremes, equal vectors, shift amounts
/// around every lane width.
fn int_inputs() -> Vec<([u8; 16], [u8; 16])> {
    let mut v = Vec::new();
    for seed in 0..12 {
        let a = bytes(100 + seed, 16).try_into().unwrap();
        let b = bytes(200 + seed, 16).try_into().unwrap();
        v.push((a, b));
    }
    let r: [u8; 16] = bytes(5, 16).try_into().unwrap();
    v.push((r, r));
    v.push(([0xff; 16], [0x80; 16]));
    v.push(([0x80; 16], [0x7f; 16]));
    v.push(([0; 16], [0xff; 16]));
    let mut shifts = [0u8; 16];
    for (i, s) in shifts.iter_mut().enumerate() {
        *s = [0, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 200][i];
    }
    v.push((r, shifts));
    v
}

#[test]
fn integer_vectors() {
    let mut fns = Vec::new();
    for (s, bits) in INT_LANES {
        let t = vty(s);
        for op in BINOPS {
            fns.push(vfn(&format!("{op:?}_{bits}"), t, |a, b| bin(op, a, b)));
        }
        for op in [BinOp::Shl, BinOp::ShrU, BinOp::ShrS] {
            // Shift every lane by b's lane 0, as a splat.
            fns.push(vfn(&format!("{op:?}_splat_{bits}"), t, |a, _| {
                bin(
                    op,
                    a,
                    Expr::Splat(t, Box::new(load(t.lane(), var(PARAM_B)))),
                )
            }));
        }
        for op in CMPS {
            fns.push(vfn(&format!("{op:?}_{bits}"), t, |a, b| cmp(op, a, b)));
        }
        for op in [UnOp::Popcnt, UnOp::Not, UnOp::Neg] {
            fns.push(vfn(&format!("{op:?}_{bits}"), t, |a, _| un(op, a)));
        }
        // max by a lane-mask select.
        fns.push(vfn(&format!("select_{bits}"), t, |a, b| {
            select(cmp(CmpOp::SLt, a.clone(), b.clone()), b, a)
        }));
        fns.push(vfn(&format!("reduce_{bits}"), t, |a, _| {
            Expr::ReduceAdd(Box::new(a))
        }));
        // b + splat(a's lane 0).
        fns.push(vfn(&format!("splat_{bits}"), t, |_, b| {
            add(b, Expr::Splat(t, Box::new(load(t.lane(), var(PARAM_A)))))
        }));
        // Reinterpret as i64x2 and add there.
        fns.push(vfn(&format!("bitcast_{bits}"), t, |a, b| {
            let w = vty(Scalar::I64);
            add(cast(CastOp::Bitcast, a, w), cast(CastOp::Bitcast, b, w))
        }));
    }
    let m = module(fns);
    let inputs = int_inputs();
    for target in jit_targets() {
        let j = jit(&m, &target);
        let run = |name: &str, a: &[u8; 16], b: &[u8; 16]| {
            let f: VFn = unsafe { std::mem::transmute(fn_addr(&j, name)) };
            let mut out = [0u8; 16];
            f(a.as_ptr(), b.as_ptr(), out.as_mut_ptr());
            out
        };
        for (_, bits) in INT_LANES {
            for (a, b) in &inputs {
                let (la, lb) = (lanes(a, bits), lanes(b, bits));
                let ctx = |name: &str| format!("{target}: {name} on {a:02x?}, {b:02x?}");
                for op in BINOPS {
                    let name = format!("{op:?}_{bits}");
                    let want: Vec<i64> = la
                        .iter()
                        .zip(&lb)
                        .map(|(&x, &y)| ref_bin(op, x, y, bits))
                        .collect();
                    assert_eq!(run(&name, a, b), pack(&want, bits), "{}", ctx(&name));
                }
                for op in [BinOp::Shl, BinOp::ShrU, BinOp::ShrS] {
                    let name = format!("{op:?}_splat_{bits}");
                    let want: Vec<i64> = la.iter().map(|&x| ref_bin(op, x, lb[0], bits)).collect();
                    assert_eq!(run(&name, a, b), pack(&want, bits), "{}", ctx(&name));
                }
                for op in CMPS {
                    let name = format!("{op:?}_{bits}");
                    let want: Vec<i64> = la
                        .iter()
                        .zip(&lb)
                        .map(|(&x, &y)| -(ref_cmp(op, x, y, bits) as i64))
                        .collect();
                    assert_eq!(run(&name, a, b), pack(&want, bits), "{}", ctx(&name));
                }
                let mask = if bits == 64 {
                    u64::MAX
                } else {
                    (1u64 << bits) - 1
                };
                let un_ref = |op: UnOp, x: i64| match op {
                    UnOp::Popcnt => (x as u64 & mask).count_ones() as i64,
                    UnOp::Not => !x,
                    _ => x.wrapping_neg(),
                };
                for op in [UnOp::Popcnt, UnOp::Not, UnOp::Neg] {
                    let name = format!("{op:?}_{bits}");
                    let want: Vec<i64> = la.iter().map(|&x| un_ref(op, x)).collect();
                    assert_eq!(run(&name, a, b), pack(&want, bits), "{}", ctx(&name));
                }
                let name = format!("select_{bits}");
                let want: Vec<i64> = la.iter().zip(&lb).map(|(&x, &y)| x.max(y)).collect();
                assert_eq!(run(&name, a, b), pack(&want, bits), "{}", ctx(&name));

                let name = format!("reduce_{bits}");
                let sum = la.iter().fold(0i64, |s, &x| s.wrapping_add(x));
                let n = (bits / 8) as usize;
                let out = run(&name, a, b);
                assert_eq!(out[..n], sum.to_le_bytes()[..n], "{}", ctx(&name));
                assert!(
                    out[n..].iter().all(|&x| x == 0),
                    "{}: wrote past the lane",
                    ctx(&name)
                );

                let name = format!("splat_{bits}");
                let want: Vec<i64> = lb.iter().map(|&y| y.wrapping_add(la[0])).collect();
                assert_eq!(run(&name, a, b), pack(&want, bits), "{}", ctx(&name));

                let name = format!("bitcast_{bits}");
                let (wa, wb) = (lanes(a, 64), lanes(b, 64));
                let want: Vec<i64> = wa
                    .iter()
                    .zip(&wb)
                    .map(|(x, y)| x.wrapping_add(*y))
                    .collect();
                assert_eq!(run(&name, a, b), pack(&want, 64), "{}", ctx(&name));
            }
        }
    }
}

fn f32s(v: &[u8; 16]) -> [f32; 4] {
    std::array::from_fn(|i| f32::from_le_bytes(v[i * 4..i * 4 + 4].try_into().unwrap()))
}

fn f32_bytes(x: [f32; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, f) in x.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&f.to_le_bytes());
    }
    out
}

#[test]
fn float_vectors() {
    let t = vty(Scalar::F32);
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
    for op in bins {
        fns.push(vfn(&format!("{op:?}"), t, |a, b| bin(op, a, b)));
    }
    for op in [UnOp::FNeg, UnOp::FSqrt] {
        fns.push(vfn(&format!("{op:?}"), t, |a, _| un(op, a)));
    }
    for op in cmps {
        fns.push(vfn(&format!("{op:?}"), t, |a, b| cmp(op, a, b)));
    }
    fns.push(vfn("select", t, |a, b| {
        select(cmp(CmpOp::FLt, a.clone(), b.clone()), a, b)
    }));
    fns.push(vfn("reduce", t, |a, _| Expr::ReduceAdd(Box::new(a))));
    let i4 = vty(Scalar::I32);
    fns.push(vfn("sitof", i4, |a, _| cast(CastOp::SIToF, a, t)));
    fns.push(vfn("bits", t, |a, _| {
        add(
            cast(CastOp::Bitcast, a, i4),
            Expr::Splat(i4, Box::new(i32c(1))),
        )
    }));
    fns.push(vfn("splat", t, |a, _| {
        bin(BinOp::FMul, a, Expr::Splat(t, Box::new(f32c(-2.0))))
    }));
    let m = module(fns);

    let specials = [
        0.0f32,
        -0.0,
        1.0,
        -1.5,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        3.0e38,
        1.0e-40,
        7.25,
        -1.0e-3,
        16777217.0,
    ];
    let mut inputs = Vec::new();
    for i in 0..specials.len() {
        for k in 0..specials.len() {
            let a = [
                specials[i],
                specials[k],
                specials[(i + 1) % 12],
                specials[(k + 5) % 12],
            ];
            let b = [
                specials[k],
                specials[i],
                specials[(i + 7) % 12],
                specials[(k + 3) % 12],
            ];
            inputs.push((f32_bytes(a), f32_bytes(b)));
        }
    }
    for seed in 0..8 {
        let a: [u8; 16] = bytes(300 + seed, 16).try_into().unwrap();
        let b: [u8; 16] = bytes(400 + seed, 16).try_into().unwrap();
        inputs.push((a, b));
    }
    for target in jit_targets() {
        let j = jit(&m, &target);
        let run = |name: &str, a: &[u8; 16], b: &[u8; 16]| {
            let f: VFn = unsafe { std::mem::transmute(fn_addr(&j, name)) };
            let mut out = [0u8; 16];
            f(a.as_ptr(), b.as_ptr(), out.as_mut_ptr());
            out
        };
        for (a, b) in &inputs {
            let (fa, fb) = (f32s(a), f32s(b));
            let ctx = |name: &str| format!("{target}: {name} on {fa:?}, {fb:?}");
            for op in bins {
                let name = format!("{op:?}");
                let out = f32s(&run(&name, a, b));
                for i in 0..4 {
                    let (x, y) = (std::hint::black_box(fa[i]), std::hint::black_box(fb[i]));
                    let want = match op {
                        BinOp::FAdd => x + y,
                        BinOp::FSub => x - y,
                        BinOp::FMul => x * y,
                        _ => x / y,
                    };
                    assert!(same_f32(out[i], want), "{} lane {i}", ctx(&name));
                }
            }
            let neg = f32s(&run("FNeg", a, b));
            let sqrt = f32s(&run("FSqrt", a, b));
            for i in 0..4 {
                assert_eq!(neg[i].to_bits(), (-fa[i]).to_bits(), "{}", ctx("fneg"));
                assert!(same_f32(sqrt[i], fa[i].sqrt()), "{}", ctx("fsqrt"));
            }
            for op in cmps {
                let name = format!("{op:?}");
                let out = lanes(&run(&name, a, b), 32);
                for i in 0..4 {
                    let (x, y) = (fa[i], fb[i]);
                    let want = match op {
                        CmpOp::FEq => x == y,
                        CmpOp::FLt => x < y,
                        CmpOp::FLe => x <= y,
                        CmpOp::FGt => x > y,
                        CmpOp::FGe => x >= y,
                        _ => x.is_nan() || y.is_nan(),
                    };
                    assert_eq!(out[i], -(want as i64), "{} lane {i}", ctx(&name));
                }
            }
            let sel = run("select", a, b);
            let want: [f32; 4] = std::array::from_fn(|i| if fa[i] < fb[i] { fa[i] } else { fb[i] });
            assert_eq!(sel, f32_bytes(want), "{}", ctx("select"));
            let red = run("reduce", a, b);
            let want = ((fa[0] + fa[1]) + fa[2]) + fa[3];
            let got = f32::from_le_bytes(red[..4].try_into().unwrap());
            assert!(same_f32(got, want), "{}: {got} vs {want}", ctx("reduce"));
            let conv = f32s(&run("sitof", a, b));
            for (i, l) in lanes(a, 32).iter().enumerate() {
                assert_eq!(
                    conv[i].to_bits(),
                    (*l as i32 as f32).to_bits(),
                    "{}",
                    ctx("sitof")
                );
            }
            let bits = lanes(&run("bits", a, b), 32);
            for i in 0..4 {
                assert_eq!(
                    bits[i],
                    sx(fa[i].to_bits().wrapping_add(1) as i64, 32),
                    "{}",
                    ctx("bits")
                );
            }
            let spl = f32s(&run("splat", a, b));
            for i in 0..4 {
                assert!(same_f32(spl[i], fa[i] * -2.0), "{}", ctx("splat"));
            }
        }
    }
}

#[test]
fn vector_kernels_compile_for_aarch64() {
    // The whole integer and float vector op set lowers for aarch64 too (run
    // on aarch64 hosts by the tests above; here only compiled).
    let mut fns = Vec::new();
    for (s, bits) in INT_LANES {
        let t = vty(s);
        for op in BINOPS {
            fns.push(vfn(&format!("{op:?}_{bits}"), t, |a, b| bin(op, a, b)));
        }
        for op in CMPS {
            fns.push(vfn(&format!("{op:?}_{bits}"), t, |a, b| cmp(op, a, b)));
        }
        fns.push(vfn(&format!("popcnt_{bits}"), t, |a, _| {
            un(UnOp::Popcnt, a)
        }));
        fns.push(vfn(&format!("reduce_{bits}"), t, |a, _| {
            Expr::ReduceAdd(Box::new(a))
        }));
    }
    let t = vty(Scalar::F32);
    fns.push(vfn("fsel", t, |a, b| {
        select(cmp(CmpOp::FUno, a.clone(), b.clone()), a, b)
    }));
    let m = module(fns);
    let target = bnnc_kir::target::Target::parse("aarch64").unwrap();
    let obj = bnnc_cranelift::compile_object(&m, &target).unwrap();
    assert_eq!(&obj[..4], b"\x7fELF");
}

/// `extract(v, i)`: every lane of every 128-bit type, stored as the lane
/// type (and only its bytes written), on every runnable target.
#[test]
fn extract_every_lane() {
    let mut types: Vec<Ty> = INT_LANES.iter().map(|&(s, _)| vty(s)).collect();
    types.push(vty(Scalar::F32));
    let mut fns = Vec::new();
    for &t in &types {
        for i in 0..t.lanes {
            fns.push(vfn(&format!("extract_{t}_{i}"), t, |a, _| {
                Expr::Extract(Box::new(a), i)
            }));
        }
    }
    let m = module(fns);
    let a: [u8; 16] = std::array::from_fn(|k| (k as u8).wrapping_mul(37).wrapping_add(0x81));
    for target in jit_targets() {
        let j = jit(&m, &target);
        for &t in &types {
            let n = t.scalar.bits() as usize / 8;
            for i in 0..t.lanes as usize {
                let name = format!("extract_{t}_{i}");
                let f: VFn = unsafe { std::mem::transmute(fn_addr(&j, &name)) };
                let mut out = [0u8; 16];
                f(a.as_ptr(), a.as_ptr(), out.as_mut_ptr());
                assert_eq!(out[..n], a[i * n..(i + 1) * n], "{target}: {name}");
                assert!(
                    out[n..].iter().all(|&x| x == 0),
                    "{target}: {name} wrote past the lane"
                );
            }
        }
    }
    // And for aarch64 (compiled only, unless this is an aarch64 host).
    let arm = bnnc_kir::target::Target::parse("aarch64").unwrap();
    let obj = bnnc_cranelift::compile_object(&m, &arm).unwrap();
    assert_eq!(&obj[..4], b"\x7fELF");
}

/// `sign_bits(v)`: bit l of the i64 result is lane l's top bit, for every
/// 128-bit integer type, on raw lanes and on compare masks, on every
/// runnable target (and compiled for aarch64).
#[test]
fn sign_bits_of_every_lane_type() {
    let types: Vec<Ty> = INT_LANES.iter().map(|&(s, _)| vty(s)).collect();
    let mut fns = Vec::new();
    for &t in &types {
        fns.push(vfn(&format!("sign_bits_{t}"), t, |a, _| {
            Expr::SignBits(Box::new(a))
        }));
        fns.push(vfn(&format!("sign_bits_lt_{t}"), t, |a, b| {
            Expr::SignBits(Box::new(cmp(CmpOp::SLt, a, b)))
        }));
    }
    let m = module(fns);
    let a: [u8; 16] = std::array::from_fn(|k| (k as u8).wrapping_mul(37).wrapping_add(0x81));
    let b: [u8; 16] = std::array::from_fn(|k| (k as u8).wrapping_mul(91).wrapping_add(0x17));
    for target in jit_targets() {
        let j = jit(&m, &target);
        for &t in &types {
            let n = t.scalar.bits() as usize / 8;
            let lane = |v: &[u8; 16], l: usize| -> i64 {
                let mut x = 0i64;
                for k in (0..n).rev() {
                    x = (x << 8) | i64::from(v[l * n + k]);
                }
                (x << (64 - 8 * n)) >> (64 - 8 * n)
            };
            let lanes = t.lanes as usize;
            for (name, want) in [
                (
                    format!("sign_bits_{t}"),
                    (0..lanes).fold(0u64, |w, l| w | (u64::from(lane(&a, l) < 0) << l)),
                ),
                (
                    format!("sign_bits_lt_{t}"),
                    (0..lanes).fold(0u64, |w, l| w | (u64::from(lane(&a, l) < lane(&b, l)) << l)),
                ),
            ] {
                let f: VFn = unsafe { std::mem::transmute(fn_addr(&j, &name)) };
                let mut out = [0u8; 16];
                f(a.as_ptr(), b.as_ptr(), out.as_mut_ptr());
                let got = u64::from_le_bytes(out[..8].try_into().unwrap());
                assert_eq!(got, want, "{target}: {name}");
            }
        }
    }
    let arm = bnnc_kir::target::Target::parse("aarch64").unwrap();
    let obj = bnnc_cranelift::compile_object(&m, &arm).unwrap();
    assert_eq!(&obj[..4], b"\x7fELF");
}
