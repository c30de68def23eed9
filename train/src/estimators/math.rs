//! Elementary functions for the backward loops, without libm calls: a call per
//! element costs more than the rest of the loop and keeps it from vectorising.
//! Each has a slow oracle (`f64` std) in the tests below.

/// `e^x` in f32, branch-free. The argument is clamped to [-87, 88] (so below -87
/// the result is about 1.6e-38, not 0, and above 88 about 1.65e38, not inf); NaN
/// gives NaN. Relative error below 4e-7 (tested against `f64::exp`).
///
/// Method (Cephes `expf`): `x = n ln2 + r` with `n` the nearest integer to
/// `x / ln2` and `|r| <= ln2 / 2`; `e^r` by a degree-7 polynomial; `2^n` put into
/// the exponent bits.
#[inline(always)]
pub(super) fn exp_f32(x: f32) -> f32 {
    // Adding 1.5 * 2^23 rounds any |v| < 2^22 to an integer, held in the low
    // mantissa bits (the float's ulp there is 1).
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let m = x * std::f32::consts::LOG2_E + ROUND;
    let n = m - ROUND;
    // Wrapping ops (exact here: both values are small) carry no overflow check
    // in debug builds, which would keep the loops from vectorising.
    let ni = (m.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    // LN2_HI has 9 significant bits, so n * LN2_HI is exact for |n| <= 128.
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * (r * r) + r + 1.0;
    // n is in [-126, 127] after the clamp: 2^n is a normal f32.
    y * f32::from_bits((ni.wrapping_add(127) as u32) << 23)
}

/// `(tanh z, 1 - tanh^2 z)` from one [`exp_f32`]: with `e = exp(-2|z|)`,
/// `tanh |z| = (1 - e) / (1 + e)` and `sech^2 z = 4e / (1 + e)^2`. Absolute error
/// below 1e-6 for both (tanh loses relative, not absolute, accuracy near 0);
/// NaN gives NaN.
#[inline(always)]
pub(super) fn tanh_sech2(z: f32) -> (f32, f32) {
    let e = exp_f32(-2.0 * z.abs());
    let inv = 1.0 / (1.0 + e);
    (((1.0 - e) * inv).copysign(z), 4.0 * e * inv * inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every 997th f32 bit pattern in [-87, 88], plus the ends and special values.
    fn sweep() -> impl Iterator<Item = f32> {
        let neg = (0..(-87.0f32).to_bits() - 0x8000_0000).step_by(997);
        let pos = (0..88.0f32.to_bits()).step_by(997);
        neg.map(|b| f32::from_bits(b | 0x8000_0000))
            .chain(pos.map(f32::from_bits))
            .chain([
                -87.0,
                88.0,
                0.0,
                -0.0,
                1.0,
                -1.0,
                0.5 * std::f32::consts::LN_2,
            ])
    }

    #[test]
    fn exp_f32_matches_f64_exp() {
        let mut worst = 0.0f64;
        for x in sweep() {
            let want = f64::from(x).exp();
            let rel = (f64::from(exp_f32(x)) - want).abs() / want;
            worst = worst.max(rel);
            assert!(rel < 4e-7, "exp_f32({x}) = {}, want {want}", exp_f32(x));
        }
        assert!(worst > 0.0, "the sweep compared something");
        assert_eq!(exp_f32(0.0), 1.0);
        assert!(exp_f32(f32::NAN).is_nan());
        assert!(exp_f32(-1000.0) > 0.0 && exp_f32(-1000.0) < 2e-38);
        assert!(exp_f32(f32::NEG_INFINITY) < 2e-38);
        assert!(exp_f32(1000.0).is_finite() && exp_f32(1000.0) > 1e38);
    }

    #[test]
    fn tanh_sech2_matches_f64() {
        for x in sweep().filter(|x| x.abs() < 45.0) {
            let (th, s2) = tanh_sech2(x);
            let t = f64::from(x).tanh();
            assert!(
                (f64::from(th) - t).abs() < 1e-6,
                "tanh({x}) = {th}, want {t}"
            );
            let c = 1.0 / f64::from(x).cosh();
            assert!(
                (f64::from(s2) - c * c).abs() < 1e-6,
                "sech^2({x}) = {s2}, want {}",
                c * c
            );
        }
        assert_eq!(tanh_sech2(0.0), (0.0, 1.0));
        assert_eq!(tanh_sech2(-0.0).0.to_bits(), (-0.0f32).to_bits());
        assert_eq!(tanh_sech2(200.0).0, 1.0);
        assert_eq!(tanh_sech2(-200.0).0, -1.0);
        assert!(tanh_sech2(f32::NAN).0.is_nan());
    }
}
