//! The verifier: structure, attributes, type and shape inference.
use crate::{Diagnostic, Graph, Tensor, TensorType, Weights};
pub fn verify(_g: &Graph) -> Result<Vec<TensorType>, Diagnostic> {
    todo!("in progress")
}
pub fn resolve_constants(
    _g: &Graph,
    _t: &[TensorType],
    _w: Option<&Weights>,
) -> Result<Vec<Option<Tensor>>, Diagnostic> {
    todo!("in progress")
}
