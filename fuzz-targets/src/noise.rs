//! The Noise XK handshake in each state of both roles, and transport decryption.
//! Keys are fixed, so a state is the same on every run and the fuzzer's input is the
//! only thing that varies.

use std::rc::Rc;

use noise_xk::{
    Initiator, InitiatorAwaitingResponse, Responder, ResponderAwaitingFinish, Transport,
};
use provider_api::{SecretBytes, X25519SecretKey};
use provider_chacha::ChaCha20Poly1305;
use provider_dalek::Dalek;
use provider_hash::Blake2s;

const PROLOGUE: &[u8] = dsoftbusd::PROLOGUE;

fn key(fill: u8) -> SecretBytes<32> {
    SecretBytes::new([fill; 32])
}

fn statics() -> (Rc<X25519SecretKey<Dalek>>, Rc<X25519SecretKey<Dalek>>) {
    (
        Rc::new(X25519SecretKey::from_entropy(&key(0x12))),
        Rc::new(X25519SecretKey::from_entropy(&key(0x22))),
    )
}

type Awaiting2 = InitiatorAwaitingResponse<Dalek, ChaCha20Poly1305, Blake2s>;
type Awaiting3 = ResponderAwaitingFinish<Dalek, ChaCha20Poly1305, Blake2s>;

/// Both parties after message 1 and, for the responder, message 2.
fn after_message_2() -> (Awaiting2, Awaiting3, Vec<u8>) {
    let (initiator_static, responder_static) = statics();
    let initiator = Initiator::<Dalek, ChaCha20Poly1305, Blake2s>::new(
        PROLOGUE,
        initiator_static,
        *responder_static.public_key(),
    );
    let (awaiting, message_1) = initiator
        .write_message_1(&key(0x13), &[])
        .expect("message 1");
    let responder = Responder::<Dalek, ChaCha20Poly1305, Blake2s>::new(PROLOGUE, responder_static);
    let (ready, _) = responder
        .read_message_1(&message_1)
        .expect("message 1 reads");
    let (finishing, message_2) = ready
        .write_message_2(&key(0x23), b"binding")
        .expect("message 2");
    (awaiting, finishing, message_2)
}

/// The responder reads any first message: refused, or accepted with a payload.
pub fn responder_message_1(data: &[u8]) {
    let (_, responder_static) = statics();
    let responder = Responder::<Dalek, ChaCha20Poly1305, Blake2s>::new(PROLOGUE, responder_static);
    let _ = responder.read_message_1(data);
}

/// The initiator reads any second message.
pub fn initiator_message_2(data: &[u8]) {
    let (awaiting, _, genuine) = after_message_2();
    if let Ok((_, payload)) = awaiting.read_message_2(data) {
        // Only the genuine message authenticates under these keys.
        assert_eq!(data, genuine);
        assert_eq!(payload, b"binding");
    }
}

/// The responder reads any third message.
pub fn responder_message_3(data: &[u8]) {
    let (_, finishing, _) = after_message_2();
    let _ = finishing.read_message_3(data);
}

fn established() -> (Transport<ChaCha20Poly1305>, Transport<ChaCha20Poly1305>) {
    let (awaiting, finishing, message_2) = after_message_2();
    let (ready, _) = awaiting
        .read_message_2(&message_2)
        .expect("message 2 reads");
    let (initiator, message_3) = ready.write_message_3(b"mine").expect("message 3");
    let (responder, _, _) = finishing
        .read_message_3(&message_3)
        .expect("message 3 reads");
    (initiator, responder)
}

/// Transport decryption on both sides: any message that fails to decrypt leaves the
/// receiver able to decrypt the next genuine one.
pub fn transport(data: &[u8]) {
    let (mut initiator, mut responder) = established();
    let to_responder = initiator.encrypt(b"ping").expect("encrypt");
    let to_initiator = responder.encrypt(b"pong").expect("encrypt");
    if responder.decrypt(data).is_err() {
        assert_eq!(
            responder.decrypt(&to_responder).expect("still decrypts"),
            b"ping"
        );
    }
    if initiator.decrypt(data).is_err() {
        assert_eq!(
            initiator.decrypt(&to_initiator).expect("still decrypts"),
            b"pong"
        );
    }
}

/// Genuine inputs for the Noise targets under their fixed keys, so the fuzzer starts
/// from messages that pass the cryptography and mutates from there (random bytes
/// almost never authenticate, which leaves the paths after it unexplored).
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let (initiator_static, responder_static) = statics();
    let initiator = Initiator::<Dalek, ChaCha20Poly1305, Blake2s>::new(
        PROLOGUE,
        initiator_static,
        *responder_static.public_key(),
    );
    let (_, message_1) = initiator
        .write_message_1(&key(0x13), &[])
        .expect("message 1");
    let (awaiting, finishing, message_2) = after_message_2();
    let (ready, _) = awaiting
        .read_message_2(&message_2)
        .expect("message 2 reads");
    let (mut initiator, message_3) = ready.write_message_3(b"mine").expect("message 3");
    let (_, _, _) = finishing
        .read_message_3(&message_3)
        .expect("message 3 reads");
    match target {
        "noise_responder_message_1" => vec![message_1],
        "noise_initiator_message_2" => vec![message_2],
        "noise_responder_message_3" => vec![message_3],
        "noise_transport" => vec![initiator.encrypt(b"ping").expect("encrypt")],
        _ => Vec::new(),
    }
}
