//! Optimisers and learning-rate schedules.
//!
//! Every optimiser works on plain slices: the trainer calls `step` once per
//! parameter tensor with its values, its gradient and a state object it keeps for
//! that tensor, so any parameter (weights, biases, BN parameters, learnable
//! thresholds of estimators) can be driven by any optimiser. States start empty
//! (`Default`) and take the parameter's length on their first step.
//!
//! - [`Adam`]: Adam (Kingma & Ba 2015) with decoupled weight decay (AdamW,
//!   Loshchilov & Hutter 2019);
//! - [`Sgd`]: stochastic gradient descent with (optionally Nesterov) momentum and
//!   L2 weight decay;
//! - [`Bop`]: the Binary Optimizer of Helwegen et al. 2019, which flips binary
//!   weights instead of updating latent ones;
//! - [`LrSchedule`]: constant, cosine with linear warm-up, and step decay;
//! - [`clip_latent`]: latent-weight clipping (BinaryConnect).
//!
//! Nothing here panics on bad input: mismatched lengths and parameters outside
//! their domains are [`OptimError`]s, checked before any value is changed.

/// Why an optimiser step or a schedule was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OptimError {
    /// A gradient or state slice does not have the parameter's length.
    #[error("{optimiser}: {what} has {found} elements, the parameter has {expected}")]
    Length {
        optimiser: &'static str,
        what: &'static str,
        expected: usize,
        found: usize,
    },
    /// A hyper-parameter is outside its domain.
    #[error("{optimiser}: {param} = {value}: {why}")]
    Param {
        optimiser: &'static str,
        param: &'static str,
        value: f64,
        why: &'static str,
    },
}

fn param_error(
    optimiser: &'static str,
    param: &'static str,
    value: f64,
    why: &'static str,
) -> OptimError {
    OptimError::Param {
        optimiser,
        param,
        value,
        why,
    }
}

/// Checks `0 <= x` and finite.
fn non_negative(opt: &'static str, param: &'static str, x: f32) -> Result<(), OptimError> {
    if x.is_finite() && x >= 0.0 {
        Ok(())
    } else {
        Err(param_error(
            opt,
            param,
            f64::from(x),
            "must be finite and non-negative",
        ))
    }
}

/// Checks `0 <= x < 1`.
fn unit_interval(opt: &'static str, param: &'static str, x: f32) -> Result<(), OptimError> {
    if (0.0..1.0).contains(&x) {
        Ok(())
    } else {
        Err(param_error(opt, param, f64::from(x), "must be in [0, 1)"))
    }
}

/// Checks that `grad` has the length of `value`.
fn same_length(opt: &'static str, value: &[f32], grad: &[f32]) -> Result<(), OptimError> {
    if grad.len() == value.len() {
        Ok(())
    } else {
        Err(OptimError::Length {
            optimiser: opt,
            what: "gradient",
            expected: value.len(),
            found: grad.len(),
        })
    }
}

/// Sizes an empty state vector to `len` zeros, or checks its length.
fn size_state(
    opt: &'static str,
    what: &'static str,
    state: &mut Vec<f32>,
    len: usize,
) -> Result<(), OptimError> {
    if state.is_empty() {
        state.resize(len, 0.0);
    }
    if state.len() == len {
        Ok(())
    } else {
        Err(OptimError::Length {
            optimiser: opt,
            what,
            expected: len,
            found: state.len(),
        })
    }
}

/// Adam with decoupled weight decay (AdamW).
///
/// One step at time `t` (counted from 1) with gradient `g` and learning rate `lr`
/// (Kingma & Ba 2015, Algorithm 1; Loshchilov & Hutter 2019, "Decoupled Weight
/// Decay Regularization", Algorithm 2):
///
/// ```text
/// m  = beta1 m + (1 - beta1) g
/// v  = beta2 v + (1 - beta2) g^2
/// m^ = m / (1 - beta1^t),  v^ = v / (1 - beta2^t)
/// w  = w - lr (m^ / (sqrt(v^) + eps) + weight_decay w)
/// ```
///
/// The decay acts on the weight directly, not through `m` and `v` (that is what
/// "decoupled" means: with plain L2 the decay would be rescaled by `1/sqrt(v^)`).
/// In the paper's notation this is `eta_t alpha = lr` and `eta_t lambda = lr *
/// weight_decay`, the parameterisation of PyTorch's `AdamW`, so a learning-rate
/// schedule scales both terms as the paper's `eta_t` does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adam {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl Default for Adam {
    /// `beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0` (Kingma & Ba).
    fn default() -> Self {
        Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// Per-parameter state of [`Adam`]: first and second moment estimates and the
/// number of steps taken. Empty (`Default`) until the first step.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AdamState {
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    pub t: u64,
}

impl Adam {
    /// Checks the hyper-parameters: `beta1`, `beta2` in `[0, 1)`, `eps > 0`,
    /// `weight_decay >= 0`, all finite.
    pub fn validate(&self) -> Result<(), OptimError> {
        const OPT: &str = "adam";
        unit_interval(OPT, "beta1", self.beta1)?;
        unit_interval(OPT, "beta2", self.beta2)?;
        non_negative(OPT, "weight_decay", self.weight_decay)?;
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(param_error(
                OPT,
                "eps",
                f64::from(self.eps),
                "must be finite and positive",
            ));
        }
        Ok(())
    }

    /// One AdamW step on `value` (see the type's doc), updating `state`.
    ///
    /// Errors (nothing changed): invalid hyper-parameters, `lr` negative or not
    /// finite, `grad` or a non-empty state of another length than `value`.
    pub fn step(
        &self,
        state: &mut AdamState,
        value: &mut [f32],
        grad: &[f32],
        lr: f32,
    ) -> Result<(), OptimError> {
        const OPT: &str = "adam";
        self.validate()?;
        non_negative(OPT, "lr", lr)?;
        same_length(OPT, value, grad)?;
        check_state_len(OPT, "state m", &state.m, value.len())?;
        check_state_len(OPT, "state v", &state.v, value.len())?;
        size_state(OPT, "state m", &mut state.m, value.len())?;
        size_state(OPT, "state v", &mut state.v, value.len())?;
        state.t += 1;
        let t = state.t.min(i32::MAX as u64) as i32;
        let c1 = 1.0 - f64::from(self.beta1).powi(t);
        let c2 = 1.0 - f64::from(self.beta2).powi(t);
        let (b1, b2) = (f64::from(self.beta1), f64::from(self.beta2));
        let (lr, eps, wd) = (
            f64::from(lr),
            f64::from(self.eps),
            f64::from(self.weight_decay),
        );
        for (((w, &g), m), v) in value
            .iter_mut()
            .zip(grad)
            .zip(state.m.iter_mut())
            .zip(state.v.iter_mut())
        {
            let g = f64::from(g);
            let m64 = b1 * f64::from(*m) + (1.0 - b1) * g;
            let v64 = b2 * f64::from(*v) + (1.0 - b2) * g * g;
            *m = m64 as f32;
            *v = v64 as f32;
            let update = (m64 / c1) / ((v64 / c2).sqrt() + eps);
            let w64 = f64::from(*w);
            *w = (w64 - lr * (update + wd * w64)) as f32;
        }
        Ok(())
    }
}

/// A state that is neither empty nor of the parameter's length is an error
/// (checked for all state vectors before any is resized).
fn check_state_len(
    opt: &'static str,
    what: &'static str,
    state: &[f32],
    len: usize,
) -> Result<(), OptimError> {
    if state.is_empty() || state.len() == len {
        Ok(())
    } else {
        Err(OptimError::Length {
            optimiser: opt,
            what,
            expected: len,
            found: state.len(),
        })
    }
}

/// Stochastic gradient descent with momentum (Polyak's heavy ball, or Nesterov's
/// variant as formulated by Sutskever et al. 2013) and coupled L2 weight decay, in
/// the form PyTorch's `SGD` uses (no dampening):
///
/// ```text
/// d = g + weight_decay w
/// b = momentum b + d                 (b starts at 0, so the first b is d)
/// w = w - lr b                       (heavy ball)
/// w = w - lr (d + momentum b)        (nesterov)
/// ```
///
/// `momentum = 0` is plain SGD.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sgd {
    pub momentum: f32,
    pub weight_decay: f32,
    pub nesterov: bool,
}

/// Per-parameter state of [`Sgd`]: the momentum buffer `b`. Empty until the first
/// step.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SgdState {
    pub velocity: Vec<f32>,
}

impl Sgd {
    /// Checks `momentum` in `[0, 1)` and `weight_decay >= 0`, finite.
    pub fn validate(&self) -> Result<(), OptimError> {
        unit_interval("sgd", "momentum", self.momentum)?;
        non_negative("sgd", "weight_decay", self.weight_decay)
    }

    /// One step on `value` (see the type's doc), updating `state`.
    ///
    /// Errors (nothing changed): invalid hyper-parameters, `lr` negative or not
    /// finite, `grad` or a non-empty state of another length than `value`.
    pub fn step(
        &self,
        state: &mut SgdState,
        value: &mut [f32],
        grad: &[f32],
        lr: f32,
    ) -> Result<(), OptimError> {
        const OPT: &str = "sgd";
        self.validate()?;
        non_negative(OPT, "lr", lr)?;
        same_length(OPT, value, grad)?;
        size_state(OPT, "state velocity", &mut state.velocity, value.len())?;
        let mu = self.momentum;
        for ((w, &g), b) in value.iter_mut().zip(grad).zip(state.velocity.iter_mut()) {
            let d = g + self.weight_decay * *w;
            *b = mu * *b + d;
            let step = if self.nesterov { d + mu * *b } else { *b };
            *w -= lr * step;
        }
        Ok(())
    }
}

/// The Binary Optimizer (Bop) of Helwegen et al. 2019, "Latent Weights Do Not
/// Exist: Rethinking Binarized Neural Network Optimization", Algorithm 1.
///
/// Per binary weight `w` with gradient `g` (taken with respect to the binary
/// weight, i.e. through the sign estimator):
///
/// ```text
/// m = (1 - gamma) m + gamma g                        (exponential moving average)
/// flip w  iff  |m| > tau  and  sign(m) = sign(w)
/// ```
///
/// `gamma` is the adaptivity rate, `tau` the threshold; the comparison is strict,
/// so `|m| = tau` does not flip. The moving average is not reset by a flip.
///
/// In bnnc a binary weight is a latent `f32` read through the IR's `sign`
/// (`-1` iff `x < 0`; `0`, `-0.0` and NaN read `+1`). Bop uses the same reading for
/// `sign(w)`, and a flip negates the latent value, so its magnitude (which
/// per-channel scales such as XNOR-Net's `mean |W|` may read) is kept. A latent
/// `0` or `-0.0` reads `+1` and its negation would still read `+1`, so its flip
/// is `-f32::MIN_POSITIVE` instead; a NaN latent is never flipped (nor is a weight
/// whose `m` is NaN, since `|NaN| > tau` is false).
///
/// Bop has no learning rate: it only ever flips. Real-valued parameters (biases,
/// BN, scales) are trained by another optimiser (the paper uses Adam for them).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bop {
    pub gamma: f32,
    pub tau: f32,
}

impl Default for Bop {
    /// `gamma = 1e-4, tau = 1e-8`, the paper's CIFAR-10 starting values.
    fn default() -> Self {
        Bop {
            gamma: 1e-4,
            tau: 1e-8,
        }
    }
}

/// Per-parameter state of [`Bop`]: the moving average `m` of the gradient. Empty
/// until the first step.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BopState {
    pub m: Vec<f32>,
}

impl Bop {
    /// Checks `gamma` in `(0, 1]` and `tau >= 0`, finite.
    pub fn validate(&self) -> Result<(), OptimError> {
        if !(self.gamma > 0.0 && self.gamma <= 1.0) {
            return Err(param_error(
                "bop",
                "gamma",
                f64::from(self.gamma),
                "must be in (0, 1]",
            ));
        }
        non_negative("bop", "tau", self.tau)
    }

    /// One Bop step on the latent binary weights `value`, updating `state`; returns
    /// the number of weights flipped.
    ///
    /// Errors (nothing changed): invalid hyper-parameters, `grad` or a non-empty
    /// state of another length than `value`.
    pub fn step(
        &self,
        state: &mut BopState,
        value: &mut [f32],
        grad: &[f32],
    ) -> Result<usize, OptimError> {
        const OPT: &str = "bop";
        self.validate()?;
        same_length(OPT, value, grad)?;
        size_state(OPT, "state m", &mut state.m, value.len())?;
        let mut flips = 0;
        for ((w, &g), m) in value.iter_mut().zip(grad).zip(state.m.iter_mut()) {
            *m = (1.0 - self.gamma) * *m + self.gamma * g;
            if w.is_nan() || m.abs() <= self.tau || m.is_nan() {
                continue;
            }
            // Both signs in the IR's reading: negative iff < 0 (m != 0 here).
            if (*m < 0.0) == (*w < 0.0) {
                *w = if *w == 0.0 { -f32::MIN_POSITIVE } else { -*w };
                flips += 1;
            }
        }
        Ok(flips)
    }
}

/// A learning-rate schedule: the learning rate of step `step` (counted from 0)
/// given the base rate, by [`LrSchedule::lr_at`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LrSchedule {
    /// `base_lr` at every step.
    Constant,
    /// Linear warm-up (Goyal et al. 2017, "Accurate, Large Minibatch SGD") for
    /// `warmup_steps` steps, then cosine annealing (Loshchilov & Hutter 2017,
    /// SGDR, without restarts) from `base_lr` down to `min_lr` at `total_steps`.
    Cosine {
        total_steps: usize,
        warmup_steps: usize,
        min_lr: f32,
    },
    /// `base_lr * gamma^(step / every)` (integer division): multiply by `gamma`
    /// every `every` steps.
    Step { every: usize, gamma: f32 },
}

impl LrSchedule {
    /// The learning rate at `step` (counted from 0). A total function: it never
    /// panics, whatever the parameters.
    ///
    /// - `Constant`: `base_lr`.
    /// - `Cosine`: for `step < warmup_steps`, `base_lr (step + 1) / warmup_steps`
    ///   (so the first step already learns and step `warmup_steps - 1` reaches
    ///   `base_lr`); afterwards, with `p = (step - warmup_steps) / (total_steps -
    ///   warmup_steps)` clamped to `[0, 1]` (`p = 1` when `total_steps <=
    ///   warmup_steps`), `min_lr + (base_lr - min_lr) (1 + cos(pi p)) / 2`: `base_lr`
    ///   at `step = warmup_steps`, `min_lr` at and after `total_steps`.
    /// - `Step`: `base_lr gamma^(step / every)`; `every = 0` never decays.
    pub fn lr_at(&self, step: usize, base_lr: f32) -> f32 {
        match *self {
            LrSchedule::Constant => base_lr,
            LrSchedule::Cosine {
                total_steps,
                warmup_steps,
                min_lr,
            } => {
                if step < warmup_steps {
                    return (f64::from(base_lr) * (step as f64 + 1.0) / warmup_steps as f64) as f32;
                }
                let p = if total_steps <= warmup_steps {
                    1.0
                } else {
                    ((step - warmup_steps) as f64 / (total_steps - warmup_steps) as f64).min(1.0)
                };
                let (base, min) = (f64::from(base_lr), f64::from(min_lr));
                (min + (base - min) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())) as f32
            }
            LrSchedule::Step { every, gamma } => {
                if every == 0 {
                    return base_lr;
                }
                let k = (step / every).min(i32::MAX as usize) as i32;
                (f64::from(base_lr) * f64::from(gamma).powi(k)) as f32
            }
        }
    }

    /// Checks the parameters are meaningful: for `Cosine`, `min_lr >= 0` finite
    /// and `warmup_steps <= total_steps`, `total_steps >= 1`; for `Step`,
    /// `every >= 1` and `gamma` in `(0, 1]`.
    pub fn validate(&self) -> Result<(), OptimError> {
        const OPT: &str = "lr schedule";
        match *self {
            LrSchedule::Constant => Ok(()),
            LrSchedule::Cosine {
                total_steps,
                warmup_steps,
                min_lr,
            } => {
                non_negative(OPT, "min_lr", min_lr)?;
                if total_steps == 0 {
                    return Err(param_error(OPT, "total_steps", 0.0, "must be at least 1"));
                }
                if warmup_steps > total_steps {
                    return Err(param_error(
                        OPT,
                        "warmup_steps",
                        warmup_steps as f64,
                        "must not exceed total_steps",
                    ));
                }
                Ok(())
            }
            LrSchedule::Step { every, gamma } => {
                if every == 0 {
                    return Err(param_error(OPT, "every", 0.0, "must be at least 1"));
                }
                if !(gamma > 0.0 && gamma <= 1.0) {
                    return Err(param_error(
                        OPT,
                        "gamma",
                        f64::from(gamma),
                        "must be in (0, 1]",
                    ));
                }
                Ok(())
            }
        }
    }
}

/// Clips latent weights to `[-limit, limit]` in place, as BinaryConnect does after
/// each update (Courbariaux, Bengio & David 2015, "BinaryConnect", with
/// `limit = 1`): outside that range the straight-through gradient is zero, so a
/// latent weight there could never return. NaN values are left as they are.
/// Returns the number of values changed.
///
/// Errors: `limit` negative or NaN (`+inf` clips nothing).
pub fn clip_latent(values: &mut [f32], limit: f32) -> Result<usize, OptimError> {
    if limit.is_nan() || limit < 0.0 {
        return Err(param_error(
            "clip_latent",
            "limit",
            f64::from(limit),
            "must be non-negative",
        ));
    }
    let mut changed = 0;
    for x in values.iter_mut() {
        if *x > limit {
            *x = limit;
            changed += 1;
        } else if *x < -limit {
            *x = -limit;
            changed += 1;
        }
    }
    Ok(changed)
}
