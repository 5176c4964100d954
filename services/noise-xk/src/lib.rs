//! The Noise XK handshake and transport (Noise specification revision 34), over
//! provider-api.
//!
//! ```text
//! XK:
//!   <- s
//!   ...
//!   -> e, es
//!   <- e, ee
//!   -> s, se
//! ```
//!
//! The initiator knows the responder's static key beforehand; the initiator's static
//! key travels encrypted in the third message. Protocol names follow the backends:
//! `Noise_XK_25519_ChaChaPoly_BLAKE2s`, `Noise_XK_25519_AESGCM_BLAKE2s`, and the
//! `SHA256` variants. ChaChaPoly encodes the nonce little-endian, AESGCM big-endian.
//!
//! **Why written here.** The maintained no_std crates were evaluated first
//! (`docs/decisions/0004-noise.md`): `noise-protocol` panics when a nonce is
//! exhausted, reports failures as `()`, and draws ephemeral keys from a global
//! `genkey()`; `clatter` needs a `Default + Clone` rand_core 0.6 RNG and is built on the
//! previous RustCrypto generation. Here every primitive comes from provider-api (the
//! HKDF and HMAC are the `hkdf` and `hmac` crates behind it); this crate is only the
//! state machine.
//!
//! **Shape.** Each handshake step consumes the previous state and returns the next,
//! so steps cannot run out of order, and any failure drops the state (its keys
//! zeroize). Ephemeral keys are made from caller-supplied entropy (in the OS, from
//! rngd for every session): nothing here has a source of randomness of its own.
//! Transport nonces refuse to wrap ([`NoiseError::NonceExhausted`]); a message that
//! fails to decrypt leaves the transport's state unchanged, so a replayed or forged
//! message is refused and the session goes on.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod cipher_state;
mod handshake;
mod symmetric;

use alloc::string::String;
use core::fmt;

use provider_api::{HashBackend, NoiseAead};

pub use cipher_state::Transport;
pub use handshake::{
    Initiator, InitiatorAwaitingResponse, InitiatorReadyToFinish, Responder,
    ResponderAwaitingFinish, ResponderReadyToRespond, Step,
};

/// The largest Noise message, as the specification bounds it.
pub const MAX_MESSAGE_LEN: usize = 65535;
/// Length of a public key on the wire.
pub const DH_LEN: usize = 32;
/// Length of an AEAD tag.
pub const TAG_LEN: usize = 16;
/// The smallest first message (`e` and an empty encrypted payload).
pub const MESSAGE_1_MIN: usize = DH_LEN + TAG_LEN;
/// The smallest second message.
pub const MESSAGE_2_MIN: usize = DH_LEN + TAG_LEN;
/// The smallest third message (encrypted `s` and an empty encrypted payload).
pub const MESSAGE_3_MIN: usize = DH_LEN + 2 * TAG_LEN;

/// Why a handshake or transport step failed. Handshake failures abort the
/// handshake; a transport failure leaves the session as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoiseError {
    /// The message is shorter than its fixed parts.
    TooShort {
        /// The least this message can be.
        need: usize,
        /// What arrived.
        got: usize,
    },
    /// The message (or the one that would be written) exceeds 65,535 bytes.
    TooLong {
        /// Its length.
        len: usize,
    },
    /// A tag did not authenticate: tampering, a wrong key, or a replay.
    Authentication,
    /// A peer key of low order (the Diffie-Hellman result would be all zero).
    LowOrderKey,
    /// The nonce counter reached 2^64 - 1: the session must end, never wrap.
    NonceExhausted,
}

impl fmt::Display for NoiseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { need, got } => {
                write!(f, "Noise message of {got} bytes, need at least {need}")
            }
            Self::TooLong { len } => {
                write!(f, "Noise message of {len} bytes exceeds {MAX_MESSAGE_LEN}")
            }
            Self::Authentication => f.write_str("Noise message failed authentication"),
            Self::LowOrderKey => f.write_str("Noise peer key of low order"),
            Self::NonceExhausted => f.write_str("Noise nonce counter exhausted"),
        }
    }
}

impl core::error::Error for NoiseError {}

/// The Noise name of an AEAD: `ChaChaPoly` or `AESGCM`. An AEAD without one is not a
/// [`NoiseAead`], and code that would use it here does not compile.
pub const fn cipher_name<A: NoiseAead>() -> &'static str {
    A::NOISE_NAME
}

/// The protocol name, such as `Noise_XK_25519_ChaChaPoly_BLAKE2s`.
pub fn protocol_name<A: NoiseAead, H: HashBackend>() -> String {
    let mut name = String::from("Noise_XK_25519_");
    name.push_str(cipher_name::<A>());
    name.push('_');
    name.push_str(H::NAME);
    name
}
