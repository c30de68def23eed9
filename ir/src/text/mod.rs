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
