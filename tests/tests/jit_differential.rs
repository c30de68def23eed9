//! Differential tests: the Cranelift JIT computes exactly what the reference
//! interpreter computes, on every example and on random graphs.
//!
//! Comparison is bit-exact for every output, floats included: the kernels add
//! and multiply in the interpreter's order with no contraction, and `expf` is
//! the same libm function, so no tolerance is needed.

use std::path::Path;

use bnnc::compile::{Backend, CompileError, CompileOptions};
use bnnc::jit::JitModel;
use bnnc::lower::LowerError;
use bnnc_ir::Model;
use bnnc_tests::diff::{inputs, models_in, same_bits};
use bnnc_tests::gen::{random_graph, GenOptions, Rng};

fn check_model(model: &Model, batches: &[usize], seed: u64) -> Result<(), String> {
    let opts = CompileOptions::host(Backend::Cranelift)
        .unwrap()
        .opt_level(0);
    let jit = JitModel::compile_with(model, &opts).map_err(|e| format!("compile: {e}"))?;
    let mut rng = Rng::new(seed);
    for &batch in batches {
        let x = inputs(model, batch, &mut rng, false);
        let want = bnnc_runtime::run(model, &x).map_err(|e| format!("interpreter: {e}"))?;
        let got = jit.run(&x).map_err(|e| format!("jit: {e}"))?;
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            let name = &model.graph.node(model.graph.outputs[k]).name;
            same_bits(g, w, "jit", "interpreter")
                .map_err(|e| format!("batch {batch}, output `{name}`: {e}"))?;
        }
    }
    Ok(())
}

#[test]
fn examples_match_the_interpreter() {
    let models = models_in("../examples");
    assert!(models.len() >= 4);
    for p in models {
        let m = Model::load(&p).unwrap();
        check_model(&m, &[1, 7], 11).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }
}

/// `check_model`, but the JIT compiles the optimized model while the
/// interpreter runs the original.
fn check_optimized(model: &Model, batches: &[usize], seed: u64) -> Result<(), String> {
    let jit = JitModel::compile(model).map_err(|e| format!("compile: {e}"))?;
    let mut rng = Rng::new(seed);
    for &batch in batches {
        let x = inputs(model, batch, &mut rng, false);
        let want = bnnc_runtime::run(model, &x).map_err(|e| format!("interpreter: {e}"))?;
        let got = jit.run(&x).map_err(|e| format!("jit: {e}"))?;
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            same_bits(g, w, "jit", "interpreter")
                .map_err(|e| format!("batch {batch}, output {k}: {e}"))?;
        }
    }
    Ok(())
}

/// The optimized model, JIT-compiled, computes what the interpreter computes
/// on the original: examples and corpus, shipped weights and random batch-norm
/// statistics (negative and zero gammas).
#[test]
fn optimized_models_match_the_interpreter_on_the_original() {
    for p in models_in("../examples")
        .into_iter()
        .chain(models_in("corpus"))
    {
        let m = Model::load(&p).unwrap();
        check_optimized(&m, &[1, 7], 5).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let checked = bnnc_cli::load::load_graph(&p).unwrap();
        for seed in [1, 2] {
            let w = bnnc_train::init::init_weights(
                &checked.graph,
                &checked.types,
                bnnc_train::init::InitOptions {
                    seed,
                    random_stats: true,
                },
            )
            .unwrap();
            let m = Model::from_graph(checked.graph.clone(), Some(&w), &p).unwrap();
            check_optimized(&m, &[3], seed)
                .unwrap_or_else(|e| panic!("{} (stats seed {seed}): {e}", p.display()));
        }
    }
}

#[test]
fn corpus_matches_the_interpreter() {
    let models = models_in("corpus");
    assert!(models.len() >= 10);
    for p in models {
        let m = Model::load(&p).unwrap();
        check_model(&m, &[1, 7], 23).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config {
        // 500 graphs that compile (graphs with types the native backends do not
        // lower yet are rejected by prop_assume and do not count). A failure is
        // shrunk by shrinking the choice stream and saved to
        // tests/regressions/jit_differential.txt (committed), whose cases run
        // first on every later run.
        cases: 500,
        max_global_rejects: 5000,
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::Direct(
            "regressions/jit_differential.txt",
        ))),
        ..proptest::test_runner::Config::default()
    })]

    #[test]
    fn random_graphs_match_the_interpreter(choices in proptest::collection::vec(proptest::prelude::any::<u32>(), 0..48)) {
        let g = random_graph(&choices, &GenOptions { max_ops: 8 });
        let model = Model::from_graph(g.graph.clone(), Some(&g.weights), Path::new("random.ir")).unwrap();
        let text = bnnc_ir::text::print(&g.graph);
        match bnnc::lower::lower(&model, &bnnc_kir::target::Target::host().unwrap()).map_err(CompileError::Lower) {
            Err(CompileError::Lower(LowerError::Unsupported { .. })) => {
                proptest::prop_assume!(false);
            }
            Err(e) => return Err(proptest::test_runner::TestCaseError::fail(format!("{e}\n{text}"))),
            Ok(_) => {}
        }
        let seed = choices.iter().fold(7u64, |h, &c| h.wrapping_mul(31).wrapping_add(c as u64));
        check_model(&model, &[1, 3], seed)
            .map_err(|e| proptest::test_runner::TestCaseError::fail(format!("{e}\n{text}")))?;
    }
}
