//! `conv2d` and `dense` for training, on the float kernels of
//! [`crate::kernels`]. A `b1` operand is a buffer of -1.0/+1.0, so binary
//! layers use the same kernels and their products are exact integers.
//!
//! With `oracle` the `*_naive` kernels run: their sums are in the interpreter's
//! order, so results equal `bnnc_runtime::run` bit for bit. Otherwise the fast
//! kernels run (threaded; equal to the oracles up to f32 summation order, exactly
//! when every partial sum is an integer below 2^24, as in binary layers).
//!
//! Callers pass slices of the lengths the geometry implies.

use crate::kernels::{self, ConvGeom};

/// `conv2d` forward: `y[n, oy, ox, o]` for geometry `g` (see [`ConvGeom`]).
pub(super) fn conv_forward(g: &ConvGeom, x: &[f32], w: &[f32], oracle: bool) -> Vec<f32> {
    let mut y = vec![0.0f32; g.n * g.oh * g.ow * g.o];
    if oracle {
        kernels::conv2d_forward_naive(g, x, w, &mut y);
    } else {
        kernels::conv2d_forward(g, x, w, &mut y);
    }
    y
}

/// `conv2d` backward: `(dx, dw)` given `dy`, each computed only when requested.
pub(super) fn conv_backward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    need: [bool; 2],
    oracle: bool,
) -> [Option<Vec<f32>>; 2] {
    let mut dx = need[0].then(|| vec![0.0f32; x.len()]);
    let mut dw = need[1].then(|| vec![0.0f32; w.len()]);
    if oracle {
        kernels::conv2d_backward_naive(g, x, w, dy, dx.as_deref_mut(), dw.as_deref_mut());
    } else {
        kernels::conv2d_backward(g, x, w, dy, dx.as_deref_mut(), dw.as_deref_mut());
    }
    [dx, dw]
}

/// `dense` forward: `y[n, o] = sum_k x[n, k] w[o, k]`.
pub(super) fn dense_forward(
    n: usize,
    k: usize,
    o: usize,
    x: &[f32],
    w: &[f32],
    oracle: bool,
) -> Vec<f32> {
    let mut y = vec![0.0f32; n * o];
    if oracle {
        kernels::dense_forward_naive(n, k, o, x, w, &mut y);
    } else {
        kernels::dense_forward(n, k, o, x, w, &mut y);
    }
    y
}

/// `dense` backward: `(dx, dw)` given `dy`, each computed only when requested.
#[allow(clippy::too_many_arguments)]
pub(super) fn dense_backward(
    n: usize,
    k: usize,
    o: usize,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    need: [bool; 2],
    oracle: bool,
) -> [Option<Vec<f32>>; 2] {
    let mut dx = need[0].then(|| vec![0.0f32; n * k]);
    let mut dw = need[1].then(|| vec![0.0f32; o * k]);
    let (dxm, dwm) = (dx.as_deref_mut(), dw.as_deref_mut());
    if oracle {
        kernels::dense_backward_naive(n, k, o, x, w, dy, dxm, dwm);
    } else {
        kernels::dense_backward(n, k, o, x, w, dy, dxm, dwm);
    }
    [dx, dw]
}
