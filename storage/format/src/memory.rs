//! A disk in memory, for tests and the host runner, with the faults a real disk has:
//! a write torn after any number of bytes, and failing requests. It checks every
//! request the way the virtio-blk frontend does (non-zero multiple of a sector,
//! within the disk, no writes to a read-only disk).

use alloc::vec;
use alloc::vec::Vec;

use ipc::{DeviceError, RawBlockDevice, SECTOR_SIZE};

/// A disk of sectors in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryDisk {
    bytes: Vec<u8>,
    readonly: bool,
    /// The next write stops after this many bytes (then fails with `Failed`, as a
    /// power cut would leave it).
    pub tear_next_write_after: Option<usize>,
    /// Writes that complete before the one [`MemoryDisk::tear_next_write_after`]
    /// tears (0: the next write is torn).
    pub writes_before_tear: usize,
    /// Every request fails with `Failed`.
    pub failing: bool,
    /// Writes completed.
    pub writes: usize,
}

impl MemoryDisk {
    /// A zeroed disk of `sectors` sectors.
    pub fn new(sectors: usize) -> Self {
        Self::from_bytes(vec![0; sectors * SECTOR_SIZE], false)
    }

    /// A disk holding `bytes` (padded with zeros to whole sectors).
    pub fn from_bytes(mut bytes: Vec<u8>, readonly: bool) -> Self {
        bytes.resize(bytes.len().next_multiple_of(SECTOR_SIZE), 0);
        Self {
            bytes,
            readonly,
            tear_next_write_after: None,
            writes_before_tear: 0,
            failing: false,
            writes: 0,
        }
    }

    /// The disk's contents.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The disk's contents, to damage on purpose.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }

    fn range(&self, sector: u64, len: usize) -> Result<core::ops::Range<usize>, DeviceError> {
        if len == 0 || !len.is_multiple_of(SECTOR_SIZE) {
            return Err(DeviceError::BadRequest);
        }
        let start = usize::try_from(sector)
            .ok()
            .and_then(|s| s.checked_mul(SECTOR_SIZE))
            .ok_or(DeviceError::BadRequest)?;
        let end = start.checked_add(len).ok_or(DeviceError::BadRequest)?;
        if end > self.bytes.len() {
            return Err(DeviceError::BadRequest);
        }
        Ok(start..end)
    }
}

impl RawBlockDevice for MemoryDisk {
    fn sectors(&self) -> u64 {
        (self.bytes.len() / SECTOR_SIZE) as u64
    }

    fn readonly(&self) -> bool {
        self.readonly
    }

    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        let range = self.range(sector, buf.len())?;
        if self.failing {
            return Err(DeviceError::Failed);
        }
        buf.copy_from_slice(&self.bytes[range]);
        Ok(())
    }

    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), DeviceError> {
        let range = self.range(sector, buf.len())?;
        if self.readonly {
            return Err(DeviceError::ReadOnly);
        }
        if self.failing {
            return Err(DeviceError::Failed);
        }
        if self.tear_next_write_after.is_some() && self.writes_before_tear > 0 {
            self.writes_before_tear -= 1;
        } else if let Some(after) = self.tear_next_write_after.take() {
            let torn = after.min(buf.len());
            self.bytes[range.start..range.start + torn].copy_from_slice(&buf[..torn]);
            return Err(DeviceError::Failed);
        }
        self.bytes[range].copy_from_slice(buf);
        self.writes += 1;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), DeviceError> {
        if self.failing {
            Err(DeviceError::Failed)
        } else {
            Ok(())
        }
    }
}
