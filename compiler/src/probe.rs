//! The popcount ceiling of this CPU, measured by code generated through the
//! same backend and target as the kernels it is compared with.
//!
//! One *bit-MAC* is one xor + popcount + accumulate of one bit: a binary dot
//! product of length K costs K bit-MACs. The probe is a kir function whose
//! loop keeps `chains` independent accumulators of `lanes` x i64 in registers
//! and does, per iteration and chain,
//!
//! ```text
//! v     = splat(i)                             (once per iteration)
//! acc_c = acc_c + popcnt(x_c xor v)            (per lane, per chain)
//! ```
//!
//! so each iteration is `chains * lanes * 64` bit-MACs, with no loads or
//! stores. The xor reads the loop counter, so nothing is loop-invariant and
//! no compiler can hoist or fold the work; each chain's only loop-carried
//! dependency is its add (as in a kernel's accumulator), so with enough
//! chains the loop runs at the throughput of the xor, popcount and add
//! units, not their latency. The broadcast of the counter is one extra
//! instruction per iteration, shared by all chains. What the kernels reach is reported as a
//! fraction of this number measured in the same run.

use std::time::Instant;

use bnnc_kir::build::*;
use bnnc_kir::target::Target;
use bnnc_kir::{BinOp, Expr, Function, Module, Scalar, Stmt, Ty, UnOp};

use crate::compile::{Backend, CompileError};

/// The probe's symbol.
const PROBE: &str = "bnnc_popcount_probe";

/// `probe(iters, seed, xs) -> i64`: see the module docs. `x_c` is read from
/// `xs` (`chains * lanes` words) before the loop, so no compiler knows its
/// lanes (with splats, LLVM xors a scalar and broadcasts it instead). The
/// result (the sum of every lane of every accumulator) depends on all the
/// work, so none of it is dead.
pub fn probe_module(lanes: u16, chains: usize) -> Module {
    let vt = Ty {
        scalar: Scalar::I64,
        lanes,
    };
    let mut f = Function::new(PROBE, true, Some(Ty::I64));
    let iters = f.param("iters", Ty::I64);
    let seed = f.param("seed", Ty::I64);
    let xs_ptr = f.param("xs", Ty::PTR);
    let i = f.var("i", Ty::I64);
    let v = f.var("v", vt);
    let accs: Vec<_> = (0..chains).map(|c| f.var(format!("acc{c}"), vt)).collect();
    let xs: Vec<_> = (0..chains).map(|c| f.var(format!("x{c}"), vt)).collect();
    let mut body = Vec::new();
    for (c, (&a, &x)) in accs.iter().zip(&xs).enumerate() {
        body.push(Stmt::Assign(
            a,
            splat(vt, mul(var(seed), i64c(2 * c as i64 + 1))),
        ));
        body.push(Stmt::Assign(
            x,
            load(vt, addr(var(xs_ptr), i64c(c as i64), 8 * i64::from(lanes))),
        ));
    }
    let mut step = vec![Stmt::Assign(v, splat(vt, var(i)))];
    step.extend(accs.iter().zip(&xs).map(|(&a, &x)| {
        Stmt::Assign(
            a,
            add(var(a), un(UnOp::Popcnt, bin(BinOp::Xor, var(x), var(v)))),
        )
    }));
    body.push(Stmt::For {
        var: i,
        start: i64c(0),
        end: var(iters),
        step: 1,
        body: step,
    });
    let total = accs
        .iter()
        .map(|&a| {
            if lanes > 1 {
                Expr::ReduceAdd(Box::new(var(a)))
            } else {
                var(a)
            }
        })
        .reduce(add)
        .unwrap_or_else(|| i64c(0));
    body.push(Stmt::Return(Some(total)));
    f.body = body;
    Module {
        name: "probe".into(),
        functions: vec![f],
        ..Module::default()
    }
}

/// `x` in every lane of `t` (`x` itself for a scalar `t`).
fn splat(t: Ty, x: Expr) -> Expr {
    if t.lanes > 1 {
        Expr::Splat(t, Box::new(x))
    } else {
        x
    }
}

/// A measured ceiling.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ceiling {
    /// Bit-MACs per second of the best probe shape, median of its runs.
    pub bit_macs_per_s: f64,
    /// The shape that reached it.
    pub lanes: u16,
    pub chains: usize,
}

type ProbeFn = unsafe extern "C" fn(i64, i64, *const u64) -> i64;

/// The `xs` operand of the probe: `n` distinct words.
fn probe_words(n: usize) -> Vec<u64> {
    (0..n as u64)
        .map(|c| 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(c + 1))
        .collect()
}

/// The JIT that holds a probe's code: kept, never read, so the code stays
/// mapped while [`Probe::f`] points into it.
#[allow(dead_code)]
enum Code {
    Cranelift(Box<bnnc_cranelift::Jit>),
    Llvm(bnnc_llvm::Jit),
}

/// One probe shape, compiled and ready to time: [`Probe::rate`] is one timed
/// run of about the length [`Probe::calibrate`] set. Kernels are best
/// compared with rates taken right before or after their own runs, since
/// the machine's speed can change between seconds (other jobs, clocks).
pub struct Probe {
    _code: Code,
    f: ProbeFn,
    pub lanes: u16,
    pub chains: usize,
    iters: i64,
    xs: Vec<u64>,
}

impl Probe {
    /// The probe of `lanes` x i64 and `chains` chains, JIT-compiled by
    /// `backend` for `target` (which must run here).
    pub fn new(
        target: &Target,
        backend: Backend,
        lanes: u16,
        chains: usize,
    ) -> Result<Probe, CompileError> {
        let m = probe_module(lanes, chains);
        let (code, ptr) = match backend {
            Backend::Cranelift => {
                let jit = bnnc_cranelift::Jit::new(&m, target)?;
                let ptr = jit.function(PROBE);
                (Code::Cranelift(Box::new(jit)), ptr)
            }
            Backend::Llvm => {
                let jit = bnnc_llvm::Jit::new(&m, target)?;
                let ptr = jit.function(PROBE);
                (Code::Llvm(jit), ptr)
            }
        };
        let ptr = ptr.ok_or_else(|| CompileError::Internal(format!("JIT has no `{PROBE}`")))?;
        // SAFETY: the probe was generated with exactly this signature, reads
        // only `xs` (`chains * lanes` words) and writes nothing; `_code`
        // keeps it alive as long as `f`.
        let f = unsafe { std::mem::transmute::<*const u8, ProbeFn>(ptr) };
        Ok(Probe {
            _code: code,
            f,
            lanes,
            chains,
            iters: 1 << 12,
            xs: probe_words(chains * lanes as usize),
        })
    }

    /// Seconds of one call of `iters` iterations.
    fn seconds(&self, iters: i64) -> f64 {
        let t = Instant::now();
        // SAFETY: see `new`; `xs` holds the words the probe reads.
        let r = unsafe { (self.f)(iters, 0x1234_5678, self.xs.as_ptr()) };
        std::hint::black_box(r);
        t.elapsed().as_secs_f64()
    }

    /// Sets the iteration count so one [`Probe::rate`] takes about
    /// `seconds`.
    pub fn calibrate(&mut self, seconds: f64) {
        let mut iters: i64 = 1 << 12;
        loop {
            let s = self.seconds(iters);
            if s > 0.002 || iters > 1 << 40 {
                self.iters = ((iters as f64) * seconds / s.max(1e-9)).max(1.0) as i64;
                return;
            }
            iters *= 4;
        }
    }

    /// Bit-MACs per second of one timed run.
    pub fn rate(&self) -> f64 {
        let per_iter = (self.chains * self.lanes as usize * 64) as f64;
        self.iters as f64 * per_iter / self.seconds(self.iters)
    }
}

/// Runs the probe for `lanes` x i64 vectors (1 = scalar) with each chain
/// count in `chains`, JIT-compiled by `backend` for `target` (which must run
/// here); each shape is timed `runs` times for about 20 ms a run and the
/// median kept; returns the best shape.
pub fn measure(
    target: &Target,
    backend: Backend,
    lanes: u16,
    chains: &[usize],
    runs: usize,
) -> Result<Ceiling, CompileError> {
    let mut best: Option<Ceiling> = None;
    for &c in chains {
        let mut p = Probe::new(target, backend, lanes, c)?;
        p.calibrate(0.02);
        let mut rates: Vec<f64> = (0..runs.max(1)).map(|_| p.rate()).collect();
        rates.sort_by(f64::total_cmp);
        let rate = rates[rates.len() / 2];
        if best.is_none_or(|b| rate > b.bit_macs_per_s) {
            best = Some(Ceiling {
                bit_macs_per_s: rate,
                lanes,
                chains: c,
            });
        }
    }
    best.ok_or_else(|| CompileError::Internal("no probe shape given".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe computes what its definition says: checked against a
    /// direct evaluation on the host (not a timing).
    #[test]
    fn probe_result_matches_its_definition() {
        for lanes in [1u16, 2] {
            check(lanes, 3, 37, 11);
        }
    }

    fn check(lanes: u16, chains: usize, iters: i64, seed: i64) {
        let m = probe_module(lanes, chains);
        let target = Target::host().unwrap();
        let jit = bnnc_cranelift::Jit::new(&m, &target).unwrap();
        let ptr = jit.function(PROBE).unwrap();
        // SAFETY: generated with this signature.
        let f = unsafe { std::mem::transmute::<*const u8, ProbeFn>(ptr) };
        let xs = probe_words(chains * lanes as usize);
        let got = unsafe { f(iters, seed, xs.as_ptr()) };
        let mut want = 0i64;
        for c in 0..chains {
            for l in 0..lanes as usize {
                let x = xs[c * lanes as usize + l] as i64;
                let mut a = seed.wrapping_mul(2 * c as i64 + 1);
                for i in 0..iters {
                    a = a.wrapping_add((x ^ i).count_ones() as i64);
                }
                want = want.wrapping_add(a);
            }
        }
        assert_eq!(got, want);
    }
}
