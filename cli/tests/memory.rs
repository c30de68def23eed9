//! Runs that need more memory than they may use end in one error with the
//! amount and exit 1, never in an abort. `BNNC_MEMORY_LIMIT` stands in for a
//! machine with that much memory available, so the messages do not depend on
//! the machine running the tests.

mod common;
use common::*;

use std::process::{Command, Output};

/// Runs `bnnc ARGS` from the workspace root with `BNNC_MEMORY_LIMIT=limit`.
fn bnnc_limited(limit: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bnnc"))
        .args(args)
        .env("BNNC_MEMORY_LIMIT", limit)
        .current_dir(root())
        .output()
        .expect("bnnc runs")
}

#[test]
fn jit_workspace_larger_than_memory() {
    let o = bnnc_limited(
        "4G",
        &[
            "run",
            "--engine",
            "jit",
            "--batch",
            "150000",
            "examples/bireal_cnn.ir",
            "--random",
        ],
    );
    insta::assert_snapshot!(fails(&o));
}

#[test]
fn interpreter_values_larger_than_memory() {
    let o = bnnc_limited(
        "4G",
        &[
            "run",
            "--batch",
            "150000",
            "examples/bireal_cnn.ir",
            "--random",
        ],
    );
    insta::assert_snapshot!(fails(&o));
}

#[test]
fn random_inputs_larger_than_memory() {
    let o = bnnc_limited(
        "1M",
        &[
            "run",
            "--batch",
            "1000",
            "examples/bireal_cnn.ir",
            "--random",
        ],
    );
    insta::assert_snapshot!(fails(&o));
}

#[test]
fn bench_larger_than_memory() {
    let o = bnnc_limited(
        "4G",
        &["bench", "--batch", "150000", "examples/bireal_cnn.ir"],
    );
    insta::assert_snapshot!(fails(&o));
}

#[test]
fn eval_batch_larger_than_memory() {
    let o = bnnc_limited(
        "200M",
        &[
            "eval",
            "examples/bireal_cnn.ir",
            "--data",
            "data/mnist",
            "--engine",
            "jit",
            "--batch",
            "10000",
        ],
    );
    insta::assert_snapshot!(fails(&o));
}

#[test]
fn a_run_within_the_limit_runs() {
    let out = ok(&bnnc_limited(
        "4G",
        &[
            "run",
            "--engine",
            "jit",
            "--batch",
            "8",
            "examples/bireal_cnn.ir",
            "--random",
        ],
    ));
    assert!(out.contains("logits: f32[8, 10]"), "{out}");
}
