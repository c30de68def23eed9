//! Target -> Cranelift ISA.
//!
//! The ISA starts from Cranelift's baseline for the architecture (for x86_64:
//! SSE2, no `popcnt`) and enables exactly the Cranelift flags that correspond
//! to the features the [`Target`] names. A bnnc feature without a Cranelift
//! flag of the same meaning enables nothing.

use bnnc_kir::target::{Arch, Target};
use cranelift_codegen::isa::{self, OwnedTargetIsa};
use cranelift_codegen::settings::{self, Configurable};

use crate::Error;

/// How the code will be used: the JIT needs absolute addressing, objects
/// are position independent (they are linked into PIE executables).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    Jit,
    Object,
}

/// The Cranelift ISA flag for a bnnc feature, `None` when Cranelift has no
/// flag of that meaning (the feature then goes unused). `Err` for a feature
/// bnnc does not know for the architecture.
pub(crate) fn cranelift_flag(arch: Arch, feature: &str) -> Result<Option<&'static str>, ()> {
    let flag = match (arch, feature) {
        (Arch::X86_64, "sse3") => Some("has_sse3"),
        (Arch::X86_64, "ssse3") => Some("has_ssse3"),
        (Arch::X86_64, "sse41") => Some("has_sse41"),
        (Arch::X86_64, "sse42") => Some("has_sse42"),
        (Arch::X86_64, "popcnt") => Some("has_popcnt"),
        (Arch::X86_64, "avx") => Some("has_avx"),
        (Arch::X86_64, "avx2") => Some("has_avx2"),
        // Enables the `fma` instruction only; Cranelift never contracts
        // `a * b + c`, and bnnc emits no fused op.
        (Arch::X86_64, "fma") => Some("has_fma"),
        (Arch::X86_64, "bmi1") => Some("has_bmi1"),
        (Arch::X86_64, "bmi2") => Some("has_bmi2"),
        (Arch::X86_64, "lzcnt") => Some("has_lzcnt"),
        (Arch::X86_64, "avx512f") => Some("has_avx512f"),
        (Arch::X86_64, "avx512vl") => Some("has_avx512vl"),
        (Arch::X86_64, "avx512dq") => Some("has_avx512dq"),
        (Arch::X86_64, "avx512bitalg") => Some("has_avx512bitalg"),
        (Arch::X86_64, "avx512vbmi") => Some("has_avx512vbmi"),
        (Arch::X86_64, "avx512vpopcntdq") => None,
        (Arch::Aarch64, "lse") => Some("has_lse"),
        (Arch::Aarch64, "dotprod") => Some("has_dotprod"),
        _ => return Err(()),
    };
    Ok(flag)
}

fn target_error(target: &Target, reason: impl Into<String>) -> Error {
    Error::Target {
        target: target.to_string(),
        reason: reason.into(),
    }
}

/// Builds the Cranelift ISA for `target`.
pub(crate) fn build_isa(target: &Target, purpose: Purpose) -> Result<OwnedTargetIsa, Error> {
    build_isa_with(target, purpose, false)
}

/// The ISA for `target` that compiles the module's wide functions
/// ([`crate::is_wide`]): the same code generation but Cranelift's
/// single-pass register allocator, linear in the function's size (the
/// default backtracking allocator takes time quadratic in the number of
/// values live at once, e.g. the parameters of a function with thousands).
pub(crate) fn build_wide_isa(target: &Target, purpose: Purpose) -> Result<OwnedTargetIsa, Error> {
    build_isa_with(target, purpose, true)
}

fn build_isa_with(
    target: &Target,
    purpose: Purpose,
    single_pass: bool,
) -> Result<OwnedTargetIsa, Error> {
    if target.arch == Arch::Riscv64 {
        return Err(target_error(
            target,
            "the Cranelift backend generates x86_64 and aarch64 code only; use the LLVM backend (--backend llvm) for riscv64",
        ));
    }
    if let Some(cpu) = &target.cpu {
        return Err(target_error(
            target,
            format!(
                "the Cranelift backend takes no CPU model (`{cpu}`): name features instead \
                 (e.g. x86_64+popcnt+avx2, see --target help), or use the LLVM backend (--backend llvm)"
            ),
        ));
    }
    let mut shared = settings::builder();
    let mut set = |name: &str, value: &str| {
        shared
            .set(name, value)
            .map_err(|e| target_error(target, format!("Cranelift setting {name}={value}: {e}")))
    };
    set("opt_level", "speed")?;
    if single_pass {
        set("regalloc_algorithm", "single_pass")?;
    }
    // The verifier is cheap next to code generation and catches translation
    // bugs before they become miscompiles, so it is on in every build.
    set("enable_verifier", "true")?;
    match purpose {
        Purpose::Object => set("is_pic", "true")?,
        Purpose::Jit => {
            set("is_pic", "false")?;
            // Code and data of a JIT module may be far apart in memory.
            set("use_colocated_libcalls", "false")?;
        }
    }
    let flags = settings::Flags::new(shared);

    let mut builder = isa::lookup_by_name(target.arch.triple()).map_err(|e| {
        target_error(
            target,
            format!("Cranelift has no backend for {}: {e}", target.arch.triple()),
        )
    })?;
    for feature in &target.features {
        match cranelift_flag(target.arch, feature) {
            Ok(Some(flag)) => builder.enable(flag).map_err(|e| {
                target_error(
                    target,
                    format!("Cranelift flag {flag} for feature `{feature}`: {e}"),
                )
            })?,
            Ok(None) => {}
            Err(()) => {
                return Err(target_error(
                    target,
                    format!("unknown feature `{feature}` for {}", target.arch),
                ))
            }
        }
    }
    if target.arch == Arch::X86_64 && target.has("popcnt") && !target.has("sse42") {
        // Cranelift 0.135 emits `popcnt` only when both `has_popcnt` and
        // `has_sse42` are set (`use_popcnt`). The only other reader of
        // `has_sse42` is `use_sse42` (pcmpgtq), which also needs `has_sse41`.
        // So without SSE4.1 named, `has_sse42` enables `popcnt` and nothing
        // else; with SSE4.1 but not SSE4.2 named (no such CPU is known),
        // popcounts stay expanded rather than risk an SSE4.2 instruction.
        // The disassembly tests pin this down.
        if !target.has("sse41") {
            builder.enable("has_sse42").map_err(|e| {
                target_error(target, format!("Cranelift flag has_sse42 for popcnt: {e}"))
            })?;
        }
    }
    builder
        .finish(flags)
        .map_err(|e| target_error(target, format!("Cranelift ISA: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_feature_is_mapped() {
        for arch in [Arch::X86_64, Arch::Aarch64] {
            for (name, _) in arch.features() {
                assert!(
                    cranelift_flag(arch, name).is_ok(),
                    "feature {name} of {arch} has no mapping"
                );
            }
        }
    }

    #[test]
    fn flags_follow_the_target() {
        let isa = build_isa(&Target::parse("x86_64").unwrap(), Purpose::Object).unwrap();
        let get = |isa: &OwnedTargetIsa, name: &str| {
            isa.isa_flags()
                .iter()
                .find(|v| v.name == name)
                .and_then(|v| v.as_bool())
        };
        assert_eq!(get(&isa, "has_popcnt"), Some(false));
        assert_eq!(get(&isa, "has_sse41"), Some(false));
        assert!(isa.flags().is_pic());
        let isa = build_isa(&Target::parse("x86_64+popcnt+sse41").unwrap(), Purpose::Jit).unwrap();
        assert_eq!(get(&isa, "has_popcnt"), Some(true));
        assert_eq!(get(&isa, "has_sse41"), Some(true));
        assert_eq!(get(&isa, "has_sse42"), Some(false));
        assert_eq!(get(&isa, "has_avx"), Some(false));
        assert!(!isa.flags().is_pic());
        // Cranelift gates `popcnt` on has_sse42 too; see build_isa.
        let isa = build_isa(&Target::parse("x86_64+popcnt").unwrap(), Purpose::Object).unwrap();
        assert_eq!(get(&isa, "has_popcnt"), Some(true));
        assert_eq!(get(&isa, "has_sse42"), Some(true));
        assert_eq!(get(&isa, "has_sse41"), Some(false));
        let isa = build_isa(&Target::parse("aarch64+lse").unwrap(), Purpose::Object).unwrap();
        assert_eq!(get(&isa, "has_lse"), Some(true));
        assert_eq!(get(&isa, "has_dotprod"), Some(false));
    }

    #[test]
    fn cpus_and_riscv64_are_refused() {
        let e = build_isa(&Target::parse("x86_64:haswell").unwrap(), Purpose::Object)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("takes no CPU model (`haswell`)"), "{e}");
        let e = build_isa(&Target::parse("riscv64").unwrap(), Purpose::Jit)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("use the LLVM backend"), "{e}");
    }
}
