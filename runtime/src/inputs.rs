//! Random model inputs, so a model runs without any data file (`bnnc run --random`).
//!
//! Each input gets values of its declared type, deterministic from a seed:
//! `f32` uniform in [-1, 1); `b1` -1 or +1; `ternary` -1, 0 or +1; `uN`/`iN`
//! uniform over the type's range; `i32` uniform in [-128, 127]. The batch `N`
//! takes the given size; other dimensions are the declared ones.

use bnnc_ir::{ElemType, Graph, Op, Tensor, TensorType};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::mem::{try_collect, AllocError};

/// The largest number of elements one generated input may have (2^31).
pub const MAX_ELEMENTS: usize = 1 << 31;

/// One random tensor per model input, in input order. Errors when an input
/// would exceed [`MAX_ELEMENTS`] at this batch size, when all of them need
/// more memory than [`crate::mem::budget`] allows, or when an allocation fails.
pub fn random_inputs(graph: &Graph, batch: usize, seed: u64) -> Result<Vec<Tensor>, String> {
    let inputs: Vec<(&str, &TensorType)> = graph
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::Input(ty) => Some((n.name.as_str(), ty)),
            _ => None,
        })
        .collect();
    let mut total = Some(0u64);
    for &(name, ty) in &inputs {
        if ty.numel(batch) > MAX_ELEMENTS {
            return Err(format!(
                "input `{name}` ({ty}) at batch {batch} has more than 2^31 elements"
            ));
        }
        total = total.and_then(|t| t.checked_add(ty.numel(batch) as u64 * 4));
    }
    crate::mem::check(total, &format!("batch {batch}"), "of random inputs")
        .map_err(|e| e.to_string())?;
    inputs
        .iter()
        .enumerate()
        .map(|(i, &(name, ty))| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(i as u64));
            random_tensor(ty, batch, &mut rng)
                .map_err(|e| format!("input `{name}` ({ty}) at batch {batch}: {e}"))
        })
        .collect()
}

/// A random tensor of type `ty` at batch size `batch` (values as in the module
/// doc), or the error of allocating it.
pub fn random_tensor(
    ty: &TensorType,
    batch: usize,
    rng: &mut impl Rng,
) -> Result<Tensor, AllocError> {
    let dims = ty.dims(batch);
    let n = ty.numel(batch);
    Ok(match ty.elem {
        ElemType::F32 => Tensor::f32(
            dims,
            try_collect(n, std::iter::repeat_with(|| rng.random_range(-1.0..1.0)))?,
        ),
        ElemType::B1 => Tensor::int(
            ty.elem,
            dims,
            try_collect(
                n,
                std::iter::repeat_with(|| if rng.random() { 1 } else { -1 }),
            )?,
        ),
        elem => {
            let (lo, hi) = match elem {
                ElemType::I32 => (-128, 127),
                _ => elem.int_range().unwrap_or((0, 0)),
            };
            Tensor::int(
                elem,
                dims,
                try_collect(
                    n,
                    std::iter::repeat_with(|| rng.random_range(lo..=hi) as i32),
                )?,
            )
        }
    })
}
