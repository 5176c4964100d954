//! keystored's wire format.
//!
//! - `GET_PUBKEY`: empty payload; reply: the 32-byte Ed25519 device public key.
//! - `SIGN`: payload: a signing purpose (`u16`, [`SigningPurpose::code`]) then that
//!   purpose's data; reply: the 64-byte Ed25519 signature by the device key over the
//!   message keystored builds for the purpose ([`purpose_message`]), never over bytes
//!   the caller chose. keystored refuses a purpose the policy does not grant the caller
//!   (`PurposeDenied`) and data of the wrong shape (`MalformedRequest`).
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
//! Without a key (keystored failed closed) every call but `EXPORT_PRIVATE` is
//! answered with `NoKey`.

use alloc::vec::Vec;

use ipc::policy::SigningPurpose;
use ipc::{Endpoint, Operation};

use crate::{ClientError, ServiceError};

/// The domain-separation prefix of a Noise static-key binding: the message is this
/// prefix followed by the 32-byte X25519 static public key.
pub const NOISE_BINDING_PREFIX: &[u8] = b"dsoftbus/v1 noise static key binding\0";

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
        _ => Err(ServiceError::PurposeDenied),
    }
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
