//! Op-semantics tests of the reference interpreter.
//!
//! Every expectation is written out as literal numbers computed by hand (the
//! derivation is in a comment where it is not obvious), never by another
//! implementation. Models are written in the text format with inline constants.

use std::path::Path;
use std::time::Instant;

use bnnc_ir::{ElemType, Model, Tensor, TensorData, Weights};
use bnnc_runtime::{run, run_all, RunError};

// ---------------------------------------------------------------------------
// Helpers

fn model(src: &str) -> Model {
    let g = bnnc_ir::text::parse(src).unwrap_or_else(|d| panic!("{}\n{src}", d.render("t.ir")));
    Model::from_graph(g, None, Path::new("t.ir")).unwrap_or_else(|e| panic!("{e}\n{src}"))
}

/// Runs a model with one output and returns it.
fn run1(src: &str, inputs: &[Tensor]) -> Tensor {
    let m = model(src);
    let mut out = run(&m, inputs).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.len(), 1);
    out.remove(0)
}

fn f32t(dims: &[usize], data: &[f32]) -> Tensor {
    Tensor::f32(dims.to_vec(), data.to_vec())
}

fn intt(elem: ElemType, dims: &[usize], data: &[i32]) -> Tensor {
    Tensor::int(elem, dims.to_vec(), data.to_vec())
}

fn b1t(dims: &[usize], data: &[i32]) -> Tensor {
    intt(ElemType::B1, dims, data)
}

fn i32t(dims: &[usize], data: &[i32]) -> Tensor {
    intt(ElemType::I32, dims, data)
}

/// The integer values of `t`, after checking its element type and dims.
fn ints(t: &Tensor, elem: ElemType, dims: &[usize]) -> Vec<i32> {
    assert_eq!(t.elem, elem, "element type");
    assert_eq!(t.dims, dims, "dims");
    t.as_int().expect("integer data").to_vec()
}

/// The f32 values of `t`, after checking it is `f32` of `dims`.
fn floats(t: &Tensor, dims: &[usize]) -> Vec<f32> {
    assert_eq!(t.elem, ElemType::F32, "element type");
    assert_eq!(t.dims, dims, "dims");
    t.as_f32().expect("f32 data").to_vec()
}

/// Bitwise equality of f32 slices (so NaN == NaN and -0.0 != +0.0).
fn assert_bits(got: &[f32], want: &[f32]) {
    let g: Vec<u32> = got.iter().map(|x| x.to_bits()).collect();
    let w: Vec<u32> = want.iter().map(|x| x.to_bits()).collect();
    assert_eq!(g, w, "got {got:?}, want {want:?}");
}

fn assert_close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "element {i}: got {g}, want {w}");
    }
}

/// A `[..]: ELEM[dims]` inline-constant literal.
fn lit(vals: &[i32]) -> String {
    let s: Vec<String> = vals.iter().map(|v| v.to_string()).collect();
    format!("[{}]", s.join(", "))
}

// ---------------------------------------------------------------------------
// sign, ternarize

#[test]
fn sign_of_floats_zero_negzero_nan() {
    let src = "model t\ninput x: f32[7]\ny = sign(x)\noutput y\n";
    let neg_nan = f32::from_bits(0xFFC0_0000);
    let x = f32t(
        &[7],
        &[0.0, -0.0, f32::NAN, neg_nan, -2.5, 3.0, f32::NEG_INFINITY],
    );
    let y = run1(src, &[x]);
    // -1 iff x < 0: +0, -0.0 and NaN (of either sign bit) are not < 0.
    assert_eq!(ints(&y, ElemType::B1, &[7]), [1, 1, 1, 1, -1, 1, -1]);
}

#[test]
fn sign_of_integers() {
    let src = "model t\ninput x: i32[N, 4]\ny = sign(x)\noutput y\n";
    let y = run1(src, &[i32t(&[1, 4], &[-3, 0, 7, i32::MIN])]);
    assert_eq!(ints(&y, ElemType::B1, &[1, 4]), [-1, 1, 1, -1]);
    // sign of a b1 value is itself; of a ternary 0 is +1.
    let src = "model t\ninput x: ternary[3]\ny = sign(x)\noutput y\n";
    let y = run1(src, &[intt(ElemType::Ternary, &[3], &[-1, 0, 1])]);
    assert_eq!(ints(&y, ElemType::B1, &[3]), [-1, 1, 1]);
}

#[test]
fn ternarize_floats_and_ints() {
    let src = "model t\ninput x: f32[7]\ny = ternarize(x, delta=0.5)\noutput y\n";
    let x = f32t(&[7], &[0.6, 0.5, -0.5, -0.6, f32::NAN, 0.0, -0.0]);
    let y = run1(src, &[x]);
    // Strict comparisons: +-delta itself gives 0; NaN gives 0.
    assert_eq!(ints(&y, ElemType::Ternary, &[7]), [1, 0, 0, -1, 0, 0, 0]);

    let src = "model t\ninput x: i32[5]\ny = ternarize(x, delta=1)\noutput y\n";
    let y = run1(src, &[i32t(&[5], &[2, 1, 0, -1, -2])]);
    assert_eq!(ints(&y, ElemType::Ternary, &[5]), [1, 0, 0, 0, -1]);
}

// ---------------------------------------------------------------------------
// conv2d

/// The 3x3 single-channel binary image and kernel of the border tests.
const X3: [i32; 9] = [
    1, -1, 1, //
    -1, 1, 1, //
    1, 1, -1,
];
const W3: [i32; 9] = [
    1, 1, -1, //
    -1, 1, 1, //
    1, -1, 1,
];

fn conv_b1_src(h: usize, c: usize, o: usize, k: usize, w: &[i32], attrs: &str) -> String {
    let attrs = if attrs.is_empty() {
        String::new()
    } else {
        format!(", {attrs}")
    };
    format!(
        "model t\ninput x: b1[N, {h}, {h}, {c}]\nw = {}: b1[{o}, {k}, {k}, {c}]\n\
         y = conv2d(x, w{attrs})\noutput y\n",
        lit(w)
    )
}

#[test]
fn conv2d_b1_pad_values_at_borders_and_corners() {
    // X3 conv W3, 3x3 kernel, stride 1, padding 1, pad value p. Per output pixel,
    // the in-bounds products (by hand, row by row) plus p times the sum of the
    // weights that fall on padding:
    //   (0,0): in-bounds  1 - 1 + 1 + 1 = 2;  padded w: row0 (1+1-1), w[1][0]=-1,
    //          w[2][0]=1  -> p*(1 - 1 + 1) = p;           total 2 + p
    //   (0,1): x row0 . w row1 = -1-1+1 = -1; x row1 . w row2 = -1-1+1 = -1;
    //          padded w row0 -> p;                         total -2 + p
    //   (0,2): in-bounds 1+1+1-1 = 2; padded w row0 (p), w[1][2], w[2][2] (2p) ->
    //                                                     total 2 + 3p
    //   (1,0): in-bounds 1+1-1+1-1+1 = 2; padded column w[.][0] = 1-1+1 -> 2 + p
    //   (1,1): all in bounds: -1 + 3 - 1 = 1
    //   (1,2): in-bounds -1+1-1+1+1+1 = 2; padded column w[.][2] = -1+1+1 -> 2 + p
    //   (2,0): in-bounds -1-1+1+1 = 0; padded w[0][0], w[1][0], row2 -> p-p+p = p
    //   (2,1): x row1 . w row0 = -1; x row2 . w row1 = -1; padded row2 -> -2 + p
    //   (2,2): in-bounds 1+1-1-1 = 0; padded w[0][2], w[1][2], row2 -> -p+p+p = p
    let cases: [(&str, [i32; 9]); 3] = [
        ("+1", [3, -1, 5, 3, 1, 3, 1, -1, 1]),
        ("-1", [1, -3, -1, 1, 1, 1, -1, -3, -1]),
        ("0", [2, -2, 2, 2, 1, 2, 0, -2, 0]),
    ];
    for (pad, want) in cases {
        let src = conv_b1_src(3, 1, 1, 3, &W3, &format!("padding=1, pad_value={pad}"));
        let y = run1(&src, &[b1t(&[1, 3, 3, 1], &X3)]);
        assert_eq!(
            ints(&y, ElemType::I32, &[1, 3, 3, 1]),
            want,
            "pad_value={pad}"
        );
    }
}

#[test]
fn conv2d_b1_stride2_picks_every_other_pixel() {
    // Stride 2 keeps output pixels (0,0), (0,2), (2,0), (2,2) of the stride-1
    // table above; with pad -1 those are 1, -1, -1, -1.
    let src = conv_b1_src(3, 1, 1, 3, &W3, "stride=2, padding=1, pad_value=-1");
    let y = run1(&src, &[b1t(&[1, 3, 3, 1], &X3)]);
    assert_eq!(ints(&y, ElemType::I32, &[1, 2, 2, 1]), [1, -1, -1, -1]);
}

#[test]
fn conv2d_b1_channel_counts() {
    // x: [1, 2, 2, C] all +1. w: [1, 3, 3, C] all +1 except channel C-1, which is
    // -1 at every tap. 3x3 kernel, padding 1 on a 2x2 image: every output pixel is
    // a corner with 4 in-bounds taps and 5 padded taps.
    //   in-bounds tap: sum_c x*w = (C-1) - 1 = C - 2
    //   padded tap:    sum_c p*w = p*(C - 2)
    //   out = 4(C-2) + 5p(C-2):  p=+1: 9(C-2),  p=-1: -(C-2),  p=0: 4(C-2).
    // (C = 1: the only channel is the flipped one, C - 2 = -1.)
    let table: [(usize, [i32; 3]); 5] = [
        (1, [-9, 1, -4]),
        (63, [549, -61, 244]),
        (64, [558, -62, 248]),
        (65, [567, -63, 252]),
        (130, [1152, -128, 512]),
    ];
    for (c, wants) in table {
        let mut w = vec![1; 9 * c];
        for tap in 0..9 {
            w[tap * c + c - 1] = -1;
        }
        let x = b1t(&[1, 2, 2, c], &vec![1; 4 * c]);
        for (pad, want) in ["+1", "-1", "0"].into_iter().zip(wants) {
            let src = conv_b1_src(2, c, 1, 3, &w, &format!("padding=1, pad_value={pad}"));
            let y = run1(&src, std::slice::from_ref(&x));
            assert_eq!(
                ints(&y, ElemType::I32, &[1, 2, 2, 1]),
                [want; 4],
                "C={c} pad_value={pad}"
            );
        }
    }
}

#[test]
fn conv2d_b1_channel_counts_flipped_input_channel() {
    // x: [1, 1, 1, C] all +1 except channel C/2 = -1; w: [2, 1, 1, C], row 0 all
    // +1, row 1 all +1 except channel C-1 = -1. No padding.
    //   o=0: (C-1) - 1 = C - 2
    //   o=1: C/2 != C-1 (C >= 2): two mismatching channels -> C - 4;
    //        C = 1: both flip the same channel, product +1 -> C = 1.
    let table: [(usize, [i32; 2]); 5] = [
        (1, [-1, 1]),
        (63, [61, 59]),
        (64, [62, 60]),
        (65, [63, 61]),
        (130, [128, 126]),
    ];
    for (c, want) in table {
        let mut x = vec![1; c];
        x[c / 2] = -1;
        let mut w = vec![1; 2 * c];
        w[c + c - 1] = -1;
        let src = conv_b1_src(1, c, 2, 1, &w, "");
        let y = run1(&src, &[b1t(&[1, 1, 1, c], &x)]);
        assert_eq!(ints(&y, ElemType::I32, &[1, 1, 1, 2]), want, "C={c}");
    }
}

fn iota(n: usize) -> Vec<f32> {
    (0..n).map(|i| i as f32).collect()
}

#[test]
fn conv2d_f32_stride2() {
    // x[y][x] = 4y + x on a 4x4 image, 2x2 kernel of ones, stride 2: block sums
    // 0+1+4+5 = 10, 2+3+6+7 = 18, 8+9+12+13 = 42, 10+11+14+15 = 50.
    let src = "model t\ninput x: f32[N, 4, 4, 1]\nw = [1, 1, 1, 1]: f32[1, 2, 2, 1]\n\
               y = conv2d(x, w, stride=2)\noutput y\n";
    let y = run1(src, &[f32t(&[1, 4, 4, 1], &iota(16))]);
    assert_bits(&floats(&y, &[1, 2, 2, 1]), &[10.0, 18.0, 42.0, 50.0]);
}

#[test]
fn conv2d_f32_dilation2() {
    // x[y][x] = 4y + x, kernel [1, 10; 100, 1000] dilated by 2 (taps at offsets
    // 0 and 2):
    //   (0,0) = x00 + 10 x02 + 100 x20 + 1000 x22 = 0 + 20 + 800 + 10000 = 10820
    //   (0,1) = 1 + 30 + 900 + 11000 = 11931
    //   (1,0) = 4 + 60 + 1200 + 14000 = 15264
    //   (1,1) = 5 + 70 + 1300 + 15000 = 16375
    let src = "model t\ninput x: f32[N, 4, 4, 1]\nw = [1, 10, 100, 1000]: f32[1, 2, 2, 1]\n\
               y = conv2d(x, w, dilation=2)\noutput y\n";
    let y = run1(src, &[f32t(&[1, 4, 4, 1], &iota(16))]);
    assert_bits(
        &floats(&y, &[1, 2, 2, 1]),
        &[10820.0, 11931.0, 15264.0, 16375.0],
    );
}

#[test]
fn conv2d_b1_dilation2() {
    // X3 with a 2x2 kernel [1, -1; -1, 1] dilated by 2 covers the four corners
    // x00, x02, x20, x22 = 1, 1, 1, -1: 1 - 1 - 1 - 1 = -2.
    let src = conv_b1_src(3, 1, 1, 2, &[1, -1, -1, 1], "dilation=2");
    let y = run1(&src, &[b1t(&[1, 3, 3, 1], &X3)]);
    assert_eq!(ints(&y, ElemType::I32, &[1, 1, 1, 1]), [-2]);
}

#[test]
fn conv2d_groups() {
    // x = [1, 2, 3, 4] (one pixel, 4 channels), groups=2: output 0 sees
    // channels 0..2 with [1, 10] -> 1 + 20 = 21; output 1 sees channels 2..4 with
    // [100, 1000] -> 300 + 4000 = 4300.
    let src = "model t\ninput x: f32[N, 1, 1, 4]\nw = [1, 10, 100, 1000]: f32[2, 1, 1, 2]\n\
               y = conv2d(x, w, groups=2)\noutput y\n";
    let y = run1(src, &[f32t(&[1, 1, 1, 4], &[1.0, 2.0, 3.0, 4.0])]);
    assert_bits(&floats(&y, &[1, 1, 1, 2]), &[21.0, 4300.0]);

    // Binary depthwise-like: groups=4, 4 outputs, 1 channel each, 1x1 kernel:
    // out[o] = x[o] * w[o].
    let src = conv_b1_src(1, 4, 4, 1, &[1, -1, 1, -1], "groups=4")
        .replace("b1[4, 1, 1, 4]", "b1[4, 1, 1, 1]");
    let y = run1(&src, &[b1t(&[1, 1, 1, 4], &[1, 1, -1, -1])]);
    assert_eq!(ints(&y, ElemType::I32, &[1, 1, 1, 4]), [1, -1, -1, 1]);
}

#[test]
fn conv2d_asymmetric_padding() {
    // x = [1 2; 3 4], 2x2 kernel of ones, padding top=1, left=0, bottom=0,
    // right=2 (f32: padded positions contribute nothing). Padded grid:
    //   0 0 0 0 / 1 2 0 0 / 3 4 0 0 -> OH = 2, OW = 3:
    //   [0+0+1+2, 0+0+2+0, 0;  1+2+3+4, 2+4, 0] = [3, 2, 0, 10, 6, 0]
    let src = "model t\ninput x: f32[N, 2, 2, 1]\nw = [1, 1, 1, 1]: f32[1, 2, 2, 1]\n\
               y = conv2d(x, w, padding=[1, 0, 0, 2])\noutput y\n";
    let y = run1(src, &[f32t(&[1, 2, 2, 1], &[1.0, 2.0, 3.0, 4.0])]);
    assert_bits(&floats(&y, &[1, 2, 3, 1]), &[3.0, 2.0, 0.0, 10.0, 6.0, 0.0]);
}

#[test]
fn conv2d_batch_and_multiple_outputs() {
    // 1x1 binary conv over 2 images, 2 channels, 2 outputs:
    //   w0 = [1, 1], w1 = [1, -1]; pixel [a, b] -> [a + b, a - b].
    let src = conv_b1_src(1, 2, 2, 1, &[1, 1, 1, -1], "");
    let x = b1t(&[2, 1, 1, 2], &[1, 1, -1, 1]);
    let y = run1(&src, &[x]);
    assert_eq!(ints(&y, ElemType::I32, &[2, 1, 1, 2]), [2, 0, 0, -2]);
}

// ---------------------------------------------------------------------------
// dense

/// Builds a b1 vector of length `k` that is +1 except at `minus` (the channels
/// whose packed bit is 1).
fn b1_vec(k: usize, minus: &[usize]) -> Vec<i32> {
    let mut v = vec![1; k];
    for &i in minus {
        v[i] = -1;
    }
    v
}

#[test]
fn dense_b1_equals_k_minus_2_popcount() {
    // K = 8. a = channels 1, 2, 6 at -1 -> packed 0b0100_0110 = 0x46.
    //        w0 = channels 0, 1 at -1   -> packed 0b0000_0011 = 0x03.
    //        w1 = all +1                -> 0x00.
    // a ^ w0 = 0x45 = 0b0100_0101, popcount 3 -> 8 - 2*3 = 2.
    // a ^ w1 = 0x46, popcount 3 -> 2 as well; use w1 = channels 1,2,6,7 -> 0xC6:
    // a ^ 0xC6 = 0x80, popcount 1 -> 8 - 2 = 6.
    let a = b1_vec(8, &[1, 2, 6]);
    let mut w = b1_vec(8, &[0, 1]);
    w.extend(b1_vec(8, &[1, 2, 6, 7]));
    let src = format!(
        "model t\ninput x: b1[N, 8]\nw = {}: b1[2, 8]\ny = dense(x, w)\noutput y\n",
        lit(&w)
    );
    let y = run1(&src, &[b1t(&[1, 8], &a)]);
    assert_eq!(ints(&y, ElemType::I32, &[1, 2]), [2, 6]);

    // K = 70, crossing the 64-bit word boundary. a: -1 at channels 0, 64, 69 ->
    // words [0x1, 0x21]; w: -1 at channels 64, 65 -> words [0x0, 0x3].
    // xor = [0x1, 0x22] -> popcount 1 + 2 = 3 -> 70 - 6 = 64.
    let a = b1_vec(70, &[0, 64, 69]);
    let w = b1_vec(70, &[64, 65]);
    let src = format!(
        "model t\ninput x: b1[N, 70]\nw = {}: b1[1, 70]\ny = dense(x, w)\noutput y\n",
        lit(&w)
    );
    let y = run1(&src, &[b1t(&[1, 70], &a)]);
    assert_eq!(ints(&y, ElemType::I32, &[1, 1]), [64]);
}

#[test]
fn dense_f32_x_b1_and_ternary() {
    // x = [0.5, 2, -1]; w0 = [1, -1, 1] -> 0.5 - 2 - 1 = -2.5;
    // w1 = [-1, -1, -1] -> -0.5 - 2 + 1 = -1.5.
    let src = "model t\ninput x: f32[N, 3]\nw = [1, -1, 1, -1, -1, -1]: b1[2, 3]\n\
               y = dense(x, w)\noutput y\n";
    let y = run1(src, &[f32t(&[1, 3], &[0.5, 2.0, -1.0])]);
    assert_bits(&floats(&y, &[1, 2]), &[-2.5, -1.5]);

    // ternary: [1, 0, -1] -> 0.5 + 0 + 1 = 1.5.
    let src = "model t\ninput x: f32[N, 3]\nw = [1, 0, -1]: ternary[1, 3]\n\
               y = dense(x, w)\noutput y\n";
    let y = run1(src, &[f32t(&[1, 3], &[0.5, 2.0, -1.0])]);
    assert_bits(&floats(&y, &[1, 1]), &[1.5]);
}

#[test]
fn dense_integer_pairs() {
    // (x type, w type, x, w, expected)
    type Case<'a> = (&'a str, &'a str, &'a [i32], &'a [i32], i32);
    let cases: [Case; 5] = [
        // u4 x b1: 15 - 0 - 7 = 8
        ("u4", "b1", &[15, 0, 7], &[1, -1, -1], 8),
        // u2 x u3: 3*7 + 1*5 + 2*0 = 26
        ("u2", "u3", &[3, 1, 2], &[7, 5, 0], 26),
        // b1 x ternary: 1*0 + (-1)*1 + 1*(-1) = -2
        ("b1", "ternary", &[1, -1, 1], &[0, 1, -1], -2),
        // ternary x ternary: 0*(-1) + (-1)(-1) + 1*1 = 2
        ("ternary", "ternary", &[0, -1, 1], &[-1, -1, 1], 2),
        // i8 x i8: (-128)(-128) + 127*127 + 3*(-2) = 16384 + 16129 - 6 = 32507
        ("i8", "i8", &[-128, 127, 3], &[-128, 127, -2], 32507),
    ];
    for (xt, wt, x, w, want) in cases {
        let src = format!(
            "model t\ninput x: {xt}[N, 3]\nw = {}: {wt}[1, 3]\ny = dense(x, w)\noutput y\n",
            lit(w)
        );
        let xe = ElemType::from_name(xt).unwrap();
        let y = run1(&src, &[intt(xe, &[1, 3], x)]);
        assert_eq!(ints(&y, ElemType::I32, &[1, 1]), [want], "{xt} x {wt}");
    }
}

#[test]
fn dense_f32_accumulates_in_order() {
    // k ascending in f32: (0 + 1e8) + 1 rounds back to 1e8 (f32 spacing at 1e8
    // is 8), then - 1e8 gives 0, although the exact sum is 1. The second row puts
    // the 1 last: (1e8 - 1e8) + 1 = 1.
    let src = "model t\ninput x: f32[N, 3]\nw = [1, 1, 1]: f32[1, 3]\n\
               y = dense(x, w)\noutput y\n";
    let x = f32t(&[2, 3], &[1e8, 1.0, -1e8, 1e8, -1e8, 1.0]);
    let y = run1(src, &[x]);
    assert_bits(&floats(&y, &[2, 1]), &[0.0, 1.0]);
}

#[test]
fn dense_i32_wraps() {
    // i8 x i8 cannot overflow i32 for K < 2^17; the wrapping rule shows on a long
    // sum only, so check the ordinary large case: K = 4, all -128 * -128 = 16384
    // each -> 65536.
    let src = "model t\ninput x: i8[N, 4]\nw = [-128, -128, -128, -128]: i8[1, 4]\n\
               y = dense(x, w)\noutput y\n";
    let y = run1(src, &[intt(ElemType::SInt(8), &[1, 4], &[-128; 4])]);
    assert_eq!(ints(&y, ElemType::I32, &[1, 1]), [65536]);
}

// ---------------------------------------------------------------------------
// threshold

#[test]
fn table_rows_and_clamping() {
    // lo = -2, R = 3: entry k is for x = -2 + k; x below -2 reads entry 0 and
    // above 0 reads entry 2. Row 0 = [-1, 1, -1], row 1 = [1, 1, -1].
    // x = [-5, -2 | -1, 0 | 0, 7]: channel 0 reads k = 0, 1, 2 -> -1, 1, -1;
    // channel 1 reads k = 0, 2, 2 -> 1, -1, -1.
    let src = "model t\ninput x: i32[N, 2]\nt = [-1, 1, -1, 1, 1, -1]: b1[2, 3]\n\
               y = table(x, t, lo=-2)\noutput y\n";
    let y = run1(src, &[i32t(&[3, 2], &[-5, -2, -1, 0, 0, 7])]);
    assert_eq!(ints(&y, ElemType::B1, &[3, 2]), [-1, 1, 1, -1, -1, -1]);
}

#[test]
fn table_shared_row_f32_over_b1() {
    // One row [0.5, -2.0, 7.0] with lo = -1: b1 -1 -> entry 0, +1 -> entry 2.
    let src = "model t\ninput x: b1[N, 3]\nt = [0.5, -2.0, 7.0]: f32[1, 3]\n\
               y = table(x, t, lo=-1)\noutput y\n";
    let y = run1(src, &[intt(ElemType::B1, &[1, 3], &[1, -1, 1])]);
    assert_eq!(floats(&y, &[1, 3]), [7.0, 0.5, 7.0]);
}

#[test]
fn table_extreme_inputs_do_not_overflow() {
    // x - lo is taken in i64: i32::MIN - 5 and i32::MAX - (-5) clamp to the ends.
    let src = "model t\ninput x: i32[N, 1]\nt = [3, 4]: i32[1, 2]\n\
               y = table(x, t, lo=5)\noutput y\n";
    let y = run1(src, &[i32t(&[3, 1], &[i32::MIN, i32::MAX, 6])]);
    assert_eq!(ints(&y, ElemType::I32, &[3, 1]), [3, 4, 4]);
}

#[test]
fn fill_ignores_values_keeps_shape() {
    // NaN, -inf and -0.0 in x do not matter: every element is the value.
    let src = "model t\ninput x: f32[N, 2]\ny = fill(x, value=-1, to=b1)\n\
               z = fill(x, value=7, to=i32)\nf = fill(x, value=0.5, to=f32)\noutput y, z, f\n";
    let m = model(src);
    let out = run(
        &m,
        &[f32t(&[2, 2], &[f32::NAN, f32::NEG_INFINITY, -0.0, 1.0])],
    )
    .unwrap();
    assert_eq!(ints(&out[0], ElemType::B1, &[2, 2]), [-1; 4]);
    assert_eq!(ints(&out[1], ElemType::I32, &[2, 2]), [7; 4]);
    assert_eq!(floats(&out[2], &[2, 2]), [0.5; 4]);
}

#[test]
fn threshold_t1_gives_b1() {
    // Channel 0 threshold 0, channel 1 threshold 5; x >= t -> +1.
    let src = "model t\ninput x: i32[N, 2]\nt = [0, 5]: i32[2, 1]\n\
               y = threshold(x, t)\noutput y\n";
    let y = run1(src, &[i32t(&[2, 2], &[0, 4, -1, 5])]);
    assert_eq!(ints(&y, ElemType::B1, &[2, 2]), [1, -1, -1, 1]);
}

#[test]
fn threshold_u2_unsorted_thresholds() {
    // t = [5, 0, 2] (decreasing then increasing) shared by all channels ([1, T]):
    // count of {5, 0, 2} <= x:  -1 -> 0, 0 -> 1, 1 -> 1, 2 -> 2, 4 -> 2, 5 -> 3, 9 -> 3.
    let src = "model t\ninput x: i32[N, 7]\nt = [5, 0, 2]: i32[1, 3]\n\
               y = threshold(x, t)\noutput y\n";
    let y = run1(src, &[i32t(&[1, 7], &[-1, 0, 1, 2, 4, 5, 9])]);
    assert_eq!(ints(&y, ElemType::UInt(2), &[1, 7]), [0, 1, 1, 2, 2, 3, 3]);
}

#[test]
fn threshold_equal_thresholds() {
    // t = [3, 3, 3]: all or nothing.
    let src = "model t\ninput x: i32[N, 3]\nt = [3, 3, 3]: i32[1, 3]\n\
               y = threshold(x, t)\noutput y\n";
    let y = run1(src, &[i32t(&[1, 3], &[2, 3, 4])]);
    assert_eq!(ints(&y, ElemType::UInt(2), &[1, 3]), [0, 3, 3]);
}

#[test]
fn threshold_dir_minus_one() {
    // Channel 0 counts x >= t, channel 1 counts x <= t, t = [0, 10, 20] for both.
    //   x = 10: ch0 passes 0, 10 -> 2;  ch1 passes 10, 20 -> 2
    //   x = 25: ch0 -> 3;               ch1 -> 0
    //   x = -5: ch0 -> 0;               ch1 -> 3
    let src = "model t\ninput x: i32[N, 2]\nt = [0, 10, 20, 0, 10, 20]: i32[2, 3]\n\
               d = [1, -1]: i32[2]\ny = threshold(x, t, d)\noutput y\n";
    let y = run1(src, &[i32t(&[3, 2], &[10, 10, 25, 25, -5, -5])]);
    assert_eq!(ints(&y, ElemType::UInt(2), &[3, 2]), [2, 2, 3, 0, 0, 3]);

    // T = 1 with dir -1: x <= 3 -> +1.
    let src = "model t\ninput x: i32[N, 1]\nt = [3]: i32[1, 1]\nd = [-1]: i32[1]\n\
               y = threshold(x, t, d)\noutput y\n";
    let y = run1(src, &[i32t(&[3, 1], &[2, 3, 4])]);
    assert_eq!(ints(&y, ElemType::B1, &[3, 1]), [1, 1, -1]);
}

#[test]
fn threshold_f32_and_u3() {
    // f32, T = 1, t = 0: 0.5 -> +1, NaN passes nothing -> -1, -0.0 >= 0.0 -> +1.
    let src = "model t\ninput x: f32[N, 1]\nt = [0]: f32[1, 1]\ny = threshold(x, t)\noutput y\n";
    let y = run1(src, &[f32t(&[3, 1], &[0.5, f32::NAN, -0.0])]);
    assert_eq!(ints(&y, ElemType::B1, &[3, 1]), [1, -1, 1]);

    // T = 7 gives u3: t = [1..7], x = 4.5 passes 1, 2, 3, 4 -> 4.
    let src = "model t\ninput x: f32[N, 1]\nt = [1, 2, 3, 4, 5, 6, 7]: f32[1, 7]\n\
               y = threshold(x, t)\noutput y\n";
    let y = run1(src, &[f32t(&[2, 1], &[4.5, 100.0])]);
    assert_eq!(ints(&y, ElemType::UInt(3), &[2, 1]), [4, 7]);
}

#[test]
fn threshold_zero_is_sign() {
    // threshold(x, [0]) is sign(x) on i32.
    let src = "model t\ninput x: i32[N, 1]\nt = [0]: i32[1, 1]\ny = threshold(x, t)\n\
               s = sign(x)\noutput y, s\n";
    let m = model(src);
    let out = run(&m, &[i32t(&[4, 1], &[-2, -1, 0, 1])]).unwrap();
    assert_eq!(ints(&out[0], ElemType::B1, &[4, 1]), [-1, -1, 1, 1]);
    assert_eq!(ints(&out[1], ElemType::B1, &[4, 1]), [-1, -1, 1, 1]);
}

// ---------------------------------------------------------------------------
// quantize, dequantize, batchnorm

#[test]
fn quantize_rounds_half_to_even_and_clamps() {
    // scale 1, u4 (0..15): ties to even 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -0.5 -> 0;
    // 3.49 -> 3; 20 -> 15 (clamped); -3 -> 0 (clamped); NaN -> zero_point 0;
    // +inf -> 15.
    let src = "model t\ninput x: f32[9]\ny = quantize(x, to=u4, scale=1)\noutput y\n";
    let x = f32t(
        &[9],
        &[
            0.5,
            1.5,
            2.5,
            -0.5,
            3.49,
            20.0,
            -3.0,
            f32::NAN,
            f32::INFINITY,
        ],
    );
    let y = run1(src, std::slice::from_ref(&x));
    assert_eq!(
        ints(&y, ElemType::UInt(4), &[9]),
        [0, 2, 2, 0, 3, 15, 0, 0, 15]
    );

    // clip=[0, 7]: 20 and +inf -> 7.
    let src = "model t\ninput x: f32[9]\ny = quantize(x, to=u4, scale=1, clip=[0, 7])\noutput y\n";
    let y = run1(src, &[x]);
    assert_eq!(
        ints(&y, ElemType::UInt(4), &[9]),
        [0, 2, 2, 0, 3, 7, 0, 0, 7]
    );
}

#[test]
fn quantize_signed_with_zero_point() {
    // i4 (-8..7), scale 0.5, zero_point 1: q = round_even(x / 0.5) + 1
    //   0.25 -> 0.5 -> 0 -> 1;  0.75 -> 1.5 -> 2 -> 3;  -4 -> -8 -> -7;
    //   10 -> 20 -> 21 -> 7;    NaN -> 1;  -0.25 -> -0.5 -> -0 -> 1;
    //   -100 -> -200 -> -199 -> -8.
    let src =
        "model t\ninput x: f32[7]\ny = quantize(x, to=i4, scale=0.5, zero_point=1)\noutput y\n";
    let x = f32t(&[7], &[0.25, 0.75, -4.0, 10.0, f32::NAN, -0.25, -100.0]);
    let y = run1(src, &[x]);
    assert_eq!(ints(&y, ElemType::SInt(4), &[7]), [1, 3, -7, 7, 1, 1, -8]);

    // NaN gives the zero point clamped into range: zero_point 9 on u3 (0..7) -> 7.
    let src = "model t\ninput x: f32[1]\ny = quantize(x, to=u3, scale=1, zero_point=9)\noutput y\n";
    let y = run1(src, &[f32t(&[1], &[f32::NAN])]);
    assert_eq!(ints(&y, ElemType::UInt(3), &[1]), [7]);
}

#[test]
fn quantize_integer_input() {
    // i32 input, scale 2: 7/2 = 3.5 -> 4; -3/2 = -1.5 -> -2 -> clamped to 0 (u3);
    // 5/2 = 2.5 -> 2.
    let src = "model t\ninput x: i32[3]\ny = quantize(x, to=u3, scale=2)\noutput y\n";
    let y = run1(src, &[i32t(&[3], &[7, -3, 5])]);
    assert_eq!(ints(&y, ElemType::UInt(3), &[3]), [4, 0, 2]);
}

#[test]
fn dequantize_values() {
    // (q - 1) * 0.5: 0 -> -0.5, 3 -> 1, 15 -> 7.
    let src = "model t\ninput q: u4[3]\ny = dequantize(q, scale=0.5, zero_point=1)\noutput y\n";
    let y = run1(src, &[intt(ElemType::UInt(4), &[3], &[0, 3, 15])]);
    assert_bits(&floats(&y, &[3]), &[-0.5, 1.0, 7.0]);
}

#[test]
fn batchnorm_values() {
    // ch0: (3 - 1) / sqrt(3 + 1) * 2 + 0.5 = 2/2*2 + 0.5 = 2.5
    // ch1: (-1 - 1) / sqrt(0 + 1) * -1 + 1 = -2 * -1 + 1 = 3
    // second row ch0: (1 - 1) / 2 * 2 + 0.5 = 0.5; ch1: (1 - 1) * -1 + 1 = 1
    let src = "model t\ninput x: i32[N, 2]\ng = [2, -1]: f32[2]\nb = [0.5, 1]: f32[2]\n\
               m = [1, 1]: f32[2]\nv = [3, 0]: f32[2]\n\
               y = batchnorm(x, g, b, m, v, eps=1)\noutput y\n";
    let y = run1(src, &[i32t(&[2, 2], &[3, -1, 1, 1])]);
    assert_bits(&floats(&y, &[2, 2]), &[2.5, 3.0, 0.5, 1.0]);
}

// ---------------------------------------------------------------------------
// elementwise arithmetic and activations

#[test]
fn add_sub_mul_broadcast_i32() {
    // a [2, 3] with b [3]: b repeats along rows.
    let a = i32t(&[2, 3], &[1, 2, 3, 4, 5, 6]);
    let b = i32t(&[3], &[10, 20, 30]);
    let cases: [(&str, [i32; 6]); 3] = [
        ("add", [11, 22, 33, 14, 25, 36]),
        ("sub", [-9, -18, -27, -6, -15, -24]),
        ("mul", [10, 40, 90, 40, 100, 180]),
    ];
    for (op, want) in cases {
        let src =
            format!("model t\ninput a: i32[2, 3]\ninput b: i32[3]\ny = {op}(a, b)\noutput y\n");
        let m = model(&src);
        let y = run(&m, &[a.clone(), b.clone()]).unwrap().remove(0);
        assert_eq!(ints(&y, ElemType::I32, &[2, 3]), want, "{op}");
    }
}

#[test]
fn add_broadcast_both_ways_f32() {
    // [2, 1] + [1, 3] -> [2, 3]: out[i][j] = a[i] + b[j].
    let src = "model t\ninput a: f32[2, 1]\ninput b: f32[1, 3]\ny = add(a, b)\noutput y\n";
    let m = model(src);
    let y = run(
        &m,
        &[
            f32t(&[2, 1], &[100.0, 200.0]),
            f32t(&[1, 3], &[1.0, 2.0, 3.0]),
        ],
    )
    .unwrap()
    .remove(0);
    assert_bits(
        &floats(&y, &[2, 3]),
        &[101.0, 102.0, 103.0, 201.0, 202.0, 203.0],
    );
}

#[test]
fn arith_mixed_types() {
    // i32 * f32 -> f32; broadcasting a batched [N, 2] with a constant [2].
    let src = "model t\ninput x: i32[N, 2]\nk = [0.5, -2]: f32[2]\ny = mul(x, k)\noutput y\n";
    let y = run1(src, &[i32t(&[2, 2], &[3, 3, -4, 0])]);
    assert_bits(&floats(&y, &[2, 2]), &[1.5, -6.0, -2.0, -0.0]);

    // b1 + b1 -> i32; i32 addition wraps.
    let src = "model t\ninput a: b1[2]\ninput b: b1[2]\ny = add(a, b)\noutput y\n";
    let m = model(src);
    let y = run(&m, &[b1t(&[2], &[1, -1]), b1t(&[2], &[1, 1])])
        .unwrap()
        .remove(0);
    assert_eq!(ints(&y, ElemType::I32, &[2]), [2, 0]);

    let src = "model t\ninput a: i32[2]\nk = [1]: i32[1]\ny = add(a, k)\noutput y\n";
    let y = run1(src, &[i32t(&[2], &[i32::MAX, -1])]);
    assert_eq!(ints(&y, ElemType::I32, &[2]), [i32::MIN, 0]);
}

#[test]
fn relu_f32_and_int() {
    let src = "model t\ninput x: f32[5]\ny = relu(x)\noutput y\n";
    let y = run1(src, &[f32t(&[5], &[-1.0, 0.0, 2.0, f32::NAN, -0.0])]);
    assert_bits(&floats(&y, &[5]), &[0.0, 0.0, 2.0, f32::NAN, 0.0]);

    // relu of b1 gives i32: -1 -> 0, +1 -> 1.
    let src = "model t\ninput x: b1[2]\ny = relu(x)\noutput y\n";
    let y = run1(src, &[b1t(&[2], &[-1, 1])]);
    assert_eq!(ints(&y, ElemType::I32, &[2]), [0, 1]);
}

#[test]
fn hardtanh_clip_sigmoid() {
    let src = "model t\ninput x: f32[5]\ny = hardtanh(x)\noutput y\n";
    let y = run1(src, &[f32t(&[5], &[-3.0, -0.5, 2.0, f32::NAN, 1.0])]);
    assert_bits(&floats(&y, &[5]), &[-1.0, -0.5, 1.0, f32::NAN, 1.0]);

    let src = "model t\ninput x: f32[4]\ny = clip(x, min=0, max=6)\noutput y\n";
    let y = run1(src, &[f32t(&[4], &[-1.0, 3.0, 7.0, f32::NAN])]);
    assert_bits(&floats(&y, &[4]), &[0.0, 3.0, 6.0, f32::NAN]);

    // sigmoid(0) = 1/2 exactly; sigmoid(ln 3) = 1/(1 + 1/3) = 3/4;
    // sigmoid(-inf) = 1/(1 + inf) = 0; sigmoid(+inf) = 1/(1 + 0) = 1.
    let src = "model t\ninput x: f32[4]\ny = sigmoid(x)\noutput y\n";
    let x = f32t(&[4], &[0.0, 3f32.ln(), f32::NEG_INFINITY, f32::INFINITY]);
    let y = floats(&run1(src, &[x]), &[4]);
    assert_bits(&[y[0], y[2], y[3]], &[0.5, 0.0, 1.0]);
    assert_close(&y[1..2], &[0.75], 1e-6);
}

#[test]
fn prelu_and_rprelu() {
    // prelu: -2 * 0.25 = -0.5; 3 > 0 stays 3.
    let src = "model t\ninput x: f32[N, 2]\na = [0.25, 0.5]: f32[2]\ny = prelu(x, a)\noutput y\n";
    let y = run1(src, &[f32t(&[2, 2], &[-2.0, 3.0, 4.0, -4.0])]);
    assert_bits(&floats(&y, &[2, 2]), &[-0.5, 3.0, 4.0, -2.0]);

    // rprelu: ch0 u = 1 - 0.5 = 0.5 > 0 -> 0.5 + 1 = 1.5;
    //         ch1 u = -1 - 0 = -1 -> 0.25 * -1 + 2 = 1.75.
    let src = "model t\ninput x: f32[N, 2]\ng = [0.5, 0]: f32[2]\nb = [0.1, 0.25]: f32[2]\n\
               z = [1, 2]: f32[2]\ny = rprelu(x, g, b, z)\noutput y\n";
    let y = run1(src, &[f32t(&[1, 2], &[1.0, -1.0])]);
    assert_bits(&floats(&y, &[1, 2]), &[1.5, 1.75]);
}

// ---------------------------------------------------------------------------
// pooling

#[test]
fn maxpool_skips_padding() {
    // x = -1..-9 on a 3x3 image; kernel 2, stride 2, padding 1 -> 2x2 windows:
    //   (0,0): only x00 = -1 (a zero-filled pad would give 0)
    //   (0,1): x01, x02 = -2, -3 -> -2
    //   (1,0): x10, x20 = -4, -7 -> -4
    //   (1,1): x11, x12, x21, x22 = -5, -6, -8, -9 -> -5
    let src = "model t\ninput x: f32[N, 3, 3, 1]\ny = maxpool2d(x, kernel=2, stride=2, padding=1)\noutput y\n";
    let x: Vec<f32> = (1..=9).map(|i| -(i as f32)).collect();
    let y = run1(src, &[f32t(&[1, 3, 3, 1], &x)]);
    assert_bits(&floats(&y, &[1, 2, 2, 1]), &[-1.0, -2.0, -4.0, -5.0]);
}

#[test]
fn avgpool_counts_in_bounds_only() {
    // Same windows as above, means over in-bounds positions:
    //   -1/1 = -1;  (-2-3)/2 = -2.5;  (-4-7)/2 = -5.5;  (-5-6-8-9)/4 = -7
    let src = "model t\ninput x: f32[N, 3, 3, 1]\ny = avgpool2d(x, kernel=2, stride=2, padding=1)\noutput y\n";
    let x: Vec<f32> = (1..=9).map(|i| -(i as f32)).collect();
    let y = run1(src, &[f32t(&[1, 3, 3, 1], &x)]);
    assert_bits(&floats(&y, &[1, 2, 2, 1]), &[-1.0, -2.5, -5.5, -7.0]);
}

#[test]
fn maxpool_b1_and_int() {
    // One 2x2 window over 2 channels: channel 0 all -1 -> -1; channel 1 has one
    // +1 -> +1. Keeps b1.
    let src = "model t\ninput x: b1[N, 2, 2, 2]\ny = maxpool2d(x, kernel=2)\noutput y\n";
    let y = run1(src, &[b1t(&[1, 2, 2, 2], &[-1, -1, -1, 1, -1, -1, -1, -1])]);
    assert_eq!(ints(&y, ElemType::B1, &[1, 1, 1, 2]), [-1, 1]);

    // u4 with kernel 1x2, stride 1: [3, 9, 4] -> [9, 9].
    let src =
        "model t\ninput x: u4[N, 1, 3, 1]\ny = maxpool2d(x, kernel=[1, 2], stride=1)\noutput y\n";
    let y = run1(src, &[intt(ElemType::UInt(4), &[1, 1, 3, 1], &[3, 9, 4])]);
    assert_eq!(ints(&y, ElemType::UInt(4), &[1, 1, 2, 1]), [9, 9]);
}

#[test]
fn maxpool_f32_nan_wins_only_first() {
    // Windows of 2 along W (kernel [1, 2], stride 2): [NaN, 1] -> NaN (first,
    // nothing compares greater); [1, NaN] -> 1 (NaN is never greater).
    let src = "model t\ninput x: f32[N, 1, 4, 1]\ny = maxpool2d(x, kernel=[1, 2])\noutput y\n";
    let y = run1(src, &[f32t(&[1, 1, 4, 1], &[f32::NAN, 1.0, 1.0, f32::NAN])]);
    assert_bits(&floats(&y, &[1, 1, 2, 1]), &[f32::NAN, 1.0]);
}

#[test]
fn global_avgpool_means() {
    // Channel 0 [1, 2, 3, 4] -> 2.5; channel 1 [10, 20, 30, 40] -> 25.
    let src = "model t\ninput x: u8[N, 2, 2, 2]\ny = global_avgpool(x)\noutput y\n";
    let x = intt(
        ElemType::UInt(8),
        &[1, 2, 2, 2],
        &[1, 10, 2, 20, 3, 30, 4, 40],
    );
    let y = run1(src, &[x]);
    assert_bits(&floats(&y, &[1, 2]), &[2.5, 25.0]);
}

// ---------------------------------------------------------------------------
// data movement

#[test]
fn replicate_channels() {
    // out[.., j] = x[.., j mod 3], times 2, batch 2.
    let src = "model t\ninput x: i32[N, 3]\ny = replicate(x, times=2)\noutput y\n";
    let y = run1(src, &[i32t(&[2, 3], &[1, 2, 3, 4, 5, 6])]);
    assert_eq!(
        ints(&y, ElemType::I32, &[2, 6]),
        [1, 2, 3, 1, 2, 3, 4, 5, 6, 4, 5, 6]
    );
}

#[test]
fn channel_shuffle_orders() {
    let x = f32t(&[1, 6], &[10.0, 11.0, 12.0, 13.0, 14.0, 15.0]);
    // g = 2, m = 3: out[i*2 + k] = x[k*3 + i] -> x0 x3 x1 x4 x2 x5.
    let src = "model t\ninput x: f32[N, 6]\ny = channel_shuffle(x, groups=2)\noutput y\n";
    let y = run1(src, std::slice::from_ref(&x));
    assert_bits(&floats(&y, &[1, 6]), &[10.0, 13.0, 11.0, 14.0, 12.0, 15.0]);
    // g = 3, m = 2: out[i*3 + k] = x[k*2 + i] -> x0 x2 x4 x1 x3 x5.
    let src = "model t\ninput x: f32[N, 6]\ny = channel_shuffle(x, groups=3)\noutput y\n";
    let y = run1(src, &[x]);
    assert_bits(&floats(&y, &[1, 6]), &[10.0, 12.0, 14.0, 11.0, 13.0, 15.0]);
}

#[test]
fn concat_axis_1_and_minus_1() {
    // Axis 1 of rank 2 (the last): rows [1, 2] ++ [5] and [3, 4] ++ [6].
    let src =
        "model t\ninput a: i32[N, 2]\ninput b: i32[N, 1]\ny = concat(a, b, axis=1)\noutput y\n";
    let m = model(src);
    let y = run(&m, &[i32t(&[2, 2], &[1, 2, 3, 4]), i32t(&[2, 1], &[5, 6])])
        .unwrap()
        .remove(0);
    assert_eq!(ints(&y, ElemType::I32, &[2, 3]), [1, 2, 5, 3, 4, 6]);

    // Axis 1 of rank 3 (not the last): a [1, 1, 2] then b [1, 2, 2].
    let src = "model t\ninput a: f32[N, 1, 2]\ninput b: f32[N, 2, 2]\ny = concat(a, b, axis=1)\noutput y\n";
    let m = model(src);
    let y = run(
        &m,
        &[
            f32t(&[2, 1, 2], &[1.0, 2.0, 10.0, 20.0]),
            f32t(&[2, 2, 2], &[3.0, 4.0, 5.0, 6.0, 30.0, 40.0, 50.0, 60.0]),
        ],
    )
    .unwrap()
    .remove(0);
    assert_bits(
        &floats(&y, &[2, 3, 2]),
        &[
            1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0,
        ],
    );

    // Axis -1 on b1 [N, 1, 2] ++ [N, 1, 1] ++ [N, 1, 1].
    let src = "model t\ninput a: b1[N, 1, 2]\ninput b: b1[N, 1, 1]\n\
               y = concat(a, b, b, axis=-1)\noutput y\n";
    let m = model(src);
    let y = run(&m, &[b1t(&[1, 1, 2], &[1, -1]), b1t(&[1, 1, 1], &[-1])])
        .unwrap()
        .remove(0);
    assert_eq!(ints(&y, ElemType::B1, &[1, 1, 4]), [1, -1, -1, -1]);
}

#[test]
fn flatten_and_reshape() {
    let src = "model t\ninput x: i32[N, 2, 2]\nf = flatten(x)\nr = reshape(x, shape=[N, 4, 1])\n\
               output f, r\n";
    let m = model(src);
    let out = run(&m, &[i32t(&[1, 2, 2], &[1, 2, 3, 4])]).unwrap();
    assert_eq!(ints(&out[0], ElemType::I32, &[1, 4]), [1, 2, 3, 4]);
    assert_eq!(ints(&out[1], ElemType::I32, &[1, 4, 1]), [1, 2, 3, 4]);
}

// ---------------------------------------------------------------------------
// softmax, argmax

#[test]
fn softmax_values() {
    // [0, ln 3] -> [1/4, 3/4]; [1000, 1000] -> [1/2, 1/2] (the max is subtracted
    // first, so exp never overflows); [x, x, x, x] -> 1/4 each.
    let src = "model t\ninput x: f32[N, 2]\ny = softmax(x, axis=-1)\noutput y\n";
    let y = run1(src, &[f32t(&[2, 2], &[0.0, 3f32.ln(), 1000.0, 1000.0])]);
    let y = floats(&y, &[2, 2]);
    assert_close(&y[..2], &[0.25, 0.75], 1e-6);
    assert_bits(&y[2..], &[0.5, 0.5]);

    // Along axis 0 of [2, 2]: columns [1, 1] and [5, 5] -> all 1/2.
    let src = "model t\ninput x: f32[2, 2]\ny = softmax(x, axis=0)\noutput y\n";
    let y = run1(src, &[f32t(&[2, 2], &[1.0, 5.0, 1.0, 5.0])]);
    assert_bits(&floats(&y, &[2, 2]), &[0.5, 0.5, 0.5, 0.5]);
}

#[test]
fn argmax_ties_and_nan() {
    // Rows: [1, 3, 3, 2] -> first max at 1; [NaN, 1, 2, 0] -> NaN first, nothing
    // compares greater -> 0; [1, NaN, 5, 5] -> 2; [-inf, -inf, -inf, -inf] -> 0.
    let src = "model t\ninput x: f32[N, 4]\ny = argmax(x, axis=-1)\noutput y\n";
    let x = f32t(
        &[4, 4],
        &[
            1.0,
            3.0,
            3.0,
            2.0,
            f32::NAN,
            1.0,
            2.0,
            0.0,
            1.0,
            f32::NAN,
            5.0,
            5.0,
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
        ],
    );
    let y = run1(src, &[x]);
    assert_eq!(ints(&y, ElemType::I32, &[4]), [1, 0, 2, 0]);

    // Integer argmax along axis 1 of [N, 3, 2]: column 0 = [4, 7, 7] -> 1;
    // column 1 = [9, 0, 9] -> 0.
    let src = "model t\ninput x: i32[N, 3, 2]\ny = argmax(x, axis=1)\noutput y\n";
    let y = run1(src, &[i32t(&[1, 3, 2], &[4, 9, 7, 0, 7, 9])]);
    assert_eq!(ints(&y, ElemType::I32, &[1, 2]), [1, 0]);
}

// ---------------------------------------------------------------------------
// inputs, batch, run_all

const TWO_INPUTS: &str =
    "model t\ninput x: f32[N, 4]\ninput z: f32[N, 4]\ny = add(x, z)\noutput y\n";

#[test]
fn wrong_input_count() {
    let m = model(TWO_INPUTS);
    let e = run(&m, &[f32t(&[1, 4], &[0.0; 4])]).unwrap_err();
    assert!(
        matches!(
            e,
            RunError::InputCount {
                expected: 2,
                found: 1,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("2 input(s), but 1"), "{e}");
}

#[test]
fn wrong_input_type_and_shape() {
    let m = model(TWO_INPUTS);
    let ok = f32t(&[1, 4], &[0.0; 4]);

    let e = run(&m, &[ok.clone(), i32t(&[1, 4], &[0; 4])]).unwrap_err();
    assert!(
        matches!(e, RunError::InputElemType { index: 1, .. }),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains("f32[N, 4]") && msg.contains("i32"), "{msg}");

    let e = run(&m, &[f32t(&[1, 3], &[0.0; 3]), ok.clone()]).unwrap_err();
    assert!(matches!(e, RunError::InputShape { index: 0, .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("f32[N, 4]") && msg.contains("[1, 3]"), "{msg}");

    let e = run(&m, &[f32t(&[4], &[0.0; 4]), ok]).unwrap_err();
    assert!(matches!(e, RunError::InputShape { index: 0, .. }), "{e:?}");
}

#[test]
fn inconsistent_batch() {
    let m = model(TWO_INPUTS);
    let e = run(&m, &[f32t(&[2, 4], &[0.0; 8]), f32t(&[3, 4], &[0.0; 12])]).unwrap_err();
    assert!(
        matches!(
            e,
            RunError::BatchMismatch {
                index: 1,
                found: 3,
                expected: 2,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("batch size 3"), "{e}");
}

#[test]
fn batch_zero_runs() {
    let src = "model t\ninput x: f32[N, 4]\nw = [1, 1, 1, 1, 1, 1, 1, 1]: f32[2, 4]\n\
               xb = sign(x)\nwb = sign(w)\ny = dense(xb, wb)\nc = concat(y, y, axis=1)\n\
               a = argmax(c, axis=-1)\noutput y, a\n";
    let m = model(src);
    let out = run(&m, &[f32t(&[0, 4], &[])]).unwrap();
    assert_eq!(ints(&out[0], ElemType::I32, &[0, 2]), Vec::<i32>::new());
    assert_eq!(ints(&out[1], ElemType::I32, &[0]), Vec::<i32>::new());

    let src = "model t\ninput x: b1[N, 3, 3, 1]\ny = conv2d(x, w, padding=1, pad_value=-1)\n\
               p = maxpool2d(y, kernel=2, padding=1)\ng = global_avgpool(y)\noutput p, g\n"
        .replace(
            "input x: b1[N, 3, 3, 1]\n",
            &format!(
                "input x: b1[N, 3, 3, 1]\nw = {}: b1[1, 3, 3, 1]\n",
                lit(&W3)
            ),
        );
    let m = model(&src);
    let out = run(&m, &[b1t(&[0, 3, 3, 1], &[])]).unwrap();
    assert_eq!(out[0].dims, [0, 2, 2, 1]);
    assert_eq!(out[1].dims, [0, 1]);
}

#[test]
fn malformed_and_out_of_range_inputs() {
    let src = "model t\ninput x: b1[N, 2]\ny = sign(x)\noutput y\n";
    let m = model(src);
    // A b1 tensor holding 0.
    let e = run(&m, &[b1t(&[1, 2], &[1, 0])]).unwrap_err();
    assert!(
        matches!(
            e,
            RunError::InputValue {
                position: 1,
                value: 0,
                ..
            }
        ),
        "{e:?}"
    );
    // Data length disagreeing with dims (fields are public, so this can happen).
    let bad = Tensor {
        elem: ElemType::B1,
        dims: vec![2, 2],
        data: TensorData::Int(vec![1, 1, 1]),
    };
    let e = run(&m, &[bad]).unwrap_err();
    assert!(matches!(e, RunError::InputData { .. }), "{e:?}");
    // f32 storage for a b1 tensor.
    let bad = Tensor {
        elem: ElemType::B1,
        dims: vec![1, 2],
        data: TensorData::F32(vec![1.0, 1.0]),
    };
    let e = run(&m, &[bad]).unwrap_err();
    assert!(matches!(e, RunError::InputData { .. }), "{e:?}");
    // Overflowing dims.
    let bad = Tensor {
        elem: ElemType::B1,
        dims: vec![usize::MAX, 2],
        data: TensorData::Int(vec![]),
    };
    let e = run(&m, &[bad]).unwrap_err();
    assert!(matches!(e, RunError::InputData { .. }), "{e:?}");
}

#[test]
fn unbatched_model_and_run_all() {
    let src = "model t\ninput x: f32[3]\ns = sign(x)\nr = relu(x)\nu = relu(s)\noutput r, s\n";
    let m = model(src);
    let x = f32t(&[3], &[-1.0, 0.0, 2.0]);
    let out = run(&m, std::slice::from_ref(&x)).unwrap();
    assert_eq!(out.len(), 2);
    assert_bits(&floats(&out[0], &[3]), &[0.0, 0.0, 2.0]);
    assert_eq!(ints(&out[1], ElemType::B1, &[3]), [-1, 1, 1]);

    // Every value, by ValueId: x, s, r and the unused u = relu(s).
    let all = run_all(&m, std::slice::from_ref(&x)).unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[0], x);
    assert_eq!(all[1], out[1]);
    assert_eq!(all[2], out[0]);
    assert_eq!(ints(&all[3], ElemType::I32, &[3]), [0, 1, 1]);
}

// ---------------------------------------------------------------------------
// A 784-1024-1024-10 binary MLP at batch 1000 (timed, not asserted on time).

/// A small deterministic generator (SplitMix64) for weights and inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn f(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f()).collect()
    }
}

#[test]
fn binary_mlp_784_1024_1024_10_batch_1000() {
    let src = "model mlp\nweights \"mlp.safetensors\"\ninput x: f32[N, 784]\n\
        w1 = @w1: f32[1024, 784]\nw2 = @w2: f32[1024, 1024]\nw3 = @w3: f32[10, 1024]\n\
        g1 = @g1: f32[1024]\nb1 = @b1: f32[1024]\nm1 = @m1: f32[1024]\nv1 = @v1: f32[1024]\n\
        g2 = @g2: f32[1024]\nb2 = @b2: f32[1024]\nm2 = @m2: f32[1024]\nv2 = @v2: f32[1024]\n\
        xb = sign(x)\n\
        w1b = sign(w1)\na1 = dense(xb, w1b)\nn1 = batchnorm(a1, g1, b1, m1, v1, eps=0.001)\nh1 = sign(n1)\n\
        w2b = sign(w2)\na2 = dense(h1, w2b)\nn2 = batchnorm(a2, g2, b2, m2, v2, eps=0.001)\nh2 = sign(n2)\n\
        w3b = sign(w3)\ny = dense(h2, w3b)\noutput y\n";
    let mut rng = Rng(0x5eed);
    let mut w = Weights::new();
    for (k, d) in [
        ("w1", vec![1024, 784]),
        ("w2", vec![1024, 1024]),
        ("w3", vec![10, 1024]),
    ] {
        let n = d.iter().product();
        w.insert(k, Tensor::f32(d, rng.vec(n)));
    }
    for l in ["1", "2"] {
        w.insert(format!("g{l}"), Tensor::f32(vec![1024], rng.vec(1024)));
        w.insert(format!("b{l}"), Tensor::f32(vec![1024], rng.vec(1024)));
        let mean: Vec<f32> = rng.vec(1024).iter().map(|x| x * 8.0).collect();
        w.insert(format!("m{l}"), Tensor::f32(vec![1024], mean));
        let var: Vec<f32> = rng
            .vec(1024)
            .iter()
            .map(|x| x.abs() * 100.0 + 1.0)
            .collect();
        w.insert(format!("v{l}"), Tensor::f32(vec![1024], var));
    }
    let g = bnnc_ir::text::parse(src).unwrap_or_else(|d| panic!("{}", d.render("mlp.ir")));
    let m = Model::from_graph(g, Some(&w), Path::new("mlp.ir")).unwrap_or_else(|e| panic!("{e}"));
    let x = Tensor::f32(vec![1000, 784], rng.vec(1000 * 784));

    let start = Instant::now();
    let out = run(&m, &[x]).unwrap();
    let elapsed = start.elapsed();
    println!("784-1024-1024-10 binary MLP, batch 1000: {elapsed:?}");

    // Each output is a b1 x b1 dot of length 1024: even, in [-1024, 1024].
    let y = ints(&out[0], ElemType::I32, &[1000, 10]);
    assert!(y.iter().all(|&v| v % 2 == 0 && (-1024..=1024).contains(&v)));
    // Not constant (the layers actually mix).
    assert!(y.iter().any(|&v| v != y[0]));
}
