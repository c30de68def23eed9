//! Training in the reference interpreter: the same `model.ir` that the compiler
//! builds is trained here, so a trained model means exactly what its compiled
//! code computes.
//!
//! - [`kernels`]: float conv/dense forward and backward (fast paths + oracles);
//! - [`estimators`]: the gradient estimators of `sign` (STE, ApproxSign, ...).

pub mod estimators;
pub mod kernels;
