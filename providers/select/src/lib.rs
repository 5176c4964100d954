//! Chooses the backend of each axis of an image from cargo features.
//!
//! | axis | features | backends |
//! |---|---|---|
//! | Ed25519 | `sig-dalek`, `sig-compact`, `sig-libcrux` | `provider-dalek`, `provider-compact`, `provider-libcrux` |
//! | X25519 | `kx-dalek`, `kx-compact`, `kx-libcrux` | `provider-dalek`, `provider-compact`, `provider-libcrux` |
//! | AEAD | `aead-chacha`, `aead-aes-gcm`, `aead-libcrux-chacha` | `provider-chacha`, `provider-aes-gcm`, `provider-libcrux` |
//! | hash | `hash-blake2s`, `hash-sha256` | `provider-hash` |
//!
//! With exactly one feature per axis, [`Selected`] and [`SelectedHash`] are that
//! combination. Images are always built that way (`cargo xtask` passes
//! `--no-default-features` and one feature per axis, read from this crate's
//! `Cargo.toml`).
//!
//! With several features of an axis enabled, as `--all-features` does, the choice is
//! still defined and never silent: the first backend of the axis in [`BACKENDS`]
//! wins (`dalek`, `dalek`, `chacha`, `blake2s`), [`AMBIGUOUS`] is `true`, and
//! [`compiled_in`] lists every backend compiled in, so an image banner can say what it
//! carries besides what it uses. Code that wants a particular backend regardless of
//! features names it directly (`Suite<provider_dalek::Dalek, provider_compact::Compact,
//! provider_aes_gcm::Aes256Gcm>`): backends are types, and several coexist in one
//! build. With no feature on an axis, the build fails with a message naming the
//! features.
//!
//! **Names.** [`selected_name`] is readable and the four historical names keep their
//! meaning: `dalek+chacha` is Ed25519 and X25519 by dalek, ChaCha20-Poly1305 and
//! BLAKE2s. In general `<sig>[/<kx>]+<aead>[+sha256]`: the X25519 backend is written
//! only when it differs from the Ed25519 one, the hash only when it is not BLAKE2s
//! (`compact/dalek+aes-gcm+sha256`).
//!
//! **Adding a backend** is one line in an axis's table ([`backend_table`]), one
//! feature in `Cargo.toml` and, for a new crate, one `pub use` in [`backends`]; the
//! guard, the precedence, [`AMBIGUOUS`], [`BACKENDS`], the conformance kit's tests
//! and the host tests that run on every backend follow from the table. An AEAD must be a
//! [`provider_api::NoiseAead`]: [`Selected`] is a provider, and a provider's AEAD is
//! one Noise can name, so selecting any other fails to compile with that trait's
//! message.

#![no_std]
#![forbid(unsafe_code)]

use core::fmt;

use provider_api::{
    AeadBackend, HashAlgorithm, HashBackend, KeyAgreementBackend, Provider, ProviderName,
    SignatureBackend, Suite,
};

/// One axis: a type alias for the first enabled backend of the table, a compile error
/// when none is enabled, and the table as data.
macro_rules! select {
    ($($axis:literal $alias:ident [$($module:ident $feature:literal => $ty:ty),+ $(,)?];)+) => {
        $(
            select!(@pick $alias [] $($feature => $ty),+);
            #[cfg(not(any($(feature = $feature),+)))]
            compile_error!(concat!(
                "provider-select: enable one ", $axis, " backend feature:",
                $(" `", $feature, "`"),+
            ));
        )+

        /// Every backend of every axis, in precedence order: (axis, feature, enabled).
        pub const BACKENDS: &[(&str, &str, bool)] = &[
            $($(($axis, $feature, cfg!(feature = $feature)),)+)+
        ];
    };
    (@pick $alias:ident [$($earlier:literal)*] $feature:literal => $ty:ty $(, $rest:literal => $rest_ty:ty)*) => {
        #[doc = concat!("The selected backend: `", $feature, "`.")]
        #[cfg(all(feature = $feature, not(any($(feature = $earlier),*))))]
        pub type $alias = $ty;
        select!(@pick $alias [$($earlier)* $feature] $($rest => $rest_ty),*);
    };
    (@pick $alias:ident [$($earlier:literal)*]) => {};
}

/// The one list of backends: every backend of every axis, in precedence order, as a
/// module name, its feature and its type. Everything that enumerates backends takes
/// it from here: this crate's selection ([`Selected`], [`BACKENDS`]), the conformance
/// kit (`provider_conformance::every_backend_tests`), the host tests that run on
/// every backend, the benchmarks, and `cargo xtask` (which reads the features from
/// `Cargo.toml`). It hands the table to the macro it is given:
/// `provider_select::backend_table!(provider_conformance::every_backend_tests);`.
/// A backend's type is named through [`backends`], which holds only the backend crates
/// whose features are on.
#[macro_export]
macro_rules! backend_table {
    ($($callback:tt)*) => {
        $($callback)*! {
            "Ed25519" SelectedSig [
                sig_dalek "sig-dalek" => $crate::backends::provider_dalek::Dalek,
                sig_compact "sig-compact" => $crate::backends::provider_compact::Compact,
                sig_libcrux "sig-libcrux" => $crate::backends::provider_libcrux::Libcrux,
            ];
            "X25519" SelectedKx [
                kx_dalek "kx-dalek" => $crate::backends::provider_dalek::Dalek,
                kx_compact "kx-compact" => $crate::backends::provider_compact::Compact,
                kx_libcrux "kx-libcrux" => $crate::backends::provider_libcrux::Libcrux,
            ];
            "AEAD" SelectedAead [
                aead_chacha "aead-chacha" => $crate::backends::provider_chacha::ChaCha20Poly1305,
                aead_aes_gcm "aead-aes-gcm" => $crate::backends::provider_aes_gcm::Aes256Gcm,
                aead_libcrux_chacha "aead-libcrux-chacha" => $crate::backends::provider_libcrux::LibcruxChaCha20Poly1305,
            ];
            "hash" SelectedHash [
                hash_blake2s "hash-blake2s" => $crate::backends::provider_hash::Blake2s,
                hash_sha256 "hash-sha256" => $crate::backends::provider_hash::Sha256,
            ];
        }
    };
}

/// The backend crates whose features are on, for [`backend_table`]'s paths.
pub mod backends {
    #[cfg(feature = "aead-aes-gcm")]
    pub use provider_aes_gcm;
    #[cfg(feature = "aead-chacha")]
    pub use provider_chacha;
    #[cfg(any(feature = "sig-compact", feature = "kx-compact"))]
    pub use provider_compact;
    #[cfg(any(feature = "sig-dalek", feature = "kx-dalek"))]
    pub use provider_dalek;
    pub use provider_hash;
    #[cfg(any(
        feature = "sig-libcrux",
        feature = "kx-libcrux",
        feature = "aead-libcrux-chacha"
    ))]
    pub use provider_libcrux;
}

backend_table!(select);

/// The table's lookups for tools: one expansion of the table for both.
macro_rules! lookups {
    (
        $sig_axis:literal $sig_alias:ident [$($sig:ident $sig_feature:literal => $sig_ty:ty),+ $(,)?];
        $kx_axis:literal $kx_alias:ident [$($kx:ident $kx_feature:literal => $kx_ty:ty),+ $(,)?];
        $aead_axis:literal $aead_alias:ident [$($aead:ident $aead_feature:literal => $aead_ty:ty),+ $(,)?];
        $hash_axis:literal $hash_alias:ident [$($hash:ident $hash_feature:literal => $hash_ty:ty),+ $(,)?];
    ) => {
        /// Whether the compiled-in backend of feature `feature` (`sig-libcrux`, ...)
        /// declares itself formally verified (its trait's `FORMALLY_VERIFIED`); `None`
        /// for a feature no compiled-in backend has.
        pub fn formally_verified(feature: &str) -> Option<bool> {
            $(
                #[cfg(feature = $sig_feature)]
                if feature == $sig_feature {
                    return Some(<$sig_ty as SignatureBackend>::FORMALLY_VERIFIED);
                }
            )+
            $(
                #[cfg(feature = $kx_feature)]
                if feature == $kx_feature {
                    return Some(<$kx_ty as KeyAgreementBackend>::FORMALLY_VERIFIED);
                }
            )+
            $(
                #[cfg(feature = $aead_feature)]
                if feature == $aead_feature {
                    return Some(<$aead_ty as AeadBackend>::FORMALLY_VERIFIED);
                }
            )+
            $(
                #[cfg(feature = $hash_feature)]
                if feature == $hash_feature {
                    return Some(<$hash_ty as HashBackend>::FORMALLY_VERIFIED);
                }
            )+
            None
        }

        /// The AEAD algorithm of the compiled-in AEAD backend named `name` (its
        /// [`AeadBackend::NAME`], as combination names spell it): `None` for a name no
        /// compiled-in backend has. Tools that must name a combination's cipher (the
        /// host peer's Noise suite, keystored's sealed format) ask here instead of
        /// keeping a list.
        pub fn aead_algorithm(name: &str) -> Option<provider_api::AeadAlgorithm> {
            $(
                #[cfg(feature = $aead_feature)]
                if name == <$aead_ty as AeadBackend>::NAME {
                    return Some(<$aead_ty as AeadBackend>::ALGORITHM);
                }
            )+
            None
        }
    };
}

backend_table!(lookups);

/// The PAKE of pairing: one backend for every combination, not an axis
/// (docs/decisions/0015-pairing.md).
pub type SelectedPake = provider_spake2plus::Spake2Plus;

/// The selected provider: Ed25519, X25519 and the AEAD.
pub type Selected = Suite<SelectedSig, SelectedKx, SelectedAead>;

/// Whether an axis had more than one backend enabled, so that the precedence rule
/// decided the selection.
pub const AMBIGUOUS: bool = {
    let mut i = 0;
    let mut ambiguous = false;
    while i < BACKENDS.len() {
        let mut j = i + 1;
        while j < BACKENDS.len() {
            let (a, b) = (BACKENDS[i], BACKENDS[j]);
            if a.2 && b.2 && a.0.len() == b.0.len() && same(a.0, b.0) {
                ambiguous = true;
            }
            j += 1;
        }
        i += 1;
    }
    ambiguous
};

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The name of a whole combination: the provider and the hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CombinationName {
    /// Ed25519, X25519, AEAD.
    pub provider: ProviderName,
    /// The hash.
    pub hash: HashAlgorithm,
}

impl fmt::Display for CombinationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.provider)?;
        if self.hash != HashAlgorithm::Blake2s256 {
            write!(f, "+{}", self.hash.short_name())?;
        }
        Ok(())
    }
}

/// The name of the selected combination, such as `dalek+chacha`.
pub fn selected_name() -> CombinationName {
    CombinationName {
        provider: <Selected as Provider>::name(),
        hash: SelectedHash::ALGORITHM,
    }
}

/// Room for a combination's name in [`SELECTED_NAME_BYTES`].
pub const NAME_CAPACITY: usize = 64;

/// The selected combination's name ([`selected_name`]'s text) as bytes, padded with
/// zeros to [`NAME_CAPACITY`]: a constant, so a user program can carry it in its ELF
/// file for the kernel, which is built once for every combination, to print in its
/// banner (`user_rt::entry!`).
pub const SELECTED_NAME_BYTES: [u8; NAME_CAPACITY] = name_bytes(
    <SelectedSig as SignatureBackend>::NAME,
    <SelectedKx as KeyAgreementBackend>::NAME,
    <SelectedAead as AeadBackend>::NAME,
    SelectedHash::ALGORITHM,
);

/// `sig[/kx]+aead[+hash]`, as [`CombinationName`]'s `Display`, zero-padded.
const fn name_bytes(sig: &str, kx: &str, aead: &str, hash: HashAlgorithm) -> [u8; NAME_CAPACITY] {
    let mut out = [0u8; NAME_CAPACITY];
    let mut at = push(&mut out, 0, sig);
    if !same(sig, kx) {
        at = push(&mut out, at, "/");
        at = push(&mut out, at, kx);
    }
    at = push(&mut out, at, "+");
    at = push(&mut out, at, aead);
    if !matches!(hash, HashAlgorithm::Blake2s256) {
        at = push(&mut out, at, "+");
        push(&mut out, at, hash.short_name());
    }
    out
}

/// Copies `text` into `out` at `at`; returns the new end. A name longer than
/// [`NAME_CAPACITY`], or with a byte that is not printable ASCII, fails the build
/// (const evaluation panics).
const fn push(out: &mut [u8; NAME_CAPACITY], at: usize, text: &str) -> usize {
    let bytes = text.as_bytes();
    assert!(
        at + bytes.len() < NAME_CAPACITY,
        "combination name too long"
    );
    let mut i = 0;
    while i < bytes.len() {
        // The kernel refuses a program whose name is not printable ASCII without
        // spaces: a backend `NAME` that is not fails the build here instead.
        assert!(
            bytes[i].is_ascii_graphic(),
            "a backend name that is not printable ASCII"
        );
        out[at + i] = bytes[i];
        i += 1;
    }
    at + bytes.len()
}

/// Every backend compiled in, as its feature name, in table order.
pub fn compiled_in() -> impl Iterator<Item = &'static str> {
    BACKENDS
        .iter()
        .filter_map(|(_, feature, enabled)| enabled.then_some(*feature))
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::ToString;
    use std::vec::Vec;

    #[test]
    fn every_axis_has_one_backend_selected_and_ambiguity_is_reported() {
        let compiled: Vec<_> = super::compiled_in().collect();
        for axis in ["Ed25519", "X25519", "AEAD", "hash"] {
            let enabled = super::BACKENDS
                .iter()
                .filter(|(a, _, on)| *a == axis && *on)
                .count();
            assert!(enabled >= 1, "{axis}: {compiled:?}");
        }
        assert_eq!(super::AMBIGUOUS, compiled.len() > 4);
    }

    #[test]
    fn the_name_bytes_spell_the_selected_name() {
        let bytes = super::SELECTED_NAME_BYTES;
        let end = bytes.iter().position(|b| *b == 0).unwrap();
        assert!(bytes[end..].iter().all(|b| *b == 0));
        let text = core::str::from_utf8(&bytes[..end]).unwrap();
        assert_eq!(text, super::selected_name().to_string());
        let split = super::name_bytes("dalek", "libcrux", "chacha", super::HashAlgorithm::Sha256);
        assert!(split.starts_with(b"dalek/libcrux+chacha+sha256\0"));
    }

    #[test]
    #[cfg(all(
        feature = "sig-dalek",
        feature = "sig-compact",
        feature = "kx-dalek",
        feature = "kx-compact",
        feature = "aead-chacha",
        feature = "aead-aes-gcm",
        feature = "hash-blake2s",
        feature = "hash-sha256"
    ))]
    fn all_features_choose_the_first_backend_of_each_axis() {
        assert_eq!(super::selected_name().to_string(), "dalek+chacha");
        const { assert!(super::AMBIGUOUS) };
    }
}
