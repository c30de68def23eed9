//! The CPUs LLVM 19 knows, and bnnc feature names in LLVM's spelling.
//!
//! LLVM's C API cannot list a target's CPUs, and an unknown CPU is only a
//! warning on standard error (then generic code), so bnnc checks names
//! against these lists: every CPU `llc -mtriple=ARCH-unknown-linux-gnu
//! -mcpu=help` prints for LLVM 19.1, less the ones LLVM aborts on with a 64-bit triple
//! (32-bit CPUs). The test `tests/cpu_lists.rs` asks the
//! linked LLVM for its list and checks these against it.

use bnnc_kir::target::Arch;

const X86_64: &[&str] = &[
    "alderlake",
    "amdfam10",
    "arrowlake",
    "arrowlake-s",
    "arrowlake_s",
    "athlon64",
    "athlon64-sse3",
    "athlon-fx",
    "atom",
    "atom_sse4_2",
    "atom_sse4_2_movbe",
    "barcelona",
    "bdver1",
    "bdver2",
    "bdver3",
    "bdver4",
    "bonnell",
    "broadwell",
    "btver1",
    "btver2",
    "cannonlake",
    "cascadelake",
    "clearwaterforest",
    "cooperlake",
    "core2",
    "core_2_duo_sse4_1",
    "core_2_duo_ssse3",
    "core_2nd_gen_avx",
    "core_3rd_gen_avx",
    "core_4th_gen_avx",
    "core_4th_gen_avx_tsx",
    "core_5th_gen_avx",
    "core_5th_gen_avx_tsx",
    "core-avx2",
    "core-avx-i",
    "core_aes_pclmulqdq",
    "core_i7_sse4_2",
    "corei7",
    "corei7-avx",
    "emeraldrapids",
    "generic",
    "goldmont",
    "goldmont-plus",
    "goldmont_plus",
    "gracemont",
    "grandridge",
    "graniterapids",
    "graniterapids-d",
    "graniterapids_d",
    "haswell",
    "icelake-client",
    "icelake_client",
    "icelake-server",
    "icelake_server",
    "ivybridge",
    "k8",
    "k8-sse3",
    "knl",
    "knm",
    "lunarlake",
    "meteorlake",
    "mic_avx512",
    "nehalem",
    "nocona",
    "opteron",
    "opteron-sse3",
    "pantherlake",
    "penryn",
    "raptorlake",
    "rocketlake",
    "sandybridge",
    "sapphirerapids",
    "sierraforest",
    "silvermont",
    "skx",
    "skylake",
    "skylake-avx512",
    "skylake_avx512",
    "slm",
    "tigerlake",
    "tremont",
    "westmere",
    "x86-64",
    "x86-64-v2",
    "x86-64-v3",
    "x86-64-v4",
    "znver1",
    "znver2",
    "znver3",
    "znver4",
    "znver5",
];

/// x86 CPUs LLVM lists that have no 64-bit mode.
const X86_32_BIT_ONLY: &[&str] = &[
    "athlon",
    "athlon-4",
    "athlon-mp",
    "athlon-tbird",
    "athlon-xp",
    "c3",
    "c3-2",
    "geode",
    "i386",
    "i486",
    "i586",
    "i686",
    "k6",
    "k6-2",
    "k6-3",
    "lakemont",
    "pentium",
    "pentium-m",
    "pentium-mmx",
    "pentium2",
    "pentium3",
    "pentium3m",
    "pentium4",
    "pentium4m",
    "pentium_4",
    "pentium_4_sse3",
    "pentium_ii",
    "pentium_iii",
    "pentium_iii_no_xmm_regs",
    "pentium_m",
    "pentium_mmx",
    "pentium_pro",
    "pentiumpro",
    "prescott",
    "winchip-c6",
    "winchip2",
    "yonah",
];

const AARCH64: &[&str] = &[
    "a64fx",
    "ampere1",
    "ampere1a",
    "ampere1b",
    "apple-a10",
    "apple-a11",
    "apple-a12",
    "apple-a13",
    "apple-a14",
    "apple-a15",
    "apple-a16",
    "apple-a17",
    "apple-a7",
    "apple-m4",
    "carmel",
    "cortex-a34",
    "cortex-a35",
    "cortex-a510",
    "cortex-a520",
    "cortex-a520ae",
    "cortex-a53",
    "cortex-a55",
    "cortex-a57",
    "cortex-a65",
    "cortex-a65ae",
    "cortex-a710",
    "cortex-a715",
    "cortex-a72",
    "cortex-a720",
    "cortex-a720ae",
    "cortex-a725",
    "cortex-a73",
    "cortex-a75",
    "cortex-a76",
    "cortex-a76ae",
    "cortex-a77",
    "cortex-a78",
    "cortex-a78ae",
    "cortex-a78c",
    "cortex-r82",
    "cortex-r82ae",
    "cortex-x1",
    "cortex-x1c",
    "cortex-x2",
    "cortex-x3",
    "cortex-x4",
    "cortex-x925",
    "exynos-m3",
    "exynos-m4",
    "exynos-m5",
    "falkor",
    "generic",
    "kryo",
    "neoverse-512tvb",
    "neoverse-e1",
    "neoverse-n1",
    "neoverse-n2",
    "neoverse-n3",
    "neoverse-v1",
    "neoverse-v2",
    "neoverse-v3",
    "neoverse-v3ae",
    "oryon-1",
    "saphira",
    "thunderx",
    "thunderx2t99",
    "thunderx3t110",
    "thunderxt81",
    "thunderxt83",
    "thunderxt88",
    "tsv110",
];

const RISCV64: &[&str] = &[
    "generic",
    "generic-rv64",
    "rocket-rv64",
    "sifive-p450",
    "sifive-p670",
    "sifive-s21",
    "sifive-s51",
    "sifive-s54",
    "sifive-s76",
    "sifive-u54",
    "sifive-u74",
    "sifive-x280",
    "spacemit-x60",
    "syntacore-scr3-rv64",
    "veyron-v1",
    "xiangshan-nanhu",
];

/// riscv CPUs LLVM lists that it refuses with a riscv64 triple (RV32 ones,
/// and `rocket` and `sifive-7-series`, which need a `-rv64` suffix).
const RISCV_32_BIT_ONLY: &[&str] = &[
    "generic-rv32",
    "rocket",
    "rocket-rv32",
    "sifive-7-series",
    "sifive-e20",
    "sifive-e21",
    "sifive-e24",
    "sifive-e31",
    "sifive-e34",
    "sifive-e76",
    "syntacore-scr1-base",
    "syntacore-scr1-max",
    "syntacore-scr3-rv32",
];

/// The CPU names the LLVM backend accepts for `arch` (besides `native`),
/// sorted as LLVM lists them.
pub fn known_cpus(arch: Arch) -> &'static [&'static str] {
    match arch {
        Arch::X86_64 => X86_64,
        Arch::Aarch64 => AARCH64,
        Arch::Riscv64 => RISCV64,
    }
}

/// CPUs LLVM lists for `arch` that it refuses (aborts on) with bnnc's 64-bit
/// triple, so [`known_cpus`] leaves them out.
pub fn refused_cpus(arch: Arch) -> &'static [&'static str] {
    match arch {
        Arch::X86_64 => X86_32_BIT_ONLY,
        Arch::Aarch64 => &[],
        Arch::Riscv64 => RISCV_32_BIT_ONLY,
    }
}

/// The LLVM name of a bnnc feature ([`Arch::features`]), `None` for a name
/// bnnc does not know for the architecture.
pub fn llvm_feature(arch: Arch, feature: &str) -> Option<&'static str> {
    Some(match (arch, feature) {
        (Arch::X86_64, "sse3") => "sse3",
        (Arch::X86_64, "ssse3") => "ssse3",
        (Arch::X86_64, "sse41") => "sse4.1",
        (Arch::X86_64, "sse42") => "sse4.2",
        (Arch::X86_64, "popcnt") => "popcnt",
        (Arch::X86_64, "avx") => "avx",
        (Arch::X86_64, "avx2") => "avx2",
        (Arch::X86_64, "fma") => "fma",
        (Arch::X86_64, "bmi1") => "bmi",
        (Arch::X86_64, "bmi2") => "bmi2",
        (Arch::X86_64, "lzcnt") => "lzcnt",
        (Arch::X86_64, "avx512f") => "avx512f",
        (Arch::X86_64, "avx512vl") => "avx512vl",
        (Arch::X86_64, "avx512dq") => "avx512dq",
        (Arch::X86_64, "avx512bitalg") => "avx512bitalg",
        (Arch::X86_64, "avx512vbmi") => "avx512vbmi",
        (Arch::X86_64, "avx512vpopcntdq") => "avx512vpopcntdq",
        (Arch::Aarch64, "lse") => "lse",
        (Arch::Aarch64, "dotprod") => "dotprod",
        (Arch::Riscv64, "zbb") => "zbb",
        (Arch::Riscv64, "v") => "v",
        (Arch::Riscv64, "zvbb") => "zvbb",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bnnc_feature_has_an_llvm_name() {
        for arch in Arch::ALL {
            for (f, _) in arch.features() {
                assert!(llvm_feature(arch, f).is_some(), "{arch} +{f}");
            }
        }
    }

    #[test]
    fn every_described_cpu_is_known_to_llvm() {
        for arch in Arch::ALL {
            for c in arch.cpus() {
                assert!(known_cpus(arch).contains(&c.name), "{arch} {}", c.name);
            }
        }
    }

    #[test]
    fn lists_have_no_duplicates() {
        for arch in Arch::ALL {
            let mut v = known_cpus(arch).to_vec();
            v.sort();
            v.dedup();
            assert_eq!(v.len(), known_cpus(arch).len(), "{arch}");
        }
    }
}
