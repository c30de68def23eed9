//! The e-class analysis: type, constant value and integer value range.
//!
//! Every e-class carries a [`Data`]:
//! - its [`TensorType`] (element type and shape, the batch `N` symbolic), inferred
//!   by the IR verifier itself on a one-op graph, so the optimizer and the verifier
//!   can never disagree;
//! - its constant tensor, when every operand is constant: computed with
//!   [`bnnc_runtime::ops::eval`], the exact reference semantics;
//! - for integer-typed values, a per-channel [`Interval`] holding every value the
//!   tensor can take (a `b1 x b1` dot of length K lies in `[-K, K]` with the parity
//!   of K; see [`dot_ranges`]).
//!
//! **Cost.** Facts cost in proportion to the weights and the graph, never to a
//! declared dimension: per-channel ranges are stored periodically (one interval
//! when every channel has the same range, see [`Data::range`]), so a value with
//! 2^31 channels costs one interval; a list longer than one comes from a
//! constant's channels. A constant is computed only when its size and the work
//! of computing it are within [`BnnAnalysis::budget`]; otherwise the class
//! simply has no constant fact (and lowering folds it, as at `-O0`).
//!
//! Two classes are only ever merged when they denote the same tensor, so merging
//! classes of different types or different constants is a bug in a rule and
//! panics. Ranges are sound over-approximations; a merge keeps, per channel, the
//! one with fewer values.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use bnnc_ir::{Dim, ElemType, Graph, Op, Tensor, TensorData, TensorType};
use egg::{Analysis, DidMerge, EGraph, Id};

use super::lang::{ConstId, ENode, NodeOp};

/// The e-graph the optimizer works on.
pub type BnnGraph = EGraph<ENode, BnnAnalysis>;

/// The values `lo, lo + step, ..., hi` (with `hi - lo` a multiple of `step`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Interval {
    pub lo: i64,
    pub hi: i64,
    pub step: i64,
}

/// Range of an `i32` value that may have wrapped.
pub const I32_FULL: Interval = Interval {
    lo: i32::MIN as i64,
    hi: i32::MAX as i64,
    step: 1,
};

impl Interval {
    pub fn new(lo: i64, hi: i64, step: i64) -> Interval {
        debug_assert!(lo <= hi && step >= 1);
        let step = step.max(1);
        let hi = lo + (hi - lo) / step * step;
        let step = if lo == hi { 1 } else { step };
        Interval { lo, hi, step }
    }

    pub fn point(v: i64) -> Interval {
        Interval::new(v, v, 1)
    }

    /// The range of an integer element type (`b1`: {-1, +1}).
    pub fn of_elem(e: ElemType) -> Option<Interval> {
        match e {
            ElemType::B1 => Some(Interval::new(-1, 1, 2)),
            _ => e.int_range().map(|(lo, hi)| Interval::new(lo, hi, 1)),
        }
    }

    /// Number of values.
    pub fn count(&self) -> u64 {
        ((self.hi - self.lo) / self.step) as u64 + 1
    }

    /// The `k`-th value.
    pub fn value(&self, k: u64) -> i64 {
        self.lo + k as i64 * self.step
    }

    /// True when every value is odd.
    pub fn all_odd(&self) -> bool {
        self.lo.rem_euclid(2) == 1 && (self.step % 2 == 0 || self.lo == self.hi)
    }

    /// Smallest interval holding both.
    pub fn hull(&self, o: &Interval) -> Interval {
        let lo = self.lo.min(o.lo);
        let hi = self.hi.max(o.hi);
        let g = gcd(gcd(self.step, o.step), (self.lo - o.lo).abs());
        Interval::new(lo, hi, g.max(1))
    }

    /// Clamped to i32: a value outside means the i32 computation may wrap.
    pub fn fit_i32(self) -> Interval {
        if self.lo < i32::MIN as i64 || self.hi > i32::MAX as i64 {
            I32_FULL
        } else {
            self
        }
    }

    /// Every value of `self op o` for one of `+ - *`.
    pub fn arith(&self, o: &Interval, op: &Op) -> Interval {
        let single = |a: &Interval, b: &Interval| {
            if b.lo == b.hi {
                a.step
            } else if a.lo == a.hi {
                b.step
            } else {
                gcd(a.step, b.step)
            }
        };
        match op {
            Op::Add => Interval::new(self.lo + o.lo, self.hi + o.hi, single(self, o)),
            Op::Sub => Interval::new(self.lo - o.hi, self.hi - o.lo, single(self, o)),
            _ => {
                let c = [
                    self.lo * o.lo,
                    self.lo * o.hi,
                    self.hi * o.lo,
                    self.hi * o.hi,
                ];
                let lo = *c.iter().min().expect("4");
                let hi = *c.iter().max().expect("4");
                let step = if o.lo == o.hi {
                    (self.step * o.lo.abs()).max(1)
                } else if self.lo == self.hi {
                    (o.step * self.lo.abs()).max(1)
                } else {
                    1
                };
                // A multiple of `step` only if the factors' sets are; keep the
                // alignment of lo.
                Interval::new(
                    lo,
                    hi,
                    if lo.rem_euclid(step) == hi.rem_euclid(step) {
                        step
                    } else {
                        1
                    },
                )
            }
        }
        .fit_i32()
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a.abs()
    } else {
        gcd(b, a % b)
    }
}

/// Where a constant of the table came from; decides how it is written back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConstOrigin {
    /// The weights file, under this key.
    Weight(String),
    /// An inline `const` of the model text.
    Inline,
    /// Computed by the optimizer.
    Computed,
}

#[derive(Clone, Debug)]
pub struct ConstEntry {
    pub tensor: Arc<Tensor>,
    pub origin: ConstOrigin,
}

/// One threshold per channel and one direction (+1 / -1) per channel.
pub type Thresholds = (Vec<i32>, Vec<i32>);

/// Per-class facts.
#[derive(Clone, Debug)]
pub struct Data {
    pub ty: TensorType,
    /// The value, when it does not depend on the inputs.
    pub konst: Option<Arc<Tensor>>,
    /// For integer types: the intervals of the channels (last dimension; one
    /// channel for scalars and for tensors whose last dimension is the batch),
    /// periodically: channel `j` takes the values of `r[j % r.len()]`, and
    /// `r.len()` divides the channel count (a single interval when every
    /// channel has the same range; see [`channel_ranges`]). Never empty.
    pub range: Option<Arc<Vec<Interval>>>,
    /// No element is ever `< 0` (f32 NaN, -0.0 and +0.0 allowed; see
    /// [`never_negative`]). `sign` of such a value is +1 everywhere.
    pub never_negative: bool,
}

/// The least [`BnnAnalysis::budget`]: 2^22 elements (16 MiB of `i32`).
pub const MIN_BUDGET: u64 = 1 << 22;

/// The analysis state: model input types and the constant table.
#[derive(Debug)]
pub struct BnnAnalysis {
    pub inputs: Vec<TensorType>,
    pub consts: Vec<ConstEntry>,
    /// The most elements one fact or one rule application may materialize or
    /// evaluate: a computed constant, a per-channel list, the accumulator
    /// values a rule evaluates times the channels. [`MIN_BUDGET`], or four
    /// times the elements of the model's weights and constants when that is
    /// more ([`BnnAnalysis::budget_for`]), so the optimizer's memory and time
    /// grow with the weights and the graph, never with a declared dimension
    /// (a padding, a spatial size, a reduced axis). A fact that would need
    /// more is not recorded and a rule that would need more does not fire.
    pub budget: u64,
    index: HashMap<u64, Vec<ConstId>>,
    /// Thresholds already computed for a chain (keyed by its exact
    /// description), so saturation rounds do not evaluate a chain twice.
    pub fold_cache: Mutex<HashMap<Vec<u8>, Option<Thresholds>>>,
    /// Per-channel `(scale, offset)` already found (or not) for an affine
    /// chain, keyed likewise.
    pub affine_cache: Mutex<HashMap<Vec<u8>, Option<Affine>>>,
}

/// A per-channel affine epilogue `acc * scale + offset` in f32.
pub type Affine = (Vec<f32>, Vec<f32>);

/// Exact equality of two tensors (f32 compared by bits).
pub fn same_tensor(a: &Tensor, b: &Tensor) -> bool {
    a.elem == b.elem
        && a.dims == b.dims
        && match (&a.data, &b.data) {
            (TensorData::F32(x), TensorData::F32(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits())
            }
            (TensorData::Int(x), TensorData::Int(y)) => x == y,
            (TensorData::Bits(x), TensorData::Bits(y)) => x == y,
            (TensorData::F32(_), _) | (_, TensorData::F32(_)) => false,
            // One packed, one not: compare values.
            _ => a.as_int() == b.as_int(),
        }
}

fn tensor_hash(t: &Tensor) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    t.elem.hash(&mut h);
    t.dims.hash(&mut h);
    match &t.data {
        TensorData::F32(v) => v.iter().for_each(|x| x.to_bits().hash(&mut h)),
        TensorData::Int(v) if t.elem != ElemType::B1 => v.hash(&mut h),
        // `b1` hashes its packed words, whatever the storage ([`same_tensor`]
        // compares values), so a packed weight is never unpacked to hash it.
        TensorData::Int(_) | TensorData::Bits(_) => match t.to_b1_words() {
            Some(w) => w.hash(&mut h),
            None => t.as_int().hash(&mut h),
        },
    }
    h.finish()
}

impl Default for BnnAnalysis {
    fn default() -> Self {
        BnnAnalysis {
            inputs: Vec::new(),
            consts: Vec::new(),
            budget: MIN_BUDGET,
            index: HashMap::new(),
            fold_cache: Mutex::default(),
            affine_cache: Mutex::default(),
        }
    }
}

impl BnnAnalysis {
    /// An empty analysis for a model with inputs of these types, with the
    /// budget [`MIN_BUDGET`].
    pub fn new(inputs: Vec<TensorType>) -> BnnAnalysis {
        BnnAnalysis {
            inputs,
            ..BnnAnalysis::default()
        }
    }

    /// The budget for a model whose weights and constants hold `elems`
    /// elements in all: four times that, at least [`MIN_BUDGET`].
    pub fn budget_for(elems: u64) -> u64 {
        elems.saturating_mul(4).max(MIN_BUDGET)
    }

    /// Whether `n` elements (or evaluations) fit in the budget.
    pub fn affordable(&self, n: u64) -> bool {
        n <= self.budget
    }

    /// The table entry holding `t` with this origin, added if new. Each weight
    /// key has its own entry (two keys with equal tensors stay two weights);
    /// inline and computed constants are shared by content within their origin.
    pub fn intern(&mut self, t: Tensor, origin: ConstOrigin) -> ConstId {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        tensor_hash(&t).hash(&mut h);
        match &origin {
            ConstOrigin::Weight(k) => (0u8, k).hash(&mut h),
            ConstOrigin::Inline => 1u8.hash(&mut h),
            ConstOrigin::Computed => 2u8.hash(&mut h),
        }
        let h = h.finish();
        if let Some(ids) = self.index.get(&h) {
            for &id in ids {
                let e = &self.consts[id.0 as usize];
                if e.origin == origin && same_tensor(&e.tensor, &t) {
                    return id;
                }
            }
        }
        let id = ConstId(self.consts.len() as u32);
        self.consts.push(ConstEntry {
            tensor: Arc::new(t),
            origin,
        });
        self.index.entry(h).or_default().push(id);
        id
    }

    pub fn tensor(&self, id: ConstId) -> &Arc<Tensor> {
        &self.consts[id.0 as usize].tensor
    }
}

/// The type of `op` applied to operands of types `args`, as the IR verifier
/// infers it (on a one-op graph), or the verifier's message.
pub fn infer_type(op: &Op, args: &[&TensorType]) -> Result<TensorType, String> {
    let mut g = Graph::new("m");
    let ins: Vec<_> = args
        .iter()
        .enumerate()
        .map(|(i, t)| g.add(format!("a{i}"), Op::Input((*t).clone()), vec![]))
        .collect();
    let y = g.add("y", op.clone(), ins);
    g.output(y);
    bnnc_ir::verify::verify(&g)
        .map(|mut types| types.pop().expect("one op"))
        .map_err(|d| d.message)
}

/// The number of per-channel intervals a value of `ty` carries.
pub fn chan_count(ty: &TensorType) -> usize {
    match ty.shape.last() {
        Some(Dim::Fixed(c)) => *c,
        _ => 1,
    }
}

/// Per-channel intervals of a constant integer tensor, in the periodic form of
/// [`Data::range`].
pub fn const_ranges(t: &Tensor) -> Option<Vec<Interval>> {
    // Read one at a time: a packed `b1` constant is never unpacked.
    let v = t.int_iter()?;
    let full = Interval::of_elem(t.elem).expect("integer");
    let c = match t.dims.last() {
        Some(&c) if c > 0 => c,
        // No element: any range is true of it.
        Some(_) => return Some(vec![full]),
        None => 1,
    };
    let step = if t.elem == ElemType::B1 { 2 } else { 1 };
    let mut out: Vec<Option<(i64, i64)>> = vec![None; c];
    for (i, x) in v.enumerate() {
        let e = &mut out[i % c];
        let x = x as i64;
        *e = Some(e.map_or((x, x), |(lo, hi)| (lo.min(x), hi.max(x))));
    }
    Some(compact(
        out.into_iter()
            .map(|r| r.map_or(full, |(lo, hi)| Interval::new(lo, hi, step)))
            .collect(),
    ))
}

/// `r` with one interval when all are equal (the canonical periodic form).
fn compact(mut r: Vec<Interval>) -> Vec<Interval> {
    if r.len() > 1 && r.iter().all(|iv| *iv == r[0]) {
        r.truncate(1);
    }
    r
}

fn lcm(a: usize, b: usize) -> Option<usize> {
    if a == 0 || b == 0 {
        return Some(a.max(b));
    }
    (a / gcd(a as i64, b as i64) as usize).checked_mul(b)
}

/// The interval of each of the `n` channels described by the periodic list
/// `r` ([`Data::range`]), or `None` when `r` is empty or `n` is above `limit`:
/// a rule that needs one interval per channel does not fire on more channels
/// than its budget ([`BnnAnalysis::budget`]).
pub fn channel_ranges(r: &[Interval], n: usize, limit: u64) -> Option<Vec<Interval>> {
    if r.is_empty() || n as u64 > limit {
        return None;
    }
    Some((0..n).map(|j| r[j % r.len()]).collect())
}

fn uniform(iv: Interval) -> Vec<Interval> {
    vec![iv]
}

/// The hull of all channels.
fn hull_all(r: &[Interval]) -> Option<Interval> {
    let (first, rest) = r.split_first()?;
    Some(rest.iter().fold(*first, |a, b| a.hull(b)))
}

/// The ranges of operand `r` (of type `t`) as seen by a result with `c`
/// channels: its own periodic list when it has those `c` channels, else the
/// hull of its channels (it broadcasts along the channels, or its channels are
/// not the result's).
fn broadcast_ranges(r: &[Interval], t: &TensorType, c: usize) -> Option<Vec<Interval>> {
    if t.shape.last() == Some(&Dim::Fixed(c)) && !r.is_empty() {
        Some(r.to_vec())
    } else {
        Some(vec![hull_all(r)?])
    }
}

/// Lists `a` and `b` (periodic, both describing the same channels) on one
/// common period, or `None` when that period is above `limit`.
fn common_period(
    a: &[Interval],
    b: &[Interval],
    limit: u64,
) -> Option<(Vec<Interval>, Vec<Interval>)> {
    let n = lcm(a.len(), b.len())?;
    Some((channel_ranges(a, n, limit)?, channel_ranges(b, n, limit)?))
}

impl BnnAnalysis {
    fn compute(egraph: &BnnGraph, enode: &ENode) -> Data {
        match &enode.op {
            NodeOp::Input(i) => {
                let ty = egraph.analysis.inputs[*i as usize].clone();
                let range = Interval::of_elem(ty.elem).map(|iv| Arc::new(uniform(iv)));
                let never_negative = ranges_nonneg(range.as_deref());
                Data {
                    ty,
                    konst: None,
                    range,
                    never_negative,
                }
            }
            NodeOp::Const(c) => {
                let t = egraph.analysis.tensor(*c).clone();
                let ty = TensorType::fixed(t.elem, &t.dims);
                let range = const_ranges(&t).map(Arc::new);
                let never_negative = const_never_negative(&t);
                Data {
                    ty,
                    konst: Some(t),
                    range,
                    never_negative,
                }
            }
            NodeOp::Op(k) => {
                let op = &k.op;
                let kids: Vec<&Data> = enode.children.iter().map(|&c| &egraph[c].data).collect();
                let tys: Vec<&TensorType> = kids.iter().map(|d| &d.ty).collect();
                let ty = infer_type(op, &tys).unwrap_or_else(|m| {
                    panic!("e-node {} over {tys:?} is ill-typed: {m}", op.name())
                });
                let budget = egraph.analysis.budget;
                // A constant too large to hold, or too costly to compute, is
                // left to the lowering (which folds it at any -O).
                let konst = if kids.iter().all(|d| d.konst.is_some())
                    && ty.numel(1) as u64 <= budget
                    && super::cost::op_work(op, &ty, &tys) <= budget
                {
                    let args: Vec<&Tensor> = kids
                        .iter()
                        .map(|d| d.konst.as_deref().expect("const"))
                        .collect();
                    bnnc_runtime::ops::eval(op, &args).ok().map(Arc::new)
                } else {
                    None
                };
                let range = if !ty.elem.is_integer() {
                    None
                } else if let Some(t) = &konst {
                    const_ranges(t).map(Arc::new)
                } else {
                    let r = op_ranges(op, &kids, &ty, budget)
                        .filter(|r| !r.is_empty())
                        .map(compact)
                        .unwrap_or_else(|| uniform(Interval::of_elem(ty.elem).expect("int")));
                    Some(Arc::new(r))
                };
                // Integer results may wrap: only their ranges tell.
                let never_negative = match &konst {
                    Some(t) => const_never_negative(t),
                    None if ty.elem.is_integer() => ranges_nonneg(range.as_deref()),
                    None => never_negative(op, &kids),
                };
                Data {
                    ty,
                    konst,
                    range,
                    never_negative,
                }
            }
        }
    }
}

/// True when every interval of `r` (an integer value's ranges) is `>= 0`.
fn ranges_nonneg(r: Option<&Vec<Interval>>) -> bool {
    r.is_some_and(|r| !r.is_empty() && r.iter().all(|iv| iv.lo >= 0))
}

/// No element of `t` is `< 0`.
fn const_never_negative(t: &Tensor) -> bool {
    match &t.data {
        TensorData::F32(v) => v.iter().all(|x| x.is_nan() || *x >= 0.0),
        TensorData::Int(v) => v.iter().all(|&x| x >= 0),
        // A set bit is -1.
        TensorData::Bits(w) => w.iter().all(|&x| x == 0),
    }
}

/// True ("never negative") when no element of the f32 result `op(kids)` can be
/// `< 0`, because the op's definition (`bnnc_ir::op`) rules it out:
/// - `relu` gives `x > 0`, NaN or +0.0; `sigmoid` `1 / (1 + exp(-x))` is in
///   [0, 1] or NaN; `softmax` divides non-negative exponentials by their sum;
/// - `clip(min >= 0, max >= 0)` is `min(max(x, a), b)`: NaN or a value >= 0;
/// - `add`, `mul`, f32 `conv2d` / `dense` of never-negative operands: sums and
///   products of values >= 0 (or NaN: `0 * inf`, never `-inf + inf`) are >= 0
///   or NaN, a sum starting from +0.0; padding contributes nothing;
/// - pooling, concat, replicate, shuffle, flatten, reshape copy or average
///   never-negative elements;
/// - `dequantize` of q >= zero_point with scale >= 0 is `(q - zp) * scale`.
///
/// Integer results are decided by their ranges instead (they may wrap).
pub fn never_negative(op: &Op, kids: &[&Data]) -> bool {
    let all = || kids.iter().all(|d| d.never_negative);
    match op {
        Op::Relu | Op::Sigmoid | Op::Softmax { .. } => true,
        Op::Fill { value, .. } => value.is_nan() || *value >= 0.0,
        Op::Clip { min, max } => *min >= 0.0 && *max >= 0.0,
        Op::Add
        | Op::Mul
        | Op::Dense
        | Op::Conv2d(_)
        | Op::MaxPool2d(_)
        | Op::AvgPool2d(_)
        | Op::GlobalAvgPool
        | Op::Concat { .. }
        | Op::Replicate { .. }
        | Op::ChannelShuffle { .. }
        | Op::Flatten
        | Op::Reshape { .. } => all(),
        Op::Dequantize { scale, zero_point } => {
            *scale >= 0.0
                && kids[0]
                    .range
                    .as_deref()
                    .is_some_and(|r| r.iter().all(|iv| iv.lo >= *zero_point as i64))
        }
        _ => false,
    }
}

/// Per-channel ranges (periodic, see [`Data::range`]) of a computed integer
/// value, from its operands' facts; lists are built only up to `limit`
/// intervals (beyond it a hull over the channels stands for them).
fn op_ranges(op: &Op, kids: &[&Data], ty: &TensorType, limit: u64) -> Option<Vec<Interval>> {
    let c = chan_count(ty);
    let r0 = kids.first().and_then(|d| d.range.as_deref());
    Some(match op {
        // sign(v) is -1 iff v < 0, which never happens.
        Op::Sign { .. } if kids[0].never_negative => uniform(Interval::point(1)),
        Op::Sign { .. } => uniform(Interval::new(-1, 1, 2)),
        Op::Ternarize { .. } => uniform(Interval::new(-1, 1, 1)),
        Op::Fill { value, .. } => uniform(Interval::point(*value as i64)),
        // Channel c takes only the values of its row of the table (one row
        // shared by all channels, or one row per channel).
        Op::Table { .. } => {
            let t = kids[1].konst.as_deref()?;
            let v = t.as_int()?;
            let r = *t.dims.last()?;
            if r == 0 {
                return None;
            }
            let rows: Vec<Interval> = v
                .chunks(r)
                .map(|row| {
                    let pts: Vec<Interval> =
                        row.iter().map(|&x| Interval::point(x as i64)).collect();
                    hull_all(&pts)
                })
                .collect::<Option<_>>()?;
            if rows.len() == 1 || rows.len() == c {
                rows
            } else {
                vec![hull_all(&rows)?]
            }
        }
        Op::Threshold => {
            let t = kids[1].ty.shape.last().and_then(|d| d.fixed())?;
            if t == 1 {
                uniform(Interval::new(-1, 1, 2))
            } else {
                uniform(Interval::new(0, t as i64, 1))
            }
        }
        Op::Quantize { to, clip, .. } => {
            let iv = match clip {
                Some((lo, hi)) => Interval::new(*lo as i64, (*hi as i64).max(*lo as i64), 1),
                None => Interval::of_elem(*to)?,
            };
            uniform(iv)
        }
        Op::Relu => r0?
            .iter()
            .map(|iv| {
                if iv.lo >= 0 {
                    *iv
                } else {
                    Interval::new(0, iv.hi.max(0), 1)
                }
            })
            .collect(),
        Op::Add | Op::Sub | Op::Mul => {
            let a = broadcast_ranges(kids[0].range.as_deref()?, &kids[0].ty, c)?;
            let b = broadcast_ranges(kids[1].range.as_deref()?, &kids[1].ty, c)?;
            let (a, b) = common_period(&a, &b, limit).unwrap_or_else(|| {
                (
                    vec![hull_all(&a).expect("nonempty")],
                    vec![hull_all(&b).expect("nonempty")],
                )
            });
            a.iter().zip(&b).map(|(x, y)| x.arith(y, op)).collect()
        }
        Op::MaxPool2d(_) => r0?.to_vec(),
        // Output channel `r*C + j` is input channel j, and the list's period
        // divides C.
        Op::Replicate { .. } => r0?.to_vec(),
        Op::ChannelShuffle { groups } => {
            let r = r0?;
            let g = *groups;
            if r.len() == 1 {
                return Some(r.to_vec());
            }
            if c == 0 || g == 0 || !c.is_multiple_of(g) {
                return None;
            }
            let Some(r) = channel_ranges(r, c, limit) else {
                return Some(vec![hull_all(r)?]);
            };
            let m = c / g;
            let mut out = vec![r[0]; c];
            for i in 0..m {
                for k in 0..g {
                    out[i * g + k] = r[k * m + i];
                }
            }
            out
        }
        Op::Concat { axis } => {
            let rank = ty.rank() as i64;
            let ax = if *axis < 0 { axis + rank } else { *axis };
            let parts: Vec<&[Interval]> = kids
                .iter()
                .map(|d| d.range.as_deref().map(Vec::as_slice))
                .collect::<Option<_>>()?;
            let hull = || -> Option<Vec<Interval>> {
                let all: Vec<Interval> =
                    parts.iter().map(|r| hull_all(r)).collect::<Option<_>>()?;
                Some(vec![hull_all(&all)?])
            };
            if ax == rank - 1 {
                // Operand i holds its own channels, one after the other.
                let mut out = Vec::new();
                for (d, r) in kids.iter().zip(&parts) {
                    let left = limit.saturating_sub(out.len() as u64);
                    let Some(rs) = channel_ranges(r, chan_count(&d.ty), left) else {
                        return hull();
                    };
                    out.extend(rs);
                }
                out
            } else {
                // Every operand has all the channels.
                let mut acc = parts[0].to_vec();
                for r in &parts[1..] {
                    let Some((a, b)) = common_period(&acc, r, limit) else {
                        return hull();
                    };
                    acc = a.iter().zip(&b).map(|(x, y)| x.hull(y)).collect();
                }
                acc
            }
        }
        Op::Flatten | Op::Reshape { .. } => {
            let r = r0?;
            let cin = kids[0].ty.shape.last().and_then(|d| d.fixed());
            // With C_in dividing C, output channel j is input channel j % C_in
            // (row-major order), and the period divides C_in.
            match cin {
                Some(cin) if cin > 0 && c.is_multiple_of(cin) => r.to_vec(),
                _ => vec![hull_all(r)?],
            }
        }
        Op::Argmax { axis } => {
            let xt = &kids[0].ty;
            let rank = xt.rank() as i64;
            let ax = if *axis < 0 { axis + rank } else { *axis };
            let n = xt.shape.get(usize::try_from(ax).ok()?)?.fixed()?;
            let hi = i64::try_from(n)
                .unwrap_or(i64::MAX)
                .saturating_sub(1)
                .max(0);
            uniform(Interval::new(0, hi, 1).fit_i32())
        }
        Op::Dense | Op::Conv2d(_) => dot_ranges(op, kids, ty)?,
        _ => return None,
    })
}

/// Per-output-channel ranges of an integer `dense` or `conv2d`.
///
/// Each output is a sum of K products (`dense`: K = in features; `conv2d`:
/// K = kh*kw*Cg taps), each product either `x * w` for an in-bounds tap or
/// `pad * w` for a padded one. A tap's product lies in the hull of
/// `{x_lo*w, x_hi*w}` (and `pad*w` when the conv pads), so the sum lies in the
/// sum of those hulls. When every input value is odd (`b1`) and every weight is
/// odd or exactly 0 and no tap can be a zero pad, each output sums the same
/// number of odd terms, so all its values share one parity: a `b1 x b1` dot of
/// length K lies in `[-K, K]` in steps of 2. Sums that may leave i32 (the
/// interpreter wraps) give the full i32 range.
///
/// With constant weights the bound is taken per weight (work: the weight's
/// elements); otherwise every weight may be any value of its type, and one
/// interval bounds every channel: K times the hull over the input's channels
/// (work independent of the shapes).
pub fn dot_ranges(op: &Op, kids: &[&Data], ty: &TensorType) -> Option<Vec<Interval>> {
    let x = kids[0];
    let w = kids[1];
    let xr = x.range.as_deref()?;
    let wdims: Vec<usize> =
        w.ty.shape
            .iter()
            .map(|d| d.fixed())
            .collect::<Option<_>>()?;
    let o = *wdims.first()?;
    if ty.shape.last() != Some(&Dim::Fixed(o)) || xr.is_empty() {
        return None;
    }
    let k_per_o = wdims[1..]
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))?;
    let wfull = Interval::of_elem(w.ty.elem)?;
    let (pad, groups, cg) = match op {
        Op::Conv2d(a) => {
            let p = if a.has_padding() {
                Some(a.effective_pad().value() as i64)
            } else {
                None
            };
            (p, a.groups, *wdims.last()?)
        }
        _ => (None, 1, k_per_o),
    };
    let x_odd = xr.iter().all(|iv| iv.all_odd());
    // The hull of one tap's products, x in `xi`, w in [wlo, whi].
    let tap = |xi: &Interval, wlo: i64, whi: i64| -> (i64, i64) {
        let mut cands = [xi.lo * wlo, xi.lo * whi, xi.hi * wlo, xi.hi * whi, 0, 0];
        let n = match pad {
            Some(p) => {
                cands[4] = p * wlo;
                cands[5] = p * whi;
                6
            }
            None => 4,
        };
        let c = &cands[..n];
        (
            *c.iter().min().expect("nonempty"),
            *c.iter().max().expect("nonempty"),
        )
    };
    // Read one at a time: a packed `b1` weight is never unpacked.
    let Some((wt, mut wvals)) = w.konst.as_deref().and_then(|t| Some((t, t.int_iter()?))) else {
        let (lo, hi) = tap(&hull_all(xr)?, wfull.lo, wfull.hi);
        let k = i64::try_from(k_per_o).ok();
        let sum = |v: i64| k.and_then(|k| k.checked_mul(v));
        let odd = x_odd && pad != Some(0) && wfull.all_odd();
        let iv = match (sum(lo), sum(hi)) {
            (Some(lo), Some(hi)) => i32_interval(lo, hi, if odd { 2 } else { 1 }),
            _ => I32_FULL,
        };
        return Some(vec![iv]);
    };
    if wt.numel() != o.checked_mul(k_per_o)? {
        return None;
    }
    let og = o / groups.max(1);
    let mut out = Vec::with_capacity(o);
    for oc in 0..o {
        let g = oc / og.max(1);
        let (mut lo, mut hi) = (0i64, 0i64);
        let mut odd = x_odd && pad != Some(0);
        for k in 0..k_per_o {
            let ci = g * cg + k % cg;
            let xi = &xr[ci % xr.len()];
            let e = wvals.next()? as i64;
            if e % 2 == 0 && e != 0 {
                odd = false;
            }
            let (a, b) = tap(xi, e, e);
            lo = lo.saturating_add(a);
            hi = hi.saturating_add(b);
        }
        out.push(i32_interval(lo, hi, if odd { 2 } else { 1 }));
    }
    Some(out)
}

/// `Interval::new(lo, hi, step)` when it lies in i32, else the full i32 range
/// (the i32 computation may wrap); any `lo <= hi` of i64.
fn i32_interval(lo: i64, hi: i64, step: i64) -> Interval {
    if lo < i32::MIN as i64 || hi > i32::MAX as i64 {
        I32_FULL
    } else {
        Interval::new(lo, hi, step)
    }
}

fn tensors_equal(a: &Option<Arc<Tensor>>, b: &Option<Arc<Tensor>>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => Arc::ptr_eq(x, y) || same_tensor(x, y),
        _ => true,
    }
}

impl Analysis<ENode> for BnnAnalysis {
    type Data = Data;

    fn make(egraph: &mut BnnGraph, enode: &ENode, _id: Id) -> Data {
        BnnAnalysis::compute(egraph, enode)
    }

    fn remake(egraph: &mut BnnGraph, enode: &ENode, id: Id) -> Data {
        // A class that already knows its value learns nothing from recomputing it.
        let cur = &egraph[id].data;
        if cur.konst.is_some() {
            return cur.clone();
        }
        BnnAnalysis::compute(egraph, enode)
    }

    fn merge(&mut self, a: &mut Data, b: Data) -> DidMerge {
        assert_eq!(
            a.ty, b.ty,
            "merging e-classes of different types: a rewrite rule changed a value's type"
        );
        assert!(
            tensors_equal(&a.konst, &b.konst),
            "merging e-classes with different constant values: a rewrite rule is wrong"
        );
        let mut changed_a = false;
        let mut changed_b = false;
        match (&a.konst, &b.konst) {
            (None, Some(_)) => {
                a.konst = b.konst.clone();
                changed_a = true;
            }
            (Some(_), None) => changed_b = true,
            _ => {}
        }
        if b.never_negative && !a.never_negative {
            a.never_negative = true;
            changed_a = true;
        } else if a.never_negative && !b.never_negative {
            changed_b = true;
        }
        let budget = self.budget;
        match (&mut a.range, b.range) {
            (Some(ra), Some(rb)) if *ra != rb => match common_period(ra, &rb, budget) {
                Some((mut merged, rb)) => {
                    for (x, y) in merged.iter_mut().zip(&rb) {
                        if y.count() < x.count() {
                            *x = *y;
                            changed_a = true;
                        } else if x.count() < y.count() {
                            changed_b = true;
                        }
                    }
                    *ra = Arc::new(compact(merged));
                }
                // Too many channels to compare one by one: keep a's ranges.
                None => changed_b = true,
            },
            (ra @ None, Some(rb)) => {
                *ra = Some(rb);
                changed_a = true;
            }
            (Some(_), None) => changed_b = true,
            _ => {}
        }
        DidMerge(changed_a, changed_b)
    }
}

/// True when operand `t` (of a value with `c` channels and rank `rank`) holds one
/// value per channel or one value for all: every dimension but the last is 1 and
/// the last is `c` or 1.
pub fn is_per_channel(t: &TensorType, c: usize, rank: usize) -> bool {
    t.rank() <= rank
        && t.shape.iter().all(|d| d.fixed().is_some())
        && match t.shape.split_last() {
            None => true,
            Some((last, rest)) => {
                rest.iter().all(|d| *d == Dim::Fixed(1))
                    && (*last == Dim::Fixed(c) || *last == Dim::Fixed(1))
            }
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        let b = Interval::new(-1, 1, 2);
        assert_eq!(b.count(), 2);
        assert!(b.all_odd());
        let k = Interval::new(-784, 784, 2);
        assert_eq!(k.count(), 785);
        assert!(!k.all_odd());
        assert_eq!(
            b.arith(&Interval::point(3), &Op::Add),
            Interval::new(2, 4, 2)
        );
        assert_eq!(
            Interval::new(0, 3, 1).arith(&Interval::point(-2), &Op::Mul),
            Interval::new(-6, 0, 2)
        );
        assert_eq!(Interval::new(0, 1 << 40, 1).fit_i32(), I32_FULL);
    }

    /// sign of a value known non-negative is +1: the analysis gives the
    /// `sign` class the range {+1} in every channel (sign(v) is -1 iff v < 0;
    /// relu, sigmoid and sums/products/pools of them are never < 0, NaN and
    /// -0.0 included), and a binary dense over it the constant row sums.
    #[test]
    fn sign_of_nonnegative() {
        use crate::opt::rules::testing::*;
        let ty = TensorType::new(ElemType::F32, vec![Dim::Batch, Dim::Fixed(3)]);
        let mut eg = egraph(&[ty.clone(), ty]);
        let x = input(&mut eg, 0);
        let y = input(&mut eg, 1);
        let sign = |eg: &mut BnnGraph, v| op(eg, Op::Sign { estimator: None }, &[v]);
        let r = op(&mut eg, Op::Relu, &[x]);
        let g = op(&mut eg, Op::Sigmoid, &[y]);
        let sum = op(&mut eg, Op::Add, &[r, g]);
        let clipped = op(&mut eg, Op::Clip { min: 0.0, max: 6.0 }, &[x]);
        let s_relu = sign(&mut eg, r);
        let s_sum = sign(&mut eg, sum);
        let s_clip = sign(&mut eg, clipped);
        let s_x = sign(&mut eg, x);
        let neg = op(&mut eg, Op::Sub, &[r, g]);
        let s_neg = sign(&mut eg, neg);
        let w = konst(
            &mut eg,
            Tensor::int(ElemType::B1, vec![2, 3], vec![1, 1, -1, -1, -1, -1]),
        );
        let d = op(&mut eg, Op::Dense, &[s_relu, w]);
        eg.rebuild();
        let per_channel = |s: Id| channel_ranges(eg[s].data.range.as_deref().unwrap(), 3, 3);
        let plus_one = vec![Interval::point(1); 3];
        for s in [s_relu, s_sum, s_clip] {
            assert_eq!(per_channel(s), Some(plus_one.clone()));
        }
        let both = vec![Interval::new(-1, 1, 2); 3];
        for s in [s_x, s_neg] {
            assert_eq!(per_channel(s), Some(both.clone()));
        }
        assert_eq!(
            eg[d].data.range.as_deref(),
            Some(&vec![Interval::point(1), Interval::point(-3)])
        );
        // The fact is what the interpreter computes, NaN and -0.0 included.
        let v = Tensor::f32(
            vec![2, 3],
            vec![f32::NAN, -0.0, -5.0, f32::NEG_INFINITY, 0.0, 2.0],
        );
        let relu = bnnc_runtime::ops::eval(&Op::Relu, &[&v]).unwrap();
        let s = bnnc_runtime::ops::eval(&Op::Sign { estimator: None }, &[&relu]).unwrap();
        assert!(s.as_int().unwrap().iter().all(|&b| b == 1));
    }

    #[test]
    fn infer_type_uses_the_verifier() {
        let x = TensorType::new(ElemType::B1, vec![Dim::Batch, Dim::Fixed(8)]);
        let w = TensorType::fixed(ElemType::B1, &[4, 8]);
        let t = infer_type(&Op::Dense, &[&x, &w]).unwrap();
        assert_eq!(
            t,
            TensorType::new(ElemType::I32, vec![Dim::Batch, Dim::Fixed(4)])
        );
        assert!(infer_type(&Op::Dense, &[&w, &x]).is_err());
    }
}
