//! The dsoftbus wire protocol on a TCP stream (specified in `docs/protocol.md`).
//!
//! Everything on the stream is a frame: a 2-byte big-endian length, then that many
//! bytes (the Noise specification's framing). A frame carries, in order:
//!
//! 1. initiator → responder: [`Hello`] (the protocol version and the initiator's Noise
//!    protocol name);
//! 2. responder → initiator: [`HelloReply`] (a status, the responder's protocol name,
//!    and, when the status is [`HelloStatus::Ok`], its Noise static public key);
//! 3. the three Noise XK handshake messages;
//! 4. Noise transport messages, whose plaintexts are the [`AppMessage`]s.
//!
//! dsoftbusd takes frames of at most [`MAX_FRAME`] bytes: the Noise limit is 65,535,
//! and nothing in this protocol comes near 1 KiB, so a longer length field ends the
//! connection before its body is read.

use alloc::string::String;
use alloc::vec::Vec;

use provider_api::HashBackend;

/// The protocol's magic and version, first in both hello frames.
pub const MAGIC: &[u8; 4] = b"DSB1";
/// The TCP port dsoftbusd listens on.
pub const PORT: u16 = 7411;
/// The longest frame body dsoftbusd reads or writes.
pub const MAX_FRAME: usize = 1024;
/// The longest Noise protocol name in a hello.
pub const MAX_SUITE: usize = 64;

/// The first frame of a connection: the initiator's protocol name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The Noise protocol name, such as `Noise_XK_25519_ChaChaPoly_BLAKE2s`.
    pub suite: String,
}

/// What the responder says to a [`Hello`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum HelloStatus {
    /// Same suite: the Noise handshake follows.
    Ok = 0,
    /// The suites differ; the responder closes the connection.
    SuiteMismatch = 1,
    /// The responder cannot take another handshake now (its handshake quota or its
    /// entropy pace); the initiator may try again later.
    Busy = 2,
    /// Not this protocol or not this version.
    Unsupported = 3,
    /// The responder cannot make ephemeral keys: its entropy source failed. It will
    /// not recover; do not retry.
    Unavailable = 4,
}

impl HelloStatus {
    /// The status with wire code `code`.
    pub fn from_code(code: u8) -> Option<Self> {
        [
            Self::Ok,
            Self::SuiteMismatch,
            Self::Busy,
            Self::Unsupported,
            Self::Unavailable,
        ]
        .into_iter()
        .find(|s| *s as u8 == code)
    }
}

/// The second frame: the responder's answer to the hello.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelloReply {
    /// The answer.
    pub status: HelloStatus,
    /// The responder's Noise protocol name.
    pub suite: String,
    /// The responder's Noise static public key (with [`HelloStatus::Ok`] only). Not
    /// authenticated here: the identity binding in the second handshake message
    /// proves which device holds it.
    pub static_key: Option<[u8; 32]>,
}

/// Why a frame or a hello was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// A length field above [`MAX_FRAME`].
    FrameTooLong(usize),
    /// A zero length field.
    EmptyFrame,
    /// More than [`MAX_FRAME`] bytes waiting that are not a whole frame (cannot happen
    /// with a correct length check; kept as a bound).
    Overflow,
    /// Not [`MAGIC`].
    NotThisProtocol,
    /// A hello that does not decode.
    MalformedHello,
}

impl core::fmt::Display for WireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::FrameTooLong(len) => write!(f, "frame of {len} bytes exceeds {MAX_FRAME}"),
            Self::EmptyFrame => f.write_str("empty frame"),
            Self::Overflow => f.write_str("receive buffer overflow"),
            Self::NotThisProtocol => f.write_str("not dsoftbus version 1"),
            Self::MalformedHello => f.write_str("malformed hello"),
        }
    }
}

/// `len: u16 BE || body`.
///
/// # Panics
/// When `body` is longer than [`MAX_FRAME`]: frames are built by this crate only.
pub fn frame(body: &[u8]) -> Vec<u8> {
    assert!(
        body.len() <= MAX_FRAME,
        "frames this side writes are bounded"
    );
    let mut out = Vec::with_capacity(2 + body.len());
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// The Noise suites this protocol defines (`docs/protocol.md` §3): a peer's suite is
/// printed as it came only if it is one of them.
pub const SUITES: [&str; 4] = [
    "Noise_XK_25519_ChaChaPoly_BLAKE2s",
    "Noise_XK_25519_AESGCM_BLAKE2s",
    "Noise_XK_25519_ChaChaPoly_SHA256",
    "Noise_XK_25519_AESGCM_SHA256",
];

/// A suite name a peer sent, fit for the console: one of [`SUITES`] as it is,
/// anything else as what it is not, `unknown-suite:<length>B:<hash>` (the first four
/// bytes of its hash under `H`, in hex). Bytes a peer chose never reach the console.
pub fn suite_for_console<H: HashBackend>(suite: &str) -> String {
    if SUITES.contains(&suite) {
        return String::from(suite);
    }
    let hash = H::hash(&[suite.as_bytes()]);
    let mut out = alloc::format!("unknown-suite:{}B:", suite.len());
    for byte in &hash[..4] {
        out.push_str(&alloc::format!("{byte:02x}"));
    }
    out
}

pub(crate) fn suite_field(out: &mut Vec<u8>, suite: &str) {
    let bytes = suite.as_bytes();
    let len = bytes.len().min(MAX_SUITE);
    out.push(len as u8);
    out.extend_from_slice(&bytes[..len]);
}

pub(crate) fn read_suite(bytes: &[u8]) -> Result<(String, &[u8]), WireError> {
    let (&len, rest) = bytes.split_first().ok_or(WireError::MalformedHello)?;
    let len = usize::from(len);
    if len == 0 || len > MAX_SUITE || rest.len() < len {
        return Err(WireError::MalformedHello);
    }
    let (name, rest) = rest.split_at(len);
    if !name.iter().all(|b| b.is_ascii_graphic()) {
        return Err(WireError::MalformedHello);
    }
    let name = core::str::from_utf8(name).map_err(|_| WireError::MalformedHello)?;
    Ok((String::from(name), rest))
}

impl Hello {
    /// The frame body: `MAGIC || suite_len: u8 || suite`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::from(&MAGIC[..]);
        suite_field(&mut out, &self.suite);
        out
    }

    /// Parses a frame body.
    ///
    /// # Errors
    /// [`WireError::NotThisProtocol`], [`WireError::MalformedHello`].
    pub fn decode(body: &[u8]) -> Result<Self, WireError> {
        let rest = body
            .strip_prefix(&MAGIC[..])
            .ok_or(WireError::NotThisProtocol)?;
        let (suite, rest) = read_suite(rest)?;
        if !rest.is_empty() {
            return Err(WireError::MalformedHello);
        }
        Ok(Self { suite })
    }
}

impl HelloReply {
    /// The frame body: `MAGIC || status: u8 || suite_len: u8 || suite ||
    /// [static key: 32 bytes, with status Ok only]`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::from(&MAGIC[..]);
        out.push(self.status as u8);
        suite_field(&mut out, &self.suite);
        if let Some(key) = &self.static_key {
            out.extend_from_slice(key);
        }
        out
    }

    /// Parses a frame body.
    ///
    /// # Errors
    /// [`WireError::NotThisProtocol`], [`WireError::MalformedHello`].
    pub fn decode(body: &[u8]) -> Result<Self, WireError> {
        let rest = body
            .strip_prefix(&MAGIC[..])
            .ok_or(WireError::NotThisProtocol)?;
        let (&status, rest) = rest.split_first().ok_or(WireError::MalformedHello)?;
        let status = HelloStatus::from_code(status).ok_or(WireError::MalformedHello)?;
        let (suite, rest) = read_suite(rest)?;
        let static_key = match (status, rest.len()) {
            (HelloStatus::Ok, 32) => {
                let mut key = [0u8; 32];
                key.copy_from_slice(rest);
                Some(key)
            }
            (HelloStatus::Ok, _) => return Err(WireError::MalformedHello),
            (_, 0) => None,
            (_, _) => return Err(WireError::MalformedHello),
        };
        Ok(Self {
            status,
            suite,
            static_key,
        })
    }
}

/// Collects a stream's bytes into frames, never holding more than one frame.
#[derive(Debug, Default)]
pub struct FrameReader {
    buffer: Vec<u8>,
}

impl FrameReader {
    /// Bytes held that are not yet a whole frame.
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }

    /// Takes bytes from `input` until one frame is whole, and returns its body and how
    /// many bytes of `input` it used; `None` (with every byte used) when the frame is
    /// not whole yet.
    ///
    /// # Errors
    /// [`WireError::FrameTooLong`] as soon as a length field above [`MAX_FRAME`] is
    /// read, [`WireError::EmptyFrame`] for a zero length.
    pub fn push(&mut self, input: &[u8]) -> Result<(Option<Vec<u8>>, usize), WireError> {
        let mut used = 0;
        while used < input.len() {
            if self.buffer.len() < 2 {
                self.buffer.push(input[used]);
                used += 1;
                if self.buffer.len() == 2 {
                    let len = usize::from(u16::from_be_bytes([self.buffer[0], self.buffer[1]]));
                    if len > MAX_FRAME {
                        return Err(WireError::FrameTooLong(len));
                    }
                    if len == 0 {
                        return Err(WireError::EmptyFrame);
                    }
                }
                continue;
            }
            let want = usize::from(u16::from_be_bytes([self.buffer[0], self.buffer[1]]));
            let have = self.buffer.len() - 2;
            let take = (want - have).min(input.len() - used);
            self.buffer.extend_from_slice(&input[used..used + take]);
            used += take;
            if self.buffer.len() - 2 == want {
                let body = self.buffer.split_off(2);
                self.buffer.clear();
                return Ok((Some(body), used));
            }
        }
        if self.buffer.len() > 2 + MAX_FRAME {
            return Err(WireError::Overflow);
        }
        Ok((None, used))
    }
}

/// The plaintext of a transport message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppMessage<'a> {
    /// The responder's first transport message: it accepted the initiator's identity.
    Ready,
    /// A ping with its data, to be answered with a [`AppMessage::Pong`] of the same data.
    Ping(&'a [u8]),
    /// The answer to a ping.
    Pong(&'a [u8]),
    /// The sender ends the session and closes the connection.
    Bye,
    /// The answer to a message the receiver does not know.
    Unknown,
    /// A trusted peer asks the device to open its pairing window (section 11).
    PairOpen,
    /// A trusted peer asks the device to forget the device key that follows.
    Unpair(&'a [u8]),
    /// The device's answer: it did what `PAIROPEN` or `UNPAIR` asked.
    Done,
    /// The device's answer: it could not (the key was not trusted, or the store could
    /// not be written, or no setup code is provisioned).
    Refused,
}

/// `READY`.
pub const READY: &[u8] = b"READY";
/// The prefix of a ping.
pub const PING: &[u8] = b"PING";
/// The prefix of a pong.
pub const PONG: &[u8] = b"PONG";
/// `BYE`.
pub const BYE: &[u8] = b"BYE";
/// The answer to an unknown message.
pub const UNKNOWN: &[u8] = b"UNKNOWN";
/// Opens the device's pairing window.
pub const PAIR_OPEN: &[u8] = b"PAIROPEN";
/// The prefix of a request to forget a device key.
pub const UNPAIR: &[u8] = b"UNPAIR";
/// Done.
pub const DONE: &[u8] = b"DONE";
/// Refused.
pub const REFUSED: &[u8] = b"REFUSED";

impl<'a> AppMessage<'a> {
    /// Reads a plaintext: `READY`, `BYE` and `UNKNOWN` exactly, `PING`/`PONG` as
    /// prefixes of their data; `None` for anything else.
    pub fn parse(plaintext: &'a [u8]) -> Option<Self> {
        match plaintext {
            READY => Some(Self::Ready),
            BYE => Some(Self::Bye),
            UNKNOWN => Some(Self::Unknown),
            PAIR_OPEN => Some(Self::PairOpen),
            DONE => Some(Self::Done),
            REFUSED => Some(Self::Refused),
            _ => {
                if let Some(key) = plaintext.strip_prefix(UNPAIR) {
                    return Some(Self::Unpair(key));
                }
                if let Some(data) = plaintext.strip_prefix(PING) {
                    Some(Self::Ping(data))
                } else {
                    plaintext.strip_prefix(PONG).map(Self::Pong)
                }
            }
        }
    }

    /// The plaintext.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Ready => READY.to_vec(),
            Self::Ping(data) => [PING, data].concat(),
            Self::Pong(data) => [PONG, data].concat(),
            Self::Bye => BYE.to_vec(),
            Self::Unknown => UNKNOWN.to_vec(),
            Self::PairOpen => PAIR_OPEN.to_vec(),
            Self::Unpair(key) => [UNPAIR, key].concat(),
            Self::Done => DONE.to_vec(),
            Self::Refused => REFUSED.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn hellos_round_trip_and_refuse_what_is_not_theirs() {
        let hello = Hello {
            suite: "Noise_XK_25519_ChaChaPoly_BLAKE2s".into(),
        };
        assert_eq!(Hello::decode(&hello.encode()), Ok(hello.clone()));
        let reply = HelloReply {
            status: HelloStatus::Ok,
            suite: hello.suite.clone(),
            static_key: Some([7; 32]),
        };
        assert_eq!(HelloReply::decode(&reply.encode()), Ok(reply));
        let mismatch = HelloReply {
            status: HelloStatus::SuiteMismatch,
            suite: "Noise_XK_25519_AESGCM_BLAKE2s".into(),
            static_key: None,
        };
        assert_eq!(HelloReply::decode(&mismatch.encode()), Ok(mismatch));
        assert_eq!(Hello::decode(b"HTTP/1.1"), Err(WireError::NotThisProtocol));
        assert_eq!(Hello::decode(b"DSB1\x00"), Err(WireError::MalformedHello));
        assert_eq!(Hello::decode(b"DSB1\x03ab"), Err(WireError::MalformedHello));
        assert_eq!(
            Hello::decode(b"DSB1\x02a b"),
            Err(WireError::MalformedHello)
        );
        assert_eq!(
            Hello::decode(b"DSB1\x02ab!"),
            Err(WireError::MalformedHello)
        );
        assert_eq!(
            HelloReply::decode(b"DSB1\x00\x01a"),
            Err(WireError::MalformedHello),
            "Ok without a key"
        );
        assert_eq!(
            HelloReply::decode(b"DSB1\x09\x01a"),
            Err(WireError::MalformedHello)
        );
    }

    #[test]
    fn frames_are_read_whole_one_at_a_time_in_any_pieces() {
        let stream = [frame(b"hello"), frame(&[1; MAX_FRAME])].concat();
        for piece in [1, 2, 3, 700, stream.len()] {
            let mut reader = FrameReader::default();
            let mut frames = Vec::new();
            for chunk in stream.chunks(piece) {
                let mut rest = chunk;
                while !rest.is_empty() {
                    let (body, used) = reader.push(rest).unwrap();
                    rest = &rest[used..];
                    frames.extend(body);
                }
            }
            assert_eq!(frames, [b"hello".to_vec(), vec![1; MAX_FRAME]], "{piece}");
            assert_eq!(reader.pending(), 0);
        }
    }

    #[test]
    fn a_length_beyond_the_limit_is_refused_before_the_body() {
        let mut reader = FrameReader::default();
        assert_eq!(
            reader.push(&[0x04, 0x01]),
            Err(WireError::FrameTooLong(1025))
        );
        let mut reader = FrameReader::default();
        assert_eq!(
            reader.push(&[0xff, 0xff, 0]),
            Err(WireError::FrameTooLong(65535))
        );
        let mut reader = FrameReader::default();
        assert_eq!(reader.push(&[0, 0]), Err(WireError::EmptyFrame));
    }

    #[test]
    fn app_messages_parse_exactly() {
        for message in [
            AppMessage::Ready,
            AppMessage::Ping(b"abc"),
            AppMessage::Pong(b""),
            AppMessage::Bye,
            AppMessage::Unknown,
        ] {
            assert_eq!(AppMessage::parse(&message.encode()), Some(message.clone()));
        }
        assert_eq!(AppMessage::parse(b"READY!"), None);
        assert_eq!(AppMessage::parse(b"HELLO"), None);
    }
}
