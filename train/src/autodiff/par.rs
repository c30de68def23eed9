//! Data-parallel loops over `[rows, C]` buffers on the rayon pool.
//!
//! Work is split into blocks of whole rows whose size depends only on the data
//! (never on the number of threads), and reductions add the blocks' partial
//! sums in block order, so every result is identical from run to run and
//! machine to machine.

use std::ops::Range;

use rayon::prelude::*;

/// Elements per parallel block (rounded to whole rows).
const BLOCK: usize = 1 << 14;

/// Rows per block for rows of `c` elements.
fn block_rows(c: usize) -> usize {
    (BLOCK / c.max(1)).max(1)
}

/// `[f(x_i)]`.
pub(super) fn map(x: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    x.par_iter().with_min_len(BLOCK).map(|&e| f(e)).collect()
}

/// `[f(x_i, y_i)]` for slices of equal length.
pub(super) fn zip_map(x: &[f32], y: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    x.par_iter()
        .zip(y.par_iter())
        .with_min_len(BLOCK)
        .map(|(&a, &b)| f(a, b))
        .collect()
}

/// `[f(x[r, ch], ch)]` over rows of `c` channels.
pub(super) fn map_rows(x: &[f32], c: usize, f: impl Fn(f32, usize) -> f32 + Sync) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    if c == 0 {
        return out;
    }
    let step = block_rows(c) * c;
    out.par_chunks_mut(step)
        .zip(x.par_chunks(step))
        .for_each(|(dst, src)| {
            for (d_row, s_row) in dst.chunks_mut(c).zip(src.chunks(c)) {
                for (ch, (d, &e)) in d_row.iter_mut().zip(s_row).enumerate() {
                    *d = f(e, ch);
                }
            }
        });
    out
}

/// `[f(x[r, ch], y[r, ch], ch)]` over rows of `c` channels (`x`, `y` of equal
/// length).
pub(super) fn zip_map_rows(
    x: &[f32],
    y: &[f32],
    c: usize,
    f: impl Fn(f32, f32, usize) -> f32 + Sync,
) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    if c == 0 {
        return out;
    }
    let step = block_rows(c) * c;
    out.par_chunks_mut(step)
        .zip(x.par_chunks(step))
        .zip(y.par_chunks(step))
        .for_each(|((dst, xs), ys)| {
            for ((d_row, x_row), y_row) in dst.chunks_mut(c).zip(xs.chunks(c)).zip(ys.chunks(c)) {
                for (ch, ((d, &a), &b)) in d_row.iter_mut().zip(x_row).zip(y_row).enumerate() {
                    *d = f(a, b, ch);
                }
            }
        });
    out
}

/// A reduction over `rows` rows into `width` f64 accumulators: `f(rows, acc)`
/// adds the contribution of a range of rows into a zeroed `acc`; the blocks'
/// accumulators are summed in block order.
pub(super) fn reduce_rows(
    rows: usize,
    c: usize,
    width: usize,
    f: impl Fn(Range<usize>, &mut [f64]) + Sync,
) -> Vec<f64> {
    let per = block_rows(c);
    let blocks = rows.div_ceil(per);
    let parts: Vec<Vec<f64>> = (0..blocks)
        .into_par_iter()
        .map(|b| {
            let mut acc = vec![0.0f64; width];
            f(b * per..((b + 1) * per).min(rows), &mut acc);
            acc
        })
        .collect();
    let mut total = vec![0.0f64; width];
    for p in parts {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a pool of `threads` threads.
    fn on(threads: usize, f: impl FnOnce() -> Vec<f64> + Send) -> Vec<f64> {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(f)
    }

    #[test]
    fn reductions_do_not_depend_on_the_thread_count() {
        let (rows, c) = (10_000, 7);
        let x: Vec<f32> = (0..rows * c)
            .map(|i| ((i * 7919) % 1000) as f32 * 1e-3)
            .collect();
        let sum = || {
            reduce_rows(rows, c, c, |range, acc| {
                for r in range {
                    for (ch, s) in acc.iter_mut().enumerate() {
                        *s += x[r * c + ch] as f64;
                    }
                }
            })
        };
        let one = on(1, sum);
        let three = on(3, sum);
        assert_eq!(one, three);
        // And they are the sums.
        for ch in 0..c {
            let want: f64 = (0..rows).map(|r| x[r * c + ch] as f64).sum();
            assert!((one[ch] - want).abs() < 1e-9 * want.abs().max(1.0));
        }
    }

    #[test]
    fn maps_over_many_blocks() {
        let (rows, c) = (5_000, 5);
        let x: Vec<f32> = (0..rows * c).map(|i| i as f32).collect();
        let y = map_rows(&x, c, |e, ch| e * 2.0 + ch as f32);
        let z = zip_map_rows(&x, &y, c, |a, b, ch| b - a - ch as f32);
        for (i, (&a, &b)) in x.iter().zip(&z).enumerate() {
            assert_eq!(y[i], a * 2.0 + (i % c) as f32);
            assert_eq!(b, a);
        }
        assert_eq!(map(&x, |e| -e)[24_999], -24_999.0);
        assert_eq!(zip_map(&x, &y, |a, b| b - 2.0 * a)[7], 2.0);
        assert!(map_rows(&[], 0, |e, _| e).is_empty());
    }
}
