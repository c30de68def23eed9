//! Differential tests of the LLVM JIT: every example (`examples/`), the
//! corpus (`tests/corpus/`) and random graphs (300, or `BNNC_RANDOM_CASES`;
//! CI runs 2,000) run at opt levels 0 and 1 and must give, bit for bit, what
//! the reference interpreter gives on the original model (see
//! `bnnc_tests::runner`): no fast-math, no contraction, ordered reductions,
//! the same libm. The random graphs run on the Cranelift JIT too,
//! so the two backends agree with each other as well.
//!
//! The LLVM JIT runs for the host's CPU (`native`, every feature LLVM
//! detects) and, for examples and corpus, for the architecture's baseline
//! too (no popcount instruction, SSE2 only on x86_64).
//!
//! Without LLVM in the build (`--features bnnc/llvm`) the tests print why
//! they skip and pass, except under `CI=true`, where they fail.

use bnnc_kir::target::Target;
use bnnc_tests::engine::Engine;
use bnnc_tests::runner::{corpus, examples, random_cases, random_graph_property, Suite};

/// The host's CPU and the architecture's baseline.
fn engines() -> [Engine; 2] {
    [Engine::llvm_jit_native(), Engine::llvm_jit_baseline()]
}

#[test]
fn examples_match_the_interpreter() {
    Suite::new("examples", engines()).seed(11).run(&examples());
}

#[test]
fn corpus_matches_the_interpreter() {
    Suite::new("corpus", engines()).seed(23).run(&corpus());
}

/// Random graphs that compile (others are rejected and do not count):
/// `BNNC_RANDOM_CASES` of them (default 300; CI sets 2,000, about 6 minutes
/// on two shared cores; one run of 10,000 took 33 minutes), each on the LLVM
/// JIT for this CPU and on the Cranelift JIT. Failures shrink and are saved
/// to tests/regressions/llvm_differential.txt.
#[test]
fn random_graphs_match_the_interpreter_and_cranelift() {
    random_graph_property(
        &Suite::new(
            "random graphs",
            [Engine::llvm_jit_native(), Engine::CraneliftJit],
        )
        .batches([1, 3]),
        random_cases(300) as u32,
        Some("regressions/llvm_differential.txt"),
        &Target::host().unwrap(),
    );
}
