//! A revoked peer stays revoked: the trust store against someone who holds the state
//! disk (not the device), on the host with the real services.
//!
//! The factory trusts peers A and B, then revokes B. The attacker then (1) flips one
//! byte of the newest trust-store slot, hoping the record store takes it for a torn
//! update and serves the previous version; (2) writes the older store back as a valid
//! newer slot (the slot format has a CRC, not a key: anyone can write one); (3) boots
//! an older copy of the whole state disk. Each is refused with its own marker, the
//! device's counter and disk are left as they were, and B is never trusted again.

use host_runner::{Disks, Entropy, HostSystem, SharedDisk};
use ipc::SECTOR_SIZE;
use ipc::ServiceId;
use provider_api::{Bundle, SecretBytes};
use provider_hash::Blake2s;
use provider_select::backends::provider_chacha::ChaCha20Poly1305;
use provider_select::backends::provider_dalek::Dalek;
use state_format::memory::MemoryDisk;
use state_format::store::{RecordStore, SLOT_HEADER_LEN, slot_sector};
use state_format::trust::{self, RECORD, TagKey};

type P = Bundle<Dalek, ChaCha20Poly1305>;

const OTP: [u8; 32] = host_runner::test_secret(0x2b);

/// A device's disks: the state disk, the OTP secret, the rollback counter.
struct Device {
    state: SharedDisk,
    counter: SharedDisk,
}

impl Device {
    fn new() -> Self {
        Self {
            state: SharedDisk::new(MemoryDisk::new(512)),
            counter: Disks::counter(),
        }
    }

    fn disks(&self, counter: bool) -> Disks {
        Disks {
            state: Some(self.state.clone()),
            otp: Some(Disks::otp(OTP)),
            counter: counter.then(|| self.counter.clone()),
        }
    }

    /// `cargo xtask provision`'s procedure: the store at the next counter value, then
    /// the counter advanced.
    fn provision(&self, peers: &[[u8; 32]]) -> u32 {
        let mut records = RecordStore::open(self.state.clone()).unwrap();
        let mut counter = rollback_counter::SetOnly::new(self.counter.clone());
        trust::provision::<Blake2s, _, _>(&mut records, &mut counter, &tags(), peers).unwrap()
    }

    fn counter_value(&self) -> u32 {
        rollback_counter::read(&mut self.counter.clone()).unwrap()
    }

    /// Boots the services and lets dsoftbusd finish starting; the console.
    fn boot(&self, counter: bool) -> Vec<String> {
        let mut system = HostSystem::boot_with::<P>(Entropy::Host, self.disks(counter));
        system.run_as(ServiceId::Selftest, |ep| async move {
            for _ in 0..50 {
                ipc::Endpoint::yield_now(&ep).await;
            }
        });
        system.console()
    }
}

fn tags() -> TagKey {
    TagKey::derive::<Blake2s>(&SecretBytes::new(OTP))
}

fn peer(fill: u8) -> [u8; 32] {
    provider_api::SigningKey::<Dalek>::from_seed(&provider_api::Seed::new([fill; 32]))
        .unwrap()
        .verifying_key()
        .to_bytes()
}

fn printed(console: &[String], line: &str) -> bool {
    console.iter().any(|l| l == line)
}

/// A device whose factory trusted A and B, then revoked B; the disk as it was while B
/// was trusted; and the store of that time.
fn revoked() -> (Device, Vec<u8>, Vec<u8>) {
    let device = Device::new();
    // First boot: the device key is created and sealed.
    let first = device.boot(true);
    assert!(
        printed(&first, "keystored: device key created"),
        "{first:#?}"
    );
    assert_eq!(device.provision(&[peer(1), peer(2)]), 1);
    let both = device.boot(true);
    assert!(printed(&both, "dsoftbusd: trusted peers 2"), "{both:#?}");
    let old_disk = device.state.bytes();
    let old_store = RecordStore::open(device.state.clone())
        .unwrap()
        .get(RECORD)
        .unwrap();
    assert_eq!(device.provision(&[peer(1)]), 2);
    let one = device.boot(true);
    assert!(printed(&one, "dsoftbusd: trusted peers 1"), "{one:#?}");
    assert!(printed(&one, "keystored: rollback counter 2"), "{one:#?}");
    (device, old_disk, old_store)
}

/// Boots `device` and checks that it refuses its trust store with `marker`, trusts
/// nobody, and leaves the disk and the counter as they were.
fn refused(device: &Device, marker: &str, what: &str) {
    let (disk, counter) = (device.state.bytes(), device.counter_value());
    let console = device.boot(true);
    assert!(
        printed(&console, marker),
        "{what}: no {marker:?} in {console:#?}"
    );
    assert!(
        !console
            .iter()
            .any(|l| l.starts_with("dsoftbusd: trusted peers")),
        "{what}: {console:#?}"
    );
    assert!(
        printed(&console, "keystored: device key restored"),
        "{what}: the device keeps its key"
    );
    assert!(
        device.state.bytes() == disk,
        "{what}: the state disk changed"
    );
    assert_eq!(
        device.counter_value(),
        counter,
        "{what}: the counter changed"
    );
}

#[test]
fn one_damaged_byte_in_the_newest_store_is_corruption_not_the_older_store() {
    let (device, _, _) = revoked();
    let (entry, slot, _) = RecordStore::open(device.state.clone())
        .unwrap()
        .locate(RECORD)
        .unwrap();
    let at = slot_sector(entry, slot) as usize * SECTOR_SIZE + SLOT_HEADER_LEN + 10;
    device.state.0.borrow_mut().bytes_mut()[at] ^= 0x01;
    refused(
        &device,
        "dsoftbusd: fail-closed: trust store corrupt",
        "one byte of the newest slot flipped",
    );
}

#[test]
fn the_older_store_written_back_as_a_newer_slot_is_rolled_back() {
    let (device, _, old_store) = revoked();
    // What anyone who knows the format can write: a valid slot, next sequence number.
    let mut records = RecordStore::open(device.state.clone()).unwrap();
    records.put(RECORD, &old_store).unwrap();
    refused(
        &device,
        "dsoftbusd: fail-closed: trust store rolled back",
        "the older store replayed",
    );
}

#[test]
fn an_older_copy_of_the_whole_disk_is_rolled_back() {
    let (device, old_disk, _) = revoked();
    device
        .state
        .0
        .borrow_mut()
        .bytes_mut()
        .copy_from_slice(&old_disk);
    refused(
        &device,
        "dsoftbusd: fail-closed: trust store rolled back",
        "the disk from before the revocation",
    );
    // The factory can still write a newer store on it, and it is accepted again.
    assert_eq!(device.provision(&[peer(1)]), 3);
    assert!(printed(&device.boot(true), "dsoftbusd: trusted peers 1"));
}

#[test]
fn a_removed_store_is_rolled_back_not_an_empty_one() {
    // A tombstone is as easy to write as a slot: the device once had a store (its
    // counter says so), so having none is a rollback, not "trust nobody" (a review).
    let (device, _, _) = revoked();
    let mut records = RecordStore::open(device.state.clone()).unwrap();
    records.delete(RECORD).unwrap();
    refused(
        &device,
        "dsoftbusd: fail-closed: trust store rolled back",
        "the store deleted",
    );
    // A fresh device (counter at 0) with no store trusts nobody and serves.
    let fresh = Device::new();
    let console = fresh.boot(true);
    assert!(
        printed(&console, "dsoftbusd: trusted peers 0"),
        "{console:#?}"
    );
}

#[test]
fn a_store_newer_than_the_counter_advances_it() {
    // The factory wrote a store and a power cut came before it advanced the counter.
    let device = Device::new();
    let store = trust::encode::<Blake2s>(&tags(), 1, &[peer(1)]);
    let mut records = RecordStore::open(device.state.clone()).unwrap();
    records.put(RECORD, &store).unwrap();
    assert_eq!(device.counter_value(), 0);
    let console = device.boot(true);
    assert!(
        printed(&console, "dsoftbusd: trusted peers 1"),
        "{console:#?}"
    );
    assert_eq!(device.counter_value(), 1, "the device advanced its counter");
}

#[test]
fn without_a_counter_no_trust_store_is_accepted() {
    let device = Device::new();
    device.provision(&[peer(1)]);
    let console = device.boot(false);
    assert!(
        console
            .iter()
            .any(|l| l.starts_with("keystored: no rollback counter")),
        "{console:#?}"
    );
    assert!(
        printed(&console, "dsoftbusd: fail-closed: trust store refused"),
        "{console:#?}"
    );
}
