//! Direct kernels for depthwise `conv2d` (one input channel per group, `og`
//! output channels per group): per output position and tap, one multiply-add
//! across all `o` output channels, which NHWC keeps contiguous.
//!
//! Output channel `oc` reads input channel `oc / og`. The weights are used
//! transposed, `wt[t][oc] = w[oc, t]` for tap `t = i*kw + j`, so a tap's weights
//! for all channels are one contiguous row; the weight gradient is built in the
//! same transposed layout and transposed back at the end.

use rayon::prelude::*;

use super::conv::{split_chunks, Plan};
use super::gemm::{with_scratch, Slot};
use super::ConvGeom;

/// `acc[i] += a[i] * b[i]`.
fn mul_add(acc: &mut [f32], a: &[f32], b: &[f32]) {
    acc.iter_mut()
        .zip(a.iter().zip(b))
        .for_each(|(acc, (a, b))| *acc += a * b);
}

/// The input row `xrow` (one value per group) as one value per output channel:
/// `xrow` itself when `og == 1`, else `xrow` with each value repeated `og` times
/// in `buf`.
fn expand<'a>(xrow: &'a [f32], og: usize, buf: &'a mut [f32]) -> &'a [f32] {
    if og == 1 {
        return xrow;
    }
    for (dst, &v) in buf.chunks_exact_mut(og).zip(xrow) {
        dst.fill(v);
    }
    buf
}

/// `w[o, t]` transposed to `[t, o]`.
fn transpose_weights(g: &ConvGeom, w: &[f32]) -> Vec<f32> {
    let (taps, o) = (g.kh * g.kw, g.o);
    let mut wt = vec![0.0; taps * o];
    for oc in 0..o {
        for t in 0..taps {
            wt[t * o + oc] = w[oc * taps + t];
        }
    }
    wt
}

/// Depthwise forward; the caller has checked lengths, `g.cg() == 1` and that
/// `y` is not empty. Overwrites `y`; per output, taps are added in the
/// oracle's order.
pub(super) fn forward(g: &ConvGeom, plan: &Plan, x: &[f32], w: &[f32], y: &mut [f32]) {
    let (p, o, c, og) = (g.oh * g.ow, g.o, g.c, g.og());
    let hwc = g.h * g.w * c;
    let wt = transpose_weights(g, w);
    split_chunks(y, p * o, plan, g.n)
        .into_par_iter()
        .enumerate()
        .for_each(|(ci, yc)| {
            let img0 = ci * plan.chunk;
            let mut xe = vec![0.0; if og > 1 { o } else { 0 }];
            for (r, yrow) in yc.chunks_exact_mut(o).enumerate() {
                let (img, pos) = (img0 + r / p, r % p);
                let (oy, ox) = (pos / g.ow, pos % g.ow);
                yrow.fill(0.0);
                for i in 0..g.kh {
                    for j in 0..g.kw {
                        let wrow = &wt[(i * g.kw + j) * o..][..o];
                        match g.tap(oy, ox, i, j) {
                            Some((iy, ix)) => {
                                let xrow = &x[img * hwc + (iy * g.w + ix) * c..][..c];
                                mul_add(yrow, expand(xrow, og, &mut xe), wrow);
                            }
                            None => yrow.iter_mut().zip(wrow).for_each(|(y, w)| *y += g.pad * w),
                        }
                    }
                }
            }
        });
}

/// Depthwise backward; the caller has checked lengths, `g.cg() == 1`, that `dy`
/// is not empty and that `kh*kw > 0`. Overwrites `dx` and `dw` when given; `dw`
/// is reduced over the plan's chunks in chunk order.
pub(super) fn backward(
    g: &ConvGeom,
    plan: &Plan,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dw: Option<&mut [f32]>,
) {
    let (p, o, c, og, taps) = (g.oh * g.ow, g.o, g.c, g.og(), g.kh * g.kw);
    let hwc = g.h * g.w * c;
    let nchunks = plan.chunks(g.n);
    let wt = transpose_weights(g, w);
    let dxs: Vec<Option<&mut [f32]>> = match dx {
        Some(dx) => split_chunks(dx, hwc, plan, g.n)
            .into_iter()
            .map(Some)
            .collect(),
        None => (0..nchunks).map(|_| None).collect(),
    };
    let wlen = taps * o;
    let parts_len = if dw.is_some() { nchunks * wlen } else { 0 };
    with_scratch(Slot::Partials, parts_len, |parts| {
        let dws: Vec<Option<&mut [f32]>> = if dw.is_some() {
            parts.chunks_mut(wlen).map(Some).collect()
        } else {
            (0..nchunks).map(|_| None).collect()
        };
        dxs.into_par_iter()
            .zip(dws)
            .enumerate()
            .for_each(|(ci, (mut dxc, mut dwt))| {
                let img0 = ci * plan.chunk;
                let nimg = plan.chunk.min(g.n - img0);
                if let Some(dxc) = dxc.as_deref_mut() {
                    dxc.fill(0.0);
                }
                if let Some(dwt) = dwt.as_deref_mut() {
                    dwt.fill(0.0);
                }
                let mut xe = vec![0.0; if og > 1 { o } else { 0 }];
                let dyc = &dy[img0 * p * o..(img0 + nimg) * p * o];
                for (r, dyrow) in dyc.chunks_exact(o).enumerate() {
                    let (img, pos) = (r / p, r % p);
                    let (oy, ox) = (pos / g.ow, pos % g.ow);
                    for i in 0..g.kh {
                        for j in 0..g.kw {
                            let t = i * g.kw + j;
                            let tap = g.tap(oy, ox, i, j);
                            if let Some(dwt) = dwt.as_deref_mut() {
                                let drow = &mut dwt[t * o..][..o];
                                match tap {
                                    Some((iy, ix)) => {
                                        let at = (img0 + img) * hwc + (iy * g.w + ix) * c;
                                        let xrow = &x[at..][..c];
                                        mul_add(drow, dyrow, expand(xrow, og, &mut xe));
                                    }
                                    None => drow
                                        .iter_mut()
                                        .zip(dyrow)
                                        .for_each(|(d, dy)| *d += dy * g.pad),
                                }
                            }
                            if let (Some(dxc), Some((iy, ix))) = (dxc.as_deref_mut(), tap) {
                                let dxrow = &mut dxc[img * hwc + (iy * g.w + ix) * c..][..c];
                                let wrow = &wt[t * o..][..o];
                                if og == 1 {
                                    mul_add(dxrow, dyrow, wrow);
                                } else {
                                    for (grp, d) in dxrow.iter_mut().enumerate() {
                                        let s = grp * og..(grp + 1) * og;
                                        *d += dyrow[s.clone()]
                                            .iter()
                                            .zip(&wrow[s])
                                            .map(|(a, b)| a * b)
                                            .sum::<f32>();
                                    }
                                }
                            }
                        }
                    }
                }
            });
        if let Some(dw) = dw {
            for oc in 0..o {
                for t in 0..taps {
                    let mut acc = parts[t * o + oc];
                    for part in parts.chunks(wlen).skip(1) {
                        acc += part[t * o + oc];
                    }
                    dw[oc * taps + t] = acc;
                }
            }
        }
    });
}
