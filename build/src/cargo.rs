//! The build-script glue: [`Config`] compiles models through the one
//! pipeline and writes their files, [`resolve_target`] picks the target from
//! cargo's environment ([`CargoTarget`]), and the `cargo:` directives link the
//! results; [`Error`] is everything that can fail.

use std::path::{Path, PathBuf};

use bnnc_ir::Model;
use bnnc_kir::target::{Arch, Target, TargetError};

use bnnc::compile::{compile, CompileError, CompileOptions, Emit};
use bnnc::lower::{IoDesc, Workspace};

use crate::archive::static_library;
use crate::bindings::rust_bindings;

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
    #[error(
        "{}{}: error: cannot compile model `{name}` for {target}: {source}",
        model.display(),
        source.loc().map(|l| format!(":{}:{}", l.line, l.col)).unwrap_or_default()
    )]
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{mixed_model, mixed_source, tmp};

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
        // A name whose symbols or macros another name would share.
        let upper = dir.join("upper.ir");
        std::fs::write(
            &upper,
            mixed_source().replace("model mixed_net", "model Tiny"),
        )
        .unwrap();
        let e = Config::new()
            .models([&upper])
            .target("x86_64")
            .out_dir(&dir)
            .cargo_metadata(false)
            .compile()
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("upper.ir:1:7: error: cannot compile model `Tiny`"),
            "{msg}"
        );
        assert!(msg.contains("a model named `tiny` too"), "{msg}");
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
            e.to_string().starts_with(&format!(
                "{}:3:5: error: cannot compile model `u`",
                u.display()
            )),
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
            _ => format!("{:?}", t.as_int().unwrap_or_default()),
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
