//! keystored as the verifier of pairing (SPAKE2+, `docs/protocol.md` section 11).
//!
//! The verifier record (`w0`, `L`) is sealed on the state disk by the factory and opened
//! here at start; it never leaves keystored. dsoftbusd, which faces the network, only
//! carries the messages: a bug there can neither read the record nor get around the
//! attempt count, which keystored keeps on the disk and raises *before* it answers a
//! run (the answer's confirmation is what lets a prover test its guess). A run that
//! succeeds takes its count back.
//!
//! Everything here is synchronous and pure, so that the tests drive it without a
//! system: what must reach the disk (the new count) comes out in [`Effect`], and the
//! service loop writes it before it replies.

use alloc::vec::Vec;

use provider_api::SecretBytes;
use provider_api::pake::{
    PAKE_CONFIRM_LEN, PAKE_RANDOM_LEN, PAKE_SHARE_LEN, PakeBackend, PakeContext, verifier_answer,
};
use service_api::ServiceError;
use service_api::keystored::{MAX_PAKE_CONTEXT, PairingStatus};
use state_format::pairing::{MAX_FAILED_ATTEMPTS, Verifier};

/// What the service loop must do before it replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Nothing.
    None,
    /// Write this failed-attempt count (and, for a run that starts, refuse it if the
    /// write fails).
    Count(u16),
}

/// The verifier's state.
pub struct Pairing<K: PakeBackend> {
    verifier: Option<Verifier>,
    failed: u16,
    /// The run waiting for its confirmation (one at a time: a new run replaces it).
    pending: Option<K::VerifierConfirming>,
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
            random: None,
            reopens_left: REOPENS_PER_BOOT,
        }
    }

    /// Whether a draw of entropy is wanted for the next run.
    pub fn wants_random(&self) -> bool {
        self.verifier.is_some() && self.random.is_none()
    }

    /// Entropy for the next run.
    pub fn give_random(&mut self, random: SecretBytes<PAKE_RANDOM_LEN>) {
        self.random = Some(random);
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
                self.pending = Some(reply.state);
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
        let Some(pending) = self.pending.take() else {
            return (Err(ServiceError::NoSession), Effect::None);
        };
        match K::verifier_finish(pending, confirm_p) {
            Ok(key) => {
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

    /// The count a write could not store is put back (never below what the disk
    /// holds): the service loop calls this with the count before the request.
    pub fn count_not_written(&mut self, before: u16) {
        self.failed = self.failed.max(before);
    }
}
