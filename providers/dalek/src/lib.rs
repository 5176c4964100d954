//! provider-api backend for Ed25519 and X25519 on `ed25519-dalek` 3 and `x25519-dalek` 3.
//!
//! A thin adapter: every operation is one call into the dalek crates. The key types
//! are wrapped so that the dalek getters for secret bytes (`to_bytes`,
//! `to_scalar_bytes`, ...) are out of reach of callers.
//!
//! ```
//! use provider_api::{Seed, SigningKey};
//! use provider_dalek::Dalek;
//!
//! let key = SigningKey::<Dalek>::from_seed(&Seed::new([7; 32])).unwrap();
//! let signature = key.sign(b"hello");
//! key.verifying_key().verify(b"hello", &signature).unwrap();
//! ```

#![no_std]
#![forbid(unsafe_code)]

use provider_api::key_agreement::{KeyAgreementBackend, KeyAgreementError, X25519_LEN};
use provider_api::signing::{PUBLIC_KEY_LEN, SignatureBackend, SignatureError};
use provider_api::{CurveBackend, SecretBytes, Seed, Signature, X25519PublicKey};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The dalek backend, as a type: `Bundle<Dalek, _>`.
#[derive(Debug)]
pub enum Dalek {}

impl CurveBackend for Dalek {
    const NAME: &'static str = "dalek";
}

/// An `ed25519_dalek::SigningKey` with no way to read its secret bytes.
pub struct DalekSigningKey(ed25519_dalek::SigningKey);

/// `ed25519_dalek::SigningKey` zeroizes itself on drop (feature `zeroize`).
impl ZeroizeOnDrop for DalekSigningKey {}

impl signature::Signer<Signature> for DalekSigningKey {
    fn try_sign(&self, message: &[u8]) -> Result<Signature, signature::Error> {
        self.0.try_sign(message)
    }
}

impl SignatureBackend for Dalek {
    type SigningKey = DalekSigningKey;
    type VerifyingKey = ed25519_dalek::VerifyingKey;

    fn signing_key_from_seed(seed: &Seed) -> DalekSigningKey {
        DalekSigningKey(ed25519_dalek::SigningKey::from_bytes(seed.expose_secret()))
    }

    fn verifying_key(key: &DalekSigningKey) -> ed25519_dalek::VerifyingKey {
        key.0.verifying_key()
    }

    fn verifying_key_from_bytes(
        bytes: &[u8; PUBLIC_KEY_LEN],
    ) -> Result<ed25519_dalek::VerifyingKey, SignatureError> {
        ed25519_dalek::VerifyingKey::from_bytes(bytes).map_err(|_| SignatureError::InvalidPublicKey)
    }

    fn verifying_key_to_bytes(key: &ed25519_dalek::VerifyingKey) -> [u8; PUBLIC_KEY_LEN] {
        key.to_bytes()
    }
}

/// An `x25519_dalek::StaticSecret` with no way to read its bytes.
pub struct DalekX25519Secret(x25519_dalek::StaticSecret);

/// `x25519_dalek::StaticSecret` zeroizes itself on drop (feature `zeroize`).
impl ZeroizeOnDrop for DalekX25519Secret {}

impl KeyAgreementBackend for Dalek {
    type SecretKey = DalekX25519Secret;

    fn secret_key_from_bytes(bytes: &SecretBytes<X25519_LEN>) -> DalekX25519Secret {
        // x25519-dalek 3 builds a `StaticSecret` only from an array by value: make the
        // one copy it needs a named one and wipe it after. (`ed25519_dalek::SigningKey`
        // takes a reference, so the signing path needs no copy.)
        let mut copy = *bytes.expose_secret();
        let secret = x25519_dalek::StaticSecret::from(copy);
        copy.zeroize();
        DalekX25519Secret(secret)
    }

    fn public_key(secret: &DalekX25519Secret) -> X25519PublicKey {
        X25519PublicKey(x25519_dalek::PublicKey::from(&secret.0).to_bytes())
    }

    fn diffie_hellman(
        secret: &DalekX25519Secret,
        peer: &X25519PublicKey,
    ) -> Result<SecretBytes<X25519_LEN>, KeyAgreementError> {
        let shared = secret
            .0
            .diffie_hellman(&x25519_dalek::PublicKey::from(peer.0));
        Ok(SecretBytes::new(*shared.as_bytes()))
    }
}
