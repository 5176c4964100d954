//! `docs/protocol.md` section 11.6, the complete pairing, rebuilt with the OS's own code
//! from the inputs it lists: keystored's verifier (`keystored::pairing`, the factory's
//! registration in `state_format::pairing`), dsoftbusd's framing and key schedule
//! (`dsoftbusd::pairing`), provider-api's PAKE backend as the prover. Every frame must
//! be byte for byte the document's. (`tools/dsoftbus-peer/tests/pairing_vector.rs`
//! does the same with the `spake2plus`, `pbkdf2`, RustCrypto AEAD and ed25519-dalek
//! crates, from the document alone.)

use dsoftbusd::pairing::{
    self as pair, IdentityKeys, PairHello, PairReply, PairStatus, confirm_message, open_identity,
    seal_identity, transcript_hash,
};
use dsoftbusd::wire::frame;
use keystored::pairing::Pairing;
use provider_api::pake::{PakeBackend, PakeContext};
use provider_api::{SecretBytes, Seed, SigningKey};
use provider_hash::Blake2s;
use provider_select::backends::provider_chacha::ChaCha20Poly1305;
use provider_select::backends::provider_dalek::Dalek;
use provider_spake2plus::Spake2Plus;
use state_format::pairing::{SetupCode, Verifier};

const SUITE: &str = "Noise_XK_25519_ChaChaPoly_BLAKE2s";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn computed() -> String {
    let code = SetupCode::parse("2020-2021").unwrap();
    let salt = [0x51u8; 16];
    let iterations = 1_000;
    let prover_random = SecretBytes::new([0x41u8; 64]);
    let device_random = SecretBytes::new([0x56u8; 64]);
    let prover_identity = SigningKey::<Dalek>::from_seed(&Seed::new([0x11; 32])).unwrap();
    let device_identity = SigningKey::<Dalek>::from_seed(&Seed::new([0x21; 32])).unwrap();

    let output = code.pbkdf_output::<Spake2Plus>(&salt, iterations);
    let verifier = Verifier::register::<Spake2Plus>(&code, salt, iterations).unwrap();
    let record = verifier.record.expose_secret().to_vec();
    let mut lines = vec![
        format!("suite               {SUITE}"),
        "setup code          2020-2021".to_string(),
        format!(
            "password input      {}",
            hex(code.password_input().expose_secret())
        ),
        format!("salt                {}", hex(&salt)),
        format!("iterations          {iterations}"),
        format!("pbkdf2 output       {}", hex(output.expose_secret())),
        format!("w0                  {}", hex(&record[..32])),
        format!("L                   {}", hex(&record[32..])),
        format!("prover random       {}", hex(prover_random.expose_secret())),
        format!("device random       {}", hex(device_random.expose_secret())),
        format!("prover device seed  {}", hex(&[0x11; 32])),
        format!(
            "prover device key   {}",
            hex(&prover_identity.verifying_key().to_bytes())
        ),
        format!("device device seed  {}", hex(&[0x21; 32])),
        format!(
            "device device key   {}",
            hex(&device_identity.verifying_key().to_bytes())
        ),
    ];
    let mut line = |what: &str, body: &[u8]| lines.push(format!("{what:<20}{}", hex(&frame(body))));

    // The hello and its reply (the device's parameters, from keystored's status).
    line(
        "-> pair hello",
        &PairHello {
            suite: SUITE.into(),
        }
        .encode(),
    );
    let mut device = Pairing::<Spake2Plus>::new(Some(verifier), 0);
    let status = device.status();
    let reply = PairReply {
        status: PairStatus::Ok,
        suite: SUITE.into(),
        params: Some((status.iterations, status.salt)),
    };
    line("<- pair reply", &reply.encode());

    // pake 1 and 2: the prover's share; keystored's answer.
    let context = pair::pake_context(SUITE);
    let pake_context = PakeContext {
        context: &context,
        prover_id: &[],
        verifier_id: &[],
    };
    let (prover, share_p) =
        Spake2Plus::prover_start(&output, &pake_context, &prover_random).unwrap();
    line("-> pake 1", &share_p);
    device.give_random(device_random);
    let (answer, _) = device.start(&[&share_p[..], &context].concat());
    let pake_2 = answer.unwrap();
    line("<- pake 2", &pake_2);

    // pake 3: confirmP and the prover's sealed identity.
    let proved = Spake2Plus::prover_finish(prover, &pake_2[..65], &pake_2[65..]).unwrap();
    let share_v: [u8; 65] = pake_2[..65].try_into().unwrap();
    let confirm_v: [u8; 32] = pake_2[65..].try_into().unwrap();
    let th = transcript_hash::<Blake2s>(&share_p, &share_v, &confirm_v, &proved.confirm);
    let keys = IdentityKeys::derive::<Blake2s>(&proved.key, &th);
    let prover_signature = prover_identity
        .sign(&confirm_message(pair::PROVER, &th))
        .to_bytes();
    let sealed = seal_identity::<ChaCha20Poly1305>(
        &keys.prover,
        &th,
        &prover_identity.verifying_key().to_bytes(),
        &prover_signature,
    );
    line("-> pake 3", &[&proved.confirm[..], &sealed].concat());

    // The device: keystored checks confirmP and gives the key; the prover's identity
    // opens under it; pake 4 is the device's.
    let (key, _) = device.finish(&proved.confirm);
    let key = key.unwrap();
    assert_eq!(
        key,
        proved.key.expose_secret().to_vec(),
        "one key both sides"
    );
    let device_keys =
        IdentityKeys::derive::<Blake2s>(&SecretBytes::new(key.try_into().unwrap()), &th);
    let prover_key =
        open_identity::<ChaCha20Poly1305, Dalek>(&device_keys.prover, &th, pair::PROVER, &sealed)
            .unwrap();
    assert_eq!(
        prover_key.to_bytes(),
        prover_identity.verifying_key().to_bytes()
    );
    let device_signature = device_identity
        .sign(&confirm_message(pair::VERIFIER, &th))
        .to_bytes();
    let pake_4 = seal_identity::<ChaCha20Poly1305>(
        &device_keys.verifier,
        &th,
        &device_identity.verifying_key().to_bytes(),
        &device_signature,
    );
    line("<- pake 4", &pake_4);
    let device_key =
        open_identity::<ChaCha20Poly1305, Dalek>(&keys.verifier, &th, pair::VERIFIER, &pake_4)
            .unwrap();
    assert_eq!(
        device_key.to_bytes(),
        device_identity.verifying_key().to_bytes()
    );

    lines.push(format!(
        "K_shared            {}",
        hex(proved.key.expose_secret())
    ));
    lines.push(format!("th                  {}", hex(&th)));
    lines.push(format!(
        "k_prover            {}",
        hex(keys.prover.expose_secret())
    ));
    lines.push(format!(
        "k_device            {}",
        hex(keys.verifier.expose_secret())
    ));
    lines.join("\n")
}

/// The block between `PAIRING-VECTOR-BEGIN` and `PAIRING-VECTOR-END` in
/// `docs/protocol.md`.
fn documented() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/protocol.md");
    let text = std::fs::read_to_string(path).expect("docs/protocol.md");
    let start = text
        .find("PAIRING-VECTOR-BEGIN")
        .expect("a PAIRING-VECTOR-BEGIN line");
    let end = text
        .find("PAIRING-VECTOR-END")
        .expect("a PAIRING-VECTOR-END line");
    let block = &text[start..end];
    let body_start = block.find("```text\n").expect("a text block") + "```text\n".len();
    let body_end = block.rfind("\n```").expect("the block's end");
    block[body_start..body_end].to_string()
}

#[test]
fn the_documents_pairing_is_what_the_os_computes() {
    let computed = computed();
    assert_eq!(
        documented(),
        computed,
        "docs/protocol.md section 11.6 differs from what the OS computes; computed:\n{computed}"
    );
}
