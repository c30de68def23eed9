//! Compile models from a cargo build script and link them into the crate, in
//! the spirit of `cc` and `prost-build`.
//!
//! For each model, [`Config::compile`] writes into `OUT_DIR`:
//!
//! - `<model>.o`: the object the Cranelift backend generates through the one
//!   pipeline (`bnnc::compile::compile`, e-graph optimizer included unless
//!   [`Config::opt_level`]`(0)`), weights in read-only data;
//! - `libbnnc_<model>.a`: a static library holding that object, for the linker;
//! - `<model>.h`: the C header (for C code built in the same crate);
//! - `<model>.rs`: safe Rust bindings, to `include!` (see below).
//!
//! and prints the directives cargo reads: `cargo:rustc-link-search=native=OUT_DIR`,
//! `cargo:rustc-link-lib=static=bnnc_<model>` per model, `cargo:rustc-link-lib=m`
//! (the object calls `expf`), and `cargo:rerun-if-changed=` for every `.ir`
//! file and the weights file it names. `<model>` is the name on the model's
//! `model` line (dots become underscores), not the file's name.
//!
//! # Example
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [build-dependencies]
//! bnnc-build = { path = "../bnnc/build" }
//! ```
//!
//! `build.rs`:
//!
//! ```no_run
//! fn main() {
//!     bnnc_build::Config::new()
//!         .model("models/mnist_mlp.ir") // its weights file is found from the .ir
//!         .compile_or_panic();
//! }
//! ```
//!
//! or, to handle the error yourself:
//!
//! ```no_run
//! fn main() {
//!     let built = bnnc_build::Config::new()
//!         .model("models/mnist_mlp.ir")
//!         .target("x86_64+popcnt") // instead of cargo's target baseline
//!         .compile();
//!     if let Err(e) = built {
//!         eprintln!("error: {e}"); // `models/mnist_mlp.ir:12:5: error: ...`
//!         std::process::exit(1);
//!     }
//! }
//! ```
//!
//! `src/main.rs`:
//!
//! ```text
//! include!(concat!(env!("OUT_DIR"), "/mnist_mlp.rs"));
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let model = mnist_mlp::Model::new()?; // checks the CPU has the target's features
//!     let batch = 2;
//!     let x = vec![0.5f32; batch * mnist_mlp::INPUT_X_LEN];
//!     let mut logits = vec![0f32; batch * mnist_mlp::OUTPUT_LOGITS_LEN];
//!     model.run(&x, &mut logits, batch)?;
//!     println!("{logits:?}");
//!     Ok(())
//! }
//! ```
//!
//! # The generated Rust module
//!
//! `<model>.rs` holds one module named after the model (so several models can
//! be included side by side) with:
//!
//! - per input and output (`X` is the value's name in upper case):
//!   `INPUT_X_LEN` / `OUTPUT_X_LEN`, the slice elements of one sample (of the
//!   whole tensor when it has no leading batch dimension `N`; see `*_BATCHED`),
//!   `*_SHAPE` (the dimensions after `N`), and for `b1` tensors `*_ROWS`,
//!   `*_CHANNELS`, `*_WORDS_PER_ROW`;
//! - `WORKSPACE_FIXED`, `WORKSPACE_PER_SAMPLE`, `MAX_BATCH`, and
//!   `workspace_size(batch)`;
//! - `ffi`: the `extern "C"` declarations of `<model>_run`, `<model>_run_v`,
//!   `<model>_run_checked` and `<model>_workspace_size`, and the status codes;
//! - `Model`: `Model::new()` checks at run time that the CPU has every feature
//!   the target names; `run(&self, inputs.., outputs.., batch)` checks slice
//!   lengths and allocates the workspace, `run_with_workspace(.., workspace,
//!   batch)` takes one; both return `Result<(), Status>`;
//! - `Status`, why a call did not run (implements `std::error::Error`);
//! - for models with `b1` inputs or outputs, `pack_b1` and `unpack_b1`.
//!
//! Slices have the storage of the C header: `f32` and `i32` tensors are
//! `&[f32]` and `&[i32]`, row-major (NHWC); `b1` tensors are bit-packed
//! `&[u64]`: each row of `channels` bits takes `ceil(channels / 64)` words,
//! channel `c` is bit `c % 64` of word `c / 64`, a set bit means -1, and unused
//! tail bits are 0.
//!
//! # Target
//!
//! Without [`Config::target`], the code is for the architecture cargo is
//! building for (`CARGO_CFG_TARGET_ARCH`) with exactly the CPU features the
//! crate's own Rust code is compiled with (`CARGO_CFG_TARGET_FEATURE`,
//! restricted to the features bnnc knows). With default flags that is the
//! architecture's baseline (`x86_64`: SSE2, no `popcnt`; `aarch64`: no `lse`,
//! no `dotprod`), so the program runs on every CPU of that architecture; with
//! `RUSTFLAGS="-C target-cpu=native"` or `-C target-feature=+popcnt` the model
//! uses the same features as the Rust code. [`Config::target`] names a target
//! explicitly (`"x86_64+popcnt+avx2"`; [`Target::help`](bnnc_kir::target::Target::help) lists the rest); its
//! architecture must be cargo's. `"native"` (every feature of the machine
//! running the build) is accepted only when that machine has cargo's target
//! architecture. `Model::new()` in the generated code refuses to run on a CPU
//! that lacks a feature the target names.
//!
//! Models are compiled by the Cranelift backend, which writes ELF objects for
//! x86_64 and aarch64: a cargo target of another architecture is refused with
//! the backend's error (naming the model), and operating systems with another
//! object format (Windows, Apple) are refused before anything is compiled.
//! Outside a build script (no cargo variables), the default is the baseline of
//! the host architecture and nothing is checked against it.
//!
//! # The static library
//!
//! `libbnnc_<model>.a` is written by bnnc itself (a GNU-format archive with a
//! symbol index read from the object's ELF symbol table), not by an `ar`
//! tool: nothing needs to be installed or configured (no `ar` on `PATH`, no
//! `AR_<target>` for cross builds), and the archive is byte-for-byte
//! deterministic (no timestamps, owners or modes from the machine).
//!
//! # Layout
//!
//! - `cargo`: the build-script glue: [`Config`], [`CompiledModel`], [`Error`],
//!   [`CargoTarget`] and [`resolve_target`], and the `cargo:` directives;
//! - `archive`: [`static_library`], a GNU `ar` archive written directly, with
//!   its symbol index from [`elf_defined_globals`];
//! - `bindings`: [`rust_bindings`], the safe Rust module: a rendering of the
//!   model's [`bnnc::abi::ModelAbi`], which the C header renders too.

#![allow(clippy::needless_doctest_main)] // build scripts have a `main`

mod archive;
mod bindings;
mod cargo;
#[cfg(test)]
mod test_util;

pub use archive::{elf_defined_globals, static_library};
pub use bindings::{rust_bindings, rust_bindings_of};
pub use cargo::{resolve_target, CargoTarget, CompiledModel, Config, Error};
