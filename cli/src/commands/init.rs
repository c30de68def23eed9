//! `bnnc init`: initial weights for every @key of a model, by each weight's
//! role.

use std::io::Write;
use std::path::PathBuf;

use bnnc_ir::error::escape_path;
use bnnc_ir::Tensor;
use bnnc_train::init::{init_weights, InitOptions};
use clap::Args;

use super::CliError;
use crate::load::load_graph;
use crate::output::model_weights_for_writing;
use crate::stats::plural;

/// The long help of `bnnc init`.
pub(super) const LONG_ABOUT: &str = "\
Write a safetensors file with a value for every @key a model names, by \
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
the model text is read; by default the file written is the weights file the model names, which \
must then lie inside the model's folder: a `weights` path that is absolute or leaves the folder \
(by `..` or a symbolic link) is refused, and -o FILE writes there anyway. The file is written \
whole or not at all.";

/// The examples after the help of `bnnc init`.
pub(super) const AFTER_HELP: &str = "Examples:
  bnnc init examples/mnist_mlp.ir --seed 1
  bnnc init examples/mnist_mlp.ir --seed 7 --random-stats -o /tmp/mnist_stats.safetensors";

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
    /// The safetensors file to write (default: the weights file the model
    /// names, if inside the model's folder).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `bnnc init`: writes initial weights to `-o FILE` or the weights file the
/// model names.
pub(super) fn run(a: &InitArgs, out: &mut dyn Write) -> Result<(), CliError> {
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
    let named = match &a.output {
        Some(_) => None,
        None => model_weights_for_writing(&a.file, &checked.graph, "-o")?,
    };
    let path = match (&a.output, named) {
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
        escape_path(&path),
        plural(weights.tensors.len(), "tensor"),
        plural(params, "param"),
        a.seed,
        if a.random_stats { ", random stats" } else { "" }
    )
    .map_err(CliError::Stdout)
}
