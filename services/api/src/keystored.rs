//! keystored's wire format.
//!
//! - `GET_PUBKEY`: empty payload; reply: the 32-byte Ed25519 device public key.
//! - `SIGN`: payload: a signing purpose (`u16`, [`SigningPurpose::code`]) then that
//!   purpose's data; reply: the 64-byte Ed25519 signature by the device key over the
//!   message keystored builds for the purpose ([`purpose_message`]), never over bytes
//!   the caller chose. keystored refuses a purpose the policy does not grant the caller
//!   (`PurposeDenied`) and data of the wrong shape (`MalformedRequest`). A
//!   `pairing-confirm` is signed only over the role byte and [`transcript_hash`] of the
//!   pairing run keystored confirmed last, in the role it played, once; anything else
//!   is refused `NoSession` and spends that run.
//! - `EXPORT_PRIVATE`: always answered with `ExportForbidden`.
//! - `VERIFY_TRUST_STORE`: payload: a trust-store record (`state_format::trust`);
//!   reply empty when its tag verifies under this device's key and its rollback
//!   version is not below the device's anti-rollback counter (a newer one advances the
//!   counter to it first), else `AuthenticationFailed` (bad tag), `OtherAlgorithm`
//!   (tagged with another hash), `RolledBack` (older than the counter),
//!   `Unavailable` (no counter, or it could not be advanced) or `MalformedRequest`.
//!   An empty payload asks about a disk with no store: accepted while the counter is
//!   at 0 (or absent), `RolledBack` once it moved (a store existed and was removed).
//!
//! Pairing (`docs/protocol.md`, section 11), all granted to dsoftbusd alone:
//!
//! - `PAIRING_STATUS`: empty payload; reply [`PairingStatus`] (25 bytes).
//! - `PAIRING_START`: payload: the prover's share (65 bytes), then the PAKE context
//!   (at most [`MAX_PAKE_CONTEXT`] bytes); reply: the device's share (65) and its
//!   confirmation (32). keystored counts the run as a failed attempt on the state disk
//!   *before* it answers (a run the prover abandons stays counted), and refuses with
//!   `NotFound` when no verifier is provisioned, `Closed` once the count reached the
//!   limit, `Unavailable` when the count cannot be written or no entropy came.
//! - `PAIRING_FINISH`: payload: the prover's confirmation (32 bytes); reply: the
//!   32-byte shared key. A confirmation that does not match is `AuthenticationFailed`
//!   (the attempt stays counted); with no run started, `NoSession`. A run finishes once.
//! - `TAG_TRUST_STORE`: payload: the device keys (32 bytes each, at most 16); reply: a
//!   trust-store record holding them, version one above the rollback counter, tagged.
//!   The caller stores it and has it verified (`VERIFY_TRUST_STORE`), which advances
//!   the counter. Each key must obey the verification rule (`InvalidKey`).
//! - `PAIRING_REOPEN`: empty payload; the failed-attempt count goes back to 0.
//! - `PAIRING_PROVE` (this device pairs with another whose setup code it was given):
//!   payload: the other device's password-hash rounds (`u32` big-endian, 1,000 to
//!   100,000) and salt (16 bytes) from its pair reply, the code's 8 ASCII digits, then
//!   the PAKE context; reply: this device's share (65 bytes). keystored runs the
//!   password hash; the code and the run's secrets stay in keystored.
//! - `PAIRING_PROVE_FINISH`: payload: the other device's share (65) and confirmation
//!   (32); reply: this device's confirmation (32) and the shared key (32), only if the
//!   other's confirmation matched (else `AuthenticationFailed`: a wrong code, or not
//!   the device the code belongs to). With no run started, `NoSession`.
//!
//! Without a key (keystored failed closed) every call but `EXPORT_PRIVATE` is
//! answered with `NoKey`.

use alloc::vec::Vec;

use ipc::policy::SigningPurpose;
use ipc::{Endpoint, Operation};

use crate::{ClientError, ServiceError};

/// The domain-separation prefix of a Noise static-key binding: the message is this
/// prefix followed by the 32-byte X25519 static public key.
pub const NOISE_BINDING_PREFIX: &[u8] = b"dsoftbus/v1 noise static key binding\0";

/// The domain-separation prefix of a pairing confirmation: the message is this prefix,
/// a role byte ([`PAIRING_ROLE_PROVER`] or [`PAIRING_ROLE_VERIFIER`]) and the
/// 32-byte transcript hash of the run.
pub const PAIRING_CONFIRM_PREFIX: &[u8] = b"dsoftbus/v1 pairing confirm\0";
/// The role byte of the side that knew the setup code.
pub const PAIRING_ROLE_PROVER: u8 = 1;
/// The role byte of the side that holds the verifier (the device whose code it was).
pub const PAIRING_ROLE_VERIFIER: u8 = 2;
/// `th = H(shareP || shareV || confirmV || confirmP)` of a pairing run
/// (`docs/protocol.md` section 11.3): what each side's signature and the identity keys
/// are bound to. keystored signs a pairing confirmation only over the `th` of the run
/// it just confirmed, in the role it played there.
pub fn transcript_hash<H: provider_api::HashBackend>(
    share_p: &[u8; 65],
    share_v: &[u8; 65],
    confirm_v: &[u8; 32],
    confirm_p: &[u8; 32],
) -> [u8; 32] {
    H::hash(&[share_p, share_v, confirm_v, confirm_p])
}

/// The longest PAKE context `PAIRING_START` and `PAIRING_PROVE` take.
pub const MAX_PAKE_CONTEXT: usize = 128;
/// What comes before the context in `PAIRING_PROVE`: rounds (4), salt (16), the code's
/// digits (8).
pub const PROVE_HEADER_LEN: usize = 4 + 16 + 8;

/// The message keystored signs for `purpose` over `data`.
///
/// # Errors
/// `MalformedRequest` when `data` is not what the purpose takes.
pub fn purpose_message(purpose: SigningPurpose, data: &[u8]) -> Result<Vec<u8>, ServiceError> {
    match purpose {
        SigningPurpose::NoiseStaticBinding => {
            if data.len() != 32 {
                return Err(ServiceError::MalformedRequest);
            }
            let mut message = Vec::with_capacity(NOISE_BINDING_PREFIX.len() + 32);
            message.extend_from_slice(NOISE_BINDING_PREFIX);
            message.extend_from_slice(data);
            Ok(message)
        }
        SigningPurpose::PairingConfirm => match data {
            [
                role @ (PAIRING_ROLE_PROVER | PAIRING_ROLE_VERIFIER),
                hash @ ..,
            ] if hash.len() == 32 => {
                let mut message = Vec::with_capacity(PAIRING_CONFIRM_PREFIX.len() + 33);
                message.extend_from_slice(PAIRING_CONFIRM_PREFIX);
                message.push(*role);
                message.extend_from_slice(hash);
                Ok(message)
            }
            _ => Err(ServiceError::MalformedRequest),
        },
        _ => Err(ServiceError::PurposeDenied),
    }
}

/// keystored's answer to `PAIRING_STATUS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PairingStatus {
    /// A verifier is provisioned (and opened under this device's key).
    pub provisioned: bool,
    /// Failed attempts counted.
    pub failed: u16,
    /// The count at which keystored refuses every run.
    pub limit: u16,
    /// The password hash's rounds (0 when not provisioned).
    pub iterations: u32,
    /// The password hash's salt (zero when not provisioned).
    pub salt: [u8; 16],
}

impl PairingStatus {
    /// Encoded length.
    pub const LEN: usize = 25;

    /// Whether a run may start now.
    pub fn open(&self) -> bool {
        self.provisioned && self.failed < self.limit
    }

    /// `provisioned: u8 || failed: u16le || limit: u16le || iterations: u32le || salt`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::LEN);
        out.push(u8::from(self.provisioned));
        out.extend_from_slice(&self.failed.to_le_bytes());
        out.extend_from_slice(&self.limit.to_le_bytes());
        out.extend_from_slice(&self.iterations.to_le_bytes());
        out.extend_from_slice(&self.salt);
        out
    }

    /// Decodes [`PairingStatus::encode`].
    ///
    /// # Errors
    /// `MalformedReply`.
    pub fn decode(bytes: &[u8]) -> Result<Self, ClientError> {
        let bytes: &[u8; Self::LEN] = bytes.try_into().map_err(|_| ClientError::MalformedReply)?;
        let provisioned = match bytes[0] {
            0 => false,
            1 => true,
            _ => return Err(ClientError::MalformedReply),
        };
        let mut salt = [0u8; 16];
        salt.copy_from_slice(&bytes[9..]);
        Ok(Self {
            provisioned,
            failed: u16::from_le_bytes([bytes[1], bytes[2]]),
            limit: u16::from_le_bytes([bytes[3], bytes[4]]),
            iterations: u32::from_le_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]),
            salt,
        })
    }
}

/// Asks keystored whether pairing is provisioned, and its count.
///
/// # Errors
/// [`ClientError`].
pub async fn pairing_status<E: Endpoint>(ep: &E) -> Result<PairingStatus, ClientError> {
    let reply = crate::call(ep, Operation::KeystoredPairingStatus, &[]).await?;
    PairingStatus::decode(&reply)
}

/// Starts a SPAKE2+ run as the verifier: the device's share and confirmation.
///
/// # Errors
/// [`ClientError`].
pub async fn pairing_start<E: Endpoint>(
    ep: &E,
    share_p: &[u8; 65],
    context: &[u8],
) -> Result<([u8; 65], [u8; 32]), ClientError> {
    let mut payload = Vec::with_capacity(65 + context.len());
    payload.extend_from_slice(share_p);
    payload.extend_from_slice(context);
    let reply = crate::call(ep, Operation::KeystoredPairingStart, &payload).await?;
    let (share, confirm) = reply
        .split_first_chunk::<65>()
        .ok_or(ClientError::MalformedReply)?;
    let confirm = <[u8; 32]>::try_from(confirm).map_err(|_| ClientError::MalformedReply)?;
    Ok((*share, confirm))
}

/// Finishes the run with the prover's confirmation: the shared key, wiped on drop.
///
/// # Errors
/// [`ClientError`]; a wrong confirmation is [`ServiceError::AuthenticationFailed`].
pub async fn pairing_finish<E: Endpoint>(
    ep: &E,
    confirm_p: &[u8; 32],
) -> Result<provider_api::SecretBytes<32>, ClientError> {
    let reply = crate::call(ep, Operation::KeystoredPairingFinish, confirm_p).await?;
    provider_api::SecretBytes::from_fill(|key: &mut [u8; 32]| {
        key.copy_from_slice(
            reply
                .get(..32)
                .filter(|_| reply.len() == 32)
                .ok_or(ClientError::MalformedReply)?,
        );
        Ok(())
    })
}

/// A trust store holding `keys`, tagged by keystored one version above the counter.
///
/// # Errors
/// [`ClientError`].
pub async fn tag_trust_store<E: Endpoint>(
    ep: &E,
    keys: &[[u8; 32]],
) -> Result<Vec<u8>, ClientError> {
    let payload: Vec<u8> = keys.iter().flatten().copied().collect();
    crate::call(ep, Operation::KeystoredTagTrustStore, &payload)
        .await
        .map(|reply| reply.to_vec())
}

/// Clears the failed-attempt count.
///
/// # Errors
/// [`ClientError`].
pub async fn pairing_reopen<E: Endpoint>(ep: &E) -> Result<(), ClientError> {
    crate::call(ep, Operation::KeystoredPairingReopen, &[])
        .await
        .map(|_| ())
}

/// Starts a SPAKE2+ run as the prover with another device's parameters and its setup
/// code's 8 ASCII digits: this device's share.
///
/// # Errors
/// [`ClientError`].
pub async fn pairing_prove<E: Endpoint>(
    ep: &E,
    iterations: u32,
    salt: &[u8; 16],
    digits: &[u8; 8],
    context: &[u8],
) -> Result<[u8; 65], ClientError> {
    let mut payload = zeroize::Zeroizing::new(Vec::with_capacity(PROVE_HEADER_LEN + context.len()));
    payload.extend_from_slice(&iterations.to_be_bytes());
    payload.extend_from_slice(salt);
    payload.extend_from_slice(digits);
    payload.extend_from_slice(context);
    let reply = crate::call(ep, Operation::KeystoredPairingProve, &payload).await?;
    <[u8; 65]>::try_from(reply.as_slice()).map_err(|_| ClientError::MalformedReply)
}

/// Finishes the prover's run with the other device's share and confirmation: this
/// device's confirmation and the shared key (wiped on drop).
///
/// # Errors
/// [`ClientError`]; a confirmation that does not match is
/// [`ServiceError::AuthenticationFailed`].
pub async fn pairing_prove_finish<E: Endpoint>(
    ep: &E,
    share_v: &[u8; 65],
    confirm_v: &[u8; 32],
) -> Result<([u8; 32], provider_api::SecretBytes<32>), ClientError> {
    let payload = [&share_v[..], confirm_v].concat();
    let reply = crate::call(ep, Operation::KeystoredPairingProveFinish, &payload).await?;
    if reply.len() != 64 {
        return Err(ClientError::MalformedReply);
    }
    let mut confirm = [0u8; 32];
    confirm.copy_from_slice(&reply[..32]);
    let key = provider_api::SecretBytes::from_fill(|key: &mut [u8; 32]| {
        key.copy_from_slice(&reply[32..]);
        Ok::<(), ClientError>(())
    })?;
    Ok((confirm, key))
}

/// Encodes a `SIGN` request.
pub fn encode_sign(purpose: SigningPurpose, data: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(2 + data.len());
    payload.extend_from_slice(&purpose.code().to_le_bytes());
    payload.extend_from_slice(data);
    payload
}

/// Asks keystored for the device public key.
///
/// # Errors
/// [`ClientError`].
pub async fn get_pubkey<E: Endpoint>(ep: &E) -> Result<[u8; 32], ClientError> {
    let reply = crate::call(ep, Operation::KeystoredGetPubkey, &[]).await?;
    <[u8; 32]>::try_from(reply.as_slice()).map_err(|_| ClientError::MalformedReply)
}

/// Asks keystored to sign `data` for `purpose` with the device key.
///
/// # Errors
/// [`ClientError`].
pub async fn sign<E: Endpoint>(
    ep: &E,
    purpose: SigningPurpose,
    data: &[u8],
) -> Result<[u8; 64], ClientError> {
    let reply = crate::call(ep, Operation::KeystoredSign, &encode_sign(purpose, data)).await?;
    <[u8; 64]>::try_from(reply.as_slice()).map_err(|_| ClientError::MalformedReply)
}

/// Asks keystored for the private key. It never gives it.
///
/// # Errors
/// Always: [`ServiceError::ExportForbidden`] from keystored, or the kernel's refusal.
pub async fn export_private<E: Endpoint>(ep: &E) -> Result<(), ClientError> {
    match crate::call(ep, Operation::KeystoredExportPrivate, &[]).await {
        Ok(_) => Err(ClientError::MalformedReply),
        Err(error) => Err(error),
    }
}

/// Asks keystored whether `store`'s tag verifies under this device's trust-store key.
///
/// # Errors
/// [`ClientError`]; a bad tag is [`ServiceError::AuthenticationFailed`].
pub async fn verify_trust_store<E: Endpoint>(ep: &E, store: &[u8]) -> Result<(), ClientError> {
    crate::call(ep, Operation::KeystoredVerifyTrustStore, store)
        .await
        .map(|_| ())
}

/// Whether a client error is keystored's refusal to export.
pub fn is_export_refusal(error: &ClientError) -> bool {
    *error == ClientError::Service(ServiceError::ExportForbidden)
}
