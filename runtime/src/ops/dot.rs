//! Dot-product ops: `conv2d` and `dense` over every element-type pair of
//! [`dot_result_type`].
//!
//! Everything is computed on numeric values: a `b1` operand is a tensor of -1/+1
//! and its products are summed like any other (which is `K - 2 * popcount(a xor
//! w)` by construction). Pairs with an `f32` result accumulate in f32 from +0.0,
//! one product at a time in a fixed order (conv: `kh`, then `kw`, then the input
//! channel; dense: `k` ascending), each product rounded before it is added (no
//! fused multiply-add). Pairs with an integer result accumulate exactly in `i32`
//! with wrapping arithmetic (order-independent).
//!
//! Work is split over output elements with rayon; the result does not depend on
//! the number of threads.

use bnnc_ir::op::dot_result_type;
use bnnc_ir::{Conv2dAttrs, ElemType, Tensor};
use rayon::prelude::*;

use super::{as_f32, f32_tensor, int_tensor, ints, op_err, OpError, OpResult};
use crate::mem::try_vec;

/// An accumulator type of the dot-product kernels (`f32` or `i32`).
trait Acc: Copy + Send + Sync + 'static {
    const ZERO: Self;
    /// `acc + a * b`.
    fn mac(acc: Self, a: Self, b: Self) -> Self;
    /// The numeric value of a pad.
    fn from_pad(p: i32) -> Self;
    /// `acc + sum_i a[i] * b[i]`, `a` and `b` of equal length, in index order
    /// (for `i32` any order gives the same result).
    fn dot(acc: Self, a: &[Self], b: &[Self]) -> Self {
        a.iter().zip(b).fold(acc, |s, (&x, &y)| Self::mac(s, x, y))
    }
}

impl Acc for f32 {
    const ZERO: f32 = 0.0;
    fn mac(acc: f32, a: f32, b: f32) -> f32 {
        acc + a * b
    }
    fn from_pad(p: i32) -> f32 {
        p as f32
    }
}

impl Acc for i32 {
    const ZERO: i32 = 0;
    fn mac(acc: i32, a: i32, b: i32) -> i32 {
        acc.wrapping_add(a.wrapping_mul(b))
    }
    fn from_pad(p: i32) -> i32 {
        p
    }
    fn dot(acc: i32, a: &[i32], b: &[i32]) -> i32 {
        // Wrapping addition is associative, so eight independent lanes give the
        // same sum as one and keep the loop fast even without vectorisation.
        const L: usize = 8;
        let mut lanes = [0i32; L];
        let mut ca = a.chunks_exact(L);
        let mut cb = b.chunks_exact(L);
        for (xa, xb) in (&mut ca).zip(&mut cb) {
            for l in 0..L {
                lanes[l] = lanes[l].wrapping_add(xa[l].wrapping_mul(xb[l]));
            }
        }
        let tail = ca
            .remainder()
            .iter()
            .zip(cb.remainder())
            .fold(acc, |s, (&x, &y)| Self::mac(s, x, y));
        lanes.iter().fold(tail, |s, &l| s.wrapping_add(l))
    }
}

/// The result type of a dot op on `x` and `w`, or an error naming the pair.
fn result_type(op: &str, x: &Tensor, w: &Tensor) -> Result<ElemType, OpError> {
    dot_result_type(x.elem, w.elem).ok_or_else(|| {
        op_err!(
            "{op}: no kernel for {} x {} (supported: {})",
            x.elem,
            w.elem,
            bnnc_ir::op::DOT_PAIRS
        )
    })
}

/// `dense(x, w)`: `x: [N, K]`, `w: [O, K]` -> `[N, O]`,
/// `out[n,o] = sum_k x[n,k] * w[o,k]` (k ascending), typed by
/// [`dot_result_type`]: f32 accumulation for an `f32` result, exact wrapping
/// `i32` otherwise (for `b1 x b1` this is `K - 2 * popcount(a xor w)`).
pub fn dense(x: &Tensor, w: &Tensor) -> OpResult {
    let elem = result_type("dense", x, w)?;
    let (n, k, o) = match (x.dims.as_slice(), w.dims.as_slice()) {
        (&[n, k], &[o, k2]) if k == k2 => (n, k, o),
        (xd, wd) => {
            return Err(op_err!(
                "dense: x must be [N, K] and w [O, K], got {xd:?} and {wd:?}"
            ))
        }
    };
    let dims = vec![n, o];
    if elem == ElemType::F32 {
        let (xv, wv) = (as_f32(x, "dense x")?, as_f32(w, "dense w")?);
        f32_tensor(dims, dense_core(&xv, &wv, n, k, o)?)
    } else {
        let (xv, wv) = (ints(x, "dense x")?, ints(w, "dense w")?);
        int_tensor(elem, dims, dense_core(&xv, &wv, n, k, o)?)
    }
}

fn dense_core<T: Acc>(x: &[T], w: &[T], n: usize, k: usize, o: usize) -> Result<Vec<T>, OpError> {
    let mut out = try_vec(n * o, T::ZERO)?;
    if k == 0 || o == 0 {
        return Ok(out);
    }
    out.par_iter_mut()
        .enumerate()
        .with_min_len(16)
        .for_each(|(idx, dst)| {
            let (r, c) = (idx / o, idx % o);
            *dst = T::dot(T::ZERO, &x[r * k..(r + 1) * k], &w[c * k..(c + 1) * k]);
        });
    Ok(out)
}

/// The geometry of one `conv2d`.
#[derive(Clone, Copy, Debug)]
struct ConvGeom {
    n: usize,
    h: usize,
    w: usize,
    c: usize,
    o: usize,
    kh: usize,
    kw: usize,
    /// Input channels per group.
    cg: usize,
    /// Output channels per group.
    og: usize,
    oh: usize,
    ow: usize,
    sh: usize,
    sw: usize,
    dh: usize,
    dw: usize,
    top: usize,
    left: usize,
}

/// Output extent along one axis: `(in + pad - d*(k-1) - 1) / s + 1`, or `None`
/// when the dilated kernel does not fit in the padded input.
fn out_extent(input: usize, pad: usize, k: usize, d: usize, s: usize) -> Option<usize> {
    let span = d.checked_mul(k.checked_sub(1)?)?.checked_add(1)?;
    let avail = input.checked_add(pad)?.checked_sub(span)?;
    Some(avail / s.max(1) + 1).filter(|_| s >= 1)
}

/// `conv2d(x, w)`: `x: [N, H, W, C]`, `w: [O, kh, kw, C/groups]` ->
/// `[N, OH, OW, O]` with `OH = (H + top + bottom - dh*(kh-1) - 1) / sh + 1`
/// (likewise `OW`) and
/// `out[n,y,x,o] = sum_{i,j,c} in(n, y*sh - top + i*dh, x*sw - left + j*dw, g*Cg + c) * w[o,i,j,c]`
/// summed over `i` (kh), then `j` (kw), then `c`, where `g = o / (O/groups)`,
/// `Cg = C/groups`. An out-of-bounds position contributes `pad * w[o,i,j,c]` for
/// pad +1 or -1, and nothing for pad 0 or no pad value. Types as [`dense`].
pub fn conv2d(x: &Tensor, w: &Tensor, attrs: &Conv2dAttrs) -> OpResult {
    let elem = result_type("conv2d", x, w)?;
    let (&[n, h, wd, c], &[o, kh, kw, cg]) = (x.dims.as_slice(), w.dims.as_slice()) else {
        return Err(op_err!(
            "conv2d: x must be [N, H, W, C] and w [O, kh, kw, C/groups], got {:?} and {:?}",
            x.dims,
            w.dims
        ));
    };
    let groups = attrs.groups;
    if groups == 0 || c != cg.saturating_mul(groups) || o % groups != 0 {
        return Err(op_err!(
            "conv2d: {groups} groups do not split C = {c} into {cg} per group and O = {o}"
        ));
    }
    let [sh, sw] = attrs.stride;
    let [dh, dw] = attrs.dilation;
    let [top, left, bottom, right] = attrs.padding;
    let bad = || {
        op_err!("conv2d: kernel {kh}x{kw} (dilation {dh}x{dw}, stride {sh}x{sw}) does not fit input {h}x{wd} padded by {:?}", attrs.padding)
    };
    let oh = out_extent(h, top.saturating_add(bottom), kh, dh, sh).ok_or_else(bad)?;
    let ow = out_extent(wd, left.saturating_add(right), kw, dw, sw).ok_or_else(bad)?;
    let g = ConvGeom {
        n,
        h,
        w: wd,
        c,
        o,
        kh,
        kw,
        cg,
        og: o / groups,
        oh,
        ow,
        sh,
        sw,
        dh,
        dw,
        top,
        left,
    };
    let out_dims = vec![n, oh, ow, o];
    super::numel(&out_dims)?;
    let pad = attrs.effective_pad().value();
    if elem == ElemType::F32 {
        let (xv, wv) = (as_f32(x, "conv2d x")?, as_f32(w, "conv2d w")?);
        f32_tensor(out_dims, conv_core(&xv, &wv, &g, pad)?)
    } else {
        let (xv, wv) = (ints(x, "conv2d x")?, ints(w, "conv2d w")?);
        int_tensor(elem, out_dims, conv_core(&xv, &wv, &g, pad)?)
    }
}

fn conv_core<T: Acc>(x: &[T], w: &[T], g: &ConvGeom, pad: i32) -> Result<Vec<T>, OpError> {
    let row_len = g.ow * g.o;
    let mut out = try_vec(g.n * g.oh * row_len, T::ZERO)?;
    if row_len == 0 || g.oh == 0 {
        return Ok(out);
    }
    let pad_v = T::from_pad(pad);
    out.par_chunks_mut(row_len)
        .enumerate()
        .for_each(|(row, dst)| {
            let (n, oy) = (row / g.oh, row % g.oh);
            for ox in 0..g.ow {
                for oc in 0..g.o {
                    let cbase = (oc / g.og) * g.cg;
                    let mut acc = T::ZERO;
                    for i in 0..g.kh {
                        // Input row, or None when it falls in the padding.
                        let iy = (oy * g.sh + i * g.dh)
                            .checked_sub(g.top)
                            .filter(|&y| y < g.h);
                        for j in 0..g.kw {
                            let ix = (ox * g.sw + j * g.dw)
                                .checked_sub(g.left)
                                .filter(|&v| v < g.w);
                            let wo = ((oc * g.kh + i) * g.kw + j) * g.cg;
                            let wrow = &w[wo..wo + g.cg];
                            match (iy, ix) {
                                (Some(iy), Some(ix)) => {
                                    let xo = ((n * g.h + iy) * g.w + ix) * g.c + cbase;
                                    acc = T::dot(acc, &x[xo..xo + g.cg], wrow);
                                }
                                _ if pad != 0 => {
                                    for &wv in wrow {
                                        acc = T::mac(acc, pad_v, wv);
                                    }
                                }
                                _ => {}
                            }
                        }
                    }
                    dst[ox * g.o + oc] = acc;
                }
            }
        });
    Ok(out)
}
