//! The `bnnc` command line: the clap definitions of [`Cli`] and [`Command`],
//! the error every command returns ([`CliError`]) and [`run`], which calls the
//! command's module. `src/main.rs` parses, calls [`run`] and prints the error.
//!
//! One module per command, each with its arguments, its help text and its
//! function: `check`, `print`, `run`, `graph`, `init`, `compile`, `bench`,
//! `bench_kernels`, `export`, `eval`, `opt` (`bnnc train` is
//! [`crate::train`]). Arguments shared by several commands ([`FileArgs`],
//! [`Engine`], [`BackendKind`]) are defined here.

use std::io::{self, Write};
use std::path::PathBuf;

use bnnc_ir::error::escape_path;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::npy::NpyError;

mod bench;
mod bench_kernels;
mod check;
mod compile;
mod eval;
mod export;
mod graph;
mod init;
mod opt;
mod print;
mod run;

pub use bench::BenchArgs;
pub use bench_kernels::{BenchKernelsArgs, KernelKind};
pub use compile::{resolve_target, CompileArgs, EmitKind};
pub use eval::{EvalArgs, SplitKind};
pub use export::ExportArgs;
pub use graph::GraphArgs;
pub use init::InitArgs;
pub use opt::OptArgs;
pub use run::{InputSource, RunArgs};

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
    #[command(long_about = check::LONG_ABOUT, after_help = check::AFTER_HELP)]
    Check(FileArgs),

    /// Print the canonical text of a model (parse and verify; no weights needed).
    #[command(long_about = print::LONG_ABOUT, after_help = print::AFTER_HELP)]
    Print(FileArgs),

    /// Run a model in the reference interpreter on .npy or random inputs.
    #[command(long_about = run::LONG_ABOUT, after_help = run::AFTER_HELP)]
    Run(RunArgs),

    /// Write a model's graph in Graphviz DOT form.
    #[command(long_about = graph::LONG_ABOUT, after_help = graph::AFTER_HELP)]
    Graph(GraphArgs),

    /// Write initial weights for every @key of a model, chosen by each weight's role.
    #[command(long_about = init::LONG_ABOUT, after_help = init::AFTER_HELP)]
    Init(InitArgs),

    /// Compile a model to a native object file and a C header.
    #[command(long_about = compile::LONG_ABOUT, after_help = compile::AFTER_HELP)]
    Compile(CompileArgs),

    /// Time a model in the interpreter and as JIT-compiled native code.
    #[command(long_about = bench::LONG_ABOUT, after_help = bench::AFTER_HELP)]
    Bench(BenchArgs),

    /// Measure binary kernels against their float equivalents, per backend and CPU.
    #[command(long_about = bench_kernels::LONG_ABOUT, after_help = bench_kernels::AFTER_HELP)]
    BenchKernels(BenchKernelsArgs),

    /// Write an inference model: latent weights read through sign(...) stored as packed b1.
    #[command(long_about = export::LONG_ABOUT, after_help = export::AFTER_HELP)]
    Export(ExportArgs),

    /// Measure a classifier's accuracy and speed on an IDX dataset such as MNIST.
    #[command(long_about = eval::LONG_ABOUT, after_help = eval::AFTER_HELP)]
    Eval(EvalArgs),

    /// Optimize a model with the e-graph optimizer and print the result.
    #[command(long_about = opt::LONG_ABOUT, after_help = opt::AFTER_HELP)]
    Opt(OptArgs),

    /// Train a model on an IDX dataset (MNIST, Fashion-MNIST) and write its weights.
    #[command(
        long_about = crate::train::LONG_ABOUT,
        after_help = crate::train::AFTER_HELP
    )]
    Train(Box<crate::train::TrainArgs>),
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

/// Everything a command can fail with. Each renders as a complete message
/// (`file:line:col: error: ...` for problems inside a model), paths and other
/// strings from files escaped by [`bnnc_ir::error::escape`].
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Model(#[from] bnnc_ir::Error),
    #[error(transparent)]
    Npy(#[from] NpyError),
    /// The command does not fit the model (input count, batch sizes, ...).
    #[error("{}: error: {message}", escape_path(file))]
    Mismatch { file: PathBuf, message: String },
    #[error("{}: error: the interpreter failed: {source}", escape_path(file))]
    Run {
        file: PathBuf,
        #[source]
        source: bnnc_runtime::RunError,
    },
    #[error("{}: error: cannot write: {source}", escape_path(path))]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}{}: error: {source}", escape_path(file), source.loc().map(|l| format!(":{}:{}", l.line, l.col)).unwrap_or_default())]
    Compile {
        file: PathBuf,
        #[source]
        source: bnnc::compile::CompileError,
    },
    #[error("error: {0}")]
    Target(#[from] bnnc_kir::target::TargetError),
    /// A run needs more memory than it may use, or allocating it failed.
    #[error("{}: error: {source}", escape_path(file))]
    Memory {
        file: PathBuf,
        #[source]
        source: bnnc_runtime::OutOfMemory,
    },
    #[error("{}: error: the compiled model failed: {source}", escape_path(file))]
    Jit {
        file: PathBuf,
        #[source]
        source: bnnc::jit::JitError,
    },
    #[error("{}: error: {source}", escape_path(file))]
    Export {
        file: PathBuf,
        #[source]
        source: bnnc_train::export::ExportError,
    },
    #[error("{}: error: {source}", escape_path(file))]
    Eval {
        file: PathBuf,
        #[source]
        source: crate::eval::EvalError,
    },
    /// The dataset of `bnnc eval` cannot be read: the dataset is at fault,
    /// not the model.
    #[error("{}: error: cannot read the dataset: {source}", escape_path(dir))]
    Data {
        dir: PathBuf,
        #[source]
        source: bnnc_train::data::DataError,
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
        Command::Check(a) => check::run(a, out),
        Command::Print(a) => print::run(a, out),
        Command::Run(a) => run::run(a, out),
        Command::Graph(a) => graph::run(a, out),
        Command::Init(a) => init::run(a, out),
        Command::Compile(a) => compile::run(a, out),
        Command::Opt(a) => opt::run(a, out),
        Command::Export(a) => export::run(a, out),
        Command::Eval(a) => eval::run(a, out),
        Command::Bench(a) => bench::run(a, out),
        Command::BenchKernels(a) => bench_kernels::run(a, out),
        Command::Train(a) => crate::train::run(a, out),
    }
}
