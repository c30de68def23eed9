//! `bnnc opt`: a model rewritten by the e-graph optimizer, printed or written.

use std::io::Write;
use std::path::{Path, PathBuf};

use bnnc_ir::error::escape_path;
use bnnc_ir::Model;
use clap::Args;

use super::CliError;

/// The long help of `bnnc opt`.
pub(super) const LONG_ABOUT: &str = "\
Rewrite a model by equality saturation (egg) and print the optimized graph \
in the text format, a valid model for every other command. The rules are exact: the \
optimized model computes bit for bit what the original computes. Batch-norm, per-channel \
scales and offsets, PReLU/RPReLU, clips and similar chains between a binary layer's integer \
accumulator and the next sign become per-channel integer thresholds; sign(@w) becomes packed \
b1 weights; everything computed from constants only is computed once. `bnnc compile` and \
`bnnc run --engine jit` run the same optimizer unless given -O0.

Tensors the optimizer computes get keys `opt.<value>`; with -o FILE the model is written to \
FILE and its weights beside it, as `<stem>.opt.safetensors` for a model whose weights file is \
`<stem>.safetensors` (the folders of the model's weights path are dropped, so nothing is written \
outside FILE's folder), and the written model names them, so the result loads again. The \
weights are written first, each file whole or not at all. --explain adds, as comments at the \
top, which rules fired and how often, the e-graph size and the cost before and after.";

/// The examples after the help of `bnnc opt`.
pub(super) const AFTER_HELP: &str = "Examples:\n  bnnc opt examples/mnist_mlp.ir --explain\n  bnnc opt examples/mnist_mlp.ir -o /tmp/mnist_opt.ir && bnnc check /tmp/mnist_opt.ir";

#[derive(Debug, Args)]
pub struct OptArgs {
    /// The model file (.ir); its weights file must exist.
    pub file: PathBuf,
    /// Print which rules fired, the e-graph size and the cost, as comments.
    #[arg(long)]
    pub explain: bool,
    /// Write the optimized model here (and its weights beside it, in the same
    /// folder) instead of printing it.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `bnnc opt`: prints the optimized model, or writes it with its weights.
pub(super) fn run(a: &OptArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let model = Model::load(&a.file)?;
    let mut optimized = bnnc::opt::optimize(&model).map_err(|e| CliError::Compile {
        file: a.file.clone(),
        source: e.into(),
    })?;
    if a.output.is_some() {
        // Beside the written model, whatever folders the source's weights path has.
        let g = &mut optimized.model.graph;
        g.weights = g.weights.as_deref().map(|w| {
            Path::new(w).file_name().map_or_else(
                || format!("{}.opt.safetensors", g.name),
                |f| f.to_string_lossy().into_owned(),
            )
        });
    }
    let mut text = String::new();
    if a.explain {
        for line in optimized.report.to_string().lines() {
            text.push_str(&format!("# {line}\n"));
        }
    }
    text.push_str(&optimized.text());
    match &a.output {
        Some(path) => {
            let weights = Model::weights_path(&optimized.model.graph, path);
            if let Some(wp) = &weights {
                if wp == path {
                    return Err(CliError::Mismatch {
                        file: a.file.clone(),
                        message: format!(
                            "-o {} would hold both the optimized model and its weights; name \
                             the model FILE.ir",
                            escape_path(path)
                        ),
                    });
                }
                optimized.weights.save(wp)?;
            }
            bnnc_ir::files::write_atomic(path, text.as_bytes()).map_err(|source| {
                CliError::Write {
                    path: path.clone(),
                    source,
                }
            })?;
            match &weights {
                Some(wp) => writeln!(out, "wrote {} and {}", escape_path(path), escape_path(wp)),
                None => writeln!(out, "wrote {}", escape_path(path)),
            }
            .map_err(CliError::Stdout)
        }
        None => out.write_all(text.as_bytes()).map_err(CliError::Stdout),
    }
}
