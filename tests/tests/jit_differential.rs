//! Differential tests: the Cranelift JIT computes exactly what the reference
//! interpreter computes, on every example and on random graphs.
//!
//! Comparison is bit-exact for every output, floats included: the kernels add
//! and multiply in the interpreter's order with no contraction, and `expf` is
//! the same libm function, so no tolerance is needed.

use std::path::Path;

use bnnc::compile::CompileError;
use bnnc::jit::JitModel;
use bnnc::lower::LowerError;
use bnnc_ir::{Model, Tensor, TensorData};
use bnnc_tests::gen::{random_graph, random_tensor, GenOptions, Rng};

/// Random inputs for a model at `batch`, with exact zeros and -0.0 mixed in.
fn inputs(model: &Model, batch: usize, rng: &mut Rng) -> Vec<Tensor> {
    model
        .graph
        .inputs()
        .into_iter()
        .map(|v| {
            let ty = model.ty(v);
            let dims = ty.dims(batch);
            let mut t = random_tensor(rng, ty.elem, &dims);
            if let TensorData::F32(x) = &mut t.data {
                for (i, e) in x.iter_mut().enumerate() {
                    match i % 13 {
                        3 => *e = 0.0,
                        7 => *e = -0.0,
                        _ => *e *= 2.0,
                    }
                }
            }
            t
        })
        .collect()
}

fn same(a: &Tensor, b: &Tensor) -> Result<(), String> {
    if a.elem != b.elem || a.dims != b.dims {
        return Err(format!(
            "type/shape: {:?}{:?} vs {:?}{:?}",
            a.elem, a.dims, b.elem, b.dims
        ));
    }
    match (&a.data, &b.data) {
        (TensorData::F32(x), TensorData::F32(y)) => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                if p.to_bits() != q.to_bits() && !(p.is_nan() && q.is_nan()) {
                    return Err(format!("element {i}: jit {p:?} vs interpreter {q:?}"));
                }
            }
        }
        (TensorData::Int(x), TensorData::Int(y)) => {
            if let Some(i) = (0..x.len()).find(|&i| x[i] != y[i]) {
                return Err(format!("element {i}: jit {} vs interpreter {}", x[i], y[i]));
            }
        }
        _ => return Err("storage differs".into()),
    }
    Ok(())
}

fn check_model(model: &Model, batches: &[usize], seed: u64) -> Result<(), String> {
    let jit = JitModel::compile(model).map_err(|e| format!("compile: {e}"))?;
    let mut rng = Rng::new(seed);
    for &batch in batches {
        let x = inputs(model, batch, &mut rng);
        let want = bnnc_runtime::run(model, &x).map_err(|e| format!("interpreter: {e}"))?;
        let got = jit.run(&x).map_err(|e| format!("jit: {e}"))?;
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            let name = &model.graph.node(model.graph.outputs[k]).name;
            same(g, w).map_err(|e| format!("batch {batch}, output `{name}`: {e}"))?;
        }
    }
    Ok(())
}

/// Every `.ir` file of a folder, sorted.
fn models_in(dir: &str) -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "ir"))
        .collect();
    v.sort();
    v
}

#[test]
fn examples_match_the_interpreter() {
    let models = models_in("../examples");
    assert!(models.len() >= 4);
    for p in models {
        let m = Model::load(&p).unwrap();
        check_model(&m, &[1, 7], 11).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }
}

/// `check_model`, but the JIT compiles the optimized model while the
/// interpreter runs the original.
fn check_optimized(model: &Model, batches: &[usize], seed: u64) -> Result<(), String> {
    let opt = bnnc::opt::optimize(model).map_err(|e| format!("optimize: {e}"))?;
    let jit = JitModel::compile(&opt.model).map_err(|e| format!("compile: {e}"))?;
    let mut rng = Rng::new(seed);
    for &batch in batches {
        let x = inputs(model, batch, &mut rng);
        let want = bnnc_runtime::run(model, &x).map_err(|e| format!("interpreter: {e}"))?;
        let got = jit.run(&x).map_err(|e| format!("jit: {e}"))?;
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            same(g, w).map_err(|e| format!("batch {batch}, output {k}: {e}"))?;
        }
    }
    Ok(())
}

/// The optimized model, JIT-compiled, computes what the interpreter computes
/// on the original: examples and corpus, shipped weights and random batch-norm
/// statistics (negative and zero gammas).
#[test]
fn optimized_models_match_the_interpreter_on_the_original() {
    for p in models_in("../examples")
        .into_iter()
        .chain(models_in("corpus"))
    {
        let m = Model::load(&p).unwrap();
        check_optimized(&m, &[1, 7], 5).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let checked = bnnc::load::load_graph(&p).unwrap();
        for seed in [1, 2] {
            let w = bnnc::init::init_weights(
                &checked.graph,
                &checked.types,
                bnnc::init::InitOptions {
                    seed,
                    random_stats: true,
                },
            )
            .unwrap();
            let m = Model::from_graph(checked.graph.clone(), Some(&w), &p).unwrap();
            check_optimized(&m, &[3], seed)
                .unwrap_or_else(|e| panic!("{} (stats seed {seed}): {e}", p.display()));
        }
    }
}

#[test]
fn corpus_matches_the_interpreter() {
    let models = models_in("corpus");
    assert!(models.len() >= 10);
    for p in models {
        let m = Model::load(&p).unwrap();
        check_model(&m, &[1, 7], 23).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config {
        // 500 graphs that compile (graphs with types the native backends do not
        // lower yet are rejected by prop_assume and do not count). A failure is
        // shrunk by shrinking the choice stream and saved to
        // tests/regressions/jit_differential.txt (committed), whose cases run
        // first on every later run.
        cases: 500,
        max_global_rejects: 5000,
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::Direct(
            "regressions/jit_differential.txt",
        ))),
        ..proptest::test_runner::Config::default()
    })]

    #[test]
    fn random_graphs_match_the_interpreter(choices in proptest::collection::vec(proptest::prelude::any::<u32>(), 0..48)) {
        let g = random_graph(&choices, &GenOptions { max_ops: 8 });
        let model = Model::from_graph(g.graph.clone(), Some(&g.weights), Path::new("random.ir")).unwrap();
        let text = bnnc_ir::text::print(&g.graph);
        match JitModel::compile(&model) {
            Err(CompileError::Lower(LowerError::Unsupported { .. })) => {
                proptest::prop_assume!(false);
            }
            Err(e) => return Err(proptest::test_runner::TestCaseError::fail(format!("{e}\n{text}"))),
            Ok(_) => {}
        }
        let seed = choices.iter().fold(7u64, |h, &c| h.wrapping_mul(31).wrapping_add(c as u64));
        check_model(&model, &[1, 3], seed)
            .map_err(|e| proptest::test_runner::TestCaseError::fail(format!("{e}\n{text}")))?;
    }
}
