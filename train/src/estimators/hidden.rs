//! The backward kernel shared by the learned scalar functions with one hidden
//! layer, `g(x) = sum_j v_j act(w_j x + b_j)` (the learned binarizer's MLP and
//! FDA's noise module). Their per-element `derivative` methods are its oracle;
//! the tests compare the two bit for bit through `SignEstimator::derivative`.

/// Elements per block. The block's values live in stack arrays, so the
/// per-unit loops below run over contiguous, fixed-length arrays and vectorise.
const BLOCK: usize = 256;
/// Partial sums per parameter reduction within a block (one per vector lane).
const LANES: usize = 8;

/// `sum_i a[i] * b[i]` over a block: f32 partial sums in `LANES` lanes (32
/// terms each), added up in f64. Accumulating block after block in f64 keeps
/// the parameter gradients exact to f32 precision for any tensor size.
#[inline(always)]
fn block_dot(a: &[f32; BLOCK], b: &[f32; BLOCK]) -> f64 {
    let mut lanes = [0.0f32; LANES];
    for (ca, cb) in a.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
        for l in 0..LANES {
            lanes[l] += ca[l] * cb[l];
        }
    }
    lanes.iter().map(|&s| f64::from(s)).sum()
}

/// The parameters of `g` and the f64 sums their gradients accumulate into.
pub(super) struct HiddenLayer<'a> {
    pub w: &'a [f32],
    pub b: &'a [f32],
    pub v: &'a [f32],
    pub acc_w: &'a mut [f64],
    pub acc_b: &'a mut [f64],
    pub acc_v: &'a mut [f64],
}

impl HiddenLayer<'_> {
    /// For every element: writes `g'(x[i]) = sum_j (v_j w_j) act'(w_j x[i] + b_j)`
    /// (summed in order j = 0, 1, ...) into `deriv[i]`, and adds
    /// `scale * grad_out[i] * dg(x[i])/dθ` to the sums (`dg/dv_j = act(z)`,
    /// `dg/dw_j = v_j act'(z) x`, `dg/db_j = v_j act'(z)`). A non-finite `x[i]`
    /// gets `deriv[i] = 0` and adds nothing. `act(z)` returns `(act, act')`.
    pub(super) fn backward(
        &mut self,
        x: &[f32],
        grad_out: &[f32],
        scale: f32,
        act: impl Fn(f32) -> (f32, f32),
        deriv: &mut [f32],
    ) {
        let h = self.w.len();
        let (w, b, v) = (&self.w[..h], &self.b[..h], &self.v[..h]);
        let mut xs = [0.0f32; BLOCK];
        let mut gs = [0.0f32; BLOCK];
        let mut gx = [0.0f32; BLOCK];
        let mut a = [0.0f32; BLOCK];
        let mut da = [0.0f32; BLOCK];
        let mut d = [0.0f32; BLOCK];
        for ((xc, oc), dc) in x
            .chunks(BLOCK)
            .zip(grad_out.chunks(BLOCK))
            .zip(deriv.chunks_mut(BLOCK))
        {
            let n = xc.len();
            // Padding and non-finite elements become x = 0 with gradient 0: they
            // add exactly nothing to the sums.
            for i in 0..BLOCK {
                let (xv, g) = match xc.get(i) {
                    Some(&xv) if xv.is_finite() => (xv, oc[i] * scale),
                    _ => (0.0, 0.0),
                };
                xs[i] = xv;
                gs[i] = g;
                gx[i] = g * xv;
                d[i] = 0.0;
            }
            for j in 0..h {
                let (wj, bj, vj) = (w[j], b[j], v[j]);
                for i in 0..BLOCK {
                    (a[i], da[i]) = act(wj * xs[i] + bj);
                }
                let vw = vj * wj;
                for i in 0..BLOCK {
                    d[i] += vw * da[i];
                }
                self.acc_v[j] += block_dot(&gs, &a);
                self.acc_w[j] += f64::from(vj) * block_dot(&gx, &da);
                self.acc_b[j] += f64::from(vj) * block_dot(&gs, &da);
            }
            for i in 0..n {
                dc[i] = if xc[i].is_finite() { d[i] } else { 0.0 };
            }
        }
    }
}
