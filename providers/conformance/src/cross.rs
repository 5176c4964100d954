//! Cross-backend checks: two backends of one axis must agree on every output, and
//! two different AEADs must not accept each other's ciphertexts.

use provider_api::{
    AeadBackend, AeadCipher, AeadKey, KeyAgreementBackend, SecretBytes, Seed, SignatureBackend,
    SigningKey, VerifyingKey, X25519SecretKey,
};

use crate::Tally;

const SEEDS: [[u8; 32]; 4] = [[1; 32], [0x5a; 32], [0xa5; 32], [0xff; 32]];

/// `A` signs and `B` verifies through the 32-byte public key; the same seed gives the
/// same public key and the same (deterministic) signature on both.
pub fn signatures<A: SignatureBackend, B: SignatureBackend>() -> Tally {
    let mut tally = Tally::default();
    for (i, seed) in SEEDS.iter().enumerate() {
        let a = SigningKey::<A>::from_seed(&Seed::new(*seed)).expect("seed");
        let b = SigningKey::<B>::from_seed(&Seed::new(*seed)).expect("seed");
        let public = a.verifying_key().to_bytes();
        assert_eq!(
            public,
            b.verifying_key().to_bytes(),
            "public keys differ for seed {i}"
        );
        let message = [i as u8; 100];
        let signature = a.sign(&message);
        assert_eq!(
            signature,
            b.sign(&message),
            "signatures differ for seed {i}"
        );
        let verifier = VerifyingKey::<B>::from_bytes(&public).expect("public key");
        verifier
            .verify(&message, &signature)
            .expect("cross verification");
        tally.valid_accepted += 1;
        assert!(verifier.verify(&message[1..], &signature).is_err());
        tally.invalid_rejected += 1;
    }
    tally
}

/// `A` and `B` give the same verdict, refused at the same stage for the same reason,
/// on every speccheck case.
pub fn speccheck_agreement<A: SignatureBackend, B: SignatureBackend>() -> Tally {
    let a = crate::signing::speccheck_verdicts::<A>();
    let b = crate::signing::speccheck_verdicts::<B>();
    assert_eq!(a, b, "{} and {} disagree", A::NAME, B::NAME);
    let mut tally = Tally::default();
    tally.invalid_rejected += a.iter().filter(|v| v.is_err()).count();
    tally.valid_accepted += a.iter().filter(|v| v.is_ok()).count();
    tally
}

/// `A` and `B` compute the same X25519 public keys and shared secrets from the same
/// inputs, and a key pair on `A` agrees with one on `B`.
pub fn shared_secrets<A: KeyAgreementBackend, B: KeyAgreementBackend>() -> Tally {
    let mut tally = Tally::default();
    for pair in SEEDS.windows(2) {
        let alice_a = X25519SecretKey::<A>::from_entropy(&SecretBytes::new(pair[0]));
        let alice_b = X25519SecretKey::<B>::from_entropy(&SecretBytes::new(pair[0]));
        let bob_b = X25519SecretKey::<B>::from_entropy(&SecretBytes::new(pair[1]));
        assert_eq!(
            alice_a.public_key(),
            alice_b.public_key(),
            "public keys differ"
        );
        let from_a = alice_a.diffie_hellman(bob_b.public_key()).expect("DH on A");
        let from_b = bob_b.diffie_hellman(alice_a.public_key()).expect("DH on B");
        assert_eq!(
            from_a.expose_secret(),
            from_b.expose_secret(),
            "shared secrets differ"
        );
        tally.valid_accepted += 1;
    }
    tally
}

/// Two AEAD backends with the same key, nonce and associated data: of one algorithm
/// (ChaCha20-Poly1305 by RustCrypto and by libcrux), each seals the same bytes and
/// opens the other's; of two algorithms, neither opens the other's message.
pub fn aeads_across_backends<A: AeadBackend, B: AeadBackend>() -> Tally {
    let same = A::ALGORITHM == B::ALGORITHM;
    let mut tally = Tally::default();
    let key = AeadKey::new([9; 32]);
    let (a, b) = (AeadCipher::<A>::new(&key), AeadCipher::<B>::new(&key));
    for len in [0usize, 1, 16, 64, 1000] {
        let nonce = [len as u8; 12];
        let plain = vec![0x33; len];
        let mut by_a = plain.clone();
        a.seal_in_place(&nonce, b"ad", &mut by_a)
            .expect("seal on A");
        let mut by_b = plain.clone();
        b.seal_in_place(&nonce, b"ad", &mut by_b)
            .expect("seal on B");
        let mut opened = by_a.clone();
        let b_opens_a = b.open_in_place(&nonce, b"ad", &mut opened).is_ok();
        if same {
            assert_eq!(by_a, by_b, "one algorithm, two ciphertexts");
            assert!(b_opens_a, "B did not open A's message");
            assert_eq!(opened, plain, "B opened A's message to other bytes");
            tally.valid_accepted += 1;
        } else {
            assert!(!b_opens_a, "B opened A's message");
            tally.invalid_rejected += 1;
        }
        a.open_in_place(&nonce, b"ad", &mut by_a)
            .expect("A opens its own message");
        tally.valid_accepted += 1;
    }
    tally
}
