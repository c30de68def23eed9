//! The float stems of binary networks: bnnc's f32 micro-kernel against its
//! scalar loops and a single-thread sgemm (`matrixmultiply`) on the im2col
//! form of the same problem, in one run. A benchmark, not a test (it asserts
//! no time). Run with
//!
//! ```text
//! cargo bench -p bnnc --bench f32_conv --features llvm
//! ```
//!
//! Shapes (batch 1):
//! - `resnete18_stem`: BinaryResNetE18's stem, 224x224x3 -> 64, 7x7 stride 2,
//!   padding 3 (112x112 outputs), f32 weights;
//! - `alexnet_conv1`: BinaryAlexNet's first conv, 224x224x3 -> 64, 11x11
//!   stride 4, padding `same` (3 above and left, 4 below and right: 56x56
//!   outputs), `b1` weights (float input);
//! - `depthwise3x3`: a MobileNet-style depthwise conv, 112x112x64, 3x3,
//!   padding 1, `groups=64` (no sgemm column: it is no matrix product).
//!
//! Columns: milliseconds per run (the minimum of the timed runs) and GFLOP/s
//! counting `2 * pixels * kh*kw*C * O` (padded taps included) for the
//! LLVM code on this CPU (`native`) with the micro-kernel and with the scalar
//! loops (`max_vector_bits(0)`, the code before the micro-kernel), Cranelift
//! `native`, and `matrixmultiply::sgemm` with one thread on the im2col matrix
//! (built once, outside the timing). `BNNC_BENCH_BACKENDS=llvm,sgemm` runs
//! some of the columns (`llvm`, `scalar`, `cranelift`, `sgemm`);
//! `BNNC_BENCH_TILE=6x4` pins the micro-kernel's tile;
//! `BNNC_BENCH_CPU=x86_64:haswell` compiles the LLVM columns for that
//! target (it must run here) instead of the host CPU.

use std::path::Path;
use std::time::Instant;

use bnnc::compile::{Backend, CompileOptions};
use bnnc::jit::{to_words, JitModel};
use bnnc_ir::{ElemType, Model, Tensor, Weights};
use bnnc_kir::target::Target;

struct Shape {
    name: &'static str,
    k: usize,
    stride: usize,
    /// `[top, left, bottom, right]`.
    pad: [usize; 4],
    wt: ElemType,
}

const H: usize = 224;
const C: usize = 3;
const O: usize = 64;

impl Shape {
    fn out(&self) -> usize {
        (H + self.pad[0] + self.pad[2] - self.k) / self.stride + 1
    }

    fn flops(&self) -> f64 {
        let p = self.out() * self.out();
        2.0 * (p * self.k * self.k * C * O) as f64
    }

    fn src(&self) -> String {
        let wt = if self.wt == ElemType::B1 { "b1" } else { "f32" };
        let [t, l, b, r] = self.pad;
        format!(
            "model stem\ninput x: f32[N, {H}, {H}, {C}]\nw = @w: {wt}[{O}, {k}, {k}, {C}]\n\
             y = conv2d(x, w, stride={s}, padding=[{t}, {l}, {b}, {r}])\noutput y\n",
            k = self.k,
            s = self.stride
        )
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn float(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

fn model(s: &Shape, w: &[f32]) -> Model {
    let graph = bnnc_ir::text::parse(&s.src()).expect("the benchmark's model parses");
    let dims = vec![O, s.k, s.k, C];
    let t = match s.wt {
        ElemType::B1 => Tensor::int(
            ElemType::B1,
            dims,
            w.iter().map(|&x| if x < 0.0 { -1 } else { 1 }).collect(),
        ),
        _ => Tensor::f32(dims, w.to_vec()),
    };
    let mut weights = Weights::new();
    weights.insert("w", t);
    Model::from_graph(graph, Some(&weights), Path::new("stem.ir")).expect("the model verifies")
}

/// Seconds of the fastest of `reps` runs of `f` (after one warm-up).
fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn time_jit(m: &Model, opts: &CompileOptions, x: &Tensor, reps: usize) -> f64 {
    let j = JitModel::compile_with(m, opts).expect("the model compiles");
    let l = &j.compiled().lowered;
    let xin = to_words(x, &l.inputs[0]);
    let mut out = vec![0u64; (l.outputs[0].bytes(1) as usize).div_ceil(8)];
    let mut ws = vec![0u64; (l.workspace.bytes(1).unwrap() as usize).div_ceil(8).max(1)];
    time(reps, || {
        j.run_words(&[&xin], &mut [&mut out], &mut ws, 1)
            .expect("the model runs")
    })
}

/// The im2col matrix `[pixels][kh*kw*C]` (padded taps 0) of `x`.
fn im2col(s: &Shape, x: &[f32]) -> Vec<f32> {
    let (oh, k) = (s.out(), s.k);
    let kk = k * k * C;
    let mut a = vec![0.0f32; oh * oh * kk];
    for oy in 0..oh {
        for ox in 0..oh {
            let row = &mut a[(oy * oh + ox) * kk..][..kk];
            for i in 0..k {
                let iy = (oy * s.stride + i) as isize - s.pad[0] as isize;
                if !(0..H as isize).contains(&iy) {
                    continue;
                }
                for j in 0..k {
                    let ix = (ox * s.stride + j) as isize - s.pad[1] as isize;
                    if !(0..H as isize).contains(&ix) {
                        continue;
                    }
                    let src = ((iy as usize * H) + ix as usize) * C;
                    row[(i * k + j) * C..][..C].copy_from_slice(&x[src..src + C]);
                }
            }
        }
    }
    a
}

fn main() {
    // matrixmultiply reads its thread count once, at its first call.
    std::env::set_var("MATMUL_NUM_THREADS", "1");
    let cols: Vec<String> = std::env::var("BNNC_BENCH_BACKENDS")
        .unwrap_or_else(|_| "llvm,scalar,cranelift,sgemm".into())
        .split(',')
        .map(str::to_string)
        .collect();
    let on = |c: &str| cols.iter().any(|x| x == c);
    let tile = std::env::var("BNNC_BENCH_TILE")
        .ok()
        .map(|t| t.parse().expect("BNNC_BENCH_TILE: PIXELSxBLOCKS"));
    let shapes = [
        Shape {
            name: "resnete18_stem",
            k: 7,
            stride: 2,
            pad: [3, 3, 3, 3],
            wt: ElemType::F32,
        },
        Shape {
            name: "alexnet_conv1",
            k: 11,
            stride: 4,
            pad: [3, 3, 4, 4],
            wt: ElemType::B1,
        },
    ];
    println!(
        "{:<16} {:>18} {:>18} {:>18} {:>18}   vector/sgemm",
        "shape", "llvm vector", "llvm scalar", "cranelift", "sgemm 1 thread"
    );
    let cell = |t: Option<f64>, flops: f64| match t {
        Some(t) => format!("{:>7.2} ms {:>5.1} GF", t * 1e3, flops / t / 1e9),
        None => format!("{:>18}", "-"),
    };
    for s in &shapes {
        let mut rng = Rng(7);
        let w: Vec<f32> = (0..O * s.k * s.k * C).map(|_| rng.float()).collect();
        let x: Vec<f32> = (0..H * H * C).map(|_| rng.float()).collect();
        let m = model(s, &w);
        let xt = Tensor::f32(vec![1, H, H, C], x.clone());
        let llvm = Backend::Llvm.available() && (on("llvm") || on("scalar"));
        let native = || match std::env::var("BNNC_BENCH_CPU") {
            Ok(t) => Target::parse(&t).expect("BNNC_BENCH_CPU: a target"),
            Err(_) => Target::native_cpu().expect("the host CPU"),
        };
        let llvm_opts = || {
            CompileOptions::new(native())
                .backend(Backend::Llvm)
                .emit([])
                .tile(tile)
        };
        let vector = (llvm && on("llvm")).then(|| time_jit(&m, &llvm_opts(), &xt, 20));
        let scalar =
            (llvm && on("scalar")).then(|| time_jit(&m, &llvm_opts().max_vector_bits(0), &xt, 3));
        let cranelift = on("cranelift").then(|| {
            let opts = CompileOptions::new(Target::host().expect("the host"))
                .backend(Backend::Cranelift)
                .emit([])
                .tile(tile);
            time_jit(&m, &opts, &xt, 10)
        });
        let sgemm = on("sgemm").then(|| {
            let a = im2col(s, &x);
            // B = w^T: [kh*kw*C][O], read through strides from w [O][kk].
            let wf: Vec<f32> = match s.wt {
                ElemType::B1 => w
                    .iter()
                    .map(|&v| if v < 0.0 { -1.0 } else { 1.0 })
                    .collect(),
                _ => w.clone(),
            };
            let (m_, k_, n_) = (s.out() * s.out(), s.k * s.k * C, O);
            let mut c = vec![0.0f32; m_ * n_];
            time(20, || unsafe {
                // SAFETY: a is m x k row-major, wf is n x k row-major (read
                // as k x n with strides 1, k), c is m x n row-major.
                matrixmultiply::sgemm(
                    m_,
                    k_,
                    n_,
                    1.0,
                    a.as_ptr(),
                    k_ as isize,
                    1,
                    wf.as_ptr(),
                    1,
                    k_ as isize,
                    0.0,
                    c.as_mut_ptr(),
                    n_ as isize,
                    1,
                )
            })
        });
        let f = s.flops();
        let ratio = match (vector, sgemm) {
            (Some(v), Some(g)) => format!("{:.2}", g / v),
            _ => "-".into(),
        };
        println!(
            "{:<16} {} {} {} {}   {ratio}",
            s.name,
            cell(vector, f),
            cell(scalar, f),
            cell(cranelift, f),
            cell(sgemm, f)
        );
    }
    // Depthwise: 2 * pixels * taps * channels.
    let (h, c) = (112, 64);
    let src = format!(
        "model dw\ninput x: f32[N, {h}, {h}, {c}]\nw = @w: f32[{c}, 3, 3, 1]\n\
         y = conv2d(x, w, padding=1, groups={c})\noutput y\n"
    );
    let graph = bnnc_ir::text::parse(&src).expect("the benchmark's model parses");
    let mut rng = Rng(11);
    let mut weights = Weights::new();
    let w: Vec<f32> = (0..c * 9).map(|_| rng.float()).collect();
    weights.insert("w", Tensor::f32(vec![c, 3, 3, 1], w));
    let m = Model::from_graph(graph, Some(&weights), Path::new("dw.ir")).expect("verifies");
    let xt = Tensor::f32(
        vec![1, h, h, c],
        (0..h * h * c).map(|_| rng.float()).collect(),
    );
    let f = 2.0 * (h * h * 9 * c) as f64;
    let llvm = Backend::Llvm.available();
    let native = || match std::env::var("BNNC_BENCH_CPU") {
        Ok(t) => Target::parse(&t).expect("BNNC_BENCH_CPU: a target"),
        Err(_) => Target::native_cpu().expect("the host CPU"),
    };
    let llvm_opts = || {
        CompileOptions::new(native())
            .backend(Backend::Llvm)
            .emit([])
            .tile(tile)
    };
    let vector = (llvm && on("llvm")).then(|| time_jit(&m, &llvm_opts(), &xt, 20));
    let scalar =
        (llvm && on("scalar")).then(|| time_jit(&m, &llvm_opts().max_vector_bits(0), &xt, 3));
    let cranelift = on("cranelift").then(|| {
        let opts = CompileOptions::new(Target::host().expect("the host"))
            .backend(Backend::Cranelift)
            .emit([])
            .tile(tile);
        time_jit(&m, &opts, &xt, 10)
    });
    println!(
        "{:<16} {} {} {} {}   -",
        "depthwise3x3",
        cell(vector, f),
        cell(scalar, f),
        cell(cranelift, f),
        cell(None, f)
    );
}
