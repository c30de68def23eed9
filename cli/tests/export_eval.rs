//! `bnnc export` and `bnnc eval`: exported models compute bit for bit what their
//! source computes (every example and corpus model, with neutral and with random
//! statistics), their weights are packed, and eval gives the same accuracy with
//! the interpreter and the JIT.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use bnnc_cli::eval::{evaluate, EvalEngine, EvalOptions};
use bnnc_ir::{ElemType, Model, Op, Tensor, TensorData};
use bnnc_train::data::{load_idx_dir, Split};
use bnnc_train::export::{export_to, ExportError};
use bnnc_train::init::{init_weights, InitOptions};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// A fresh empty folder under the system temp dir.
fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "bnnc-export-eval-{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn models_in(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "ir"))
        .collect();
    v.sort();
    v
}

/// Equal types, shapes and bits (NaN payloads included).
#[track_caller]
fn assert_same_bits(got: &Tensor, want: &Tensor, what: &str) {
    assert_eq!((got.elem, &got.dims), (want.elem, &want.dims), "{what}");
    match (&got.data, &want.data) {
        (TensorData::F32(x), TensorData::F32(y)) => {
            let i = (0..x.len()).find(|&i| x[i].to_bits() != y[i].to_bits());
            assert!(i.is_none(), "{what}: element {i:?}: {x:?} vs {y:?}");
        }
        (TensorData::Int(x), TensorData::Int(y)) => assert_eq!(x, y, "{what}"),
        _ => panic!("{what}: storage differs"),
    }
}

/// Copies `model` (text only) into `dir`, writes weights by `bnnc init` with
/// `random_stats`, and returns the copy's path.
fn init_copy(model: &Path, dir: &Path, random_stats: bool) -> PathBuf {
    let copy = dir.join(model.file_name().unwrap());
    std::fs::copy(model, &copy).unwrap();
    let checked = bnnc_cli::load::load_graph(&copy).unwrap();
    let opts = InitOptions {
        seed: 3,
        random_stats,
    };
    let w = init_weights(&checked.graph, &checked.types, opts).unwrap();
    let wp = Model::weights_path(&checked.graph, &copy).unwrap();
    w.save(&wp).unwrap();
    copy
}

/// Exports `src` into `dir` and checks the result against the source: same
/// outputs bit for bit on random inputs at batch 1 and 5, same names, every
/// binarized weight `b1`, no weight read only by `sign` left latent.
fn check_export(src: &Path, dir: &Path) {
    let what = src.display().to_string();
    let out = dir.join(format!(
        "{}_inf.ir",
        src.file_stem().unwrap().to_string_lossy()
    ));
    let written = export_to(src, &out).unwrap_or_else(|e| panic!("{what}: {e}"));
    let original = Model::load(src).unwrap();
    let exported = Model::load(&out).unwrap_or_else(|e| panic!("{what}: exported: {e}"));
    assert_eq!(exported.graph.name, original.graph.name, "{what}");
    // Every node of the export has the name (and, but for the weights, the op)
    // of a node of the source; the only nodes gone are signs of weights.
    for n in &exported.graph.nodes {
        let v = original.graph.find(&n.name).expect("names are kept");
        match (&n.op, &original.graph.node(v).op) {
            (Op::Weight { key: k1, ty: t1 }, Op::Weight { key: k0, ty: t0 }) => {
                assert_eq!(k1, k0, "{what}");
                assert!(t1 == t0 || t1.elem == ElemType::B1, "{what}: {t0} -> {t1}");
            }
            (a, b) => assert_eq!(a, b, "{what}: `{}`", n.name),
        }
    }
    let gone = original.graph.nodes.len() - exported.graph.nodes.len();
    assert_eq!(gone, written.exported.signs_removed, "{what}");
    for n in &original.graph.nodes {
        if exported.graph.find(&n.name).is_none() {
            assert!(
                matches!(n.op, Op::Sign { .. }),
                "{what}: `{}` dropped",
                n.name
            );
        }
    }
    // No latent weight that only feeds signs is left.
    let users = exported.graph.users();
    for v in exported.graph.ids() {
        if let Op::Weight { ty, .. } = &exported.graph.node(v).op {
            let only_signs = !users[v.index()].is_empty()
                && users[v.index()]
                    .iter()
                    .all(|&u| matches!(exported.graph.node(u).op, Op::Sign { .. }));
            assert!(
                ty.elem == ElemType::B1 || !only_signs,
                "{what}: `{}` still latent",
                exported.graph.node(v).name
            );
        }
    }
    for batch in [1, 5] {
        let inputs = bnnc_runtime::inputs::random_inputs(&original.graph, batch, 11).unwrap();
        let want = bnnc_runtime::run(&original, &inputs).unwrap();
        let got = bnnc_runtime::run(&exported, &inputs).unwrap();
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_same_bits(g, w, &format!("{what} output {k} at batch {batch}"));
        }
    }
    // Packed: the binarized weights take a bit each.
    if let (Some(before), Some(after)) = (written.original_weights_bytes, written.weights_bytes) {
        let bits: usize = written.exported.binarized.iter().map(|b| b.elements).sum();
        let latent_bytes: u64 = written
            .exported
            .binarized
            .iter()
            .map(|b| (b.elements * b.from.bits().div_ceil(8) as usize) as u64)
            .sum();
        assert!(
            after + latent_bytes <= before + bits.div_ceil(8) as u64 + 4096,
            "{what}: {before} -> {after} bytes with {bits} binarized elements"
        );
    }
}

#[test]
fn export_is_bit_identical_on_every_example_and_corpus_model() {
    let dir = temp_dir("shipped");
    let mut models = models_in("examples");
    models.extend(models_in("tests/corpus"));
    assert!(models.len() >= 10, "{models:?}");
    for m in &models {
        check_export(m, &dir);
    }
}

#[test]
fn export_is_bit_identical_with_random_statistics() {
    for m in models_in("examples") {
        let dir = temp_dir("stats");
        let copy = init_copy(&m, &dir, true);
        check_export(&copy, &dir);
    }
}

#[test]
fn exported_mnist_mlp_is_packed_and_much_smaller() {
    let dir = temp_dir("mlp");
    let out = dir.join("mlp.ir");
    let w = export_to(&root().join("examples/mnist_mlp.ir"), &out).unwrap();
    let e = &w.exported;
    let keys: Vec<&str> = e.binarized.iter().map(|b| b.key.as_str()).collect();
    assert_eq!(keys, ["fc1.weight", "fc2.weight", "fc3.weight"]);
    assert_eq!(e.signs_removed, 3);
    assert_eq!(e.kept.len(), 12);
    // 1,861,632 bits packed (232,704 bytes) + 8,232 f32 (32,928 bytes) + header.
    let after = w.weights_bytes.unwrap();
    assert!((265_632..266_632 + 1024).contains(&after), "{after}");
    assert!(w.original_weights_bytes.unwrap() > 7_000_000);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("weights \"mlp.safetensors\""), "{text}");
    assert!(text.contains("w1 = @fc1.weight: b1[1024, 784]"), "{text}");
    assert!(text.contains("h1 = dense(x0, w1)"), "{text}");
    assert!(
        text.contains("a1 = sign(n1, estimator=ste, clip=1.0)"),
        "{text}"
    );
    // The stored tensors: U8 bytes for the b1 weights.
    let st = std::fs::read(dir.join("mlp.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&st).unwrap();
    let fc1 = st.tensor("fc1.weight").unwrap();
    assert_eq!(fc1.dtype(), safetensors::Dtype::U8);
    assert_eq!(fc1.shape(), [1024, 98]);
}

#[test]
fn export_keeps_latent_weights_read_otherwise_and_sign_outputs() {
    let dir = temp_dir("mixed");
    let src = dir.join("mixed.ir");
    std::fs::write(
        &src,
        "model mixed\nweights \"mixed.safetensors\"\ninput x: f32[N, 8]\n\
         w = @w: f32[4, 8]\nwb = sign(w, estimator=ste)\ny = dense(x, wb)\n\
         v = @v: f32[4, 8]\nvb = sign(v)\nz = dense(x, v)\nt = dense(x, vb)\n\
         u = @u: f32[4, 8]\nub = sign(u)\n\
         output y\noutput z\noutput t\noutput ub\n",
    )
    .unwrap();
    let checked = bnnc_cli::load::load_graph(&src).unwrap();
    let opts = InitOptions {
        seed: 5,
        random_stats: false,
    };
    let weights = init_weights(&checked.graph, &checked.types, opts).unwrap();
    weights.save(&dir.join("mixed.safetensors")).unwrap();
    let out = dir.join("mixed_inf.ir");
    let w = export_to(&src, &out).unwrap();
    let keys: Vec<&str> = w
        .exported
        .binarized
        .iter()
        .map(|b| b.key.as_str())
        .collect();
    assert_eq!(keys, ["w", "u"]);
    assert_eq!(w.exported.kept, ["v"]);
    assert_eq!(w.exported.signs_removed, 1);
    let text = std::fs::read_to_string(&out).unwrap();
    for line in [
        "w = @w: b1[4, 8]",
        "y = dense(x, w)",
        "v = @v: f32[4, 8]",
        "vb = sign(v)",
        "u = @u: b1[4, 8]",
        "ub = sign(u)",
        "output y, z, t, ub",
    ] {
        assert!(text.contains(line), "{line}\n{text}");
    }
    check_export(&src, &temp_dir("mixed-check"));
}

#[test]
fn export_refuses_to_overwrite_its_source() {
    let dir = temp_dir("overwrite");
    let copy = init_copy(&root().join("examples/xnor_layer.ir"), &dir, false);
    // The model as src.ir, still naming xnor_layer.safetensors.
    let src = dir.join("src.ir");
    std::fs::rename(&copy, &src).unwrap();
    // The model itself, and an output whose weights file is the source's.
    for out in [src.clone(), dir.join("xnor_layer.ir")] {
        let e = export_to(&src, &out).unwrap_err();
        assert!(matches!(e, ExportError::Overwrite { .. }), "{e}");
    }
    assert!(!dir.join("xnor_layer.ir").exists());
    let e = export_to(&src, Path::new("/")).unwrap_err();
    assert!(matches!(e, ExportError::BadOutput { .. }), "{e}");
}

fn bnnc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bnnc"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

#[track_caller]
fn ok(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "stdout: {out}\nstderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

#[track_caller]
fn fails(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("error: "), "{err}");
    err
}

#[test]
fn cli_export_then_check() {
    let dir = temp_dir("cli");
    let out = dir.join("bireal.ir");
    let o = bnnc(&[
        "export",
        "examples/bireal_cnn.ir",
        "-o",
        out.to_str().unwrap(),
    ]);
    let text = ok(&o);
    assert!(
        text.starts_with(&format!("wrote {} and ", out.display())),
        "{text}"
    );
    assert!(
        text.contains("latent weights stored as packed b1"),
        "{text}"
    );
    assert!(text.contains("x smaller)"), "{text}");
    let checked = ok(&bnnc(&["check", out.to_str().unwrap()]));
    assert!(checked.starts_with("bireal_cnn: "), "{checked}");
    // A missing model is one clean error.
    let err = fails(&bnnc(&["export", "nope.ir", "-o", out.to_str().unwrap()]));
    assert!(err.starts_with("nope.ir: error: cannot read"), "{err}");
    let help = ok(&bnnc(&["help", "export"]));
    assert!(
        help.contains("bnnc export examples/mnist_mlp.ir -o"),
        "{help}"
    );
}

#[test]
fn eval_interp_and_jit_agree_on_the_first_200_test_images() {
    let model = Model::load(&root().join("examples/mnist_mlp.ir")).unwrap();
    let data = load_idx_dir(&root().join("data/mnist"), Split::Test).unwrap();
    let run = |engine, batch| {
        let opts = EvalOptions {
            engine,
            batch,
            limit: Some(200),
        };
        evaluate(&model, &data, &opts).unwrap()
    };
    let interp = run(EvalEngine::Interp, 64);
    let jit = run(EvalEngine::jit(), 77);
    assert_eq!(interp.images, 200);
    assert_eq!(interp.outputs.dims, [200, 10]);
    assert_eq!(interp.predictions, jit.predictions);
    assert_eq!(interp.correct, jit.correct);
    assert_same_bits(&jit.outputs, &interp.outputs, "logits");
    // The predictions are the argmax of the logits, and `correct` counts labels.
    let logits = interp.outputs.as_f32().unwrap();
    let labels = data.labels_of(&(0..200).collect::<Vec<_>>()).unwrap();
    let mut correct = 0;
    for (i, row) in logits.chunks(10).enumerate() {
        let best = (0..10).fold(0, |b, k| if row[k] > row[b] { k } else { b });
        assert_eq!(interp.predictions[i] as usize, best);
        correct += usize::from(best == labels[i] as usize);
    }
    assert_eq!(interp.correct, correct);
}

#[test]
fn cli_eval_prints_the_same_accuracy_for_both_engines() {
    let args = [
        "eval",
        "examples/mnist_mlp.ir",
        "--data",
        "data/mnist",
        "--limit",
        "200",
    ];
    let interp = ok(&bnnc(&args));
    let mut jit_args = args.to_vec();
    jit_args.extend(["--engine", "jit", "--batch", "50"]);
    let jit = ok(&bnnc(&jit_args));
    let accuracy = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("accuracy "))
            .unwrap_or_else(|| panic!("{s}"))
            .to_string()
    };
    assert_eq!(accuracy(&interp), accuracy(&jit));
    assert!(interp.contains("200 images, interpreter"), "{interp}");
    assert!(jit.contains("jit (cranelift, -O1)"), "{jit}");
    assert!(jit.contains(" images/s ("), "{jit}");
}

#[test]
fn eval_errors_are_clean() {
    let data = ["--data", "data/mnist", "--limit", "10"];
    let e = fails(&bnnc(
        &[&["eval", "examples/xnor_layer.ir"][..], &data].concat(),
    ));
    assert!(e.starts_with("examples/xnor_layer.ir: error: "), "{e}");
    assert!(e.contains("28x28"), "{e}");
    let e = fails(&bnnc(&[
        "eval",
        "examples/mnist_mlp.ir",
        "--data",
        "no/such/dir",
    ]));
    assert!(e.contains("no/such/dir"), "{e}");
    let e = fails(&bnnc(
        &[
            &["eval", "examples/mnist_mlp.ir", "--backend", "llvm"][..],
            &data,
        ]
        .concat(),
    ));
    assert!(e.contains("add --engine jit"), "{e}");
    let help = ok(&bnnc(&["help", "eval"]));
    assert!(
        help.contains("bnnc eval examples/mnist_mlp.ir --data data/mnist"),
        "{help}"
    );
}
