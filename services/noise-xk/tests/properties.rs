//! What the handshake and transport must refuse, for every suite.

use std::rc::Rc;

use noise_xk::{Initiator, MAX_MESSAGE_LEN, NoiseError, Responder, Transport};
use provider_api::{
    HashBackend, KeyAgreementBackend, NoiseAead, SecretBytes, X25519PublicKey, X25519SecretKey,
};

const PROLOGUE: &[u8] = b"dsoftbus/v1";

fn entropy(fill: u8) -> SecretBytes<32> {
    SecretBytes::new([fill; 32])
}

/// The two fixed parties every test session starts from.
fn parties<C: KeyAgreementBackend, A: NoiseAead, H: HashBackend>()
-> (Initiator<C, A, H>, Responder<C, A, H>) {
    let responder_key = X25519SecretKey::<C>::from_entropy(&entropy(2));
    let rs = *responder_key.public_key();
    let initiator = Initiator::new(
        PROLOGUE,
        Rc::new(X25519SecretKey::from_entropy(&entropy(1))),
        rs,
    );
    (initiator, Responder::new(PROLOGUE, Rc::new(responder_key)))
}

/// The three handshake messages of a good session, and both transports.
fn handshake<C: KeyAgreementBackend, A: NoiseAead, H: HashBackend>()
-> ([Vec<u8>; 3], Transport<A>, Transport<A>) {
    let (initiator, responder) = parties::<C, A, H>();
    let (i, m1) = initiator.write_message_1(&entropy(3), b"m1").unwrap();
    let (r, _) = responder.read_message_1(&m1).unwrap();
    let (r, m2) = r.write_message_2(&entropy(4), b"m2").unwrap();
    let (i, _) = i.read_message_2(&m2).unwrap();
    let (initiator, m3) = i.write_message_3(b"m3").unwrap();
    let (responder, _, _) = r.read_message_3(&m3).unwrap();
    ([m1, m2, m3], initiator, responder)
}

/// Replays a session up to message `index`, which is replaced by `message`, and
/// returns how the receiver of that message took it.
fn deliver<C: KeyAgreementBackend, A: NoiseAead, H: HashBackend>(
    index: usize,
    message: &[u8],
) -> Result<(), NoiseError> {
    let (initiator, responder) = parties::<C, A, H>();
    let (i, m1) = initiator.write_message_1(&entropy(3), b"m1").unwrap();
    if index == 0 {
        return responder.read_message_1(message).map(|_| ());
    }
    let (r, _) = responder.read_message_1(&m1).unwrap();
    let (r, m2) = r.write_message_2(&entropy(4), b"m2").unwrap();
    if index == 1 {
        return i.read_message_2(message).map(|_| ());
    }
    let (i, _) = i.read_message_2(&m2).unwrap();
    let _ = i.write_message_3(b"m3").unwrap();
    r.read_message_3(message).map(|_| ())
}

fn flipped_bits_are_rejected<C: KeyAgreementBackend, A: NoiseAead, H: HashBackend>(step: usize) {
    let (messages, _, _) = handshake::<C, A, H>();
    for (index, message) in messages.iter().enumerate() {
        assert_eq!(
            deliver::<C, A, H>(index, message),
            Ok(()),
            "the genuine message {index} is accepted"
        );
        for bit in (0..message.len() * 8).step_by(step) {
            let mut flipped = message.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let outcome = deliver::<C, A, H>(index, &flipped);
            assert!(
                matches!(
                    outcome,
                    Err(NoiseError::Authentication | NoiseError::LowOrderKey)
                ),
                "message {index} with bit {bit} flipped: {outcome:?}"
            );
        }
    }
}

fn truncated_and_oversized_are_rejected<C: KeyAgreementBackend, A: NoiseAead, H: HashBackend>() {
    let (messages, _, _) = handshake::<C, A, H>();
    for (index, message) in messages.iter().enumerate() {
        for len in [0, 1, 31, 32, 47, message.len() - 1] {
            let outcome = deliver::<C, A, H>(index, &message[..len]);
            assert!(
                matches!(
                    outcome,
                    Err(NoiseError::TooShort { .. } | NoiseError::Authentication)
                ),
                "message {index} cut to {len}: {outcome:?}"
            );
        }
        let mut oversized = message.clone();
        oversized.resize(MAX_MESSAGE_LEN + 1, 0);
        assert_eq!(
            deliver::<C, A, H>(index, &oversized),
            Err(NoiseError::TooLong {
                len: MAX_MESSAGE_LEN + 1
            })
        );
    }
}

fn wrong_keys_and_prologues_fail<C: KeyAgreementBackend, A: NoiseAead, H: HashBackend>() {
    let responder_key = || X25519SecretKey::<C>::from_entropy(&entropy(2));
    let wrong = *X25519SecretKey::<C>::from_entropy(&entropy(9)).public_key();
    let (_, m1) = Initiator::<C, A, H>::new(
        PROLOGUE,
        Rc::new(X25519SecretKey::from_entropy(&entropy(1))),
        wrong,
    )
    .write_message_1(&entropy(3), b"")
    .unwrap();
    let outcome = Responder::<C, A, H>::new(PROLOGUE, Rc::new(responder_key())).read_message_1(&m1);
    assert!(
        matches!(outcome, Err(NoiseError::Authentication)),
        "a wrong responder static key"
    );

    let rs = *responder_key().public_key();
    let (_, m1) = Initiator::<C, A, H>::new(
        b"other prologue",
        Rc::new(X25519SecretKey::from_entropy(&entropy(1))),
        rs,
    )
    .write_message_1(&entropy(3), b"")
    .unwrap();
    let outcome = Responder::<C, A, H>::new(PROLOGUE, Rc::new(responder_key())).read_message_1(&m1);
    assert!(
        matches!(outcome, Err(NoiseError::Authentication)),
        "the prologue is in the handshake hash"
    );

    let low_order = X25519PublicKey([0; 32]);
    let outcome = Initiator::<C, A, H>::new(
        PROLOGUE,
        Rc::new(X25519SecretKey::from_entropy(&entropy(1))),
        low_order,
    )
    .write_message_1(&entropy(3), b"");
    assert!(matches!(outcome, Err(NoiseError::LowOrderKey)));
    let mut m1_low = vec![0u8; 48];
    m1_low[0] = 1; // u = 1, a low-order point
    let outcome =
        Responder::<C, A, H>::new(PROLOGUE, Rc::new(responder_key())).read_message_1(&m1_low);
    assert!(matches!(outcome, Err(NoiseError::LowOrderKey)));
}

fn transport_refuses_replays_and_keeps_going<
    C: KeyAgreementBackend,
    A: NoiseAead,
    H: HashBackend,
>() {
    let (_, mut initiator, mut responder) = handshake::<C, A, H>();
    let first = initiator.encrypt(b"ping 1").unwrap();
    let second = initiator.encrypt(b"ping 2").unwrap();
    assert_eq!(
        responder.decrypt(&second),
        Err(NoiseError::Authentication),
        "out of order"
    );
    assert_eq!(responder.decrypt(&first).unwrap(), b"ping 1");
    assert_eq!(
        responder.decrypt(&first),
        Err(NoiseError::Authentication),
        "replayed"
    );
    assert_eq!(
        responder.decrypt(&second).unwrap(),
        b"ping 2",
        "the session goes on"
    );
    let pong = responder.encrypt(b"pong").unwrap();
    assert_eq!(initiator.decrypt(&pong).unwrap(), b"pong");
    // The same holds on the initiator's side: a tampered answer leaves it as it was.
    let genuine = responder.encrypt(b"pong 2").unwrap();
    let mut tampered = genuine.clone();
    tampered[0] ^= 1;
    assert_eq!(
        initiator.decrypt(&tampered),
        Err(NoiseError::Authentication)
    );
    assert_eq!(
        initiator.decrypt(&genuine).unwrap(),
        b"pong 2",
        "the initiator's session is unchanged"
    );
    assert_eq!(
        initiator.decrypt(&pong[..10]),
        Err(NoiseError::TooShort { need: 16, got: 10 })
    );
    assert!(matches!(
        initiator.encrypt(&vec![0; MAX_MESSAGE_LEN]),
        Err(NoiseError::TooLong { .. })
    ));
    assert_eq!(initiator.handshake_hash(), responder.handshake_hash());
}

fn fresh_entropy_gives_fresh_ephemerals<C: KeyAgreementBackend, A: NoiseAead, H: HashBackend>() {
    let rs = *X25519SecretKey::<C>::from_entropy(&entropy(2)).public_key();
    let first_e = |fill| {
        let (_, m1) = Initiator::<C, A, H>::new(
            PROLOGUE,
            Rc::new(X25519SecretKey::from_entropy(&entropy(1))),
            rs,
        )
        .write_message_1(&entropy(fill), b"")
        .unwrap();
        m1[..32].to_vec()
    };
    assert_ne!(first_e(5), first_e(6));
}

macro_rules! suite {
    ($name:ident, $curve:ty, $aead:ty, $hash:ty, $step:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn a_flipped_bit_in_any_handshake_message_is_rejected() {
                flipped_bits_are_rejected::<$curve, $aead, $hash>($step);
            }
            #[test]
            fn truncated_and_oversized_messages_are_rejected() {
                truncated_and_oversized_are_rejected::<$curve, $aead, $hash>();
            }
            #[test]
            fn wrong_keys_prologues_and_low_order_points_fail() {
                wrong_keys_and_prologues_fail::<$curve, $aead, $hash>();
            }
            #[test]
            fn the_transport_refuses_replays_and_keeps_going() {
                transport_refuses_replays_and_keeps_going::<$curve, $aead, $hash>();
            }
            #[test]
            fn fresh_entropy_gives_fresh_ephemeral_keys() {
                fresh_entropy_gives_fresh_ephemerals::<$curve, $aead, $hash>();
            }
        }
    };
}

use provider_select::backends::provider_aes_gcm::Aes256Gcm;
use provider_select::backends::provider_chacha::ChaCha20Poly1305;
use provider_select::backends::provider_compact::Compact;
use provider_select::backends::provider_dalek::Dalek;
use provider_select::backends::provider_hash::{Blake2s, Sha256};

// Every bit for one suite; every 5th bit for the others.
suite!(
    dalek_chachapoly_blake2s,
    Dalek,
    ChaCha20Poly1305,
    Blake2s,
    1
);
suite!(dalek_aesgcm_blake2s, Dalek, Aes256Gcm, Blake2s, 5);
suite!(
    compact_chachapoly_blake2s,
    Compact,
    ChaCha20Poly1305,
    Blake2s,
    5
);
suite!(compact_aesgcm_sha256, Compact, Aes256Gcm, Sha256, 5);

#[test]
fn a_dalek_node_and_a_compact_node_complete_a_session() {
    let responder_key = X25519SecretKey::<Compact>::from_entropy(&entropy(2));
    let rs = *responder_key.public_key();
    let (i, m1) = Initiator::<Dalek, ChaCha20Poly1305, Blake2s>::new(
        PROLOGUE,
        Rc::new(X25519SecretKey::from_entropy(&entropy(1))),
        rs,
    )
    .write_message_1(&entropy(3), b"")
    .unwrap();
    let (r, _) =
        Responder::<Compact, ChaCha20Poly1305, Blake2s>::new(PROLOGUE, Rc::new(responder_key))
            .read_message_1(&m1)
            .unwrap();
    let (r, m2) = r.write_message_2(&entropy(4), b"").unwrap();
    let (i, _) = i.read_message_2(&m2).unwrap();
    let (mut dalek, m3) = i.write_message_3(b"").unwrap();
    let (mut compact, _, _) = r.read_message_3(&m3).unwrap();
    assert_eq!(
        compact.decrypt(&dalek.encrypt(b"ping").unwrap()).unwrap(),
        b"ping"
    );
    assert_eq!(
        dalek.decrypt(&compact.encrypt(b"pong").unwrap()).unwrap(),
        b"pong"
    );
}

#[test]
fn peers_on_different_aeads_or_hashes_fail_cleanly() {
    let responder_key = || X25519SecretKey::<Dalek>::from_entropy(&entropy(2));
    let rs = *responder_key().public_key();
    let (_, m1) = Initiator::<Dalek, ChaCha20Poly1305, Blake2s>::new(
        PROLOGUE,
        Rc::new(X25519SecretKey::from_entropy(&entropy(1))),
        rs,
    )
    .write_message_1(&entropy(3), b"")
    .unwrap();
    let aes = Responder::<Dalek, Aes256Gcm, Blake2s>::new(PROLOGUE, Rc::new(responder_key()))
        .read_message_1(&m1);
    assert!(matches!(aes, Err(NoiseError::Authentication)));
    let sha = Responder::<Dalek, ChaCha20Poly1305, Sha256>::new(PROLOGUE, Rc::new(responder_key()))
        .read_message_1(&m1);
    assert!(matches!(sha, Err(NoiseError::Authentication)));
}
