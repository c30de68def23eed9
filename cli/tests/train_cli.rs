//! `bnnc train` run as a user would: a small binary MLP trained for a few steps
//! on a subset of the repository's MNIST (`data/mnist`), checking the files it
//! writes, that the loss falls, that runs are reproducible, and the errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bnnc_ir::Model;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// Runs `bnnc ARGS` from the workspace root.
fn bnnc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bnnc"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("bnnc runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[track_caller]
fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// Asserts exit code 1 with a one-line error (no panic) and returns it.
#[track_caller]
fn fails(o: &Output) -> String {
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    err
}

/// A binary MLP 784-64-10: binary weights, binary hidden activations.
const MLP: &str = "\
model tiny_mlp
weights \"tiny_mlp.safetensors\"
input x: f32[N, 784]
w1 = @fc1.weight: f32[64, 784]
wb1 = sign(w1, estimator=ste, clip=1)
h1 = dense(x, wb1)
g1 = @bn1.gamma: f32[64]
b1 = @bn1.beta: f32[64]
m1 = @bn1.mean: f32[64]
v1 = @bn1.var: f32[64]
n1 = batchnorm(h1, g1, b1, m1, v1, eps=0.0001)
a1 = sign(n1, estimator=ste, clip=1)
w2 = @fc2.weight: f32[10, 64]
wb2 = sign(w2, estimator=ste, clip=1)
h2 = dense(a1, wb2)
g2 = @bn2.gamma: f32[10]
b2 = @bn2.beta: f32[10]
m2 = @bn2.mean: f32[10]
v2 = @bn2.var: f32[10]
logits = batchnorm(h2, g2, b2, m2, v2, eps=0.0001)
output logits
";

/// A fresh folder for one test.
fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("train_cli_{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The CSV rows as (epoch, train_loss, test_accuracy, interpreter accuracy).
fn csv_rows(path: &Path) -> Vec<(usize, f64, f64, Option<f64>)> {
    let csv = std::fs::read_to_string(path).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (e, l, a, i) = (
        col("epoch"),
        col("train_loss"),
        col("test_accuracy"),
        col("test_accuracy_interpreter"),
    );
    lines
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            assert_eq!(f.len(), header.len(), "{line}");
            (
                f[e].parse().unwrap(),
                f[l].parse().unwrap(),
                f[a].parse().unwrap(),
                (!f[i].is_empty()).then(|| f[i].parse().unwrap()),
            )
        })
        .collect()
}

const SMOKE: &[&str] = &[
    "--data",
    "data/mnist",
    "--epochs",
    "2",
    "--batch",
    "50",
    "--limit",
    "1500",
    "--test-limit",
    "400",
    "--lr",
    "0.005",
    "--seed",
    "3",
    "-q",
];

#[test]
fn trains_writes_weights_curve_and_plot_and_is_reproducible() {
    let dir = scratch("smoke");
    let model = dir.join("tiny_mlp.ir");
    std::fs::write(&model, MLP).unwrap();
    let weights = dir.join("tiny_mlp.safetensors");

    // No weights yet: the error says how to make them.
    let mut args = vec!["train", s(&model)];
    args.extend(SMOKE);
    let err = fails(&bnnc(&args));
    assert!(err.contains("bnnc init"), "{err}");

    ok(&bnnc(&["init", s(&model), "--seed", "1"]));
    let initial = std::fs::read(&weights).unwrap();

    // Two runs into -o files from the same initial weights: identical bytes,
    // and the model's own weights file untouched.
    let (a, b) = (dir.join("a.safetensors"), dir.join("b.safetensors"));
    for out in [&a, &b] {
        let mut args = vec!["train", s(&model)];
        args.extend(SMOKE);
        args.extend(["-o", s(out)]);
        let stdout = ok(&bnnc(&args));
        assert!(
            stdout.contains("epoch 1/2") && stdout.contains("epoch 2/2"),
            "{stdout}"
        );
        assert!(stdout.contains("reference interpreter"), "{stdout}");
    }
    assert_eq!(std::fs::read(&weights).unwrap(), initial);
    let trained = std::fs::read(&a).unwrap();
    assert_eq!(
        trained,
        std::fs::read(&b).unwrap(),
        "same seed, different weights"
    );
    assert_ne!(trained, initial);

    // The curve: one row per epoch, the loss falls, the interpreter's accuracy
    // (10 classes: chance is 0.1) in the last row.
    let rows = csv_rows(&dir.join("a.train.csv"));
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0].0, rows[1].0), (1, 2));
    assert!(rows[1].1 < rows[0].1, "train loss did not fall: {rows:?}");
    assert!(rows[0].3.is_none());
    let exact = rows[1].3.expect("interpreter accuracy in the last row");
    assert!(exact > 0.6, "{rows:?}");
    let svg = std::fs::read_to_string(dir.join("a.train.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("<polyline"),
        "{svg:.200}"
    );

    // By default the weights file the model names is updated, and the model
    // loads with it.
    let mut args = vec!["train", s(&model)];
    args.extend(SMOKE);
    ok(&bnnc(&args));
    assert_eq!(std::fs::read(&weights).unwrap(), trained);
    assert!(dir.join("tiny_mlp.train.csv").exists());
    assert!(dir.join("tiny_mlp.train.svg").exists());
    Model::load(&model).expect("the trained model loads");
}

#[test]
fn errors_name_the_problem() {
    let dir = scratch("errors");
    let model = dir.join("tiny_mlp.ir");
    std::fs::write(&model, MLP).unwrap();
    ok(&bnnc(&["init", s(&model)]));
    let base = ["train", s(&model), "--epochs", "1", "--limit", "100"];
    let run = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend(extra);
        bnnc(&args)
    };

    let err = fails(&run(&["--data", s(&dir.join("nowhere"))]));
    assert!(
        err.contains("--data") && err.contains("not a folder"),
        "{err}"
    );
    let err = fails(&run(&["--data", s(&dir)]));
    assert!(
        err.contains("cannot read the dataset") && err.contains("train"),
        "{err}"
    );
    let err = fails(&run(&["--data", "data/mnist", "--estimator", "sgn"]));
    assert!(err.contains("unknown estimator `sgn`"), "{err}");
    let err = fails(&run(&["--data", "data/mnist", "--estimator", "ste:beta=2"]));
    assert!(err.contains("no parameter `beta`"), "{err}");
    let err = fails(&run(&[
        "--data",
        "data/mnist",
        "-o",
        s(&dir.join("no/w.safetensors")),
    ]));
    assert!(err.contains("its folder does not exist"), "{err}");
    let err = fails(&run(&["--data", "data/mnist", "--lr=-1"]));
    assert!(err.contains("--lr"), "{err}");

    // An input that is not one 28x28 image.
    let wrong = dir.join("wrong.ir");
    std::fs::write(
        &wrong,
        MLP.replace("tiny_mlp", "wrong")
            .replace("f32[N, 784]", "f32[N, 100]")
            .replace("f32[64, 784]", "f32[64, 100]"),
    )
    .unwrap();
    ok(&bnnc(&["init", s(&wrong)]));
    let err = fails(&bnnc(&[
        "train",
        s(&wrong),
        "--data",
        "data/mnist",
        "--limit",
        "100",
    ]));
    assert!(
        err.contains("does not fit") && err.contains("28x28") && err.contains("f32[N, 100]"),
        "{err}"
    );
}

#[test]
fn help_teaches_with_examples() {
    let out = ok(&bnnc(&["train", "--help"]));
    for needle in [
        "Examples:",
        "bnnc init examples/train/mnist_cnn.ir",
        "--data",
        "--estimator",
        "--limit",
        "reference interpreter",
    ] {
        assert!(out.contains(needle), "missing {needle}:\n{out}");
    }
}

/// `--standardize` and `--xnor-scale` train an XNOR-Net-style layer: the saved
/// latent weight is standardised per output channel and the saved alpha is
/// mean |W| of each of its rows, as the graph used them.
#[test]
fn weight_transforms_standardize_and_xnor_scale() {
    let dir = scratch("transforms");
    let model = dir.join("xnor_mlp.ir");
    let text = MLP.replace("tiny_mlp", "xnor_mlp").replace(
        "h1 = dense(x, wb1)\n",
        "h0 = dense(x, wb1)\nal = @fc1.alpha: f32[64]\nh1 = mul(h0, al)\n",
    );
    std::fs::write(&model, text).unwrap();
    ok(&bnnc(&["init", s(&model), "--seed", "1"]));

    // A malformed pair is refused before training.
    let mut args = vec!["train", s(&model), "--xnor-scale", "fc1.alpha"];
    args.extend(SMOKE);
    let err = fails(&bnnc(&args));
    assert!(err.contains("ALPHA=WEIGHT"), "{err}");

    let out = dir.join("t.safetensors");
    let mut args = vec![
        "train",
        s(&model),
        "--standardize",
        "fc1.weight",
        "--xnor-scale",
        "fc1.alpha=fc1.weight",
        "-o",
        s(&out),
    ];
    args.extend(SMOKE);
    ok(&bnnc(&args));
    let w = bnnc_ir::Weights::load(&out).unwrap();
    let wt = w.get("fc1.weight").unwrap().as_f32().unwrap().to_vec();
    let alpha = w.get("fc1.alpha").unwrap().as_f32().unwrap().to_vec();
    assert_eq!((wt.len(), alpha.len()), (64 * 784, 64));
    for (o, row) in wt.chunks(784).enumerate() {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / 784.0;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / 784.0;
        assert!(
            // var' = var / (var + eps) with eps = 1e-5: just below 1 for
            // latent weights of variance ~1e-4 to 1e-3.
            mean.abs() < 1e-4 && (0.9..=1.0 + 1e-6).contains(&var),
            "row {o}: mean {mean}, var {var}"
        );
        let mean_abs = row.iter().map(|&v| v.abs() as f64).sum::<f64>() / 784.0;
        assert!(
            (alpha[o] as f64 - mean_abs).abs() <= 1e-5 * mean_abs.max(1.0),
            "row {o}: alpha {} vs mean |W| {mean_abs}",
            alpha[o]
        );
    }
}
