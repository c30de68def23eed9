//! Compile models from a cargo build script and link them into the crate, in
//! the spirit of `cc` and `prost-build`.
//!
//! For each model, [`Config::compile`] writes into `OUT_DIR`:
//!
//! - `<model>.o`: the object the Cranelift backend generates through the one
//!   pipeline (`bnnc::compile::compile`, e-graph optimizer included unless
//!   [`Config::opt_level`]`(0)`), weights in read-only data;
//! - `libbnnc_<model>.a`: a static library holding that object, for the linker;
//! - `<model>.h`: the C header (for C code built in the same crate);
//! - `<model>.rs`: safe Rust bindings, to `include!` (see below).
//!
//! and prints the directives cargo reads: `cargo:rustc-link-search=native=OUT_DIR`,
//! `cargo:rustc-link-lib=static=bnnc_<model>` per model, `cargo:rustc-link-lib=m`
//! (the object calls `expf`), and `cargo:rerun-if-changed=` for every `.ir`
//! file and the weights file it names. `<model>` is the name on the model's
//! `model` line (dots become underscores), not the file's name.
//!
//! # Example
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [build-dependencies]
//! bnnc-build = { path = "../bnnc/build" }
//! ```
//!
//! `build.rs`:
//!
//! ```no_run
//! fn main() {
//!     bnnc_build::Config::new()
//!         .model("models/mnist_mlp.ir") // its weights file is found from the .ir
//!         .compile_or_panic();
//! }
//! ```
//!
//! or, to handle the error yourself:
//!
//! ```no_run
//! fn main() {
//!     let built = bnnc_build::Config::new()
//!         .model("models/mnist_mlp.ir")
//!         .target("x86_64+popcnt") // instead of cargo's target baseline
//!         .compile();
//!     if let Err(e) = built {
//!         eprintln!("error: {e}"); // `models/mnist_mlp.ir:12:5: error: ...`
//!         std::process::exit(1);
//!     }
//! }
//! ```
//!
//! `src/main.rs`:
//!
//! ```text
//! include!(concat!(env!("OUT_DIR"), "/mnist_mlp.rs"));
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let model = mnist_mlp::Model::new()?; // checks the CPU has the target's features
//!     let batch = 2;
//!     let x = vec![0.5f32; batch * mnist_mlp::INPUT_X_LEN];
//!     let mut logits = vec![0f32; batch * mnist_mlp::OUTPUT_LOGITS_LEN];
//!     model.run(&x, &mut logits, batch)?;
//!     println!("{logits:?}");
//!     Ok(())
//! }
//! ```
//!
//! # The generated Rust module
//!
//! `<model>.rs` holds one module named after the model (so several models can
//! be included side by side) with:
//!
//! - per input and output (`X` is the value's name in upper case):
//!   `INPUT_X_LEN` / `OUTPUT_X_LEN`, the slice elements of one sample (of the
//!   whole tensor when it has no leading batch dimension `N`; see `*_BATCHED`),
//!   `*_SHAPE` (the dimensions after `N`), and for `b1` tensors `*_ROWS`,
//!   `*_CHANNELS`, `*_WORDS_PER_ROW`;
//! - `WORKSPACE_FIXED`, `WORKSPACE_PER_SAMPLE`, `MAX_BATCH`, and
//!   `workspace_size(batch)`;
//! - `ffi`: the `extern "C"` declarations of `<model>_run`, `<model>_run_v`
//!   and `<model>_workspace_size`, and the status codes;
//! - `Model`: `Model::new()` checks at run time that the CPU has every feature
//!   the target names; `run(&self, inputs.., outputs.., batch)` checks slice
//!   lengths and allocates the workspace, `run_with_workspace(.., workspace,
//!   batch)` takes one; both return `Result<(), Status>`;
//! - `Status`, why a call did not run (implements `std::error::Error`);
//! - for models with `b1` inputs or outputs, `pack_b1` and `unpack_b1`.
//!
//! Slices have the storage of the C header: `f32` and `i32` tensors are
//! `&[f32]` and `&[i32]`, row-major (NHWC); `b1` tensors are bit-packed
//! `&[u64]`: each row of `channels` bits takes `ceil(channels / 64)` words,
//! channel `c` is bit `c % 64` of word `c / 64`, a set bit means -1, and unused
//! tail bits are 0.
//!
//! # Target
//!
//! Without [`Config::target`], the code is for the architecture cargo is
//! building for (`CARGO_CFG_TARGET_ARCH`) with exactly the CPU features the
//! crate's own Rust code is compiled with (`CARGO_CFG_TARGET_FEATURE`,
//! restricted to the features bnnc knows). With default flags that is the
//! architecture's baseline (`x86_64`: SSE2, no `popcnt`; `aarch64`: no `lse`,
//! no `dotprod`), so the program runs on every CPU of that architecture; with
//! `RUSTFLAGS="-C target-cpu=native"` or `-C target-feature=+popcnt` the model
//! uses the same features as the Rust code. [`Config::target`] names a target
//! explicitly (`"x86_64+popcnt+avx2"`; [`Target::help`] lists the rest); its
//! architecture must be cargo's. `"native"` (every feature of the machine
//! running the build) is accepted only when that machine has cargo's target
//! architecture. `Model::new()` in the generated code refuses to run on a CPU
//! that lacks a feature the target names.
//!
//! Models are compiled by the Cranelift backend, which writes ELF objects for
//! x86_64 and aarch64: a cargo target of another architecture is refused with
//! the backend's error (naming the model), and operating systems with another
//! object format (Windows, Apple) are refused before anything is compiled.
//! Outside a build script (no cargo variables), the default is the baseline of
//! the host architecture and nothing is checked against it.
//!
//! # The static library
//!
//! `libbnnc_<model>.a` is written by bnnc itself (a GNU-format archive with a
//! symbol index read from the object's ELF symbol table), not by an `ar`
//! tool: nothing needs to be installed or configured (no `ar` on `PATH`, no
//! `AR_<target>` for cross builds), and the archive is byte-for-byte
//! deterministic (no timestamps, owners or modes from the machine).

#![allow(clippy::needless_doctest_main)] // build scripts have a `main`

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use bnnc_ir::{Dim, Model};
use bnnc_kir::target::{Arch, Target, TargetError};

use bnnc::compile::{compile, CompileError, CompileOptions, Emit};
use bnnc::lower::{sample_elems, status, IoDesc, Lowered, Storage, Workspace};

/// Why models could not be built. Every variant about one model names its
/// file; load errors render as `file:line:col: error: ...`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// [`Config::compile`] was called without any [`Config::model`].
    #[error("bnnc_build: no model to compile (call Config::model(PATH))")]
    NoModels,
    /// The model file or its weights could not be read, parsed or verified.
    #[error("{source}")]
    Load {
        model: PathBuf,
        source: bnnc_ir::Error,
    },
    /// Lowering or code generation failed.
    #[error("{}: error: cannot compile model `{name}` for {target}: {source}", model.display())]
    Compile {
        model: PathBuf,
        name: String,
        target: String,
        source: Box<CompileError>,
    },
    /// Two models have the same name, so their symbols and files would clash.
    #[error(
        "{}: error: model `{name}` has the same name as {}: bnnc names symbols and files after the model, so names must differ",
        second.display(),
        first.display()
    )]
    DuplicateName {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
    /// [`Config::target`] does not parse.
    #[error("bnnc_build: invalid target `{target}`: {source}")]
    Target { target: String, source: TargetError },
    /// The target's architecture is not the one cargo builds for.
    #[error(
        "bnnc_build: target `{target}` is for {arch}, but cargo is building for {cargo_target}; the object could not be linked"
    )]
    TargetMismatch {
        target: String,
        arch: Arch,
        cargo_target: String,
    },
    /// `native` while cross compiling.
    #[error(
        "bnnc_build: target `native` means this machine ({host}), but cargo is building for {cargo_target}; name a target of that architecture instead (e.g. `{suggestion}`)"
    )]
    NativeCrossCompile {
        host: String,
        cargo_target: String,
        suggestion: String,
    },
    /// Cargo builds for a target bnnc has no code generator or object format for.
    #[error("bnnc_build: cannot compile models for {cargo_target}: {reason}")]
    UnsupportedCargoTarget {
        cargo_target: String,
        reason: String,
    },
    /// Neither [`Config::out_dir`] nor `OUT_DIR` is set.
    #[error(
        "bnnc_build: OUT_DIR is not set; call Config::compile from a cargo build script, or set Config::out_dir"
    )]
    NoOutDir,
    /// A file could not be written.
    #[error("bnnc_build: cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The generated object could not be bundled into a static library.
    #[error("{}: error: cannot archive the object of model `{name}`: {reason}", model.display())]
    Archive {
        model: PathBuf,
        name: String,
        reason: String,
    },
}

/// What [`Config::compile`] produced for one model.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CompiledModel {
    /// The model's name: prefix of its C symbols, name of its Rust module, and
    /// `<model>` in the file names below.
    pub name: String,
    /// The `.ir` file, as given to [`Config::model`].
    pub source: PathBuf,
    /// The weights file the model names, if any.
    pub weights: Option<PathBuf>,
    pub target: Target,
    /// `<out_dir>/<model>.o`.
    pub object: PathBuf,
    /// `<out_dir>/libbnnc_<model>.a`.
    pub library: PathBuf,
    /// `<out_dir>/<model>.h`.
    pub header: PathBuf,
    /// `<out_dir>/<model>.rs`.
    pub rust: PathBuf,
    pub inputs: Vec<IoDesc>,
    pub outputs: Vec<IoDesc>,
    pub workspace: Workspace,
}

/// The build configuration: which models, for which target, written where.
#[derive(Clone, Debug)]
pub struct Config {
    models: Vec<PathBuf>,
    target: Option<String>,
    out_dir: Option<PathBuf>,
    cargo_metadata: bool,
    opt_level: u8,
}

impl Default for Config {
    fn default() -> Config {
        Config::new()
    }
}

impl Config {
    /// No models yet; target from cargo, output to `OUT_DIR`, cargo directives
    /// printed.
    pub fn new() -> Config {
        Config {
            models: Vec::new(),
            target: None,
            out_dir: None,
            cargo_metadata: true,
            opt_level: 1,
        }
    }

    /// Adds a model (`.ir` file; its weights file is the one it names,
    /// relative to it). Relative paths are relative to the current directory,
    /// which in a build script is the package's root.
    pub fn model(&mut self, path: impl AsRef<Path>) -> &mut Config {
        self.models.push(path.as_ref().to_path_buf());
        self
    }

    /// Adds several models.
    pub fn models<P: AsRef<Path>>(&mut self, paths: impl IntoIterator<Item = P>) -> &mut Config {
        for p in paths {
            self.model(p);
        }
        self
    }

    /// The target: `ARCH[+FEATURE]...` or `native` (see the module docs for the
    /// default). Its architecture must be the one cargo builds for.
    pub fn target(&mut self, target: impl AsRef<str>) -> &mut Config {
        self.target = Some(target.as_ref().to_string());
        self
    }

    /// Where to write the files (default: `OUT_DIR`).
    pub fn out_dir(&mut self, dir: impl AsRef<Path>) -> &mut Config {
        self.out_dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Whether to print the `cargo:` directives (default: true). Turn off to
    /// use this outside a build script.
    pub fn cargo_metadata(&mut self, print: bool) -> &mut Config {
        self.cargo_metadata = print;
        self
    }

    /// 1 (the default): the e-graph optimizer rewrites each model first, as
    /// `bnnc compile` does; 0 lowers the model as written (`-O0`).
    pub fn opt_level(&mut self, level: u8) -> &mut Config {
        self.opt_level = level;
        self
    }

    /// The target this configuration compiles for, from [`Config::target`] and
    /// cargo's environment.
    pub fn resolved_target(&self) -> Result<Target, Error> {
        resolve_target(
            self.target.as_deref(),
            &CargoTarget::from_env(),
            &Target::host(),
        )
    }

    /// Compiles every model, writes its files and prints the cargo directives.
    /// Stops at the first model that fails.
    pub fn compile(&self) -> Result<Vec<CompiledModel>, Error> {
        if self.models.is_empty() {
            return Err(Error::NoModels);
        }
        let target = self.resolved_target()?;
        let out_dir = match &self.out_dir {
            Some(d) => d.clone(),
            None => std::env::var_os("OUT_DIR")
                .map(PathBuf::from)
                .ok_or(Error::NoOutDir)?,
        };
        std::fs::create_dir_all(&out_dir).map_err(|source| Error::Write {
            path: out_dir.clone(),
            source,
        })?;
        let mut built: Vec<CompiledModel> = Vec::new();
        for path in &self.models {
            let compiled = self.compile_one(path, &target, &out_dir, &built)?;
            built.push(compiled);
        }
        if self.cargo_metadata {
            for line in link_directives(&out_dir, &built) {
                println!("{line}");
            }
        }
        Ok(built)
    }

    /// [`Config::compile`] for build scripts that want no error handling:
    /// panics with the error's message (`file:line:col: error: ...`), which
    /// cargo shows under the failed build script's stderr.
    #[track_caller]
    pub fn compile_or_panic(&self) -> Vec<CompiledModel> {
        match self.compile() {
            Ok(built) => built,
            Err(e) => panic!("{e}"),
        }
    }

    fn compile_one(
        &self,
        path: &Path,
        target: &Target,
        out_dir: &Path,
        built: &[CompiledModel],
    ) -> Result<CompiledModel, Error> {
        // Printed first, so that a model that fails to load is retried when
        // the file changes.
        if self.cargo_metadata {
            println!("cargo:rerun-if-changed={}", path.display());
        }
        let model = Model::load(path).map_err(|source| Error::Load {
            model: path.to_path_buf(),
            source,
        })?;
        let weights = Model::weights_path(&model.graph, path);
        if let (true, Some(w)) = (self.cargo_metadata, &weights) {
            println!("cargo:rerun-if-changed={}", w.display());
        }
        let compile_err = |name: &str, source: CompileError| Error::Compile {
            model: path.to_path_buf(),
            name: name.to_string(),
            target: target.to_string(),
            source: Box::new(source),
        };
        let opts = CompileOptions::new(target.clone())
            .opt_level(self.opt_level)
            .emit([Emit::Obj, Emit::Header]);
        let mut c = compile(&model, &opts).map_err(|e| compile_err(&model.graph.name, e))?;
        let l = &c.lowered;
        if let Some(first) = built.iter().find(|b| b.name == l.name) {
            return Err(Error::DuplicateName {
                name: l.name.clone(),
                first: first.source.clone(),
                second: path.to_path_buf(),
            });
        }
        let object = c.artifacts.remove(&Emit::Obj).unwrap_or_default();
        let header = c.artifacts.remove(&Emit::Header).unwrap_or_default();
        let l = &c.lowered;
        let archive =
            static_library(&format!("{}.o", l.name), &object).map_err(|reason| Error::Archive {
                model: path.to_path_buf(),
                name: l.name.clone(),
                reason,
            })?;
        let write = |file: String, bytes: &[u8]| -> Result<PathBuf, Error> {
            let p = out_dir.join(file);
            std::fs::write(&p, bytes).map_err(|source| Error::Write {
                path: p.clone(),
                source,
            })?;
            Ok(p)
        };
        let object = write(format!("{}.o", l.name), &object)?;
        let library = write(format!("libbnnc_{}.a", l.name), &archive)?;
        let header = write(format!("{}.h", l.name), &header)?;
        let rust = write(
            format!("{}.rs", l.name),
            rust_bindings(l, target, path).as_bytes(),
        )?;
        Ok(CompiledModel {
            name: l.name.clone(),
            source: path.to_path_buf(),
            weights,
            target: target.clone(),
            object,
            library,
            header,
            rust,
            inputs: l.inputs.clone(),
            outputs: l.outputs.clone(),
            workspace: l.workspace,
        })
    }
}

/// The link directives for models built into `out_dir`.
fn link_directives(out_dir: &Path, built: &[CompiledModel]) -> Vec<String> {
    let mut v = vec![format!(
        "cargo:rustc-link-search=native={}",
        out_dir.display()
    )];
    for b in built {
        v.push(format!("cargo:rustc-link-lib=static=bnnc_{}", b.name));
    }
    v.push("cargo:rustc-link-lib=m".to_string());
    v
}

// ---------------------------------------------------------------------------
// Target

/// What cargo tells a build script about the target it builds for (its
/// environment variables); every field is `None` outside a build script.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CargoTarget {
    /// `TARGET`, the triple, e.g. `x86_64-unknown-linux-gnu`.
    pub triple: Option<String>,
    /// `CARGO_CFG_TARGET_ARCH`, e.g. `x86_64`.
    pub arch: Option<String>,
    /// `CARGO_CFG_TARGET_OS`, e.g. `linux`.
    pub os: Option<String>,
    /// `CARGO_CFG_TARGET_FEATURE`: rustc's names, comma separated, e.g.
    /// `fxsr,sse,sse2`.
    pub features: Option<String>,
}

impl CargoTarget {
    /// From this process's environment.
    pub fn from_env() -> CargoTarget {
        CargoTarget::from_lookup(|k| std::env::var(k).ok())
    }

    /// From any lookup of cargo's variable names (for tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> CargoTarget {
        CargoTarget {
            triple: get("TARGET"),
            arch: get("CARGO_CFG_TARGET_ARCH"),
            os: get("CARGO_CFG_TARGET_OS"),
            features: get("CARGO_CFG_TARGET_FEATURE"),
        }
    }

    /// The architecture name: `CARGO_CFG_TARGET_ARCH`, else the triple's
    /// first component.
    fn arch_name(&self) -> Option<&str> {
        self.arch
            .as_deref()
            .or_else(|| self.triple.as_deref().and_then(|t| t.split('-').next()))
            .filter(|a| !a.is_empty())
    }

    fn describe(&self) -> String {
        match (&self.triple, self.arch_name()) {
            (Some(t), _) => t.clone(),
            (None, Some(a)) => a.to_string(),
            (None, None) => "an unknown target".to_string(),
        }
    }

    /// The architecture, `Ok(None)` outside cargo, or why bnnc cannot build
    /// for this target.
    fn checked_arch(&self) -> Result<Option<Arch>, Error> {
        let Some(name) = self.arch_name() else {
            return Ok(None);
        };
        let unsupported = |reason: String| Error::UnsupportedCargoTarget {
            cargo_target: self.describe(),
            reason,
        };
        // bnnc's architecture names are rustc's; which of them a backend
        // compiles for is the backend's to say (it names the model).
        let arch = match Target::parse(name) {
            Ok(t) if name != "native" => t.arch,
            _ => {
                return Err(unsupported(format!(
                    "bnnc generates no code for the architecture {name}"
                )))
            }
        };
        let os = self.os.clone().or_else(|| {
            let t = self.triple.as_deref()?;
            ["windows", "darwin", "apple"]
                .into_iter()
                .find(|k| t.contains(k))
                .map(str::to_string)
        });
        if let Some(os) = os {
            if matches!(
                os.as_str(),
                "windows"
                    | "macos"
                    | "ios"
                    | "tvos"
                    | "watchos"
                    | "visionos"
                    | "uefi"
                    | "darwin"
                    | "apple"
            ) {
                return Err(unsupported(format!(
                    "bnnc writes ELF objects, and {os} uses another object format"
                )));
            }
        }
        Ok(Some(arch))
    }

    /// The bnnc features among `CARGO_CFG_TARGET_FEATURE` (`sse4.1` is
    /// bnnc's `sse41`; names bnnc does not know are left out).
    fn bnnc_features(&self, arch: Arch) -> Vec<String> {
        let Some(list) = &self.features else {
            return Vec::new();
        };
        list.split(',')
            .map(|f| f.trim().replace('.', ""))
            .filter(|f| arch.features().iter().any(|(n, _)| n == f))
            .collect()
    }
}

/// The target to compile for: `requested` (`Config::target`) checked against
/// cargo's target, or cargo's target architecture with the features the crate
/// is compiled with, or (outside cargo) the host architecture's baseline.
/// `host` is [`Target::host`], passed in for tests.
pub fn resolve_target(
    requested: Option<&str>,
    cargo: &CargoTarget,
    host: &Result<Target, TargetError>,
) -> Result<Target, Error> {
    let cargo_arch = cargo.checked_arch()?;
    let host = || {
        host.clone().map_err(|source| Error::Target {
            target: "native".into(),
            source,
        })
    };
    match requested {
        None => match cargo_arch {
            Some(arch) => {
                let mut t = Target::new(arch);
                t.features.extend(cargo.bnnc_features(arch));
                Ok(t)
            }
            None => Ok(Target::new(host()?.arch)),
        },
        Some("native") => {
            let h = host()?;
            match cargo_arch {
                Some(arch) if arch != h.arch => Err(Error::NativeCrossCompile {
                    host: h.to_string(),
                    cargo_target: cargo.describe(),
                    suggestion: arch.name().to_string(),
                }),
                _ => Ok(h),
            }
        }
        Some(s) => {
            let t = Target::parse(s).map_err(|source| Error::Target {
                target: s.to_string(),
                source,
            })?;
            match cargo_arch {
                Some(arch) if arch != t.arch => Err(Error::TargetMismatch {
                    target: s.to_string(),
                    arch: t.arch,
                    cargo_target: cargo.describe(),
                }),
                _ => Ok(t),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Static library

/// A GNU `ar` archive holding one ELF object, with the symbol index linkers
/// need (the object's defined global symbols).
pub fn static_library(member: &str, object: &[u8]) -> Result<Vec<u8>, String> {
    let symbols = elf_defined_globals(object)?;
    Ok(gnu_archive(member, object, &symbols))
}

fn read<const N: usize>(b: &[u8], at: usize) -> Result<[u8; N], String> {
    at.checked_add(N)
        .and_then(|end| b.get(at..end))
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| format!("truncated ELF object (reading {N} bytes at offset {at})"))
}

fn u16_at(b: &[u8], at: usize) -> Result<usize, String> {
    Ok(u16::from_le_bytes(read(b, at)?) as usize)
}

fn u32_at(b: &[u8], at: usize) -> Result<usize, String> {
    Ok(u32::from_le_bytes(read(b, at)?) as usize)
}

fn u64_at(b: &[u8], at: usize) -> Result<usize, String> {
    usize::try_from(u64::from_le_bytes(read(b, at)?))
        .map_err(|_| "ELF offset out of range".to_string())
}

/// Names of the global and weak symbols an ELF64 little-endian relocatable
/// object defines, in symbol-table order.
pub fn elf_defined_globals(obj: &[u8]) -> Result<Vec<String>, String> {
    if obj.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err("not an ELF object".into());
    }
    if obj.get(4) != Some(&2) || obj.get(5) != Some(&1) {
        return Err("not a 64-bit little-endian ELF object".into());
    }
    let shoff = u64_at(obj, 0x28)?;
    let shentsize = u16_at(obj, 0x3a)?;
    let mut shnum = u16_at(obj, 0x3c)?;
    if shentsize < 64 {
        return Err(format!("ELF section header size {shentsize} < 64"));
    }
    if shnum == 0 && shoff != 0 {
        // More than 0xff00 sections: the count is in section 0's sh_size.
        shnum = u64_at(obj, shoff + 32)?;
    }
    let section = |i: usize| -> Result<usize, String> {
        i.checked_mul(shentsize)
            .and_then(|o| o.checked_add(shoff))
            .ok_or_else(|| "ELF section header offset overflows".to_string())
    };
    let mut names = Vec::new();
    for i in 0..shnum {
        let sh = section(i)?;
        if u32_at(obj, sh + 4)? != 2 {
            continue; // not SHT_SYMTAB
        }
        let (off, size) = (u64_at(obj, sh + 24)?, u64_at(obj, sh + 32)?);
        let strtab = section(u32_at(obj, sh + 40)?)?;
        let (str_off, str_size) = (u64_at(obj, strtab + 24)?, u64_at(obj, strtab + 32)?);
        let strings = str_off
            .checked_add(str_size)
            .and_then(|end| obj.get(str_off..end))
            .ok_or("ELF string table out of bounds")?;
        let entsize = u64_at(obj, sh + 56)?.max(24);
        for s in 0..size / entsize {
            let sym = off + s * entsize;
            let info = read::<1>(obj, sym + 4)?[0];
            let shndx = u16_at(obj, sym + 6)?;
            let (bind, kind) = (info >> 4, info & 0xf);
            // STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE; not STT_SECTION/STT_FILE;
            // defined (not SHN_UNDEF).
            if !matches!(bind, 1 | 2 | 10) || matches!(kind, 3 | 4) || shndx == 0 {
                continue;
            }
            let name_off = u32_at(obj, sym)?;
            let rest = strings
                .get(name_off..)
                .ok_or("ELF symbol name out of bounds")?;
            let end = rest
                .iter()
                .position(|&c| c == 0)
                .ok_or("unterminated ELF symbol name")?;
            let name =
                std::str::from_utf8(&rest[..end]).map_err(|_| "ELF symbol name is not UTF-8")?;
            if !name.is_empty() {
                names.push(name.to_string());
            }
        }
    }
    Ok(names)
}

/// One archive member header (60 bytes); fields are space padded, times and
/// ids are 0 so the archive is deterministic.
fn ar_header(out: &mut Vec<u8>, name: &str, mode: &str, size: usize) {
    let field = |out: &mut Vec<u8>, s: &str, width: usize| {
        out.extend_from_slice(s.as_bytes());
        out.extend(std::iter::repeat_n(b' ', width - s.len()));
    };
    field(out, name, 16);
    field(out, "0", 12); // mtime
    field(out, "0", 6); // uid
    field(out, "0", 6); // gid
    field(out, mode, 8);
    field(out, &size.to_string(), 10);
    out.extend_from_slice(b"`\n");
}

/// A GNU archive: `/` symbol index, `//` long-name table when the member name
/// needs it, then the member.
fn gnu_archive(member: &str, object: &[u8], symbols: &[String]) -> Vec<u8> {
    let pad = |n: usize| n + n % 2;
    // Symbol index: count, offsets of the member's header, names; big-endian.
    let index_size = 4 + 4 * symbols.len() + symbols.iter().map(|s| s.len() + 1).sum::<usize>();
    let short = member.len() < 16; // `name/` fits the 16-byte field
    let long_names = if short {
        Vec::new()
    } else {
        format!("{member}/\n").into_bytes()
    };
    let mut member_at = 8 + 60 + pad(index_size);
    if !long_names.is_empty() {
        member_at += 60 + pad(long_names.len());
    }
    let mut out = b"!<arch>\n".to_vec();
    ar_header(&mut out, "/", "0", index_size);
    out.extend_from_slice(&(symbols.len() as u32).to_be_bytes());
    for _ in symbols {
        out.extend_from_slice(&(member_at as u32).to_be_bytes());
    }
    for s in symbols {
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }
    if index_size % 2 == 1 {
        out.push(b'\n');
    }
    if !long_names.is_empty() {
        ar_header(&mut out, "//", "", long_names.len());
        out.extend_from_slice(&long_names);
        if long_names.len() % 2 == 1 {
            out.push(b'\n');
        }
    }
    debug_assert_eq!(out.len(), member_at);
    let name = if short {
        format!("{member}/")
    } else {
        "/0".to_string()
    };
    ar_header(&mut out, &name, "644", object.len());
    out.extend_from_slice(object);
    if object.len() % 2 == 1 {
        out.push(b'\n');
    }
    out
}

// ---------------------------------------------------------------------------
// Rust bindings

const RUST_KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut",
    "pub", "ref", "return", "self", "Self", "static", "struct", "super", "trait", "true", "try",
    "type", "unsafe", "use", "where", "while", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "typeof", "unsized", "virtual", "yield",
];

/// A Rust identifier for `name`: other characters become `_`, a leading digit
/// or `_` alone gets a prefix, keywords get a `_` suffix.
fn rust_ident(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s == "_" || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert_str(0, "v_");
    }
    if RUST_KEYWORDS.contains(&s.as_str()) {
        s.push('_');
    }
    s
}

/// `base`, or `base_2`, `base_3`.. if taken; records the result.
fn unique(base: String, taken: &mut Vec<String>) -> String {
    let mut s = base.clone();
    let mut k = 2;
    while taken.contains(&s) {
        s = format!("{base}_{k}");
        k += 1;
    }
    taken.push(s.clone());
    s
}

/// One input or output as the bindings name and check it.
struct IoItem<'a> {
    d: &'a IoDesc,
    index: usize,
    is_input: bool,
    /// Parameter name of `run` and of the C prototype.
    param: String,
    /// Constant prefix, e.g. `INPUT_X`.
    konst: String,
}

impl IoItem<'_> {
    fn elem(&self) -> &'static str {
        match self.d.storage {
            Storage::F32 => "f32",
            Storage::I32 => "i32",
            Storage::B1 { .. } => "u64",
        }
    }

    fn kind(&self) -> &'static str {
        if self.is_input {
            "input"
        } else {
            "output"
        }
    }

    /// Slice elements per sample (per call when unbatched).
    fn len(&self) -> usize {
        match self.d.storage {
            Storage::F32 | Storage::I32 => sample_elems(&self.d.ty),
            Storage::B1 { rows, channels } => rows * Storage::words(channels),
        }
    }

    /// Dimensions after the batch.
    fn shape(&self) -> Vec<usize> {
        let skip = usize::from(self.d.ty.is_batched());
        self.d.ty.shape[skip..]
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => *n,
                Dim::Batch => 1,
            })
            .collect()
    }

    fn describe(&self) -> String {
        let d = self.d;
        let per = if d.ty.is_batched() {
            "per sample"
        } else {
            "per call (no batch dimension)"
        };
        match d.storage {
            Storage::F32 | Storage::I32 => format!(
                "{} {} `{}`: `{}`; `&[{}]`, row-major (NHWC), {} elements {per}",
                self.kind(),
                self.index,
                d.name,
                d.ty,
                self.elem(),
                self.len()
            ),
            Storage::B1 { rows, channels } => format!(
                "{} {} `{}`: `{}`; `&[u64]`, bit-packed, {} word(s) {per}: {rows} row(s) of \
                 {channels} channels, {} word(s) per row",
                self.kind(),
                self.index,
                d.name,
                d.ty,
                self.len(),
                Storage::words(channels)
            ),
        }
    }
}

/// `n` with `_` between groups of three digits, as a Rust literal.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('_');
        }
        out.push(c);
    }
    out
}

/// Rust features (as `is_x86_feature_detected!` / `is_aarch64_feature_detected!`
/// spell them) for a target's bnnc features.
fn runtime_feature(arch: Arch, f: &str) -> String {
    match (arch.name(), f) {
        ("x86_64", "sse41") => "sse4.1".into(),
        ("x86_64", "sse42") => "sse4.2".into(),
        _ => f.to_string(),
    }
}

/// The Rust bindings of a lowered model: one module named after the model with
/// constants, `extern "C"` declarations, a safe `Model` wrapper and `Status`.
/// `source` is only mentioned in a comment.
pub fn rust_bindings(l: &Lowered, target: &Target, source: &Path) -> String {
    let module = rust_ident(&l.name);
    let mut params = vec!["self".to_string(), "batch".into(), "workspace".into()];
    let mut konsts: Vec<String> = Vec::new();
    let mut items: Vec<IoItem> = Vec::new();
    for (is_input, list) in [(true, &l.inputs), (false, &l.outputs)] {
        for (index, d) in list.iter().enumerate() {
            let id = rust_ident(&d.name);
            let prefix = if is_input { "INPUT" } else { "OUTPUT" };
            items.push(IoItem {
                d,
                index,
                is_input,
                param: unique(id.to_lowercase(), &mut params),
                konst: unique(format!("{prefix}_{}", id.to_uppercase()), &mut konsts),
            });
        }
    }
    let any_b1 = items
        .iter()
        .any(|i| matches!(i.d.storage, Storage::B1 { .. }));
    let arch = target.arch;
    let mut s = String::new();
    let w = &mut s;
    macro_rules! line {
        ($($t:tt)*) => { let _ = writeln!(w, $($t)*); };
    }
    line!(
        "// Generated by bnnc {} (bnnc_build) from {:?}. Do not edit.",
        env!("CARGO_PKG_VERSION"),
        source.display().to_string()
    );
    line!();
    line!(
        "/// Model `{}`, compiled by bnnc for target `{target}`.",
        l.name
    );
    line!("///");
    line!("/// Arguments of `run`, in order (after them: the workspace, if any, and `batch`):");
    line!("///");
    for it in &items {
        line!("/// - {}", it.describe());
    }
    if any_b1 {
        line!("///");
        line!(
            "/// Bit-packed tensors: channel `c` of a row is bit `c % 64` of word `c / 64`, a set"
        );
        line!("/// bit means -1, unused tail bits are 0 (see [`pack_b1`]).");
    }
    line!("///");
    line!(
        "/// The object is linked as `libbnnc_{}.a` (and `libm`), set up by `bnnc_build`.",
        l.name
    );
    line!("#[allow(dead_code, non_snake_case)]");
    line!("pub mod {module} {{");
    line!("    /// The model's name, the prefix of its C symbols.");
    line!("    pub const NAME: &str = {:?};", l.name);
    line!("    /// The target the object was compiled for; it uses no instruction outside it.");
    line!("    pub const TARGET: &str = \"{target}\";");
    line!("    /// Number of inputs.");
    line!("    pub const NUM_INPUTS: usize = {};", l.inputs.len());
    line!("    /// Number of outputs.");
    line!("    pub const NUM_OUTPUTS: usize = {};", l.outputs.len());
    for it in &items {
        line!();
        let unit = if it.d.ty.is_batched() {
            "one sample"
        } else {
            "the whole tensor (it has no batch dimension)"
        };
        line!(
            "    /// {} {} `{}` (`{}`): `{}` elements of {unit}.",
            if it.is_input { "Input" } else { "Output" },
            it.index,
            it.d.name,
            it.d.ty,
            it.elem()
        );
        line!(
            "    pub const {}_LEN: usize = {};",
            it.konst,
            grouped(it.len() as u64)
        );
        line!(
            "    /// Whether `{}` has a leading batch dimension (its slice then holds `batch * {}_LEN` elements).",
            it.d.name,
            it.konst
        );
        line!(
            "    pub const {}_BATCHED: bool = {};",
            it.konst,
            it.d.ty.is_batched()
        );
        if it.d.ty.is_batched() {
            line!("    /// The dimensions of one sample of `{}`.", it.d.name);
        } else {
            line!("    /// The dimensions of `{}`.", it.d.name);
        }
        line!(
            "    pub const {}_SHAPE: &[usize] = &{:?};",
            it.konst,
            it.shape()
        );
        if let Storage::B1 { rows, channels } = it.d.storage {
            line!("    /// Packed rows of `{}` per sample.", it.d.name);
            line!("    pub const {}_ROWS: usize = {rows};", it.konst);
            line!("    /// Channels (bits) per packed row of `{}`.", it.d.name);
            line!("    pub const {}_CHANNELS: usize = {channels};", it.konst);
            line!("    /// `u64` words per packed row of `{}`.", it.d.name);
            line!(
                "    pub const {}_WORDS_PER_ROW: usize = {};",
                it.konst,
                Storage::words(channels)
            );
        }
    }
    line!();
    line!("    /// Workspace bytes a call needs whatever the batch.");
    line!(
        "    pub const WORKSPACE_FIXED: usize = {};",
        grouped(l.workspace.fixed)
    );
    line!("    /// Workspace bytes a call needs per sample.");
    line!(
        "    pub const WORKSPACE_PER_SAMPLE: usize = {};",
        grouped(l.workspace.per_sample)
    );
    line!("    /// The largest batch the entry points accept.");
    line!(
        "    pub const MAX_BATCH: usize = {};",
        grouped(l.workspace.max_batch)
    );
    line!();
    line!("    /// Workspace bytes for `batch` samples (any alignment; 64 is best), or `None`");
    line!("    /// above [`MAX_BATCH`].");
    line!("    #[must_use]");
    line!("    pub const fn workspace_size(batch: usize) -> Option<usize> {{");
    line!("        if batch > MAX_BATCH {{");
    line!("            return None;");
    line!("        }}");
    line!("        match WORKSPACE_PER_SAMPLE.checked_mul(batch) {{");
    line!("            Some(per) => WORKSPACE_FIXED.checked_add(per),");
    line!("            None => None,");
    line!("        }}");
    line!("    }}");
    line!();

    // ffi
    let c_ty = |it: &IoItem| match it.d.storage {
        Storage::F32 => "float",
        Storage::I32 => "int32_t",
        Storage::B1 { .. } => "uint64_t",
    };
    let mut c_params: Vec<String> = items
        .iter()
        .map(|it| {
            format!(
                "{}{} *{}",
                if it.is_input { "const " } else { "" },
                c_ty(it),
                bnnc::header::c_ident(&it.d.name)
            )
        })
        .collect();
    c_params.push("void *workspace".into());
    c_params.push("size_t batch".into());
    let rust_params: Vec<String> = items
        .iter()
        .map(|it| {
            format!(
                "{}: *{} {}",
                it.param,
                if it.is_input { "const" } else { "mut" },
                it.elem()
            )
        })
        .chain([
            "workspace: *mut ::core::ffi::c_void".to_string(),
            "batch: usize".to_string(),
        ])
        .collect();
    line!(
        "    /// The C entry points of the object and their status codes (see `{}.h`).",
        l.name
    );
    line!("    pub mod ffi {{");
    line!("        /// Returned on success.");
    line!("        pub const OK: i32 = {};", status::OK);
    line!("        /// A required pointer is null.");
    line!(
        "        pub const ERR_NULL_POINTER: i32 = {};",
        status::NULL_POINTER
    );
    line!("        /// `batch` exceeds [`super::MAX_BATCH`].");
    line!(
        "        pub const ERR_BATCH_TOO_LARGE: i32 = {};",
        status::BATCH_TOO_LARGE
    );
    line!();
    line!("        unsafe extern \"C\" {{");
    line!(
        "            /// `int32_t {}({})`",
        l.entry(),
        c_params.join(", ")
    );
    line!("            ///");
    line!("            /// Runs the model on `batch` samples: inputs, then outputs, in declaration order.");
    line!(
        "            pub fn {}({}) -> i32;",
        l.entry(),
        rust_params.join(", ")
    );
    line!();
    line!("            /// The same, with the inputs and outputs as arrays of pointers.");
    line!(
        "            pub fn {}(inputs: *const *const ::core::ffi::c_void, outputs: *const *mut ::core::ffi::c_void, workspace: *mut ::core::ffi::c_void, batch: usize) -> i32;",
        l.entry_v()
    );
    line!();
    line!("            /// Workspace bytes for `batch` samples; `usize::MAX` above `MAX_BATCH`.");
    line!(
        "            pub fn {}(batch: usize) -> usize;",
        l.workspace_fn()
    );
    line!("        }}");
    line!("    }}");
    line!();

    // Status
    line!("    /// Why a call did not run.");
    line!("    #[derive(Clone, Copy, Debug, PartialEq, Eq)]");
    line!("    pub enum Status {{");
    line!("        /// An input slice does not hold the elements `batch` needs.");
    line!("        InputLength {{");
    line!("            /// The input's name.");
    line!("            name: &'static str,");
    line!("            /// Elements needed.");
    line!("            expected: usize,");
    line!("            /// Elements given.");
    line!("            actual: usize,");
    line!("        }},");
    line!("        /// An output slice does not hold the elements `batch` needs.");
    line!("        OutputLength {{");
    line!("            /// The output's name.");
    line!("            name: &'static str,");
    line!("            /// Elements needed.");
    line!("            expected: usize,");
    line!("            /// Elements given.");
    line!("            actual: usize,");
    line!("        }},");
    line!("        /// The workspace is smaller than `workspace_size(batch)`.");
    line!("        WorkspaceTooSmall {{");
    line!("            /// Bytes needed.");
    line!("            required: usize,");
    line!("            /// Bytes given.");
    line!("            actual: usize,");
    line!("        }},");
    line!("        /// `batch` exceeds [`MAX_BATCH`].");
    line!("        BatchTooLarge {{");
    line!("            /// The batch asked for.");
    line!("            batch: usize,");
    line!("            /// [`MAX_BATCH`].");
    line!("            max: usize,");
    line!("        }},");
    line!("        /// This CPU lacks a feature the target names (checked by [`Model::new`]).");
    line!("        UnsupportedCpu {{");
    line!("            /// The missing feature.");
    line!("            feature: &'static str,");
    line!("        }},");
    line!("        /// The object returned [`ffi::ERR_NULL_POINTER`].");
    line!("        NullPointer,");
    line!("        /// The object returned a status code this module does not know.");
    line!("        Unknown(i32),");
    line!("    }}");
    line!();
    line!("    impl ::core::fmt::Display for Status {{");
    line!("        fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {{");
    line!("            match self {{");
    line!("                Self::InputLength {{ name, expected, actual }} => write!(");
    line!("                    f,");
    line!(
        "                    \"model `{}`: input `{{name}}` has {{actual}} elements, expected {{expected}}\"",
        l.name
    );
    line!("                ),");
    line!("                Self::OutputLength {{ name, expected, actual }} => write!(");
    line!("                    f,");
    line!(
        "                    \"model `{}`: output `{{name}}` has {{actual}} elements, expected {{expected}}\"",
        l.name
    );
    line!("                ),");
    line!("                Self::WorkspaceTooSmall {{ required, actual }} => write!(");
    line!("                    f,");
    line!(
        "                    \"model `{}`: the workspace has {{actual}} bytes, {{required}} are needed\"",
        l.name
    );
    line!("                ),");
    line!("                Self::BatchTooLarge {{ batch, max }} => write!(");
    line!("                    f,");
    line!(
        "                    \"model `{}`: batch {{batch}} is larger than the maximum {{max}}\"",
        l.name
    );
    line!("                ),");
    line!("                Self::UnsupportedCpu {{ feature }} => write!(");
    line!("                    f,");
    line!(
        "                    \"model `{}` was compiled for {{TARGET}}, but this CPU lacks {{feature}}\"",
        l.name
    );
    line!("                ),");
    line!(
        "                Self::NullPointer => write!(f, \"model `{}`: a required pointer is null\"),",
        l.name
    );
    line!(
        "                Self::Unknown(code) => write!(f, \"model `{}` returned status {{code}}\"),",
        l.name
    );
    line!("            }}");
    line!("        }}");
    line!("    }}");
    line!();
    line!("    impl ::std::error::Error for Status {{}}");
    line!();

    // Model
    let sig: Vec<String> = items
        .iter()
        .map(|it| {
            format!(
                "{}: &{}[{}]",
                it.param,
                if it.is_input { "" } else { "mut " },
                it.elem()
            )
        })
        .collect();
    let args: Vec<&str> = items.iter().map(|it| it.param.as_str()).collect();
    line!("    /// The compiled model, with safe entry points. It holds no state: calls are");
    line!("    /// reentrant and may run concurrently.");
    line!("    #[derive(Clone, Copy, Debug)]");
    line!("    pub struct Model {{");
    line!("        _private: (),");
    line!("    }}");
    line!();
    line!("    impl Model {{");
    line!("        /// The model, after checking that this CPU has every feature of [`TARGET`].");
    line!("        ///");
    line!("        /// # Errors");
    line!("        ///");
    line!("        /// [`Status::UnsupportedCpu`] naming the first missing feature.");
    line!("        pub fn new() -> Result<Self, Status> {{");
    let cfg_arch = arch.name();
    // Architectures without a stable detection macro get no run-time check.
    let detect = match cfg_arch {
        "x86_64" => Some("::std::is_x86_feature_detected!"),
        "aarch64" => Some("::std::arch::is_aarch64_feature_detected!"),
        _ => None,
    };
    for f in target.features.iter().filter(|_| detect.is_some()) {
        let detect = detect.unwrap_or_default();
        let rf = runtime_feature(arch, f);
        line!("            #[cfg(target_arch = \"{cfg_arch}\")]");
        line!("            if !{detect}(\"{rf}\") {{");
        line!("                return Err(Status::UnsupportedCpu {{ feature: \"{f}\" }});");
        line!("            }}");
    }
    line!("            Ok(Self {{ _private: () }})");
    line!("        }}");
    line!();
    line!("        /// Runs the model on `batch` samples with a workspace it allocates.");
    line!("        ///");
    line!("        /// # Errors");
    line!("        ///");
    line!("        /// [`Status::BatchTooLarge`], or a slice of the wrong length.");
    line!("        #[allow(clippy::too_many_arguments)]");
    line!(
        "        pub fn run(&self, {}batch: usize) -> Result<(), Status> {{",
        sig.iter().map(|p| format!("{p}, ")).collect::<String>()
    );
    line!("            let size = workspace_size(batch).ok_or(Status::BatchTooLarge {{ batch, max: MAX_BATCH }})?;");
    line!("            let mut workspace = ::std::vec![0u8; size];");
    line!(
        "            self.run_with_workspace({}&mut workspace, batch)",
        args.iter().map(|a| format!("{a}, ")).collect::<String>()
    );
    line!("        }}");
    line!();
    line!("        /// Runs the model on `batch` samples with the caller's workspace of at least");
    line!("        /// `workspace_size(batch)` bytes (reuse it across calls to avoid allocating).");
    line!("        ///");
    line!("        /// # Errors");
    line!("        ///");
    line!("        /// [`Status::BatchTooLarge`], a slice of the wrong length, or a workspace too small.");
    line!("        #[allow(clippy::too_many_arguments)]");
    line!(
        "        pub fn run_with_workspace(&self, {}workspace: &mut [u8], batch: usize) -> Result<(), Status> {{",
        sig.iter().map(|p| format!("{p}, ")).collect::<String>()
    );
    line!("            let too_large = Status::BatchTooLarge {{ batch, max: MAX_BATCH }};");
    line!("            let required = workspace_size(batch).ok_or(too_large)?;");
    for it in &items {
        let variant = if it.is_input {
            "InputLength"
        } else {
            "OutputLength"
        };
        if it.d.ty.is_batched() {
            line!(
                "            let expected = {}_LEN.checked_mul(batch).ok_or(too_large)?;",
                it.konst
            );
        } else {
            line!("            let expected = {}_LEN;", it.konst);
        }
        line!("            if {}.len() != expected {{", it.param);
        line!(
            "                return Err(Status::{variant} {{ name: {:?}, expected, actual: {}.len() }});",
            it.d.name,
            it.param
        );
        line!("            }}");
    }
    line!("            if workspace.len() < required {{");
    line!("                return Err(Status::WorkspaceTooSmall {{ required, actual: workspace.len() }});");
    line!("            }}");
    let call_args: Vec<String> = items
        .iter()
        .map(|it| {
            if it.is_input {
                format!("{}.as_ptr()", it.param)
            } else {
                format!("{}.as_mut_ptr()", it.param)
            }
        })
        .chain([
            "workspace.as_mut_ptr().cast()".to_string(),
            "batch".to_string(),
        ])
        .collect();
    line!(
        "            // SAFETY: `Model::new` checked the CPU runs the object's instructions; every"
    );
    line!("            // slice holds exactly the elements the object reads or writes for `batch`");
    line!("            // samples, the workspace at least the bytes it uses, and the borrows keep the");
    line!("            // outputs and the workspace disjoint from each other and from the inputs.");
    line!(
        "            let code = unsafe {{ ffi::{}({}) }};",
        l.entry(),
        call_args.join(", ")
    );
    line!("            match code {{");
    line!("                ffi::OK => Ok(()),");
    line!("                ffi::ERR_NULL_POINTER => Err(Status::NullPointer),");
    line!("                ffi::ERR_BATCH_TOO_LARGE => Err(too_large),");
    line!("                other => Err(Status::Unknown(other)),");
    line!("            }}");
    line!("        }}");
    line!("    }}");

    if any_b1 {
        line!();
        line!("    /// Packs ±1 values, `channels` per row (row-major; a negative value is -1, anything");
        line!("    /// else +1), into the bit-packed layout of `b1` tensors.");
        line!("    ///");
        line!("    /// # Panics");
        line!("    ///");
        line!("    /// If `channels` is 0 or does not divide `values.len()`.");
        line!("    #[must_use]");
        line!("    pub fn pack_b1(values: &[i32], channels: usize) -> ::std::vec::Vec<u64> {{");
        line!("        assert!(channels > 0 && values.len().is_multiple_of(channels), \"pack_b1: {{}} values are not rows of {{channels}}\", values.len());");
        line!("        let per_row = channels.div_ceil(64);");
        line!("        let mut words = ::std::vec![0u64; values.len() / channels * per_row];");
        line!("        for (i, &v) in values.iter().enumerate() {{");
        line!("            if v < 0 {{");
        line!("                let (row, c) = (i / channels, i % channels);");
        line!("                words[row * per_row + c / 64] |= 1u64 << (c % 64);");
        line!("            }}");
        line!("        }}");
        line!("        words");
        line!("    }}");
        line!();
        line!("    /// Unpacks bit-packed rows of `channels` channels to ±1 values.");
        line!("    ///");
        line!("    /// # Panics");
        line!("    ///");
        line!("    /// If `channels` is 0 or `words` is not whole rows.");
        line!("    #[must_use]");
        line!("    pub fn unpack_b1(words: &[u64], channels: usize) -> ::std::vec::Vec<i32> {{");
        line!("        let per_row = channels.div_ceil(64);");
        line!("        assert!(channels > 0 && words.len().is_multiple_of(per_row), \"unpack_b1: {{}} words are not rows of {{channels}} channels\", words.len());");
        line!("        let rows = words.len() / per_row;");
        line!("        (0..rows * channels)");
        line!("            .map(|i| {{");
        line!("                let (row, c) = (i / channels, i % channels);");
        line!("                if (words[row * per_row + c / 64] >> (c % 64)) & 1 == 1 {{ -1 }} else {{ 1 }}");
        line!("            }})");
        line!("            .collect()");
        line!("    }}");
    }
    line!();
    line!("    #[cfg(not(target_arch = \"{cfg_arch}\"))]");
    line!(
        "    compile_error!(\"model `{}` was compiled by bnnc for {arch}, not this crate's target architecture\");",
        l.name
    );
    line!("}}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model with f32, i32 and b1 inputs and outputs, and an unbatched input.
    fn mixed_source() -> String {
        let w: Vec<String> = (0..140)
            .map(|i| if (i * 7 + 3) % 5 < 2 { "-1" } else { "1" }.to_string())
            .collect();
        format!(
            "model mixed.net\n\
             input x: f32[N, 3]\n\
             input k: i32[N, 2]\n\
             input b: b1[N, 70]\n\
             input t: f32[3]\n\
             w = [{}]: f32[2, 70]\n\
             wb = sign(w)\n\
             acc = dense(b, wb)\n\
             s = add(acc, k)\n\
             y = add(x, t)\n\
             sx = sign(y)\n\
             output y\n\
             output s\n\
             output sx\n",
            w.join(", ")
        )
    }

    fn mixed_model(dir: &Path) -> PathBuf {
        let path = dir.join("mixed.ir");
        std::fs::write(&path, mixed_source()).unwrap();
        path
    }

    fn lowered(src: &str) -> Lowered {
        let graph = Model::parse_checked(src, Path::new("t.ir")).unwrap();
        let model = Model::from_graph(graph, None, Path::new("t.ir")).unwrap();
        bnnc::lower::lower(&model, &Target::host().unwrap()).unwrap()
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("bnnc-build-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn bindings_for_f32_i32_b1() {
        let l = lowered(&mixed_source());
        let t = Target::parse("x86_64+popcnt+sse41").unwrap();
        let rs = rust_bindings(&l, &t, Path::new("models/mixed.ir"));
        for want in [
            "pub mod mixed_net {",
            "pub const NAME: &str = \"mixed_net\";",
            "pub const TARGET: &str = \"x86_64+popcnt+sse41\";",
            "pub const NUM_INPUTS: usize = 4;",
            "pub const NUM_OUTPUTS: usize = 3;",
            "pub const INPUT_X_LEN: usize = 3;",
            "pub const INPUT_X_BATCHED: bool = true;",
            "pub const INPUT_K_LEN: usize = 2;",
            // 70 channels: two words per row.
            "pub const INPUT_B_LEN: usize = 2;",
            "pub const INPUT_B_ROWS: usize = 1;",
            "pub const INPUT_B_CHANNELS: usize = 70;",
            "pub const INPUT_B_WORDS_PER_ROW: usize = 2;",
            "pub const INPUT_B_SHAPE: &[usize] = &[70];",
            "pub const INPUT_T_LEN: usize = 3;",
            "pub const INPUT_T_BATCHED: bool = false;",
            "pub const OUTPUT_Y_LEN: usize = 3;",
            "pub const OUTPUT_S_LEN: usize = 2;",
            "pub const OUTPUT_SX_LEN: usize = 1;",
            "pub const OUTPUT_SX_CHANNELS: usize = 3;",
            &format!(
                "pub const WORKSPACE_FIXED: usize = {};",
                grouped(l.workspace.fixed)
            ),
            &format!(
                "pub const WORKSPACE_PER_SAMPLE: usize = {};",
                grouped(l.workspace.per_sample)
            ),
            &format!(
                "pub const MAX_BATCH: usize = {};",
                grouped(l.workspace.max_batch)
            ),
            "/// `int32_t mixed_net_run(const float *x, const int32_t *k, const uint64_t *b, \
             const float *t, float *y, int32_t *s, uint64_t *sx, void *workspace, size_t batch)`",
            "pub fn mixed_net_run(x: *const f32, k: *const i32, b: *const u64, t: *const f32, \
             y: *mut f32, s: *mut i32, sx: *mut u64, workspace: *mut ::core::ffi::c_void, \
             batch: usize) -> i32;",
            "pub fn mixed_net_run_v(",
            "pub fn mixed_net_workspace_size(batch: usize) -> usize;",
            "pub fn run(&self, x: &[f32], k: &[i32], b: &[u64], t: &[f32], y: &mut [f32], \
             s: &mut [i32], sx: &mut [u64], batch: usize) -> Result<(), Status> {",
            "pub fn run_with_workspace(&self, x: &[f32], k: &[i32], b: &[u64], t: &[f32], \
             y: &mut [f32], s: &mut [i32], sx: &mut [u64], workspace: &mut [u8], batch: usize)",
            "let expected = INPUT_B_LEN.checked_mul(batch).ok_or(too_large)?;",
            // The unbatched input's length does not depend on the batch.
            "let expected = INPUT_T_LEN;",
            "return Err(Status::OutputLength { name: \"sx\", expected, actual: sx.len() });",
            "ffi::mixed_net_run(x.as_ptr(), k.as_ptr(), b.as_ptr(), t.as_ptr(), y.as_mut_ptr(), \
             s.as_mut_ptr(), sx.as_mut_ptr(), workspace.as_mut_ptr().cast(), batch)",
            "if !::std::is_x86_feature_detected!(\"popcnt\") {",
            "if !::std::is_x86_feature_detected!(\"sse4.1\") {",
            "return Err(Status::UnsupportedCpu { feature: \"sse41\" });",
            "pub fn pack_b1(",
            "pub fn unpack_b1(",
            "#[cfg(not(target_arch = \"x86_64\"))]",
        ] {
            assert!(rs.contains(want), "missing `{want}` in:\n{rs}");
        }
        // No b1 helpers without b1 tensors; aarch64 feature checks.
        let l = lowered("model plain\ninput x: f32[N, 4]\ny = relu(x)\noutput y\n");
        let t = Target::parse("aarch64+dotprod").unwrap();
        let rs = rust_bindings(&l, &t, Path::new("plain.ir"));
        assert!(!rs.contains("pack_b1"));
        assert!(rs.contains("::std::arch::is_aarch64_feature_detected!(\"dotprod\")"));
        assert!(rs.contains("#[cfg(not(target_arch = \"aarch64\"))]"));
    }

    #[test]
    fn binding_names_are_valid_and_distinct() {
        assert_eq!(rust_ident("x.0"), "x_0");
        assert_eq!(rust_ident("type"), "type_");
        assert_eq!(rust_ident("self"), "self_");
        assert_eq!(rust_ident("_"), "v__");
        assert_eq!(rust_ident("9a"), "v_9a");
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1_000");
        assert_eq!(grouped(805112782546680), "805_112_782_546_680");
        // `batch` and `workspace` are parameters of `run`; `a.b` and `a_b` clash.
        let l = lowered(
            "model m\ninput batch: f32[N, 2]\ninput a.b: f32[N, 2]\ninput a_b: f32[N, 2]\n\
             y = add(batch, a.b)\nworkspace = add(y, a_b)\noutput workspace\n",
        );
        let rs = rust_bindings(&l, &Target::parse("x86_64").unwrap(), Path::new("m.ir"));
        assert!(
            rs.contains("pub fn run(&self, batch_2: &[f32], a_b: &[f32], a_b_2: &[f32], workspace_2: &mut [f32], batch: usize)"),
            "{rs}"
        );
        assert!(rs.contains("pub const INPUT_A_B_LEN"));
        assert!(rs.contains("pub const INPUT_A_B_2_LEN"));
        assert!(rs.contains("pub const OUTPUT_WORKSPACE_LEN"));
    }

    fn env(vars: &[(&str, &str)]) -> CargoTarget {
        CargoTarget::from_lookup(|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    fn x86_host() -> Result<Target, TargetError> {
        Target::parse("x86_64+popcnt+avx2")
    }

    #[test]
    fn default_target_is_cargo_arch_with_crate_features() {
        let linux = env(&[
            ("TARGET", "x86_64-unknown-linux-gnu"),
            ("CARGO_CFG_TARGET_ARCH", "x86_64"),
            ("CARGO_CFG_TARGET_OS", "linux"),
            ("CARGO_CFG_TARGET_FEATURE", "fxsr,sse,sse2"),
        ]);
        let t = resolve_target(None, &linux, &x86_host()).unwrap();
        assert_eq!(
            t.to_string(),
            "x86_64",
            "the baseline, not the host's features"
        );
        // -C target-cpu=...: the features the Rust code uses too.
        let tuned = env(&[
            ("TARGET", "x86_64-unknown-linux-gnu"),
            ("CARGO_CFG_TARGET_ARCH", "x86_64"),
            ("CARGO_CFG_TARGET_OS", "linux"),
            (
                "CARGO_CFG_TARGET_FEATURE",
                "avx,avx2,cmpxchg16b,fxsr,popcnt,sse,sse2,sse3,sse4.1,sse4.2,ssse3,xsave",
            ),
        ]);
        let t = resolve_target(None, &tuned, &x86_host()).unwrap();
        assert_eq!(
            t.to_string(),
            "x86_64+avx+avx2+popcnt+sse3+sse41+sse42+ssse3"
        );
        // Cross: aarch64 from an x86_64 host; only the triple set.
        let arm = env(&[("TARGET", "aarch64-unknown-linux-gnu")]);
        let t = resolve_target(None, &arm, &x86_host()).unwrap();
        assert_eq!(t.to_string(), "aarch64");
        let arm = env(&[
            ("CARGO_CFG_TARGET_ARCH", "aarch64"),
            ("CARGO_CFG_TARGET_FEATURE", "lse,neon,dotprod"),
        ]);
        assert_eq!(
            resolve_target(None, &arm, &x86_host()).unwrap().to_string(),
            "aarch64+dotprod+lse"
        );
        // Outside cargo: the host's architecture, baseline.
        let t = resolve_target(None, &CargoTarget::default(), &x86_host()).unwrap();
        assert_eq!(t.to_string(), "x86_64");
    }

    #[test]
    fn requested_targets_are_checked_against_cargo() {
        let linux = env(&[("TARGET", "x86_64-unknown-linux-gnu")]);
        let t = resolve_target(Some("x86_64+popcnt"), &linux, &x86_host()).unwrap();
        assert_eq!(t.to_string(), "x86_64+popcnt");
        let t = resolve_target(Some("native"), &linux, &x86_host()).unwrap();
        assert_eq!(t.to_string(), "x86_64+avx2+popcnt");
        let e = resolve_target(Some("aarch64"), &linux, &x86_host()).unwrap_err();
        assert!(matches!(e, Error::TargetMismatch { .. }), "{e}");
        assert!(e.to_string().contains("x86_64-unknown-linux-gnu"), "{e}");
        let arm = env(&[("TARGET", "aarch64-unknown-linux-gnu")]);
        let e = resolve_target(Some("native"), &arm, &x86_host()).unwrap_err();
        assert!(matches!(e, Error::NativeCrossCompile { .. }), "{e}");
        assert!(e.to_string().contains("`aarch64`"), "{e}");
        let e = resolve_target(Some("x86_64+sse5"), &linux, &x86_host()).unwrap_err();
        assert!(e.to_string().contains("unknown feature `sse5`"), "{e}");
        // No cargo: anything parseable.
        let t = resolve_target(Some("aarch64"), &CargoTarget::default(), &x86_host()).unwrap();
        assert_eq!(t.to_string(), "aarch64");
    }

    #[test]
    fn unsupported_cargo_targets_are_refused() {
        for (vars, why) in [
            (
                &[("TARGET", "powerpc64le-unknown-linux-gnu")][..],
                "no code for the architecture powerpc64le",
            ),
            (
                &[
                    ("TARGET", "x86_64-pc-windows-msvc"),
                    ("CARGO_CFG_TARGET_ARCH", "x86_64"),
                    ("CARGO_CFG_TARGET_OS", "windows"),
                ][..],
                "windows uses another object format",
            ),
            (&[("TARGET", "aarch64-apple-darwin")][..], "ELF"),
        ] {
            let e = resolve_target(None, &env(vars), &x86_host()).unwrap_err();
            assert!(matches!(e, Error::UnsupportedCargoTarget { .. }), "{e}");
            assert!(e.to_string().contains(why), "{e}");
        }
    }

    /// The archive's layout, checked by hand (and by `ar`/`nm` when present).
    #[test]
    fn static_library_indexes_the_entry_points() {
        let l = lowered(&mixed_source());
        let obj =
            bnnc_cranelift::compile_object(&l.module, &Target::parse("x86_64").unwrap()).unwrap();
        let syms = elf_defined_globals(&obj).unwrap();
        let mut sorted = syms.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            [
                "mixed_net_run",
                "mixed_net_run_v",
                "mixed_net_workspace_size"
            ]
        );
        let a = static_library("mixed_net.o", &obj).unwrap();
        assert!(a.starts_with(b"!<arch>\n/               0           0     0     0       "));
        let member = a.windows(12).position(|w| w == b"mixed_net.o/").unwrap();
        assert_eq!(member % 2, 0, "members start at even offsets");
        // The index points at the member's header.
        let first = u32::from_be_bytes(a[72..76].try_into().unwrap()) as usize;
        assert_eq!(first, member);
        assert_eq!(&a[member + 60..member + 60 + obj.len()], &obj[..]);
        // A long member name goes through the `//` table.
        let long = static_library("a_rather_long_model_name.o", &obj).unwrap();
        assert!(long
            .windows(28)
            .any(|w| w == b"a_rather_long_model_name.o/\n"));
        assert!(elf_defined_globals(b"not an object").is_err());
        assert!(elf_defined_globals(&obj[..100]).is_err());

        let dir = tmp("ar");
        let lib = dir.join("libbnnc_mixed_net.a");
        std::fs::write(&lib, &a).unwrap();
        if let Ok(out) = std::process::Command::new("nm")
            .arg("-s")
            .arg(&lib)
            .output()
        {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "nm: {text}");
            assert!(
                text.contains("mixed_net_run in mixed_net.o"),
                "nm -s:\n{text}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn config_errors_name_the_model() {
        let dir = tmp("errors");
        let e = Config::new().out_dir(&dir).compile().unwrap_err();
        assert!(matches!(e, Error::NoModels));
        let bad = dir.join("bad.ir");
        std::fs::write(
            &bad,
            "model bad\ninput x: f32[N, 4]\ny = relu(z)\noutput y\n",
        )
        .unwrap();
        let e = Config::new()
            .model(&bad)
            .out_dir(&dir)
            .cargo_metadata(false)
            .compile()
            .unwrap_err();
        assert!(
            e.to_string().starts_with(&format!("{}:3:", bad.display())),
            "{e}"
        );
        let e = Config::new()
            .model(dir.join("missing.ir"))
            .out_dir(&dir)
            .cargo_metadata(false)
            .compile()
            .unwrap_err();
        assert!(
            e.to_string().contains("missing.ir: error: cannot read"),
            "{e}"
        );
        // Two files, one model name.
        let a = mixed_model(&dir);
        let b = dir.join("again.ir");
        std::fs::write(&b, mixed_source()).unwrap();
        let e = Config::new()
            .models([&a, &b])
            .target("x86_64")
            .out_dir(&dir)
            .cargo_metadata(false)
            .compile()
            .unwrap_err();
        assert!(matches!(e, Error::DuplicateName { .. }), "{e}");
        assert!(
            e.to_string().contains("again.ir: error: model `mixed_net`"),
            "{e}"
        );
        // Unsupported element types are reported with the model's file.
        let u = dir.join("u4.ir");
        std::fs::write(
            &u,
            "model u\ninput x: f32[N, 4]\nq = quantize(x, to=u4, scale=0.5)\noutput q\n",
        )
        .unwrap();
        let e = Config::new()
            .model(&u)
            .target("x86_64")
            .out_dir(&dir)
            .cargo_metadata(false)
            .compile()
            .unwrap_err();
        assert!(matches!(e, Error::Compile { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with(&format!("{}: error: cannot compile model `u`", u.display())),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The generated bindings compile, link against the archive and compute
    /// what the interpreter computes, for f32, i32 and b1 inputs and outputs
    /// and an unbatched input; their checks reject bad slices.
    #[test]
    fn bindings_link_and_match_the_interpreter() {
        let dir = tmp("e2e");
        let path = mixed_model(&dir);
        Config::new()
            .model(&path)
            .out_dir(&dir)
            .cargo_metadata(false)
            .compile()
            .unwrap();
        let batch = 3;
        let x: Vec<f32> = vec![-0.5, 1.25, -3.0, 0.0, -0.0, 2.5, 0.75, -1.5, 7.0];
        let k: Vec<i32> = vec![5, -7, 0, 100, -2, 3];
        let bv: Vec<i32> = (0..batch * 70)
            .map(|i| if (i * 5 + 1) % 3 == 0 { -1 } else { 1 })
            .collect();
        let t: Vec<f32> = vec![0.5, -1.25, 3.0];
        let program = format!(
            r#"include!("mixed_net.rs");
fn main() {{
    use mixed_net::*;
    let m = Model::new().unwrap();
    let batch = {batch};
    let x: Vec<f32> = vec!{x:?};
    let k: Vec<i32> = vec!{k:?};
    let b = pack_b1(&vec!{bv:?}, INPUT_B_CHANNELS);
    let t: Vec<f32> = vec!{t:?};
    let mut y = vec![0f32; batch * OUTPUT_Y_LEN];
    let mut s = vec![0i32; batch * OUTPUT_S_LEN];
    let mut sx = vec![0u64; batch * OUTPUT_SX_LEN];
    m.run(&x, &k, &b, &t, &mut y, &mut s, &mut sx, batch).unwrap();
    let bits: Vec<u32> = y.iter().map(|v| v.to_bits()).collect();
    println!("{{bits:?}}");
    println!("{{s:?}}");
    println!("{{:?}}", unpack_b1(&sx, OUTPUT_SX_CHANNELS));
    assert_eq!(
        m.run(&x[1..], &k, &b, &t, &mut y, &mut s, &mut sx, batch),
        Err(Status::InputLength {{ name: "x", expected: 9, actual: 8 }})
    );
    assert_eq!(
        m.run(&x, &k, &b, &t[..2], &mut y, &mut s, &mut sx, batch),
        Err(Status::InputLength {{ name: "t", expected: 3, actual: 2 }})
    );
    assert_eq!(
        m.run(&x, &k, &b, &t, &mut y, &mut s, &mut sx[..2], batch),
        Err(Status::OutputLength {{ name: "sx", expected: 3, actual: 2 }})
    );
    let mut ws = vec![0u8; workspace_size(batch).unwrap() - 1];
    assert!(matches!(
        m.run_with_workspace(&x, &k, &b, &t, &mut y, &mut s, &mut sx, &mut ws, batch),
        Err(Status::WorkspaceTooSmall {{ .. }})
    ));
    assert!(matches!(
        m.run(&x, &k, &b, &t, &mut y, &mut s, &mut sx, MAX_BATCH + 1),
        Err(Status::BatchTooLarge {{ .. }})
    ));
    m.run(&[], &[], &[], &t, &mut [], &mut [], &mut [], 0).unwrap();
    for n in [0, 1, 7] {{
        // SAFETY: a pure function of its argument.
        assert_eq!(Some(unsafe {{ ffi::mixed_net_workspace_size(n) }}), workspace_size(n));
    }}
}}
"#
        );
        std::fs::write(dir.join("main.rs"), program).unwrap();
        let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
        let exe = dir.join("mixed_main");
        let out = std::process::Command::new(rustc)
            .args([
                "--edition",
                "2021",
                "--crate-name",
                "mixed_main",
                "-D",
                "warnings",
            ])
            .arg(dir.join("main.rs"))
            .arg("-L")
            .arg(&dir)
            .args(["-l", "static=bnnc_mixed_net", "-l", "m", "-o"])
            .arg(&exe)
            .output()
            .expect("rustc runs");
        assert!(
            out.status.success(),
            "rustc failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let run = std::process::Command::new(&exe).output().unwrap();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );

        let model = Model::load(&path).unwrap();
        let inputs = [
            bnnc_ir::Tensor::f32(vec![batch, 3], x),
            bnnc_ir::Tensor::int(bnnc_ir::ElemType::I32, vec![batch, 2], k),
            bnnc_ir::Tensor::int(bnnc_ir::ElemType::B1, vec![batch, 70], bv),
            bnnc_ir::Tensor::f32(vec![3], t),
        ];
        let want = bnnc_runtime::run(&model, &inputs).unwrap();
        let text = |t: &bnnc_ir::Tensor| match &t.data {
            bnnc_ir::TensorData::F32(v) => {
                format!("{:?}", v.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
            }
            bnnc_ir::TensorData::Int(v) => format!("{v:?}"),
        };
        let want: Vec<String> = want.iter().map(text).collect();
        assert_eq!(String::from_utf8_lossy(&run.stdout), want.join("\n") + "\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn link_directives_list_every_model_then_libm() {
        let dir = tmp("directives");
        let path = mixed_model(&dir);
        let built = Config::new()
            .model(&path)
            .target("x86_64")
            .out_dir(&dir)
            .cargo_metadata(false)
            .compile()
            .unwrap();
        assert_eq!(built.len(), 1);
        let b = &built[0];
        assert_eq!(b.name, "mixed_net");
        for p in [&b.object, &b.library, &b.header, &b.rust] {
            assert!(p.exists(), "{}", p.display());
        }
        assert_eq!(b.library, dir.join("libbnnc_mixed_net.a"));
        assert_eq!(
            link_directives(&dir, &built),
            [
                format!("cargo:rustc-link-search=native={}", dir.display()),
                "cargo:rustc-link-lib=static=bnnc_mixed_net".to_string(),
                "cargo:rustc-link-lib=m".to_string(),
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
