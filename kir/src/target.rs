//! Targets: an architecture, optionally a CPU model, and an explicit set of
//! CPU features.
//!
//! Syntax: `ARCH[:CPU][+FEATURE]...`, e.g. `x86_64`, `x86_64+popcnt+avx2`,
//! `aarch64`, `x86_64:znver4`, `aarch64:neoverse-n1`, `riscv64`, or `native`
//! (the host's architecture with every listed feature it has). The command
//! line also takes the CPU separately (`--target x86_64 --cpu haswell`, see
//! [`Target::with_cpu`]). Generated code uses only what the target names:
//! `x86_64` alone is the baseline SSE2 CPU without `popcnt`; a CPU model
//! means every instruction that CPU has (and is tuned for it).
//!
//! CPU names are checked by the backend that uses them: the LLVM backend knows
//! every CPU LLVM knows, the Cranelift backend takes none. `CPU` may also be
//! `native`: the CPU of the machine running bnnc, as the LLVM backend detects
//! it. For the CPUs listed in [`Arch::cpus`], [`Target::features`] also holds
//! the bnnc features the CPU implies, so that the header, the JIT's check
//! against the host and generated runtime checks name them.

use std::collections::BTreeSet;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    X86_64,
    Aarch64,
    /// RV64GC (the Linux baseline: I, M, A, F, D, C), LP64D ABI.
    Riscv64,
}

/// A CPU model bnnc describes (the LLVM backend accepts many more).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuInfo {
    /// The name as LLVM (and `-march`/`-mcpu` of gcc and clang) spells it.
    pub name: &'static str,
    pub about: &'static str,
    /// The bnnc features ([`Arch::features`]) this CPU has.
    pub features: &'static [&'static str],
}

const X86_V2: &[&str] = &["sse3", "ssse3", "sse41", "sse42", "popcnt"];
const X86_V3: &[&str] = &[
    "sse3", "ssse3", "sse41", "sse42", "popcnt", "avx", "avx2", "fma", "bmi1", "bmi2", "lzcnt",
];
const X86_V4: &[&str] = &[
    "sse3", "ssse3", "sse41", "sse42", "popcnt", "avx", "avx2", "fma", "bmi1", "bmi2", "lzcnt",
    "avx512f", "avx512vl", "avx512dq",
];
const X86_ICX: &[&str] = &[
    "sse3",
    "ssse3",
    "sse41",
    "sse42",
    "popcnt",
    "avx",
    "avx2",
    "fma",
    "bmi1",
    "bmi2",
    "lzcnt",
    "avx512f",
    "avx512vl",
    "avx512dq",
    "avx512bitalg",
    "avx512vbmi",
    "avx512vpopcntdq",
];
const ARM_V82_DOT: &[&str] = &["lse", "dotprod"];

const X86_CPUS: &[CpuInfo] = &[
    CpuInfo {
        name: "x86-64",
        about: "baseline x86-64 (SSE2), the same as no CPU",
        features: &[],
    },
    CpuInfo {
        name: "x86-64-v2",
        about: "x86-64 level 2 (SSE4.2, POPCNT)",
        features: X86_V2,
    },
    CpuInfo {
        name: "x86-64-v3",
        about: "x86-64 level 3 (AVX2, FMA, BMI2)",
        features: X86_V3,
    },
    CpuInfo {
        name: "x86-64-v4",
        about: "x86-64 level 4 (AVX-512 F/VL/DQ/BW/CD)",
        features: X86_V4,
    },
    CpuInfo {
        name: "nehalem",
        about: "Intel Nehalem (2008: SSE4.2, POPCNT)",
        features: X86_V2,
    },
    CpuInfo {
        name: "sandybridge",
        about: "Intel Sandy Bridge (2011: AVX)",
        features: &["sse3", "ssse3", "sse41", "sse42", "popcnt", "avx"],
    },
    CpuInfo {
        name: "haswell",
        about: "Intel Haswell (2013: AVX2, FMA, BMI2)",
        features: X86_V3,
    },
    CpuInfo {
        name: "skylake",
        about: "Intel Skylake client (2015: AVX2)",
        features: X86_V3,
    },
    CpuInfo {
        name: "skylake-avx512",
        about: "Intel Skylake-SP/X (2017: AVX-512)",
        features: X86_V4,
    },
    CpuInfo {
        name: "cascadelake",
        about: "Intel Cascade Lake (2019: AVX-512 VNNI)",
        features: X86_V4,
    },
    CpuInfo {
        name: "icelake-server",
        about: "Intel Ice Lake-SP (2021: AVX-512 VPOPCNTDQ, BITALG)",
        features: X86_ICX,
    },
    CpuInfo {
        name: "sapphirerapids",
        about: "Intel Sapphire Rapids (2023)",
        features: X86_ICX,
    },
    CpuInfo {
        name: "alderlake",
        about: "Intel Alder Lake (2021: AVX2, no AVX-512)",
        features: X86_V3,
    },
    CpuInfo {
        name: "znver2",
        about: "AMD Zen 2 (2019: AVX2)",
        features: X86_V3,
    },
    CpuInfo {
        name: "znver3",
        about: "AMD Zen 3 (2020: AVX2)",
        features: X86_V3,
    },
    CpuInfo {
        name: "znver4",
        about: "AMD Zen 4 (2022: AVX-512 with VPOPCNTDQ)",
        features: X86_ICX,
    },
    CpuInfo {
        name: "znver5",
        about: "AMD Zen 5 (2024: AVX-512 with VPOPCNTDQ)",
        features: X86_ICX,
    },
];

const ARM_CPUS: &[CpuInfo] = &[
    CpuInfo {
        name: "generic",
        about: "baseline ARMv8-A with NEON, the same as no CPU",
        features: &[],
    },
    CpuInfo {
        name: "cortex-a53",
        about: "Arm Cortex-A53 (ARMv8.0-A, in-order)",
        features: &[],
    },
    CpuInfo {
        name: "cortex-a72",
        about: "Arm Cortex-A72 (ARMv8.0-A; Raspberry Pi 4)",
        features: &[],
    },
    CpuInfo {
        name: "cortex-a55",
        about: "Arm Cortex-A55 (ARMv8.2-A, dot product)",
        features: ARM_V82_DOT,
    },
    CpuInfo {
        name: "cortex-a76",
        about: "Arm Cortex-A76 (ARMv8.2-A, dot product; Raspberry Pi 5)",
        features: ARM_V82_DOT,
    },
    CpuInfo {
        name: "neoverse-n1",
        about: "Arm Neoverse N1 (ARMv8.2-A, dot product; AWS Graviton2)",
        features: ARM_V82_DOT,
    },
    CpuInfo {
        name: "neoverse-v1",
        about: "Arm Neoverse V1 (ARMv8.4-A, SVE; AWS Graviton3)",
        features: ARM_V82_DOT,
    },
    CpuInfo {
        name: "neoverse-n2",
        about: "Arm Neoverse N2 (ARMv9-A, SVE2)",
        features: ARM_V82_DOT,
    },
    CpuInfo {
        name: "apple-a14",
        about: "Apple A14 / M1",
        features: ARM_V82_DOT,
    },
];

const RISCV_CPUS: &[CpuInfo] = &[
    CpuInfo {
        name: "generic-rv64",
        about: "baseline RV64GC, the same as no CPU",
        features: &[],
    },
    CpuInfo {
        name: "sifive-u74",
        about: "SiFive U74 (RV64GC; VisionFive 2)",
        features: &[],
    },
    CpuInfo {
        name: "sifive-x280",
        about: "SiFive X280 (RV64GCV, Zbb, 512-bit vectors)",
        features: &["zbb", "v"],
    },
    CpuInfo {
        name: "spacemit-x60",
        about: "SpacemiT X60 (RVA22 + RVV 1.0, 256-bit vectors; Banana Pi F3)",
        features: &["zbb", "v"],
    },
];

impl Arch {
    /// Every architecture bnnc targets.
    pub const ALL: [Arch; 3] = [Arch::X86_64, Arch::Aarch64, Arch::Riscv64];

    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
            Arch::Riscv64 => "riscv64",
        }
    }

    /// The Linux target triple.
    pub fn triple(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-gnu",
            Arch::Aarch64 => "aarch64-unknown-linux-gnu",
            Arch::Riscv64 => "riscv64-unknown-linux-gnu",
        }
    }

    /// What code for the architecture may use with no CPU and no features.
    pub fn baseline(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86-64 with SSE2, no popcnt instruction",
            Arch::Aarch64 => "ARMv8-A with NEON (popcount by `cnt`)",
            Arch::Riscv64 => "RV64GC (IMAFDC), LP64D ABI, no vectors, no cpop",
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
            Arch::Riscv64 => &[
                (
                    "zbb",
                    "Zbb basic bit manipulation (cpop: one-instruction popcount)",
                ),
                ("v", "RVV 1.0 vectors"),
                (
                    "zvbb",
                    "Zvbb vector bit manipulation (vcpop.v: vector popcount)",
                ),
            ],
        }
    }

    /// CPU models bnnc describes, with the features each implies. The LLVM
    /// backend accepts every CPU LLVM knows for the architecture.
    pub fn cpus(self) -> &'static [CpuInfo] {
        match self {
            Arch::X86_64 => X86_CPUS,
            Arch::Aarch64 => ARM_CPUS,
            Arch::Riscv64 => RISCV_CPUS,
        }
    }

    /// The described CPU called `name`.
    pub fn cpu(self, name: &str) -> Option<&'static CpuInfo> {
        self.cpus().iter().find(|c| c.name == name)
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An architecture, a CPU model, and the CPU features code may use.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub arch: Arch,
    /// A CPU model (`znver4`, `neoverse-n1`, `native`): code may use every
    /// instruction it has and is tuned for it. `None`: the architecture's
    /// baseline plus [`Target::features`].
    pub cpu: Option<String>,
    /// The features code may use: those named explicitly, plus those the CPU
    /// implies when bnnc knows them ([`Arch::cpus`], or the host's for
    /// `native`).
    pub features: BTreeSet<String>,
}

/// A target string that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("{}", unknown_arch_message(.0))]
    UnknownArch(String),
    #[error(
        "{} for {arch}; valid: {valid}",
        if feature.is_empty() { "no feature name after `+`".to_string() } else { format!("unknown feature `{feature}`") }
    )]
    UnknownFeature {
        arch: Arch,
        feature: String,
        valid: String,
    },
    #[error("`native` takes no `+features`: it already means every feature of this CPU")]
    NativeWithFeatures,
    /// `native:CPU`: `native` names a whole target, not an architecture.
    #[error(
        "`native:{0}`: `native` is this machine with every feature it has and takes no CPU \
         model; for that CPU write ARCH:{0} (e.g. x86_64:{0}), or `--cpu {0}` with the LLVM \
         backend (see `--target help`)"
    )]
    NativeWithCpu(String),
    #[error("this host ({0}) is not a supported architecture")]
    UnsupportedHost(String),
    #[error(
        "{}: expected letters, digits, `-`, `_` or `.` (e.g. znver4, neoverse-n1; see `--target help`)",
        if .0.is_empty() { "no CPU name after `:`".to_string() } else { format!("`{}` is not a CPU name", .0) }
    )]
    BadCpuName(String),
    #[error("CPU `native` means this machine's CPU, which is not {0}")]
    NativeCpuElsewhere(Arch),
}

/// The message of [`TargetError::UnknownArch`]: what a target looks like.
fn unknown_arch_message(arch: &str) -> String {
    let found = if arch.is_empty() {
        "no architecture".to_string()
    } else {
        format!("unknown architecture `{arch}`")
    };
    format!(
        "{found}: a target is ARCH[:CPU][+FEATURE]... with ARCH one of x86_64, aarch64, riscv64 \
         (e.g. x86_64+popcnt+avx2, aarch64:neoverse-n1), or `native` alone (see `--target help`)"
    )
}

impl Target {
    pub fn new(arch: Arch) -> Target {
        Target {
            arch,
            cpu: None,
            features: BTreeSet::new(),
        }
    }

    /// Parses `ARCH[:CPU][+FEATURE]...` or `native`.
    pub fn parse(s: &str) -> Result<Target, TargetError> {
        let mut parts = s.split('+');
        let head = parts.next().unwrap_or("");
        if let Some(cpu) = head.strip_prefix("native:") {
            return Err(TargetError::NativeWithCpu(cpu.to_string()));
        }
        if head == "native" {
            if parts.next().is_some() {
                return Err(TargetError::NativeWithFeatures);
            }
            return Target::host();
        }
        let (arch, cpu) = match head.split_once(':') {
            Some((a, c)) => (a, Some(c)),
            None => (head, None),
        };
        let arch = match arch {
            "x86_64" | "x86-64" | "amd64" => Arch::X86_64,
            "aarch64" | "arm64" => Arch::Aarch64,
            "riscv64" | "riscv64gc" => Arch::Riscv64,
            other => return Err(TargetError::UnknownArch(other.to_string())),
        };
        let mut t = Target::new(arch);
        for f in parts {
            t.add_feature(f)?;
        }
        match cpu {
            Some(c) => t.with_cpu(c),
            None => Ok(t),
        }
    }

    /// Adds a feature named as `+FEATURE` is.
    pub fn add_feature(&mut self, feature: &str) -> Result<(), TargetError> {
        let arch = self.arch;
        if !arch.features().iter().any(|(n, _)| *n == feature) {
            return Err(TargetError::UnknownFeature {
                arch,
                feature: feature.to_string(),
                valid: arch
                    .features()
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        self.features.insert(feature.to_string());
        Ok(())
    }

    /// This target with CPU model `cpu` (which replaces any other): the
    /// features it implies are added. The name is checked for its spelling
    /// only; the backend checks that it knows the CPU.
    pub fn with_cpu(mut self, cpu: &str) -> Result<Target, TargetError> {
        let ok = !cpu.is_empty()
            && cpu
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            return Err(TargetError::BadCpuName(cpu.to_string()));
        }
        if cpu == "native" {
            let host = Target::host()?;
            if host.arch != self.arch {
                return Err(TargetError::NativeCpuElsewhere(self.arch));
            }
            self.features.extend(host.features);
        } else if let Some(c) = self.arch.cpu(cpu) {
            self.features
                .extend(c.features.iter().map(|f| f.to_string()));
        }
        self.cpu = Some(cpu.to_string());
        Ok(self)
    }

    /// The bnnc features the CPU implies: `Ok(None)` when bnnc does not
    /// describe the CPU, `Err(())` for `native` on another architecture.
    fn cpu_features(&self) -> Result<Option<BTreeSet<String>>, ()> {
        match self.cpu.as_deref() {
            None => Ok(Some(BTreeSet::new())),
            Some("native") => match Target::host() {
                Ok(h) if h.arch == self.arch => Ok(Some(h.features)),
                _ => Err(()),
            },
            Some(name) => Ok(self
                .arch
                .cpu(name)
                .map(|c| c.features.iter().map(|f| f.to_string()).collect())),
        }
    }

    /// The host: its architecture and every listed feature it has (no CPU
    /// model; see [`Target::native_cpu`]).
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
        #[cfg(target_arch = "riscv64")]
        {
            Ok(Target::new(Arch::Riscv64))
        }
        #[cfg(not(any(
            target_arch = "x86_64",
            target_arch = "aarch64",
            target_arch = "riscv64"
        )))]
        {
            Err(TargetError::UnsupportedHost(
                std::env::consts::ARCH.to_string(),
            ))
        }
    }

    /// The host with its CPU model: `native` (a backend with CPU models, the
    /// LLVM one, asks the host for its name and every feature it has).
    pub fn native_cpu() -> Result<Target, TargetError> {
        Target::host()?.with_cpu("native")
    }

    pub fn has(&self, feature: &str) -> bool {
        self.features.contains(feature)
    }

    /// Is this the architecture of the machine running bnnc (so its code can be
    /// JIT-run here, given the features are present)?
    pub fn is_host_arch(&self) -> bool {
        Target::host().is_ok_and(|h| h.arch == self.arch)
    }

    /// What this target needs that the host lacks (empty when the code can
    /// run here): the architecture, features, or a CPU model whose features
    /// bnnc does not know.
    pub fn missing_on_host(&self) -> Vec<String> {
        match Target::host() {
            Ok(h) if h.arch == self.arch => {
                let mut missing: Vec<String> =
                    self.features.difference(&h.features).cloned().collect();
                if let Some(cpu) = &self.cpu {
                    if cpu != "native" && self.arch.cpu(cpu).is_none() {
                        missing.push(format!(
                            "whatever CPU `{cpu}` has (bnnc does not know its features; see `--target help`)"
                        ));
                    }
                }
                missing
            }
            _ => vec![format!("architecture {}", self.arch)],
        }
    }

    /// A help text listing architectures, features and CPUs.
    pub fn help() -> String {
        let mut s = String::from(
            "Targets are ARCH[:CPU][+FEATURE]..., or `native` for this machine's architecture\n\
             with every feature below it has. Code uses only what the target names: with no\n\
             CPU and no feature, the architecture's baseline. A CPU (also `--cpu NAME`) means\n\
             everything that CPU has; the LLVM backend (`--backend llvm`) takes any CPU LLVM\n\
             knows, and `native` for this machine's CPU; the Cranelift backend takes no CPU\n\
             and no riscv64.\n\n",
        );
        for arch in Arch::ALL {
            s.push_str(&format!(
                "{} ({}): baseline {}\n",
                arch,
                arch.triple(),
                arch.baseline()
            ));
            s.push_str("  features:\n");
            for (f, d) in arch.features() {
                s.push_str(&format!("    +{f:<16} {d}\n"));
            }
            s.push_str("  CPUs (with the features above they imply):\n");
            for c in arch.cpus() {
                let fs = if c.features.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", c.features.join(" "))
                };
                s.push_str(&format!("    {:<16} {}{fs}\n", c.name, c.about));
            }
            s.push('\n');
        }
        s.push_str(
            "Examples: x86_64, x86_64+popcnt+avx2, x86_64:znver4, aarch64:neoverse-n1, riscv64, native\n\
             (or --target x86_64 --cpu haswell; --cpu native)\n",
        );
        if let Ok(h) = Target::host() {
            s.push_str(&format!("This machine: {h}\n"));
        }
        s
    }
}

impl fmt::Display for Target {
    /// `ARCH[:CPU][+FEATURE]...`, naming only the features the CPU does not
    /// imply, so that [`Target::parse`] gives the target back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.arch.name())?;
        let implied = match &self.cpu {
            Some(cpu) => {
                write!(f, ":{cpu}")?;
                self.cpu_features().ok().flatten().unwrap_or_default()
            }
            None => BTreeSet::new(),
        };
        for feat in self.features.difference(&implied) {
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
        assert_eq!(t.cpu, None);
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
        assert_eq!(
            Target::parse("native:znver4+avx2"),
            Err(TargetError::NativeWithCpu("znver4".into()))
        );
    }

    #[test]
    fn malformed_targets_say_what_is_wrong_and_what_is_accepted() {
        let msg = |s: &str| Target::parse(s).unwrap_err().to_string();
        let m = msg("native:znver4");
        assert!(
            m.contains("takes no CPU model")
                && m.contains("x86_64:znver4")
                && m.contains("--cpu znver4"),
            "{m}"
        );
        assert!(!m.contains("unknown architecture"), "{m}");
        let m = msg("");
        assert!(m.starts_with("no architecture: a target is ARCH"), "{m}");
        let m = msg("arm");
        assert!(
            m.contains("unknown architecture `arm`") && m.contains("x86_64, aarch64, riscv64"),
            "{m}"
        );
        let m = msg("x86_64+");
        assert!(
            m.starts_with("no feature name after `+` for x86_64; valid: "),
            "{m}"
        );
        let m = msg("x86_64:");
        assert!(m.starts_with("no CPU name after `:`"), "{m}");
    }

    #[test]
    fn cpus_imply_features_and_round_trip() {
        let t = Target::parse("x86_64:haswell").unwrap();
        assert_eq!(t.cpu.as_deref(), Some("haswell"));
        assert!(t.has("avx2") && t.has("popcnt") && !t.has("avx512f"));
        assert_eq!(t.to_string(), "x86_64:haswell");
        assert_eq!(Target::parse(&t.to_string()).unwrap(), t);

        let t = Target::parse("x86_64:haswell+avx512f").unwrap();
        assert_eq!(t.to_string(), "x86_64:haswell+avx512f");
        assert_eq!(Target::parse(&t.to_string()).unwrap(), t);

        let t = Target::parse("x86_64").unwrap().with_cpu("znver4").unwrap();
        assert!(t.has("avx512vpopcntdq"));
        assert_eq!(t.to_string(), "x86_64:znver4");

        // A CPU bnnc does not describe is kept for the backend to check.
        let t = Target::parse("aarch64:cortex-x925+dotprod").unwrap();
        assert_eq!(t.cpu.as_deref(), Some("cortex-x925"));
        assert_eq!(t.to_string(), "aarch64:cortex-x925+dotprod");
        assert!(Target::parse("x86_64:cortex-a72").is_ok());

        let t = Target::parse("riscv64").unwrap();
        assert_eq!(t.arch, Arch::Riscv64);
        assert_eq!(t.to_string(), "riscv64");
        let t = Target::parse("riscv64:sifive-x280").unwrap();
        assert!(t.has("v") && t.has("zbb"));
        assert!(matches!(
            Target::parse("riscv64+avx2"),
            Err(TargetError::UnknownFeature { .. })
        ));

        for bad in ["x86_64:", "x86_64:zen 4", "x86_64:a/b"] {
            assert!(
                matches!(Target::parse(bad), Err(TargetError::BadCpuName(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn every_cpu_feature_is_a_feature_of_its_arch() {
        for arch in Arch::ALL {
            for c in arch.cpus() {
                for f in c.features {
                    assert!(
                        arch.features().iter().any(|(n, _)| n == f),
                        "{arch} cpu {} names unknown feature {f}",
                        c.name
                    );
                }
            }
        }
    }

    #[test]
    fn native_is_the_host() {
        let t = Target::parse("native").unwrap();
        assert!(t.is_host_arch());
        assert!(t.missing_on_host().is_empty());
        let n = Target::native_cpu().unwrap();
        assert_eq!(n.cpu.as_deref(), Some("native"));
        assert_eq!(n.features, t.features);
        assert!(n.missing_on_host().is_empty());
        assert_eq!(n.to_string(), format!("{}:native", t.arch));
        let other = if t.arch == Arch::Aarch64 {
            "x86_64"
        } else {
            "aarch64"
        };
        assert!(matches!(
            Target::parse(&format!("{other}:native")),
            Err(TargetError::NativeCpuElsewhere(_))
        ));
        // A CPU whose features bnnc does not know cannot be checked.
        let unknown = Target::new(t.arch).with_cpu("some-future-cpu").unwrap();
        assert_eq!(unknown.missing_on_host().len(), 1);
    }

    #[test]
    fn help_lists_every_arch_and_cpu() {
        let h = Target::help();
        for arch in Arch::ALL {
            assert!(h.contains(arch.triple()));
            for c in arch.cpus() {
                assert!(h.contains(c.name));
            }
        }
    }
}
