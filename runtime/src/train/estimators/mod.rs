//! Gradient estimators of `sign`.
//!
//! The forward pass of every estimator is the exact `sign` of the IR (-1 iff
//! `x < 0`; 0, -0.0 and NaN give +1), so a trained model computes what its compiled
//! code computes. Only the backward pass differs: each estimator replaces sign's
//! zero-almost-everywhere derivative by the derivative of a surrogate.
//!
//! A [`SignEstimator`] is built per `sign` op from the op's `estimator=` attribute
//! (see `bnnc_ir::op::ESTIMATORS` for names and parameters).

use bnnc_ir::Estimator;

/// Why an estimator could not be built from a `sign` op's attributes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EstimatorError {
    #[error("unknown estimator `{0}`")]
    Unknown(String),
    #[error("estimator `{name}`: parameter `{param}` = {value}: {why}")]
    BadParam {
        name: String,
        param: String,
        value: f64,
        why: String,
    },
}

/// One learnable tensor of an estimator (for the optimizer): its values and the
/// gradient accumulated by [`SignEstimator::backward`].
pub struct ParamRef<'a> {
    pub name: &'static str,
    pub value: &'a mut [f32],
    pub grad: &'a mut [f32],
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    /// Straight-through with clipping (Hubara et al., 2016): d/dx = 1 where |x| <= clip.
    Ste { clip: f32 },
    /// Identity straight-through: d/dx = 1.
    Identity,
}

/// The backward rule of one `sign` op.
#[derive(Clone, Debug, PartialEq)]
pub struct SignEstimator {
    kind: Kind,
}

/// The value of parameter `key`, or `default` when absent.
fn param(e: &Estimator, key: &str, default: f64) -> f64 {
    e.params
        .iter()
        .find(|(k, _)| k == key)
        .map_or(default, |&(_, v)| v)
}

impl SignEstimator {
    /// The estimator named by a `sign` op's attributes; no attribute means STE
    /// with clip 1. `channels` is the size of the input's last axis (per-channel
    /// learnable parameters use it); `seed` initialises learnable parameters.
    pub fn new(
        attr: Option<&Estimator>,
        channels: usize,
        seed: u64,
    ) -> Result<SignEstimator, EstimatorError> {
        let _ = (channels, seed);
        let Some(e) = attr else {
            return Ok(SignEstimator {
                kind: Kind::Ste { clip: 1.0 },
            });
        };
        let kind = match e.name.as_str() {
            "ste" => {
                let clip = param(e, "clip", 1.0);
                if clip.is_nan() || clip <= 0.0 {
                    return Err(EstimatorError::BadParam {
                        name: e.name.clone(),
                        param: "clip".into(),
                        value: clip,
                        why: "must be positive".into(),
                    });
                }
                Kind::Ste { clip: clip as f32 }
            }
            "identity" => Kind::Identity,
            other => return Err(EstimatorError::Unknown(other.to_string())),
        };
        Ok(SignEstimator { kind })
    }

    /// The forward pass: the IR's exact sign, as -1.0/+1.0.
    pub fn forward(x: f32) -> f32 {
        if x < 0.0 {
            -1.0
        } else {
            1.0
        }
    }

    /// Backward: writes dL/dx into `grad_in` (overwriting) from the sign's input
    /// `x` and dL/dy `grad_out` (same length, channels on the last axis), and
    /// accumulates the gradients of the estimator's own parameters. `progress` is
    /// the fraction of training done, in [0, 1], for scheduled estimators.
    pub fn backward(&mut self, x: &[f32], grad_out: &[f32], grad_in: &mut [f32], progress: f32) {
        let _ = progress;
        match self.kind {
            Kind::Ste { clip } => {
                for ((gi, &xv), &go) in grad_in.iter_mut().zip(x).zip(grad_out) {
                    *gi = if xv.abs() <= clip { go } else { 0.0 };
                }
            }
            Kind::Identity => grad_in.copy_from_slice(grad_out),
        }
    }

    /// The estimator's learnable parameters (empty for fixed surrogates).
    pub fn params(&mut self) -> Vec<ParamRef<'_>> {
        Vec::new()
    }

    /// Clears the accumulated gradients of the estimator's parameters.
    pub fn zero_grad(&mut self) {}
}
