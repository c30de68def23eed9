//! The generated safe Rust bindings (`<model>.rs`): a rendering of the
//! model's [`ModelAbi`] as one Rust module with constants, `extern "C"`
//! declarations, a safe `Model` wrapper and `Status` (see the crate docs).

use std::fmt::Write as _;
use std::path::Path;

use bnnc::abi::{ModelAbi, StatusKind, TensorAbi};
use bnnc::lower::Lowered;
use bnnc_kir::target::{Arch, Target};

/// Appends one line to the generated text (writing to a `String` cannot fail).
macro_rules! emit {
    ($w:expr) => {
        $w.push('\n')
    };
    ($w:expr, $($t:tt)*) => {
        let _ = writeln!($w, $($t)*);
    };
}

const RUST_KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut",
    "pub", "ref", "return", "self", "Self", "static", "struct", "super", "trait", "true", "try",
    "type", "unsafe", "use", "where", "while", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "typeof", "unsized", "virtual", "yield",
];

/// A Rust identifier for `name`: other characters become `_`, a leading digit
/// or `_` alone gets a prefix, keywords get a `_` suffix.
fn rust_ident(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s == "_" || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert_str(0, "v_");
    }
    if RUST_KEYWORDS.contains(&s.as_str()) {
        s.push('_');
    }
    s
}

/// `base`, or `base_2`, `base_3`.. if taken; records the result (a set, so
/// naming thousands of inputs stays linear).
fn unique(base: String, taken: &mut std::collections::HashSet<String>) -> String {
    let mut s = base.clone();
    let mut k = 2;
    while taken.contains(&s) {
        s = format!("{base}_{k}");
        k += 1;
    }
    taken.insert(s.clone());
    s
}

/// `n` with `_` between groups of three digits, as a Rust literal.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('_');
        }
        out.push(c);
    }
    out
}

/// Rust features (as `is_x86_feature_detected!` / `is_aarch64_feature_detected!`
/// spell them) for a target's bnnc features.
fn runtime_feature(arch: Arch, f: &str) -> String {
    match (arch.name(), f) {
        ("x86_64", "sse41") => "sse4.1".into(),
        ("x86_64", "sse42") => "sse4.2".into(),
        _ => f.to_string(),
    }
}

/// One input or output of the ABI with its Rust names.
struct Item<'a> {
    t: &'a TensorAbi,
    /// Parameter name of `run` and of the `extern "C"` declaration.
    param: String,
    /// Constant prefix, e.g. `INPUT_X`.
    konst: String,
}

impl Item<'_> {
    /// `f32`, `i32` or `u64`.
    fn elem(&self) -> &'static str {
        self.t.elem.rust_type()
    }

    /// The item's line in the module's doc comment.
    fn describe(&self) -> String {
        let t = self.t;
        let per = if t.batched {
            "per sample"
        } else {
            "per call (no batch dimension)"
        };
        let (kind, index, name, ty, len) =
            (t.direction.as_str(), t.index, &t.name, &t.ty, t.sample_len);
        match t.packing {
            None => format!(
                "{kind} {index} `{name}`: `{ty}`; `&[{}]`, row-major (NHWC), {len} elements {per}",
                self.elem(),
            ),
            Some(p) => format!(
                "{kind} {index} `{name}`: `{ty}`; `&[u64]`, bit-packed, {len} word(s) {per}: {} row(s) of \
                 {} channels, {} word(s) per row",
                p.rows, p.channels, p.words_per_row
            ),
        }
    }
}

/// The Rust names of every input and output: parameters of `run` (distinct
/// from `self`, `batch` and `workspace` and from each other) and constant
/// prefixes (`INPUT_X`, `OUTPUT_Y`), made unique by `_2`, `_3`...
fn items(abi: &ModelAbi) -> Vec<Item<'_>> {
    let mut params: std::collections::HashSet<String> = ["self", "batch", "workspace"]
        .into_iter()
        .map(String::from)
        .collect();
    let mut konsts = std::collections::HashSet::new();
    abi.tensors()
        .map(|t| {
            let id = rust_ident(&t.name);
            let prefix = t.direction.as_str().to_uppercase();
            Item {
                t,
                param: unique(id.to_lowercase(), &mut params),
                konst: unique(format!("{prefix}_{}", id.to_uppercase()), &mut konsts),
            }
        })
        .collect()
}

/// The Rust bindings of a lowered model: one module named after the model with
/// constants, `extern "C"` declarations, a safe `Model` wrapper and `Status`.
/// `source` is only mentioned in a comment.
pub fn rust_bindings(l: &Lowered, target: &Target, source: &Path) -> String {
    rust_bindings_of(&ModelAbi::new(l, target), source)
}

/// [`rust_bindings`] of an interface description.
pub fn rust_bindings_of(abi: &ModelAbi, source: &Path) -> String {
    let items = items(abi);
    let mut s = String::new();
    let w = &mut s;
    module_doc(w, abi, &items, source);
    emit!(w, "#[allow(dead_code, non_snake_case)]");
    emit!(w, "pub mod {} {{", rust_ident(&abi.name));
    model_constants(w, abi);
    for it in &items {
        tensor_constants(w, it);
    }
    workspace_constants(w, abi);
    ffi_module(w, abi, &items);
    status_type(w, abi);
    model_type(w, abi, &items);
    if abi.has_packed() {
        w.push_str(B1_HELPERS);
    }
    emit!(w);
    let arch = abi.target.arch;
    emit!(w, "    #[cfg(not(target_arch = \"{}\"))]", arch.name());
    emit!(
        w,
        "    compile_error!(\"model `{}` was compiled by bnnc for {arch}, not this crate's target architecture\");",
        abi.name
    );
    emit!(w, "}}");
    s
}

/// The file's comment and the module's doc comment, which lists the
/// arguments of `run`.
fn module_doc(w: &mut String, abi: &ModelAbi, items: &[Item], source: &Path) {
    emit!(
        w,
        "// Generated by bnnc {} (bnnc_build) from {:?}. Do not edit.",
        env!("CARGO_PKG_VERSION"),
        source.display().to_string()
    );
    emit!(w);
    emit!(
        w,
        "/// Model `{}`, compiled by bnnc for target `{}`.",
        abi.name,
        abi.target
    );
    emit!(w, "///");
    emit!(
        w,
        "/// Arguments of `run`, in order (after them: the workspace, if any, and `batch`):"
    );
    emit!(w, "///");
    for it in items {
        emit!(w, "/// - {}", it.describe());
    }
    if abi.has_packed() {
        emit!(w, "///");
        emit!(
            w,
            "/// Bit-packed tensors: channel `c` of a row is bit `c % 64` of word `c / 64`, a set"
        );
        emit!(
            w,
            "/// bit means -1, unused tail bits are 0 (see [`pack_b1`])."
        );
    }
    emit!(w, "///");
    emit!(
        w,
        "/// The object is linked as `libbnnc_{}.a` (and `libm`), set up by `bnnc_build`.",
        abi.name
    );
}

/// `NAME`, `TARGET`, `NUM_INPUTS`, `NUM_OUTPUTS`.
fn model_constants(w: &mut String, abi: &ModelAbi) {
    emit!(w, "    /// The model's name, the prefix of its C symbols.");
    emit!(w, "    pub const NAME: &str = {:?};", abi.name);
    emit!(
        w,
        "    /// The target the object was compiled for; it uses no instruction outside it."
    );
    emit!(w, "    pub const TARGET: &str = \"{}\";", abi.target);
    emit!(w, "    /// Number of inputs.");
    emit!(w, "    pub const NUM_INPUTS: usize = {};", abi.inputs.len());
    emit!(w, "    /// Number of outputs.");
    emit!(
        w,
        "    pub const NUM_OUTPUTS: usize = {};",
        abi.outputs.len()
    );
}

/// One input's or output's `_LEN`, `_BATCHED`, `_SHAPE` and, when packed,
/// `_ROWS`, `_CHANNELS`, `_WORDS_PER_ROW`.
fn tensor_constants(w: &mut String, it: &Item) {
    let (t, k) = (it.t, &it.konst);
    emit!(w);
    let unit = if t.batched {
        "one sample"
    } else {
        "the whole tensor (it has no batch dimension)"
    };
    let direction = if t.is_input() { "Input" } else { "Output" };
    emit!(
        w,
        "    /// {direction} {} `{}` (`{}`): `{}` elements of {unit}.",
        t.index,
        t.name,
        t.ty,
        it.elem()
    );
    emit!(
        w,
        "    pub const {k}_LEN: usize = {};",
        grouped(t.sample_len as u64)
    );
    emit!(
        w,
        "    /// Whether `{}` has a leading batch dimension (its slice then holds `batch * {k}_LEN` elements).",
        t.name
    );
    emit!(w, "    pub const {k}_BATCHED: bool = {};", t.batched);
    if t.batched {
        emit!(w, "    /// The dimensions of one sample of `{}`.", t.name);
    } else {
        emit!(w, "    /// The dimensions of `{}`.", t.name);
    }
    emit!(w, "    pub const {k}_SHAPE: &[usize] = &{:?};", t.shape);
    if let Some(p) = t.packing {
        emit!(w, "    /// Packed rows of `{}` per sample.", t.name);
        emit!(w, "    pub const {k}_ROWS: usize = {};", p.rows);
        emit!(w, "    /// Channels (bits) per packed row of `{}`.", t.name);
        emit!(w, "    pub const {k}_CHANNELS: usize = {};", p.channels);
        emit!(w, "    /// `u64` words per packed row of `{}`.", t.name);
        emit!(
            w,
            "    pub const {k}_WORDS_PER_ROW: usize = {};",
            p.words_per_row
        );
    }
}

/// `WORKSPACE_FIXED`, `WORKSPACE_PER_SAMPLE`, `MAX_BATCH` and `workspace_size`.
fn workspace_constants(w: &mut String, abi: &ModelAbi) {
    let ws = &abi.workspace;
    emit!(w);
    emit!(
        w,
        "    /// Workspace bytes a call needs whatever the batch."
    );
    emit!(
        w,
        "    pub const WORKSPACE_FIXED: usize = {};",
        grouped(ws.fixed)
    );
    emit!(w, "    /// Workspace bytes a call needs per sample.");
    emit!(
        w,
        "    pub const WORKSPACE_PER_SAMPLE: usize = {};",
        grouped(ws.per_sample)
    );
    emit!(w, "    /// The largest batch the entry points accept.");
    emit!(
        w,
        "    pub const MAX_BATCH: usize = {};",
        grouped(ws.max_batch)
    );
    w.push_str(WORKSPACE_SIZE_FN);
}

/// `workspace_size(batch)`, from the constants above it.
const WORKSPACE_SIZE_FN: &str = "
    /// Workspace bytes for `batch` samples (any alignment; 64 is best), or `None`
    /// above [`MAX_BATCH`].
    #[must_use]
    pub const fn workspace_size(batch: usize) -> Option<usize> {
        if batch > MAX_BATCH {
            return None;
        }
        match WORKSPACE_PER_SAMPLE.checked_mul(batch) {
            Some(per) => WORKSPACE_FIXED.checked_add(per),
            None => None,
        }
    }

";

/// The doc comment of a status code's constant in `ffi`.
fn status_doc(kind: StatusKind) -> &'static str {
    match kind {
        StatusKind::Ok => "Returned on success.",
        StatusKind::NullPointer => "A required pointer is null.",
        StatusKind::BatchTooLarge => "`batch` exceeds [`super::MAX_BATCH`].",
        StatusKind::WorkspaceTooSmall => {
            "`workspace_bytes` is less than `workspace_size(batch)` (`run_checked` only)."
        }
    }
}

/// `mod ffi`: the status codes and the `extern "C"` declarations of the
/// four entry points.
fn ffi_module(w: &mut String, abi: &ModelAbi, items: &[Item]) {
    let c_params: Vec<String> = items
        .iter()
        .map(|it| {
            let konst = if it.t.is_input() { "const " } else { "" };
            format!("{konst}{} *{}", it.t.elem.c_type(), it.t.c_ident)
        })
        .chain(["void *workspace".into(), "size_t batch".into()])
        .collect();
    let rust_params: Vec<String> = items
        .iter()
        .map(|it| {
            let ptr = if it.t.is_input() { "const" } else { "mut" };
            format!("{}: *{ptr} {}", it.param, it.elem())
        })
        .chain([
            "workspace: *mut ::core::ffi::c_void".to_string(),
            "batch: usize".to_string(),
        ])
        .collect();
    emit!(
        w,
        "    /// The C entry points of the object and their status codes (see `{}.h`).",
        abi.name
    );
    emit!(w, "    pub mod ffi {{");
    for c in abi.status {
        emit!(w, "        /// {}", status_doc(c.kind));
        emit!(w, "        pub const {}: i32 = {};", c.name, c.value);
    }
    emit!(w);
    emit!(w, "        unsafe extern \"C\" {{");
    let run = &abi.entry.run;
    emit!(
        w,
        "            /// `int32_t {run}({})`",
        c_params.join(", ")
    );
    emit!(w, "            ///");
    emit!(
        w,
        "            /// Runs the model on `batch` samples: inputs, then outputs, in declaration order."
    );
    emit!(
        w,
        "            pub fn {run}({}) -> i32;",
        rust_params.join(", ")
    );
    emit!(w);
    emit!(
        w,
        "            /// The same, with the inputs and outputs as arrays of pointers."
    );
    emit!(
        w,
        "            pub fn {}(inputs: *const *const ::core::ffi::c_void, outputs: *const *mut ::core::ffi::c_void, workspace: *mut ::core::ffi::c_void, batch: usize) -> i32;",
        abi.entry.run_v
    );
    emit!(w);
    emit!(
        w,
        "            /// The same, refusing a workspace of fewer than `workspace_size(batch)` bytes."
    );
    emit!(
        w,
        "            pub fn {}(inputs: *const *const ::core::ffi::c_void, outputs: *const *mut ::core::ffi::c_void, workspace: *mut ::core::ffi::c_void, workspace_bytes: usize, batch: usize) -> i32;",
        abi.entry.run_checked
    );
    emit!(w);
    emit!(
        w,
        "            /// Workspace bytes for `batch` samples; `usize::MAX` above `MAX_BATCH`."
    );
    emit!(
        w,
        "            pub fn {}(batch: usize) -> usize;",
        abi.entry.workspace_size
    );
    emit!(w, "        }}");
    emit!(w, "    }}");
    emit!(w);
}

/// The `Status` enum, before its `Display` impl.
const STATUS_ENUM: &str = "    /// Why a call did not run.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Status {
        /// An input slice does not hold the elements `batch` needs.
        InputLength {
            /// The input's name.
            name: &'static str,
            /// Elements needed.
            expected: usize,
            /// Elements given.
            actual: usize,
        },
        /// An output slice does not hold the elements `batch` needs.
        OutputLength {
            /// The output's name.
            name: &'static str,
            /// Elements needed.
            expected: usize,
            /// Elements given.
            actual: usize,
        },
        /// The workspace is smaller than `workspace_size(batch)`.
        WorkspaceTooSmall {
            /// Bytes needed.
            required: usize,
            /// Bytes given.
            actual: usize,
        },
        /// `batch` exceeds [`MAX_BATCH`].
        BatchTooLarge {
            /// The batch asked for.
            batch: usize,
            /// [`MAX_BATCH`].
            max: usize,
        },
        /// This CPU lacks a feature the target names (checked by [`Model::new`]).
        UnsupportedCpu {
            /// The missing feature.
            feature: &'static str,
        },
        /// The object returned [`ffi::ERR_NULL_POINTER`].
        NullPointer,
        /// The object returned a status code this module does not know.
        Unknown(i32),
    }

";

/// The `Display` arms of `Status` with fields: the pattern, and the message
/// after "model `NAME`" (a format string of the generated code).
const STATUS_MESSAGES: [(&str, &str); 5] = [
    (
        "InputLength { name, expected, actual }",
        ": input `{name}` has {actual} elements, expected {expected}",
    ),
    (
        "OutputLength { name, expected, actual }",
        ": output `{name}` has {actual} elements, expected {expected}",
    ),
    (
        "WorkspaceTooSmall { required, actual }",
        ": the workspace has {actual} bytes, {required} are needed",
    ),
    (
        "BatchTooLarge { batch, max }",
        ": batch {batch} is larger than the maximum {max}",
    ),
    (
        "UnsupportedCpu { feature }",
        " was compiled for {TARGET}, but this CPU lacks {feature}",
    ),
];

/// `Status`: the enum, its messages (which name the model) and its
/// `std::error::Error` impl.
fn status_type(w: &mut String, abi: &ModelAbi) {
    let name = &abi.name;
    w.push_str(STATUS_ENUM);
    emit!(w, "    impl ::core::fmt::Display for Status {{");
    emit!(
        w,
        "        fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {{"
    );
    emit!(w, "            match self {{");
    for (pattern, message) in STATUS_MESSAGES {
        emit!(w, "                Self::{pattern} => write!(");
        emit!(w, "                    f,");
        emit!(w, "                    \"model `{name}`{message}\"");
        emit!(w, "                ),");
    }
    emit!(
        w,
        "                Self::NullPointer => write!(f, \"model `{name}`: a required pointer is null\"),"
    );
    emit!(
        w,
        "                Self::Unknown(code) => write!(f, \"model `{name}` returned status {{code}}\"),"
    );
    emit!(w, "            }}");
    emit!(w, "        }}");
    emit!(w, "    }}");
    emit!(w);
    emit!(w, "    impl ::std::error::Error for Status {{}}");
    emit!(w);
}

/// `Model`: the struct and its `new`, `run` and `run_with_workspace`.
fn model_type(w: &mut String, abi: &ModelAbi, items: &[Item]) {
    emit!(
        w,
        "    /// The compiled model, with safe entry points. It holds no state: calls are"
    );
    emit!(w, "    /// reentrant and may run concurrently.");
    emit!(w, "    #[derive(Clone, Copy, Debug)]");
    emit!(w, "    pub struct Model {{");
    emit!(w, "        _private: (),");
    emit!(w, "    }}");
    emit!(w);
    emit!(w, "    impl Model {{");
    model_new(w, abi);
    model_run(w, items);
    model_run_with_workspace(w, abi, items);
    emit!(w, "    }}");
}

/// `Model::new`: one run-time check per feature of the target (none on
/// architectures without a stable detection macro).
fn model_new(w: &mut String, abi: &ModelAbi) {
    emit!(
        w,
        "        /// The model, after checking that this CPU has every feature of [`TARGET`]."
    );
    emit!(w, "        ///");
    emit!(w, "        /// # Errors");
    emit!(w, "        ///");
    emit!(
        w,
        "        /// [`Status::UnsupportedCpu`] naming the first missing feature."
    );
    emit!(w, "        pub fn new() -> Result<Self, Status> {{");
    let arch = abi.target.arch;
    let cfg_arch = arch.name();
    let detect = match arch {
        Arch::X86_64 => Some("::std::is_x86_feature_detected!"),
        Arch::Aarch64 => Some("::std::arch::is_aarch64_feature_detected!"),
        _ => None,
    };
    for f in abi.features.iter().filter(|_| detect.is_some()) {
        let detect = detect.unwrap_or_default();
        let rf = runtime_feature(arch, f);
        emit!(w, "            #[cfg(target_arch = \"{cfg_arch}\")]");
        emit!(w, "            if !{detect}(\"{rf}\") {{");
        emit!(
            w,
            "                return Err(Status::UnsupportedCpu {{ feature: \"{f}\" }});"
        );
        emit!(w, "            }}");
    }
    emit!(w, "            Ok(Self {{ _private: () }})");
    emit!(w, "        }}");
    emit!(w);
}

/// The slice parameters of `run` and `run_with_workspace`, each followed by
/// `", "`.
fn slice_params(items: &[Item]) -> String {
    items
        .iter()
        .map(|it| {
            let m = if it.t.is_input() { "" } else { "mut " };
            format!("{}: &{m}[{}], ", it.param, it.elem())
        })
        .collect()
}

/// `Model::run`: allocates the workspace and calls `run_with_workspace`.
fn model_run(w: &mut String, items: &[Item]) {
    emit!(
        w,
        "        /// Runs the model on `batch` samples with a workspace it allocates."
    );
    emit!(w, "        ///");
    emit!(w, "        /// # Errors");
    emit!(w, "        ///");
    emit!(
        w,
        "        /// [`Status::BatchTooLarge`], or a slice of the wrong length."
    );
    emit!(w, "        #[allow(clippy::too_many_arguments)]");
    emit!(
        w,
        "        pub fn run(&self, {}batch: usize) -> Result<(), Status> {{",
        slice_params(items)
    );
    emit!(w, "            let size = workspace_size(batch).ok_or(Status::BatchTooLarge {{ batch, max: MAX_BATCH }})?;");
    emit!(w, "            let mut workspace = ::std::vec![0u8; size];");
    let args: String = items.iter().map(|it| format!("{}, ", it.param)).collect();
    emit!(
        w,
        "            self.run_with_workspace({args}&mut workspace, batch)"
    );
    emit!(w, "        }}");
    emit!(w);
}

/// `Model::run_with_workspace`: checks every slice's length and the
/// workspace's size, calls `<model>_run` and maps its status code.
fn model_run_with_workspace(w: &mut String, abi: &ModelAbi, items: &[Item]) {
    w.push_str(RUN_WITH_WORKSPACE_DOC);
    emit!(
        w,
        "        pub fn run_with_workspace(&self, {}workspace: &mut [u8], batch: usize) -> Result<(), Status> {{",
        slice_params(items)
    );
    emit!(
        w,
        "            let too_large = Status::BatchTooLarge {{ batch, max: MAX_BATCH }};"
    );
    emit!(
        w,
        "            let required = workspace_size(batch).ok_or(too_large)?;"
    );
    for it in items {
        length_check(w, it);
    }
    emit!(w, "            if workspace.len() < required {{");
    emit!(w, "                return Err(Status::WorkspaceTooSmall {{ required, actual: workspace.len() }});");
    emit!(w, "            }}");
    let call_args: Vec<String> = items
        .iter()
        .map(|it| {
            let ptr = if it.t.is_input() {
                "as_ptr"
            } else {
                "as_mut_ptr"
            };
            format!("{}.{ptr}()", it.param)
        })
        .chain([
            "workspace.as_mut_ptr().cast()".to_string(),
            "batch".to_string(),
        ])
        .collect();
    w.push_str(CALL_SAFETY);
    emit!(
        w,
        "            let code = unsafe {{ ffi::{}({}) }};",
        abi.entry.run,
        call_args.join(", ")
    );
    emit!(w, "            match code {{");
    for c in abi.status {
        let result = match c.kind {
            StatusKind::Ok => "Ok(())",
            StatusKind::NullPointer => "Err(Status::NullPointer)",
            StatusKind::BatchTooLarge => "Err(too_large)",
            StatusKind::WorkspaceTooSmall => {
                "Err(Status::WorkspaceTooSmall { required, actual: workspace.len() })"
            }
        };
        emit!(w, "                ffi::{} => {result},", c.name);
    }
    emit!(w, "                other => Err(Status::Unknown(other)),");
    emit!(w, "            }}");
    emit!(w, "        }}");
}

/// The doc comment and attributes of `run_with_workspace`.
const RUN_WITH_WORKSPACE_DOC: &str =
    "        /// Runs the model on `batch` samples with the caller's workspace of at least
        /// `workspace_size(batch)` bytes (reuse it across calls to avoid allocating).
        ///
        /// # Errors
        ///
        /// [`Status::BatchTooLarge`], a slice of the wrong length, or a workspace too small.
        #[allow(clippy::too_many_arguments)]
";

/// Why the call of the entry point in `run_with_workspace` is sound.
const CALL_SAFETY: &str =
    "            // SAFETY: `Model::new` checked the CPU runs the object's instructions; every
            // slice holds exactly the elements the object reads or writes for `batch`
            // samples, the workspace at least the bytes it uses, and the borrows keep the
            // outputs and the workspace disjoint from each other and from the inputs.
";

/// The check in `run_with_workspace` that one slice has the length `batch`
/// needs (independent of `batch` for an unbatched tensor).
fn length_check(w: &mut String, it: &Item) {
    let variant = if it.t.is_input() {
        "InputLength"
    } else {
        "OutputLength"
    };
    if it.t.batched {
        emit!(
            w,
            "            let expected = {}_LEN.checked_mul(batch).ok_or(too_large)?;",
            it.konst
        );
    } else {
        emit!(w, "            let expected = {}_LEN;", it.konst);
    }
    emit!(w, "            if {}.len() != expected {{", it.param);
    emit!(
        w,
        "                return Err(Status::{variant} {{ name: {:?}, expected, actual: {}.len() }});",
        it.t.name,
        it.param
    );
    emit!(w, "            }}");
}

/// `pack_b1` and `unpack_b1`, for models with bit-packed inputs or outputs.
const B1_HELPERS: &str = r#"
    /// Packs ±1 values, `channels` per row (row-major; a negative value is -1, anything
    /// else +1), into the bit-packed layout of `b1` tensors.
    ///
    /// # Panics
    ///
    /// If `channels` is 0 or does not divide `values.len()`.
    #[must_use]
    pub fn pack_b1(values: &[i32], channels: usize) -> ::std::vec::Vec<u64> {
        assert!(channels > 0 && values.len().is_multiple_of(channels), "pack_b1: {} values are not rows of {channels}", values.len());
        let per_row = channels.div_ceil(64);
        let mut words = ::std::vec![0u64; values.len() / channels * per_row];
        for (i, &v) in values.iter().enumerate() {
            if v < 0 {
                let (row, c) = (i / channels, i % channels);
                words[row * per_row + c / 64] |= 1u64 << (c % 64);
            }
        }
        words
    }

    /// Unpacks bit-packed rows of `channels` channels to ±1 values.
    ///
    /// # Panics
    ///
    /// If `channels` is 0 or `words` is not whole rows.
    #[must_use]
    pub fn unpack_b1(words: &[u64], channels: usize) -> ::std::vec::Vec<i32> {
        let per_row = channels.div_ceil(64);
        assert!(channels > 0 && words.len().is_multiple_of(per_row), "unpack_b1: {} words are not rows of {channels} channels", words.len());
        let rows = words.len() / per_row;
        (0..rows * channels)
            .map(|i| {
                let (row, c) = (i / channels, i % channels);
                if (words[row * per_row + c / 64] >> (c % 64)) & 1 == 1 { -1 } else { 1 }
            })
            .collect()
    }
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{lowered, mixed_source};

    #[test]
    fn bindings_for_f32_i32_b1() {
        let l = lowered(&mixed_source());
        let t = Target::parse("x86_64+popcnt+sse41").unwrap();
        let rs = rust_bindings(&l, &t, Path::new("models/mixed.ir"));
        for want in [
            "pub mod mixed_net {",
            "pub const NAME: &str = \"mixed_net\";",
            "pub const TARGET: &str = \"x86_64+popcnt+sse41\";",
            "pub const NUM_INPUTS: usize = 4;",
            "pub const NUM_OUTPUTS: usize = 3;",
            "pub const INPUT_X_LEN: usize = 3;",
            "pub const INPUT_X_BATCHED: bool = true;",
            "pub const INPUT_K_LEN: usize = 2;",
            // 70 channels: two words per row.
            "pub const INPUT_B_LEN: usize = 2;",
            "pub const INPUT_B_ROWS: usize = 1;",
            "pub const INPUT_B_CHANNELS: usize = 70;",
            "pub const INPUT_B_WORDS_PER_ROW: usize = 2;",
            "pub const INPUT_B_SHAPE: &[usize] = &[70];",
            "pub const INPUT_T_LEN: usize = 3;",
            "pub const INPUT_T_BATCHED: bool = false;",
            "pub const OUTPUT_Y_LEN: usize = 3;",
            "pub const OUTPUT_S_LEN: usize = 2;",
            "pub const OUTPUT_SX_LEN: usize = 1;",
            "pub const OUTPUT_SX_CHANNELS: usize = 3;",
            &format!(
                "pub const WORKSPACE_FIXED: usize = {};",
                grouped(l.workspace.fixed)
            ),
            &format!(
                "pub const WORKSPACE_PER_SAMPLE: usize = {};",
                grouped(l.workspace.per_sample)
            ),
            &format!(
                "pub const MAX_BATCH: usize = {};",
                grouped(l.workspace.max_batch)
            ),
            "/// `int32_t mixed_net_run(const float *x, const int32_t *k, const uint64_t *b, \
             const float *t, float *y, int32_t *s, uint64_t *sx, void *workspace, size_t batch)`",
            "pub fn mixed_net_run(x: *const f32, k: *const i32, b: *const u64, t: *const f32, \
             y: *mut f32, s: *mut i32, sx: *mut u64, workspace: *mut ::core::ffi::c_void, \
             batch: usize) -> i32;",
            "pub fn mixed_net_run_v(",
            "pub fn mixed_net_workspace_size(batch: usize) -> usize;",
            "pub fn run(&self, x: &[f32], k: &[i32], b: &[u64], t: &[f32], y: &mut [f32], \
             s: &mut [i32], sx: &mut [u64], batch: usize) -> Result<(), Status> {",
            "pub fn run_with_workspace(&self, x: &[f32], k: &[i32], b: &[u64], t: &[f32], \
             y: &mut [f32], s: &mut [i32], sx: &mut [u64], workspace: &mut [u8], batch: usize)",
            "let expected = INPUT_B_LEN.checked_mul(batch).ok_or(too_large)?;",
            // The unbatched input's length does not depend on the batch.
            "let expected = INPUT_T_LEN;",
            "return Err(Status::OutputLength { name: \"sx\", expected, actual: sx.len() });",
            "ffi::mixed_net_run(x.as_ptr(), k.as_ptr(), b.as_ptr(), t.as_ptr(), y.as_mut_ptr(), \
             s.as_mut_ptr(), sx.as_mut_ptr(), workspace.as_mut_ptr().cast(), batch)",
            "if !::std::is_x86_feature_detected!(\"popcnt\") {",
            "if !::std::is_x86_feature_detected!(\"sse4.1\") {",
            "return Err(Status::UnsupportedCpu { feature: \"sse41\" });",
            "pub fn pack_b1(",
            "pub fn unpack_b1(",
            "#[cfg(not(target_arch = \"x86_64\"))]",
        ] {
            assert!(rs.contains(want), "missing `{want}` in:\n{rs}");
        }
        // No b1 helpers without b1 tensors; aarch64 feature checks.
        let l = lowered("model plain\ninput x: f32[N, 4]\ny = relu(x)\noutput y\n");
        let t = Target::parse("aarch64+dotprod").unwrap();
        let rs = rust_bindings(&l, &t, Path::new("plain.ir"));
        assert!(!rs.contains("pack_b1"));
        assert!(rs.contains("::std::arch::is_aarch64_feature_detected!(\"dotprod\")"));
        assert!(rs.contains("#[cfg(not(target_arch = \"aarch64\"))]"));
    }

    #[test]
    fn binding_names_are_valid_and_distinct() {
        assert_eq!(rust_ident("x.0"), "x_0");
        assert_eq!(rust_ident("type"), "type_");
        assert_eq!(rust_ident("self"), "self_");
        assert_eq!(rust_ident("_"), "v__");
        assert_eq!(rust_ident("9a"), "v_9a");
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1_000");
        assert_eq!(grouped(805112782546680), "805_112_782_546_680");
        // `batch` and `workspace` are parameters of `run`; `a.b` and `a_b` clash.
        let l = lowered(
            "model m\ninput batch: f32[N, 2]\ninput a.b: f32[N, 2]\ninput a_b: f32[N, 2]\n\
             y = add(batch, a.b)\nworkspace = add(y, a_b)\noutput workspace\n",
        );
        let rs = rust_bindings(&l, &Target::parse("x86_64").unwrap(), Path::new("m.ir"));
        assert!(
            rs.contains("pub fn run(&self, batch_2: &[f32], a_b: &[f32], a_b_2: &[f32], workspace_2: &mut [f32], batch: usize)"),
            "{rs}"
        );
        assert!(rs.contains("pub const INPUT_A_B_LEN"));
        assert!(rs.contains("pub const INPUT_A_B_2_LEN"));
        assert!(rs.contains("pub const OUTPUT_WORKSPACE_LEN"));
    }
}
