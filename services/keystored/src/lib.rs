//! keystored, the device-key store.
//!
//! **A key that survives reboots.** The device's Ed25519 identity key is made once
//! and kept sealed on the state disk (statefs, keystored's record
//! [`KEYSTORED_DEVICE_KEY`]), under a key only this device can derive:
//!
//! - keystored alone holds the OTP disk (`policies/manifest.toml`): 32 device-unique
//!   bytes, a stand-in for OTP fuses. From them it derives, with HKDF over the image's
//!   hash, the sealing key of the record and a key id, and the key of trust-store tags
//!   (`state_format::sealed`, `state_format::trust`); then the OTP secret is dropped
//!   (zeroized). It never reaches a log, a reply or another task.
//! - **First boot** (statefs answers `NotFound`): 32 bytes of rngd entropy are the RFC
//!   8032 seed; the seed is sealed with the image's AEAD under a fresh 96-bit nonce
//!   from rngd, stored, read back and opened again, and only if the key read back is
//!   the key made does keystored print `keystored: device key created`.
//! - **Later boots**: the record is read and opened: `keystored: device key restored`,
//!   the same key, and rngd is not needed.
//! - **Fail closed, never regenerate.** A record that exists but does not open (tampered,
//!   sealed on another device, sealed with another AEAD or hash than this image has),
//!   no OTP disk, a state disk that is missing or cannot prove the record absent: each
//!   has its own marker and audit record ([`Failure`]), keystored has no key, and
//!   nothing is written. A new key is made only when statefs proves the record absent.
//!
//! **Signatures only for their purpose.** `SIGN` names a signing purpose; keystored
//! builds the message of that purpose itself (for a Noise static-key binding: the
//! binding prefix and the 32-byte key, nothing else) and signs only purposes the
//! policy grants the caller (`[[purpose]]` in `policies/policy.toml`). A caller allowed
//! `SIGN` can still obtain no signature over a message of its choosing.
//!
//! **Trust stores that cannot be rolled back.** keystored alone holds the device's
//! anti-rollback counter (`rollback-counter`: one-time-programmable bits, a one-sector
//! disk with serial `ctr0` whose bits the kernel lets it set, never clear). A trust
//! store carries the counter value it was written at under its tag; keystored refuses
//! one below the counter (`RolledBack`: a replayed store, an older copy of the disk)
//! and, for one above it (the factory wrote it and a power cut came before the factory
//! advanced the counter), advances the counter first, as a boot ROM raises its
//! rollback index once it accepted a newer image. Without a counter every trust store
//! is refused: rollback protection is not silently dropped.
//!
//! **The verifier of pairing** ([`pairing`]): the factory seals a SPAKE2+ verifier
//! for the device's setup code on the state disk (record 2); keystored opens it at
//! start and runs the verifier's side of each pairing for dsoftbusd, counting failed
//! attempts on the disk (record 3) before it answers; it also tags the trust stores
//! pairing writes (`TAG_TRUST_STORE`), so dsoftbusd never holds the tag key.
//!
//! **Interface** (`service_api::keystored`): `GET_PUBKEY`; `SIGN(purpose, data)`;
//! `EXPORT_PRIVATE`, always refused with its own error and an audit record;
//! `VERIFY_TRUST_STORE(record)`, whether a trust store's tag is this device's and its
//! version is not older than the counter. No call returns private key material.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod pairing;

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;
use core::marker::PhantomData;

use provider_api::pake::PAKE_RANDOM_LEN;
use zeroize::Zeroize;

use ipc::policy::{PurposeGrant, SigningPurpose, purpose_granted};
use ipc::{
    Action, AuditEvent, Capability, CapabilityError, Endpoint, Frame, Operation, RawBlockDevice,
    ServiceId, Verdict,
};
use provider_api::{HashBackend, PakeBackend, Provider, Seed, SigningKey, VerifyingKey};
use rollback_counter::CounterError;
use service_api::keystored::purpose_message;
use service_api::statefs::{
    KEYSTORED_DEVICE_KEY, KEYSTORED_PAIRING_ATTEMPTS, KEYSTORED_PAIRING_VERIFIER,
};
use service_api::{ClientError, Incoming, ServiceError, reply_err, reply_ok, rngd, statefs};
use state_format::otp::{self, OtpError};
use state_format::pairing::{MAX_FAILED_ATTEMPTS, VERIFIER_PLAINTEXT_LEN, Verifier};
use state_format::sealed::{self, SealingKeys, UnsealError};
use state_format::trust::{self, TagKey, TrustStoreError};

use crate::pairing::{Effect, Pairing};

/// The sequence number of the first (and, today, only) sealing of the device key.
const FIRST_SEALING: u32 = 1;

/// Whether the key was made on this boot or opened from the state disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provenance {
    /// Made from rngd entropy, sealed, stored and read back on this boot.
    Created,
    /// Opened from its sealed record.
    Restored,
}

impl Provenance {
    /// The word of the `keystored: device key {provenance}` marker.
    pub const fn word(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Restored => "restored",
        }
    }
}

/// Why keystored has no key. Each has its own marker and audit reason
/// ([`Failure::code`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No OTP disk (or it was not granted): no device secret to seal with.
    NoOtp,
    /// The OTP disk is there but gives no secret (unreadable, blank, writable).
    OtpUnusable(OtpError),
    /// statefs cannot be reached, has no disk, or cannot prove the record absent.
    StateUnavailable(ClientError),
    /// No entropy for a new key or its nonce.
    NoEntropy(ClientError),
    /// The sealed record exists and does not open.
    Sealed(UnsealError),
    /// The record read back after storing it is not the key just made.
    ReadBack,
}

impl Failure {
    /// The audit reason code: 1 no OTP, 2 OTP unusable, 3 state unavailable, 4 no
    /// entropy, 5 tampered or malformed, 6 sealed on another device, 7 sealed with
    /// another algorithm, 8 read-back mismatch.
    pub const fn code(self) -> u16 {
        match self {
            Self::NoOtp => 1,
            Self::OtpUnusable(_) => 2,
            Self::StateUnavailable(_) => 3,
            Self::NoEntropy(_) => 4,
            Self::Sealed(UnsealError::OtherDevice) => 6,
            Self::Sealed(UnsealError::OtherAead { .. } | UnsealError::OtherHash { .. }) => 7,
            Self::Sealed(_) => 5,
            Self::ReadBack => 8,
        }
    }

    /// Prints the failure's marker.
    fn announce<E: Endpoint>(self, ep: &E) {
        match self {
            Self::NoOtp => ep.console(markers::KEYSTORED_NO_OTP.message),
            Self::OtpUnusable(why) => {
                let mut line = String::from("fail-closed: OTP disk unusable: ");
                let _ = write!(line, "{why:?}");
                ep.console(&line);
            }
            Self::StateUnavailable(_) | Self::ReadBack => {
                ep.console(markers::KEYSTORED_STATE_UNAVAILABLE.message)
            }
            Self::NoEntropy(_) => ep.console(markers::KEYSTORED_NO_KEY.message),
            Self::Sealed(UnsealError::OtherDevice) => {
                ep.console(markers::KEYSTORED_SEALED_OTHER_DEVICE.message)
            }
            Self::Sealed(UnsealError::OtherAead { sealed, image }) => ep.console(
                &markers::KEYSTORED_SEALED_OTHER_ALGORITHM.render(&[sealed.name(), image.name()]),
            ),
            Self::Sealed(UnsealError::OtherHash { sealed, image }) => ep.console(
                &markers::KEYSTORED_SEALED_OTHER_ALGORITHM
                    .render(&[sealed.noise_name(), image.noise_name()]),
            ),
            Self::Sealed(_) => ep.console(markers::KEYSTORED_SEALED_TAMPERED.message),
        }
    }
}

/// The audit reason of keystored's health record when it has no usable rollback
/// counter (it keeps its key; trust stores are refused).
pub const NO_COUNTER_REASON: u16 = 9;
/// The audit reason of keystored's health record when a pairing verifier is on the
/// disk but does not open here (pairing is off; the key is kept).
pub const PAIRING_OFF_REASON: u16 = 10;

/// Why keystored has no rollback counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CounterUnavailable {
    /// The kernel handed out none (no `ctr0` disk, or not granted).
    Claim(CapabilityError),
    /// The device could not be read.
    Device(CounterError),
}

/// The device's anti-rollback counter as keystored holds it: the device and the value
/// last read or written.
pub struct RollbackCounter {
    device: Box<dyn RawBlockDevice>,
    value: u32,
}

impl RollbackCounter {
    /// Reads the counter on `device`.
    ///
    /// # Errors
    /// The device's failure.
    pub fn open(mut device: Box<dyn RawBlockDevice>) -> Result<Self, CounterError> {
        let value = rollback_counter::read(&mut *device)?;
        Ok(Self { device, value })
    }

    /// The counter's value.
    pub fn value(&self) -> u32 {
        self.value
    }

    /// Whether a trust store written at `version` may be used: not below the counter.
    /// A newer one raises the counter to it first (written, flushed, read back).
    fn admit(&mut self, version: u32) -> Result<(), ServiceError> {
        if version < self.value {
            return Err(ServiceError::RolledBack);
        }
        if version > self.value {
            self.value = rollback_counter::advance(&mut *self.device, version)
                .map_err(|_| ServiceError::Unavailable)?;
        }
        Ok(())
    }
}

/// The device key and the trust-store tag key, or none when keystored failed closed;
/// and the verifier of pairing.
pub struct Keystored<P: Provider, H: HashBackend, K: PakeBackend> {
    key: Option<SigningKey<P::Sig>>,
    trust: Option<TagKey>,
    counter: Option<RollbackCounter>,
    purposes: &'static [PurposeGrant],
    pairing: Pairing<K>,
    hash: PhantomData<H>,
}

/// A handled request: the reply payload or error, its audit record, and what must
/// reach the disk before the reply goes out.
pub struct Handled {
    /// The reply payload or the error. Public data, but for `PAIRING_FINISH`'s shared
    /// key: the service loop wipes every payload once sent.
    pub reply: Result<Vec<u8>, ServiceError>,
    /// The record of the decision.
    pub audit: AuditEvent,
    /// A failed-attempt count to write first.
    pub effect: Effect,
}

/// Lower-case hex, for the public key marker.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

fn seed_from(bytes: &[u8]) -> Option<Seed> {
    Seed::from_fill(|seed: &mut [u8; 32]| {
        seed.copy_from_slice(bytes.get(..32).ok_or(())?);
        Ok::<(), ()>(())
    })
    .ok()
}

impl<P: Provider, H: HashBackend, K: PakeBackend> Keystored<P, H, K> {
    /// keystored with `key` (and the trust-store tag key, when there is an OTP secret),
    /// signing for the callers and purposes of `purposes`.
    pub fn new(
        key: SigningKey<P::Sig>,
        trust: Option<TagKey>,
        purposes: &'static [PurposeGrant],
    ) -> Self {
        Self {
            key: Some(key),
            trust,
            counter: None,
            purposes,
            pairing: Pairing::new(None, 0),
            hash: PhantomData,
        }
    }

    /// keystored verifying pairings with `pairing`.
    pub fn with_pairing(mut self, pairing: Pairing<K>) -> Self {
        self.pairing = pairing;
        self
    }

    /// The verifier of pairing.
    pub fn pairing_mut(&mut self) -> &mut Pairing<K> {
        &mut self.pairing
    }

    /// keystored holding the device's rollback counter (without one, every trust
    /// store is refused `Unavailable`).
    pub fn with_counter(mut self, counter: RollbackCounter) -> Self {
        self.counter = Some(counter);
        self
    }

    /// keystored without a key: every request but export is answered `NoKey`.
    pub fn failed_closed(purposes: &'static [PurposeGrant]) -> Self {
        Self {
            key: None,
            trust: None,
            counter: None,
            purposes,
            pairing: Pairing::new(None, 0),
            hash: PhantomData,
        }
    }

    /// The device public key, if there is a key.
    pub fn public_key(&self) -> Option<[u8; 32]> {
        self.key.as_ref().map(|key| key.verifying_key().to_bytes())
    }

    /// Handles one request frame from `sender`.
    pub fn handle(&mut self, sender: ServiceId, frame: &[u8]) -> Handled {
        let request = ipc::Request {
            sender,
            sender_generation: 0,
            frame: ipc::IpcBuffer::copy_from(frame),
            token: ipc::ReplyToken(0),
        };
        let audit = |code: u16, verdict, reason: u16, detail: usize| AuditEvent {
            subject: sender,
            action: Action::Call {
                service: ServiceId::Keystored,
                code,
            },
            verdict,
            reason,
            detail: u32::try_from(detail).unwrap_or(u32::MAX),
        };
        let incoming = match Incoming::parse(ServiceId::Keystored, &request) {
            Ok(incoming) => incoming,
            Err((error, code)) => {
                return Handled {
                    reply: Err(error),
                    audit: audit(code, Verdict::Rejected, error.code(), frame.len()),
                    effect: Effect::None,
                };
            }
        };
        let code = incoming.operation.code();
        let size = incoming.payload.len();
        let refuse = |error: ServiceError, verdict, detail: usize| Handled {
            reply: Err(error),
            audit: audit(code, verdict, error.code(), detail),
            effect: Effect::None,
        };
        let allow = |reply: Vec<u8>, detail: usize| Handled {
            reply: Ok(reply),
            audit: audit(code, Verdict::Allowed, 0, detail),
            effect: Effect::None,
        };
        let key = match (incoming.operation, &self.key) {
            (Operation::KeystoredExportPrivate, _) => {
                return refuse(ServiceError::ExportForbidden, Verdict::Denied, size);
            }
            (_, None) => return refuse(ServiceError::NoKey, Verdict::Failed, size),
            (_, Some(key)) => key,
        };
        match incoming.operation {
            Operation::KeystoredGetPubkey if incoming.payload.is_empty() => {
                allow(key.verifying_key().to_bytes().to_vec(), 0)
            }
            Operation::KeystoredSign => {
                let Some((purpose, data)) = incoming.payload.split_first_chunk::<2>() else {
                    return refuse(ServiceError::MalformedRequest, Verdict::Rejected, size);
                };
                let code_of_purpose = u16::from_le_bytes(*purpose);
                // The detail of a SIGN record is the purpose asked for.
                let Some(purpose) = SigningPurpose::from_code(code_of_purpose)
                    .filter(|p| purpose_granted(self.purposes, sender, *p))
                else {
                    let detail = usize::from(code_of_purpose);
                    return refuse(ServiceError::PurposeDenied, Verdict::Denied, detail);
                };
                // A pairing confirmation only for the run keystored just confirmed, in
                // its role there, once: dsoftbusd (or whatever runs as it) cannot have
                // this device vouch for a transcript it did not run.
                if purpose == SigningPurpose::PairingConfirm {
                    let confirmed = self.pairing.take_confirmed();
                    if confirmed.is_none_or(|run| run.signed_data::<H>()[..] != *data) {
                        let detail = usize::from(purpose.code());
                        return refuse(ServiceError::NoSession, Verdict::Rejected, detail);
                    }
                }
                match purpose_message(purpose, data) {
                    Ok(message) => allow(
                        key.sign(&message).to_bytes().to_vec(),
                        usize::from(purpose.code()),
                    ),
                    Err(error) => refuse(error, Verdict::Rejected, usize::from(purpose.code())),
                }
            }
            // No store on the disk: fine on a device whose counter never moved; once
            // the factory wrote a store (the counter above 0), its absence means it was
            // removed, which is a rollback too. The detail is the counter's value.
            Operation::KeystoredVerifyTrustStore if incoming.payload.is_empty() => {
                match self.counter.as_ref().map(RollbackCounter::value) {
                    Some(value) if value > 0 => {
                        refuse(ServiceError::RolledBack, Verdict::Rejected, value as usize)
                    }
                    value => allow(Vec::new(), value.unwrap_or(0) as usize),
                }
            }
            Operation::KeystoredVerifyTrustStore => {
                let Some(tag_key) = &self.trust else {
                    return refuse(ServiceError::NoKey, Verdict::Failed, size);
                };
                match trust::decode::<H>(tag_key, incoming.payload) {
                    // The detail of a verified or rolled-back store is its version.
                    Ok(store) => {
                        let version = store.rollback_version as usize;
                        let admitted = match &mut self.counter {
                            Some(counter) => counter.admit(store.rollback_version),
                            None => Err(ServiceError::Unavailable),
                        };
                        match admitted {
                            Ok(()) => allow(Vec::new(), version),
                            Err(error @ ServiceError::RolledBack) => {
                                refuse(error, Verdict::Rejected, version)
                            }
                            Err(error) => refuse(error, Verdict::Failed, version),
                        }
                    }
                    Err(TrustStoreError::BadTag) => {
                        refuse(ServiceError::AuthenticationFailed, Verdict::Rejected, size)
                    }
                    Err(TrustStoreError::OtherHash { .. }) => {
                        refuse(ServiceError::OtherAlgorithm, Verdict::Rejected, size)
                    }
                    Err(_) => refuse(ServiceError::MalformedRequest, Verdict::Rejected, size),
                }
            }
            Operation::KeystoredTagTrustStore => {
                let Some(tag_key) = &self.trust else {
                    return refuse(ServiceError::NoKey, Verdict::Failed, size);
                };
                let Some(counter) = &self.counter else {
                    return refuse(ServiceError::Unavailable, Verdict::Failed, size);
                };
                if size % 32 != 0 {
                    return refuse(ServiceError::MalformedRequest, Verdict::Rejected, size);
                }
                if size / 32 > trust::MAX_PEERS {
                    return refuse(ServiceError::Full, Verdict::Rejected, size / 32);
                }
                let keys: Vec<[u8; 32]> = incoming
                    .payload
                    .chunks_exact(32)
                    .map(|chunk| chunk.try_into().unwrap_or([0; 32]))
                    .collect();
                if keys
                    .iter()
                    .any(|k| VerifyingKey::<P::Sig>::from_bytes(k).is_err())
                {
                    return refuse(ServiceError::InvalidKey, Verdict::Rejected, size / 32);
                }
                let Some(version) = counter
                    .value()
                    .checked_add(1)
                    .filter(|v| *v <= rollback_counter::BITS)
                else {
                    return refuse(ServiceError::Full, Verdict::Failed, size / 32);
                };
                // The detail is the store's version.
                allow(
                    trust::encode::<H>(tag_key, version, &keys),
                    version as usize,
                )
            }
            // The detail of a pairing record is the failed-attempt count after it.
            Operation::KeystoredPairingStatus if incoming.payload.is_empty() => allow(
                self.pairing.status().encode(),
                usize::from(self.pairing.failed()),
            ),
            Operation::KeystoredPairingStart => {
                let (reply, effect) = self.pairing.start(incoming.payload);
                let failed = usize::from(self.pairing.failed());
                let mut handled = match reply {
                    Ok(reply) => allow(reply, failed),
                    Err(error @ (ServiceError::NotFound | ServiceError::Unavailable)) => {
                        refuse(error, Verdict::Failed, failed)
                    }
                    Err(error @ ServiceError::Closed) => refuse(error, Verdict::Denied, failed),
                    Err(error) => refuse(error, Verdict::Rejected, failed),
                };
                handled.effect = effect;
                handled
            }
            Operation::KeystoredPairingFinish => {
                let (reply, effect) = self.pairing.finish(incoming.payload);
                let failed = usize::from(self.pairing.failed());
                let mut handled = match reply {
                    Ok(reply) => allow(reply, failed),
                    Err(error) => refuse(error, Verdict::Rejected, failed),
                };
                handled.effect = effect;
                handled
            }
            Operation::KeystoredPairingReopen if incoming.payload.is_empty() => {
                match self.pairing.reopen() {
                    Ok(effect) => Handled {
                        effect,
                        ..allow(Vec::new(), 0)
                    },
                    Err(error @ ServiceError::Denied) => refuse(error, Verdict::Denied, 0),
                    Err(error) => refuse(error, Verdict::Failed, 0),
                }
            }
            // The prover's side (this device pairs with another): nothing is counted,
            // the code is the caller's and no secret of this device is at stake. The
            // detail is the payload's length.
            Operation::KeystoredPairingProve => match self.pairing.prove(incoming.payload) {
                Ok(share) => allow(share, size),
                Err(error @ ServiceError::Unavailable) => refuse(error, Verdict::Failed, size),
                Err(error) => refuse(error, Verdict::Rejected, size),
            },
            Operation::KeystoredPairingProveFinish => {
                match self.pairing.prove_finish(incoming.payload) {
                    Ok(reply) => allow(reply, size),
                    Err(error) => refuse(error, Verdict::Rejected, size),
                }
            }
            Operation::KeystoredGetPubkey
            | Operation::KeystoredPairingStatus
            | Operation::KeystoredPairingReopen => {
                refuse(ServiceError::MalformedRequest, Verdict::Rejected, size)
            }
            _ => refuse(ServiceError::UnknownOperation, Verdict::Rejected, size),
        }
    }
}

/// The keys keystored derives from the device secret.
pub struct DeviceKeys {
    /// The device-key record's sealing keys.
    pub sealing: SealingKeys,
    /// The trust-store tag key.
    pub tags: TagKey,
    /// The pairing verifier record's sealing keys.
    pub verifier: SealingKeys,
}

/// Reads the device secret and derives the sealing keys and the trust-store tag key;
/// the secret itself is dropped (zeroized) here.
fn device_keys<H: HashBackend, E: Endpoint>(ep: &E) -> Result<DeviceKeys, Failure> {
    let mut disk = ep
        .claim_disk(Capability::OtpDisk)
        .map_err(|_| Failure::NoOtp)?;
    let secret = otp::read_secret(&mut disk).map_err(Failure::OtpUnusable)?;
    Ok(DeviceKeys {
        sealing: SealingKeys::derive::<H>(&secret, KEYSTORED_DEVICE_KEY),
        tags: TagKey::derive::<H>(&secret),
        verifier: SealingKeys::derive::<H>(&secret, KEYSTORED_PAIRING_VERIFIER),
    })
}

/// Why pairing is off on this device (said once at start).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairingOff {
    /// No verifier record: the factory gave this device no setup code.
    NotProvisioned,
    /// A verifier record that does not open here, or does not parse.
    Refused(UnsealError),
    /// statefs could not say.
    Unreadable,
}

/// Opens the sealed pairing verifier.
///
/// # Errors
/// [`UnsealError`] (a plaintext that does not parse is `Malformed`).
pub fn open_verifier<P: Provider, H: HashBackend>(
    keys: &SealingKeys,
    record: &[u8],
) -> Result<Verifier, UnsealError> {
    let mut plaintext = provider_api::SecretBytes::<VERIFIER_PLAINTEXT_LEN>::zeroed();
    sealed::unseal::<P::Aead, H>(
        keys,
        KEYSTORED_PAIRING_VERIFIER,
        record,
        plaintext.expose_secret_mut(),
    )?;
    Verifier::from_plaintext(plaintext.expose_secret()).map_err(|_| UnsealError::Malformed)
}

/// Draws one pairing run's entropy from rngd; notes when rngd said it closed for good.
async fn draw_pairing_random<K: PakeBackend, E: Endpoint>(
    ep: &E,
    pairing: &mut Pairing<K>,
    entropy_closed: &mut bool,
) {
    match rngd::get_entropy(ep, PAKE_RANDOM_LEN as u16).await {
        Ok(random) => {
            if let Ok(random) =
                provider_api::SecretBytes::from_fill(|r: &mut [u8; PAKE_RANDOM_LEN]| {
                    r.copy_from_slice(random.get(..PAKE_RANDOM_LEN).ok_or(())?);
                    Ok::<(), ()>(())
                })
            {
                pairing.give_random(random);
            }
        }
        Err(ClientError::Service(ServiceError::HealthTestFailed | ServiceError::Unavailable)) => {
            *entropy_closed = true;
        }
        Err(_) => {}
    }
}

/// The verifier and the failed-attempt count on the state disk. A count that does
/// not read is the limit (pairing closed), never 0.
async fn load_pairing<P: Provider, H: HashBackend, E: Endpoint>(
    ep: &E,
    keys: &SealingKeys,
) -> (Result<Verifier, PairingOff>, u16) {
    let verifier = match statefs::get(ep, KEYSTORED_PAIRING_VERIFIER).await {
        Ok(record) => open_verifier::<P, H>(keys, &record).map_err(PairingOff::Refused),
        Err(ClientError::Service(ServiceError::NotFound)) => Err(PairingOff::NotProvisioned),
        Err(_) => Err(PairingOff::Unreadable),
    };
    let failed = match statefs::get(ep, KEYSTORED_PAIRING_ATTEMPTS).await {
        Ok(record) => {
            state_format::pairing::decode_attempts(&record).unwrap_or(MAX_FAILED_ATTEMPTS)
        }
        Err(ClientError::Service(ServiceError::NotFound)) => 0,
        Err(_) => MAX_FAILED_ATTEMPTS,
    };
    (verifier, failed)
}

/// Opens the sealed device-key record and derives the key: what a restore does once
/// the record is read.
///
/// # Errors
/// [`Failure::Sealed`].
pub fn open<P: Provider, H: HashBackend>(
    sealing: &SealingKeys,
    record: &[u8],
) -> Result<SigningKey<P::Sig>, Failure> {
    let mut seed = Seed::zeroed();
    sealed::unseal::<P::Aead, H>(
        sealing,
        KEYSTORED_DEVICE_KEY,
        record,
        seed.expose_secret_mut(),
    )
    .map_err(Failure::Sealed)?;
    // A record that opens under this device's key was sealed here; an all-zero seed in
    // it could only have been written by someone holding the sealing key.
    SigningKey::from_seed(&seed).map_err(|_| Failure::Sealed(UnsealError::Tampered))
}

/// A new device key from 32 bytes of entropy, and its sealed record under a fresh
/// 12-byte `nonce`: what a first boot does before storing the record.
///
/// # Errors
/// [`Failure::NoEntropy`] for entropy that is not 32 bytes or is all zero.
pub fn seal_new_key<P: Provider, H: HashBackend>(
    sealing: &SealingKeys,
    entropy: &[u8],
    nonce: &[u8; 12],
) -> Result<(SigningKey<P::Sig>, Vec<u8>), Failure> {
    let bad = Failure::NoEntropy(ClientError::MalformedReply);
    let seed = seed_from(entropy)
        .filter(|_| entropy.len() == 32)
        .ok_or(bad)?;
    let key = SigningKey::<P::Sig>::from_seed(&seed).map_err(|_| bad)?;
    let record = sealed::seal::<P::Aead, H>(
        sealing,
        KEYSTORED_DEVICE_KEY,
        FIRST_SEALING,
        nonce,
        seed.expose_secret(),
    );
    Ok((key, record))
}

/// Makes a new key from rngd entropy, seals it, stores it, reads it back.
async fn create<P: Provider, H: HashBackend, E: Endpoint>(
    ep: &E,
    sealing: &SealingKeys,
) -> Result<SigningKey<P::Sig>, Failure> {
    let entropy = rngd::get_entropy(ep, 32)
        .await
        .map_err(Failure::NoEntropy)?;
    let nonce = rngd::get_entropy(ep, 12)
        .await
        .map_err(Failure::NoEntropy)?;
    let nonce: [u8; 12] = nonce
        .as_slice()
        .try_into()
        .map_err(|_| Failure::NoEntropy(ClientError::MalformedReply))?;
    let (key, record) = seal_new_key::<P, H>(sealing, &entropy, &nonce)?;
    statefs::put(ep, KEYSTORED_DEVICE_KEY, &record)
        .await
        .map_err(Failure::StateUnavailable)?;
    let back = statefs::get(ep, KEYSTORED_DEVICE_KEY)
        .await
        .map_err(Failure::StateUnavailable)?;
    match open::<P, H>(sealing, &back) {
        Ok(reopened) if reopened.verifying_key() == key.verifying_key() => Ok(key),
        _ => Err(Failure::ReadBack),
    }
}

/// Restores the device key from its sealed record, or makes one when statefs proves
/// it absent.
///
/// # Errors
/// [`Failure`]; nothing is written on any failure but a storing one.
pub async fn load_or_create<P: Provider, H: HashBackend, E: Endpoint>(
    ep: &E,
) -> Result<(SigningKey<P::Sig>, Provenance, DeviceKeys), Failure> {
    let keys = device_keys::<H, E>(ep)?;
    // statefs or rngd faulted mid-call: the kernel restarts it. The record store's
    // slots keep a write the fault tore from counting, so the next try restores the
    // key that was stored, or makes the first one; no key was reported yet.
    let restarting = |failure: &Failure| {
        matches!(failure, Failure::StateUnavailable(error) | Failure::NoEntropy(error)
            if service_api::peer_restarting(error))
    };
    service_api::across_restarts(
        ep,
        || restore_or_create::<P, H, E>(ep, &keys.sealing),
        restarting,
    )
    .await
    .map(|(key, provenance)| (key, provenance, keys))
}

async fn restore_or_create<P: Provider, H: HashBackend, E: Endpoint>(
    ep: &E,
    sealing: &SealingKeys,
) -> Result<(SigningKey<P::Sig>, Provenance), Failure> {
    match statefs::get(ep, KEYSTORED_DEVICE_KEY).await {
        Ok(record) => open::<P, H>(sealing, &record).map(|key| (key, Provenance::Restored)),
        Err(ClientError::Service(ServiceError::NotFound)) => create::<P, H, E>(ep, sealing)
            .await
            .map(|key| (key, Provenance::Created)),
        Err(error) => Err(Failure::StateUnavailable(error)),
    }
}

/// Claims and reads the rollback counter.
fn claim_counter<E: Endpoint>(ep: &E) -> Result<RollbackCounter, CounterUnavailable>
where
    E::Disk: 'static,
{
    let device = ep
        .claim_disk(Capability::RollbackCounter)
        .map_err(CounterUnavailable::Claim)?;
    RollbackCounter::open(Box::new(device)).map_err(CounterUnavailable::Device)
}

/// Runs keystored until the machine stops; it signs for `purposes` (the compiled-in
/// `[[purpose]]` table).
pub async fn run<P: Provider, H: HashBackend, K: PakeBackend, E: Endpoint>(
    ep: E,
    purposes: &'static [PurposeGrant],
) where
    E::Disk: 'static,
{
    let mut keystored = match load_or_create::<P, H, E>(&ep).await {
        Ok((key, provenance, keys)) => {
            let (verifier, failed) = load_pairing::<P, H, E>(&ep, &keys.verifier).await;
            match &verifier {
                Ok(_) => ep.console(
                    &markers::KEYSTORED_PAIRING
                        .render(&[&format!("{failed}"), &format!("{MAX_FAILED_ATTEMPTS}")]),
                ),
                Err(PairingOff::NotProvisioned) => {
                    ep.console("no setup code provisioned: pairing off");
                }
                Err(why) => {
                    ep.console(&format!("pairing verifier refused ({why:?}): pairing off"));
                    ep.audit(AuditEvent {
                        subject: ServiceId::Keystored,
                        action: Action::Health,
                        verdict: Verdict::Failed,
                        reason: PAIRING_OFF_REASON,
                        detail: 0,
                    });
                }
            }
            let keystored = Keystored::<P, H, K>::new(key, Some(keys.tags), purposes)
                .with_pairing(Pairing::new(verifier.ok(), failed));
            let public = keystored.public_key().map(|k| hex(&k)).unwrap_or_default();
            ep.console(&markers::KEYSTORED_DEVICE_PUBKEY.render(&[&public]));
            ep.console(&markers::KEYSTORED_DEVICE_KEY.render(&[provenance.word()]));
            match claim_counter(&ep) {
                Ok(counter) => {
                    ep.console(&format!("rollback counter {}", counter.value()));
                    keystored.with_counter(counter)
                }
                Err(why) => {
                    ep.console(&format!(
                        "no rollback counter ({why:?}): every trust store is refused"
                    ));
                    ep.audit(AuditEvent {
                        subject: ServiceId::Keystored,
                        action: Action::Health,
                        verdict: Verdict::Failed,
                        reason: NO_COUNTER_REASON,
                        detail: 0,
                    });
                    keystored
                }
            }
        }
        Err(failure) => {
            failure.announce(&ep);
            ep.audit(AuditEvent {
                subject: ServiceId::Keystored,
                action: Action::Health,
                verdict: Verdict::Failed,
                reason: failure.code(),
                detail: 0,
            });
            Keystored::failed_closed(purposes)
        }
    };
    // rngd said it closed for good (its source failed): no pairing run can be made,
    // and keystored stops asking (each refused draw would be one more audit record).
    let mut entropy_closed = false;
    loop {
        // The next verifier run's scalar is drawn ahead, so a run's answer waits on no
        // other service but statefs.
        if keystored.pairing_mut().wants_random() && !entropy_closed {
            draw_pairing_random(&ep, keystored.pairing_mut(), &mut entropy_closed).await;
        }
        let request = ep.receive().await;
        // A prover run (this device pairs with another) draws when it is asked for.
        let proving = Frame::decode(&request.frame)
            .is_ok_and(|f| f.code == Operation::KeystoredPairingProve.code());
        if proving && keystored.pairing_mut().lacks_random() && !entropy_closed {
            draw_pairing_random(&ep, keystored.pairing_mut(), &mut entropy_closed).await;
        }
        let before = keystored.pairing_mut().failed();
        let mut handled = keystored.handle(request.sender, &request.frame);
        if let Effect::Count(count) = handled.effect {
            // The count reaches the disk before the answer that lets a prover test its
            // guess; if it cannot, the run is refused.
            let written = statefs::put(
                &ep,
                KEYSTORED_PAIRING_ATTEMPTS,
                &state_format::pairing::encode_attempts(count),
            )
            .await;
            if written.is_err() {
                // Never a count below what the disk holds (a reopen or a confirmed
                // run that could not be written), never an answer it did not record.
                keystored.pairing_mut().count_not_written(before);
            }
            if written.is_err() && handled.reply.is_ok() {
                keystored.pairing_mut().abandon();
                if let Ok(mut payload) =
                    core::mem::replace(&mut handled.reply, Err(ServiceError::Unavailable))
                {
                    payload.zeroize();
                }
                handled.audit.verdict = Verdict::Failed;
                handled.audit.reason = ServiceError::Unavailable.code();
            }
        }
        ep.audit(handled.audit);
        let _ = match &handled.reply {
            Ok(payload) => reply_ok(&ep, request.token, payload),
            Err(error) => reply_err(&ep, request.token, *error),
        };
        if let Ok(mut payload) = handled.reply {
            payload.zeroize();
        }
    }
}

/// A key for tests and tools that hold the seed themselves.
pub fn key_from_entropy<P: Provider>(entropy: &[u8]) -> Option<SigningKey<P::Sig>> {
    seed_from(entropy).and_then(|seed| SigningKey::from_seed(&seed).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::rc::Rc;
    use alloc::vec;
    use core::cell::RefCell;
    use ipc::Frame;
    use provider_api::{Bundle, SecretBytes, VerifyingKey};
    use provider_chacha::ChaCha20Poly1305;
    use provider_dalek::Dalek;
    use provider_hash::Blake2s;
    use service_api::keystored::{NOISE_BINDING_PREFIX, encode_sign};

    type P = Bundle<Dalek, ChaCha20Poly1305>;
    type Store = Keystored<P, Blake2s, provider_spake2plus::Spake2Plus>;

    static PURPOSES: &[PurposeGrant] = &[PurposeGrant {
        caller: ServiceId::Dsoftbusd,
        purpose: SigningPurpose::NoiseStaticBinding,
    }];

    fn frame(operation: Operation, payload: &[u8]) -> Vec<u8> {
        Frame::request(operation, payload)
            .encode()
            .unwrap()
            .to_vec()
    }

    fn keystored(seed: [u8; 32]) -> Store {
        let otp = SecretBytes::new([0x07; 32]);
        Store::new(
            key_from_entropy::<P>(&seed).unwrap(),
            Some(TagKey::derive::<Blake2s>(&otp)),
            PURPOSES,
        )
    }

    #[test]
    fn the_key_is_rfc8032_from_the_seed() {
        // RFC 8032 test 1 seed: the public key must be the RFC's.
        let seed = [
            0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec,
            0x2c, 0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03,
            0x1c, 0xae, 0x7f, 0x60,
        ];
        assert_eq!(
            hex(&keystored(seed).public_key().unwrap()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
    }

    #[test]
    fn a_binding_is_signed_over_the_prefix_and_the_key_only() {
        let mut keystored = keystored([3; 32]);
        let static_key = [0x42u8; 32];
        let signed = keystored.handle(
            ServiceId::Dsoftbusd,
            &frame(
                Operation::KeystoredSign,
                &encode_sign(SigningPurpose::NoiseStaticBinding, &static_key),
            ),
        );
        let signature = provider_api::Signature::from_slice(&signed.reply.unwrap()).unwrap();
        let public = VerifyingKey::<Dalek>::from_bytes(&keystored.public_key().unwrap()).unwrap();
        let message = [NOISE_BINDING_PREFIX, &static_key].concat();
        public.verify(&message, &signature).unwrap();
        assert!(public.verify(&static_key, &signature).is_err());
        assert_eq!(
            (signed.audit.verdict, signed.audit.detail),
            (Verdict::Allowed, 1),
            "the record names the purpose"
        );
    }

    #[test]
    fn no_caller_gets_a_signature_outside_its_purposes() {
        let mut keystored = keystored([4; 32]);
        let public = VerifyingKey::<Dalek>::from_bytes(&keystored.public_key().unwrap()).unwrap();
        // Every request shape dsoftbusd could send: purposes that do not exist, the
        // binding purpose with data of every length but 32, and raw messages.
        let mut attempts: Vec<(ServiceId, Vec<u8>)> = Vec::new();
        for code in [0u16, 2, 3, 0xffff] {
            attempts.push((
                ServiceId::Dsoftbusd,
                [&code.to_le_bytes()[..], &[0x42; 32]].concat(),
            ));
        }
        for len in [0, 1, 31, 33, 64, 200] {
            attempts.push((
                ServiceId::Dsoftbusd,
                encode_sign(SigningPurpose::NoiseStaticBinding, &vec![0x42; len]),
            ));
        }
        attempts.push((ServiceId::Dsoftbusd, b"a message of my choosing".to_vec()));
        attempts.push((ServiceId::Dsoftbusd, vec![1]));
        // A caller without the purpose, even with a well-formed binding request.
        for caller in [ServiceId::Selftest, ServiceId::Statefs, ServiceId::Rngd] {
            attempts.push((
                caller,
                encode_sign(SigningPurpose::NoiseStaticBinding, &[0x42; 32]),
            ));
        }
        for (caller, payload) in attempts {
            let handled = keystored.handle(caller, &frame(Operation::KeystoredSign, &payload));
            assert!(
                handled.reply.is_err(),
                "{caller} got a signature for {payload:?}"
            );
            assert_ne!(handled.audit.verdict, Verdict::Allowed);
        }
        // And whatever dsoftbusd is given verifies only over a binding message.
        let ok = keystored.handle(
            ServiceId::Dsoftbusd,
            &frame(
                Operation::KeystoredSign,
                &encode_sign(SigningPurpose::NoiseStaticBinding, &[9; 32]),
            ),
        );
        let signature = provider_api::Signature::from_slice(&ok.reply.unwrap()).unwrap();
        assert!(public.verify(&[9; 32], &signature).is_err());
        assert!(
            public
                .verify(&[NOISE_BINDING_PREFIX, &[9; 32]].concat(), &signature)
                .is_ok()
        );
    }

    #[test]
    fn refusals_have_their_own_errors_and_records() {
        let mut keystored = keystored([5; 32]);
        let denied = keystored.handle(
            ServiceId::Selftest,
            &frame(
                Operation::KeystoredSign,
                &encode_sign(SigningPurpose::NoiseStaticBinding, &[1; 32]),
            ),
        );
        assert_eq!(denied.reply, Err(ServiceError::PurposeDenied));
        assert_eq!(
            (denied.audit.verdict, denied.audit.reason),
            (Verdict::Denied, ServiceError::PurposeDenied.code())
        );
        for payload in [&b""[..], b"please"] {
            let handled = keystored.handle(
                ServiceId::Selftest,
                &frame(Operation::KeystoredExportPrivate, payload),
            );
            assert_eq!(handled.reply, Err(ServiceError::ExportForbidden));
            assert_eq!(handled.audit.verdict, Verdict::Denied);
        }
        let mut closed = Store::failed_closed(PURPOSES);
        let export = closed.handle(
            ServiceId::Selftest,
            &frame(Operation::KeystoredExportPrivate, b""),
        );
        assert_eq!(
            export.reply,
            Err(ServiceError::ExportForbidden),
            "its own error even without a key"
        );
        let pubkey = closed.handle(
            ServiceId::Selftest,
            &frame(Operation::KeystoredGetPubkey, b""),
        );
        assert_eq!(pubkey.reply, Err(ServiceError::NoKey));
        let bad = keystored.handle(ServiceId::Dsoftbusd, &[1, 1]);
        assert_eq!(bad.reply, Err(ServiceError::MalformedRequest));
        let good = keystored.handle(
            ServiceId::Dsoftbusd,
            &frame(Operation::KeystoredGetPubkey, b""),
        );
        assert_eq!(good.reply.map(|k| k.len()), Ok(32), "still serving");
    }

    /// A rollback counter at `value`, and a handle on its disk for the test.
    fn counter_at(value: u32) -> (RollbackCounter, Shared) {
        let disk = state_format::memory::MemoryDisk::from_bytes(
            rollback_counter::sector_of(value).unwrap().to_vec(),
            false,
        );
        let shared = Shared(Rc::new(RefCell::new(disk)));
        let device = Box::new(rollback_counter::SetOnly::new(shared.clone()));
        (RollbackCounter::open(device).unwrap(), shared)
    }

    /// The counter disk, shared between keystored and the test.
    #[derive(Clone)]
    struct Shared(Rc<RefCell<state_format::memory::MemoryDisk>>);

    impl Shared {
        fn value(&self) -> u32 {
            rollback_counter::read(&mut *self.0.borrow_mut()).unwrap()
        }
    }

    impl RawBlockDevice for Shared {
        fn sectors(&self) -> u64 {
            self.0.borrow().sectors()
        }
        fn readonly(&self) -> bool {
            false
        }
        fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), ipc::DeviceError> {
            self.0.borrow_mut().read(sector, buf)
        }
        fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), ipc::DeviceError> {
            self.0.borrow_mut().write(sector, buf)
        }
        fn flush(&mut self) -> Result<(), ipc::DeviceError> {
            Ok(())
        }
    }

    fn verify(keystored: &mut Store, store: &[u8]) -> Handled {
        keystored.handle(
            ServiceId::Dsoftbusd,
            &frame(Operation::KeystoredVerifyTrustStore, store),
        )
    }

    fn tags(fill: u8) -> TagKey {
        TagKey::derive::<Blake2s>(&SecretBytes::new([fill; 32]))
    }

    #[test]
    fn trust_stores_verify_only_with_this_devices_tag() {
        let mut keystored = keystored([6; 32]).with_counter(counter_at(0).0);
        let mine = trust::encode::<Blake2s>(&tags(0x07), 0, &[[1; 32]]);
        let theirs = trust::encode::<Blake2s>(&tags(0x08), 0, &[[1; 32]]);
        assert_eq!(verify(&mut keystored, &mine).reply, Ok(Vec::new()));
        assert_eq!(
            verify(&mut keystored, &theirs).reply,
            Err(ServiceError::AuthenticationFailed)
        );
        assert_eq!(
            verify(&mut keystored, &mine[..20]).reply,
            Err(ServiceError::MalformedRequest)
        );
        let sha = trust::encode::<provider_hash::Sha256>(
            &TagKey::derive::<provider_hash::Sha256>(&SecretBytes::new([0x07; 32])),
            0,
            &[],
        );
        assert_eq!(
            verify(&mut keystored, &sha).reply,
            Err(ServiceError::OtherAlgorithm)
        );
    }

    #[test]
    fn a_store_older_than_the_counter_is_refused_and_a_newer_one_advances_it() {
        let (counter, disk) = counter_at(3);
        let mut device = keystored([6; 32]).with_counter(counter);
        let store = |version| trust::encode::<Blake2s>(&tags(0x07), version, &[[1; 32]]);
        for older in [0, 2] {
            let refused = verify(&mut device, &store(older));
            assert_eq!(refused.reply, Err(ServiceError::RolledBack));
            assert_eq!(
                (
                    refused.audit.verdict,
                    refused.audit.reason,
                    refused.audit.detail
                ),
                (Verdict::Rejected, ServiceError::RolledBack.code(), older),
                "audited with the store's version"
            );
        }
        assert_eq!(disk.value(), 3, "a refusal writes nothing");
        assert_eq!(verify(&mut device, &store(3)).reply, Ok(Vec::new()));
        assert_eq!(disk.value(), 3);
        // The factory wrote version 5 and stopped before advancing the counter.
        assert_eq!(verify(&mut device, &store(5)).reply, Ok(Vec::new()));
        assert_eq!(disk.value(), 5, "advanced on the device");
        assert_eq!(
            verify(&mut device, &store(4)).reply,
            Err(ServiceError::RolledBack),
            "and the version before it is now refused"
        );
        // No store at all: refused once the counter moved (the store was removed).
        assert_eq!(
            verify(&mut device, &[]).reply,
            Err(ServiceError::RolledBack)
        );
        let mut fresh = keystored([6; 32]).with_counter(counter_at(0).0);
        assert_eq!(
            verify(&mut fresh, &[]).reply,
            Ok(Vec::new()),
            "a fresh device"
        );
        // Without a counter no store is admitted.
        let mut without = keystored([6; 32]);
        assert_eq!(
            verify(&mut without, &store(9)).reply,
            Err(ServiceError::Unavailable)
        );
    }

    // Pairing: keystored is the verifier, a prover built here is the peer.
    mod pairing_runs {
        use super::*;
        use provider_api::pake::{PAKE_RANDOM_LEN, PakeBackend, PakeContext};
        use provider_spake2plus::Spake2Plus;
        use state_format::pairing::{ITERATIONS, SetupCode};

        const CONTEXT: &[u8] = b"test context";

        fn verifier(code: u32) -> Verifier {
            Verifier::register::<Spake2Plus>(&SetupCode::new(code).unwrap(), [5; 16], ITERATIONS)
                .unwrap()
        }

        fn provisioned(failed: u16) -> Store {
            let (counter, _) = counter_at(3);
            let mut store = keystored([1; 32])
                .with_counter(counter)
                .with_pairing(Pairing::new(Some(verifier(20_202_021)), failed));
            store
                .pairing_mut()
                .give_random(SecretBytes::new([9; PAKE_RANDOM_LEN]));
            store
        }

        fn call(store: &mut Store, operation: Operation, payload: &[u8]) -> Handled {
            store.handle(ServiceId::Dsoftbusd, &frame(operation, payload))
        }

        /// One run with `code`: the outcome of FINISH (or of START when it failed).
        fn run(store: &mut Store, code: u32) -> (Handled, Option<Vec<u8>>) {
            let status = service_api::keystored::PairingStatus::decode(
                call(store, Operation::KeystoredPairingStatus, &[])
                    .reply
                    .as_ref()
                    .unwrap(),
            )
            .unwrap();
            let output = SetupCode::new(code)
                .unwrap()
                .pbkdf_output::<Spake2Plus>(&status.salt, status.iterations);
            let context = PakeContext {
                context: CONTEXT,
                prover_id: &[],
                verifier_id: &[],
            };
            let (prover, share_p) =
                Spake2Plus::prover_start(&output, &context, &SecretBytes::new([3; 64])).unwrap();
            let mut payload = share_p.to_vec();
            payload.extend_from_slice(CONTEXT);
            let started = call(store, Operation::KeystoredPairingStart, &payload);
            store
                .pairing_mut()
                .give_random(SecretBytes::new([9; PAKE_RANDOM_LEN]));
            let Ok(reply) = &started.reply else {
                return (started, None);
            };
            match Spake2Plus::prover_finish(prover, &reply[..65], &reply[65..]) {
                Ok(proved) => {
                    let key = proved.key.expose_secret().to_vec();
                    (
                        call(store, Operation::KeystoredPairingFinish, &proved.confirm),
                        Some(key),
                    )
                }
                // A wrong code: the prover sends no confirmation; it sends garbage.
                Err(_) => (
                    call(store, Operation::KeystoredPairingFinish, &[0; 32]),
                    None,
                ),
            }
        }

        /// `PAIRING_PROVE`'s payload: the verifier's parameters and `digits`.
        fn prove_payload(iterations: u32, digits: &[u8]) -> Vec<u8> {
            let mut payload = iterations.to_be_bytes().to_vec();
            payload.extend_from_slice(&[5; 16]);
            payload.extend_from_slice(digits);
            payload.extend_from_slice(CONTEXT);
            payload
        }

        /// This device as the prover against another keystored as the verifier: the
        /// right code gives both one key (and the verifier's count back); a wrong one
        /// gets no key from the prover (its confirmation check fails) and stays
        /// counted on the verifier.
        #[test]
        fn as_the_prover_the_right_code_gives_both_devices_one_key_and_a_wrong_one_none() {
            for (digits, right) in [(&b"20202021"[..], true), (&b"20202022"[..], false)] {
                let mut verifier = provisioned(0);
                let mut prover = keystored([2; 32]);
                prover
                    .pairing_mut()
                    .give_random(SecretBytes::new([4; PAKE_RANDOM_LEN]));
                let share = call(
                    &mut prover,
                    Operation::KeystoredPairingProve,
                    &prove_payload(ITERATIONS, digits),
                )
                .reply
                .expect("the prover's share");
                assert_eq!(share.len(), 65);
                let answer = call(
                    &mut verifier,
                    Operation::KeystoredPairingStart,
                    &[&share[..], CONTEXT].concat(),
                )
                .reply
                .expect("the verifier's answer");
                let finished = call(&mut prover, Operation::KeystoredPairingProveFinish, &answer);
                if !right {
                    assert_eq!(finished.reply, Err(ServiceError::AuthenticationFailed));
                    assert_eq!(verifier.pairing_mut().failed(), 1);
                    continue;
                }
                let finished = finished.reply.expect("confirmP and the key");
                let key = call(
                    &mut verifier,
                    Operation::KeystoredPairingFinish,
                    &finished[..32],
                )
                .reply
                .expect("the verifier's key");
                assert_eq!(key, finished[32..].to_vec());
                assert_eq!(verifier.pairing_mut().failed(), 0);
                // The run is over: a second finish has nothing to finish.
                assert_eq!(
                    call(&mut prover, Operation::KeystoredPairingProveFinish, &answer).reply,
                    Err(ServiceError::NoSession)
                );
            }
        }

        #[test]
        fn the_prover_refuses_counts_out_of_bounds_codes_that_are_none_and_no_entropy() {
            let mut prover = keystored([2; 32]);
            assert_eq!(
                call(
                    &mut prover,
                    Operation::KeystoredPairingProve,
                    &prove_payload(ITERATIONS, b"20202021")
                )
                .reply,
                Err(ServiceError::Unavailable),
                "no entropy drawn"
            );
            for (iterations, digits) in [
                (999, &b"20202021"[..]),
                (100_001, b"20202021"),
                (u32::MAX, b"20202021"),
                (ITERATIONS, b"12345678"),
                (ITERATIONS, b"2020202x"),
                (ITERATIONS, b"2020202"),
            ] {
                prover
                    .pairing_mut()
                    .give_random(SecretBytes::new([4; PAKE_RANDOM_LEN]));
                let payload = prove_payload(iterations, digits);
                assert_eq!(
                    call(&mut prover, Operation::KeystoredPairingProve, &payload).reply,
                    Err(ServiceError::MalformedRequest),
                    "{iterations} {digits:?}"
                );
            }
            assert_eq!(
                call(
                    &mut prover,
                    Operation::KeystoredPairingProveFinish,
                    &[0; 97]
                )
                .reply,
                Err(ServiceError::NoSession)
            );
        }

        #[test]
        fn the_right_code_gives_both_sides_one_key_and_is_not_counted() {
            let mut store = provisioned(2);
            let (finished, key) = run(&mut store, 20_202_021);
            assert_eq!(finished.reply.as_ref().ok(), key.as_ref());
            assert_eq!(
                finished.effect,
                Effect::Count(2),
                "the run's count taken back"
            );
            assert_eq!(store.pairing_mut().failed(), 2);
            assert_eq!(
                call(&mut store, Operation::KeystoredPairingFinish, &[0; 32]).reply,
                Err(ServiceError::NoSession),
                "a run finishes once"
            );
        }

        #[test]
        fn a_wrong_code_is_counted_before_the_answer_and_answered_alike() {
            let mut store = provisioned(0);
            let (finished, key) = run(&mut store, 20_202_022);
            assert!(
                key.is_none(),
                "the prover refused the device's confirmation"
            );
            assert_eq!(finished.reply, Err(ServiceError::AuthenticationFailed));
            assert_eq!(store.pairing_mut().failed(), 1);
            // START's own effect was the raised count, written before its answer.
            let status = call(&mut store, Operation::KeystoredPairingStatus, &[]);
            assert_eq!(status.audit.detail, 1);
            // Garbage as the prover's share: refused, and counted all the same.
            let mut payload = vec![4u8; 65];
            payload.extend_from_slice(CONTEXT);
            let garbage = call(&mut store, Operation::KeystoredPairingStart, &payload);
            assert_eq!(garbage.reply, Err(ServiceError::AuthenticationFailed));
            assert_eq!(garbage.effect, Effect::Count(2));
            for short in [&[][..], &[4u8; 64][..]] {
                let refused = call(&mut store, Operation::KeystoredPairingStart, short);
                assert_eq!(refused.reply, Err(ServiceError::MalformedRequest));
                assert_eq!(refused.effect, Effect::None);
            }
        }

        #[test]
        fn the_limit_closes_pairing_even_for_the_right_code_until_reopened() {
            let mut store = provisioned(MAX_FAILED_ATTEMPTS - 1);
            let (finished, _) = run(&mut store, 11_223_344);
            assert_eq!(finished.reply, Err(ServiceError::AuthenticationFailed));
            let (closed, key) = run(&mut store, 20_202_021);
            assert!(key.is_none());
            assert_eq!(closed.reply, Err(ServiceError::Closed));
            assert_eq!(
                closed.effect,
                Effect::None,
                "a refused start counts nothing"
            );
            let reopened = call(&mut store, Operation::KeystoredPairingReopen, &[]);
            assert_eq!(reopened.effect, Effect::Count(0));
            let (finished, key) = run(&mut store, 20_202_021);
            assert_eq!(finished.reply.ok(), key);
        }

        #[test]
        fn reopens_are_bounded_per_boot_and_a_count_not_written_is_put_back() {
            let mut store = provisioned(MAX_FAILED_ATTEMPTS);
            for _ in 0..pairing::REOPENS_PER_BOOT {
                let reopened = call(&mut store, Operation::KeystoredPairingReopen, &[]);
                assert_eq!(reopened.effect, Effect::Count(0));
                // A write that failed puts the count back where the disk has it.
                store.pairing_mut().count_not_written(MAX_FAILED_ATTEMPTS);
                assert_eq!(store.pairing_mut().failed(), MAX_FAILED_ATTEMPTS);
            }
            let spent = call(&mut store, Operation::KeystoredPairingReopen, &[]);
            assert_eq!(spent.reply, Err(ServiceError::Denied));
            assert_eq!(spent.effect, Effect::None);
            assert_eq!(store.pairing_mut().failed(), MAX_FAILED_ATTEMPTS);
            let mut unprovisioned = keystored([1; 32]);
            assert_eq!(
                call(&mut unprovisioned, Operation::KeystoredPairingReopen, &[]).reply,
                Err(ServiceError::NotFound)
            );
        }

        #[test]
        fn without_a_verifier_or_entropy_no_run_starts() {
            let mut store = keystored([1; 32]);
            let status = call(&mut store, Operation::KeystoredPairingStatus, &[]);
            let status =
                service_api::keystored::PairingStatus::decode(status.reply.as_ref().unwrap())
                    .unwrap();
            assert!(!status.provisioned && !status.open());
            let payload = [4u8; 65];
            assert_eq!(
                call(&mut store, Operation::KeystoredPairingStart, &payload).reply,
                Err(ServiceError::NotFound)
            );
            let mut store = provisioned(0);
            let _ = call(&mut store, Operation::KeystoredPairingStart, &payload);
            // The draw was used and not replaced.
            assert_eq!(
                call(&mut store, Operation::KeystoredPairingStart, &payload).reply,
                Err(ServiceError::Unavailable)
            );
        }

        #[test]
        fn tagged_stores_are_one_above_the_counter_and_hold_only_valid_keys() {
            let mut store = provisioned(0);
            let peer = key_from_entropy::<P>(&[8; 32])
                .unwrap()
                .verifying_key()
                .to_bytes();
            let tagged = call(&mut store, Operation::KeystoredTagTrustStore, &peer);
            let record = tagged.reply.unwrap();
            let decoded = trust::decode::<Blake2s>(&tags(0x07), &record).unwrap();
            assert_eq!(decoded.rollback_version, 4);
            assert_eq!(decoded.peers, vec![peer]);
            assert!(verify(&mut store, &record).reply.is_ok(), "and it verifies");
            let empty = call(&mut store, Operation::KeystoredTagTrustStore, &[]);
            assert_eq!(
                trust::decode::<Blake2s>(&tags(0x07), &empty.reply.unwrap())
                    .unwrap()
                    .rollback_version,
                5,
                "the counter moved to the store verified"
            );
            let mut small_order = [0u8; 32];
            small_order[0] = 1;
            assert_eq!(
                call(&mut store, Operation::KeystoredTagTrustStore, &small_order).reply,
                Err(ServiceError::InvalidKey)
            );
            assert_eq!(
                call(&mut store, Operation::KeystoredTagTrustStore, &[0; 31]).reply,
                Err(ServiceError::MalformedRequest)
            );
            assert_eq!(
                call(&mut store, Operation::KeystoredTagTrustStore, &[0; 32 * 17]).reply,
                Err(ServiceError::Full)
            );
        }

        #[test]
        fn a_pairing_confirmation_is_signed_only_for_the_run_just_confirmed_in_its_role_once() {
            static CONFIRMING: &[PurposeGrant] = &[PurposeGrant {
                caller: ServiceId::Dsoftbusd,
                purpose: SigningPurpose::PairingConfirm,
            }];
            let sign = |store: &mut Store, data: &[u8]| {
                let request = encode_sign(SigningPurpose::PairingConfirm, data);
                call(store, Operation::KeystoredSign, &request).reply
            };
            let store = |seed: [u8; 32], verifier: Option<Verifier>| {
                let mut store = Store::new(key_from_entropy::<P>(&seed).unwrap(), None, CONFIRMING)
                    .with_pairing(Pairing::new(verifier, 0));
                store
                    .pairing_mut()
                    .give_random(SecretBytes::new([seed[0]; PAKE_RANDOM_LEN]));
                store
            };
            // One run of `proving` against `verifying`, both confirmed: its hash.
            let confirmed_run = |verifying: &mut Store, proving: &mut Store| {
                let share = call(
                    proving,
                    Operation::KeystoredPairingProve,
                    &prove_payload(ITERATIONS, b"20202021"),
                )
                .reply
                .unwrap();
                let answer = call(
                    verifying,
                    Operation::KeystoredPairingStart,
                    &[&share[..], CONTEXT].concat(),
                )
                .reply
                .unwrap();
                let finished = call(proving, Operation::KeystoredPairingProveFinish, &answer)
                    .reply
                    .unwrap();
                call(
                    verifying,
                    Operation::KeystoredPairingFinish,
                    &finished[..32],
                )
                .reply
                .unwrap();
                service_api::keystored::transcript_hash::<Blake2s>(
                    &share[..].try_into().unwrap(),
                    &answer[..65].try_into().unwrap(),
                    &answer[65..].try_into().unwrap(),
                    &finished[..32].try_into().unwrap(),
                )
            };
            let mut verifying = store([1; 32], Some(verifier(20_202_021)));
            let mut proving = store([2; 32], None);
            // No run: nothing to confirm, whatever is asked.
            assert_eq!(sign(&mut proving, &[1; 33]), Err(ServiceError::NoSession));
            let th = confirmed_run(&mut verifying, &mut proving);
            let as_role = |role: u8| [&[role][..], &th].concat();
            // The verifier signs its own role over the run's hash, and only once.
            let signature = sign(&mut verifying, &as_role(2)).expect("the run's confirmation");
            let public =
                VerifyingKey::<Dalek>::from_bytes(&verifying.public_key().unwrap()).unwrap();
            let message = purpose_message(SigningPurpose::PairingConfirm, &as_role(2)).unwrap();
            public
                .verify(
                    &message,
                    &provider_api::Signature::from_slice(&signature).unwrap(),
                )
                .unwrap();
            assert_eq!(
                sign(&mut verifying, &as_role(2)),
                Err(ServiceError::NoSession)
            );
            // The prover: the other role is refused, and spends the run.
            assert_eq!(
                sign(&mut proving, &as_role(2)),
                Err(ServiceError::NoSession)
            );
            assert_eq!(
                sign(&mut proving, &as_role(1)),
                Err(ServiceError::NoSession)
            );
            // Another hash is refused too (a fresh run of the prover, confirmed).
            let mut verifying = store([1; 32], Some(verifier(20_202_021)));
            let mut proving = store([2; 32], None);
            confirmed_run(&mut verifying, &mut proving);
            assert_eq!(sign(&mut proving, &[1; 33]), Err(ServiceError::NoSession));
        }

        #[test]
        fn pairing_confirmations_are_signed_only_in_their_shape() {
            let message = purpose_message(SigningPurpose::PairingConfirm, &[2; 33]).unwrap();
            assert!(message.starts_with(b"dsoftbus/v1 pairing confirm\0"));
            assert_eq!(message.len(), 28 + 33);
            for bad in [
                &[3u8; 33][..],
                &[2u8; 32][..],
                &[2u8; 34][..],
                &[0u8; 33][..],
            ] {
                assert_eq!(
                    purpose_message(SigningPurpose::PairingConfirm, bad).err(),
                    Some(ServiceError::MalformedRequest)
                );
            }
        }
    }
}
