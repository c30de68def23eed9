//! The backend proper (the `llvm` feature).

use std::ffi::{c_char, CStr};
use std::sync::Once;

use bnnc_kir as kir;
use bnnc_kir::target::{Arch, Target};
use inkwell::llvm_sys::analysis::{LLVMVerifierFailureAction, LLVMVerifyModule};
use inkwell::llvm_sys::core::*;
use inkwell::llvm_sys::prelude::*;
use inkwell::module::Module;
use inkwell::passes::PassBuilderOptions;
use inkwell::targets::{
    CodeModel, FileType, InitializationConfig, RelocMode, Target as LlvmTarget, TargetMachine,
    TargetMachineOptions, TargetTriple,
};
use inkwell::OptimizationLevel;

use crate::{known_cpus, llvm_feature, Artifacts, Error, Machine, Request, Stage};

mod jit;
mod ptrs;
mod translate;

pub use jit::Jit;

/// The optimisation pipeline, as `opt -passes=` spells it.
const PIPELINE: &str = "default<O3>";

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let c = InitializationConfig::default();
        LlvmTarget::initialize_x86(&c);
        LlvmTarget::initialize_aarch64(&c);
        LlvmTarget::initialize_riscv(&c);
    });
}

/// The host CPU as LLVM names it, and every feature LLVM detects on it
/// (`+avx2,-avx512fp16,...`).
pub fn host_cpu() -> Result<(String, String), Error> {
    init();
    let name = TargetMachine::get_host_cpu_name().to_string();
    let features = TargetMachine::get_host_cpu_features().to_string();
    Ok((name, features))
}

fn default_cpu(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "x86-64",
        Arch::Aarch64 => "generic",
        Arch::Riscv64 => "generic-rv64",
    }
}

/// Features every target of the architecture has: Linux on riscv64 is
/// RV64GC (no CPU name implies them on LLVM's generic RISC-V CPU).
fn baseline_features(arch: Arch) -> &'static [&'static str] {
    match arch {
        Arch::Riscv64 => &["+m", "+a", "+f", "+d", "+c"],
        Arch::X86_64 | Arch::Aarch64 => &[],
    }
}

/// How LLVM sees `target`: triple, CPU name and feature string. A CPU
/// must be one LLVM knows ([`known_cpus`]); `native` is the host's name and
/// the exact features LLVM detects on it.
pub fn machine(target: &Target) -> Result<Machine, Error> {
    let arch = target.arch;
    let mut features: Vec<String> = baseline_features(arch)
        .iter()
        .map(|f| f.to_string())
        .collect();
    let cpu = match target.cpu.as_deref() {
        None => default_cpu(arch).to_string(),
        Some("native") => {
            if !target.is_host_arch() {
                return Err(Error::Target {
                    target: target.to_string(),
                    reason: format!("CPU `native` is this machine's CPU, which is not {arch}"),
                });
            }
            let (name, host_features) = host_cpu()?;
            features.extend(
                host_features
                    .split(',')
                    .filter(|f| !f.is_empty())
                    .map(str::to_string),
            );
            name
        }
        Some(cpu) => {
            if !known_cpus(arch).contains(&cpu) {
                return Err(Error::UnknownCpu {
                    arch,
                    cpu: cpu.to_string(),
                    valid: format!("{} (and native)", known_cpus(arch).join(", ")),
                });
            }
            cpu.to_string()
        }
    };
    features.extend(feature_list(target)?);
    Ok(Machine {
        triple: arch.triple(),
        cpu,
        features: features.join(","),
        abi: (arch == Arch::Riscv64).then_some("lp64d"),
    })
}

fn target_machine(machine: &Machine, reloc: RelocMode) -> Result<TargetMachine, Error> {
    init();
    let triple = TargetTriple::create(machine.triple);
    let fail = |reason: String| Error::Target {
        target: format!("{} (cpu {})", machine.triple, machine.cpu),
        reason,
    };
    let t = LlvmTarget::from_triple(&triple).map_err(|e| fail(e.to_string()))?;
    let mut options = TargetMachineOptions::default()
        .set_cpu(&machine.cpu)
        .set_features(&machine.features)
        .set_level(OptimizationLevel::Aggressive)
        .set_reloc_mode(reloc)
        .set_code_model(CodeModel::Default);
    if let Some(abi) = machine.abi {
        options = options.set_abi(abi);
    }
    t.create_target_machine_from_options(&triple, options)
        .ok_or_else(|| fail("LLVM could not create a target machine".into()))
}

/// A string LLVM allocated, copied and freed.
///
/// # Safety
///
/// `p` is null or a message from LLVM that nothing else frees.
unsafe fn take_message(p: *mut c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    let s = CStr::from_ptr(p).to_string_lossy().into_owned();
    LLVMDisposeMessage(p);
    s
}

/// An LLVM context holding one translated module.
pub(crate) struct Built {
    ctx: LLVMContextRef,
    /// Null once given away (to a JIT).
    module: LLVMModuleRef,
}

impl Drop for Built {
    fn drop(&mut self) {
        // SAFETY: both were created in `Built::new` and are disposed once,
        // the module (if still ours) before its context.
        unsafe {
            if !self.module.is_null() {
                LLVMDisposeModule(self.module);
            }
            LLVMContextDispose(self.ctx);
        }
    }
}

impl Built {
    /// Checks `m`, translates it for `machine` (triple and data layout of
    /// `tm`) and verifies the LLVM IR.
    pub(crate) fn new(
        m: &kir::Module,
        machine: &Machine,
        tm: &TargetMachine,
    ) -> Result<Built, Error> {
        kir::check(m).map_err(Error::Kir)?;
        let name = if m.name.is_empty() { "bnnc" } else { &m.name };
        let cname = std::ffi::CString::new(name.replace('\0', "")).expect("no NUL");
        // SAFETY: a fresh context and a module in it, owned by `built`.
        let built = unsafe {
            let ctx = LLVMContextCreate();
            let module = LLVMModuleCreateWithNameInContext(cname.as_ptr(), ctx);
            Built { ctx, module }
        };
        let triple = std::ffi::CString::new(machine.triple).expect("no NUL");
        let layout = tm.get_target_data().get_data_layout();
        // SAFETY: the module is live; the strings outlive the calls.
        unsafe {
            LLVMSetTarget(built.module, triple.as_ptr());
            LLVMSetDataLayout(built.module, layout.as_ptr());
        }
        translate::translate(built.ctx, built.module, m, machine)?;
        // SAFETY: the module is live; the message is freed by take_message.
        unsafe {
            let mut msg = std::ptr::null_mut();
            let bad = LLVMVerifyModule(
                built.module,
                LLVMVerifierFailureAction::LLVMReturnStatusAction,
                &mut msg,
            );
            let msg = take_message(msg);
            if bad != 0 {
                return Err(Error::Llvm {
                    stage: "verifying the translated module".into(),
                    message: format!("{msg}\n{}", built.print()),
                });
            }
        }
        Ok(built)
    }

    /// The module as inkwell sees it, without taking ownership.
    fn as_inkwell(&self) -> std::mem::ManuallyDrop<Module<'static>> {
        // SAFETY: the module is live for as long as `self`; ManuallyDrop
        // keeps inkwell from disposing it, and the borrow of `self` this
        // value is used under outlives every use.
        std::mem::ManuallyDrop::new(unsafe { Module::new(self.module) })
    }

    /// Runs the optimisation pipeline.
    pub(crate) fn optimize(&self, tm: &TargetMachine) -> Result<(), Error> {
        let options = PassBuilderOptions::create();
        options.set_loop_vectorization(true);
        options.set_loop_slp_vectorization(true);
        options.set_loop_interleaving(true);
        options.set_loop_unrolling(true);
        self.as_inkwell()
            .run_passes(PIPELINE, tm, options)
            .map_err(|e| Error::Llvm {
                stage: format!("running {PIPELINE}"),
                message: e.to_string(),
            })
    }

    pub(crate) fn print(&self) -> String {
        // SAFETY: the module is live; the string is freed by take_message.
        unsafe { take_message(LLVMPrintModuleToString(self.module)) }
    }

    fn emit(&self, tm: &TargetMachine, file: FileType) -> Result<Vec<u8>, Error> {
        let buf = tm
            .write_to_memory_buffer(&self.as_inkwell(), file)
            .map_err(|e| Error::Llvm {
                stage: "generating code".into(),
                message: e.to_string(),
            })?;
        Ok(buf.as_slice().to_vec())
    }

    /// Code generation changes the IR it runs on, so a second output is
    /// generated from a copy.
    fn emit_from_copy(&self, tm: &TargetMachine, file: FileType) -> Result<Vec<u8>, Error> {
        // SAFETY: the clone is a new module in the same context, disposed
        // by its own `Built`-like guard below before `self` goes.
        let copy = unsafe { LLVMCloneModule(self.module) };
        let guard = Clone_ {
            module: copy,
            _owner: self,
        };
        // SAFETY: as in `as_inkwell`.
        let m = std::mem::ManuallyDrop::new(unsafe { Module::new(guard.module) });
        let buf = tm
            .write_to_memory_buffer(&m, file)
            .map_err(|e| Error::Llvm {
                stage: "generating code".into(),
                message: e.to_string(),
            })?;
        Ok(buf.as_slice().to_vec())
    }

    /// Gives the module away (to a JIT, which disposes it).
    pub(crate) fn take_module(&mut self) -> LLVMModuleRef {
        std::mem::replace(&mut self.module, std::ptr::null_mut())
    }

    /// Gives the context away too: the caller disposes it after the module.
    pub(crate) fn into_raw(mut self) -> (LLVMContextRef, LLVMModuleRef) {
        let module = self.take_module();
        let ctx = self.ctx;
        std::mem::forget(self);
        (ctx, module)
    }
}

/// A module cloned from a `Built`, disposed when dropped.
struct Clone_<'a> {
    module: LLVMModuleRef,
    _owner: &'a Built,
}

impl Drop for Clone_<'_> {
    fn drop(&mut self) {
        // SAFETY: the clone is ours alone; its context outlives it.
        unsafe { LLVMDisposeModule(self.module) }
    }
}

/// Compiles `m` for `target` with `default<O3>` and returns what `req`
/// asks for.
pub fn compile(m: &kir::Module, target: &Target, req: Request) -> Result<Artifacts, Error> {
    let machine = machine(target)?;
    let tm = target_machine(&machine, RelocMode::PIC)?;
    let built = Built::new(m, &machine, &tm)?;
    built.optimize(&tm)?;
    let mut out = Artifacts::default();
    if req.llvm_ir {
        out.llvm_ir = Some(built.print());
    }
    if req.assembly {
        let asm = if req.object {
            built.emit_from_copy(&tm, FileType::Assembly)?
        } else {
            built.emit(&tm, FileType::Assembly)?
        };
        out.assembly = Some(String::from_utf8_lossy(&asm).into_owned());
    }
    if req.object {
        out.object = Some(built.emit(&tm, FileType::Object)?);
    }
    Ok(out)
}

/// A relocatable, position-independent ELF object for `target`. Exported
/// kir functions are global symbols, the others local; data objects are
/// local read-only data; externs (`expf`) are undefined symbols (link with
/// `-lm`).
pub fn compile_object(m: &kir::Module, target: &Target) -> Result<Vec<u8>, Error> {
    let req = Request {
        object: true,
        ..Request::default()
    };
    Ok(compile(m, target, req)?.object.unwrap_or_default())
}

/// The assembly of the object [`compile_object`] writes.
pub fn assembly(m: &kir::Module, target: &Target) -> Result<String, Error> {
    let req = Request {
        assembly: true,
        ..Request::default()
    };
    Ok(compile(m, target, req)?.assembly.unwrap_or_default())
}

/// The module's LLVM IR, as translated or as optimised.
pub fn llvm_ir(m: &kir::Module, target: &Target, stage: Stage) -> Result<String, Error> {
    match stage {
        Stage::Optimized => {
            let req = Request {
                llvm_ir: true,
                ..Request::default()
            };
            Ok(compile(m, target, req)?.llvm_ir.unwrap_or_default())
        }
        Stage::Translated => {
            let machine = machine(target)?;
            let tm = target_machine(&machine, RelocMode::PIC)?;
            Ok(Built::new(m, &machine, &tm)?.print())
        }
    }
}

/// The LLVM names for a bnnc target's features (`+popcnt,+sse4.1`).
fn feature_list(target: &Target) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    for f in &target.features {
        let name = llvm_feature(target.arch, f).ok_or_else(|| Error::Target {
            target: target.to_string(),
            reason: format!("unknown feature `{f}` for {}", target.arch),
        })?;
        out.push(format!("+{name}"));
    }
    Ok(out)
}
