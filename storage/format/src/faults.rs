//! Deliberate damage, for the fault tests and scenarios: what a person holding the
//! disk, or a power cut, does to a record. Never used by the image.

use alloc::vec;

use ipc::{RawBlockDevice, SECTOR_SIZE};

use crate::store::{
    RecordKey, RecordStore, SLOT_LEN, SlotKind, StoreError, encode_slot, slot_sector,
};

/// Stores record `key` again with payload byte `at` flipped, as a valid newer version:
/// what someone who knows the format (but not the device's keys) can write.
///
/// # Errors
/// The store's error.
pub fn tamper_record<D: RawBlockDevice>(
    disk: D,
    key: RecordKey,
    at: usize,
) -> Result<D, StoreError> {
    let mut store = RecordStore::open(disk)?;
    let mut payload = store.get(key)?;
    let byte = payload.get_mut(at).ok_or(StoreError::NotFound)?;
    *byte ^= 0x01;
    store.put(key, &payload)?;
    Ok(store.into_disk())
}

/// Writes the first `torn_after` bytes of a newer version of record `key` (the same
/// payload, the next sequence number) over the slot a real update would use, and
/// stops: what a power cut during the update leaves.
///
/// # Errors
/// The store's or the disk's error.
pub fn tear_update<D: RawBlockDevice>(
    disk: D,
    key: RecordKey,
    torn_after: usize,
) -> Result<D, StoreError> {
    let mut store = RecordStore::open(disk)?;
    let payload = store.get(key)?;
    let (entry, current, header) = store.locate(key).ok_or(StoreError::NotFound)?;
    let target = 1 - current;
    let newer = encode_slot(
        SlotKind::Live,
        key,
        header.sequence.wrapping_add(1),
        &payload,
    );
    let mut disk = store.into_disk();
    let mut slot = vec![0u8; SLOT_LEN];
    let first = slot_sector(entry, target);
    disk.read(first, &mut slot)?;
    let torn = torn_after.min(SLOT_LEN);
    slot[..torn].copy_from_slice(&newer[..torn]);
    // Whole sectors go back; only the first `torn` bytes differ from what was there.
    let sectors = torn.div_ceil(SECTOR_SIZE).max(1);
    disk.write(first, &slot[..sectors * SECTOR_SIZE])?;
    disk.flush()?;
    Ok(disk)
}
