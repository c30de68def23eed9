//! The instructions a target allows (and only those) appear in the lowered
//! code, and the CLIF text is deterministic.

mod common;

use bnnc_cranelift::{clif_text, disassembly};
use bnnc_kir::build::*;
use bnnc_kir::target::Target;
use bnnc_kir::{CmpOp, Module, Scalar, Stmt, Ty, UnOp};
use common::*;

/// popsum(p, n) = sum of popcount of n i64 words at p.
fn popcount_loop() -> Module {
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
    module(vec![f])
}

fn listing(m: &Module, target: &str) -> String {
    disassembly(m, &Target::parse(target).unwrap()).unwrap()
}

/// Instruction mnemonics of a listing (first word of each line).
fn mnemonics(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn popcnt_only_where_the_target_has_it() {
    let m = popcount_loop();
    let plain = listing(&m, "x86_64");
    assert!(plain.contains("; fn popsum (x86_64)"));
    assert!(
        !plain.contains("popcnt"),
        "plain x86_64 must not use popcnt:\n{plain}"
    );
    // The expansion: shifts, masks and a multiply.
    assert!(
        mnemonics(&plain).iter().any(|w| w.starts_with("imul")),
        "{plain}"
    );

    let with = listing(&m, "x86_64+popcnt");
    assert!(
        mnemonics(&with).iter().any(|w| w.starts_with("popcnt")),
        "x86_64+popcnt must use popcnt:\n{with}"
    );

    let arm = listing(&m, "aarch64");
    assert!(
        mnemonics(&arm).iter().any(|w| w == "cnt"),
        "aarch64 must use cnt:\n{arm}"
    );
}

#[test]
fn popcnt_flag_enables_nothing_else() {
    // An i64x2 compare is pcmpgtq with SSE4.2 and an SSE2 sequence
    // without: naming popcnt alone must not bring in SSE4.2.
    let t = Ty::vec(Scalar::I64, 2);
    let (mut f, p) = func("gt", &[("a", Ty::PTR), ("out", Ty::PTR)], None);
    f.body = vec![Stmt::Store {
        addr: var(p[1]),
        value: cmp(
            CmpOp::SGt,
            load(t, var(p[0])),
            load(t, add(var(p[0]), i64c(16))),
        ),
    }];
    let m = module(vec![f]);
    for target in ["x86_64", "x86_64+popcnt", "x86_64+popcnt+sse41"] {
        let text = listing(&m, target);
        assert!(
            !text.contains("pcmpgtq"),
            "{target} must not use pcmpgtq:\n{text}"
        );
    }
    let text = listing(&m, "x86_64+sse41+sse42");
    assert!(text.contains("pcmpgtq"), "sse42 enables pcmpgtq:\n{text}");
}

#[test]
fn vector_popcnt_instructions() {
    // i8x16 popcount: AVX-512 BITALG has vpopcntb; aarch64 has cnt on
    // vectors.
    let t = Ty::vec(Scalar::I8, 16);
    let (mut f, p) = func("vpop", &[("a", Ty::PTR)], None);
    f.body = vec![Stmt::Store {
        addr: var(p[0]),
        value: un(UnOp::Popcnt, load(t, var(p[0]))),
    }];
    let m = module(vec![f]);
    assert!(listing(&m, "x86_64+avx512vl+avx512bitalg").contains("vpopcntb"));
    assert!(!listing(&m, "x86_64+ssse3").contains("vpopcntb"));
    assert!(listing(&m, "x86_64+ssse3").contains("pshufb"));
    assert!(!listing(&m, "x86_64").contains("pshufb"));
    assert!(mnemonics(&listing(&m, "aarch64"))
        .iter()
        .any(|w| w == "cnt"));
}

fn two_functions() -> Module {
    let mut m = popcount_loop();
    let (mut g, p) = func("twice", &[("x", Ty::I32)], Some(Ty::I32));
    g.exported = false;
    g.body = vec![Stmt::Return(Some(add(var(p[0]), var(p[0]))))];
    m.functions.push(g);
    m
}

#[test]
fn clif_text_is_deterministic_and_in_module_order() {
    let m = two_functions();
    let t = Target::parse("x86_64").unwrap();
    let a = clif_text(&m, &t).unwrap();
    let b = clif_text(&m, &t).unwrap();
    assert_eq!(a, b);
    let pop = a.find("; fn popsum").expect("popsum listed");
    let twice = a.find("; fn twice").expect("twice listed");
    assert!(pop < twice, "module order:\n{a}");
    assert!(a.contains("; u0:0 = export fn popsum"), "{a}");
    assert!(a.contains("; u0:1 = fn twice"), "{a}");
    assert!(a.contains("popcnt"), "{a}");
    assert!(a.contains("function u0:1(i32) -> i32"), "{a}");
    let arm = clif_text(&m, &Target::parse("aarch64").unwrap()).unwrap();
    assert!(arm.contains("popcnt"));
}

#[test]
fn disassembly_lists_every_function() {
    let m = two_functions();
    let text = listing(&m, "aarch64");
    assert!(text.contains("; fn popsum (aarch64)"));
    assert!(text.contains("; fn twice (aarch64)"));
    assert!(text.contains("ret"));
}
