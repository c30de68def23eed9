//! The fixed (non-learned) surrogates of `sign`: STE with clipping, ApproxSign,
//! SwishSign and DTE. Each is a pair: the surrogate's value (what sign is replaced
//! by in the derivation, never computed in training) and its derivative (what the
//! backward pass multiplies the output gradient by).

use super::clamp_progress;
use super::math::exp_f32;

/// STE with clipping, surrogate value: the hard tanh `clamp(x, -clip, clip)`.
///
/// Hubara, Courbariaux, Soudry, El-Yaniv, Bengio (2016), "Binarized Neural
/// Networks": sign's gradient is estimated by `1_{|x| <= clip}` (they use
/// clip = 1), the derivative of this function. NaN gives NaN.
pub fn ste_value(x: f32, clip: f32) -> f32 {
    x.clamp(-clip, clip)
}

/// STE with clipping, derivative: 1 where `|x| <= clip` (both ends included),
/// else 0 (also for NaN). See [`ste_value`].
#[inline]
pub fn ste_derivative(x: f32, clip: f32) -> f32 {
    if x.abs() <= clip {
        1.0
    } else {
        0.0
    }
}

/// ApproxSign, surrogate value (Liu, Wu, Luo, Yang, Liu, Cheng (2018), "Bi-Real
/// Net: Enhancing the Performance of 1-bit CNNs with Improved Representational
/// Capability and Advanced Training Algorithm"):
///
/// ```text
/// F(x) = -1          x < -1
///        2x + x^2    -1 <= x < 0
///        2x - x^2    0 <= x < 1
///        1           x >= 1
/// ```
///
/// NaN gives +1, as sign does.
pub fn approx_sign_value(x: f32) -> f32 {
    if x < -1.0 {
        -1.0
    } else if x < 0.0 {
        2.0 * x + x * x
    } else if x < 1.0 {
        2.0 * x - x * x
    } else {
        1.0
    }
}

/// ApproxSign, derivative: `2 + 2x` on [-1, 0), `2 - 2x` on [0, 1), 0 elsewhere
/// (and for NaN). Continuous: 0 at x = ±1, 2 at x = 0. See [`approx_sign_value`].
#[inline]
pub fn approx_sign_derivative(x: f32) -> f32 {
    if (-1.0..0.0).contains(&x) {
        2.0 + 2.0 * x
    } else if (0.0..1.0).contains(&x) {
        2.0 - 2.0 * x
    } else {
        0.0
    }
}

/// Beyond this `|beta x|` (or `|t x|` in DTE) the derivatives below are smaller
/// than 1e-30 and are returned as 0; the comparison also sends NaN to 0.
const TAIL: f32 = 80.0;

/// SwishSign, surrogate value (Darabi, Belbahri, Courbariaux, Partovi Nia (2018),
/// "BNN+: Improved Binary Network Training"):
///
/// ```text
/// SS_beta(x) = 2 sigma(beta x) (1 + beta x (1 - sigma(beta x))) - 1
/// ```
///
/// with `sigma` the logistic function. Odd, 0 at 0, tends to ±1, overshoots ±1
/// near `|x| = 2.4 / beta`. `beta` > 0; the `swish_sign` estimator's default is 5.
pub fn swish_sign_value(x: f32, beta: f32) -> f32 {
    let u = beta * x;
    // With a = |u| and e = exp(-a) the formula reduces to
    // (1 - e^2 + 2 a e) / (1 + e)^2 for u >= 0, and it is odd: no cancellation
    // near ±1, and exactly odd in f32.
    let a = u.abs();
    let e = (-a).exp();
    let q = 1.0 + e;
    let f = if a.is_finite() {
        (1.0 - e * e + 2.0 * a * e) / (q * q)
    } else {
        1.0
    };
    f.copysign(u)
}

/// SwishSign, derivative:
///
/// ```text
/// d/dx SS_beta(x) = beta (2 - beta x tanh(beta x / 2)) / (1 + cosh(beta x))
/// ```
///
/// `beta` at 0, negative for `|beta x| > 2.4` (the surrogate overshoots), 0 for
/// NaN. See [`swish_sign_value`].
#[inline]
pub fn swish_sign_derivative(x: f32, beta: f32) -> f32 {
    let a = (beta * x).abs();
    // With e = exp(-|u|): 1 / (1 + cosh u) = 2e / (1 + e)^2 and
    // u tanh(u / 2) = |u| (1 - e) / (1 + e); no overflow for any u.
    let e = exp_f32(-a);
    let inv = 1.0 / (1.0 + e);
    let d = 2.0 * beta * e * inv * inv * (2.0 - a * (1.0 - e) * inv);
    // A select, not an early return, so that the backward loop vectorises.
    if a < TAIL {
        d
    } else {
        0.0
    }
}

/// The schedule of DIR-Net's distribution-sensitive two-stage estimator (DTE).
///
/// Qin, Zhang, Gong, Ding, Xu, Liu (2023), "Distribution-sensitive Information
/// Retention for Accurate Binary Neural Network" (IJCV), following the error decay
/// estimator of Qin et al. (2020), "Forward and Backward Information Retention for
/// Accurate Binary Neural Networks" (IR-Net): sign is replaced by `k tanh(t x)`,
/// with `t` growing log-linearly over training and `k` compensating while `t < 1`:
///
/// ```text
/// t(p) = t_min * 10^(p * log10(t_max / t_min))     (= t_min (t_max/t_min)^p)
/// k(p) = clamp(1 / t(p), k_min, k_max)
/// ```
///
/// for training progress `p` in [0, 1]. With the defaults (`t_min` = 0.1,
/// `t_max` = 10, `k_min` = 1, `k_max` = 10) this is exactly IR-Net's published
/// schedule `k = max(1/t, 1)`: in the first stage (`t < 1`) the peak gradient
/// `k t` stays 1 while the surrogate sharpens from nearly the identity (keeping
/// every weight updatable); in the second stage (`t >= 1`, `k` = 1) it approaches
/// sign (accurate gradients near 0). `k_min` and `k_max` bound `k`: `k_min`
/// takes effect when above `1/t_max`, `k_max` when below `1/t_min`.
///
/// Valid parameters: all positive and finite, `t_min <= t_max`, `k_min <= k_max`.
/// What is implemented is exactly the formula above, on the raw input `x`; this
/// estimator does not standardise `x` (DIR-Net's weight standardisation is a graph
/// rewrite, not part of the estimator).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DteSchedule {
    pub t_min: f32,
    pub t_max: f32,
    pub k_min: f32,
    pub k_max: f32,
}

impl DteSchedule {
    /// `(k, t)` at training progress `progress` (clamped to [0, 1], NaN as 0). At
    /// 0, `t = t_min` exactly; at 1, `t = t_max` up to one f32 rounding.
    pub fn at(&self, progress: f32) -> (f32, f32) {
        let p = f64::from(clamp_progress(progress));
        let (lo, hi) = (f64::from(self.t_min), f64::from(self.t_max));
        let t = if p == 0.0 {
            lo
        } else {
            (lo.ln() * (1.0 - p) + hi.ln() * p).exp()
        };
        let k = (1.0 / t).clamp(f64::from(self.k_min), f64::from(self.k_max));
        (k as f32, t as f32)
    }
}

/// DTE surrogate value: `k tanh(t x)`. See [`DteSchedule`] for `k` and `t`.
pub fn dte_value(x: f32, k: f32, t: f32) -> f32 {
    k * (t * x).tanh()
}

/// DTE derivative: `k t (1 - tanh^2(t x))`, computed as
/// `4 k t e / (1 + e)^2` with `e = exp(-2 |t x|)` (no cancellation in the tails);
/// `k t` at 0, 0 for NaN. See [`DteSchedule`].
#[inline]
pub fn dte_derivative(x: f32, k: f32, t: f32) -> f32 {
    let a = (t * x).abs();
    let e = exp_f32(-2.0 * a);
    let inv = 1.0 / (1.0 + e);
    let d = 4.0 * k * t * e * inv * inv;
    if a < TAIL {
        d
    } else {
        0.0
    }
}
