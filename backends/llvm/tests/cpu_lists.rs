//! The CPU lists of `bnnc_llvm::known_cpus` are LLVM's: every CPU the linked
//! LLVM lists for the architecture (`-mcpu=help`) is either known or refused
//! (a 32-bit CPU LLVM would abort on), and nothing else is.
//!
//! LLVM prints that list to standard error once per process, so each
//! architecture's list comes from a child process: this test binary run
//! again on `llvm_prints_its_cpus` with `BNNC_LLVM_HELP_TRIPLE` set.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use bnnc_kir::target::Arch;

const ENV: &str = "BNNC_LLVM_HELP_TRIPLE";

/// In the child: asks LLVM for CPU "help", which prints the lists.
#[test]
fn llvm_prints_its_cpus() {
    let Ok(triple) = std::env::var(ENV) else {
        return;
    };
    #[cfg(feature = "llvm")]
    {
        use inkwell::targets::{CodeModel, InitializationConfig, RelocMode, Target, TargetTriple};
        let c = InitializationConfig::default();
        Target::initialize_x86(&c);
        Target::initialize_aarch64(&c);
        Target::initialize_riscv(&c);
        let tt = TargetTriple::create(&triple);
        let t = Target::from_triple(&tt).unwrap();
        let tm = t.create_target_machine(
            &tt,
            "help",
            "",
            inkwell::OptimizationLevel::None,
            RelocMode::Default,
            CodeModel::Default,
        );
        assert!(tm.is_some());
    }
    #[cfg(not(feature = "llvm"))]
    let _ = triple;
}

fn llvm_cpus(arch: Arch) -> BTreeSet<String> {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([
            "--exact",
            "llvm_prints_its_cpus",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV, arch.triple())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    let mut lines = err
        .lines()
        .skip_while(|l| !l.starts_with("Available CPUs for this target"));
    assert!(lines.next().is_some(), "no CPU list from LLVM:\n{err}");
    lines
        .take_while(|l| !l.starts_with("Available features"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn known_cpus_are_llvms() {
    if !common::llvm("known_cpus_are_llvms") {
        return;
    }
    for arch in Arch::ALL {
        let llvm = llvm_cpus(arch);
        assert!(llvm.len() > 10, "{arch}: {llvm:?}");
        let known: BTreeSet<String> = bnnc_llvm::known_cpus(arch)
            .iter()
            .map(|s| s.to_string())
            .collect();
        let refused: BTreeSet<String> = bnnc_llvm::refused_cpus(arch)
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(known.is_disjoint(&refused), "{arch}");
        let ours: BTreeSet<String> = known.union(&refused).cloned().collect();
        assert_eq!(
            ours.symmetric_difference(&llvm).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "{arch}: the lists differ from LLVM's"
        );
    }
}

/// Every known CPU compiles; LLVM accepts it without a complaint.
#[test]
fn every_known_cpu_compiles() {
    if !common::llvm("every_known_cpu_compiles") {
        return;
    }
    use bnnc_kir::build::*;
    use bnnc_kir::{Stmt, Ty, UnOp};
    let (mut f, p) = common::func("pc", &[("x", Ty::I64)], Some(Ty::I64));
    f.body.push(Stmt::Return(Some(un(UnOp::Popcnt, var(p[0])))));
    let m = common::module(vec![f]);
    for arch in Arch::ALL {
        for cpu in bnnc_llvm::known_cpus(arch) {
            let t = bnnc_kir::target::Target::new(arch).with_cpu(cpu).unwrap();
            bnnc_llvm::compile_object(&m, &t).unwrap_or_else(|e| panic!("{t}: {e}"));
        }
    }
}
