//! Password-authenticated key exchange: SPAKE2+ (RFC 9383) on P-256 with SHA-256.
//!
//! Pairing (`docs/protocol.md`, section 11) lets a peer who knows a device's setup
//! code, and nothing else, agree a key with it. The exchange is **augmented**: the
//! device holds a *verifier record* (`w0` and `L = w1·P`) derived from the code by a
//! password hash, never the code, so a copy of the record lets nobody pose as a peer
//! without first guessing the code (decision 0015).
//!
//! The sizes here are the protocol's (the P-256 suite, `P256-SHA256-HKDF-SHA256-
//! HMAC-SHA256`), not a backend's choice: a backend for another group would be another
//! protocol version. What a backend must do, and the conformance kit checks:
//!
//! - refuse a share that is not the uncompressed SEC1 encoding of a point of the
//!   group other than the identity ([`PakeError::InvalidShare`]), and one that cancels
//!   the password's mask (`w0·N` from a verifier, `w0·M` from a prover:
//!   [`PakeError::DegenerateShare`]);
//! - check the peer's confirmation in constant time, and give the shared key only
//!   after it did ([`PakeError::ConfirmationFailed`]);
//! - consume each step's state, so a run cannot be repeated, and wipe it on drop.
//!
//! The ephemeral scalar is drawn from [`PAKE_RANDOM_LEN`] bytes the caller got from its
//! entropy source (the device's rngd): the backend reduces the 64 bytes modulo the
//! group order (bias below 2^-256), as RFC 9383's `random` allows.

use crate::SecretBytes;

/// A share (`shareP`, `shareV`): an uncompressed SEC1 P-256 point.
pub const PAKE_SHARE_LEN: usize = 65;
/// A key confirmation (`confirmP`, `confirmV`): an HMAC-SHA256 tag.
pub const PAKE_CONFIRM_LEN: usize = 32;
/// The shared key `K_shared` both sides hold after a run.
pub const PAKE_KEY_LEN: usize = 32;
/// The verifier record: `w0` (32 bytes, big-endian) then `L` (65 bytes, SEC1).
pub const PAKE_RECORD_LEN: usize = 97;
/// What a password hash gives for `w0s || w1s`: 40 bytes each, RFC 9383's minimum for
/// P-256 (so the reduction modulo the order is unbiased to 2^-64).
pub const PAKE_PBKDF_OUTPUT_LEN: usize = 80;
/// Entropy bytes one run's ephemeral scalar is drawn from.
pub const PAKE_RANDOM_LEN: usize = 64;

/// What both sides bind into the run besides the password (RFC 9383's `Context`,
/// `idProver`, `idVerifier`); each may be empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PakeContext<'a> {
    /// The application's context string.
    pub context: &'a [u8],
    /// `idProver`.
    pub prover_id: &'a [u8],
    /// `idVerifier`.
    pub verifier_id: &'a [u8],
}

/// Why a PAKE step refused its input. Every refusal ends the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PakeError {
    /// A share, confirmation or record of the wrong length.
    Length,
    /// A share that is not a point of the group other than the identity.
    InvalidShare,
    /// A share that cancels the password's mask (nothing secret would be left).
    DegenerateShare,
    /// The peer's confirmation does not match: another password, context or
    /// transcript. Deliberately one answer for all of these.
    ConfirmationFailed,
    /// A verifier record that does not parse (zero or oversized `w0`, `L` not a
    /// point of the group other than the identity).
    InvalidRecord,
    /// A password-hash output that reduces to a zero `w0` or `w1`.
    InvalidSecret,
}

impl core::fmt::Display for PakeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Length => "PAKE message of the wrong length",
            Self::InvalidShare => "PAKE share is not a point of the group",
            Self::DegenerateShare => "PAKE share cancels the password's mask",
            Self::ConfirmationFailed => "PAKE confirmation does not match",
            Self::InvalidRecord => "PAKE verifier record does not parse",
            Self::InvalidSecret => "password hash output gives a zero scalar",
        })
    }
}

impl core::error::Error for PakeError {}

/// The verifier's answer to `shareP`: its share and its confirmation, sent together.
pub struct VerifierReply<B: PakeBackend> {
    /// The state waiting for `confirmP`.
    pub state: B::VerifierConfirming,
    /// `shareV`.
    pub share: [u8; PAKE_SHARE_LEN],
    /// `confirmV`.
    pub confirm: [u8; PAKE_CONFIRM_LEN],
}

/// The prover's result once `confirmV` checked.
pub struct ProverResult {
    /// `confirmP`, to send.
    pub confirm: [u8; PAKE_CONFIRM_LEN],
    /// `K_shared`.
    pub key: SecretBytes<PAKE_KEY_LEN>,
}

/// A SPAKE2+ backend (the service-provider side). Both roles: the device is the
/// verifier, a peer pairing with it the prover (a device pairing with another device
/// is a prover too).
pub trait PakeBackend: 'static {
    /// The backend's name, as the feature names it.
    const NAME: &'static str;
    /// Whether the implementation is formally verified.
    const FORMALLY_VERIFIED: bool = false;
    /// The verifier's state after `shareV` was made, waiting for `shareP`.
    type Verifier;
    /// The verifier's state after `shareP`, waiting for `confirmP`.
    type VerifierConfirming;
    /// The prover's state after `shareP` was made, waiting for `shareV`.
    type Prover;

    /// The password hash of registration and of a prover: PBKDF2 (RFC 8018) with
    /// HMAC-SHA256, `iterations` rounds, over `input` (RFC 9383's `len(pw) || pw ||
    /// len(idProver) || idProver || len(idVerifier) || idVerifier`), giving
    /// [`PAKE_PBKDF_OUTPUT_LEN`] bytes. A verifier never runs it: it holds the record.
    fn password_hash(
        input: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> SecretBytes<PAKE_PBKDF_OUTPUT_LEN>;

    /// The verifier record for a password hash's output (registration).
    ///
    /// # Errors
    /// [`PakeError::InvalidSecret`].
    fn record_from_pbkdf_output(
        output: &SecretBytes<PAKE_PBKDF_OUTPUT_LEN>,
    ) -> Result<SecretBytes<PAKE_RECORD_LEN>, PakeError>;

    /// Starts the verifier's run: `shareV = y·P + w0·N`.
    ///
    /// # Errors
    /// [`PakeError::InvalidRecord`].
    fn verifier_start(
        record: &SecretBytes<PAKE_RECORD_LEN>,
        context: &PakeContext<'_>,
        random: &SecretBytes<PAKE_RANDOM_LEN>,
    ) -> Result<(Self::Verifier, [u8; PAKE_SHARE_LEN]), PakeError>;

    /// Takes `shareP`; gives `confirmV` and the state waiting for `confirmP`.
    ///
    /// # Errors
    /// [`PakeError::Length`], [`PakeError::InvalidShare`],
    /// [`PakeError::DegenerateShare`].
    fn verifier_receive(
        state: Self::Verifier,
        share_p: &[u8],
    ) -> Result<(Self::VerifierConfirming, [u8; PAKE_CONFIRM_LEN]), PakeError>;

    /// Checks `confirmP`; only then gives `K_shared`.
    ///
    /// # Errors
    /// [`PakeError::Length`], [`PakeError::ConfirmationFailed`].
    fn verifier_finish(
        state: Self::VerifierConfirming,
        confirm_p: &[u8],
    ) -> Result<SecretBytes<PAKE_KEY_LEN>, PakeError>;

    /// Starts the prover's run: `shareP = x·P + w0·M`.
    ///
    /// # Errors
    /// [`PakeError::InvalidSecret`].
    fn prover_start(
        output: &SecretBytes<PAKE_PBKDF_OUTPUT_LEN>,
        context: &PakeContext<'_>,
        random: &SecretBytes<PAKE_RANDOM_LEN>,
    ) -> Result<(Self::Prover, [u8; PAKE_SHARE_LEN]), PakeError>;

    /// Takes `shareV` and `confirmV`; checks `confirmV` (RFC 9383's order: the prover
    /// confirms only a verifier that proved it holds the record) and gives `confirmP`
    /// and `K_shared`.
    ///
    /// # Errors
    /// [`PakeError::Length`], [`PakeError::InvalidShare`],
    /// [`PakeError::DegenerateShare`], [`PakeError::ConfirmationFailed`].
    fn prover_finish(
        state: Self::Prover,
        share_v: &[u8],
        confirm_v: &[u8],
    ) -> Result<ProverResult, PakeError>;
}

/// The verifier's side in one call for callers that hold `shareP` before they answer
/// (the device: `shareV` does not depend on `shareP`, so both go out together).
///
/// # Errors
/// As [`PakeBackend::verifier_start`] and [`PakeBackend::verifier_receive`].
pub fn verifier_answer<B: PakeBackend>(
    record: &SecretBytes<PAKE_RECORD_LEN>,
    context: &PakeContext<'_>,
    random: &SecretBytes<PAKE_RANDOM_LEN>,
    share_p: &[u8],
) -> Result<VerifierReply<B>, PakeError> {
    let (verifier, share) = B::verifier_start(record, context, random)?;
    let (state, confirm) = B::verifier_receive(verifier, share_p)?;
    Ok(VerifierReply {
        state,
        share,
        confirm,
    })
}
