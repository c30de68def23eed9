//! The verifier: structure, attributes, and type and shape inference.
//!
//! [`verify`] checks a graph and returns the type of every value. It never
//! panics; every problem is a [`Diagnostic`] at the most precise location known
//! (the operand or attribute at fault, else the op).

use std::collections::HashMap;

use crate::error::Diagnostic;
use crate::graph::{Graph, Loc, Node};
use crate::op::{dot_result_type, Conv2dAttrs, Op, PadValue, PoolAttrs, DOT_PAIRS};
use crate::tensor::{Tensor, TensorData};
use crate::text::parse::KEYWORDS;
use crate::text::print::is_ident;
use crate::types::{Dim, ElemType, Shape, TensorType};
use crate::weights::{WeightMismatch, Weights};

/// Checks `g` and infers every value's type (indexed by value id).
pub fn verify(g: &Graph) -> Result<Vec<TensorType>, Diagnostic> {
    if !is_ident(&g.name) || KEYWORDS.contains(&g.name.as_str()) {
        return Err(Diagnostic::new(
            Loc::NONE,
            format!(
                "model name `{}` is not a valid name (letters, digits, `_`, `.`)",
                g.name
            ),
        ));
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut keys: HashMap<&str, usize> = HashMap::new();
    let mut types: Vec<TensorType> = Vec::with_capacity(g.nodes.len());
    for (i, n) in g.nodes.iter().enumerate() {
        if !is_ident(&n.name) || KEYWORDS.contains(&n.name.as_str()) {
            return Err(Diagnostic::new(
                n.locs.name,
                format!("`{}` is not a valid value name", n.name),
            ));
        }
        if let Some(prev) = names.insert(&n.name, i) {
            let line = g.nodes[prev].locs.name.line;
            return Err(Diagnostic::new(
                n.locs.name,
                format!("`{}` is already defined on line {line}", n.name),
            ));
        }
        for (k, v) in n.inputs.iter().enumerate() {
            if v.index() >= i {
                return Err(Diagnostic::new(
                    n.locs.operand(k),
                    format!(
                        "operand {k} of `{}` refers to a value defined at or after it; graphs must be acyclic with values defined before use",
                        n.name
                    ),
                ));
            }
        }
        if let Op::Weight { key, ty } = &n.op {
            if let Some(&prev) = keys.get(key.as_str()) {
                if let Op::Weight { ty: first, .. } = &g.nodes[prev].op {
                    if first != ty {
                        return Err(Diagnostic::new(
                            n.locs.op,
                            format!(
                                "weight `@{key}` is declared here as {ty} but as {first} on line {}; one key has one type",
                                g.nodes[prev].locs.name.line
                            ),
                        ));
                    }
                }
            } else {
                keys.insert(key, i);
            }
        }
        let (lo, hi) = n.op.arity();
        let count = n.inputs.len();
        if count < lo || count > hi {
            let want = if lo == hi {
                format!("{lo}")
            } else if hi == usize::MAX {
                format!("at least {lo}")
            } else {
                format!("{lo} or {hi}")
            };
            let names =
                n.op.operand_names()
                    .map(|ns| format!(" ({})", ns[..hi.min(ns.len())].join(", ")))
                    .unwrap_or_default();
            let loc = if count > hi {
                n.locs.operand(hi)
            } else {
                n.locs.op
            };
            return Err(Diagnostic::new(
                loc,
                format!(
                    "`{}` takes {want} operand(s){names}, found {count}",
                    n.op.name()
                ),
            ));
        }
        let operands: Vec<&TensorType> = n.inputs.iter().map(|v| &types[v.index()]).collect();
        let ty = infer(n, &operands)?;
        types.push(ty);
    }
    if g.outputs.is_empty() {
        let last = g.nodes.last().map(|n| n.locs.name.line + 1).unwrap_or(1);
        return Err(Diagnostic::new(
            Loc::new(last, 1),
            "the model has no outputs: add a line `output NAME`",
        ));
    }
    for (k, v) in g.outputs.iter().enumerate() {
        let loc = g.output_locs.get(k).copied().unwrap_or(Loc::NONE);
        if v.index() >= g.nodes.len() {
            return Err(Diagnostic::new(
                loc,
                "output refers to a value that does not exist",
            ));
        }
        if g.outputs[..k].contains(v) {
            return Err(Diagnostic::new(
                loc,
                format!("`{}` is listed as an output twice", g.nodes[v.index()].name),
            ));
        }
    }
    Ok(types)
}

/// Resolves every `weight` and `const` node to a tensor of its declared type,
/// checking the weights file's tensors against the declarations (a copy of
/// each; see [`resolve_constants_owned`] to move them instead).
pub fn resolve_constants(
    g: &Graph,
    types: &[TensorType],
    weights: Option<&Weights>,
) -> Result<Vec<Option<Tensor>>, Diagnostic> {
    resolve(g, types, weights.map(Source::Borrowed))
}

/// Like [`resolve_constants`], but moves each tensor out of `weights` at the
/// last node that reads it, so the model holds the weights once.
pub fn resolve_constants_owned(
    g: &Graph,
    types: &[TensorType],
    weights: Option<Weights>,
) -> Result<Vec<Option<Tensor>>, Diagnostic> {
    let source = weights.map(|w| {
        let mut uses: HashMap<String, usize> = HashMap::new();
        for n in &g.nodes {
            if let Op::Weight { key, .. } = &n.op {
                *uses.entry(key.clone()).or_default() += 1;
            }
        }
        let names = w.tensors.keys().take(8).cloned().collect();
        Source::Owned { w, uses, names }
    });
    resolve(g, types, source)
}

/// Where [`resolve`] takes weights from.
enum Source<'a> {
    Borrowed(&'a Weights),
    /// Tensors are taken at their last use (`uses` counts the reads left);
    /// `names` are the first keys of the file, for messages.
    Owned {
        w: Weights,
        uses: HashMap<String, usize>,
        names: Vec<String>,
    },
}

fn resolve(
    g: &Graph,
    types: &[TensorType],
    mut weights: Option<Source<'_>>,
) -> Result<Vec<Option<Tensor>>, Diagnostic> {
    let mut out = Vec::with_capacity(g.nodes.len());
    for (i, n) in g.nodes.iter().enumerate() {
        let t = match &n.op {
            Op::Weight { key, ty } => {
                let Some(w) = weights.as_mut() else {
                    return Err(Diagnostic::new(
                        n.locs.op,
                        format!(
                            "`{}` reads weight `@{key}` but the model names no weights file; add a line `weights \"FILE.safetensors\"` after `model`",
                            n.name
                        ),
                    ));
                };
                let (t, near) = match w {
                    Source::Borrowed(w) => (
                        w.get_as(key, ty),
                        w.tensors.keys().map(String::as_str).take(8).collect(),
                    ),
                    Source::Owned { w, uses, names } => {
                        let left = uses.get_mut(key.as_str()).map_or(0, |u| {
                            *u = u.saturating_sub(1);
                            *u
                        });
                        let t = if left == 0 {
                            w.take_as(key, ty)
                        } else {
                            w.get_as(key, ty)
                        };
                        (t, names.iter().map(String::as_str).collect::<Vec<_>>())
                    }
                };
                let t = t.map_err(|e| {
                    let mut msg = format!("weight `@{key}` {e}");
                    if e == WeightMismatch::Missing && !near.is_empty() {
                        msg.push_str(&format!(" (it has: {})", near.join(", ")));
                    }
                    Diagnostic::new(n.locs.op, msg)
                })?;
                Some(t)
            }
            Op::Const { ty, data } => Some(Tensor {
                elem: ty.elem,
                dims: ty.dims(1),
                data: data.clone(),
            }),
            _ => None,
        };
        debug_assert!(t.as_ref().is_none_or(|t| t.matches(&types[i])));
        out.push(t);
    }
    Ok(out)
}

type R<T> = Result<T, Diagnostic>;

fn err<T>(loc: Loc, msg: impl Into<String>) -> R<T> {
    Err(Diagnostic::new(loc, msg))
}

/// The shape with the element type swapped.
fn with_elem(t: &TensorType, elem: ElemType) -> TensorType {
    TensorType::new(elem, t.shape.clone())
}

fn shape_str(s: &Shape) -> String {
    TensorType::new(ElemType::F32, s.clone()).to_string()[3..].to_string()
}

/// Checks that operand `k` is a per-channel `f32 [C]` vector.
fn per_channel(n: &Node, k: usize, t: &TensorType, c: usize, what: &str) -> R<()> {
    let ok = t.elem == ElemType::F32 && t.shape == vec![Dim::Fixed(c)];
    if !ok {
        return err(
            n.locs.operand(k),
            format!(
                "{what} of `{}` must be f32[{c}] (one per channel of the input), found {t}",
                n.op.name()
            ),
        );
    }
    Ok(())
}

/// The fixed channel count (last dimension) of operand `k`.
fn channels(n: &Node, k: usize, t: &TensorType) -> R<usize> {
    match t.shape.last() {
        Some(Dim::Fixed(c)) => Ok(*c),
        _ => err(
            n.locs.operand(k),
            format!(
                "`{}` needs an input with a fixed last (channel) dimension, found {t}",
                n.op.name()
            ),
        ),
    }
}

fn rank_is(n: &Node, k: usize, t: &TensorType, rank: usize, layout: &str) -> R<()> {
    if t.rank() != rank {
        return err(
            n.locs.operand(k),
            format!(
                "`{}` expects a rank-{rank} input {layout}, found {t}",
                n.op.name()
            ),
        );
    }
    Ok(())
}

fn no_batch(n: &Node, k: usize, t: &TensorType, what: &str) -> R<()> {
    if t.shape.contains(&Dim::Batch) {
        return err(
            n.locs.operand(k),
            format!(
                "{what} of `{}` must not depend on the batch, found {t}",
                n.op.name()
            ),
        );
    }
    Ok(())
}

fn normalize_axis(n: &Node, axis: i64, rank: usize) -> R<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r {
        return err(
            n.locs.attr("axis"),
            format!(
                "axis {axis} is out of range for a rank-{rank} input (use -{rank}..{})",
                rank as i64 - 1
            ),
        );
    }
    Ok(a as usize)
}

fn infer(n: &Node, x: &[&TensorType]) -> R<TensorType> {
    match &n.op {
        Op::Input(ty) => {
            if ty.shape.iter().skip(1).any(|d| *d == Dim::Batch) {
                return err(n.locs.op, format!("in {ty}: the batch dimension `N` may only be first"));
            }
            Ok(ty.clone())
        }
        Op::Weight { ty, .. } => {
            if ty.shape.contains(&Dim::Batch) {
                return err(n.locs.op, format!("weight type {ty} has the batch dimension `N`"));
            }
            Ok(ty.clone())
        }
        Op::Const { ty, data } => {
            if ty.shape.contains(&Dim::Batch) {
                return err(n.locs.op, format!("constant type {ty} has the batch dimension `N`"));
            }
            let (len, kind_ok) = match data {
                TensorData::F32(v) => (v.len(), ty.elem == ElemType::F32),
                TensorData::Int(v) => (v.len(), ty.elem != ElemType::F32),
                TensorData::Bits(w) => (
                    ty.numel(1),
                    ty.elem == ElemType::B1
                        && crate::tensor::check_b1_words(&ty.dims(1), w).is_ok(),
                ),
            };
            if !kind_ok || len != ty.numel(1) {
                return err(
                    n.locs.op,
                    format!("constant data ({len} values) does not match its type {ty}"),
                );
            }
            if let TensorData::Int(v) = data {
                if let Some(bad) = v.iter().find(|&&x| !ty.elem.admits(x as i64)) {
                    return err(n.locs.op, format!("constant holds {bad}, which is not a {} value", ty.elem));
                }
            }
            Ok(ty.clone())
        }
        Op::Sign { .. } => Ok(with_elem(x[0], ElemType::B1)),
        Op::Quantize {
            to,
            scale,
            clip,
            ..
        } => {
            if !matches!(to, ElemType::UInt(_) | ElemType::SInt(_)) {
                return err(n.locs.attr("to"), format!("`quantize` produces u2..u8 or i2..i8, not {to}"));
            }
            if !(scale.is_finite() && *scale > 0.0) {
                return err(n.locs.attr("scale"), format!("`scale` must be a positive finite number, found {scale}"));
            }
            if let Some((lo, hi)) = clip {
                let (tlo, thi) = to.int_range().expect("integer type");
                if lo > hi || (*lo as i64) < tlo || (*hi as i64) > thi {
                    return err(
                        n.locs.attr("clip"),
                        format!("`clip=[{lo}, {hi}]` must satisfy {tlo} <= lo <= hi <= {thi} for {to}"),
                    );
                }
            }
            Ok(with_elem(x[0], *to))
        }
        Op::Dequantize { scale, .. } => {
            if !x[0].elem.is_integer() {
                return err(n.locs.operand(0), format!("`dequantize` takes an integer-typed input, found {}", x[0]));
            }
            if !scale.is_finite() {
                return err(n.locs.attr("scale"), "`scale` must be finite");
            }
            Ok(with_elem(x[0], ElemType::F32))
        }
        Op::Ternarize { delta } => {
            if !(delta.is_finite() && *delta >= 0.0) {
                return err(n.locs.attr("delta"), format!("`delta` must be a finite number >= 0, found {delta}"));
            }
            Ok(with_elem(x[0], ElemType::Ternary))
        }
        Op::Threshold => infer_threshold(n, x),
        Op::Table { .. } => {
            let c = channels(n, 0, x[0])?;
            if !x[0].elem.is_integer() {
                return err(
                    n.locs.operand(0),
                    format!("`table` looks up an integer-typed input, found {}", x[0]),
                );
            }
            let t = x[1];
            match t.shape.as_slice() {
                [Dim::Fixed(tc), Dim::Fixed(r)] if (*tc == c || *tc == 1) && *r >= 1 => {
                    Ok(with_elem(x[0], t.elem))
                }
                _ => err(
                    n.locs.operand(1),
                    format!("the table must be [{c}, R] or [1, R] with R >= 1 for input {}, found {t}", x[0]),
                ),
            }
        }
        Op::Fill { value, to } => {
            let ok = match to {
                ElemType::F32 => true,
                _ => value.fract() == 0.0 && to.admits(*value as i64),
            };
            if !ok {
                return err(
                    n.locs.attr("value"),
                    format!("`value={value}` is not a value of {to}"),
                );
            }
            Ok(with_elem(x[0], *to))
        }
        Op::Conv2d(a) => infer_conv(n, a, x[0], x[1]),
        Op::Dense => {
            rank_is(n, 0, x[0], 2, "[N, K]")?;
            rank_is(n, 1, x[1], 2, "[out, K]")?;
            no_batch(n, 1, x[1], "the weight")?;
            let out_elem = dot_result_type(x[0].elem, x[1].elem).ok_or_else(|| {
                Diagnostic::new(
                    n.locs.operand(1),
                    format!(
                        "no dense kernel for {} x {}; supported input x weight pairs: {DOT_PAIRS}",
                        x[0].elem, x[1].elem
                    ),
                )
            })?;
            if x[0].shape[1] != x[1].shape[1] {
                return err(
                    n.locs.operand(1),
                    format!(
                        "dense weight {} must be [out, {}] to match input {}",
                        x[1], x[0].shape[1], x[0]
                    ),
                );
            }
            Ok(TensorType::new(out_elem, vec![x[0].shape[0], x[1].shape[0]]))
        }
        Op::BatchNorm { eps } => {
            if !(eps.is_finite() && *eps >= 0.0) {
                return err(n.locs.attr("eps"), format!("`eps` must be a finite number >= 0, found {eps}"));
            }
            let c = channels(n, 0, x[0])?;
            for (k, what) in ["gamma", "beta", "mean", "var"].iter().enumerate() {
                per_channel(n, k + 1, x[k + 1], c, what)?;
            }
            Ok(with_elem(x[0], ElemType::F32))
        }
        Op::Add | Op::Sub | Op::Mul => {
            let shape = broadcast(n, &x[0].shape, &x[1].shape)?;
            let elem = if x[0].elem == ElemType::F32 || x[1].elem == ElemType::F32 {
                ElemType::F32
            } else {
                ElemType::I32
            };
            Ok(TensorType::new(elem, shape))
        }
        Op::Relu => {
            let elem = if x[0].elem == ElemType::F32 { ElemType::F32 } else { ElemType::I32 };
            Ok(with_elem(x[0], elem))
        }
        Op::Prelu => {
            let c = channels(n, 0, x[0])?;
            per_channel(n, 1, x[1], c, "alpha")?;
            Ok(with_elem(x[0], ElemType::F32))
        }
        Op::Rprelu => {
            let c = channels(n, 0, x[0])?;
            for (k, what) in ["gamma (input shift)", "beta (slope)", "zeta (output shift)"].iter().enumerate() {
                per_channel(n, k + 1, x[k + 1], c, what)?;
            }
            Ok(with_elem(x[0], ElemType::F32))
        }
        Op::Clip { min, max } => {
            if min.is_nan() || max.is_nan() || min > max {
                return err(n.locs.op, format!("`clip` needs min <= max, found min={min}, max={max}"));
            }
            Ok(with_elem(x[0], ElemType::F32))
        }
        Op::Hardtanh | Op::Sigmoid => Ok(with_elem(x[0], ElemType::F32)),
        Op::MaxPool2d(a) => Ok(with_elem(&infer_pool(n, a, x[0])?, x[0].elem)),
        Op::AvgPool2d(a) => Ok(with_elem(&infer_pool(n, a, x[0])?, ElemType::F32)),
        Op::GlobalAvgPool => {
            rank_is(n, 0, x[0], 4, "[N, H, W, C] (NHWC)")?;
            for d in &x[0].shape[1..] {
                if d.fixed().is_none() {
                    return err(n.locs.operand(0), "H, W and C must be fixed");
                }
            }
            Ok(TensorType::new(ElemType::F32, vec![x[0].shape[0], x[0].shape[3]]))
        }
        Op::Concat { axis } => {
            let r = x[0].rank();
            let ax = normalize_axis(n, *axis, r)?;
            let mut total = 0usize;
            for (k, t) in x.iter().enumerate() {
                if t.elem != x[0].elem {
                    return err(
                        n.locs.operand(k),
                        format!("`concat` operands must share one element type: operand 0 is {}, operand {k} is {}", x[0].elem, t.elem),
                    );
                }
                if t.rank() != r {
                    return err(n.locs.operand(k), format!("`concat` operands must share one rank: {} vs {t}", x[0]));
                }
                for d in 0..r {
                    if d != ax && t.shape[d] != x[0].shape[d] {
                        return err(
                            n.locs.operand(k),
                            format!("`concat` along axis {ax}: operand {k} is {t} but operand 0 is {}; they may differ only on axis {ax}", x[0]),
                        );
                    }
                }
                match t.shape[ax] {
                    Dim::Fixed(d) => total += d,
                    Dim::Batch => {
                        return err(n.locs.attr("axis"), "`concat` cannot join along the batch dimension `N`")
                    }
                }
            }
            let mut shape = x[0].shape.clone();
            shape[ax] = Dim::Fixed(total);
            Ok(TensorType::new(x[0].elem, shape))
        }
        Op::Replicate { times } => {
            if *times == 0 {
                return err(n.locs.attr("times"), "`times` must be at least 1");
            }
            let c = channels(n, 0, x[0])?;
            let mut t = x[0].clone();
            *t.shape.last_mut().expect("rank >= 1") = Dim::Fixed(c.saturating_mul(*times));
            Ok(t)
        }
        Op::ChannelShuffle { groups } => {
            let c = channels(n, 0, x[0])?;
            if *groups == 0 || c % groups != 0 {
                return err(
                    n.locs.attr("groups"),
                    format!("`groups={groups}` must divide the {c} channels of {}", x[0]),
                );
            }
            Ok(x[0].clone())
        }
        Op::Flatten => {
            if x[0].rank() == 0 {
                return err(n.locs.operand(0), "`flatten` needs an input of rank >= 1");
            }
            let rest: Option<usize> = x[0].shape[1..]
                .iter()
                .try_fold(1usize, |a, d| d.fixed().map(|f| a.saturating_mul(f)));
            let rest = rest.ok_or_else(|| Diagnostic::new(n.locs.operand(0), "flatten: dimensions after the first must be fixed"))?;
            Ok(TensorType::new(x[0].elem, vec![x[0].shape[0], Dim::Fixed(rest)]))
        }
        Op::Reshape { shape } => {
            let loc = n.locs.attr("shape");
            if shape.iter().skip(1).any(|d| *d == Dim::Batch) {
                return err(loc, "the batch dimension `N` may only be first");
            }
            let batched_in = x[0].is_batched();
            let batched_out = shape.first() == Some(&Dim::Batch);
            if batched_in != batched_out {
                return err(
                    loc,
                    format!(
                        "reshape of {} to {}: the batch `N` must stay first (or be absent on both sides)",
                        x[0],
                        shape_str(shape)
                    ),
                );
            }
            let count = |s: &Shape| s.iter().filter_map(|d| d.fixed()).fold(1u128, |a, d| a * d as u128);
            if count(&x[0].shape) != count(shape) {
                return err(
                    loc,
                    format!("reshape of {} to {} changes the number of elements", x[0], shape_str(shape)),
                );
            }
            Ok(TensorType::new(x[0].elem, shape.clone()))
        }
        Op::Softmax { axis } => {
            normalize_axis(n, *axis, x[0].rank())?;
            Ok(with_elem(x[0], ElemType::F32))
        }
        Op::Argmax { axis } => {
            let ax = normalize_axis(n, *axis, x[0].rank())?;
            if x[0].shape[ax] == Dim::Batch {
                return err(n.locs.attr("axis"), "`argmax` cannot reduce the batch dimension `N`");
            }
            let mut shape = x[0].shape.clone();
            shape.remove(ax);
            Ok(TensorType::new(ElemType::I32, shape))
        }
    }
    .map_err(|d: Diagnostic| {
        if d.loc == Loc::NONE && n.locs.op != Loc::NONE {
            Diagnostic::new(n.locs.op, d.message)
        } else {
            d
        }
    })
}

/// Numpy broadcasting with the batch `N` treated as its own size.
fn broadcast(n: &Node, a: &Shape, b: &Shape) -> R<Shape> {
    let r = a.len().max(b.len());
    let mut out = Vec::with_capacity(r);
    for i in 0..r {
        let da = if i + a.len() >= r {
            Some(a[i + a.len() - r])
        } else {
            None
        };
        let db = if i + b.len() >= r {
            Some(b[i + b.len() - r])
        } else {
            None
        };
        let d = match (da, db) {
            (Some(x), None) | (None, Some(x)) => x,
            (Some(x), Some(y)) if x == y => x,
            (Some(Dim::Fixed(1)), Some(y)) => y,
            (Some(x), Some(Dim::Fixed(1))) => x,
            _ => {
                return err(
                    n.locs.operand(1),
                    format!(
                        "`{}` cannot broadcast {} with {}: sizes must match or be 1",
                        n.op.name(),
                        shape_str(a),
                        shape_str(b)
                    ),
                )
            }
        };
        out.push(d);
    }
    if out.iter().skip(1).any(|d| *d == Dim::Batch) {
        return err(
            n.locs.operand(1),
            format!(
                "broadcasting {} with {} would move the batch `N` away from the first dimension",
                shape_str(a),
                shape_str(b)
            ),
        );
    }
    Ok(out)
}

fn infer_threshold(n: &Node, x: &[&TensorType]) -> R<TensorType> {
    let c = channels(n, 0, x[0])?;
    let want_t = if x[0].elem == ElemType::F32 {
        ElemType::F32
    } else {
        ElemType::I32
    };
    let t = x[1];
    let tc = match t.shape.as_slice() {
        [Dim::Fixed(tc), Dim::Fixed(tt)] if (*tc == c || *tc == 1) && t.elem == want_t => {
            Some((*tc, *tt))
        }
        _ => None,
    };
    let Some((_, count)) = tc else {
        return err(
            n.locs.operand(1),
            format!(
                "thresholds must be {want_t}[{c}, T] or {want_t}[1, T] for input {} ({want_t} because the input is {}), found {t}",
                x[0], x[0].elem
            ),
        );
    };
    if let Some(dir) = x.get(2) {
        if !(dir.elem == ElemType::I32 && dir.shape == vec![Dim::Fixed(c)]) {
            return err(
                n.locs.operand(2),
                format!("the direction operand must be i32[{c}] holding +1 or -1 per channel, found {dir}"),
            );
        }
    }
    let elem = if count == 1 {
        ElemType::B1
    } else {
        match (2..=8u8).find(|&b| (1usize << b) - 1 == count) {
            Some(b) => ElemType::UInt(b),
            None => {
                return err(
                    n.locs.operand(1),
                    format!(
                        "{count} thresholds per channel: T must be 1 (b1 output) or 2^n - 1 for n in 2..=8 (un output: 3, 7, 15, 31, 63, 127 or 255)"
                    ),
                )
            }
        }
    };
    Ok(with_elem(x[0], elem))
}

/// Output size of a sliding window, or `None` when the window does not fit.
fn window_out(size: usize, pad: usize, extent: usize, stride: usize) -> Option<usize> {
    let padded = size.checked_add(pad)?;
    if extent == 0 || stride == 0 || padded < extent {
        return None;
    }
    Some((padded - extent) / stride + 1)
}

fn infer_conv(n: &Node, a: &Conv2dAttrs, x: &TensorType, w: &TensorType) -> R<TensorType> {
    rank_is(n, 0, x, 4, "[N, H, W, C] (NHWC)")?;
    rank_is(n, 1, w, 4, "[out, kh, kw, in/groups] (OHWI)")?;
    no_batch(n, 1, w, "the weight")?;
    let out_elem = dot_result_type(x.elem, w.elem).ok_or_else(|| {
        Diagnostic::new(
            n.locs.operand(1),
            format!(
                "no conv2d kernel for {} x {}; supported input x weight pairs: {DOT_PAIRS}",
                x.elem, w.elem
            ),
        )
    })?;
    for (key, v) in [("stride", a.stride), ("dilation", a.dilation)] {
        if v.contains(&0) {
            return err(n.locs.attr(key), format!("`{key}` must be at least 1"));
        }
    }
    if a.groups == 0 {
        return err(n.locs.attr("groups"), "`groups` must be at least 1");
    }
    let dims: Vec<usize> = match x.shape[1..]
        .iter()
        .map(|d| d.fixed())
        .collect::<Option<Vec<_>>>()
    {
        Some(d) => d,
        None => {
            return err(
                n.locs.operand(0),
                format!("H, W and C of {x} must be fixed"),
            )
        }
    };
    let (h, wd, c) = (dims[0], dims[1], dims[2]);
    let wdims: Vec<usize> = w.shape.iter().map(|d| d.resolve(1)).collect();
    let (o, kh, kw, cg) = (wdims[0], wdims[1], wdims[2], wdims[3]);
    if c % a.groups != 0 || o % a.groups != 0 {
        return err(
            n.locs.attr("groups"),
            format!(
                "`groups={}` must divide both the {c} input and the {o} output channels",
                a.groups
            ),
        );
    }
    if cg != c / a.groups {
        return err(
            n.locs.operand(1),
            format!(
                "conv2d weight {w} must have {} input channels per group (input {x}, groups={}) in OHWI layout [out, kh, kw, in/groups]",
                c / a.groups,
                a.groups
            ),
        );
    }
    match (x.elem, a.pad_value) {
        (ElemType::B1, None) if a.has_padding() => {
            return err(
                n.locs.op,
                "a binary conv2d with padding must say what the padding holds: add `pad_value=+1`, `pad_value=-1` or `pad_value=0` (0: padded positions contribute nothing)",
            )
        }
        (ElemType::B1 | ElemType::Ternary, _) | (_, None | Some(PadValue::Zero)) => {}
        (e, Some(_)) => {
            return err(
                n.locs.attr("pad_value"),
                format!("`pad_value=+1/-1` applies to b1 and ternary inputs only; this input is {e} (its padding is 0)"),
            )
        }
    }
    let [pt, pl, pb, pr] = a.padding;
    let ekh = a.dilation[0].saturating_mul(kh - 1) + 1;
    let ekw = a.dilation[1].saturating_mul(kw - 1) + 1;
    let oh = window_out(h, pt.saturating_add(pb), ekh, a.stride[0]);
    let ow = window_out(wd, pl.saturating_add(pr), ekw, a.stride[1]);
    let (Some(oh), Some(ow)) = (oh, ow) else {
        return err(
            n.locs.operand(1),
            format!("the {kh}x{kw} kernel (dilated to {ekh}x{ekw}) does not fit the padded {h}x{wd} input"),
        );
    };
    Ok(TensorType::new(
        out_elem,
        vec![x.shape[0], Dim::Fixed(oh), Dim::Fixed(ow), Dim::Fixed(o)],
    ))
}

fn infer_pool(n: &Node, a: &PoolAttrs, x: &TensorType) -> R<TensorType> {
    rank_is(n, 0, x, 4, "[N, H, W, C] (NHWC)")?;
    for (key, v) in [("kernel", a.kernel), ("stride", a.stride)] {
        if v.contains(&0) {
            return err(n.locs.attr(key), format!("`{key}` must be at least 1"));
        }
    }
    let [pt, pl, pb, pr] = a.padding;
    if pt.max(pb) >= a.kernel[0] || pl.max(pr) >= a.kernel[1] {
        return err(
            n.locs.attr("padding"),
            "pool padding must be smaller than the kernel, so every window holds an input position",
        );
    }
    let dims: Vec<usize> = match x.shape[1..]
        .iter()
        .map(|d| d.fixed())
        .collect::<Option<Vec<_>>>()
    {
        Some(d) => d,
        None => {
            return err(
                n.locs.operand(0),
                format!("H, W and C of {x} must be fixed"),
            )
        }
    };
    let oh = window_out(dims[0], pt + pb, a.kernel[0], a.stride[0]);
    let ow = window_out(dims[1], pl + pr, a.kernel[1], a.stride[1]);
    let (Some(oh), Some(ow)) = (oh, ow) else {
        return err(
            n.locs.attr("kernel"),
            format!(
                "the {}x{} window does not fit the {}x{} input",
                a.kernel[0], a.kernel[1], dims[0], dims[1]
            ),
        );
    };
    Ok(TensorType::new(
        x.elem,
        vec![
            x.shape[0],
            Dim::Fixed(oh),
            Dim::Fixed(ow),
            Dim::Fixed(dims[2]),
        ],
    ))
}
