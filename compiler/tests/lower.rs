//! Lowering produces well-typed kir for every example, with a memory plan.

use std::path::Path;

use bnnc::lower::lower;
use bnnc_ir::Model;
use bnnc_kir::target::Target;

#[test]
fn examples_lower_to_checked_kir() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut seen = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "ir") {
            let m = Model::load(&p).unwrap();
            let l = lower(&m, &Target::host().unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert!(!l.module.functions.is_empty());
            println!(
                "{}: {} functions, workspace {} + {}*batch bytes",
                p.display(),
                l.module.functions.len(),
                l.workspace.fixed,
                l.workspace.per_sample
            );
            seen += 1;
        }
    }
    assert!(seen >= 4);
}

/// A threshold after a binary conv runs inside the conv's kernel: bits come
/// straight out of the popcount loop and the i32 accumulator is never stored.
#[test]
fn threshold_fuses_into_the_binary_conv() {
    let w: Vec<&str> = (0..2 * 9 * 70)
        .map(|i| if i % 3 == 0 { "-1" } else { "1" })
        .collect();
    let src = format!(
        "model fuse\ninput x: b1[N, 5, 5, 70]\nw = [{}]: b1[2, 3, 3, 70]\nacc = conv2d(x, w, padding=1, pad_value=0)\nt = [3, -4]: i32[2, 1]\ny = threshold(acc, t)\nz = sign(y)\noutput z\n",
        w.join(", ")
    );
    let g = bnnc_ir::text::parse(&src).unwrap();
    let m = Model::from_graph(g, None, Path::new("fuse.ir")).unwrap();
    let l = lower(&m, &Target::host().unwrap()).unwrap();
    let kernels: Vec<&str> = l
        .module
        .functions
        .iter()
        .map(|f| f.name.as_str())
        .filter(|n| n.contains("_k"))
        .collect();
    assert!(
        kernels.iter().any(|n| n.ends_with("conv2d_b1")),
        "{kernels:?}"
    );
    assert!(
        !kernels.iter().any(|n| n.ends_with("threshold")),
        "{kernels:?}"
    );
    assert!(l.plan.iter().all(|e| e.what != "acc"), "{:?}", l.plan);
}
