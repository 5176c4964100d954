//! keystored's wire format.
//!
//! - `GET_PUBKEY`: empty payload; reply: the 32-byte Ed25519 device public key.
//! - `SIGN`: payload: the message, at most [`MAX_SIGN_MESSAGE`] bytes; reply: the
//!   64-byte Ed25519 signature by the device key.
//! - `EXPORT_PRIVATE`: always answered with `ExportForbidden`.
//!
//! Without a key (keystored failed closed) every call but `EXPORT_PRIVATE` is
//! answered with `NoKey`.

use ipc::{Endpoint, Operation};

use crate::{ClientError, ServiceError};

/// The longest message keystored signs.
pub const MAX_SIGN_MESSAGE: usize = 1024;

/// Asks keystored for the device public key.
///
/// # Errors
/// [`ClientError`].
pub async fn get_pubkey<E: Endpoint>(ep: &E) -> Result<[u8; 32], ClientError> {
    let reply = crate::call(ep, Operation::KeystoredGetPubkey, &[]).await?;
    <[u8; 32]>::try_from(reply.as_slice()).map_err(|_| ClientError::MalformedReply)
}

/// Asks keystored to sign `message` with the device key.
///
/// # Errors
/// [`ClientError`]; a message over [`MAX_SIGN_MESSAGE`] is refused by keystored with
/// [`ServiceError::RequestTooLarge`].
pub async fn sign<E: Endpoint>(ep: &E, message: &[u8]) -> Result<[u8; 64], ClientError> {
    let reply = crate::call(ep, Operation::KeystoredSign, message).await?;
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

/// Whether a client error is keystored's refusal to export.
pub fn is_export_refusal(error: &ClientError) -> bool {
    *error == ClientError::Service(ServiceError::ExportForbidden)
}
