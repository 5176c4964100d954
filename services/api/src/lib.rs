//! Wire formats and typed errors of every service, and the helpers both sides use.
//!
//! One definition per message, shared by the server and its clients, so the two
//! cannot disagree. Payload layouts are little-endian and fixed unless a module says
//! otherwise; every decoder returns a typed error on any other input.
//!
//! Replies carry entropy (`GET_ENTROPY` serves the seeds of every key in the system),
//! so every heap copy these helpers make is an [`IpcBuffer`], which zeroizes its
//! allocation when dropped: the encoded request and reply frames, the reply the
//! kernel hands back, and the payload [`call`] splits out of it. The kernel keeps its
//! own copies in the same type. `selftest/host-runner/tests/freed_memory.rs` checks
//! every freed heap block for served entropy.
//!
//! - [`call`]: send a request and split the reply into payload or [`ServiceError`].
//! - [`Incoming::parse`]: the server side: operation and payload of a delivered
//!   request, or the error to answer with.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod dsoftbusd;
pub mod keystored;
pub mod logd;
pub mod netstackd;
pub mod rngd;
pub mod statefs;

use core::fmt;

use ipc::{
    Endpoint, Frame, FrameKind, IpcBuffer, IpcError, Operation, ReplyToken, Request, ServiceId,
};

/// An error a service answers with, carried as the code of an error frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
#[non_exhaustive]
pub enum ServiceError {
    /// The payload does not decode for this operation.
    MalformedRequest = 1,
    /// The service does not offer this operation.
    UnknownOperation = 2,
    /// A request for zero bytes.
    EmptyRequest = 3,
    /// A request above the service's documented maximum.
    RequestTooLarge = 4,
    /// A device or a service this one depends on is missing or failed.
    Unavailable = 5,
    /// rngd's continuous health tests failed; it serves no entropy.
    HealthTestFailed = 6,
    /// Private key export is never allowed.
    ExportForbidden = 7,
    /// The service has no key (it failed closed at start).
    NoKey = 8,
    /// The service refuses this caller for this operation.
    Denied = 9,
    /// The peer could not be authenticated.
    AuthenticationFailed = 10,
    /// No session is open with that peer.
    NoSession = 11,
    /// 32 bytes that are not an acceptable Ed25519 public key: not a canonical point
    /// of prime order (provider-api's verification rule).
    InvalidKey = 12,
    /// No such record.
    NotFound = 13,
    /// Stored data failed its check (a damaged record, or damage that could be it).
    Corrupt = 14,
    /// No room: the store is full, or the caller holds its quota of records.
    Full = 15,
    /// keystored signs only for the purposes the policy grants the caller.
    PurposeDenied = 16,
    /// Made with another algorithm than this image has.
    OtherAlgorithm = 17,
    /// The connection is closed (by the peer, or reset), or was never opened.
    Closed = 18,
    /// Nothing happened before the deadline the request gave.
    TimedOut = 19,
    /// The peer refused the connection (nothing listens there, or it reset).
    Refused = 20,
    /// The port is already in use.
    InUse = 21,
    /// No socket of the caller's has that handle (a socket is usable only by the task
    /// that opened it).
    BadHandle = 22,
    /// Too much at once: a quota that frees itself (half-open handshakes, the entropy
    /// pace). Try again later.
    Busy = 23,
    /// Older than the device's anti-rollback counter allows: a record written before a
    /// newer one, brought back (a replayed slot, an older copy of the disk).
    RolledBack = 24,
    /// The handle (or other state) names something of an earlier generation of the
    /// service: its process faulted and was restarted since, and everything the old
    /// process held is gone.
    Restarted = 25,
}

impl ServiceError {
    const ALL: [ServiceError; 25] = [
        Self::MalformedRequest,
        Self::UnknownOperation,
        Self::EmptyRequest,
        Self::RequestTooLarge,
        Self::Unavailable,
        Self::HealthTestFailed,
        Self::ExportForbidden,
        Self::NoKey,
        Self::Denied,
        Self::AuthenticationFailed,
        Self::NoSession,
        Self::InvalidKey,
        Self::NotFound,
        Self::Corrupt,
        Self::Full,
        Self::PurposeDenied,
        Self::OtherAlgorithm,
        Self::Closed,
        Self::TimedOut,
        Self::Refused,
        Self::InUse,
        Self::BadHandle,
        Self::Busy,
        Self::RolledBack,
        Self::Restarted,
    ];

    /// The error with wire code `code`.
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|e| *e as u16 == code)
    }

    /// The wire code.
    pub const fn code(self) -> u16 {
        self as u16
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MalformedRequest => "malformed request",
            Self::UnknownOperation => "unknown operation",
            Self::EmptyRequest => "empty request",
            Self::RequestTooLarge => "request too large",
            Self::Unavailable => "unavailable",
            Self::HealthTestFailed => "entropy health test failed",
            Self::ExportForbidden => "private key export is forbidden",
            Self::NoKey => "no key",
            Self::Denied => "denied",
            Self::AuthenticationFailed => "authentication failed",
            Self::NoSession => "no session",
            Self::InvalidKey => "not a canonical Ed25519 point of prime order",
            Self::NotFound => "no such record",
            Self::Corrupt => "stored data failed its check",
            Self::Full => "no room",
            Self::PurposeDenied => "signing purpose not granted",
            Self::OtherAlgorithm => "made with another algorithm than this image has",
            Self::Closed => "connection closed",
            Self::TimedOut => "timed out",
            Self::Refused => "connection refused",
            Self::InUse => "port in use",
            Self::BadHandle => "no such socket of the caller's",
            Self::Busy => "busy: try again later",
            Self::RolledBack => "older than the device's rollback counter allows",
            Self::Restarted => "of an earlier generation of the service: it was restarted since",
        })
    }
}

/// Why a client call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// The kernel refused or could not carry the call.
    Ipc(IpcError),
    /// The service answered with an error.
    Service(ServiceError),
    /// The service answered with a frame that is not a reply, or an unknown error
    /// code, or a payload of the wrong shape.
    MalformedReply,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ipc(e) => write!(f, "ipc: {e}"),
            Self::Service(e) => write!(f, "service: {e}"),
            Self::MalformedReply => f.write_str("malformed reply"),
        }
    }
}

/// How often a service's start tries again a call that ended because the called
/// service's process ended mid-call ([`peer_restarting`]): the kernel restarts a
/// faulted service (at most 3 times in 60 s, then the device stops), so the next try
/// reaches its new process.
pub const RESTART_RETRIES: u32 = 4;
/// How long it waits before each try again.
pub const RESTART_RETRY_MS: u64 = 20;

/// Whether a call failed because the called service's process ended while the call
/// was open (the kernel restarts it; its new process may answer a new call).
pub fn peer_restarting(error: &ClientError) -> bool {
    matches!(error, ClientError::Ipc(IpcError::PeerGone))
}

/// Runs `attempt` again while it fails as `restarting` says (a service it called
/// ended mid-call), at most [`RESTART_RETRIES`] more times, [`RESTART_RETRY_MS`]
/// apart; returns the last outcome.
pub async fn across_restarts<E: Endpoint, T, Err, F: Future<Output = Result<T, Err>>>(
    ep: &E,
    mut attempt: impl FnMut() -> F,
    restarting: impl Fn(&Err) -> bool,
) -> Result<T, Err> {
    let mut outcome = attempt().await;
    for _ in 0..RESTART_RETRIES {
        match &outcome {
            Err(error) if restarting(error) => {
                pause(ep, RESTART_RETRY_MS).await;
                outcome = attempt().await;
            }
            _ => break,
        }
    }
    outcome
}

/// Lets the other tasks run for `ms` milliseconds (by the kernel's clock).
pub async fn pause<E: Endpoint>(ep: &E, ms: u64) {
    let until = ep.uptime_ms().saturating_add(ms);
    while ep.uptime_ms() < until {
        ep.yield_now().await;
    }
}

/// Sends `payload` as a request for `operation` to its service and returns the reply
/// payload, in a buffer that is wiped when dropped.
///
/// # Errors
/// [`ClientError`].
pub async fn call<E: Endpoint>(
    ep: &E,
    operation: Operation,
    payload: &[u8],
) -> Result<IpcBuffer, ClientError> {
    let request = Frame::request(operation, payload)
        .encode()
        .map_err(|e| ClientError::Ipc(IpcError::MalformedFrame(e)))?;
    let reply = ep
        .call(operation.service(), &request)
        .await
        .map_err(ClientError::Ipc)?;
    split_reply(&reply)
}

/// The payload of a reply frame, or the service error it carries.
///
/// # Errors
/// [`ClientError::Service`] for an error frame, [`ClientError::MalformedReply`] for
/// anything that is not a reply.
pub fn split_reply(reply: &[u8]) -> Result<IpcBuffer, ClientError> {
    let frame = Frame::decode(reply).map_err(|_| ClientError::MalformedReply)?;
    match frame.kind {
        FrameKind::Reply => Ok(IpcBuffer::copy_from(frame.payload)),
        FrameKind::Error => Err(ServiceError::from_code(frame.code)
            .map_or(ClientError::MalformedReply, ClientError::Service)),
        FrameKind::Request => Err(ClientError::MalformedReply),
    }
}

/// A request as a server sees it after parsing.
#[derive(Debug)]
pub struct Incoming<'a> {
    /// The kernel-stamped sender.
    pub sender: ServiceId,
    /// The operation.
    pub operation: Operation,
    /// The payload.
    pub payload: &'a [u8],
}

impl<'a> Incoming<'a> {
    /// Parses a delivered request for service `me`.
    ///
    /// # Errors
    /// [`ServiceError::MalformedRequest`] when the frame does not decode,
    /// [`ServiceError::UnknownOperation`] when its code is not an operation of `me`.
    /// Either way, the second value is the raw code, for the audit record.
    pub fn parse(me: ServiceId, request: &'a Request) -> Result<Self, (ServiceError, u16)> {
        let frame =
            Frame::decode(&request.frame).map_err(|_| (ServiceError::MalformedRequest, 0))?;
        if frame.kind != FrameKind::Request {
            return Err((ServiceError::MalformedRequest, frame.code));
        }
        match Operation::from_code(frame.code) {
            Some(operation) if operation.service() == me => Ok(Self {
                sender: request.sender,
                operation,
                payload: frame.payload,
            }),
            _ => Err((ServiceError::UnknownOperation, frame.code)),
        }
    }
}

/// Answers `token` with a reply carrying `payload`. A reply the kernel refuses (the
/// caller gave up) is not an error of the service; it is returned for the caller to
/// ignore or log.
///
/// # Errors
/// [`IpcError`] from the kernel.
pub fn reply_ok<E: Endpoint>(ep: &E, token: ReplyToken, payload: &[u8]) -> Result<(), IpcError> {
    let frame = Frame::reply(payload)
        .encode()
        .map_err(IpcError::MalformedFrame)?;
    ep.reply(token, &frame)
}

/// Answers `token` with `error`.
///
/// # Errors
/// [`IpcError`] from the kernel.
pub fn reply_err<E: Endpoint>(
    ep: &E,
    token: ReplyToken,
    error: ServiceError,
) -> Result<(), IpcError> {
    let frame = Frame::error(error.code())
        .encode()
        .map_err(IpcError::MalformedFrame)?;
    ep.reply(token, &frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_round_trip() {
        for error in ServiceError::ALL {
            assert_eq!(ServiceError::from_code(error.code()), Some(error));
        }
        assert_eq!(ServiceError::from_code(0), None);
    }

    #[test]
    fn replies_split_into_payload_or_typed_error() {
        let ok = Frame::reply(b"abc").encode().unwrap();
        assert_eq!(split_reply(&ok).unwrap(), *b"abc");
        let err = Frame::error(ServiceError::RequestTooLarge.code())
            .encode()
            .unwrap();
        assert_eq!(
            split_reply(&err),
            Err(ClientError::Service(ServiceError::RequestTooLarge))
        );
        let unknown = Frame::error(999).encode().unwrap();
        assert_eq!(split_reply(&unknown), Err(ClientError::MalformedReply));
        assert_eq!(split_reply(b"junk"), Err(ClientError::MalformedReply));
    }

    #[test]
    fn servers_parse_only_their_own_operations() {
        let request = |frame: IpcBuffer| Request {
            sender: ServiceId::Selftest,
            sender_generation: 0,
            frame,
            token: ReplyToken(1),
        };
        let query = request(Frame::request(Operation::LogdQuery, b"x").encode().unwrap());
        let parsed = Incoming::parse(ServiceId::Logd, &query).unwrap();
        assert_eq!(
            (parsed.operation, parsed.payload),
            (Operation::LogdQuery, &b"x"[..])
        );
        assert_eq!(
            Incoming::parse(ServiceId::Rngd, &query).unwrap_err(),
            (ServiceError::UnknownOperation, Operation::LogdQuery.code())
        );
        assert_eq!(
            Incoming::parse(ServiceId::Logd, &request(IpcBuffer::copy_from(b"\x01")))
                .unwrap_err()
                .0,
            ServiceError::MalformedRequest
        );
    }
}
