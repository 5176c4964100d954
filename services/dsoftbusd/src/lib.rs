//! dsoftbusd: authenticated sessions between devices, over Noise XK on TCP.
//!
//! dsoftbusd listens on TCP port 7411 (through netstackd, which alone holds the
//! network device) and speaks the wire protocol of `docs/protocol.md`: a hello that
//! names the Noise suite, the three XK handshake messages, then transport messages,
//! each framed with a 2-byte big-endian length ([`wire`]). It is the XK responder for
//! peers that connect, and the initiator for sessions it is asked to open (`CONNECT`).
//! The same sessions run over IPC too (`TRANSPORT`, for the benchmark that compares
//! the two paths).
//!
//! Its Noise static key is made from rngd entropy at start and bound to the device
//! identity: keystored signs the binding (see [`binding`]) on dsoftbusd's behalf,
//! through a `SIGN` the policy allows dsoftbusd alone, so the device private key never
//! leaves keystored. Each side's binding travels in its handshake payload and must
//! name a device key on the other's allowlist and cover exactly the static key the
//! handshake authenticated. Only then is `dsoftbusd: auth ok` printed.
//!
//! **Whom it trusts.** At start dsoftbusd loads its persistent trust store (its
//! statefs record, written by the factory with `cargo xtask provision`): keystored
//! checks the store's tag with a key derived from the device-unique secret, so a person
//! holding only the disk cannot add a peer, and its version against the device's
//! anti-rollback counter, so they cannot bring back a revoked one; each key must be a
//! canonical point of prime order. A store that fails a check is refused whole, and
//! dsoftbusd fails closed with a marker that says which: `trust store refused` (tag,
//! hash or key), `trust store rolled back` (older than the counter), `trust store
//! corrupt` (the record store cannot read it intact). It prints how many peers it
//! trusts. `TRUST` adds a peer for this boot only.
//!
//! **Pairing** ([`pairing`], `docs/protocol.md` section 11): a peer that knows the
//! device's setup code becomes trusted without the factory. The window opens at start
//! when the trust store is empty (15 minutes), or when a trusted peer asks
//! (`PAIROPEN`); keystored runs the PAKE as the verifier and counts failed attempts;
//! dsoftbusd checks the peer's identity under the PAKE's key, has keystored tag a new
//! trust store, writes it and advances the rollback counter, then sends the device's
//! identity. A trusted peer can also remove a key (`UNPAIR`): the store and the
//! allowlist change together, and that key's sessions end.
//!
//! **Untrusted peers** meet a hardened table ([`sessions`]): sessions belong to a
//! connection; half-open handshakes have their own quota, per source too, and a
//! deadline; established sessions are never evicted, idle ones time out; entropy for
//! ephemeral keys is paced; every refusal, timeout and close is an audit record; a
//! failed decrypt leaves the session as it was. Messages and frames are bounded
//! (`service_api::dsoftbusd::MAX_MESSAGE`, [`wire::MAX_FRAME`]).
//!
//! The application protocol is a ping: `PING<data>` is answered with `PONG<data>`,
//! both encrypted under the session's keys; `BYE` ends a session.
//!
//! [`client`] is the initiating side used by the selftest's node and the host tests.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod binding;
pub mod client;
pub mod daemon;
pub mod pairing;
pub mod sessions;
pub mod wire;

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::future::{Future, poll_fn};
use core::pin::Pin;
use core::task::Poll;

use ipc::policy::SigningPurpose;
use ipc::{Action, AuditEvent, Endpoint, IpcError, Operation, Request, ServiceId, Verdict};
use provider_api::{HashBackend, Provider, SecretBytes, VerifyingKey, X25519SecretKey};
use service_api::dsoftbusd::MAX_TRUSTED;
use service_api::netstackd::{self, MAX_WAIT_MS, Waited};
use service_api::statefs::DSOFTBUSD_TRUST_STORE;
use service_api::{
    ClientError, Incoming, ServiceError, keystored, reply_err, reply_ok, rngd, statefs,
};

use crate::binding::Binding;
use crate::daemon::Daemon;
use crate::sessions::{LIMITS, Limits, record};

/// The Noise prologue of every dsoftbus session: both sides must agree on it.
pub const PROLOGUE: &[u8] = b"dsoftbus/v1";
pub use crate::wire::{PING, PONG};

type Sig<P> = <P as Provider>::Sig;
type Kx<P> = <P as Provider>::Kx;

/// Lower-case hex, for device keys on the console.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
    limits: Limits,
) -> Result<Daemon<P, H>, ClientError> {
    let entropy = rngd::get_entropy(ep, 32).await?;
    let seed = SecretBytes::from_fill(|seed: &mut [u8; 32]| {
        seed.copy_from_slice(&entropy);
        Ok::<(), ClientError>(())
    })?;
    let static_key = X25519SecretKey::<Kx<P>>::from_entropy(&seed);
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
        .verify::<Sig<P>>(static_key.public_key(), &[own])
        .map_err(|_| ClientError::MalformedReply)?;
    Ok(Daemon::new(static_key, binding, limits, ep.uptime_ms()))
}

/// Loads the persistent trust store (dsoftbusd's statefs record, written by the
/// factory): keystored checks its tag with the device's key and its version against
/// the rollback counter, and each key must obey provider-api's rule. No record is an
/// empty store, if keystored confirms the device never had one.
///
/// # Errors
/// The refusal; a store that exists and fails any check is refused whole.
async fn trust_store<P: Provider, E: Endpoint>(
    ep: &E,
) -> Result<Vec<VerifyingKey<Sig<P>>>, ClientError> {
    let store = match statefs::get(ep, DSOFTBUSD_TRUST_STORE).await {
        Ok(store) => store,
        Err(ClientError::Service(ServiceError::NotFound)) => {
            // No store: keystored says whether the device ever had one.
            keystored::verify_trust_store(ep, &[]).await?;
            return Ok(Vec::new());
        }
        Err(error) => return Err(error),
    };
    keystored::verify_trust_store(ep, &store).await?;
    let store = state_format::trust::parse_unverified(&store)
        .map_err(|_| ClientError::Service(ServiceError::MalformedRequest))?;
    store
        .peers
        .iter()
        .take(MAX_TRUSTED)
        .map(|peer| {
            VerifyingKey::from_bytes(peer)
                .map_err(|_| ClientError::Service(ServiceError::InvalidKey))
        })
        .collect()
}

// A trust store holds at most MAX_PEERS keys and dsoftbusd trusts at most MAX_TRUSTED:
// the `take` above may never drop a provisioned peer.
const _: () = assert!(state_format::trust::MAX_PEERS <= MAX_TRUSTED);

/// The daemon with its identity and the persistent trust store.
async fn start<P: Provider, H: HashBackend, E: Endpoint>(
    ep: &E,
    limits: Limits,
) -> Result<Daemon<P, H>, StartError> {
    let mut daemon = identity::<P, H, E>(ep, limits)
        .await
        .map_err(StartError::Identity)?;
    daemon.allowlist = trust_store::<P, E>(ep)
        .await
        .map_err(StartError::TrustStore)?;
    daemon.stored = daemon
        .allowlist
        .iter()
        .map(VerifyingKey::to_bytes)
        .collect();
    Ok(daemon)
}

/// [`start`], tried again while a service it calls (rngd, keystored, statefs) faulted
/// mid-call and is being restarted, [`service_api::RESTART_RETRIES`] times at most.
async fn start_across_restarts<P: Provider, H: HashBackend, E: Endpoint>(
    ep: &E,
    limits: Limits,
) -> Result<Daemon<P, H>, StartError> {
    let restarting = |error: &StartError| {
        matches!(error, StartError::Identity(cause) | StartError::TrustStore(cause)
            if service_api::peer_restarting(cause))
    };
    service_api::across_restarts(ep, || start::<P, H, E>(ep, limits), restarting).await
}

/// What woke the daemon.
enum Event {
    /// A request from a task.
    Request(Request),
    /// netstackd's answer to `WAIT`.
    Net(Result<Waited, ClientError>),
    /// The time to ask netstackd to listen again came.
    Relisten,
}

/// A `WAIT` in flight: kept across events, so a request never cancels it.
type PendingWait<'a> = Pin<Box<dyn Future<Output = Result<Waited, ClientError>> + 'a>>;

/// The next request, the pending `WAIT`'s answer, or the time to listen again (`at`,
/// in the kernel's milliseconds), whichever comes first.
async fn next_event<E: Endpoint>(
    ep: &E,
    waiting: &mut Option<PendingWait<'_>>,
    relisten_at: Option<u64>,
) -> Event {
    poll_fn(|cx| {
        if let Some(request) = ep.try_receive() {
            return Poll::Ready(Event::Request(request));
        }
        if let Some(wait) = waiting.as_mut()
            && let Poll::Ready(result) = wait.as_mut().poll(cx)
        {
            return Poll::Ready(Event::Net(result));
        }
        if relisten_at.is_some_and(|at| ep.uptime_ms() >= at) {
            return Poll::Ready(Event::Relisten);
        }
        Poll::Pending
    })
    .await
}

/// Consecutive failed `WAIT`s (not a restart of netstackd) after which the daemon
/// stops listening.
const MAX_WAIT_FAILURES: u32 = 8;

/// How long after a failed `LISTEN` to a restarted netstackd the daemon asks again
/// while the new process is still starting (the kernel's restart policy bounds how
/// long that can go on: past it the device stops).
const RELISTEN_EVERY_MS: u64 = 20;
/// The longest wait between tries when the new process answers and refuses (each try
/// is a call and an audit record, so the tries slow down).
const RELISTEN_SLOWEST_MS: u64 = 5_000;

/// Runs dsoftbusd until the machine stops. `bootargs` is the kernel command line: a
/// `pair=A.B.C.D:PORT:CODE` word makes this device pair with the device at that
/// address whose setup code `CODE` is (`docs/protocol.md` section 11, this device the
/// prover), then open a session to it.
pub async fn run<P: Provider, H: HashBackend, E: Endpoint>(ep: E, bootargs: &str) {
    run_with::<P, H, E>(ep, LIMITS, bootargs).await;
}

/// Where the daemon stands with netstackd.
#[derive(Clone, Copy)]
enum Network {
    /// Listening, with a `WAIT` kept open.
    Listening,
    /// netstackd was restarted (learned at `since`; `ended` connections went with the
    /// old process): listen again at `at`, then `every` ms later.
    Relisten {
        since: u64,
        at: u64,
        ended: usize,
        every: u64,
    },
    /// Not listening, for good: netstackd refused at start, or stopped answering.
    Off,
}

/// Runs dsoftbusd with `limits` until the machine stops (`bootargs` as for [`run`]).
pub async fn run_with<P: Provider, H: HashBackend, E: Endpoint>(
    ep: E,
    limits: Limits,
    bootargs: &str,
) {
    let mut daemon = match start_across_restarts::<P, H, E>(&ep, limits).await {
        Ok(mut daemon) => {
            ep.console(markers::DSOFTBUSD_READY.message);
            let peers = format!("{}", daemon.trusted());
            ep.console(&markers::DSOFTBUSD_TRUSTED_PEERS.render(&[&peers]));
            // Pairing: no setup code, or keystored not answering, is pairing off.
            if let Ok(status) = keystored::pairing_status(&ep).await
                && let Some(seconds) = daemon.start_pairing(&status, ep.uptime_ms())
            {
                ep.console(
                    &markers::DSOFTBUSD_PAIRING_WINDOW_OPEN.render(&[&format!("{seconds}")]),
                );
            }
            // The code is never said: only why the word was refused.
            match pairing::PairRequest::from_bootargs(bootargs) {
                Some(Ok(request)) => daemon.plan_pairing(request, ep.uptime_ms()),
                Some(Err(why)) => ep.console(&format!("pair= refused: {why}")),
                None => {}
            }
            daemon
        }
        Err(error) => return fail_closed(ep, error).await,
    };
    let port = format!("{}", wire::PORT);
    let mut network = match daemon.listen(&ep).await {
        Ok(()) => {
            ep.console(&markers::DSOFTBUSD_LISTENING.render(&[&port, daemon.suite()]));
            Network::Listening
        }
        Err(error) if daemon::network_gone(&error) => {
            let now = ep.uptime_ms();
            Network::Relisten {
                since: now,
                at: now,
                ended: 0,
                every: RELISTEN_EVERY_MS,
            }
        }
        Err(error) => {
            ep.console(&format!("not listening on the network: netstackd: {error}"));
            Network::Off
        }
    };
    let mut waiting: Option<PendingWait<'_>> = None;
    let mut failures = 0;
    loop {
        if waiting.is_none() && matches!(network, Network::Listening) {
            // Wake for the earliest connection deadline, or after MAX_WAIT_MS.
            let now = ep.uptime_ms();
            let wait_ms = daemon.next_deadline().map_or(MAX_WAIT_MS, |at| {
                u16::try_from(at.saturating_sub(now).clamp(1, u64::from(MAX_WAIT_MS)))
                    .unwrap_or(MAX_WAIT_MS)
            });
            waiting = Some(Box::pin(netstackd::wait(&ep, wait_ms)));
        }
        let relisten_at = match network {
            Network::Relisten { at, .. } => Some(at),
            _ => None,
        };
        let event = next_event(&ep, &mut waiting, relisten_at).await;
        daemon.expire(&ep, ep.uptime_ms()).await;
        if matches!(network, Network::Listening) {
            daemon.prover_tick(&ep, ep.uptime_ms()).await;
        }
        let mut restarted = false;
        match event {
            Event::Request(request) => serve(&ep, &mut daemon, request).await,
            Event::Net(result) => {
                waiting = None;
                match result {
                    // Answered by another generation than the listener's: netstackd
                    // was restarted while no call of this daemon was open to it.
                    Ok(waited)
                        if daemon
                            .listener()
                            .is_some_and(|l| l.generation() != waited.generation) =>
                    {
                        restarted = true;
                    }
                    Ok(waited) => {
                        failures = 0;
                        daemon.on_ready(&ep, &waited.ready).await;
                    }
                    Err(error) if daemon::network_gone(&error) => restarted = true,
                    Err(error) => {
                        failures += 1;
                        if failures >= MAX_WAIT_FAILURES {
                            ep.console(&format!("FAIL netstackd stopped answering WAIT: {error}"));
                            network = Network::Off;
                        }
                    }
                }
            }
            Event::Relisten => {
                if let Network::Relisten {
                    since,
                    ended,
                    every,
                    ..
                } = network
                {
                    network = relisten(&ep, &mut daemon, &port, since, ended, every).await;
                }
            }
        }
        if daemon.take_network_lost() {
            restarted = true;
        }
        if restarted && !matches!(network, Network::Off) {
            // Every connection went with netstackd's old process, and so did a WAIT
            // still open to it.
            waiting = None;
            let ended = daemon.network_restarted(&ep);
            let now = ep.uptime_ms();
            let (since, before) = match network {
                Network::Relisten { since, ended, .. } => (since, ended),
                _ => (now, 0),
            };
            network = Network::Relisten {
                since,
                at: now,
                ended: before + ended,
                every: RELISTEN_EVERY_MS,
            };
        }
    }
}

/// Asks a restarted netstackd to listen again: says so once it does, or tries again
/// `every` ms later: [`RELISTEN_EVERY_MS`] while the new process is not serving yet,
/// twice as long after each refusal it answers, up to [`RELISTEN_SLOWEST_MS`] (said
/// on the console the first time).
async fn relisten<P: Provider, H: HashBackend, E: Endpoint>(
    ep: &E,
    daemon: &mut Daemon<P, H>,
    port: &str,
    since: u64,
    ended: usize,
    every: u64,
) -> Network {
    match daemon.listen(ep).await {
        Ok(()) => {
            let generation = daemon.listener().map_or(0, |l| l.generation());
            ep.console(&markers::DSOFTBUSD_LISTENING_AGAIN.render(&[
                port,
                &format!("{generation}"),
                &format!("{ended}"),
                &format!("{}", ep.uptime_ms().saturating_sub(since)),
            ]));
            Network::Listening
        }
        Err(error) => {
            let starting = daemon::network_gone(&error)
                || matches!(
                    error,
                    ClientError::Ipc(IpcError::Timeout | IpcError::QueueFull)
                );
            let every = if starting {
                RELISTEN_EVERY_MS
            } else {
                if every == RELISTEN_EVERY_MS {
                    ep.console(&format!(
                        "not listening again yet: netstackd: {error}; trying again, less often"
                    ));
                }
                every.saturating_mul(2).min(RELISTEN_SLOWEST_MS)
            };
            Network::Relisten {
                since,
                at: ep.uptime_ms().saturating_add(every),
                ended,
                every,
            }
        }
    }
}

/// Answers one request.
async fn serve<P: Provider, H: HashBackend, E: Endpoint>(
    ep: &E,
    daemon: &mut Daemon<P, H>,
    request: Request,
) {
    let incoming = match Incoming::parse(ServiceId::Dsoftbusd, &request) {
        Ok(incoming) => incoming,
        Err((error, code)) => {
            ep.audit(AuditEvent {
                subject: request.sender,
                action: Action::Call {
                    service: ServiceId::Dsoftbusd,
                    code,
                },
                verdict: Verdict::Rejected,
                reason: error.code(),
                detail: request.frame.len() as u32,
            });
            let _ = reply_err(ep, request.token, error);
            return;
        }
    };
    let (sender, operation) = (incoming.sender, incoming.operation);
    let reply = match operation {
        Operation::DsoftbusdDiscover => {
            ep.audit(record(sender, operation, Verdict::Allowed, 0, 0));
            Ok(daemon.discover().to_vec())
        }
        Operation::DsoftbusdTrust => {
            let outcome = daemon.trust(incoming.payload);
            let (verdict, reason, detail) = match outcome {
                Ok(()) => (Verdict::Allowed, 0, 0),
                Err((error, why)) => (Verdict::Rejected, error.code(), u32::from(why)),
            };
            ep.audit(record(sender, operation, verdict, reason, detail));
            outcome.map(|()| Vec::new()).map_err(|(error, _)| error)
        }
        Operation::DsoftbusdTransport => {
            let handled = daemon
                .transport(ep, sender, incoming.payload, ep.uptime_ms())
                .await;
            if handled.authenticated {
                ep.console(markers::DSOFTBUSD_AUTH_OK.message);
            }
            handled.reply
        }
        Operation::DsoftbusdStats => {
            let (half_open, established) = daemon.sessions();
            let clamp = |n: usize| u16::try_from(n).unwrap_or(u16::MAX);
            ep.audit(record(sender, operation, Verdict::Allowed, 0, 0));
            Ok(service_api::dsoftbusd::Stats {
                half_open: clamp(half_open),
                established: clamp(established),
                trusted: clamp(daemon.trusted()),
            }
            .encode())
        }
        Operation::DsoftbusdConnect => {
            // Answered when the session is up and pinged, or has failed.
            let payload = Vec::from(incoming.payload);
            daemon
                .connect(ep, sender, request.token, &payload, ep.uptime_ms())
                .await;
            return;
        }
        _ => {
            // The kernel delivers only operations the policy names, and the parser
            // only dsoftbusd's; a new operation must be handled above, not routed.
            ep.audit(record(
                sender,
                operation,
                Verdict::Rejected,
                ServiceError::UnknownOperation.code(),
                0,
            ));
            Err(ServiceError::UnknownOperation)
        }
    };
    let _ = match &reply {
        Ok(payload) => reply_ok(ep, request.token, payload),
        Err(error) => reply_err(ep, request.token, *error),
    };
}

/// No identity or no trust store: every request is answered `NoKey`.
async fn fail_closed<E: Endpoint>(ep: E, error: StartError) {
    let cause = match error {
        StartError::Identity(cause) => {
            ep.console(markers::DSOFTBUSD_NO_IDENTITY.message);
            cause
        }
        StartError::TrustStore(cause) => {
            ep.console(match cause {
                ClientError::Service(ServiceError::RolledBack) => {
                    markers::DSOFTBUSD_TRUST_STORE_ROLLED_BACK.message
                }
                ClientError::Service(ServiceError::Corrupt) => {
                    markers::DSOFTBUSD_TRUST_STORE_CORRUPT.message
                }
                _ => markers::DSOFTBUSD_TRUST_STORE_REFUSED.message,
            });
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
    loop {
        let request = ep.receive().await;
        match Incoming::parse(ServiceId::Dsoftbusd, &request) {
            Ok(incoming) => ep.audit(record(
                incoming.sender,
                incoming.operation,
                Verdict::Failed,
                ServiceError::NoKey.code(),
                0,
            )),
            Err((error, code)) => ep.audit(AuditEvent {
                subject: request.sender,
                action: Action::Call {
                    service: ServiceId::Dsoftbusd,
                    code,
                },
                verdict: Verdict::Rejected,
                reason: error.code(),
                detail: request.frame.len() as u32,
            }),
        }
        let _ = reply_err(&ep, request.token, ServiceError::NoKey);
    }
}
