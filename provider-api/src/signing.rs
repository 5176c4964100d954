//! Ed25519 signatures (RFC 8032) over interchangeable backends.
//!
//! Signatures are the `ed25519` 3 crate's [`Signature`] type, and the key types
//! implement the `signature` 3 traits (`Signer`, `Verifier`, `Keypair`), so they plug
//! into any code written against those crates and interoperate across backends: a key
//! pair's public half round-trips through 32 bytes into any other backend.
//!
//! [`SigningKey`] has no getter for the private scalar or the seed, zeroizes on drop
//! (through the backend's own key type) and prints only its public half.

use core::fmt;
use zeroize::ZeroizeOnDrop;

use crate::secret::Seed;

/// An Ed25519 signature, as defined by the `ed25519` 3 crate.
pub use ed25519::Signature;

/// Length of an encoded Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an encoded Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// Why a signing key could not be made or a signature not verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureError {
    /// The seed was all zero bytes, which no healthy entropy source produces.
    ZeroSeed,
    /// The 32 bytes do not encode a usable Ed25519 public key.
    InvalidPublicKey,
    /// The signature does not verify for this key and message.
    VerificationFailed,
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ZeroSeed => "refusing an all-zero Ed25519 seed",
            Self::InvalidPublicKey => "bytes do not encode an Ed25519 public key",
            Self::VerificationFailed => "Ed25519 signature verification failed",
        })
    }
}

impl core::error::Error for SignatureError {}

/// What an Ed25519 backend implements. Callers use [`SigningKey`] and [`VerifyingKey`].
///
/// The associated types are the backend's own key types, wrapped so that they expose
/// no secret: `SigningKey` must zeroize on drop and must not offer the seed or scalar.
pub trait SignatureBackend {
    /// The backend's private key, expanded from a seed.
    type SigningKey: ZeroizeOnDrop + signature::Signer<Signature>;
    /// The backend's public key, decoded and ready to verify.
    type VerifyingKey: signature::Verifier<Signature> + Clone + PartialEq + fmt::Debug;

    /// Derives the key pair from a 32-byte seed as RFC 8032 section 5.1.5 specifies.
    /// The seed is never all zero (the wrapper refuses that first).
    fn signing_key_from_seed(seed: &Seed) -> Self::SigningKey;

    /// The public half of a signing key.
    fn verifying_key(key: &Self::SigningKey) -> Self::VerifyingKey;

    /// Decodes a 32-byte public key.
    ///
    /// # Errors
    /// [`SignatureError::InvalidPublicKey`] when the bytes are not a curve point.
    fn verifying_key_from_bytes(
        bytes: &[u8; PUBLIC_KEY_LEN],
    ) -> Result<Self::VerifyingKey, SignatureError>;

    /// Encodes a public key as 32 bytes.
    fn verifying_key_to_bytes(key: &Self::VerifyingKey) -> [u8; PUBLIC_KEY_LEN];
}

/// An Ed25519 signing key on backend `B`, with its public half alongside.
pub struct SigningKey<B: SignatureBackend> {
    secret: B::SigningKey,
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
        let secret = B::signing_key_from_seed(seed);
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
        signature::Signer::sign(&self.secret, message)
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
    /// Decodes a 32-byte public key.
    ///
    /// # Errors
    /// [`SignatureError::InvalidPublicKey`] when the bytes are not a curve point.
    pub fn from_bytes(bytes: &[u8; PUBLIC_KEY_LEN]) -> Result<Self, SignatureError> {
        B::verifying_key_from_bytes(bytes).map(|key| Self { key })
    }

    /// The 32-byte encoding, the same on every backend.
    pub fn to_bytes(&self) -> [u8; PUBLIC_KEY_LEN] {
        B::verifying_key_to_bytes(&self.key)
    }

    /// Verifies `signature` over `message`.
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
