//! A model loaded from disk: parsed, verified, and its weights checked against
//! the types the text declares.

use std::path::{Path, PathBuf};

use crate::error::{Diagnostic, Error};
use crate::graph::{Graph, ValueId};
use crate::tensor::Tensor;
use crate::types::TensorType;
use crate::weights::Weights;

/// A verified graph with every value's type and every constant resolved.
#[derive(Clone, Debug)]
pub struct Model {
    /// The model file (or a label such as `<stdin>`), used in diagnostics.
    pub path: PathBuf,
    pub graph: Graph,
    /// The type of every value, indexed by [`ValueId`].
    pub types: Vec<TensorType>,
    /// For `weight` and `const` nodes, the tensor (typed as declared); `None`
    /// for every other node.
    pub consts: Vec<Option<Tensor>>,
}

impl Model {
    /// Reads, parses and verifies `path`, then loads the weights file the model
    /// names (relative to the model's folder) and checks every `@key` against it.
    pub fn load(path: &Path) -> Result<Model, Error> {
        let src = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let graph = crate::text::parse(&src).map_err(|diag| Error::Model {
            file: path.to_path_buf(),
            diag,
        })?;
        let weights = match Model::weights_path(&graph, path) {
            Some(wp) => Some(Weights::load(&wp)?),
            None => None,
        };
        Model::from_graph(graph, weights.as_ref(), path)
    }

    /// Parses and verifies text; errors carry `file` for display.
    pub fn parse_checked(src: &str, file: &Path) -> Result<Graph, Error> {
        let graph = crate::text::parse(src).map_err(|diag| Error::Model {
            file: file.to_path_buf(),
            diag,
        })?;
        crate::verify::verify(&graph).map_err(|diag| Error::Model {
            file: file.to_path_buf(),
            diag,
        })?;
        Ok(graph)
    }

    /// Where the weights file of `graph` (parsed from `model_path`) lives.
    pub fn weights_path(graph: &Graph, model_path: &Path) -> Option<PathBuf> {
        graph.weights.as_ref().map(|w| {
            let dir = model_path.parent().unwrap_or(Path::new(""));
            dir.join(w)
        })
    }

    /// Verifies `graph` and resolves its constants from `weights` (which must be
    /// given when the graph has any `weight` op).
    pub fn from_graph(
        graph: Graph,
        weights: Option<&Weights>,
        path: &Path,
    ) -> Result<Model, Error> {
        let wrap = |diag: Diagnostic| Error::Model {
            file: path.to_path_buf(),
            diag,
        };
        let types = crate::verify::verify(&graph).map_err(wrap)?;
        let consts = crate::verify::resolve_constants(&graph, &types, weights).map_err(wrap)?;
        Ok(Model {
            path: path.to_path_buf(),
            graph,
            types,
            consts,
        })
    }

    /// The constant tensor of a `weight` or `const` node.
    pub fn constant(&self, v: ValueId) -> Option<&Tensor> {
        self.consts.get(v.index()).and_then(|c| c.as_ref())
    }

    /// Type of value `v`.
    pub fn ty(&self, v: ValueId) -> &TensorType {
        &self.types[v.index()]
    }
}
