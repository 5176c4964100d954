//! A session with a device, as `docs/protocol.md` section 4 and 5 specify it: snow's
//! Noise XK as initiator, the identity binding both ways (ed25519-dalek), `READY`,
//! pings, `BYE`.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::wire::{self, WireError};

/// The prologue both sides mix into the handshake.
pub const PROLOGUE: &[u8] = b"dsoftbus/v1";
/// What a device key signs: this prefix, then the 32-byte Noise static public key.
pub const BINDING_PREFIX: &[u8] = b"dsoftbus/v1 noise static key binding\0";
/// How long one answer may take: a device answers in milliseconds, but an emulated
/// one (QEMU's TCG) on a loaded 2-core host may not run for seconds; a longer wait
/// costs nothing when the answer comes, and a missing one is named (`WireError::Slow`).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a session failed.
#[derive(Debug)]
pub enum SessionError {
    /// The wire.
    Wire(WireError),
    /// snow refused a message.
    Noise(snow::Error),
    /// The device speaks another suite (its name).
    SuiteMismatch(String),
    /// The device said Busy.
    Busy,
    /// The device said the hello is not its protocol.
    Unsupported,
    /// The device can make no session: its entropy source failed.
    Unavailable,
    /// The device's binding does not name the expected key or does not verify.
    Binding(&'static str),
    /// An answer that is not the one the protocol calls for.
    Unexpected(&'static str),
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Wire(e) => write!(f, "{e}"),
            Self::Noise(e) => write!(f, "noise: {e}"),
            Self::SuiteMismatch(theirs) => write!(f, "the device speaks {theirs}"),
            Self::Busy => f.write_str("the device is busy"),
            Self::Unsupported => f.write_str("the device does not take this hello"),
            Self::Unavailable => f.write_str("the device has no entropy for a session"),
            Self::Binding(why) => write!(f, "the device's binding: {why}"),
            Self::Unexpected(what) => write!(f, "unexpected: {what}"),
        }
    }
}

impl From<WireError> for SessionError {
    fn from(error: WireError) -> Self {
        Self::Wire(error)
    }
}

impl From<snow::Error> for SessionError {
    fn from(error: snow::Error) -> Self {
        Self::Noise(error)
    }
}

/// This peer: its device identity and the suite it speaks.
pub struct Peer {
    /// The Ed25519 device key.
    pub identity: SigningKey,
    /// The Noise protocol name.
    pub suite: String,
}

/// An established session.
pub struct Session {
    stream: TcpStream,
    transport: snow::TransportState,
    /// The handshake hash.
    pub handshake_hash: Vec<u8>,
    /// From the connection to `READY`.
    pub handshake_time: Duration,
}

/// The binding payload: device key, then its signature over prefix || static key.
fn binding(identity: &SigningKey, static_key: &[u8]) -> Vec<u8> {
    let message = [BINDING_PREFIX, static_key].concat();
    let signature = identity.sign(&message);
    [
        identity.verifying_key().as_bytes().as_slice(),
        &signature.to_bytes(),
    ]
    .concat()
}

/// Checks the device's binding: its key is `expected`, and it signed `static_key`.
fn check_binding(
    payload: &[u8],
    static_key: &[u8],
    expected: &[u8; 32],
) -> Result<(), SessionError> {
    if payload.len() != 96 {
        return Err(SessionError::Binding("not 96 bytes"));
    }
    if payload[..32] != expected[..] {
        return Err(SessionError::Binding("another device key"));
    }
    let key = VerifyingKey::from_bytes(expected).map_err(|_| SessionError::Binding("bad key"))?;
    let signature = Signature::from_bytes(payload[32..].try_into().expect("64 bytes"));
    key.verify_strict(&[BINDING_PREFIX, static_key].concat(), &signature)
        .map_err(|_| SessionError::Binding("the signature does not verify"))
}

/// Connects to `addr` with a timeout on every read.
pub fn dial(addr: SocketAddr) -> Result<TcpStream, SessionError> {
    dial_within(addr, ANSWER_TIMEOUT)
}

/// Connects to `addr`, with `answer` as the timeout on the connection and every read.
pub fn dial_within(addr: SocketAddr, answer: Duration) -> Result<TcpStream, SessionError> {
    let stream = TcpStream::connect_timeout(&addr, answer).map_err(WireError::from)?;
    stream
        .set_read_timeout(Some(answer))
        .map_err(WireError::from)?;
    stream.set_nodelay(true).map_err(WireError::from)?;
    Ok(stream)
}

impl Peer {
    /// Opens a session with the device `expected` at `addr`.
    ///
    /// # Errors
    /// [`SessionError`].
    pub fn connect(&self, addr: SocketAddr, expected: &[u8; 32]) -> Result<Session, SessionError> {
        self.connect_within(addr, expected, ANSWER_TIMEOUT)
    }

    /// Opens a session with the device `expected` at `addr`, waiting at most `answer`
    /// for each of the device's answers (and for the pongs of the session).
    ///
    /// # Errors
    /// [`SessionError`]; a missing answer is `WireError::Slow`.
    pub fn connect_within(
        &self,
        addr: SocketAddr,
        expected: &[u8; 32],
        answer: Duration,
    ) -> Result<Session, SessionError> {
        let started = Instant::now();
        let mut stream = dial_within(addr, answer)?;
        let (transport, handshake_hash) = self.handshake(&mut stream, expected)?;
        Ok(Session {
            stream,
            transport,
            handshake_hash,
            handshake_time: started.elapsed(),
        })
    }

    /// Hello, the three handshake messages, `READY`.
    fn handshake(
        &self,
        stream: &mut TcpStream,
        expected: &[u8; 32],
    ) -> Result<(snow::TransportState, Vec<u8>), SessionError> {
        wire::write_frame(stream, &wire::hello(&self.suite))?;
        let reply = wire::parse_hello_reply(&wire::read_frame(stream, "hello reply")?)?;
        let responder_static = match reply.status {
            wire::STATUS_OK => reply.static_key.expect("parsed with the key"),
            wire::STATUS_SUITE_MISMATCH => return Err(SessionError::SuiteMismatch(reply.suite)),
            wire::STATUS_BUSY => return Err(SessionError::Busy),
            wire::STATUS_UNSUPPORTED => return Err(SessionError::Unsupported),
            wire::STATUS_UNAVAILABLE => return Err(SessionError::Unavailable),
            _ => return Err(SessionError::Unexpected("an unknown hello status")),
        };
        let params: snow::params::NoiseParams = self.suite.parse()?;
        let builder = snow::Builder::new(params.clone());
        let keypair = builder.generate_keypair()?;
        let mut noise = snow::Builder::new(params)
            .local_private_key(&keypair.private)?
            .remote_public_key(&responder_static)?
            .prologue(PROLOGUE)?
            .build_initiator()?;
        let mut buffer = vec![0u8; 65535];
        // -> e, es (empty payload)
        let len = noise.write_message(&[], &mut buffer)?;
        wire::write_frame(stream, &buffer[..len])?;
        // <- e, ee (the device's binding)
        let message_2 = wire::read_frame(stream, "handshake message 2")?;
        let mut payload = vec![0u8; message_2.len()];
        let len = noise.read_message(&message_2, &mut payload)?;
        check_binding(&payload[..len], &responder_static, expected)?;
        // -> s, se (this peer's binding)
        let len = noise.write_message(&binding(&self.identity, &keypair.public), &mut buffer)?;
        wire::write_frame(stream, &buffer[..len])?;
        let hash = noise.get_handshake_hash().to_vec();
        let mut transport = noise.into_transport_mode()?;
        let ready = wire::read_frame(stream, "READY")?;
        let mut plaintext = vec![0u8; ready.len()];
        let len = transport.read_message(&ready, &mut plaintext)?;
        if &plaintext[..len] != b"READY" {
            return Err(SessionError::Unexpected(
                "the first transport message is not READY",
            ));
        }
        Ok((transport, hash))
    }
}

impl Session {
    fn send(&mut self, plaintext: &[u8]) -> Result<(), SessionError> {
        let mut buffer = vec![0u8; plaintext.len() + 16];
        let len = self.transport.write_message(plaintext, &mut buffer)?;
        wire::write_frame(&mut self.stream, &buffer[..len])?;
        Ok(())
    }

    /// Sends `plaintext` and returns the device's answer, decrypted.
    ///
    /// # Errors
    /// [`SessionError`].
    pub fn request(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, SessionError> {
        self.send(plaintext)?;
        let answer = wire::read_frame(&mut self.stream, "the answer")?;
        let mut buffer = vec![0u8; answer.len()];
        let len = self.transport.read_message(&answer, &mut buffer)?;
        buffer.truncate(len);
        Ok(buffer)
    }

    /// Sends `PING<data>` and checks the `PONG<data>` that answers it.
    ///
    /// # Errors
    /// [`SessionError`].
    pub fn ping(&mut self, data: &[u8]) -> Result<Duration, SessionError> {
        let started = Instant::now();
        self.send(&[b"PING", data].concat())?;
        let answer = wire::read_frame(&mut self.stream, "PONG")?;
        let mut plaintext = vec![0u8; answer.len()];
        let len = self.transport.read_message(&answer, &mut plaintext)?;
        if plaintext[..len] != [b"PONG", data].concat()[..] {
            return Err(SessionError::Unexpected(
                "the answer is not the PONG of the PING",
            ));
        }
        Ok(started.elapsed())
    }

    /// Stays silent until the device ends the session for being idle (`docs/protocol.md`
    /// section 7): its `BYE`, then its close. Returns how long after this peer's last
    /// message the `BYE` came, and how long after that the connection closed. Waits
    /// at most `limit` for each.
    ///
    /// # Errors
    /// [`SessionError`]: nothing within `limit` (named), a frame that is not `BYE`, or
    /// a connection that ends without one.
    pub fn await_idle_end(mut self, limit: Duration) -> Result<(Duration, Duration), SessionError> {
        let quiet_since = Instant::now();
        self.stream
            .set_read_timeout(Some(limit))
            .map_err(WireError::from)?;
        let frame = wire::read_frame(&mut self.stream, "BYE after the idle timeout")?;
        let bye_after = quiet_since.elapsed();
        let mut plaintext = vec![0u8; frame.len()];
        let len = self.transport.read_message(&frame, &mut plaintext)?;
        if &plaintext[..len] != b"BYE" {
            return Err(SessionError::Unexpected(
                "a message other than BYE while idle",
            ));
        }
        match wire::read_frame(&mut self.stream, "close after the idle BYE") {
            Err(WireError::Closed) => Ok((bye_after, quiet_since.elapsed() - bye_after)),
            Err(WireError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                Ok((bye_after, quiet_since.elapsed() - bye_after))
            }
            Err(other) => Err(other.into()),
            Ok(_) => Err(SessionError::Unexpected("a frame after the idle BYE")),
        }
    }

    /// Ends the session with `BYE` and closes the connection; the device must close
    /// its side too.
    ///
    /// # Errors
    /// [`SessionError`].
    pub fn bye(mut self) -> Result<(), SessionError> {
        self.send(b"BYE")?;
        match wire::read_frame(&mut self.stream, "close after BYE") {
            Err(WireError::Closed) => Ok(()),
            Err(other) => Err(other.into()),
            Ok(_) => Err(SessionError::Unexpected("a frame after BYE")),
        }
    }
}
