//! bnnc-cli: the `bnnc` command-line tool. The binary (`src/main.rs`) only
//! parses arguments and prints errors; every command is a function here, over
//! the libraries below it (`bnnc` for compiling, `bnnc-train` for training,
//! `bnnc-runtime` for the interpreter, `bnnc-ir` for the graph), so tests can
//! call them too:
//!
//! - [`commands`]: the command line itself (clap), its typed error and one
//!   function per command;
//! - [`load`]: read a model's text, parse and verify it (no weights needed);
//! - [`stats`]: the one-line summary `bnnc check` prints;
//! - [`npy`]: NumPy `.npy` input and output tensors;
//! - [`output`]: where commands may write (inside the model's folder unless
//!   told otherwise);
//! - [`summary`]: the per-output summary `bnnc run` prints;
//! - [`eval`]: accuracy of a classifier on an IDX dataset (`bnnc eval`);
//! - [`train`]: options, progress, curves and plots of `bnnc train`.

pub mod commands;
pub mod eval;
pub mod load;
pub mod npy;
pub mod output;
pub mod stats;
pub mod summary;
pub mod train;
