//! dsoftbusd across a restart of netstackd, against a stand-in netstackd whose
//! generation the test sets: the connections of the old process end, and one the new
//! process already made is not forgotten; a device pairing another (`pair=`) tries
//! again after a restart only if it had not sent `pake 1` yet.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use dsoftbusd::binding::Binding;
use dsoftbusd::client::Node;
use dsoftbusd::daemon::Daemon;
use dsoftbusd::pairing::{PairReply, PairRequest, PairStatus};
use dsoftbusd::sessions::LIMITS;
use ipc::{Endpoint, Operation, ServiceId};
use kernel_core::{Kernel, Limits, Platform};
use provider_api::{Bundle, Provider, SecretBytes, Seed, X25519SecretKey};
use service_api::netstackd::{
    self, Handle, READY_CONNECTED, READY_READABLE, Ready, Request as Net, SocketAddr, encode_ready,
};
use service_api::{Incoming, ServiceError, reply_err, reply_ok};

type P = Bundle<
    provider_select::backends::provider_dalek::Dalek,
    provider_select::backends::provider_chacha::ChaCha20Poly1305,
>;

struct Clock(std::time::Instant);

impl Platform for Clock {
    fn now_us(&self) -> u64 {
        self.0.elapsed().as_micros() as u64
    }
    fn console_line(&self, _: &str, _: &str) {}
}

/// A daemon with a fixed static key and a binding no test here checks.
fn daemon() -> Daemon<P, provider_hash::Blake2s> {
    let static_key =
        X25519SecretKey::<<P as Provider>::Kx>::from_entropy(&SecretBytes::new([9; 32]));
    let binding = Binding {
        device_key: [0; 32],
        signature: [0; 64],
    };
    Daemon::new(static_key, binding, LIMITS, 0)
}

/// The daemon learns of netstackd's restart only from its next `WAIT`, and serves a
/// queued `CONNECT` before it: that connection is the new process's, and must be
/// closed or kept, never dropped while its socket lives on in netstackd.
#[test]
fn a_connect_served_on_the_new_netstackd_is_not_orphaned() {
    let mut kernel = Kernel::new(
        Clock(std::time::Instant::now()),
        kernel_core::config::POLICY,
        kernel_core::config::GRANTS,
        Limits::default(),
    );
    let (generation, closed) = (Rc::new(Cell::new(0u16)), Rc::new(RefCell::new(Vec::new())));
    let (serving, closes) = (Rc::clone(&generation), Rc::clone(&closed));
    kernel
        .spawn(ServiceId::Netstackd, move |ep| async move {
            loop {
                let request = ep.receive().await;
                let incoming = Incoming::parse(ServiceId::Netstackd, &request).unwrap();
                let now = serving.get();
                let reply = match Net::decode(incoming.operation, incoming.payload).unwrap() {
                    Net::Listen { .. } => Handle::new(now, 1).0.to_le_bytes().to_vec(),
                    Net::Connect { .. } => {
                        [&Handle::new(now, 2).0.to_le_bytes()[..], &[0; 6]].concat()
                    }
                    Net::Wait { .. } => encode_ready(now, &[]),
                    Net::Close { handle, .. } => {
                        closes.borrow_mut().push(handle);
                        Vec::new()
                    }
                    _ => Vec::new(),
                };
                let _ = reply_ok(&ep, request.token, &reply);
            }
        })
        .unwrap();
    let key = Node::<P>::new(&Seed::new([3; 32]), &SecretBytes::new([4; 32]))
        .unwrap()
        .device_key();
    let remote = SocketAddr {
        ip: [10, 0, 2, 2],
        port: 7411,
    };
    kernel
        .spawn(ServiceId::Selftest, move |ep| async move {
            let _ = service_api::dsoftbusd::connect(&ep, remote, &key).await;
        })
        .unwrap();
    kernel
        .spawn(ServiceId::Dsoftbusd, move |ep| async move {
            let mut daemon = daemon();
            daemon.trust(&key).unwrap();
            daemon.listen(&ep).await.unwrap();
            // netstackd restarts while no call of the daemon's is open to it.
            generation.set(1);
            let request = ep.receive().await;
            let payload = Incoming::parse(ServiceId::Dsoftbusd, &request)
                .unwrap()
                .payload
                .to_vec();
            daemon
                .connect(&ep, request.sender, request.token, &payload, ep.uptime_ms())
                .await;
            // The WAIT after it is answered by another generation than the listener's.
            let waited = netstackd::wait(&ep, 0).await.unwrap();
            assert_ne!(daemon.listener().unwrap().generation(), waited.generation);
            daemon.network_restarted(&ep);
            for _ in 0..100 {
                ep.yield_now().await;
            }
            assert!(
                closed.borrow().contains(&Handle::new(1, 2)) || daemon.sessions() != (0, 0),
                "the new process's connection was dropped and its socket left open: closed {:?}",
                closed.borrow()
            );
        })
        .unwrap();
    let _ = kernel.run(Some(ServiceId::Dsoftbusd), u64::MAX);
}

/// A device pairing another (`docs/protocol.md` section 11.7) runs until its pair
/// hello is sent (`after_pake_1` false) or until `pake 1` is (true), against a
/// stand-in netstackd (the other device's pair reply: OK, 1,000 rounds) and keystored
/// (a share for `PAIRING_PROVE`); then netstackd restarts. Returns the frames sent, the
/// connections the prover opened after the restart, and its console.
fn prover_across_a_restart(after_pake_1: bool) -> (Vec<Vec<u8>>, u32, Vec<String>) {
    struct Console(std::time::Instant, Rc<RefCell<Vec<String>>>);
    impl Platform for Console {
        fn now_us(&self) -> u64 {
            self.0.elapsed().as_micros() as u64
        }
        fn console_line(&self, prefix: &str, line: &str) {
            self.1.borrow_mut().push(format!("{prefix}: {line}"));
        }
    }
    let console: Rc<RefCell<Vec<String>>> = Rc::default();
    let mut kernel = Kernel::new(
        Console(std::time::Instant::now(), Rc::clone(&console)),
        kernel_core::config::POLICY,
        kernel_core::config::GRANTS,
        Limits::default(),
    );
    let generation = Rc::new(Cell::new(0u16));
    let connects = Rc::new(Cell::new(0u32));
    let sent: Rc<RefCell<Vec<Vec<u8>>>> = Rc::default();
    let (serving, counted, sent_to) = (
        Rc::clone(&generation),
        Rc::clone(&connects),
        Rc::clone(&sent),
    );
    let reply = dsoftbusd::wire::frame(
        &PairReply {
            status: PairStatus::Ok,
            suite: "Noise_XK_25519_ChaChaPoly_BLAKE2s".into(),
            params: Some((1_000, [7; 16])),
        }
        .encode(),
    );
    kernel
        .spawn(ServiceId::Netstackd, move |ep| async move {
            let mut replied = false;
            loop {
                let request = ep.receive().await;
                let incoming = Incoming::parse(ServiceId::Netstackd, &request).unwrap();
                let now = serving.get();
                let answer = match Net::decode(incoming.operation, incoming.payload).unwrap() {
                    Net::Listen { .. } => Handle::new(now, 1).0.to_le_bytes().to_vec(),
                    Net::Connect { .. } => {
                        counted.set(counted.get() + 1);
                        [&Handle::new(now, 2).0.to_le_bytes()[..], &[0; 6]].concat()
                    }
                    Net::Send { data, .. } => {
                        sent_to.borrow_mut().push(data.to_vec());
                        (data.len() as u16).to_le_bytes().to_vec()
                    }
                    Net::Recv { .. } if !replied => {
                        replied = true;
                        reply.clone()
                    }
                    Net::Recv { .. } => {
                        let _ = reply_err(&ep, request.token, ServiceError::TimedOut);
                        continue;
                    }
                    Net::Wait { .. } => encode_ready(now, &[]),
                    _ => Vec::new(),
                };
                let _ = reply_ok(&ep, request.token, &answer);
            }
        })
        .unwrap();
    kernel
        .spawn(ServiceId::Keystored, move |ep| async move {
            loop {
                let request = ep.receive().await;
                let incoming = Incoming::parse(ServiceId::Keystored, &request).unwrap();
                let _ = match incoming.operation {
                    Operation::KeystoredPairingProve => reply_ok(&ep, request.token, &[4; 65]),
                    _ => reply_err(&ep, request.token, ServiceError::Unavailable),
                };
            }
        })
        .unwrap();
    let again = Rc::new(Cell::new(None));
    let (out, connects_seen) = (Rc::clone(&again), Rc::clone(&connects));
    kernel
        .spawn(ServiceId::Dsoftbusd, move |ep| async move {
            let mut daemon = daemon();
            daemon.listen(&ep).await.unwrap();
            let request = PairRequest::parse("10.0.2.15:7411:2020-2021").unwrap();
            daemon.plan_pairing(request, ep.uptime_ms());
            daemon.prover_tick(&ep, ep.uptime_ms()).await;
            assert_eq!(connects_seen.get(), 1, "the first try connects");
            let handle = Handle::new(0, 2);
            let connected = Ready {
                handle,
                flags: READY_CONNECTED,
            };
            daemon.on_ready(&ep, &[connected]).await;
            if after_pake_1 {
                let readable = Ready {
                    handle,
                    flags: READY_READABLE,
                };
                daemon.on_ready(&ep, &[readable]).await;
            }
            let before = connects_seen.get();
            // netstackd faults and comes back; dsoftbusd learns it and listens again.
            generation.set(1);
            daemon.network_restarted(&ep);
            daemon.listen(&ep).await.unwrap();
            for step in 1..=4u64 {
                daemon.prover_tick(&ep, ep.uptime_ms() + step * 1_000).await;
            }
            out.set(Some(connects_seen.get() - before));
        })
        .unwrap();
    let _ = kernel.run(Some(ServiceId::Dsoftbusd), u64::MAX);
    let again = again.get().expect("the daemon's task ran");
    let sent = sent.borrow().clone();
    let console = console.borrow().clone();
    (sent, again, console)
}

/// Before `pake 1` the other device counted nothing: the restart's try is tried again.
#[test]
fn a_prover_tries_again_after_a_restart_before_pake_1() {
    let (sent, again, console) = prover_across_a_restart(false);
    assert_eq!(sent.len(), 1, "the pair hello alone");
    assert_eq!(again, 1, "tried again after the restart: {console:?}");
}

/// After `pake 1` the other device counted an attempt: a restart ends the pairing, it
/// does not start another run (found by a review: each restart cost the other device
/// an attempt and gave whoever is at that address another guess).
#[test]
fn a_prover_never_tries_again_after_pake_1_even_across_a_restart() {
    let (sent, again, console) = prover_across_a_restart(true);
    assert!(
        sent.iter().any(|frame| frame.len() == 2 + 65),
        "pake 1 was sent: {:?}",
        sent.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert_eq!(again, 0, "tried again after pake 1: {console:?}");
    assert!(
        console.contains(&"dsoftbusd: pairing refused (network-restarted)".to_string()),
        "{console:?}"
    );
}
