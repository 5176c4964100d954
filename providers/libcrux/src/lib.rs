//! provider-api backends on Cryspen's libcrux: Ed25519 (`libcrux-ed25519`), X25519
//! (`libcrux-curve25519`) and ChaCha20-Poly1305 (`libcrux-chacha20poly1305`).
//!
//! libcrux's code for these is Rust generated from HACL*, whose F* proofs cover memory
//! safety, functional correctness against a specification, and secret independence
//! (no branch or memory index depends on a secret). An image whose every primitive
//! comes from here runs formally verified cryptography: the README's backend table
//! says which axes that covers. The crates build `no_std` with no `getrandom`
//! (default features off).
//!
//! What this adapter adds, and why:
//!
//! - **Ed25519 key decoding and signature encodings.** libcrux's API is
//!   `sign(message, seed)` and `verify(message, public key, signature)` over byte
//!   arrays: it has no key type that could refuse a public key, and its `verify` is the
//!   RFC's. provider-api's verification rule asks more (canonical points, no small-order
//!   public key or nonce point, a public key of prime order): those checks are
//!   curve25519-dalek's, made on public bytes only (as `provider-compact` does for its
//!   one missing check): a key's three checks when it is decoded, and on every
//!   signature its `R` (canonical, not of small order: HACL*'s `verify` accepts a
//!   small-order `R`, which the kit's crafted signatures catch), before libcrux's
//!   `verify` checks `S < L` and the equation, cofactorless.
//!   The conformance kit's verdicts on the "Taming the many EdDSAs" cases and the
//!   crafted signatures are the same as every other backend's.
//! - **Keys that wipe themselves.** libcrux takes keys as arrays and keeps none: the
//!   key types here own the 32 bytes, have no getter, and zeroize on drop.
//! - **In-place AEAD.** libcrux encrypts from one buffer into another, and Rust cannot
//!   lend one buffer as both; provider-api seals in place. The input is copied to a
//!   heap buffer first and that copy is wiped after. A cost of one copy per message.
//! - **The signing key's public half** is computed once when the key is made (libcrux's
//!   `sign` derives it again on every signature, inside HACL*'s code).

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;

use curve25519_dalek::edwards::CompressedEdwardsY;
use provider_api::key_agreement::{KeyAgreementBackend, KeyAgreementError, X25519_LEN};
use provider_api::reexports::aead::consts::{U12, U16, U32};
use provider_api::reexports::aead::inout::InOutBuf;
use provider_api::reexports::aead::{self, AeadCore, AeadInOut, KeyInit, KeySizeUser};
use provider_api::signing::{KeyRejection, PUBLIC_KEY_LEN, SignatureBackend, SignatureError};
use provider_api::{AeadAlgorithm, AeadBackend, NoiseAead};
use provider_api::{SecretBytes, Seed, Signature, X25519PublicKey};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The libcrux backend for Ed25519 and X25519, as a type: `Bundle<Libcrux, _>`.
#[derive(Debug)]
pub enum Libcrux {}

/// An Ed25519 seed (what libcrux's `sign` takes) with its public key; no getter for
/// the seed, wiped on drop.
pub struct LibcruxSigningKey {
    seed: [u8; 32],
    public: [u8; PUBLIC_KEY_LEN],
}

impl Drop for LibcruxSigningKey {
    fn drop(&mut self) {
        self.seed.zeroize();
    }
}

impl ZeroizeOnDrop for LibcruxSigningKey {}

impl signature::Signer<Signature> for LibcruxSigningKey {
    fn try_sign(&self, message: &[u8]) -> Result<Signature, signature::Error> {
        // libcrux refuses a message longer than u32::MAX bytes.
        libcrux_ed25519::sign(message, &self.seed)
            .map(|bytes| Signature::from_bytes(&bytes))
            .map_err(|_| signature::Error::new())
    }
}

/// An Ed25519 public key that passed provider-api's decoding rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LibcruxVerifyingKey([u8; PUBLIC_KEY_LEN]);

impl signature::Verifier<Signature> for LibcruxVerifyingKey {
    /// Rule 3 of provider-api's verification rule (`R` the canonical encoding of a
    /// point not of small order) on the signature's bytes, then libcrux's `verify`
    /// (which refuses `S >= L` itself) for the equation. HACL*'s verification accepts
    /// a small-order `R` with `S = k·a`: without this check the kit's crafted-signature
    /// case fails.
    fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), signature::Error> {
        let bytes = signature.to_bytes();
        let r = &bytes[..32];
        let Ok(r) = <[u8; 32]>::try_from(r) else {
            return Err(signature::Error::new());
        };
        let nonce_point_ok = CompressedEdwardsY(r)
            .decompress()
            .is_some_and(|point| point.compress().to_bytes() == r && !point.is_small_order());
        if !nonce_point_ok {
            return Err(signature::Error::new());
        }
        libcrux_ed25519::verify(message, &self.0, &bytes).map_err(|_| signature::Error::new())
    }
}

impl SignatureBackend for Libcrux {
    const NAME: &'static str = "libcrux";
    /// Signing and the verification equation are HACL*'s; the encoding checks of the
    /// verification rule (curve25519-dalek, on public bytes) are not.
    const FORMALLY_VERIFIED: bool = true;
    /// HACL*'s verification compares `[S]B` with `R + [k]A`: cofactorless.
    const COFACTORED_VERIFICATION: bool = false;
    type SigningKey = LibcruxSigningKey;
    type VerifyingKey = LibcruxVerifyingKey;

    fn signing_key_from_seed(seed: &Seed) -> LibcruxSigningKey {
        let mut key = LibcruxSigningKey {
            seed: [0; 32],
            public: [0; PUBLIC_KEY_LEN],
        };
        key.seed.copy_from_slice(seed.expose_secret());
        libcrux_ed25519::secret_to_public(&mut key.public, &key.seed);
        key
    }

    fn verifying_key(key: &LibcruxSigningKey) -> LibcruxVerifyingKey {
        LibcruxVerifyingKey(key.public)
    }

    /// curve25519-dalek decompresses; the point's own encoding must be the input;
    /// then the small-order and prime-order checks (libcrux has no key decoding).
    fn verifying_key_from_bytes(
        bytes: &[u8; PUBLIC_KEY_LEN],
    ) -> Result<LibcruxVerifyingKey, SignatureError> {
        let refuse = |why| Err(SignatureError::InvalidPublicKey(why));
        let Some(point) = CompressedEdwardsY(*bytes).decompress() else {
            return refuse(KeyRejection::NotCanonicalPoint);
        };
        if point.compress().to_bytes() != *bytes {
            return refuse(KeyRejection::NotCanonicalPoint);
        }
        if point.is_small_order() {
            return refuse(KeyRejection::SmallOrder);
        }
        if !point.is_torsion_free() {
            return refuse(KeyRejection::NotPrimeOrder);
        }
        Ok(LibcruxVerifyingKey(*bytes))
    }

    fn verifying_key_to_bytes(key: &LibcruxVerifyingKey) -> [u8; PUBLIC_KEY_LEN] {
        key.0
    }
}

/// An X25519 scalar as libcrux takes it (clamped inside its X25519, as RFC 7748
/// says); no getter, wiped on drop.
pub struct LibcruxX25519Secret([u8; X25519_LEN]);

impl Drop for LibcruxX25519Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for LibcruxX25519Secret {}

impl KeyAgreementBackend for Libcrux {
    const NAME: &'static str = "libcrux";
    const FORMALLY_VERIFIED: bool = true;
    type SecretKey = LibcruxX25519Secret;

    fn secret_key_from_bytes(bytes: &SecretBytes<X25519_LEN>) -> LibcruxX25519Secret {
        let mut secret = LibcruxX25519Secret([0; X25519_LEN]);
        secret.0.copy_from_slice(bytes.expose_secret());
        secret
    }

    fn public_key(secret: &LibcruxX25519Secret) -> X25519PublicKey {
        let mut public = [0; X25519_LEN];
        libcrux_curve25519::secret_to_public(&mut public, &secret.0);
        X25519PublicKey(public)
    }

    /// libcrux refuses an all-zero result (a low-order peer key) itself.
    fn diffie_hellman(
        secret: &LibcruxX25519Secret,
        peer: &X25519PublicKey,
    ) -> Result<SecretBytes<X25519_LEN>, KeyAgreementError> {
        // Filled in place on the heap: no copy of the shared secret on the stack.
        let mut shared = SecretBytes::<X25519_LEN>::zeroed();
        match libcrux_curve25519::ecdh(shared.expose_secret_mut(), &peer.0, &secret.0) {
            Ok(()) => Ok(shared),
            Err(_) => Err(KeyAgreementError::LowOrderPeerKey),
        }
    }
}

/// The libcrux ChaCha20-Poly1305 backend, as a type: `Bundle<_, LibcruxChaCha20Poly1305>`.
#[derive(Debug)]
pub enum LibcruxChaCha20Poly1305 {}

impl AeadBackend for LibcruxChaCha20Poly1305 {
    const NAME: &'static str = "libcrux-chacha";
    const FORMALLY_VERIFIED: bool = true;
    const ALGORITHM: AeadAlgorithm = AeadAlgorithm::ChaCha20Poly1305;
    type Cipher = ChaChaCipher;
}

impl NoiseAead for LibcruxChaCha20Poly1305 {}

/// The key libcrux's ChaCha20-Poly1305 takes with every call (it keeps no state); no
/// getter, wiped on drop.
pub struct ChaChaCipher([u8; 32]);

impl Drop for ChaChaCipher {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for ChaChaCipher {}

impl AeadCore for ChaChaCipher {
    type NonceSize = U12;
    type TagSize = U16;
    const TAG_POSITION: aead::TagPosition = aead::TagPosition::Postfix;
}

impl KeySizeUser for ChaChaCipher {
    type KeySize = U32;
}

impl KeyInit for ChaChaCipher {
    fn new(key: &aead::Key<Self>) -> Self {
        let mut cipher = Self([0; 32]);
        cipher.0.copy_from_slice(key);
        cipher
    }
}

/// A copy of `bytes` for libcrux's input (it cannot read and write one buffer), or an
/// error when the heap cannot hold it: a peer chooses the length, and a failed
/// allocation must refuse the message, not abort the service.
fn copy_of(bytes: &[u8]) -> aead::Result<Vec<u8>> {
    let mut copy = Vec::new();
    copy.try_reserve_exact(bytes.len())
        .map_err(|_| aead::Error)?;
    copy.extend_from_slice(bytes);
    Ok(copy)
}

/// The nonce as the array libcrux takes.
fn nonce_array(nonce: &aead::Nonce<ChaChaCipher>) -> aead::Result<&[u8; 12]> {
    nonce.as_slice().try_into().map_err(|_| aead::Error)
}

impl AeadInOut for ChaChaCipher {
    fn encrypt_inout_detached(
        &self,
        nonce: &aead::Nonce<Self>,
        associated_data: &[u8],
        mut buffer: InOutBuf<'_, '_, u8>,
    ) -> aead::Result<aead::Tag<Self>> {
        let nonce = nonce_array(nonce)?;
        let mut input = copy_of(buffer.get_in())?;
        let mut tag = [0u8; 16];
        let result = libcrux_chacha20poly1305::encrypt_detached(
            &self.0,
            &input,
            buffer.get_out(),
            &mut tag,
            associated_data,
            nonce,
        )
        .map(|_| ());
        input.as_mut_slice().zeroize();
        result.map_err(|_| aead::Error)?;
        Ok(tag.into())
    }

    fn decrypt_inout_detached(
        &self,
        nonce: &aead::Nonce<Self>,
        associated_data: &[u8],
        mut buffer: InOutBuf<'_, '_, u8>,
        tag: &aead::Tag<Self>,
    ) -> aead::Result<()> {
        let nonce = nonce_array(nonce)?;
        let tag: &[u8; 16] = tag.as_slice().try_into().map_err(|_| aead::Error)?;
        let input = copy_of(buffer.get_in())?;
        libcrux_chacha20poly1305::decrypt_detached(
            &self.0,
            buffer.get_out(),
            &input,
            tag,
            associated_data,
            nonce,
        )
        .map(|_| ())
        .map_err(|_| aead::Error)
    }
}
