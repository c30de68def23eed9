//! Models and scratch directories shared by the unit tests.

use std::path::{Path, PathBuf};

use bnnc::lower::Lowered;
use bnnc_ir::Model;
use bnnc_kir::target::Target;

/// A model with f32, i32 and b1 inputs and outputs, and an unbatched input.
pub(crate) fn mixed_source() -> String {
    let w: Vec<String> = (0..140)
        .map(|i| if (i * 7 + 3) % 5 < 2 { "-1" } else { "1" }.to_string())
        .collect();
    format!(
        "model mixed_net\n\
         input x: f32[N, 3]\n\
         input k: i32[N, 2]\n\
         input b: b1[N, 70]\n\
         input t: f32[3]\n\
         w = [{}]: f32[2, 70]\n\
         wb = sign(w)\n\
         acc = dense(b, wb)\n\
         s = add(acc, k)\n\
         y = add(x, t)\n\
         sx = sign(y)\n\
         output y\n\
         output s\n\
         output sx\n",
        w.join(", ")
    )
}

pub(crate) fn mixed_model(dir: &Path) -> PathBuf {
    let path = dir.join("mixed.ir");
    std::fs::write(&path, mixed_source()).unwrap();
    path
}

pub(crate) fn lowered(src: &str) -> Lowered {
    let graph = Model::parse_checked(src, Path::new("t.ir")).unwrap();
    let model = Model::from_graph(graph, None, Path::new("t.ir")).unwrap();
    bnnc::lower::lower(&model, &Target::host().unwrap()).unwrap()
}

pub(crate) fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bnnc-build-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
