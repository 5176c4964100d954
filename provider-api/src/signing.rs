//! Ed25519 signatures (RFC 8032) over interchangeable backends, under one
//! verification rule.
//!
//! Signatures are the `ed25519` 3 crate's [`Signature`] type, and the key types
//! implement the `signature` 3 traits (`Signer`, `Verifier`, `Keypair`), so they plug
//! into any code written against those crates and interoperate across backends: a key
//! pair's public half round-trips through 32 bytes into any other backend.
//!
//! [`SigningKey`] has no getter for the private scalar or the seed, zeroizes on drop
//! (through the backend's own key type) and prints only its public half.
//!
//! # The verification rule
//!
//! RFC 8032 leaves verifiers room (cofactored or not, which encodings to accept), and
//! implementations differ on the edge cases ("Taming the many EdDSAs", Chalkias et al.,
//! 2020). A device's trust decisions must not depend on the backend it was built
//! with, and a device key is something an allowlist holds, so the rule is strict and
//! mostly enforced where bytes become a key:
//!
//! 1. **The public key `A`** ([`VerifyingKey::from_bytes`]) must be the canonical
//!    encoding of a curve point ([`KeyRejection::NotCanonicalPoint`]), not of small
//!    order ([`KeyRejection::SmallOrder`]: such a key "verifies" signatures nobody
//!    made), and of prime order `L` ([`KeyRejection::NotPrimeOrder`]: no small-order
//!    component). Every honest key `a·B` is all three.
//! 2. **`S`** must be canonical: `S < L`.
//! 3. **`R`** must be the canonical encoding of a point that is not of small order.
//! 4. The equation `[S]B = R + [k]A`, `k = SHA-512(R || A || M) mod L`, must hold.
//!
//! On the 12 cases of the paper (`providers/conformance/vectors`), every backend gives
//! the same verdict: all 12 refused, ten at key decoding (their keys are small-order,
//! mixed-order or non-canonical, including those of the cases about R) and 6 and 7
//! (S >= L) at verification. Rules 2 to 4 are exercised with a prime-order key by
//! signatures the kit crafts as a key holder would. The kit asserts every verdict for
//! every backend.
//!
//! How the backends meet it: `provider-dalek` decodes with
//! `ed25519_dalek::VerifyingKey::from_bytes`, refuses `is_weak` keys, compares the
//! re-encoding with the input and checks `EdwardsPoint::is_torsion_free`; it verifies
//! with `verify_strict` (cofactorless, R not small order, canonical R and S).
//! `provider-compact` decodes with `ed25519_compact::PublicKey::validate` (canonical,
//! not small order) plus curve25519-dalek's `is_torsion_free`, which ed25519-compact
//! cannot express; its `verify` (canonical S, R not small order) checks the equation
//! cofactored (`[8](R' - R) = 0`). `provider-libcrux` decodes with curve25519-dalek
//! (as dalek does: decompress, re-encoding, small order, `is_torsion_free`; libcrux
//! has no key decoding), refuses a non-canonical or small-order R itself (HACL*'s
//! `verify` accepts a small-order R), and lets libcrux's `verify` check `S < L` and
//! the equation, cofactorless.
//!
//! **The one remaining difference.** With a prime-order `A` the two equations differ
//! only on a signature whose nonce point carries a small-order component,
//! `R = [r]B + T` with `S = r + k·a`. The cofactored check (compact) accepts it, the
//! cofactorless ones (dalek, libcrux) refuse it. Making one takes the private scalar `a` (adding
//! `T` to a genuine signature's `R` changes `k` and breaks both equations), so it is
//! always the key holder's own signature over that message: accepting it admits
//! nothing the key holder did not sign, and refusing it only refuses a key holder who
//! chose to sign oddly. Every key an allowlist holds is of prime order (rule 1), so no
//! trust decision of this system can turn on it. The kit crafts such signatures and
//! checks each backend's declared [`SignatureBackend::COFACTORED_VERIFICATION`].

use alloc::boxed::Box;
use core::fmt;
use zeroize::ZeroizeOnDrop;

use crate::secret::Seed;

/// An Ed25519 signature, as defined by the `ed25519` 3 crate.
pub use ed25519::Signature;

/// Length of an encoded Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an encoded Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// Why 32 bytes are not accepted as an Ed25519 public key (see the module's rule).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum KeyRejection {
    /// Not the canonical encoding of a point on the curve.
    NotCanonicalPoint = 1,
    /// A point of small order (one of the eight torsion points).
    SmallOrder = 2,
    /// A point with a small-order component: not in the prime-order subgroup.
    NotPrimeOrder = 3,
}

impl KeyRejection {
    /// A number for audit records and wire errors.
    pub const fn code(self) -> u16 {
        self as u16
    }
}

impl fmt::Display for KeyRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotCanonicalPoint => "not the canonical encoding of a curve point",
            Self::SmallOrder => "a point of small order",
            Self::NotPrimeOrder => "a point with a small-order component (not of prime order)",
        })
    }
}

/// Why a signing key could not be made or a signature not verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureError {
    /// The seed was all zero bytes, which no healthy entropy source produces.
    ZeroSeed,
    /// The 32 bytes are not an acceptable Ed25519 public key, and why.
    InvalidPublicKey(KeyRejection),
    /// The signature does not verify for this key and message.
    VerificationFailed,
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroSeed => f.write_str("refusing an all-zero Ed25519 seed"),
            Self::InvalidPublicKey(why) => {
                write!(f, "not an acceptable Ed25519 public key: {why}")
            }
            Self::VerificationFailed => f.write_str("Ed25519 signature verification failed"),
        }
    }
}

impl core::error::Error for SignatureError {}

/// What an Ed25519 backend implements. Callers use [`SigningKey`] and [`VerifyingKey`].
///
/// The associated types are the backend's own key types, wrapped so that they expose
/// no secret: `SigningKey` must zeroize on drop and must not offer the seed or scalar.
///
/// A backend obeys the module's verification rule: `verifying_key_from_bytes` refuses
/// every key rule 1 refuses, with the reason, and the `Verifier` of `VerifyingKey`
/// refuses every signature rules 2 to 4 refuse. The conformance kit checks both.
pub trait SignatureBackend {
    /// A short name for reports and banners, such as `dalek` or `compact`.
    const NAME: &'static str;
    /// Whether the backend's cryptography is formally verified code (proofs of memory
    /// safety and functional correctness against a specification, as HACL*'s), for
    /// reports and the README's table. Checks an adapter adds on public encodings
    /// need not be; the backend's docs say which. `false` unless a backend says so.
    const FORMALLY_VERIFIED: bool = false;
    /// Whether the backend checks the equation cofactored (`[8](R' - R) = 0`) rather
    /// than cofactorless. The only verdict this changes under the rule is on a
    /// signature whose `R` carries a small-order component (see the module's rule);
    /// the conformance kit checks that the declaration is true.
    const COFACTORED_VERIFICATION: bool;
    /// The backend's private key, expanded from a seed.
    type SigningKey: ZeroizeOnDrop + signature::Signer<Signature>;
    /// The backend's public key, decoded and ready to verify.
    type VerifyingKey: signature::Verifier<Signature> + Clone + PartialEq + fmt::Debug;

    /// Derives the key pair from a 32-byte seed as RFC 8032 section 5.1.5 specifies.
    /// The seed is never all zero (the wrapper refuses that first).
    fn signing_key_from_seed(seed: &Seed) -> Self::SigningKey;

    /// The public half of a signing key.
    fn verifying_key(key: &Self::SigningKey) -> Self::VerifyingKey;

    /// Decodes a 32-byte public key, under rule 1 of the module's verification rule.
    ///
    /// # Errors
    /// [`SignatureError::InvalidPublicKey`] with the [`KeyRejection`].
    fn verifying_key_from_bytes(
        bytes: &[u8; PUBLIC_KEY_LEN],
    ) -> Result<Self::VerifyingKey, SignatureError>;

    /// Encodes a public key as 32 bytes.
    fn verifying_key_to_bytes(key: &Self::VerifyingKey) -> [u8; PUBLIC_KEY_LEN];
}

/// An Ed25519 signing key on backend `B`, with its public half alongside. The
/// backend's key is boxed: moving this value moves a pointer (see [`crate::secret`]).
pub struct SigningKey<B: SignatureBackend> {
    secret: Box<B::SigningKey>,
    public: VerifyingKey<B>,
}

impl<B: SignatureBackend> SigningKey<B> {
    /// Derives the key pair from a 32-byte seed (RFC 8032 section 5.1.5).
    ///
    /// # Errors
    /// [`SignatureError::ZeroSeed`] for the all-zero seed, on every backend.
    pub fn from_seed(seed: &Seed) -> Result<Self, SignatureError> {
        if seed.is_all_zero() {
            return Err(SignatureError::ZeroSeed);
        }
        let secret = Box::new(B::signing_key_from_seed(seed));
        let public = VerifyingKey {
            key: B::verifying_key(&secret),
        };
        Ok(Self { secret, public })
    }

    /// The public half.
    pub fn verifying_key(&self) -> &VerifyingKey<B> {
        &self.public
    }

    /// Signs `message` (deterministic, RFC 8032).
    pub fn sign(&self, message: &[u8]) -> Signature {
        signature::Signer::sign(&*self.secret, message)
    }
}

impl<B: SignatureBackend> signature::Signer<Signature> for SigningKey<B> {
    fn try_sign(&self, message: &[u8]) -> Result<Signature, signature::Error> {
        self.secret.try_sign(message)
    }
}

impl<B: SignatureBackend> signature::Keypair for SigningKey<B> {
    type VerifyingKey = VerifyingKey<B>;

    fn verifying_key(&self) -> VerifyingKey<B> {
        self.public.clone()
    }
}

/// The backend's key type zeroizes itself on drop; the public half is not secret.
impl<B: SignatureBackend> ZeroizeOnDrop for SigningKey<B> {}

impl<B: SignatureBackend> fmt::Debug for SigningKey<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// An Ed25519 public key on backend `B`.
pub struct VerifyingKey<B: SignatureBackend> {
    key: B::VerifyingKey,
}

impl<B: SignatureBackend> VerifyingKey<B> {
    /// Decodes a 32-byte public key: the canonical encoding of a point of prime order
    /// (rule 1 of the module's verification rule), on every backend.
    ///
    /// # Errors
    /// [`SignatureError::InvalidPublicKey`] with the [`KeyRejection`].
    pub fn from_bytes(bytes: &[u8; PUBLIC_KEY_LEN]) -> Result<Self, SignatureError> {
        B::verifying_key_from_bytes(bytes).map(|key| Self { key })
    }

    /// The 32-byte encoding, the same on every backend.
    pub fn to_bytes(&self) -> [u8; PUBLIC_KEY_LEN] {
        B::verifying_key_to_bytes(&self.key)
    }

    /// Verifies `signature` over `message` under the module's verification rule.
    ///
    /// # Errors
    /// [`SignatureError::VerificationFailed`] when it does not verify.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), SignatureError> {
        signature::Verifier::verify(&self.key, message, signature)
            .map_err(|_| SignatureError::VerificationFailed)
    }
}

impl<B: SignatureBackend> signature::Verifier<Signature> for VerifyingKey<B> {
    fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), signature::Error> {
        self.key.verify(message, signature)
    }
}

impl<B: SignatureBackend> Clone for VerifyingKey<B> {
    fn clone(&self) -> Self {
        Self {
            key: self.key.clone(),
        }
    }
}

impl<B: SignatureBackend> PartialEq for VerifyingKey<B> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl<B: SignatureBackend> Eq for VerifyingKey<B> {}

impl<B: SignatureBackend> fmt::Debug for VerifyingKey<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VerifyingKey(")?;
        for byte in self.to_bytes() {
            write!(f, "{byte:02x}")?;
        }
        f.write_str(")")
    }
}
