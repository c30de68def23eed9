//! `bnnc check`: load a model (parse, verify, weights) and print a one-line
//! summary.

use std::io::Write;

use bnnc_ir::Model;

use super::{CliError, FileArgs};
use crate::stats::model_stats;

/// The long help of `bnnc check`.
pub(super) const LONG_ABOUT: &str = "\
Load a model: parse and verify its text, read its weights file and check \
every @key against the type the model declares. On success print one line: ops, inputs, \
outputs, parameters, and the bits the weights take once compiled (a weight whose every use is \
sign(...) counts 1 bit per element, since the compiler folds it into packed b1 constants; \
others count their element width). On failure print `file:line:col: error: ...` and exit 1.";

/// The examples after the help of `bnnc check`.
pub(super) const AFTER_HELP: &str = "Example:\n  bnnc check examples/mnist_mlp.ir";

/// `bnnc check`: loads the model with its weights and prints its summary.
pub(super) fn run(a: &FileArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let model = Model::load(&a.file)?;
    writeln!(out, "{}", model_stats(&model.graph)).map_err(CliError::Stdout)
}
