//! Diagnostics: every problem with a model names where it is and what was expected.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};

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
    /// location is unknown), one line: control characters in `file` and in the
    /// message (which may quote names, keys and paths from a file) are
    /// escaped by [`escape`].
    pub fn render(&self, file: &str) -> String {
        let (file, message) = (escape(file), escape(&self.message));
        if self.loc == Loc::NONE {
            format!("{file}: error: {message}")
        } else {
            format!(
                "{file}:{}:{}: error: {message}",
                self.loc.line, self.loc.col
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

/// Errors of loading a model (text + weights) from disk. Each renders as one
/// line, with control characters escaped ([`escape`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: error: cannot read: {source}", escape_path(path))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A syntax, verification or weight-mismatch problem at a place in the
    /// model; also a weights file that cannot be loaded, at the model's
    /// `weights` line.
    #[error("{}", diag.render(&file.to_string_lossy()))]
    Model { file: PathBuf, diag: Diagnostic },
    /// A file (weights, model text) could not be written.
    #[error("{}: error: cannot write: {source}", escape_path(path))]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The weights file itself is unreadable or malformed.
    #[error("{}: error: {}", escape_path(path), escape(message))]
    Weights { path: PathBuf, message: String },
}

/// `s` with every control character (C0, DEL, C1; line breaks and tabs
/// included) and every bidirectional-text control written as a Rust escape
/// (`\n`, `\t`, `\u{1b}`, `\u{202e}`), everything else as it is. Messages
/// print names, keys and paths that come from files through this, so a file
/// cannot move the terminal's cursor, recolour it or split one message into
/// several lines. Backslashes are kept, so escaping twice changes nothing.
pub fn escape(s: &str) -> Cow<'_, str> {
    let needs = |c: char| {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !s.chars().any(needs) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A path as messages print it: lossily decoded, then [`escape`]d.
pub fn escape_path(path: &Path) -> String {
    escape(&path.to_string_lossy()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_writes_control_characters_as_escapes_and_keeps_the_rest() {
        assert!(matches!(escape("plain é ✓ `x`"), Cow::Borrowed(_)));
        assert_eq!(
            escape("a\nb\tc\r\u{1b}[2J\u{7f}\u{85}"),
            "a\\nb\\tc\\r\\u{1b}[2J\\u{7f}\\u{85}"
        );
        assert_eq!(escape("abc\u{202e}fed"), "abc\\u{202e}fed");
        let once = escape("k\u{0}\\n");
        assert_eq!(escape(&once), once, "escaping twice changes nothing");
    }

    #[test]
    fn diagnostics_and_errors_render_on_one_line() {
        let d = Diagnostic::new(Loc::new(2, 3), "key `a\nb` is missing");
        assert_eq!(
            d.render("m\u{1b}.ir"),
            "m\\u{1b}.ir:2:3: error: key `a\\nb` is missing"
        );
        let e = Error::Weights {
            path: PathBuf::from("w\n.safetensors"),
            message: "tensor `x\ry`: bad".into(),
        };
        assert_eq!(
            e.to_string(),
            "w\\n.safetensors: error: tensor `x\\ry`: bad"
        );
    }
}
