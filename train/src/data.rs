//! Datasets in the IDX format (MNIST, Fashion-MNIST).
//!
//! The IDX format (LeCun et al., "The MNIST database of handwritten digits";
//! summarised in `data/mnist/README.md`) stores, big-endian:
//!
//! - image files: magic `0x00000803` (2051: unsigned bytes, 3 dims), item count,
//!   rows, columns, then `count * rows * cols` pixel bytes, row-major per image;
//! - label files: magic `0x00000801` (2049: unsigned bytes, 1 dim), item count,
//!   then `count` label bytes.
//!
//! [`load_idx_dir`] reads the standard file names of MNIST and Fashion-MNIST
//! (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
//! `t10k-labels-idx1-ubyte`), each either uncompressed or gzip-compressed with a
//! `.gz` suffix, and checks everything the header promises: magics, that the
//! payload is exactly as long as the header says (no truncation, no trailing
//! bytes), that image and label counts agree, and that every label is a class
//! index below [`IDX_CLASSES`]. Any violation is a [`DataError`] naming the file.
//!
//! Memory is bounded by what the header says and the file can hold: before
//! anything is allocated, an uncompressed payload must be exactly as long as
//! the file's remaining bytes, and a gzip payload no longer than
//! [`GZIP_MAX_RATIO`] times the compressed file (deflate cannot expand more);
//! the payload is then read into one buffer of exactly its size, allocated
//! fallibly. [`load_idx_dir_limit`] reads only the first items: it decompresses
//! nothing past them (so the rest of a gzip file is not checked).
//!
//! [`Dataset::batch`] turns a list of item indices into an `f32` [`Tensor`] of
//! pixels scaled to `[0, 1]`; [`epoch_order`] gives the reproducible shuffle of
//! each epoch.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use bnnc_ir::Tensor;
use flate2::read::MultiGzDecoder;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Magic number of an IDX file of unsigned bytes with 3 dimensions (images).
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with 1 dimension (labels).
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;
/// Number of classes of the IDX datasets read here (MNIST digits 0-9, the ten
/// Fashion-MNIST garment classes): every label must be below this.
pub const IDX_CLASSES: usize = 10;

/// The largest factor by which a gzip (deflate) stream expands: a payload a
/// header claims beyond this many times the compressed file size is refused.
pub const GZIP_MAX_RATIO: u64 = 1032;

/// Which half of a dataset to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// The training files (`train-*`).
    Train,
    /// The test files (`t10k-*`).
    Test,
}

impl Split {
    fn prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Test => "test",
        })
    }
}

/// Why a dataset could not be loaded or a batch could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// None of the accepted file names exists in the directory.
    #[error("{dir}: no {what} file for the {split} split (tried {tried})")]
    Missing {
        dir: PathBuf,
        split: Split,
        what: &'static str,
        tried: String,
    },
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The gzip stream is corrupt (bad header, bad deflate data or checksum).
    #[error("{path}: corrupt gzip data: {source}")]
    Gzip {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file ends inside its header.
    #[error("{path}: truncated IDX header: {found} of {expected} bytes")]
    TruncatedHeader {
        path: PathBuf,
        expected: usize,
        found: usize,
    },
    /// The magic number is not the one of the expected kind of file.
    #[error("{path}: bad magic 0x{found:08x}, expected 0x{expected:08x} ({kind} file)")]
    BadMagic {
        path: PathBuf,
        kind: &'static str,
        expected: u32,
        found: u32,
    },
    /// The header describes an impossible shape (a zero or overflowing size).
    #[error("{path}: bad IDX header: {message}")]
    BadHeader { path: PathBuf, message: String },
    /// The payload is shorter than the header says (`found < expected`) or has
    /// trailing bytes (`found > expected`; `found` then counts at most one extra).
    #[error("{path}: payload is {found} bytes, header says {expected}{}", if found < expected { " (truncated)" } else { " (trailing bytes)" })]
    PayloadSize {
        path: PathBuf,
        expected: usize,
        found: usize,
    },
    /// The image and label files hold different numbers of items.
    #[error("{images} holds {n_images} images but {labels} holds {n_labels} labels")]
    CountMismatch {
        images: PathBuf,
        n_images: usize,
        labels: PathBuf,
        n_labels: usize,
    },
    /// A label is not a class index.
    #[error("{path}: label {index} is {label}, not below {classes}")]
    LabelOutOfRange {
        path: PathBuf,
        index: usize,
        label: u8,
        classes: usize,
    },
    /// The payload's buffer could not be allocated.
    #[error("{path}: cannot allocate {} for the payload", bnnc_runtime::mem::human_bytes(*bytes as u64))]
    Memory { path: PathBuf, bytes: usize },
    /// A batch's pixels could not be allocated (`bytes` is `usize::MAX` when
    /// their count overflows).
    #[error("cannot allocate {} for a batch of {batch} images", bnnc_runtime::mem::human_bytes(*bytes as u64))]
    BatchMemory { batch: usize, bytes: usize },
    /// A batch index is not an item of the dataset.
    #[error("batch index {index} out of range for a dataset of {n} items")]
    IndexOutOfRange { index: usize, n: usize },
    /// The requested batch dims do not fit the batch and the image size.
    #[error("batch dims {dims:?} do not fit {batch} images of {rows}x{cols}: {why}")]
    BatchDims {
        dims: Vec<usize>,
        batch: usize,
        rows: usize,
        cols: usize,
        why: &'static str,
    },
}

/// An in-memory labelled image dataset of unsigned-byte pixels.
///
/// Invariants (established by [`load_idx_dir`] and kept by [`Dataset::subset`]):
/// `images.len() == n * rows * cols`, `labels.len() == n`, every label `< classes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dataset {
    /// Pixels, `n * rows * cols` bytes, image after image, each row-major.
    pub images: Vec<u8>,
    /// One class index per image.
    pub labels: Vec<u8>,
    /// Number of items.
    pub n: usize,
    /// Image height.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
    /// Number of classes (labels are `0..classes`).
    pub classes: usize,
}

/// Loads the `split` half of an IDX dataset from `dir`.
///
/// For the image file the names `{p}-images-idx3-ubyte`, `{p}-images.idx3-ubyte`
/// and each with `.gz` are tried in that order (`{p}` is `train` or `t10k`); the
/// label file likewise (`idx1`). A `.gz` file is decompressed (multi-member gzip
/// accepted). Errors: [`DataError::Missing`] if no candidate exists, and
/// otherwise every check listed in the module doc, each naming the offending file.
/// `classes` of the result is [`IDX_CLASSES`].
pub fn load_idx_dir(dir: &Path, split: Split) -> Result<Dataset, DataError> {
    load_idx_dir_limit(dir, split, None)
}

/// [`load_idx_dir`], keeping only the first `limit` items (all with `None`):
/// only their bytes are read and decompressed. The headers, the image and
/// label counts and the kept labels are checked as by [`load_idx_dir`]; the
/// length of an uncompressed payload is checked against the file size, but
/// the unread rest of a gzip file is not checked.
pub fn load_idx_dir_limit(
    dir: &Path,
    split: Split,
    limit: Option<usize>,
) -> Result<Dataset, DataError> {
    let images_path = find_file(dir, split, "images", "idx3")?;
    let labels_path = find_file(dir, split, "labels", "idx1")?;
    let (n_images, rows, cols, images) = read_images(&images_path, limit)?;
    let (n_labels, labels) = read_labels(&labels_path, limit)?;
    if n_labels != n_images {
        return Err(DataError::CountMismatch {
            images: images_path,
            n_images,
            labels: labels_path,
            n_labels,
        });
    }
    let n_images = labels.len();
    if let Some((index, &label)) = labels
        .iter()
        .enumerate()
        .find(|(_, &l)| usize::from(l) >= IDX_CLASSES)
    {
        return Err(DataError::LabelOutOfRange {
            path: labels_path,
            index,
            label,
            classes: IDX_CLASSES,
        });
    }
    Ok(Dataset {
        images,
        labels,
        n: n_images,
        rows,
        cols,
        classes: IDX_CLASSES,
    })
}

/// The first existing file among the accepted names of one IDX file.
fn find_file(
    dir: &Path,
    split: Split,
    what: &'static str,
    idx: &str,
) -> Result<PathBuf, DataError> {
    let p = split.prefix();
    let stems = [
        format!("{p}-{what}-{idx}-ubyte"),
        format!("{p}-{what}.{idx}-ubyte"),
    ];
    let names: Vec<String> = stems
        .iter()
        .flat_map(|s| [s.clone(), format!("{s}.gz")])
        .collect();
    for name in &names {
        let path = dir.join(name);
        if path.is_file() {
            return Ok(path);
        }
    }
    Err(DataError::Missing {
        dir: dir.to_path_buf(),
        split,
        what,
        tried: names.join(", "),
    })
}

/// A reader over the decompressed bytes of `path` (gunzipped iff the name ends
/// in `.gz`), which maps read errors to [`DataError::Io`] or [`DataError::Gzip`].
struct IdxReader {
    path: PathBuf,
    gz: bool,
    /// The size of the file on disk.
    file_len: u64,
    /// Decompressed bytes read so far.
    read: u64,
    inner: Box<dyn Read>,
}

impl IdxReader {
    fn open(path: &Path) -> Result<IdxReader, DataError> {
        let file = File::open(path).map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let gz = path.extension().is_some_and(|e| e == "gz");
        let file_len = file
            .metadata()
            .map_err(|source| DataError::Io {
                path: path.to_path_buf(),
                source,
            })?
            .len();
        let buf = BufReader::new(file);
        let inner: Box<dyn Read> = if gz {
            Box::new(MultiGzDecoder::new(buf))
        } else {
            Box::new(buf)
        };
        Ok(IdxReader {
            path: path.to_path_buf(),
            gz,
            file_len,
            read: 0,
            inner,
        })
    }

    fn error(&self, source: std::io::Error) -> DataError {
        // flate2 reports corrupt streams as InvalidInput/InvalidData and a stream
        // cut short as UnexpectedEof; all of these mean the gzip data is bad.
        if self.gz && source.kind() != std::io::ErrorKind::PermissionDenied {
            DataError::Gzip {
                path: self.path.clone(),
                source,
            }
        } else {
            DataError::Io {
                path: self.path.clone(),
                source,
            }
        }
    }

    /// Reads up to `limit` bytes (fewer only at end of stream), `limit` small.
    fn read_up_to(&mut self, limit: usize) -> Result<Vec<u8>, DataError> {
        let mut out = vec![0; limit];
        let n = self.fill(&mut out)?;
        out.truncate(n);
        Ok(out)
    }

    /// Fills `buf` from the stream; the bytes read (fewer than `buf.len()` only
    /// at end of stream).
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, DataError> {
        let mut n = 0;
        while n < buf.len() {
            match self.inner.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.error(e)),
            }
        }
        self.read += n as u64;
        Ok(n)
    }

    /// Reads the header of `words` big-endian u32s, checking the magic (the first
    /// word) before reading the rest, so a short file of the wrong kind is reported
    /// as [`DataError::BadMagic`].
    fn header(
        &mut self,
        words: usize,
        magic: u32,
        kind: &'static str,
    ) -> Result<Vec<u32>, DataError> {
        let mut bytes = self.read_up_to(4)?;
        if bytes.len() == 4 {
            let found = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            if found != magic {
                return Err(DataError::BadMagic {
                    path: self.path.clone(),
                    kind,
                    expected: magic,
                    found,
                });
            }
            bytes.extend(self.read_up_to(4 * (words - 1))?);
        }
        if bytes.len() < 4 * words {
            return Err(DataError::TruncatedHeader {
                path: self.path.clone(),
                expected: 4 * words,
                found: bytes.len(),
            });
        }
        Ok(bytes
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// Reads the first `keep` bytes of a payload of `len` bytes (`keep <= len`)
    /// after checking that the file can hold `len` (see the module doc), into
    /// a buffer of exactly `keep` bytes; when `keep == len`, also checks that
    /// nothing follows.
    fn payload(&mut self, len: usize, keep: usize) -> Result<Vec<u8>, DataError> {
        let path = self.path.clone();
        let size = |found: u64| DataError::PayloadSize {
            path: path.clone(),
            expected: len,
            found: usize::try_from(found).unwrap_or(usize::MAX),
        };
        if self.gz {
            if len as u64 > self.file_len.saturating_mul(GZIP_MAX_RATIO) {
                return Err(DataError::BadHeader {
                    path: self.path.clone(),
                    message: format!(
                        "the header promises {len} bytes of data, more than the {} bytes of \
                         this gzip file can hold ({GZIP_MAX_RATIO} times its size)",
                        self.file_len
                    ),
                });
            }
        } else {
            let left = self.file_len.saturating_sub(self.read);
            if left != len as u64 {
                // As a full read would count: at most one trailing byte.
                return Err(size(left.min(len as u64 + 1)));
            }
        }
        let mut data = Vec::new();
        data.try_reserve_exact(keep)
            .map_err(|_| DataError::Memory {
                path: self.path.clone(),
                bytes: keep,
            })?;
        data.resize(keep, 0);
        let n = self.fill(&mut data)?;
        if n < keep {
            return Err(size(n as u64));
        }
        if keep == len && self.fill(&mut [0u8])? != 0 {
            return Err(size(len as u64 + 1));
        }
        Ok(data)
    }
}

/// Reads an IDX image file: `(count, rows, cols, pixels)`, the pixels of the
/// first `limit` images only (all with `None`); `count` is the header's.
fn read_images(
    path: &Path,
    limit: Option<usize>,
) -> Result<(usize, usize, usize, Vec<u8>), DataError> {
    let mut r = IdxReader::open(path)?;
    let h = r.header(4, IDX_IMAGES_MAGIC, "image")?;
    let (n, rows, cols) = (h[1] as usize, h[2] as usize, h[3] as usize);
    if rows == 0 || cols == 0 {
        return Err(DataError::BadHeader {
            path: path.to_path_buf(),
            message: format!("image size {rows}x{cols}"),
        });
    }
    let len = n
        .checked_mul(rows)
        .and_then(|x| x.checked_mul(cols))
        .ok_or_else(|| DataError::BadHeader {
            path: path.to_path_buf(),
            message: format!("{n} images of {rows}x{cols} overflow the address space"),
        })?;
    let keep = n.min(limit.unwrap_or(usize::MAX)) * rows * cols;
    let pixels = r.payload(len, keep)?;
    Ok((n, rows, cols, pixels))
}

/// Reads an IDX label file: `(count, labels)`, the labels of the first `limit`
/// items only (all with `None`); `count` is the header's.
fn read_labels(path: &Path, limit: Option<usize>) -> Result<(usize, Vec<u8>), DataError> {
    let mut r = IdxReader::open(path)?;
    let h = r.header(2, IDX_LABELS_MAGIC, "label")?;
    let n = h[1] as usize;
    let labels = r.payload(n, n.min(limit.unwrap_or(usize::MAX)))?;
    Ok((n, labels))
}

impl Dataset {
    /// Pixels of the items `idx` (in that order) as an `f32` tensor of shape `dims`,
    /// each byte `p` becoming `p / 255` in `[0, 1]`.
    ///
    /// `dims[0]` is the batch and must equal `idx.len()`; the product of the other
    /// dims must be `rows * cols` (e.g. `[B, 784]`, `[B, 28, 28, 1]`, `[B, 1, 28, 28]`:
    /// the bytes are laid out image-major, row-major, whatever the dims).
    /// Errors: [`DataError::BatchDims`] for dims that do not fit,
    /// [`DataError::IndexOutOfRange`] for an index `>= n`,
    /// [`DataError::BatchMemory`] when the tensor cannot be allocated.
    pub fn batch(&self, idx: &[usize], dims: &[usize]) -> Result<Tensor, DataError> {
        let image = self.rows * self.cols;
        let bad = |why| DataError::BatchDims {
            dims: dims.to_vec(),
            batch: idx.len(),
            rows: self.rows,
            cols: self.cols,
            why,
        };
        let Some((&b, rest)) = dims.split_first() else {
            return Err(bad("no batch dimension"));
        };
        if b != idx.len() {
            return Err(bad("the first dim is not the number of indices"));
        }
        let per_item = rest.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if per_item != Some(image) {
            return Err(bad("the non-batch dims do not multiply to rows*cols"));
        }
        let no_memory = |bytes| DataError::BatchMemory {
            batch: idx.len(),
            bytes,
        };
        let n = idx
            .len()
            .checked_mul(image)
            .ok_or_else(|| no_memory(usize::MAX))?;
        let mut data = Vec::new();
        data.try_reserve_exact(n)
            .map_err(|_| no_memory(n.saturating_mul(4)))?;
        for &i in idx {
            if i >= self.n {
                return Err(DataError::IndexOutOfRange {
                    index: i,
                    n: self.n,
                });
            }
            let src = &self.images[i * image..(i + 1) * image];
            data.extend(src.iter().map(|&p| f32::from(p) / 255.0));
        }
        Ok(Tensor::f32(dims.to_vec(), data))
    }

    /// Labels of the items `idx`, in that order.
    /// Errors: [`DataError::IndexOutOfRange`] for an index `>= n`.
    pub fn labels_of(&self, idx: &[usize]) -> Result<Vec<u8>, DataError> {
        idx.iter()
            .map(|&i| {
                self.labels
                    .get(i)
                    .copied()
                    .ok_or(DataError::IndexOutOfRange {
                        index: i,
                        n: self.n,
                    })
            })
            .collect()
    }

    /// The first `min(n, self.n)` items as a new dataset (same image size and
    /// classes).
    pub fn subset(&self, n: usize) -> Dataset {
        let n = n.min(self.n);
        let image = self.rows * self.cols;
        Dataset {
            images: self.images[..n * image].to_vec(),
            labels: self.labels[..n].to_vec(),
            n,
            rows: self.rows,
            cols: self.cols,
            classes: self.classes,
        }
    }
}

/// The order in which epoch `epoch` visits the items `0..n`: a permutation that
/// depends only on `(n, seed, epoch)`.
///
/// The generator is ChaCha8 (`rand_chacha`) keyed by `seed` (little-endian in the
/// first 8 key bytes, the rest zero) on stream `epoch`, so epochs are independent
/// streams of one key. The shuffle is an explicit Fisher-Yates whose bounded draws
/// use Lemire's multiply-and-reject method (Lemire 2019, "Fast random integer
/// generation in an interval": for bound `s`, take `m = x * s` over 128 bits
/// and reject when the low 64 bits are below `2^64 mod s`), so the order does not
/// change with the version of `rand`'s own shuffling helpers.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let mut rng = ChaCha8Rng::from_seed(key);
    rng.set_stream(epoch as u64);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = bounded(&mut rng, i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

/// A uniform draw from `0..s` (`s >= 1`) by Lemire's method.
fn bounded(rng: &mut ChaCha8Rng, s: u64) -> u64 {
    let threshold = s.wrapping_neg() % s; // 2^64 mod s
    loop {
        let m = u128::from(rng.next_u64()) * u128::from(s);
        if (m as u64) >= threshold {
            return (m >> 64) as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_stays_in_range_and_hits_every_value() {
        let mut rng = ChaCha8Rng::from_seed([7; 32]);
        let mut seen = [0usize; 5];
        for _ in 0..1000 {
            let x = bounded(&mut rng, 5);
            seen[x as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 150), "{seen:?}");
        assert_eq!(bounded(&mut rng, 1), 0);
    }

    #[test]
    fn batch_and_labels_from_a_small_dataset() {
        let d = Dataset {
            images: vec![0, 255, 51, 102, 1, 2, 3, 4],
            labels: vec![3, 9],
            n: 2,
            rows: 2,
            cols: 2,
            classes: 10,
        };
        let t = d.batch(&[1, 0], &[2, 4]).unwrap();
        assert_eq!(t.dims, vec![2, 4]);
        match &t.data {
            bnnc_ir::TensorData::F32(v) => {
                assert_eq!(v[4..], [0.0, 1.0, 0.2, 0.4]);
                assert_eq!(v[0], 1.0 / 255.0);
            }
            other => panic!("not f32: {other:?}"),
        }
        assert_eq!(d.labels_of(&[1, 1, 0]).unwrap(), vec![9, 9, 3]);
        assert!(matches!(
            d.batch(&[0], &[1, 3]),
            Err(DataError::BatchDims { .. })
        ));
        assert!(matches!(
            d.batch(&[0, 1], &[1, 4]),
            Err(DataError::BatchDims { .. })
        ));
        assert!(matches!(
            d.batch(&[], &[]),
            Err(DataError::BatchDims { .. })
        ));
        assert!(matches!(
            d.batch(&[2], &[1, 2, 2]),
            Err(DataError::IndexOutOfRange { index: 2, n: 2 })
        ));
        assert!(matches!(
            d.labels_of(&[5]),
            Err(DataError::IndexOutOfRange { index: 5, n: 2 })
        ));
        let s = d.subset(1);
        assert_eq!((s.n, s.images.len(), s.labels.clone()), (1, 4, vec![3]));
        assert_eq!(d.subset(10), d);
    }

    #[test]
    fn a_batch_too_large_to_allocate_is_an_error() {
        // Images of 2^62 pixels: two of them are 2^63 f32, which no allocator
        // gives (checked before any index is read).
        let d = Dataset {
            images: Vec::new(),
            labels: Vec::new(),
            n: 0,
            rows: 1 << 31,
            cols: 1 << 31,
            classes: 10,
        };
        let e = d.batch(&[0, 0], &[2, 1 << 62]).unwrap_err();
        assert!(matches!(e, DataError::BatchMemory { batch: 2, .. }), "{e}");
    }
}
