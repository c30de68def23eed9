//! Helpers shared by the integration tests.
#![allow(dead_code)]

use bnnc_kir::target::Target;
use bnnc_kir::{Function, Module, Ty, VarId};
use bnnc_llvm::Jit;

/// Whether LLVM is in this build. Without it the test prints why it skips
/// and passes, except under `CI=true`, where it fails.
pub fn llvm(test: &str) -> bool {
    if bnnc_llvm::AVAILABLE {
        return true;
    }
    let why = "bnnc-llvm was built without its `llvm` feature (run with --features bnnc/llvm)";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true: {test}: {why}");
    }
    eprintln!("skipping {test}: {why}");
    false
}

/// A function with the given parameters.
pub fn func(name: &str, params: &[(&str, Ty)], ret: Option<Ty>) -> (Function, Vec<VarId>) {
    let mut f = Function::new(name, true, ret);
    let ids = params.iter().map(|(n, t)| f.param(*n, *t)).collect();
    (f, ids)
}

pub fn module(functions: Vec<Function>) -> Module {
    Module {
        name: "test".into(),
        functions,
        ..Module::default()
    }
}

/// Targets the JIT can run here: the baseline, the host's features with no
/// CPU, and the host's CPU (`native`).
pub fn jit_targets() -> Vec<Target> {
    let host = Target::host().expect("supported host");
    let mut out = vec![Target::new(host.arch), host.clone()];
    out.push(Target::native_cpu().unwrap());
    out
}

pub fn jit(m: &Module, t: &Target) -> Jit {
    Jit::new(m, t).unwrap_or_else(|e| panic!("LLVM JIT for {t} failed: {e}"))
}

/// The exported function `name` of `j` as a function pointer of type `F`.
pub fn get<F: Copy>(j: &Jit, name: &str) -> F {
    let p = j
        .function(name)
        .unwrap_or_else(|| panic!("no function `{name}` in the JIT module"));
    assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<*const u8>());
    // SAFETY: callers name the type matching the kir signature.
    unsafe { std::mem::transmute_copy::<*const u8, F>(&p) }
}

/// Deterministic pseudo-random bytes (xorshift64*).
pub fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}
