//! PAKE checks: RFC 9383's test vector (`P256-SHA256-HKDF-SHA256-HMAC-SHA256`, Appendix
//! C) in both roles through the backend, and the refusals the protocol relies on:
//! shares that are not points of the group (off the curve, the identity, compressed,
//! truncated), shares that cancel the password's mask, a wrong password, a tampered
//! confirmation, a password hash that gives a zero scalar, and a record that does not
//! parse.

use p256::elliptic_curve::PublicKey;
use p256::elliptic_curve::ff::PrimeField;
use p256::elliptic_curve::sec1::ToSec1Point;
use p256::{NistP256, Scalar};
use provider_api::SecretBytes;
use provider_api::pake::{
    PAKE_PBKDF_OUTPUT_LEN, PAKE_RANDOM_LEN, PAKE_RECORD_LEN, PakeBackend, PakeContext, PakeError,
    verifier_answer,
};

use crate::{Tally, unhex, unhex_array};

/// RFC 9383 Appendix C, the P-256/SHA-256 suite.
mod vector {
    pub const CONTEXT: &[u8] = b"SPAKE2+-P256-SHA256-HKDF-SHA256-HMAC-SHA256 Test Vectors";
    pub const PROVER_ID: &[u8] = b"client";
    pub const VERIFIER_ID: &[u8] = b"server";
    pub const W0: &str = "bb8e1bbcf3c48f62c08db243652ae55d3e5586053fca77102994f23ad95491b3";
    pub const W1: &str = "7e945f34d78785b8a3ef44d0df5a1a97d6b3b460409a345ca7830387a74b1dba";
    pub const L: &str = "04eb7c9db3d9a9eb1f8adab81b5794c1f13ae3e225efbe91ea487425854c7fc00f00bfedcbd09b2400142d40a14f2064ef31dfaa903b91d1faea7093d835966efd";
    pub const X: &str = "d1232c8e8693d02368976c174e2088851b8365d0d79a9eee709c6a05a2fad539";
    pub const SHARE_P: &str = "04ef3bd051bf78a2234ec0df197f7828060fe9856503579bb1733009042c15c0c1de127727f418b5966afadfdd95a6e4591d171056b333dab97a79c7193e341727";
    pub const Y: &str = "717a72348a182085109c8d3917d6c43d59b224dc6a7fc4f0483232fa6516d8b3";
    pub const SHARE_V: &str = "04c0f65da0d11927bdf5d560c69e1d7d939a05b0e88291887d679fcadea75810fb5cc1ca7494db39e82ff2f50665255d76173e09986ab46742c798a9a68437b048";
    pub const CONFIRM_P: &str = "926cc713504b9b4d76c9162ded04b5493e89109f6d89462cd33adc46fda27527";
    pub const CONFIRM_V: &str = "9747bcc4f8fe9f63defee53ac9b07876d907d55047e6ff2def2e7529089d3e68";
    pub const K_SHARED: &str = "0c5f8ccd1413423a54f6c1fb26ff01534a87f893779c6e68666d772bfd91f3e7";
    /// RFC 9383's `M` and `N` for P-256, uncompressed (as they appear in the vector's TT).
    pub const M: &str = "04886e2f97ace46e55ba9dd7242579f2993b64e16ef3dcab95afd497333d8fa12f5ff355163e43ce224e0b0e65ff02ac8e5c7be09419c785e0ca547d55a12e2d20";
    pub const N: &str = "04d8bbd6c639c62937b04d997f38c3770719c629d7014d49a24b4f98baa1292b4907d60aa6bfade45008a636337f5168c64d9bd36034808cd564490b1e656edbe7";
}

fn context() -> PakeContext<'static> {
    PakeContext {
        context: vector::CONTEXT,
        prover_id: vector::PROVER_ID,
        verifier_id: vector::VERIFIER_ID,
    }
}

/// A password-hash output that reduces to the vector's `w0` and `w1`: each half 40
/// bytes, zeros in front.
fn vector_output() -> SecretBytes<PAKE_PBKDF_OUTPUT_LEN> {
    let mut output = [0u8; PAKE_PBKDF_OUTPUT_LEN];
    output[8..40].copy_from_slice(&unhex(vector::W0));
    output[48..80].copy_from_slice(&unhex(vector::W1));
    SecretBytes::new(output)
}

/// The 64 bytes that reduce to the scalar `hex` (zeros, then it).
fn random_for(hex: &str) -> SecretBytes<PAKE_RANDOM_LEN> {
    let mut bytes = [0u8; PAKE_RANDOM_LEN];
    bytes[32..].copy_from_slice(&unhex(hex));
    SecretBytes::new(bytes)
}

fn random(fill: u8) -> SecretBytes<PAKE_RANDOM_LEN> {
    SecretBytes::new([fill; PAKE_RANDOM_LEN])
}

fn output(fill: u8) -> SecretBytes<PAKE_PBKDF_OUTPUT_LEN> {
    SecretBytes::new([fill; PAKE_PBKDF_OUTPUT_LEN])
}

/// `scalar·point`, uncompressed.
fn multiply(point_hex: &str, scalar_hex: &str) -> Vec<u8> {
    let point = PublicKey::<NistP256>::from_sec1_bytes(&unhex(point_hex))
        .expect("a point of the curve")
        .to_projective();
    let scalar = Option::<Scalar>::from(Scalar::from_repr(unhex_array::<32>(scalar_hex).into()))
        .expect("a scalar below the order");
    (point * scalar).to_sec1_point(false).as_bytes().to_vec()
}

/// Every value of the RFC's vector, with the backend in each role: registration (the
/// record is `w0 || L`), both shares, both confirmations, the shared key.
pub fn rfc9383<B: PakeBackend>() -> Tally {
    let mut tally = Tally::default();
    let record = B::record_from_pbkdf_output(&vector_output()).expect("the vector's secret");
    let mut expected_record = unhex(vector::W0);
    expected_record.extend_from_slice(&unhex(vector::L));
    assert_eq!(&record.expose_secret()[..], &expected_record[..], "w0 || L");
    tally.valid_accepted += 1;

    let (prover, share_p) =
        B::prover_start(&vector_output(), &context(), &random_for(vector::X)).unwrap();
    assert_eq!(share_p.to_vec(), unhex(vector::SHARE_P), "shareP");
    let reply = verifier_answer::<B>(&record, &context(), &random_for(vector::Y), &share_p)
        .expect("the vector's shareP");
    assert_eq!(reply.share.to_vec(), unhex(vector::SHARE_V), "shareV");
    assert_eq!(reply.confirm.to_vec(), unhex(vector::CONFIRM_V), "confirmV");
    let proved = B::prover_finish(prover, &reply.share, &reply.confirm).expect("confirmV");
    assert_eq!(
        proved.confirm.to_vec(),
        unhex(vector::CONFIRM_P),
        "confirmP"
    );
    assert_eq!(proved.key.expose_secret().to_vec(), unhex(vector::K_SHARED));
    let key = B::verifier_finish(reply.state, &proved.confirm).expect("confirmP");
    assert_eq!(key.expose_secret().to_vec(), unhex(vector::K_SHARED));
    tally.valid_accepted += 6;
    tally
}

/// The password hash: PBKDF2-HMAC-SHA256 known answers (RFC 7914 section 11's two
/// cases, and one of the pairing's shape: 8 digits, empty identities, 1,000 rounds,
/// 80 bytes, computed with Python's `hashlib.pbkdf2_hmac`).
pub fn password_hash<B: PakeBackend>() -> Tally {
    let mut tally = Tally::default();
    let rfc7914 = [
        (
            &b"passwd"[..],
            &b"salt"[..],
            1u32,
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783",
        ),
        (
            b"Password",
            b"NaCl",
            80_000,
            "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56a1d425a1225833549adb841b51c9b3176a272bdebba1d078478f62b397f33c8d",
        ),
    ];
    for (password, salt, iterations, expected) in rfc7914 {
        // The RFC gives 64 bytes; PBKDF2's blocks do not depend on the length asked,
        // so they are the first 64 of the 80.
        let output = B::password_hash(password, salt, iterations);
        assert_eq!(
            &output.expose_secret()[..64],
            &unhex(expected)[..],
            "RFC 7914, c = {iterations}"
        );
        tally.valid_accepted += 1;
    }
    let mut input = Vec::new();
    input.extend_from_slice(&8u64.to_le_bytes());
    input.extend_from_slice(b"20202021");
    input.extend_from_slice(&[0u8; 16]);
    let salt: Vec<u8> = (0u8..16).collect();
    assert_eq!(
        B::password_hash(&input, &salt, 1000)
            .expose_secret()
            .to_vec(),
        unhex(
            "97342e460956b840f39464556352bc22d98158bd90d23c39f8d1c378acd5b196755de88d049a554f3016f3fb504dba4542afa4048868ab70822085e34df2659cccbb2ef7a74f7d58db2cbe266e0fc8ab"
        ),
        "the pairing's shape"
    );
    assert_ne!(
        B::password_hash(&input, &salt, 999).expose_secret(),
        B::password_hash(&input, &salt, 1000).expose_secret(),
        "the rounds count"
    );
    tally.valid_accepted += 2;
    tally
}

/// Shares the verifier and the prover must refuse, each with its typed error.
pub fn share_refusals<B: PakeBackend>() -> Tally {
    let mut tally = Tally::default();
    let record = B::record_from_pbkdf_output(&vector_output()).unwrap();
    let good = unhex(vector::SHARE_P);
    let mut off_curve = good.clone();
    off_curve[64] ^= 1;
    let mut compressed = vec![0x02 | (good[64] & 1)];
    compressed.extend_from_slice(&good[1..33]);
    let mut zero_x = vec![0u8; 65];
    zero_x[0] = 0x04;
    let cases: [(&str, Vec<u8>, PakeError); 7] = [
        ("off the curve", off_curve, PakeError::InvalidShare),
        ("all-zero point", zero_x, PakeError::InvalidShare),
        ("the identity (SEC1 0x00)", vec![0x00], PakeError::Length),
        ("compressed", compressed, PakeError::Length),
        ("truncated", good[..64].to_vec(), PakeError::Length),
        ("empty", Vec::new(), PakeError::Length),
        (
            "w0·M: cancels the mask",
            multiply(vector::M, vector::W0),
            PakeError::DegenerateShare,
        ),
    ];
    for (what, share, error) in &cases {
        let refused = verifier_answer::<B>(&record, &context(), &random(7), share);
        assert_eq!(refused.err(), Some(*error), "verifier: shareP {what}");
        tally.invalid_rejected += 1;
    }
    // The prover's side: the same shapes as shareV, and w0·N.
    let confirm = [0u8; 32];
    let degenerate_v = multiply(vector::N, vector::W0);
    for (what, share, error) in cases
        .iter()
        .take(6)
        .map(|(what, share, error)| (*what, share.clone(), *error))
        .chain([(
            "w0·N: cancels the mask",
            degenerate_v,
            PakeError::DegenerateShare,
        )])
    {
        let (prover, _) = B::prover_start(&vector_output(), &context(), &random(9)).unwrap();
        let refused = B::prover_finish(prover, &share, &confirm);
        assert_eq!(refused.err(), Some(error), "prover: shareV {what}");
        tally.invalid_rejected += 1;
    }
    tally
}

/// Runs that must not agree: a wrong password (both sides see only a confirmation
/// failure, the prover first, so it never sends a `confirmP` an impostor could test
/// guesses against), tampered confirmations, another context, secrets and records that
/// do not parse. And runs that must: fresh randomness gives fresh shares and keys.
pub fn properties<B: PakeBackend>() -> Tally {
    let mut tally = Tally::default();
    let record = B::record_from_pbkdf_output(&output(1)).unwrap();

    // A good run with fresh randomness agrees, and another run gives other values.
    let run = |prover_random: u8, verifier_random: u8| {
        let (prover, share_p) =
            B::prover_start(&output(1), &context(), &random(prover_random)).unwrap();
        let reply =
            verifier_answer::<B>(&record, &context(), &random(verifier_random), &share_p).unwrap();
        let proved = B::prover_finish(prover, &reply.share, &reply.confirm).unwrap();
        let key = B::verifier_finish(reply.state, &proved.confirm).unwrap();
        assert_eq!(key.expose_secret(), proved.key.expose_secret());
        (share_p, reply.share, key.expose_secret().to_vec())
    };
    let first = run(2, 3);
    let second = run(4, 5);
    assert_ne!(first.0, second.0, "fresh shareP");
    assert_ne!(first.1, second.1, "fresh shareV");
    assert_ne!(first.2, second.2, "fresh key");
    tally.valid_accepted += 2;

    // A wrong password: the prover refuses confirmV and sends nothing.
    let (prover, share_p) = B::prover_start(&output(2), &context(), &random(2)).unwrap();
    let reply = verifier_answer::<B>(&record, &context(), &random(3), &share_p).unwrap();
    assert_eq!(
        B::prover_finish(prover, &reply.share, &reply.confirm).err(),
        Some(PakeError::ConfirmationFailed),
        "wrong password: confirmV"
    );
    tally.invalid_rejected += 1;

    // Another context: the same.
    let other = PakeContext {
        context: b"another protocol",
        ..context()
    };
    let (prover, share_p) = B::prover_start(&output(1), &other, &random(2)).unwrap();
    let reply = verifier_answer::<B>(&record, &context(), &random(3), &share_p).unwrap();
    assert_eq!(
        B::prover_finish(prover, &reply.share, &reply.confirm).err(),
        Some(PakeError::ConfirmationFailed),
        "another context"
    );
    tally.invalid_rejected += 1;

    // Tampered confirmations, each bit position class: refused, typed.
    for bit in [0usize, 7, 128, 255] {
        let (prover, share_p) = B::prover_start(&output(1), &context(), &random(2)).unwrap();
        let reply = verifier_answer::<B>(&record, &context(), &random(3), &share_p).unwrap();
        let mut confirm_v = reply.confirm;
        confirm_v[bit / 8] ^= 1 << (bit % 8);
        assert_eq!(
            B::prover_finish(prover, &reply.share, &confirm_v).err(),
            Some(PakeError::ConfirmationFailed),
            "confirmV bit {bit}"
        );
        let (prover, share_p) = B::prover_start(&output(1), &context(), &random(2)).unwrap();
        let reply = verifier_answer::<B>(&record, &context(), &random(3), &share_p).unwrap();
        let proved = B::prover_finish(prover, &reply.share, &reply.confirm).unwrap();
        let mut confirm_p = proved.confirm;
        confirm_p[bit / 8] ^= 1 << (bit % 8);
        assert_eq!(
            B::verifier_finish(reply.state, &confirm_p).err(),
            Some(PakeError::ConfirmationFailed),
            "confirmP bit {bit}"
        );
        tally.invalid_rejected += 2;
    }
    let (prover, share_p) = B::prover_start(&output(1), &context(), &random(2)).unwrap();
    let reply = verifier_answer::<B>(&record, &context(), &random(3), &share_p).unwrap();
    assert_eq!(
        B::verifier_finish(reply.state, &[0u8; 31]).err(),
        Some(PakeError::Length),
        "short confirmP"
    );
    assert_eq!(
        B::prover_finish(prover, &reply.share, &[0u8; 33]).err(),
        Some(PakeError::Length),
        "long confirmV"
    );
    tally.invalid_rejected += 2;

    // A password hash that reduces to w0 = 0 or w1 = 0, and records that do not parse.
    assert_eq!(
        B::record_from_pbkdf_output(&SecretBytes::zeroed()).err(),
        Some(PakeError::InvalidSecret)
    );
    assert_eq!(
        B::prover_start(&SecretBytes::zeroed(), &context(), &random(2)).err(),
        Some(PakeError::InvalidSecret)
    );
    let mut zero_w0 = *record.expose_secret();
    zero_w0[..32].fill(0);
    let mut big_w0 = *record.expose_secret();
    big_w0[..32].fill(0xff);
    let mut off_curve_l = *record.expose_secret();
    off_curve_l[96] ^= 1;
    for (what, bytes) in [
        ("w0 = 0", zero_w0),
        ("w0 above the order", big_w0),
        ("L off the curve", off_curve_l),
        ("all zero", [0u8; PAKE_RECORD_LEN]),
    ] {
        assert_eq!(
            B::verifier_start(&SecretBytes::new(bytes), &context(), &random(3)).err(),
            Some(PakeError::InvalidRecord),
            "record: {what}"
        );
        tally.invalid_rejected += 1;
    }
    tally.invalid_rejected += 2;
    tally
}
