//! The trust store: the device keys of the peers a device trusts, authenticated with
//! a key only this device (and its factory, which wrote the OTP) can derive, and
//! versioned against the device's anti-rollback counter.
//!
//! dsoftbusd keeps it as its record [`RECORD_ID`] in statefs; `cargo xtask provision`
//! writes it on the host. A person holding only the disk cannot add a peer: the tag is
//! an HMAC over the record under `HKDF(salt = "dsoftbus/v1 trust store",
//! ikm = OTP secret, info = "tag key")`, with the image's hash. Nor can they bring a
//! revoked peer back by writing an older store (or an older copy of the whole disk):
//! every store carries the value of the device's rollback counter it was written at,
//! under the tag, and keystored refuses a store older than the counter
//! (`rollback-counter`; the factory advances the counter with every store it writes).
//!
//! Layout (little-endian), specified in `docs/state-disk.md`:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `TRST` |
//! | 4 | 1 | version, 2 |
//! | 5 | 1 | hash id of the tag ([`HashAlgorithm::id`]) |
//! | 6 | 2 | count `k`, at most [`MAX_PEERS`] |
//! | 8 | 4 | rollback version: the counter value the store was written at |
//! | 12 | 32·`k` | Ed25519 device public keys |
//! | 12 + 32·`k` | 32 | tag: HMAC(tag key, "dsoftbus/v1 trust store" ‖ bytes 0..12+32·`k`) |
//!
//! Keys are stored as bytes; whoever loads them decodes each under provider-api's
//! verification rule (a canonical point of prime order) and refuses the store if one
//! fails: provisioning checks the same rule before it writes.

use alloc::vec::Vec;
use core::fmt;

use ipc::{RawBlockDevice, ServiceId};
use provider_api::{HashAlgorithm, HashBackend, SecretBytes};
use rollback_counter::CounterError;
use subtle::ConstantTimeEq;

use crate::store::{RecordKey, RecordStore, StoreError};

/// dsoftbusd's record id of the trust store in statefs.
pub const RECORD_ID: u16 = 1;
/// The trust store's record in the record store: dsoftbusd's record [`RECORD_ID`].
pub const RECORD: RecordKey = RecordKey {
    owner: ServiceId::Dsoftbusd as u16,
    id: RECORD_ID,
};
/// The first four bytes.
pub const MAGIC: [u8; 4] = *b"TRST";
/// The format version (1 had no rollback version; it is refused as malformed).
pub const VERSION: u8 = 2;
/// Length of the fields before the keys.
pub const HEADER_LEN: usize = 12;
/// The most peers a store holds (dsoftbusd's allowlist bound).
pub const MAX_PEERS: usize = 16;
/// The domain-separation prefix of the tag's message.
pub const TAG_LABEL: &[u8] = b"dsoftbus/v1 trust store";
/// The HKDF salt of the tag key.
pub const TAG_SALT: &[u8] = b"dsoftbus/v1 trust store";

/// Why bytes are not a trust store this image accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrustStoreError {
    /// Bad magic, version, count or length.
    Malformed,
    /// Tagged with another hash than this image has.
    OtherHash {
        /// The store's.
        tagged: HashAlgorithm,
        /// The image's.
        image: HashAlgorithm,
    },
    /// The tag does not verify: not written by this device or its factory, or altered.
    BadTag,
}

impl fmt::Display for TrustStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed => f.write_str("not a trust store"),
            Self::OtherHash { tagged, image } => {
                write!(f, "tagged with {tagged:?}, this image has {image:?}")
            }
            Self::BadTag => f.write_str("the trust store's tag does not verify"),
        }
    }
}

/// The key of a device's trust-store tags, derived from its secret; zeroized on drop.
pub struct TagKey(SecretBytes<32>);

impl TagKey {
    /// Derives the tag key from the device-unique secret with hash `H`.
    pub fn derive<H: HashBackend>(otp: &SecretBytes<32>) -> Self {
        Self(H::hkdf_with_info::<32>(
            TAG_SALT,
            otp.expose_secret(),
            b"tag key",
        ))
    }
}

/// A trust store whose tag verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustStore {
    /// The rollback counter's value when the factory wrote it.
    pub rollback_version: u32,
    /// The peers' device keys (not yet checked under the verification rule).
    pub peers: Vec<[u8; 32]>,
}

/// The trust store holding `peers`, written at rollback-counter value
/// `rollback_version`, tagged with the device's `key`.
///
/// # Panics
/// With more than [`MAX_PEERS`] peers (callers check).
pub fn encode<H: HashBackend>(key: &TagKey, rollback_version: u32, peers: &[[u8; 32]]) -> Vec<u8> {
    assert!(peers.len() <= MAX_PEERS, "at most {MAX_PEERS} peers");
    let mut out = Vec::with_capacity(HEADER_LEN + 32 * peers.len() + 32);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(H::ALGORITHM.id());
    out.extend_from_slice(&(peers.len() as u16).to_le_bytes());
    out.extend_from_slice(&rollback_version.to_le_bytes());
    for peer in peers {
        out.extend_from_slice(peer);
    }
    let tag = H::hmac(key.0.expose_secret(), &[TAG_LABEL, &out]);
    out.extend_from_slice(&tag);
    out
}

/// The store, once its tag verifies under the device's `key`. The caller compares
/// its rollback version with the device's counter.
///
/// # Errors
/// [`TrustStoreError`].
pub fn decode<H: HashBackend>(key: &TagKey, store: &[u8]) -> Result<TrustStore, TrustStoreError> {
    let (body, unverified) = parse(store)?;
    let tagged = HashAlgorithm::from_id(store[5]).ok_or(TrustStoreError::Malformed)?;
    if tagged != H::ALGORITHM {
        return Err(TrustStoreError::OtherHash {
            tagged,
            image: H::ALGORITHM,
        });
    }
    let expected = H::hmac(key.0.expose_secret(), &[TAG_LABEL, body]);
    let tag = &store[body.len()..];
    if !bool::from(expected.as_slice().ct_eq(tag)) {
        return Err(TrustStoreError::BadTag);
    }
    Ok(unverified)
}

/// The store without checking its tag (for a tool listing what a disk says, and for
/// dsoftbusd once keystored has checked the tag and the version; never for a trust
/// decision of its own).
///
/// # Errors
/// [`TrustStoreError::Malformed`].
pub fn parse_unverified(store: &[u8]) -> Result<TrustStore, TrustStoreError> {
    parse(store).map(|(_, store)| store)
}

fn parse(store: &[u8]) -> Result<(&[u8], TrustStore), TrustStoreError> {
    if store.len() < HEADER_LEN + 32 || store[..4] != MAGIC || store[4] != VERSION {
        return Err(TrustStoreError::Malformed);
    }
    let count = usize::from(u16::from_le_bytes([store[6], store[7]]));
    if count > MAX_PEERS || store.len() != HEADER_LEN + 32 * count + 32 {
        return Err(TrustStoreError::Malformed);
    }
    let rollback_version = u32::from_le_bytes([store[8], store[9], store[10], store[11]]);
    let body = &store[..HEADER_LEN + 32 * count];
    let peers = body[HEADER_LEN..]
        .chunks_exact(32)
        .map(|chunk| chunk.try_into().expect("chunks of 32"))
        .collect();
    Ok((
        body,
        TrustStore {
            rollback_version,
            peers,
        },
    ))
}

/// Why the factory could not write a trust store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProvisionError {
    /// More than [`MAX_PEERS`] peers.
    TooManyPeers,
    /// The rollback counter could not be read or advanced.
    Counter(CounterError),
    /// The record store refused the record.
    Store(StoreError),
}

impl fmt::Display for ProvisionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyPeers => write!(f, "a trust store holds at most {MAX_PEERS} peers"),
            Self::Counter(error) => write!(f, "rollback counter: {error}"),
            Self::Store(error) => write!(f, "record store: {error}"),
        }
    }
}

/// What the factory does to write a trust store holding `peers`: the store is
/// written one above both the counter and the store on the disk (if its tag verifies:
/// a run interrupted before it advanced the counter left a store above the counter),
/// flushed, read back, the older slot retired; then the counter is advanced to that
/// version. Every store the factory writes is therefore newer than every store it
/// wrote before, even across an interrupted run, and a store it replaced is refused
/// for good once the counter moved. A power cut between the two steps leaves a store
/// above the counter, which the device accepts and advances the counter to; the
/// reverse order could leave a counter above every store, a device with no store it
/// accepts. Returns the store's rollback version.
///
/// # Errors
/// [`ProvisionError`]; the counter is advanced only after the store was written.
pub fn provision<H: HashBackend, D: RawBlockDevice, C: RawBlockDevice + ?Sized>(
    records: &mut RecordStore<D>,
    counter: &mut C,
    key: &TagKey,
    peers: &[[u8; 32]],
) -> Result<u32, ProvisionError> {
    if peers.len() > MAX_PEERS {
        return Err(ProvisionError::TooManyPeers);
    }
    let current = rollback_counter::read(counter).map_err(ProvisionError::Counter)?;
    let on_disk = records
        .get(RECORD)
        .ok()
        .and_then(|record| decode::<H>(key, &record).ok())
        .map_or(0, |store| store.rollback_version);
    let version = current
        .max(on_disk)
        .checked_add(1)
        .filter(|v| *v <= rollback_counter::BITS)
        .ok_or(ProvisionError::Counter(CounterError::Exhausted))?;
    records
        .put(RECORD, &encode::<H>(key, version, peers))
        .map_err(ProvisionError::Store)?;
    rollback_counter::advance(counter, version).map_err(ProvisionError::Counter)?;
    Ok(version)
}
