//! `docs/protocol.md` section 11.6, rebuilt the way the document tells a stranger to,
//! with this peer's own pairing code (the prover) and, for the device's frames, the
//! `spake2plus` crate's verifier, `pbkdf2` and RustCrypto's AEADs straight from their
//! crates. Nothing of the OS's code is used; every frame must be the document's.

#![allow(dead_code)]

#[path = "../src/pairing.rs"]
mod pairing;
#[path = "../src/session.rs"]
mod session;
#[path = "../src/wire.rs"]
mod wire;

use ed25519_dalek::{Signer, SigningKey};
use spake2plus::{ConfirmP, Context, P256Sha256, ProverSecret, ShareP, Verifier};

use pairing::{CONFIRM_PREFIX, Exchange, KEYS_INFO, ROLE_DEVICE, suite_parts};

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
    let start = text
        .find("PAIRING-VECTOR-BEGIN")
        .expect("a PAIRING-VECTOR-BEGIN line");
    let end = text
        .find("PAIRING-VECTOR-END")
        .expect("a PAIRING-VECTOR-END line");
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

fn frame(body: &[u8]) -> String {
    hex(&[&(body.len() as u16).to_be_bytes()[..], body].concat())
}

#[test]
fn the_documents_pairing_is_what_a_stranger_computes() {
    let doc = documented();
    let get = |name: &str| {
        doc.iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no {name:?} in the block"))
            .1
            .clone()
    };
    let suite = get("suite");
    let (cipher, hash) = suite_parts(&suite).unwrap();
    let digits = pairing::digits(&get("setup code")).unwrap();
    let salt = unhex(&get("salt"));
    let iterations: u32 = get("iterations").parse().unwrap();
    let prover_identity =
        SigningKey::from_bytes(&unhex(&get("prover device seed")).try_into().unwrap());
    let device_identity =
        SigningKey::from_bytes(&unhex(&get("device device seed")).try_into().unwrap());
    let prover_random: [u8; 64] = unhex(&get("prover random")).try_into().unwrap();
    let device_random: [u8; 64] = unhex(&get("device random")).try_into().unwrap();
    let mut computed: Vec<(String, String)> = Vec::new();

    // The password hash and the record, as the factory makes them.
    assert_eq!(
        hex(&pairing::password_input(&digits)),
        get("password input")
    );
    let mut output = [0u8; 80];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(
        &pairing::password_input(&digits),
        &salt,
        iterations,
        &mut output,
    );
    assert_eq!(hex(&output), get("pbkdf2 output"));
    let record = ProverSecret::<P256Sha256>::from_pbkdf_output(&output)
        .unwrap()
        .verifier_record();
    let record_bytes = record.to_bytes();
    assert_eq!(hex(&record_bytes[..32]), get("w0"));
    assert_eq!(hex(&record_bytes[32..]), get("L"));

    // The exchange: the prover is this peer's code.
    let exchange = Exchange {
        suite: &suite,
        digits,
        identity: &prover_identity,
        random: prover_random,
    };
    computed.push(("-> pair hello".into(), frame(&exchange.hello())));
    let reply = [
        &b"DSP1"[..],
        &[0, suite.len() as u8],
        suite.as_bytes(),
        &iterations.to_be_bytes(),
        &salt,
    ]
    .concat();
    computed.push(("<- pair reply".into(), frame(&reply)));
    let (pake_1, after_share) = exchange.pake_1(&reply).unwrap();
    computed.push(("-> pake 1".into(), frame(&pake_1)));

    // The device: spake2plus's verifier from the record, its random fixed.
    struct Once([u8; 64]);
    impl spake2plus::rand_core::TryRng for Once {
        type Error = std::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            unreachable!()
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            unreachable!()
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            dst.copy_from_slice(&self.0);
            Ok(())
        }
    }
    impl spake2plus::rand_core::TryCryptoRng for Once {}
    let context = [&b"dsoftbus/v1 pairing\0"[..], suite.as_bytes()].concat();
    let context = Context {
        context: &context,
        prover_id: b"",
        verifier_id: b"",
    };
    let (verifier, share_v) = Verifier::start(&record, &context, &mut Once(device_random));
    let (verifier, confirm_v) = verifier
        .receive(&ShareP::<P256Sha256>::from_bytes(&pake_1).unwrap())
        .unwrap();
    let pake_2 = [share_v.as_ref(), confirm_v.as_ref()].concat();
    computed.push(("<- pake 2".into(), frame(&pake_2)));

    let (pake_3, after_confirm) = exchange.pake_3(after_share, &pake_2).unwrap();
    computed.push(("-> pake 3".into(), frame(&pake_3)));

    let key = verifier
        .finish(&ConfirmP::<P256Sha256>::from_bytes(&pake_3[..32]).unwrap())
        .unwrap();
    let th = hash.digest(&[&pake_1, &pake_2[..65], &pake_2[65..], &pake_3[..32]]);
    let okm = hash.hkdf(&th, key.as_bytes().as_ref(), KEYS_INFO);
    let opened = cipher
        .open(&okm[..32], &th, &pake_3[32..])
        .expect("the prover's identity opens");
    assert_eq!(opened[..32], prover_identity.verifying_key().to_bytes());
    let signature = device_identity.sign(&[CONFIRM_PREFIX, &[ROLE_DEVICE], &th].concat());
    let identity = [
        &device_identity.verifying_key().to_bytes()[..],
        &signature.to_bytes(),
    ]
    .concat();
    let pake_4 = cipher.seal(&okm[32..], &th, &identity);
    computed.push(("<- pake 4".into(), frame(&pake_4)));
    assert_eq!(
        exchange.finish(after_confirm, &pake_4).unwrap(),
        device_identity.verifying_key().to_bytes()
    );
    computed.push(("K_shared".into(), hex(key.as_bytes().as_ref())));
    computed.push(("th".into(), hex(&th)));
    computed.push(("k_prover".into(), hex(&okm[..32])));
    computed.push(("k_device".into(), hex(&okm[32..])));

    for (name, value) in &computed {
        assert_eq!(&get(name), value, "{name}");
    }
    assert_eq!(
        hex(&prover_identity.verifying_key().to_bytes()),
        get("prover device key")
    );
    assert_eq!(
        hex(&device_identity.verifying_key().to_bytes()),
        get("device device key")
    );
}
