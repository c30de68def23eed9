//! bnnc-runtime: the reference interpreter of bnnc.
//!
//! The interpreter is the single written-down meaning of every [`Op`]: each op's
//! doc comment in `bnnc_ir::op` is implemented literally by one function in
//! [`ops`], on the numeric values of the element types (a `b1` element is -1 or
//! +1, never a bit; an operand stored packed is unpacked for the op that reads
//! it). Every compiled path is tested against it.
//!
//! - [`run`] evaluates a [`Model`] and returns its outputs;
//! - [`run_all`] returns every value, indexed by [`ValueId`];
//! - [`memory_needed`]: what a run allocates at once;
//! - [`ops`] holds one function per op, usable on their own (e.g. by the trainer);
//! - [`inputs`]: random inputs of a model's declared types (`bnnc run --random`);
//! - [`mem`]: the memory budget of a run and fallible allocation.
//!
//! Input tensors are checked against the model's declared input types before
//! anything is computed; no input makes the interpreter panic. A run that
//! needs more memory than it may use ([`mem::budget`]), or whose allocation
//! fails, is a [`RunError::OutOfMemory`]. Inputs and the model's constants are
//! read in place, never copied. Cases a verified model cannot reach (an
//! operand of an impossible type or shape) are reported as
//! [`RunError::Internal`] naming the node.

pub mod inputs;
pub mod mem;
pub mod ops;

use std::borrow::Cow;

use bnnc_ir::{Dim, ElemType, Model, Op, Tensor, TensorType, ValueId};

pub use mem::OutOfMemory;
pub use ops::OpError;

/// Why a model could not be run on the given inputs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RunError {
    /// The number of input tensors differs from the model's number of inputs.
    #[error("model `{model}` takes {expected} input(s), but {found} were given")]
    InputCount {
        model: String,
        expected: usize,
        found: usize,
    },
    /// Input `index` has a different element type than declared.
    #[error("input {index} `{name}`: expected {expected}, found element type {found}")]
    InputElemType {
        index: usize,
        name: String,
        expected: TensorType,
        found: ElemType,
    },
    /// Input `index` has a shape that does not fit the declared type.
    #[error("input {index} `{name}`: expected {expected}, found dims {found:?}")]
    InputShape {
        index: usize,
        name: String,
        expected: TensorType,
        found: Vec<usize>,
    },
    /// Input `index` is a malformed tensor: its storage does not match its element
    /// type, or its length does not match its dims.
    #[error("input {index} `{name}`: malformed tensor: {message}")]
    InputData {
        index: usize,
        name: String,
        message: String,
    },
    /// Input `index` holds an element that is not a value of its element type
    /// (e.g. 0 in a `b1` tensor, 4 in a `u2` tensor).
    #[error("input {index} `{name}`: element {position} is {value}, not a value of {elem}")]
    InputValue {
        index: usize,
        name: String,
        elem: ElemType,
        position: usize,
        value: i64,
    },
    /// Two batched inputs disagree on the batch size `N`.
    #[error(
        "input {index} `{name}` has batch size {found}, but input {first_index} \
         `{first_name}` has batch size {expected}"
    )]
    BatchMismatch {
        index: usize,
        name: String,
        found: usize,
        first_index: usize,
        first_name: String,
        expected: usize,
    },
    /// The run needs more memory than it may use ([`mem::budget`]), or an
    /// allocation failed; nothing was computed, or what was is dropped.
    #[error(transparent)]
    OutOfMemory(#[from] OutOfMemory),
    /// Something a verified model cannot produce (an operand of an impossible
    /// type or shape, a model whose tables disagree with its graph). A bug in the
    /// verifier or the caller, never in the input tensors.
    #[error("internal error at node `{node}` ({op}): {message}")]
    Internal {
        node: String,
        op: &'static str,
        message: String,
    },
}

/// Runs `model` on `inputs` (one tensor per model input, in declaration order)
/// and returns the model outputs in order.
///
/// The batch size `N` is the first dimension of the first batched input (0 is
/// allowed); a model without batched inputs runs with `N = 1` wherever `N`
/// would appear. Intermediate values are freed after their last use. Before
/// anything is computed, the memory the run needs ([`memory_needed`]) is
/// checked against [`mem::budget`]; that, and any allocation that fails, is a
/// [`RunError::OutOfMemory`].
pub fn run(model: &Model, inputs: &[Tensor]) -> Result<Vec<Tensor>, RunError> {
    let values = evaluate(model, inputs, false)?;
    collect_outputs(model, values)
}

/// Runs `model` on `inputs` like [`run`], but returns every value of the graph,
/// indexed by [`ValueId`] (inputs, constants and intermediates
/// included). For debugging and differential testing.
pub fn run_all(model: &Model, inputs: &[Tensor]) -> Result<Vec<Tensor>, RunError> {
    let values = evaluate(model, inputs, true)?;
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            v.map(Cow::into_owned).ok_or_else(|| {
                internal(
                    model,
                    ValueId(i as u32),
                    "value was not computed".to_string(),
                )
            })
        })
        .collect()
}

/// The bytes the interpreter allocates at once to run `model` at `batch`
/// ([`run`]; with `keep_all`, [`run_all`]): the largest, over the nodes in
/// order, of the values alive before the node (computed, and read later or
/// outputs) plus the node's result and its temporaries (a copy of an
/// operand unpacked from packed `b1`, and one of an integer operand of an
/// op with an `f32` result, converted to f32). Every value takes 4 bytes per
/// element. The inputs and the model's constants are not counted: they are
/// held already. `None` when the count overflows.
pub fn memory_needed(model: &Model, batch: usize, keep_all: bool) -> Option<u64> {
    let g = &model.graph;
    let n = g.nodes.len();
    let bytes = |v: ValueId| -> Option<u64> {
        let ty = model.types.get(v.index())?;
        let numel = checked_dims(ty, batch)?
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d as u64))?;
        numel.checked_mul(4)
    };
    let last_use = last_uses(model);
    let (mut live, mut peak) = (0u64, 0u64);
    let mut held = vec![0u64; n];
    for (i, node) in g.nodes.iter().enumerate() {
        if matches!(node.op, Op::Input(_) | Op::Weight { .. } | Op::Const { .. }) {
            continue;
        }
        let v = ValueId(i as u32);
        let mut temps = 0u64;
        let f32_result = model.types.get(i)?.elem == ElemType::F32;
        for &inp in &node.inputs {
            let packed = model
                .consts
                .get(inp.index())
                .and_then(Option::as_ref)
                .is_some_and(|t| t.as_bits().is_some());
            let converted = f32_result && model.types.get(inp.index())?.elem != ElemType::F32;
            let copies = u64::from(packed) + u64::from(converted);
            temps = temps.checked_add(bytes(inp)?.checked_mul(copies)?)?;
        }
        let out = bytes(v)?;
        peak = peak.max(live.checked_add(out)?.checked_add(temps)?);
        held[i] = out;
        live = live.checked_add(out)?;
        if !keep_all {
            for &inp in &node.inputs {
                if last_use.get(inp.index()) == Some(&i) {
                    live -= std::mem::take(&mut held[inp.index()]);
                }
            }
            if last_use[i] == i {
                live -= std::mem::take(&mut held[i]);
            }
        }
    }
    Some(peak)
}

/// The index of the last node reading each value (`usize::MAX` for outputs;
/// a value's own index when nothing reads it).
fn last_uses(model: &Model) -> Vec<usize> {
    let g = &model.graph;
    let mut last_use: Vec<usize> = (0..g.nodes.len()).collect();
    for (i, node) in g.nodes.iter().enumerate() {
        for &inp in &node.inputs {
            if let Some(l) = last_use.get_mut(inp.index()) {
                *l = (*l).max(i);
            }
        }
    }
    for &o in &g.outputs {
        if let Some(l) = last_use.get_mut(o.index()) {
            *l = usize::MAX;
        }
    }
    last_use
}

/// The batch size the given inputs imply for `model` (1 when no input is batched),
/// after checking every input against its declared type.
pub fn check_inputs(model: &Model, inputs: &[Tensor]) -> Result<usize, RunError> {
    let ids = model.graph.inputs();
    if ids.len() != inputs.len() {
        return Err(RunError::InputCount {
            model: model.graph.name.clone(),
            expected: ids.len(),
            found: inputs.len(),
        });
    }
    let mut batch: Option<(usize, usize)> = None; // (batch, input index)
    for (index, (&id, t)) in ids.iter().zip(inputs).enumerate() {
        let name = model.graph.node(id).name.clone();
        let ty = model
            .types
            .get(id.index())
            .ok_or_else(|| internal(model, id, "no type recorded".to_string()))?;
        check_storage(t).map_err(|message| RunError::InputData {
            index,
            name: name.clone(),
            message,
        })?;
        if t.elem != ty.elem {
            return Err(RunError::InputElemType {
                index,
                name,
                expected: ty.clone(),
                found: t.elem,
            });
        }
        let shape_ok = t.dims.len() == ty.rank()
            && t.dims
                .iter()
                .zip(&ty.shape)
                .all(|(&d, s)| s.fixed().is_none_or(|f| f == d));
        if !shape_ok {
            return Err(RunError::InputShape {
                index,
                name,
                expected: ty.clone(),
                found: t.dims.clone(),
            });
        }
        if let Some((position, value)) = t.check_values() {
            return Err(RunError::InputValue {
                index,
                name,
                elem: t.elem,
                position,
                value,
            });
        }
        if ty.is_batched() {
            let n = t.dims[0];
            match batch {
                None => batch = Some((n, index)),
                Some((expected, first_index)) if expected != n => {
                    return Err(RunError::BatchMismatch {
                        index,
                        name,
                        found: n,
                        first_index,
                        first_name: model.graph.node(ids[first_index]).name.clone(),
                        expected,
                    });
                }
                Some(_) => {}
            }
        }
    }
    Ok(batch.map_or(1, |(n, _)| n))
}

/// Checks that a tensor's storage matches its element type and its dims.
fn check_storage(t: &Tensor) -> Result<(), String> {
    t.check_storage()
}

fn internal(model: &Model, v: ValueId, message: String) -> RunError {
    let (node, op) = match model.graph.nodes.get(v.index()) {
        Some(n) => (n.name.clone(), n.op.name()),
        None => (format!("%{}", v.0), "?"),
    };
    RunError::Internal { node, op, message }
}

/// Evaluates every node in order. With `keep_all == false`, a value is dropped
/// after its last user (outputs are kept). Inputs and constants are borrowed,
/// computed values owned.
fn evaluate<'a>(
    model: &'a Model,
    inputs: &'a [Tensor],
    keep_all: bool,
) -> Result<Vec<Option<Cow<'a, Tensor>>>, RunError> {
    let g = &model.graph;
    let n = g.nodes.len();
    if model.types.len() != n || model.consts.len() != n {
        return Err(RunError::Internal {
            node: g.name.clone(),
            op: "model",
            message: format!(
                "the model has {n} nodes but {} types and {} constants",
                model.types.len(),
                model.consts.len()
            ),
        });
    }
    let batch = check_inputs(model, inputs)?;
    mem::check(
        memory_needed(model, batch, keep_all),
        &format!("batch {batch}"),
        "for the interpreter's values",
    )?;
    let last_use = last_uses(model);

    let mut values: Vec<Option<Cow<'a, Tensor>>> = vec![None; n];
    let mut next_input = inputs.iter();
    for (i, node) in g.nodes.iter().enumerate() {
        let v = ValueId(i as u32);
        let ty = &model.types[i];
        let want = checked_dims(ty, batch).ok_or_else(|| {
            internal(
                model,
                v,
                format!("{ty} at batch {batch} has more elements than fit in memory"),
            )
        })?;
        let result: Cow<'a, Tensor> = match &node.op {
            Op::Input(_) => Cow::Borrowed(
                next_input
                    .next()
                    .ok_or_else(|| internal(model, v, "missing input".to_string()))?,
            ),
            Op::Weight { .. } | Op::Const { .. } => {
                let t = model.consts[i]
                    .as_ref()
                    .ok_or_else(|| internal(model, v, "constant was not resolved".to_string()))?;
                check_storage(t).map_err(|m| internal(model, v, m))?;
                Cow::Borrowed(t)
            }
            op => {
                let mut args = Vec::with_capacity(node.inputs.len());
                for &inp in &node.inputs {
                    let t = values
                        .get(inp.index())
                        .and_then(|t| t.as_deref())
                        .filter(|_| inp.index() < i)
                        .ok_or_else(|| {
                            internal(
                                model,
                                v,
                                format!("operand %{} is not computed before its use", inp.0),
                            )
                        })?;
                    args.push(t);
                }
                match ops::eval(op, &args) {
                    Ok(t) => Cow::Owned(t),
                    Err(OpError::Invalid(m)) => return Err(internal(model, v, m)),
                    Err(OpError::Alloc(e)) => {
                        return Err(RunError::OutOfMemory(OutOfMemory::alloc_failed(
                            format!("batch {batch}"),
                            format!("for value `{}`", node.name),
                            e,
                        )))
                    }
                }
            }
        };
        if result.elem != ty.elem || result.dims != want {
            return Err(internal(
                model,
                v,
                format!(
                    "computed {}{:?}, but the declared type is {ty} (dims {want:?})",
                    result.elem, result.dims
                ),
            ));
        }
        if let Some((pos, val)) = result.check_values() {
            return Err(internal(
                model,
                v,
                format!("computed element {pos} = {val}, not a value of {}", ty.elem),
            ));
        }
        values[i] = Some(result);
        if !keep_all {
            for &inp in &node.inputs {
                if last_use.get(inp.index()) == Some(&i) {
                    values[inp.index()] = None;
                }
            }
            if last_use[i] == i {
                // Never used and not an output.
                values[i] = None;
            }
        }
    }
    Ok(values)
}

/// Dims of `ty` at `batch`, or `None` when the element count overflows `usize`.
fn checked_dims(ty: &TensorType, batch: usize) -> Option<Vec<usize>> {
    let dims: Vec<usize> = ty.shape.iter().map(|d: &Dim| d.resolve(batch)).collect();
    dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
    Some(dims)
}

fn collect_outputs(
    model: &Model,
    mut values: Vec<Option<Cow<'_, Tensor>>>,
) -> Result<Vec<Tensor>, RunError> {
    model
        .graph
        .outputs
        .iter()
        .map(|&o| {
            // The verifier refuses an output listed twice, so each is taken once.
            values
                .get_mut(o.index())
                .and_then(Option::take)
                .map(Cow::into_owned)
                .ok_or_else(|| internal(model, o, "output was not computed".to_string()))
        })
        .collect()
}
