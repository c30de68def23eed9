//! The `bnnc` command line: argument definitions (clap) and one function per
//! command. `src/main.rs` parses, calls [`run`] and prints the error.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bnnc_ir::{Model, Tensor};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::load::load_graph;
use crate::npy::{self, NpyError};
use crate::stats::{model_stats, plural, thousands};
use crate::summary::summarize;
use bnnc_train::init::{init_weights, InitOptions};

const ABOUT: &str = "bnnc: a compiler for binarized and low-bit neural networks";

const LONG_ABOUT: &str = "\
bnnc: a compiler for binarized and low-bit neural networks.

A model is a text graph (`model.ir`) plus its weights (`model.safetensors`). These
commands check, print, draw, initialise, run, compile and benchmark models;
`bnnc help COMMAND` tells more.";

const AFTER_HELP: &str = "\
Examples:
  bnnc check examples/mnist_mlp.ir
  bnnc compile examples/mnist_mlp.ir --target aarch64 -o out
  bnnc run examples/mnist_mlp.ir --random --batch 4 --engine jit
  bnnc bench examples/mnist_mlp.ir --batch 1000
  bnnc bench-kernels --runs 5
  bnnc init examples/mnist_mlp.ir --seed 1";

/// The `bnnc` command line.
#[derive(Debug, Parser)]
#[command(name = "bnnc", version, about = ABOUT, long_about = LONG_ABOUT, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load a model (parse, verify, weights) and print a one-line summary.
    #[command(
        long_about = "Load a model: parse and verify its text, read its weights file and check \
every @key against the type the model declares. On success print one line: ops, inputs, \
outputs, parameters, and the bits the weights take once compiled (a weight whose every use is \
sign(...) counts 1 bit per element, since the compiler folds it into packed b1 constants; \
others count their element width). On failure print `file:line:col: error: ...` and exit 1.",
        after_help = "Example:\n  bnnc check examples/mnist_mlp.ir"
    )]
    Check(FileArgs),

    /// Print the canonical text of a model (parse and verify; no weights needed).
    #[command(
        long_about = "Parse and verify a model and print it in canonical form: one op per \
line, attributes in a fixed order, comments dropped. Parsing the output gives the same graph. \
The weights file is not read, so this works before `bnnc init` has written it.",
        after_help = "Example:\n  bnnc print examples/bireal_cnn.ir"
    )]
    Print(FileArgs),

    /// Run a model in the reference interpreter on .npy or random inputs.
    #[command(
        long_about = "Run a model on inputs and print a summary of each output (type, \
dimensions, min/max/mean, the first values, and the argmax of each row of a 2-D output), or \
write the outputs to .npy files with --output.

Inputs come either from .npy files, one --input per model input in the order the model \
declares them, or from --random, which draws each input from its declared type (f32 uniform \
in [-1, 1); b1 random -1/+1; ternary -1/0/+1; uN/iN over their range; i32 in [-128, 127]) at \
batch size --batch, deterministically from --seed.

.npy inputs may be float32, float64 (converted to f32), int8/16/32/64 or uint8/16/32; integer \
arrays fill integer-typed inputs with every value checked (b1 takes -1 and +1), and f32 inputs \
exactly. Outputs are written as float32 (f32 outputs) or int32 (every integer type, b1 as -1/+1).",
        after_help = "Examples:
  bnnc run examples/mnist_mlp.ir --random --batch 4
  bnnc run examples/mnist_mlp.ir --input x.npy --output logits.npy"
    )]
    Run(RunArgs),

    /// Write a model's graph in Graphviz DOT form.
    #[command(
        long_about = "Parse and verify a model and write its graph in Graphviz DOT: one box per \
value labelled with its name, op and type; inputs, weights and outputs shaded. The weights file \
is not read.",
        after_help = "Example:\n  bnnc graph examples/repconv_block.ir --dot -o repconv.dot\n  \
dot -Tsvg repconv.dot -o repconv.svg"
    )]
    Graph(GraphArgs),

    /// Write initial weights for every @key of a model, chosen by each weight's role.
    #[command(
        long_about = "Write a safetensors file with a value for every @key a model names, by \
the role each weight plays in the graph (looking through sign/ternarize/quantize):
  conv2d/dense weights   latent weights of the declared type: f32 uniform in \
[-1/sqrt(fan_in), 1/sqrt(fan_in)], b1 random -1/+1, ternary random -1/0/+1, uN/iN over their \
range, i32 in [-4, 4]
  batchnorm              gamma 1, beta 0, mean 0, var 1
  prelu/rprelu           slopes 0.25, shifts 0
  threshold              sorted random integers per channel; direction +1
  anything else          uniform in [-0.1, 0.1]
--random-stats draws non-trivial statistics instead, for tests: gamma in [-1.5, 1.5] with exact \
zeros and negatives, beta and mean random (mean at the scale of the accumulator it normalises), \
var in [0.1, 2], random slopes, shifts and threshold directions.

The result depends only on --seed (and each key's values only on the seed and the key). Only \
the model text is read; by default the file written is the weights file the model names.",
        after_help = "Examples:
  bnnc init examples/mnist_mlp.ir --seed 1
  bnnc init examples/mnist_mlp.ir --seed 7 --random-stats -o /tmp/mnist_stats.safetensors"
    )]
    Init(InitArgs),

    /// Compile a model to a native object file and a C header.
    #[command(
        long_about = "Compile a model for a target CPU: constant folding (sign(@w) becomes packed \
b1 weights), lowering to the kernel IR, and code generation by Cranelift. Writes DIR/<model>.o \
(relocatable ELF with the weights in read-only data) and DIR/<model>.h (entry points, shapes, \
workspace size, required CPU features); --emit also writes the Cranelift IR (clif) and the \
kernel IR (kir) for reading.

A target is an architecture and an explicit feature list, ARCH[+FEATURE]...: `x86_64` is the \
baseline x86-64 (no popcnt instruction), `x86_64+popcnt+avx2` names features, `aarch64` is \
ARMv8-A with NEON (popcount by `cnt`), `riscv64` is RV64GC, `native` is this machine with every \
feature it has. The code never uses an instruction the target does not name. `--target help` \
lists them all.

--backend llvm compiles with LLVM (default<O3>) instead of Cranelift: it also takes a CPU model \
(--cpu znver4, --cpu neoverse-n1, --cpu native for this machine's CPU; with --cpu alone the \
architecture follows from the CPU), targets riscv64, and can write the assembly (asm) and the \
optimised LLVM IR (llvm-ir). Both backends write the same header and entry points, so a C \
program links either object unchanged. The LLVM backend needs bnnc built with `--features llvm`.

n-bit, ternary and int8 kernels are not available in the native backends yet: such models \
are refused with a message naming the op and types.",
        after_help = "Examples:
  bnnc compile examples/mnist_mlp.ir --target aarch64 -o out
  bnnc compile examples/bireal_cnn.ir --target x86_64+popcnt -o out --emit obj,header,kir
  bnnc compile examples/mnist_mlp.ir --backend llvm --cpu znver4 -o out --emit obj,header,asm,llvm-ir
  bnnc compile examples/mnist_mlp.ir --backend llvm --target riscv64 -o out
  bnnc compile --target help"
    )]
    Compile(CompileArgs),

    /// Time a model in the interpreter and as JIT-compiled native code.
    #[command(
        long_about = "Run a model on random inputs of the given batch size in the reference \
interpreter and as native code JIT-compiled for this CPU, check that both give the same \
outputs, and print the time per batch, samples per second and the speed ratio. Each engine \
runs once to warm up, then --runs times; the median is reported.",
        after_help = "Example:\n  bnnc bench examples/mnist_mlp.ir --batch 1000 --runs 5"
    )]
    Bench(BenchArgs),

    /// Measure binary kernels against their float equivalents, per backend and CPU.
    #[command(
        long_about = "Time two kernels JIT-compiled by each backend for each target CPU this \
machine can run, next to the float kernel of the same shape, in one process, and print a \
Markdown table of GBOPS (binary ops per second: 2*M*N*K for a GEMM, counted the same way for \
a convolution) and GFLOPS:
  conv   3x3 binary convolution, 64 -> 64 channels on 56x56, bits in and bits out (conv -> \
threshold), padding 1 (pad_value=+1); float: the f32 convolution of the same shape
  gemm   binary dense 256 x 256 x 4096 bits (M = 256 rows, N = 256 outputs, K = 4096); \
float: the f32 dense of the same shape
Only the compiled entry point is timed (inputs are packed beforehand); each configuration \
runs once to warm up, then --runs times, and the median is reported. Outputs are checked to \
be identical across all configurations.",
        after_help = "Examples:\n  bnnc bench-kernels\n  bnnc bench-kernels --kernel gemm --cpus haswell,native --runs 9"
    )]
    BenchKernels(BenchKernelsArgs),

    /// Write an inference model: latent weights read through sign(...) stored as packed b1.
    #[command(
        long_about = "Write an inference copy of a trained model: every weight read only through \
sign(...) (the latent float weights training updates) becomes a b1 weight holding its signs, \
stored packed 8 per byte, and the sign ops that read it are dropped; everything else is kept as \
it is (batch-norm running statistics, other weights, activation signs with their training \
attributes, every name). The exported model computes bit for bit what the original computes, \
and its weights file is about 32 times smaller for the binarized weights.

Writes OUT.ir (canonical text) and OUT.safetensors beside it, which OUT.ir names. Tensors of \
the original weights file that the graph does not read are not copied. The source model and \
its weights file are never overwritten.",
        after_help = "Example:\n  bnnc export examples/mnist_mlp.ir -o /tmp/mnist_mlp_inf.ir && bnnc check /tmp/mnist_mlp_inf.ir"
    )]
    Export(ExportArgs),

    /// Measure a classifier's accuracy and speed on an IDX dataset such as MNIST.
    #[command(
        long_about = "Run a classifier over the images of an IDX dataset (MNIST, Fashion-MNIST: \
the files train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and \
t10k-labels-idx1-ubyte in DIR, each optionally .gz) and print its accuracy and the images per \
second of model run time (compilation, data conversion and argmax excluded).

The model must have one f32 input whose non-batch dims hold one image (f32[N, 784], \
f32[N, 28, 28, 1], ...); pixels are fed as p / 255. Its first output is logits [N, K] (the class \
is the argmax along K, ties to the lower class, as the interpreter's argmax) or class indices \
i32[N]. Images are taken in file order (--limit N: the first N) in batches of --batch.

--engine interp (the default) runs the reference interpreter; --engine jit compiles the model \
for this CPU first (with --backend, and -O0 to skip the optimizer).",
        after_help = "Examples:
  bnnc eval examples/mnist_mlp.ir --data data/mnist
  bnnc eval examples/mnist_mlp.ir --data data/mnist --engine jit --batch 1000
  bnnc eval examples/mnist_mlp.ir --data data/mnist --split train --limit 5000"
    )]
    Eval(EvalArgs),

    /// Optimize a model with the e-graph optimizer and print the result.
    #[command(
        long_about = "Rewrite a model by equality saturation (egg) and print the optimized graph \
in the text format, a valid model for every other command. The rules are exact: the \
optimized model computes bit for bit what the original computes. Batch-norm, per-channel \
scales and offsets, PReLU/RPReLU, clips and similar chains between a binary layer's integer \
accumulator and the next sign become per-channel integer thresholds; sign(@w) becomes packed \
b1 weights; everything computed from constants only is computed once. `bnnc compile` and \
`bnnc run --engine jit` run the same optimizer unless given -O0.

Tensors the optimizer computes get keys `opt.<value>`; with -o the model and its weights \
(`<stem>.opt.safetensors`, named by the printed model) are written, so the result loads \
again. --explain adds, as comments at the top, which rules fired and how often, the e-graph \
size and the cost before and after.",
        after_help = "Examples:\n  bnnc opt examples/mnist_mlp.ir --explain\n  bnnc opt examples/mnist_mlp.ir -o /tmp/mnist_opt.ir && bnnc check /tmp/mnist_opt.ir"
    )]
    Opt(OptArgs),

    /// Train a model on an IDX dataset (MNIST, Fashion-MNIST) and write its weights.
    #[command(
        long_about = crate::train::LONG_ABOUT,
        after_help = crate::train::AFTER_HELP
    )]
    Train(Box<crate::train::TrainArgs>),
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The trained model (.ir); its weights file must exist.
    pub file: PathBuf,
    /// The inference model to write (.ir); its weights go to the same path
    /// with the extension .safetensors.
    #[arg(long, short = 'o', value_name = "OUT.ir")]
    pub output: PathBuf,
}

/// Which half of an IDX dataset `bnnc eval` reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum SplitKind {
    /// t10k-images / t10k-labels (10,000 MNIST images).
    #[default]
    Test,
    /// train-images / train-labels (60,000 MNIST images).
    Train,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The model file (.ir); its weights file must exist.
    pub file: PathBuf,
    /// The folder of the IDX files (the repository ships MNIST in data/mnist).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Which split to evaluate.
    #[arg(long, value_enum, default_value_t = SplitKind::Test)]
    pub split: SplitKind,
    /// The engine that runs the model.
    #[arg(long, value_enum, default_value_t = Engine::Interp)]
    pub engine: Engine,
    /// The backend of `--engine jit` [default: cranelift].
    #[arg(long, value_enum)]
    pub backend: Option<BackendKind>,
    /// With `--engine jit`: 1 optimizes the graph first (the default), 0 does not.
    #[arg(short = 'O', value_name = "LEVEL", default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub opt_level: u8,
    /// Images per model run.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=1 << 16))]
    pub batch: u64,
    /// Evaluate only the first N images of the split.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
}

#[derive(Debug, Args)]
pub struct OptArgs {
    /// The model file (.ir); its weights file must exist.
    pub file: PathBuf,
    /// Print which rules fired, the e-graph size and the cost, as comments.
    #[arg(long)]
    pub explain: bool,
    /// Write the optimized model here (and its weights beside it) instead of
    /// printing it.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CompileArgs {
    /// The model file (.ir); not needed with `--target help`.
    #[arg(required_unless_present = "target")]
    pub file: Option<PathBuf>,
    /// ARCH[:CPU][+FEATURE]... or `native`; `help` lists architectures, features and CPUs.
    #[arg(long, short = 't', default_value = "native")]
    pub target: String,
    /// A CPU model for the LLVM backend (znver4, haswell, neoverse-n1, native, ...).
    #[arg(long, value_name = "CPU")]
    pub cpu: Option<String>,
    /// The code generator.
    #[arg(long, value_enum, default_value_t = BackendKind::Cranelift)]
    pub backend: BackendKind,
    /// Output directory (created if missing).
    #[arg(long = "out-dir", short = 'o', value_name = "DIR", default_value = ".")]
    pub out_dir: PathBuf,
    /// What to write, comma-separated: obj, header, clif, kir, asm, llvm-ir.
    #[arg(long, value_delimiter = ',', default_values = ["obj", "header"])]
    pub emit: Vec<EmitKind>,
    /// Optimization level: 1 runs the e-graph optimizer (batch-norm and scales
    /// folded into integer thresholds, constants folded), 0 compiles the graph
    /// as written.
    #[arg(short = 'O', value_name = "LEVEL", default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub opt_level: u8,
}

/// The code generators (`--backend`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// Cranelift: fast compilation; x86_64 and aarch64 with explicit features.
    #[default]
    Cranelift,
    /// LLVM, default<O3>: any CPU LLVM knows, riscv64 (needs bnnc built with `--features llvm`).
    Llvm,
}

impl From<BackendKind> for bnnc::compile::Backend {
    fn from(b: BackendKind) -> Self {
        match b {
            BackendKind::Cranelift => bnnc::compile::Backend::Cranelift,
            BackendKind::Llvm => bnnc::compile::Backend::Llvm,
        }
    }
}

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

/// Artifacts of `bnnc compile`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EmitKind {
    /// <model>.o: relocatable object file
    Obj,
    /// <model>.h: C header
    Header,
    /// <model>.clif: Cranelift IR
    Clif,
    /// <model>.kir: bnnc kernel IR
    Kir,
    /// <model>.s: assembly (LLVM backend)
    Asm,
    /// <model>.ll: optimised LLVM IR (LLVM backend)
    LlvmIr,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The model file (.ir); its weights file must exist.
    pub file: PathBuf,
    /// Batch size of the random inputs.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub batch: u64,
    /// Timed runs per engine (after one warm-up run); the median is reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub runs: u64,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The backend that JIT-compiles the model.
    #[arg(long, value_enum, default_value_t = BackendKind::Cranelift)]
    pub backend: BackendKind,
    /// Optimization level: 1 runs the e-graph optimizer (batch-norm and scales
    /// folded into integer thresholds, constants folded), 0 compiles the graph
    /// as written.
    #[arg(short = 'O', value_name = "LEVEL", default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub opt_level: u8,
}

#[derive(Debug, Args)]
pub struct FileArgs {
    /// The model file (.ir).
    pub file: PathBuf,
}

/// The engine that executes a model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    /// The reference interpreter (bnnc-runtime): the exact meaning of every op.
    #[default]
    Interp,
    /// Native code JIT-compiled for this CPU (by the backend of --backend).
    Jit,
}

/// Where `bnnc run` takes its inputs from: .npy files or random values.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct InputSource {
    /// An .npy file for the next model input; repeat for models with several
    /// inputs, in the order the model declares them.
    #[arg(long = "input", short = 'i', value_name = "NPY")]
    pub inputs: Vec<PathBuf>,
    /// Feed random values of each input's declared type instead of .npy files
    /// (see --batch and --seed).
    #[arg(long)]
    pub random: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The model file (.ir); its weights file must exist.
    pub file: PathBuf,
    #[command(flatten)]
    pub source: InputSource,
    /// Batch size N of the random inputs [default: 1].
    #[arg(long, conflicts_with = "inputs", value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub batch: Option<u64>,
    /// Seed of the random inputs [default: 0].
    #[arg(long, conflicts_with = "inputs")]
    pub seed: Option<u64>,
    /// Write the next model output to this .npy file instead of printing a
    /// summary; give one per model output, in order.
    #[arg(long = "output", short = 'o', value_name = "NPY")]
    pub outputs: Vec<PathBuf>,
    /// The engine that runs the model.
    #[arg(long, value_enum, default_value_t = Engine::Interp)]
    pub engine: Engine,
    /// With `--engine jit`: 1 optimizes the graph first (the default), 0 does not.
    #[arg(short = 'O', value_name = "LEVEL", default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub opt_level: u8,
    /// The backend of `--engine jit` [default: cranelift].
    #[arg(long, value_enum)]
    pub backend: Option<BackendKind>,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    /// The model file (.ir).
    pub file: PathBuf,
    /// Write Graphviz DOT (the default, and for now the only format).
    #[arg(long)]
    pub dot: bool,
    /// Write to this file instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The model file (.ir); its weights file need not exist.
    pub file: PathBuf,
    /// Seed of the random values.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Draw non-trivial batch-norm statistics, slopes, shifts and threshold
    /// directions instead of neutral ones.
    #[arg(long)]
    pub random_stats: bool,
    /// The safetensors file to write (default: the weights file the model names).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Everything a command can fail with. Each renders as a complete message
/// (`file:line:col: error: ...` for problems inside a model).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Model(#[from] bnnc_ir::Error),
    #[error(transparent)]
    Npy(#[from] NpyError),
    /// The command does not fit the model (input count, batch sizes, ...).
    #[error("{}: error: {message}", file.display())]
    Mismatch { file: PathBuf, message: String },
    #[error("{}: error: the interpreter failed: {source}", file.display())]
    Run {
        file: PathBuf,
        #[source]
        source: bnnc_runtime::RunError,
    },
    #[error("{}: error: cannot write: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: error: {source}", file.display())]
    Compile {
        file: PathBuf,
        #[source]
        source: bnnc::compile::CompileError,
    },
    #[error("error: {0}")]
    Target(#[from] bnnc_kir::target::TargetError),
    #[error("{}: error: the compiled model failed: {source}", file.display())]
    Jit {
        file: PathBuf,
        #[source]
        source: bnnc::jit::JitError,
    },
    #[error("{}: error: {source}", file.display())]
    Export {
        file: PathBuf,
        #[source]
        source: bnnc_train::export::ExportError,
    },
    #[error("{}: error: {source}", file.display())]
    Eval {
        file: PathBuf,
        #[source]
        source: crate::eval::EvalError,
    },
    #[error(transparent)]
    Train(#[from] crate::train::TrainCliError),
    /// Writing to standard output failed (a closed pipe, a full disk).
    #[error("error: cannot write to standard output: {0}")]
    Stdout(#[source] io::Error),
}

/// Runs one command, writing its normal output to `out`.
pub fn run(cli: &Cli, out: &mut dyn Write) -> Result<(), CliError> {
    match &cli.command {
        Command::Check(a) => check(&a.file, out),
        Command::Print(a) => print(&a.file, out),
        Command::Run(a) => run_model(a, out),
        Command::Graph(a) => graph(a, out),
        Command::Init(a) => init(a, out),
        Command::Compile(a) => compile(a, out),
        Command::Opt(a) => opt(a, out),
        Command::Export(a) => export(a, out),
        Command::Eval(a) => eval(a, out),
        Command::Bench(a) => bench(a, out),
        Command::BenchKernels(a) => bench_kernels::run(a, out),
        Command::Train(a) => crate::train::run(a, out),
    }
}

fn check(file: &Path, out: &mut dyn Write) -> Result<(), CliError> {
    let model = Model::load(file)?;
    writeln!(out, "{}", model_stats(&model.graph)).map_err(CliError::Stdout)
}

fn print(file: &Path, out: &mut dyn Write) -> Result<(), CliError> {
    let checked = load_graph(file)?;
    out.write_all(bnnc_ir::text::print(&checked.graph).as_bytes())
        .map_err(CliError::Stdout)
}

fn graph(a: &GraphArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let checked = load_graph(&a.file)?;
    let dot = checked.graph.to_dot(Some(&checked.types));
    match &a.output {
        Some(path) => std::fs::write(path, dot).map_err(|source| CliError::Write {
            path: path.clone(),
            source,
        }),
        None => out.write_all(dot.as_bytes()).map_err(CliError::Stdout),
    }
}

fn init(a: &InitArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let checked = load_graph(&a.file)?;
    let opts = InitOptions {
        seed: a.seed,
        random_stats: a.random_stats,
    };
    let weights = init_weights(&checked.graph, &checked.types, opts).map_err(|diag| {
        bnnc_ir::Error::Model {
            file: a.file.clone(),
            diag,
        }
    })?;
    let path = match (&a.output, Model::weights_path(&checked.graph, &a.file)) {
        (Some(p), _) => p.clone(),
        (None, Some(p)) => p,
        (None, None) => {
            return Err(CliError::Mismatch {
                file: a.file.clone(),
                message: format!(
                    "model `{}` names no weights file (no `weights \"...\"` line); pass -o FILE",
                    checked.graph.name
                ),
            })
        }
    };
    weights.save(&path)?;
    let params: usize = weights.tensors.values().map(Tensor::numel).sum();
    writeln!(
        out,
        "wrote {}: {}, {} (seed {}{})",
        path.display(),
        plural(weights.tensors.len(), "tensor"),
        plural(params, "param"),
        a.seed,
        if a.random_stats { ", random stats" } else { "" }
    )
    .map_err(CliError::Stdout)
}

fn run_model(a: &RunArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let model = Model::load(&a.file)?;
    let g = &model.graph;
    let mismatch = |message: String| CliError::Mismatch {
        file: a.file.clone(),
        message,
    };
    let input_ids = g.inputs();
    if !a.outputs.is_empty() && a.outputs.len() != g.outputs.len() {
        return Err(mismatch(format!(
            "the model has {} but {} --output files were given",
            plural(g.outputs.len(), "output"),
            a.outputs.len()
        )));
    }
    let inputs: Vec<Tensor> = if a.source.random {
        let batch = a.batch.unwrap_or(1) as usize;
        check_sizes(&model, batch).map_err(mismatch)?;
        bnnc_runtime::inputs::random_inputs(g, batch, a.seed.unwrap_or(0)).map_err(mismatch)?
    } else {
        if a.source.inputs.len() != input_ids.len() {
            return Err(mismatch(format!(
                "the model has {} but {} --input files were given",
                plural(input_ids.len(), "input"),
                a.source.inputs.len()
            )));
        }
        let mut tensors = Vec::with_capacity(input_ids.len());
        for (&v, path) in input_ids.iter().zip(&a.source.inputs) {
            let arr = npy::read(path)?;
            let t = npy::to_input(&arr, &g.node(v).name, model.ty(v)).map_err(|message| {
                NpyError::Invalid {
                    path: path.clone(),
                    message,
                }
            })?;
            tensors.push(t);
        }
        let batch = check_batches(&model, &input_ids, &tensors).map_err(mismatch)?;
        check_sizes(&model, batch).map_err(mismatch)?;
        tensors
    };
    if a.backend.is_some() && a.engine != Engine::Jit {
        return Err(mismatch(
            "--backend chooses the code generator of --engine jit; add --engine jit".into(),
        ));
    }
    let results = match a.engine {
        Engine::Interp => bnnc_runtime::run(&model, &inputs).map_err(|source| CliError::Run {
            file: a.file.clone(),
            source,
        })?,
        Engine::Jit => {
            let backend = a.backend.unwrap_or_default().into();
            let compile_err = |source| CliError::Compile {
                file: a.file.clone(),
                source,
            };
            let opts = bnnc::compile::CompileOptions::host(backend)
                .map_err(compile_err)?
                .opt_level(a.opt_level);
            let jit = bnnc::jit::JitModel::compile_with(&model, &opts).map_err(compile_err)?;
            jit.run(&inputs).map_err(|source| CliError::Jit {
                file: a.file.clone(),
                source,
            })?
        }
    };
    let names = g.outputs.iter().map(|&v| g.node(v).name.as_str());
    if a.outputs.is_empty() {
        for (name, t) in names.zip(&results) {
            writeln!(out, "{}", summarize(name, t)).map_err(CliError::Stdout)?;
        }
    } else {
        for ((name, t), path) in names.zip(&results).zip(&a.outputs) {
            npy::write(path, t)?;
            let dims: Vec<String> = t.dims.iter().map(|d| d.to_string()).collect();
            writeln!(
                out,
                "wrote {}: {name} {}[{}]",
                path.display(),
                t.elem,
                dims.join(", ")
            )
            .map_err(CliError::Stdout)?;
        }
    }
    Ok(())
}

/// The largest value the interpreter may hold, in elements (2^31: 8 GiB of f32).
const MAX_VALUE_ELEMENTS: usize = 1 << 31;

/// Refuses a batch size at which some value of the model would exceed
/// [`MAX_VALUE_ELEMENTS`], before anything is allocated.
fn check_sizes(model: &Model, batch: usize) -> Result<(), String> {
    for v in model.graph.ids() {
        let ty = model.ty(v);
        if ty.numel(batch) > MAX_VALUE_ELEMENTS {
            return Err(format!(
                "at batch size {batch}, value `{}` ({ty}) would have {} elements; \
                 the interpreter holds at most 2^31 per value",
                model.graph.node(v).name,
                thousands(ty.numel(batch) as u64)
            ));
        }
    }
    Ok(())
}

/// All batched inputs must agree on N; returns it (1 when no input is batched).
fn check_batches(
    model: &Model,
    ids: &[bnnc_ir::ValueId],
    tensors: &[Tensor],
) -> Result<usize, String> {
    let mut first: Option<(&str, usize)> = None;
    for (&v, t) in ids.iter().zip(tensors) {
        if !model.ty(v).is_batched() {
            continue;
        }
        let name = model.graph.node(v).name.as_str();
        let n = t.dims[0];
        match first {
            None => first = Some((name, n)),
            Some((a, m)) if m != n => {
                return Err(format!(
                    "inputs disagree on the batch size N: `{a}` has {m}, `{name}` has {n}"
                ))
            }
            Some(_) => {}
        }
    }
    Ok(first.map_or(1, |(_, n)| n))
}

fn compile(a: &CompileArgs, out: &mut dyn Write) -> Result<(), CliError> {
    use bnnc::compile::{CompileOptions, Emit};
    if a.target == "help" {
        return out
            .write_all(bnnc_kir::target::Target::help().as_bytes())
            .map_err(CliError::Stdout);
    }
    let target = resolve_target(&a.target, a.cpu.as_deref())?;
    let file = a
        .file
        .as_ref()
        .expect("clap requires FILE unless --target help");
    let model = Model::load(file)?;
    let emit: std::collections::BTreeSet<Emit> = a
        .emit
        .iter()
        .map(|e| match e {
            EmitKind::Obj => Emit::Obj,
            EmitKind::Header => Emit::Header,
            EmitKind::Clif => Emit::Clif,
            EmitKind::Kir => Emit::Kir,
            EmitKind::Asm => Emit::Asm,
            EmitKind::LlvmIr => Emit::LlvmIr,
        })
        .collect();
    let opts = CompileOptions::new(target.clone())
        .backend(a.backend.into())
        .opt_level(a.opt_level)
        .emit(emit);
    let compile_err = |source| CliError::Compile {
        file: file.clone(),
        source,
    };
    let written = bnnc::compile::compile(&model, &opts)
        .and_then(|c| c.write_to(&a.out_dir))
        .map_err(compile_err)?;
    for p in written {
        writeln!(out, "wrote {} ({target})", p.display()).map_err(CliError::Stdout)?;
    }
    Ok(())
}

/// The target of `--target T [--cpu C]`. A CPU replaces the host's features
/// that a default `native` target would bring; with `--target` left at
/// `native`, the architecture follows from the CPU when only one
/// architecture has a CPU of that name (`--cpu neoverse-n1` is aarch64).
pub fn resolve_target(
    target: &str,
    cpu: Option<&str>,
) -> Result<bnnc_kir::target::Target, bnnc_kir::target::TargetError> {
    use bnnc_kir::target::{Arch, Target};
    let Some(cpu) = cpu else {
        return Target::parse(target);
    };
    if target != "native" {
        return Target::parse(target)?.with_cpu(cpu);
    }
    if cpu == "native" {
        return Target::native_cpu();
    }
    let arches: Vec<Arch> = Arch::ALL
        .into_iter()
        .filter(|&a| bnnc_llvm::known_cpus(a).contains(&cpu))
        .collect();
    let arch = match arches.as_slice() {
        &[only] => only,
        _ => Target::host()?.arch,
    };
    Target::new(arch).with_cpu(cpu)
}

fn bench(a: &BenchArgs, out: &mut dyn Write) -> Result<(), CliError> {
    use std::time::Instant;
    let model = Model::load(&a.file)?;
    let batch = a.batch as usize;
    let mismatch = |message: String| CliError::Mismatch {
        file: a.file.clone(),
        message,
    };
    check_sizes(&model, batch).map_err(mismatch)?;
    let inputs =
        bnnc_runtime::inputs::random_inputs(&model.graph, batch, a.seed).map_err(mismatch)?;
    let t0 = Instant::now();
    let backend: bnnc::compile::Backend = a.backend.into();
    let compile_err = |source| CliError::Compile {
        file: a.file.clone(),
        source,
    };
    let opts = bnnc::compile::CompileOptions::host(backend)
        .map_err(compile_err)?
        .opt_level(a.opt_level);
    let jit = bnnc::jit::JitModel::compile_with(&model, &opts).map_err(compile_err)?;
    let compile_time = t0.elapsed().as_secs_f64();
    let time =
        |f: &dyn Fn() -> Result<Vec<Tensor>, CliError>| -> Result<(f64, Vec<Tensor>), CliError> {
            let first = f()?;
            let mut ts = Vec::new();
            for _ in 0..a.runs {
                let t = Instant::now();
                f()?;
                ts.push(t.elapsed().as_secs_f64());
            }
            ts.sort_by(f64::total_cmp);
            Ok((ts[ts.len() / 2], first))
        };
    let (ti, want) = time(&|| {
        bnnc_runtime::run(&model, &inputs).map_err(|source| CliError::Run {
            file: a.file.clone(),
            source,
        })
    })?;
    let (tj, got) = time(&|| {
        jit.run(&inputs).map_err(|source| CliError::Jit {
            file: a.file.clone(),
            source,
        })
    })?;
    let identical = got == want;
    let host = jit.compiled().target.clone();
    let mut w = |s: String| writeln!(out, "{s}").map_err(CliError::Stdout);
    w(format!(
        "{}: batch {batch}, median of {} runs, JIT target {host}",
        model.graph.name, a.runs
    ))?;
    w(format!(
        "  jit compile       {:>10.3} ms",
        compile_time * 1e3
    ))?;
    w(format!(
        "  interpreter       {:>10.3} ms/batch  {:>12.0} samples/s",
        ti * 1e3,
        batch as f64 / ti
    ))?;
    w(format!(
        "  {:<17} {:>10.3} ms/batch  {:>12.0} samples/s",
        format!("jit ({backend})"),
        tj * 1e3,
        batch as f64 / tj
    ))?;
    w(format!("  speedup jit/interpreter: {:.2}x", ti / tj))?;
    w(format!(
        "  outputs {}",
        if identical { "identical" } else { "DIFFER" }
    ))?;
    if identical {
        Ok(())
    } else {
        Err(mismatch(
            "the JIT's outputs differ from the interpreter's: please report this model".into(),
        ))
    }
}

/// `bnnc bench-kernels`: binary kernels against float ones, per backend and CPU.
mod bench_kernels {
    use std::io::Write;
    use std::path::Path;
    use std::time::Instant;

    use bnnc_ir::Model;
    use bnnc_kir::target::{Arch, Target};

    use super::{BenchKernelsArgs, CliError, KernelKind};
    use bnnc::compile::Backend;
    use bnnc::jit::{to_words, JitModel};
    use bnnc_train::init::{init_weights, InitOptions};

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
            let mut outs: Vec<&mut [u64]> =
                self.outputs.iter_mut().map(Vec::as_mut_slice).collect();
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
}

fn opt(a: &OptArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let model = Model::load(&a.file)?;
    let optimized = bnnc::opt::optimize(&model).map_err(|e| CliError::Compile {
        file: a.file.clone(),
        source: e.into(),
    })?;
    let mut text = String::new();
    if a.explain {
        for line in optimized.report.to_string().lines() {
            text.push_str(&format!("# {line}\n"));
        }
    }
    text.push_str(&optimized.text());
    match &a.output {
        Some(path) => {
            optimized.write(path)?;
            if a.explain {
                std::fs::write(path, &text).map_err(|source| CliError::Write {
                    path: path.clone(),
                    source,
                })?;
            }
            writeln!(out, "wrote {}", path.display()).map_err(CliError::Stdout)
        }
        None => out.write_all(text.as_bytes()).map_err(CliError::Stdout),
    }
}

fn export(a: &ExportArgs, out: &mut dyn Write) -> Result<(), CliError> {
    use bnnc_train::export::ExportError;
    let w = bnnc_train::export::export_to(&a.file, &a.output).map_err(|e| match e {
        // Load and write errors already name their file.
        ExportError::Model(e) => CliError::Model(e),
        source => CliError::Export {
            file: a.file.clone(),
            source,
        },
    })?;
    let e = &w.exported;
    let mut say = |s: String| writeln!(out, "{s}").map_err(CliError::Stdout);
    match &w.weights_path {
        Some(wp) => say(format!(
            "wrote {} and {}",
            w.model_path.display(),
            wp.display()
        ))?,
        None => say(format!("wrote {} (no weights)", w.model_path.display()))?,
    }
    let elements: usize = e.binarized.iter().map(|b| b.elements).sum();
    say(format!(
        "  {} stored as packed b1 ({}), {} removed, {} kept as they were",
        plural(e.binarized.len(), "latent weight"),
        plural(elements, "element"),
        plural(e.signs_removed, "sign op"),
        plural(e.kept.len(), "weight"),
    ))?;
    if let (Some(before), Some(after)) = (w.original_weights_bytes, w.weights_bytes) {
        say(format!(
            "  weights {} -> {} bytes ({:.1}x smaller)",
            thousands(before),
            thousands(after),
            before as f64 / after.max(1) as f64
        ))?;
    }
    Ok(())
}

fn eval(a: &EvalArgs, out: &mut dyn Write) -> Result<(), CliError> {
    use crate::eval::{EvalEngine, EvalOptions};
    use bnnc_train::data::{load_idx_dir, Split};
    let err = |source| CliError::Eval {
        file: a.file.clone(),
        source,
    };
    if a.backend.is_some() && a.engine != Engine::Jit {
        return Err(CliError::Mismatch {
            file: a.file.clone(),
            message: "--backend chooses the code generator of --engine jit; add --engine jit"
                .into(),
        });
    }
    let model = Model::load(&a.file)?;
    let split = match a.split {
        SplitKind::Test => Split::Test,
        SplitKind::Train => Split::Train,
    };
    let data = load_idx_dir(&a.data, split).map_err(|e| err(e.into()))?;
    let engine = match a.engine {
        Engine::Interp => EvalEngine::Interp,
        Engine::Jit => EvalEngine::Jit {
            backend: a.backend.unwrap_or_default().into(),
            opt_level: a.opt_level,
        },
    };
    let opts = EvalOptions {
        engine,
        batch: a.batch as usize,
        limit: a.limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX)),
    };
    let r = crate::eval::evaluate(&model, &data, &opts).map_err(err)?;
    let mut say = |s: String| writeln!(out, "{s}").map_err(CliError::Stdout);
    say(format!(
        "{}: {} split of {}, {}, {engine}",
        model.graph.name,
        split,
        a.data.display(),
        plural(r.images, "image"),
    ))?;
    say(format!(
        "accuracy {:.2}% ({} of {})",
        100.0 * r.accuracy(),
        thousands(r.correct as u64),
        thousands(r.images as u64)
    ))?;
    let compile = match engine {
        EvalEngine::Interp => String::new(),
        EvalEngine::Jit { .. } => format!("; compile {:.1} ms", r.compile_seconds * 1e3),
    };
    say(format!(
        "speed {} images/s ({:.1} ms running the model at batch {}{compile})",
        thousands(r.images_per_second().round() as u64),
        r.run_seconds * 1e3,
        a.batch
    ))
}
