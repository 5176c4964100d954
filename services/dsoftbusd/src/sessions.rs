//! The session table, hardened for untrusted peers.
//!
//! - **A session belongs to a connection**: a TCP connection (netstackd's handle,
//!   which only dsoftbusd can use), or, on the IPC path, the kernel-stamped calling
//!   task and the session number it chose. A peer can name no other peer's session.
//! - **Half-open handshakes have their own quota**: at most
//!   [`Limits::half_open`] in all and [`Limits::half_open_per_source`] per source (an
//!   IPv4 address, or a task). A connection beyond them is refused at once; an
//!   established session is never evicted to make room, and nothing is evicted at
//!   all: a full table refuses the newcomer.
//! - **Deadlines**: a handshake must finish within [`Limits::handshake_ms`] of the
//!   connection's arrival; an established session idle for [`Limits::idle_ms`] is
//!   closed. Every refusal, timeout and close is an audit record.
//! - **Entropy is paced** ([`Pace`]): each handshake draws one 32-byte ephemeral seed
//!   from rngd, and a token bucket bounds how many a burst of handshakes can draw, so a
//!   flood of first messages cannot monopolise rngd. The hello only looks at the
//!   bucket (a paced peer hears Busy); the draw is taken by the first message, so
//!   hellos alone cannot drain it.
//! - **Identity**: an established session records the peer's device key; its audit
//!   records name it by fingerprint (the key's first four bytes, big-endian, in
//!   `detail`), the console by the whole key.

use alloc::boxed::Box;
use alloc::vec::Vec;

use ipc::{Action, AuditEvent, Operation, ReplyToken, ServiceId, Verdict};
use noise_xk::{InitiatorAwaitingResponse, ResponderAwaitingFinish, Transport};
use provider_api::{HashBackend, Provider, VerifyingKey, X25519PublicKey};
use service_api::netstackd::Handle;

use crate::wire::FrameReader;

/// The bounds of the session table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Handshakes in progress, from every source.
    pub half_open: usize,
    /// Handshakes in progress from one source.
    pub half_open_per_source: usize,
    /// Established sessions.
    pub established: usize,
    /// From a connection's arrival to its last handshake message.
    pub handshake_ms: u64,
    /// How long an established session may stay silent.
    pub idle_ms: u64,
    /// Handshakes that may draw entropy back to back.
    pub entropy_burst: u32,
    /// One more handshake may draw entropy every this many milliseconds.
    pub entropy_refill_ms: u64,
    /// Transport messages that fail to decrypt before the session is closed.
    pub failed_decrypts: u32,
}

/// dsoftbusd's bounds (documented in `docs/protocol.md`).
pub const LIMITS: Limits = Limits {
    half_open: 4,
    half_open_per_source: 2,
    established: 8,
    handshake_ms: 3_000,
    idle_ms: 30_000,
    entropy_burst: 16,
    entropy_refill_ms: 20,
    failed_decrypts: 4,
};

/// Why dsoftbusd refused, ended or recorded a session: the `reason` of its audit
/// record. Records about a network peer before it is authenticated carry the peer's
/// IPv4 address in `detail`; records about an authenticated peer carry its device
/// key's fingerprint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Refusal {
    /// The first handshake message did not authenticate (tampered, wrong key).
    Message1 = 1,
    /// The responder's second message did not authenticate (dsoftbusd initiating).
    Message2 = 2,
    /// The third handshake message did not authenticate.
    Message3 = 3,
    /// The peer's device key is not on the allowlist.
    UnknownIdentity = 4,
    /// The peer's signature does not cover its Noise static key.
    BadBinding = 5,
    /// A transport message did not authenticate (tampered or replayed).
    Transport = 6,
    /// Too long, too short, or not a message of this protocol.
    Malformed = 7,
    /// Every half-open slot is taken.
    HalfOpenFull = 8,
    /// This source holds its share of half-open slots.
    SourceQuota = 9,
    /// The entropy pace: no handshake may draw entropy now.
    Paced = 10,
    /// Every established slot is taken.
    SessionsFull = 11,
    /// The handshake did not finish in time.
    HandshakeTimeout = 12,
    /// The session was idle too long.
    IdleTimeout = 13,
    /// The peer closed the connection before the handshake finished.
    PeerClosed = 14,
    /// A frame length beyond the limit.
    FrameTooLong = 15,
    /// The peers' Noise protocol names differ.
    SuiteMismatch = 16,
    /// The peer stopped taking bytes (its receive window stayed full).
    SlowReader = 17,
    /// The session ended with a `BYE` (received, or sent after the initiator's pong).
    Closed = 18,
    /// The session was established (an `Allowed` record).
    Established = 19,
    /// The responder answered the hello with Busy (dsoftbusd initiating).
    PeerBusy = 20,
    /// The connection to the peer failed or was reset (dsoftbusd initiating).
    ConnectFailed = 21,
    /// No ephemeral key: the entropy source failed (rngd closed).
    NoEntropy = 22,
    /// An established session's connection closed or was reset without a `BYE`
    /// (the peer closed it, or its TCP stopped answering).
    ConnectionClosed = 23,
    /// netstackd faulted and was restarted: the connection went with its old process.
    NetworkRestarted = 24,
    /// Pairing: the PAKE did not confirm (a wrong setup code, or a share or
    /// confirmation that does not verify), or keystored refused the run.
    PairingRefused = 25,
    /// Pairing: the prover's sealed identity did not open, or its key or signature
    /// failed.
    PairingIdentity = 26,
    /// Pairing: the window is closed (a pair hello answered CLOSED).
    PairingClosed = 27,
    /// Pairing: the peer was added to the trust store (an `Allowed` record).
    Paired = 28,
    /// Pairing: the trust store could not be written; nothing was added.
    PairingStore = 29,
    /// A trusted peer had a device key removed from the trust store (`Allowed`).
    Unpaired = 30,
    /// Pairing with another device (this one the prover): that device cannot pair (it
    /// answered UNAVAILABLE: no setup code, or no entropy).
    PairingUnavailable = 31,
}

impl Refusal {
    /// Every reason, in code order.
    pub const ALL: [Refusal; 31] = [
        Self::Message1,
        Self::Message2,
        Self::Message3,
        Self::UnknownIdentity,
        Self::BadBinding,
        Self::Transport,
        Self::Malformed,
        Self::HalfOpenFull,
        Self::SourceQuota,
        Self::Paced,
        Self::SessionsFull,
        Self::HandshakeTimeout,
        Self::IdleTimeout,
        Self::PeerClosed,
        Self::FrameTooLong,
        Self::SuiteMismatch,
        Self::SlowReader,
        Self::Closed,
        Self::Established,
        Self::PeerBusy,
        Self::ConnectFailed,
        Self::NoEntropy,
        Self::ConnectionClosed,
        Self::NetworkRestarted,
        Self::PairingRefused,
        Self::PairingIdentity,
        Self::PairingClosed,
        Self::Paired,
        Self::PairingStore,
        Self::Unpaired,
        Self::PairingUnavailable,
    ];

    /// One word for the console's `session with ... closed (<word>)` line.
    pub fn word(self) -> &'static str {
        match self {
            Self::Message1 => "message-1",
            Self::Message2 => "message-2",
            Self::Message3 => "message-3",
            Self::UnknownIdentity => "unknown-identity",
            Self::BadBinding => "bad-binding",
            Self::Transport => "undecryptable-messages",
            Self::Malformed => "malformed",
            Self::HalfOpenFull => "half-open-full",
            Self::SourceQuota => "source-quota",
            Self::Paced => "paced",
            Self::SessionsFull => "sessions-full",
            Self::HandshakeTimeout => "handshake-timeout",
            Self::IdleTimeout => "idle-timeout",
            Self::PeerClosed => "peer-closed",
            Self::FrameTooLong => "frame-too-long",
            Self::SuiteMismatch => "suite-mismatch",
            Self::SlowReader => "peer-not-reading",
            Self::Closed => "bye",
            Self::Established => "established",
            Self::PeerBusy => "peer-busy",
            Self::ConnectFailed => "connect-failed",
            Self::NoEntropy => "no-entropy",
            Self::ConnectionClosed => "connection-closed",
            Self::NetworkRestarted => "network-restarted",
            Self::PairingRefused => "confirmation",
            Self::PairingIdentity => "identity",
            Self::PairingClosed => "window-closed",
            Self::Paired => "paired",
            Self::PairingStore => "store",
            Self::Unpaired => "unpaired",
            Self::PairingUnavailable => "unavailable",
        }
    }
}

/// Where a session's messages travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// A TCP connection through netstackd.
    Tcp(Handle),
    /// `TRANSPORT` requests of a task, with the session number it chose.
    Ipc {
        /// The calling task (kernel-stamped).
        task: ServiceId,
        /// Its session number.
        id: u32,
    },
}

/// Who a connection comes from, for the per-source quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A network peer's IPv4 address.
    Ip([u8; 4]),
    /// A task on the IPC path.
    Task(ServiceId),
}

impl Source {
    /// The `detail` of a record about this source.
    pub fn detail(&self) -> u32 {
        match self {
            Self::Ip(ip) => u32::from_be_bytes(*ip),
            Self::Task(task) => u32::from(*task as u16),
        }
    }

    /// The `subject` of a record about this source: the task, or dsoftbusd itself for
    /// a network peer (which is not a task).
    pub fn subject(&self) -> ServiceId {
        match self {
            Self::Ip(_) => ServiceId::Dsoftbusd,
            Self::Task(task) => *task,
        }
    }
}

/// A device key's fingerprint: its first four bytes, big-endian.
pub fn fingerprint(device_key: &[u8; 32]) -> u32 {
    u32::from_be_bytes([device_key[0], device_key[1], device_key[2], device_key[3]])
}

type Sig<P> = <P as Provider>::Sig;
type Kx<P> = <P as Provider>::Kx;
type Aead<P> = <P as Provider>::Aead;

/// A CONNECT that waits for its session: who asked, and for which device.
pub struct Outgoing<P: Provider> {
    /// The answer's token (none for the session dsoftbusd opens itself after it
    /// paired with another device).
    pub token: Option<ReplyToken>,
    /// The task that asked.
    pub caller: ServiceId,
    /// The device key the responder must prove.
    pub expected: VerifyingKey<Sig<P>>,
    /// The ping's data, once sent.
    pub ping: zeroize::Zeroizing<Vec<u8>>,
}

/// Where a connection is in its life.
pub enum Phase<P: Provider, H: HashBackend> {
    /// Responder: waiting for the initiator's hello (TCP).
    AwaitHello,
    /// Responder: hello answered, waiting for the first handshake message.
    AwaitMessage1,
    /// Responder: second message sent, waiting for the third.
    AwaitMessage3(ResponderAwaitingFinish<Kx<P>, Aead<P>, H>),
    /// Initiator: waiting for netstackd to establish the connection.
    Connecting,
    /// Initiator: hello sent.
    AwaitHelloReply,
    /// Initiator: first message sent to the responder whose static key (from its
    /// hello reply) is the second field.
    AwaitMessage2(
        InitiatorAwaitingResponse<Kx<P>, Aead<P>, H>,
        X25519PublicKey,
    ),
    /// Initiator: third message sent, waiting for the responder's `READY`.
    AwaitReady(Transport<Aead<P>>),
    /// Initiator: ping sent, waiting for its pong.
    AwaitPong(Transport<Aead<P>>),
    /// Both: the session is up.
    Established(Transport<Aead<P>>),
    /// Pairing, the device: the pair reply sent, waiting for the prover's share.
    PairAwaitShare,
    /// Pairing, the device: `pake 2` sent, waiting for `pake 3`; the run's messages
    /// so far.
    PairAwaitConfirm(Box<crate::pairing::PakeMessages>),
    /// Pairing, this device the prover (`pair=`): waiting for netstackd to connect.
    ProverConnecting,
    /// Pairing, the prover: pair hello sent, waiting for the reply.
    ProverAwaitReply,
    /// Pairing, the prover: `pake 1` sent (this share), waiting for `pake 2`.
    ProverAwaitShare(Box<[u8; crate::pairing::SHARE_LEN]>),
    /// Pairing, the prover: `pake 3` sent, waiting for the other device's identity.
    ProverAwaitIdentity(Box<crate::pairing::ProverPending>),
    /// Taken out while a step runs (never seen between steps).
    Gone,
}

impl<P: Provider, H: HashBackend> Phase<P, H> {
    /// Whether the handshake is still going (the connection holds a half-open slot).
    pub fn half_open(&self) -> bool {
        !matches!(self, Self::Established(_))
    }

    /// Whether this device, as a prover, has sent `pake 1` on this connection: the
    /// other device counted the run as one of its attempts.
    pub fn pake_sent(&self) -> bool {
        matches!(
            self,
            Self::ProverAwaitShare(_) | Self::ProverAwaitIdentity(_)
        )
    }
}

/// One connection and its session.
pub struct Conn<P: Provider, H: HashBackend> {
    /// Its link.
    pub link: Link,
    /// Its source.
    pub source: Source,
    /// Its phase.
    pub phase: Phase<P, H>,
    /// When it arrived (milliseconds of uptime).
    pub opened_ms: u64,
    /// When its last message arrived.
    pub last_ms: u64,
    /// The peer's device key, once authenticated.
    pub peer: Option<[u8; 32]>,
    /// Bytes of a frame not yet whole (TCP).
    pub reader: FrameReader,
    /// Transport messages that failed to decrypt.
    pub failed_decrypts: u32,
    /// The CONNECT waiting for this session, when dsoftbusd initiated it.
    pub outgoing: Option<Outgoing<P>>,
    /// The console said this session was established: its end is said too.
    pub announced: bool,
    /// This device's own pairing with another (`pair=`), as the prover.
    pub proving: bool,
}

impl<P: Provider, H: HashBackend> Conn<P, H> {
    /// A connection in `phase` that arrived now.
    pub fn new(link: Link, source: Source, phase: Phase<P, H>, now_ms: u64) -> Self {
        Self {
            link,
            source,
            phase,
            opened_ms: now_ms,
            last_ms: now_ms,
            peer: None,
            reader: FrameReader::default(),
            failed_decrypts: 0,
            outgoing: None,
            announced: false,
            proving: false,
        }
    }

    /// The `detail` of a record about this connection: the peer's fingerprint once
    /// authenticated, its source before.
    pub fn detail(&self) -> u32 {
        self.peer.as_ref().map_or(self.source.detail(), fingerprint)
    }

    /// The handshake's time: a pairing's is longer.
    fn handshake_ms(&self, limits: &Limits) -> u64 {
        match self.phase {
            Phase::PairAwaitShare
            | Phase::PairAwaitConfirm(_)
            | Phase::ProverConnecting
            | Phase::ProverAwaitReply
            | Phase::ProverAwaitShare(_)
            | Phase::ProverAwaitIdentity(_) => crate::pairing::DEADLINE_MS,
            _ => limits.handshake_ms,
        }
    }

    /// When its deadline falls: the handshake's, or the idle timeout's.
    pub fn deadline(&self, limits: &Limits) -> u64 {
        if self.phase.half_open() {
            self.opened_ms.saturating_add(self.handshake_ms(limits))
        } else {
            self.last_ms.saturating_add(limits.idle_ms)
        }
    }

    /// Whether its deadline passed: the handshake's, or the idle timeout.
    pub fn expired(&self, now_ms: u64, limits: &Limits) -> Option<Refusal> {
        if self.phase.half_open() {
            let late = now_ms >= self.opened_ms.saturating_add(self.handshake_ms(limits));
            // A pairing connection the other device never answered: no pairing began
            // there (it counted nothing), so it is a failed connection, tried again.
            late.then_some(match self.phase {
                Phase::ProverConnecting => Refusal::ConnectFailed,
                _ => Refusal::HandshakeTimeout,
            })
        } else {
            (now_ms >= self.last_ms.saturating_add(limits.idle_ms)).then_some(Refusal::IdleTimeout)
        }
    }
}

/// The token bucket of entropy draws.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    tokens: u32,
    burst: u32,
    refill_ms: u64,
    last_ms: u64,
}

impl Pace {
    /// A full bucket.
    pub fn new(limits: &Limits, now_ms: u64) -> Self {
        Self {
            tokens: limits.entropy_burst,
            burst: limits.entropy_burst,
            refill_ms: limits.entropy_refill_ms.max(1),
            last_ms: now_ms,
        }
    }

    /// Whether the pace would allow a draw now (nothing is taken).
    pub fn available(&mut self, now_ms: u64) -> bool {
        self.refill(now_ms);
        self.tokens > 0
    }

    fn refill(&mut self, now_ms: u64) {
        let earned = now_ms.saturating_sub(self.last_ms) / self.refill_ms;
        if earned > 0 {
            self.tokens = self
                .tokens
                .saturating_add(u32::try_from(earned).unwrap_or(u32::MAX))
                .min(self.burst);
            self.last_ms = self
                .last_ms
                .saturating_add(earned.saturating_mul(self.refill_ms));
        }
    }

    /// Takes one draw if the pace allows it now.
    pub fn take(&mut self, now_ms: u64) -> bool {
        self.refill(now_ms);
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// The table: every connection, bounded by [`Limits`].
pub struct Table<P: Provider, H: HashBackend> {
    /// The bounds.
    pub limits: Limits,
    /// The connections, oldest first.
    pub conns: Vec<Conn<P, H>>,
    /// The entropy pace.
    pub pace: Pace,
}

impl<P: Provider, H: HashBackend> Table<P, H> {
    /// An empty table.
    pub fn new(limits: Limits, now_ms: u64) -> Self {
        Self {
            limits,
            conns: Vec::new(),
            pace: Pace::new(&limits, now_ms),
        }
    }

    /// Connections whose handshake is still going.
    pub fn half_open(&self) -> usize {
        self.conns.iter().filter(|c| c.phase.half_open()).count()
    }

    /// Established sessions.
    pub fn established(&self) -> usize {
        self.conns.len() - self.half_open()
    }

    /// Whether a new connection from `source` may start a handshake; the refusal
    /// otherwise. Nothing is evicted.
    pub fn admit(&self, source: Source) -> Result<(), Refusal> {
        if self.half_open() >= self.limits.half_open {
            return Err(Refusal::HalfOpenFull);
        }
        let from_source = self
            .conns
            .iter()
            .filter(|c| c.phase.half_open() && c.source == source)
            .count();
        if from_source >= self.limits.half_open_per_source {
            return Err(Refusal::SourceQuota);
        }
        Ok(())
    }

    /// The connection on `link`.
    pub fn find(&self, link: Link) -> Option<usize> {
        self.conns.iter().position(|c| c.link == link)
    }
}

/// A record of dsoftbusd about a session. `operation` is the IPC operation that
/// carried it (`TRANSPORT` for the network too, `CONNECT` for sessions dsoftbusd
/// opens).
pub fn record(
    subject: ServiceId,
    operation: Operation,
    verdict: Verdict,
    reason: u16,
    detail: u32,
) -> AuditEvent {
    AuditEvent {
        subject,
        action: Action::Call {
            service: ServiceId::Dsoftbusd,
            code: operation.code(),
        },
        verdict,
        reason,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pace_allows_a_burst_then_one_draw_per_period() {
        let limits = Limits {
            entropy_burst: 3,
            entropy_refill_ms: 10,
            ..LIMITS
        };
        let mut pace = Pace::new(&limits, 1000);
        assert!(pace.available(1000));
        assert!(pace.available(1000), "looking takes nothing");
        assert!((0..3).all(|_| pace.take(1000)));
        assert!(!pace.available(1000));
        assert!(!pace.take(1000), "the burst is spent");
        assert!(!pace.take(1009));
        assert!(pace.take(1010), "one period earns one draw");
        assert!(!pace.take(1010));
        assert!(
            (0..3).all(|_| pace.take(5000)),
            "a long pause refills the burst"
        );
        assert!(!pace.take(5000), "and no more than the burst");
    }

    #[test]
    fn fingerprints_and_sources_fit_a_record() {
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(fingerprint(&key), 0xdead_beef);
        assert_eq!(Source::Ip([10, 0, 2, 2]).detail(), 0x0a00_0202);
        assert_eq!(Source::Ip([10, 0, 2, 2]).subject(), ServiceId::Dsoftbusd);
        assert_eq!(
            Source::Task(ServiceId::Selftest).subject(),
            ServiceId::Selftest
        );
    }
}
