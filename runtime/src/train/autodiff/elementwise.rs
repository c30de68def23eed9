//! Elementwise ops on `f32` buffers: forward passes that evaluate exactly what the
//! interpreter's `ops::elementwise` evaluates (same f32 operations in the same
//! order), and their backward passes.
//!
//! Per-channel ops see their buffer as rows of `c` channels (the last axis).
//! Piecewise functions take one documented one-sided derivative at their kinks.

/// Numpy broadcasting of two shapes: the result dims and, per operand, the
/// row-major strides of the result axes into that operand (0 along an axis the
/// operand broadcasts over).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Broadcast {
    pub dims: Vec<usize>,
    sa: Vec<usize>,
    sb: Vec<usize>,
}

impl Broadcast {
    /// The broadcast of `a` and `b` (right-aligned; a dimension of 1 stretches),
    /// or `None` when they do not broadcast.
    pub fn new(a: &[usize], b: &[usize]) -> Option<Broadcast> {
        let r = a.len().max(b.len());
        let pad = |d: &[usize]| -> Vec<usize> {
            let mut p = vec![1; r - d.len()];
            p.extend_from_slice(d);
            p
        };
        let (pa, pb) = (pad(a), pad(b));
        let mut dims = Vec::with_capacity(r);
        for (&x, &y) in pa.iter().zip(&pb) {
            dims.push(match (x, y) {
                _ if x == y => x,
                (1, _) => y,
                (_, 1) => x,
                _ => return None,
            });
        }
        let strides = |p: &[usize]| -> Vec<usize> {
            let mut s = vec![0; r];
            let mut acc = 1usize;
            for k in (0..r).rev() {
                s[k] = if p[k] == 1 { 0 } else { acc };
                acc = acc.saturating_mul(p[k]);
            }
            s
        };
        Some(Broadcast {
            sa: strides(&pa),
            sb: strides(&pb),
            dims,
        })
    }

    /// Number of result elements.
    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }

    /// Calls `f(k, ia, ib)` for every result element `k` in row-major order,
    /// with the flat indices of the elements of `a` and `b` it reads.
    pub fn for_each(&self, mut f: impl FnMut(usize, usize, usize)) {
        let r = self.dims.len();
        let n = self.numel();
        if n == 0 {
            return;
        }
        if r == 0 {
            f(0, 0, 0);
            return;
        }
        let inner = self.dims[r - 1];
        let (ia_s, ib_s) = (self.sa[r - 1], self.sb[r - 1]);
        let mut idx = vec![0usize; r - 1];
        let (mut oa, mut ob) = (0usize, 0usize);
        for o in 0..n / inner {
            for t in 0..inner {
                f(o * inner + t, oa + t * ia_s, ob + t * ib_s);
            }
            // Odometer over the outer axes, innermost first.
            for k in (0..r - 1).rev() {
                idx[k] += 1;
                oa += self.sa[k];
                ob += self.sb[k];
                if idx[k] < self.dims[k] {
                    break;
                }
                oa -= self.sa[k] * idx[k];
                ob -= self.sb[k] * idx[k];
                idx[k] = 0;
            }
        }
    }
}

/// The three broadcasting arithmetic ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Arith {
    Add,
    Sub,
    Mul,
}

/// `a + b`, `a - b` or `a * b` under broadcasting, in f32.
pub(super) fn arith_forward(op: Arith, bc: &Broadcast, a: &[f32], b: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0f32; bc.numel()];
    match op {
        Arith::Add => bc.for_each(|k, i, j| out[k] = a[i] + b[j]),
        Arith::Sub => bc.for_each(|k, i, j| out[k] = a[i] - b[j]),
        Arith::Mul => bc.for_each(|k, i, j| out[k] = a[i] * b[j]),
    }
    out
}

/// Gradients of [`arith_forward`] given `g = dL/dout`, each summed over the axes
/// its operand was broadcast along: add `(g, g)`, sub `(g, -g)`, mul `(g b, g a)`.
/// Only the requested ones are computed.
pub(super) fn arith_backward(
    op: Arith,
    bc: &Broadcast,
    a: &[f32],
    b: &[f32],
    g: &[f32],
    need: [bool; 2],
) -> [Option<Vec<f32>>; 2] {
    let mut ga = need[0].then(|| vec![0.0f32; a.len()]);
    let mut gb = need[1].then(|| vec![0.0f32; b.len()]);
    bc.for_each(|k, i, j| {
        let (da, db) = match op {
            Arith::Add => (g[k], g[k]),
            Arith::Sub => (g[k], -g[k]),
            Arith::Mul => (g[k] * b[j], g[k] * a[i]),
        };
        if let Some(ga) = ga.as_mut() {
            ga[i] += da;
        }
        if let Some(gb) = gb.as_mut() {
            gb[j] += db;
        }
    });
    [ga, gb]
}

/// `sign(x)`: -1.0 iff `x < 0`, else +1.0 (so 0, -0.0 and NaN give +1).
pub(super) fn sign_forward(x: &[f32]) -> Vec<f32> {
    x.iter()
        .map(|&e| if e < 0.0 { -1.0 } else { 1.0 })
        .collect()
}

/// `relu(x)`: `x` if `x > 0` or NaN, else +0.0.
pub(super) fn relu_forward(x: &[f32]) -> Vec<f32> {
    x.iter()
        .map(|&e| if e > 0.0 || e.is_nan() { e } else { 0.0 })
        .collect()
}

/// `d relu / dx = 1` where `x > 0`, else 0 (0 at the kink).
pub(super) fn relu_backward(x: &[f32], g: &[f32]) -> Vec<f32> {
    x.iter()
        .zip(g)
        .map(|(&e, &d)| if e > 0.0 { d } else { 0.0 })
        .collect()
}

/// Applies `f(value, channel)` to a buffer of rows of `c` channels.
fn map_channels(v: &[f32], c: usize, f: impl Fn(f32, usize) -> f32) -> Vec<f32> {
    if c == 0 {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(v.len());
    for row in v.chunks(c) {
        out.extend(row.iter().enumerate().map(|(ch, &e)| f(e, ch)));
    }
    out
}

/// `prelu(x, alpha)` (He et al., 2015): `x` if `x > 0` else `alpha[c] * x`.
pub(super) fn prelu_forward(x: &[f32], c: usize, alpha: &[f32]) -> Vec<f32> {
    map_channels(x, c, |e, ch| if e > 0.0 { e } else { alpha[ch] * e })
}

/// Gradients of [`prelu_forward`]: `dx = g` where `x > 0`, else `alpha g`;
/// `dalpha[c] = sum g x` over the elements with `x <= 0`.
pub(super) fn prelu_backward(
    x: &[f32],
    c: usize,
    alpha: &[f32],
    g: &[f32],
    need: [bool; 2],
) -> [Option<Vec<f32>>; 2] {
    let mut dx = need[0].then(|| vec![0.0f32; x.len()]);
    let mut da = need[1].then(|| vec![0.0f32; c]);
    if c > 0 {
        for (r, (xs, gs)) in x.chunks(c).zip(g.chunks(c)).enumerate() {
            for (ch, (&e, &d)) in xs.iter().zip(gs).enumerate() {
                let pos = e > 0.0;
                if let Some(dx) = dx.as_mut() {
                    dx[r * c + ch] = if pos { d } else { alpha[ch] * d };
                }
                if let (Some(da), false) = (da.as_mut(), pos) {
                    da[ch] += d * e;
                }
            }
        }
    }
    [dx, da]
}

/// `rprelu(x, gamma, beta, zeta)` (ReActNet, Liu et al., 2020):
/// `u = x - gamma[c]; y = (u > 0 ? u : beta[c] u) + zeta[c]`.
pub(super) fn rprelu_forward(
    x: &[f32],
    c: usize,
    gamma: &[f32],
    beta: &[f32],
    zeta: &[f32],
) -> Vec<f32> {
    map_channels(x, c, |e, ch| {
        let u = e - gamma[ch];
        (if u > 0.0 { u } else { beta[ch] * u }) + zeta[ch]
    })
}

/// Gradients of [`rprelu_forward`] with `s = 1` where `u > 0`, else `beta[c]`:
/// `dx = s g`, `dgamma[c] = -sum s g`, `dbeta[c] = sum g u` over `u <= 0`,
/// `dzeta[c] = sum g`.
pub(super) fn rprelu_backward(
    x: &[f32],
    c: usize,
    gamma: &[f32],
    beta: &[f32],
    g: &[f32],
    need: [bool; 4],
) -> [Option<Vec<f32>>; 4] {
    let mut dx = need[0].then(|| vec![0.0f32; x.len()]);
    let mut dg = need[1].then(|| vec![0.0f32; c]);
    let mut db = need[2].then(|| vec![0.0f32; c]);
    let mut dz = need[3].then(|| vec![0.0f32; c]);
    if c > 0 {
        for (r, (xs, gs)) in x.chunks(c).zip(g.chunks(c)).enumerate() {
            for (ch, (&e, &d)) in xs.iter().zip(gs).enumerate() {
                let u = e - gamma[ch];
                let s = if u > 0.0 { 1.0 } else { beta[ch] };
                if let Some(dx) = dx.as_mut() {
                    dx[r * c + ch] = s * d;
                }
                if let Some(dg) = dg.as_mut() {
                    dg[ch] -= s * d;
                }
                if let (Some(db), false) = (db.as_mut(), u > 0.0) {
                    db[ch] += d * u;
                }
                if let Some(dz) = dz.as_mut() {
                    dz[ch] += d;
                }
            }
        }
    }
    [dx, dg, db, dz]
}

/// `clip(x, min, max) = min(max(x, min), max)`, NaN stays NaN (`hardtanh` is
/// `clip(x, -1, 1)`).
pub(super) fn clip_forward(x: &[f32], min: f32, max: f32) -> Vec<f32> {
    x.iter()
        .map(|&e| {
            if e.is_nan() {
                return e;
            }
            let lo = if e < min { min } else { e };
            if lo > max {
                max
            } else {
                lo
            }
        })
        .collect()
}

/// `d clip / dx = 1` on the closed interval `min <= x <= max` (as PyTorch's
/// `clamp`), else 0; with `min > max` the output is constant and the gradient 0.
pub(super) fn clip_backward(x: &[f32], min: f32, max: f32, g: &[f32]) -> Vec<f32> {
    x.iter()
        .zip(g)
        .map(|(&e, &d)| if min <= e && e <= max { d } else { 0.0 })
        .collect()
}

/// `sigmoid(x) = 1 / (1 + exp(-x))`.
pub(super) fn sigmoid_forward(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&e| 1.0 / (1.0 + (-e).exp())).collect()
}

/// `d sigmoid / dx = y (1 - y)` from the forward output `y`.
pub(super) fn sigmoid_backward(y: &[f32], g: &[f32]) -> Vec<f32> {
    y.iter().zip(g).map(|(&s, &d)| d * s * (1.0 - s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_matches_interpreter_indices() {
        for (a, b) in [
            (vec![2, 3], vec![3]),
            (vec![2, 1, 4], vec![3, 1]),
            (vec![], vec![2]),
            (vec![1], vec![2, 2]),
            (vec![4, 0], vec![1]),
        ] {
            let (dims, ia, ib) = crate::ops::elementwise::broadcast(&a, &b).unwrap();
            let bc = Broadcast::new(&a, &b).unwrap();
            assert_eq!(bc.dims, dims);
            let mut got = (Vec::new(), Vec::new());
            bc.for_each(|k, i, j| {
                assert_eq!(k, got.0.len());
                got.0.push(i);
                got.1.push(j);
            });
            assert_eq!(got, (ia, ib), "{a:?} {b:?}");
        }
        assert!(Broadcast::new(&[2], &[3]).is_none());
    }
}
