//! Diagnostics: every problem with a model names where it is and what was expected.

use std::fmt;
use std::path::PathBuf;

use crate::graph::Loc;

/// A problem at one place in a model file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub loc: Loc,
    pub message: String,
}

impl Diagnostic {
    pub fn new(loc: Loc, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            loc,
            message: message.into(),
        }
    }

    /// Renders as `file:line:col: error: message` (`file: error: ...` when the
    /// location is unknown).
    pub fn render(&self, file: &str) -> String {
        if self.loc == Loc::NONE {
            format!("{file}: error: {}", self.message)
        } else {
            format!(
                "{file}:{}:{}: error: {}",
                self.loc.line, self.loc.col, self.message
            )
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render("<model>"))
    }
}

impl std::error::Error for Diagnostic {}

/// Errors of loading a model (text + weights) from disk.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: error: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A syntax, verification or weight-mismatch problem at a place in the model.
    #[error("{}", diag.render(&file.display().to_string()))]
    Model { file: PathBuf, diag: Diagnostic },
    /// The weights file itself is unreadable or malformed.
    #[error("{}: error: {message}", path.display())]
    Weights { path: PathBuf, message: String },
}
