//! Cross-target tests of the LLVM backend: objects for aarch64 (Cortex-A72,
//! and Neoverse N1, whose code may use the dot-product instructions) and
//! riscv64 (RV64GC, and RV64GC + Zbb for `cpop`), linked statically with the
//! Debian cross compilers and the generic C driver (`tests/c/driver.c`), run
//! under qemu-user with a CPU model that has the instructions; and host
//! objects (x86_64 Haswell, or the architecture's baseline) linked with the
//! host's C compiler and run natively, the same driver and header as
//! Cranelift objects. Each is checked against the reference interpreter at
//! batch 1 and 7 and opt levels 0 and 1 (`bnnc_tests::runner`).
//!
//! Covered: every model in `examples/`, the corpus in `tests/corpus/` and
//! random graphs: a few per engine, or one in `OBJECT_CASES_DIVISOR` (20) of
//! `BNNC_RANDOM_CASES` (CI: 100 per engine), fewer than on the JITs because
//! each costs a link and qemu runs (`bnnc_tests::runner::object_random_cases`). Outputs are compared bit for bit, floats included (see
//! `FOREIGN_EXPF_ULPS` for `expf` on another architecture); packed `b1`
//! outputs must have zero tail bits.
//!
//! Tools: `aarch64-linux-gnu-gcc`, `riscv64-linux-gnu-gcc`, `qemu-aarch64`,
//! `qemu-riscv64`, `cc` (Debian: gcc-aarch64-linux-gnu libc6-dev-arm64-cross
//! gcc-riscv64-linux-gnu libc6-dev-riscv64-cross qemu-user gcc). Without
//! them, or without LLVM in the build (`--features bnnc/llvm`), the tests
//! print why they skip and pass, except under `CI=true`, where they fail.

use bnnc::compile::Backend;
use bnnc_tests::engine::{host_object_target, Engine};
use bnnc_tests::runner::{corpus, examples, object_random_cases, random_graphs, Suite};

/// Every engine checks the examples and the corpus, and its own random
/// graphs (count without `BNNC_RANDOM_CASES`, seed): one suite, so the jobs
/// of all five share the CPUs.
#[test]
fn llvm_objects_match_the_interpreter() {
    let engines = [
        // Cortex-A72: ARMv8.0-A with NEON.
        (
            Engine::qemu_aarch64(Backend::Llvm, "aarch64:cortex-a72", "cortex-a72"),
            6,
            0xA72,
        ),
        // Neoverse N1 code may use `udot` (dot product): qemu runs it as an N1.
        (
            Engine::qemu_aarch64(Backend::Llvm, "aarch64:neoverse-n1", "neoverse-n1"),
            6,
            0x4E1,
        ),
        (Engine::qemu_riscv64("riscv64", "rv64"), 6, 0x5C64),
        // `cpop` instead of bit arithmetic: qemu's rv64 with Zbb switched on.
        (
            Engine::qemu_riscv64("riscv64+zbb", "rv64,zbb=true"),
            0,
            0x2BB,
        ),
        // The host's object links with the same C driver and header as a
        // Cranelift object, and runs natively.
        (
            Engine::c_link(Backend::Llvm, host_object_target()),
            4,
            0x4057,
        ),
    ];
    let mut cases = examples();
    cases.extend(corpus());
    let own: Vec<_> = engines
        .iter()
        .map(|(e, n, seed)| random_graphs(object_random_cases(*n), *seed, &e.target().unwrap()))
        .collect();
    Suite::new("models", engines.map(|e| e.0)).run_each(&cases, &own);
}
