//! The record store on an in-memory disk: round trips, torn writes at every byte
//! offset of a slot write, both slots bad, the sequence wrap, bounds.

use ipc::{DeviceError, RawBlockDevice, SECTOR_SIZE};
use state_format::memory::MemoryDisk;
use state_format::store::{
    ENTRIES, MAX_RECORD_LEN, MAX_RECORDS_PER_OWNER, RecordKey, RecordStore, SECTORS_NEEDED,
    SLOT_HEADER_LEN, SLOT_LEN, SlotKind, StoreError, encode_slot, encode_superblock, newer,
    slot_sector,
};

const KEY: RecordKey = RecordKey { owner: 3, id: 1 };
const OTHER: RecordKey = RecordKey { owner: 4, id: 1 };

fn disk() -> MemoryDisk {
    MemoryDisk::new(512)
}

fn reopen(store: RecordStore<MemoryDisk>) -> RecordStore<MemoryDisk> {
    RecordStore::open(store.into_disk()).expect("reopens")
}

fn version(n: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| n.wrapping_mul(31).wrapping_add(i as u8))
        .collect()
}

#[test]
fn records_round_trip_per_owner_and_survive_reopening() {
    let mut store = RecordStore::open(disk()).unwrap();
    assert_eq!(store.get(KEY), Err(StoreError::NotFound));
    store.put(KEY, b"seed").unwrap();
    store.put(OTHER, b"peers").unwrap();
    store.put(KEY, b"seed, again").unwrap();
    let mut store = reopen(store);
    assert_eq!(store.get(KEY).unwrap(), b"seed, again");
    assert_eq!(store.get(OTHER).unwrap(), b"peers");
    assert_eq!(
        store.get(RecordKey { owner: 5, id: 1 }),
        Err(StoreError::NotFound),
        "owners are namespaces"
    );
    assert_eq!(store.len(), 2);
    store.delete(KEY).unwrap();
    let mut store = reopen(store);
    assert_eq!(store.get(KEY), Err(StoreError::NotFound));
    assert_eq!(store.delete(KEY), Err(StoreError::NotFound));
    store.put(KEY, b"back").unwrap();
    assert_eq!(reopen(store).get(KEY).unwrap(), b"back");
}

#[test]
fn a_store_that_stores_nothing_writes_nothing() {
    let mut store = RecordStore::open(disk()).unwrap();
    assert_eq!(store.get(KEY), Err(StoreError::NotFound));
    let disk = store.into_disk();
    assert_eq!(disk.writes, 0);
    assert!(disk.bytes().iter().all(|&b| b == 0));
    let mut store = RecordStore::open(disk).unwrap();
    store.put(KEY, b"x").unwrap();
    let disk = store.into_disk();
    assert_eq!(&disk.bytes()[..SECTOR_SIZE], &encode_superblock());
}

/// The byte count of a slot write after which the new version is complete: header
/// and payload (the CRC sits in the header, the padding after the payload is zero).
fn complete_after(payload: usize) -> usize {
    SLOT_HEADER_LEN + payload
}

#[test]
fn a_write_torn_at_any_byte_leaves_the_previous_version_current() {
    // Two histories: the slot written next was empty, or held an older version.
    for earlier_versions in [1u8, 2] {
        let mut base = RecordStore::open(disk()).unwrap();
        for n in 0..earlier_versions {
            base.put(KEY, &version(n, 100 + usize::from(n))).unwrap();
        }
        let previous = version(
            earlier_versions - 1,
            100 + usize::from(earlier_versions - 1),
        );
        let base = base.into_disk();
        let next = version(9, 300);
        for torn_at in 0..=SLOT_LEN {
            let mut disk = base.clone();
            disk.tear_next_write_after = Some(torn_at);
            let mut store = RecordStore::open(disk).unwrap();
            assert_eq!(
                store.put(KEY, &next),
                Err(StoreError::Disk(DeviceError::Failed))
            );
            assert_eq!(
                store.get(KEY).unwrap(),
                previous,
                "in memory, torn at {torn_at}"
            );
            let mut store = reopen(store);
            let got = store.get(KEY).unwrap();
            if torn_at < complete_after(next.len()) {
                assert_eq!(got, previous, "reopened, torn at {torn_at}");
            } else {
                assert_eq!(got, next, "reopened, complete at {torn_at}");
            }
            assert_eq!(
                store.get(OTHER),
                Err(StoreError::NotFound),
                "damage a live record accounts for does not hide absence (torn at {torn_at})"
            );
            // The next write repairs: it goes to the damaged slot.
            store.put(KEY, b"repaired").unwrap();
            assert_eq!(reopen(store).get(KEY).unwrap(), b"repaired");
        }
    }
}

#[test]
fn a_first_write_torn_at_any_byte_never_reads_as_absent() {
    let payload = version(7, 64);
    for torn_at in 0..=SLOT_LEN {
        // Format first, so the torn write is the slot's.
        let mut store = RecordStore::open(disk()).unwrap();
        store.put(OTHER, b"formats the disk").unwrap();
        let mut disk = store.into_disk();
        disk.tear_next_write_after = Some(torn_at);
        let mut store = RecordStore::open(disk).unwrap();
        assert!(store.put(KEY, &payload).is_err());
        let mut store = reopen(store);
        let got = store.get(KEY);
        if torn_at == 0 {
            assert_eq!(got, Err(StoreError::NotFound), "nothing reached the disk");
        } else if torn_at < complete_after(payload.len()) {
            assert_eq!(
                got,
                Err(StoreError::Corrupt),
                "torn at {torn_at}: a damaged slot could be the record"
            );
            assert_eq!(
                store.get(RecordKey { owner: 9, id: 9 }),
                Err(StoreError::Corrupt),
                "nor can any other absence be proven"
            );
            assert_eq!(store.get(OTHER).unwrap(), b"formats the disk");
        } else {
            assert_eq!(got.unwrap(), payload, "complete at {torn_at}");
        }
    }
}

#[test]
fn a_record_whose_two_slots_are_bad_is_corrupt_not_absent() {
    let mut store = RecordStore::open(disk()).unwrap();
    store.put(KEY, b"one").unwrap();
    store.put(KEY, b"two").unwrap();
    let mut disk = store.into_disk();
    for slot in 0..2 {
        let at = slot_sector(0, slot) as usize * SECTOR_SIZE + SLOT_HEADER_LEN;
        disk.bytes_mut()[at] ^= 0x40;
    }
    let mut store = RecordStore::open(disk).unwrap();
    assert_eq!(store.get(KEY), Err(StoreError::Corrupt));
    assert_eq!(store.get(OTHER), Err(StoreError::Corrupt));
    assert!(store.has_unaccounted_damage());
    assert_eq!(store.len(), 0);
}

#[test]
fn a_slot_damaged_after_the_scan_is_caught_when_read() {
    let mut store = RecordStore::open(disk()).unwrap();
    store.put(KEY, b"sealed seed").unwrap();
    let disk = store.into_disk();
    // The scan sees a valid slot; then the disk changes under the store.
    let mut store = RecordStore::open(DamageAfterScan {
        disk: disk.clone(),
        reads: 0,
    })
    .unwrap();
    assert_eq!(store.get(KEY), Err(StoreError::Corrupt));
    assert_eq!(
        RecordStore::open(disk).unwrap().get(KEY).unwrap(),
        b"sealed seed"
    );
}

/// Flips a payload byte of entry 0's first slot after the open's scan.
struct DamageAfterScan {
    disk: MemoryDisk,
    reads: usize,
}

impl RawBlockDevice for DamageAfterScan {
    fn sectors(&self) -> u64 {
        self.disk.sectors()
    }
    fn readonly(&self) -> bool {
        false
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        self.reads += 1;
        // The scan reads the superblock and 2 slots per entry.
        if self.reads == 2 + 2 * usize::from(ENTRIES) {
            let at = slot_sector(0, 0) as usize * SECTOR_SIZE + SLOT_HEADER_LEN;
            self.disk.bytes_mut()[at] ^= 1;
        }
        self.disk.read(sector, buf)
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), DeviceError> {
        self.disk.write(sector, buf)
    }
    fn flush(&mut self) -> Result<(), DeviceError> {
        self.disk.flush()
    }
}

/// (entry, slot, kind, key, sequence, payload) of a slot written by hand.
type Slot<'a> = (u16, usize, SlotKind, RecordKey, u32, &'a [u8]);

fn formatted_with(slots: &[Slot<'_>]) -> MemoryDisk {
    let mut disk = disk();
    disk.write(0, &encode_superblock()).unwrap();
    for (entry, slot, kind, key, sequence, payload) in slots {
        disk.write(
            slot_sector(*entry, *slot),
            &encode_slot(*kind, *key, *sequence, payload),
        )
        .unwrap();
    }
    disk
}

#[test]
fn sequence_numbers_wrap_past_u32_max() {
    assert!(newer(0, u32::MAX));
    assert!(newer(1, 0));
    assert!(!newer(u32::MAX, 0));
    let disk = formatted_with(&[(0, 0, SlotKind::Live, KEY, u32::MAX, b"old")]);
    let mut store = RecordStore::open(disk).unwrap();
    assert_eq!(store.get(KEY).unwrap(), b"old");
    store.put(KEY, b"wrapped").unwrap();
    let mut store = reopen(store);
    assert_eq!(
        store.get(KEY).unwrap(),
        b"wrapped",
        "sequence 0 is newer than u32::MAX"
    );
    store.put(KEY, b"and on").unwrap();
    assert_eq!(reopen(store).get(KEY).unwrap(), b"and on");
    // Both slots valid across the wrap, either order on the disk.
    for (first, second) in [(0, 1), (1, 0)] {
        let disk = formatted_with(&[
            (0, first, SlotKind::Live, KEY, u32::MAX, b"older"),
            (0, second, SlotKind::Live, KEY, 0, b"newer"),
        ]);
        assert_eq!(RecordStore::open(disk).unwrap().get(KEY).unwrap(), b"newer");
    }
}

#[test]
fn records_are_bounded_in_size_per_owner_and_in_number() {
    let mut store = RecordStore::open(disk()).unwrap();
    assert_eq!(
        store.put(KEY, &vec![0; MAX_RECORD_LEN + 1]),
        Err(StoreError::TooLarge {
            len: MAX_RECORD_LEN + 1
        })
    );
    store.put(KEY, &vec![1; MAX_RECORD_LEN]).unwrap();
    for id in 2..=MAX_RECORDS_PER_OWNER as u16 {
        store.put(RecordKey { owner: 3, id }, b"r").unwrap();
    }
    assert_eq!(
        store.put(RecordKey { owner: 3, id: 99 }, b"r"),
        Err(StoreError::Full),
        "the owner's quota"
    );
    store.put(KEY, b"an update is not a new record").unwrap();
    let mut owner = 10;
    while store.len() < usize::from(ENTRIES) {
        for id in 0..MAX_RECORDS_PER_OWNER as u16 {
            if store.len() < usize::from(ENTRIES) {
                store.put(RecordKey { owner, id }, b"r").unwrap();
            }
        }
        owner += 1;
    }
    assert_eq!(
        store.put(RecordKey { owner: 99, id: 0 }, b"r"),
        Err(StoreError::Full)
    );
    store.delete(KEY).unwrap();
    store.put(RecordKey { owner: 99, id: 0 }, b"r").unwrap();
}

#[test]
fn bad_disks_are_refused_at_open() {
    assert!(matches!(
        RecordStore::open(MemoryDisk::new(SECTORS_NEEDED as usize - 1)),
        Err(StoreError::DiskTooSmall { .. })
    ));
    let mut garbage = disk();
    garbage.bytes_mut()[3] = 7;
    assert!(matches!(
        RecordStore::open(garbage),
        Err(StoreError::BadSuperblock)
    ));
    // Slots without a superblock: not an empty store.
    let mut headless = formatted_with(&[(0, 0, SlotKind::Live, KEY, 1, b"x")]);
    headless.bytes_mut()[..SECTOR_SIZE].fill(0);
    assert!(matches!(
        RecordStore::open(headless),
        Err(StoreError::BadSuperblock)
    ));
    let mut failing = disk();
    failing.failing = true;
    assert!(matches!(
        RecordStore::open(failing),
        Err(StoreError::Disk(DeviceError::Failed))
    ));
    let readonly = MemoryDisk::from_bytes(vec![0; 512 * SECTOR_SIZE], true);
    let mut store = RecordStore::open(readonly).unwrap();
    assert_eq!(
        store.put(KEY, b"x"),
        Err(StoreError::Disk(DeviceError::ReadOnly))
    );
}

/// The byte offset of slot `slot` of entry `entry` on the disk.
fn slot_offset(entry: u16, slot: usize) -> usize {
    slot_sector(entry, slot) as usize * SECTOR_SIZE
}

#[test]
fn damage_to_a_completed_version_is_corruption_never_a_fallback() {
    // Someone holding the disk flips one byte of the newest version: before the
    // retirement rule the store took it for a torn update and served the older one.
    for at in [0, 12, 16, SLOT_HEADER_LEN, SLOT_HEADER_LEN + 6] {
        let mut store = RecordStore::open(disk()).unwrap();
        store.put(KEY, b"trust A and B").unwrap();
        store.put(KEY, b"trust A").unwrap();
        let (entry, slot, _) = store.locate(KEY).unwrap();
        let mut disk = store.into_disk();
        assert!(
            disk.bytes()[slot_offset(entry, 1 - slot)..][..SLOT_LEN]
                .iter()
                .all(|&b| b == 0),
            "the older slot was retired"
        );
        disk.bytes_mut()[slot_offset(entry, slot) + at] ^= 0x01;
        let mut store = RecordStore::open(disk).unwrap();
        assert_eq!(
            store.get(KEY),
            Err(StoreError::Corrupt),
            "byte {at} of the newest version damaged"
        );
        assert_eq!(
            store.get(OTHER),
            Err(StoreError::Corrupt),
            "nor is anything provably absent"
        );
    }
}

#[test]
fn a_retirement_torn_at_any_byte_leaves_the_new_version_current() {
    let mut base = RecordStore::open(disk()).unwrap();
    base.put(KEY, &version(1, 90)).unwrap();
    let base = base.into_disk();
    let next = version(2, 200);
    for torn_at in 0..=SLOT_LEN {
        let mut disk = base.clone();
        // The update's first write (the new slot) completes; the retirement is torn.
        disk.tear_next_write_after = Some(torn_at);
        disk.writes_before_tear = 1;
        let mut store = RecordStore::open(disk).unwrap();
        assert_eq!(
            store.put(KEY, &next),
            Err(StoreError::Disk(DeviceError::Failed))
        );
        assert_eq!(
            store.get(KEY).unwrap(),
            next,
            "in memory, retirement torn at {torn_at}"
        );
        let mut store = reopen(store);
        assert_eq!(
            store.get(KEY).unwrap(),
            next,
            "reopened, retirement torn at {torn_at}"
        );
        assert_eq!(
            store.get(OTHER),
            Err(StoreError::NotFound),
            "a torn retirement is damage the live record accounts for ({torn_at})"
        );
        // Reopening finished it (torn at 0: both slots were still valid) or the next
        // write repairs the damaged slot; either way the older version never returns.
        store.put(KEY, b"after").unwrap();
        assert_eq!(reopen(store).get(KEY).unwrap(), b"after");
    }
}

#[test]
fn opening_finishes_an_interrupted_retirement() {
    // A power cut after the new version was flushed, before the older was zeroed.
    let disk = formatted_with(&[
        (0, 0, SlotKind::Live, KEY, 7, b"older"),
        (0, 1, SlotKind::Live, KEY, 8, b"newer"),
    ]);
    let mut store = RecordStore::open(disk).unwrap();
    let disk = store.into_disk();
    assert!(
        disk.bytes()[slot_offset(0, 0)..][..SLOT_LEN]
            .iter()
            .all(|&b| b == 0),
        "the older slot is zeroed at open"
    );
    let mut damaged = disk.clone();
    damaged.bytes_mut()[slot_offset(0, 1) + SLOT_HEADER_LEN] ^= 1;
    store = RecordStore::open(damaged).unwrap();
    assert_eq!(store.get(KEY), Err(StoreError::Corrupt));
    assert_eq!(RecordStore::open(disk).unwrap().get(KEY).unwrap(), b"newer");
}

#[test]
fn a_torn_retirement_after_a_delete_leaves_absence_provable() {
    // A delete writes a tombstone, then zeroes the live slot; a power cut tears the
    // zeroing. Nothing live accounts for that damage, so the open clears it: absence
    // must stay provable (found by a review: every absent lookup answered Corrupt).
    for torn_at in [1, 10, SLOT_HEADER_LEN + 3, SLOT_LEN - 1] {
        let mut store = RecordStore::open(disk()).unwrap();
        store.put(KEY, b"to be deleted").unwrap();
        let mut disk = store.into_disk();
        disk.tear_next_write_after = Some(torn_at);
        disk.writes_before_tear = 1;
        let mut store = RecordStore::open(disk).unwrap();
        assert!(store.delete(KEY).is_err(), "torn at {torn_at}");
        let mut store = reopen(store);
        assert_eq!(store.get(KEY), Err(StoreError::NotFound), "{torn_at}");
        assert_eq!(store.get(OTHER), Err(StoreError::NotFound), "{torn_at}");
        assert!(!store.has_unaccounted_damage());
        store.put(OTHER, b"the entry is usable again").unwrap();
        assert_eq!(
            reopen(store).get(OTHER).unwrap(),
            b"the entry is usable again"
        );
    }
}
