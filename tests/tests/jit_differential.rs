//! Differential tests of the Cranelift JIT, and of the optimizer through the
//! interpreter: every example (`examples/`, and `examples/train/` where the
//! native backends lower it), the corpus (`tests/corpus/`) and random graphs
//! (500, or `BNNC_RANDOM_CASES`; CI runs 2,000) run at opt levels 0 and 1
//! and must give, bit for bit, what the reference interpreter gives on the
//! original model (see `bnnc_tests::runner`).
//!
//! Comparison is bit-exact for every output, floats included: the kernels add
//! and multiply in the interpreter's order with no contraction, and `expf` is
//! the same libm function, so no tolerance is needed.

use bnnc_kir::target::Target;
use bnnc_tests::engine::Engine;
use bnnc_tests::runner::{
    corpus, examples, random_cases, random_graph_property, supported, train_examples,
    with_random_stats, Case, Suite,
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

/// Random graphs that compile (graphs with types the native backends do
/// not lower yet are rejected and do not count): `BNNC_RANDOM_CASES` of
/// them (default 500; CI sets 2,000, about 4 s on two cores; one run of
/// 10,000 took 32 s), batched and unbatched (a first dimension holding
/// several samples). A failure is shrunk by shrinking the choice stream and
/// saved to tests/regressions/jit_differential.txt (commit it), whose cases
/// run first on every later run.
#[test]
fn random_graphs_match_the_interpreter() {
    random_graph_property(
        &Suite::new("random graphs", engines()).batches([1, 3]),
        random_cases(500) as u32,
        Some("regressions/jit_differential.txt"),
        &Target::host().unwrap(),
    );
}

/// A threshold over `replicate(acc, times)` with more than a few replicas:
/// fused into the binary conv (the accumulator used once) and on its own
/// (the accumulator is an output too). The kernels loop over the replicas,
/// so the kir does not grow with `times`, and compute what the interpreter
/// computes.
#[test]
fn many_replicas_are_a_loop() {
    let model = |times: usize, fused: bool| {
        let text = format!(
            "model replicas\nweights \"replicas.safetensors\"\n\
             input x: b1[N, 4, 4, 70]\nw = @w: b1[5, 3, 3, 70]\n\
             a = conv2d(x, w, padding=1, pad_value=+1)\nr = replicate(a, times={times})\n\
             t = @t: i32[1, 1]\ns = threshold(r, t)\noutput s{}\n",
            if fused { "" } else { ", a" }
        );
        let graph = bnnc_ir::text::parse(&text).unwrap();
        let types = bnnc_ir::verify::verify(&graph).unwrap();
        let opts = bnnc_train::init::InitOptions {
            seed: 3,
            random_stats: true,
        };
        let w = bnnc_train::init::init_weights(&graph, &types, opts).unwrap();
        let path = std::path::Path::new("replicas.ir");
        bnnc_ir::Model::from_graph(graph, Some(&w), path).unwrap()
    };
    let host = Target::host().unwrap();
    let kir_lines = |m: &bnnc_ir::Model| {
        bnnc_kir::print(&bnnc::lower::lower(m, &host).unwrap().module)
            .lines()
            .count()
    };
    let mut cases = Vec::new();
    for fused in [true, false] {
        let (small, large) = (model(20, fused), model(200, fused));
        assert_eq!(
            kir_lines(&small),
            kir_lines(&large),
            "fused {fused}: the kir grows with the replicas"
        );
        cases.push(Case::new(format!("20 replicas, fused {fused}"), small));
    }
    Suite::new("replicas", engines()).run(&cases);
}
