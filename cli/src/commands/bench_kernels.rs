//! `bnnc bench-kernels`: binary kernels against float ones, per backend and CPU.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use bnnc_ir::Model;
use bnnc_kir::target::{Arch, Target};

use super::CliError;
use bnnc::compile::Backend;
use bnnc::jit::{to_words, JitModel};
use bnnc_train::init::{init_weights, InitOptions};
use clap::{Args, ValueEnum};

/// The long help of `bnnc bench-kernels`.
pub(super) const LONG_ABOUT: &str = "\
Time two kernels JIT-compiled by each backend for each target CPU this \
machine can run, next to the float kernel of the same shape, in one process, and print a \
Markdown table of GBOPS (binary ops per second: 2*M*N*K for a GEMM, counted the same way for \
a convolution) and GFLOPS:
  conv   3x3 binary convolution, 64 -> 64 channels on 56x56, bits in and bits out (conv -> \
threshold), padding 1 (pad_value=+1); float: the f32 convolution of the same shape
  gemm   binary dense 256 x 256 x 4096 bits (M = 256 rows, N = 256 outputs, K = 4096); \
float: the f32 dense of the same shape
Only the compiled entry point is timed (inputs are packed beforehand); each configuration \
runs once to warm up, then --runs times, and the median is reported. Outputs are checked to \
be identical across all configurations.";

/// The examples after the help of `bnnc bench-kernels`.
pub(super) const AFTER_HELP: &str = "Examples:\n  bnnc bench-kernels\n  bnnc bench-kernels --kernel gemm --cpus haswell,native --runs 9";

#[derive(Debug, Args)]
pub struct BenchKernelsArgs {
    /// Which kernels to time.
    #[arg(long, value_enum, default_value_t = KernelKind::All)]
    pub kernel: KernelKind,
    /// LLVM target CPUs to time, comma-separated (`native` is this machine's
    /// CPU, `none` the architecture's baseline); those this machine cannot
    /// run are skipped. Default: a ladder for the host's architecture.
    #[arg(long, value_delimiter = ',')]
    pub cpus: Vec<String>,
    /// Timed runs per configuration (after one warm-up run); the median is reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub runs: u64,
    /// Images per convolution run.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub conv_batch: u64,
    /// Seed of the random weights and inputs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Kernels of `bnnc bench-kernels`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KernelKind {
    Conv,
    Gemm,
    All,
}

/// One kernel: its binary and float models and how many ops one run does.
struct Kernel {
    name: &'static str,
    binary: Model,
    float: Model,
    batch: usize,
    ops: f64,
}

fn model(name: &str, src: &str, seed: u64) -> Result<Model, CliError> {
    let file = Path::new(name);
    let wrap = |diag| {
        CliError::Model(bnnc_ir::Error::Model {
            file: file.to_path_buf(),
            diag,
        })
    };
    let graph = bnnc_ir::text::parse(src).map_err(wrap)?;
    let types = bnnc_ir::verify::verify(&graph).map_err(wrap)?;
    let opts = InitOptions {
        seed,
        random_stats: true,
    };
    let weights = init_weights(&graph, &types, opts).map_err(wrap)?;
    Ok(Model::from_graph(graph, Some(&weights), file)?)
}

fn kernels(a: &BenchKernelsArgs) -> Result<Vec<Kernel>, CliError> {
    let mut ks = Vec::new();
    if a.kernel != KernelKind::Gemm {
        let n = a.conv_batch as usize;
        ks.push(Kernel {
            name: "conv 3x3 64->64 56x56",
            binary: model(
                "bench_conv_b1.ir",
                "model bench_conv_b1\ninput x: b1[N, 56, 56, 64]\nw = @w: b1[64, 3, 3, 64]\n\
                 acc = conv2d(x, w, padding=1, pad_value=+1)\nt = @t: i32[64, 1]\n\
                 y = threshold(acc, t)\noutput y\n",
                a.seed,
            )?,
            float: model(
                "bench_conv_f32.ir",
                "model bench_conv_f32\ninput x: f32[N, 56, 56, 64]\nw = @w: f32[64, 3, 3, 64]\n\
                 y = conv2d(x, w, padding=1)\noutput y\n",
                a.seed,
            )?,
            batch: n,
            // 2 ops (multiply, add) per weight and output element.
            ops: 2.0 * n as f64 * (56 * 56 * 64) as f64 * (3 * 3 * 64) as f64,
        });
    }
    if a.kernel != KernelKind::Conv {
        ks.push(Kernel {
            name: "gemm 256x256x4096",
            binary: model(
                "bench_gemm_b1.ir",
                "model bench_gemm_b1\ninput x: b1[N, 4096]\nw = @w: b1[256, 4096]\n\
                 y = dense(x, w)\noutput y\n",
                a.seed,
            )?,
            float: model(
                "bench_gemm_f32.ir",
                "model bench_gemm_f32\ninput x: f32[N, 4096]\nw = @w: f32[256, 4096]\n\
                 y = dense(x, w)\noutput y\n",
                a.seed,
            )?,
            batch: 256,
            ops: 2.0 * 256.0 * 256.0 * 4096.0,
        });
    }
    Ok(ks)
}

/// A backend and a target to time.
struct Config {
    backend: Backend,
    target: Target,
}

fn default_cpus(arch: Arch) -> &'static [&'static str] {
    match arch {
        Arch::X86_64 => &[
            "none",
            "x86-64-v2",
            "haswell",
            "skylake-avx512",
            "znver4",
            "native",
        ],
        Arch::Aarch64 => &["none", "cortex-a72", "neoverse-n1", "native"],
        Arch::Riscv64 => &["none", "native"],
    }
}

fn configs(a: &BenchKernelsArgs, notes: &mut Vec<String>) -> Result<Vec<Config>, CliError> {
    let host = Target::host()?;
    let mut out = Vec::new();
    if host.arch != Arch::Riscv64 {
        for t in [Target::new(host.arch), host.clone()] {
            out.push(Config {
                backend: Backend::Cranelift,
                target: t,
            });
        }
    }
    if !Backend::Llvm.available() {
        notes.push("LLVM: not in this build (rebuild with --features llvm)".into());
        return Ok(out);
    }
    let cpus: Vec<String> = if a.cpus.is_empty() {
        default_cpus(host.arch)
            .iter()
            .map(|c| c.to_string())
            .collect()
    } else {
        a.cpus.clone()
    };
    for cpu in cpus {
        let t = match cpu.as_str() {
            "none" => Target::new(host.arch),
            "native" => Target::native_cpu()?,
            c => Target::new(host.arch).with_cpu(c)?,
        };
        let missing = t.missing_on_host();
        if !missing.is_empty() {
            notes.push(format!(
                "LLVM {t}: skipped, this machine lacks {}",
                missing.join(", ")
            ));
            continue;
        }
        out.push(Config {
            backend: Backend::Llvm,
            target: t,
        });
    }
    Ok(out)
}

type Buffers = Vec<Vec<u64>>;

/// A compiled kernel with its buffers, ready to time.
struct Prepared {
    jit: JitModel,
    inputs: Vec<Vec<u64>>,
    outputs: Vec<Vec<u64>>,
    workspace: Vec<u64>,
    batch: usize,
}

fn prepare(m: &Model, c: &Config, batch: usize, seed: u64) -> Result<Prepared, CliError> {
    let err = |source| CliError::Compile {
        file: m.path.clone(),
        source,
    };
    // The kernel as the lowering emits it for this one op: nothing for
    // the optimizer to fold.
    let opts = bnnc::compile::CompileOptions::new(c.target.clone())
        .backend(c.backend)
        .opt_level(0)
        .emit([]);
    let jit = JitModel::compile_with(m, &opts).map_err(err)?;
    let l = &jit.compiled().lowered;
    let xs = bnnc_runtime::inputs::random_inputs(&m.graph, batch, seed).map_err(|message| {
        CliError::Mismatch {
            file: m.path.clone(),
            message,
        }
    })?;
    let inputs = xs
        .iter()
        .zip(&l.inputs)
        .map(|(t, d)| to_words(t, d))
        .collect();
    let outputs = l
        .outputs
        .iter()
        .map(|d| vec![0u64; (d.bytes(batch) as usize).div_ceil(8)])
        .collect();
    let ws = l.workspace.bytes(batch).unwrap_or(0) as usize;
    Ok(Prepared {
        jit,
        inputs,
        outputs,
        workspace: vec![0u64; ws.div_ceil(8).max(1)],
        batch,
    })
}

impl Prepared {
    fn run(&mut self, file: &Path) -> Result<(), CliError> {
        let ins: Vec<&[u64]> = self.inputs.iter().map(Vec::as_slice).collect();
        let mut outs: Vec<&mut [u64]> = self.outputs.iter_mut().map(Vec::as_mut_slice).collect();
        self.jit
            .run_words(&ins, &mut outs, &mut self.workspace, self.batch)
            .map_err(|source| CliError::Jit {
                file: file.to_path_buf(),
                source,
            })
    }

    /// Median seconds of `runs` runs after a warm-up.
    fn time(&mut self, runs: u64, file: &Path) -> Result<f64, CliError> {
        self.run(file)?;
        let mut ts = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            self.run(file)?;
            ts.push(t.elapsed().as_secs_f64());
        }
        ts.sort_by(f64::total_cmp);
        Ok(ts[ts.len() / 2])
    }
}

fn describe(c: &Config) -> String {
    let t = &c.target;
    match (c.backend, t.cpu.as_deref()) {
        (Backend::Llvm, Some("native")) => match bnnc_llvm::machine(t) {
            Ok(m) => format!("{}:native ({})", t.arch, m.cpu),
            Err(_) => t.to_string(),
        },
        (_, None) if t.features.is_empty() => format!("{} (baseline)", t.arch),
        (Backend::Cranelift, None) => format!("{} (all host features)", t.arch),
        _ => t.to_string(),
    }
}

/// `bnnc bench-kernels`: times every kernel under every configuration, prints
/// the table and fails if any configuration's outputs differ from the first's.
pub(super) fn run(a: &BenchKernelsArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let mut notes = Vec::new();
    let configs = configs(a, &mut notes)?;
    let kernels = kernels(a)?;
    let mut w = |s: String| writeln!(out, "{s}").map_err(CliError::Stdout);
    w(format!(
        "bnnc bench-kernels: median of {} runs after a warm-up, one thread; GBOPS = 2*M*N*K / time",
        a.runs
    ))?;
    w(String::new())?;
    w("| kernel | backend | target | binary ms | binary GBOPS | float ms | float GFLOPS | binary / float |".into())?;
    w("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |".into())?;
    let mut mismatches = Vec::new();
    for k in &kernels {
        // The binary and float outputs of the first configuration.
        let mut first: Option<(Buffers, Buffers)> = None;
        for c in &configs {
            let mut b = prepare(&k.binary, c, k.batch, a.seed)?;
            let mut f = prepare(&k.float, c, k.batch, a.seed)?;
            let tb = b.time(a.runs, &k.binary.path)?;
            let tf = f.time(a.runs, &k.float.path)?;
            match &first {
                None => first = Some((b.outputs.clone(), f.outputs.clone())),
                Some((ob, of)) => {
                    if *ob != b.outputs || *of != f.outputs {
                        mismatches.push(format!("{} with {} {}", k.name, c.backend, c.target));
                    }
                }
            }
            let (gb, gf) = (k.ops / tb / 1e9, k.ops / tf / 1e9);
            w(format!(
                "| {} | {} | {} | {:.3} | {:.1} | {:.3} | {:.2} | {:.1}x |",
                k.name,
                c.backend,
                describe(c),
                tb * 1e3,
                gb,
                tf * 1e3,
                gf,
                gb / gf
            ))?;
        }
    }
    w(String::new())?;
    for n in &notes {
        w(format!("note: {n}"))?;
    }
    if mismatches.is_empty() {
        w(format!(
            "outputs identical across all {} configurations",
            configs.len()
        ))?;
        Ok(())
    } else {
        Err(CliError::Mismatch {
            file: "bench-kernels".into(),
            message: format!(
                "outputs differ from the first configuration's: {}",
                mismatches.join("; ")
            ),
        })
    }
}
