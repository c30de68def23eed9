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
    /// The model's name does not give its symbols and macros to it alone.
    #[error("model name `{name}` cannot name a compiled model: {reason}")]
    ModelName {
        name: String,
        /// Where the name is on the `model` line.
        loc: bnnc_ir::Loc,
        reason: String,
    },
    #[error("internal compiler error: {0}")]
    Internal(String),
}

impl CompileError {
    /// The place in the model file the error is about, when it is about one.
    pub fn loc(&self) -> Option<bnnc_ir::Loc> {
        match self {
            CompileError::ModelName { loc, .. } if *loc != bnnc_ir::Loc::NONE => Some(*loc),
            CompileError::Lower(
                LowerError::Unsupported { at, .. } | LowerError::ConstFold { at, .. },
            ) if *at != bnnc_ir::Loc::NONE => Some(*at),
            _ => None,
        }
    }
}

/// Why `name` cannot be the name of a model compiled to an object and a
/// header, or `None` when it can.
///
/// The symbols of a compiled model are `<name>_run`, `<name>_run_v` and
/// `<name>_workspace_size`, and its header's macros `<NAME>_...`. Two models
/// linked into one program must differ in both. That holds for any two
/// distinct names made of lower-case ASCII letters, digits and `_`, not
/// starting with a digit: such a name is its own symbol prefix, and upper-casing
/// it is one-to-one. Any other character would be mangled (`ti.ny` -> `ti_ny`)
/// or folded by the upper-casing (`Tiny` -> `TINY`), and could collide with
/// another model's name silently, so it is refused.
pub fn model_name_problem(name: &str) -> Option<String> {
    if let Some(c) = name.chars().find(|c| c.is_ascii_uppercase()) {
        return Some(format!(
            "it has the upper-case letter `{c}`, and the header's macros {}_... would be those of \
             a model named `{}` too; name compiled models with lower-case letters, digits and `_`",
            name.to_uppercase(),
            name.to_lowercase()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
    {
        let mangled = crate::abi::c_ident(name);
        return Some(format!(
            "`{}` is not allowed in a C identifier, and its symbols would become {mangled}_run, ..., \
             those of a model named `{mangled}` too; name compiled models with lower-case letters, \
             digits and `_`",
            c.escape_default()
        ));
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        return Some("a C identifier cannot start with a digit".into());
    }
    None
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
    /// The binary micro-kernels' register tile (`None`: the target's; see
    /// [`crate::lower::kernel::MicroKernel::choose`]). For tuning.
    pub tile: Option<crate::lower::kernel::Tile>,
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
            tile: None,
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

    pub fn tile(mut self, tile: Option<crate::lower::kernel::Tile>) -> CompileOptions {
        self.tile = tile;
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
    /// folder), each atomically ([`bnnc_ir::files::write_atomic`]); returns
    /// the paths written, in [`Emit`] order.
    pub fn write_to(&self, out_dir: &Path) -> Result<Vec<PathBuf>, CompileError> {
        std::fs::create_dir_all(out_dir).map_err(|source| CompileError::Write {
            path: out_dir.to_path_buf(),
            source,
        })?;
        let mut written = Vec::new();
        for (e, bytes) in &self.artifacts {
            let path = out_dir.join(format!("{}.{}", self.lowered.name, e.extension()));
            bnnc_ir::files::write_atomic(&path, bytes).map_err(|source| CompileError::Write {
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
    if opts.emit.contains(&Emit::Obj) || opts.emit.contains(&Emit::Header) {
        let g = &model.graph;
        if let Some(reason) = model_name_problem(&g.name) {
            return Err(CompileError::ModelName {
                name: g.name.clone(),
                loc: g.name_loc,
                reason,
            });
        }
    }
    if backend == Backend::Llvm {
        // Checks the target (and that this build has LLVM) before any work.
        bnnc_llvm::machine(target)?;
    }
    let limit = backend.max_vector_bits();
    let lower_opts = LowerOptions {
        tile: opts.tile,
        ..LowerOptions::max_vector_bits(opts.max_vector_bits.map_or(limit, |b| b.min(limit)))
    };
    let (lowered, opt_report) = if opts.opt_level == 0 {
        (lower_with(model, target, &lower_opts)?, None)
    } else {
        let opt = crate::opt::optimize(model)?;
        (
            lower_with(&opt.model, target, &lower_opts).map_err(|e| e.located_in(&model.graph))?,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn model(name: &str) -> Model {
        let src = format!("model {name}\ninput x: f32[N, 4]\ny = relu(x)\noutput y\n");
        let file = Path::new("m.ir");
        let g = Model::parse_checked(&src, file).unwrap();
        Model::from_graph(g, None, file).unwrap()
    }

    fn compile_named(name: &str, emit: &[Emit]) -> Result<CompiledModule, CompileError> {
        let opts = CompileOptions::new(Target::parse("x86_64").unwrap()).emit(emit.iter().copied());
        compile(&model(name), &opts)
    }

    #[test]
    fn names_that_would_collide_after_mangling_are_refused() {
        for (name, says) in [
            ("Tiny", "TINY_... would be those of a model named `tiny`"),
            ("TINY", "a model named `tiny`"),
            ("ti.ny", "ti_ny_run, ..., those of a model named `ti_ny`"),
        ] {
            for emit in [&[Emit::Obj][..], &[Emit::Header]] {
                let e = compile_named(name, emit).unwrap_err();
                let CompileError::ModelName { loc, .. } = &e else {
                    panic!("{name}: {e}");
                };
                assert_eq!(*loc, bnnc_ir::Loc::new(1, 7), "{name}");
                assert!(e.to_string().contains(says), "{name}: {e}");
                assert_eq!(e.loc(), Some(bnnc_ir::Loc::new(1, 7)));
            }
            // Nothing is linked by name in a JIT or a kir listing.
            compile_named(name, &[]).unwrap();
            compile_named(name, &[Emit::Kir]).unwrap();
        }
        for ok in ["tiny", "ti_ny", "m2", "_m"] {
            assert_eq!(model_name_problem(ok), None, "{ok}");
            compile_named(ok, &[Emit::Obj, Emit::Header]).unwrap();
        }
    }

    /// A constant conv whose output would need 160 GB (padding 100000 on
    /// each side) is an error at the conv's line and column, at every
    /// optimization level (the optimizer leaves it unfolded), not an abort.
    #[test]
    fn a_constant_too_large_to_fold_is_an_error_at_its_node() {
        let src = "model constconv\ninput x: f32[N, 2]\nk = [1.5]: f32[1, 1, 1, 1]\n\
                   w = [-1]: f32[1, 1, 1, 1]\nbig = conv2d(k, w, padding=100000)\n\
                   y = relu(x)\noutput y, big\n";
        let file = Path::new("m.ir");
        let g = Model::parse_checked(src, file).unwrap();
        let m = Model::from_graph(g, None, file).unwrap();
        for level in [0, 1] {
            let opts = CompileOptions::new(Target::parse("x86_64").unwrap())
                .opt_level(level)
                .emit([Emit::Obj]);
            let e = compile(&m, &opts).unwrap_err();
            assert!(
                e.to_string().contains("constant folding of `big` failed"),
                "-O{level}: {e}"
            );
            assert_eq!(e.loc(), Some(bnnc_ir::Loc::new(5, 7)), "-O{level}: {e}");
        }
    }
}
