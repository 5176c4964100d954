//! The one crate through which every cryptographic operation goes.
//!
//! Services and the kernel image never name a crypto crate. They are generic over a
//! [`Provider`], one backend per axis chosen at build time:
//!
//! - a [`SignatureBackend`]: Ed25519 signatures ([`signing`]), implemented by
//!   `provider-dalek` or `provider-compact`;
//! - a [`KeyAgreementBackend`]: X25519 key agreement ([`key_agreement`]), implemented
//!   by the same two crates, chosen apart from signing;
//! - an [`AeadBackend`]: a 256-bit-key AEAD with a 96-bit nonce ([`cipher`]),
//!   implemented by `provider-chacha`, `provider-aes-gcm` and `provider-aes-gcm-siv`;
//!   a provider's AEAD must also be a [`NoiseAead`] (the first two).
//!
//! Backends implement small traits (the service-provider side). Callers use the
//! generic wrapper types of this crate ([`SigningKey`], [`X25519SecretKey`],
//! [`AeadCipher`]), which hold the rules every backend must obey in one place rather
//! than once per backend:
//!
//! - an all-zero Ed25519 seed is refused ([`SignatureError::ZeroSeed`]) on every
//!   backend: it is what a dead entropy source yields, and `ed25519-compact` would panic
//!   on it;
//! - an all-zero X25519 shared secret (a low-order peer key) is refused with
//!   [`KeyAgreementError::LowOrderPeerKey`], compared in constant time;
//! - a failed AEAD tag check returns [`AeadError::Authentication`] and wipes the
//!   buffer, so no plaintext is left behind whatever the backend does internally.
//!
//! Secrets live in types that zeroize on drop ([`SecretBytes`], [`SharedSecret`], the
//! backends' key types) and whose `Debug` prints no secret. No type here offers a
//! getter for a private key. They keep their bytes on the heap, so moving one never
//! leaves a copy behind (see [`secret`]).
//!
//! Protocols that need a hash (Noise) use a [`HashBackend`]: hash, HMAC and HKDF on
//! BLAKE2s or SHA-256, implemented by `provider-hash`.
//!
//! Pairing uses a [`PakeBackend`]: SPAKE2+ (RFC 9383) on P-256 ([`pake`]), implemented
//! by `provider-spake2plus`. It is not an axis of the matrix: one backend serves every
//! combination (docs/decisions/0015-pairing.md).
//!
//! Entropy comes in through the [`EntropySource`] trait ([`entropy`]), which fills a
//! buffer completely or fails with a typed error; [`EntropyRng`] adapts any source for
//! RustCrypto APIs that want a `rand_core` 0.10 crypto RNG.
//!
//! The crate is `no_std` (with `alloc`), has no `unsafe`, and depends only on trait crates
//! (`aead` 0.6, `signature` 3, `ed25519` 3, `rand_core` 0.10, `zeroize`, `subtle`).

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod cipher;
pub mod entropy;
pub mod hash;
pub mod key_agreement;
pub mod pake;
pub mod provider;
pub mod secret;
pub mod signing;

pub use cipher::{
    AeadAlgorithm, AeadBackend, AeadCipher, AeadError, AeadKey, NoiseAead, NoiseNonce, Nonce, Tag,
};
pub use entropy::{EntropyError, EntropyRng, EntropySource, MAX_ENTROPY_REQUEST};
pub use hash::{HASH_LEN, HashAlgorithm, HashBackend};
pub use key_agreement::{
    KeyAgreementBackend, KeyAgreementError, SharedSecret, X25519PublicKey, X25519SecretKey,
};
pub use pake::{PakeBackend, PakeContext, PakeError};
pub use provider::{Bundle, CurveBackend, Provider, ProviderName, Suite};
pub use secret::{SecretBytes, Seed};
pub use signing::{
    KeyRejection, Signature, SignatureBackend, SignatureError, SigningKey, VerifyingKey,
};

/// The trait crates this API is written against, re-exported so that callers and
/// backends agree on one version of each.
pub mod reexports {
    pub use aead;
    pub use ed25519;
    pub use rand_core;
    pub use signature;
    pub use zeroize;
}
