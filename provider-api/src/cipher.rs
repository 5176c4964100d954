//! AEAD with a 256-bit key and a 96-bit nonce, over interchangeable backends.
//!
//! [`AeadCipher`] seals and opens in place with associated data. It implements the
//! `aead` 0.6 traits itself (`AeadCore`, `AeadInOut`, `KeyInit`), so RustCrypto code
//! written against those traits can use it, and every path through it obeys one rule:
//! a failed tag check returns an error *and wipes the buffer*, so a caller that
//! ignores the error still finds no unauthenticated plaintext. (Both backends here
//! check the tag before decrypting; the wipe makes the guarantee independent of that.)

use alloc::boxed::Box;
use core::fmt;

use aead::consts::{U12, U16, U32};
use aead::inout::InOutBuf;
use aead::{AeadCore, AeadInOut, KeyInit, KeySizeUser};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::secret::SecretBytes;

/// Length of an AEAD key.
pub const KEY_LEN: usize = 32;
/// Length of an AEAD nonce.
pub const NONCE_LEN: usize = 12;
/// Length of an AEAD tag.
pub const TAG_LEN: usize = 16;

/// A 256-bit AEAD key: zeroized on drop, redacted in `Debug`.
pub type AeadKey = SecretBytes<KEY_LEN>;
/// A 96-bit nonce. Never reuse one under the same key.
pub type Nonce = [u8; NONCE_LEN];
/// A 128-bit authentication tag.
pub type Tag = [u8; TAG_LEN];

/// The AEAD algorithms a backend can provide, for protocols that must name or
/// encode them (Noise spells the names and the nonce byte order differently).
///
/// Not `#[non_exhaustive]`, on purpose: every `match` on it in the workspace names
/// every variant, so a new algorithm fails to compile until each place that must know
/// it (its Noise name or none, the kit's vectors, the sealed format's id) does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AeadAlgorithm {
    /// ChaCha20-Poly1305 as in RFC 8439.
    ChaCha20Poly1305,
    /// AES-256 in Galois/Counter Mode (NIST SP 800-38D), 96-bit nonce.
    Aes256Gcm,
    /// AES-256-GCM-SIV (RFC 8452): nonce-misuse resistant; Noise has no name for it.
    Aes256GcmSiv,
}

impl AeadAlgorithm {
    /// A stable number for formats that record which AEAD sealed something
    /// (1 ChaCha20-Poly1305, 2 AES-256-GCM, 3 AES-256-GCM-SIV). Adding a variant means
    /// giving it one here (the compiler asks: these matches have no wildcard).
    pub const fn id(self) -> u8 {
        match self {
            Self::ChaCha20Poly1305 => 1,
            Self::Aes256Gcm => 2,
            Self::Aes256GcmSiv => 3,
        }
    }

    /// The algorithm with id `id`.
    pub const fn from_id(id: u8) -> Option<Self> {
        match id {
            1 => Some(Self::ChaCha20Poly1305),
            2 => Some(Self::Aes256Gcm),
            3 => Some(Self::Aes256GcmSiv),
            _ => None,
        }
    }

    /// The algorithm's standard name, one word: `ChaCha20-Poly1305`, `AES-256-GCM`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::ChaCha20Poly1305 => "ChaCha20-Poly1305",
            Self::Aes256Gcm => "AES-256-GCM",
            Self::Aes256GcmSiv => "AES-256-GCM-SIV",
        }
    }

    /// The name the Noise specification gives the algorithm and how Noise encodes its
    /// nonce (section 12), or `None` when Noise does not name it. [`NoiseAead`]'s
    /// constants default to these, so a backend does not write them.
    pub const fn noise(self) -> Option<(&'static str, NoiseNonce)> {
        match self {
            Self::ChaCha20Poly1305 => Some(("ChaChaPoly", NoiseNonce::LittleEndian)),
            Self::Aes256Gcm => Some(("AESGCM", NoiseNonce::BigEndian)),
            Self::Aes256GcmSiv => None,
        }
    }
}

/// How Noise encodes the 64-bit nonce counter into the cipher's 96-bit nonce, after
/// 32 zero bits (Noise specification, section 12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoiseNonce {
    /// `ChaChaPoly`: little-endian.
    LittleEndian,
    /// `AESGCM`: big-endian.
    BigEndian,
}

/// An AEAD the Noise specification names, with its name and nonce encoding. Only
/// these can be a [`crate::Provider`]'s AEAD, since every image runs Noise sessions: a
/// combination with another AEAD is refused when it is compiled, with this trait's
/// message, instead of failing at run time. An AEAD without a Noise name is still a
/// backend (the conformance kit tests it; code that names it can seal with it).
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no Noise cipher name, so it cannot be an image's AEAD",
    label = "Noise XK sessions need a Noise-named AEAD (ChaChaPoly or AESGCM)",
    note = "choose `aead-chacha` or `aead-aes-gcm`; use this AEAD by naming it where Noise is not involved (docs/adding-a-backend.md)"
)]
///
/// A backend implements it with an empty body (`impl NoiseAead for MyAead {}`): the
/// name and nonce encoding are [`AeadAlgorithm::noise`]'s for its `ALGORITHM`, and
/// implementing it for an algorithm Noise does not name fails to compile when the
/// constants are used.
pub trait NoiseAead: AeadBackend {
    /// The name in Noise protocol names: `ChaChaPoly`, `AESGCM`. Not to be overridden.
    const NOISE_NAME: &'static str = match Self::ALGORITHM.noise() {
        Some((name, _)) => name,
        None => panic!("this AEAD has no Noise cipher name: it cannot be a NoiseAead"),
    };
    /// How the nonce counter is encoded. Not to be overridden.
    const NOISE_NONCE: NoiseNonce = match Self::ALGORITHM.noise() {
        Some((_, nonce)) => nonce,
        None => panic!("this AEAD has no Noise cipher name: it cannot be a NoiseAead"),
    };
}

/// Why a seal or open failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AeadError {
    /// The tag did not authenticate the ciphertext, nonce and associated data. The
    /// buffer has been wiped.
    Authentication,
    /// The message, the associated data or the buffer's capacity is out of bounds.
    Length,
}

impl fmt::Display for AeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Authentication => "AEAD authentication failed",
            Self::Length => "AEAD message, associated data or buffer length out of bounds",
        })
    }
}

impl core::error::Error for AeadError {}

/// What an AEAD backend implements. Callers use [`AeadCipher`].
///
/// `Cipher` must wipe its key schedule on drop (`ZeroizeOnDrop`). A crate whose cipher
/// does not promise that gets a newtype in the backend crate that does (see
/// `provider-aes-gcm-siv`).
pub trait AeadBackend: 'static {
    /// A short name for reports and banners, such as `chacha` or `aes-gcm`.
    const NAME: &'static str;
    /// Whether the backend's cryptography is formally verified code (proofs of memory
    /// safety and functional correctness against a specification, as HACL*'s), for
    /// reports and the README's table. Checks an adapter adds on public encodings
    /// need not be; the backend's docs say which. `false` unless a backend says so.
    const FORMALLY_VERIFIED: bool = false;
    /// Which algorithm this is.
    const ALGORITHM: AeadAlgorithm;
    /// The backend's keyed cipher, which must wipe its key schedule on drop.
    type Cipher: AeadInOut
        + AeadCore<NonceSize = U12, TagSize = U16>
        + KeyInit
        + KeySizeUser<KeySize = U32>
        + ZeroizeOnDrop;
}

/// A keyed AEAD cipher on backend `B`. The key schedule is boxed: moving this value
/// moves a pointer (see [`crate::secret`]).
pub struct AeadCipher<B: AeadBackend> {
    cipher: Box<B::Cipher>,
}

impl<B: AeadBackend> AeadCipher<B> {
    /// Keys the cipher. The key schedule is wiped when the cipher is dropped.
    pub fn new(key: &AeadKey) -> Self {
        Self {
            cipher: Box::new(B::Cipher::new(key.expose_secret().into())),
        }
    }

    /// Encrypts `buffer` in place and returns the tag.
    ///
    /// # Errors
    /// [`AeadError::Length`] when the message or associated data is longer than the
    /// algorithm allows.
    pub fn seal_in_place_detached(
        &self,
        nonce: &Nonce,
        associated_data: &[u8],
        buffer: &mut [u8],
    ) -> Result<Tag, AeadError> {
        self.cipher
            .encrypt_inout_detached(nonce.into(), associated_data, buffer.into())
            .map(Into::into)
            .map_err(|_| AeadError::Length)
    }

    /// Checks `tag` and decrypts `buffer` in place.
    ///
    /// # Errors
    /// [`AeadError::Authentication`] when the tag does not authenticate; `buffer` is
    /// then all zero bytes.
    pub fn open_in_place_detached(
        &self,
        nonce: &Nonce,
        associated_data: &[u8],
        buffer: &mut [u8],
        tag: &Tag,
    ) -> Result<(), AeadError> {
        AeadInOut::decrypt_inout_detached(
            self,
            nonce.into(),
            associated_data,
            buffer.into(),
            tag.into(),
        )
        .map_err(|_| AeadError::Authentication)
    }

    /// Encrypts the message in `buffer` in place and appends the tag.
    ///
    /// # Errors
    /// [`AeadError::Length`] when the buffer cannot grow by the tag length, or the
    /// message is longer than the algorithm allows.
    pub fn seal_in_place(
        &self,
        nonce: &Nonce,
        associated_data: &[u8],
        buffer: &mut dyn aead::Buffer,
    ) -> Result<(), AeadError> {
        AeadInOut::encrypt_in_place(self, nonce.into(), associated_data, buffer)
            .map_err(|_| AeadError::Length)
    }

    /// Checks the tag at the end of `buffer`, decrypts in place and removes the tag.
    ///
    /// # Errors
    /// [`AeadError::Authentication`] when the buffer is shorter than a tag or the tag
    /// does not authenticate; the message part of `buffer` is then all zero bytes.
    pub fn open_in_place(
        &self,
        nonce: &Nonce,
        associated_data: &[u8],
        buffer: &mut dyn aead::Buffer,
    ) -> Result<(), AeadError> {
        AeadInOut::decrypt_in_place(self, nonce.into(), associated_data, buffer)
            .map_err(|_| AeadError::Authentication)
    }
}

impl<B: AeadBackend> AeadCore for AeadCipher<B> {
    type NonceSize = U12;
    type TagSize = U16;
    const TAG_POSITION: aead::TagPosition = <B::Cipher as AeadCore>::TAG_POSITION;
}

impl<B: AeadBackend> KeySizeUser for AeadCipher<B> {
    type KeySize = U32;
}

impl<B: AeadBackend> KeyInit for AeadCipher<B> {
    fn new(key: &aead::Key<Self>) -> Self {
        Self {
            cipher: Box::new(B::Cipher::new(key)),
        }
    }
}

impl<B: AeadBackend> AeadInOut for AeadCipher<B> {
    fn encrypt_inout_detached(
        &self,
        nonce: &aead::Nonce<Self>,
        associated_data: &[u8],
        buffer: InOutBuf<'_, '_, u8>,
    ) -> aead::Result<aead::Tag<Self>> {
        self.cipher
            .encrypt_inout_detached(nonce, associated_data, buffer)
    }

    /// Decrypts, or on failure wipes the output buffer and returns the error.
    fn decrypt_inout_detached(
        &self,
        nonce: &aead::Nonce<Self>,
        associated_data: &[u8],
        mut buffer: InOutBuf<'_, '_, u8>,
        tag: &aead::Tag<Self>,
    ) -> aead::Result<()> {
        let result =
            self.cipher
                .decrypt_inout_detached(nonce, associated_data, buffer.reborrow(), tag);
        if result.is_err() {
            buffer.get_out().zeroize();
        }
        result
    }
}

/// The backend's cipher wipes its key schedule on drop.
impl<B: AeadBackend> ZeroizeOnDrop for AeadCipher<B> {}

impl<B: AeadBackend> fmt::Debug for AeadCipher<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AeadCipher<{}>(REDACTED)", B::NAME)
    }
}
