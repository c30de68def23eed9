//! Helpers shared by the integration tests.
#![allow(dead_code)]

use bnnc_cranelift::Jit;
use bnnc_kir::target::{Arch, Target};
use bnnc_kir::{Function, Module, Ty, VarId};

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

/// Targets the JIT can run here: the architecture's baseline, baseline plus
/// a popcount instruction (x86_64), a middle level, and `native`.
pub fn jit_targets() -> Vec<Target> {
    let host = Target::host().expect("supported host");
    let names: &[&str] = match host.arch {
        Arch::X86_64 => &["x86_64", "x86_64+popcnt", "x86_64+ssse3+sse41+sse42+popcnt"],
        Arch::Aarch64 => &["aarch64"],
        Arch::Riscv64 => &[],
    };
    let mut out: Vec<Target> = names
        .iter()
        .map(|n| Target::parse(n).unwrap())
        .filter(|t| t.missing_on_host().is_empty())
        .collect();
    if !out.contains(&host) {
        out.push(host);
    }
    out
}

/// JIT-compiles `m` for `t`, panicking with the error's text.
pub fn jit(m: &Module, t: &Target) -> Jit {
    Jit::new(m, t).unwrap_or_else(|e| panic!("JIT for {t} failed: {e}"))
}

pub fn fn_addr(j: &Jit, name: &str) -> *const u8 {
    j.function(name)
        .unwrap_or_else(|| panic!("no function `{name}` in the JIT module"))
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

/// Floats compare equal when their bits are equal or both are NaN (kir does
/// not fix NaN payloads).
pub fn same_f32(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}
