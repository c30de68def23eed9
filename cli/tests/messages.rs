//! Error messages of the command line: each names the file at fault (with
//! line:col for a place in a model), says what was found and what was
//! expected, fits on one line and escapes control characters from files.
//! Each message is a snapshot, with the test's scratch folder written `DIR`.

mod common;
use common::*;

use std::path::Path;

/// The error of `bnnc ARGS` (exit 1, one line), the scratch folder `dir`
/// written `DIR`.
#[track_caller]
fn error_of(args: &[&str], dir: &Path) -> String {
    let err = fails(&bnnc(args));
    assert_eq!(err.lines().count(), 1, "{err}");
    err.trim_end().replace(s(dir), "DIR")
}

/// An `.npy` file (version 1.0) with header `descr` and `shape` and `data`
/// after it, as numpy writes it.
fn npy(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(header.len() as u16).to_le_bytes());
    b.extend_from_slice(header.as_bytes());
    b.extend_from_slice(data);
    b
}

const RELU: &str = "model relu2\ninput x: f32[N, 2]\ny = relu(x)\noutput y\n";

/// A folder with `m.ir` (a relu over `f32[N, 2]`) and `x.npy` holding `bytes`.
fn relu_with_npy(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = scratch(name);
    std::fs::write(dir.join("m.ir"), RELU).unwrap();
    std::fs::write(dir.join("x.npy"), bytes).unwrap();
    dir
}

fn run_npy(dir: &Path) -> String {
    error_of(
        &[
            "run",
            s(&dir.join("m.ir")),
            "--input",
            s(&dir.join("x.npy")),
        ],
        dir,
    )
}

#[test]
fn npy_integer_an_f32_cannot_hold() {
    let data: Vec<u8> = [3i64, 16_777_217]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let dir = relu_with_npy("npy_inexact", &npy("<i8", &[1, 2], &data));
    insta::assert_snapshot!("npy_integer_an_f32_cannot_hold", run_npy(&dir));
    // Integers an f32 holds exactly are fine, above 2^24 too.
    let data: Vec<u8> = [16_777_216i64, 1 << 40]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let dir = relu_with_npy("npy_exact", &npy("<i8", &[1, 2], &data));
    let out = ok(&bnnc(&[
        "run",
        s(&dir.join("m.ir")),
        "--input",
        s(&dir.join("x.npy")),
    ]));
    assert!(out.contains("values: [1.678e7, 1.100e12]"), "{out}");
}

#[test]
fn npy_data_longer_than_its_header() {
    let data: Vec<u8> = [1f32, 2.0, 3.0]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let dir = relu_with_npy("npy_long", &npy("<f4", &[1, 2], &data));
    insta::assert_snapshot!("npy_data_longer_than_its_header", run_npy(&dir));
}

#[test]
fn npy_data_shorter_than_its_header() {
    let data: Vec<u8> = [1f32].iter().flat_map(|x| x.to_le_bytes()).collect();
    let dir = relu_with_npy("npy_short", &npy("<f4", &[1, 2], &data));
    insta::assert_snapshot!("npy_data_shorter_than_its_header", run_npy(&dir));
}

#[test]
fn npy_header_error_on_one_line() {
    let header = "{'descr': '<f4', 'fortran_order'\n\n }       \n";
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(header.len() as u16).to_le_bytes());
    b.extend_from_slice(header.as_bytes());
    let dir = relu_with_npy("npy_header", &b);
    insta::assert_snapshot!("npy_header_error_on_one_line", run_npy(&dir));
}

#[test]
fn run_help_says_what_integer_npy_inputs_do() {
    let help = ok(&bnnc(&["run", "--help"]));
    assert!(
        help.contains("only with values an f32 holds exactly") && help.contains("16777217"),
        "{help}"
    );
    assert!(
        help.contains("longer or shorter than its header says"),
        "{help}"
    );
}

/// A folder holding `m.ir` with the text `src`.
fn model_dir(name: &str, src: &[u8]) -> std::path::PathBuf {
    let dir = scratch(name);
    std::fs::write(dir.join("m.ir"), src).unwrap();
    dir
}

#[test]
fn invalid_utf8_in_a_model() {
    let dir = model_dir(
        "utf8",
        b"model m\ninput x: f32[N, 2]\ny = relu(x) # caf\xe9\noutput y\n",
    );
    let m = dir.join("m.ir");
    for cmd in ["check", "print", "init", "train"] {
        let mut args = vec![cmd, s(&m)];
        if cmd == "train" {
            args.extend(["--data", "data/mnist"]);
        }
        let err = error_of(&args, &dir);
        assert_eq!(
            err,
            "DIR/m.ir:3:18: error: invalid UTF-8: byte 0xe9 is not UTF-8; model files are UTF-8 text",
            "{cmd}"
        );
    }
    insta::assert_snapshot!(
        "invalid_utf8_in_a_model",
        error_of(&["check", s(&dir.join("m.ir"))], &dir)
    );
}

#[test]
fn model_named_by_a_reserved_word() {
    for word in ["output", "input"] {
        let dir = model_dir(
            &format!("reserved_{word}"),
            format!("model {word}\ninput x: f32[N, 2]\noutput x\n").as_bytes(),
        );
        insta::assert_snapshot!(
            format!("model_named_{word}"),
            error_of(&["check", s(&dir.join("m.ir"))], &dir)
        );
    }
}

const WITH_WEIGHTS: &str = "model m\nweights \"w.safetensors\"\ninput x: f32[N, 2]\nk = @k: f32[2]\ny = add(x, k)\noutput y\n";

#[test]
fn missing_weights_file_points_at_the_weights_line() {
    let dir = model_dir("weights_missing", WITH_WEIGHTS.as_bytes());
    insta::assert_snapshot!(
        "missing_weights_file",
        error_of(&["check", s(&dir.join("m.ir"))], &dir)
    );
}

#[test]
fn broken_weights_file_points_at_the_weights_line_and_names_the_tensor() {
    let dir = model_dir("weights_broken", WITH_WEIGHTS.as_bytes());
    let header = r#"{"k":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[0; 5]);
    std::fs::write(dir.join("w.safetensors"), &bytes).unwrap();
    insta::assert_snapshot!(
        "truncated_weights_file",
        error_of(&["run", s(&dir.join("m.ir")), "--random"], &dir)
    );
    std::fs::write(dir.join("w.safetensors"), b"not safetensors").unwrap();
    insta::assert_snapshot!(
        "garbage_weights_file",
        error_of(&["compile", s(&dir.join("m.ir"))], &dir)
    );
}

#[test]
fn control_characters_from_files_are_escaped() {
    let src = "model m\nweights \"w\x1b[31m\x07.safetensors\"\ninput x: f32[N, 2]\nk = @\"k\x1b[2J\": f32[2]\ny = add(x, k)\noutput y\n";
    let dir = model_dir("control", src.as_bytes());
    let err = error_of(&["check", s(&dir.join("m.ir"))], &dir);
    assert!(!err.contains('\x1b') && !err.contains('\x07'), "{err}");
    insta::assert_snapshot!("control_characters_in_the_weights_path", err);
    // The key, quoted from the model when the weights file lacks it.
    std::fs::write(
        dir.join("m.ir"),
        src.replace("w\x1b[31m\x07.safetensors", "w.safetensors"),
    )
    .unwrap();
    let mut w = bnnc_ir::Weights::new();
    w.insert(
        "other\n\x1b[1m",
        bnnc_ir::Tensor::f32(vec![2], vec![1.0, 2.0]),
    );
    w.save(&dir.join("w.safetensors")).unwrap();
    let err = error_of(&["check", s(&dir.join("m.ir"))], &dir);
    assert!(!err.contains('\x1b'), "{err}");
    insta::assert_snapshot!("control_characters_in_keys", err);
    // A path typed on the command line.
    let err = error_of(&["check", "no\x1b[31msuch\n.ir"], &dir);
    insta::assert_snapshot!("control_characters_in_a_typed_path", err);
}

/// Writes an IDX3 image file of `n` 28x28 images holding `pixels` bytes of
/// data, and an IDX1 label file of `labels` labels, as the test split.
fn idx_dir(name: &str, n: u32, pixels: usize, labels: u32) -> std::path::PathBuf {
    let dir = scratch(name);
    let mut images = [0x0803u32, n, 28, 28]
        .iter()
        .flat_map(|x| x.to_be_bytes())
        .collect::<Vec<u8>>();
    images.extend(std::iter::repeat_n(7u8, pixels));
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), images).unwrap();
    let mut lab = [0x0801u32, labels]
        .iter()
        .flat_map(|x| x.to_be_bytes())
        .collect::<Vec<u8>>();
    lab.extend(std::iter::repeat_n(1u8, labels as usize));
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), lab).unwrap();
    dir
}

#[test]
fn eval_blames_the_dataset() {
    let eval = |dir: &Path| {
        error_of(
            &[
                "eval",
                "examples/mnist_mlp.ir",
                "--data",
                s(dir),
                "--limit",
                "2",
            ],
            dir,
        )
    };
    let dir = idx_dir("eval_truncated", 3, 2 * 784 + 100, 3);
    let err = eval(&dir);
    assert!(err.starts_with("DIR: error:"), "{err}");
    insta::assert_snapshot!("eval_truncated_images", err);
    let dir = idx_dir("eval_count", 3, 3 * 784, 2);
    let err = eval(&dir);
    assert!(err.starts_with("DIR: error:"), "{err}");
    insta::assert_snapshot!("eval_label_count_mismatch", err);
}

#[test]
fn jit_errors_do_not_speak_of_the_interpreter() {
    let dir = scratch("jit_words");
    let err = error_of(
        &[
            "run",
            "examples/bireal_cnn.ir",
            "--random",
            "--engine",
            "jit",
            "--batch",
            "1000000",
        ],
        &dir,
    );
    assert!(!err.contains("interpreter"), "{err}");
    insta::assert_snapshot!("jit_batch_too_large", err);
}

/// Models the native backends refuse: a `u4` output, and a `u4` value
/// inside the graph (both at line 4, column 5, the op `quantize`).
const UNSUPPORTED: [(&str, &str); 2] = [
    (
        "output",
        "model uns\ninput x: f32[N, 4]\ny = relu(x)\nq = quantize(y, to=u4, scale=0.25)\noutput q\n",
    ),
    (
        "op",
        "model uns\ninput x: f32[N, 4]\ny = relu(x)\nq = quantize(y, to=u4, scale=0.25)\n\
         d = dequantize(q, scale=0.25)\noutput d\n",
    ),
];

#[test]
fn unsupported_ops_carry_their_line_and_column() {
    for (name, src) in UNSUPPORTED {
        let dir = model_dir(&format!("unsupported_{name}"), src.as_bytes());
        let m = dir.join("m.ir");
        for opt in ["-O0", "-O1"] {
            let err = error_of(&["compile", s(&m), "-o", s(&dir), opt], &dir);
            assert!(
                err.starts_with("DIR/m.ir:4:5: error: not supported yet"),
                "{opt}: {err}"
            );
            insta::assert_snapshot!(format!("unsupported_{name}_compile{opt}"), err);
            let jit = error_of(&["run", s(&m), "--random", "--engine", "jit", opt], &dir);
            assert_eq!(jit, err, "{opt}");
        }
    }
}

#[test]
fn malformed_targets_say_what_is_wrong() {
    let dir = scratch("targets");
    for (name, target) in [
        ("native_cpu", "native:znver4"),
        ("empty", ""),
        ("unknown_arch", "arm"),
        ("empty_feature", "x86_64+"),
    ] {
        let err = error_of(
            &[
                "compile",
                "examples/mnist_mlp.ir",
                "--target",
                target,
                "-o",
                s(&dir),
            ],
            &dir,
        );
        insta::assert_snapshot!(format!("target_{name}"), err);
    }
}
