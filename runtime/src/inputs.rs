//! Random model inputs, so a model runs without any data file (`bnnc run --random`).
//!
//! Each input gets values of its declared type, deterministic from a seed:
//! `f32` uniform in [-1, 1); `b1` -1 or +1; `ternary` -1, 0 or +1; `uN`/`iN`
//! uniform over the type's range; `i32` uniform in [-128, 127]. The batch `N`
//! takes the given size; other dimensions are the declared ones.

use bnnc_ir::{ElemType, Graph, Op, Tensor, TensorType};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The largest number of elements one generated input may have (2^31).
pub const MAX_ELEMENTS: usize = 1 << 31;

/// One random tensor per model input, in input order. Errors when an input
/// would exceed [`MAX_ELEMENTS`] at this batch size.
pub fn random_inputs(graph: &Graph, batch: usize, seed: u64) -> Result<Vec<Tensor>, String> {
    let inputs = graph.nodes.iter().filter_map(|n| match &n.op {
        Op::Input(ty) => Some((n.name.as_str(), ty)),
        _ => None,
    });
    inputs
        .enumerate()
        .map(|(i, (name, ty))| {
            if ty.numel(batch) > MAX_ELEMENTS {
                return Err(format!(
                    "input `{name}` ({ty}) at batch {batch} has more than 2^31 elements"
                ));
            }
            let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(i as u64));
            Ok(random_tensor(ty, batch, &mut rng))
        })
        .collect()
}

/// A random tensor of type `ty` at batch size `batch` (values as in the module doc).
pub fn random_tensor(ty: &TensorType, batch: usize, rng: &mut impl Rng) -> Tensor {
    let dims = ty.dims(batch);
    let n = ty.numel(batch);
    match ty.elem {
        ElemType::F32 => Tensor::f32(dims, (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()),
        ElemType::B1 => Tensor::int(
            ty.elem,
            dims,
            (0..n).map(|_| if rng.random() { 1 } else { -1 }).collect(),
        ),
        elem => {
            let (lo, hi) = match elem {
                ElemType::I32 => (-128, 127),
                _ => elem.int_range().expect("integer type"),
            };
            Tensor::int(
                elem,
                dims,
                (0..n).map(|_| rng.random_range(lo..=hi) as i32).collect(),
            )
        }
    }
}
