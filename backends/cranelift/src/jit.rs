//! JIT compilation for the host.

use std::collections::HashMap;

use bnnc_kir as kir;
use bnnc_kir::target::Target;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::default_libcall_names;

use crate::isa::{build_isa, build_wide_isa, Purpose};
use crate::translate::Placement;
use crate::{compile_module, Error};

/// A kir module compiled into this process's memory.
///
/// Function addresses from [`Jit::function`] stay valid exactly as long as
/// the `Jit` lives: dropping it frees the code and data. Calling such an
/// address means transmuting it to the `extern "C"` function type matching
/// the kir signature (pointers as `i64`/`*mut u8`), which is `unsafe`.
///
/// `Jit` is `Send` and `Sync`: after construction the code and data are
/// immutable (bnnc code writes no globals), `function` only reads a map
/// built in `new`, and the `JITModule` itself is never touched through a
/// shared reference (only when dropping).
pub struct Jit {
    module: OnlyMut<Option<JITModule>>,
    functions: HashMap<String, CodePtr>,
}

/// The address of finalized (read + execute, never written again) code.
#[derive(Clone, Copy)]
struct CodePtr(*const u8);

// SAFETY: the pointee is immutable machine code owned by the `Jit`; the
// pointer is only handed out, never written through.
unsafe impl Send for CodePtr {}
// SAFETY: as above; sharing an address of immutable code is harmless.
unsafe impl Sync for CodePtr {}

/// A value only reachable through `&mut` (like `std::sync::Exclusive`), so
/// sharing `&OnlyMut<T>` between threads can never touch the `T`.
struct OnlyMut<T>(T);

// SAFETY: `OnlyMut` exposes no `&T`, so a shared reference gives no access
// to the inner value; only the unique owner (`&mut`) reaches it.
unsafe impl<T: Send> Sync for OnlyMut<T> {}

impl<T> OnlyMut<T> {
    fn get_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl Jit {
    /// Compiles `m` for `target`, which must be this machine's architecture
    /// with only features this machine has (see `Target::missing_on_host`).
    pub fn new(m: &kir::Module, target: &Target) -> Result<Jit, Error> {
        let missing = match Target::host() {
            Ok(host) => missing_against(target, &host),
            Err(e) => vec![e.to_string()],
        };
        if !missing.is_empty() {
            return Err(Error::NotRunnable {
                target: target.to_string(),
                missing,
            });
        }
        kir::check(m).map_err(Error::Kir)?;
        let isa = build_isa(target, Purpose::Jit)?;
        let wide = build_wide_isa(target, Purpose::Jit)?;
        let mut builder = JITBuilder::with_isa(isa, default_libcall_names());
        // Every extern is resolved here, so the JIT never has to look a
        // symbol up (and never panics on a missing one) while finalizing.
        for x in &m.externs {
            let ptr = bnnc_kir::host::resolve_symbol(&x.name)
                .ok_or_else(|| Error::UnresolvedExtern(x.name.clone()))?;
            builder.symbol(x.name.as_str(), ptr);
        }
        let mut jit = Jit {
            module: OnlyMut(Some(JITModule::new(builder))),
            functions: HashMap::new(),
        };
        // On error `jit` is dropped, which frees whatever was allocated.
        let module = jit.module.get_mut().as_mut().expect("module present");
        let decl = compile_module(module, m, Placement::Jit, false, &*wide, |_, _| {})?;
        module
            .finalize_definitions()
            .map_err(|e| Error::Module(format!("finalizing the JIT module: {e}")))?;
        let functions = m
            .functions
            .iter()
            .zip(&decl.funcs)
            .map(|(f, &id)| (f.name.clone(), CodePtr(module.get_finalized_function(id))))
            .collect();
        jit.functions = functions;
        Ok(jit)
    }

    /// The address of the function called `name` (exported or not).
    pub fn function(&self, name: &str) -> Option<*const u8> {
        self.functions.get(name).map(|p| p.0)
    }
}

impl Drop for Jit {
    fn drop(&mut self) {
        if let Some(module) = self.module.get_mut().take() {
            // SAFETY: the addresses handed out are documented to be valid
            // only while the `Jit` lives; nothing of ours runs any more.
            unsafe { module.free_memory() };
        }
    }
}

impl std::fmt::Debug for Jit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.functions.keys().collect();
        names.sort();
        f.debug_struct("Jit").field("functions", &names).finish()
    }
}

/// What `target` needs that `host` lacks (as `Target::missing_on_host`,
/// with the host as a parameter so it can be tested).
fn missing_against(target: &Target, host: &Target) -> Vec<String> {
    if host.arch != target.arch {
        return vec![format!("architecture {}", target.arch)];
    }
    target
        .features
        .difference(&host.features)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn jit_is_send_and_sync() {
        assert_send_sync::<Jit>();
    }

    #[test]
    fn missing_features_are_named() {
        let host = Target::parse("x86_64+sse41+popcnt").unwrap();
        let t = Target::parse("x86_64+popcnt+avx2+bmi2").unwrap();
        assert_eq!(missing_against(&t, &host), vec!["avx2", "bmi2"]);
        assert!(missing_against(&Target::parse("x86_64+sse41").unwrap(), &host).is_empty());
        let arm = Target::parse("aarch64").unwrap();
        assert_eq!(missing_against(&arm, &host), vec!["architecture aarch64"]);
        // The real host agrees with `Target::missing_on_host`.
        if let Ok(real) = Target::host() {
            for t in [&t, &arm, &real] {
                assert_eq!(missing_against(t, &real), t.missing_on_host());
            }
        }
    }

    #[test]
    fn a_fake_host_without_a_feature_refuses_the_jit() {
        let err = Error::NotRunnable {
            target: "x86_64+avx2".into(),
            missing: missing_against(
                &Target::parse("x86_64+avx2").unwrap(),
                &Target::parse("x86_64").unwrap(),
            ),
        };
        assert_eq!(
            err.to_string(),
            "cannot JIT for target x86_64+avx2 on this host: the host lacks avx2"
        );
    }
}
