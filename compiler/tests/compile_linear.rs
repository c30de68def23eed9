//! Compile time stays linear in the model's size: the shape of what lowering
//! and the backends produce for models with many kernels and many inputs and
//! outputs (no test here measures a time; `benches/compile_time.rs` reports
//! them), and that code computing the interpreter's results.
//!
//! The quadratic costs this guards against: one body function calling every
//! kernel with every input and output pointer live across all the calls
//! (register allocation quadratic in pointers times kernels), a branch per
//! pointer in the entry points (SSA construction and register allocation
//! quadratic in the pointers), LLVM inlining every kernel into one function
//! (`default<O3>` quadratic in the kernels), and LLVM calls with thousands of
//! arguments (its interprocedural passes quadratic in the arguments).

use bnnc::compile::{Backend, CompileOptions};
use bnnc::jit::JitModel;
use bnnc::lower::{lower, Lowered};
use bnnc_ir::{ElemType, Model, Tensor};
use bnnc_kir::target::Target;
use bnnc_kir::{Expr, Function, Stmt};

/// `n` inputs `f32[N, 4]`, each through one relu to its own output.
fn io(n: usize) -> Model {
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
    let g = bnnc_ir::text::parse(&s).unwrap();
    Model::from_graph(g, None, std::path::Path::new("io.ir")).unwrap()
}

/// A chain of `n` relus.
fn chain(n: usize) -> Model {
    let mut s = String::from("model chain\ninput x: f32[N, 8]\n");
    let mut prev = "x".to_string();
    for i in 0..n {
        s.push_str(&format!("r{i} = relu({prev})\n"));
        prev = format!("r{i}");
    }
    s.push_str(&format!("output {prev}\n"));
    let g = bnnc_ir::text::parse(&s).unwrap();
    Model::from_graph(g, None, std::path::Path::new("chain.ir")).unwrap()
}

fn calls(b: &[Stmt]) -> usize {
    b.iter()
        .map(|s| match s {
            Stmt::Call(..) => 1,
            Stmt::For { body, .. } => calls(body),
            Stmt::If { then, els, .. } => calls(then) + calls(els),
            _ => 0,
        })
        .sum()
}

fn ifs(b: &[Stmt]) -> usize {
    b.iter()
        .map(|s| match s {
            Stmt::If { then, els, .. } => 1 + ifs(then) + ifs(els),
            Stmt::For { body, .. } => ifs(body),
            _ => 0,
        })
        .sum()
}

fn depth(e: &Expr) -> usize {
    match e {
        Expr::Bin(_, a, b) | Expr::Cmp(_, a, b) => 1 + depth(a).max(depth(b)),
        Expr::Un(_, a) | Expr::Cast(_, a, _) | Expr::Load(_, a) => 1 + depth(a),
        _ => 1,
    }
}

fn max_depth(b: &[Stmt]) -> usize {
    b.iter()
        .map(|s| match s {
            Stmt::If { cond, then, els } => depth(cond).max(max_depth(then)).max(max_depth(els)),
            Stmt::Call(_, args) => args.iter().map(depth).max().unwrap_or(0),
            Stmt::Assign(_, e) => depth(e),
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}

fn function<'a>(l: &'a Lowered, name: &str) -> &'a Function {
    l.module
        .functions
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no function `{name}`"))
}

/// With 600 inputs and 600 outputs: no function calls more than 16 kernels
/// (the body is a tree of functions, each holding the pointers of its part),
/// the entry points test the 1,200 pointers with one branch per 64 of them,
/// on `or` trees 6 deep.
#[test]
fn entry_points_and_body_stay_small_with_many_inputs() {
    let l = lower(&io(600), &Target::host().unwrap()).unwrap();
    for f in &l.module.functions {
        assert!(
            calls(&f.body) <= 16,
            "`{}` makes {} calls",
            f.name,
            calls(&f.body)
        );
    }
    for name in ["io_run", "io_run_v", "io_run_checked"] {
        let f = function(&l, name);
        // The batch, the pointer groups, the arrays (run_v), the workspace.
        assert!(
            ifs(&f.body) <= 1200usize.div_ceil(64) + 6,
            "`{name}`: {} ifs",
            ifs(&f.body)
        );
        assert!(
            max_depth(&f.body) <= 12,
            "`{name}`: depth {}",
            max_depth(&f.body)
        );
    }
    // A chain of 100 kernels: a tree of body functions as well.
    let l = lower(&chain(100), &Target::host().unwrap()).unwrap();
    for f in &l.module.functions {
        assert!(
            calls(&f.body) <= 16,
            "`{}` makes {} calls",
            f.name,
            calls(&f.body)
        );
    }
}

fn inputs(n: usize) -> Vec<Tensor> {
    (0..n)
        .map(|i| {
            let v = (0..8)
                .map(|j| (i as f32 - 300.0) * 0.25 + j as f32 - 4.0)
                .collect();
            Tensor::f32(vec![2, 4], v)
        })
        .collect()
}

/// The 600-input model through each backend's JIT (its wide entry points and
/// body functions compiled as described) computes every output from its own
/// input, as the interpreter does.
#[test]
fn many_inputs_compute_the_interpreters_outputs() {
    let m = io(600);
    let xs = inputs(600);
    let want = bnnc_runtime::run(&m, &xs).unwrap();
    for backend in [Backend::Cranelift, Backend::Llvm] {
        if !backend.available() {
            eprintln!("skipped: {backend} is not built in");
            continue;
        }
        let opts = CompileOptions::host(backend).unwrap();
        let jit = JitModel::compile_with(&m, &opts).unwrap();
        let got = jit.run(&xs).unwrap();
        assert_eq!(got.len(), want.len());
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.elem, ElemType::F32);
            let bits = |t: &Tensor| -> Vec<u32> {
                t.as_f32().unwrap().iter().map(|x| x.to_bits()).collect()
            };
            assert_eq!(bits(g), bits(w), "{backend}: output {k}");
        }
    }
}

/// LLVM: local functions are `noinline` (every kernel keeps its own
/// function), local functions with hundreds of parameters take them packed
/// in memory (one `ptr %args`), and wide functions are `optnone`.
#[test]
fn llvm_keeps_kernels_apart_and_packs_wide_calls() {
    if !Backend::Llvm.available() {
        eprintln!("skipped: LLVM is not built in");
        return;
    }
    let l = lower(&io(300), &Target::parse("x86_64").unwrap()).unwrap();
    let ir = bnnc_llvm::llvm_ir(
        &l.module,
        &Target::parse("x86_64").unwrap(),
        bnnc_llvm::Stage::Translated,
    )
    .unwrap();
    let attrs = |group: &str| -> String {
        ir.lines()
            .find(|line| line.starts_with(&format!("attributes {group} = ")))
            .unwrap_or_else(|| panic!("no attribute group {group}"))
            .to_string()
    };
    let mut packed = 0;
    for line in ir.lines().filter(|l| l.starts_with("define ")) {
        let group = line.rsplit(' ').nth(1).expect("an attribute group");
        let a = attrs(group);
        if line.contains(" internal ") {
            assert!(a.contains("noinline"), "{line}\n{a}");
        }
        if line.contains("@io_body(ptr %args)") {
            packed += 1;
            assert!(a.contains("optnone"), "{line}\n{a}");
        }
        if line.contains("@io_run(") {
            assert!(a.contains("optnone"), "{}\n{a}", &line[..80]);
        }
    }
    assert_eq!(packed, 1, "the body's 600 pointers are packed");
}

type RunV = unsafe extern "C" fn(*const *const u8, *const *mut u8, *mut u8, u64) -> i32;

/// `io_run_v` of the 600-input model, as each backend's JIT compiles it,
/// returns `ERR_NULL_POINTER` (1) for a null pointer in any group of the
/// 1,200 it tests, first, middle and last, and `OK` (0) without one.
#[test]
fn a_null_pointer_among_many_is_found() {
    let l = lower(&io(600), &Target::host().unwrap()).unwrap();
    let target = Target::host().unwrap();
    let check = |run_v: RunV, backend: &str| {
        let ws_bytes = l.workspace.bytes(1).unwrap() as usize;
        let mut ws = vec![0u64; ws_bytes.div_ceil(8).max(1)];
        let ins: Vec<Vec<f32>> = (0..600).map(|i| vec![i as f32 - 300.0; 4]).collect();
        let mut outs: Vec<Vec<f32>> = (0..600).map(|_| vec![0.0; 4]).collect();
        let in_ptrs: Vec<*const u8> = ins.iter().map(|v| v.as_ptr() as *const u8).collect();
        let out_ptrs: Vec<*mut u8> = outs.iter_mut().map(|v| v.as_mut_ptr() as *mut u8).collect();
        let ws = ws.as_mut_ptr() as *mut u8;
        for null in [0usize, 333, 599, 600, 1199] {
            let (mut i, mut o) = (in_ptrs.clone(), out_ptrs.clone());
            if null < 600 {
                i[null] = std::ptr::null();
            } else {
                o[null - 600] = std::ptr::null_mut();
            }
            // SAFETY: the arrays hold 600 pointers each, to buffers of one
            // sample (or null), and the workspace has the size asked for.
            let status = unsafe { run_v(i.as_ptr(), o.as_ptr(), ws, 1) };
            assert_eq!(status, 1, "{backend}: null pointer {null}");
        }
        // SAFETY: as above, with every pointer valid.
        let status = unsafe { run_v(in_ptrs.as_ptr(), out_ptrs.as_ptr(), ws, 1) };
        assert_eq!(status, 0, "{backend}");
        for (k, out) in outs.iter().enumerate() {
            assert_eq!(out[0], (k as f32 - 300.0).max(0.0), "{backend}: output {k}");
        }
    };
    let cl = bnnc_cranelift::Jit::new(&l.module, &target).unwrap();
    let f = cl.function("io_run_v").unwrap();
    // SAFETY: `io_run_v` has this signature (see `bnnc::abi`).
    check(
        unsafe { std::mem::transmute::<*const u8, RunV>(f) },
        "cranelift",
    );
    if Backend::Llvm.available() {
        let t = Target::native_cpu().unwrap();
        let jit = bnnc_llvm::Jit::new(&l.module, &t).unwrap();
        let f = jit.function("io_run_v").unwrap();
        // SAFETY: as above.
        check(unsafe { std::mem::transmute::<*const u8, RunV>(f) }, "llvm");
    }
}
