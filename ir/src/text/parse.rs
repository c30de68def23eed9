use crate::{Diagnostic, Graph};
pub fn parse(_src: &str) -> Result<Graph, Diagnostic> {
    todo!("in progress")
}
