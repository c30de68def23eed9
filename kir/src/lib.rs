//! bnnc-kir: the kernel IR (kir) that backends translate one to one, the
//! [`target`]s code is generated for, and the [`host`] symbols a JIT links
//! against. It depends on nothing else of bnnc: a backend needs only this crate.
//!
//! # kir
//!
//! A [`Module`] holds read-only data objects (packed weights, tables), external
//! function declarations (`expf`), and functions. A function has typed
//! parameters, mutable typed variables, and a body of structured statements:
//! counted loops, ifs, stores, calls. Expressions are trees over variables,
//! constants, loads and operations. Types are scalars (`i8`..`i64`, `f32`) or
//! vectors of them ([`Ty::lanes`] > 1). Whoever emits kir chooses vector
//! widths (bnnc's lowering picks them per target for its binary
//! micro-kernels, within the backend's limit); a backend must either
//! translate a type exactly or refuse it (Cranelift refuses vectors wider than
//! 128 bits).
//!
//! Pointers are `i64` byte addresses (every bnnc target is 64-bit). Integer
//! arithmetic wraps. Loads and stores are little-endian and may be unaligned.
//!
//! Semantics a backend must keep:
//! - `popcnt` counts set bits per lane;
//! - comparisons give `i8` 0/1 for scalars and an all-ones/all-zeros lane mask
//!   (same lane type) for vectors; `select` takes such a condition;
//! - `shl`/`shr` shift amounts are taken modulo the lane width;
//! - float ops are IEEE-754 single precision, round to nearest, no fusion
//!   (no FMA contraction), so results match the reference interpreter.

pub mod host;
pub mod target;

use std::fmt::{self, Write as _};

/// Lane type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scalar {
    I8,
    I16,
    I32,
    I64,
    F32,
}

impl Scalar {
    pub fn bits(self) -> u32 {
        match self {
            Scalar::I8 => 8,
            Scalar::I16 => 16,
            Scalar::I32 | Scalar::F32 => 32,
            Scalar::I64 => 64,
        }
    }

    pub fn is_float(self) -> bool {
        self == Scalar::F32
    }
}

/// A scalar (`lanes == 1`) or vector type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ty {
    pub scalar: Scalar,
    pub lanes: u16,
}

impl Ty {
    pub const I8: Ty = Ty::scalar(Scalar::I8);
    pub const I16: Ty = Ty::scalar(Scalar::I16);
    pub const I32: Ty = Ty::scalar(Scalar::I32);
    pub const I64: Ty = Ty::scalar(Scalar::I64);
    pub const F32: Ty = Ty::scalar(Scalar::F32);
    /// Byte addresses.
    pub const PTR: Ty = Ty::I64;

    pub const fn scalar(s: Scalar) -> Ty {
        Ty {
            scalar: s,
            lanes: 1,
        }
    }

    pub const fn vec(s: Scalar, lanes: u16) -> Ty {
        Ty { scalar: s, lanes }
    }

    pub fn is_vector(self) -> bool {
        self.lanes > 1
    }

    /// Size in bytes.
    pub fn bytes(self) -> u32 {
        self.scalar.bits() / 8 * self.lanes as u32
    }

    /// The lane type as a scalar type.
    pub fn lane(self) -> Ty {
        Ty::scalar(self.scalar)
    }
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self.scalar {
            Scalar::I8 => "i8",
            Scalar::I16 => "i16",
            Scalar::I32 => "i32",
            Scalar::I64 => "i64",
            Scalar::F32 => "f32",
        };
        if self.lanes == 1 {
            f.write_str(s)
        } else {
            write!(f, "{s}x{}", self.lanes)
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VarId(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DataId(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FuncId(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExternId(pub u32);

/// Binary operations; both operands have the same type, and so does the result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    And,
    Or,
    Xor,
    Shl,
    /// Logical shift right.
    ShrU,
    /// Arithmetic shift right.
    ShrS,
    /// Signed minimum / maximum (integers).
    SMin,
    SMax,
    FAdd,
    FSub,
    FMul,
    FDiv,
}

/// Unary operations; the result has the operand's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnOp {
    /// Set bits per lane.
    Popcnt,
    Not,
    Neg,
    FNeg,
    FSqrt,
}

/// Comparisons; scalar result `i8` 0/1, vector result a lane mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Ne,
    SLt,
    SLe,
    SGt,
    SGe,
    ULt,
    /// Ordered float comparisons: false when either side is NaN.
    FEq,
    FLt,
    FLe,
    FGt,
    FGe,
    /// Unordered: true when either operand is NaN (`FUno(a, a)` tests `a`).
    FUno,
}

/// Conversions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CastOp {
    /// Sign-extend to a wider integer.
    SExt,
    /// Zero-extend to a wider integer.
    ZExt,
    /// Truncate to a narrower integer.
    Trunc,
    /// Signed integer to f32, round to nearest even.
    SIToF,
    /// Reinterpret the bits (same total width).
    Bitcast,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Var(VarId),
    /// An integer constant of a scalar integer type.
    Int(i64, Ty),
    F32(f32),
    /// The address of a data object.
    DataAddr(DataId),
    /// Load of the given type from a byte address.
    Load(Ty, Box<Expr>),
    Bin(BinOp, Box<Expr>, Box<Expr>),
    Un(UnOp, Box<Expr>),
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    /// `select(cond, a, b)`: `a` where cond is true (scalar 0/1 or lane mask).
    Select(Box<Expr>, Box<Expr>, Box<Expr>),
    Cast(CastOp, Box<Expr>, Ty),
    /// Broadcast a scalar to every lane of a vector type.
    Splat(Ty, Box<Expr>),
    /// Sum of all lanes, as the lane type: integers wrap; f32 lanes are added
    /// in index order, `((l0 + l1) + l2) + ...`.
    ReduceAdd(Box<Expr>),
    /// Lane `i` of a vector, as the lane type (`i < lanes`, checked).
    Extract(Box<Expr>, u16),
    /// The sign bit of each lane of an integer vector as an `i64`: bit `l`
    /// is lane `l`'s top bit, the other bits 0 (`movmsk`, or a compare into
    /// a mask register and `kmov`). Applied to a compare's lane mask it gives
    /// one bit per lane.
    SignBits(Box<Expr>),
    /// Call of an external function with a result.
    CallExtern(ExternId, Vec<Expr>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    Assign(VarId, Expr),
    /// Store `value` (its own type) at a byte address.
    Store {
        addr: Expr,
        value: Expr,
    },
    /// `for var in start..end step step` (step > 0, `var` an i64 variable;
    /// `end` is evaluated once, before the first iteration).
    For {
        var: VarId,
        start: Expr,
        end: Expr,
        step: i64,
        body: Vec<Stmt>,
    },
    If {
        cond: Expr,
        then: Vec<Stmt>,
        els: Vec<Stmt>,
    },
    /// Call of a function of this module without a result.
    Call(FuncId, Vec<Expr>),
    Return(Option<Expr>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct VarDecl {
    pub name: String,
    pub ty: Ty,
}

/// A function. Parameters are the first `params` variables.
#[derive(Clone, Debug, PartialEq)]
pub struct Function {
    pub name: String,
    /// Visible outside the object (the model's entry points); others are local.
    pub exported: bool,
    pub params: usize,
    pub ret: Option<Ty>,
    pub vars: Vec<VarDecl>,
    pub body: Vec<Stmt>,
}

/// Read-only bytes placed in the object (weights, tables).
#[derive(Clone, Debug, PartialEq)]
pub struct Data {
    pub name: String,
    pub align: u32,
    pub bytes: Vec<u8>,
}

/// A function the generated code imports (from libm).
#[derive(Clone, Debug, PartialEq)]
pub struct Extern {
    pub name: String,
    pub params: Vec<Ty>,
    pub ret: Ty,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Module {
    pub name: String,
    pub data: Vec<Data>,
    pub externs: Vec<Extern>,
    pub functions: Vec<Function>,
}

impl Function {
    pub fn new(name: impl Into<String>, exported: bool, ret: Option<Ty>) -> Function {
        Function {
            name: name.into(),
            exported,
            params: 0,
            ret,
            vars: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a parameter (call before any [`Function::var`]).
    pub fn param(&mut self, name: impl Into<String>, ty: Ty) -> VarId {
        assert_eq!(self.params, self.vars.len(), "parameters come first");
        self.params += 1;
        self.var(name, ty)
    }

    /// Adds a local variable.
    pub fn var(&mut self, name: impl Into<String>, ty: Ty) -> VarId {
        let id = VarId(self.vars.len() as u32);
        self.vars.push(VarDecl {
            name: name.into(),
            ty,
        });
        id
    }

    pub fn var_ty(&self, v: VarId) -> Ty {
        self.vars[v.0 as usize].ty
    }

    /// The type of an expression in this function.
    pub fn ty_of(&self, m: &Module, e: &Expr) -> Ty {
        match e {
            Expr::Var(v) => self.var_ty(*v),
            Expr::Int(_, t) => *t,
            Expr::F32(_) => Ty::F32,
            Expr::DataAddr(_) => Ty::PTR,
            Expr::Load(t, _) => *t,
            Expr::Bin(_, a, _) => self.ty_of(m, a),
            Expr::Un(_, a) => self.ty_of(m, a),
            Expr::Cmp(_, a, _) => {
                let t = self.ty_of(m, a);
                if t.is_vector() {
                    let lane = if t.scalar == Scalar::F32 {
                        Scalar::I32
                    } else {
                        t.scalar
                    };
                    Ty::vec(lane, t.lanes)
                } else {
                    Ty::I8
                }
            }
            Expr::Select(_, a, _) => self.ty_of(m, a),
            Expr::Cast(_, _, t) => *t,
            Expr::Splat(t, _) => *t,
            Expr::ReduceAdd(a) | Expr::Extract(a, _) => self.ty_of(m, a).lane(),
            Expr::SignBits(_) => Ty::I64,
            Expr::CallExtern(x, _) => m.externs[x.0 as usize].ret,
        }
    }
}

/// Builders for expressions, so lowering code reads like the math.
pub mod build {
    use super::*;

    pub fn var(v: VarId) -> Expr {
        Expr::Var(v)
    }
    pub fn i64c(x: i64) -> Expr {
        Expr::Int(x, Ty::I64)
    }
    pub fn i32c(x: i32) -> Expr {
        Expr::Int(x as i64, Ty::I32)
    }
    pub fn f32c(x: f32) -> Expr {
        Expr::F32(x)
    }
    pub fn bin(op: BinOp, a: Expr, b: Expr) -> Expr {
        Expr::Bin(op, Box::new(a), Box::new(b))
    }
    /// `a + b`, folding integer constants (`x + 0 = x`).
    pub fn add(a: Expr, b: Expr) -> Expr {
        match (&a, &b) {
            (Expr::Int(x, t), Expr::Int(y, u)) if t == u => Expr::Int(x.wrapping_add(*y), *t),
            (Expr::Int(0, _), _) => b,
            (_, Expr::Int(0, _)) => a,
            _ => bin(BinOp::Add, a, b),
        }
    }
    /// `a - b`, folding integer constants (`x - 0 = x`).
    pub fn sub(a: Expr, b: Expr) -> Expr {
        match (&a, &b) {
            (Expr::Int(x, t), Expr::Int(y, u)) if t == u => Expr::Int(x.wrapping_sub(*y), *t),
            (_, Expr::Int(0, _)) => a,
            _ => bin(BinOp::Sub, a, b),
        }
    }
    /// `a * b`, folding integer constants (`x * 1 = x`, `x * 0 = 0`).
    pub fn mul(a: Expr, b: Expr) -> Expr {
        match (&a, &b) {
            (Expr::Int(x, t), Expr::Int(y, u)) if t == u => Expr::Int(x.wrapping_mul(*y), *t),
            (Expr::Int(1, _), _) => b,
            (_, Expr::Int(1, _)) => a,
            (Expr::Int(0, _), _) => a,
            (_, Expr::Int(0, _)) => b,
            _ => bin(BinOp::Mul, a, b),
        }
    }
    pub fn un(op: UnOp, a: Expr) -> Expr {
        Expr::Un(op, Box::new(a))
    }
    pub fn cmp(op: CmpOp, a: Expr, b: Expr) -> Expr {
        Expr::Cmp(op, Box::new(a), Box::new(b))
    }
    pub fn select(c: Expr, a: Expr, b: Expr) -> Expr {
        Expr::Select(Box::new(c), Box::new(a), Box::new(b))
    }
    pub fn cast(op: CastOp, a: Expr, t: Ty) -> Expr {
        Expr::Cast(op, Box::new(a), t)
    }
    pub fn load(t: Ty, addr: Expr) -> Expr {
        Expr::Load(t, Box::new(addr))
    }
    /// `base + index * scale` as a byte address (scale folded when 1).
    pub fn addr(base: Expr, index: Expr, scale: i64) -> Expr {
        let off = if scale == 1 {
            index
        } else {
            mul(index, i64c(scale))
        };
        add(base, off)
    }
}

/// Checks that every expression is well typed, every variable, data object,
/// function and extern exists, and loop variables are `i64`.
pub fn check(m: &Module) -> Result<(), String> {
    for d in &m.data {
        if !d.align.is_power_of_two() {
            return Err(format!(
                "data `{}` has alignment {}, not a power of two",
                d.name, d.align
            ));
        }
    }
    for f in &m.functions {
        let ctx = |msg: String| format!("kir function `{}`: {msg}", f.name);
        check_block(m, f, &f.body).map_err(ctx)?;
    }
    Ok(())
}

fn check_block(m: &Module, f: &Function, b: &[Stmt]) -> Result<(), String> {
    for s in b {
        match s {
            Stmt::Assign(v, e) => {
                let t = check_expr(m, f, e)?;
                if (v.0 as usize) >= f.vars.len() || f.var_ty(*v) != t {
                    return Err(format!("assignment of {t} to variable {v:?}"));
                }
            }
            Stmt::Store { addr, value } => {
                expect(m, f, addr, Ty::PTR, "store address")?;
                check_expr(m, f, value)?;
            }
            Stmt::For {
                var,
                start,
                end,
                step,
                body,
            } => {
                if f.var_ty(*var) != Ty::I64 || *step <= 0 {
                    return Err(format!(
                        "loop over {} with step {step}",
                        f.vars[var.0 as usize].name
                    ));
                }
                expect(m, f, start, Ty::I64, "loop start")?;
                expect(m, f, end, Ty::I64, "loop end")?;
                check_block(m, f, body)?;
            }
            Stmt::If { cond, then, els } => {
                expect(m, f, cond, Ty::I8, "if condition")?;
                check_block(m, f, then)?;
                check_block(m, f, els)?;
            }
            Stmt::Call(id, args) => {
                let callee = m
                    .functions
                    .get(id.0 as usize)
                    .ok_or("call of a missing function")?;
                if callee.params != args.len() {
                    return Err(format!(
                        "call of `{}` with {} arguments",
                        callee.name,
                        args.len()
                    ));
                }
                for (i, a) in args.iter().enumerate() {
                    expect(m, f, a, callee.vars[i].ty, "argument")?;
                }
            }
            Stmt::Return(e) => match (e, f.ret) {
                (None, None) => {}
                (Some(e), Some(t)) => expect(m, f, e, t, "return value")?,
                _ => return Err("return does not match the signature".into()),
            },
        }
    }
    Ok(())
}

fn expect(m: &Module, f: &Function, e: &Expr, want: Ty, what: &str) -> Result<(), String> {
    let t = check_expr(m, f, e)?;
    if t != want {
        return Err(format!(
            "{what} has type {t}, expected {want}: {}",
            print_expr(m, f, e)
        ));
    }
    Ok(())
}

fn check_expr(m: &Module, f: &Function, e: &Expr) -> Result<Ty, String> {
    let same = |a: &Expr, b: &Expr| -> Result<Ty, String> {
        let ta = check_expr(m, f, a)?;
        let tb = check_expr(m, f, b)?;
        if ta != tb {
            return Err(format!(
                "operands of {ta} and {tb} in {}",
                print_expr(m, f, e)
            ));
        }
        Ok(ta)
    };
    match e {
        Expr::Var(v) => {
            if (v.0 as usize) >= f.vars.len() {
                return Err(format!("unknown variable {v:?}"));
            }
        }
        Expr::Int(_, t) => {
            if t.is_vector() || t.scalar.is_float() {
                return Err(format!("integer constant of type {t}"));
            }
        }
        Expr::F32(_) => {}
        Expr::DataAddr(d) => {
            if (d.0 as usize) >= m.data.len() {
                return Err(format!("unknown data {d:?}"));
            }
        }
        Expr::Load(_, a) => expect(m, f, a, Ty::PTR, "load address")?,
        Expr::Bin(op, a, b) => {
            let t = same(a, b)?;
            let float_op = matches!(op, BinOp::FAdd | BinOp::FSub | BinOp::FMul | BinOp::FDiv);
            if float_op != t.scalar.is_float() {
                return Err(format!("{op:?} on {t}"));
            }
        }
        Expr::Un(op, a) => {
            let t = check_expr(m, f, a)?;
            let float_op = matches!(op, UnOp::FNeg | UnOp::FSqrt);
            if float_op != t.scalar.is_float() {
                return Err(format!("{op:?} on {t}"));
            }
        }
        Expr::Cmp(op, a, b) => {
            let t = same(a, b)?;
            let float_op = matches!(
                op,
                CmpOp::FEq | CmpOp::FLt | CmpOp::FLe | CmpOp::FGt | CmpOp::FGe | CmpOp::FUno
            );
            if float_op != t.scalar.is_float() {
                return Err(format!("{op:?} on {t}"));
            }
        }
        Expr::Select(c, a, b) => {
            let tc = check_expr(m, f, c)?;
            let t = same(a, b)?;
            if t.is_vector() != tc.is_vector() || (!t.is_vector() && tc != Ty::I8) {
                return Err(format!("select with a {tc} condition over {t}"));
            }
        }
        Expr::Cast(op, a, to) => {
            let from = check_expr(m, f, a)?;
            let ok = from.lanes == to.lanes
                && match op {
                    CastOp::SExt | CastOp::ZExt => {
                        !from.scalar.is_float()
                            && !to.scalar.is_float()
                            && from.scalar.bits() < to.scalar.bits()
                    }
                    CastOp::Trunc => {
                        !from.scalar.is_float()
                            && !to.scalar.is_float()
                            && from.scalar.bits() > to.scalar.bits()
                    }
                    CastOp::SIToF => !from.scalar.is_float() && to.scalar.is_float(),
                    CastOp::Bitcast => from.bytes() == to.bytes(),
                };
            let ok = ok || (*op == CastOp::Bitcast && from.bytes() == to.bytes());
            if !ok {
                return Err(format!("{op:?} from {from} to {to}"));
            }
        }
        Expr::Splat(t, a) => expect(m, f, a, t.lane(), "splat operand")?,
        Expr::ReduceAdd(a) => {
            let t = check_expr(m, f, a)?;
            if !t.is_vector() {
                return Err("reduce_add of a scalar".into());
            }
        }
        Expr::SignBits(a) => {
            let t = check_expr(m, f, a)?;
            if !t.is_vector() || t.scalar.is_float() || t.lanes > 64 {
                return Err(format!("sign_bits of {t}"));
            }
        }
        Expr::Extract(a, i) => {
            let t = check_expr(m, f, a)?;
            if !t.is_vector() || *i >= t.lanes {
                return Err(format!("extract of lane {i} from {t}"));
            }
        }
        Expr::CallExtern(x, args) => {
            let ext = m.externs.get(x.0 as usize).ok_or("unknown extern")?;
            if ext.params.len() != args.len() {
                return Err(format!(
                    "call of `{}` with {} arguments",
                    ext.name,
                    args.len()
                ));
            }
            for (a, &t) in args.iter().zip(&ext.params) {
                expect(m, f, a, t, "extern argument")?;
            }
        }
    }
    Ok(f.ty_of(m, e))
}

/// The module as text, for reading and snapshots.
pub fn print(m: &Module) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "module {}", m.name);
    for d in &m.data {
        let _ = writeln!(
            s,
            "data {}: {} bytes, align {}",
            d.name,
            d.bytes.len(),
            d.align
        );
    }
    for x in &m.externs {
        let ps: Vec<String> = x.params.iter().map(|t| t.to_string()).collect();
        let _ = writeln!(s, "extern {}({}) -> {}", x.name, ps.join(", "), x.ret);
    }
    for f in &m.functions {
        s.push('\n');
        let ps: Vec<String> = f.vars[..f.params]
            .iter()
            .map(|v| format!("{}: {}", v.name, v.ty))
            .collect();
        let ret = f.ret.map(|t| format!(" -> {t}")).unwrap_or_default();
        let vis = if f.exported { "export " } else { "" };
        let _ = writeln!(s, "{vis}fn {}({}){ret} {{", f.name, ps.join(", "));
        print_block(m, f, &f.body, 1, &mut s);
        s.push_str("}\n");
    }
    s
}

fn vname(f: &Function, v: VarId) -> String {
    f.vars
        .get(v.0 as usize)
        .map(|d| format!("{}.{}", d.name, v.0))
        .unwrap_or_else(|| format!("?{}", v.0))
}

fn print_block(m: &Module, f: &Function, b: &[Stmt], depth: usize, s: &mut String) {
    let pad = "  ".repeat(depth);
    for st in b {
        match st {
            Stmt::Assign(v, e) => {
                let _ = writeln!(
                    s,
                    "{pad}{}: {} = {}",
                    vname(f, *v),
                    f.var_ty(*v),
                    print_expr(m, f, e)
                );
            }
            Stmt::Store { addr, value } => {
                let _ = writeln!(
                    s,
                    "{pad}store.{} [{}] = {}",
                    f.ty_of(m, value),
                    print_expr(m, f, addr),
                    print_expr(m, f, value)
                );
            }
            Stmt::For {
                var,
                start,
                end,
                step,
                body,
            } => {
                let st = if *step == 1 {
                    String::new()
                } else {
                    format!(" step {step}")
                };
                let _ = writeln!(
                    s,
                    "{pad}for {} in {}..{}{st} {{",
                    vname(f, *var),
                    print_expr(m, f, start),
                    print_expr(m, f, end)
                );
                print_block(m, f, body, depth + 1, s);
                let _ = writeln!(s, "{pad}}}");
            }
            Stmt::If { cond, then, els } => {
                let _ = writeln!(s, "{pad}if {} {{", print_expr(m, f, cond));
                print_block(m, f, then, depth + 1, s);
                if !els.is_empty() {
                    let _ = writeln!(s, "{pad}}} else {{");
                    print_block(m, f, els, depth + 1, s);
                }
                let _ = writeln!(s, "{pad}}}");
            }
            Stmt::Call(id, args) => {
                let name = m
                    .functions
                    .get(id.0 as usize)
                    .map_or("?", |f| f.name.as_str());
                let a: Vec<String> = args.iter().map(|a| print_expr(m, f, a)).collect();
                let _ = writeln!(s, "{pad}call {name}({})", a.join(", "));
            }
            Stmt::Return(e) => {
                let _ = match e {
                    Some(e) => writeln!(s, "{pad}return {}", print_expr(m, f, e)),
                    None => writeln!(s, "{pad}return"),
                };
            }
        }
    }
}

fn lower_name<T: fmt::Debug>(x: T) -> String {
    let d = format!("{x:?}");
    let mut out = String::new();
    for (i, c) in d.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// One expression as text.
pub fn print_expr(m: &Module, f: &Function, e: &Expr) -> String {
    match e {
        Expr::Var(v) => vname(f, *v),
        Expr::Int(x, t) => {
            if *t == Ty::I64 {
                x.to_string()
            } else {
                format!("{x}:{t}")
            }
        }
        Expr::F32(x) => format!("{x:?}f"),
        Expr::DataAddr(d) => format!(
            "&{}",
            m.data.get(d.0 as usize).map_or("?", |d| d.name.as_str())
        ),
        Expr::Load(t, a) => format!("load.{t}[{}]", print_expr(m, f, a)),
        Expr::Bin(op, a, b) => format!(
            "{}({}, {})",
            lower_name(op),
            print_expr(m, f, a),
            print_expr(m, f, b)
        ),
        Expr::Un(op, a) => format!("{}({})", lower_name(op), print_expr(m, f, a)),
        Expr::Cmp(op, a, b) => format!(
            "{}({}, {})",
            lower_name(op),
            print_expr(m, f, a),
            print_expr(m, f, b)
        ),
        Expr::Select(c, a, b) => format!(
            "select({}, {}, {})",
            print_expr(m, f, c),
            print_expr(m, f, a),
            print_expr(m, f, b)
        ),
        Expr::Cast(op, a, t) => format!("{}.{t}({})", lower_name(op), print_expr(m, f, a)),
        Expr::Splat(t, a) => format!("splat.{t}({})", print_expr(m, f, a)),
        Expr::ReduceAdd(a) => format!("reduce_add({})", print_expr(m, f, a)),
        Expr::Extract(a, i) => format!("extract({}, {i})", print_expr(m, f, a)),
        Expr::SignBits(a) => format!("sign_bits({})", print_expr(m, f, a)),
        Expr::CallExtern(x, args) => {
            let a: Vec<String> = args.iter().map(|a| print_expr(m, f, a)).collect();
            format!(
                "{}({})",
                m.externs.get(x.0 as usize).map_or("?", |x| x.name.as_str()),
                a.join(", ")
            )
        }
    }
}
