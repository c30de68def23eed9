//! `bnnc eval`: the accuracy of a classifier on an IDX dataset (MNIST), run by
//! the reference interpreter or by JIT-compiled native code.
//!
//! The model must take one `f32` input whose non-batch dims hold one image
//! (`f32[N, 784]`, `f32[N, 28, 28, 1]`, ...): pixels are fed as `p / 255`
//! ([`Dataset::batch`]). Its first output is either logits `[N, K]` (any
//! element type; the class is the interpreter's `argmax` along axis 1: the
//! first maximum, so ties go to the lower class) or class indices `i32[N]`.
//! Images are taken in file order, the first `limit` of the split, in batches
//! of `batch` (the last one smaller).
//!
//! ```no_run
//! use bnnc_cli::eval::{evaluate, EvalEngine, EvalOptions};
//! use bnnc_train::data::{load_idx_dir, Split};
//! let model = bnnc_ir::Model::load(std::path::Path::new("examples/mnist_mlp.ir"))?;
//! let data = load_idx_dir(std::path::Path::new("data/mnist"), Split::Test)?;
//! let opts = EvalOptions { engine: EvalEngine::jit(), ..EvalOptions::default() };
//! let report = evaluate(&model, &data, &opts)?;
//! println!("{:.2}%", 100.0 * report.accuracy());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::time::Instant;

use bnnc_ir::{ElemType, Model, Op, Tensor, TensorData};
use bnnc_train::data::{DataError, Dataset};

use bnnc::compile::{Backend, CompileError};
use bnnc::jit::{JitError, JitModel};

/// Why a model could not be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The model does not fit the dataset (inputs, image size, outputs).
    #[error("{0}")]
    Mismatch(String),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("the interpreter failed: {0}")]
    Run(#[from] bnnc_runtime::RunError),
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error("the compiled model failed: {0}")]
    Jit(#[from] JitError),
}

/// What runs the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvalEngine {
    /// The reference interpreter.
    Interp,
    /// Native code for this machine by `backend`, after the e-graph optimizer
    /// when `opt_level` is 1 (see [`bnnc::compile::CompileOptions`]).
    Jit { backend: Backend, opt_level: u8 },
}

impl EvalEngine {
    /// Cranelift with the optimizer: what `bnnc eval --engine jit` uses.
    pub fn jit() -> EvalEngine {
        EvalEngine::Jit {
            backend: Backend::Cranelift,
            opt_level: 1,
        }
    }
}

impl std::fmt::Display for EvalEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EvalEngine::Interp => f.write_str("interpreter"),
            EvalEngine::Jit { backend, opt_level } => write!(f, "jit ({backend}, -O{opt_level})"),
        }
    }
}

/// How to evaluate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvalOptions {
    pub engine: EvalEngine,
    /// Images per model run (at least 1).
    pub batch: usize,
    /// Evaluate only the first `limit` images of the dataset.
    pub limit: Option<usize>,
}

impl Default for EvalOptions {
    fn default() -> EvalOptions {
        EvalOptions {
            engine: EvalEngine::Interp,
            batch: 256,
            limit: None,
        }
    }
}

/// The result of [`evaluate`].
#[derive(Clone, Debug)]
pub struct EvalReport {
    /// Images evaluated.
    pub images: usize,
    /// Images whose predicted class is their label.
    pub correct: usize,
    /// The predicted class of every image, in dataset order.
    pub predictions: Vec<u32>,
    /// The first output of every image, concatenated along the batch: logits
    /// `[images, K]` or classes `[images]`.
    pub outputs: Tensor,
    /// Seconds spent compiling (0 for the interpreter).
    pub compile_seconds: f64,
    /// Seconds spent running the model (the batches' pixel conversion and the
    /// argmax excluded).
    pub run_seconds: f64,
}

impl EvalReport {
    /// `correct / images` (0 when no image was evaluated).
    pub fn accuracy(&self) -> f64 {
        if self.images == 0 {
            0.0
        } else {
            self.correct as f64 / self.images as f64
        }
    }

    /// Images per second of model run time.
    pub fn images_per_second(&self) -> f64 {
        self.images as f64 / self.run_seconds.max(1e-9)
    }
}

/// An engine ready to run batches.
enum Runner<'a> {
    Interp(&'a Model),
    Jit(Box<JitModel>),
}

impl Runner<'_> {
    fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, EvalError> {
        Ok(match self {
            Runner::Interp(m) => bnnc_runtime::run(m, inputs)?,
            Runner::Jit(j) => j.run(inputs)?,
        })
    }
}

/// The input dims of one image, checked against the model: one `f32` input
/// whose non-batch dims multiply to `rows * cols`, and a first output of
/// logits `[N, K]` with `K >= classes` or classes `i32[N]`.
fn check_model(model: &Model, data: &Dataset) -> Result<Vec<usize>, EvalError> {
    let g = &model.graph;
    let bad = |m: String| Err(EvalError::Mismatch(m));
    let inputs = g.inputs();
    let &[x] = inputs.as_slice() else {
        return bad(format!(
            "`bnnc eval` feeds one image input; model `{}` has {} inputs",
            g.name,
            inputs.len()
        ));
    };
    let ty = model.ty(x);
    let name = &g.node(x).name;
    let image = data.rows * data.cols;
    if ty.elem != ElemType::F32 || !ty.is_batched() {
        return bad(format!(
            "input `{name}` is {ty}; `bnnc eval` feeds f32[N, ...] pixels in [0, 1]"
        ));
    }
    let dims: Vec<usize> = ty.shape[1..].iter().filter_map(|d| d.fixed()).collect();
    if dims.len() + 1 != ty.rank() || dims.iter().product::<usize>() != image {
        return bad(format!(
            "input `{name}` is {ty}, but the images are {}x{} ({image} pixels)",
            data.rows, data.cols
        ));
    }
    let Some(&y) = g.outputs.first() else {
        return bad(format!("model `{}` has no output", g.name));
    };
    let oty = model.ty(y);
    let oname = &g.node(y).name;
    let logits_ok = oty.rank() == 2
        && oty.is_batched()
        && oty.shape[1].fixed().is_some_and(|k| k >= data.classes);
    let classes_ok = oty.rank() == 1 && oty.is_batched() && oty.elem.is_integer();
    if !logits_ok && !classes_ok {
        return bad(format!(
            "the first output `{oname}` is {oty}; `bnnc eval` needs logits [N, K] with K >= {} \
             or class indices i32[N]",
            data.classes
        ));
    }
    Ok(dims)
}

/// Evaluates `model` on `data` as `opts` says: runs it batch by batch, takes
/// the class of each image (see the module doc), and counts the correct ones.
/// Errors when the model does not fit the data ([`EvalError::Mismatch`]), and
/// when compiling or running fails.
pub fn evaluate(
    model: &Model,
    data: &Dataset,
    opts: &EvalOptions,
) -> Result<EvalReport, EvalError> {
    let image_dims = check_model(model, data)?;
    if opts.batch == 0 {
        return Err(EvalError::Mismatch(
            "the batch size must be at least 1".into(),
        ));
    }
    let n = opts.limit.map_or(data.n, |l| l.min(data.n));
    let t0 = Instant::now();
    let runner = match opts.engine {
        EvalEngine::Interp => Runner::Interp(model),
        EvalEngine::Jit { backend, opt_level } => {
            let opts = bnnc::compile::CompileOptions::host(backend)?.opt_level(opt_level);
            Runner::Jit(Box::new(JitModel::compile_with(model, &opts)?))
        }
    };
    let compile_seconds = match opts.engine {
        EvalEngine::Interp => 0.0,
        EvalEngine::Jit { .. } => t0.elapsed().as_secs_f64(),
    };
    let mut run_seconds = 0.0;
    let mut predictions = Vec::with_capacity(n);
    let mut correct = 0;
    let mut out_dims: Option<Vec<usize>> = None;
    let mut out_f32 = Vec::new();
    let mut out_int = Vec::new();
    let mut out_elem = ElemType::F32;
    for start in (0..n).step_by(opts.batch) {
        let idx: Vec<usize> = (start..(start + opts.batch).min(n)).collect();
        let mut dims = vec![idx.len()];
        dims.extend(&image_dims);
        let x = data.batch(&idx, &dims)?;
        let t = Instant::now();
        let mut outs = runner.run(&[x])?;
        run_seconds += t.elapsed().as_secs_f64();
        let y = outs.swap_remove(0);
        let classes: Vec<i32> = if y.dims.len() == 2 {
            bnnc_runtime::ops::eval(&Op::Argmax { axis: 1 }, &[&y])
                .map_err(|e| EvalError::Mismatch(format!("argmax of the logits: {e}")))?
                .as_int()
                .map(|v| v.into_owned())
                .unwrap_or_default()
        } else {
            y.as_int().map(|v| v.into_owned()).unwrap_or_default()
        };
        if classes.len() != idx.len() {
            return Err(EvalError::Mismatch(format!(
                "the first output has dims {:?} for a batch of {}",
                y.dims,
                idx.len()
            )));
        }
        let labels = data.labels_of(&idx)?;
        for (&c, &l) in classes.iter().zip(&labels) {
            correct += usize::from(c == i32::from(l));
            predictions.push(u32::try_from(c).unwrap_or(u32::MAX));
        }
        out_elem = y.elem;
        let dims = out_dims.get_or_insert_with(|| {
            let mut d = y.dims.clone();
            d[0] = 0;
            d
        });
        dims[0] += y.dims[0];
        match y.data {
            TensorData::F32(v) => out_f32.extend(v),
            TensorData::Int(v) => out_int.extend(v),
            TensorData::Bits(_) => out_int.extend(y.as_int().unwrap_or_default().iter()),
        }
    }
    let dims = out_dims.unwrap_or_else(|| vec![0]);
    let outputs = if out_elem == ElemType::F32 {
        Tensor::f32(dims, out_f32)
    } else {
        Tensor::int(out_elem, dims, out_int)
    };
    Ok(EvalReport {
        images: n,
        correct,
        predictions,
        outputs,
        compile_seconds,
        run_seconds,
    })
}
