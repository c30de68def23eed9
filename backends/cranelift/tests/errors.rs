//! Bad input and impossible requests give a clear `Error`, never a panic.

mod common;

use bnnc_cranelift::{clif_text, compile_object, disassembly, Error, Jit};
use bnnc_kir::build::*;
use bnnc_kir::target::{Arch, Target};
use bnnc_kir::{CastOp, CmpOp, Data, Expr, Extern, ExternId, Module, Scalar, Stmt, Ty};
use common::*;

fn host() -> Target {
    Target::host().unwrap()
}

/// Every entry point fails on `m` with an error whose text contains all of
/// `needles`.
fn all_fail(m: &Module, needles: &[&str]) -> Error {
    let t = host();
    let errors = [
        compile_object(m, &t).err(),
        clif_text(m, &t).err(),
        disassembly(m, &t).err(),
        Jit::new(m, &t).err(),
    ];
    let mut last = None;
    for (i, e) in errors.into_iter().enumerate() {
        let e = e.unwrap_or_else(|| panic!("entry point {i} accepted the module"));
        let text = e.to_string();
        for n in needles {
            assert!(text.contains(n), "`{text}` does not mention `{n}`");
        }
        last = Some(e);
    }
    last.unwrap()
}

/// store(p, op(load.T p)) in a function `f`.
fn store_fn(t: Ty, value: impl Fn(Expr) -> Expr) -> Module {
    let (mut f, p) = func("f", &[("p", Ty::PTR)], None);
    f.body = vec![Stmt::Store {
        addr: var(p[0]),
        value: value(load(t, var(p[0]))),
    }];
    module(vec![f])
}

#[test]
fn vectors_wider_than_128_bits_are_refused() {
    let m = store_fn(Ty::vec(Scalar::I32, 8), |x| x);
    let e = all_fail(
        &m,
        &["load of i32x8", "256 bits", "at most 128 bits", "`f`"],
    );
    assert!(matches!(e, Error::Unsupported { .. }), "{e:?}");

    // A declared variable of a too-wide type is refused even if unused.
    let (mut f, _) = func("g", &[], None);
    f.var("wide", Ty::vec(Scalar::F32, 16));
    all_fail(&module(vec![f]), &["variable `wide`", "f32x16", "`g`"]);

    // ... and so is a parameter.
    let (f, _) = func("h", &[("v", Ty::vec(Scalar::I64, 4))], None);
    all_fail(&module(vec![f]), &["i64x4", "`h`"]);
}

#[test]
fn vectors_narrower_than_128_bits_are_refused() {
    let m = store_fn(Ty::vec(Scalar::I32, 2), |x| x);
    all_fail(&m, &["i32x2", "64 bits", "only 128-bit vectors"]);
}

#[test]
fn unsupported_vector_ops_name_the_op() {
    // Widening a full i8x16 gives i16x16.
    let m = store_fn(Ty::vec(Scalar::I8, 16), |x| {
        cast(CastOp::SExt, x, Ty::vec(Scalar::I16, 16))
    });
    all_fail(&m, &["s_ext from i8x16 to i16x16", "256 bits"]);

    // A select whose mask has the wrong lane shape (kir's check allows it).
    let i32x4 = Ty::vec(Scalar::I32, 4);
    let i8x16 = Ty::vec(Scalar::I8, 16);
    let (mut f, p) = func("f", &[("p", Ty::PTR)], None);
    let mask = cmp(CmpOp::Eq, load(i8x16, var(p[0])), load(i8x16, var(p[0])));
    f.body = vec![Stmt::Store {
        addr: var(p[0]),
        value: select(mask, load(i32x4, var(p[0])), load(i32x4, var(p[0]))),
    }];
    all_fail(
        &module(vec![f]),
        &["select over i32x4 with a i8x16 condition"],
    );

    // Vector int-to-float needs i32 lanes (i16x8 -> f32x8 is too wide anyway).
    let m = store_fn(Ty::vec(Scalar::I64, 2), |x| {
        cast(CastOp::SIToF, x, Ty::vec(Scalar::F32, 2))
    });
    all_fail(&m, &["f32x2"]);
}

#[test]
fn invalid_kir_is_reported() {
    let (mut f, p) = func("bad", &[("x", Ty::I64)], None);
    let v = f.var("v", Ty::I32);
    f.body = vec![Stmt::Assign(v, var(p[0]))];
    let e = all_fail(&module(vec![f]), &["invalid kir", "bad"]);
    assert!(matches!(e, Error::Kir(_)));
}

#[test]
fn bad_data_alignment_is_reported() {
    let mut m = module(vec![]);
    m.data.push(Data {
        name: "weights".into(),
        align: 3,
        bytes: vec![1, 2, 3],
    });
    let t = host();
    for e in [compile_object(&m, &t).err(), Jit::new(&m, &t).err()] {
        let e = e.expect("alignment 3 accepted");
        // kir::check refuses it before the backend's own check would.
        assert!(matches!(e, Error::Kir(_) | Error::Data { .. }), "{e:?}");
        assert!(e.to_string().contains("weights"), "{e}");
        assert!(e.to_string().contains("alignment 3"), "{e}");
    }
}

#[test]
fn duplicate_names_are_reported() {
    let (f, _) = func("same", &[], None);
    let (g, _) = func("same", &[], None);
    let m = module(vec![f, g]);
    let e = compile_object(&m, &host()).unwrap_err();
    assert!(e.to_string().contains("same"), "{e}");
    assert!(Jit::new(&m, &host()).is_err());
}

#[test]
fn unresolvable_externs_are_reported() {
    let mut m = module(vec![]);
    m.externs.push(Extern {
        name: "bnnc_no_such_function".into(),
        params: vec![Ty::F32],
        ret: Ty::F32,
    });
    let (mut f, p) = func("f", &[("x", Ty::F32)], Some(Ty::F32));
    f.body = vec![Stmt::Return(Some(Expr::CallExtern(
        ExternId(0),
        vec![var(p[0])],
    )))];
    m.functions.push(f);
    let e = Jit::new(&m, &host()).unwrap_err();
    assert!(
        matches!(e, Error::UnresolvedExtern(ref n) if n == "bnnc_no_such_function"),
        "{e:?}"
    );
    // An object just leaves it to the linker.
    assert!(compile_object(&m, &host()).is_ok());
}

#[test]
fn jit_refuses_other_architectures() {
    let other = match host().arch {
        Arch::X86_64 => "aarch64",
        Arch::Aarch64 | Arch::Riscv64 => "x86_64",
    };
    let m = module(vec![func("f", &[], None).0]);
    let e = Jit::new(&m, &Target::parse(other).unwrap()).unwrap_err();
    assert!(matches!(e, Error::NotRunnable { .. }), "{e:?}");
    assert!(
        e.to_string().contains(&format!("architecture {other}")),
        "{e}"
    );
}

#[test]
fn jit_refuses_features_the_host_lacks() {
    let h = host();
    let missing: Vec<&str> = h
        .arch
        .features()
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| !h.has(n))
        .collect();
    let Some(feature) = missing.first() else {
        // The same check against a made-up host is a unit test of jit.rs.
        eprintln!(
            "skipping: this host has every {} feature bnnc knows",
            h.arch
        );
        return;
    };
    let mut t = Target::new(h.arch);
    t.features.insert(feature.to_string());
    let m = module(vec![func("f", &[], None).0]);
    let e = Jit::new(&m, &t).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, Error::NotRunnable { .. }), "{e:?}");
    assert!(text.contains(feature), "{text}");
}

#[test]
fn unknown_features_are_reported() {
    // `Target` has public fields; a feature `Target::parse` would refuse.
    let mut t = Target::new(Arch::X86_64);
    t.features.insert("neon".into());
    let m = module(vec![func("f", &[], None).0]);
    let e = compile_object(&m, &t).unwrap_err();
    assert!(matches!(e, Error::Target { .. }), "{e:?}");
    assert!(e.to_string().contains("neon"));
}

#[test]
fn falling_off_a_function_with_a_result_traps() {
    // kir does not require a trailing return; the backend ends such a
    // function with a trap rather than returning garbage.
    let (f, _) = func("f", &[], Some(Ty::I64));
    let text = clif_text(&module(vec![f]), &host()).unwrap();
    assert!(text.contains("trap user1"), "{text}");
}
