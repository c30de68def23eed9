//! bnnc-train: training on top of the reference interpreter. The same
//! `model.ir` that the compiler builds is trained here, so a trained model
//! means exactly what its compiled code computes.
//!
//! - [`autodiff`]: the model as a differentiable program (forward in train or
//!   eval mode, backward into every parameter);
//! - [`kernels`]: float conv/dense forward and backward (fast paths + oracles);
//! - [`estimators`]: the gradient estimators of `sign` (STE, ApproxSign, ...);
//! - [`loss`]: losses and regularisers;
//! - [`optim`]: optimisers and learning-rate schedules;
//! - [`data`]: IDX datasets (MNIST, Fashion-MNIST);
//! - [`trainer`]: the epoch loop that ties them together;
//! - [`init`]: weight initialisation by role, deterministic from a seed (`bnnc init`);
//! - [`export`]: a trained model with its latent weights replaced by packed `b1` signs.

pub mod autodiff;
pub mod data;
pub mod estimators;
pub mod export;
pub mod init;
pub mod kernels;
pub mod loss;
pub mod optim;
pub mod trainer;
