//! IDX loading: the repo's MNIST files, and every way a file can be wrong.

use std::io::Write;
use std::path::{Path, PathBuf};

use bnnc_ir::TensorData;
use bnnc_train::data::{epoch_order, load_idx_dir, DataError, Split};
use flate2::write::GzEncoder;
use flate2::Compression;

fn mnist_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist")
}

/// A fresh empty directory under the system temp dir, unique per test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bnnc-data-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn images_file(n: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for w in [0x803, n, rows, cols] {
        b.extend_from_slice(&u32::to_be_bytes(w));
    }
    b.extend_from_slice(pixels);
    b
}

fn labels_file(labels: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for w in [0x801, labels.len() as u32] {
        b.extend_from_slice(&u32::to_be_bytes(w));
    }
    b.extend_from_slice(labels);
    b
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A valid 3-item 2x3 test split, uncompressed.
fn write_valid(dir: &Path) {
    let pixels: Vec<u8> = (0..18).collect();
    std::fs::write(
        dir.join("t10k-images-idx3-ubyte"),
        images_file(3, 2, 3, &pixels),
    )
    .unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), labels_file(&[4, 0, 9])).unwrap();
}

#[test]
fn mnist_train_counts_histogram_and_pixels() {
    let d = load_idx_dir(&mnist_dir(), Split::Train).unwrap();
    assert_eq!((d.n, d.rows, d.cols, d.classes), (60000, 28, 28, 10));
    assert_eq!(d.images.len(), 60000 * 784);
    let mut hist = [0usize; 10];
    for &l in &d.labels {
        hist[l as usize] += 1;
    }
    // From data/mnist/README.md.
    assert_eq!(
        hist,
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    assert_eq!(d.labels[..10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    // The first image (a 5): blank until pixel 152 (row 5, col 12).
    assert!(d.images[..152].iter().all(|&p| p == 0));
    assert_eq!(
        d.images[152..164],
        [3, 18, 18, 18, 126, 136, 175, 26, 166, 255, 247, 127]
    );
    let sum: u64 = d.images[..784].iter().map(|&p| u64::from(p)).sum();
    assert_eq!(sum, 27525);

    let t = d.batch(&[0, 59999], &[2, 28, 28, 1]).unwrap();
    assert_eq!(t.dims, vec![2, 28, 28, 1]);
    let TensorData::F32(v) = &t.data else {
        panic!("batch is not f32")
    };
    assert_eq!(v[152], 3.0 / 255.0);
    assert_eq!(v[161], 1.0);
    assert!(v.iter().all(|&x| (0.0..=1.0).contains(&x)));
    let last: f64 = v[784..].iter().map(|&x| f64::from(x) * 255.0).sum();
    assert!((last - 20920.0).abs() < 1e-2, "{last}");
    assert_eq!(d.labels_of(&[0, 1, 2]).unwrap(), vec![5, 0, 4]);
}

#[test]
fn mnist_test_split() {
    let d = load_idx_dir(&mnist_dir(), Split::Test).unwrap();
    assert_eq!((d.n, d.rows, d.cols, d.classes), (10000, 28, 28, 10));
    assert_eq!(d.labels[..10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
    assert!(d.images[..202].iter().all(|&p| p == 0));
    assert_eq!(d.images[202..208], [84, 185, 159, 151, 60, 36]);
    let s = d.subset(100);
    assert_eq!((s.n, s.images.len(), s.labels.len()), (100, 78400, 100));
    assert_eq!(s.labels[..], d.labels[..100]);
}

#[test]
fn uncompressed_and_gzip_files_give_the_same_dataset() {
    let plain = temp_dir("plain");
    write_valid(&plain);
    let a = load_idx_dir(&plain, Split::Test).unwrap();
    assert_eq!((a.n, a.rows, a.cols), (3, 2, 3));
    assert_eq!(a.labels, vec![4, 0, 9]);
    assert_eq!(a.images, (0..18).collect::<Vec<u8>>());

    let zipped = temp_dir("zipped");
    let pixels: Vec<u8> = (0..18).collect();
    std::fs::write(
        zipped.join("t10k-images-idx3-ubyte.gz"),
        gz(&images_file(3, 2, 3, &pixels)),
    )
    .unwrap();
    std::fs::write(
        zipped.join("t10k-labels-idx1-ubyte.gz"),
        gz(&labels_file(&[4, 0, 9])),
    )
    .unwrap();
    assert_eq!(load_idx_dir(&zipped, Split::Test).unwrap(), a);
    // The train split of the same directory is missing.
    let e = load_idx_dir(&zipped, Split::Train).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::Missing {
                split: Split::Train,
                what: "images",
                ..
            }
        ),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&plain);
    let _ = std::fs::remove_dir_all(&zipped);
}

#[test]
fn wrong_magic_is_reported_with_the_path() {
    let dir = temp_dir("magic");
    write_valid(&dir);
    // A label file where the image file should be.
    let path = dir.join("t10k-images-idx3-ubyte");
    std::fs::write(&path, labels_file(&[1, 2, 3])).unwrap();
    let e = load_idx_dir(&dir, Split::Test).unwrap_err();
    match &e {
        DataError::BadMagic {
            path: p,
            expected,
            found,
            ..
        } => {
            assert_eq!(p, &path);
            assert_eq!((*expected, *found), (0x803, 0x801));
        }
        other => panic!("expected BadMagic, got {other}"),
    }
    assert!(e.to_string().contains("t10k-images-idx3-ubyte"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn truncated_header_and_payload_and_trailing_bytes() {
    let dir = temp_dir("trunc");
    write_valid(&dir);
    let path = dir.join("t10k-images-idx3-ubyte");
    let full = images_file(3, 2, 3, &(0..18).collect::<Vec<u8>>());

    std::fs::write(&path, &full[..10]).unwrap();
    let e = load_idx_dir(&dir, Split::Test).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::TruncatedHeader {
                expected: 16,
                found: 10,
                ..
            }
        ),
        "{e}"
    );

    std::fs::write(&path, &full[..full.len() - 1]).unwrap();
    let e = load_idx_dir(&dir, Split::Test).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::PayloadSize {
                expected: 18,
                found: 17,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("truncated"), "{e}");

    let mut long = full.clone();
    long.push(0);
    std::fs::write(&path, &long).unwrap();
    let e = load_idx_dir(&dir, Split::Test).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::PayloadSize {
                expected: 18,
                found: 19,
                ..
            }
        ),
        "{e}"
    );

    // Zero-sized images.
    std::fs::write(&path, images_file(3, 0, 3, &[])).unwrap();
    let e = load_idx_dir(&dir, Split::Test).unwrap_err();
    assert!(matches!(e, DataError::BadHeader { .. }), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn corrupt_and_truncated_gzip() {
    let dir = temp_dir("gz");
    write_valid(&dir);
    std::fs::remove_file(dir.join("t10k-labels-idx1-ubyte")).unwrap();
    let path = dir.join("t10k-labels-idx1-ubyte.gz");
    let good = gz(&labels_file(&[4, 0, 9]));

    // Cut inside the deflate stream.
    std::fs::write(&path, &good[..good.len() - 9]).unwrap();
    let e = load_idx_dir(&dir, Split::Test).unwrap_err();
    assert!(
        matches!(&e, DataError::Gzip { path: p, .. } if p == &path),
        "{e}"
    );

    // Flipped bytes in the CRC trailer.
    let mut bad = good.clone();
    let k = bad.len() - 6;
    bad[k] ^= 0xff;
    std::fs::write(&path, &bad).unwrap();
    let e = load_idx_dir(&dir, Split::Test).unwrap_err();
    assert!(matches!(e, DataError::Gzip { .. }), "{e}");

    // Not gzip at all.
    std::fs::write(&path, labels_file(&[4, 0, 9])).unwrap();
    let e = load_idx_dir(&dir, Split::Test).unwrap_err();
    assert!(matches!(e, DataError::Gzip { .. }), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn count_mismatch_and_label_range() {
    let dir = temp_dir("labels");
    write_valid(&dir);
    let path = dir.join("t10k-labels-idx1-ubyte");
    std::fs::write(&path, labels_file(&[1, 2])).unwrap();
    let e = load_idx_dir(&dir, Split::Test).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::CountMismatch {
                n_images: 3,
                n_labels: 2,
                ..
            }
        ),
        "{e}"
    );

    std::fs::write(&path, labels_file(&[1, 10, 2])).unwrap();
    let e = load_idx_dir(&dir, Split::Test).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::LabelOutOfRange {
                index: 1,
                label: 10,
                classes: 10,
                ..
            }
        ),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn epoch_order_is_a_deterministic_permutation_per_epoch() {
    let n = 1000;
    let a = epoch_order(n, 42, 0);
    let mut sorted = a.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..n).collect::<Vec<_>>());
    assert_eq!(a, epoch_order(n, 42, 0));
    let b = epoch_order(n, 42, 1);
    assert_ne!(a, b);
    assert_ne!(a, epoch_order(n, 43, 0));
    assert_ne!(a, (0..n).collect::<Vec<_>>());
    let mut sb = b.clone();
    sb.sort_unstable();
    assert_eq!(sb, sorted);
    assert!(epoch_order(0, 1, 0).is_empty());
    assert_eq!(epoch_order(1, 1, 5), vec![0]);
    // A shuffle moves most items: fixed points of a random permutation average 1.
    let fixed = a.iter().enumerate().filter(|(i, &x)| *i == x).count();
    assert!(fixed < 10, "{fixed} fixed points");
}
