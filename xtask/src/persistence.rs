//! The persistence scenarios `cargo xtask test` runs on every combination, each image
//! on disks of its own under `target/qemu/persistence/<provider>/`:
//!
//! 1. **first boot** on fresh disks with `RNG_FILE` a.bin: the key is created;
//! 2. **reboot** on the same disks with b.bin: the key is restored, the same key;
//! 3. **torn update**: a newer version of the sealed record torn after 100 bytes (a
//!    power cut): the older record is restored, the same key;
//! 4. **tampered record**, **another device's OTP**, **no OTP**, **no state disk**,
//!    and a disk **sealed with the other AEAD** booted by the image of the same curve
//!    with the other AEAD (both ways): each fails closed with its marker and no key.
//!
//! Every fault boot must leave `state.img` byte for byte as it was: failing writes
//! nothing. A restore must leave keystored's sealed record where and as it was (the
//! selftest's own statefs check writes records of its own on a full ladder). Every
//! console log is scanned for any 32-byte window of the OTP secret or of the
//! `RNG_FILE`, raw or hex.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ipc::ServiceId;
use service_api::statefs::KEYSTORED_DEVICE_KEY;
use state_format::faults;
use state_format::store::{RecordKey, RecordStore};

use crate::combination::Combination;
use crate::disks::{self, DiskSet};
use crate::image;
use crate::provision::FileDisk;
use crate::scenarios::{options, scan_for_leaks};
use crate::steps::target_dir;
use crate::test_os::{self, Row};

const DEVICE_KEY: RecordKey = RecordKey {
    owner: ServiceId::Keystored as u16,
    id: KEYSTORED_DEVICE_KEY,
};

fn dir(combination: &Combination, case: &str) -> PathBuf {
    target_dir()
        .join("qemu/persistence")
        .join(combination.dir_name())
        .join(case)
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// A copy of `from`'s disks in `case`, for one fault to alter.
fn copy(combination: &Combination, from: &DiskSet, case: &str) -> Result<DiskSet, String> {
    from.copy_to(&dir(combination, case))
}

/// What a step must leave as it was.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unchanged {
    /// Nothing is required (a first boot writes the key).
    Nothing,
    /// keystored's sealed record: its slot, header and bytes.
    SealedKey,
    /// The whole state disk, byte for byte.
    StateDisk,
}

/// keystored's sealed record as it lies on the disk: slot, header, bytes.
fn sealed_key(path: &Path) -> Result<String, String> {
    let mut store = RecordStore::open(FileDisk::open(path)?).map_err(|e| e.to_string())?;
    let location = store.locate(DEVICE_KEY);
    let bytes = store.get(DEVICE_KEY).map_err(|e| e.to_string())?;
    Ok(format!("{location:?} {bytes:?}"))
}

/// What one step boots: each combination's image (or another's), on its disks.
struct Step<'a> {
    images: Vec<(Combination, PathBuf)>,
    disks: Vec<DiskSet>,
    scenario: Option<&'a str>,
    values: BTreeMap<String, String>,
    rng_file: Option<PathBuf>,
    /// What must come out of the boot unchanged.
    unchanged: Unchanged,
    what: &'a str,
}

impl Step<'_> {
    fn run(&self, secrets: &[Vec<u8>]) -> Result<Vec<Row>, String> {
        let snapshot = |disks: &DiskSet| -> Result<Option<Vec<u8>>, String> {
            match (self.unchanged, &disks.state) {
                (Unchanged::StateDisk, Some(path)) => read(path).map(Some),
                (Unchanged::SealedKey, Some(path)) => {
                    sealed_key(path).map(|s| Some(s.into_bytes()))
                }
                _ => Ok(None),
            }
        };
        let before = self
            .disks
            .iter()
            .map(snapshot)
            .collect::<Result<Vec<_>, _>>()?;
        let options = options(self.scenario, self.rng_file.clone(), false);
        let rows = test_os::boot_all_on(&self.images, &self.disks, &options, false, &self.values)?;
        if !test_os::report(&rows, &options) {
            return Err(format!("{}: see the table above", self.what));
        }
        for ((row, disks), before) in rows.iter().zip(&self.disks).zip(&before) {
            if before.is_some() && snapshot(disks)? != *before {
                let what = match self.unchanged {
                    Unchanged::SealedKey => "the sealed key record",
                    _ => "the state disk",
                };
                return Err(format!(
                    "{}: {}: {what} changed",
                    self.what, row.combination
                ));
            }
            let log_name = self
                .scenario
                .map_or("uart.log".to_owned(), |s| format!("uart-{s}.log"));
            let log = read(&image::run_dir(&row.combination).join(log_name))?;
            for secret in secrets {
                scan_for_leaks(&log, secret)
                    .map_err(|e| format!("{}: {}: {e}", self.what, row.combination))?;
            }
        }
        eprintln!("    {}: ok on {} image(s)", self.what, rows.len());
        Ok(rows)
    }
}

fn pubkeys(rows: &[Row]) -> Vec<Option<String>> {
    rows.iter()
        .map(|row| row.outcome.as_ref().ok()?.captured.get("pubkey").cloned())
        .collect()
}

/// Runs every persistence scenario on `images`; `rng_a` and `rng_b` are two different
/// entropy files.
pub fn run(images: &[(Combination, PathBuf)], rng_a: &Path, rng_b: &Path) -> Result<(), String> {
    let base: Vec<DiskSet> = images
        .iter()
        .map(|(c, _)| DiskSet::fresh(&dir(c, "base"), false))
        .collect::<Result<_, _>>()?;
    let mut secrets = vec![read(rng_a)?, read(rng_b)?];
    for disks in &base {
        let otp = read(disks.otp.as_deref().ok_or("no OTP disk")?)?;
        secrets.push(otp[..32].to_vec());
    }
    let provenance = |word: &str| BTreeMap::from([("provenance".to_owned(), word.to_owned())]);
    let all = |disks: Vec<DiskSet>, scenario, values, rng: &Path, unchanged, what| Step {
        images: images.to_vec(),
        disks,
        scenario,
        values,
        rng_file: Some(rng.to_path_buf()),
        unchanged,
        what,
    };

    let first = all(
        base.clone(),
        None,
        provenance("created"),
        rng_a,
        Unchanged::Nothing,
        "first boot: key created",
    )
    .run(&secrets)?;
    let keys = pubkeys(&first);
    let restored = all(
        base.clone(),
        None,
        provenance("restored"),
        rng_b,
        Unchanged::SealedKey,
        "reboot with other entropy: key restored",
    )
    .run(&secrets)?;
    if pubkeys(&restored) != keys {
        return Err(format!(
            "the reboot gave other keys: {:?} then {:?}",
            keys,
            pubkeys(&restored)
        ));
    }

    let torn = images
        .iter()
        .zip(&base)
        .map(|((c, _), b)| {
            let set = copy(c, b, "torn")?;
            let state = set.state.as_deref().ok_or("no state disk")?;
            faults::tear_update(FileDisk::open(state)?, DEVICE_KEY, 100)
                .map_err(|e| format!("cannot tear the update: {e}"))?;
            Ok(set)
        })
        .collect::<Result<Vec<_>, String>>()?;
    let after_tear = all(
        torn,
        None,
        provenance("restored"),
        rng_b,
        Unchanged::SealedKey,
        "torn update: the older record restored",
    )
    .run(&secrets)?;
    if pubkeys(&after_tear) != keys {
        return Err("the torn update changed the key".into());
    }

    let tampered = images
        .iter()
        .zip(&base)
        .map(|((c, _), b)| {
            let set = copy(c, b, "tampered")?;
            let state = set.state.as_deref().ok_or("no state disk")?;
            faults::tamper_record(FileDisk::open(state)?, DEVICE_KEY, 60)
                .map_err(|e| format!("cannot tamper: {e}"))?;
            Ok(set)
        })
        .collect::<Result<Vec<_>, String>>()?;
    all(
        tampered,
        Some("tampered-key"),
        BTreeMap::new(),
        rng_b,
        Unchanged::StateDisk,
        "tampered record: fails closed",
    )
    .run(&secrets)?;

    let mut other_otps = Vec::new();
    let other = images
        .iter()
        .zip(&base)
        .map(|((c, _), b)| {
            let set = copy(c, b, "other-device")?;
            let otp = disks::random_otp()?;
            other_otps.push(otp[..32].to_vec());
            std::fs::write(set.otp.as_deref().ok_or("no OTP disk")?, otp)
                .map_err(|e| format!("cannot write the OTP: {e}"))?;
            Ok(set)
        })
        .collect::<Result<Vec<_>, String>>()?;
    secrets.extend(other_otps);
    all(
        other,
        Some("other-device"),
        BTreeMap::new(),
        rng_b,
        Unchanged::StateDisk,
        "another device's OTP: fails closed",
    )
    .run(&secrets)?;

    let without = |case: &str, keep_state: bool, keep_otp: bool| {
        images
            .iter()
            .zip(&base)
            .map(|((c, _), b)| {
                let mut set = copy(c, b, case)?;
                if !keep_state {
                    set.state = None;
                }
                if !keep_otp {
                    set.otp = None;
                }
                Ok(set)
            })
            .collect::<Result<Vec<_>, String>>()
    };
    all(
        without("no-otp", true, false)?,
        Some("no-otp"),
        BTreeMap::new(),
        rng_b,
        Unchanged::StateDisk,
        "no OTP disk: fails closed",
    )
    .run(&secrets)?;
    all(
        without("no-state", false, true)?,
        Some("no-state-disk"),
        BTreeMap::new(),
        rng_b,
        Unchanged::StateDisk,
        "no state disk: fails closed",
    )
    .run(&secrets)?;

    // Each disk booted by the image of the same curves and hash and the other AEAD.
    let mut swapped_images = Vec::new();
    let mut swapped_disks = Vec::new();
    for ((combination, _), disks) in images.iter().zip(&base) {
        let Some((other, path)) = images.iter().find(|(c, _)| {
            c.sig == combination.sig
                && c.kx == combination.kx
                && c.hash == combination.hash
                && c.aead != combination.aead
        }) else {
            continue;
        };
        swapped_images.push((*other, path.clone()));
        swapped_disks.push(copy(combination, disks, "other-aead")?);
    }
    for pair in swapped_images.iter().zip(&swapped_disks) {
        // One boot at a time: the expected names differ per pair.
        let ((image_of, path), disks) = pair;
        let sealed_by = images
            .iter()
            .find(|(c, _)| {
                c.sig == image_of.sig
                    && c.kx == image_of.kx
                    && c.hash == image_of.hash
                    && c.aead != image_of.aead
            })
            .map(|(c, _)| *c)
            .ok_or("no sealing image")?;
        let values = BTreeMap::from([
            ("sealed".to_owned(), aead_name(sealed_by.aead)?.to_owned()),
            ("image".to_owned(), aead_name(image_of.aead)?.to_owned()),
        ]);
        Step {
            images: vec![(*image_of, path.clone())],
            disks: vec![disks.clone()],
            scenario: Some("other-aead"),
            values,
            rng_file: Some(rng_b.to_path_buf()),
            unchanged: Unchanged::StateDisk,
            what: "sealed with the other AEAD: fails closed, naming both",
        }
        .run(&secrets)?;
    }
    Ok(())
}

/// The standard name keystored prints for a combination's AEAD.
fn aead_name(aead: &str) -> Result<&'static str, String> {
    provider_select::aead_algorithm(aead)
        .map(provider_api::AeadAlgorithm::name)
        .ok_or_else(|| format!("no AEAD backend named {aead:?} in provider-select's table"))
}
