//! The static library: a GNU `ar` archive written by bnnc itself (no `ar`
//! tool), with the symbol index linkers need, read from the object's ELF
//! symbol table. Deterministic: no timestamps, owners or modes.

/// A GNU `ar` archive holding one ELF object, with the symbol index linkers
/// need (the object's defined global symbols).
pub fn static_library(member: &str, object: &[u8]) -> Result<Vec<u8>, String> {
    let symbols = elf_defined_globals(object)?;
    Ok(gnu_archive(member, object, &symbols))
}

/// `N` bytes at offset `at`, or an error naming the truncation.
fn read<const N: usize>(b: &[u8], at: usize) -> Result<[u8; N], String> {
    at.checked_add(N)
        .and_then(|end| b.get(at..end))
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| format!("truncated ELF object (reading {N} bytes at offset {at})"))
}

/// The little-endian `u16` at `at`.
fn u16_at(b: &[u8], at: usize) -> Result<usize, String> {
    Ok(u16::from_le_bytes(read(b, at)?) as usize)
}

/// The little-endian `u32` at `at`.
fn u32_at(b: &[u8], at: usize) -> Result<usize, String> {
    Ok(u32::from_le_bytes(read(b, at)?) as usize)
}

/// The little-endian `u64` at `at`, as an offset or size.
fn u64_at(b: &[u8], at: usize) -> Result<usize, String> {
    usize::try_from(u64::from_le_bytes(read(b, at)?))
        .map_err(|_| "ELF offset out of range".to_string())
}

/// Names of the global and weak symbols an ELF64 little-endian relocatable
/// object defines, in symbol-table order.
pub fn elf_defined_globals(obj: &[u8]) -> Result<Vec<String>, String> {
    if obj.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err("not an ELF object".into());
    }
    if obj.get(4) != Some(&2) || obj.get(5) != Some(&1) {
        return Err("not a 64-bit little-endian ELF object".into());
    }
    let shoff = u64_at(obj, 0x28)?;
    let shentsize = u16_at(obj, 0x3a)?;
    let mut shnum = u16_at(obj, 0x3c)?;
    if shentsize < 64 {
        return Err(format!("ELF section header size {shentsize} < 64"));
    }
    if shnum == 0 && shoff != 0 {
        // More than 0xff00 sections: the count is in section 0's sh_size.
        shnum = u64_at(obj, shoff + 32)?;
    }
    let section = |i: usize| -> Result<usize, String> {
        i.checked_mul(shentsize)
            .and_then(|o| o.checked_add(shoff))
            .ok_or_else(|| "ELF section header offset overflows".to_string())
    };
    let mut names = Vec::new();
    for i in 0..shnum {
        let sh = section(i)?;
        if u32_at(obj, sh + 4)? != 2 {
            continue; // not SHT_SYMTAB
        }
        let (off, size) = (u64_at(obj, sh + 24)?, u64_at(obj, sh + 32)?);
        let strtab = section(u32_at(obj, sh + 40)?)?;
        let (str_off, str_size) = (u64_at(obj, strtab + 24)?, u64_at(obj, strtab + 32)?);
        let strings = str_off
            .checked_add(str_size)
            .and_then(|end| obj.get(str_off..end))
            .ok_or("ELF string table out of bounds")?;
        let entsize = u64_at(obj, sh + 56)?.max(24);
        for s in 0..size / entsize {
            let sym = off + s * entsize;
            let info = read::<1>(obj, sym + 4)?[0];
            let shndx = u16_at(obj, sym + 6)?;
            let (bind, kind) = (info >> 4, info & 0xf);
            // STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE; not STT_SECTION/STT_FILE;
            // defined (not SHN_UNDEF).
            if !matches!(bind, 1 | 2 | 10) || matches!(kind, 3 | 4) || shndx == 0 {
                continue;
            }
            let name_off = u32_at(obj, sym)?;
            let rest = strings
                .get(name_off..)
                .ok_or("ELF symbol name out of bounds")?;
            let end = rest
                .iter()
                .position(|&c| c == 0)
                .ok_or("unterminated ELF symbol name")?;
            let name =
                std::str::from_utf8(&rest[..end]).map_err(|_| "ELF symbol name is not UTF-8")?;
            if !name.is_empty() {
                names.push(name.to_string());
            }
        }
    }
    Ok(names)
}

/// One archive member header (60 bytes); fields are space padded, times and
/// ids are 0 so the archive is deterministic.
fn ar_header(out: &mut Vec<u8>, name: &str, mode: &str, size: usize) {
    let field = |out: &mut Vec<u8>, s: &str, width: usize| {
        out.extend_from_slice(s.as_bytes());
        out.extend(std::iter::repeat_n(b' ', width - s.len()));
    };
    field(out, name, 16);
    field(out, "0", 12); // mtime
    field(out, "0", 6); // uid
    field(out, "0", 6); // gid
    field(out, mode, 8);
    field(out, &size.to_string(), 10);
    out.extend_from_slice(b"`\n");
}

/// A GNU archive: `/` symbol index, `//` long-name table when the member name
/// needs it, then the member.
fn gnu_archive(member: &str, object: &[u8], symbols: &[String]) -> Vec<u8> {
    let pad = |n: usize| n + n % 2;
    // Symbol index: count, offsets of the member's header, names; big-endian.
    let index_size = 4 + 4 * symbols.len() + symbols.iter().map(|s| s.len() + 1).sum::<usize>();
    let short = member.len() < 16; // `name/` fits the 16-byte field
    let long_names = if short {
        Vec::new()
    } else {
        format!("{member}/\n").into_bytes()
    };
    let mut member_at = 8 + 60 + pad(index_size);
    if !long_names.is_empty() {
        member_at += 60 + pad(long_names.len());
    }
    let mut out = b"!<arch>\n".to_vec();
    ar_header(&mut out, "/", "0", index_size);
    out.extend_from_slice(&(symbols.len() as u32).to_be_bytes());
    for _ in symbols {
        out.extend_from_slice(&(member_at as u32).to_be_bytes());
    }
    for s in symbols {
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }
    if index_size % 2 == 1 {
        out.push(b'\n');
    }
    if !long_names.is_empty() {
        ar_header(&mut out, "//", "", long_names.len());
        out.extend_from_slice(&long_names);
        if long_names.len() % 2 == 1 {
            out.push(b'\n');
        }
    }
    debug_assert_eq!(out.len(), member_at);
    let name = if short {
        format!("{member}/")
    } else {
        "/0".to_string()
    };
    ar_header(&mut out, &name, "644", object.len());
    out.extend_from_slice(object);
    if object.len() % 2 == 1 {
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{lowered, mixed_source, tmp};
    use bnnc_kir::target::Target;

    /// The archive's layout, checked by hand (and by `ar`/`nm` when present).
    #[test]
    fn static_library_indexes_the_entry_points() {
        let l = lowered(&mixed_source());
        let obj =
            bnnc_cranelift::compile_object(&l.module, &Target::parse("x86_64").unwrap()).unwrap();
        let syms = elf_defined_globals(&obj).unwrap();
        let mut sorted = syms.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            [
                "mixed_net_run",
                "mixed_net_run_checked",
                "mixed_net_run_v",
                "mixed_net_workspace_size"
            ]
        );
        let a = static_library("mixed_net.o", &obj).unwrap();
        assert!(a.starts_with(b"!<arch>\n/               0           0     0     0       "));
        let member = a.windows(12).position(|w| w == b"mixed_net.o/").unwrap();
        assert_eq!(member % 2, 0, "members start at even offsets");
        // The index points at the member's header.
        let first = u32::from_be_bytes(a[72..76].try_into().unwrap()) as usize;
        assert_eq!(first, member);
        assert_eq!(&a[member + 60..member + 60 + obj.len()], &obj[..]);
        // A long member name goes through the `//` table.
        let long = static_library("a_rather_long_model_name.o", &obj).unwrap();
        assert!(long
            .windows(28)
            .any(|w| w == b"a_rather_long_model_name.o/\n"));
        assert!(elf_defined_globals(b"not an object").is_err());
        assert!(elf_defined_globals(&obj[..100]).is_err());

        let dir = tmp("ar");
        let lib = dir.join("libbnnc_mixed_net.a");
        std::fs::write(&lib, &a).unwrap();
        if let Ok(out) = std::process::Command::new("nm")
            .arg("-s")
            .arg(&lib)
            .output()
        {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "nm: {text}");
            assert!(
                text.contains("mixed_net_run in mixed_net.o"),
                "nm -s:\n{text}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
