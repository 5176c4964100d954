//! The record store: small records in fixed entries of two slots, updated so that a
//! torn write can only damage the slot being written.
//!
//! The layout is specified byte by byte in `docs/state-disk.md`. In short: sector 0
//! holds a superblock; then [`ENTRIES`] entries of two slots of [`SLOT_SECTORS`]
//! sectors each. A slot holds one version of one record (or a tombstone) under a
//! 20-byte header with a sequence number and a CRC-32C over header and payload.
//!
//! - **Reading.** Each entry's current state is its newest *valid* slot (CRC checks,
//!   sequence compared in serial-number arithmetic, so it may wrap). A slot that is not
//!   all zero and fails its check is *damaged* and ignored: a torn newer write leaves
//!   the older version current.
//! - **Writing.** A new version goes to the entry's other slot (never the current one)
//!   with the next sequence number, then the disk is flushed. A record keeps its entry
//!   for life; a new record takes an entry with no valid live record and no damage.
//! - **Retiring.** Once the new version is flushed and read back intact, the older slot
//!   is zeroed (and flushed): the store never falls back to a version older than one
//!   that was completely written. Damage to the newest version afterwards is
//!   corruption, not a torn update, and fails closed. A write torn before it completed
//!   still leaves the previous version current. Opening the store clears, in every
//!   entry with a valid current slot, whatever else the other slot holds (an older
//!   version whose retirement a power cut interrupted, or a torn write).
//! - **Absence is proven, not assumed.** Damage in an entry whose current slot is a
//!   live record belongs to that record (a torn update). Any other damage could be
//!   anyone's record, so while it exists a lookup of a record that is not live answers
//!   [`StoreError::Corrupt`], never [`StoreError::NotFound`]: a caller that would
//!   create a record when it is absent (keystored makes a new device key) must not be
//!   told "absent" about a record that may be there.
//! - **Formatting is lazy.** An all-zero disk is a valid empty store; the superblock is
//!   written with the first record, so a boot that stores nothing writes nothing.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crc::{CRC_32_ISCSI, Crc};
use ipc::{DeviceError, RawBlockDevice, SECTOR_SIZE};

/// The superblock's first eight bytes.
pub const SUPERBLOCK_MAGIC: [u8; 8] = *b"DSBSTATE";
/// The format version this crate reads and writes.
pub const FORMAT_VERSION: u16 = 1;
/// Sectors per slot.
pub const SLOT_SECTORS: u16 = 4;
/// Bytes per slot.
pub const SLOT_LEN: usize = SLOT_SECTORS as usize * SECTOR_SIZE;
/// Entries on the disk.
pub const ENTRIES: u16 = 32;
/// Sectors the store needs: the superblock and every slot.
pub const SECTORS_NEEDED: u64 = 1 + ENTRIES as u64 * 2 * SLOT_SECTORS as u64;
/// A slot's first four bytes.
pub const SLOT_MAGIC: [u8; 4] = *b"SREC";
/// Length of a slot's header; the payload follows it.
pub const SLOT_HEADER_LEN: usize = 20;
/// The longest record a caller may store (the format would allow a slot's whole
/// payload area, [`SLOT_LEN`] - [`SLOT_HEADER_LEN`]).
pub const MAX_RECORD_LEN: usize = 1024;
/// The most live records one owner may hold, so no caller can fill the disk.
pub const MAX_RECORDS_PER_OWNER: usize = 8;

const CASTAGNOLI: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);

/// A record's name: the owner (the kernel-stamped [`ipc::ServiceId`] number of the
/// task that stored it) and the owner's record id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordKey {
    /// Whose record.
    pub owner: u16,
    /// Which of the owner's records.
    pub id: u16,
}

/// Why the store could not do what was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The disk failed or refused the request.
    Disk(DeviceError),
    /// The disk is smaller than the store.
    DiskTooSmall {
        /// Sectors the disk has.
        sectors: u64,
    },
    /// Sector 0 is neither all zero nor a valid superblock of this version, or slots
    /// hold data on a disk without a superblock.
    BadSuperblock,
    /// The record is not in the store, and no damaged slot could be it.
    NotFound,
    /// The record (or, for an absent record, some slot that could be it) fails its
    /// check.
    Corrupt,
    /// No free entry, or the owner already holds [`MAX_RECORDS_PER_OWNER`] records.
    Full,
    /// A record longer than [`MAX_RECORD_LEN`].
    TooLarge {
        /// Its length.
        len: usize,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Disk(error) => write!(f, "disk: {error}"),
            Self::DiskTooSmall { sectors } => {
                write!(
                    f,
                    "disk of {sectors} sectors, the store needs {SECTORS_NEEDED}"
                )
            }
            Self::BadSuperblock => f.write_str("no valid superblock"),
            Self::NotFound => f.write_str("no such record"),
            Self::Corrupt => f.write_str("stored data fails its check"),
            Self::Full => f.write_str("no room for another record"),
            Self::TooLarge { len } => {
                write!(f, "record of {len} bytes exceeds {MAX_RECORD_LEN}")
            }
        }
    }
}

impl From<DeviceError> for StoreError {
    fn from(error: DeviceError) -> Self {
        Self::Disk(error)
    }
}

/// What a valid slot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotKind {
    /// A version of a record.
    Live = 1,
    /// The record was deleted.
    Tombstone = 2,
}

/// A valid slot's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotHeader {
    /// Record or tombstone.
    pub kind: SlotKind,
    /// Whose record.
    pub key: RecordKey,
    /// Payload length.
    pub len: u16,
    /// Version number, compared in serial-number arithmetic.
    pub sequence: u32,
}

/// What a slot on the disk is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotState {
    /// All zero: never written.
    Empty,
    /// Not all zero, and not a valid slot.
    Damaged,
    /// A valid slot.
    Valid(SlotHeader),
}

/// Whether sequence number `a` is newer than `b`, in serial-number arithmetic
/// (RFC 1982): correct across the wrap from `u32::MAX` to 0.
pub fn newer(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// Encodes a slot: header, payload, zero padding to [`SLOT_LEN`].
///
/// # Panics
/// When `payload` does not fit in a slot (callers check [`MAX_RECORD_LEN`] first).
pub fn encode_slot(kind: SlotKind, key: RecordKey, sequence: u32, payload: &[u8]) -> Vec<u8> {
    assert!(
        payload.len() <= SLOT_LEN - SLOT_HEADER_LEN,
        "payload fits a slot"
    );
    let mut slot = vec![0u8; SLOT_LEN];
    slot[..4].copy_from_slice(&SLOT_MAGIC);
    slot[4] = FORMAT_VERSION as u8;
    slot[5] = kind as u8;
    slot[6..8].copy_from_slice(&key.owner.to_le_bytes());
    slot[8..10].copy_from_slice(&key.id.to_le_bytes());
    slot[10..12].copy_from_slice(&(payload.len() as u16).to_le_bytes());
    slot[12..16].copy_from_slice(&sequence.to_le_bytes());
    slot[SLOT_HEADER_LEN..SLOT_HEADER_LEN + payload.len()].copy_from_slice(payload);
    let crc = slot_crc(&slot[..16], payload);
    slot[16..20].copy_from_slice(&crc.to_le_bytes());
    slot
}

fn slot_crc(header: &[u8], payload: &[u8]) -> u32 {
    let mut digest = CASTAGNOLI.digest();
    digest.update(header);
    digest.update(payload);
    digest.finalize()
}

/// Decodes a slot's bytes ([`SLOT_LEN`] of them).
pub fn decode_slot(slot: &[u8]) -> SlotState {
    if slot.iter().all(|&b| b == 0) {
        return SlotState::Empty;
    }
    let parse = || {
        if slot.len() != SLOT_LEN || slot[..4] != SLOT_MAGIC || slot[4] != FORMAT_VERSION as u8 {
            return None;
        }
        let kind = match slot[5] {
            1 => SlotKind::Live,
            2 => SlotKind::Tombstone,
            _ => return None,
        };
        let u16_at = |at: usize| u16::from_le_bytes([slot[at], slot[at + 1]]);
        let len = u16_at(10);
        let payload = slot.get(SLOT_HEADER_LEN..SLOT_HEADER_LEN + usize::from(len))?;
        let stored = u32::from_le_bytes(slot[16..20].try_into().ok()?);
        if stored != slot_crc(&slot[..16], payload) {
            return None;
        }
        Some(SlotHeader {
            kind,
            key: RecordKey {
                owner: u16_at(6),
                id: u16_at(8),
            },
            len,
            sequence: u32::from_le_bytes(slot[12..16].try_into().ok()?),
        })
    };
    parse().map_or(SlotState::Damaged, SlotState::Valid)
}

/// The superblock sector of this format.
pub fn encode_superblock() -> [u8; SECTOR_SIZE] {
    let mut sector = [0u8; SECTOR_SIZE];
    sector[..8].copy_from_slice(&SUPERBLOCK_MAGIC);
    sector[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    sector[10..12].copy_from_slice(&SLOT_SECTORS.to_le_bytes());
    sector[12..14].copy_from_slice(&ENTRIES.to_le_bytes());
    let crc = CASTAGNOLI.checksum(&sector[..16]);
    sector[16..20].copy_from_slice(&crc.to_le_bytes());
    sector
}

/// The first sector of slot `slot` (0 or 1) of entry `entry`.
pub fn slot_sector(entry: u16, slot: usize) -> u64 {
    1 + (u64::from(entry) * 2 + slot as u64) * u64::from(SLOT_SECTORS)
}

/// One entry's two slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    slots: [SlotState; 2],
}

impl Entry {
    /// The newest valid slot.
    fn current(&self) -> Option<(usize, SlotHeader)> {
        match self.slots {
            [SlotState::Valid(a), SlotState::Valid(b)] => Some(if newer(b.sequence, a.sequence) {
                (1, b)
            } else {
                (0, a)
            }),
            [SlotState::Valid(a), _] => Some((0, a)),
            [_, SlotState::Valid(b)] => Some((1, b)),
            _ => None,
        }
    }

    /// The live record this entry holds, if its current slot is one.
    fn live(&self) -> Option<(usize, SlotHeader)> {
        self.current()
            .filter(|(_, header)| header.kind == SlotKind::Live)
    }

    fn damaged(&self) -> bool {
        self.slots.contains(&SlotState::Damaged)
    }

    /// Damage no live record accounts for: it could be any record.
    fn unaccounted_damage(&self) -> bool {
        self.damaged() && self.live().is_none()
    }

    /// Whether a new record may take this entry.
    fn is_free(&self) -> bool {
        !self.damaged() && self.live().is_none()
    }

    /// The slot a new version goes to: never the current one.
    fn target(&self) -> usize {
        self.current().map_or(0, |(current, _)| 1 - current)
    }

    fn next_sequence(&self) -> u32 {
        self.current()
            .map_or(1, |(_, header)| header.sequence.wrapping_add(1))
    }
}

/// The record store on a disk.
pub struct RecordStore<D: RawBlockDevice> {
    disk: D,
    formatted: bool,
    entries: Vec<Entry>,
}

impl<D: RawBlockDevice> RecordStore<D> {
    /// Opens the store on `disk`: checks the superblock (an all-zero disk is an empty
    /// store), reads every slot, and clears the non-current slot of every entry that
    /// has a valid current one (an interrupted retirement or a torn write: the only
    /// time opening writes).
    ///
    /// # Errors
    /// [`StoreError::DiskTooSmall`], [`StoreError::BadSuperblock`], or the disk's
    /// failure.
    pub fn open(mut disk: D) -> Result<Self, StoreError> {
        let sectors = disk.sectors();
        if sectors < SECTORS_NEEDED {
            return Err(StoreError::DiskTooSmall { sectors });
        }
        let mut superblock = [0u8; SECTOR_SIZE];
        disk.read(0, &mut superblock)?;
        let formatted = if superblock.iter().all(|&b| b == 0) {
            false
        } else if superblock == encode_superblock() {
            true
        } else {
            return Err(StoreError::BadSuperblock);
        };
        let mut slot = vec![0u8; SLOT_LEN];
        let mut entries = Vec::with_capacity(usize::from(ENTRIES));
        for entry in 0..ENTRIES {
            let mut states = [SlotState::Empty; 2];
            for (index, state) in states.iter_mut().enumerate() {
                disk.read(slot_sector(entry, index), &mut slot)?;
                *state = decode_slot(&slot);
            }
            entries.push(Entry { slots: states });
        }
        if !formatted
            && entries
                .iter()
                .any(|e| e.slots.iter().any(|s| *s != SlotState::Empty))
        {
            return Err(StoreError::BadSuperblock);
        }
        let mut store = Self {
            disk,
            formatted,
            entries,
        };
        // Writes only ever go to the slot that is not current, so beside a valid
        // current slot the other one holds an older version (a power cut came between
        // a completed write and its retirement) or a torn write (of a newer version
        // that never completed, or of a retirement): either way it may go, and the
        // current version stays what it is. Clear it before anything is served, so no
        // older version and no damage outlives the open.
        for entry in 0..ENTRIES {
            let state = store.entries[usize::from(entry)];
            if let Some((current, _)) = state.current()
                && state.slots[1 - current] != SlotState::Empty
            {
                store.retire(entry, 1 - current)?;
            }
        }
        Ok(store)
    }

    /// The live records held.
    pub fn len(&self) -> usize {
        self.entries.iter().filter(|e| e.live().is_some()).count()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether some slot is damaged in a way no live record accounts for (a lookup of
    /// an absent record then answers [`StoreError::Corrupt`]).
    pub fn has_unaccounted_damage(&self) -> bool {
        self.entries.iter().any(Entry::unaccounted_damage)
    }

    /// Gives the disk back.
    pub fn into_disk(self) -> D {
        self.disk
    }

    /// Where record `key`'s current version lies: its entry, slot and header.
    pub fn locate(&self, key: RecordKey) -> Option<(u16, usize, SlotHeader)> {
        self.find_live(key)
    }

    fn find_live(&self, key: RecordKey) -> Option<(u16, usize, SlotHeader)> {
        self.entries.iter().enumerate().find_map(|(index, entry)| {
            let (slot, header) = entry.live()?;
            (header.key == key).then_some((index as u16, slot, header))
        })
    }

    fn absent(&self) -> StoreError {
        if self.has_unaccounted_damage() {
            StoreError::Corrupt
        } else {
            StoreError::NotFound
        }
    }

    /// Reads record `key`.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when it is provably absent, [`StoreError::Corrupt`]
    /// when it (or damage that could be it) fails its check, or the disk's failure.
    pub fn get(&mut self, key: RecordKey) -> Result<Vec<u8>, StoreError> {
        let Some((entry, slot, header)) = self.find_live(key) else {
            return Err(self.absent());
        };
        let mut bytes = vec![0u8; SLOT_LEN];
        self.disk.read(slot_sector(entry, slot), &mut bytes)?;
        // The disk is read again, not trusted from the scan: it may have changed.
        if decode_slot(&bytes) != SlotState::Valid(header) {
            return Err(StoreError::Corrupt);
        }
        let start = SLOT_HEADER_LEN;
        Ok(bytes[start..start + usize::from(header.len)].to_vec())
    }

    /// Stores `payload` as the new version of record `key`, then retires the previous
    /// version's slot.
    ///
    /// # Errors
    /// [`StoreError::TooLarge`], [`StoreError::Full`], [`StoreError::Corrupt`] when the
    /// version written does not read back intact, or the disk's failure. After an error
    /// the record's current version is the previous one (the write did not complete) or
    /// the new one (it completed and only the retirement failed), never an older one.
    pub fn put(&mut self, key: RecordKey, payload: &[u8]) -> Result<(), StoreError> {
        if payload.len() > MAX_RECORD_LEN {
            return Err(StoreError::TooLarge { len: payload.len() });
        }
        let entry = match self.find_live(key) {
            Some((entry, ..)) => entry,
            None => {
                let held = self
                    .entries
                    .iter()
                    .filter(|e| e.live().is_some_and(|(_, h)| h.key.owner == key.owner))
                    .count();
                if held >= MAX_RECORDS_PER_OWNER {
                    return Err(StoreError::Full);
                }
                let free = self.entries.iter().position(Entry::is_free);
                free.ok_or(StoreError::Full)? as u16
            }
        };
        self.write(entry, SlotKind::Live, key, payload)
    }

    /// Deletes record `key` (a tombstone becomes its entry's current version).
    ///
    /// # Errors
    /// As [`RecordStore::get`] for an absent record, or the disk's failure.
    pub fn delete(&mut self, key: RecordKey) -> Result<(), StoreError> {
        let Some((entry, ..)) = self.find_live(key) else {
            return Err(self.absent());
        };
        self.write(entry, SlotKind::Tombstone, key, &[])
    }

    fn write(
        &mut self,
        entry: u16,
        kind: SlotKind,
        key: RecordKey,
        payload: &[u8],
    ) -> Result<(), StoreError> {
        if !self.formatted {
            self.disk.write(0, &encode_superblock())?;
            self.disk.flush()?;
            self.formatted = true;
        }
        let state = &mut self.entries[usize::from(entry)];
        let target = state.target();
        let sequence = state.next_sequence();
        let bytes = encode_slot(kind, key, sequence, payload);
        let SlotState::Valid(header) = decode_slot(&bytes) else {
            unreachable!("encode_slot writes a valid slot");
        };
        // Until the write is known complete, the target slot is unknown content.
        state.slots[target] = SlotState::Damaged;
        self.disk.write(slot_sector(entry, target), &bytes)?;
        self.disk.flush()?;
        // Complete means read back intact: only then may the older version go.
        let mut back = vec![0u8; SLOT_LEN];
        self.disk.read(slot_sector(entry, target), &mut back)?;
        if back != bytes {
            return Err(StoreError::Corrupt);
        }
        self.entries[usize::from(entry)].slots[target] = SlotState::Valid(header);
        let older = 1 - target;
        if self.entries[usize::from(entry)].slots[older] != SlotState::Empty {
            self.retire(entry, older)?;
        }
        Ok(())
    }

    /// Zeroes slot `slot` of `entry` and flushes: the older version of a record whose
    /// newer version is complete can never become current again. A retirement torn
    /// part-way leaves a damaged slot, which the live newer version accounts for.
    fn retire(&mut self, entry: u16, slot: usize) -> Result<(), StoreError> {
        self.entries[usize::from(entry)].slots[slot] = SlotState::Damaged;
        self.disk
            .write(slot_sector(entry, slot), &vec![0u8; SLOT_LEN])?;
        self.disk.flush()?;
        self.entries[usize::from(entry)].slots[slot] = SlotState::Empty;
        Ok(())
    }
}
