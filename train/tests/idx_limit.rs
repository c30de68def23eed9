//! IDX loading reads no more than the header and the limit need: memory is
//! measured by a counting global allocator (bytes, never time).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use bnnc_train::data::{load_idx_dir, load_idx_dir_limit, DataError, Split};
use flate2::write::GzEncoder;
use flate2::Compression;

/// The system allocator, counting the bytes in use and their peak.
struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = IN_USE.fetch_add(by, Ordering::SeqCst) + by;
    PEAK.fetch_max(now, Ordering::SeqCst);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
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
                grew(new_size - layout.size());
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

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bnnc-idx-limit-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn header(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_be_bytes()).collect()
}

/// Gzip of `header` followed by `zeros` zero bytes, compressed as it streams.
fn gz_with_zeros(header: &[u8], zeros: usize) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::best());
    e.write_all(header).unwrap();
    let block = vec![0u8; 1 << 16];
    let mut left = zeros;
    while left > 0 {
        let k = left.min(block.len());
        e.write_all(&block[..k]).unwrap();
        left -= k;
    }
    e.finish().unwrap()
}

/// A test split of `n` zero images of 28x28 and `n` zero labels, gzipped.
fn write_zero_split(dir: &Path, n: u32) {
    std::fs::write(
        dir.join("t10k-images-idx3-ubyte.gz"),
        gz_with_zeros(&header(&[0x803, n, 28, 28]), n as usize * 784),
    )
    .unwrap();
    std::fs::write(
        dir.join("t10k-labels-idx1-ubyte.gz"),
        gz_with_zeros(&header(&[0x801, n]), n as usize),
    )
    .unwrap();
}

#[test]
fn a_limit_reads_only_the_items_it_keeps() {
    let _serial = SERIAL.lock().unwrap();
    let dir = temp_dir("bomb");
    // 40,000 images: 31 MB of pixels from a gzip file of some 30 kB.
    write_zero_split(&dir, 40_000);
    let (d, peak) = peak_of(|| load_idx_dir_limit(&dir, Split::Test, Some(10)).unwrap());
    assert_eq!((d.n, d.images.len(), d.labels.len()), (10, 7840, 10));
    assert!(
        peak < 1 << 20,
        "loading 10 images held {peak} bytes at once"
    );
    // Without a limit, the payload is read into one buffer of its size.
    let (d, peak) = peak_of(|| load_idx_dir(&dir, Split::Test).unwrap());
    assert_eq!(d.n, 40_000);
    assert!(peak < 40_000 * 785 + (1 << 20), "{peak}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_limit_does_not_read_a_broken_rest() {
    let _serial = SERIAL.lock().unwrap();
    let dir = temp_dir("rest");
    write_zero_split(&dir, 1000);
    // Cut the image file inside its deflate stream, well past image 10.
    let path = dir.join("t10k-images-idx3-ubyte.gz");
    let full = std::fs::read(&path).unwrap();
    std::fs::write(&path, &full[..full.len() - 9]).unwrap();
    let d = load_idx_dir_limit(&dir, Split::Test, Some(10)).unwrap();
    assert_eq!(d.n, 10);
    let e = load_idx_dir(&dir, Split::Test).unwrap_err();
    assert!(matches!(e, DataError::Gzip { .. }), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_header_claiming_more_than_the_file_holds_is_refused_before_allocating() {
    let _serial = SERIAL.lock().unwrap();
    let dir = temp_dir("claims");
    write_zero_split(&dir, 10);
    // Gzip: 4 billion images of 28x28 (3.4 TB) in a few hundred bytes.
    let path = dir.join("t10k-images-idx3-ubyte.gz");
    std::fs::write(
        &path,
        gz_with_zeros(&header(&[0x803, u32::MAX, 28, 28]), 7840),
    )
    .unwrap();
    let (e, peak) = peak_of(|| load_idx_dir(&dir, Split::Test).unwrap_err());
    let DataError::BadHeader { path: p, message } = &e else {
        panic!("{e}");
    };
    assert_eq!(p, &path);
    assert!(message.contains("more than the"), "{message}");
    assert!(peak < 1 << 20, "{peak}");
    // The same header, uncompressed: the file's size shows the payload short.
    std::fs::remove_file(&path).unwrap();
    let mut raw = header(&[0x803, u32::MAX, 28, 28]);
    raw.extend(vec![0u8; 7840]);
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), raw).unwrap();
    let (e, peak) = peak_of(|| load_idx_dir_limit(&dir, Split::Test, Some(10)).unwrap_err());
    assert!(
        matches!(e, DataError::PayloadSize { found: 7840, .. }),
        "{e}"
    );
    assert!(peak < 1 << 20, "{peak}");
    let _ = std::fs::remove_dir_all(&dir);
}
