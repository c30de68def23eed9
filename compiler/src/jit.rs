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

use crate::compile::{Backend, CompileError, CompileOptions, CompiledModule};
use crate::lower::{pack_bits, status, unpack_bits, IoDesc, Storage};

/// Why a JIT'd model could not run.
#[derive(Debug, thiserror::Error)]
pub enum JitError {
    #[error(transparent)]
    Input(#[from] bnnc_runtime::RunError),
    #[error("batch {batch} is larger than the model's maximum {max}")]
    BatchTooLarge { batch: usize, max: u64 },
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
            model: model.clone(),
        })
    }

    pub fn compiled(&self) -> &CompiledModule {
        &self.compiled
    }

    pub fn backend(&self) -> Backend {
        self.compiled.backend
    }

    /// Runs the model: inputs as for the reference interpreter, outputs typed as
    /// the model declares (b1 outputs unpacked to ±1).
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, JitError> {
        let batch = bnnc_runtime::check_inputs(&self.model, inputs)?;
        let l = &self.compiled.lowered;
        let ws_bytes = l
            .workspace
            .bytes(batch)
            .filter(|_| batch as u64 <= l.workspace.max_batch)
            .ok_or(JitError::BatchTooLarge {
                batch,
                max: l.workspace.max_batch,
            })?;
        let in_bufs: Vec<Vec<u64>> = inputs
            .iter()
            .zip(&l.inputs)
            .map(|(t, d)| to_words(t, d))
            .collect();
        let mut out_bufs: Vec<Vec<u64>> = l
            .outputs
            .iter()
            .map(|d| vec![0u64; (d.bytes(batch) as usize).div_ceil(8)])
            .collect();
        let mut ws = vec![0u64; (ws_bytes as usize).div_ceil(8).max(1)];
        let ins: Vec<&[u64]> = in_bufs.iter().map(Vec::as_slice).collect();
        let mut outs: Vec<&mut [u64]> = out_bufs.iter_mut().map(Vec::as_mut_slice).collect();
        self.run_words(&ins, &mut outs, &mut ws, batch)?;
        Ok(out_bufs
            .iter()
            .zip(&l.outputs)
            .map(|(b, d)| from_words(b, d, batch))
            .collect())
    }
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

/// A tensor in the generated code's layout, as 8-byte words (for alignment).
pub fn to_words(t: &Tensor, d: &IoDesc) -> Vec<u64> {
    let bytes: Vec<u8> = match (&t.data, d.storage) {
        (TensorData::F32(v), _) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        (TensorData::Int(v), Storage::B1 { channels, .. }) => {
            let rows = v.len() / channels.max(1);
            pack_bits(v, rows, channels)
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect()
        }
        (TensorData::Int(v), _) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    };
    let mut words = vec![0u64; bytes.len().div_ceil(8).max(1)];
    for (i, b) in bytes.iter().enumerate() {
        words[i / 8] |= (*b as u64) << (8 * (i % 8));
    }
    words
}

/// The inverse of [`to_words`] for an output of `batch` samples.
pub fn from_words(words: &[u64], d: &IoDesc, batch: usize) -> Tensor {
    let dims = d.ty.dims(batch);
    let n: usize = dims.iter().product();
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    match d.storage {
        Storage::F32 => Tensor::f32(
            dims,
            bytes[..n * 4]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        Storage::I32 => Tensor::int(
            ElemType::I32,
            dims,
            bytes[..n * 4]
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        Storage::B1 { channels, .. } => {
            let rows = n / channels.max(1);
            Tensor::int(ElemType::B1, dims, unpack_bits(words, rows, channels))
        }
    }
}
