//! Differential tests of the e-graph optimizer: the reference interpreter gives
//! the same outputs on the original and the optimized model, on every example,
//! every corpus model and random graphs.
//!
//! Comparison is exact for every output, floats included (bit for bit, any two
//! NaNs equal): no rule changes float arithmetic, so no tolerance is needed.
//! Inputs mix in +0.0, -0.0, NaN and infinities, which is where sign and
//! threshold rewrites would go wrong first. Batch-norm statistics, slopes and
//! shifts are drawn at random (negative and zero gamma included) by
//! `bnnc_train::init` with `random_stats`, and by the graph generator.

use std::path::Path;

use bnnc::opt::optimize;
use bnnc_ir::Model;
use bnnc_tests::diff::{inputs, same_bits, Specials};
use bnnc_tests::gen::{random_graph, GenOptions, Rng};
use bnnc_tests::runner::model_files;
use bnnc_train::init::{init_weights, InitOptions};

/// Optimizes `model` and compares both on random inputs at batch 3 (with and
/// without special floats).
fn check(model: &Model, seed: u64) -> Result<bnnc::opt::Optimized, String> {
    let o = optimize(model).map_err(|e| format!("optimize: {e}"))?;
    let text = o.text();
    let parsed = bnnc_ir::text::parse(&text).map_err(|e| format!("reparse: {e:?}\n{text}"))?;
    if parsed != o.model.graph {
        return Err(format!("print/parse round trip differs\n{text}"));
    }
    for (k, specials) in [Specials::None, Specials::Everywhere]
        .into_iter()
        .enumerate()
    {
        let x = inputs(model, 3, seed + k as u64, specials);
        let want = bnnc_runtime::run(model, &x).map_err(|e| format!("original: {e}"))?;
        let got = bnnc_runtime::run(&o.model, &x).map_err(|e| format!("optimized: {e}\n{text}"))?;
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            let name = &model.graph.node(model.graph.outputs[k]).name;
            same_bits(g, w, "optimized", "original")
                .map_err(|e| format!("output `{name}` (specials {specials:?}): {e}\n{text}"))?;
        }
    }
    Ok(o)
}

/// Every model of `dir` with its shipped weights and with random statistics.
fn check_dir(dir: &str, min: usize) {
    let models = model_files(dir);
    assert!(models.len() >= min);
    for p in models {
        let m = Model::load(&p).unwrap();
        let o = check(&m, 11).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        eprintln!("{} (shipped weights): {}", p.display(), o.report);
        for seed in [1, 2, 3] {
            let w = init_weights(
                &m.graph,
                &m.types,
                InitOptions {
                    seed,
                    random_stats: true,
                },
            )
            .unwrap();
            let m = Model::from_graph(m.graph.clone(), Some(&w), &p).unwrap();
            let o = check(&m, 100 + seed)
                .unwrap_or_else(|e| panic!("{} (random stats, seed {seed}): {e}", p.display()));
            if seed == 1 {
                eprintln!("{} (random stats): {}", p.display(), o.report);
            }
        }
    }
}

#[test]
fn examples_optimize_exactly() {
    check_dir("examples", 4);
}

#[test]
fn corpus_optimizes_exactly() {
    check_dir("tests/corpus", 10);
}

/// A model built to make every rule fire, with random statistics (5 seeds).
const RULES_MODEL: &str = "model opt_rules
weights \"opt_rules.safetensors\"
input x: f32[N, 6, 6, 8]
input y: f32[N, 16]
xb = sign(x)
w = @w: f32[16, 3, 3, 8]
wb = sign(w)
acc = conv2d(xb, wb, padding=1, pad_value=+1)
p = maxpool2d(acc, kernel=2)
s1 = sign(p)
g = @bn.gamma: f32[16]
b = @bn.beta: f32[16]
m = @bn.mean: f32[16]
v = @bn.var: f32[16]
n = batchnorm(p, g, b, m, v)
s2 = sign(n)
gp = [0.5, 1.0, 2.0, 0.25, 0.5, 1.0, 2.0, 0.25, 0.5, 1.0, 2.0, 0.25, 0.5, 1.0, 2.0, 0.25]: f32[16]
n2 = batchnorm(p, gp, b, m, v)
s3 = sign(n2)
alpha = @alpha: f32[16]
ya = mul(acc, alpha)
half = [0.5]: f32[1]
yc = sub(ya, half)
s4 = sign(yc)
k1 = [3, -2, 0, 7, 1, 1, 1, 1, -9, 4, 2, 2, 0, 0, 5, -5]: i32[16]
k2 = [2]: i32[1]
a1 = add(acc, k1)
a2 = sub(a1, k2)
s5 = sign(a2)
sc = [0.75, 2.0, 1.0, 0.5001, 0.75, 2.0, 1.0, 0.5001, 0.75, 2.0, 1.0, 0.5001, 0.75, 2.0, 1.0, 0.5001]: f32[16]
ys = mul(y, sc)
s6 = sign(ys)
h = hardtanh(n)
s7 = sign(h)
s8 = sign(s1)
wc = @wc: f32[4, 3, 3, 8]
wcb = sign(wc)
acc2 = conv2d(xb, wcb, padding=1, pad_value=0)
cat = concat(acc, acc2, axis=-1)
gc = @bnc.gamma: f32[20]
bc = @bnc.beta: f32[20]
mc = @bnc.mean: f32[20]
vc = @bnc.var: f32[20]
nc = batchnorm(cat, gc, bc, mc, vc)
s9 = sign(nc)
sh = channel_shuffle(cat, groups=4)
ts = @ts: i32[20, 1]
ds = @ds: i32[20]
s10 = threshold(sh, ts, ds)
ra = replicate(acc2, times=2)
t1 = @t1: i32[1, 1]
s11 = threshold(ra, t1)
ry = replicate(y, times=2)
s12 = sign(ry)
quarter = [0.25]: f32[1]
xnor = mul(ya, quarter)
ry2 = relu(y)
plus = sign(ry2)
wd = @wd: f32[4, 16]
wdb = sign(wd)
dd = dense(plus, wdb)
gd = @bnd.gamma: f32[4]
bd = @bnd.beta: f32[4]
md = @bnd.mean: f32[4]
vd = @bnd.var: f32[4]
nd = batchnorm(dd, gd, bd, md, vd)
s13 = sign(nd)
xr = replicate(xb, times=2)
wr = @wr: f32[4, 3, 3, 16]
wrb = sign(wr)
cr = conv2d(xr, wrb, padding=1, pad_value=-1)
nslope = [-1.0, -0.5, -2.0, -0.25, -1.0, -0.5, -2.0, -0.25, -1.0, -0.5, -2.0, -0.25, -1.0, -0.5, -2.0, -0.25]: f32[16]
pr = prelu(acc, nslope)
ten = [10.0]: f32[1]
pd = sub(pr, ten)
s14 = sign(pd)
al = [0.75]: f32[1]
be = [-0.25]: f32[1]
xa = mul(xb, al)
xab = add(xa, be)
aw = [0.5, 1.25, 0.125, 2.0]: f32[4, 1, 1, 1]
wca = mul(wcb, aw)
ad = conv2d(xab, wca, padding=1)
nq = batchnorm(acc, g, b, m, v)
pq = maxpool2d(nq, kernel=2)
s15 = sign(pq)
fq = flatten(n)
s16 = sign(fq)
rs = reshape(acc, shape=[N, 36, 16])
nra = batchnorm(rs, g, b, m, v)
s17 = sign(nra)
output s1, s2, s3, s4, a2, s5, s6, s7, s8, s9, s10, s11, s12, xnor, s13, cr, s14, ad, s15, s16, s17
";

#[test]
fn rule_model_optimizes_exactly() {
    let graph = bnnc_ir::text::parse(RULES_MODEL).unwrap();
    let types = bnnc_ir::verify::verify(&graph).unwrap();
    let mut fired: std::collections::BTreeMap<String, usize> = Default::default();
    for seed in 1..=5 {
        let w = init_weights(
            &graph,
            &types,
            InitOptions {
                seed,
                random_stats: true,
            },
        )
        .unwrap();
        let m = Model::from_graph(graph.clone(), Some(&w), Path::new("opt_rules.ir")).unwrap();
        let o = check(&m, seed).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        if seed == 1 {
            eprintln!("{}{}", o.report, o.text());
        }
        for (name, n) in o.report.fired {
            *fired.entry(name).or_default() += n;
        }
    }
    eprintln!("{fired:?}");
    for (rule, n) in &fired {
        assert!(*n > 0, "{rule} never fired: {fired:?}");
    }
}

/// 1,000 random graphs from a fixed sequence of choice streams: each optimizes
/// exactly, and together they make every threshold and sign rule fire (so the
/// differential check above is not vacuous).
#[test]
fn random_graphs_exercise_the_rules() {
    let mut rng = Rng::new(0x0b7);
    let mut fired: std::collections::BTreeMap<String, usize> = Default::default();
    let mut graphs = 0;
    while graphs < 1000 {
        let len = rng.int(4, 48) as usize;
        let choices: Vec<u32> = (0..len).map(|_| rng.next_u64() as u32).collect();
        let g = random_graph(&choices, &GenOptions { max_ops: 8 });
        let model =
            Model::from_graph(g.graph.clone(), Some(&g.weights), Path::new("random.ir")).unwrap();
        let o = check(&model, graphs as u64).unwrap_or_else(|e| panic!("choices {choices:?}: {e}"));
        for (name, n) in o.report.fired {
            *fired.entry(name).or_default() += n;
        }
        graphs += 1;
    }
    eprintln!("rules fired over {graphs} random graphs: {fired:?}");
    for rule in [
        "fold_constant",
        "sign_of_binary",
        "fold_chain_to_threshold",
        "fold_chain_to_table",
        "sign_through_movement",
        "threshold_through_concat",
        "threshold_through_shuffle",
        "threshold_through_replicate",
    ] {
        assert!(
            fired.get(rule).copied().unwrap_or(0) > 0,
            "{rule} never fired: {fired:?}"
        );
    }
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config {
        // 400 random graphs, or `BNNC_RANDOM_CASES` (CI: 2,000), with
        // batch-norm statistics that include negative and zero gamma. A
        // failure is shrunk through the choice stream and saved to
        // tests/regressions/opt_differential.txt (commit it), whose cases run
        // first on every later run.
        cases: bnnc_tests::runner::random_cases(400) as u32,
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::Direct(
            "regressions/opt_differential.txt",
        ))),
        ..proptest::test_runner::Config::default()
    })]

    #[test]
    fn random_graphs_optimize_exactly(choices in proptest::collection::vec(proptest::prelude::any::<u32>(), 0..48)) {
        let g = random_graph(&choices, &GenOptions { max_ops: 8 });
        let model = Model::from_graph(g.graph.clone(), Some(&g.weights), Path::new("random.ir")).unwrap();
        let seed = choices.iter().fold(7u64, |h, &c| h.wrapping_mul(31).wrapping_add(c as u64));
        check(&model, seed).map_err(proptest::test_runner::TestCaseError::fail)?;
    }
}
