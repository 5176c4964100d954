//! Pairing with a device's setup code, as `docs/protocol.md` section 11 specifies it,
//! written from the document: SPAKE2+ as the prover (the `spake2plus` crate), PBKDF2
//! (`pbkdf2`), the suite's hash and AEAD (RustCrypto's `blake2`, `sha2`, `hkdf`,
//! `chacha20poly1305`, `aes-gcm`), the identities with `ed25519-dalek`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aes_gcm::Aes256Gcm;
use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use spake2plus::{ConfirmV, Context, P256Sha256, Prover, ProverSecret, ShareV};
use zeroize::Zeroizing;

use crate::session::{SessionError, dial};
use crate::wire::{self, WireError};

/// The pairing hello's magic.
pub const MAGIC: &[u8; 4] = b"DSP1";
/// The PAKE's context starts with these 20 bytes; the suite follows.
pub const CONTEXT_PREFIX: &[u8] = b"dsoftbus/v1 pairing\0";
/// HKDF's info for the identity keys.
pub const KEYS_INFO: &[u8] = b"dsoftbus/v1 pairing keys";
/// What each side signs: this prefix, a role byte, the transcript hash.
pub const CONFIRM_PREFIX: &[u8] = b"dsoftbus/v1 pairing confirm\0";
/// The prover's role byte.
pub const ROLE_PROVER: u8 = 1;
/// The device's role byte.
pub const ROLE_DEVICE: u8 = 2;

/// The fewest PBKDF2 rounds a pair reply may name.
pub const MIN_ITERATIONS: u32 = 1_000;
/// The most PBKDF2 rounds a pair reply may name.
pub const MAX_ITERATIONS: u32 = 100_000;

/// The pair reply's statuses (section 11.1).
pub const STATUS_NAMES: [&str; 6] = [
    "OK",
    "SUITE_MISMATCH",
    "BUSY",
    "UNSUPPORTED",
    "UNAVAILABLE",
    "CLOSED",
];

/// The suite's hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hash {
    /// BLAKE2s-256.
    Blake2s,
    /// SHA-256.
    Sha256,
}

/// The suite's AEAD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cipher {
    /// ChaCha20-Poly1305.
    ChaChaPoly,
    /// AES-256-GCM.
    AesGcm,
}

/// The hash and AEAD a Noise protocol name names.
///
/// # Errors
/// A name this protocol does not define.
pub fn suite_parts(suite: &str) -> Result<(Cipher, Hash), PairingError> {
    let rest = suite
        .strip_prefix("Noise_XK_25519_")
        .ok_or(PairingError::Suite)?;
    let (cipher, hash) = rest.split_once('_').ok_or(PairingError::Suite)?;
    let cipher = match cipher {
        "ChaChaPoly" => Cipher::ChaChaPoly,
        "AESGCM" => Cipher::AesGcm,
        _ => return Err(PairingError::Suite),
    };
    let hash = match hash {
        "BLAKE2s" => Hash::Blake2s,
        "SHA256" => Hash::Sha256,
        _ => return Err(PairingError::Suite),
    };
    Ok((cipher, hash))
}

impl Hash {
    /// `H(parts...)`.
    pub fn digest(self, parts: &[&[u8]]) -> [u8; 32] {
        use sha2::Digest;
        match self {
            Self::Blake2s => {
                let mut h = blake2::Blake2s256::new();
                parts.iter().for_each(|p| h.update(p));
                h.finalize().into()
            }
            Self::Sha256 => {
                let mut h = sha2::Sha256::new();
                parts.iter().for_each(|p| h.update(p));
                h.finalize().into()
            }
        }
    }

    /// HKDF-H, 64 bytes.
    pub fn hkdf(self, salt: &[u8], ikm: &[u8], info: &[u8]) -> Zeroizing<[u8; 64]> {
        let mut okm = Zeroizing::new([0u8; 64]);
        match self {
            Self::Blake2s => hkdf::SimpleHkdf::<blake2::Blake2s256>::new(Some(salt), ikm)
                .expand(info, okm.as_mut())
                .expect("64 bytes is within HKDF's bound"),
            Self::Sha256 => hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), ikm)
                .expand(info, okm.as_mut())
                .expect("64 bytes is within HKDF's bound"),
        }
        okm
    }
}

impl Cipher {
    /// Seals `plaintext` under `key` with a zero nonce and `ad`; the tag appended.
    pub fn seal(self, key: &[u8], ad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce = [0u8; 12];
        let payload = Payload {
            msg: plaintext,
            aad: ad,
        };
        match self {
            Self::ChaChaPoly => ChaCha20Poly1305::new_from_slice(key)
                .expect("32-byte key")
                .encrypt((&nonce).into(), payload),
            Self::AesGcm => Aes256Gcm::new_from_slice(key)
                .expect("32-byte key")
                .encrypt((&nonce).into(), payload),
        }
        .expect("a 96-byte message")
    }

    /// Opens what [`Cipher::seal`] sealed.
    pub fn open(self, key: &[u8], ad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let nonce = [0u8; 12];
        let payload = Payload {
            msg: sealed,
            aad: ad,
        };
        match self {
            Self::ChaChaPoly => ChaCha20Poly1305::new_from_slice(key)
                .ok()?
                .decrypt((&nonce).into(), payload),
            Self::AesGcm => Aes256Gcm::new_from_slice(key)
                .ok()?
                .decrypt((&nonce).into(), payload),
        }
        .ok()
        .map(Zeroizing::new)
    }
}

/// Why a pairing failed.
#[derive(Debug)]
pub enum PairingError {
    /// The wire.
    Wire(WireError),
    /// A suite this protocol does not define.
    Suite,
    /// The pair reply's status, other than OK (its name).
    Status(&'static str),
    /// The device speaks another suite.
    SuiteMismatch(String),
    /// The device's confirmation does not match: the setup code is wrong (or this is
    /// not the device). Nothing more was sent.
    WrongCode,
    /// A share or a frame of the wrong shape.
    Malformed(&'static str),
    /// The device closed the connection after this peer's `pake 3`: it refused the
    /// identity or could not store it.
    RefusedAfterConfirm,
    /// The device's identity did not open or check.
    DeviceIdentity,
}

impl std::fmt::Display for PairingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Wire(e) => write!(f, "{e}"),
            Self::Suite => f.write_str("a suite this protocol does not define"),
            Self::Status(name) => write!(f, "the device answered {name}"),
            Self::SuiteMismatch(theirs) => write!(f, "the device speaks {theirs}"),
            Self::WrongCode => f.write_str(
                "the device's confirmation does not match: wrong setup code (or not the device)",
            ),
            Self::Malformed(what) => write!(f, "malformed: {what}"),
            Self::RefusedAfterConfirm => {
                f.write_str("the device closed the connection after the confirmation")
            }
            Self::DeviceIdentity => f.write_str("the device's identity does not check"),
        }
    }
}

impl From<WireError> for PairingError {
    fn from(error: WireError) -> Self {
        Self::Wire(error)
    }
}

impl From<SessionError> for PairingError {
    fn from(error: SessionError) -> Self {
        match error {
            SessionError::Wire(e) => Self::Wire(e),
            _ => Self::Malformed("the connection"),
        }
    }
}

/// The password hash's input (section 11.2): the 8 digits, both identities empty.
pub fn password_input(digits: &[u8; 8]) -> Zeroizing<Vec<u8>> {
    let mut input = Zeroizing::new(Vec::with_capacity(32));
    input.extend_from_slice(&8u64.to_le_bytes());
    input.extend_from_slice(digits);
    input.extend_from_slice(&0u64.to_le_bytes());
    input.extend_from_slice(&0u64.to_le_bytes());
    input
}

/// The 8 digits of a setup code written `1234-5678` or `12345678`.
///
/// # Errors
/// Anything else.
pub fn digits(code: &str) -> Result<[u8; 8], String> {
    let digits: Zeroizing<Vec<u8>> = Zeroizing::new(code.bytes().filter(|b| *b != b'-').collect());
    let valid = digits.len() == 8
        && digits.iter().all(u8::is_ascii_digit)
        && (code.len() == 8 || (code.len() == 9 && code.as_bytes()[4] == b'-'));
    if !valid {
        return Err("a setup code is 8 digits, such as 1234-5678".into());
    }
    let mut out = [0u8; 8];
    out.copy_from_slice(&digits);
    Ok(out)
}

/// What a prover does, frame by frame, with its randomness given: for the protocol
/// vector and for [`pair`].
pub struct Exchange<'a> {
    /// The suite.
    pub suite: &'a str,
    /// The setup code's digits.
    pub digits: [u8; 8],
    /// This peer's identity.
    pub identity: &'a SigningKey,
    /// The 64 bytes `x` is drawn from.
    pub random: [u8; 64],
}

impl Drop for Exchange<'_> {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        self.digits.zeroize();
        self.random.zeroize();
    }
}

/// The prover's state between `pake 1` and `pake 3`.
pub struct AfterShare {
    prover: Prover<P256Sha256>,
    share_p: Vec<u8>,
}

/// The prover's state between `pake 3` and `pake 4`.
pub struct AfterConfirm {
    th: [u8; 32],
    k_device: Zeroizing<Vec<u8>>,
}

/// One fixed "random" block, served once.
struct Fixed([u8; 64], bool);

impl spake2plus::rand_core::TryRng for Fixed {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        unreachable!("spake2plus draws whole blocks")
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        unreachable!("spake2plus draws whole blocks")
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        assert!(!self.1 && dst.len() == 64, "one draw of 64 bytes");
        dst.copy_from_slice(&self.0);
        self.1 = true;
        Ok(())
    }
}

impl spake2plus::rand_core::TryCryptoRng for Fixed {}

impl Drop for Fixed {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        self.0.zeroize();
    }
}

impl Exchange<'_> {
    /// The pair hello.
    pub fn hello(&self) -> Vec<u8> {
        let mut body = MAGIC.to_vec();
        body.push(self.suite.len() as u8);
        body.extend_from_slice(self.suite.as_bytes());
        body
    }

    /// Reads the pair reply and makes `pake 1`.
    ///
    /// # Errors
    /// [`PairingError`].
    pub fn pake_1(&self, reply: &[u8]) -> Result<(Vec<u8>, AfterShare), PairingError> {
        let rest = reply
            .strip_prefix(&MAGIC[..])
            .ok_or(PairingError::Malformed("not DSP1"))?;
        let (&status, rest) = rest
            .split_first()
            .ok_or(PairingError::Malformed("status"))?;
        let (&len, rest) = rest.split_first().ok_or(PairingError::Malformed("suite"))?;
        let (suite, rest) = rest
            .split_at_checked(usize::from(len))
            .ok_or(PairingError::Malformed("suite"))?;
        let suite = String::from_utf8_lossy(suite).into_owned();
        match status {
            0 => {}
            1 => return Err(PairingError::SuiteMismatch(suite)),
            other => {
                return Err(PairingError::Status(
                    STATUS_NAMES
                        .get(usize::from(other))
                        .copied()
                        .unwrap_or("an unknown status"),
                ));
            }
        }
        if rest.len() != 20 {
            return Err(PairingError::Malformed("OK without iterations and salt"));
        }
        let iterations = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes"));
        // Section 11.1: a device's rounds are 1,000 to 100,000; a reply outside them is
        // not a device's (and would make this peer compute for hours).
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(PairingError::Malformed("rounds outside 1,000 to 100,000"));
        }
        let salt = &rest[4..];
        let mut output = Zeroizing::new([0u8; 80]);
        pbkdf2::pbkdf2_hmac::<sha2::Sha256>(
            &password_input(&self.digits),
            salt,
            iterations,
            output.as_mut(),
        );
        let secret = ProverSecret::<P256Sha256>::from_pbkdf_output(output.as_ref())
            .map_err(|_| PairingError::Malformed("the password hash"))?;
        let context = [CONTEXT_PREFIX, self.suite.as_bytes()].concat();
        let context = Context {
            context: &context,
            prover_id: b"",
            verifier_id: b"",
        };
        let (prover, share_p) = Prover::start(&secret, &context, &mut Fixed(self.random, false));
        let share_p = share_p.as_ref().to_vec();
        Ok((share_p.clone(), AfterShare { prover, share_p }))
    }

    /// Reads `pake 2`, checks the device's confirmation, and makes `pake 3`.
    ///
    /// # Errors
    /// [`PairingError::WrongCode`] when `confirmV` does not match.
    pub fn pake_3(
        &self,
        state: AfterShare,
        pake_2: &[u8],
    ) -> Result<(Vec<u8>, AfterConfirm), PairingError> {
        let (cipher, hash) = suite_parts(self.suite)?;
        if pake_2.len() != 97 {
            return Err(PairingError::Malformed("pake 2"));
        }
        let share_v = ShareV::<P256Sha256>::from_bytes(&pake_2[..65])
            .map_err(|_| PairingError::Malformed("shareV"))?;
        let confirm_v = ConfirmV::<P256Sha256>::from_bytes(&pake_2[65..])
            .map_err(|_| PairingError::Malformed("confirmV"))?;
        let (confirm_p, key) = state
            .prover
            .receive(&share_v)
            .map_err(|_| PairingError::Malformed("shareV"))?
            .finish(&confirm_v)
            .map_err(|_| PairingError::WrongCode)?;
        let th = hash.digest(&[
            &state.share_p,
            &pake_2[..65],
            &pake_2[65..],
            confirm_p.as_ref(),
        ]);
        let okm = hash.hkdf(&th, key.as_bytes().as_ref(), KEYS_INFO);
        let signature = self
            .identity
            .sign(&[CONFIRM_PREFIX, &[ROLE_PROVER], &th].concat());
        let identity = [
            &self.identity.verifying_key().to_bytes()[..],
            &signature.to_bytes(),
        ]
        .concat();
        let sealed = cipher.seal(&okm[..32], &th, &identity);
        let pake_3 = [confirm_p.as_ref(), &sealed].concat();
        Ok((
            pake_3,
            AfterConfirm {
                th,
                k_device: Zeroizing::new(okm[32..].to_vec()),
            },
        ))
    }

    /// Reads `pake 4`: the device key, once its identity opens and checks.
    ///
    /// # Errors
    /// [`PairingError::DeviceIdentity`].
    pub fn finish(&self, state: AfterConfirm, pake_4: &[u8]) -> Result<[u8; 32], PairingError> {
        let (cipher, _) = suite_parts(self.suite)?;
        let identity = cipher
            .open(&state.k_device, &state.th, pake_4)
            .ok_or(PairingError::DeviceIdentity)?;
        if identity.len() != 96 {
            return Err(PairingError::DeviceIdentity);
        }
        let device_key: [u8; 32] = identity[..32].try_into().expect("32 bytes");
        let signature = Signature::from_bytes(&identity[32..].try_into().expect("64 bytes"));
        // Section 5's rule 2: the canonical encoding of a point of prime order (not
        // small, not mixed order).
        let point = curve25519_dalek::edwards::CompressedEdwardsY(device_key)
            .decompress()
            .ok_or(PairingError::DeviceIdentity)?;
        if point.compress().to_bytes() != device_key
            || point.is_small_order()
            || !point.is_torsion_free()
        {
            return Err(PairingError::DeviceIdentity);
        }
        let key =
            VerifyingKey::from_bytes(&device_key).map_err(|_| PairingError::DeviceIdentity)?;
        key.verify_strict(
            &[CONFIRM_PREFIX, &[ROLE_DEVICE], &state.th].concat(),
            &signature,
        )
        .map_err(|_| PairingError::DeviceIdentity)?;
        Ok(device_key)
    }
}

/// What a pairing took.
pub struct Paired {
    /// The device key the device proved.
    pub device_key: [u8; 32],
    /// The wall time of the whole pairing.
    pub total: Duration,
    /// Of which the password hash (PBKDF2) took this much.
    pub password_hash: Duration,
}

/// Pairs with the device at `addr` (section 11).
///
/// # Errors
/// [`PairingError`].
pub fn pair(
    addr: SocketAddr,
    suite: &str,
    digits: [u8; 8],
    identity: &SigningKey,
) -> Result<Paired, PairingError> {
    suite_parts(suite)?;
    let started = Instant::now();
    let mut random = Zeroizing::new([0u8; 64]);
    getrandom::fill(random.as_mut()).map_err(|_| PairingError::Malformed("no host entropy"))?;
    let exchange = Exchange {
        suite,
        digits,
        identity,
        random: *random,
    };
    let mut stream = dial(addr)?;
    wire::write_frame(&mut stream, &exchange.hello())?;
    let reply = wire::read_frame(&mut stream, "pair reply")?;
    let hashed = Instant::now();
    let (pake_1, after_share) = exchange.pake_1(&reply)?;
    let password_hash = hashed.elapsed();
    wire::write_frame(&mut stream, &pake_1)?;
    let pake_2 = wire::read_frame(&mut stream, "pake 2")?;
    let (pake_3, after_confirm) = exchange.pake_3(after_share, &pake_2)?;
    wire::write_frame(&mut stream, &pake_3)?;
    let pake_4 = match wire::read_frame(&mut stream, "pake 4") {
        Ok(frame) => frame,
        Err(WireError::Closed) => return Err(PairingError::RefusedAfterConfirm),
        Err(WireError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            return Err(PairingError::RefusedAfterConfirm);
        }
        Err(other) => return Err(other.into()),
    };
    let device_key = exchange.finish(after_confirm, &pake_4)?;
    Ok(Paired {
        device_key,
        total: started.elapsed(),
        password_hash,
    })
}
