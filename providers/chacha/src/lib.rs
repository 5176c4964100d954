//! provider-api AEAD backend: ChaCha20-Poly1305 (RFC 8439) on `chacha20poly1305` 0.11.
//!
//! Nothing to adapt: the crate implements the `aead` 0.6 traits that
//! `provider_api::AeadBackend` asks for, and wipes its key on drop (feature
//! `zeroize`). Default features are off, so there is no `getrandom`.

#![no_std]
#![forbid(unsafe_code)]

use provider_api::{AeadAlgorithm, AeadBackend, NoiseAead};

/// The ChaCha20-Poly1305 backend, as a type: `Bundle<_, ChaCha20Poly1305>`.
#[derive(Debug)]
pub enum ChaCha20Poly1305 {}

impl AeadBackend for ChaCha20Poly1305 {
    const NAME: &'static str = "chacha";
    const ALGORITHM: AeadAlgorithm = AeadAlgorithm::ChaCha20Poly1305;
    type Cipher = chacha20poly1305::ChaCha20Poly1305;
}

impl NoiseAead for ChaCha20Poly1305 {}
