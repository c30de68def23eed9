//! The interface of a compiled model, described once.
//!
//! A model compiled by bnnc is an object file that exports exactly four C
//! functions and nothing else. [`ModelAbi`] is everything a caller needs to
//! call them: symbol names, the order, C type and byte size of every buffer,
//! the workspace, the status codes and the CPU the code requires. It is built
//! from the lowering's result ([`Lowered`]) and the [`Target`] the object is
//! compiled for, and it is the only place these are derived: the C header
//! ([`crate::header`]) and the Rust bindings of `bnnc-build` are two renderings
//! of one [`ModelAbi`] and compute no name, identifier or size of their own.
//!
//! # The contract
//!
//! For a model named `m` ([`ModelAbi::name`]):
//!
//! - `int32_t m_run(const T *in.., T *out.., void *workspace, size_t batch)`
//!   ([`EntryPoints::run`]): one pointer per input, then one per output, in
//!   the model's declaration order ([`ModelAbi::tensors`]), each to a buffer of
//!   [`TensorAbi::bytes`]`(batch)` bytes laid out as [`TensorAbi`] says; then
//!   the workspace, then the batch size.
//! - `int32_t m_run_v(const void *const *inputs, void *const *outputs, void
//!   *workspace, size_t batch)` ([`EntryPoints::run_v`]): the same, with the
//!   input and output pointers in two arrays (declaration order).
//! - `int32_t m_run_checked(const void *const *inputs, void *const *outputs,
//!   void *workspace, size_t workspace_bytes, size_t batch)`
//!   ([`EntryPoints::run_checked`]): `m_run_v` that also refuses a workspace of
//!   fewer than `m_workspace_size(batch)` bytes. With the other two, a smaller
//!   workspace is undefined behaviour (the code writes past its end).
//! - `size_t m_workspace_size(size_t batch)` ([`EntryPoints::workspace_size`]):
//!   [`Workspace::bytes`]`(batch)`, or `SIZE_MAX` above [`Workspace::max_batch`].
//!
//! The run functions return a [`StatusCode`] ([`STATUS_CODES`]). When several
//! apply, the first in this order wins, and nothing is written:
//! `ERR_BATCH_TOO_LARGE` when `batch` exceeds the maximum;
//! `ERR_NULL_POINTER` when a pointer array, an input or output pointer, or a
//! workspace of nonzero size is null (a null workspace is fine when its size is
//! 0; input and output pointers must be non-null even when their buffers are 0
//! bytes); `ERR_WORKSPACE_TOO_SMALL` (`m_run_checked` only) when
//! `workspace_bytes` is less than the size needed. Otherwise they compute the
//! outputs and return `OK`. Batch 0 is a valid call: it writes the unbatched
//! outputs, and the batched ones have 0 bytes. They are reentrant: they write no global state, allocate
//! nothing, and keep every intermediate tensor in the caller's workspace
//! (any alignment; 64 bytes is best). Inputs are only read; outputs and the
//! workspace must not overlap each other or the inputs.
//!
//! The object uses no instruction outside its [`Target`]: a CPU that lacks one
//! of [`ModelAbi::features`] must not call it.

use bnnc_ir::{Dim, TensorType};
use bnnc_kir::target::Target;

use crate::lower::{sample_elems, status, IoDesc, Lowered, Storage, Workspace};

/// Whether the entry points read or write a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// A model input: read only, passed as a pointer to const.
    Input,
    /// A model output: written, never read.
    Output,
}

impl Direction {
    /// `"input"` or `"output"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Input => "input",
            Direction::Output => "output",
        }
    }
}

/// The C type of a buffer's elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    /// `float` (IEEE 754 binary32), for `f32` tensors.
    F32,
    /// `int32_t`, for `i32` tensors.
    I32,
    /// `uint64_t` words of packed bits, for `b1` tensors (see [`Packing`]).
    PackedU64,
}

impl Elem {
    /// The C type: `float`, `int32_t` or `uint64_t`.
    pub fn c_type(self) -> &'static str {
        match self {
            Elem::F32 => "float",
            Elem::I32 => "int32_t",
            Elem::PackedU64 => "uint64_t",
        }
    }

    /// The Rust type of the same size and representation: `f32`, `i32` or `u64`.
    pub fn rust_type(self) -> &'static str {
        match self {
            Elem::F32 => "f32",
            Elem::I32 => "i32",
            Elem::PackedU64 => "u64",
        }
    }

    /// Bytes per element: 4, 4 or 8.
    pub fn bytes(self) -> u64 {
        match self {
            Elem::F32 | Elem::I32 => 4,
            Elem::PackedU64 => 8,
        }
    }
}

/// The layout of a bit-packed (`b1`) tensor: each sample is `rows` rows of
/// `channels` bits (the last dimension), each row `words_per_row =
/// ceil(channels / 64)` little-endian `uint64_t` words; channel `c` is bit
/// `c % 64` of word `c / 64`, a set bit means -1, a clear bit +1, and unused
/// tail bits are 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packing {
    /// Rows per sample: the product of the dimensions between the batch and
    /// the last one.
    pub rows: usize,
    /// Bits per row: the last dimension.
    pub channels: usize,
    /// `uint64_t` words per row.
    pub words_per_row: usize,
}

/// One input or output buffer of the entry points.
///
/// A batched tensor (leading dimension `N`) holds `batch` samples back to
/// back, each [`TensorAbi::sample_bytes`] bytes; an unbatched one holds the
/// whole tensor once, whatever the batch. `f32` and `i32` samples are
/// row-major (NHWC); `b1` samples are packed as [`TensorAbi::packing`] says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorAbi {
    /// Input or output.
    pub direction: Direction,
    /// Position among the inputs, or among the outputs (declaration order).
    pub index: usize,
    /// The value's name in the model.
    pub name: String,
    /// [`c_ident`] of the name.
    pub c_ident: String,
    /// The parameter's name in the header's prototype of `<model>_run`:
    /// `in_<c_ident>` or `out_<c_ident>`, with `_<k>` appended (`k` its
    /// position among all parameters) where it would repeat an earlier one.
    /// No such name is a C keyword, `workspace` or `batch`.
    pub c_param: String,
    /// The value's type in the model.
    pub ty: TensorType,
    /// The element type of the buffer.
    pub elem: Elem,
    /// The packed layout, for `b1` tensors (`elem` is [`Elem::PackedU64`]).
    pub packing: Option<Packing>,
    /// Whether the first dimension is the batch `N`.
    pub batched: bool,
    /// The dimensions after the batch (all of them when unbatched).
    pub shape: Vec<usize>,
    /// Elements of [`TensorAbi::elem`] per sample (per call when unbatched):
    /// the product of [`TensorAbi::shape`], or `rows * words_per_row` words
    /// when packed.
    pub sample_len: usize,
    /// Bytes per sample (per call when unbatched): `sample_len` elements.
    pub sample_bytes: u64,
}

impl TensorAbi {
    fn new(direction: Direction, index: usize, d: &IoDesc, c_param: String) -> TensorAbi {
        let batched = d.ty.is_batched();
        let skip = usize::from(batched);
        let shape = d.ty.shape[skip..]
            .iter()
            .map(|dim| match dim {
                Dim::Fixed(n) => *n,
                Dim::Batch => 1,
            })
            .collect();
        let (elem, packing, sample_len) = match d.storage {
            Storage::F32 => (Elem::F32, None, sample_elems(&d.ty)),
            Storage::I32 => (Elem::I32, None, sample_elems(&d.ty)),
            Storage::B1 { rows, channels } => {
                let words_per_row = Storage::words(channels);
                let packing = Packing {
                    rows,
                    channels,
                    words_per_row,
                };
                (Elem::PackedU64, Some(packing), rows * words_per_row)
            }
        };
        TensorAbi {
            direction,
            index,
            name: d.name.clone(),
            c_ident: c_ident(&d.name),
            c_param,
            ty: d.ty.clone(),
            elem,
            packing,
            batched,
            shape,
            sample_len,
            sample_bytes: d.storage.sample_bytes(sample_elems(&d.ty)),
        }
    }

    /// Whether this is an input.
    pub fn is_input(&self) -> bool {
        self.direction == Direction::Input
    }

    /// Elements of the buffer for `batch` samples (`None` on overflow).
    pub fn len(&self, batch: usize) -> Option<usize> {
        if self.batched {
            self.sample_len.checked_mul(batch)
        } else {
            Some(self.sample_len)
        }
    }

    /// Whether the buffer holds no element for any batch.
    pub fn is_empty(&self) -> bool {
        self.sample_len == 0
    }

    /// Bytes of the buffer for `batch` samples: `sample_bytes * batch` when
    /// batched, else `sample_bytes` (`None` on overflow).
    pub fn bytes(&self, batch: usize) -> Option<u64> {
        if self.batched {
            self.sample_bytes.checked_mul(batch as u64)
        } else {
            Some(self.sample_bytes)
        }
    }
}

/// The exported symbols of a compiled model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryPoints {
    /// `<model>_run`: buffers as separate arguments.
    pub run: String,
    /// `<model>_run_v`: buffers as two pointer arrays.
    pub run_v: String,
    /// `<model>_run_checked`: `run_v` with the workspace's size in bytes.
    pub run_checked: String,
    /// `<model>_workspace_size`: workspace bytes for a batch.
    pub workspace_size: String,
}

/// What a status code means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusKind {
    /// The call ran.
    Ok,
    /// A required pointer (a pointer array, an input, an output, or a
    /// workspace of nonzero size) is null; nothing was written.
    NullPointer,
    /// The batch exceeds [`Workspace::max_batch`]; nothing was written.
    BatchTooLarge,
    /// The workspace's size given to `<model>_run_checked` is smaller than the
    /// batch needs; nothing was written.
    WorkspaceTooSmall,
}

/// One value the run entry points return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusCode {
    /// What it means.
    pub kind: StatusKind,
    /// Its name after the model's prefix: `OK`, `ERR_NULL_POINTER`,
    /// `ERR_BATCH_TOO_LARGE`.
    pub name: &'static str,
    /// The `int32_t` returned.
    pub value: i32,
}

/// Every status code, success first. Values never change between releases.
pub const STATUS_CODES: [StatusCode; 4] = [
    StatusCode {
        kind: StatusKind::Ok,
        name: "OK",
        value: status::OK,
    },
    StatusCode {
        kind: StatusKind::NullPointer,
        name: "ERR_NULL_POINTER",
        value: status::NULL_POINTER,
    },
    StatusCode {
        kind: StatusKind::BatchTooLarge,
        name: "ERR_BATCH_TOO_LARGE",
        value: status::BATCH_TOO_LARGE,
    },
    StatusCode {
        kind: StatusKind::WorkspaceTooSmall,
        name: "ERR_WORKSPACE_TOO_SMALL",
        value: status::WORKSPACE_TOO_SMALL,
    },
];

/// The interface of one compiled model (see the module documentation for
/// the contract).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelAbi {
    /// The model's name (the `model` line, non-alphanumerics as `_`): the
    /// prefix of its symbols.
    pub name: String,
    /// [`c_ident`] of the name.
    pub c_ident: String,
    /// The name in upper case: the prefix of the header's macros.
    pub macro_prefix: String,
    /// The exported symbols.
    pub entry: EntryPoints,
    /// The inputs, in declaration order.
    pub inputs: Vec<TensorAbi>,
    /// The outputs, in declaration order.
    pub outputs: Vec<TensorAbi>,
    /// The workspace a call needs: `fixed + per_sample * batch` bytes, for
    /// batches up to `max_batch`.
    pub workspace: Workspace,
    /// The status codes of the run entry points ([`STATUS_CODES`]).
    pub status: &'static [StatusCode],
    /// The target the object is compiled for.
    pub target: Target,
    /// The CPU features the object may use ([`Target::features`], sorted):
    /// every one is required of the CPU that calls it.
    pub features: Vec<String>,
}

impl ModelAbi {
    /// The interface of `lowered` compiled for `target`.
    pub fn new(lowered: &Lowered, target: &Target) -> ModelAbi {
        let mut params = c_param_names(lowered).into_iter();
        let mut tensors = |direction, list: &[IoDesc]| -> Vec<TensorAbi> {
            list.iter()
                .enumerate()
                .map(|(index, d)| {
                    let param = params.next().unwrap_or_default();
                    TensorAbi::new(direction, index, d, param)
                })
                .collect()
        };
        let inputs = tensors(Direction::Input, &lowered.inputs);
        let outputs = tensors(Direction::Output, &lowered.outputs);
        ModelAbi {
            name: lowered.name.clone(),
            c_ident: c_ident(&lowered.name),
            macro_prefix: lowered.name.to_uppercase(),
            entry: EntryPoints {
                run: lowered.entry(),
                run_v: lowered.entry_v(),
                run_checked: lowered.entry_checked(),
                workspace_size: lowered.workspace_fn(),
            },
            inputs,
            outputs,
            workspace: lowered.workspace,
            status: &STATUS_CODES,
            target: target.clone(),
            features: target.features.iter().cloned().collect(),
        }
    }

    /// Inputs then outputs: the buffers of `<model>_run`, in argument order.
    pub fn tensors(&self) -> impl Iterator<Item = &TensorAbi> {
        self.inputs.iter().chain(&self.outputs)
    }

    /// Whether any input or output is bit-packed.
    pub fn has_packed(&self) -> bool {
        self.tensors().any(|t| t.packing.is_some())
    }
}

/// The header's parameter names of `<model>_run`, inputs then outputs (see
/// [`TensorAbi::c_param`]).
fn c_param_names(l: &Lowered) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let raw = l
        .inputs
        .iter()
        .map(|d| format!("in_{}", c_ident(&d.name)))
        .chain(
            l.outputs
                .iter()
                .map(|d| format!("out_{}", c_ident(&d.name))),
        );
    raw.enumerate()
        .map(|(k, n)| {
            let mut name = n;
            if !seen.insert(name.clone()) {
                name = format!("{name}_{k}");
                seen.insert(name.clone());
            }
            name
        })
        .collect()
}

/// A C identifier for a value name: characters other than ASCII letters,
/// digits and `_` become `_`, and a leading digit gets a `_` prefix.
pub fn c_ident(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.chars().next().is_some_and(|c| c.is_ascii_digit()) {
        format!("_{s}")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bnnc_ir::Model;
    use std::path::Path;

    fn abi(src: &str, target: &str) -> ModelAbi {
        let graph = Model::parse_checked(src, Path::new("t.ir")).unwrap();
        let model = Model::from_graph(graph, None, Path::new("t.ir")).unwrap();
        let t = Target::parse(target).unwrap();
        let l = crate::lower::lower(&model, &t).unwrap();
        ModelAbi::new(&l, &t)
    }

    #[test]
    fn describes_buffers_symbols_and_features() {
        let a = abi(
            "model m.x\ninput x.0: f32[N, 2, 3]\ninput b: b1[4, 70]\n\
             y = relu(x.0)\ns = sign(b)\noutput y\noutput s\noutput x.0\n",
            "x86_64+popcnt",
        );
        assert_eq!(a.name, "m_x");
        assert_eq!(a.macro_prefix, "M_X");
        assert_eq!(a.entry.run, "m_x_run");
        assert_eq!(a.entry.run_v, "m_x_run_v");
        assert_eq!(a.entry.run_checked, "m_x_run_checked");
        assert_eq!(a.entry.workspace_size, "m_x_workspace_size");
        assert_eq!(a.features, ["popcnt"]);
        let x = &a.inputs[0];
        assert_eq!((x.c_ident.as_str(), x.c_param.as_str()), ("x_0", "in_x_0"));
        assert_eq!(
            (x.elem, x.batched, &x.shape[..]),
            (Elem::F32, true, &[2, 3][..])
        );
        assert_eq!((x.sample_len, x.sample_bytes), (6, 24));
        assert_eq!((x.len(5), x.bytes(5)), (Some(30), Some(120)));
        let b = &a.inputs[1];
        let packing = Packing {
            rows: 4,
            channels: 70,
            words_per_row: 2,
        };
        assert_eq!((b.elem, b.packing), (Elem::PackedU64, Some(packing)));
        assert_eq!(
            (b.sample_len, b.sample_bytes, b.bytes(9)),
            (8, 64, Some(64))
        );
        let names: Vec<&str> = a.tensors().map(|t| t.c_param.as_str()).collect();
        assert_eq!(names, ["in_x_0", "in_b", "out_y", "out_s", "out_x_0"]);
        assert!(a.has_packed());
        assert_eq!(c_ident("9a"), "_9a");
        let codes: Vec<(&str, i32)> = a.status.iter().map(|c| (c.name, c.value)).collect();
        assert_eq!(
            codes,
            [
                ("OK", 0),
                ("ERR_NULL_POINTER", 1),
                ("ERR_BATCH_TOO_LARGE", 2),
                ("ERR_WORKSPACE_TOO_SMALL", 3)
            ]
        );
    }
}
