//! Targets: an architecture plus an explicit set of CPU features.
//!
//! Syntax: `ARCH[+FEATURE]...`, e.g. `x86_64`, `x86_64+popcnt+avx2`, `aarch64`,
//! or `native` (the host's architecture with every feature it has). Generated
//! code uses only what the target names: `x86_64` alone is the baseline SSE2
//! CPU without `popcnt`.

use std::collections::BTreeSet;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// The Linux target triple.
    pub fn triple(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-gnu",
            Arch::Aarch64 => "aarch64-unknown-linux-gnu",
        }
    }

    /// Features that may follow `+`, with what each enables.
    pub fn features(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Arch::X86_64 => &[
                ("sse3", "SSE3"),
                ("ssse3", "SSSE3"),
                ("sse41", "SSE4.1"),
                ("sse42", "SSE4.2"),
                ("popcnt", "POPCNT: one-instruction 64-bit popcount"),
                ("avx", "AVX"),
                ("avx2", "AVX2"),
                (
                    "fma",
                    "FMA3 (bnnc never contracts a*b+c; listed for completeness)",
                ),
                ("bmi1", "BMI1"),
                ("bmi2", "BMI2"),
                ("lzcnt", "LZCNT"),
                ("avx512f", "AVX-512 foundation"),
                ("avx512vl", "AVX-512 vector length extensions"),
                ("avx512dq", "AVX-512 doubleword/quadword"),
                (
                    "avx512bitalg",
                    "AVX-512 BITALG (vector popcount of bytes/words)",
                ),
                ("avx512vbmi", "AVX-512 VBMI"),
                (
                    "avx512vpopcntdq",
                    "AVX-512 VPOPCNTDQ (vector popcount of dwords/qwords)",
                ),
            ],
            Arch::Aarch64 => &[
                ("lse", "large system extensions (atomics)"),
                ("dotprod", "SDOT/UDOT int8 dot products"),
            ],
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An architecture and the CPU features code may use.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub arch: Arch,
    pub features: BTreeSet<String>,
}

/// A target string that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error(
        "unknown architecture `{0}`; expected x86_64, aarch64 or native (see `--target help`)"
    )]
    UnknownArch(String),
    #[error("unknown feature `{feature}` for {arch}; valid: {valid}")]
    UnknownFeature {
        arch: Arch,
        feature: String,
        valid: String,
    },
    #[error("`native` takes no `+features`: it already means every feature of this CPU")]
    NativeWithFeatures,
    #[error("this host ({0}) is not a supported architecture")]
    UnsupportedHost(String),
}

impl Target {
    pub fn new(arch: Arch) -> Target {
        Target {
            arch,
            features: BTreeSet::new(),
        }
    }

    /// Parses `ARCH[+FEATURE]...` or `native`.
    pub fn parse(s: &str) -> Result<Target, TargetError> {
        let mut parts = s.split('+');
        let arch = parts.next().unwrap_or("");
        if arch == "native" {
            if parts.next().is_some() {
                return Err(TargetError::NativeWithFeatures);
            }
            return Target::host();
        }
        let arch = match arch {
            "x86_64" | "x86-64" | "amd64" => Arch::X86_64,
            "aarch64" | "arm64" => Arch::Aarch64,
            other => return Err(TargetError::UnknownArch(other.to_string())),
        };
        let mut t = Target::new(arch);
        for f in parts {
            if !arch.features().iter().any(|(n, _)| *n == f) {
                return Err(TargetError::UnknownFeature {
                    arch,
                    feature: f.to_string(),
                    valid: arch
                        .features()
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            t.features.insert(f.to_string());
        }
        Ok(t)
    }

    /// The host: its architecture and every listed feature it has.
    pub fn host() -> Result<Target, TargetError> {
        #[cfg(target_arch = "x86_64")]
        {
            let mut t = Target::new(Arch::X86_64);
            macro_rules! detect {
                ($($name:literal => $feat:tt),*) => {
                    $( if std::is_x86_feature_detected!($feat) { t.features.insert($name.to_string()); } )*
                };
            }
            detect!(
                "sse3" => "sse3", "ssse3" => "ssse3", "sse41" => "sse4.1", "sse42" => "sse4.2",
                "popcnt" => "popcnt", "avx" => "avx", "avx2" => "avx2", "fma" => "fma",
                "bmi1" => "bmi1", "bmi2" => "bmi2", "lzcnt" => "lzcnt", "avx512f" => "avx512f",
                "avx512vl" => "avx512vl", "avx512dq" => "avx512dq", "avx512bitalg" => "avx512bitalg",
                "avx512vbmi" => "avx512vbmi", "avx512vpopcntdq" => "avx512vpopcntdq"
            );
            Ok(t)
        }
        #[cfg(target_arch = "aarch64")]
        {
            let mut t = Target::new(Arch::Aarch64);
            if std::arch::is_aarch64_feature_detected!("lse") {
                t.features.insert("lse".into());
            }
            if std::arch::is_aarch64_feature_detected!("dotprod") {
                t.features.insert("dotprod".into());
            }
            Ok(t)
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            Err(TargetError::UnsupportedHost(
                std::env::consts::ARCH.to_string(),
            ))
        }
    }

    pub fn has(&self, feature: &str) -> bool {
        self.features.contains(feature)
    }

    /// Is this the architecture of the machine running bnnc (so its code can be
    /// JIT-run here, given the features are present)?
    pub fn is_host_arch(&self) -> bool {
        Target::host().is_ok_and(|h| h.arch == self.arch)
    }

    /// Features this target names that the host lacks (empty when the code can
    /// run here).
    pub fn missing_on_host(&self) -> Vec<String> {
        match Target::host() {
            Ok(h) if h.arch == self.arch => {
                self.features.difference(&h.features).cloned().collect()
            }
            _ => vec![format!("architecture {}", self.arch)],
        }
    }

    /// A help text listing architectures and features.
    pub fn help() -> String {
        let mut s = String::from(
            "Targets are ARCH[+FEATURE]..., or `native` for this machine's CPU.\n\
             Code uses only the features named; with none, the architecture's baseline.\n\n",
        );
        for arch in [Arch::X86_64, Arch::Aarch64] {
            s.push_str(&format!("{} ({}):\n", arch, arch.triple()));
            for (f, d) in arch.features() {
                s.push_str(&format!("  +{f:<16} {d}\n"));
            }
            s.push('\n');
        }
        s.push_str("Examples: x86_64, x86_64+popcnt, x86_64+popcnt+avx2, aarch64, native\n");
        if let Ok(h) = Target::host() {
            s.push_str(&format!("This machine: {h}\n"));
        }
        s
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.arch.name())?;
        for feat in &self.features {
            write!(f, "+{feat}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let t = Target::parse("x86_64+avx2+popcnt").unwrap();
        assert_eq!(t.to_string(), "x86_64+avx2+popcnt");
        assert!(t.has("popcnt"));
        assert_eq!(Target::parse("aarch64").unwrap().arch, Arch::Aarch64);
        assert!(matches!(
            Target::parse("mips"),
            Err(TargetError::UnknownArch(_))
        ));
        assert!(matches!(
            Target::parse("x86_64+neon"),
            Err(TargetError::UnknownFeature { .. })
        ));
        assert!(matches!(
            Target::parse("aarch64+popcnt"),
            Err(TargetError::UnknownFeature { .. })
        ));
        assert!(matches!(
            Target::parse("native+avx2"),
            Err(TargetError::NativeWithFeatures)
        ));
    }

    #[test]
    fn native_is_the_host() {
        let t = Target::parse("native").unwrap();
        assert!(t.is_host_arch());
        assert!(t.missing_on_host().is_empty());
    }
}
