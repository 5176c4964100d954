//! The device identity across reboots, on the host: the real services on shared
//! in-memory disks, one test per fault. Each fault fails closed with its own marker,
//! no key, and a state disk left exactly as it was.

use host_runner::{Disks, Entropy, HostSystem, ImageHash, SharedDisk};
use ipc::ServiceId;
use provider_api::{Bundle, HashBackend, Provider};
use provider_hash::{Blake2s, Sha256};
use provider_select::backends::provider_aes_gcm::Aes256Gcm;
use provider_select::backends::provider_chacha::ChaCha20Poly1305;
use provider_select::backends::provider_compact::Compact;
use provider_select::backends::provider_dalek::Dalek;
use service_api::statefs::{DSOFTBUSD_TRUST_STORE, KEYSTORED_DEVICE_KEY};
use service_api::{ClientError, ServiceError, keystored};
use state_format::faults;
use state_format::memory::MemoryDisk;
use state_format::store::RecordKey;
use state_format::trust::{self, TagKey};

type DalekChacha = Bundle<Dalek, ChaCha20Poly1305>;
type DalekAes = Bundle<Dalek, Aes256Gcm>;
type CompactChacha = Bundle<Compact, ChaCha20Poly1305>;

const OTP: [u8; 32] = host_runner::test_secret(0x0d);
const DEVICE_KEY: RecordKey = RecordKey {
    owner: ServiceId::Keystored as u16,
    id: KEYSTORED_DEVICE_KEY,
};

/// Health-test-clean bytes, a recorded entropy stream.
fn stream(seed: u64) -> Vec<u8> {
    let mut state = seed;
    (0..16 * 1024)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

/// What a boot printed and what keystored answered.
struct Boot {
    console: Vec<String>,
    pubkey: Result<[u8; 32], ClientError>,
}

impl Boot {
    fn printed(&self, line: &str) -> bool {
        self.console.iter().any(|l| l == line)
    }
}

fn boot<P: Provider>(entropy: Entropy, disks: Disks) -> Boot {
    let mut system = HostSystem::boot_with::<P>(entropy, disks);
    let pubkey = system.run_as(ServiceId::Selftest, |ep| async move {
        keystored::get_pubkey(&ep).await
    });
    Boot {
        console: system.console(),
        pubkey,
    }
}

fn disks_on(state: &SharedDisk, otp: [u8; 32]) -> Disks {
    Disks {
        state: Some(state.clone()),
        otp: Some(Disks::otp(otp)),
        counter: Some(Disks::counter()),
    }
}

/// A state disk on which a `P` image made and sealed its key, and that key.
fn provisioned<P: Provider>() -> (SharedDisk, [u8; 32]) {
    let state = SharedDisk::new(MemoryDisk::new(512));
    let first = boot::<P>(Entropy::Bytes(stream(1)), disks_on(&state, OTP));
    assert!(
        first.printed("keystored: device key created"),
        "{:#?}",
        first.console
    );
    (state, first.pubkey.unwrap())
}

/// Boots `P` on `state` (and `otp`) and checks the fault's marker, that there is no
/// key, that nothing was regenerated, and that the disk is unchanged.
fn fails_closed_with<P: Provider>(state: &SharedDisk, otp: Option<[u8; 32]>, marker: &str) {
    let before = state.bytes();
    let boot = boot::<P>(
        Entropy::Bytes(stream(9)),
        Disks {
            state: Some(state.clone()),
            otp: otp.map(Disks::otp),
            counter: Some(Disks::counter()),
        },
    );
    assert!(boot.printed(marker), "no {marker:?} in {:#?}", boot.console);
    assert_eq!(boot.pubkey, Err(ClientError::Service(ServiceError::NoKey)));
    assert!(
        !boot
            .console
            .iter()
            .any(|l| l.starts_with("keystored: device key "))
    );
    assert!(state.bytes() == before, "the state disk changed");
}

#[test]
fn a_reboot_restores_the_same_key_from_other_entropy_or_none() {
    let (state, key) = provisioned::<DalekChacha>();
    let second = boot::<DalekChacha>(Entropy::Bytes(stream(2)), disks_on(&state, OTP));
    assert!(second.printed("keystored: device key restored"));
    assert_eq!(second.pubkey, Ok(key));
    let before = state.bytes();
    let third = boot::<DalekChacha>(Entropy::Absent, disks_on(&state, OTP));
    assert_eq!(third.pubkey, Ok(key), "rngd is not needed to restore");
    assert!(state.bytes() == before, "a restore writes nothing");
}

#[test]
fn the_seed_is_sealed_not_stored_in_clear() {
    let state = SharedDisk::new(MemoryDisk::new(512));
    let entropy = stream(3);
    boot::<DalekChacha>(Entropy::Bytes(entropy.clone()), disks_on(&state, OTP));
    let disk = state.bytes();
    // rngd discards 1,024 start-up bytes; keystored's seed is the next 32.
    let seed = &entropy[1024..1056];
    assert!(!disk.windows(16).any(|w| seed.windows(16).any(|s| s == w)));
    assert!(!disk.windows(16).any(|w| OTP.windows(16).any(|s| s == w)));
}

#[test]
fn a_tampered_record_fails_closed() {
    let (state, _) = provisioned::<DalekChacha>();
    // A ciphertext byte flipped, stored as a valid newer version (the slot checks out).
    let disk = state.0.borrow().clone();
    *state.0.borrow_mut() = faults::tamper_record(disk, DEVICE_KEY, 60).unwrap();
    fails_closed_with::<DalekChacha>(
        &state,
        Some(OTP),
        "keystored: fail-closed: sealed device key tampered",
    );
}

#[test]
fn a_record_sealed_on_another_device_fails_closed() {
    let (state, _) = provisioned::<DalekChacha>();
    fails_closed_with::<DalekChacha>(
        &state,
        Some(host_runner::test_secret(0x0e)),
        "keystored: fail-closed: device key sealed on another device",
    );
}

#[test]
fn without_the_otp_disk_keystored_fails_closed() {
    let (state, _) = provisioned::<DalekChacha>();
    fails_closed_with::<DalekChacha>(&state, None, "keystored: fail-closed: no OTP disk");
    // And never falls back to an unsealed key on a fresh disk either.
    let fresh = SharedDisk::new(MemoryDisk::new(512));
    fails_closed_with::<DalekChacha>(&fresh, None, "keystored: fail-closed: no OTP disk");
}

#[test]
fn a_record_sealed_with_another_aead_names_both() {
    let (state, _) = provisioned::<DalekChacha>();
    fails_closed_with::<DalekAes>(
        &state,
        Some(OTP),
        "keystored: fail-closed: device key sealed with ChaCha20-Poly1305, this image has AES-256-GCM",
    );
}

#[test]
fn a_torn_update_leaves_the_previous_record() {
    let (state, key) = provisioned::<CompactChacha>();
    for torn_after in [1, 20, 100, 700] {
        let disk = state.0.borrow().clone();
        let torn = SharedDisk::new(faults::tear_update(disk, DEVICE_KEY, torn_after).unwrap());
        let before = torn.bytes();
        let boot = boot::<CompactChacha>(Entropy::Bytes(stream(4)), disks_on(&torn, OTP));
        assert!(
            boot.printed("keystored: device key restored"),
            "torn at {torn_after}"
        );
        assert_eq!(boot.pubkey, Ok(key));
        // Torn inside its header and payload (20 + 94 bytes) the newer slot is damaged
        // and statefs clears it at open; torn after them the newer version was complete
        // and statefs retires the older slot: either way the disk is tidied and the key
        // record is the one it was (the same key, above).
        assert!(
            torn.bytes() != before,
            "torn at {torn_after}: the open cleans up"
        );
        let records = state_format::store::RecordStore::open(torn.clone()).unwrap();
        assert!(!records.has_unaccounted_damage());
    }
}

#[test]
fn a_missing_or_damaged_state_disk_fails_closed_and_is_never_regenerated_over() {
    let no_disk = boot::<DalekChacha>(
        Entropy::Bytes(stream(5)),
        Disks {
            state: None,
            otp: Some(Disks::otp(OTP)),
            counter: Some(Disks::counter()),
        },
    );
    assert!(no_disk.printed("statefs: fail-closed: no state disk"));
    assert!(no_disk.printed("keystored: fail-closed: state disk unavailable"));
    assert_eq!(
        no_disk.pubkey,
        Err(ClientError::Service(ServiceError::NoKey))
    );

    // The record's only slot damaged (bit rot, or an attacker who does not know the
    // format): the store cannot prove the record absent, so no new key is made over it.
    let (state, _) = provisioned::<DalekChacha>();
    let (entry, slot, _) = state_format::store::RecordStore::open(state.0.borrow().clone())
        .unwrap()
        .locate(DEVICE_KEY)
        .unwrap();
    let at = state_format::store::slot_sector(entry, slot) as usize * ipc::SECTOR_SIZE + 30;
    state.0.borrow_mut().bytes_mut()[at] ^= 0x80;
    fails_closed_with::<DalekChacha>(
        &state,
        Some(OTP),
        "keystored: fail-closed: state disk unavailable",
    );
}

fn trust_store_on(state: &SharedDisk, otp: [u8; 32], peers: &[[u8; 32]]) {
    trust_store_tagged::<Blake2s>(state, otp, peers);
}

fn trust_store_tagged<H: HashBackend>(state: &SharedDisk, otp: [u8; 32], peers: &[[u8; 32]]) {
    // Version 0: each boot of these tests gets a fresh counter (at 0).
    let store = trust::encode::<H>(
        &TagKey::derive::<H>(&provider_api::SecretBytes::new(otp)),
        0,
        peers,
    );
    let mut records = state_format::store::RecordStore::open(state.0.borrow().clone()).unwrap();
    records
        .put(
            RecordKey {
                owner: ServiceId::Dsoftbusd as u16,
                id: DSOFTBUSD_TRUST_STORE,
            },
            &store,
        )
        .unwrap();
    *state.0.borrow_mut() = records.into_disk();
}

fn peer_key(fill: u8) -> [u8; 32] {
    provider_api::SigningKey::<Dalek>::from_seed(&provider_api::Seed::new([fill; 32]))
        .unwrap()
        .verifying_key()
        .to_bytes()
}

fn console_of<P: Provider>(state: &SharedDisk, otp: [u8; 32]) -> Vec<String> {
    let mut system = HostSystem::boot_with::<P>(Entropy::Host, disks_on(state, otp));
    system.run_as(ServiceId::Selftest, |ep| async move {
        // Let dsoftbusd finish starting.
        for _ in 0..50 {
            ipc::Endpoint::yield_now(&ep).await;
        }
    });
    system.console()
}

#[test]
fn the_factorys_trust_store_is_loaded_and_counted() {
    let (state, _) = provisioned::<DalekChacha>();
    trust_store_on(&state, OTP, &[peer_key(1), peer_key(2)]);
    let console = console_of::<DalekChacha>(&state, OTP);
    assert!(
        console.iter().any(|l| l == "dsoftbusd: trusted peers 2"),
        "{console:#?}"
    );
}

#[test]
fn a_trust_store_that_fails_its_check_is_refused_whole() {
    let weak = [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0xfa,
    ];
    for (what, otp, peers) in [
        (
            "tagged by another device",
            host_runner::test_secret(0x0e),
            vec![peer_key(1)],
        ),
        ("holding a small-order key", OTP, vec![peer_key(1), weak]),
    ] {
        let (state, _) = provisioned::<DalekChacha>();
        trust_store_on(&state, otp, &peers);
        let console = console_of::<DalekChacha>(&state, OTP);
        assert!(
            console
                .iter()
                .any(|l| l == "dsoftbusd: fail-closed: trust store refused"),
            "{what}: {console:#?}"
        );
        assert!(
            !console
                .iter()
                .any(|l| l.starts_with("dsoftbusd: trusted peers"))
        );
    }
    // A peer added by someone holding only the disk: the old tag does not cover it.
    let (state, _) = provisioned::<DalekChacha>();
    trust_store_on(&state, OTP, &[peer_key(1)]);
    let disk = state.0.borrow().clone();
    let key = RecordKey {
        owner: ServiceId::Dsoftbusd as u16,
        id: DSOFTBUSD_TRUST_STORE,
    };
    *state.0.borrow_mut() = faults::tamper_record(disk, key, 20).unwrap();
    let console = console_of::<DalekChacha>(&state, OTP);
    assert!(
        console
            .iter()
            .any(|l| l == "dsoftbusd: fail-closed: trust store refused")
    );
}

/// The hash axis on the host: a SHA-256 image seals and restores its key, loads a
/// trust store tagged with SHA-256 and refuses one tagged with BLAKE2s; a BLAKE2s image
/// refuses the SHA-256 image's sealed key, naming both hashes.
#[test]
fn a_sha256_image_keeps_its_key_and_checks_its_trust_store_with_sha256() {
    type P = DalekChacha;
    let sha256 = |state: &SharedDisk, entropy| {
        let mut system =
            HostSystem::boot_hashed::<P>(entropy, disks_on(state, OTP), ImageHash::Sha256);
        let pubkey = system.run_as(ServiceId::Selftest, |ep| async move {
            for _ in 0..50 {
                ipc::Endpoint::yield_now(&ep).await;
            }
            keystored::get_pubkey(&ep).await
        });
        Boot {
            console: system.console(),
            pubkey,
        }
    };
    let state = SharedDisk::new(MemoryDisk::new(512));
    let first = sha256(&state, Entropy::Bytes(stream(1)));
    assert!(
        first.printed("keystored: device key created"),
        "{:#?}",
        first.console
    );
    let key = first.pubkey.unwrap();

    trust_store_tagged::<Sha256>(&state, OTP, &[peer_key(1)]);
    let second = sha256(&state, Entropy::Bytes(stream(2)));
    assert!(second.printed("keystored: device key restored"));
    assert_eq!(second.pubkey, Ok(key));
    assert!(
        second.printed("dsoftbusd: trusted peers 1"),
        "{:#?}",
        second.console
    );

    trust_store_tagged::<Blake2s>(&state, OTP, &[peer_key(1)]);
    let third = sha256(&state, Entropy::Bytes(stream(3)));
    assert_eq!(third.pubkey, Ok(key));
    assert!(
        third.printed("dsoftbusd: fail-closed: trust store refused"),
        "{:#?}",
        third.console
    );

    fails_closed_with::<P>(
        &state,
        Some(OTP),
        "keystored: fail-closed: device key sealed with SHA256, this image has BLAKE2s",
    );
}
