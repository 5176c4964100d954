//! The identity scenarios `cargo xtask test` runs beyond the plain ladder:
//!
//! - `NO_RNG=1`: no virtio-rng device; rngd and keystored must fail closed;
//! - an `RNG_FILE` of zero bytes: rngd's health tests must trip; no key;
//! - an `RNG_FILE` of test data, booted twice, and another file once: the same file
//!   gives the same device public key (on every provider combination: Ed25519 is
//!   deterministic), a different file a different key;
//! - after every `RNG_FILE` run, a scan of the console log for any 32-byte window of
//!   the file's bytes, raw or in hex: no entropy may reach the UART.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::combination::Combination;
use crate::image;
use crate::steps::target_dir;
use crate::test_os::{self, Row, TestOsOptions};

/// Length of the generated test files: well beyond what a boot consumes.
const RNG_FILE_LEN: usize = 64 * 1024;
/// The leak scan looks at this many leading bytes of the file: the start-up samples,
/// the device-key seed and everything the selftest draws.
const LEAK_SCAN_SPAN: usize = 8 * 1024;
/// The window length the scan looks for.
const LEAK_WINDOW: usize = 32;

pub fn options(scenario: Option<&str>, rng_file: Option<PathBuf>, no_rng: bool) -> TestOsOptions {
    TestOsOptions {
        phase: "full".into(),
        timeout: Duration::from_secs(120),
        until_marker: false,
        provider: "all".into(),
        rng_file,
        no_rng,
        scenario: scenario.map(str::to_owned),
        state_dir: None,
        no_otp: false,
        matrix_profile: false,
        net: Default::default(),
    }
}

/// Deterministic test data (SplitMix64): a stand-in for a recorded entropy stream.
/// Not used for anything secret.
pub fn test_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn write_file(name: &str, bytes: &[u8]) -> Result<PathBuf, String> {
    let dir = target_dir().join("qemu/rng");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(name);
    std::fs::write(&path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

fn boot(images: &[(Combination, PathBuf)], options: &TestOsOptions) -> Result<Vec<Row>, String> {
    let rows = test_os::boot_all(images, options, false)?;
    if test_os::report(&rows, options) {
        Ok(rows)
    } else {
        Err("see the table above".into())
    }
}

fn pubkeys(rows: &[Row]) -> Vec<(Combination, String)> {
    rows.iter()
        .filter_map(|row| {
            let key = row.outcome.as_ref().ok()?.captured.get("pubkey")?.clone();
            Some((row.combination, key))
        })
        .collect()
}

/// Fails if any `LEAK_WINDOW`-byte window of the first `LEAK_SCAN_SPAN` bytes of
/// `secret` appears in `log`, as raw bytes or as hex (either case).
pub fn scan_for_leaks(log: &[u8], secret: &[u8]) -> Result<(), String> {
    let span = &secret[..secret.len().min(LEAK_SCAN_SPAN)];
    let raw: BTreeSet<&[u8]> = span.windows(LEAK_WINDOW).collect();
    let hex: BTreeSet<String> = raw.iter().map(hex_lower).collect();
    if let Some(at) = log.windows(LEAK_WINDOW).position(|w| raw.contains(w)) {
        return Err(format!(
            "raw entropy bytes at offset {at} of the console log"
        ));
    }
    let text = String::from_utf8_lossy(log).to_lowercase();
    let text = text.as_bytes();
    if let Some(at) = text
        .windows(2 * LEAK_WINDOW)
        .position(|w| std::str::from_utf8(w).is_ok_and(|w| hex.contains(w)))
    {
        return Err(format!(
            "entropy bytes in hex at offset {at} of the console log"
        ));
    }
    Ok(())
}

fn hex_lower(bytes: &&[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn scan_logs(rows: &[Row], file: &Path) -> Result<(), String> {
    let secret = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    for row in rows {
        let log = image::run_dir(&row.combination).join("uart.log");
        let text =
            std::fs::read(&log).map_err(|e| format!("cannot read {}: {e}", log.display()))?;
        scan_for_leaks(&text, &secret).map_err(|e| format!("{}: {e}", row.combination))?;
        eprintln!(
            "    {}: no 32-byte window of the first {LEAK_SCAN_SPAN} bytes of {} in {} (raw or hex)",
            row.combination,
            file.display(),
            log.display()
        );
    }
    Ok(())
}

/// The two test entropy files, a.bin and b.bin (written when called).
pub fn rng_files() -> Result<(PathBuf, PathBuf), String> {
    Ok((
        write_file("a.bin", &test_bytes(0x0a, RNG_FILE_LEN))?,
        write_file("b.bin", &test_bytes(0x0b, RNG_FILE_LEN))?,
    ))
}

/// Runs every identity scenario on `images`.
pub fn run(images: &[(Combination, PathBuf)]) -> Result<(), String> {
    boot(images, &options(None, None, true))?;

    let zeros = write_file("zeros.bin", &vec![0u8; RNG_FILE_LEN])?;
    boot(
        images,
        &options(Some("rng-health-failure"), Some(zeros), false),
    )?;

    let (file_a, file_b) = rng_files()?;
    let first = boot(images, &options(None, Some(file_a.clone()), false))?;
    scan_logs(&first, &file_a)?;
    let keys_a = pubkeys(&first);
    let distinct: BTreeSet<&String> = keys_a.iter().map(|(_, key)| key).collect();
    if keys_a.len() != images.len() || distinct.len() != 1 {
        return Err(format!(
            "RNG_FILE a.bin gave different device keys across combinations: {keys_a:?}"
        ));
    }
    let key_a = keys_a[0].1.clone();
    eprintln!(
        "    a.bin: the same device public key on all {} combinations: {key_a}",
        images.len()
    );

    let again = boot(images, &options(None, Some(file_a.clone()), false))?;
    scan_logs(&again, &file_a)?;
    for (combination, key) in pubkeys(&again) {
        if key != key_a {
            return Err(format!(
                "{combination}: a.bin gave {key} on the second boot, {key_a} on the first"
            ));
        }
    }
    eprintln!("    a.bin again: the same key on every combination");

    let other = boot(images, &options(None, Some(file_b.clone()), false))?;
    scan_logs(&other, &file_b)?;
    for (combination, key) in pubkeys(&other) {
        if key == key_a {
            return Err(format!(
                "{combination}: b.bin gave the same key as a.bin ({key})"
            ));
        }
    }
    eprintln!(
        "    b.bin: a different key ({})",
        pubkeys(&other).first().map_or("-", |(_, k)| k.as_str())
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leak_scan_finds_raw_and_hex_windows_and_nothing_else() {
        let secret = test_bytes(7, 4096);
        let clean = b"KERNEL: provider dalek+chacha\nkeystored: device pubkey 00ff\n".to_vec();
        assert_eq!(scan_for_leaks(&clean, &secret), Ok(()));

        let mut raw = clean.clone();
        raw.extend_from_slice(&secret[100..132]);
        assert!(scan_for_leaks(&raw, &secret).unwrap_err().contains("raw"));

        let mut hex = clean.clone();
        hex.extend_from_slice(hex_lower(&&secret[1000..1032]).to_uppercase().as_bytes());
        assert!(scan_for_leaks(&hex, &secret).unwrap_err().contains("hex"));

        let mut short = clean;
        short.extend_from_slice(&secret[100..131]);
        assert_eq!(
            scan_for_leaks(&short, &secret),
            Ok(()),
            "31 bytes is not a window"
        );
    }
}
