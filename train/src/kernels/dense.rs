//! Fast `dense` forward and backward: one `sgemm` each. matrixmultiply splits a
//! large product over its own threads (both cores) along rows and columns of the
//! result, never along the summed dimension, so results do not depend on the
//! thread count.

use super::gemm::{gemm, Mat};

/// Fast [`super::dense_forward_naive`]: `y[n,o] = sum_k x[n,k] * w[o,k]`,
/// overwriting `y`; equal up to f32 summation order, exactly equal when every
/// partial sum is an integer below 2^24. Panics if a slice length does not match.
pub fn dense_forward(n: usize, k: usize, o: usize, x: &[f32], w: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), n * k, "dense: x length");
    assert_eq!(w.len(), o * k, "dense: w length");
    assert_eq!(y.len(), n * o, "dense: y length");
    gemm(n, k, o, Mat::rows(x, k), Mat::rows_t(w, k), 0.0, y, o);
}

/// Fast [`super::dense_backward_naive`]: `dx = dy w`, `dw = dy^T x`, overwriting
/// each when given; same precision contract as [`dense_forward`]. Panics if a
/// slice length does not match.
#[allow(clippy::too_many_arguments)]
pub fn dense_backward(
    n: usize,
    k: usize,
    o: usize,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dw: Option<&mut [f32]>,
) {
    assert_eq!(x.len(), n * k, "dense: x length");
    assert_eq!(w.len(), o * k, "dense: w length");
    assert_eq!(dy.len(), n * o, "dense: dy length");
    if let Some(dx) = dx {
        assert_eq!(dx.len(), n * k, "dense: dx length");
        gemm(n, o, k, Mat::rows(dy, o), Mat::rows(w, k), 0.0, dx, k);
    }
    if let Some(dw) = dw {
        assert_eq!(dw.len(), o * k, "dense: dw length");
        gemm(o, n, k, Mat::rows_t(dy, o), Mat::rows(x, k), 0.0, dw, k);
    }
}
