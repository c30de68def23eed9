//! A small builder over kir functions: structured loops and ifs written as
//! closures, so kernel emitters read like the loop nests they produce.

use bnnc_kir::build::*;
use bnnc_kir::{BinOp, CastOp, CmpOp, Expr, Function, Stmt, Ty, VarId};

/// Builds one kir function. Statements go to the innermost open block.
pub struct Fb {
    pub f: Function,
    blocks: Vec<Vec<Stmt>>,
    /// Loops opened by [`Fb::open_for`], innermost last.
    open: Vec<(VarId, Expr, Expr)>,
}

impl Fb {
    pub fn new(name: impl Into<String>, exported: bool, ret: Option<Ty>) -> Fb {
        Fb {
            f: Function::new(name, exported, ret),
            blocks: vec![Vec::new()],
            open: Vec::new(),
        }
    }

    /// Opens `for name in start..end` (closed by [`Fb::close_for`]); for loop
    /// nests whose depth is only known at run time of the compiler.
    pub fn open_for(&mut self, name: &str, start: Expr, end: Expr) -> Expr {
        let v = self.var(name, Ty::I64);
        self.open.push((v, start, end));
        self.blocks.push(Vec::new());
        var(v)
    }

    pub fn close_for(&mut self) {
        let (v, start, end) = self.open.pop().expect("open loop");
        let body = self.blocks.pop().expect("loop block");
        self.push(Stmt::For {
            var: v,
            start,
            end,
            step: 1,
            body,
        });
    }

    pub fn param(&mut self, name: &str, ty: Ty) -> VarId {
        self.f.param(name, ty)
    }

    pub fn var(&mut self, name: &str, ty: Ty) -> VarId {
        self.f.var(name, ty)
    }

    pub fn push(&mut self, s: Stmt) {
        self.blocks.last_mut().expect("open block").push(s);
    }

    pub fn assign(&mut self, v: VarId, e: Expr) {
        self.push(Stmt::Assign(v, e));
    }

    /// A fresh variable holding `e`.
    pub fn let_(&mut self, name: &str, ty: Ty, e: Expr) -> Expr {
        let v = self.var(name, ty);
        self.assign(v, e);
        var(v)
    }

    pub fn store(&mut self, addr: Expr, value: Expr) {
        self.push(Stmt::Store { addr, value });
    }

    /// `for name in start..end { body(i) }` with step 1.
    pub fn for_(&mut self, name: &str, start: Expr, end: Expr, body: impl FnOnce(&mut Fb, Expr)) {
        let v = self.var(name, Ty::I64);
        self.blocks.push(Vec::new());
        body(self, var(v));
        let b = self.blocks.pop().expect("loop block");
        self.push(Stmt::For {
            var: v,
            start,
            end,
            step: 1,
            body: b,
        });
    }

    /// `for name in 0..n` over a constant count; emits nothing for n == 0 and
    /// binds the index to the constant 0 when n == 1.
    pub fn for_n(&mut self, name: &str, n: usize, body: impl FnOnce(&mut Fb, Expr)) {
        match n {
            0 => {}
            1 => body(self, i64c(0)),
            _ => self.for_(name, i64c(0), i64c(n as i64), body),
        }
    }

    pub fn if_(&mut self, cond: Expr, then: impl FnOnce(&mut Fb)) {
        self.if_else(cond, then, |_| {});
    }

    pub fn if_else(&mut self, cond: Expr, then: impl FnOnce(&mut Fb), els: impl FnOnce(&mut Fb)) {
        self.blocks.push(Vec::new());
        then(self);
        let t = self.blocks.pop().expect("then block");
        self.blocks.push(Vec::new());
        els(self);
        let e = self.blocks.pop().expect("else block");
        self.push(Stmt::If {
            cond,
            then: t,
            els: e,
        });
    }

    pub fn finish(mut self) -> Function {
        assert_eq!(self.blocks.len(), 1, "unclosed block");
        self.f.body = self.blocks.pop().expect("body");
        self.f
    }
}

// Expression shorthands used by the kernels.

pub fn and(a: Expr, b: Expr) -> Expr {
    bin(BinOp::And, a, b)
}
pub fn or(a: Expr, b: Expr) -> Expr {
    bin(BinOp::Or, a, b)
}
pub fn xor(a: Expr, b: Expr) -> Expr {
    bin(BinOp::Xor, a, b)
}
pub fn shl(a: Expr, b: Expr) -> Expr {
    bin(BinOp::Shl, a, b)
}
pub fn shru(a: Expr, b: Expr) -> Expr {
    bin(BinOp::ShrU, a, b)
}
pub fn fadd(a: Expr, b: Expr) -> Expr {
    bin(BinOp::FAdd, a, b)
}
pub fn fsub(a: Expr, b: Expr) -> Expr {
    bin(BinOp::FSub, a, b)
}
pub fn fmul(a: Expr, b: Expr) -> Expr {
    bin(BinOp::FMul, a, b)
}
pub fn fdiv(a: Expr, b: Expr) -> Expr {
    bin(BinOp::FDiv, a, b)
}
/// i64 -> i32 truncation.
pub fn to_i32(a: Expr) -> Expr {
    cast(CastOp::Trunc, a, Ty::I32)
}
/// i32 -> i64 sign extension.
pub fn to_i64(a: Expr) -> Expr {
    cast(CastOp::SExt, a, Ty::I64)
}
/// i8 0/1 -> i64 0/1.
pub fn flag64(a: Expr) -> Expr {
    cast(CastOp::ZExt, a, Ty::I64)
}
/// i32 -> f32.
pub fn i2f(a: Expr) -> Expr {
    cast(CastOp::SIToF, a, Ty::F32)
}
pub fn lt(a: Expr, b: Expr) -> Expr {
    cmp(CmpOp::SLt, a, b)
}
/// `0 <= a < n` for an i64 `a` (one unsigned compare).
pub fn in_range(a: Expr, n: usize) -> Expr {
    cmp(CmpOp::ULt, a, i64c(n as i64))
}

/// An `i64` constant from a size.
pub fn c64(x: usize) -> Expr {
    i64c(x as i64)
}

/// Input row `iy = oy*sh + i*dh - top` of output row `out` and tap `k` (and
/// likewise the column).
pub fn tap_pos(out: &Expr, k: &Expr, stride: usize, dil: usize, pad: usize) -> Expr {
    sub(
        add(mul(out.clone(), c64(stride)), mul(k.clone(), c64(dil))),
        c64(pad),
    )
}
