//! Sealed records and the trust store: each way one fails to open is told apart.

use provider_aes_gcm::Aes256Gcm;
use provider_aes_gcm_siv::Aes256GcmSiv;
use provider_api::{AeadAlgorithm, AeadBackend, HashAlgorithm, HashBackend, SecretBytes};
use provider_chacha::ChaCha20Poly1305;
use provider_hash::{Blake2s, Sha256};
use state_format::sealed::{self, HEADER_LEN, SealingKeys, UnsealError};
use state_format::trust::{self, TagKey, TrustStore, TrustStoreError};

const SEED: [u8; 32] = [0x5e; 32];
const NONCE: [u8; 12] = [7; 12];

fn otp(fill: u8) -> SecretBytes<32> {
    SecretBytes::new([fill; 32])
}

fn tags<H: HashBackend>(device: u8) -> TagKey {
    TagKey::derive::<H>(&otp(device))
}

fn open<A: AeadBackend, H: HashBackend>(
    device: u8,
    record_id: u16,
    record: &[u8],
) -> Result<[u8; 32], UnsealError> {
    let keys = SealingKeys::derive::<H>(&otp(device), record_id);
    let mut seed = [0u8; 32];
    sealed::unseal::<A, H>(&keys, record_id, record, &mut seed).map(|()| seed)
}

/// The format takes any [`AeadBackend`], not only the Noise AEADs an image can select:
/// each sealing test runs on every AEAD backend (AES-256-GCM-SIV included, which no
/// image seals with today: docs/decisions/0010-sealing-aead.md) and both hashes.
#[test]
fn a_sealed_seed_opens_on_its_device_only_and_never_shows_in_clear() {
    opens_on_its_device_only::<ChaCha20Poly1305, Blake2s>();
    opens_on_its_device_only::<Aes256Gcm, Sha256>();
    opens_on_its_device_only::<Aes256GcmSiv, Blake2s>();
}

fn opens_on_its_device_only<A: AeadBackend, H: HashBackend>() {
    let name = A::NAME;
    let keys = SealingKeys::derive::<H>(&otp(1), 1);
    let record = sealed::seal::<A, H>(&keys, 1, 1, &NONCE, &SEED);
    assert_eq!(record.len(), HEADER_LEN + 32 + 16, "{name}");
    assert_eq!(
        record[5],
        A::ALGORITHM.id(),
        "{name}: the header names the AEAD"
    );
    assert!(
        !record.windows(8).any(|w| w == &SEED[..8]),
        "{name}: no plaintext"
    );
    assert_eq!(open::<A, H>(1, 1, &record), Ok(SEED), "{name}");
    assert_eq!(
        open::<A, H>(2, 1, &record),
        Err(UnsealError::OtherDevice),
        "{name}"
    );
    assert_eq!(
        open::<A, H>(1, 2, &record),
        Err(UnsealError::Tampered),
        "{name}: a record moved to another id does not open"
    );
}

#[test]
fn every_flipped_bit_is_refused_with_the_right_reason() {
    every_flipped_bit_is_refused::<ChaCha20Poly1305, Blake2s>();
    every_flipped_bit_is_refused::<Aes256Gcm, Sha256>();
    every_flipped_bit_is_refused::<Aes256GcmSiv, Sha256>();
}

fn every_flipped_bit_is_refused<A: AeadBackend, H: HashBackend>() {
    let name = A::NAME;
    let keys = SealingKeys::derive::<H>(&otp(3), 1);
    let record = sealed::seal::<A, H>(&keys, 1, 5, &NONCE, &SEED);
    for byte in 0..record.len() {
        for bit in 0..8 {
            let mut damaged = record.clone();
            damaged[byte] ^= 1 << bit;
            let got = open::<A, H>(3, 1, &damaged);
            let expected_reason = match byte {
                0..=4 | 7 | 10 | 11 | 44 | 45 => "malformed",
                5 => "aead",
                6 => "hash",
                16..=31 => "device",
                _ => "tampered",
            };
            let ok = match got {
                Err(UnsealError::Malformed) => expected_reason == "malformed",
                Err(UnsealError::OtherAead { .. }) => expected_reason == "aead",
                Err(UnsealError::OtherHash { .. }) => expected_reason == "hash",
                // An AEAD or hash id that names no algorithm is malformed.
                Err(UnsealError::OtherDevice) => expected_reason == "device",
                Err(UnsealError::Tampered) => expected_reason == "tampered",
                Ok(_) => false,
                Err(_) => false,
            };
            let unknown_id = matches!(byte, 5 | 6) && got == Err(UnsealError::Malformed);
            assert!(ok || unknown_id, "{name}: byte {byte} bit {bit}: {got:?}");
        }
    }
}

#[test]
fn another_aead_or_hash_is_named_not_mistaken_for_tampering() {
    let keys = SealingKeys::derive::<Blake2s>(&otp(1), 1);
    let chacha = sealed::seal::<ChaCha20Poly1305, Blake2s>(&keys, 1, 1, &NONCE, &SEED);
    assert_eq!(
        open::<Aes256Gcm, Blake2s>(1, 1, &chacha),
        Err(UnsealError::OtherAead {
            sealed: AeadAlgorithm::ChaCha20Poly1305,
            image: AeadAlgorithm::Aes256Gcm
        })
    );
    assert_eq!(
        open::<ChaCha20Poly1305, Sha256>(1, 1, &chacha),
        Err(UnsealError::OtherHash {
            sealed: HashAlgorithm::Blake2s256,
            image: HashAlgorithm::Sha256
        })
    );
    assert_eq!(
        open::<ChaCha20Poly1305, Blake2s>(1, 1, &chacha[..40]),
        Err(UnsealError::Malformed)
    );
}

#[test]
fn the_trust_store_verifies_only_for_its_device_and_contents() {
    let peers = [[1u8; 32], [2; 32]];
    let store = trust::encode::<Blake2s>(&tags::<Blake2s>(1), 7, &peers);
    assert_eq!(store.len(), 12 + 64 + 32);
    let expected = TrustStore {
        rollback_version: 7,
        peers: peers.to_vec(),
    };
    assert_eq!(
        trust::decode::<Blake2s>(&tags::<Blake2s>(1), &store),
        Ok(expected.clone())
    );
    assert_eq!(
        trust::decode::<Blake2s>(&tags::<Blake2s>(2), &store),
        Err(TrustStoreError::BadTag),
        "a disk moved to another device"
    );
    for byte in 0..store.len() {
        let mut altered = store.clone();
        altered[byte] ^= 0x10;
        assert!(
            trust::decode::<Blake2s>(&tags::<Blake2s>(1), &altered).is_err(),
            "byte {byte} altered (bytes 8..12 are the rollback version)"
        );
    }
    // Adding a peer without the device secret: the old tag does not cover it.
    let mut added = store[..12 + 64].to_vec();
    added[6] = 3;
    added.extend_from_slice(&[9; 32]);
    added.extend_from_slice(&store[12 + 64..]);
    assert_eq!(
        trust::decode::<Blake2s>(&tags::<Blake2s>(1), &added),
        Err(TrustStoreError::BadTag)
    );
    assert_eq!(
        trust::decode::<Sha256>(&tags::<Sha256>(1), &store),
        Err(TrustStoreError::OtherHash {
            tagged: HashAlgorithm::Blake2s256,
            image: HashAlgorithm::Sha256
        })
    );
    assert_eq!(
        trust::parse_unverified(&store).unwrap(),
        expected,
        "listing without the secret"
    );
    let empty = trust::encode::<Sha256>(&tags::<Sha256>(1), 0, &[]);
    assert_eq!(
        trust::decode::<Sha256>(&tags::<Sha256>(1), &empty),
        Ok(TrustStore {
            rollback_version: 0,
            peers: Vec::new()
        })
    );
    assert_eq!(
        trust::decode::<Sha256>(&tags::<Sha256>(1), &empty[..43]),
        Err(TrustStoreError::Malformed)
    );
    // A version 1 store (no rollback version) is not read as one of version 2.
    let mut v1 = empty.clone();
    v1[4] = 1;
    assert_eq!(
        trust::parse_unverified(&v1),
        Err(TrustStoreError::Malformed)
    );
}

#[test]
fn a_refused_record_leaves_nothing_in_the_callers_buffer() {
    let keys = SealingKeys::derive::<Blake2s>(&SecretBytes::new([4; 32]), 1);
    let good = sealed::seal::<ChaCha20Poly1305, Blake2s>(&keys, 1, 1, &[6; 12], &[0x5a; 32]);
    let mut truncated = good.clone();
    truncated.truncate(10);
    let mut other_magic = good.clone();
    other_magic[0] ^= 1;
    let mut tampered = good.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    for record in [truncated, other_magic, tampered] {
        // Whatever the buffer held before (here a pattern), it is zero after a refusal.
        let mut secret = [0xaa_u8; 32];
        assert!(
            sealed::unseal::<ChaCha20Poly1305, Blake2s>(&keys, 1, &record, &mut secret).is_err()
        );
        assert_eq!(secret, [0; 32]);
    }
}

/// The value on the line labelled `label` of the test vector in docs/state-disk.md.
fn vector(label: &str) -> Vec<u8> {
    let doc = include_str!("../../../docs/state-disk.md");
    let block = doc
        .split_once("**Test vector**")
        .and_then(|(_, rest)| rest.split_once("```\n"))
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(block, _)| block)
        .expect("the test vector block");
    let line = block
        .lines()
        .find_map(|l| l.strip_prefix(label).filter(|rest| rest.starts_with(' ')))
        .unwrap_or_else(|| panic!("no {label:?} line in the document's test vector"));
    let text = line.trim();
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The document is the contract: an implementation written from it derives these
/// keys and writes these bytes.
#[test]
fn the_documents_test_vector_is_what_the_code_derives_and_seals() {
    let otp: [u8; 32] = vector("otp secret").try_into().unwrap();
    assert_eq!(vector("info"), sealed::seal_info(1));
    for (label, okm, key_id) in [
        (
            "okm BLAKE2s",
            Blake2s::hkdf_with_info::<48>(sealed::SEALING_SALT, &otp, &sealed::seal_info(1)),
            SealingKeys::derive::<Blake2s>(&SecretBytes::new(otp), 1).key_id(),
        ),
        (
            "okm SHA-256",
            Sha256::hkdf_with_info::<48>(sealed::SEALING_SALT, &otp, &sealed::seal_info(1)),
            SealingKeys::derive::<Sha256>(&SecretBytes::new(otp), 1).key_id(),
        ),
    ] {
        assert_eq!(okm.expose_secret().to_vec(), vector(label), "{label}");
        assert_eq!(key_id[..], vector(label)[32..], "{label}: the key id");
    }
    let keys = SealingKeys::derive::<Blake2s>(&SecretBytes::new(otp), 1);
    let seed: [u8; 32] = vector("seed").try_into().unwrap();
    let nonce: [u8; 12] = vector("nonce").try_into().unwrap();
    let record = sealed::seal::<ChaCha20Poly1305, Blake2s>(&keys, 1, 1, &nonce, &seed);
    assert_eq!(record, vector("sealed"), "the sealed record");
    let mut opened = [0u8; 32];
    sealed::unseal::<ChaCha20Poly1305, Blake2s>(&keys, 1, &vector("sealed"), &mut opened).unwrap();
    assert_eq!(opened, seed);
}

/// A factory run stopped after it wrote a store and before it advanced the counter;
/// the next run must still write a store newer than that one, or the two would share
/// a version and the first (trusting a peer the second revokes) would be accepted when
/// written back (found by a review).
#[test]
fn a_store_written_after_an_interrupted_run_is_newer_than_the_run_s_store() {
    use state_format::memory::MemoryDisk;
    use state_format::store::RecordStore;
    let key = tags::<Blake2s>(1);
    let (p, q) = ([1u8; 32], [2u8; 32]);
    let mut records = RecordStore::open(MemoryDisk::new(512)).unwrap();
    // Run 1: the counter refuses writes (a power cut before it was programmed).
    let mut stuck = MemoryDisk::from_bytes(vec![0; 512], true);
    assert!(trust::provision::<Blake2s, _, _>(&mut records, &mut stuck, &key, &[p, q]).is_err());
    let first = records.get(trust::RECORD).unwrap();
    assert_eq!(
        trust::decode::<Blake2s>(&key, &first)
            .unwrap()
            .rollback_version,
        1
    );
    // Run 2 revokes q with a working counter (still at 0).
    let mut counter = MemoryDisk::from_bytes(vec![0; 512], false);
    let version =
        trust::provision::<Blake2s, _, _>(&mut records, &mut counter, &key, &[p]).unwrap();
    assert_eq!(version, 2, "above the interrupted run's store");
    assert_eq!(rollback_counter::read(&mut counter), Ok(2));
    assert!(
        trust::decode::<Blake2s>(&key, &first)
            .unwrap()
            .rollback_version
            < version,
        "the first run's store is now below the counter: refused if written back"
    );
}
