//! Relocatable objects: ELF headers and symbols for each target, and a link
//! with gcc into a running program.

mod common;

use std::path::Path;
use std::process::Command;

use bnnc_cranelift::compile_object;
use bnnc_kir::build::*;
use bnnc_kir::target::{Arch, Target};
use bnnc_kir::{
    BinOp, CastOp, Data, DataId, Expr, Extern, ExternId, FuncId, Module, Stmt, Ty, UnOp,
};
use common::*;
use cranelift_object::object::read::elf::ElfFile64;
use cranelift_object::object::{Endianness, Object, ObjectSection, ObjectSymbol, SectionKind};

/// A small model-like module: a popcount kernel, a table in rodata, an
/// extern call and a local helper.
fn model() -> Module {
    let mut m = module(vec![]);
    m.name = "tiny".into();
    m.data.push(Data {
        name: "tiny_table".into(),
        align: 16,
        bytes: [10i32, -20, 30, 40]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
    });
    m.externs.push(Extern {
        name: "expf".into(),
        params: vec![Ty::F32],
        ret: Ty::F32,
    });
    // Local helper: *out = popcount(a ^ w) for one word.
    let (mut h, p) = func(
        "tiny_xor_pop",
        &[("out", Ty::PTR), ("a", Ty::I64), ("w", Ty::I64)],
        None,
    );
    h.exported = false;
    h.body = vec![Stmt::Store {
        addr: var(p[0]),
        value: un(UnOp::Popcnt, bin(BinOp::Xor, var(p[1]), var(p[2]))),
    }];
    // tiny_dot(a, w, n, tmp) = sum over i of popcount(a[i] ^ w[i]) via the
    // helper, plus table[n % 4].
    let (mut f, p) = func(
        "tiny_dot",
        &[
            ("a", Ty::PTR),
            ("w", Ty::PTR),
            ("n", Ty::I64),
            ("tmp", Ty::PTR),
        ],
        Some(Ty::I64),
    );
    let (acc, i) = (f.var("acc", Ty::I64), f.var("i", Ty::I64));
    f.body = vec![
        Stmt::Assign(acc, i64c(0)),
        Stmt::For {
            var: i,
            start: i64c(0),
            end: var(p[2]),
            step: 1,
            body: vec![
                Stmt::Call(
                    FuncId(0),
                    vec![
                        var(p[3]),
                        load(Ty::I64, addr(var(p[0]), var(i), 8)),
                        load(Ty::I64, addr(var(p[1]), var(i), 8)),
                    ],
                ),
                Stmt::Assign(acc, add(var(acc), load(Ty::I64, var(p[3])))),
            ],
        },
        Stmt::Return(Some(add(
            var(acc),
            cast(
                CastOp::SExt,
                load(
                    Ty::I32,
                    addr(
                        Expr::DataAddr(DataId(0)),
                        bin(BinOp::And, var(p[2]), i64c(3)),
                        4,
                    ),
                ),
                Ty::I64,
            ),
        ))),
    ];
    // tiny_exp(x) = expf(x) * 2.
    let (mut e, q) = func("tiny_exp", &[("x", Ty::F32)], Some(Ty::F32));
    e.body = vec![Stmt::Return(Some(bin(
        BinOp::FMul,
        Expr::CallExtern(ExternId(0), vec![var(q[0])]),
        f32c(2.0),
    )))];
    // tiny_touch(a, w, tmp) calls the exported tiny_dot (for its store).
    let (mut c, q) = func(
        "tiny_touch",
        &[("a", Ty::PTR), ("w", Ty::PTR), ("tmp", Ty::PTR)],
        None,
    );
    c.body = vec![Stmt::Call(
        FuncId(1),
        vec![var(q[0]), var(q[1]), i64c(1), var(q[2])],
    )];
    m.functions = vec![h, f, e, c];
    m
}

fn e_machine(obj: &[u8]) -> u16 {
    u16::from_le_bytes([obj[18], obj[19]])
}

#[test]
fn elf_objects_for_each_target() {
    let m = model();
    for (name, machine) in [("x86_64", 62), ("x86_64+popcnt", 62), ("aarch64", 183)] {
        let target = Target::parse(name).unwrap();
        let obj = compile_object(&m, &target).unwrap();
        assert_eq!(&obj[..4], b"\x7fELF", "{name}");
        assert_eq!(obj[4], 2, "{name}: ELFCLASS64");
        assert_eq!(obj[5], 1, "{name}: little-endian");
        assert_eq!(u16::from_le_bytes([obj[16], obj[17]]), 1, "{name}: ET_REL");
        assert_eq!(e_machine(&obj), machine, "{name}");

        let elf = ElfFile64::<Endianness>::parse(&*obj).unwrap();
        let sym = |n: &str| {
            elf.symbols()
                .find(|s| s.name() == Ok(n))
                .unwrap_or_else(|| panic!("{name}: no symbol {n}"))
        };
        let dot = sym("tiny_dot");
        assert!(
            dot.is_definition() && dot.is_global(),
            "{name}: tiny_dot exported"
        );
        let helper = sym("tiny_xor_pop");
        assert!(
            helper.is_definition() && helper.is_local(),
            "{name}: helper local"
        );
        let expf = sym("expf");
        assert!(expf.is_undefined(), "{name}: expf imported");
        let table = sym("tiny_table");
        assert!(
            table.is_local() && table.is_definition(),
            "{name}: table local"
        );
        let section = elf
            .section_by_index(table.section_index().unwrap())
            .unwrap();
        assert_eq!(
            section.kind(),
            SectionKind::ReadOnlyData,
            "{name}: table read-only"
        );
        assert!(section.align() >= 16, "{name}: table section alignment");
        assert_eq!(table.address() % 16, 0, "{name}: table alignment");
        let bytes = section.data().unwrap();
        let off = table.address() as usize;
        assert_eq!(&bytes[off..off + 8], &[10, 0, 0, 0, 0xec, 0xff, 0xff, 0xff]);
    }
}

const DRIVER: &str = r#"
#include <stdint.h>
#include <stdio.h>
#include <math.h>
int64_t tiny_dot(const uint64_t *a, const uint64_t *w, int64_t n, int64_t *tmp);
float tiny_exp(float x);
void tiny_touch(const uint64_t *a, const uint64_t *w, int64_t *tmp);
int main(void) {
    uint64_t a[3] = {0xffffffffffffffffull, 0x0f0f0f0f0f0f0f0full, 12345};
    uint64_t w[3] = {0, 0xf0f0f0f0f0f0f0f0ull, 54321};
    int64_t tmp;
    printf("dot=%lld\n", (long long)tiny_dot(a, w, 3, &tmp));
    printf("dot0=%lld\n", (long long)tiny_dot(a, w, 0, &tmp));
    printf("exp=%d\n", tiny_exp(1.0f) == 2.0f * expf(1.0f));
    tmp = -1;
    tiny_touch(a, w, &tmp);
    printf("touch=%lld\n", (long long)tmp);
    return 0;
}
"#;

/// Is `tool` runnable? Missing tools skip the test, except under CI=true,
/// where they are a failure.
fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("`{tool}` is required under CI=true");
        }
        eprintln!("skipping: `{tool}` is not installed");
    }
    ok
}

fn link_and_run(dir: &Path, target: &Target) -> String {
    let obj = compile_object(&model(), target).unwrap();
    let tag = target.to_string().replace('+', "_");
    let o = dir.join(format!("tiny_{tag}.o"));
    let c = dir.join("driver.c");
    let exe = dir.join(format!("prog_{tag}"));
    std::fs::write(&o, obj).unwrap();
    std::fs::write(&c, DRIVER).unwrap();
    let out = Command::new("gcc")
        .arg("-O1")
        .arg("-o")
        .arg(&exe)
        .arg(&c)
        .arg(&o)
        .arg("-lm")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{target}: gcc failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The object also links into a shared library (exported functions are
    // called through the PLT, data is local).
    let so = dir.join(format!("libtiny_{tag}.so"));
    let out = Command::new("gcc")
        .arg("-shared")
        .arg("-o")
        .arg(&so)
        .arg(&o)
        .arg("-lm")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{target}: gcc -shared failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe).output().unwrap();
    assert!(run.status.success(), "{target}: program failed");
    String::from_utf8(run.stdout).unwrap()
}

#[test]
fn links_with_gcc_and_runs() {
    if !have("gcc") {
        return;
    }
    let host = Target::host().unwrap();
    let names: &[&str] = match host.arch {
        Arch::X86_64 => &["x86_64", "x86_64+popcnt"],
        Arch::Aarch64 => &["aarch64"],
        Arch::Riscv64 => &[],
    };
    let dir = std::env::temp_dir().join(format!("bnnc-cranelift-link-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let a = [u64::MAX, 0x0f0f_0f0f_0f0f_0f0f, 12345];
    let w = [0, 0xf0f0_f0f0_f0f0_f0f0, 54321];
    let pop: i64 = a
        .iter()
        .zip(&w)
        .map(|(x, y)| (x ^ y).count_ones() as i64)
        .sum();
    let want = format!("dot={}\ndot0=10\nexp=1\ntouch=64\n", pop + 40);
    for name in names {
        let target = Target::parse(name).unwrap();
        if !target.missing_on_host().is_empty() {
            continue;
        }
        assert_eq!(link_and_run(&dir, &target), want, "{target}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
