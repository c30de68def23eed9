//! Attributes of op calls: values as written, and the attribute kinds that the op
//! table (`op_table!` in `crate::op`) names. A kind says how one attribute reads
//! from text (with its error messages) and how it prints in canonical form; the
//! parser and printer generate their per-op code from the table and these kinds.

use super::parse::{parse_f32, parse_int};
use super::print::fmt_f32;
use crate::error::Diagnostic;
use crate::graph::Loc;
use crate::op::{self, ESTIMATORS};
use crate::types::{self, Dim};

/// An attribute value as written.
#[derive(Clone, Debug)]
pub(super) enum AttrValue {
    Num(String),
    Ident(String),
    List(Vec<(AttrValue, Loc)>),
}

/// The attributes of one op call, consumed by the kinds' parsers; leftovers are
/// unknown attributes.
#[derive(Default)]
pub(super) struct Attrs {
    pub(super) items: Vec<(String, Loc, AttrValue)>,
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

    pub(super) fn finish(&self, op: &str) -> Result<(), Diagnostic> {
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

/// An attribute's default in the op table: a value of the attribute's type,
/// left out by canonical printing, or [`Required`].
pub(super) trait AttrDefault<T> {
    /// The attribute's value: as parsed, else the default (or an error naming
    /// the missing attribute of `op` at `op_loc`).
    fn resolve(self, parsed: Option<T>, key: &str, op: &str, op_loc: Loc) -> Result<T, Diagnostic>;

    /// True when printing may leave `v` out.
    fn is_default(&self, v: &T) -> bool;
}

/// No default: the attribute must be written. Holds an example value for the
/// message (`reshape` needs the attribute `shape` (like `shape=[N, 7, 7, 64]`)).
pub(super) struct Required(pub &'static str);

impl<T> AttrDefault<T> for Required {
    fn resolve(self, parsed: Option<T>, key: &str, op: &str, op_loc: Loc) -> Result<T, Diagnostic> {
        parsed.ok_or_else(|| {
            Diagnostic::new(
                op_loc,
                format!(
                    "`{op}` needs the attribute `{key}` (like `{key}={}`)",
                    self.0
                ),
            )
        })
    }

    fn is_default(&self, _: &T) -> bool {
        false
    }
}

impl<T: PartialEq> AttrDefault<T> for T {
    fn resolve(self, parsed: Option<T>, _: &str, _: &str, _: Loc) -> Result<T, Diagnostic> {
        Ok(parsed.unwrap_or(self))
    }

    fn is_default(&self, v: &T) -> bool {
        v == self
    }
}

/// A kind of attribute: how its value reads from text and prints.
pub(super) trait Kind {
    type Value;

    /// Takes attribute `key` of op `op` from `a`; `None` when it is not written.
    fn parse(a: &mut Attrs, key: &'static str, op: &str)
        -> Result<Option<Self::Value>, Diagnostic>;

    /// Appends the canonical `key=value` item(s) for `v` to `out`.
    fn print(key: &str, v: &Self::Value, out: &mut Vec<String>);
}

/// A number, `f32`: `0.5`, `1e-5`, `-inf`, `nan`. Prints in the shortest form
/// that parses back to the same bits.
pub(super) struct F32;

impl Kind for F32 {
    type Value = f32;

    fn parse(a: &mut Attrs, key: &'static str, _: &str) -> Result<Option<f32>, Diagnostic> {
        match a.take(key) {
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

    fn print(key: &str, v: &f32, out: &mut Vec<String>) {
        out.push(format!("{key}={}", fmt_f32(*v)));
    }
}

/// A whole number in the `i32` range.
pub(super) struct I32;

impl Kind for I32 {
    type Value = i32;

    fn parse(a: &mut Attrs, key: &'static str, _: &str) -> Result<Option<i32>, Diagnostic> {
        match a.int(key)? {
            None => Ok(None),
            Some((v, l)) => i32::try_from(v)
                .map(Some)
                .map_err(|_| Diagnostic::new(l, format!("`{key}` is out of the i32 range"))),
        }
    }

    fn print(key: &str, v: &i32, out: &mut Vec<String>) {
        out.push(format!("{key}={v}"));
    }
}

/// A whole number, `i64` (axes, negative counting from the end).
pub(super) struct I64;

impl Kind for I64 {
    type Value = i64;

    fn parse(a: &mut Attrs, key: &'static str, _: &str) -> Result<Option<i64>, Diagnostic> {
        Ok(a.int(key)?.map(|v| v.0))
    }

    fn print(key: &str, v: &i64, out: &mut Vec<String>) {
        out.push(format!("{key}={v}"));
    }
}

/// A whole number that is not negative.
pub(super) struct Count;

impl Kind for Count {
    type Value = usize;

    fn parse(a: &mut Attrs, key: &'static str, _: &str) -> Result<Option<usize>, Diagnostic> {
        match a.int(key)? {
            None => Ok(None),
            Some((v, loc)) => usize::try_from(v).map(Some).map_err(|_| {
                Diagnostic::new(loc, format!("`{key}` must not be negative, found {v}"))
            }),
        }
    }

    fn print(key: &str, v: &usize, out: &mut Vec<String>) {
        out.push(format!("{key}={v}"));
    }
}

/// `[h, w]` counts, written `key=k` when both are equal or `key=[h, w]`.
pub(super) struct Pair;

impl Kind for Pair {
    type Value = [usize; 2];

    fn parse(a: &mut Attrs, key: &'static str, _: &str) -> Result<Option<[usize; 2]>, Diagnostic> {
        match a.take(key) {
            None => Ok(None),
            Some((v, loc)) => {
                let xs = as_counts(&v, loc, key)?;
                match xs[..] {
                    [a] => Ok(Some([a, a])),
                    [a, b] => Ok(Some([a, b])),
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

    fn print(key: &str, v: &[usize; 2], out: &mut Vec<String>) {
        out.push(if v[0] == v[1] {
            format!("{key}={}", v[0])
        } else {
            format!("{key}=[{}, {}]", v[0], v[1])
        });
    }
}

/// `[top, left, bottom, right]` counts, written `key=p`, `key=[h, w]` or all four.
pub(super) struct Padding;

impl Kind for Padding {
    type Value = [usize; 4];

    fn parse(a: &mut Attrs, key: &'static str, _: &str) -> Result<Option<[usize; 4]>, Diagnostic> {
        match a.take(key) {
            None => Ok(None),
            Some((v, loc)) => {
                let xs = as_counts(&v, loc, key)?;
                match xs[..] {
                    [p] => Ok(Some([p; 4])),
                    [h, w] => Ok(Some([h, w, h, w])),
                    [t, l, b, r] => Ok(Some([t, l, b, r])),
                    _ => Err(Diagnostic::new(
                        loc,
                        format!(
                            "`{key}` takes one number, `[h, w]` or `[top, left, bottom, right]`, found {} numbers",
                            xs.len()
                        ),
                    )),
                }
            }
        }
    }

    fn print(key: &str, v: &[usize; 4], out: &mut Vec<String>) {
        let [t, l, b, r] = *v;
        out.push(if t == l && l == b && b == r {
            format!("{key}={t}")
        } else if t == b && l == r {
            format!("{key}=[{t}, {l}]")
        } else {
            format!("{key}=[{t}, {l}, {b}, {r}]")
        });
    }
}

/// A conv2d pad value, `+1`, `-1` or `0`; absent is `None`.
pub(super) struct PadValue;

impl Kind for PadValue {
    type Value = Option<op::PadValue>;

    fn parse(
        a: &mut Attrs,
        key: &'static str,
        _: &str,
    ) -> Result<Option<Option<op::PadValue>>, Diagnostic> {
        let p = match a.int(key)? {
            None => return Ok(None),
            Some((1, _)) => op::PadValue::PlusOne,
            Some((-1, _)) => op::PadValue::MinusOne,
            Some((0, _)) => op::PadValue::Zero,
            Some((v, l)) => {
                return Err(Diagnostic::new(
                    l,
                    format!("`{key}` must be +1, -1 or 0, found {v}"),
                ))
            }
        };
        Ok(Some(Some(p)))
    }

    fn print(key: &str, v: &Option<op::PadValue>, out: &mut Vec<String>) {
        if let Some(p) = v {
            let p = match p {
                op::PadValue::PlusOne => "+1",
                op::PadValue::MinusOne => "-1",
                op::PadValue::Zero => "0",
            };
            out.push(format!("{key}={p}"));
        }
    }
}

/// An n-bit integer element type, `u2`..`u8` or `i2`..`i8`.
pub(super) struct IntType;

impl Kind for IntType {
    type Value = types::ElemType;

    fn parse(
        a: &mut Attrs,
        key: &'static str,
        op: &str,
    ) -> Result<Option<types::ElemType>, Diagnostic> {
        match a.take(key) {
            None => Ok(None),
            Some((AttrValue::Ident(t), tloc)) => match types::ElemType::from_name(&t) {
                Some(e @ (types::ElemType::UInt(_) | types::ElemType::SInt(_))) => Ok(Some(e)),
                _ => Err(Diagnostic::new(
                    tloc,
                    format!("`{op}` produces an n-bit integer type (u2..u8, i2..i8), found `{t}`"),
                )),
            },
            Some((v, tloc)) => Err(Diagnostic::new(
                tloc,
                format!("`{key}` must be a type like `u4`, found {}", show(&v)),
            )),
        }
    }

    fn print(key: &str, v: &types::ElemType, out: &mut Vec<String>) {
        out.push(format!("{key}={v}"));
    }
}

/// Any element type.
pub(super) struct ElemType;

impl Kind for ElemType {
    type Value = types::ElemType;

    fn parse(
        a: &mut Attrs,
        key: &'static str,
        _: &str,
    ) -> Result<Option<types::ElemType>, Diagnostic> {
        match a.take(key) {
            None => Ok(None),
            Some((AttrValue::Ident(t), tloc)) => {
                types::ElemType::from_name(&t).map(Some).ok_or_else(|| {
                    Diagnostic::new(
                        tloc,
                        format!(
                            "unknown element type `{t}`; expected one of {}",
                            types::ElemType::NAMES
                        ),
                    )
                })
            }
            Some((v, tloc)) => Err(Diagnostic::new(
                tloc,
                format!("`{key}` must be a type like `b1`, found {}", show(&v)),
            )),
        }
    }

    fn print(key: &str, v: &types::ElemType, out: &mut Vec<String>) {
        out.push(format!("{key}={v}"));
    }
}

/// An `i32` range `[lo, hi]`; absent is `None`.
pub(super) struct IntRange;

impl Kind for IntRange {
    type Value = Option<(i32, i32)>;

    fn parse(
        a: &mut Attrs,
        key: &'static str,
        _: &str,
    ) -> Result<Option<Option<(i32, i32)>>, Diagnostic> {
        let Some((v, l)) = a.take(key) else {
            return Ok(None);
        };
        let items = match &v {
            AttrValue::List(items) if items.len() == 2 => items.clone(),
            _ => {
                return Err(Diagnostic::new(
                    l,
                    format!("`{key}` takes two whole numbers `[lo, hi]`"),
                ))
            }
        };
        let lo = as_int(&items[0].0, items[0].1, key)?;
        let hi = as_int(&items[1].0, items[1].1, key)?;
        let range = |x: i64| {
            i32::try_from(x)
                .map_err(|_| Diagnostic::new(l, format!("`{key}` is out of the i32 range")))
        };
        Ok(Some(Some((range(lo)?, range(hi)?))))
    }

    fn print(key: &str, v: &Option<(i32, i32)>, out: &mut Vec<String>) {
        if let Some((lo, hi)) = v {
            out.push(format!("{key}=[{lo}, {hi}]"));
        }
    }
}

/// A shape `[N, 7, 7, 64]`: positive dimensions, `N` for the batch.
pub(super) struct Shape;

impl Kind for Shape {
    type Value = Vec<Dim>;

    fn parse(a: &mut Attrs, key: &'static str, _: &str) -> Result<Option<Vec<Dim>>, Diagnostic> {
        let Some((v, l)) = a.take(key) else {
            return Ok(None);
        };
        let AttrValue::List(items) = v else {
            return Err(Diagnostic::new(
                l,
                format!("`{key}` must be a list like `[N, 7, 7, 64]`"),
            ));
        };
        let mut shape = Vec::new();
        for (item, il) in items {
            match item {
                AttrValue::Ident(n) if n == "N" => shape.push(Dim::Batch),
                other => {
                    let d = as_int(&other, il, key)?;
                    if d <= 0 || d > (1 << 31) {
                        return Err(Diagnostic::new(
                            il,
                            format!("dimension {d} must be positive and at most 2^31"),
                        ));
                    }
                    shape.push(Dim::Fixed(d as usize));
                }
            }
        }
        Ok(Some(shape))
    }

    fn print(key: &str, v: &Vec<Dim>, out: &mut Vec<String>) {
        let dims: Vec<String> = v
            .iter()
            .map(|d| match d {
                Dim::Batch => "N".to_string(),
                Dim::Fixed(n) => n.to_string(),
            })
            .collect();
        out.push(format!("{key}=[{}]", dims.join(", ")));
    }
}

/// A `sign` gradient estimator: `key=name` (one of [`ESTIMATORS`]) plus that
/// estimator's own parameters as further `param=number` attributes; absent is
/// `None`.
pub(super) struct Estimator;

impl Kind for Estimator {
    type Value = Option<op::Estimator>;

    fn parse(
        a: &mut Attrs,
        key: &'static str,
        _: &str,
    ) -> Result<Option<Option<op::Estimator>>, Diagnostic> {
        let (est, eloc) = match a.take(key) {
            None => return Ok(None),
            Some((AttrValue::Ident(est), eloc)) => (est, eloc),
            Some((v, eloc)) => {
                return Err(Diagnostic::new(
                    eloc,
                    format!("`{key}` must be a name like `ste`, found {}", show(&v)),
                ))
            }
        };
        let Some((_, params)) = ESTIMATORS.iter().find(|(n, _)| *n == est) else {
            let names: Vec<&str> = ESTIMATORS.iter().map(|(n, _)| *n).collect();
            return Err(Diagnostic::new(
                eloc,
                format!(
                    "unknown estimator `{est}`; expected one of {}",
                    names.join(", ")
                ),
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
                    Diagnostic::new(
                        ploc,
                        format!(
                            "estimator parameter `{p}` must be a finite number, found {}",
                            show(&v)
                        ),
                    )
                })?;
                vals.push((p.to_string(), x));
            }
        }
        vals.sort_by(|x, y| x.0.cmp(&y.0));
        Ok(Some(Some(op::Estimator {
            name: est,
            params: vals,
        })))
    }

    fn print(key: &str, v: &Option<op::Estimator>, out: &mut Vec<String>) {
        if let Some(e) = v {
            out.push(format!("{key}={}", e.name));
            for (k, v) in &e.params {
                out.push(format!("{k}={v:?}"));
            }
        }
    }
}
