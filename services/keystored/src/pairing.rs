//! keystored as the verifier of pairing (SPAKE2+, `docs/protocol.md` section 11).
//!
//! The verifier record (`w0`, `L`) is sealed on the state disk by the factory and opened
//! here at start; it never leaves keystored. dsoftbusd, which faces the network, only
//! carries the messages: a bug there can neither read the record nor get around the
//! attempt count, which keystored keeps on the disk and raises *before* it answers a
//! run (the answer's confirmation is what lets a prover test its guess). A run that
//! succeeds takes its count back.
//!
//! When this device pairs with another (it knows the other's setup code), keystored is
//! the prover too ([`Pairing::prove`], [`Pairing::prove_finish`]): the code comes in,
//! the password hash and the run's secrets stay here, and only the share, the
//! confirmation and the shared key go back, the key only once the other device proved
//! it holds the verifier for that code.
//!
//! Everything here is synchronous and pure, so that the tests drive it without a
//! system: what must reach the disk (the new count) comes out in [`Effect`], and the
//! service loop writes it before it replies.

use alloc::vec::Vec;

use provider_api::pake::{
    PAKE_CONFIRM_LEN, PAKE_KEY_LEN, PAKE_RANDOM_LEN, PAKE_SHARE_LEN, PakeBackend, PakeContext,
    verifier_answer,
};
use provider_api::{HashBackend, SecretBytes};
use service_api::ServiceError;
use service_api::keystored::{
    MAX_PAKE_CONTEXT, PAIRING_ROLE_PROVER, PAIRING_ROLE_VERIFIER, PROVE_HEADER_LEN, PairingStatus,
    transcript_hash,
};
use state_format::pairing::{
    MAX_FAILED_ATTEMPTS, MAX_ITERATIONS, MIN_ITERATIONS, SALT_LEN, SetupCode, Verifier,
};

/// What the service loop must do before it replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Nothing.
    None,
    /// Write this failed-attempt count (and, for a run that starts, refuse it if the
    /// write fails).
    Count(u16),
}

/// A run's public messages, as far as it got.
#[derive(Clone, Copy)]
struct Shares {
    share_p: [u8; PAKE_SHARE_LEN],
    share_v: [u8; PAKE_SHARE_LEN],
    confirm_v: [u8; PAKE_CONFIRM_LEN],
}

/// The run this keystored just confirmed, in the role it played: the one pairing
/// confirmation it will sign ([`Pairing::take_confirmed`]).
#[derive(Clone, Copy)]
pub struct Confirmed {
    role: u8,
    shares: Shares,
    confirm_p: [u8; PAKE_CONFIRM_LEN],
}

impl Confirmed {
    /// What a `SIGN` for `pairing-confirm` must ask for: the role byte and the run's
    /// transcript hash (`docs/protocol.md` section 11.3).
    pub fn signed_data<H: HashBackend>(&self) -> [u8; 33] {
        let Shares {
            share_p,
            share_v,
            confirm_v,
        } = &self.shares;
        let mut data = [0u8; 33];
        data[0] = self.role;
        data[1..].copy_from_slice(&transcript_hash::<H>(
            share_p,
            share_v,
            confirm_v,
            &self.confirm_p,
        ));
        data
    }
}

/// The verifier's state.
pub struct Pairing<K: PakeBackend> {
    verifier: Option<Verifier>,
    failed: u16,
    /// The run waiting for its confirmation (one at a time: a new run replaces it).
    pending: Option<(K::VerifierConfirming, Shares)>,
    /// This device's run as the prover, waiting for the other device's answer (one at
    /// a time: a new run replaces it), and its share.
    proving: Option<(K::Prover, [u8; PAKE_SHARE_LEN])>,
    /// The run that confirmed last, until its one confirmation is signed or another
    /// run starts: a caller (dsoftbusd) gets a `pairing-confirm` signature only over a
    /// run keystored itself ran and confirmed, once, in the role it played.
    confirmed: Option<Confirmed>,
    /// Entropy for the next run's scalar, drawn ahead by the service loop.
    random: Option<SecretBytes<PAKE_RANDOM_LEN>>,
    /// `PAIRING_REOPEN`s left this boot: keystored takes dsoftbusd's word that a
    /// trusted peer asked, so a compromised dsoftbusd could otherwise reset the count
    /// for ever; with this budget it gets at most `(1 + REOPENS_PER_BOOT) x 20`
    /// guesses per boot of the device.
    reopens_left: u8,
}

/// How many times per boot the failed-attempt count may be set back to 0.
pub const REOPENS_PER_BOOT: u8 = 3;

impl<K: PakeBackend> Pairing<K> {
    /// Pairing with `verifier` (none: not provisioned) and `failed` attempts counted.
    pub fn new(verifier: Option<Verifier>, failed: u16) -> Self {
        Self {
            verifier,
            failed,
            pending: None,
            proving: None,
            confirmed: None,
            random: None,
            reopens_left: REOPENS_PER_BOOT,
        }
    }

    /// Whether a draw of entropy is wanted ahead for the next verifier run (a prover
    /// run, rare and started by this device, draws when it is asked for:
    /// [`Pairing::lacks_random`]).
    pub fn wants_random(&self) -> bool {
        self.verifier.is_some() && self.random.is_none()
    }

    /// Whether no entropy is held for a run.
    pub fn lacks_random(&self) -> bool {
        self.random.is_none()
    }

    /// Entropy for the next run.
    pub fn give_random(&mut self, random: SecretBytes<PAKE_RANDOM_LEN>) {
        self.random = Some(random);
    }

    /// The run that confirmed last, taken: the one `pairing-confirm` signature it
    /// allows (a `SIGN` that asks for anything else spends it too).
    pub fn take_confirmed(&mut self) -> Option<Confirmed> {
        self.confirmed.take()
    }

    /// Failed attempts counted.
    pub fn failed(&self) -> u16 {
        self.failed
    }

    /// `PAIRING_STATUS`.
    pub fn status(&self) -> PairingStatus {
        PairingStatus {
            provisioned: self.verifier.is_some(),
            failed: self.failed,
            limit: MAX_FAILED_ATTEMPTS,
            iterations: self.verifier.as_ref().map_or(0, |v| v.iterations),
            salt: self.verifier.as_ref().map_or([0; 16], |v| v.salt),
        }
    }

    /// `PAIRING_START`: the reply (`shareV || confirmV`) and the count to write first.
    ///
    /// # Errors
    /// `NotFound` (no verifier), `Closed` (the limit reached), `MalformedRequest`,
    /// `Unavailable` (no entropy drawn), `AuthenticationFailed` (a share the PAKE
    /// refuses: counted like any failed run).
    pub fn start(&mut self, payload: &[u8]) -> (Result<Vec<u8>, ServiceError>, Effect) {
        // A new run ends the one before, whether or not it finished.
        self.pending = None;
        self.confirmed = None;
        let Some(verifier) = &self.verifier else {
            return (Err(ServiceError::NotFound), Effect::None);
        };
        if self.failed >= MAX_FAILED_ATTEMPTS {
            return (Err(ServiceError::Closed), Effect::None);
        }
        let Some((share_p, context)) = payload.split_first_chunk::<PAKE_SHARE_LEN>() else {
            return (Err(ServiceError::MalformedRequest), Effect::None);
        };
        if context.len() > MAX_PAKE_CONTEXT {
            return (Err(ServiceError::MalformedRequest), Effect::None);
        }
        let Some(random) = self.random.take() else {
            return (Err(ServiceError::Unavailable), Effect::None);
        };
        self.failed = self.failed.saturating_add(1);
        let counted = Effect::Count(self.failed);
        let context = PakeContext {
            context,
            prover_id: &[],
            verifier_id: &[],
        };
        match verifier_answer::<K>(&verifier.record, &context, &random, share_p) {
            Ok(reply) => {
                let shares = Shares {
                    share_p: *share_p,
                    share_v: reply.share,
                    confirm_v: reply.confirm,
                };
                self.pending = Some((reply.state, shares));
                let mut out = Vec::with_capacity(PAKE_SHARE_LEN + PAKE_CONFIRM_LEN);
                out.extend_from_slice(&reply.share);
                out.extend_from_slice(&reply.confirm);
                (Ok(out), counted)
            }
            Err(_) => (Err(ServiceError::AuthenticationFailed), counted),
        }
    }

    /// The run started cannot go on: its count could not be written.
    pub fn abandon(&mut self) {
        self.pending = None;
    }

    /// `PAIRING_FINISH`: the shared key, and the count to write (one less: the run
    /// that succeeded was no failure).
    ///
    /// # Errors
    /// `NoSession` (no run started), `AuthenticationFailed` (the confirmation does not
    /// match, or is not 32 bytes).
    pub fn finish(&mut self, confirm_p: &[u8]) -> (Result<Vec<u8>, ServiceError>, Effect) {
        let Some((pending, shares)) = self.pending.take() else {
            return (Err(ServiceError::NoSession), Effect::None);
        };
        match K::verifier_finish(pending, confirm_p) {
            Ok(key) => {
                self.confirmed = confirm_p.try_into().ok().map(|confirm_p| Confirmed {
                    role: PAIRING_ROLE_VERIFIER,
                    shares,
                    confirm_p,
                });
                self.failed = self.failed.saturating_sub(1);
                (Ok(key.expose_secret().to_vec()), Effect::Count(self.failed))
            }
            Err(_) => (Err(ServiceError::AuthenticationFailed), Effect::None),
        }
    }

    /// `PAIRING_REOPEN`: the count back to 0, at most [`REOPENS_PER_BOOT`] times.
    ///
    /// # Errors
    /// `Denied` once this boot's reopens are spent, `NotFound` without a verifier.
    pub fn reopen(&mut self) -> Result<Effect, ServiceError> {
        if self.verifier.is_none() {
            return Err(ServiceError::NotFound);
        }
        if self.reopens_left == 0 {
            return Err(ServiceError::Denied);
        }
        self.reopens_left -= 1;
        self.failed = 0;
        Ok(Effect::Count(0))
    }

    /// `PAIRING_PROVE`: this device's share for a run as the prover with the other
    /// device's password-hash parameters and setup code (payload: iterations, u32
    /// big-endian as its pair reply gave them; salt, 16 bytes; the code's 8 ASCII
    /// digits; the PAKE context).
    ///
    /// # Errors
    /// `MalformedRequest` (the shape, a count outside 1,000 to 100,000, a code that is
    /// not one), `Unavailable` (no entropy drawn).
    pub fn prove(&mut self, payload: &[u8]) -> Result<Vec<u8>, ServiceError> {
        self.proving = None;
        self.confirmed = None;
        let Some((header, context)) = payload.split_first_chunk::<PROVE_HEADER_LEN>() else {
            return Err(ServiceError::MalformedRequest);
        };
        let (iterations, rest) = header.split_at(4);
        let (salt, digits) = rest.split_at(SALT_LEN);
        let iterations = u32::from_be_bytes(iterations.try_into().unwrap_or_default());
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations)
            || context.len() > MAX_PAKE_CONTEXT
        {
            return Err(ServiceError::MalformedRequest);
        }
        let code = core::str::from_utf8(digits)
            .ok()
            .and_then(|text| SetupCode::parse(text).ok())
            .ok_or(ServiceError::MalformedRequest)?;
        let salt: [u8; SALT_LEN] = salt.try_into().unwrap_or_default();
        let Some(random) = self.random.take() else {
            return Err(ServiceError::Unavailable);
        };
        let output = code.pbkdf_output::<K>(&salt, iterations);
        drop(code);
        let context = PakeContext {
            context,
            prover_id: &[],
            verifier_id: &[],
        };
        let (state, share) =
            K::prover_start(&output, &context, &random).map_err(|_| ServiceError::InvalidKey)?;
        self.proving = Some((state, share));
        Ok(share.to_vec())
    }

    /// `PAIRING_PROVE_FINISH`: the other device's share and confirmation (97 bytes);
    /// `confirmP || K_shared` (64 bytes) once its confirmation matched. Either way the
    /// run is over.
    ///
    /// # Errors
    /// `NoSession` (no run), `AuthenticationFailed` (a share the PAKE refuses, or a
    /// confirmation that does not match: a wrong code, or not the device whose code it
    /// is), `MalformedRequest` (the length).
    pub fn prove_finish(&mut self, payload: &[u8]) -> Result<Vec<u8>, ServiceError> {
        let Some((state, share_p)) = self.proving.take() else {
            return Err(ServiceError::NoSession);
        };
        let Some((share_v, rest)) = payload.split_first_chunk::<PAKE_SHARE_LEN>() else {
            return Err(ServiceError::MalformedRequest);
        };
        let Ok(confirm_v) = <&[u8; PAKE_CONFIRM_LEN]>::try_from(rest) else {
            return Err(ServiceError::MalformedRequest);
        };
        let result = K::prover_finish(state, share_v, confirm_v)
            .map_err(|_| ServiceError::AuthenticationFailed)?;
        self.confirmed = Some(Confirmed {
            role: PAIRING_ROLE_PROVER,
            shares: Shares {
                share_p,
                share_v: *share_v,
                confirm_v: *confirm_v,
            },
            confirm_p: result.confirm,
        });
        let mut out = Vec::with_capacity(PAKE_CONFIRM_LEN + PAKE_KEY_LEN);
        out.extend_from_slice(&result.confirm);
        out.extend_from_slice(result.key.expose_secret());
        Ok(out)
    }

    /// The count a write could not store is put back (never below what the disk
    /// holds): the service loop calls this with the count before the request.
    pub fn count_not_written(&mut self, before: u16) {
        self.failed = self.failed.max(before);
    }
}
