//! Addresses of the external functions kir code may call, in this process:
//! what a JIT resolves `extern` declarations of a [`kir::Module`](crate::Module)
//! against. Both JIT backends use it, so the two resolve the same symbols.

#[allow(clashing_extern_declarations)]
mod libm {
    // The single-precision libm functions kir code may import, linked into
    // this binary so their addresses are known without a dynamic lookup.
    unsafe extern "C" {
        pub fn expf(x: f32) -> f32;
        pub fn exp2f(x: f32) -> f32;
        pub fn logf(x: f32) -> f32;
        pub fn log2f(x: f32) -> f32;
        pub fn tanhf(x: f32) -> f32;
        pub fn erff(x: f32) -> f32;
        pub fn powf(x: f32, y: f32) -> f32;
        pub fn sqrtf(x: f32) -> f32;
        pub fn fabsf(x: f32) -> f32;
        pub fn floorf(x: f32) -> f32;
        pub fn ceilf(x: f32) -> f32;
        pub fn roundf(x: f32) -> f32;
        pub fn truncf(x: f32) -> f32;
        pub fn fminf(x: f32, y: f32) -> f32;
        pub fn fmaxf(x: f32, y: f32) -> f32;
    }
}

/// The address of `name` in this process: the single-precision libm functions
/// kir code may import (linked into this binary), else any symbol the dynamic
/// linker finds (e.g. a C function of the embedding program); `None` if absent.
pub fn resolve_symbol(name: &str) -> Option<*const u8> {
    type F1 = unsafe extern "C" fn(f32) -> f32;
    type F2 = unsafe extern "C" fn(f32, f32) -> f32;
    let p = match name {
        "expf" => libm::expf as F1 as *const u8,
        "exp2f" => libm::exp2f as F1 as *const u8,
        "logf" => libm::logf as F1 as *const u8,
        "log2f" => libm::log2f as F1 as *const u8,
        "tanhf" => libm::tanhf as F1 as *const u8,
        "erff" => libm::erff as F1 as *const u8,
        "powf" => libm::powf as F2 as *const u8,
        "sqrtf" => libm::sqrtf as F1 as *const u8,
        "fabsf" => libm::fabsf as F1 as *const u8,
        "floorf" => libm::floorf as F1 as *const u8,
        "ceilf" => libm::ceilf as F1 as *const u8,
        "roundf" => libm::roundf as F1 as *const u8,
        "truncf" => libm::truncf as F1 as *const u8,
        "fminf" => libm::fminf as F2 as *const u8,
        "fmaxf" => libm::fmaxf as F2 as *const u8,
        _ => return dynamic_lookup(name),
    };
    Some(p)
}

/// Any other symbol of the process (e.g. a C function of the embedding
/// program).
#[cfg(target_os = "linux")]
fn dynamic_lookup(name: &str) -> Option<*const u8> {
    use std::ffi::{c_char, c_void, CString};
    unsafe extern "C" {
        fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    }
    let name = CString::new(name).ok()?;
    // RTLD_DEFAULT is the null handle on Linux.
    // SAFETY: `name` is a valid C string; dlsym only reads it.
    let p = unsafe { dlsym(std::ptr::null_mut(), name.as_ptr()) };
    (!p.is_null()).then_some(p as *const u8)
}

#[cfg(not(target_os = "linux"))]
fn dynamic_lookup(_name: &str) -> Option<*const u8> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libm_resolves() {
        let expf = resolve_symbol("expf").unwrap();
        // SAFETY: `expf` has this signature.
        let f: extern "C" fn(f32) -> f32 = unsafe { std::mem::transmute(expf) };
        assert_eq!(f(0.0), 1.0);
        assert!(resolve_symbol("no_such_function_bnnc").is_none());
    }
}
