//! C linking on this machine: Cranelift objects of every example and corpus
//! model run in the generic C driver (`tests/c/driver.c`) and match the
//! reference interpreter (`Engine::CLink`, `bnnc_tests::runner`); the C
//! example (`examples/c`) built by its Makefile (`bnnc compile`, then the C
//! compiler) prints the classes the interpreter computes; and two models'
//! objects link into one C program (`tests/c/two_models.c`) whose outputs
//! equal the interpreter's bit for bit, every global symbol of an object
//! carrying its model's name.
//!
//! Tools: the C compiler (`BNNC_CC`, `CC`, else `cc`), `make` and `nm`. When
//! one is missing the tests print why and pass, except when `CI=true`, where
//! a missing tool fails. The `bnnc` binary the Makefile runs is this
//! checkout's, built (a no-op after `cargo test --workspace`) by the cargo
//! running the tests; `BNNC=/path/to/bnnc` uses another.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bnnc::compile::{compile, Backend, CompileOptions, Emit};
use bnnc_ir::{Model, Tensor, TensorData};
use bnnc_kir::target::Target;
use bnnc_tests::engine::{host_cc, missing_tools, Engine, C_FLAGS};
use bnnc_tests::runner::{corpus, examples, repo_root, report, scratch, Suite};

/// The C compiler, or `None` after reporting (under `CI=true`: failing)
/// that `test` skips because it or another tool it needs is missing.
fn tools(test: &str, also: &[&str]) -> Option<String> {
    let cc = host_cc();
    let programs: Vec<String> = std::iter::once(cc.clone())
        .chain(also.iter().map(|t| t.to_string()))
        .collect();
    let Some(why) = missing_tools(&programs, "gcc libc6-dev make binutils") else {
        return Some(cc);
    };
    if bnnc_tests::engine::ci() {
        panic!("CI=true: {test}: {why}");
    }
    report(&format!("[{test}] SKIPPED: {why}"));
    None
}

/// The targets objects are compiled for: explicit features on x86_64 (the
/// baseline CPU without popcnt for one model, with it for the other), the
/// host otherwise.
fn targets() -> [&'static str; 2] {
    if cfg!(target_arch = "x86_64") {
        ["x86_64+popcnt", "x86_64"]
    } else {
        ["native", "native"]
    }
}

/// Cranelift objects for the host, linked into the C driver and run natively.
#[test]
fn cranelift_objects_match_the_interpreter() {
    let mut cases = examples();
    cases.extend(corpus());
    let engine = Engine::c_link(Backend::Cranelift, Target::parse(targets()[0]).unwrap());
    Suite::new("models", [engine]).run(&cases);
}

#[track_caller]
fn ok(what: &str, o: &Output) -> String {
    assert!(
        o.status.success(),
        "{what}: exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The `bnnc` binary of this checkout: `$BNNC`, or built by cargo with the
/// profile and LLVM feature these tests were built with (a no-op once
/// `cargo test --workspace` built it).
fn bnnc_binary() -> PathBuf {
    if let Ok(p) = std::env::var("BNNC") {
        return PathBuf::from(p);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").into());
    let profile = if cfg!(debug_assertions) {
        "test"
    } else {
        "bench"
    };
    // This test runs from <target>/<profile dir>/deps/: the binary goes to
    // <target>/<profile dir>/.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", "bnnc-cli", "--bin", "bnnc"])
        .args(["--profile", profile])
        .arg("--target-dir")
        .arg(profile_dir.parent().unwrap())
        .current_dir(repo_root());
    if Backend::Llvm.available() {
        cmd.args(["--features", "bnnc/llvm"]);
    }
    ok(
        "cargo build -p bnnc-cli",
        &cmd.output().expect("cargo runs"),
    );
    let bin = profile_dir.join(format!("bnnc{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.exists(), "{} was not built", bin.display());
    bin
}

/// `n` images for 28x28x1 models: random pixels in [0, 1), then an all-zero
/// image and one of exact 0.5 (where sign(x - 0.5) flips), then `real`.
fn images(model: &Model, n: usize, seed: u64, real: &[f32]) -> Tensor {
    let mut t = bnnc_runtime::inputs::random_inputs(&model.graph, n, seed)
        .unwrap()
        .remove(0);
    let TensorData::F32(v) = &mut t.data else {
        panic!("f32 input expected")
    };
    for (i, x) in v.iter_mut().enumerate() {
        *x = match i / 784 {
            0 if n > 2 => 0.0,
            1 if n > 2 => 0.5,
            _ => (*x + 1.0) / 2.0,
        };
    }
    v.extend_from_slice(real);
    t.dims[0] += real.len() / 784;
    t
}

fn write_f32(path: &Path, t: &Tensor) {
    let bytes: Vec<u8> = t
        .as_f32()
        .unwrap()
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    std::fs::write(path, bytes).unwrap();
}

/// Index of the first maximum of each row of a `[N, C]` float tensor.
fn argmax_rows(t: &Tensor) -> Vec<usize> {
    let c = t.dims[1];
    t.as_f32()
        .unwrap()
        .chunks(c)
        .map(|row| (1..c).fold(0, |best, j| if row[j] > row[best] { j } else { best }))
        .collect()
}

/// The model's only output on images `x`, reshaped to its input's shape.
fn interpret(model: &Model, x: &Tensor) -> Tensor {
    let ty = model.ty(model.graph.inputs()[0]);
    let x = Tensor::f32(ty.dims(x.dims[0]), x.as_f32().unwrap().to_vec());
    bnnc_runtime::run(model, &[x]).unwrap().remove(0)
}

/// The value of a variable of `examples/c/Makefile`, as make sees it.
fn make_var(name: &str) -> String {
    let o = Command::new("make")
        .args(["-s", "--no-print-directory", "-C"])
        .arg(repo_root().join("examples/c"))
        .arg("--eval=print-var-%: ; @echo '$($*)'")
        .arg(format!("print-var-{name}"))
        .output()
        .unwrap();
    ok("make print-var", &o).trim().to_string()
}

#[test]
fn c_example_prints_the_interpreters_classes() {
    let test = "c_example_prints_the_interpreters_classes";
    let Some(cc) = tools(test, &["make"]) else {
        return;
    };
    // The model the Makefile compiles: `MODEL` (a path without `.ir`,
    // relative to examples/c), or `MODEL_DIR/NAME`; `NAME` names the files.
    let name = make_var("NAME");
    let model_path = match make_var("MODEL") {
        m if m.is_empty() => format!("{}/{name}", make_var("MODEL_DIR")),
        m => m,
    };
    let model = Model::load(
        &repo_root()
            .join("examples/c")
            .join(format!("{model_path}.ir")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let bnnc = bnnc_binary();
    let out = scratch("example");
    let target = targets()[0];
    let o = Command::new("make")
        .arg("-C")
        .arg(repo_root().join("examples/c"))
        .arg(format!("OUT={}", out.display()))
        .arg(format!("BNNC={}", bnnc.display()))
        .arg(format!("TARGET={target}"))
        .arg(format!("CC={cc}"))
        .arg(format!("CFLAGS=-O2 {}", C_FLAGS.join(" ")))
        .arg("LDFLAGS=-Wl,--fatal-warnings")
        .output()
        .unwrap();
    ok("make -C examples/c", &o);
    let header = std::fs::read_to_string(out.join(format!("{name}.h"))).unwrap();
    assert!(
        header.contains(&format!(
            "#define {}_TARGET \"{target}\"",
            name.to_uppercase()
        )),
        "the Makefile did not pass TARGET to bnnc compile"
    );

    // Four MNIST test digits, shipped with the example.
    let digits: Vec<f32> = std::fs::read(repo_root().join("examples/c/digits.f32"))
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let prog = out.join("mnist_classify");
    let mut distinct = BTreeSet::new();
    for (n, seed, real) in [(9, 3, &digits[..]), (1, 4, &[][..])] {
        let x = images(&model, n, seed, real);
        let file = out.join(format!("images{n}.f32"));
        write_f32(&file, &x);
        let printed = ok(
            "mnist_classify",
            &Command::new(&prog).arg(&file).output().unwrap(),
        );
        let want: Vec<String> = argmax_rows(&interpret(&model, &x))
            .iter()
            .enumerate()
            .map(|(i, k)| {
                distinct.insert(*k);
                format!("image {i}: class {k}")
            })
            .collect();
        let got: Vec<&str> = printed.lines().collect();
        assert_eq!(got, want, "batch {}", x.dims[0]);
    }
    // Otherwise a program printing one constant class could pass.
    assert!(
        distinct.len() >= 3,
        "too few distinct classes: {distinct:?}"
    );

    // Bad input: a file that is not a whole number of images.
    let bad = out.join("bad.f32");
    std::fs::write(&bad, [0u8; 10]).unwrap();
    let o = Command::new(&prog).arg(&bad).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a whole number"));
}

/// The global symbols an object defines.
fn defined_globals(obj: &Path) -> BTreeSet<String> {
    let o = Command::new("nm")
        .args(["-g", "--defined-only", "-P"])
        .arg(obj)
        .output()
        .unwrap();
    ok("nm", &o)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn two_models_link_into_one_c_program() {
    let Some(cc) = tools("two_models_link_into_one_c_program", &["nm"]) else {
        return;
    };
    let dir = scratch("two_models");
    let names = ["mnist_mlp", "bireal_cnn"];
    let mut models = Vec::new();
    for (name, target) in names.iter().zip(targets()) {
        let model = Model::load(&repo_root().join(format!("examples/{name}.ir"))).unwrap();
        compile(&model, &CompileOptions::new(Target::parse(target).unwrap()))
            .and_then(|c| c.write_to(&dir))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let obj = dir.join(format!("{name}.o"));
        let want: BTreeSet<String> = ["run", "run_v", "run_checked", "workspace_size"]
            .iter()
            .map(|s| format!("{name}_{s}"))
            .collect();
        assert_eq!(
            defined_globals(&obj),
            want,
            "{name}.o must export its four entry points and nothing else"
        );
        models.push(model);
    }

    let prog = dir.join("two_models");
    let o = Command::new(&cc)
        .args(C_FLAGS)
        .arg("-O2")
        .arg("-I")
        .arg(&dir)
        .arg(repo_root().join("tests/c/two_models.c"))
        .arg(dir.join("mnist_mlp.o"))
        .arg(dir.join("bireal_cnn.o"))
        .arg("-lm")
        .arg("-Wl,--fatal-warnings")
        .arg("-o")
        .arg(&prog)
        .output()
        .unwrap();
    ok("linking two models", &o);

    let x = images(&models[0], 5, 9, &[]);
    let (xin, mlp, cnn) = (dir.join("x.f32"), dir.join("mlp.bin"), dir.join("cnn.bin"));
    write_f32(&xin, &x);
    ok(
        "two_models",
        &Command::new(&prog)
            .args([&xin, &mlp, &cnn])
            .output()
            .unwrap(),
    );
    for ((model, file), name) in models.iter().zip([&mlp, &cnn]).zip(names) {
        let want = interpret(model, &x);
        let got: Vec<u32> = std::fs::read(file)
            .unwrap()
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let want: Vec<u32> = want.as_f32().unwrap().iter().map(|v| v.to_bits()).collect();
        assert_eq!(got, want, "{name}: logits differ from the interpreter's");
    }
}

/// The header compiles whatever the model's value names are: an input that is
/// also an output (the generator makes such graphs), names that meet after
/// `.` becomes `_`, C keywords, and the names of the fixed parameters.
#[test]
fn header_compiles_for_awkward_value_names() {
    let Some(cc) = tools("header_compiles_for_awkward_value_names", &[]) else {
        return;
    };
    let dir = scratch("awkward_names");
    let src = "\
# Names the C header must turn into distinct, legal parameter names.
model awkward_names
input x: f32[N, 4]
input int: f32[N, 4]
x.1 = relu(x)
x_1 = relu(int)
workspace = add(x.1, x_1)
batch = relu(workspace)
output x
output x.1
output x_1
output workspace
output batch
";
    let path = dir.join("awkward_names.ir");
    let graph = Model::parse_checked(src, &path).unwrap();
    let model = Model::from_graph(graph, None, &path).unwrap();
    let target = Target::parse(targets()[0]).unwrap();
    compile(&model, &CompileOptions::new(target).emit([Emit::Header]))
        .and_then(|c| c.write_to(&dir))
        .unwrap();
    let c = dir.join("use.c");
    std::fs::write(
        &c,
        "#include \"awkward_names.h\"\nint main(void) { return AWKWARD_NAMES_NUM_OUTPUTS == 5 ? 0 : 1; }\n",
    )
    .unwrap();
    let o = Command::new(&cc)
        .args(C_FLAGS)
        .arg("-fsyntax-only")
        .arg("-I")
        .arg(&dir)
        .arg(&c)
        .output()
        .unwrap();
    ok("compiling the header", &o);
}
