//! Elementwise ops on `f32` buffers: forward passes that evaluate exactly what the
//! interpreter's `ops::elementwise` evaluates (same f32 operations in the same
//! order), and their backward passes.
//!
//! Per-channel ops see their buffer as rows of `c` channels (the last axis).
//! Piecewise functions take one documented one-sided derivative at their kinks.

use super::par;

/// Numpy broadcasting of two shapes: the result dims and, per operand, the
/// row-major strides of the result axes into that operand (0 along an axis the
/// operand broadcasts over).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Broadcast {
    pub dims: Vec<usize>,
    sa: Vec<usize>,
    sb: Vec<usize>,
    layout: Layout,
}

/// How the operands of a broadcast relate to the result, for the fast paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// Both operands have the result's dims.
    Same,
    /// `a` has the result's dims; `b` is a suffix of them (leading dims 1 or
    /// absent), holding `len` elements: `b` index = `k mod len`.
    SuffixB(usize),
    /// The mirror image: `b` full, `a` a suffix of `len` elements.
    SuffixA(usize),
    General,
}

/// True when padded shape `p` is all 1 up to some axis and equals `dims` from
/// there on.
fn is_suffix(p: &[usize], dims: &[usize]) -> bool {
    let s = p.iter().position(|&d| d != 1).unwrap_or(p.len());
    p[s..] == dims[s..]
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
        let numel = |d: &[usize]| d.iter().product::<usize>();
        let layout = if numel(&dims) == 0 {
            Layout::General
        } else if pa == dims && pb == dims {
            Layout::Same
        } else if pa == dims && is_suffix(&pb, &dims) {
            Layout::SuffixB(numel(&pb))
        } else if pb == dims && is_suffix(&pa, &dims) {
            Layout::SuffixA(numel(&pa))
        } else {
            Layout::General
        };
        Some(Broadcast {
            sa: strides(&pa),
            sb: strides(&pb),
            dims,
            layout,
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
    let f = move |x: f32, y: f32| match op {
        Arith::Add => x + y,
        Arith::Sub => x - y,
        Arith::Mul => x * y,
    };
    match bc.layout {
        Layout::Same => par::zip_map(a, b, f),
        Layout::SuffixB(len) => par::map_rows(a, len, |x, j| f(x, b[j])),
        Layout::SuffixA(len) => par::map_rows(b, len, |y, j| f(a[j], y)),
        Layout::General => {
            let mut out = vec![0.0f32; bc.numel()];
            bc.for_each(|k, i, j| out[k] = f(a[i], b[j]));
            out
        }
    }
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
    // d out / d a and d out / d b at one element, from the operand values.
    let da = move |_x: f32, y: f32| if op == Arith::Mul { y } else { 1.0 };
    let db = move |x: f32, _y: f32| match op {
        Arith::Add => 1.0,
        Arith::Sub => -1.0,
        Arith::Mul => x,
    };
    match bc.layout {
        Layout::Same => [
            need[0].then(|| par::zip_map(g, b, |d, y| d * da(0.0, y))),
            need[1].then(|| par::zip_map(g, a, |d, x| d * db(x, 0.0))),
        ],
        Layout::SuffixB(len) => [
            need[0].then(|| par::map_rows(g, len, |d, j| d * da(0.0, b[j]))),
            need[1].then(|| {
                let s = par::reduce_rows(g.len() / len, len, len, |rows, acc| {
                    for r in rows {
                        for (j, s) in acc.iter_mut().enumerate() {
                            let k = r * len + j;
                            *s += (g[k] * db(a[k], b[j])) as f64;
                        }
                    }
                });
                s.into_iter().map(|v| v as f32).collect()
            }),
        ],
        Layout::SuffixA(len) => [
            need[0].then(|| {
                let s = par::reduce_rows(g.len() / len, len, len, |rows, acc| {
                    for r in rows {
                        for (j, s) in acc.iter_mut().enumerate() {
                            let k = r * len + j;
                            *s += (g[k] * da(a[j], b[k])) as f64;
                        }
                    }
                });
                s.into_iter().map(|v| v as f32).collect()
            }),
            need[1].then(|| par::map_rows(g, len, |d, j| d * db(a[j], 0.0))),
        ],
        Layout::General => {
            let mut ga = need[0].then(|| vec![0.0f32; a.len()]);
            let mut gb = need[1].then(|| vec![0.0f32; b.len()]);
            bc.for_each(|k, i, j| {
                if let Some(ga) = ga.as_mut() {
                    ga[i] += g[k] * da(a[i], b[j]);
                }
                if let Some(gb) = gb.as_mut() {
                    gb[j] += g[k] * db(a[i], b[j]);
                }
            });
            [ga, gb]
        }
    }
}

/// `sign(x)`: -1.0 iff `x < 0`, else +1.0 (so 0, -0.0 and NaN give +1).
pub(super) fn sign_forward(x: &[f32]) -> Vec<f32> {
    par::map(x, |e| if e < 0.0 { -1.0 } else { 1.0 })
}

/// `relu(x)`: `x` if `x > 0` or NaN, else +0.0.
pub(super) fn relu_forward(x: &[f32]) -> Vec<f32> {
    par::map(x, |e| if e > 0.0 || e.is_nan() { e } else { 0.0 })
}

/// `d relu / dx = 1` where `x > 0`, else 0 (0 at the kink).
pub(super) fn relu_backward(x: &[f32], g: &[f32]) -> Vec<f32> {
    par::zip_map(x, g, |e, d| if e > 0.0 { d } else { 0.0 })
}

/// `prelu(x, alpha)` (He et al., 2015): `x` if `x > 0` else `alpha[c] * x`.
pub(super) fn prelu_forward(x: &[f32], c: usize, alpha: &[f32]) -> Vec<f32> {
    par::map_rows(x, c, |e, ch| if e > 0.0 { e } else { alpha[ch] * e })
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
    let dx = need[0]
        .then(|| par::zip_map_rows(x, g, c, |e, d, ch| if e > 0.0 { d } else { alpha[ch] * d }));
    let da = need[1].then(|| {
        let rows = x.len().checked_div(c).unwrap_or(0);
        let s = par::reduce_rows(rows, c, c, |range, acc| {
            for r in range {
                for (ch, s) in acc.iter_mut().enumerate() {
                    let e = x[r * c + ch];
                    if e <= 0.0 {
                        *s += (g[r * c + ch] * e) as f64;
                    }
                }
            }
        });
        s.into_iter().map(|v| v as f32).collect()
    });
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
    par::map_rows(x, c, |e, ch| {
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
    let slope = |e: f32, ch: usize| {
        if e - gamma[ch] > 0.0 {
            1.0
        } else {
            beta[ch]
        }
    };
    let dx = need[0].then(|| par::zip_map_rows(x, g, c, |e, d, ch| slope(e, ch) * d));
    let mut sums = vec![0.0f64; 3 * c];
    if need[1] || need[2] || need[3] {
        let rows = x.len().checked_div(c).unwrap_or(0);
        // acc = [sum s g | sum g u over u <= 0 | sum g], each of c channels.
        sums = par::reduce_rows(rows, c, 3 * c, |range, acc| {
            for r in range {
                for ch in 0..c {
                    let (e, d) = (x[r * c + ch], g[r * c + ch]);
                    let u = e - gamma[ch];
                    acc[ch] += (slope(e, ch) * d) as f64;
                    if u <= 0.0 {
                        acc[c + ch] += (d * u) as f64;
                    }
                    acc[2 * c + ch] += d as f64;
                }
            }
        });
    }
    let part = |k: usize, sign: f64| -> Vec<f32> {
        sums[k * c..(k + 1) * c]
            .iter()
            .map(|&v| (sign * v) as f32)
            .collect()
    };
    [
        dx,
        need[1].then(|| part(0, -1.0)),
        need[2].then(|| part(1, 1.0)),
        need[3].then(|| part(2, 1.0)),
    ]
}

/// `clip(x, min, max) = min(max(x, min), max)`, NaN stays NaN (`hardtanh` is
/// `clip(x, -1, 1)`).
pub(super) fn clip_forward(x: &[f32], min: f32, max: f32) -> Vec<f32> {
    par::map(x, |e| {
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
}

/// `d clip / dx = 1` on the closed interval `min <= x <= max` (as PyTorch's
/// `clamp`), else 0; with `min > max` the output is constant and the gradient 0.
pub(super) fn clip_backward(x: &[f32], min: f32, max: f32, g: &[f32]) -> Vec<f32> {
    par::zip_map(x, g, |e, d| if min <= e && e <= max { d } else { 0.0 })
}

/// `sigmoid(x) = 1 / (1 + exp(-x))`.
pub(super) fn sigmoid_forward(x: &[f32]) -> Vec<f32> {
    par::map(x, |e| 1.0 / (1.0 + (-e).exp()))
}

/// `d sigmoid / dx = y (1 - y)` from the forward output `y`.
pub(super) fn sigmoid_backward(y: &[f32], g: &[f32]) -> Vec<f32> {
    par::zip_map(y, g, |s, d| d * s * (1.0 - s))
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
            let (dims, ia, ib) = bnnc_runtime::ops::elementwise::broadcast(&a, &b).unwrap();
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
