//! provider-api AEAD backend: AES-256-GCM-SIV (RFC 8452) on `aes-gcm-siv` 0.12.
//!
//! Nonce-misuse resistant: a repeated nonce reveals only whether two messages (with
//! their associated data) were equal, where AES-GCM would lose its authentication key.
//! Noise names no such cipher, so this is an AEAD backend but not a
//! [`provider_api::NoiseAead`]: it cannot be an image's AEAD (selecting it is a
//! compile error), and code that seals outside Noise names it directly.
//!
//! One adaptation: `aes_gcm_siv::Aes256GcmSiv` does not declare `ZeroizeOnDrop`,
//! which `AeadBackend::Cipher` requires. Its one field is the key-generating key, an
//! `aes::Aes256`, which wipes its round keys on drop when `aes`'s `zeroize` feature is
//! on (this crate turns it on; `aes-gcm-siv`'s own `zeroize` feature does not). The
//! newtype [`Cipher`] declares the property, and [`_aes256_wipes_itself`] makes the
//! compiler check the premise. Default features are off: no `getrandom`.

#![no_std]
#![forbid(unsafe_code)]

use aes_gcm_siv::aead::consts::{U12, U16, U32};
use aes_gcm_siv::aead::inout::InOutBuf;
use aes_gcm_siv::aead::{self, AeadCore, AeadInOut, KeyInit, KeySizeUser};
use provider_api::reexports::zeroize::ZeroizeOnDrop;
use provider_api::{AeadAlgorithm, AeadBackend};

/// The AES-256-GCM-SIV backend, as a type.
#[derive(Debug)]
pub enum Aes256GcmSiv {}

impl AeadBackend for Aes256GcmSiv {
    const NAME: &'static str = "aes-gcm-siv";
    const ALGORITHM: AeadAlgorithm = AeadAlgorithm::Aes256GcmSiv;
    type Cipher = Cipher;
}

/// `aes_gcm_siv::Aes256GcmSiv`, declared `ZeroizeOnDrop` (see the crate docs).
pub struct Cipher(aes_gcm_siv::Aes256GcmSiv);

/// Compiles only while `aes::Aes256` is `ZeroizeOnDrop`: the premise of [`Cipher`]'s
/// declaration.
const fn _aes256_wipes_itself<T: ZeroizeOnDrop>() {}
const _: () = _aes256_wipes_itself::<aes::Aes256>();

impl ZeroizeOnDrop for Cipher {}

impl AeadCore for Cipher {
    type NonceSize = U12;
    type TagSize = U16;
    const TAG_POSITION: aead::TagPosition = <aes_gcm_siv::Aes256GcmSiv as AeadCore>::TAG_POSITION;
}

impl KeySizeUser for Cipher {
    type KeySize = U32;
}

impl KeyInit for Cipher {
    fn new(key: &aead::Key<Self>) -> Self {
        Self(aes_gcm_siv::Aes256GcmSiv::new(key))
    }
}

impl AeadInOut for Cipher {
    fn encrypt_inout_detached(
        &self,
        nonce: &aead::Nonce<Self>,
        associated_data: &[u8],
        buffer: InOutBuf<'_, '_, u8>,
    ) -> aead::Result<aead::Tag<Self>> {
        self.0
            .encrypt_inout_detached(nonce, associated_data, buffer)
    }

    fn decrypt_inout_detached(
        &self,
        nonce: &aead::Nonce<Self>,
        associated_data: &[u8],
        buffer: InOutBuf<'_, '_, u8>,
        tag: &aead::Tag<Self>,
    ) -> aead::Result<()> {
        self.0
            .decrypt_inout_detached(nonce, associated_data, buffer, tag)
    }
}
