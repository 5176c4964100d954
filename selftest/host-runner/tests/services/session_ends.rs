//! How established sessions end, through netstackd (TCP over its loopback interface,
//! both ends smoltcp sockets) and dsoftbusd with their real bounds:
//!
//! - the idle rule of `docs/protocol.md` section 7 (decision 0011): a session quiet
//!   for 30 s gets `BYE` and is closed, and nothing ends it before (netstackd's own
//!   timer used to reset it after 10 s, without a word);
//! - every end of an established session, whatever ended it, gets its console line
//!   naming the reason, as its establishment did.
//!
//! The system's clock is moved forward ([`host_runner::HostClock`]) in small steps so
//! the 30 s pass in moments, every task seeing each step.

use dsoftbusd::client::{Believed, Node, TcpSession, connect_tcp};
use dsoftbusd::wire;
use host_runner::{Entropy, HostClock, HostSystem};
use ipc::Endpoint;
use ipc::ServiceId;
use provider_api::{Bundle, SecretBytes, Seed, VerifyingKey};
use provider_hash::Blake2s;
use provider_select::backends::provider_chacha::ChaCha20Poly1305;
use provider_select::backends::provider_dalek::Dalek;
use service_api::netstackd::{self, SocketAddr, SocketState};
use service_api::{dsoftbusd as dsoftbusd_api, keystored};

type DC = Bundle<Dalek, ChaCha20Poly1305>;
type Session = TcpSession<ChaCha20Poly1305>;

const DSOFTBUSD: SocketAddr = SocketAddr::loopback(wire::PORT);

fn node(fill: u8) -> Node<DC> {
    Node::new(&Seed::new([fill; 32]), &SecretBytes::new([fill ^ 0x5a; 32])).unwrap()
}

async fn settle<E: Endpoint>(ep: &E) {
    for _ in 0..50 {
        ep.yield_now().await;
    }
}

/// Moves the clock `ms` forward in steps of `step_ms`, letting every task run after
/// each step.
async fn pass<E: Endpoint>(ep: &E, clock: &HostClock, ms: u64, step_ms: u64) {
    let mut passed = 0;
    while passed < ms {
        let step = step_ms.min(ms - passed);
        clock.skip_ms(step);
        passed += step;
        settle(ep).await;
    }
}

async fn provision<E: Endpoint>(ep: &E, node: &Node<DC>) -> VerifyingKey<Dalek> {
    dsoftbusd_api::discover(ep).await.unwrap();
    dsoftbusd_api::trust(ep, &node.device_key()).await.unwrap();
    VerifyingKey::from_bytes(&keystored::get_pubkey(ep).await.unwrap()).unwrap()
}

async fn open<E: Endpoint>(ep: &E, node: &Node<DC>, device: &VerifyingKey<Dalek>) -> Session {
    connect_tcp::<DC, Blake2s, _>(
        ep,
        node,
        DSOFTBUSD,
        Believed::FromHello,
        core::slice::from_ref(device),
        |_, _| {},
    )
    .await
    .unwrap()
}

/// The connection's state and the bytes waiting in it, as netstackd reports them.
async fn state<E: Endpoint>(ep: &E, session: &Session) -> (SocketState, u16) {
    let status = netstackd::status(ep, session.stream().handle())
        .await
        .unwrap();
    (status.state, status.rx_queued)
}

#[test]
fn a_quiet_session_lives_30_s_then_gets_bye_and_is_closed() {
    let mut system = HostSystem::boot::<DC>(Entropy::Host);
    let clock = system.clock();
    let (at_29_s, bye, after) = system.run_as(ServiceId::Selftest, |ep| async move {
        let node = node(21);
        let device = provision(&ep, &node).await;
        let mut session = open(&ep, &node, &device).await;
        assert_eq!(session.ping(&ep, b"last word").await.unwrap(), b"last word");
        // 29 s of silence: TCP keep-alives flow, nothing else.
        pass(&ep, &clock, 29_000, 250).await;
        let at_29_s = state(&ep, &session).await;
        // Past 30 s: dsoftbusd's idle timeout.
        pass(&ep, &clock, 1_500, 250).await;
        let bye = session.recv_raw(&ep).await.map(|m| session.open(&m));
        let after = session.recv_raw(&ep).await.map(drop);
        (at_29_s, bye, after)
    });
    let console = system.console().join("\n");
    assert_eq!(
        at_29_s,
        (SocketState::Established, 0),
        "open and silent after 29 s\n{console}"
    );
    assert_eq!(bye.map(|p| p.ok()), Ok(Some(b"BYE".to_vec())), "{console}");
    assert!(after.is_err(), "closed after the BYE");
    assert!(
        console.contains(" closed (idle-timeout)"),
        "the end is on the console:\n{console}"
    );
}

/// Every way an established session ends gets its `closed (<reason>)` line: as many
/// as `established` lines, each with the reason that ended it.
#[test]
fn every_end_of_an_established_session_is_on_the_console() {
    let mut system = HostSystem::boot::<DC>(Entropy::Host);
    let clock = system.clock();
    system.run_as(ServiceId::Selftest, |ep| async move {
        let node = node(22);
        let device = provision(&ep, &node).await;
        // BYE.
        let session = open(&ep, &node, &device).await;
        session.close(&ep).await;
        settle(&ep).await;
        // The peer closes its side without a BYE.
        let session = open(&ep, &node, &device).await;
        netstackd::close(&ep, session.stream().handle(), false)
            .await
            .unwrap();
        settle(&ep).await;
        // Four transport messages that do not decrypt.
        let session = open(&ep, &node, &device).await;
        for _ in 0..4 {
            session.send_raw(&ep, &[0x55; 40]).await.unwrap();
        }
        let _ = netstackd::recv(&ep, session.stream().handle(), 100, 500).await;
        // A peer that sends pings and never reads the pongs.
        let mut session = open(&ep, &node, &device).await;
        for _ in 0..24 {
            let ping = session.seal_ping(&[0xaa; 900]).unwrap();
            let framed = dsoftbusd::client::frame_unchecked(&ping);
            if netstackd::send(&ep, session.stream().handle(), &framed, 200)
                .await
                .is_err()
            {
                break;
            }
        }
        settle(&ep).await;
        // Silence past the idle timeout.
        let _quiet = open(&ep, &node, &device).await;
        pass(&ep, &clock, 31_000, 250).await;
    });
    let console = system.console();
    let established = console
        .iter()
        .filter(|l| l.starts_with("dsoftbusd: session with ") && l.ends_with(" established"))
        .count();
    let reasons: Vec<&str> = console
        .iter()
        .filter(|l| l.starts_with("dsoftbusd: session with "))
        .filter_map(|l| {
            l.split_once(" closed (")
                .map(|(_, r)| r.trim_end_matches(')'))
        })
        .collect();
    assert_eq!(established, 5, "{console:#?}");
    assert_eq!(
        reasons,
        [
            "bye",
            "connection-closed",
            "undecryptable-messages",
            "peer-not-reading",
            "idle-timeout"
        ],
        "{console:#?}"
    );
}
