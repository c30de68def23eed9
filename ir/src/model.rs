//! A model loaded from disk: parsed, verified, and its weights checked against
//! the types the text declares.

use std::path::{Path, PathBuf};

use crate::error::{escape_path, Diagnostic, Error};
use crate::graph::{Graph, Loc, ValueId};
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
    /// A weights file that cannot be read or is malformed is an
    /// [`Error::Model`] at the `weights` line, carrying the file's own error.
    pub fn load(path: &Path) -> Result<Model, Error> {
        let src = Model::read_text(path)?;
        let graph = crate::text::parse(&src).map_err(|diag| Error::Model {
            file: path.to_path_buf(),
            diag,
        })?;
        let weights = match Model::weights_path(&graph, path) {
            Some(wp) => Some(Model::load_weights(&graph, path, &wp)?),
            None => None,
        };
        Model::from_graph_owned(graph, weights, path)
    }

    /// Reads the text of the model file `path`. Its bytes must be UTF-8:
    /// anything else is an [`Error::Model`] at the line and column of the
    /// first invalid byte ([`crate::text::decode`]).
    pub fn read_text(path: &Path) -> Result<String, Error> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        String::from_utf8(bytes).map_err(|e| Error::Model {
            file: path.to_path_buf(),
            diag: crate::text::decode(e.as_bytes())
                .err()
                .unwrap_or_else(|| Diagnostic::new(Loc::NONE, "invalid UTF-8")),
        })
    }

    /// Loads `weights_path`, the weights file `graph` (parsed from
    /// `model_path`) names; an error is an [`Error::Model`] at the `weights`
    /// line that carries the weights file's own error.
    pub fn load_weights(
        graph: &Graph,
        model_path: &Path,
        weights_path: &Path,
    ) -> Result<Weights, Error> {
        Weights::load(weights_path).map_err(|e| {
            let shown = escape_path(weights_path);
            let message = match e {
                Error::Io { source, .. } => {
                    format!("cannot read the weights file {shown}: {source}")
                }
                Error::Weights { message, .. } => {
                    format!("the weights file {shown} is malformed: {message}")
                }
                Error::Model { diag, .. } => {
                    format!("the weights file {shown}: {}", diag.message)
                }
                Error::Write { source, .. } => {
                    format!("the weights file {shown}: {source}")
                }
            };
            Error::Model {
                file: model_path.to_path_buf(),
                diag: Diagnostic::new(graph.weights_loc, message),
            }
        })
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

    /// Like [`Model::from_graph`], but moves the tensors out of `weights`
    /// instead of copying them, so they are held once.
    pub fn from_graph_owned(
        graph: Graph,
        weights: Option<Weights>,
        path: &Path,
    ) -> Result<Model, Error> {
        let wrap = |diag: Diagnostic| Error::Model {
            file: path.to_path_buf(),
            diag,
        };
        let types = crate::verify::verify(&graph).map_err(wrap)?;
        let consts =
            crate::verify::resolve_constants_owned(&graph, &types, weights).map_err(wrap)?;
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
