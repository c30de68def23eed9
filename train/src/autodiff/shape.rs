//! Data movement (concat, replicate, channel_shuffle) and softmax on `f32`
//! buffers, forward in the interpreter's order and backward.

/// Splits `dims` around `axis` into (outer, axis length, inner) element counts.
pub(super) fn split(dims: &[usize], axis: usize) -> (usize, usize, usize) {
    let prod = |d: &[usize]| d.iter().product::<usize>();
    (prod(&dims[..axis]), dims[axis], prod(&dims[axis + 1..]))
}

/// `concat` of `parts` along an axis: `outer` is the product of the dims before
/// the axis, each part's `chunk` the product of its dims from the axis on; the
/// result holds, per outer index, each part's chunk in turn.
pub(super) fn concat_forward(parts: &[(&[f32], usize)], outer: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.0.len()).sum());
    for o in 0..outer {
        for &(v, k) in parts {
            out.extend_from_slice(&v[o * k..(o + 1) * k]);
        }
    }
    out
}

/// Gradient of [`concat_forward`]: the slice of `g` each part contributed.
pub(super) fn concat_backward(g: &[f32], chunks: &[usize], outer: usize) -> Vec<Vec<f32>> {
    let mut out: Vec<Vec<f32>> = chunks
        .iter()
        .map(|&k| Vec::with_capacity(k * outer))
        .collect();
    let mut at = 0;
    for _ in 0..outer {
        for (dst, &k) in out.iter_mut().zip(chunks) {
            dst.extend_from_slice(&g[at..at + k]);
            at += k;
        }
    }
    out
}

/// `out[r, j] = x[r, src(j)]` for rows of `c` input and `out_c` output channels.
pub(super) fn gather_forward(
    x: &[f32],
    c: usize,
    out_c: usize,
    src: impl Fn(usize) -> usize,
) -> Vec<f32> {
    let rows = x.len().checked_div(c).unwrap_or(0);
    let mut out = Vec::with_capacity(rows * out_c);
    for r in 0..rows {
        let row = &x[r * c..(r + 1) * c];
        out.extend((0..out_c).map(|j| row[src(j)]));
    }
    out
}

/// Gradient of [`gather_forward`]: `dx[r, src(j)] += g[r, j]` (a replicated
/// channel sums the gradients of its replicas).
pub(super) fn gather_backward(
    g: &[f32],
    c: usize,
    out_c: usize,
    src: impl Fn(usize) -> usize,
) -> Vec<f32> {
    let rows = g.len().checked_div(out_c).unwrap_or(0);
    let mut dx = vec![0.0f32; rows * c];
    for r in 0..rows {
        for j in 0..out_c {
            dx[r * c + src(j)] += g[r * out_c + j];
        }
    }
    dx
}

/// `softmax` along an axis split as (outer, len, inner): `m` = the largest
/// non-NaN element, `e_k = exp(x_k - m)`, `s = sum_k e_k` in index order from
/// +0.0, `y_k = e_k / s`.
pub(super) fn softmax_forward(x: &[f32], outer: usize, len: usize, inner: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| (o * len + k) * inner + i;
            let m = (0..len).map(|k| x[at(k)]).fold(f32::NEG_INFINITY, f32::max);
            let mut s = 0.0f32;
            for k in 0..len {
                let e = (x[at(k)] - m).exp();
                out[at(k)] = e;
                s += e;
            }
            for k in 0..len {
                out[at(k)] /= s;
            }
        }
    }
    out
}

/// Gradient of [`softmax_forward`] from its output `y`:
/// `dx_k = y_k (g_k - sum_j g_j y_j)`.
pub(super) fn softmax_backward(
    y: &[f32],
    g: &[f32],
    outer: usize,
    len: usize,
    inner: usize,
) -> Vec<f32> {
    let mut dx = vec![0.0f32; y.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| (o * len + k) * inner + i;
            let dot: f64 = (0..len).map(|k| g[at(k)] as f64 * y[at(k)] as f64).sum();
            for k in 0..len {
                dx[at(k)] = (y[at(k)] as f64 * (g[at(k)] as f64 - dot)) as f32;
            }
        }
    }
    dx
}
