//! Hash functions with HMAC and HKDF, for protocols such as Noise.
//!
//! The Noise framework's `HASH` and `HKDF` are exactly a 32-byte hash, HMAC over it,
//! and RFC 5869 HKDF with an empty info string: a backend provides those three, on
//! maintained crates, and the protocol code never writes them by hand.

use crate::secret::SecretBytes;

/// Length of every hash output here (BLAKE2s-256, SHA-256).
pub const HASH_LEN: usize = 32;

/// Which hash a backend computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HashAlgorithm {
    /// BLAKE2s with a 256-bit output (RFC 7693).
    Blake2s256,
    /// SHA-256 (FIPS 180-4).
    Sha256,
}

/// What a hash backend implements.
pub trait HashBackend: 'static {
    /// The name Noise protocol names use: `BLAKE2s` or `SHA256`.
    const NAME: &'static str;
    /// Which algorithm this is.
    const ALGORITHM: HashAlgorithm;

    /// The hash of the concatenation of `parts`.
    fn hash(parts: &[&[u8]]) -> [u8; HASH_LEN];

    /// HMAC (RFC 2104) under `key` of the concatenation of `parts`.
    fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; HASH_LEN];

    /// RFC 5869 HKDF with `salt`, input keying material `ikm` and an empty info
    /// string, filling `N` bytes of output keying material (`N <= 255 * 32`).
    fn hkdf<const N: usize>(salt: &[u8], ikm: &[u8]) -> SecretBytes<N>;
}
