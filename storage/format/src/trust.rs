//! The trust store: the device keys of the peers a device trusts, authenticated with
//! a key only this device (and its factory, which wrote the OTP) can derive.
//!
//! dsoftbusd keeps it as its record [`RECORD_ID`] in statefs; `cargo xtask provision`
//! writes it on the host. A person holding only the disk cannot add a peer: the tag is
//! an HMAC over the record under `HKDF(salt = "dsoftbus/v1 trust store",
//! ikm = OTP secret, info = "tag key")`, with the image's hash.
//!
//! Layout (little-endian), specified in `docs/state-disk.md`:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `TRST` |
//! | 4 | 1 | version, 1 |
//! | 5 | 1 | hash id of the tag ([`HashAlgorithm::id`]) |
//! | 6 | 2 | count `k`, at most [`MAX_PEERS`] |
//! | 8 | 32·`k` | Ed25519 device public keys |
//! | 8 + 32·`k` | 32 | tag: HMAC(tag key, "dsoftbus/v1 trust store" ‖ bytes 0..8+32·`k`) |
//!
//! Keys are stored as bytes; whoever loads them decodes each under provider-api's
//! verification rule (a canonical point of prime order) and refuses the store if one
//! fails: provisioning checks the same rule before it writes.

use alloc::vec::Vec;
use core::fmt;

use provider_api::{HashAlgorithm, HashBackend, SecretBytes};
use subtle::ConstantTimeEq;

/// dsoftbusd's record id of the trust store in statefs.
pub const RECORD_ID: u16 = 1;
/// The first four bytes.
pub const MAGIC: [u8; 4] = *b"TRST";
/// The format version.
pub const VERSION: u8 = 1;
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

/// The trust store holding `peers`, tagged with the device's `key`.
///
/// # Panics
/// With more than [`MAX_PEERS`] peers (callers check).
pub fn encode<H: HashBackend>(key: &TagKey, peers: &[[u8; 32]]) -> Vec<u8> {
    assert!(peers.len() <= MAX_PEERS, "at most {MAX_PEERS} peers");
    let mut out = Vec::with_capacity(8 + 32 * peers.len() + 32);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(H::ALGORITHM.id());
    out.extend_from_slice(&(peers.len() as u16).to_le_bytes());
    for peer in peers {
        out.extend_from_slice(peer);
    }
    let tag = H::hmac(key.0.expose_secret(), &[TAG_LABEL, &out]);
    out.extend_from_slice(&tag);
    out
}

/// The peers of `store`, once its tag verifies under the device's `key`.
///
/// # Errors
/// [`TrustStoreError`].
pub fn decode<H: HashBackend>(
    key: &TagKey,
    store: &[u8],
) -> Result<Vec<[u8; 32]>, TrustStoreError> {
    let (body, peers) = parse(store)?;
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
    Ok(peers)
}

/// The peers of `store` without checking its tag (for a tool listing what a disk
/// says; never for a trust decision).
///
/// # Errors
/// [`TrustStoreError::Malformed`].
pub fn peers_unverified(store: &[u8]) -> Result<Vec<[u8; 32]>, TrustStoreError> {
    parse(store).map(|(_, peers)| peers)
}

fn parse(store: &[u8]) -> Result<(&[u8], Vec<[u8; 32]>), TrustStoreError> {
    if store.len() < 8 + 32 || store[..4] != MAGIC || store[4] != VERSION {
        return Err(TrustStoreError::Malformed);
    }
    let count = usize::from(u16::from_le_bytes([store[6], store[7]]));
    if count > MAX_PEERS || store.len() != 8 + 32 * count + 32 {
        return Err(TrustStoreError::Malformed);
    }
    let body = &store[..8 + 32 * count];
    let peers = body[8..]
        .chunks_exact(32)
        .map(|chunk| chunk.try_into().expect("chunks of 32"))
        .collect();
    Ok((body, peers))
}
