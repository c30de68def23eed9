//! bnnc: the compiler driver and the `bnnc` command-line tool.
//!
//! The binary (`src/main.rs`) only parses arguments and prints errors; every
//! command is a library function here so tests and other tools can call it:
//!
//! - [`load`]: read a model's text, parse and verify it (no weights needed);
//! - [`stats`]: the one-line summary `bnnc check` prints;
//! - [`init`]: weight initialisation (`bnnc init`), deterministic from a seed;
//! - [`npy`]: NumPy `.npy` input and output tensors;
//! - [`inputs`]: random model inputs (`bnnc run --random`);
//! - [`summary`]: the per-output summary `bnnc run` prints;
//! - [`cli`]: the command line itself (clap) and its typed error.

pub mod build;
pub mod cli;
pub mod compile;
pub mod eval;
pub mod export;
pub mod header;
pub mod init;
pub mod inputs;
pub mod jit;
pub mod load;
pub mod lower;
pub mod npy;
pub mod opt;
pub mod stats;
pub mod summary;
pub mod train;
