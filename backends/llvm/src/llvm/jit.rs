//! JIT compilation for the host through LLVM's MCJIT.
//!
//! The module is optimised with the host-targeted pipeline first (MCJIT
//! only generates code). MCJIT's own target machine is a generic one for
//! the host triple; the `target-cpu` and `target-features` attributes on
//! every function decide the instructions, so `native` code uses
//! everything the host has (popcnt, AVX-512 ...), and nothing it lacks.

use std::collections::HashMap;
use std::ffi::CString;

use bnnc_kir as kir;
use bnnc_kir::target::Target;
use inkwell::llvm_sys::core::{LLVMContextDispose, LLVMGetNamedFunction};
use inkwell::llvm_sys::execution_engine::*;
use inkwell::llvm_sys::prelude::*;
use inkwell::targets::RelocMode;

use super::{host_cpu, machine, take_message, target_machine, Built};
use crate::{Error, Machine};

/// A kir module compiled into this process's memory by LLVM.
///
/// Addresses from [`Jit::function`] stay valid exactly as long as the `Jit`
/// lives. Calling one means transmuting it to the `extern "C"` function type
/// matching the kir signature, which is `unsafe`.
///
/// `Jit` is `Send` and `Sync`: after construction the code is immutable
/// (bnnc code writes no globals), `function` only reads a map built in
/// `new`, and the engine is touched again only when dropping.
pub struct Jit {
    ctx: LLVMContextRef,
    engine: LLVMExecutionEngineRef,
    functions: HashMap<String, usize>,
    machine: Machine,
}

// SAFETY: see the type's documentation: nothing reachable through `&Jit`
// mutates or reads LLVM state; the raw handles are only used by `drop`.
unsafe impl Send for Jit {}
// SAFETY: as above.
unsafe impl Sync for Jit {}

impl Jit {
    /// Compiles `m` for `target`, which must be runnable here: this
    /// machine's architecture, and features (or a CPU) it has. A named CPU
    /// gets LLVM's host features that the host lacks switched off, so even
    /// features bnnc does not list are never used.
    pub fn new(m: &kir::Module, target: &Target) -> Result<Jit, Error> {
        let missing = target.missing_on_host();
        if !missing.is_empty() {
            return Err(Error::NotRunnable {
                target: target.to_string(),
                missing,
            });
        }
        let mut machine = machine(target)?;
        if target.cpu.as_deref().is_some_and(|c| c != "native") {
            let (_, host) = host_cpu()?;
            for f in host.split(',').filter(|f| f.starts_with('-')) {
                machine.features.push(',');
                machine.features.push_str(f);
            }
        }
        let tm = target_machine(&machine, RelocMode::Default)?;
        let built = Built::new(m, &machine, &tm)?;
        built.optimize(&tm)?;
        let (ctx, module) = built.into_raw();
        let mut jit = Jit {
            ctx,
            engine: std::ptr::null_mut(),
            functions: HashMap::new(),
            machine,
        };
        // SAFETY: `module` is live in `ctx`; MCJIT takes it over (disposed
        // with the engine). On any error below `jit` is dropped, which
        // disposes whatever exists.
        unsafe {
            LLVMLinkInMCJIT();
            let mut options: LLVMMCJITCompilerOptions = std::mem::zeroed();
            let size = std::mem::size_of::<LLVMMCJITCompilerOptions>();
            LLVMInitializeMCJITCompilerOptions(&mut options, size);
            options.OptLevel = 3;
            let mut err = std::ptr::null_mut();
            let mut engine = std::ptr::null_mut();
            if LLVMCreateMCJITCompilerForModule(&mut engine, module, &mut options, size, &mut err)
                != 0
            {
                // The module was not taken over.
                inkwell::llvm_sys::core::LLVMDisposeModule(module);
                return Err(Error::Llvm {
                    stage: "creating the JIT".into(),
                    message: take_message(err),
                });
            }
            jit.engine = engine;
            // Every extern gets its address here, so nothing is looked up
            // by name while the code is linked.
            for x in &m.externs {
                let name = CString::new(x.name.as_str())
                    .map_err(|_| Error::UnresolvedExtern(x.name.clone()))?;
                let f = LLVMGetNamedFunction(module, name.as_ptr());
                if f.is_null() {
                    continue; // optimised away
                }
                let addr = bnnc_kir::host::resolve_symbol(&x.name)
                    .ok_or_else(|| Error::UnresolvedExtern(x.name.clone()))?;
                LLVMAddGlobalMapping(engine, f, addr as *mut std::ffi::c_void);
            }
            for f in m.functions.iter().filter(|f| f.exported) {
                let name = CString::new(f.name.as_str()).expect("kir names have no NUL");
                let addr = LLVMGetFunctionAddress(engine, name.as_ptr());
                if addr == 0 {
                    return Err(Error::Llvm {
                        stage: "linking the JIT code".into(),
                        message: format!("no address for exported function `{}`", f.name),
                    });
                }
                jit.functions.insert(f.name.clone(), addr as usize);
            }
        }
        Ok(jit)
    }

    /// The address of the exported function called `name`. (Local
    /// functions are usually inlined away by the optimiser.)
    pub fn function(&self, name: &str) -> Option<*const u8> {
        self.functions.get(name).map(|&a| a as *const u8)
    }

    /// The LLVM CPU and features the code was generated for.
    pub fn machine(&self) -> &Machine {
        &self.machine
    }
}

impl Drop for Jit {
    fn drop(&mut self) {
        // SAFETY: the engine (with its module) and then the context, each
        // disposed once; nothing of ours runs any more (addresses are
        // documented to die with the `Jit`).
        unsafe {
            if !self.engine.is_null() {
                LLVMDisposeExecutionEngine(self.engine);
            }
            LLVMContextDispose(self.ctx);
        }
    }
}

impl std::fmt::Debug for Jit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.functions.keys().collect();
        names.sort();
        f.debug_struct("Jit")
            .field("cpu", &self.machine.cpu)
            .field("functions", &names)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn jit_is_send_and_sync() {
        assert_send_sync::<Jit>();
    }
}
