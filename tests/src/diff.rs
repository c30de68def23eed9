//! Inputs with awkward floats, and exact comparison of outputs.

use bnnc_ir::{Model, Op, Tensor, TensorData};

/// Where [`inputs`] put NaN, +inf and -inf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Specials {
    None,
    /// In one sample of every batched f32 input (when the batch has it):
    /// a NaN spreads through most ops, so the other samples stay finite.
    Sample(usize),
    /// Everywhere, about one value in ten.
    Everywhere,
}

/// Inputs for `model` at `batch`, deterministic from `seed`: each input
/// drawn from its declared type (`bnnc_runtime::inputs::random_inputs`);
/// f32 values scaled to [-4, 4) with exact +0.0 and -0.0, subnormals (no
/// side may flush them to zero) and tiny normals mixed in, and NaN and
/// infinities where `specials` says.
pub fn inputs(model: &Model, batch: usize, seed: u64, specials: Specials) -> Vec<Tensor> {
    let mut xs = bnnc_runtime::inputs::random_inputs(&model.graph, batch, seed)
        .unwrap_or_else(|e| panic!("{}: {e}", model.graph.name));
    for (t, &v) in xs.iter_mut().zip(&model.graph.inputs()) {
        let batched = model.ty(v).is_batched();
        let TensorData::F32(data) = &mut t.data else {
            continue;
        };
        let per_sample = (data.len() / if batched { batch.max(1) } else { 1 }).max(1);
        for (i, e) in data.iter_mut().enumerate() {
            let special = match specials {
                Specials::None => false,
                Specials::Everywhere => true,
                Specials::Sample(s) => batched && i / per_sample == s,
            };
            // The first value of the special sample, so that even a
            // one-element sample holds a NaN.
            let first = matches!(specials, Specials::Sample(_)) && i % per_sample == 0;
            *e = match (i % 29, special) {
                _ if special && first => f32::NAN,
                (3, _) => 0.0,
                (7, _) => -0.0,
                (11, true) => f32::NAN,
                (13, true) => f32::INFINITY,
                (17, true) => f32::NEG_INFINITY,
                (19, _) => *e * 1e-39,
                (23, _) => *e * 1e-30,
                _ => *e * 4.0,
            };
        }
    }
    xs
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
    within_ulps(got, want, got_name, want_name, 0)
}

/// [`same_bits`], but f32 elements may differ by `ulps` units in the last
/// place (same sign, both finite).
pub fn within_ulps(
    got: &Tensor,
    want: &Tensor,
    got_name: &str,
    want_name: &str,
    ulps: u32,
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
                if !(p.is_nan() && q.is_nan()) && ulps_apart(*p, *q) > ulps {
                    return Err(format!(
                        "element {i}: {got_name} {p:?} ({:#010x}) vs {want_name} {q:?} ({:#010x})",
                        p.to_bits(),
                        q.to_bits()
                    ));
                }
            }
        }
        (TensorData::Int(_) | TensorData::Bits(_), TensorData::Int(_) | TensorData::Bits(_)) => {
            let (x, y) = (
                got.as_int().unwrap_or_default(),
                want.as_int().unwrap_or_default(),
            );
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

/// Units in the last place between two floats of one sign, both finite
/// (`u32::MAX` otherwise, unless their bits are equal).
fn ulps_apart(a: f32, b: f32) -> u32 {
    if a.to_bits() == b.to_bits() {
        return 0;
    }
    if !a.is_finite() || !b.is_finite() || a.is_sign_negative() != b.is_sign_negative() {
        return u32::MAX;
    }
    a.to_bits().abs_diff(b.to_bits())
}

/// Every output of `model` from an engine (`got`, called `got_name`)
/// against the interpreter's (`want`): bit for bit, except that outputs
/// computed by `softmax` or `sigmoid` may be `expf_ulps` apart.
pub fn compare_outputs(
    model: &Model,
    got: &[Tensor],
    want: &[Tensor],
    got_name: &str,
    expf_ulps: u32,
) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{got_name} gave {} outputs, the interpreter {}",
            got.len(),
            want.len()
        ));
    }
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        let node = model.graph.node(model.graph.outputs[k]);
        let ulps = match node.op {
            Op::Softmax { .. } | Op::Sigmoid => expf_ulps,
            _ => 0,
        };
        within_ulps(g, w, got_name, "interpreter", ulps)
            .map_err(|e| format!("output `{}`: {e}", node.name))?;
    }
    Ok(())
}
