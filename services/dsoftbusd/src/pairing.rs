//! Pairing (`docs/protocol.md`, section 11): how a peer that knows a device's setup code
//! comes to be trusted by it, and learns its device key, with no factory step.
//!
//! On the wire (each a frame, section 2):
//!
//! ```text
//! -> pair hello   "DSP1" || suite_len || suite
//! <- pair reply   "DSP1" || status || suite_len || suite || [iterations: u32be || salt: 16]
//! -> pake 1       shareP (65)
//! <- pake 2       shareV (65) || confirmV (32)
//! -> pake 3       confirmP (32) || seal(k_prover, th, device key || signature)   (144)
//! <- pake 4       seal(k_verifier, th, device key || signature)                 (112)
//! ```
//!
//! The PAKE is SPAKE2+ (RFC 9383, P-256, SHA-256): the device is the verifier and runs
//! it in keystored, which holds the verifier record and counts failed attempts; this
//! module has the framing and the key schedule around it, the same for both sides, so
//! that the host tests and the protocol document's example exchange run it whole. The
//! suite's hash `H` and AEAD are the image's (the same as its Noise suite's).

use alloc::string::String;
use alloc::vec::Vec;

use provider_api::{
    AeadBackend, AeadCipher, AeadKey, HashBackend, SecretBytes, Signature, SignatureBackend,
    VerifyingKey,
};
use service_api::keystored::{PAIRING_CONFIRM_PREFIX, PAIRING_ROLE_PROVER, PAIRING_ROLE_VERIFIER};

use crate::wire::{WireError, read_suite, suite_field};

/// The first four bytes of both pairing hello frames.
pub const MAGIC: &[u8; 4] = b"DSP1";
/// A SPAKE2+ share.
pub const SHARE_LEN: usize = 65;
/// A SPAKE2+ confirmation.
pub const CONFIRM_LEN: usize = 32;
/// A device key and its signature.
pub const IDENTITY_LEN: usize = 96;
/// A sealed identity: the identity and the AEAD tag.
pub const SEALED_IDENTITY_LEN: usize = IDENTITY_LEN + 16;
/// `pake 2`.
pub const PAKE_2_LEN: usize = SHARE_LEN + CONFIRM_LEN;
/// `pake 3`.
pub const PAKE_3_LEN: usize = CONFIRM_LEN + SEALED_IDENTITY_LEN;
/// The salt in a pair reply.
pub const SALT_LEN: usize = 16;
/// The start of the PAKE's context string; the suite follows.
pub const CONTEXT_PREFIX: &[u8] = b"dsoftbus/v1 pairing\0";
/// HKDF's `info` for the two identity keys.
pub const KEYS_INFO: &[u8] = b"dsoftbus/v1 pairing keys";
/// How long a pairing window stays open: 15 minutes (Matter's longest).
pub const WINDOW_MS: u64 = 15 * 60 * 1000;
/// How long a pairing connection may take from its arrival to `pake 3`: longer than a
/// session's handshake (3 s), for the prover's password hash and the device's writes.
pub const DEADLINE_MS: u64 = 10_000;

/// The pair reply's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PairStatus {
    /// Pairing may begin: the password hash's parameters follow.
    Ok = 0,
    /// The suites differ.
    SuiteMismatch = 1,
    /// Another pairing is in progress: try again later.
    Busy = 2,
    /// Not this protocol or version.
    Unsupported = 3,
    /// This device cannot pair: it has no setup code (or no entropy). Do not retry.
    Unavailable = 4,
    /// The pairing window is closed (it timed out, a pairing completed, or too many
    /// attempts failed); a trusted peer can reopen it.
    Closed = 5,
}

impl PairStatus {
    /// The status with wire code `code`.
    pub fn from_code(code: u8) -> Option<Self> {
        [
            Self::Ok,
            Self::SuiteMismatch,
            Self::Busy,
            Self::Unsupported,
            Self::Unavailable,
            Self::Closed,
        ]
        .into_iter()
        .find(|s| *s as u8 == code)
    }
}

/// The prover's first frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairHello {
    /// The prover's Noise protocol name (it names the AEAD and the hash).
    pub suite: String,
}

impl PairHello {
    /// `MAGIC || suite_len || suite`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::from(&MAGIC[..]);
        suite_field(&mut out, &self.suite);
        out
    }

    /// Parses a frame body.
    ///
    /// # Errors
    /// [`WireError::NotThisProtocol`], [`WireError::MalformedHello`].
    pub fn decode(body: &[u8]) -> Result<Self, WireError> {
        let rest = body
            .strip_prefix(&MAGIC[..])
            .ok_or(WireError::NotThisProtocol)?;
        let (suite, rest) = read_suite(rest)?;
        if !rest.is_empty() {
            return Err(WireError::MalformedHello);
        }
        Ok(Self { suite })
    }
}

/// The device's answer to a [`PairHello`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairReply {
    /// The answer.
    pub status: PairStatus,
    /// The device's Noise protocol name.
    pub suite: String,
    /// With [`PairStatus::Ok`] only: the password hash's rounds and salt.
    pub params: Option<(u32, [u8; SALT_LEN])>,
}

impl PairReply {
    /// `MAGIC || status || suite_len || suite || [iterations: u32be || salt]`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::from(&MAGIC[..]);
        out.push(self.status as u8);
        suite_field(&mut out, &self.suite);
        if let Some((iterations, salt)) = &self.params {
            out.extend_from_slice(&iterations.to_be_bytes());
            out.extend_from_slice(salt);
        }
        out
    }

    /// Parses a frame body.
    ///
    /// # Errors
    /// [`WireError::NotThisProtocol`], [`WireError::MalformedHello`].
    pub fn decode(body: &[u8]) -> Result<Self, WireError> {
        let rest = body
            .strip_prefix(&MAGIC[..])
            .ok_or(WireError::NotThisProtocol)?;
        let (&status, rest) = rest.split_first().ok_or(WireError::MalformedHello)?;
        let status = PairStatus::from_code(status).ok_or(WireError::MalformedHello)?;
        let (suite, rest) = read_suite(rest)?;
        let params = match (status, rest.len()) {
            (PairStatus::Ok, 20) => {
                let mut salt = [0u8; SALT_LEN];
                salt.copy_from_slice(&rest[4..]);
                Some((
                    u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]),
                    salt,
                ))
            }
            (PairStatus::Ok, _) => return Err(WireError::MalformedHello),
            (_, 0) => None,
            (_, _) => return Err(WireError::MalformedHello),
        };
        Ok(Self {
            status,
            suite,
            params,
        })
    }
}

/// The PAKE's context: [`CONTEXT_PREFIX`] then the suite both sides speak.
pub fn pake_context(suite: &str) -> Vec<u8> {
    [CONTEXT_PREFIX, suite.as_bytes()].concat()
}

/// The run's messages the device keeps between `pake 2` and `pake 3`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PakeMessages {
    /// `shareP`.
    pub share_p: [u8; SHARE_LEN],
    /// `shareV`.
    pub share_v: [u8; SHARE_LEN],
    /// `confirmV`.
    pub confirm_v: [u8; CONFIRM_LEN],
}

/// `th = H(shareP || shareV || confirmV || confirmP)`: what each side's signature and
/// the identity keys are bound to (keystored computes it too: it signs only its own).
pub use service_api::keystored::transcript_hash;

/// The two identity keys: `HKDF-H(salt = th, ikm = K_shared, info = KEYS_INFO, 64)`,
/// the prover's first (it seals `pake 3`), the verifier's second (`pake 4`).
pub struct IdentityKeys {
    /// Seals the prover's identity.
    pub prover: AeadKey,
    /// Seals the verifier's identity.
    pub verifier: AeadKey,
}

impl IdentityKeys {
    /// The keys of a run whose shared key is `shared` and transcript hash `th`.
    pub fn derive<H: HashBackend>(shared: &SecretBytes<32>, th: &[u8; 32]) -> Self {
        let okm = H::hkdf_with_info::<64>(th, shared.expose_secret(), KEYS_INFO);
        let half = |at: usize| {
            AeadKey::from_fill(|key: &mut [u8; 32]| {
                key.copy_from_slice(&okm.expose_secret()[at..at + 32]);
                Ok::<(), ()>(())
            })
            .unwrap_or_else(|()| AeadKey::zeroed())
        };
        Self {
            prover: half(0),
            verifier: half(32),
        }
    }
}

/// The message a side signs: [`PAIRING_CONFIRM_PREFIX`] || role || th.
pub fn confirm_message(role: u8, th: &[u8; 32]) -> Vec<u8> {
    [PAIRING_CONFIRM_PREFIX, &[role], th].concat()
}

/// Why a pairing message was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairingError {
    /// The wrong length.
    Malformed,
    /// A sealed identity that does not open under the run's key.
    Sealed,
    /// A device key the verification rule refuses, or a signature that does not verify.
    Identity,
}

/// Seals `device_key || signature` with `key`: nonce 0 (each key seals one message),
/// associated data `th`.
pub fn seal_identity<A: AeadBackend>(
    key: &AeadKey,
    th: &[u8; 32],
    device_key: &[u8; 32],
    signature: &[u8; 64],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(SEALED_IDENTITY_LEN);
    out.extend_from_slice(device_key);
    out.extend_from_slice(signature);
    let tag = AeadCipher::<A>::new(key)
        .seal_in_place_detached(&[0; 12], th, &mut out)
        .unwrap_or([0; 16]);
    out.extend_from_slice(&tag);
    out
}

/// Opens a sealed identity and checks it: the device key under provider-api's rule,
/// its signature over [`confirm_message`] for `role`.
///
/// # Errors
/// [`PairingError`].
pub fn open_identity<A: AeadBackend, S: SignatureBackend>(
    key: &AeadKey,
    th: &[u8; 32],
    role: u8,
    sealed: &[u8],
) -> Result<VerifyingKey<S>, PairingError> {
    if sealed.len() != SEALED_IDENTITY_LEN {
        return Err(PairingError::Malformed);
    }
    let (body, tag) = sealed.split_at(IDENTITY_LEN);
    let mut identity = [0u8; IDENTITY_LEN];
    identity.copy_from_slice(body);
    let tag: [u8; 16] = tag.try_into().map_err(|_| PairingError::Malformed)?;
    AeadCipher::<A>::new(key)
        .open_in_place_detached(&[0; 12], th, &mut identity, &tag)
        .map_err(|_| PairingError::Sealed)?;
    let mut device_key = [0u8; 32];
    device_key.copy_from_slice(&identity[..32]);
    let mut signature = [0u8; 64];
    signature.copy_from_slice(&identity[32..]);
    let key = VerifyingKey::<S>::from_bytes(&device_key).map_err(|_| PairingError::Identity)?;
    key.verify(
        &confirm_message(role, th),
        &Signature::from_bytes(&signature),
    )
    .map_err(|_| PairingError::Identity)?;
    Ok(key)
}

/// The prover's role byte.
pub const PROVER: u8 = PAIRING_ROLE_PROVER;
/// The verifier's role byte.
pub const VERIFIER: u8 = PAIRING_ROLE_VERIFIER;

// ------------------------------------------------------------------ the prover's side

/// How many times a pairing with another device is tried while that device cannot
/// take it yet (not listening, or BUSY with another pairing): it may still be booting.
pub const PROVER_TRIES: u32 = 40;
/// Between tries.
pub const PROVER_RETRY_MS: u64 = 250;

/// A request to pair with another device whose setup code this device was given: the
/// kernel command line's `pair=A.B.C.D:PORT:CODE` (the code as its label prints it,
/// `1234-5678`, or its 8 digits). This device is then the **prover** of section 11:
/// it connects, keystored runs the password hash and the PAKE with the code, and once
/// the other device proved it holds the code's verifier, each side learns and stores
/// the other's device key.
pub struct PairRequest {
    /// The other device's dsoftbusd.
    pub remote: service_api::netstackd::SocketAddr,
    /// The code's 8 ASCII digits (wiped on drop).
    digits: zeroize::Zeroizing<[u8; 8]>,
}

/// Why `pair=` was refused. Neither says what the code was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairRequestError {
    /// Not `A.B.C.D:PORT:` before the code.
    Address,
    /// Not a setup code (8 digits, or `1234-5678`; trivial codes are none).
    Code,
    /// `pair=` given twice.
    Twice,
}

impl core::fmt::Display for PairRequestError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Address => "the address is not A.B.C.D:PORT",
            Self::Code => "the setup code is not 8 digits (1234-5678) or is trivial",
            Self::Twice => "pair= given twice",
        })
    }
}

impl PairRequest {
    /// The `pair=` word of `bootargs`, if there is one.
    ///
    /// # Errors
    /// [`PairRequestError`].
    pub fn from_bootargs(bootargs: &str) -> Option<Result<Self, PairRequestError>> {
        let mut words = bootargs
            .split_whitespace()
            .filter_map(|w| w.strip_prefix("pair="));
        let value = words.next()?;
        if words.next().is_some() {
            return Some(Err(PairRequestError::Twice));
        }
        Some(Self::parse(value))
    }

    /// Parses `A.B.C.D:PORT:CODE`.
    ///
    /// # Errors
    /// [`PairRequestError`].
    pub fn parse(value: &str) -> Result<Self, PairRequestError> {
        let (address, code) = value.rsplit_once(':').ok_or(PairRequestError::Address)?;
        let (ip, port) = address.split_once(':').ok_or(PairRequestError::Address)?;
        let ip: core::net::Ipv4Addr = ip.parse().map_err(|_| PairRequestError::Address)?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or(PairRequestError::Address)?;
        let code =
            state_format::pairing::SetupCode::parse(code).map_err(|_| PairRequestError::Code)?;
        Ok(Self {
            remote: service_api::netstackd::SocketAddr {
                ip: ip.octets(),
                port,
            },
            digits: zeroize::Zeroizing::new(code.digits()),
        })
    }

    /// The code's 8 ASCII digits, for keystored.
    pub fn digits(&self) -> &[u8; 8] {
        &self.digits
    }
}

impl core::fmt::Debug for PairRequest {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PairRequest")
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

/// The prover's run between `pake 3` and `pake 4`: the key the other device seals its
/// identity with, and what that identity is bound to.
pub struct ProverPending {
    /// The identity keys of the run.
    pub keys: IdentityKeys,
    /// The run's transcript hash.
    pub th: [u8; 32],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_request_takes_an_address_and_a_code_and_never_shows_the_code() {
        let request =
            PairRequest::from_bootargs("net.ip=10.0.2.16/24 pair=10.0.2.15:7411:2020-2021")
                .expect("a pair= word")
                .expect("parses");
        assert_eq!(request.remote.ip, [10, 0, 2, 15]);
        assert_eq!(request.remote.port, 7411);
        assert_eq!(request.digits(), b"20202021");
        assert!(!alloc::format!("{request:?}").contains("2020"));
        let digits = PairRequest::parse("10.0.2.15:7411:20202021").expect("8 digits");
        assert_eq!(digits.digits(), b"20202021");
        assert!(PairRequest::from_bootargs("net.ip=10.0.2.16/24 serve").is_none());
        for (value, error) in [
            ("10.0.2.15:7411", PairRequestError::Address),
            ("10.0.2.15:2020-2021", PairRequestError::Address),
            ("10.0.2:7411:2020-2021", PairRequestError::Address),
            ("10.0.2.15:0:2020-2021", PairRequestError::Address),
            ("10.0.2.15:7411:1234-5678", PairRequestError::Code),
            ("10.0.2.15:7411:2020-202", PairRequestError::Code),
            ("10.0.2.15:7411:2020x2021", PairRequestError::Code),
        ] {
            assert_eq!(PairRequest::parse(value).err(), Some(error), "{value}");
        }
        assert_eq!(
            PairRequest::from_bootargs("pair=10.0.2.15:7411:20202021 pair=10.0.2.15:7411:20202021")
                .and_then(Result::err),
            Some(PairRequestError::Twice)
        );
    }
}
