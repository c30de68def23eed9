//! Shared helpers for bnnc's integration tests.
//!
//! [`gen::random_graph`] builds random well-formed graphs from a stream of
//! choices, so property tests shrink a failing case to a small graph by shrinking
//! the stream.

pub mod diff;
pub mod gen;
