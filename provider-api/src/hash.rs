//! Hash functions with HMAC and HKDF, for protocols such as Noise.
//!
//! The Noise framework's `HASH` and `HKDF` are exactly a 32-byte hash, HMAC over it,
//! and RFC 5869 HKDF with an empty info string: a backend provides those three, on
//! maintained crates, and the protocol code never writes them by hand. Sealing keys
//! and other derived keys use HKDF's `info` input for domain separation
//! ([`HashBackend::hkdf_with_info`]).

use crate::secret::SecretBytes;

/// Length of every hash output here (BLAKE2s-256, SHA-256).
pub const HASH_LEN: usize = 32;

/// Which hash a backend computes.
///
/// Not `#[non_exhaustive]`, on purpose (see [`crate::AeadAlgorithm`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// BLAKE2s with a 256-bit output (RFC 7693).
    Blake2s256,
    /// SHA-256 (FIPS 180-4).
    Sha256,
}

impl HashAlgorithm {
    /// A stable number for formats that record which hash made something (1 BLAKE2s,
    /// 2 SHA-256). Adding a variant means giving it one here.
    pub const fn id(self) -> u8 {
        match self {
            Self::Blake2s256 => 1,
            Self::Sha256 => 2,
        }
    }

    /// The algorithm with id `id`.
    pub const fn from_id(id: u8) -> Option<Self> {
        match id {
            1 => Some(Self::Blake2s256),
            2 => Some(Self::Sha256),
            _ => None,
        }
    }

    /// The name in combination names and features: `blake2s`, `sha256`.
    pub const fn short_name(self) -> &'static str {
        match self {
            Self::Blake2s256 => "blake2s",
            Self::Sha256 => "sha256",
        }
    }

    /// The Noise specification's name of the hash: `BLAKE2s`, `SHA256`.
    pub const fn noise_name(self) -> &'static str {
        match self {
            Self::Blake2s256 => "BLAKE2s",
            Self::Sha256 => "SHA256",
        }
    }
}

/// What a hash backend implements.
pub trait HashBackend: 'static {
    /// The name Noise protocol names use: `BLAKE2s` or `SHA256`.
    const NAME: &'static str;
    /// Whether the backend's cryptography is formally verified code (proofs of memory
    /// safety and functional correctness against a specification, as HACL*'s), for
    /// reports and the README's table. Checks an adapter adds on public encodings
    /// need not be; the backend's docs say which. `false` unless a backend says so.
    const FORMALLY_VERIFIED: bool = false;
    /// Which algorithm this is.
    const ALGORITHM: HashAlgorithm;

    /// The hash of the concatenation of `parts`.
    fn hash(parts: &[&[u8]]) -> [u8; HASH_LEN];

    /// HMAC (RFC 2104) under `key` of the concatenation of `parts`.
    fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; HASH_LEN];

    /// RFC 5869 HKDF with `salt`, input keying material `ikm` and `info`, filling `N`
    /// bytes of output keying material (`N <= 255 * 32`).
    fn hkdf_with_info<const N: usize>(salt: &[u8], ikm: &[u8], info: &[u8]) -> SecretBytes<N>;

    /// RFC 5869 HKDF with an empty info string: Noise's `HKDF`.
    fn hkdf<const N: usize>(salt: &[u8], ikm: &[u8]) -> SecretBytes<N> {
        Self::hkdf_with_info(salt, ikm, &[])
    }
}
