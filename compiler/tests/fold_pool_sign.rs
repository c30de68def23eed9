//! Folds across max-pool and reshape (issue 14, item 3): the rules
//! `sign_maxpool_never_nan` (`rules/pool.rs`), `sign_through_reshape` and
//! `threshold_through_reshape` (`rules/reshape.rs`).
//!
//! For each rule a small model where it fires (the optimized graph's shape
//! is asserted: no f32 maxpool or batch-norm left, a `b1` maxpool or reshape
//! after a threshold over the binary conv's accumulator) and one where it
//! must not (an f32 input that may hold NaN, a float stem conv, NaN
//! statistics, a reshape that mixes channels with different thresholds).
//! Every model is then checked differentially: the optimized model in the
//! interpreter, the optimized model in the Cranelift JIT at -O0 and the
//! original in the JIT at -O1 give the original's interpreter bits, on random
//! inputs with NaN, infinities and signed zeros, with batch-norm statistics
//! that put the accumulator exactly on the threshold (mean an even integer,
//! beta 0: `y = 0`, sign +1) and negative and zero gammas.
//!
//! Last, the trained MNIST CNN (`examples/train/mnist_cnn.ir`): conv1's
//! batchnorm -> maxpool -> sign becomes a `b1` maxpool over a threshold of the
//! accumulator, and the predictions on the first MNIST test images are the
//! same before and after optimization.

use std::path::Path;

use bnnc::compile::{Backend, CompileOptions};
use bnnc::jit::JitModel;
use bnnc::opt::{optimize, Optimized};
use bnnc_ir::{ElemType, Model, Tensor, TensorData, ValueId};

/// splitmix64: deterministic parameters and inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn f32(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
    }

    fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }

    fn pick(&mut self, v: &[f32]) -> f32 {
        v[self.int(0, v.len() as i64 - 1) as usize]
    }
}

/// An inline constant `name = [..]: f32[dims]`.
fn konst(name: &str, v: &[f32], dims: &[usize]) -> String {
    let vals: Vec<String> = v.iter().map(|x| format!("{x:?}")).collect();
    let dims: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("{name} = [{}]: f32[{}]\n", vals.join(", "), dims.join(", "))
}

/// Batch-norm statistics `{p}g, {p}b, {p}m, {p}v` for `c` channels: gammas
/// positive, negative and zero; half the channels with beta 0 and an even
/// integer mean, so a `b1 x b1` accumulator of even length lands exactly on
/// the threshold (`y = 0`); `period` > 0 repeats the first `period` channels.
fn bn_stats(rng: &mut Rng, p: &str, c: usize, period: usize) -> String {
    let mut g = Vec::new();
    let mut b = Vec::new();
    let mut m = Vec::new();
    let mut v = Vec::new();
    for ch in 0..c {
        if period > 0 && ch >= period {
            g.push(g[ch % period]);
            b.push(b[ch % period]);
            m.push(m[ch % period]);
            v.push(v[ch % period]);
            continue;
        }
        g.push(rng.pick(&[1.5, -0.75, 0.0, 2.0, -2.5, 0.3, -0.01, 1.0]));
        let tie = ch % 2 == 0;
        b.push(if tie { 0.0 } else { rng.f32(-1.5, 1.5) });
        m.push(if tie {
            2.0 * rng.int(-4, 4) as f32
        } else {
            rng.f32(-8.0, 8.0)
        });
        v.push(rng.f32(0.25, 6.0));
    }
    [
        konst(&format!("{p}g"), &g, &[c]),
        konst(&format!("{p}b"), &b, &[c]),
        konst(&format!("{p}m"), &m, &[c]),
        konst(&format!("{p}v"), &v, &[c]),
    ]
    .concat()
}

fn batchnorm(out: &str, x: &str, p: &str) -> String {
    format!("{out} = batchnorm({x}, {p}g, {p}b, {p}m, {p}v, eps=0.00001)\n")
}

/// `x: f32[N, 6, 6, 8]`, its sign, and a binary 3x3 conv to 16 channels
/// (`acc`, i32, K = 72: even accumulators).
fn conv_prelude(rng: &mut Rng, name: &str) -> String {
    let w: Vec<f32> = (0..16 * 3 * 3 * 8).map(|_| rng.f32(-1.0, 1.0)).collect();
    format!(
        "model {name}\ninput x: f32[N, 6, 6, 8]\nxb = sign(x)\n{}wb = sign(w)\nacc = conv2d(xb, wb, padding=1, pad_value=+1)\n",
        konst("w", &w, &[16, 3, 3, 8])
    )
}

/// Rule 1 fires: sign(maxpool(batchnorm(acc))), without and with padding.
fn pool_model(rng: &mut Rng) -> String {
    let mut t = conv_prelude(rng, "pool_fires");
    t += &bn_stats(rng, "", 16, 0);
    t += &batchnorm("n", "acc", "");
    t += "p = maxpool2d(n, kernel=2)\ns = sign(p)\n";
    t += "pp = maxpool2d(n, kernel=3, stride=2, padding=1)\nsp = sign(pp)\n";
    t += "output s, sp\n";
    t
}

/// Rule 1 must not fire: over an f32 input, over a float stem conv, and over
/// an accumulator whose batch-norm is NaN in one channel (`var = -1`).
fn pool_nofire_model(rng: &mut Rng) -> String {
    let mut t = conv_prelude(rng, "pool_stays");
    t += &bn_stats(rng, "i", 8, 0);
    t += &batchnorm("ni", "x", "i");
    t += "pi = maxpool2d(ni, kernel=2)\nsi = sign(pi)\n";
    let wf: Vec<f32> = (0..16 * 3 * 3 * 8).map(|_| rng.f32(-1.0, 1.0)).collect();
    t += &konst("wf", &wf, &[16, 3, 3, 8]);
    t += "cf = conv2d(x, wf, padding=1)\n";
    t += &bn_stats(rng, "f", 16, 0);
    t += &batchnorm("nf", "cf", "f");
    t += "pf = maxpool2d(nf, kernel=2)\nsf = sign(pf)\n";
    t += &bn_stats(rng, "q", 16, 0);
    let mut vn = vec![1.0f32; 16];
    vn[0] = -1.0;
    t += &konst("vn", &vn, &[16]);
    t += "nn = batchnorm(acc, qg, qb, qm, vn, eps=0.00001)\n";
    t += "pn = maxpool2d(nn, kernel=2)\nsn = sign(pn)\n";
    t += "output si, sf, sn\n";
    t
}

/// Rule 2 fires: sign through flatten and reshape (BinaryAlexNet's
/// `sign(flatten(batchnorm(maxpool(acc))))`), and a threshold through a
/// reshape that keeps the channels, and through a flatten whose per-position
/// thresholds repeat with the channel period.
fn reshape_model(rng: &mut Rng) -> String {
    let mut t = conv_prelude(rng, "reshape_fires");
    t += "pa = maxpool2d(acc, kernel=2)\n";
    t += &bn_stats(rng, "a", 16, 0);
    t += &batchnorm("na", "pa", "a");
    t += "fa = flatten(na)\nsa = sign(fa)\n";
    t += &bn_stats(rng, "r", 16, 0);
    t += &batchnorm("nr", "acc", "r");
    t += "rr = reshape(nr, shape=[N, 36, 16])\nsr = sign(rr)\n";
    t += "ra = reshape(acc, shape=[N, 36, 16])\n";
    t += &bn_stats(rng, "t", 16, 0);
    t += &batchnorm("nt", "ra", "t");
    t += "st = sign(nt)\n";
    t += "fl = flatten(acc)\n";
    t += &bn_stats(rng, "p", 576, 16);
    t += &batchnorm("np", "fl", "p");
    t += "sper = sign(np)\n";
    t += "output sa, sr, st, sper\n";
    t
}

/// Rule 2 must not move the threshold: a flatten followed by a batch-norm
/// with its own statistics per flattened position (channels mixed).
fn reshape_nofire_model(rng: &mut Rng) -> String {
    let mut t = conv_prelude(rng, "reshape_stays");
    t += "fl = flatten(acc)\n";
    t += &bn_stats(rng, "p", 576, 0);
    t += &batchnorm("np", "fl", "p");
    t += "smix = sign(np)\n";
    t += "output smix\n";
    t
}

fn load(text: &str) -> Model {
    let g = bnnc_ir::text::parse(text).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    Model::from_graph(g, None, Path::new("fold_pool_sign.ir")).unwrap_or_else(|e| panic!("{e}"))
}

fn fired(o: &Optimized, rule: &str) -> usize {
    o.report
        .fired
        .iter()
        .find(|(n, _)| n == rule)
        .map_or(0, |(_, k)| *k)
}

/// The op name and element type of value `v`.
fn kind(m: &Model, v: ValueId) -> (&'static str, ElemType) {
    (m.graph.node(v).op.name(), m.ty(v).elem)
}

/// Values computed by `op` with element type `elem`.
fn values(m: &Model, op: &str, elem: ElemType) -> Vec<ValueId> {
    m.graph
        .ids()
        .filter(|&v| kind(m, v) == (op, elem))
        .collect()
}

fn operand(m: &Model, v: ValueId, i: usize) -> ValueId {
    m.graph.node(v).inputs[i]
}

/// The output named `name`.
fn output(m: &Model, name: &str) -> ValueId {
    *m.graph
        .outputs
        .iter()
        .find(|&&v| m.graph.node(v).name == name)
        .unwrap_or_else(|| panic!("no output `{name}`"))
}

/// True when `v` is a threshold over a binary conv's i32 accumulator.
fn threshold_over_conv(m: &Model, v: ValueId) -> bool {
    if kind(m, v).0 != "threshold" {
        return false;
    }
    let a = operand(m, v, 0);
    kind(m, a) == ("conv2d", ElemType::I32) && m.ty(operand(m, a, 0)).elem == ElemType::B1
}

/// Random inputs of `m` at `batch`, with NaN, infinities, +0.0 and -0.0 in
/// the f32 inputs when `specials`.
fn inputs(m: &Model, batch: usize, seed: u64, specials: bool) -> Vec<Tensor> {
    let mut xs = bnnc_runtime::inputs::random_inputs(&m.graph, batch, seed).unwrap();
    for t in &mut xs {
        if let TensorData::F32(v) = &mut t.data {
            for (i, e) in v.iter_mut().enumerate() {
                *e = match (i % 23, specials) {
                    (5, _) => 0.0,
                    (9, _) => -0.0,
                    (13, true) => f32::NAN,
                    (17, true) => f32::INFINITY,
                    (19, true) => f32::NEG_INFINITY,
                    _ => *e * 4.0 - 2.0,
                };
            }
        }
    }
    xs
}

/// Exact comparison: same element type and dims, equal bits (any NaN equals
/// any NaN; `b1` compared as values, packed or not).
fn same_bits(got: &Tensor, want: &Tensor, what: &str) {
    assert_eq!(got.elem, want.elem, "{what}: element type");
    assert_eq!(got.dims, want.dims, "{what}: dims");
    match (&got.data, &want.data) {
        (TensorData::F32(g), TensorData::F32(w)) => {
            for (i, (a, b)) in g.iter().zip(w).enumerate() {
                assert!(
                    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                    "{what}: element {i}: {a} against {b}"
                );
            }
        }
        _ => {
            let (g, w) = (got.as_int().unwrap(), want.as_int().unwrap());
            if let Some(i) = (0..g.len()).find(|&i| g[i] != w[i]) {
                panic!("{what}: element {i}: {} against {}", g[i], w[i]);
            }
        }
    }
}

fn jit(m: &Model, opt_level: u8) -> JitModel {
    let opts = CompileOptions::host(Backend::Cranelift)
        .unwrap()
        .opt_level(opt_level);
    JitModel::compile_with(m, &opts).unwrap_or_else(|e| panic!("{}: {e}", m.graph.name))
}

/// The optimized model gives the original's bits in the interpreter, and so
/// do the JIT on the optimized model at -O0 and on the original at -O1.
fn differential(m: &Model, o: &Optimized, seed: u64) {
    let opt0 = jit(&o.model, 0);
    let orig1 = jit(m, 1);
    for (k, specials) in [false, true].into_iter().enumerate() {
        let x = inputs(m, 3, seed * 2 + k as u64, specials);
        let want = bnnc_runtime::run(m, &x).unwrap();
        let got = bnnc_runtime::run(&o.model, &x).unwrap();
        let jit0 = opt0.run(&x).unwrap();
        let jit1 = orig1.run(&x).unwrap();
        for (i, w) in want.iter().enumerate() {
            let name = &m.graph.node(m.graph.outputs[i]).name;
            let at = |engine: &str| format!("{}: output `{name}`, {engine}", m.graph.name);
            same_bits(&got[i], w, &at("interpreter, optimized"));
            same_bits(&jit0[i], w, &at("Cranelift JIT -O0, optimized"));
            same_bits(&jit1[i], w, &at("Cranelift JIT -O1, original"));
        }
    }
}

const SEEDS: [u64; 4] = [1, 2, 3, 4];

#[test]
fn sign_maxpool_never_nan_fires_and_is_exact() {
    for seed in SEEDS {
        let m = load(&pool_model(&mut Rng(seed)));
        let o = optimize(&m).unwrap();
        let om = &o.model;
        assert!(fired(&o, "sign_maxpool_never_nan") >= 2, "{}", o.report);
        assert!(
            values(om, "maxpool2d", ElemType::F32).is_empty(),
            "{}",
            o.text()
        );
        assert!(
            values(om, "batchnorm", ElemType::F32).is_empty(),
            "{}",
            o.text()
        );
        for name in ["s", "sp"] {
            let s = output(om, name);
            assert_eq!(kind(om, s), ("maxpool2d", ElemType::B1), "{}", o.text());
            assert!(threshold_over_conv(om, operand(om, s, 0)), "{}", o.text());
        }
        differential(&m, &o, seed);
    }
}

#[test]
fn sign_maxpool_never_nan_stays_off_where_nan_is_possible() {
    for seed in SEEDS {
        let m = load(&pool_nofire_model(&mut Rng(seed)));
        let o = optimize(&m).unwrap();
        let om = &o.model;
        assert_eq!(fired(&o, "sign_maxpool_never_nan"), 0, "{}", o.report);
        // Each sign still reads an f32 maxpool.
        for name in ["si", "sf", "sn"] {
            let s = output(om, name);
            assert_eq!(kind(om, s).0, "sign", "{}", o.text());
            assert_eq!(
                kind(om, operand(om, s, 0)),
                ("maxpool2d", ElemType::F32),
                "{}",
                o.text()
            );
        }
        differential(&m, &o, seed);
    }
}

/// Why the rule needs its proof: with a NaN after a negative value in a
/// window, `sign(maxpool(y))` is -1 and `maxpool(sign(y))` is +1.
#[test]
fn nan_makes_sign_and_maxpool_differ() {
    let m = load(
        "model nan\ninput x: f32[1, 2, 2, 1]\np = maxpool2d(x, kernel=2)\na = sign(p)\ns = sign(x)\nb = maxpool2d(s, kernel=2)\noutput a, b\n",
    );
    let x = Tensor::f32(vec![1, 2, 2, 1], vec![-1.0, f32::NAN, -2.0, -3.0]);
    let out = bnnc_runtime::run(&m, &[x]).unwrap();
    assert_eq!(out[0].as_int().unwrap().to_vec(), vec![-1]);
    assert_eq!(out[1].as_int().unwrap().to_vec(), vec![1]);
}

#[test]
fn sign_and_threshold_through_reshape_fire_and_are_exact() {
    for seed in SEEDS {
        let m = load(&reshape_model(&mut Rng(seed)));
        let o = optimize(&m).unwrap();
        let om = &o.model;
        assert!(fired(&o, "sign_through_reshape") >= 2, "{}", o.report);
        assert!(fired(&o, "threshold_through_reshape") >= 2, "{}", o.report);
        assert!(
            values(om, "batchnorm", ElemType::F32).is_empty(),
            "{}",
            o.text()
        );
        for op in ["flatten", "reshape"] {
            assert!(values(om, op, ElemType::F32).is_empty(), "{}", o.text());
            assert!(values(om, op, ElemType::I32).is_empty(), "{}", o.text());
        }
        // sign(flatten(batchnorm(maxpool(acc)))): a b1 flatten of bits
        // thresholded from the integer pool (or pooled after the threshold).
        let sa = output(om, "sa");
        assert_eq!(kind(om, sa), ("flatten", ElemType::B1), "{}", o.text());
        let inner = operand(om, sa, 0);
        let pooled_bits = kind(om, inner) == ("maxpool2d", ElemType::B1)
            && threshold_over_conv(om, operand(om, inner, 0));
        let thresholded_pool = kind(om, inner).0 == "threshold"
            && kind(om, operand(om, inner, 0)) == ("maxpool2d", ElemType::I32);
        assert!(pooled_bits || thresholded_pool, "{}", o.text());
        // The others: a b1 reshape / flatten of a threshold over the conv.
        for (name, op) in [("sr", "reshape"), ("st", "reshape"), ("sper", "flatten")] {
            let s = output(om, name);
            assert_eq!(kind(om, s), (op, ElemType::B1), "{name}\n{}", o.text());
            assert!(threshold_over_conv(om, operand(om, s, 0)), "{}", o.text());
        }
        differential(&m, &o, seed);
    }
}

#[test]
fn threshold_stays_above_a_reshape_that_mixes_channels() {
    for seed in SEEDS {
        let m = load(&reshape_nofire_model(&mut Rng(seed)));
        let o = optimize(&m).unwrap();
        let om = &o.model;
        assert_eq!(fired(&o, "threshold_through_reshape"), 0, "{}", o.report);
        let s = output(om, "smix");
        assert_eq!(kind(om, s).0, "threshold", "{}", o.text());
        assert_eq!(
            kind(om, operand(om, s, 0)),
            ("flatten", ElemType::I32),
            "{}",
            o.text()
        );
        differential(&m, &o, seed);
    }
}

/// The `b1` reshapes the rules write, in the JIT: word copies where the
/// packed layout is unchanged (same channel count, or both a multiple of
/// 64), moved values otherwise; the interpreter's bits at batches 1 and 3.
#[test]
fn b1_reshapes_match_the_interpreter_in_the_jit() {
    let m = load(
        "model b1_reshape
input x: f32[N, 2, 2, 128]
input y: f32[N, 3, 16]
s = sign(x)
f = flatten(s)
r = reshape(s, shape=[N, 4, 128])
r2 = reshape(s, shape=[N, 8, 64])
r3 = reshape(s, shape=[N, 2, 4, 64])
t = sign(y)
ft = flatten(t)
rt = reshape(t, shape=[N, 4, 12])
rs = reshape(t, shape=[N, 1, 3, 16])
output f, r, r2, r3, ft, rt, rs
",
    );
    let code = jit(&m, 0);
    for (batch, seed) in [(1, 5), (3, 6)] {
        let x = inputs(&m, batch, seed, true);
        let want = bnnc_runtime::run(&m, &x).unwrap();
        let got = code.run(&x).unwrap();
        for (i, w) in want.iter().enumerate() {
            let name = &m.graph.node(m.graph.outputs[i]).name;
            same_bits(&got[i], w, &format!("b1 reshape `{name}`, batch {batch}"));
        }
    }
}

/// The trained MNIST CNN: conv1's batchnorm -> maxpool -> sign folds into a
/// `b1` maxpool over integer thresholds of the accumulator; the float stem's
/// maxpool (over a conv of the f32 pixels, which may be NaN) stays. The
/// predictions (and logits, bit for bit) on the first MNIST test images are
/// the same before and after optimization, in the interpreter and the JIT.
#[test]
fn mnist_cnn_conv1_pool_folds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let m = Model::load(&root.join("examples/train/mnist_cnn.ir")).unwrap();
    let o = optimize(&m).unwrap();
    eprintln!("{}", o.report);
    let om = &o.model;
    assert!(fired(&o, "sign_maxpool_never_nan") >= 1, "{}", o.report);
    // The stem's maxpool is the only f32 one; conv1's and conv2's
    // batch-norms are gone (the stem's and the logits' stay).
    assert_eq!(
        values(om, "maxpool2d", ElemType::F32).len(),
        1,
        "{}",
        o.text()
    );
    assert_eq!(
        values(om, "batchnorm", ElemType::F32).len(),
        2,
        "{}",
        o.text()
    );
    let pools = values(om, "maxpool2d", ElemType::B1);
    assert_eq!(pools.len(), 1, "{}", o.text());
    assert!(
        threshold_over_conv(om, operand(om, pools[0], 0)),
        "{}",
        o.text()
    );

    let data = bnnc_train::data::load_idx_dir_limit(
        &root.join("data/mnist"),
        bnnc_train::data::Split::Test,
        Some(32),
    )
    .unwrap();
    let idx: Vec<usize> = (0..32).collect();
    let x = data.batch(&idx, &[32, 28, 28, 1]).unwrap();
    let want = bnnc_runtime::run(&m, std::slice::from_ref(&x)).unwrap();
    let got = bnnc_runtime::run(om, std::slice::from_ref(&x)).unwrap();
    same_bits(&got[0], &want[0], "mnist_cnn logits, optimized interpreter");
    let jit_got = jit(&m, 1).run(std::slice::from_ref(&x)).unwrap();
    same_bits(&jit_got[0], &want[0], "mnist_cnn logits, JIT -O1");
    let argmax = |t: &Tensor| -> Vec<usize> {
        let v = t.as_f32().unwrap();
        v.chunks(10)
            .map(|r| (0..10).fold(0, |b, i| if r[i] > r[b] { i } else { b }))
            .collect()
    };
    let labels: Vec<usize> = data.labels[..32].iter().map(|&l| l as usize).collect();
    let pred = argmax(&got[0]);
    assert_eq!(pred, argmax(&want[0]));
    let right = pred.iter().zip(&labels).filter(|(p, l)| p == l).count();
    assert!(right >= 30, "{right}/32 right: {pred:?} against {labels:?}");
}
