//! provider-api backend for Ed25519 and X25519 on `ed25519-compact` 2.
//!
//! Built with default features off (no `getrandom`, no `std`) and with `traits` and
//! `x25519` on. A thin adapter with two conversions the crate needs:
//!
//! - its `traits` feature signs with its *own* `Signature` type, not
//!   `ed25519::Signature`, so signatures are converted through their 64 bytes;
//! - `KeyPair::from_seed` panics on an all-zero seed; provider-api refuses that seed
//!   before it gets here, on every backend;
//! - provider-api's verification rule wants keys of prime order, which
//!   ed25519-compact cannot check: that one check is curve25519-dalek's
//!   `is_torsion_free`, made once when a key is decoded. Verification is the crate's
//!   own (cofactored); see provider-api's `signing` module for the one difference
//!   that leaves and why it cannot change a decision.
//!
//! Signing is deterministic (RFC 8032): no fault-attack noise is mixed in, so
//! signatures are identical to the other backend's and to the RFC vectors.

#![no_std]
#![forbid(unsafe_code)]

use ed25519_compact::x25519;
use provider_api::key_agreement::{KeyAgreementBackend, KeyAgreementError, X25519_LEN};
use provider_api::signing::{KeyRejection, PUBLIC_KEY_LEN, SignatureBackend, SignatureError};
use provider_api::{SecretBytes, Seed, Signature, X25519PublicKey};
use zeroize::ZeroizeOnDrop;

/// The ed25519-compact backend, as a type: `Bundle<Compact, _>`.
#[derive(Debug)]
pub enum Compact {}

/// An `ed25519_compact::KeyPair` with no way to read its secret bytes.
pub struct CompactSigningKey(ed25519_compact::KeyPair);

/// `ed25519_compact::SecretKey` wipes itself in its `Drop`.
impl ZeroizeOnDrop for CompactSigningKey {}

impl signature::Signer<Signature> for CompactSigningKey {
    fn try_sign(&self, message: &[u8]) -> Result<Signature, signature::Error> {
        let compact = self.0.sk.sign(message, None);
        Ok(Signature::from_bytes(&compact))
    }
}

/// An `ed25519_compact::PublicKey` that verifies `ed25519::Signature`s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactVerifyingKey(ed25519_compact::PublicKey);

impl signature::Verifier<Signature> for CompactVerifyingKey {
    fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), signature::Error> {
        let compact = ed25519_compact::Signature::new(signature.to_bytes());
        self.0
            .verify(message, &compact)
            .map_err(|_| signature::Error::new())
    }
}

impl SignatureBackend for Compact {
    const NAME: &'static str = "compact";
    /// `PublicKey::verify` accepts when `R' - R` has small order.
    const COFACTORED_VERIFICATION: bool = true;
    type SigningKey = CompactSigningKey;
    type VerifyingKey = CompactVerifyingKey;

    fn signing_key_from_seed(seed: &Seed) -> CompactSigningKey {
        // ed25519-compact's `Seed` is `Copy` and has no `Drop`: fill one in place, let
        // the crate take its copy, then wipe ours (the crate's own copy is its to keep;
        // the key pair it builds wipes its secret half on drop).
        let mut compact_seed = ed25519_compact::Seed::new([0; 32]);
        compact_seed.copy_from_slice(seed.expose_secret());
        let pair = ed25519_compact::KeyPair::from_seed(compact_seed);
        compact_seed.wipe_mut();
        CompactSigningKey(pair)
    }

    fn verifying_key(key: &CompactSigningKey) -> CompactVerifyingKey {
        CompactVerifyingKey(key.0.pk)
    }

    /// `PublicKey::validate` refuses non-canonical encodings, non-points and small
    /// order; ed25519-compact has no prime-order check, so that one is
    /// curve25519-dalek's `is_torsion_free` on the same bytes.
    fn verifying_key_from_bytes(
        bytes: &[u8; PUBLIC_KEY_LEN],
    ) -> Result<CompactVerifyingKey, SignatureError> {
        let key = ed25519_compact::PublicKey::new(*bytes);
        match key.validate() {
            Ok(()) => {}
            Err(ed25519_compact::Error::WeakPublicKey) => {
                return Err(SignatureError::InvalidPublicKey(KeyRejection::SmallOrder));
            }
            Err(_) => {
                return Err(SignatureError::InvalidPublicKey(
                    KeyRejection::NotCanonicalPoint,
                ));
            }
        }
        let prime_order = curve25519_dalek::edwards::CompressedEdwardsY(*bytes)
            .decompress()
            .is_some_and(|point| point.is_torsion_free());
        if !prime_order {
            return Err(SignatureError::InvalidPublicKey(
                KeyRejection::NotPrimeOrder,
            ));
        }
        Ok(CompactVerifyingKey(key))
    }

    fn verifying_key_to_bytes(key: &CompactVerifyingKey) -> [u8; PUBLIC_KEY_LEN] {
        *key.0
    }
}

/// An `ed25519_compact::x25519::SecretKey` with no way to read its bytes.
pub struct CompactX25519Secret(x25519::SecretKey);

/// `x25519::SecretKey` wipes itself in its `Drop`.
impl ZeroizeOnDrop for CompactX25519Secret {}

impl KeyAgreementBackend for Compact {
    const NAME: &'static str = "compact";
    type SecretKey = CompactX25519Secret;

    fn secret_key_from_bytes(bytes: &SecretBytes<X25519_LEN>) -> CompactX25519Secret {
        // Filled in place through `DerefMut`: no copy of the secret on the stack. The
        // key wipes itself on drop.
        let mut secret = x25519::SecretKey::new([0; X25519_LEN]);
        secret.copy_from_slice(bytes.expose_secret());
        CompactX25519Secret(secret)
    }

    fn public_key(secret: &CompactX25519Secret) -> X25519PublicKey {
        // The base point has prime order, so the ladder cannot end in zero.
        let public = secret
            .0
            .recover_public_key()
            .expect("X25519 of the base point is never the identity");
        X25519PublicKey(*public)
    }

    fn diffie_hellman(
        secret: &CompactX25519Secret,
        peer: &X25519PublicKey,
    ) -> Result<SecretBytes<X25519_LEN>, KeyAgreementError> {
        match x25519::PublicKey::new(peer.0).dh(&secret.0) {
            Ok(shared) => Ok(SecretBytes::new(*shared)),
            Err(_) => Err(KeyAgreementError::LowOrderPeerKey),
        }
    }
}
