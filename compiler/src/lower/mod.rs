//! Lowering: a verified graph becomes a kir module.
//!
//! 1. **Constant folding.** Every value computed from weights and constants only
//!    is evaluated once, here, by the reference interpreter (so `sign(@w)`
//!    becomes a packed binary constant).
//! 2. **Kernels.** Each remaining node becomes one kir function (a loop nest)
//!    over buffers: `f32` and `i32` tensors are row-major; `b1` tensors stay
//!    bit-packed (channels innermost, 64 per little-endian word, bit 1 = -1,
//!    tail bits 0). A kernel that needs the numeric values of a `b1` tensor
//!    reads an unpacked `i32` copy made once.
//!    A `replicate` read only by conv/dense kernels (or only by thresholds)
//!    is never stored: those kernels read its source once per replica with
//!    that replica's weights (or thresholds); a threshold over a replicated
//!    binary accumulator is computed inside the conv/dense kernel.
//! 3. **Memory plan.** Every intermediate buffer gets an offset in one
//!    caller-provided workspace: `fixed + per_sample * batch` bytes, with
//!    buffers whose lifetimes do not overlap sharing space (first fit).
//! 4. **Entry points.** `<model>_run(inputs.., outputs.., workspace, batch)`,
//!    `<model>_run_v(inputs[], outputs[], workspace, batch)` (pointer arrays),
//!    `<model>_run_checked(inputs[], outputs[], workspace, workspace_bytes,
//!    batch)` (the same, refusing a workspace smaller than needed), and
//!    `<model>_workspace_size(batch)`, all exported; everything else is local.
//!
//! Ternary values are lowered only as the weights of a conv/dense over `b1`
//! (or `f32`) inputs; n-bit, int8 and other ternary tensors are not lowered
//! yet: they are reported as [`LowerError::Unsupported`], never compiled
//! wrongly.

mod emit;
pub mod kernel;
mod kernels;

use std::collections::HashMap;

use bnnc_ir::{ElemType, Model, Op, Tensor, TensorData, TensorType, ValueId};
use bnnc_kir::target::Target;
use bnnc_kir::{self as kir, build::*, CmpOp, DataId, Expr, FuncId, Stmt, Ty};

use emit::Fb;

/// Why a model cannot be lowered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LowerError {
    /// `at` is where the node is in the model file ([`bnnc_ir::Loc::NONE`]
    /// when unknown; see [`LowerError::located_in`]).
    #[error("not supported yet by the native backends: {op} {types} (node `{node}`)")]
    Unsupported {
        node: String,
        op: String,
        types: String,
        at: bnnc_ir::Loc,
    },
    #[error("the workspace of model `{model}` would overflow: {what}")]
    WorkspaceOverflow { model: String, what: String },
    /// Evaluating a node of weights and constants only failed (`at`: its
    /// op in the model file, `Loc::NONE` when unknown).
    #[error("constant folding of `{node}` failed: {message}")]
    ConstFold {
        node: String,
        message: String,
        at: bnnc_ir::Loc,
    },
    #[error("internal lowering error: {0}")]
    Internal(String),
}

impl LowerError {
    /// This error with the location of its node in `g` when it has none: an
    /// optimized graph's nodes carry no locations, but a node the optimizer
    /// kept has its name in the graph the user wrote.
    pub fn located_in(self, g: &bnnc_ir::Graph) -> LowerError {
        match self {
            LowerError::Unsupported {
                node,
                op,
                types,
                at,
            } if at == bnnc_ir::Loc::NONE => {
                let at = g
                    .nodes
                    .iter()
                    .find(|n| n.name == node)
                    .map_or(at, |n| match n.op {
                        Op::Input(_) => n.locs.name,
                        _ => n.locs.op,
                    });
                LowerError::Unsupported {
                    node,
                    op,
                    types,
                    at,
                }
            }
            LowerError::ConstFold { node, message, at } if at == bnnc_ir::Loc::NONE => {
                let at = g
                    .nodes
                    .iter()
                    .find(|n| n.name == node)
                    .map_or(at, |n| n.locs.op);
                LowerError::ConstFold { node, message, at }
            }
            e => e,
        }
    }
}

/// How a tensor is laid out in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// `float`, row-major.
    F32,
    /// `int32_t`, row-major.
    I32,
    /// Packed bits: `rows` rows of `channels` bits, each row `ceil(channels/64)`
    /// little-endian `uint64_t` words; bit `c % 64` of word `c / 64` is channel
    /// `c`; 1 means -1; unused tail bits are 0.
    B1 { rows: usize, channels: usize },
}

impl Storage {
    /// Words per packed row.
    pub fn words(channels: usize) -> usize {
        channels.div_ceil(64)
    }

    /// Bytes of one sample (or of the whole tensor when unbatched).
    pub fn sample_bytes(&self, elems: usize) -> u64 {
        match *self {
            Storage::F32 | Storage::I32 => (elems as u64).saturating_mul(4),
            Storage::B1 { rows, channels } => (rows as u64)
                .saturating_mul(Storage::words(channels) as u64)
                .saturating_mul(8),
        }
    }

    pub fn c_type(&self) -> &'static str {
        match self {
            Storage::F32 => "float",
            Storage::I32 => "int32_t",
            Storage::B1 { .. } => "uint64_t",
        }
    }
}

/// Elements of one sample: all dimensions but a leading batch `N`.
pub fn sample_elems(ty: &TensorType) -> usize {
    let skip = usize::from(ty.is_batched());
    ty.shape[skip..]
        .iter()
        .fold(1usize, |a, d| a.saturating_mul(d.resolve(1)))
}

/// Tensors larger than this (bytes per sample) are refused: every index the
/// kernels compute must stay far from `i64` overflow.
pub const MAX_TENSOR_BYTES: u64 = 1 << 40;

/// The storage of a tensor type, or `None` for types not lowered yet.
pub fn storage_of(ty: &TensorType) -> Option<Storage> {
    match ty.elem {
        ElemType::F32 => Some(Storage::F32),
        ElemType::I32 => Some(Storage::I32),
        ElemType::B1 => {
            let dims: Vec<usize> = ty.shape.iter().map(|d| d.resolve(1)).collect();
            let (rows, channels) = match (dims.len(), ty.is_batched()) {
                (0, _) | (1, true) => (1, 1),
                (1, false) => (1, dims[0]),
                (r, batched) => {
                    let first = usize::from(batched);
                    (dims[first..r - 1].iter().product(), dims[r - 1])
                }
            };
            Some(Storage::B1 { rows, channels })
        }
        _ => None,
    }
}

/// A model input or output as the generated code sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct IoDesc {
    pub name: String,
    pub ty: TensorType,
    pub storage: Storage,
}

impl IoDesc {
    /// Bytes for `batch` samples.
    pub fn bytes(&self, batch: usize) -> u64 {
        let per = self.storage.sample_bytes(sample_elems(&self.ty));
        if self.ty.is_batched() {
            per * batch as u64
        } else {
            per
        }
    }
}

/// Where one workspace buffer lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanEntry {
    /// What the buffer holds (a value name, or `name.unpacked`).
    pub what: String,
    /// Offset: `fixed_offset` when unbatched, else `fixed_total + offset * batch`.
    pub offset: u64,
    /// Bytes (per sample when batched).
    pub bytes: u64,
    pub batched: bool,
}

/// The workspace a call needs: `fixed + per_sample * batch` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Workspace {
    pub fixed: u64,
    pub per_sample: u64,
    /// The largest batch whose workspace size and offsets fit in `i64`.
    pub max_batch: u64,
}

impl Workspace {
    pub fn bytes(&self, batch: usize) -> Option<u64> {
        (batch as u64)
            .checked_mul(self.per_sample)?
            .checked_add(self.fixed)
    }
}

/// The result of lowering.
#[derive(Clone, Debug)]
pub struct Lowered {
    pub name: String,
    pub module: kir::Module,
    pub inputs: Vec<IoDesc>,
    pub outputs: Vec<IoDesc>,
    pub workspace: Workspace,
    pub plan: Vec<PlanEntry>,
}

impl Lowered {
    pub fn entry(&self) -> String {
        format!("{}_run", self.name)
    }
    pub fn entry_v(&self) -> String {
        format!("{}_run_v", self.name)
    }
    pub fn entry_checked(&self) -> String {
        format!("{}_run_checked", self.name)
    }
    pub fn workspace_fn(&self) -> String {
        format!("{}_workspace_size", self.name)
    }
}

/// Error codes returned by the entry points.
pub mod status {
    pub const OK: i32 = 0;
    /// A required pointer (input, output, or a workspace of nonzero size) is null.
    pub const NULL_POINTER: i32 = 1;
    /// The batch exceeds the model's maximum (its workspace would overflow).
    pub const BATCH_TOO_LARGE: i32 = 2;
    /// The workspace is smaller than the batch needs (`<model>_run_checked`).
    pub const WORKSPACE_TOO_SMALL: i32 = 3;
}

/// Most kernel calls in one function of the body ([`Cx::body_fn`]).
const BODY_LEAF: usize = 16;

/// Where a buffer lives, resolved to an address in the body function.
#[derive(Clone, Debug)]
enum Loc {
    Input(usize),
    Output(usize),
    Work(usize),
    Data(DataId),
}

#[derive(Clone, Debug)]
struct Buf {
    loc: Loc,
    ty: TensorType,
    storage: Storage,
}

/// One kernel call in the body: function and buffer arguments.
struct Step {
    func: FuncId,
    args: Vec<usize>,
}

/// Lowering state.
pub(crate) struct Cx<'m> {
    model: &'m Model,
    /// What the generated code may use: the binary dot products pick their
    /// micro-kernel ([`kernel`]) from its features.
    pub(crate) target: &'m Target,
    /// What the target alone does not say (the backend's vector limit).
    pub(crate) opts: LowerOptions,
    name: String,
    module: kir::Module,
    bufs: Vec<Buf>,
    work: Vec<(String, u64, bool)>,
    steps: Vec<Step>,
    /// Buffer of each computed value.
    value_buf: Vec<Option<usize>>,
    /// Unpacked `i32` copies of `b1` values.
    unpacked: HashMap<ValueId, usize>,
    /// Binary conv/dense accumulators computed inside the kernel of the
    /// threshold or sign that consumes them (never stored), and the
    /// `replicate` of such an accumulator when the threshold reads it through
    /// one (each accumulator is compared against every replica's thresholds).
    pub(crate) fused: std::collections::HashSet<ValueId>,
    /// `b1` replicates read only by binary conv/dense kernels, which read the
    /// replicated value's source directly (never stored): value -> (source,
    /// times).
    pub(crate) read_through: HashMap<ValueId, (ValueId, usize)>,
    /// Constant values (folded; the model's own borrowed).
    consts: Vec<Option<std::borrow::Cow<'m, Tensor>>>,
    /// Data objects made for constants in their standard storage.
    const_bufs: HashMap<ValueId, usize>,
    kernel_count: usize,
    expf: Option<kir::ExternId>,
}

/// A symbol-safe version of a value name.
fn sym(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// What the lowering needs to know besides the model and the target: the
/// limits of the backend that will translate the kir.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LowerOptions {
    /// The widest kir vectors the kernels may emit, in bits: 0 (the default)
    /// keeps every kernel scalar (the reference loop nests), 128 is what
    /// Cranelift translates, 512 any width LLVM lowers. The micro-kernels
    /// (binary and f32) use the narrower of this and what the target's
    /// features make worthwhile ([`kernel::MicroKernel::choose`],
    /// [`kernel::f32_conv`]).
    pub max_vector_bits: u32,
    /// The register tile of the micro-kernels, when it fits a family's
    /// vector width; `None` (the default) takes the target's
    /// ([`kernel::MicroKernel::choose`], [`kernel::f32_conv`]). For tuning
    /// and benchmarks.
    pub tile: Option<kernel::Tile>,
}

impl LowerOptions {
    /// Scalar kernels only: the reference the micro-kernels are tested against.
    pub const SCALAR: LowerOptions = LowerOptions {
        max_vector_bits: 0,
        tile: None,
    };

    pub fn max_vector_bits(bits: u32) -> LowerOptions {
        LowerOptions {
            max_vector_bits: bits,
            tile: None,
        }
    }
}

/// Lowers a verified model to kir, for code that runs on `target`, with the
/// scalar reference kernels ([`LowerOptions::SCALAR`]); the kir any backend
/// translates. [`crate::compile::compile`] calls [`lower_with`] with its
/// backend's vector limit.
pub fn lower(model: &Model, target: &Target) -> Result<Lowered, LowerError> {
    lower_with(model, target, &LowerOptions::SCALAR)
}

/// Lowers a verified model to kir for `target`, with vectors of at most
/// `opts.max_vector_bits`.
pub fn lower_with(
    model: &Model,
    target: &Target,
    opts: &LowerOptions,
) -> Result<Lowered, LowerError> {
    let g = &model.graph;
    let name = sym(&g.name);
    let mut cx = Cx {
        model,
        target,
        opts: *opts,
        name: name.clone(),
        module: kir::Module {
            name: name.clone(),
            ..Default::default()
        },
        bufs: Vec::new(),
        work: Vec::new(),
        steps: Vec::new(),
        value_buf: vec![None; g.nodes.len()],
        unpacked: HashMap::new(),
        fused: Default::default(),
        read_through: HashMap::new(),
        consts: vec![None; g.nodes.len()],
        const_bufs: HashMap::new(),
        kernel_count: 0,
        expf: None,
    };
    for v in g.ids() {
        let ty = model.ty(v);
        let bytes = (sample_elems(ty) as u64).saturating_mul(4);
        if bytes > MAX_TENSOR_BYTES {
            return Err(LowerError::WorkspaceOverflow {
                model: name,
                what: format!(
                    "value `{}` ({ty}) takes {} bytes per sample; the native backends handle at most 2^40",
                    g.node(v).name,
                    if bytes == u64::MAX { "more than 2^64".to_string() } else { bytes.to_string() }
                ),
            });
        }
    }
    cx.fold_constants()?;

    let io = |v: ValueId| -> Result<IoDesc, LowerError> {
        let ty = model.ty(v).clone();
        let storage = storage_of(&ty).ok_or_else(|| LowerError::Unsupported {
            node: g.node(v).name.clone(),
            op: "model input/output of type".into(),
            types: ty.to_string(),
            at: match g.node(v).op {
                Op::Input(_) => g.node(v).locs.name,
                _ => g.node(v).locs.op,
            },
        })?;
        Ok(IoDesc {
            name: g.node(v).name.clone(),
            ty,
            storage,
        })
    };
    let inputs: Vec<IoDesc> = g.inputs().into_iter().map(io).collect::<Result<_, _>>()?;
    let outputs: Vec<IoDesc> = g.outputs.iter().map(|&v| io(v)).collect::<Result<_, _>>()?;
    for (k, v) in g.inputs().into_iter().enumerate() {
        let b = cx.add_buf(Loc::Input(k), model.ty(v).clone())?;
        cx.value_buf[v.index()] = Some(b);
    }
    let users = g.users();
    for v in g.ids() {
        if cx.consts[v.index()].is_none() {
            for acc in kernels::fusable(&cx, v, &users) {
                cx.fused.insert(acc);
            }
        }
    }
    for v in g.ids() {
        if cx.consts[v.index()].is_none() && !cx.fused.contains(&v) {
            if let Some(src) = kernels::replicate_read_through(&cx, v, &users) {
                cx.read_through.insert(v, src);
            }
        }
    }
    // Outputs computed by a kernel write straight into the caller's buffer.
    let mut out_of: HashMap<ValueId, usize> = HashMap::new();
    for (k, &v) in g.outputs.iter().enumerate() {
        out_of.insert(v, k);
    }
    let live = live_values(g);
    for v in g.ids() {
        let n = g.node(v);
        if n.op.is_leaf()
            || !live[v.index()]
            || cx.consts[v.index()].is_some()
            || cx.fused.contains(&v)
            || cx.read_through.contains_key(&v)
        {
            continue;
        }
        let ty = model.ty(v).clone();
        let loc = match out_of.get(&v) {
            Some(&k) => Loc::Output(k),
            None => {
                let bytes = storage_of(&ty)
                    .ok_or_else(|| cx.unsupported(v, &[]))?
                    .sample_bytes(sample_elems(&ty));
                cx.work.push((n.name.clone(), bytes, ty.is_batched()));
                Loc::Work(cx.work.len() - 1)
            }
        };
        let out = cx.add_buf(loc, ty)?;
        cx.value_buf[v.index()] = Some(out);
        kernels::lower_node(&mut cx, v, out)?;
    }
    // Outputs that are inputs or constants are copied.
    for (k, &v) in g.outputs.iter().enumerate() {
        let computed = !g.node(v).op.is_leaf() && cx.consts[v.index()].is_none();
        if !computed {
            let src = cx.operand(v)?;
            let dst = cx.add_buf(Loc::Output(k), model.ty(v).clone())?;
            kernels::copy(&mut cx, v, src, dst);
        }
    }
    let io_max = inputs
        .iter()
        .chain(&outputs)
        .filter(|d| d.ty.is_batched())
        .map(|d| d.bytes(1))
        .max()
        .unwrap_or(0);
    let (plan, mut workspace) = cx.plan()?;
    if let Some(m) = (i64::MAX as u64).checked_div(io_max) {
        workspace.max_batch = workspace.max_batch.min(m);
    }
    cx.entry_points(&inputs, &outputs, &plan, &workspace);
    kir::check(&cx.module).map_err(LowerError::Internal)?;
    Ok(Lowered {
        name,
        module: cx.module,
        inputs,
        outputs,
        workspace,
        plan,
    })
}

/// The values some output needs computed: everything the outputs reach through
/// operands, except through the operand of a `fill`, which only lends its
/// shape (the batch size comes from the caller).
fn live_values(g: &bnnc_ir::Graph) -> Vec<bool> {
    let mut live = vec![false; g.nodes.len()];
    let mut stack: Vec<ValueId> = g.outputs.clone();
    while let Some(v) = stack.pop() {
        if std::mem::replace(&mut live[v.index()], true) {
            continue;
        }
        let n = g.node(v);
        if !matches!(n.op, Op::Fill { .. }) {
            stack.extend(n.inputs.iter().copied());
        }
    }
    live
}

impl<'m> Cx<'m> {
    fn node_name(&self, v: ValueId) -> &str {
        &self.model.graph.node(v).name
    }

    pub(crate) fn unsupported(&self, v: ValueId, operands: &[ValueId]) -> LowerError {
        let n = self.model.graph.node(v);
        let ins: Vec<String> = if operands.is_empty() {
            n.inputs
                .iter()
                .map(|&i| self.model.ty(i).elem.to_string())
                .collect()
        } else {
            operands
                .iter()
                .map(|&i| self.model.ty(i).elem.to_string())
                .collect()
        };
        LowerError::Unsupported {
            node: n.name.clone(),
            op: n.op.name().to_string(),
            types: format!("({}) -> {}", ins.join(", "), self.model.ty(v).elem),
            at: n.locs.op,
        }
    }

    fn fold_constants(&mut self) -> Result<(), LowerError> {
        let g = &self.model.graph;
        for v in g.ids() {
            let n = g.node(v);
            let value = match &n.op {
                Op::Input(_) => None,
                Op::Weight { .. } | Op::Const { .. } => {
                    self.model.constant(v).map(std::borrow::Cow::Borrowed)
                }
                op => {
                    let args: Option<Vec<&Tensor>> = n
                        .inputs
                        .iter()
                        .map(|i| self.consts[i.index()].as_deref())
                        .collect();
                    match args {
                        Some(args) => Some(std::borrow::Cow::Owned(
                            bnnc_runtime::ops::eval(op, &args).map_err(|e| {
                                LowerError::ConstFold {
                                    node: n.name.clone(),
                                    message: e.to_string(),
                                    at: n.locs.op,
                                }
                            })?,
                        )),
                        None => None,
                    }
                }
            };
            self.consts[v.index()] = value;
        }
        Ok(())
    }

    fn add_buf(&mut self, loc: Loc, ty: TensorType) -> Result<usize, LowerError> {
        let storage = storage_of(&ty).ok_or_else(|| LowerError::Unsupported {
            node: String::new(),
            op: "tensor of type".into(),
            types: ty.to_string(),
            at: bnnc_ir::Loc::NONE,
        })?;
        self.bufs.push(Buf { loc, ty, storage });
        Ok(self.bufs.len() - 1)
    }

    /// A workspace buffer of `ty` holding `what`.
    pub(crate) fn temp(&mut self, what: String, ty: TensorType) -> Result<usize, LowerError> {
        let storage =
            storage_of(&ty).ok_or_else(|| LowerError::Internal(format!("temp of {ty}")))?;
        self.work.push((
            what,
            storage.sample_bytes(sample_elems(&ty)),
            ty.is_batched(),
        ));
        self.add_buf(Loc::Work(self.work.len() - 1), ty)
    }

    pub(crate) fn constant(&self, v: ValueId) -> Option<&Tensor> {
        self.consts[v.index()].as_deref()
    }

    /// Adds a read-only data object.
    pub(crate) fn data(&mut self, what: &str, align: u32, bytes: Vec<u8>) -> DataId {
        let name = format!("{}__{}_{}", self.name, sym(what), self.module.data.len());
        self.module.data.push(kir::Data { name, align, bytes });
        DataId(self.module.data.len() as u32 - 1)
    }

    pub(crate) fn data_f32(&mut self, what: &str, v: &[f32]) -> DataId {
        self.data(what, 64, v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }

    pub(crate) fn data_i32(&mut self, what: &str, v: &[i32]) -> DataId {
        self.data(what, 64, v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }

    pub(crate) fn data_u64(&mut self, what: &str, v: &[u64]) -> DataId {
        self.data(what, 64, v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }

    /// The buffer holding value `v` (a data object for constants).
    pub(crate) fn operand(&mut self, v: ValueId) -> Result<usize, LowerError> {
        if let Some(b) = self.value_buf[v.index()] {
            return Ok(b);
        }
        if let Some(&b) = self.const_bufs.get(&v) {
            return Ok(b);
        }
        let t = self.constant(v).cloned().ok_or_else(|| {
            LowerError::Internal(format!("value {} has no buffer", self.node_name(v)))
        })?;
        let ty = self.model.ty(v).clone();
        let storage = storage_of(&ty).ok_or_else(|| self.unsupported(v, &[]))?;
        let what = self.node_name(v).to_string();
        let id = match (&t.data, storage) {
            (TensorData::F32(x), _) => self.data_f32(&what, x),
            (TensorData::Int(x), Storage::I32) => self.data_i32(&what, x),
            (TensorData::Int(x), Storage::B1 { rows, channels }) => {
                let words = pack_bits(x, rows, channels);
                self.data_u64(&what, &words)
            }
            // Packed storage is this layout when its rows are the buffer's.
            (TensorData::Bits(w), Storage::B1 { rows, channels })
                if bnnc_ir::tensor::b1_rows(&t.dims) == Some((rows, channels)) =>
            {
                self.data_u64(&what, w)
            }
            (TensorData::Bits(_), Storage::B1 { rows, channels }) => {
                let words = pack_bits(&t.as_int().unwrap_or_default(), rows, channels);
                self.data_u64(&what, &words)
            }
            _ => return Err(LowerError::Internal(format!("constant {what} of {ty}"))),
        };
        let b = self.add_buf(Loc::Data(id), ty)?;
        self.const_bufs.insert(v, b);
        Ok(b)
    }

    /// The buffer with the numeric values of `v`: itself unless it is `b1`, in
    /// which case an `i32` copy (made once) of its ±1 values.
    pub(crate) fn numeric(&mut self, v: ValueId) -> Result<usize, LowerError> {
        let b = self.operand(v)?;
        if !matches!(self.bufs[b].storage, Storage::B1 { .. }) {
            return Ok(b);
        }
        if let Some(&u) = self.unpacked.get(&v) {
            return Ok(u);
        }
        let ty = TensorType::new(ElemType::I32, self.model.ty(v).shape.clone());
        let u = self.temp(format!("{}.unpacked", self.node_name(v)), ty)?;
        kernels::unpack(self, v, b, u);
        self.unpacked.insert(v, u);
        Ok(u)
    }

    pub(crate) fn buf_ty(&self, b: usize) -> &TensorType {
        &self.bufs[b].ty
    }

    pub(crate) fn buf_storage(&self, b: usize) -> Storage {
        self.bufs[b].storage
    }

    /// Starts a kernel function `name` with a `batch` parameter and one pointer
    /// per buffer argument.
    pub(crate) fn begin(&mut self, what: &str, nargs: usize) -> (Fb, Expr, Vec<Expr>) {
        self.kernel_count += 1;
        let name = format!("{}_k{}_{}", self.name, self.kernel_count, sym(what));
        let mut fb = Fb::new(name, false, None);
        let batch = var(fb.param("batch", Ty::I64));
        let ptrs = (0..nargs)
            .map(|i| var(fb.param(&format!("p{i}"), Ty::PTR)))
            .collect();
        (fb, batch, ptrs)
    }

    /// Finishes a kernel begun with [`Cx::begin`] and schedules its call.
    pub(crate) fn end(&mut self, mut fb: Fb, args: Vec<usize>) {
        fb.push(Stmt::Return(None));
        self.module.functions.push(fb.finish());
        let func = FuncId(self.module.functions.len() as u32 - 1);
        self.steps.push(Step { func, args });
    }

    /// `expf`, declared on first use.
    pub(crate) fn expf(&mut self) -> kir::ExternId {
        if let Some(x) = self.expf {
            return x;
        }
        self.module.externs.push(kir::Extern {
            name: "expf".into(),
            params: vec![Ty::F32],
            ret: Ty::F32,
        });
        let id = kir::ExternId(self.module.externs.len() as u32 - 1);
        self.expf = Some(id);
        id
    }

    /// First-fit placement of workspace buffers by lifetime (in steps).
    fn plan(&self) -> Result<(Vec<PlanEntry>, Workspace), LowerError> {
        let n = self.work.len();
        let mut first = vec![usize::MAX; n];
        let mut last = vec![0usize; n];
        for (s, step) in self.steps.iter().enumerate() {
            for &b in &step.args {
                if let Loc::Work(w) = self.bufs[b].loc {
                    first[w] = first[w].min(s);
                    last[w] = last[w].max(s);
                }
            }
        }
        let overflow = |what: &str| LowerError::WorkspaceOverflow {
            model: self.name.clone(),
            what: what.to_string(),
        };
        let mut offsets = vec![0u64; n];
        for batched in [false, true] {
            let mut placed: Vec<usize> = Vec::new();
            let mut order: Vec<usize> = (0..n).filter(|&w| self.work[w].2 == batched).collect();
            order.sort_by_key(|&w| (first[w], std::cmp::Reverse(self.work[w].1), w));
            for w in order {
                // In `first` order, a buffer that died before `w` starts
                // overlaps no later one either: keeping only live ones makes
                // the plan linear in the buffers times the most live at once.
                placed.retain(|&p| first[w] <= last[p]);
                let size = self.work[w]
                    .1
                    .checked_next_multiple_of(64)
                    .ok_or_else(|| overflow("a buffer's size"))?;
                let mut busy: Vec<(u64, u64)> = placed
                    .iter()
                    .filter(|&&p| first[p] <= last[w] && first[w] <= last[p])
                    .map(|&p| (offsets[p], offsets[p] + self.work[p].1.next_multiple_of(64)))
                    .collect();
                busy.sort();
                let mut at = 0u64;
                for (lo, hi) in busy {
                    if at.checked_add(size).ok_or_else(|| overflow("offsets"))? <= lo {
                        break;
                    }
                    at = at.max(hi);
                }
                offsets[w] = at;
                placed.push(w);
            }
        }
        let end = |batched: bool| -> Result<u64, LowerError> {
            (0..n)
                .filter(|&w| self.work[w].2 == batched)
                .map(|w| {
                    offsets[w]
                        .checked_add(self.work[w].1.next_multiple_of(64))
                        .ok_or_else(|| overflow("total size"))
                })
                .try_fold(0u64, |a, x| Ok(a.max(x?)))
        };
        let fixed = end(false)?;
        let per_sample = end(true)?;
        let limit = i64::MAX as u64;
        if fixed > limit || per_sample > limit {
            return Err(overflow(&format!(
                "{fixed} fixed bytes + {per_sample} bytes per sample exceed the 2^63 address space"
            )));
        }
        let max_batch = (limit - fixed).checked_div(per_sample).unwrap_or(limit);
        let plan = (0..n)
            .map(|w| PlanEntry {
                what: self.work[w].0.clone(),
                offset: offsets[w],
                bytes: self.work[w].1,
                batched: self.work[w].2,
            })
            .collect();
        Ok((
            plan,
            Workspace {
                fixed,
                per_sample,
                max_batch,
            },
        ))
    }

    /// A local function `name(io.., workspace, batch)` calling the kernels of
    /// `steps` in order; `io` are the input and output buffers it receives
    /// (indices: inputs `0..ni`, then outputs), in increasing order.
    ///
    /// More than [`BODY_LEAF`] steps are split in two halves, each its own
    /// function of the buffers it uses. In one function calling every kernel,
    /// each buffer pointer would stay live across every call before its use,
    /// and the backends' register allocators take time quadratic in the
    /// model's inputs and outputs times its kernels for that; in the tree no
    /// value is live across more than [`BODY_LEAF`] calls, so compile time is
    /// `O(n log n)` in the steps and buffers, at the price of a call per
    /// [`BODY_LEAF`] / 2 steps at run time.
    fn body_fn(
        &mut self,
        name: String,
        io: &[usize],
        steps: std::ops::Range<usize>,
        ni: usize,
        plan: &[PlanEntry],
        ws: &Workspace,
    ) -> FuncId {
        let mut fb = Fb::new(name.clone(), false, None);
        let params: HashMap<usize, Expr> = io
            .iter()
            .map(|&i| {
                let nm = if i < ni {
                    format!("in{i}")
                } else {
                    format!("out{}", i - ni)
                };
                (i, var(fb.param(&nm, Ty::PTR)))
            })
            .collect();
        let wsp = var(fb.param("workspace", Ty::PTR));
        let batch = var(fb.param("batch", Ty::I64));
        if steps.len() <= BODY_LEAF {
            for step in &self.steps[steps] {
                let mut args = vec![batch.clone()];
                for &b in &step.args {
                    args.push(match &self.bufs[b].loc {
                        Loc::Input(k) => params[k].clone(),
                        Loc::Output(k) => params[&(ni + k)].clone(),
                        Loc::Data(d) => Expr::DataAddr(*d),
                        Loc::Work(w) => {
                            let e = &plan[*w];
                            if e.batched {
                                add(
                                    wsp.clone(),
                                    add(
                                        i64c(ws.fixed as i64),
                                        mul(i64c(e.offset as i64), batch.clone()),
                                    ),
                                )
                            } else {
                                add(wsp.clone(), i64c(e.offset as i64))
                            }
                        }
                    });
                }
                fb.push(Stmt::Call(step.func, args));
            }
        } else {
            let mid = steps.start + steps.len() / 2;
            for (half, part) in [("a", steps.start..mid), ("b", mid..steps.end)] {
                let used: std::collections::BTreeSet<usize> = self.steps[part.clone()]
                    .iter()
                    .flat_map(|s| &s.args)
                    .filter_map(|&b| match self.bufs[b].loc {
                        Loc::Input(k) => Some(k),
                        Loc::Output(k) => Some(ni + k),
                        Loc::Data(_) | Loc::Work(_) => None,
                    })
                    .collect();
                let used: Vec<usize> = used.into_iter().collect();
                let f = self.body_fn(format!("{name}_{half}"), &used, part, ni, plan, ws);
                let mut args: Vec<Expr> = used.iter().map(|k| params[k].clone()).collect();
                args.push(wsp.clone());
                args.push(batch.clone());
                fb.push(Stmt::Call(f, args));
            }
        }
        fb.push(Stmt::Return(None));
        self.module.functions.push(fb.finish());
        FuncId(self.module.functions.len() as u32 - 1)
    }

    /// The body (kernel calls) and the exported entry points.
    fn entry_points(
        &mut self,
        inputs: &[IoDesc],
        outputs: &[IoDesc],
        plan: &[PlanEntry],
        ws: &Workspace,
    ) {
        let (ni, no) = (inputs.len(), outputs.len());
        // body(inputs.., outputs.., workspace, batch)
        let all: Vec<usize> = (0..ni + no).collect();
        let name = format!("{}_body", self.name);
        let body = self.body_fn(name, &all, 0..self.steps.len(), ni, plan, ws);

        // The first check of every entry point: the batch.
        let batch_check = |fb: &mut Fb, batch: &Expr| {
            fb.if_(
                cmp(CmpOp::ULt, i64c(ws.max_batch as i64), batch.clone()),
                |fb| fb.push(Stmt::Return(Some(i32c(status::BATCH_TOO_LARGE)))),
            );
        };
        // The checks after it, then the call. The order of the checks is the
        // order in which statuses win: batch, null pointers, then the
        // workspace's size (when the caller gives it).
        let checked_call =
            |fb: &mut Fb, ptrs: Vec<Expr>, wsp: Expr, ws_bytes: Option<Expr>, batch: Expr| {
                // One branch per group of pointers, on a balanced `or` of their
                // tests: a branch per pointer keeps every later pointer live across
                // it (work quadratic in the inputs and outputs for the backends' SSA
                // construction and register allocation), a chain of `or`s is as deep
                // as there are pointers (LLVM's jump threading recurses through it),
                // and one tree over thousands of pointers is a block whose long-lived
                // values LLVM's code generation handles in quadratic time.
                for group in ptrs.chunks(NULL_GROUP) {
                    let null = any_null(group).expect("a nonempty group");
                    fb.if_(cmp(CmpOp::Ne, null, Expr::Int(0, Ty::I8)), |fb| {
                        fb.push(Stmt::Return(Some(i32c(status::NULL_POINTER))))
                    });
                }
                // batch <= max_batch, so the size fits in i64 (see Workspace).
                let size = add(
                    i64c(ws.fixed as i64),
                    mul(i64c(ws.per_sample as i64), batch.clone()),
                );
                fb.if_(cmp(CmpOp::Eq, wsp.clone(), i64c(0)), |fb| {
                    fb.if_(cmp(CmpOp::Ne, size.clone(), i64c(0)), |fb| {
                        fb.push(Stmt::Return(Some(i32c(status::NULL_POINTER))))
                    })
                });
                if let Some(bytes) = ws_bytes {
                    fb.if_(cmp(CmpOp::ULt, bytes, size), |fb| {
                        fb.push(Stmt::Return(Some(i32c(status::WORKSPACE_TOO_SMALL))))
                    });
                }
                let mut args = ptrs;
                args.push(wsp);
                args.push(batch);
                fb.push(Stmt::Call(body, args));
                fb.push(Stmt::Return(Some(i32c(status::OK))));
            };

        let mut fb = Fb::new(format!("{}_run", self.name), true, Some(Ty::I32));
        let ptrs: Vec<Expr> = inputs
            .iter()
            .chain(outputs)
            .map(|d| var(fb.param(&sym(&d.name), Ty::PTR)))
            .collect();
        let wsp = var(fb.param("workspace", Ty::PTR));
        let batch = var(fb.param("batch", Ty::I64));
        batch_check(&mut fb, &batch);
        checked_call(&mut fb, ptrs, wsp, None, batch);
        self.module.functions.push(fb.finish());

        // run_v and run_checked: the buffers as two arrays of pointers.
        for checked in [false, true] {
            let name = if checked { "run_checked" } else { "run_v" };
            let mut fb = Fb::new(format!("{}_{name}", self.name), true, Some(Ty::I32));
            let ins = var(fb.param("inputs", Ty::PTR));
            let outs = var(fb.param("outputs", Ty::PTR));
            let wsp = var(fb.param("workspace", Ty::PTR));
            let ws_bytes = checked.then(|| var(fb.param("workspace_bytes", Ty::I64)));
            let batch = var(fb.param("batch", Ty::I64));
            batch_check(&mut fb, &batch);
            for arr in [&ins, &outs] {
                fb.if_(cmp(CmpOp::Eq, arr.clone(), i64c(0)), |fb| {
                    fb.push(Stmt::Return(Some(i32c(status::NULL_POINTER))))
                });
            }
            let mut ptrs = Vec::new();
            for k in 0..ni {
                ptrs.push(fb.let_(
                    &format!("in{k}"),
                    Ty::PTR,
                    load(Ty::PTR, add(ins.clone(), i64c(8 * k as i64))),
                ));
            }
            for k in 0..no {
                ptrs.push(fb.let_(
                    &format!("out{k}"),
                    Ty::PTR,
                    load(Ty::PTR, add(outs.clone(), i64c(8 * k as i64))),
                ));
            }
            checked_call(&mut fb, ptrs, wsp, ws_bytes, batch);
            self.module.functions.push(fb.finish());
        }

        // workspace_size(batch): bytes, or -1 (SIZE_MAX) past the maximum batch.
        let mut fb = Fb::new(format!("{}_workspace_size", self.name), true, Some(Ty::I64));
        let batch = var(fb.param("batch", Ty::I64));
        fb.if_(
            cmp(CmpOp::ULt, i64c(ws.max_batch as i64), batch.clone()),
            |fb| fb.push(Stmt::Return(Some(i64c(-1)))),
        );
        fb.push(Stmt::Return(Some(add(
            i64c(ws.fixed as i64),
            mul(i64c(ws.per_sample as i64), batch),
        ))));
        self.module.functions.push(fb.finish());
    }
}

/// Pointers the entry points test for null per branch (see `any_null`).
const NULL_GROUP: usize = 64;

/// `i8` 1 when some pointer of `ptrs` is null, else 0: a balanced tree of
/// `or`s, `log2(ptrs.len())` deep; `None` without pointers.
fn any_null(ptrs: &[Expr]) -> Option<Expr> {
    match ptrs {
        [] => None,
        [p] => Some(cmp(CmpOp::Eq, p.clone(), i64c(0))),
        _ => {
            let (a, b) = ptrs.split_at(ptrs.len() / 2);
            Some(emit::or(any_null(a)?, any_null(b)?))
        }
    }
}

/// Packs ±1 values laid out as `rows x channels` into words (bit 1 = -1).
pub fn pack_bits(values: &[i32], rows: usize, channels: usize) -> Vec<u64> {
    let wpr = Storage::words(channels);
    let mut out = vec![0u64; rows * wpr];
    for (i, &v) in values.iter().enumerate().take(rows * channels) {
        let (r, c) = (i / channels, i % channels);
        if v < 0 {
            out[r * wpr + c / 64] |= 1u64 << (c % 64);
        }
    }
    out
}

/// Unpacks words into ±1 values (the inverse of [`pack_bits`]).
pub fn unpack_bits(words: &[u64], rows: usize, channels: usize) -> Vec<i32> {
    let wpr = Storage::words(channels);
    let mut out = Vec::with_capacity(rows * channels);
    for r in 0..rows {
        for c in 0..channels {
            let bit = (words[r * wpr + c / 64] >> (c % 64)) & 1;
            out.push(1 - 2 * bit as i32);
        }
    }
    out
}
