//! The compilation pipeline: model -> kir -> object + header (or CLIF, kir text).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use bnnc_ir::target::{Target, TargetError};
use bnnc_ir::Model;

use crate::lower::{lower, LowerError, Lowered};

/// Why a model could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error(transparent)]
    Lower(#[from] LowerError),
    #[error(transparent)]
    Target(TargetError),
    #[error("code generation failed: {0}")]
    Backend(#[from] bnnc_cranelift::Error),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("internal compiler error: {0}")]
    Internal(String),
}

/// A lowered model and the target it is for.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub lowered: Lowered,
    pub target: Target,
}

/// Lowers a verified model for `target`.
pub fn lower_model(model: &Model, target: &Target) -> Result<Compiled, CompileError> {
    Ok(Compiled {
        lowered: lower(model)?,
        target: target.clone(),
    })
}

/// What `bnnc compile` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Emit {
    /// `<model>.o`: relocatable object.
    Obj,
    /// `<model>.h`: C header.
    Header,
    /// `<model>.clif`: Cranelift IR.
    Clif,
    /// `<model>.kir`: the kernel IR.
    Kir,
}

impl Emit {
    pub fn extension(self) -> &'static str {
        match self {
            Emit::Obj => "o",
            Emit::Header => "h",
            Emit::Clif => "clif",
            Emit::Kir => "kir",
        }
    }
}

/// Compiles `model` for `target` and writes each requested artifact into
/// `out_dir` as `<model>.<ext>`; returns the paths written.
pub fn compile_to_dir(
    model: &Model,
    target: &Target,
    emit: &BTreeSet<Emit>,
    out_dir: &Path,
) -> Result<Vec<PathBuf>, CompileError> {
    let c = lower_model(model, target)?;
    let l = &c.lowered;
    std::fs::create_dir_all(out_dir).map_err(|source| CompileError::Write {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let mut written = Vec::new();
    for &e in emit {
        let bytes: Vec<u8> = match e {
            Emit::Obj => bnnc_cranelift::compile_object(&l.module, target)?,
            Emit::Header => crate::header::c_header(l, target).into_bytes(),
            Emit::Clif => bnnc_cranelift::clif_text(&l.module, target)?.into_bytes(),
            Emit::Kir => bnnc_ir::kir::print(&l.module).into_bytes(),
        };
        let path = out_dir.join(format!("{}.{}", l.name, e.extension()));
        std::fs::write(&path, bytes).map_err(|source| CompileError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}
