//! The framing and the hello of `docs/protocol.md`, sections 2 and 3, written from the
//! document (this program shares no code with the OS).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// `DSB1`: the protocol and its version.
pub const MAGIC: &[u8; 4] = b"DSB1";
/// The longest frame body the device accepts.
pub const MAX_FRAME: usize = 1024;

/// Hello-reply statuses.
pub const STATUS_OK: u8 = 0;
/// The suites differ.
pub const STATUS_SUITE_MISMATCH: u8 = 1;
/// The device cannot take a handshake now.
pub const STATUS_BUSY: u8 = 2;
/// Not this protocol.
pub const STATUS_UNSUPPORTED: u8 = 3;
/// The device's entropy source failed: it makes no session any more.
pub const STATUS_UNAVAILABLE: u8 = 4;

/// What went wrong on the wire.
#[derive(Debug)]
pub enum WireError {
    /// The device closed the connection (end of stream).
    Closed,
    /// The device did not answer in time: what this peer waited for, and how long.
    Slow {
        /// The frame this peer waited for.
        waiting_for: &'static str,
        /// How long it waited.
        waited: Duration,
    },
    /// A socket error.
    Io(std::io::Error),
    /// A frame the device should not send.
    Malformed(&'static str),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Closed => f.write_str("the device closed the connection"),
            Self::Slow {
                waiting_for,
                waited,
            } => write!(
                f,
                "slow: no {waiting_for} from the device within {:.1} s",
                waited.as_secs_f64()
            ),
            Self::Io(e) => write!(f, "{e}"),
            Self::Malformed(what) => write!(f, "malformed: {what}"),
        }
    }
}

impl From<std::io::Error> for WireError {
    fn from(error: std::io::Error) -> Self {
        if error.kind() == ErrorKind::UnexpectedEof {
            Self::Closed
        } else {
            Self::Io(error)
        }
    }
}

/// Writes `len: u16 big-endian || body`.
pub fn write_frame(stream: &mut TcpStream, body: &[u8]) -> Result<(), WireError> {
    let len = u16::try_from(body.len()).map_err(|_| WireError::Malformed("frame over 65535"))?;
    let mut frame = Vec::with_capacity(2 + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(body);
    stream.write_all(&frame)?;
    Ok(())
}

/// Reads one frame, `waiting_for` naming it should the device be slow; refuses a
/// length above [`MAX_FRAME`].
pub fn read_frame(stream: &mut TcpStream, waiting_for: &'static str) -> Result<Vec<u8>, WireError> {
    let started = Instant::now();
    let slow = |error: std::io::Error| match error.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => WireError::Slow {
            waiting_for,
            waited: started.elapsed(),
        },
        _ => WireError::from(error),
    };
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).map_err(slow)?;
    let len = usize::from(u16::from_be_bytes(len));
    if len == 0 || len > MAX_FRAME {
        return Err(WireError::Malformed("frame length"));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).map_err(slow)?;
    Ok(body)
}

/// The initiator's hello: `DSB1 || suite_len: u8 || suite`.
pub fn hello(suite: &str) -> Vec<u8> {
    let mut body = MAGIC.to_vec();
    body.push(suite.len() as u8);
    body.extend_from_slice(suite.as_bytes());
    body
}

/// The responder's hello reply.
#[derive(Debug)]
pub struct HelloReply {
    /// `STATUS_*`.
    pub status: u8,
    /// The device's suite.
    pub suite: String,
    /// The device's Noise static key (status OK only).
    pub static_key: Option<[u8; 32]>,
}

/// Parses `DSB1 || status: u8 || suite_len: u8 || suite || [static key: 32]`.
pub fn parse_hello_reply(body: &[u8]) -> Result<HelloReply, WireError> {
    let rest = body
        .strip_prefix(&MAGIC[..])
        .ok_or(WireError::Malformed("not DSB1"))?;
    let (&status, rest) = rest
        .split_first()
        .ok_or(WireError::Malformed("no status"))?;
    let (&len, rest) = rest.split_first().ok_or(WireError::Malformed("no suite"))?;
    let len = usize::from(len);
    if rest.len() < len {
        return Err(WireError::Malformed("short suite"));
    }
    let (suite, rest) = rest.split_at(len);
    let suite = String::from_utf8(suite.to_vec()).map_err(|_| WireError::Malformed("suite"))?;
    let static_key = match (status, rest.len()) {
        (STATUS_OK, 32) => Some(rest.try_into().expect("32 bytes")),
        (STATUS_OK, _) => return Err(WireError::Malformed("OK without a 32-byte key")),
        (_, 0) => None,
        _ => return Err(WireError::Malformed("trailing bytes")),
    };
    Ok(HelloReply {
        status,
        suite,
        static_key,
    })
}
