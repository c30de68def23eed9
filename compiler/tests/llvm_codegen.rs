//! Generated code of the LLVM backend for the small binary kernels (the
//! models of `codegen.rs`): the instructions each target CPU must (or must
//! not) get. The command line with LLVM is tested in `bnnc-cli`
//! (`cli/tests/cli_llvm.rs`).
//!
//! Without LLVM in the build (`--features bnnc/llvm`) every test prints why
//! it skips and passes, except under `CI=true`, where it fails.

use std::path::Path;

use bnnc::compile::Backend;
use bnnc::lower::lower;
use bnnc_ir::Model;
use bnnc_kir::target::Target;

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

fn asm(m: &Model, target: &Target) -> String {
    let l = lower(m, target).unwrap();
    bnnc_llvm::assembly(&l.module, target)
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
