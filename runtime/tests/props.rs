//! Property tests of identities the op contracts imply (`docs/design.md`, section 2).

use std::path::Path;

use bnnc_ir::{ElemType, Model, Tensor};
use bnnc_runtime::run;
use proptest::prelude::*;

fn model(src: &str) -> Model {
    let g = bnnc_ir::text::parse(src).unwrap_or_else(|d| panic!("{}\n{src}", d.render("t.ir")));
    Model::from_graph(g, None, Path::new("t.ir")).unwrap_or_else(|e| panic!("{e}\n{src}"))
}

fn lit(vals: &[i32]) -> String {
    let s: Vec<String> = vals.iter().map(|v| v.to_string()).collect();
    format!("[{}]", s.join(", "))
}

fn pm1(bits: &[bool]) -> Vec<i32> {
    bits.iter().map(|&b| if b { -1 } else { 1 }).collect()
}

/// Packs bipolar values as the design fixes it (`docs/design.md`): channel `c` is bit `c % 64` of word
/// `c / 64`, bit 1 means -1, unused tail bits 0.
fn pack(v: &[i32]) -> Vec<u64> {
    let mut words = vec![0u64; v.len().div_ceil(64)];
    for (c, &x) in v.iter().enumerate() {
        if x == -1 {
            words[c / 64] |= 1 << (c % 64);
        }
    }
    words
}

fn ints(t: &Tensor) -> Vec<i32> {
    t.as_int().expect("integer tensor").to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// `dense` on b1 x b1 is `K - 2 * popcount(a xor w)` over packed words.
    #[test]
    fn dense_b1_is_k_minus_2_popcount(
        (k, a, w) in (1usize..200).prop_flat_map(|k| (
            Just(k),
            prop::collection::vec(any::<bool>(), 2 * k),
            prop::collection::vec(any::<bool>(), 3 * k),
        ))
    ) {
        let (a, w) = (pm1(&a), pm1(&w));
        let src = format!(
            "model t\ninput x: b1[N, {k}]\nw = {}: b1[3, {k}]\ny = dense(x, w)\noutput y\n",
            lit(&w)
        );
        let y = run(&model(&src), &[Tensor::int(ElemType::B1, vec![2, k], a.clone())]).unwrap();
        let got = ints(&y[0]);
        for n in 0..2 {
            for o in 0..3 {
                let pa = pack(&a[n * k..(n + 1) * k]);
                let pw = pack(&w[o * k..(o + 1) * k]);
                let pop: u32 = pa.iter().zip(&pw).map(|(x, y)| (x ^ y).count_ones()).sum();
                prop_assert_eq!(got[n * 3 + o], k as i32 - 2 * pop as i32);
            }
        }
    }

    /// Binary conv2d: a padded position contributes `p * w`, so
    /// `out(+1) + out(-1) == 2 * out(0)` everywhere, and the three agree without
    /// padding.
    #[test]
    fn conv2d_b1_pad_values_are_affine(
        h in 1usize..5, wd in 1usize..5, c in 1usize..70, kh in 1usize..4, kw in 1usize..4,
        pad in 0usize..3, stride in 1usize..3, seed in any::<u64>(),
    ) {
        prop_assume!(h + 2 * pad >= kh && wd + 2 * pad >= kw);
        let mut s = seed | 1;
        let mut bit = || { s ^= s << 13; s ^= s >> 7; s ^= s << 17; if s & 1 == 1 { -1 } else { 1 } };
        let x: Vec<i32> = (0..h * wd * c).map(|_| bit()).collect();
        let w: Vec<i32> = (0..2 * kh * kw * c).map(|_| bit()).collect();
        let mut outs = Vec::new();
        for pv in ["+1", "-1", "0"] {
            let src = format!(
                "model t\ninput x: b1[N, {h}, {wd}, {c}]\nw = {}: b1[2, {kh}, {kw}, {c}]\n\
                 y = conv2d(x, w, stride={stride}, padding={pad}, pad_value={pv})\noutput y\n",
                lit(&w)
            );
            let y = run(&model(&src), &[Tensor::int(ElemType::B1, vec![1, h, wd, c], x.clone())]).unwrap();
            outs.push(ints(&y[0]));
        }
        for ((p, m), z) in outs[0].iter().zip(&outs[1]).zip(&outs[2]) {
            prop_assert_eq!(p + m, 2 * z);
            if pad == 0 {
                prop_assert_eq!(p, z);
            }
        }
    }

    /// `threshold(x, [0])` is `sign(x)` on i32.
    #[test]
    fn threshold_zero_is_sign(x in prop::collection::vec(any::<i32>(), 1..40)) {
        let n = x.len();
        let src = "model t\ninput x: i32[N, 1]\nt = [0]: i32[1, 1]\ny = threshold(x, t)\n\
                   s = sign(x)\noutput y, s\n";
        let out = run(&model(src), &[Tensor::int(ElemType::I32, vec![n, 1], x)]).unwrap();
        prop_assert_eq!(&out[0], &out[1]);
    }
}
