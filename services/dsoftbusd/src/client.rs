//! The initiating side of a dsoftbus session: a node with its own device identity,
//! connecting to dsoftbusd through `TRANSPORT`.
//!
//! Used by the selftest's node in the image and by the host tests. [`connect`] takes
//! a `tamper` hook that sees every handshake message on its way, so the negative
//! tests can flip bits, truncate or pad them at each stage.

use alloc::rc::Rc;
use alloc::vec::Vec;

use ipc::{Endpoint, IpcBuffer};
use noise_xk::{Initiator, NoiseError, Transport};
use provider_api::{
    HashBackend, Provider, SecretBytes, Seed, SignatureError, SigningKey, VerifyingKey,
    X25519PublicKey, X25519SecretKey,
};
use service_api::{ClientError, dsoftbusd, rngd};

use crate::binding::{Binding, BindingError};
use crate::{PING, PONG, PROLOGUE};

/// A node: a device identity, a Noise static key, and the binding between them.
pub struct Node<P: Provider> {
    static_key: Rc<X25519SecretKey<P::Curve>>,
    binding: Binding,
}

impl<P: Provider> Node<P> {
    /// A node whose device key comes from `identity` and whose static key comes from
    /// `static_entropy`, the first signing the second.
    ///
    /// # Errors
    /// [`SignatureError::ZeroSeed`].
    pub fn new(identity: &Seed, static_entropy: &SecretBytes<32>) -> Result<Self, SignatureError> {
        let device = SigningKey::<P::Curve>::from_seed(identity)?;
        let static_key = X25519SecretKey::from_entropy(static_entropy);
        let binding = Binding::sign(&device, static_key.public_key());
        Ok(Self {
            static_key: Rc::new(static_key),
            binding,
        })
    }

    /// A node presenting `binding` for `static_key`, whether or not it covers it (the
    /// negative tests forge bindings this way).
    pub fn from_parts(static_key: X25519SecretKey<P::Curve>, binding: Binding) -> Self {
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectError {
    /// dsoftbusd (or the kernel, or rngd) refused.
    Refused(ClientError),
    /// This node refused dsoftbusd's message.
    Noise(NoiseError),
    /// This node refused dsoftbusd's identity.
    Identity(BindingError),
}

/// An established session.
pub struct Session<A: provider_api::AeadBackend> {
    id: u32,
    transport: Transport<A>,
    /// dsoftbusd's ephemeral public key for this session.
    pub responder_ephemeral: [u8; 32],
    /// This node's ephemeral public key for this session.
    pub initiator_ephemeral: [u8; 32],
}

/// Connects `node` to dsoftbusd as session `id`. dsoftbusd's identity must be
/// `responder` (its static key from `DISCOVER`) vouched for by a device key in
/// `trusted`. The ephemeral key comes from rngd.
///
/// # Errors
/// [`ConnectError`].
pub async fn connect<P: Provider, H: HashBackend, E: Endpoint>(
    ep: &E,
    node: &Node<P>,
    id: u32,
    responder: &X25519PublicKey,
    trusted: &[VerifyingKey<P::Curve>],
    mut tamper: impl FnMut(Stage, &mut Vec<u8>),
) -> Result<Session<P::Aead>, ConnectError> {
    let entropy = rngd::get_entropy(ep, 32)
        .await
        .map_err(ConnectError::Refused)?;
    let ephemeral = SecretBytes::from_fill(|e: &mut [u8; 32]| {
        e.copy_from_slice(&entropy);
        Ok::<(), ()>(())
    })
    .map_err(|()| ConnectError::Refused(ClientError::MalformedReply))?;
    let initiator =
        Initiator::<P::Curve, P::Aead, H>::new(PROLOGUE, Rc::clone(&node.static_key), *responder);
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
    tamper(Stage::Message2, &mut message_2);
    let (ready, payload) = awaiting
        .read_message_2(&message_2)
        .map_err(ConnectError::Noise)?;
    Binding::decode(&payload)
        .and_then(|binding| binding.verify::<P::Curve>(responder, trusted))
        .map_err(ConnectError::Identity)?;
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

impl<A: provider_api::AeadBackend> Session<A> {
    /// Encrypts `PING<data>` as the next transport message, without sending it.
    ///
    /// # Errors
    /// [`NoiseError`].
    pub fn seal_ping(&mut self, data: &[u8]) -> Result<Vec<u8>, NoiseError> {
        self.transport.encrypt(&[PING, data].concat())
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
        let plaintext = self.transport.decrypt(answer)?;
        plaintext
            .strip_prefix(PONG)
            .map(<[u8]>::to_vec)
            .ok_or(NoiseError::Authentication)
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

    /// The handshake hash both sides share.
    pub fn handshake_hash(&self) -> &[u8; 32] {
        self.transport.handshake_hash()
    }
}
