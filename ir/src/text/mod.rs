//! The `model.ir` text format.
//!
//! ```text
//! # A binary dense layer.            comments run from `#` to the end of the line
//! model tiny                         the model's name (symbols carry it)
//! weights "tiny.safetensors"         optional; relative to this file
//!
//! input x: f32[N, 784]               a model input; `N` is the batch
//! w = @fc.weight: f32[10, 784]       a tensor from the weights file
//! k = [0.5, 2]: f32[2]               a small inline constant, row-major
//! xb = sign(x)                       an op: operands first, then key=value
//! wb = sign(w, estimator=ste, clip=1)
//! y = dense(xb, wb)
//! output y                           one or more outputs
//! ```
//!
//! Values are defined before they are used, one per line, so every graph is
//! acyclic by construction. [`print`] writes the canonical form (comments are
//! not kept); `parse(print(g)) == g` for every graph `g`.

mod attr;
mod lex;
pub(crate) mod parse;
pub(crate) mod print;

pub use parse::parse;
pub use print::print;

use crate::error::Diagnostic;
use crate::graph::Loc;

/// The text of a model file's bytes, which must be UTF-8. Invalid UTF-8 is a
/// [`Diagnostic`] at the line and column (in characters, from 1) of the first
/// byte that is not part of a UTF-8 character.
pub fn decode(bytes: &[u8]) -> Result<&str, Diagnostic> {
    std::str::from_utf8(bytes).map_err(|e| {
        let valid = &bytes[..e.valid_up_to()];
        // The prefix is valid UTF-8 by the error's contract.
        let valid = std::str::from_utf8(valid).unwrap_or_default();
        let line_start = valid.rfind('\n').map_or(0, |i| i + 1);
        let line = valid.matches('\n').count() + 1;
        let col = valid[line_start..].chars().count() + 1;
        let bad = e.error_len().unwrap_or(bytes.len() - e.valid_up_to());
        let shown: Vec<String> = bytes[e.valid_up_to()..e.valid_up_to() + bad]
            .iter()
            .map(|b| format!("0x{b:02x}"))
            .collect();
        let what = match (e.error_len(), shown.len()) {
            (Some(_), 1) => "byte {} is not UTF-8",
            (Some(_), _) => "bytes {} are not UTF-8",
            (None, _) => "the file ends inside the character {}",
        }
        .replace("{}", &shown.join(" "));
        Diagnostic::new(
            Loc::new(
                u32::try_from(line).unwrap_or(u32::MAX),
                u32::try_from(col).unwrap_or(u32::MAX),
            ),
            format!("invalid UTF-8: {what}; model files are UTF-8 text"),
        )
    })
}
