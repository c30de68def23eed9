//! Memory of a run: what a run may use, and allocation that reports failure
//! instead of aborting the process.
//!
//! A run (the interpreter's [`crate::run`], the JIT's buffers) first adds up
//! the bytes it will hold at once, refuses with an [`OutOfMemory`] when that
//! exceeds the [`budget`], and then allocates its large buffers with
//! [`try_vec`], [`try_collect`] or [`try_zeroed`], which fail with an
//! [`AllocError`] (carrying the size) where `vec!` would abort. Sizes are
//! computed with checked arithmetic: a count that overflows is an error, never
//! a wrapped size.

use std::fmt;

/// The environment variable that caps the memory of a run, in bytes (see
/// [`parse_size`] for the suffixes it takes).
pub const LIMIT_VAR: &str = "BNNC_MEMORY_LIMIT";

/// How much memory a run may hold, and where that number comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub bytes: u64,
    pub source: BudgetSource,
}

/// Where a [`Budget`] comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BudgetSource {
    /// The [`LIMIT_VAR`] environment variable.
    Limit,
    /// The memory the system reports available (Linux: `MemAvailable` plus
    /// free swap, and the room left under a cgroup limit, whichever is less).
    Available,
}

/// The budget of a run: [`LIMIT_VAR`] when set (an unparsable value is
/// ignored), else the memory the system reports available; `None` when
/// neither is known (then only allocation failures are reported).
pub fn budget() -> Option<Budget> {
    limit().or_else(|| {
        available().map(|bytes| Budget {
            bytes,
            source: BudgetSource::Available,
        })
    })
}

/// The budget [`LIMIT_VAR`] sets, if any.
fn limit() -> Option<Budget> {
    let bytes = std::env::var(LIMIT_VAR).ok().and_then(|v| parse_size(&v))?;
    Some(Budget {
        bytes,
        source: BudgetSource::Limit,
    })
}

/// Requests below this many bytes are checked against [`LIMIT_VAR`] only,
/// not against the system's available memory (which takes a file read to
/// learn); their allocations still fail with an error.
pub const SYSTEM_CHECK_MIN: u64 = 64 << 20;

/// Parses a byte count: a number, optionally followed by `K`, `M`, `G` or
/// `T` (powers of 1000, as messages print sizes) or `Ki`, `Mi`, `Gi` or `Ti`
/// (powers of 1024), and an optional `B`: `123`, `64K`, `1.5GB`, `2GiB`.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s.strip_suffix('B').unwrap_or(s);
    let (s, base) = match s.strip_suffix('i') {
        Some(s) => (s, 1024f64),
        None => (s, 1000f64),
    };
    let (num, power) = match s.char_indices().last()? {
        (i, 'K' | 'k') => (&s[..i], 1),
        (i, 'M') => (&s[..i], 2),
        (i, 'G') => (&s[..i], 3),
        (i, 'T') => (&s[..i], 4),
        _ if base == 1024.0 => return None,
        _ => (s, 0),
    };
    let v: f64 = num.trim().parse().ok()?;
    let bytes = v * base.powi(power);
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// The memory this process can still get from the system, where known.
#[cfg(target_os = "linux")]
fn available() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = meminfo.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        kb.checked_mul(1024)
    };
    let mut avail = field("MemAvailable:")?.saturating_add(field("SwapFree:").unwrap_or(0));
    let read = |p: &str| -> Option<u64> { std::fs::read_to_string(p).ok()?.trim().parse().ok() };
    // cgroup v2, then v1, as seen from this process's cgroup namespace.
    let limits = [
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ];
    for (max, current) in limits {
        if let (Some(max), Some(current)) = (read(max), read(current)) {
            avail = avail.min(max.saturating_sub(current));
        }
    }
    Some(avail)
}

#[cfg(not(target_os = "linux"))]
fn available() -> Option<u64> {
    None
}

/// A byte count as people read it: `512 bytes`, `1.5 kB`, `22.6 GB` (decimal
/// units, one decimal).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["kB", "MB", "GB", "TB", "PB", "EB"];
    if bytes < 1000 {
        return format!("{bytes} bytes");
    }
    let mut v = bytes as f64 / 1000.0;
    let mut unit = 0;
    while v >= 999.95 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// An allocation the system refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot allocate {}", human_bytes(*.bytes))]
pub struct AllocError {
    /// The bytes asked for (`u64::MAX` when the count overflows).
    pub bytes: u64,
}

/// A run that needs more memory than it may have, or whose allocation failed.
/// Displays as `{who} needs {size} {what}, {why}`, e.g. "batch 150000 needs
/// 22.6 GB of workspace, more than the 16.3 GB of memory available".
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{who} needs {} {what}, {why}", needed(*.bytes))]
pub struct OutOfMemory {
    /// What asks for the memory, e.g. `batch 150000`.
    pub who: String,
    /// What the memory is for, with its preposition, e.g. `of workspace`.
    pub what: String,
    /// The bytes needed; `None` when the count overflows 64 bits.
    pub bytes: Option<u64>,
    pub why: Refusal,
}

fn needed(bytes: Option<u64>) -> String {
    match bytes {
        Some(b) => human_bytes(b),
        None => "more than 2^64 bytes".to_string(),
    }
}

/// Why an [`OutOfMemory`] was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// More than the [`Budget`].
    OverBudget(Budget),
    /// The allocation itself failed.
    AllocFailed,
    /// The size overflows the address space.
    TooLarge,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::OverBudget(Budget {
                bytes,
                source: BudgetSource::Available,
            }) => write!(
                f,
                "more than the {} of memory available",
                human_bytes(*bytes)
            ),
            Refusal::OverBudget(Budget {
                bytes,
                source: BudgetSource::Limit,
            }) => write!(
                f,
                "more than the {} {LIMIT_VAR} allows",
                human_bytes(*bytes)
            ),
            Refusal::AllocFailed => f.write_str("which could not be allocated"),
            Refusal::TooLarge => f.write_str("more than this machine can address"),
        }
    }
}

impl OutOfMemory {
    /// The error for an allocation of `e.bytes` that failed.
    pub fn alloc_failed(who: impl Into<String>, what: impl Into<String>, e: AllocError) -> Self {
        OutOfMemory {
            who: who.into(),
            what: what.into(),
            bytes: (e.bytes != u64::MAX).then_some(e.bytes),
            why: Refusal::AllocFailed,
        }
    }
}

/// Checks that `bytes` (`None`: the count overflowed) fit in the address
/// space and in the [`budget`] (below [`SYSTEM_CHECK_MIN`], in [`LIMIT_VAR`]
/// only); the error names `who` and `what`.
pub fn check(bytes: Option<u64>, who: &str, what: &str) -> Result<(), OutOfMemory> {
    let refuse = |why| OutOfMemory {
        who: who.to_string(),
        what: what.to_string(),
        bytes,
        why,
    };
    let Some(b) = bytes else {
        return Err(refuse(Refusal::TooLarge));
    };
    if b > isize::MAX as u64 {
        return Err(refuse(Refusal::TooLarge));
    }
    let budget = if b < SYSTEM_CHECK_MIN {
        limit()
    } else {
        budget()
    };
    match budget {
        Some(budget) if b > budget.bytes => Err(refuse(Refusal::OverBudget(budget))),
        _ => Ok(()),
    }
}

/// `n` copies of `value`, or an [`AllocError`] instead of an abort.
pub fn try_vec<T: Clone>(n: usize, value: T) -> Result<Vec<T>, AllocError> {
    let mut v = reserve(n)?;
    v.resize(n, value);
    Ok(v)
}

/// The first `n` items of `iter` (which yields at least that many, else the
/// vector is shorter), allocated once, or an [`AllocError`].
pub fn try_collect<T>(n: usize, iter: impl IntoIterator<Item = T>) -> Result<Vec<T>, AllocError> {
    let mut v = reserve(n)?;
    v.extend(iter.into_iter().take(n));
    Ok(v)
}

/// An empty vector with room for exactly `n` elements, or an [`AllocError`].
pub fn reserve<T>(n: usize) -> Result<Vec<T>, AllocError> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| AllocError {
        bytes: (n as u64).saturating_mul(std::mem::size_of::<T>() as u64),
    })?;
    Ok(v)
}

/// `n` zero words, or an [`AllocError`]. Large blocks come zeroed from the
/// system, so pages never written are never touched.
pub fn try_zeroed(n: usize) -> Result<Vec<u64>, AllocError> {
    let err = AllocError {
        bytes: (n as u64).saturating_mul(8),
    };
    if n == 0 {
        return Ok(Vec::new());
    }
    let layout = std::alloc::Layout::array::<u64>(n).map_err(|_| err)?;
    // SAFETY: `layout` has a nonzero size (n > 0).
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) } as *mut u64;
    if ptr.is_null() {
        return Err(err);
    }
    // SAFETY: `ptr` was allocated by the global allocator with the layout of
    // `n` u64s (so capacity `n`), and all `n` are initialised (to zero).
    Ok(unsafe { Vec::from_raw_parts(ptr, n, n) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("64K"), Some(64_000));
        assert_eq!(parse_size("1.5G"), Some(1_500_000_000));
        assert_eq!(parse_size(" 4GB "), Some(4_000_000_000));
        assert_eq!(parse_size("2TiB"), Some(2 << 40));
        assert_eq!(parse_size("1Mi"), Some(1 << 20));
        assert_eq!(parse_size("5i"), None);
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(human_bytes(999), "999 bytes");
        assert_eq!(human_bytes(1000), "1.0 kB");
        assert_eq!(human_bytes(22_612_345_678), "22.6 GB");
        assert_eq!(human_bytes(999_960_000), "1.0 GB");
        assert_eq!(human_bytes(u64::MAX), "18.4 EB");
    }

    #[test]
    fn impossible_allocations_are_errors() {
        assert_eq!(
            try_vec::<u64>(usize::MAX / 4, 0),
            Err(AllocError { bytes: u64::MAX })
        );
        assert!(try_zeroed(usize::MAX / 4).is_err());
        assert!(try_collect::<u32>(usize::MAX / 2, 0..).is_err());
        assert_eq!(try_zeroed(3).unwrap(), [0, 0, 0]);
        assert_eq!(try_collect(2, 5..).unwrap(), [5, 6]);
        let e = check(None, "batch 7", "of workspace").unwrap_err();
        assert_eq!(
            e.to_string(),
            "batch 7 needs more than 2^64 bytes of workspace, more than this machine can address"
        );
        let e = check(Some(u64::MAX - 1), "batch 7", "of workspace").unwrap_err();
        assert_eq!(e.why, Refusal::TooLarge);
        // 4 EiB: more than any machine has available.
        if cfg!(target_os = "linux") {
            let e = check(Some(1 << 62), "batch 7", "of workspace").unwrap_err();
            assert!(matches!(e.why, Refusal::OverBudget(_)), "{e:?}");
            assert!(e
                .to_string()
                .starts_with("batch 7 needs 4.6 EB of workspace, more than the "));
        }
        assert_eq!(check(Some(1000), "batch 7", "of workspace"), Ok(()));
    }
}
