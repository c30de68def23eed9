//! Which `i64` variables of a kir module hold addresses.
//!
//! kir has no pointer type: addresses are `i64`. LLVM's loop analyses see
//! through `getelementptr` but not through `inttoptr`, so the translation
//! gives an `i64` variable the LLVM type `ptr` when it serves as the base of
//! addresses. This analysis decides which, for the whole module at once
//! (a parameter that callers pass addresses to is a pointer too). It is a
//! heuristic for speed only: the translation converts between `ptr` and
//! `i64` wherever a value is used the other way, so the result never
//! depends on it.
//!
//! The base of an address expression is the variable at its root: `v` in
//! `v`, `add(v, off)`, `sub(v, off)`, preferring the left operand of an `add`
//! as kir's address builder (`addr(base, index, scale)`) puts the base
//! there. A variable is a pointer when it is the base of a load or store
//! address or of an argument for a pointer parameter, or is copied into a
//! pointer variable; loop variables stay integers, and so do the parameters
//! of packed functions (`translate::is_packed`), which arrive in memory as
//! 8-byte slots.

use bnnc_kir::{BinOp, Expr, Module, Stmt, Ty, VarId};

/// `is_ptr[f][v]`: variable `v` of function `f` is a pointer.
pub(crate) fn analyse(m: &Module) -> Vec<Vec<bool>> {
    let mut is_ptr: Vec<Vec<bool>> = m
        .functions
        .iter()
        .map(|f| vec![false; f.vars.len()])
        .collect();
    let loop_vars: Vec<Vec<bool>> = m
        .functions
        .iter()
        .map(|f| {
            let mut lv = vec![false; f.vars.len()];
            mark_loop_vars(&f.body, &mut lv);
            lv
        })
        .collect();
    let packed: Vec<bool> = m
        .functions
        .iter()
        .map(super::translate::is_packed)
        .collect();
    loop {
        let mut changed = false;
        for (fi, f) in m.functions.iter().enumerate() {
            let mut wants: Vec<VarId> = Vec::new();
            collect(&f.body, &is_ptr, fi, &mut wants);
            for v in wants {
                let i = v.0 as usize;
                // A packed function's parameters stay `i64` (see `is_packed`).
                if i < f.params && packed[fi] {
                    continue;
                }
                if i < f.vars.len()
                    && f.vars[i].ty == Ty::I64
                    && !loop_vars[fi][i]
                    && !is_ptr[fi][i]
                {
                    is_ptr[fi][i] = true;
                    changed = true;
                }
            }
        }
        if !changed {
            return is_ptr;
        }
    }
}

fn mark_loop_vars(b: &[Stmt], lv: &mut [bool]) {
    for s in b {
        match s {
            Stmt::For { var, body, .. } => {
                if let Some(x) = lv.get_mut(var.0 as usize) {
                    *x = true;
                }
                mark_loop_vars(body, lv);
            }
            Stmt::If { then, els, .. } => {
                mark_loop_vars(then, lv);
                mark_loop_vars(els, lv);
            }
            _ => {}
        }
    }
}

/// The variable at the root of an address expression, if any.
pub(crate) fn base(e: &Expr) -> Option<VarId> {
    match e {
        Expr::Var(v) => Some(*v),
        Expr::Bin(BinOp::Add, a, b) => base(a).or_else(|| base(b)),
        Expr::Bin(BinOp::Sub, a, _) => base(a),
        _ => None,
    }
}

/// Variables that some use in `b` wants as pointers, given `is_ptr` so far.
fn collect(b: &[Stmt], is_ptr: &[Vec<bool>], fi: usize, out: &mut Vec<VarId>) {
    for s in b {
        match s {
            Stmt::Assign(v, e) => {
                if is_ptr[fi][v.0 as usize] {
                    out.extend(base(e));
                }
                exprs(e, out);
            }
            Stmt::Store { addr, value } => {
                out.extend(base(addr));
                exprs(addr, out);
                exprs(value, out);
            }
            Stmt::For {
                start, end, body, ..
            } => {
                exprs(start, out);
                exprs(end, out);
                collect(body, is_ptr, fi, out);
            }
            Stmt::If { cond, then, els } => {
                exprs(cond, out);
                collect(then, is_ptr, fi, out);
                collect(els, is_ptr, fi, out);
            }
            Stmt::Call(id, args) => {
                let callee = id.0 as usize;
                for (i, a) in args.iter().enumerate() {
                    if is_ptr
                        .get(callee)
                        .and_then(|p| p.get(i))
                        .copied()
                        .unwrap_or(false)
                    {
                        out.extend(base(a));
                    }
                    exprs(a, out);
                }
            }
            Stmt::Return(e) => {
                if let Some(e) = e {
                    exprs(e, out);
                }
            }
        }
    }
}

/// Load addresses inside an expression.
fn exprs(e: &Expr, out: &mut Vec<VarId>) {
    match e {
        Expr::Var(_) | Expr::Int(..) | Expr::F32(_) | Expr::DataAddr(_) => {}
        Expr::Load(_, a) => {
            out.extend(base(a));
            exprs(a, out);
        }
        Expr::Bin(_, a, b) | Expr::Cmp(_, a, b) => {
            exprs(a, out);
            exprs(b, out);
        }
        Expr::Un(_, a)
        | Expr::Cast(_, a, _)
        | Expr::Splat(_, a)
        | Expr::ReduceAdd(a)
        | Expr::Extract(a, _)
        | Expr::SignBits(a) => exprs(a, out),
        Expr::Select(c, a, b) => {
            exprs(c, out);
            exprs(a, out);
            exprs(b, out);
        }
        Expr::CallExtern(_, args) => {
            for a in args {
                exprs(a, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bnnc_kir::build::*;
    use bnnc_kir::{FuncId, Function};

    #[test]
    fn bases_of_addresses_and_their_sources_are_pointers() {
        let mut m = Module::default();
        // fn k(p: i64, n: i64) { for i in 0..n { store [p + i*8] = load [p + i*8] } }
        let mut k = Function::new("k", false, None);
        let p = k.param("p", Ty::I64);
        let n = k.param("n", Ty::I64);
        let i = k.var("i", Ty::I64);
        let a = addr(var(p), var(i), 8);
        k.body.push(Stmt::For {
            var: i,
            start: i64c(0),
            end: var(n),
            step: 1,
            body: vec![Stmt::Store {
                addr: a.clone(),
                value: load(Ty::I64, a),
            }],
        });
        k.body.push(Stmt::Return(None));
        m.functions.push(k);
        // export fn run(arr: i64) { q = load.i64[arr]; r = q; call k(r, 4) }
        let mut run = Function::new("run", true, None);
        let arr = run.param("arr", Ty::I64);
        let q = run.var("q", Ty::I64);
        let r = run.var("r", Ty::I64);
        let cnt = run.var("cnt", Ty::I64);
        run.body = vec![
            Stmt::Assign(q, load(Ty::I64, var(arr))),
            Stmt::Assign(r, var(q)),
            Stmt::Assign(cnt, mul(var(q), i64c(3))),
            Stmt::Call(FuncId(0), vec![var(r), i64c(4)]),
            Stmt::Return(None),
        ];
        m.functions.push(run);
        let p = analyse(&m);
        assert_eq!(p[0], vec![true, false, false], "p yes, n no, loop var i no");
        assert_eq!(p[1], vec![true, true, true, false], "arr, q, r yes; cnt no");
    }
}
