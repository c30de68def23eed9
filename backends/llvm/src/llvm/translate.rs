//! kir -> LLVM IR, one to one (see the crate documentation for the mapping).
//!
//! Written against LLVM's C API (through `inkwell::llvm_sys`): it builds
//! scalars and vectors of any width with the same calls, which inkwell's
//! typed builder splits by value kind. Every reference used here comes from
//! the one context the caller owns and outlives the translation.

use std::ffi::{c_char, c_uint, CString};

use bnnc_kir::{self as kir, BinOp, CastOp, CmpOp, Expr, Function, Scalar, Stmt, Ty, UnOp, VarId};
use inkwell::llvm_sys::core::*;
use inkwell::llvm_sys::prelude::*;
use inkwell::llvm_sys::{
    LLVMAttributeFunctionIndex, LLVMIntPredicate, LLVMLinkage, LLVMRealPredicate, LLVMUnnamedAddr,
};

use super::ptrs;
use crate::{Error, Machine};

const NONAME: *const c_char = c"".as_ptr();

fn cstr(s: &str) -> CString {
    // kir names never contain NUL; one that did would be cut there.
    CString::new(s.split('\0').next().unwrap_or("")).expect("no NUL left")
}

fn unsupported(f: &Function, what: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Unsupported {
        func: f.name.clone(),
        what: what.into(),
        reason: reason.into(),
    }
}

/// More parameters, or arguments of one call, than this make a function wide
/// ([`is_wide`]).
const WIDE: usize = 256;

/// Whether `f` has more than [`WIDE`] parameters or passes more than that to
/// one call: a model's entry points with thousands of inputs and outputs,
/// which only check and pass pointers on. LLVM takes time quadratic in their
/// size (`default<O3>`: the SLP vectorizer on the test of every pointer,
/// constraint elimination on the facts those tests give; the
/// interprocedural passes on a call with thousands of arguments; code
/// generation on a block of a load and a store per parameter), so they are
/// `optnone`
/// (and `noinline`, which `optnone` requires), local ones take their
/// parameters in memory ([`is_packed`]), and exported ones read their
/// parameters directly, never through a stack slot, when they never assign
/// them: linear, and the kernels they call keep every optimisation.
pub(crate) fn is_wide(f: &Function) -> bool {
    fn calls_wide(b: &[Stmt]) -> bool {
        b.iter().any(|s| match s {
            Stmt::Call(_, args) => args.len() > WIDE,
            Stmt::For { body, .. } => calls_wide(body),
            Stmt::If { then, els, .. } => calls_wide(then) || calls_wide(els),
            _ => false,
        })
    }
    f.params > WIDE || calls_wide(&f.body)
}

/// Whether the local function `f` takes its parameters in memory: its LLVM
/// signature is one `ptr` to an array of 8-byte slots, slot `i` holding
/// parameter `i`, written by the caller (into a scratch array of its own
/// frame) just before the call. That is every local wide function
/// ([`is_wide`]) whose parameters are scalars. LLVM's interprocedural
/// passes (called-value propagation, IPSCCP, argument promotion) revisit a
/// call each time one of its arguments changes and then look at all its
/// arguments, time quadratic in the arguments of one call; a packed call has
/// one. Local functions' signatures are bnnc's own, so nothing outside sees
/// the difference.
pub(crate) fn is_packed(f: &Function) -> bool {
    !f.exported && f.params > WIDE && f.vars[..f.params].iter().all(|v| v.ty.lanes == 1)
}

/// The most arguments `b` passes to one call of a packed function.
fn packed_args(b: &[Stmt], packed: &[bool]) -> usize {
    b.iter()
        .map(|s| match s {
            Stmt::Call(id, args) if packed.get(id.0 as usize) == Some(&true) => args.len(),
            Stmt::For { body, .. } => packed_args(body, packed),
            Stmt::If { then, els, .. } => packed_args(then, packed).max(packed_args(els, packed)),
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}

/// Marks every variable `b` assigns (loop variables included).
fn mark_assigned(b: &[Stmt], out: &mut [bool]) {
    for s in b {
        match s {
            Stmt::Assign(v, _) => {
                if let Some(x) = out.get_mut(v.0 as usize) {
                    *x = true;
                }
            }
            Stmt::For { var, body, .. } => {
                if let Some(x) = out.get_mut(var.0 as usize) {
                    *x = true;
                }
                mark_assigned(body, out);
            }
            Stmt::If { then, els, .. } => {
                mark_assigned(then, out);
                mark_assigned(els, out);
            }
            _ => {}
        }
    }
}

/// Module-wide LLVM handles.
struct Cx<'a> {
    m: &'a kir::Module,
    ctx: LLVMContextRef,
    module: LLVMModuleRef,
    b: LLVMBuilderRef,
    i8: LLVMTypeRef,
    i32: LLVMTypeRef,
    i64: LLVMTypeRef,
    f32: LLVMTypeRef,
    ptr: LLVMTypeRef,
    /// Per kir function: the LLVM function and its type.
    funcs: Vec<(LLVMValueRef, LLVMTypeRef)>,
    externs: Vec<(LLVMValueRef, LLVMTypeRef)>,
    data: Vec<LLVMValueRef>,
    is_ptr: Vec<Vec<bool>>,
    /// Per kir function: whether it takes its parameters packed
    /// ([`is_packed`]).
    packed: Vec<bool>,
}

/// Translates `m` into the empty `module` of `ctx`, with `machine`'s CPU and
/// features on every function. The caller verifies the result.
pub(crate) fn translate(
    ctx: LLVMContextRef,
    module: LLVMModuleRef,
    m: &kir::Module,
    machine: &Machine,
) -> Result<(), Error> {
    // SAFETY: `ctx` and `module` are live and belong together; every handle
    // created below lives in `ctx`, and the builder is disposed before
    // returning.
    unsafe {
        let b = LLVMCreateBuilderInContext(ctx);
        let mut cx = Cx {
            m,
            ctx,
            module,
            b,
            i8: LLVMInt8TypeInContext(ctx),
            i32: LLVMInt32TypeInContext(ctx),
            i64: LLVMInt64TypeInContext(ctx),
            f32: LLVMFloatTypeInContext(ctx),
            ptr: LLVMPointerTypeInContext(ctx, 0),
            funcs: Vec::new(),
            externs: Vec::new(),
            data: Vec::new(),
            is_ptr: ptrs::analyse(m),
            packed: m.functions.iter().map(is_packed).collect(),
        };
        let r = cx.module_body(machine);
        LLVMDisposeBuilder(b);
        r
    }
}

impl Cx<'_> {
    /// The LLVM type of a kir type.
    unsafe fn lty(&self, t: Ty) -> Result<LLVMTypeRef, String> {
        let lane = match t.scalar {
            Scalar::I8 => self.i8,
            Scalar::I16 => LLVMInt16TypeInContext(self.ctx),
            Scalar::I32 => self.i32,
            Scalar::I64 => self.i64,
            Scalar::F32 => self.f32,
        };
        match t.lanes {
            0 => Err(format!("{t} has no lanes")),
            1 => Ok(lane),
            n => Ok(LLVMVectorType(lane, c_uint::from(n))),
        }
    }

    unsafe fn fty(
        &self,
        f: &Function,
        t: Ty,
        what: impl FnOnce() -> String,
    ) -> Result<LLVMTypeRef, Error> {
        self.lty(t).map_err(|reason| unsupported(f, what(), reason))
    }

    unsafe fn string_attr(&self, key: &str, value: &str) -> LLVMAttributeRef {
        LLVMCreateStringAttribute(
            self.ctx,
            key.as_ptr() as *const c_char,
            key.len() as c_uint,
            value.as_ptr() as *const c_char,
            value.len() as c_uint,
        )
    }

    unsafe fn enum_attr(&self, name: &str) -> LLVMAttributeRef {
        let kind = LLVMGetEnumAttributeKindForName(name.as_ptr() as *const c_char, name.len());
        assert_ne!(kind, 0, "LLVM knows attribute {name}");
        LLVMCreateEnumAttribute(self.ctx, kind, 0)
    }

    unsafe fn module_body(&mut self, machine: &Machine) -> Result<(), Error> {
        let m = self.m;
        for d in &m.data {
            if d.align == 0 || !d.align.is_power_of_two() {
                return Err(Error::Kir(format!(
                    "data `{}` has alignment {}, not a power of two",
                    d.name, d.align
                )));
            }
            let init = LLVMConstStringInContext2(
                self.ctx,
                d.bytes.as_ptr() as *const c_char,
                d.bytes.len(),
                1,
            );
            let name = cstr(&d.name);
            let g = LLVMAddGlobal(self.module, LLVMTypeOf(init), name.as_ptr());
            LLVMSetInitializer(g, init);
            LLVMSetGlobalConstant(g, 1);
            LLVMSetLinkage(g, LLVMLinkage::LLVMPrivateLinkage);
            LLVMSetUnnamedAddress(g, LLVMUnnamedAddr::LLVMGlobalUnnamedAddr);
            LLVMSetAlignment(g, d.align);
            self.data.push(g);
        }
        for x in &m.externs {
            let host = Function::new(format!("extern {}", x.name), false, None);
            let mut ps = Vec::new();
            for (i, &t) in x.params.iter().enumerate() {
                ps.push(self.fty(&host, t, || format!("parameter {i}"))?);
            }
            let ret = self.fty(&host, x.ret, || "the result".into())?;
            let fty = LLVMFunctionType(ret, ps.as_mut_ptr(), ps.len() as c_uint, 0);
            let name = cstr(&x.name);
            let existing = LLVMGetNamedFunction(self.module, name.as_ptr());
            let fv = if existing.is_null() {
                LLVMAddFunction(self.module, name.as_ptr(), fty)
            } else {
                existing
            };
            self.externs.push((fv, fty));
        }
        let cpu = self.string_attr("target-cpu", &machine.cpu);
        let features = self.string_attr("target-features", &machine.features);
        let nounwind = self.enum_attr("nounwind");
        let noinline = self.enum_attr("noinline");
        let optnone = self.enum_attr("optnone");
        for (fi, f) in m.functions.iter().enumerate() {
            let mut ps = Vec::new();
            for (i, v) in f.vars[..f.params].iter().enumerate() {
                ps.push(if self.is_ptr[fi][i] {
                    self.ptr
                } else {
                    self.fty(f, v.ty, || format!("parameter `{}`", v.name))?
                });
            }
            if self.packed[fi] {
                ps = vec![self.ptr];
            }
            let ret = match f.ret {
                Some(t) => self.fty(f, t, || "the result".into())?,
                None => LLVMVoidTypeInContext(self.ctx),
            };
            let fty = LLVMFunctionType(ret, ps.as_mut_ptr(), ps.len() as c_uint, 0);
            let name = cstr(&f.name);
            if !LLVMGetNamedFunction(self.module, name.as_ptr()).is_null() {
                return Err(Error::Kir(format!("two functions named `{}`", f.name)));
            }
            let fv = LLVMAddFunction(self.module, name.as_ptr(), fty);
            LLVMSetLinkage(
                fv,
                if f.exported {
                    LLVMLinkage::LLVMExternalLinkage
                } else {
                    LLVMLinkage::LLVMInternalLinkage
                },
            );
            LLVMAddAttributeAtIndex(fv, LLVMAttributeFunctionIndex, cpu);
            if !machine.features.is_empty() {
                LLVMAddAttributeAtIndex(fv, LLVMAttributeFunctionIndex, features);
            }
            LLVMAddAttributeAtIndex(fv, LLVMAttributeFunctionIndex, nounwind);
            if !f.exported || is_wide(f) {
                LLVMAddAttributeAtIndex(fv, LLVMAttributeFunctionIndex, noinline);
            }
            if is_wide(f) {
                LLVMAddAttributeAtIndex(fv, LLVMAttributeFunctionIndex, optnone);
            }
            if self.packed[fi] {
                LLVMSetValueName2(LLVMGetParam(fv, 0), c"args".as_ptr(), 4);
            } else {
                for (i, v) in f.vars[..f.params].iter().enumerate() {
                    let p = LLVMGetParam(fv, i as c_uint);
                    let n = cstr(&v.name);
                    LLVMSetValueName2(p, n.as_ptr(), v.name.len());
                }
            }
            self.funcs.push((fv, fty));
        }
        for fi in 0..m.functions.len() {
            self.function(fi)?;
        }
        Ok(())
    }

    unsafe fn function(&mut self, fi: usize) -> Result<(), Error> {
        let f = &self.m.functions[fi];
        let (fv, _) = self.funcs[fi];
        let entry = LLVMAppendBasicBlockInContext(self.ctx, fv, c"entry".as_ptr());
        LLVMPositionBuilderAtEnd(self.b, entry);
        let mut slots = Vec::with_capacity(f.vars.len());
        let mut slot_tys = Vec::with_capacity(f.vars.len());
        let packed = self.packed[fi];
        // Parameters of a wide function that it never assigns are their
        // values (`optnone` keeps every stack slot, see `is_wide`).
        let direct: Vec<Option<LLVMValueRef>> = if is_wide(f) && !packed {
            let mut assigned = vec![false; f.vars.len()];
            mark_assigned(&f.body, &mut assigned);
            (0..f.vars.len())
                .map(|i| (i < f.params && !assigned[i]).then(|| LLVMGetParam(fv, i as c_uint)))
                .collect()
        } else {
            vec![None; f.vars.len()]
        };
        for (i, v) in f.vars.iter().enumerate() {
            let t = if self.is_ptr[fi][i] {
                self.ptr
            } else {
                self.fty(f, v.ty, || format!("variable `{}`", v.name))?
            };
            let n = cstr(&v.name);
            slots.push(match direct[i] {
                Some(_) => std::ptr::null_mut(),
                // A packed parameter's slot is its slot of the caller's array.
                None if packed && i < f.params => {
                    let mut idx = [LLVMConstInt(self.i64, i as u64, 0)];
                    let args = LLVMGetParam(fv, 0);
                    LLVMBuildGEP2(self.b, self.i64, args, idx.as_mut_ptr(), 1, n.as_ptr())
                }
                None => LLVMBuildAlloca(self.b, t, n.as_ptr()),
            });
            slot_tys.push(t);
        }
        // The array this function passes packed arguments in.
        let scratch = match packed_args(&f.body, &self.packed) {
            0 => std::ptr::null_mut(),
            n => LLVMBuildAlloca(
                self.b,
                LLVMArrayType2(self.i64, n as u64),
                c"packed_args".as_ptr(),
            ),
        };
        // Parameters arrive in their slots; other variables start at zero
        // (as in the Cranelift backend), never undefined.
        for (i, (&slot, &t)) in slots.iter().zip(&slot_tys).enumerate() {
            if direct[i].is_some() || (packed && i < f.params) {
                continue;
            }
            let init = if i < f.params {
                LLVMGetParam(fv, i as c_uint)
            } else {
                LLVMConstNull(t)
            };
            LLVMBuildStore(self.b, init, slot);
        }
        let mut fx = Fx {
            cx: self,
            f,
            fi,
            func: fv,
            slots,
            slot_tys,
            direct,
            scratch,
            terminated: false,
        };
        fx.block(&f.body)?;
        if !fx.terminated {
            match f.ret {
                None => {
                    LLVMBuildRetVoid(fx.cx.b);
                }
                // kir does not require a trailing `return`; falling off the
                // end of a function with a result is a bug in the kir, and
                // traps (as it does in the Cranelift backend).
                Some(_) => {
                    fx.intrinsic("llvm.trap", &[], &mut []);
                    LLVMBuildUnreachable(fx.cx.b);
                }
            }
        }
        Ok(())
    }
}

/// One function being translated.
struct Fx<'a, 'b> {
    cx: &'a Cx<'b>,
    f: &'a Function,
    fi: usize,
    func: LLVMValueRef,
    slots: Vec<LLVMValueRef>,
    slot_tys: Vec<LLVMTypeRef>,
    /// Per variable, its value when it is a parameter read directly (its
    /// slot is then null).
    direct: Vec<Option<LLVMValueRef>>,
    /// The array of packed arguments ([`is_packed`]); null when the
    /// function calls no packed function.
    scratch: LLVMValueRef,
    /// The current block ended (with a `return`); following statements are
    /// unreachable and go to a fresh block.
    terminated: bool,
}

fn lane_mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

impl Fx<'_, '_> {
    fn kty(&self, e: &Expr) -> Ty {
        self.f.ty_of(self.cx.m, e)
    }

    fn is_ptr_var(&self, v: VarId) -> bool {
        self.cx.is_ptr[self.fi]
            .get(v.0 as usize)
            .copied()
            .unwrap_or(false)
    }

    unsafe fn ty(&self, t: Ty, what: impl FnOnce() -> String) -> Result<LLVMTypeRef, Error> {
        self.cx.fty(self.f, t, what)
    }

    unsafe fn new_block(&self) -> LLVMBasicBlockRef {
        LLVMAppendBasicBlockInContext(self.cx.ctx, self.func, NONAME)
    }

    unsafe fn ensure_open(&mut self) {
        if self.terminated {
            let blk = self.new_block();
            LLVMPositionBuilderAtEnd(self.cx.b, blk);
            self.terminated = false;
        }
    }

    /// A call of the intrinsic `name` overloaded on `overload`.
    unsafe fn intrinsic(
        &self,
        name: &str,
        overload: &[LLVMTypeRef],
        args: &mut [LLVMValueRef],
    ) -> LLVMValueRef {
        let id = LLVMLookupIntrinsicID(name.as_ptr() as *const c_char, name.len());
        assert_ne!(id, 0, "LLVM has the intrinsic {name}");
        let mut tys = overload.to_vec();
        let decl = LLVMGetIntrinsicDeclaration(self.cx.module, id, tys.as_mut_ptr(), tys.len());
        let fty = LLVMIntrinsicGetType(self.cx.ctx, id, tys.as_mut_ptr(), tys.len());
        LLVMBuildCall2(
            self.cx.b,
            fty,
            decl,
            args.as_mut_ptr(),
            args.len() as c_uint,
            NONAME,
        )
    }

    /// The constant `x` (truncated to the lane width) in every lane of `t`.
    unsafe fn const_int(&self, t: Ty, x: i64) -> Result<LLVMValueRef, Error> {
        let lane = self.ty(t.lane(), || format!("constant of type {t}"))?;
        let c = LLVMConstInt(lane, (x as u64) & lane_mask(t.scalar.bits()), 0);
        if t.is_vector() {
            let mut cs = vec![c; t.lanes as usize];
            Ok(LLVMConstVector(cs.as_mut_ptr(), cs.len() as c_uint))
        } else {
            Ok(c)
        }
    }

    unsafe fn block(&mut self, stmts: &[Stmt]) -> Result<(), Error> {
        for s in stmts {
            self.stmt(s)?;
        }
        Ok(())
    }

    unsafe fn stmt(&mut self, s: &Stmt) -> Result<(), Error> {
        self.ensure_open();
        let b = self.cx.b;
        match s {
            Stmt::Assign(v, e) => {
                let i = v.0 as usize;
                if i >= self.slots.len() {
                    return Err(Error::Kir(format!("unknown variable {v:?}")));
                }
                let x = if self.is_ptr_var(*v) {
                    self.ptr_expr(e)?
                } else {
                    self.expr(e)?
                };
                LLVMBuildStore(b, x, self.slots[i]);
            }
            Stmt::Store { addr, value } => {
                let x = self.expr(value)?;
                let p = self.ptr_expr(addr)?;
                let st = LLVMBuildStore(b, x, p);
                LLVMSetAlignment(st, 1);
            }
            Stmt::For {
                var,
                start,
                end,
                step,
                body,
            } => {
                let slot = self.slots[var.0 as usize];
                let s0 = self.expr(start)?;
                // `end` is evaluated once, before the first iteration.
                let e = self.expr(end)?;
                LLVMBuildStore(b, s0, slot);
                let header = self.new_block();
                let body_blk = self.new_block();
                let exit = self.new_block();
                LLVMBuildBr(b, header);

                LLVMPositionBuilderAtEnd(b, header);
                let i = LLVMBuildLoad2(b, self.cx.i64, slot, NONAME);
                let c = LLVMBuildICmp(b, LLVMIntPredicate::LLVMIntSLT, i, e, NONAME);
                LLVMBuildCondBr(b, c, body_blk, exit);

                LLVMPositionBuilderAtEnd(b, body_blk);
                self.block(body)?;
                if !self.terminated {
                    let i = LLVMBuildLoad2(b, self.cx.i64, slot, NONAME);
                    let next =
                        LLVMBuildAdd(b, i, LLVMConstInt(self.cx.i64, *step as u64, 0), NONAME);
                    LLVMBuildStore(b, next, slot);
                    LLVMBuildBr(b, header);
                }
                LLVMPositionBuilderAtEnd(b, exit);
                self.terminated = false;
            }
            Stmt::If { cond, then, els } => {
                let c = self.expr(cond)?;
                let c = LLVMBuildICmp(
                    b,
                    LLVMIntPredicate::LLVMIntNE,
                    c,
                    LLVMConstInt(self.cx.i8, 0, 0),
                    NONAME,
                );
                let then_blk = self.new_block();
                let else_blk = self.new_block();
                LLVMBuildCondBr(b, c, then_blk, else_blk);
                let mut merge = None;
                for (blk, arm) in [(then_blk, then), (else_blk, els)] {
                    LLVMPositionBuilderAtEnd(b, blk);
                    self.block(arm)?;
                    if !self.terminated {
                        let mb = *merge.get_or_insert_with(|| self.new_block());
                        LLVMBuildBr(b, mb);
                    }
                    self.terminated = false;
                }
                match merge {
                    Some(mb) => LLVMPositionBuilderAtEnd(b, mb),
                    // Both arms returned.
                    None => self.terminated = true,
                }
            }
            Stmt::Call(id, args) => {
                let callee = id.0 as usize;
                let (fv, fty) = *self
                    .cx
                    .funcs
                    .get(callee)
                    .ok_or_else(|| Error::Kir("call of a missing function".into()))?;
                if self.cx.packed[callee] {
                    for (i, a) in args.iter().enumerate() {
                        let x = self.expr(a)?;
                        let mut idx = [LLVMConstInt(self.cx.i64, i as u64, 0)];
                        let at = LLVMBuildGEP2(
                            b,
                            self.cx.i64,
                            self.scratch,
                            idx.as_mut_ptr(),
                            1,
                            NONAME,
                        );
                        LLVMBuildStore(b, x, at);
                    }
                    let mut vals = [self.scratch];
                    LLVMBuildCall2(b, fty, fv, vals.as_mut_ptr(), 1, NONAME);
                    return Ok(());
                }
                let mut vals = Vec::with_capacity(args.len());
                for (i, a) in args.iter().enumerate() {
                    let wants_ptr = self.cx.is_ptr[callee].get(i).copied().unwrap_or(false);
                    vals.push(if wants_ptr {
                        self.ptr_expr(a)?
                    } else {
                        self.expr(a)?
                    });
                }
                // A result, if the callee has one, is discarded.
                LLVMBuildCall2(b, fty, fv, vals.as_mut_ptr(), vals.len() as c_uint, NONAME);
            }
            Stmt::Return(e) => {
                match e {
                    Some(e) => {
                        let x = self.expr(e)?;
                        LLVMBuildRet(b, x);
                    }
                    None => {
                        LLVMBuildRetVoid(b);
                    }
                }
                self.terminated = true;
            }
        }
        Ok(())
    }

    /// Can `e` be computed as a pointer without `inttoptr`?
    fn has_ptr(&self, e: &Expr) -> bool {
        match e {
            Expr::Var(v) => self.is_ptr_var(*v),
            Expr::DataAddr(_) => true,
            Expr::Load(t, _) => *t == Ty::I64,
            Expr::Bin(BinOp::Add, a, b) => self.has_ptr(a) || self.has_ptr(b),
            Expr::Bin(BinOp::Sub, a, _) => self.has_ptr(a),
            _ => false,
        }
    }

    unsafe fn gep(&self, p: LLVMValueRef, off: LLVMValueRef) -> LLVMValueRef {
        let mut idx = [off];
        LLVMBuildGEP2(self.cx.b, self.cx.i8, p, idx.as_mut_ptr(), 1, NONAME)
    }

    /// An `i64` address expression as an LLVM `ptr`.
    unsafe fn ptr_expr(&mut self, e: &Expr) -> Result<LLVMValueRef, Error> {
        let b = self.cx.b;
        if self.kty(e) == Ty::I64 {
            match e {
                Expr::Var(v) if self.is_ptr_var(*v) => {
                    let i = v.0 as usize;
                    if let Some(x) = self.direct[i] {
                        return Ok(x);
                    }
                    return Ok(LLVMBuildLoad2(b, self.slot_tys[i], self.slots[i], NONAME));
                }
                Expr::DataAddr(d) => return self.data(d.0 as usize),
                Expr::Bin(BinOp::Add, x, y) if self.has_ptr(x) => {
                    let p = self.ptr_expr(x)?;
                    let o = self.expr(y)?;
                    return Ok(self.gep(p, o));
                }
                Expr::Bin(BinOp::Add, x, y) if self.has_ptr(y) => {
                    let p = self.ptr_expr(y)?;
                    let o = self.expr(x)?;
                    return Ok(self.gep(p, o));
                }
                Expr::Bin(BinOp::Sub, x, y) if self.has_ptr(x) => {
                    let p = self.ptr_expr(x)?;
                    let o = self.expr(y)?;
                    let o = LLVMBuildNeg(b, o, NONAME);
                    return Ok(self.gep(p, o));
                }
                Expr::Load(_, a) => {
                    let p = self.ptr_expr(a)?;
                    let l = LLVMBuildLoad2(b, self.cx.ptr, p, NONAME);
                    LLVMSetAlignment(l, 1);
                    return Ok(l);
                }
                _ => {}
            }
        }
        let x = self.expr(e)?;
        Ok(LLVMBuildIntToPtr(b, x, self.cx.ptr, NONAME))
    }

    unsafe fn data(&self, d: usize) -> Result<LLVMValueRef, Error> {
        self.cx
            .data
            .get(d)
            .copied()
            .ok_or_else(|| Error::Kir(format!("unknown data DataId({d})")))
    }

    unsafe fn expr(&mut self, e: &Expr) -> Result<LLVMValueRef, Error> {
        let b = self.cx.b;
        Ok(match e {
            Expr::Var(v) => {
                let i = v.0 as usize;
                if i >= self.slots.len() {
                    return Err(Error::Kir(format!("unknown variable {v:?}")));
                }
                let x = match self.direct[i] {
                    Some(x) => x,
                    None => LLVMBuildLoad2(b, self.slot_tys[i], self.slots[i], NONAME),
                };
                if self.is_ptr_var(*v) {
                    LLVMBuildPtrToInt(b, x, self.cx.i64, NONAME)
                } else {
                    x
                }
            }
            Expr::Int(x, t) => self.const_int(*t, *x)?,
            Expr::F32(x) => {
                // Through the bits, so every NaN payload is kept exactly.
                let bits = LLVMConstInt(self.cx.i32, u64::from(x.to_bits()), 0);
                LLVMConstBitCast(bits, self.cx.f32)
            }
            Expr::DataAddr(d) => {
                let g = self.data(d.0 as usize)?;
                LLVMBuildPtrToInt(b, g, self.cx.i64, NONAME)
            }
            Expr::Load(t, a) => {
                let lt = self.ty(*t, || format!("load of {t}"))?;
                let p = self.ptr_expr(a)?;
                let l = LLVMBuildLoad2(b, lt, p, NONAME);
                LLVMSetAlignment(l, 1);
                l
            }
            Expr::Bin(op, x, y) => self.bin(*op, x, y)?,
            Expr::Un(op, a) => {
                let t = self.kty(a);
                let lt = self.ty(t, || format!("{} on {t}", kir_name(op)))?;
                let x = self.expr(a)?;
                match op {
                    UnOp::Popcnt => self.intrinsic("llvm.ctpop", &[lt], &mut [x]),
                    UnOp::Not => LLVMBuildNot(b, x, NONAME),
                    UnOp::Neg => LLVMBuildNeg(b, x, NONAME),
                    UnOp::FNeg => LLVMBuildFNeg(b, x, NONAME),
                    UnOp::FSqrt => self.intrinsic("llvm.sqrt", &[lt], &mut [x]),
                }
            }
            Expr::Cmp(op, x, y) => self.cmp(*op, x, y)?,
            Expr::Select(c, x, y) => {
                let tc = self.kty(c);
                let t = self.kty(x);
                self.ty(t, || format!("select of {t}"))?;
                let cv = self.expr(c)?;
                let xv = self.expr(x)?;
                let yv = self.expr(y)?;
                let cond = if t.is_vector() {
                    if tc.lanes != t.lanes || tc.scalar.is_float() {
                        return Err(unsupported(
                            self.f,
                            format!("select over {t} with a {tc} condition"),
                            format!(
                                "a vector select needs an integer lane mask with {} lanes",
                                t.lanes
                            ),
                        ));
                    }
                    let ct = self.ty(tc, || format!("select condition {tc}"))?;
                    LLVMBuildICmp(
                        b,
                        LLVMIntPredicate::LLVMIntNE,
                        cv,
                        LLVMConstNull(ct),
                        NONAME,
                    )
                } else {
                    LLVMBuildICmp(
                        b,
                        LLVMIntPredicate::LLVMIntNE,
                        cv,
                        LLVMConstInt(self.cx.i8, 0, 0),
                        NONAME,
                    )
                };
                LLVMBuildSelect(b, cond, xv, yv, NONAME)
            }
            Expr::Cast(op, a, to) => {
                let from = self.kty(a);
                let what = || format!("{} from {from} to {to}", kir_name(op));
                self.ty(from, what)?;
                let lto = self.ty(*to, what)?;
                let x = self.expr(a)?;
                match op {
                    CastOp::SExt => LLVMBuildSExt(b, x, lto, NONAME),
                    CastOp::ZExt => LLVMBuildZExt(b, x, lto, NONAME),
                    CastOp::Trunc => LLVMBuildTrunc(b, x, lto, NONAME),
                    CastOp::SIToF => LLVMBuildSIToFP(b, x, lto, NONAME),
                    CastOp::Bitcast if from == *to => x,
                    // LLVM's bitcast is the store-then-load reinterpretation:
                    // lane 0 in the low bits on these little-endian targets.
                    CastOp::Bitcast => LLVMBuildBitCast(b, x, lto, NONAME),
                }
            }
            Expr::Splat(t, a) => {
                let vt = self.ty(*t, || format!("splat to {t}"))?;
                let x = self.expr(a)?;
                let poison = LLVMGetPoison(vt);
                let v =
                    LLVMBuildInsertElement(b, poison, x, LLVMConstInt(self.cx.i32, 0, 0), NONAME);
                let mask = LLVMConstNull(LLVMVectorType(self.cx.i32, c_uint::from(t.lanes)));
                LLVMBuildShuffleVector(b, v, poison, mask, NONAME)
            }
            Expr::ReduceAdd(a) => {
                let t = self.kty(a);
                let vt = self.ty(t, || format!("reduce_add of {t}"))?;
                let x = self.expr(a)?;
                if t.scalar.is_float() {
                    // Without `reassoc` this reduction is ordered:
                    // (((-0.0 + l0) + l1) + l2) + ..., and -0.0 + l0 is l0
                    // for every l0, so it is kir's ((l0 + l1) + l2) + ...
                    let start = LLVMConstBitCast(
                        LLVMConstInt(self.cx.i32, u64::from((-0.0f32).to_bits()), 0),
                        self.cx.f32,
                    );
                    self.intrinsic("llvm.vector.reduce.fadd", &[vt], &mut [start, x])
                } else {
                    self.intrinsic("llvm.vector.reduce.add", &[vt], &mut [x])
                }
            }
            Expr::SignBits(a) => {
                let t = self.kty(a);
                let vt = self.ty(t, || format!("sign_bits of {t}"))?;
                let x = self.expr(a)?;
                // (x < 0) as <L x i1>, bitcast to iL, zero-extended.
                let neg = LLVMBuildICmp(
                    b,
                    LLVMIntPredicate::LLVMIntSLT,
                    x,
                    LLVMConstNull(vt),
                    NONAME,
                );
                let bits = LLVMBuildBitCast(
                    b,
                    neg,
                    LLVMIntTypeInContext(self.cx.ctx, c_uint::from(t.lanes)),
                    NONAME,
                );
                LLVMBuildZExt(b, bits, self.cx.i64, NONAME)
            }
            Expr::Extract(a, i) => {
                let t = self.kty(a);
                self.ty(t, || format!("extract from {t}"))?;
                let x = self.expr(a)?;
                LLVMBuildExtractElement(b, x, LLVMConstInt(self.cx.i32, u64::from(*i), 0), NONAME)
            }
            Expr::CallExtern(x, args) => {
                let (fv, fty) = *self
                    .cx
                    .externs
                    .get(x.0 as usize)
                    .ok_or_else(|| Error::Kir("unknown extern".into()))?;
                let mut vals = Vec::with_capacity(args.len());
                for a in args {
                    vals.push(self.expr(a)?);
                }
                let call =
                    LLVMBuildCall2(b, fty, fv, vals.as_mut_ptr(), vals.len() as c_uint, NONAME);
                // The libm function itself, called at run time: LLVM must
                // not fold it with its own arithmetic or swap it for another.
                LLVMAddCallSiteAttribute(
                    call,
                    LLVMAttributeFunctionIndex,
                    self.cx.enum_attr("nobuiltin"),
                );
                call
            }
        })
    }

    unsafe fn bin(&mut self, op: BinOp, a: &Expr, c: &Expr) -> Result<LLVMValueRef, Error> {
        let b = self.cx.b;
        let t = self.kty(a);
        let lt = self.ty(t, || format!("{} on {t}", kir_name(&op)))?;
        let x = self.expr(a)?;
        let y = self.expr(c)?;
        Ok(match op {
            BinOp::Add => LLVMBuildAdd(b, x, y, NONAME),
            BinOp::Sub => LLVMBuildSub(b, x, y, NONAME),
            BinOp::Mul => LLVMBuildMul(b, x, y, NONAME),
            BinOp::And => LLVMBuildAnd(b, x, y, NONAME),
            BinOp::Or => LLVMBuildOr(b, x, y, NONAME),
            BinOp::Xor => LLVMBuildXor(b, x, y, NONAME),
            BinOp::Shl | BinOp::ShrU | BinOp::ShrS => {
                // kir takes the amount modulo the lane width; LLVM's result
                // is poison for amounts >= the width.
                let m = self.const_int(t, i64::from(t.scalar.bits() - 1))?;
                let y = LLVMBuildAnd(b, y, m, NONAME);
                match op {
                    BinOp::Shl => LLVMBuildShl(b, x, y, NONAME),
                    BinOp::ShrU => LLVMBuildLShr(b, x, y, NONAME),
                    _ => LLVMBuildAShr(b, x, y, NONAME),
                }
            }
            BinOp::SMin => self.intrinsic("llvm.smin", &[lt], &mut [x, y]),
            BinOp::SMax => self.intrinsic("llvm.smax", &[lt], &mut [x, y]),
            BinOp::FAdd => LLVMBuildFAdd(b, x, y, NONAME),
            BinOp::FSub => LLVMBuildFSub(b, x, y, NONAME),
            BinOp::FMul => LLVMBuildFMul(b, x, y, NONAME),
            BinOp::FDiv => LLVMBuildFDiv(b, x, y, NONAME),
        })
    }

    unsafe fn cmp(&mut self, op: CmpOp, a: &Expr, c: &Expr) -> Result<LLVMValueRef, Error> {
        let b = self.cx.b;
        let t = self.kty(a);
        self.ty(t, || format!("{} on {t}", kir_name(&op)))?;
        let x = self.expr(a)?;
        let y = self.expr(c)?;
        use LLVMIntPredicate::*;
        use LLVMRealPredicate::*;
        let bit = match op {
            CmpOp::Eq => LLVMBuildICmp(b, LLVMIntEQ, x, y, NONAME),
            CmpOp::Ne => LLVMBuildICmp(b, LLVMIntNE, x, y, NONAME),
            CmpOp::SLt => LLVMBuildICmp(b, LLVMIntSLT, x, y, NONAME),
            CmpOp::SLe => LLVMBuildICmp(b, LLVMIntSLE, x, y, NONAME),
            CmpOp::SGt => LLVMBuildICmp(b, LLVMIntSGT, x, y, NONAME),
            CmpOp::SGe => LLVMBuildICmp(b, LLVMIntSGE, x, y, NONAME),
            CmpOp::ULt => LLVMBuildICmp(b, LLVMIntULT, x, y, NONAME),
            CmpOp::FEq => LLVMBuildFCmp(b, LLVMRealOEQ, x, y, NONAME),
            CmpOp::FLt => LLVMBuildFCmp(b, LLVMRealOLT, x, y, NONAME),
            CmpOp::FLe => LLVMBuildFCmp(b, LLVMRealOLE, x, y, NONAME),
            CmpOp::FGt => LLVMBuildFCmp(b, LLVMRealOGT, x, y, NONAME),
            CmpOp::FGe => LLVMBuildFCmp(b, LLVMRealOGE, x, y, NONAME),
            // True when either operand is NaN.
            CmpOp::FUno => LLVMBuildFCmp(b, LLVMRealUNO, x, y, NONAME),
        };
        // Scalars give i8 0/1; vectors a lane mask as wide as the operand's
        // lanes (i32 lanes for f32): all ones where true.
        let rt = if t.is_vector() {
            let lane = if t.scalar.is_float() {
                Scalar::I32
            } else {
                t.scalar
            };
            Ty::vec(lane, t.lanes)
        } else {
            Ty::I8
        };
        let rt = self.ty(rt, || format!("result of {}", kir_name(&op)))?;
        Ok(if t.is_vector() {
            LLVMBuildSExt(b, bit, rt, NONAME)
        } else {
            LLVMBuildZExt(b, bit, rt, NONAME)
        })
    }
}

/// kir's printed name of an operation (`s_min`, `popcnt`, ...).
fn kir_name<T: std::fmt::Debug>(op: &T) -> String {
    let d = format!("{op:?}");
    let mut out = String::new();
    for (i, ch) in d.chars().enumerate() {
        if ch.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_lowercase());
    }
    out
}
