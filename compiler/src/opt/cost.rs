//! The extraction cost model: work and memory traffic of one inference at batch 1.
//!
//! Units: one 64-bit word operation = one f32 operation = one 32-bit word moved.
//! - binary dot products (`b1 x b1`): `outputs * ceil(K / 64) * 2` (xor + popcount
//!   per word); `b1 x ternary` 3 per word (xor, and with the nonzero plane,
//!   popcount), `ternary x ternary` 4 (two planes each);
//!   bit-serial `uN x b1` N times, `uN x uM` N*M times; `i8 x i8` and dots with an
//!   f32 weight `outputs * K`; `f32 x f32` `2 * outputs * K`;
//! - float and integer elementwise ops: a few operations per element (batchnorm 4,
//!   threshold T compares, sigmoid 20);
//! - pooling: window size per output, scaled by the element width (a `b1` max is an
//!   AND of packed words, since a set bit means -1);
//! - memory: every op writes its result (`ceil(elements * bits / 32)` words), and
//!   a constant costs its size (it is read once per inference);
//! - every op costs at least 1 plus its operands, so the cheapest term is
//!   never cyclic. That holds for `fill` too, although it reads only its
//!   operand's shape (and lowering never computes a value only fills read):
//!   a `fill` that did not count its operand could be chosen over its own
//!   class (`sign(s) = fill(s)` with s already `+1`), a cycle.
//!
//! Costs saturate at [`INFINITE`], a large finite number.

use bnnc_ir::{ElemType, Op, TensorType};
use egg::{CostFunction, Id, Language};

use super::analysis::BnnGraph;
use super::lang::{ENode, NodeOp};

/// "Infinite" cost: large and finite, so sums never overflow or compare equal
/// to a real cost by accident.
pub const INFINITE: u64 = 1 << 50;

/// Cost of e-nodes from the classes' types.
pub struct BnnCost<'a> {
    pub egraph: &'a BnnGraph,
}

fn words(ty: &TensorType) -> u64 {
    (ty.numel(1) as u64)
        .saturating_mul(ty.elem.bits() as u64)
        .div_ceil(32)
}

fn dims(ty: &TensorType) -> Vec<u64> {
    ty.shape.iter().map(|d| d.resolve(1) as u64).collect()
}

/// Work of one op producing `out` from operands `args` (memory excluded).
pub fn op_work(op: &Op, out: &TensorType, args: &[&TensorType]) -> u64 {
    let n = out.numel(1) as u64;
    match op {
        Op::Dense | Op::Conv2d(_) => {
            let w = dims(args[1]);
            let k: u64 = w[1..].iter().fold(1u64, |a, &d| a.saturating_mul(d));
            let words = k.div_ceil(64);
            let per = match (args[0].elem, args[1].elem) {
                (ElemType::B1, ElemType::B1) => words.saturating_mul(2),
                (ElemType::B1, ElemType::Ternary) => words.saturating_mul(3),
                (ElemType::Ternary, ElemType::Ternary) => words.saturating_mul(4),
                (ElemType::UInt(b), ElemType::B1) => words.saturating_mul(2 * b as u64),
                (ElemType::UInt(a), ElemType::UInt(b)) => {
                    words.saturating_mul(2 * a as u64 * b as u64)
                }
                (ElemType::F32, ElemType::F32) => k.saturating_mul(2),
                _ => k,
            };
            n.saturating_mul(per)
        }
        Op::Sign { .. } | Op::Ternarize { .. } | Op::Table { .. } => n,
        Op::Fill { .. } => 0,
        Op::Threshold => {
            let t = dims(args[1]).last().copied().unwrap_or(1);
            n.saturating_mul(t)
        }
        Op::BatchNorm { .. } => n.saturating_mul(4),
        Op::Add | Op::Sub | Op::Mul | Op::Relu | Op::Hardtanh | Op::Clip { .. } => n,
        Op::Prelu | Op::Dequantize { .. } => n.saturating_mul(2),
        Op::Rprelu | Op::Quantize { .. } => n.saturating_mul(3),
        Op::Sigmoid => n.saturating_mul(20),
        Op::MaxPool2d(a) | Op::AvgPool2d(a) => {
            let win = (a.kernel[0] as u64).saturating_mul(a.kernel[1] as u64);
            let bits = if matches!(op, Op::MaxPool2d(_)) {
                out.elem.bits() as u64
            } else {
                32
            };
            n.saturating_mul(win).saturating_mul(bits).div_ceil(32)
        }
        Op::GlobalAvgPool | Op::Argmax { .. } => args[0].numel(1) as u64,
        Op::Softmax { .. } => n.saturating_mul(20),
        Op::Concat { .. }
        | Op::Replicate { .. }
        | Op::ChannelShuffle { .. }
        | Op::Flatten
        | Op::Reshape { .. } => 0,
        Op::Input(_) | Op::Weight { .. } | Op::Const { .. } => 0,
    }
}

impl CostFunction<ENode> for BnnCost<'_> {
    type Cost = u64;

    fn cost<C>(&mut self, enode: &ENode, mut costs: C) -> u64
    where
        C: FnMut(Id) -> u64,
    {
        let eg = self.egraph;
        let own = match &enode.op {
            NodeOp::Input(_) => 0,
            NodeOp::Const(c) => {
                let t = eg.analysis.tensor(*c);
                (t.numel() as u64 * t.elem.bits() as u64).div_ceil(32)
            }
            NodeOp::Op(k) => {
                let Some(class) = eg.lookup(enode.clone()) else {
                    return INFINITE;
                };
                let out = &eg[class].data.ty;
                let args: Vec<&TensorType> =
                    enode.children().iter().map(|&c| &eg[c].data.ty).collect();
                op_work(&k.op, out, &args)
                    .saturating_add(words(out))
                    .saturating_add(1)
            }
        };
        enode
            .children()
            .iter()
            .fold(own, |acc, &c| acc.saturating_add(costs(c)))
            .min(INFINITE)
    }
}
