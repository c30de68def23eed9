//! Gradient estimators of `sign`.
//!
//! The forward pass of every estimator is the exact `sign` of the IR (-1 iff
//! `x < 0`; 0, -0.0 and NaN give +1), so a trained model computes what its compiled
//! code computes. Only the backward pass differs: each estimator replaces sign's
//! zero-almost-everywhere derivative by the derivative of a surrogate.
//!
//! A [`SignEstimator`] is built per `sign` op from the op's `estimator=` attribute
//! (see `bnnc_ir::op::ESTIMATORS` for names and parameters). The estimators, their
//! parameters and defaults:
//!
//! | name | parameters: default, valid range | surrogate | functions |
//! |---|---|---|---|
//! | `ste` | `clip`: 1, > 0 (inf allowed) | `clamp(x, -clip, clip)` | [`ste_value`], [`ste_derivative`] |
//! | `identity` | none | `x` | |
//! | `approx_sign` | none | Bi-Real Net's piecewise quadratic | [`approx_sign_value`], [`approx_sign_derivative`] |
//! | `swish_sign` | `beta`: 5, > 0 finite | BNN+'s SwishSign | [`swish_sign_value`], [`swish_sign_derivative`] |
//! | `dte` | `t_min`: 0.1, `t_max`: 10, `k_min`: 1, `k_max`: 10; all > 0 finite, `t_min <= t_max`, `k_min <= k_max` | `k tanh(t x)`, k and t scheduled by progress | [`DteSchedule`], [`dte_value`], [`dte_derivative`] |
//! | `fda` | `terms`: 10, integer in [1, 1000]; `omega`: 0.1, > 0 finite; `noise`: 0 (off), integer hidden width in [0, 4096] | truncated Fourier series of the square wave (+ learned residual) | [`fda_value`], [`fda_derivative`], [`FdaNoise`] |
//! | `learned` | `hidden`: 0 (linear), integer in [0, 4096] | a learned scalar function `g(x; θ)` | [`LearnedBinarizer`] |
//!
//! Every parameter is validated when the estimator is built; a parameter the
//! estimator does not take, or a value outside its range, is an
//! [`EstimatorError::BadParam`]. Learnable parameters (`fda` with `noise > 0`,
//! `learned`) are initialised deterministically from the `seed` given to
//! [`SignEstimator::new`] and exposed through [`SignEstimator::params`].
//!
//! Non-finite inputs: where `x` is NaN every estimator's derivative is 0 except
//! `identity`'s (sign's forward sends NaN to +1, and there is no neighbourhood to
//! differentiate in). At
//! `x = ±inf` each fixed surrogate gives the limit of its derivative (0 for all of
//! them except `identity`, and `ste` with an infinite clip); the learned functions
//! (`learned`, the `fda` noise module) pass no gradient at a non-finite `x` and
//! take none from it.

mod fda;
mod hidden;
mod learned;
mod math;
mod surrogates;

pub use fda::{fda_derivative, fda_value, FdaNoise};
pub use learned::LearnedBinarizer;
pub use surrogates::{
    approx_sign_derivative, approx_sign_value, dte_derivative, dte_value, ste_derivative,
    ste_value, swish_sign_derivative, swish_sign_value, DteSchedule,
};

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
    /// Bi-Real Net's ApproxSign (Liu et al., 2018).
    ApproxSign,
    /// BNN+'s SwishSign (Darabi et al., 2018).
    SwishSign { beta: f32 },
    /// DIR-Net's DTE (Qin et al.), `k tanh(t x)` on a progress schedule.
    Dte(DteSchedule),
    /// FDA (Xu et al., 2021): the Fourier-series gradient, plus the optional
    /// learned noise-adaptation module.
    Fda {
        terms: u32,
        omega: f32,
        noise: Option<FdaNoise>,
    },
    /// The learned binarizer (He et al., 2022).
    Learned(LearnedBinarizer),
}

/// The backward rule of one `sign` op.
#[derive(Clone, Debug, PartialEq)]
pub struct SignEstimator {
    kind: Kind,
}

/// Reads and validates the parameters of one estimator attribute.
struct Params<'a> {
    e: &'a Estimator,
}

impl Params<'_> {
    fn bad(&self, param: &str, value: f64, why: &str) -> EstimatorError {
        EstimatorError::BadParam {
            name: self.e.name.clone(),
            param: param.to_string(),
            value,
            why: why.to_string(),
        }
    }

    /// Rejects any parameter not in `allowed`.
    fn only(&self, allowed: &[&str]) -> Result<(), EstimatorError> {
        match self
            .e
            .params
            .iter()
            .find(|(k, _)| !allowed.contains(&k.as_str()))
        {
            Some((k, v)) => Err(self.bad(k, *v, "not a parameter of this estimator")),
            None => Ok(()),
        }
    }

    /// The value of parameter `key`, or `default` when absent.
    fn get(&self, key: &str, default: f64) -> f64 {
        self.e
            .params
            .iter()
            .find(|(k, _)| k == key)
            .map_or(default, |&(_, v)| v)
    }

    /// A real parameter that must be positive and, as an `f32`, finite.
    fn positive(&self, key: &str, default: f64) -> Result<f32, EstimatorError> {
        let v = self.get(key, default);
        if v.is_nan() || v <= 0.0 {
            return Err(self.bad(key, v, "must be positive"));
        }
        if !(v as f32).is_finite() || v as f32 == 0.0 {
            return Err(self.bad(key, v, "must be a finite, nonzero f32"));
        }
        Ok(v as f32)
    }

    /// An integer parameter in `[min, max]`.
    fn integer(&self, key: &str, default: f64, min: u32, max: u32) -> Result<u32, EstimatorError> {
        let v = self.get(key, default);
        if v.is_nan() || v.fract() != 0.0 {
            return Err(self.bad(key, v, "must be an integer"));
        }
        if v < f64::from(min) || v > f64::from(max) {
            return Err(self.bad(key, v, &format!("must be in [{min}, {max}]")));
        }
        Ok(v as u32)
    }
}

/// Largest `fda` `terms`: more terms than this only add a spike at 0 that no
/// training can use, and cost time on every element.
const MAX_FDA_TERMS: u32 = 1000;
/// Largest hidden width of the learned scalar functions (`learned`, `fda` noise).
const MAX_HIDDEN: u32 = 4096;

impl SignEstimator {
    /// The estimator named by a `sign` op's attributes; no attribute means STE
    /// with clip 1. `channels` is the size of the input's last axis (per-channel
    /// learnable parameters use it); `seed` initialises learnable parameters
    /// deterministically. Parameters, defaults and valid ranges are in the module
    /// table and on each estimator's functions; anything else is
    /// [`EstimatorError::BadParam`], an unknown name [`EstimatorError::Unknown`].
    pub fn new(
        attr: Option<&Estimator>,
        channels: usize,
        seed: u64,
    ) -> Result<SignEstimator, EstimatorError> {
        // Every learnable parameter here is shared by all elements, so `channels`
        // is not needed yet; it stays in the signature for per-channel estimators.
        let _ = channels;
        let Some(e) = attr else {
            return Ok(SignEstimator {
                kind: Kind::Ste { clip: 1.0 },
            });
        };
        let p = Params { e };
        let kind = match e.name.as_str() {
            "ste" => {
                p.only(&["clip"])?;
                let clip = p.get("clip", 1.0);
                // An infinite clip is allowed: it is the identity estimator.
                if clip.is_nan() || clip <= 0.0 || clip as f32 == 0.0 {
                    return Err(p.bad("clip", clip, "must be positive"));
                }
                Kind::Ste { clip: clip as f32 }
            }
            "identity" => {
                p.only(&[])?;
                Kind::Identity
            }
            "approx_sign" => {
                p.only(&[])?;
                Kind::ApproxSign
            }
            "swish_sign" => {
                p.only(&["beta"])?;
                Kind::SwishSign {
                    beta: p.positive("beta", 5.0)?,
                }
            }
            "dte" => {
                p.only(&["k_min", "k_max", "t_min", "t_max"])?;
                let s = DteSchedule {
                    t_min: p.positive("t_min", 0.1)?,
                    t_max: p.positive("t_max", 10.0)?,
                    k_min: p.positive("k_min", 1.0)?,
                    k_max: p.positive("k_max", 10.0)?,
                };
                if s.t_max < s.t_min {
                    return Err(p.bad("t_max", f64::from(s.t_max), "must be >= t_min"));
                }
                if s.k_max < s.k_min {
                    return Err(p.bad("k_max", f64::from(s.k_max), "must be >= k_min"));
                }
                Kind::Dte(s)
            }
            "fda" => {
                p.only(&["terms", "omega", "noise"])?;
                let terms = p.integer("terms", 10.0, 1, MAX_FDA_TERMS)?;
                let omega = p.positive("omega", 0.1)?;
                let hidden = p.integer("noise", 0.0, 0, MAX_HIDDEN)?;
                Kind::Fda {
                    terms,
                    omega,
                    noise: (hidden > 0).then(|| FdaNoise::new(hidden as usize, seed)),
                }
            }
            "learned" => {
                p.only(&["hidden"])?;
                let hidden = p.integer("hidden", 0.0, 0, MAX_HIDDEN)?;
                Kind::Learned(LearnedBinarizer::new(hidden as usize, seed))
            }
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

    /// The surrogate derivative this estimator uses at input `x` and training
    /// progress `progress` (clamped to [0, 1]; NaN counts as 0): what
    /// [`SignEstimator::backward`] multiplies `grad_out` by, element by element.
    pub fn derivative(&self, x: f32, progress: f32) -> f32 {
        match &self.kind {
            Kind::Ste { clip } => ste_derivative(x, *clip),
            Kind::Identity => 1.0,
            Kind::ApproxSign => approx_sign_derivative(x),
            Kind::SwishSign { beta } => swish_sign_derivative(x, *beta),
            Kind::Dte(s) => {
                let (k, t) = s.at(progress);
                dte_derivative(x, k, t)
            }
            Kind::Fda {
                terms,
                omega,
                noise,
            } => {
                let base = fda_derivative(x, *terms, *omega);
                match noise {
                    Some(n) if x.is_finite() => base + FdaNoise::alpha(progress) * n.derivative(x),
                    _ => base,
                }
            }
            Kind::Learned(l) => l.derivative(x),
        }
    }

    /// Backward: writes dL/dx into `grad_in` (overwriting) from the sign's input
    /// `x` and dL/dy `grad_out` (same length, channels on the last axis), and
    /// accumulates the gradients of the estimator's own parameters. `progress` is
    /// the fraction of training done, in [0, 1] (clamped; NaN counts as 0), for
    /// scheduled estimators.
    ///
    /// # Panics
    /// If the three slices differ in length.
    pub fn backward(&mut self, x: &[f32], grad_out: &[f32], grad_in: &mut [f32], progress: f32) {
        assert_eq!(x.len(), grad_out.len(), "sign backward: x vs grad_out");
        assert_eq!(x.len(), grad_in.len(), "sign backward: x vs grad_in");
        match &mut self.kind {
            Kind::Ste { clip } => {
                let clip = *clip;
                for ((gi, &xv), &go) in grad_in.iter_mut().zip(x).zip(grad_out) {
                    *gi = if xv.abs() <= clip { go } else { 0.0 };
                }
            }
            Kind::Identity => grad_in.copy_from_slice(grad_out),
            Kind::ApproxSign => map_derivative(x, grad_out, grad_in, approx_sign_derivative),
            Kind::SwishSign { beta } => {
                let beta = *beta;
                map_derivative(x, grad_out, grad_in, |v| swish_sign_derivative(v, beta));
            }
            Kind::Dte(s) => {
                let (k, t) = s.at(progress);
                map_derivative(x, grad_out, grad_in, |v| dte_derivative(v, k, t));
            }
            Kind::Fda {
                terms,
                omega,
                noise,
            } => {
                let (terms, omega) = (*terms, *omega);
                let alpha = FdaNoise::alpha(progress);
                match noise {
                    Some(n) if alpha != 0.0 => {
                        n.backward(x, grad_out, grad_in, alpha, |v| {
                            fda_derivative(v, terms, omega)
                        });
                    }
                    _ => map_derivative(x, grad_out, grad_in, |v| fda_derivative(v, terms, omega)),
                }
            }
            Kind::Learned(l) => l.backward(x, grad_out, grad_in),
        }
    }

    /// The estimator's learnable parameters (empty for fixed surrogates).
    pub fn params(&mut self) -> Vec<ParamRef<'_>> {
        match &mut self.kind {
            Kind::Fda { noise: Some(n), .. } => n.params(),
            Kind::Learned(l) => l.params(),
            _ => Vec::new(),
        }
    }

    /// Clears the accumulated gradients of the estimator's parameters.
    pub fn zero_grad(&mut self) {
        match &mut self.kind {
            Kind::Fda { noise: Some(n), .. } => n.zero_grad(),
            Kind::Learned(l) => l.zero_grad(),
            _ => {}
        }
    }
}

/// `grad_in[i] = grad_out[i] * d(x[i])`, the loop of every fixed surrogate.
#[inline(always)]
fn map_derivative(x: &[f32], grad_out: &[f32], grad_in: &mut [f32], d: impl Fn(f32) -> f32) {
    for ((gi, &xv), &go) in grad_in.iter_mut().zip(x).zip(grad_out) {
        *gi = go * d(xv);
    }
}

/// `progress` clamped to [0, 1], NaN to 0.
fn clamp_progress(progress: f32) -> f32 {
    if progress >= 1.0 {
        1.0
    } else if progress > 0.0 {
        progress
    } else {
        0.0
    }
}

/// `dst[i] += src[i]`, rounding each f64 sum to f32 once.
fn add_into(dst: &mut [f32], src: &[f64]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = (f64::from(*d) + s) as f32;
    }
}
