//! Fuzzing of the pipeline with mutated models: the text of every corpus and
//! example model (`tests/corpus/*.ir`, `examples/*.ir`, `examples/train/*.ir`)
//! is mutated (numbers, huge ones included: 65536, 2147483647, 99999999999;
//! dimensions and `N`; element types; op names; attributes changed, added and
//! removed; lines deleted and swapped; operands swapped and replaced) and
//! each mutant goes through every stage that accepts it:
//!
//! parse -> verify -> weights -> optimize -> Cranelift JIT at -O0 (the model
//! as written) and -O1 (the optimized model) -> the interpreter and both JITs
//! on random inputs at batch 2 (one sample with NaN and infinities).
//!
//! A case fails (a *finding*) when a stage panics (each stage runs under
//! `catch_unwind`), when the process dies (an abort, a stack overflow, an
//! allocation refused by the bound below), when a stage makes no progress for
//! `BNNC_FUZZ_STALL_SECS` seconds (default 600: a hang, not a measure of
//! speed), when the optimizer fails (every `OptError` is a bug), when the
//! lowering or a backend reports an internal error or fails on the kir it
//! was given, or when an output of the optimized model (interpreter) or of
//! either JIT differs from the interpreter's on the model as written, bit
//! for bit with any two NaNs equal. Other errors are not findings: a mutant
//! that does not parse, verify, load its weights or lower (unsupported
//! types, a workspace that would overflow) is refused, which is right; the
//! summary counts each kind of refusal.
//!
//! **Allocation bound.** The test binary's global allocator counts the bytes
//! alive and refuses (returns null for) any allocation that would take them
//! past 1 GiB, without asking the system. A fallible allocation
//! (`try_reserve`) sees an error; any other aborts the process, which the
//! harness reports as a finding with the size asked for. So a stage whose
//! memory grows with a declared dimension rather than with the graph and its
//! weights is found without the machine running out of memory.
//!
//! **Weights.** A mutant keeps its source's weights when they still match
//! its declarations; otherwise it gets `bnnc_train::init` weights (random
//! statistics, seeded by the case). Mutants declaring more than 2^22 weight
//! elements stop after verification; mutants whose values or work at batch
//! 2 exceed 2^24 elements or 2^27 multiply-adds compile but do not run (the
//! interpreter would need that memory and time). These bounds are the test's,
//! and keep every case small.
//!
//! **Processes.** The cases run in child processes (this binary again, with
//! `BNNC_FUZZ_CHILD` set), `BNNC_TEST_THREADS` (default: the CPUs) side by
//! side; when one dies the harness records the finding and starts another
//! at the next case, so one run reports every finding at once, each with its
//! stage, message, mutations and model text.
//!
//! **Variables.** `BNNC_FUZZ_CASES` (default 2,000: what CI runs; about 40
//! seconds on two cores), `BNNC_FUZZ_SEED` (default 0: CI runs the same cases
//! every time; any other seed gives other cases), `BNNC_FUZZ_CASE=K` (run
//! case K alone and print its model), `BNNC_FUZZ_STALL_SECS`.
//!
//! A case is reproduced with `BNNC_FUZZ_CASE=K cargo test -p bnnc-tests
//! --test fuzz` (and the same `BNNC_FUZZ_SEED`).
//!
//! The binary has its own `main` (`harness = false` in `tests/Cargo.toml`)
//! so that it can be its own child process; it runs the one test
//! `mutated_models_never_crash` unless a filter given on the command line
//! excludes it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use bnnc::compile::{Backend, CompileError, CompileOptions};
use bnnc::jit::JitModel;
use bnnc::lower::LowerError;
use bnnc_ir::{Graph, Model, Op, Tensor, TensorType, Weights};
use bnnc_tests::diff::{compare_outputs, inputs, Specials};
use bnnc_tests::gen::Rng;
use bnnc_tests::runner::model_files;

/// The name the harness reports, and filters match.
const TEST_NAME: &str = "mutated_models_never_crash";
/// Cases CI runs (`BNNC_FUZZ_CASES` overrides).
const DEFAULT_CASES: usize = 2000;
/// Bytes alive at most in a child process.
const ALLOC_LIMIT: usize = 1 << 30;
/// Added to the limit after its first small refusal in a case, so that the
/// abort can print its backtrace (which reads this binary's debug
/// information into memory).
const HEADROOM: usize = 512 << 20;
/// Weight elements a mutant may declare and still be optimized and compiled.
const MAX_WEIGHT_ELEMENTS: usize = 1 << 22;
/// Elements of all values at batch 2 for a mutant to run.
const MAX_RUN_ELEMENTS: usize = 1 << 24;
/// Multiply-adds (or element operations) at batch 2 for a mutant to run.
const MAX_RUN_WORK: u64 = 1 << 27;
/// The batch the mutants run at.
const BATCH: usize = 2;

const CHILD: &str = "BNNC_FUZZ_CHILD";

// ---------------------------------------------------------------- allocator

/// The system allocator, refusing what would take the bytes alive past
/// [`LIMIT`] (counted, never asked of the system).
struct Bounded;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);
/// The largest request refused in the current case (0: none).
static REFUSED: AtomicUsize = AtomicUsize::new(0);
static GAVE_HEADROOM: AtomicBool = AtomicBool::new(false);

#[global_allocator]
static ALLOCATOR: Bounded = Bounded;

fn reserve(n: usize) -> bool {
    // `n` is at most `isize::MAX` and `LIVE` at most the limit plus what
    // other threads add meanwhile: the sum does not wrap.
    let after = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    if after > LIMIT.load(Ordering::Relaxed) {
        LIVE.fetch_sub(n, Ordering::Relaxed);
        // A small request refused is the bound reached by many allocations
        // (a large one may be a `try_reserve` that copes): the abort that
        // follows prints a backtrace, which allocates, so leave it room.
        REFUSED.fetch_max(n, Ordering::Relaxed);
        if n < 1 << 20 && !GAVE_HEADROOM.swap(true, Ordering::Relaxed) {
            LIMIT.fetch_add(HEADROOM, Ordering::Relaxed);
        }
        return false;
    }
    PEAK.fetch_max(after, Ordering::Relaxed);
    true
}

fn release(n: usize) {
    LIVE.fetch_sub(n, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to `System` with the caller's arguments;
// the counting only decides whether to forward an allocation at all.
unsafe impl GlobalAlloc for Bounded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !reserve(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc(layout) };
        if p.is_null() {
            release(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !reserve(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc_zeroed(layout) };
        if p.is_null() {
            release(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) };
        release(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = layout.size();
        if new_size > old && !reserve(new_size - old) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded as is.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            if new_size > old {
                release(new_size - old);
            }
        } else if new_size < old {
            release(old - new_size);
        }
        p
    }
}

// ---------------------------------------------------------------- mutation

/// A source model: its label, path and lines (comments and blank lines
/// dropped: every line is code).
struct Source {
    label: String,
    path: PathBuf,
    lines: Vec<String>,
}

fn sources() -> Vec<Source> {
    let mut v = Vec::new();
    for dir in ["tests/corpus", "examples", "examples/train"] {
        for path in model_files(dir) {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let lines = text
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                .map(str::to_string)
                .collect();
            let label = format!(
                "{}/{}",
                dir.trim_start_matches("tests/"),
                path.file_stem().unwrap().to_string_lossy()
            );
            v.push(Source { label, path, lines });
        }
    }
    assert!(v.len() >= 20, "{} source models", v.len());
    v
}

/// One fuzz case: a mutated source.
struct Mutant {
    source: usize,
    text: String,
    /// What was changed, one entry per mutation.
    edits: Vec<String>,
}

/// Numbers a mutation writes: huge ones (past `u16`, `i32`, `u32`, `u64`;
/// float extremes) and small ones.
const HUGE: [&str; 14] = [
    "65536",
    "65535",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967297",
    "99999999999",
    "18446744073709551615",
    "18446744073709551616",
    "-2147483648",
    "1e30",
    "3.4e38",
    "1e-45",
    "-0.0",
];
const SMALL: [&str; 12] = [
    "0", "1", "2", "3", "4", "7", "8", "63", "64", "65", "-1", "0.5",
];
const ELEMS: [&str; 9] = ["f32", "i32", "b1", "ternary", "u2", "u4", "u8", "i2", "i8"];

/// An op as the mutations see it: its name, operand count (concat: 2), the
/// attributes it needs when it replaces another op, and values to try for
/// each attribute.
struct OpSpec {
    name: &'static str,
    operands: usize,
    required: &'static str,
    attrs: &'static [(&'static str, &'static [&'static str])],
}

const AXES: &[&str] = &["-1", "0", "1", "2", "3", "-4", "65536", "-2147483648"];
const POOL: &[(&str, &[&str])] = &[
    ("kernel", &["1", "2", "3", "[2, 3]", "65536", "2147483647"]),
    ("stride", &["1", "2", "65536"]),
    (
        "padding",
        &["0", "1", "[0, 1, 1, 0]", "65536", "99999999999"],
    ),
];

const OP_SPECS: &[OpSpec] = &[
    OpSpec {
        name: "sign",
        operands: 1,
        required: "",
        attrs: &[],
    },
    OpSpec {
        name: "quantize",
        operands: 1,
        required: "to=u4, scale=0.125",
        attrs: &[
            ("to", &["u2", "u4", "u8", "i8", "i2"]),
            ("scale", &["0.125", "0", "1e-45", "65536", "3.4e38"]),
            ("zero_point", &["0", "1", "-1", "2147483647", "-2147483648"]),
        ],
    },
    OpSpec {
        name: "dequantize",
        operands: 1,
        required: "scale=0.125",
        attrs: &[
            ("scale", &["0.125", "0", "1e-45", "3.4e38"]),
            ("zero_point", &["0", "1", "2147483647", "-2147483648"]),
        ],
    },
    OpSpec {
        name: "ternarize",
        operands: 1,
        required: "delta=0.5",
        attrs: &[("delta", &["0", "0.5", "1e30"])],
    },
    OpSpec {
        name: "threshold",
        operands: 2,
        required: "",
        attrs: &[],
    },
    OpSpec {
        name: "table",
        operands: 2,
        required: "lo=-64",
        attrs: &[("lo", &["-64", "0", "-2147483648", "2147483647"])],
    },
    OpSpec {
        name: "fill",
        operands: 1,
        required: "value=1, to=b1",
        attrs: &[
            ("value", &["1", "-1", "0.5", "65536"]),
            ("to", &["b1", "i32", "f32"]),
        ],
    },
    OpSpec {
        name: "conv2d",
        operands: 2,
        required: "",
        attrs: &[
            ("stride", &["1", "2", "[2, 1]", "65536", "2147483647"]),
            (
                "padding",
                &[
                    "0",
                    "1",
                    "2",
                    "[0, 3, 2, 1]",
                    "65536",
                    "99999999999",
                    "2147483647",
                ],
            ),
            ("dilation", &["1", "2", "65536", "2147483647"]),
            ("groups", &["1", "2", "3", "65536", "2147483647"]),
            ("pad_value", &["+1", "-1", "0"]),
        ],
    },
    OpSpec {
        name: "dense",
        operands: 2,
        required: "",
        attrs: &[],
    },
    OpSpec {
        name: "batchnorm",
        operands: 5,
        required: "",
        attrs: &[("eps", &["0", "1e-5", "1e30", "3.4e38"])],
    },
    OpSpec {
        name: "add",
        operands: 2,
        required: "",
        attrs: &[],
    },
    OpSpec {
        name: "sub",
        operands: 2,
        required: "",
        attrs: &[],
    },
    OpSpec {
        name: "mul",
        operands: 2,
        required: "",
        attrs: &[],
    },
    OpSpec {
        name: "relu",
        operands: 1,
        required: "",
        attrs: &[],
    },
    OpSpec {
        name: "prelu",
        operands: 2,
        required: "",
        attrs: &[],
    },
    OpSpec {
        name: "rprelu",
        operands: 4,
        required: "",
        attrs: &[],
    },
    OpSpec {
        name: "hardtanh",
        operands: 1,
        required: "",
        attrs: &[],
    },
    OpSpec {
        name: "clip",
        operands: 1,
        required: "min=-1, max=1",
        attrs: &[
            ("min", &["-1", "0", "-3.4e38"]),
            ("max", &["1", "6", "65536", "3.4e38"]),
        ],
    },
    OpSpec {
        name: "sigmoid",
        operands: 1,
        required: "",
        attrs: &[],
    },
    OpSpec {
        name: "maxpool2d",
        operands: 1,
        required: "kernel=2",
        attrs: POOL,
    },
    OpSpec {
        name: "avgpool2d",
        operands: 1,
        required: "kernel=2",
        attrs: POOL,
    },
    OpSpec {
        name: "global_avgpool",
        operands: 1,
        required: "",
        attrs: &[],
    },
    OpSpec {
        name: "concat",
        operands: 2,
        required: "",
        attrs: &[("axis", AXES)],
    },
    OpSpec {
        name: "replicate",
        operands: 1,
        required: "times=2",
        attrs: &[("times", &["1", "2", "3", "65536", "2147483647"])],
    },
    OpSpec {
        name: "channel_shuffle",
        operands: 1,
        required: "groups=2",
        attrs: &[("groups", &["1", "2", "3", "65536"])],
    },
    OpSpec {
        name: "flatten",
        operands: 1,
        required: "",
        attrs: &[],
    },
    OpSpec {
        name: "reshape",
        operands: 1,
        required: "shape=[N, 7, 7, 64]",
        attrs: &[(
            "shape",
            &[
                "[N, 2147483647, 2]",
                "[N, 65536, 1]",
                "[N, 1]",
                "[2, 3]",
                "[N, 99999999999]",
            ],
        )],
    },
    OpSpec {
        name: "softmax",
        operands: 1,
        required: "",
        attrs: &[("axis", AXES)],
    },
    OpSpec {
        name: "argmax",
        operands: 1,
        required: "",
        attrs: &[("axis", AXES)],
    },
];

/// Byte ranges of the number tokens of `line` (not parts of names such as
/// `w1` or `@bn.gamma`).
fn numbers(line: &str) -> Vec<(usize, usize)> {
    let b = line.as_bytes();
    let mut v = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let starts = b[i].is_ascii_digit()
            || ((b[i] == b'-' || b[i] == b'+') && b.get(i + 1).is_some_and(u8::is_ascii_digit));
        let glued = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b"_.@".contains(&b[i - 1]));
        if starts && !glued {
            let s = i;
            i += 1;
            while i < b.len()
                && (b[i].is_ascii_digit()
                    || b[i] == b'.'
                    || b[i] == b'e'
                    || ((b[i] == b'-' || b[i] == b'+') && b[i - 1] == b'e'))
            {
                i += 1;
            }
            v.push((s, i));
        } else {
            i += 1;
        }
    }
    v
}

/// Byte ranges of the insides of the brackets of `line` (shapes, constants).
fn brackets(line: &str) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    let mut open = None;
    for (i, c) in line.char_indices() {
        match c {
            '[' => open = Some(i + 1),
            ']' => {
                if let Some(s) = open.take() {
                    v.push((s, i));
                }
            }
            _ => {}
        }
    }
    v
}

/// A call line `name = op(args)`: where the op's name is, its spec, and
/// each argument's byte range (commas inside brackets do not split).
struct Call {
    op: (usize, usize),
    spec: Option<&'static OpSpec>,
    args: Vec<(usize, usize)>,
}

impl Call {
    fn parse(line: &str) -> Option<Call> {
        let eq = line.find('=')?;
        let open = line.find('(')?;
        let close = line.rfind(')')?;
        if !(eq < open && open < close) {
            return None;
        }
        let name = line[eq + 1..open].trim();
        let start = open - name.len();
        let mut args = Vec::new();
        let mut depth = 0i32;
        let mut from = open + 1;
        for (i, c) in line[open + 1..close].char_indices() {
            let i = open + 1 + i;
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                ',' if depth == 0 => {
                    args.push((from, i));
                    from = i + 1;
                }
                _ => {}
            }
        }
        args.push((from, close));
        Some(Call {
            op: (start, open),
            spec: OP_SPECS.iter().find(|s| s.name == name),
            args,
        })
    }

    /// The operands' ranges (arguments without `=`).
    fn operands(&self, line: &str) -> Vec<(usize, usize)> {
        self.args
            .iter()
            .copied()
            .filter(|&(s, e)| !line[s..e].contains('=') && !line[s..e].trim().is_empty())
            .collect()
    }

    /// The range of attribute `key`'s value, if the call has it.
    fn attr(&self, line: &str, key: &str) -> Option<(usize, usize)> {
        self.args.iter().find_map(|&(s, e)| {
            let (k, _) = line[s..e].split_once('=')?;
            (k.trim() == key).then(|| (s + k.len() + 1, e))
        })
    }
}

/// The value a line defines (`name = ...`, `input name: ...`), if any.
fn defined(line: &str) -> Option<&str> {
    let lhs = match line.strip_prefix("input ") {
        Some(rest) => rest.split_once(':')?.0,
        None => line.split_once('=')?.0,
    }
    .trim();
    (!lhs.is_empty()
        && lhs
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '.'))
    .then_some(lhs)
}

struct Mutator {
    rng: Rng,
}

impl Mutator {
    fn below(&mut self, n: usize) -> usize {
        self.rng.int(0, n.max(1) as i64 - 1) as usize
    }

    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }

    /// A line index whose line passes `f`, if any.
    fn line_where(&mut self, lines: &[String], f: impl Fn(&str) -> bool) -> Option<usize> {
        let ok: Vec<usize> = (0..lines.len()).filter(|&i| f(&lines[i])).collect();
        (!ok.is_empty()).then(|| ok[self.below(ok.len())])
    }

    /// Replaces `range` of line `i` with `with`; describes the edit.
    fn splice(lines: &mut [String], i: usize, range: (usize, usize), with: &str) -> String {
        let old = lines[i][range.0..range.1].trim().to_string();
        lines[i].replace_range(range.0..range.1, with);
        format!("line {}: `{old}` -> `{}`", i + 1, with.trim())
    }

    /// A new number for `old`: a huge or small one, or a neighbour.
    fn number(&mut self, old: &str) -> String {
        match self.below(3) {
            0 => self.pick(&HUGE).to_string(),
            1 => self.pick(&SMALL).to_string(),
            _ => match old.parse::<i64>() {
                Ok(n) => match self.below(4) {
                    0 => n.wrapping_add(1),
                    1 => n.wrapping_sub(1),
                    2 => n.wrapping_mul(2),
                    _ => n.wrapping_mul(1000),
                }
                .to_string(),
                Err(_) => self.pick(&HUGE).to_string(),
            },
        }
    }

    /// One mutation of `lines` (described), or `None` when the chosen kind
    /// found nothing to change.
    fn mutate(&mut self, lines: &mut Vec<String>) -> Option<String> {
        let call = |l: &str| Call::parse(l).filter(|c| c.spec.is_some());
        match self.below(20) {
            0..=5 => {
                let i = self.line_where(lines, |l| !numbers(l).is_empty())?;
                let ns = numbers(&lines[i]);
                let r = ns[self.below(ns.len())];
                let new = self.number(&lines[i][r.0..r.1]);
                Some(Self::splice(lines, i, r, &new))
            }
            6 | 7 => {
                // A dimension: `N` <-> a number, one added or removed.
                let i = self.line_where(lines, |l| !brackets(l).is_empty())?;
                let bs = brackets(&lines[i]);
                let r = bs[self.below(bs.len())];
                let mut items: Vec<String> = lines[i][r.0..r.1]
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .collect();
                let k = self.below(items.len());
                match self.below(4) {
                    0 => items[k] = "N".into(),
                    1 => items.insert(k, self.pick(&["1", "3", "65536", "2147483647"]).into()),
                    2 => {
                        items.remove(k);
                    }
                    _ => items[k] = self.pick(&HUGE).into(),
                }
                Some(Self::splice(lines, i, r, &items.join(", ")))
            }
            8 => {
                let i = self.line_where(lines, |l| {
                    ELEMS.iter().any(|e| l.contains(&format!("{e}[")))
                })?;
                let e = ELEMS
                    .iter()
                    .copied()
                    .find(|e| lines[i].contains(&format!("{e}[")))?;
                let at = lines[i].find(&format!("{e}["))?;
                let new = self.pick(&ELEMS);
                Some(Self::splice(lines, i, (at, at + e.len()), new))
            }
            9 | 10 => {
                // Another op with as many operands: attributes dropped, the
                // ones it needs written.
                let i = self.line_where(lines, |l| call(l).is_some())?;
                let c = call(&lines[i])?;
                let ops = c.operands(&lines[i]);
                let same: Vec<&OpSpec> = OP_SPECS
                    .iter()
                    .filter(|s| s.operands == ops.len())
                    .collect();
                let spec = same.get(self.below(same.len()))?;
                let mut args: Vec<&str> = ops.iter().map(|&(s, e)| lines[i][s..e].trim()).collect();
                if !spec.required.is_empty() {
                    args.push(spec.required);
                }
                let new = format!("{}({})", spec.name, args.join(", "));
                let end = lines[i].rfind(')')? + 1;
                Some(Self::splice(lines, i, (c.op.0, end), &new))
            }
            11..=14 => {
                // An attribute of the op set to another value (added when
                // absent).
                let i = self.line_where(lines, |l| {
                    call(l).is_some_and(|c| !c.spec.unwrap().attrs.is_empty())
                })?;
                let c = call(&lines[i])?;
                let attrs = c.spec?.attrs;
                let (key, values) = attrs[self.below(attrs.len())];
                let value = self.pick(values);
                match c.attr(&lines[i], key) {
                    Some(r) => Some(Self::splice(lines, i, r, value)),
                    None => {
                        let (_, close) = *c.args.last()?;
                        Some(Self::splice(
                            lines,
                            i,
                            (close, close),
                            &format!(", {key}={value}"),
                        ))
                    }
                }
            }
            15 => {
                // An attribute removed, with the comma before it.
                let i = self.line_where(lines, |l| {
                    call(l).is_some_and(|c| c.args.iter().any(|&(s, e)| l[s..e].contains('=')))
                })?;
                let c = call(&lines[i])?;
                let attrs: Vec<(usize, usize)> = c
                    .args
                    .iter()
                    .copied()
                    .filter(|&(s, e)| lines[i][s..e].contains('='))
                    .collect();
                let (s, e) = attrs[self.below(attrs.len())];
                let s = lines[i][..s].rfind(',').unwrap_or(s);
                Some(Self::splice(lines, i, (s, e), ""))
            }
            16 => {
                // A line deleted: an output one, or any.
                let i = if self.below(2) == 0 {
                    self.line_where(lines, |l| l.starts_with("output"))?
                } else {
                    self.below(lines.len())
                };
                let old = lines.remove(i);
                Some(format!("line {} deleted: `{old}`", i + 1))
            }
            17 => {
                // Two neighbouring lines swapped.
                let i = self.below(lines.len().saturating_sub(1));
                lines.get(i + 1)?;
                lines.swap(i, i + 1);
                Some(format!("lines {} and {} swapped", i + 1, i + 2))
            }
            _ => {
                // Operands swapped, or one replaced by an earlier value.
                let i = self.line_where(lines, |l| call(l).is_some())?;
                let c = call(&lines[i])?;
                let ops = c.operands(&lines[i]);
                if ops.len() >= 2 && self.below(2) == 0 {
                    let (a, b) = (ops[0], ops[1 + self.below(ops.len() - 1)]);
                    let (x, y) = (
                        lines[i][a.0..a.1].to_string(),
                        lines[i][b.0..b.1].to_string(),
                    );
                    let mut l = lines[i].clone();
                    l.replace_range(b.0..b.1, &x);
                    l.replace_range(a.0..a.1, &y);
                    lines[i] = l;
                    Some(format!(
                        "line {}: operands `{}` and `{}` swapped",
                        i + 1,
                        x.trim(),
                        y.trim()
                    ))
                } else {
                    let names: Vec<String> = lines[..i]
                        .iter()
                        .filter_map(|l| defined(l))
                        .map(str::to_string)
                        .collect();
                    let r = *ops.get(self.below(ops.len()))?;
                    let new = format!(" {}", names.get(self.below(names.len()))?);
                    Some(Self::splice(lines, i, r, &new))
                }
            }
        }
    }
}

/// Fuzz case `case` of the run seeded by `seed`: its source and one
/// mutation (six cases in ten), two (three in ten) or three.
fn mutant(sources: &[Source], seed: u64, case: usize) -> Mutant {
    let mut rng = Rng::new(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ case as u64);
    let source = rng.int(0, sources.len() as i64 - 1) as usize;
    let n = match rng.int(0, 9) {
        0..=5 => 1,
        6..=8 => 2,
        _ => 3,
    };
    let mut m = Mutator { rng };
    let mut lines = sources[source].lines.clone();
    let mut edits = Vec::new();
    let mut tries = 0;
    while edits.len() < n && tries < 50 && !lines.is_empty() {
        tries += 1;
        edits.extend(m.mutate(&mut lines));
    }
    Mutant {
        source,
        text: lines.join("\n") + "\n",
        edits,
    }
}

// ---------------------------------------------------------------- child

/// Where a child writes its protocol lines (stdout, flushed at each line):
/// `stage K NAME` before each stage, `finding K STAGE MESSAGE`, and
/// `end K PEAK OUTCOME` after each case. Messages are escaped to one line.
struct Out {
    case: usize,
}

static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

impl Out {
    fn line(&self, s: &str) {
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "{s}");
        let _ = o.flush();
    }

    /// Something the summary counts (refusals, by kind).
    fn note(&self, message: &str) {
        self.line(&format!("note {} {}", self.case, message.escape_default()));
    }

    fn finding(&self, stage: &str, message: &str) {
        self.line(&format!(
            "finding {} {stage} {}",
            self.case,
            message.escape_default()
        ));
    }

    /// Runs `f` as stage `name`: a panic becomes a finding and `None`.
    fn stage<T>(&self, name: &str, f: impl FnOnce() -> T) -> Option<T> {
        self.line(&format!("stage {} {name}", self.case));
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(v) => Some(v),
            Err(_) => {
                let msg = LAST_PANIC
                    .lock()
                    .map(|mut p| p.take())
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| "a panic".into());
                self.finding(name, &format!("panic: {msg}"));
                None
            }
        }
    }
}

/// What happened to one case, for the summary (findings aside).
fn run_case(
    sources: &[Source],
    weights: &mut [Option<Option<Weights>>],
    seed: u64,
    case: usize,
) -> String {
    let out = Out { case };
    let m = mutant(sources, seed, case);
    let src = &sources[m.source];
    let path = src.path.as_path();
    let panicked = || "panicked".to_string();

    let Some(parsed) = out.stage("parse", || {
        bnnc_ir::text::parse(&m.text).map_err(|d| d.render(&path.display().to_string()))
    }) else {
        return panicked();
    };
    let graph = match parsed {
        Ok(g) => g,
        Err(_) => return "refused: parse".into(),
    };
    let Some(verified) = out.stage("verify", || {
        bnnc_ir::verify::verify(&graph).map_err(|d| d.render(&path.display().to_string()))
    }) else {
        return panicked();
    };
    let types = match verified {
        Ok(t) => t,
        Err(_) => return "refused: verify".into(),
    };
    let declared = weight_elements(&graph);
    if declared > MAX_WEIGHT_ELEMENTS {
        return "skipped: weights too large to generate".into();
    }
    let Some(loaded) = out.stage("weights", || {
        let own = weights[m.source]
            .get_or_insert_with(|| source_weights(path))
            .as_ref();
        let with = |w: Option<&Weights>| Model::from_graph(graph.clone(), w, path);
        match with(own) {
            Ok(model) => Ok(model),
            Err(_) if declared > 0 => {
                let w = bnnc_train::init::init_weights(
                    &graph,
                    &types,
                    bnnc_train::init::InitOptions {
                        seed: case as u64,
                        random_stats: true,
                    },
                )
                .map_err(|d| d.render("init"))?;
                with(Some(&w)).map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        }
    }) else {
        return panicked();
    };
    let Ok(model) = loaded else {
        return "refused: weights".into();
    };

    let Some(optimized) = out.stage("optimize", || bnnc::opt::optimize(&model)) else {
        return panicked();
    };
    let optimized = match optimized {
        Ok(o) => Some(o.model),
        Err(e) => {
            out.finding("optimize", &e.to_string());
            None
        }
    };

    let host = CompileOptions::host(Backend::Cranelift)
        .expect("a host target")
        .opt_level(0)
        .emit([]);
    let mut jits = Vec::new();
    for (name, m) in [("jit -O0", Some(&model)), ("jit -O1", optimized.as_ref())] {
        let Some(m) = m else { continue };
        let Some(r) = out.stage(name, || JitModel::compile_with(m, &host)) else {
            return panicked();
        };
        match r {
            Ok(j) => jits.push((name, j)),
            Err(e) if is_refusal(&e) => out.note(&format!("{name}: {e}")),
            Err(e) => out.finding(name, &e.to_string()),
        }
    }

    let (elements, work) = run_cost(&model, BATCH);
    if elements > MAX_RUN_ELEMENTS || work > MAX_RUN_WORK {
        return "compiled, too large to run".into();
    }
    let Some(x) = out.stage("inputs", || {
        inputs(&model, BATCH, case as u64, Specials::Sample(1))
    }) else {
        return panicked();
    };
    let Some(want) = out.stage("interpreter", || bnnc_runtime::run(&model, &x)) else {
        return panicked();
    };
    let want = match want {
        Ok(w) => w,
        Err(e) => {
            out.note(&format!("interpreter: {e}"));
            return "compiled, the interpreter refused to run it".into();
        }
    };
    let mut compared = 0;
    if let Some(o) = &optimized {
        let Some(got) = out.stage("interpreter -O1", || bnnc_runtime::run(o, &x)) else {
            return panicked();
        };
        compared += 1;
        match got {
            Ok(got) => check(&out, "interpreter -O1", &model, &got, &want),
            Err(e) => out.finding(
                "interpreter -O1",
                &format!("the optimized model fails where the original runs: {e}"),
            ),
        }
    }
    for (name, j) in &jits {
        let stage = format!("{name} run");
        let Some(got) = out.stage(&stage, || j.run(&x)) else {
            return panicked();
        };
        match got {
            Ok(got) => {
                compared += 1;
                check(&out, &stage, &model, &got, &want)
            }
            Err(e) => out.note(&format!("{stage}: {e}")),
        }
    }
    format!("ran, {compared} of 3 engines compared with the interpreter")
}

/// Whether a compile error refuses the model rightly (types the native
/// backends do not lower, a workspace past the address space, constants the
/// interpreter cannot fold) rather than failing on a model it should take.
fn is_refusal(e: &CompileError) -> bool {
    matches!(
        e,
        CompileError::Lower(
            LowerError::Unsupported { .. }
                | LowerError::WorkspaceOverflow { .. }
                | LowerError::ConstFold { .. }
        )
    )
}

/// A finding when `got` differs from the interpreter's `want`.
fn check(out: &Out, stage: &str, model: &Model, got: &[Tensor], want: &[Tensor]) {
    if let Err(e) = compare_outputs(model, got, want, stage, 0) {
        out.finding(stage, &format!("differs from the interpreter: {e}"));
    }
}

/// The weights a source model ships (or `bnnc init --seed 1` writes for
/// it); `None` when it names none.
fn source_weights(path: &Path) -> Option<Weights> {
    let text = std::fs::read_to_string(path).ok()?;
    let graph = bnnc_ir::text::parse(&text).ok()?;
    let wp = Model::weights_path(&graph, path)?;
    if wp.exists() {
        return Weights::load(&wp).ok();
    }
    let types = bnnc_ir::verify::verify(&graph).ok()?;
    let opts = bnnc_train::init::InitOptions {
        seed: 1,
        random_stats: false,
    };
    bnnc_train::init::init_weights(&graph, &types, opts).ok()
}

/// The weight elements `graph` declares (saturating).
fn weight_elements(graph: &Graph) -> usize {
    graph
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::Weight { ty, .. } => Some(ty.numel(1)),
            _ => None,
        })
        .fold(0usize, usize::saturating_add)
}

/// Elements of every value, and multiply-adds (or element operations), of
/// `model` at `batch` (saturating).
fn run_cost(model: &Model, batch: usize) -> (usize, u64) {
    let numel = |t: &TensorType| t.numel(batch);
    let mut elements = 0usize;
    let mut work = 0u64;
    for v in model.graph.ids() {
        let node = model.graph.node(v);
        let out = numel(model.ty(v));
        elements = elements.saturating_add(out);
        let per_output = match &node.op {
            Op::Conv2d(_) | Op::Dense => {
                let w = model.ty(node.inputs[1]);
                w.numel(1) / w.shape.first().map_or(1, |d| d.resolve(1)).max(1)
            }
            Op::MaxPool2d(a) | Op::AvgPool2d(a) => a.kernel[0].saturating_mul(a.kernel[1]),
            _ => 1,
        };
        let inputs: usize = node
            .inputs
            .iter()
            .map(|i| numel(model.ty(*i)))
            .fold(0, usize::saturating_add);
        work = work
            .saturating_add((out as u64).saturating_mul(per_output as u64))
            .saturating_add(inputs as u64);
    }
    (elements, work)
}

/// A child process: runs cases `from, from + step, ..` below `to`.
fn child() {
    LIMIT.store(ALLOC_LIMIT, Ordering::Relaxed);
    std::panic::set_hook(Box::new(|info| {
        let trace = std::backtrace::Backtrace::force_capture().to_string();
        let frames = repo_frames(&trace, 4);
        if let Ok(mut p) = LAST_PANIC.lock() {
            *p = Some(if frames.is_empty() {
                info.to_string()
            } else {
                format!("{info} (in {})", frames.join(" < "))
            });
        }
    }));
    let var = |name: &str| -> usize {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} must be a number"))
    };
    let (from, to, step) = (
        var("BNNC_FUZZ_FROM"),
        var("BNNC_FUZZ_TO"),
        var("BNNC_FUZZ_STEP"),
    );
    let seed = seed();
    let sources = sources();
    let mut weights: Vec<Option<Option<Weights>>> = sources.iter().map(|_| None).collect();
    for case in (from..to).step_by(step.max(1)) {
        PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
        REFUSED.store(0, Ordering::Relaxed);
        LIMIT.store(ALLOC_LIMIT, Ordering::Relaxed);
        GAVE_HEADROOM.store(false, Ordering::Relaxed);
        let base = LIVE.load(Ordering::Relaxed);
        let outcome = run_case(&sources, &mut weights, seed, case);
        let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
        let out = Out { case };
        let refused = REFUSED.load(Ordering::Relaxed);
        if refused > 0 {
            out.note(&format!(
                "an allocation of {refused} bytes past the bound was refused, and handled"
            ));
        }
        out.line(&format!("end {case} {peak} {outcome}"));
    }
}

// ---------------------------------------------------------------- parent

fn seed() -> u64 {
    std::env::var("BNNC_FUZZ_SEED")
        .ok()
        .map(|v| v.parse().expect("BNNC_FUZZ_SEED must be a number"))
        .unwrap_or(0)
}

/// What the parent learnt about one case.
#[derive(Default)]
struct CaseReport {
    stage: String,
    findings: Vec<(String, String)>,
    notes: Vec<String>,
    outcome: Option<String>,
    peak: usize,
}

/// Runs cases `from, from + step, ..` below `to` in child processes,
/// starting a new one after each that dies.
fn shard(from: usize, to: usize, step: usize, stall: Duration) -> BTreeMap<usize, CaseReport> {
    let mut reports: BTreeMap<usize, CaseReport> = BTreeMap::new();
    let mut next = from;
    while next < to {
        let mut child = Command::new(std::env::current_exe().expect("the test binary"))
            .env(CHILD, "1")
            .env("BNNC_FUZZ_FROM", next.to_string())
            .env("BNNC_FUZZ_TO", to.to_string())
            .env("BNNC_FUZZ_STEP", step.to_string())
            .env("BNNC_FUZZ_SEED", seed().to_string())
            // An aborting allocation prints where it was asked for.
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start a child process");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("piped stderr");
        let err_buf = Arc::clone(&stderr);
        let err_thread = std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let mut s = err_buf.lock().unwrap();
                if s.len() < 1 << 20 {
                    s.push_str(&String::from_utf8_lossy(&chunk[..n]));
                }
            }
        });
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().expect("piped stdout");
        let out_thread = std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let started = next;
        let mut current: Option<usize> = None;
        let mut stalled = false;
        loop {
            match rx.recv_timeout(stall) {
                Ok(line) => {
                    let mut parts = line.splitn(4, ' ');
                    let (kind, case) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                    let Ok(case) = case.parse::<usize>() else {
                        continue;
                    };
                    let r = reports.entry(case).or_default();
                    let (a, b) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                    match kind {
                        "stage" => {
                            current = Some(case);
                            r.stage = [a, b].join(" ").trim().to_string();
                        }
                        "finding" => {
                            // The stage may be two words ("jit -O0").
                            let rest = [a, b].join(" ");
                            let (stage, msg) = split_stage(&rest);
                            r.findings.push((stage, msg));
                        }
                        "note" => r.notes.push([a, b].join(" ")),
                        "end" => {
                            r.peak = a.parse().unwrap_or(0);
                            r.outcome = Some(b.to_string());
                            current = None;
                            next = case + step;
                        }
                        _ => {}
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    stalled = true;
                    let _ = child.kill();
                    break;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let status = child.wait().expect("wait for the child");
        let _ = out_thread.join();
        let _ = err_thread.join();
        if let Some(case) = current {
            let r = reports.entry(case).or_default();
            let err = stderr.lock().unwrap().clone();
            let why = if stalled {
                format!("no progress for {} s: a hang", stall.as_secs())
            } else {
                format!("the process died ({status})")
            };
            // The first lines say why (an allocation refused, a stack
            // overflow); a backtrace may follow.
            let first: Vec<&str> = err
                .lines()
                .filter(|l| !l.trim().is_empty())
                .take_while(|l| !l.starts_with("stack backtrace"))
                .take(3)
                .collect();
            let refused = if err.contains("memory allocation of") {
                " past the 1 GiB bound"
            } else {
                ""
            };
            let frames = repo_frames(&err, 4);
            let at = if frames.is_empty() {
                String::new()
            } else {
                format!(" (in {})", frames.join(" < "))
            };
            r.findings.push((
                r.stage.clone(),
                format!("{why}: {}{refused}{at}", first.join(" | ")),
            ));
            r.outcome = Some("died".into());
            next = case + step;
        } else if !status.success() || next == started {
            panic!(
                "a fuzz child stopped outside any case ({status}): {}",
                stderr.lock().unwrap()
            );
        }
    }
    reports
}

/// The first `n` frames of a printed backtrace that lie in bnnc's crates
/// (not std, not this test), as `function (file:line:col)`.
fn repo_frames(trace: &str, n: usize) -> Vec<String> {
    const CRATES: [&str; 7] = [
        "/compiler/src/",
        "/ir/src/",
        "/runtime/src/",
        "/kir/src/",
        "/train/src/",
        "/backends/cranelift/src/",
        "/backends/llvm/src/",
    ];
    let lines: Vec<&str> = trace.lines().map(str::trim).collect();
    let mut frames: Vec<String> = Vec::new();
    let mut last = "";
    for (k, l) in lines.iter().enumerate() {
        let Some(at) = l.strip_prefix("at ") else {
            continue;
        };
        let Some(c) = CRATES.iter().find_map(|c| at.find(c)) else {
            continue;
        };
        let function = k
            .checked_sub(1)
            .and_then(|j| lines[j].split_once(": "))
            .map_or("", |(_, f)| f);
        // A recursion shows once.
        if function == last {
            continue;
        }
        last = function;
        frames.push(format!("{function} ({})", &at[c + 1..]));
        if frames.len() == n {
            break;
        }
    }
    frames
}

/// `"jit -O0 run msg.."` -> (`"jit -O0 run"`, `"msg.."`) for the stage names
/// [`run_case`] uses.
fn split_stage(rest: &str) -> (String, String) {
    for stage in [
        "jit -O0 run",
        "jit -O1 run",
        "jit -O0",
        "jit -O1",
        "interpreter -O1",
    ] {
        if let Some(msg) = rest.strip_prefix(stage) {
            return (stage.to_string(), msg.trim().to_string());
        }
    }
    match rest.split_once(' ') {
        Some((s, m)) => (s.to_string(), m.to_string()),
        None => (rest.to_string(), String::new()),
    }
}

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, found `{v}`"))
    })
}

fn parent() -> bool {
    let t0 = Instant::now();
    let sources = sources();
    let seed = seed();
    let (from, to) = match env_usize("BNNC_FUZZ_CASE") {
        Some(k) => (k, k + 1),
        None => (0, env_usize("BNNC_FUZZ_CASES").unwrap_or(DEFAULT_CASES)),
    };
    let stall = Duration::from_secs(env_usize("BNNC_FUZZ_STALL_SECS").unwrap_or(600) as u64);
    let threads = env_usize("BNNC_TEST_THREADS")
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, (to - from).max(1));
    let reports: BTreeMap<usize, CaseReport> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|k| s.spawn(move || shard(from + k, to, threads, stall)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a shard thread"))
            .collect()
    });

    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    let mut notes: BTreeMap<String, usize> = BTreeMap::new();
    let mut peak = (0usize, 0usize);
    for (&case, r) in &reports {
        *outcomes
            .entry(r.outcome.as_deref().unwrap_or("unfinished"))
            .or_default() += 1;
        for n in &r.notes {
            // One entry per kind: numbers (sizes, shapes) as `#`, names
            // (in backquotes) as `_`, types as `T[..]`.
            let mut kind = String::new();
            let (mut quoted, mut shape) = (false, false);
            for c in n.chars() {
                match c {
                    '`' => {
                        quoted = !quoted;
                        if quoted {
                            kind.push_str("`_`");
                        }
                    }
                    _ if quoted => {}
                    '[' => {
                        shape = true;
                        kind.push_str("[..]");
                    }
                    ']' => shape = false,
                    _ if shape => {}
                    '0'..='9' if kind.ends_with('#') => {}
                    '0'..='9' => kind.push('#'),
                    _ => kind.push(c),
                }
            }
            let kind: String = kind.chars().take(160).collect();
            *notes.entry(kind).or_default() += 1;
        }
        if r.peak > peak.0 {
            peak = (r.peak, case);
        }
    }
    let mut log = std::io::stderr().lock();
    let _ = writeln!(
        log,
        "[fuzz] {} mutated models (seed {seed}, cases {from}..{to}) in {:.1}s; \
         largest allocation peak {:.1} MiB (case {})",
        reports.len(),
        t0.elapsed().as_secs_f64(),
        peak.0 as f64 / (1 << 20) as f64,
        peak.1
    );
    for (o, n) in &outcomes {
        let _ = writeln!(log, "[fuzz]   {n:5} {o}");
    }
    for (note, n) in &notes {
        let _ = writeln!(log, "[fuzz]   {n:5} x {note}");
    }
    let findings: Vec<(usize, &CaseReport)> = reports
        .iter()
        .filter(|(_, r)| !r.findings.is_empty())
        .map(|(&k, r)| (k, r))
        .collect();
    for &(case, r) in &findings {
        let m = mutant(&sources, seed, case);
        let _ = writeln!(
            log,
            "\n[fuzz] FINDING, case {case} (BNNC_FUZZ_CASE={case} BNNC_FUZZ_SEED={seed}), \
             {} mutated: {}",
            sources[m.source].label,
            m.edits.join("; ")
        );
        for (stage, msg) in &r.findings {
            let _ = writeln!(log, "  stage `{stage}`: {msg}");
        }
        if from + 1 == to || findings.len() <= 12 {
            let _ = writeln!(log, "  model:\n{}", indent(&m.text));
        }
    }
    if from + 1 == to && findings.is_empty() {
        let m = mutant(&sources, seed, from);
        let _ = writeln!(
            log,
            "[fuzz] case {from}: {} mutated: {}\n{}",
            sources[m.source].label,
            m.edits.join("; "),
            indent(&m.text)
        );
    }
    if !findings.is_empty() {
        let _ = writeln!(
            log,
            "\n[fuzz] {} of {} cases have findings",
            findings.len(),
            reports.len()
        );
    }
    findings.is_empty()
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

fn main() {
    if std::env::var_os(CHILD).is_some() {
        child();
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("{TEST_NAME}: test");
        return;
    }
    // libtest's filters: positional arguments; `--exact` wants the whole name.
    let exact = args.iter().any(|a| a == "--exact");
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let selected = filters.is_empty()
        || filters.iter().any(|f| {
            if exact {
                *f == TEST_NAME
            } else {
                TEST_NAME.contains(f.as_str())
            }
        });
    println!("\nrunning {} test", usize::from(selected));
    if !selected {
        println!("\ntest result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 1 filtered out\n");
        return;
    }
    let ok = parent();
    println!(
        "test {TEST_NAME} ... {}\n\ntest result: {}. {} passed; {} failed",
        if ok { "ok" } else { "FAILED" },
        if ok { "ok" } else { "FAILED" },
        u8::from(ok),
        u8::from(!ok)
    );
    if !ok {
        std::process::exit(101);
    }
}
