//! Throughput of the training kernels (`runtime::train::kernels`): the fast
//! conv2d/dense forward and backward against their naive oracles, in GFLOP/s.
//!
//! `cargo run --release -p bnnc-runtime --example train_kernels_bench [-- --no-naive] [NAME...]`
//!
//! With NAMEs, only the benchmarks whose name contains one of them run.
//! A forward pass counts `2 * n * oh * ow * o * kh * kw * c/groups` FLOPs
//! (`2 * n * k * o` for dense); backward computes dx and dw, twice that. Fast
//! kernels run repeatedly for at least half a second after one warm-up call and
//! report the best and the mean time; the oracles run once.

use std::time::{Duration, Instant};

use bnnc_ir::{Conv2dAttrs, PadValue};
use bnnc_train::kernels::{self, ConvGeom};

/// Best and mean wall time of `f` over repeated runs.
fn time(mut f: impl FnMut(), repeat: bool) -> (Duration, Duration) {
    if !repeat {
        let t = Instant::now();
        f();
        let d = t.elapsed();
        return (d, d);
    }
    f();
    let (mut best, mut total, mut runs) = (Duration::MAX, Duration::ZERO, 0u32);
    while runs < 3 || total < Duration::from_millis(500) {
        let t = Instant::now();
        f();
        let d = t.elapsed();
        best = best.min(d);
        total += d;
        runs += 1;
    }
    (best, total / runs)
}

fn report(name: &str, flops: f64, (best, mean): (Duration, Duration)) {
    let gf = |d: Duration| flops / d.as_secs_f64() / 1e9;
    println!(
        "{name:<44} {:>9.3} ms {:>8.2} GFLOP/s (mean {:.2})",
        best.as_secs_f64() * 1e3,
        gf(best),
        gf(mean)
    );
}

/// Deterministic values in [-1, 1).
fn values(len: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

fn bench_conv(name: &str, dims: [usize; 6], attrs: Conv2dAttrs, naive: bool) {
    if !selected(name) {
        return;
    }
    let [n, h, w, c, o, k] = dims;
    let cg = c / attrs.groups;
    let g = ConvGeom::new(&attrs, &[n, h, w, c], &[o, k, k, cg]).expect("bench geometry");
    let x = values(n * h * w * c, 1);
    let wt = values(o * k * k * cg, 2);
    let ylen = n * g.oh * g.ow * o;
    let dy = values(ylen, 3);
    let (mut y, mut dx, mut dw) = (vec![0.0; ylen], vec![0.0; x.len()], vec![0.0; wt.len()]);
    let flops = 2.0 * (n * g.oh * g.ow * o * k * k * cg) as f64;
    println!(
        "{name}: {dims:?} (n, h, w, c, o, k), {:.3} GFLOP forward",
        flops / 1e9
    );
    report(
        "  forward fast",
        flops,
        time(|| kernels::conv2d_forward(&g, &x, &wt, &mut y), true),
    );
    report(
        "  backward fast (dx + dw)",
        2.0 * flops,
        time(
            || kernels::conv2d_backward(&g, &x, &wt, &dy, Some(&mut dx), Some(&mut dw)),
            true,
        ),
    );
    if naive {
        report(
            "  forward naive",
            flops,
            time(|| kernels::conv2d_forward_naive(&g, &x, &wt, &mut y), false),
        );
        report(
            "  backward naive (dx + dw)",
            2.0 * flops,
            time(
                || kernels::conv2d_backward_naive(&g, &x, &wt, &dy, Some(&mut dx), Some(&mut dw)),
                false,
            ),
        );
    }
}

fn bench_dense(n: usize, k: usize, o: usize, naive: bool) {
    if !selected("dense") {
        return;
    }
    let (x, w, dy) = (values(n * k, 4), values(o * k, 5), values(n * o, 6));
    let (mut y, mut dx, mut dw) = (vec![0.0; n * o], vec![0.0; n * k], vec![0.0; o * k]);
    let flops = 2.0 * (n * k * o) as f64;
    println!(
        "dense: n {n}, k {k}, o {o}, {:.3} GFLOP forward",
        flops / 1e9
    );
    report(
        "  forward fast",
        flops,
        time(|| kernels::dense_forward(n, k, o, &x, &w, &mut y), true),
    );
    let backward = || kernels::dense_backward(n, k, o, &x, &w, &dy, Some(&mut dx), Some(&mut dw));
    report(
        "  backward fast (dx + dw)",
        2.0 * flops,
        time(backward, true),
    );
    if naive {
        report(
            "  forward naive",
            flops,
            time(
                || kernels::dense_forward_naive(n, k, o, &x, &w, &mut y),
                false,
            ),
        );
        let (mut dx, mut dw) = (vec![0.0; n * k], vec![0.0; o * k]);
        let backward =
            || kernels::dense_backward_naive(n, k, o, &x, &w, &dy, Some(&mut dx), Some(&mut dw));
        report(
            "  backward naive (dx + dw)",
            2.0 * flops,
            time(backward, false),
        );
    }
}

/// Whether the command line selects the benchmark `name`.
fn selected(name: &str) -> bool {
    let names: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    names.is_empty() || names.iter().any(|n| name.contains(n.as_str()))
}

fn main() {
    let naive = !std::env::args().any(|a| a == "--no-naive");
    let same = |groups| Conv2dAttrs {
        padding: [1; 4],
        groups,
        pad_value: Some(PadValue::MinusOne),
        ..Conv2dAttrs::default()
    };
    println!("rayon threads: {}", rayon::current_num_threads());
    bench_conv(
        "conv 3x3 pad 1 (-1)",
        [64, 14, 14, 64, 64, 3],
        same(1),
        naive,
    );
    bench_conv(
        "conv 3x3 pad 1, first layer",
        [64, 28, 28, 1, 32, 3],
        same(1),
        naive,
    );
    bench_conv(
        "conv 3x3 pad 1, 128 ch",
        [64, 7, 7, 128, 128, 3],
        same(1),
        naive,
    );
    bench_conv(
        "depthwise 3x3 pad 1",
        [64, 14, 14, 64, 64, 3],
        same(64),
        naive,
    );
    bench_conv(
        "pointwise 1x1",
        [64, 14, 14, 64, 128, 1],
        Conv2dAttrs::default(),
        naive,
    );
    bench_dense(64, 1024, 1024, naive);
}
