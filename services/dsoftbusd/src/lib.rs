//! dsoftbusd: authenticated sessions between devices, over Noise XK.
//!
//! dsoftbusd is the XK responder. Its Noise static key is made from rngd entropy at
//! start and bound to the device identity: keystored signs the binding (see
//! [`binding`]) on dsoftbusd's behalf, through a `SIGN` the policy allows dsoftbusd
//! alone, so the device private key never leaves keystored. The binding travels in
//! the second handshake message; the peer's binding arrives in the third and must
//! name a device key on the allowlist and cover exactly the static key the handshake
//! authenticated. Only then is `dsoftbusd: auth ok` printed.
//!
//! **Whom it trusts.** At start dsoftbusd loads its persistent trust store (its
//! statefs record, written by the factory with `cargo xtask provision`): keystored
//! checks the store's tag with a key derived from the device-unique secret, so a person
//! holding only the disk cannot add a peer, and each key must be a canonical point of
//! prime order. A store that fails either check is refused whole, and dsoftbusd fails
//! closed (`dsoftbusd: fail-closed: trust store refused`). It prints how many peers it
//! trusts. `TRUST` adds a peer for this boot only: the persistent store is the factory's.
//!
//! Every session takes a fresh ephemeral key from rngd. Messages are bounded
//! (`service_api::dsoftbusd::MAX_MESSAGE`), sessions too (`MAX_SESSIONS`: a new
//! handshake evicts the oldest session when the table is full). Every
//! refusal is a typed error and an audit record, and the daemon goes on serving:
//! a failed handshake drops that session only; a transport message that fails to
//! authenticate (tampered, replayed) leaves the session as it was.
//!
//! The application protocol is a ping: a transport message `PING<data>` is answered
//! with `PONG<data>`, both encrypted under the session's keys.
//!
//! [`client`] is the initiating side, used by the selftest's node and the host tests.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod binding;
pub mod client;

use alloc::format;
use alloc::rc::Rc;
use alloc::vec::Vec;

use ipc::policy::SigningPurpose;
use ipc::{Action, AuditEvent, Endpoint, Operation, ServiceId, Verdict};
use noise_xk::{NoiseError, Responder, ResponderAwaitingFinish, Transport};
use provider_api::{
    HashBackend, Provider, SecretBytes, SignatureError, VerifyingKey, X25519PublicKey,
    X25519SecretKey,
};
use service_api::dsoftbusd::{MAX_SESSIONS, MAX_TRUSTED, Refusal, decode_transport};
use service_api::statefs::DSOFTBUSD_TRUST_STORE;
use service_api::{
    ClientError, Incoming, ServiceError, keystored, reply_err, reply_ok, rngd, statefs,
};

use crate::binding::{Binding, BindingError};

/// The Noise prologue of every dsoftbus session: both sides must agree on it.
pub const PROLOGUE: &[u8] = b"dsoftbus/v1";
/// A ping request's prefix, inside a transport message.
pub const PING: &[u8] = b"PING";
/// A ping answer's prefix.
pub const PONG: &[u8] = b"PONG";

type Curve<P> = <P as Provider>::Curve;
type Aead<P> = <P as Provider>::Aead;

enum Session<P: Provider, H: HashBackend> {
    Handshaking(ResponderAwaitingFinish<Curve<P>, Aead<P>, H>),
    Established(Transport<Aead<P>>),
}

/// The daemon's identity, allowlist and sessions.
pub struct Daemon<P: Provider, H: HashBackend> {
    static_key: Rc<X25519SecretKey<Curve<P>>>,
    binding: Binding,
    allowlist: Vec<VerifyingKey<Curve<P>>>,
    sessions: Vec<(ServiceId, u32, Session<P, H>)>,
}

/// What handling one request produced.
pub struct Handled {
    /// The reply payload or the error.
    pub reply: Result<Vec<u8>, ServiceError>,
    /// The record of the decision.
    pub audit: AuditEvent,
    /// Set when this request completed an authenticated handshake.
    pub authenticated: bool,
}

/// A handshake message that is too short or too long is malformed; anything else
/// that fails is an authentication failure.
fn handshake_refusal(error: NoiseError, stage: Refusal) -> (ServiceError, Refusal) {
    match error {
        NoiseError::TooShort { .. } | NoiseError::TooLong { .. } => {
            (ServiceError::MalformedRequest, Refusal::Malformed)
        }
        _ => (ServiceError::AuthenticationFailed, stage),
    }
}

fn event(
    sender: ServiceId,
    operation: Operation,
    verdict: Verdict,
    reason: u16,
    detail: u32,
) -> AuditEvent {
    AuditEvent {
        subject: sender,
        action: Action::Call {
            service: ServiceId::Dsoftbusd,
            code: operation.code(),
        },
        verdict,
        reason,
        detail,
    }
}

impl<P: Provider, H: HashBackend> Daemon<P, H> {
    /// A daemon with `static_key`, vouched for by `binding`.
    pub fn new(static_key: X25519SecretKey<Curve<P>>, binding: Binding) -> Self {
        Self {
            static_key: Rc::new(static_key),
            binding,
            allowlist: Vec::new(),
            sessions: Vec::new(),
        }
    }

    /// `DISCOVER`: the Noise static key, then the device key.
    pub fn discover(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(self.static_key.public_key().as_bytes());
        out[32..].copy_from_slice(&self.binding.device_key);
        out
    }

    /// `TRUST`: adds a device key to the allowlist, once it is decoded under
    /// provider-api's rule (a canonical point of prime order).
    ///
    /// # Errors
    /// `MalformedRequest` for anything but 32 bytes, `InvalidKey` (with the
    /// `KeyRejection` code, for the audit record) for a key the rule refuses,
    /// `RequestTooLarge` when full.
    pub fn trust(&mut self, device_key: &[u8]) -> Result<(), (ServiceError, u16)> {
        let bytes: [u8; 32] = device_key
            .try_into()
            .map_err(|_| (ServiceError::MalformedRequest, 0))?;
        if self.allowlist.iter().any(|key| key.to_bytes() == bytes) {
            return Ok(());
        }
        if self.allowlist.len() == MAX_TRUSTED {
            return Err((ServiceError::RequestTooLarge, 0));
        }
        let key = VerifyingKey::from_bytes(&bytes).map_err(|error| match error {
            SignatureError::InvalidPublicKey(why) => (ServiceError::InvalidKey, why.code()),
            _ => (ServiceError::InvalidKey, 0),
        })?;
        self.allowlist.push(key);
        Ok(())
    }

    /// `TRANSPORT`: one Noise message of `sender`'s session. Asks rngd for a fresh
    /// ephemeral key when a handshake begins.
    pub async fn transport<E: Endpoint>(
        &mut self,
        ep: &E,
        sender: ServiceId,
        payload: &[u8],
    ) -> Handled {
        let op = Operation::DsoftbusdTransport;
        let refuse = |error: ServiceError, refusal: Refusal| Handled {
            reply: Err(error),
            audit: event(
                sender,
                op,
                Verdict::Rejected,
                refusal as u16,
                payload.len() as u32,
            ),
            authenticated: false,
        };
        let (id, message) = match decode_transport(payload) {
            Ok(parts) => parts,
            Err(error) => return refuse(error, Refusal::Malformed),
        };
        let position = self
            .sessions
            .iter()
            .position(|(who, sid, _)| *who == sender && *sid == id);
        let Some(position) = position else {
            let responder =
                Responder::<Curve<P>, Aead<P>, H>::new(PROLOGUE, Rc::clone(&self.static_key));
            let ready = match responder.read_message_1(message) {
                Ok((ready, _)) => ready,
                Err(error) => {
                    let (error, refusal) = handshake_refusal(error, Refusal::Message1);
                    return refuse(error, refusal);
                }
            };
            let ephemeral = match rngd::get_entropy(ep, 32).await {
                Ok(bytes) => SecretBytes::from_fill(|e: &mut [u8; 32]| {
                    e.copy_from_slice(&bytes);
                    Ok::<(), ()>(())
                }),
                Err(_) => Err(()),
            };
            let Ok(ephemeral) = ephemeral else {
                return Handled {
                    reply: Err(ServiceError::Unavailable),
                    audit: event(
                        sender,
                        op,
                        Verdict::Failed,
                        ServiceError::Unavailable.code(),
                        1,
                    ),
                    authenticated: false,
                };
            };
            return match ready.write_message_2(&ephemeral, &self.binding.encode()) {
                Ok((awaiting, reply)) => {
                    if self.sessions.len() == MAX_SESSIONS {
                        self.sessions.remove(0);
                    }
                    self.sessions
                        .push((sender, id, Session::Handshaking(awaiting)));
                    Handled {
                        reply: Ok(reply),
                        audit: event(sender, op, Verdict::Allowed, 0, 1),
                        authenticated: false,
                    }
                }
                Err(_) => refuse(ServiceError::AuthenticationFailed, Refusal::Message1),
            };
        };
        let (_, _, session) = self.sessions.remove(position);
        match session {
            Session::Handshaking(awaiting) => {
                let (transport, peer_static, peer_binding) = match awaiting.read_message_3(message)
                {
                    Ok(done) => done,
                    Err(error) => {
                        let (error, refusal) = handshake_refusal(error, Refusal::Message3);
                        return refuse(error, refusal);
                    }
                };
                if let Err(error) = self.check_binding(&peer_static, &peer_binding) {
                    let refusal = match error {
                        BindingError::UnknownIdentity => Refusal::UnknownIdentity,
                        BindingError::BadSignature | BindingError::Malformed => Refusal::BadBinding,
                    };
                    return refuse(ServiceError::AuthenticationFailed, refusal);
                }
                self.sessions
                    .push((sender, id, Session::Established(transport)));
                Handled {
                    reply: Ok(Vec::new()),
                    audit: event(sender, op, Verdict::Allowed, 0, 3),
                    authenticated: true,
                }
            }
            Session::Established(mut transport) => {
                let answer = transport.decrypt(message).and_then(|plaintext| {
                    let reply = match plaintext.strip_prefix(PING) {
                        Some(data) => [PONG, data].concat(),
                        None => Vec::from(&b"UNKNOWN"[..]),
                    };
                    transport.encrypt(&reply)
                });
                self.sessions
                    .insert(position, (sender, id, Session::Established(transport)));
                match answer {
                    Ok(reply) => Handled {
                        reply: Ok(reply),
                        audit: event(sender, op, Verdict::Allowed, 0, 4),
                        authenticated: false,
                    },
                    Err(_) => refuse(ServiceError::AuthenticationFailed, Refusal::Transport),
                }
            }
        }
    }

    fn check_binding(
        &self,
        peer_static: &X25519PublicKey,
        payload: &[u8],
    ) -> Result<(), BindingError> {
        Binding::decode(payload)?.verify::<Curve<P>>(peer_static, &self.allowlist)
    }
}

/// Why dsoftbusd has no identity or no trust store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartError {
    /// No static key or no binding (rngd, keystored or the check failed).
    Identity(ClientError),
    /// The persistent trust store exists and was refused: its tag, or a key in it.
    TrustStore(ClientError),
}

/// Makes the static key from rngd entropy and has keystored sign its binding.
async fn identity<P: Provider, H: HashBackend, E: Endpoint>(
    ep: &E,
) -> Result<Daemon<P, H>, ClientError> {
    let entropy = rngd::get_entropy(ep, 32).await?;
    let seed = SecretBytes::from_fill(|seed: &mut [u8; 32]| {
        seed.copy_from_slice(&entropy);
        Ok::<(), ClientError>(())
    })?;
    let static_key = X25519SecretKey::<Curve<P>>::from_entropy(&seed);
    let device_key = keystored::get_pubkey(ep).await?;
    let signature = keystored::sign(
        ep,
        SigningPurpose::NoiseStaticBinding,
        static_key.public_key().as_bytes(),
    )
    .await?;
    let binding = Binding {
        device_key,
        signature,
    };
    // keystored signed with the key it published, and that key obeys the rule: check
    // before offering the binding to peers.
    let own = VerifyingKey::from_bytes(&device_key).map_err(|_| ClientError::MalformedReply)?;
    binding
        .verify::<Curve<P>>(static_key.public_key(), &[own])
        .map_err(|_| ClientError::MalformedReply)?;
    Ok(Daemon::new(static_key, binding))
}

/// Loads the persistent trust store (dsoftbusd's statefs record, written by the
/// factory): keystored checks its tag with the device's key, and each key must obey
/// provider-api's rule. No record is an empty store.
///
/// # Errors
/// The refusal; a store that exists and fails any check is refused whole.
async fn trust_store<P: Provider, E: Endpoint>(
    ep: &E,
) -> Result<Vec<VerifyingKey<Curve<P>>>, ClientError> {
    let store = match statefs::get(ep, DSOFTBUSD_TRUST_STORE).await {
        Ok(store) => store,
        Err(ClientError::Service(ServiceError::NotFound)) => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    keystored::verify_trust_store(ep, &store).await?;
    let peers = state_format::trust::peers_unverified(&store)
        .map_err(|_| ClientError::Service(ServiceError::MalformedRequest))?;
    peers
        .iter()
        .take(MAX_TRUSTED)
        .map(|peer| {
            VerifyingKey::from_bytes(peer)
                .map_err(|_| ClientError::Service(ServiceError::InvalidKey))
        })
        .collect()
}

/// The daemon with its identity and the persistent trust store.
async fn start<P: Provider, H: HashBackend, E: Endpoint>(
    ep: &E,
) -> Result<Daemon<P, H>, StartError> {
    let mut daemon = identity::<P, H, E>(ep)
        .await
        .map_err(StartError::Identity)?;
    daemon.allowlist = trust_store::<P, E>(ep)
        .await
        .map_err(StartError::TrustStore)?;
    Ok(daemon)
}

/// Runs dsoftbusd on provider `P` and hash `H` until the machine stops.
pub async fn run<P: Provider, H: HashBackend, E: Endpoint>(ep: E) {
    let mut daemon = match start::<P, H, E>(&ep).await {
        Ok(daemon) => {
            ep.console(markers::DSOFTBUSD_READY.message);
            let peers = format!("{}", daemon.allowlist.len());
            ep.console(&markers::DSOFTBUSD_TRUSTED_PEERS.render(&[&peers]));
            Some(daemon)
        }
        Err(error) => {
            let cause = match error {
                StartError::Identity(cause) => {
                    ep.console(markers::DSOFTBUSD_NO_IDENTITY.message);
                    cause
                }
                StartError::TrustStore(cause) => {
                    ep.console(markers::DSOFTBUSD_TRUST_STORE_REFUSED.message);
                    cause
                }
            };
            let reason = match cause {
                ClientError::Service(e) => e.code(),
                _ => ServiceError::Unavailable.code(),
            };
            ep.audit(AuditEvent {
                subject: ServiceId::Dsoftbusd,
                action: Action::Health,
                verdict: Verdict::Failed,
                reason,
                detail: 0,
            });
            None
        }
    };
    loop {
        let request = ep.receive().await;
        let handled = match (
            Incoming::parse(ServiceId::Dsoftbusd, &request),
            daemon.as_mut(),
        ) {
            (Err((error, code)), _) => Handled {
                reply: Err(error),
                audit: AuditEvent {
                    subject: request.sender,
                    action: Action::Call {
                        service: ServiceId::Dsoftbusd,
                        code,
                    },
                    verdict: Verdict::Rejected,
                    reason: error.code(),
                    detail: request.frame.len() as u32,
                },
                authenticated: false,
            },
            (Ok(incoming), None) => Handled {
                reply: Err(ServiceError::NoKey),
                audit: event(
                    incoming.sender,
                    incoming.operation,
                    Verdict::Failed,
                    ServiceError::NoKey.code(),
                    0,
                ),
                authenticated: false,
            },
            (Ok(incoming), Some(daemon)) => match incoming.operation {
                Operation::DsoftbusdDiscover => Handled {
                    reply: Ok(daemon.discover().to_vec()),
                    audit: event(incoming.sender, incoming.operation, Verdict::Allowed, 0, 0),
                    authenticated: false,
                },
                Operation::DsoftbusdTrust => {
                    let outcome = daemon.trust(incoming.payload);
                    let (verdict, reason, detail) = match outcome {
                        Ok(()) => (Verdict::Allowed, 0, 0),
                        Err((error, why)) => (Verdict::Rejected, error.code(), u32::from(why)),
                    };
                    Handled {
                        reply: outcome.map(|()| Vec::new()).map_err(|(error, _)| error),
                        audit: event(incoming.sender, incoming.operation, verdict, reason, detail),
                        authenticated: false,
                    }
                }
                _ => {
                    daemon
                        .transport(&ep, incoming.sender, incoming.payload)
                        .await
                }
            },
        };
        ep.audit(handled.audit);
        if handled.authenticated {
            ep.console(markers::DSOFTBUSD_AUTH_OK.message);
        }
        let _ = match &handled.reply {
            Ok(payload) => reply_ok(&ep, request.token, payload),
            Err(error) => reply_err(&ep, request.token, *error),
        };
    }
}
