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
use cranelift_codegen::print_errors::pretty_verifier_error;
use cranelift_codegen::CodegenError;
use cranelift_codegen::Context;
use cranelift_frontend::FunctionBuilderContext;
use cranelift_module::{Module, ModuleError};

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

/// Checks `m`, declares and defines everything in `module`, compiling each
/// function; `each` sees every function's context after compilation.
pub(crate) fn compile_module<M: Module>(
    module: &mut M,
    m: &kir::Module,
    placement: Placement,
    disasm: bool,
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
        let defined = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            module
                .define_function(decl.funcs[i], &mut ctx)
                .map_err(|e| codegen_error(f, &ctx, e))
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
    let mut out = String::new();
    compile_module(&mut module, m, Placement::Object, true, |i, ctx| {
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
