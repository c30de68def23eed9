//! The harness the micro-kernel families' tests share
//! (`kernels_b1.rs`, `kernels_f32.rs`): configurations this host can run,
//! runs on garbage-filled buffers, assembly listings.

#![allow(dead_code)]

use bnnc::compile::{compile, Backend, CompileOptions, Emit};
use bnnc::jit::{to_words, JitModel};
use bnnc::lower::kernel::Tile;
use bnnc_ir::{Model, Tensor};
use bnnc_kir::target::{Arch, Target};

/// A seed from a case's name (FNV-1a), so each case has its own weights.
pub fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Whether tests that need a tool fail (CI) or skip when it is missing.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A backend and target to run here.
pub struct Config {
    pub backend: Backend,
    pub target: Target,
    pub label: String,
    /// A register tile other than the target's default.
    pub tile: Option<Tile>,
}

impl Config {
    pub fn new(backend: Backend, target: &str) -> Config {
        Config {
            backend,
            target: Target::parse(target).unwrap(),
            label: format!("{backend} {target}"),
            tile: None,
        }
    }

    pub fn tile(mut self, tile: &str) -> Config {
        self.label = format!("{} tile {tile}", self.label);
        self.tile = Some(tile.parse().unwrap());
        self
    }
}

/// The configurations of a family's test `who`: `cranelift` (built for this
/// host), then, when LLVM is built in (else a printed skip, a failure under
/// `CI=true`), LLVM for each x86_64 CPU of `cpus` this host can run (with
/// the extra `znver4_tiles` before znver4's default) and the host CPU.
pub fn configs(
    who: &str,
    cranelift: Vec<Config>,
    cpus: &[&str],
    znver4_tiles: &[&str],
) -> Vec<Config> {
    let host = Target::host().unwrap();
    let mut out = cranelift;
    if !Backend::Llvm.available() {
        let why = format!("{who}: LLVM is not built in (run with --features bnnc/llvm)");
        assert!(!ci(), "CI=true: {why}");
        eprintln!("skipping the LLVM configurations: {why}");
        return out;
    }
    if host.arch == Arch::X86_64 {
        for cpu in cpus {
            let c = Config::new(Backend::Llvm, &format!("x86_64:{cpu}"));
            let missing = c.target.missing_on_host();
            if missing.is_empty() {
                if *cpu == "znver4" {
                    for t in znver4_tiles {
                        out.push(Config::new(Backend::Llvm, "x86_64:znver4").tile(t));
                    }
                }
                out.push(c);
            } else {
                eprintln!("skipping {}: this CPU lacks {missing:?}", c.label);
            }
        }
    }
    out.push(Config {
        backend: Backend::Llvm,
        target: Target::native_cpu().unwrap(),
        label: "llvm native cpu".into(),
        tile: None,
    });
    out
}

/// Output buffers after a run on garbage-filled outputs and workspace.
pub fn run_raw(j: &JitModel, inputs: &[Tensor], batch: usize) -> Vec<Vec<u64>> {
    let l = &j.compiled().lowered;
    let ins: Vec<Vec<u64>> = inputs
        .iter()
        .zip(&l.inputs)
        .map(|(t, d)| to_words(t, d))
        .collect();
    let mut outs: Vec<Vec<u64>> = l
        .outputs
        .iter()
        .map(|d| vec![0xa5a5_a5a5_a5a5_a5a5; (d.bytes(batch) as usize).div_ceil(8)])
        .collect();
    let ws_bytes = l.workspace.bytes(batch).unwrap() as usize;
    let mut ws = vec![0x5a5a_5a5a_5a5a_5a5au64; ws_bytes.div_ceil(8).max(1)];
    let in_refs: Vec<&[u64]> = ins.iter().map(Vec::as_slice).collect();
    let mut out_refs: Vec<&mut [u64]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
    j.run_words(&in_refs, &mut out_refs, &mut ws, batch)
        .unwrap();
    outs
}

/// The LLVM assembly of `m` for `target`, lower-cased.
pub fn llvm_asm(m: &Model, target: &str) -> String {
    let opts = CompileOptions::new(Target::parse(target).unwrap())
        .backend(Backend::Llvm)
        .opt_level(0)
        .emit([Emit::Asm]);
    let c = compile(m, &opts).unwrap_or_else(|e| panic!("{target}: {e}"));
    String::from_utf8(c.artifacts[&Emit::Asm].clone())
        .unwrap()
        .to_lowercase()
}
