//! `docs/protocol.md` section 9, rebuilt with the OS's own code (noise-xk, the binding,
//! the wire module) from the keys it lists: every frame must be byte for byte the
//! document's. (`tools/dsoftbus-peer/tests/protocol_vector.rs` does the same with snow
//! and ed25519-dalek.)

use std::rc::Rc;

use dsoftbusd::binding::Binding;
use dsoftbusd::wire::{AppMessage, Hello, HelloReply, HelloStatus, frame};
use noise_xk::{Initiator, Responder};
use provider_api::{SecretBytes, Seed, SigningKey, X25519SecretKey};
use provider_chacha::ChaCha20Poly1305;
use provider_dalek::Dalek;
use provider_hash::Blake2s;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The vector as this code computes it, in the document's layout.
fn computed() -> String {
    let suite = noise_xk::protocol_name::<ChaCha20Poly1305, Blake2s>();
    let key = |fill: u8| SecretBytes::new([fill; 32]);
    let initiator_device = SigningKey::<Dalek>::from_seed(&Seed::new([0x11; 32])).unwrap();
    let responder_device = SigningKey::<Dalek>::from_seed(&Seed::new([0x21; 32])).unwrap();
    let initiator_static = Rc::new(X25519SecretKey::<Dalek>::from_entropy(&key(0x12)));
    let responder_static = Rc::new(X25519SecretKey::<Dalek>::from_entropy(&key(0x22)));
    let responder_binding = Binding::sign(&responder_device, responder_static.public_key());
    let initiator_binding = Binding::sign(&initiator_device, initiator_static.public_key());

    let mut lines = vec![
        format!("suite                       {suite}"),
        format!("initiator device seed       {}", hex(&[0x11; 32])),
        format!(
            "initiator device key        {}",
            hex(&initiator_device.verifying_key().to_bytes())
        ),
        format!("initiator static private    {}", hex(&[0x12; 32])),
        format!("initiator ephemeral private {}", hex(&[0x13; 32])),
        format!("responder device seed       {}", hex(&[0x21; 32])),
        format!(
            "responder device key        {}",
            hex(&responder_device.verifying_key().to_bytes())
        ),
        format!("responder static private    {}", hex(&[0x22; 32])),
        format!("responder ephemeral private {}", hex(&[0x23; 32])),
    ];
    let mut line = |what: &str, body: &[u8]| lines.push(format!("{what:<14}{}", hex(&frame(body))));

    line(
        "-> hello",
        &Hello {
            suite: suite.clone(),
        }
        .encode(),
    );
    let reply = HelloReply {
        status: HelloStatus::Ok,
        suite,
        static_key: Some(*responder_static.public_key().as_bytes()),
    };
    line("<- hello", &reply.encode());
    let initiator = Initiator::<Dalek, ChaCha20Poly1305, Blake2s>::new(
        dsoftbusd::PROLOGUE,
        Rc::clone(&initiator_static),
        *responder_static.public_key(),
    );
    let (awaiting, message_1) = initiator.write_message_1(&key(0x13), &[]).unwrap();
    line("-> message 1", &message_1);
    let responder =
        Responder::<Dalek, ChaCha20Poly1305, Blake2s>::new(dsoftbusd::PROLOGUE, responder_static);
    let (ready, payload) = responder.read_message_1(&message_1).unwrap();
    assert!(payload.is_empty());
    let (finishing, message_2) = ready
        .write_message_2(&key(0x23), &responder_binding.encode())
        .unwrap();
    line("<- message 2", &message_2);
    let (ready, payload) = awaiting.read_message_2(&message_2).unwrap();
    assert_eq!(payload, responder_binding.encode());
    let (mut initiator_transport, message_3) =
        ready.write_message_3(&initiator_binding.encode()).unwrap();
    line("-> message 3", &message_3);
    let (mut responder_transport, _, payload) = finishing.read_message_3(&message_3).unwrap();
    assert_eq!(payload, initiator_binding.encode());
    let ready = responder_transport
        .encrypt(&AppMessage::Ready.encode())
        .unwrap();
    line("<- READY", &ready);
    let ping = initiator_transport
        .encrypt(&AppMessage::Ping(b"hello").encode())
        .unwrap();
    line("-> PINGhello", &ping);
    let pong = responder_transport
        .encrypt(&AppMessage::Pong(b"hello").encode())
        .unwrap();
    line("<- PONGhello", &pong);
    let bye = initiator_transport
        .encrypt(&AppMessage::Bye.encode())
        .unwrap();
    line("-> BYE", &bye);
    lines.push(format!(
        "handshake hash {}",
        hex(initiator_transport.handshake_hash())
    ));
    lines.join("\n")
}

/// The block between `VECTOR-BEGIN` and `VECTOR-END` in `docs/protocol.md`.
fn documented() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/protocol.md");
    let text = std::fs::read_to_string(path).expect("docs/protocol.md");
    let start = text.find("VECTOR-BEGIN").expect("a VECTOR-BEGIN line");
    let end = text.find("VECTOR-END").expect("a VECTOR-END line");
    text[start..end]
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with("```") && !l.starts_with("<!--") && !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_documented_session_is_what_the_os_sends_byte_for_byte() {
    let computed = computed();
    assert_eq!(
        documented(),
        computed,
        "docs/protocol.md section 9 differs from the OS's frames; the computed block is:\n{computed}"
    );
}
