//! The command line with the LLVM backend: `bnnc compile --backend llvm`,
//! `--cpu`, `--emit asm,llvm-ir`, its errors, and the LLVM JIT of `bnnc run`.
//!
//! Without LLVM in the build (`--features bnnc/llvm`) every test prints why
//! it skips and passes, except under `CI=true`, where it fails.

use std::path::Path;
use std::process::{Command, Output};

use bnnc::compile::Backend;

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
