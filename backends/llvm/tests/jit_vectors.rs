//! JIT semantics of vector kir of every width (64 to 512 bits, so wider
//! than any Cranelift vector), lane by lane against Rust, on every runnable
//! target: the baseline (LLVM splits wide vectors into SSE2 registers), the
//! host's features, and the host's CPU (AVX-512 where it has it).

mod common;

use bnnc_kir::build::*;
use bnnc_kir::{BinOp, CastOp, CmpOp, Expr, Function, Scalar, Stmt, Ty, UnOp};
use common::*;

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

const FCMPS: [CmpOp; 6] = [
    CmpOp::FEq,
    CmpOp::FLt,
    CmpOp::FLe,
    CmpOp::FGt,
    CmpOp::FGe,
    CmpOp::FUno,
];

type VFn = extern "C" fn(*const u8, *const u8, *mut u8);

/// `name(a, b, out)`: `*out = body(load a, load b)`.
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
    if bits == 64 {
        x
    } else {
        (x << (64 - bits)) >> (64 - bits)
    }
}

fn lanes_of(v: &[u8], bits: u32) -> Vec<i64> {
    let n = (bits / 8) as usize;
    v.chunks(n)
        .map(|c| {
            let mut b = [0u8; 8];
            b[..n].copy_from_slice(c);
            sx(i64::from_le_bytes(b), bits)
        })
        .collect()
}

fn ref_bin(op: BinOp, a: i64, b: i64, bits: u32) -> i64 {
    let mask = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let ua = a as u64 & mask;
    let s = (b as u64 % u64::from(bits)) as u32;
    let r = match op {
        BinOp::Add => a.wrapping_add(b),
        BinOp::Sub => a.wrapping_sub(b),
        BinOp::Mul => a.wrapping_mul(b),
        BinOp::And => a & b,
        BinOp::Or => a | b,
        BinOp::Xor => a ^ b,
        BinOp::Shl => ((ua << s) & mask) as i64,
        BinOp::ShrU => (ua >> s) as i64,
        BinOp::ShrS => a >> s,
        BinOp::SMin => a.min(b),
        BinOp::SMax => a.max(b),
        _ => unreachable!(),
    };
    sx(r, bits)
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

/// Lane types and counts: 64, 128, 256 and 512 bits, and an odd 3-lane
/// vector.
fn shapes() -> Vec<Ty> {
    let mut v = Vec::new();
    for s in [Scalar::I8, Scalar::I16, Scalar::I32, Scalar::I64] {
        for bits in [64u32, 128, 256, 512] {
            let lanes = bits / s.bits();
            if lanes >= 2 {
                v.push(Ty::vec(s, lanes as u16));
            }
        }
        v.push(Ty::vec(s, 3));
    }
    v
}

/// Inputs with edge values in some lanes and small shift amounts in others.
fn inputs(t: Ty, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let n = t.bytes() as usize;
    let mut a = bytes(seed, n);
    let mut b = bytes(seed + 1, n);
    let w = (t.scalar.bits() / 8) as usize;
    // Lane 0 equal, lane 1 of `a` all ones / of `b` zero, so compares and
    // min/max see ties and extremes.
    a[..w].copy_from_slice(&b[..w]);
    if t.lanes > 2 {
        a[w..2 * w].fill(0xff);
        b[w..2 * w].fill(0);
        b[2 * w] = (t.scalar.bits() + 3) as u8; // shift by more than the width
        b[2 * w + 1..3 * w].fill(0);
    }
    (a, b)
}

#[test]
fn integer_vectors_of_every_width() {
    if !llvm("integer_vectors_of_every_width") {
        return;
    }
    let shapes = shapes();
    let mut fs = Vec::new();
    for (si, &t) in shapes.iter().enumerate() {
        for (oi, &op) in BINOPS.iter().enumerate() {
            fs.push(vfn(&format!("bin_{si}_{oi}"), t, |a, b| bin(op, a, b)));
        }
        for (ci, &op) in CMPS.iter().enumerate() {
            fs.push(vfn(&format!("cmp_{si}_{ci}"), t, |a, b| cmp(op, a, b)));
            // select by that mask
            fs.push(vfn(&format!("sel_{si}_{ci}"), t, |a, b| {
                select(cmp(op, a.clone(), b.clone()), a, b)
            }));
        }
        for (ui, &op) in [UnOp::Popcnt, UnOp::Not, UnOp::Neg].iter().enumerate() {
            fs.push(vfn(&format!("un_{si}_{ui}"), t, |a, _| un(op, a)));
        }
        // reduce_add, stored as the lane type
        fs.push(vfn(&format!("red_{si}"), t, |a, _| {
            Expr::ReduceAdd(Box::new(a))
        }));
        // splat of lane 0 of a scalar load
        fs.push(vfn(&format!("splat_{si}"), t, |_, _| {
            Expr::Splat(t, Box::new(load(t.lane(), var(bnnc_kir::VarId(0)))))
        }));
    }
    let m = module(fs);
    for target in jit_targets() {
        let j = jit(&m, &target);
        for (si, &t) in shapes.iter().enumerate() {
            let bits = t.scalar.bits();
            let n = t.bytes() as usize;
            for seed in [1u64, 7, 99] {
                let (a, b) = inputs(t, seed);
                let (la, lb) = (lanes_of(&a, bits), lanes_of(&b, bits));
                let run = |name: &str, out_bytes: usize| -> Vec<u8> {
                    let f: VFn = get(&j, name);
                    let mut out = vec![0u8; out_bytes];
                    f(a.as_ptr(), b.as_ptr(), out.as_mut_ptr());
                    out
                };
                let ctx = |what: &str| format!("{target} {t} seed {seed}: {what}");
                for (oi, &op) in BINOPS.iter().enumerate() {
                    let got = lanes_of(&run(&format!("bin_{si}_{oi}"), n), bits);
                    let want: Vec<i64> = la
                        .iter()
                        .zip(&lb)
                        .map(|(&x, &y)| ref_bin(op, x, y, bits))
                        .collect();
                    assert_eq!(got, want, "{}", ctx(&format!("{op:?}")));
                }
                for (ci, &op) in CMPS.iter().enumerate() {
                    let got = lanes_of(&run(&format!("cmp_{si}_{ci}"), n), bits);
                    let want: Vec<i64> = la
                        .iter()
                        .zip(&lb)
                        .map(|(&x, &y)| -i64::from(ref_cmp(op, x, y, bits)))
                        .collect();
                    assert_eq!(got, want, "{}", ctx(&format!("{op:?}")));
                    let got = lanes_of(&run(&format!("sel_{si}_{ci}"), n), bits);
                    let want: Vec<i64> = la
                        .iter()
                        .zip(&lb)
                        .map(|(&x, &y)| if ref_cmp(op, x, y, bits) { x } else { y })
                        .collect();
                    assert_eq!(got, want, "{}", ctx(&format!("select by {op:?}")));
                }
                let mask = if bits == 64 {
                    u64::MAX
                } else {
                    (1u64 << bits) - 1
                };
                for (ui, name) in ["popcnt", "not", "neg"].iter().enumerate() {
                    let got = lanes_of(&run(&format!("un_{si}_{ui}"), n), bits);
                    let want: Vec<i64> = la
                        .iter()
                        .map(|&x| match ui {
                            0 => i64::from((x as u64 & mask).count_ones()),
                            1 => sx(!x, bits),
                            _ => sx(x.wrapping_neg(), bits),
                        })
                        .collect();
                    assert_eq!(got, want, "{}", ctx(name));
                }
                let got = lanes_of(&run(&format!("red_{si}"), (bits / 8) as usize), bits);
                let want = sx(la.iter().fold(0i64, |s, &x| s.wrapping_add(x)), bits);
                assert_eq!(got, vec![want], "{}", ctx("reduce_add"));
                let got = lanes_of(&run(&format!("splat_{si}"), n), bits);
                assert_eq!(got, vec![la[0]; t.lanes as usize], "{}", ctx("splat"));
            }
        }
    }
}

fn f32s(v: &[u8]) -> Vec<f32> {
    v.chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn f32_bytes(x: &[f32]) -> Vec<u8> {
    x.iter().flat_map(|f| f.to_le_bytes()).collect()
}

fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

#[test]
fn float_vectors_of_every_width() {
    if !llvm("float_vectors_of_every_width") {
        return;
    }
    let specials = [
        0.0f32,
        -0.0,
        1.0,
        -1.5,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        1e-40,
        3.4e38,
        -7.25,
        0.1,
        1e8,
        -1e-8,
        2.0,
        f32::MIN_POSITIVE,
        0.3,
    ];
    let mut fs = Vec::new();
    let widths = [2u16, 4, 8, 16];
    let fops = [BinOp::FAdd, BinOp::FSub, BinOp::FMul, BinOp::FDiv];
    for (wi, &lanes) in widths.iter().enumerate() {
        let t = Ty::vec(Scalar::F32, lanes);
        for (oi, &op) in fops.iter().enumerate() {
            fs.push(vfn(&format!("f_{wi}_{oi}"), t, |a, b| bin(op, a, b)));
        }
        for (ci, &op) in FCMPS.iter().enumerate() {
            fs.push(vfn(&format!("fc_{wi}_{ci}"), t, |a, b| cmp(op, a, b)));
            fs.push(vfn(&format!("fs_{wi}_{ci}"), t, |a, b| {
                select(cmp(op, a.clone(), b.clone()), a, b)
            }));
        }
        fs.push(vfn(&format!("neg_{wi}"), t, |a, _| un(UnOp::FNeg, a)));
        fs.push(vfn(&format!("sqrt_{wi}"), t, |a, _| un(UnOp::FSqrt, a)));
        fs.push(vfn(&format!("red_{wi}"), t, |a, _| {
            Expr::ReduceAdd(Box::new(a))
        }));
        let it = Ty::vec(Scalar::I32, lanes);
        fs.push(vfn(&format!("itof_{wi}"), it, |a, _| {
            cast(CastOp::SIToF, a, t)
        }));
    }
    let m = module(fs);
    for target in jit_targets() {
        let j = jit(&m, &target);
        for (wi, &lanes) in widths.iter().enumerate() {
            let n = lanes as usize;
            for rot in 0..specials.len() {
                let a: Vec<f32> = (0..n).map(|i| specials[(i + rot) % 16]).collect();
                let b: Vec<f32> = (0..n).map(|i| specials[(i * 7 + rot + 3) % 16]).collect();
                let (ab, bb) = (f32_bytes(&a), f32_bytes(&b));
                let run = |name: &str, out: usize| {
                    let f: VFn = get(&j, name);
                    let mut o = vec![0u8; out];
                    f(ab.as_ptr(), bb.as_ptr(), o.as_mut_ptr());
                    o
                };
                let ctx = |w: &str| format!("{target} f32x{lanes} {a:?} {b:?}: {w}");
                for (oi, &op) in fops.iter().enumerate() {
                    let got = f32s(&run(&format!("f_{wi}_{oi}"), 4 * n));
                    for i in 0..n {
                        let want = match op {
                            BinOp::FAdd => a[i] + b[i],
                            BinOp::FSub => a[i] - b[i],
                            BinOp::FMul => a[i] * b[i],
                            _ => a[i] / b[i],
                        };
                        assert!(same(got[i], want), "{} lane {i}", ctx(&format!("{op:?}")));
                    }
                }
                for (ci, &op) in FCMPS.iter().enumerate() {
                    let truth = |x: f32, y: f32| match op {
                        CmpOp::FEq => x == y,
                        CmpOp::FLt => x < y,
                        CmpOp::FLe => x <= y,
                        CmpOp::FGt => x > y,
                        CmpOp::FGe => x >= y,
                        _ => x.is_nan() || y.is_nan(),
                    };
                    let got = lanes_of(&run(&format!("fc_{wi}_{ci}"), 4 * n), 32);
                    let want: Vec<i64> = (0..n).map(|i| -i64::from(truth(a[i], b[i]))).collect();
                    assert_eq!(got, want, "{}", ctx(&format!("{op:?}")));
                    let got = f32s(&run(&format!("fs_{wi}_{ci}"), 4 * n));
                    for i in 0..n {
                        let want = if truth(a[i], b[i]) { a[i] } else { b[i] };
                        assert_eq!(got[i].to_bits(), want.to_bits(), "{}", ctx("select"));
                    }
                }
                let got = f32s(&run(&format!("neg_{wi}"), 4 * n));
                for i in 0..n {
                    assert_eq!(got[i].to_bits(), (-a[i]).to_bits(), "{}", ctx("fneg"));
                }
                let got = f32s(&run(&format!("sqrt_{wi}"), 4 * n));
                for i in 0..n {
                    assert!(same(got[i], a[i].sqrt()), "{}", ctx("sqrt"));
                }
                // In lane order, exactly: ((l0 + l1) + l2) + ...
                let got = f32s(&run(&format!("red_{wi}"), 4))[0];
                let want = a[1..].iter().fold(a[0], |s, &x| s + x);
                assert!(same(got, want), "{}: {got} vs {want}", ctx("reduce_add"));
                let ints: Vec<i32> = a.iter().map(|x| x.to_bits() as i32).collect();
                let ib: Vec<u8> = ints.iter().flat_map(|x| x.to_le_bytes()).collect();
                let f: VFn = get(&j, &format!("itof_{wi}"));
                let mut o = vec![0u8; 4 * n];
                f(ib.as_ptr(), ib.as_ptr(), o.as_mut_ptr());
                let got = f32s(&o);
                for i in 0..n {
                    assert_eq!(
                        got[i].to_bits(),
                        (ints[i] as f32).to_bits(),
                        "{}",
                        ctx("sitof")
                    );
                }
            }
        }
    }
}

/// An ordered f32 reduction is not reassociated: a sum whose value depends
/// on the order (1e8 + 1 - 1e8 ...) comes out as the in-order one.
#[test]
fn float_reduction_keeps_lane_order() {
    if !llvm("float_reduction_keeps_lane_order") {
        return;
    }
    let t = Ty::vec(Scalar::F32, 16);
    let m = module(vec![vfn("red", t, |a, _| Expr::ReduceAdd(Box::new(a)))]);
    let x: Vec<f32> = (0..16)
        .map(|i| match i % 4 {
            0 => 1e8,
            1 => 1.0,
            2 => -1e8,
            _ => 0.5 + i as f32,
        })
        .collect();
    let want = x[1..].iter().fold(x[0], |s, &v| s + v);
    let pairwise: f32 = x.chunks(2).map(|c| c[0] + c[1]).sum();
    assert_ne!(
        want.to_bits(),
        pairwise.to_bits(),
        "the input must tell orders apart"
    );
    for target in jit_targets() {
        let j = jit(&m, &target);
        let f: VFn = get(&j, "red");
        let xb = f32_bytes(&x);
        let mut o = [0u8; 4];
        f(xb.as_ptr(), xb.as_ptr(), o.as_mut_ptr());
        assert_eq!(f32s(&o)[0].to_bits(), want.to_bits(), "{target}");
    }
}

/// `extract(v, i)`: every lane of integer and float vectors of every width,
/// stored as the lane type (and only its bytes written).
#[test]
fn extract_every_lane_of_every_width() {
    if !llvm("extract_every_lane_of_every_width") {
        return;
    }
    let mut types = shapes();
    for bits in [64u32, 128, 256, 512] {
        types.push(Ty::vec(Scalar::F32, (bits / 32) as u16));
    }
    // The first, second, a middle and the last lane of each type.
    let picks = |t: Ty| {
        let mut l = vec![0, 1, t.lanes / 2, t.lanes - 1];
        l.dedup();
        l
    };
    let mut fns = Vec::new();
    for &t in &types {
        for i in picks(t) {
            fns.push(vfn(&format!("extract_{t}_{i}"), t, |a, _| {
                Expr::Extract(Box::new(a), i)
            }));
        }
    }
    let m = module(fns);
    for target in jit_targets() {
        let j = jit(&m, &target);
        for &t in &types {
            let (a, _) = inputs(t, 11);
            let n = t.scalar.bits() as usize / 8;
            for i in picks(t).into_iter().map(usize::from) {
                let name = format!("extract_{t}_{i}");
                let f: VFn = get(&j, &name);
                let mut out = vec![0u8; 64];
                f(a.as_ptr(), a.as_ptr(), out.as_mut_ptr());
                assert_eq!(out[..n], a[i * n..(i + 1) * n], "{target}: {name}");
                assert!(
                    out[n..].iter().all(|&x| x == 0),
                    "{target}: {name} wrote past the lane"
                );
            }
        }
    }
}

/// `sign_bits(v)`: bit l of the i64 result is lane l's top bit, for integer
/// vectors of every width and lane size (up to 64 lanes), on raw lanes and
/// on compare masks.
#[test]
fn sign_bits_of_every_width() {
    if !llvm("sign_bits_of_every_width") {
        return;
    }
    let types: Vec<Ty> = shapes()
        .into_iter()
        .filter(|t| !t.scalar.is_float() && t.lanes <= 64)
        .collect();
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
    for target in jit_targets() {
        let j = jit(&m, &target);
        for &t in &types {
            let (a, b) = inputs(t, 5);
            let n = t.scalar.bits() as usize / 8;
            let lane = |v: &[u8], l: usize| -> i64 {
                let mut x = 0i64;
                for k in (0..n).rev() {
                    x = (x << 8) | i64::from(v[l * n + k]);
                }
                (x << (64 - 8 * n)) >> (64 - 8 * n)
            };
            for (name, want) in [
                (
                    format!("sign_bits_{t}"),
                    (0..t.lanes as usize).fold(0u64, |w, l| w | (u64::from(lane(&a, l) < 0) << l)),
                ),
                (
                    format!("sign_bits_lt_{t}"),
                    (0..t.lanes as usize)
                        .fold(0u64, |w, l| w | (u64::from(lane(&a, l) < lane(&b, l)) << l)),
                ),
            ] {
                let f: VFn = get(&j, &name);
                let mut out = vec![0u8; 64];
                f(a.as_ptr(), b.as_ptr(), out.as_mut_ptr());
                let got = u64::from_le_bytes(out[..8].try_into().unwrap());
                assert_eq!(got, want, "{target}: {name}");
            }
        }
    }
}
