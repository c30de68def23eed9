//! Cross-target tests of the LLVM backend: objects for aarch64 (Cortex-A72,
//! and Neoverse N1, whose code may use the dot-product instructions) and
//! riscv64 (RV64GC, and RV64GC + Zbb for `cpop`), linked statically with the
//! Debian cross compilers and the generic C driver (`tests/c/driver.c`),
//! run under qemu-user with a CPU model that has the instructions, and
//! checked against the reference interpreter at batch 1 and 7; and host
//! objects (x86_64 Haswell, or the aarch64 baseline) linked with the host's
//! `cc` and run natively, the same driver and header as Cranelift objects.
//!
//! Covered: every model in `examples/`, the corpus in `tests/corpus/` and a
//! few random graphs. Outputs are compared bit for bit, floats included,
//! except values computed from `expf` (softmax, sigmoid) on another
//! architecture, which may differ by one ulp between the host's libm (the
//! interpreter's) and the target's. Packed `b1` outputs are also compared as
//! raw bytes (tail bits must be 0).
//!
//! Tools: `aarch64-linux-gnu-gcc`, `riscv64-linux-gnu-gcc`, `qemu-aarch64`,
//! `qemu-riscv64`, `cc` (Debian: gcc-aarch64-linux-gnu libc6-dev-arm64-cross
//! gcc-riscv64-linux-gnu libc6-dev-riscv64-cross qemu-user gcc). Without
//! them, or without LLVM in the build (`--features bnnc/llvm`), the tests
//! print why they skip and pass, except under `CI=true`, where they fail.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use bnnc::compile::{compile, Backend, CompileError, CompileOptions};
use bnnc::jit::{from_words, to_words};
use bnnc::lower::{LowerError, Lowered, Storage};
use bnnc_ir::{Model, Op, Tensor, TensorData};
use bnnc_kir::target::{Arch, Target};
use bnnc_tests::gen::{random_graph, GenOptions, Rng};

const BATCHES: [usize; 2] = [1, 7];

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn skip(test: &str, why: &str) {
    if ci() {
        panic!("CI=true: {test}: {why}");
    }
    eprintln!("skipping {test}: {why}");
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("llvm_cross")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn runs(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// One way to build and run: a target, its C compiler, and how to run the
/// program (`qemu` with its arguments, or natively).
struct Platform {
    name: &'static str,
    target: Target,
    cc: String,
    run: Vec<String>,
    /// Another architecture's libm computes `expf`.
    foreign_libm: bool,
}

/// The platform called `name`, or `None` after printing (or, under CI,
/// failing on) what is missing.
fn platform(test: &str, name: &'static str) -> Option<Platform> {
    if !Backend::Llvm.available() {
        skip(
            test,
            "bnnc was built without the `llvm` feature (run with --features bnnc/llvm)",
        );
        return None;
    }
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let host = Target::host().unwrap();
    let (target, cc, run, foreign): (&str, String, Vec<String>, bool) = match name {
        "aarch64-cortex-a72" => (
            "aarch64:cortex-a72",
            env("BNNC_AARCH64_CC", "aarch64-linux-gnu-gcc"),
            vec![
                env("BNNC_QEMU_AARCH64", "qemu-aarch64"),
                "-cpu".into(),
                "cortex-a72".into(),
            ],
            host.arch != Arch::Aarch64,
        ),
        "aarch64-neoverse-n1" => (
            "aarch64:neoverse-n1",
            env("BNNC_AARCH64_CC", "aarch64-linux-gnu-gcc"),
            vec![
                env("BNNC_QEMU_AARCH64", "qemu-aarch64"),
                "-cpu".into(),
                "neoverse-n1".into(),
            ],
            host.arch != Arch::Aarch64,
        ),
        "riscv64" => (
            "riscv64",
            env("BNNC_RISCV64_CC", "riscv64-linux-gnu-gcc"),
            vec![
                env("BNNC_QEMU_RISCV64", "qemu-riscv64"),
                "-cpu".into(),
                "rv64".into(),
            ],
            host.arch != Arch::Riscv64,
        ),
        "riscv64-zbb" => (
            "riscv64+zbb",
            env("BNNC_RISCV64_CC", "riscv64-linux-gnu-gcc"),
            vec![
                env("BNNC_QEMU_RISCV64", "qemu-riscv64"),
                "-cpu".into(),
                "rv64,zbb=true".into(),
            ],
            host.arch != Arch::Riscv64,
        ),
        "host" => {
            let t = match host.arch {
                Arch::X86_64
                    if Target::parse("x86_64:haswell")
                        .unwrap()
                        .missing_on_host()
                        .is_empty() =>
                {
                    "x86_64:haswell"
                }
                a => a.name(),
            };
            (t, env("CC", "cc"), vec![], false)
        }
        _ => unreachable!("platform {name}"),
    };
    let mut missing = Vec::new();
    if !runs(&cc, "--version") {
        missing.push(cc.clone());
    }
    if let Some(q) = run.first() {
        if !runs(q, "--version") {
            missing.push(q.clone());
        }
    }
    if !missing.is_empty() {
        skip(
            test,
            &format!(
                "{} not found (Debian: gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
                 gcc-riscv64-linux-gnu libc6-dev-riscv64-cross qemu-user)",
                missing.join(" and ")
            ),
        );
        return None;
    }
    Some(Platform {
        name,
        target: Target::parse(target).unwrap(),
        cc,
        run,
        foreign_libm: foreign,
    })
}

struct Case {
    label: String,
    model: Model,
    context: String,
}

/// Compiles `model` with LLVM for the platform into `dir` and links it with
/// the driver (statically, so no sysroot is needed at run time).
fn build(p: &Platform, model: &Model, dir: &Path) -> Result<(Lowered, PathBuf), String> {
    let opts = CompileOptions::new(p.target.clone())
        .backend(Backend::Llvm)
        .opt_level(0);
    let compiled = compile(model, &opts).map_err(|e| format!("compile: {e}"))?;
    compiled.write_to(dir).map_err(|e| format!("write: {e}"))?;
    let lowered = compiled.lowered;
    let name = &lowered.name;
    let exe = dir.join("driver");
    let mut cmd = Command::new(&p.cc);
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
    .arg("-o")
    .arg(&exe);
    if !p.run.is_empty() {
        cmd.arg("-static");
    }
    let out = cmd.output().map_err(|e| format!("{}: {e}", p.cc))?;
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

fn layout_bytes(words: &[u64], len: u64) -> Vec<u8> {
    let mut b: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    b.resize(len as usize, 0);
    b
}

/// Runs the driver on `inputs`; the outputs as tensors and raw bytes.
fn run_driver(
    p: &Platform,
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
    let mut cmd = match p.run.split_first() {
        Some((q, args)) => {
            let mut c = Command::new(q);
            c.args(args).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    let out = cmd
        .arg(&inp)
        .arg(&outp)
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
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

fn ulps(a: f32, b: f32) -> u32 {
    if a.to_bits() == b.to_bits() {
        return 0;
    }
    if !a.is_finite() || !b.is_finite() || a.is_sign_negative() != b.is_sign_negative() {
        return u32::MAX;
    }
    a.to_bits().abs_diff(b.to_bits())
}

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
                if !(p.is_nan() && q.is_nan()) && ulps(*p, *q) > tolerance {
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

fn from_exp(model: &Model, k: usize) -> bool {
    matches!(
        model.graph.node(model.graph.outputs[k]).op,
        Op::Softmax { .. } | Op::Sigmoid
    )
}

/// Inputs of the model's types; f32 inputs also hold +0.0, -0.0 and tiny
/// values whose sign matters.
fn inputs_for(model: &Model, batch: usize, seed: u64) -> Vec<Tensor> {
    let mut xs = bnnc_runtime::inputs::random_inputs(&model.graph, batch, seed).unwrap();
    for t in &mut xs {
        if let TensorData::F32(v) = &mut t.data {
            for (i, e) in v.iter_mut().enumerate() {
                match i % 11 {
                    2 => *e = 0.0,
                    5 => *e = -0.0,
                    8 => *e *= 1e-30,
                    _ => *e *= 3.0,
                }
            }
        }
    }
    xs
}

fn check_case(p: &Platform, case: &Case, dir: &Path) -> Result<(), String> {
    let (l, exe) = build(p, &case.model, dir)?;
    for (bi, &batch) in BATCHES.iter().enumerate() {
        let xs = inputs_for(&case.model, batch, 17 + bi as u64);
        let want = bnnc_runtime::run(&case.model, &xs).map_err(|e| format!("interpreter: {e}"))?;
        // Batch 7 runs with the workspace at an odd address.
        let shift = if batch == 1 { 0 } else { 3 };
        let got = run_driver(p, &l, &exe, &xs, batch, shift)?;
        for (k, ((g, raw), w)) in got.iter().zip(&want).enumerate() {
            let d = &l.outputs[k];
            let tol = u32::from(p.foreign_libm && from_exp(&case.model, k));
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

fn check_all(p: &Platform, suite: &str, cases: &[Case]) {
    let t0 = Instant::now();
    let mut failures = Vec::new();
    for case in cases {
        let dir = scratch(&format!("{}/{suite}/{}", p.name, case.label));
        match check_case(p, case, &dir) {
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
        "{suite}: {} models on {} ({}) in {:.1}s",
        cases.len(),
        p.name,
        p.target,
        t0.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {} {suite} models differ on {} ({}):\n\n{}",
        failures.len(),
        cases.len(),
        p.name,
        p.target,
        failures.join("\n\n")
    );
}

fn load_all(dir: &Path) -> Vec<Case> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ir"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| Case {
            label: p.file_stem().unwrap().to_string_lossy().into_owned(),
            model: Model::load(p).unwrap_or_else(|e| panic!("{e}")),
            context: String::new(),
        })
        .collect()
}

/// Examples and corpus; `random` random graphs too.
fn suite(test: &str, platform_name: &'static str, random: usize, seed: u64) {
    let Some(p) = platform(test, platform_name) else {
        return;
    };
    let examples = load_all(&root().join("examples"));
    assert!(examples.len() >= 4);
    check_all(&p, "examples", &examples);
    let corpus = load_all(&root().join("tests/corpus"));
    assert!(corpus.len() >= 10);
    check_all(&p, "corpus", &corpus);
    let mut rng = Rng::new(seed);
    let mut cases = Vec::new();
    let mut tried = 0;
    while cases.len() < random {
        tried += 1;
        assert!(tried < random * 20 + 20, "too few supported random graphs");
        let choices: Vec<u32> = (0..48).map(|_| rng.next_u64() as u32).collect();
        let g = random_graph(&choices, &GenOptions { max_ops: 8 });
        let model =
            Model::from_graph(g.graph.clone(), Some(&g.weights), Path::new("random.ir")).unwrap();
        match bnnc::lower::lower(&model, &p.target).map_err(CompileError::Lower) {
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
    check_all(&p, "random", &cases);
}

#[test]
fn aarch64_cortex_a72_matches_the_interpreter() {
    suite(
        "aarch64_cortex_a72_matches_the_interpreter",
        "aarch64-cortex-a72",
        6,
        0xA72,
    );
}

/// Neoverse N1 code may use `udot` (dot product): qemu runs it as an N1.
#[test]
fn aarch64_neoverse_n1_matches_the_interpreter() {
    suite(
        "aarch64_neoverse_n1_matches_the_interpreter",
        "aarch64-neoverse-n1",
        6,
        0x4E1,
    );
}

#[test]
fn riscv64_matches_the_interpreter() {
    suite("riscv64_matches_the_interpreter", "riscv64", 6, 0x5C64);
}

/// `cpop` instead of bit arithmetic: qemu's rv64 with Zbb switched on.
#[test]
fn riscv64_zbb_matches_the_interpreter() {
    suite("riscv64_zbb_matches_the_interpreter", "riscv64-zbb", 0, 0);
}

/// The host's object links with the same C driver and header as a
/// Cranelift object, and runs natively.
#[test]
fn host_object_links_with_cc_and_matches_the_interpreter() {
    suite(
        "host_object_links_with_cc_and_matches_the_interpreter",
        "host",
        4,
        0x4057,
    );
}
