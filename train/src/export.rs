//! `bnnc export`: a trained model turned into an inference model with packed
//! binary weights.
//!
//! A training model keeps latent float weights and binarizes them in the graph:
//! `w = @key: f32[..]` read by `wb = sign(w, estimator=..)`. Inference needs only
//! the signs. [`export`] rewrites every such weight into `w = @key: b1[..]`
//! holding `sign(w)` (computed by the reference interpreter's own `sign`, so
//! 0, -0.0 and NaN give +1), drops the `sign` nodes that read it (their users
//! read `w` instead), and leaves everything else as it was: other weights
//! (batch-norm running statistics included) with their values and types,
//! activation `sign`s with their training attributes, every other node, and
//! the names of the model, its values, inputs and outputs. Weights are written
//! with [`Weights::save`], so the `b1` tensors are packed 8 per byte (see
//! `bnnc_ir::weights`): a 32-bit latent weight shrinks 32 times.
//!
//! A weight is binarized when every node that reads its key is a `weight` op
//! of a non-`b1` type whose every user is a `sign`, and it is not itself a
//! model output. A `sign` over such a weight that is a model output stays (as
//! `sign` of the `b1` weight, an identity), so the output keeps its name.
//! Tensors of the weights file the graph does not read are not copied.
//!
//! The exported model computes bit for bit what the original computes in the
//! interpreter: the `sign` it replaces is evaluated once, on the same tensor,
//! by the same function.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use bnnc_ir::{ElemType, Graph, Model, Op, Tensor, TensorType, ValueId, Weights};

/// Why a model could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The exported graph does not verify or load: a bug in [`export`].
    #[error("internal error: the exported model does not load: {0}")]
    Invalid(#[source] bnnc_ir::Error),
    /// The interpreter's `sign` refused a weight (a malformed model).
    #[error("internal error: sign of weight `@{key}` failed: {message}")]
    Sign { key: String, message: String },
    /// The output would overwrite the model being exported or its weights.
    #[error("{} is the model being exported (or its weights file); choose another output", path.display())]
    Overwrite { path: PathBuf },
    /// The output file name cannot name a weights file (no file name, not UTF-8).
    #[error("{}: the output needs a file name in UTF-8, such as out/model.ir", path.display())]
    BadOutput { path: PathBuf },
    /// Loading the source model, or writing the model text or its weights, failed.
    #[error(transparent)]
    Model(#[from] bnnc_ir::Error),
}

/// One weight [`export`] binarized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binarized {
    pub key: String,
    /// Its element type before export (`f32` for latent weights).
    pub from: ElemType,
    pub elements: usize,
}

/// An exported model: the verified model (its path is where it was meant to
/// be written), the weights its graph reads, and what changed.
#[derive(Clone, Debug)]
pub struct Exported {
    pub model: Model,
    pub weights: Weights,
    /// The weights turned into `b1`, in the order the graph reads them.
    pub binarized: Vec<Binarized>,
    /// `sign` nodes removed (their users read the `b1` weight).
    pub signs_removed: usize,
    /// Keys kept unchanged, in the order the graph reads them.
    pub kept: Vec<String>,
}

/// Exports `model` (loaded with its weights) to an inference model whose graph
/// names `weights_file` (relative to the model file) and whose diagnostics name
/// `path`. Nothing is written; see [`write`].
pub fn export(model: &Model, path: &Path, weights_file: &str) -> Result<Exported, ExportError> {
    let g = &model.graph;
    let users = g.users();
    let outputs: BTreeSet<ValueId> = g.outputs.iter().copied().collect();
    let is_sign = |v: &ValueId| matches!(g.node(*v).op, Op::Sign { .. });

    // A key is binarized when every node reading it qualifies.
    let mut readers: BTreeMap<&str, Vec<ValueId>> = BTreeMap::new();
    for v in g.ids() {
        if let Op::Weight { key, .. } = &g.node(v).op {
            readers.entry(key.as_str()).or_default().push(v);
        }
    }
    let binarize: BTreeSet<&str> = readers
        .iter()
        .filter(|(_, vs)| {
            vs.iter().all(|&v| {
                let Op::Weight { ty, .. } = &g.node(v).op else {
                    return false;
                };
                ty.elem != ElemType::B1
                    && !outputs.contains(&v)
                    && !users[v.index()].is_empty()
                    && users[v.index()].iter().all(is_sign)
            })
        })
        .map(|(k, _)| *k)
        .collect();

    let mut out = Graph::new(g.name.clone());
    let mut map: Vec<Option<ValueId>> = vec![None; g.nodes.len()];
    let mut weights = Weights::new();
    let mut binarized = Vec::new();
    let mut kept = Vec::new();
    let mut signs_removed = 0;
    for v in g.ids() {
        let n = g.node(v);
        let remap = |i: &ValueId| map[i.index()].expect("operands precede their users");
        let new = match &n.op {
            Op::Weight { key, ty } if binarize.contains(key.as_str()) => {
                let latent = constant(model, v)?;
                let signs = bnnc_runtime::ops::eval(&Op::Sign { estimator: None }, &[latent])
                    .map_err(|e| ExportError::Sign {
                        key: key.clone(),
                        message: e.to_string(),
                    })?;
                if !weights.tensors.contains_key(key) {
                    binarized.push(Binarized {
                        key: key.clone(),
                        from: ty.elem,
                        elements: signs.numel(),
                    });
                    weights.insert(key.clone(), signs);
                }
                let ty = TensorType {
                    elem: ElemType::B1,
                    shape: ty.shape.clone(),
                };
                out.add(
                    n.name.clone(),
                    Op::Weight {
                        key: key.clone(),
                        ty,
                    },
                    vec![],
                )
            }
            Op::Weight { key, .. } => {
                if !weights.tensors.contains_key(key) {
                    kept.push(key.clone());
                    weights.insert(key.clone(), constant(model, v)?.clone());
                }
                out.add(n.name.clone(), n.op.clone(), vec![])
            }
            Op::Sign { .. }
                if !outputs.contains(&v)
                    && matches!(&g.node(n.inputs[0]).op,
                        Op::Weight { key, .. } if binarize.contains(key.as_str())) =>
            {
                signs_removed += 1;
                remap(&n.inputs[0])
            }
            _ => out.add(
                n.name.clone(),
                n.op.clone(),
                n.inputs.iter().map(remap).collect(),
            ),
        };
        map[v.index()] = Some(new);
    }
    for o in &g.outputs {
        out.output(map[o.index()].expect("every value is mapped"));
    }
    if !weights.tensors.is_empty() {
        out.weights = Some(weights_file.to_string());
    }
    let model = Model::from_graph(out, Some(&weights), path).map_err(ExportError::Invalid)?;
    Ok(Exported {
        model,
        weights,
        binarized,
        signs_removed,
        kept,
    })
}

/// The resolved tensor of a `weight` node of a loaded model.
fn constant(model: &Model, v: ValueId) -> Result<&Tensor, ExportError> {
    model.constant(v).ok_or_else(|| {
        ExportError::Invalid(bnnc_ir::Error::Model {
            file: model.path.clone(),
            diag: bnnc_ir::Diagnostic::new(
                model.graph.node(v).locs.op,
                format!("`{}` has no resolved tensor", model.graph.node(v).name),
            ),
        })
    })
}

/// The files [`export_to`] wrote and their sizes.
#[derive(Clone, Debug)]
pub struct Written {
    pub exported: Exported,
    pub model_path: PathBuf,
    pub weights_path: Option<PathBuf>,
    /// Bytes of the original weights file (if the model names one).
    pub original_weights_bytes: Option<u64>,
    /// Bytes of the exported weights file.
    pub weights_bytes: Option<u64>,
}

/// The model text [`export_to`] writes: a comment naming the source, then the
/// canonical text.
pub fn text(exported: &Exported, source: &Path) -> String {
    let source = source.file_name().map_or_else(
        || source.display().to_string(),
        |f| f.to_string_lossy().into_owned(),
    );
    format!(
        "# Inference model written by `bnnc export` from {source}: {} latent weights stored \
         as packed b1.\n{}",
        exported.binarized.len(),
        bnnc_ir::text::print(&exported.model.graph)
    )
}

/// Exports the model at `source` to `out` (an `.ir` path) and its weights to
/// `out` with the extension `.safetensors`, which the written model names.
/// Refuses to overwrite the source model or its weights file. Each file is
/// written atomically ([`bnnc_ir::files::write_atomic`]), the weights first.
pub fn export_to(source: &Path, out: &Path) -> Result<Written, ExportError> {
    let model = Model::load(source)?;
    let weights_path = out.with_extension("safetensors");
    let weights_file = weights_path
        .file_name()
        .and_then(|f| f.to_str())
        .filter(|_| out.file_name().is_some())
        .ok_or_else(|| ExportError::BadOutput {
            path: out.to_path_buf(),
        })?
        .to_string();
    let source_weights = Model::weights_path(&model.graph, source);
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    for theirs in std::iter::once(source).chain(source_weights.as_deref()) {
        for mine in [out, weights_path.as_path()] {
            if same(theirs, mine) {
                return Err(ExportError::Overwrite {
                    path: mine.to_path_buf(),
                });
            }
        }
    }
    let exported = export(&model, out, &weights_file)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ExportError::Model(bnnc_ir::Error::Write { path, source })
    };
    // The weights first, so the model text never names a file not written.
    let written_weights = match &exported.model.graph.weights {
        Some(_) => {
            exported.weights.save(&weights_path)?;
            Some(weights_path)
        }
        None => None,
    };
    bnnc_ir::files::write_atomic(out, text(&exported, source).as_bytes()).map_err(io(out))?;
    let size = |p: &Path| std::fs::metadata(p).ok().map(|m| m.len());
    Ok(Written {
        original_weights_bytes: source_weights.as_deref().and_then(size),
        weights_bytes: written_weights.as_deref().and_then(size),
        weights_path: written_weights,
        model_path: out.to_path_buf(),
        exported,
    })
}
