//! Differential tests of the Cranelift JIT, and of the optimizer through the
//! interpreter: every example (`examples/`, and `examples/train/` where the
//! native backends lower it), the corpus (`tests/corpus/`) and 500 random
//! graphs run at opt levels 0 and 1 and must give, bit for bit, what the
//! reference interpreter gives on the original model (see
//! `bnnc_tests::runner`).
//!
//! Comparison is bit-exact for every output, floats included: the kernels add
//! and multiply in the interpreter's order with no contraction, and `expf` is
//! the same libm function, so no tolerance is needed.

use bnnc_kir::target::Target;
use bnnc_tests::engine::Engine;
use bnnc_tests::runner::{
    corpus, examples, random_graph_property, supported, train_examples, with_random_stats, Suite,
};

/// The JIT, and the interpreter on the optimizer's model (opt level 1).
fn engines() -> [Engine; 2] {
    [Engine::CraneliftJit, Engine::Interpreter]
}

#[test]
fn examples_match_the_interpreter() {
    let mut cases = examples();
    cases.extend(supported(train_examples(), &Target::host().unwrap()));
    Suite::new("examples", engines()).seed(11).run(&cases);
}

#[test]
fn corpus_matches_the_interpreter() {
    Suite::new("corpus", engines()).seed(23).run(&corpus());
}

/// The optimized model computes what the interpreter computes on the
/// original with random batch-norm statistics, slopes and shifts (negative
/// and zero gammas), where the optimizer's threshold folds are delicate.
#[test]
fn optimized_models_with_random_statistics_match_the_interpreter() {
    let cases = with_random_stats(&[examples(), corpus()].concat(), &[1, 2]);
    Suite::new("random statistics", engines())
        .opt_levels([1])
        .batches([3, 7])
        .seed(5)
        .run(&cases);
}

/// 500 random graphs that compile (graphs with types the native backends do
/// not lower yet are rejected and do not count). A failure is shrunk by
/// shrinking the choice stream and saved to
/// tests/regressions/jit_differential.txt (committed), whose cases run
/// first on every later run.
#[test]
fn random_graphs_match_the_interpreter() {
    random_graph_property(
        &Suite::new("random graphs", engines()).batches([1, 3]),
        500,
        Some("regressions/jit_differential.txt"),
        &Target::host().unwrap(),
    );
}
