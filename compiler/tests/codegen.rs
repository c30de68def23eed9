//! Generated code for the small binary kernels: kir snapshots (what the
//! lowering emits, independent of the backend's version), and the
//! instructions that must (or must not) appear in Cranelift's code for each
//! target. Whole CLIF or machine-code listings are not kept: they change with
//! every backend upgrade and register allocation.

use std::path::Path;

use bnnc::lower::{lower, Lowered};
use bnnc_ir::Model;
use bnnc_kir::target::Target;

/// The model lowered as written (no optimizer), so the snapshots show the
/// kernels of exactly these ops.
fn lowered(m: &Model, t: &Target) -> Result<Lowered, bnnc::lower::LowerError> {
    lower(m, t)
}

fn model(src: &str) -> Model {
    let g = bnnc_ir::text::parse(src).unwrap_or_else(|e| panic!("{}", e.render("kernel.ir")));
    Model::from_graph(g, None, Path::new("kernel.ir")).unwrap()
}

/// A binary dense layer, 70 inputs (two words, a tail) to 3 outputs.
fn dense_b1() -> Model {
    let w: Vec<String> = (0..210)
        .map(|i| if (i * 7 + i / 5) % 3 == 0 { "-1" } else { "1" }.to_string())
        .collect();
    model(&format!(
        "model dense_b1\ninput x: b1[N, 70]\nw = [{}]: b1[3, 70]\ny = dense(x, w)\noutput y\n",
        w.join(", ")
    ))
}

/// A 3x3 binary convolution, 3 -> 2 channels on 4x4, padding 1 with `pad`.
fn conv_b1(pad: &str) -> Model {
    let w: Vec<String> = (0..54)
        .map(|i| if (i * 5 + 1) % 4 == 0 { "-1" } else { "1" }.to_string())
        .collect();
    model(&format!(
        "model conv_b1\ninput x: b1[N, 4, 4, 3]\nw = [{}]: b1[2, 3, 3, 3]\ny = conv2d(x, w, padding=1, pad_value={pad})\noutput y\n",
        w.join(", ")
    ))
}

/// sign of f32 values, packed into bits.
fn sign_pack() -> Model {
    model("model sign_pack\ninput x: f32[N, 70]\ny = sign(x)\noutput y\n")
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
fn kir_snapshots() {
    for (name, m) in cases() {
        let c = lowered(&m, &Target::parse("x86_64+popcnt").unwrap()).unwrap();
        insta::assert_snapshot!(format!("kir_{name}"), bnnc_kir::print(&c.module));
    }
}

fn disasm(m: &Model, target: &str) -> String {
    let t = Target::parse(target).unwrap();
    let c = lowered(m, &t).unwrap();
    bnnc_cranelift::disassembly(&c.module, &t)
        .unwrap()
        .to_lowercase()
}

/// Does the listing contain `mnemonic` as an instruction (not inside a longer name)?
fn has_instruction(listing: &str, mnemonic: &str) -> bool {
    listing.lines().any(|l| {
        l.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
            .any(|w| w == mnemonic || w.starts_with(&format!("{mnemonic}.")))
    })
}

#[test]
fn popcount_instructions_follow_the_target() {
    for (name, m) in [("dense_b1", dense_b1()), ("conv_b1", conv_b1("+1"))] {
        let with = disasm(&m, "x86_64+popcnt");
        assert!(
            has_instruction(&with, "popcnt"),
            "{name}: no popcnt for x86_64+popcnt:\n{with}"
        );
        let without = disasm(&m, "x86_64");
        assert!(
            !has_instruction(&without, "popcnt"),
            "{name}: popcnt on baseline x86_64:\n{without}"
        );
        let arm = disasm(&m, "aarch64");
        assert!(
            has_instruction(&arm, "cnt"),
            "{name}: no cnt for aarch64:\n{arm}"
        );
    }
}

#[test]
fn unsupported_types_are_clear_errors() {
    let m = model("model q\ninput x: f32[N, 8]\nq = quantize(x, to=u4, scale=0.5)\nw = [1, -1, 1, -1, 1, -1, 1, -1]: b1[1, 8]\ny = dense(q, w)\noutput y\n");
    let e = lowered(&m, &Target::parse("x86_64").unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("not supported yet by the native backends: quantize"),
        "{e}"
    );
    assert!(e.contains("u4"), "{e}");
}

#[test]
fn workspace_overflow_is_a_clear_error() {
    let m = model("model huge\ninput x: f32[N, 2147483648, 2147483648]\ny = relu(x)\noutput y\n");
    let e = lowered(&m, &Target::parse("x86_64").unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("workspace of model `huge` would overflow"),
        "{e}"
    );
}
