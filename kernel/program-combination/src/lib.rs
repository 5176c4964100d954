//! The provider combination a user program names in its `.combination` ELF section.
//!
//! The kernel is built once for every combination; the user program it loads (QEMU's
//! `-initrd`) carries the name of the combination it was built with, which the kernel
//! prints in its banner (docs/syscalls.md). The file is input the kernel does not
//! trust, so the parser is here, portable, and tested on the host with crafted files:
//! bounds are checked, only printable ASCII without spaces comes out, and the work is
//! constant per section header (a string-table lookup that scans for a NUL would let a
//! crafted table without one cost headers x table bytes: 20 s for a 5 MB file).

#![no_std]
#![forbid(unsafe_code)]

use elf::ElfBytes;
use elf::endian::LittleEndian;

/// The longest name a program may carry.
pub const CAPACITY: usize = 64;

/// The section's name, with the string table's terminating zero.
const SECTION: &[u8] = b".combination\0";

/// The name in the `.combination` section of the ELF file `image` (parsed as `file`):
/// the bytes before the first zero, 1 to [`CAPACITY`] of them, printable ASCII without
/// spaces. `None` for anything else: no section headers, no such section, a section or
/// name table outside the file, a name too long, empty or with another byte.
pub fn read<'a>(file: &ElfBytes<'a, LittleEndian>, image: &'a [u8]) -> Option<&'a str> {
    let headers = file.section_headers()?;
    let names = headers.get(usize::from(file.ehdr.e_shstrndx)).ok()?;
    let names = within(image, names.sh_offset, names.sh_size)?;
    let section = headers.iter().find(|h| {
        let at = h.sh_name as usize;
        names.get(at..at.saturating_add(SECTION.len())) == Some(SECTION)
    })?;
    let bytes = within(image, section.sh_offset, section.sh_size)?;
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    let name = &bytes[..end];
    if name.is_empty() || name.len() > CAPACITY || !name.iter().all(u8::is_ascii_graphic) {
        return None;
    }
    core::str::from_utf8(name).ok()
}

/// `len` bytes of `image` at `offset`, if the file holds them.
fn within(image: &[u8], offset: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    image.get(start..start.checked_add(usize::try_from(len).ok()?)?)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    /// A minimal ELF64 little-endian RISC-V executable with section headers: a null
    /// section, a name table `names`, and one section per `(name offset, contents)`.
    fn elf_with(names: &[u8], sections: &[(u32, &[u8])]) -> Vec<u8> {
        let mut data = Vec::new();
        let names_at = 64 + data.len();
        data.extend_from_slice(names);
        let mut placed = Vec::new();
        for (_, contents) in sections {
            placed.push(64 + data.len());
            data.extend_from_slice(contents);
        }
        while data.len() % 8 != 0 {
            data.push(0);
        }
        let shoff = 64 + data.len();
        let shnum = 2 + sections.len();
        let mut out = Vec::new();
        out.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        out.extend_from_slice(&243u16.to_le_bytes()); // EM_RISCV
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes()); // entry
        out.extend_from_slice(&0u64.to_le_bytes()); // phoff
        out.extend_from_slice(&(shoff as u64).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes()); // flags
        out.extend_from_slice(&64u16.to_le_bytes()); // ehsize
        out.extend_from_slice(&56u16.to_le_bytes()); // phentsize
        out.extend_from_slice(&0u16.to_le_bytes()); // phnum
        out.extend_from_slice(&64u16.to_le_bytes()); // shentsize
        out.extend_from_slice(&(shnum as u16).to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes()); // shstrndx
        assert_eq!(out.len(), 64);
        out.extend_from_slice(&data);
        let header = |out: &mut Vec<u8>, name: u32, kind: u32, at: usize, len: usize| {
            out.extend_from_slice(&name.to_le_bytes());
            out.extend_from_slice(&kind.to_le_bytes());
            out.extend_from_slice(&0u64.to_le_bytes()); // flags
            out.extend_from_slice(&0u64.to_le_bytes()); // addr
            out.extend_from_slice(&(at as u64).to_le_bytes());
            out.extend_from_slice(&(len as u64).to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes()); // link
            out.extend_from_slice(&0u32.to_le_bytes()); // info
            out.extend_from_slice(&1u64.to_le_bytes()); // addralign
            out.extend_from_slice(&0u64.to_le_bytes()); // entsize
        };
        header(&mut out, 0, 0, 0, 0);
        header(&mut out, 0, 3, names_at, names.len()); // SHT_STRTAB
        for ((name, contents), at) in sections.iter().zip(placed) {
            header(&mut out, *name, 1, at, contents.len()); // SHT_PROGBITS
        }
        out
    }

    fn name_of(image: &[u8]) -> Option<&str> {
        let file = ElfBytes::<LittleEndian>::minimal_parse(image).expect("headers parse");
        read(&file, image)
    }

    const NAMES: &[u8] = b"\0.shstrtab\0.combination\0.other\0";
    const AT: u32 = 11;

    #[test]
    fn the_name_is_read_up_to_its_first_zero() {
        let mut padded = [0u8; 64];
        padded[..12].copy_from_slice(b"dalek+chacha");
        assert_eq!(
            name_of(&elf_with(NAMES, &[(AT, &padded)])),
            Some("dalek+chacha")
        );
        let other = elf_with(NAMES, &[(24, b"x+y\0"), (AT, b"compact/libcrux+aes-gcm\0")]);
        assert_eq!(name_of(&other), Some("compact/libcrux+aes-gcm"));
    }

    #[test]
    fn a_missing_empty_long_or_unprintable_name_is_refused() {
        assert_eq!(name_of(&elf_with(NAMES, &[(24, b"dalek+chacha")])), None);
        assert_eq!(name_of(&elf_with(NAMES, &[(AT, b"\0dalek")])), None);
        assert_eq!(name_of(&elf_with(NAMES, &[(AT, &[b'a'; 65])])), None);
        assert_eq!(
            name_of(&elf_with(NAMES, &[(AT, &[b'a'; 64])])).map(str::len),
            Some(64)
        );
        for bad in [
            &b"dalek chacha"[..],
            b"dalek\x1b[2Jchacha",
            b"dalek\nFAIL",
            b"\xffab",
        ] {
            assert_eq!(name_of(&elf_with(NAMES, &[(AT, bad)])), None, "{bad:?}");
        }
        // A name that is the section's name without its zero is another section's.
        assert_eq!(
            name_of(&elf_with(
                b"\0.shstrtab\0.combinationX\0",
                &[(AT, b"a+b\0")]
            )),
            None
        );
    }

    #[test]
    fn tables_and_sections_outside_the_file_are_refused() {
        let mut image = elf_with(NAMES, &[(AT, b"dalek+chacha\0")]);
        // The last section header's size (at offset 32 within it) points past the end.
        let size_at = image.len() - 64 + 32;
        image[size_at..size_at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(name_of(&image), None);
        // A name offset past the name table.
        assert_eq!(
            name_of(&elf_with(NAMES, &[(4000, b"dalek+chacha\0")])),
            None
        );
    }

    /// A review's case: thousands of headers all naming offset 0 of a large name table
    /// with no zero in it. A lookup that scans for a NUL per header does headers x
    /// table bytes of work (20 s for 5 MB on the host, more in QEMU); `read` compares
    /// at most the section name's 13 bytes per header. (How long it takes is for a
    /// benchmark to say, not a test: this one checks the crafted file is refused.)
    #[test]
    fn a_crafted_name_table_without_a_zero_is_refused() {
        let table = std::vec![b'A'; 1 << 16];
        let sections: Vec<(u32, &[u8])> = (0..2_000).map(|_| (0u32, &b""[..])).collect();
        assert_eq!(name_of(&elf_with(&table, &sections)), None);
    }
}
