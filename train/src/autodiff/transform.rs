//! Weight reparameterisations of published BNN methods, applied to a latent
//! weight before the graph uses it, with their gradients. Rows are output
//! channels: the first axis of an OHWI conv or `[O, K]` dense weight.

/// A standardised weight: the value the graph uses and what its backward needs.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Standardized {
    /// `(w - mean_o) / std_o`, same layout as `w`.
    pub value: Vec<f32>,
    /// `1 / std_o` per row.
    inv_std: Vec<f32>,
}

/// Per-row standardisation `w'_{o,i} = (w_{o,i} - mean_o) / sqrt(var_o + eps)`,
/// with `mean_o` and the population variance `var_o` of row `o` (accumulated in
/// f64). This is the weight balancing and standardisation of IR-Net's Libra-PB
/// (Qin et al., CVPR 2020) and DIR-Net's information-maximised binarisation
/// (Qin et al., IJCV 2023), and AdaBin's weight equalisation (Tu et al., ECCV
/// 2022: `beta_w = mean(w)`, `alpha_w = ||w - beta_w||_2 / sqrt(n)`).
pub(super) fn standardize_forward(w: &[f32], rows: usize, eps: f32) -> Standardized {
    let n = w.len().checked_div(rows).unwrap_or(0);
    let mut value = vec![0.0f32; w.len()];
    let mut inv_std = vec![0.0f32; rows];
    if n == 0 {
        return Standardized { value, inv_std };
    }
    for ((row, dst), inv) in w.chunks(n).zip(value.chunks_mut(n)).zip(&mut inv_std) {
        let mean = row.iter().map(|&e| e as f64).sum::<f64>() / n as f64;
        let var = row
            .iter()
            .map(|&e| (e as f64 - mean) * (e as f64 - mean))
            .sum::<f64>()
            / n as f64;
        let is = 1.0 / (var + eps as f64).sqrt();
        *inv = is as f32;
        for (d, &e) in dst.iter_mut().zip(row) {
            *d = ((e as f64 - mean) * is) as f32;
        }
    }
    Standardized { value, inv_std }
}

/// Gradient of [`standardize_forward`] given `g = dL/dw'`, through the row mean
/// and variance: `dw = (1/std_o) (g - mean_o(g) - w' mean_o(g w'))`.
pub(super) fn standardize_backward(s: &Standardized, g: &[f32]) -> Vec<f32> {
    let rows = s.inv_std.len();
    let n = g.len().checked_div(rows).unwrap_or(0);
    let mut dw = vec![0.0f32; g.len()];
    if n == 0 {
        return dw;
    }
    for (((gr, wr), dst), &inv) in g
        .chunks(n)
        .zip(s.value.chunks(n))
        .zip(dw.chunks_mut(n))
        .zip(&s.inv_std)
    {
        let mg = gr.iter().map(|&e| e as f64).sum::<f64>() / n as f64;
        let mgw = gr
            .iter()
            .zip(wr)
            .map(|(&a, &b)| a as f64 * b as f64)
            .sum::<f64>()
            / n as f64;
        for ((d, &gi), &wi) in dst.iter_mut().zip(gr).zip(wr) {
            *d = (inv as f64 * (gi as f64 - mg - wi as f64 * mgw)) as f32;
        }
    }
    dw
}

/// XNOR-Net's weight scale (Rastegari et al., ECCV 2016, eq. 6):
/// `alpha_o = (1/n) sum_i |W_{o,i}|` per row of `w` (accumulated in f64).
pub(super) fn xnor_scale_forward(w: &[f32], rows: usize) -> Vec<f32> {
    let n = w.len().checked_div(rows).unwrap_or(0);
    if n == 0 {
        return vec![0.0; rows];
    }
    w.chunks(n)
        .map(|row| (row.iter().map(|&e| (e as f64).abs()).sum::<f64>() / n as f64) as f32)
        .collect()
}

/// Gradient of [`xnor_scale_forward`] given `g = dL/dalpha`:
/// `dW_{o,i} = g_o sgn(W_{o,i}) / n` with `sgn(0) = 0` (the subgradient of `|w|`
/// symmetric about 0).
pub(super) fn xnor_scale_backward(w: &[f32], g: &[f32]) -> Vec<f32> {
    let rows = g.len();
    let n = w.len().checked_div(rows).unwrap_or(0);
    let mut dw = vec![0.0f32; w.len()];
    if n == 0 {
        return dw;
    }
    for ((row, dst), &go) in w.chunks(n).zip(dw.chunks_mut(n)).zip(g) {
        for (d, &e) in dst.iter_mut().zip(row) {
            let s = if e > 0.0 {
                1.0
            } else if e < 0.0 {
                -1.0
            } else {
                0.0
            };
            *d = go * s / n as f32;
        }
    }
    dw
}
