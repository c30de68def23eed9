//! The summary `bnnc run` prints for each output when no `--output` file is given.
//!
//! ```text
//! logits: f32[4, 10]  min -3.125  max 2.75  mean -0.0412
//!   values: [0.5, -1.25, 2, 0.125, -3.125, 0.75, 1, -0.5] ... (40 in all)
//!   argmax per row: [2, 7, 7, 0]
//! ```

use std::fmt::Write as _;

use bnnc_ir::{Tensor, TensorData};

/// How many leading values the summary shows.
pub const FIRST_VALUES: usize = 8;
/// How many rows' argmax the summary shows.
pub const ARGMAX_ROWS: usize = 32;

/// The summary of one output tensor named `name`: its concrete type, min, max
/// and mean (ignoring NaNs, whose count is shown), the first values, and for a
/// 2-D tensor the index of the first maximum of each row.
pub fn summarize(name: &str, t: &Tensor) -> String {
    let mut s = String::new();
    let dims: Vec<String> = t.dims.iter().map(|d| d.to_string()).collect();
    let _ = write!(s, "{name}: {}[{}]", t.elem, dims.join(", "));
    let vals = t.to_f32_vec();
    let finite: Vec<f64> = vals
        .iter()
        .filter(|x| !x.is_nan())
        .map(|&x| f64::from(x))
        .collect();
    if vals.is_empty() {
        s.push_str("  (no elements)");
        return s;
    }
    if !finite.is_empty() {
        let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
        let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mean = finite.iter().sum::<f64>() / finite.len() as f64;
        let _ = write!(
            s,
            "  min {}  max {}  mean {}",
            num(min),
            num(max),
            num(mean)
        );
    }
    let nans = vals.len() - finite.len();
    if nans > 0 {
        let _ = write!(s, "  ({nans} NaN)");
    }
    let shown: Vec<String> = match &t.data {
        TensorData::F32(v) => v
            .iter()
            .take(FIRST_VALUES)
            .map(|&x| num(f64::from(x)))
            .collect(),
        TensorData::Int(_) | TensorData::Bits(_) => t
            .as_int()
            .unwrap_or_default()
            .iter()
            .take(FIRST_VALUES)
            .map(|x| x.to_string())
            .collect(),
    };
    let _ = write!(s, "\n  values: [{}]", shown.join(", "));
    if vals.len() > FIRST_VALUES {
        let _ = write!(s, " ... ({} in all)", vals.len());
    }
    if let [rows, cols] = t.dims[..] {
        if cols > 0 {
            let am: Vec<String> = vals
                .chunks(cols)
                .take(ARGMAX_ROWS)
                .map(|row| argmax(row).to_string())
                .collect();
            let _ = write!(s, "\n  argmax per row: [{}]", am.join(", "));
            if rows > ARGMAX_ROWS {
                let _ = write!(s, " ... ({rows} rows)");
            }
        }
    }
    s
}

/// Index of the first maximum; NaN never wins (as the IR's `argmax`).
fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in row.iter().enumerate() {
        if x > row[best] || (row[best].is_nan() && !x.is_nan()) {
            best = i;
        }
    }
    best
}

/// A number in at most 4 decimals, without trailing zeros: `2`, `-0.0412`, `1.5e9`.
fn num(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    if x != 0.0 && (x.abs() >= 1e7 || x.abs() < 1e-4) {
        return format!("{x:.3e}");
    }
    let s = format!("{x:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bnnc_ir::ElemType;

    #[test]
    fn float_matrix() {
        let t = Tensor::f32(vec![2, 3], vec![0.5, 2.0, -1.0, 3.0, f32::NAN, 3.0]);
        let s = summarize("y", &t);
        assert_eq!(
            s,
            "y: f32[2, 3]  min -1  max 3  mean 1.5  (1 NaN)\n  \
             values: [0.5, 2, -1, 3, NaN, 3]\n  argmax per row: [1, 0]"
        );
    }

    #[test]
    fn ints_and_long_vectors() {
        let t = Tensor::int(ElemType::B1, vec![10], vec![1, -1, 1, 1, 1, 1, 1, 1, -1, 1]);
        let s = summarize("b", &t);
        assert!(s.starts_with("b: b1[10]  min -1  max 1  mean 0.6\n"), "{s}");
        assert!(s.ends_with("... (10 in all)"), "{s}");
        assert!(!s.contains("argmax"));
    }

    #[test]
    fn numbers() {
        assert_eq!(num(2.0), "2");
        assert_eq!(num(-0.04123), "-0.0412");
        assert_eq!(num(-0.00001), "-1.000e-5");
        assert_eq!(num(0.0), "0");
    }
}
