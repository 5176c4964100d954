//! provider-api PAKE backend: SPAKE2+ (RFC 9383), suite `P256-SHA256-HKDF-SHA256-
//! HMAC-SHA256`, on the `spake2plus` crate (`no_std`, no `alloc`, P-256 from RustCrypto's
//! `p256`, checked against the RFC's vectors in both roles).
//!
//! The password hash is PBKDF2-HMAC-SHA256 (`pbkdf2`, `sha2`), as Matter's PASE uses.
//!
//! What the adapter adds: the caller's entropy (64 bytes from rngd) is the one draw of
//! the run's scalar, served by [`OneDraw`]; the crate's errors become
//! [`PakeError`]s; and every secret it hands out (the record, the shared key) goes into a
//! [`SecretBytes`], wiped on drop. Everything else (share validation, the mask check,
//! constant-time confirmation, consuming each step) is the crate's, and the conformance
//! kit checks it through this adapter.

#![no_std]
#![forbid(unsafe_code)]

use provider_api::SecretBytes;
use provider_api::pake::{
    PAKE_CONFIRM_LEN, PAKE_KEY_LEN, PAKE_PBKDF_OUTPUT_LEN, PAKE_RANDOM_LEN, PAKE_RECORD_LEN,
    PAKE_SHARE_LEN, PakeBackend, PakeContext, PakeError, ProverResult,
};
use spake2plus::rand_core::{Infallible, TryCryptoRng, TryRng};
use spake2plus::{
    ConfirmP, ConfirmV, Context, P256Sha256, Prover, ProverSecret, ShareP, ShareV, Verifier,
    VerifierConfirming, VerifierRecord,
};

/// SPAKE2+ on P-256 with SHA-256, as a type.
#[derive(Debug)]
pub enum Spake2Plus {}

/// The run's randomness: the 64 bytes the caller drew, served once.
///
/// The crate draws exactly one 64-byte block per run (its scalar, reduced modulo the
/// order) and draws again only if the share it made is the identity, which happens
/// with probability about 2^-256. Serving the same block again would loop for ever, so
/// a later draw gets the block with its first byte changed by the draw's number (a
/// different scalar). No draw fails and none invents entropy: every byte is the
/// caller's.
struct OneDraw<'a> {
    block: &'a [u8; PAKE_RANDOM_LEN],
    draws: u8,
}

impl TryRng for OneDraw<'_> {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut bytes = [0; 4];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut bytes = [0; 8];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for (to, from) in dst.iter_mut().zip(self.block.iter().cycle()) {
            *to = *from;
        }
        if let Some(first) = dst.first_mut() {
            *first ^= self.draws;
        }
        self.draws = self.draws.wrapping_add(1);
        Ok(())
    }
}

impl TryCryptoRng for OneDraw<'_> {}

fn context<'a>(context: &PakeContext<'a>) -> Context<'a> {
    Context {
        context: context.context,
        prover_id: context.prover_id,
        verifier_id: context.verifier_id,
    }
}

fn refusal(error: spake2plus::Error) -> PakeError {
    match error {
        spake2plus::Error::Length { .. } => PakeError::Length,
        spake2plus::Error::InvalidPoint => PakeError::InvalidShare,
        spake2plus::Error::DegenerateShare => PakeError::DegenerateShare,
        spake2plus::Error::ConfirmationFailed => PakeError::ConfirmationFailed,
        spake2plus::Error::InvalidScalar | spake2plus::Error::PbkdfOutputLength { .. } => {
            PakeError::InvalidSecret
        }
        _ => PakeError::InvalidShare,
    }
}

fn secret(
    output: &SecretBytes<PAKE_PBKDF_OUTPUT_LEN>,
) -> Result<ProverSecret<P256Sha256>, PakeError> {
    ProverSecret::from_pbkdf_output(output.expose_secret()).map_err(|_| PakeError::InvalidSecret)
}

impl PakeBackend for Spake2Plus {
    const NAME: &'static str = "spake2plus";
    type Verifier = Verifier<P256Sha256>;
    type VerifierConfirming = VerifierConfirming<P256Sha256>;
    type Prover = Prover<P256Sha256>;

    fn password_hash(
        input: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> SecretBytes<PAKE_PBKDF_OUTPUT_LEN> {
        let mut output = SecretBytes::zeroed();
        pbkdf2::pbkdf2_hmac::<sha2::Sha256>(input, salt, iterations, output.expose_secret_mut());
        output
    }

    fn record_from_pbkdf_output(
        output: &SecretBytes<PAKE_PBKDF_OUTPUT_LEN>,
    ) -> Result<SecretBytes<PAKE_RECORD_LEN>, PakeError> {
        let record = secret(output)?.verifier_record().to_bytes();
        let mut bytes = SecretBytes::zeroed();
        bytes.expose_secret_mut().copy_from_slice(record.as_ref());
        Ok(bytes)
    }

    fn verifier_start(
        record: &SecretBytes<PAKE_RECORD_LEN>,
        context_: &PakeContext<'_>,
        random: &SecretBytes<PAKE_RANDOM_LEN>,
    ) -> Result<(Self::Verifier, [u8; PAKE_SHARE_LEN]), PakeError> {
        let record = VerifierRecord::<P256Sha256>::from_bytes(record.expose_secret())
            .map_err(|_| PakeError::InvalidRecord)?;
        let mut rng = OneDraw {
            block: random.expose_secret(),
            draws: 0,
        };
        let (verifier, share) = Verifier::start(&record, &context(context_), &mut rng);
        Ok((verifier, *share.as_bytes()))
    }

    fn verifier_receive(
        state: Self::Verifier,
        share_p: &[u8],
    ) -> Result<(Self::VerifierConfirming, [u8; PAKE_CONFIRM_LEN]), PakeError> {
        let share = ShareP::<P256Sha256>::from_bytes(share_p).map_err(refusal)?;
        let (confirming, confirm) = state.receive(&share).map_err(refusal)?;
        Ok((confirming, *confirm.as_bytes()))
    }

    fn verifier_finish(
        state: Self::VerifierConfirming,
        confirm_p: &[u8],
    ) -> Result<SecretBytes<PAKE_KEY_LEN>, PakeError> {
        let confirm = ConfirmP::<P256Sha256>::from_bytes(confirm_p).map_err(refusal)?;
        let key = state.finish(&confirm).map_err(refusal)?;
        let mut bytes = SecretBytes::zeroed();
        bytes.expose_secret_mut().copy_from_slice(key.as_bytes());
        Ok(bytes)
    }

    fn prover_start(
        output: &SecretBytes<PAKE_PBKDF_OUTPUT_LEN>,
        context_: &PakeContext<'_>,
        random: &SecretBytes<PAKE_RANDOM_LEN>,
    ) -> Result<(Self::Prover, [u8; PAKE_SHARE_LEN]), PakeError> {
        let secret = secret(output)?;
        let mut rng = OneDraw {
            block: random.expose_secret(),
            draws: 0,
        };
        let (prover, share) = Prover::start(&secret, &context(context_), &mut rng);
        Ok((prover, *share.as_bytes()))
    }

    fn prover_finish(
        state: Self::Prover,
        share_v: &[u8],
        confirm_v: &[u8],
    ) -> Result<ProverResult, PakeError> {
        let share = ShareV::<P256Sha256>::from_bytes(share_v).map_err(refusal)?;
        let confirm_v = ConfirmV::<P256Sha256>::from_bytes(confirm_v).map_err(refusal)?;
        let (confirm, key) = state
            .receive(&share)
            .map_err(refusal)?
            .finish(&confirm_v)
            .map_err(refusal)?;
        let mut bytes = SecretBytes::zeroed();
        bytes.expose_secret_mut().copy_from_slice(key.as_bytes());
        Ok(ProverResult {
            confirm: *confirm.as_bytes(),
            key: bytes,
        })
    }
}
