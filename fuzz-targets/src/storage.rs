//! The on-disk formats: a disk's bytes are input too (a stolen and edited disk, a torn
//! write).

use ipc::{RawBlockDevice, SECTOR_SIZE, ServiceId};
use provider_api::SecretBytes;
use provider_chacha::ChaCha20Poly1305;
use provider_hash::Blake2s;
use state_format::memory::MemoryDisk;
use state_format::sealed::{self, SealingKeys};
use state_format::store::{self, RecordKey, RecordStore, SLOT_HEADER_LEN, SLOT_LEN, SlotState};
use state_format::trust::{self, TagKey};

/// A slot: an accepted slot re-encodes to the bytes its CRC covers (the padding after
/// the payload is not covered, by the format's definition).
pub fn store_slot(data: &[u8]) {
    let mut slot = data.to_vec();
    slot.resize(SLOT_LEN, 0);
    if let SlotState::Valid(header) = store::decode_slot(&slot) {
        let covered = SLOT_HEADER_LEN + usize::from(header.len);
        let payload = &slot[SLOT_HEADER_LEN..covered];
        let again = store::encode_slot(header.kind, header.key, header.sequence, payload);
        assert_eq!(again[..covered], slot[..covered], "canonical slot");
        assert_eq!(store::decode_slot(&again), SlotState::Valid(header));
    }
}

/// A whole disk of any bytes (the input repeated over the store's sectors): opening
/// it never panics, and a store that opens serves a put and a get of a fresh record.
pub fn store_disk(data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let sectors = store::SECTORS_NEEDED as usize;
    let mut bytes = vec![0u8; sectors * SECTOR_SIZE];
    // The input lands at a few places: the superblock, and the first slots.
    for (i, chunk) in bytes.chunks_mut(SECTOR_SIZE).enumerate().take(24) {
        if i % 3 != 2 {
            let n = chunk.len().min(data.len());
            chunk[..n].copy_from_slice(&data[..n]);
        }
    }
    let disk = MemoryDisk::from_bytes(bytes, false);
    assert_eq!(disk.sectors(), sectors as u64);
    let Ok(mut store) = RecordStore::open(disk) else {
        return;
    };
    let key = RecordKey {
        owner: ServiceId::Selftest as u16,
        id: 0xbeef,
    };
    // Damage that could be this record makes a lookup Corrupt rather than NotFound,
    // and a full store refuses the put: both are the format's rules.
    if store.put(key, b"fresh").is_ok() {
        assert_eq!(store.get(key).as_deref(), Ok(&b"fresh"[..]));
    }
}

fn keys() -> SealingKeys {
    SealingKeys::derive::<Blake2s>(&SecretBytes::new([9; 32]), 1)
}

/// keystored's sealed record: anything but a genuine record is refused, and the
/// output buffer is then all zero.
pub fn sealed_record(data: &[u8]) {
    let mut secret = [0xaa_u8; 32];
    match sealed::unseal::<ChaCha20Poly1305, Blake2s>(&keys(), 1, data, &mut secret) {
        Ok(()) => {
            // Only a record sealed under these keys opens: re-sealing it with its own
            // nonce gives the same bytes.
            let nonce: [u8; 12] = data[32..44].try_into().expect("header");
            let sequence = u32::from_le_bytes(data[12..16].try_into().expect("header"));
            let again =
                sealed::seal::<ChaCha20Poly1305, Blake2s>(&keys(), 1, sequence, &nonce, &secret);
            assert_eq!(again, data, "canonical sealed record");
        }
        Err(_) => assert!(secret.iter().all(|&b| b == 0), "secret left in the buffer"),
    }
}

/// The trust store: a store that verifies re-encodes to the same bytes; the unverified
/// reading never panics.
pub fn trust_store(data: &[u8]) {
    let key = TagKey::derive::<Blake2s>(&SecretBytes::new([5; 32]));
    if let Ok(store) = trust::decode::<Blake2s>(&key, data) {
        assert_eq!(
            trust::encode::<Blake2s>(&key, store.rollback_version, &store.peers),
            data
        );
    }
    let _ = trust::parse_unverified(data);
}

/// Genuine inputs the corpus cannot hold for long (a trust store whose tag verifies
/// under the target's key changes with the format), made here.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "trust_store" => {
            let key = TagKey::derive::<Blake2s>(&SecretBytes::new([5; 32]));
            vec![
                trust::encode::<Blake2s>(&key, 0, &[]),
                trust::encode::<Blake2s>(&key, 3, &[[9; 32], [0x42; 32]]),
            ]
        }
        _ => Vec::new(),
    }
}

/// The OTP sector: never panics, whatever the disk holds.
pub fn otp_sector(data: &[u8]) {
    let mut bytes = data.to_vec();
    bytes.resize(SECTOR_SIZE, 0);
    let mut disk = MemoryDisk::from_bytes(bytes, true);
    let _ = state_format::otp::read_secret(&mut disk);
}
