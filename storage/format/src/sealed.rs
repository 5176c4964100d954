//! Sealed records: a secret encrypted under a key only this device can derive.
//!
//! The sealing key comes from the device-unique secret (the OTP disk) with one HKDF
//! over the image's hash: `HKDF(salt = "dsoftbus/v1 sealing", ikm = OTP secret,
//! info = "seal" || record id (2 bytes, little-endian))`, 48 bytes: the first 32 are
//! the sealing key, the last 16 the key id ([`SealingKeys::derive`]; the document has
//! a test vector that `tests/sealing.rs` rebuilds). The key id is stored in clear: a
//! record whose key id is not this device's (for that record) was sealed on another
//! device; one whose key id matches but does not open was tampered with. (Knowing
//! HKDF's later output block reveals nothing of the earlier one: each is an HMAC under
//! the extracted key.)
//!
//! Layout (little-endian), specified in `docs/state-disk.md`:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `SEAL` |
//! | 4 | 1 | version, 1 |
//! | 5 | 1 | AEAD id ([`AeadAlgorithm::id`]) |
//! | 6 | 1 | hash id ([`HashAlgorithm::id`]) |
//! | 7 | 1 | 0 |
//! | 8 | 2 | record id |
//! | 10 | 2 | 0 |
//! | 12 | 4 | sequence |
//! | 16 | 16 | key id |
//! | 32 | 12 | nonce (from rngd) |
//! | 44 | 2 | ciphertext length `n` (plaintext + 16-byte tag) |
//! | 46 | `n` | ciphertext, then the tag |
//!
//! The associated data is bytes 0..46: version, algorithms, record id, sequence, key
//! id, nonce and length are all authenticated. The record id of the associated data is
//! the one the opener asks for, so a record moved to another id does not open.

use alloc::vec::Vec;
use core::fmt;

use provider_api::cipher::{NONCE_LEN, TAG_LEN};
use provider_api::{
    AeadAlgorithm, AeadBackend, AeadCipher, AeadKey, HashAlgorithm, HashBackend, SecretBytes,
};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// The first four bytes of a sealed record.
pub const MAGIC: [u8; 4] = *b"SEAL";
/// The format version.
pub const VERSION: u8 = 1;
/// Length of the header (the associated data).
pub const HEADER_LEN: usize = 46;
/// Length of a key id.
pub const KEY_ID_LEN: usize = 16;
/// The HKDF salt of every sealing derivation.
pub const SEALING_SALT: &[u8] = b"dsoftbus/v1 sealing";
/// The HKDF output per record: the sealing key, then the key id.
const OKM_LEN: usize = 32 + KEY_ID_LEN;

/// The HKDF `info` of record `record_id`'s keys: `"seal"` and the id, little-endian.
pub fn seal_info(record_id: u16) -> [u8; 6] {
    let mut info = [0u8; 6];
    info[..4].copy_from_slice(b"seal");
    info[4..].copy_from_slice(&record_id.to_le_bytes());
    info
}

/// Why a sealed record did not open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnsealError {
    /// Not a sealed record of this version (bad magic, version, length, unknown
    /// algorithm id).
    Malformed,
    /// Sealed with another AEAD than this image has.
    OtherAead {
        /// The record's AEAD.
        sealed: AeadAlgorithm,
        /// This image's.
        image: AeadAlgorithm,
    },
    /// Sealed with keys derived by another hash than this image has.
    OtherHash {
        /// The record's hash.
        sealed: HashAlgorithm,
        /// This image's.
        image: HashAlgorithm,
    },
    /// The key id is not this device's: sealed on another device.
    OtherDevice,
    /// The key id is this device's but the record does not authenticate: tampered.
    Tampered,
}

impl fmt::Display for UnsealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed => f.write_str("not a sealed record"),
            Self::OtherAead { sealed, image } => {
                write!(f, "sealed with {sealed:?}, this image has {image:?}")
            }
            Self::OtherHash { sealed, image } => {
                write!(f, "sealed with {sealed:?}, this image has {image:?}")
            }
            Self::OtherDevice => f.write_str("sealed on another device"),
            Self::Tampered => f.write_str("the sealed record was tampered with"),
        }
    }
}

/// The keys of one device for one record: the sealing key and the device's key id.
pub struct SealingKeys {
    key: AeadKey,
    key_id: [u8; KEY_ID_LEN],
}

impl SealingKeys {
    /// Derives the keys for `record_id` from the device-unique secret with hash `H`:
    /// one HKDF, `info = "seal" || record id` (little-endian), 48 bytes of output; the
    /// sealing key is the first 32, the key id the last 16 (`docs/state-disk.md`).
    pub fn derive<H: HashBackend>(otp: &SecretBytes<32>, record_id: u16) -> Self {
        let info = seal_info(record_id);
        let okm = H::hkdf_with_info::<OKM_LEN>(SEALING_SALT, otp.expose_secret(), &info);
        let (key, key_id) = okm.expose_secret().split_at(32);
        let key = AeadKey::from_fill(|k: &mut [u8; 32]| {
            k.copy_from_slice(key);
            Ok::<(), ()>(())
        })
        .expect("32 bytes");
        Self {
            key,
            key_id: key_id.try_into().expect("16 bytes"),
        }
    }

    /// The device's key id (public).
    pub fn key_id(&self) -> [u8; KEY_ID_LEN] {
        self.key_id
    }
}

fn header<A: AeadBackend, H: HashBackend>(
    record_id: u16,
    sequence: u32,
    key_id: &[u8; KEY_ID_LEN],
    nonce: &[u8; NONCE_LEN],
    ciphertext_len: u16,
) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[..4].copy_from_slice(&MAGIC);
    out[4] = VERSION;
    out[5] = A::ALGORITHM.id();
    out[6] = H::ALGORITHM.id();
    out[8..10].copy_from_slice(&record_id.to_le_bytes());
    out[12..16].copy_from_slice(&sequence.to_le_bytes());
    out[16..32].copy_from_slice(key_id);
    out[32..44].copy_from_slice(nonce);
    out[44..46].copy_from_slice(&ciphertext_len.to_le_bytes());
    out
}

/// Seals `secret` as record `record_id`, version `sequence`, with AEAD `A`, a fresh
/// `nonce` (never reuse one under the same key: take it from the entropy source).
pub fn seal<A: AeadBackend, H: HashBackend>(
    keys: &SealingKeys,
    record_id: u16,
    sequence: u32,
    nonce: &[u8; NONCE_LEN],
    secret: &[u8],
) -> Vec<u8> {
    let ciphertext_len = u16::try_from(secret.len() + TAG_LEN).expect("secrets are small");
    let header = header::<A, H>(record_id, sequence, &keys.key_id, nonce, ciphertext_len);
    let mut out = Vec::with_capacity(HEADER_LEN + usize::from(ciphertext_len));
    out.extend_from_slice(&header);
    out.extend_from_slice(secret);
    let cipher = AeadCipher::<A>::new(&keys.key);
    let tag = cipher
        .seal_in_place_detached(nonce, &header, &mut out[HEADER_LEN..])
        .expect("secrets are far below the AEAD's limits");
    out.extend_from_slice(&tag);
    out
}

/// Opens sealed record `record` as record `record_id`, with this image's AEAD `A`
/// and hash `H`. The plaintext is written into `secret` (which must be exactly its
/// length).
///
/// # Errors
/// [`UnsealError`], checked in this order: malformed, another AEAD or hash, another
/// device's key id, then authentication (tampered). `secret` is zero on error.
pub fn unseal<A: AeadBackend, H: HashBackend>(
    keys: &SealingKeys,
    record_id: u16,
    record: &[u8],
    secret: &mut [u8],
) -> Result<(), UnsealError> {
    let opened = open::<A, H>(keys, record_id, record, secret);
    if opened.is_err() {
        // Whatever the buffer held, and whatever a failed open left in it.
        secret.zeroize();
    }
    opened
}

fn open<A: AeadBackend, H: HashBackend>(
    keys: &SealingKeys,
    record_id: u16,
    record: &[u8],
    secret: &mut [u8],
) -> Result<(), UnsealError> {
    let (head, ciphertext) = record
        .split_first_chunk::<HEADER_LEN>()
        .ok_or(UnsealError::Malformed)?;
    if head[..4] != MAGIC || head[4] != VERSION {
        return Err(UnsealError::Malformed);
    }
    let aead = AeadAlgorithm::from_id(head[5]).ok_or(UnsealError::Malformed)?;
    let hash = HashAlgorithm::from_id(head[6]).ok_or(UnsealError::Malformed)?;
    let len = usize::from(u16::from_le_bytes([head[44], head[45]]));
    if len != ciphertext.len() || len != secret.len() + TAG_LEN {
        return Err(UnsealError::Malformed);
    }
    if head[7] != 0 || head[10..12] != [0, 0] {
        return Err(UnsealError::Malformed);
    }
    if aead != A::ALGORITHM {
        return Err(UnsealError::OtherAead {
            sealed: aead,
            image: A::ALGORITHM,
        });
    }
    if hash != H::ALGORITHM {
        return Err(UnsealError::OtherHash {
            sealed: hash,
            image: H::ALGORITHM,
        });
    }
    // A record moved to another id: its key id (derived per record) would not match
    // either, but it is not another device's.
    if head[8..10] != record_id.to_le_bytes() {
        return Err(UnsealError::Tampered);
    }
    let key_id: [u8; KEY_ID_LEN] = head[16..32]
        .try_into()
        .map_err(|_| UnsealError::Malformed)?;
    if !bool::from(key_id.ct_eq(&keys.key_id)) {
        return Err(UnsealError::OtherDevice);
    }
    let nonce: [u8; NONCE_LEN] = head[32..44]
        .try_into()
        .map_err(|_| UnsealError::Malformed)?;
    let sequence = u32::from_le_bytes(
        head[12..16]
            .try_into()
            .map_err(|_| UnsealError::Malformed)?,
    );
    // Every header byte is either checked above or authenticated below; the record
    // id must be the one asked for.
    let expected = header::<A, H>(record_id, sequence, &key_id, &nonce, len as u16);
    if *head != expected {
        return Err(UnsealError::Tampered);
    }
    let (body, tag) = ciphertext.split_at(len - TAG_LEN);
    let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| UnsealError::Malformed)?;
    secret.copy_from_slice(body);
    AeadCipher::<A>::new(&keys.key)
        .open_in_place_detached(&nonce, &expected, secret, &tag)
        .map_err(|_| UnsealError::Tampered)
}
