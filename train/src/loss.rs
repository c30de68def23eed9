//! Losses and regularisers, each returning its value and its gradient.
//!
//! - [`softmax_cross_entropy`]: the classification loss (mean over the batch);
//! - [`distillation_kl`]: knowledge distillation from a teacher's logits
//!   (Hinton et al. 2015), and [`distillation_loss`] mixing it with the
//!   cross-entropy by a weight `alpha`;
//! - [`spectral_norm`] and [`spectral_penalty`]: the largest singular value of a
//!   weight matrix by power iteration, for a Lipschitz regulariser of binary layers
//!   (after Shang et al. 2022, LCR).
//!
//! Logits are row-major `[batch, classes]` slices. Every function checks its shapes
//! and parameters and returns a [`LossError`] instead of panicking. Internally the
//! arithmetic is done in `f64` and rounded to `f32` at the end.

/// Why a loss could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LossError {
    /// `classes` is zero.
    #[error("{loss}: classes must be at least 1")]
    NoClasses { loss: &'static str },
    /// A slice length does not fit the others.
    #[error("{loss}: {what} has {found} elements, expected {expected}")]
    Length {
        loss: &'static str,
        what: &'static str,
        expected: usize,
        found: usize,
    },
    /// A label is not a class index.
    #[error("{loss}: label {index} is {label}, not below {classes} classes")]
    Label {
        loss: &'static str,
        index: usize,
        label: u8,
        classes: usize,
    },
    /// A scalar parameter is outside its domain.
    #[error("{loss}: {param} = {value}: {why}")]
    Param {
        loss: &'static str,
        param: &'static str,
        value: f64,
        why: &'static str,
    },
}

/// Value, gradient and accuracy count of a classification loss on one batch.
#[derive(Clone, Debug, PartialEq)]
pub struct LossOut {
    /// The loss, averaged over the batch (0 for an empty batch).
    pub loss: f32,
    /// d loss / d logits, same layout as the logits.
    pub grad: Vec<f32>,
    /// Number of rows whose arg-max logit (the first one on ties) is the label.
    pub correct: usize,
}

/// The batch size of `logits` (`[batch, classes]`), checking `classes >= 1` and
/// that the length is a multiple of `classes`.
fn batch_of(loss: &'static str, logits: &[f32], classes: usize) -> Result<usize, LossError> {
    if classes == 0 {
        return Err(LossError::NoClasses { loss });
    }
    if !logits.len().is_multiple_of(classes) {
        return Err(LossError::Length {
            loss,
            what: "logits",
            expected: (logits.len() / classes + 1) * classes,
            found: logits.len(),
        });
    }
    Ok(logits.len() / classes)
}

/// `softmax(row / temperature)` and `log softmax(row / temperature)` in `f64`, by
/// log-sum-exp: `log p_j = z_j - m - ln sum_k exp(z_k - m)` with `m = max_k z_k`,
/// so no exponent overflows.
fn log_softmax(row: &[f32], temperature: f64) -> (Vec<f64>, Vec<f64>) {
    let z: Vec<f64> = row.iter().map(|&x| f64::from(x) / temperature).collect();
    let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let lse = m + z.iter().map(|&x| (x - m).exp()).sum::<f64>().ln();
    let logp: Vec<f64> = z.iter().map(|&x| x - lse).collect();
    let p = logp.iter().map(|&l| l.exp()).collect();
    (p, logp)
}

/// Index of the largest value, the first on ties.
fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (j, &x) in row.iter().enumerate() {
        if x > row[best] {
            best = j;
        }
    }
    best
}

/// Softmax cross-entropy of `logits` (`[B, classes]`, row-major) against `labels`
/// (`B` class indices), averaged over the batch:
///
/// `L = (1/B) sum_b ( logsumexp_j z_bj - z_b,y_b )`,
/// `dL/dz_bj = (softmax(z_b)_j - [j = y_b]) / B`.
///
/// The log-sum-exp is shifted by the row maximum, so large logits neither
/// overflow nor lose the loss. `correct` counts rows whose first arg-max is the
/// label. An empty batch gives loss 0, an empty gradient and 0 correct.
/// Errors: `classes == 0`, `logits.len() != labels.len() * classes`, a label
/// `>= classes`.
pub fn softmax_cross_entropy(
    logits: &[f32],
    classes: usize,
    labels: &[u8],
) -> Result<LossOut, LossError> {
    const LOSS: &str = "softmax_cross_entropy";
    let b = batch_of(LOSS, logits, classes)?;
    check_labels(LOSS, b, classes, labels)?;
    let mut grad = vec![0f32; logits.len()];
    let mut total = 0f64;
    let mut correct = 0;
    let inv_b = 1.0 / b.max(1) as f64;
    for (i, (row, g)) in logits
        .chunks_exact(classes)
        .zip(grad.chunks_exact_mut(classes))
        .enumerate()
    {
        let y = usize::from(labels[i]);
        let (p, logp) = log_softmax(row, 1.0);
        total -= logp[y];
        for j in 0..classes {
            let onehot = if j == y { 1.0 } else { 0.0 };
            g[j] = ((p[j] - onehot) * inv_b) as f32;
        }
        if argmax(row) == y {
            correct += 1;
        }
    }
    Ok(LossOut {
        loss: (total * inv_b) as f32,
        grad,
        correct,
    })
}

fn check_labels(
    loss: &'static str,
    batch: usize,
    classes: usize,
    labels: &[u8],
) -> Result<(), LossError> {
    if labels.len() != batch {
        return Err(LossError::Length {
            loss,
            what: "labels",
            expected: batch,
            found: labels.len(),
        });
    }
    if let Some((index, &label)) = labels
        .iter()
        .enumerate()
        .find(|(_, &l)| usize::from(l) >= classes)
    {
        return Err(LossError::Label {
            loss,
            index,
            label,
            classes,
        });
    }
    Ok(())
}

/// Knowledge-distillation loss of Hinton, Vinyals & Dean 2015 ("Distilling the
/// Knowledge in a Neural Network"), the soft-target term used to train binary
/// students from real-valued teachers (BNext, Guo et al. 2022; the output-level
/// distillation of DIR-Net, Qin et al. 2023, whose RBD also has feature-level
/// terms that are not this function):
///
/// `p = softmax(t / T)`, `q = softmax(s / T)` per row,
/// `L = T^2 (1/B) sum_b KL(p_b || q_b) = T^2 (1/B) sum_b sum_j p_bj (log p_bj - log q_bj)`,
/// `dL/ds_bj = T (q_bj - p_bj) / B`.
///
/// The `T^2` factor keeps the gradient's scale independent of `T` (Hinton et al.,
/// section 2). The teacher is a constant: no gradient flows to it. Returns
/// `(L, dL/dstudent)`; `L >= 0`, and `L = 0` when `student == teacher`.
/// Errors: `classes == 0`, lengths that differ or are not a multiple of
/// `classes`, `temperature` not finite and positive.
pub fn distillation_kl(
    student: &[f32],
    teacher: &[f32],
    classes: usize,
    temperature: f32,
) -> Result<(f32, Vec<f32>), LossError> {
    const LOSS: &str = "distillation_kl";
    let b = batch_of(LOSS, student, classes)?;
    if teacher.len() != student.len() {
        return Err(LossError::Length {
            loss: LOSS,
            what: "teacher logits",
            expected: student.len(),
            found: teacher.len(),
        });
    }
    if !(temperature.is_finite() && temperature > 0.0) {
        return Err(LossError::Param {
            loss: LOSS,
            param: "temperature",
            value: f64::from(temperature),
            why: "must be finite and positive",
        });
    }
    let t = f64::from(temperature);
    let inv_b = 1.0 / b.max(1) as f64;
    let mut grad = vec![0f32; student.len()];
    let mut total = 0f64;
    for ((s_row, t_row), g) in student
        .chunks_exact(classes)
        .zip(teacher.chunks_exact(classes))
        .zip(grad.chunks_exact_mut(classes))
    {
        let (q, logq) = log_softmax(s_row, t);
        let (p, logp) = log_softmax(t_row, t);
        for j in 0..classes {
            // 0 log 0 = 0: a class the teacher rules out adds nothing.
            if p[j] > 0.0 {
                total += p[j] * (logp[j] - logq[j]);
            }
            g[j] = (t * (q[j] - p[j]) * inv_b) as f32;
        }
    }
    Ok(((t * t * total * inv_b) as f32, grad))
}

/// Cross-entropy on the labels mixed with distillation from a teacher:
///
/// `L = (1 - alpha) CE(s, y) + alpha KD_T(s, t)`
///
/// with CE from [`softmax_cross_entropy`] and `KD_T` from [`distillation_kl`]
/// (Hinton et al. 2015 weight the two terms the same way; `alpha = 1` is pure
/// distillation, as in BNext's and DIR-Net's teacher-only training). The gradient
/// is the same mix of the two gradients; `correct` is the student's accuracy count
/// on the labels. Errors: those of both losses, and `alpha` outside `[0, 1]`.
pub fn distillation_loss(
    student: &[f32],
    teacher: &[f32],
    classes: usize,
    labels: &[u8],
    alpha: f32,
    temperature: f32,
) -> Result<LossOut, LossError> {
    if !(0.0..=1.0).contains(&alpha) {
        return Err(LossError::Param {
            loss: "distillation_loss",
            param: "alpha",
            value: f64::from(alpha),
            why: "must be in [0, 1]",
        });
    }
    let ce = softmax_cross_entropy(student, classes, labels)?;
    let (kd, kd_grad) = distillation_kl(student, teacher, classes, temperature)?;
    let grad = ce
        .grad
        .iter()
        .zip(&kd_grad)
        .map(|(&c, &k)| (1.0 - alpha) * c + alpha * k)
        .collect();
    Ok(LossOut {
        loss: (1.0 - alpha) * ce.loss + alpha * kd,
        grad,
        correct: ce.correct,
    })
}

/// Largest singular value `sigma` of the row-major `rows x cols` matrix `w`, by
/// power iteration (Golub & Van Loan; as used for spectral normalisation by
/// Miyato et al. 2018), and its gradient `d sigma / d w = u v^T`.
///
/// Each of the `iters` rounds computes `v = W^T u / |W^T u|`, then
/// `u = W v / |W v|`; finally `sigma = u^T W v`. `u` (length `rows`) persists
/// across calls, so one round per training step tracks the slowly changing
/// weights (Miyato et al., Algorithm 1); if `u` does not have `rows` elements or is
/// all zero it is (re)initialised from a fixed pseudo-random vector, so the result
/// is deterministic. When the top singular value is simple and the iteration has
/// converged, `u` and `v` are the top singular vectors and `u v^T` is the exact
/// gradient of `sigma` (`d sigma = u^T dW v`). A zero matrix gives `sigma = 0` and a
/// zero gradient (and leaves `u` unchanged).
///
/// For a convolution the weight `[o, kh, kw, c]` (or any layout with the output
/// channel first) is used as the matrix `[o, kh*kw*c]`: pass `rows = o`,
/// `cols = kh*kw*c` and the weight slice as it is.
///
/// Errors: `w.len() != rows * cols`, `rows` or `cols` zero, `iters == 0`.
pub fn spectral_norm(
    w: &[f32],
    rows: usize,
    cols: usize,
    u: &mut Vec<f32>,
    iters: usize,
) -> Result<(f32, Vec<f32>), LossError> {
    const LOSS: &str = "spectral_norm";
    if rows == 0 || cols == 0 || rows.checked_mul(cols) != Some(w.len()) {
        return Err(LossError::Length {
            loss: LOSS,
            what: "weight",
            expected: rows.saturating_mul(cols),
            found: w.len(),
        });
    }
    if iters == 0 {
        return Err(LossError::Param {
            loss: LOSS,
            param: "iters",
            value: 0.0,
            why: "power iteration needs at least one round",
        });
    }
    if u.len() != rows || u.iter().all(|&x| x == 0.0) {
        *u = initial_vector(rows);
    }
    let w64: Vec<f64> = w.iter().map(|&x| f64::from(x)).collect();
    let mut u64v: Vec<f64> = u.iter().map(|&x| f64::from(x)).collect();
    let mut v = vec![0f64; cols];
    for _ in 0..iters {
        // v = W^T u
        v.iter_mut().for_each(|x| *x = 0.0);
        for (r, row) in w64.chunks_exact(cols).enumerate() {
            for (vc, &x) in v.iter_mut().zip(row) {
                *vc += x * u64v[r];
            }
        }
        if !normalize(&mut v) {
            return Ok((0.0, vec![0.0; w.len()]));
        }
        // u = W v
        for (ur, row) in u64v.iter_mut().zip(w64.chunks_exact(cols)) {
            *ur = row.iter().zip(&v).map(|(&x, &vc)| x * vc).sum();
        }
        if !normalize(&mut u64v) {
            return Ok((0.0, vec![0.0; w.len()]));
        }
    }
    let sigma: f64 = w64
        .chunks_exact(cols)
        .zip(&u64v)
        .map(|(row, &ur)| ur * row.iter().zip(&v).map(|(&x, &vc)| x * vc).sum::<f64>())
        .sum();
    let mut grad = Vec::with_capacity(w.len());
    for &ur in &u64v {
        grad.extend(v.iter().map(|&vc| (ur * vc) as f32));
    }
    *u = u64v.iter().map(|&x| x as f32).collect();
    Ok((sigma as f32, grad))
}

/// Scales `x` to unit length; false (leaving `x` alone) if its norm is zero or
/// not finite.
fn normalize(x: &mut [f64]) -> bool {
    let n = x.iter().map(|&a| a * a).sum::<f64>().sqrt();
    if n > 0.0 && n.is_finite() {
        x.iter_mut().for_each(|a| *a /= n);
        true
    } else {
        false
    }
}

/// A fixed, generic starting vector for power iteration (values in `[-1, 1)`,
/// from a 64-bit linear congruential generator of Knuth's MMIX constants): not
/// orthogonal to any particular singular vector the way a constant vector can be.
fn initial_vector(n: usize) -> Vec<f32> {
    let mut s: u64 = 0x853c_49e6_748f_ea9b;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The spectral-norm penalty of one layer and its gradient:
///
/// `R(W) = (lambda / 2) sigma(W)^2`, `dR/dW = lambda sigma(W) u v^T`,
/// with `sigma`, `u`, `v` from [`spectral_norm`] (same `u` state and `iters`).
///
/// How the trainer adds it (the Lipschitz regulariser for binary networks): the
/// training loss is `L = L_task + sum_l R(W_l)` over the binary conv/dense layers
/// `l`, each `W_l` viewed as `[out, in]` (conv: `[o, kh*kw*c]`), and `dR/dW_l` is
/// added to the layer's weight gradient before the optimiser step. The product of
/// the layers' spectral norms bounds the network's Lipschitz constant, which is
/// what LCR (Shang et al. 2022, "Lipschitz Continuity Retained Binary Neural
/// Network") controls. LCR itself approximates the spectral norms through
/// "Retention Matrices" and aligns the binary layer's with its latent real-valued
/// layer's; this is the simpler direct penalty on the exact (power-iteration)
/// spectral norm, with no retention matrices. Whether `W_l` is the latent weight or
/// its binarised value is the trainer's choice; for the binarised value, the
/// gradient reaches the latent weight through the sign estimator.
///
/// Errors: those of [`spectral_norm`], and `lambda` negative or not finite.
pub fn spectral_penalty(
    w: &[f32],
    rows: usize,
    cols: usize,
    u: &mut Vec<f32>,
    iters: usize,
    lambda: f32,
) -> Result<(f32, Vec<f32>), LossError> {
    if !(lambda.is_finite() && lambda >= 0.0) {
        return Err(LossError::Param {
            loss: "spectral_penalty",
            param: "lambda",
            value: f64::from(lambda),
            why: "must be finite and non-negative",
        });
    }
    let (sigma, mut grad) = spectral_norm(w, rows, cols, u, iters)?;
    grad.iter_mut().for_each(|g| *g *= lambda * sigma);
    Ok((0.5 * lambda * sigma * sigma, grad))
}
