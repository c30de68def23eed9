//! The optimizer's cost is bounded by the weights and the graph, never by a
//! declared dimension (a padding, a spatial extent, a channel count, an axis
//! length): each model here is small and valid (it loads, so `bnnc check`
//! accepts it), declares huge dimensions, and optimizes within a fixed memory
//! bound. The test binary counts every allocation and refuses any that would
//! take it past [`HARD_CAP`], so an optimizer that sizes something by a
//! declared dimension fails here quickly instead of exhausting the machine.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use bnnc::opt::optimize;
use bnnc_ir::{ElemType, Model, Op, ValueId};

/// Bytes allocated and not freed, the most there were since the last
/// [`measure`] began, and the number of allocations.
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static COUNT: AtomicUsize = AtomicUsize::new(0);

/// No allocation may take the process past this: one that would fails (and
/// the program aborts with "memory allocation failed").
const HARD_CAP: usize = 2 << 30;

/// What one optimization of these models may use at its peak, and how many
/// allocations it may make (work per element of a declared dimension shows
/// up as allocations too).
const BOUND: usize = 64 << 20;
const MAX_ALLOCS: usize = 200_000;

struct Counting;

impl Counting {
    fn grow(size: usize) -> bool {
        COUNT.fetch_add(1, Ordering::SeqCst);
        let now = CURRENT.fetch_add(size, Ordering::SeqCst) + size;
        if now > HARD_CAP {
            CURRENT.fetch_sub(size, Ordering::SeqCst);
            return false;
        }
        PEAK.fetch_max(now, Ordering::SeqCst);
        true
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counters only observe sizes (and refusing is returning null, which the
// `GlobalAlloc` contract allows).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !Counting::grow(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = System.alloc(layout);
        if p.is_null() {
            CURRENT.fetch_sub(layout.size(), Ordering::SeqCst);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        CURRENT.fetch_sub(layout.size(), Ordering::SeqCst);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = layout.size();
        if new_size > old && !Counting::grow(new_size - old) {
            return std::ptr::null_mut();
        }
        let p = System.realloc(ptr, layout, new_size);
        if p.is_null() {
            if new_size > old {
                CURRENT.fetch_sub(new_size - old, Ordering::SeqCst);
            }
        } else if new_size < old {
            CURRENT.fetch_sub(old - new_size, Ordering::SeqCst);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One measurement at a time: the tests of this file run in parallel threads
/// of one process, and share the counters.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `f` and returns its result, the most bytes it had allocated at once
/// (beyond what was allocated when it began) and how many allocations it made.
fn measure<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let base = CURRENT.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let count = COUNT.load(Ordering::SeqCst);
    let r = f();
    let peak = PEAK.load(Ordering::SeqCst).saturating_sub(base);
    (r, peak, COUNT.load(Ordering::SeqCst) - count)
}

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/corpus")
        .join(name)
}

/// Loads `text` (written as `<name>.ir` in a fresh folder, with a copy of the
/// weights file `weights` beside it under its own name): parsed, verified
/// and its weights checked, exactly as `bnnc check` loads it.
fn load(name: &str, text: &str, weights: Option<&Path>) -> Model {
    // One folder per call: tests run in parallel and may load the same name.
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "bnnc-opt-bounded-{}-{call}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    if let Some(w) = weights {
        std::fs::copy(w, dir.join(w.file_name().unwrap())).unwrap();
    }
    let path = dir.join(format!("{name}.ir"));
    std::fs::write(&path, text).unwrap();
    let m = Model::load(&path).unwrap_or_else(|e| panic!("`{name}` loads: {e}"));
    std::fs::remove_dir_all(&dir).unwrap();
    m
}

fn output(m: &Model, name: &str) -> ValueId {
    let g = &m.graph;
    *g.outputs
        .iter()
        .find(|&&v| g.node(v).name == name)
        .unwrap_or_else(|| panic!("no output `{name}`"))
}

/// Optimizes `m` within [`BOUND`] bytes and [`MAX_ALLOCS`] allocations;
/// returns the optimized model (verified by the optimizer).
fn optimize_bounded(m: &Model) -> Model {
    let (o, peak, allocs) = measure(|| optimize(m).expect("a verified model optimizes"));
    let name = &m.graph.name;
    eprintln!(
        "{name}: peak {} KiB, {allocs} allocations\n{}",
        peak >> 10,
        o.report
    );
    assert!(
        peak < BOUND,
        "optimizing `{name}` took {peak} bytes at once, more than {BOUND}"
    );
    assert!(
        allocs < MAX_ALLOCS,
        "optimizing `{name}` made {allocs} allocations, more than {MAX_ALLOCS}"
    );
    o.model
}

/// `tests/corpus/adabin.ir` with the first conv's padding set to `padding`.
fn adabin_padded(padding: &str) -> Model {
    let src = std::fs::read_to_string(corpus("adabin.ir")).unwrap();
    let old = "c1 = conv2d(a, w1b, padding=1)";
    assert!(src.contains(old));
    let text = src.replace(old, &format!("c1 = conv2d(a, w1b, padding={padding})"));
    load("adabin", &text, Some(&corpus("adabin.safetensors")))
}

/// The AdaBin rule on a conv whose padding makes its position-dependent
/// correction `[OH, OW, O]` huge (65536: 131,075 x 131,075 x 6 values, the
/// 550 GB the audit saw; 99999999999: more than `usize` holds) does not fire
/// there, and still fires on the dense layer of the same model.
#[test]
fn adabin_rule_with_huge_padding_does_not_fire() {
    for padding in ["65536", "99999999999"] {
        let m = adabin_padded(padding);
        let c1 = output(&m, "c1");
        assert!(matches!(m.graph.node(c1).op, Op::Conv2d(_)));
        let om = optimize_bounded(&m);
        let c1 = output(&om, "c1");
        assert!(
            matches!(om.graph.node(c1).op, Op::Conv2d(_)) && om.ty(c1).elem == ElemType::F32,
            "padding {padding}: `c1` stays a float conv"
        );
        let d = output(&om, "d");
        assert!(
            matches!(om.graph.node(d).op, Op::Dequantize { .. }),
            "padding {padding}: the dense layer is still rewritten"
        );
    }
}

/// With a padding whose correction fits, the rule still fires: the bound is
/// on what the rule writes, not on the padding.
#[test]
fn adabin_rule_with_moderate_padding_fires() {
    let om = optimize_bounded(&adabin_padded("20"));
    let c1 = output(&om, "c1");
    assert!(matches!(om.graph.node(c1).op, Op::Dequantize { .. }));
}

/// An argmax over an axis of 2^31 - 1 elements gives `i32[N, 2147483647]`:
/// its range is one interval for all channels (not 2^31 of them, the 51 GB
/// the audit saw), which still proves `sign(y)` is +1; the rules that need
/// one threshold per channel do not fire on 2^31 channels.
#[test]
fn argmax_over_a_long_axis() {
    let m = load(
        "argmax",
        "model argmax\n\
         input x: f32[N, 4, 2147483647]\n\
         y = argmax(x, axis=1)\n\
         s = sign(y)\n\
         one = [1]: i32[1]\n\
         z = sub(y, one)\n\
         t = sign(z)\n\
         two = [2.5]: f32[1]\n\
         f = mul(z, two)\n\
         u = sign(f)\n\
         output y, s, t, u\n",
        None,
    );
    let om = optimize_bounded(&m);
    let s = output(&om, "s");
    assert!(
        matches!(om.graph.node(s).op, Op::Fill { .. }),
        "sign of an index is +1"
    );
}

/// Constant folding of a conv over constants whose padding makes the result
/// 200,001 x 200,001: the analysis does not compute that constant (lowering
/// folds it, as at -O0), and the small constant beside it is still folded.
#[test]
fn constant_conv_with_huge_padding_is_not_folded() {
    let m = load(
        "constconv",
        "model constconv\n\
         input x: f32[N, 2]\n\
         k = [1.5]: f32[1, 1, 1, 1]\n\
         w = [-1]: f32[1, 1, 1, 1]\n\
         big = conv2d(k, w, padding=100000)\n\
         ws = sign(w)\n\
         small = conv2d(k, ws)\n\
         y = relu(x)\n\
         output y, big, small\n",
        None,
    );
    let om = optimize_bounded(&m);
    let big = output(&om, "big");
    assert!(matches!(om.graph.node(big).op, Op::Conv2d(_)));
    let small = output(&om, "small");
    assert!(om.constant(small).is_some(), "the 1x1 conv is folded");
}

/// Per-channel ranges through data movement with 400,000,000 channels (a
/// replicate of a 4-channel binary dot, concatenated, shuffled and
/// reshaped): the ranges stay periodic, or become one hull, never a list per
/// channel; the threshold rules do not fire on that many channels.
#[test]
fn movement_over_huge_channel_counts() {
    let m = load(
        "movement",
        "model movement\n\
         input x: b1[N, 8]\n\
         w = [1, -1, 1, 1, -1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, 1, 1, 1, 1, 1, -1, 1, -1, 1, -1, 1, -1]: b1[4, 8]\n\
         d = dense(x, w)\n\
         r = replicate(d, times=100000000)\n\
         c = concat(d, r)\n\
         h = channel_shuffle(r, groups=2)\n\
         k = [3]: i32[1]\n\
         a = add(h, k)\n\
         s = sign(a)\n\
         sc = sign(c)\n\
         f = reshape(r, shape=[N, 200000000, 2])\n\
         sf = sign(f)\n\
         output s, sc, sf\n",
        None,
    );
    optimize_bounded(&m);
}

/// Thresholds over a concat, a shuffle and a replicate of values with 2^30
/// channels each, with one shared threshold row: moving them across the
/// movement needs no per-channel list.
#[test]
fn thresholds_across_movement_of_huge_channel_counts() {
    let m = load(
        "thmove",
        "model thmove\n\
         input a: i32[N, 1073741824]\n\
         input b: i32[N, 1073741824]\n\
         c = concat(a, b)\n\
         t = [0]: i32[1, 1]\n\
         y = threshold(c, t)\n\
         h = channel_shuffle(a, groups=2)\n\
         z = threshold(h, t)\n\
         r = replicate(b, times=3)\n\
         q = threshold(r, t)\n\
         output y, z, q\n",
        None,
    );
    let om = optimize_bounded(&m);
    let y = output(&om, "y");
    assert!(
        matches!(om.graph.node(y).op, Op::Concat { .. }),
        "the threshold moved into the concat"
    );
}

/// A binary dense whose weight is a model input of 4 x 2^30 (not a
/// constant): its range is bounded without visiting every weight.
#[test]
fn dense_over_a_non_constant_weight() {
    let m = load(
        "densein",
        "model densein\n\
         input x: b1[N, 1073741824]\n\
         input w: b1[4, 1073741824]\n\
         d = dense(x, w)\n\
         one = [1]: i32[1]\n\
         e = add(d, one)\n\
         s = sign(e)\n\
         output s\n",
        None,
    );
    optimize_bounded(&m);
}
