//! Losses and regularisers: hand-computed values, finite-difference gradients,
//! known spectral norms, and the errors of bad shapes and parameters.

use bnnc_train::loss::{
    distillation_kl, distillation_loss, softmax_cross_entropy, spectral_norm, spectral_penalty,
    LossError,
};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random(n: usize, scale: f32, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| ((rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0) * scale)
        .collect()
}

/// Central differences of `f` at `x` with step `h`, compared with `grad`.
fn check_gradient(x: &[f32], grad: &[f32], h: f32, tol: f32, f: impl Fn(&[f32]) -> f32) {
    assert_eq!(x.len(), grad.len());
    for i in 0..x.len() {
        let mut xp = x.to_vec();
        let mut xm = x.to_vec();
        xp[i] += h;
        xm[i] -= h;
        let fd = (f(&xp) - f(&xm)) / (2.0 * h);
        assert!(
            (fd - grad[i]).abs() <= tol * (1.0 + fd.abs()),
            "element {i}: finite difference {fd}, gradient {}",
            grad[i]
        );
    }
}

fn close(a: f32, b: f32, tol: f32) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn cross_entropy_hand_computed() {
    // logits [1, 2, 3], label 2: loss = ln(e + e^2 + e^3) - 3.
    let out = softmax_cross_entropy(&[1.0, 2.0, 3.0], 3, &[2]).unwrap();
    assert!(close(out.loss, 0.407_605_96, 1e-6), "{}", out.loss);
    let expected = [0.090_030_57, 0.244_728_47, 0.665_240_96 - 1.0];
    for (g, e) in out.grad.iter().zip(expected) {
        assert!(close(*g, e, 1e-6), "{:?}", out.grad);
    }
    assert_eq!(out.correct, 1);

    // A batch of two averages: the second row [0, 0, 0] with label 0 adds ln 3.
    let out = softmax_cross_entropy(&[1.0, 2.0, 3.0, 0.0, 0.0, 0.0], 3, &[0, 0]).unwrap();
    let l0 = 0.407_605_96 + 2.0;
    assert!(
        close(out.loss, (l0 + 3f32.ln()) / 2.0, 1e-5),
        "{}",
        out.loss
    );
    assert!(close(out.grad[3], (1.0 / 3.0 - 1.0) / 2.0, 1e-6));
    // Row 0 predicts class 2 (wrong); row 1 ties, the first arg-max 0 is right.
    assert_eq!(out.correct, 1);
}

#[test]
fn cross_entropy_is_stable_for_large_logits() {
    let out = softmax_cross_entropy(&[1000.0, 0.0, -1000.0, 0.0], 2, &[0, 1]).unwrap();
    // Row 0: loss ~ 0; row 1 ([-1000, 0], label 1): loss ~ 0.
    assert!(
        out.loss.is_finite() && out.loss.abs() < 1e-6,
        "{}",
        out.loss
    );
    assert!(out.grad.iter().all(|g| g.is_finite() && g.abs() < 1e-6));
    let out = softmax_cross_entropy(&[1000.0, 0.0], 2, &[1]).unwrap();
    assert!(close(out.loss, 1000.0, 1e-3), "{}", out.loss);
    assert!(close(out.grad[0], 1.0, 1e-6) && close(out.grad[1], -1.0, 1e-6));
}

#[test]
fn cross_entropy_gradient_matches_finite_differences() {
    let (b, c) = (4, 5);
    let logits = random(b * c, 3.0, 1);
    let labels = [0u8, 4, 2, 2];
    let out = softmax_cross_entropy(&logits, c, &labels).unwrap();
    check_gradient(&logits, &out.grad, 1e-2, 1e-3, |z| {
        softmax_cross_entropy(z, c, &labels).unwrap().loss
    });
}

#[test]
fn distillation_is_zero_for_equal_logits_and_matches_a_hand_value() {
    let s = random(12, 4.0, 2);
    for t in [0.5f32, 1.0, 4.0] {
        let (l, g) = distillation_kl(&s, &s, 4, t).unwrap();
        assert!(l.abs() < 1e-6, "T={t}: {l}");
        assert!(g.iter().all(|x| x.abs() < 1e-6));
    }
    // T = 1, teacher [0, ln 3] -> p = [1/4, 3/4]; student [0, 0] -> q = [1/2, 1/2].
    // KL = 1/4 ln(1/2) + 3/4 ln(3/2).
    let kl = 0.25 * 0.5f32.ln() + 0.75 * 1.5f32.ln();
    let (l, g) = distillation_kl(&[0.0, 0.0], &[0.0, 3f32.ln()], 2, 1.0).unwrap();
    assert!(close(l, kl, 1e-6), "{l} vs {kl}");
    assert!(close(g[0], 0.25, 1e-6) && close(g[1], -0.25, 1e-6), "{g:?}");
    // T = 2 on logits doubled: the same distributions, loss scaled by T^2 = 4.
    let (l2, g2) = distillation_kl(&[0.0, 0.0], &[0.0, 2.0 * 3f32.ln()], 2, 2.0).unwrap();
    assert!(close(l2, 4.0 * kl, 1e-5), "{l2}");
    assert!(close(g2[0], 0.5, 1e-6), "{g2:?}");
}

#[test]
fn distillation_gradient_matches_finite_differences() {
    let (b, c) = (3, 6);
    let s = random(b * c, 3.0, 3);
    let t = random(b * c, 3.0, 4);
    for temp in [1.0f32, 3.0] {
        let (l, g) = distillation_kl(&s, &t, c, temp).unwrap();
        assert!(l > 0.0);
        check_gradient(&s, &g, 1e-2, 1e-3, |x| {
            distillation_kl(x, &t, c, temp).unwrap().0
        });
    }
}

#[test]
fn mixed_distillation_loss_weights_both_terms() {
    let (b, c) = (3, 4);
    let s = random(b * c, 2.0, 5);
    let t = random(b * c, 2.0, 6);
    let labels = [1u8, 3, 0];
    let ce = softmax_cross_entropy(&s, c, &labels).unwrap();
    let (kd, _) = distillation_kl(&s, &t, c, 2.0).unwrap();
    let out = distillation_loss(&s, &t, c, &labels, 0.3, 2.0).unwrap();
    assert!(close(out.loss, 0.7 * ce.loss + 0.3 * kd, 1e-6));
    assert_eq!(out.correct, ce.correct);
    check_gradient(&s, &out.grad, 1e-2, 1e-3, |x| {
        distillation_loss(x, &t, c, &labels, 0.3, 2.0).unwrap().loss
    });
    let pure_ce = distillation_loss(&s, &t, c, &labels, 0.0, 2.0).unwrap();
    assert_eq!(pure_ce.grad, ce.grad);
}

#[test]
fn spectral_norm_of_a_diagonal_matrix() {
    // diag(3, -5, 2): sigma = 5 with u = +-e1, v = -+e1, so d sigma/dW = -e1 e1^T.
    let w = [3.0, 0.0, 0.0, 0.0, -5.0, 0.0, 0.0, 0.0, 2.0];
    let mut u = Vec::new();
    let (sigma, g) = spectral_norm(&w, 3, 3, &mut u, 100).unwrap();
    assert!(close(sigma, 5.0, 1e-5), "{sigma}");
    assert_eq!(u.len(), 3);
    for (i, &x) in g.iter().enumerate() {
        let e = if i == 4 { -1.0 } else { 0.0 };
        assert!(close(x, e, 1e-5), "{g:?}");
    }
}

#[test]
fn spectral_norm_of_a_rank_one_matrix() {
    // a b^T with a = [1, 2, 2] (|a| = 3), b = [3, 4] (|b| = 5): sigma = 15, and
    // d sigma/dW = (a/3)(b/5)^T, reached after one round from any start.
    let (a, b) = ([1.0f32, 2.0, 2.0], [3.0f32, 4.0]);
    let w: Vec<f32> = a
        .iter()
        .flat_map(|&x| b.iter().map(move |&y| x * y))
        .collect();
    let mut u = Vec::new();
    let (sigma, g) = spectral_norm(&w, 3, 2, &mut u, 1).unwrap();
    assert!(close(sigma, 15.0, 1e-4), "{sigma}");
    let sign = g[0].signum();
    for (k, &x) in g.iter().enumerate() {
        let e = a[k / 2] / 3.0 * b[k % 2] / 5.0;
        assert!(close(x * sign, e, 1e-6), "{g:?}");
    }
}

#[test]
fn spectral_norm_gradient_matches_finite_differences() {
    let (r, c) = (4, 6);
    let w = random(r * c, 1.0, 7);
    let mut u = Vec::new();
    let (sigma, g) = spectral_norm(&w, r, c, &mut u, 500).unwrap();
    assert!(sigma > 0.0);
    let u0 = u.clone();
    check_gradient(&w, &g, 1e-2, 2e-3, |x| {
        let mut u = u0.clone();
        spectral_norm(x, r, c, &mut u, 500).unwrap().0
    });
    // The penalty (lambda/2) sigma^2 and its gradient lambda sigma u v^T.
    let mut u = u0.clone();
    let (p, pg) = spectral_penalty(&w, r, c, &mut u, 500, 0.3).unwrap();
    assert!(close(p, 0.15 * sigma * sigma, 1e-5));
    check_gradient(&w, &pg, 1e-2, 2e-3, |x| {
        let mut u = u0.clone();
        spectral_penalty(x, r, c, &mut u, 500, 0.3).unwrap().0
    });
}

#[test]
fn spectral_norm_state_persists_across_calls() {
    // One round per call from a persistent u converges to the many-round answer.
    let (r, c) = (5, 3);
    let w = random(r * c, 1.0, 8);
    let (exact, _) = spectral_norm(&w, r, c, &mut Vec::new(), 1000).unwrap();
    let mut u = Vec::new();
    let (first, _) = spectral_norm(&w, r, c, &mut u, 1).unwrap();
    let mut last = first;
    for _ in 0..300 {
        last = spectral_norm(&w, r, c, &mut u, 1).unwrap().0;
    }
    assert!(first <= exact + 1e-5);
    assert!(close(last, exact, 1e-5), "{last} vs {exact}");
}

#[test]
fn spectral_norm_of_zero_is_zero() {
    let mut u = vec![1.0, 0.0];
    let (sigma, g) = spectral_norm(&[0.0; 6], 2, 3, &mut u, 3).unwrap();
    assert_eq!(sigma, 0.0);
    assert!(g.iter().all(|&x| x == 0.0));
}

#[test]
fn bad_shapes_and_parameters_are_errors() {
    assert!(matches!(
        softmax_cross_entropy(&[0.0; 6], 0, &[]),
        Err(LossError::NoClasses { .. })
    ));
    assert!(matches!(
        softmax_cross_entropy(&[0.0; 7], 3, &[0, 0]),
        Err(LossError::Length { what: "logits", .. })
    ));
    assert!(matches!(
        softmax_cross_entropy(&[0.0; 6], 3, &[0]),
        Err(LossError::Length {
            what: "labels",
            expected: 2,
            found: 1,
            ..
        })
    ));
    assert!(matches!(
        softmax_cross_entropy(&[0.0; 6], 3, &[0, 3]),
        Err(LossError::Label {
            index: 1,
            label: 3,
            classes: 3,
            ..
        })
    ));
    let empty = softmax_cross_entropy(&[], 3, &[]).unwrap();
    assert_eq!((empty.loss, empty.grad.len(), empty.correct), (0.0, 0, 0));
    assert!(matches!(
        distillation_kl(&[0.0; 4], &[0.0; 2], 2, 1.0),
        Err(LossError::Length {
            what: "teacher logits",
            ..
        })
    ));
    for t in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        assert!(matches!(
            distillation_kl(&[0.0; 4], &[0.0; 4], 2, t),
            Err(LossError::Param {
                param: "temperature",
                ..
            })
        ));
    }
    assert!(matches!(
        distillation_loss(&[0.0; 4], &[0.0; 4], 2, &[0, 1], 1.5, 1.0),
        Err(LossError::Param { param: "alpha", .. })
    ));
    let mut u = Vec::new();
    assert!(matches!(
        spectral_norm(&[0.0; 5], 2, 3, &mut u, 1),
        Err(LossError::Length { what: "weight", .. })
    ));
    assert!(matches!(
        spectral_norm(&[], 0, 3, &mut u, 1),
        Err(LossError::Length { .. })
    ));
    assert!(matches!(
        spectral_norm(&[1.0; 6], 2, 3, &mut u, 0),
        Err(LossError::Param { param: "iters", .. })
    ));
    assert!(matches!(
        spectral_penalty(&[1.0; 6], 2, 3, &mut u, 1, -1.0),
        Err(LossError::Param {
            param: "lambda",
            ..
        })
    ));
}
