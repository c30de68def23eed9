//! Weight initialisation (`bnnc init`): a value for every `@key` a model names,
//! chosen by the role the weight plays, deterministic from a seed.
//!
//! A weight's role is found from its uses, looking through the unary ops that
//! only change how a weight is read (`sign`, `ternarize`, `quantize`,
//! `dequantize`, `reshape`, `flatten`); the first use that names a role decides:
//!
//! | role | use | default | with `random_stats` |
//! | --- | --- | --- | --- |
//! | kernel | `w` of `conv2d`/`dense` | latent weights, see below | same |
//! | bn gamma | `batchnorm` operand 1 | 1 | U[-1.5, 1.5], ~10% exactly 0, at least one 0 and one negative (C >= 2) |
//! | bn beta | `batchnorm` operand 2 | 0 | U[-1, 1] |
//! | bn mean | `batchnorm` operand 3 | 0 | U[-s, s] |
//! | bn var | `batchnorm` operand 4 | 1 | U[0.1, 2] |
//! | slope | `prelu` alpha, `rprelu` beta | 0.25 | U[-0.5, 0.75] |
//! | shift | `rprelu` gamma and zeta | 0 | U[-0.5, 0.5] |
//! | thresholds | `threshold` operand 1 | sorted random integers in [-r, r] | same |
//! | direction | `threshold` operand 2 | +1 | random ±1 |
//! | other | anything else | small: U[-0.1, 0.1] | same |
//!
//! Kernels of fan-in `K` (the product of all dimensions but the first) are
//! typed per declaration: `f32` U[-1/sqrt(K), 1/sqrt(K)]; `b1` random ±1;
//! `ternary` random -1/0/+1; `uN`/`iN` uniform over the type's range; `i32`
//! uniform in [-4, 4]. A role that wants floats on an integer-declared weight
//! falls back to those integer rules.
//!
//! `s` is the scale of the value being normalised: sqrt(K) when it is produced
//! by a `conv2d`/`dense` whose weights are not `f32` (a ±1 dot product of length
//! K has standard deviation sqrt(K)), else 1. Thresholds use `r = max(4, 2s)`.
//! So random statistics put thresholds where the accumulator's values are,
//! which is what tests of batch-norm folding need.
//!
//! Every key draws from its own ChaCha8 stream, seeded from the seed and the
//! key, so adding a weight to a model does not change the others.

use std::collections::BTreeMap;

use bnnc_ir::graph::Loc;
use bnnc_ir::{Diagnostic, ElemType, Graph, Op, Tensor, TensorType, ValueId, Weights};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How to initialise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InitOptions {
    pub seed: u64,
    /// Draw batch-norm statistics, slopes, shifts and threshold directions at
    /// random instead of their neutral values.
    pub random_stats: bool,
}

/// The largest weight tensor `init` writes (2^30 elements).
pub const MAX_ELEMENTS: usize = 1 << 30;

/// What a weight is for, as seen from its uses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Role {
    /// The `w` of a `conv2d` or `dense`, with its fan-in.
    Kernel {
        fan_in: usize,
    },
    BnGamma,
    BnBeta,
    /// `s`: the scale of the normalised value.
    BnMean {
        scale: f32,
    },
    BnVar,
    /// `prelu` alpha, `rprelu` beta.
    Slope,
    /// `rprelu` gamma and zeta.
    Shift,
    /// `threshold`'s thresholds, for a value of scale `s`.
    Thresholds {
        scale: f32,
    },
    /// `threshold`'s optional direction operand.
    Direction,
    Other,
}

/// The role of every node that is a `weight` (`None` for the others).
pub fn roles(graph: &Graph, types: &[TensorType]) -> Vec<Option<Role>> {
    let users = graph.users();
    graph
        .ids()
        .map(|v| match &graph.node(v).op {
            Op::Weight { ty, .. } => Some(role_of(graph, types, &users, v, ty)),
            _ => None,
        })
        .collect()
}

fn role_of(
    graph: &Graph,
    types: &[TensorType],
    users: &[Vec<ValueId>],
    weight: ValueId,
    ty: &TensorType,
) -> Role {
    // Depth-first over uses in definition order, through reading ops.
    let mut stack = vec![weight];
    let mut seen = vec![false; graph.nodes.len()];
    while let Some(cur) = stack.pop() {
        for &u in users.get(cur.index()).map(Vec::as_slice).unwrap_or(&[]) {
            let node = graph.node(u);
            for (pos, _) in node.inputs.iter().enumerate().filter(|(_, &i)| i == cur) {
                let role = match (&node.op, pos) {
                    (
                        Op::Sign { .. }
                        | Op::Ternarize { .. }
                        | Op::Quantize { .. }
                        | Op::Dequantize { .. }
                        | Op::Reshape { .. }
                        | Op::Flatten,
                        0,
                    ) => {
                        if !seen[u.index()] {
                            seen[u.index()] = true;
                            stack.push(u);
                        }
                        None
                    }
                    (Op::Conv2d(_) | Op::Dense, 1) => Some(Role::Kernel { fan_in: fan_in(ty) }),
                    (Op::BatchNorm { .. }, 1) => Some(Role::BnGamma),
                    (Op::BatchNorm { .. }, 2) => Some(Role::BnBeta),
                    (Op::BatchNorm { .. }, 3) => Some(Role::BnMean {
                        scale: value_scale(graph, types, node.inputs[0]),
                    }),
                    (Op::BatchNorm { .. }, 4) => Some(Role::BnVar),
                    (Op::Prelu, 1) | (Op::Rprelu, 2) => Some(Role::Slope),
                    (Op::Rprelu, 1 | 3) => Some(Role::Shift),
                    (Op::Threshold, 1) => Some(Role::Thresholds {
                        scale: value_scale(graph, types, node.inputs[0]),
                    }),
                    (Op::Threshold, 2) => Some(Role::Direction),
                    _ => None,
                };
                if let Some(role) = role {
                    return role;
                }
            }
        }
    }
    Role::Other
}

/// Product of all dimensions but the first (OHWI and `[out, in]` alike).
fn fan_in(ty: &TensorType) -> usize {
    ty.shape
        .iter()
        .skip(1)
        .map(|d| d.fixed().unwrap_or(1))
        .product::<usize>()
        .max(1)
}

/// The typical magnitude of value `v`: sqrt(K) for a `conv2d`/`dense` over
/// non-`f32` weights of fan-in K, else 1.
fn value_scale(graph: &Graph, types: &[TensorType], v: ValueId) -> f32 {
    let node = graph.node(v);
    match &node.op {
        Op::Conv2d(_) | Op::Dense => match node.inputs.get(1).and_then(|w| types.get(w.index())) {
            Some(wt) if wt.elem != ElemType::F32 => (fan_in(wt) as f32).sqrt(),
            _ => 1.0,
        },
        _ => 1.0,
    }
}

/// Initialises every `@key` of a verified graph. Errors (with the location of
/// the weight) when a key is declared twice with different types or a tensor is
/// larger than [`MAX_ELEMENTS`].
pub fn init_weights(
    graph: &Graph,
    types: &[TensorType],
    opts: InitOptions,
) -> Result<Weights, Diagnostic> {
    let roles = roles(graph, types);
    let mut declared: BTreeMap<&str, &TensorType> = BTreeMap::new();
    let mut weights = Weights::new();
    for v in graph.ids() {
        let node = graph.node(v);
        let Op::Weight { key, ty } = &node.op else {
            continue;
        };
        let loc = if node.locs.op == Loc::NONE {
            node.locs.name
        } else {
            node.locs.op
        };
        if let Some(first) = declared.get(key.as_str()) {
            if *first != ty {
                return Err(Diagnostic::new(
                    loc,
                    format!("weight @{key} is declared as {ty} here but as {first} before"),
                ));
            }
            continue;
        }
        let Some(dims) = ty
            .shape
            .iter()
            .map(|d| d.fixed())
            .collect::<Option<Vec<_>>>()
        else {
            return Err(Diagnostic::new(
                loc,
                format!("weight @{key}: {ty} has the batch dimension N; weights need fixed shapes"),
            ));
        };
        let n = ty.numel(1);
        if n > MAX_ELEMENTS {
            return Err(Diagnostic::new(
                loc,
                format!("weight @{key}: {ty} has {n} elements; init writes at most 2^30"),
            ));
        }
        declared.insert(key, ty);
        let role = roles[v.index()].unwrap_or(Role::Other);
        let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ fnv1a(key.as_bytes()));
        weights.insert(key.clone(), generate(role, ty.elem, dims, opts, &mut rng));
    }
    Ok(weights)
}

/// FNV-1a, a fixed hash (unlike `std`'s, which may change between releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn generate(
    role: Role,
    elem: ElemType,
    dims: Vec<usize>,
    opts: InitOptions,
    rng: &mut ChaCha8Rng,
) -> Tensor {
    let n: usize = dims.iter().product();
    let rs = opts.random_stats;
    let uniform = |rng: &mut ChaCha8Rng, lo: f32, hi: f32| -> Vec<f32> {
        (0..n).map(|_| rng.random_range(lo..=hi)).collect()
    };
    if let Role::Thresholds { scale } = role {
        // Sorted per channel (row), of the declared type (i32 or f32).
        let r = (2.0 * scale).ceil().max(4.0) as i32;
        let t = dims.last().copied().unwrap_or(1).max(1);
        let mut v: Vec<i32> = (0..n).map(|_| rng.random_range(-r..=r)).collect();
        for row in v.chunks_mut(t) {
            row.sort_unstable();
        }
        return match elem {
            ElemType::F32 => Tensor::f32(dims, v.into_iter().map(|x| x as f32).collect()),
            ElemType::I32 => Tensor::int(elem, dims, v),
            _ => {
                let (lo, hi) = elem.int_range().unwrap_or((0, 0));
                let mut v: Vec<i32> = (0..n).map(|_| rng.random_range(lo..=hi) as i32).collect();
                for row in v.chunks_mut(t) {
                    row.sort_unstable();
                }
                Tensor::int(elem, dims, v)
            }
        };
    }
    if elem != ElemType::F32 {
        return random_ints(role, elem, dims, opts, rng);
    }
    let data = match (role, rs) {
        (Role::Kernel { fan_in }, _) => {
            let b = 1.0 / (fan_in as f32).sqrt();
            uniform(rng, -b, b)
        }
        (Role::BnGamma, false) | (Role::BnVar, false) | (Role::Direction, false) => vec![1.0; n],
        (Role::BnBeta, false) | (Role::BnMean { .. }, false) | (Role::Shift, false) => {
            vec![0.0; n]
        }
        (Role::Slope, false) => vec![0.25; n],
        (Role::BnGamma, true) => random_gamma(n, rng),
        (Role::BnBeta, true) => uniform(rng, -1.0, 1.0),
        (Role::BnMean { scale }, true) => uniform(rng, -scale, scale),
        (Role::BnVar, true) => uniform(rng, 0.1, 2.0),
        (Role::Slope, true) => uniform(rng, -0.5, 0.75),
        (Role::Shift, true) => uniform(rng, -0.5, 0.5),
        (Role::Direction, true) => (0..n)
            .map(|_| if rng.random() { 1.0 } else { -1.0 })
            .collect(),
        (Role::Other | Role::Thresholds { .. }, _) => uniform(rng, -0.1, 0.1),
    };
    Tensor::f32(dims, data)
}

/// Batch-norm gammas in [-1.5, 1.5], about 10% exactly 0, and (for two or more
/// channels) at least one 0 and one negative: the cases folding must get right.
fn random_gamma(n: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let mut g: Vec<f32> = (0..n)
        .map(|_| {
            if rng.random_bool(0.1) {
                0.0
            } else {
                rng.random_range(-1.5..=1.5)
            }
        })
        .collect();
    if n >= 2 {
        if !g.contains(&0.0) {
            let i = rng.random_range(0..n);
            g[i] = 0.0;
        }
        if !g.iter().any(|&x| x < 0.0) {
            let i = g.iter().position(|&x| x != 0.0).unwrap_or(0);
            g[i] = -rng.random_range(0.1..=1.5);
        }
    }
    g
}

/// Integer-declared weights: kernels and "other" uniform over the type (`i32`
/// in [-4, 4]); a direction is +1 (random ±1 with `random_stats`).
fn random_ints(
    role: Role,
    elem: ElemType,
    dims: Vec<usize>,
    opts: InitOptions,
    rng: &mut ChaCha8Rng,
) -> Tensor {
    let n: usize = dims.iter().product();
    let data: Vec<i32> = match (role, elem) {
        (Role::Direction, _) if !opts.random_stats => vec![1; n],
        (Role::Direction, _) | (_, ElemType::B1) => {
            (0..n).map(|_| if rng.random() { 1 } else { -1 }).collect()
        }
        (_, ElemType::I32) => (0..n).map(|_| rng.random_range(-4..=4)).collect(),
        _ => {
            let (lo, hi) = elem.int_range().unwrap_or((0, 0));
            (0..n).map(|_| rng.random_range(lo..=hi) as i32).collect()
        }
    };
    Tensor::int(elem, dims, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bnnc_ir::{Dim, TensorData};

    fn w(g: &mut Graph, key: &str, elem: ElemType, dims: &[usize]) -> ValueId {
        g.add(
            key,
            Op::Weight {
                key: key.into(),
                ty: TensorType::fixed(elem, dims),
            },
            vec![],
        )
    }

    /// dense(sign(x), sign(@w)) -> batchnorm -> prelu, plus a threshold, built
    /// in code so the test needs no parser. Types are given by hand.
    fn graph() -> (Graph, Vec<TensorType>) {
        let mut g = Graph::new("t");
        let xt = TensorType::new(ElemType::F32, vec![Dim::Batch, Dim::Fixed(64)]);
        let x = g.add("x", Op::Input(xt.clone()), vec![]);
        let wt = w(&mut g, "fc.weight", ElemType::F32, &[8, 64]);
        let gamma = w(&mut g, "bn.gamma", ElemType::F32, &[8]);
        let beta = w(&mut g, "bn.beta", ElemType::F32, &[8]);
        let mean = w(&mut g, "bn.mean", ElemType::F32, &[8]);
        let var = w(&mut g, "bn.var", ElemType::F32, &[8]);
        let alpha = w(&mut g, "act.alpha", ElemType::F32, &[8]);
        let thr = w(&mut g, "thr", ElemType::I32, &[8, 3]);
        let tern = w(&mut g, "tern", ElemType::Ternary, &[8, 64]);
        let xb = g.add("xb", Op::Sign { estimator: None }, vec![x]);
        let wb = g.add("wb", Op::Sign { estimator: None }, vec![wt]);
        let h = g.add("h", Op::Dense, vec![xb, wb]);
        let bn = g.add(
            "bn",
            Op::BatchNorm { eps: 1e-5 },
            vec![h, gamma, beta, mean, var],
        );
        let p = g.add("p", Op::Prelu, vec![bn, alpha]);
        let t = g.add("t", Op::Threshold, vec![h, thr]);
        let h2 = g.add("h2", Op::Dense, vec![xb, tern]);
        g.output(p);
        g.output(t);
        g.output(h2);
        let n = |e, c| TensorType::new(e, vec![Dim::Batch, Dim::Fixed(c)]);
        let mut types = vec![xt];
        types.push(TensorType::fixed(ElemType::F32, &[8, 64]));
        for _ in 0..5 {
            types.push(TensorType::fixed(ElemType::F32, &[8]));
        }
        types.push(TensorType::fixed(ElemType::I32, &[8, 3]));
        types.push(TensorType::fixed(ElemType::Ternary, &[8, 64]));
        types.push(n(ElemType::B1, 64));
        types.push(TensorType::fixed(ElemType::B1, &[8, 64]));
        types.push(n(ElemType::I32, 8));
        types.push(n(ElemType::F32, 8));
        types.push(n(ElemType::F32, 8));
        types.push(n(ElemType::UInt(2), 8));
        types.push(n(ElemType::I32, 8));
        assert_eq!(types.len(), g.nodes.len());
        (g, types)
    }

    fn f32s<'a>(w: &'a Weights, key: &str) -> &'a [f32] {
        w.get(key).unwrap().as_f32().unwrap()
    }

    #[test]
    fn roles_follow_uses_through_sign() {
        let (g, types) = graph();
        let r = roles(&g, &types);
        assert_eq!(r[1], Some(Role::Kernel { fan_in: 64 }));
        assert_eq!(r[2], Some(Role::BnGamma));
        assert_eq!(r[4], Some(Role::BnMean { scale: 8.0 }));
        assert_eq!(r[6], Some(Role::Slope));
        assert_eq!(r[7], Some(Role::Thresholds { scale: 8.0 }));
        assert_eq!(r[0], None);
    }

    #[test]
    fn neutral_defaults() {
        let (g, types) = graph();
        let w = init_weights(&g, &types, InitOptions::default()).unwrap();
        assert_eq!(f32s(&w, "bn.gamma"), &[1.0; 8]);
        assert_eq!(f32s(&w, "bn.beta"), &[0.0; 8]);
        assert_eq!(f32s(&w, "bn.mean"), &[0.0; 8]);
        assert_eq!(f32s(&w, "bn.var"), &[1.0; 8]);
        assert_eq!(f32s(&w, "act.alpha"), &[0.25; 8]);
        let b = 1.0 / 8.0;
        assert!(f32s(&w, "fc.weight").iter().all(|x| x.abs() <= b));
        let thr = w.get("thr").unwrap().as_int().unwrap();
        for row in thr.chunks(3) {
            assert!(row.windows(2).all(|p| p[0] <= p[1]), "{row:?}");
            assert!(row.iter().all(|x| x.abs() <= 16));
        }
        let tern = w.get("tern").unwrap();
        assert_eq!(tern.elem, ElemType::Ternary);
        assert!(tern.check_values().is_none());
        // Every tensor is accepted as the type the model declares.
        for n in &g.nodes {
            if let Op::Weight { key, ty } = &n.op {
                w.get_as(key, ty).unwrap();
            }
        }
    }

    #[test]
    fn random_stats_are_nontrivial_and_deterministic() {
        let (g, types) = graph();
        let opts = InitOptions {
            seed: 3,
            random_stats: true,
        };
        let a = init_weights(&g, &types, opts).unwrap();
        let gamma = f32s(&a, "bn.gamma");
        assert!(
            gamma.contains(&0.0) && gamma.iter().any(|&x| x < 0.0),
            "{gamma:?}"
        );
        assert!(f32s(&a, "bn.var").iter().all(|&v| (0.1..=2.0).contains(&v)));
        assert!(f32s(&a, "bn.mean").iter().any(|&m| m.abs() > 1.0));
        let b = init_weights(&g, &types, opts).unwrap();
        assert_eq!(a, b);
        let c = init_weights(&g, &types, InitOptions { seed: 4, ..opts }).unwrap();
        assert_ne!(a, c);
        // One key's values do not depend on the others.
        assert_eq!(
            a.get("fc.weight").map(|t| &t.data),
            init_weights(
                &g,
                &types,
                InitOptions {
                    random_stats: false,
                    ..opts
                }
            )
            .unwrap()
            .get("fc.weight")
            .map(|t| &t.data)
        );
        assert!(matches!(a.get("thr").unwrap().data, TensorData::Int(_)));
    }
}
