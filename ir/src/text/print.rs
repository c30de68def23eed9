//! Printer: the canonical text of a graph. Attributes equal to their defaults are
//! left out; floats print in the shortest form that parses back to the same bits.

use std::fmt::Write as _;

use super::lex::{is_ident_char, is_ident_start, is_key_char, quote};
use crate::graph::Graph;
use crate::op::{Op, PadValue};
use crate::tensor::TensorData;
use crate::types::Dim;

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

fn pair(key: &str, v: [usize; 2]) -> String {
    if v[0] == v[1] {
        format!("{key}={}", v[0])
    } else {
        format!("{key}=[{}, {}]", v[0], v[1])
    }
}

fn padding(p: [usize; 4]) -> String {
    let [t, l, b, r] = p;
    if t == l && l == b && b == r {
        format!("padding={t}")
    } else if t == b && l == r {
        format!("padding=[{t}, {l}]")
    } else {
        format!("padding=[{t}, {l}, {b}, {r}]")
    }
}

/// Non-default attributes of `op`, in a fixed order.
fn attrs(op: &Op) -> Vec<String> {
    let mut out = Vec::new();
    match op {
        Op::Sign { estimator } => {
            if let Some(e) = estimator {
                out.push(format!("estimator={}", e.name));
                for (k, v) in &e.params {
                    out.push(format!("{k}={v:?}"));
                }
            }
        }
        Op::Quantize {
            to,
            scale,
            zero_point,
            clip,
        } => {
            out.push(format!("to={to}"));
            out.push(format!("scale={}", fmt_f32(*scale)));
            if *zero_point != 0 {
                out.push(format!("zero_point={zero_point}"));
            }
            if let Some((lo, hi)) = clip {
                out.push(format!("clip=[{lo}, {hi}]"));
            }
        }
        Op::Dequantize { scale, zero_point } => {
            out.push(format!("scale={}", fmt_f32(*scale)));
            if *zero_point != 0 {
                out.push(format!("zero_point={zero_point}"));
            }
        }
        Op::Ternarize { delta } => out.push(format!("delta={}", fmt_f32(*delta))),
        Op::Table { lo } => out.push(format!("lo={lo}")),
        Op::Fill { value, to } => {
            out.push(format!("value={}", fmt_f32(*value)));
            out.push(format!("to={to}"));
        }
        Op::Conv2d(a) => {
            if a.stride != [1, 1] {
                out.push(pair("stride", a.stride));
            }
            if a.padding != [0; 4] {
                out.push(padding(a.padding));
            }
            if a.dilation != [1, 1] {
                out.push(pair("dilation", a.dilation));
            }
            if a.groups != 1 {
                out.push(format!("groups={}", a.groups));
            }
            if let Some(p) = a.pad_value {
                out.push(
                    match p {
                        PadValue::PlusOne => "pad_value=+1",
                        PadValue::MinusOne => "pad_value=-1",
                        PadValue::Zero => "pad_value=0",
                    }
                    .into(),
                );
            }
        }
        Op::BatchNorm { eps } => {
            if *eps != 1e-5 {
                out.push(format!("eps={}", fmt_f32(*eps)));
            }
        }
        Op::Clip { min, max } => {
            out.push(format!("min={}", fmt_f32(*min)));
            out.push(format!("max={}", fmt_f32(*max)));
        }
        Op::MaxPool2d(a) | Op::AvgPool2d(a) => {
            out.push(pair("kernel", a.kernel));
            if a.stride != a.kernel {
                out.push(pair("stride", a.stride));
            }
            if a.padding != [0; 4] {
                out.push(padding(a.padding));
            }
        }
        Op::Concat { axis } | Op::Softmax { axis } | Op::Argmax { axis } => {
            if *axis != -1 {
                out.push(format!("axis={axis}"));
            }
        }
        Op::Replicate { times } => out.push(format!("times={times}")),
        Op::ChannelShuffle { groups } => out.push(format!("groups={groups}")),
        Op::Reshape { shape } => {
            let dims: Vec<String> = shape
                .iter()
                .map(|d| match d {
                    Dim::Batch => "N".to_string(),
                    Dim::Fixed(n) => n.to_string(),
                })
                .collect();
            out.push(format!("shape=[{}]", dims.join(", ")));
        }
        Op::Input(_)
        | Op::Weight { .. }
        | Op::Const { .. }
        | Op::Threshold
        | Op::Dense
        | Op::Add
        | Op::Sub
        | Op::Mul
        | Op::Relu
        | Op::Prelu
        | Op::Rprelu
        | Op::Hardtanh
        | Op::Sigmoid
        | Op::GlobalAvgPool
        | Op::Flatten => {}
    }
    out
}
