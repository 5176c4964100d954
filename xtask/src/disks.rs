//! The disks a boot gets: the state disk (`state.img`, serial `state0`), the OTP
//! disk (`otp.img`, serial `otp0`, read-only) and the anti-rollback counter
//! (`counter.img`, serial `ctr0`, one sector of one-time-programmable bits), as QEMU
//! arguments.
//!
//! A state directory holds the files and keeps them between boots; a file that is
//! missing is created: an empty (zeroed) state disk, an OTP disk holding 32 bytes from
//! the host's `/dev/urandom`, padded to one sector, and a counter at 0 (a zeroed
//! sector). The secret never reaches a log. The OTP disk and the counter stand for
//! parts of the chip: a person who holds (or copies back) only `state.img` has not
//! touched them.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The state disk's size: room for the record store (257 sectors) and to spare.
pub const STATE_SECTORS: usize = 512;
/// The OTP disk's size: one sector.
pub const OTP_LEN: usize = 512;
/// The counter's size: one sector.
pub const COUNTER_LEN: usize = 512;

/// What a boot gets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiskSet {
    /// The state disk image, if the boot gets one.
    pub state: Option<PathBuf>,
    /// The OTP disk image, if the boot gets one.
    pub otp: Option<PathBuf>,
    /// The rollback counter, if the boot gets one.
    pub counter: Option<PathBuf>,
}

impl DiskSet {
    /// The disks of state directory `dir`, created where missing; no OTP disk when
    /// `no_otp` (the file is kept, only not attached).
    pub fn in_dir(dir: &Path, no_otp: bool) -> Result<Self, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let state = dir.join("state.img");
        if !state.exists() {
            write(&state, &vec![0u8; STATE_SECTORS * 512])?;
        }
        let otp = dir.join("otp.img");
        let otp_existed = otp.exists();
        if !otp_existed {
            write(&otp, &random_otp()?)?;
        }
        let counter = dir.join("counter.img");
        if !counter.exists() {
            // A counter is part of the device: one made anew beside a device that had
            // one would accept every store it ever refused.
            if otp_existed {
                return Err(format!(
                    "{} has a device (otp.img) but no counter.img: a device's rollback \
                     counter cannot be made again; provision fresh disks in another \
                     directory (disks from before the counter existed need that too)",
                    dir.display()
                ));
            }
            write(&counter, &[0u8; COUNTER_LEN])?;
        }
        Ok(Self {
            state: Some(state),
            otp: (!no_otp).then_some(otp),
            counter: Some(counter),
        })
    }

    /// Fresh disks in `dir`: whatever was there is replaced.
    pub fn fresh(dir: &Path, no_otp: bool) -> Result<Self, String> {
        for name in ["state.img", "otp.img", "counter.img"] {
            let path = dir.join(name);
            if path.exists() {
                std::fs::remove_file(&path)
                    .map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
            }
        }
        Self::in_dir(dir, no_otp)
    }

    /// A copy of these disks in `dir` (replacing whatever was there), for a scenario
    /// to alter; a disk this set lacks stays absent.
    pub fn copy_to(&self, dir: &Path) -> Result<Self, String> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut set = Self::default();
        for (source, name, slot) in [
            (&self.state, "state.img", &mut set.state),
            (&self.otp, "otp.img", &mut set.otp),
            (&self.counter, "counter.img", &mut set.counter),
        ] {
            if let Some(source) = source {
                let target = dir.join(name);
                std::fs::copy(source, &target)
                    .map_err(|e| format!("cannot copy {}: {e}", source.display()))?;
                *slot = Some(target);
            }
        }
        Ok(set)
    }

    /// The QEMU arguments that attach the disks, each found by its serial in the guest.
    pub fn qemu_args(&self, qemu: &mut Command) {
        if let Some(state) = &self.state {
            qemu.arg("-drive")
                .arg(format!(
                    "file={},format=raw,if=none,id=state,cache=writethrough",
                    state.display()
                ))
                .args(["-device", "virtio-blk-device,drive=state,serial=state0"]);
        }
        if let Some(otp) = &self.otp {
            qemu.arg("-drive")
                .arg(format!(
                    "file={},format=raw,if=none,id=otp,readonly=on",
                    otp.display()
                ))
                .args(["-device", "virtio-blk-device,drive=otp,serial=otp0"]);
        }
        if let Some(counter) = &self.counter {
            qemu.arg("-drive")
                .arg(format!(
                    "file={},format=raw,if=none,id=ctr,cache=writethrough",
                    counter.display()
                ))
                .args(["-device", "virtio-blk-device,drive=ctr,serial=ctr0"]);
        }
    }
}

/// `N` bytes from the host's `/dev/urandom` (the factory's source of secrets).
pub fn urandom<const N: usize>() -> Result<[u8; N], String> {
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut urandom| urandom.read_exact(&mut bytes))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    Ok(bytes)
}

/// An OTP image: 32 random bytes, then zeros to one sector.
pub fn random_otp() -> Result<Vec<u8>, String> {
    let mut secret = vec![0u8; OTP_LEN];
    secret[..32].copy_from_slice(&urandom::<32>()?);
    Ok(secret)
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
