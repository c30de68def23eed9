mod common;
use bnnc_ir::kir::build::*;
use bnnc_ir::kir::{Stmt, Ty, UnOp};
use common::*;
#[test]
fn show() {
    let (mut f, p) = func("popsum", &[("p", Ty::PTR), ("n", Ty::I64)], Some(Ty::I64));
    let (acc, i) = (f.var("acc", Ty::I64), f.var("i", Ty::I64));
    f.body = vec![
        Stmt::Assign(acc, i64c(0)),
        Stmt::For {
            var: i,
            start: i64c(0),
            end: var(p[1]),
            step: 1,
            body: vec![Stmt::Assign(
                acc,
                add(
                    var(acc),
                    un(UnOp::Popcnt, load(Ty::I64, addr(var(p[0]), var(i), 8))),
                ),
            )],
        },
        Stmt::Return(Some(var(acc))),
    ];
    let m = module(vec![f]);
    for t in ["x86_64", "x86_64+popcnt", "aarch64"] {
        let t = bnnc_ir::target::Target::parse(t).unwrap();
        println!("{}", bnnc_cranelift::disassembly(&m, &t).unwrap());
    }
    println!(
        "{}",
        bnnc_cranelift::clif_text(&m, &bnnc_ir::target::Target::parse("x86_64").unwrap()).unwrap()
    );
}
