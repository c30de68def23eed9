//! The one compilation pipeline: a verified model becomes a kir module and the
//! artifacts asked for, by the Cranelift backend (the default) or the LLVM
//! backend ([`Backend`]).
//!
//! ```text
//! Model --optimize (opt_level >= 1)--> Model --lower(target)--> kir --backend--> object, header, ...
//! ```
//!
//! [`compile`] is the only function that runs these stages. `bnnc compile`,
//! `bnnc run/bench/eval --engine jit`, [`JitModel`](crate::jit::JitModel) and
//! the build-script API (`bnnc-build`) all call it with a [`CompileOptions`],
//! so every entry point gets the same optimized code for the same options.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use bnnc_ir::Model;
use bnnc_kir::target::{Target, TargetError};

use crate::lower::{lower_with, LowerError, LowerOptions, Lowered};

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

    /// The widest kir vectors the backend translates, in bits.
    pub fn max_vector_bits(self) -> u32 {
        match self {
            Backend::Cranelift => 128,
            Backend::Llvm => 512,
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
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

/// Everything that decides what [`compile`] produces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileOptions {
    /// The architecture and CPU features the code may use; the lowering sees it.
    pub target: Target,
    pub backend: Backend,
    /// 0: the model is lowered as written. 1 (the default): the e-graph
    /// optimizer ([`crate::opt::optimize`]) rewrites it first.
    pub opt_level: u8,
    /// The artifacts to produce. Empty for a JIT, which needs only the kir.
    pub emit: BTreeSet<Emit>,
    /// The widest vectors the kernels may use, in bits: `None` (the default)
    /// is the backend's limit ([`Backend::max_vector_bits`]), `Some(0)` the
    /// scalar reference kernels; never wider than the backend's limit.
    pub max_vector_bits: Option<u32>,
}

impl CompileOptions {
    /// Cranelift for `target`, optimized, producing an object and a header.
    pub fn new(target: Target) -> CompileOptions {
        CompileOptions {
            target,
            backend: Backend::Cranelift,
            opt_level: 1,
            emit: [Emit::Obj, Emit::Header].into_iter().collect(),
            max_vector_bits: None,
        }
    }

    /// Options to run code in this process with `backend`: Cranelift with
    /// every feature bnnc detects ([`Target::host`]), LLVM for the host's CPU
    /// with every feature LLVM detects ([`Target::native_cpu`]); no artifacts.
    pub fn host(backend: Backend) -> Result<CompileOptions, CompileError> {
        let target = match backend {
            Backend::Cranelift => Target::host(),
            Backend::Llvm => Target::native_cpu(),
        }
        .map_err(CompileError::Target)?;
        Ok(CompileOptions::new(target).backend(backend).emit([]))
    }

    pub fn backend(mut self, backend: Backend) -> CompileOptions {
        self.backend = backend;
        self
    }

    pub fn opt_level(mut self, opt_level: u8) -> CompileOptions {
        self.opt_level = opt_level;
        self
    }

    pub fn emit(mut self, emit: impl IntoIterator<Item = Emit>) -> CompileOptions {
        self.emit = emit.into_iter().collect();
        self
    }

    pub fn max_vector_bits(mut self, bits: u32) -> CompileOptions {
        self.max_vector_bits = Some(bits);
        self
    }
}

/// The result of [`compile`]: the lowered model (kir module, input/output
/// layouts, workspace plan) and the bytes of every artifact asked for.
#[derive(Clone, Debug)]
pub struct CompiledModule {
    pub lowered: Lowered,
    pub target: Target,
    pub backend: Backend,
    /// What the optimizer did (`None` at `opt_level` 0).
    pub opt_report: Option<crate::opt::Report>,
    /// One entry per requested [`Emit`].
    pub artifacts: BTreeMap<Emit, Vec<u8>>,
}

impl CompiledModule {
    /// The model's symbol prefix (`<name>_run`, `<name>.o`, ...).
    pub fn name(&self) -> &str {
        &self.lowered.name
    }

    /// Writes each artifact into `out_dir` as `<model>.<ext>` (creating the
    /// folder); returns the paths written, in [`Emit`] order.
    pub fn write_to(&self, out_dir: &Path) -> Result<Vec<PathBuf>, CompileError> {
        std::fs::create_dir_all(out_dir).map_err(|source| CompileError::Write {
            path: out_dir.to_path_buf(),
            source,
        })?;
        let mut written = Vec::new();
        for (e, bytes) in &self.artifacts {
            let path = out_dir.join(format!("{}.{}", self.lowered.name, e.extension()));
            std::fs::write(&path, bytes).map_err(|source| CompileError::Write {
                path: path.clone(),
                source,
            })?;
            written.push(path);
        }
        Ok(written)
    }
}

/// Compiles a verified `model`: optimizes it (unless `opt_level` is 0),
/// lowers it for `opts.target` and produces every artifact in `opts.emit`.
/// Parses nothing and writes nothing. `Emit::Clif` needs Cranelift,
/// `Emit::Asm` and `Emit::LlvmIr` need LLVM; asking otherwise is an error.
pub fn compile(model: &Model, opts: &CompileOptions) -> Result<CompiledModule, CompileError> {
    let backend = opts.backend;
    let target = &opts.target;
    for &e in &opts.emit {
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
    if backend == Backend::Llvm {
        // Checks the target (and that this build has LLVM) before any work.
        bnnc_llvm::machine(target)?;
    }
    let limit = backend.max_vector_bits();
    let lower_opts =
        LowerOptions::max_vector_bits(opts.max_vector_bits.map_or(limit, |b| b.min(limit)));
    let (lowered, opt_report) = if opts.opt_level == 0 {
        (lower_with(model, target, &lower_opts)?, None)
    } else {
        let opt = crate::opt::optimize(model)?;
        (
            lower_with(&opt.model, target, &lower_opts)?,
            Some(opt.report),
        )
    };
    let emit = &opts.emit;
    // LLVM produces its artifacts from one optimised module.
    let mut llvm = match backend {
        Backend::Llvm => {
            let req = bnnc_llvm::Request {
                object: emit.contains(&Emit::Obj),
                assembly: emit.contains(&Emit::Asm),
                llvm_ir: emit.contains(&Emit::LlvmIr),
            };
            if req == bnnc_llvm::Request::default() {
                bnnc_llvm::Artifacts::default()
            } else {
                bnnc_llvm::compile(&lowered.module, target, req)?
            }
        }
        Backend::Cranelift => bnnc_llvm::Artifacts::default(),
    };
    let mut artifacts = BTreeMap::new();
    for &e in emit {
        let bytes: Vec<u8> = match e {
            Emit::Obj => match backend {
                Backend::Cranelift => bnnc_cranelift::compile_object(&lowered.module, target)?,
                Backend::Llvm => llvm.object.take().unwrap_or_default(),
            },
            Emit::Header => crate::header::c_header(&lowered, target).into_bytes(),
            Emit::Clif => bnnc_cranelift::clif_text(&lowered.module, target)?.into_bytes(),
            Emit::Kir => bnnc_kir::print(&lowered.module).into_bytes(),
            Emit::Asm => llvm.assembly.take().unwrap_or_default().into_bytes(),
            Emit::LlvmIr => llvm.llvm_ir.take().unwrap_or_default().into_bytes(),
        };
        artifacts.insert(e, bytes);
    }
    Ok(CompiledModule {
        lowered,
        target: target.clone(),
        backend,
        opt_report,
        artifacts,
    })
}
