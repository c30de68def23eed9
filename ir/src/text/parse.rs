//! Parser for `model.ir`. Reports the first problem with its line and column.

use std::collections::HashMap;

use super::attr::{self, AttrDefault, AttrValue, Attrs, Kind, Required};
use super::lex::{lex_line, Tok, Token};
use crate::error::Diagnostic;
use crate::graph::{Graph, Loc, Node, NodeLocs, ValueId};
use crate::op::{op_table, op_value, Conv2dAttrs, Op, PoolAttrs, OP_NAMES};
use crate::tensor::TensorData;
use crate::types::{Dim, ElemType, TensorType};

/// Statement keywords; not usable as value names.
pub const KEYWORDS: &[&str] = &["model", "weights", "input", "output"];

/// Parses a whole model. The graph is not yet verified (see [`crate::verify`]).
pub fn parse(src: &str) -> Result<Graph, Diagnostic> {
    let mut lines = Vec::new();
    for (i, text) in src.lines().enumerate() {
        let line = (i + 1) as u32;
        let toks = lex_line(text, line)?;
        if !toks.is_empty() {
            lines.push((line, text.chars().count() as u32, toks));
        }
    }
    // Where each name is defined, so a use before its definition is named as such.
    let mut defined_at: HashMap<String, u32> = HashMap::new();
    for (line, _, toks) in &lines {
        if let Some(name) = defined_name(toks) {
            defined_at.entry(name).or_insert(*line);
        }
    }
    let mut p = Parser {
        graph: Graph::new(""),
        names: HashMap::new(),
        defined_at,
        have_model: false,
        have_weights: false,
    };
    for (line, len, toks) in lines {
        let mut cur = Cursor {
            toks: &toks,
            pos: 0,
            end: Loc::new(line, len + 1),
        };
        p.statement(&mut cur)?;
    }
    if !p.have_model {
        return Err(Diagnostic::new(
            Loc::new(1, 1),
            "empty model: expected a first line `model NAME`",
        ));
    }
    Ok(p.graph)
}

fn defined_name(toks: &[Token]) -> Option<String> {
    match (toks.first().map(|t| &t.tok), toks.get(1).map(|t| &t.tok)) {
        (Some(Tok::Ident(k)), Some(Tok::Ident(n))) if k == "input" => Some(n.clone()),
        (Some(Tok::Ident(n)), Some(Tok::Eq)) => Some(n.clone()),
        _ => None,
    }
}

struct Cursor<'a> {
    toks: &'a [Token],
    pos: usize,
    /// Just past the end of the line, for "expected X at end of line".
    end: Loc,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<&'a Token> {
        self.toks.get(self.pos)
    }

    fn peek_tok(&self) -> Option<&'a Tok> {
        self.peek().map(|t| &t.tok)
    }

    fn loc(&self) -> Loc {
        self.peek().map(|t| t.loc).unwrap_or(self.end)
    }

    fn next(&mut self) -> Option<&'a Token> {
        let t = self.toks.get(self.pos);
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    fn found(&self) -> String {
        match self.peek() {
            Some(t) => t.tok.describe(),
            None => "the end of the line".into(),
        }
    }

    fn error(&self, expected: &str) -> Diagnostic {
        Diagnostic::new(
            self.loc(),
            format!("expected {expected}, found {}", self.found()),
        )
    }

    fn expect(&mut self, tok: Tok, expected: &str) -> Result<Loc, Diagnostic> {
        if self.peek_tok() == Some(&tok) {
            Ok(self.next().expect("peeked").loc)
        } else {
            Err(self.error(expected))
        }
    }

    fn ident(&mut self, expected: &str) -> Result<(String, Loc), Diagnostic> {
        match self.peek() {
            Some(Token {
                tok: Tok::Ident(s),
                loc,
            }) => {
                self.pos += 1;
                Ok((s.clone(), *loc))
            }
            _ => Err(self.error(expected)),
        }
    }

    fn end_of_line(&self) -> Result<(), Diagnostic> {
        match self.peek() {
            None => Ok(()),
            Some(t) => Err(Diagnostic::new(
                t.loc,
                format!("expected the end of the line, found {}", t.tok.describe()),
            )),
        }
    }
}

struct Parser {
    graph: Graph,
    names: HashMap<String, ValueId>,
    defined_at: HashMap<String, u32>,
    have_model: bool,
    have_weights: bool,
}

impl Parser {
    fn statement(&mut self, c: &mut Cursor) -> Result<(), Diagnostic> {
        let first = c.peek().expect("non-empty line");
        let is_def = c.toks.get(1).map(|t| &t.tok) == Some(&Tok::Eq);
        if !self.have_model {
            return match &first.tok {
                Tok::Ident(k) if k == "model" && !is_def => {
                    c.next();
                    let (name, loc) = c.ident("the model's name after `model`")?;
                    if KEYWORDS.contains(&name.as_str()) {
                        return Err(Diagnostic::new(
                            loc,
                            format!(
                                "`{name}` is a reserved word ({}) and cannot name a model",
                                KEYWORDS.join(", ")
                            ),
                        ));
                    }
                    c.end_of_line()?;
                    self.graph.name = name;
                    self.graph.name_loc = loc;
                    self.have_model = true;
                    Ok(())
                }
                _ => Err(Diagnostic::new(
                    first.loc,
                    format!(
                        "expected `model NAME` as the first statement, found {}",
                        first.tok.describe()
                    ),
                )),
            };
        }
        match &first.tok {
            Tok::Ident(k) if k == "model" && !is_def => Err(Diagnostic::new(
                first.loc,
                "a second `model` line: a file holds one model",
            )),
            Tok::Ident(k) if k == "weights" && !is_def => {
                c.next();
                if self.have_weights {
                    return Err(Diagnostic::new(
                        first.loc,
                        "a second `weights` line: a model has one weights file",
                    ));
                }
                match c.next() {
                    Some(Token {
                        tok: Tok::Str(path),
                        loc,
                    }) => {
                        c.end_of_line()?;
                        self.graph.weights = Some(path.clone());
                        self.graph.weights_loc = *loc;
                        self.have_weights = true;
                        Ok(())
                    }
                    _ => {
                        c.pos -= usize::from(c.pos > 1);
                        Err(c.error(
                            "a quoted path after `weights` (like `weights \"model.safetensors\"`)",
                        ))
                    }
                }
            }
            Tok::Ident(k) if k == "input" && !is_def => {
                c.next();
                let (name, name_loc) = c.ident("the input's name after `input`")?;
                c.expect(Tok::Colon, "`:` and a type after the input's name")?;
                let ty_loc = c.loc();
                let ty = parse_type(c)?;
                c.end_of_line()?;
                if ty.shape.iter().skip(1).any(|d| *d == Dim::Batch) {
                    return Err(Diagnostic::new(
                        ty_loc,
                        format!("in {ty}: the batch dimension `N` may only be first"),
                    ));
                }
                self.define(
                    name,
                    name_loc,
                    ty_loc,
                    Op::Input(ty),
                    vec![],
                    vec![],
                    vec![],
                )
            }
            Tok::Ident(k) if k == "output" && !is_def => {
                c.next();
                loop {
                    let (name, loc) = c.ident("a value name after `output`")?;
                    let v = self.lookup(&name, loc)?;
                    self.graph.outputs.push(v);
                    self.graph.output_locs.push(loc);
                    if c.peek().is_none() {
                        return Ok(());
                    }
                    c.expect(Tok::Comma, "`,` between output names")?;
                }
            }
            Tok::Ident(_) if is_def => self.definition(c),
            _ => Err(Diagnostic::new(
                first.loc,
                format!(
                    "expected a statement (`NAME = ...`, `input`, `output`, `weights`), found {}",
                    first.tok.describe()
                ),
            )),
        }
    }

    fn lookup(&self, name: &str, loc: Loc) -> Result<ValueId, Diagnostic> {
        if let Some(&v) = self.names.get(name) {
            return Ok(v);
        }
        let msg = match self.defined_at.get(name) {
            Some(&line) if line == loc.line => format!(
                "`{name}` is used in its own definition; a value cannot depend on itself (graphs are acyclic)"
            ),
            Some(&line) => format!(
                "`{name}` is used before its definition on line {line}; define values before using them (graphs are acyclic)"
            ),
            None => format!("unknown value `{name}`: no input or definition has this name"),
        };
        Err(Diagnostic::new(loc, msg))
    }

    #[allow(clippy::too_many_arguments)]
    fn define(
        &mut self,
        name: String,
        name_loc: Loc,
        op_loc: Loc,
        op: Op,
        inputs: Vec<ValueId>,
        operand_locs: Vec<Loc>,
        attr_locs: Vec<(String, Loc)>,
    ) -> Result<(), Diagnostic> {
        if KEYWORDS.contains(&name.as_str()) {
            return Err(Diagnostic::new(
                name_loc,
                format!("`{name}` is a keyword and cannot name a value"),
            ));
        }
        if let Some(&prev) = self.names.get(&name) {
            let line = self.graph.node(prev).locs.name.line;
            return Err(Diagnostic::new(
                name_loc,
                format!(
                    "`{name}` is already defined on line {line}; every value needs its own name"
                ),
            ));
        }
        let id = ValueId(self.graph.nodes.len() as u32);
        self.graph.nodes.push(Node {
            name: name.clone(),
            op,
            inputs,
            locs: NodeLocs {
                name: name_loc,
                op: op_loc,
                operands: operand_locs,
                attrs: attr_locs,
            },
        });
        self.names.insert(name, id);
        Ok(())
    }

    fn definition(&mut self, c: &mut Cursor) -> Result<(), Diagnostic> {
        let (name, name_loc) = c.ident("a value name")?;
        c.expect(Tok::Eq, "`=`")?;
        let rhs = c.peek().cloned();
        match rhs.map(|t| (t.tok, t.loc)) {
            Some((Tok::At(key), loc)) => {
                c.next();
                c.expect(
                    Tok::Colon,
                    "`:` and the weight's type after the key (like `@w: f32[64, 3, 3, 64]`)",
                )?;
                let ty_loc = c.loc();
                let ty = parse_type(c)?;
                c.end_of_line()?;
                if ty.shape.contains(&Dim::Batch) {
                    return Err(Diagnostic::new(
                        ty_loc,
                        format!("weight type {ty} has the batch dimension `N`; weights have fixed shapes"),
                    ));
                }
                self.define(
                    name,
                    name_loc,
                    loc,
                    Op::Weight { key, ty },
                    vec![],
                    vec![],
                    vec![],
                )
            }
            Some((Tok::Num(_), loc)) | Some((Tok::LBrack, loc)) => {
                let values = parse_literal(c)?;
                c.expect(
                    Tok::Colon,
                    "`:` and the constant's type after its value (like `[1, 2]: f32[2]`)",
                )?;
                let ty_loc = c.loc();
                let ty = parse_type(c)?;
                c.end_of_line()?;
                let data = const_data(&values, &ty, loc, ty_loc)?;
                self.define(
                    name,
                    name_loc,
                    loc,
                    Op::Const { ty, data },
                    vec![],
                    vec![],
                    vec![],
                )
            }
            Some((Tok::Ident(op_name), op_loc)) => {
                c.next();
                c.expect(Tok::LParen, &format!("`(` after the op name `{op_name}`"))?;
                let mut inputs = Vec::new();
                let mut operand_locs = Vec::new();
                let mut attrs = Attrs::default();
                if c.peek_tok() == Some(&Tok::RParen) {
                    c.next();
                } else {
                    loop {
                        let is_attr = matches!(c.peek_tok(), Some(Tok::Ident(_)))
                            && c.toks.get(c.pos + 1).map(|t| &t.tok) == Some(&Tok::Eq);
                        if is_attr {
                            let (key, key_loc) = c.ident("an attribute name")?;
                            c.next(); // `=`
                            let value = parse_attr_value(c)?;
                            if attrs.items.iter().any(|(k, _, _)| *k == key) {
                                return Err(Diagnostic::new(
                                    key_loc,
                                    format!("attribute `{key}` is given twice"),
                                ));
                            }
                            attrs.items.push((key, key_loc, value));
                        } else {
                            if let Some((k, l, _)) = attrs.items.first() {
                                return Err(Diagnostic::new(
                                    c.loc(),
                                    format!(
                                        "expected `key=value` or `)`, found {}; operands come before attributes (`{k}` at column {})",
                                        c.found(),
                                        l.col
                                    ),
                                ));
                            }
                            let (arg, loc) = c.ident("an operand (a value name) or `key=value`")?;
                            inputs.push(self.lookup(&arg, loc)?);
                            operand_locs.push(loc);
                        }
                        match c.peek_tok() {
                            Some(Tok::Comma) => {
                                c.next();
                            }
                            Some(Tok::RParen) => {
                                c.next();
                                break;
                            }
                            _ => return Err(c.error("`,` or `)`")),
                        }
                    }
                }
                c.end_of_line()?;
                let attr_locs = attrs
                    .items
                    .iter()
                    .map(|(k, l, _)| (k.clone(), *l))
                    .collect();
                let op = build_op(&op_name, op_loc, &mut attrs)?;
                attrs.finish(&op_name)?;
                self.define(name, name_loc, op_loc, op, inputs, operand_locs, attr_locs)
            }
            _ => Err(c.error(
                "an op call like `relu(x)`, a weight `@key: TYPE` or a constant `[..]: TYPE`",
            )),
        }
    }
}

/// `ELEM[d, d, ...]` with `N` allowed as a dimension (checked by callers).
fn parse_type(c: &mut Cursor) -> Result<TensorType, Diagnostic> {
    let (name, loc) = c.ident("a type like `f32[N, 784]`")?;
    let elem = ElemType::from_name(&name).ok_or_else(|| {
        Diagnostic::new(
            loc,
            format!(
                "unknown element type `{name}`; expected one of {}",
                ElemType::NAMES
            ),
        )
    })?;
    c.expect(
        Tok::LBrack,
        &format!("`[` and the dimensions after `{name}` (use `{name}[]` for a scalar)"),
    )?;
    let mut shape = Vec::new();
    if c.peek_tok() == Some(&Tok::RBrack) {
        c.next();
        return Ok(TensorType { elem, shape });
    }
    loop {
        shape.push(parse_dim(c)?);
        match c.peek_tok() {
            Some(Tok::Comma) => {
                c.next();
            }
            Some(Tok::RBrack) => {
                c.next();
                return Ok(TensorType { elem, shape });
            }
            _ => return Err(c.error("`,` or `]` in the shape")),
        }
    }
}

fn parse_dim(c: &mut Cursor) -> Result<Dim, Diagnostic> {
    let loc = c.loc();
    match c.peek_tok() {
        Some(Tok::Ident(n)) if n == "N" => {
            c.next();
            Ok(Dim::Batch)
        }
        Some(Tok::Num(s)) => {
            let d: usize = s.parse().ok().filter(|&d| d > 0).ok_or_else(|| {
                Diagnostic::new(
                    loc,
                    format!("dimension `{s}` must be a positive whole number"),
                )
            })?;
            if d > (1 << 31) {
                return Err(Diagnostic::new(
                    loc,
                    format!("dimension {d} is too large (at most 2^31)"),
                ));
            }
            c.next();
            Ok(Dim::Fixed(d))
        }
        _ => Err(c.error("a dimension (a positive number, or `N` for the batch)")),
    }
}

/// A number or a flat list of numbers.
fn parse_literal(c: &mut Cursor) -> Result<Vec<(String, Loc)>, Diagnostic> {
    match c.next() {
        Some(Token {
            tok: Tok::Num(s),
            loc,
        }) => Ok(vec![(s.clone(), *loc)]),
        Some(Token {
            tok: Tok::LBrack, ..
        }) => {
            let mut out = Vec::new();
            if c.peek_tok() == Some(&Tok::RBrack) {
                c.next();
                return Ok(out);
            }
            loop {
                match c.next() {
                    Some(Token {
                        tok: Tok::Num(s),
                        loc,
                    }) => out.push((s.clone(), *loc)),
                    Some(Token {
                        tok: Tok::Ident(s),
                        loc,
                    }) if s == "nan" || s == "inf" => out.push((s.clone(), *loc)),
                    _ => {
                        c.pos -= 1;
                        return Err(
                            c.error("a number in the constant's list (lists are flat, row-major)")
                        );
                    }
                }
                match c.peek_tok() {
                    Some(Tok::Comma) => {
                        c.next();
                    }
                    Some(Tok::RBrack) => {
                        c.next();
                        return Ok(out);
                    }
                    _ => return Err(c.error("`,` or `]` in the constant's list")),
                }
            }
        }
        _ => unreachable!("parse_literal is called on a number or `[`"),
    }
}

pub(super) fn parse_f32(s: &str) -> Option<f32> {
    match s {
        "nan" | "+nan" | "-nan" | "NaN" => Some(f32::NAN),
        "inf" | "+inf" => Some(f32::INFINITY),
        "-inf" => Some(f32::NEG_INFINITY),
        _ => s.parse::<f32>().ok(),
    }
}

pub(super) fn parse_int(s: &str) -> Option<i64> {
    s.strip_prefix('+').unwrap_or(s).parse::<i64>().ok()
}

fn const_data(
    values: &[(String, Loc)],
    ty: &TensorType,
    loc: Loc,
    ty_loc: Loc,
) -> Result<TensorData, Diagnostic> {
    if ty.shape.contains(&Dim::Batch) {
        return Err(Diagnostic::new(
            ty_loc,
            format!("constant type {ty} has the batch dimension `N`; constants have fixed shapes"),
        ));
    }
    let n = ty.numel(1);
    if values.len() != n {
        return Err(Diagnostic::new(
            loc,
            format!(
                "the constant has {} value(s) but its type {ty} holds {n}",
                values.len()
            ),
        ));
    }
    if ty.elem == ElemType::F32 {
        let mut out = Vec::with_capacity(n);
        for (s, l) in values {
            out.push(
                parse_f32(s)
                    .ok_or_else(|| Diagnostic::new(*l, format!("`{s}` is not an f32 number")))?,
            );
        }
        Ok(TensorData::F32(out))
    } else {
        let mut out = Vec::with_capacity(n);
        for (s, l) in values {
            let v = parse_int(s).filter(|&v| ty.elem.admits(v)).ok_or_else(|| {
                let range = match ty.elem {
                    ElemType::B1 => "-1 or 1".to_string(),
                    e => {
                        let (lo, hi) = e.int_range().unwrap_or((0, 0));
                        format!("a whole number in {lo}..={hi}")
                    }
                };
                Diagnostic::new(
                    *l,
                    format!("`{s}` is not a {} value; expected {range}", ty.elem),
                )
            })?;
            out.push(v as i32);
        }
        Ok(TensorData::Int(out))
    }
}

fn parse_attr_value(c: &mut Cursor) -> Result<AttrValue, Diagnostic> {
    match c.next().map(|t| (&t.tok, t.loc)) {
        Some((Tok::Num(s), _)) => Ok(AttrValue::Num(s.clone())),
        Some((Tok::Ident(s), _)) => Ok(AttrValue::Ident(s.clone())),
        Some((Tok::LBrack, _)) => {
            let mut items = Vec::new();
            if c.peek_tok() == Some(&Tok::RBrack) {
                c.next();
                return Ok(AttrValue::List(items));
            }
            loop {
                let loc = c.loc();
                let v = parse_attr_value(c)?;
                if matches!(v, AttrValue::List(_)) {
                    return Err(Diagnostic::new(loc, "attribute lists cannot nest"));
                }
                items.push((v, loc));
                match c.peek_tok() {
                    Some(Tok::Comma) => {
                        c.next();
                    }
                    Some(Tok::RBrack) => {
                        c.next();
                        return Ok(AttrValue::List(items));
                    }
                    _ => return Err(c.error("`,` or `]` in the attribute list")),
                }
            }
        }
        Some((tok, loc)) => Err(Diagnostic::new(
            loc,
            format!(
                "expected an attribute value (a number, a name or a list `[..]`), found {}",
                tok.describe()
            ),
        )),
        None => Err(Diagnostic::new(
            c.end,
            "expected an attribute value (a number, a name or a list `[..]`), found the end of the line",
        )),
    }
}

/// The table consumer of the parser: `build_op`, which makes the op `name` from
/// its attributes (operands are checked by the verifier).
macro_rules! build_op {
    (
        leaves: $($leaf:literal => $leaf_variant:ident),+ ;
        calls: $(
            $name:literal ($($operands:tt)*) => $variant:ident $(($wrap:ident))? {
                $($key:ident : $kind:ident = $default:expr),* $(,)?
            }
        ),+ $(,)?
    ) => {
        fn build_op(name: &str, loc: Loc, a: &mut Attrs) -> Result<Op, Diagnostic> {
            match name {
                $($name => {
                    $(
                        let $key = AttrDefault::resolve(
                            $default,
                            <attr::$kind as Kind>::parse(a, stringify!($key), name)?,
                            stringify!($key),
                            name,
                            loc,
                        )?;
                    )*
                    Ok(op_value!($variant $(($wrap))? { $($key),* }))
                })+
                $($leaf)|+ | "output" => Err(Diagnostic::new(
                    loc,
                    format!(
                        "`{name}` is not an op call; write `input x: f32[N, 4]`, `w = @key: f32[4]`, `k = [1, 2]: f32[2]` or `output y`"
                    ),
                )),
                _ => {
                    let hint = closest(name, OP_NAMES)
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    Err(Diagnostic::new(
                        loc,
                        format!("unknown op `{name}`{hint}; ops are: {}", OP_NAMES.join(", ")),
                    ))
                }
            }
        }
    };
}
op_table!(build_op);

/// The candidate nearest to `s` by edit distance, if close enough to be a typo.
fn closest<'a>(s: &str, candidates: &[&'a str]) -> Option<&'a str> {
    fn dist(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, &cb) in b.iter().enumerate() {
                let sub = prev[j] + usize::from(ca != cb);
                cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
            }
            prev = cur;
        }
        prev[b.len()]
    }
    candidates
        .iter()
        .map(|c| (dist(s, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min()
        .map(|(_, c)| c)
}
