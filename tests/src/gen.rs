//! Random well-formed graphs (with weights) from a stream of choices.
//!
//! Every decision reads the next number of the stream (0 once it runs out), so a
//! shorter or smaller stream gives a smaller, simpler graph: proptest shrinks
//! failures by shrinking the stream. Tensor data comes from a seeded generator
//! and does not take part in shrinking.

use bnnc_ir::verify::verify;
use bnnc_ir::{
    Conv2dAttrs, Dim, ElemType, Graph, Op, PadValue, PoolAttrs, Tensor, TensorData, TensorType,
    ValueId, Weights,
};

/// A generated model: the graph and the weights its `@key`s name.
#[derive(Clone, Debug)]
pub struct Generated {
    pub graph: Graph,
    pub weights: Weights,
}

/// Reads decisions from the choice stream.
struct Choices<'a> {
    data: &'a [u32],
    pos: usize,
}

impl Choices<'_> {
    /// A number in `0..n` (0 when the stream is exhausted).
    fn below(&mut self, n: usize) -> usize {
        let v = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        v as usize % n.max(1)
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }

    fn flip(&mut self) -> bool {
        self.below(2) == 1
    }
}

/// splitmix64, for tensor data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    pub fn f32(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }

    /// Uniform in `lo..=hi`.
    pub fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % ((hi - lo + 1) as u64)) as i64
    }
}

/// A random tensor of `elem` with `dims`: floats in [-1, 1) (some exact zeros),
/// integers over their type's range (i32 small).
pub fn random_tensor(rng: &mut Rng, elem: ElemType, dims: &[usize]) -> Tensor {
    let n: usize = dims.iter().product();
    match elem {
        ElemType::F32 => Tensor::f32(
            dims.to_vec(),
            (0..n)
                .map(|_| {
                    if rng.int(0, 15) == 0 {
                        0.0
                    } else {
                        rng.f32(-1.0, 1.0)
                    }
                })
                .collect(),
        ),
        ElemType::B1 => Tensor::int(
            elem,
            dims.to_vec(),
            (0..n)
                .map(|_| if rng.int(0, 1) == 0 { -1 } else { 1 })
                .collect(),
        ),
        _ => {
            let (lo, hi) = elem.int_range().expect("integer");
            let (lo, hi) = (lo.max(-64), hi.min(64));
            Tensor::int(
                elem,
                dims.to_vec(),
                (0..n).map(|_| rng.int(lo, hi) as i32).collect(),
            )
        }
    }
}

struct Builder<'a> {
    c: Choices<'a>,
    rng: Rng,
    g: Graph,
    w: Weights,
    types: Vec<TensorType>,
}

impl Builder<'_> {
    fn weight(&mut self, elem: ElemType, dims: &[usize], t: Tensor) -> ValueId {
        let k = self.g.nodes.len();
        let key = format!("p{k}");
        self.w.insert(key.clone(), t);
        let ty = TensorType::fixed(elem, dims);
        self.types.push(ty.clone());
        self.g.add(format!("w{k}"), Op::Weight { key, ty }, vec![])
    }

    fn random_weight(&mut self, elem: ElemType, dims: &[usize]) -> ValueId {
        let t = random_tensor(&mut self.rng, elem, dims);
        self.weight(elem, dims, t)
    }

    fn constant(&mut self, t: Tensor) -> ValueId {
        let k = self.g.nodes.len();
        let ty = TensorType::fixed(t.elem, &t.dims);
        self.types.push(ty.clone());
        self.g
            .add(format!("k{k}"), Op::Const { ty, data: t.data }, vec![])
    }

    /// Per-channel f32 parameters for batchnorm: gamma with negatives and exact
    /// zeros, var positive.
    fn bn_params(&mut self, c: usize) -> Vec<ValueId> {
        let gamma: Vec<f32> = (0..c)
            .map(|_| match self.rng.int(0, 5) {
                0 => 0.0,
                1 | 2 => self.rng.f32(-1.5, -0.1),
                _ => self.rng.f32(0.1, 1.5),
            })
            .collect();
        let beta: Vec<f32> = (0..c).map(|_| self.rng.f32(-2.0, 2.0)).collect();
        let mean: Vec<f32> = (0..c).map(|_| self.rng.f32(-3.0, 3.0)).collect();
        let var: Vec<f32> = (0..c).map(|_| self.rng.f32(0.1, 4.0)).collect();
        [gamma, beta, mean, var]
            .into_iter()
            .map(|v| self.weight(ElemType::F32, &[c], Tensor::f32(vec![c], v)))
            .collect()
    }

    /// Appends `op(inputs)` if the result verifies; otherwise removes it and every
    /// parameter node added since `mark`.
    fn try_add(&mut self, mark: usize, op: Op, inputs: Vec<ValueId>) -> Option<ValueId> {
        let k = self.g.nodes.len();
        let v = self.g.add(format!("v{k}"), op, inputs);
        self.g.output(v);
        let ok = verify(&self.g);
        self.g.outputs.pop();
        self.g.output_locs.pop();
        match ok {
            Ok(types) => {
                self.types = types;
                Some(v)
            }
            Err(_) => {
                for n in self.g.nodes.drain(mark..) {
                    if let Op::Weight { key, .. } = n.op {
                        self.w.tensors.remove(&key);
                    }
                }
                self.types.truncate(mark);
                None
            }
        }
    }

    fn dot_weight_elem(&mut self, x: ElemType) -> Option<ElemType> {
        Some(match x {
            ElemType::F32 => self
                .c
                .pick(&[ElemType::F32, ElemType::B1, ElemType::Ternary]),
            ElemType::B1 => self
                .c
                .pick(&[ElemType::B1, ElemType::B1, ElemType::Ternary]),
            ElemType::Ternary => ElemType::Ternary,
            ElemType::UInt(_) => self.c.pick(&[ElemType::B1, ElemType::UInt(2)]),
            ElemType::SInt(8) => ElemType::SInt(8),
            _ => return None,
        })
    }

    /// A weight of `elem`: binary weights usually as `sign(@latent f32)`, the way
    /// models write them.
    fn dot_weight(&mut self, elem: ElemType, dims: &[usize]) -> ValueId {
        if elem == ElemType::B1 && self.c.below(3) != 0 {
            let latent = self.random_weight(ElemType::F32, dims);
            let k = self.g.nodes.len();
            let ty = TensorType::fixed(ElemType::B1, dims);
            self.types.push(ty);
            self.g
                .add(format!("s{k}"), Op::Sign { estimator: None }, vec![latent])
        } else {
            self.random_weight(elem, dims)
        }
    }

    fn step(&mut self, pool_hint: usize) -> Option<ValueId> {
        let computed: Vec<ValueId> = self
            .g
            .ids()
            .filter(|v| !self.g.node(*v).op.is_leaf() || matches!(self.g.node(*v).op, Op::Input(_)))
            .collect();
        let x = computed[computed.len() - 1 - pool_hint.min(computed.len() - 1)];
        let xt = self.types[x.index()].clone();
        let mark = self.g.nodes.len();
        let rank = xt.rank();
        let c = xt.channels().unwrap_or(1);
        let elem = xt.elem;
        let kind = self.c.below(26);
        let mut inputs = vec![x];
        let op = match kind {
            0 | 1 if elem == ElemType::I32 && self.c.below(3) == 0 => {
                // sign(rprelu(acc)) with negative slopes and offsets: the sign
                // often switches twice over the accumulator's range (a table).
                for (lo, hi) in [(-2.0, 2.0), (-1.0, -0.1), (-3.0, -0.5)] {
                    let t = Tensor::f32(vec![c], (0..c).map(|_| self.rng.f32(lo, hi)).collect());
                    inputs.push(self.weight(ElemType::F32, &[c], t));
                }
                let r = self.try_add(mark, Op::Rprelu, inputs)?;
                return self.try_add(mark, Op::Sign { estimator: None }, vec![r]);
            }
            0 | 1 => Op::Sign { estimator: None },
            2 => Op::Relu,
            3 => Op::Hardtanh,
            4 => Op::Sigmoid,
            5 => Op::Clip {
                min: self.c.pick(&[-1.0, 0.0, -0.5]),
                max: self.c.pick(&[1.0, 6.0, 0.25]),
            },
            6 => {
                let to = self.c.pick(&[
                    ElemType::UInt(2),
                    ElemType::UInt(4),
                    ElemType::SInt(8),
                    ElemType::UInt(8),
                ]);
                let clip = if self.c.flip() {
                    to.int_range()
                        .map(|(lo, hi)| (lo as i32 + 1, hi as i32 - 1))
                } else {
                    None
                };
                Op::Quantize {
                    to,
                    scale: self.c.pick(&[0.5, 0.25, 0.1, 2.0]),
                    zero_point: self.c.pick(&[0, 0, 1, -1]),
                    clip,
                }
            }
            7 if elem.is_integer() => Op::Dequantize {
                scale: self.c.pick(&[0.5, 0.125, 1.0]),
                zero_point: self.c.pick(&[0, 1]),
            },
            7 => Op::Ternarize {
                delta: self.c.pick(&[0.0, 0.25, 0.5]),
            },
            8..=10 if rank == 2 => {
                let we = self.dot_weight_elem(elem)?;
                let k = xt.shape[1].fixed()?;
                let o = self.c.pick(&[1, 3, 8, 63, 64, 65]);
                inputs.push(self.dot_weight(we, &[o, k]));
                Op::Dense
            }
            8..=11 if rank == 4 => {
                let we = self.dot_weight_elem(elem)?;
                let groups = if c.is_multiple_of(2) && self.c.below(3) == 0 {
                    2
                } else {
                    1
                };
                let o = groups * self.c.pick(&[1, 2, 4, 33, 64]);
                let kh = self.c.pick(&[1, 3, 2]);
                let kw = if self.c.below(4) == 0 {
                    self.c.pick(&[1, 3])
                } else {
                    kh
                };
                let p = self.c.below(3);
                let padding = if self.c.below(4) == 0 {
                    [p, 0, 1.min(p), p]
                } else {
                    [p; 4]
                };
                let pad_value = match elem {
                    ElemType::B1 | ElemType::Ternary if p > 0 || self.c.flip() => Some(
                        self.c
                            .pick(&[PadValue::PlusOne, PadValue::MinusOne, PadValue::Zero]),
                    ),
                    _ => None,
                };
                inputs.push(self.dot_weight(we, &[o, kh, kw, c / groups]));
                Op::Conv2d(Conv2dAttrs {
                    stride: [self.c.pick(&[1, 1, 2]), self.c.pick(&[1, 1, 2])],
                    padding,
                    dilation: [self.c.pick(&[1, 1, 2]), self.c.pick(&[1, 1, 2])],
                    groups,
                    pad_value,
                })
            }
            12 => {
                inputs.extend(self.bn_params(c));
                Op::BatchNorm {
                    eps: self.c.pick(&[1e-5, 1e-3, 0.0]),
                }
            }
            13..=15 => {
                let other = if self.c.flip() {
                    x
                } else {
                    let t = random_tensor(&mut self.rng, ElemType::F32, &[c]);
                    if self.c.flip() {
                        self.constant(t)
                    } else {
                        self.weight(ElemType::F32, &[c], t)
                    }
                };
                inputs.push(other);
                [Op::Add, Op::Sub, Op::Mul][kind - 13].clone()
            }
            16 => {
                let t = random_tensor(&mut self.rng, ElemType::F32, &[c]);
                inputs.push(self.weight(ElemType::F32, &[c], t));
                Op::Prelu
            }
            17 => {
                for _ in 0..3 {
                    let t = random_tensor(&mut self.rng, ElemType::F32, &[c]);
                    inputs.push(self.weight(ElemType::F32, &[c], t));
                }
                Op::Rprelu
            }
            18 if rank == 4 => {
                let k = self.c.pick(&[2, 3, 1]);
                let s = self.c.pick(&[k, 1, 2]);
                let p = self.c.below(k);
                let attrs = PoolAttrs {
                    kernel: [k, k],
                    stride: [s, s],
                    padding: [p; 4],
                };
                if self.c.flip() {
                    Op::MaxPool2d(attrs)
                } else {
                    Op::AvgPool2d(attrs)
                }
            }
            18 | 19 if rank == 4 && kind == 19 => Op::GlobalAvgPool,
            19 if rank > 0 => {
                // concat with an earlier value of the same element type and shape
                // (but the last axis), or with itself.
                let other = self
                    .g
                    .ids()
                    .filter(|v| {
                        let t = &self.types[v.index()];
                        !self.g.node(*v).op.is_leaf()
                            && t.elem == elem
                            && t.rank() == rank
                            && t.shape[..rank - 1] == xt.shape[..rank - 1]
                    })
                    .last()
                    .unwrap_or(x);
                inputs.push(other);
                Op::Concat { axis: -1 }
            }
            20 => Op::Replicate {
                times: self.c.pick(&[2, 3, 1]),
            },
            21 => {
                let g = (2..=c).find(|g| c.is_multiple_of(*g))?;
                Op::ChannelShuffle { groups: g }
            }
            22 if rank == 2 => {
                // The first dimension stays: `N`, or an unbatched one's samples.
                let (n, k) = (xt.shape[0], xt.shape[1].fixed()?);
                Op::Reshape {
                    shape: if self.c.flip() {
                        vec![n, Dim::Fixed(1), Dim::Fixed(1), Dim::Fixed(k)]
                    } else {
                        vec![n, Dim::Fixed(k), Dim::Fixed(1), Dim::Fixed(1)]
                    },
                }
            }
            22 => Op::Flatten,
            23 => {
                let tt = if elem == ElemType::F32 {
                    ElemType::F32
                } else {
                    ElemType::I32
                };
                let count = self.c.pick(&[1, 1, 3]);
                let rows = if self.c.below(4) == 0 { 1 } else { c };
                let data = match tt {
                    ElemType::F32 => TensorData::F32(
                        (0..rows * count).map(|_| self.rng.f32(-1.0, 1.0)).collect(),
                    ),
                    _ => TensorData::Int(
                        (0..rows * count)
                            .map(|_| self.rng.int(-6, 6) as i32)
                            .collect(),
                    ),
                };
                let t = Tensor {
                    elem: tt,
                    dims: vec![rows, count],
                    data,
                };
                inputs.push(self.weight(tt, &[rows, count], t));
                if self.c.below(3) == 0 {
                    let dirs = (0..c)
                        .map(|_| if self.rng.int(0, 1) == 0 { -1 } else { 1 })
                        .collect();
                    inputs.push(self.weight(
                        ElemType::I32,
                        &[c],
                        Tensor::int(ElemType::I32, vec![c], dirs),
                    ));
                }
                Op::Threshold
            }
            24 if elem.is_integer() => {
                // A table over [lo, lo + r): values below, inside and above.
                let r = self.c.pick(&[1, 5, 17]);
                let rows = if self.c.below(3) == 0 { 1 } else { c };
                let lo = self.c.pick(&[-8, -3, 0, 2]);
                let te = self.c.pick(&[ElemType::B1, ElemType::I32, ElemType::F32]);
                let t = random_tensor(&mut self.rng, te, &[rows, r]);
                inputs.push(self.weight(te, &[rows, r], t));
                Op::Table { lo }
            }
            25 => {
                let (value, to) = self.c.pick(&[
                    (1.0, ElemType::B1),
                    (-1.0, ElemType::B1),
                    (-3.0, ElemType::I32),
                    (0.5, ElemType::F32),
                ]);
                Op::Fill { value, to }
            }
            _ => {
                if self.c.flip() {
                    Op::Softmax { axis: -1 }
                } else {
                    Op::Argmax { axis: -1 }
                }
            }
        };
        self.try_add(mark, op, inputs)
    }
}

/// Options for [`random_graph`].
#[derive(Clone, Debug)]
pub struct GenOptions {
    /// At most this many computing steps.
    pub max_ops: usize,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions { max_ops: 10 }
    }
}

/// A random well-formed graph and its weights, from `choices` (see module docs).
/// The graph verifies; its one input is `f32` of rank 2 or 4, batched (`N`
/// first) or, one time in four, unbatched with a first dimension of 2, 3 or 5;
/// its outputs are the last value and possibly one earlier.
pub fn random_graph(choices: &[u32], opts: &GenOptions) -> Generated {
    let mut b = Builder {
        c: Choices {
            data: choices,
            pos: 0,
        },
        rng: Rng::new(
            choices
                .iter()
                .fold(0x5EED, |h, &x| h.wrapping_mul(31).wrapping_add(x as u64)),
        ),
        g: Graph::new("random"),
        w: Weights::new(),
        types: Vec::new(),
    };
    b.g.weights = Some("random.safetensors".into());
    // One input in four is unbatched, its first dimension holding several
    // samples (`f32[3, 70]`, `f32[2, 5, 4, 63]`): every kernel must loop over
    // that dimension as it loops over `N`.
    let first = if b.c.below(4) == 3 {
        Dim::Fixed(b.c.pick(&[3, 2, 5]))
    } else {
        Dim::Batch
    };
    let in_ty = if b.c.flip() {
        TensorType::new(
            ElemType::F32,
            vec![
                first,
                Dim::Fixed(b.c.pick(&[1, 3, 5, 2, 6])),
                Dim::Fixed(b.c.pick(&[1, 4, 5, 2, 6])),
                Dim::Fixed(b.c.pick(&[1, 2, 3, 63, 64, 65, 130])),
            ],
        )
    } else {
        TensorType::new(
            ElemType::F32,
            vec![first, Dim::Fixed(b.c.pick(&[1, 7, 63, 64, 65, 130]))],
        )
    };
    b.types.push(in_ty.clone());
    b.g.add("x", Op::Input(in_ty), vec![]);
    let steps = 1 + b.c.below(opts.max_ops.max(1));
    for _ in 0..steps {
        let hint = b.c.below(3);
        let _ = b.step(hint);
    }
    let last = ValueId(b.g.nodes.len() as u32 - 1);
    b.g.output(last);
    if b.c.below(3) == 0 {
        if let Some(other) =
            b.g.ids()
                .filter(|v| *v != last && !b.g.node(*v).op.is_leaf())
                .nth(b.c.below(4))
        {
            b.g.output(other);
        }
    }
    Generated {
        graph: b.g,
        weights: b.w,
    }
}
