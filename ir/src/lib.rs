//! bnnc-ir: the graph IR of bnnc.
//!
//! - [`types`]: element types (`f32`, `i32`, `b1`, `ternary`, `uN`, `iN`) and shapes;
//! - [`op`]: the closed set of ops, each with its exact contract;
//! - [`graph`]: the graph of named values;
//! - [`text`]: the `model.ir` text format (parse, print);
//! - [`verify`]: the verifier with type and shape inference;
//! - [`weights`]: safetensors weights I/O;
//! - [`files`]: writing a file atomically (temporary file, then rename);
//! - [`model`]: a model loaded from disk (text + weights, checked together).

pub mod error;
pub mod files;
pub mod graph;
pub mod model;
pub mod op;
pub mod tensor;
pub mod text;
pub mod types;
pub mod verify;
pub mod weights;

pub use error::{Diagnostic, Error};
pub use graph::{Graph, Loc, Node, ValueId};
pub use model::Model;
pub use op::{Conv2dAttrs, Estimator, Op, PadValue, PoolAttrs};
pub use tensor::{Tensor, TensorData};
pub use types::{Dim, ElemType, Shape, TensorType};
pub use weights::Weights;
