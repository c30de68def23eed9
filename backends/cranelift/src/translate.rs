//! kir -> CLIF, one to one.
//!
//! Every kir statement and expression becomes the Cranelift instructions of
//! the same meaning (see the semantics in `bnnc_kir`). Where Cranelift
//! has no instruction of that meaning for a type, the translation is an exact
//! emulation (named at each place) or an [`Error::Unsupported`]; it never
//! changes the result.

use std::collections::HashMap;

use bnnc_kir::{self as kir, BinOp, CastOp, CmpOp, Expr, Function, Scalar, Stmt, Ty, UnOp, VarId};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::immediates::{Ieee32, Imm64};
use cranelift_codegen::ir::{
    types, AbiParam, Endianness, ExtFuncData, ExternalName, FuncRef, GlobalValue, GlobalValueData,
    InstBuilder, MemFlagsData, Signature, TrapCode, Type, UserExternalName, UserFuncName, Value,
};
use cranelift_codegen::isa::TargetFrontendConfig;
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_module::{DataDescription, DataId, FuncId, Linkage, Module};

use crate::Error;

/// Where referenced functions and data are placed relative to the code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Objects: local functions and data are reached PC-relative, exported
    /// functions and imports through the PLT/GOT (as `gcc -fPIC` does).
    Object,
    /// JIT: code and data may be anywhere in the address space, so every
    /// reference uses a 64-bit absolute address.
    Jit,
}

/// The Cranelift ids of everything a kir module declares.
pub(crate) struct Declared {
    pub funcs: Vec<FuncId>,
    pub externs: Vec<FuncId>,
    pub data: Vec<DataId>,
    func_sigs: Vec<Signature>,
    extern_sigs: Vec<Signature>,
    func_linkage: Vec<Linkage>,
    data_linkage: Vec<Linkage>,
}

/// The user external name namespaces of `cranelift_module`.
const NS_FUNC: u32 = 0;
const NS_DATA: u32 = 1;

fn unsupported(f: &Function, what: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Unsupported {
        func: f.name.clone(),
        what: what.into(),
        reason: reason.into(),
    }
}

/// The Cranelift type of a kir type, or why there is none.
pub(crate) fn clif_type(t: Ty) -> Result<Type, String> {
    let lane = match t.scalar {
        Scalar::I8 => types::I8,
        Scalar::I16 => types::I16,
        Scalar::I32 => types::I32,
        Scalar::I64 => types::I64,
        Scalar::F32 => types::F32,
    };
    match t.lanes {
        0 => Err(format!("{t} has no lanes")),
        1 => Ok(lane),
        n => {
            let bits = t.scalar.bits() * n as u32;
            if bits > 128 {
                Err(format!(
                    "{t} is {bits} bits wide; Cranelift vectors are at most 128 bits"
                ))
            } else if bits < 128 {
                Err(format!(
                    "{t} is {bits} bits wide; the Cranelift backend supports only 128-bit vectors"
                ))
            } else {
                lane.by(n as u32)
                    .ok_or_else(|| format!("{t} has no Cranelift vector type"))
            }
        }
    }
}

fn ty_in(f: &Function, t: Ty, what: impl FnOnce() -> String) -> Result<Type, Error> {
    clif_type(t).map_err(|reason| unsupported(f, what(), reason))
}

fn signature(
    module: &impl Module,
    params: &[Ty],
    ret: Option<Ty>,
    f: &Function,
    what: &str,
) -> Result<Signature, Error> {
    let mut sig = module.make_signature();
    for (i, &t) in params.iter().enumerate() {
        let ct = ty_in(f, t, || format!("parameter {i} of {what}"))?;
        sig.params.push(AbiParam::new(ct));
    }
    if let Some(t) = ret {
        let ct = ty_in(f, t, || format!("the result of {what}"))?;
        sig.returns.push(AbiParam::new(ct));
    }
    Ok(sig)
}

fn module_error(e: cranelift_module::ModuleError) -> Error {
    Error::Module(e.to_string())
}

/// Declares the data objects, externs and functions of `m` in `module`.
pub(crate) fn declare(module: &mut impl Module, m: &kir::Module) -> Result<Declared, Error> {
    let mut decl = Declared {
        funcs: Vec::new(),
        externs: Vec::new(),
        data: Vec::new(),
        func_sigs: Vec::new(),
        extern_sigs: Vec::new(),
        func_linkage: Vec::new(),
        data_linkage: Vec::new(),
    };
    for d in &m.data {
        if d.align == 0 || !d.align.is_power_of_two() {
            return Err(Error::Data {
                name: d.name.clone(),
                reason: format!("alignment {} is not a power of two", d.align),
            });
        }
        let id = module
            .declare_data(&d.name, Linkage::Local, false, false)
            .map_err(module_error)?;
        decl.data.push(id);
        decl.data_linkage.push(Linkage::Local);
    }
    for x in &m.externs {
        // Errors in an extern's signature name the extern as the function.
        let host = Function::new(format!("extern {}", x.name), false, None);
        let sig = signature(module, &x.params, Some(x.ret), &host, &x.name)?;
        let id = module
            .declare_function(&x.name, Linkage::Import, &sig)
            .map_err(module_error)?;
        decl.externs.push(id);
        decl.extern_sigs.push(sig);
    }
    for f in &m.functions {
        let params: Vec<Ty> = f.vars[..f.params].iter().map(|v| v.ty).collect();
        let sig = signature(module, &params, f.ret, f, &format!("`{}`", f.name))?;
        let linkage = if f.exported {
            Linkage::Export
        } else {
            Linkage::Local
        };
        let id = module
            .declare_function(&f.name, linkage, &sig)
            .map_err(module_error)?;
        decl.funcs.push(id);
        decl.func_sigs.push(sig);
        decl.func_linkage.push(linkage);
    }
    Ok(decl)
}

/// Defines the data objects of `m` (read-only, aligned as declared).
pub(crate) fn define_data(
    module: &mut impl Module,
    m: &kir::Module,
    decl: &Declared,
) -> Result<(), Error> {
    for (d, &id) in m.data.iter().zip(&decl.data) {
        let mut desc = DataDescription::new();
        desc.define(d.bytes.clone().into_boxed_slice());
        desc.set_align(u64::from(d.align));
        module.define_data(id, &desc).map_err(module_error)?;
    }
    Ok(())
}

/// A line naming every symbol of the module, so CLIF's `u0:N` / `u1:N` read.
pub(crate) fn symbol_legend(m: &kir::Module, decl: &Declared) -> String {
    let mut s = String::new();
    for (d, id) in m.data.iter().zip(&decl.data) {
        s.push_str(&format!("; u{NS_DATA}:{} = data {}\n", id.as_u32(), d.name));
    }
    for (x, id) in m.externs.iter().zip(&decl.externs) {
        s.push_str(&format!(
            "; u{NS_FUNC}:{} = extern {}\n",
            id.as_u32(),
            x.name
        ));
    }
    for (f, id) in m.functions.iter().zip(&decl.funcs) {
        let vis = if f.exported { "export " } else { "" };
        s.push_str(&format!(
            "; u{NS_FUNC}:{} = {vis}fn {}\n",
            id.as_u32(),
            f.name
        ));
    }
    s
}

/// Translates function `index` of `m` into `ctx.func`.
pub(crate) fn translate_function(
    m: &kir::Module,
    decl: &Declared,
    index: usize,
    placement: Placement,
    config: TargetFrontendConfig,
    ctx: &mut Context,
    fctx: &mut FunctionBuilderContext,
) -> Result<(), Error> {
    let f = &m.functions[index];
    ctx.func.signature = decl.func_sigs[index].clone();
    ctx.func.name = UserFuncName::user(NS_FUNC, decl.funcs[index].as_u32());

    let mut b = FunctionBuilder::new(&mut ctx.func, fctx);
    let mut vars = Vec::with_capacity(f.vars.len());
    for v in &f.vars {
        let ct = ty_in(f, v.ty, || format!("variable `{}`", v.name))?;
        vars.push(b.declare_var(ct));
    }
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    b.seal_block(entry);
    let params: Vec<Value> = b.block_params(entry).to_vec();
    for (i, p) in params.into_iter().enumerate() {
        b.def_var(vars[i], p);
    }

    let mut tx = Tx {
        m,
        f,
        decl,
        placement,
        b,
        vars,
        funcs: HashMap::new(),
        externs: HashMap::new(),
        data: HashMap::new(),
        terminated: false,
    };
    tx.block(&f.body)?;
    if !tx.terminated {
        match f.ret {
            None => {
                tx.b.ins().return_(&[]);
            }
            // kir does not require a trailing `return`; falling off the end
            // of a function with a result is a bug in the kir, and traps.
            Some(_) => {
                tx.b.ins().trap(TrapCode::unwrap_user(1));
            }
        }
    }
    tx.b.finalize(config);
    Ok(())
}

struct Tx<'a, 'b> {
    m: &'a kir::Module,
    f: &'a Function,
    decl: &'a Declared,
    placement: Placement,
    b: FunctionBuilder<'b>,
    vars: Vec<Variable>,
    funcs: HashMap<u32, FuncRef>,
    externs: HashMap<u32, FuncRef>,
    data: HashMap<u32, GlobalValue>,
    /// The current block ended (with a `return`); following statements are
    /// unreachable and go to a fresh block.
    terminated: bool,
}

/// Loads and stores: plain flags (may trap, may be unaligned); both targets
/// are little-endian, as kir requires.
fn mem_flags() -> MemFlagsData {
    MemFlagsData::new()
}

/// Vector bitcasts that change the lane type need an explicit byte order.
fn le_flags() -> MemFlagsData {
    MemFlagsData::new().with_endianness(Endianness::Little)
}

fn lane_mask(bits: u32) -> i64 {
    if bits >= 64 {
        -1
    } else {
        ((1u64 << bits) - 1) as i64
    }
}

impl Tx<'_, '_> {
    fn unsupported(&self, what: impl Into<String>, reason: impl Into<String>) -> Error {
        unsupported(self.f, what, reason)
    }

    fn ty(&self, t: Ty, what: impl FnOnce() -> String) -> Result<Type, Error> {
        ty_in(self.f, t, what)
    }

    fn kty(&self, e: &Expr) -> Ty {
        self.f.ty_of(self.m, e)
    }

    /// Whether a reference may be PC-relative. In objects only local
    /// symbols are; exported functions are called as `gcc -fPIC` calls
    /// global ones, through the PLT (direct again once linked into a PIE),
    /// so the object links into executables and shared libraries alike.
    fn colocated(&self, linkage: Linkage) -> bool {
        match self.placement {
            Placement::Jit => false,
            Placement::Object => linkage == Linkage::Local,
        }
    }

    fn func_ref(&mut self, callee: usize) -> FuncRef {
        let id = self.decl.funcs[callee];
        if let Some(&r) = self.funcs.get(&id.as_u32()) {
            return r;
        }
        let colocated = self.colocated(self.decl.func_linkage[callee]);
        let sig = self.b.import_signature(self.decl.func_sigs[callee].clone());
        let r = self.import(id, sig, colocated);
        self.funcs.insert(id.as_u32(), r);
        r
    }

    fn extern_ref(&mut self, x: usize) -> FuncRef {
        let id = self.decl.externs[x];
        if let Some(&r) = self.externs.get(&id.as_u32()) {
            return r;
        }
        let sig = self.b.import_signature(self.decl.extern_sigs[x].clone());
        let r = self.import(id, sig, false);
        self.externs.insert(id.as_u32(), r);
        r
    }

    fn import(
        &mut self,
        id: FuncId,
        signature: cranelift_codegen::ir::SigRef,
        colocated: bool,
    ) -> FuncRef {
        let name = self
            .b
            .func
            .declare_imported_user_function(UserExternalName::new(NS_FUNC, id.as_u32()));
        self.b.import_function(ExtFuncData {
            name: ExternalName::user(name),
            signature,
            colocated,
            patchable: false,
        })
    }

    fn data_gv(&mut self, d: usize) -> GlobalValue {
        let id = self.decl.data[d];
        if let Some(&g) = self.data.get(&id.as_u32()) {
            return g;
        }
        let colocated = self.colocated(self.decl.data_linkage[d]);
        let name = self
            .b
            .func
            .declare_imported_user_function(UserExternalName::new(NS_DATA, id.as_u32()));
        let g = self.b.create_global_value(GlobalValueData::Symbol {
            name: ExternalName::user(name),
            offset: Imm64::new(0),
            colocated,
            tls: false,
        });
        self.data.insert(id.as_u32(), g);
        g
    }

    /// Opens a fresh (unreachable) block after a `return`.
    fn ensure_open(&mut self) {
        if self.terminated {
            let blk = self.b.create_block();
            self.b.switch_to_block(blk);
            self.b.seal_block(blk);
            self.terminated = false;
        }
    }

    fn block(&mut self, stmts: &[Stmt]) -> Result<(), Error> {
        for s in stmts {
            self.stmt(s)?;
        }
        Ok(())
    }

    fn stmt(&mut self, s: &Stmt) -> Result<(), Error> {
        self.ensure_open();
        match s {
            Stmt::Assign(v, e) => {
                let x = self.expr(e)?;
                self.b.def_var(self.var(*v), x);
            }
            Stmt::Store { addr, value } => {
                let a = self.expr(addr)?;
                let x = self.expr(value)?;
                self.b.ins().store(mem_flags(), x, a, 0);
            }
            Stmt::For {
                var,
                start,
                end,
                step,
                body,
            } => {
                let v = self.var(*var);
                let s0 = self.expr(start)?;
                // `end` is evaluated once, before the first iteration.
                let e = self.expr(end)?;
                self.b.def_var(v, s0);
                let header = self.b.create_block();
                let body_blk = self.b.create_block();
                let exit = self.b.create_block();
                self.b.ins().jump(header, &[]);

                self.b.switch_to_block(header);
                let i = self.b.use_var(v);
                let c = self.b.ins().icmp(IntCC::SignedLessThan, i, e);
                self.b.ins().brif(c, body_blk, &[], exit, &[]);

                self.b.switch_to_block(body_blk);
                self.b.seal_block(body_blk);
                self.block(body)?;
                if !self.terminated {
                    let i = self.b.use_var(v);
                    let next = self.b.ins().iadd_imm_s(i, *step);
                    self.b.def_var(v, next);
                    self.b.ins().jump(header, &[]);
                }
                self.b.seal_block(header);

                self.b.switch_to_block(exit);
                self.b.seal_block(exit);
                self.terminated = false;
            }
            Stmt::If { cond, then, els } => {
                let c = self.expr(cond)?;
                let then_blk = self.b.create_block();
                let mut merge = None;
                let else_blk = if els.is_empty() {
                    let mb = self.b.create_block();
                    merge = Some(mb);
                    mb
                } else {
                    self.b.create_block()
                };
                self.b.ins().brif(c, then_blk, &[], else_blk, &[]);

                let arm = |tx: &mut Self, blk, stmts: &[Stmt], merge: &mut Option<_>| {
                    tx.b.switch_to_block(blk);
                    tx.b.seal_block(blk);
                    tx.block(stmts)?;
                    if !tx.terminated {
                        let mb = *merge.get_or_insert_with(|| tx.b.create_block());
                        tx.b.ins().jump(mb, &[]);
                    }
                    tx.terminated = false;
                    Ok::<(), Error>(())
                };
                arm(self, then_blk, then, &mut merge)?;
                if !els.is_empty() {
                    arm(self, else_blk, els, &mut merge)?;
                }
                match merge {
                    Some(mb) => {
                        self.b.switch_to_block(mb);
                        self.b.seal_block(mb);
                    }
                    // Both arms returned.
                    None => self.terminated = true,
                }
            }
            Stmt::Call(id, args) => {
                let callee = id.0 as usize;
                let vals = self.exprs(args)?;
                let r = self.func_ref(callee);
                // A result, if the callee has one, is discarded.
                self.b.ins().call(r, &vals);
            }
            Stmt::Return(e) => {
                match e {
                    Some(e) => {
                        let x = self.expr(e)?;
                        self.b.ins().return_(&[x]);
                    }
                    None => {
                        self.b.ins().return_(&[]);
                    }
                }
                self.terminated = true;
            }
        }
        Ok(())
    }

    fn var(&self, v: VarId) -> Variable {
        self.vars[v.0 as usize]
    }

    fn exprs(&mut self, es: &[Expr]) -> Result<Vec<Value>, Error> {
        es.iter().map(|e| self.expr(e)).collect()
    }

    fn expr(&mut self, e: &Expr) -> Result<Value, Error> {
        Ok(match e {
            Expr::Var(v) => self.b.use_var(self.var(*v)),
            Expr::Int(x, t) => {
                let ct = self.ty(*t, || format!("integer constant of type {t}"))?;
                // Cranelift wants the immediate zero-extended from the width.
                self.b.ins().iconst(ct, x & lane_mask(t.scalar.bits()))
            }
            Expr::F32(x) => self.b.ins().f32const(Ieee32::with_bits(x.to_bits())),
            Expr::DataAddr(d) => {
                let g = self.data_gv(d.0 as usize);
                self.b.ins().symbol_value(types::I64, g)
            }
            Expr::Load(t, a) => {
                let ct = self.ty(*t, || format!("load of {t}"))?;
                let a = self.expr(a)?;
                self.b.ins().load(ct, mem_flags(), a, 0)
            }
            Expr::Bin(op, a, b) => self.bin(*op, a, b)?,
            Expr::Un(op, a) => self.un(*op, a)?,
            Expr::Cmp(op, a, b) => self.cmp(*op, a, b)?,
            Expr::Select(c, a, b) => {
                let tc = self.kty(c);
                let t = self.kty(a);
                let ct = self.ty(t, || format!("select of {t}"))?;
                let cv = self.expr(c)?;
                let av = self.expr(a)?;
                let bv = self.expr(b)?;
                if t.is_vector() {
                    // A lane mask of the same shape (integer lanes of the
                    // value's lane width).
                    if tc.lanes != t.lanes || tc.scalar.is_float() || tc.bytes() != t.bytes() {
                        return Err(self.unsupported(
                            format!("select over {t} with a {tc} condition"),
                            format!(
                                "a vector select needs an integer lane mask with {} lanes of {} bits",
                                t.lanes,
                                t.scalar.bits()
                            ),
                        ));
                    }
                    let mask = if t.scalar.is_float() {
                        self.b.ins().bitcast(ct, le_flags(), cv)
                    } else {
                        cv
                    };
                    self.b.ins().bitselect(mask, av, bv)
                } else {
                    self.b.ins().select(cv, av, bv)
                }
            }
            Expr::Cast(op, a, to) => self.cast(*op, a, *to)?,
            Expr::Splat(t, a) => {
                let ct = self.ty(*t, || format!("splat to {t}"))?;
                let x = self.expr(a)?;
                self.b.ins().splat(ct, x)
            }
            Expr::ReduceAdd(a) => {
                let t = self.kty(a);
                self.ty(t, || format!("reduce_add of {t}"))?;
                let x = self.expr(a)?;
                // Lanes are added in order: ((l0 + l1) + l2) + ...
                let mut acc = self.b.ins().extractlane(x, 0u8);
                for lane in 1..t.lanes {
                    let l = self.b.ins().extractlane(x, lane as u8);
                    acc = if t.scalar.is_float() {
                        self.b.ins().fadd(acc, l)
                    } else {
                        self.b.ins().iadd(acc, l)
                    };
                }
                acc
            }
            Expr::SignBits(a) => {
                let t = self.kty(a);
                self.ty(t, || format!("sign_bits of {t}"))?;
                let x = self.expr(a)?;
                self.b.ins().vhigh_bits(types::I64, x)
            }
            Expr::Extract(a, i) => {
                let t = self.kty(a);
                self.ty(t, || format!("extract from {t}"))?;
                let x = self.expr(a)?;
                self.b.ins().extractlane(x, *i as u8)
            }
            Expr::CallExtern(x, args) => {
                let vals = self.exprs(args)?;
                let r = self.extern_ref(x.0 as usize);
                let call = self.b.ins().call(r, &vals);
                self.b.inst_results(call)[0]
            }
        })
    }

    fn bin(&mut self, op: BinOp, a: &Expr, b: &Expr) -> Result<Value, Error> {
        let t = self.kty(a);
        let what = || format!("{} on {t}", kir_name(op));
        let ct = self.ty(t, what)?;
        let is_shift = matches!(op, BinOp::Shl | BinOp::ShrU | BinOp::ShrS);
        if is_shift && t.is_vector() {
            return self.vector_shift(op, t, ct, a, b);
        }
        let x = self.expr(a)?;
        let y = self.expr(b)?;
        if op == BinOp::Mul && ct == types::I8X16 {
            return Ok(self.mul_i8x16(x, y));
        }
        let ins = self.b.ins();
        Ok(match op {
            BinOp::Add => ins.iadd(x, y),
            BinOp::Sub => ins.isub(x, y),
            BinOp::Mul => ins.imul(x, y),
            BinOp::And => ins.band(x, y),
            BinOp::Or => ins.bor(x, y),
            BinOp::Xor => ins.bxor(x, y),
            // Scalar shift amounts are taken modulo the width by Cranelift.
            BinOp::Shl => ins.ishl(x, y),
            BinOp::ShrU => ins.ushr(x, y),
            BinOp::ShrS => ins.sshr(x, y),
            BinOp::SMin => ins.smin(x, y),
            BinOp::SMax => ins.smax(x, y),
            BinOp::FAdd => ins.fadd(x, y),
            BinOp::FSub => ins.fsub(x, y),
            BinOp::FMul => ins.fmul(x, y),
            BinOp::FDiv => ins.fdiv(x, y),
        })
    }

    /// Lane-wise shifts. Cranelift shifts every lane by one scalar amount
    /// (modulo the lane width): a kir shift by a splat uses it directly;
    /// other per-lane amounts are shifted lane by lane.
    fn vector_shift(
        &mut self,
        op: BinOp,
        t: Ty,
        ct: Type,
        a: &Expr,
        b: &Expr,
    ) -> Result<Value, Error> {
        let shift = |tx: &mut Self, x: Value, y: Value| match op {
            BinOp::Shl => tx.b.ins().ishl(x, y),
            BinOp::ShrU => tx.b.ins().ushr(x, y),
            _ => tx.b.ins().sshr(x, y),
        };
        let x = self.expr(a)?;
        if let Expr::Splat(_, s) = b {
            let y = self.expr(s)?;
            return Ok(shift(self, x, y));
        }
        let y = self.expr(b)?;
        let mut out = x;
        for lane in 0..t.lanes {
            let xl = self.b.ins().extractlane(x, lane as u8);
            let yl = self.b.ins().extractlane(y, lane as u8);
            let r = shift(self, xl, yl);
            out = self.b.ins().insertlane(out, r, lane as u8);
        }
        debug_assert_eq!(self.b.func.dfg.value_type(out), ct);
        Ok(out)
    }

    /// i8x16 multiply (no Cranelift lowering on x86_64): widen each half to
    /// i16x8, multiply, keep the low byte of each product, narrow back. The
    /// masked products are in 0..=255, so the saturating `unarrow` is exact.
    fn mul_i8x16(&mut self, x: Value, y: Value) -> Value {
        let b = &mut self.b;
        let xl = b.ins().uwiden_low(x);
        let yl = b.ins().uwiden_low(y);
        let xh = b.ins().uwiden_high(x);
        let yh = b.ins().uwiden_high(y);
        let lo = b.ins().imul(xl, yl);
        let hi = b.ins().imul(xh, yh);
        let ff = b.ins().iconst(types::I16, 0xff);
        let ff = b.ins().splat(types::I16X8, ff);
        let lo = b.ins().band(lo, ff);
        let hi = b.ins().band(hi, ff);
        b.ins().unarrow(lo, hi)
    }

    fn un(&mut self, op: UnOp, a: &Expr) -> Result<Value, Error> {
        let t = self.kty(a);
        let ct = self.ty(t, || format!("{} on {t}", kir_name(op)))?;
        let x = self.expr(a)?;
        Ok(match op {
            UnOp::Popcnt => self.popcnt(t, ct, x),
            UnOp::Not => self.b.ins().bnot(x),
            UnOp::Neg => self.b.ins().ineg(x),
            UnOp::FNeg => self.b.ins().fneg(x),
            UnOp::FSqrt => self.b.ins().sqrt(x),
        })
    }

    /// Per-lane popcount. Cranelift has it for scalars and i8x16; wider
    /// lanes count their bytes as i8x16 and sum each lane's bytes with a
    /// multiply by 0x0101...01 (the sum lands in the top byte; it is at most
    /// 64, so no byte carries), then shift it down.
    fn popcnt(&mut self, t: Ty, ct: Type, x: Value) -> Value {
        if !t.is_vector() || ct == types::I8X16 {
            return self.b.ins().popcnt(x);
        }
        let bits = t.scalar.bits();
        let bytes = self.b.ins().bitcast(types::I8X16, le_flags(), x);
        let counts = self.b.ins().popcnt(bytes);
        let counts = self.b.ins().bitcast(ct, le_flags(), counts);
        let lane = ct.lane_type();
        let ones = (0x0101_0101_0101_0101u64 & lane_mask(bits) as u64) as i64;
        let ones = self.b.ins().iconst(lane, ones);
        let ones = self.b.ins().splat(ct, ones);
        let sums = self.b.ins().imul(counts, ones);
        let amount = self.b.ins().iconst(types::I32, i64::from(bits - 8));
        self.b.ins().ushr(sums, amount)
    }

    fn cmp(&mut self, op: CmpOp, a: &Expr, b: &Expr) -> Result<Value, Error> {
        let t = self.kty(a);
        self.ty(t, || format!("{} on {t}", kir_name(op)))?;
        let x = self.expr(a)?;
        let y = self.expr(b)?;
        let icc = |cc| Some(cc);
        let int = match op {
            CmpOp::Eq => icc(IntCC::Equal),
            CmpOp::Ne => icc(IntCC::NotEqual),
            CmpOp::SLt => icc(IntCC::SignedLessThan),
            CmpOp::SLe => icc(IntCC::SignedLessThanOrEqual),
            CmpOp::SGt => icc(IntCC::SignedGreaterThan),
            CmpOp::SGe => icc(IntCC::SignedGreaterThanOrEqual),
            CmpOp::ULt => icc(IntCC::UnsignedLessThan),
            _ => None,
        };
        // Scalars give an i8 0/1, vectors a lane mask of the operand's
        // width (i32 lanes for f32): exactly Cranelift's results.
        Ok(match int {
            Some(cc) => self.b.ins().icmp(cc, x, y),
            None => {
                let (cc, y) = match op {
                    CmpOp::FEq => (FloatCC::Equal, y),
                    CmpOp::FLt => (FloatCC::LessThan, y),
                    CmpOp::FLe => (FloatCC::LessThanOrEqual, y),
                    CmpOp::FGt => (FloatCC::GreaterThan, y),
                    CmpOp::FGe => (FloatCC::GreaterThanOrEqual, y),
                    // Unordered: is either operand NaN.
                    _ => (FloatCC::Unordered, y),
                };
                self.b.ins().fcmp(cc, x, y)
            }
        })
    }

    fn cast(&mut self, op: CastOp, a: &Expr, to: Ty) -> Result<Value, Error> {
        let from = self.kty(a);
        let what = || format!("{} from {from} to {to}", kir_name(op));
        self.ty(from, what)?;
        let cto = self.ty(to, what)?;
        let x = self.expr(a)?;
        let vector = from.is_vector() || to.is_vector();
        Ok(match op {
            CastOp::SExt | CastOp::ZExt | CastOp::Trunc if vector => {
                // Same lane count, different lane width: one side is not a
                // 128-bit vector, which the type check above refuses.
                return Err(self.unsupported(what(), "lane-count preserving vector width changes"));
            }
            CastOp::SExt => self.b.ins().sextend(cto, x),
            CastOp::ZExt => self.b.ins().uextend(cto, x),
            CastOp::Trunc => self.b.ins().ireduce(cto, x),
            CastOp::SIToF => {
                if vector {
                    if from.scalar != Scalar::I32 {
                        return Err(self.unsupported(what(), "vector int-to-float needs i32 lanes"));
                    }
                    self.b.ins().fcvt_from_sint(cto, x)
                } else {
                    let x = if from.scalar.bits() < 32 {
                        self.b.ins().sextend(types::I32, x)
                    } else {
                        x
                    };
                    self.b.ins().fcvt_from_sint(cto, x)
                }
            }
            CastOp::Bitcast => {
                if from == to {
                    x
                } else if vector {
                    self.b.ins().bitcast(cto, le_flags(), x)
                } else {
                    self.b.ins().bitcast(cto, MemFlagsData::new(), x)
                }
            }
        })
    }
}

/// kir's printed name of an operation (`s_min`, `popcnt`, ...).
fn kir_name<T: std::fmt::Debug>(op: T) -> String {
    let d = format!("{op:?}");
    let mut out = String::new();
    for (i, c) in d.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}
