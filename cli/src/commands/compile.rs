//! `bnnc compile`: a model to a native object file and a C header (and, on
//! request, its intermediate forms).

use std::io::Write;
use std::path::PathBuf;

use bnnc_ir::error::escape_path;
use bnnc_ir::Model;
use clap::{Args, ValueEnum};

use super::{BackendKind, CliError};

/// The long help of `bnnc compile`.
pub(super) const LONG_ABOUT: &str = "\
Compile a model for a target CPU: constant folding (sign(@w) becomes packed \
b1 weights), lowering to the kernel IR, and code generation by Cranelift. Writes DIR/<model>.o \
(relocatable ELF with the weights in read-only data) and DIR/<model>.h (entry points, shapes, \
workspace size, required CPU features); --emit also writes the Cranelift IR (clif) and the \
kernel IR (kir) for reading. DIR is -o, by default the model file's folder; <model> is the name \
on the model's `model` line. Each file is written whole or not at all.

A target is an architecture and an explicit feature list, ARCH[+FEATURE]...: `x86_64` is the \
baseline x86-64 (no popcnt instruction), `x86_64+popcnt+avx2` names features, `aarch64` is \
ARMv8-A with NEON (popcount by `cnt`), `riscv64` is RV64GC, `native` is this machine with every \
feature it has. The code never uses an instruction the target does not name. `--target help` \
lists them all.

--backend llvm compiles with LLVM (default<O3>) instead of Cranelift: it also takes a CPU model \
(--cpu znver4, --cpu neoverse-n1, --cpu native for this machine's CPU; with --cpu alone the \
architecture follows from the CPU), targets riscv64, and can write the assembly (asm) and the \
optimised LLVM IR (llvm-ir). Both backends write the same header and entry points, so a C \
program links either object unchanged. The LLVM backend needs bnnc built with `--features llvm`.

n-bit, ternary and int8 kernels are not available in the native backends yet: such models \
are refused with a message naming the op and types.";

/// The examples after the help of `bnnc compile`.
pub(super) const AFTER_HELP: &str = "Examples:
  bnnc compile examples/mnist_mlp.ir --target aarch64 -o out
  bnnc compile examples/bireal_cnn.ir --target x86_64+popcnt -o out --emit obj,header,kir
  bnnc compile examples/mnist_mlp.ir --backend llvm --cpu znver4 -o out --emit obj,header,asm,llvm-ir
  bnnc compile examples/mnist_mlp.ir --backend llvm --target riscv64 -o out
  bnnc compile --target help";

#[derive(Debug, Args)]
pub struct CompileArgs {
    /// The model file (.ir); not needed with `--target help`.
    #[arg(required_unless_present = "target")]
    pub file: Option<PathBuf>,
    /// ARCH[:CPU][+FEATURE]... or `native`; `help` lists architectures, features and CPUs.
    #[arg(long, short = 't', default_value = "native")]
    pub target: String,
    /// A CPU model for the LLVM backend (znver4, haswell, neoverse-n1, native, ...).
    #[arg(long, value_name = "CPU")]
    pub cpu: Option<String>,
    /// The code generator.
    #[arg(long, value_enum, default_value_t = BackendKind::Cranelift)]
    pub backend: BackendKind,
    /// Output directory (created if missing) [default: the model file's folder].
    #[arg(long = "out-dir", short = 'o', value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// What to write, comma-separated: obj, header, clif, kir, asm, llvm-ir.
    #[arg(long, value_delimiter = ',', default_values = ["obj", "header"])]
    pub emit: Vec<EmitKind>,
    /// Optimization level: 1 runs the e-graph optimizer (batch-norm and scales
    /// folded into integer thresholds, constants folded), 0 compiles the graph
    /// as written.
    #[arg(short = 'O', value_name = "LEVEL", default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub opt_level: u8,
}

/// Artifacts of `bnnc compile`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EmitKind {
    /// <model>.o: relocatable object file
    Obj,
    /// <model>.h: C header
    Header,
    /// <model>.clif: Cranelift IR
    Clif,
    /// <model>.kir: bnnc kernel IR
    Kir,
    /// <model>.s: assembly (LLVM backend)
    Asm,
    /// <model>.ll: optimised LLVM IR (LLVM backend)
    LlvmIr,
}

/// `bnnc compile`: writes the `--emit` artifacts to the output directory
/// (or, with `--target help`, lists the targets).
pub(super) fn run(a: &CompileArgs, out: &mut dyn Write) -> Result<(), CliError> {
    use bnnc::compile::{CompileOptions, Emit};
    if a.target == "help" {
        return out
            .write_all(bnnc_kir::target::Target::help().as_bytes())
            .map_err(CliError::Stdout);
    }
    let target = resolve_target(&a.target, a.cpu.as_deref())?;
    let file = a
        .file
        .as_ref()
        .expect("clap requires FILE unless --target help");
    let model = Model::load(file)?;
    let emit: std::collections::BTreeSet<Emit> = a
        .emit
        .iter()
        .map(|e| match e {
            EmitKind::Obj => Emit::Obj,
            EmitKind::Header => Emit::Header,
            EmitKind::Clif => Emit::Clif,
            EmitKind::Kir => Emit::Kir,
            EmitKind::Asm => Emit::Asm,
            EmitKind::LlvmIr => Emit::LlvmIr,
        })
        .collect();
    let opts = CompileOptions::new(target.clone())
        .backend(a.backend.into())
        .opt_level(a.opt_level)
        .emit(emit);
    let compile_err = |source| CliError::Compile {
        file: file.clone(),
        source,
    };
    let out_dir = match &a.out_dir {
        Some(d) => d.as_path(),
        None => crate::output::model_folder(file),
    };
    let written = bnnc::compile::compile(&model, &opts)
        .and_then(|c| c.write_to(out_dir))
        .map_err(compile_err)?;
    for p in written {
        writeln!(out, "wrote {} ({target})", escape_path(&p)).map_err(CliError::Stdout)?;
    }
    Ok(())
}

/// The target of `--target T [--cpu C]`. A CPU replaces the host's features
/// that a default `native` target would bring; with `--target` left at
/// `native`, the architecture follows from the CPU when only one
/// architecture has a CPU of that name (`--cpu neoverse-n1` is aarch64).
pub fn resolve_target(
    target: &str,
    cpu: Option<&str>,
) -> Result<bnnc_kir::target::Target, bnnc_kir::target::TargetError> {
    use bnnc_kir::target::{Arch, Target};
    let Some(cpu) = cpu else {
        return Target::parse(target);
    };
    if target != "native" {
        return Target::parse(target)?.with_cpu(cpu);
    }
    if cpu == "native" {
        return Target::native_cpu();
    }
    let arches: Vec<Arch> = Arch::ALL
        .into_iter()
        .filter(|&a| bnnc_llvm::known_cpus(a).contains(&cpu))
        .collect();
    let arch = match arches.as_slice() {
        &[only] => only,
        _ => Target::host()?.arch,
    };
    Target::new(arch).with_cpu(cpu)
}
