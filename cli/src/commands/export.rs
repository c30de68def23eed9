//! `bnnc export`: an inference copy of a trained model, latent weights read
//! through sign(...) stored as packed b1.

use std::io::Write;
use std::path::PathBuf;

use bnnc_ir::error::escape_path;
use clap::Args;

use super::CliError;
use crate::stats::{plural, thousands};

/// The long help of `bnnc export`.
pub(super) const LONG_ABOUT: &str = "\
Write an inference copy of a trained model: every weight read only through \
sign(...) (the latent float weights training updates) becomes a b1 weight holding its signs, \
stored packed 8 per byte, and the sign ops that read it are dropped; everything else is kept as \
it is (batch-norm running statistics, other weights, activation signs with their training \
attributes, every name). The exported model computes bit for bit what the original computes, \
and its weights file is about 32 times smaller for the binarized weights.

Writes OUT.ir (canonical text) and OUT.safetensors beside it, which OUT.ir names. Tensors of \
the original weights file that the graph does not read are not copied. The source model and \
its weights file are never overwritten.";

/// The examples after the help of `bnnc export`.
pub(super) const AFTER_HELP: &str = "Example:\n  bnnc export examples/mnist_mlp.ir -o /tmp/mnist_mlp_inf.ir && bnnc check /tmp/mnist_mlp_inf.ir";

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The trained model (.ir); its weights file must exist.
    pub file: PathBuf,
    /// The inference model to write (.ir); its weights go to the same path
    /// with the extension .safetensors.
    #[arg(long, short = 'o', value_name = "OUT.ir")]
    pub output: PathBuf,
}

/// `bnnc export`: writes the inference model and its weights, and what changed.
pub(super) fn run(a: &ExportArgs, out: &mut dyn Write) -> Result<(), CliError> {
    use bnnc_train::export::ExportError;
    let w = bnnc_train::export::export_to(&a.file, &a.output).map_err(|e| match e {
        // Load and write errors already name their file.
        ExportError::Model(e) => CliError::Model(e),
        source => CliError::Export {
            file: a.file.clone(),
            source,
        },
    })?;
    let e = &w.exported;
    let mut say = |s: String| writeln!(out, "{s}").map_err(CliError::Stdout);
    match &w.weights_path {
        Some(wp) => say(format!(
            "wrote {} and {}",
            escape_path(&w.model_path),
            escape_path(wp)
        ))?,
        None => say(format!("wrote {} (no weights)", escape_path(&w.model_path)))?,
    }
    let elements: usize = e.binarized.iter().map(|b| b.elements).sum();
    say(format!(
        "  {} stored as packed b1 ({}), {} removed, {} kept as they were",
        plural(e.binarized.len(), "latent weight"),
        plural(elements, "element"),
        plural(e.signs_removed, "sign op"),
        plural(e.kept.len(), "weight"),
    ))?;
    if let (Some(before), Some(after)) = (w.original_weights_bytes, w.weights_bytes) {
        say(format!(
            "  weights {} -> {} bytes ({:.1}x smaller)",
            thousands(before),
            thousands(after),
            before as f64 / after.max(1) as f64
        ))?;
    }
    Ok(())
}
