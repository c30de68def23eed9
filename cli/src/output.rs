//! Where commands write files.
//!
//! A model file from someone else must not be able to overwrite a user's
//! files. So a command writes where the user says (`-o`, `--csv`, `--plot`,
//! `--output`) or, by default, only inside the model's folder: `bnnc init`
//! and `bnnc train` write the weights file the model's `weights "..."` line
//! names only when that path stays inside the model's folder
//! ([`model_weights_for_writing`]); a path that is absolute or leaves the
//! folder (through `..` or a symbolic link) is refused, with the `-o` that
//! writes there anyway. Reading weights from such a path stays allowed.
//!
//! Every file is written by [`bnnc_ir::files::write_atomic`] (a temporary
//! file in the same folder, then a rename), so a failed command leaves no
//! half-written file.

use std::path::{Component, Path, PathBuf};

use bnnc_ir::error::escape_path;
use bnnc_ir::{Diagnostic, Graph, Model};

use crate::commands::CliError;

/// The folder of the model file `model_file` (`.` for a bare file name).
pub fn model_folder(model_file: &Path) -> &Path {
    match model_file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The weights file `graph` (read from `model_file`) names, for writing it:
/// `Ok(None)` when the model names none, an error at the `weights` line when
/// the path is absolute or leaves the model's folder. `flag` is the option
/// that names an output explicitly (`-o`), for the message.
pub fn model_weights_for_writing(
    model_file: &Path,
    graph: &Graph,
    flag: &str,
) -> Result<Option<PathBuf>, CliError> {
    let (Some(rel), Some(path)) = (&graph.weights, Model::weights_path(graph, model_file)) else {
        return Ok(None);
    };
    let folder = model_folder(model_file);
    match leaves_folder(folder, Path::new(rel)) {
        None => Ok(Some(path)),
        Some(why) => Err(CliError::Model(bnnc_ir::Error::Model {
            file: model_file.to_path_buf(),
            diag: Diagnostic::new(
                graph.weights_loc,
                format!(
                    "the weights path \"{rel}\" {why}, outside the model's folder {}; bnnc \
                     writes a model's weights only inside its folder unless told where: pass \
                     `{flag} {}` to write there anyway (reading weights from there needs nothing)",
                    escape_path(folder),
                    escape_path(&path)
                ),
            ),
        })),
    }
}

/// Why `rel`, relative to `folder`, names a file outside `folder`, or `None`
/// when it stays inside: it is absolute, a `..` climbs above `folder`, or an
/// existing part of it is a symbolic link (or `..` after one) that leads out.
pub fn leaves_folder(folder: &Path, rel: &Path) -> Option<String> {
    let mut depth = 0usize;
    for c in rel.components() {
        match c {
            Component::Prefix(_) | Component::RootDir => return Some("is absolute".into()),
            Component::CurDir => {}
            Component::ParentDir => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return Some("climbs out with `..`".into()),
            },
            Component::Normal(_) => depth += 1,
        }
    }
    // Symbolic links: resolve the longest existing prefix of the path.
    let home = folder.canonicalize().ok()?;
    let full = folder.join(rel);
    let mut existing = full.as_path();
    let resolved = loop {
        if let Ok(p) = existing.canonicalize() {
            break p;
        }
        existing = existing.parent()?;
    };
    (!resolved.starts_with(&home)).then(|| {
        format!(
            "leads through a symbolic link to {}",
            escape_path(&resolved)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_escapes_are_found() {
        let here = Path::new(".");
        for (rel, inside) in [
            ("w.safetensors", true),
            ("sub/w.safetensors", true),
            ("./sub/../w.safetensors", true),
            ("../w.safetensors", false),
            ("sub/../../w.safetensors", false),
            ("/etc/w.safetensors", false),
        ] {
            assert_eq!(
                leaves_folder(here, Path::new(rel)).is_none(),
                inside,
                "{rel}"
            );
        }
    }

    #[test]
    fn model_folder_of_a_bare_name_is_dot() {
        assert_eq!(model_folder(Path::new("m.ir")), Path::new("."));
        assert_eq!(model_folder(Path::new("a/m.ir")), Path::new("a"));
    }
}
