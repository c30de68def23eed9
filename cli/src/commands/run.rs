//! `bnnc run`: run a model in the reference interpreter (or JIT-compiled) on
//! .npy or random inputs, and summarise or write its outputs.

use std::io::Write;
use std::path::PathBuf;

use bnnc_ir::{Model, Tensor};
use clap::Args;

use super::{BackendKind, CliError, Engine};
use crate::npy::{self, NpyError};
use crate::stats::{plural, thousands};
use crate::summary::summarize;

/// The long help of `bnnc run`.
pub(super) const LONG_ABOUT: &str = "\
Run a model on inputs and print a summary of each output (type, \
dimensions, min/max/mean, the first values, and the argmax of each row of a 2-D output), or \
write the outputs to .npy files with --output.

Inputs come either from .npy files, one --input per model input in the order the model \
declares them, or from --random, which draws each input from its declared type (f32 uniform \
in [-1, 1); b1 random -1/+1; ternary -1/0/+1; uN/iN over their range; i32 in [-128, 127]) at \
batch size --batch, deterministically from --seed.

.npy inputs may be float32, float64 (converted to f32), int8/16/32/64 or uint8/16/32; integer \
arrays fill integer-typed inputs with every value checked (b1 takes -1 and +1), and f32 inputs \
only with values an f32 holds exactly (every |x| <= 2^24; 16777217 is refused, naming the file \
and the element). A file whose data is longer or shorter than its header says is refused. \
Outputs are written as float32 (f32 outputs) or int32 (every integer type, b1 as -1/+1), each \
file whole or not at all.

Before anything is allocated, the memory the run needs (the random inputs; the interpreter's \
values, or the JIT's workspace, inputs and outputs) is checked against the memory the system \
reports available, or the environment variable BNNC_MEMORY_LIMIT when set (bytes, with an \
optional K, M, G or T suffix for powers of 1000, or Ki, Mi, Gi or Ti for powers of 1024): a run \
that needs more is refused with the amount (`batch 150000 needs 22.6 GB of workspace, ...`), as \
is one whose allocation fails.";

/// The examples after the help of `bnnc run`.
pub(super) const AFTER_HELP: &str = "Examples:
  bnnc run examples/mnist_mlp.ir --random --batch 4
  bnnc run examples/mnist_mlp.ir --input x.npy --output logits.npy";

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

/// `bnnc run`: checks the arguments against the model, runs it and reports.
pub(super) fn run(a: &RunArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let model = Model::load(&a.file)?;
    let g = &model.graph;
    if !a.outputs.is_empty() && a.outputs.len() != g.outputs.len() {
        return Err(mismatch(
            a,
            format!(
                "the model has {} but {} --output files were given",
                plural(g.outputs.len(), "output"),
                a.outputs.len()
            ),
        ));
    }
    let inputs = read_inputs(a, &model)?;
    if a.backend.is_some() && a.engine != Engine::Jit {
        return Err(mismatch(
            a,
            "--backend chooses the code generator of --engine jit; add --engine jit".into(),
        ));
    }
    let results = execute(a, &model, &inputs)?;
    report(a, &model, &results, out)
}

/// A [`CliError::Mismatch`] about the model of `a`.
fn mismatch(a: &RunArgs, message: String) -> CliError {
    CliError::Mismatch {
        file: a.file.clone(),
        message,
    }
}

/// The inputs: random ones of `--batch` samples, or the `--input` files, one
/// per model input, checked against the declared types and sizes.
fn read_inputs(a: &RunArgs, model: &Model) -> Result<Vec<Tensor>, CliError> {
    let g = &model.graph;
    let mismatch = |message: String| mismatch(a, message);
    let input_ids = g.inputs();
    if a.source.random {
        let batch = a.batch.unwrap_or(1) as usize;
        check_sizes(model, batch).map_err(mismatch)?;
        return bnnc_runtime::inputs::random_inputs(g, batch, a.seed.unwrap_or(0))
            .map_err(mismatch);
    }
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
    let batch = check_batches(model, &input_ids, &tensors).map_err(mismatch)?;
    check_sizes(model, batch).map_err(mismatch)?;
    Ok(tensors)
}

/// The outputs, from the interpreter or from the model JIT-compiled by
/// `--backend` at `-O`.
fn execute(a: &RunArgs, model: &Model, inputs: &[Tensor]) -> Result<Vec<Tensor>, CliError> {
    match a.engine {
        Engine::Interp => bnnc_runtime::run(model, inputs).map_err(|e| run_error(&a.file, e)),
        Engine::Jit => {
            let backend = a.backend.unwrap_or_default().into();
            let compile_err = |source| CliError::Compile {
                file: a.file.clone(),
                source,
            };
            let opts = bnnc::compile::CompileOptions::host(backend)
                .map_err(compile_err)?
                .opt_level(a.opt_level);
            let jit = bnnc::jit::JitModel::compile_with(model, &opts).map_err(compile_err)?;
            jit.run(inputs).map_err(|e| jit_error(&a.file, e))
        }
    }
}

/// The error of the interpreter on model `file`: [`CliError::Memory`] when
/// it ran out of memory, else [`CliError::Run`].
pub(super) fn run_error(file: &std::path::Path, e: bnnc_runtime::RunError) -> CliError {
    match e {
        bnnc_runtime::RunError::OutOfMemory(source) => CliError::Memory {
            file: file.to_path_buf(),
            source,
        },
        source => CliError::Run {
            file: file.to_path_buf(),
            source,
        },
    }
}

/// The error of the JIT-compiled model `file`: [`CliError::Memory`] when it
/// ran out of memory, else [`CliError::Jit`].
pub(super) fn jit_error(file: &std::path::Path, e: bnnc::jit::JitError) -> CliError {
    match e {
        bnnc::jit::JitError::OutOfMemory(source) => CliError::Memory {
            file: file.to_path_buf(),
            source,
        },
        source => CliError::Jit {
            file: file.to_path_buf(),
            source,
        },
    }
}

/// One summary line per output, or each output written to its `--output`
/// file with one line saying so.
fn report(
    a: &RunArgs,
    model: &Model,
    results: &[Tensor],
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let g = &model.graph;
    let names = g.outputs.iter().map(|&v| g.node(v).name.as_str());
    if a.outputs.is_empty() {
        for (name, t) in names.zip(results) {
            writeln!(out, "{}", summarize(name, t)).map_err(CliError::Stdout)?;
        }
    } else {
        for ((name, t), path) in names.zip(results).zip(&a.outputs) {
            npy::write(path, t)?;
            let dims: Vec<String> = t.dims.iter().map(|d| d.to_string()).collect();
            writeln!(
                out,
                "wrote {}: {name} {}[{}]",
                bnnc_ir::error::escape_path(path),
                t.elem,
                dims.join(", ")
            )
            .map_err(CliError::Stdout)?;
        }
    }
    Ok(())
}

/// The largest value bnnc holds (an input or output tensor, a value of the
/// interpreter), in elements (2^31: 8 GiB of f32).
const MAX_VALUE_ELEMENTS: usize = 1 << 31;

/// Refuses a batch size at which some value of the model would exceed
/// [`MAX_VALUE_ELEMENTS`], before anything is allocated.
pub(super) fn check_sizes(model: &Model, batch: usize) -> Result<(), String> {
    for v in model.graph.ids() {
        let ty = model.ty(v);
        if ty.numel(batch) > MAX_VALUE_ELEMENTS {
            return Err(format!(
                "at batch size {batch}, value `{}` ({ty}) would have {} elements; \
                 bnnc holds at most 2^31 elements per value",
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
