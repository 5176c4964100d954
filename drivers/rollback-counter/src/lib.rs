//! The anti-rollback counter: a number that can only grow, kept where the state disk
//! cannot reach it.
//!
//! The state disk can be copied and written back whole by anyone who holds it, so a
//! record on it cannot prove it is the newest one ever written. Real parts keep a
//! version number for that in storage that only counts up: anti-rollback eFuses
//! (a bank of one-time-programmable bits; boot ROMs burn one per security version) or
//! an eMMC/UFS RPMB partition (a write counter and an authenticated key only the SoC
//! holds). This crate models the fuse bank, as the OTP disk models the secret fuses:
//!
//! - **The device** is a one-sector virtio-blk disk with serial `ctr0`: [`BITS`]
//!   one-time-programmable bits. The counter's value is the number of bits set
//!   (`popcount`), so setting any bit can only raise it. The format is in
//!   `docs/state-disk.md`.
//! - **Only set, never clear.** [`SetOnly`] is the device as its holder gets it (the
//!   kernel wraps the `ctr0` disk in it before handing it out, and `cargo xtask
//!   provision` writes through it too): a write that would clear a bit is refused
//!   ([`ipc::DeviceError::ClearsProgrammedBit`]) before the device sees it, as a fuse
//!   cannot be un-blown. What it does not model: the QEMU disk is a host file, so the
//!   person running QEMU can rewrite it; the threat it stands in for is a person who
//!   holds the *state disk* (or a copy of it), not the chip.
//! - [`read`] and [`advance`] are everything keystored, the counter's one holder,
//!   does with it. An advance is written, flushed and read back before it counts.

#![no_std]
#![forbid(unsafe_code)]

use core::fmt;

use ipc::{DeviceError, RawBlockDevice, SECTOR_SIZE};

/// The bits of the counter: one sector's. The counter's largest value.
pub const BITS: u32 = (SECTOR_SIZE * 8) as u32;

/// Why the counter could not be read or advanced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CounterError {
    /// The device failed or refused the request.
    Disk(DeviceError),
    /// The value asked for is above [`BITS`]: the bank is spent.
    Exhausted,
    /// The value read back after an advance is not the value written.
    ReadBack {
        /// What was read back.
        read: u32,
    },
}

impl fmt::Display for CounterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Disk(error) => write!(f, "counter device: {error}"),
            Self::Exhausted => write!(f, "the counter is at its last value ({BITS})"),
            Self::ReadBack { read } => write!(f, "the counter read back {read} after an advance"),
        }
    }
}

impl From<DeviceError> for CounterError {
    fn from(error: DeviceError) -> Self {
        Self::Disk(error)
    }
}

/// The counter's value in `sector`: the number of bits set.
pub fn value_of(sector: &[u8; SECTOR_SIZE]) -> u32 {
    sector.iter().map(|byte| byte.count_ones()).sum()
}

/// The sector holding `value`: the lowest `value` bits set (byte 0 bit 0 first).
///
/// # Errors
/// [`CounterError::Exhausted`] above [`BITS`].
pub fn sector_of(value: u32) -> Result<[u8; SECTOR_SIZE], CounterError> {
    if value > BITS {
        return Err(CounterError::Exhausted);
    }
    let mut sector = [0u8; SECTOR_SIZE];
    let mut set = sector;
    set.fill(0xff);
    let whole = (value / 8) as usize;
    sector[..whole].copy_from_slice(&set[..whole]);
    if let Some(byte) = sector.get_mut(whole) {
        *byte = ((1u16 << (value % 8)) - 1) as u8;
    }
    Ok(sector)
}

/// Reads the counter's value.
///
/// # Errors
/// The device's failure.
pub fn read<D: RawBlockDevice + ?Sized>(disk: &mut D) -> Result<u32, CounterError> {
    let mut sector = [0u8; SECTOR_SIZE];
    disk.read(0, &mut sector)?;
    Ok(value_of(&sector))
}

/// Raises the counter to at least `to`, setting the lowest clear bits, then flushes
/// and reads it back. A counter already at or above `to` is left as it is. Returns the
/// value now held.
///
/// # Errors
/// [`CounterError::Exhausted`], the device's failure, or a read-back that does not
/// hold what was written.
pub fn advance<D: RawBlockDevice + ?Sized>(disk: &mut D, to: u32) -> Result<u32, CounterError> {
    let mut sector = [0u8; SECTOR_SIZE];
    disk.read(0, &mut sector)?;
    let mut value = value_of(&sector);
    if value >= to {
        return Ok(value);
    }
    if to > BITS {
        return Err(CounterError::Exhausted);
    }
    'bits: for byte in sector.iter_mut() {
        for bit in 0..8 {
            if value == to {
                break 'bits;
            }
            if *byte & (1 << bit) == 0 {
                *byte |= 1 << bit;
                value += 1;
            }
        }
    }
    disk.write(0, &sector)?;
    disk.flush()?;
    let now = read(disk)?;
    if now != to {
        return Err(CounterError::ReadBack { read: now });
    }
    Ok(now)
}

/// A disk whose bits can only be set: the counter device as its holder gets it.
/// Reads pass through; a write must keep every bit already set, or it is refused
/// with [`DeviceError::ClearsProgrammedBit`] and the device never sees it.
pub struct SetOnly<D>(D);

impl<D: RawBlockDevice> SetOnly<D> {
    /// The set-only view of `disk`.
    pub fn new(disk: D) -> Self {
        Self(disk)
    }

    /// Gives the disk back.
    pub fn into_inner(self) -> D {
        self.0
    }
}

impl<D: RawBlockDevice> RawBlockDevice for SetOnly<D> {
    fn sectors(&self) -> u64 {
        self.0.sectors()
    }

    fn readonly(&self) -> bool {
        self.0.readonly()
    }

    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        self.0.read(sector, buf)
    }

    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), DeviceError> {
        // One sector at a time, so no buffer but a sector's is needed: the device is
        // one sector long, and anything longer is refused by the check of the first
        // sector beyond it.
        if buf.is_empty() || !buf.len().is_multiple_of(SECTOR_SIZE) {
            return Err(DeviceError::BadRequest);
        }
        let mut old = [0u8; SECTOR_SIZE];
        for (index, new) in buf.chunks_exact(SECTOR_SIZE).enumerate() {
            let at = sector
                .checked_add(index as u64)
                .ok_or(DeviceError::BadRequest)?;
            self.0.read(at, &mut old)?;
            if old.iter().zip(new).any(|(old, new)| old & !new != 0) {
                return Err(DeviceError::ClearsProgrammedBit);
            }
        }
        self.0.write(sector, buf)
    }

    fn flush(&mut self) -> Result<(), DeviceError> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;
    use std::vec::Vec;

    /// A plain one-sector disk in memory.
    struct Plain(Vec<u8>);

    impl RawBlockDevice for Plain {
        fn sectors(&self) -> u64 {
            (self.0.len() / SECTOR_SIZE) as u64
        }
        fn readonly(&self) -> bool {
            false
        }
        fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
            let at = sector as usize * SECTOR_SIZE;
            let src = self
                .0
                .get(at..at + buf.len())
                .ok_or(DeviceError::BadRequest)?;
            buf.copy_from_slice(src);
            Ok(())
        }
        fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), DeviceError> {
            let at = sector as usize * SECTOR_SIZE;
            let dst = self
                .0
                .get_mut(at..at + buf.len())
                .ok_or(DeviceError::BadRequest)?;
            dst.copy_from_slice(buf);
            Ok(())
        }
        fn flush(&mut self) -> Result<(), DeviceError> {
            Ok(())
        }
    }

    #[test]
    fn the_counter_only_counts_up() {
        let mut disk = SetOnly::new(Plain(vec![0; SECTOR_SIZE]));
        assert_eq!(read(&mut disk), Ok(0));
        assert_eq!(advance(&mut disk, 1), Ok(1));
        assert_eq!(advance(&mut disk, 13), Ok(13));
        assert_eq!(advance(&mut disk, 5), Ok(13), "never down");
        assert_eq!(read(&mut disk), Ok(13));
        assert_eq!(disk.into_inner().0[..2], [0xff, 0x1f]);
        let mut full = SetOnly::new(Plain(vec![0xff; SECTOR_SIZE]));
        assert_eq!(read(&mut full), Ok(BITS));
        assert_eq!(advance(&mut full, BITS + 1), Err(CounterError::Exhausted));
    }

    #[test]
    fn a_write_that_clears_a_bit_never_reaches_the_device() {
        let mut disk = SetOnly::new(Plain(vec![0; SECTOR_SIZE]));
        advance(&mut disk, 9).unwrap();
        let mut older = sector_of(3).unwrap();
        assert_eq!(
            disk.write(0, &older),
            Err(DeviceError::ClearsProgrammedBit),
            "rolling the counter back"
        );
        older[100] = 0x80;
        assert_eq!(
            disk.write(0, &older),
            Err(DeviceError::ClearsProgrammedBit),
            "even with another bit set"
        );
        assert_eq!(read(&mut disk), Ok(9), "unchanged");
        // Setting bits anywhere is allowed, and counts.
        let mut more = sector_of(9).unwrap();
        more[200] = 0x03;
        disk.write(0, &more).unwrap();
        assert_eq!(read(&mut disk), Ok(11));
        assert_eq!(disk.write(0, &[0; 3]), Err(DeviceError::BadRequest));
    }

    #[test]
    fn values_and_sectors_agree() {
        for value in [0, 1, 7, 8, 9, 100, BITS - 1, BITS] {
            assert_eq!(value_of(&sector_of(value).unwrap()), value);
        }
        assert_eq!(sector_of(BITS + 1), Err(CounterError::Exhausted));
    }
}
