//! The AdaBin rule (`affine_binary_dot`) on the corpus model
//! `tests/corpus/adabin.ir`: the layers with dyadic binary sets lose their
//! float dot, the layer with alpha = 0.1 keeps it, and the optimized model
//! gives the interpreter's bits on random inputs.

use std::collections::HashSet;
use std::path::Path;

use bnnc::opt::optimize;
use bnnc_ir::{ElemType, Model, Op, ValueId};

fn model() -> Model {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus/adabin.ir");
    Model::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The output named `name`.
fn output(m: &Model, name: &str) -> ValueId {
    let g = &m.graph;
    *g.outputs
        .iter()
        .find(|&&v| g.node(v).name == name)
        .unwrap_or_else(|| panic!("no output `{name}`"))
}

/// Every value `v` depends on, `v` included.
fn cone(m: &Model, v: ValueId) -> Vec<ValueId> {
    let mut seen = HashSet::new();
    let mut stack = vec![v];
    let mut out = Vec::new();
    while let Some(u) = stack.pop() {
        if seen.insert(u) {
            out.push(u);
            stack.extend(m.graph.node(u).inputs.iter().copied());
        }
    }
    out
}

fn is_float_dot(m: &Model, v: ValueId) -> bool {
    matches!(m.graph.node(v).op, Op::Conv2d(_) | Op::Dense) && m.ty(v).elem == ElemType::F32
}

#[test]
fn adabin_layers_lose_their_float_dots() {
    let m = model();
    for name in ["c1", "c2", "d", "bad"] {
        assert!(
            is_float_dot(&m, output(&m, name)),
            "`{name}` starts as a float dot"
        );
    }
    let o = optimize(&m).unwrap();
    eprintln!("{}", o.report);
    let fired = o
        .report
        .fired
        .iter()
        .find(|(n, _)| n == "affine_binary_dot")
        .map_or(0, |(_, k)| *k);
    assert!(fired >= 3, "affine_binary_dot fired {fired} times");
    let om = &o.model;
    for name in ["c1", "c2", "d"] {
        let v = output(om, name);
        assert!(
            matches!(om.graph.node(v).op, Op::Dequantize { .. }),
            "`{name}` is {}\n{}",
            om.graph.node(v).op.name(),
            o.text()
        );
        let floats: Vec<&str> = cone(om, v)
            .into_iter()
            .filter(|&u| is_float_dot(om, u))
            .map(|u| om.graph.node(u).name.as_str())
            .collect();
        assert!(
            floats.is_empty(),
            "`{name}` still reads float dots {floats:?}\n{}",
            o.text()
        );
        // The binary dots it reads instead.
        assert!(cone(om, v).into_iter().any(|u| {
            matches!(om.graph.node(u).op, Op::Conv2d(_) | Op::Dense)
                && om.ty(u).elem == ElemType::I32
        }));
    }
    // alpha = 0.1: products need 24 bits, the sum is not provably exact.
    let bad = output(om, "bad");
    assert!(
        is_float_dot(om, bad),
        "`bad` is {}",
        om.graph.node(bad).op.name()
    );

    // And the optimized model is the original, bit for bit.
    for seed in [1, 2] {
        let x = bnnc_runtime::inputs::random_inputs(&m.graph, 4, seed).unwrap();
        let want = bnnc_runtime::run(&m, &x).unwrap();
        let got = bnnc_runtime::run(om, &x).unwrap();
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            let (g, w) = (g.as_f32().unwrap(), w.as_f32().unwrap());
            assert_eq!(g.len(), w.len());
            for (i, (a, b)) in g.iter().zip(w).enumerate() {
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "output {k} element {i}: {a} vs {b}"
                );
            }
        }
    }
}
