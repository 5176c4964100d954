//! Interop with `snow`, an implementation nobody here wrote: every protocol name,
//! both curve backends, both roles, several transport messages each way; and, with
//! the same ephemeral keys on both sides, byte-identical messages and handshake hash.

use std::rc::Rc;

use noise_xk::{Initiator, Responder, Transport, protocol_name};
use provider_api::{HashBackend, KeyAgreementBackend, NoiseAead, SecretBytes, X25519SecretKey};

const PROLOGUE: &[u8] = b"dsoftbus/v1";

fn entropy(fill: u8) -> SecretBytes<32> {
    SecretBytes::new([fill; 32])
}

/// Both ends of a session exchange `rounds` messages each way.
fn exchange<A: NoiseAead>(
    ours: &mut Transport<A>,
    theirs: &mut snow::TransportState,
    ours_first: bool,
    rounds: u8,
) {
    let mut buffer = [0u8; 1024];
    let mut out = [0u8; 1024];
    for round in 0..rounds {
        let text = [b'm', round, ours_first as u8];
        let from_ours = ours.encrypt(&text).unwrap();
        let n = theirs.read_message(&from_ours, &mut out).unwrap();
        assert_eq!(&out[..n], &text, "snow read our message {round}");
        let reply = [b'r', round, 7, 7, 7];
        let n = theirs.write_message(&reply, &mut buffer).unwrap();
        assert_eq!(
            ours.decrypt(&buffer[..n]).unwrap(),
            reply,
            "we read snow's message {round}"
        );
    }
}

/// Ours as initiator, snow as responder.
fn ours_initiates<C: KeyAgreementBackend, A: NoiseAead, H: HashBackend>(fixed_ephemerals: bool) {
    let name = protocol_name::<A, H>();
    let params: snow::params::NoiseParams = name.parse().unwrap();
    let (our_static, their_static) = (entropy(0x11), entropy(0x22));
    let their_public = *X25519SecretKey::<C>::from_entropy(&their_static).public_key();
    let their_ephemeral = [0x44u8; 32];
    let mut builder = snow::Builder::new(params)
        .prologue(PROLOGUE)
        .unwrap()
        .local_private_key(their_static.expose_secret())
        .unwrap();
    if fixed_ephemerals {
        builder = builder.fixed_ephemeral_key_for_testing_only(&their_ephemeral);
    }
    let mut snow_side = builder.build_responder().unwrap();
    let mut buffer = [0u8; 1024];
    let mut payload = [0u8; 1024];

    let initiator = Initiator::<C, A, H>::new(
        PROLOGUE,
        Rc::new(X25519SecretKey::from_entropy(&our_static)),
        their_public,
    );
    let (initiator, message_1) = initiator.write_message_1(&entropy(0x33), b"one").unwrap();
    let n = snow_side.read_message(&message_1, &mut payload).unwrap();
    assert_eq!(&payload[..n], b"one", "{name}");
    let n = snow_side.write_message(b"two", &mut buffer).unwrap();
    let (initiator, got) = initiator.read_message_2(&buffer[..n]).unwrap();
    assert_eq!(got, b"two", "{name}");
    let (mut transport, message_3) = initiator.write_message_3(b"three").unwrap();
    let n = snow_side.read_message(&message_3, &mut payload).unwrap();
    assert_eq!(&payload[..n], b"three", "{name}");
    let our_public = *X25519SecretKey::<C>::from_entropy(&our_static).public_key();
    assert_eq!(
        snow_side.get_remote_static(),
        Some(&our_public.0[..]),
        "{name}: snow saw our static key"
    );
    assert_eq!(
        snow_side.get_handshake_hash(),
        transport.handshake_hash(),
        "{name}: handshake hashes"
    );
    let mut snow_side = snow_side.into_transport_mode().unwrap();
    exchange(&mut transport, &mut snow_side, true, 5);
}

/// snow as initiator, ours as responder.
fn snow_initiates<C: KeyAgreementBackend, A: NoiseAead, H: HashBackend>(fixed_ephemerals: bool) {
    let name = protocol_name::<A, H>();
    let params: snow::params::NoiseParams = name.parse().unwrap();
    let (our_static, their_static) = (entropy(0x55), entropy(0x66));
    let our_key = X25519SecretKey::<C>::from_entropy(&our_static);
    let our_public = *our_key.public_key();
    let mut builder = snow::Builder::new(params)
        .prologue(PROLOGUE)
        .unwrap()
        .local_private_key(their_static.expose_secret())
        .unwrap()
        .remote_public_key(our_public.as_bytes())
        .unwrap();
    let their_ephemeral = [0x77u8; 32];
    if fixed_ephemerals {
        builder = builder.fixed_ephemeral_key_for_testing_only(&their_ephemeral);
    }
    let mut snow_side = builder.build_initiator().unwrap();
    let mut buffer = [0u8; 1024];

    let n = snow_side.write_message(b"hello", &mut buffer).unwrap();
    let (responder, got) = Responder::<C, A, H>::new(PROLOGUE, Rc::new(our_key))
        .read_message_1(&buffer[..n])
        .unwrap();
    assert_eq!(got, b"hello", "{name}");
    let (responder, message_2) = responder.write_message_2(&entropy(0x88), b"").unwrap();
    let mut payload = [0u8; 1024];
    let n = snow_side.read_message(&message_2, &mut payload).unwrap();
    assert_eq!(n, 0);
    let n = snow_side.write_message(b"identity", &mut buffer).unwrap();
    let (mut transport, their_public, got) = responder.read_message_3(&buffer[..n]).unwrap();
    assert_eq!(got, b"identity", "{name}");
    assert_eq!(
        their_public,
        *X25519SecretKey::<C>::from_entropy(&their_static).public_key()
    );
    assert_eq!(
        snow_side.get_handshake_hash(),
        transport.handshake_hash(),
        "{name}: handshake hashes"
    );
    let mut snow_side = snow_side.into_transport_mode().unwrap();
    exchange(&mut transport, &mut snow_side, false, 5);
}

/// With the same ephemeral keys, our messages are byte-for-byte snow's.
fn identical_messages<C: KeyAgreementBackend, A: NoiseAead, H: HashBackend>() {
    let name = protocol_name::<A, H>();
    let params: snow::params::NoiseParams = name.parse().unwrap();
    let (initiator_static, responder_static) = (entropy(0x01), entropy(0x02));
    let (initiator_ephemeral, responder_ephemeral) = (entropy(0x03), entropy(0x04));
    let responder_public = *X25519SecretKey::<C>::from_entropy(&responder_static).public_key();
    let mut snow_initiator = snow::Builder::new(params.clone())
        .prologue(PROLOGUE)
        .unwrap()
        .local_private_key(initiator_static.expose_secret())
        .unwrap()
        .remote_public_key(responder_public.as_bytes())
        .unwrap()
        .fixed_ephemeral_key_for_testing_only(initiator_ephemeral.expose_secret())
        .build_initiator()
        .unwrap();
    let mut snow_responder = snow::Builder::new(params)
        .prologue(PROLOGUE)
        .unwrap()
        .local_private_key(responder_static.expose_secret())
        .unwrap()
        .fixed_ephemeral_key_for_testing_only(responder_ephemeral.expose_secret())
        .build_responder()
        .unwrap();
    let (mut b1, mut b2, mut scratch) = ([0u8; 256], [0u8; 256], [0u8; 256]);

    let ours = Initiator::<C, A, H>::new(
        PROLOGUE,
        Rc::new(X25519SecretKey::from_entropy(&initiator_static)),
        responder_public,
    );
    let (ours, m1) = ours.write_message_1(&initiator_ephemeral, b"p1").unwrap();
    let n = snow_initiator.write_message(b"p1", &mut b1).unwrap();
    assert_eq!(m1, &b1[..n], "{name}: message 1");
    snow_responder.read_message(&m1, &mut scratch).unwrap();
    let theirs = Responder::<C, A, H>::new(
        PROLOGUE,
        Rc::new(X25519SecretKey::from_entropy(&responder_static)),
    );
    let (theirs, _) = theirs.read_message_1(&m1).unwrap();
    let (theirs, m2) = theirs.write_message_2(&responder_ephemeral, b"p2").unwrap();
    let n = snow_responder.write_message(b"p2", &mut b2).unwrap();
    assert_eq!(m2, &b2[..n], "{name}: message 2");
    snow_initiator.read_message(&m2, &mut scratch).unwrap();
    let (ours, _) = ours.read_message_2(&m2).unwrap();
    let (ours, m3) = ours.write_message_3(b"p3").unwrap();
    let n = snow_initiator.write_message(b"p3", &mut b1).unwrap();
    assert_eq!(m3, &b1[..n], "{name}: message 3");
    let (theirs, _, _) = theirs.read_message_3(&m3).unwrap();
    assert_eq!(ours.handshake_hash(), theirs.handshake_hash());
    assert_eq!(ours.handshake_hash(), snow_initiator.get_handshake_hash());
}

macro_rules! interop {
    ($name:ident, $curve:ty, $aead:ty, $hash:ty) => {
        mod $name {
            use super::*;
            #[test]
            fn ours_initiator_snow_responder() {
                ours_initiates::<$curve, $aead, $hash>(false);
                ours_initiates::<$curve, $aead, $hash>(true);
            }
            #[test]
            fn snow_initiator_ours_responder() {
                snow_initiates::<$curve, $aead, $hash>(false);
                snow_initiates::<$curve, $aead, $hash>(true);
            }
            #[test]
            fn messages_are_byte_identical_to_snows() {
                identical_messages::<$curve, $aead, $hash>();
            }
        }
    };
}

/// Every suite provider-select's table can build: each X25519 backend with each AEAD
/// and each hash (`<kx>::<aead>::<hash>`), so a backend added to the table meets snow
/// here with no line in this file.
macro_rules! every_suite {
    (
        $sig_axis:literal $sig_alias:ident $sigs:tt;
        $kx_axis:literal $kx_alias:ident [$($kx:ident $kx_feature:literal => $kx_ty:ty),+ $(,)?];
        $aead_axis:literal $aead_alias:ident $aeads:tt;
        $hash_axis:literal $hash_alias:ident $hashes:tt;
    ) => {
        $(mod $kx {
            use super::*;
            every_suite!(@aead $kx_ty, $aeads, $hashes);
        })+
    };
    (@aead $kx_ty:ty, [$($aead:ident $aead_feature:literal => $aead_ty:ty),+ $(,)?], $hashes:tt) => {
        $(mod $aead {
            use super::*;
            every_suite!(@hash $kx_ty, $aead_ty, $hashes);
        })+
    };
    (@hash $kx_ty:ty, $aead_ty:ty, [$($hash:ident $hash_feature:literal => $hash_ty:ty),+ $(,)?]) => {
        $(interop!($hash, $kx_ty, $aead_ty, $hash_ty);)+
    };
}

provider_select::backend_table!(every_suite);

use provider_select::backends::provider_aes_gcm::Aes256Gcm;
use provider_select::backends::provider_chacha::ChaCha20Poly1305;
use provider_select::backends::provider_hash::{Blake2s, Sha256};

#[test]
fn protocol_names_follow_the_backends() {
    assert_eq!(
        protocol_name::<ChaCha20Poly1305, Blake2s>(),
        "Noise_XK_25519_ChaChaPoly_BLAKE2s"
    );
    assert_eq!(
        protocol_name::<Aes256Gcm, Blake2s>(),
        "Noise_XK_25519_AESGCM_BLAKE2s"
    );
    assert_eq!(
        protocol_name::<Aes256Gcm, Sha256>(),
        "Noise_XK_25519_AESGCM_SHA256"
    );
}
