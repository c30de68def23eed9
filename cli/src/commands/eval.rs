//! `bnnc eval`: a classifier's accuracy and speed on an IDX dataset (the
//! glue around [`crate::eval`]).

use std::io::Write;
use std::path::PathBuf;

use bnnc_ir::Model;
use clap::{Args, ValueEnum};

use super::{BackendKind, CliError, Engine};
use crate::stats::{plural, thousands};

/// The long help of `bnnc eval`.
pub(super) const LONG_ABOUT: &str = "\
Run a classifier over the images of an IDX dataset (MNIST, Fashion-MNIST: \
the files train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and \
t10k-labels-idx1-ubyte in DIR, each optionally .gz) and print its accuracy and the images per \
second of model run time (compilation, data conversion and argmax excluded).

The model must have one f32 input whose non-batch dims hold one image (f32[N, 784], \
f32[N, 28, 28, 1], ...); pixels are fed as p / 255. Its first output is logits [N, K] (the class \
is the argmax along K, ties to the lower class, as the interpreter's argmax) or class indices \
i32[N]. Images are taken in file order (--limit N: the first N, the only ones read from the \
files) in batches of --batch. A batch whose run needs more memory than the system reports \
available (or BNNC_MEMORY_LIMIT allows; see `bnnc help run`) is refused with the amount.

--engine interp (the default) runs the reference interpreter; --engine jit compiles the model \
for this CPU first (with --backend, and -O0 to skip the optimizer).";

/// The examples after the help of `bnnc eval`.
pub(super) const AFTER_HELP: &str = "Examples:
  bnnc eval examples/mnist_mlp.ir --data data/mnist
  bnnc eval examples/mnist_mlp.ir --data data/mnist --engine jit --batch 1000
  bnnc eval examples/mnist_mlp.ir --data data/mnist --split train --limit 5000";

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

/// `bnnc eval`: evaluates the model on the chosen split and prints accuracy
/// and speed.
pub(super) fn run(a: &EvalArgs, out: &mut dyn Write) -> Result<(), CliError> {
    use crate::eval::EvalError;
    use crate::eval::{EvalEngine, EvalOptions};
    use bnnc_train::data::{load_idx_dir_limit, Split};
    let err = |source| match source {
        EvalError::Run(bnnc_runtime::RunError::OutOfMemory(source))
        | EvalError::Jit(bnnc::jit::JitError::OutOfMemory(source)) => CliError::Memory {
            file: a.file.clone(),
            source,
        },
        source => CliError::Eval {
            file: a.file.clone(),
            source,
        },
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
    let limit = a.limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX));
    let data = load_idx_dir_limit(&a.data, split, limit).map_err(|source| CliError::Data {
        dir: a.data.clone(),
        source,
    })?;
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
        limit,
    };
    let r = crate::eval::evaluate(&model, &data, &opts).map_err(err)?;
    let mut say = |s: String| writeln!(out, "{s}").map_err(CliError::Stdout);
    say(format!(
        "{}: {} split of {}, {}, {engine}",
        model.graph.name,
        split,
        bnnc_ir::error::escape_path(&a.data),
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
