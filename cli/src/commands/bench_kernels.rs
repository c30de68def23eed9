//! `bnnc bench-kernels`: binary kernels against float ones, per backend and CPU.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use bnnc_ir::Model;
use bnnc_kir::target::{Arch, Target};

use super::CliError;
use bnnc::compile::Backend;
use bnnc::jit::{to_words, JitModel};
use bnnc::lower::kernel::{MicroKernel, Tile};
use bnnc::probe::Probe;
use bnnc_train::init::{init_weights, InitOptions};
use clap::{Args, ValueEnum};

/// The long help of `bnnc bench-kernels`.
pub(super) const LONG_ABOUT: &str = "\
Time the binary dot-product kernels JIT-compiled by each backend for each target CPU this \
machine can run, in one process, one thread, and compare each with the popcount ceiling of \
the same backend and target measured in the same run.

One bit-MAC is one xor + popcount + accumulate of one bit: a binary dot product of length K \
costs K bit-MACs, so a layer costs (output elements) x K. The ceiling is a generated \
register-only loop of independent xor + popcount + add chains (no loads or stores), at every \
vector width up to the micro-kernels', the best shape kept (`bnnc::probe`). Each timed kernel \
run follows one run of that probe of about the same length, so a kernel's fraction of the \
ceiling (the median over its runs of its rate over the probe rate just before) holds even \
when other jobs slow the machine down between runs. Kernels:
  conv3x3        3x3 conv 64 -> 64 on 56x56, padding 1 (pad_value=+1), bits out (threshold)
  conv3x3-256    3x3 conv 256 -> 256 on 14x14, padding 1 (pad_value=+1), bits out
  conv3x3-s2     3x3 conv 128 -> 256 on 28x28, stride 2, padding 1 (pad_value=+1), bits out
  conv1x1        1x1 conv 256 -> 256 on 28x28, bits out
  conv3x3-ternary  conv3x3 with ternary weights (a sign and a nonzero plane)
  conv3x3-repconv  conv3x3 over replicate(x, times=2) of 32 channels (RepConv, 2 planes)
  dense          dense 4096 -> 1000 at batch 1, i32 out
  gemm           dense 256 x 256 x 4096 (batch 256), i32 out
A ternary or RepConv layer counts the bit-MACs of the b1 layer of the same shape. \
Only the compiled entry point is timed (inputs are packed beforehand); each configuration \
runs once to warm up, then --runs times, and the median is reported. Outputs are checked to \
be identical across all configurations.";

/// The examples after the help of `bnnc bench-kernels`.
pub(super) const AFTER_HELP: &str = "Examples:\n  bnnc bench-kernels\n  bnnc bench-kernels --kernel conv3x3 --kernel gemm --cpus haswell,native --runs 9\n  bnnc bench-kernels --json > kernels.json";

#[derive(Debug, Args)]
pub struct BenchKernelsArgs {
    /// Which kernels to time (repeat or comma-separate; default all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub kernel: Vec<KernelKind>,
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
    /// Print one JSON object (configurations, ceilings, kernels) instead of
    /// the Markdown table.
    #[arg(long)]
    pub json: bool,
    /// Register tiles of the binary micro-kernels to time, PIXELSxBLOCKS,
    /// comma-separated (e.g. 4x2,6x2,4x4): each configuration runs once per
    /// tile. A tile that does not fit a configuration's vector width (1 to 16
    /// pixels, at most 32 accumulators, lanes x blocks dividing 64) runs with
    /// the default tile; the target column shows the tile used. Default: the
    /// tile bnnc chooses for each target.
    #[arg(long, value_delimiter = ',', value_name = "PxB")]
    pub tile: Vec<Tile>,
}

/// Kernels of `bnnc bench-kernels`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KernelKind {
    #[value(name = "conv3x3")]
    Conv3x3,
    #[value(name = "conv3x3-256")]
    Conv3x3Wide,
    #[value(name = "conv3x3-s2")]
    Conv3x3Stride2,
    #[value(name = "conv1x1")]
    Conv1x1,
    #[value(name = "conv3x3-ternary")]
    Conv3x3Ternary,
    #[value(name = "conv3x3-repconv")]
    Conv3x3RepConv,
    Dense,
    Gemm,
}

/// One kernel: its model, batch and bit-MACs per run.
struct Kernel {
    name: &'static str,
    model: Model,
    batch: usize,
    bit_macs: f64,
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

/// A binary conv with a threshold epilogue (bits out): `h x w x c -> o`,
/// `k x k` taps, stride `s`, padding `k / 2` with `pad_value=+1`.
fn conv(
    name: &'static str,
    hw: usize,
    c: usize,
    o: usize,
    k: usize,
    s: usize,
    a: &BenchKernelsArgs,
) -> Result<Kernel, CliError> {
    conv_of(name, hw, c, o, k, s, "b1", 1, a)
}

/// [`conv`] with weights of type `wty` (`b1` or `ternary`), over
/// `replicate(x, times=reps)` of `c / reps` input channels when `reps > 1`
/// (RepConv).
#[allow(clippy::too_many_arguments)]
fn conv_of(
    name: &'static str,
    hw: usize,
    c: usize,
    o: usize,
    k: usize,
    s: usize,
    wty: &str,
    reps: usize,
    a: &BenchKernelsArgs,
) -> Result<Kernel, CliError> {
    let p = k / 2;
    let (xin, xr, c0) = if reps > 1 {
        (format!("xr = replicate(x, times={reps})\n"), "xr", c / reps)
    } else {
        (String::new(), "x", c)
    };
    let src = format!(
        "model bench_{k}x{k}_{c}_{o}_{hw}_s{s}_{wty}_r{reps}\ninput x: b1[N, {hw}, {hw}, {c0}]\n{xin}\
         w = @w: {wty}[{o}, {k}, {k}, {c}]\n\
         acc = conv2d({xr}, w, stride={s}, padding={p}, pad_value=+1)\nt = @t: i32[{o}, 1]\n\
         y = threshold(acc, t)\noutput y\n"
    );
    let n = a.conv_batch as usize;
    let ohw = (hw + 2 * p - k) / s + 1;
    Ok(Kernel {
        name,
        model: model(&format!("bench_{name}.ir"), &src, a.seed)?,
        batch: n,
        bit_macs: (n * ohw * ohw * o) as f64 * (k * k * c) as f64,
    })
}

fn dense(
    name: &'static str,
    batch: usize,
    k: usize,
    o: usize,
    a: &BenchKernelsArgs,
) -> Result<Kernel, CliError> {
    let src = format!(
        "model bench_dense_{k}_{o}\ninput x: b1[N, {k}]\nw = @w: b1[{o}, {k}]\ny = dense(x, w)\noutput y\n"
    );
    Ok(Kernel {
        name,
        model: model(&format!("bench_{name}.ir"), &src, a.seed)?,
        batch,
        bit_macs: (batch * o * k) as f64,
    })
}

fn kernels(a: &BenchKernelsArgs) -> Result<Vec<Kernel>, CliError> {
    use KernelKind::*;
    let all = [
        Conv3x3,
        Conv3x3Wide,
        Conv3x3Stride2,
        Conv1x1,
        Conv3x3Ternary,
        Conv3x3RepConv,
        Dense,
        Gemm,
    ];
    let chosen: &[KernelKind] = if a.kernel.is_empty() { &all } else { &a.kernel };
    all.iter()
        .filter(|k| chosen.contains(k))
        .map(|k| match k {
            Conv3x3 => conv("conv 3x3 64->64 56x56", 56, 64, 64, 3, 1, a),
            Conv3x3Wide => conv("conv 3x3 256->256 14x14", 14, 256, 256, 3, 1, a),
            Conv3x3Stride2 => conv("conv 3x3 128->256 28x28 s2", 28, 128, 256, 3, 2, a),
            Conv1x1 => conv("conv 1x1 256->256 28x28", 28, 256, 256, 1, 1, a),
            Conv3x3Ternary => conv_of(
                "conv 3x3 64->64 56x56 ternary",
                56,
                64,
                64,
                3,
                1,
                "ternary",
                1,
                a,
            ),
            Conv3x3RepConv => conv_of(
                "conv 3x3 2x32->64 56x56 repconv",
                56,
                64,
                64,
                3,
                1,
                "b1",
                2,
                a,
            ),
            Dense => dense("dense 4096->1000 batch 1", 1, 4096, 1000, a),
            Gemm => dense("gemm 256x256x4096", 256, 4096, 256, a),
        })
        .collect()
}

/// A backend and a target to time, and the micro-kernels' tile asked for.
struct Config {
    backend: Backend,
    target: Target,
    tile: Option<Tile>,
}

impl Config {
    /// The micro-kernel this configuration's binary layers get, if any.
    fn micro_kernel(&self) -> Option<MicroKernel> {
        let opts = bnnc::lower::LowerOptions {
            tile: self.tile,
            ..bnnc::lower::LowerOptions::max_vector_bits(self.backend.max_vector_bits())
        };
        MicroKernel::choose(&self.target, &opts)
    }
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
                tile: None,
            });
        }
    }
    if !Backend::Llvm.available() {
        notes.push("LLVM: not in this build (rebuild with --features llvm)".into());
        return Ok(with_tiles(out, &a.tile));
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
            tile: None,
        });
    }
    Ok(with_tiles(out, &a.tile))
}

/// Each configuration once per tile of `tiles` (unchanged when empty).
fn with_tiles(configs: Vec<Config>, tiles: &[Tile]) -> Vec<Config> {
    if tiles.is_empty() {
        return configs;
    }
    configs
        .into_iter()
        .flat_map(|c| {
            tiles.iter().map(move |&t| Config {
                backend: c.backend,
                target: c.target.clone(),
                tile: Some(t),
            })
        })
        .collect()
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
        .emit([])
        .tile(c.tile);
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

    /// `runs` timed runs after a warm-up, each right after one run of
    /// `probe` (calibrated to the kernel's run time): the medians of the
    /// kernel's seconds, of the probe's rates, and of the kernel's bit-MACs/s
    /// over the adjacent probe rate.
    fn time(
        &mut self,
        runs: u64,
        bit_macs: f64,
        probe: &mut Probe,
        file: &Path,
    ) -> Result<Timing, CliError> {
        let t = Instant::now();
        self.run(file)?;
        probe.calibrate(t.elapsed().as_secs_f64().max(5e-4));
        let (mut ts, mut rates, mut fractions) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            let rate = probe.rate();
            let t = Instant::now();
            self.run(file)?;
            let s = t.elapsed().as_secs_f64();
            ts.push(s);
            rates.push(rate);
            fractions.push(bit_macs / s / rate);
        }
        Ok(Timing {
            seconds: median(ts),
            ceiling: median(rates),
            fraction: median(fractions),
        })
    }
}

/// A kernel's medians (see [`Prepared::time`]).
struct Timing {
    seconds: f64,
    /// Bit-MACs/s of the probe runs interleaved with the kernel's.
    ceiling: f64,
    fraction: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The configuration's target, and the micro-kernel's tile when tiles
/// were asked for.
fn describe(c: &Config) -> String {
    let target = describe_target(c);
    match (c.tile, c.micro_kernel()) {
        (Some(_), Some(mk)) => format!("{target}, tile {}", mk.tile()),
        (Some(_), None) => format!("{target}, scalar loops"),
        (None, _) => target,
    }
}

fn describe_target(c: &Config) -> String {
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

/// The ceiling of a configuration: the probe at every vector width up to
/// the micro-kernels' (64-bit lanes: 1, 2, 4, 8; 1 where they do not
/// apply), the best kept.
fn ceiling(c: &Config, runs: u64) -> Result<bnnc::probe::Ceiling, CliError> {
    let t = &c.target;
    let widest = MicroKernel::lanes(t, c.backend.max_vector_bits()).unwrap_or(1);
    let mut best: Option<bnnc::probe::Ceiling> = None;
    for lanes in [1u16, 2, 4, 8]
        .into_iter()
        .filter(|&l| usize::from(l) <= widest)
    {
        let m = bnnc::probe::measure(t, c.backend, lanes, &[8, 12, 16], runs as usize).map_err(
            |source| CliError::Compile {
                file: "bench-kernels probe".into(),
                source,
            },
        )?;
        if best.is_none_or(|b| m.bit_macs_per_s > b.bit_macs_per_s) {
            best = Some(m);
        }
    }
    best.ok_or_else(|| CliError::Mismatch {
        file: "bench-kernels".into(),
        message: "no probe width".into(),
    })
}

/// One timed row.
struct Row {
    kernel: &'static str,
    config: usize,
    ms: f64,
    gmacs: f64,
    /// Median G bit-MACs/s of the probe runs interleaved with this kernel's.
    ceiling: f64,
    /// Median of each run's G bit-MACs/s over the probe run just before it.
    fraction: f64,
}

/// A JSON string literal (names here are plain ASCII; quotes and
/// backslashes escaped anyway).
fn json_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `bnnc bench-kernels`: measures each configuration's ceiling, times every
/// kernel under every configuration, prints the table (or JSON) and fails if
/// any configuration's outputs differ from the first's.
pub(super) fn run(a: &BenchKernelsArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let mut notes = Vec::new();
    let configs = configs(a, &mut notes)?;
    let kernels = kernels(a)?;
    // One probe per backend and target, shared by its tiles.
    let mut ceilings: Vec<bnnc::probe::Ceiling> = Vec::with_capacity(configs.len());
    for (i, c) in configs.iter().enumerate() {
        let same = configs[..i]
            .iter()
            .position(|d| d.backend == c.backend && d.target == c.target);
        ceilings.push(match same {
            Some(j) => ceilings[j],
            None => ceiling(c, a.runs)?,
        });
    }
    let mut rows = Vec::new();
    let mut mismatches = Vec::new();
    for k in &kernels {
        // The outputs of the first configuration.
        let mut first: Option<Buffers> = None;
        for (ci, c) in configs.iter().enumerate() {
            let mut b = prepare(&k.model, c, k.batch, a.seed)?;
            let ce = &ceilings[ci];
            let mut probe =
                Probe::new(&c.target, c.backend, ce.lanes, ce.chains).map_err(|source| {
                    CliError::Compile {
                        file: "bench-kernels probe".into(),
                        source,
                    }
                })?;
            let t = b.time(a.runs, k.bit_macs, &mut probe, &k.model.path)?;
            match &first {
                None => first = Some(b.outputs.clone()),
                Some(o) if *o != b.outputs => {
                    mismatches.push(format!("{} with {} {}", k.name, c.backend, c.target))
                }
                Some(_) => {}
            }
            rows.push(Row {
                kernel: k.name,
                config: ci,
                ms: t.seconds * 1e3,
                gmacs: k.bit_macs / t.seconds / 1e9,
                ceiling: t.ceiling / 1e9,
                fraction: t.fraction,
            });
        }
    }
    let mut w = |s: String| writeln!(out, "{s}").map_err(CliError::Stdout);
    if a.json {
        let cfgs: Vec<String> = configs
            .iter()
            .zip(&ceilings)
            .map(|(c, ce)| {
                format!(
                    "{{\"backend\": {}, \"target\": {}, \"ceiling_gmacs\": {:.1}, \"probe_lanes\": {}, \"probe_chains\": {}}}",
                    json_str(c.backend.name()),
                    json_str(&describe(c)),
                    ce.bit_macs_per_s / 1e9,
                    ce.lanes,
                    ce.chains
                )
            })
            .collect();
        let rs: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{{\"kernel\": {}, \"config\": {}, \"ms\": {:.4}, \"gmacs\": {:.1}, \"ceiling_gmacs\": {:.1}, \"fraction_of_ceiling\": {:.4}}}",
                    json_str(r.kernel),
                    r.config,
                    r.ms,
                    r.gmacs,
                    r.ceiling,
                    r.fraction
                )
            })
            .collect();
        w(format!(
            "{{\"runs\": {}, \"unit\": \"bit-MAC = one xor + popcount + accumulate of one bit\", \"configs\": [{}], \"kernels\": [{}], \"outputs_identical\": {}}}",
            a.runs,
            cfgs.join(", "),
            rs.join(", "),
            mismatches.is_empty()
        ))?;
    } else {
        w(format!(
            "bnnc bench-kernels: median of {} runs after a warm-up, one thread. One bit-MAC is one \
             xor + popcount + accumulate of one bit; the ceiling is a register-only xor + popcount + \
             add loop generated by the same backend for the same target, run before each timed \
             run; \"of ceiling\" is the median over the runs of the kernel's rate over that probe's.",
            a.runs
        ))?;
        w(String::new())?;
        w(
            "| kernel | backend | target | ms | G bit-MACs/s | ceiling G bit-MACs/s | of ceiling |"
                .into(),
        )?;
        w("| --- | --- | --- | ---: | ---: | ---: | ---: |".into())?;
        for r in &rows {
            let c = &configs[r.config];
            w(format!(
                "| {} | {} | {} | {:.3} | {:.1} | {:.1} | {:.1}% |",
                r.kernel,
                c.backend,
                describe(c),
                r.ms,
                r.gmacs,
                r.ceiling,
                100.0 * r.fraction
            ))?;
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
        }
    }
    if mismatches.is_empty() {
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
