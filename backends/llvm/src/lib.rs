//! bnnc-llvm: the LLVM backend.
//!
//! Translates kir ([`bnnc_kir`]) one to one into LLVM IR, optimises it with
//! LLVM's `default<O3>` pipeline (loop and SLP vectorizers on) for a
//! [`Target`], and produces relocatable ELF objects ([`compile_object`]),
//! assembly ([`assembly`]), LLVM IR text ([`llvm_ir`]) or code JIT-compiled
//! into this process ([`Jit`]).
//!
//! # The translation
//!
//! Every kir type has its LLVM type (`i8`..`i64`, `float`, and vectors of any
//! lane count, `<8 x i64>` included: LLVM legalises what the CPU lacks).
//! Operations keep kir's semantics exactly (see [`bnnc_kir`]):
//! shift amounts are masked to the lane width (LLVM's shifts are poison
//! beyond it); comparisons give `i8` 0/1 or lane masks (`sext` of the `i1`
//! lanes); `select` tests its condition `!= 0`; `popcnt` is `llvm.ctpop`;
//! `reduce_add` is `llvm.vector.reduce.add`, and for `f32` the ordered
//! `llvm.vector.reduce.fadd` starting at `-0.0` (so `((l0 + l1) + l2) + ...`
//! exactly); `f_uno(a, b)` is `fcmp uno`. No instruction carries a fast-math
//! flag and LLVM contracts nothing without one, so float results are those of
//! the reference interpreter. Calls of libm functions (`expf`) are marked
//! `nobuiltin`: LLVM neither folds nor replaces them.
//!
//! kir addresses are `i64`. An `i64` variable or parameter that serves as the
//! base of addresses is an LLVM `ptr` (a whole-module analysis decides which),
//! and `base + offset` becomes `getelementptr i8`: LLVM's loop analyses (and
//! so its vectorizer) see through that, not through `inttoptr`. Values convert
//! between `ptr` and `i64` wherever kir uses them the other way, so the
//! choice changes no result. On every target bnnc supports a `ptr` and an
//! `i64` argument are passed alike, so the C signatures do not change.
//!
//! Every function carries `target-cpu` and `target-features` attributes, for
//! objects and JIT alike. Exported kir functions are global symbols, the rest
//! internal and `noinline`: a kir module's local functions are whole loop
//! nests (bnnc's kernels, each called once per run), and inlining every one
//! into its caller would make one function of the whole model, on which
//! `default<O3>`'s function passes (constraint elimination, SCEV's loop
//! guards, the SLP vectorizer) take time quadratic in the model's size.
//! Functions with more than 256 parameters or call arguments (the entry
//! points of models with thousands of inputs and outputs, which only check
//! pointers and pass them on) are `optnone`, for the same reason.
//! Data objects are private `unnamed_addr` constants in `.rodata`
//! with their alignment; objects are position independent.
//!
//! # Targets
//!
//! A [`Target`] with no CPU is the architecture's baseline (`x86-64`,
//! `generic` aarch64, `generic-rv64` with RV64GC and the LP64D ABI) plus its
//! features. A named CPU must be one LLVM knows for the architecture
//! ([`known_cpus`]); `native` is the host's CPU with exactly the features
//! LLVM detects on it.
//!
//! # Without LLVM
//!
//! The crate's `llvm` feature (off by default) brings in LLVM 19 through
//! inkwell. Without it every entry point returns [`Error::NotBuilt`], so the
//! rest of bnnc builds and runs with no LLVM installed.

use bnnc_kir::target::Arch;
#[cfg(doc)]
use bnnc_kir::target::Target;

mod cpus;

#[cfg(feature = "llvm")]
mod llvm;
#[cfg(not(feature = "llvm"))]
mod stub;

#[cfg(feature = "llvm")]
pub use llvm::{assembly, compile, compile_object, host_cpu, llvm_ir, machine, Jit};
#[cfg(not(feature = "llvm"))]
pub use stub::{assembly, compile, compile_object, host_cpu, llvm_ir, machine, Jit};

pub use cpus::{known_cpus, llvm_feature, refused_cpus};

/// Whether this build of the crate has LLVM (the `llvm` feature).
pub const AVAILABLE: bool = cfg!(feature = "llvm");

/// Everything that can go wrong between kir and machine code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The crate was built without its `llvm` feature.
    #[error(
        "bnnc was built without the `llvm` feature, so the LLVM backend is not available: \
         rebuild with `--features bnnc/llvm` (needs LLVM 19: Debian packages llvm-19-dev \
         libpolly-19-dev zlib1g-dev libzstd-dev, and LLVM_SYS_191_PREFIX=/usr/lib/llvm-19)"
    )]
    NotBuilt,
    /// The kir module is malformed (`kir::check` failed).
    #[error("invalid kir: {0}")]
    Kir(String),
    /// A kir construct with no exact LLVM translation.
    #[error("LLVM backend: unsupported {what} in function `{func}`: {reason}")]
    Unsupported {
        func: String,
        what: String,
        reason: String,
    },
    /// A CPU name LLVM does not know for the architecture.
    #[error("unknown CPU `{cpu}` for {arch}; LLVM 19 knows: {valid}")]
    UnknownCpu {
        arch: Arch,
        cpu: String,
        valid: String,
    },
    /// The target cannot be set up in LLVM.
    #[error("target {target}: {reason}")]
    Target { target: String, reason: String },
    /// LLVM rejected the module (a translation bug) or failed on it.
    #[error("LLVM failed ({stage}): {message}")]
    Llvm { stage: String, message: String },
    /// The JIT can only run code for this machine.
    #[error("cannot JIT for target {target} on this host: the host lacks {}", .missing.join(", "))]
    NotRunnable {
        target: String,
        missing: Vec<String>,
    },
    /// An extern the module imports has no address in this process.
    #[error("JIT: extern function `{0}` is not available in this process")]
    UnresolvedExtern(String),
}

/// How LLVM sees a [`Target`]: what [`machine`] resolves it to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    pub triple: &'static str,
    /// The LLVM CPU name (`x86-64`, `znver4`, `neoverse-n1`, ...).
    pub cpu: String,
    /// The LLVM feature string (`+popcnt,+avx2`), set on every function.
    pub features: String,
    /// The ABI, where LLVM needs it named (`lp64d` on riscv64).
    pub abi: Option<&'static str>,
}

/// What [`compile`] produces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// A relocatable ELF object.
    pub object: bool,
    /// The object's assembly, as text.
    pub assembly: bool,
    /// The optimised LLVM IR the object is made from.
    pub llvm_ir: bool,
}

/// The artifacts of one compilation (each `Some` when requested).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Artifacts {
    pub object: Option<Vec<u8>>,
    pub assembly: Option<String>,
    pub llvm_ir: Option<String>,
}

/// Which LLVM IR [`llvm_ir`] prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// As translated from kir (verified, not optimised): the translation's
    /// contract, stable across LLVM releases.
    Translated,
    /// After `default<O3>`: what the object is compiled from.
    Optimized,
}
