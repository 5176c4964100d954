//! Where an image's `.text + .rodata` bytes go: every sized symbol of the ELF,
//! demangled, attributed to the crate its path starts with, and crates grouped into
//! the components a user chooses between (the kernel, each service, each backend,
//! shared crates).
//!
//! What this can and cannot say: code the optimiser inlined into a caller counts for
//! the caller (a backend's function inlined into dsoftbusd is dsoftbusd's), generic
//! code counts for the crate that defines it (`Vec::push` is alloc's whoever
//! instantiates it), and `.rodata` is mostly anonymous (string literals, jump
//! tables), which has its own row. The rows add up to the sections' sizes: the bytes
//! between symbols (alignment) are a row too, so nothing is silently dropped.

use std::collections::BTreeMap;
use std::path::Path;

use object::{Object, ObjectSection, ObjectSymbol, SectionIndex};

/// A component and the crates (first path segment of a demangled symbol) it owns.
const COMPONENTS: &[(&str, &[&str])] = &[
    (
        "kernel (scheduler, IPC, audit, device tree, processes, heap, riscv-rt)",
        &[
            "kernel",
            "kernel_core",
            "ipc",
            "device_tree",
            "flat_device_tree",
            "sv39",
            "elf",
            "riscv",
            "riscv_rt",
            "riscv_pac",
            "embedded_alloc",
            "linked_list_allocator",
            "uart_16550",
            "markers",
            "device_image",
        ],
    ),
    (
        "user runtime and drivers (user-rt, user-hal, virtio, the device manager)",
        &[
            "user_rt",
            "user_hal",
            "user_programs",
            "device_programs",
            "virtio_drivers",
            "virtio_rng",
            "virtio_blk",
            "virtio_net",
            "deadline",
            "rollback_counter",
        ],
    ),
    ("logd", &["logd"]),
    ("rngd", &["rngd", "rand_core"]),
    (
        "statefs (with the record-store format)",
        &["statefs", "state_format"],
    ),
    ("keystored", &["keystored"]),
    (
        "netstackd (with smoltcp)",
        &["netstackd", "smoltcp", "heapless", "managed", "byteorder"],
    ),
    ("dsoftbusd (with Noise XK)", &["dsoftbusd", "noise_xk"]),
    ("service API (IPC messages)", &["service_api"]),
    (
        "Ed25519/X25519: dalek",
        &[
            "provider_dalek",
            "curve25519_dalek",
            "ed25519_dalek",
            "x25519_dalek",
            "ed25519",
        ],
    ),
    (
        "Ed25519/X25519: compact",
        &["provider_compact", "ed25519_compact"],
    ),
    (
        "SHA-2 (Ed25519-dalek's SHA-512; the sha256 Noise hash)",
        &["sha2"],
    ),
    (
        "AEAD: ChaCha20-Poly1305 (its ChaCha20 is also rngd's generator)",
        &[
            "provider_chacha",
            "chacha20poly1305",
            "chacha20",
            "poly1305",
        ],
    ),
    (
        "AEAD: AES-256-GCM",
        &[
            "provider_aes_gcm",
            "aes_gcm",
            "aes",
            "ghash",
            "polyval",
            "ctr",
        ],
    ),
    (
        "AEAD: AES-256-GCM-SIV",
        &["provider_aes_gcm_siv", "aes_gcm_siv"],
    ),
    (
        "hash: BLAKE2s, HKDF, HMAC",
        &["provider_hash", "blake2", "hkdf", "hmac", "digest"],
    ),
    (
        "provider API and crypto traits",
        &[
            "provider_api",
            "provider_select",
            "aead",
            "cipher",
            "universal_hash",
            "crypto_common",
            "inout",
            "subtle",
            "zeroize",
        ],
    ),
];

/// Symbols of core and alloc's own impls whose demangled name starts with a
/// primitive or a type parameter (`<u32 as core::fmt::Display>::fmt`).
const CORE_AND_ALLOC: &str = "core, alloc, compiler-builtins";
const ANONYMOUS: &str = "anonymous constants (string literals, jump tables)";
const BETWEEN: &str = "bytes no symbol covers (merged string literals, alignment)";
const OTHER: &str = "other crates";

/// One component's bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Row {
    pub component: String,
    pub text: u64,
    pub rodata: u64,
    /// For [`OTHER`]: which crates.
    pub crates: Vec<String>,
}

impl Row {
    pub fn total(&self) -> u64 {
        self.text + self.rodata
    }
}

/// The first path segment of a demangled symbol: the crate, or a primitive type.
fn first_segment(demangled: &str) -> &str {
    let mut name = demangled;
    loop {
        let trimmed = name
            .trim_start_matches(['<', '&', '*', '[', '(', ' '])
            .trim_start_matches("mut ")
            .trim_start_matches("const ")
            .trim_start_matches("dyn ");
        if trimmed.len() == name.len() {
            break;
        }
        name = trimmed;
    }
    let end = name
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '$'))
        .unwrap_or(name.len());
    &name[..end]
}

/// Which component a symbol belongs to (and, for [`OTHER`], its crate).
fn component_of(symbol: &str) -> (&'static str, Option<String>) {
    if symbol.starts_with(".L") {
        return (ANONYMOUS, None);
    }
    let demangled = format!("{:#}", rustc_demangle::demangle(symbol));
    // Drop glue belongs to the type it drops.
    let subject = demangled
        .strip_prefix("core::ptr::drop_in_place<")
        .unwrap_or(&demangled);
    let first = first_segment(subject);
    if let Some((component, _)) = COMPONENTS
        .iter()
        .find(|(_, crates)| crates.contains(&first))
    {
        return (component, None);
    }
    let primitive = first.len() <= 1
        || [
            "core",
            "alloc",
            "compiler_builtins",
            "u8",
            "u16",
            "u32",
            "u64",
            "u128",
            "usize",
            "i8",
            "i16",
            "i32",
            "i64",
            "i128",
            "isize",
            "char",
            "str",
            "bool",
            "f32",
            "f64",
        ]
        .contains(&first)
        || first.starts_with("mem")
        || first.starts_with("__");
    if primitive {
        return (CORE_AND_ALLOC, None);
    }
    // Entry and trap symbols of riscv-rt, and C-named symbols without a path.
    if !demangled.contains("::") {
        return (COMPONENTS[0].0, None);
    }
    (OTHER, Some(first.to_owned()))
}

/// The breakdown of the image at `path`, largest component first.
pub fn breakdown(path: &Path) -> Result<Vec<Row>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file = object::File::parse(&*bytes)
        .map_err(|e| format!("{} is not an ELF file: {e}", path.display()))?;
    let section = |name: &str| -> Option<(SectionIndex, u64)> {
        file.section_by_name(name).map(|s| (s.index(), s.size()))
    };
    let text = section(".text");
    let rodata = section(".rodata");
    let mut rows: BTreeMap<&'static str, Row> = BTreeMap::new();
    let (mut text_seen, mut rodata_seen) = (0u64, 0u64);
    // An address can carry several names (aliases); count its bytes once.
    let mut counted = std::collections::BTreeSet::new();
    for symbol in file.symbols() {
        let size = symbol.size();
        let Some(index) = symbol.section_index() else {
            continue;
        };
        if size == 0 || !counted.insert(symbol.address()) {
            continue;
        }
        let in_text = text.is_some_and(|(i, _)| i == index);
        let in_rodata = rodata.is_some_and(|(i, _)| i == index);
        if !in_text && !in_rodata {
            continue;
        }
        let name = symbol.name().unwrap_or("");
        let (component, krate) = component_of(name);
        let row = rows.entry(component).or_insert_with(|| Row {
            component: component.to_owned(),
            ..Row::default()
        });
        if in_text {
            row.text += size;
            text_seen += size;
        } else {
            row.rodata += size;
            rodata_seen += size;
        }
        if let Some(krate) = krate
            && !row.crates.contains(&krate)
        {
            row.crates.push(krate);
        }
    }
    let text_size = text.map_or(0, |(_, s)| s);
    let rodata_size = rodata.map_or(0, |(_, s)| s);
    rows.insert(
        BETWEEN,
        Row {
            component: BETWEEN.to_owned(),
            text: text_size.saturating_sub(text_seen),
            rodata: rodata_size.saturating_sub(rodata_seen),
            crates: Vec::new(),
        },
    );
    let mut rows: Vec<Row> = rows.into_values().filter(|r| r.total() > 0).collect();
    rows.sort_by(|a, b| {
        b.total()
            .cmp(&a.total())
            .then(a.component.cmp(&b.component))
    });
    Ok(rows)
}

/// The breakdown as a markdown table: component, `.text`, `.rodata`, total, share.
pub fn table(rows: &[Row]) -> String {
    use std::fmt::Write as _;
    let total: u64 = rows.iter().map(Row::total).sum();
    let mut out =
        String::from("| component | .text | .rodata | total | share |\n|---|---|---|---|---|\n");
    for row in rows {
        let name = if row.crates.is_empty() {
            row.component.clone()
        } else {
            format!("{} ({})", row.component, row.crates.join(", "))
        };
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {:.1} % |",
            row.text,
            row.rodata,
            row.total(),
            row.total() as f64 * 100.0 / total.max(1) as f64
        );
    }
    let text: u64 = rows.iter().map(|r| r.text).sum();
    let rodata: u64 = rows.iter().map(|r| r.rodata).sum();
    let _ = writeln!(out, "| **total** | {text} | {rodata} | {total} | 100 % |");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_are_attributed_by_their_first_path_segment() {
        // Legacy-mangled names as rustc writes them for riscv64.
        let cases = [
            (
                "_ZN9dsoftbusd6daemon19Daemon$LT$P$C$H$GT$4feed17h032827050e527ee2E",
                "dsoftbusd (with Noise XK)",
            ),
            (
                "_ZN4sha26sha51211compress51217hf1cccc0f4b74bb45E",
                "SHA-2 (Ed25519-dalek's SHA-512; the sha256 Noise hash)",
            ),
            (
                "_ZN74_$LT$provider_hash..Blake2s$u20$as$u20$provider_api..hash..HashBackend$GT$14hkdf_with_info17hb14bc6cd573ac843E",
                "hash: BLAKE2s, HKDF, HMAC",
            ),
            (
                "_ZN4core3ptr140drop_in_place$LT$noise_xk..handshake..Core$LT$provider_compact..Compact$C$provider_chacha..ChaCha20Poly1305$C$provider_hash..Blake2s$GT$$GT$17h4820920dcf4d3b5fE",
                "dsoftbusd (with Noise XK)",
            ),
            (
                "_ZN4core3fmt9Formatter3pad17h0123456789abcdefE",
                CORE_AND_ALLOC,
            ),
            (
                "_ZN42_$LT$u32$u20$as$u20$core..fmt..Display$GT$3fmt17h0123456789abcdefE",
                CORE_AND_ALLOC,
            ),
            ("memcpy", CORE_AND_ALLOC),
            (".Lanon.81ce291a37d9eea177603363adcbc7b1.172", ANONYMOUS),
            ("_start_trap", COMPONENTS[0].0),
            ("_ZN6kernel5start17h5c66a9b7f49e80a7E", COMPONENTS[0].0),
        ];
        for (symbol, component) in cases {
            assert_eq!(component_of(symbol).0, component, "{symbol}");
        }
        assert_eq!(
            component_of("_ZN7unknown3foo17h0123456789abcdefE"),
            (OTHER, Some("unknown".to_owned()))
        );
    }

    #[test]
    fn every_crate_belongs_to_one_component() {
        let mut seen = std::collections::BTreeSet::new();
        for (_, crates) in COMPONENTS {
            for krate in *crates {
                assert!(seen.insert(krate), "{krate} is in two components");
            }
        }
    }
}
