//! bnnc-runtime: the reference interpreter of bnnc.
//!
//! The interpreter is the single written-down meaning of every [`Op`]: each op's
//! doc comment in `bnnc_ir::op` is implemented literally by one function in
//! [`ops`], on the numeric values of the element types (a `b1` element is -1 or
//! +1, never a bit). Every compiled path is tested against it.
//!
//! - [`run`] evaluates a [`Model`] and returns its outputs;
//! - [`run_all`] returns every value, indexed by [`ValueId`];
//! - [`ops`] holds one function per op, usable on their own (e.g. by the trainer);
//! - [`inputs`]: random inputs of a model's declared types (`bnnc run --random`).
//!
//! Input tensors are checked against the model's declared input types before
//! anything is computed; no input makes the interpreter panic. Cases a verified
//! model cannot reach (an operand of an impossible type or shape) are reported as
//! [`RunError::Internal`] naming the node.

pub mod inputs;
pub mod ops;

use bnnc_ir::{Dim, ElemType, Model, Op, Tensor, TensorData, TensorType, ValueId};

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
/// would appear. Intermediate values are freed after their last use.
pub fn run(model: &Model, inputs: &[Tensor]) -> Result<Vec<Tensor>, RunError> {
    let values = evaluate(model, inputs, false)?;
    collect_outputs(model, &values)
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
            v.ok_or_else(|| {
                internal(
                    model,
                    ValueId(i as u32),
                    "value was not computed".to_string(),
                )
            })
        })
        .collect()
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
    let numel = t
        .dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("dims {:?} overflow the address space", t.dims))?;
    let (len, is_f32) = match &t.data {
        TensorData::F32(v) => (v.len(), true),
        TensorData::Int(v) => (v.len(), false),
    };
    if is_f32 != (t.elem == ElemType::F32) {
        return Err(format!(
            "element type {} stored as {} data",
            t.elem,
            if is_f32 { "f32" } else { "integer" }
        ));
    }
    if len != numel {
        return Err(format!(
            "{len} elements stored, but dims {:?} need {numel}",
            t.dims
        ));
    }
    Ok(())
}

fn internal(model: &Model, v: ValueId, message: String) -> RunError {
    let (node, op) = match model.graph.nodes.get(v.index()) {
        Some(n) => (n.name.clone(), n.op.name()),
        None => (format!("%{}", v.0), "?"),
    };
    RunError::Internal { node, op, message }
}

/// Evaluates every node in order. With `keep_all == false`, a value is dropped
/// after its last user (outputs are kept).
fn evaluate(
    model: &Model,
    inputs: &[Tensor],
    keep_all: bool,
) -> Result<Vec<Option<Tensor>>, RunError> {
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

    // The last node using each value (outputs live to the end).
    let mut last_use: Vec<usize> = (0..n).collect();
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

    let mut values: Vec<Option<Tensor>> = vec![None; n];
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
        let result = match &node.op {
            Op::Input(_) => next_input
                .next()
                .cloned()
                .ok_or_else(|| internal(model, v, "missing input".to_string()))?,
            Op::Weight { .. } | Op::Const { .. } => {
                let t = model.consts[i]
                    .clone()
                    .ok_or_else(|| internal(model, v, "constant was not resolved".to_string()))?;
                check_storage(&t).map_err(|m| internal(model, v, m))?;
                t
            }
            op => {
                let mut args = Vec::with_capacity(node.inputs.len());
                for &inp in &node.inputs {
                    let t = values
                        .get(inp.index())
                        .and_then(|t| t.as_ref())
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
                ops::eval(op, &args).map_err(|e| internal(model, v, e.0))?
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

fn collect_outputs(model: &Model, values: &[Option<Tensor>]) -> Result<Vec<Tensor>, RunError> {
    model
        .graph
        .outputs
        .iter()
        .map(|&o| {
            values
                .get(o.index())
                .and_then(|t| t.clone())
                .ok_or_else(|| internal(model, o, "output was not computed".to_string()))
        })
        .collect()
}
