//! Lowering produces well-typed kir for every example, with a memory plan.

use std::path::Path;

use bnnc::lower::lower;
use bnnc_ir::Model;

#[test]
fn examples_lower_to_checked_kir() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut seen = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "ir") {
            let m = Model::load(&p).unwrap();
            let l = lower(&m).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
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
