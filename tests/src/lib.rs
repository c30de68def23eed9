//! Shared helpers for bnnc's integration tests.
//!
//! - [`engine`]: every way bnnc runs a model ([`engine::Engine`]: the
//!   interpreter, the Cranelift and LLVM JITs, objects under qemu, objects in
//!   native C programs), whether it can run here, and how;
//! - [`runner`]: the one differential runner ([`runner::Suite`]) that checks
//!   models on engines against the reference interpreter, bit for bit, at
//!   several batch sizes and both optimization levels, and the model sets
//!   (examples, corpus, random graphs);
//! - [`diff`]: inputs with awkward floats, and exact comparison;
//! - [`gen`]: [`gen::random_graph`] builds random well-formed graphs from a
//!   stream of choices, so property tests shrink a failing case to a small
//!   graph by shrinking the stream.

pub mod diff;
pub mod engine;
pub mod gen;
pub mod runner;
