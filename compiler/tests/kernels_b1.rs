//! The binary micro-kernels (`bnnc::lower::kernel`) against the scalar
//! kernels and the reference interpreter, bit for bit.
//!
//! One generator ([`cases`]) makes every model: binary convolutions with
//! 1, 63, 64, 65, 130, 256 and 512 input channels, output channels that are
//! not multiples of a tile's `V * B`, rows whose interior is not a multiple
//! of the pixel tile, every pad value (+1, -1, 0), stride 2, dilation 2,
//! mixed and asymmetric attributes, 1x1 kernels, a kernel with no interior
//! pixel, and dense layers with K not a multiple of 64; each with the `i32`
//! accumulator as output, a fused threshold (per channel, shared, with
//! directions, `sign`, and `sign(batchnorm(..))`, which the optimizer turns
//! into a threshold), a fused `table` (per channel or shared rows) or a
//! fused `batchnorm` (f32 out); unbatched inputs with
//! several samples; ternary weights, and RepConv convs and dense layers over
//! a read-through `replicate` (the bit-plane cases: R planes, or fewer
//! signed-digit planes with shifts); grouped convs whose groups are whole
//! words; plus cases the micro-kernel must leave to the scalar loops (groups
//! of fewer channels, depthwise, groups over a replicate).
//!
//! Every case is compiled with the scalar kernels (`max_vector_bits(0)`, the
//! oracle) and for each configuration: Cranelift for `native`,
//! `x86_64+popcnt` and `x86_64` (V = 2, 1, 2 on a Zen 4 host); LLVM for
//! `x86_64:znver4`, `x86_64:haswell`, `x86_64:x86-64-v2` (V = 8, 4, 1) and
//! the host CPU, when LLVM is built in (otherwise a printed skip, and a
//! failure under `CI=true`). Each runs at batch 1 and 7; the output buffers
//! (pre-filled with garbage, so unwritten or extra words show) must equal
//! the oracle's word for word, and the outputs the interpreter's. Each
//! configuration must also use the micro-kernel the target gets exactly
//! when the case is one it handles.

mod common;

use std::path::Path;

use bnnc::compile::{compile, Backend, CompileOptions, Emit};
use bnnc::jit::{from_words, JitModel};
use bnnc::lower::kernel::MicroKernel;
use bnnc::lower::LowerOptions;
use bnnc_ir::{Model, Tensor};
use bnnc_kir::target::{Arch, Target};
use bnnc_kir::Scalar;
use bnnc_train::init::{init_weights, InitOptions};
use common::{ci, llvm_asm, run_raw, seed_of, Config};

const BATCHES: [usize; 2] = [1, 7];

/// What follows the accumulator `acc` of `O` channels.
#[derive(Clone, Copy, Debug)]
enum Epi {
    /// `acc` is the output.
    Acc,
    /// `sign(acc)`.
    Sign,
    /// `threshold(acc, t)`, one threshold per channel.
    Thr,
    /// `threshold(acc, t)` with one shared threshold.
    ThrShared,
    /// `threshold(acc, t, dir)`, random directions.
    ThrDir,
    /// `sign(batchnorm(acc))` with random statistics (zero and negative
    /// gammas): a threshold after the optimizer (opt level 1).
    SignBn,
    /// `batchnorm(acc)` as the f32 output (the affine epilogue).
    Bn,
    /// `table(acc, t, lo=-6)` with `b1` rows of 13 entries, one per channel.
    Table,
    /// The same with one shared row.
    TableShared,
}

const EPIS: [Epi; 9] = [
    Epi::Acc,
    Epi::Thr,
    Epi::ThrDir,
    Epi::Sign,
    Epi::SignBn,
    Epi::ThrShared,
    Epi::Bn,
    Epi::Table,
    Epi::TableShared,
];

struct Case {
    name: String,
    src: String,
    opt_level: u8,
    /// Whether the micro-kernel computes it (else the scalar loops).
    vector: bool,
    /// Grouped convs: `(output channels per group, bits out)`; the
    /// micro-kernel computes them when a group's channels are whole blocks
    /// of V (whole tiles of `V * B` for bits out), the input's whole words.
    groups: Option<(usize, bool)>,
}

/// The IR after `acc` and the optimization level the case needs.
fn epilogue(epi: Epi, o: usize) -> (String, u8) {
    match epi {
        Epi::Acc => ("output acc\n".into(), 0),
        Epi::Sign => ("y = sign(acc)\noutput y\n".into(), 0),
        Epi::Thr => (
            format!("t = @t: i32[{o}, 1]\ny = threshold(acc, t)\noutput y\n"),
            0,
        ),
        Epi::ThrShared => (
            "t = @t: i32[1, 1]\ny = threshold(acc, t)\noutput y\n".into(),
            0,
        ),
        Epi::ThrDir => (
            format!("t = @t: i32[{o}, 1]\nd = @d: i32[{o}]\ny = threshold(acc, t, d)\noutput y\n"),
            0,
        ),
        Epi::SignBn => (
            format!(
                "g = @g: f32[{o}]\nb = @b: f32[{o}]\nm = @m: f32[{o}]\nv = @v: f32[{o}]\n\
                 n = batchnorm(acc, g, b, m, v, eps=0.001)\ny = sign(n)\noutput y\n"
            ),
            1,
        ),
        Epi::Table => (
            format!("t = @t: b1[{o}, 13]\ny = table(acc, t, lo=-6)\noutput y\n"),
            0,
        ),
        Epi::TableShared => (
            "t = @t: b1[1, 13]\ny = table(acc, t, lo=-6)\noutput y\n".into(),
            0,
        ),
        Epi::Bn => (
            format!(
                "g = @g: f32[{o}]\nb = @b: f32[{o}]\nm = @m: f32[{o}]\nv = @v: f32[{o}]\n\
                 n = batchnorm(acc, g, b, m, v, eps=0.001)\noutput n\n"
            ),
            0,
        ),
    }
}

/// A binary conv `[N, h, w, c] -> o` channels with kernel `k`; `attrs`
/// starts with ", " when not empty.
fn conv(name: &str, x: [usize; 3], o: usize, k: [usize; 2], attrs: &str, epi: Epi) -> Case {
    conv_grouped(name, x, o, k, attrs, epi, 1)
}

fn conv_grouped(
    name: &str,
    [h, w, c]: [usize; 3],
    o: usize,
    [kh, kw]: [usize; 2],
    attrs: &str,
    epi: Epi,
    groups: usize,
) -> Case {
    let (tail, opt_level) = epilogue(epi, o);
    let cg = c / groups;
    let bits = !matches!(epi, Epi::Acc | Epi::Bn);
    Case {
        name: format!("conv_{name}_{epi:?}"),
        src: format!(
            "model kb\ninput x: b1[N, {h}, {w}, {c}]\nw = @w: b1[{o}, {kh}, {kw}, {cg}]\n\
             acc = conv2d(x, w{attrs})\n{tail}"
        ),
        opt_level,
        vector: groups == 1 || cg.is_multiple_of(64),
        groups: (groups > 1).then_some((o / groups, bits)),
    }
}

fn dense(name: &str, k: usize, o: usize, epi: Epi) -> Case {
    let (tail, opt_level) = epilogue(epi, o);
    Case {
        name: format!("dense_{name}_{epi:?}"),
        src: format!(
            "model kb\ninput x: b1[N, {k}]\nw = @w: b1[{o}, {k}]\nacc = dense(x, w)\n{tail}"
        ),
        opt_level,
        vector: true,
        groups: None,
    }
}

/// The one generator of cases.
fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    // 3x3, padding 1: every channel count with every pad value, each epilogue
    // with each pad value; output channels 1 .. 33 (V*B is 4 or 16); rows of
    // 7, 6, 9, 10 pixels: interiors of 5, 4, 7, 8 (tails of 1, 0, 3, 0).
    let chans = [1, 63, 64, 65, 130, 256];
    let outs = [1, 3, 17, 7, 33, 18, 9];
    let sizes = [(5, 7), (4, 6), (6, 9), (3, 10)];
    for (ci, &c) in chans.iter().enumerate() {
        for (pi, pad) in ["+1", "-1", "0"].iter().enumerate() {
            let k = ci * 3 + pi;
            let o = outs[k % outs.len()];
            let (h, w) = sizes[k % sizes.len()];
            let epi = EPIS[(ci + 2 * pi) % EPIS.len()];
            let attrs = format!(", padding=1, pad_value={pad}");
            v.push(conv(
                &format!("c{c}_o{o}_pad{pad}"),
                [h, w, c],
                o,
                [3, 3],
                &attrs,
                epi,
            ));
        }
    }
    let s = |a: &str| a.to_string();
    for (name, x, o, k, attrs, epi) in [
        (
            "s2_plus",
            [9, 10, 64],
            13,
            [3, 3],
            s(", stride=2, padding=1, pad_value=+1"),
            Epi::Acc,
        ),
        (
            "s2_zero",
            [9, 10, 65],
            19,
            [3, 3],
            s(", stride=2, padding=1, pad_value=0"),
            Epi::Thr,
        ),
        (
            "s2_nopad",
            [9, 10, 40],
            6,
            [3, 3],
            s(", stride=2"),
            Epi::ThrDir,
        ),
        (
            "d2_minus",
            [9, 10, 40],
            11,
            [3, 3],
            s(", dilation=2, padding=2, pad_value=-1"),
            Epi::Acc,
        ),
        (
            "d2_zero",
            [9, 10, 63],
            16,
            [3, 3],
            s(", dilation=2, padding=1, pad_value=0"),
            Epi::ThrDir,
        ),
        (
            "mixed_zero",
            [9, 10, 70],
            21,
            [3, 3],
            s(", stride=[2, 1], dilation=[1, 3], padding=[1, 3, 0, 2], pad_value=0"),
            Epi::Acc,
        ),
        (
            "mixed_plus",
            [9, 10, 40],
            16,
            [3, 3],
            s(", stride=[1, 3], dilation=[2, 1], padding=[0, 1, 2, 1], pad_value=+1"),
            Epi::Sign,
        ),
        ("pw", [5, 6, 64], 70, [1, 1], s(""), Epi::Acc),
        ("pw_bits", [5, 6, 130], 33, [1, 1], s(""), Epi::Thr),
        ("pw_s2", [7, 7, 63], 5, [1, 1], s(", stride=2"), Epi::SignBn),
        ("valid", [6, 9, 64], 20, [3, 3], s(""), Epi::ThrShared),
        (
            "border_only",
            [3, 3, 65],
            9,
            [5, 5],
            s(", padding=2, pad_value=-1"),
            Epi::Acc,
        ),
        (
            "border_only_bits",
            [3, 4, 64],
            17,
            [5, 5],
            s(", padding=2, pad_value=+1"),
            Epi::ThrDir,
        ),
        ("k2s2", [9, 10, 40], 70, [2, 2], s(", stride=2"), Epi::Sign),
        (
            "c512",
            [4, 5, 512],
            10,
            [3, 3],
            s(", padding=1, pad_value=+1"),
            Epi::Thr,
        ),
        (
            "wide_o",
            [4, 6, 64],
            64,
            [3, 3],
            s(", padding=1, pad_value=+1"),
            Epi::Acc,
        ),
        (
            "wide_o_bits",
            [4, 6, 64],
            130,
            [3, 3],
            s(", padding=1, pad_value=0"),
            Epi::ThrDir,
        ),
    ] {
        v.push(conv(name, x, o, k, &attrs, epi));
    }
    // Dense: K around the word boundaries and beyond, odd output counts.
    let ks = [1, 63, 64, 65, 130, 200, 1000];
    let os = [1, 5, 16, 17, 33, 100, 3];
    for (i, &k) in ks.iter().enumerate() {
        for j in 0..2 {
            let o = os[(i + 3 * j) % os.len()];
            v.push(dense(
                &format!("k{k}_o{o}"),
                k,
                o,
                EPIS[(i + j * 3) % EPIS.len()],
            ));
        }
    }
    // Unbatched inputs with several rows / samples: every kernel loops over
    // the first dimension (the scalar loops once looped over the run-time
    // batch, 1 for an unbatched tensor, and computed only the first row);
    // 5 samples are a tile of samples and one more.
    for (name, src) in [
        (
            "dense_unbatched",
            "model kb\ninput x: b1[6, 70]\nw = @w: b1[9, 70]\nacc = dense(x, w)\noutput acc\n",
        ),
        (
            "conv_unbatched",
            "model kb\ninput x: b1[5, 5, 6, 65]\nw = @w: b1[9, 3, 3, 65]\n\
             acc = conv2d(x, w, padding=1, pad_value=-1)\ny = sign(acc)\noutput y\n",
        ),
    ] {
        v.push(Case {
            name: name.into(),
            src: src.into(),
            opt_level: 0,
            vector: true,
            groups: None,
        });
    }
    // Ternary weights (sign and nonzero planes) and RepConv convs over
    // `replicate(x, times=R)` read as x (R planes, or fewer signed-digit
    // planes with shifts for R = 3, 5, 6, 7), with every pad value and
    // epilogue; ternary weights over a replicate.
    let pads = ["+1", "-1", "0"];
    for (i, (c, o, ty, reps)) in [
        (63, 17, "ternary", 1),
        (130, 9, "ternary", 1),
        (64, 33, "ternary", 1),
        (40, 13, "b1", 2),
        (65, 7, "b1", 3),
        (64, 18, "b1", 4),
        (20, 16, "b1", 5),
        (33, 11, "b1", 7),
        (40, 9, "ternary", 2),
        (65, 5, "ternary", 3),
    ]
    .into_iter()
    .enumerate()
    {
        let epi = EPIS[i % EPIS.len()];
        let pad = pads[i % pads.len()];
        let (tail, opt_level) = epilogue(epi, o);
        let (h, w) = sizes[i % sizes.len()];
        let (xin, cin) = if reps == 1 {
            (String::new(), c)
        } else {
            (format!("xr = replicate(x, times={reps})\n"), reps * c)
        };
        let xname = if reps == 1 { "x" } else { "xr" };
        let stride = if i % 4 == 3 { ", stride=2" } else { "" };
        v.push(Case {
            name: format!("conv_{ty}_r{reps}_c{c}_o{o}_pad{pad}_{epi:?}"),
            src: format!(
                "model kb\ninput x: b1[N, {h}, {w}, {c}]\n{xin}w = @w: {ty}[{o}, 3, 3, {cin}]\n\
                 acc = conv2d({xname}, w, padding=1, pad_value={pad}{stride})\n{tail}"
            ),
            opt_level,
            vector: true,
            groups: None,
        });
    }
    for (k, o, ty, reps, epi) in [
        (70, 9, "ternary", 1, Epi::Acc),
        (200, 33, "ternary", 1, Epi::ThrDir),
        (64, 17, "b1", 3, Epi::Thr),
        (50, 8, "b1", 2, Epi::Acc),
        (65, 10, "ternary", 2, Epi::Sign),
    ] {
        let (tail, opt_level) = epilogue(epi, o);
        let (xin, kin, xname) = if reps == 1 {
            (String::new(), k, "x")
        } else {
            (format!("xr = replicate(x, times={reps})\n"), reps * k, "xr")
        };
        v.push(Case {
            name: format!("dense_{ty}_r{reps}_k{k}_o{o}_{epi:?}"),
            src: format!(
                "model kb\ninput x: b1[N, {k}]\n{xin}w = @w: {ty}[{o}, {kin}]\n\
                 acc = dense({xname}, w)\n{tail}"
            ),
            opt_level,
            vector: true,
            groups: None,
        });
    }
    // Groups: whole words per group (a micro-kernel where a group's output
    // channels are whole blocks, or tiles for bits out), and groups the
    // scalar loops keep: channels not whole words, depthwise, over a
    // replicate.
    for (name, x, o, k, attrs, epi, groups) in [
        (
            "g2",
            [5, 6, 128],
            16,
            [3, 3],
            ", padding=1, pad_value=+1",
            Epi::Acc,
            2,
        ),
        (
            "g4_bits",
            [4, 7, 256],
            64,
            [3, 3],
            ", padding=1, pad_value=-1",
            Epi::Thr,
            4,
        ),
        (
            "g2_o12",
            [5, 6, 128],
            24,
            [3, 3],
            ", padding=1, pad_value=0",
            Epi::ThrDir,
            2,
        ),
        (
            "g2_bn_s2",
            [7, 8, 128],
            32,
            [3, 3],
            ", stride=2, padding=1, pad_value=+1",
            Epi::Bn,
            2,
        ),
        ("g3_pw", [4, 5, 192], 48, [1, 1], "", Epi::Sign, 3),
        (
            "g2_c64",
            [5, 6, 64],
            8,
            [3, 3],
            ", padding=1, pad_value=+1",
            Epi::Acc,
            2,
        ),
        (
            "depthwise",
            [5, 6, 64],
            64,
            [3, 3],
            ", padding=1, pad_value=-1",
            Epi::Thr,
            64,
        ),
    ] {
        v.push(conv_grouped(
            name,
            x,
            o,
            k,
            &format!("{attrs}, groups={groups}"),
            epi,
            groups,
        ));
    }
    v.push(Case {
        name: "conv_ternary_g2".into(),
        src: "model kb\ninput x: b1[N, 5, 6, 128]\nw = @w: ternary[16, 3, 3, 64]\n\
              acc = conv2d(x, w, padding=1, pad_value=-1, groups=2)\noutput acc\n"
            .into(),
        opt_level: 0,
        vector: true,
        groups: Some((8, false)),
    });
    v.push(Case {
        name: "conv_groups_over_replicate".into(),
        src: "model kb\ninput x: b1[N, 5, 6, 32]\nxr = replicate(x, times=2)\n\
              w = @w: b1[8, 3, 3, 32]\nacc = conv2d(xr, w, padding=1, pad_value=-1, groups=2)\n\
              output acc\n"
            .into(),
        opt_level: 0,
        vector: false,
        groups: None,
    });
    v
}

fn model(case: &Case) -> Model {
    let file = Path::new("kb.ir");
    let graph = bnnc_ir::text::parse(&case.src)
        .unwrap_or_else(|e| panic!("{}: {}", case.name, e.render("kb.ir")));
    let types = bnnc_ir::verify::verify(&graph)
        .unwrap_or_else(|e| panic!("{}: {}", case.name, e.render("kb.ir")));
    let opts = InitOptions {
        seed: seed_of(&case.name),
        random_stats: true,
    };
    let weights = init_weights(&graph, &types, opts).unwrap();
    Model::from_graph(graph, Some(&weights), file).unwrap()
}

fn configs() -> Vec<Config> {
    let host = Target::host().unwrap();
    let mut cranelift = Vec::new();
    let targets: &[&str] = match host.arch {
        Arch::X86_64 => &["native", "x86_64+popcnt", "x86_64"],
        _ => &["native"],
    };
    for t in targets {
        cranelift.push(Config::new(Backend::Cranelift, t));
    }
    // Tiles other than the defaults: odd pixel counts (dense rounds them
    // down to a power of two), more blocks.
    if host.arch == Arch::X86_64 {
        cranelift.push(Config::new(Backend::Cranelift, "x86_64+popcnt").tile("5x4"));
    }
    cranelift.push(Config::new(Backend::Cranelift, "native").tile("3x4"));
    common::configs(
        "kernels_b1",
        cranelift,
        &["znver4", "haswell", "x86-64-v2"],
        &["6x4", "3x8"],
    )
}

/// The lanes of the micro-kernel the compiled model uses, if any (its packed
/// weights are named after them: `b1dot_w_oc{V}`), checked against the
/// widest `i64` vectors in its kir.
fn micro_kernel_lanes(j: &JitModel) -> Option<u16> {
    let m = &j.compiled().lowered.module;
    let lanes = m
        .data
        .iter()
        .filter_map(|d| d.name.split("b1dot_w_oc").nth(1))
        .map(|l| l.split('_').next().unwrap().parse::<u16>().unwrap())
        .max();
    let widest = m
        .functions
        .iter()
        .flat_map(|f| &f.vars)
        .filter(|v| v.ty.scalar == Scalar::I64 && v.ty.is_vector())
        .map(|v| v.ty.lanes)
        .max();
    assert_eq!(
        widest,
        lanes.filter(|&l| l > 1),
        "vectors and the micro-kernel disagree"
    );
    lanes
}

/// A `batchnorm` of the accumulator output (opt level 0) is no kernel of
/// its own: the dot kernel stores it, with the micro-kernel's affine
/// epilogue (its constants `b1dot_bn_*`) where the micro-kernel runs.
fn assert_batchnorm_fused(case: &Case, j: &JitModel, micro: bool) {
    if !case.name.ends_with("_Bn") {
        return;
    }
    let m = &j.compiled().lowered.module;
    assert!(
        m.functions.iter().all(|f| !f.name.contains("batchnorm")),
        "{}: a batchnorm kernel of its own",
        case.name
    );
    let affine = m.data.iter().any(|d| d.name.contains("b1dot_bn_mean"));
    assert_eq!(affine, micro, "{}: the affine epilogue", case.name);
}

#[test]
fn micro_kernels_match_the_scalar_kernels_and_the_interpreter() {
    let configs = configs();
    let mut checked = 0;
    for case in cases() {
        let m = model(&case);
        let opts = |c: &Config| {
            CompileOptions::new(c.target.clone())
                .backend(c.backend)
                .opt_level(case.opt_level)
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
        assert_batchnorm_fused(&case, &oracle, false);
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
                    MicroKernel::choose(&c.target, &lo)
                        .filter(|mk| match case.groups {
                            None => true,
                            Some((og, bits)) => {
                                og.is_multiple_of(mk.lanes)
                                    && (!bits || og.is_multiple_of(mk.lanes * mk.blocks))
                            }
                        })
                        .map(|mk| {
                            if let Some(t) = c.tile {
                                assert_eq!(mk.tile(), t, "{label}: the tile asked for");
                            }
                            mk.lanes as u16
                        })
                } else {
                    None
                };
                assert_eq!(
                    micro_kernel_lanes(&j),
                    want,
                    "{}: {label}: micro-kernel lanes",
                    case.name
                );
                assert_batchnorm_fused(&case, &j, want.is_some());
                (label, j)
            })
            .collect();
        for batch in BATCHES {
            let inputs = bnnc_runtime::inputs::random_inputs(
                &m.graph,
                batch,
                seed_of(&case.name) ^ batch as u64,
            )
            .unwrap();
            let want = bnnc_runtime::run(&m, &inputs).unwrap();
            let l = &oracle.compiled().lowered;
            let base = run_raw(&oracle, &inputs, batch);
            let got: Vec<Tensor> = base
                .iter()
                .zip(&l.outputs)
                .map(|(b, d)| from_words(b, d, batch))
                .collect();
            assert_eq!(
                got, want,
                "{}: scalar kernels vs interpreter, batch {batch}",
                case.name
            );
            for (label, j) in &jits {
                let raw = run_raw(j, &inputs, batch);
                assert!(
                    raw == base,
                    "{}: {label}: output words differ from the scalar kernels at batch {batch}\n{}",
                    case.name,
                    case.src
                );
                let l = &j.compiled().lowered;
                let got: Vec<Tensor> = raw
                    .iter()
                    .zip(&l.outputs)
                    .map(|(b, d)| from_words(b, d, batch))
                    .collect();
                assert_eq!(
                    got, want,
                    "{}: {label}: vs interpreter, batch {batch}",
                    case.name
                );
                checked += 1;
            }
        }
    }
    println!("{checked} (case, configuration, batch) runs checked");
}

/// A 3x3 binary conv, 64 -> 64 channels on 8x8, bits out.
fn conv3x3_64() -> Model {
    model(&conv(
        "asm",
        [8, 8, 64],
        64,
        [3, 3],
        ", padding=1, pad_value=+1",
        Epi::Thr,
    ))
}

/// Instruction lines of an assembly listing, each with whether it lies in a
/// loop: between a label and a later jump back to it (LLVM lays a loop's
/// blocks out contiguously, from its header to the latch's back edge).
fn lines_in_loops(listing: &str) -> Vec<(bool, &str)> {
    let mut labels: std::collections::HashMap<&str, usize> = Default::default();
    let mut lines: Vec<&str> = Vec::new();
    for l in listing.lines().map(str::trim) {
        let code = l.split('#').next().unwrap_or("").trim();
        if let Some(label) = code.strip_suffix(':') {
            labels.insert(label, lines.len());
        } else if !code.is_empty() && !code.starts_with('.') {
            lines.push(code);
        }
    }
    let mut in_loop = vec![false; lines.len()];
    for (at, l) in lines.iter().enumerate() {
        let mut words = l.split_whitespace();
        if words.next().is_some_and(|op| op.starts_with('j')) {
            if let Some(&head) = words.next().and_then(|t| labels.get(t)) {
                if head <= at {
                    in_loop[head..=at].iter_mut().for_each(|x| *x = true);
                }
            }
        }
    }
    in_loop.into_iter().zip(lines).collect()
}

#[test]
fn znver4_conv_uses_zmm_vpopcntq_in_its_loops_and_haswell_no_zmm() {
    if !Backend::Llvm.available() {
        let why = "LLVM is not built in (run with --features bnnc/llvm)";
        assert!(!ci(), "CI=true: {why}");
        eprintln!("skipping: {why}");
        return;
    }
    let m = conv3x3_64();
    let zen = llvm_asm(&m, "x86_64:znver4");
    let lines = lines_in_loops(&zen);
    let zmm_popcounts = lines
        .iter()
        .filter(|(in_loop, l)| *in_loop && l.starts_with("vpopcntq") && l.contains("zmm"))
        .count();
    // The register tile: P * B = 8 accumulators, each counted once per step.
    assert!(
        zmm_popcounts >= 8,
        "{zmm_popcounts} vpopcntq on zmm registers inside loops for znver4:\n{zen}"
    );
    let has = lines.iter().any(|(_, l)| l.starts_with("vpopcntq"));
    assert!(has, "no vpopcntq for znver4");
    let hsw = llvm_asm(&m, "x86_64:haswell");
    for (_, l) in lines_in_loops(&hsw) {
        assert!(
            !l.contains("zmm") && !l.starts_with("vpopcnt"),
            "AVX-512 for haswell: {l}"
        );
    }
    assert!(
        lines_in_loops(&hsw)
            .iter()
            .any(|(in_loop, l)| *in_loop && l.contains("ymm")),
        "haswell: no 256-bit vectors in the loops:\n{hsw}"
    );
}

/// The AVX2 instance (V = 4) counts bits with the nibble table: `vpshufb`
/// on ymm and `vpsadbw` inside its loops; the NEON instance (V = 2) with
/// `cnt` and widening pairwise adds (`uaddlp`, or `uadalp` accumulating;
/// Neoverse N1 also sums bytes with `udot`), for `b1` and ternary weights.
#[test]
fn avx2_and_neon_instances_use_their_popcount_sequences() {
    if !Backend::Llvm.available() {
        let why = "LLVM is not built in (run with --features bnnc/llvm)";
        assert!(!ci(), "CI=true: {why}");
        eprintln!("skipping: {why}");
        return;
    }
    let tern = model(&Case {
        name: "asm_ternary".into(),
        src: "model kb\ninput x: b1[N, 8, 8, 64]\nw = @w: ternary[64, 3, 3, 64]\n\
              acc = conv2d(x, w, padding=1, pad_value=+1)\ny = sign(acc)\noutput y\n"
            .into(),
        opt_level: 0,
        vector: true,
        groups: None,
    });
    for m in [conv3x3_64(), tern] {
        let hsw = llvm_asm(&m, "x86_64:haswell");
        let lines = lines_in_loops(&hsw);
        for op in ["vpshufb", "vpsadbw"] {
            assert!(
                lines
                    .iter()
                    .any(|(in_loop, l)| *in_loop && l.starts_with(op) && l.contains("ymm")),
                "haswell: no {op} on ymm in the loops:\n{hsw}"
            );
        }
        for cpu in ["cortex-a72", "neoverse-n1"] {
            let arm = llvm_asm(&m, &format!("aarch64:{cpu}"));
            let has = |op: &str| arm.lines().any(|l| l.split_whitespace().next() == Some(op));
            assert!(
                has("cnt") && (has("uaddlp") || has("uadalp")),
                "aarch64 {cpu}: no cnt with widening pairwise adds:\n{arm}"
            );
        }
    }
}

/// The micro-kernel each target gets, and the backend's limit over it.
#[test]
fn micro_kernel_widths_follow_target_and_backend() {
    let lanes = |t: &str, bits: u32| {
        MicroKernel::choose(
            &Target::parse(t).unwrap(),
            &LowerOptions::max_vector_bits(bits),
        )
        .map(|m| m.lanes)
    };
    assert_eq!(lanes("x86_64:znver4", 512), Some(8));
    assert_eq!(lanes("x86_64:znver4", 128), Some(2));
    assert_eq!(lanes("x86_64:haswell", 512), Some(4));
    assert_eq!(lanes("x86_64+popcnt+avx2", 512), Some(4));
    // 128 bits without a one-instruction lane popcount: scalar `popcnt`.
    assert_eq!(lanes("x86_64+popcnt+avx2", 128), Some(1));
    assert_eq!(lanes("x86_64+popcnt", 512), Some(1));
    assert_eq!(lanes("x86_64:haswell", 128), Some(1));
    // With one (Cranelift: vpopcntb and vpmullq), or without popcnt at all.
    assert_eq!(
        lanes("x86_64+popcnt+avx512f+avx512vl+avx512bitalg+avx512dq", 128),
        Some(2)
    );
    assert_eq!(lanes("x86_64", 128), Some(2));
    assert_eq!(lanes("aarch64", 128), Some(2));
    assert_eq!(lanes("riscv64", 512), None);
    assert_eq!(lanes("riscv64+zbb", 512), Some(1));
    assert_eq!(lanes("riscv64+zbb", 0), None);
    assert_eq!(lanes("x86_64:znver4", 0), None);
    // Through the pipeline: Cranelift never gets more than 128 bits, LLVM
    // what the target's features make worthwhile.
    let m = conv3x3_64();
    let kir = |t: &Target, b: Backend| {
        let opts = CompileOptions::new(t.clone())
            .backend(b)
            .opt_level(0)
            .emit([Emit::Kir]);
        let c = compile(&m, &opts).unwrap();
        String::from_utf8(c.artifacts[&Emit::Kir].clone()).unwrap()
    };
    // Cranelift takes no CPU model: znver4's features without it.
    let zen = Target::parse("x86_64:znver4").unwrap();
    let mut plain = Target::parse("x86_64").unwrap();
    for f in &zen.features {
        plain.add_feature(f).unwrap();
    }
    let text = kir(&plain, Backend::Cranelift);
    assert!(text.contains("i64x2") && !text.contains("i64x8"), "{text}");
    if Backend::Llvm.available() {
        let text = kir(&zen, Backend::Llvm);
        assert!(text.contains("i64x8"), "{text}");
        let text = kir(&plain, Backend::Llvm);
        assert!(text.contains("i64x8"), "{text}");
    }
}

/// The kir of the family's two vector instances on one small conv (3x3, 64
/// -> 16 channels, 3x3 pixels, pad +1, threshold -> bits): border pixels with
/// their checks and corrections, the interior tile, both epilogues. A
/// change to the emitter shows here as a diff to review.
#[test]
fn micro_kernel_kir_snapshots() {
    let m = model(&conv(
        "kir",
        [3, 3, 64],
        16,
        [3, 3],
        ", padding=1, pad_value=+1",
        Epi::Thr,
    ));
    for (name, backend, target) in [
        ("kir_b1dot_v8_znver4", Backend::Llvm, "x86_64:znver4"),
        ("kir_b1dot_v2_aarch64", Backend::Cranelift, "aarch64"),
    ] {
        if backend == Backend::Llvm && !Backend::Llvm.available() {
            let why = "kernels_b1: LLVM is not built in (run with --features bnnc/llvm)";
            assert!(!ci(), "CI=true: {why}");
            eprintln!("skipping {name}: {why}");
            continue;
        }
        let opts = CompileOptions::new(Target::parse(target).unwrap())
            .backend(backend)
            .opt_level(0)
            .emit([Emit::Kir]);
        let c = compile(&m, &opts).unwrap_or_else(|e| panic!("{target}: {e}"));
        let kir = String::from_utf8(c.artifacts[&Emit::Kir].clone()).unwrap();
        insta::assert_snapshot!(name, kir);
    }
}
