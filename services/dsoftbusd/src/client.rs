//! The initiating side of a dsoftbus session: a node with its own device identity,
//! reaching dsoftbusd over TCP through netstackd ([`connect_tcp`], the wire protocol
//! of `docs/protocol.md`) or over IPC through `TRANSPORT` ([`connect`]).
//!
//! Used by the selftest's node in the image and by the host tests. Both take a
//! `tamper` hook that sees every handshake message on its way, so the negative tests
//! can flip bits, truncate or pad them at each stage.

use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;

use ipc::{Endpoint, IpcBuffer};
use noise_xk::{Initiator, NoiseError, Transport};
use provider_api::{
    HashBackend, NoiseAead, Provider, SecretBytes, Seed, SignatureError, SigningKey, VerifyingKey,
    X25519PublicKey, X25519SecretKey,
};
use service_api::netstackd::{self, Handle, MAX_IO, SocketAddr};
use service_api::{ClientError, ServiceError, dsoftbusd, rngd};

use crate::PROLOGUE;
use crate::binding::{Binding, BindingError};
use crate::wire::{AppMessage, FrameReader, Hello, HelloReply, HelloStatus};

/// A node: a device identity, a Noise static key, and the binding between them.
pub struct Node<P: Provider> {
    static_key: Rc<X25519SecretKey<P::Kx>>,
    binding: Binding,
}

impl<P: Provider> Node<P> {
    /// A node whose device key comes from `identity` and whose static key comes from
    /// `static_entropy`, the first signing the second.
    ///
    /// # Errors
    /// [`SignatureError::ZeroSeed`].
    pub fn new(identity: &Seed, static_entropy: &SecretBytes<32>) -> Result<Self, SignatureError> {
        let device = SigningKey::<P::Sig>::from_seed(identity)?;
        let static_key = X25519SecretKey::from_entropy(static_entropy);
        let binding = Binding::sign(&device, static_key.public_key());
        Ok(Self {
            static_key: Rc::new(static_key),
            binding,
        })
    }

    /// A node presenting `binding` for `static_key`, whether or not it covers it (the
    /// negative tests forge bindings this way).
    pub fn from_parts(static_key: X25519SecretKey<P::Kx>, binding: Binding) -> Self {
        Self {
            static_key: Rc::new(static_key),
            binding,
        }
    }

    /// The device public key this node presents.
    pub fn device_key(&self) -> [u8; 32] {
        self.binding.device_key
    }

    /// The node's Noise static public key.
    pub fn static_public(&self) -> X25519PublicKey {
        *self.static_key.public_key()
    }
}

/// A handshake message on its way, as the tamper hook sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The first message, before it is sent.
    Message1,
    /// The second message, as received, before it is read.
    Message2,
    /// The third message, before it is sent.
    Message3,
}

/// Why a connection failed, and who refused it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectError {
    /// dsoftbusd (or the kernel, netstackd or rngd) refused over IPC.
    Refused(ClientError),
    /// This node refused dsoftbusd's message.
    Noise(NoiseError),
    /// This node refused dsoftbusd's identity.
    Identity(BindingError),
    /// dsoftbusd closed the connection while this node waited for its answer to
    /// `stage` (how a responder refuses on TCP: no answer, no oracle).
    ClosedAfter(Stage),
    /// dsoftbusd speaks another Noise suite; its name.
    SuiteMismatch(String),
    /// dsoftbusd cannot take another handshake now.
    Busy,
    /// dsoftbusd cannot make ephemeral keys any more (its entropy source failed).
    Unavailable,
    /// Something that is not this protocol, or no answer in time.
    Protocol(&'static str),
}

impl core::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Refused(e) => write!(f, "refused: {e}"),
            Self::Noise(e) => write!(f, "{e}"),
            Self::Identity(e) => write!(f, "{e}"),
            Self::ClosedAfter(stage) => write!(f, "closed by the responder after {stage:?}"),
            Self::SuiteMismatch(theirs) => write!(f, "the responder speaks {theirs}"),
            Self::Busy => f.write_str("the responder is busy"),
            Self::Unavailable => f.write_str("the responder has no entropy for a session"),
            Self::Protocol(what) => write!(f, "protocol: {what}"),
        }
    }
}

async fn fresh_entropy<E: Endpoint>(ep: &E) -> Result<SecretBytes<32>, ConnectError> {
    let entropy = rngd::get_entropy(ep, 32)
        .await
        .map_err(ConnectError::Refused)?;
    SecretBytes::from_fill(|e: &mut [u8; 32]| {
        e.copy_from_slice(&entropy);
        Ok::<(), ()>(())
    })
    .map_err(|()| ConnectError::Refused(ClientError::MalformedReply))
}

// -------------------------------------------------------------------------- IPC

/// An established session over IPC.
pub struct Session<A: NoiseAead> {
    id: u32,
    transport: Transport<A>,
    /// dsoftbusd's ephemeral public key for this session.
    pub responder_ephemeral: [u8; 32],
    /// This node's ephemeral public key for this session.
    pub initiator_ephemeral: [u8; 32],
}

/// Connects `node` to dsoftbusd over IPC as session `id`. dsoftbusd's identity must
/// be `responder` (its static key from `DISCOVER`) vouched for by a device key in
/// `trusted`. The ephemeral key comes from rngd. A handshake this node abandons is
/// closed at dsoftbusd (an empty `TRANSPORT`), so it holds no half-open slot.
///
/// # Errors
/// [`ConnectError`].
pub async fn connect<P: Provider, H: HashBackend, E: Endpoint>(
    ep: &E,
    node: &Node<P>,
    id: u32,
    responder: &X25519PublicKey,
    trusted: &[VerifyingKey<P::Sig>],
    mut tamper: impl FnMut(Stage, &mut Vec<u8>),
) -> Result<Session<P::Aead>, ConnectError> {
    let ephemeral = fresh_entropy(ep).await?;
    let initiator =
        Initiator::<P::Kx, P::Aead, H>::new(PROLOGUE, Rc::clone(&node.static_key), *responder);
    let (awaiting, mut message_1) = initiator
        .write_message_1(&ephemeral, &[])
        .map_err(ConnectError::Noise)?;
    let mut initiator_ephemeral = [0u8; 32];
    initiator_ephemeral.copy_from_slice(&message_1[..32]);
    tamper(Stage::Message1, &mut message_1);
    // Handshake messages are public (ephemeral keys, ciphertext): a plain copy is fine.
    let mut message_2 = dsoftbusd::transport(ep, id, &message_1)
        .await
        .map_err(ConnectError::Refused)?
        .to_vec();
    let abandon = async |error: ConnectError| {
        let _ = dsoftbusd::transport(ep, id, &[]).await;
        error
    };
    tamper(Stage::Message2, &mut message_2);
    let (ready, payload) = match awaiting.read_message_2(&message_2) {
        Ok(done) => done,
        Err(error) => return Err(abandon(ConnectError::Noise(error)).await),
    };
    if let Err(error) =
        Binding::decode(&payload).and_then(|binding| binding.verify::<P::Sig>(responder, trusted))
    {
        return Err(abandon(ConnectError::Identity(error)).await);
    }
    let (transport, mut message_3) = ready
        .write_message_3(&node.binding.encode())
        .map_err(ConnectError::Noise)?;
    tamper(Stage::Message3, &mut message_3);
    dsoftbusd::transport(ep, id, &message_3)
        .await
        .map_err(ConnectError::Refused)?;
    let mut responder_ephemeral = [0u8; 32];
    responder_ephemeral.copy_from_slice(&message_2[..32]);
    Ok(Session {
        id,
        transport,
        responder_ephemeral,
        initiator_ephemeral,
    })
}

impl<A: NoiseAead> Session<A> {
    /// Encrypts `PING<data>` as the next transport message, without sending it.
    ///
    /// # Errors
    /// [`NoiseError`].
    pub fn seal_ping(&mut self, data: &[u8]) -> Result<Vec<u8>, NoiseError> {
        self.transport.encrypt(&AppMessage::Ping(data).encode())
    }

    /// Sends one transport message as it is and returns dsoftbusd's raw answer.
    ///
    /// # Errors
    /// dsoftbusd's refusal.
    pub async fn send_raw<E: Endpoint>(
        &self,
        ep: &E,
        message: &[u8],
    ) -> Result<IpcBuffer, ClientError> {
        dsoftbusd::transport(ep, self.id, message).await
    }

    /// Decrypts dsoftbusd's answer and returns the data of its `PONG`.
    ///
    /// # Errors
    /// [`NoiseError`]; an answer that is not a `PONG` is `Authentication`.
    pub fn open_pong(&mut self, answer: &[u8]) -> Result<Vec<u8>, NoiseError> {
        open_pong(&mut self.transport, answer)
    }

    /// Sends `PING<data>` and returns the data of dsoftbusd's `PONG`.
    ///
    /// # Errors
    /// [`ConnectError`].
    pub async fn ping<E: Endpoint>(
        &mut self,
        ep: &E,
        data: &[u8],
    ) -> Result<Vec<u8>, ConnectError> {
        let message = self.seal_ping(data).map_err(ConnectError::Noise)?;
        let answer = self
            .send_raw(ep, &message)
            .await
            .map_err(ConnectError::Refused)?;
        self.open_pong(&answer).map_err(ConnectError::Noise)
    }

    /// Ends the session at dsoftbusd.
    ///
    /// # Errors
    /// dsoftbusd's refusal.
    pub async fn close<E: Endpoint>(self, ep: &E) -> Result<(), ClientError> {
        dsoftbusd::transport(ep, self.id, &[]).await.map(|_| ())
    }

    /// The handshake hash both sides share.
    pub fn handshake_hash(&self) -> &[u8; 32] {
        self.transport.handshake_hash()
    }
}

fn open_pong<A: NoiseAead>(
    transport: &mut Transport<A>,
    answer: &[u8],
) -> Result<Vec<u8>, NoiseError> {
    let plaintext = transport.decrypt(answer)?;
    match AppMessage::parse(&plaintext) {
        Some(AppMessage::Pong(data)) => Ok(data.to_vec()),
        _ => Err(NoiseError::Authentication),
    }
}

// -------------------------------------------------------------------------- TCP

/// How long the node waits for each answer, in netstackd `RECV` waits.
const ANSWER_WAIT_MS: u16 = 1_000;
/// `RECV` waits per answer before the node gives up.
const ANSWER_WAITS: usize = 2;

/// A TCP connection to dsoftbusd, framed.
pub struct Stream {
    handle: Handle,
    reader: FrameReader,
    /// Received bytes not yet taken into a frame.
    pending: Vec<u8>,
}

/// `len: u16 BE || body`, the length as it is (an attack may send a body whose
/// length field lies: a body over 65,535 bytes wraps).
pub fn frame_unchecked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + body.len());
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
    out
}

impl Stream {
    /// Opens a connection to `remote`.
    ///
    /// # Errors
    /// netstackd's refusal (`Refused` when nothing listens).
    pub async fn open<E: Endpoint>(ep: &E, remote: SocketAddr) -> Result<Self, ClientError> {
        let (handle, _) = netstackd::connect(ep, remote, ANSWER_WAIT_MS).await?;
        Ok(Self {
            handle,
            reader: FrameReader::default(),
            pending: Vec::new(),
        })
    }

    /// A connection this task already holds (one it accepted, say).
    pub fn from_handle(handle: Handle) -> Self {
        Self {
            handle,
            reader: FrameReader::default(),
            pending: Vec::new(),
        }
    }

    /// netstackd's handle of the connection.
    pub fn handle(&self) -> Handle {
        self.handle
    }

    /// Sends bytes as they are.
    ///
    /// # Errors
    /// netstackd's refusal.
    pub async fn send_bytes<E: Endpoint>(&self, ep: &E, bytes: &[u8]) -> Result<(), ClientError> {
        netstackd::send_all(ep, self.handle, bytes, ANSWER_WAIT_MS).await
    }

    /// Sends one frame.
    ///
    /// # Errors
    /// netstackd's refusal.
    pub async fn send<E: Endpoint>(&self, ep: &E, body: &[u8]) -> Result<(), ClientError> {
        self.send_bytes(ep, &frame_unchecked(body)).await
    }

    /// The next frame, or `None` when dsoftbusd closed the connection.
    ///
    /// # Errors
    /// `Protocol` for a malformed frame or no frame in time; netstackd's refusal.
    pub async fn recv<E: Endpoint>(&mut self, ep: &E) -> Result<Option<Vec<u8>>, ConnectError> {
        let mut waits = 0;
        loop {
            if !self.pending.is_empty() {
                let (body, used) = self
                    .reader
                    .push(&self.pending)
                    .map_err(|_| ConnectError::Protocol("a frame dsoftbusd would not send"))?;
                self.pending.drain(..used);
                if let Some(body) = body {
                    return Ok(Some(body));
                }
            }
            if waits == ANSWER_WAITS {
                return Err(ConnectError::Protocol("no answer in time"));
            }
            match netstackd::recv(ep, self.handle, MAX_IO as u16, ANSWER_WAIT_MS).await {
                Ok(bytes) => self.pending.extend_from_slice(&bytes),
                Err(ClientError::Service(ServiceError::TimedOut)) => waits += 1,
                Err(ClientError::Service(ServiceError::Closed)) => return Ok(None),
                Err(error) => return Err(ConnectError::Refused(error)),
            }
        }
    }

    /// Closes the connection (a reset when `abort`).
    pub async fn close<E: Endpoint>(self, ep: &E, abort: bool) {
        let _ = netstackd::close(ep, self.handle, abort).await;
    }
}

/// An established session over TCP.
pub struct TcpSession<A: NoiseAead> {
    stream: Stream,
    transport: Transport<A>,
    /// dsoftbusd's ephemeral public key for this session.
    pub responder_ephemeral: [u8; 32],
    /// This node's ephemeral public key for this session.
    pub initiator_ephemeral: [u8; 32],
}

/// What the node believes about the responder.
#[derive(Clone, Copy, Debug)]
pub enum Believed {
    /// The static key the responder's hello reply carries.
    FromHello,
    /// This key, whatever the hello says (a node that believes in another
    /// responder: an impostor's key, or a stale one).
    Key(X25519PublicKey),
}

/// Connects `node` to dsoftbusd at `remote` over TCP: hello, the three handshake
/// messages, and dsoftbusd's `READY`. dsoftbusd's binding must name a device key in
/// `trusted`. The node's ephemeral key comes from rngd. On any failure the
/// connection is closed.
///
/// # Errors
/// [`ConnectError`].
pub async fn connect_tcp<P: Provider, H: HashBackend, E: Endpoint>(
    ep: &E,
    node: &Node<P>,
    remote: SocketAddr,
    believed: Believed,
    trusted: &[VerifyingKey<P::Sig>],
    tamper: impl FnMut(Stage, &mut Vec<u8>),
) -> Result<TcpSession<P::Aead>, ConnectError> {
    let mut stream = Stream::open(ep, remote)
        .await
        .map_err(ConnectError::Refused)?;
    let result = async {
        handshake_tcp::<P, H, E>(ep, node, &mut stream, believed, trusted, None, tamper).await
    }
    .await;
    finish(ep, stream, result).await
}

/// [`connect_tcp`] with the node's ephemeral key made from `ephemeral`, not from rngd:
/// a node with its own entropy, as a peer on another device has.
///
/// # Errors
/// [`ConnectError`].
pub async fn connect_tcp_with_ephemeral<P: Provider, H: HashBackend, E: Endpoint>(
    ep: &E,
    node: &Node<P>,
    remote: SocketAddr,
    trusted: &[VerifyingKey<P::Sig>],
    ephemeral: SecretBytes<32>,
) -> Result<TcpSession<P::Aead>, ConnectError> {
    let mut stream = Stream::open(ep, remote)
        .await
        .map_err(ConnectError::Refused)?;
    let result = handshake_tcp::<P, H, E>(
        ep,
        node,
        &mut stream,
        Believed::FromHello,
        trusted,
        Some(ephemeral),
        |_, _| {},
    )
    .await;
    finish(ep, stream, result).await
}

async fn finish<A: NoiseAead, E: Endpoint>(
    ep: &E,
    stream: Stream,
    result: Result<Handshaken<A>, ConnectError>,
) -> Result<TcpSession<A>, ConnectError> {
    match result {
        Ok((transport, responder_ephemeral, initiator_ephemeral)) => Ok(TcpSession {
            stream,
            transport,
            responder_ephemeral,
            initiator_ephemeral,
        }),
        Err(error) => {
            stream.close(ep, true).await;
            Err(error)
        }
    }
}

/// A send that failed because dsoftbusd already closed the connection (it refused
/// the length field before the body arrived) is its refusal of `stage`.
fn closed_or(error: ClientError, stage: Stage) -> ConnectError {
    match error {
        ClientError::Service(ServiceError::Closed) => ConnectError::ClosedAfter(stage),
        other => ConnectError::Refused(other),
    }
}

type Handshaken<A> = (Transport<A>, [u8; 32], [u8; 32]);

async fn handshake_tcp<P: Provider, H: HashBackend, E: Endpoint>(
    ep: &E,
    node: &Node<P>,
    stream: &mut Stream,
    believed: Believed,
    trusted: &[VerifyingKey<P::Sig>],
    ephemeral: Option<SecretBytes<32>>,
    mut tamper: impl FnMut(Stage, &mut Vec<u8>),
) -> Result<Handshaken<P::Aead>, ConnectError> {
    let refused = ConnectError::Refused;
    let suite = noise_xk::protocol_name::<P::Aead, H>();
    stream
        .send(ep, &Hello { suite }.encode())
        .await
        .map_err(refused)?;
    let reply = stream
        .recv(ep)
        .await?
        .ok_or(ConnectError::Protocol("closed before the hello reply"))?;
    let reply =
        HelloReply::decode(&reply).map_err(|_| ConnectError::Protocol("malformed hello reply"))?;
    let responder = match (reply.status, reply.static_key) {
        (HelloStatus::Ok, Some(key)) => match believed {
            Believed::FromHello => X25519PublicKey(key),
            Believed::Key(key) => key,
        },
        (HelloStatus::SuiteMismatch, _) => return Err(ConnectError::SuiteMismatch(reply.suite)),
        (HelloStatus::Busy, _) => return Err(ConnectError::Busy),
        (HelloStatus::Unavailable, _) => return Err(ConnectError::Unavailable),
        _ => return Err(ConnectError::Protocol("hello refused")),
    };
    let ephemeral = match ephemeral {
        Some(ephemeral) => ephemeral,
        None => fresh_entropy(ep).await?,
    };
    let initiator =
        Initiator::<P::Kx, P::Aead, H>::new(PROLOGUE, Rc::clone(&node.static_key), responder);
    let (awaiting, mut message_1) = initiator
        .write_message_1(&ephemeral, &[])
        .map_err(ConnectError::Noise)?;
    let mut initiator_ephemeral = [0u8; 32];
    initiator_ephemeral.copy_from_slice(&message_1[..32]);
    tamper(Stage::Message1, &mut message_1);
    stream
        .send(ep, &message_1)
        .await
        .map_err(|e| closed_or(e, Stage::Message1))?;
    let mut message_2 = stream
        .recv(ep)
        .await?
        .ok_or(ConnectError::ClosedAfter(Stage::Message1))?;
    tamper(Stage::Message2, &mut message_2);
    let (ready, payload) = awaiting
        .read_message_2(&message_2)
        .map_err(ConnectError::Noise)?;
    Binding::decode(&payload)
        .and_then(|binding| binding.verify::<P::Sig>(&responder, trusted))
        .map_err(ConnectError::Identity)?;
    let (mut transport, mut message_3) = ready
        .write_message_3(&node.binding.encode())
        .map_err(ConnectError::Noise)?;
    tamper(Stage::Message3, &mut message_3);
    stream
        .send(ep, &message_3)
        .await
        .map_err(|e| closed_or(e, Stage::Message3))?;
    let ready = stream
        .recv(ep)
        .await?
        .ok_or(ConnectError::ClosedAfter(Stage::Message3))?;
    let plaintext = transport.decrypt(&ready).map_err(ConnectError::Noise)?;
    if AppMessage::parse(&plaintext) != Some(AppMessage::Ready) {
        return Err(ConnectError::Protocol(
            "the first transport message is not READY",
        ));
    }
    let mut responder_ephemeral = [0u8; 32];
    responder_ephemeral.copy_from_slice(&message_2[..32]);
    Ok((transport, responder_ephemeral, initiator_ephemeral))
}

impl<A: NoiseAead> TcpSession<A> {
    /// Encrypts `PING<data>` as the next transport message, without sending it.
    ///
    /// # Errors
    /// [`NoiseError`].
    pub fn seal_ping(&mut self, data: &[u8]) -> Result<Vec<u8>, NoiseError> {
        self.transport.encrypt(&AppMessage::Ping(data).encode())
    }

    /// Sends one transport message as it is, framed.
    ///
    /// # Errors
    /// netstackd's refusal.
    pub async fn send_raw<E: Endpoint>(&self, ep: &E, message: &[u8]) -> Result<(), ClientError> {
        self.stream.send(ep, message).await
    }

    /// The next transport message dsoftbusd sends.
    ///
    /// # Errors
    /// [`ConnectError`]; `Protocol` when the connection closed.
    pub async fn recv_raw<E: Endpoint>(&mut self, ep: &E) -> Result<Vec<u8>, ConnectError> {
        self.stream
            .recv(ep)
            .await?
            .ok_or(ConnectError::Protocol("closed by the responder"))
    }

    /// Decrypts dsoftbusd's answer and returns the data of its `PONG`.
    ///
    /// # Errors
    /// [`NoiseError`]; an answer that is not a `PONG` is `Authentication`.
    pub fn open_pong(&mut self, answer: &[u8]) -> Result<Vec<u8>, NoiseError> {
        open_pong(&mut self.transport, answer)
    }

    /// Decrypts a transport message of dsoftbusd's, whatever it says (`BYE`, ...).
    ///
    /// # Errors
    /// [`NoiseError`].
    pub fn open(&mut self, message: &[u8]) -> Result<Vec<u8>, NoiseError> {
        self.transport.decrypt(message)
    }

    /// Seals `plaintexts` as the next transport messages and sends them in one write
    /// (several frames in one TCP segment, as a peer may).
    ///
    /// # Errors
    /// [`ConnectError`].
    pub async fn send_together<E: Endpoint>(
        &mut self,
        ep: &E,
        plaintexts: &[&[u8]],
    ) -> Result<(), ConnectError> {
        let mut bytes = Vec::new();
        for plaintext in plaintexts {
            let message = self
                .transport
                .encrypt(plaintext)
                .map_err(ConnectError::Noise)?;
            bytes.extend_from_slice(&(message.len() as u16).to_be_bytes());
            bytes.extend_from_slice(&message);
        }
        self.stream
            .send_bytes(ep, &bytes)
            .await
            .map_err(ConnectError::Refused)
    }

    /// Sends `plaintext` as the next transport message and returns dsoftbusd's answer,
    /// decrypted (`PAIROPEN` and `UNPAIR` are answered `DONE` or `REFUSED`).
    ///
    /// # Errors
    /// [`ConnectError`].
    pub async fn request<E: Endpoint>(
        &mut self,
        ep: &E,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, ConnectError> {
        let message = self
            .transport
            .encrypt(plaintext)
            .map_err(ConnectError::Noise)?;
        self.send_raw(ep, &message)
            .await
            .map_err(ConnectError::Refused)?;
        let answer = self.recv_raw(ep).await?;
        self.open(&answer).map_err(ConnectError::Noise)
    }

    /// Sends `PING<data>` and returns the data of dsoftbusd's `PONG`.
    ///
    /// # Errors
    /// [`ConnectError`].
    pub async fn ping<E: Endpoint>(
        &mut self,
        ep: &E,
        data: &[u8],
    ) -> Result<Vec<u8>, ConnectError> {
        let message = self.seal_ping(data).map_err(ConnectError::Noise)?;
        self.send_raw(ep, &message)
            .await
            .map_err(ConnectError::Refused)?;
        let answer = self.recv_raw(ep).await?;
        self.open_pong(&answer).map_err(ConnectError::Noise)
    }

    /// Ends the session with `BYE` and closes the connection.
    pub async fn close<E: Endpoint>(mut self, ep: &E) {
        if let Ok(bye) = self.transport.encrypt(&AppMessage::Bye.encode()) {
            let _ = self.stream.send(ep, &bye).await;
        }
        self.stream.close(ep, false).await;
    }

    /// The handshake hash both sides share.
    pub fn handshake_hash(&self) -> &[u8; 32] {
        self.transport.handshake_hash()
    }

    /// The connection.
    pub fn stream(&self) -> &Stream {
        &self.stream
    }
}
