//! `docs/protocol.md` section 9, rebuilt the way the document tells a stranger to:
//! snow for Noise (with the document's ephemeral keys fixed), ed25519-dalek for the
//! bindings, the framing and the hellos by hand. Nothing of the OS's code is used; the
//! frames must be the document's, byte for byte.

use ed25519_dalek::{Signer, SigningKey};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// The document's block: `name -> value` lines, in order.
fn documented() -> Vec<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/protocol.md");
    let text = std::fs::read_to_string(path).expect("docs/protocol.md");
    let start = text.find("VECTOR-BEGIN").expect("a VECTOR-BEGIN line");
    let end = text.find("VECTOR-END").expect("a VECTOR-END line");
    text[start..end]
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with("```") && !l.starts_with("<!--") && !l.trim().is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').expect("name and value");
            (name.trim().to_owned(), value.to_owned())
        })
        .collect()
}

fn frame(body: &[u8]) -> Vec<u8> {
    [&(body.len() as u16).to_be_bytes()[..], body].concat()
}

const PROLOGUE: &[u8] = b"dsoftbus/v1";
const PREFIX: &[u8] = b"dsoftbus/v1 noise static key binding\0";

fn binding(device: &SigningKey, noise_static: &[u8]) -> Vec<u8> {
    let signature = device.sign(&[PREFIX, noise_static].concat());
    [
        device.verifying_key().as_bytes().as_slice(),
        &signature.to_bytes(),
    ]
    .concat()
}

fn x25519_public(private: &[u8]) -> Vec<u8> {
    // snow's own key generation path: the public key of a fixed private key.
    let params: snow::params::NoiseParams = "Noise_XK_25519_ChaChaPoly_BLAKE2s".parse().unwrap();
    let mut hs = snow::Builder::new(params)
        .local_private_key(private)
        .unwrap()
        .fixed_ephemeral_key_for_testing_only(private)
        .remote_public_key(&[9; 32])
        .unwrap()
        .build_initiator()
        .unwrap();
    let mut message = [0u8; 96];
    hs.write_message(&[], &mut message).unwrap();
    message[..32].to_vec()
}

#[test]
fn the_documented_session_is_what_snow_and_ed25519_dalek_send_byte_for_byte() {
    let doc = documented();
    let value = |name: &str| -> String {
        doc.iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no `{name}` in the vector"))
            .1
            .clone()
    };
    let suite = value("suite");
    let seed = |name| -> [u8; 32] { unhex(&value(name)).try_into().unwrap() };
    let initiator_device = SigningKey::from_bytes(&seed("initiator device seed"));
    let responder_device = SigningKey::from_bytes(&seed("responder device seed"));
    assert_eq!(
        hex(initiator_device.verifying_key().as_bytes()),
        value("initiator device key")
    );
    assert_eq!(
        hex(responder_device.verifying_key().as_bytes()),
        value("responder device key")
    );
    let (initiator_static, responder_static) = (
        unhex(&value("initiator static private")),
        unhex(&value("responder static private")),
    );
    let responder_public = x25519_public(&responder_static);
    let initiator_public = x25519_public(&initiator_static);
    let params: snow::params::NoiseParams = suite.parse().unwrap();
    let initiator_ephemeral = unhex(&value("initiator ephemeral private"));
    let responder_ephemeral = unhex(&value("responder ephemeral private"));
    let mut initiator = snow::Builder::new(params.clone())
        .local_private_key(&initiator_static)
        .unwrap()
        .fixed_ephemeral_key_for_testing_only(&initiator_ephemeral)
        .remote_public_key(&responder_public)
        .unwrap()
        .prologue(PROLOGUE)
        .unwrap()
        .build_initiator()
        .unwrap();
    let mut responder = snow::Builder::new(params)
        .local_private_key(&responder_static)
        .unwrap()
        .fixed_ephemeral_key_for_testing_only(&responder_ephemeral)
        .prologue(PROLOGUE)
        .unwrap()
        .build_responder()
        .unwrap();

    let mut frames: Vec<(&str, Vec<u8>)> = Vec::new();
    let hello = [b"DSB1".as_slice(), &[suite.len() as u8], suite.as_bytes()].concat();
    frames.push(("-> hello", frame(&hello)));
    let reply = [
        b"DSB1".as_slice(),
        &[0, suite.len() as u8],
        suite.as_bytes(),
        &responder_public,
    ]
    .concat();
    frames.push(("<- hello", frame(&reply)));
    let mut buffer = [0u8; 1024];
    let mut payload = [0u8; 1024];
    let len = initiator.write_message(&[], &mut buffer).unwrap();
    let message_1 = buffer[..len].to_vec();
    frames.push(("-> message 1", frame(&message_1)));
    assert_eq!(responder.read_message(&message_1, &mut payload).unwrap(), 0);
    let responder_binding = binding(&responder_device, &responder_public);
    let len = responder
        .write_message(&responder_binding, &mut buffer)
        .unwrap();
    let message_2 = buffer[..len].to_vec();
    frames.push(("<- message 2", frame(&message_2)));
    let len = initiator.read_message(&message_2, &mut payload).unwrap();
    assert_eq!(payload[..len], responder_binding[..]);
    let initiator_binding = binding(&initiator_device, &initiator_public);
    let len = initiator
        .write_message(&initiator_binding, &mut buffer)
        .unwrap();
    let message_3 = buffer[..len].to_vec();
    frames.push(("-> message 3", frame(&message_3)));
    let len = responder.read_message(&message_3, &mut payload).unwrap();
    assert_eq!(payload[..len], initiator_binding[..]);
    let hash = initiator.get_handshake_hash().to_vec();
    let mut initiator = initiator.into_transport_mode().unwrap();
    let mut responder = responder.into_transport_mode().unwrap();
    let mut seal = |from_responder: bool, plaintext: &[u8]| {
        let state = if from_responder {
            &mut responder
        } else {
            &mut initiator
        };
        let len = state.write_message(plaintext, &mut buffer).unwrap();
        frame(&buffer[..len])
    };
    frames.push(("<- READY", seal(true, b"READY")));
    frames.push(("-> PINGhello", seal(false, b"PINGhello")));
    frames.push(("<- PONGhello", seal(true, b"PONGhello")));
    frames.push(("-> BYE", seal(false, b"BYE")));

    for (name, bytes) in frames {
        assert_eq!(hex(&bytes), value(name), "{name}");
    }
    assert_eq!(hex(&hash), value("handshake hash"));
}
