//! Where commands write: only inside the model's folder unless the user
//! names the output, never through a `weights "..."` path that leaves the
//! folder, and never half a file.

mod common;
use common::*;

use std::path::{Path, PathBuf};

const MODEL: &str = "input x: f32[N, 2]\nk = @k: f32[2]\ny = add(x, k)\noutput y\n";

/// `DIR/models/m.ir` naming the weights path `weights`, and `DIR/victim`, a
/// file a model must not overwrite. Returns (DIR, model path).
fn setup(name: &str, weights: &str) -> (PathBuf, PathBuf) {
    let dir = scratch(name);
    std::fs::create_dir(dir.join("models")).unwrap();
    let m = dir.join("models/m.ir");
    std::fs::write(&m, format!("model m\nweights \"{weights}\"\n{MODEL}")).unwrap();
    std::fs::write(dir.join("victim"), b"precious").unwrap();
    (dir, m)
}

/// The error of `bnnc ARGS`, with `dir` written `DIR`.
#[track_caller]
fn error_of(args: &[&str], dir: &Path) -> String {
    let err = fails(&bnnc(args));
    assert_eq!(err.lines().count(), 1, "{err}");
    err.trim_end().replace(s(dir), "DIR")
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() && !p.is_symlink() {
                todo.push(p.clone());
            }
            out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
        }
    }
    out.sort();
    out
}

#[test]
fn init_refuses_a_weights_path_that_climbs_out() {
    let (dir, m) = setup("climb", "../victim");
    let err = error_of(&["init", s(&m)], &dir);
    insta::assert_snapshot!("init_weights_path_climbs_out", err);
    assert_eq!(std::fs::read(dir.join("victim")).unwrap(), b"precious");
    assert_eq!(files(&dir), ["models", "models/m.ir", "victim"]);
    // The user names the output: written there, as asked.
    let out = ok(&bnnc(&["init", s(&m), "-o", s(&dir.join("victim"))]));
    assert!(
        out.starts_with(&format!("wrote {}", s(&dir.join("victim")))),
        "{out}"
    );
    assert_ne!(std::fs::read(dir.join("victim")).unwrap(), b"precious");
    // Reading weights from outside the folder stays allowed.
    ok(&bnnc(&["check", s(&m)]));
}

#[test]
fn init_refuses_an_absolute_weights_path() {
    let dir = scratch("victim_folder");
    let victim = dir.join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let (home, m) = setup("absolute", s(&victim));
    let err = error_of(&["init", s(&m)], &home).replace(s(&dir), "ELSEWHERE");
    insta::assert_snapshot!("init_weights_path_absolute", err);
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
}

#[cfg(unix)]
#[test]
fn init_refuses_a_weights_path_through_a_symlink_out() {
    let (dir, m) = setup("symlink", "link/victim");
    std::os::unix::fs::symlink(&dir, dir.join("models/link")).unwrap();
    let err = error_of(&["init", s(&m)], &dir);
    insta::assert_snapshot!("init_weights_path_through_a_symlink", err);
    assert_eq!(std::fs::read(dir.join("victim")).unwrap(), b"precious");
    // A link to a file outside, under the weights file's own name.
    let (dir, m) = setup("symlink_file", "w.safetensors");
    std::os::unix::fs::symlink(dir.join("victim"), dir.join("models/w.safetensors")).unwrap();
    let err = error_of(&["init", s(&m)], &dir);
    assert!(
        err.contains("leads through a symbolic link to DIR/victim"),
        "{err}"
    );
    assert_eq!(std::fs::read(dir.join("victim")).unwrap(), b"precious");
}

#[test]
fn init_writes_inside_the_model_folder() {
    let (dir, m) = setup("inside", "sub/../w.safetensors");
    std::fs::create_dir(dir.join("models/sub")).unwrap();
    ok(&bnnc(&["init", s(&m)]));
    assert_eq!(
        files(&dir),
        [
            "models",
            "models/m.ir",
            "models/sub",
            "models/w.safetensors",
            "victim"
        ]
    );
    ok(&bnnc(&["check", s(&m)]));
}

#[test]
fn train_refuses_a_weights_path_that_climbs_out() {
    let (dir, m) = setup("train_climb", "../w.safetensors");
    // Initial weights outside, written where the user said.
    ok(&bnnc(&["init", s(&m), "-o", s(&dir.join("w.safetensors"))]));
    let before = std::fs::read(dir.join("w.safetensors")).unwrap();
    let err = error_of(&["train", s(&m), "--data", "data/mnist"], &dir);
    insta::assert_snapshot!("train_weights_path_climbs_out", err);
    assert_eq!(std::fs::read(dir.join("w.safetensors")).unwrap(), before);
    assert_eq!(
        files(&dir),
        ["models", "models/m.ir", "victim", "w.safetensors"]
    );
}

#[test]
fn compile_writes_beside_the_model_by_default() {
    let dir = scratch("compile_default");
    let m = dir.join("tiny.ir");
    std::fs::write(
        &m,
        "model tiny\ninput x: f32[N, 2]\ny = relu(x)\noutput y\n",
    )
    .unwrap();
    let out = ok(&bnnc(&["compile", s(&m), "--target", "x86_64"]));
    assert!(out.contains(s(&dir.join("tiny.o"))), "{out}");
    assert_eq!(files(&dir), ["tiny.h", "tiny.ir", "tiny.o"]);
    assert!(!root().join("tiny.o").exists() && !root().join("tiny.h").exists());
    let help = ok(&bnnc(&["compile", "--help"]));
    assert!(
        help.contains("[default: the model file's folder]"),
        "{help}"
    );
}

#[test]
fn opt_writes_the_weights_beside_its_output() {
    let (dir, m) = setup("opt", "../elsewhere/w.safetensors");
    std::fs::create_dir(dir.join("elsewhere")).unwrap();
    ok(&bnnc(&[
        "init",
        s(&m),
        "-o",
        s(&dir.join("elsewhere/w.safetensors")),
    ]));
    std::fs::create_dir(dir.join("out")).unwrap();
    let o = dir.join("out/m_opt.ir");
    let out = ok(&bnnc(&["opt", s(&m), "-o", s(&o)]));
    assert_eq!(
        out.trim_end(),
        format!(
            "wrote {} and {}",
            s(&o),
            s(&dir.join("out/w.opt.safetensors"))
        )
    );
    assert_eq!(files(&dir.join("out")), ["m_opt.ir", "w.opt.safetensors"]);
    assert!(std::fs::read_to_string(&o)
        .unwrap()
        .contains("weights \"w.opt.safetensors\""));
    ok(&bnnc(&["check", s(&o)]));
}

#[test]
fn a_failed_write_leaves_the_old_file_and_no_temporary() {
    let (dir, m) = setup("atomic", "w.safetensors");
    ok(&bnnc(&["init", s(&m)]));
    // The weights of `opt -o` cannot be written (a folder is in the way):
    // nothing is written, the model text included.
    let out = dir.join("out");
    std::fs::create_dir_all(out.join("w.opt.safetensors/full")).unwrap();
    std::fs::write(out.join("m.ir"), b"old text").unwrap();
    let err = error_of(&["opt", s(&m), "-o", s(&out.join("m.ir"))], &dir);
    assert!(
        err.starts_with("DIR/out/w.opt.safetensors: error: cannot"),
        "{err}"
    );
    assert_eq!(std::fs::read(out.join("m.ir")).unwrap(), b"old text");
    assert_eq!(
        files(&out),
        ["m.ir", "w.opt.safetensors", "w.opt.safetensors/full"]
    );
    // Each writing command, onto a folder: an error, no temporary left.
    let target = dir.join("taken");
    std::fs::create_dir_all(target.join("full")).unwrap();
    let t = s(&target);
    for args in [
        vec!["init", s(&m), "-o", t],
        vec!["graph", s(&m), "-o", t],
        vec!["run", s(&m), "--random", "--output", t],
    ] {
        let err = fails(&bnnc(&args));
        assert!(err.contains("taken"), "{args:?}: {err}");
    }
    assert_eq!(
        files(&dir),
        [
            "models",
            "models/m.ir",
            "models/w.safetensors",
            "out",
            "out/m.ir",
            "out/w.opt.safetensors",
            "out/w.opt.safetensors/full",
            "taken",
            "taken/full",
            "victim",
        ]
    );
}

#[test]
fn help_says_where_commands_write() {
    let init = ok(&bnnc(&["init", "--help"]));
    assert!(init.contains("inside the model's folder"), "{init}");
    assert!(init.contains("-o FILE writes there anyway"), "{init}");
    let train = ok(&bnnc(&["train", "--help"]));
    assert!(train.contains("inside the model's"), "{train}");
    let opt = ok(&bnnc(&["opt", "--help"]));
    assert!(opt.contains("nothing is written"), "{opt}");
}
