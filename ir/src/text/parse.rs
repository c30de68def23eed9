//! Parser for `model.ir`. Reports the first problem with its line and column.

use std::collections::HashMap;

use super::lex::{lex_line, Tok, Token};
use crate::error::Diagnostic;
use crate::graph::{Graph, Loc, Node, NodeLocs, ValueId};
use crate::op::{Conv2dAttrs, Estimator, Op, PadValue, PoolAttrs, ESTIMATORS};
use crate::tensor::TensorData;
use crate::types::{Dim, ElemType, TensorType};

/// Every op name the parser accepts, for "unknown op" messages.
pub const OP_NAMES: &[&str] = &[
    "sign",
    "quantize",
    "dequantize",
    "ternarize",
    "threshold",
    "table",
    "fill",
    "conv2d",
    "dense",
    "batchnorm",
    "add",
    "sub",
    "mul",
    "relu",
    "prelu",
    "rprelu",
    "hardtanh",
    "clip",
    "sigmoid",
    "maxpool2d",
    "avgpool2d",
    "global_avgpool",
    "concat",
    "replicate",
    "channel_shuffle",
    "flatten",
    "reshape",
    "softmax",
    "argmax",
];

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
                    let (name, _) = c.ident("the model's name after `model`")?;
                    c.end_of_line()?;
                    self.graph.name = name;
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
                        ..
                    }) => {
                        c.end_of_line()?;
                        self.graph.weights = Some(path.clone());
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

fn parse_f32(s: &str) -> Option<f32> {
    match s {
        "nan" | "+nan" | "-nan" | "NaN" => Some(f32::NAN),
        "inf" | "+inf" => Some(f32::INFINITY),
        "-inf" => Some(f32::NEG_INFINITY),
        _ => s.parse::<f32>().ok(),
    }
}

fn parse_int(s: &str) -> Option<i64> {
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

/// An attribute value as written.
#[derive(Clone, Debug)]
enum AttrValue {
    Num(String),
    Ident(String),
    List(Vec<(AttrValue, Loc)>),
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

/// The attributes of one op call, consumed by typed getters; leftovers are
/// unknown attributes.
#[derive(Default)]
struct Attrs {
    items: Vec<(String, Loc, AttrValue)>,
    /// Keys accepted by the op being built, for the "unknown attribute" message.
    allowed: Vec<&'static str>,
}

impl Attrs {
    fn take(&mut self, key: &'static str) -> Option<(AttrValue, Loc)> {
        self.allowed.push(key);
        let i = self.items.iter().position(|(k, _, _)| k == key)?;
        let (_, loc, v) = self.items.remove(i);
        Some((v, loc))
    }

    fn finish(&self, op: &str) -> Result<(), Diagnostic> {
        if let Some((k, loc, _)) = self.items.first() {
            let allowed = if self.allowed.is_empty() {
                format!("`{op}` takes no attributes")
            } else {
                format!(
                    "`{op}` accepts {}",
                    self.allowed
                        .iter()
                        .map(|a| format!("`{a}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            return Err(Diagnostic::new(
                *loc,
                format!("unknown attribute `{k}`: {allowed}"),
            ));
        }
        Ok(())
    }

    fn int(&mut self, key: &'static str) -> Result<Option<(i64, Loc)>, Diagnostic> {
        match self.take(key) {
            None => Ok(None),
            Some((v, loc)) => Ok(Some((as_int(&v, loc, key)?, loc))),
        }
    }

    fn required<T>(
        v: Option<T>,
        key: &str,
        op: &str,
        op_loc: Loc,
        example: &str,
    ) -> Result<T, Diagnostic> {
        v.ok_or_else(|| {
            Diagnostic::new(
                op_loc,
                format!("`{op}` needs the attribute `{key}` (like `{example}`)"),
            )
        })
    }

    fn count(&mut self, key: &'static str) -> Result<Option<usize>, Diagnostic> {
        match self.int(key)? {
            None => Ok(None),
            Some((v, loc)) => usize::try_from(v).map(Some).map_err(|_| {
                Diagnostic::new(loc, format!("`{key}` must not be negative, found {v}"))
            }),
        }
    }

    fn f32(&mut self, key: &'static str) -> Result<Option<f32>, Diagnostic> {
        match self.take(key) {
            None => Ok(None),
            Some((AttrValue::Num(s), loc)) => parse_f32(&s).map(Some).ok_or_else(|| {
                Diagnostic::new(loc, format!("`{key}` must be a number, found `{s}`"))
            }),
            Some((AttrValue::Ident(s), _)) if s == "inf" || s == "nan" => Ok(parse_f32(&s)),
            Some((v, loc)) => Err(Diagnostic::new(
                loc,
                format!("`{key}` must be a number, found {}", show(&v)),
            )),
        }
    }

    /// `key=k` or `key=[a, b]`.
    fn pair(&mut self, key: &'static str) -> Result<Option<([usize; 2], Loc)>, Diagnostic> {
        match self.take(key) {
            None => Ok(None),
            Some((v, loc)) => {
                let xs = as_counts(&v, loc, key)?;
                match xs[..] {
                    [a] => Ok(Some(([a, a], loc))),
                    [a, b] => Ok(Some(([a, b], loc))),
                    _ => Err(Diagnostic::new(
                        loc,
                        format!(
                            "`{key}` takes one number or two `[h, w]`, found {} numbers",
                            xs.len()
                        ),
                    )),
                }
            }
        }
    }

    /// `padding=p`, `[ph, pw]` or `[top, left, bottom, right]`.
    fn padding(&mut self) -> Result<[usize; 4], Diagnostic> {
        match self.take("padding") {
            None => Ok([0; 4]),
            Some((v, loc)) => {
                let xs = as_counts(&v, loc, "padding")?;
                match xs[..] {
                    [p] => Ok([p; 4]),
                    [h, w] => Ok([h, w, h, w]),
                    [t, l, b, r] => Ok([t, l, b, r]),
                    _ => Err(Diagnostic::new(
                        loc,
                        format!(
                            "`padding` takes one number, `[h, w]` or `[top, left, bottom, right]`, found {} numbers",
                            xs.len()
                        ),
                    )),
                }
            }
        }
    }
}

fn show(v: &AttrValue) -> String {
    match v {
        AttrValue::Num(s) => format!("`{s}`"),
        AttrValue::Ident(s) => format!("`{s}`"),
        AttrValue::List(_) => "a list".into(),
    }
}

fn as_int(v: &AttrValue, loc: Loc, key: &str) -> Result<i64, Diagnostic> {
    match v {
        AttrValue::Num(s) => parse_int(s).ok_or_else(|| {
            Diagnostic::new(loc, format!("`{key}` must be a whole number, found `{s}`"))
        }),
        other => Err(Diagnostic::new(
            loc,
            format!("`{key}` must be a whole number, found {}", show(other)),
        )),
    }
}

fn as_counts(v: &AttrValue, loc: Loc, key: &str) -> Result<Vec<usize>, Diagnostic> {
    let items: Vec<(AttrValue, Loc)> = match v {
        AttrValue::List(items) => items.clone(),
        other => vec![(other.clone(), loc)],
    };
    items
        .iter()
        .map(|(v, l)| {
            let x = as_int(v, *l, key)?;
            usize::try_from(x).map_err(|_| {
                Diagnostic::new(*l, format!("`{key}` must not be negative, found {x}"))
            })
        })
        .collect()
}

fn build_op(name: &str, loc: Loc, a: &mut Attrs) -> Result<Op, Diagnostic> {
    let op = match name {
        "sign" => {
            let estimator = match a.take("estimator") {
                None => None,
                Some((AttrValue::Ident(est), eloc)) => {
                    let Some((_, params)) = ESTIMATORS.iter().find(|(n, _)| *n == est) else {
                        let names: Vec<&str> = ESTIMATORS.iter().map(|(n, _)| *n).collect();
                        return Err(Diagnostic::new(
                            eloc,
                            format!("unknown estimator `{est}`; expected one of {}", names.join(", ")),
                        ));
                    };
                    let mut vals = Vec::new();
                    for &p in params.iter() {
                        if let Some((v, ploc)) = a.take(p) {
                            let x = match &v {
                                AttrValue::Num(s) => parse_f32(s).map(|_| s.parse::<f64>().unwrap_or(f64::NAN)),
                                _ => None,
                            }
                            .filter(|x| x.is_finite())
                            .ok_or_else(|| {
                                Diagnostic::new(ploc, format!("estimator parameter `{p}` must be a finite number, found {}", show(&v)))
                            })?;
                            vals.push((p.to_string(), x));
                        }
                    }
                    vals.sort_by(|x, y| x.0.cmp(&y.0));
                    Some(Estimator { name: est, params: vals })
                }
                Some((v, eloc)) => {
                    return Err(Diagnostic::new(eloc, format!("`estimator` must be a name like `ste`, found {}", show(&v))))
                }
            };
            Op::Sign { estimator }
        }
        "quantize" => {
            let to = match a.take("to") {
                Some((AttrValue::Ident(t), tloc)) => match ElemType::from_name(&t) {
                    Some(e @ (ElemType::UInt(_) | ElemType::SInt(_))) => e,
                    _ => {
                        return Err(Diagnostic::new(
                            tloc,
                            format!("`quantize` produces an n-bit integer type (u2..u8, i2..i8), found `{t}`"),
                        ))
                    }
                },
                Some((v, tloc)) => {
                    return Err(Diagnostic::new(tloc, format!("`to` must be a type like `u4`, found {}", show(&v))))
                }
                None => return Err(Attrs::required::<()>(None, "to", name, loc, "to=u4").unwrap_err()),
            };
            let scale = Attrs::required(a.f32("scale")?, "scale", name, loc, "scale=0.125")?;
            let zero_point = match a.int("zero_point")? {
                None => 0,
                Some((v, l)) => i32::try_from(v).map_err(|_| Diagnostic::new(l, "`zero_point` is out of the i32 range"))?,
            };
            let clip = match a.take("clip") {
                None => None,
                Some((v, l)) => {
                    let items = match &v {
                        AttrValue::List(items) if items.len() == 2 => items.clone(),
                        _ => return Err(Diagnostic::new(l, "`clip` takes two whole numbers `[lo, hi]`")),
                    };
                    let lo = as_int(&items[0].0, items[0].1, "clip")?;
                    let hi = as_int(&items[1].0, items[1].1, "clip")?;
                    let lo = i32::try_from(lo).map_err(|_| Diagnostic::new(l, "`clip` is out of the i32 range"))?;
                    let hi = i32::try_from(hi).map_err(|_| Diagnostic::new(l, "`clip` is out of the i32 range"))?;
                    Some((lo, hi))
                }
            };
            Op::Quantize {
                to,
                scale,
                zero_point,
                clip,
            }
        }
        "dequantize" => {
            let scale = Attrs::required(a.f32("scale")?, "scale", name, loc, "scale=0.125")?;
            let zero_point = match a.int("zero_point")? {
                None => 0,
                Some((v, l)) => i32::try_from(v).map_err(|_| Diagnostic::new(l, "`zero_point` is out of the i32 range"))?,
            };
            Op::Dequantize { scale, zero_point }
        }
        "ternarize" => Op::Ternarize {
            delta: Attrs::required(a.f32("delta")?, "delta", name, loc, "delta=0.5")?,
        },
        "threshold" => Op::Threshold,
        "table" => {
            let (lo, l) = Attrs::required(a.int("lo")?, "lo", name, loc, "lo=-64")?;
            let lo = i32::try_from(lo)
                .map_err(|_| Diagnostic::new(l, "`lo` is out of the i32 range"))?;
            Op::Table { lo }
        }
        "fill" => {
            let value = Attrs::required(a.f32("value")?, "value", name, loc, "value=1")?;
            let to = match a.take("to") {
                Some((AttrValue::Ident(t), tloc)) => ElemType::from_name(&t).ok_or_else(|| {
                    Diagnostic::new(
                        tloc,
                        format!("unknown element type `{t}`; expected one of {}", ElemType::NAMES),
                    )
                })?,
                Some((v, tloc)) => {
                    return Err(Diagnostic::new(tloc, format!("`to` must be a type like `b1`, found {}", show(&v))))
                }
                None => return Err(Attrs::required::<()>(None, "to", name, loc, "to=b1").unwrap_err()),
            };
            Op::Fill { value, to }
        }
        "conv2d" => {
            let stride = a.pair("stride")?.map_or([1, 1], |p| p.0);
            let padding = a.padding()?;
            let dilation = a.pair("dilation")?.map_or([1, 1], |p| p.0);
            let groups = a.count("groups")?.unwrap_or(1);
            let pad_value = match a.int("pad_value")? {
                None => None,
                Some((1, _)) => Some(PadValue::PlusOne),
                Some((-1, _)) => Some(PadValue::MinusOne),
                Some((0, _)) => Some(PadValue::Zero),
                Some((v, l)) => {
                    return Err(Diagnostic::new(l, format!("`pad_value` must be +1, -1 or 0, found {v}")))
                }
            };
            Op::Conv2d(Conv2dAttrs {
                stride,
                padding,
                dilation,
                groups,
                pad_value,
            })
        }
        "dense" => Op::Dense,
        "batchnorm" => Op::BatchNorm {
            eps: a.f32("eps")?.unwrap_or(1e-5),
        },
        "add" => Op::Add,
        "sub" => Op::Sub,
        "mul" => Op::Mul,
        "relu" => Op::Relu,
        "prelu" => Op::Prelu,
        "rprelu" => Op::Rprelu,
        "hardtanh" => Op::Hardtanh,
        "clip" => {
            let min = Attrs::required(a.f32("min")?, "min", name, loc, "min=0")?;
            let max = Attrs::required(a.f32("max")?, "max", name, loc, "max=6")?;
            Op::Clip { min, max }
        }
        "sigmoid" => Op::Sigmoid,
        "maxpool2d" | "avgpool2d" => {
            let kernel = Attrs::required(a.pair("kernel")?, "kernel", name, loc, "kernel=2")?.0;
            let stride = a.pair("stride")?.map_or(kernel, |p| p.0);
            let padding = a.padding()?;
            let attrs = PoolAttrs {
                kernel,
                stride,
                padding,
            };
            if name == "maxpool2d" {
                Op::MaxPool2d(attrs)
            } else {
                Op::AvgPool2d(attrs)
            }
        }
        "global_avgpool" => Op::GlobalAvgPool,
        "concat" => Op::Concat {
            axis: a.int("axis")?.map_or(-1, |v| v.0),
        },
        "replicate" => Op::Replicate {
            times: Attrs::required(a.count("times")?, "times", name, loc, "times=2")?,
        },
        "channel_shuffle" => Op::ChannelShuffle {
            groups: Attrs::required(a.count("groups")?, "groups", name, loc, "groups=2")?,
        },
        "flatten" => Op::Flatten,
        "reshape" => {
            let (v, l) = a
                .take("shape")
                .ok_or_else(|| Diagnostic::new(loc, "`reshape` needs the attribute `shape` (like `shape=[N, 7, 7, 64]`)"))?;
            let AttrValue::List(items) = v else {
                return Err(Diagnostic::new(l, "`shape` must be a list like `[N, 7, 7, 64]`"));
            };
            let mut shape = Vec::new();
            for (item, il) in items {
                match item {
                    AttrValue::Ident(n) if n == "N" => shape.push(Dim::Batch),
                    other => {
                        let d = as_int(&other, il, "shape")?;
                        if d <= 0 || d > (1 << 31) {
                            return Err(Diagnostic::new(il, format!("dimension {d} must be positive and at most 2^31")));
                        }
                        shape.push(Dim::Fixed(d as usize));
                    }
                }
            }
            Op::Reshape { shape }
        }
        "softmax" => Op::Softmax {
            axis: a.int("axis")?.map_or(-1, |v| v.0),
        },
        "argmax" => Op::Argmax {
            axis: a.int("axis")?.map_or(-1, |v| v.0),
        },
        "input" | "weight" | "const" | "output" => {
            return Err(Diagnostic::new(
                loc,
                format!(
                    "`{name}` is not an op call; write `input x: f32[N, 4]`, `w = @key: f32[4]`, `k = [1, 2]: f32[2]` or `output y`"
                ),
            ))
        }
        _ => {
            let hint = closest(name, OP_NAMES)
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            return Err(Diagnostic::new(
                loc,
                format!("unknown op `{name}`{hint}; ops are: {}", OP_NAMES.join(", ")),
            ));
        }
    };
    Ok(op)
}

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
