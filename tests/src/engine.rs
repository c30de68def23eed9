//! Engines: the ways bnnc runs a model, each checked against the reference
//! interpreter by [`crate::runner`].
//!
//! An [`Engine`] says whether it can run here ([`Engine::unavailable`]: LLVM
//! not built in, a cross compiler or qemu missing, a CPU feature the target
//! names missing) and compiles a model at an optimization level
//! ([`Engine::prepare`]: 0 lowers the model as written, 1 runs the e-graph
//! optimizer first) into a [`Prepared`] model that runs on inputs and returns
//! the output tensors, typed as the interpreter's.
//!
//! Object engines ([`Engine::QemuAarch64`], [`Engine::QemuRiscv64`],
//! [`Engine::CLink`]) compile an object and a header through the pipeline
//! (`bnnc::compile::compile`), link them with the generic C driver
//! (`tests/c/driver.c`) and run the program, natively or under qemu-user. The
//! driver fills outputs and workspace with garbage first (the code must not
//! assume zeroed memory), runs batches above 1 with the workspace at an odd
//! address, and checks the null-pointer and batch-too-large error paths and
//! `<model>_workspace_size`; packed `b1` outputs must have zero tail bits.
//!
//! Tools (override with the variables in brackets): `aarch64-linux-gnu-gcc`
//! [`BNNC_AARCH64_CC`], `qemu-aarch64` [`BNNC_QEMU_AARCH64`],
//! `riscv64-linux-gnu-gcc` [`BNNC_RISCV64_CC`], `qemu-riscv64`
//! [`BNNC_QEMU_RISCV64`], and the host's C compiler [`BNNC_CC`, then `CC`,
//! then `cc`]. Debian: gcc-aarch64-linux-gnu libc6-dev-arm64-cross
//! gcc-riscv64-linux-gnu libc6-dev-riscv64-cross qemu-user gcc.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use bnnc::compile::{compile, Backend, CompileOptions};
use bnnc::jit::{from_words, to_words, JitModel};
use bnnc::lower::{Lowered, Storage};
use bnnc_ir::{Model, Tensor};
use bnnc_kir::target::{Arch, Target};

/// The sysroot qemu-aarch64 uses for dynamically linked programs.
pub const AARCH64_SYSROOT: &str = "/usr/aarch64-linux-gnu";

/// Ulps allowed for outputs of `softmax` and `sigmoid` on an engine whose
/// `expf` is another architecture's C library (qemu engines), everything
/// else being bit for bit. glibc computes `expf` with one algorithm on
/// x86_64, aarch64 and riscv64 (in double precision, rounded once to float),
/// so the two can only differ where the exact result lies extremely close to
/// a float rounding boundary; none of the tested values does. Should another
/// C library ever differ, 1 is the bound to allow, for these outputs only.
pub const FOREIGN_EXPF_ULPS: u32 = 0;

/// Whether unavailable engines fail the tests (`CI=true`) instead of being
/// skipped with a printed reason.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A way to run a model.
#[derive(Clone, Debug, PartialEq)]
pub enum Engine {
    /// The reference interpreter (`bnnc_runtime::run`); at opt level 1 it
    /// runs the optimizer's output (`bnnc::opt::optimize`).
    Interpreter,
    /// The Cranelift JIT for this machine (`CompileOptions::host`, every
    /// feature bnnc detects).
    CraneliftJit,
    /// The LLVM JIT for a CPU target this machine can run.
    LlvmJit(Target),
    /// An aarch64 object (Cranelift or LLVM) linked by
    /// `aarch64-linux-gnu-gcc`, run by `qemu-aarch64 -L /usr/aarch64-linux-gnu`.
    QemuAarch64(Object),
    /// A riscv64 object (LLVM) linked by `riscv64-linux-gnu-gcc`, run by
    /// `qemu-riscv64`.
    QemuRiscv64(Object),
    /// An object for this machine linked into a native C program.
    CLink(Object),
}

/// How an object engine builds its program.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    pub backend: Backend,
    pub target: Target,
    /// The CPU qemu emulates (`-cpu`): one with exactly the instructions
    /// the target may use, so any other traps. `None` natively.
    pub qemu_cpu: Option<&'static str>,
    pub link: Link,
}

/// How a driver program is linked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// `-static`: no dynamic loader needed.
    Static,
    /// Dynamically (under qemu with the sysroot's loader and C library).
    Dynamic,
}

impl Engine {
    /// The LLVM JIT for this machine's CPU (`native`: every feature LLVM
    /// detects).
    pub fn llvm_jit_native() -> Engine {
        Engine::LlvmJit(Target::native_cpu().expect("a supported host"))
    }

    /// The LLVM JIT for the architecture's baseline (no popcount
    /// instruction, SSE2 only on x86_64).
    pub fn llvm_jit_baseline() -> Engine {
        Engine::LlvmJit(Target::new(Target::host().expect("a supported host").arch))
    }

    /// Cranelift or LLVM code for `target` (`aarch64[:CPU][+FEATURE]..`)
    /// under qemu-aarch64 emulating `cpu`, statically linked.
    pub fn qemu_aarch64(backend: Backend, target: &str, cpu: &'static str) -> Engine {
        Engine::QemuAarch64(Object {
            backend,
            target: Target::parse(target).expect("a valid target"),
            qemu_cpu: Some(cpu),
            link: Link::Static,
        })
    }

    /// LLVM code for `target` (`riscv64[+zbb]`) under qemu-riscv64
    /// emulating `cpu` (`rv64`, `rv64,zbb=true`), statically linked.
    pub fn qemu_riscv64(target: &str, cpu: &'static str) -> Engine {
        Engine::QemuRiscv64(Object {
            backend: Backend::Llvm,
            target: Target::parse(target).expect("a valid target"),
            qemu_cpu: Some(cpu),
            link: Link::Static,
        })
    }

    /// A native C program linking an object of `backend` for `target`.
    pub fn c_link(backend: Backend, target: Target) -> Engine {
        Engine::CLink(Object {
            backend,
            target,
            qemu_cpu: None,
            link: Link::Dynamic,
        })
    }

    /// This engine with its driver linked dynamically (object engines).
    pub fn dynamic(mut self) -> Engine {
        if let Some(o) = self.object_mut() {
            o.link = Link::Dynamic;
        }
        self
    }

    fn object(&self) -> Option<&Object> {
        match self {
            Engine::QemuAarch64(o) | Engine::QemuRiscv64(o) | Engine::CLink(o) => Some(o),
            _ => None,
        }
    }

    fn object_mut(&mut self) -> Option<&mut Object> {
        match self {
            Engine::QemuAarch64(o) | Engine::QemuRiscv64(o) | Engine::CLink(o) => Some(o),
            _ => None,
        }
    }

    /// The backend generating code (`None` for the interpreter).
    pub fn backend(&self) -> Option<Backend> {
        match self {
            Engine::Interpreter => None,
            Engine::CraneliftJit => Some(Backend::Cranelift),
            Engine::LlvmJit(_) => Some(Backend::Llvm),
            Engine::QemuAarch64(o) | Engine::QemuRiscv64(o) | Engine::CLink(o) => Some(o.backend),
        }
    }

    /// The target code is generated for (`None` for the interpreter).
    pub fn target(&self) -> Option<Target> {
        match self {
            Engine::Interpreter => None,
            Engine::CraneliftJit => Target::host().ok(),
            Engine::LlvmJit(t) => Some(t.clone()),
            Engine::QemuAarch64(o) | Engine::QemuRiscv64(o) | Engine::CLink(o) => {
                Some(o.target.clone())
            }
        }
    }

    /// Ulps allowed for outputs computed by `expf` (softmax, sigmoid): 0 but
    /// where the engine's C library is another architecture's.
    pub fn expf_ulps(&self) -> u32 {
        match self.target() {
            Some(t) if !t.is_host_arch() => FOREIGN_EXPF_ULPS,
            _ => 0,
        }
    }

    /// `None` when the engine runs here; otherwise why not.
    pub fn unavailable(&self) -> Option<String> {
        let mut why = Vec::new();
        if self.backend() == Some(Backend::Llvm) && !Backend::Llvm.available() {
            why.push(
                "bnnc was built without the `llvm` feature (run with --features bnnc/llvm)"
                    .to_string(),
            );
        }
        match self {
            Engine::Interpreter => {}
            Engine::CraneliftJit => {
                if let Err(e) = Target::host() {
                    why.push(e.to_string());
                }
            }
            Engine::LlvmJit(t) => {
                let missing = t.missing_on_host();
                if !missing.is_empty() {
                    why.push(format!("this CPU lacks {}", missing.join(", ")));
                }
            }
            Engine::QemuAarch64(o) | Engine::QemuRiscv64(o) | Engine::CLink(o) => {
                if o.qemu_cpu.is_none() {
                    let missing = o.target.missing_on_host();
                    if !missing.is_empty() {
                        why.push(format!("this CPU lacks {}", missing.join(", ")));
                    }
                }
                let (cc, qemu) = tools(self);
                let programs: Vec<String> = std::iter::once(cc).chain(qemu).collect();
                let packages = match self {
                    Engine::QemuAarch64(_) => {
                        "gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user"
                    }
                    Engine::QemuRiscv64(_) => {
                        "gcc-riscv64-linux-gnu libc6-dev-riscv64-cross qemu-user"
                    }
                    _ => "gcc",
                };
                why.extend(missing_tools(&programs, packages));
            }
        }
        (!why.is_empty()).then(|| why.join("; "))
    }

    /// Compiles `model` at `opt_level` (0: as written; 1: optimized) for
    /// this engine. Object engines write their files into `dir` (created).
    pub fn prepare(&self, model: &Model, opt_level: u8, dir: &Path) -> Result<Prepared, String> {
        match self {
            Engine::Interpreter => Ok(Prepared::Interpreter(if opt_level == 0 {
                model.clone()
            } else {
                bnnc::opt::optimize(model)
                    .map_err(|e| format!("optimize: {e}"))?
                    .model
            })),
            Engine::CraneliftJit | Engine::LlvmJit(_) => {
                let opts = self.options(opt_level).emit([]);
                JitModel::compile_with(model, &opts)
                    .map(|j| Prepared::Jit(Box::new(j)))
                    .map_err(|e| format!("compile: {e}"))
            }
            Engine::QemuAarch64(_) | Engine::QemuRiscv64(_) | Engine::CLink(_) => {
                self.build(model, opt_level, dir).map(Prepared::Program)
            }
        }
    }

    /// [`Engine::prepare`] and [`Prepared::run`] once, in a fresh scratch
    /// folder removed afterwards.
    pub fn run(
        &self,
        model: &Model,
        opt_level: u8,
        inputs: &[Tensor],
    ) -> Result<Vec<Tensor>, String> {
        let dir = crate::runner::scratch(&format!("run/{}", self.slug()));
        let out = self.prepare(model, opt_level, &dir)?.run(inputs);
        let _ = std::fs::remove_dir_all(&dir);
        out
    }

    /// The pipeline's options for this engine (a code-generating engine).
    pub fn options(&self, opt_level: u8) -> CompileOptions {
        let opts = match self {
            Engine::CraneliftJit => {
                CompileOptions::host(Backend::Cranelift).expect("a host target")
            }
            _ => CompileOptions::new(self.target().expect("a code-generating engine"))
                .backend(self.backend().expect("a code-generating engine")),
        };
        opts.opt_level(opt_level)
    }

    /// A file-name-safe version of [`Engine`]'s display name.
    pub fn slug(&self) -> String {
        self.to_string()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }

    fn build(&self, model: &Model, opt_level: u8, dir: &Path) -> Result<Program, String> {
        let o = self.object().expect("an object engine");
        let compiled =
            compile(model, &self.options(opt_level)).map_err(|e| format!("compile: {e}"))?;
        compiled.write_to(dir).map_err(|e| format!("write: {e}"))?;
        let lowered = compiled.lowered;
        let name = &lowered.name;
        let exe = dir.join("driver");
        let (cc, qemu) = tools(self);
        let mut cmd = Command::new(&cc);
        cmd.args(C_FLAGS)
            .arg("-O1")
            .arg(format!("-DBNNC_MODEL={name}"))
            .arg("-include")
            .arg(dir.join(format!("{name}.h")))
            .arg(crate::runner::repo_root().join("tests/c/driver.c"))
            .arg(dir.join(format!("{name}.o")))
            .arg("-lm")
            // A linker warning (an executable stack, text relocations) is an error.
            .arg("-Wl,--fatal-warnings")
            .arg("-o")
            .arg(&exe);
        if o.link == Link::Static {
            cmd.arg("-static");
        }
        let out = cmd.output().map_err(|e| format!("{cc}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "link failed: {cmd:?}\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let mut run = Vec::new();
        if let (Some(q), Some(cpu)) = (qemu, o.qemu_cpu) {
            run = vec![q, "-cpu".into(), cpu.into()];
            if matches!(self, Engine::QemuAarch64(_)) {
                run.extend(["-L".into(), AARCH64_SYSROOT.into()]);
            }
        }
        Ok(Program { lowered, exe, run })
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Engine::Interpreter => f.write_str("interpreter"),
            // Target::host(): `native` for `bnnc compile --target`.
            Engine::CraneliftJit => f.write_str("cranelift-jit native"),
            Engine::LlvmJit(t) => write!(f, "llvm-jit {t}"),
            Engine::QemuAarch64(o) | Engine::QemuRiscv64(o) | Engine::CLink(o) => {
                let kind = match self {
                    Engine::QemuAarch64(_) => "qemu-aarch64",
                    Engine::QemuRiscv64(_) => "qemu-riscv64",
                    _ => "c-link",
                };
                write!(f, "{kind} {} {}", o.backend, o.target)?;
                if let Some(cpu) = o.qemu_cpu {
                    write!(f, " (-cpu {cpu})")?;
                }
                if o.link == Link::Dynamic && o.qemu_cpu.is_some() {
                    f.write_str(" dynamic")?;
                }
                Ok(())
            }
        }
    }
}

/// The warnings-as-errors C flags every program in these tests compiles with.
pub const C_FLAGS: [&str; 5] = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"];

/// The host's C compiler: `$BNNC_CC`, `$CC`, or `cc`.
pub fn host_cc() -> String {
    env_or("BNNC_CC", &env_or("CC", "cc"))
}

fn env_or(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_string())
}

/// The C compiler and the qemu program an object engine uses.
fn tools(e: &Engine) -> (String, Option<String>) {
    match e {
        Engine::QemuAarch64(_) => (
            env_or("BNNC_AARCH64_CC", "aarch64-linux-gnu-gcc"),
            Some(env_or("BNNC_QEMU_AARCH64", "qemu-aarch64")),
        ),
        Engine::QemuRiscv64(_) => (
            env_or("BNNC_RISCV64_CC", "riscv64-linux-gnu-gcc"),
            Some(env_or("BNNC_QEMU_RISCV64", "qemu-riscv64")),
        ),
        _ => (host_cc(), None),
    }
}

/// `None` when every program runs (`--version`), else which do not and the
/// Debian `packages` that have them.
pub fn missing_tools(programs: &[String], packages: &str) -> Option<String> {
    let missing: Vec<&str> = programs
        .iter()
        .map(String::as_str)
        .filter(|p| !tool_runs(p))
        .collect();
    (!missing.is_empty())
        .then(|| format!("{} not found (Debian: {packages})", missing.join(" and ")))
}

/// Whether `program --version` runs and succeeds (asked once per program).
pub fn tool_runs(program: &str) -> bool {
    static SEEN: OnceLock<Mutex<HashMap<String, bool>>> = OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    if let Some(&ok) = seen.lock().unwrap().get(program) {
        return ok;
    }
    let ok = Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    seen.lock().unwrap().insert(program.to_string(), ok);
    ok
}

/// A model compiled for an engine, ready to run.
pub enum Prepared {
    Interpreter(Model),
    Jit(Box<JitModel>),
    Program(Program),
}

impl Prepared {
    /// Runs on `inputs` (as for the interpreter); the outputs as the
    /// interpreter types them (`b1` unpacked to ±1).
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, String> {
        match self {
            Prepared::Interpreter(m) => {
                bnnc_runtime::run(m, inputs).map_err(|e| format!("interpreter: {e}"))
            }
            Prepared::Jit(j) => j.run(inputs).map_err(|e| format!("jit: {e}")),
            Prepared::Program(p) => p.run(inputs),
        }
    }

    /// The kernel IR module, for code-generating engines.
    pub fn kir(&self) -> Option<&bnnc_kir::Module> {
        match self {
            Prepared::Interpreter(_) => None,
            Prepared::Jit(j) => Some(&j.compiled().lowered.module),
            Prepared::Program(p) => Some(&p.lowered.module),
        }
    }
}

/// A driver program (`tests/c/driver.c`) linked with one model's object.
pub struct Program {
    pub lowered: Lowered,
    pub exe: PathBuf,
    /// The emulator and its arguments (empty: run natively).
    pub run: Vec<String>,
}

impl Program {
    /// Runs the driver on `inputs` (batch from the first batched input).
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, String> {
        let l = &self.lowered;
        if inputs.len() != l.inputs.len() {
            return Err(format!("{} inputs for {}", inputs.len(), l.inputs.len()));
        }
        let batch = inputs
            .iter()
            .zip(&l.inputs)
            .find(|(_, d)| d.ty.is_batched())
            .map_or(1, |(t, _)| t.dims[0]);
        // Batches above 1 run with the workspace at an odd address.
        let ws_shift = if batch == 1 { 0 } else { 3 };
        let dir = self.exe.parent().expect("the program's folder");
        let (inp, outp) = (
            dir.join(format!("in{batch}.bin")),
            dir.join(format!("out{batch}.bin")),
        );
        let mut buf = b"BNNCDRV1".to_vec();
        let put = |buf: &mut Vec<u8>, v: u64| buf.extend_from_slice(&v.to_le_bytes());
        put(&mut buf, batch as u64);
        put(
            &mut buf,
            l.workspace.bytes(batch).ok_or("workspace overflows")?,
        );
        put(&mut buf, ws_shift);
        put(&mut buf, l.workspace.max_batch);
        put(&mut buf, l.inputs.len() as u64);
        put(&mut buf, l.outputs.len() as u64);
        for (t, d) in inputs.iter().zip(&l.inputs) {
            let n = d.bytes(batch);
            put(&mut buf, n);
            buf.extend(layout_bytes(&to_words(t, d), n));
        }
        for d in &l.outputs {
            put(&mut buf, d.bytes(batch));
        }
        std::fs::write(&inp, &buf).map_err(|e| e.to_string())?;
        let mut cmd = match self.run.split_first() {
            Some((q, args)) => {
                let mut c = Command::new(q);
                c.args(args).arg(&self.exe);
                c
            }
            None => Command::new(&self.exe),
        };
        let out = cmd
            .arg(&inp)
            .arg(&outp)
            .output()
            .map_err(|e| format!("{cmd:?}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "batch {batch}: the driver exited with {:?}: {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let bytes = std::fs::read(&outp).map_err(|e| e.to_string())?;
        let total: u64 = l.outputs.iter().map(|d| d.bytes(batch)).sum();
        if bytes.len() as u64 != total {
            return Err(format!(
                "batch {batch}: {} output bytes, expected {total}",
                bytes.len()
            ));
        }
        let mut pos = 0usize;
        l.outputs
            .iter()
            .map(|d| {
                let n = d.bytes(batch) as usize;
                let raw = &bytes[pos..pos + n];
                pos += n;
                let mut words = vec![0u64; n.div_ceil(8).max(1)];
                for (i, b) in raw.iter().enumerate() {
                    words[i / 8] |= (*b as u64) << (8 * (i % 8));
                }
                let t = from_words(&words, d, batch);
                // Packed bits: the bytes must be exactly the packing of the
                // values, so unused tail bits are 0.
                if matches!(d.storage, Storage::B1 { .. }) {
                    let canonical = layout_bytes(&to_words(&t, d), n as u64);
                    if raw != canonical {
                        let i = raw.iter().zip(&canonical).position(|(a, b)| a != b);
                        return Err(format!(
                            "batch {batch}, output `{}`: packed bytes differ at byte {i:?} \
                             (tail bits must be 0)",
                            d.name
                        ));
                    }
                }
                Ok(t)
            })
            .collect()
    }
}

/// The bytes of a tensor in the generated code's layout (exactly `len` bytes).
fn layout_bytes(words: &[u64], len: u64) -> Vec<u8> {
    let mut b: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    b.resize(len as usize, 0);
    b
}

/// The host's target for C programs: `x86_64:haswell` on an x86_64 CPU that
/// has its features, else the architecture's baseline.
pub fn host_object_target() -> Target {
    let host = Target::host().expect("a supported host");
    let t = match host.arch {
        Arch::X86_64 => Target::parse("x86_64:haswell").unwrap(),
        a => Target::new(a),
    };
    if t.missing_on_host().is_empty() {
        t
    } else {
        Target::new(host.arch)
    }
}
