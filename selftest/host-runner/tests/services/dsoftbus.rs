//! dsoftbusd on the host, over TCP through netstackd's loopback interface and over
//! IPC: sessions between nodes on different backends, peers that cannot agree, and
//! the session table's bounds, deadlines and pace.

use core::future::Future;

use dsoftbusd::client::{Believed, ConnectError, Node, Stream, connect, connect_tcp};
use dsoftbusd::sessions::{LIMITS, Limits};
use dsoftbusd::wire::{self, Hello, HelloReply, HelloStatus};
use host_runner::{Disks, Entropy, HostSystem};
use ipc::{Action, AuditFilter, Endpoint, Operation, ServiceId, Verdict};
use provider_api::{
    Bundle, HashBackend, Provider, SecretBytes, Seed, VerifyingKey, X25519PublicKey,
};
use provider_hash::{Blake2s, Sha256};
use provider_select::backends::provider_aes_gcm::Aes256Gcm;
use provider_select::backends::provider_chacha::ChaCha20Poly1305;
use provider_select::backends::provider_compact::Compact;
use provider_select::backends::provider_dalek::Dalek;
use service_api::dsoftbusd::{discover, trust};
use service_api::netstackd::{self, SocketAddr};
use service_api::{ClientError, ServiceError, keystored, logd};

type DalekChacha = Bundle<Dalek, ChaCha20Poly1305>;
type CompactChacha = Bundle<Compact, ChaCha20Poly1305>;
type DalekAes = Bundle<Dalek, Aes256Gcm>;

const DSOFTBUSD: SocketAddr = SocketAddr::loopback(wire::PORT);

fn node<P: Provider>(fill: u8) -> Node<P> {
    Node::new(&Seed::new([fill; 32]), &SecretBytes::new([fill ^ 0x5a; 32])).unwrap()
}

/// Provisions `node` and returns what a session needs: dsoftbusd's static key and
/// its device key.
async fn provision<P: Provider, E: Endpoint>(
    ep: &E,
    node: &Node<P>,
) -> (X25519PublicKey, VerifyingKey<P::Sig>) {
    let discovered = discover(ep).await.unwrap();
    let device = VerifyingKey::from_bytes(&keystored::get_pubkey(ep).await.unwrap()).unwrap();
    trust(ep, &node.device_key()).await.unwrap();
    (X25519PublicKey(discovered.noise_static), device)
}

/// Provisions `node`, connects it over TCP, pings, and returns the outcome.
async fn tcp_session<P: Provider, H: HashBackend, E: Endpoint>(
    ep: &E,
    node: &Node<P>,
) -> Result<Vec<u8>, ConnectError> {
    let (_, device) = provision(ep, node).await;
    let mut session = connect_tcp::<P, H, E>(
        ep,
        node,
        DSOFTBUSD,
        Believed::FromHello,
        &[device],
        |_, _| {},
    )
    .await?;
    let pong = session.ping(ep, b"cross").await;
    session.close(ep).await;
    pong
}

/// Provisions `node`, connects it over IPC as session `id`, pings.
async fn ipc_session<P: Provider, H: HashBackend, E: Endpoint>(
    ep: &E,
    node: &Node<P>,
    id: u32,
) -> Result<Vec<u8>, ConnectError> {
    let (responder, device) = provision(ep, node).await;
    let mut session = connect::<P, H, E>(ep, node, id, &responder, &[device], |_, _| {}).await?;
    session.ping(ep, b"cross").await
}

/// A first handshake message and nothing after: the reply's length, or the refusal.
async fn bare_first_message<E: Endpoint>(
    ep: &E,
    id: u32,
    responder: X25519PublicKey,
) -> Result<usize, ClientError> {
    let entropy = SecretBytes::new([id as u8; 32]);
    let (_, message_1) = noise_xk::Initiator::<Dalek, ChaCha20Poly1305, Blake2s>::new(
        dsoftbusd::PROLOGUE,
        std::rc::Rc::new(provider_api::X25519SecretKey::from_entropy(&entropy)),
        responder,
    )
    .write_message_1(&entropy, &[])
    .unwrap();
    service_api::dsoftbusd::transport(ep, id, &message_1)
        .await
        .map(|reply| reply.len())
}

async fn count<E: Endpoint>(ep: &E, filter: AuditFilter) -> u32 {
    logd::query(ep, &filter).await.unwrap().matched
}

/// dsoftbusd's records of network sessions with `reason`.
fn network_records(verdict: Verdict) -> AuditFilter {
    AuditFilter {
        origin: Some(ServiceId::Dsoftbusd),
        subject: Some(ServiceId::Dsoftbusd),
        action: Some(Action::Call {
            service: ServiceId::Dsoftbusd,
            code: Operation::DsoftbusdTransport.code(),
        }),
        verdict: Some(verdict),
    }
}

/// Lets the system run for `ms` of wall time.
async fn sleep<E: Endpoint>(ep: &E, ms: u64) {
    let until = ep.uptime_ms() + ms;
    while ep.uptime_ms() < until {
        ep.yield_now().await;
    }
}

#[test]
fn a_dalek_node_and_a_compact_daemon_complete_a_session_and_back_over_both_paths() {
    let mut compact_daemon = HostSystem::boot::<CompactChacha>(Entropy::Host);
    let pongs = compact_daemon.run_as(ServiceId::Selftest, |ep| async move {
        (
            tcp_session::<DalekChacha, Blake2s, _>(&ep, &node::<DalekChacha>(1)).await,
            ipc_session::<DalekChacha, Blake2s, _>(&ep, &node::<DalekChacha>(1), 1).await,
        )
    });
    assert_eq!(pongs, (Ok(b"cross".to_vec()), Ok(b"cross".to_vec())));
    let mut dalek_daemon = HostSystem::boot::<DalekChacha>(Entropy::Host);
    let pong = dalek_daemon.run_as(ServiceId::Selftest, |ep| async move {
        tcp_session::<CompactChacha, Blake2s, _>(&ep, &node::<CompactChacha>(2)).await
    });
    assert_eq!(pong, Ok(b"cross".to_vec()));
    assert!(
        dalek_daemon
            .console()
            .iter()
            .any(|l| l.starts_with("dsoftbusd: session with ") && l.ends_with(" established")),
        "the responder names the peer it authenticated"
    );
}

#[test]
fn peers_on_different_suites_fail_cleanly_naming_both_and_the_daemon_goes_on() {
    let mut system = HostSystem::boot::<DalekChacha>(Entropy::Host);
    let (aes, sha, aes_ipc, good) = system.run_as(ServiceId::Selftest, |ep| async move {
        let aes = tcp_session::<DalekAes, Blake2s, _>(&ep, &node::<DalekAes>(3)).await;
        let sha = tcp_session::<DalekChacha, Sha256, _>(&ep, &node::<DalekChacha>(4)).await;
        let aes_ipc = ipc_session::<DalekAes, Blake2s, _>(&ep, &node::<DalekAes>(3), 1).await;
        let good = tcp_session::<DalekChacha, Blake2s, _>(&ep, &node::<DalekChacha>(5)).await;
        (aes, sha, aes_ipc, good)
    });
    let ours = "Noise_XK_25519_ChaChaPoly_BLAKE2s".to_owned();
    assert_eq!(aes, Err(ConnectError::SuiteMismatch(ours.clone())));
    assert_eq!(sha, Err(ConnectError::SuiteMismatch(ours)));
    // Over IPC there is no hello: the handshake itself fails.
    assert_eq!(
        aes_ipc,
        Err(ConnectError::Refused(ClientError::Service(
            ServiceError::AuthenticationFailed
        )))
    );
    assert_eq!(good, Ok(b"cross".to_vec()));
    let console = system.console();
    assert!(console.iter().any(|l| l
        == "dsoftbusd: suite mismatch: ours Noise_XK_25519_ChaChaPoly_BLAKE2s, \
            peer Noise_XK_25519_AESGCM_BLAKE2s"));
    assert!(console.iter().any(|l| l
        == "dsoftbusd: suite mismatch: ours Noise_XK_25519_ChaChaPoly_BLAKE2s, \
            peer Noise_XK_25519_ChaChaPoly_SHA256"));
}

#[test]
fn every_session_gets_fresh_ephemeral_keys_from_rngd() {
    let mut system = HostSystem::boot::<DalekChacha>(Entropy::Host);
    let keys = system.run_as(ServiceId::Selftest, |ep| async move {
        let node = node::<DalekChacha>(6);
        let (_, device) = provision(&ep, &node).await;
        let mut keys = Vec::new();
        for _ in 0..12 {
            let session = connect_tcp::<DalekChacha, Blake2s, _>(
                &ep,
                &node,
                DSOFTBUSD,
                Believed::FromHello,
                core::slice::from_ref(&device),
                |_, _| {},
            )
            .await
            .unwrap();
            keys.push(session.responder_ephemeral);
            keys.push(session.initiator_ephemeral);
            session.close(&ep).await;
        }
        keys
    });
    let mut distinct = keys.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        keys.len(),
        "no two sessions share an ephemeral key"
    );
}

#[test]
fn a_full_table_refuses_newcomers_and_never_evicts_an_established_session() {
    let mut system = HostSystem::boot::<DalekChacha>(Entropy::Host);
    let outcome = system.run_as(ServiceId::Selftest, |ep| async move {
        let node = node::<DalekChacha>(7);
        let (responder, device) = provision(&ep, &node).await;
        let trusted = core::slice::from_ref(&device);
        let mut sessions = Vec::new();
        for id in 0..LIMITS.established as u32 {
            sessions.push(
                connect::<DalekChacha, Blake2s, _>(&ep, &node, id, &responder, trusted, |_, _| {})
                    .await
                    .unwrap(),
            );
        }
        // One more established session: refused, nobody evicted.
        let extra =
            connect::<DalekChacha, Blake2s, _>(&ep, &node, 100, &responder, trusted, |_, _| {})
                .await
                .map(|_| ());
        // Bare first messages (the review's attack: they used to evict sessions):
        // two are held for this source, the rest refused.
        let mut bare = Vec::new();
        for id in 200..208u32 {
            bare.push(bare_first_message(&ep, id, responder).await);
        }
        let mut pings = Vec::new();
        for session in &mut sessions {
            pings.push(session.ping(&ep, b"kept").await);
        }
        (extra, bare, pings)
    });
    let (extra, bare, pings) = outcome;
    assert_eq!(
        extra,
        Err(ConnectError::Refused(ClientError::Service(
            ServiceError::Full
        )))
    );
    assert!(
        pings.iter().all(|p| p == &Ok(b"kept".to_vec())),
        "{pings:?}"
    );
    let held = bare.iter().filter(|b| b.is_ok()).count();
    assert_eq!(held, LIMITS.half_open_per_source, "{bare:?}");
    let busy = Err(ClientError::Service(ServiceError::Busy));
    assert!(bare.iter().skip(held).all(|b| *b == busy), "{bare:?}");
}

#[test]
fn half_open_handshakes_have_a_quota_per_source() {
    let mut system = HostSystem::boot::<DalekChacha>(Entropy::Host);
    let (held, refused) = system.run_as(ServiceId::Selftest, |ep| async move {
        let node = node::<DalekChacha>(8);
        provision(&ep, &node).await;
        let suite = noise_xk::protocol_name::<ChaCha20Poly1305, Blake2s>();
        let mut held = Vec::new();
        let mut refused = 0;
        for _ in 0..6 {
            let mut stream = Stream::open(&ep, DSOFTBUSD).await.unwrap();
            let hello = Hello {
                suite: suite.clone(),
            };
            let answered = match stream.send(&ep, &hello.encode()).await {
                Ok(()) => stream.recv(&ep).await.ok().flatten(),
                Err(_) => None,
            };
            match answered.map(|r| HelloReply::decode(&r).unwrap().status) {
                Some(HelloStatus::Ok) => held.push(stream),
                _ => {
                    refused += 1;
                    stream.close(&ep, true).await;
                }
            }
        }
        let count = held.len();
        for stream in held {
            stream.close(&ep, true).await;
        }
        (count, refused)
    });
    assert_eq!(held, LIMITS.half_open_per_source);
    assert_eq!(refused, 6 - LIMITS.half_open_per_source);
}

#[test]
fn the_entropy_pace_bounds_the_draws_of_a_flood_of_first_messages() {
    let limits = Limits {
        entropy_burst: 3,
        entropy_refill_ms: 3_600_000,
        half_open_per_source: 16,
        half_open: 16,
        ..LIMITS
    };
    let mut system =
        HostSystem::boot_limited::<DalekChacha>(Entropy::Host, Disks::random(), limits);
    let (answers, draws, rngd_serves) = system.run_as(ServiceId::Selftest, |ep| async move {
        let node = node::<DalekChacha>(9);
        let (responder, device) = provision(&ep, &node).await;
        let draws = |ep| {
            count(
                ep,
                AuditFilter {
                    origin: Some(ServiceId::Rngd),
                    subject: Some(ServiceId::Dsoftbusd),
                    action: None,
                    verdict: Some(Verdict::Allowed),
                },
            )
        };
        let before = draws(&ep).await;
        let mut answers = Vec::new();
        for id in 0..10u32 {
            let attempt = connect::<DalekChacha, Blake2s, _>(
                &ep,
                &node,
                id,
                &responder,
                core::slice::from_ref(&device),
                |_, _| {},
            )
            .await;
            answers.push(attempt.map(drop));
        }
        let drawn = draws(&ep).await - before;
        let serves = service_api::rngd::get_entropy(&ep, 32).await.is_ok();
        (answers, drawn, serves)
    });
    let busy = Err(ConnectError::Refused(ClientError::Service(
        ServiceError::Busy,
    )));
    assert_eq!(answers.iter().filter(|a| a.is_ok()).count(), 3);
    assert_eq!(answers.iter().filter(|a| **a == busy).count(), 7);
    assert_eq!(
        draws, 3,
        "one draw per paced handshake, none for the refused"
    );
    assert!(rngd_serves, "rngd goes on serving");
}

#[test]
fn a_stalled_handshake_and_an_idle_session_are_closed_by_their_deadlines() {
    let limits = Limits {
        handshake_ms: 100,
        idle_ms: 300,
        ..LIMITS
    };
    let mut system =
        HostSystem::boot_limited::<DalekChacha>(Entropy::Host, Disks::random(), limits);
    let (stalled, idle, timeouts) = system.run_as(ServiceId::Selftest, |ep| async move {
        let node = node::<DalekChacha>(10);
        let (_, device) = provision(&ep, &node).await;
        // One byte of a frame, then silence: the handshake deadline frees the slot.
        let mut stalled = Stream::open(&ep, DSOFTBUSD).await.unwrap();
        stalled.send_bytes(&ep, &[0]).await.unwrap();
        let stalled_end = stalled.recv(&ep).await;
        let mut session = connect_tcp::<DalekChacha, Blake2s, _>(
            &ep,
            &node,
            DSOFTBUSD,
            Believed::FromHello,
            &[device],
            |_, _| {},
        )
        .await
        .unwrap();
        sleep(&ep, 1_500).await;
        // The idle session was ended with a BYE and closed.
        let idle_end = session.recv_raw(&ep).await;
        let timeouts = count(&ep, network_records(Verdict::Rejected)).await;
        (stalled_end, idle_end.is_ok(), timeouts)
    });
    assert_eq!(stalled.map(|f| f.is_none()), Ok(true), "closed, no frame");
    assert!(idle, "the BYE arrived");
    assert!(timeouts >= 2, "both deadlines were recorded ({timeouts})");
}

#[test]
fn a_socket_is_usable_only_by_the_task_that_opened_it() {
    let mut system = HostSystem::boot::<DalekChacha>(Entropy::Host);
    let handle = system.run_as(ServiceId::Selftest, |ep| async move {
        // Once dsoftbusd answers, it listens.
        discover(&ep).await.unwrap();
        let (handle, _) = netstackd::connect(&ep, DSOFTBUSD, 1000).await.unwrap();
        handle
    });
    let refusals = system.run_as(ServiceId::SelftestPeer, move |ep| async move {
        let bad = Err(ClientError::Service(ServiceError::BadHandle));
        [
            netstackd::status(&ep, handle).await.map(|_| ()) == bad,
            netstackd::recv(&ep, handle, 10, 0).await.map(|_| ()) == bad,
            netstackd::send(&ep, handle, b"x", 0).await.map(|_| ()) == bad,
            netstackd::close(&ep, handle, true).await == bad,
        ]
    });
    assert_eq!(refusals, [true; 4]);
}

#[test]
fn a_frame_length_beyond_the_limit_and_garbage_end_the_connection_only() {
    let mut system = HostSystem::boot::<DalekChacha>(Entropy::Host);
    let (long, garbage, good) = system.run_as(ServiceId::Selftest, |ep| async move {
        discover(&ep).await.unwrap();
        let mut long = Stream::open(&ep, DSOFTBUSD).await.unwrap();
        long.send_bytes(&ep, &[0xff, 0xff, 1, 2, 3]).await.unwrap();
        let long = long.recv(&ep).await;
        let mut garbage = Stream::open(&ep, DSOFTBUSD).await.unwrap();
        garbage.send_bytes(&ep, b"\x00\x05GET /").await.unwrap();
        let garbage = garbage
            .recv(&ep)
            .await
            .map(|f| f.map(|f| HelloReply::decode(&f)));
        let good = tcp_session::<DalekChacha, Blake2s, _>(&ep, &node::<DalekChacha>(11)).await;
        (long, garbage, good)
    });
    assert_eq!(long, Ok(None), "closed without an answer");
    assert!(
        matches!(garbage, Ok(Some(Ok(ref reply))) if reply.status == HelloStatus::Unsupported),
        "{garbage:?}"
    );
    assert_eq!(good, Ok(b"cross".to_vec()));
}

/// Runs `a` and `b` in one task, both to completion.
async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (Box::pin(a), Box::pin(b));
    let (mut left, mut right) = (None, None);
    core::future::poll_fn(|cx| {
        if left.is_none()
            && let core::task::Poll::Ready(out) = a.as_mut().poll(cx)
        {
            left = Some(out);
        }
        if right.is_none()
            && let core::task::Poll::Ready(out) = b.as_mut().poll(cx)
        {
            right = Some(out);
        }
        if left.is_some() && right.is_some() {
            core::task::Poll::Ready((left.take().unwrap(), right.take().unwrap()))
        } else {
            core::task::Poll::Pending
        }
    })
    .await
}

/// A peer names its suite `FAIL,panic` in its hello (dsoftbusd as the responder) and
/// in its hello reply (dsoftbusd as the initiator): the console shows what the name is
/// not, never its bytes, and no line of the console fails the marker judge.
#[test]
fn a_peers_suite_name_never_reaches_the_console_as_it_came() {
    let mut system = HostSystem::boot::<DalekChacha>(Entropy::Host);
    let (hello_reply, connected) = system.run_as(ServiceId::Selftest, |ep| async move {
        // dsoftbusd answers once it listens.
        discover(&ep).await.unwrap();
        let mut stream = Stream::open(&ep, DSOFTBUSD).await.unwrap();
        let evil = Hello {
            suite: "FAIL,panic".into(),
        };
        stream.send(&ep, &evil.encode()).await.unwrap();
        let reply = stream
            .recv(&ep)
            .await
            .unwrap()
            .map(|r| HelloReply::decode(&r));
        stream.close(&ep, true).await;
        // A responder of our own that answers dsoftbusd's hello with the same name.
        let listener = netstackd::listen(&ep, 9123, 1).await.unwrap();
        let responder = async {
            let accepted = netstackd::accept(&ep, listener, netstackd::MAX_WAIT_MS)
                .await
                .unwrap();
            let mut stream = Stream::from_handle(accepted.handle);
            let _hello = stream.recv(&ep).await;
            let reply = HelloReply {
                status: HelloStatus::SuiteMismatch,
                suite: "FAIL,panic".into(),
                static_key: None,
            };
            stream.send(&ep, &reply.encode()).await.unwrap();
            stream.close(&ep, false).await;
        };
        // dsoftbusd opens sessions only to devices it trusts.
        let someone = node::<DalekChacha>(9).device_key();
        trust(&ep, &someone).await.unwrap();
        let connecting = service_api::dsoftbusd::connect(&ep, SocketAddr::loopback(9123), &someone);
        let (_, connected) = join(responder, connecting).await;
        (reply, connected)
    });
    assert_eq!(
        hello_reply.map(|r| r.map(|r| r.status)),
        Some(Ok(HelloStatus::SuiteMismatch))
    );
    assert!(connected.is_err(), "{connected:?}");
    let console = system.console();
    let mismatches: Vec<&String> = console
        .iter()
        .filter(|l| l.starts_with("dsoftbusd: suite mismatch: "))
        .collect();
    assert_eq!(mismatches.len(), 2, "{console:#?}");
    for line in mismatches {
        assert!(
            line.starts_with(
                "dsoftbusd: suite mismatch: ours Noise_XK_25519_ChaChaPoly_BLAKE2s, peer unknown-suite:10B:"
            ),
            "{line}"
        );
        assert!(!line.contains("FAIL") && !line.contains("panic"), "{line}");
    }
    let contract =
        marker_contract::Contract::parse(include_str!("../../../../ladder/markers.toml")).unwrap();
    for line in &console {
        assert_eq!(
            marker_contract::failure_in(line, &contract.failure_patterns),
            None,
            "{line}"
        );
    }
}
