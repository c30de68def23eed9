//! Fast `conv2d` forward and backward: im2col + `sgemm`, rayon over chunks of
//! images. Depthwise convolutions (one input channel per group) go to
//! [`super::depthwise`], where a GEMM per channel would be all overhead.
//!
//! The im2col matrix of a block of output positions has one row per position
//! and the layout `[group][tap i, tap j][channel in group]` along a row, so group
//! `grp`'s `rows x (kh*kw*cg)` matrix starts at column `grp*kg` with row stride
//! `kfull = kh*kw*c`, and its columns are ordered as a weight row `w[o, i, j, c]`.
//! Padded taps hold `g.pad`, which gives the forward pass its `pad * w` terms and
//! the weight gradient its `pad * dy` terms with no special case.

use rayon::prelude::*;

use super::depthwise;
use super::gemm::{gemm, with_scratch, Mat, Slot};
use super::ConvGeom;

/// At most this many chunks of images per call: enough to keep two cores busy
/// with uneven chunks, few enough that the weight-gradient partial sums stay small.
const MAX_CHUNKS: usize = 8;

/// Floats of one im2col block (512 KiB, half of a Zen 4 L2), unless that is
/// fewer than [`MIN_BLOCK_ROWS`] rows.
const COL_BLOCK_FLOATS: usize = 128 * 1024;

/// Rows of the smallest im2col block, so that each GEMM is worth its packing.
const MIN_BLOCK_ROWS: usize = 128;

/// matrixmultiply 0.3 runs an `m x k x n` product on its own threads once
/// `m*k + k*n` reaches this. Inside rayon's chunks that nests a second thread
/// pool on the same cores, which costs most on small products, so when a batch
/// has several chunks, blocks are cut below this size where the weights allow.
const MM_THREADED_SIZE: usize = 2 << 14;

/// How a batch is cut: `chunk` images per rayon task, and blocks of
/// `block_rows` output positions (rows of the im2col matrix, possibly spanning
/// images) inside a chunk.
///
/// The chunks are the unit of the weight-gradient reduction (one partial sum per
/// chunk, added in chunk order), so a plan depends on the geometry only, never
/// on the number of threads: a call gives the same bits with any thread count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Plan {
    pub chunk: usize,
    pub block_rows: usize,
}

impl Plan {
    /// The plan the public kernels use for `g`.
    pub fn new(g: &ConvGeom) -> Plan {
        let chunk = g.n.div_ceil(g.n.clamp(1, MAX_CHUNKS)).max(1);
        let kfull = g.kh * g.kw * g.c;
        let mut block_rows = (COL_BLOCK_FLOATS / kfull.max(1)).max(MIN_BLOCK_ROWS);
        // Each block runs GEMMs `rows x kg x og`, `og x rows x kg` and
        // `rows x og x kg`; each stays single-threaded inside matrixmultiply when
        // `rows * (kg + og) + kg * og` is below its threshold.
        let (kg, og) = (g.kh * g.kw * g.cg(), g.og());
        let unthreaded = MM_THREADED_SIZE.saturating_sub(kg * og) / (kg + og).max(1);
        if g.n > 1 && unthreaded > MIN_BLOCK_ROWS {
            block_rows = block_rows.min(unthreaded - 1);
        }
        Plan { chunk, block_rows }
    }

    /// Number of chunks for a batch of `n` images.
    pub fn chunks(&self, n: usize) -> usize {
        n.div_ceil(self.chunk)
    }
}

/// Cuts `buf` (a batch of `n` images of `per_image` floats each) into the
/// plan's chunks, in order; all slices are empty when `per_image == 0`.
pub(super) fn split_chunks<'a>(
    buf: &'a mut [f32],
    per_image: usize,
    plan: &Plan,
    n: usize,
) -> Vec<&'a mut [f32]> {
    let mut rest = buf;
    let mut out = Vec::with_capacity(plan.chunks(n));
    for c in 0..plan.chunks(n) {
        let imgs = plan.chunk.min(n - c * plan.chunk);
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(imgs * per_image);
        out.push(head);
        rest = tail;
    }
    out
}

/// Panics unless `x` and `w` have the lengths `g` gives them.
pub(super) fn check_x_w(g: &ConvGeom, x: &[f32], w: &[f32]) {
    assert_eq!(x.len(), g.n * g.h * g.w * g.c, "conv2d: x length");
    assert_eq!(w.len(), g.o * g.kh * g.kw * g.cg(), "conv2d: w length");
}

/// A 1x1 convolution with stride 1 and no padding: the im2col matrix of a group
/// is the input itself (row stride `c`, starting at channel `grp*cg`).
fn is_pointwise(g: &ConvGeom) -> bool {
    g.kh == 1 && g.kw == 1 && g.stride == [1, 1] && g.padding == [0; 4]
}

/// One input channel per group and more than one group: the direct kernels.
fn is_depthwise(g: &ConvGeom) -> bool {
    g.cg() == 1 && g.groups > 1
}

/// Fast [`super::conv2d_forward_naive`]: same contract (overwrites `y`), equal up
/// to f32 summation order, exactly equal when every partial sum is an integer
/// below 2^24 (e.g. ±1 inputs and weights). Panics if a slice length does not
/// match `g`.
pub fn conv2d_forward(g: &ConvGeom, x: &[f32], w: &[f32], y: &mut [f32]) {
    conv2d_forward_planned(g, &Plan::new(g), x, w, y);
}

/// [`conv2d_forward`] with an explicit plan (tests use small ones to reach
/// every chunk and block boundary).
pub(super) fn conv2d_forward_planned(
    g: &ConvGeom,
    plan: &Plan,
    x: &[f32],
    w: &[f32],
    y: &mut [f32],
) {
    check_x_w(g, x, w);
    let p = g.oh * g.ow;
    assert_eq!(y.len(), g.n * p * g.o, "conv2d: y length");
    if y.is_empty() {
        return;
    }
    if g.kh * g.kw * g.cg() == 0 {
        y.fill(0.0);
        return;
    }
    if is_depthwise(g) {
        return depthwise::forward(g, plan, x, w, y);
    }
    let hwc = g.h * g.w * g.c;
    split_chunks(y, p * g.o, plan, g.n)
        .into_par_iter()
        .enumerate()
        .for_each(|(ci, yc)| {
            let img0 = ci * plan.chunk;
            let nimg = yc.len() / (p * g.o);
            forward_chunk(g, plan, &x[img0 * hwc..(img0 + nimg) * hwc], w, yc);
        });
}

/// Forward pass of the images in `x` (a whole chunk) into `y`.
fn forward_chunk(g: &ConvGeom, plan: &Plan, x: &[f32], w: &[f32], y: &mut [f32]) {
    let (o, c) = (g.o, g.c);
    let (cg, og, kg) = (g.cg(), g.og(), g.kh * g.kw * g.cg());
    let rows = y.len() / o;
    if is_pointwise(g) {
        for grp in 0..g.groups {
            let a = Mat::rows(&x[grp * cg..], c);
            let b = Mat::rows_t(&w[grp * og * kg..], kg);
            gemm(rows, kg, og, a, b, 0.0, &mut y[grp * og..], o);
        }
        return;
    }
    let kfull = kg * g.groups;
    let taps = TapTable::new(g);
    let block_rows = plan.block_rows.min(rows);
    with_scratch(Slot::Chunk, block_rows * kfull, |col| {
        for r0 in (0..rows).step_by(block_rows) {
            let nr = block_rows.min(rows - r0);
            let col = &mut col[..nr * kfull];
            im2col(g, &taps, x, r0, col);
            for grp in 0..g.groups {
                let a = Mat::rows(&col[grp * kg..], kfull);
                let b = Mat::rows_t(&w[grp * og * kg..], kg);
                gemm(nr, kg, og, a, b, 0.0, &mut y[r0 * o + grp * og..], o);
            }
        }
    });
}

/// Fast [`super::conv2d_backward_naive`]: same contract (overwrites `dx` and `dw`
/// when given; `dx` gets nothing from padded positions, `dw` gets `pad * dy`),
/// equal up to f32 summation order, exactly equal when every partial sum is an
/// integer below 2^24. `dw` is reduced over chunks of images in a fixed order,
/// so repeated calls give identical bits. Panics if a slice length does not
/// match `g`.
pub fn conv2d_backward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dw: Option<&mut [f32]>,
) {
    conv2d_backward_planned(g, &Plan::new(g), x, w, dy, dx, dw);
}

/// [`conv2d_backward`] with an explicit plan.
pub(super) fn conv2d_backward_planned(
    g: &ConvGeom,
    plan: &Plan,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dw: Option<&mut [f32]>,
) {
    check_x_w(g, x, w);
    let p = g.oh * g.ow;
    assert_eq!(dy.len(), g.n * p * g.o, "conv2d: dy length");
    if let Some(dx) = &dx {
        assert_eq!(dx.len(), x.len(), "conv2d: dx length");
    }
    if let Some(dw) = &dw {
        assert_eq!(dw.len(), w.len(), "conv2d: dw length");
    }
    let kg = g.kh * g.kw * g.cg();
    if dy.is_empty() || kg == 0 {
        // No output positions, output channels or weights: every sum is empty.
        dx.into_iter().chain(dw).for_each(|s| s.fill(0.0));
        return;
    }
    if is_depthwise(g) {
        return depthwise::backward(g, plan, x, w, dy, dx, dw);
    }
    let nchunks = plan.chunks(g.n);
    let (hwc, wlen) = (g.h * g.w * g.c, w.len());
    let dxs: Vec<Option<&mut [f32]>> = match dx {
        Some(dx) => split_chunks(dx, hwc, plan, g.n)
            .into_iter()
            .map(Some)
            .collect(),
        None => (0..nchunks).map(|_| None).collect(),
    };
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
            .for_each(|(ci, (dxc, dwc))| {
                let img0 = ci * plan.chunk;
                let nimg = plan.chunk.min(g.n - img0);
                let xc = &x[img0 * hwc..(img0 + nimg) * hwc];
                let dyc = &dy[img0 * p * g.o..(img0 + nimg) * p * g.o];
                backward_chunk(g, plan, xc, w, dyc, dxc, dwc);
            });
        if let Some(dw) = dw {
            dw.copy_from_slice(&parts[..wlen]);
            for part in parts.chunks(wlen).skip(1) {
                dw.iter_mut().zip(part).for_each(|(d, v)| *d += v);
            }
        }
    });
}

/// Backward pass of one chunk: overwrites `dx` (this chunk's images) and `dw`
/// (this chunk's partial weight gradient) when given.
fn backward_chunk(
    g: &ConvGeom,
    plan: &Plan,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    mut dx: Option<&mut [f32]>,
    mut dw: Option<&mut [f32]>,
) {
    let (o, c) = (g.o, g.c);
    let (cg, og, kg) = (g.cg(), g.og(), g.kh * g.kw * g.cg());
    let rows = dy.len() / o;
    if is_pointwise(g) {
        for grp in 0..g.groups {
            let dyg = &dy[grp * og..];
            let wg = &w[grp * og * kg..];
            if let Some(dw) = dw.as_deref_mut() {
                let (a, b) = (Mat::rows_t(dyg, o), Mat::rows(&x[grp * cg..], c));
                gemm(og, rows, kg, a, b, 0.0, &mut dw[grp * og * kg..], kg);
            }
            if let Some(dx) = dx.as_deref_mut() {
                let (a, b) = (Mat::rows(dyg, o), Mat::rows(wg, kg));
                gemm(rows, og, kg, a, b, 0.0, &mut dx[grp * cg..], c);
            }
        }
        return;
    }
    let kfull = kg * g.groups;
    let taps = TapTable::new(g);
    if let Some(dx) = dx.as_deref_mut() {
        dx.fill(0.0);
    }
    let block_rows = plan.block_rows.min(rows);
    with_scratch(Slot::Chunk, block_rows * kfull, |col| {
        for r0 in (0..rows).step_by(block_rows) {
            let nr = block_rows.min(rows - r0);
            let col = &mut col[..nr * kfull];
            let dyb = &dy[r0 * o..(r0 + nr) * o];
            if let Some(dw) = dw.as_deref_mut() {
                im2col(g, &taps, x, r0, col);
                let beta = if r0 == 0 { 0.0 } else { 1.0 };
                for grp in 0..g.groups {
                    let a = Mat::rows_t(&dyb[grp * og..], o);
                    let b = Mat::rows(&col[grp * kg..], kfull);
                    gemm(og, nr, kg, a, b, beta, &mut dw[grp * og * kg..], kg);
                }
            }
            if let Some(dx) = dx.as_deref_mut() {
                for grp in 0..g.groups {
                    let a = Mat::rows(&dyb[grp * og..], o);
                    let b = Mat::rows(&w[grp * og * kg..], kg);
                    gemm(nr, og, kg, a, b, 0.0, &mut col[grp * kg..], kfull);
                }
                col2im(g, &taps, col, r0, dx);
            }
        }
    });
}

/// Marks a padded tap in a [`TapTable`].
const PADDED: usize = usize::MAX;

/// The input row and column each output row and column reads at each tap, or
/// [`PADDED`]: `iy[oy*kh + i]`, `ix[ox*kw + j]` (as [`ConvGeom::tap`]).
struct TapTable {
    iy: Vec<usize>,
    ix: Vec<usize>,
    /// Whole tap rows may be copied as one run (one group, no horizontal
    /// dilation, so taps `j = 0..kw` read consecutive positions).
    runs: bool,
}

impl TapTable {
    fn new(g: &ConvGeom) -> TapTable {
        let at = |out: usize, tap: usize, s: usize, d: usize, pad: usize, len: usize| {
            (out * s + tap * d)
                .checked_sub(pad)
                .filter(|&v| v < len)
                .unwrap_or(PADDED)
        };
        let (s, d, pd) = (g.stride, g.dilation, g.padding);
        let iy = (0..g.oh * g.kh)
            .map(|k| at(k / g.kh, k % g.kh, s[0], d[0], pd[0], g.h))
            .collect();
        let ix = (0..g.ow * g.kw)
            .map(|k| at(k / g.kw, k % g.kw, s[1], d[1], pd[1], g.w))
            .collect();
        TapTable {
            iy,
            ix,
            runs: g.groups == 1 && g.dilation[1] == 1,
        }
    }

    /// Position (in floats, within one image) of the run of `kw * c` inputs that
    /// tap row `iy` of output column `ox` reads, if it is one run.
    fn run(&self, g: &ConvGeom, iy: usize, ox: usize) -> Option<usize> {
        let xs = &self.ix[ox * g.kw..][..g.kw];
        (self.runs && xs[0] != PADDED && xs[g.kw - 1] != PADDED).then(|| (iy * g.w + xs[0]) * g.c)
    }
}

/// `dst = src`, without a `memcpy` call for the short runs of few channels.
#[inline]
fn copy_run(dst: &mut [f32], src: &[f32]) {
    if dst.len() < 16 {
        dst.iter_mut().zip(src).for_each(|(d, s)| *d = *s);
    } else {
        dst.copy_from_slice(src);
    }
}

/// `dst += src` elementwise.
#[inline]
fn add_run(dst: &mut [f32], src: &[f32]) {
    dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
}

/// Fills `col` with rows `r0..` (counted from the first image of `x`) of the
/// im2col matrix (layout in the module docs); `col.len()` is a multiple of
/// `kh*kw*c`.
fn im2col(g: &ConvGeom, taps: &TapTable, x: &[f32], r0: usize, col: &mut [f32]) {
    let (c, cg, kw, kfull) = (g.c, g.cg(), g.kw, g.kh * g.kw * g.c);
    let (kg, hwc, p) = (kfull / g.groups, g.h * g.w * c, g.oh * g.ow);
    for (k, row) in col.chunks_exact_mut(kfull).enumerate() {
        let (img, pos) = ((r0 + k) / p, (r0 + k) % p);
        let (oy, ox) = (pos / g.ow, pos % g.ow);
        let xi = &x[img * hwc..][..hwc];
        for i in 0..g.kh {
            let iy = taps.iy[oy * g.kh + i];
            if iy == PADDED {
                for grp in 0..g.groups {
                    row[grp * kg + i * kw * cg..][..kw * cg].fill(g.pad);
                }
                continue;
            }
            if let Some(at) = taps.run(g, iy, ox) {
                copy_run(&mut row[i * kw * c..][..kw * c], &xi[at..][..kw * c]);
                continue;
            }
            for j in 0..kw {
                let (t, ix) = (i * kw + j, taps.ix[ox * kw + j]);
                for grp in 0..g.groups {
                    let dst = &mut row[grp * kg + t * cg..][..cg];
                    if ix == PADDED {
                        dst.fill(g.pad);
                    } else {
                        copy_run(dst, &xi[(iy * g.w + ix) * c + grp * cg..][..cg]);
                    }
                }
            }
        }
    }
}

/// Adds each entry of `col` (rows `r0..` of the im2col matrix of the images of
/// `dx`) into the input position it was read from; entries of padded taps are
/// dropped.
fn col2im(g: &ConvGeom, taps: &TapTable, col: &[f32], r0: usize, dx: &mut [f32]) {
    let (c, cg, kw, kfull) = (g.c, g.cg(), g.kw, g.kh * g.kw * g.c);
    let (kg, hwc, p) = (kfull / g.groups, g.h * g.w * c, g.oh * g.ow);
    for (k, row) in col.chunks_exact(kfull).enumerate() {
        let (img, pos) = ((r0 + k) / p, (r0 + k) % p);
        let (oy, ox) = (pos / g.ow, pos % g.ow);
        let dxi = &mut dx[img * hwc..][..hwc];
        for i in 0..g.kh {
            let iy = taps.iy[oy * g.kh + i];
            if iy == PADDED {
                continue;
            }
            if let Some(at) = taps.run(g, iy, ox) {
                add_run(&mut dxi[at..][..kw * c], &row[i * kw * c..][..kw * c]);
                continue;
            }
            for j in 0..kw {
                let (t, ix) = (i * kw + j, taps.ix[ox * kw + j]);
                if ix == PADDED {
                    continue;
                }
                let dst = &mut dxi[(iy * g.w + ix) * c..][..c];
                for grp in 0..g.groups {
                    add_run(&mut dst[grp * cg..][..cg], &row[grp * kg + t * cg..][..cg]);
                }
            }
        }
    }
}
