//! Differential tests: every fast kernel against its `*_naive` oracle.
//!
//! Two comparisons:
//! - values uniform in [-1, 1]: `|fast - naive| <= 1e-4 * max(1, |naive|)` per
//!   element (the kernels sum in a different order than the oracles);
//! - ±1 inputs and weights, integer `dy` in [-2, 2]: exactly equal, since every
//!   partial sum is an integer below 2^24 and so exact in f32 in any order.
//!
//! Each conv case runs with the default plan and with small chunks and blocks
//! (blocks that end inside an image), so chunk and block boundaries and the
//! cross-chunk `dw` reduction are exercised on small batches too.

use bnnc_ir::{Conv2dAttrs, PadValue};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::conv::{conv2d_backward_planned, conv2d_forward_planned, Plan};
use super::*;

/// How test inputs are drawn.
#[derive(Clone, Copy, Debug)]
enum Values {
    /// Uniform in [-1, 1]; compared with tolerance.
    Real,
    /// ±1 inputs and weights, `dy` integers in [-2, 2]; compared exactly.
    Binary,
}

fn draw(rng: &mut ChaCha8Rng, len: usize, values: Values, grad: bool) -> Vec<f32> {
    (0..len)
        .map(|_| match values {
            Values::Real => rng.random_range(-1.0f32..=1.0),
            Values::Binary if grad => rng.random_range(-2i32..=2) as f32,
            Values::Binary => {
                if rng.random::<bool>() {
                    1.0
                } else {
                    -1.0
                }
            }
        })
        .collect()
}

fn assert_matches(fast: &[f32], naive: &[f32], values: Values, what: &str) {
    assert_eq!(fast.len(), naive.len(), "{what}: length");
    for (i, (&f, &s)) in fast.iter().zip(naive).enumerate() {
        let ok = match values {
            Values::Binary => f == s,
            Values::Real => (f - s).abs() <= 1e-4 * s.abs().max(1.0),
        };
        assert!(ok, "{what}[{i}]: fast {f} vs naive {s} ({values:?})");
    }
}

#[allow(clippy::too_many_arguments)]
fn geom(
    n: usize,
    [h, w, c]: [usize; 3],
    o: usize,
    [kh, kw]: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 4],
    dilation: [usize; 2],
    groups: usize,
    pad: Option<PadValue>,
) -> Option<ConvGeom> {
    let attrs = Conv2dAttrs {
        stride,
        padding,
        dilation,
        groups,
        pad_value: pad,
    };
    ConvGeom::new(&attrs, &[n, h, w, c], &[o, kh, kw, c / groups.max(1)])
}

/// Runs forward and backward (dx and dw together, then each alone) of `g` under
/// the default plan and small plans, and compares with the oracles.
fn check_conv(g: &ConvGeom, seed: u64, values: Values) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = draw(&mut rng, g.n * g.h * g.w * g.c, values, false);
    let w = draw(&mut rng, g.o * g.kh * g.kw * g.cg(), values, false);
    let ylen = g.n * g.oh * g.ow * g.o;
    let dy = draw(&mut rng, ylen, values, true);

    let mut y_ref = vec![0.0; ylen];
    conv2d_forward_naive(g, &x, &w, &mut y_ref);
    let (mut dx_ref, mut dw_ref) = (vec![0.0; x.len()], vec![0.0; w.len()]);
    conv2d_backward_naive(g, &x, &w, &dy, Some(&mut dx_ref), Some(&mut dw_ref));

    let small = [(1, 1), (2, 5), (3, 7)].map(|(chunk, block_rows)| Plan { chunk, block_rows });
    for plan in [Plan::new(g)].into_iter().chain(small) {
        let ctx = format!("{g:?} {plan:?}");
        let mut y = vec![f32::NAN; ylen];
        conv2d_forward_planned(g, &plan, &x, &w, &mut y);
        assert_matches(&y, &y_ref, values, &format!("y {ctx}"));

        let (mut dx, mut dw) = (vec![f32::NAN; x.len()], vec![f32::NAN; w.len()]);
        conv2d_backward_planned(g, &plan, &x, &w, &dy, Some(&mut dx), Some(&mut dw));
        assert_matches(&dx, &dx_ref, values, &format!("dx {ctx}"));
        assert_matches(&dw, &dw_ref, values, &format!("dw {ctx}"));

        let mut dx_only = vec![f32::NAN; x.len()];
        conv2d_backward_planned(g, &plan, &x, &w, &dy, Some(&mut dx_only), None);
        assert_eq!(dx_only, dx, "dx alone differs from dx with dw: {ctx}");
        let mut dw_only = vec![f32::NAN; w.len()];
        conv2d_backward_planned(g, &plan, &x, &w, &dy, None, Some(&mut dw_only));
        assert_eq!(dw_only, dw, "dw alone differs from dw with dx: {ctx}");
    }

    let mut y = vec![f32::NAN; ylen];
    conv2d_forward(g, &x, &w, &mut y);
    assert_matches(&y, &y_ref, values, "y (public entry)");
    let (mut dx, mut dw) = (vec![f32::NAN; x.len()], vec![f32::NAN; w.len()]);
    conv2d_backward(g, &x, &w, &dy, Some(&mut dx), Some(&mut dw));
    assert_matches(&dx, &dx_ref, values, "dx (public entry)");
    assert_matches(&dw, &dw_ref, values, "dw (public entry)");
}

fn check_conv_both(g: &ConvGeom, seed: u64) {
    check_conv(g, seed, Values::Real);
    check_conv(g, seed, Values::Binary);
}

const PADS: [Option<PadValue>; 4] = [
    None,
    Some(PadValue::Zero),
    Some(PadValue::PlusOne),
    Some(PadValue::MinusOne),
];

/// A typical 3x3 "same" layer, with every pad value.
#[test]
fn conv_3x3_same_each_pad_value() {
    for (s, pad) in PADS.into_iter().enumerate() {
        let g = geom(3, [6, 6, 8], 8, [3, 3], [1, 1], [1; 4], [1, 1], 1, pad).unwrap();
        check_conv_both(&g, s as u64);
    }
}

#[test]
fn conv_stride_2_odd_sizes() {
    let pad = Some(PadValue::MinusOne);
    let g = geom(2, [7, 9, 3], 5, [3, 3], [2, 2], [1; 4], [1, 1], 1, pad).unwrap();
    check_conv_both(&g, 10);
}

#[test]
fn conv_dilation_2_asymmetric_padding() {
    let pad = Some(PadValue::PlusOne);
    let g = geom(
        2,
        [8, 7, 4],
        6,
        [3, 2],
        [1, 2],
        [2, 0, 1, 3],
        [2, 2],
        1,
        pad,
    )
    .unwrap();
    check_conv_both(&g, 11);
}

#[test]
fn conv_groups() {
    for (s, pad) in PADS.into_iter().enumerate() {
        let g = geom(
            3,
            [5, 6, 6],
            9,
            [3, 3],
            [1, 1],
            [1, 0, 1, 2],
            [1, 1],
            3,
            pad,
        )
        .unwrap();
        check_conv_both(&g, 20 + s as u64);
    }
}

#[test]
fn conv_depthwise_and_channel_multiplier() {
    for (s, pad) in PADS.into_iter().enumerate() {
        let dw = geom(2, [6, 5, 8], 8, [3, 3], [1, 1], [1; 4], [1, 1], 8, pad).unwrap();
        check_conv_both(&dw, 30 + s as u64);
        let mult = geom(
            3,
            [5, 5, 4],
            12,
            [3, 2],
            [2, 1],
            [1, 2, 0, 1],
            [1, 2],
            4,
            pad,
        )
        .unwrap();
        check_conv_both(&mult, 40 + s as u64);
    }
}

#[test]
fn conv_pointwise_and_strided_1x1() {
    let g = geom(3, [5, 7, 6], 4, [1, 1], [1, 1], [0; 4], [1, 1], 1, None).unwrap();
    check_conv_both(&g, 50);
    let g = geom(3, [5, 7, 6], 4, [1, 1], [1, 1], [0; 4], [1, 1], 2, None).unwrap();
    check_conv_both(&g, 51);
    let g = geom(2, [5, 7, 6], 4, [1, 1], [2, 2], [0; 4], [1, 1], 1, None).unwrap();
    check_conv_both(&g, 52);
    let pad = Some(PadValue::MinusOne);
    let g = geom(
        2,
        [5, 7, 6],
        4,
        [1, 1],
        [1, 1],
        [1, 0, 0, 1],
        [1, 1],
        1,
        pad,
    )
    .unwrap();
    check_conv_both(&g, 53);
}

#[test]
fn conv_batch_1_and_first_layer_single_channel() {
    let pad = Some(PadValue::PlusOne);
    let g = geom(1, [9, 9, 1], 7, [3, 3], [1, 1], [1; 4], [1, 1], 1, pad).unwrap();
    check_conv_both(&g, 60);
    let g = geom(1, [4, 4, 5], 3, [4, 4], [1, 1], [0; 4], [1, 1], 1, None).unwrap();
    check_conv_both(&g, 61);
}

/// More images than the default plan has chunks, so chunks hold several images
/// and, in the default plan, several blocks.
#[test]
fn conv_batch_larger_than_chunk_count() {
    let pad = Some(PadValue::MinusOne);
    let g = geom(19, [10, 10, 64], 4, [3, 3], [1, 1], [1; 4], [1, 1], 1, pad).unwrap();
    let plan = Plan::new(&g);
    assert!(plan.chunk > 1 && plan.chunk * g.oh * g.ow > plan.block_rows);
    check_conv_both(&g, 70);
    let g = geom(19, [6, 5, 6], 6, [3, 3], [1, 1], [1; 4], [1, 1], 6, pad).unwrap();
    check_conv_both(&g, 71);
}

/// Padding so large that whole rows of taps, or the whole input, are padding.
#[test]
fn conv_all_padding() {
    let pad = Some(PadValue::PlusOne);
    let g = geom(
        2,
        [2, 2, 3],
        4,
        [3, 3],
        [1, 1],
        [3, 3, 3, 3],
        [1, 1],
        1,
        pad,
    )
    .unwrap();
    check_conv_both(&g, 80);
    let g = geom(
        2,
        [0, 2, 3],
        4,
        [3, 3],
        [1, 1],
        [2, 1, 1, 1],
        [1, 1],
        1,
        pad,
    )
    .unwrap();
    check_conv_both(&g, 81);
}

/// Empty batch, no output channels, no input channels: the fast paths write
/// what the oracles write (zeros, or nothing).
#[test]
fn conv_degenerate_shapes() {
    for (n, c, o, groups) in [(0, 4, 4, 1), (2, 4, 0, 1), (2, 0, 4, 1), (2, 0, 0, 2)] {
        let g = geom(
            n,
            [3, 3, c],
            o,
            [3, 3],
            [1, 1],
            [1; 4],
            [1, 1],
            groups,
            None,
        )
        .unwrap();
        check_conv_both(&g, 90);
    }
}

/// Repeated calls give identical bits (the `dw` reduction has a fixed order).
#[test]
fn conv_backward_is_reproducible() {
    let g = geom(23, [7, 7, 8], 8, [3, 3], [1, 1], [1; 4], [1, 1], 1, None).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let x = draw(&mut rng, g.n * g.h * g.w * g.c, Values::Real, false);
    let w = draw(&mut rng, g.o * 9 * g.c, Values::Real, false);
    let dy = draw(&mut rng, g.n * g.oh * g.ow * g.o, Values::Real, true);
    let run = || {
        let mut dw = vec![0.0; w.len()];
        conv2d_backward(&g, &x, &w, &dy, None, Some(&mut dw));
        dw.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    };
    let first = run();
    for _ in 0..5 {
        assert_eq!(run(), first);
    }
}

#[test]
#[should_panic(expected = "conv2d: w length")]
fn conv_rejects_wrong_weight_length() {
    let g = geom(1, [3, 3, 2], 2, [3, 3], [1, 1], [1; 4], [1, 1], 1, None).unwrap();
    let mut y = vec![0.0; 18];
    conv2d_forward(&g, &[0.0; 18], &[0.0; 35], &mut y);
}

/// A random conv geometry (shapes that do not fit are rejected) and a seed.
fn conv_case(depthwise: bool) -> impl Strategy<Value = (ConvGeom, u64)> {
    let pad = prop::sample::select(PADS.to_vec());
    let shape = (
        1..=5usize,
        1..=7usize,
        1..=7usize,
        1..=4usize,
        1..=4usize,
        1..=3usize,
    );
    let kernel = (
        1..=3usize,
        1..=3usize,
        1..=2usize,
        1..=2usize,
        1..=2usize,
        1..=2usize,
    );
    let padding = prop::array::uniform4(0..=2usize);
    (shape, kernel, padding, pad, any::<u64>()).prop_filter_map(
        "conv shape does not fit",
        move |((n, h, w, cg, og, groups), (kh, kw, sh, sw, dh, dwl), padding, pad, seed)| {
            let (cg, groups) = if depthwise {
                (1, groups + 1)
            } else {
                (cg, groups)
            };
            let g = geom(
                n,
                [h, w, cg * groups],
                og * groups,
                [kh, kw],
                [sh, sw],
                padding,
                [dh, dwl],
                groups,
                pad,
            )?;
            Some((g, seed))
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn conv_matches_oracle((g, seed) in conv_case(false)) {
        check_conv_both(&g, seed);
    }

    #[test]
    fn depthwise_conv_matches_oracle((g, seed) in conv_case(true)) {
        check_conv_both(&g, seed);
    }

    #[test]
    fn dense_matches_oracle(n in 1..=9usize, k in 0..=40usize, o in 0..=9usize, seed: u64) {
        check_dense(n, k, o, seed, Values::Real);
        check_dense(n, k, o, seed, Values::Binary);
    }
}

fn check_dense(n: usize, k: usize, o: usize, seed: u64, values: Values) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = draw(&mut rng, n * k, values, false);
    let w = draw(&mut rng, o * k, values, false);
    let dy = draw(&mut rng, n * o, values, true);
    let (mut y, mut y_ref) = (vec![f32::NAN; n * o], vec![0.0; n * o]);
    dense_forward(n, k, o, &x, &w, &mut y);
    dense_forward_naive(n, k, o, &x, &w, &mut y_ref);
    assert_matches(&y, &y_ref, values, "dense y");
    let (mut dx, mut dw) = (vec![f32::NAN; n * k], vec![f32::NAN; o * k]);
    let (mut dx_ref, mut dw_ref) = (vec![0.0; n * k], vec![0.0; o * k]);
    dense_backward(n, k, o, &x, &w, &dy, Some(&mut dx), Some(&mut dw));
    dense_backward_naive(n, k, o, &x, &w, &dy, Some(&mut dx_ref), Some(&mut dw_ref));
    assert_matches(&dx, &dx_ref, values, "dense dx");
    assert_matches(&dw, &dw_ref, values, "dense dw");
}

/// Sizes big enough for matrixmultiply to use several threads and its blocking.
#[test]
fn dense_large_matches_oracle() {
    check_dense(70, 300, 130, 1, Values::Real);
    check_dense(70, 300, 130, 2, Values::Binary);
}

#[test]
fn dense_empty_batch_gives_zero_weight_gradient() {
    check_dense(0, 5, 3, 3, Values::Real);
}
