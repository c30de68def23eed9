//! Printer: the canonical text of a graph. Attributes equal to their defaults are
//! left out; floats print in the shortest form that parses back to the same bits.

use std::fmt::Write as _;

use super::attr::{self, AttrDefault, Kind, Required};
use super::lex::{is_ident_char, is_ident_start, is_key_char, quote};
use crate::graph::Graph;
use crate::op::{op_table, op_value, Conv2dAttrs, Op, PoolAttrs};
use crate::tensor::TensorData;

/// The canonical text of `g`. `parse(&print(g)) == g` for every verified graph.
pub fn print(g: &Graph) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "model {}", g.name);
    if let Some(w) = &g.weights {
        let _ = writeln!(s, "weights {}", quote(w));
    }
    s.push('\n');
    for n in &g.nodes {
        let operands: Vec<&str> = n
            .inputs
            .iter()
            .map(|v| {
                g.nodes
                    .get(v.index())
                    .map_or("<invalid>", |n| n.name.as_str())
            })
            .collect();
        match &n.op {
            Op::Input(ty) => {
                let _ = writeln!(s, "input {}: {ty}", n.name);
            }
            Op::Weight { key, ty } => {
                let _ = writeln!(s, "{} = @{}: {ty}", n.name, print_key(key));
            }
            Op::Const { ty, data } => {
                let values: Vec<String> = match data {
                    TensorData::F32(v) => v.iter().map(|x| fmt_f32(*x)).collect(),
                    TensorData::Int(v) => v.iter().map(|x| x.to_string()).collect(),
                    TensorData::Bits(w) => crate::tensor::unpack_b1_words(&ty.dims(1), w)
                        .iter()
                        .map(|x| x.to_string())
                        .collect(),
                };
                let _ = writeln!(s, "{} = [{}]: {ty}", n.name, values.join(", "));
            }
            op => {
                let mut args: Vec<String> = operands.iter().map(|o| o.to_string()).collect();
                args.extend(attrs(op));
                let _ = writeln!(s, "{} = {}({})", n.name, op.name(), args.join(", "));
            }
        }
    }
    if !g.outputs.is_empty() {
        let names: Vec<&str> = g
            .outputs
            .iter()
            .map(|v| {
                g.nodes
                    .get(v.index())
                    .map_or("<invalid>", |n| n.name.as_str())
            })
            .collect();
        let _ = writeln!(s, "output {}", names.join(", "));
    }
    s
}

/// Shortest text that parses back to the same `f32`.
pub fn fmt_f32(x: f32) -> String {
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{x:?}")
    }
}

fn print_key(key: &str) -> String {
    if !key.is_empty() && key.chars().all(is_key_char) {
        key.to_string()
    } else {
        quote(key)
    }
}

/// True when `s` can be written as a bare value name.
pub fn is_ident(s: &str) -> bool {
    let mut cs = s.chars();
    cs.next().is_some_and(is_ident_start) && cs.all(is_ident_char)
}

/// The table consumer of the printer: `attrs`, the non-default attributes of an
/// op in table order.
macro_rules! print_attrs {
    (
        leaves: $($leaf:literal => $leaf_variant:ident),+ ;
        calls: $(
            $name:literal ($($operands:tt)*) => $variant:ident $(($wrap:ident))? {
                $($key:ident : $kind:ident = $default:expr),* $(,)?
            }
        ),+ $(,)?
    ) => {
        fn attrs(op: &Op) -> Vec<String> {
            let mut out = Vec::new();
            match op.clone() {
                $(op_value!($variant $(($wrap))? { $($key),* }) => {
                    $(
                        if !AttrDefault::is_default(&$default, &$key) {
                            <attr::$kind as Kind>::print(stringify!($key), &$key, &mut out);
                        }
                    )*
                })+
                $(Op::$leaf_variant { .. })|+ => {}
            }
            out
        }
    };
}
op_table!(print_attrs);
