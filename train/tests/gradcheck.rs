//! Gradient checks of `train::autodiff::TrainModel`.
//!
//! - Smooth and piecewise-linear ops: central finite differences of the scalar
//!   loss `L = sum_k r_k y_k` (fixed random `r`, summed in f64) with step
//!   `H = 1e-2`, against the analytic gradient, within `|fd - an| <= ATOL + RTOL *
//!   max(|fd|, |an|)` (ATOL = 2e-3, RTOL = 1e-2: the f32 forward passes carry
//!   ~1e-6 of rounding noise in L, divided by 2H). Data stays more than H away from
//!   every kink, so the differences never straddle one.
//! - Paths through `sign`: the estimator's formula, and for binary convs and
//!   denses the exact "flip difference": `L` is linear in each binary value `b_j`,
//!   so `dL/db_j = (L(b) - L(b with b_j negated)) / (2 b_j)` exactly (integer
//!   sums), checked through an `identity` estimator that passes `dL/db` on.
//! - Eval-mode forward against the interpreter on every example and corpus model
//!   and hand-built graphs: bit-exact with the oracle kernels, within a stated
//!   tolerance with the fast ones.
//! - A few SGD steps on tiny models reduce their loss (deterministic seed).

use std::path::{Path, PathBuf};

use bnnc_ir::{ElemType, Graph, Model, Op, Tensor, TensorType, Weights};
use bnnc_train::autodiff::{GradConfig, GradError, Mode, ParamKind, TrainModel, WeightTransform};

// ---------------------------------------------------------------------------
// Helpers

const H: f32 = 1e-2;
const ATOL: f64 = 2e-3;
const RTOL: f64 = 1e-2;

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    fn f32(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }

    /// Uniform magnitude in [gap, 1] with a random sign: at least `gap` away from 0.
    fn away(&mut self, gap: f32) -> f32 {
        let m = self.f32(gap, 1.0);
        if self.next_u64() & 1 == 0 {
            m
        } else {
            -m
        }
    }

    fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as i64
    }
}

fn parse(src: &str) -> Graph {
    bnnc_ir::text::parse(src).unwrap_or_else(|d| panic!("{}\n{src}", d.render("t.ir")))
}

/// A model from text, with its `f32` weights drawn by `gen(key, index)` and its
/// other weights random values of their type.
fn model_with(src: &str, rng: &mut Rng, mut gen: impl FnMut(&str, &mut Rng) -> f32) -> Model {
    let g = parse(src);
    let mut w = Weights::new();
    for n in &g.nodes {
        if let Op::Weight { key, ty } = &n.op {
            if w.get(key).is_none() {
                let dims = ty.dims(1);
                let count: usize = dims.iter().product();
                let t = if ty.elem == ElemType::F32 {
                    Tensor::f32(dims, (0..count).map(|_| gen(key, rng)).collect())
                } else {
                    random_tensor(ty, 1, rng)
                };
                w.insert(key.clone(), t);
            }
        }
    }
    Model::from_graph(g, Some(&w), Path::new("t.ir")).unwrap_or_else(|e| panic!("{e}\n{src}"))
}

/// Weights uniform in magnitude [0.1, 1] (either sign), batch-norm variances
/// (keys starting with `var`) in [0.5, 1.5].
fn default_gen(key: &str, rng: &mut Rng) -> f32 {
    if key.starts_with("var") {
        rng.f32(0.5, 1.5)
    } else {
        rng.away(0.1)
    }
}

/// A random tensor of type `ty` at batch `batch`: f32 in [-2, 2], integer types
/// over their range (i32 in [-50, 50]).
fn random_tensor(ty: &TensorType, batch: usize, rng: &mut Rng) -> Tensor {
    let dims = ty.dims(batch);
    let count: usize = dims.iter().product();
    match ty.elem {
        ElemType::F32 => Tensor::f32(dims, (0..count).map(|_| rng.f32(-2.0, 2.0)).collect()),
        elem => {
            let (lo, hi) = match elem {
                ElemType::I32 => (-50, 50),
                ElemType::B1 => (0, 1),
                e => e.int_range().unwrap(),
            };
            let data = (0..count)
                .map(|_| {
                    let v = rng.int(lo, hi) as i32;
                    if elem == ElemType::B1 {
                        2 * v - 1
                    } else {
                        v
                    }
                })
                .collect();
            Tensor::int(elem, dims, data)
        }
    }
}

fn random_inputs(m: &Model, batch: usize, rng: &mut Rng) -> Vec<Tensor> {
    m.graph
        .inputs()
        .iter()
        .map(|&i| random_tensor(m.ty(i), batch, rng))
        .collect()
}

fn train_model(m: &Model) -> TrainModel {
    TrainModel::new(m, &GradConfig::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// `L = sum_k r_k y_k` over all outputs, in f64.
fn loss(outs: &[Tensor], r: &[Vec<f32>]) -> f64 {
    outs.iter()
        .zip(r)
        .map(|(o, r)| {
            o.as_f32()
                .unwrap()
                .iter()
                .zip(r)
                .map(|(&y, &w)| y as f64 * w as f64)
                .sum::<f64>()
        })
        .sum()
}

/// Random `r`, one per output element; runs forward and backward with it and
/// returns (r, L, grads of every param).
fn analytic(
    tm: &mut TrainModel,
    inputs: &[Tensor],
    mode: Mode,
    rng: &mut Rng,
) -> (Vec<Vec<f32>>, f64, Vec<Vec<f32>>) {
    let outs = tm.forward(inputs, mode).unwrap_or_else(|e| panic!("{e}"));
    let r: Vec<Vec<f32>> = outs
        .iter()
        .map(|o| (0..o.numel()).map(|_| rng.f32(-1.0, 1.0)).collect())
        .collect();
    tm.zero_grad();
    let seeds: Vec<Option<Vec<f32>>> = r.iter().cloned().map(Some).collect();
    tm.backward(&seeds, 0.5).unwrap_or_else(|e| panic!("{e}"));
    let grads = tm.params().iter().map(|p| p.grad.clone()).collect();
    let l = loss(&outs, &r);
    (r, l, grads)
}

/// Up to `max` element indices of `0..len`, spread over the range.
fn sample(len: usize, max: usize) -> Vec<usize> {
    if len <= max {
        (0..len).collect()
    } else {
        (0..max).map(|i| i * len / max).collect()
    }
}

/// Central-difference check of every param not named in `skip` (running
/// statistics in train mode must have zero gradient instead).
fn gradcheck(m: &Model, inputs: &[Tensor], mode: Mode, skip: &[&str], rng: &mut Rng) {
    gradcheck_cfg(m, &GradConfig::default(), inputs, mode, skip, rng)
}

fn gradcheck_cfg(
    m: &Model,
    cfg: &GradConfig,
    inputs: &[Tensor],
    mode: Mode,
    skip: &[&str],
    rng: &mut Rng,
) {
    let mut tm = TrainModel::new(m, cfg).unwrap_or_else(|e| panic!("{e}"));
    let (r, _, grads) = analytic(&mut tm, inputs, mode, rng);
    let mut checked = 0;
    for (pi, grad) in grads.iter().enumerate() {
        let (key, kind, len) = {
            let p = &tm.params()[pi];
            (p.key.clone(), p.kind, p.value.len())
        };
        let running = matches!(kind, ParamKind::RunningMean | ParamKind::RunningVar);
        if mode == Mode::Train && running {
            assert!(grad.iter().all(|&g| g == 0.0), "{key}: {:?}", grad);
            continue;
        }
        if skip.contains(&key.as_str()) {
            continue;
        }
        for j in sample(len, 24) {
            let orig = tm.params()[pi].value[j];
            let (up, down) = (orig + H, orig - H);
            tm.params_mut()[pi].value[j] = up;
            let lp = loss(&tm.forward(inputs, mode).unwrap(), &r);
            tm.params_mut()[pi].value[j] = down;
            let lm = loss(&tm.forward(inputs, mode).unwrap(), &r);
            tm.params_mut()[pi].value[j] = orig;
            let fd = (lp - lm) / (up - down) as f64;
            let an = grad[j] as f64;
            assert!(
                (fd - an).abs() <= ATOL + RTOL * fd.abs().max(an.abs()),
                "@{key}[{j}] ({mode:?}): finite difference {fd}, analytic {an}\n{}",
                bnnc_ir::text::print(&m.graph)
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "nothing was checked");
}

/// Model of `src` with default random weights, checked by [`gradcheck`] in both
/// modes (inputs drawn at batch 2).
fn check_both(src: &str, seed: u64) {
    let mut rng = Rng(seed);
    let m = model_with(src, &mut rng, default_gen);
    let inputs = random_inputs(&m, 2, &mut rng);
    gradcheck(&m, &inputs, Mode::Eval, &[], &mut rng);
    gradcheck(&m, &inputs, Mode::Train, &[], &mut rng);
}

// ---------------------------------------------------------------------------
// Finite differences, op by op (the operand under test is an f32 weight)

#[test]
fn dense_f32() {
    check_both(
        "model t\ninput x: f32[N, 5]\nw = @w: f32[3, 5]\ny = dense(x, w)\n\
         xw = @xw: f32[2, 5]\nz = dense(xw, w)\noutput y\noutput z\n",
        1,
    );
}

#[test]
fn conv2d_f32_geometries() {
    for (i, attrs) in [
        "stride=1",
        "stride=2",
        "dilation=2",
        "stride=2, padding=1",
        "padding=[2, 0, 1, 1]",
        "stride=[2, 1], dilation=[1, 2], padding=1, pad_value=0",
    ]
    .iter()
    .enumerate()
    {
        let src = format!(
            "model t\nx = @x: f32[2, 6, 7, 3]\nw = @w: f32[4, 3, 3, 3]\n\
             y = conv2d(x, w, {attrs})\noutput y\n"
        );
        check_both(&src, 10 + i as u64);
    }
    // Groups (2 groups of 2 input channels, 3 outputs each) and depthwise.
    check_both(
        "model t\nx = @x: f32[2, 5, 5, 4]\nw = @w: f32[6, 3, 3, 2]\n\
         y = conv2d(x, w, groups=2, padding=1)\noutput y\n",
        20,
    );
    check_both(
        "model t\nx = @x: f32[2, 5, 5, 4]\nw = @w: f32[4, 3, 3, 1]\n\
         y = conv2d(x, w, groups=4, padding=1, stride=2)\noutput y\n",
        21,
    );
}

#[test]
fn batchnorm_train_and_eval() {
    // Over a weight (4-d, C = 3) and over a dense accumulator (2-d, C = 4).
    let src = "model t\nx = @x: f32[2, 3, 2, 3]\ngamma = @gamma: f32[3]\nbeta = @beta: f32[3]\n\
               mean = @mean: f32[3]\nvar = @var: f32[3]\n\
               y = batchnorm(x, gamma, beta, mean, var, eps=0.001)\noutput y\n";
    check_both(src, 30);
    let src = "model t\ninput x: f32[N, 5]\nw = @w: f32[4, 5]\nh = dense(x, w)\n\
               g = @g: f32[4]\nb = @b: f32[4]\nmean = @mean: f32[4]\nvar = @var: f32[4]\n\
               y = batchnorm(h, g, b, mean, var, eps=0.00001)\noutput y\n";
    let mut rng = Rng(31);
    let m = model_with(src, &mut rng, default_gen);
    let inputs = random_inputs(&m, 6, &mut rng);
    gradcheck(&m, &inputs, Mode::Train, &[], &mut rng);
    gradcheck(&m, &inputs, Mode::Eval, &[], &mut rng);
}

#[test]
fn batchnorm_running_statistics() {
    let src = "model t\ninput x: f32[N, 2, 3]\ngamma = @gamma: f32[3]\nbeta = @beta: f32[3]\n\
               mean = @mean: f32[3]\nvar = @var: f32[3]\n\
               y = batchnorm(x, gamma, beta, mean, var, eps=0.001)\noutput y\n";
    let mut rng = Rng(32);
    let m = model_with(src, &mut rng, default_gen);
    let x = random_inputs(&m, 2, &mut rng);
    let cfg = GradConfig {
        bn_momentum: 0.25,
        ..GradConfig::default()
    };
    let mut tm = TrainModel::new(&m, &cfg).unwrap();
    let kinds: Vec<ParamKind> = tm.params().iter().map(|p| p.kind).collect();
    assert_eq!(
        kinds,
        [
            ParamKind::Float,
            ParamKind::Float,
            ParamKind::RunningMean,
            ParamKind::RunningVar
        ]
    );
    let before: Vec<Vec<f32>> = tm.params().iter().map(|p| p.value.clone()).collect();
    let y = tm.forward(&x, Mode::Train).unwrap();
    let xv = x[0].as_f32().unwrap();
    let yv = y[0].as_f32().unwrap();
    for c in 0..3 {
        let col: Vec<f64> = xv.iter().skip(c).step_by(3).map(|&v| v as f64).collect();
        let m = col.len() as f64;
        let mean = col.iter().sum::<f64>() / m;
        let var = col.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / m;
        let want_mean = 0.75 * before[2][c] as f64 + 0.25 * mean;
        let want_var = 0.75 * before[3][c] as f64 + 0.25 * var * m / (m - 1.0);
        assert!((tm.params()[2].value[c] as f64 - want_mean).abs() < 1e-5);
        assert!((tm.params()[3].value[c] as f64 - want_var).abs() < 1e-5);
        // The output is normalised with the biased batch variance.
        for (k, &xe) in col.iter().enumerate() {
            let want =
                (xe - mean) / (var + 0.001).sqrt() * before[0][c] as f64 + before[1][c] as f64;
            assert!((yv[k * 3 + c] as f64 - want).abs() < 1e-4);
        }
    }
    // Eval mode changes nothing.
    let now: Vec<Vec<f32>> = tm.params().iter().map(|p| p.value.clone()).collect();
    tm.forward(&x, Mode::Eval).unwrap();
    let after: Vec<Vec<f32>> = tm.params().iter().map(|p| p.value.clone()).collect();
    assert_eq!(now, after);
}

#[test]
fn broadcasting_arithmetic() {
    let shapes = [
        ("[2, 3, 4]", "[4]"),
        ("[2, 3, 4]", "[3, 1]"),
        ("[2, 1, 4]", "[3, 1]"),
        ("[1]", "[2, 3]"),
        ("[2, 3]", "[2, 3]"),
    ];
    for (i, (a, b)) in shapes.iter().enumerate() {
        for op in ["add", "sub", "mul"] {
            let src = format!(
                "model t\na = @a: f32{a}\nb = @b: f32{b}\ny = {op}(a, b)\nz = {op}(b, a)\n\
                 output y\noutput z\n"
            );
            check_both(&src, 40 + i as u64);
        }
    }
    // The same operand twice, and a batched input against a weight.
    check_both(
        "model t\na = @a: f32[3, 2]\ny = mul(a, a)\nz = sub(a, a)\noutput y\noutput z\n",
        48,
    );
    check_both(
        "model t\ninput x: f32[N, 2, 3]\nb = @b: f32[2, 1]\ny = mul(x, b)\noutput y\n",
        49,
    );
}

#[test]
fn activations() {
    check_both(
        "model t\nx = @x: f32[3, 4]\nalpha = @alpha: f32[4]\ngamma = @gamma: f32[4]\n\
         beta = @beta: f32[4]\nzeta = @zeta: f32[4]\n\
         r = relu(x)\np = prelu(x, alpha)\nq = rprelu(x, gamma, beta, zeta)\n\
         h = hardtanh(x)\nc = clip(x, min=-0.35, max=0.55)\ns = sigmoid(x)\n\
         output r\noutput p\noutput q\noutput h\noutput c\noutput s\n",
        50,
    );
}

#[test]
fn large_tensors_across_parallel_blocks() {
    // 3 x 64 x 64 x 2 = 24576 elements: more than one block of the parallel
    // loops (16384 elements), for maps and per-channel reductions alike.
    let src = "model t\nx = @x: f32[3, 64, 64, 2]\ngamma = @gamma: f32[2]\nbeta = @beta: f32[2]\n\
               mean = @mean: f32[2]\nvar = @var: f32[2]\n\
               n = batchnorm(x, gamma, beta, mean, var, eps=0.001)\n\
               pg = @pg: f32[2]\npb = @pb: f32[2]\npz = @pz: f32[2]\n\
               r = rprelu(n, pg, pb, pz)\nalpha = @alpha: f32[2]\np = prelu(x, alpha)\n\
               s = @s: f32[64, 2]\nm = mul(r, s)\na = add(s, p)\n\
               ap = avgpool2d(m, kernel=3, stride=2, padding=1)\noutput m\noutput a\noutput ap\n";
    let mut rng = Rng(63);
    // rprelu's negative slope 1 removes its kink: a per-channel parameter shifts
    // thousands of values, and some would cross a kink within the step H.
    let m = model_with(src, &mut rng, |key, r| {
        if key == "pb" {
            1.0
        } else {
            default_gen(key, r)
        }
    });
    gradcheck(&m, &[], Mode::Train, &[], &mut rng);
    gradcheck(&m, &[], Mode::Eval, &[], &mut rng);
}

#[test]
fn one_sided_derivatives_at_kinks() {
    // relu and prelu take the x <= 0 branch at 0; clip and hardtanh pass the
    // gradient on the closed interval [min, max].
    let src = "model t\nx = @x: f32[7]\nalpha = @alpha: f32[7]\nr = relu(x)\n\
               p = prelu(x, alpha)\nc = clip(x, min=-0.5, max=0.5)\nh = hardtanh(x)\n\
               output r\noutput p\noutput c\noutput h\n";
    let mut xs = [0.0f32, -0.5, 0.5, -1.0, 1.0, 0.75, -2.0].into_iter();
    let m = model_with(src, &mut Rng(62), |key, _| {
        if key == "x" {
            xs.next().unwrap()
        } else {
            0.25
        }
    });
    let mut tm = train_model(&m);
    tm.forward(&[], Mode::Eval).unwrap();
    let one = Some(vec![1.0f32; 7]);
    let none = None;
    let grads = |tm: &mut TrainModel, seeds: [Option<Vec<f32>>; 4]| {
        tm.zero_grad();
        tm.backward(&seeds, 0.0).unwrap();
        tm.params()[0].grad.clone()
    };
    let r = grads(
        &mut tm,
        [one.clone(), none.clone(), none.clone(), none.clone()],
    );
    assert_eq!(r, [0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0]);
    let p = grads(
        &mut tm,
        [none.clone(), one.clone(), none.clone(), none.clone()],
    );
    assert_eq!(p, [0.25, 0.25, 1.0, 0.25, 1.0, 1.0, 0.25]);
    let c = grads(
        &mut tm,
        [none.clone(), none.clone(), one.clone(), none.clone()],
    );
    assert_eq!(c, [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
    let h = grads(
        &mut tm,
        [none.clone(), none.clone(), none.clone(), one.clone()],
    );
    assert_eq!(h, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]);
}

#[test]
fn pooling() {
    let src = "model t\nx = @x: f32[2, 5, 6, 3]\n\
               m1 = maxpool2d(x, kernel=2, stride=2)\n\
               m2 = maxpool2d(x, kernel=3, stride=1, padding=1)\n\
               a1 = avgpool2d(x, kernel=3, stride=2, padding=1)\n\
               a2 = avgpool2d(x, kernel=[2, 3], stride=[1, 2])\n\
               g = global_avgpool(x)\n\
               output m1\noutput m2\noutput a1\noutput a2\noutput g\n";
    let mut rng = Rng(60);
    // Distinct values per channel (a shuffled grid), so no maximum ties.
    let mut vals: Vec<f32> = (0..180).map(|i| i as f32 * 0.05 - 4.5).collect();
    for i in (1..vals.len()).rev() {
        vals.swap(i, rng.int(0, i as i64) as usize);
    }
    let mut it = vals.into_iter();
    let m = model_with(src, &mut rng, |_, _| it.next().unwrap());
    gradcheck(&m, &[], Mode::Eval, &[], &mut rng);
}

#[test]
fn maxpool_ties_go_to_the_first_maximum() {
    // One window of four equal values: the whole gradient goes to the first.
    let src = "model t\nx = @x: f32[1, 2, 2, 1]\ny = maxpool2d(x, kernel=2)\noutput y\n";
    let m = model_with(src, &mut Rng(61), |_, _| 0.5);
    let mut tm = train_model(&m);
    tm.forward(&[], Mode::Eval).unwrap();
    tm.backward(&[Some(vec![3.0])], 0.0).unwrap();
    assert_eq!(tm.params()[0].grad, [3.0, 0.0, 0.0, 0.0]);
}

#[test]
fn data_movement_and_softmax() {
    check_both(
        "model t\na = @a: f32[2, 3, 4]\nb = @b: f32[2, 3, 2]\nc = @c: f32[2, 1, 4]\n\
         k1 = concat(a, b, axis=-1)\nk2 = concat(a, c, a, axis=1)\n\
         r = replicate(b, times=3)\ns = channel_shuffle(a, groups=2)\n\
         f = flatten(a)\nre = reshape(a, shape=[4, 6])\n\
         sm = softmax(a, axis=-1)\nsm1 = softmax(a, axis=1)\n\
         output k1\noutput k2\noutput r\noutput s\noutput f\noutput re\noutput sm\noutput sm1\n",
        70,
    );
    check_both(
        "model t\nx = @x: f32[2, 2, 2, 6]\nr = replicate(x, times=2)\n\
         s = channel_shuffle(r, groups=3)\nw = @w: f32[2, 1, 1, 12]\ny = conv2d(s, w)\n\
         output y\n",
        71,
    );
}

#[test]
fn chain_through_many_ops() {
    // A small float network: conv, batchnorm, rprelu, maxpool, residual add,
    // global pool, dense, softmax. Weights on the 0.1 grid keep kinks away.
    let src = "model t\ninput x: f32[N, 6, 6, 2]\nw0 = @w0: f32[4, 3, 3, 2]\n\
               c0 = conv2d(x, w0, padding=1)\ng0 = @g0: f32[4]\nb0 = @b0: f32[4]\n\
               m0 = @m0: f32[4]\nvar0 = @var0: f32[4]\n\
               n0 = batchnorm(c0, g0, b0, m0, var0, eps=0.001)\n\
               pg = @pg: f32[4]\npb = @pb: f32[4]\npz = @pz: f32[4]\n\
               a0 = rprelu(n0, pg, pb, pz)\nw1 = @w1: f32[4, 3, 3, 4]\n\
               c1 = conv2d(a0, w1, padding=1, stride=2)\np0 = avgpool2d(a0, kernel=2)\n\
               r = add(c1, p0)\ns = sigmoid(r)\ngp = global_avgpool(s)\n\
               wd = @wd: f32[3, 4]\nd = dense(gp, wd)\nbias = @bias: f32[3]\n\
               lo = add(d, bias)\nsm = softmax(lo, axis=-1)\noutput sm\noutput lo\n";
    let mut rng = Rng(80);
    let m = model_with(src, &mut rng, default_gen);
    let inputs = random_inputs(&m, 3, &mut rng);
    gradcheck(&m, &inputs, Mode::Train, &[], &mut rng);
    gradcheck(&m, &inputs, Mode::Eval, &[], &mut rng);
}

// ---------------------------------------------------------------------------
// sign: the estimator's formula, and exact flip differences through binary ops

#[test]
fn sign_ste_matches_the_estimator_formula() {
    for (attr, clip) in [
        ("", Some(1.0f32)),
        (", estimator=ste, clip=0.5", Some(0.5)),
        (", estimator=identity", None),
    ] {
        let src = format!("model t\nw = @w: f32[4, 6]\ny = sign(w{attr})\noutput y\n");
        let mut rng = Rng(90);
        let m = model_with(&src, &mut rng, |_, r| r.f32(-2.0, 2.0));
        let mut tm = train_model(&m);
        assert_eq!(tm.params()[0].kind, ParamKind::Latent);
        let y = tm.forward(&[], Mode::Train).unwrap();
        let w = tm.params()[0].value.clone();
        let want_y: Vec<f32> = w
            .iter()
            .map(|&v| if v < 0.0 { -1.0 } else { 1.0 })
            .collect();
        assert_eq!(y[0].as_f32().unwrap(), &want_y[..]);
        let r: Vec<f32> = (0..24).map(|_| rng.f32(-1.0, 1.0)).collect();
        tm.backward(&[Some(r.clone())], 0.3).unwrap();
        for ((&g, &wv), &rv) in tm.params()[0].grad.iter().zip(&w).zip(&r) {
            let want = match clip {
                Some(c) if wv.abs() > c => 0.0,
                _ => rv,
            };
            assert_eq!(g, want, "{attr}: w = {wv}");
        }
    }
}

#[test]
fn sign_backward_is_each_estimators_derivative() {
    // Every estimator the IR names: dL/dw = r * derivative(w, progress), the
    // estimator's own formula; learnable estimators also get parameter gradients.
    let attrs = [
        "estimator=ste, clip=0.5",
        "estimator=identity",
        "estimator=approx_sign",
        "estimator=swish_sign, beta=5",
        "estimator=dte",
        "estimator=fda",
        "estimator=fda, noise=4",
        "estimator=learned, hidden=4",
    ];
    for (i, attr) in attrs.iter().enumerate() {
        let src = format!("model t\nw = @w: f32[3, 5]\ny = sign(w, {attr})\noutput y\n");
        let mut rng = Rng(95 + i as u64);
        let m = model_with(&src, &mut rng, |_, r| r.f32(-2.0, 2.0));
        let mut tm = train_model(&m);
        tm.forward(&[], Mode::Train).unwrap();
        let r: Vec<f32> = (0..15).map(|_| rng.f32(-1.0, 1.0)).collect();
        let progress = 0.3;
        tm.backward(&[Some(r.clone())], progress).unwrap();
        let est = tm.estimator("y").unwrap().clone();
        let w = tm.params()[0].value.clone();
        for j in 0..15 {
            let want = r[j] * est.derivative(w[j], progress);
            let got = tm.params()[0].grad[j];
            assert!(
                (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                "{attr}: w = {}: got {got}, want {want}",
                w[j]
            );
        }
        let learnable = attr.contains("learned") || attr.contains("noise");
        let names: Vec<String> = tm.estimator_params().into_iter().map(|(n, _)| n).collect();
        assert_eq!(!names.is_empty(), learnable, "{attr}: {names:?}");
        assert!(names.iter().all(|n| n.starts_with("y.")), "{names:?}");
        if learnable {
            let any = |tm: &mut TrainModel| {
                tm.estimator_params()
                    .iter()
                    .any(|(_, p)| p.grad.iter().any(|&g| g != 0.0))
            };
            assert!(any(&mut tm), "{attr}: no estimator gradient");
            tm.zero_grad();
            assert!(!any(&mut tm), "{attr}: zero_grad left estimator gradients");
        }
    }
}

#[test]
fn sign_forward_edge_values() {
    // 0, -0.0 give +1 (NaN cannot be stored in a test weight portably; the
    // interpreter comparison covers it through the op's definition).
    let src = "model t\nw = @w: f32[3]\ny = sign(w)\noutput y\n";
    let mut vals = [0.0f32, -0.0, -1e-30].into_iter();
    let m = model_with(src, &mut Rng(91), |_, _| vals.next().unwrap());
    let mut tm = train_model(&m);
    let y = tm.forward(&[], Mode::Eval).unwrap();
    assert_eq!(y[0].as_f32().unwrap(), [1.0, 1.0, -1.0]);
}

/// Checks the gradient of every latent param (through an `identity` sign) by
/// flip differences: negating latent `w_j` negates `b_j = sign(w_j)`, and with
/// `L` linear in `b_j`, `dL/db_j = (L - L_flipped) / (2 b_j)` exactly.
fn flipcheck(m: &Model, inputs: &[Tensor], rng: &mut Rng) {
    let mut tm = train_model(m);
    let (r, l0, grads) = analytic(&mut tm, inputs, Mode::Eval, rng);
    let mut checked = 0;
    for (pi, grad) in grads.iter().enumerate() {
        if tm.params()[pi].kind != ParamKind::Latent {
            continue;
        }
        let key = tm.params()[pi].key.clone();
        for j in sample(tm.params()[pi].value.len(), 40) {
            let orig = tm.params()[pi].value[j];
            let b = if orig < 0.0 { -1.0 } else { 1.0 };
            tm.params_mut()[pi].value[j] = -orig;
            let l1 = loss(&tm.forward(inputs, Mode::Eval).unwrap(), &r);
            tm.params_mut()[pi].value[j] = orig;
            let want = (l0 - l1) / (2.0 * b);
            let an = grad[j] as f64;
            assert!(
                (want - an).abs() <= 1e-4 * (1.0 + an.abs()),
                "@{key}[{j}]: flip difference {want}, analytic {an}"
            );
            checked += 1;
        }
    }
    assert!(checked > 0);
}

#[test]
fn binary_conv_each_pad_value_stride_dilation_groups() {
    let cases = [
        "padding=1, pad_value=+1",
        "padding=1, pad_value=-1",
        "padding=1, pad_value=0",
        "padding=[0, 2, 1, 0], pad_value=-1, stride=2",
        "padding=2, pad_value=+1, dilation=2",
        "padding=1, pad_value=-1, groups=2",
        "stride=[1, 2], dilation=[2, 1]",
    ];
    for (i, attrs) in cases.iter().enumerate() {
        let wc = if attrs.contains("groups=2") { 2 } else { 4 };
        let src = format!(
            "model t\nxl = @xl: f32[2, 5, 6, 4]\nxb = sign(xl, estimator=identity)\n\
             wl = @wl: f32[6, 3, 3, {wc}]\nwb = sign(wl, estimator=identity)\n\
             y = conv2d(xb, wb, {attrs})\nscale = [0.5]: f32[1]\nd = dequantize(y, scale=0.25, zero_point=3)\n\
             z = mul(d, scale)\noutput y\noutput z\n"
        );
        let mut rng = Rng(100 + i as u64);
        let m = model_with(&src, &mut rng, |_, r| r.away(0.1));
        flipcheck(&m, &[], &mut rng);
    }
}

#[test]
fn binary_dense_and_replicate() {
    let src = "model t\nxl = @xl: f32[3, 5]\nxb = sign(xl, estimator=identity)\n\
               xr = replicate(xb, times=2)\nwl = @wl: f32[4, 10]\nwb = sign(wl, estimator=identity)\n\
               y = dense(xr, wb)\nfl = @fl: f32[3, 4]\nfb = sign(fl, estimator=identity)\n\
               x2 = @x2: f32[3, 4]\nz = dense(x2, fb)\noutput y\noutput z\n";
    let mut rng = Rng(110);
    let m = model_with(src, &mut rng, |_, r| r.away(0.1));
    flipcheck(&m, &[], &mut rng);
    // The float operand of the f32 x b1 dense by finite differences.
    gradcheck(&m, &[], Mode::Eval, &["xl", "wl", "fl"], &mut rng);
}

#[test]
fn latent_weight_gradient_is_the_masked_float_gradient() {
    // dense(x, sign(w)) with STE clip 1: dL/dw = 1{|w| <= 1} (dy^T x).
    let src = "model t\ninput x: f32[N, 4]\nw = @w: f32[3, 4]\nwb = sign(w)\n\
               y = dense(x, wb)\noutput y\n";
    let mut rng = Rng(120);
    let m = model_with(src, &mut rng, |_, r| r.f32(-1.5, 1.5));
    let x = random_inputs(&m, 5, &mut rng);
    let mut tm = train_model(&m);
    let (r, _, grads) = analytic(&mut tm, &x, Mode::Train, &mut rng);
    let (xv, w) = (x[0].as_f32().unwrap(), &tm.params()[0].value);
    for o in 0..3 {
        for k in 0..4 {
            let full: f32 = (0..5).map(|n| r[0][n * 3 + o] * xv[n * 4 + k]).sum();
            let want = if w[o * 4 + k].abs() <= 1.0 { full } else { 0.0 };
            assert!((grads[0][o * 4 + k] - want).abs() < 1e-5);
        }
    }
}

// ---------------------------------------------------------------------------
// Weight transforms

#[test]
fn standardize_transform_gradient() {
    let src = "model t\ninput x: f32[N, 4, 4, 3]\nw = @w: f32[4, 2, 2, 3]\n\
               y = conv2d(x, w)\noutput y\n";
    let mut rng = Rng(130);
    let m = model_with(src, &mut rng, default_gen);
    let x = random_inputs(&m, 2, &mut rng);
    let cfg = GradConfig {
        transforms: vec![("w".into(), WeightTransform::Standardize { eps: 1e-5 })],
        ..GradConfig::default()
    };
    gradcheck_cfg(&m, &cfg, &x, Mode::Eval, &[], &mut rng);
    // The model uses, and saves, the standardised weight: each output channel
    // has mean 0 and variance 1; reloading it computes the same outputs.
    let mut tm = TrainModel::new(&m, &cfg).unwrap();
    let y = tm.forward(&x, Mode::Eval).unwrap();
    let saved = tm.weights();
    let ws = saved.get("w").unwrap().as_f32().unwrap().to_vec();
    for row in ws.chunks(12) {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / 12.0;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / 12.0;
        assert!(
            mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-4,
            "{mean} {var}"
        );
    }
    let m2 = Model::from_graph(m.graph.clone(), Some(&saved), Path::new("t.ir")).unwrap();
    let y2 = bnnc_runtime::run(&m2, &x).unwrap();
    let (a, b) = (y[0].as_f32().unwrap(), y2[0].as_f32().unwrap());
    assert!(a.iter().zip(b).all(|(p, q)| (p - q).abs() < 1e-4));
}

#[test]
fn xnor_scale_transform() {
    // y = dense(x, w) * alpha with alpha_o = mean_i |w_o,i| derived from w:
    // the gradient of w has both paths.
    let src = "model t\ninput x: f32[N, 5]\nw = @w: f32[3, 5]\ny0 = dense(x, w)\n\
               alpha = @alpha: f32[3]\ny = mul(y0, alpha)\noutput y\n";
    let mut rng = Rng(140);
    let m = model_with(src, &mut rng, default_gen);
    let x = random_inputs(&m, 2, &mut rng);
    let cfg = GradConfig {
        transforms: vec![(
            "alpha".into(),
            WeightTransform::XnorScale { of: "w".into() },
        )],
        ..GradConfig::default()
    };
    gradcheck_cfg(&m, &cfg, &x, Mode::Eval, &[], &mut rng);
    let tm = TrainModel::new(&m, &cfg).unwrap();
    let keys: Vec<&str> = tm.params().iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["w"], "a derived key is not a parameter");
    let w = &tm.params()[0].value;
    let alpha = tm
        .weights()
        .get("alpha")
        .unwrap()
        .as_f32()
        .unwrap()
        .to_vec();
    for o in 0..3 {
        let want = w[o * 5..o * 5 + 5].iter().map(|v| v.abs()).sum::<f32>() / 5.0;
        assert!((alpha[o] - want).abs() < 1e-6);
    }
    // Composed with a standardised latent weight behind a sign (XNOR-Net layer
    // with IR-Net balancing): trains and derives alpha from the standardised value.
    let src = "model t\ninput x: f32[N, 4, 4, 2]\nxb = sign(x)\nw = @w: f32[3, 3, 3, 2]\n\
               wb = sign(w)\nacc = conv2d(xb, wb, padding=1, pad_value=0)\n\
               alpha = @alpha: f32[3]\ny = mul(acc, alpha)\noutput y\n";
    let m = model_with(src, &mut rng, default_gen);
    let cfg = GradConfig {
        transforms: vec![
            (
                "alpha".into(),
                WeightTransform::XnorScale { of: "w".into() },
            ),
            ("w".into(), WeightTransform::Standardize { eps: 0.0 }),
        ],
        ..GradConfig::default()
    };
    let mut tm = TrainModel::new(&m, &cfg).unwrap();
    let x = random_inputs(&m, 2, &mut rng);
    tm.forward(&x, Mode::Train).unwrap();
    let alpha = tm
        .weights()
        .get("alpha")
        .unwrap()
        .as_f32()
        .unwrap()
        .to_vec();
    let ws = tm.weights().get("w").unwrap().as_f32().unwrap().to_vec();
    for o in 0..3 {
        let want = ws[o * 18..o * 18 + 18].iter().map(|v| v.abs()).sum::<f32>() / 18.0;
        assert!((alpha[o] - want).abs() < 1e-5);
    }
}

#[test]
fn transform_errors() {
    let src = "model t\nw = @w: f32[3, 5]\nalpha = @alpha: f32[2]\nb = @b: b1[3]\n\
               y = sign(w)\noutput y\noutput alpha\noutput b\n";
    let m = model_with(src, &mut Rng(150), default_gen);
    let bad = |transforms: Vec<(String, WeightTransform)>| {
        let cfg = GradConfig {
            transforms,
            ..GradConfig::default()
        };
        TrainModel::new(&m, &cfg).err().map(|e| e.to_string())
    };
    let e = bad(vec![(
        "nope".into(),
        WeightTransform::Standardize { eps: 0.0 },
    )])
    .unwrap();
    assert!(e.contains("`@nope`"), "{e}");
    let e = bad(vec![(
        "b".into(),
        WeightTransform::Standardize { eps: 0.0 },
    )])
    .unwrap();
    assert!(e.contains("`@b`"), "{e}");
    let xs = |of: &str| WeightTransform::XnorScale { of: of.into() };
    let e = bad(vec![("alpha".into(), xs("w"))]).unwrap();
    assert!(
        e.contains("`@alpha`") && e.contains("3 output channels"),
        "{e}"
    );
    let e = bad(vec![("alpha".into(), xs("missing"))]).unwrap();
    assert!(e.contains("`@missing`"), "{e}");
    let e = bad(vec![
        ("w".into(), WeightTransform::Standardize { eps: 0.0 }),
        ("w".into(), WeightTransform::Standardize { eps: 1.0 }),
    ])
    .unwrap();
    assert!(e.contains("more than one"), "{e}");
    let e = bad(vec![(
        "w".into(),
        WeightTransform::Standardize { eps: -1.0 },
    )])
    .unwrap();
    assert!(e.contains("eps"), "{e}");
}

// ---------------------------------------------------------------------------
// Errors

#[test]
fn non_differentiable_ops_name_the_node() {
    let src = "model t\ninput x: f32[N, 4]\nw = @w: f32[3, 4]\ny = dense(x, w)\n\
               q = quantize(y, to=u4, scale=0.5)\nd = dequantize(q, scale=0.5)\n\
               am = argmax(y, axis=-1)\noutput y\noutput d\noutput am\n";
    let mut rng = Rng(160);
    let m = model_with(src, &mut rng, default_gen);
    let x = random_inputs(&m, 2, &mut rng);
    let mut tm = train_model(&m);
    let outs = tm.forward(&x, Mode::Train).unwrap();
    // Outputs not in the loss are never differentiated.
    tm.backward(&[Some(vec![1.0; 6]), None, None], 0.0).unwrap();
    let g1 = tm.params()[0].grad.clone();
    assert!(g1.iter().any(|&g| g != 0.0));
    // Through quantize: an error naming it, and nothing accumulated.
    let e = tm
        .backward(&[Some(vec![1.0; 6]), Some(vec![1.0; 6]), None], 0.0)
        .unwrap_err();
    assert!(matches!(&e, GradError::NotDifferentiable { node, op: "quantize", .. } if node == "q"));
    assert!(e.to_string().contains("`q` (quantize)"), "{e}");
    assert_eq!(tm.params()[0].grad, g1);
    let e = tm
        .backward(&[None, None, Some(vec![1.0; 2])], 0.0)
        .unwrap_err();
    assert!(e.to_string().contains("`am` (argmax)"), "{e}");
    // argmax equals the interpreter's.
    let want = bnnc_runtime::run(&m, &x).unwrap();
    assert_eq!(outs[2].as_f32().unwrap(), &want[2].to_f32_vec()[..]);
}

#[test]
fn usage_errors() {
    let src = "model t\ninput x: f32[N, 3]\ng = @g: f32[3]\nb = @b: f32[3]\nmean = @mean: f32[3]\n\
               var = @var: f32[3]\ny = batchnorm(x, g, b, mean, var, eps=0.001)\noutput y\n";
    let mut rng = Rng(170);
    let m = model_with(src, &mut rng, default_gen);
    let mut tm = train_model(&m);
    assert!(matches!(
        tm.backward(&[None], 0.0),
        Err(GradError::NoForward)
    ));
    let one = random_inputs(&m, 1, &mut rng);
    let e = tm.forward(&one, Mode::Train).unwrap_err();
    assert!(
        matches!(&e, GradError::BatchTooSmall { node, count: 1 } if node == "y"),
        "{e}"
    );
    tm.forward(&one, Mode::Eval).unwrap();
    assert!(matches!(
        tm.backward(&[], 0.0),
        Err(GradError::OutputGradCount {
            expected: 1,
            found: 0
        })
    ));
    assert!(matches!(
        tm.backward(&[Some(vec![0.0; 2])], 0.0),
        Err(GradError::OutputGradLen {
            expected: 3,
            found: 2,
            ..
        })
    ));
    assert!(matches!(
        tm.backward(&[None], 1.5),
        Err(GradError::Progress(_))
    ));
    assert!(matches!(
        tm.forward(&[], Mode::Eval),
        Err(GradError::Input(_))
    ));
    tm.params_mut()[0].value.push(1.0);
    let e = tm.forward(&one, Mode::Eval).unwrap_err();
    assert!(e.to_string().contains("`@g`"), "{e}");
    // A running statistic with another use.
    let src = "model t\ninput x: f32[N, 3]\ng = @g: f32[3]\nb = @b: f32[3]\n\
               y = batchnorm(x, g, b, b, g, eps=0.001)\noutput y\n";
    let m = model_with(src, &mut rng, |_, r| r.f32(0.5, 1.0));
    let e = TrainModel::new(&m, &GradConfig::default()).err().unwrap();
    assert!(e.to_string().contains("running statistic"), "{e}");
    let bad_momentum = GradConfig {
        bn_momentum: 2.0,
        ..GradConfig::default()
    };
    assert!(TrainModel::new(&m, &bad_momentum).is_err());
}

#[test]
fn backward_accumulates_and_zero_grad_clears() {
    let src = "model t\ninput x: f32[N, 4]\nw = @w: f32[3, 4]\nwb = sign(w)\ny = dense(x, wb)\n\
               v = @v: f32[3, 4]\nz = dense(x, v)\noutput y\noutput z\n";
    let mut rng = Rng(180);
    let m = model_with(src, &mut rng, default_gen);
    let x = random_inputs(&m, 2, &mut rng);
    let mut tm = train_model(&m);
    let kinds: Vec<ParamKind> = tm.params().iter().map(|p| p.kind).collect();
    assert_eq!(kinds, [ParamKind::Latent, ParamKind::Float]);
    tm.forward(&x, Mode::Train).unwrap();
    let seeds = [Some(vec![0.5; 6]), Some(vec![-1.0; 6])];
    tm.backward(&seeds, 0.0).unwrap();
    let once: Vec<Vec<f32>> = tm.params().iter().map(|p| p.grad.clone()).collect();
    tm.backward(&seeds, 0.0).unwrap();
    for (p, g) in tm.params().iter().zip(&once) {
        let twice: Vec<f32> = g.iter().map(|v| 2.0 * v).collect();
        assert_eq!(p.grad, twice);
    }
    tm.zero_grad();
    assert!(tm.params().iter().all(|p| p.grad.iter().all(|&g| g == 0.0)));
    assert!(tm.estimator_params().is_empty(), "STE has no parameters");
}

// ---------------------------------------------------------------------------
// Eval forward against the interpreter

fn ir_files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ir"))
        .collect();
    v.sort();
    v
}

/// Compares eval-mode outputs with `bnnc_runtime::run`: bit for bit with the
/// oracle kernels; with the fast kernels within `tol * (1 + |want|)` on f32
/// outputs (summation order) and exactly on integer ones.
fn compare_with_interpreter(m: &Model, label: &str, batch: usize, rng: &mut Rng) {
    let inputs = random_inputs(m, batch, rng);
    let want = bnnc_runtime::run(m, &inputs).unwrap_or_else(|e| panic!("{label}: {e}"));
    for oracle in [true, false] {
        let cfg = GradConfig {
            oracle_kernels: oracle,
            ..GradConfig::default()
        };
        let mut tm = TrainModel::new(m, &cfg).unwrap_or_else(|e| panic!("{label}: {e}"));
        let got = tm
            .forward(&inputs, Mode::Eval)
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(got.len(), want.len());
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.dims, w.dims, "{label} output {k}");
            let (gv, wv) = (g.as_f32().unwrap(), w.to_f32_vec());
            for (i, (&a, &b)) in gv.iter().zip(&wv).enumerate() {
                let ok = if oracle || w.elem != ElemType::F32 {
                    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
                } else {
                    (a - b).abs() <= 1e-4 * (1.0 + b.abs()) || (a.is_nan() && b.is_nan())
                };
                assert!(
                    ok,
                    "{label} output {k} element {i} (oracle kernels: {oracle}): got {a}, interpreter {b}"
                );
            }
        }
    }
}

#[test]
fn eval_matches_interpreter_on_examples_and_corpus() {
    let mut rng = Rng(200);
    let mut files = ir_files("../examples");
    files.extend(ir_files("../tests/corpus"));
    assert!(files.len() >= 17, "{files:?}");
    for f in files {
        let m = Model::load(&f).unwrap_or_else(|e| panic!("{e}"));
        compare_with_interpreter(&m, &f.display().to_string(), 2, &mut rng);
    }
}

#[test]
fn eval_matches_interpreter_on_hand_built_graphs() {
    let srcs = [
        // Integer paths, quantization and thresholds.
        "model t\ninput x: f32[N, 4, 4, 6]\ninput q: u3[N, 4, 4, 6]\nxb = sign(x)\n\
         w = @w: f32[5, 3, 3, 6]\nwb = sign(w)\nacc = conv2d(xb, wb, padding=1, pad_value=-1)\n\
         r = relu(acc)\nt = [3]: i32[1, 1]\nth = threshold(acc, t)\n\
         mp = maxpool2d(th, kernel=2)\nqz = quantize(x, to=i4, scale=0.25, zero_point=1)\n\
         dq = dequantize(qz, scale=0.5, zero_point=-2)\nte = ternarize(x, delta=0.5)\n\
         wt = @wt: ternary[5, 1, 1, 6]\nct = conv2d(te, wt)\nam = argmax(x, axis=-1)\n\
         qa = add(q, q)\nqm = mul(te, q)\n\
         g = @g: f32[5]\nb = @b: f32[5]\nmean = @mean: f32[5]\nvar = @var: f32[5]\n\
         bn = batchnorm(acc, g, b, mean, var, eps=0.01)\n\
         output r\noutput th\noutput mp\noutput dq\noutput ct\noutput am\noutput qa\n\
         output bn\noutput qm\n",
        // Float ops on a batched input with broadcasting and integer operands.
        "model t\ninput x: f32[N, 3, 5]\ninput i: i32[5]\ns = sub(x, i)\nm = mul(i, x)\n\
         sg = sigmoid(s)\nsm = softmax(m, axis=1)\nc = clip(s, min=-0.5, max=0.5)\n\
         f = flatten(sm)\nre = reshape(f, shape=[N, 5, 3])\nk = concat(re, re, axis=2)\n\
         output sg\noutput c\noutput k\n",
    ];
    let mut rng = Rng(210);
    for src in srcs {
        let m = model_with(src, &mut rng, default_gen);
        compare_with_interpreter(&m, src, 3, &mut rng);
    }
}

// ---------------------------------------------------------------------------
// End to end: plain SGD reduces the loss

/// Softmax cross-entropy of `[n, classes]` logits against `labels`, and its
/// gradient (mean over the batch).
fn cross_entropy(logits: &[f32], labels: &[usize], classes: usize) -> (f64, Vec<f32>) {
    let n = labels.len();
    let mut grad = vec![0.0f32; logits.len()];
    let mut total = 0.0f64;
    for (i, &label) in labels.iter().enumerate() {
        let row = &logits[i * classes..(i + 1) * classes];
        let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        let s: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
        total += s.ln() + m - row[label] as f64;
        for c in 0..classes {
            let p = (row[c] as f64 - m).exp() / s;
            let t = if c == label { 1.0 } else { 0.0 };
            grad[i * classes + c] = ((p - t) / n as f64) as f32;
        }
    }
    (total / n as f64, grad)
}

/// Three Gaussian blobs in 8 dimensions.
fn blobs(n: usize, rng: &mut Rng) -> (Tensor, Vec<usize>) {
    let centers: Vec<Vec<f32>> = (0..3)
        .map(|_| (0..8).map(|_| rng.f32(-1.5, 1.5)).collect())
        .collect();
    let mut x = Vec::new();
    let mut labels = Vec::new();
    for i in 0..n {
        let c = i % 3;
        labels.push(c);
        x.extend(centers[c].iter().map(|&v| v + rng.f32(-0.5, 0.5)));
    }
    (Tensor::f32(vec![n, 8], x), labels)
}

/// `steps` of SGD (latent weights clipped to [-1, 1] after each step); returns
/// the loss before and after.
fn sgd(m: &Model, x: &Tensor, labels: &[usize], lr: f32, steps: usize) -> (f64, f64) {
    let mut tm = train_model(m);
    let eval_loss = |tm: &mut TrainModel| {
        let out = tm.forward(std::slice::from_ref(x), Mode::Eval).unwrap();
        cross_entropy(out[0].as_f32().unwrap(), labels, 3).0
    };
    // Running statistics from one train pass first, so Eval means something.
    tm.forward(std::slice::from_ref(x), Mode::Train).unwrap();
    let before = eval_loss(&mut tm);
    for step in 0..steps {
        let out = tm.forward(std::slice::from_ref(x), Mode::Train).unwrap();
        let (_, g) = cross_entropy(out[0].as_f32().unwrap(), labels, 3);
        tm.zero_grad();
        tm.backward(&[Some(g)], step as f32 / steps as f32).unwrap();
        for p in tm.params_mut() {
            match p.kind {
                ParamKind::Float | ParamKind::Latent => {
                    for (v, g) in p.value.iter_mut().zip(&p.grad) {
                        *v -= lr * g;
                    }
                    if p.kind == ParamKind::Latent {
                        p.value.iter_mut().for_each(|v| *v = v.clamp(-1.0, 1.0));
                    }
                }
                ParamKind::RunningMean | ParamKind::RunningVar => {}
            }
        }
    }
    (before, eval_loss(&mut tm))
}

#[test]
fn sgd_reduces_the_loss_of_tiny_models() {
    let mut rng = Rng(300);
    let (x, labels) = blobs(48, &mut rng);
    // Float MLP.
    let float_src = "model t\ninput x: f32[N, 8]\nw1 = @w1: f32[16, 8]\nh = dense(x, w1)\n\
                     b1 = @b1: f32[16]\nhb = add(h, b1)\na = relu(hb)\nw2 = @w2: f32[3, 16]\n\
                     y = dense(a, w2)\noutput y\n";
    let m = model_with(float_src, &mut rng, |_, r| r.f32(-0.5, 0.5));
    let (before, after) = sgd(&m, &x, &labels, 0.2, 30);
    assert!(after < 0.5 * before, "float MLP: {before} -> {after}");
    // BinaryNet-style MLP: float first layer, binary hidden layer, binary
    // output layer with batch norm (like examples/mnist_mlp.ir).
    let bnn_src = "model t\ninput x: f32[N, 8]\nw1 = @w1: f32[32, 8]\nh1 = dense(x, w1)\n\
                   g1 = @g1: f32[32]\nb1 = @b1: f32[32]\nm1 = @m1: f32[32]\nvar1 = @var1: f32[32]\n\
                   n1 = batchnorm(h1, g1, b1, m1, var1, eps=0.0001)\na1 = sign(n1)\n\
                   w2 = @w2: f32[32, 32]\nwb2 = sign(w2)\nh2 = dense(a1, wb2)\n\
                   g2 = @g2: f32[32]\nb2 = @b2: f32[32]\nm2 = @m2: f32[32]\nvar2 = @var2: f32[32]\n\
                   n2 = batchnorm(h2, g2, b2, m2, var2, eps=0.0001)\na2 = sign(n2)\n\
                   w3 = @w3: f32[3, 32]\nwb3 = sign(w3)\nh3 = dense(a2, wb3)\n\
                   g3 = @g3: f32[3]\nb3 = @b3: f32[3]\nm3 = @m3: f32[3]\nvar3 = @var3: f32[3]\n\
                   y = batchnorm(h3, g3, b3, m3, var3, eps=0.0001)\noutput y\n";
    let m = model_with(bnn_src, &mut rng, |key, r| match &key[..1] {
        "g" => 1.0,
        "b" | "m" => 0.0,
        "v" => 1.0,
        _ => r.f32(-0.5, 0.5),
    });
    let (before, after) = sgd(&m, &x, &labels, 0.05, 40);
    assert!(after < 0.7 * before, "binary MLP: {before} -> {after}");
}
