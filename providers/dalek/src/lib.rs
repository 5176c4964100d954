//! provider-api backend for Ed25519 and X25519 on `ed25519-dalek` 3 and `x25519-dalek` 3.
//!
//! A thin adapter: every operation is a call into the dalek crates. The key types
//! are wrapped so that the dalek getters for secret bytes (`to_bytes`,
//! `to_scalar_bytes`, ...) are out of reach of callers, and so that verification
//! follows provider-api's rule (`verify_strict`, and keys checked when decoded).
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
use provider_api::signing::{KeyRejection, PUBLIC_KEY_LEN, SignatureBackend, SignatureError};
use provider_api::{SecretBytes, Seed, Signature, X25519PublicKey};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The dalek backend, as a type: `Bundle<Dalek, _>`.
#[derive(Debug)]
pub enum Dalek {}

/// An `ed25519_dalek::SigningKey` with no way to read its secret bytes.
pub struct DalekSigningKey(ed25519_dalek::SigningKey);

/// `ed25519_dalek::SigningKey` zeroizes itself on drop (feature `zeroize`).
impl ZeroizeOnDrop for DalekSigningKey {}

impl signature::Signer<Signature> for DalekSigningKey {
    fn try_sign(&self, message: &[u8]) -> Result<Signature, signature::Error> {
        self.0.try_sign(message)
    }
}

/// An `ed25519_dalek::VerifyingKey` that verifies with `verify_strict`, the rule of
/// provider-api (canonical R and S, R and A not of small order, cofactorless).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DalekVerifyingKey(ed25519_dalek::VerifyingKey);

impl signature::Verifier<Signature> for DalekVerifyingKey {
    fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), signature::Error> {
        self.0.verify_strict(message, signature)
    }
}

impl SignatureBackend for Dalek {
    const NAME: &'static str = "dalek";
    /// `verify_strict` is cofactorless.
    const COFACTORED_VERIFICATION: bool = false;
    type SigningKey = DalekSigningKey;
    type VerifyingKey = DalekVerifyingKey;

    fn signing_key_from_seed(seed: &Seed) -> DalekSigningKey {
        DalekSigningKey(ed25519_dalek::SigningKey::from_bytes(seed.expose_secret()))
    }

    fn verifying_key(key: &DalekSigningKey) -> DalekVerifyingKey {
        DalekVerifyingKey(key.0.verifying_key())
    }

    /// `from_bytes` decompresses; the point's own encoding must be the input
    /// (`from_bytes` accepts non-canonical y); `is_weak` is the small-order check and
    /// curve25519-dalek's `is_torsion_free` the prime-order one.
    fn verifying_key_from_bytes(
        bytes: &[u8; PUBLIC_KEY_LEN],
    ) -> Result<DalekVerifyingKey, SignatureError> {
        let refuse = |why| Err(SignatureError::InvalidPublicKey(why));
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(bytes) else {
            return refuse(KeyRejection::NotCanonicalPoint);
        };
        let point = key.to_edwards();
        if point.compress().to_bytes() != *bytes {
            return refuse(KeyRejection::NotCanonicalPoint);
        }
        if key.is_weak() {
            return refuse(KeyRejection::SmallOrder);
        }
        if !point.is_torsion_free() {
            return refuse(KeyRejection::NotPrimeOrder);
        }
        Ok(DalekVerifyingKey(key))
    }

    fn verifying_key_to_bytes(key: &DalekVerifyingKey) -> [u8; PUBLIC_KEY_LEN] {
        key.0.to_bytes()
    }
}

/// An `x25519_dalek::StaticSecret` with no way to read its bytes.
pub struct DalekX25519Secret(x25519_dalek::StaticSecret);

/// `x25519_dalek::StaticSecret` zeroizes itself on drop (feature `zeroize`).
impl ZeroizeOnDrop for DalekX25519Secret {}

impl KeyAgreementBackend for Dalek {
    const NAME: &'static str = "dalek";
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
