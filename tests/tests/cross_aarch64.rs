//! Cross-target tests: models compiled to aarch64 objects, linked with the
//! cross C compiler and the generic C driver (`tests/c/driver.c`), run under
//! qemu-user, and checked against the reference interpreter at batch 1 and 7.
//!
//! Covered: every model in `examples/`, the corpus in `tests/corpus/` (one
//! file per theme) and random graphs from the generator (those whose types
//! the native backends lower). Outputs are compared bit for bit, floats
//! included: kernels follow the interpreter's order of operations. That holds
//! for softmax and sigmoid too, although their `expf` is the host's (x86_64)
//! libm in the interpreter and the target's (aarch64) libm in the compiled
//! code; see [`EXP_ULPS`]. Packed `b1` outputs are also compared as raw bytes,
//! so their unused tail bits must be 0.
//!
//! qemu emulates a Cortex-A53 (ARMv8.0-A), so an instruction the target
//! `aarch64` does not name fails the test with SIGILL.
//!
//! The driver fills outputs and workspace with garbage before the call (the
//! code must not assume zeroed memory), runs batch 7 with a workspace pointer
//! at an odd address (the header promises any alignment), and checks the
//! null-pointer and batch-too-large error paths and `<model>_workspace_size`.
//!
//! Tools: `aarch64-linux-gnu-gcc` and `qemu-aarch64` (Debian packages
//! `gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user`); override with
//! `BNNC_AARCH64_CC` and `BNNC_QEMU_AARCH64`. When they are missing the tests
//! print why and pass, except when `CI=true`, where a missing tool fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use bnnc::compile::{compile, CompileError, CompileOptions};
use bnnc::jit::{from_words, to_words};
use bnnc::lower::{LowerError, Lowered, Storage};
use bnnc_ir::{Model, Op, Tensor, TensorData};
use bnnc_kir::target::Target;
use bnnc_tests::gen::{random_graph, GenOptions, Rng};
use bnnc_train::init::{init_weights, InitOptions};

/// The batches every model runs at.
const BATCHES: [usize; 2] = [1, 7];

/// How many random graphs run (the generator's unsupported ones not counted).
const RANDOM_GRAPHS: usize = 20;

/// Ulps allowed between interpreter and target for outputs of `softmax` and
/// `sigmoid`, whose `expf` is the C library's on each side. glibc computes
/// `expf` with one algorithm on x86_64 and aarch64 (in double precision,
/// rounded once to float; x86_64 may pick an FMA build of it), so the two can
/// only differ where the exact result lies extremely close to a float rounding
/// boundary. None of the tested values does: they match exactly. Should
/// another C library or CPU ever differ, 1 is the bound to allow, for these
/// outputs only. Everything else must match bit for bit.
const EXP_ULPS: u32 = 0;

/// The sysroot qemu uses for dynamically linked aarch64 programs.
const SYSROOT: &str = "/usr/aarch64-linux-gnu";

/// The CPU qemu emulates: an ARMv8.0-A core with NEON and nothing newer (no
/// LSE atomics, no dot products), so code for the target `aarch64`, which
/// names no feature, must run on it. qemu's default CPU would accept any
/// instruction it knows.
const QEMU_CPU: &str = "cortex-a53";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A fresh scratch directory under cargo's per-target temporary directory.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("cross_aarch64")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Tools {
    cc: String,
    qemu: String,
}

fn runs(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The cross compiler and qemu, or `None` (after printing why) when they are
/// missing outside CI. In CI (`CI=true`) a missing tool fails the test.
fn tools() -> Option<Tools> {
    let cc = std::env::var("BNNC_AARCH64_CC").unwrap_or_else(|_| "aarch64-linux-gnu-gcc".into());
    let qemu = std::env::var("BNNC_QEMU_AARCH64").unwrap_or_else(|_| "qemu-aarch64".into());
    let mut missing = Vec::new();
    if !runs(&cc, "--version") {
        missing.push(cc.clone());
    }
    if !runs(&qemu, "--version") {
        missing.push(qemu.clone());
    }
    if missing.is_empty() {
        return Some(Tools { cc, qemu });
    }
    let why = format!(
        "{} not found (install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)",
        missing.join(" and ")
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true: {why}");
    }
    eprintln!("skipping the aarch64 cross tests: {why}");
    None
}

/// A model to run, with a label for messages.
struct Case {
    label: String,
    model: Model,
    /// Extra context printed on failure (the text of a random graph).
    context: String,
}

/// How a case's executable is linked.
#[derive(Clone, Copy, PartialEq)]
enum Link {
    /// `-static`: no dynamic loader needed.
    Static,
    /// Dynamically, run with `qemu-aarch64 -L SYSROOT`.
    Dynamic,
}

/// Compiles `model` to an aarch64 object and header in `dir` and links it with
/// the driver. Returns the lowered model (for the I/O layout) and the program.
fn build(
    tools: &Tools,
    model: &Model,
    dir: &Path,
    link: Link,
) -> Result<(Lowered, PathBuf), String> {
    let target = Target::parse("aarch64").unwrap();
    let compiled = compile(model, &CompileOptions::new(target).opt_level(0))
        .map_err(|e| format!("compile: {e}"))?;
    compiled.write_to(dir).map_err(|e| format!("write: {e}"))?;
    let lowered = compiled.lowered;
    let name = &lowered.name;
    let exe = dir.join("driver");
    let mut cmd = Command::new(&tools.cc);
    cmd.args([
        "-std=c99",
        "-O1",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-pedantic",
    ])
    .arg(format!("-DBNNC_MODEL={name}"))
    .arg("-include")
    .arg(dir.join(format!("{name}.h")))
    .arg(root().join("tests/c/driver.c"))
    .arg(dir.join(format!("{name}.o")))
    .arg("-lm")
    // A linker warning (an executable stack, text relocations) is an error.
    .arg("-Wl,--fatal-warnings")
    .arg("-o")
    .arg(&exe);
    if link == Link::Static {
        cmd.arg("-static");
    }
    let out = cmd.output().map_err(|e| format!("{}: {e}", tools.cc))?;
    if !out.status.success() {
        return Err(format!(
            "link failed: {cmd:?}\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok((lowered, exe))
}

fn put_u64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_le_bytes());
}

/// The bytes of a tensor in the generated code's layout (exactly `len` bytes).
fn layout_bytes(words: &[u64], len: u64) -> Vec<u8> {
    let mut b: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    b.resize(len as usize, 0);
    b
}

/// Runs the driver under qemu on `inputs`; returns the outputs as tensors and
/// their raw bytes.
fn run_driver(
    tools: &Tools,
    l: &Lowered,
    exe: &Path,
    inputs: &[Tensor],
    batch: usize,
    ws_shift: u64,
) -> Result<Vec<(Tensor, Vec<u8>)>, String> {
    let dir = exe.parent().unwrap();
    let (inp, outp) = (
        dir.join(format!("in{batch}.bin")),
        dir.join(format!("out{batch}.bin")),
    );
    let mut buf = b"BNNCDRV1".to_vec();
    put_u64(&mut buf, batch as u64);
    put_u64(
        &mut buf,
        l.workspace.bytes(batch).ok_or("workspace overflows")?,
    );
    put_u64(&mut buf, ws_shift);
    put_u64(&mut buf, l.workspace.max_batch);
    put_u64(&mut buf, l.inputs.len() as u64);
    put_u64(&mut buf, l.outputs.len() as u64);
    for (t, d) in inputs.iter().zip(&l.inputs) {
        let n = d.bytes(batch);
        put_u64(&mut buf, n);
        buf.extend(layout_bytes(&to_words(t, d), n));
    }
    for d in &l.outputs {
        put_u64(&mut buf, d.bytes(batch));
    }
    std::fs::write(&inp, &buf).map_err(|e| e.to_string())?;
    let out = Command::new(&tools.qemu)
        .args(["-cpu", QEMU_CPU, "-L", SYSROOT])
        .arg(exe)
        .arg(&inp)
        .arg(&outp)
        .output()
        .map_err(|e| format!("{}: {e}", tools.qemu))?;
    if !out.status.success() {
        return Err(format!(
            "batch {batch}: the driver exited with {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let bytes = std::fs::read(&outp).map_err(|e| e.to_string())?;
    let total: u64 = l.outputs.iter().map(|d| d.bytes(batch)).sum();
    if bytes.len() as u64 != total {
        return Err(format!(
            "batch {batch}: {} output bytes, expected {total}",
            bytes.len()
        ));
    }
    let mut pos = 0usize;
    Ok(l.outputs
        .iter()
        .map(|d| {
            let n = d.bytes(batch) as usize;
            let raw = bytes[pos..pos + n].to_vec();
            pos += n;
            let mut words = vec![0u64; n.div_ceil(8).max(1)];
            for (i, b) in raw.iter().enumerate() {
                words[i / 8] |= (*b as u64) << (8 * (i % 8));
            }
            (from_words(&words, d, batch), raw)
        })
        .collect())
}

/// Distance in units in the last place between two finite floats of one sign
/// (`u32::MAX` otherwise, unless they are equal).
fn ulps(a: f32, b: f32) -> u32 {
    if a.to_bits() == b.to_bits() {
        return 0;
    }
    if !a.is_finite() || !b.is_finite() || a.is_sign_negative() != b.is_sign_negative() {
        return u32::MAX;
    }
    a.to_bits().abs_diff(b.to_bits())
}

/// Compares one output: `got` from the target against the interpreter's
/// `want`. `tolerance` is the ulps allowed (0 but for expf outputs).
fn compare(got: &Tensor, want: &Tensor, tolerance: u32) -> Result<(), String> {
    if got.elem != want.elem || got.dims != want.dims {
        return Err(format!(
            "type/shape: target {:?}{:?} vs interpreter {:?}{:?}",
            got.elem, got.dims, want.elem, want.dims
        ));
    }
    match (&got.data, &want.data) {
        (TensorData::F32(x), TensorData::F32(y)) => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                if p.is_nan() && q.is_nan() {
                    continue;
                }
                if ulps(*p, *q) > tolerance {
                    return Err(format!(
                        "element {i}: target {p:?} ({:#010x}) vs interpreter {q:?} ({:#010x})",
                        p.to_bits(),
                        q.to_bits()
                    ));
                }
            }
        }
        (TensorData::Int(x), TensorData::Int(y)) => {
            if let Some(i) = (0..x.len()).find(|&i| x[i] != y[i]) {
                return Err(format!(
                    "element {i}: target {} vs interpreter {}",
                    x[i], y[i]
                ));
            }
        }
        _ => return Err("storage differs".into()),
    }
    Ok(())
}

/// Whether output `k` of the model is computed by `softmax` or `sigmoid`.
fn from_exp(model: &Model, k: usize) -> bool {
    matches!(
        model.graph.node(model.graph.outputs[k]).op,
        Op::Softmax { .. } | Op::Sigmoid
    )
}

/// Inputs of the model's types at `batch`; f32 inputs also hold exact +0.0,
/// -0.0 and subnormals (neither side may flush them to zero). With
/// `nan_sample`, that sample of every batched f32 input also holds NaNs (only
/// one sample: a NaN spreads through most ops, and NaN outputs compare equal
/// to any NaN).
fn inputs_for(model: &Model, batch: usize, seed: u64, nan_sample: Option<usize>) -> Vec<Tensor> {
    let mut xs = bnnc_runtime::inputs::random_inputs(&model.graph, batch, seed).unwrap();
    for (t, &v) in xs.iter_mut().zip(&model.graph.inputs()) {
        let batched = model.ty(v).is_batched();
        if let TensorData::F32(data) = &mut t.data {
            let per_sample = data.len() / if batched { batch.max(1) } else { 1 };
            for (i, e) in data.iter_mut().enumerate() {
                match i % 11 {
                    2 => *e = 0.0,
                    5 => *e = -0.0,
                    8 => *e *= 1e-39,
                    9 if batched && nan_sample == Some(i / per_sample) => *e = f32::NAN,
                    _ => *e *= 3.0,
                }
            }
        }
    }
    xs
}

/// Builds, runs at every batch and compares one case.
fn check_case(tools: &Tools, case: &Case, dir: &Path, link: Link) -> Result<(), String> {
    let (l, exe) = build(tools, &case.model, dir, link)?;
    for (bi, &batch) in BATCHES.iter().enumerate() {
        // At batch 7, sample 5 holds NaNs.
        let nan_sample = (batch > 5).then_some(5);
        let xs = inputs_for(&case.model, batch, 17 + bi as u64, nan_sample);
        let want = bnnc_runtime::run(&case.model, &xs).map_err(|e| format!("interpreter: {e}"))?;
        // Batch 7 runs with the workspace at an odd address.
        let shift = if batch == 1 { 0 } else { 3 };
        let got = run_driver(tools, &l, &exe, &xs, batch, shift)?;
        for (k, ((g, raw), w)) in got.iter().zip(&want).enumerate() {
            let d = &l.outputs[k];
            let tol = if from_exp(&case.model, k) {
                EXP_ULPS
            } else {
                0
            };
            let mut r = compare(g, w, tol);
            if r.is_ok() && matches!(d.storage, Storage::B1 { .. }) {
                let expect = layout_bytes(&to_words(w, d), d.bytes(batch));
                if *raw != expect {
                    let i = raw.iter().zip(&expect).position(|(a, b)| a != b);
                    r = Err(format!(
                        "packed bytes differ at byte {i:?} (tail bits must be 0)"
                    ));
                }
            }
            r.map_err(|e| format!("batch {batch}, output `{}`: {e}", d.name))?;
        }
    }
    Ok(())
}

/// Runs every case, collecting failures; panics with all of them at the end.
fn check_all(tools: &Tools, suite: &str, cases: &[Case], link: Link) {
    let t0 = Instant::now();
    let mut failures = Vec::new();
    for case in cases {
        let dir = scratch(&format!("{suite}/{}", case.label));
        match check_case(tools, case, &dir, link) {
            Ok(()) => {
                let _ = std::fs::remove_dir_all(&dir);
            }
            Err(e) => failures.push(format!(
                "{} (files in {}): {e}{}",
                case.label,
                dir.display(),
                case.context
            )),
        }
    }
    eprintln!(
        "{suite}: {} models on aarch64 in {:.1}s",
        cases.len(),
        t0.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {} {suite} models differ on aarch64:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

/// The `.ir` files in `dir`, sorted.
fn ir_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ir"))
        .collect();
    v.sort();
    v
}

fn load_all(dir: &Path) -> Vec<Case> {
    ir_files(dir)
        .iter()
        .map(|p| Case {
            label: p.file_stem().unwrap().to_string_lossy().into_owned(),
            model: Model::load(p).unwrap_or_else(|e| panic!("{e}")),
            context: String::new(),
        })
        .collect()
}

/// The corpus ships the weights `bnnc init MODEL --seed 1 --random-stats`
/// writes, so other tests can load it with `Model::load`.
#[test]
fn corpus_weights_are_init_seed_1_with_random_stats() {
    let files = ir_files(&root().join("tests/corpus"));
    assert!(files.len() >= 12, "the corpus has {} models", files.len());
    for p in files {
        let src = std::fs::read_to_string(&p).unwrap();
        assert!(
            src.starts_with("# "),
            "{}: should open with a comment saying what it covers",
            p.display()
        );
        let model = Model::load(&p).unwrap_or_else(|e| panic!("{e}"));
        let fresh = init_weights(
            &model.graph,
            &model.types,
            InitOptions {
                seed: 1,
                random_stats: true,
            },
        )
        .unwrap();
        let regenerated = Model::from_graph(model.graph.clone(), Some(&fresh), &p).unwrap();
        assert_eq!(
            regenerated.consts,
            model.consts,
            "{}: the shipped weights are not `bnnc init {} --seed 1 --random-stats`",
            p.display(),
            p.display()
        );
    }
}

/// Dynamically linked (so `qemu-aarch64 -L` and the sysroot are exercised).
#[test]
fn examples_match_the_interpreter_on_aarch64() {
    let Some(tools) = tools() else { return };
    let cases = load_all(&root().join("examples"));
    assert!(cases.len() >= 4);
    check_all(&tools, "examples", &cases, Link::Dynamic);
}

#[test]
fn corpus_matches_the_interpreter_on_aarch64() {
    let Some(tools) = tools() else { return };
    let cases = load_all(&root().join("tests/corpus"));
    check_all(&tools, "corpus", &cases, Link::Static);
}

#[test]
fn random_graphs_match_the_interpreter_on_aarch64() {
    let Some(tools) = tools() else { return };
    let target = Target::parse("aarch64").unwrap();
    let mut rng = Rng::new(0xA64);
    let mut cases = Vec::new();
    let mut tried = 0;
    while cases.len() < RANDOM_GRAPHS {
        tried += 1;
        assert!(
            tried < RANDOM_GRAPHS * 10,
            "too few supported random graphs"
        );
        let choices: Vec<u32> = (0..48).map(|_| rng.next_u64() as u32).collect();
        let g = random_graph(&choices, &GenOptions { max_ops: 8 });
        let model =
            Model::from_graph(g.graph.clone(), Some(&g.weights), Path::new("random.ir")).unwrap();
        match bnnc::lower::lower(&model, &target).map_err(CompileError::Lower) {
            Err(CompileError::Lower(LowerError::Unsupported { .. })) => continue,
            Err(e) => panic!("{e}\n{}", bnnc_ir::text::print(&g.graph)),
            Ok(_) => {}
        }
        cases.push(Case {
            label: format!("random{tried}"),
            model,
            context: format!("\nchoices {choices:?}\n{}", bnnc_ir::text::print(&g.graph)),
        });
    }
    check_all(&tools, "random", &cases, Link::Static);
}
