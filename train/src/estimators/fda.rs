//! FDA: sign's gradient from the truncated Fourier series of the square wave, and
//! the noise-adaptation module that learns the truncation's residual.
//!
//! Xu, Han, Xu, Tang, Xu, Wang (2021), "Learning Frequency Domain Approximation for
//! Binary Neural Networks" (NeurIPS). sign on (-pi/omega, pi/omega) is one period of
//! the square wave, whose Fourier series truncated to `n` terms is
//!
//! ```text
//! s(x)  = (4/pi) * sum_{i=0}^{n-1} sin((2i+1) omega x) / (2i+1)
//! s'(x) = (4 omega/pi) * sum_{i=0}^{n-1} cos((2i+1) omega x)
//! ```
//!
//! The backward pass uses `s'`, restricted to `|x| <= 1` as a public PyTorch
//! implementation of FDA does (with omega = 0.1, and 10 terms growing to 19 over
//! training): the series is periodic, and without the window an input far from 0
//! would receive the gradient of a distant period. The window is fixed at 1 and
//! the number of terms is fixed at `terms` because the IR's `fda` estimator has
//! parameters for neither a window nor a terms schedule.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::hidden::HiddenLayer;
use super::{add_into, clamp_progress, ParamRef};

/// FDA surrogate value: the truncated Fourier series `s(x)` above, with `terms`
/// = n >= 1 and `omega` > 0 (the `fda` estimator's defaults: 10 and 0.1). Not
/// windowed: this is the series itself, whose derivative [`fda_derivative`]
/// returns inside the window.
pub fn fda_value(x: f32, terms: u32, omega: f32) -> f32 {
    let theta = omega * x;
    let mut sum = 0.0f32;
    for i in 0..terms {
        let m = (2 * i + 1) as f32;
        sum += (m * theta).sin() / m;
    }
    sum * (4.0 / std::f32::consts::PI)
}

/// FDA derivative: `s'(x) = (4 omega/pi) sum_{i<n} cos((2i+1) omega x)` for
/// `|x| <= 1` (both ends included), 0 outside and for NaN. `4 omega n / pi` at 0.
#[inline]
pub fn fda_derivative(x: f32, terms: u32, omega: f32) -> f32 {
    if x.is_nan() || x.abs() > 1.0 {
        return 0.0;
    }
    // cos((2i+1)θ) for i = 0, 1, ... by rotating (cos θ, sin θ) by 2θ each step:
    // one sin_cos per element instead of n cosines.
    let (s1, c1) = (omega * x).sin_cos();
    let (c2, s2) = (1.0 - 2.0 * s1 * s1, 2.0 * s1 * c1);
    let (mut c, mut s) = (c1, s1);
    let mut sum = 0.0f32;
    for _ in 0..terms {
        sum += c;
        (c, s) = (c * c2 - s * s2, s * c2 + c * s2);
    }
    sum * (4.0 * omega / std::f32::consts::PI)
}

/// FDA's noise-adaptation module, as a learned scalar function applied to every
/// element:
///
/// ```text
/// e(x)   = sum_j v_j relu(w_j x + b_j) + 0.1 sin(x)
/// e'(x)  = sum_j v_j w_j [w_j x + b_j > 0] + 0.1 cos(x)
/// alpha(p) = 0.05 (1 + cos(pi p))            (0.1 at p = 0, 0 at p = 1)
/// ```
///
/// In the paper the module estimates the residual `sign(x) - s(x)` that the
/// truncated series leaves out, and is trained with the network: the public
/// implementation adds `alpha e(x)` to the binarized value during
/// training, with `e` two bias-free linear layers around a ReLU plus a `0.1 sin(x)`
/// shortcut, and `alpha` decaying as above. The first linear layer there mixes the
/// channels at one position; a scalar elementwise function cannot, so here each
/// hidden unit sees one element. Because the forward pass must stay the exact
/// sign, `e` enters only the backward pass, as if it had been added:
///
/// - the gradient to `x` is `grad_out * (s'(x) + alpha(p) e'(x))`;
/// - each parameter receives `sum grad_out * alpha(p) * de/dθ` over all elements.
///
/// Parameters (`noise` = h hidden units): `w` and `v` are initialised as PyTorch
/// initialises that implementation's linear layers, `w_j ~ U(-1, 1)` (fan-in 1) and
/// `v_j ~ U(-1/sqrt h, 1/sqrt h)`, from a ChaCha8 stream seeded with the op's seed.
/// The biases `b_j` start at 0; they are not in that implementation, and are added
/// because a scalar ReLU layer without biases has its only kink at 0 and collapses
/// to two slopes. At the kink the ReLU's derivative is taken as 0.
#[derive(Clone, Debug, PartialEq)]
pub struct FdaNoise {
    w: Vec<f32>,
    b: Vec<f32>,
    v: Vec<f32>,
    grad_w: Vec<f32>,
    grad_b: Vec<f32>,
    grad_v: Vec<f32>,
}

impl FdaNoise {
    /// A module of `hidden` >= 1 units, initialised deterministically from `seed`.
    pub fn new(hidden: usize, seed: u64) -> FdaNoise {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let w: Vec<f32> = (0..hidden).map(|_| rng.random_range(-1.0..1.0)).collect();
        let bound = 1.0 / (hidden as f32).sqrt();
        let v: Vec<f32> = (0..hidden)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        FdaNoise {
            w,
            b: vec![0.0; hidden],
            v,
            grad_w: vec![0.0; hidden],
            grad_b: vec![0.0; hidden],
            grad_v: vec![0.0; hidden],
        }
    }

    /// The number of hidden units.
    pub fn hidden(&self) -> usize {
        self.w.len()
    }

    /// The weight of the module at training progress `progress` (clamped to
    /// [0, 1], NaN as 0): `0.05 (1 + cos(pi p))`, exactly 0 at `p = 1`.
    pub fn alpha(progress: f32) -> f32 {
        let p = clamp_progress(progress);
        if p == 1.0 {
            return 0.0;
        }
        0.05 * (1.0 + (std::f32::consts::PI * p).cos())
    }

    /// `e(x)`.
    pub fn value(&self, x: f32) -> f32 {
        let mut sum = 0.1 * x.sin();
        for ((&w, &b), &v) in self.w.iter().zip(&self.b).zip(&self.v) {
            sum += v * (w * x + b).max(0.0);
        }
        sum
    }

    /// `e'(x)`, summed as `(sum_j v_j w_j [w_j x + b_j > 0]) + 0.1 cos(x)`.
    pub fn derivative(&self, x: f32) -> f32 {
        let mut sum = 0.0;
        for ((&w, &b), &v) in self.w.iter().zip(&self.b).zip(&self.v) {
            sum += v * w * relu(w * x + b).1;
        }
        sum + 0.1 * x.cos()
    }

    /// The backward pass: `grad_in = grad_out * (base(x) + alpha e'(x))`, and
    /// `grad_out * alpha * de/dθ` accumulated into the parameter gradients. At a
    /// non-finite `x` only `base` is used and no parameter gradient is taken.
    pub(super) fn backward(
        &mut self,
        x: &[f32],
        grad_out: &[f32],
        grad_in: &mut [f32],
        alpha: f32,
        base: impl Fn(f32) -> f32,
    ) {
        let h = self.w.len();
        let mut acc = vec![0.0f64; 3 * h];
        let (acc_w, rest) = acc.split_at_mut(h);
        let (acc_b, acc_v) = rest.split_at_mut(h);
        HiddenLayer {
            w: &self.w,
            b: &self.b,
            v: &self.v,
            acc_w,
            acc_b,
            acc_v,
        }
        .backward(x, grad_out, alpha, relu, grad_in);
        for ((gi, &xv), &go) in grad_in.iter_mut().zip(x).zip(grad_out) {
            *gi = if xv.is_finite() {
                go * (base(xv) + alpha * (*gi + 0.1 * xv.cos()))
            } else {
                go * base(xv)
            };
        }
        add_into(&mut self.grad_w, &acc[..h]);
        add_into(&mut self.grad_b, &acc[h..2 * h]);
        add_into(&mut self.grad_v, &acc[2 * h..]);
    }

    /// `noise.w`, `noise.b`, `noise.v`, each of `hidden` values.
    pub fn params(&mut self) -> Vec<ParamRef<'_>> {
        vec![
            ParamRef {
                name: "noise.w",
                value: &mut self.w,
                grad: &mut self.grad_w,
            },
            ParamRef {
                name: "noise.b",
                value: &mut self.b,
                grad: &mut self.grad_b,
            },
            ParamRef {
                name: "noise.v",
                value: &mut self.v,
                grad: &mut self.grad_v,
            },
        ]
    }

    /// Clears the accumulated parameter gradients.
    pub fn zero_grad(&mut self) {
        for g in [&mut self.grad_w, &mut self.grad_b, &mut self.grad_v] {
            g.fill(0.0);
        }
    }
}

/// `(relu z, relu' z)`, with the derivative at the kink `z = 0` taken as 0.
#[inline(always)]
fn relu(z: f32) -> (f32, f32) {
    if z > 0.0 {
        (z, 1.0)
    } else {
        (0.0, 0.0)
    }
}
