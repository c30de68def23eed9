//! Reading a model's text without its weights.
//!
//! `bnnc print`, `bnnc graph` and `bnnc init` need only the graph and its types,
//! so they work before a weights file exists (init is what writes it).

use std::path::Path;

use bnnc_ir::{Error, Graph, TensorType};

/// A parsed and verified graph with the type of every value (indexed by
/// [`bnnc_ir::ValueId`]).
#[derive(Clone, Debug)]
pub struct Checked {
    pub graph: Graph,
    pub types: Vec<TensorType>,
}

/// Reads `path`, parses and verifies it. Errors render as `file:line:col: error: ...`.
pub fn load_graph(path: &Path) -> Result<Checked, Error> {
    let src = bnnc_ir::Model::read_text(path)?;
    let wrap = |diag| Error::Model {
        file: path.to_path_buf(),
        diag,
    };
    let graph = bnnc_ir::text::parse(&src).map_err(wrap)?;
    let types = bnnc_ir::verify::verify(&graph).map_err(wrap)?;
    Ok(Checked { graph, types })
}
