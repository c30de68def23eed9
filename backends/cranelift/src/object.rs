//! Relocatable ELF objects.

use bnnc_kir as kir;
use bnnc_kir::target::Target;
use cranelift_module::default_libcall_names;
use cranelift_object::{ObjectBuilder, ObjectModule};

use crate::isa::{build_isa, build_wide_isa, Purpose};
use crate::translate::Placement;
use crate::{compile_module, Error};

pub(crate) fn new_module(m: &kir::Module, target: &Target) -> Result<ObjectModule, Error> {
    let isa = build_isa(target, Purpose::Object)?;
    let name = if m.name.is_empty() { "bnnc" } else { &m.name };
    let builder = ObjectBuilder::new(isa, name, default_libcall_names())
        .map_err(|e| Error::Module(e.to_string()))?;
    Ok(ObjectModule::new(builder))
}

/// Compiles `m` for `target` into a relocatable ELF object (position
/// independent, for PIE executables and shared objects).
///
/// Exported kir functions get global symbols, the others local ones. Data
/// objects are local, read-only and aligned as declared. Externs (`expf`)
/// are undefined symbols for the linker to resolve (link with `-lm`).
pub fn compile_object(m: &kir::Module, target: &Target) -> Result<Vec<u8>, Error> {
    let mut module = new_module(m, target)?;
    let wide = build_wide_isa(target, Purpose::Object)?;
    compile_module(&mut module, m, Placement::Object, false, &*wide, |_, _| {})?;
    module
        .finish()
        .emit()
        .map_err(|e| Error::Module(format!("writing the object: {e}")))
}
