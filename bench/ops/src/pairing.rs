//! Pairing's costs (`docs/protocol.md` section 11), each side apart and the password
//! hash apart (its round count is a security choice: its cost is shown on its own).
//!
//! - `pairing/password-hash`: PBKDF2-HMAC-SHA256 of a setup code, 1,000 rounds, 80
//!   bytes: what the factory and every prover pay, never the device as verifier.
//! - `pairing/verifier`: keystored's part of one run: `PAIRING_START` (the device's
//!   share and confirmation) and `PAIRING_FINISH` (the prover's confirmation checked).
//! - `pairing/device`: the device's whole side but the disk and IPC: the verifier,
//!   then the transcript hash, the identity keys, the prover's identity opened and its
//!   signature verified, the device's identity signed and sealed, a trust store
//!   tagged.
//! - `pairing/prover`: the prover's side but its password hash.
//!
//! The PAKE is provider-api's `PakeBackend`; there is one backend
//! (`provider-spake2plus`), the same for every combination, so it is named here.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::hint::black_box;

use dsoftbusd::pairing::{self as pair, IdentityKeys};
use keystored::pairing::Pairing;
use provider_api::pake::{PakeBackend, PakeContext};
use provider_api::{HashBackend, Provider, SecretBytes, SigningKey};
use provider_spake2plus::Spake2Plus;
use state_format::pairing::{ITERATIONS, SetupCode, Verifier};
use state_format::trust::{self, TagKey};

use crate::{Workload, seed, workload};

const SALT: [u8; 16] = [0x51; 16];
const DEVICE_RANDOM: [u8; 64] = [0x56; 64];
const PROVER_RANDOM: [u8; 64] = [0x41; 64];

fn code() -> SetupCode {
    SetupCode::new(20_202_021).expect("a valid code")
}

/// The pairing workloads of provider `P` with hash `H`.
pub fn workloads<P: Provider, H: HashBackend>() -> Vec<Box<dyn Workload>> {
    let suite = noise_xk::protocol_name::<P::Aead, H>();
    let context = pair::pake_context(&suite);
    let output = code().pbkdf_output::<Spake2Plus>(&SALT, ITERATIONS);
    let verifier =
        || Verifier::register::<Spake2Plus>(&code(), SALT, ITERATIONS).expect("a record");
    // One prover's run against the device's fixed draw: its share and confirmation
    // are then the same every time, so the device's side can be repeated alone.
    let pake_context = PakeContext {
        context: &context,
        prover_id: &[],
        verifier_id: &[],
    };
    let (prover, share_p) =
        Spake2Plus::prover_start(&output, &pake_context, &SecretBytes::new(PROVER_RANDOM))
            .expect("a real secret");
    let mut probe = Pairing::<Spake2Plus>::new(Some(verifier()), 0);
    probe.give_random(SecretBytes::new(DEVICE_RANDOM));
    let start = [&share_p[..], &context].concat();
    let answer = probe.start(&start).0.expect("a genuine share");
    let proved = Spake2Plus::prover_finish(prover, &answer[..65], &answer[65..])
        .expect("the device's confirmation");
    let confirm_p = proved.confirm;
    let share_v: [u8; 65] = answer[..65].try_into().expect("65 bytes");
    let confirm_v: [u8; 32] = answer[65..].try_into().expect("32 bytes");
    let th = pair::transcript_hash::<H>(&share_p, &share_v, &confirm_v, &confirm_p);
    let keys = IdentityKeys::derive::<H>(&proved.key, &th);
    let probe_answer = answer;
    let prover_identity = SigningKey::<P::Sig>::from_seed(&seed(0x11)).expect("a seed");
    let sealed_prover = pair::seal_identity::<P::Aead>(
        &keys.prover,
        &th,
        &prover_identity.verifying_key().to_bytes(),
        &prover_identity
            .sign(&pair::confirm_message(pair::PROVER, &th))
            .to_bytes(),
    );
    let device_identity = SigningKey::<P::Sig>::from_seed(&seed(0x21)).expect("a seed");
    let tags = TagKey::derive::<H>(&SecretBytes::new([0x07; 32]));

    let mut out: Vec<Box<dyn Workload>> = Vec::new();
    out.push(workload("pairing/password-hash", move || {
        black_box(code().pbkdf_output::<Spake2Plus>(black_box(&SALT), ITERATIONS));
    }));
    let mut verifier_side = Pairing::<Spake2Plus>::new(Some(verifier()), 0);
    let start_v = start.clone();
    out.push(workload("pairing/verifier", move || {
        verifier_side.give_random(SecretBytes::new(DEVICE_RANDOM));
        let _ = black_box(verifier_side.start(black_box(&start_v)));
        black_box(
            verifier_side
                .finish(&confirm_p)
                .0
                .expect("the prover's confirmation"),
        );
    }));
    let mut device_side = Pairing::<Spake2Plus>::new(Some(verifier()), 0);
    out.push(workload("pairing/device", move || {
        device_side.give_random(SecretBytes::new(DEVICE_RANDOM));
        let answer = device_side
            .start(black_box(&start))
            .0
            .expect("a genuine share");
        let key = device_side
            .finish(&confirm_p)
            .0
            .expect("the prover's confirmation");
        let share_v: [u8; 65] = answer[..65].try_into().expect("65 bytes");
        let confirm_v: [u8; 32] = answer[65..].try_into().expect("32 bytes");
        let th = pair::transcript_hash::<H>(&share_p, &share_v, &confirm_v, &confirm_p);
        let key: [u8; 32] = key.as_slice().try_into().expect("32 bytes");
        let keys = IdentityKeys::derive::<H>(&SecretBytes::new(key), &th);
        let peer =
            pair::open_identity::<P::Aead, P::Sig>(&keys.prover, &th, pair::PROVER, &sealed_prover)
                .expect("the prover's identity");
        let signature = device_identity.sign(&pair::confirm_message(pair::VERIFIER, &th));
        black_box(pair::seal_identity::<P::Aead>(
            &keys.verifier,
            &th,
            &device_identity.verifying_key().to_bytes(),
            &signature.to_bytes(),
        ));
        black_box(trust::encode::<H>(&tags, 2, &[peer.to_bytes()]));
    }));
    let prover_identity = SigningKey::<P::Sig>::from_seed(&seed(0x11)).expect("a seed");
    // The device's answer to the prover's share: the same every run (its draw is fixed).
    let answer = probe_answer;
    out.push(workload("pairing/prover", move || {
        let pake_context = PakeContext {
            context: &context,
            prover_id: &[],
            verifier_id: &[],
        };
        let (prover, share_p) =
            Spake2Plus::prover_start(&output, &pake_context, &SecretBytes::new(PROVER_RANDOM))
                .expect("a real secret");
        let proved = Spake2Plus::prover_finish(prover, &answer[..65], &answer[65..])
            .expect("the device's confirmation");
        let share_v: [u8; 65] = answer[..65].try_into().expect("65 bytes");
        let confirm_v: [u8; 32] = answer[65..].try_into().expect("32 bytes");
        let th = pair::transcript_hash::<H>(&share_p, &share_v, &confirm_v, &proved.confirm);
        let keys = IdentityKeys::derive::<H>(&proved.key, &th);
        black_box(pair::seal_identity::<P::Aead>(
            &keys.prover,
            &th,
            &prover_identity.verifying_key().to_bytes(),
            &prover_identity
                .sign(&pair::confirm_message(pair::PROVER, &th))
                .to_bytes(),
        ));
    }));
    out
}
