//! The e-graph optimizer on the example models: snapshots of the optimized text
//! (one per example, reviewed as diffs), a print/parse/verify round trip, and the
//! structural guarantee for the MNIST MLP (no float op between binary layers).

use std::path::{Path, PathBuf};

use bnnc::opt::{optimize, Optimized};
use bnnc_ir::{ElemType, Model, Op};

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "ir"))
        .collect();
    v.sort();
    v
}

fn opt(path: &Path) -> Optimized {
    let m = Model::load(path).unwrap();
    let o = optimize(&m).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    eprintln!("{}: {}", path.display(), o.report);
    o
}

#[test]
fn optimized_examples_snapshots() {
    let models = examples();
    assert!(models.len() >= 4);
    for p in models {
        let o = opt(&p);
        let stem = p.file_stem().unwrap().to_string_lossy().to_string();
        let mut fired: Vec<String> = o
            .report
            .fired
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, _)| k.clone())
            .collect();
        fired.sort();
        let body = format!(
            "# rules fired: {}\n# cost {} -> {}\n{}",
            fired.join(", "),
            o.report.cost_before,
            o.report.cost_after,
            o.text()
        );
        insta::assert_snapshot!(format!("opt_{stem}"), body);
    }
}

#[test]
fn optimized_examples_print_parse_and_load() {
    let dir = std::env::temp_dir().join(format!("bnnc_opt_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for p in examples() {
        let o = opt(&p);
        let text = o.text();
        let parsed = bnnc_ir::text::parse(&text).unwrap();
        assert_eq!(
            parsed,
            o.model.graph,
            "{}: print/parse round trip",
            p.display()
        );
        // Written out and loaded back like any model.
        let out = dir.join(p.file_name().unwrap());
        o.write(&out).unwrap();
        let back = Model::load(&out).unwrap();
        assert_eq!(back.graph, o.model.graph);
        assert_eq!(back.types, o.model.types);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Between two binary dense layers of the MNIST MLP there is exactly one
/// threshold over the i32 accumulator: no batchnorm, no float op.
#[test]
fn mnist_mlp_has_no_float_op_between_binary_layers() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mnist_mlp.ir");
    let o = opt(&p);
    let m = &o.model;
    let g = &m.graph;
    let dense: Vec<_> = g
        .ids()
        .filter(|&v| matches!(g.node(v).op, Op::Dense))
        .collect();
    assert_eq!(dense.len(), 3);
    let mut links = 0;
    for &d in &dense[1..] {
        let x = g.node(d).inputs[0];
        assert_eq!(m.ty(x).elem, ElemType::B1);
        let th = g.node(x);
        assert!(
            matches!(th.op, Op::Threshold),
            "dense input is {}",
            th.op.name()
        );
        let acc = th.inputs[0];
        assert!(
            matches!(g.node(acc).op, Op::Dense),
            "threshold over a dense"
        );
        assert_eq!(m.ty(acc).elem, ElemType::I32);
        links += 1;
    }
    assert_eq!(links, 2);
    // Weights are folded b1 constants, not sign(@latent).
    for &d in &dense {
        let w = g.node(d).inputs[1];
        assert!(matches!(g.node(w).op, Op::Weight { .. }));
        assert_eq!(m.ty(w).elem, ElemType::B1);
    }
    // No batchnorm is left but the logits'.
    let bns = g
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::BatchNorm { .. }))
        .count();
    assert_eq!(bns, 1);
}
