//! provider-api AEAD backend: AES-256-GCM on `aes-gcm` 0.11 (software AES on riscv64,
//! AES-NI on x86-64 hosts).
//!
//! Nothing to adapt: the crate implements the `aead` 0.6 traits that
//! `provider_api::AeadBackend` asks for, and wipes its key schedule on drop (feature
//! `zeroize`). aes-gcm 0.11 has no `aes256` feature; `Aes256Gcm` comes with `aes`.
//! Default features are off, so there is no `getrandom`.

#![no_std]
#![forbid(unsafe_code)]

use provider_api::{AeadAlgorithm, AeadBackend, NoiseAead};

/// The AES-256-GCM backend, as a type: `Bundle<_, Aes256Gcm>`.
#[derive(Debug)]
pub enum Aes256Gcm {}

impl AeadBackend for Aes256Gcm {
    const NAME: &'static str = "aes-gcm";
    const ALGORITHM: AeadAlgorithm = AeadAlgorithm::Aes256Gcm;
    type Cipher = aes_gcm::Aes256Gcm;
}

impl NoiseAead for Aes256Gcm {}
