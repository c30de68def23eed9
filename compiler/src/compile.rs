//! The compilation pipeline: model -> kir -> object + header (or CLIF, kir text),
//! by the Cranelift backend (the default) or the LLVM backend ([`Backend`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use bnnc_ir::target::{Target, TargetError};
use bnnc_ir::Model;

use crate::lower::{lower, LowerError, Lowered};

/// Why a model could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error(transparent)]
    Lower(#[from] LowerError),
    #[error(transparent)]
    Target(TargetError),
    #[error("code generation failed: {0}")]
    Backend(#[from] bnnc_cranelift::Error),
    #[error("code generation failed: {0}")]
    Llvm(#[from] bnnc_llvm::Error),
    /// An artifact the chosen backend does not produce.
    #[error("--emit {emit} needs the {needs} backend (this compilation uses {backend})")]
    EmitNeedsBackend {
        emit: &'static str,
        needs: Backend,
        backend: Backend,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("optimizer: {0}")]
    Opt(#[from] crate::opt::OptError),
    #[error("internal compiler error: {0}")]
    Internal(String),
}

/// Runs the e-graph optimizer (`opt_level >= 1`) or returns the model as it is
/// (`-O0`). The result computes exactly what the original does.
pub fn prepare(model: &Model, opt_level: u8) -> Result<std::borrow::Cow<'_, Model>, CompileError> {
    if opt_level == 0 {
        return Ok(std::borrow::Cow::Borrowed(model));
    }
    Ok(std::borrow::Cow::Owned(crate::opt::optimize(model)?.model))
}

/// The code generator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Backend {
    /// Cranelift: fast compilation; x86_64 and aarch64, explicit features,
    /// vectors of 128 bits.
    #[default]
    Cranelift,
    /// LLVM (`default<O3>`): any CPU LLVM knows, riscv64, vectors of any
    /// width. Needs bnnc built with the `llvm` feature; without it every
    /// use is a clear error.
    Llvm,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cranelift => "cranelift",
            Backend::Llvm => "llvm",
        }
    }

    /// Whether this build of bnnc has the backend.
    pub fn available(self) -> bool {
        match self {
            Backend::Cranelift => true,
            Backend::Llvm => bnnc_llvm::AVAILABLE,
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A lowered model and the target it is for.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub lowered: Lowered,
    pub target: Target,
}

/// Lowers a verified model for `target`.
pub fn lower_model(model: &Model, target: &Target) -> Result<Compiled, CompileError> {
    Ok(Compiled {
        lowered: lower(model)?,
        target: target.clone(),
    })
}

/// What `bnnc compile` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Emit {
    /// `<model>.o`: relocatable object.
    Obj,
    /// `<model>.h`: C header.
    Header,
    /// `<model>.clif`: Cranelift IR.
    Clif,
    /// `<model>.kir`: the kernel IR.
    Kir,
    /// `<model>.s`: assembly of the object (LLVM backend).
    Asm,
    /// `<model>.ll`: the optimised LLVM IR the object is made from (LLVM backend).
    LlvmIr,
}

impl Emit {
    pub fn extension(self) -> &'static str {
        match self {
            Emit::Obj => "o",
            Emit::Header => "h",
            Emit::Clif => "clif",
            Emit::Kir => "kir",
            Emit::Asm => "s",
            Emit::LlvmIr => "ll",
        }
    }
}

/// Compiles `model` for `target` with the Cranelift backend and writes each
/// requested artifact into `out_dir` as `<model>.<ext>`; returns the paths
/// written.
pub fn compile_to_dir(
    model: &Model,
    target: &Target,
    emit: &BTreeSet<Emit>,
    out_dir: &Path,
) -> Result<Vec<PathBuf>, CompileError> {
    compile_to_dir_with(model, target, Backend::Cranelift, emit, out_dir)
}

/// [`compile_to_dir`] with the given backend. `Emit::Clif` needs Cranelift,
/// `Emit::Asm` and `Emit::LlvmIr` need LLVM.
pub fn compile_to_dir_with(
    model: &Model,
    target: &Target,
    backend: Backend,
    emit: &BTreeSet<Emit>,
    out_dir: &Path,
) -> Result<Vec<PathBuf>, CompileError> {
    for &e in emit {
        let (name, needs) = match e {
            Emit::Clif => ("clif", Backend::Cranelift),
            Emit::Asm => ("asm", Backend::Llvm),
            Emit::LlvmIr => ("llvm-ir", Backend::Llvm),
            _ => continue,
        };
        if needs != backend {
            return Err(CompileError::EmitNeedsBackend {
                emit: name,
                needs,
                backend,
            });
        }
    }
    let c = lower_model(model, target)?;
    let l = &c.lowered;
    // LLVM produces its artifacts from one optimised module.
    let mut llvm = match backend {
        Backend::Llvm => {
            let req = bnnc_llvm::Request {
                object: emit.contains(&Emit::Obj),
                assembly: emit.contains(&Emit::Asm),
                llvm_ir: emit.contains(&Emit::LlvmIr),
            };
            if req == bnnc_llvm::Request::default() {
                // Only target-independent artifacts: still check the target.
                bnnc_llvm::machine(target)?;
            }
            bnnc_llvm::compile(&l.module, target, req)?
        }
        Backend::Cranelift => bnnc_llvm::Artifacts::default(),
    };
    std::fs::create_dir_all(out_dir).map_err(|source| CompileError::Write {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let mut written = Vec::new();
    for &e in emit {
        let bytes: Vec<u8> = match e {
            Emit::Obj => match backend {
                Backend::Cranelift => bnnc_cranelift::compile_object(&l.module, target)?,
                Backend::Llvm => llvm.object.take().unwrap_or_default(),
            },
            Emit::Header => crate::header::c_header(l, target).into_bytes(),
            Emit::Clif => bnnc_cranelift::clif_text(&l.module, target)?.into_bytes(),
            Emit::Kir => bnnc_ir::kir::print(&l.module).into_bytes(),
            Emit::Asm => llvm.assembly.take().unwrap_or_default().into_bytes(),
            Emit::LlvmIr => llvm.llvm_ir.take().unwrap_or_default().into_bytes(),
        };
        let path = out_dir.join(format!("{}.{}", l.name, e.extension()));
        std::fs::write(&path, bytes).map_err(|source| CompileError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}
