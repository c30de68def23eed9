//! Memory the interpreter and model loading take, measured by a counting
//! global allocator (bytes, never time): weights files are held once (`b1`
//! packed, f32 without a second copy), a run holds what
//! [`bnnc_runtime::memory_needed`] says and no copy of the weights, and a run
//! that needs more memory than there is fails with an error instead of
//! aborting.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use bnnc_ir::{ElemType, Model, Tensor, Weights};
use bnnc_runtime::mem::Refusal;
use bnnc_runtime::{memory_needed, run, RunError};

/// The system allocator, counting the bytes in use and their peak.
struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = IN_USE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK.fetch_max(now, Ordering::SeqCst);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            let now = IN_USE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK.fetch_max(now, Ordering::SeqCst);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        IN_USE.fetch_sub(layout.size(), Ordering::SeqCst);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded; `ptr` was allocated by `System` with `layout`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let grow = new_size - layout.size();
                let now = IN_USE.fetch_add(grow, Ordering::SeqCst) + grow;
                PEAK.fetch_max(now, Ordering::SeqCst);
            } else {
                IN_USE.fetch_sub(layout.size() - new_size, Ordering::SeqCst);
            }
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Measurements run one at a time: the counters are global.
static SERIAL: Mutex<()> = Mutex::new(());

/// The result of `f` and the most bytes it held at once beyond what was in
/// use when it started.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = IN_USE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let out = f();
    (out, PEAK.load(Ordering::SeqCst) - base)
}

/// A fresh directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bnnc-memory-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `text` (after a `model` and a `weights` line) and `weights` into
/// `dir`; the model's path.
fn write_model(dir: &Path, text: &str, weights: &Weights) -> PathBuf {
    let path = dir.join("m.ir");
    let src = format!("model m\nweights \"m.safetensors\"\n{text}");
    std::fs::write(&path, src).unwrap();
    weights.save(&dir.join("m.safetensors")).unwrap();
    path
}

/// ±1 values that are not periodic in 8 or 64.
fn signs(n: usize) -> Vec<i32> {
    (0..n)
        .map(|i| if (i * 7 + i / 13) % 5 < 2 { -1 } else { 1 })
        .collect()
}

#[test]
fn loading_holds_packed_b1_packed_and_f32_once() {
    let _serial = SERIAL.lock().unwrap();
    let dir = scratch("load");
    // 2048 x 8192 b1 is 2 MiB packed (64 MiB as one i32 per element); 1 Mi
    // f32 is 4 MiB.
    let (o, k) = (2048, 8192);
    let mut w = Weights::new();
    w.insert(
        "wb",
        Tensor::int(ElemType::B1, vec![o, k], signs(o * k)).into_packed(),
    );
    w.insert(
        "wf",
        Tensor::f32(vec![1024, 1024], (0..1 << 20).map(|i| i as f32).collect()),
    );
    let path = write_model(
        &dir,
        "input x: b1[N, 8192]\nwb = @wb: b1[2048, 8192]\ny = dense(x, wb)\n\
         input z: f32[N, 1024]\nwf = @wf: f32[1024, 1024]\nu = dense(z, wf)\noutput y, u\n",
        &w,
    );
    drop(w);
    let file = std::fs::metadata(dir.join("m.safetensors")).unwrap().len() as usize;
    let (model, peak) = peak_of(|| Model::load(&path).unwrap());
    // The file once, plus a chunk buffer and the text; two copies of either
    // tensor, or the b1 one unpacked, exceed this by megabytes.
    assert!(
        peak < file + file / 8,
        "loading a {file}-byte weights file held {peak} bytes at once"
    );
    let wb = model.consts[1].as_ref().unwrap();
    assert!(wb.as_bits().is_some(), "the b1 weight is held packed");
    assert_eq!(wb.storage_bytes(), o * k / 8);
    assert_eq!(wb.as_int().unwrap()[..], signs(o * k)[..]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_run_holds_what_memory_needed_says_and_no_copy_of_the_weights() {
    let _serial = SERIAL.lock().unwrap();
    let dir = scratch("run");
    let mut w = Weights::new();
    w.insert(
        "w",
        Tensor::f32(
            vec![1024, 1024],
            (0..1 << 20).map(|i| (i % 7) as f32).collect(),
        ),
    );
    w.insert(
        "wb",
        Tensor::int(ElemType::B1, vec![256, 1024], signs(256 * 1024)).into_packed(),
    );
    let path = write_model(
        &dir,
        "input x: f32[N, 1024]\nw = @w: f32[1024, 1024]\nd = dense(x, w)\nr = relu(d)\n\
         s = sign(r)\nwb = @wb: b1[256, 1024]\ne = dense(s, wb)\ny = add(e, e)\noutput y\n",
        &w,
    );
    let model = Model::load(&path).unwrap();
    let batch = 16;
    let x = Tensor::f32(vec![batch, 1024], vec![0.5; batch * 1024]);
    let need = memory_needed(&model, batch, false).unwrap() as usize;
    let (out, peak) = peak_of(|| run(&model, std::slice::from_ref(&x)).unwrap());
    assert_eq!(out[0].dims, [batch, 256]);
    // The 4 MiB f32 weight is read in place, never copied; the 1 MiB packed
    // b1 weight is unpacked once while its dense runs (counted by `need`).
    assert!(need < 3 << 20, "need {need}");
    assert!(peak <= need + (64 << 10), "peak {peak}, need {need}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_run_too_large_for_memory_is_an_error() {
    let _serial = SERIAL.lock().unwrap();
    // 2^50 f32 elements: more than any machine holds or addresses.
    let src = "model big\ninput x: f32[1]\ny = replicate(x, times=1125899906842624)\noutput y\n";
    let g = bnnc_ir::text::parse(src).unwrap();
    let model = Model::from_graph(g, None, Path::new("big.ir")).unwrap();
    assert_eq!(memory_needed(&model, 1, false), Some(1 << 52));
    let e = run(&model, &[Tensor::f32(vec![1], vec![1.0])]).unwrap_err();
    let RunError::OutOfMemory(e) = e else {
        panic!("{e:?}");
    };
    assert_eq!(e.bytes, Some(1 << 52));
    assert!(
        matches!(e.why, Refusal::OverBudget(_) | Refusal::AllocFailed),
        "{e:?}"
    );
    assert!(e.to_string().starts_with("batch 1 needs 4.5 PB "), "{e}");
}
