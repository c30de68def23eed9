//! The e-graph optimizer on the example models: snapshots of the optimized text
//! (one per example, reviewed as diffs), a print/parse/verify round trip, and the
//! structural guarantee for the MNIST MLP (no float op between binary layers).

use std::path::{Path, PathBuf};

use bnnc::opt::{optimize, Optimized};
use bnnc_ir::{ElemType, Model, Op};
use bnnc_kir::target::Target;

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

/// Fails if the memory plan holds a buffer for any of `names` (or a part
/// `name.*` of one).
fn assert_not_stored(plan: &[String], names: &[&str]) {
    for never in names {
        assert!(
            plan.iter()
                .all(|w| w != never && !w.starts_with(&format!("{never}."))),
            "a buffer for `{never}`: {plan:?}"
        );
    }
}

/// The workspace buffers and kernel names of `model` compiled for the native
/// backends.
fn plan_and_kernels(model: &Model) -> (Vec<String>, Vec<String>) {
    let l = bnnc::lower::lower(model, &Target::host().unwrap()).unwrap();
    let plan = l.plan.iter().map(|e| e.what.clone()).collect();
    let kernels = l
        .module
        .functions
        .iter()
        .map(|f| f.name.clone())
        .filter(|n| n.contains("_k"))
        .collect();
    (plan, kernels)
}

/// RepConv: the compiled repconv example (optimized or not) holds no buffer
/// for the replicated channels. Unoptimized, the binary conv reads `xb` once
/// per replica with that replica's weights; optimized, the two replicas'
/// weights are combined into one ternary kernel (times 2) over `xb`, and no
/// replicate is left at all.
#[test]
fn repconv_example_never_stores_the_replicated_tensor() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/repconv_block.ir");
    let original = Model::load(&p).unwrap();
    let optimized = opt(&p).model;
    for (m, combined) in [(original, false), (optimized, true)] {
        let g = &m.graph;
        let rep = g
            .ids()
            .find(|&v| matches!(g.node(v).op, Op::Replicate { .. }));
        let (plan, kernels) = plan_and_kernels(&m);
        if let Some(rep) = rep {
            let name = &g.node(rep).name;
            assert!(
                plan.iter()
                    .all(|w| w != name && !w.starts_with(&format!("{name}."))),
                "a buffer for `{name}`: {plan:?}"
            );
        }
        assert_eq!(rep.is_none(), combined);
        let conv = g
            .ids()
            .find(|&v| matches!(g.node(v).op, Op::Conv2d(_)))
            .unwrap();
        let w = g.node(conv).inputs[1];
        assert_eq!(
            m.ty(w).elem,
            if combined {
                ElemType::Ternary
            } else {
                ElemType::B1
            }
        );
        assert!(plan.iter().any(|w| w == "xb"), "{plan:?}");
        assert!(
            !kernels.iter().any(|k| k.contains("replicate")),
            "{kernels:?}"
        );
        assert!(
            kernels.iter().any(|k| k.ends_with("conv2d_b1")),
            "{kernels:?}"
        );
        if combined {
            // The combined kernel's factor 2 is a power of two: a shift.
            let l = bnnc::lower::lower(&m, &Target::host().unwrap()).unwrap();
            let f = l
                .module
                .functions
                .iter()
                .find(|f| f.name.ends_with("_mul"))
                .expect("the i32 multiply by 2");
            let text = bnnc_kir::print(&bnnc_kir::Module {
                functions: vec![f.clone()],
                ..l.module.clone()
            });
            assert!(text.contains("shl(load.i32"), "{text}");
        }
    }
}

/// RepConv on the corpus model: convs and a dense over replicated binary
/// and float inputs, and thresholds over replicated accumulators (one
/// accumulator against several threshold sets), all without a buffer for any
/// replicated tensor or any accumulator that is thresholded. `hr` replicates
/// `h`, a model output that is stored anyway: its threshold reads `h` once
/// per value against the three sets.
#[test]
fn repconv_corpus_model_computes_replication_once() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus/repconv.ir");
    let o = opt(&p);
    let (plan, kernels) = plan_and_kernels(&o.model);
    assert_not_stored(
        &plan,
        &[
            "xr", "vr", "c2", "c2r", "c3", "c3r", "hr", "fr2", "ur", "zr",
        ],
    );
    // Only the replicate of the float sign (`yf`, a model output) runs as a
    // kernel, moving packed bits; the thresholds of `y2` and `y3` are fused
    // into their convs.
    let count = |suffix: &str| kernels.iter().filter(|k| k.ends_with(suffix)).count();
    assert_eq!(count("replicate"), 0, "{kernels:?}");
    assert_eq!(count("move_b1"), 1, "{kernels:?}");
    assert_eq!(count("threshold"), 0, "{kernels:?}");
    assert_eq!(count("threshold_replicated"), 2, "{kernels:?}");
}

/// Threshold across data movement, end to end: batchnorm + sign after a
/// channel concat of two binary convs (GhostNet / PalQuant style) and after a
/// channel shuffle become one threshold per conv, each fused into its conv's
/// kernel (no accumulator buffer), and the movement carries bits.
#[test]
fn thresholds_after_concat_and_shuffle_fuse_into_the_convs() {
    let src = "model ghost
weights \"ghost.safetensors\"
input x: b1[N, 6, 6, 64]
wa = @wa: b1[48, 3, 3, 64]
a = conv2d(x, wa, padding=1, pad_value=+1)
wb = @wb: b1[16, 1, 1, 64]
b = conv2d(x, wb)
cat = concat(a, b, axis=-1)
sh = channel_shuffle(cat, groups=4)
g = @bn.gamma: f32[64]
be = @bn.beta: f32[64]
m = @bn.mean: f32[64]
v = @bn.var: f32[64]
n = batchnorm(sh, g, be, m, v)
y = sign(n)
wn = @wn: b1[8, 3, 3, 64]
z = conv2d(y, wn, padding=1, pad_value=+1)
output z
";
    let graph = bnnc_ir::text::parse(src).unwrap();
    let types = bnnc_ir::verify::verify(&graph).unwrap();
    let w = bnnc_train::init::init_weights(
        &graph,
        &types,
        bnnc_train::init::InitOptions {
            seed: 3,
            random_stats: true,
        },
    )
    .unwrap();
    let m = Model::from_graph(graph, Some(&w), Path::new("ghost.ir")).unwrap();
    let o = optimize(&m).unwrap();
    eprintln!("{}{}", o.report, o.text());
    let g = &o.model.graph;
    let fired = |r: &str| o.report.fired.iter().any(|(k, n)| k == r && *n > 0);
    assert!(fired("threshold_through_shuffle") && fired("threshold_through_concat"));
    // Every threshold reads a conv directly; no float op is left.
    let mut thresholds = 0;
    for v in g.ids() {
        let n = g.node(v);
        assert!(
            !matches!(n.op, Op::BatchNorm { .. } | Op::Sign { .. }),
            "{} left",
            n.op.name()
        );
        if matches!(n.op, Op::Threshold) {
            assert!(matches!(g.node(n.inputs[0]).op, Op::Conv2d(_)));
            thresholds += 1;
        }
    }
    assert_eq!(thresholds, 2);
    let (plan, kernels) = plan_and_kernels(&o.model);
    assert!(
        plan.iter().all(|w| w != "a" && w != "b"),
        "accumulators are never stored: {plan:?}"
    );
    // The concat and the shuffle move packed bits (no unpacked copies).
    assert!(
        plan.iter()
            .all(|w| !w.ends_with(".i32") && !w.ends_with(".unpacked")),
        "{plan:?}"
    );
    assert_eq!(
        kernels.iter().filter(|k| k.ends_with("move_b1")).count(),
        2,
        "{kernels:?}"
    );
    assert!(
        !kernels.iter().any(|k| k.ends_with("threshold")),
        "{kernels:?}"
    );
    // And the interpreter agrees with the original.
    let mut rng = 1u64;
    let words: Vec<i32> = (0..2 * 6 * 6 * 64)
        .map(|_| {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            if rng >> 63 == 1 {
                1
            } else {
                -1
            }
        })
        .collect();
    let x = bnnc_ir::Tensor::int(ElemType::B1, vec![2, 6, 6, 64], words);
    let want = bnnc_runtime::run(&m, std::slice::from_ref(&x)).unwrap();
    let got = bnnc_runtime::run(&o.model, &[x]).unwrap();
    assert_eq!(got[0].as_int(), want[0].as_int());
}

/// Tables and fills end to end, on the corpus model: the two sign chains
/// with negative slopes become tables fused into their binary conv/dense (no
/// accumulator buffer, no separate table kernel for them), and the sign of a
/// relu becomes a fill, so the float dense and relu before it are never
/// computed.
#[test]
fn tables_fuse_into_popcount_kernels_and_fills_skip_their_operand() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus/table_fill.ir");
    let o = opt(&p);
    let fired = |r: &str| {
        o.report
            .fired
            .iter()
            .find(|(n, _)| n == r)
            .map_or(0, |(_, k)| *k)
    };
    assert_eq!(fired("fold_chain_to_table"), 2, "{}", o.report);
    assert_eq!(fired("sign_of_nonnegative"), 1, "{}", o.report);
    let (plan, kernels) = plan_and_kernels(&o.model);
    assert_not_stored(&plan, &["c1", "r1", "h", "h1", "h2", "h3", "du", "ru"]);
    let count = |suffix: &str| kernels.iter().filter(|k| k.ends_with(suffix)).count();
    // t1, t2, t3 are tables written in the model over stored values.
    assert_eq!(count("_table"), 3, "{kernels:?}");
    assert_eq!(count("_fill"), 5, "{kernels:?}");
    assert_eq!(count("dense_f32"), 0, "{kernels:?}");
    assert_eq!(count("dense_b1"), 1, "{kernels:?}");
    // Unoptimized, the chains run as float ops and the dense is computed.
    let (plan0, kernels0) = plan_and_kernels(&Model::load(&p).unwrap());
    assert!(plan0.iter().any(|w| w == "c1"), "{plan0:?}");
    assert!(
        kernels0.iter().any(|k| k.ends_with("dense_f32")),
        "{kernels0:?}"
    );
}

/// Grouped binary convs over replicates, with groups inside one replica and
/// groups across two: neither replicate gets a buffer (the kernels read the
/// source, with a mask per group and replica where groups straddle).
#[test]
fn grouped_convs_over_replicates_read_the_source() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus/conv_b1_groups.ir");
    for m in [Model::load(&p).unwrap(), opt(&p).model] {
        let (plan, _) = plan_and_kernels(&m);
        assert_not_stored(&plan, &["yr", "ab2"]);
    }
}
