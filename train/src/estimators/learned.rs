//! The learned binarizer: a small learned scalar function whose derivative is
//! sign's gradient.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::hidden::HiddenLayer;
use super::math::tanh_sech2;
use super::{add_into, ParamRef};

/// The learned binarizer of He, Zhang, Wu, Zhou (2022), "Binarizing by
/// Classification: Is soft function really necessary?": binarization is treated as
/// binary classification, and a multi-layer perceptron, trained jointly with the
/// network, is the classifier in the forward pass and the gradient estimator in
/// the backward pass; the paper finds that even a linear function beats
/// hand-made soft functions.
///
/// Here the forward pass stays the IR's exact sign (so the trained model is the
/// compiled one), and the learned function `g(x; θ)`, applied to every element
/// with one `θ` shared by all elements, supplies the backward pass:
///
/// ```text
/// hidden = 0:  g(x) = w x                                  g'(x) = w
/// hidden = h:  g(x) = sum_j v_j tanh(w_j x + b_j)          g'(x) = sum_j v_j w_j (1 - tanh^2(w_j x + b_j))
/// ```
///
/// - the gradient to `x` is `grad_out * g'(x)`;
/// - `θ` receives `sum grad_out * dg/dθ` over all elements, i.e. `θ` is trained
///   as if `g` had been the forward function (the straight-through view of the
///   paper's classifier).
///
/// Choices this implementation makes (the IR names only `hidden`): the hidden
/// activation is tanh, so `g'` is smooth and, being bounded, can learn to vanish
/// for large `|x|` as hand-made estimators do; there is no output bias, since a
/// constant changes neither `g'` nor the forward pass. Initialisation, from a
/// ChaCha8 stream seeded with the op's seed: linear `w = 1` (the identity
/// straight-through estimator); MLP `w_j ~ U(0.5, 1.5)`, `b_j ~ U(-1, 1)`,
/// `v_j = 1/h`, so that `g'(x) > 0` everywhere at the start, with `g'(0)` of
/// order 1.
///
/// At a non-finite `x` the gradient to `x` is 0 and no parameter gradient is taken.
#[derive(Clone, Debug, PartialEq)]
pub struct LearnedBinarizer {
    /// Linear: `[w]`. MLP: the input weights `w_j`.
    w: Vec<f32>,
    /// MLP only: the hidden biases `b_j` (empty when linear).
    b: Vec<f32>,
    /// MLP only: the output weights `v_j` (empty when linear).
    v: Vec<f32>,
    grad_w: Vec<f32>,
    grad_b: Vec<f32>,
    grad_v: Vec<f32>,
}

impl LearnedBinarizer {
    /// The linear function (`hidden` = 0) or an MLP of `hidden` tanh units,
    /// initialised deterministically from `seed` as described on the type.
    pub fn new(hidden: usize, seed: u64) -> LearnedBinarizer {
        if hidden == 0 {
            return LearnedBinarizer {
                w: vec![1.0],
                b: Vec::new(),
                v: Vec::new(),
                grad_w: vec![0.0],
                grad_b: Vec::new(),
                grad_v: Vec::new(),
            };
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let w = (0..hidden).map(|_| rng.random_range(0.5..1.5)).collect();
        let b = (0..hidden).map(|_| rng.random_range(-1.0..1.0)).collect();
        LearnedBinarizer {
            w,
            b,
            v: vec![1.0 / hidden as f32; hidden],
            grad_w: vec![0.0; hidden],
            grad_b: vec![0.0; hidden],
            grad_v: vec![0.0; hidden],
        }
    }

    /// The number of hidden units (0 for the linear function).
    pub fn hidden(&self) -> usize {
        self.v.len()
    }

    /// `g(x)`.
    pub fn value(&self, x: f32) -> f32 {
        if self.v.is_empty() {
            return self.w[0] * x;
        }
        let mut sum = 0.0;
        for ((&w, &b), &v) in self.w.iter().zip(&self.b).zip(&self.v) {
            sum += v * (w * x + b).tanh();
        }
        sum
    }

    /// `g'(x)`; 0 at a non-finite `x`.
    pub fn derivative(&self, x: f32) -> f32 {
        if !x.is_finite() {
            return 0.0;
        }
        if self.v.is_empty() {
            return self.w[0];
        }
        let mut sum = 0.0;
        for ((&w, &b), &v) in self.w.iter().zip(&self.b).zip(&self.v) {
            sum += v * w * tanh_sech2(w * x + b).1;
        }
        sum
    }

    /// The backward pass: `grad_in = grad_out * g'(x)` and `sum grad_out * dg/dθ`
    /// accumulated into the parameter gradients.
    pub(super) fn backward(&mut self, x: &[f32], grad_out: &[f32], grad_in: &mut [f32]) {
        let h = self.v.len();
        if h == 0 {
            let w = self.w[0];
            let mut acc = 0.0f64;
            for ((gi, &xv), &go) in grad_in.iter_mut().zip(x).zip(grad_out) {
                if xv.is_finite() {
                    *gi = go * w;
                    acc += f64::from(go) * f64::from(xv);
                } else {
                    *gi = 0.0;
                }
            }
            add_into(&mut self.grad_w, &[acc]);
            return;
        }
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
        .backward(x, grad_out, 1.0, tanh_sech2, grad_in);
        for (gi, &go) in grad_in.iter_mut().zip(grad_out) {
            *gi *= go;
        }
        add_into(&mut self.grad_w, &acc[..h]);
        add_into(&mut self.grad_b, &acc[h..2 * h]);
        add_into(&mut self.grad_v, &acc[2 * h..]);
    }

    /// Linear: `w` (one value). MLP: `w`, `b`, `v`, each of `hidden` values.
    pub fn params(&mut self) -> Vec<ParamRef<'_>> {
        let mut out = vec![ParamRef {
            name: "w",
            value: &mut self.w,
            grad: &mut self.grad_w,
        }];
        if !self.v.is_empty() {
            out.push(ParamRef {
                name: "b",
                value: &mut self.b,
                grad: &mut self.grad_b,
            });
            out.push(ParamRef {
                name: "v",
                value: &mut self.v,
                grad: &mut self.grad_v,
            });
        }
        out
    }

    /// Clears the accumulated parameter gradients.
    pub fn zero_grad(&mut self) {
        for g in [&mut self.grad_w, &mut self.grad_b, &mut self.grad_v] {
            g.fill(0.0);
        }
    }
}
