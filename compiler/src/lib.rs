//! bnnc: the compiler library. A verified [`bnnc_ir::Model`] becomes native
//! code for a [`bnnc_kir::target::Target`], through one pipeline:
//!
//! - [`compile`]: the pipeline ([`compile::compile`] with [`compile::CompileOptions`]),
//!   the only place the stages below are chained;
//! - [`opt`]: the e-graph optimizer (equality saturation with egg; exact rules);
//! - [`lower`]: graph -> kir (constant folding, bit packing, kernels, memory
//!   plan, entry points), for the target it is given;
//! - [`header`]: the C header of a compiled model;
//! - [`jit`]: a model compiled into this process, callable from Rust;
//! - [`probe`]: the popcount ceiling of this CPU, measured by generated code.
//!
//! The command-line tool is the `bnnc-cli` crate and the build-script API the
//! `bnnc-build` crate; neither adds a stage of its own.

pub mod abi;
pub mod compile;
pub mod header;
pub mod jit;
pub mod lower;
pub mod opt;
pub mod probe;
