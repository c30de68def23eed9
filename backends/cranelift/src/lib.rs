//! bnnc-cranelift: the Cranelift backend.
//!
//! Translates kir ([`bnnc_kir`]) one to one into Cranelift IR and
//! produces a JIT'd module on the host ([`Jit`]), relocatable ELF objects for
//! x86_64 and aarch64 ([`compile_object`]), CLIF text ([`clif_text`]) and the
//! lowered machine instructions ([`disassembly`]).
//!
//! The Cranelift ISA is built from the [`Target`]: the architecture's baseline
//! plus exactly the features the target names (`x86_64` alone has no
//! `popcnt`, so popcounts are expanded into bit arithmetic). Vectors must be
//! exactly 128 bits; anything else is refused with [`Error::Unsupported`].

use bnnc_kir as kir;
use bnnc_kir::target::Target;
use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::isa::TargetIsa;
use cranelift_codegen::print_errors::pretty_verifier_error;
use cranelift_codegen::CodegenError;
use cranelift_codegen::Context;
use cranelift_frontend::FunctionBuilderContext;
use cranelift_module::{Module, ModuleError, ModuleReloc};

mod isa;
mod jit;
mod object;
mod translate;

pub use jit::Jit;
pub use object::compile_object;

use translate::{Declared, Placement};

/// Everything that can go wrong between kir and machine code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kir module is malformed (`kir::check` failed).
    #[error("invalid kir: {0}")]
    Kir(String),
    /// A type or operation Cranelift cannot express exactly.
    #[error("Cranelift backend: unsupported {what} in function `{func}`: {reason}")]
    Unsupported {
        func: String,
        what: String,
        reason: String,
    },
    /// A data object that cannot be placed as described.
    #[error("data object `{name}`: {reason}")]
    Data { name: String, reason: String },
    /// The target cannot be configured in Cranelift.
    #[error("target {target}: {reason}")]
    Target { target: String, reason: String },
    /// Cranelift rejected or failed to compile a function (verifier errors
    /// are printed with the offending CLIF).
    #[error("Cranelift failed on function `{func}`: {message}")]
    Codegen { func: String, message: String },
    /// Declaring, defining, linking or emitting the module failed.
    #[error("Cranelift module: {0}")]
    Module(String),
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

fn check(m: &kir::Module) -> Result<(), Error> {
    kir::check(m).map_err(Error::Kir)
}

fn codegen_error(f: &kir::Function, ctx: &Context, e: ModuleError) -> Error {
    let message = match e {
        ModuleError::Compilation(CodegenError::Verifier(errors)) => {
            format!(
                "verifier errors:\n{}",
                pretty_verifier_error(&ctx.func, None, errors)
            )
        }
        ModuleError::Compilation(e) => e.to_string(),
        e => e.to_string(),
    };
    Error::Codegen {
        func: f.name.clone(),
        message,
    }
}

/// More parameters, or arguments of one call, than this make a function wide
/// ([`is_wide`]).
const WIDE: usize = 256;

/// Whether `f` has more than [`WIDE`] parameters or passes more than that
/// to one call: a model's entry points with thousands of inputs and outputs.
/// Those values are all live at once, and Cranelift's default (backtracking)
/// register allocator takes time quadratic in their number; wide functions
/// are compiled with the single-pass allocator instead
/// ([`isa::build_wide_isa`]), linear in the function's size. They only pass
/// pointers on to the kernels, so the allocator's code quality hardly matters
/// there; every kernel keeps the backtracking allocator.
pub(crate) fn is_wide(f: &kir::Function) -> bool {
    fn calls_wide(b: &[kir::Stmt]) -> bool {
        b.iter().any(|s| match s {
            kir::Stmt::Call(_, args) => args.len() > WIDE,
            kir::Stmt::For { body, .. } => calls_wide(body),
            kir::Stmt::If { then, els, .. } => calls_wide(then) || calls_wide(els),
            _ => false,
        })
    }
    f.params > WIDE || calls_wide(&f.body)
}

/// Compiles `ctx.func` with `isa` and defines it as `id` in `module`: what
/// `Module::define_function` does with the module's own ISA.
// The error type is cranelift-module's own, as `define_function` returns it.
#[allow(clippy::result_large_err)]
fn define_with<M: Module>(
    module: &mut M,
    isa: &dyn TargetIsa,
    id: cranelift_module::FuncId,
    ctx: &mut Context,
) -> Result<(), ModuleError> {
    let alignment = ctx
        .compile(isa, &mut ControlPlane::default())
        .map_err(|e| ModuleError::Compilation(e.inner))?
        .buffer
        .alignment;
    let alignment = u64::from(alignment);
    let code = ctx.compiled_code().expect("compiled just now");
    let relocs: Vec<ModuleReloc> = code
        .buffer
        .relocs()
        .iter()
        .map(|r| ModuleReloc::from_mach_reloc(r, &ctx.func, id))
        .collect();
    let bytes = code.buffer.data().to_vec();
    module.define_function_bytes(id, alignment, &bytes, &relocs)
}

/// Checks `m`, declares and defines everything in `module`, compiling each
/// function (wide ones with `wide_isa`, see [`is_wide`]); `each` sees every
/// function's context after compilation.
pub(crate) fn compile_module<M: Module>(
    module: &mut M,
    m: &kir::Module,
    placement: Placement,
    disasm: bool,
    wide_isa: &dyn TargetIsa,
    mut each: impl FnMut(usize, &Context),
) -> Result<Declared, Error> {
    check(m)?;
    let decl = translate::declare(module, m)?;
    translate::define_data(module, m, &decl)?;
    let mut ctx = module.make_context();
    let mut fctx = FunctionBuilderContext::new();
    for (i, f) in m.functions.iter().enumerate() {
        module.clear_context(&mut ctx);
        ctx.set_disasm(disasm);
        let config = module.target_config();
        translate::translate_function(m, &decl, i, placement, config, &mut ctx, &mut fctx)?;
        // A panic inside Cranelift (an internal assertion) becomes an error
        // naming the function instead of unwinding through the caller.
        let wide = is_wide(f);
        let defined = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let r = if wide {
                define_with(module, wide_isa, decl.funcs[i], &mut ctx)
            } else {
                module.define_function(decl.funcs[i], &mut ctx)
            };
            r.map_err(|e| codegen_error(f, &ctx, e))
        }));
        match defined {
            Ok(r) => r?,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("unknown panic");
                return Err(Error::Codegen {
                    func: f.name.clone(),
                    message: format!("Cranelift panicked: {what}"),
                });
            }
        }
        each(i, &ctx);
    }
    Ok(decl)
}

/// The CLIF of every function, in module order, as translated (before
/// Cranelift's optimizations), after the verifier accepted it. A legend
/// names the `u0:N` (functions, externs) and `u1:N` (data) symbols.
pub fn clif_text(m: &kir::Module, target: &Target) -> Result<String, Error> {
    check(m)?;
    let mut module = object::new_module(m, target)?;
    let decl = translate::declare(&mut module, m)?;
    let mut out = translate::symbol_legend(m, &decl);
    let mut ctx = module.make_context();
    let mut fctx = FunctionBuilderContext::new();
    for (i, f) in m.functions.iter().enumerate() {
        module.clear_context(&mut ctx);
        let config = module.target_config();
        translate::translate_function(m, &decl, i, Placement::Object, config, &mut ctx, &mut fctx)?;
        ctx.verify(module.isa()).map_err(|errors| Error::Codegen {
            func: f.name.clone(),
            message: format!(
                "verifier errors:\n{}",
                pretty_verifier_error(&ctx.func, None, errors)
            ),
        })?;
        out.push_str(&format!("\n; fn {}\n{}", f.name, ctx.func.display()));
    }
    Ok(out)
}

/// The lowered machine instructions of every function, in module order, as
/// Cranelift prints them after register allocation (the code that
/// [`compile_object`] emits for `target`).
pub fn disassembly(m: &kir::Module, target: &Target) -> Result<String, Error> {
    let mut module = object::new_module(m, target)?;
    let wide = isa::build_wide_isa(target, isa::Purpose::Object)?;
    let mut out = String::new();
    compile_module(&mut module, m, Placement::Object, true, &*wide, |i, ctx| {
        let code = ctx
            .compiled_code()
            .and_then(|c| c.vcode.as_deref())
            .unwrap_or("");
        out.push_str(&format!(
            "; fn {} ({target})\n{code}\n",
            m.functions[i].name
        ));
    })?;
    Ok(out)
}
