//! X25519 key agreement (RFC 7748) over interchangeable backends.
//!
//! [`X25519SecretKey::diffie_hellman`] refuses an all-zero shared secret, which is
//! what every low-order (small-subgroup) peer key produces: a peer that sends one is
//! trying to force a known secret. The check is constant-time and lives here, once,
//! rather than trusting each backend to make it.

use alloc::boxed::Box;
use core::fmt;
use zeroize::ZeroizeOnDrop;

use crate::secret::SecretBytes;

/// Length of an X25519 public key, secret key or shared secret.
pub const X25519_LEN: usize = 32;

/// Why a Diffie-Hellman computation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyAgreementError {
    /// The peer's key is of low order: the shared secret would be all zero.
    LowOrderPeerKey,
}

impl fmt::Display for KeyAgreementError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::LowOrderPeerKey => "X25519 peer key is of low order (all-zero shared secret)",
        })
    }
}

impl core::error::Error for KeyAgreementError {}

/// An X25519 public key: 32 bytes, the u-coordinate, exactly as on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct X25519PublicKey(pub [u8; X25519_LEN]);

impl X25519PublicKey {
    /// The 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; X25519_LEN] {
        &self.0
    }
}

impl fmt::Debug for X25519PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("X25519PublicKey(")?;
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        f.write_str(")")
    }
}

/// A Diffie-Hellman output: zeroized on drop, redacted in `Debug`, never all zero.
///
/// It is uniform only after hashing; feed it to a KDF, never use it as a key directly.
#[derive(Debug)]
pub struct SharedSecret(SecretBytes<X25519_LEN>);

impl SharedSecret {
    /// The secret bytes, for the KDF that consumes them.
    pub fn expose_secret(&self) -> &[u8; X25519_LEN] {
        self.0.expose_secret()
    }
}

impl ZeroizeOnDrop for SharedSecret {}

/// What an X25519 backend implements. Callers use [`X25519SecretKey`].
pub trait KeyAgreementBackend {
    /// A short name for reports and banners, such as `dalek` or `compact`.
    const NAME: &'static str;
    /// Whether the backend's cryptography is formally verified code (proofs of memory
    /// safety and functional correctness against a specification, as HACL*'s), for
    /// reports and the README's table. Checks an adapter adds on public encodings
    /// need not be; the backend's docs say which. `false` unless a backend says so.
    const FORMALLY_VERIFIED: bool = false;
    /// The backend's secret scalar; must zeroize on drop and expose no bytes.
    type SecretKey: ZeroizeOnDrop;

    /// Makes a secret key from 32 bytes of entropy (clamped as RFC 7748 says).
    fn secret_key_from_bytes(bytes: &SecretBytes<X25519_LEN>) -> Self::SecretKey;

    /// The public key `X25519(secret, 9)`.
    fn public_key(secret: &Self::SecretKey) -> X25519PublicKey;

    /// The raw function `X25519(secret, peer)`.
    ///
    /// Returns the all-zero output (or the error) for a low-order peer key; the wrapper
    /// refuses both the same way.
    ///
    /// # Errors
    /// [`KeyAgreementError::LowOrderPeerKey`] when the backend itself detects a
    /// low-order peer key.
    fn diffie_hellman(
        secret: &Self::SecretKey,
        peer: &X25519PublicKey,
    ) -> Result<SecretBytes<X25519_LEN>, KeyAgreementError>;
}

/// An X25519 secret key on backend `B`, with its public key alongside. The backend's
/// key is boxed: moving this value moves a pointer (see [`crate::secret`]).
pub struct X25519SecretKey<B: KeyAgreementBackend> {
    secret: Box<B::SecretKey>,
    public: X25519PublicKey,
}

impl<B: KeyAgreementBackend> X25519SecretKey<B> {
    /// Makes a key pair from 32 bytes of entropy.
    pub fn from_entropy(bytes: &SecretBytes<X25519_LEN>) -> Self {
        let secret = Box::new(B::secret_key_from_bytes(bytes));
        let public = B::public_key(&secret);
        Self { secret, public }
    }

    /// The public key.
    pub const fn public_key(&self) -> &X25519PublicKey {
        &self.public
    }

    /// Computes the shared secret with `peer`.
    ///
    /// # Errors
    /// [`KeyAgreementError::LowOrderPeerKey`] when the result would be all zero.
    pub fn diffie_hellman(
        &self,
        peer: &X25519PublicKey,
    ) -> Result<SharedSecret, KeyAgreementError> {
        let shared = B::diffie_hellman(&self.secret, peer)?;
        if shared.is_all_zero() {
            return Err(KeyAgreementError::LowOrderPeerKey);
        }
        Ok(SharedSecret(shared))
    }
}

/// The backend's key type zeroizes itself on drop; the public key is not secret.
impl<B: KeyAgreementBackend> ZeroizeOnDrop for X25519SecretKey<B> {}

impl<B: KeyAgreementBackend> fmt::Debug for X25519SecretKey<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X25519SecretKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}
