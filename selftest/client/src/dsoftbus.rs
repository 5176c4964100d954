//! The dsoftbus checks. The selftest is the remote node: it has its own device
//! identity (a key made here from rngd entropy, never keystored's), it provisions that
//! identity into dsoftbusd's allowlist, and it initiates Noise XK sessions over TCP,
//! through netstackd's loopback interface to dsoftbusd's port, exactly as a peer on
//! the network does. It checks dsoftbusd's binding against the device key keystored
//! publishes, exchanges pings as AEAD transport messages, and mounts each attack;
//! after every rejection a good session must still complete.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::future::Future;

use dsoftbusd::binding::Binding;
use dsoftbusd::client::{Believed, ConnectError, Node, Stage, Stream, TcpSession, connect_tcp};
use dsoftbusd::sessions::LIMITS;
use dsoftbusd::wire::{self, Hello};
use ipc::{Action, AuditFilter, Endpoint, Operation, ServiceId, Verdict};
use noise_xk::NoiseError;
use provider_api::{
    HashBackend, Provider, SecretBytes, Seed, SigningKey, VerifyingKey, X25519PublicKey,
    X25519SecretKey,
};
use service_api::dsoftbusd::{self as api, MAX_MESSAGE};
use service_api::netstackd::{self, Handle, SocketAddr};
use service_api::{ClientError, ServiceError, keystored, logd, rngd};

use crate::Checks;
use service_api::pause as sleep;

/// dsoftbusd's port on the loopback interface.
const DSOFTBUSD: SocketAddr = SocketAddr::loopback(wire::PORT);

/// Device keys provider-api's verification rule refuses: the public keys of
/// speccheck ("Taming the many EdDSAs") cases 0 (small order) and 3 (mixed order).
const WEAK_DEVICE_KEYS: [(&str, [u8; 32]); 2] = [
    (
        "small-order",
        [
            0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10,
            0x67, 0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77,
            0x92, 0xac, 0x03, 0xfa,
        ],
    ),
    (
        "mixed-order",
        [
            0xcd, 0xb2, 0x67, 0xce, 0x40, 0xc5, 0xcd, 0x45, 0x30, 0x6f, 0xa5, 0xd2, 0xf2, 0x97,
            0x31, 0x45, 0x93, 0x87, 0xdb, 0xf9, 0xeb, 0x93, 0x3b, 0x7b, 0xd5, 0xae, 0xd9, 0xa7,
            0x65, 0xb8, 0x8d, 0x4d,
        ],
    ),
];

/// Everything the sessions need, made once.
struct Setup<P: Provider> {
    node: Node<P>,
    identity_seed: Seed,
    responder: X25519PublicKey,
    trusted: [VerifyingKey<P::Sig>; 1],
}

async fn secret<E: Endpoint>(ep: &E) -> Result<SecretBytes<32>, String> {
    let bytes = rngd::get_entropy(ep, 32)
        .await
        .map_err(|e| format!("GET_ENTROPY: {e}"))?;
    SecretBytes::from_fill(|out: &mut [u8; 32]| {
        out.copy_from_slice(&bytes);
        Ok(())
    })
}

async fn setup<P: Provider, E: Endpoint>(ep: &E) -> Result<Setup<P>, String> {
    let identity_seed = secret(ep).await?;
    let node = Node::<P>::new(&identity_seed, &secret(ep).await?)
        .map_err(|e| format!("node identity: {e}"))?;
    let discovered = api::discover(ep)
        .await
        .map_err(|e| format!("DISCOVER: {e}"))?;
    let device = keystored::get_pubkey(ep)
        .await
        .map_err(|e| format!("GET_PUBKEY: {e}"))?;
    if discovered.device_key != device {
        return Err(String::from(
            "dsoftbusd presents a device key that is not keystored's",
        ));
    }
    api::trust(ep, &node.device_key())
        .await
        .map_err(|e| format!("TRUST: {e}"))?;
    let device = VerifyingKey::from_bytes(&device)
        .map_err(|e| format!("keystored's device key is refused: {e}"))?;
    Ok(Setup {
        node,
        identity_seed,
        responder: X25519PublicKey(discovered.noise_static),
        trusted: [device],
    })
}

/// Every ephemeral key seen, for the freshness check.
struct Sessions {
    ephemerals: Vec<[u8; 32]>,
}

impl Sessions {
    /// Opens a session of the provisioned node over TCP and records its ephemeral
    /// keys. The node believes the static key DISCOVER gave: the hello must carry the
    /// same one, or the handshake fails.
    async fn open<P: Provider, H: HashBackend, E: Endpoint>(
        &mut self,
        ep: &E,
        setup: &Setup<P>,
    ) -> Result<TcpSession<P::Aead>, ConnectError> {
        let session = busy_retry(ep, || {
            connect_tcp::<P, H, E>(
                ep,
                &setup.node,
                DSOFTBUSD,
                Believed::Key(setup.responder),
                &setup.trusted,
                |_, _| {},
            )
        })
        .await?;
        self.ephemerals.push(session.initiator_ephemeral);
        self.ephemerals.push(session.responder_ephemeral);
        Ok(session)
    }

    /// A good session with a ping on it, closed with `BYE`.
    async fn good<P: Provider, H: HashBackend, E: Endpoint>(
        &mut self,
        ep: &E,
        setup: &Setup<P>,
    ) -> Result<(), String> {
        let mut session = self
            .open::<P, H, E>(ep, setup)
            .await
            .map_err(|e| format!("a good session after the rejection failed: {e}"))?;
        let pong = session
            .ping(ep, b"after")
            .await
            .map_err(|e| format!("ping after the rejection: {e}"))?;
        session.close(ep).await;
        if pong != b"after" {
            return Err(String::from("the ping after the rejection came back wrong"));
        }
        Ok(())
    }

    /// Connects `node`, which believes `believed`, with `tamper` on the handshake;
    /// the attempt must end in `expected`, and a good session must follow.
    #[allow(clippy::too_many_arguments)]
    async fn refused_then_good<P: Provider, H: HashBackend, E: Endpoint>(
        &mut self,
        ep: &E,
        setup: &Setup<P>,
        node: &Node<P>,
        believed: Believed,
        tamper: impl FnMut(Stage, &mut Vec<u8>) + Copy,
        expected: ConnectError,
        what: &str,
    ) -> Result<(), String> {
        let outcome = busy_retry(ep, || {
            connect_tcp::<P, H, E>(ep, node, DSOFTBUSD, believed, &setup.trusted, tamper)
        })
        .await
        .map(|_| ());
        expect_refusal(outcome, expected, what)?;
        self.good::<P, H, E>(ep, setup).await
    }
}

/// Runs `attempt` again while dsoftbusd says Busy (its entropy pace: the selftest
/// opens sessions faster than the pace allows), waiting a refill period between tries.
async fn busy_retry<E: Endpoint, T, F: Future<Output = Result<T, ConnectError>>>(
    ep: &E,
    mut attempt: impl FnMut() -> F,
) -> Result<T, ConnectError> {
    let mut tries = 0;
    loop {
        match attempt().await {
            Err(ConnectError::Busy) if tries < 50 => {
                tries += 1;
                sleep(ep, LIMITS.entropy_refill_ms).await;
            }
            outcome => return outcome,
        }
    }
}

fn expect_refusal(
    outcome: Result<(), ConnectError>,
    expected: ConnectError,
    what: &str,
) -> Result<(), String> {
    match outcome {
        Err(error) if error == expected => Ok(()),
        other => Err(format!("{what}: expected {expected:?}, got {other:?}")),
    }
}

fn flip_last_bit(message: &mut [u8]) {
    if let Some(last) = message.last_mut() {
        *last ^= 1;
    }
}

/// Counts records in logd's journal.
async fn count<E: Endpoint>(ep: &E, filter: AuditFilter) -> Result<u64, String> {
    logd::query(ep, &filter)
        .await
        .map(|reply| u64::from(reply.matched))
        .map_err(|e| format!("logd query failed: {e}"))
}

/// rngd's served requests for dsoftbusd.
fn dsoftbusd_draws() -> AuditFilter {
    AuditFilter {
        origin: Some(ServiceId::Rngd),
        subject: Some(ServiceId::Dsoftbusd),
        action: Some(Action::Call {
            service: ServiceId::Rngd,
            code: Operation::RngdGetEntropy.code(),
        }),
        verdict: Some(Verdict::Allowed),
    }
}

/// How a bare first message fared.
enum HalfOpen {
    /// dsoftbusd answered it and holds the handshake open.
    Held(Stream),
    /// dsoftbusd said Busy (its entropy pace) in its hello reply.
    Busy,
    /// dsoftbusd closed the connection (a quota).
    Refused,
}

/// A handshake left half-open: hello, first message, and dsoftbusd's answer, then
/// nothing.
async fn half_open<P: Provider, H: HashBackend, E: Endpoint>(
    ep: &E,
    setup: &Setup<P>,
) -> Result<HalfOpen, String> {
    let mut stream = Stream::open(ep, DSOFTBUSD)
        .await
        .map_err(|e| format!("CONNECT: {e}"))?;
    let suite = noise_xk::protocol_name::<P::Aead, H>();
    let end = |stream: Stream, how: HalfOpen| async move {
        stream.close(ep, true).await;
        Ok(how)
    };
    if stream.send(ep, &Hello { suite }.encode()).await.is_err() {
        return end(stream, HalfOpen::Refused).await;
    }
    let reply = match stream.recv(ep).await {
        Ok(Some(reply)) => reply,
        _ => return end(stream, HalfOpen::Refused).await,
    };
    match wire::HelloReply::decode(&reply) {
        Ok(reply) if reply.status == wire::HelloStatus::Ok => {}
        Ok(reply) if reply.status == wire::HelloStatus::Busy => {
            return end(stream, HalfOpen::Busy).await;
        }
        _ => return end(stream, HalfOpen::Refused).await,
    }
    let entropy = secret(ep).await?;
    let (_, message_1) = noise_xk::Initiator::<P::Kx, P::Aead, H>::new(
        dsoftbusd::PROLOGUE,
        alloc::rc::Rc::new(X25519SecretKey::from_entropy(&entropy)),
        setup.responder,
    )
    .write_message_1(&entropy, &[])
    .map_err(|e| format!("{e}"))?;
    if stream.send(ep, &message_1).await.is_err() {
        return end(stream, HalfOpen::Refused).await;
    }
    match stream.recv(ep).await {
        Ok(Some(_)) => Ok(HalfOpen::Held(stream)),
        _ => end(stream, HalfOpen::Refused).await,
    }
}

pub(crate) async fn run<P: Provider, H: HashBackend, E: Endpoint>(checks: &mut Checks<'_, E>) {
    let ep = checks.ep;
    let setup = match setup::<P, E>(ep).await {
        Ok(setup) => setup,
        Err(why) => {
            checks.check(markers::SELFTEST_DSOFTBUS_OS_CONNECT, Err(why));
            return;
        }
    };
    let mut sessions = Sessions {
        ephemerals: Vec::new(),
    };

    // Mutual authentication over TCP: dsoftbusd's binding checked here, ours by
    // dsoftbusd, and dsoftbusd's READY.
    let first = sessions.open::<P, H, E>(ep, &setup).await;
    let mut session = match first {
        Ok(session) => {
            checks.check(markers::SELFTEST_DSOFTBUS_OS_CONNECT, Ok(()));
            session
        }
        Err(error) => {
            checks.check(
                markers::SELFTEST_DSOFTBUS_OS_CONNECT,
                Err(format!("connect over TCP: {error}")),
            );
            return;
        }
    };

    // A ping and its pong, as AEAD transport messages: the data (fresh from rngd) is
    // not in the ciphertext, and the pong decrypts under the session's keys.
    let data = rngd::get_entropy(ep, 16)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    let ping = async {
        let sealed = session.seal_ping(&data).map_err(|e| format!("seal: {e}"))?;
        if data.is_empty() || sealed.windows(data.len()).any(|w| w == data.as_slice()) {
            return Err(String::from(
                "the ping's data is visible in the transport message",
            ));
        }
        session
            .send_raw(ep, &sealed)
            .await
            .map_err(|e| format!("SEND: {e}"))?;
        let answer = session
            .recv_raw(ep)
            .await
            .map_err(|e| format!("the pong: {e}"))?;
        match session.open_pong(&answer) {
            Ok(pong) if pong == data => Ok(()),
            Ok(_) => Err(String::from("the pong carries other data")),
            Err(e) => Err(format!("the pong does not decrypt: {e}")),
        }
    }
    .await;
    checks.check(markers::SELFTEST_DSOFTBUS_PING, ping);
    session.close(ep).await;

    // A socket is usable only by the task that opened it: every handle that is not
    // the selftest's (dsoftbusd's listener and connections among them) is refused.
    let isolated = async {
        let own = Stream::open(ep, DSOFTBUSD)
            .await
            .map_err(|e| format!("CONNECT: {e}"))?;
        let generation = own.handle().generation();
        for number in 1..=64u16 {
            let handle = Handle::new(generation, number);
            if handle == own.handle() {
                continue;
            }
            match netstackd::status(ep, handle).await {
                Err(ClientError::Service(ServiceError::BadHandle)) => {}
                other => {
                    return Err(format!(
                        "STATUS of handle {number}, not ours, got {other:?}"
                    ));
                }
            }
        }
        match netstackd::status(ep, own.handle()).await {
            Ok(_) => {}
            Err(e) => return Err(format!("STATUS of our own socket: {e}")),
        }
        // Our own socket's number under another generation of netstackd: a handle a
        // process before a restart would have made, refused as such.
        let other = Handle::new(generation.wrapping_add(1), own.handle().number());
        match netstackd::status(ep, other).await {
            Err(ClientError::Service(ServiceError::Restarted)) => {}
            other => {
                return Err(format!(
                    "STATUS of our socket's number from another generation got {other:?}"
                ));
            }
        }
        own.close(ep, true).await;
        Ok(())
    }
    .await;
    checks.check(markers::SELFTEST_NET_SOCKETS_ISOLATED, isolated);

    // A flipped bit in each handshake message: dsoftbusd refuses messages 1 and 3 by
    // closing the connection, this node refuses message 2.
    let mut tampered = Ok(());
    for (stage, expected) in [
        (Stage::Message1, ConnectError::ClosedAfter(Stage::Message1)),
        (
            Stage::Message2,
            ConnectError::Noise(NoiseError::Authentication),
        ),
        (Stage::Message3, ConnectError::ClosedAfter(Stage::Message3)),
    ] {
        let flip = |at: Stage, message: &mut Vec<u8>| {
            if at == stage {
                flip_last_bit(message);
            }
        };
        let what = format!("{stage:?} with a flipped bit");
        let believed = Believed::Key(setup.responder);
        let outcome = sessions
            .refused_then_good::<P, H, E>(ep, &setup, &setup.node, believed, flip, expected, &what)
            .await;
        tampered = tampered.and(outcome);
    }
    checks.check(markers::SELFTEST_DSOFTBUS_TAMPERED_REJECTED, tampered);

    // An initiator that believes in another responder key cannot even start.
    let wrong = async {
        let other = *X25519SecretKey::<P::Kx>::from_entropy(&secret(ep).await?).public_key();
        let expected = ConnectError::ClosedAfter(Stage::Message1);
        sessions
            .refused_then_good::<P, H, E>(
                ep,
                &setup,
                &setup.node,
                Believed::Key(other),
                |_, _| {},
                expected,
                "wrong responder key",
            )
            .await
    }
    .await;
    checks.check(markers::SELFTEST_DSOFTBUS_WRONG_STATIC_REJECTED, wrong);

    // A well-formed identity that nobody provisioned.
    let unknown = async {
        let stranger =
            Node::<P>::new(&secret(ep).await?, &secret(ep).await?).map_err(|e| format!("{e}"))?;
        let expected = ConnectError::ClosedAfter(Stage::Message3);
        sessions
            .refused_then_good::<P, H, E>(
                ep,
                &setup,
                &stranger,
                Believed::FromHello,
                |_, _| {},
                expected,
                "unknown identity",
            )
            .await
    }
    .await;
    checks.check(
        markers::SELFTEST_DSOFTBUS_UNKNOWN_IDENTITY_REJECTED,
        unknown,
    );

    // Keys the verification rule refuses never join the allowlist: a small-order key
    // (it would "verify" signatures nobody made) and a mixed-order one (speccheck
    // cases 0 and 3), each refused by TRUST with its own error and the reason.
    let weak = async {
        for (what, key) in WEAK_DEVICE_KEYS {
            match api::trust(ep, &key).await {
                Err(ClientError::Service(ServiceError::InvalidKey)) => {}
                other => return Err(format!("TRUST of a {what} key got {other:?}")),
            }
            let filter = AuditFilter {
                origin: Some(ServiceId::Dsoftbusd),
                subject: Some(ServiceId::Selftest),
                action: Some(Action::Call {
                    service: ServiceId::Dsoftbusd,
                    code: Operation::DsoftbusdTrust.code(),
                }),
                verdict: Some(Verdict::Rejected),
            };
            if count(ep, filter).await? == 0 {
                return Err(format!("no record of the refused {what} key"));
            }
        }
        Ok(())
    }
    .await;
    checks.check(markers::SELFTEST_DSOFTBUS_WEAK_KEYS_REFUSED, weak);

    // The trusted device key's valid signature, but over another static key.
    let foreign = async {
        let device =
            SigningKey::<P::Sig>::from_seed(&setup.identity_seed).map_err(|e| format!("{e}"))?;
        let signed_static = X25519SecretKey::<P::Kx>::from_entropy(&secret(ep).await?);
        let binding = Binding::sign(&device, signed_static.public_key());
        let forged =
            Node::<P>::from_parts(X25519SecretKey::from_entropy(&secret(ep).await?), binding);
        let expected = ConnectError::ClosedAfter(Stage::Message3);
        let what = "signature over another key";
        sessions
            .refused_then_good::<P, H, E>(
                ep,
                &setup,
                &forged,
                Believed::FromHello,
                |_, _| {},
                expected,
                what,
            )
            .await
    }
    .await;
    checks.check(
        markers::SELFTEST_DSOFTBUS_FOREIGN_SIGNATURE_REJECTED,
        foreign,
    );

    // Truncated and oversized messages: Noise's length checks, then dsoftbusd's frame
    // limit, which refuses the length field before reading the body.
    let malformed = async {
        for (what, stage, resize, expected) in [
            (
                "a truncated first message",
                Stage::Message1,
                20,
                Stage::Message1,
            ),
            (
                "a truncated third message",
                Stage::Message3,
                40,
                Stage::Message3,
            ),
            (
                "a first message over 1 KiB",
                Stage::Message1,
                MAX_MESSAGE + 1,
                Stage::Message1,
            ),
            (
                "a first message of 60000 bytes",
                Stage::Message1,
                60_000,
                Stage::Message1,
            ),
        ] {
            let resize_at = |at: Stage, message: &mut Vec<u8>| {
                if at == stage {
                    message.resize(resize, 0);
                }
            };
            sessions
                .refused_then_good::<P, H, E>(
                    ep,
                    &setup,
                    &setup.node,
                    Believed::Key(setup.responder),
                    resize_at,
                    ConnectError::ClosedAfter(expected),
                    what,
                )
                .await?;
        }
        Ok(())
    }
    .await;
    checks.check(markers::SELFTEST_DSOFTBUS_MALFORMED_REJECTED, malformed);

    // A ping sent twice on its session: the second gets no answer (dsoftbusd refuses
    // it and keeps the session as it was), and the next ping is answered.
    let replay = async {
        let mut session = sessions
            .open::<P, H, E>(ep, &setup)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let sealed = session
            .seal_ping(b"once")
            .map_err(|e| format!("seal: {e}"))?;
        session
            .send_raw(ep, &sealed)
            .await
            .map_err(|e| format!("the first ping: {e}"))?;
        let answer = session
            .recv_raw(ep)
            .await
            .map_err(|e| format!("the first pong: {e}"))?;
        session
            .open_pong(&answer)
            .map_err(|e| format!("the first pong: {e}"))?;
        session
            .send_raw(ep, &sealed)
            .await
            .map_err(|e| format!("the replay: {e}"))?;
        let after = session.ping(ep, b"still here").await;
        session.close(ep).await;
        match after {
            Ok(pong) if pong == b"still here" => Ok(()),
            other => Err(format!(
                "after the replay, the next answer was not the next pong: {other:?}"
            )),
        }
    }
    .await;
    checks.check(markers::SELFTEST_DSOFTBUS_REPLAY_REJECTED, replay);

    // Established sessions survive a flood of bare first messages: half-open
    // handshakes have their own quota (per source too), and nothing is evicted for
    // them. (A review found that 8 bare first messages evicted 8 sessions.)
    let half_open_bounded = async {
        let mut kept = Vec::new();
        for _ in 0..2 {
            kept.push(
                sessions
                    .open::<P, H, E>(ep, &setup)
                    .await
                    .map_err(|e| format!("an established session: {e}"))?,
            );
        }
        let mut held = Vec::new();
        let mut refused = 0;
        for _ in 0..8 {
            match half_open::<P, H, E>(ep, &setup).await? {
                HalfOpen::Held(stream) => held.push(stream),
                HalfOpen::Busy | HalfOpen::Refused => refused += 1,
            }
        }
        let held_count = held.len();
        let mut pings = Ok(());
        for (i, session) in kept.iter_mut().enumerate() {
            match session.ping(ep, b"kept").await {
                Ok(pong) if pong == b"kept" => {}
                other => {
                    pings = Err(format!(
                        "established session {i} after the flood: {other:?}"
                    ))
                }
            }
        }
        for stream in held {
            stream.close(ep, true).await;
        }
        for session in kept {
            session.close(ep).await;
        }
        pings?;
        if held_count > LIMITS.half_open_per_source || refused == 0 {
            return Err(format!(
                "{held_count} half-open handshakes held and {refused} refused from one source \
                 (quota {})",
                LIMITS.half_open_per_source
            ));
        }
        sessions.good::<P, H, E>(ep, &setup).await
    }
    .await;
    checks.check(
        markers::SELFTEST_DSOFTBUS_HALF_OPEN_BOUNDED,
        half_open_bounded,
    );

    // A flood of first messages draws entropy only at the pace: rngd's records show
    // dsoftbusd's draws within the bucket's bound, rngd still serves, and a good
    // session follows.
    let paced = async {
        const FLOOD: u64 = 40;
        let before = count(ep, dsoftbusd_draws()).await?;
        let started = ep.uptime_ms();
        let (mut answered, mut busy, mut refused) = (0u64, 0u64, 0u64);
        for _ in 0..FLOOD {
            match half_open::<P, H, E>(ep, &setup).await? {
                HalfOpen::Held(stream) => {
                    answered += 1;
                    stream.close(ep, true).await;
                }
                HalfOpen::Busy => busy += 1,
                HalfOpen::Refused => refused += 1,
            }
            // Long enough for dsoftbusd to see the reset and free the half-open slot,
            // so the flood meets the pace rather than the per-source quota.
            sleep(ep, 2).await;
        }
        let elapsed = ep.uptime_ms() - started;
        let drawn = count(ep, dsoftbusd_draws()).await? - before;
        let refill = LIMITS.entropy_refill_ms;
        let bound = u64::from(LIMITS.entropy_burst) + elapsed / refill + 1;
        ep.console(&format!(
            "handshake flood: {FLOOD} first messages in {elapsed} ms: {answered} answered, \
             {busy} told busy, {refused} refused; {drawn} entropy draws (pace bound {bound})"
        ));
        if drawn > bound {
            return Err(format!("{drawn} draws exceed the pace's bound of {bound}"));
        }
        if answered + busy + refused != FLOOD || (FLOOD > bound && busy == 0) {
            return Err(String::from(
                "the flood outran the pace but none was told busy",
            ));
        }
        rngd::get_entropy(ep, 32)
            .await
            .map_err(|e| format!("rngd after the flood: {e}"))?;
        sessions.good::<P, H, E>(ep, &setup).await
    }
    .await;
    checks.check(markers::SELFTEST_DSOFTBUS_FLOOD_PACED, paced);

    // Every session, good or refused after message 2, had fresh ephemeral keys.
    let mut keys = sessions.ephemerals.clone();
    keys.sort_unstable();
    keys.dedup();
    let fresh = if keys.len() == sessions.ephemerals.len() && keys.len() >= 16 {
        Ok(())
    } else {
        Err(format!(
            "{} ephemeral keys, {} distinct",
            sessions.ephemerals.len(),
            keys.len()
        ))
    };
    checks.check(markers::SELFTEST_DSOFTBUS_FRESH_EPHEMERALS, fresh);

    // dsoftbusd recorded each refusal and each authentication of its network peers.
    let transport = Action::Call {
        service: ServiceId::Dsoftbusd,
        code: Operation::DsoftbusdTransport.code(),
    };
    let mut audit = Ok(());
    for (verdict, at_least) in [(Verdict::Rejected, 9), (Verdict::Allowed, 10)] {
        let filter = AuditFilter {
            origin: Some(ServiceId::Dsoftbusd),
            subject: Some(ServiceId::Dsoftbusd),
            action: Some(transport),
            verdict: Some(verdict),
        };
        match count(ep, filter).await {
            Ok(matched) if matched >= at_least => {}
            Ok(matched) => {
                audit = Err(format!(
                    "{matched} {verdict:?} records of dsoftbusd, want {at_least}"
                ))
            }
            Err(error) => audit = Err(error),
        }
    }
    checks.check(markers::SELFTEST_DSOFTBUS_AUDIT_RECORDS, audit);
}
