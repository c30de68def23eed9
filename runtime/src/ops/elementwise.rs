//! Elementwise ops: sign, ternarize, activations, batchnorm, broadcasting
//! arithmetic.

use bnnc_ir::{ElemType, Tensor, TensorData};

use super::{as_f32, channels, f32_tensor, int_tensor, ints, op_err, per_channel, OpResult};
use crate::mem::try_collect;

/// `sign(x)`: any type -> `b1`. Each element is -1 iff it is `< 0`, else +1; so
/// +0.0, -0.0 and NaN give +1. Integer inputs compare their numeric values.
pub fn sign(x: &Tensor) -> OpResult {
    let out: Vec<i32> = match &x.data {
        TensorData::F32(_) => {
            let v = super::f32s(x, "sign")?;
            try_collect(v.len(), v.iter().map(|&e| if e < 0.0 { -1 } else { 1 }))?
        }
        TensorData::Int(_) | TensorData::Bits(_) => {
            let v = ints(x, "sign")?;
            try_collect(v.len(), v.iter().map(|&e| if e < 0 { -1 } else { 1 }))?
        }
    };
    int_tensor(ElemType::B1, x.dims.clone(), out)
}

/// `ternarize(x, delta)`: any type -> `ternary`. +1 if `x > delta`, -1 if
/// `x < -delta`, else 0 (NaN gives 0). The comparison is exact on the numeric
/// values (done in f64, where every i32 and f32 is exact), so a large integer is
/// never rounded before it is compared.
pub fn ternarize(x: &Tensor, delta: f32) -> OpResult {
    let d = delta as f64;
    let t = |e: f64| {
        if e > d {
            1
        } else if e < -d {
            -1
        } else {
            0
        }
    };
    let out: Vec<i32> = match &x.data {
        TensorData::F32(_) => {
            let v = super::f32s(x, "ternarize")?;
            try_collect(v.len(), v.iter().map(|&e| t(e as f64)))?
        }
        TensorData::Int(_) | TensorData::Bits(_) => {
            let v = ints(x, "ternarize")?;
            try_collect(v.len(), v.iter().map(|&e| t(e as f64)))?
        }
    };
    int_tensor(ElemType::Ternary, x.dims.clone(), out)
}

/// `relu(x) = max(x, 0)`. `f32` stays `f32`: positive values are kept, NaN stays
/// NaN, everything else (negatives, -0.0, +0.0) gives +0.0. Integer types give
/// `i32` with `max(v, 0)`.
pub fn relu(x: &Tensor) -> OpResult {
    match &x.data {
        TensorData::F32(_) => {
            let v = super::f32s(x, "relu")?;
            let out = try_collect(
                v.len(),
                v.iter()
                    .map(|&e| if e > 0.0 || e.is_nan() { e } else { 0.0 }),
            )?;
            f32_tensor(x.dims.clone(), out)
        }
        TensorData::Int(_) | TensorData::Bits(_) => {
            let v = ints(x, "relu")?;
            int_tensor(
                ElemType::I32,
                x.dims.clone(),
                try_collect(v.len(), v.iter().map(|&e| e.max(0)))?,
            )
        }
    }
}

/// `prelu(x, alpha)`, `alpha: f32 [C]`: `x` if `x > 0` else `alpha[c] * x`, in f32
/// (integer `x` converted as f32). NaN gives NaN.
pub fn prelu(x: &Tensor, alpha: &Tensor) -> OpResult {
    let c = channels(x, "prelu x")?;
    let alpha = per_channel(alpha, c, "prelu alpha")?;
    let v = as_f32(x, "prelu x")?;
    let out = map_channels(&v, c, |e, ch| if e > 0.0 { e } else { alpha[ch] * e })?;
    f32_tensor(x.dims.clone(), out)
}

/// `rprelu(x, gamma, beta, zeta)` (ReActNet), all `f32 [C]`:
/// `u = x - gamma[c]; y = (u > 0 ? u : beta[c] * u) + zeta[c]`, in f32.
pub fn rprelu(x: &Tensor, gamma: &Tensor, beta: &Tensor, zeta: &Tensor) -> OpResult {
    let c = channels(x, "rprelu x")?;
    let gamma = per_channel(gamma, c, "rprelu gamma")?;
    let beta = per_channel(beta, c, "rprelu beta")?;
    let zeta = per_channel(zeta, c, "rprelu zeta")?;
    let v = as_f32(x, "rprelu x")?;
    let out = map_channels(&v, c, |e, ch| {
        let u = e - gamma[ch];
        (if u > 0.0 { u } else { beta[ch] * u }) + zeta[ch]
    })?;
    f32_tensor(x.dims.clone(), out)
}

/// `hardtanh(x) = min(max(x, -1), 1)` in f32; NaN stays NaN, -0.0 stays -0.0.
pub fn hardtanh(x: &Tensor) -> OpResult {
    clip(x, -1.0, 1.0)
}

/// `clip(x, min=a, max=b) = min(max(x, a), b)` in f32 (integers converted as
/// f32); NaN stays NaN. Literal order: with `a > b` every element becomes `b`.
pub fn clip(x: &Tensor, min: f32, max: f32) -> OpResult {
    let v = as_f32(x, "clip")?;
    let out = try_collect(
        v.len(),
        v.iter().map(|&e| {
            if e.is_nan() {
                return e;
            }
            let lo = if e < min { min } else { e };
            if lo > max {
                max
            } else {
                lo
            }
        }),
    )?;
    f32_tensor(x.dims.clone(), out)
}

/// `sigmoid(x) = 1 / (1 + exp(-x))` in f32.
pub fn sigmoid(x: &Tensor) -> OpResult {
    let v = as_f32(x, "sigmoid")?;
    let out = try_collect(v.len(), v.iter().map(|&e| 1.0 / (1.0 + (-e).exp())))?;
    f32_tensor(x.dims.clone(), out)
}

/// `batchnorm(x, gamma, beta, mean, var, eps)`, parameters `f32 [C]`:
/// `y = (x - mean[c]) / sqrt(var[c] + eps) * gamma[c] + beta[c]`, evaluated in
/// f32 in exactly that order (x converted to f32 first; no fused multiply-add).
pub fn batchnorm(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    eps: f32,
) -> OpResult {
    let c = channels(x, "batchnorm x")?;
    let gamma = per_channel(gamma, c, "batchnorm gamma")?;
    let beta = per_channel(beta, c, "batchnorm beta")?;
    let mean = per_channel(mean, c, "batchnorm mean")?;
    let var = per_channel(var, c, "batchnorm var")?;
    let v = as_f32(x, "batchnorm x")?;
    let out = map_channels(&v, c, |e, ch| {
        let centered = e - mean[ch];
        let std = (var[ch] + eps).sqrt();
        let normed = centered / std;
        let scaled = normed * gamma[ch];
        scaled + beta[ch]
    })?;
    f32_tensor(x.dims.clone(), out)
}

/// Applies `f(value, channel)` to every element of a `[.., C]` buffer.
fn map_channels(
    v: &[f32],
    c: usize,
    f: impl Fn(f32, usize) -> f32,
) -> Result<Vec<f32>, super::OpError> {
    if c == 0 {
        return Ok(Vec::new());
    }
    let mut out = crate::mem::reserve(v.len())?;
    for row in v.chunks(c) {
        out.extend(row.iter().enumerate().map(|(ch, &e)| f(e, ch)));
    }
    Ok(out)
}

/// `add(a, b)`: numpy-broadcasting elementwise `a + b`. `f32` if either operand
/// is `f32` (an integer operand converted as f32), else `i32` with wrapping
/// arithmetic.
pub fn add(a: &Tensor, b: &Tensor) -> OpResult {
    arith(a, b, "add", |x, y| x + y, i32::wrapping_add)
}

/// `sub(a, b)`: as [`add`], `a - b`.
pub fn sub(a: &Tensor, b: &Tensor) -> OpResult {
    arith(a, b, "sub", |x, y| x - y, i32::wrapping_sub)
}

/// `mul(a, b)`: as [`add`], `a * b`.
pub fn mul(a: &Tensor, b: &Tensor) -> OpResult {
    arith(a, b, "mul", |x, y| x * y, i32::wrapping_mul)
}

fn arith(
    a: &Tensor,
    b: &Tensor,
    what: &str,
    ff: impl Fn(f32, f32) -> f32,
    fi: impl Fn(i32, i32) -> i32,
) -> OpResult {
    let (dims, pairs) = Broadcast::new(&a.dims, &b.dims).ok_or_else(|| {
        op_err!(
            "{what}: dims {:?} and {:?} do not broadcast",
            a.dims,
            b.dims
        )
    })?;
    let n = pairs.len();
    if a.elem == ElemType::F32 || b.elem == ElemType::F32 {
        let va = as_f32(a, what)?;
        let vb = as_f32(b, what)?;
        let out = try_collect(n, pairs.map(|(i, j)| ff(va[i], vb[j])))?;
        f32_tensor(dims, out)
    } else {
        let va = ints(a, what)?;
        let vb = ints(b, what)?;
        let out = try_collect(n, pairs.map(|(i, j)| fi(va[i], vb[j])))?;
        int_tensor(ElemType::I32, dims, out)
    }
}

/// Numpy broadcasting of two shapes (right-aligned; a dimension of 1 stretches).
/// Returns the result dims and, for every result element in row-major order, the
/// flat index of the element of `a` and of `b` it reads.
pub fn broadcast(a: &[usize], b: &[usize]) -> Option<(Vec<usize>, Vec<usize>, Vec<usize>)> {
    let (dims, pairs) = Broadcast::new(a, b)?;
    let (ia, ib) = pairs.unzip();
    Some((dims, ia, ib))
}

/// The (index into `a`, index into `b`) pairs of [`broadcast`], one result
/// element after another, computed as they are read.
struct Broadcast {
    dims: Vec<usize>,
    sa: Vec<usize>,
    sb: Vec<usize>,
    idx: Vec<usize>,
    off: (usize, usize),
    left: usize,
}

impl Broadcast {
    /// The result dims and the pairs, or `None` when the shapes do not
    /// broadcast or the result's element count overflows.
    fn new(a: &[usize], b: &[usize]) -> Option<(Vec<usize>, Broadcast)> {
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
        // Row-major strides of each operand; 0 along broadcast axes.
        let strides = |p: &[usize]| -> Vec<usize> {
            let mut s = vec![0; r];
            let mut acc = 1usize;
            for k in (0..r).rev() {
                s[k] = if p[k] == 1 { 0 } else { acc };
                acc = acc.saturating_mul(p[k]);
            }
            s
        };
        let left = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))?;
        let it = Broadcast {
            dims: dims.clone(),
            sa: strides(&pa),
            sb: strides(&pb),
            idx: vec![0; r],
            off: (0, 0),
            left,
        };
        Some((dims, it))
    }
}

impl Iterator for Broadcast {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let out = self.off;
        // Odometer increment, innermost axis first.
        for k in (0..self.dims.len()).rev() {
            self.idx[k] += 1;
            self.off.0 += self.sa[k];
            self.off.1 += self.sb[k];
            if self.idx[k] < self.dims[k] {
                break;
            }
            self.off.0 -= self.sa[k] * self.idx[k];
            self.off.1 -= self.sb[k] * self.idx[k];
            self.idx[k] = 0;
        }
        Some(out)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Broadcast {}
