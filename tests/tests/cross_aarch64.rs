//! Cross-target tests: Cranelift objects for aarch64, linked with the cross C
//! compiler and the generic C driver (`tests/c/driver.c`), run under
//! qemu-user and checked against the reference interpreter at batch 1 and 7
//! and opt levels 0 and 1 (`bnnc_tests::engine::Engine::QemuAarch64`,
//! `bnnc_tests::runner`).
//!
//! Covered: every model in `examples/`, the corpus in `tests/corpus/` and
//! random graphs: 20, or one in `OBJECT_CASES_DIVISOR` (20) of
//! `BNNC_RANDOM_CASES` (CI: 100), fewer than on the JITs because each costs a
//! link and qemu runs (`bnnc_tests::runner::object_random_cases`). Outputs are compared bit for bit, floats included: kernels follow
//! the interpreter's order of operations. That holds for softmax and sigmoid
//! too, although their `expf` is the host's libm in the interpreter and
//! aarch64's in the compiled code (see `FOREIGN_EXPF_ULPS`). Packed `b1`
//! outputs must have zero tail bits.
//!
//! qemu emulates a Cortex-A53 (ARMv8.0-A, NEON and nothing newer: no LSE
//! atomics, no dot products), so an instruction the target `aarch64` does
//! not name fails the test with SIGILL.
//!
//! Tools: `aarch64-linux-gnu-gcc` and `qemu-aarch64` (Debian packages
//! `gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user`); override with
//! `BNNC_AARCH64_CC` and `BNNC_QEMU_AARCH64`. When they are missing the tests
//! print why and pass, except when `CI=true`, where a missing tool fails.

use bnnc::compile::Backend;
use bnnc_kir::target::Target;
use bnnc_tests::engine::Engine;
use bnnc_tests::runner::{corpus, examples, object_random_cases, random_graphs, Suite};

/// Statically linked, no CPU features.
fn aarch64() -> Engine {
    Engine::qemu_aarch64(Backend::Cranelift, "aarch64", "cortex-a53")
}

/// Dynamically linked (so `qemu-aarch64 -L` and the sysroot are exercised).
#[test]
fn examples_match_the_interpreter_on_aarch64() {
    Suite::new("examples", [aarch64().dynamic()]).run(&examples());
}

#[test]
fn corpus_matches_the_interpreter_on_aarch64() {
    Suite::new("corpus", [aarch64()]).run(&corpus());
}

#[test]
fn random_graphs_match_the_interpreter_on_aarch64() {
    let n = object_random_cases(20);
    let cases = random_graphs(n, 0xA64, &Target::parse("aarch64").unwrap());
    Suite::new("random graphs", [aarch64()]).run(&cases);
}
