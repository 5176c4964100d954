//! dsoftbusd on the host: sessions between nodes on different backends, peers that
//! cannot agree, and the bounds.

use dsoftbusd::client::{ConnectError, Node, connect};
use host_runner::{Entropy, HostSystem};
use ipc::{Endpoint, ServiceId};
use provider_aes_gcm::Aes256Gcm;
use provider_api::{
    Bundle, HashBackend, Provider, SecretBytes, Seed, VerifyingKey, X25519PublicKey,
};
use provider_chacha::ChaCha20Poly1305;
use provider_compact::Compact;
use provider_dalek::Dalek;
use provider_hash::{Blake2s, Sha256};
use service_api::dsoftbusd::{MAX_SESSIONS, discover, trust};
use service_api::{ClientError, ServiceError, keystored};

type DalekChacha = Bundle<Dalek, ChaCha20Poly1305>;
type CompactChacha = Bundle<Compact, ChaCha20Poly1305>;
type DalekAes = Bundle<Dalek, Aes256Gcm>;

fn node<P: Provider>(fill: u8) -> Node<P> {
    Node::new(&Seed::new([fill; 32]), &SecretBytes::new([fill ^ 0x5a; 32])).unwrap()
}

/// Provisions `node`, connects it as session `id`, pings, and returns the outcome.
async fn session<P: Provider, H: HashBackend, E: Endpoint>(
    ep: &E,
    node: &Node<P>,
    id: u32,
) -> Result<Vec<u8>, ConnectError> {
    let discovered = discover(ep).await.unwrap();
    let device = VerifyingKey::from_bytes(&keystored::get_pubkey(ep).await.unwrap()).unwrap();
    trust(ep, &node.device_key()).await.unwrap();
    let responder = X25519PublicKey(discovered.noise_static);
    let mut session = connect::<P, H, E>(ep, node, id, &responder, &[device], |_, _| {}).await?;
    session.ping(ep, b"cross").await
}

#[test]
fn a_dalek_node_and_a_compact_daemon_complete_a_session_and_back() {
    let mut compact_daemon = HostSystem::boot::<CompactChacha>(Entropy::Host);
    let pong = compact_daemon.run_as(ServiceId::Selftest, |ep| async move {
        session::<DalekChacha, Blake2s, _>(&ep, &node::<DalekChacha>(1), 1).await
    });
    assert_eq!(pong, Ok(b"cross".to_vec()));
    let mut dalek_daemon = HostSystem::boot::<DalekChacha>(Entropy::Host);
    let pong = dalek_daemon.run_as(ServiceId::Selftest, |ep| async move {
        session::<CompactChacha, Blake2s, _>(&ep, &node::<CompactChacha>(2), 1).await
    });
    assert_eq!(pong, Ok(b"cross".to_vec()));
}

#[test]
fn peers_on_different_aeads_or_hashes_fail_cleanly_and_the_daemon_goes_on() {
    let mut system = HostSystem::boot::<DalekChacha>(Entropy::Host);
    let (aes, sha, good) = system.run_as(ServiceId::Selftest, |ep| async move {
        let aes = session::<DalekAes, Blake2s, _>(&ep, &node::<DalekAes>(3), 1).await;
        let sha = session::<DalekChacha, Sha256, _>(&ep, &node::<DalekChacha>(4), 2).await;
        let good = session::<DalekChacha, Blake2s, _>(&ep, &node::<DalekChacha>(5), 3).await;
        (aes, sha, good)
    });
    let refused = Err(ConnectError::Refused(ClientError::Service(
        ServiceError::AuthenticationFailed,
    )));
    assert_eq!(aes, refused);
    assert_eq!(sha, refused);
    assert_eq!(good, Ok(b"cross".to_vec()));
}

#[test]
fn every_session_gets_fresh_ephemeral_keys_from_rngd() {
    let mut system = HostSystem::boot::<DalekChacha>(Entropy::Host);
    let keys = system.run_as(ServiceId::Selftest, |ep| async move {
        let node = node::<DalekChacha>(6);
        let discovered = discover(&ep).await.unwrap();
        let device = VerifyingKey::from_bytes(&keystored::get_pubkey(&ep).await.unwrap()).unwrap();
        trust(&ep, &node.device_key()).await.unwrap();
        let mut keys = Vec::new();
        for id in 0..20 {
            let session = connect::<DalekChacha, Blake2s, _>(
                &ep,
                &node,
                id,
                &X25519PublicKey(discovered.noise_static),
                core::slice::from_ref(&device),
                |_, _| {},
            )
            .await
            .unwrap();
            keys.push(session.responder_ephemeral);
            keys.push(session.initiator_ephemeral);
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
fn the_session_table_is_bounded_and_evicts_the_oldest() {
    let mut system = HostSystem::boot::<DalekChacha>(Entropy::Host);
    let (oldest, newest) = system.run_as(ServiceId::Selftest, |ep| async move {
        let node = node::<DalekChacha>(7);
        let discovered = discover(&ep).await.unwrap();
        let device = VerifyingKey::from_bytes(&keystored::get_pubkey(&ep).await.unwrap()).unwrap();
        trust(&ep, &node.device_key()).await.unwrap();
        let responder = X25519PublicKey(discovered.noise_static);
        let mut sessions = Vec::new();
        for id in 0..=MAX_SESSIONS as u32 {
            sessions.push(
                connect::<DalekChacha, Blake2s, _>(
                    &ep,
                    &node,
                    id,
                    &responder,
                    core::slice::from_ref(&device),
                    |_, _| {},
                )
                .await
                .unwrap(),
            );
        }
        let mut newest = sessions.pop().unwrap();
        let oldest = sessions[0].ping(&ep, b"old").await;
        (oldest.is_err(), newest.ping(&ep, b"new").await)
    });
    assert!(oldest, "the oldest session was evicted");
    assert_eq!(newest, Ok(b"new".to_vec()));
}
