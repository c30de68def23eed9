//! C linking on this machine: the C example (`examples/c`) built by its
//! Makefile (`bnnc compile`, then the C compiler) prints the classes the
//! reference interpreter computes, and two models' objects link into one C
//! program (`tests/c/two_models.c`) whose outputs equal the interpreter's bit
//! for bit, every global symbol of an object carrying its model's name.
//!
//! Tools: `gcc`, `make` and `nm` (override the compiler with `BNNC_CC`). When
//! one is missing the tests print why and pass, except when `CI=true`, where a
//! missing tool fails. The `bnnc` binary the Makefile runs is this checkout's,
//! built (a no-op after `cargo test --workspace`) by the cargo running the
//! tests; `BNNC=/path/to/bnnc` uses another.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bnnc::compile::{compile, CompileOptions, Emit};
use bnnc_ir::{Model, Tensor, TensorData};
use bnnc_kir::target::Target;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// A fresh scratch directory under cargo's per-target temporary directory.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("link_c")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Tools {
    cc: String,
}

/// gcc, make and nm, or `None` (after printing why) when one is missing
/// outside CI. In CI (`CI=true`) a missing tool fails the test.
fn tools() -> Option<Tools> {
    let cc = std::env::var("BNNC_CC").unwrap_or_else(|_| "gcc".into());
    let missing: Vec<&str> = [cc.as_str(), "make", "nm"]
        .into_iter()
        .filter(|t| {
            !Command::new(t)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if missing.is_empty() {
        return Some(Tools { cc });
    }
    let why = format!("{} not found", missing.join(", "));
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true: {why}");
    }
    eprintln!("skipping the C link tests: {why}");
    None
}

/// The target the objects are compiled for: explicit features on x86_64 (the
/// baseline CPU without popcnt for one model, with it for the other), the
/// host otherwise.
fn targets() -> [&'static str; 2] {
    if cfg!(target_arch = "x86_64") {
        ["x86_64+popcnt", "x86_64"]
    } else {
        ["native", "native"]
    }
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
/// profile these tests were built with (a no-op once `cargo test` built it).
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
    let o = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "bnnc-cli",
            "--bin",
            "bnnc",
            "--profile",
        ])
        .arg(profile)
        .current_dir(root())
        .output()
        .expect("cargo runs");
    ok("cargo build -p bnnc-cli", &o);
    // This test runs from <target>/<profile dir>/deps/; the binary is one up.
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join(format!("bnnc{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.exists(), "{} was not built", bin.display());
    bin
}

/// `n` images for 28x28x1 models: random pixels in [0, 1), then an all-zero
/// image and one of exact 0.5 (where the MLP's sign(x - 0.5) flips).
fn images(model: &Model, n: usize, seed: u64) -> Tensor {
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

#[test]
fn c_example_prints_the_interpreters_classes() {
    let Some(tools) = tools() else { return };
    let bnnc = bnnc_binary();
    let out = scratch("example");
    let target = targets()[0];
    let o = Command::new("make")
        .arg("-C")
        .arg(root().join("examples/c"))
        .arg(format!("OUT={}", out.display()))
        .arg(format!("BNNC={}", bnnc.display()))
        .arg(format!("TARGET={target}"))
        .arg(format!("CC={}", tools.cc))
        .arg("CFLAGS=-O2 -std=c99 -Wall -Wextra -pedantic -Werror")
        .arg("LDFLAGS=-Wl,--fatal-warnings")
        .output()
        .unwrap();
    ok("make -C examples/c", &o);
    let header = std::fs::read_to_string(out.join("mnist_mlp.h")).unwrap();
    assert!(
        header.contains(&format!("#define MNIST_MLP_TARGET \"{target}\"")),
        "the Makefile did not pass TARGET to bnnc compile"
    );

    let model = Model::load(&root().join("examples/mnist_mlp.ir")).unwrap();
    let prog = out.join("mnist_classify");
    let mut distinct = BTreeSet::new();
    for (n, seed) in [(9, 3), (1, 4)] {
        let x = images(&model, n, seed);
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
        assert_eq!(got, want, "batch {n}");
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
    let Some(tools) = tools() else { return };
    let dir = scratch("two_models");
    let names = ["mnist_mlp", "bireal_cnn"];
    let mut models = Vec::new();
    for (name, target) in names.iter().zip(targets()) {
        let model = Model::load(&root().join(format!("examples/{name}.ir"))).unwrap();
        compile(&model, &CompileOptions::new(Target::parse(target).unwrap()))
            .and_then(|c| c.write_to(&dir))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let obj = dir.join(format!("{name}.o"));
        let want: BTreeSet<String> = ["run", "run_v", "workspace_size"]
            .iter()
            .map(|s| format!("{name}_{s}"))
            .collect();
        assert_eq!(
            defined_globals(&obj),
            want,
            "{name}.o must export its three entry points and nothing else"
        );
        models.push(model);
    }

    let prog = dir.join("two_models");
    let o = Command::new(&tools.cc)
        .args([
            "-std=c99",
            "-O2",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
        ])
        .arg("-I")
        .arg(&dir)
        .arg(root().join("tests/c/two_models.c"))
        .arg(dir.join("mnist_mlp.o"))
        .arg(dir.join("bireal_cnn.o"))
        .arg("-lm")
        .arg("-Wl,--fatal-warnings")
        .arg("-o")
        .arg(&prog)
        .output()
        .unwrap();
    ok("linking two models", &o);

    let x = images(&models[0], 5, 9);
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
    let Some(tools) = tools() else { return };
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
    let o = Command::new(&tools.cc)
        .args([
            "-std=c99",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-fsyntax-only",
        ])
        .arg("-I")
        .arg(&dir)
        .arg(&c)
        .output()
        .unwrap();
    ok("compiling the header", &o);
}
