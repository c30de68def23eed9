//! `bnnc graph`: a model's graph in Graphviz DOT form.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::CliError;
use crate::load::load_graph;

/// The long help of `bnnc graph`.
pub(super) const LONG_ABOUT: &str = "\
Parse and verify a model and write its graph in Graphviz DOT: one box per \
value labelled with its name, op and type; inputs, weights and outputs shaded. The weights file \
is not read.";

/// The examples after the help of `bnnc graph`.
pub(super) const AFTER_HELP: &str = "\
Example:\n  bnnc graph examples/repconv_block.ir --dot -o repconv.dot\n  \
dot -Tsvg repconv.dot -o repconv.svg";

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

/// `bnnc graph`: writes the DOT graph to `-o FILE` or standard output.
pub(super) fn run(a: &GraphArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let checked = load_graph(&a.file)?;
    let dot = checked.graph.to_dot(Some(&checked.types));
    match &a.output {
        Some(path) => {
            bnnc_ir::files::write_atomic(path, dot.as_bytes()).map_err(|source| CliError::Write {
                path: path.clone(),
                source,
            })
        }
        None => out.write_all(dot.as_bytes()).map_err(CliError::Stdout),
    }
}
