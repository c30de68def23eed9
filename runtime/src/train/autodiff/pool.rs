//! Pooling over NHWC `f32` buffers: forward passes in the interpreter's order
//! (`ops::pool`) and their backward passes.

use bnnc_ir::PoolAttrs;

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
        let [top, left, bottom, right] = a.padding;
        let extent = |input: usize, pad: usize, k: usize, s: usize| -> Option<usize> {
            if k == 0 || s == 0 {
                return None;
            }
            Some(input.checked_add(pad)?.checked_sub(k)? / s + 1)
        };
        let bad = || {
            format!(
                "kernel {kh}x{kw} with stride {sh}x{sw} does not fit input {h}x{w} padded by {:?}",
                a.padding
            )
        };
        let oh = extent(h, top.saturating_add(bottom), kh, sh).ok_or_else(bad)?;
        let ow = extent(w, left.saturating_add(right), kw, sw).ok_or_else(bad)?;
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

    /// Number of output elements.
    pub fn out_len(&self) -> usize {
        self.n * self.oh * self.ow * self.c
    }

    /// Calls `f(positions, out_offset)` for every output pixel, `positions` being
    /// the flat offsets (times C) of its in-bounds input pixels in row-major
    /// window order. Returns false if some window had no in-bounds position.
    fn for_each(&self, mut f: impl FnMut(&[usize], usize)) -> bool {
        let mut pos = Vec::with_capacity(self.kh * self.kw);
        let mut all_nonempty = true;
        for n in 0..self.n {
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
                                pos.push(((n * self.h + iy) * self.w + ix) * self.c);
                            }
                        }
                    }
                    if pos.is_empty() {
                        all_nonempty = false;
                    }
                    f(&pos, ((n * self.oh + oy) * self.ow + ox) * self.c);
                }
            }
        }
        all_nonempty
    }
}

const EMPTY: &str = "a window lies entirely in the padding";

/// `maxpool2d`: per window and channel, the first element, replaced by each later
/// one that compares strictly greater (row-major window order).
pub(super) fn maxpool_forward(x: &[f32], g: &PoolGeom) -> Result<Vec<f32>, String> {
    let c = g.c;
    let mut out = vec![0.0f32; g.out_len()];
    let ok = g.for_each(|pos, o| {
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
    });
    if ok {
        Ok(out)
    } else {
        Err(EMPTY.into())
    }
}

/// Gradient of [`maxpool_forward`]: each window's `dy` goes to the element that
/// the forward scan selected (the first maximum); overlapping windows add up.
pub(super) fn maxpool_backward(x: &[f32], g: &PoolGeom, dy: &[f32]) -> Vec<f32> {
    let c = g.c;
    let mut dx = vec![0.0f32; x.len()];
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
    dx
}

/// `avgpool2d`: per window and channel, the in-bounds values summed from +0.0 in
/// row-major window order, divided by their count.
pub(super) fn avgpool_forward(x: &[f32], g: &PoolGeom) -> Result<Vec<f32>, String> {
    let c = g.c;
    let mut out = vec![0.0f32; g.out_len()];
    let ok = g.for_each(|pos, o| {
        if pos.is_empty() {
            return;
        }
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
    });
    if ok {
        Ok(out)
    } else {
        Err(EMPTY.into())
    }
}

/// Gradient of [`avgpool_forward`]: `dy / count` to every in-bounds element of
/// the window.
pub(super) fn avgpool_backward(x_len: usize, g: &PoolGeom, dy: &[f32]) -> Vec<f32> {
    let c = g.c;
    let mut dx = vec![0.0f32; x_len];
    g.for_each(|pos, o| {
        let count = pos.len() as f32;
        for &p in pos {
            for (d, &e) in dx[p..p + c].iter_mut().zip(&dy[o..o + c]) {
                *d += e / count;
            }
        }
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
