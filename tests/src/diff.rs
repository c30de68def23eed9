//! Helpers shared by the differential tests: model files, random inputs with
//! awkward floats, and bit-exact comparison of outputs.

use std::path::PathBuf;

use bnnc_ir::{Model, Tensor, TensorData};

use crate::gen::{random_tensor, Rng};

/// Every `.ir` file of a folder (relative to the `tests/` crate), sorted.
pub fn models_in(dir: &str) -> Vec<PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "ir"))
        .collect();
    v.sort();
    v
}

/// Random inputs for `model` at `batch`: each input drawn from its declared
/// type; f32 inputs scaled to [-4, 4) with +0.0 and -0.0 mixed in, and with
/// `specials` also NaN, +inf and -inf.
pub fn inputs(model: &Model, batch: usize, rng: &mut Rng, specials: bool) -> Vec<Tensor> {
    model
        .graph
        .inputs()
        .into_iter()
        .map(|v| {
            let ty = model.ty(v);
            let mut t = random_tensor(rng, ty.elem, &ty.dims(batch));
            if let TensorData::F32(x) = &mut t.data {
                for (i, e) in x.iter_mut().enumerate() {
                    match i % 29 {
                        3 => *e = 0.0,
                        7 => *e = -0.0,
                        11 if specials => *e = f32::NAN,
                        13 if specials => *e = f32::INFINITY,
                        17 if specials => *e = f32::NEG_INFINITY,
                        _ => *e *= 4.0,
                    }
                }
            }
            t
        })
        .collect()
}

/// `Ok` when `got` and `want` have the same type and shape and equal bits in
/// every element (any NaN equals any NaN); otherwise the first difference,
/// naming the two sides.
pub fn same_bits(
    got: &Tensor,
    want: &Tensor,
    got_name: &str,
    want_name: &str,
) -> Result<(), String> {
    if got.elem != want.elem || got.dims != want.dims {
        return Err(format!(
            "type/shape: {got_name} {}{:?} vs {want_name} {}{:?}",
            got.elem, got.dims, want.elem, want.dims
        ));
    }
    match (&got.data, &want.data) {
        (TensorData::F32(x), TensorData::F32(y)) => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                if p.to_bits() != q.to_bits() && !(p.is_nan() && q.is_nan()) {
                    return Err(format!(
                        "element {i}: {got_name} {p:?} vs {want_name} {q:?}"
                    ));
                }
            }
        }
        (TensorData::Int(x), TensorData::Int(y)) => {
            if let Some(i) = (0..x.len()).find(|&i| x[i] != y[i]) {
                return Err(format!(
                    "element {i}: {got_name} {} vs {want_name} {}",
                    x[i], y[i]
                ));
            }
        }
        _ => return Err("storage differs".into()),
    }
    Ok(())
}
