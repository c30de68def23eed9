//! `bnnc print`: the canonical text of a model (no weights needed).

use std::io::Write;

use super::{CliError, FileArgs};
use crate::load::load_graph;

/// The long help of `bnnc print`.
pub(super) const LONG_ABOUT: &str = "\
Parse and verify a model and print it in canonical form: one op per \
line, attributes in a fixed order, comments dropped. Parsing the output gives the same graph. \
The weights file is not read, so this works before `bnnc init` has written it.";

/// The examples after the help of `bnnc print`.
pub(super) const AFTER_HELP: &str = "Example:\n  bnnc print examples/bireal_cnn.ir";

/// `bnnc print`: prints the canonical text of the model.
pub(super) fn run(a: &FileArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let checked = load_graph(&a.file)?;
    out.write_all(bnnc_ir::text::print(&checked.graph).as_bytes())
        .map_err(CliError::Stdout)
}
