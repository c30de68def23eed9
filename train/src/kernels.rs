//! Float kernels for training: `conv2d` and `dense` forward and backward on `f32`
//! slices in the IR's layouts (activations NHWC, conv weights OHWI, dense weights
//! `[O, K]`).
//!
//! Binary layers train on their numeric values: a `b1` operand is a tensor of
//! -1.0/+1.0, so the float products are exact integers (below 2^24) and equal what
//! the packed popcount kernels compute at inference.
//!
//! Each kernel has a slow oracle here (`*_naive`), written as the op's formula, and
//! the differential tests in this module compare the fast paths against it.
//!
//! Fast paths (same signatures without `_naive`): [`conv2d_forward`] and
//! [`conv2d_backward`] (im2col + `sgemm`, direct kernels for depthwise, rayon over
//! chunks of images), [`dense_forward`] and [`dense_backward`] (one `sgemm` each).
//! They keep per-thread scratch buffers between calls. Measure them with
//! `cargo run --release -p bnnc-runtime --example train_kernels_bench`.

mod conv;
mod dense;
mod depthwise;
mod gemm;
#[cfg(test)]
mod tests;

pub use conv::{conv2d_backward, conv2d_forward};
pub use dense::{dense_backward, dense_forward};

use bnnc_ir::{Conv2dAttrs, PadValue};

/// The geometry of one `conv2d`: input `[n, h, w, c]`, weights `[o, kh, kw, c/groups]`,
/// output `[n, oh, ow, o]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvGeom {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub o: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: [usize; 2],
    /// `[top, left, bottom, right]`.
    pub padding: [usize; 4],
    pub dilation: [usize; 2],
    pub groups: usize,
    /// What an out-of-bounds input position holds: 0.0, +1.0 or -1.0. A padded
    /// position with a nonzero value contributes `pad * w` to the sum, and its
    /// weight receives `pad * dy` as gradient; the input gets no gradient there.
    pub pad: f32,
    pub oh: usize,
    pub ow: usize,
}

impl ConvGeom {
    /// The geometry of `conv2d(x, w, attrs)` for `x: [n, h, w, c]` and
    /// `w: [o, kh, kw, c/groups]`; `None` if the shapes do not fit together.
    pub fn new(attrs: &Conv2dAttrs, x_dims: &[usize], w_dims: &[usize]) -> Option<ConvGeom> {
        let (&[n, h, w, c], &[o, kh, kw, cg]) = (x_dims, w_dims) else {
            return None;
        };
        let groups = attrs.groups;
        if groups == 0 || c % groups != 0 || o % groups != 0 || c / groups != cg {
            return None;
        }
        let [top, left, bottom, right] = attrs.padding;
        let extent = |input: usize, pad: usize, k: usize, d: usize, s: usize| {
            let span = d.checked_mul(k.checked_sub(1)?)?.checked_add(1)?;
            let avail = input.checked_add(pad)?.checked_sub(span)?;
            Some(avail / s + 1)
        };
        let oh = extent(h, top + bottom, kh, attrs.dilation[0], attrs.stride[0])?;
        let ow = extent(w, left + right, kw, attrs.dilation[1], attrs.stride[1])?;
        let pad = match attrs.effective_pad() {
            PadValue::PlusOne => 1.0,
            PadValue::MinusOne => -1.0,
            PadValue::Zero => 0.0,
        };
        Some(ConvGeom {
            n,
            h,
            w,
            c,
            o,
            kh,
            kw,
            stride: attrs.stride,
            padding: attrs.padding,
            dilation: attrs.dilation,
            groups,
            pad,
            oh,
            ow,
        })
    }

    /// Input channels per group.
    pub fn cg(&self) -> usize {
        self.c / self.groups
    }

    /// Output channels per group.
    pub fn og(&self) -> usize {
        self.o / self.groups
    }

    /// The input position read by output `(y, x)` at tap `(i, j)`, or `None` when
    /// it lies in the padding.
    pub fn tap(&self, y: usize, x: usize, i: usize, j: usize) -> Option<(usize, usize)> {
        let iy = (y * self.stride[0] + i * self.dilation[0]).checked_sub(self.padding[0])?;
        let ix = (x * self.stride[1] + j * self.dilation[1]).checked_sub(self.padding[1])?;
        (iy < self.h && ix < self.w).then_some((iy, ix))
    }
}

/// Oracle: `y[n,oy,ox,o] = sum_{i,j,c} in(n, tap, g*Cg + c) * w[o,i,j,c]`, padded
/// positions reading `g.pad`. Overwrites `y`.
pub fn conv2d_forward_naive(g: &ConvGeom, x: &[f32], w: &[f32], y: &mut [f32]) {
    let (cg, og) = (g.cg(), g.og());
    for n in 0..g.n {
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                for o in 0..g.o {
                    let grp = o / og;
                    let mut acc = 0.0f32;
                    for i in 0..g.kh {
                        for j in 0..g.kw {
                            for c in 0..cg {
                                let wv = w[((o * g.kh + i) * g.kw + j) * cg + c];
                                let xv = match g.tap(oy, ox, i, j) {
                                    Some((iy, ix)) => {
                                        x[((n * g.h + iy) * g.w + ix) * g.c + grp * cg + c]
                                    }
                                    None => g.pad,
                                };
                                acc += xv * wv;
                            }
                        }
                    }
                    y[((n * g.oh + oy) * g.ow + ox) * g.o + o] = acc;
                }
            }
        }
    }
}

/// Oracle: gradients of [`conv2d_forward_naive`] given `dy`. Overwrites `dx` and
/// `dw` when given. `dx` gets nothing from padded positions; `dw` gets `pad * dy`
/// from them.
pub fn conv2d_backward_naive(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    mut dx: Option<&mut [f32]>,
    mut dw: Option<&mut [f32]>,
) {
    if let Some(dx) = dx.as_deref_mut() {
        dx.fill(0.0);
    }
    if let Some(dw) = dw.as_deref_mut() {
        dw.fill(0.0);
    }
    let (cg, og) = (g.cg(), g.og());
    for n in 0..g.n {
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                for o in 0..g.o {
                    let grp = o / og;
                    let d = dy[((n * g.oh + oy) * g.ow + ox) * g.o + o];
                    for i in 0..g.kh {
                        for j in 0..g.kw {
                            for c in 0..cg {
                                let wi = ((o * g.kh + i) * g.kw + j) * cg + c;
                                match g.tap(oy, ox, i, j) {
                                    Some((iy, ix)) => {
                                        let xi = ((n * g.h + iy) * g.w + ix) * g.c + grp * cg + c;
                                        if let Some(dx) = dx.as_deref_mut() {
                                            dx[xi] += d * w[wi];
                                        }
                                        if let Some(dw) = dw.as_deref_mut() {
                                            dw[wi] += d * x[xi];
                                        }
                                    }
                                    None => {
                                        if let Some(dw) = dw.as_deref_mut() {
                                            dw[wi] += d * g.pad;
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Oracle: `y[n,o] = sum_k x[n,k] * w[o,k]` for `x: [n, k]`, `w: [o, k]`.
/// Overwrites `y`.
pub fn dense_forward_naive(n: usize, k: usize, o: usize, x: &[f32], w: &[f32], y: &mut [f32]) {
    for r in 0..n {
        for c in 0..o {
            let mut acc = 0.0f32;
            for i in 0..k {
                acc += x[r * k + i] * w[c * k + i];
            }
            y[r * o + c] = acc;
        }
    }
}

/// Oracle: gradients of [`dense_forward_naive`]: `dx = dy w`, `dw = dy^T x`.
/// Overwrites `dx` and `dw` when given.
#[allow(clippy::too_many_arguments)]
pub fn dense_backward_naive(
    n: usize,
    k: usize,
    o: usize,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dw: Option<&mut [f32]>,
) {
    if let Some(dx) = dx {
        for r in 0..n {
            for i in 0..k {
                dx[r * k + i] = (0..o).map(|c| dy[r * o + c] * w[c * k + i]).sum();
            }
        }
    }
    if let Some(dw) = dw {
        for c in 0..o {
            for i in 0..k {
                dw[c * k + i] = (0..n).map(|r| dy[r * o + c] * x[r * k + i]).sum();
            }
        }
    }
}
