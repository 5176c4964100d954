//! provider-api hash backends: BLAKE2s-256 and SHA-256, with HMAC and RFC 5869 HKDF.
//!
//! Thin adapters over `blake2`, `sha2`, `hmac` and `hkdf`. BLAKE2s goes through the
//! crates' generic `SimpleHmac`/`SimpleHkdf` (block size 64, as Noise specifies);
//! SHA-256 through `Hmac`/`Hkdf`. No getrandom, no std.

#![no_std]
#![forbid(unsafe_code)]

use blake2::Blake2s256;
use hmac::{Mac, SimpleHmac};
use provider_api::SecretBytes;
use provider_api::hash::{HASH_LEN, HashAlgorithm, HashBackend};
use sha2::Digest;

/// BLAKE2s-256, as a type: `Noise_..._BLAKE2s`.
#[derive(Debug)]
pub enum Blake2s {}

/// SHA-256, as a type: `Noise_..._SHA256`.
#[derive(Debug)]
pub enum Sha256 {}

fn digest<D: Digest>(parts: &[&[u8]]) -> [u8; HASH_LEN] {
    let mut hasher = D::new();
    for part in parts {
        hasher.update(part);
    }
    let mut out = [0u8; HASH_LEN];
    out.copy_from_slice(&hasher.finalize());
    out
}

fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> [u8; HASH_LEN] {
    let mut mac =
        <M as hmac::digest::KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    let mut out = [0u8; HASH_LEN];
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

impl HashBackend for Blake2s {
    const NAME: &'static str = "BLAKE2s";
    const ALGORITHM: HashAlgorithm = HashAlgorithm::Blake2s256;

    fn hash(parts: &[&[u8]]) -> [u8; HASH_LEN] {
        digest::<Blake2s256>(parts)
    }

    fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; HASH_LEN] {
        mac::<SimpleHmac<Blake2s256>>(key, parts)
    }

    fn hkdf_with_info<const N: usize>(salt: &[u8], ikm: &[u8], info: &[u8]) -> SecretBytes<N> {
        let mut okm = SecretBytes::zeroed();
        hkdf::SimpleHkdf::<Blake2s256>::new(Some(salt), ikm)
            .expand(info, okm.expose_secret_mut())
            .expect("N <= 255 * HashLen");
        okm
    }
}

impl HashBackend for Sha256 {
    const NAME: &'static str = "SHA256";
    const ALGORITHM: HashAlgorithm = HashAlgorithm::Sha256;

    fn hash(parts: &[&[u8]]) -> [u8; HASH_LEN] {
        digest::<sha2::Sha256>(parts)
    }

    fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; HASH_LEN] {
        mac::<hmac::Hmac<sha2::Sha256>>(key, parts)
    }

    fn hkdf_with_info<const N: usize>(salt: &[u8], ikm: &[u8], info: &[u8]) -> SecretBytes<N> {
        let mut okm = SecretBytes::zeroed();
        hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), ikm)
            .expand(info, okm.expose_secret_mut())
            .expect("N <= 255 * HashLen");
        okm
    }
}
