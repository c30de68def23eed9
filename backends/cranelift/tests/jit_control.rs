//! JIT semantics of control flow, memory, calls, externs and data objects.

mod common;

use bnnc_kir::build::*;
use bnnc_kir::{
    BinOp, CastOp, CmpOp, Data, DataId, Expr, Extern, ExternId, FuncId, Function, Stmt, Ty, UnOp,
};
use common::*;

type F1 = extern "C" fn(i64) -> i64;
type F2 = extern "C" fn(i64, i64) -> i64;
type F3 = extern "C" fn(i64, i64, i64) -> i64;

fn get<F: Copy>(j: &bnnc_cranelift::Jit, name: &str) -> F {
    assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<*const u8>());
    let p = fn_addr(j, name);
    // SAFETY: the tests only ask for functions of type `F`.
    unsafe { std::mem::transmute_copy(&p) }
}

/// `sum_stepN(start, end) = sum of i for i in start..end step N`.
fn sum_step(step: i64) -> Function {
    let (mut f, p) = func(
        &format!("sum_step{step}"),
        &[("start", Ty::I64), ("end", Ty::I64)],
        Some(Ty::I64),
    );
    let acc = f.var("acc", Ty::I64);
    let i = f.var("i", Ty::I64);
    f.body = vec![
        Stmt::Assign(acc, i64c(0)),
        Stmt::For {
            var: i,
            start: var(p[0]),
            end: var(p[1]),
            step,
            body: vec![Stmt::Assign(acc, add(var(acc), var(i)))],
        },
        Stmt::Return(Some(var(acc))),
    ];
    f
}

fn ref_sum_step(start: i64, end: i64, step: i64) -> i64 {
    let (mut i, mut acc) = (start, 0i64);
    while i < end {
        acc = acc.wrapping_add(i);
        i = i.wrapping_add(step);
    }
    acc
}

#[test]
fn counted_loops() {
    let mut fns: Vec<Function> = [1, 2, 3, 7].into_iter().map(sum_step).collect();

    // `end` is evaluated once: growing it in the body does not extend the loop.
    let (mut f, p) = func("end_once", &[("n", Ty::I64)], Some(Ty::I64));
    let (m, acc, i) = (
        f.var("m", Ty::I64),
        f.var("acc", Ty::I64),
        f.var("i", Ty::I64),
    );
    f.body = vec![
        Stmt::Assign(m, var(p[0])),
        Stmt::Assign(acc, i64c(0)),
        Stmt::For {
            var: i,
            start: i64c(0),
            end: var(m),
            step: 1,
            body: vec![
                Stmt::Assign(m, add(var(m), i64c(1))),
                Stmt::Assign(acc, add(var(acc), i64c(1))),
            ],
        },
        Stmt::Return(Some(add(mul(var(acc), i64c(1000)), var(m)))),
    ];
    fns.push(f);

    // The body may write the loop variable; the step applies to its new value.
    let (mut f, p) = func("skip", &[("n", Ty::I64)], Some(Ty::I64));
    let (acc, i) = (f.var("acc", Ty::I64), f.var("i", Ty::I64));
    f.body = vec![
        Stmt::Assign(acc, i64c(0)),
        Stmt::For {
            var: i,
            start: i64c(0),
            end: var(p[0]),
            step: 1,
            body: vec![
                Stmt::Assign(acc, add(mul(var(acc), i64c(10)), var(i))),
                Stmt::Assign(i, add(var(i), i64c(2))),
            ],
        },
        Stmt::Return(Some(var(acc))),
    ];
    fns.push(f);

    // Nested: sum over i < n, j < i of i * j + 1.
    let (mut f, p) = func("nested", &[("n", Ty::I64)], Some(Ty::I64));
    let (acc, i, j) = (
        f.var("acc", Ty::I64),
        f.var("i", Ty::I64),
        f.var("j", Ty::I64),
    );
    f.body = vec![
        Stmt::Assign(acc, i64c(0)),
        Stmt::For {
            var: i,
            start: i64c(0),
            end: var(p[0]),
            step: 1,
            body: vec![Stmt::For {
                var: j,
                start: i64c(0),
                end: var(i),
                step: 1,
                body: vec![Stmt::Assign(
                    acc,
                    add(var(acc), add(mul(var(i), var(j)), i64c(1))),
                )],
            }],
        },
        Stmt::Return(Some(var(acc))),
    ];
    fns.push(f);

    // Signed comparison of the loop bound: start -3 runs to end 2.
    let m = module(fns);
    for t in jit_targets() {
        let j = jit(&m, &t);
        for step in [1, 2, 3, 7] {
            let f: F2 = get(&j, &format!("sum_step{step}"));
            for (s, e) in [
                (0, 0),
                (5, 5),
                (9, 3),
                (0, 1),
                (0, 10),
                (-3, 2),
                (-20, -7),
                (1, 100),
                (i64::MIN, i64::MIN + 5),
            ] {
                assert_eq!(
                    f(s, e),
                    ref_sum_step(s, e, step),
                    "{t}: step {step} {s}..{e}"
                );
            }
        }
        let end_once: F1 = get(&j, "end_once");
        assert_eq!(end_once(0), 0);
        assert_eq!(end_once(5), 5 * 1000 + 10);
        let skip: F1 = get(&j, "skip");
        // i = 0, 3, 6: acc = ((0 * 10 + 0) * 10 + 3) * 10 + 6.
        assert_eq!(skip(7), 36);
        assert_eq!(skip(0), 0);
        let nested: F1 = get(&j, "nested");
        for n in [0, 1, 2, 5, 13] {
            let mut want = 0;
            for i in 0..n {
                for jj in 0..i {
                    want += i * jj + 1;
                }
            }
            assert_eq!(nested(n), want, "{t}: nested({n})");
        }
    }
}

#[test]
fn branches_and_early_returns() {
    // clamp(x, lo, hi) with nested ifs and an if without else.
    let (mut f, p) = func(
        "clamp",
        &[("x", Ty::I64), ("lo", Ty::I64), ("hi", Ty::I64)],
        Some(Ty::I64),
    );
    let r = f.var("r", Ty::I64);
    f.body = vec![
        Stmt::Assign(r, var(p[0])),
        Stmt::If {
            cond: cmp(CmpOp::SLt, var(p[0]), var(p[1])),
            then: vec![Stmt::Assign(r, var(p[1]))],
            els: vec![Stmt::If {
                cond: cmp(CmpOp::SGt, var(p[0]), var(p[2])),
                then: vec![Stmt::Assign(r, var(p[2]))],
                els: vec![],
            }],
        },
        Stmt::Return(Some(var(r))),
    ];
    // isqrt(x): the first i with i * i > x, minus one; returns from inside
    // the loop, and -1 after it (for negative x).
    let (mut g, q) = func("isqrt", &[("x", Ty::I64)], Some(Ty::I64));
    let i = g.var("i", Ty::I64);
    g.body = vec![
        Stmt::For {
            var: i,
            start: i64c(0),
            end: add(var(q[0]), i64c(2)),
            step: 1,
            body: vec![Stmt::If {
                cond: cmp(CmpOp::SGt, mul(var(i), var(i)), var(q[0])),
                then: vec![Stmt::Return(Some(sub(var(i), i64c(1))))],
                els: vec![],
            }],
        },
        Stmt::Return(Some(i64c(-1))),
    ];
    // sign(x): both arms return; the statement after the if is unreachable.
    let (mut h, q) = func("sign", &[("x", Ty::I64)], Some(Ty::I64));
    h.body = vec![
        Stmt::If {
            cond: cmp(CmpOp::SLt, var(q[0]), i64c(0)),
            then: vec![Stmt::Return(Some(i64c(-1)))],
            els: vec![Stmt::If {
                cond: cmp(CmpOp::Eq, var(q[0]), i64c(0)),
                then: vec![Stmt::Return(Some(i64c(0)))],
                els: vec![Stmt::Return(Some(i64c(1)))],
            }],
        },
        Stmt::Return(Some(i64c(99))),
    ];
    let m = module(vec![f, g, h]);
    for t in jit_targets() {
        let j = jit(&m, &t);
        let clamp: F3 = get(&j, "clamp");
        assert_eq!(clamp(5, 0, 10), 5);
        assert_eq!(clamp(-5, 0, 10), 0);
        assert_eq!(clamp(50, 0, 10), 10);
        let isqrt: F1 = get(&j, "isqrt");
        for x in [0, 1, 2, 3, 4, 15, 16, 17, 1000] {
            assert_eq!(isqrt(x), (x as f64).sqrt() as i64, "{t}: isqrt({x})");
        }
        assert_eq!(isqrt(-5), -1);
        let sign: F1 = get(&j, "sign");
        assert_eq!((sign(-3), sign(0), sign(8)), (-1, 0, 1));
    }
}

#[test]
fn unaligned_loads_and_stores() {
    // copy(src, dst): loads of every type at odd addresses of src, stored at
    // other odd addresses of dst.
    let (mut f, p) = func("copy", &[("src", Ty::PTR), ("dst", Ty::PTR)], None);
    let at = |base: usize, off: i64| add(var(p[base]), i64c(off));
    let moves: [(Ty, i64, i64); 7] = [
        (Ty::I8, 1, 0),
        (Ty::I16, 1, 1),
        (Ty::I32, 3, 3),
        (Ty::I64, 5, 7),
        (Ty::F32, 9, 15),
        (Ty::vec(bnnc_kir::Scalar::I32, 4), 13, 19),
        (Ty::vec(bnnc_kir::Scalar::I8, 16), 31, 35),
    ];
    for (t, s, d) in moves {
        f.body.push(Stmt::Store {
            addr: at(1, d),
            value: load(t, at(0, s)),
        });
    }
    // sum16(p) reads an i16 at p + 1 and sign-extends it.
    let (mut g, q) = func("sext16", &[("p", Ty::PTR)], Some(Ty::I64));
    g.body.push(Stmt::Return(Some(cast(
        CastOp::SExt,
        load(Ty::I16, add(var(q[0]), i64c(1))),
        Ty::I64,
    ))));
    let m = module(vec![f, g]);
    let src = bytes(11, 64);
    for t in jit_targets() {
        let j = jit(&m, &t);
        let copy: extern "C" fn(*const u8, *mut u8) = get(&j, "copy");
        let mut dst = vec![0u8; 64];
        copy(src.as_ptr(), dst.as_mut_ptr());
        let mut want = vec![0u8; 64];
        for (ty, s, d) in moves {
            let n = ty.bytes() as usize;
            let (s, d) = (s as usize, d as usize);
            want[d..d + n].copy_from_slice(&src[s..s + n]);
        }
        assert_eq!(dst, want, "{t}");
        let sext16: extern "C" fn(*const u8) -> i64 = get(&j, "sext16");
        let buf = [0u8, 0x34, 0x92, 0];
        assert_eq!(
            sext16(buf.as_ptr()),
            i16::from_le_bytes([0x34, 0x92]) as i64
        );
    }
}

/// popsum(p, n) = sum of popcount of the n i64 words at p.
fn popsum() -> Function {
    let (mut f, p) = func("popsum", &[("p", Ty::PTR), ("n", Ty::I64)], Some(Ty::I64));
    let (acc, i) = (f.var("acc", Ty::I64), f.var("i", Ty::I64));
    f.body = vec![
        Stmt::Assign(acc, i64c(0)),
        Stmt::For {
            var: i,
            start: i64c(0),
            end: var(p[1]),
            step: 1,
            body: vec![Stmt::Assign(
                acc,
                add(
                    var(acc),
                    un(UnOp::Popcnt, load(Ty::I64, addr(var(p[0]), var(i), 8))),
                ),
            )],
        },
        Stmt::Return(Some(var(acc))),
    ];
    f
}

#[test]
fn popcount_of_a_buffer() {
    let m = module(vec![popsum()]);
    let data = bytes(3, 8 * 1001);
    let mut words: Vec<u64> = data
        .chunks(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    words.extend([0, u64::MAX, 1 << 63, 0x8000_0000_0000_0001]);
    let want: i64 = words.iter().map(|w| w.count_ones() as i64).sum();
    for t in jit_targets() {
        let j = jit(&m, &t);
        let f: extern "C" fn(*const u64, i64) -> i64 = get(&j, "popsum");
        assert_eq!(f(words.as_ptr(), words.len() as i64), want, "{t}");
        assert_eq!(f(words.as_ptr(), 0), 0);
    }
}

#[test]
fn calls_externs_and_data() {
    let table: Vec<i32> = vec![3, -1, 4, 1, -5, 9, 2, -6, 5, 3];
    let mut m = module(vec![]);
    m.data.push(Data {
        name: "table".into(),
        align: 64,
        bytes: table.iter().flat_map(|x| x.to_le_bytes()).collect(),
    });
    m.data.push(Data {
        name: "bytes".into(),
        align: 1,
        bytes: vec![0xff, 0x01],
    });
    // An empty object (an unused table) is fine too.
    m.data.push(Data {
        name: "empty".into(),
        align: 8,
        bytes: vec![],
    });
    m.externs.push(Extern {
        name: "expf".into(),
        params: vec![Ty::F32],
        ret: Ty::F32,
    });

    // A local helper: *p = x * x.
    let (mut sq, p) = func("store_square", &[("p", Ty::PTR), ("x", Ty::I64)], None);
    sq.exported = false;
    sq.body = vec![Stmt::Store {
        addr: var(p[0]),
        value: mul(var(p[1]), var(p[1])),
    }];
    // squares(out, n): out[i] = i * i through the helper.
    let (mut f, p) = func("squares", &[("out", Ty::PTR), ("n", Ty::I64)], None);
    let i = f.var("i", Ty::I64);
    f.body = vec![Stmt::For {
        var: i,
        start: i64c(0),
        end: var(p[1]),
        step: 1,
        body: vec![Stmt::Call(
            FuncId(0),
            vec![addr(var(p[0]), var(i), 8), var(i)],
        )],
    }];
    // table_sum() = sum of the table's i32 entries, widened.
    let (mut g, _) = func("table_sum", &[], Some(Ty::I64));
    let (acc, k) = (g.var("acc", Ty::I64), g.var("k", Ty::I64));
    g.body = vec![
        Stmt::Assign(acc, i64c(0)),
        Stmt::For {
            var: k,
            start: i64c(0),
            end: i64c(table.len() as i64),
            step: 1,
            body: vec![Stmt::Assign(
                acc,
                add(
                    var(acc),
                    cast(
                        CastOp::SExt,
                        load(Ty::I32, addr(Expr::DataAddr(DataId(0)), var(k), 4)),
                        Ty::I64,
                    ),
                ),
            )],
        },
        Stmt::Return(Some(var(acc))),
    ];
    // table_addr() = address of the table (to check its alignment); byte0()
    // reads the second data object.
    let (mut h, _) = func("table_addr", &[], Some(Ty::I64));
    h.body = vec![Stmt::Return(Some(Expr::DataAddr(DataId(0))))];
    let (mut b1, _) = func("byte0", &[], Some(Ty::I64));
    b1.body = vec![Stmt::Return(Some(cast(
        CastOp::ZExt,
        load(Ty::I8, Expr::DataAddr(DataId(1))),
        Ty::I64,
    )))];
    // logistic(x) = expf(x) / (1 + expf(x)).
    let (mut e, q) = func("logistic", &[("x", Ty::F32)], Some(Ty::F32));
    let ex = Expr::CallExtern(ExternId(0), vec![var(q[0])]);
    e.body = vec![Stmt::Return(Some(bin(
        BinOp::FDiv,
        ex.clone(),
        bin(BinOp::FAdd, f32c(1.0), ex),
    )))];
    // call_sum() calls an exported function that has a result, discarding it.
    let (mut tw, _) = func("call_sum", &[], Some(Ty::I64));
    tw.body = vec![Stmt::Call(FuncId(2), vec![]), Stmt::Return(Some(i64c(1)))];
    m.functions = vec![sq, f, g, h, b1, e, tw];
    let host = bnnc_kir::target::Target::host().unwrap();
    let obj = bnnc_cranelift::compile_object(&m, &host).unwrap();
    assert_eq!(&obj[..4], b"\x7fELF");

    for t in jit_targets() {
        let j = jit(&m, &t);
        let squares: extern "C" fn(*mut i64, i64) = get(&j, "squares");
        let mut out = vec![-1i64; 12];
        squares(out.as_mut_ptr(), 10);
        let want: Vec<i64> = (0..12).map(|i| if i < 10 { i * i } else { -1 }).collect();
        assert_eq!(out, want, "{t}");
        assert!(
            j.function("store_square").is_some(),
            "local functions are found too"
        );
        let table_sum: extern "C" fn() -> i64 = get(&j, "table_sum");
        assert_eq!(table_sum(), table.iter().map(|&x| x as i64).sum::<i64>());
        let table_addr: extern "C" fn() -> i64 = get(&j, "table_addr");
        assert_eq!(table_addr() % 64, 0, "{t}: data alignment");
        let byte0: extern "C" fn() -> i64 = get(&j, "byte0");
        assert_eq!(byte0(), 0xff);
        let logistic: extern "C" fn(f32) -> f32 = get(&j, "logistic");
        for x in [-3.0f32, 0.0, 0.5, 10.0] {
            let x = std::hint::black_box(x);
            let want = x.exp() / (1.0 + x.exp());
            assert_eq!(logistic(x).to_bits(), want.to_bits(), "{t}: logistic({x})");
        }
        let call_sum: extern "C" fn() -> i64 = get(&j, "call_sum");
        assert_eq!(call_sum(), 1);
        assert!(j.function("missing").is_none());
    }
}

#[test]
fn jit_is_usable_from_other_threads() {
    let m = module(vec![popsum()]);
    let t = bnnc_kir::target::Target::host().unwrap();
    let j = std::sync::Arc::new(jit(&m, &t));
    let words: Vec<u64> = (0..100u64)
        .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .collect();
    let want: i64 = words.iter().map(|w| w.count_ones() as i64).sum();
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (j, words) = (j.clone(), words.clone());
            std::thread::spawn(move || {
                let f: extern "C" fn(*const u64, i64) -> i64 = get(&j, "popsum");
                f(words.as_ptr(), words.len() as i64)
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), want);
    }
}
