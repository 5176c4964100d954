//! dsoftbusd's wire format.
//!
//! - `DISCOVER`: empty payload; reply: dsoftbusd's Noise static public key (32 bytes)
//!   then its device public key (32 bytes). Both public: an XK initiator must know the
//!   responder's static key beforehand.
//! - `TRUST`: payload: a peer's Ed25519 device public key (32 bytes); it joins the
//!   allowlist (at most [`MAX_TRUSTED`]) if it is the canonical encoding of a point of
//!   prime order, otherwise `InvalidKey` (the audit record's reason is the
//!   `provider_api::KeyRejection` code). Policy allows it to the provisioning task only
//!   (the selftest).
//! - `TRANSPORT`: payload: `session: u32`, then one Noise message of at most
//!   [`MAX_MESSAGE`] bytes. A message for a new session id is a first handshake
//!   message; the reply is the second. The third message is answered with an empty
//!   reply. After that, a transport message is answered with a transport message.
//!
//! Noise allows 65,535-byte messages; dsoftbusd takes at most 1 KiB, far inside one
//! IPC frame, and says so with `RequestTooLarge`.

use alloc::vec::Vec;

use ipc::{Endpoint, IpcBuffer, Operation};

use crate::{ClientError, ServiceError};

/// The longest Noise message dsoftbusd accepts in one `TRANSPORT`.
pub const MAX_MESSAGE: usize = 1024;
/// The most device keys the allowlist holds.
pub const MAX_TRUSTED: usize = 16;
/// The most sessions (in handshake or established) per daemon.
pub const MAX_SESSIONS: usize = 8;

/// Why dsoftbusd refused a session message: the reason code of its audit record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Refusal {
    /// The first handshake message did not authenticate (tampered, wrong key).
    Message1 = 1,
    /// The third handshake message did not authenticate.
    Message3 = 3,
    /// The peer's device key is not on the allowlist.
    UnknownIdentity = 4,
    /// The peer's signature does not cover its Noise static key.
    BadBinding = 5,
    /// A transport message did not authenticate (tampered or replayed).
    Transport = 6,
    /// Too long, too short, or no room for another session.
    Malformed = 7,
}

/// Encodes a `TRANSPORT` payload.
pub fn encode_transport(session: u32, message: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(4 + message.len());
    payload.extend_from_slice(&session.to_le_bytes());
    payload.extend_from_slice(message);
    payload
}

/// Decodes a `TRANSPORT` payload.
///
/// # Errors
/// `MalformedRequest` without a session id, `RequestTooLarge` above [`MAX_MESSAGE`].
pub fn decode_transport(payload: &[u8]) -> Result<(u32, &[u8]), ServiceError> {
    let (session, message) = payload
        .split_first_chunk::<4>()
        .ok_or(ServiceError::MalformedRequest)?;
    if message.len() > MAX_MESSAGE {
        return Err(ServiceError::RequestTooLarge);
    }
    Ok((u32::from_le_bytes(*session), message))
}

/// dsoftbusd's public identity, as `DISCOVER` returns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Discovered {
    /// Its Noise static public key.
    pub noise_static: [u8; 32],
    /// Its device public key (keystored's).
    pub device_key: [u8; 32],
}

/// Asks dsoftbusd for its public identity.
///
/// # Errors
/// [`ClientError`].
pub async fn discover<E: Endpoint>(ep: &E) -> Result<Discovered, ClientError> {
    let reply = crate::call(ep, Operation::DsoftbusdDiscover, &[]).await?;
    let (noise_static, device_key) = reply
        .split_first_chunk::<32>()
        .ok_or(ClientError::MalformedReply)?;
    Ok(Discovered {
        noise_static: *noise_static,
        device_key: device_key
            .try_into()
            .map_err(|_| ClientError::MalformedReply)?,
    })
}

/// Adds `device_key` to dsoftbusd's allowlist.
///
/// # Errors
/// [`ClientError`].
pub async fn trust<E: Endpoint>(ep: &E, device_key: &[u8; 32]) -> Result<(), ClientError> {
    crate::call(ep, Operation::DsoftbusdTrust, device_key)
        .await
        .map(|_| ())
}

/// Carries one Noise message of `session` and returns the answer.
///
/// # Errors
/// [`ClientError`].
pub async fn transport<E: Endpoint>(
    ep: &E,
    session: u32,
    message: &[u8],
) -> Result<IpcBuffer, ClientError> {
    crate::call(
        ep,
        Operation::DsoftbusdTransport,
        &encode_transport(session, message),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_payloads_are_bounded() {
        assert_eq!(
            decode_transport(&encode_transport(7, b"abc")),
            Ok((7, &b"abc"[..]))
        );
        assert_eq!(
            decode_transport(&[1, 2]),
            Err(ServiceError::MalformedRequest)
        );
        assert_eq!(
            decode_transport(&encode_transport(1, &[0; MAX_MESSAGE + 1])),
            Err(ServiceError::RequestTooLarge)
        );
        assert!(decode_transport(&encode_transport(1, &[0; MAX_MESSAGE])).is_ok());
    }
}
