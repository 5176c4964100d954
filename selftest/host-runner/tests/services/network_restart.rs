//! dsoftbusd across a restart of netstackd, against a stand-in netstackd whose
//! generation the test sets: the connections of the old process end, and one the new
//! process already made is not forgotten.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use dsoftbusd::binding::Binding;
use dsoftbusd::client::Node;
use dsoftbusd::daemon::Daemon;
use dsoftbusd::sessions::LIMITS;
use ipc::{Endpoint, ServiceId};
use kernel_core::{Kernel, Limits, Platform};
use provider_api::{Bundle, Provider, SecretBytes, Seed, X25519SecretKey};
use service_api::netstackd::{self, Handle, Request as Net, SocketAddr, encode_ready};
use service_api::{Incoming, reply_ok};

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
            let static_key =
                X25519SecretKey::<<P as Provider>::Kx>::from_entropy(&SecretBytes::new([9; 32]));
            let binding = Binding {
                device_key: [0; 32],
                signature: [0; 64],
            };
            let mut daemon =
                Daemon::<P, provider_hash::Blake2s>::new(static_key, binding, LIMITS, 0);
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
