//! JIT semantics of scalar kir and control flow through LLVM: shift amounts
//! modulo the width, `f_uno` on either operand, casts, exact float
//! constants, loops (with `end` evaluated once), branches and early
//! returns, calls passing addresses (the pointer analysis), data objects,
//! libm externs; and the errors the backend reports.

mod common;

use bnnc_kir::build::*;
use bnnc_kir::target::Target;
use bnnc_kir::{
    BinOp, CastOp, CmpOp, Data, DataId, Expr, Extern, ExternId, FuncId, Scalar, Stmt, Ty, UnOp,
};
use common::*;

#[test]
fn integer_scalars_on_edge_values() {
    if !llvm("integer_scalars_on_edge_values") {
        return;
    }
    let ops = [
        BinOp::Add,
        BinOp::Sub,
        BinOp::Mul,
        BinOp::Shl,
        BinOp::ShrU,
        BinOp::ShrS,
        BinOp::SMin,
        BinOp::SMax,
    ];
    let mut fs = Vec::new();
    for (si, s) in [Scalar::I8, Scalar::I16, Scalar::I32, Scalar::I64]
        .iter()
        .enumerate()
    {
        let t = Ty::scalar(*s);
        for (oi, &op) in ops.iter().enumerate() {
            // f(a: i64, b: i64) -> i64 = sext(op(trunc a, trunc b))
            let (mut f, p) = func(
                &format!("b{si}_{oi}"),
                &[("a", Ty::I64), ("b", Ty::I64)],
                Some(Ty::I64),
            );
            let narrow = |e: Expr| {
                if t == Ty::I64 {
                    e
                } else {
                    cast(CastOp::Trunc, e, t)
                }
            };
            let r = bin(op, narrow(var(p[0])), narrow(var(p[1])));
            let r = if t == Ty::I64 {
                r
            } else {
                cast(CastOp::SExt, r, Ty::I64)
            };
            f.body.push(Stmt::Return(Some(r)));
            fs.push(f);
        }
        let (mut f, p) = func(&format!("pop{si}"), &[("a", Ty::I64)], Some(Ty::I64));
        let narrow = if t == Ty::I64 {
            var(p[0])
        } else {
            cast(CastOp::Trunc, var(p[0]), t)
        };
        let r = un(UnOp::Popcnt, narrow);
        let r = if t == Ty::I64 {
            r
        } else {
            cast(CastOp::ZExt, r, Ty::I64)
        };
        f.body.push(Stmt::Return(Some(r)));
        fs.push(f);
    }
    let m = module(fs);
    let edges: Vec<i64> = vec![
        0,
        1,
        -1,
        2,
        7,
        8,
        9,
        31,
        32,
        33,
        63,
        64,
        65,
        127,
        128,
        -128,
        -129,
        255,
        i64::MAX,
        i64::MIN,
        0x1234_5678_9abc_def0,
    ];
    type F2 = extern "C" fn(i64, i64) -> i64;
    type F1 = extern "C" fn(i64) -> i64;
    for target in jit_targets() {
        let j = jit(&m, &target);
        for (si, bits) in [8u32, 16, 32, 64].iter().enumerate() {
            let sx = |x: i64| {
                if *bits == 64 {
                    x
                } else {
                    (x << (64 - bits)) >> (64 - bits)
                }
            };
            let mask = if *bits == 64 {
                u64::MAX
            } else {
                (1u64 << bits) - 1
            };
            for (oi, &op) in ops.iter().enumerate() {
                let f: F2 = get(&j, &format!("b{si}_{oi}"));
                for &a in &edges {
                    for &b in &edges {
                        let (x, y) = (sx(a), sx(b));
                        let s = ((y as u64 & mask) % u64::from(*bits)) as u32;
                        let want = sx(match op {
                            BinOp::Add => x.wrapping_add(y),
                            BinOp::Sub => x.wrapping_sub(y),
                            BinOp::Mul => x.wrapping_mul(y),
                            BinOp::Shl => ((x as u64 & mask) << s) as i64,
                            BinOp::ShrU => ((x as u64 & mask) >> s) as i64,
                            BinOp::ShrS => x >> s,
                            BinOp::SMin => x.min(y),
                            _ => x.max(y),
                        });
                        assert_eq!(f(a, b), want, "{target} i{bits} {op:?}({x}, {y})");
                    }
                }
            }
            let f: F1 = get(&j, &format!("pop{si}"));
            for &a in &edges {
                assert_eq!(
                    f(a),
                    i64::from((a as u64 & mask).count_ones()),
                    "{target} popcnt i{bits} {a}"
                );
            }
        }
    }
}

#[test]
fn float_scalars_compares_casts_and_constants() {
    if !llvm("float_scalars_compares_casts_and_constants") {
        return;
    }
    let cmps = [
        CmpOp::FEq,
        CmpOp::FLt,
        CmpOp::FLe,
        CmpOp::FGt,
        CmpOp::FGe,
        CmpOp::FUno,
    ];
    let mut fs = Vec::new();
    for (ci, &op) in cmps.iter().enumerate() {
        // f(a, b) -> i32 = zext(cmp(a, b)) via select on the i8 result
        let (mut f, p) = func(
            &format!("c{ci}"),
            &[("a", Ty::F32), ("b", Ty::F32)],
            Some(Ty::I32),
        );
        f.body.push(Stmt::Return(Some(select(
            cmp(op, var(p[0]), var(p[1])),
            i32c(1),
            i32c(0),
        ))));
        fs.push(f);
    }
    for (i, s) in [Scalar::I8, Scalar::I16, Scalar::I32, Scalar::I64]
        .iter()
        .enumerate()
    {
        let (mut f, p) = func(&format!("itof{i}"), &[("a", Ty::I64)], Some(Ty::F32));
        let x = if *s == Scalar::I64 {
            var(p[0])
        } else {
            cast(CastOp::Trunc, var(p[0]), Ty::scalar(*s))
        };
        f.body
            .push(Stmt::Return(Some(cast(CastOp::SIToF, x, Ty::F32))));
        fs.push(f);
    }
    // bits of a NaN constant with a payload, and of -0.0, round-tripped.
    let (mut f, _) = func("nan_bits", &[], Some(Ty::I32));
    f.body.push(Stmt::Return(Some(cast(
        CastOp::Bitcast,
        Expr::F32(f32::from_bits(0x7fa0_0001)),
        Ty::I32,
    ))));
    fs.push(f);
    let (mut f, _) = func("negzero_bits", &[], Some(Ty::I32));
    f.body.push(Stmt::Return(Some(cast(
        CastOp::Bitcast,
        Expr::F32(-0.0),
        Ty::I32,
    ))));
    fs.push(f);
    // No contraction: a * b + c rounds twice.
    let (mut f, p) = func(
        "mul_add",
        &[("a", Ty::F32), ("b", Ty::F32), ("c", Ty::F32)],
        Some(Ty::F32),
    );
    f.body.push(Stmt::Return(Some(bin(
        BinOp::FAdd,
        bin(BinOp::FMul, var(p[0]), var(p[1])),
        var(p[2]),
    ))));
    fs.push(f);
    let m = module(fs);
    let vals = [
        0.0f32,
        -0.0,
        1.0,
        -2.5,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        1e-45,
    ];
    type C = extern "C" fn(f32, f32) -> i32;
    for target in jit_targets() {
        let j = jit(&m, &target);
        for (ci, &op) in cmps.iter().enumerate() {
            let f: C = get(&j, &format!("c{ci}"));
            for &a in &vals {
                for &b in &vals {
                    let want = match op {
                        CmpOp::FEq => a == b,
                        CmpOp::FLt => a < b,
                        CmpOp::FLe => a <= b,
                        CmpOp::FGt => a > b,
                        CmpOp::FGe => a >= b,
                        // Either operand NaN, not just the first.
                        _ => a.is_nan() || b.is_nan(),
                    };
                    assert_eq!(f(a, b), i32::from(want), "{target} {op:?}({a}, {b})");
                }
            }
        }
        for (i, bits) in [8u32, 16, 32, 64].iter().enumerate() {
            let f: extern "C" fn(i64) -> f32 = get(&j, &format!("itof{i}"));
            for x in [
                0i64,
                -1,
                127,
                -128,
                255,
                16_777_217,
                -16_777_219,
                i64::MAX,
                i64::MIN,
                0x7fff_ffff,
            ] {
                let n = if *bits == 64 {
                    x
                } else {
                    (x << (64 - bits)) >> (64 - bits)
                };
                assert_eq!(
                    f(x).to_bits(),
                    (n as f32).to_bits(),
                    "{target} sitof i{bits} {x}"
                );
            }
        }
        let f: extern "C" fn() -> i32 = get(&j, "nan_bits");
        assert_eq!(f() as u32, 0x7fa0_0001, "{target}");
        let f: extern "C" fn() -> i32 = get(&j, "negzero_bits");
        assert_eq!(f() as u32, 0x8000_0000, "{target}");
        let f: extern "C" fn(f32, f32, f32) -> f32 = get(&j, "mul_add");
        let (a, b, c) = (1.0f32 + f32::EPSILON, 1.0f32 - f32::EPSILON, -1.0f32);
        assert_eq!(
            f(a, b, c).to_bits(),
            (a * b + c).to_bits(),
            "{target}: fused?"
        );
        assert_ne!((a * b + c).to_bits(), a.mul_add(b, c).to_bits());
    }
}

/// `sum_step(start, end) -> i64`: the sum of the loop variable over
/// `start..end step 3`, where the body also shrinks `end`'s variable (the
/// bound was evaluated once) and returns early past 1000.
#[test]
fn loops_branches_and_early_returns() {
    if !llvm("loops_branches_and_early_returns") {
        return;
    }
    let (mut f, p) = func(
        "sum_step",
        &[("start", Ty::I64), ("end", Ty::I64)],
        Some(Ty::I64),
    );
    let i = f.var("i", Ty::I64);
    let acc = f.var("acc", Ty::I64);
    f.body = vec![
        Stmt::For {
            var: i,
            start: var(p[0]),
            end: var(p[1]),
            step: 3,
            body: vec![
                Stmt::Assign(acc, add(var(acc), var(i))),
                Stmt::Assign(p[1], sub(var(p[1]), i64c(100))),
                Stmt::If {
                    cond: cmp(CmpOp::SGt, var(acc), i64c(1000)),
                    then: vec![Stmt::Return(Some(mul(var(acc), i64c(-1))))],
                    els: vec![],
                },
            ],
        },
        Stmt::If {
            cond: cmp(CmpOp::Eq, var(acc), i64c(0)),
            then: vec![Stmt::Return(Some(i64c(-7)))],
            els: vec![Stmt::Return(Some(var(acc)))],
        },
    ];
    let m = module(vec![f]);
    let reference = |start: i64, end: i64| -> i64 {
        let mut acc = 0i64;
        let mut i = start;
        while i < end {
            acc += i;
            if acc > 1000 {
                return -acc;
            }
            i += 3;
        }
        if acc == 0 {
            -7
        } else {
            acc
        }
    };
    for target in jit_targets() {
        let j = jit(&m, &target);
        let f: extern "C" fn(i64, i64) -> i64 = get(&j, "sum_step");
        for (s, e) in [
            (0, 0),
            (5, 3),
            (0, 10),
            (-20, 20),
            (1, 100),
            (0, 1000),
            (-3, 0),
        ] {
            assert_eq!(f(s, e), reference(s, e), "{target} sum_step({s}, {e})");
        }
    }
}

/// A module like the lowering's: an exported entry reads buffer addresses
/// from an array, passes them to a local kernel (so they are pointers
/// there), which reads a data object and calls `expf`, and stores at
/// unaligned addresses.
#[test]
fn calls_data_externs_and_unaligned_memory() {
    if !llvm("calls_data_externs_and_unaligned_memory") {
        return;
    }
    let mut m = module(vec![]);
    let table: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37)).collect();
    m.data.push(Data {
        name: "table".into(),
        align: 64,
        bytes: table.clone(),
    });
    m.externs.push(Extern {
        name: "expf".into(),
        params: vec![Ty::F32],
        ret: Ty::F32,
    });
    // fn kernel(src: i64, dst: i64, n: i64): dst[i] (f32 at 4i+1) = expf(src f32[i]) + table[i]
    let (mut k, p) = func(
        "kernel",
        &[("src", Ty::I64), ("dst", Ty::I64), ("n", Ty::I64)],
        None,
    );
    k.exported = false;
    let i = k.var("i", Ty::I64);
    let byte = load(Ty::I8, addr(Expr::DataAddr(DataId(0)), var(i), 1));
    let e = Expr::CallExtern(ExternId(0), vec![load(Ty::F32, addr(var(p[0]), var(i), 4))]);
    k.body = vec![Stmt::For {
        var: i,
        start: i64c(0),
        end: var(p[2]),
        step: 1,
        body: vec![Stmt::Store {
            addr: add(addr(var(p[1]), var(i), 4), i64c(1)),
            value: bin(BinOp::FAdd, e, cast(CastOp::SIToF, byte, Ty::F32)),
        }],
    }];
    // export fn entry(ptrs: i64, n: i64) -> i32 { call kernel(load ptrs[0], load ptrs[1], n); return 0 }
    let (mut entry, q) = func("entry", &[("ptrs", Ty::I64), ("n", Ty::I64)], Some(Ty::I32));
    let a = entry.var("a", Ty::I64);
    let b = entry.var("b", Ty::I64);
    entry.body = vec![
        Stmt::Assign(a, load(Ty::I64, var(q[0]))),
        Stmt::Assign(b, load(Ty::I64, add(var(q[0]), i64c(8)))),
        Stmt::If {
            cond: cmp(CmpOp::Eq, var(b), i64c(0)),
            then: vec![Stmt::Return(Some(i32c(1)))],
            els: vec![],
        },
        Stmt::Call(FuncId(0), vec![var(a), var(b), var(q[1])]),
        Stmt::Return(Some(i32c(0))),
    ];
    m.functions = vec![k, entry];
    let ir =
        bnnc_llvm::llvm_ir(&m, &Target::host().unwrap(), bnnc_llvm::Stage::Translated).unwrap();
    assert!(
        ir.contains("define internal void @kernel(ptr %src, ptr %dst, i64 %n)"),
        "{ir}"
    );
    assert!(ir.contains("nobuiltin"), "{ir}");
    assert!(
        ir.contains("@table = private unnamed_addr constant [64 x i8]"),
        "{ir}"
    );
    assert!(ir.contains("align 64"), "{ir}");
    let n = 40usize;
    let src: Vec<f32> = (0..n).map(|i| (i as f32 - 20.0) * 0.37).collect();
    for target in jit_targets() {
        let j = jit(&m, &target);
        assert!(j.function("kernel").is_none() || j.function("entry").is_some());
        let f: extern "C" fn(*const u64, i64) -> i32 = get(&j, "entry");
        let mut dst = vec![0u8; 4 * n + 8];
        let ptrs = [src.as_ptr() as u64, dst.as_mut_ptr() as u64];
        assert_eq!(f(ptrs.as_ptr(), n as i64), 0);
        for i in 0..n {
            let got = f32::from_le_bytes(dst[4 * i + 1..4 * i + 5].try_into().unwrap());
            let want = src[i].exp() + table[i] as i8 as f32;
            assert_eq!(got.to_bits(), want.to_bits(), "{target} element {i}");
        }
        let null = [src.as_ptr() as u64, 0];
        assert_eq!(f(null.as_ptr(), n as i64), 1);
    }
}

#[test]
fn errors_are_clear() {
    if !llvm("errors_are_clear") {
        return;
    }
    let (mut f, _) = func("f", &[], None);
    f.body.push(Stmt::Return(None));
    let m = module(vec![f]);
    let e = bnnc_llvm::compile_object(&m, &Target::parse("x86_64:pentium4").unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("unknown CPU `pentium4` for x86_64; LLVM 19 knows: alderlake, "),
        "{e}"
    );
    assert!(e.contains("znver4") && e.ends_with("(and native)"), "{e}");
    let e = bnnc_llvm::compile_object(&m, &Target::parse("riscv64:rocket").unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown CPU `rocket` for riscv64"), "{e}");

    let host = Target::host().unwrap();
    let other = if host.arch == bnnc_kir::target::Arch::Aarch64 {
        "x86_64"
    } else {
        "aarch64"
    };
    let e = bnnc_llvm::Jit::new(&m, &Target::parse(other).unwrap()).unwrap_err();
    assert!(matches!(e, bnnc_llvm::Error::NotRunnable { .. }), "{e:?}");
    assert!(
        e.to_string().contains(&format!("architecture {other}")),
        "{e}"
    );
    // A CPU whose features bnnc does not know cannot be checked against the host.
    let t = Target::new(host.arch).with_cpu("generic").unwrap();
    if host.arch.cpu("generic").is_none() {
        assert!(matches!(
            bnnc_llvm::Jit::new(&m, &t),
            Err(bnnc_llvm::Error::NotRunnable { .. })
        ));
    }

    // A vector select needs a mask with as many lanes.
    let (mut g, p) = func("g", &[("out", Ty::PTR)], None);
    let v4 = Ty::vec(Scalar::I32, 4);
    let mask8 = Expr::Splat(Ty::vec(Scalar::I8, 8), Box::new(Expr::Int(-1, Ty::I8)));
    let v = Expr::Splat(v4, Box::new(i32c(3)));
    g.body.push(Stmt::Store {
        addr: var(p[0]),
        value: select(mask8, v.clone(), v),
    });
    let e = bnnc_llvm::compile_object(&module(vec![g]), &host)
        .unwrap_err()
        .to_string();
    assert!(e.contains("select over i32x4 with a i8x8 condition"), "{e}");
}

/// Objects for each architecture: ELF, the right machine, and on riscv64
/// the double-float ABI (so they link with Debian's LP64D libraries).
#[test]
fn objects_for_every_architecture() {
    if !llvm("objects_for_every_architecture") {
        return;
    }
    let (mut f, p) = func("popsum", &[("a", Ty::PTR), ("n", Ty::I64)], Some(Ty::I64));
    let i = f.var("i", Ty::I64);
    let s = f.var("s", Ty::I64);
    f.body = vec![
        Stmt::For {
            var: i,
            start: i64c(0),
            end: var(p[1]),
            step: 1,
            body: vec![Stmt::Assign(
                s,
                add(
                    var(s),
                    un(UnOp::Popcnt, load(Ty::I64, addr(var(p[0]), var(i), 8))),
                ),
            )],
        },
        Stmt::Return(Some(var(s))),
    ];
    let m = module(vec![f]);
    for (t, machine) in [
        ("x86_64", 62u16),
        ("x86_64:znver4", 62),
        ("aarch64:neoverse-n1", 183),
        ("riscv64", 243),
    ] {
        let o = bnnc_llvm::compile_object(&m, &Target::parse(t).unwrap()).unwrap();
        assert_eq!(&o[..4], b"\x7fELF", "{t}");
        assert_eq!(o[16], 1, "{t}: relocatable");
        assert_eq!(u16::from_le_bytes([o[18], o[19]]), machine, "{t}");
        if t == "riscv64" {
            let flags = u32::from_le_bytes(o[48..52].try_into().unwrap());
            assert_eq!(
                flags & 0x6,
                0x4,
                "{t}: e_flags {flags:#x} is not the double-float ABI"
            );
        }
    }
    let asm = bnnc_llvm::assembly(&m, &Target::parse("x86_64:znver4").unwrap()).unwrap();
    assert!(asm.contains("vpopcntq"), "{asm}");
    let ir = bnnc_llvm::llvm_ir(
        &m,
        &Target::parse("aarch64:neoverse-n1").unwrap(),
        bnnc_llvm::Stage::Optimized,
    )
    .unwrap();
    assert!(ir.contains("\"target-cpu\"=\"neoverse-n1\""), "{ir}");
}
