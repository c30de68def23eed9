//! Pooling ops over NHWC activations.

use bnnc_ir::{PoolAttrs, Tensor, TensorData};

use super::{as_f32, f32_tensor, op_err, same_kind, OpError, OpResult};
use crate::mem::try_vec;

/// The output extent `(OH, OW)` of a pooling window over an `h x w` input:
/// `OH = (H + top + bottom - kh) / sh + 1`, likewise `OW`; `None` when a zero
/// kernel or stride is given or the window does not fit the padded input.
pub fn pool_extent(h: usize, w: usize, a: &PoolAttrs) -> Option<(usize, usize)> {
    let [kh, kw] = a.kernel;
    let [sh, sw] = a.stride;
    let [top, left, bottom, right] = a.padding;
    let extent = |input: usize, pad: usize, k: usize, s: usize| -> Option<usize> {
        if k == 0 || s == 0 {
            return None;
        }
        Some(input.checked_add(pad)?.checked_sub(k)? / s + 1)
    };
    Some((
        extent(h, top.saturating_add(bottom), kh, sh)?,
        extent(w, left.saturating_add(right), kw, sw)?,
    ))
}

/// Why [`pool_extent`] found no output extent, for messages.
pub fn pool_misfit(h: usize, w: usize, a: &PoolAttrs) -> String {
    let ([kh, kw], [sh, sw]) = (a.kernel, a.stride);
    format!(
        "kernel {kh}x{kw} with stride {sh}x{sw} does not fit input {h}x{w} padded by {:?}",
        a.padding
    )
}

/// The window geometry of a pooling op.
struct Windows {
    n: usize,
    h: usize,
    w: usize,
    c: usize,
    oh: usize,
    ow: usize,
}

impl Windows {
    fn new(x: &Tensor, a: &PoolAttrs, op: &str) -> Result<Windows, OpError> {
        let &[n, h, w, c] = x.dims.as_slice() else {
            return Err(op_err!("{op}: x must be [N, H, W, C], got {:?}", x.dims));
        };
        let (oh, ow) =
            pool_extent(h, w, a).ok_or_else(|| op_err!("{op}: {}", pool_misfit(h, w, a)))?;
        super::numel(&[n, oh, ow, c])?;
        Ok(Windows { n, h, w, c, oh, ow })
    }

    /// Calls `f(window_positions, out_offset)` for every output pixel, where
    /// `window_positions` are the flat offsets (times C) of its in-bounds input
    /// pixels in row-major window order.
    fn for_each(&self, a: &PoolAttrs, mut f: impl FnMut(&[usize], usize)) {
        let [kh, kw] = a.kernel;
        let [sh, sw] = a.stride;
        let [top, left, _, _] = a.padding;
        let mut pos = Vec::with_capacity(kh * kw);
        for n in 0..self.n {
            for oy in 0..self.oh {
                for ox in 0..self.ow {
                    pos.clear();
                    for i in 0..kh {
                        let Some(iy) = (oy * sh + i).checked_sub(top).filter(|&y| y < self.h)
                        else {
                            continue;
                        };
                        for j in 0..kw {
                            if let Some(ix) =
                                (ox * sw + j).checked_sub(left).filter(|&v| v < self.w)
                            {
                                pos.push(((n * self.h + iy) * self.w + ix) * self.c);
                            }
                        }
                    }
                    f(&pos, ((n * self.oh + oy) * self.ow + ox) * self.c);
                }
            }
        }
    }

    fn out_dims(&self) -> Vec<usize> {
        vec![self.n, self.oh, self.ow, self.c]
    }
}

/// `maxpool2d(x)`: `[N, H, W, C]` -> `[N, OH, OW, C]` with
/// `OH = (H + top + bottom - kh) / sh + 1`, the max over each window's in-bounds
/// positions (padded positions are skipped, not filled). Keeps the element type
/// (a `b1` max is +1 if any element is +1). For f32 the max is taken in row-major
/// window order, replacing the current max only by a strictly greater element,
/// so a NaN wins only if it comes first. A window with no in-bounds position is
/// an error.
pub fn maxpool2d(x: &Tensor, a: &PoolAttrs) -> OpResult {
    let win = Windows::new(x, a, "maxpool2d")?;
    let mut empty = false;
    let data = match &x.data {
        TensorData::F32(_) => {
            let v = super::f32s(x, "maxpool2d")?;
            TensorData::F32(max_windows(v, &win, a, &mut empty)?)
        }
        TensorData::Int(_) | TensorData::Bits(_) => {
            let v = super::ints(x, "maxpool2d")?;
            TensorData::Int(max_windows(&v, &win, a, &mut empty)?)
        }
    };
    if empty {
        return Err(op_err!("maxpool2d: a window lies entirely in the padding"));
    }
    same_kind(x.elem, win.out_dims(), data)
}

fn max_windows<T: PartialOrd + Copy + Default>(
    v: &[T],
    win: &Windows,
    a: &PoolAttrs,
    empty: &mut bool,
) -> Result<Vec<T>, OpError> {
    let c = win.c;
    let mut out = try_vec(win.n * win.oh * win.ow * c, T::default())?;
    win.for_each(a, |pos, o| {
        let Some((&first, rest)) = pos.split_first() else {
            *empty = true;
            return;
        };
        let dst = &mut out[o..o + c];
        dst.copy_from_slice(&v[first..first + c]);
        for &p in rest {
            for (d, &e) in dst.iter_mut().zip(&v[p..p + c]) {
                if e > *d {
                    *d = e;
                }
            }
        }
    });
    Ok(out)
}

/// `avgpool2d(x)`: `[N, H, W, C]` -> `f32 [N, OH, OW, C]` (extents as
/// [`maxpool2d`]): the mean over each window's in-bounds positions only. Values
/// are converted as f32, summed from +0.0 in row-major window order, then divided
/// by the number of in-bounds positions. A window with no in-bounds position is
/// an error.
pub fn avgpool2d(x: &Tensor, a: &PoolAttrs) -> OpResult {
    let win = Windows::new(x, a, "avgpool2d")?;
    let v = as_f32(x, "avgpool2d")?;
    let c = win.c;
    let mut out = try_vec(win.n * win.oh * win.ow * c, 0.0f32)?;
    let mut empty = false;
    win.for_each(a, |pos, o| {
        if pos.is_empty() {
            empty = true;
            return;
        }
        let dst = &mut out[o..o + c];
        for &p in pos {
            for (d, &e) in dst.iter_mut().zip(&v[p..p + c]) {
                *d += e;
            }
        }
        let count = pos.len() as f32;
        for d in dst.iter_mut() {
            *d /= count;
        }
    });
    if empty {
        return Err(op_err!("avgpool2d: a window lies entirely in the padding"));
    }
    f32_tensor(win.out_dims(), out)
}

/// `global_avgpool(x)`: `[N, H, W, C]` -> `f32 [N, C]`, per channel the values
/// (converted as f32) summed from +0.0 in row-major (h, w) order, then divided
/// by `H*W` (as f32; an empty image gives NaN).
pub fn global_avgpool(x: &Tensor) -> OpResult {
    let &[n, h, w, c] = x.dims.as_slice() else {
        return Err(op_err!(
            "global_avgpool: x must be [N, H, W, C], got {:?}",
            x.dims
        ));
    };
    let v = as_f32(x, "global_avgpool")?;
    let hw = h * w;
    let mut out = try_vec(n * c, 0.0f32)?;
    if c > 0 {
        for (b, dst) in out.chunks_mut(c).enumerate() {
            for p in 0..hw {
                let src = &v[(b * hw + p) * c..(b * hw + p + 1) * c];
                for (d, &e) in dst.iter_mut().zip(src) {
                    *d += e;
                }
            }
            let count = hw as f32;
            for d in dst.iter_mut() {
                *d /= count;
            }
        }
    }
    f32_tensor(vec![n, c], out)
}
