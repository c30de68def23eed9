//! The `bnnc` binary, run as a user would: every subcommand's output, exit codes,
//! and clean errors (never a panic) on malformed or missing files.

use std::path::Path;

use bnnc_ir::{Model, Tensor};

mod common;
use common::*;

#[test]
fn check_prints_one_summary_line() {
    let out = ok(&bnnc(&["check", "examples/mnist_mlp.ir"]));
    assert_eq!(
        out,
        "mnist_mlp: 13 ops, 1 input, 1 output, 1,869,864 params in 15 weights, 2.1 Mbit \
         (1,861,632 b1 after folding sign(@w), 8,232 f32)\n"
    );
    for m in ["bireal_cnn", "repconv_block", "xnor_layer"] {
        let out = ok(&bnnc(&["check", &format!("examples/{m}.ir")]));
        assert!(out.starts_with(&format!("{m}: ")), "{out}");
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(out.contains("b1 after folding sign(@w)"), "{out}");
    }
}

#[test]
fn print_output_reparses_to_an_equal_graph() {
    for m in ["mnist_mlp", "bireal_cnn", "repconv_block", "xnor_layer"] {
        let file = root().join(format!("examples/{m}.ir"));
        let out = ok(&bnnc(&["print", s(&file)]));
        let printed = bnnc_ir::text::parse(&out).unwrap_or_else(|d| panic!("{}", d.render(m)));
        let original = Model::load(&file).unwrap().graph;
        assert_eq!(printed, original, "{m}");
    }
}

#[test]
fn print_works_without_the_weights_file() {
    let dir = scratch("print_no_weights");
    let file = dir.join("m.ir");
    std::fs::copy(root().join("examples/xnor_layer.ir"), &file).unwrap();
    let out = ok(&bnnc(&["print", s(&file)]));
    assert!(out.starts_with("model xnor_layer\n"), "{out}");
    // check needs the weights, and says which file is missing.
    let err = fails(&bnnc(&["check", s(&file)]));
    assert!(err.contains("xnor_layer.safetensors"), "{err}");
}

fn write_npy_f32(path: &Path, dims: &[u64], data: &[f32]) {
    write_npy(path, dims, data)
}

#[test]
fn run_reads_npy_and_writes_npy_equal_to_the_interpreter() {
    let dir = scratch("run_npy");
    let x = dir.join("x.npy");
    let y = dir.join("y.npy");
    let n = 3 * 784;
    let data: Vec<f32> = (0..n).map(|i| ((i * 37) % 101) as f32 / 100.0).collect();
    write_npy_f32(&x, &[3, 784], &data);
    let out = ok(&bnnc(&[
        "run",
        "examples/mnist_mlp.ir",
        "--input",
        s(&x),
        "--output",
        s(&y),
    ]));
    assert!(out.contains("logits f32[3, 10]"), "{out}");
    let arr = bnnc_cli::npy::read(&y).unwrap();
    assert_eq!(arr.dims, vec![3, 10]);
    let model = Model::load(&root().join("examples/mnist_mlp.ir")).unwrap();
    let want = bnnc_runtime::run(&model, &[Tensor::f32(vec![3, 784], data)]).unwrap();
    assert_eq!(
        arr.values,
        bnnc_cli::npy::NpyValues::Float(want[0].as_f32().unwrap().to_vec())
    );
}

#[test]
fn run_random_prints_a_summary_per_output() {
    let out = ok(&bnnc(&[
        "run",
        "examples/mnist_mlp.ir",
        "--random",
        "--batch",
        "4",
    ]));
    let mut lines = out.lines();
    assert!(lines
        .next()
        .unwrap()
        .starts_with("logits: f32[4, 10]  min "));
    assert!(lines.next().unwrap().starts_with("  values: ["));
    let am = lines.next().unwrap();
    assert!(am.starts_with("  argmax per row: ["), "{am}");
    assert_eq!(am.matches(',').count(), 3, "{am}");
    // Deterministic from --seed.
    let again = ok(&bnnc(&[
        "run",
        "examples/mnist_mlp.ir",
        "--random",
        "--batch",
        "4",
    ]));
    assert_eq!(out, again);
    let other = ok(&bnnc(&[
        "run",
        "examples/mnist_mlp.ir",
        "--random",
        "--batch",
        "4",
        "--seed",
        "9",
    ]));
    assert_ne!(out, other);
}

#[test]
fn run_rejects_inputs_that_do_not_fit() {
    let dir = scratch("run_bad_inputs");
    let x = dir.join("x.npy");
    write_npy_f32(&x, &[2, 700], &vec![0.0; 1400]);
    let err = fails(&bnnc(&["run", "examples/mnist_mlp.ir", "--input", s(&x)]));
    assert!(err.contains("does not fit input `x`"), "{err}");
    let err = fails(&bnnc(&[
        "run",
        "examples/mnist_mlp.ir",
        "--input",
        s(&x),
        "--input",
        s(&x),
    ]));
    assert!(
        err.contains("the model has 1 input but 2 --input files"),
        "{err}"
    );
    // A batch whose intermediates would not fit is refused before running.
    let err = fails(&bnnc(&[
        "run",
        "examples/bireal_cnn.ir",
        "--random",
        "--batch",
        "1048576",
    ]));
    assert!(err.contains("at batch size 1048576, value `c0`"), "{err}");
    let garbage = dir.join("garbage.npy");
    std::fs::write(&garbage, b"not numpy").unwrap();
    let err = fails(&bnnc(&[
        "run",
        "examples/mnist_mlp.ir",
        "--input",
        s(&garbage),
    ]));
    assert!(
        err.contains("garbage.npy: error: not an .npy file"),
        "{err}"
    );
}

#[test]
fn run_usage_errors_exit_2() {
    for args in [
        &["run", "examples/mnist_mlp.ir"][..],
        &[
            "run",
            "examples/mnist_mlp.ir",
            "--random",
            "--engine",
            "gpu",
        ],
        &["run", "examples/mnist_mlp.ir", "--random", "--batch", "0"],
        &[
            "run",
            "examples/mnist_mlp.ir",
            "--input",
            "x.npy",
            "--random",
        ],
        &[
            "run",
            "examples/mnist_mlp.ir",
            "--input",
            "x.npy",
            "--batch",
            "2",
        ],
    ] {
        let o = bnnc(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn graph_writes_dot() {
    let out = ok(&bnnc(&["graph", "examples/bireal_cnn.ir", "--dot"]));
    assert!(out.starts_with("digraph"), "{out}");
    assert!(out.contains("b1[N, 28, 28, 16]"), "types are shown");
    let dir = scratch("graph_dot");
    let file = dir.join("g.dot");
    let quiet = ok(&bnnc(&["graph", "examples/bireal_cnn.ir", "-o", s(&file)]));
    assert!(quiet.is_empty());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), out);
}

#[test]
fn init_is_deterministic_from_the_seed() {
    let dir = scratch("init_seed");
    let run = |seed: &str, name: &str| {
        let p = dir.join(name);
        ok(&bnnc(&[
            "init",
            "examples/bireal_cnn.ir",
            "--seed",
            seed,
            "-o",
            s(&p),
        ]));
        std::fs::read(p).unwrap()
    };
    let a = run("5", "a.safetensors");
    let b = run("5", "b.safetensors");
    let c = run("6", "c.safetensors");
    assert!(a == b, "same seed, same bytes");
    assert!(a != c, "another seed, other values");
    // The shipped weights are `--seed 1`.
    let one = run("1", "one.safetensors");
    assert!(one == std::fs::read(root().join("examples/bireal_cnn.safetensors")).unwrap());
    // Random statistics differ from the neutral ones.
    let p = dir.join("stats.safetensors");
    ok(&bnnc(&[
        "init",
        "examples/bireal_cnn.ir",
        "--seed",
        "5",
        "--random-stats",
        "-o",
        s(&p),
    ]));
    assert!(std::fs::read(p).unwrap() != a);
}

#[test]
fn init_writes_the_weights_file_the_model_names() {
    let dir = scratch("init_default");
    let file = dir.join("xnor.ir");
    std::fs::copy(root().join("examples/xnor_layer.ir"), &file).unwrap();
    let out = ok(&bnnc(&["init", s(&file), "--seed", "3"]));
    assert!(
        out.contains("xnor_layer.safetensors: 3 tensors, 18,497 params (seed 3)"),
        "{out}"
    );
    assert!(dir.join("xnor_layer.safetensors").exists());
    ok(&bnnc(&["check", s(&file)]));
    ok(&bnnc(&["run", s(&file), "--random"]));
}

#[test]
fn a_malformed_model_exits_1_with_its_location() {
    let dir = scratch("malformed");
    let file = dir.join("bad.ir");
    std::fs::write(
        &file,
        "model bad\ninput x: f32[N, 4]\ny = frobnicate(x)\noutput y\n",
    )
    .unwrap();
    for cmd in ["check", "print", "graph", "init"] {
        let err = fails(&bnnc(&[cmd, s(&file)]));
        assert!(
            err.starts_with(&format!("{}:3:5: error: unknown op `frobnicate`", s(&file))),
            "{cmd}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let err = fails(&bnnc(&["run", s(&file), "--random"]));
    assert!(err.contains(":3:5: error:"), "{err}");
}

#[test]
fn no_command_panics_on_a_missing_file() {
    let cases: [&[&str]; 6] = [
        &["check", "no/such.ir"],
        &["print", "no/such.ir"],
        &["graph", "no/such.ir", "--dot"],
        &["init", "no/such.ir"],
        &["run", "no/such.ir", "--random"],
        &["run", "examples/mnist_mlp.ir", "--input", "no/such.npy"],
    ];
    for args in cases {
        let err = fails(&bnnc(args));
        assert!(err.contains("no/such."), "{args:?}: {err}");
        assert!(err.contains("cannot read"), "{args:?}: {err}");
    }
}

#[test]
fn every_command_has_help_with_an_example() {
    let top = ok(&bnnc(&["--help"]));
    for cmd in [
        "check", "print", "run", "graph", "init", "compile", "bench", "opt",
    ] {
        assert!(top.contains(cmd), "{top}");
        let help = ok(&bnnc(&[cmd, "--help"]));
        assert!(help.contains(&format!("bnnc {cmd} ")), "{cmd}: {help}");
        assert!(help.contains("Example"), "{cmd}: {help}");
    }
    let run = ok(&bnnc(&["run", "--help"]));
    assert!(run.contains("interp") && run.contains("jit"), "{run}");
}

#[test]
fn compile_writes_object_and_header() {
    let dir = scratch("compile");
    for target in ["aarch64", "x86_64+popcnt"] {
        let out = ok(&bnnc(&[
            "compile",
            "examples/xnor_layer.ir",
            "--target",
            target,
            "-o",
            dir.to_str().unwrap(),
            "--emit",
            "obj,header,kir,clif",
        ]));
        assert!(out.contains("xnor_layer.o"), "{out}");
        let obj = std::fs::read(dir.join("xnor_layer.o")).unwrap();
        assert_eq!(&obj[..4], b"\x7fELF");
        let machine = u16::from_le_bytes([obj[18], obj[19]]);
        assert_eq!(
            machine,
            if target == "aarch64" { 183 } else { 62 },
            "{target}"
        );
        let h = std::fs::read_to_string(dir.join("xnor_layer.h")).unwrap();
        assert!(h.contains("int32_t xnor_layer_run("), "{h}");
        assert!(
            h.contains(&format!("XNOR_LAYER_TARGET \"{target}\"")),
            "{h}"
        );
        assert!(std::fs::read_to_string(dir.join("xnor_layer.kir"))
            .unwrap()
            .contains("export fn xnor_layer_run"));
        assert!(std::fs::read_to_string(dir.join("xnor_layer.clif"))
            .unwrap()
            .contains("function"));
    }
    let help = ok(&bnnc(&["compile", "--target", "help"]));
    assert!(
        help.contains("+popcnt") && help.contains("aarch64"),
        "{help}"
    );
    for bad in ["mips", "x86_64+neon", "native+avx2"] {
        let err = fails(&bnnc(&[
            "compile",
            "examples/xnor_layer.ir",
            "--target",
            bad,
            "-o",
            dir.to_str().unwrap(),
        ]));
        assert!(err.starts_with("error: "), "{bad}: {err}");
    }
}

#[test]
fn run_with_the_jit_equals_the_interpreter() {
    let dir = scratch("jit");
    let mut outs = Vec::new();
    for engine in ["interp", "jit"] {
        let y = dir.join(format!("{engine}.npy"));
        ok(&bnnc(&[
            "run",
            "examples/bireal_cnn.ir",
            "--random",
            "--batch",
            "3",
            "--seed",
            "5",
            "--engine",
            engine,
            "-o",
            y.to_str().unwrap(),
        ]));
        outs.push(std::fs::read(&y).unwrap());
    }
    assert_eq!(outs[0], outs[1]);
}

#[test]
fn opt_prints_a_valid_model_and_o0_turns_it_off() {
    let text = ok(&bnnc(&["opt", "examples/mnist_mlp.ir", "--explain"]));
    assert!(text.contains("bn_to_threshold"), "{text}");
    assert!(text.contains("threshold(h1"), "{text}");
    assert!(!text.contains("batchnorm(h1"), "{text}");
    let dir = scratch("opt");
    let out = dir.join("mlp_opt.ir");
    ok(&bnnc(&[
        "opt",
        "examples/mnist_mlp.ir",
        "-o",
        out.to_str().unwrap(),
    ]));
    let check = ok(&bnnc(&["check", out.to_str().unwrap()]));
    assert!(check.starts_with("mnist_mlp:"), "{check}");
    for level in ["-O0", "-O1"] {
        let kir_dir = dir.join(level);
        ok(&bnnc(&[
            "compile",
            "examples/mnist_mlp.ir",
            level,
            "--emit",
            "kir",
            "-o",
            kir_dir.to_str().unwrap(),
        ]));
        let kir = std::fs::read_to_string(kir_dir.join("mnist_mlp.kir")).unwrap();
        // -O1 folds two batch-norms (and their signs) into thresholds; each
        // batch-norm left (three at -O0, the float logits' at -O1) is the
        // affine epilogue of its binary dense kernel, no kernel of its own.
        let fns = |what: &str| {
            kir.lines()
                .filter(|l| l.starts_with("fn ") && l.contains(what))
                .count()
        };
        assert_eq!(fns("_batchnorm("), 0, "{level}");
        assert_eq!(fns("_sign("), if level == "-O0" { 3 } else { 1 }, "{level}");
        let bn_data = kir
            .lines()
            .filter(|l| l.starts_with("data ") && l.contains("bn_mean"))
            .count();
        assert_eq!(bn_data, if level == "-O0" { 3 } else { 1 }, "{level}");
    }
}

#[test]
fn bench_reports_identical_outputs() {
    let out = ok(&bnnc(&[
        "bench",
        "examples/xnor_layer.ir",
        "--batch",
        "2",
        "--runs",
        "1",
    ]));
    assert!(
        out.contains("outputs identical") && out.contains("speedup"),
        "{out}"
    );
}

fn write_npy<T: npyz::AutoSerialize + Copy>(path: &Path, dims: &[u64], data: &[T]) {
    use npyz::WriterBuilder;
    let mut buf = Vec::new();
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(dims)
        .writer(&mut buf)
        .begin_nd()
        .unwrap();
    w.extend(data.iter().copied()).unwrap();
    w.finish().unwrap();
    std::fs::write(path, buf).unwrap();
}

#[test]
fn run_takes_inputs_in_order_and_checks_integer_values() {
    let dir = scratch("run_multi");
    let file = dir.join("two.ir");
    std::fs::write(
        &file,
        "# two inputs, no weights\nmodel two\ninput a: b1[N, 3]\ninput b: f32[N, 2]\n\
         s = add(a, a)\nc = concat(b, b, axis=-1)\noutput s, c\n",
    )
    .unwrap();
    let a = dir.join("a.npy");
    let b = dir.join("b.npy");
    write_npy::<i8>(&a, &[2, 3], &[-1, 1, 1, 1, -1, -1]);
    write_npy::<f64>(&b, &[2, 2], &[0.5, -1.5, 2.0, 3.0]);
    let (s_out, c_out) = (dir.join("s.npy"), dir.join("c.npy"));
    ok(&bnnc(&[
        "run",
        s(&file),
        "-i",
        s(&a),
        "-i",
        s(&b),
        "-o",
        s(&s_out),
        "-o",
        s(&c_out),
    ]));
    let sv = bnnc_cli::npy::read(&s_out).unwrap();
    assert_eq!(sv.dtype, "<i4");
    assert_eq!(
        sv.values,
        bnnc_cli::npy::NpyValues::Int(vec![-2, 2, 2, 2, -2, -2])
    );
    let cv = bnnc_cli::npy::read(&c_out).unwrap();
    assert_eq!(cv.dims, vec![2, 4]);
    assert_eq!(
        cv.values,
        bnnc_cli::npy::NpyValues::Float(vec![0.5, -1.5, 0.5, -1.5, 2.0, 3.0, 2.0, 3.0])
    );
    // The summary names each output.
    let out = ok(&bnnc(&["run", s(&file), "-i", s(&a), "-i", s(&b)]));
    assert!(
        out.contains("s: i32[2, 3]") && out.contains("c: f32[2, 4]"),
        "{out}"
    );
    // One --output for two outputs.
    let err = fails(&bnnc(&[
        "run",
        s(&file),
        "-i",
        s(&a),
        "-i",
        s(&b),
        "-o",
        s(&s_out),
    ]));
    assert!(err.contains("2 outputs but 1 --output"), "{err}");
    // 0 is not a b1 value.
    write_npy::<i8>(&a, &[2, 3], &[-1, 1, 0, 1, -1, -1]);
    let err = fails(&bnnc(&["run", s(&file), "-i", s(&a), "-i", s(&b)]));
    assert!(
        err.contains("element 2 of the array is 0, which is not a b1 value"),
        "{err}"
    );
    // Batched inputs agree on N.
    write_npy::<i8>(&a, &[1, 3], &[-1, 1, 1]);
    let err = fails(&bnnc(&["run", s(&file), "-i", s(&a), "-i", s(&b)]));
    assert!(err.contains("batch size"), "{err}");
}

#[test]
fn compile_refuses_a_model_name_that_could_collide_with_another() {
    let dir = scratch("collide");
    let path = dir.join("tiny.ir");
    std::fs::write(
        &path,
        "model ti.ny\ninput x: f32[N, 4]\ny = relu(x)\noutput y\n",
    )
    .unwrap();
    let err = fails(&bnnc(&[
        "compile",
        s(&path),
        "--target",
        "x86_64",
        "-o",
        s(&dir),
    ]));
    assert!(
        err.starts_with(&format!(
            "{}:1:7: error: model name `ti.ny`",
            path.display()
        )),
        "{err}"
    );
    assert!(err.contains("those of a model named `ti_ny` too"), "{err}");
    assert!(!dir.join("ti_ny.o").exists() && !dir.join("ti_ny.h").exists());
}
