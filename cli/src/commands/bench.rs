//! `bnnc bench`: a model timed in the interpreter and as JIT-compiled native
//! code, with both outputs compared.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use bnnc_ir::{Model, Tensor};
use clap::Args;

use super::run::{check_sizes, jit_error, run_error};
use super::{BackendKind, CliError};

/// The long help of `bnnc bench`.
pub(super) const LONG_ABOUT: &str = "\
Run a model on random inputs of the given batch size in the reference \
interpreter and as native code JIT-compiled for this CPU, check that both give the same \
outputs, and print the time per batch, samples per second and the speed ratio. Each engine \
runs once to warm up, then --runs times; the median is reported. A batch whose run needs more \
memory than the system reports available (or BNNC_MEMORY_LIMIT allows; see `bnnc help run`) \
is refused with the amount.";

/// The examples after the help of `bnnc bench`.
pub(super) const AFTER_HELP: &str = "\
Example:\n  bnnc bench examples/mnist_mlp.ir --batch 1000 --runs 5";

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

/// `bnnc bench`: times both engines on the same random inputs, prints the
/// table and fails if their outputs differ.
pub(super) fn run(a: &BenchArgs, out: &mut dyn Write) -> Result<(), CliError> {
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
    let (ti, want) = time(a.runs, &|| {
        bnnc_runtime::run(&model, &inputs).map_err(|e| run_error(&a.file, e))
    })?;
    let (tj, got) = time(a.runs, &|| {
        jit.run(&inputs).map_err(|e| jit_error(&a.file, e))
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

/// Runs `f` once to warm up, then `runs` times: the median seconds and the
/// warm-up's outputs.
fn time(
    runs: u64,
    f: &dyn Fn() -> Result<Vec<Tensor>, CliError>,
) -> Result<(f64, Vec<Tensor>), CliError> {
    let first = f()?;
    let mut ts = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        ts.push(t.elapsed().as_secs_f64());
    }
    ts.sort_by(f64::total_cmp);
    Ok((ts[ts.len() / 2], first))
}
