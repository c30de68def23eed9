//! Differential tests of the LLVM backend: its JIT computes exactly what the
//! reference interpreter computes, and exactly what the Cranelift JIT
//! computes, on every example, the corpus (`tests/corpus/*.ir`) and random
//! graphs. Every output is compared bit for bit, floats included (no
//! fast-math, no contraction, ordered reductions, the same libm).
//!
//! The LLVM JIT runs for the host's CPU (`native`, every feature LLVM
//! detects) and, for examples and corpus, for the architecture's baseline
//! too (no popcount instruction, SSE2 only on x86_64).
//!
//! Without LLVM in the build (`--features bnnc/llvm`) the tests print why
//! they skip and pass, except under `CI=true`, where they fail.

use std::path::Path;

use bnnc::compile::{Backend, CompileError, CompileOptions};
use bnnc::jit::JitModel;
use bnnc::lower::LowerError;
use bnnc_ir::Model;
use bnnc_kir::target::Target;
use bnnc_tests::diff::{inputs, models_in, same_bits};
use bnnc_tests::gen::{random_graph, GenOptions, Rng};

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

/// The LLVM JIT for each target against the interpreter and the Cranelift
/// JIT, at each batch size.
fn check_model(
    model: &Model,
    targets: &[Target],
    batches: &[usize],
    seed: u64,
) -> Result<(), String> {
    let opts = CompileOptions::host(Backend::Cranelift)
        .unwrap()
        .opt_level(0);
    let cranelift = JitModel::compile_with(model, &opts).map_err(|e| format!("cranelift: {e}"))?;
    let llvms = targets
        .iter()
        .map(|t| {
            let opts = CompileOptions::new(t.clone())
                .backend(Backend::Llvm)
                .opt_level(0)
                .emit([]);
            JitModel::compile_with(model, &opts).map_err(|e| format!("llvm for {t}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut rng = Rng::new(seed);
    for &batch in batches {
        let x = inputs(model, batch, &mut rng, false);
        let want = bnnc_runtime::run(model, &x).map_err(|e| format!("interpreter: {e}"))?;
        let cl = cranelift.run(&x).map_err(|e| format!("cranelift: {e}"))?;
        for (t, jit) in targets.iter().zip(&llvms) {
            let got = jit.run(&x).map_err(|e| format!("llvm for {t}: {e}"))?;
            for (k, g) in got.iter().enumerate() {
                let name = &model.graph.node(model.graph.outputs[k]).name;
                let at = |e: String| format!("{t}, batch {batch}, output `{name}`: {e}");
                same_bits(g, &want[k], "llvm", "interpreter").map_err(at)?;
                same_bits(g, &cl[k], "llvm", "cranelift").map_err(at)?;
            }
        }
    }
    Ok(())
}

/// The host's CPU and the architecture's baseline.
fn targets() -> Vec<Target> {
    let host = Target::host().unwrap();
    vec![Target::native_cpu().unwrap(), Target::new(host.arch)]
}

#[test]
fn examples_match_the_interpreter_and_cranelift() {
    if !llvm("examples_match_the_interpreter_and_cranelift") {
        return;
    }
    let models = models_in("../examples");
    assert!(models.len() >= 4);
    for p in models {
        let m = Model::load(&p).unwrap();
        check_model(&m, &targets(), &[1, 7], 11).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }
}

#[test]
fn corpus_matches_the_interpreter_and_cranelift() {
    if !llvm("corpus_matches_the_interpreter_and_cranelift") {
        return;
    }
    let models = models_in("corpus");
    assert!(models.len() >= 10);
    for p in models {
        let m = Model::load(&p).unwrap();
        check_model(&m, &targets(), &[1, 7], 23).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config {
        // 300 graphs that compile (graphs with types the native backends do
        // not lower yet are rejected and do not count). Failures shrink and
        // are saved to tests/proptest-regressions/.
        cases: 300,
        max_global_rejects: 5000,
        ..proptest::test_runner::Config::default()
    })]

    #[test]
    fn random_graphs_match_the_interpreter_and_cranelift(choices in proptest::collection::vec(proptest::prelude::any::<u32>(), 0..48)) {
        if !llvm("random_graphs_match_the_interpreter_and_cranelift") {
            return Ok(());
        }
        let g = random_graph(&choices, &GenOptions { max_ops: 8 });
        let model = Model::from_graph(g.graph.clone(), Some(&g.weights), Path::new("random.ir")).unwrap();
        let text = bnnc_ir::text::print(&g.graph);
        match bnnc::lower::lower(&model, &Target::host().unwrap()).map_err(CompileError::Lower) {
            Err(CompileError::Lower(LowerError::Unsupported { .. })) => {
                proptest::prop_assume!(false);
            }
            Err(e) => return Err(proptest::test_runner::TestCaseError::fail(format!("{e}\n{text}"))),
            Ok(_) => {}
        }
        let seed = choices.iter().fold(7u64, |h, &c| h.wrapping_mul(31).wrapping_add(c as u64));
        check_model(&model, &[Target::native_cpu().unwrap()], &[1, 3], seed)
            .map_err(|e| proptest::test_runner::TestCaseError::fail(format!("{e}\n{text}")))?;
    }
}
