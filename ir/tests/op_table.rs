//! The op table (`op_table!` in `bnnc_ir::op`) is the one list of op names,
//! operands and attributes: every op in it round-trips through print -> parse
//! with each of its attributes away from the default, canonical printing leaves
//! defaults out, and the parser accepts exactly the table's op names and, per
//! op, exactly the table's attribute keys.

use std::collections::BTreeSet;

use bnnc_ir::op::{ESTIMATORS, OP_NAMES};
use bnnc_ir::text::{parse, print};
use bnnc_ir::{
    Conv2dAttrs, Dim, ElemType, Estimator, Graph, Op, PadValue, PoolAttrs, TensorType, ValueId,
};

/// Ops with every attribute set to something other than its default; at least
/// one per table row.
fn samples() -> Vec<Op> {
    vec![
        Op::Sign {
            estimator: Some(Estimator {
                name: "dte".into(),
                params: vec![
                    ("k_max".into(), 3.0),
                    ("k_min".into(), 0.5),
                    ("t_max".into(), 10.0),
                    ("t_min".into(), 0.1),
                ],
            }),
        },
        Op::Sign {
            estimator: Some(Estimator {
                name: "ste".into(),
                params: vec![("clip".into(), 1.5)],
            }),
        },
        Op::Sign {
            estimator: Some(Estimator {
                name: "identity".into(),
                params: vec![],
            }),
        },
        Op::Quantize {
            to: ElemType::SInt(4),
            scale: 0.25,
            zero_point: -3,
            clip: Some((-7, 7)),
        },
        Op::Dequantize {
            scale: 0.5,
            zero_point: 2,
        },
        Op::Ternarize { delta: 0.75 },
        Op::Threshold,
        Op::Table { lo: -5 },
        Op::Fill {
            value: -1.0,
            to: ElemType::B1,
        },
        Op::Conv2d(Conv2dAttrs {
            stride: [2, 1],
            padding: [1, 2, 3, 4],
            dilation: [2, 2],
            groups: 2,
            pad_value: Some(PadValue::MinusOne),
        }),
        Op::Conv2d(Conv2dAttrs {
            stride: [2, 2],
            padding: [1, 2, 1, 2],
            dilation: [1, 3],
            groups: 4,
            pad_value: Some(PadValue::PlusOne),
        }),
        Op::Conv2d(Conv2dAttrs {
            stride: [3, 3],
            padding: [1; 4],
            dilation: [2, 1],
            groups: 3,
            pad_value: Some(PadValue::Zero),
        }),
        Op::Dense,
        Op::BatchNorm { eps: 1e-3 },
        Op::Add,
        Op::Sub,
        Op::Mul,
        Op::Relu,
        Op::Prelu,
        Op::Rprelu,
        Op::Hardtanh,
        Op::Clip {
            min: -1.5,
            max: f32::INFINITY,
        },
        Op::Sigmoid,
        Op::MaxPool2d(PoolAttrs {
            kernel: [3, 2],
            stride: [1, 1],
            padding: [1, 1, 1, 1],
        }),
        Op::AvgPool2d(PoolAttrs {
            kernel: [2, 2],
            stride: [1, 2],
            padding: [0, 1, 0, 1],
        }),
        Op::GlobalAvgPool,
        Op::Concat { axis: 1 },
        Op::Replicate { times: 3 },
        Op::ChannelShuffle { groups: 4 },
        Op::Flatten,
        Op::Reshape {
            shape: vec![Dim::Batch, Dim::Fixed(2), Dim::Fixed(8)],
        },
        Op::Softmax { axis: 0 },
        Op::Argmax { axis: -2 },
    ]
}

/// Ops with every attribute at its default (required ones set), and the line
/// canonical printing gives each.
fn defaults() -> Vec<(Op, &'static str)> {
    vec![
        (Op::Sign { estimator: None }, "sign(a0)"),
        (
            Op::Quantize {
                to: ElemType::UInt(4),
                scale: 0.125,
                zero_point: 0,
                clip: None,
            },
            "quantize(a0, to=u4, scale=0.125)",
        ),
        (
            Op::Dequantize {
                scale: 0.125,
                zero_point: 0,
            },
            "dequantize(a0, scale=0.125)",
        ),
        (Op::Conv2d(Conv2dAttrs::default()), "conv2d(a0, a1)"),
        (Op::BatchNorm { eps: 1e-5 }, "batchnorm(a0, a1, a2, a3, a4)"),
        (
            Op::MaxPool2d(PoolAttrs {
                kernel: [2, 2],
                stride: [2, 2],
                padding: [0; 4],
            }),
            "maxpool2d(a0, kernel=2)",
        ),
        (
            Op::AvgPool2d(PoolAttrs {
                kernel: [3, 2],
                stride: [3, 2],
                padding: [0; 4],
            }),
            "avgpool2d(a0, kernel=[3, 2])",
        ),
        (Op::Concat { axis: -1 }, "concat(a0, a1, a2)"),
        (Op::Softmax { axis: -1 }, "softmax(a0)"),
        (Op::Argmax { axis: -1 }, "argmax(a0)"),
    ]
}

/// A graph with inputs `a0`..`a4` and one node `y{i} = op(a0, ..)` per op, each
/// taking as many operands as it can (3 for a variadic op); returns the graph
/// and the name of each op's node.
fn graph_of(ops: &[Op]) -> (Graph, Vec<String>) {
    let mut g = Graph::new("ops");
    let inputs: Vec<ValueId> = (0..5)
        .map(|i| {
            let ty = TensorType {
                elem: ElemType::F32,
                shape: vec![Dim::Batch, Dim::Fixed(4)],
            };
            g.add(format!("a{i}"), Op::Input(ty), vec![])
        })
        .collect();
    let mut names = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let n = op.arity().1.min(3.max(op.arity().0));
        let name = format!("y{i}");
        let v = g.add(&name, op.clone(), inputs[..n].to_vec());
        g.output(v);
        names.push(name);
    }
    (g, names)
}

/// The printed line defining `name`, without `name = `.
fn line_of<'a>(text: &'a str, name: &str) -> &'a str {
    let prefix = format!("{name} = ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no line for {name} in:\n{text}"))
}

fn parse_ok(text: &str) -> Graph {
    parse(text).unwrap_or_else(|e| panic!("{}\n{text}", e.render("ops.ir")))
}

#[test]
fn every_table_op_has_a_sample() {
    let table: BTreeSet<&str> = OP_NAMES.iter().copied().collect();
    assert_eq!(table.len(), OP_NAMES.len(), "duplicate names in the table");
    let sampled: BTreeSet<&str> = samples().iter().map(|op| op.name()).collect();
    assert_eq!(sampled, table);
    for op in samples() {
        assert!(!op.is_leaf(), "{}", op.name());
    }
}

#[test]
fn every_op_round_trips_with_non_default_attributes() {
    let ops = samples();
    let (g, names) = graph_of(&ops);
    let text = print(&g);
    for (op, name) in ops.iter().zip(&names) {
        let line = line_of(&text, name);
        assert!(line.starts_with(&format!("{}(", op.name())), "{line}");
        // Every attribute of the op is away from its default, so all print.
        let mut keys: Vec<String> = op.attr_keys().iter().map(|k| k.to_string()).collect();
        if let Op::Sign {
            estimator: Some(e), ..
        } = op
        {
            keys.extend(e.params.iter().map(|(k, _)| k.clone()));
        }
        for key in &keys {
            assert!(line.contains(&format!(", {key}=")), "`{key}` in {line}");
        }
        let written = line.matches('=').count();
        assert_eq!(written, keys.len(), "{line}");
    }
    let parsed = parse_ok(&text);
    assert_eq!(parsed, g, "print -> parse changed the graph:\n{text}");
    assert_eq!(print(&parsed), text);
}

#[test]
fn canonical_printing_omits_defaults() {
    let cases = defaults();
    let ops: Vec<Op> = cases.iter().map(|(op, _)| op.clone()).collect();
    let (g, names) = graph_of(&ops);
    let text = print(&g);
    for ((_, want), name) in cases.iter().zip(&names) {
        assert_eq!(line_of(&text, name), *want);
    }
    assert_eq!(parse_ok(&text), g);
}

#[test]
fn parser_accepts_exactly_the_table_names() {
    // Every table name parses as an op call (attributes from the samples).
    let ops = samples();
    let (g, _) = graph_of(&ops);
    let parsed = parse_ok(&print(&g));
    let parsed_names: BTreeSet<&str> = parsed
        .nodes
        .iter()
        .filter(|n| !n.op.is_leaf())
        .map(|n| n.op.name())
        .collect();
    assert_eq!(parsed_names, OP_NAMES.iter().copied().collect());

    // Any other name is an unknown op, and the message lists exactly the table.
    let head = "model m\ninput x: f32[N, 4]\n";
    for name in [
        "relux",
        "Relu",
        "conv",
        "sign2",
        "frobnicate",
        "dense_",
        "maxpool",
    ] {
        let e = parse(&format!("{head}y = {name}(x)\noutput y\n")).unwrap_err();
        assert!(
            e.message.starts_with(&format!("unknown op `{name}`")),
            "{}",
            e.message
        );
        let listed: Vec<&str> = e
            .message
            .split_once("; ops are: ")
            .expect("the message lists the ops")
            .1
            .split(", ")
            .collect();
        assert_eq!(listed, OP_NAMES);
    }

    // Leaves have their own syntax: their names are not op calls.
    let ty = TensorType {
        elem: ElemType::F32,
        shape: vec![Dim::Fixed(1)],
    };
    let leaves = [
        Op::Input(ty.clone()),
        Op::Weight {
            key: "w".into(),
            ty: ty.clone(),
        },
        Op::Const {
            ty,
            data: bnnc_ir::TensorData::F32(vec![1.0]),
        },
    ];
    for leaf in &leaves {
        assert!(leaf.is_leaf());
        assert!(!OP_NAMES.contains(&leaf.name()));
        assert_eq!(leaf.arity(), (0, 0));
        assert!(leaf.attr_keys().is_empty());
    }
    for name in leaves.iter().map(|l| l.name()).chain(["output"]) {
        let e = parse(&format!("{head}y = {name}(x)\noutput y\n")).unwrap_err();
        assert!(
            e.message
                .starts_with(&format!("`{name}` is not an op call")),
            "{}",
            e.message
        );
    }
}

#[test]
fn parser_accepts_exactly_the_table_attribute_keys() {
    let ops = samples();
    let (g, names) = graph_of(&ops);
    let text = print(&g);
    for (op, name) in ops.iter().zip(&names) {
        let line = line_of(&text, name);
        let bad = line.strip_suffix(')').unwrap().to_string() + ", bogus=1)";
        let src = text.replace(&format!("{name} = {line}\n"), &format!("{name} = {bad}\n"));
        let e = parse(&src).unwrap_err();
        let mut keys: Vec<&str> = op.attr_keys().to_vec();
        if let Op::Sign {
            estimator: Some(e), ..
        } = op
        {
            let (_, params) = ESTIMATORS.iter().find(|(n, _)| *n == e.name).unwrap();
            keys.extend(params.iter());
        }
        let accepted = if keys.is_empty() {
            format!("`{}` takes no attributes", op.name())
        } else {
            let keys: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
            format!("`{}` accepts {}", op.name(), keys.join(", "))
        };
        assert_eq!(e.message, format!("unknown attribute `bogus`: {accepted}"));
    }
}

#[test]
fn arity_and_operand_names_agree() {
    for op in samples() {
        let (min, max) = op.arity();
        assert!(min >= 1 && min <= max, "{}", op.name());
        match op.operand_names() {
            Some(names) => assert_eq!(names.len(), max, "{}", op.name()),
            None => assert_eq!(max, usize::MAX, "{}", op.name()),
        }
    }
}
