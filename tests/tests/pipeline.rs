//! The entry points of the one pipeline (`bnnc::compile::compile`) agree:
//! `JitModel::compile`, the build-script API (`bnnc_build::Config`) and the
//! command line (`bnnc compile`, run in process through `bnnc_cli::commands`)
//! give the same kernel IR for the same model and target, with the
//! optimizer on by default.

use clap::Parser as _;

use bnnc::compile::{compile, CompileOptions, Emit};
use bnnc::jit::JitModel;
use bnnc_cli::commands::Cli;
use bnnc_ir::Model;
use bnnc_kir::target::Target;
use bnnc_tests::runner::{repo_root, scratch};

/// The kir's kernel functions whose name ends with `_<what>` (after the
/// model name and the kernel's number: `mnist_mlp_k3_batchnorm`).
fn kernels<'a>(kir: &'a str, what: &str) -> Vec<&'a str> {
    kir.lines()
        .filter(|l| l.starts_with("fn ") || l.starts_with("function "))
        .filter(|l| l.contains(&format!("_{what}(")) || l.contains(&format!("_{what} ")))
        .collect()
}

/// `examples/mnist_mlp.ir`, whose hidden batch-norms fold into integer
/// thresholds under the optimizer: the JIT, bnnc-build and `bnnc compile`
/// produce the same kir text (bnnc-build writes no kir: its header and
/// object are compared with `compile` under the options it uses, which
/// gives the kir), and that kir computes the thresholds inside the popcount
/// kernels, where opt level 0 has float batch-norm kernels.
#[test]
fn pipeline_entry_points_agree() {
    let path = repo_root().join("examples/mnist_mlp.ir");
    let model = Model::load(&path).unwrap();
    let host = Target::host().unwrap();

    // The JIT (Cranelift, this CPU, optimized).
    let jit = JitModel::compile(&model).unwrap();
    assert_eq!(jit.compiled().target, host);
    let jit_kir = bnnc_kir::print(&jit.compiled().lowered.module);

    // The build-script API, for this CPU.
    let out = scratch("pipeline/build");
    let built = bnnc_build::Config::new()
        .model(&path)
        .target("native")
        .out_dir(&out)
        .cargo_metadata(false)
        .compile()
        .unwrap();
    assert_eq!(built.len(), 1);
    let b = &built[0];
    assert_eq!(b.target, host);
    let opts = CompileOptions::new(host.clone()).emit([Emit::Obj, Emit::Header, Emit::Kir]);
    let c = compile(&model, &opts).unwrap();
    let build_header = std::fs::read(&b.header).unwrap();
    assert!(
        build_header == c.artifacts[&Emit::Header],
        "bnnc-build's header differs from compile()'s with the same options"
    );
    assert!(
        std::fs::read(&b.object).unwrap() == c.artifacts[&Emit::Obj],
        "bnnc-build's object differs from compile()'s with the same options"
    );
    let build_kir = String::from_utf8(c.artifacts[&Emit::Kir].clone()).unwrap();

    // The command line, for this CPU (`--target native`, the default).
    let dir = scratch("pipeline/cli");
    let args = [
        "bnnc",
        "compile",
        path.to_str().unwrap(),
        "--emit",
        "kir,header",
        "-o",
    ];
    let cli = Cli::try_parse_from(args.into_iter().chain([dir.to_str().unwrap()])).unwrap();
    let mut stdout = Vec::new();
    bnnc_cli::commands::run(&cli, &mut stdout).unwrap();
    let cli_kir = std::fs::read_to_string(dir.join("mnist_mlp.kir")).unwrap();
    let cli_header = std::fs::read(dir.join("mnist_mlp.h")).unwrap();
    assert!(
        cli_header == build_header,
        "`bnnc compile` and bnnc-build write different headers"
    );

    assert!(
        jit_kir == build_kir,
        "JitModel::compile and bnnc-build's options give different kir"
    );
    assert!(
        cli_kir == build_kir,
        "`bnnc compile` and bnnc-build's options give different kir"
    );

    // The optimizer folded the hidden batch-norms (and their signs) into
    // thresholds computed by the binary dense kernels; the logits'
    // batch-norm, like every batch-norm at -O0, is the affine epilogue of
    // its binary dense kernel (its constants `bn_mean`, no kernel of its
    // own).
    let o0 = compile(
        &model,
        &CompileOptions::new(host).opt_level(0).emit([Emit::Kir]),
    )
    .unwrap();
    let o0_kir = String::from_utf8(o0.artifacts[&Emit::Kir].clone()).unwrap();
    assert_ne!(o0_kir, jit_kir, "the optimizer changed nothing");
    assert_eq!(kernels(&o0_kir, "batchnorm").len(), 0, "{o0_kir}");
    assert_eq!(kernels(&jit_kir, "batchnorm").len(), 0, "{jit_kir}");
    let bn_data = |kir: &str| {
        kir.lines()
            .filter(|l| l.starts_with("data ") && l.contains("bn_mean"))
            .count()
    };
    assert_eq!(bn_data(&o0_kir), 3, "{o0_kir}");
    assert_eq!(bn_data(&jit_kir), 1, "{jit_kir}");
    assert_eq!(kernels(&jit_kir, "dense_b1").len(), 3, "{jit_kir}");
    assert_eq!(kernels(&o0_kir, "sign").len(), 3, "{o0_kir}");
    assert_eq!(kernels(&jit_kir, "sign").len(), 1, "{jit_kir}");
    let thresholds = |kir: &str| {
        kir.lines()
            .filter(|l| l.starts_with("data ") && l.contains("thresholds"))
            .count()
    };
    assert_eq!(thresholds(&o0_kir), 0, "{o0_kir}");
    assert!(thresholds(&jit_kir) >= 2, "{jit_kir}");
}
