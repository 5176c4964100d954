//! Pairing (`docs/protocol.md` section 11): what a prover on the network sends, and
//! what keystored, the verifier, makes of it.

use dsoftbusd::pairing::{
    self as pair, IdentityKeys, PairHello, PairReply, open_identity, seal_identity,
};
use dsoftbusd::wire::AppMessage;
use ipc::{Frame, Operation, ServiceId};
use keystored::pairing::{Effect, Pairing};
use provider_api::pake::{PakeBackend, PakeContext};
use provider_api::{Bundle, SecretBytes, Seed, SigningKey};
use provider_chacha::ChaCha20Poly1305;
use provider_dalek::Dalek;
use provider_hash::Blake2s;
use provider_spake2plus::Spake2Plus;
use state_format::pairing::{SetupCode, Verifier};

const CODE: u32 = 20_202_021;

fn verifier() -> Verifier {
    Verifier::register::<Spake2Plus>(&SetupCode::new(CODE).expect("a valid code"), [7; 16], 1_000)
        .expect("a real password hash")
}

fn context() -> Vec<u8> {
    pair::pake_context("Noise_XK_25519_ChaChaPoly_BLAKE2s")
}

/// The pairing frames and plaintexts a device decodes: a pair hello or reply that
/// decodes re-encodes to the same bytes; a `PAIROPEN`/`UNPAIR` plaintext too; a
/// sealed identity opens under the run's key only when it is the genuine one.
pub fn pairing_messages(data: &[u8]) {
    if let Ok(hello) = PairHello::decode(data) {
        assert_eq!(hello.encode(), data, "canonical pair hello");
    }
    if let Ok(reply) = PairReply::decode(data) {
        assert_eq!(reply.encode(), data, "canonical pair reply");
    }
    if let Some(message @ (AppMessage::PairOpen | AppMessage::Unpair(_))) = AppMessage::parse(data)
    {
        assert_eq!(message.encode(), data, "canonical pairing request");
    }
    // The command line's `pair=` (a device pairing with another): whatever it holds,
    // a request is an address and a valid code, and its debug form shows no code.
    if let Ok(text) = core::str::from_utf8(data)
        && let Some(Ok(request)) = dsoftbusd::pairing::PairRequest::from_bootargs(text)
    {
        let digits = request.digits();
        assert!(digits.iter().all(u8::is_ascii_digit));
        let shown = format!("{request:?}");
        assert!(!shown.contains(core::str::from_utf8(digits).unwrap_or("")));
    }
    let th = [0x5a; 32];
    let keys = IdentityKeys::derive::<Blake2s>(&SecretBytes::new([0x33; 32]), &th);
    let opened = open_identity::<ChaCha20Poly1305, Dalek>(&keys.prover, &th, pair::PROVER, data);
    let identity = SigningKey::<Dalek>::from_seed(&Seed::new([0x11; 32])).expect("nonzero seed");
    let genuine = seal_identity::<ChaCha20Poly1305>(
        &keys.prover,
        &th,
        &identity.verifying_key().to_bytes(),
        &identity
            .sign(&pair::confirm_message(pair::PROVER, &th))
            .to_bytes(),
    );
    assert_eq!(
        opened.is_ok(),
        data == genuine.as_slice(),
        "only the genuine identity opens"
    );
}

/// keystored's verifier: the input is one `PAIRING_START` payload and one
/// `PAIRING_FINISH` payload (split at its first byte). Every run that reaches the PAKE
/// is counted before it is answered; a finish gives a key only for the prover's real
/// confirmation (which random bytes never are), and takes the count back only then;
/// and a genuine pairing still works afterwards.
pub fn pairing_verifier(data: &[u8]) {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let split = usize::from(split).min(rest.len());
    let (start, finish) = rest.split_at(split);
    let mut pairing = Pairing::<Spake2Plus>::new(Some(verifier()), 0);
    pairing.give_random(SecretBytes::new([9; 64]));
    let (started, effect) = pairing.start(start);
    match (&started, effect) {
        (Ok(_), Effect::Count(1)) | (Err(_), Effect::None | Effect::Count(1)) => {}
        other => panic!("a run answered without being counted: {other:?}"),
    }
    let counted = pairing.failed();
    assert_eq!(counted, u16::from(effect == Effect::Count(1)));
    let (finished, effect) = pairing.finish(finish);
    assert!(
        finished.is_err(),
        "no key without the prover's confirmation"
    );
    assert_eq!(effect, Effect::None);
    assert_eq!(
        pairing.failed(),
        counted,
        "a failed finish takes nothing back"
    );
    // The service keeps serving: a genuine run succeeds.
    pairing.give_random(SecretBytes::new([10; 64]));
    let before = pairing.failed();
    let output = SetupCode::new(CODE)
        .expect("a valid code")
        .pbkdf_output::<Spake2Plus>(&[7; 16], 1_000);
    let context = context();
    let pake_context = PakeContext {
        context: &context,
        prover_id: &[],
        verifier_id: &[],
    };
    let (prover, share_p) =
        Spake2Plus::prover_start(&output, &pake_context, &SecretBytes::new([4; 64]))
            .expect("a real secret");
    let (answer, _) = pairing.start(&[&share_p[..], &context].concat());
    let answer = answer.expect("a genuine share");
    let proved = Spake2Plus::prover_finish(prover, &answer[..65], &answer[65..])
        .expect("the device's confirmation");
    let (key, effect) = pairing.finish(&proved.confirm);
    assert_eq!(key.expect("the key"), proved.key.expose_secret().to_vec());
    assert_eq!(
        effect,
        Effect::Count(before),
        "the genuine run is not counted"
    );
}

/// keystored's pairing operations through its request handling, from any caller:
/// it keeps serving its key whatever came.
pub fn keystored_pairing(data: &[u8]) {
    let Some((&pick, payload)) = data.split_first() else {
        return;
    };
    let operation = [
        Operation::KeystoredPairingStatus,
        Operation::KeystoredPairingStart,
        Operation::KeystoredPairingFinish,
        Operation::KeystoredTagTrustStore,
        Operation::KeystoredPairingReopen,
        Operation::KeystoredPairingProve,
        Operation::KeystoredPairingProveFinish,
    ][usize::from(pick) % 7];
    let key = SigningKey::<Dalek>::from_seed(&Seed::new([3; 32])).expect("nonzero seed");
    let public = key.verifying_key().to_bytes();
    let mut keystored =
        keystored::Keystored::<Bundle<Dalek, ChaCha20Poly1305>, Blake2s, Spake2Plus>::new(
            key,
            None,
            &[],
        )
        .with_pairing(Pairing::new(Some(verifier()), 0));
    keystored
        .pairing_mut()
        .give_random(SecretBytes::new([9; 64]));
    let frame = Frame::request(operation, payload)
        .encode()
        .map(|f| f.to_vec())
        .unwrap_or_default();
    let _ = keystored.handle(ServiceId::Dsoftbusd, &frame);
    let pubkey = Frame::request(Operation::KeystoredGetPubkey, &[])
        .encode()
        .expect("an empty frame")
        .to_vec();
    assert_eq!(
        keystored.handle(ServiceId::Dsoftbusd, &pubkey).reply,
        Ok(public.to_vec())
    );
}

/// Genuine inputs: a pair hello and reply, the genuine sealed identity, a real share.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "pairing_messages" => {
            let suite = "Noise_XK_25519_ChaChaPoly_BLAKE2s".to_string();
            vec![
                PairHello {
                    suite: suite.clone(),
                }
                .encode(),
                PairReply {
                    status: pair::PairStatus::Ok,
                    suite,
                    params: Some((1_000, [7; 16])),
                }
                .encode(),
                AppMessage::Unpair(&[1; 32]).encode(),
                b"net.ip=10.0.2.16/24 pair=10.0.2.15:7411:2020-2021".to_vec(),
            ]
        }
        "pairing_verifier" => {
            let output = SetupCode::new(CODE)
                .expect("a valid code")
                .pbkdf_output::<Spake2Plus>(&[7; 16], 1_000);
            let context = context();
            let pake_context = PakeContext {
                context: &context,
                prover_id: &[],
                verifier_id: &[],
            };
            let (_, share_p) =
                Spake2Plus::prover_start(&output, &pake_context, &SecretBytes::new([4; 64]))
                    .expect("a real secret");
            let start = [&share_p[..], &context].concat();
            vec![[&[start.len() as u8][..], &start, &[0; 32]].concat()]
        }
        _ => Vec::new(),
    }
}
