//! Pooling over NHWC `f32` buffers: forward passes in the interpreter's order
//! (`ops::pool`) and their backward passes.

use bnnc_ir::PoolAttrs;
use rayon::prelude::*;

/// The window geometry of `maxpool2d` / `avgpool2d` on `[n, h, w, c]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct PoolGeom {
    n: usize,
    h: usize,
    w: usize,
    c: usize,
    oh: usize,
    ow: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    top: usize,
    left: usize,
}

impl PoolGeom {
    /// The geometry for input dims `x` (`OH = (H + top + bottom - kh) / sh + 1`,
    /// likewise `OW`), or a message when the window does not fit.
    pub fn new(x: &[usize], a: &PoolAttrs) -> Result<PoolGeom, String> {
        let &[n, h, w, c] = x else {
            return Err(format!("x must be [N, H, W, C], got {x:?}"));
        };
        let [kh, kw] = a.kernel;
        let [sh, sw] = a.stride;
        let [top, left, _, _] = a.padding;
        let (oh, ow) = bnnc_runtime::ops::pool::pool_extent(h, w, a)
            .ok_or_else(|| bnnc_runtime::ops::pool::pool_misfit(h, w, a))?;
        Ok(PoolGeom {
            n,
            h,
            w,
            c,
            oh,
            ow,
            kh,
            kw,
            sh,
            sw,
            top,
            left,
        })
    }

    /// True when some window has no in-bounds position (windows are products
    /// of a row range and a column range, so one empty range suffices).
    fn has_empty_window(&self) -> bool {
        let empty = |o: usize, s: usize, k: usize, pad: usize, size: usize| {
            !(0..k).any(|i| (o * s + i).checked_sub(pad).is_some_and(|v| v < size))
        };
        (0..self.oh).any(|oy| empty(oy, self.sh, self.kh, self.top, self.h))
            || (0..self.ow).any(|ox| empty(ox, self.sw, self.kw, self.left, self.w))
    }

    /// Calls `f(positions, out_offset)` for every output pixel of one image,
    /// `positions` being the offsets (times C) of its in-bounds input pixels in
    /// row-major window order, relative to the image; `out_offset` is relative to
    /// the image's output.
    fn for_each(&self, mut f: impl FnMut(&[usize], usize)) {
        let mut pos = Vec::with_capacity(self.kh * self.kw);
        for oy in 0..self.oh {
            for ox in 0..self.ow {
                pos.clear();
                for i in 0..self.kh {
                    let Some(iy) = (oy * self.sh + i)
                        .checked_sub(self.top)
                        .filter(|&y| y < self.h)
                    else {
                        continue;
                    };
                    for j in 0..self.kw {
                        if let Some(ix) = (ox * self.sw + j)
                            .checked_sub(self.left)
                            .filter(|&v| v < self.w)
                        {
                            pos.push((iy * self.w + ix) * self.c);
                        }
                    }
                }
                f(&pos, (oy * self.ow + ox) * self.c);
            }
        }
    }

    /// Input and output elements per image.
    fn per_image(&self) -> (usize, usize) {
        (self.h * self.w * self.c, self.oh * self.ow * self.c)
    }

    /// Runs `f(image input, image output)` for every image in parallel, over an
    /// output buffer of `out_per` elements per image.
    fn par_images(
        &self,
        x: &[f32],
        out_per: usize,
        in_per: usize,
        f: impl Fn(&[f32], &mut [f32]) + Sync,
    ) -> Vec<f32> {
        let mut out = vec![0.0f32; self.n * out_per];
        if out_per == 0 || in_per == 0 {
            return out;
        }
        out.par_chunks_mut(out_per)
            .zip(x.par_chunks(in_per))
            .for_each(|(dst, src)| f(src, dst));
        out
    }
}

const EMPTY: &str = "a window lies entirely in the padding";

/// `maxpool2d`: per window and channel, the first element, replaced by each later
/// one that compares strictly greater (row-major window order).
pub(super) fn maxpool_forward(x: &[f32], g: &PoolGeom) -> Result<Vec<f32>, String> {
    if g.has_empty_window() {
        return Err(EMPTY.into());
    }
    let (in_per, out_per) = g.per_image();
    let c = g.c;
    Ok(g.par_images(x, out_per, in_per, |x, out| {
        g.for_each(|pos, o| {
            let Some((&first, rest)) = pos.split_first() else {
                return;
            };
            let dst = &mut out[o..o + c];
            dst.copy_from_slice(&x[first..first + c]);
            for &p in rest {
                for (d, &e) in dst.iter_mut().zip(&x[p..p + c]) {
                    if e > *d {
                        *d = e;
                    }
                }
            }
        })
    }))
}

/// Gradient of [`maxpool_forward`]: each window's `dy` goes to the element that
/// the forward scan selected (the first maximum); overlapping windows add up.
pub(super) fn maxpool_backward(x: &[f32], g: &PoolGeom, dy: &[f32]) -> Vec<f32> {
    let (in_per, out_per) = g.per_image();
    let c = g.c;
    let mut dx = vec![0.0f32; x.len()];
    if in_per == 0 || out_per == 0 {
        return dx;
    }
    dx.par_chunks_mut(in_per)
        .zip(x.par_chunks(in_per))
        .zip(dy.par_chunks(out_per))
        .for_each(|((dx, x), dy)| {
            let mut best = vec![0usize; c];
            g.for_each(|pos, o| {
                let Some((&first, rest)) = pos.split_first() else {
                    return;
                };
                best.fill(first);
                for &p in rest {
                    for (ch, b) in best.iter_mut().enumerate() {
                        if x[p + ch] > x[*b + ch] {
                            *b = p;
                        }
                    }
                }
                for (ch, &b) in best.iter().enumerate() {
                    dx[b + ch] += dy[o + ch];
                }
            });
        });
    dx
}

/// `avgpool2d`: per window and channel, the in-bounds values summed from +0.0 in
/// row-major window order, divided by their count.
pub(super) fn avgpool_forward(x: &[f32], g: &PoolGeom) -> Result<Vec<f32>, String> {
    if g.has_empty_window() {
        return Err(EMPTY.into());
    }
    let (in_per, out_per) = g.per_image();
    let c = g.c;
    Ok(g.par_images(x, out_per, in_per, |x, out| {
        g.for_each(|pos, o| {
            let dst = &mut out[o..o + c];
            for &p in pos {
                for (d, &e) in dst.iter_mut().zip(&x[p..p + c]) {
                    *d += e;
                }
            }
            let count = pos.len() as f32;
            for d in dst.iter_mut() {
                *d /= count;
            }
        })
    }))
}

/// Gradient of [`avgpool_forward`]: `dy / count` to every in-bounds element of
/// the window.
pub(super) fn avgpool_backward(g: &PoolGeom, dy: &[f32]) -> Vec<f32> {
    let (in_per, out_per) = g.per_image();
    let c = g.c;
    let mut dx = vec![0.0f32; g.n * in_per];
    if in_per == 0 || out_per == 0 {
        return dx;
    }
    dx.par_chunks_mut(in_per)
        .zip(dy.par_chunks(out_per))
        .for_each(|(dx, dy)| {
            g.for_each(|pos, o| {
                let count = pos.len() as f32;
                for &p in pos {
                    for (d, &e) in dx[p..p + c].iter_mut().zip(&dy[o..o + c]) {
                        *d += e / count;
                    }
                }
            })
        });
    dx
}

/// `global_avgpool`: `[n, h, w, c] -> [n, c]`, per channel the sum from +0.0 in
/// row-major (h, w) order divided by `h*w`.
pub(super) fn global_avgpool_forward(x: &[f32], n: usize, hw: usize, c: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; n * c];
    if c == 0 {
        return out;
    }
    for (b, dst) in out.chunks_mut(c).enumerate() {
        for p in 0..hw {
            let src = &x[(b * hw + p) * c..(b * hw + p + 1) * c];
            for (d, &e) in dst.iter_mut().zip(src) {
                *d += e;
            }
        }
        let count = hw as f32;
        for d in dst.iter_mut() {
            *d /= count;
        }
    }
    out
}

/// Gradient of [`global_avgpool_forward`]: `dy[n, c] / (h*w)` to every pixel.
pub(super) fn global_avgpool_backward(dy: &[f32], n: usize, hw: usize, c: usize) -> Vec<f32> {
    let mut dx = vec![0.0f32; n * hw * c];
    if c == 0 || hw == 0 {
        return dx;
    }
    let count = hw as f32;
    for (b, chunk) in dx.chunks_mut(hw * c).enumerate().take(n) {
        for px in chunk.chunks_mut(c) {
            for (d, &e) in px.iter_mut().zip(&dy[b * c..(b + 1) * c]) {
                *d = e / count;
            }
        }
    }
    dx
}
