//! Compile time against model size: a benchmark, not a test (it asserts no
//! time). Run with
//!
//! ```text
//! cargo bench -p bnnc --bench compile_time                  # Cranelift
//! cargo bench -p bnnc --bench compile_time --features llvm  # and LLVM
//! ```
//!
//! Two families of models, each at 100, 1,000 and 10,000:
//! - `chain`: one input `f32[N, 64]` and a chain of that many `relu`s (one
//!   kernel each);
//! - `io`: that many inputs `f32[N, 4]` and as many outputs, `y_k = relu(x_k)`.
//!
//! Each model goes through [`bnnc::compile::compile`] with the default options
//! (optimizer on) to an object and a header with Cranelift, to a Cranelift JIT
//! ([`bnnc::jit::JitModel`]), and, when bnnc is built with `llvm`, to an LLVM
//! object. The table gives seconds per compilation and, per 10x more ops or
//! inputs, the ratio of the times: about 10 when compile time is linear, 100
//! when quadratic.
//!
//! `BNNC_BENCH_SIZES=100,1000` runs other sizes; `BNNC_BENCH_BACKENDS=cranelift,jit`
//! only some of the columns (`cranelift`, `jit`, `llvm`).

use std::time::Instant;

use bnnc::compile::{compile, Backend, CompileOptions, Emit};
use bnnc::jit::JitModel;
use bnnc_ir::Model;
use bnnc_kir::target::Target;

/// A chain of `n` relus over one input.
fn chain(n: usize) -> String {
    let mut s = String::from("model chain\ninput x: f32[N, 64]\n");
    let mut prev = "x".to_string();
    for i in 0..n {
        s.push_str(&format!("r{i} = relu({prev})\n"));
        prev = format!("r{i}");
    }
    s.push_str(&format!("output {prev}\n"));
    s
}

/// `n` inputs, each through one relu to its own output.
fn io(n: usize) -> String {
    let mut s = String::from("model io\n");
    for i in 0..n {
        s.push_str(&format!("input x{i}: f32[N, 4]\n"));
    }
    for i in 0..n {
        s.push_str(&format!("y{i} = relu(x{i})\n"));
    }
    for i in 0..n {
        s.push_str(&format!("output y{i}\n"));
    }
    s
}

fn model(src: &str) -> Model {
    let graph = bnnc_ir::text::parse(src).expect("the benchmark's model parses");
    Model::from_graph(graph, None, std::path::Path::new("bench.ir"))
        .expect("the benchmark's model verifies")
}

/// One column of the table: a way to compile.
#[derive(Clone, Copy, PartialEq)]
enum Column {
    Cranelift,
    Jit,
    Llvm,
}

impl Column {
    fn name(self) -> &'static str {
        match self {
            Column::Cranelift => "cranelift",
            Column::Jit => "jit",
            Column::Llvm => "llvm",
        }
    }

    /// Seconds to compile `m` this way.
    fn seconds(self, m: &Model) -> f64 {
        let start = Instant::now();
        match self {
            Column::Cranelift => {
                let opts = CompileOptions::new(Target::host().expect("host target"));
                let c = compile(m, &opts).expect("compiles");
                assert!(!c.artifacts[&Emit::Obj].is_empty());
            }
            Column::Jit => {
                let opts = CompileOptions::host(Backend::Cranelift).expect("host");
                JitModel::compile_with(m, &opts).expect("JIT compiles");
            }
            Column::Llvm => {
                let opts = CompileOptions::new(Target::host().expect("host target"))
                    .backend(Backend::Llvm);
                let c = compile(m, &opts).expect("compiles");
                assert!(!c.artifacts[&Emit::Obj].is_empty());
            }
        }
        start.elapsed().as_secs_f64()
    }
}

fn list(var: &str) -> Option<Vec<String>> {
    std::env::var(var)
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
}

fn main() {
    let sizes: Vec<usize> = list("BNNC_BENCH_SIZES")
        .map(|v| v.iter().map(|s| s.parse().expect("a size")).collect())
        .unwrap_or_else(|| vec![100, 1_000, 10_000]);
    let mut columns = vec![Column::Cranelift, Column::Jit];
    if Backend::Llvm.available() {
        columns.push(Column::Llvm);
    } else {
        eprintln!("(LLVM column skipped: build with `--features llvm`)");
    }
    if let Some(want) = list("BNNC_BENCH_BACKENDS") {
        columns.retain(|c| want.iter().any(|w| w == c.name()));
    }
    print!("{:<8} {:>7}", "model", "size");
    for c in &columns {
        print!(" {:>12} {:>7}", format!("{} s", c.name()), "x/10x");
    }
    println!();
    for (family, make) in [("chain", chain as fn(usize) -> String), ("io", io)] {
        let mut prev: Vec<Option<(usize, f64)>> = vec![None; columns.len()];
        for &n in &sizes {
            let m = model(&make(n));
            print!("{family:<8} {n:>7}");
            for (k, c) in columns.iter().enumerate() {
                let t = c.seconds(&m);
                let ratio = match prev[k] {
                    Some((pn, pt)) if n == pn * 10 && pt > 0.0 => format!("{:.1}", t / pt),
                    _ => "-".to_string(),
                };
                print!(" {t:>12.3} {ratio:>7}");
                prev[k] = Some((n, t));
            }
            println!();
        }
    }
}
