//! The one differential runner: a set of models ([`Case`]s: the corpus, the
//! examples, random graphs) runs on a set of [`Engine`]s at several batch
//! sizes and optimization levels, and every output must equal, bit for bit,
//! what the reference interpreter computes on the ORIGINAL model with the
//! same inputs (opt level 1 is the optimizer's model against the original).
//!
//! [`Suite::run`] prints one line per engine to the test output (past
//! libtest's capture): the models it ran, or why it was skipped. An engine
//! that cannot run here (LLVM not built in, a tool missing) is skipped, but
//! under `CI=true` it fails the test.
//!
//! Opt level 1 is not compiled again when its kernel IR is exactly the opt
//! level 0 kernel IR for that engine's target (the optimizer changed nothing
//! the lowering keeps): the same kir gives the same code. The report counts
//! those models.
//!
//! Jobs (one per model and engine: compile and link at each opt level, run
//! every batch) run on `BNNC_TEST_THREADS` threads (default: the CPUs);
//! `BNNC_TEST_VERBOSE=1` reports the time of each; `BNNC_TEST_OPT_LEVELS=0`
//! (or `1`) runs only that opt level, for a quicker local run.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bnnc::compile::{compile, CompileError};
use bnnc::lower::LowerError;
use bnnc_ir::{Model, Tensor};
use bnnc_kir::target::Target;

use crate::diff::{compare_outputs, inputs, Specials};
use crate::engine::{ci, Engine};
use crate::gen::{random_graph, GenOptions, Rng};

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    p.canonicalize().unwrap_or(p)
}

/// `<target dir>/tmp/bnnc-tests/<test binary>/<name>`, without creating it.
pub fn scratch_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // Test binaries run from <target dir>/<profile>/deps/.
    let base = exe
        .ancestors()
        .nth(3)
        .map(|t| t.join("tmp"))
        .filter(|t| t.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let binary = exe
        .file_stem()
        .map(|s| {
            s.to_string_lossy()
                .split('-')
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default();
    base.join("bnnc-tests").join(binary).join(name)
}

/// A fresh (empty) scratch folder; see [`scratch_path`].
pub fn scratch(name: &str) -> PathBuf {
    let dir = scratch_path(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

/// Prints a line to the test output even when libtest captures it.
pub fn report(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// A model to run, with a label (`examples/mnist_mlp`, `random17`) and
/// context printed when it fails (a random graph's choices and text).
#[derive(Clone, Debug)]
pub struct Case {
    pub label: String,
    pub model: Model,
    pub context: String,
}

impl Case {
    pub fn new(label: impl Into<String>, model: Model) -> Case {
        Case {
            label: label.into(),
            model,
            context: String::new(),
        }
    }
}

/// The `.ir` files of `dir` (relative to the repository root), sorted.
pub fn model_files(dir: &str) -> Vec<PathBuf> {
    let dir = repo_root().join(dir);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "ir"))
        .collect();
    v.sort();
    v
}

/// Every model of `dir` (relative to the repository root) with its
/// weights (see [`load_or_init`]), labelled `dir/stem` (`corpus/dense`).
pub fn load_dir(dir: &str) -> Vec<Case> {
    model_files(dir)
        .into_iter()
        .map(|p| {
            let label = format!(
                "{}/{}",
                dir.trim_start_matches("tests/"),
                p.file_stem().unwrap().to_string_lossy()
            );
            Case::new(label, load_or_init(&p))
        })
        .collect()
}

/// The model at `path` with its weights file, or, when that file does not
/// exist (a model shipped for `bnnc train` to initialise), the weights
/// `bnnc init --seed 1` writes.
pub fn load_or_init(path: &Path) -> Model {
    let src = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let graph = Model::parse_checked(&src, path).unwrap_or_else(|e| panic!("{e}"));
    let weights = match Model::weights_path(&graph, path) {
        Some(w) if !w.exists() => {
            let types = bnnc_ir::verify::verify(&graph).unwrap();
            let opts = bnnc_train::init::InitOptions {
                seed: 1,
                random_stats: false,
            };
            Some(bnnc_train::init::init_weights(&graph, &types, opts).unwrap())
        }
        _ => None,
    };
    match weights {
        Some(w) => Model::from_graph(graph, Some(&w), path),
        None => Model::load(path),
    }
    .unwrap_or_else(|e| panic!("{e}"))
}

/// `examples/*.ir`.
pub fn examples() -> Vec<Case> {
    let v = load_dir("examples");
    assert!(v.len() >= 4, "examples/ has {} models", v.len());
    v
}

/// `examples/train/*.ir` (trained weights where they are committed).
pub fn train_examples() -> Vec<Case> {
    load_dir("examples/train")
}

/// `tests/corpus/*.ir`.
pub fn corpus() -> Vec<Case> {
    let v = load_dir("tests/corpus");
    assert!(v.len() >= 12, "the corpus has {} models", v.len());
    v
}

/// Whether the native backends lower `model` for `target`: `Ok(false)` for
/// the types they refuse (n-bit, ternary and int8 kernels), `Err` for any
/// other lowering error.
pub fn lowers(model: &Model, target: &Target) -> Result<bool, String> {
    match bnnc::lower::lower(model, target).map_err(CompileError::Lower) {
        Ok(_) => Ok(true),
        Err(CompileError::Lower(LowerError::Unsupported { .. })) => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}

/// The cases the native backends lower for `target` (see [`lowers`]).
pub fn supported(cases: Vec<Case>, target: &Target) -> Vec<Case> {
    cases
        .into_iter()
        .filter(|c| lowers(&c.model, target).unwrap_or_else(|e| panic!("{}: {e}", c.label)))
        .collect()
}

/// Each case again with random batch-norm statistics, slopes and shifts
/// (negative and zero gammas: `bnnc init --random-stats --seed S`), per seed.
pub fn with_random_stats(cases: &[Case], seeds: &[u64]) -> Vec<Case> {
    let mut out = Vec::new();
    for c in cases {
        for &seed in seeds {
            let w = bnnc_train::init::init_weights(
                &c.model.graph,
                &c.model.types,
                bnnc_train::init::InitOptions {
                    seed,
                    random_stats: true,
                },
            )
            .unwrap();
            let m = Model::from_graph(c.model.graph.clone(), Some(&w), &c.model.path).unwrap();
            out.push(Case::new(format!("{} (random stats {seed})", c.label), m));
        }
    }
    out
}

/// The random graph of a choice stream (`gen::random_graph`, at most 8
/// ops), or `None` when the native backends do not lower it for `target`.
/// Panics on any other lowering error.
pub fn random_case(label: String, choices: &[u32], target: &Target) -> Option<Case> {
    let g = random_graph(choices, &GenOptions { max_ops: 8 });
    let model =
        Model::from_graph(g.graph.clone(), Some(&g.weights), Path::new("random.ir")).unwrap();
    let text = bnnc_ir::text::print(&g.graph);
    match lowers(&model, target) {
        Ok(true) => Some(Case {
            label,
            model,
            context: format!("\nchoices {choices:?}\n{text}"),
        }),
        Ok(false) => None,
        Err(e) => panic!("{e}\nchoices {choices:?}\n{text}"),
    }
}

/// The variable that sets how many random graphs the differential tests run.
pub const RANDOM_CASES_VAR: &str = "BNNC_RANDOM_CASES";

/// Engines that link a program and run it (under qemu, or natively in C)
/// run one random graph for every this many a JIT engine runs: each graph
/// costs them a C link and a process start per batch and opt level (about
/// 0.25 s for a Cranelift object under qemu and 0.4 s for an LLVM one,
/// against 2 ms on the Cranelift JIT and 0.25 s on the LLVM JIT, measured
/// on two cores), so 2,000 on each of the six such engines would add about
/// 40 minutes to CI; 100 each add about two.
pub const OBJECT_CASES_DIVISOR: usize = 20;

/// How many random graphs a JIT engine's differential test runs:
/// [`RANDOM_CASES_VAR`] (`BNNC_RANDOM_CASES`, a number) when set, else
/// `default`. CI sets it to 2,000.
pub fn random_cases(default: usize) -> usize {
    match std::env::var(RANDOM_CASES_VAR) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| {
            panic!("{RANDOM_CASES_VAR} must be a number of random graphs, found `{v}`")
        }),
        Err(_) => default,
    }
}

/// How many random graphs an engine that links a program runs: one
/// [`OBJECT_CASES_DIVISOR`]th of [`RANDOM_CASES_VAR`] when set (at least 1),
/// else `default`.
pub fn object_random_cases(default: usize) -> usize {
    match std::env::var(RANDOM_CASES_VAR) {
        Ok(_) => {
            let n = random_cases(0);
            (n / OBJECT_CASES_DIVISOR).max(usize::from(n > 0))
        }
        Err(_) => default,
    }
}

/// `n` random graphs the native backends lower for `target`, from a fixed
/// sequence of choice streams (48 choices each) seeded by `seed`.
pub fn random_graphs(n: usize, seed: u64, target: &Target) -> Vec<Case> {
    let mut rng = Rng::new(seed);
    let mut cases = Vec::new();
    let mut tried = 0;
    while cases.len() < n {
        tried += 1;
        assert!(tried < n * 20 + 20, "too few supported random graphs");
        let choices: Vec<u32> = (0..48).map(|_| rng.next_u64() as u32).collect();
        cases.extend(random_case(format!("random{tried}"), &choices, target));
    }
    cases
}

/// Engines, batch sizes, opt levels and inputs; [`Suite::run`] checks cases.
#[derive(Clone, Debug)]
pub struct Suite {
    /// Names the suite in reports and scratch folders.
    pub name: String,
    pub engines: Vec<Engine>,
    pub batches: Vec<usize>,
    pub opt_levels: Vec<u8>,
    /// Inputs at `batches[i]` are drawn with seed `seed + i`.
    pub seed: u64,
    pub specials: Specials,
}

/// The inputs at one batch size and the interpreter's outputs on them.
type Reference = (Vec<Tensor>, Vec<Tensor>);

/// What one engine did over a suite.
#[derive(Clone, Debug, Default)]
struct Tally {
    models: usize,
    failed: usize,
    /// Models whose opt level 1 kir was the opt level 0 kir.
    same_kir: usize,
    time: Duration,
}

impl Suite {
    /// Batches 1 and 7 (sample 5 of 7 holds NaN and infinities), opt levels
    /// 0 and 1, seed 17.
    pub fn new(name: &str, engines: impl IntoIterator<Item = Engine>) -> Suite {
        Suite {
            name: name.to_string(),
            engines: engines.into_iter().collect(),
            batches: vec![1, 7],
            opt_levels: opt_levels_from_env().unwrap_or_else(|| vec![0, 1]),
            seed: 17,
            specials: Specials::Sample(5),
        }
    }

    pub fn batches(mut self, batches: impl IntoIterator<Item = usize>) -> Suite {
        self.batches = batches.into_iter().collect();
        self
    }

    /// The opt levels (`BNNC_TEST_OPT_LEVELS`, e.g. `0` or `1`, keeps only
    /// those of them it names).
    pub fn opt_levels(mut self, levels: impl IntoIterator<Item = u8>) -> Suite {
        let only = opt_levels_from_env();
        self.opt_levels = levels
            .into_iter()
            .filter(|o| only.as_ref().is_none_or(|v| v.contains(o)))
            .collect();
        self
    }

    pub fn seed(mut self, seed: u64) -> Suite {
        self.seed = seed;
        self
    }

    pub fn specials(mut self, specials: Specials) -> Suite {
        self.specials = specials;
        self
    }

    /// The engines that run here. Reports each one that does not (and
    /// panics under `CI=true`).
    pub fn available(&self) -> Vec<Engine> {
        let mut ok = Vec::new();
        let mut missing = Vec::new();
        for e in &self.engines {
            match e.unavailable() {
                None => ok.push(e.clone()),
                Some(why) => {
                    report(&format!("[{}] {e}: SKIPPED: {why}", self.name));
                    missing.push(format!("{e}: {why}"));
                }
            }
        }
        if ci() && !missing.is_empty() {
            panic!(
                "CI=true: [{}] engines unavailable:\n{}",
                self.name,
                missing.join("\n")
            );
        }
        ok
    }

    /// The inputs at each batch size and the interpreter's outputs on them.
    fn references(&self, model: &Model) -> Result<Vec<Reference>, String> {
        self.batches
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                let x = inputs(model, b, self.seed + i as u64, self.specials);
                let want = bnnc_runtime::run(model, &x)
                    .map_err(|e| format!("batch {b}: interpreter: {e}"))?;
                Ok((x, want))
            })
            .collect()
    }

    /// Runs `case` on `engine` at every opt level and batch size against
    /// `refs`; returns whether opt level 1 had the opt level 0 kir.
    fn job(
        &self,
        engine: &Engine,
        case: &Case,
        refs: &[Reference],
        dir: &Path,
    ) -> Result<bool, String> {
        let mut kir0 = None;
        let mut same_kir = false;
        for &o in &self.opt_levels {
            if *engine == Engine::Interpreter && o == 0 {
                continue; // the reference itself
            }
            if let (Some(k0), true) = (&kir0, o > 0) {
                let k1 = compile(&case.model, &engine.options(o).emit([]))
                    .map_err(|e| format!("-O{o}: compile: {e}"))?
                    .lowered
                    .module;
                if *k0 == k1 {
                    same_kir = true;
                    continue;
                }
            }
            let p = engine
                .prepare(&case.model, o, &dir.join(format!("O{o}")))
                .map_err(|e| format!("-O{o}: {e}"))?;
            if o == 0 {
                kir0 = p.kir().cloned();
            }
            for (&b, (x, want)) in self.batches.iter().zip(refs) {
                let got = p.run(x).map_err(|e| format!("-O{o}, batch {b}: {e}"))?;
                compare_outputs(&case.model, &got, want, "engine", engine.expf_ulps())
                    .map_err(|e| format!("-O{o}, batch {b}, {e}"))?;
            }
        }
        Ok(same_kir)
    }

    /// [`Suite::job`] in its scratch folder (kept only when it fails), timed
    /// and counted in `tally`. The error names the case, the engine and the
    /// folder, and gives the case's context.
    fn tallied_job(
        &self,
        engine: &Engine,
        case: &Case,
        refs: &Result<Vec<Reference>, String>,
        tally: &Mutex<Tally>,
    ) -> Result<(), String> {
        let dir = scratch_path(&format!("{}/{}/{}", self.name, engine.slug(), case.label));
        let _ = std::fs::remove_dir_all(&dir);
        let t = Instant::now();
        let r = refs
            .as_ref()
            .map_err(String::clone)
            .and_then(|refs| self.job(engine, case, refs, &dir));
        let time = t.elapsed();
        if verbose() {
            report(&format!(
                "[{}] {engine}: {}: {:.2}s{}",
                self.name,
                case.label,
                time.as_secs_f64(),
                if r.is_ok() { "" } else { " FAILED" }
            ));
        }
        let mut tally = tally.lock().unwrap();
        tally.models += 1;
        tally.time += time;
        match r {
            Ok(same) => {
                tally.same_kir += usize::from(same);
                let _ = std::fs::remove_dir_all(&dir);
                Ok(())
            }
            Err(e) => {
                tally.failed += 1;
                let files = if dir.exists() {
                    format!(" (files in {})", dir.display())
                } else {
                    String::new()
                };
                Err(format!(
                    "{} on {engine}{files}: {e}{}",
                    case.label, case.context
                ))
            }
        }
    }

    /// Checks `case` on `engines` (already available), one after the other:
    /// for property tests. All failures in one message.
    pub fn check(&self, engines: &[Engine], case: &Case) -> Result<(), String> {
        let tallies: Vec<Mutex<Tally>> = engines.iter().map(|_| Mutex::default()).collect();
        self.check_tallied(engines, case, &tallies)
    }

    fn check_tallied(
        &self,
        engines: &[Engine],
        case: &Case,
        tallies: &[Mutex<Tally>],
    ) -> Result<(), String> {
        let refs = self.references(&case.model);
        let failures: Vec<String> = engines
            .iter()
            .zip(tallies)
            .filter_map(|(e, t)| self.tallied_job(e, case, &refs, t).err())
            .collect();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("\n\n"))
        }
    }

    /// Checks every case on every available engine (in parallel jobs),
    /// reports a line per engine, and panics with every failure.
    pub fn run(&self, cases: &[Case]) {
        self.run_each(cases, &[]);
    }

    /// [`Suite::run`], plus cases only one engine runs: `own[i]` for
    /// `self.engines[i]` (random graphs lowered for its target). All jobs
    /// share the threads.
    pub fn run_each(&self, cases: &[Case], own: &[Vec<Case>]) {
        let t0 = Instant::now();
        let available = self.available();
        let mut engines = Vec::new();
        let mut all: Vec<&Case> = cases.iter().collect();
        let mut jobs: Vec<(usize, usize)> = Vec::new();
        for (i, e) in self.engines.iter().enumerate() {
            if !available.contains(e) {
                continue;
            }
            let ei = engines.len();
            engines.push(e.clone());
            jobs.extend((0..cases.len()).map(|c| (ei, c)));
            for c in own.get(i).into_iter().flatten() {
                jobs.push((ei, all.len()));
                all.push(c);
            }
        }
        if engines.is_empty() {
            return;
        }
        let refs = parallel(&all, |c| self.references(&c.model));
        let tallies: Vec<Mutex<Tally>> = engines.iter().map(|_| Mutex::default()).collect();
        let failures = parallel(&jobs, |&(e, c)| {
            self.tallied_job(&engines[e], all[c], &refs[c], &tallies[e])
                .err()
        });
        self.report_tallies(&engines, &tallies, "models");
        let failures: Vec<String> = failures.into_iter().flatten().collect();
        assert!(
            failures.is_empty(),
            "[{}] {} failures ({:.1}s):\n\n{}",
            self.name,
            failures.len(),
            t0.elapsed().as_secs_f64(),
            failures.join("\n\n")
        );
    }

    /// A line per engine: what it ran, and how long its jobs took.
    fn report_tallies(&self, engines: &[Engine], tallies: &[Mutex<Tally>], what: &str) {
        for (e, t) in engines.iter().zip(tallies) {
            let t = t.lock().unwrap();
            let levels: Vec<String> = self
                .opt_levels
                .iter()
                .filter(|&&o| o > 0 || *e != Engine::Interpreter)
                .map(|o| format!("-O{o}"))
                .collect();
            let status = if t.failed == 0 {
                "ok".to_string()
            } else {
                format!("{} FAILED", t.failed)
            };
            let same = if self.opt_levels.contains(&1) && t.same_kir > 0 {
                format!(" ({} with the same kir at -O1 as at -O0)", t.same_kir)
            } else {
                String::new()
            };
            report(&format!(
                "[{}] {e}: {} {what} x batches {:?} x {}: {status}{same}, {:.1}s",
                self.name,
                t.models,
                self.batches,
                levels.join(","),
                t.time.as_secs_f64()
            ));
        }
    }
}

/// `BNNC_TEST_OPT_LEVELS` (comma-separated), for a quicker local run.
fn opt_levels_from_env() -> Option<Vec<u8>> {
    let v = std::env::var("BNNC_TEST_OPT_LEVELS").ok()?;
    Some(v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
}

/// Whether to report every job's time (`BNNC_TEST_VERBOSE=1`).
fn verbose() -> bool {
    std::env::var("BNNC_TEST_VERBOSE").is_ok_and(|v| v == "1")
}

/// Threads for [`parallel`]: `BNNC_TEST_THREADS`, or the CPUs.
fn threads() -> usize {
    std::env::var("BNNC_TEST_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1)
}

/// `f` over `items` on [`threads`] threads; results in order.
pub fn parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let n = threads().min(items.len());
    if n <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..n {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let r = f(item);
                out.lock().unwrap()[i] = Some(r);
            });
        }
    });
    out.into_inner()
        .unwrap()
        .into_iter()
        .map(|r| r.expect("every item ran"))
        .collect()
}

/// Property test over random graphs (choice streams of up to 48 numbers,
/// graphs of up to 8 ops): `cases` graphs the native backends lower for
/// `target` (others are rejected and do not count) checked by `suite`. A
/// failure is shrunk through the choice stream and, with `regressions`
/// (a path relative to `tests/`), saved there; its cases run first on every
/// later run. The cases are shared out among [`threads`] test runners (each
/// with its own random seed) running side by side.
pub fn random_graph_property(
    suite: &Suite,
    cases: u32,
    regressions: Option<&'static str>,
    target: &Target,
) {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};
    let engines = suite.available();
    if engines.is_empty() {
        return;
    }
    let tallies: Vec<Mutex<Tally>> = engines.iter().map(|_| Mutex::default()).collect();
    let n = (threads() as u32).clamp(1, cases.max(1));
    let shards: Vec<u32> = (0..n)
        .map(|k| cases / n + u32::from(k < cases % n))
        .collect();
    let results = parallel(&shards, |&shard_cases| {
        let config = Config {
            cases: shard_cases,
            max_global_rejects: 5000,
            failure_persistence: Some(match regressions {
                Some(path) => Box::new(FileFailurePersistence::Direct(path)),
                None => Box::new(FileFailurePersistence::Off),
            }),
            ..Config::default()
        };
        let mut runner = TestRunner::new(config);
        let label = format!("random-{:?}", std::thread::current().id());
        runner
            .run(&proptest::collection::vec(any::<u32>(), 0..48), |choices| {
                let case = random_case(label.clone(), &choices, target)
                    .ok_or_else(|| TestCaseError::reject("not lowered by the native backends"))?;
                suite
                    .check_tallied(&engines, &case, &tallies)
                    .map_err(TestCaseError::fail)
            })
            .err()
            .map(|e| e.to_string())
    });
    suite.report_tallies(&engines, &tallies, "random graphs");
    let failures: Vec<String> = results.into_iter().flatten().collect();
    assert!(
        failures.is_empty(),
        "[{}] {}",
        suite.name,
        failures.join("\n\n")
    );
}
