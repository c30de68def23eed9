//! Tokens of one line of `model.ir`. Tokens never span lines.

use crate::error::Diagnostic;
use crate::graph::Loc;

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// Identifier: `[A-Za-z_][A-Za-z0-9_.]*`.
    Ident(String),
    /// A number as written (`3`, `-1`, `+1`, `0.5`, `1e-5`, `-inf`, `nan`).
    Num(String),
    /// A double-quoted string (escapes `\"` and `\\`).
    Str(String),
    /// A weight key: `@key` or `@"any key"`.
    At(String),
    Eq,
    Colon,
    Comma,
    LParen,
    RParen,
    LBrack,
    RBrack,
}

impl Tok {
    /// How the token reads in a message.
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Num(s) => format!("number `{s}`"),
            Tok::Str(s) => format!("string \"{s}\""),
            Tok::At(s) => format!("weight key `@{s}`"),
            Tok::Eq => "`=`".into(),
            Tok::Colon => "`:`".into(),
            Tok::Comma => "`,`".into(),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::LBrack => "`[`".into(),
            Tok::RBrack => "`]`".into(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Token {
    pub tok: Tok,
    pub loc: Loc,
}

/// Characters allowed in a bare `@key`.
pub fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-')
}

pub fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

pub fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

/// Splits one line (1-based `line`) into tokens; a `#` outside a string starts a
/// comment. Columns count characters from 1.
pub fn lex_line(text: &str, line: u32) -> Result<Vec<Token>, Diagnostic> {
    let chars: Vec<char> = text.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    let loc = |i: usize| Loc::new(line, i as u32 + 1);
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        let simple = match c {
            '=' => Some(Tok::Eq),
            ':' => Some(Tok::Colon),
            ',' => Some(Tok::Comma),
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            '[' => Some(Tok::LBrack),
            ']' => Some(Tok::RBrack),
            _ => None,
        };
        if let Some(tok) = simple {
            toks.push(Token {
                tok,
                loc: loc(start),
            });
            i += 1;
            continue;
        }
        if c == '#' {
            break;
        }
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '"' {
            let (s, next) = lex_string(&chars, i, line)?;
            toks.push(Token {
                tok: Tok::Str(s),
                loc: loc(start),
            });
            i = next;
            continue;
        }
        if c == '@' {
            i += 1;
            let key = if chars.get(i) == Some(&'"') {
                let (s, next) = lex_string(&chars, i, line)?;
                i = next;
                s
            } else {
                let ks = i;
                while i < chars.len() && is_key_char(chars[i]) {
                    i += 1;
                }
                chars[ks..i].iter().collect()
            };
            if key.is_empty() {
                return Err(Diagnostic::new(
                    loc(start),
                    "expected a weight key after `@` (like `@conv1.weight` or `@\"any key\"`)",
                ));
            }
            toks.push(Token {
                tok: Tok::At(key),
                loc: loc(start),
            });
            continue;
        }
        let signed = (c == '+' || c == '-')
            && chars
                .get(i + 1)
                .is_some_and(|&d| d.is_ascii_digit() || d == '.' || d == 'i' || d == 'n');
        if c.is_ascii_digit()
            || signed
            || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            if signed {
                i += 1;
            }
            if chars[i].is_ascii_alphabetic() {
                // -inf, +inf, -nan
                let ws = i;
                while i < chars.len() && chars[i].is_ascii_alphabetic() {
                    i += 1;
                }
                let word: String = chars[ws..i].iter().collect();
                if word != "inf" && word != "nan" {
                    return Err(Diagnostic::new(
                        loc(start),
                        format!("expected a number after `{c}`, found `{word}`"),
                    ));
                }
            } else {
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                    i += 1;
                    if i < chars.len() && (chars[i] == '+' || chars[i] == '-') {
                        i += 1;
                    }
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
                if i < chars.len() && is_ident_char(chars[i]) {
                    let mut j = i;
                    while j < chars.len() && is_ident_char(chars[j]) {
                        j += 1;
                    }
                    let word: String = chars[start..j].iter().collect();
                    return Err(Diagnostic::new(
                        loc(start),
                        format!("`{word}` is neither a number nor a name (names start with a letter or `_`)"),
                    ));
                }
            }
            toks.push(Token {
                tok: Tok::Num(chars[start..i].iter().collect()),
                loc: loc(start),
            });
            continue;
        }
        if is_ident_start(c) {
            while i < chars.len() && is_ident_char(chars[i]) {
                i += 1;
            }
            toks.push(Token {
                tok: Tok::Ident(chars[start..i].iter().collect()),
                loc: loc(start),
            });
            continue;
        }
        return Err(Diagnostic::new(
            loc(start),
            format!("unexpected character `{}`", c.escape_default()),
        ));
    }
    Ok(toks)
}

fn lex_string(chars: &[char], open: usize, line: u32) -> Result<(String, usize), Diagnostic> {
    let mut s = String::new();
    let mut i = open + 1;
    while i < chars.len() {
        match chars[i] {
            '"' => return Ok((s, i + 1)),
            '\\' => {
                match chars.get(i + 1) {
                    Some('"') => s.push('"'),
                    Some('\\') => s.push('\\'),
                    _ => {
                        return Err(Diagnostic::new(
                            Loc::new(line, i as u32 + 1),
                            "unknown escape in string; only `\\\"` and `\\\\` are allowed",
                        ))
                    }
                }
                i += 2;
            }
            c => {
                s.push(c);
                i += 1;
            }
        }
    }
    Err(Diagnostic::new(
        Loc::new(line, open as u32 + 1),
        "unterminated string: expected a closing `\"` on the same line",
    ))
}

/// Quotes `s` as a string literal.
pub fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        lex_line(s, 1).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn lexes_a_definition() {
        assert_eq!(
            toks("y = conv2d(x, w, pad_value=-1, eps=1e-5) # hi"),
            vec![
                Tok::Ident("y".into()),
                Tok::Eq,
                Tok::Ident("conv2d".into()),
                Tok::LParen,
                Tok::Ident("x".into()),
                Tok::Comma,
                Tok::Ident("w".into()),
                Tok::Comma,
                Tok::Ident("pad_value".into()),
                Tok::Eq,
                Tok::Num("-1".into()),
                Tok::Comma,
                Tok::Ident("eps".into()),
                Tok::Eq,
                Tok::Num("1e-5".into()),
                Tok::RParen,
            ]
        );
    }

    #[test]
    fn lexes_keys_and_strings() {
        assert_eq!(
            toks(r#"w = @a.b/c-1: @"x y" "q\"""#),
            vec![
                Tok::Ident("w".into()),
                Tok::Eq,
                Tok::At("a.b/c-1".into()),
                Tok::Colon,
                Tok::At("x y".into()),
                Tok::Str("q\"".into()),
            ]
        );
        assert_eq!(
            toks("-inf +1 nan"),
            vec![
                Tok::Num("-inf".into()),
                Tok::Num("+1".into()),
                Tok::Ident("nan".into())
            ]
        );
    }

    #[test]
    fn errors_have_columns() {
        let e = lex_line("x = a $ b", 3).unwrap_err();
        assert_eq!(e.loc, Loc::new(3, 7));
        let e = lex_line("w = \"abc", 2).unwrap_err();
        assert_eq!(e.loc, Loc::new(2, 5));
        assert!(lex_line("x = 12ab", 1).is_err());
    }
}
