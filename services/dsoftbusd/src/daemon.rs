//! The daemon: its identity and allowlist, the session table, and every step of a
//! session on both paths (TCP through netstackd, and `TRANSPORT` over IPC) and in
//! both roles (responder to peers, initiator for `CONNECT`).

use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;

use zeroize::Zeroizing;

use ipc::policy::SigningPurpose;
use ipc::{Endpoint, IpcError, Operation, ReplyToken, ServiceId, Verdict};
use noise_xk::{Initiator, NoiseError, Responder};
use provider_api::{
    HashBackend, Provider, SecretBytes, SignatureError, VerifyingKey, X25519PublicKey,
    X25519SecretKey,
};
use service_api::dsoftbusd::{Connected, MAX_TRUSTED, decode_connect, decode_transport};
use service_api::keystored::PairingStatus;
use service_api::netstackd::{
    self, Accepted, Handle, MAX_IO, READY_ACCEPTABLE, READY_CLOSED, READY_CONNECTED,
    READY_READABLE, Ready,
};
use service_api::statefs::DSOFTBUSD_TRUST_STORE;
use service_api::{ClientError, ServiceError, keystored, reply_err, reply_ok, rngd, statefs};

use crate::pairing::{
    self as pair, IdentityKeys, PairHello, PairReply, PairRequest, PairStatus, ProverPending,
};

use crate::binding::{Binding, BindingError};
use crate::sessions::{
    Conn, Limits, Link, Outgoing, Phase, Refusal, Source, Table, fingerprint, record,
};
use crate::wire::{self, AppMessage, Hello, HelloReply, HelloStatus, WireError};
use crate::{PROLOGUE, hex};

type Sig<P> = <P as Provider>::Sig;
type Kx<P> = <P as Provider>::Kx;
type Aead<P> = <P as Provider>::Aead;

/// How long a `CONNECT` may take, from the request to the pong: below the kernel's
/// two-second call timeout, so the caller always gets dsoftbusd's own answer.
pub const CONNECT_DEADLINE_MS: u64 = 1_500;
/// Receives per readable connection per event (each takes up to `MAX_IO` bytes).
const RECEIVES_PER_EVENT: usize = 4;
/// Connections accepted per event.
const ACCEPTS_PER_EVENT: usize = 8;

/// How a connection ends: the record's reason and verdict, and a last frame to send
/// first (a hello reply that says why).
struct End {
    refusal: Refusal,
    verdict: Verdict,
    last: Option<Vec<u8>>,
}

impl End {
    fn rejected(refusal: Refusal) -> Self {
        Self {
            refusal,
            verdict: Verdict::Rejected,
            last: None,
        }
    }

    fn failed(refusal: Refusal) -> Self {
        Self {
            refusal,
            verdict: Verdict::Failed,
            last: None,
        }
    }
}

/// A handshake message that is too short or too long is malformed; anything else
/// that fails is an authentication failure.
fn noise_refusal(error: NoiseError, stage: Refusal) -> Refusal {
    match error {
        NoiseError::TooShort { .. } | NoiseError::TooLong { .. } => Refusal::Malformed,
        _ => stage,
    }
}

fn binding_refusal(error: BindingError) -> Refusal {
    match error {
        BindingError::UnknownIdentity => Refusal::UnknownIdentity,
        BindingError::BadSignature | BindingError::Malformed => Refusal::BadBinding,
    }
}

/// What a `CONNECT` caller is told when its session ends before the pong.
fn connect_error(refusal: Refusal) -> ServiceError {
    match refusal {
        Refusal::SuiteMismatch => ServiceError::OtherAlgorithm,
        Refusal::PeerBusy | Refusal::Paced | Refusal::HalfOpenFull | Refusal::SourceQuota => {
            ServiceError::Busy
        }
        Refusal::ConnectFailed => ServiceError::Refused,
        Refusal::HandshakeTimeout => ServiceError::TimedOut,
        Refusal::PeerClosed | Refusal::Closed | Refusal::ConnectionClosed | Refusal::SlowReader => {
            ServiceError::Closed
        }
        Refusal::Malformed | Refusal::FrameTooLong => ServiceError::MalformedRequest,
        Refusal::Message1
        | Refusal::Message2
        | Refusal::Message3
        | Refusal::UnknownIdentity
        | Refusal::BadBinding
        | Refusal::Transport => ServiceError::AuthenticationFailed,
        Refusal::SessionsFull => ServiceError::Full,
        Refusal::IdleTimeout | Refusal::Established | Refusal::NoEntropy => {
            ServiceError::Unavailable
        }
        Refusal::NetworkRestarted => ServiceError::Restarted,
        // Pairing connections are never a CONNECT's; a session a peer forgot is closed.
        Refusal::PairingRefused | Refusal::PairingIdentity => ServiceError::AuthenticationFailed,
        Refusal::PairingClosed
        | Refusal::Paired
        | Refusal::PairingStore
        | Refusal::PairingUnavailable => ServiceError::Unavailable,
        Refusal::Unpaired => ServiceError::Closed,
    }
}

/// Whether a netstackd call's failure says its process is gone: the call was open when
/// it ended (`PeerGone`), or a restarted process refused a handle of the old one.
pub fn network_gone(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::Ipc(IpcError::PeerGone) | ClientError::Service(ServiceError::Restarted)
    )
}

/// Why a handshake got no ephemeral key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NoEphemeral {
    /// rngd answered that it closed (its source failed a health test, or failed): it
    /// serves nothing from now on, so no handshake can be made.
    Closed,
    /// This draw failed and the next may not: rngd's process ended mid-call (the
    /// kernel restarts it, with its health tests from scratch), or the call failed on
    /// its way.
    ThisTime,
}

async fn ephemeral<E: Endpoint>(ep: &E) -> Result<SecretBytes<32>, NoEphemeral> {
    let bytes = rngd::get_entropy(ep, 32)
        .await
        .map_err(|error| match error {
            ClientError::Service(ServiceError::HealthTestFailed | ServiceError::Unavailable) => {
                NoEphemeral::Closed
            }
            _ => NoEphemeral::ThisTime,
        })?;
    SecretBytes::from_fill(|e: &mut [u8; 32]| {
        e.copy_from_slice(&bytes);
        Ok::<(), ()>(())
    })
    .map_err(|()| NoEphemeral::ThisTime)
}

/// The answer to a `TRANSPORT`, and whether it authenticated a peer.
pub struct Handled {
    /// The reply payload or the error.
    pub reply: Result<Vec<u8>, ServiceError>,
    /// Set when this request completed an authenticated handshake.
    pub authenticated: bool,
}

/// The daemon's identity, allowlist and sessions.
pub struct Daemon<P: Provider, H: HashBackend> {
    static_key: Rc<X25519SecretKey<Kx<P>>>,
    binding: Binding,
    pub(crate) allowlist: Vec<VerifyingKey<Sig<P>>>,
    /// Bindings verified before, both directions (the allowlist is still checked).
    bindings: core::cell::RefCell<crate::binding::BindingCache>,
    suite: String,
    table: Table<P, H>,
    listener: Option<Handle>,
    /// A netstackd call failed as [`network_gone`]: the service loop ends every
    /// connection of the old process and listens again.
    network_lost: bool,
    /// rngd answered that it closed: every new handshake is refused at the hello from
    /// now on. (A draw that failed because rngd's process ended is not this: the
    /// kernel restarts rngd.)
    entropy_failed: bool,
    /// The device keys of the persistent trust store, as on the disk (the allowlist
    /// holds them and the ones `TRUST` added for this boot).
    pub(crate) stored: Vec<[u8; 32]>,
    /// Pairing: keystored's status at start, and until when the window is open.
    pairing: Window,
    /// This device pairing with another whose code it was given (`pair=`).
    prover: Option<ProverPlan>,
}

/// This device's pairing with another, as the prover: the request, and when it is
/// tried next (none while a try is under way).
struct ProverPlan {
    request: PairRequest,
    next_try_ms: Option<u64>,
    tries_left: u32,
}

/// The pairing window.
#[derive(Clone, Copy, Debug, Default)]
struct Window {
    /// keystored holds a verifier (the factory gave the device a setup code).
    provisioned: bool,
    /// The password hash's rounds and salt, for the pair reply.
    iterations: u32,
    salt: [u8; 16],
    /// Open until this uptime (milliseconds).
    open_until: Option<u64>,
    /// Runs keystored will still start before its failed-attempt limit: keystored
    /// keeps the count and refuses past it; this mirror lets the window close, and a
    /// hello be answered CLOSED, as soon as the last attempt failed.
    attempts_left: u16,
}

impl<P: Provider, H: HashBackend> Daemon<P, H> {
    /// A daemon with `static_key`, vouched for by `binding`, bounded by `limits`.
    pub fn new(
        static_key: X25519SecretKey<Kx<P>>,
        binding: Binding,
        limits: Limits,
        now_ms: u64,
    ) -> Self {
        Self {
            static_key: Rc::new(static_key),
            binding,
            allowlist: Vec::new(),
            bindings: core::cell::RefCell::new(crate::binding::BindingCache::new()),
            suite: noise_xk::protocol_name::<Aead<P>, H>(),
            table: Table::new(limits, now_ms),
            listener: None,
            network_lost: false,
            entropy_failed: false,
            stored: Vec::new(),
            pairing: Window::default(),
            prover: None,
        }
    }

    /// Takes keystored's pairing status at start: the window opens when the device
    /// trusts nobody yet (its trust store is empty) and keystored can run a pairing.
    /// Returns the seconds it is open for, if it opened.
    pub fn start_pairing(&mut self, status: &PairingStatus, now_ms: u64) -> Option<u64> {
        self.pairing = Window {
            provisioned: status.provisioned,
            iterations: status.iterations,
            salt: status.salt,
            open_until: None,
            attempts_left: status.limit.saturating_sub(status.failed),
        };
        (self.stored.is_empty() && status.open()).then(|| self.open_window(now_ms))
    }

    fn open_window(&mut self, now_ms: u64) -> u64 {
        self.pairing.open_until = Some(now_ms.saturating_add(pair::WINDOW_MS));
        pair::WINDOW_MS / 1000
    }

    fn close_window<E: Endpoint>(&mut self, ep: &E, why: &str) {
        if self.pairing.open_until.take().is_some() {
            ep.console(&markers::DSOFTBUSD_PAIRING_WINDOW_CLOSED.render(&[why]));
        }
    }

    /// Whether the pairing window is open now (closing it, and saying so, once its
    /// time is up).
    fn window_open<E: Endpoint>(&mut self, ep: &E, now_ms: u64) -> bool {
        match self.pairing.open_until {
            Some(until) if now_ms < until => true,
            Some(_) => {
                self.close_window(ep, "expired");
                false
            }
            None => false,
        }
    }

    /// Writes a trust store holding `keys`: keystored tags it one version above the
    /// rollback counter, statefs writes it (crash-safe: a torn write leaves the store
    /// before), keystored checks it and advances the counter. The allowlist follows
    /// what the disk holds once the write succeeded.
    async fn persist_trust<E: Endpoint>(
        &mut self,
        ep: &E,
        keys: Vec<[u8; 32]>,
    ) -> Result<(), ClientError> {
        let store = keystored::tag_trust_store(ep, &keys).await?;
        statefs::put(ep, DSOFTBUSD_TRUST_STORE, &store).await?;
        let added: Vec<[u8; 32]> = keys
            .iter()
            .filter(|k| !self.stored.contains(k))
            .copied()
            .collect();
        let removed: Vec<[u8; 32]> = self
            .stored
            .iter()
            .filter(|k| !keys.contains(k))
            .copied()
            .collect();
        self.allowlist.retain(|k| !removed.contains(&k.to_bytes()));
        for key in &added {
            if let Ok(key) = VerifyingKey::from_bytes(key)
                && !self.allowlist.contains(&key)
            {
                self.allowlist.push(key);
            }
        }
        self.stored = keys;
        // A store above the counter is accepted at the next boot too (and the counter
        // advanced then): the disk already holds the new list.
        keystored::verify_trust_store(ep, &store).await
    }

    /// The Noise protocol name this daemon speaks.
    pub fn suite(&self) -> &str {
        &self.suite
    }

    /// Binding verifications skipped (repeat peers) and done, so far.
    pub fn binding_cache_counts(&self) -> (u64, u64) {
        self.bindings.borrow().counts()
    }

    /// The device keys it trusts.
    pub fn trusted(&self) -> usize {
        self.allowlist.len()
    }

    /// Connections and sessions now: (half-open, established).
    pub fn sessions(&self) -> (usize, usize) {
        (self.table.half_open(), self.table.established())
    }

    /// The listening socket, once listening.
    pub fn listener(&self) -> Option<Handle> {
        self.listener
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
        if self.allowlist.len() >= MAX_TRUSTED {
            return Err((ServiceError::RequestTooLarge, 0));
        }
        let key = VerifyingKey::from_bytes(&bytes).map_err(|error| match error {
            SignatureError::InvalidPublicKey(why) => (ServiceError::InvalidKey, why.code()),
            _ => (ServiceError::InvalidKey, 0),
        })?;
        self.allowlist.push(key);
        Ok(())
    }

    fn check_binding(
        &self,
        peer_static: &X25519PublicKey,
        payload: &[u8],
    ) -> Result<[u8; 32], BindingError> {
        let binding = Binding::decode(payload)?;
        self.bindings
            .borrow_mut()
            .verify::<Sig<P>>(&binding, peer_static, &self.allowlist)?;
        Ok(binding.device_key)
    }

    // ---------------------------------------------------------------- IPC path

    /// `TRANSPORT`: one Noise message of `sender`'s session. A new session number
    /// starts a handshake (its first message); an empty message closes the session.
    pub async fn transport<E: Endpoint>(
        &mut self,
        ep: &E,
        sender: ServiceId,
        payload: &[u8],
        now_ms: u64,
    ) -> Handled {
        let op = Operation::DsoftbusdTransport;
        let refuse = |error: ServiceError, refusal: Refusal| {
            ep.audit(record(
                sender,
                op,
                Verdict::Rejected,
                refusal as u16,
                payload.len() as u32,
            ));
            Handled {
                reply: Err(error),
                authenticated: false,
            }
        };
        let (id, message) = match decode_transport(payload) {
            Ok(parts) => parts,
            Err(error) => return refuse(error, Refusal::Malformed),
        };
        let link = Link::Ipc { task: sender, id };
        let Some(at) = self.table.find(link) else {
            if message.is_empty() {
                return refuse(ServiceError::NoSession, Refusal::Malformed);
            }
            return self
                .ipc_first_message(ep, sender, link, message, now_ms)
                .await;
        };
        if message.is_empty() {
            let conn = self.table.conns.remove(at);
            ep.audit(record(
                sender,
                op,
                Verdict::Allowed,
                Refusal::Closed as u16,
                conn.detail(),
            ));
            return Handled {
                reply: Ok(Vec::new()),
                authenticated: false,
            };
        }
        self.table.conns[at].last_ms = now_ms;
        let phase = core::mem::replace(&mut self.table.conns[at].phase, Phase::Gone);
        match phase {
            Phase::AwaitMessage3(awaiting) => match self.finish_handshake(awaiting, message) {
                Ok((transport, peer)) => {
                    if self.table.established() >= self.table.limits.established {
                        self.table.conns.remove(at);
                        return refuse(ServiceError::Full, Refusal::SessionsFull);
                    }
                    let conn = &mut self.table.conns[at];
                    conn.phase = Phase::Established(transport);
                    conn.peer = Some(peer);
                    ep.audit(record(
                        sender,
                        op,
                        Verdict::Allowed,
                        Refusal::Established as u16,
                        fingerprint(&peer),
                    ));
                    Handled {
                        reply: Ok(Vec::new()),
                        authenticated: true,
                    }
                }
                Err(refusal) => {
                    self.table.conns.remove(at);
                    let error = match refusal {
                        Refusal::Malformed => ServiceError::MalformedRequest,
                        _ => ServiceError::AuthenticationFailed,
                    };
                    refuse(error, refusal)
                }
            },
            Phase::Established(mut transport) => {
                // A session's plaintexts are the application's: wiped once used.
                let answer = transport.decrypt(message).and_then(|plaintext| {
                    let plaintext = Zeroizing::new(plaintext);
                    let reply = Zeroizing::new(match AppMessage::parse(&plaintext) {
                        Some(AppMessage::Ping(data)) => AppMessage::Pong(data).encode(),
                        _ => AppMessage::Unknown.encode(),
                    });
                    transport.encrypt(&reply)
                });
                self.table.conns[at].phase = Phase::Established(transport);
                match answer {
                    Ok(reply) => {
                        let detail = self.table.conns[at].detail();
                        ep.audit(record(sender, op, Verdict::Allowed, 0, detail));
                        Handled {
                            reply: Ok(reply),
                            authenticated: false,
                        }
                    }
                    Err(_) => refuse(ServiceError::AuthenticationFailed, Refusal::Transport),
                }
            }
            other => {
                // IPC sessions are never in a TCP phase.
                self.table.conns[at].phase = other;
                refuse(ServiceError::MalformedRequest, Refusal::Malformed)
            }
        }
    }

    async fn ipc_first_message<E: Endpoint>(
        &mut self,
        ep: &E,
        sender: ServiceId,
        link: Link,
        message: &[u8],
        now_ms: u64,
    ) -> Handled {
        let op = Operation::DsoftbusdTransport;
        let source = Source::Task(sender);
        let refuse = |error: ServiceError, refusal: Refusal, verdict: Verdict| {
            ep.audit(record(
                sender,
                op,
                verdict,
                refusal as u16,
                message.len() as u32,
            ));
            Handled {
                reply: Err(error),
                authenticated: false,
            }
        };
        if let Err(refusal) = self.table.admit(source) {
            return refuse(ServiceError::Busy, refusal, Verdict::Rejected);
        }
        match self.respond_to_message_1(ep, message, now_ms).await {
            Ok((awaiting, reply)) => {
                self.table.conns.push(Conn::new(
                    link,
                    source,
                    Phase::AwaitMessage3(awaiting),
                    now_ms,
                ));
                ep.audit(record(sender, op, Verdict::Allowed, 0, 1));
                Handled {
                    reply: Ok(reply),
                    authenticated: false,
                }
            }
            Err(End {
                refusal, verdict, ..
            }) => {
                let error = match refusal {
                    Refusal::Paced => ServiceError::Busy,
                    Refusal::Malformed => ServiceError::MalformedRequest,
                    _ if verdict == Verdict::Failed => ServiceError::Unavailable,
                    _ => ServiceError::AuthenticationFailed,
                };
                refuse(error, refusal, verdict)
            }
        }
    }

    /// Reads a first message and writes the second, with a fresh ephemeral key, drawn
    /// only if the entropy pace allows it now.
    async fn respond_to_message_1<E: Endpoint>(
        &mut self,
        ep: &E,
        message: &[u8],
        now_ms: u64,
    ) -> Result<
        (
            noise_xk::ResponderAwaitingFinish<Kx<P>, Aead<P>, H>,
            Vec<u8>,
        ),
        End,
    > {
        let responder = Responder::<Kx<P>, Aead<P>, H>::new(PROLOGUE, Rc::clone(&self.static_key));
        let (ready, _) = responder
            .read_message_1(message)
            .map_err(|e| End::rejected(noise_refusal(e, Refusal::Message1)))?;
        if !self.table.pace.take(now_ms) {
            return Err(End::rejected(Refusal::Paced));
        }
        let entropy = match ephemeral(ep).await {
            Ok(entropy) => entropy,
            Err(why) => {
                self.entropy_failed |= why == NoEphemeral::Closed;
                return Err(End::failed(Refusal::NoEntropy));
            }
        };
        ready
            .write_message_2(&entropy, &self.binding.encode())
            .map_err(|e| End::rejected(noise_refusal(e, Refusal::Message1)))
    }

    fn finish_handshake(
        &self,
        awaiting: noise_xk::ResponderAwaitingFinish<Kx<P>, Aead<P>, H>,
        message: &[u8],
    ) -> Result<(noise_xk::Transport<Aead<P>>, [u8; 32]), Refusal> {
        let (transport, peer_static, peer_binding) = awaiting
            .read_message_3(message)
            .map_err(|e| noise_refusal(e, Refusal::Message3))?;
        let peer = self
            .check_binding(&peer_static, &peer_binding)
            .map_err(binding_refusal)?;
        Ok((transport, peer))
    }

    // ---------------------------------------------------------------- TCP path

    /// Listens on the dsoftbus port.
    ///
    /// # Errors
    /// netstackd's refusal.
    pub async fn listen<E: Endpoint>(&mut self, ep: &E) -> Result<(), ClientError> {
        let backlog = netstackd::MAX_BACKLOG;
        self.listener = Some(netstackd::listen(ep, wire::PORT, backlog).await?);
        Ok(())
    }

    /// Whether a netstackd call failed because its process is gone since the last
    /// ask ([`network_gone`]); asking clears it.
    pub fn take_network_lost(&mut self) -> bool {
        core::mem::take(&mut self.network_lost)
    }

    fn note<T>(&mut self, result: &Result<T, ClientError>) {
        if let Err(error) = result
            && network_gone(error)
        {
            self.network_lost = true;
        }
    }

    /// netstackd faulted and was restarted: every connection of its old process (the
    /// listener's generation) went with it. Each is ended here without a call to
    /// netstackd (the new process never had it): recorded as
    /// [`Refusal::NetworkRestarted`], `Failed`; an established session's end said on
    /// the console; a `CONNECT` that waited for one answered `Restarted`. A connection
    /// the new process already made (a `CONNECT` served between the restart and the
    /// daemon learning of it) goes on. The listener is forgotten: the caller listens
    /// again. Returns how many connections ended.
    pub fn network_restarted<E: Endpoint>(&mut self, ep: &E) -> usize {
        let gone = self.listener.take().map(|l| l.generation());
        self.network_lost = false;
        let mut ended = 0;
        let mut index = 0;
        while index < self.table.conns.len() {
            let of_the_old_process = match self.table.conns[index].link {
                Link::Tcp(handle) => gone.is_none_or(|g| handle.generation() == g),
                Link::Ipc { .. } => false,
            };
            if !of_the_old_process {
                index += 1;
                continue;
            }
            let conn = self.table.conns.remove(index);
            ended += 1;
            let refusal = Refusal::NetworkRestarted;
            account_end(ep, &conn, Verdict::Failed, refusal);
            if let Some(token) = conn.outgoing.and_then(|o| o.token) {
                let _ = reply_err(ep, token, connect_error(refusal));
            }
            if conn.proving {
                self.prover_failed(ep, refusal, conn.phase.pake_sent());
            }
        }
        ended
    }

    /// Handles what a `WAIT` reported.
    pub async fn on_ready<E: Endpoint>(&mut self, ep: &E, ready: &[Ready]) {
        // Streams first (a close frees its slot before the next accept), then new
        // connections.
        let listener = self.listener;
        for r in ready.iter().filter(|r| Some(r.handle) != listener) {
            let now = ep.uptime_ms();
            let Some(at) = self.table.find(Link::Tcp(r.handle)) else {
                continue;
            };
            if r.flags & READY_CONNECTED != 0 {
                self.on_connected(ep, at, now).await;
                continue;
            }
            if r.flags & (READY_READABLE | READY_CLOSED) != 0 {
                self.on_readable(ep, r.handle, now).await;
            }
        }
        if let Some(listener) = self.listener
            && ready
                .iter()
                .any(|r| r.handle == listener && r.flags & READY_ACCEPTABLE != 0)
        {
            for _ in 0..ACCEPTS_PER_EVENT {
                let accepted = netstackd::accept(ep, listener, 0).await;
                self.note(&accepted);
                match accepted {
                    Ok(accepted) => self.on_accept(ep, accepted, ep.uptime_ms()).await,
                    Err(_) => break,
                }
            }
        }
    }

    async fn on_accept<E: Endpoint>(&mut self, ep: &E, accepted: Accepted, now_ms: u64) {
        let source = Source::Ip(accepted.remote.ip);
        if let Err(refusal) = self.table.admit(source) {
            ep.audit(record(
                ServiceId::Dsoftbusd,
                Operation::DsoftbusdTransport,
                Verdict::Rejected,
                refusal as u16,
                source.detail(),
            ));
            let closed = netstackd::close(ep, accepted.handle, true).await;
            self.note(&closed);
            return;
        }
        self.table.conns.push(Conn::new(
            Link::Tcp(accepted.handle),
            source,
            Phase::AwaitHello,
            now_ms,
        ));
    }

    async fn on_readable<E: Endpoint>(&mut self, ep: &E, handle: Handle, now_ms: u64) {
        for _ in 0..RECEIVES_PER_EVENT {
            let Some(at) = self.table.find(Link::Tcp(handle)) else {
                return;
            };
            let received = netstackd::recv(ep, handle, MAX_IO as u16, 0).await;
            self.note(&received);
            match received {
                Ok(bytes) => {
                    self.table.conns[at].last_ms = now_ms;
                    if let Err(end) = self.feed(ep, at, &bytes, now_ms).await {
                        return self.end(ep, handle, end).await;
                    }
                }
                Err(ClientError::Service(ServiceError::TimedOut)) => return,
                Err(_) => {
                    let refusal = match &self.table.conns[at].phase {
                        Phase::Connecting | Phase::ProverConnecting => Refusal::ConnectFailed,
                        phase if phase.half_open() => Refusal::PeerClosed,
                        _ => Refusal::ConnectionClosed,
                    };
                    let verdict = Verdict::Failed;
                    return self
                        .end(
                            ep,
                            handle,
                            End {
                                refusal,
                                verdict,
                                last: None,
                            },
                        )
                        .await;
                }
            }
        }
    }

    /// Takes received bytes into the connection's frames and steps its session for
    /// each whole frame, sending what each step answers.
    async fn feed<E: Endpoint>(
        &mut self,
        ep: &E,
        at: usize,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<(), End> {
        let Link::Tcp(handle) = self.table.conns[at].link else {
            return Err(End::rejected(Refusal::Malformed));
        };
        let mut rest = bytes;
        while !rest.is_empty() {
            // Found again for every frame: a step may have ended other connections
            // (`UNPAIR` ends the forgotten key's sessions), which moves this one.
            let Some(at) = self.table.find(Link::Tcp(handle)) else {
                break;
            };
            let (body, used) =
                self.table.conns[at]
                    .reader
                    .push(rest)
                    .map_err(|error| match error {
                        WireError::FrameTooLong(_) => End::rejected(Refusal::FrameTooLong),
                        _ => End::rejected(Refusal::Malformed),
                    })?;
            rest = &rest[used..];
            let Some(body) = body else {
                break;
            };
            let answers = self.on_frame(ep, at, &body, now_ms).await?;
            for answer in answers {
                send_frame(ep, handle, &answer).await?;
            }
            // A step may have ended the session gracefully (a BYE answered).
            if self.table.find(Link::Tcp(handle)).is_none() {
                break;
            }
        }
        Ok(())
    }

    /// One frame of connection `at`: the frames to answer with, or how it ends.
    async fn on_frame<E: Endpoint>(
        &mut self,
        ep: &E,
        at: usize,
        body: &[u8],
        now_ms: u64,
    ) -> Result<Vec<Vec<u8>>, End> {
        let phase = core::mem::replace(&mut self.table.conns[at].phase, Phase::Gone);
        match phase {
            Phase::AwaitHello if body.starts_with(pair::MAGIC) => {
                self.pair_hello(ep, at, body, now_ms)
            }
            Phase::PairAwaitShare => self.pake_1(ep, at, body).await,
            Phase::PairAwaitConfirm(run) => self.pake_3(ep, at, &run, body).await,
            Phase::ProverAwaitReply => self.prover_pair_reply(ep, at, body).await,
            Phase::ProverAwaitShare(share_p) => self.prover_pake_2(ep, at, &share_p, body).await,
            Phase::ProverAwaitIdentity(run) => self.prover_pake_4(ep, at, &run, body).await,
            Phase::AwaitHello => {
                let suite = self.suite.clone();
                let reply = |status, static_key| {
                    wire::frame(
                        &HelloReply {
                            status,
                            suite: suite.clone(),
                            static_key,
                        }
                        .encode(),
                    )
                };
                let hello = match Hello::decode(body) {
                    Ok(hello) => hello,
                    Err(_) => {
                        return Err(End {
                            last: Some(reply(HelloStatus::Unsupported, None)),
                            ..End::rejected(Refusal::Malformed)
                        });
                    }
                };
                if self.entropy_failed {
                    return Err(End {
                        last: Some(reply(HelloStatus::Unavailable, None)),
                        ..End::failed(Refusal::NoEntropy)
                    });
                }
                if hello.suite != self.suite {
                    let theirs = wire::suite_for_console::<H>(&hello.suite);
                    ep.console(&markers::DSOFTBUSD_SUITE_MISMATCH.render(&[&self.suite, &theirs]));
                    return Err(End {
                        last: Some(reply(HelloStatus::SuiteMismatch, None)),
                        ..End::rejected(Refusal::SuiteMismatch)
                    });
                }
                // A paced peer hears Busy before it spends a first message; the draw
                // itself is taken by the first message, so hellos cannot drain it.
                if !self.table.pace.available(now_ms) {
                    return Err(End {
                        last: Some(reply(HelloStatus::Busy, None)),
                        ..End::rejected(Refusal::Paced)
                    });
                }
                self.table.conns[at].phase = Phase::AwaitMessage1;
                Ok(alloc::vec![reply(
                    HelloStatus::Ok,
                    Some(*self.static_key.public_key().as_bytes())
                )])
            }
            Phase::AwaitMessage1 => {
                let (awaiting, message_2) = match self.respond_to_message_1(ep, body, now_ms).await
                {
                    Ok(done) => done,
                    Err(end) => return Err(end),
                };
                self.table.conns[at].phase = Phase::AwaitMessage3(awaiting);
                Ok(alloc::vec![wire::frame(&message_2)])
            }
            Phase::AwaitMessage3(awaiting) => {
                let (mut transport, peer) = self
                    .finish_handshake(awaiting, body)
                    .map_err(End::rejected)?;
                if self.table.established() >= self.table.limits.established {
                    return Err(End::rejected(Refusal::SessionsFull));
                }
                let ready = transport
                    .encrypt(&AppMessage::Ready.encode())
                    .map_err(|_| End::failed(Refusal::Transport))?;
                let conn = &mut self.table.conns[at];
                conn.phase = Phase::Established(transport);
                conn.peer = Some(peer);
                ep.audit(record(
                    ServiceId::Dsoftbusd,
                    Operation::DsoftbusdTransport,
                    Verdict::Allowed,
                    Refusal::Established as u16,
                    fingerprint(&peer),
                ));
                ep.console(markers::DSOFTBUSD_AUTH_OK.message);
                ep.console(&markers::DSOFTBUSD_SESSION.render(&[&hex(&peer)]));
                self.table.conns[at].announced = true;
                Ok(alloc::vec![wire::frame(&ready)])
            }
            Phase::Established(mut transport) => {
                let plaintext = match transport.decrypt(body) {
                    Ok(plaintext) => Zeroizing::new(plaintext),
                    Err(_) => {
                        self.table.conns[at].phase = Phase::Established(transport);
                        return self.undecryptable(ep, at);
                    }
                };
                let peer = self.table.conns[at].peer.unwrap_or_default();
                // Pairing's operations are a trusted peer's: trusted now, not only when
                // its session began.
                let trusted = self.allowlist.iter().any(|k| k.to_bytes() == peer);
                let mut ended: Vec<Handle> = Vec::new();
                let mut forgotten: Option<[u8; 32]> = None;
                let mut unpaired_self = false;
                let answer = Zeroizing::new(match AppMessage::parse(&plaintext) {
                    Some(AppMessage::Ping(data)) => AppMessage::Pong(data).encode(),
                    Some(AppMessage::Bye) => {
                        self.table.conns[at].phase = Phase::Established(transport);
                        return Err(End {
                            refusal: Refusal::Closed,
                            verdict: Verdict::Allowed,
                            last: None,
                        });
                    }
                    Some(AppMessage::PairOpen) if trusted => {
                        self.pair_open(ep, &peer, now_ms).await.encode()
                    }
                    Some(AppMessage::Unpair(key)) if trusted => {
                        let answer = self.unpair(ep, &peer, key).await;
                        if answer == AppMessage::Done {
                            unpaired_self = key == peer;
                            ended = self.sessions_of(key);
                            forgotten = <[u8; 32]>::try_from(key).ok();
                        }
                        answer.encode()
                    }
                    Some(AppMessage::PairOpen | AppMessage::Unpair(_)) => {
                        AppMessage::Refused.encode()
                    }
                    _ => AppMessage::Unknown.encode(),
                });
                let sealed = transport
                    .encrypt(&answer)
                    .map_err(|_| End::failed(Refusal::Transport));
                // The connection is found again: a call above may have ended others.
                let Link::Tcp(own) = self.table.conns[at].link else {
                    return Err(End::rejected(Refusal::Malformed));
                };
                self.table.conns[at].phase = Phase::Established(transport);
                let sealed = sealed?;
                // The sessions of a key forgotten end now (the asker's own with its
                // answer); over IPC too.
                if let Some(key) = forgotten {
                    self.end_ipc_sessions_of(ep, &key);
                }
                for handle in ended.into_iter().filter(|h| *h != own) {
                    self.end(
                        ep,
                        handle,
                        End {
                            refusal: Refusal::Unpaired,
                            verdict: Verdict::Allowed,
                            last: None,
                        },
                    )
                    .await;
                }
                if unpaired_self {
                    return Err(End {
                        refusal: Refusal::Unpaired,
                        verdict: Verdict::Allowed,
                        last: Some(wire::frame(&sealed)),
                    });
                }
                Ok(alloc::vec![wire::frame(&sealed)])
            }
            Phase::AwaitHelloReply => self.initiator_hello_reply(ep, at, body, now_ms).await,
            Phase::AwaitMessage2(awaiting, rs) => {
                let (ready, payload) = awaiting
                    .read_message_2(body)
                    .map_err(|e| End::rejected(noise_refusal(e, Refusal::Message2)))?;
                let conn = &self.table.conns[at];
                let Some(outgoing) = &conn.outgoing else {
                    return Err(End::rejected(Refusal::Malformed));
                };
                let expected = core::slice::from_ref(&outgoing.expected);
                let binding =
                    Binding::decode(&payload).map_err(|e| End::rejected(binding_refusal(e)))?;
                self.bindings
                    .borrow_mut()
                    .verify::<Sig<P>>(&binding, &rs, expected)
                    .map_err(|e| End::rejected(binding_refusal(e)))?;
                let (transport, message_3) = ready
                    .write_message_3(&self.binding.encode())
                    .map_err(|e| End::rejected(noise_refusal(e, Refusal::Message2)))?;
                let conn = &mut self.table.conns[at];
                conn.peer = Some(binding.device_key);
                conn.phase = Phase::AwaitReady(transport);
                Ok(alloc::vec![wire::frame(&message_3)])
            }
            Phase::AwaitReady(mut transport) => {
                let plaintext = match transport.decrypt(body) {
                    Ok(plaintext) => Zeroizing::new(plaintext),
                    Err(_) => {
                        self.table.conns[at].phase = Phase::AwaitReady(transport);
                        return self.undecryptable(ep, at);
                    }
                };
                if AppMessage::parse(&plaintext) != Some(AppMessage::Ready) {
                    return Err(End::rejected(Refusal::Malformed));
                }
                let conn = &mut self.table.conns[at];
                let peer = conn.peer.unwrap_or_default();
                ep.audit(record(
                    conn.outgoing
                        .as_ref()
                        .map_or(ServiceId::Dsoftbusd, |o| o.caller),
                    Operation::DsoftbusdConnect,
                    Verdict::Allowed,
                    Refusal::Established as u16,
                    fingerprint(&peer),
                ));
                ep.console(&markers::DSOFTBUSD_SESSION.render(&[&hex(&peer)]));
                conn.announced = true;
                let ping = Zeroizing::new(
                    rngd::get_entropy(ep, 16)
                        .await
                        .map(|b| b.to_vec())
                        .unwrap_or_default(),
                );
                let sealed = transport
                    .encrypt(&Zeroizing::new(AppMessage::Ping(&ping).encode()))
                    .map_err(|_| End::failed(Refusal::Transport))?;
                let conn = &mut self.table.conns[at];
                if let Some(outgoing) = conn.outgoing.as_mut() {
                    outgoing.ping = ping;
                }
                conn.phase = Phase::AwaitPong(transport);
                Ok(alloc::vec![wire::frame(&sealed)])
            }
            Phase::AwaitPong(mut transport) => {
                let plaintext = match transport.decrypt(body) {
                    Ok(plaintext) => Zeroizing::new(plaintext),
                    Err(_) => {
                        self.table.conns[at].phase = Phase::AwaitPong(transport);
                        return self.undecryptable(ep, at);
                    }
                };
                let conn = &mut self.table.conns[at];
                let expected = conn
                    .outgoing
                    .as_ref()
                    .map(|o| o.ping.clone())
                    .unwrap_or_default();
                if AppMessage::parse(&plaintext) != Some(AppMessage::Pong(&expected)) {
                    return Err(End::rejected(Refusal::Malformed));
                }
                let bye = transport
                    .encrypt(&AppMessage::Bye.encode())
                    .map_err(|_| End::failed(Refusal::Transport))?;
                let hash = *transport.handshake_hash();
                let peer = conn.peer.unwrap_or_default();
                conn.phase = Phase::Established(transport);
                if let Some(outgoing) = conn.outgoing.take() {
                    let connected = Connected {
                        device_key: peer,
                        handshake_hash: hash,
                    };
                    ep.audit(record(
                        outgoing.caller,
                        Operation::DsoftbusdConnect,
                        Verdict::Allowed,
                        0,
                        fingerprint(&peer),
                    ));
                    if let Some(token) = outgoing.token {
                        let _ = reply_ok(ep, token, &connected.encode());
                    }
                }
                // The ping proved the session both ways: end it with a BYE.
                Err(End {
                    refusal: Refusal::Closed,
                    verdict: Verdict::Allowed,
                    last: Some(wire::frame(&bye)),
                })
            }
            Phase::Connecting | Phase::ProverConnecting | Phase::Gone => {
                Err(End::rejected(Refusal::Malformed))
            }
        }
    }

    // ---------------------------------------------------------------- pairing

    /// Whether a connection other than `at` is pairing now (one pairing at a time).
    fn pairing_elsewhere(&self, at: usize) -> bool {
        self.table.conns.iter().enumerate().any(|(i, c)| {
            i != at && matches!(c.phase, Phase::PairAwaitShare | Phase::PairAwaitConfirm(_))
        })
    }

    /// The TCP connections whose established session is with `device_key`.
    fn sessions_of(&self, device_key: &[u8]) -> Vec<Handle> {
        self.table
            .conns
            .iter()
            .filter(|c| {
                matches!(c.phase, Phase::Established(_) | Phase::Gone)
                    && c.peer.is_some_and(|p| p == device_key)
            })
            .filter_map(|c| match c.link {
                Link::Tcp(handle) => Some(handle),
                Link::Ipc { .. } => None,
            })
            .collect()
    }

    /// Ends the IPC sessions whose peer is `device_key` (a key forgotten), each with
    /// its record.
    fn end_ipc_sessions_of<E: Endpoint>(&mut self, ep: &E, device_key: &[u8; 32]) {
        let mut index = 0;
        while index < self.table.conns.len() {
            let conn = &self.table.conns[index];
            match conn.link {
                Link::Ipc { task, .. } if conn.peer.as_ref() == Some(device_key) => {
                    let conn = self.table.conns.remove(index);
                    ep.audit(record(
                        task,
                        Operation::DsoftbusdTransport,
                        Verdict::Allowed,
                        Refusal::Unpaired as u16,
                        conn.detail(),
                    ));
                }
                _ => index += 1,
            }
        }
    }

    fn pairing_refused<E: Endpoint>(&self, ep: &E, refusal: Refusal) -> End {
        ep.console(&markers::DSOFTBUSD_PAIRING_REFUSED.render(&[refusal.word()]));
        End::rejected(refusal)
    }

    /// A pair hello: the window, the suite, one pairing at a time, then the password
    /// hash's parameters.
    fn pair_hello<E: Endpoint>(
        &mut self,
        ep: &E,
        at: usize,
        body: &[u8],
        now_ms: u64,
    ) -> Result<Vec<Vec<u8>>, End> {
        let suite = self.suite.clone();
        let reply = |status, params| {
            wire::frame(
                &PairReply {
                    status,
                    suite: suite.clone(),
                    params,
                }
                .encode(),
            )
        };
        let Ok(hello) = PairHello::decode(body) else {
            return Err(End {
                last: Some(reply(PairStatus::Unsupported, None)),
                ..End::rejected(Refusal::Malformed)
            });
        };
        if !self.pairing.provisioned || self.entropy_failed {
            return Err(End {
                last: Some(reply(PairStatus::Unavailable, None)),
                ..End::rejected(Refusal::PairingClosed)
            });
        }
        if self.pairing.attempts_left == 0 {
            self.close_window(ep, "attempts");
        }
        if !self.window_open(ep, now_ms) {
            return Err(End {
                last: Some(reply(PairStatus::Closed, None)),
                ..End::rejected(Refusal::PairingClosed)
            });
        }
        if hello.suite != self.suite {
            let theirs = wire::suite_for_console::<H>(&hello.suite);
            ep.console(&markers::DSOFTBUSD_SUITE_MISMATCH.render(&[&self.suite, &theirs]));
            return Err(End {
                last: Some(reply(PairStatus::SuiteMismatch, None)),
                ..End::rejected(Refusal::SuiteMismatch)
            });
        }
        if self.pairing_elsewhere(at) {
            return Err(End {
                last: Some(reply(PairStatus::Busy, None)),
                ..End::rejected(Refusal::HalfOpenFull)
            });
        }
        let params = Some((self.pairing.iterations, self.pairing.salt));
        self.table.conns[at].phase = Phase::PairAwaitShare;
        Ok(alloc::vec![reply(PairStatus::Ok, params)])
    }

    /// `pake 1`: keystored answers as the verifier (and counts the attempt first).
    async fn pake_1<E: Endpoint>(
        &mut self,
        ep: &E,
        at: usize,
        body: &[u8],
    ) -> Result<Vec<Vec<u8>>, End> {
        let Ok(share_p) = <&[u8; pair::SHARE_LEN]>::try_from(body) else {
            return Err(self.pairing_refused(ep, Refusal::Malformed));
        };
        // The window may have closed since the hello (its time, or another peer's
        // pairing): no run starts outside it.
        if !self.window_open(ep, ep.uptime_ms()) {
            return Err(self.pairing_refused(ep, Refusal::PairingClosed));
        }
        let context = pair::pake_context(&self.suite);
        let (share_v, confirm_v) = match keystored::pairing_start(ep, share_p, &context).await {
            Ok(answer) => {
                self.pairing.attempts_left = self.pairing.attempts_left.saturating_sub(1);
                answer
            }
            Err(ClientError::Service(ServiceError::Closed)) => {
                self.pairing.attempts_left = 0;
                self.close_window(ep, "attempts");
                return Err(self.pairing_refused(ep, Refusal::PairingClosed));
            }
            Err(error) => {
                // keystored counts a share the PAKE refuses like any failed run.
                if error == ClientError::Service(ServiceError::AuthenticationFailed) {
                    self.pairing.attempts_left = self.pairing.attempts_left.saturating_sub(1);
                    if self.pairing.attempts_left == 0 {
                        self.close_window(ep, "attempts");
                    }
                }
                return Err(self.pairing_refused(ep, Refusal::PairingRefused));
            }
        };
        let pake_2 = wire::frame(&[&share_v[..], &confirm_v].concat());
        self.table.conns[at].phase =
            Phase::PairAwaitConfirm(alloc::boxed::Box::new(pair::PakeMessages {
                share_p: *share_p,
                share_v,
                confirm_v,
            }));
        Ok(alloc::vec![pake_2])
    }

    /// `pake 3`: keystored checks the prover's confirmation and gives the shared key;
    /// the prover's identity opens under it and is checked; the trust store is written;
    /// then the device's own identity goes back in `pake 4`, and the window closes.
    async fn pake_3<E: Endpoint>(
        &mut self,
        ep: &E,
        at: usize,
        run: &pair::PakeMessages,
        body: &[u8],
    ) -> Result<Vec<Vec<u8>>, End> {
        if body.len() != pair::PAKE_3_LEN {
            return Err(self.pairing_refused(ep, Refusal::Malformed));
        }
        let (confirm_p, sealed) = body.split_at(pair::CONFIRM_LEN);
        let mut confirm = [0u8; pair::CONFIRM_LEN];
        confirm.copy_from_slice(confirm_p);
        let Ok(shared) = keystored::pairing_finish(ep, &confirm).await else {
            if self.pairing.attempts_left == 0 {
                self.close_window(ep, "attempts");
            }
            return Err(self.pairing_refused(ep, Refusal::PairingRefused));
        };
        // keystored took the run's count back.
        self.pairing.attempts_left = self.pairing.attempts_left.saturating_add(1);
        let th = pair::transcript_hash::<H>(&run.share_p, &run.share_v, &run.confirm_v, &confirm);
        let keys = IdentityKeys::derive::<H>(&shared, &th);
        drop(shared);
        let peer =
            match pair::open_identity::<Aead<P>, Sig<P>>(&keys.prover, &th, pair::PROVER, sealed) {
                Ok(key) => key.to_bytes(),
                Err(_) => return Err(self.pairing_refused(ep, Refusal::PairingIdentity)),
            };
        let signature = keystored::sign(
            ep,
            SigningPurpose::PairingConfirm,
            &[&[pair::VERIFIER][..], &th].concat(),
        )
        .await
        .map_err(|_| self.pairing_refused(ep, Refusal::PairingStore))?;
        let mut keys_after = self.stored.clone();
        if !keys_after.contains(&peer) {
            let in_memory = self.allowlist.iter().any(|k| k.to_bytes() == peer);
            if keys_after.len() >= state_format::trust::MAX_PEERS
                || (!in_memory && self.allowlist.len() >= MAX_TRUSTED)
            {
                return Err(self.pairing_refused(ep, Refusal::PairingStore));
            }
            keys_after.push(peer);
            if self.persist_trust(ep, keys_after).await.is_err() && !self.stored.contains(&peer) {
                return Err(self.pairing_refused(ep, Refusal::PairingStore));
            }
        }
        let pake_4 = pair::seal_identity::<Aead<P>>(
            &keys.verifier,
            &th,
            &self.binding.device_key,
            &signature,
        );
        self.table.conns[at].peer = Some(peer);
        ep.console(&markers::DSOFTBUSD_PAIRED.render(&[&hex(&peer)]));
        self.close_window(ep, "paired");
        Err(End {
            refusal: Refusal::Paired,
            verdict: Verdict::Allowed,
            last: Some(wire::frame(&pake_4)),
        })
    }

    // ------------------------------------------------------- pairing, the prover

    /// Takes a request to pair with another device (`pair=`): tried as soon as the
    /// daemon listens.
    pub fn plan_pairing(&mut self, request: PairRequest, now_ms: u64) {
        self.prover = Some(ProverPlan {
            request,
            next_try_ms: Some(now_ms),
            tries_left: pair::PROVER_TRIES,
        });
    }

    /// Starts the pairing with another device when its time came: connects to it.
    pub async fn prover_tick<E: Endpoint>(&mut self, ep: &E, now_ms: u64) {
        let Some(plan) = &self.prover else {
            return;
        };
        if plan.next_try_ms.is_none_or(|at| now_ms < at) || self.listener.is_none() {
            return;
        }
        let remote = plan.request.remote;
        let source = Source::Task(ServiceId::Dsoftbusd);
        if self.table.admit(source).is_err() {
            return self.prover_failed(ep, Refusal::PeerBusy, false);
        }
        let connected = netstackd::connect(ep, remote, 0).await;
        self.note(&connected);
        let Ok((handle, _)) = connected else {
            return self.prover_failed(ep, Refusal::ConnectFailed, false);
        };
        if let Some(plan) = self.prover.as_mut() {
            plan.next_try_ms = None;
        }
        let mut conn = Conn::new(Link::Tcp(handle), source, Phase::ProverConnecting, now_ms);
        conn.proving = true;
        self.table.conns.push(conn);
    }

    /// A try of the pairing with another device ended without pairing: tried again
    /// later if that device could not take it yet (not listening: it may be booting;
    /// not answering; BUSY; our netstackd restarted under the try), else given up,
    /// said once on the console. A try that sent `pake 1` (`pake_sent`) is never
    /// repeated, whatever ended it: the other device counted it as one of its attempts.
    fn prover_failed<E: Endpoint>(&mut self, ep: &E, refusal: Refusal, pake_sent: bool) {
        let Some(plan) = self.prover.as_mut() else {
            return;
        };
        let retry = !pake_sent
            && matches!(
                refusal,
                Refusal::ConnectFailed | Refusal::PeerBusy | Refusal::NetworkRestarted
            );
        if retry && plan.tries_left > 0 {
            plan.tries_left -= 1;
            plan.next_try_ms = Some(ep.uptime_ms().saturating_add(pair::PROVER_RETRY_MS));
            return;
        }
        self.prover = None;
        ep.console(&markers::DSOFTBUSD_PAIRING_REFUSED.render(&[refusal.word()]));
    }

    /// The pairing with another device succeeded: a session to it proves that each
    /// now trusts the other (handshake, ping, `BYE`, as for `CONNECT`).
    async fn session_after_pairing<E: Endpoint>(&mut self, ep: &E, device: [u8; 32]) {
        let Some(plan) = self.prover.take() else {
            return;
        };
        let (caller, remote) = (ServiceId::Dsoftbusd, plan.request.remote);
        if let Err((error, refusal, _)) = self
            .open_session(ep, caller, None, remote, &device, ep.uptime_ms())
            .await
        {
            ep.audit(record(
                caller,
                Operation::DsoftbusdConnect,
                Verdict::Failed,
                refusal as u16,
                fingerprint(&device),
            ));
            ep.console(&alloc::format!(
                "no session with the device paired: {error}"
            ));
        }
    }

    /// The pair reply: with OK, keystored hashes the code with the other device's
    /// parameters and makes this device's share (`pake 1`).
    async fn prover_pair_reply<E: Endpoint>(
        &mut self,
        ep: &E,
        at: usize,
        body: &[u8],
    ) -> Result<Vec<Vec<u8>>, End> {
        let reply = PairReply::decode(body).map_err(|_| End::rejected(Refusal::Malformed))?;
        match reply.status {
            PairStatus::Ok => {}
            PairStatus::SuiteMismatch => {
                let theirs = wire::suite_for_console::<H>(&reply.suite);
                ep.console(&markers::DSOFTBUSD_SUITE_MISMATCH.render(&[&self.suite, &theirs]));
                return Err(End::rejected(Refusal::SuiteMismatch));
            }
            PairStatus::Busy => return Err(End::failed(Refusal::PeerBusy)),
            PairStatus::Unsupported => return Err(End::rejected(Refusal::Malformed)),
            PairStatus::Unavailable => return Err(End::failed(Refusal::PairingUnavailable)),
            PairStatus::Closed => return Err(End::rejected(Refusal::PairingClosed)),
        }
        // The reply is not authenticated: a round count outside the document's
        // bounds (one that would keep keystored hashing for hours) is refused.
        let (iterations, salt) = reply
            .params
            .filter(|(rounds, _)| {
                (state_format::pairing::MIN_ITERATIONS..=state_format::pairing::MAX_ITERATIONS)
                    .contains(rounds)
            })
            .ok_or(End::rejected(Refusal::Malformed))?;
        let digits = self
            .prover
            .as_ref()
            .map(|plan| Zeroizing::new(*plan.request.digits()))
            .ok_or(End::rejected(Refusal::Malformed))?;
        let context = pair::pake_context(&self.suite);
        // keystored hashes within the kernel's call deadline or the call times out (a
        // count far above this image's own, on a slow machine): said as a deadline.
        let share_p = keystored::pairing_prove(ep, iterations, &salt, &digits, &context)
            .await
            .map_err(|error| match error {
                ClientError::Ipc(IpcError::Timeout) => End::failed(Refusal::HandshakeTimeout),
                ClientError::Service(ServiceError::Unavailable) => End::failed(Refusal::NoEntropy),
                _ => End::rejected(Refusal::Malformed),
            })?;
        drop(digits);
        self.table.conns[at].phase = Phase::ProverAwaitShare(alloc::boxed::Box::new(share_p));
        Ok(alloc::vec![wire::frame(&share_p)])
    }

    /// `pake 2`: keystored checks the other device's confirmation (only the device
    /// holding the code's verifier can make it) and gives this device's and the
    /// shared key; then this device's identity goes out sealed in `pake 3`.
    async fn prover_pake_2<E: Endpoint>(
        &mut self,
        ep: &E,
        at: usize,
        share_p: &[u8; pair::SHARE_LEN],
        body: &[u8],
    ) -> Result<Vec<Vec<u8>>, End> {
        if body.len() != pair::PAKE_2_LEN {
            return Err(End::rejected(Refusal::Malformed));
        }
        let mut share_v = [0u8; pair::SHARE_LEN];
        share_v.copy_from_slice(&body[..pair::SHARE_LEN]);
        let mut confirm_v = [0u8; pair::CONFIRM_LEN];
        confirm_v.copy_from_slice(&body[pair::SHARE_LEN..]);
        // A wrong code, or not the device whose code it is: nothing more is sent.
        let (confirm_p, shared) = keystored::pairing_prove_finish(ep, &share_v, &confirm_v)
            .await
            .map_err(|_| End::rejected(Refusal::PairingRefused))?;
        let th = pair::transcript_hash::<H>(share_p, &share_v, &confirm_v, &confirm_p);
        let keys = IdentityKeys::derive::<H>(&shared, &th);
        drop(shared);
        let signature = keystored::sign(
            ep,
            SigningPurpose::PairingConfirm,
            &[&[pair::PROVER][..], &th].concat(),
        )
        .await
        .map_err(|_| End::failed(Refusal::PairingStore))?;
        let sealed =
            pair::seal_identity::<Aead<P>>(&keys.prover, &th, &self.binding.device_key, &signature);
        self.table.conns[at].phase =
            Phase::ProverAwaitIdentity(alloc::boxed::Box::new(ProverPending { keys, th }));
        Ok(alloc::vec![wire::frame(
            &[&confirm_p[..], &sealed].concat()
        )])
    }

    /// `pake 4`: the other device's identity opens under the run's key and checks;
    /// its key goes into this device's trust store (written, then kept in memory).
    async fn prover_pake_4<E: Endpoint>(
        &mut self,
        ep: &E,
        at: usize,
        run: &ProverPending,
        body: &[u8],
    ) -> Result<Vec<Vec<u8>>, End> {
        let device = pair::open_identity::<Aead<P>, Sig<P>>(
            &run.keys.verifier,
            &run.th,
            pair::VERIFIER,
            body,
        )
        .map_err(|_| End::rejected(Refusal::PairingIdentity))?
        .to_bytes();
        if !self.stored.contains(&device) {
            let in_memory = self.allowlist.iter().any(|k| k.to_bytes() == device);
            if self.stored.len() >= state_format::trust::MAX_PEERS
                || (!in_memory && self.allowlist.len() >= MAX_TRUSTED)
            {
                return Err(End::failed(Refusal::PairingStore));
            }
            let mut keys_after = self.stored.clone();
            keys_after.push(device);
            if self.persist_trust(ep, keys_after).await.is_err() && !self.stored.contains(&device) {
                return Err(End::failed(Refusal::PairingStore));
            }
        }
        self.table.conns[at].peer = Some(device);
        ep.console(&markers::DSOFTBUSD_PAIRED.render(&[&hex(&device)]));
        // This device trusts someone now: its own window, opened because it trusted
        // nobody, closes (a trusted peer can reopen it).
        self.close_window(ep, "paired");
        Err(End {
            refusal: Refusal::Paired,
            verdict: Verdict::Allowed,
            last: None,
        })
    }

    /// `PAIROPEN` from trusted `peer`: the failed-attempt count back to 0, the window
    /// open for [`pair::WINDOW_MS`].
    async fn pair_open<E: Endpoint>(
        &mut self,
        ep: &E,
        peer: &[u8; 32],
        now_ms: u64,
    ) -> AppMessage<'static> {
        if !self.pairing.provisioned || keystored::pairing_reopen(ep).await.is_err() {
            return AppMessage::Refused;
        }
        let seconds = self.open_window(now_ms);
        self.pairing.attempts_left = state_format::pairing::MAX_FAILED_ATTEMPTS;
        ep.audit(record(
            ServiceId::Dsoftbusd,
            Operation::DsoftbusdTransport,
            Verdict::Allowed,
            Refusal::PairingClosed as u16,
            fingerprint(peer),
        ));
        ep.console(&markers::DSOFTBUSD_PAIRING_WINDOW_OPEN.render(&[&alloc::format!("{seconds}")]));
        AppMessage::Done
    }

    /// `UNPAIR` from trusted `peer`: `key` leaves the trust store, on the disk and in
    /// memory together.
    async fn unpair<E: Endpoint>(
        &mut self,
        ep: &E,
        peer: &[u8; 32],
        key: &[u8],
    ) -> AppMessage<'static> {
        let Ok(key) = <[u8; 32]>::try_from(key) else {
            return AppMessage::Refused;
        };
        if !self.stored.contains(&key) {
            return AppMessage::Refused;
        }
        let keys: Vec<[u8; 32]> = self.stored.iter().filter(|k| **k != key).copied().collect();
        if self.persist_trust(ep, keys).await.is_err() && self.stored.contains(&key) {
            return AppMessage::Refused;
        }
        ep.audit(record(
            ServiceId::Dsoftbusd,
            Operation::DsoftbusdTransport,
            Verdict::Allowed,
            Refusal::Unpaired as u16,
            fingerprint(peer),
        ));
        ep.console(&markers::DSOFTBUSD_UNPAIRED.render(&[&hex(&key)]));
        AppMessage::Done
    }

    /// A transport message of connection `at` that did not decrypt: the session is
    /// left as it was (its cipher state did not move), the refusal recorded, and the
    /// session closed only once it has had [`Limits::failed_decrypts`] of them.
    fn undecryptable<E: Endpoint>(&mut self, ep: &E, at: usize) -> Result<Vec<Vec<u8>>, End> {
        let limit = self.table.limits.failed_decrypts;
        let conn = &mut self.table.conns[at];
        conn.failed_decrypts += 1;
        ep.audit(record(
            ServiceId::Dsoftbusd,
            Operation::DsoftbusdTransport,
            Verdict::Rejected,
            Refusal::Transport as u16,
            conn.detail(),
        ));
        if conn.failed_decrypts >= limit {
            return Err(End::rejected(Refusal::Transport));
        }
        Ok(Vec::new())
    }

    /// Ends the connection on `handle`: sends its last frame, records why, says so on
    /// the console when the session was established (whatever ended it), closes the
    /// connection, and answers a `CONNECT` still waiting for it. The console line comes
    /// before the close, so a peer that sees the connection end can find it.
    async fn end<E: Endpoint>(&mut self, ep: &E, handle: Handle, end: End) {
        let Some(at) = self.table.find(Link::Tcp(handle)) else {
            return;
        };
        let conn = self.table.conns.remove(at);
        let refusal = match end.refusal {
            // Sending failed because the connection is gone: for an established
            // session that is its connection closing, not a handshake cut short.
            Refusal::PeerClosed if conn.announced => Refusal::ConnectionClosed,
            other => other,
        };
        let graceful = end.last.is_some() || refusal == Refusal::Closed;
        if let Some(last) = &end.last {
            let _ = send_frame(ep, handle, last).await;
        }
        account_end(ep, &conn, end.verdict, refusal);
        let closed = netstackd::close(ep, handle, !graceful).await;
        self.note(&closed);
        if let Some(token) = conn.outgoing.and_then(|o| o.token) {
            let _ = reply_err(ep, token, connect_error(refusal));
        }
        if conn.proving {
            match (refusal, conn.peer) {
                (Refusal::Paired, Some(device)) => self.session_after_pairing(ep, device).await,
                _ => self.prover_failed(ep, refusal, conn.phase.pake_sent()),
            }
        }
    }

    /// The earliest deadline of any connection (a `CONNECT`'s included), so the daemon
    /// wakes for it.
    pub fn next_deadline(&self) -> Option<u64> {
        let limits = self.table.limits;
        self.table
            .conns
            .iter()
            .map(|c| {
                let own = c.deadline(&limits);
                if c.outgoing.as_ref().is_some_and(|o| o.token.is_some()) {
                    own.min(c.opened_ms.saturating_add(CONNECT_DEADLINE_MS))
                } else {
                    own
                }
            })
            .chain(self.prover.as_ref().and_then(|p| p.next_try_ms))
            .min()
    }

    /// Closes every connection whose deadline passed.
    pub async fn expire<E: Endpoint>(&mut self, ep: &E, now_ms: u64) {
        let limits = self.table.limits;
        let mut index = 0;
        while index < self.table.conns.len() {
            let conn = &self.table.conns[index];
            let connect_late = conn.outgoing.as_ref().is_some_and(|o| {
                o.token.is_some() && now_ms >= conn.opened_ms.saturating_add(CONNECT_DEADLINE_MS)
            });
            let refusal = if connect_late {
                Some(Refusal::HandshakeTimeout)
            } else {
                conn.expired(now_ms, &limits)
            };
            let Some(refusal) = refusal else {
                index += 1;
                continue;
            };
            match conn.link {
                Link::Tcp(handle) => {
                    let last = match &mut self.table.conns[index].phase {
                        Phase::Established(transport) if refusal == Refusal::IdleTimeout => {
                            transport
                                .encrypt(&AppMessage::Bye.encode())
                                .ok()
                                .map(|bye| wire::frame(&bye))
                        }
                        _ => None,
                    };
                    self.end(
                        ep,
                        handle,
                        End {
                            refusal,
                            verdict: Verdict::Rejected,
                            last,
                        },
                    )
                    .await;
                }
                Link::Ipc { task, .. } => {
                    let conn = self.table.conns.remove(index);
                    ep.audit(record(
                        task,
                        Operation::DsoftbusdTransport,
                        Verdict::Rejected,
                        refusal as u16,
                        conn.detail(),
                    ));
                }
            }
        }
    }

    // ---------------------------------------------------------------- initiating

    /// `CONNECT`: opens a session to a peer device and pings it; the answer comes when
    /// the pong does (or the session fails), within [`CONNECT_DEADLINE_MS`].
    pub async fn connect<E: Endpoint>(
        &mut self,
        ep: &E,
        caller: ServiceId,
        token: ReplyToken,
        payload: &[u8],
        now_ms: u64,
    ) {
        let op = Operation::DsoftbusdConnect;
        let refuse = |token, error: ServiceError, refusal: Refusal| {
            ep.audit(record(
                caller,
                op,
                Verdict::Rejected,
                refusal as u16,
                payload.len() as u32,
            ));
            let _ = reply_err(ep, token, error);
        };
        let (remote, device_key) = match decode_connect(payload) {
            Ok(parts) => parts,
            Err(error) => return refuse(token, error, Refusal::Malformed),
        };
        if let Err((error, refusal, Some(token))) = self
            .open_session(ep, caller, Some(token), remote, &device_key, now_ms)
            .await
        {
            refuse(token, error, refusal);
        }
    }

    /// Opens a session to `device_key` (which must be trusted) at `remote` for
    /// `caller`: its answer to `token`, if any, comes when the pong does. A session
    /// that cannot start gives the token back with why.
    async fn open_session<E: Endpoint>(
        &mut self,
        ep: &E,
        caller: ServiceId,
        token: Option<ReplyToken>,
        remote: netstackd::SocketAddr,
        device_key: &[u8; 32],
        now_ms: u64,
    ) -> Result<(), (ServiceError, Refusal, Option<ReplyToken>)> {
        let Some(expected) = self
            .allowlist
            .iter()
            .find(|k| k.to_bytes() == *device_key)
            .cloned()
        else {
            return Err((
                ServiceError::AuthenticationFailed,
                Refusal::UnknownIdentity,
                token,
            ));
        };
        if self.listener.is_none() {
            return Err((ServiceError::Unavailable, Refusal::ConnectFailed, token));
        }
        let source = Source::Task(caller);
        if let Err(refusal) = self.table.admit(source) {
            return Err((ServiceError::Busy, refusal, token));
        }
        let connected = netstackd::connect(ep, remote, 0).await;
        self.note(&connected);
        let handle = match connected {
            Ok((handle, _)) => handle,
            Err(error) => {
                let error = match error {
                    ClientError::Service(error) => error,
                    _ => ServiceError::Unavailable,
                };
                return Err((error, Refusal::ConnectFailed, token));
            }
        };
        let mut conn = Conn::new(Link::Tcp(handle), source, Phase::Connecting, now_ms);
        conn.outgoing = Some(Outgoing {
            token,
            caller,
            expected,
            ping: Zeroizing::new(Vec::new()),
        });
        self.table.conns.push(conn);
        Ok(())
    }

    async fn on_connected<E: Endpoint>(&mut self, ep: &E, at: usize, _now_ms: u64) {
        let Link::Tcp(handle) = self.table.conns[at].link else {
            return;
        };
        let (hello, next) = match self.table.conns[at].phase {
            Phase::Connecting => (
                Hello {
                    suite: self.suite.clone(),
                }
                .encode(),
                Phase::AwaitHelloReply,
            ),
            Phase::ProverConnecting => (
                PairHello {
                    suite: self.suite.clone(),
                }
                .encode(),
                Phase::ProverAwaitReply,
            ),
            _ => return,
        };
        self.table.conns[at].phase = next;
        if let Err(end) = send_frame(ep, handle, &wire::frame(&hello)).await {
            self.end(ep, handle, end).await;
        }
    }

    async fn initiator_hello_reply<E: Endpoint>(
        &mut self,
        ep: &E,
        at: usize,
        body: &[u8],
        now_ms: u64,
    ) -> Result<Vec<Vec<u8>>, End> {
        let reply = HelloReply::decode(body).map_err(|_| End::rejected(Refusal::Malformed))?;
        match reply.status {
            HelloStatus::Ok => {}
            HelloStatus::SuiteMismatch => {
                let theirs = wire::suite_for_console::<H>(&reply.suite);
                ep.console(&markers::DSOFTBUSD_SUITE_MISMATCH.render(&[&self.suite, &theirs]));
                return Err(End::rejected(Refusal::SuiteMismatch));
            }
            HelloStatus::Busy => return Err(End::failed(Refusal::PeerBusy)),
            HelloStatus::Unsupported => return Err(End::rejected(Refusal::Malformed)),
            HelloStatus::Unavailable => return Err(End::failed(Refusal::ConnectFailed)),
        }
        let rs = X25519PublicKey(reply.static_key.ok_or(End::rejected(Refusal::Malformed))?);
        if !self.table.pace.take(now_ms) {
            return Err(End::rejected(Refusal::Paced));
        }
        let entropy = match ephemeral(ep).await {
            Ok(entropy) => entropy,
            Err(why) => {
                self.entropy_failed |= why == NoEphemeral::Closed;
                return Err(End::failed(Refusal::NoEntropy));
            }
        };
        let initiator =
            Initiator::<Kx<P>, Aead<P>, H>::new(PROLOGUE, Rc::clone(&self.static_key), rs);
        let (awaiting, message_1) = initiator
            .write_message_1(&entropy, &[])
            .map_err(|e| End::rejected(noise_refusal(e, Refusal::Message2)))?;
        self.table.conns[at].phase = Phase::AwaitMessage2(awaiting, rs);
        Ok(alloc::vec![wire::frame(&message_1)])
    }
}

/// Sends one frame, whole, or says the peer is not taking bytes.
/// Records why a connection over TCP ended (for the task that asked for it, when it
/// was a `CONNECT`), and says so on the console when its session was established.
fn account_end<P: Provider, H: HashBackend, E: Endpoint>(
    ep: &E,
    conn: &Conn<P, H>,
    verdict: Verdict,
    refusal: Refusal,
) {
    let (subject, operation) = match &conn.outgoing {
        Some(outgoing) => (outgoing.caller, Operation::DsoftbusdConnect),
        None => (ServiceId::Dsoftbusd, Operation::DsoftbusdTransport),
    };
    ep.audit(record(
        subject,
        operation,
        verdict,
        refusal as u16,
        conn.detail(),
    ));
    if let Some(peer) = conn.peer.filter(|_| conn.announced) {
        ep.console(&markers::DSOFTBUSD_SESSION_CLOSED.render(&[&hex(&peer), refusal.word()]));
    }
}

async fn send_frame<E: Endpoint>(ep: &E, handle: Handle, frame: &[u8]) -> Result<(), End> {
    match netstackd::send(ep, handle, frame, 0).await {
        Ok(sent) if sent == frame.len() => Ok(()),
        Ok(_) => Err(End::failed(Refusal::SlowReader)),
        Err(_) => Err(End::failed(Refusal::PeerClosed)),
    }
}
