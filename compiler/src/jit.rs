//! Compile a model to native code in this process and call it from Rust, with
//! the Cranelift backend (the default) or the LLVM one
//! ([`JitModel::compile_with`]). Both go through the one pipeline
//! ([`crate::compile::compile`]), optimizer included.
//!
//! ```no_run
//! use bnnc::jit::JitModel;
//! let model = bnnc_ir::Model::load(std::path::Path::new("examples/mnist_mlp.ir"))?;
//! let jit = JitModel::compile(&model)?;
//! let x = bnnc_ir::Tensor::f32(vec![1, 784], vec![0.0; 784]);
//! let logits = jit.run(&[x])?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use bnnc_ir::{ElemType, Model, Tensor, TensorData};
use bnnc_runtime::mem::{self, try_collect, try_zeroed, AllocError, OutOfMemory};

use crate::compile::{Backend, CompileError, CompileOptions, CompiledModule};
use crate::lower::{status, IoDesc, Storage};

/// Why a JIT'd model could not run.
#[derive(Debug, thiserror::Error)]
pub enum JitError {
    #[error(transparent)]
    Input(#[from] bnnc_runtime::RunError),
    #[error("batch {batch} is larger than the model's maximum {max}")]
    BatchTooLarge { batch: usize, max: u64 },
    /// The buffers of a run need more memory than it may use
    /// ([`mem::budget`]), or allocating one failed.
    #[error(transparent)]
    OutOfMemory(#[from] OutOfMemory),
    #[error("the compiled model returned status {0}")]
    Status(i32),
    #[error("{what} holds {have} bytes; the model needs {need}")]
    BufferTooSmall { what: String, have: u64, need: u64 },
    #[error("{inputs} input and {outputs} output buffers given; the model has {want_inputs} and {want_outputs}")]
    BufferCount {
        inputs: usize,
        outputs: usize,
        want_inputs: usize,
        want_outputs: usize,
    },
}

type RunV = unsafe extern "C" fn(*const *const u8, *const *mut u8, *mut u8, u64) -> i32;

/// The code of a JIT'd model (either backend's), kept alive.
enum Code {
    Cranelift(Box<bnnc_cranelift::Jit>),
    Llvm(bnnc_llvm::Jit),
}

impl Code {
    fn function(&self, name: &str) -> Option<*const u8> {
        match self {
            Code::Cranelift(j) => j.function(name),
            Code::Llvm(j) => j.function(name),
        }
    }
}

/// A model compiled into this process.
pub struct JitModel {
    compiled: CompiledModule,
    /// Keeps the code alive; `run_v` points into it.
    _jit: Code,
    run_v: RunV,
    /// The model's graph and types, to check inputs (its constants are
    /// compiled into the code and not kept).
    model: Model,
}

impl std::fmt::Debug for JitModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JitModel")
            .field("name", &self.compiled.lowered.name)
            .field("backend", &self.compiled.backend)
            .field("target", &self.compiled.target.to_string())
            .finish()
    }
}

// SAFETY: the generated code is immutable after finalisation and reentrant (it
// writes only the buffers passed to it), so sharing it between threads is sound.
unsafe impl Send for JitModel {}
unsafe impl Sync for JitModel {}

impl JitModel {
    /// Compiles `model` with Cranelift for this machine's CPU (every
    /// feature it has), optimized: [`CompileOptions::host`]`(Cranelift)`.
    pub fn compile(model: &Model) -> Result<JitModel, CompileError> {
        JitModel::compile_with(model, &CompileOptions::host(Backend::Cranelift)?)
    }

    /// Compiles `model` through the pipeline ([`crate::compile::compile`])
    /// with `opts`, whose target must be runnable here. `opts.emit` may be
    /// empty: the JIT needs only the kir.
    pub fn compile_with(model: &Model, opts: &CompileOptions) -> Result<JitModel, CompileError> {
        let compiled = crate::compile::compile(model, opts)?;
        let target = &opts.target;
        let jit = match opts.backend {
            Backend::Cranelift => Code::Cranelift(Box::new(
                bnnc_cranelift::Jit::new(&compiled.lowered.module, target)
                    .map_err(CompileError::Backend)?,
            )),
            Backend::Llvm => Code::Llvm(
                bnnc_llvm::Jit::new(&compiled.lowered.module, target)
                    .map_err(CompileError::Llvm)?,
            ),
        };
        let entry = compiled.lowered.entry_v();
        let ptr = jit
            .function(&entry)
            .ok_or_else(|| CompileError::Internal(format!("JIT has no `{entry}`")))?;
        // SAFETY: `entry` was generated with exactly this signature
        // (inputs**, outputs**, workspace*, batch) -> i32 in the C ABI.
        let run_v = unsafe { std::mem::transmute::<*const u8, RunV>(ptr) };
        Ok(JitModel {
            compiled,
            _jit: jit,
            run_v,
            model: Model {
                path: model.path.clone(),
                graph: model.graph.clone(),
                types: model.types.clone(),
                consts: vec![None; model.consts.len()],
            },
        })
    }

    pub fn compiled(&self) -> &CompiledModule {
        &self.compiled
    }

    pub fn backend(&self) -> Backend {
        self.compiled.backend
    }

    /// Runs the model: inputs as for the reference interpreter, outputs typed as
    /// the model declares (b1 outputs unpacked to ±1). Before allocating, the
    /// workspace and then everything the run allocates
    /// ([`JitModel::memory_needed`]) are checked against [`mem::budget`];
    /// that, and an allocation that fails, is a [`JitError::OutOfMemory`].
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, JitError> {
        let batch = bnnc_runtime::check_inputs(&self.model, inputs)?;
        let l = &self.compiled.lowered;
        let ws_bytes = self.workspace_bytes(batch)?;
        let who = format!("batch {batch}");
        mem::check(Some(ws_bytes), &who, "of workspace")?;
        mem::check(
            self.memory_needed(batch),
            &who,
            "for its workspace, inputs and outputs",
        )?;
        let failed =
            |what: String| move |e| OutOfMemory::alloc_failed(format!("batch {batch}"), what, e);
        let mut in_bufs = Vec::with_capacity(inputs.len());
        for (t, d) in inputs.iter().zip(&l.inputs) {
            in_bufs.push(try_to_words(t, d).map_err(failed(format!("for input `{}`", d.name)))?);
        }
        let mut out_bufs = Vec::with_capacity(l.outputs.len());
        for d in &l.outputs {
            let words = words_of(d.bytes(batch));
            out_bufs.push(try_zeroed(words).map_err(failed(format!("for output `{}`", d.name)))?);
        }
        let mut ws =
            try_zeroed(words_of(ws_bytes).max(1)).map_err(failed("of workspace".to_string()))?;
        let ins: Vec<&[u64]> = in_bufs.iter().map(Vec::as_slice).collect();
        let mut outs: Vec<&mut [u64]> = out_bufs.iter_mut().map(Vec::as_mut_slice).collect();
        self.run_words(&ins, &mut outs, &mut ws, batch)?;
        drop((ws, in_bufs));
        let mut results = Vec::with_capacity(out_bufs.len());
        for (b, d) in out_bufs.iter().zip(&l.outputs) {
            results.push(
                try_from_words(b, d, batch).map_err(failed(format!("for output `{}`", d.name)))?,
            );
        }
        Ok(results)
    }

    /// The workspace bytes at `batch`, or [`JitError::BatchTooLarge`].
    fn workspace_bytes(&self, batch: usize) -> Result<u64, JitError> {
        let w = &self.compiled.lowered.workspace;
        w.bytes(batch)
            .filter(|_| batch as u64 <= w.max_batch)
            .ok_or(JitError::BatchTooLarge {
                batch,
                max: w.max_batch,
            })
    }

    /// The bytes [`JitModel::run`] allocates at `batch`: the workspace, the
    /// inputs and outputs in the code's layout, and the output tensors (4
    /// bytes per element). `None` above the model's maximum batch or when the
    /// count overflows.
    pub fn memory_needed(&self, batch: usize) -> Option<u64> {
        let l = &self.compiled.lowered;
        let mut total = self.workspace_bytes(batch).ok()?;
        for d in l.inputs.iter().chain(&l.outputs) {
            total = total.checked_add(words_of(d.bytes(batch)) as u64 * 8)?;
        }
        for d in &l.outputs {
            total = total.checked_add((d.ty.numel(batch) as u64).checked_mul(4)?)?;
        }
        Some(total)
    }
}

/// Words holding `bytes` bytes.
fn words_of(bytes: u64) -> usize {
    usize::try_from(bytes.div_ceil(8)).unwrap_or(usize::MAX)
}

impl JitModel {
    /// Runs the compiled code on buffers already in its layout (see
    /// [`to_words`], [`from_words`]): the entry point alone, for timing.
    /// Every buffer must hold at least the bytes the layout needs at
    /// `batch` (inputs and outputs in model order; the workspace
    /// `workspace.bytes(batch)`), else an error.
    pub fn run_words(
        &self,
        inputs: &[&[u64]],
        outputs: &mut [&mut [u64]],
        workspace: &mut [u64],
        batch: usize,
    ) -> Result<(), JitError> {
        let l = &self.compiled.lowered;
        let ws_bytes = l
            .workspace
            .bytes(batch)
            .filter(|_| batch as u64 <= l.workspace.max_batch)
            .ok_or(JitError::BatchTooLarge {
                batch,
                max: l.workspace.max_batch,
            })?;
        let short = |what: String, have: usize, need: u64| JitError::BufferTooSmall {
            what,
            have: have as u64 * 8,
            need,
        };
        if inputs.len() != l.inputs.len() || outputs.len() != l.outputs.len() {
            return Err(JitError::BufferCount {
                inputs: inputs.len(),
                outputs: outputs.len(),
                want_inputs: l.inputs.len(),
                want_outputs: l.outputs.len(),
            });
        }
        for (b, d) in inputs.iter().zip(&l.inputs) {
            if (b.len() as u64) * 8 < d.bytes(batch) {
                return Err(short(
                    format!("input `{}`", d.name),
                    b.len(),
                    d.bytes(batch),
                ));
            }
        }
        for (b, d) in outputs.iter().zip(&l.outputs) {
            if (b.len() as u64) * 8 < d.bytes(batch) {
                return Err(short(
                    format!("output `{}`", d.name),
                    b.len(),
                    d.bytes(batch),
                ));
            }
        }
        if (workspace.len() as u64) * 8 < ws_bytes {
            return Err(short("workspace".into(), workspace.len(), ws_bytes));
        }
        let in_ptrs: Vec<*const u8> = inputs.iter().map(|b| b.as_ptr() as *const u8).collect();
        let out_ptrs: Vec<*mut u8> = outputs
            .iter_mut()
            .map(|b| b.as_mut_ptr() as *mut u8)
            .collect();
        // The code reads no null pointer: an empty workspace slice still has
        // a dangling, non-null pointer, and is only passed when no bytes are
        // needed.
        // SAFETY: every buffer has at least the size the lowering's layout
        // requires for `batch` samples (checked above), and the code writes
        // only outputs and the workspace.
        let code = unsafe {
            (self.run_v)(
                in_ptrs.as_ptr(),
                out_ptrs.as_ptr(),
                workspace.as_mut_ptr() as *mut u8,
                batch as u64,
            )
        };
        if code != status::OK {
            return Err(JitError::Status(code));
        }
        Ok(())
    }
}

/// A tensor in the generated code's layout, as 8-byte words (for alignment;
/// at least one word). Like `vec!`, aborts when the memory cannot be
/// allocated; [`try_to_words`] returns an error instead.
pub fn to_words(t: &Tensor, d: &IoDesc) -> Vec<u64> {
    try_to_words(t, d).unwrap_or_else(|e| alloc_failed(e))
}

/// Aborts as a failed `vec!` allocation does.
fn alloc_failed(e: AllocError) -> ! {
    let words = usize::try_from(e.bytes / 8).unwrap_or(usize::MAX);
    std::alloc::handle_alloc_error(
        std::alloc::Layout::array::<u64>(words).unwrap_or(std::alloc::Layout::new::<u64>()),
    )
}

/// [`to_words`], or the error of allocating the buffer.
pub fn try_to_words(t: &Tensor, d: &IoDesc) -> Result<Vec<u64>, AllocError> {
    // Two 4-byte elements per word, the first in the low half.
    fn halves(v: impl ExactSizeIterator<Item = u32>) -> Result<Vec<u64>, AllocError> {
        let n = v.len().div_ceil(2).max(1);
        let mut words = try_zeroed(n)?;
        for (i, x) in v.enumerate() {
            words[i / 2] |= u64::from(x) << (32 * (i % 2));
        }
        Ok(words)
    }
    match (&t.data, d.storage) {
        (TensorData::F32(v), _) => halves(v.iter().map(|x| x.to_bits())),
        (TensorData::Int(v), Storage::B1 { channels, .. }) => {
            let (rows, wpr) = (v.len() / channels.max(1), Storage::words(channels));
            let n = rows
                .checked_mul(wpr)
                .ok_or(AllocError { bytes: u64::MAX })?;
            let mut words = try_zeroed(n.max(1))?;
            if channels > 0 {
                for (i, &x) in v.iter().enumerate().take(rows * channels) {
                    let (r, c) = (i / channels, i % channels);
                    if x < 0 {
                        words[r * wpr + c / 64] |= 1u64 << (c % 64);
                    }
                }
            }
            Ok(words)
        }
        // Rows of the last axis, as the code packs them.
        (TensorData::Bits(w), Storage::B1 { .. }) => {
            let mut words = try_collect(w.len().max(1), w.iter().copied())?;
            if words.is_empty() {
                words.push(0);
            }
            Ok(words)
        }
        (TensorData::Int(v), _) => halves(v.iter().map(|&x| x as u32)),
        (TensorData::Bits(_), _) => match t.as_int() {
            Some(v) => halves(v.iter().map(|&x| x as u32)),
            None => Ok(vec![0]),
        },
    }
}

/// The inverse of [`to_words`] for an output of `batch` samples (`words`
/// must hold its bytes). Like `vec!`, aborts when the memory cannot be
/// allocated; [`try_from_words`] returns an error instead.
pub fn from_words(words: &[u64], d: &IoDesc, batch: usize) -> Tensor {
    try_from_words(words, d, batch).unwrap_or_else(|e| alloc_failed(e))
}

/// [`from_words`], or the error of allocating the tensor.
pub fn try_from_words(words: &[u64], d: &IoDesc, batch: usize) -> Result<Tensor, AllocError> {
    let dims = d.ty.dims(batch);
    let n: usize = dims.iter().product();
    let half = |i: usize| (words[i / 2] >> (32 * (i % 2))) as u32;
    Ok(match d.storage {
        Storage::F32 => Tensor::f32(
            dims,
            try_collect(n, (0..n).map(|i| f32::from_bits(half(i))))?,
        ),
        Storage::I32 => Tensor::int(
            ElemType::I32,
            dims,
            try_collect(n, (0..n).map(|i| half(i) as i32))?,
        ),
        Storage::B1 { channels, .. } => {
            let rows = n / channels.max(1);
            let wpr = Storage::words(channels);
            let bits = (0..rows).flat_map(|r| {
                (0..channels)
                    .map(move |c| 1 - 2 * ((words[r * wpr + c / 64] >> (c % 64)) & 1) as i32)
            });
            Tensor::int(ElemType::B1, dims, try_collect(n, bits)?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bnnc_runtime::mem::Refusal;
    use std::path::Path;

    fn compile(src: &str) -> (Model, JitModel) {
        let g = bnnc_ir::text::parse(src).unwrap();
        let model = Model::from_graph(g, None, Path::new("t.ir")).unwrap();
        let opts = CompileOptions::host(Backend::Cranelift)
            .unwrap()
            .opt_level(0);
        let jit = JitModel::compile_with(&model, &opts).unwrap();
        (model, jit)
    }

    #[test]
    fn a_workspace_too_large_for_memory_is_an_error() {
        // Per sample, `a` takes 2^30 f32 (4 GiB) of workspace: 4 PiB at batch
        // 2^20, more than any machine holds or addresses.
        let (_, jit) = compile(
            "model big\ninput x: f32[N, 1]\na = replicate(x, times=1073741824)\n\
             y = relu(a)\noutput y\n",
        );
        let batch = 1 << 20;
        let x = Tensor::f32(vec![batch, 1], vec![1.0; batch]);
        let e = jit.run(&[x]).unwrap_err();
        let JitError::OutOfMemory(e) = e else {
            panic!("{e:?}");
        };
        assert!(
            matches!(e.why, Refusal::OverBudget(_) | Refusal::AllocFailed),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .starts_with("batch 1048576 needs 4.5 PB of workspace, "),
            "{e}"
        );
        assert!(jit.memory_needed(batch).unwrap() > 1 << 52);
    }

    #[test]
    fn packed_b1_inputs_run_as_their_values() {
        let (model, jit) =
            compile("model bits\ninput x: b1[N, 70]\ny = sign(x)\nz = relu(x)\noutput y, z\n");
        let v: Vec<i32> = (0..3 * 70)
            .map(|i| if i % 3 == 0 { -1 } else { 1 })
            .collect();
        let ints = Tensor::int(ElemType::B1, vec![3, 70], v);
        let packed = ints.clone().into_packed();
        assert!(packed.as_bits().is_some());
        let want = bnnc_runtime::run(&model, std::slice::from_ref(&ints)).unwrap();
        assert_eq!(
            bnnc_runtime::run(&model, std::slice::from_ref(&packed)).unwrap(),
            want
        );
        assert_eq!(jit.run(&[ints]).unwrap(), want);
        assert_eq!(jit.run(&[packed]).unwrap(), want);
    }
}
