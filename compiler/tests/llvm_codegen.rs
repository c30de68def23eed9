//! Generated code of the LLVM backend for the small binary kernels (the
//! models of `codegen.rs`): LLVM IR snapshots as translated from kir, the
//! instructions each target CPU must (or must not) get, and the command
//! line (`--backend llvm`, `--cpu`, `--emit asm,llvm-ir`).
//!
//! Without LLVM in the build (`--features bnnc/llvm`) every test prints why
//! it skips and passes, except under `CI=true`, where it fails.

use std::path::Path;
use std::process::{Command, Output};

use bnnc::compile::{lower_model, Backend};
use bnnc_ir::target::Target;
use bnnc_ir::Model;

fn llvm(test: &str) -> bool {
    if Backend::Llvm.available() {
        return true;
    }
    let why = "bnnc was built without the `llvm` feature (run with --features bnnc/llvm)";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true: {test}: {why}");
    }
    eprintln!("skipping {test}: {why}");
    false
}

fn model(src: &str) -> Model {
    let g = bnnc_ir::text::parse(src).unwrap_or_else(|e| panic!("{}", e.render("kernel.ir")));
    Model::from_graph(g, None, Path::new("kernel.ir")).unwrap()
}

fn bits(n: usize, f: impl Fn(usize) -> bool) -> String {
    (0..n)
        .map(|i| if f(i) { "-1" } else { "1" })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A binary dense layer, 70 inputs (two words, a tail) to 3 outputs.
fn dense_b1() -> Model {
    model(&format!(
        "model dense_b1\ninput x: b1[N, 70]\nw = [{}]: b1[3, 70]\ny = dense(x, w)\noutput y\n",
        bits(210, |i| (i * 7 + i / 5) % 3 == 0)
    ))
}

/// A 3x3 binary convolution, 3 -> 2 channels on 4x4, padding 1 with `pad`.
fn conv_b1(pad: &str) -> Model {
    model(&format!(
        "model conv_b1\ninput x: b1[N, 4, 4, 3]\nw = [{}]: b1[2, 3, 3, 3]\ny = conv2d(x, w, padding=1, pad_value={pad})\noutput y\n",
        bits(54, |i| (i * 5 + 1) % 4 == 0)
    ))
}

/// sign of f32 values, packed into bits.
fn sign_pack() -> Model {
    model("model sign_pack\ninput x: f32[N, 70]\ny = sign(x)\noutput y\n")
}

/// A binary dense layer with a long reduction (4096 bits = 64 words per
/// row), where vector popcounts pay off.
fn dense_b1_wide() -> Model {
    model(&format!(
        "model dense_wide\ninput x: b1[N, 4096]\nw = [{}]: b1[4, 4096]\ny = dense(x, w)\noutput y\n",
        bits(4 * 4096, |i| (i * 13 + i / 7) % 5 < 2)
    ))
}

fn cases() -> Vec<(&'static str, Model)> {
    vec![
        ("dense_b1", dense_b1()),
        ("conv_b1_pad_plus1", conv_b1("+1")),
        ("conv_b1_pad_minus1", conv_b1("-1")),
        ("conv_b1_pad_0", conv_b1("0")),
        ("sign_pack", sign_pack()),
    ]
}

#[test]
fn llvm_ir_snapshots() {
    if !llvm("llvm_ir_snapshots") {
        return;
    }
    for target in ["x86_64+popcnt", "aarch64"] {
        let t = Target::parse(target).unwrap();
        for (name, m) in cases() {
            let c = lower_model(&m, &t).unwrap();
            let ir = bnnc_llvm::llvm_ir(&c.lowered.module, &t, bnnc_llvm::Stage::Translated)
                .unwrap_or_else(|e| panic!("{name} for {target}: {e}"));
            let tag = target.replace('+', "_");
            insta::assert_snapshot!(format!("llvm_{tag}_{name}"), ir);
        }
    }
}

fn asm(m: &Model, target: &Target) -> String {
    let c = lower_model(m, target).unwrap();
    bnnc_llvm::assembly(&c.lowered.module, target)
        .unwrap_or_else(|e| panic!("{target}: {e}"))
        .to_lowercase()
}

/// The instruction lines of an assembly listing (no directives, labels or
/// comments).
fn instructions(listing: &str) -> Vec<&str> {
    listing
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('.') && !l.starts_with('#'))
        .filter(|l| !l.ends_with(':') && !l.starts_with("//"))
        .collect()
}

/// Does the listing use `mnemonic` (the first word of an instruction line)?
fn has_instruction(listing: &str, mnemonic: &str) -> bool {
    instructions(listing)
        .iter()
        .any(|l| l.split_whitespace().next() == Some(mnemonic))
}

#[test]
fn znver4_gets_vector_popcounts() {
    if !llvm("znver4_gets_vector_popcounts") {
        return;
    }
    let t = Target::parse("x86_64:znver4").unwrap();
    let a = asm(&dense_b1_wide(), &t);
    assert!(
        has_instruction(&a, "vpopcntq"),
        "no vpopcntq for znver4:\n{a}"
    );
}

#[test]
fn haswell_gets_no_avx512() {
    if !llvm("haswell_gets_no_avx512") {
        return;
    }
    let t = Target::parse("x86_64")
        .unwrap()
        .with_cpu("haswell")
        .unwrap();
    for (name, m) in cases().into_iter().chain([("dense_wide", dense_b1_wide())]) {
        let a = asm(&m, &t);
        for l in instructions(&a) {
            assert!(
                !l.contains("zmm") && !l.starts_with("vpopcnt"),
                "{name}: AVX-512 for haswell: {l}"
            );
        }
        if name != "sign_pack" {
            assert!(
                has_instruction(&a, "popcntq") || has_instruction(&a, "vpshufb"),
                "{name}: no popcount:\n{a}"
            );
        }
    }
}

#[test]
fn baseline_x86_64_gets_no_popcnt() {
    if !llvm("baseline_x86_64_gets_no_popcnt") {
        return;
    }
    let t = Target::parse("x86_64").unwrap();
    for (name, m) in cases().into_iter().chain([("dense_wide", dense_b1_wide())]) {
        let a = asm(&m, &t);
        for l in instructions(&a) {
            let op = l.split_whitespace().next().unwrap_or("");
            assert!(
                !op.contains("popcnt")
                    && !l.contains("ymm")
                    && !l.contains("zmm")
                    && !op.starts_with('v'),
                "{name}: more than SSE2 on baseline x86_64: {l}"
            );
        }
    }
}

#[test]
fn aarch64_uses_cnt() {
    if !llvm("aarch64_uses_cnt") {
        return;
    }
    for cpu in ["cortex-a72", "neoverse-n1"] {
        let t = Target::parse("aarch64").unwrap().with_cpu(cpu).unwrap();
        for (name, m) in [("dense_b1", dense_b1()), ("conv_b1", conv_b1("+1"))] {
            let a = asm(&m, &t);
            assert!(has_instruction(&a, "cnt"), "{name} {cpu}: no cnt:\n{a}");
        }
        let a = asm(&dense_b1_wide(), &t);
        if cpu == "cortex-a72" {
            assert!(!has_instruction(&a, "udot"), "udot on cortex-a72:\n{a}");
        }
    }
}

#[test]
fn riscv64_uses_cpop_only_with_zbb() {
    if !llvm("riscv64_uses_cpop_only_with_zbb") {
        return;
    }
    let m = dense_b1();
    let plain = asm(&m, &Target::parse("riscv64").unwrap());
    assert!(!has_instruction(&plain, "cpop"), "cpop on rv64gc:\n{plain}");
    let zbb = asm(&m, &Target::parse("riscv64+zbb").unwrap());
    assert!(has_instruction(&zbb, "cpop"), "no cpop with zbb:\n{zbb}");
}

// The command line.

fn bnnc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bnnc"))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn scratch(name: &str) -> std::path::PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("llvm_codegen")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn cli_compiles_with_llvm_and_emits_everything() {
    if !llvm("cli_compiles_with_llvm_and_emits_everything") {
        return;
    }
    let dir = scratch("emit");
    let d = dir.to_str().unwrap();
    let o = bnnc(&[
        "compile",
        "examples/mnist_mlp.ir",
        "--backend",
        "llvm",
        "--target",
        "x86_64",
        "--cpu",
        "znver4",
        "-o",
        d,
        "--emit",
        "obj,header,asm,llvm-ir",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    for ext in ["o", "h", "s", "ll"] {
        let p = dir.join(format!("mnist_mlp.{ext}"));
        assert!(p.exists(), "{} missing:\n{out}", p.display());
        assert!(
            out.contains(&format!("mnist_mlp.{ext} (x86_64:znver4)")),
            "{out}"
        );
    }
    let obj = std::fs::read(dir.join("mnist_mlp.o")).unwrap();
    assert_eq!(&obj[..4], b"\x7fELF");
    let ll = std::fs::read_to_string(dir.join("mnist_mlp.ll")).unwrap();
    assert!(
        ll.contains("\"target-cpu\"=\"znver4\""),
        "no target-cpu in the LLVM IR"
    );
    assert!(
        ll.lines()
            .any(|l| l.starts_with("define") && l.contains("i32 @mnist_mlp_run_v(")),
        "no exported mnist_mlp_run_v in the LLVM IR"
    );
    let s = std::fs::read_to_string(dir.join("mnist_mlp.s")).unwrap();
    assert!(s.contains("vpopcntq"), "no vpopcntq in the znver4 assembly");
    let h = std::fs::read_to_string(dir.join("mnist_mlp.h")).unwrap();
    assert!(
        h.contains("#define MNIST_MLP_TARGET \"x86_64:znver4\""),
        "{h}"
    );
    assert!(
        h.contains("avx512vpopcntdq"),
        "the header names the CPU's features:\n{h}"
    );

    // riscv64, and the CPU alone naming the architecture.
    for (args, want) in [
        (vec!["--target", "riscv64"], "riscv64"),
        (vec!["--cpu", "neoverse-n1"], "aarch64:neoverse-n1"),
    ] {
        let mut a = vec![
            "compile",
            "examples/xnor_layer.ir",
            "--backend",
            "llvm",
            "-o",
            d,
        ];
        a.extend(args);
        let o = bnnc(&a);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{out}{err}");
        assert!(out.contains(&format!("xnor_layer.o ({want})")), "{out}");
    }
}

#[test]
fn cli_errors_name_the_fix() {
    if !llvm("cli_errors_name_the_fix") {
        return;
    }
    let dir = scratch("errors");
    let d = dir.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--backend", "llvm", "--cpu", "znver9"],
            "unknown CPU `znver9` for x86_64; LLVM 19 knows: alderlake,",
        ),
        (
            &[
                "--backend",
                "llvm",
                "--target",
                "aarch64",
                "--cpu",
                "skylake",
            ],
            "unknown CPU `skylake` for aarch64; LLVM 19 knows: a64fx,",
        ),
        (
            &["--cpu", "haswell"],
            "the Cranelift backend takes no CPU model (`haswell`)",
        ),
        (
            &["--target", "riscv64"],
            "use the LLVM backend (--backend llvm) for riscv64",
        ),
        (
            &["--emit", "llvm-ir"],
            "--emit llvm-ir needs the llvm backend (this compilation uses cranelift)",
        ),
        (
            &["--backend", "llvm", "--emit", "clif"],
            "--emit clif needs the cranelift backend (this compilation uses llvm)",
        ),
        (
            &["--target", "x86_64+neon", "--backend", "llvm"],
            "unknown feature `neon` for x86_64; valid: sse3,",
        ),
    ];
    for (extra, want) in cases {
        let mut a = vec!["compile", "examples/mnist_mlp.ir", "-o", d];
        a.extend_from_slice(extra);
        let o = bnnc(&a);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{a:?}: {out}{err}");
        assert!(err.contains(want), "{a:?}: wanted `{want}` in:\n{err}");
    }
}

#[test]
fn cli_runs_with_the_llvm_jit() {
    if !llvm("cli_runs_with_the_llvm_jit") {
        return;
    }
    let args = [
        "run",
        "examples/bireal_cnn.ir",
        "--random",
        "--batch",
        "3",
        "--seed",
        "5",
    ];
    let interp = bnnc(&args);
    let mut a = args.to_vec();
    a.extend(["--engine", "jit", "--backend", "llvm"]);
    let jit = bnnc(&a);
    let (i_out, i_err) = text(&interp);
    let (j_out, j_err) = text(&jit);
    assert!(
        interp.status.success() && jit.status.success(),
        "{i_err}{j_err}"
    );
    assert_eq!(i_out, j_out);
    // --backend without --engine jit is a mistake.
    let mut a = args.to_vec();
    a.extend(["--backend", "llvm"]);
    let o = bnnc(&a);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("add --engine jit"));
}
