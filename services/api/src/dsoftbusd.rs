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
//!   An empty message closes that session (`NoSession` if there is none). Sessions
//!   belong to the calling task: the kernel stamps the sender, so a task reaches only
//!   its own. A new session is refused with `Busy` when the half-open quota or the
//!   entropy pace says no.
//! - `CONNECT`: payload: the peer's IPv4 address (4 bytes), its TCP port (`u16`), and
//!   the device key it must prove (32 bytes, on the allowlist). dsoftbusd opens a TCP
//!   connection, runs the handshake as initiator (`docs/protocol.md`), pings, and
//!   closes with `BYE`; reply: the peer's device key, then the handshake hash (32
//!   bytes each). Errors: `OtherAlgorithm` (the peer speaks another Noise suite),
//!   `Busy`, `Refused`, `TimedOut`, `Closed`, `AuthenticationFailed`, `Unavailable`.
//!
//! Noise allows 65,535-byte messages; dsoftbusd takes at most 1 KiB, far inside one
//! IPC frame, and says so with `RequestTooLarge`.

use alloc::vec::Vec;

use ipc::{Endpoint, IpcBuffer, Operation};

use crate::netstackd::SocketAddr;
use crate::{ClientError, ServiceError};

/// The longest Noise message dsoftbusd accepts in one `TRANSPORT`.
pub const MAX_MESSAGE: usize = 1024;
/// The most device keys the allowlist holds.
pub const MAX_TRUSTED: usize = 16;

/// A `CONNECT` request: where the peer is and which device it must be.
pub fn encode_connect(remote: SocketAddr, device_key: &[u8; 32]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(4 + 2 + 32);
    payload.extend_from_slice(&remote.ip);
    payload.extend_from_slice(&remote.port.to_le_bytes());
    payload.extend_from_slice(device_key);
    payload
}

/// Decodes a `CONNECT` request.
///
/// # Errors
/// `MalformedRequest`.
pub fn decode_connect(payload: &[u8]) -> Result<(SocketAddr, [u8; 32]), ServiceError> {
    let malformed = ServiceError::MalformedRequest;
    if payload.len() != 4 + 2 + 32 {
        return Err(malformed);
    }
    let remote = SocketAddr {
        ip: payload[..4].try_into().map_err(|_| malformed)?,
        port: u16::from_le_bytes([payload[4], payload[5]]),
    };
    if remote.port == 0 {
        return Err(malformed);
    }
    Ok((remote, payload[6..].try_into().map_err(|_| malformed)?))
}

/// A session `CONNECT` completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connected {
    /// The peer's device key, as its binding proved it.
    pub device_key: [u8; 32],
    /// The session's handshake hash (the same on both sides).
    pub handshake_hash: [u8; 32],
}

impl Connected {
    /// The reply payload.
    pub fn encode(&self) -> Vec<u8> {
        [&self.device_key[..], &self.handshake_hash[..]].concat()
    }

    /// Decodes a reply payload.
    ///
    /// # Errors
    /// [`ClientError::MalformedReply`].
    pub fn decode(bytes: &[u8]) -> Result<Self, ClientError> {
        let bad = ClientError::MalformedReply;
        if bytes.len() != 64 {
            return Err(bad);
        }
        Ok(Self {
            device_key: bytes[..32].try_into().map_err(|_| bad)?,
            handshake_hash: bytes[32..].try_into().map_err(|_| bad)?,
        })
    }
}

/// Asks dsoftbusd to open a session to the device `device_key` at `remote` and ping it.
///
/// # Errors
/// [`ClientError`].
pub async fn connect<E: Endpoint>(
    ep: &E,
    remote: SocketAddr,
    device_key: &[u8; 32],
) -> Result<Connected, ClientError> {
    let reply = crate::call(
        ep,
        Operation::DsoftbusdConnect,
        &encode_connect(remote, device_key),
    )
    .await?;
    Connected::decode(&reply)
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

/// The sizes of dsoftbusd's session table, as `STATS` reports them (for soak runs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections whose handshake is going.
    pub half_open: u16,
    /// Established sessions.
    pub established: u16,
    /// Device keys on the allowlist.
    pub trusted: u16,
}

impl Stats {
    /// The reply payload: the three counts as `u16`.
    pub fn encode(&self) -> Vec<u8> {
        [self.half_open, self.established, self.trusted]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect()
    }

    /// Decodes a reply payload.
    ///
    /// # Errors
    /// [`ClientError::MalformedReply`].
    pub fn decode(bytes: &[u8]) -> Result<Self, ClientError> {
        let word = |at: usize| {
            bytes
                .get(at..at + 2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
        };
        match (bytes.len(), word(0), word(2), word(4)) {
            (6, Some(half_open), Some(established), Some(trusted)) => Ok(Self {
                half_open,
                established,
                trusted,
            }),
            _ => Err(ClientError::MalformedReply),
        }
    }
}

/// dsoftbusd's table sizes.
///
/// # Errors
/// [`ClientError`].
pub async fn stats<E: Endpoint>(ep: &E) -> Result<Stats, ClientError> {
    Stats::decode(&crate::call(ep, Operation::DsoftbusdStats, &[]).await?)
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
