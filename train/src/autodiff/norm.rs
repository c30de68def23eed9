//! Batch normalization (Ioffe & Szegedy, 2015) over `[.., C]` buffers, per
//! channel (the last axis):
//!
//! `y = (x - mean) / sqrt(var + eps) * gamma + beta`,
//!
//! evaluated in f32 in exactly that order, as the interpreter does. In eval mode
//! `mean`/`var` are the operands (running statistics); in train mode they are the
//! batch statistics over all axes but the last, `mean_B = (1/M) sum x` and the
//! biased `var_B = (1/M) sum (x - mean_B)^2` (M values per channel), and the
//! running statistics are updated by the caller.

use super::par;

/// Batch statistics of one channel set: the mean and biased variance per channel
/// (accumulated in f64, rounded to f32), and the number of values per channel.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct BnStats {
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    pub count: usize,
}

/// The batch statistics of `x` (rows of `c` channels).
pub(super) fn batch_stats(x: &[f32], c: usize) -> BnStats {
    let count = x.len().checked_div(c).unwrap_or(0);
    let sum = par::reduce_rows(count, c, c, |rows, acc| {
        for row in x[rows.start * c..rows.end * c].chunks(c) {
            for (s, &e) in acc.iter_mut().zip(row) {
                *s += e as f64;
            }
        }
    });
    let mean64: Vec<f64> = sum.iter().map(|&s| s / count as f64).collect();
    let sq = par::reduce_rows(count, c, c, |rows, acc| {
        for row in x[rows.start * c..rows.end * c].chunks(c) {
            for ((s, &e), &m) in acc.iter_mut().zip(row).zip(&mean64) {
                let d = e as f64 - m;
                *s += d * d;
            }
        }
    });
    BnStats {
        mean: mean64.iter().map(|&m| m as f32).collect(),
        var: sq.iter().map(|&s| (s / count as f64) as f32).collect(),
        count,
    }
}

/// `y = (x - mean) / sqrt(var + eps) * gamma + beta` per channel, in the
/// interpreter's order.
pub(super) fn forward(
    x: &[f32],
    c: usize,
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f32,
) -> Vec<f32> {
    let std: Vec<f32> = var.iter().map(|&v| (v + eps).sqrt()).collect();
    par::map_rows(x, c, |e, ch| {
        let centered = e - mean[ch];
        let normed = centered / std[ch];
        let scaled = normed * gamma[ch];
        scaled + beta[ch]
    })
}

/// Per-channel sums `(sum g, sum g xhat)` with `xhat = (x - mean) / std`, in f64.
fn sums(x: &[f32], c: usize, mean: &[f32], std: &[f32], g: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let rows = x.len().checked_div(c).unwrap_or(0);
    let mut s = par::reduce_rows(rows, c, 2 * c, |range, acc| {
        for r in range {
            for ch in 0..c {
                let (e, d) = (x[r * c + ch], g[r * c + ch]);
                let xhat = (e - mean[ch]) / std[ch];
                acc[ch] += d as f64;
                acc[c + ch] += d as f64 * xhat as f64;
            }
        }
    });
    let sgx = s.split_off(c);
    (s, sgx)
}

/// Gradients of eval-mode [`forward`] with respect to `[x, gamma, beta, mean,
/// var]` (only the requested ones), with `s = sqrt(var + eps)` and
/// `xhat = (x - mean) / s`:
/// `dx = g gamma / s`, `dgamma = sum g xhat`, `dbeta = sum g`,
/// `dmean = -gamma/s sum g`, `dvar = -gamma / (2 (var + eps)) sum g xhat`.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward_eval(
    x: &[f32],
    c: usize,
    gamma: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f32,
    g: &[f32],
    need: [bool; 5],
) -> [Option<Vec<f32>>; 5] {
    let std: Vec<f32> = var.iter().map(|&v| (v + eps).sqrt()).collect();
    let (sg, sgx) = sums(x, c, mean, &std, g);
    let dx = need[0].then(|| {
        let scale: Vec<f32> = (0..c).map(|ch| gamma[ch] / std[ch]).collect();
        par::map_rows(g, c, |d, ch| d * scale[ch])
    });
    let per = |f: &dyn Fn(usize) -> f64| (0..c).map(|ch| f(ch) as f32).collect::<Vec<f32>>();
    let dgamma = need[1].then(|| per(&|ch| sgx[ch]));
    let dbeta = need[2].then(|| per(&|ch| sg[ch]));
    let dmean = need[3].then(|| per(&|ch| -(gamma[ch] as f64) / std[ch] as f64 * sg[ch]));
    let dvar = need[4]
        .then(|| per(&|ch| -(gamma[ch] as f64) * sgx[ch] / (2.0 * (var[ch] as f64 + eps as f64))));
    [dx, dgamma, dbeta, dmean, dvar]
}

/// Gradients of train-mode [`forward`] (batch statistics `st`) with respect to
/// `[x, gamma, beta]`, the batch mean and variance depending on `x`:
/// `dx = gamma / s (g - mean(g) - xhat mean(g xhat))` with `s = sqrt(var_B + eps)`,
/// `dgamma = sum g xhat`, `dbeta = sum g` (Ioffe & Szegedy, 2015, section 3).
/// The running-statistic operands get no gradient (they do not enter the output).
pub(super) fn backward_train(
    x: &[f32],
    c: usize,
    gamma: &[f32],
    st: &BnStats,
    eps: f32,
    g: &[f32],
    need: [bool; 3],
) -> [Option<Vec<f32>>; 3] {
    let std: Vec<f32> = st.var.iter().map(|&v| (v + eps).sqrt()).collect();
    let (sg, sgx) = sums(x, c, &st.mean, &std, g);
    let m = st.count.max(1) as f64;
    let dx = need[0].then(|| {
        par::zip_map_rows(x, g, c, |e, d, ch| {
            let xhat = ((e - st.mean[ch]) / std[ch]) as f64;
            let d = d as f64 - sg[ch] / m - xhat * sgx[ch] / m;
            (gamma[ch] as f64 / std[ch] as f64 * d) as f32
        })
    });
    let dgamma = need[1].then(|| sgx.iter().map(|&v| v as f32).collect());
    let dbeta = need[2].then(|| sg.iter().map(|&v| v as f32).collect());
    [dx, dgamma, dbeta]
}
