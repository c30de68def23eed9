//! The f32 conv / dense micro-kernels (`bnnc::lower::kernel::f32_conv`)
//! against the scalar kernels and the reference interpreter, bit for bit.
//!
//! One generator ([`cases`]) makes every model: float convolutions with 1, 2,
//! 3, 16 and 67 input channels and 1, 15, 16, 17 and 64 output channels
//! (tail lanes for every V), kernels 1x1, 3x3, 7x7 stride 2 and 11x11 stride
//! 4, no padding and asymmetric padding, dilation, `f32`, `b1` and `ternary`
//! weights; dense layers; depthwise convolutions with 4 to 67 channels
//! (overlapping last blocks, narrowed vectors); unbatched inputs with
//! several samples; and cases the micro-kernel must leave to the scalar
//! loops (other groups, depth multipliers, depthwise with 3 channels). Weights and
//! inputs mix signs, negative and positive zeros, subnormal, tiny and large
//! magnitudes, so any reordering of a sum (or a fused multiply-add) changes
//! some output's bits.
//!
//! Every case is compiled with the scalar kernels (`max_vector_bits(0)`, the
//! oracle) and for each configuration this host runs: Cranelift `native`
//! and `x86_64` (V = 4), other tiles; LLVM `x86_64:znver4` (V = 16),
//! `x86_64:haswell` (V = 8), `x86_64` (V = 4) and the host CPU when LLVM is
//! built in (otherwise a printed skip, a failure under `CI=true`). Each runs
//! at batch 1 and 7 on output buffers pre-filled with garbage; the output
//! words must equal the oracle's, and the outputs the interpreter's, bit for
//! bit. Each configuration must also use the micro-kernel the target gets
//! exactly when the case is one it covers.

mod common;

use std::path::Path;

use bnnc::compile::{Backend, CompileOptions};
use bnnc::jit::{from_words, JitModel};
use bnnc::lower::kernel::f32_conv::F32Kernel;
use bnnc::lower::LowerOptions;
use bnnc_ir::{ElemType, Model, Tensor, Weights};
use bnnc_kir::target::{Arch, Target};
use common::{ci, llvm_asm, run_raw, seed_of, Config};

const BATCHES: [usize; 2] = [1, 7];

struct Case {
    name: String,
    src: String,
    /// Whether the micro-kernel computes it (else the scalar loops).
    vector: bool,
    /// Depthwise: the channels, which cap the lanes (V halves down to 4
    /// until it is at most this; fewer than 4 channels: the scalar loops).
    lanes_cap: Option<usize>,
}

/// A float conv `[N, h, w, c] -> o` channels with kernel `k`, weights of
/// type `wt`; `attrs` starts with ", " when not empty.
fn conv(
    name: &str,
    [h, w, c]: [usize; 3],
    o: usize,
    [kh, kw]: [usize; 2],
    attrs: &str,
    wt: &str,
) -> Case {
    Case {
        name: format!("conv_{name}_{wt}"),
        src: format!(
            "model kf\ninput x: f32[N, {h}, {w}, {c}]\nw = @w: {wt}[{o}, {kh}, {kw}, {c}]\n\
             y = conv2d(x, w{attrs})\noutput y\n"
        ),
        vector: true,
        lanes_cap: None,
    }
}

fn dense(k: usize, o: usize, wt: &str) -> Case {
    Case {
        name: format!("dense_k{k}_o{o}_{wt}"),
        src: format!(
            "model kf\ninput x: f32[N, {k}]\nw = @w: {wt}[{o}, {k}]\ny = dense(x, w)\noutput y\n"
        ),
        vector: true,
        lanes_cap: None,
    }
}

/// The one generator of cases.
fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    let chans = [1, 2, 3, 16, 67];
    let outs = [1, 15, 16, 17, 64];
    let wts = ["f32", "b1", "ternary"];
    // (name, kernel, input size, padding attribute for the asymmetric case,
    // stride).
    type Kernel<'a> = (&'a str, [usize; 2], [usize; 2], &'a str, &'a str);
    let kernels: [Kernel; 4] = [
        ("1x1", [1, 1], [5, 6], "padding=[1, 0, 0, 2]", ""),
        ("3x3", [3, 3], [7, 9], "padding=[1, 2, 0, 1]", ""),
        (
            "7x7s2",
            [7, 7],
            [15, 18],
            "padding=[3, 2, 1, 3]",
            ", stride=2",
        ),
        (
            "11x11s4",
            [11, 11],
            [23, 27],
            "padding=[2, 5, 3, 1]",
            ", stride=4",
        ),
    ];
    for (ki, (kname, k, [h, w], pad, stride)) in kernels.iter().enumerate() {
        for (ci, &c) in chans.iter().enumerate() {
            // Every output count with every kernel over the five channel
            // counts; padding and weight type alternate.
            let o = outs[(ci + ki) % outs.len()];
            let padded = (ci + ki) % 2 == 1;
            let wt = wts[(ci + 2 * ki) % wts.len()];
            let attrs = if padded {
                format!("{stride}, {pad}")
            } else {
                stride.to_string()
            };
            let p = if padded { "pad" } else { "valid" };
            v.push(conv(
                &format!("{kname}_c{c}_o{o}_{p}"),
                [*h, *w, c],
                o,
                *k,
                &attrs,
                wt,
            ));
        }
    }
    // The stems' shapes, scaled down, and other geometry.
    let s = |a: &str| a.to_string();
    for (name, x, o, k, attrs, wt) in [
        (
            "stem7",
            [20, 21, 3],
            64,
            [7, 7],
            s(", stride=2, padding=3"),
            "f32",
        ),
        (
            "stem11",
            [31, 29, 3],
            64,
            [11, 11],
            s(", stride=4, padding=2"),
            "b1",
        ),
        (
            "d2",
            [9, 10, 5],
            17,
            [3, 3],
            s(", dilation=2, padding=2"),
            "f32",
        ),
        (
            "mixed",
            [9, 10, 4],
            21,
            [3, 3],
            s(", stride=[2, 1], dilation=[1, 3], padding=[1, 3, 0, 2]"),
            "ternary",
        ),
        ("border_only", [3, 3, 2], 9, [5, 5], s(", padding=2"), "f32"),
        ("wide_o", [4, 6, 8], 130, [3, 3], s(", padding=1"), "f32"),
        ("k2s2", [9, 10, 6], 33, [2, 2], s(", stride=2"), "b1"),
    ] {
        v.push(conv(name, x, o, k, &attrs, wt));
    }
    for (i, &k) in [1, 3, 67, 300].iter().enumerate() {
        for j in 0..2 {
            let o = outs[(i + 2 * j) % outs.len()];
            v.push(dense(k, o, wts[(i + j) % wts.len()]));
        }
    }
    for (name, src) in [
        (
            "dense_unbatched",
            "model kf\ninput x: f32[6, 70]\nw = @w: f32[9, 70]\ny = dense(x, w)\noutput y\n",
        ),
        (
            "conv_unbatched",
            "model kf\ninput x: f32[3, 5, 6, 3]\nw = @w: f32[9, 3, 3, 3]\n\
             y = conv2d(x, w, padding=1)\noutput y\n",
        ),
    ] {
        v.push(Case {
            name: name.into(),
            src: src.into(),
            vector: true,
            lanes_cap: None,
        });
    }
    // Depthwise: channel counts below, at and past every V, overlapping
    // last blocks; 3x3 asymmetric padding, stride 2, dilation, 1x1, 7x7 s2.
    for (c, k, attrs, wt) in [
        (4, 3, ", padding=[1, 0, 2, 1]", "f32"),
        (15, 3, ", padding=[1, 2, 0, 1]", "f32"),
        (16, 3, ", stride=2, padding=1", "b1"),
        (17, 5, ", dilation=2, padding=[4, 3, 2, 1]", "ternary"),
        (33, 3, ", stride=[2, 1], padding=[0, 1, 1, 0]", "f32"),
        (64, 1, "", "f32"),
        (67, 7, ", stride=2, padding=3", "f32"),
        (3, 3, ", padding=1", "f32"),
    ] {
        v.push(Case {
            name: format!("depthwise_c{c}_k{k}_{wt}"),
            src: format!(
                "model kf\ninput x: f32[N, 9, 11, {c}]\nw = @w: {wt}[{c}, {k}, {k}, 1]\n\
                 y = conv2d(x, w{attrs}, groups={c})\noutput y\n"
            ),
            vector: c >= 4,
            lanes_cap: Some(c),
        });
    }
    // The scalar loops keep other groups (and depth multipliers).
    v.push(Case {
        name: "groups2".into(),
        src: "model kf\ninput x: f32[N, 5, 6, 8]\nw = @w: f32[6, 3, 3, 4]\n\
              y = conv2d(x, w, padding=1, groups=2)\noutput y\n"
            .into(),
        vector: false,
        lanes_cap: None,
    });
    v.push(Case {
        name: "depthwise_multiplier2".into(),
        src: "model kf\ninput x: f32[N, 5, 6, 8]\nw = @w: f32[16, 3, 3, 1]\n\
              y = conv2d(x, w, padding=1, groups=8)\noutput y\n"
            .into(),
        vector: false,
        lanes_cap: None,
    });
    v
}

/// A small deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A float that makes any reordering of a sum show: mostly O(1) values
    /// with both signs, some `-0.0` and `+0.0`, subnormals, tiny and large
    /// magnitudes (products stay finite: |x| < 2^50).
    fn float(&mut self) -> f32 {
        let r = self.next();
        let mant = (r >> 40) as f32 / (1u64 << 24) as f32 + 0.5;
        let sign = if r & 1 == 1 { -1.0 } else { 1.0 };
        match (r >> 8) % 16 {
            0 => -0.0,
            1 => 0.0,
            2 => sign * f32::from_bits(((r >> 12) as u32 & 0x7f_ffff) | 1),
            3 => sign * mant * 1e-30,
            4 | 5 => sign * mant * (1u64 << ((r >> 16) % 50)) as f32,
            6 => sign * mant * 1e-4,
            _ => sign * mant,
        }
    }
}

fn model(case: &Case) -> Model {
    let file = Path::new("kf.ir");
    let graph = bnnc_ir::text::parse(&case.src)
        .unwrap_or_else(|e| panic!("{}: {}", case.name, e.render("kf.ir")));
    let types = bnnc_ir::verify::verify(&graph)
        .unwrap_or_else(|e| panic!("{}: {}", case.name, e.render("kf.ir")));
    let mut rng = Rng(seed_of(&case.name));
    let mut weights = Weights::new();
    for (node, ty) in graph.nodes.iter().zip(&types) {
        if let bnnc_ir::Op::Weight { key, .. } = &node.op {
            let dims = ty.dims(1);
            let n: usize = dims.iter().product();
            let t = match ty.elem {
                ElemType::F32 => Tensor::f32(dims, (0..n).map(|_| rng.float()).collect()),
                ElemType::B1 => Tensor::int(
                    ElemType::B1,
                    dims,
                    (0..n)
                        .map(|_| if rng.next() & 1 == 0 { 1 } else { -1 })
                        .collect(),
                ),
                ElemType::Ternary => Tensor::int(
                    ElemType::Ternary,
                    dims,
                    (0..n).map(|_| (rng.next() % 3) as i32 - 1).collect(),
                ),
                e => panic!("{}: weights of {e:?}", case.name),
            };
            weights.insert(key.clone(), t);
        }
    }
    Model::from_graph(graph, Some(&weights), file).unwrap()
}

/// Random inputs of `m` at `batch`, from [`Rng::float`].
fn inputs(m: &Model, batch: usize, seed: u64) -> Vec<Tensor> {
    let mut rng = Rng(seed);
    m.graph
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            bnnc_ir::Op::Input(ty) => Some(ty),
            _ => None,
        })
        .map(|ty| {
            let dims = ty.dims(batch);
            let n = dims.iter().product();
            Tensor::f32(dims, (0..n).map(|_| rng.float()).collect())
        })
        .collect()
}

fn configs() -> Vec<Config> {
    let host = Target::host().unwrap();
    let mut cranelift = vec![Config::new(Backend::Cranelift, "native")];
    if host.arch == Arch::X86_64 {
        cranelift.push(Config::new(Backend::Cranelift, "x86_64"));
    }
    // Other tiles: odd pixel counts (dense rounds them down to a power of
    // two), one block, more blocks.
    cranelift.push(Config::new(Backend::Cranelift, "native").tile("3x3"));
    cranelift.push(Config::new(Backend::Cranelift, "native").tile("1x1"));
    common::configs(
        "kernels_f32",
        cranelift,
        &["znver4", "haswell", "x86-64"],
        &["5x2"],
    )
}

/// The lanes of the f32 micro-kernel the compiled model uses, if any (its
/// packed weights are named after them: `f32conv_w_oc{V}`).
fn micro_kernel_lanes(j: &JitModel) -> Option<usize> {
    j.compiled()
        .lowered
        .module
        .data
        .iter()
        .filter_map(|d| d.name.split("f32conv_w_oc").nth(1))
        .map(|l| l.split('_').next().unwrap().parse::<usize>().unwrap())
        .max()
}

/// The bits of every element of float tensors.
fn bits(ts: &[Tensor]) -> Vec<Vec<u32>> {
    ts.iter()
        .map(|t| t.as_f32().unwrap().iter().map(|x| x.to_bits()).collect())
        .collect()
}

#[test]
fn f32_micro_kernels_match_the_scalar_kernels_and_the_interpreter() {
    let configs = configs();
    let mut checked = 0;
    for case in cases() {
        let m = model(&case);
        let opts = |c: &Config| {
            CompileOptions::new(c.target.clone())
                .backend(c.backend)
                .opt_level(0)
                .emit([])
                .tile(c.tile)
        };
        let oracle_cfg = Config::new(Backend::Cranelift, "native");
        let oracle = JitModel::compile_with(&m, &opts(&oracle_cfg).max_vector_bits(0))
            .unwrap_or_else(|e| panic!("{}: scalar: {e}", case.name));
        assert_eq!(
            micro_kernel_lanes(&oracle),
            None,
            "{}: the oracle has vectors",
            case.name
        );
        let jits: Vec<(String, JitModel)> = configs
            .iter()
            .map(|c| {
                let label = c.label.clone();
                let j = JitModel::compile_with(&m, &opts(c))
                    .unwrap_or_else(|e| panic!("{}: {label}: {e}", case.name));
                let want = if case.vector {
                    let lo = LowerOptions {
                        tile: c.tile,
                        ..LowerOptions::max_vector_bits(c.backend.max_vector_bits())
                    };
                    F32Kernel::choose(&c.target, &lo)
                        .map(|mk| {
                            if let Some(t) = c.tile {
                                assert_eq!(
                                    (mk.pixels, mk.blocks),
                                    (t.pixels, t.blocks),
                                    "{label}: tile"
                                );
                            }
                            let mut lanes = mk.lanes;
                            let cap = case.lanes_cap.unwrap_or(usize::MAX);
                            while lanes > cap && lanes > 4 {
                                lanes /= 2;
                            }
                            lanes
                        })
                        .filter(|&l| l <= case.lanes_cap.unwrap_or(usize::MAX))
                } else {
                    None
                };
                assert_eq!(
                    micro_kernel_lanes(&j),
                    want,
                    "{}: {label}: micro-kernel lanes",
                    case.name
                );
                (label, j)
            })
            .collect();
        for batch in BATCHES {
            let ins = inputs(&m, batch, seed_of(&case.name) ^ batch as u64);
            let want = bits(&bnnc_runtime::run(&m, &ins).unwrap());
            let l = &oracle.compiled().lowered;
            let base = run_raw(&oracle, &ins, batch);
            let got: Vec<Tensor> = base
                .iter()
                .zip(&l.outputs)
                .map(|(b, d)| from_words(b, d, batch))
                .collect();
            assert!(
                bits(&got) == want,
                "{}: scalar kernels vs interpreter, batch {batch}",
                case.name
            );
            for (label, j) in &jits {
                let raw = run_raw(j, &ins, batch);
                if raw != base {
                    let (k, (a, b)) = raw[0]
                        .iter()
                        .zip(&base[0])
                        .enumerate()
                        .find(|(_, (a, b))| a != b)
                        .unwrap();
                    panic!(
                        "{}: {label}: output words differ from the scalar kernels at batch \
                         {batch}: word {k}: {a:#018x} vs {b:#018x}\n{}",
                        case.name, case.src
                    );
                }
                let l = &j.compiled().lowered;
                let got: Vec<Tensor> = raw
                    .iter()
                    .zip(&l.outputs)
                    .map(|(b, d)| from_words(b, d, batch))
                    .collect();
                assert!(
                    bits(&got) == want,
                    "{}: {label}: vs interpreter, batch {batch}",
                    case.name
                );
                checked += 1;
            }
        }
    }
    println!("{checked} (case, configuration, batch) runs checked");
}

/// The cases' values do tell orders apart: summing the stem's first output
/// in another order (channels before taps) changes its bits somewhere, so a
/// kernel that reordered would fail the comparison above.
#[test]
fn the_generated_values_detect_reordering() {
    let case = &cases()
        .into_iter()
        .find(|c| c.name == "conv_stem7_f32")
        .unwrap();
    let m = model(case);
    let wi = m
        .graph
        .nodes
        .iter()
        .position(|n| matches!(n.op, bnnc_ir::Op::Weight { .. }))
        .unwrap();
    let w = m.consts[wi].as_ref().unwrap().as_f32().unwrap().to_vec();
    let ins = inputs(&m, 1, 1);
    let x = ins[0].as_f32().unwrap();
    let (wid, c, k) = (21, 3, 7);
    let mut differ = 0;
    // Interior output pixels (oy, ox) in 2..8, channel 0..64.
    for o in 0..64 {
        for oy in 2..8 {
            for ox in 2..8 {
                let (mut a, mut b) = (0.0f32, 0.0f32);
                for i in 0..k {
                    for j in 0..k {
                        for ci in 0..c {
                            let xv = x[((oy * 2 + i - 3) * wid + ox * 2 + j - 3) * c + ci];
                            a += xv * w[((o * k + i) * k + j) * c + ci];
                        }
                    }
                }
                for ci in 0..c {
                    for i in 0..k {
                        for j in 0..k {
                            let xv = x[((oy * 2 + i - 3) * wid + ox * 2 + j - 3) * c + ci];
                            b += xv * w[((o * k + i) * k + j) * c + ci];
                        }
                    }
                }
                differ += usize::from(a.to_bits() != b.to_bits());
            }
        }
    }
    assert!(
        differ > 100,
        "only {differ} of 2304 sums depend on the order"
    );
}

/// znver4 gets zmm multiplies and adds, haswell ymm, and neither a fused
/// multiply-add (which would round once instead of twice).
#[test]
fn llvm_stem_uses_wide_vectors_and_no_fma() {
    if !Backend::Llvm.available() {
        let why = "LLVM is not built in (run with --features bnnc/llvm)";
        assert!(!ci(), "CI=true: {why}");
        eprintln!("skipping: {why}");
        return;
    }
    let case = cases()
        .into_iter()
        .find(|c| c.name == "conv_stem7_f32")
        .unwrap();
    let m = model(&case);
    for (target, reg) in [("x86_64:znver4", "zmm"), ("x86_64:haswell", "ymm")] {
        let asm = llvm_asm(&m, target);
        let lines: Vec<&str> = asm.lines().map(str::trim).collect();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("vmulps") && l.contains(reg)),
            "{target}: no vmulps on {reg}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("vaddps") && l.contains(reg)),
            "{target}: no vaddps on {reg}"
        );
        assert!(
            !lines
                .iter()
                .any(|l| l.starts_with("vfmadd") || l.starts_with("vfnmadd")),
            "{target}: a fused multiply-add"
        );
        if reg == "ymm" {
            assert!(
                !lines.iter().any(|l| l.contains("zmm")),
                "{target}: 512-bit registers"
            );
        }
    }
}

/// The kernel each target gets, and the backend's limit over it.
#[test]
fn f32_kernel_widths_follow_target_and_backend() {
    let lanes = |t: &str, bits: u32| {
        F32Kernel::choose(
            &Target::parse(t).unwrap(),
            &LowerOptions::max_vector_bits(bits),
        )
        .map(|m| m.lanes)
    };
    assert_eq!(lanes("x86_64:znver4", 512), Some(16));
    assert_eq!(lanes("x86_64:znver4", 256), Some(8));
    assert_eq!(lanes("x86_64:znver4", 128), Some(4));
    assert_eq!(lanes("x86_64:haswell", 512), Some(8));
    assert_eq!(lanes("x86_64", 512), Some(4));
    assert_eq!(lanes("aarch64", 128), Some(4));
    assert_eq!(lanes("riscv64", 512), None);
    assert_eq!(lanes("x86_64:znver4", 0), None);
}

/// `sign` of an f32 tensor packs each full 64-bit word with vector
/// compares (`sign_bits` of a lane mask), the row's partial word element by
/// element:
/// bit for bit the interpreter's bits, on -0.0 and +0.0, NaN of either
/// sign, infinities, subnormals and tiny values, channel counts 64, 128,
/// 200 (a tail of 8) and 40 (no full word: the scalar packing), batch 1
/// and 7, every configuration.
#[test]
fn sign_of_f32_packs_words_with_vector_compares() {
    let specials = [
        -0.0,
        0.0,
        f32::NAN,
        -f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        -f32::from_bits(1),
        f32::from_bits(1),
        -1e-38,
    ];
    let configs = configs();
    for (name, shape, c) in [
        ("sign_64", "64", 64),
        ("sign_2x128", "2, 128", 128),
        ("sign_200", "200", 200),
        ("sign_40", "3, 40", 40),
    ] {
        let case = Case {
            name: name.into(),
            src: format!("model ks\ninput x: f32[N, {shape}]\ny = sign(x)\noutput y\n"),
            vector: c >= 64,
            lanes_cap: None,
        };
        let m = model(&case);
        for cfg in &configs {
            let opts = CompileOptions::new(cfg.target.clone())
                .backend(cfg.backend)
                .emit([]);
            let j = JitModel::compile_with(&m, &opts).unwrap();
            let vector = bnnc_kir::print(&j.compiled().lowered.module).contains("sign_bits(");
            let lanes = F32Kernel::lanes(&cfg.target, cfg.backend.max_vector_bits());
            assert_eq!(
                vector,
                case.vector && lanes.is_some(),
                "{name}: {}: the vector packing",
                cfg.label
            );
            for batch in BATCHES {
                let mut ins = inputs(&m, batch, seed_of(name) ^ batch as u64);
                for t in &mut ins {
                    let n = t.as_f32().unwrap().len();
                    let vals: Vec<f32> = (0..n)
                        .map(|i| {
                            if i % 3 == 0 {
                                specials[(i / 3) % specials.len()]
                            } else {
                                t.as_f32().unwrap()[i]
                            }
                        })
                        .collect();
                    *t = Tensor::f32(t.dims.clone(), vals);
                }
                let want = bnnc_runtime::run(&m, &ins).unwrap();
                let l = &j.compiled().lowered;
                let got: Vec<Tensor> = run_raw(&j, &ins, batch)
                    .iter()
                    .zip(&l.outputs)
                    .map(|(b, d)| from_words(b, d, batch))
                    .collect();
                assert_eq!(got, want, "{name}: {}: batch {batch}", cfg.label);
            }
        }
    }
}
