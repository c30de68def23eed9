//! A bounds-checked front to `matrixmultiply::sgemm`, and the per-thread scratch
//! buffers the fast kernels reuse from call to call.

use std::cell::Cell;

/// A read-only strided matrix: element `(r, c)` is `data[r * rs + c * cs]`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Mat<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major view with row stride `rs` (column stride 1).
    pub fn rows(data: &'a [f32], rs: usize) -> Mat<'a> {
        Mat { data, rs, cs: 1 }
    }

    /// The transpose of a row-major matrix with row stride `rs`.
    pub fn rows_t(data: &'a [f32], rs: usize) -> Mat<'a> {
        Mat {
            data,
            rs: 1,
            cs: rs,
        }
    }
}

/// Whether a `rows x cols` matrix with strides `(rs, cs)` lies inside `len` slots.
fn fits(len: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> bool {
    rows == 0 || cols == 0 || (rows - 1) * rs + (cols - 1) * cs < len
}

/// `c = a * b + beta * c` for `a: m x k`, `b: k x n` and `c: m x n` stored
/// row-major in `c` with row stride `rsc` (column stride 1).
///
/// With `beta == 0.0` the old contents of `c` are never read (NaN is fine), so a
/// reused scratch needs no clearing; `k == 0` then writes zeros. Panics if a view
/// does not hold its whole matrix or if `rsc < n` (two elements of `c` would
/// share a slot).
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: Mat,
    b: Mat,
    beta: f32,
    c: &mut [f32],
    rsc: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(m == 1 || rsc >= n, "gemm: C rows overlap");
    assert!(fits(c.len(), m, n, rsc, 1), "gemm: C out of bounds");
    if k == 0 {
        for i in 0..m {
            for v in &mut c[i * rsc..][..n] {
                *v = if beta == 0.0 { 0.0 } else { beta * *v };
            }
        }
        return;
    }
    assert!(
        fits(a.data.len(), m, k, a.rs, a.cs),
        "gemm: A out of bounds"
    );
    assert!(
        fits(b.data.len(), k, n, b.rs, b.cs),
        "gemm: B out of bounds"
    );
    let s = |v: usize| v as isize;
    // SAFETY: the asserts above keep every element sgemm touches inside its
    // slice, and `rsc >= n` with column stride 1 gives each element of C its own
    // slot; `c` is borrowed mutably, so nothing else aliases it.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.data.as_ptr(),
            s(a.rs),
            s(a.cs),
            b.data.as_ptr(),
            s(b.rs),
            s(b.cs),
            beta,
            c.as_mut_ptr(),
            s(rsc),
            1,
        );
    }
}

/// Which per-thread scratch buffer a caller uses. A kernel running on a rayon
/// worker and the thread that started it use different slots.
#[derive(Clone, Copy)]
pub(super) enum Slot {
    /// Per chunk of images: im2col / col2im matrices.
    Chunk = 0,
    /// Per call, on the calling thread: per-chunk partial weight gradients.
    Partials = 1,
}

thread_local! {
    static SCRATCH: [Cell<Vec<f32>>; 2] = const { [Cell::new(Vec::new()), Cell::new(Vec::new())] };
}

/// Runs `f` on a scratch slice of `len` floats from this thread's `slot`, grown
/// as needed and kept for the next call. The contents are left over from earlier
/// calls: `f` must write before it reads. Re-entrant use of a slot (a rayon
/// worker stealing a second kernel call) gets a fresh buffer instead of sharing.
pub(super) fn with_scratch<R>(slot: Slot, len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = SCRATCH.with(|s| s[slot as usize].take());
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let r = f(&mut buf[..len]);
    SCRATCH.with(|s| s[slot as usize].set(buf));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `c = a b + beta c` by the formula.
    #[allow(clippy::too_many_arguments)]
    fn gemm_naive(
        m: usize,
        k: usize,
        n: usize,
        a: Mat,
        b: Mat,
        beta: f32,
        c: &mut [f32],
        rsc: usize,
    ) {
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0.0f32;
                for l in 0..k {
                    acc += a.data[i * a.rs + l * a.cs] * b.data[l * b.rs + j * b.cs];
                }
                let old = if beta == 0.0 {
                    0.0
                } else {
                    beta * c[i * rsc + j]
                };
                c[i * rsc + j] = acc + old;
            }
        }
    }

    #[test]
    fn gemm_matches_formula_with_strides_and_beta() {
        let (m, k, n, rsc) = (5, 7, 3, 4);
        let a: Vec<f32> = (0..m * k * 2).map(|i| (i % 5) as f32 - 2.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 3) as f32 - 1.0).collect();
        for beta in [0.0, 1.0] {
            let mut fast = vec![f32::NAN; m * rsc];
            let mut slow = vec![f32::NAN; m * rsc];
            if beta != 0.0 {
                fast.iter_mut().for_each(|v| *v = 1.0);
                slow.iter_mut().for_each(|v| *v = 1.0);
            }
            let av = Mat {
                data: &a,
                rs: 2 * k,
                cs: 2,
            };
            let bv = Mat::rows_t(&b, k);
            gemm(m, k, n, av, bv, beta, &mut fast, rsc);
            gemm_naive(m, k, n, av, bv, beta, &mut slow, rsc);
            for i in 0..m {
                assert_eq!(fast[i * rsc..i * rsc + n], slow[i * rsc..i * rsc + n]);
            }
        }
    }

    #[test]
    fn gemm_with_k_zero_writes_zeros() {
        let mut c = vec![f32::NAN; 6];
        gemm(
            2,
            0,
            3,
            Mat::rows(&[], 0),
            Mat::rows(&[], 3),
            0.0,
            &mut c,
            3,
        );
        assert_eq!(c, vec![0.0; 6]);
    }

    #[test]
    #[should_panic(expected = "A out of bounds")]
    fn gemm_rejects_short_a() {
        let mut c = vec![0.0; 4];
        gemm(
            2,
            2,
            2,
            Mat::rows(&[1.0; 3], 2),
            Mat::rows(&[1.0; 4], 2),
            0.0,
            &mut c,
            2,
        );
    }
}
