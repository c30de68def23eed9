//! The API without LLVM (the `llvm` feature off): every entry point returns
//! [`Error::NotBuilt`].

use bnnc_kir as kir;
use bnnc_kir::target::Target;

use crate::{Artifacts, Error, Machine, Request, Stage};

/// See the `llvm` build of this crate.
pub fn compile(_m: &kir::Module, _target: &Target, _req: Request) -> Result<Artifacts, Error> {
    Err(Error::NotBuilt)
}

/// See the `llvm` build of this crate.
pub fn compile_object(_m: &kir::Module, _target: &Target) -> Result<Vec<u8>, Error> {
    Err(Error::NotBuilt)
}

/// See the `llvm` build of this crate.
pub fn assembly(_m: &kir::Module, _target: &Target) -> Result<String, Error> {
    Err(Error::NotBuilt)
}

/// See the `llvm` build of this crate.
pub fn llvm_ir(_m: &kir::Module, _target: &Target, _stage: Stage) -> Result<String, Error> {
    Err(Error::NotBuilt)
}

/// See the `llvm` build of this crate.
pub fn machine(_target: &Target) -> Result<Machine, Error> {
    Err(Error::NotBuilt)
}

/// See the `llvm` build of this crate.
pub fn host_cpu() -> Result<(String, String), Error> {
    Err(Error::NotBuilt)
}

/// A JIT-compiled module (never built without LLVM).
#[derive(Debug)]
pub struct Jit {
    _private: (),
}

impl Jit {
    /// Always [`Error::NotBuilt`].
    pub fn new(_m: &kir::Module, _target: &Target) -> Result<Jit, Error> {
        Err(Error::NotBuilt)
    }

    /// The address of an exported function.
    pub fn function(&self, _name: &str) -> Option<*const u8> {
        None
    }
}
